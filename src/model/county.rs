//! The county pack: real boundary, towns and communities, simulated community and grid
//! shapes, grid staff, volunteer teams and the volunteer roster. Format: `docs/COUNTY_PACK.md`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use geo::{BoundingRect, Coord, LineString, MultiPolygon, Polygon};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::geom::LocalProjection;
use crate::protocol::{GridId, LonLat, TeamId, VolunteerId};

/// Format tag written in `pack.json`.
pub const PACK_FORMAT: &str = "datawall-county-pack/1";

/// Errors loading or saving a county pack.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("cannot read {path}: {source} (is this a county pack folder? see docs/COUNTY_PACK.md)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: invalid CSV: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

/// `pack.json`: what the pack is and how it was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackManifest {
    pub format: String,
    pub county_code: u64,
    pub county_name: String,
    /// Reference point of the local metric projection used by the wall and the checks.
    pub projection_origin: LonLat,
    /// Seed the generator used; the same seed and sources give byte-identical files.
    pub seed: u64,
    /// Files (or columns) that are simulated, not real, and must be labelled so on screen.
    pub simulated: Vec<String>,
    /// Totals the generator aimed at, from the county's own report.
    pub targets: PackTargets,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackTargets {
    pub teams: usize,
    pub volunteers: usize,
    pub grid_party_groups: usize,
    pub centre_households: usize,
    pub owner_committees: usize,
    pub red_property_councils: usize,
    pub custodial_estates: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Town {
    pub code: u64,
    pub name: String,
    /// `town` (镇) or `township` (乡).
    pub kind: String,
    /// Approximate seat position (simulated).
    pub lon: f64,
    pub lat: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Community {
    /// Official 12-digit statistical code.
    pub code: u64,
    /// Official name, e.g. 新世纪居委会.
    pub name: String,
    /// Name shown on the wall, e.g. 新世纪社区.
    pub display_name: String,
    pub town_code: u64,
    pub households: u32,
    pub owner_committees: u32,
    pub red_property_council: bool,
    pub custodial_estates: u32,
    pub property_companies: u32,
    pub area: Polygon<f64>,
    pub label: LonLat,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub id: GridId,
    /// e.g. `640221100005-07`.
    pub code: String,
    /// e.g. 新世纪社区第7网格.
    pub name: String,
    pub community_code: u64,
    pub households: u32,
    pub party_groups: u32,
    pub centre_households: u32,
    pub area: Polygon<f64>,
    pub label: LonLat,
}

/// Role of a grid's staff member in the "1+4+X" team.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    GridWorker,
    CommunityOfficer,
    Police,
    Firefighter,
    PropertyManager,
}

impl StaffRole {
    pub const ALL: [StaffRole; 5] = [
        Self::GridWorker,
        Self::CommunityOfficer,
        Self::Police,
        Self::Firefighter,
        Self::PropertyManager,
    ];

    pub fn label_zh(self) -> &'static str {
        match self {
            Self::GridWorker => "网格员",
            Self::CommunityOfficer => "社区工作者",
            Self::Police => "社区民警",
            Self::Firefighter => "消防员",
            Self::PropertyManager => "物业管理员",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaffMember {
    pub grid_id: GridId,
    pub role: StaffRole,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub id: TeamId,
    pub name: String,
    pub community_code: u64,
    pub home_grid_id: GridId,
    pub leader: String,
}

/// Where a volunteer comes from, as the county's report lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolunteerRole {
    GridWorker,
    PartyMember,
    Resident,
    CommunityOfficer,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolunteerRecord {
    pub id: VolunteerId,
    pub name: String,
    pub team_id: TeamId,
    pub home_grid_id: GridId,
    pub role: VolunteerRole,
    /// Skill codes joined by `;` (first_aid, firefighting, utilities, search_rescue, …).
    pub skills: String,
}

/// A whole county pack in memory.
#[derive(Clone, Debug)]
pub struct CountyPack {
    pub manifest: PackManifest,
    /// The real county boundary.
    pub boundary: MultiPolygon<f64>,
    pub towns: Vec<Town>,
    pub communities: Vec<Community>,
    pub grids: Vec<Grid>,
    pub staff: Vec<StaffMember>,
    pub teams: Vec<Team>,
    pub volunteers: Vec<VolunteerRecord>,
}

/// File names inside a pack folder.
pub mod files {
    pub const MANIFEST: &str = "pack.json";
    pub const BOUNDARY: &str = "boundary.geojson";
    pub const TOWNS: &str = "towns.csv";
    pub const COMMUNITIES: &str = "communities.geojson";
    pub const GRIDS: &str = "grids.geojson";
    pub const STAFF: &str = "staff.csv";
    pub const TEAMS: &str = "teams.csv";
    pub const VOLUNTEERS: &str = "volunteers.csv";
}

/// The pack bundled with the project.
pub fn default_pack_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/pingluo")
}

impl CountyPack {
    pub fn projection(&self) -> LocalProjection {
        let o = self.manifest.projection_origin;
        LocalProjection::new(o.lon, o.lat)
    }

    pub fn community(&self, code: u64) -> Option<&Community> {
        self.communities.iter().find(|c| c.code == code)
    }

    pub fn grids_of(&self, community_code: u64) -> impl Iterator<Item = &Grid> {
        self.grids
            .iter()
            .filter(move |g| g.community_code == community_code)
    }

    /// Bounding box of the county, `(min, max)` in WGS84.
    pub fn bounds(&self) -> (LonLat, LonLat) {
        match self.boundary.bounding_rect() {
            Some(r) => (
                LonLat::new(r.min().x, r.min().y),
                LonLat::new(r.max().x, r.max().y),
            ),
            None => (LonLat::new(0.0, 0.0), LonLat::new(0.0, 0.0)),
        }
    }

    /// Load a pack folder.
    pub fn load(dir: &Path) -> Result<Self, PackError> {
        let manifest: PackManifest = read_json_as(&dir.join(files::MANIFEST))?;
        if manifest.format != PACK_FORMAT {
            return Err(PackError::Invalid {
                path: dir.join(files::MANIFEST),
                what: format!(
                    "format is {:?}; this build reads {PACK_FORMAT:?}",
                    manifest.format
                ),
            });
        }
        let boundary_path = dir.join(files::BOUNDARY);
        let boundary_doc = read_json(&boundary_path)?;
        let boundary = first_feature_geometry(&boundary_doc, &boundary_path)?;

        let communities_path = dir.join(files::COMMUNITIES);
        let communities = features(&read_json(&communities_path)?, &communities_path)?
            .into_iter()
            .map(|(props, area)| community_from(&props, area, &communities_path))
            .collect::<Result<Vec<_>, _>>()?;
        let grids_path = dir.join(files::GRIDS);
        let grids = features(&read_json(&grids_path)?, &grids_path)?
            .into_iter()
            .map(|(props, area)| grid_from(&props, area, &grids_path))
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Self {
            manifest,
            boundary,
            towns: read_csv(&dir.join(files::TOWNS))?,
            communities,
            grids,
            staff: read_csv(&dir.join(files::STAFF))?,
            teams: read_csv(&dir.join(files::TEAMS))?,
            volunteers: read_csv(&dir.join(files::VOLUNTEERS))?,
        })
    }

    /// Write the pack into `dir` (created when missing). Output is byte-stable.
    pub fn save(&self, dir: &Path) -> Result<(), PackError> {
        fs::create_dir_all(dir).map_err(|source| PackError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        write_text(
            &dir.join(files::MANIFEST),
            &pretty(&serde_json::to_value(&self.manifest).unwrap_or(Value::Null)),
        )?;
        let boundary = json!({
            "type": "FeatureCollection",
            "features": [{
                "type": "Feature",
                "properties": {"code": self.manifest.county_code, "name": self.manifest.county_name, "simulated": false},
                "geometry": multipolygon_json(&self.boundary),
            }]
        });
        write_text(
            &dir.join(files::BOUNDARY),
            &feature_collection_text(&boundary),
        )?;
        let communities = self
            .communities
            .iter()
            .map(|c| {
                json!({
                    "type": "Feature",
                    "properties": {
                        "code": c.code,
                        "name": c.name,
                        "display_name": c.display_name,
                        "town_code": c.town_code,
                        "households": c.households,
                        "owner_committees": c.owner_committees,
                        "red_property_council": c.red_property_council,
                        "custodial_estates": c.custodial_estates,
                        "property_companies": c.property_companies,
                        "label": [c.label.lon, c.label.lat],
                        "simulated": true,
                    },
                    "geometry": polygon_json(&c.area),
                })
            })
            .collect::<Vec<_>>();
        write_text(
            &dir.join(files::COMMUNITIES),
            &feature_collection_text(
                &json!({"type": "FeatureCollection", "features": communities}),
            ),
        )?;
        let grids = self
            .grids
            .iter()
            .map(|g| {
                json!({
                    "type": "Feature",
                    "properties": {
                        "id": g.id,
                        "code": g.code,
                        "name": g.name,
                        "community_code": g.community_code,
                        "households": g.households,
                        "party_groups": g.party_groups,
                        "centre_households": g.centre_households,
                        "label": [g.label.lon, g.label.lat],
                        "simulated": true,
                    },
                    "geometry": polygon_json(&g.area),
                })
            })
            .collect::<Vec<_>>();
        write_text(
            &dir.join(files::GRIDS),
            &feature_collection_text(&json!({"type": "FeatureCollection", "features": grids})),
        )?;
        write_csv(&dir.join(files::TOWNS), &self.towns)?;
        write_csv(&dir.join(files::STAFF), &self.staff)?;
        write_csv(&dir.join(files::TEAMS), &self.teams)?;
        write_csv(&dir.join(files::VOLUNTEERS), &self.volunteers)?;
        Ok(())
    }
}

/// Coordinates are written with 7 decimals (about 1 cm).
pub fn round7(v: f64) -> f64 {
    (v * 1e7).round() / 1e7
}

fn ring_json(ls: &LineString<f64>) -> Value {
    Value::Array(
        ls.coords()
            .map(|c| json!([round7(c.x), round7(c.y)]))
            .collect(),
    )
}

fn polygon_rings_json(p: &Polygon<f64>) -> Value {
    let mut rings = vec![ring_json(p.exterior())];
    rings.extend(p.interiors().iter().map(ring_json));
    Value::Array(rings)
}

fn polygon_json(p: &Polygon<f64>) -> Value {
    json!({"type": "Polygon", "coordinates": polygon_rings_json(p)})
}

fn multipolygon_json(mp: &MultiPolygon<f64>) -> Value {
    json!({
        "type": "MultiPolygon",
        "coordinates": mp.0.iter().map(polygon_rings_json).collect::<Vec<_>>(),
    })
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// One feature per line: diffable and still valid GeoJSON.
fn feature_collection_text(fc: &Value) -> String {
    let features = fc["features"].as_array().cloned().unwrap_or_default();
    let mut out = String::from("{\"type\":\"FeatureCollection\",\"features\":[\n");
    for (i, f) in features.iter().enumerate() {
        out.push_str(&f.to_string());
        out.push_str(if i + 1 < features.len() { ",\n" } else { "\n" });
    }
    out.push_str("]}\n");
    out
}

fn write_text(path: &Path, text: &str) -> Result<(), PackError> {
    fs::write(path, text).map_err(|source| PackError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), PackError> {
    let csv_err = |source| PackError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::Writer::from_path(path).map_err(csv_err)?;
    for r in rows {
        w.serialize(r).map_err(csv_err)?;
    }
    w.flush().map_err(|source| PackError::Write {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn read_csv<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, PackError> {
    let csv_err = |source| PackError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut r = csv::Reader::from_path(path).map_err(|e| match e.into_kind() {
        csv::ErrorKind::Io(source) => PackError::Read {
            path: path.to_path_buf(),
            source,
        },
        other => PackError::Invalid {
            path: path.to_path_buf(),
            what: format!("{other:?}"),
        },
    })?;
    r.deserialize().map(|row| row.map_err(csv_err)).collect()
}

pub(crate) fn read_json(path: &Path) -> Result<Value, PackError> {
    read_json_as(path)
}

fn read_json_as<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, PackError> {
    let text = fs::read_to_string(path).map_err(|source| PackError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| PackError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, what: impl Into<String>) -> PackError {
    PackError::Invalid {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

fn ring_from(v: &Value, path: &Path) -> Result<LineString<f64>, PackError> {
    let pts = v
        .as_array()
        .ok_or_else(|| invalid(path, "ring is not an array"))?;
    pts.iter()
        .map(|p| {
            match (
                p.get(0).and_then(Value::as_f64),
                p.get(1).and_then(Value::as_f64),
            ) {
                (Some(x), Some(y)) if x.is_finite() && y.is_finite() => Ok(Coord { x, y }),
                _ => Err(invalid(path, format!("bad position {p}"))),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(LineString::from)
}

fn polygon_from(rings: &Value, path: &Path) -> Result<Polygon<f64>, PackError> {
    let rings = rings
        .as_array()
        .ok_or_else(|| invalid(path, "polygon is not an array of rings"))?;
    let mut it = rings.iter();
    let exterior = ring_from(
        it.next()
            .ok_or_else(|| invalid(path, "polygon without rings"))?,
        path,
    )?;
    let interiors = it.map(|r| ring_from(r, path)).collect::<Result<_, _>>()?;
    Ok(Polygon::new(exterior, interiors))
}

/// Read a GeoJSON Polygon or MultiPolygon geometry.
pub(crate) fn geometry_from(g: &Value, path: &Path) -> Result<MultiPolygon<f64>, PackError> {
    let coords = &g["coordinates"];
    match g["type"].as_str() {
        Some("Polygon") => Ok(MultiPolygon(vec![polygon_from(coords, path)?])),
        Some("MultiPolygon") => coords
            .as_array()
            .ok_or_else(|| invalid(path, "MultiPolygon coordinates are not an array"))?
            .iter()
            .map(|p| polygon_from(p, path))
            .collect::<Result<Vec<_>, _>>()
            .map(MultiPolygon),
        other => Err(invalid(
            path,
            format!("geometry type {other:?}: expected Polygon or MultiPolygon"),
        )),
    }
}

fn first_feature_geometry(doc: &Value, path: &Path) -> Result<MultiPolygon<f64>, PackError> {
    let f = doc["features"]
        .get(0)
        .ok_or_else(|| invalid(path, "no features"))?;
    geometry_from(&f["geometry"], path)
}

fn features(doc: &Value, path: &Path) -> Result<Vec<(Value, Polygon<f64>)>, PackError> {
    doc["features"]
        .as_array()
        .ok_or_else(|| invalid(path, "no `features` array"))?
        .iter()
        .map(|f| {
            let mut mp = geometry_from(&f["geometry"], path)?;
            if mp.0.len() != 1 {
                return Err(invalid(path, "each area must be one Polygon"));
            }
            Ok((f["properties"].clone(), mp.0.remove(0)))
        })
        .collect()
}

fn prop_u64(props: &Value, key: &str, path: &Path) -> Result<u64, PackError> {
    props[key].as_u64().ok_or_else(|| {
        invalid(
            path,
            format!("property `{key}` missing or not a whole number"),
        )
    })
}

fn prop_str(props: &Value, key: &str, path: &Path) -> Result<String, PackError> {
    props[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(path, format!("property `{key}` missing or not a string")))
}

fn prop_u32(props: &Value, key: &str, path: &Path) -> Result<u32, PackError> {
    let v = props[key].as_u64().unwrap_or(0);
    u32::try_from(v).map_err(|_| invalid(path, format!("property `{key}` out of range")))
}

fn prop_label(props: &Value, area: &Polygon<f64>, path: &Path) -> Result<LonLat, PackError> {
    match props.get("label") {
        Some(v) if !v.is_null() => match (
            v.get(0).and_then(Value::as_f64),
            v.get(1).and_then(Value::as_f64),
        ) {
            (Some(lon), Some(lat)) => Ok(LonLat::new(lon, lat)),
            _ => Err(invalid(path, format!("bad label {v}"))),
        },
        _ => {
            use geo::Centroid;
            let c = area.centroid().ok_or_else(|| invalid(path, "empty area"))?;
            Ok(LonLat::new(c.x(), c.y()))
        }
    }
}

fn community_from(props: &Value, area: Polygon<f64>, path: &Path) -> Result<Community, PackError> {
    let name = prop_str(props, "name", path)?;
    Ok(Community {
        code: prop_u64(props, "code", path)?,
        display_name: props["display_name"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| display_name_of(&name)),
        name,
        town_code: prop_u64(props, "town_code", path)?,
        households: prop_u32(props, "households", path)?,
        owner_committees: prop_u32(props, "owner_committees", path)?,
        red_property_council: props["red_property_council"].as_bool().unwrap_or(false),
        custodial_estates: prop_u32(props, "custodial_estates", path)?,
        property_companies: prop_u32(props, "property_companies", path)?,
        label: prop_label(props, &area, path)?,
        area,
    })
}

fn grid_from(props: &Value, area: Polygon<f64>, path: &Path) -> Result<Grid, PackError> {
    let id = prop_u64(props, "id", path)?;
    Ok(Grid {
        id: GridId::try_from(id).map_err(|_| invalid(path, format!("grid id {id} too large")))?,
        code: prop_str(props, "code", path)?,
        name: prop_str(props, "name", path)?,
        community_code: prop_u64(props, "community_code", path)?,
        households: prop_u32(props, "households", path)?,
        party_groups: prop_u32(props, "party_groups", path)?,
        centre_households: prop_u32(props, "centre_households", path)?,
        label: prop_label(props, &area, path)?,
        area,
    })
}

/// 新世纪居委会 → 新世纪社区.
pub fn display_name_of(official: &str) -> String {
    match official.strip_suffix("居委会") {
        Some(stem) => format!("{stem}社区"),
        None => official.to_owned(),
    }
}

/// Counts used by `county summary` and the checks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommunityCounts {
    pub grids: usize,
    pub households: u32,
    pub teams: usize,
    pub volunteers: usize,
}

impl CountyPack {
    pub fn counts_by_community(&self) -> HashMap<u64, CommunityCounts> {
        let mut out: HashMap<u64, CommunityCounts> = self
            .communities
            .iter()
            .map(|c| (c.code, CommunityCounts::default()))
            .collect();
        let grid_community: HashMap<GridId, u64> = self
            .grids
            .iter()
            .map(|g| (g.id, g.community_code))
            .collect();
        for g in &self.grids {
            let e = out.entry(g.community_code).or_default();
            e.grids += 1;
            e.households += g.households;
        }
        for t in &self.teams {
            out.entry(t.community_code).or_default().teams += 1;
        }
        for v in &self.volunteers {
            if let Some(c) = grid_community.get(&v.home_grid_id) {
                out.entry(*c).or_default().volunteers += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_drop_the_committee_suffix() {
        assert_eq!(display_name_of("新世纪居委会"), "新世纪社区");
        assert_eq!(display_name_of("农牧场生活区"), "农牧场生活区");
    }

    #[test]
    fn geometry_errors_name_the_problem() {
        let p = Path::new("x.geojson");
        let err = geometry_from(&json!({"type": "Point", "coordinates": [1, 2]}), p).unwrap_err();
        assert!(err.to_string().contains("expected Polygon"), "{err}");
        let err = geometry_from(
            &json!({"type": "Polygon", "coordinates": [[[1, 2], ["a", 3]]]}),
            p,
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad position"), "{err}");
    }
}
