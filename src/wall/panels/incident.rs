//! An incident's panel: elapsed against target, the teams sent, the dispatch suggestion.

#[allow(unused_imports)]
use super::*;

/// A team mobilized to (or suggested for) an incident.
#[derive(Clone, Debug, PartialEq)]
pub struct TeamLine {
    pub id: crate::protocol::TeamId,
    pub name: String,
    /// Its nearest on-duty member's distance (None: nobody on duty with a fix).
    pub distance_m: Option<f64>,
}

impl TeamLine {
    pub fn eta_secs(&self) -> Option<f64> {
        self.distance_m.map(|d| d / ETA_SPEED_M_PER_S)
    }
}

/// The incident panel.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentView {
    pub id: IncidentId,
    pub title: String,
    pub kind: &'static str,
    pub severity: Severity,
    pub drill: bool,
    pub opened_at_ms: TimestampMs,
    pub target_secs: u32,
    pub closed: bool,
    pub mobilized: Vec<TeamLine>,
    /// Dispatch suggestion: nearest available volunteers…
    pub suggest_volunteers: Vec<VolunteerLine>,
    /// …and the nearest teams not yet mobilized that have someone available.
    pub suggest_teams: Vec<TeamLine>,
}

pub(super) fn team_line(
    county: &County,
    live: &LiveState,
    team: crate::protocol::TeamId,
    at: LonLat,
    available_only: bool,
) -> TeamLine {
    let proj = county.pack.projection();
    let distance_m = live
        .volunteers
        .iter()
        .filter(|v| v.team_id == team)
        .filter(|v| match v.status {
            VolunteerStatus::Available => true,
            VolunteerStatus::Responding => !available_only,
            VolunteerStatus::OffDuty => false,
        })
        .filter_map(|v| v.pos)
        .map(|p| proj.distance_m((p.lon, p.lat), (at.lon, at.lat)))
        .min_by(f64::total_cmp);
    TeamLine {
        id: team,
        name: team_name(county, team),
        distance_m,
    }
}

pub fn incident_view(county: &County, live: &LiveState, id: IncidentId) -> Option<IncidentView> {
    let i = live.incidents.get(&id)?;
    let mobilized: Vec<TeamLine> = i
        .teams
        .iter()
        .map(|m| team_line(county, live, m.team_id, i.pos, false))
        .collect();
    let mut suggest_teams: Vec<TeamLine> = county
        .pack
        .teams
        .iter()
        .filter(|t| !i.teams.iter().any(|m| m.team_id == t.id))
        .map(|t| team_line(county, live, t.id, i.pos, true))
        .filter(|t| t.distance_m.is_some())
        .collect();
    suggest_teams.sort_by(|a, b| {
        a.distance_m
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.distance_m.unwrap_or(f64::INFINITY))
            .then(a.id.cmp(&b.id))
    });
    suggest_teams.truncate(3);
    Some(IncidentView {
        id,
        title: i.title.clone(),
        kind: i.kind.label_zh(),
        severity: i.severity,
        drill: i.drill,
        opened_at_ms: i.opened_at_ms,
        target_secs: i.target_secs,
        closed: i.closed_at_ms.is_some(),
        mobilized,
        suggest_volunteers: volunteers_near(county, live, i.pos, f64::INFINITY, SUGGESTIONS, true),
        suggest_teams,
    })
}

pub(super) fn team_lines_ui(ui: &mut egui::Ui, lines: &[TeamLine]) {
    for t in lines {
        let d = t.distance_m.map_or_else(
            || "无定位 no fix".to_owned(),
            |d| format!("{:.0} m · 约 {}", d, minutes(d / ETA_SPEED_M_PER_S)),
        );
        ui.label(text(
            format!("{} · {d}", t.name),
            theme::FONT_PANEL,
            theme::TEXT,
        ));
    }
}

/// Draw the incident panel; what a click asks for.
pub fn incident_ui(ui: &mut egui::Ui, i: &IncidentView, cx: &Cx<'_>) -> Option<UiCommand> {
    let sel = cx.extras.selected;
    let mut asked = Asked::default();
    let kind = if i.drill {
        format!("{} · 演练 drill", i.kind)
    } else {
        i.kind.to_owned()
    };
    heading_ui(
        ui,
        &i.title,
        &format!("{kind} · {}", severity_label(i.severity)),
    );
    let elapsed = (cx.now_ms - i.opened_at_ms).max(0) / 1000;
    let late = elapsed > i64::from(i.target_secs);
    ui.label(
        text(
            format!(
                "已用 elapsed {} / 目标 target {}",
                countdown_text(elapsed * 1000),
                countdown_text(i64::from(i.target_secs) * 1000)
            ),
            theme::FONT_PANEL_TITLE,
            if late && !i.closed {
                sla_color(SlaState::Breached, cx.pulse)
            } else {
                theme::TEXT
            },
        )
        .monospace(),
    );
    section_ui(ui, "已调度队伍 mobilized teams");
    team_lines_ui(ui, &i.mobilized);
    if !i.closed {
        section_ui(
            ui,
            "调度建议 dispatch suggestion: 最近可用队伍 nearest teams",
        );
        team_lines_ui(ui, &i.suggest_teams);
        if !i.suggest_teams.is_empty()
            && action_button(ui, "发送调度建议 send the suggested teams (D)")
        {
            asked.take(Some(UiCommand::Act(Action::Dispatch(
                i.id,
                i.suggest_teams.iter().map(|t| t.id).collect(),
            ))));
        }
        section_ui(ui, "最近可用志愿者 nearest available volunteers");
        asked.take(volunteer_lines_ui(ui, &i.suggest_volunteers, sel));
    }
    sent_ui(ui, cx.extras.outbox, true, i.id);
    asked.0
}
