//! Drill-down panels: county ranking → community → grid → ticket / volunteer / incident, with
//! breadcrumbs. Views are plain structs built from the model and the analytics (no bevy);
//! `*_ui` functions draw a view and return a [`UiCommand`]; the bevy systems are thin adapters.

use std::sync::Arc;

use bevy::prelude::*;
use bevy_egui::egui;

use super::alerts::AlertLine;
use super::nav::volunteer_record;
pub use super::nav::{
    Drill, Focus, OpenByGrid, UiCommand, breadcrumbs, focus_label, open_by_grid, path_to,
};
use super::outbox::{Action, Outbox};
use super::theme;
use crate::analytics::{Analytics, Figures, Hourly};
use crate::model::sla::{SlaState, clock_text, countdown_text, sla_state};
use crate::model::{County, LiveState};
use crate::protocol::{
    GridId, IncidentId, LonLat, Priority, Severity, Task, TicketId, TimestampMs, VolunteerId,
    VolunteerStatus,
};

/// Volunteers move at about cycling speed in town (ETA estimates).
pub const ETA_SPEED_M_PER_S: f64 = 4.0;
/// "Nearby" for the grid panel's volunteer list.
pub const NEARBY_M: f64 = 1_500.0;
/// Rows in the suggestion lists.
const SUGGESTIONS: usize = 5;

/// Actions asked for by clicks and keys this frame, for `super::actions` to send.
#[derive(Resource, Default, Debug)]
pub struct Requests(pub Vec<Action>);

/// A row of the focused list and what Enter does with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListTarget {
    Open(Focus),
    Act(Action),
}

/// The rows ↑/↓ and Enter move through in a panel, in the order the panel shows them.
pub fn list_targets(view: &PanelView) -> Vec<ListTarget> {
    let open = |f| ListTarget::Open(f);
    match view {
        PanelView::County(rows) => rows.iter().take(40).map(|r| open(r.focus)).collect(),
        PanelView::Community(c) => c.grids.iter().take(40).map(|r| open(r.focus)).collect(),
        PanelView::Grid(g) => g
            .tickets
            .iter()
            .take(GRID_TICKETS)
            .map(|t| open(Focus::Ticket(t.id)))
            .chain(g.nearby.iter().map(|v| open(Focus::Volunteer(v.id))))
            .collect(),
        PanelView::Ticket(t) if t.open => t
            .candidates
            .iter()
            .map(|c| ListTarget::Act(Action::Assign(t.line.id, c.line.id)))
            .collect(),
        PanelView::Incident(i) if !i.closed => i
            .suggest_volunteers
            .iter()
            .map(|v| open(Focus::Volunteer(v.id)))
            .collect(),
        PanelView::Volunteer(v) => v.task.map(open).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Open tickets listed in a grid panel.
const GRID_TICKETS: usize = 30;

/// Search (`/`): ticket or incident id (`123`, `#123`), community or grid name or code, volunteer
/// or team name, by substring; communities first, then grids, people, tickets. At most `limit`.
pub fn search(
    query: &str,
    county: &County,
    live: Option<&LiveState>,
    limit: usize,
) -> Vec<(Focus, String)> {
    let trimmed = query.trim();
    let ids_only = trimmed.starts_with('#');
    let q = trimmed.trim_start_matches('#').trim();
    if q.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<(Focus, String)> = Vec::new();
    // A number is first of all a ticket or incident id.
    if let (Ok(id), Some(live)) = (q.parse::<u64>(), live) {
        if let Some(t) = live.tickets.get(&id) {
            out.push((
                Focus::Ticket(id),
                format!("工单 #{id} {}", t.category.label_zh()),
            ));
        }
        if let Some(i) = live.incidents.get(&id) {
            out.push((Focus::Incident(i.id), format!("事件 #{} {}", i.id, i.title)));
        }
    }
    if ids_only {
        return out;
    }
    for (i, c) in county.pack.communities.iter().enumerate() {
        if c.name.contains(q) || c.display_name.contains(q) || c.code.to_string() == q {
            out.push((Focus::Community(i), format!("社区 {}", c.name)));
        }
    }
    for g in &county.pack.grids {
        if out.len() >= limit {
            break;
        }
        if g.name.contains(q) || g.code.contains(q) {
            out.push((Focus::Grid(g.id), format!("网格 {}", g.name)));
        }
    }
    for v in &county.pack.volunteers {
        if out.len() >= limit {
            break;
        }
        if v.name.contains(q) {
            out.push((
                Focus::Volunteer(v.id),
                format!("志愿者 {} · {}", v.name, team_name(county, v.team_id)),
            ));
        }
    }
    out.truncate(limit);
    out
}

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

/// An open ticket in a list, with what its countdown needs.
#[derive(Clone, Debug, PartialEq)]
pub struct TicketLine {
    pub id: TicketId,
    pub summary: String,
    pub category: &'static str,
    pub status: &'static str,
    pub priority: Priority,
    pub opened_at_ms: TimestampMs,
    pub deadline_ms: TimestampMs,
}

impl TicketLine {
    pub fn left_ms(&self, now_ms: TimestampMs) -> i64 {
        self.deadline_ms - now_ms
    }

    pub fn sla(&self, now_ms: TimestampMs) -> SlaState {
        sla_state(now_ms, self.opened_at_ms, self.deadline_ms)
    }
}

/// A volunteer in a list, with distance to the place in question.
#[derive(Clone, Debug, PartialEq)]
pub struct VolunteerLine {
    pub id: VolunteerId,
    pub name: String,
    pub team: String,
    pub status: VolunteerStatus,
    pub distance_m: f64,
}

impl VolunteerLine {
    pub fn eta_secs(&self) -> f64 {
        self.distance_m / ETA_SPEED_M_PER_S
    }
}

/// The grid panel.
#[derive(Clone, Debug, PartialEq)]
pub struct GridView {
    pub id: GridId,
    pub name: String,
    pub community: String,
    pub households: u32,
    /// The "1+4+X" staff: (role, name).
    pub staff: Vec<(&'static str, String)>,
    pub figures: Figures,
    /// Open tickets, soonest breach first (the most overdue at the top).
    pub tickets: Vec<TicketLine>,
    /// On-duty volunteers within [`NEARBY_M`] of the grid's centre, nearest first.
    pub nearby: Vec<VolunteerLine>,
}

fn ticket_line(t: &crate::model::Ticket) -> TicketLine {
    TicketLine {
        id: t.id,
        summary: t.summary.clone(),
        category: t.category.label_zh(),
        status: t.status.label_zh(),
        priority: t.priority,
        opened_at_ms: t.opened_at_ms,
        deadline_ms: t.sla_deadline_ms,
    }
}

fn team_name(county: &County, id: crate::protocol::TeamId) -> String {
    county.team(id).map_or_else(String::new, |t| t.name.clone())
}

/// On-duty volunteers by distance from `at` (metres), nearest first, up to `limit` within
/// `max_m`; `only_available` leaves out those already responding.
pub fn volunteers_near(
    county: &County,
    live: &LiveState,
    at: LonLat,
    max_m: f64,
    limit: usize,
    only_available: bool,
) -> Vec<VolunteerLine> {
    let proj = county.pack.projection();
    let mut out: Vec<VolunteerLine> = live
        .volunteers
        .iter()
        .filter(|v| match v.status {
            VolunteerStatus::Available => true,
            VolunteerStatus::Responding => !only_available,
            VolunteerStatus::OffDuty => false,
        })
        .filter_map(|v| {
            let p = v.pos?;
            let d = proj.distance_m((p.lon, p.lat), (at.lon, at.lat));
            (d <= max_m).then_some((v, d))
        })
        .map(|(v, d)| VolunteerLine {
            id: v.id,
            name: volunteer_record(county, v.id).map_or_else(String::new, |r| r.name.clone()),
            team: team_name(county, v.team_id),
            status: v.status,
            distance_m: d,
        })
        .collect();
    out.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m).then(a.id.cmp(&b.id)));
    out.truncate(limit);
    out
}

/// The grid panel; `index` (open tickets by grid) avoids walking every ticket.
pub fn grid_view(
    county: &County,
    live: &LiveState,
    a: Option<&Analytics>,
    id: GridId,
    index: Option<&OpenByGrid>,
) -> Option<GridView> {
    let g = county.grid(id)?;
    let slot = county.grid_slot(id)?;
    let staff = county
        .pack
        .staff
        .iter()
        .filter(|s| s.grid_id == id)
        .map(|s| (s.role.label_zh(), s.name.clone()))
        .collect();
    let mut tickets: Vec<TicketLine> = match index {
        Some(index) => index
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|t| live.tickets.get(t).map(|t| &**t))
            .filter(|t| t.status.is_open())
            .map(ticket_line)
            .collect(),
        None => live
            .open_tickets()
            .filter(|t| t.grid_id == Some(id))
            .map(ticket_line)
            .collect(),
    };
    tickets.sort_by_key(|t| (t.deadline_ms, t.id));
    Some(GridView {
        id,
        name: g.name.clone(),
        community: county
            .pack
            .community(g.community_code)
            .map_or_else(String::new, |c| c.name.clone()),
        households: g.households,
        staff,
        figures: a
            .and_then(|a| a.grids.get(slot))
            .copied()
            .unwrap_or_default(),
        tickets,
        nearby: volunteers_near(county, live, g.label, NEARBY_M, 8, false),
    })
}

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
        assignee: t.assignee.clone().unwrap_or_else(|| "—".into()),
        responsible: t.responsible_party.clone().unwrap_or_else(|| "—".into()),
        grid: t
            .grid_id
            .and_then(|g| county.grid(g))
            .map_or_else(|| "网格外 outside grids".into(), |g| g.name.clone()),
        pos: t.pos,
        satisfaction: t.satisfaction,
        steps,
        supervised_at_ms: t.supervised_at_ms,
        alert: live.alerts.get(&id).map(|a| AlertLine::of(a, live)),
        skill: skill_for(t.category),
        candidates: if t.status.is_open() {
            assign_candidates(county, live, t.pos, skill_for(t.category), SUGGESTIONS)
        } else {
            Vec::new()
        },
    })
}

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

fn team_line(
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

/// The volunteer panel.
#[derive(Clone, Debug, PartialEq)]
pub struct VolunteerView {
    pub id: VolunteerId,
    pub name: String,
    pub team: String,
    pub skills: String,
    pub status: VolunteerStatus,
    pub grid: String,
    pub pos: Option<LonLat>,
    pub last_fix_ms: Option<TimestampMs>,
    pub task: Option<Focus>,
}

pub fn volunteer_view(county: &County, live: &LiveState, id: VolunteerId) -> Option<VolunteerView> {
    let v = live.volunteer(id)?;
    let r = volunteer_record(county, id);
    Some(VolunteerView {
        id,
        name: r.map_or_else(String::new, |r| r.name.clone()),
        team: team_name(county, v.team_id),
        skills: r.map_or_else(String::new, |r| r.skills.replace(';', " · ")),
        status: v.status,
        grid: v
            .grid_id
            .and_then(|g| county.grid(g))
            .map_or_else(|| "—".into(), |g| g.name.clone()),
        pos: v.pos,
        last_fix_ms: v.last_fix_ms,
        task: v.task.map(|t| match t {
            Task::Ticket(t) => Focus::Ticket(t),
            Task::Incident(i) => Focus::Incident(i),
        }),
    })
}

/// The panel for the current focus, built once and redrawn every frame.
#[derive(Clone, Debug, PartialEq)]
pub enum PanelView {
    County(Vec<AreaRow>),
    Community(CommunityView),
    Grid(GridView),
    Ticket(TicketView),
    Volunteer(VolunteerView),
    Incident(IncidentView),
    /// The item is gone (e.g. not in the latest snapshot).
    Missing(String),
}

pub fn panel_view(
    focus: Option<Focus>,
    county: &County,
    live: Option<&LiveState>,
    a: Option<&Analytics>,
    index: Option<&OpenByGrid>,
) -> PanelView {
    let missing = || PanelView::Missing(focus.map_or_else(String::new, |f| focus_label(f, county)));
    match focus {
        None => PanelView::County(a.map(|a| ranking_rows(county, a)).unwrap_or_default()),
        Some(Focus::Community(c)) => {
            community_view(county, a, c).map_or_else(missing, PanelView::Community)
        }
        Some(f) => {
            let Some(live) = live else { return missing() };
            let v = match f {
                Focus::Grid(g) => grid_view(county, live, a, g, index).map(PanelView::Grid),
                Focus::Ticket(t) => ticket_view(county, live, t).map(PanelView::Ticket),
                Focus::Volunteer(v) => volunteer_view(county, live, v).map(PanelView::Volunteer),
                Focus::Incident(i) => incident_view(county, live, i).map(PanelView::Incident),
                Focus::Community(_) => None,
            };
            v.unwrap_or_else(missing)
        }
    }
}

/// The current panel as a table (CSV export): header and rows.
pub fn panel_table(view: &PanelView, now_ms: TimestampMs) -> (Vec<String>, Vec<Vec<String>>) {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let area = |rows: &[AreaRow]| {
        rows.iter()
            .map(|r| {
                let f = &r.figures;
                vec![
                    r.name.clone(),
                    f.open.to_string(),
                    f.overdue.to_string(),
                    f.at_risk.to_string(),
                    f.opened_today.to_string(),
                    f.resolved_today.to_string(),
                    f.on_time_rate
                        .map_or_else(String::new, |v| format!("{:.3}", v)),
                ]
            })
            .collect()
    };
    let area_header = s(&[
        "name",
        "open",
        "overdue",
        "at_risk",
        "opened_today",
        "resolved_today",
        "on_time_rate",
    ]);
    match view {
        PanelView::County(rows) => (area_header, area(rows)),
        PanelView::Community(c) => (area_header, area(&c.grids)),
        PanelView::Grid(g) => (
            s(&[
                "ticket_id",
                "category",
                "status",
                "priority",
                "opened_at",
                "deadline",
                "sla_left_secs",
                "summary",
            ]),
            g.tickets
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.category.to_owned(),
                        t.status.to_owned(),
                        priority_label(t.priority).to_owned(),
                        clock_text(t.opened_at_ms),
                        clock_text(t.deadline_ms),
                        (t.left_ms(now_ms) / 1000).to_string(),
                        t.summary.clone(),
                    ]
                })
                .collect(),
        ),
        PanelView::Ticket(t) => (
            s(&["step", "at", "took_secs"]),
            t.steps
                .iter()
                .map(|st| {
                    vec![
                        st.status.to_owned(),
                        clock_text(st.at_ms),
                        st.took_ms
                            .map_or_else(String::new, |ms| (ms / 1000).to_string()),
                    ]
                })
                .collect(),
        ),
        PanelView::Incident(i) => (
            s(&["kind", "team_or_volunteer", "distance_m", "eta_secs"]),
            i.mobilized
                .iter()
                .map(|t| ("mobilized", t.name.clone(), t.distance_m))
                .chain(
                    i.suggest_teams
                        .iter()
                        .map(|t| ("suggested_team", t.name.clone(), t.distance_m)),
                )
                .chain(
                    i.suggest_volunteers
                        .iter()
                        .map(|v| ("suggested_volunteer", v.name.clone(), Some(v.distance_m))),
                )
                .map(|(k, n, d)| {
                    vec![
                        k.to_owned(),
                        n,
                        d.map_or_else(String::new, |d| format!("{d:.0}")),
                        d.map_or_else(String::new, |d| format!("{:.0}", d / ETA_SPEED_M_PER_S)),
                    ]
                })
                .collect(),
        ),
        PanelView::Volunteer(v) => (
            s(&["id", "name", "team", "status", "grid"]),
            vec![vec![
                v.id.to_string(),
                v.name.clone(),
                v.team.clone(),
                status_label(v.status).to_owned(),
                v.grid.clone(),
            ]],
        ),
        PanelView::Missing(_) => (Vec::new(), Vec::new()),
    }
}

pub fn priority_label(p: Priority) -> &'static str {
    match p {
        Priority::Low => "低 low",
        Priority::Normal => "普通 normal",
        Priority::High => "高 high",
        Priority::Urgent => "紧急 urgent",
    }
}

pub fn status_label(s: VolunteerStatus) -> &'static str {
    match s {
        VolunteerStatus::Available => "在岗 available",
        VolunteerStatus::Responding => "出勤 responding",
        VolunteerStatus::OffDuty => "离岗 off duty",
    }
}

fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Minor => "一般 minor",
        Severity::Moderate => "较大 moderate",
        Severity::Serious => "重大 serious",
        Severity::Major => "特别重大 major",
    }
}

/// Colour of a countdown; breached ones pulse (`pulse` 0–1 from the wall's clock).
pub fn sla_color(state: SlaState, pulse: f32) -> egui::Color32 {
    match state {
        SlaState::OnTrack => theme::TEXT,
        SlaState::Amber => theme::WARN,
        SlaState::Breached => theme::BAD.gamma_multiply(0.55 + 0.45 * pulse),
    }
}

fn minutes(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.0} 秒")
    } else if secs < 3_600.0 {
        format!("{:.0} 分钟", secs / 60.0)
    } else {
        format!("{:.1} 小时", secs / 3_600.0)
    }
}

fn text(s: impl Into<String>, size: f32, color: egui::Color32) -> egui::RichText {
    egui::RichText::new(s.into()).size(size).color(color)
}

fn heading_ui(ui: &mut egui::Ui, title: &str, sub: &str) {
    ui.label(text(title, theme::FONT_PANEL_TITLE, theme::TEXT).strong());
    if !sub.is_empty() {
        ui.label(text(sub, theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
    }
    ui.add_space(6.0);
}

/// Breadcrumbs: each level is a link back to it.
pub fn breadcrumbs_ui(ui: &mut egui::Ui, crumbs: &[String]) -> Option<UiCommand> {
    let mut cmd = None;
    ui.horizontal_wrapped(|ui| {
        for (i, c) in crumbs.iter().enumerate() {
            if i > 0 {
                ui.label(text("›", theme::FONT_PANEL, theme::TEXT_DIM));
            }
            let last = i + 1 == crumbs.len();
            let color = if last { theme::TEXT } else { theme::LINK };
            if ui.link(text(c, theme::FONT_PANEL, color)).clicked() && !last {
                cmd = Some(UiCommand::Back(i));
            }
        }
    });
    cmd
}

fn figures_ui(ui: &mut egui::Ui, f: &Figures) {
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

/// Rows of areas (ranking or grids): name and counts; a click opens the area.
pub fn area_rows_ui(ui: &mut egui::Ui, rows: &[AreaRow], limit: usize) -> Option<UiCommand> {
    area_rows_sel_ui(ui, rows, limit, None)
}

/// The keyboard's row marker.
fn marked(name: &str, selected: bool) -> (String, egui::Color32) {
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
        .num_columns(4)
        .striped(true)
        .spacing([10.0, 3.0])
        .show(ui, |ui| {
            ui.label(text("名称", theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
            ui.label(text("超时", theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
            ui.label(text("临期", theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
            ui.label(text("在办", theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
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
                ui.end_row();
            }
        });
    cmd
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

/// Ticket lines with live countdowns from the server clock.
pub fn ticket_lines_ui(
    ui: &mut egui::Ui,
    lines: &[TicketLine],
    now_ms: TimestampMs,
    pulse: f32,
    limit: usize,
) -> Option<UiCommand> {
    ticket_lines_sel_ui(ui, lines, now_ms, pulse, limit, None)
}

fn ticket_lines_sel_ui(
    ui: &mut egui::Ui,
    lines: &[TicketLine],
    now_ms: TimestampMs,
    pulse: f32,
    limit: usize,
    selected: Option<usize>,
) -> Option<UiCommand> {
    let mut cmd = None;
    egui::Grid::new(ui.next_auto_id())
        .num_columns(3)
        .striped(true)
        .spacing([10.0, 3.0])
        .show(ui, |ui| {
            for (i, t) in lines.iter().take(limit).enumerate() {
                let state = t.sla(now_ms);
                ui.label(
                    text(
                        countdown_text(t.left_ms(now_ms)),
                        theme::FONT_PANEL,
                        sla_color(state, pulse),
                    )
                    .monospace(),
                );
                let (name, color) =
                    marked(&format!("#{} {}", t.id, t.category), selected == Some(i));
                if ui.link(text(name, theme::FONT_PANEL, color)).clicked() {
                    cmd = Some(UiCommand::Open(Focus::Ticket(t.id)));
                }
                ui.label(text(t.status, theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
                ui.end_row();
            }
        });
    if lines.len() > limit {
        ui.label(text(
            format!("… 另有 {} 件 more", lines.len() - limit),
            theme::FONT_PANEL_SMALL,
            theme::TEXT_DIM,
        ));
    }
    cmd
}

fn volunteer_lines_ui(
    ui: &mut egui::Ui,
    lines: &[VolunteerLine],
    selected: Option<usize>,
) -> Option<UiCommand> {
    let mut cmd = None;
    egui::Grid::new(ui.next_auto_id())
        .num_columns(3)
        .spacing([10.0, 3.0])
        .show(ui, |ui| {
            for (i, v) in lines.iter().enumerate() {
                let (name, color) = marked(&v.name, selected == Some(i));
                if ui.link(text(name, theme::FONT_PANEL, color)).clicked() {
                    cmd = Some(UiCommand::Open(Focus::Volunteer(v.id)));
                }
                ui.label(text(&v.team, theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
                ui.label(text(
                    format!("{:.0} m · {}", v.distance_m, minutes(v.eta_secs())),
                    theme::FONT_PANEL_SMALL,
                    theme::TEXT,
                ));
                ui.end_row();
            }
        });
    cmd
}

fn team_lines_ui(ui: &mut egui::Ui, lines: &[TeamLine]) {
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

fn section_ui(ui: &mut egui::Ui, title: &str) {
    ui.add_space(8.0);
    ui.label(text(title, theme::FONT_PANEL_SMALL, theme::ACCENT).strong());
}

/// The drill-down panel for any level.
pub fn panel_ui(
    ui: &mut egui::Ui,
    view: &PanelView,
    now_ms: TimestampMs,
    pulse: f32,
) -> Option<UiCommand> {
    panel_ui_with(ui, view, now_ms, pulse, &PanelExtras::default())
}

/// What a panel shows besides its view: the commands sent about it, the keyboard's row.
#[derive(Default)]
pub struct PanelExtras<'a> {
    pub outbox: Option<&'a Outbox>,
    /// The row of [`list_targets`] the keyboard is on, when this panel has the focus.
    pub selected: Option<usize>,
}

/// The commands sent about a ticket or incident, newest first.
fn sent_ui(ui: &mut egui::Ui, outbox: Option<&Outbox>, incident: bool, id: u64) {
    let Some(outbox) = outbox else { return };
    let mut any = false;
    for s in outbox.about(incident, id).take(4) {
        if !any {
            section_ui(ui, "指令 commands");
            any = true;
        }
        let color = match &s.status {
            super::outbox::SentStatus::Confirmed(_) => theme::GOOD,
            super::outbox::SentStatus::Pending | super::outbox::SentStatus::Accepted => theme::WARN,
            _ => theme::BAD,
        };
        ui.label(text(
            format!("{} — {}", s.action.label(), s.status.label()),
            theme::FONT_PANEL_SMALL,
            color,
        ));
    }
}

/// The colour of an alert's tier.
pub fn tier_color(tier: super::alerts::Tier, pulse: f32) -> egui::Color32 {
    use super::alerts::Tier;
    match tier {
        Tier::Quiet => theme::TEXT_DIM,
        Tier::Attention => theme::WARN,
        Tier::Urgent => sla_color(SlaState::Breached, 1.0),
        Tier::Critical => sla_color(SlaState::Breached, pulse),
    }
}

fn action_button(ui: &mut egui::Ui, label: &str) -> bool {
    ui.button(text(label, theme::FONT_PANEL, theme::TEXT))
        .clicked()
}

/// Like [`panel_ui`], with the commands sent and the keyboard's row.
pub fn panel_ui_with(
    ui: &mut egui::Ui,
    view: &PanelView,
    now_ms: TimestampMs,
    pulse: f32,
    extras: &PanelExtras<'_>,
) -> Option<UiCommand> {
    let sel = extras.selected;
    let mut cmd = None;
    let mut take = |c: Option<UiCommand>| {
        if c.is_some() {
            cmd = c;
        }
    };
    match view {
        PanelView::County(rows) => {
            heading_ui(
                ui,
                "社区排行 ranking",
                "超时 → 临期 → 在办 · most overdue first",
            );
            take(area_rows_sel_ui(ui, rows, 40, sel));
        }
        PanelView::Community(c) => {
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
            take(area_rows_sel_ui(ui, &c.grids, 40, sel));
        }
        PanelView::Grid(g) => {
            heading_ui(
                ui,
                &g.name,
                &format!("{} · {} 户", g.community, g.households),
            );
            figures_ui(ui, &g.figures);
            section_ui(ui, "1+4+X 网格力量 staff");
            for (role, name) in &g.staff {
                ui.label(text(
                    format!("{role} {name}"),
                    theme::FONT_PANEL_SMALL,
                    theme::TEXT,
                ));
            }
            section_ui(
                ui,
                "在办工单 open tickets (离超时最近在前 soonest breach first)",
            );
            take(ticket_lines_sel_ui(
                ui,
                &g.tickets,
                now_ms,
                pulse,
                GRID_TICKETS,
                sel,
            ));
            section_ui(ui, "附近志愿者 volunteers nearby");
            let shown = g.tickets.len().min(GRID_TICKETS);
            take(volunteer_lines_ui(
                ui,
                &g.nearby,
                sel.and_then(|s| s.checked_sub(shown)),
            ));
        }
        PanelView::Ticket(t) => {
            heading_ui(
                ui,
                &format!("工单 #{} {}", t.line.id, t.line.category),
                &t.line.summary,
            );
            if t.open {
                let state = t.line.sla(now_ms);
                ui.label(
                    text(
                        format!("剩余 time left {}", countdown_text(t.line.left_ms(now_ms))),
                        theme::FONT_PANEL_TITLE,
                        sla_color(state, pulse),
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
                take(ticket_actions_ui(ui, t, pulse, sel));
            }
            sent_ui(ui, extras.outbox, false, t.line.id);
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
        }
        PanelView::Incident(i) => {
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
            let elapsed = (now_ms - i.opened_at_ms).max(0) / 1000;
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
                        sla_color(SlaState::Breached, pulse)
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
                    take(Some(UiCommand::Act(Action::Dispatch(
                        i.id,
                        i.suggest_teams.iter().map(|t| t.id).collect(),
                    ))));
                }
                section_ui(ui, "最近可用志愿者 nearest available volunteers");
                take(volunteer_lines_ui(ui, &i.suggest_volunteers, sel));
            }
            sent_ui(ui, extras.outbox, true, i.id);
        }
        PanelView::Volunteer(v) => {
            heading_ui(ui, &v.name, &v.team);
            ui.label(text(
                format!("状态 status: {}", status_label(v.status)),
                theme::FONT_PANEL,
                theme::TEXT,
            ));
            ui.label(text(
                format!("网格 grid: {}", v.grid),
                theme::FONT_PANEL_SMALL,
                theme::TEXT,
            ));
            if let Some(p) = v.pos {
                ui.label(text(
                    format!("位置 position: {:.5}, {:.5}", p.lon, p.lat),
                    theme::FONT_PANEL_SMALL,
                    theme::TEXT,
                ));
            }
            if let Some(t) = v.last_fix_ms {
                ui.label(text(
                    format!("最近定位 last fix: {}", clock_text(t)),
                    theme::FONT_PANEL_SMALL,
                    theme::TEXT,
                ));
            }
            ui.label(text(
                format!("技能 skills: {}", v.skills),
                theme::FONT_PANEL_SMALL,
                theme::TEXT,
            ));
            if let Some(task) = v.task {
                let label = match task {
                    Focus::Ticket(t) => format!("当前任务 task: 工单 #{t}"),
                    Focus::Incident(i) => format!("当前任务 task: 事件 #{i}"),
                    _ => String::new(),
                };
                if ui
                    .link(text(label, theme::FONT_PANEL, theme::LINK))
                    .clicked()
                {
                    cmd = Some(UiCommand::Open(task));
                }
            }
        }
        PanelView::Missing(what) => {
            heading_ui(
                ui,
                what,
                "已不在实时数据中 no longer in the live data · Esc 返回 back",
            );
        }
    }
    cmd
}

/// The ticket panel's actions: 督办, the alert's acknowledgement, 派单 candidates.
fn ticket_actions_ui(
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

/// Where a focus is on the ground: its area's points or its position (the camera flies there).
pub fn focus_points(f: Focus, county: &County, live: Option<&LiveState>) -> Vec<LonLat> {
    use geo::CoordsIter;
    let ring = |p: &geo::Polygon<f64>| {
        p.exterior()
            .coords_iter()
            .map(|c| LonLat::new(c.x, c.y))
            .collect()
    };
    match f {
        Focus::Community(c) => county
            .pack
            .communities
            .get(c)
            .map(|c| ring(&c.area))
            .unwrap_or_default(),
        Focus::Grid(g) => county.grid(g).map(|g| ring(&g.area)).unwrap_or_default(),
        Focus::Ticket(t) => live
            .and_then(|l| l.tickets.get(&t))
            .map(|t| vec![t.pos])
            .unwrap_or_default(),
        Focus::Incident(i) => live
            .and_then(|l| l.incidents.get(&i))
            .map(|i| vec![i.pos])
            .unwrap_or_default(),
        Focus::Volunteer(v) => live
            .and_then(|l| l.volunteer(v))
            .and_then(|v| v.pos)
            .map(|p| vec![p])
            .unwrap_or_default(),
    }
}

/// The view for the current focus, rebuilt when the focus, the analytics or the tickets move
/// (at most 4 times a second: a grid's ticket list walks the open tickets).
#[derive(Resource, Default)]
pub struct PanelCache {
    pub view: Option<Arc<PanelView>>,
    key: Option<(Option<Focus>, u64, u64)>,
    at: Option<std::time::Instant>,
}

impl PanelCache {
    /// Rebuild if stale; returns the view to draw.
    pub fn refresh(
        &mut self,
        focus: Option<Focus>,
        generation: u64,
        changes: u64,
        build: impl FnOnce() -> PanelView,
    ) -> Arc<PanelView> {
        let key = (focus, generation, changes);
        let focus_moved = self.key.is_none_or(|k| k.0 != focus);
        let recent = self
            .at
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(250));
        match &self.view {
            Some(v) if !focus_moved && (self.key == Some(key) || recent) => Arc::clone(v),
            _ => {
                let v = Arc::new(build());
                self.view = Some(Arc::clone(&v));
                self.key = Some(key);
                self.at = Some(std::time::Instant::now());
                v
            }
        }
    }
}

/// Where exports (CSV tables, PNG views) go: `$DATAWALL_EXPORT_DIR` or `./datawall-exports`.
pub fn export_dir() -> std::path::PathBuf {
    std::env::var_os("DATAWALL_EXPORT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("datawall-exports"))
}

/// Write a table as CSV; returns the file written.
pub fn write_csv(
    dir: &std::path::Path,
    stem: &str,
    header: &[String],
    rows: &[Vec<String>],
) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{stem}.csv"));
    let mut w = csv::Writer::from_path(&path)?;
    w.write_record(header)?;
    for r in rows {
        w.write_record(r)?;
    }
    w.flush()?;
    Ok(path)
}

/// File-name stem for an export of the current focus at `now_ms`.
pub fn export_stem(focus: Option<Focus>, now_ms: TimestampMs) -> String {
    let what = match focus {
        None => "county-ranking".to_owned(),
        Some(Focus::Community(c)) => format!("community-{c}"),
        Some(Focus::Grid(g)) => format!("grid-{g}"),
        Some(Focus::Ticket(t)) => format!("ticket-{t}"),
        Some(Focus::Volunteer(v)) => format!("volunteer-{v}"),
        Some(Focus::Incident(i)) => format!("incident-{i}"),
    };
    format!("{what}-{}", clock_text(now_ms).replace(':', ""))
}

/// A short message shown under the panels (what was exported and where).
#[derive(Resource, Default)]
pub struct Toast(pub Option<(String, std::time::Instant)>);

impl Toast {
    pub fn show(&mut self, text: impl Into<String>) {
        let text = text.into();
        info!("{text}");
        self.0 = Some((text, std::time::Instant::now()));
    }
}

/// The search box (`/`).
#[derive(Resource, Default)]
pub struct SearchBox {
    pub open: bool,
    pub query: String,
    /// Focus the text field on the next frame.
    grab: bool,
}

/// The search box: type, `Enter` opens the first hit, a click opens any; `Esc` closes.
pub fn search_ui(
    ui: &mut egui::Ui,
    search: &mut SearchBox,
    hits: &[(Focus, String)],
) -> Option<UiCommand> {
    let mut cmd = None;
    ui.label(text(
        "搜索 search: 工单号 / 社区 / 网格 / 志愿者",
        theme::FONT_PANEL_SMALL,
        theme::TEXT_DIM,
    ));
    let edit = ui.add(
        egui::TextEdit::singleline(&mut search.query)
            .font(egui::FontId::proportional(theme::FONT_PANEL_TITLE))
            .desired_width(f32::INFINITY),
    );
    if search.grab {
        edit.request_focus();
        search.grab = false;
    }
    let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    let escape = ui.input(|i| i.key_pressed(egui::Key::Escape));
    for (i, (focus, label)) in hits.iter().enumerate() {
        if ui
            .link(text(label, theme::FONT_PANEL, theme::TEXT))
            .clicked()
            || (enter && i == 0)
        {
            cmd = Some(UiCommand::Open(*focus));
        }
    }
    if !search.query.trim().is_empty() && hits.is_empty() {
        ui.label(text("无结果 no match", theme::FONT_PANEL, theme::TEXT_DIM));
    }
    if cmd.is_some() || escape {
        search.open = false;
        search.query.clear();
    }
    cmd
}

/// The alert ticker: breach alerts (those needing acknowledgement first, coloured by tier),
/// then the newest `n` feed alerts, newest first; a click opens one.
pub fn ticker_ui(
    ui: &mut egui::Ui,
    breaches: &[AlertLine],
    alerts: &std::collections::VecDeque<super::feed::Alert>,
    n: usize,
    pulse: f32,
) -> Option<UiCommand> {
    let mut cmd = None;
    if !breaches.is_empty() {
        let waiting = breaches.iter().filter(|b| b.acked.is_none()).count();
        ui.horizontal(|ui| {
            ui.label(
                text(
                    format!("⏰ 超时告警 breaches · {waiting} 待确认 to acknowledge"),
                    theme::FONT_PANEL_SMALL,
                    if waiting > 0 {
                        theme::BAD
                    } else {
                        theme::TEXT_DIM
                    },
                )
                .strong(),
            );
        });
        for b in breaches {
            let label = format!(
                "{} [{}] {}",
                clock_text(b.raised_at_ms),
                b.tier.label_zh(),
                b.text()
            );
            if ui
                .link(text(
                    label,
                    theme::FONT_PANEL_SMALL,
                    tier_color(b.tier, pulse),
                ))
                .clicked()
            {
                cmd = Some(UiCommand::Open(Focus::Ticket(b.ticket_id)));
            }
        }
    }
    ui.horizontal(|ui| {
        ui.label(text("⚠ 动态 alerts", theme::FONT_PANEL_SMALL, theme::WARN).strong());
        for a in alerts.iter().rev().take(n) {
            ui.add_space(10.0);
            let label = format!("{} {}", clock_text(a.at_ms), a.text);
            if ui
                .link(text(label, theme::FONT_PANEL_SMALL, theme::TEXT))
                .clicked()
            {
                cmd = Some(UiCommand::Open(a.focus));
            }
        }
    });
    cmd
}

/// The operators' notes a panel on `focus` lists.
fn notes_of<'a>(
    focus: Focus,
    county: &County,
    all: &'a std::collections::BTreeMap<String, crate::protocol::entities::Annotation>,
) -> Vec<&'a crate::protocol::entities::Annotation> {
    use super::notes::{Of, of};
    match focus {
        Focus::Grid(g) => of(all, Of::Grids(&[g])),
        Focus::Ticket(t) => of(all, Of::Ticket(t)),
        Focus::Incident(i) => of(all, Of::Incident(i)),
        Focus::Community(c) => {
            let Some(code) = county.pack.communities.get(c).map(|c| c.code) else {
                return Vec::new();
            };
            let grids: Vec<GridId> = county.pack.grids_of(code).map(|g| g.id).collect();
            of(all, Of::Grids(&grids))
        }
        Focus::Volunteer(_) => Vec::new(),
    }
}

/// A map click becomes the drill-down focus: a ticket beats a volunteer beats the grid.
fn selection_to_drill(
    selection: Res<super::camera::Selection>,
    model: Res<super::feed::WallModel>,
    mut drill: ResMut<Drill>,
    mut fly: ResMut<super::camera::FlyTo>,
) {
    if !selection.is_changed() || selection.is_added() {
        return;
    }
    let focus = selection
        .ticket
        .map(Focus::Ticket)
        .or(selection.volunteer.map(Focus::Volunteer))
        .or(selection.grid.map(Focus::Grid));
    match focus {
        Some(f) => {
            drill.apply(UiCommand::Open(f), &model.county, model.live());
            fly.to(
                focus_points(f, &model.county, model.live()),
                &model.county,
                false,
            );
        }
        None => drill.path.clear(),
    }
}

/// `Esc` goes up a level (after the help overlay, which `Esc` closes first).
pub fn drill_keys(
    keys: Res<ButtonInput<KeyCode>>,
    layers: Res<super::nav::Layers>,
    mut drill: ResMut<Drill>,
    model: Res<super::feed::WallModel>,
    mut fly: ResMut<super::camera::FlyTo>,
    mut search: ResMut<SearchBox>,
    egui_input: Option<Res<bevy_egui::input::EguiWantsInput>>,
) {
    if search.open || egui_input.is_some_and(|e| e.wants_keyboard_input()) {
        return;
    }
    let shift = keys.pressed(KeyCode::ShiftLeft) || keys.pressed(KeyCode::ShiftRight);
    if keys.just_pressed(KeyCode::Slash) && !shift {
        search.open = true;
        search.grab = true;
        return;
    }
    if keys.just_pressed(KeyCode::Escape) && !layers.help && !drill.path.is_empty() {
        drill.up();
        match drill.focus() {
            Some(f) => fly.to(
                focus_points(f, &model.county, model.live()),
                &model.county,
                false,
            ),
            None => fly.county(),
        }
    }
}

/// `E` writes the current panel's table as CSV, `P` the current view as PNG.
fn export_keys(
    mut commands: Commands,
    keys: Res<ButtonInput<KeyCode>>,
    drill: Res<Drill>,
    cache: Res<PanelCache>,
    model: Res<super::feed::WallModel>,
    mut toast: ResMut<Toast>,
    egui_input: Option<Res<bevy_egui::input::EguiWantsInput>>,
) {
    if egui_input.is_some_and(|e| e.wants_keyboard_input()) {
        return;
    }
    let dir = export_dir();
    let stem = export_stem(drill.focus(), model.now_ms());
    if keys.just_pressed(KeyCode::KeyE) {
        let Some(view) = cache.view.as_deref() else {
            return;
        };
        let (header, rows) = panel_table(view, model.now_ms());
        match write_csv(&dir, &stem, &header, &rows) {
            Ok(p) => toast.show(format!(
                "已导出 exported {} rows → {}",
                rows.len(),
                p.display()
            )),
            Err(e) => toast.show(format!(
                "导出失败 export failed: {e} (check that {} is writable)",
                dir.display()
            )),
        }
    }
    if keys.just_pressed(KeyCode::KeyP) {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            toast.show(format!(
                "截图失败 screenshot failed: {e} (check that {} is writable)",
                dir.display()
            ));
            return;
        }
        let path = dir.join(format!("{stem}.png"));
        toast.show(format!("截图 view saved → {}", path.display()));
        commands
            .spawn(bevy::render::view::screenshot::Screenshot::primary_window())
            .observe(bevy::render::view::screenshot::save_to_disk(path));
    }
}

/// Draw the ranking column, the drill-down panel with breadcrumbs, and the toast.
#[allow(clippy::too_many_arguments)]
fn panels_ui(
    mut contexts: bevy_egui::EguiContexts,
    model: Res<super::feed::WallModel>,
    stats: Res<super::stats::Stats>,
    mut drill: ResMut<Drill>,
    mut cache: ResMut<PanelCache>,
    mut ranking: Local<PanelCache>,
    mut fly: ResMut<super::camera::FlyTo>,
    toast: Res<Toast>,
    time: Res<Time>,
    mut search: ResMut<SearchBox>,
    key_focus: Res<super::outbox::KeyFocus>,
    mut requests: ResMut<Requests>,
    mut go_to: ResMut<super::notes::GoTo>,
    mut after_action: ResMut<super::after_action::Request>,
) -> Result {
    use super::outbox::FocusArea;
    let ctx = contexts.ctx_mut()?;
    let now = model.now_ms();
    let pulse = 0.5 + 0.5 * (time.elapsed_secs() * std::f32::consts::TAU).sin();
    let a = stats.latest.as_deref();
    let live = model.live();
    let county = &model.county;
    let top = super::theme::TOP_BAR_PX + 8.0;
    let height = ctx.viewport_rect().height() - top - 12.0;
    let frame = egui::Frame::default()
        .fill(theme::PANEL_BG)
        .inner_margin(egui::Margin::same(12))
        .corner_radius(4.0);
    let mut cmd = None;
    // Left: the community ranking, always.
    let rank = ranking.refresh(None, stats.generation, 0, || {
        panel_view(None, county, live, a, None)
    });
    egui::Area::new("ranking".into())
        .fixed_pos(egui::pos2(12.0, top))
        .show(ctx, |ui| {
            frame.show(ui, |ui| {
                ui.set_width(theme::RANKING_PX - 24.0);
                ui.set_max_height(height * 0.62);
                egui::ScrollArea::vertical()
                    .id_salt("ranking_scroll")
                    .show(ui, |ui| {
                        if a.is_none() {
                            ui.label(text(
                                "统计中 computing…",
                                theme::FONT_PANEL,
                                theme::TEXT_DIM,
                            ));
                        }
                        let extras = PanelExtras {
                            outbox: None,
                            selected: key_focus.row_in(FocusArea::Ranking),
                        };
                        if let Some(c) = panel_ui_with(ui, &rank, now, pulse, &extras) {
                            cmd = Some(c);
                        }
                    });
            });
        });
    // Right: the drill-down, when something is selected.
    if let Some(focus) = drill.focus() {
        let view = cache.refresh(Some(focus), stats.generation, model.ticket_changes, || {
            panel_view(Some(focus), county, live, a, Some(&model.open_by_grid))
        });
        let right = ctx.viewport_rect().right() - 12.0 - theme::DRILL_PX;
        egui::Area::new("drill".into())
            .fixed_pos(egui::pos2(right, top))
            .show(ctx, |ui| {
                frame.show(ui, |ui| {
                    ui.set_width(theme::DRILL_PX - 24.0);
                    ui.set_max_height(height);
                    if let Some(c) = breadcrumbs_ui(ui, &breadcrumbs(&drill, county)) {
                        cmd = Some(c);
                    }
                    ui.separator();
                    egui::ScrollArea::vertical()
                        .id_salt("drill_scroll")
                        .show(ui, |ui| {
                            let extras = PanelExtras {
                                outbox: Some(&model.outbox),
                                selected: key_focus.row_in(FocusArea::Panel),
                            };
                            // The operators' notes first: what the room already knows.
                            if let Some(all) = model.mirror.state.as_ref().map(|s| &s.annotations)
                                && let Some(t) =
                                    super::notes::section_ui(ui, &notes_of(focus, county, all))
                            {
                                go_to.0 = Some(t);
                            }
                            if let Focus::Incident(i) = focus
                                && let Some(id) =
                                    super::after_action::section_ui(ui, county, &model, i)
                            {
                                after_action.0 = Some(id);
                            }
                            if let Some(c) = panel_ui_with(ui, &view, now, pulse, &extras) {
                                cmd = Some(c);
                            }
                        });
                });
            });
    } else {
        cache.view = Some(Arc::clone(&rank));
    }
    if search.open {
        let hits = search_hits(&search.query, county, live);
        egui::Area::new("search".into())
            .anchor(egui::Align2::CENTER_TOP, egui::vec2(0.0, top + 40.0))
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                frame.show(ui, |ui| {
                    ui.set_width(520.0);
                    if let Some(c) = search_ui(ui, &mut search, &hits) {
                        cmd = Some(c);
                    }
                });
            });
    }
    let breaches = live
        .map(|l| super::alerts::alert_lines(l, 4))
        .unwrap_or_default();
    if !model.alerts.is_empty() || !breaches.is_empty() {
        // Above the time bar while a moment is replayed.
        let lift = if model.replay.is_some() { -76.0 } else { -12.0 };
        egui::Area::new("ticker".into())
            .anchor(egui::Align2::CENTER_BOTTOM, egui::vec2(0.0, lift))
            .show(ctx, |ui| {
                egui::Frame::default()
                    .fill(theme::TICKER_BG)
                    .inner_margin(egui::Margin::symmetric(12, 6))
                    .corner_radius(4.0)
                    .show(ui, |ui| {
                        if let Some(c) = ticker_ui(ui, &breaches, &model.alerts, 3, pulse) {
                            cmd = Some(c);
                        }
                    });
            });
    }
    if let Some((msg, at)) = &toast.0
        && at.elapsed() < std::time::Duration::from_secs(10)
    {
        egui::Area::new("toast".into())
            // Under the top bar: the ticker grows at the bottom.
            .anchor(egui::Align2::CENTER_TOP, egui::vec2(0.0, top + 8.0))
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                egui::Frame::default()
                    .fill(theme::TOAST_BG)
                    .inner_margin(egui::Margin::symmetric(14, 8))
                    .show(ui, |ui| ui.label(text(msg, theme::FONT_PANEL, theme::TEXT)));
            });
    }
    if let Some(UiCommand::Act(a)) = &cmd {
        requests.0.push(a.clone());
    } else if let Some(c) = cmd {
        drill.apply(c, county, live);
        match drill.focus() {
            Some(f) => fly.to(focus_points(f, county, live), county, false),
            None => fly.county(),
        }
    }
    Ok(())
}

fn search_hits(query: &str, county: &County, live: Option<&LiveState>) -> Vec<(Focus, String)> {
    search(query, county, live, 12)
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Drill>()
        .init_resource::<Requests>()
        .init_resource::<super::outbox::KeyFocus>()
        .init_resource::<SearchBox>()
        .init_resource::<PanelCache>()
        .init_resource::<Toast>()
        .add_systems(
            Update,
            (
                selection_to_drill.after(super::camera::click_pick),
                drill_keys.before(super::camera::layer_keys),
                export_keys,
            )
                .in_set(super::nav::WallSet::Input),
        )
        .add_systems(
            bevy_egui::EguiPrimaryContextPass,
            panels_ui.after(super::ui::wall_ui),
        );
}
