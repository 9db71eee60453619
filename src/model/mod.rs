//! The domain model in pure Rust: the county pack, spatial index and live state with `apply`.

pub mod after_action;
pub mod check;
pub mod county;
pub mod generate;
pub mod geom;
pub mod index;
pub mod names;
pub mod rng;
pub mod scale;
pub mod sla;
pub mod state;
pub mod ticket_map;
pub mod time_blocks;

use std::collections::HashMap;
use std::path::Path;

pub use county::{Community, CountyPack, Grid, PackError, Team, VolunteerRecord};
pub use index::{CountyMask, GridIndex};
pub use state::{
    ApplyError, Change, EntityRef, Incident, LiveState, Pruned, Ticket, TicketMap, TicketStatus,
    Volunteer,
};

use crate::protocol::{GridId, TeamId};

/// Cells per side of the county mask raster.
const MASK_RESOLUTION: usize = 256;

/// A loaded county: the pack plus the lookups the live state needs.
#[derive(Clone, Debug)]
pub struct County {
    pub pack: CountyPack,
    pub index: GridIndex,
    pub mask: CountyMask,
    grid_slot: foldhash::HashMap<GridId, usize>,
    team_slot: HashMap<TeamId, usize>,
    /// Index into `pack.communities` of each grid's community, by grid slot.
    grid_community_slot: Vec<Option<u32>>,
    /// Load-test scaling this county was built with (1, 1: as the pack is); see
    /// [`scale::scaled_county`].
    pub roster_scale: u32,
    pub grid_split: u32,
}

impl County {
    pub fn new(pack: CountyPack) -> Self {
        let index = GridIndex::new(pack.grids.iter().map(|g| (g.id, &g.area)));
        let mask = CountyMask::new(&pack.boundary, MASK_RESOLUTION);
        let grid_slot = pack
            .grids
            .iter()
            .enumerate()
            .map(|(i, g)| (g.id, i))
            .collect();
        let team_slot = pack
            .teams
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id, i))
            .collect();
        let community_slot: HashMap<u64, u32> = pack
            .communities
            .iter()
            .enumerate()
            .map(|(i, c)| (c.code, i as u32))
            .collect();
        let grid_community_slot = pack
            .grids
            .iter()
            .map(|g| community_slot.get(&g.community_code).copied())
            .collect();
        Self {
            pack,
            index,
            mask,
            grid_slot,
            team_slot,
            grid_community_slot,
            roster_scale: 1,
            grid_split: 1,
        }
    }

    pub fn load(dir: &Path) -> Result<Self, PackError> {
        CountyPack::load(dir).map(Self::new)
    }

    pub fn grid(&self, id: GridId) -> Option<&Grid> {
        self.grid_slot.get(&id).map(|&i| &self.pack.grids[i])
    }

    /// Position of a grid in `pack.grids`.
    pub fn grid_slot(&self, id: GridId) -> Option<usize> {
        self.grid_slot.get(&id).copied()
    }

    /// Position in `pack.communities` of the community of the grid at `grid_slot`.
    pub fn community_slot_of_grid_slot(&self, grid_slot: usize) -> Option<usize> {
        self.grid_community_slot
            .get(grid_slot)
            .copied()
            .flatten()
            .map(|c| c as usize)
    }

    pub fn team(&self, id: TeamId) -> Option<&Team> {
        self.team_slot.get(&id).map(|&i| &self.pack.teams[i])
    }

    /// The community a grid belongs to.
    pub fn community_of_grid(&self, id: GridId) -> Option<&Community> {
        self.grid(id)
            .and_then(|g| self.pack.community(g.community_code))
    }
}

/// Ids of replicated volunteers are `original + copy × ROSTER_ID_STRIDE`.
pub const ROSTER_ID_STRIDE: u32 = 100_000;

impl County {
    /// The county with its volunteer roster replicated `factor` times (load tests: 50 copies
    /// make a city's 58 000 volunteers). Copies keep their original's team and home grid.
    pub fn with_roster_scale(mut pack: CountyPack, factor: u32) -> Self {
        let originals = pack.volunteers.clone();
        for copy in 1..factor.max(1) {
            pack.volunteers
                .extend(originals.iter().map(|v| VolunteerRecord {
                    id: v.id + copy * ROSTER_ID_STRIDE,
                    ..v.clone()
                }));
        }
        pack.manifest.targets.volunteers = pack.volunteers.len();
        let mut county = Self::new(pack);
        county.roster_scale = factor.max(1);
        county
    }
}
