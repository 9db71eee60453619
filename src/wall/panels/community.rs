//! A community's panel: its figures, the hourly sparkline, its organisation and its grids.

#[allow(unused_imports)]
use super::*;

/// The community panel.
#[derive(Clone, Debug, PartialEq)]
pub struct CommunityView {
    pub name: String,
    pub town: String,
    /// Organisation fields from the pack: (label, value).
    pub fields: Vec<(String, String)>,
    pub figures: Figures,
    pub hourly: Hourly,
    /// Its grids, neediest first.
    pub grids: Vec<AreaRow>,
}

pub fn community_view(
    county: &County,
    a: Option<&Analytics>,
    slot: usize,
) -> Option<CommunityView> {
    let c = county.pack.communities.get(slot)?;
    let town = county
        .pack
        .towns
        .iter()
        .find(|t| t.code == c.town_code)
        .map_or_else(String::new, |t| t.name.clone());
    let yes_no = |b: bool| if b { "有 yes" } else { "无 no" }.to_owned();
    let fields = vec![
        ("户数 households".to_owned(), c.households.to_string()),
        (
            "业委会 owner committees".to_owned(),
            c.owner_committees.to_string(),
        ),
        (
            "红色物业 red property council".to_owned(),
            yes_no(c.red_property_council),
        ),
        (
            "托管小区 custodial estates".to_owned(),
            c.custodial_estates.to_string(),
        ),
        (
            "物业公司 property companies".to_owned(),
            c.property_companies.to_string(),
        ),
    ];
    let mut grids: Vec<AreaRow> = county
        .pack
        .grids
        .iter()
        .enumerate()
        .filter(|(_, g)| g.community_code == c.code)
        .map(|(slot, g)| AreaRow {
            focus: Focus::Grid(g.id),
            name: g.name.clone(),
            figures: a
                .and_then(|a| a.grids.get(slot))
                .copied()
                .unwrap_or_default(),
        })
        .collect();
    grids.sort_by(|x, y| {
        y.figures
            .attention()
            .cmp(&x.figures.attention())
            .then(x.name.cmp(&y.name))
    });
    Some(CommunityView {
        name: c.name.clone(),
        town,
        fields,
        figures: a
            .and_then(|a| a.communities.get(slot))
            .copied()
            .unwrap_or_default(),
        hourly: a
            .and_then(|a| a.community_hourly.get(slot))
            .copied()
            .unwrap_or_default(),
        grids,
    })
}

pub(super) fn figures_ui(ui: &mut egui::Ui, f: &Figures) {
    egui::Grid::new(ui.next_auto_id())
        .num_columns(4)
        .spacing([14.0, 4.0])
        .show(ui, |ui| {
            let cell = |ui: &mut egui::Ui, label: &str, v: String, c: egui::Color32| {
                ui.label(text(label, theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
                ui.label(text(v, theme::FONT_PANEL, c).strong());
            };
            cell(ui, "在办", f.open.to_string(), theme::TEXT);
            let c = if f.overdue > 0 {
                theme::BAD
            } else {
                theme::TEXT
            };
            cell(ui, "超时", f.overdue.to_string(), c);
            ui.end_row();
            let c = if f.at_risk > 0 {
                theme::WARN
            } else {
                theme::TEXT
            };
            cell(ui, "临期", f.at_risk.to_string(), c);
            cell(
                ui,
                "今日受理/办结",
                format!("{}/{}", f.opened_today, f.resolved_today),
                theme::TEXT,
            );
            ui.end_row();
            let opt =
                |v: Option<f64>, fmt: &dyn Fn(f64) -> String| v.map_or_else(|| "—".to_owned(), fmt);
            cell(
                ui,
                "响应中位",
                opt(f.median_response_secs, &minutes),
                theme::TEXT,
            );
            cell(
                ui,
                "办结中位",
                opt(f.median_resolution_secs, &minutes),
                theme::TEXT,
            );
            ui.end_row();
            cell(
                ui,
                "按时率",
                opt(f.on_time_rate, &|v| format!("{:.0}%", v * 100.0)),
                theme::TEXT,
            );
            cell(
                ui,
                "满意度",
                opt(f.satisfaction, &|v| format!("{v:.2}")),
                theme::TEXT,
            );
            ui.end_row();
        });
}

/// Opened (bars) and resolved (line) per hour, the last 24 h.
pub fn sparkline_ui(ui: &mut egui::Ui, h: &Hourly) {
    let (rect, _) =
        ui.allocate_exact_size(egui::vec2(ui.available_width(), 56.0), egui::Sense::hover());
    let p = ui.painter_at(rect);
    p.rect_filled(rect, 2.0, theme::SPARK_BG);
    let max = h
        .opened
        .iter()
        .chain(&h.resolved)
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f32;
    let w = rect.width() / h.opened.len() as f32;
    for (i, &n) in h.opened.iter().enumerate() {
        let top = rect.bottom() - rect.height() * n as f32 / max;
        let x = rect.left() + i as f32 * w;
        p.rect_filled(
            egui::Rect::from_min_max(
                egui::pos2(x + 1.0, top),
                egui::pos2(x + w - 1.0, rect.bottom()),
            ),
            0.0,
            theme::SPARK_OPENED,
        );
    }
    let points: Vec<egui::Pos2> = h
        .resolved
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            egui::pos2(
                rect.left() + (i as f32 + 0.5) * w,
                rect.bottom() - rect.height() * n as f32 / max,
            )
        })
        .collect();
    p.add(egui::Shape::line(
        points,
        egui::Stroke::new(2.0, theme::SPARK_RESOLVED),
    ));
    ui.label(text(
        format!("24小时 受理(柱) / 办结(线) · opened (bars) / resolved (line), max {max:.0}/h"),
        theme::FONT_PANEL_SMALL,
        theme::TEXT_DIM,
    ));
}

/// Draw the community panel; what a click asks for.
pub fn community_ui(ui: &mut egui::Ui, c: &CommunityView, cx: &Cx<'_>) -> Option<UiCommand> {
    let sel = cx.extras.selected;
    let mut asked = Asked::default();
    heading_ui(ui, &c.name, &c.town);
    figures_ui(ui, &c.figures);
    sparkline_ui(ui, &c.hourly);
    section_ui(ui, "组织 organisation");
    for (k, v) in &c.fields {
        ui.label(text(
            format!("{k}: {v}"),
            theme::FONT_PANEL_SMALL,
            theme::TEXT,
        ));
    }
    section_ui(ui, "网格 grids");
    asked.take(area_rows_sel_ui(ui, &c.grids, 40, sel));
    asked.0
}
