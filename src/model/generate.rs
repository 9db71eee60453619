//! The county-pack generator: real boundary and divisions in, deterministic simulated
//! community areas, grids, staff, teams and volunteers out.

use std::collections::BTreeMap;
use std::path::Path;

use geo::{Contains, ConvexHull, Coord, LineString, MultiPoint, MultiPolygon, Point, Polygon};
use serde::Deserialize;
use serde_json::Value;

use super::county::{
    Community, CountyPack, Grid, PACK_FORMAT, PackError, PackManifest, PackTargets, StaffMember,
    StaffRole, Team, Town, VolunteerRecord, VolunteerRole, display_name_of, geometry_from,
    read_csv, read_json, round7,
};
use super::geom::{
    LocalProjection, area_centroid, convex_contains, lloyd_relax, voronoi_in_convex,
};
use super::names::{chinese_number, person_name};
use super::rng::Rng;
use crate::protocol::{GridId, LonLat, TeamId};

/// The source files a pack is generated from.
pub const DIVISIONS_CSV: &str = "divisions.csv";
pub const BOUNDARIES_GEOJSON: &str = "shizuishan_districts.geojson";

/// Seed of the bundled pack.
pub const DEFAULT_SEED: u64 = 20_241_126;

/// Figures from the county's report (BRIEF.md).
pub const PINGLUO_TARGETS: PackTargets = PackTargets {
    teams: 53,
    volunteers: 1160,
    grid_party_groups: 61,
    centre_households: 220,
    owner_committees: 51,
    red_property_councils: 12,
    custodial_estates: 8,
};

/// Approximate seat positions of Pingluo's towns (WGS84). Not surveyed: the pack marks them
/// as simulated. A town missing here is placed near the county's label point.
const TOWN_SEATS: &[(u64, f64, f64)] = &[
    (640_221_100, 106.545, 38.906), // 城关镇 (county seat)
    (640_221_101, 106.600, 39.035), // 黄渠桥镇
    (640_221_102, 106.570, 38.990), // 宝丰镇
    (640_221_103, 106.640, 38.960), // 头闸镇
    (640_221_104, 106.475, 38.785), // 姚伏镇
    (640_221_105, 106.360, 38.905), // 崇岗镇
    (640_221_106, 106.700, 38.810), // 陶乐镇
    (640_221_200, 106.580, 38.860), // 高庄乡
    (640_221_201, 106.440, 38.870), // 灵沙乡
    (640_221_202, 106.420, 38.700), // 渠口乡
    (640_221_203, 106.540, 38.780), // 通伏乡
    (640_221_204, 106.760, 38.700), // 高仁乡
    (640_221_205, 106.770, 38.930), // 红崖子乡
];

/// Urban land per household, m² (housing, roads, services): sizes the community areas.
const URBAN_M2_PER_HOUSEHOLD: f64 = 380.0;

/// A row of the official `divisions.csv`.
#[derive(Debug, Deserialize)]
pub(crate) struct DivisionRow {
    pub code: u64,
    pub name: String,
    pub kind: String,
    pub parent_code: u64,
}

/// Progress lines for the caller (the CLI prints them).
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// Generate a pack from the source folder (`divisions.csv`, `shizuishan_districts.geojson`).
pub fn generate(
    sources: &Path,
    seed: u64,
    progress: Progress<'_>,
) -> Result<CountyPack, PackError> {
    let divisions_path = sources.join(DIVISIONS_CSV);
    let rows: Vec<DivisionRow> = read_csv(&divisions_path)?;
    let county = rows
        .iter()
        .find(|r| r.kind == "county")
        .ok_or_else(|| PackError::Invalid {
            path: divisions_path.clone(),
            what: "no row of kind `county`".into(),
        })?;
    let boundaries_path = sources.join(BOUNDARIES_GEOJSON);
    let doc = read_json(&boundaries_path)?;
    let feature = doc["features"]
        .as_array()
        .and_then(|fs| {
            fs.iter()
                .find(|f| f["properties"]["name"] == county.name.as_str())
        })
        .ok_or_else(|| PackError::Invalid {
            path: boundaries_path.clone(),
            what: format!("no feature named {}", county.name),
        })?;
    let boundary = geometry_from(&feature["geometry"], &boundaries_path)?;
    let origin = match &feature["properties"]["label_point"] {
        Value::Array(a) if a.len() == 2 => {
            LonLat::new(a[0].as_f64().unwrap_or(0.0), a[1].as_f64().unwrap_or(0.0))
        }
        _ => {
            use geo::Centroid;
            let c = boundary.centroid().ok_or_else(|| PackError::Invalid {
                path: boundaries_path.clone(),
                what: "empty county boundary".into(),
            })?;
            LonLat::new(c.x(), c.y())
        }
    };
    let proj = LocalProjection::new(origin.lon, origin.lat);
    progress(&format!(
        "county {} ({}), boundary with {} polygon(s)",
        county.name,
        county.code,
        boundary.0.len()
    ));

    let rng = Rng::new(seed);
    let towns = place_towns(&rows, county.code, &boundary, origin);
    progress(&format!("{} towns placed", towns.len()));

    let mut community_rows: BTreeMap<u64, Vec<&DivisionRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.kind == "community") {
        community_rows.entry(r.parent_code).or_default().push(r);
    }

    let mut hh_rng = rng.fork("households");
    let mut communities = Vec::new();
    let mut grids = Vec::new();
    let mut area_rng = rng.fork("areas");
    let mut grid_rng = rng.fork("grids");
    for town in &towns {
        let Some(members) = community_rows.get(&town.code) else {
            continue;
        };
        let is_seat = members.len() >= 10;
        let households: Vec<u32> = members
            .iter()
            .map(|_| {
                if is_seat {
                    hh_rng.range_u32(2400, 5200)
                } else {
                    hh_rng.range_u32(900, 2400)
                }
            })
            .collect();
        let total_hh: f64 = households.iter().map(|h| f64::from(*h)).sum();
        let urban = urban_area(town, total_hh, &boundary, &proj, &mut area_rng);
        let cells = split_convex(&urban, members.len(), 10, &mut area_rng);
        for ((row, hh), cell) in members.iter().zip(&households).zip(cells) {
            let area = polygon_wgs84(&cell, &proj);
            let (_, c) = area_centroid(&cell);
            let (lon, lat) = proj.wgs84_from_metres(c.0, c.1);
            let community = Community {
                code: row.code,
                name: row.name.clone(),
                display_name: display_name_of(&row.name),
                town_code: town.code,
                households: *hh,
                owner_committees: 0,
                red_property_council: false,
                custodial_estates: 0,
                property_companies: 0,
                area,
                label: LonLat::new(round7(lon), round7(lat)),
            };
            let per_grid = f64::from(grid_rng.range_u32(260, 420));
            let n_grids = ((f64::from(*hh) / per_grid).round() as usize).max(3);
            let grid_cells = split_convex(&cell, n_grids, 6, &mut grid_rng);
            let areas: Vec<f64> = grid_cells.iter().map(|g| area_centroid(g).0).collect();
            let total_area: f64 = areas.iter().sum();
            let mut left = *hh;
            for (i, (gcell, a)) in grid_cells.iter().zip(&areas).enumerate() {
                let share = if i + 1 == grid_cells.len() {
                    left
                } else {
                    ((f64::from(*hh) * a / total_area).round() as u32).min(left)
                };
                left -= share;
                let (_, gc) = area_centroid(gcell);
                let (glon, glat) = proj.wgs84_from_metres(gc.0, gc.1);
                let id = grids.len() as GridId + 1;
                grids.push(Grid {
                    id,
                    code: format!("{}-{:02}", row.code, i + 1),
                    name: format!("{}第{}网格", community.display_name, i + 1),
                    community_code: row.code,
                    households: share,
                    party_groups: 0,
                    centre_households: 0,
                    area: polygon_wgs84(gcell, &proj),
                    label: LonLat::new(round7(glon), round7(glat)),
                });
            }
            communities.push(community);
        }
    }
    progress(&format!(
        "{} communities, {} grids generated",
        communities.len(),
        grids.len()
    ));

    let targets = PINGLUO_TARGETS;
    assign_party_and_property(
        &mut communities,
        &mut grids,
        &targets,
        &mut rng.fork("party"),
    );
    let staff = generate_staff(&communities, &grids, &mut rng.fork("staff"));
    let teams = generate_teams(&communities, &grids, targets.teams, &mut rng.fork("teams"));
    let volunteers = generate_volunteers(
        &teams,
        &grids,
        targets.volunteers,
        &mut rng.fork("volunteers"),
    );
    progress(&format!(
        "{} staff, {} teams, {} volunteers",
        staff.len(),
        teams.len(),
        volunteers.len()
    ));

    Ok(CountyPack {
        manifest: PackManifest {
            format: PACK_FORMAT.to_owned(),
            county_code: county.code,
            county_name: county.name.clone(),
            projection_origin: origin,
            seed,
            simulated: vec![
                "towns.csv: lon, lat (approximate seats)".into(),
                "communities.geojson: geometry, households, property fields".into(),
                "grids.geojson".into(),
                "staff.csv".into(),
                "teams.csv".into(),
                "volunteers.csv".into(),
            ],
            targets,
        },
        boundary,
        towns,
        communities,
        grids,
        staff,
        teams,
        volunteers,
    })
}

fn place_towns(
    rows: &[DivisionRow],
    county_code: u64,
    boundary: &MultiPolygon<f64>,
    origin: LonLat,
) -> Vec<Town> {
    rows.iter()
        .filter(|r| r.kind == "town" && r.parent_code == county_code)
        .map(|r| {
            let (mut lon, mut lat) = TOWN_SEATS
                .iter()
                .find(|(code, _, _)| *code == r.code)
                .map(|(_, lon, lat)| (*lon, *lat))
                .unwrap_or((origin.lon, origin.lat));
            // Walk toward the county's label point until inside the real boundary.
            for _ in 0..50 {
                if boundary.contains(&Point::new(lon, lat)) {
                    break;
                }
                lon += (origin.lon - lon) * 0.1;
                lat += (origin.lat - lat) * 0.1;
            }
            Town {
                code: r.code,
                name: r.name.clone(),
                kind: if r.name.ends_with('乡') {
                    "township"
                } else {
                    "town"
                }
                .to_owned(),
                lon: round7(lon),
                lat: round7(lat),
            }
        })
        .collect()
}

/// A convex built-up area around a town seat, sized by households, inside the county.
fn urban_area(
    town: &Town,
    households: f64,
    boundary: &MultiPolygon<f64>,
    proj: &LocalProjection,
    rng: &mut Rng,
) -> Vec<(f64, f64)> {
    let (sx, sy) = proj.metres_from_wgs84(town.lon, town.lat);
    let full_radius = (households * URBAN_M2_PER_HOUSEHOLD / std::f64::consts::PI).sqrt() * 1.05;
    let stretch = rng.range_f64(0.8, 1.25);
    let turn = rng.range_f64(0.0, std::f64::consts::PI);
    let jitter: Vec<f64> = (0..14).map(|_| rng.range_f64(0.9, 1.1)).collect();
    let mut ring = Vec::new();
    // Near the county border, first shrink the area a little, then slide it inland
    // (toward the projection origin) until it lies wholly inside the real boundary.
    for shift in 0..40 {
        let t = f64::from(shift) * 0.025;
        let (cx, cy) = (sx * (1.0 - t), sy * (1.0 - t));
        for shrink in 0..4 {
            let radius = full_radius * 0.9f64.powi(shrink);
            ring = convex_ring(cx, cy, radius, stretch, turn, &jitter);
            if boundary.contains(&polygon_wgs84(&ring, proj)) {
                return ring;
            }
        }
    }
    ring
}

fn convex_ring(
    cx: f64,
    cy: f64,
    radius: f64,
    stretch: f64,
    turn: f64,
    jitter: &[f64],
) -> Vec<(f64, f64)> {
    let pts: Vec<Point<f64>> = jitter
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let a = std::f64::consts::TAU * i as f64 / jitter.len() as f64;
            let (ex, ey) = (
                radius * j * a.cos() * stretch,
                radius * j * a.sin() / stretch,
            );
            Point::new(
                cx + ex * turn.cos() - ey * turn.sin(),
                cy + ex * turn.sin() + ey * turn.cos(),
            )
        })
        .collect();
    let hull = MultiPoint::from(pts).convex_hull();
    let mut ring: Vec<(f64, f64)> = hull.exterior().coords().map(|c| (c.x, c.y)).collect();
    ring.pop(); // closed → open
    if area_centroid(&ring).0 < 0.0 {
        ring.reverse();
    }
    ring
}

/// Split a convex region into `n` even convex cells (Voronoi of relaxed random seeds),
/// ordered north to south, then west to east.
fn split_convex(
    region: &[(f64, f64)],
    n: usize,
    rounds: usize,
    rng: &mut Rng,
) -> Vec<Vec<(f64, f64)>> {
    if n <= 1 {
        return vec![region.to_vec()];
    }
    let (min_x, max_x) = region
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (min_y, max_y) = region
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let mut seeds = Vec::with_capacity(n);
    while seeds.len() < n {
        let p = (rng.range_f64(min_x, max_x), rng.range_f64(min_y, max_y));
        if convex_contains(region, p) {
            seeds.push(p);
        }
    }
    lloyd_relax(region, &mut seeds, rounds);
    let band = ((max_y - min_y) / (n as f64).sqrt()).max(1.0);
    seeds.sort_by(|a, b| {
        let (ra, rb) = (
            ((max_y - a.1) / band).floor(),
            ((max_y - b.1) / band).floor(),
        );
        ra.total_cmp(&rb).then(a.0.total_cmp(&b.0))
    });
    voronoi_in_convex(region, &seeds)
        .into_iter()
        .filter(|c| c.len() >= 3)
        .collect()
}

/// A closed WGS84 polygon (coordinates rounded as the pack stores them) from an open ring in
/// local metres.
pub(crate) fn polygon_wgs84(ring: &[(f64, f64)], proj: &LocalProjection) -> Polygon<f64> {
    let mut coords: Vec<Coord<f64>> = ring
        .iter()
        .map(|&(x, y)| {
            let (lon, lat) = proj.wgs84_from_metres(x, y);
            Coord {
                x: round7(lon),
                y: round7(lat),
            }
        })
        .collect();
    if let Some(first) = coords.first().copied() {
        coords.push(first);
    }
    Polygon::new(LineString::from(coords), vec![])
}

/// Spread `total` units over items with the given weights (each unit drawn independently).
fn spread(total: usize, weights: &[f64], rng: &mut Rng) -> Vec<u32> {
    let mut out = vec![0u32; weights.len()];
    for _ in 0..total {
        out[rng.weighted_index(weights)] += 1;
    }
    out
}

fn assign_party_and_property(
    communities: &mut [Community],
    grids: &mut [Grid],
    targets: &PackTargets,
    rng: &mut Rng,
) {
    // Grid party groups: one per chosen grid, bigger grids first in expectation.
    let mut weights: Vec<f64> = grids.iter().map(|g| f64::from(g.households)).collect();
    let mut chosen = Vec::new();
    for _ in 0..targets.grid_party_groups.min(grids.len()) {
        let i = rng.weighted_index(&weights);
        weights[i] = 0.0;
        grids[i].party_groups = 1;
        chosen.push(i);
    }
    // Party-member centre households sit in grids with a party group: one each, the rest spread.
    let extra = targets.centre_households.saturating_sub(chosen.len());
    let chosen_weights: Vec<f64> = chosen
        .iter()
        .map(|&i| f64::from(grids[i].households))
        .collect();
    for (k, n) in spread(extra, &chosen_weights, rng).into_iter().enumerate() {
        grids[chosen[k]].centre_households = 1 + n;
    }

    let hh: Vec<f64> = communities
        .iter()
        .map(|c| f64::from(c.households))
        .collect();
    for (c, n) in communities
        .iter_mut()
        .zip(spread(targets.owner_committees, &hh, rng))
    {
        c.owner_committees = n;
        c.property_companies = n + rng.range_u32(0, 1);
    }
    let mut council_weights: Vec<f64> = communities
        .iter()
        .map(|c| f64::from(c.owner_committees))
        .collect();
    for _ in 0..targets.red_property_councils.min(communities.len()) {
        let i = rng.weighted_index(&council_weights);
        council_weights[i] = 0.0;
        communities[i].red_property_council = true;
    }
    for (c, n) in communities
        .iter_mut()
        .zip(spread(targets.custodial_estates, &hh, rng))
    {
        c.custodial_estates = n;
    }
}

fn generate_staff(communities: &[Community], grids: &[Grid], rng: &mut Rng) -> Vec<StaffMember> {
    let mut staff = Vec::new();
    for c in communities {
        let ids: Vec<GridId> = grids
            .iter()
            .filter(|g| g.community_code == c.code)
            .map(|g| g.id)
            .collect();
        let officers: Vec<String> = (0..ids.len().div_ceil(2))
            .map(|_| person_name(rng))
            .collect();
        let police: Vec<String> = (0..ids.len().div_ceil(4))
            .map(|_| person_name(rng))
            .collect();
        let firefighters: Vec<String> = (0..ids.len().div_ceil(6))
            .map(|_| person_name(rng))
            .collect();
        let managers: Vec<String> = (0..c.property_companies)
            .map(|_| person_name(rng))
            .collect();
        for (i, &grid_id) in ids.iter().enumerate() {
            let mut add = |role, name: &String| {
                staff.push(StaffMember {
                    grid_id,
                    role,
                    name: name.clone(),
                })
            };
            add(StaffRole::GridWorker, &person_name(rng));
            add(StaffRole::CommunityOfficer, &officers[i / 2]);
            add(StaffRole::Police, &police[i / 4]);
            add(StaffRole::Firefighter, &firefighters[i / 6]);
            if !managers.is_empty() {
                add(StaffRole::PropertyManager, &managers[i % managers.len()]);
            }
        }
    }
    staff
}

fn generate_teams(
    communities: &[Community],
    grids: &[Grid],
    total: usize,
    rng: &mut Rng,
) -> Vec<Team> {
    // One team per community, the rest to the bigger communities.
    let mut per_community = vec![1u32; communities.len()];
    let hh: Vec<f64> = communities
        .iter()
        .map(|c| f64::from(c.households))
        .collect();
    for (k, n) in spread(total.saturating_sub(communities.len()), &hh, rng)
        .into_iter()
        .enumerate()
    {
        per_community[k] += n;
    }
    let mut teams = Vec::new();
    for (c, n) in communities.iter().zip(per_community) {
        let own: Vec<GridId> = grids
            .iter()
            .filter(|g| g.community_code == c.code)
            .map(|g| g.id)
            .collect();
        for k in 1..=n {
            teams.push(Team {
                id: teams.len() as TeamId + 1,
                name: format!("{}应急救援志愿{}队", c.display_name, chinese_number(k)),
                community_code: c.code,
                home_grid_id: *rng.pick(&own),
                leader: person_name(rng),
            });
        }
    }
    teams
}

const SKILLS: &[&str] = &[
    "first_aid",
    "firefighting",
    "utilities",
    "search_rescue",
    "counselling",
    "driving",
    "medical",
];

fn generate_volunteers(
    teams: &[Team],
    grids: &[Grid],
    total: usize,
    rng: &mut Rng,
) -> Vec<VolunteerRecord> {
    let base = total / teams.len().max(1);
    let mut sizes: Vec<usize> = teams
        .iter()
        .map(|_| base.saturating_sub(7) + rng.index(15))
        .collect();
    let mut k = 0;
    while sizes.iter().sum::<usize>() != total && !sizes.is_empty() {
        let i = k % sizes.len();
        if sizes.iter().sum::<usize>() < total {
            sizes[i] += 1;
        } else if sizes[i] > 1 {
            sizes[i] -= 1;
        }
        k += 1;
    }
    let mut out = Vec::with_capacity(total);
    for (team, size) in teams.iter().zip(sizes) {
        let own: Vec<GridId> = grids
            .iter()
            .filter(|g| g.community_code == team.community_code)
            .map(|g| g.id)
            .collect();
        for _ in 0..size {
            let home_grid_id = if rng.chance(0.4) {
                team.home_grid_id
            } else {
                *rng.pick(&own)
            };
            let role = match rng.unit() {
                u if u < 0.15 => VolunteerRole::GridWorker,
                u if u < 0.50 => VolunteerRole::PartyMember,
                u if u < 0.60 => VolunteerRole::CommunityOfficer,
                _ => VolunteerRole::Resident,
            };
            let mut skills: Vec<&str> = Vec::new();
            for _ in 0..rng.range_u32(1, 3) {
                let s = *rng.pick(SKILLS);
                if !skills.contains(&s) {
                    skills.push(s);
                }
            }
            out.push(VolunteerRecord {
                id: out.len() as u32 + 1,
                name: person_name(rng),
                team_id: team.id,
                home_grid_id,
                role,
                skills: skills.join(";"),
            });
        }
    }
    out
}
