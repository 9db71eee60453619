//! Spatial lookups: point → grid (R-tree of grid boxes + exact polygon test) and a
//! rasterised county mask that answers "inside the county?" without walking the boundary.

use geo::{BoundingRect, Contains, Coord, Intersects, MultiPolygon, Point, Polygon};
use rstar::RTree;
use rstar::primitives::{GeomWithData, Rectangle};

use crate::protocol::{GridId, LonLat};

type Entry = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// Finds the grid that contains a point.
#[derive(Clone, Debug)]
pub struct GridIndex {
    tree: RTree<Entry>,
    polygons: Vec<(GridId, Polygon<f64>)>,
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
        Self {
            tree: RTree::bulk_load(entries),
            polygons,
        }
    }

    /// The grid containing `p` (a point on a shared border goes to the lower id).
    pub fn grid_at(&self, p: LonLat) -> Option<GridId> {
        let point = Point::new(p.lon, p.lat);
        self.tree
            .locate_all_at_point(&[p.lon, p.lat])
            .filter(|e| self.polygons[e.data].1.intersects(&point))
            .map(|e| self.polygons[e.data].0)
            .min()
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
    min: Coord<f64>,
    cell: Coord<f64>,
    nx: usize,
    ny: usize,
    cells: Vec<u8>,
    boundary: MultiPolygon<f64>,
}

impl CountyMask {
    pub fn new(boundary: &MultiPolygon<f64>, resolution: usize) -> Self {
        let n = resolution.max(4);
        let Some(rect) = boundary.bounding_rect() else {
            return Self {
                min: Coord { x: 0.0, y: 0.0 },
                cell: Coord { x: 1.0, y: 1.0 },
                nx: 0,
                ny: 0,
                cells: Vec::new(),
                boundary: boundary.clone(),
            };
        };
        let cell = Coord {
            x: (rect.width() / n as f64).max(1e-12),
            y: (rect.height() / n as f64).max(1e-12),
        };
        let mut cells = vec![OUTSIDE; n * n];
        let step = cell.x.min(cell.y) / 4.0;
        let mut mark = |x: f64, y: f64| {
            let cx = ((x - rect.min().x) / cell.x).floor() as isize;
            let cy = ((y - rect.min().y) / cell.y).floor() as isize;
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (ix, iy) = (cx + dx, cy + dy);
                    if ix >= 0 && iy >= 0 && (ix as usize) < n && (iy as usize) < n {
                        cells[iy as usize * n + ix as usize] = EDGE;
                    }
                }
            }
        };
        for poly in &boundary.0 {
            for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
                for seg in ring.lines() {
                    let len = ((seg.end.x - seg.start.x).powi(2)
                        + (seg.end.y - seg.start.y).powi(2))
                    .sqrt();
                    let steps = (len / step).ceil().max(1.0) as usize;
                    for k in 0..=steps {
                        let t = k as f64 / steps as f64;
                        mark(
                            seg.start.x + t * (seg.end.x - seg.start.x),
                            seg.start.y + t * (seg.end.y - seg.start.y),
                        );
                    }
                }
            }
        }
        for iy in 0..n {
            for ix in 0..n {
                let c = &mut cells[iy * n + ix];
                if *c != EDGE {
                    let centre = Point::new(
                        rect.min().x + (ix as f64 + 0.5) * cell.x,
                        rect.min().y + (iy as f64 + 0.5) * cell.y,
                    );
                    *c = if boundary.contains(&centre) {
                        INSIDE
                    } else {
                        OUTSIDE
                    };
                }
            }
        }
        Self {
            min: rect.min(),
            cell,
            nx: n,
            ny: n,
            cells,
            boundary: boundary.clone(),
        }
    }

    /// Whether `p` is inside the county (finite coordinates only).
    pub fn contains(&self, p: LonLat) -> bool {
        if !p.is_finite() {
            return false;
        }
        let fx = (p.lon - self.min.x) / self.cell.x;
        let fy = (p.lat - self.min.y) / self.cell.y;
        if fx < 0.0 || fy < 0.0 || fx >= self.nx as f64 || fy >= self.ny as f64 {
            return false;
        }
        match self.cells[fy as usize * self.nx + fx as usize] {
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
