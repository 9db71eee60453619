//! Volunteer markers: one draw for all. The mesh (one quad per roster entry, whose fragments
//! take the team ring's colour at its edge and the status fill's inside) is built once and kept only in the render world; their colours sit in a
//! storage buffer rewritten when statuses change; each marker's glide from where it is drawn to its latest fix
//! (never jump, never freeze) goes into a storage buffer, rewritten only when fixes arrive, and
//! `shaders/markers.wgsl` evaluates the glide per vertex. Per frame the CPU sets one uniform.

use std::time::Instant;

use bevy::asset::{RenderAssetUsages, uuid_handle};
use bevy::mesh::{Indices, PrimitiveTopology};
use bevy::prelude::*;
use bevy::render::render_resource::AsBindGroup;
use bevy::render::storage::ShaderBuffer;
use bevy::shader::ShaderRef;
use bevy::sprite_render::{Material2d, Material2dPlugin};

use super::feed::WallModel;
use super::map::linear;
pub use super::nav::ShowVolunteers;
use super::nav::WallCamera;
use super::nav::world;
use super::theme;
use crate::protocol::{TimestampMs, VolunteerStatus};

const MARKER_SHADER: Handle<Shader> = uuid_handle!("3c9e51a2-7d44-4f1b-8a36-0e5b9c2d7f61");

/// The markers' material: the glide clock and zoom, and the glides.
#[derive(Asset, TypePath, AsBindGroup, Debug, Clone)]
pub struct MarkerMaterial {
    /// x: seconds on the glide clock, y: half the marker size in world metres, z: the status
    /// fill's share of its width.
    #[uniform(0)]
    pub params: Vec4,
    #[storage(1, read_only)]
    pub glides: Handle<ShaderBuffer>,
    /// Two per marker: the team ring's colour and the status fill's (linear RGBA).
    #[storage(2, read_only)]
    pub colors: Handle<ShaderBuffer>,
}

impl Material2d for MarkerMaterial {
    fn vertex_shader() -> ShaderRef {
        ShaderRef::Handle(MARKER_SHADER)
    }

    fn fragment_shader() -> ShaderRef {
        ShaderRef::Handle(MARKER_SHADER)
    }
}

/// Glide clock seconds are rebased every hour so f32 keeps millisecond precision on the GPU.
const CLOCK_EPOCH_S: f64 = 3_600.0;

/// Motion of one marker: from where it was drawn to its latest fix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Glide {
    pub from: Vec2,
    pub to: Vec2,
    /// Seconds (wall clock) when the glide started and how long it lasts.
    pub start_s: f64,
    pub duration_s: f64,
    pub last_fix_ms: TimestampMs,
}

impl Glide {
    pub fn at(p: Vec2, now_s: f64) -> Self {
        Self {
            from: p,
            to: p,
            start_s: now_s,
            duration_s: 0.0,
            last_fix_ms: TimestampMs::MIN,
        }
    }

    /// Where the marker is at `now_s`.
    pub fn position(&self, now_s: f64) -> Vec2 {
        if self.duration_s <= 0.0 {
            return self.to;
        }
        let t = ((now_s - self.start_s) / self.duration_s).clamp(0.0, 1.0) as f32;
        self.from.lerp(self.to, t)
    }

    /// A new fix at `fix_ms` (server clock running at `rate`): glide from the current drawn
    /// position over about one fix interval, so bursts and gaps both look continuous.
    pub fn retarget(&mut self, to: Vec2, fix_ms: TimestampMs, now_s: f64, rate: f64) {
        let current = self.position(now_s);
        let interval_s = if self.last_fix_ms == TimestampMs::MIN {
            0.0
        } else {
            ((fix_ms - self.last_fix_ms) as f64 / 1000.0 / rate.max(1e-6)).clamp(0.05, 3.0)
        };
        *self = Self {
            from: current,
            to,
            start_s: now_s,
            duration_s: interval_s,
            last_fix_ms: fix_ms,
        };
    }
}

/// Per-roster-entry glides and the marker mesh.
#[derive(Resource)]
pub struct VolunteerMarkers {
    pub handle: Handle<Mesh>,
    pub material: Handle<MarkerMaterial>,
    pub buffer: Handle<ShaderBuffer>,
    /// The ring and fill colours the shader reads, rewritten only when statuses change (the
    /// mesh itself never changes, and lives only in the render world).
    pub colors_buffer: Handle<ShaderBuffer>,
    /// Glides or visibility changed since the buffer was written.
    pub glides_dirty: bool,
    /// Colours changed since the mesh was written.
    pub colors_dirty: bool,
    /// Start of the glide clock the buffer was written against (seconds since `origin`).
    pub epoch_s: f64,
    pub glides: Vec<Option<Glide>>,
    pub colors: Vec<[f32; 4]>,
    /// Ring colour of each volunteer's team.
    pub team_colors: Vec<[f32; 4]>,
    pub visible: Vec<bool>,
    pub origin: Instant,
}

impl VolunteerMarkers {
    pub fn now_s(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }
}

fn setup_markers(
    mut commands: Commands,
    model: Res<WallModel>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<MarkerMaterial>>,
    mut buffers: ResMut<Assets<ShaderBuffer>>,
) {
    let n = model.county.pack.volunteers.len();
    // Written once: uploaded and dropped from the main world.
    let mut m = Mesh::new(
        PrimitiveTopology::TriangleList,
        RenderAssetUsages::RENDER_WORLD,
    );
    // One quad per volunteer: the shader colours its edge with the team's ring and its inside
    // with the status fill (half the vertices and triangles of a quad for each). Corners in
    // marker units; the shader scales and places them.
    let corners = [[-1.0f32, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]];
    let mut positions = Vec::with_capacity(n * 4);
    let mut uvs = Vec::with_capacity(n * 4);
    for i in 0..n {
        for c in corners {
            positions.push([c[0], c[1], 0.0]);
            uvs.push([i as f32, 0.0]);
        }
    }
    m.insert_attribute(Mesh::ATTRIBUTE_POSITION, positions);
    m.insert_attribute(Mesh::ATTRIBUTE_UV_0, uvs);
    let idx: Vec<u32> = (0..n as u32)
        .flat_map(|i| {
            let b = i * 4;
            [b, b + 1, b + 2, b, b + 2, b + 3]
        })
        .collect();
    m.insert_indices(Indices::U32(idx));
    let handle = meshes.add(m);
    let buffer = buffers.add(ShaderBuffer::from(vec![Vec4::ZERO; (2 * n).max(2)]));
    let colors_buffer = buffers.add(ShaderBuffer::from(vec![Vec4::ZERO; (2 * n).max(2)]));
    let material = materials.add(MarkerMaterial {
        params: Vec4::ZERO,
        glides: buffer.clone(),
        colors: colors_buffer.clone(),
    });
    commands.spawn((
        Name::new("volunteers"),
        Mesh2d(handle.clone()),
        MeshMaterial2d(material.clone()),
        Transform::from_xyz(0.0, 0.0, 10.0),
        // The quads move in the shader: never cull the mesh by its (static) bounds.
        bevy::camera::visibility::NoFrustumCulling,
    ));
    let team_colors = model
        .county
        .pack
        .volunteers
        .iter()
        .map(|v| linear(theme::team_color(v.team_id)))
        .collect();
    commands.insert_resource(VolunteerMarkers {
        handle,
        material,
        buffer,
        colors_buffer,
        glides_dirty: true,
        colors_dirty: true,
        epoch_s: 0.0,
        team_colors,
        glides: vec![None; n],
        colors: vec![[0.0; 4]; n],
        visible: vec![false; n],
        origin: Instant::now(),
    });
}

/// Feed fixes into glides; refresh colours and visibility when statuses changed.
pub fn track_volunteers(mut model: ResMut<WallModel>, mut markers: ResMut<VolunteerMarkers>) {
    track(&mut model, &mut markers);
}

/// [`track_volunteers`] on the resources themselves (the late fixes at extraction use it).
pub fn track(model: &mut WallModel, markers: &mut VolunteerMarkers) {
    let now_s = markers.now_s();
    let rate = model.clock.map_or(1.0, |c| c.rate());
    let proj = model.county.pack.projection();
    let moved = std::mem::take(&mut model.moved);
    let Some(live) = model.live() else {
        return;
    };
    if model.volunteers_dirty || !moved.is_empty() {
        markers.glides_dirty = true;
    }
    if model.volunteers_dirty {
        markers.colors_dirty = true;
        // A snapshot or status change: place everyone where the model says.
        for (i, v) in live
            .volunteers
            .iter()
            .enumerate()
            .take(markers.glides.len())
        {
            let on_map = v.pos.is_some() && v.status != VolunteerStatus::OffDuty;
            markers.visible[i] = on_map;
            markers.colors[i] = linear(match v.status {
                VolunteerStatus::Responding => theme::VOLUNTEER_RESPONDING,
                _ => theme::VOLUNTEER_AVAILABLE,
            });
            if let Some(p) = v.pos {
                let target = world(&proj, p);
                let fix_ms = v.last_fix_ms.unwrap_or(0);
                match markers.glides[i].as_mut() {
                    Some(g) if g.last_fix_ms != fix_ms => g.retarget(target, fix_ms, now_s, rate),
                    Some(_) => {}
                    None => {
                        let mut g = Glide::at(target, now_s);
                        g.last_fix_ms = fix_ms;
                        markers.glides[i] = Some(g);
                    }
                }
            }
        }
    } else {
        for (i, _) in moved {
            let Some(v) = live.volunteers.get(i) else {
                continue;
            };
            let (Some(p), Some(fix_ms)) = (v.pos, v.last_fix_ms) else {
                continue;
            };
            let target = world(&proj, p);
            match markers.glides[i].as_mut() {
                Some(g) if g.last_fix_ms < fix_ms => g.retarget(target, fix_ms, now_s, rate),
                Some(_) => {}
                None => {
                    let mut g = Glide::at(target, now_s);
                    g.last_fix_ms = fix_ms;
                    markers.glides[i] = Some(g);
                }
            }
            markers.visible[i] = v.status != VolunteerStatus::OffDuty;
        }
    }
    model.volunteers_dirty = false;
}

/// The glide buffer as the shader reads it: two vec4 per marker.
pub fn glide_buffer(markers: &VolunteerMarkers, show: bool) -> Vec<Vec4> {
    let mut out = Vec::with_capacity(markers.glides.len() * 2);
    for (i, g) in markers.glides.iter().enumerate() {
        match g {
            Some(g) => {
                let visible = markers.visible[i] && show;
                out.push(Vec4::new(g.from.x, g.from.y, g.to.x, g.to.y));
                out.push(Vec4::new(
                    (g.start_s - markers.epoch_s) as f32,
                    g.duration_s as f32,
                    if visible { 1.0 } else { 0.0 },
                    0.0,
                ));
            }
            None => {
                out.push(Vec4::ZERO);
                out.push(Vec4::ZERO);
            }
        }
    }
    if out.is_empty() {
        out.resize(2, Vec4::ZERO);
    }
    out
}

/// Per frame: the glide clock and zoom (one uniform); the glide buffer and the colours only
/// when they changed.
fn draw_volunteers(
    mut markers: ResMut<VolunteerMarkers>,
    show: Res<ShowVolunteers>,
    camera: Query<&Projection, With<WallCamera>>,
    mut materials: ResMut<Assets<MarkerMaterial>>,
    mut buffers: ResMut<Assets<ShaderBuffer>>,
    mut shown: Local<Option<bool>>,
) {
    let scale = match camera.single() {
        Ok(Projection::Orthographic(o)) => o.scale,
        _ => 1.0,
    };
    let now_s = markers.now_s();
    let epoch = (now_s / CLOCK_EPOCH_S).floor() * CLOCK_EPOCH_S;
    if epoch != markers.epoch_s || *shown != Some(show.0) {
        markers.epoch_s = epoch;
        markers.glides_dirty = true;
        *shown = Some(show.0);
    }
    if markers.glides_dirty {
        let data = glide_buffer(&markers, show.0);
        if let Some(mut b) = buffers.get_mut(&markers.buffer) {
            b.set_data(data.as_slice());
        }
        markers.glides_dirty = false;
    }
    if markers.colors_dirty {
        let mut col = Vec::with_capacity(markers.glides.len() * 2);
        for (i, fill) in markers.colors.iter().enumerate() {
            let ring = markers.team_colors.get(i).copied().unwrap_or(*fill);
            col.push(Vec4::from_array(ring));
            col.push(Vec4::from_array(*fill));
        }
        if col.is_empty() {
            col.resize(2, Vec4::ZERO);
        }
        if let Some(mut b) = buffers.get_mut(&markers.colors_buffer) {
            b.set_data(col.as_slice());
        }
        markers.colors_dirty = false;
    }
    if let Some(mut m) = materials.get_mut(&markers.material) {
        m.params = Vec4::new(
            (now_s - markers.epoch_s) as f32,
            theme::VOLUNTEER_MARKER_PX * scale / 2.0,
            theme::VOLUNTEER_FILL_FRACTION,
            0.0,
        );
    }
}

pub(super) fn plugin(app: &mut App) {
    let _ = app.world_mut().resource_mut::<Assets<Shader>>().insert(
        MARKER_SHADER.id(),
        Shader::from_wgsl(
            include_str!("../../shaders/markers.wgsl"),
            "shaders/markers.wgsl",
        ),
    );
    app.add_plugins(Material2dPlugin::<MarkerMaterial>::default())
        .insert_resource(ShowVolunteers(true))
        .add_systems(Startup, setup_markers)
        .add_systems(
            Update,
            (
                track_volunteers.in_set(super::nav::WallSet::Model),
                draw_volunteers.in_set(super::nav::WallSet::Draw),
            ),
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glides_move_smoothly_and_never_jump() {
        let mut g = Glide::at(Vec2::ZERO, 0.0);
        g.last_fix_ms = 0;
        g.retarget(Vec2::new(10.0, 0.0), 1_000, 0.0, 1.0);
        assert_eq!(g.position(0.0), Vec2::ZERO);
        assert_eq!(g.position(0.5), Vec2::new(5.0, 0.0));
        assert_eq!(g.position(1.0), Vec2::new(10.0, 0.0));
        assert_eq!(
            g.position(5.0),
            Vec2::new(10.0, 0.0),
            "holds at the last fix"
        );
        // A new fix mid-glide starts from where the marker is drawn, not from the old target.
        let mut g2 = g;
        g2.retarget(Vec2::new(10.0, 10.0), 2_000, 0.5, 1.0);
        assert_eq!(g2.position(0.5), Vec2::new(5.0, 0.0));
        // A burst (many fixes in one frame) still ends at the latest.
        let mut g3 = g;
        for k in 0..10 {
            g3.retarget(Vec2::new(20.0 + k as f32, 0.0), 1_001 + k, 0.2, 1.0);
        }
        assert_eq!(g3.position(10.0), Vec2::new(29.0, 0.0));
        // At 60x a 60 s fix interval glides over one second.
        let mut g4 = Glide::at(Vec2::ZERO, 0.0);
        g4.last_fix_ms = 0;
        g4.retarget(Vec2::new(60.0, 0.0), 60_000, 0.0, 60.0);
        assert_eq!(g4.position(0.5), Vec2::new(30.0, 0.0));
    }
}
