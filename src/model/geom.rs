//! Plane geometry helpers: a local metric projection, convex clipping and Voronoi partitions.

use geo::{Coord, LineString, Polygon};

/// Metres per degree of latitude (WGS84 mean, good to 0.5 % over a county).
const METRES_PER_DEG_LAT: f64 = 110_574.0;
/// Metres per degree of longitude at the equator.
const METRES_PER_DEG_LON_EQUATOR: f64 = 111_320.0;

/// An equirectangular projection around a reference point, in metres east/north.
///
/// Over a county (about 100 km) the distortion is well under 1 %, which is what the map,
/// distances and area checks need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalProjection {
    pub lon0: f64,
    pub lat0: f64,
    metres_per_deg_lon: f64,
}

impl LocalProjection {
    pub fn new(lon0: f64, lat0: f64) -> Self {
        Self {
            lon0,
            lat0,
            metres_per_deg_lon: METRES_PER_DEG_LON_EQUATOR * lat0.to_radians().cos(),
        }
    }

    /// Metres east/north of the reference point.
    pub fn metres_from_wgs84(&self, lon: f64, lat: f64) -> (f64, f64) {
        (
            (lon - self.lon0) * self.metres_per_deg_lon,
            (lat - self.lat0) * METRES_PER_DEG_LAT,
        )
    }

    /// WGS84 `(lon, lat)` of a point given in metres east/north.
    pub fn wgs84_from_metres(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.lon0 + x / self.metres_per_deg_lon,
            self.lat0 + y / METRES_PER_DEG_LAT,
        )
    }

    pub fn polygon_to_metres(&self, p: &Polygon<f64>) -> Polygon<f64> {
        let ring = |ls: &LineString<f64>| {
            LineString::from(
                ls.coords()
                    .map(|c| {
                        let (x, y) = self.metres_from_wgs84(c.x, c.y);
                        Coord { x, y }
                    })
                    .collect::<Vec<_>>(),
            )
        };
        Polygon::new(ring(p.exterior()), p.interiors().iter().map(ring).collect())
    }

    /// Distance in metres between two WGS84 points (planar, local).
    pub fn distance_m(&self, a: (f64, f64), b: (f64, f64)) -> f64 {
        let (ax, ay) = self.metres_from_wgs84(a.0, a.1);
        let (bx, by) = self.metres_from_wgs84(b.0, b.1);
        ((ax - bx).powi(2) + (ay - by).powi(2)).sqrt()
    }
}

/// Clip a convex polygon (counter-clockwise, open ring) to the half-plane of points
/// closer to `a` than to `b` (Sutherland–Hodgman against the perpendicular bisector).
fn clip_closer_to(poly: &[(f64, f64)], a: (f64, f64), b: (f64, f64)) -> Vec<(f64, f64)> {
    // Inside when dot(p - m, b - a) <= 0, with m the midpoint.
    let (nx, ny) = (b.0 - a.0, b.1 - a.1);
    let (mx, my) = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
    let side = |p: (f64, f64)| (p.0 - mx) * nx + (p.1 - my) * ny;
    let mut out = Vec::with_capacity(poly.len() + 1);
    for i in 0..poly.len() {
        let cur = poly[i];
        let next = poly[(i + 1) % poly.len()];
        let (sc, sn) = (side(cur), side(next));
        if sc <= 0.0 {
            out.push(cur);
        }
        if (sc < 0.0 && sn > 0.0) || (sc > 0.0 && sn < 0.0) {
            let t = sc / (sc - sn);
            out.push((cur.0 + t * (next.0 - cur.0), cur.1 + t * (next.1 - cur.1)));
        }
    }
    out
}

/// Voronoi cells of `seeds` inside the convex polygon `region` (open ring, counter-clockwise).
/// The cells partition the region exactly; each cell is convex.
pub fn voronoi_in_convex(region: &[(f64, f64)], seeds: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    seeds
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let mut cell = region.to_vec();
            for (j, &o) in seeds.iter().enumerate() {
                if i != j && !cell.is_empty() {
                    cell = clip_closer_to(&cell, s, o);
                }
            }
            cell
        })
        .collect()
}

/// Area and centroid of a simple polygon given as an open ring.
pub fn area_centroid(ring: &[(f64, f64)]) -> (f64, (f64, f64)) {
    let mut a2 = 0.0;
    let (mut cx, mut cy) = (0.0, 0.0);
    for i in 0..ring.len() {
        let (x0, y0) = ring[i];
        let (x1, y1) = ring[(i + 1) % ring.len()];
        let cross = x0 * y1 - x1 * y0;
        a2 += cross;
        cx += (x0 + x1) * cross;
        cy += (y0 + y1) * cross;
    }
    if a2.abs() < f64::EPSILON {
        let n = ring.len().max(1) as f64;
        let sx: f64 = ring.iter().map(|p| p.0).sum();
        let sy: f64 = ring.iter().map(|p| p.1).sum();
        return (0.0, (sx / n, sy / n));
    }
    (a2 / 2.0, (cx / (3.0 * a2), cy / (3.0 * a2)))
}

/// Lloyd relaxation: move each seed to its cell's centroid, `rounds` times, for even cells.
pub fn lloyd_relax(region: &[(f64, f64)], seeds: &mut [(f64, f64)], rounds: usize) {
    for _ in 0..rounds {
        let cells = voronoi_in_convex(region, seeds);
        for (seed, cell) in seeds.iter_mut().zip(&cells) {
            if cell.len() >= 3 {
                *seed = area_centroid(cell).1;
            }
        }
    }
}

/// Whether `p` lies inside the convex counter-clockwise ring (boundary included).
pub fn convex_contains(ring: &[(f64, f64)], p: (f64, f64)) -> bool {
    (0..ring.len()).all(|i| {
        let a = ring[i];
        let b = ring[(i + 1) % ring.len()];
        (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0) >= 0.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(side: f64) -> Vec<(f64, f64)> {
        vec![(0.0, 0.0), (side, 0.0), (side, side), (0.0, side)]
    }

    #[test]
    fn voronoi_cells_partition_the_region() {
        let region = square(10.0);
        let seeds = [(1.0, 1.0), (8.0, 2.0), (5.0, 8.0), (2.0, 6.0), (7.0, 6.5)];
        let cells = voronoi_in_convex(&region, &seeds);
        let total: f64 = cells.iter().map(|c| area_centroid(c).0).sum();
        assert!((total - 100.0).abs() < 1e-9, "cells cover {total}, not 100");
        for (cell, seed) in cells.iter().zip(&seeds) {
            assert!(convex_contains(cell, *seed));
        }
    }

    #[test]
    fn two_seeds_split_along_the_bisector() {
        let cells = voronoi_in_convex(&square(2.0), &[(0.5, 1.0), (1.5, 1.0)]);
        assert!((area_centroid(&cells[0]).0 - 2.0).abs() < 1e-12);
        assert!(cells[0].iter().all(|p| p.0 <= 1.0 + 1e-12));
    }

    #[test]
    fn projection_round_trips_and_measures_metres() {
        let proj = LocalProjection::new(106.5, 38.9);
        let (x, y) = proj.metres_from_wgs84(106.6, 39.0);
        let (lon, lat) = proj.wgs84_from_metres(x, y);
        assert!((lon - 106.6).abs() < 1e-12 && (lat - 39.0).abs() < 1e-12);
        // 0.1 degree of latitude is about 11.06 km.
        assert!((y - 11_057.4).abs() < 1.0);
        // 0.1 degree of longitude at 38.9 N is about 8.66 km.
        assert!((x - 8_664.0).abs() < 10.0, "{x}");
    }
}
