//! A ticket's panel: the countdown, its facts, the operator's actions (督办, acknowledge, 派单 candidates) and its timeline.

#[allow(unused_imports)]
use super::*;

/// One step of a ticket's timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct StepLine {
    pub status: &'static str,
    pub at_ms: TimestampMs,
    /// Since the previous step.
    pub took_ms: Option<i64>,
}

/// The ticket panel.
#[derive(Clone, Debug, PartialEq)]
pub struct TicketView {
    pub line: TicketLine,
    pub open: bool,
    pub source: &'static str,
    pub assignee: String,
    pub responsible: String,
    pub grid: String,
    pub pos: LonLat,
    pub satisfaction: Option<u8>,
    pub steps: Vec<StepLine>,
    pub supervised_at_ms: Option<TimestampMs>,
    /// Its breach alert, if it has one.
    pub alert: Option<AlertLine>,
    /// The skill its category calls for, if any.
    pub skill: Option<&'static str>,
    /// 派单: the nearest available volunteers, those with the skill first.
    pub candidates: Vec<Candidate>,
}

/// A volunteer the ticket panel offers for 派单.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub line: VolunteerLine,
    /// Has the skill the ticket's category calls for.
    pub skilled: bool,
}

/// How far the ticket panel looks for volunteers to send.
pub const ASSIGN_WITHIN_M: f64 = 3_000.0;

/// The volunteer skill a ticket category calls for (the pack's skill names).
pub fn skill_for(category: crate::protocol::TicketCategory) -> Option<&'static str> {
    use crate::protocol::TicketCategory as C;
    match category {
        C::Repair => Some("utilities"),
        C::Help => Some("first_aid"),
        C::Dispute => Some("counselling"),
        C::Feedback | C::Sanitation | C::Property => None,
    }
}

/// The nearest available volunteers within [`ASSIGN_WITHIN_M`] of `at`, those with `skill`
/// first (nearest first within each group).
pub fn assign_candidates(
    county: &County,
    live: &LiveState,
    at: LonLat,
    skill: Option<&str>,
    limit: usize,
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = volunteers_near(county, live, at, ASSIGN_WITHIN_M, 200, true)
        .into_iter()
        .map(|line| Candidate {
            skilled: skill.is_some_and(|s| {
                volunteer_record(county, line.id)
                    .is_some_and(|r| r.skills.split(';').any(|k| k == s))
            }),
            line,
        })
        .collect();
    out.sort_by(|a, b| {
        b.skilled
            .cmp(&a.skilled)
            .then(a.line.distance_m.total_cmp(&b.line.distance_m))
            .then(a.line.id.cmp(&b.line.id))
    });
    out.truncate(limit);
    out
}

pub fn ticket_view(county: &County, live: &LiveState, id: TicketId) -> Option<TicketView> {
    let t = live.tickets.get(&id)?;
    let mut prev = None;
    let steps = t
        .steps
        .iter()
        .map(|s| {
            let took_ms = prev.map(|p| s.at_ms - p);
            prev = Some(s.at_ms);
            StepLine {
                status: s.status.label_zh(),
                at_ms: s.at_ms,
                took_ms,
            }
        })
        .collect();
    Some(TicketView {
        line: ticket_line(t),
        open: t.status.is_open(),
        source: t.source.label_zh(),
        assignee: t.assignee.as_deref().unwrap_or("—").to_owned(),
        responsible: t.responsible_party.as_deref().unwrap_or("—").to_owned(),
        grid: t
            .grid_id
            .and_then(|g| county.grid(g))
            .map_or_else(|| "网格外 outside grids".into(), |g| g.name.clone()),
        pos: t.pos,
        satisfaction: t.satisfaction,
        steps,
        supervised_at_ms: t.supervised_at_ms.get(),
        alert: live.alerts.get(&id).map(|a| AlertLine::of(a, live)),
        skill: skill_for(t.category),
        candidates: if t.status.is_open() {
            assign_candidates(county, live, t.pos, skill_for(t.category), SUGGESTIONS)
        } else {
            Vec::new()
        },
    })
}

/// The ticket panel's actions: 督办, the alert's acknowledgement, 派单 candidates.
pub(super) fn ticket_actions_ui(
    ui: &mut egui::Ui,
    t: &TicketView,
    pulse: f32,
    sel: Option<usize>,
) -> Option<UiCommand> {
    let mut cmd = None;
    section_ui(ui, "操作 actions");
    if let Some(a) = &t.alert {
        ui.label(text(
            format!("{} {}", a.tier.label_zh(), a.text()),
            theme::FONT_PANEL_SMALL,
            tier_color(a.tier, pulse),
        ));
        if let Some((by, note)) = &a.acked
            && !note.is_empty()
        {
            ui.label(text(
                format!("{by}: {note}"),
                theme::FONT_PANEL_SMALL,
                theme::TEXT_DIM,
            ));
        }
    }
    ui.horizontal(|ui| {
        if action_button(ui, "督办 supervise (S)") {
            cmd = Some(UiCommand::Act(Action::Supervise(t.line.id)));
        }
        if t.alert.as_ref().is_some_and(|a| a.acked.is_none())
            && action_button(ui, "确认告警 acknowledge (A)")
        {
            cmd = Some(UiCommand::Act(Action::Ack(t.line.id)));
        }
    });
    if let Some(at) = t.supervised_at_ms {
        ui.label(text(
            format!("已督办 supervised {}", clock_text(at)),
            theme::FONT_PANEL_SMALL,
            theme::TEXT_DIM,
        ));
    }
    let skill = t
        .skill
        .map_or_else(String::new, |s| format!(" · ★ 技能 {s} 优先"));
    section_ui(
        ui,
        &format!("派单 assign: 最近可用志愿者 nearest available (↑↓ Enter){skill}"),
    );
    if t.candidates.is_empty() {
        ui.label(text(
            format!(
                "{:.0} km 内无可用志愿者 nobody available nearby",
                ASSIGN_WITHIN_M / 1000.0
            ),
            theme::FONT_PANEL_SMALL,
            theme::TEXT_DIM,
        ));
    }
    for (i, c) in t.candidates.iter().enumerate() {
        let star = if c.skilled { "★ " } else { "" };
        let (name, color) = marked(
            &format!(
                "{star}{} · {} · {:.0} m · {}",
                c.line.name,
                c.line.team,
                c.line.distance_m,
                minutes(c.line.eta_secs())
            ),
            sel == Some(i),
        );
        if ui.link(text(name, theme::FONT_PANEL, color)).clicked() {
            cmd = Some(UiCommand::Act(Action::Assign(t.line.id, c.line.id)));
        }
    }
    cmd
}

/// Draw the ticket panel; what a click asks for.
pub fn ticket_ui(ui: &mut egui::Ui, t: &TicketView, cx: &Cx<'_>) -> Option<UiCommand> {
    let sel = cx.extras.selected;
    let mut asked = Asked::default();
    heading_ui(
        ui,
        &format!("工单 #{} {}", t.line.id, t.line.category),
        &t.line.summary,
    );
    if t.open {
        let state = t.line.sla(cx.now_ms);
        ui.label(
            text(
                format!(
                    "剩余 time left {}",
                    countdown_text(t.line.left_ms(cx.now_ms))
                ),
                theme::FONT_PANEL_TITLE,
                sla_color(state, cx.pulse),
            )
            .monospace(),
        );
    }
    for (k, v) in [
        ("状态 status", t.line.status.to_owned()),
        ("来源 source", t.source.to_owned()),
        (
            "优先级 priority",
            priority_label(t.line.priority).to_owned(),
        ),
        ("承办人 assignee", t.assignee.clone()),
        ("责任方 responsible", t.responsible.clone()),
        (
            "位置 location",
            format!("{} ({:.5}, {:.5})", t.grid, t.pos.lon, t.pos.lat),
        ),
        ("时限 deadline", clock_text(t.line.deadline_ms)),
        (
            "满意度 rating",
            t.satisfaction
                .map_or_else(|| "—".into(), |s| format!("{s}/5")),
        ),
    ] {
        ui.label(text(
            format!("{k}: {v}"),
            theme::FONT_PANEL_SMALL,
            theme::TEXT,
        ));
    }
    if t.open {
        asked.take(ticket_actions_ui(ui, t, cx.pulse, sel));
    }
    sent_ui(ui, cx.extras.outbox, false, t.line.id);
    section_ui(ui, "流程 timeline");
    for s in &t.steps {
        let took = s.took_ms.map_or_else(String::new, |ms| {
            format!("  (+{})", minutes(ms as f64 / 1000.0))
        });
        ui.label(
            text(
                format!("{} {}{took}", clock_text(s.at_ms), s.status),
                theme::FONT_PANEL,
                theme::TEXT,
            )
            .monospace(),
        );
    }
    asked.0
}
