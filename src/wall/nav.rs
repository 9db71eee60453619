//! The ground floor of the wall that every plugin may read, importing no other view: what is
//! selected and where (`Focus`, the drill-down path `Drill`, `UiCommand`, the camera's flight
//! to it `FlyTo`), the switches of the map layers and their keys, the camera's marker, the
//! world projection, the open tickets by grid, and what the state shown learnt (`Learnt`).
//! Views, input and panels meet here instead of in each other.

use bevy::prelude::*;

use super::outbox::Action;
use crate::model::geom::LocalProjection;
use crate::model::{Change, County, LiveState};
use crate::protocol::{GridId, IncidentId, LonLat, TicketId, VolunteerId};

/// One level of the drill-down below the county.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Focus {
    /// Slot in `pack.communities`.
    Community(usize),
    Grid(GridId),
    Ticket(TicketId),
    Volunteer(VolunteerId),
    Incident(IncidentId),
    /// A volunteer team (its members, what they do, its area).
    Team(crate::protocol::TeamId),
}

/// What a panel asks the wall to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UiCommand {
    /// Select this and fly to it.
    Open(Focus),
    /// Keep the first `n` levels (0: back to the county).
    Back(usize),
    /// Act: send a command (`super::actions` takes it from `panels::Requests`).
    Act(Action),
}

/// The drill-down path; empty at the county.
#[derive(Resource, Clone, Debug, Default, PartialEq, Eq)]
pub struct Drill {
    pub path: Vec<Focus>,
}

impl Drill {
    pub fn focus(&self) -> Option<Focus> {
        self.path.last().copied()
    }

    /// `Esc`: one level up.
    pub fn up(&mut self) {
        self.path.pop();
    }

    pub fn apply(&mut self, cmd: UiCommand, county: &County, live: Option<&LiveState>) {
        match cmd {
            UiCommand::Open(f) => self.path = path_to(f, county, live),
            UiCommand::Back(n) => self.path.truncate(n),
            UiCommand::Act(_) => {}
        }
    }
}

fn community_of_grid(county: &County, g: GridId) -> Option<usize> {
    county
        .grid_slot(g)
        .and_then(|s| county.community_slot_of_grid_slot(s))
}

/// The full path from the county to `focus`: community, grid, then the item.
pub fn path_to(focus: Focus, county: &County, live: Option<&LiveState>) -> Vec<Focus> {
    let via_grid = |g: Option<GridId>, last: Focus| {
        let mut p = Vec::new();
        if let Some(g) = g {
            if let Some(c) = community_of_grid(county, g) {
                p.push(Focus::Community(c));
            }
            p.push(Focus::Grid(g));
        }
        p.push(last);
        p
    };
    match focus {
        Focus::Community(_) => vec![focus],
        Focus::Grid(g) => {
            let mut p = via_grid(Some(g), focus);
            p.pop();
            p
        }
        Focus::Ticket(id) => via_grid(
            live.and_then(|l| l.tickets.get(&id))
                .and_then(|t| t.grid_id),
            focus,
        ),
        Focus::Incident(id) => via_grid(
            live.and_then(|l| l.incidents.get(&id))
                .and_then(|i| i.grid_id),
            focus,
        ),
        Focus::Volunteer(id) => {
            let grid = live
                .and_then(|l| l.volunteer(id))
                .and_then(|v| v.grid_id)
                .or_else(|| volunteer_record(county, id).map(|r| r.home_grid_id));
            via_grid(grid, focus)
        }
        Focus::Team(t) => {
            let community = county
                .team(t)
                .and_then(|t| community_of_grid(county, t.home_grid_id));
            community
                .map(Focus::Community)
                .into_iter()
                .chain([focus])
                .collect()
        }
    }
}

pub fn volunteer_record(
    county: &County,
    id: VolunteerId,
) -> Option<&crate::model::VolunteerRecord> {
    let v = &county.pack.volunteers;
    v.binary_search_by_key(&id, |r| r.id).ok().map(|i| &v[i])
}

/// Short name of a level, for breadcrumbs and headings.
pub fn focus_label(f: Focus, county: &County) -> String {
    match f {
        Focus::Community(c) => county
            .pack
            .communities
            .get(c)
            .map_or_else(|| format!("社区 {c}"), |c| c.name.clone()),
        Focus::Grid(g) => county
            .grid(g)
            .map_or_else(|| format!("网格 {g}"), |g| g.name.clone()),
        Focus::Ticket(t) => format!("工单 #{t}"),
        Focus::Volunteer(v) => {
            volunteer_record(county, v).map_or_else(|| format!("志愿者 {v}"), |r| r.name.clone())
        }
        Focus::Incident(i) => format!("事件 #{i}"),
        Focus::Team(t) => county
            .team(t)
            .map_or_else(|| format!("队伍 {t}"), |t| t.name.clone()),
    }
}

/// Breadcrumb labels, county first.
pub fn breadcrumbs(drill: &Drill, county: &County) -> Vec<String> {
    std::iter::once(county.pack.manifest.county_name.clone())
        .chain(drill.path.iter().map(|f| focus_label(*f, county)))
        .collect()
}

#[derive(Component)]
pub struct WallCamera;

/// Layers the operator can switch.
#[derive(Resource, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layers {
    pub grids_labels: bool,
    pub incidents: bool,
    pub help: bool,
}

impl Default for Layers {
    fn default() -> Self {
        Self {
            grids_labels: true,
            incidents: true,
            help: false,
        }
    }
}

/// Whether the heatmap is shown (number key 4).
#[derive(Resource, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShowHeat(pub bool);

/// Whether the volunteer layer is shown (number key 2).
#[derive(Resource, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShowVolunteers(pub bool);

/// World position (metres) of a WGS84 point.
pub fn world(proj: &LocalProjection, p: LonLat) -> Vec2 {
    let (x, y) = proj.metres_from_wgs84(p.lon, p.lat);
    Vec2::new(x as f32, y as f32)
}

/// System order within a frame (configured once, in `wall::run`).
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WallSet {
    Feed,
    Model,
    Input,
    Draw,
}

/// The image the wall renders into when it has no window (`SnapshotPlan::offscreen`).
#[derive(Resource, Clone)]
pub struct OffscreenTarget(pub Handle<Image>);

/// The layer switches' keys (`1`–`4`) and the help overlay (`F1`, `?`, `Esc`): add a layer's
/// key here, with its line in [`SHORTCUTS`].
pub fn layer_keys(
    keys: Res<ButtonInput<KeyCode>>,
    mut layers: ResMut<Layers>,
    mut volunteers: ResMut<ShowVolunteers>,
    mut heat: ResMut<ShowHeat>,
    egui_input: Option<Res<bevy_egui::input::EguiWantsInput>>,
) {
    if egui_input.is_some_and(|e| e.wants_keyboard_input()) {
        return;
    }
    if keys.just_pressed(KeyCode::Digit4) {
        heat.0 = !heat.0;
    }
    if keys.just_pressed(KeyCode::Digit1) {
        layers.grids_labels = !layers.grids_labels;
    }
    if keys.just_pressed(KeyCode::Digit2) {
        volunteers.0 = !volunteers.0;
    }
    if keys.just_pressed(KeyCode::Digit3) {
        layers.incidents = !layers.incidents;
    }
    let question = keys.just_pressed(KeyCode::Slash)
        && (keys.pressed(KeyCode::ShiftLeft) || keys.pressed(KeyCode::ShiftRight));
    if keys.just_pressed(KeyCode::F1) || question {
        layers.help = !layers.help;
    }
    if keys.just_pressed(KeyCode::Escape) {
        layers.help = false;
    }
}

/// Every shortcut, for the help overlay.
pub const SHORTCUTS: &[(&str, &str)] = &[
    ("拖动 / drag", "平移 pan"),
    ("滚轮 / wheel", "以光标为中心缩放 zoom at cursor"),
    (
        "← → ↑ ↓",
        "平移 pan (焦点在地图时 when the map has the keyboard)",
    ),
    (
        "Tab / Shift+Tab",
        "键盘焦点 地图 → 排行 → 面板 keyboard: map → ranking → panel",
    ),
    (
        "↑ ↓ Enter",
        "在列表中移动、打开或派单 move, open, assign in the list",
    ),
    ("S", "督办当前工单 supervise the ticket (with a note)"),
    ("A", "确认告警 acknowledge the alert (with a note)"),
    ("D", "发送调度建议 send the incident's suggested teams"),
    (
        "N",
        "标注 pin a note to the selection at the moment shown (every wall)",
    ),
    (", . [ ] L", "回放 rewind, step, play speed, back to live"),
    ("R", "复盘 the incident's after-action: tracks and arrivals"),
    ("+ / -", "缩放 zoom"),
    ("F", "全县 fit county"),
    ("H", "县城 fit county seat"),
    ("1", "网格标注 grid labels"),
    ("2", "志愿者 volunteers"),
    ("3", "事件 incidents"),
    ("4", "工单热力图 ticket heatmap"),
    (
        "点击 / click",
        "选中网格、工单、志愿者 select grid / ticket / volunteer",
    ),
    ("Esc", "关闭帮助 / 返回上一级 close help / up one level"),
    ("/", "搜索 search: 工单号、社区、网格、志愿者"),
    ("E", "导出当前表格 CSV export the panel's table"),
    ("P", "截图 PNG save the view"),
    ("F1 / ?", "帮助 this help"),
];

/// What the state shown learnt since the last frame, in the model's own account: written by
/// the drain (`feed::drain_feed`), read by the layers, the alert sounds and the panels instead
/// of watching the model.
#[derive(Message, Clone, Debug, Default, PartialEq)]
pub struct Learnt {
    /// The state shown was replaced (a snapshot loaded, a past moment shown, back to live):
    /// everything may have changed.
    pub reset: bool,
    /// The changes applied to the state shown, in order (the first [`Learnt::MAX_CHANGES`]).
    pub changes: Vec<Change>,
    /// Changes past [`Learnt::MAX_CHANGES`] were not listed; what kinds they were is kept.
    pub truncated: bool,
    past_cap_beyond_fixes: bool,
    past_cap_alerts: bool,
}

impl Learnt {
    /// Changes one message lists; past them it keeps only what kinds they were (a city's
    /// fixes must not look like "everything changed" to the heat and the panels).
    pub const MAX_CHANGES: usize = 1 << 16;

    pub fn is_empty(&self) -> bool {
        !self.reset && self.changes.is_empty() && !self.truncated
    }

    /// Whether anything but volunteers' positions changed.
    pub fn beyond_fixes(&self) -> bool {
        self.reset
            || self.past_cap_beyond_fixes
            || self
                .changes
                .iter()
                .any(|c| !matches!(c, Change::VolunteerMoved { .. }))
    }

    /// Whether an alert was raised, climbed or acknowledged (or everything changed).
    pub fn alerts(&self) -> bool {
        self.reset
            || self.past_cap_alerts
            || self
                .changes
                .iter()
                .any(|c| matches!(c, Change::Alert { .. }))
    }

    /// Note `change` (past [`Learnt::MAX_CHANGES`], only its kind).
    pub fn push(&mut self, change: Change) {
        if self.reset {
            return;
        }
        if self.changes.len() < Self::MAX_CHANGES {
            self.changes.push(change);
            return;
        }
        self.truncated = true;
        self.past_cap_alerts |= matches!(change, Change::Alert { .. });
        self.past_cap_beyond_fixes |= !matches!(change, Change::VolunteerMoved { .. });
    }

    /// Everything changed.
    pub fn replaced(&mut self) {
        *self = Self {
            reset: true,
            ..Self::default()
        };
    }
}

/// Flights of the camera to a selection (asked for here by panels, keys and the tour; flown by
/// `camera`).
/// A world rectangle the camera should frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frame {
    pub min: Vec2,
    pub max: Vec2,
}

impl Frame {
    pub fn of_points(points: impl IntoIterator<Item = Vec2>) -> Option<Self> {
        let mut it = points.into_iter();
        let first = it.next()?;
        let (min, max) = it.fold((first, first), |(a, b), p| (a.min(p), b.max(p)));
        Some(Self { min, max })
    }

    /// Camera centre and orthographic scale (metres per logical pixel) to fit in `viewport`.
    pub fn fit(&self, viewport: Vec2, margin: f32) -> (Vec2, f32) {
        let size = (self.max - self.min).max(Vec2::splat(1.0)) * (1.0 + margin);
        let scale = (size.x / viewport.x.max(1.0)).max(size.y / viewport.y.max(1.0));
        ((self.min + self.max) / 2.0, scale)
    }
}

/// Smallest span a fly-to frames, metres (a single ticket or volunteer).
const FLY_MIN_SPAN_M: f32 = 900.0;

pub(super) enum FlyTarget {
    Frame(Frame),
    County,
}

/// A pending or running camera flight to a selection.
#[derive(Resource, Default)]
pub struct FlyTo {
    pub(super) pending: Option<(FlyTarget, bool)>,
    /// Where the camera is heading: centre and scale.
    pub heading: Option<(Vec2, f32)>,
}

impl FlyTo {
    /// Fly to frame these points (nothing if empty); `instant` jumps (snapshots).
    pub fn to(&mut self, points: Vec<LonLat>, county: &crate::model::County, instant: bool) {
        let proj = county.pack.projection();
        if let Some(mut f) = Frame::of_points(points.into_iter().map(|p| world(&proj, p))) {
            let c = (f.min + f.max) / 2.0;
            let half = ((f.max - f.min) / 2.0).max(Vec2::splat(FLY_MIN_SPAN_M / 2.0));
            f = Frame {
                min: c - half,
                max: c + half,
            };
            self.pending = Some((FlyTarget::Frame(f), instant));
        }
    }

    pub fn county(&mut self) {
        self.pending = Some((FlyTarget::County, false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_its_cap_a_message_keeps_the_kinds_of_what_it_did_not_list() {
        let fix = Change::VolunteerMoved {
            id: 1,
            from: None,
            to: LonLat::new(106.5, 38.9),
            grid_id: None,
        };
        let mut l = Learnt::default();
        assert!(l.is_empty());
        for _ in 0..Learnt::MAX_CHANGES + 10 {
            l.push(fix.clone());
        }
        assert_eq!(l.changes.len(), Learnt::MAX_CHANGES);
        assert!(l.truncated && !l.reset);
        // Only positions: the heat and the panels need not redraw.
        assert!(!l.beyond_fixes() && !l.alerts());
        l.push(Change::IncidentClosed { id: 4 });
        assert!(l.beyond_fixes() && !l.alerts());
        l.replaced();
        assert!(l.reset && l.changes.is_empty() && l.alerts());
    }
}
