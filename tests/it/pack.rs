//! The bundled county pack: its checks pass, the checks catch broken packs, and the
//! generator rebuilds the committed files byte for byte.

use std::path::Path;

use datawall::model::check::check_pack;
use datawall::model::county::{CountyPack, default_pack_dir, files};
use datawall::model::generate::{DEFAULT_SEED, generate};
use geo::{Coord, MapCoords};

use crate::common::{county, scratch_dir};

fn divisions() -> std::path::PathBuf {
    default_pack_dir().join("source/divisions.csv")
}

#[test]
fn bundled_pack_passes_every_check() {
    let county = county();
    let report = check_pack(&county.pack, Some(&divisions())).unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert_eq!(report.passed.len(), 4, "{:#?}", report.passed);
}

#[test]
fn bundled_pack_has_the_real_county_and_plausible_grids() {
    let pack = &county().pack;
    assert_eq!(pack.manifest.county_name, "平罗县");
    assert_eq!(pack.towns.len(), 13);
    assert_eq!(pack.communities.len(), 29);
    let seat: Vec<_> = pack
        .communities
        .iter()
        .filter(|c| c.town_code == 640_221_100)
        .collect();
    assert_eq!(seat.len(), 20);
    for name in [
        "新世纪居委会",
        "玉皇阁居委会",
        "饮马湖居委会",
        "和平居委会",
        "鑫盛居委会",
        "明珠居委会",
        "太西居委会",
        "明月居委会",
        "康湖居委会",
    ] {
        assert!(
            pack.communities.iter().any(|c| c.name == name),
            "{name} missing"
        );
    }
    assert!(
        (150..=400).contains(&pack.grids.len()),
        "{} grids",
        pack.grids.len()
    );
    for g in &pack.grids {
        assert!(
            (100..=800).contains(&g.households),
            "{} has {} households",
            g.name,
            g.households
        );
    }
    assert_eq!(pack.teams.len(), 53);
    assert_eq!(pack.volunteers.len(), 1160);
    assert_eq!(pack.grids.iter().map(|g| g.party_groups).sum::<u32>(), 61);
    assert_eq!(
        pack.grids.iter().map(|g| g.centre_households).sum::<u32>(),
        220
    );
    assert_eq!(
        pack.communities
            .iter()
            .map(|c| c.owner_committees)
            .sum::<u32>(),
        51
    );
    // Every grid has its "1+4+X" core: one grid worker at least.
    for g in &pack.grids {
        assert!(
            pack.staff.iter().any(|s| s.grid_id == g.id),
            "{} has no staff",
            g.name
        );
    }
}

#[test]
fn generator_rebuilds_the_committed_pack_byte_for_byte() {
    let mut lines = Vec::new();
    let pack = generate(&default_pack_dir().join("source"), DEFAULT_SEED, &mut |l| {
        lines.push(l.to_owned())
    })
    .unwrap();
    assert!(
        lines.iter().any(|l| l.contains("grids generated")),
        "progress: {lines:?}"
    );
    let out = scratch_dir("regen");
    pack.save(&out).unwrap();
    for name in [
        files::MANIFEST,
        files::BOUNDARY,
        files::TOWNS,
        files::COMMUNITIES,
        files::GRIDS,
        files::STAFF,
        files::TEAMS,
        files::VOLUNTEERS,
    ] {
        let ours = std::fs::read(out.join(name)).unwrap();
        let committed = std::fs::read(default_pack_dir().join(name)).unwrap();
        assert!(
            ours == committed,
            "{name} differs from the committed file; run `datawall county generate`"
        );
    }
    // A different seed gives a different (but still valid) county.
    let other = generate(
        &default_pack_dir().join("source"),
        DEFAULT_SEED + 1,
        &mut |_| {},
    )
    .unwrap();
    assert_ne!(other.grids[0].area, pack.grids[0].area);
    assert!(check_pack(&other, Some(&divisions())).unwrap().is_ok());
    let _ = std::fs::remove_dir_all(out);
}

fn shifted(p: &geo::Polygon<f64>, dlon: f64) -> geo::Polygon<f64> {
    p.map_coords(|c| Coord {
        x: c.x + dlon,
        y: c.y,
    })
}

#[test]
fn checks_catch_a_grid_outside_its_community_and_overlapping_grids() {
    let mut pack: CountyPack = county().pack.clone();
    // Far east of its community (about 4 km).
    pack.grids[0].area = shifted(&pack.grids[0].area, 0.05);
    // Two grids of one community on top of each other.
    assert_eq!(pack.grids[1].community_code, pack.grids[2].community_code);
    pack.grids[1].area = shifted(&pack.grids[2].area, 0.0001);
    let report = check_pack(&pack, None).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("outside its community")),
        "{:#?}",
        report.problems
    );
    assert!(
        report.problems.iter().any(|p| p.contains("overlap")),
        "{:#?}",
        report.problems
    );
}

#[test]
fn checks_catch_wrong_names_missing_grids_and_broken_roster() {
    let mut pack: CountyPack = county().pack.clone();
    pack.communities[3].name = "不存在居委会".into();
    let code = pack.communities[5].code;
    pack.grids.retain(|g| g.community_code != code);
    pack.volunteers[0].team_id = 999;
    let report = check_pack(&pack, Some(&divisions())).unwrap();
    let all = report.problems.join("\n");
    assert!(all.contains("differs from divisions.csv"), "{all}");
    assert!(all.contains("has no grids"), "{all}");
    assert!(all.contains("unknown team or grid"), "{all}");
}

#[test]
fn loading_a_broken_pack_names_the_file() {
    let dir = scratch_dir("broken");
    let err = CountyPack::load(&dir).unwrap_err().to_string();
    assert!(err.contains("pack.json"), "{err}");
    county().pack.save(&dir).unwrap();
    std::fs::write(dir.join(files::GRIDS), "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\",\"properties\":{},\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[1,2],[3,4],[1,2]]]}}]}").unwrap();
    let err = CountyPack::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("grids.geojson") && err.contains("`id`"),
        "{err}"
    );
    let reloaded_ok = CountyPack::load(Path::new(&default_pack_dir()));
    assert!(reloaded_ok.is_ok());
    let _ = std::fs::remove_dir_all(dir);
}
