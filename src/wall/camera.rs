//! Camera and input: drag to pan, wheel zooms at the cursor, keys pan/zoom/fit, number keys
//! toggle layers, F1 or ? shows the shortcuts.

use bevy::input::mouse::{MouseScrollUnit, MouseWheel};
use bevy::prelude::*;
use bevy::window::PrimaryWindow;

use super::feed::WallModel;
use super::nav::FlyTarget;
use super::nav::world;
pub use super::nav::{FlyTo, Frame, Layers, SHORTCUTS, WallCamera, layer_keys};
use super::theme;
use crate::protocol::LonLat;

/// The part of the window the map shows unobstructed, logical pixels from each edge: the top
/// bar, the ranking column on the left and, while something is selected, the drill-down panel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Margins {
    pub top: f32,
    pub left: f32,
    pub right: f32,
}

impl Margins {
    /// The margins of `layout` (physical pixels): the desk's top bar and columns, or the
    /// side panels of a spliced wall.
    pub fn of_layout(
        layout: Option<&super::layout::Layout>,
        ui_scale: f32,
        drill_open: bool,
    ) -> Self {
        match layout {
            Some(l) if l.wall => Self {
                top: l.map.min.y * ui_scale,
                left: l.map.min.x * ui_scale,
                right: (l.canvas.max.x - l.map.max.x
                    + if drill_open { theme::DRILL_PX } else { 0.0 })
                    * ui_scale,
            },
            _ => Self::of_wall(ui_scale, drill_open),
        }
    }

    pub fn of_wall(ui_scale: f32, drill_open: bool) -> Self {
        Self {
            top: super::theme::TOP_BAR_PX * ui_scale,
            left: theme::RANKING_PX * ui_scale,
            right: if drill_open {
                theme::DRILL_PX * ui_scale
            } else {
                0.0
            },
        }
    }
}

/// Camera centre and scale that fit `frame` into the free part of `viewport`.
pub fn fit_free(frame: &Frame, viewport: Vec2, m: Margins, margin: f32) -> (Vec2, f32) {
    let free = (viewport - Vec2::new(m.left + m.right, m.top)).max(Vec2::splat(100.0));
    let (centre, scale) = frame.fit(free, margin);
    // Screen offset of the free area's centre from the window's centre (x right, y down).
    let dx = (m.left - m.right) / 2.0;
    let dy = m.top / 2.0;
    (centre + Vec2::new(-dx, dy) * scale, scale)
}

/// Resolve a pending flight against the window and panels, then glide there (about 0.4 s to
/// cover most of the way); any operator camera input cancels it.
#[allow(clippy::too_many_arguments)]
fn fly_camera(
    mut fly: ResMut<FlyTo>,
    frames: Res<Frames>,
    drill: Res<super::nav::Drill>,
    ui_scale: Option<Res<super::theme::UiScale>>,
    window: Query<&Window, With<PrimaryWindow>>,
    mut camera: Query<(&mut Transform, &mut Projection), With<WallCamera>>,
    time: Res<Time>,
    layout: Option<Res<super::layout::Layout>>,
) {
    let Ok((mut tf, mut projection)) = camera.single_mut() else {
        return;
    };
    let Projection::Orthographic(ortho) = projection.as_mut() else {
        return;
    };
    if let Some((target, instant)) = fly.pending.take() {
        let viewport = window.single().map_or(Vec2::new(1920.0, 1080.0), |w| {
            Vec2::new(w.width(), w.height())
        });
        let m = Margins::of_layout(
            layout.as_deref(),
            ui_scale.map_or(1.0, |s| s.0),
            !drill.path.is_empty(),
        );
        let frame = match target {
            FlyTarget::Frame(f) => f,
            FlyTarget::County => frames.seat,
        };
        let (centre, scale) = fit_free(&frame, viewport, m, 0.15);
        if instant {
            tf.translation = centre.extend(tf.translation.z);
            ortho.scale = scale;
            fly.heading = None;
        } else {
            fly.heading = Some((centre, scale));
        }
    }
    let Some((centre, scale)) = fly.heading else {
        return;
    };
    let k = 1.0 - (-8.0 * time.delta_secs().min(0.25)).exp();
    let pos = tf.translation.truncate().lerp(centre, k);
    let s = ortho.scale + (scale - ortho.scale) * k;
    let done = pos.distance(centre) < 0.5 * scale && (s / scale - 1.0).abs() < 0.005;
    let (pos, s) = if done { (centre, scale) } else { (pos, s) };
    tf.translation = pos.extend(tf.translation.z);
    ortho.scale = s;
    if done {
        fly.heading = None;
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
    ui_scale: Option<Res<super::theme::UiScale>>,
    offscreen: Option<Res<super::nav::OffscreenTarget>>,
    layout: Option<Res<super::layout::Layout>>,
) {
    let f = frames(&model);
    let viewport = window.single().map_or(Vec2::new(1920.0, 1080.0), |w| {
        Vec2::new(w.width(), w.height())
    });
    let frame = match view.map(|v| *v).unwrap_or_default() {
        InitialView::Seat => f.seat,
        InitialView::County => f.county,
    };
    // Frame the map between the top bar and the ranking column.
    let m = Margins::of_layout(layout.as_deref(), ui_scale.map_or(1.0, |s| s.0), false);
    let (centre, scale) = fit_free(&frame, viewport, m, 0.08);
    commands.insert_resource(f);
    let mut camera = commands.spawn((
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
        // The board draws over this camera (the map cache's camera has none).
        bevy_egui::PrimaryEguiContext,
    ));
    if let Some(o) = offscreen {
        camera.insert(bevy::camera::RenderTarget::Image(o.0.clone().into()));
    }
}

/// Whether the operator touched anything this frame (kiosk mode and snapshots use it).
#[derive(Resource, Default)]
pub struct LastInput(pub Option<std::time::Instant>);

#[allow(clippy::too_many_arguments, clippy::type_complexity)]
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
    layout: Option<Res<super::layout::Layout>>,
    (ui_scale, drill, mut fly, egui_input, key_focus): (
        Option<Res<super::theme::UiScale>>,
        Res<super::nav::Drill>,
        ResMut<FlyTo>,
        Option<Res<bevy_egui::input::EguiWantsInput>>,
        Option<Res<super::outbox::KeyFocus>>,
    ),
) {
    // With the keyboard in a list (Tab), the arrows move through it instead of the map.
    let arrows_elsewhere = key_focus.is_some_and(|k| k.area != super::outbox::FocusArea::Map);
    let drill_open = !drill.path.is_empty();
    // The panels take the pointer and the keyboard (search box) when they want them.
    let over_panel = egui_input
        .as_ref()
        .is_some_and(|e| e.is_pointer_over_area());
    let typing = egui_input
        .as_ref()
        .is_some_and(|e| e.wants_keyboard_input());
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

    for ev in wheel.read().filter(|_| !over_panel) {
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
    if buttons.just_pressed(MouseButton::Left) && over_panel {
        *drag_from = None;
    }
    if buttons.pressed(MouseButton::Left) && !(over_panel && drag_from.is_none()) {
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
        if keys.pressed(key) && !typing && !arrows_elsewhere {
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
            let m = Margins::of_layout(
                layout.as_deref(),
                ui_scale.as_ref().map_or(1.0, |s| s.0),
                drill_open,
            );
            let (centre, scale) = fit_free(&frame, viewport, m, 0.08);
            transform.translation = centre.extend(transform.translation.z);
            ortho.scale = scale;
            touched = true;
        }
    }
    if touched {
        fly.heading = None;
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

pub(super) fn click_pick(
    buttons: Res<ButtonInput<MouseButton>>,
    window: Query<&Window, With<PrimaryWindow>>,
    camera: Query<(&Camera, &GlobalTransform, &Projection), With<WallCamera>>,
    model: Res<WallModel>,
    mut selection: ResMut<Selection>,
    mut press: Local<Option<Vec2>>,
    egui_input: Option<Res<bevy_egui::input::EguiWantsInput>>,
) {
    let Ok(window) = window.single() else { return };
    if buttons.just_pressed(MouseButton::Left) {
        let over_panel = egui_input.is_some_and(|e| e.is_pointer_over_area());
        *press = if over_panel {
            None
        } else {
            window.cursor_position()
        };
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

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Layers>()
        .init_resource::<LastInput>()
        .init_resource::<Selection>()
        .init_resource::<FlyTo>()
        .add_systems(Startup, setup_camera)
        .add_systems(
            Update,
            (
                camera_input,
                layer_keys,
                click_pick,
                fly_camera.after(camera_input),
            )
                .in_set(super::nav::WallSet::Input),
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
