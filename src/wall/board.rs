//! The wall board: the side panels of a `wall.toml` layout, filled with the county's figures
//! as cards (KPIs with sparklines and their change against yesterday and last week, report →
//! on site and the 20-minute pledge, hourly trends, tickets by source and category, the
//! ranking with the assessment score, incidents, alerts). Each card lies inside one physical
//! panel; the title and clock head the first panel of each side; every panel carries the
//! simulated-data badge in its corner when the source is simulated. A seam audit counts any
//! text drawn across a seam (the snapshot's sidecar reports it).

use bevy::prelude::*;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::charts::{Unit, backlog, change_text, counts, known, ratio, spark_ui};
use super::feed::WallModel;
use super::layout::{Card, Layout};
use super::nav::{Drill, Focus, UiCommand};
use super::stats::{Presence, Stats};
use super::theme;
use crate::analytics::{Analytics, Figures, HOURS, Hourly, RankOrder};
use crate::model::sla::clock_text;

/// The ranking's order and length (`[ranking]` of `wall.toml`).
#[derive(Resource, Clone, Copy, Debug)]
pub struct Ranking {
    pub order: RankOrder,
    pub rows: usize,
}

impl Default for Ranking {
    fn default() -> Self {
        Self {
            order: RankOrder::Attention,
            rows: 15,
        }
    }
}

/// Text drawn this frame and the pieces of it that straddle a seam.
#[derive(Resource, Default, Debug, Clone)]
pub struct SeamAudit {
    pub texts: usize,
    pub crossing: Vec<String>,
}

const FONT_KPI_VALUE: f32 = 32.0;
const FONT_CARD_TITLE: f32 = 22.0;
const FONT_LABEL: f32 = 17.0;
const FONT_SMALL: f32 = 14.0;

fn text(s: impl Into<String>, size: f32, color: egui::Color32) -> egui::RichText {
    egui::RichText::new(s.into()).size(size).color(color)
}

/// A KPI: its value now, and a 24-hour series to draw under it.
pub struct Kpi {
    pub label: &'static str,
    pub value: Option<f64>,
    pub shown: String,
    pub color: egui::Color32,
    pub series: Option<[f64; HOURS]>,
    /// Figures at the same time yesterday and a week ago, when the history has them.
    pub yesterday: Option<f64>,
    pub last_week: Option<f64>,
    /// How the change is written: counts, percentage points, minutes, rating.
    pub unit: Unit,
}

/// The county's KPIs at this moment, with yesterday's and last week's figures when known.
pub fn kpis(
    a: &Analytics,
    presence: &Presence,
    [yesterday, last_week]: [Option<&Analytics>; 2],
    past_presence: [Option<Presence>; 2],
) -> Vec<Kpi> {
    let was = |k: usize, get: fn(&Presence) -> usize| past_presence[k].map(|p| get(&p) as f64);
    let f = &a.county;
    let h = &a.county_hourly;
    let dash = || "—".to_owned();
    let pct = |v: Option<f64>| v.map_or_else(dash, |r| format!("{:.0}%", r * 100.0));
    let mins = |v: Option<f64>| v.map_or_else(dash, |s| format!("{:.0} 分", s / 60.0));
    let kpi =
        |label, get: &dyn Fn(&Figures) -> Option<f64>, shown: String, color, series, unit| Kpi {
            label,
            value: get(f),
            shown,
            color,
            series,
            yesterday: yesterday.and_then(|y| get(&y.county)),
            last_week: last_week.and_then(|w| get(&w.county)),
            unit,
        };
    let warn_if = |bad: bool, c| if bad { c } else { theme::TEXT };
    vec![
        kpi(
            "在办工单 open",
            &|f| Some(f64::from(f.open)),
            f.open.to_string(),
            theme::TEXT,
            Some(backlog(f.open, h)),
            Unit::Count,
        ),
        kpi(
            "已超时 overdue",
            &|f| Some(f64::from(f.overdue)),
            f.overdue.to_string(),
            warn_if(f.overdue > 0, theme::BAD),
            Some(counts(&a.overdue_hourly)),
            Unit::Count,
        ),
        kpi(
            "今日受理 opened today",
            &|f| Some(f64::from(f.opened_today)),
            f.opened_today.to_string(),
            theme::TEXT,
            Some(counts(&h.opened)),
            Unit::Count,
        ),
        kpi(
            "今日办结 resolved today",
            &|f| Some(f64::from(f.resolved_today)),
            f.resolved_today.to_string(),
            theme::TEXT,
            Some(counts(&h.resolved)),
            Unit::Count,
        ),
        kpi(
            "按时办结率 on time",
            &|f| f.on_time_rate,
            pct(f.on_time_rate),
            warn_if(f.on_time_rate.is_some_and(|r| r < 0.9), theme::WARN),
            Some(ratio(&h.on_time, &h.resolved)),
            Unit::Share,
        ),
        kpi(
            "20分钟到场率 pledge",
            &|f| f.pledge_rate(),
            pct(f.pledge_rate()),
            warn_if(f.pledge_rate().is_some_and(|r| r < 0.9), theme::WARN),
            Some(ratio(&h.repairs_within_pledge, &h.repairs_onsite)),
            Unit::Share,
        ),
        kpi(
            "报告到场中位 to site",
            &|f| f.median_onsite_secs,
            mins(f.median_onsite_secs),
            theme::TEXT,
            Some(known(&h.median_onsite_secs)),
            Unit::Minutes,
        ),
        kpi(
            "响应中位 response",
            &|f| f.median_response_secs,
            mins(f.median_response_secs),
            theme::TEXT,
            Some(known(&h.median_response_secs)),
            Unit::Minutes,
        ),
        kpi(
            "满意度 rating",
            &|f| f.satisfaction,
            f.satisfaction.map_or_else(dash, |v| format!("{v:.2}")),
            theme::TEXT,
            Some(ratio(&h.rating_sum, &h.rated)),
            Unit::Rating,
        ),
        kpi(
            "考核得分 score",
            &|f| f.score(),
            f.score().map_or_else(dash, |v| format!("{v:.1}")),
            theme::ACCENT,
            Some(h.score_series().map(|v| v.unwrap_or(f64::NAN))),
            Unit::Score,
        ),
        Kpi {
            label: "在岗志愿者 on duty",
            value: Some(presence.on_duty as f64),
            shown: format!("{} ({} 出勤)", presence.on_duty, presence.responding),
            color: theme::GOOD,
            series: None,
            yesterday: was(0, |p| p.on_duty),
            last_week: was(1, |p| p.on_duty),
            unit: Unit::Count,
        },
        Kpi {
            label: "进行中事件 incidents",
            value: Some(presence.active_incidents as f64),
            shown: presence.active_incidents.to_string(),
            color: warn_if(presence.active_incidents > 0, theme::BAD),
            series: None,
            yesterday: was(0, |p| p.active_incidents),
            last_week: was(1, |p| p.active_incidents),
            unit: Unit::Count,
        },
    ]
}

/// Height of one KPI box, logical pixels.
const KPI_BOX: f32 = 132.0;

fn kpis_ui(ui: &mut egui::Ui, list: &[Kpi]) {
    let area = ui.available_rect_before_wrap();
    let cols = if area.width() > 900.0 { 4 } else { 3 };
    let gap = 14.0;
    let w = (area.width() - gap * (cols as f32 - 1.0)) / cols as f32;
    for (i, k) in list.iter().enumerate() {
        let (row, col) = (i / cols, i % cols);
        let r = egui::Rect::from_min_size(
            area.min + egui::vec2(col as f32 * (w + gap), row as f32 * KPI_BOX),
            egui::vec2(w, KPI_BOX - 8.0),
        );
        let mut b = ui.new_child(egui::UiBuilder::new().max_rect(r));
        b.set_clip_rect(r.intersect(ui.clip_rect()));
        b.spacing_mut().item_spacing.y = 2.0;
        // The English half of the label where the box has room for it.
        let label = match k.label.split_once(' ') {
            Some((zh, _)) if w < 220.0 => zh,
            _ => k.label,
        };
        b.add(egui::Label::new(text(label, FONT_LABEL, theme::TEXT_DIM)).truncate());
        b.add(egui::Label::new(text(&k.shown, FONT_KPI_VALUE, k.color).strong()).truncate());
        match &k.series {
            Some(s) => spark_ui(
                &mut b,
                s,
                18.0,
                theme::SPARK_OPENED,
                match k.unit {
                    Unit::Share => Some(1.0),
                    Unit::Rating => Some(5.0),
                    Unit::Score => Some(100.0),
                    Unit::Count | Unit::Minutes => None,
                },
            ),
            None => {
                b.allocate_exact_size(egui::vec2(w, 18.0), egui::Sense::hover());
            }
        }
        b.add(
            egui::Label::new(text(
                format!(
                    "{} {} · {} {}",
                    if w < 220.0 { "昨" } else { "较昨日" },
                    change_text(k.value, k.yesterday, k.unit),
                    if w < 220.0 { "周" } else { "上周" },
                    change_text(k.value, k.last_week, k.unit)
                ),
                FONT_SMALL,
                theme::TEXT_DIM,
            ))
            .truncate(),
        );
    }
    let rows = list.len().div_ceil(cols);
    ui.allocate_exact_size(
        egui::vec2(area.width(), rows as f32 * KPI_BOX),
        egui::Sense::hover(),
    );
}

fn pledge_ui(ui: &mut egui::Ui, f: &Figures, h: &Hourly) {
    let dash = || "—".to_owned();
    ui.horizontal(|ui| {
        ui.label(text(
            f.pledge_rate()
                .map_or_else(dash, |r| format!("{:.0}%", r * 100.0)),
            FONT_KPI_VALUE * 1.3,
            if f.pledge_rate().is_some_and(|r| r < 0.9) {
                theme::WARN
            } else {
                theme::GOOD
            },
        ));
        ui.add_space(12.0);
        ui.vertical(|ui| {
            ui.label(text(
                format!(
                    "今日报修到场 {} 件, 20分钟内 {} 件",
                    f.repairs_onsite_today, f.repairs_within_pledge
                ),
                FONT_LABEL,
                theme::TEXT,
            ));
            ui.label(text(
                format!(
                    "报告→到场中位 median to site {} · {} 件到场 on site today",
                    f.median_onsite_secs
                        .map_or_else(dash, |s| format!("{:.1} 分", s / 60.0)),
                    f.onsite_today
                ),
                FONT_LABEL,
                theme::TEXT_DIM,
            ));
        });
    });
    spark_ui(
        ui,
        &ratio(&h.repairs_within_pledge, &h.repairs_onsite),
        40.0,
        theme::SPARK_RESOLVED,
        Some(1.0),
    );
    ui.label(text(
        "每小时20分钟到场率 share within 20 min, hour by hour (24 h)",
        FONT_SMALL,
        theme::TEXT_DIM,
    ));
}

fn trends_ui(ui: &mut egui::Ui, h: &Hourly, hour0_ms: i64, height: f32) {
    let (rect, _) = ui.allocate_exact_size(
        egui::vec2(ui.available_width(), (height - 90.0).max(40.0)),
        egui::Sense::hover(),
    );
    let p = ui.painter_at(rect);
    p.rect_filled(rect, 2.0, theme::SPARK_BG);
    let max = h.busiest_hour().max(1) as f32;
    let w = rect.width() / HOURS as f32;
    for i in 0..HOURS {
        let x = rect.left() + i as f32 * w;
        for (n, c, dx) in [
            (h.opened[i], theme::SPARK_OPENED, 0.0),
            (h.resolved[i], theme::SPARK_RESOLVED, w * 0.45),
        ] {
            let top = rect.bottom() - (rect.height() - 4.0) * n as f32 / max;
            p.rect_filled(
                egui::Rect::from_min_max(
                    egui::pos2(x + dx + 2.0, top),
                    egui::pos2(x + dx + w * 0.45, rect.bottom()),
                ),
                0.0,
                c,
            );
        }
    }
    // Hour marks under their bars.
    let (marks, _) = ui.allocate_exact_size(egui::vec2(rect.width(), 18.0), egui::Sense::hover());
    for i in (0..HOURS).step_by(3) {
        let hour = clock_text(hour0_ms + i as i64 * 3_600_000);
        ui.painter().text(
            egui::pos2(rect.left() + i as f32 * w + 2.0, marks.top()),
            egui::Align2::LEFT_TOP,
            hour.get(..5).unwrap_or(&hour),
            egui::FontId::proportional(FONT_SMALL),
            theme::TEXT_DIM,
        );
    }
    ui.label(text(
        format!(
            "受理(蓝) / 办结(绿) 每小时 opened (blue) / resolved (green) per hour, max {max:.0}"
        ),
        FONT_SMALL,
        theme::TEXT_DIM,
    ));
}

/// The ranking card's rows; a click opens the community.
fn ranking_ui(
    ui: &mut egui::Ui,
    model: &WallModel,
    a: &Analytics,
    ranking: &Ranking,
    rows: usize,
) -> Option<UiCommand> {
    let mut cmd = None;
    let order = a.ranking_by(ranking.order);
    ui.label(text(
        match ranking.order {
            RankOrder::Attention => "按紧迫 by attention: 超时 → 临期 → 在办",
            RankOrder::Score => {
                "按考核得分 by assessment score (on time 50%, rating 30%, response 20%)"
            }
        },
        FONT_SMALL,
        theme::TEXT_DIM,
    ));
    // A narrow side shows the score, overdue and open only.
    let wide = ui.available_width() > 760.0;
    egui::Grid::new("board_ranking")
        .num_columns(if wide { 8 } else { 5 })
        .spacing([22.0, 6.0])
        .show(ui, |ui| {
            let heads: &[&str] = if wide {
                &[
                    "#",
                    "社区 community",
                    "得分 score",
                    "按时 on time",
                    "20分钟 pledge",
                    "超时 overdue",
                    "临期 at risk",
                    "在办 open",
                ]
            } else {
                &["#", "社区", "得分", "超时", "在办"]
            };
            for h in heads {
                ui.label(text(*h, FONT_SMALL, theme::TEXT_DIM));
            }
            ui.end_row();
            for (rank, &slot) in order.iter().take(rows).enumerate() {
                let (Some(c), Some(f)) = (
                    model.county.pack.communities.get(slot),
                    a.communities.get(slot),
                ) else {
                    continue;
                };
                ui.label(text((rank + 1).to_string(), FONT_LABEL, theme::TEXT_DIM));
                if ui
                    .link(text(&c.display_name, FONT_LABEL, theme::LINK))
                    .clicked()
                {
                    cmd = Some(UiCommand::Open(Focus::Community(slot)));
                }
                ui.label(text(
                    f.score().map_or_else(|| "—".into(), |s| format!("{s:.1}")),
                    FONT_LABEL,
                    theme::ACCENT,
                ));
                if wide {
                    for share in [f.on_time_rate, f.pledge_rate()] {
                        ui.label(text(
                            share.map_or_else(|| "—".into(), |r| format!("{:.0}%", r * 100.0)),
                            FONT_LABEL,
                            theme::TEXT,
                        ));
                    }
                }
                ui.label(text(
                    f.overdue.to_string(),
                    FONT_LABEL,
                    if f.overdue > 0 {
                        theme::BAD
                    } else {
                        theme::TEXT
                    },
                ));
                if wide {
                    ui.label(text(
                        f.at_risk.to_string(),
                        FONT_LABEL,
                        if f.at_risk > 0 {
                            theme::WARN
                        } else {
                            theme::TEXT
                        },
                    ));
                }
                ui.label(text(f.open.to_string(), FONT_LABEL, theme::TEXT));
                ui.end_row();
            }
        });
    cmd
}

fn incidents_ui(ui: &mut egui::Ui, model: &WallModel, now: i64) -> Option<UiCommand> {
    let mut cmd = None;
    let live = model.live()?;
    let mut active: Vec<_> = live.active_incidents().collect();
    active.sort_by_key(|i| i.opened_at_ms);
    let title = |inc: &crate::model::Incident| {
        if inc.title.is_empty() {
            inc.kind.label_zh().to_owned()
        } else {
            inc.title.clone()
        }
    };
    let mm_ss = |secs: i64| format!("{:02}:{:02}", secs / 60, secs % 60);
    for inc in &active {
        let elapsed = now.saturating_sub(inc.opened_at_ms).max(0) / 1000;
        let over = elapsed > i64::from(inc.target_secs);
        let line = format!(
            "● {} {} / 目标 {} · {} 队出动 teams",
            title(inc),
            mm_ss(elapsed),
            mm_ss(i64::from(inc.target_secs)),
            inc.teams.len()
        );
        if ui
            .link(text(
                line,
                FONT_LABEL,
                if over { theme::BAD } else { theme::WARN },
            ))
            .clicked()
        {
            cmd = Some(UiCommand::Open(Focus::Incident(inc.id)));
        }
    }
    if active.is_empty() {
        ui.label(text(
            "无进行中事件 no incident in progress",
            FONT_LABEL,
            theme::GOOD,
        ));
    }
    // Closed in the last 24 hours, newest first: how long each took against its target.
    let mut closed: Vec<_> = live
        .incidents
        .values()
        .filter(|i| i.closed_at_ms.is_some_and(|c| c > now - 24 * 3_600_000))
        .collect();
    closed.sort_by_key(|i| std::cmp::Reverse(i.closed_at_ms));
    if !closed.is_empty() {
        ui.add_space(6.0);
        ui.label(text(
            format!("24小时内处置 closed in 24 h: {}", closed.len()),
            FONT_SMALL,
            theme::TEXT_DIM,
        ));
    }
    for inc in closed.iter().take(6) {
        let took = (inc.closed_at_ms.unwrap_or(now) - inc.opened_at_ms).max(0) / 1000;
        let line = format!(
            "✔ {} {} · 用时 {} / 目标 {}{}",
            clock_text(inc.opened_at_ms).get(..5).unwrap_or(""),
            title(inc),
            mm_ss(took),
            mm_ss(i64::from(inc.target_secs)),
            if inc.drill { " · 演练 drill" } else { "" }
        );
        if ui.link(text(line, FONT_LABEL, theme::TEXT)).clicked() {
            cmd = Some(UiCommand::Open(Focus::Incident(inc.id)));
        }
    }
    cmd
}

/// Volunteer teams by what they are doing: responding first, then most on duty.
/// A team's volunteers: on duty, responding, members.
type TeamCount = (usize, usize, usize);

/// (on duty, responding, members) per team slot: a walk over every volunteer, so the board
/// takes it once per analytics refresh, not every frame.
fn team_counts(model: &WallModel) -> Vec<TeamCount> {
    let teams = &model.county.pack.teams;
    let mut counts = vec![(0usize, 0usize, 0usize); teams.len()];
    let Some(live) = model.live() else {
        return counts;
    };
    let slot_of: std::collections::HashMap<_, _> =
        teams.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    for v in &live.volunteers {
        let Some(c) = slot_of.get(&v.team_id).and_then(|&i| counts.get_mut(i)) else {
            continue;
        };
        c.2 += 1;
        match v.status {
            crate::protocol::VolunteerStatus::Available => c.0 += 1,
            crate::protocol::VolunteerStatus::Responding => {
                c.0 += 1;
                c.1 += 1;
            }
            crate::protocol::VolunteerStatus::OffDuty => {}
        }
    }
    counts
}

fn teams_ui(
    ui: &mut egui::Ui,
    model: &WallModel,
    counts: &[TeamCount],
    rows: usize,
) -> Option<UiCommand> {
    let mut cmd = None;
    let teams = &model.county.pack.teams;
    if counts.len() != teams.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..teams.len()).collect();
    order.sort_by_key(|&i| {
        (
            std::cmp::Reverse(counts[i].1),
            std::cmp::Reverse(counts[i].0),
            i,
        )
    });
    let responding = counts.iter().filter(|c| c.1 > 0).count();
    ui.label(text(
        format!(
            "{} 支队伍 teams · {} 支出勤中 responding",
            teams.len(),
            responding
        ),
        FONT_SMALL,
        theme::TEXT_DIM,
    ));
    egui::Grid::new("board_teams")
        .num_columns(3)
        .spacing([22.0, 4.0])
        .show(ui, |ui| {
            for &i in order.iter().take(rows) {
                let (on, resp, members) = counts[i];
                let t = &teams[i];
                if ui.link(text(&t.name, FONT_LABEL, theme::LINK)).clicked() {
                    cmd = Some(UiCommand::Open(Focus::Team(t.id)));
                }
                ui.label(text(
                    format!("在岗 {on}/{members}"),
                    FONT_LABEL,
                    theme::GOOD,
                ));
                ui.label(text(
                    format!("出勤 {resp}"),
                    FONT_LABEL,
                    if resp > 0 {
                        theme::WARN
                    } else {
                        theme::TEXT_DIM
                    },
                ));
                ui.end_row();
            }
        });
    cmd
}

fn alerts_ui(ui: &mut egui::Ui, model: &WallModel, lines: usize) -> Option<UiCommand> {
    let mut cmd = None;
    let breaches = model
        .live()
        .map(|l| super::alerts::alert_lines(l, lines))
        .unwrap_or_default();
    for b in &breaches {
        let label = format!(
            "{} [{}] {}",
            clock_text(b.raised_at_ms),
            b.tier.label_zh(),
            b.text()
        );
        let color = if b.acked.is_none() {
            theme::BAD
        } else {
            theme::TEXT_DIM
        };
        if ui.link(text(label, FONT_LABEL, color)).clicked() {
            cmd = Some(UiCommand::Open(Focus::Ticket(b.ticket_id)));
        }
    }
    for a in model
        .alerts
        .iter()
        .rev()
        .take(lines.saturating_sub(breaches.len()))
    {
        if ui
            .link(text(
                format!("{} {}", clock_text(a.at_ms), a.text),
                FONT_LABEL,
                theme::TEXT,
            ))
            .clicked()
        {
            cmd = Some(UiCommand::Open(a.focus));
        }
    }
    if breaches.is_empty() && model.alerts.is_empty() {
        ui.label(text("无告警 no alerts", FONT_LABEL, theme::TEXT_DIM));
    }
    cmd
}

fn card_title(card: Card) -> &'static str {
    match card {
        Card::Kpis => "全县指标 county figures",
        Card::Pledge => "20分钟到场承诺 the 20-minute repair pledge",
        Card::Trends => "24小时趋势 the last 24 hours",
        Card::Mix => "工单来源与类别 tickets by source and category",
        Card::Ranking => "社区排行 ranking",
        Card::Incidents => "应急事件 incidents",
        Card::Alerts => "告警 alerts",
        Card::Teams => "志愿队伍 volunteer teams",
    }
}

/// The title and feed state (first panel of the left side), or the clock (of the right).
fn header_ui(ui: &mut egui::Ui, model: &WallModel, left: bool, now: i64) {
    let feed = super::ui::feed_view(model);
    if left {
        ui.label(
            text(
                format!(
                    "{} · 基层治理指挥中心",
                    model.county.pack.manifest.county_name
                ),
                FONT_CARD_TITLE * 1.4,
                theme::TEXT,
            )
            .strong(),
        );
        let c = match (feed.live, feed.frozen) {
            (true, false) => theme::GOOD,
            (true, true) => theme::WARN,
            (false, _) => theme::BAD,
        };
        ui.label(text(&feed.indicator, FONT_LABEL, c));
    } else {
        ui.label(text(clock_text(now), FONT_CARD_TITLE * 1.6, theme::TEXT).monospace());
        if let Some(b) = &feed.banner {
            ui.label(text(b, FONT_LABEL, theme::BAD).strong());
        }
    }
    ui.separator();
}

/// What a tile's cards need beyond the model.
struct BoardCx<'a> {
    model: &'a WallModel,
    a: Option<&'a Analytics>,
    presence: &'a Presence,
    past: [Option<&'a Analytics>; 2],
    past_presence: [Option<Presence>; 2],
    ranking: &'a Ranking,
    now: i64,
    teams: &'a [TeamCount],
}

fn card_ui(ui: &mut egui::Ui, card: Card, cx: &BoardCx<'_>, height: f32) -> Option<UiCommand> {
    ui.label(text(card_title(card), FONT_CARD_TITLE, theme::ACCENT).strong());
    let Some(a) = cx.a else {
        return match card {
            Card::Incidents => incidents_ui(ui, cx.model, cx.now),
            Card::Alerts => alerts_ui(ui, cx.model, 8),
            Card::Teams => teams_ui(ui, cx.model, cx.teams, 8),
            _ => {
                ui.label(text("统计中 computing…", FONT_LABEL, theme::TEXT_DIM));
                None
            }
        };
    };
    let lines = ((height - 70.0) / 30.0).max(3.0) as usize;
    match card {
        Card::Kpis => {
            kpis_ui(ui, &kpis(a, cx.presence, cx.past, cx.past_presence));
            None
        }
        Card::Pledge => {
            pledge_ui(ui, &a.county, &a.county_hourly);
            None
        }
        Card::Trends => {
            trends_ui(ui, &a.county_hourly, a.hourly_start_ms, height - 30.0);
            None
        }
        Card::Mix => {
            super::charts::mix_ui(ui, &a.county_mix, FONT_SMALL);
            None
        }
        Card::Ranking => ranking_ui(ui, cx.model, a, cx.ranking, cx.ranking.rows.min(lines)),
        Card::Incidents => incidents_ui(ui, cx.model, cx.now),
        Card::Alerts => alerts_ui(ui, cx.model, lines),
        Card::Teams => teams_ui(ui, cx.model, cx.teams, lines.saturating_sub(1)),
    }
}

/// The least height a card needs to show its figures whole, logical pixels.
fn card_min_height(card: Card) -> f32 {
    match card {
        Card::Kpis => 30.0 + 3.0 * KPI_BOX,
        Card::Mix => 300.0,
        Card::Ranking => 220.0,
        Card::Pledge => 150.0,
        Card::Trends => 120.0,
        Card::Incidents | Card::Teams | Card::Alerts => 120.0,
    }
}

/// Heights of a tile's cards: the KPI grid and the ranking get more room; the cards that do
/// not fit at their least height are left out (how many is said at the tile's foot) rather
/// than drawn cut.
pub fn card_heights(cards: &[Card], total: f32) -> Vec<f32> {
    let weight = |c: &Card| match c {
        Card::Kpis => 2.6,
        Card::Ranking => 2.0,
        Card::Mix => 1.5,
        _ => 1.0,
    };
    let mut fit = cards.len();
    while fit > 1
        && cards[..fit]
            .iter()
            .map(|c| card_min_height(*c))
            .sum::<f32>()
            > total
    {
        fit -= 1;
    }
    // Each card its least height, and what is left shared by weight.
    let shown = &cards[..fit];
    let least: f32 = shown.iter().map(|c| card_min_height(*c)).sum();
    let spare = (total - least).max(0.0);
    let sum: f32 = shown.iter().map(weight).sum::<f32>().max(1e-3);
    shown
        .iter()
        .map(|c| {
            let h = card_min_height(*c) + spare * weight(c) / sum;
            if least > total {
                total / shown.len() as f32 // one card, too little room: all of it
            } else {
                h
            }
        })
        .collect()
}

/// How far into a card's tile the board's colour reaches: past the card's rounded corners
/// (4 px) and their anti-aliased rim, so only the card's opaque inside is left to it.
const CARD_EDGE: f32 = 6.0;

/// Four strips covering `outer` but not `hole`, meeting edge to edge. The hole's edges are
/// put on the pixel grid (`pixels_per_point`), so where two strips meet each pixel is covered
/// by exactly one of them and no anti-aliased seam shows.
fn around(outer: egui::Rect, hole: egui::Rect, pixels_per_point: f32) -> [egui::Rect; 4] {
    let px = |v: f32, up: bool| {
        let p = v * pixels_per_point;
        (if up { p.ceil() } else { p.floor() }) / pixels_per_point
    };
    let hole = egui::Rect::from_min_max(
        egui::pos2(px(hole.min.x, true), px(hole.min.y, true)),
        egui::pos2(px(hole.max.x, false), px(hole.max.y, false)),
    );
    [
        egui::Rect::from_min_max(outer.min, egui::pos2(outer.max.x, hole.min.y)),
        egui::Rect::from_min_max(egui::pos2(outer.min.x, hole.max.y), outer.max),
        egui::Rect::from_min_max(
            egui::pos2(outer.min.x, hole.min.y),
            egui::pos2(hole.min.x, hole.max.y),
        ),
        egui::Rect::from_min_max(
            egui::pos2(hole.max.x, hole.min.y),
            egui::pos2(outer.max.x, hole.max.y),
        ),
    ]
}

#[allow(clippy::too_many_arguments)]
fn board_ui(
    mut contexts: EguiContexts,
    model: Res<WallModel>,
    stats: Res<Stats>,
    presence: Res<super::ui::PresenceCache>,
    layout: Res<Layout>,
    ranking: Res<Ranking>,
    mut drill: ResMut<Drill>,
    mut fly: ResMut<super::camera::FlyTo>,
    mut teams: Local<(Option<u64>, Vec<TeamCount>)>,
    mut laid_out: Local<(Vec<egui::Rect>, u32)>,
) -> Result {
    if !layout.wall {
        return Ok(());
    }
    let ctx = contexts.ctx_mut()?;
    let now = model.now_ms();
    let past = stats.past();
    if teams.0 != Some(stats.generation) {
        *teams = (Some(stats.generation), team_counts(&model));
    }
    let cx = BoardCx {
        model: &model,
        a: stats.latest.as_deref(),
        presence: &presence.presence,
        past,
        past_presence: stats.past_presence(),
        ranking: &ranking,
        now,
        teams: &teams.1,
    };
    let mut cmd = None;
    // The side panels' panels are the board's: nothing of the map shows between the cards.
    // Each card's opaque fill covers its tile, so the board's colour goes only around it (and
    // under the card's rounded, anti-aliased edge): the same picture with a million fewer
    // pixels blended on a software rasteriser. egui lays a new area out unseen on its first
    // frame, so until the cards have been drawn twice the board's colour fills their tiles.
    let tiles: Vec<egui::Rect> = layout.left.iter().chain(&layout.right).copied().collect();
    if laid_out.0 != tiles {
        *laid_out = (tiles.clone(), 0);
    }
    let cards_shown = laid_out.1 >= 2;
    laid_out.1 = laid_out.1.saturating_add(1);
    let bg = ctx.layer_painter(egui::LayerId::background());
    for t in &tiles {
        let outer = t.expand(super::layout::TILE_MARGIN);
        if cards_shown {
            for strip in around(outer, t.shrink(CARD_EDGE), ctx.pixels_per_point()) {
                bg.rect_filled(strip, 0.0, theme::BOARD_BG);
            }
        } else {
            bg.rect_filled(outer, 0.0, theme::BOARD_BG);
        }
    }
    let first_left = layout.left.first().copied();
    let first_right = layout.right.first().copied();
    for (i, (tile, cards)) in layout.card_tiles().into_iter().enumerate() {
        egui::Area::new(egui::Id::new(("board", i)))
            .fixed_pos(tile.min)
            .order(egui::Order::Middle)
            .show(ctx, |ui| {
                ui.set_clip_rect(tile);
                egui::Frame::default()
                    .fill(theme::PANEL_BG)
                    .inner_margin(egui::Margin::same(12))
                    .corner_radius(4.0)
                    .show(ui, |ui| {
                        let inner = tile.shrink(12.0);
                        ui.set_width(inner.width());
                        ui.set_height(inner.height());
                        ui.set_max_height(inner.height());
                        let header = if Some(tile) == first_left {
                            Some(true)
                        } else if Some(tile) == first_right {
                            Some(false)
                        } else {
                            None
                        };
                        if let Some(left) = header {
                            header_ui(ui, cx.model, left, now);
                        }
                        let top = ui.cursor().min.y;
                        let heights = card_heights(&cards, inner.max.y - top - 24.0);
                        if heights.len() < cards.len() {
                            let more = cards.len() - heights.len();
                            ui.painter().text(
                                egui::pos2(inner.min.x, inner.max.y),
                                egui::Align2::LEFT_BOTTOM,
                                format!(
                                    "另有 {more} 张卡片放不下 {more} more card(s) do not fit: give the wall more rows or move them (wall.toml [side])"
                                ),
                                egui::FontId::proportional(FONT_SMALL),
                                theme::WARN,
                            );
                        }
                        let mut y = top;
                        for (card, h) in cards.iter().zip(heights) {
                            let r = egui::Rect::from_min_size(
                                egui::pos2(inner.min.x, y),
                                egui::vec2(inner.width(), h - 6.0),
                            );
                            y += h;
                            let mut child = ui.new_child(egui::UiBuilder::new().max_rect(r));
                            child.set_clip_rect(r.intersect(tile));
                            if let Some(c) = card_ui(&mut child, *card, &cx, r.height()) {
                                cmd = Some(c);
                            }
                        }
                    });
            });
    }
    if model.simulated {
        badges_ui(ctx, &layout);
    }
    if let Some(c) = cmd {
        let live = model.live();
        drill.apply(c, &model.county, live);
        match drill.focus() {
            Some(f) => fly.to(
                super::panels::focus_points(f, &model.county, live),
                &model.county,
                false,
            ),
            None => fly.county(),
        }
    }
    Ok(())
}

fn badge_layer() -> egui::LayerId {
    egui::LayerId::new(egui::Order::Foreground, egui::Id::new("simulated_badges"))
}

/// The simulated-data badge in the top-right corner of every physical panel.
fn badges_ui(ctx: &egui::Context, layout: &Layout) {
    let painter = ctx.layer_painter(badge_layer());
    for t in &layout.tiles {
        let galley = painter.layout_no_wrap(
            " 模拟数据 SIMULATED ".into(),
            egui::FontId::proportional(FONT_LABEL),
            theme::PANEL_BG,
        );
        // Inside the panel, clear of the seams' bands at any scale.
        let r = egui::Rect::from_min_size(
            egui::pos2(
                t.max.x - galley.size().x - super::layout::TILE_MARGIN,
                t.min.y + super::layout::TILE_MARGIN * 0.5,
            ),
            galley.size(),
        );
        painter.rect_filled(r, 3.0, theme::WARN);
        painter.galley(r.min, galley, theme::PANEL_BG);
    }
}

/// Every text shape drawn this frame (on every layer), checked against the seams.
fn seam_audit(
    mut contexts: EguiContexts,
    layout: Res<Layout>,
    mut audit: ResMut<SeamAudit>,
) -> Result {
    if !layout.wall {
        return Ok(());
    }
    let ctx = contexts.ctx_mut()?;
    let mut layers: Vec<egui::LayerId> = ctx.memory(|m| m.layer_ids().collect());
    for extra in [egui::LayerId::background(), badge_layer()] {
        if !layers.contains(&extra) {
            layers.push(extra);
        }
    }
    let mut found = SeamAudit::default();
    ctx.graphics(|g| {
        for id in &layers {
            let Some(list) = g.get(*id) else { continue };
            for cs in list.all_entries() {
                visit_texts(&cs.shape, cs.clip_rect, &mut |rect, what| {
                    found.texts += 1;
                    if layout.crosses_seam(rect) {
                        found.crossing.push(format!("{what:?} at {rect:?}"));
                    }
                });
            }
        }
    });
    if !found.crossing.is_empty() && found.crossing != audit.crossing {
        warn!("text across a panel seam: {}", found.crossing.join("; "));
    }
    *audit = found;
    Ok(())
}

fn visit_texts(shape: &egui::Shape, clip: egui::Rect, f: &mut dyn FnMut(egui::Rect, &str)) {
    match shape {
        egui::Shape::Vec(v) => {
            for s in v {
                visit_texts(s, clip, f);
            }
        }
        egui::Shape::Text(t) => {
            let r = t.visual_bounding_rect().intersect(clip);
            if r.is_positive() && !t.galley.job.text.trim().is_empty() {
                f(r, &t.galley.job.text);
            }
        }
        _ => {}
    }
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Ranking>()
        .init_resource::<SeamAudit>()
        .add_systems(
            EguiPrimaryContextPass,
            (
                board_ui
                    .after(super::ui::wall_ui)
                    .before(super::panels::panels_ui),
                seam_audit
                    .after(super::panels::panels_ui)
                    .after(super::timeline::timeline_bar)
                    .after(super::actions::prompt_ui),
            ),
        );
}

#[cfg(test)]
mod tests {
    use super::{Card, KPI_BOX, card_heights};

    #[test]
    fn cards_that_do_not_fit_whole_are_left_out_not_cut() {
        let left = [Card::Kpis, Card::Trends, Card::Pledge, Card::Mix];
        // 900 px hold the KPIs, the trends and the pledge (30 + 3 × 132 + 120 + 150 = 696),
        // not the mix (300) too.
        let h = card_heights(&left, 900.0);
        assert_eq!(h.len(), 3);
        assert!((h.iter().sum::<f32>() - 900.0).abs() < 0.01);
        assert!(h[0] >= 30.0 + 3.0 * KPI_BOX, "{h:?}");
        // Room for all: every card, the KPIs with the most.
        let h = card_heights(&left, 2_000.0);
        assert_eq!(h.len(), 4);
        assert!(h[0] > h[1] && h[3] > h[1]);
        // Never nothing: a tile too small for even one card still shows its first.
        assert_eq!(card_heights(&left, 100.0).len(), 1);
    }
}
