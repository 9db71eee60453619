//! Camera and input: drag to pan, wheel zooms at the cursor, keys pan/zoom/fit, number keys
//! toggle layers, F1 or ? shows the shortcuts.

use bevy::input::mouse::{MouseScrollUnit, MouseWheel};
use bevy::prelude::*;
use bevy::window::PrimaryWindow;

use super::feed::WallModel;
use super::map::world;
use super::volunteers::ShowVolunteers;
use crate::protocol::LonLat;

#[derive(Component)]
pub struct WallCamera;

/// Height of the top bar at UI scale 1.25, pixels; fits leave room for it.
const TOP_BAR_PX: f32 = super::ui::TOP_BAR_PX * 1.25;

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

/// Where "fit" keys send the camera.
#[derive(Resource, Clone, Copy, Debug)]
pub struct Frames {
    pub county: Frame,
    pub seat: Frame,
}

/// Frames of the county and of the busiest town (the county seat).
pub fn frames(model: &WallModel) -> Frames {
    let proj = model.county.pack.projection();
    let (min, max) = model.county.pack.bounds();
    let county = Frame {
        min: world(&proj, min),
        max: world(&proj, max),
    };
    let mut counts = std::collections::HashMap::new();
    for c in &model.county.pack.communities {
        *counts.entry(c.town_code).or_insert(0) += 1;
    }
    let seat_code = counts
        .into_iter()
        .max_by_key(|(code, n)| (*n, *code))
        .map(|(c, _)| c);
    let seat = Frame::of_points(
        model
            .county
            .pack
            .communities
            .iter()
            .filter(|c| Some(c.town_code) == seat_code)
            .flat_map(|c| {
                c.area
                    .exterior()
                    .coords()
                    .map(|p| world(&proj, LonLat::new(p.x, p.y)))
                    .collect::<Vec<_>>()
            }),
    )
    .unwrap_or(county);
    Frames { county, seat }
}

/// What the camera frames at start.
#[derive(Resource, Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum InitialView {
    /// The county seat, where most communities are.
    #[default]
    Seat,
    /// The whole county.
    County,
}

fn setup_camera(
    mut commands: Commands,
    model: Res<WallModel>,
    view: Option<Res<InitialView>>,
    window: Query<&Window, With<PrimaryWindow>>,
) {
    let f = frames(&model);
    let viewport = window.single().map_or(Vec2::new(1920.0, 1080.0), |w| {
        Vec2::new(w.width(), w.height())
    });
    let frame = match view.map(|v| *v).unwrap_or_default() {
        InitialView::Seat => f.seat,
        InitialView::County => f.county,
    };
    // The top bar covers about 110 px: frame the area below it.
    let (centre, scale) = frame.fit(viewport - Vec2::new(0.0, TOP_BAR_PX), 0.08);
    let centre = centre + Vec2::new(0.0, TOP_BAR_PX / 2.0 * scale);
    commands.insert_resource(f);
    commands.spawn((
        WallCamera,
        Camera2d,
        // A software rasteriser pays more for MSAA than for the scene; colours are exact
        // theme colours, so no tonemapping.
        Msaa::Off,
        bevy::core_pipeline::tonemapping::Tonemapping::None,
        Projection::Orthographic(OrthographicProjection {
            scale,
            ..OrthographicProjection::default_2d()
        }),
        Transform::from_xyz(centre.x, centre.y, 100.0),
    ));
}

/// Whether the operator touched anything this frame (kiosk mode and snapshots use it).
#[derive(Resource, Default)]
pub struct LastInput(pub Option<std::time::Instant>);

#[allow(clippy::too_many_arguments)]
fn camera_input(
    keys: Res<ButtonInput<KeyCode>>,
    buttons: Res<ButtonInput<MouseButton>>,
    mut wheel: MessageReader<MouseWheel>,
    window: Query<&Window, With<PrimaryWindow>>,
    mut camera: Query<(&mut Transform, &mut Projection), With<WallCamera>>,
    frames: Res<Frames>,
    time: Res<Time>,
    mut drag_from: Local<Option<Vec2>>,
    mut last_input: ResMut<LastInput>,
) {
    let Ok((mut transform, mut projection)) = camera.single_mut() else {
        return;
    };
    let Projection::Orthographic(ortho) = projection.as_mut() else {
        return;
    };
    let Ok(window) = window.single() else {
        return;
    };
    let viewport = Vec2::new(window.width(), window.height());
    let cursor = window.cursor_position();
    let mut touched = false;
    // Screen → world offset from the centre (y up in the world, down on screen).
    let to_world = |screen: Vec2, scale: f32| {
        Vec2::new(screen.x - viewport.x / 2.0, viewport.y / 2.0 - screen.y) * scale
    };

    for ev in wheel.read() {
        let steps = match ev.unit {
            MouseScrollUnit::Line => ev.y,
            MouseScrollUnit::Pixel => ev.y / 40.0,
        };
        let factor = 0.85f32.powf(steps);
        if let Some(c) = cursor {
            // Keep the world point under the cursor fixed.
            let before = to_world(c, ortho.scale);
            let after = to_world(c, ortho.scale * factor);
            transform.translation += (before - after).extend(0.0);
        }
        ortho.scale = (ortho.scale * factor).clamp(0.05, 2_000.0);
        touched = true;
    }
    if buttons.pressed(MouseButton::Left) {
        if let (Some(from), Some(c)) = (*drag_from, cursor) {
            let d = c - from;
            transform.translation += Vec3::new(-d.x, d.y, 0.0) * ortho.scale;
        }
        *drag_from = cursor;
        touched = true;
    } else {
        *drag_from = None;
    }
    let step = 600.0 * time.delta_secs() * ortho.scale;
    let pan = [
        (KeyCode::ArrowLeft, Vec3::NEG_X),
        (KeyCode::ArrowRight, Vec3::X),
        (KeyCode::ArrowUp, Vec3::Y),
        (KeyCode::ArrowDown, Vec3::NEG_Y),
    ];
    for (key, dir) in pan {
        if keys.pressed(key) {
            transform.translation += dir * step;
            touched = true;
        }
    }
    if keys.pressed(KeyCode::Equal) || keys.pressed(KeyCode::NumpadAdd) {
        ortho.scale *= 1.0 - 1.5 * time.delta_secs();
        touched = true;
    }
    if keys.pressed(KeyCode::Minus) || keys.pressed(KeyCode::NumpadSubtract) {
        ortho.scale *= 1.0 + 1.5 * time.delta_secs();
        touched = true;
    }
    for (key, frame) in [(KeyCode::KeyF, frames.county), (KeyCode::KeyH, frames.seat)] {
        if keys.just_pressed(key) {
            let (centre, scale) = frame.fit(viewport - Vec2::new(0.0, TOP_BAR_PX), 0.08);
            let centre = centre + Vec2::new(0.0, TOP_BAR_PX / 2.0 * scale);
            transform.translation = centre.extend(transform.translation.z);
            ortho.scale = scale;
            touched = true;
        }
    }
    if touched || keys.get_just_pressed().next().is_some() {
        last_input.0 = Some(std::time::Instant::now());
    }
}

/// What is under a world point: the grid, and the nearest volunteer and open ticket within
/// `radius_m`.
pub fn pick(model: &WallModel, at: Vec2, radius_m: f32) -> Selection {
    let proj = model.county.pack.projection();
    let (lon, lat) = proj.wgs84_from_metres(f64::from(at.x), f64::from(at.y));
    let grid = model.county.index.grid_at(LonLat::new(lon, lat));
    let volunteer = model.live().and_then(|live| {
        live.volunteers
            .iter()
            .filter(|v| v.status != crate::protocol::VolunteerStatus::OffDuty)
            .filter_map(|v| Some((v.id, world(&proj, v.pos?).distance(at))))
            .filter(|(_, d)| *d <= radius_m)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(id, _)| id)
    });
    let ticket = model.live().and_then(|live| {
        live.open_tickets()
            .map(|t| (t.id, world(&proj, t.pos).distance(at)))
            .filter(|(_, d)| *d <= radius_m)
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
            .map(|(id, _)| id)
    });
    Selection {
        grid,
        volunteer,
        ticket,
    }
}

/// The operator's current selection (the drill-down panels build on it).
#[derive(Resource, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub grid: Option<crate::protocol::GridId>,
    pub volunteer: Option<crate::protocol::VolunteerId>,
    /// The nearest open ticket within reach of the click.
    pub ticket: Option<crate::protocol::TicketId>,
}

fn click_pick(
    buttons: Res<ButtonInput<MouseButton>>,
    window: Query<&Window, With<PrimaryWindow>>,
    camera: Query<(&Camera, &GlobalTransform, &Projection), With<WallCamera>>,
    model: Res<WallModel>,
    mut selection: ResMut<Selection>,
    mut press: Local<Option<Vec2>>,
) {
    let Ok(window) = window.single() else { return };
    if buttons.just_pressed(MouseButton::Left) {
        *press = window.cursor_position();
    }
    if !buttons.just_released(MouseButton::Left) {
        return;
    }
    // A click, not the end of a drag.
    let (Some(down), Some(up)) = (press.take(), window.cursor_position()) else {
        return;
    };
    if down.distance(up) > 4.0 {
        return;
    }
    let Ok((cam, tf, Projection::Orthographic(o))) = camera.single() else {
        return;
    };
    if let Ok(at) = cam.viewport_to_world_2d(tf, up) {
        *selection = pick(&model, at, 8.0 * o.scale);
    }
}

pub fn layer_keys(
    keys: Res<ButtonInput<KeyCode>>,
    mut layers: ResMut<Layers>,
    mut volunteers: ResMut<ShowVolunteers>,
    mut heat: ResMut<super::heat::ShowHeat>,
) {
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
    ("← → ↑ ↓", "平移 pan"),
    ("+ / -", "缩放 zoom"),
    ("F", "全县 fit county"),
    ("H", "县城 fit county seat"),
    ("1", "网格标注 grid labels"),
    ("2", "志愿者 volunteers"),
    ("3", "事件 incidents"),
    ("4", "工单热力图 ticket heatmap"),
    ("F1 / ?", "帮助 this help"),
    ("Esc", "关闭 close"),
];

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Layers>()
        .init_resource::<LastInput>()
        .init_resource::<Selection>()
        .add_systems(Startup, setup_camera)
        .add_systems(
            Update,
            (camera_input, layer_keys, click_pick).in_set(super::WallSet::Input),
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_a_frame_covers_it() {
        let f = Frame {
            min: Vec2::new(-1000.0, -500.0),
            max: Vec2::new(3000.0, 500.0),
        };
        let (centre, scale) = f.fit(Vec2::new(1000.0, 1000.0), 0.0);
        assert_eq!(centre, Vec2::new(1000.0, 0.0));
        assert_eq!(scale, 4.0, "the wider side decides");
    }
}
