//! Spatial lookups: point → grid and "inside the county?", both through a raster whose cells
//! are either wholly inside one region (answered at once) or crossed by a border (answered by
//! the exact polygon test: an R-tree of grid boxes, then point-in-polygon).

use geo::{BoundingRect, Contains, Coord, Intersects, LineString, MultiPolygon, Point, Polygon};
use rstar::RTree;
use rstar::primitives::{GeomWithData, Rectangle};

use crate::protocol::{GridId, LonLat};

type Entry = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// A regular n × n raster over a bounding box.
#[derive(Clone, Debug)]
struct Raster {
    min: Coord<f64>,
    cell: Coord<f64>,
    n: usize,
}

impl Raster {
    fn new(rect: geo::Rect<f64>, n: usize) -> Self {
        Self {
            min: rect.min(),
            cell: Coord {
                x: (rect.width() / n as f64).max(1e-12),
                y: (rect.height() / n as f64).max(1e-12),
            },
            n,
        }
    }

    /// The cell holding `p`, if `p` is finite and inside the raster.
    fn cell_of(&self, p: LonLat) -> Option<usize> {
        let fx = (p.lon - self.min.x) / self.cell.x;
        let fy = (p.lat - self.min.y) / self.cell.y;
        // NaN fails every comparison and is rejected here too.
        if !(fx >= 0.0 && fy >= 0.0 && fx < self.n as f64 && fy < self.n as f64) {
            return None;
        }
        Some(fy as usize * self.n + fx as usize)
    }

    fn centre(&self, i: usize) -> Point<f64> {
        let (ix, iy) = (i % self.n, i / self.n);
        Point::new(
            self.min.x + (ix as f64 + 0.5) * self.cell.x,
            self.min.y + (iy as f64 + 0.5) * self.cell.y,
        )
    }

    /// Set `edge` in every cell a ring passes through and in its 8 neighbours (the ring is
    /// walked in steps of a quarter cell, so no crossed cell is missed).
    fn mark_rings<'a, T: Copy>(
        &self,
        rings: impl IntoIterator<Item = &'a LineString<f64>>,
        cells: &mut [T],
        edge: T,
    ) {
        let n = self.n as isize;
        let step = self.cell.x.min(self.cell.y) / 4.0;
        for ring in rings {
            for seg in ring.lines() {
                let len =
                    ((seg.end.x - seg.start.x).powi(2) + (seg.end.y - seg.start.y).powi(2)).sqrt();
                let steps = (len / step).ceil().max(1.0) as usize;
                for k in 0..=steps {
                    let t = k as f64 / steps as f64;
                    let x = seg.start.x + t * (seg.end.x - seg.start.x);
                    let y = seg.start.y + t * (seg.end.y - seg.start.y);
                    let cx = ((x - self.min.x) / self.cell.x).floor() as isize;
                    let cy = ((y - self.min.y) / self.cell.y).floor() as isize;
                    for dy in -1..=1 {
                        for dx in -1..=1 {
                            let (ix, iy) = (cx + dx, cy + dy);
                            if (0..n).contains(&ix) && (0..n).contains(&iy) {
                                cells[(iy * n + ix) as usize] = edge;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Raster cell of the grid index: on a border, or answered (a grid slot, or no grid).
const CELL_EDGE: u32 = u32::MAX;
const CELL_NONE: u32 = u32::MAX - 1;
const CELL_UNSET: u32 = u32::MAX - 2;

/// Finds the grid that contains a point.
#[derive(Clone, Debug)]
pub struct GridIndex {
    tree: RTree<Entry>,
    polygons: Vec<(GridId, Polygon<f64>)>,
    /// Cells away from every grid border hold the answer for any point in them.
    raster: Option<Raster>,
    cells: Vec<u32>,
}

impl GridIndex {
    pub fn new<'a>(grids: impl IntoIterator<Item = (GridId, &'a Polygon<f64>)>) -> Self {
        let polygons: Vec<(GridId, Polygon<f64>)> =
            grids.into_iter().map(|(id, p)| (id, p.clone())).collect();
        let entries = polygons
            .iter()
            .enumerate()
            .filter_map(|(i, (_, p))| {
                let r = p.bounding_rect()?;
                Some(Entry::new(
                    Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]),
                    i,
                ))
            })
            .collect();
        let mut index = Self {
            tree: RTree::bulk_load(entries),
            polygons,
            raster: None,
            cells: Vec::new(),
        };
        index.rasterise();
        index
    }

    /// Build the raster: mark every border's cells, then flood each region between borders
    /// and answer it once with the exact lookup (regions cannot leak: a border is a band of
    /// marked cells at least two cells wide).
    fn rasterise(&mut self) {
        if self.tree.size() == 0 {
            return;
        }
        // The grids' extent is the R-tree root's box.
        let env = self.tree.root().envelope();
        let (lo, hi) = (env.lower(), env.upper());
        let rect = geo::Rect::new(Coord { x: lo[0], y: lo[1] }, Coord { x: hi[0], y: hi[1] });
        // About 48 cells across the typical grid, 1024 × 1024 (4 MB) at most.
        let n = ((48.0 * (self.polygons.len() as f64).sqrt()) as usize).clamp(64, 1024);
        let raster = Raster::new(rect, n);
        let mut cells = vec![CELL_UNSET; n * n];
        raster.mark_rings(
            self.polygons
                .iter()
                .flat_map(|(_, p)| std::iter::once(p.exterior()).chain(p.interiors())),
            &mut cells,
            CELL_EDGE,
        );
        let mut stack = Vec::new();
        for seed in 0..cells.len() {
            if cells[seed] != CELL_UNSET {
                continue;
            }
            let c = raster.centre(seed);
            let answer = self
                .exact(LonLat::new(c.x(), c.y()))
                .map_or(CELL_NONE, |slot| slot as u32);
            cells[seed] = answer;
            stack.push(seed);
            while let Some(i) = stack.pop() {
                let (ix, iy) = (i % n, i / n);
                let mut visit = |j: usize| {
                    if cells[j] == CELL_UNSET {
                        cells[j] = answer;
                        stack.push(j);
                    }
                };
                if ix > 0 {
                    visit(i - 1);
                }
                if ix + 1 < n {
                    visit(i + 1);
                }
                if iy > 0 {
                    visit(i - n);
                }
                if iy + 1 < n {
                    visit(i + n);
                }
            }
        }
        self.raster = Some(raster);
        self.cells = cells;
    }

    /// Slot (in `polygons`) of the grid containing `p` by the exact test; a point on a shared
    /// border goes to the lower id.
    fn exact(&self, p: LonLat) -> Option<usize> {
        let point = Point::new(p.lon, p.lat);
        self.tree
            .locate_all_at_point(&[p.lon, p.lat])
            .filter(|e| self.polygons[e.data].1.intersects(&point))
            .min_by_key(|e| self.polygons[e.data].0)
            .map(|e| e.data)
    }

    /// The grid containing `p` (a point on a shared border goes to the lower id).
    pub fn grid_at(&self, p: LonLat) -> Option<GridId> {
        let cell = self
            .raster
            .as_ref()
            .and_then(|r| r.cell_of(p))
            .map_or(CELL_EDGE, |i| self.cells[i]);
        match cell {
            CELL_NONE => None,
            CELL_EDGE | CELL_UNSET => self.exact(p).map(|i| self.polygons[i].0),
            slot => Some(self.polygons[slot as usize].0),
        }
    }

    /// Reference answer by testing every grid; for tests and benchmarks.
    pub fn grid_at_brute_force(&self, p: LonLat) -> Option<GridId> {
        let point = Point::new(p.lon, p.lat);
        self.polygons
            .iter()
            .filter(|(_, poly)| poly.intersects(&point))
            .map(|(id, _)| *id)
            .min()
    }

    pub fn len(&self) -> usize {
        self.polygons.len()
    }

    pub fn is_empty(&self) -> bool {
        self.polygons.is_empty()
    }
}

const OUTSIDE: u8 = 0;
const INSIDE: u8 = 1;
const EDGE: u8 = 2;

/// The county boundary rasterised into cells that are inside, outside or on the edge;
/// only points in edge cells need the exact polygon test.
#[derive(Clone, Debug)]
pub struct CountyMask {
    raster: Option<Raster>,
    cells: Vec<u8>,
    boundary: MultiPolygon<f64>,
}

impl CountyMask {
    pub fn new(boundary: &MultiPolygon<f64>, resolution: usize) -> Self {
        let n = resolution.max(4);
        let Some(rect) = boundary.bounding_rect() else {
            return Self {
                raster: None,
                cells: Vec::new(),
                boundary: boundary.clone(),
            };
        };
        let raster = Raster::new(rect, n);
        let mut cells = vec![OUTSIDE; n * n];
        raster.mark_rings(
            boundary
                .0
                .iter()
                .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors())),
            &mut cells,
            EDGE,
        );
        for (i, c) in cells.iter_mut().enumerate() {
            if *c != EDGE {
                *c = if boundary.contains(&raster.centre(i)) {
                    INSIDE
                } else {
                    OUTSIDE
                };
            }
        }
        Self {
            raster: Some(raster),
            cells,
            boundary: boundary.clone(),
        }
    }

    /// Whether `p` is inside the county (finite coordinates only).
    pub fn contains(&self, p: LonLat) -> bool {
        if !p.is_finite() {
            return false;
        }
        let Some(i) = self.raster.as_ref().and_then(|r| r.cell_of(p)) else {
            return false;
        };
        match self.cells[i] {
            INSIDE => true,
            OUTSIDE => false,
            _ => self.boundary.intersects(&Point::new(p.lon, p.lat)),
        }
    }

    /// Exact answer, for tests.
    pub fn contains_exact(&self, p: LonLat) -> bool {
        p.is_finite() && self.boundary.intersects(&Point::new(p.lon, p.lat))
    }
}
