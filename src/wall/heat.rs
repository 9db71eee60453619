//! Ticket heatmap: open tickets weighted by priority and age are splatted into a density
//! grid when tickets change (at most every 2 s, to age them), blurred, log-scaled and
//! uploaded as an R8 texture; `shaders/heat.wgsl` maps it to the colour ramp. The work is
//! proportional to open tickets once per update, never per frame.

use bevy::asset::{RenderAssetUsages, uuid_handle};
use bevy::image::ImageSampler;
use bevy::prelude::*;
use bevy::render::render_resource::{AsBindGroup, Extent3d, TextureDimension, TextureFormat};
use bevy::shader::ShaderRef;
use bevy::sprite_render::{AlphaMode2d, Material2d, Material2dPlugin};

use std::sync::Arc;

use bevy::tasks::{AsyncComputeTaskPool, Task, futures::check_ready};

use super::feed::WallModel;
pub use super::nav::ShowHeat;
use super::nav::world;
use crate::analytics::store::{StoreChunk, TicketStore};
use crate::model::LiveState;
use crate::protocol::{LonLat, Priority, TimestampMs};

const HEAT_SHADER: Handle<Shader> = uuid_handle!("6f1d2c0e-5a8b-4e0b-9d7c-3b2a1f0e9d8c");
/// Metres per density cell.
pub const CELL_M: f32 = 40.0;
/// Blur radius in cells (two box passes ≈ a Gaussian of about 100 m).
const BLUR_CELLS: usize = 2;
const OPACITY: f32 = 0.72;
/// Normalised density below which nothing is drawn.
const FLOOR: f32 = 0.04;

#[derive(Asset, TypePath, AsBindGroup, Debug, Clone)]
pub struct HeatMaterial {
    /// x: opacity, y: floor.
    #[uniform(0)]
    pub params: Vec4,
    #[texture(1)]
    #[sampler(2)]
    pub density: Handle<Image>,
}

impl Material2d for HeatMaterial {
    fn fragment_shader() -> ShaderRef {
        ShaderRef::Handle(HEAT_SHADER)
    }

    fn alpha_mode(&self) -> AlphaMode2d {
        AlphaMode2d::Blend
    }
}

/// The density grid: world extent and size in cells.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeatGrid {
    pub min: Vec2,
    pub cols: usize,
    pub rows: usize,
}

impl HeatGrid {
    /// Around the built-up areas (every community), with a margin.
    pub fn around_communities(county: &crate::model::County) -> Self {
        let proj = county.pack.projection();
        let pts = county.pack.communities.iter().flat_map(|c| {
            c.area
                .exterior()
                .coords()
                .map(|p| world(&proj, LonLat::new(p.x, p.y)))
                .collect::<Vec<_>>()
        });
        let (min, max) = pts.fold(
            (Vec2::splat(f32::MAX), Vec2::splat(f32::MIN)),
            |(a, b), p| (a.min(p), b.max(p)),
        );
        let margin = Vec2::splat(800.0);
        let (min, max) = (min - margin, max + margin);
        Self {
            min,
            cols: ((max.x - min.x) / CELL_M).ceil().max(1.0) as usize,
            rows: ((max.y - min.y) / CELL_M).ceil().max(1.0) as usize,
        }
    }

    /// World centre of a cell (row 0 north).
    pub fn cell_centre(&self, col: usize, row: usize) -> Vec2 {
        self.min + Vec2::new(col as f32 + 0.5, (self.rows - 1 - row) as f32 + 0.5) * CELL_M
    }

    pub fn size_m(&self) -> Vec2 {
        Vec2::new(self.cols as f32, self.rows as f32) * CELL_M
    }

    /// Cell of a world point, row 0 at the north edge (texture order).
    pub fn cell(&self, p: Vec2) -> Option<(usize, usize)> {
        let d = (p - self.min) / CELL_M;
        if d.x < 0.0 || d.y < 0.0 {
            return None;
        }
        let (c, r_from_south) = (d.x as usize, d.y as usize);
        (c < self.cols && r_from_south < self.rows).then(|| (c, self.rows - 1 - r_from_south))
    }
}

/// A ticket's heat: priority, then older and overdue tickets burn hotter.
pub fn ticket_weight(
    priority: Priority,
    opened_at_ms: TimestampMs,
    deadline_ms: TimestampMs,
    now_ms: TimestampMs,
) -> f32 {
    let p = match priority {
        Priority::Low => 0.5,
        Priority::Normal => 1.0,
        Priority::High => 2.0,
        Priority::Urgent => 4.0,
    };
    let age_h = ((now_ms - opened_at_ms).max(0) as f32) / 3_600_000.0;
    let overdue = if now_ms > deadline_ms { 2.0 } else { 1.0 };
    p * (1.0 + age_h / 24.0).min(3.0) * overdue
}

fn box_blur(src: &[f32], cols: usize, rows: usize, r: usize) -> Vec<f32> {
    let mut tmp = vec![0.0f32; src.len()];
    let mut out = vec![0.0f32; src.len()];
    let norm = 1.0 / (2 * r + 1) as f32;
    for y in 0..rows {
        let row = &src[y * cols..(y + 1) * cols];
        let mut acc: f32 = row[..=r.min(cols - 1)].iter().sum();
        for x in 0..cols {
            tmp[y * cols + x] = acc * norm;
            if x + r + 1 < cols {
                acc += row[x + r + 1];
            }
            if x >= r {
                acc -= row[x - r];
            }
        }
    }
    for x in 0..cols {
        let mut acc: f32 = (0..=r.min(rows - 1)).map(|y| tmp[y * cols + x]).sum();
        for y in 0..rows {
            out[y * cols + x] = acc * norm;
            if y + r + 1 < rows {
                acc += tmp[(y + r + 1) * cols + x];
            }
            if y >= r {
                acc -= tmp[(y - r) * cols + x];
            }
        }
    }
    out
}

/// Density texels (R8, row 0 north) for the open tickets of `live` at `now_ms`.
pub fn density_texels(grid: &HeatGrid, live: &LiveState, now_ms: TimestampMs) -> Vec<u8> {
    density_from_rows(grid, &TicketStore::from_live(live).snapshot(), now_ms)
}

/// Density texels from the ticket store's rows (open ones count): what the heat task runs.
pub fn density_from_rows(
    grid: &HeatGrid,
    chunks: &[Arc<StoreChunk>],
    now_ms: TimestampMs,
) -> Vec<u8> {
    let mut acc = vec![0.0f32; grid.cols * grid.rows];
    for c in chunks {
        for i in (0..c.len()).filter(|&i| c.open[i]) {
            if let Some((col, row)) = grid.cell(Vec2::from(c.pos_m[i])) {
                acc[row * grid.cols + col] +=
                    ticket_weight(c.priority[i], c.opened_at_ms[i], c.deadline_ms(i), now_ms);
            }
        }
    }
    let blurred = box_blur(
        &box_blur(&acc, grid.cols, grid.rows, BLUR_CELLS),
        grid.cols,
        grid.rows,
        BLUR_CELLS,
    );
    let max = blurred.iter().copied().fold(0.0f32, f32::max);
    if max <= 0.0 {
        return vec![0; blurred.len()];
    }
    let scale = 1.0 / (1.0 + max).ln();
    blurred
        .iter()
        .map(|d| ((1.0 + d).ln() * scale * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

#[derive(Resource)]
struct HeatLayer {
    grid: HeatGrid,
    image: Handle<Image>,
    entity: Entity,
    last: Option<std::time::Instant>,
    /// The accumulation running on the task pool.
    task: Option<Task<Vec<u8>>>,
    /// Something the heat shows changed since the last accumulation.
    dirty: bool,
}

fn setup_heat(
    mut commands: Commands,
    model: Res<WallModel>,
    mut images: ResMut<Assets<Image>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<HeatMaterial>>,
) {
    let grid = HeatGrid::around_communities(&model.county);
    let mut image = Image::new_fill(
        Extent3d {
            width: grid.cols as u32,
            height: grid.rows as u32,
            depth_or_array_layers: 1,
        },
        TextureDimension::D2,
        &[0],
        TextureFormat::R8Unorm,
        RenderAssetUsages::default(),
    );
    image.sampler = ImageSampler::linear();
    let image = images.add(image);
    let size = grid.size_m();
    let centre = grid.min + size / 2.0;
    let entity = commands
        .spawn((
            Name::new("ticket heatmap"),
            Mesh2d(meshes.add(Rectangle::new(size.x, size.y))),
            MeshMaterial2d(materials.add(HeatMaterial {
                params: Vec4::new(OPACITY, FLOOR, 0.0, 0.0),
                density: image.clone(),
            })),
            Transform::from_xyz(centre.x, centre.y, 1.5),
            super::map_cache::MapLayer {
                image: Some(image.id()),
            },
        ))
        .id();
    commands.insert_resource(HeatLayer {
        grid,
        image,
        entity,
        last: None,
        task: None,
        dirty: true,
    });
}

fn update_heat(
    model: Res<WallModel>,
    mut learnt: MessageReader<super::nav::Learnt>,
    mut layer: ResMut<HeatLayer>,
    mut images: ResMut<Assets<Image>>,
    show: Res<ShowHeat>,
    mut visibility: Query<&mut Visibility>,
) {
    if let Ok(mut v) = visibility.get_mut(layer.entity) {
        let want = if show.0 {
            Visibility::Inherited
        } else {
            Visibility::Hidden
        };
        if *v != want {
            *v = want;
        }
    }
    // Redrawn for any change but volunteers' positions (and as tickets age).
    if learnt.read().any(|l| l.beyond_fixes()) {
        layer.dirty = true;
    }
    let aging_due = layer
        .last
        .is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(2));
    if let Some(task) = layer.task.as_mut() {
        let Some(texels) = check_ready(task) else {
            return; // still accumulating
        };
        layer.task = None;
        // In place, and only when a texel changed: an unchanged heat does not redraw the
        // cached map.
        let same = images
            .get(&layer.image)
            .is_some_and(|img| img.data.as_deref() == Some(texels.as_slice()));
        if !same && let Some(mut img) = images.get_mut(&layer.image) {
            img.data = Some(texels);
        }
    }
    if !(layer.dirty || aging_due) || !show.0 || model.live().is_none() {
        return;
    }
    // The accumulation walks every open ticket: on the task pool, from a store snapshot.
    let chunks = model.ticket_store.snapshot();
    let (grid, now_ms) = (layer.grid, model.now_ms());
    layer.task = Some(
        AsyncComputeTaskPool::get().spawn(async move { density_from_rows(&grid, &chunks, now_ms) }),
    );
    layer.dirty = false;
    layer.last = Some(std::time::Instant::now());
}

pub(super) fn plugin(app: &mut App) {
    let _ = app.world_mut().resource_mut::<Assets<Shader>>().insert(
        HEAT_SHADER.id(),
        Shader::from_wgsl(include_str!("../../shaders/heat.wgsl"), "shaders/heat.wgsl"),
    );
    super::map_cache::watch::<HeatMaterial>(app);
    app.add_plugins(Material2dPlugin::<HeatMaterial>::default())
        .add_systems(Startup, setup_heat)
        .add_systems(Update, update_heat.in_set(super::nav::WallSet::Draw));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_keeps_mass_and_spreads() {
        let (cols, rows) = (9, 9);
        let mut src = vec![0.0; cols * rows];
        src[4 * cols + 4] = 25.0;
        let out = box_blur(&src, cols, rows, 2);
        let total: f32 = out.iter().sum();
        assert!((total - 25.0).abs() < 1e-3, "{total}");
        assert!((out[4 * cols + 4] - 1.0).abs() < 1e-5);
        assert_eq!(out[0], 0.0);
    }

    #[test]
    fn weights_rank_priority_age_and_overdue() {
        let w = |p, age_h: i64, overdue: bool| {
            let now = 100 * 3_600_000;
            ticket_weight(
                p,
                now - age_h * 3_600_000,
                if overdue { now - 1 } else { now + 1 },
                now,
            )
        };
        assert!(w(Priority::Urgent, 0, false) > w(Priority::Normal, 0, false));
        assert!(w(Priority::Normal, 24, false) > w(Priority::Normal, 0, false));
        assert!(w(Priority::Normal, 0, true) > w(Priority::Normal, 0, false));
    }

    #[test]
    fn cells_count_rows_from_the_north() {
        let g = HeatGrid {
            min: Vec2::ZERO,
            cols: 10,
            rows: 5,
        };
        assert_eq!(g.cell(Vec2::new(1.0, 1.0)), Some((0, 4)));
        assert_eq!(g.cell(Vec2::new(1.0, 5.0 * CELL_M - 1.0)), Some((0, 0)));
        assert_eq!(g.cell(Vec2::new(-1.0, 1.0)), None);
        assert_eq!(g.cell(Vec2::new(10.0 * CELL_M, 1.0)), None);
    }
}
