//! The map: county land, grids (one mesh, filled by SLA state) and borders (one mesh per
//! level), all triangulated once with geo. World units are metres of the pack's projection.

use std::collections::HashMap;

use bevy::asset::RenderAssetUsages;
use bevy::mesh::{Indices, PrimitiveTopology};
use bevy::prelude::*;
use geo::{LineString, Polygon, TriangulateEarcut};

use super::feed::WallModel;
use super::theme;
use crate::model::County;
use crate::model::geom::LocalProjection;
use crate::protocol::{GridId, LonLat, TimestampMs};

pub use super::nav::world;
use crate::model::sla::AT_RISK_MS;

/// SLA roll-up of one grid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GridStatus {
    pub open: u32,
    pub at_risk: u32,
    pub overdue: u32,
}

impl From<&crate::analytics::Figures> for GridStatus {
    fn from(f: &crate::analytics::Figures) -> Self {
        Self {
            open: f.open,
            at_risk: f.at_risk,
            overdue: f.overdue,
        }
    }
}

/// Open / at-risk / overdue counts per grid at `now_ms`, walking the tickets (the wall reads
/// the same roll-up from the analytics; tests use this one).
pub fn grid_statuses(
    county: &County,
    live: &crate::model::LiveState,
    now_ms: TimestampMs,
) -> HashMap<GridId, GridStatus> {
    let mut out: HashMap<GridId, GridStatus> = county
        .pack
        .grids
        .iter()
        .map(|g| (g.id, GridStatus::default()))
        .collect();
    for t in live.open_tickets() {
        let Some(s) = t.grid_id.and_then(|g| out.get_mut(&g)) else {
            continue;
        };
        s.open += 1;
        if now_ms > t.sla_deadline_ms {
            s.overdue += 1;
        } else if t.sla_deadline_ms - now_ms <= AT_RISK_MS {
            s.at_risk += 1;
        }
    }
    out
}

/// The fill of a grid: overdue beats at-risk beats open.
pub fn grid_fill(s: GridStatus) -> [f32; 4] {
    let base = if s.overdue > 0 {
        theme::GRID_OVERDUE
    } else if s.at_risk > 0 {
        theme::GRID_AT_RISK
    } else if s.open > 0 {
        theme::GRID_OPEN
    } else {
        theme::GRID_QUIET
    };
    linear(base)
}

/// sRGB components → the linear values vertex colours take.
#[allow(clippy::disallowed_methods)] // a conversion of theme colours, not a new colour
pub fn linear(c: [f32; 4]) -> [f32; 4] {
    Color::srgba(c[0], c[1], c[2], c[3])
        .to_linear()
        .to_f32_array()
}

/// Triangles of a polygon in world metres.
fn triangulate(proj: &LocalProjection, p: &Polygon<f64>) -> (Vec<[f32; 3]>, Vec<u32>) {
    let tri = p.earcut_triangles_raw();
    let verts = tri
        .vertices
        .iter()
        .map(|c| {
            let w = world(proj, LonLat::new(c[0], c[1]));
            [w.x, w.y, 0.0]
        })
        .collect();
    (
        verts,
        tri.triangle_indices.iter().map(|i| *i as u32).collect(),
    )
}

/// Quads along every segment of the rings (world metres), `width` metres wide.
fn outline(rings: &[Vec<Vec2>], width: f32, out_pos: &mut Vec<[f32; 3]>, out_idx: &mut Vec<u32>) {
    for pts in rings {
        for w in pts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let d = b - a;
            if d.length_squared() < 1e-6 {
                continue;
            }
            let n = Vec2::new(-d.y, d.x).normalize() * (width / 2.0);
            // Extend each quad a little so corners close.
            let e = d.normalize() * (width / 2.0);
            let base = out_pos.len() as u32;
            for p in [a - e + n, a - e - n, b + e - n, b + e + n] {
                out_pos.push([p.x, p.y, 0.0]);
            }
            out_idx.extend_from_slice(&[base, base + 1, base + 2, base, base + 2, base + 3]);
        }
    }
}

fn mesh(positions: Vec<[f32; 3]>, indices: Vec<u32>, colors: Option<Vec<[f32; 4]>>) -> Mesh {
    let mut m = Mesh::new(
        PrimitiveTopology::TriangleList,
        RenderAssetUsages::default(),
    );
    m.insert_attribute(Mesh::ATTRIBUTE_POSITION, positions);
    if let Some(c) = colors {
        m.insert_attribute(Mesh::ATTRIBUTE_COLOR, c);
    }
    m.insert_indices(Indices::U32(indices));
    m
}

/// One level of borders: name, rings, width in metres, colour, z.
type BorderLevel<'a> = (&'static str, Vec<&'a LineString<f64>>, f32, Color, f32);

/// Which grid each vertex of the grid mesh belongs to, so fills can be recoloured.
#[derive(Resource)]
pub struct GridMesh {
    pub handle: Handle<Mesh>,
    pub vertex_grid: Vec<usize>,
    pub statuses: HashMap<GridId, GridStatus>,
}

fn setup_map(
    mut commands: Commands,
    model: Res<WallModel>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<ColorMaterial>>,
) {
    let county = &model.county;
    let proj = county.pack.projection();
    // County land.
    let (mut pos, mut idx) = (Vec::new(), Vec::new());
    for p in &county.pack.boundary.0 {
        let (v, i) = triangulate(&proj, p);
        let base = pos.len() as u32;
        pos.extend(v);
        idx.extend(i.into_iter().map(|k| k + base));
    }
    commands.spawn((
        Name::new("county land"),
        Mesh2d(meshes.add(mesh(pos, idx, None))),
        MeshMaterial2d(materials.add(ColorMaterial::from_color(theme::COUNTY_FILL))),
        Transform::from_xyz(0.0, 0.0, 0.0),
        super::map_cache::MapLayer::default(),
    ));
    // Grids, one mesh with per-vertex colours.
    let (mut pos, mut idx, mut vertex_grid) = (Vec::new(), Vec::new(), Vec::new());
    for (gi, g) in county.pack.grids.iter().enumerate() {
        let (v, i) = triangulate(&proj, &g.area);
        let base = pos.len() as u32;
        vertex_grid.extend(std::iter::repeat_n(gi, v.len()));
        pos.extend(v);
        idx.extend(i.into_iter().map(|k| k + base));
    }
    let colors = vec![linear(theme::GRID_QUIET); pos.len()];
    let handle = meshes.add(mesh(pos, idx, Some(colors)));
    commands.spawn((
        Name::new("grids"),
        Mesh2d(handle.clone()),
        MeshMaterial2d(materials.add(ColorMaterial::default())),
        Transform::from_xyz(0.0, 0.0, 1.0),
        super::map_cache::MapLayer::default(),
    ));
    commands.insert_resource(GridMesh {
        handle,
        vertex_grid,
        statuses: HashMap::new(),
    });
    // Borders: grids, communities, county.
    let levels: [BorderLevel; 3] = [
        (
            "grid borders",
            county
                .pack
                .grids
                .iter()
                .map(|g| g.area.exterior())
                .collect(),
            theme::GRID_BORDER_M,
            theme::GRID_BORDER,
            2.0,
        ),
        (
            "community borders",
            county
                .pack
                .communities
                .iter()
                .map(|c| c.area.exterior())
                .collect(),
            theme::COMMUNITY_BORDER_M,
            theme::COMMUNITY_BORDER,
            3.0,
        ),
        (
            "county border",
            county
                .pack
                .boundary
                .0
                .iter()
                .map(|p| p.exterior())
                .collect(),
            theme::COUNTY_BORDER_M,
            theme::COUNTY_BORDER,
            4.0,
        ),
    ];
    for (name, rings, max_m, color, z) in levels {
        let rings: Vec<Vec<Vec2>> = rings
            .iter()
            .map(|r| {
                r.coords()
                    .map(|c| world(&proj, LonLat::new(c.x, c.y)))
                    .collect()
            })
            .collect();
        let px = match name {
            "county border" => theme::COUNTY_BORDER_PX,
            "community borders" => theme::COMMUNITY_BORDER_PX,
            _ => theme::GRID_BORDER_PX,
        };
        let (mut pos, mut idx) = (Vec::new(), Vec::new());
        outline(&rings, max_m, &mut pos, &mut idx);
        commands.spawn((
            Name::new(name),
            Mesh2d(meshes.add(mesh(pos, idx, None))),
            MeshMaterial2d(materials.add(ColorMaterial::from_color(color))),
            Transform::from_xyz(0.0, 0.0, z),
            super::map_cache::MapLayer::default(),
            BorderLines {
                rings,
                px,
                max_m,
                built_for_scale: 0.0,
            },
        ));
    }
}

/// A border mesh that keeps its width in screen pixels (up to a ground width in metres, so
/// dense grid borders fade out at county zoom instead of covering the map).
#[derive(Component)]
pub struct BorderLines {
    rings: Vec<Vec<Vec2>>,
    px: f32,
    max_m: f32,
    built_for_scale: f32,
}

impl BorderLines {
    pub fn width_m(&self, metres_per_px: f32) -> f32 {
        (self.px * metres_per_px).min(self.max_m)
    }
}

/// Rebuild border meshes when the zoom has changed by more than 15 %.
fn rescale_borders(
    camera: Query<&Projection, With<super::nav::WallCamera>>,
    mut borders: Query<(&mut BorderLines, &Mesh2d)>,
    mut meshes: ResMut<Assets<Mesh>>,
) {
    let Ok(Projection::Orthographic(o)) = camera.single() else {
        return;
    };
    for (mut b, mesh2d) in &mut borders {
        let ratio = o.scale / b.built_for_scale.max(1e-6);
        if (0.87..1.15).contains(&ratio) {
            continue;
        }
        b.built_for_scale = o.scale;
        let (mut pos, mut idx) = (Vec::new(), Vec::new());
        outline(&b.rings, b.width_m(o.scale), &mut pos, &mut idx);
        if let Some(mut m) = meshes.get_mut(&mesh2d.0) {
            m.insert_attribute(Mesh::ATTRIBUTE_POSITION, pos);
            m.insert_indices(Indices::U32(idx));
        }
    }
}

/// Recolour the grids when the analytics' SLA roll-up changes.
fn update_grid_fill(
    model: Res<WallModel>,
    stats: Res<super::stats::Stats>,
    mut grid_mesh: ResMut<GridMesh>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut seen: Local<Option<u64>>,
) {
    if *seen == Some(stats.generation) {
        return;
    }
    *seen = Some(stats.generation);
    let Some(a) = stats.latest.as_ref() else {
        return;
    };
    let statuses: HashMap<GridId, GridStatus> = model
        .county
        .pack
        .grids
        .iter()
        .zip(&a.grids)
        .map(|(g, f)| (g.id, GridStatus::from(f)))
        .collect();
    if statuses == grid_mesh.statuses {
        return;
    }
    let fills: Vec<[f32; 4]> = model
        .county
        .pack
        .grids
        .iter()
        .map(|g| grid_fill(statuses.get(&g.id).copied().unwrap_or_default()))
        .collect();
    let colors: Vec<[f32; 4]> = grid_mesh.vertex_grid.iter().map(|gi| fills[*gi]).collect();
    if let Some(mut m) = meshes.get_mut(&grid_mesh.handle) {
        m.insert_attribute(Mesh::ATTRIBUTE_COLOR, colors);
    }
    grid_mesh.statuses = statuses;
}

pub(super) fn plugin(app: &mut App) {
    app.add_systems(Startup, setup_map).add_systems(
        Update,
        (update_grid_fill, rescale_borders).in_set(super::nav::WallSet::Draw),
    );
}
