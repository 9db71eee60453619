//! Drill-down panels: county ranking → community → grid → ticket / volunteer / incident, with
//! breadcrumbs. Views are plain structs built from the model and the analytics (no bevy);
//! `*_ui` functions draw a view and return a [`UiCommand`]; the bevy systems are thin adapters.

mod community;
mod export;
mod grid;
mod incident;
mod ranking;
mod search;
mod team;
mod ticket;
mod volunteer;

pub use community::*;
pub use export::*;
pub use grid::*;
pub use incident::*;
pub use ranking::*;
pub use search::*;
pub use team::*;
pub use ticket::*;
pub use volunteer::*;

use std::sync::Arc;

use bevy::prelude::*;
use bevy_egui::egui;

use super::alerts::AlertLine;
use super::nav::volunteer_record;
pub use super::nav::{Drill, Focus, UiCommand, breadcrumbs, focus_label, path_to};
use super::outbox::{Action, Outbox};
use super::theme;
use crate::analytics::store::TicketStore;
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
        PanelView::Team(t) => t
            .members
            .iter()
            .map(|m| open(Focus::Volunteer(m.id)))
            .collect(),
        _ => Vec::new(),
    }
}

fn team_name(county: &County, id: crate::protocol::TeamId) -> String {
    county.team(id).map_or_else(String::new, |t| t.name.clone())
}

/// The panel for the current focus, built once and redrawn every frame.
#[derive(Clone, Debug, PartialEq)]
pub enum PanelView {
    County(Vec<AreaRow>),
    Community(Box<CommunityView>),
    Team(Box<TeamView>),
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
    index: Option<&TicketStore>,
) -> PanelView {
    let missing = || PanelView::Missing(focus.map_or_else(String::new, |f| focus_label(f, county)));
    match focus {
        None => PanelView::County(a.map(|a| ranking_rows(county, a)).unwrap_or_default()),
        Some(Focus::Community(c)) => {
            community_view(county, a, c).map_or_else(missing, |v| PanelView::Community(Box::new(v)))
        }
        Some(f) => {
            let Some(live) = live else { return missing() };
            let v = match f {
                Focus::Grid(g) => grid_view(county, live, a, g, index).map(PanelView::Grid),
                Focus::Ticket(t) => ticket_view(county, live, t).map(PanelView::Ticket),
                Focus::Volunteer(v) => volunteer_view(county, live, v).map(PanelView::Volunteer),
                Focus::Incident(i) => incident_view(county, live, i).map(PanelView::Incident),
                Focus::Team(t) => team_view(county, live, t).map(|v| PanelView::Team(Box::new(v))),
                Focus::Community(_) => None,
            };
            v.unwrap_or_else(missing)
        }
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

/// What every view's drawing gets besides its view: the moment shown, the pulse of urgent
/// colours, the sent commands and the keyboard's row.
#[derive(Clone, Copy)]
pub struct Cx<'a> {
    pub now_ms: TimestampMs,
    pub pulse: f32,
    pub extras: &'a PanelExtras<'a>,
}

/// What a view's clicks asked for: the last one wins.
#[derive(Default)]
pub(super) struct Asked(Option<UiCommand>);

impl Asked {
    fn take(&mut self, c: Option<UiCommand>) {
        if c.is_some() {
            self.0 = c;
        }
    }
}

/// Like [`panel_ui`], with the commands sent and the keyboard's row.
pub fn panel_ui_with(
    ui: &mut egui::Ui,
    view: &PanelView,
    now_ms: TimestampMs,
    pulse: f32,
    extras: &PanelExtras<'_>,
) -> Option<UiCommand> {
    let cx = Cx {
        now_ms,
        pulse,
        extras,
    };
    match view {
        PanelView::County(rows) => ranking::ranking_ui(ui, rows, &cx),
        PanelView::Community(c) => community::community_ui(ui, c, &cx),
        PanelView::Grid(g) => grid::grid_ui(ui, g, &cx),
        PanelView::Ticket(t) => ticket::ticket_ui(ui, t, &cx),
        PanelView::Incident(i) => incident::incident_ui(ui, i, &cx),
        PanelView::Volunteer(v) => volunteer::volunteer_ui(ui, v, &cx),
        PanelView::Team(t) => team::team_ui(ui, t, &cx),
        PanelView::Missing(what) => {
            heading_ui(
                ui,
                what,
                "已不在实时数据中 no longer in the live data · Esc 返回 back",
            );
            None
        }
    }
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
        // Its area and where its members are.
        Focus::Team(t) => team_area(county, t)
            .into_iter()
            .filter_map(|g| county.grid(g))
            .flat_map(|g| ring(&g.area))
            .chain(
                live.into_iter()
                    .flat_map(|l| l.volunteers.iter())
                    .filter(|v| v.team_id == t)
                    .filter_map(|v| v.pos),
            )
            .collect(),
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
        Focus::Volunteer(_) | Focus::Team(_) => Vec::new(),
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

/// Draw the ranking column, the drill-down panel with breadcrumbs, and the toast.
#[allow(clippy::too_many_arguments)]
pub(super) fn panels_ui(
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
    (mut learnt, mut changes): (MessageReader<super::nav::Learnt>, Local<u64>),
    layout: Res<super::layout::Layout>,
) -> Result {
    use super::layout::{Card, Dock};
    // The open panel is rebuilt when the state shown changed beyond volunteers' positions.
    *changes += learnt.read().filter(|l| l.beyond_fixes()).count() as u64;
    use super::outbox::FocusArea;
    let ctx = contexts.ctx_mut()?;
    let now = model.now_ms();
    let pulse = 0.5 + 0.5 * (time.elapsed_secs() * std::f32::consts::TAU).sin();
    let a = stats.latest.as_deref();
    let live = model.live();
    let county = &model.county;
    let layout = &*layout;
    let top = if layout.wall {
        layout.dock(Dock::TopLeft).min.y
    } else {
        super::theme::TOP_BAR_PX + 8.0
    };
    let height = if layout.wall {
        layout.dock(Dock::TopRight).height()
    } else {
        ctx.viewport_rect().height() - top - 12.0
    };
    let frame = egui::Frame::default()
        .fill(theme::PANEL_BG)
        .inner_margin(egui::Margin::same(12))
        .corner_radius(4.0);
    let mut cmd = None;
    // Left: the community ranking, always.
    let rank = ranking.refresh(None, stats.generation, 0, || {
        panel_view(None, county, live, a, None)
    });
    let ranking_at = if layout.wall {
        layout.dock(Dock::TopLeft).min
    } else {
        egui::pos2(12.0, top)
    };
    egui::Area::new("ranking".into())
        .fixed_pos(ranking_at)
        .show(ctx, |ui| {
            if layout.shows(Card::Ranking) {
                return;
            }
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
        let view = cache.refresh(Some(focus), stats.generation, *changes, || {
            let mut v = panel_view(Some(focus), county, live, a, Some(&model.ticket_store));
            if let PanelView::Community(c) = &mut v {
                c.compare(stats.past());
            }
            v
        });
        let right = if layout.wall {
            layout.dock(Dock::TopRight).max.x - theme::DRILL_PX
        } else {
            ctx.viewport_rect().right() - 12.0 - theme::DRILL_PX
        };
        egui::Area::new("drill".into())
            .fixed_pos(egui::pos2(right, top))
            .show(ctx, |ui| {
                if layout.wall {
                    // Inside its map panel, whatever it holds.
                    ui.set_clip_rect(layout.dock(Dock::TopRight));
                }
                frame.show(ui, |ui| {
                    ui.set_width(theme::DRILL_PX - 24.0);
                    // Less the frame's margins: the panel ends where its space does.
                    ui.set_max_height(height - 24.0);
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
        let at = if layout.wall {
            egui::pos2(layout.dock(Dock::TopLeft).center().x - 270.0, top + 40.0)
        } else {
            egui::pos2(ctx.viewport_rect().center().x - 270.0, top + 40.0)
        };
        egui::Area::new("search".into())
            .fixed_pos(at)
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
    if (!model.alerts.is_empty() || !breaches.is_empty()) && !layout.shows(Card::Alerts) {
        // Above the time bar while a moment is replayed.
        let lift = if model.replay.is_some() { -76.0 } else { -12.0 };
        let area = egui::Area::new("ticker".into());
        let area = if layout.wall {
            // Bottom right of the map (the legend is bottom left).
            let d = layout.dock(Dock::BottomRight);
            area.pivot(egui::Align2::RIGHT_BOTTOM)
                .fixed_pos(egui::pos2(d.max.x, d.max.y + lift + 12.0))
        } else {
            area.anchor(egui::Align2::CENTER_BOTTOM, egui::vec2(0.0, lift))
        };
        area.show(ctx, |ui| {
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
        let area = egui::Area::new("toast".into());
        let area = if layout.wall {
            let d = layout.dock(Dock::TopLeft);
            area.pivot(egui::Align2::CENTER_TOP)
                .fixed_pos(egui::pos2(d.center().x, top + 8.0))
        } else {
            // Under the top bar: the ticker grows at the bottom.
            area.anchor(egui::Align2::CENTER_TOP, egui::vec2(0.0, top + 8.0))
        };
        area.order(egui::Order::Foreground).show(ctx, |ui| {
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
