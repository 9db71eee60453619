//! Consistency checks of a county pack: geometry nesting, partition, names and codes, roster.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::generate::DivisionRow;
use geo::{Area, BooleanOps, BoundingRect, Intersects, MultiPolygon, Polygon};

use super::county::{CountyPack, PackError, read_csv};
use super::geom::LocalProjection;

/// Areas below this many m² count as zero: coordinates are rounded to about 1 cm, which
/// leaves slivers of a few m² along shared borders (a grid is about 100 000 m²).
const AREA_TOLERANCE_M2: f64 = 10.0;

/// What the checks found. An empty `problems` list means the pack is sound.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub passed: Vec<String>,
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn record(&mut self, what: &str, problems: Vec<String>) {
        if problems.is_empty() {
            self.passed.push(what.to_owned());
        } else {
            self.problems.extend(problems);
        }
    }
}

fn area_m2(p: &MultiPolygon<f64>) -> f64 {
    p.unsigned_area()
}

/// Area of `a` outside `b`, m² (both already projected to metres).
fn outside_m2(a: &Polygon<f64>, b: &MultiPolygon<f64>) -> f64 {
    area_m2(&MultiPolygon(vec![a.clone()]).difference(b))
}

/// Run every check. `divisions` is the official `divisions.csv` to compare names and codes
/// against; without it that check is skipped and says so.
pub fn check_pack(pack: &CountyPack, divisions: Option<&Path>) -> Result<CheckReport, PackError> {
    let proj: LocalProjection = pack.projection();
    let mut report = CheckReport::default();
    let county_m = MultiPolygon(
        pack.boundary
            .0
            .iter()
            .map(|p| proj.polygon_to_metres(p))
            .collect(),
    );

    let communities_m: BTreeMap<u64, MultiPolygon<f64>> = pack
        .communities
        .iter()
        .map(|c| (c.code, MultiPolygon(vec![proj.polygon_to_metres(&c.area)])))
        .collect();

    // Communities inside the county, and apart from each other.
    let mut problems = Vec::new();
    for c in &pack.communities {
        let out = outside_m2(&communities_m[&c.code].0[0], &county_m);
        if out > AREA_TOLERANCE_M2 {
            problems.push(format!(
                "community {} ({}) has {out:.0} m² outside the county",
                c.name, c.code
            ));
        }
    }
    for (i, a) in pack.communities.iter().enumerate() {
        for b in &pack.communities[i + 1..] {
            let (pa, pb) = (&communities_m[&a.code], &communities_m[&b.code]);
            if pa.intersects(pb) {
                let overlap = area_m2(&pa.intersection(pb));
                if overlap > AREA_TOLERANCE_M2 {
                    problems.push(format!(
                        "communities {} and {} overlap by {overlap:.0} m²",
                        a.name, b.name
                    ));
                }
            }
        }
    }
    report.record(
        "communities lie inside the county and do not overlap",
        problems,
    );

    // Grids inside their community and the county; a community's grids partition it.
    let mut problems = Vec::new();
    let mut by_community: BTreeMap<u64, Vec<Polygon<f64>>> = BTreeMap::new();
    for g in &pack.grids {
        let Some(cm) = communities_m.get(&g.community_code) else {
            problems.push(format!(
                "grid {} names unknown community {}",
                g.code, g.community_code
            ));
            continue;
        };
        let gm = proj.polygon_to_metres(&g.area);
        let out_c = outside_m2(&gm, cm);
        if out_c > AREA_TOLERANCE_M2 {
            problems.push(format!(
                "grid {} has {out_c:.0} m² outside its community",
                g.code
            ));
        }
        let out_county = outside_m2(&gm, &county_m);
        if out_county > AREA_TOLERANCE_M2 {
            problems.push(format!(
                "grid {} has {out_county:.0} m² outside the county",
                g.code
            ));
        }
        by_community.entry(g.community_code).or_default().push(gm);
    }
    for c in &pack.communities {
        let Some(gs) = by_community.get(&c.code) else {
            problems.push(format!("community {} ({}) has no grids", c.name, c.code));
            continue;
        };
        for (i, a) in gs.iter().enumerate() {
            let ra = a.bounding_rect();
            for b in &gs[i + 1..] {
                let touch = match (ra, b.bounding_rect()) {
                    (Some(ra), Some(rb)) => ra.intersects(&rb),
                    _ => false,
                };
                if touch {
                    let overlap = area_m2(
                        &MultiPolygon(vec![a.clone()]).intersection(&MultiPolygon(vec![b.clone()])),
                    );
                    if overlap > AREA_TOLERANCE_M2 {
                        problems.push(format!(
                            "two grids of {} overlap by {overlap:.0} m²",
                            c.name
                        ));
                    }
                }
            }
        }
        let sum: f64 = gs.iter().map(Area::unsigned_area).sum();
        let whole = area_m2(&communities_m[&c.code]);
        if (sum - whole).abs() > AREA_TOLERANCE_M2 * gs.len() as f64 {
            problems.push(format!(
                "grids of {} cover {sum:.0} m² of its {whole:.0} m²",
                c.name
            ));
        }
    }
    report.record(
        "every grid lies in its community and the county; a community's grids cover it without overlap",
        problems,
    );

    // Names and codes against the official list.
    match divisions {
        Some(path) => {
            let rows: Vec<DivisionRow> = read_csv(path)?;
            let mut problems = Vec::new();
            let official: BTreeMap<u64, &DivisionRow> = rows.iter().map(|r| (r.code, r)).collect();
            let official_communities: BTreeSet<u64> = rows
                .iter()
                .filter(|r| r.kind == "community")
                .map(|r| r.code)
                .collect();
            let ours: BTreeSet<u64> = pack.communities.iter().map(|c| c.code).collect();
            for missing in official_communities.difference(&ours) {
                problems.push(format!(
                    "community {} ({missing}) from divisions.csv is missing",
                    official[missing].name
                ));
            }
            for c in &pack.communities {
                match official.get(&c.code) {
                    Some(r)
                        if r.kind == "community"
                            && r.name == c.name
                            && r.parent_code == c.town_code => {}
                    Some(r) => problems.push(format!(
                        "community {} ({}) differs from divisions.csv: {} {} under {}",
                        c.name, c.code, r.kind, r.name, r.parent_code
                    )),
                    None => problems.push(format!(
                        "community {} ({}) is not in divisions.csv",
                        c.name, c.code
                    )),
                }
            }
            let official_towns = rows.iter().filter(|r| r.kind == "town").count();
            if official_towns != pack.towns.len() {
                problems.push(format!(
                    "{} towns in the pack, {official_towns} in divisions.csv",
                    pack.towns.len()
                ));
            }
            for t in &pack.towns {
                match official.get(&t.code) {
                    Some(r) if r.kind == "town" && r.name == t.name => {}
                    _ => problems.push(format!(
                        "town {} ({}) does not match divisions.csv",
                        t.name, t.code
                    )),
                }
            }
            report.record(
                "town and community names and codes match divisions.csv",
                problems,
            );
        }
        None => report
            .passed
            .push("names and codes: skipped (no divisions.csv given)".to_owned()),
    }

    // Roster references.
    let mut problems = Vec::new();
    let grid_ids: BTreeSet<u32> = pack.grids.iter().map(|g| g.id).collect();
    let team_ids: BTreeSet<u32> = pack.teams.iter().map(|t| t.id).collect();
    if grid_ids.len() != pack.grids.len() {
        problems.push("grid ids are not unique".to_owned());
    }
    for t in &pack.teams {
        if !grid_ids.contains(&t.home_grid_id) {
            problems.push(format!(
                "team {} has unknown home grid {}",
                t.name, t.home_grid_id
            ));
        }
    }
    for v in &pack.volunteers {
        if !team_ids.contains(&v.team_id) || !grid_ids.contains(&v.home_grid_id) {
            problems.push(format!(
                "volunteer {} ({}) names an unknown team or grid",
                v.name, v.id
            ));
        }
    }
    for s in &pack.staff {
        if !grid_ids.contains(&s.grid_id) {
            problems.push(format!("staff {} names unknown grid {}", s.name, s.grid_id));
        }
    }
    let t = &pack.manifest.targets;
    if pack.teams.len() != t.teams || pack.volunteers.len() != t.volunteers {
        problems.push(format!(
            "{} teams and {} volunteers; pack.json says {} and {}",
            pack.teams.len(),
            pack.volunteers.len(),
            t.teams,
            t.volunteers
        ));
    }
    report.record(
        "teams, volunteers and staff reference real grids and teams",
        problems,
    );
    Ok(report)
}
