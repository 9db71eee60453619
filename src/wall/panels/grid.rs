//! A grid's panel: figures, the "1+4+X" staff, open tickets soonest breach first, volunteers nearby.

#[allow(unused_imports)]
use super::*;

/// Open tickets listed in a grid panel.
pub(super) const GRID_TICKETS: usize = 30;

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
    /// The "X": volunteers who live in the grid.
    pub resident_volunteers: usize,
    /// Its grid party groups and centre households (中心户).
    pub party_groups: u32,
    pub centre_households: u32,
    pub figures: Figures,
    /// Open tickets, soonest breach first (the most overdue at the top).
    pub tickets: Vec<TicketLine>,
    /// On-duty volunteers within [`NEARBY_M`] of the grid's centre, nearest first.
    pub nearby: Vec<VolunteerLine>,
}

pub(super) fn ticket_line(t: &crate::model::Ticket) -> TicketLine {
    TicketLine {
        id: t.id,
        summary: t.summary.to_string(),
        category: t.category.label_zh(),
        status: t.status.label_zh(),
        priority: t.priority,
        opened_at_ms: t.opened_at_ms,
        deadline_ms: t.sla_deadline_ms,
    }
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

/// The grid panel; `index` (the analytics' ticket store, which holds each ticket's grid and
/// whether it is open in narrow columns) avoids walking every ticket.
pub fn grid_view(
    county: &County,
    live: &LiveState,
    a: Option<&Analytics>,
    id: GridId,
    index: Option<&TicketStore>,
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
            .open_in_grid(slot)
            .filter_map(|t| live.tickets.get(&t).map(|t| &**t))
            .filter(|t| t.status.is_open() && t.grid_id == Some(id))
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
        resident_volunteers: county
            .pack
            .volunteers
            .iter()
            .filter(|v| v.home_grid_id == id)
            .count(),
        party_groups: g.party_groups,
        centre_households: g.centre_households,
        figures: a
            .and_then(|a| a.grids.get(slot))
            .copied()
            .unwrap_or_default(),
        tickets,
        nearby: volunteers_near(county, live, g.label, NEARBY_M, 8, false),
    })
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

pub(super) fn ticket_lines_sel_ui(
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

pub(super) fn volunteer_lines_ui(
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

/// Draw the grid panel; what a click asks for.
pub fn grid_ui(ui: &mut egui::Ui, g: &GridView, cx: &Cx<'_>) -> Option<UiCommand> {
    let sel = cx.extras.selected;
    let mut asked = Asked::default();
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
    ui.label(text(
        format!("X 志愿者 volunteers living here: {}", g.resident_volunteers),
        theme::FONT_PANEL_SMALL,
        theme::TEXT,
    ));
    ui.label(text(
        format!(
            "网格党小组 party group: {} · 中心户 centre households: {}",
            if g.party_groups > 0 {
                format!("{} 个", g.party_groups)
            } else {
                "无 none".to_owned()
            },
            g.centre_households
        ),
        theme::FONT_PANEL_SMALL,
        theme::TEXT,
    ));
    section_ui(
        ui,
        "在办工单 open tickets (离超时最近在前 soonest breach first)",
    );
    asked.take(ticket_lines_sel_ui(
        ui,
        &g.tickets,
        cx.now_ms,
        cx.pulse,
        GRID_TICKETS,
        sel,
    ));
    section_ui(ui, "附近志愿者 volunteers nearby");
    let shown = g.tickets.len().min(GRID_TICKETS);
    asked.take(volunteer_lines_ui(
        ui,
        &g.nearby,
        sel.and_then(|s| s.checked_sub(shown)),
    ));
    asked.0
}
