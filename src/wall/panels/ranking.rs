//! The county's community ranking (the left column, and the county level): most overdue first.

#[allow(unused_imports)]
use super::*;

/// A row of the ranking or a community's grid list.
#[derive(Clone, Debug, PartialEq)]
pub struct AreaRow {
    pub focus: Focus,
    pub name: String,
    pub figures: Figures,
}

/// Communities, neediest first.
pub fn ranking_rows(county: &County, a: &Analytics) -> Vec<AreaRow> {
    a.ranking()
        .into_iter()
        .filter_map(|c| {
            Some(AreaRow {
                focus: Focus::Community(c),
                name: county.pack.communities.get(c)?.name.clone(),
                figures: a.communities[c],
            })
        })
        .collect()
}

/// Rows of areas (ranking or grids): name and counts; a click opens the area.
pub fn area_rows_ui(ui: &mut egui::Ui, rows: &[AreaRow], limit: usize) -> Option<UiCommand> {
    area_rows_sel_ui(ui, rows, limit, None)
}

/// The keyboard's row marker.
pub(super) fn marked(name: &str, selected: bool) -> (String, egui::Color32) {
    if selected {
        (format!("▶ {name}"), theme::LINK)
    } else {
        (name.to_owned(), theme::TEXT)
    }
}

/// Like [`area_rows_ui`], with row `selected` marked (keyboard focus).
pub fn area_rows_sel_ui(
    ui: &mut egui::Ui,
    rows: &[AreaRow],
    limit: usize,
    selected: Option<usize>,
) -> Option<UiCommand> {
    let mut cmd = None;
    egui::Grid::new(ui.next_auto_id())
        .num_columns(5)
        .striped(true)
        .spacing([10.0, 3.0])
        .show(ui, |ui| {
            ui.label(text("名称", theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
            ui.label(text("超时", theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
            ui.label(text("临期", theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
            ui.label(text("在办", theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
            ui.label(text("得分", theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
            ui.end_row();
            for (i, r) in rows.iter().take(limit).enumerate() {
                let (name, color) = marked(&r.name, selected == Some(i));
                if ui.link(text(name, theme::FONT_PANEL, color)).clicked() {
                    cmd = Some(UiCommand::Open(r.focus));
                }
                let f = &r.figures;
                let c = if f.overdue > 0 {
                    theme::BAD
                } else {
                    theme::TEXT_DIM
                };
                ui.label(text(f.overdue.to_string(), theme::FONT_PANEL, c));
                let c = if f.at_risk > 0 {
                    theme::WARN
                } else {
                    theme::TEXT_DIM
                };
                ui.label(text(f.at_risk.to_string(), theme::FONT_PANEL, c));
                ui.label(text(f.open.to_string(), theme::FONT_PANEL, theme::TEXT));
                ui.label(text(
                    f.score().map_or_else(|| "—".into(), |s| format!("{s:.0}")),
                    theme::FONT_PANEL_SMALL,
                    theme::ACCENT,
                ));
                ui.end_row();
            }
        });
    cmd
}

/// Draw the ranking panel; what a click asks for.
pub fn ranking_ui(ui: &mut egui::Ui, rows: &[AreaRow], cx: &Cx<'_>) -> Option<UiCommand> {
    let sel = cx.extras.selected;
    let mut asked = Asked::default();
    heading_ui(
        ui,
        "社区排行 ranking",
        "超时 → 临期 → 在办 · most overdue first",
    );
    asked.take(area_rows_sel_ui(ui, rows, 40, sel));
    asked.0
}
