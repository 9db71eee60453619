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
    /// Tickets by source and category, today and over 24 h.
    pub mix: crate::analytics::Mix,
    /// Its place in the assessment (1 = best) among the communities with a score.
    pub score_rank: Option<(usize, usize)>,
    /// Its figures at the same moment yesterday and a week ago (from the gateway's history).
    pub yesterday: Option<Figures>,
    pub last_week: Option<Figures>,
    /// Slot in `pack.communities`.
    pub slot: usize,
    /// Its grids, neediest first.
    pub grids: Vec<AreaRow>,
}

impl CommunityView {
    /// Take its figures from the past analytics (yesterday, last week), where they were read.
    pub fn compare(&mut self, past: [Option<&Analytics>; 2]) {
        let of = |a: Option<&Analytics>| a.and_then(|a| a.communities.get(self.slot)).copied();
        self.yesterday = of(past[0]);
        self.last_week = of(past[1]);
    }
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
    // Its organisation: grid party groups, centre households, volunteer teams.
    let (mut party_groups, mut centre) = (0, 0);
    for g in county.pack.grids_of(c.code) {
        party_groups += g.party_groups;
        centre += g.centre_households;
    }
    let teams: Vec<&str> = county
        .pack
        .teams
        .iter()
        .filter(|t| t.community_code == c.code)
        .map(|t| t.name.as_str())
        .collect();
    let mut fields = fields;
    fields.push((
        "网格党小组 grid party groups".to_owned(),
        party_groups.to_string(),
    ));
    fields.push(("中心户 centre households".to_owned(), centre.to_string()));
    fields.push((
        "志愿队伍 volunteer teams".to_owned(),
        format!("{} ({})", teams.len(), teams.join("、")),
    ));
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
    let score_rank = a.and_then(|a| {
        a.communities.get(slot)?.score()?;
        let order = a.ranking_by(crate::analytics::RankOrder::Score);
        let scored = order
            .iter()
            .filter(|&&i| a.communities[i].score().is_some())
            .count();
        Some((order.iter().position(|&i| i == slot)? + 1, scored))
    });
    Some(CommunityView {
        name: c.name.clone(),
        town,
        fields,
        mix: a
            .and_then(|a| a.community_mix.get(slot))
            .copied()
            .unwrap_or_default(),
        score_rank,
        yesterday: None,
        last_week: None,
        slot,
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
    let max = h.busiest_hour().max(1) as f32;
    let w = rect.width() / h.opened.len() as f32;
    super::super::charts::paint_bars(
        &p,
        rect,
        &super::super::charts::counts(&h.opened),
        f64::from(max),
        theme::SPARK_OPENED,
    );
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

/// The county report's figures for the community: the 20-minute pledge, the assessment score
/// and its rank, each KPI against yesterday and last week, tickets by source and category.
fn report_ui(ui: &mut egui::Ui, c: &CommunityView) {
    use super::super::charts::{Unit, change_text, ratio, spark_ui};
    let f = &c.figures;
    let dash = || "—".to_owned();
    let pct = |v: Option<f64>| v.map_or_else(dash, |r| format!("{:.0}%", r * 100.0));
    section_ui(ui, "考核与承诺 assessment and pledge");
    ui.label(text(
        format!(
            "考核得分 score {}{}",
            f.score().map_or_else(dash, |s| format!("{s:.1}")),
            c.score_rank
                .map_or_else(String::new, |(r, n)| format!(" · 第 {r} / {n} 名 rank")),
        ),
        theme::FONT_PANEL,
        theme::ACCENT,
    ));
    ui.label(text(
        format!(
            "20分钟到场率 pledge {} ({} / {} 报修到场) · 报告→到场中位 to site {}",
            pct(f.pledge_rate()),
            f.repairs_within_pledge,
            f.repairs_onsite_today,
            f.median_onsite_secs.map_or_else(dash, minutes)
        ),
        theme::FONT_PANEL_SMALL,
        theme::TEXT,
    ));
    spark_ui(
        ui,
        &ratio(&c.hourly.repairs_within_pledge, &c.hourly.repairs_onsite),
        22.0,
        theme::SPARK_RESOLVED,
        Some(1.0),
    );
    section_ui(ui, "趋势 against yesterday and last week");
    type Figure<'a> = &'a dyn Fn(&Figures) -> Option<f64>;
    let rows: [(&str, Figure, Unit); 6] = [
        ("在办 open", &|f| Some(f64::from(f.open)), Unit::Count),
        (
            "今日受理 opened",
            &|f| Some(f64::from(f.opened_today)),
            Unit::Count,
        ),
        (
            "今日办结 resolved",
            &|f| Some(f64::from(f.resolved_today)),
            Unit::Count,
        ),
        ("按时率 on time", &|f| f.on_time_rate, Unit::Share),
        ("20分钟到场 pledge", &|f| f.pledge_rate(), Unit::Share),
        ("得分 score", &|f| f.score(), Unit::Score),
    ];
    egui::Grid::new(ui.next_auto_id())
        .num_columns(3)
        .spacing([14.0, 2.0])
        .show(ui, |ui| {
            for (label, get, unit) in rows {
                let now = get(f);
                ui.label(text(label, theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
                ui.label(text(
                    format!(
                        "较昨日 {}",
                        change_text(now, c.yesterday.as_ref().and_then(get), unit)
                    ),
                    theme::FONT_PANEL_SMALL,
                    theme::TEXT,
                ));
                ui.label(text(
                    format!(
                        "上周 {}",
                        change_text(now, c.last_week.as_ref().and_then(get), unit)
                    ),
                    theme::FONT_PANEL_SMALL,
                    theme::TEXT,
                ));
                ui.end_row();
            }
        });
    section_ui(ui, "来源与类别 by source and category (今日 / 24 h)");
    super::super::charts::mix_ui(ui, &c.mix, theme::FONT_PANEL_SMALL);
}

/// Draw the community panel; what a click asks for.
pub fn community_ui(ui: &mut egui::Ui, c: &CommunityView, cx: &Cx<'_>) -> Option<UiCommand> {
    let sel = cx.extras.selected;
    let mut asked = Asked::default();
    heading_ui(ui, &c.name, &c.town);
    figures_ui(ui, &c.figures);
    sparkline_ui(ui, &c.hourly);
    report_ui(ui, c);
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
