//! Load-test scaling: the county with every grid split into `k` smaller grids and the
//! volunteer roster replicated `n` times (`--scale`). Deterministic, so a gateway and a wall
//! that know the two factors (the `hello` carries them) build the same county.

use super::County;
use super::county::{CountyPack, Grid, StaffMember, round7};
use super::generate::polygon_wgs84;
use super::geom::{area_centroid, lloyd_relax, voronoi_in_convex};
use super::rng::Rng;
use crate::protocol::{GridId, LonLat};

/// Ids of split grids are `original × GRID_ID_STRIDE + part` (part from 1).
pub const GRID_ID_STRIDE: u32 = 1_000;

/// The county scaled for a load test: grids split `grid_split` ways (at most 999), roster
/// replicated `roster_scale` times. `(1, 1)` is the county as it is.
pub fn scaled_county(mut pack: CountyPack, roster_scale: u32, grid_split: u32) -> County {
    let k = grid_split.clamp(1, GRID_ID_STRIDE - 1);
    if k > 1 {
        split_grids(&mut pack, k);
    }
    let mut county = County::with_roster_scale(pack, roster_scale);
    county.grid_split = k;
    county
}

/// Open counter-clockwise ring in local metres of a grid's exterior.
fn ring_m(pack: &CountyPack, g: &Grid) -> Vec<(f64, f64)> {
    let proj = pack.projection();
    let mut ring: Vec<(f64, f64)> = g
        .area
        .exterior()
        .coords()
        .map(|c| proj.metres_from_wgs84(c.x, c.y))
        .collect();
    if ring.len() > 1 && ring.first() == ring.last() {
        ring.pop();
    }
    if area_centroid(&ring).0 < 0.0 {
        ring.reverse();
    }
    ring
}

/// Replace every grid by `k` Voronoi parts (Lloyd-relaxed, so they are about equal); staff
/// are copied to every part, teams and volunteers move to a part of their home grid.
pub fn split_grids(pack: &mut CountyPack, k: u32) {
    let proj = pack.projection();
    let mut grids = Vec::with_capacity(pack.grids.len() * k as usize);
    for g in &pack.grids {
        let ring = ring_m(pack, g);
        let (min_x, max_x, min_y, max_y) = ring.iter().fold(
            (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
            |(a, b, c, d), p| (a.min(p.0), b.max(p.0), c.min(p.1), d.max(p.1)),
        );
        let mut rng = Rng::new(u64::from(g.id)).fork("split");
        let mut seeds = Vec::with_capacity(k as usize);
        let mut tries = 0;
        while seeds.len() < k as usize && tries < 10_000 {
            tries += 1;
            let p = (rng.range_f64(min_x, max_x), rng.range_f64(min_y, max_y));
            if super::geom::convex_contains(&ring, p) {
                seeds.push(p);
            }
        }
        lloyd_relax(&ring, &mut seeds, 3);
        let cells = voronoi_in_convex(&ring, &seeds);
        for (j, cell) in cells.iter().enumerate().filter(|(_, c)| c.len() >= 3) {
            let part = j as u32 + 1;
            let (_, (cx, cy)) = area_centroid(cell);
            let (lon, lat) = proj.wgs84_from_metres(cx, cy);
            grids.push(Grid {
                id: g.id * GRID_ID_STRIDE + part,
                code: format!("{}-{part}", g.code),
                name: format!("{}-{part}", g.name),
                community_code: g.community_code,
                households: (g.households / k).max(1),
                party_groups: g.party_groups / k,
                centre_households: g.centre_households / k,
                area: polygon_wgs84(cell, &proj),
                label: LonLat::new(round7(lon), round7(lat)),
            });
        }
    }
    let first_part = |id: GridId| id * GRID_ID_STRIDE + 1;
    let part_of = |id: GridId, salt: u32| id * GRID_ID_STRIDE + 1 + salt % k;
    let staff: Vec<StaffMember> = pack
        .staff
        .iter()
        .flat_map(|s| {
            (1..=k).map(move |part| StaffMember {
                grid_id: s.grid_id * GRID_ID_STRIDE + part,
                ..s.clone()
            })
        })
        .collect();
    for t in &mut pack.teams {
        t.home_grid_id = first_part(t.home_grid_id);
    }
    for v in &mut pack.volunteers {
        v.home_grid_id = part_of(v.home_grid_id, v.id);
    }
    pack.grids = grids;
    pack.staff = staff;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::county::default_pack_dir;

    #[test]
    fn split_grids_partition_their_parent_and_keep_every_reference_valid() {
        let pack = CountyPack::load(&default_pack_dir()).unwrap();
        let county = scaled_county(pack.clone(), 2, 4);
        assert_eq!(county.pack.grids.len(), pack.grids.len() * 4);
        assert_eq!(county.pack.volunteers.len(), pack.volunteers.len() * 2);
        assert_eq!((county.roster_scale, county.grid_split), (2, 4));
        for g in pack.grids.iter().take(20) {
            let parent = area_centroid(&ring_m(&pack, g)).0;
            let parts: f64 = (1..=4)
                .map(|p| {
                    let child = county.grid(g.id * GRID_ID_STRIDE + p).unwrap();
                    assert_eq!(child.community_code, g.community_code);
                    // The label lies in its own part.
                    assert_eq!(county.index.grid_at(child.label), Some(child.id));
                    area_centroid(&ring_m(&county.pack, child)).0
                })
                .sum();
            assert!(
                (parts - parent).abs() < parent * 0.01,
                "grid {}: {parts} vs {parent}",
                g.id
            );
        }
        for v in &county.pack.volunteers {
            assert!(county.grid(v.home_grid_id).is_some(), "volunteer {}", v.id);
        }
        for t in &county.pack.teams {
            assert!(county.grid(t.home_grid_id).is_some(), "team {}", t.id);
        }
        for s in &county.pack.staff {
            assert!(county.grid(s.grid_id).is_some());
        }
        // Deterministic.
        let again = scaled_county(pack, 2, 4);
        assert_eq!(again.pack.grids, county.pack.grids);
    }
}
