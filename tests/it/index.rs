//! Point → grid lookups and the county mask agree with brute force on random points.

use datawall::model::rng::Rng;
use datawall::protocol::LonLat;

use crate::common::county;

#[test]
fn grid_index_matches_brute_force_on_random_points() {
    let county = county();
    let (min, max) = county.pack.bounds();
    let mut rng = Rng::new(42);
    let mut hits = 0;
    // Half the points over the whole county, half over the county seat where grids are dense.
    let seat = county
        .pack
        .towns
        .iter()
        .find(|t| t.name == "城关镇")
        .unwrap();
    for i in 0..20_000 {
        let p = if i % 2 == 0 {
            LonLat::new(
                rng.range_f64(min.lon, max.lon),
                rng.range_f64(min.lat, max.lat),
            )
        } else {
            LonLat::new(
                seat.lon + rng.range_f64(-0.05, 0.05),
                seat.lat + rng.range_f64(-0.04, 0.04),
            )
        };
        let fast = county.index.grid_at(p);
        assert_eq!(fast, county.index.grid_at_brute_force(p), "at {p:?}");
        hits += usize::from(fast.is_some());
    }
    assert!(
        hits > 3_000,
        "only {hits} points fell in a grid; the test would prove little"
    );
}

#[test]
fn grid_label_points_fall_in_their_own_grid() {
    let county = county();
    for g in &county.pack.grids {
        assert_eq!(
            county.index.grid_at(g.label),
            Some(g.id),
            "label of {}",
            g.name
        );
    }
}

#[test]
fn county_mask_matches_the_exact_boundary_test() {
    let county = county();
    let (min, max) = county.pack.bounds();
    let mut rng = Rng::new(7);
    let (mut inside, mut outside) = (0, 0);
    for _ in 0..20_000 {
        let p = LonLat::new(
            rng.range_f64(min.lon - 0.05, max.lon + 0.05),
            rng.range_f64(min.lat - 0.05, max.lat + 0.05),
        );
        let exact = county.mask.contains_exact(p);
        assert_eq!(county.mask.contains(p), exact, "at {p:?}");
        if exact { inside += 1 } else { outside += 1 }
    }
    assert!(
        inside > 1_000 && outside > 1_000,
        "{inside} inside, {outside} outside"
    );
    assert!(!county.mask.contains(LonLat::new(f64::NAN, 38.9)));
    assert!(!county.mask.contains(LonLat::new(f64::INFINITY, 38.9)));
}

#[test]
fn split_grids_and_points_on_borders_match_brute_force() {
    // 3 102 small grids (every grid split 11 ways): the raster's cells are coarse against them.
    let county = datawall::model::scale::scaled_county(crate::common::county().pack.clone(), 1, 11);
    assert!(county.index.len() > 3_000);
    let (min, max) = county.pack.bounds();
    let mut rng = Rng::new(11);
    for _ in 0..20_000 {
        let p = LonLat::new(
            rng.range_f64(min.lon, max.lon),
            rng.range_f64(min.lat, max.lat),
        );
        assert_eq!(
            county.index.grid_at(p),
            county.index.grid_at_brute_force(p),
            "at {p:?}"
        );
    }
    // Vertices and edge midpoints lie on borders shared by two grids: the lower id wins, as in
    // the brute-force answer.
    for g in county.pack.grids.iter().step_by(7) {
        let ring = g.area.exterior();
        for w in ring.0.windows(2) {
            for p in [
                LonLat::new(w[0].x, w[0].y),
                LonLat::new((w[0].x + w[1].x) / 2.0, (w[0].y + w[1].y) / 2.0),
            ] {
                assert_eq!(
                    county.index.grid_at(p),
                    county.index.grid_at_brute_force(p),
                    "at {p:?}"
                );
            }
        }
    }
}
