//! The ticket columns kept up to date as events apply, in chunks shared copy-on-write, so a
//! refresh takes a snapshot for the task pool by cloning a few `Arc`s instead of walking a
//! million tickets on the frame. Only chunks touched while a refresh runs are copied.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use super::rollup::Rollup;
use super::{Analytics, AnalyticsError, TicketColumns, TicketRow, window_start_ms};
use crate::model::geom::LocalProjection;
use crate::model::{County, LiveState, Ticket, TicketStatus};
use crate::protocol::{Event, TicketId, TimestampMs};

/// Rows per chunk.
pub const CHUNK_ROWS: usize = 1 << CHUNK_BITS;
const CHUNK_BITS: u32 = 16;

/// Where a row is: its chunk in the high bits, its index in the chunk in the low
/// [`CHUNK_BITS`] (so a store holds up to 2³² rows).
type Place = u32;

fn place(chunk: usize, i: usize) -> Place {
    ((chunk as u32) << CHUNK_BITS) | i as u32
}

fn unplace(p: Place) -> (usize, usize) {
    ((p >> CHUNK_BITS) as usize, (p as usize) & (CHUNK_ROWS - 1))
}

/// Every ticket's row, by id, in shared chunks.
#[derive(Clone, Debug, Default)]
pub struct TicketStore {
    chunks: Vec<Arc<StoreChunk>>,
    /// Each ticket's row, found by the id in the chunk's id column: 4 bytes a slot where a
    /// map from id to place takes 16 (at a million tickets, 10 MB against 36).
    rows: HashTable<Place>,
    hasher: foldhash::fast::RandomState,
    /// Rows of removed tickets, reused by the next inserts (so a week of tickets coming and
    /// going keeps the same chunks).
    free: Vec<Place>,
    proj: Option<LocalProjection>,
    /// Every count of the figures, kept with the rows.
    rollup: Rollup,
}

/// What a removed ticket's row holds until it is reused: closed, opened and resolved at
/// no time any figure looks at.
fn vacant() -> TicketRow {
    TicketRow {
        grid: None,
        community: None,
        open: false,
        opened_at_ms: TimestampMs::MIN,
        deadline_ms: TimestampMs::MIN,
        dispatched_at_ms: None,
        resolved_at_ms: None,
        satisfaction: None,
        pos_m: [0.0, 0.0],
        priority: crate::protocol::Priority::Low,
        onsite_at_ms: None,
        category: crate::protocol::TicketCategory::Repair,
        source: crate::protocol::TicketSource::MiniProgram,
    }
}

/// The row the analytics read for a ticket.
pub fn row_of(county: &County, proj: &LocalProjection, t: &Ticket) -> TicketRow {
    let grid = t.grid_id.and_then(|g| county.grid_slot(g));
    let open = t.status.is_open();
    let (x, y) = proj.metres_from_wgs84(t.pos.lon, t.pos.lat);
    TicketRow {
        grid: grid.map(|g| g as u32),
        community: grid
            .and_then(|g| county.community_slot_of_grid_slot(g))
            .map(|c| c as u32),
        open,
        opened_at_ms: t.opened_at_ms,
        deadline_ms: t.sla_deadline_ms,
        dispatched_at_ms: t.first_at_ms(TicketStatus::Dispatched),
        resolved_at_ms: (!open).then(|| t.last_at_ms()),
        satisfaction: t.satisfaction.map(i32::from),
        pos_m: [x as f32, y as f32],
        priority: t.priority,
        onsite_at_ms: t.first_at_ms(TicketStatus::OnSite),
        category: t.category,
        source: t.source,
    }
}

/// The ticket an event concerns, if any.
pub fn ticket_of(e: &Event) -> Option<TicketId> {
    e.ticket_id()
}

/// "None" in a slot column.
const NO_SLOT: u32 = u32::MAX;
/// "None" in the satisfaction column (ratings are 0..=255).
const NO_RATING: i16 = -1;

/// One chunk of the store's rows, column by column, each column as narrow as its values allow
/// ("none" a sentinel instead of an `Option`, which doubles an `i64`; the deadline and the
/// steps' times as 32-bit milliseconds after the opening): 54 bytes a row where
/// [`TicketColumns`] takes 100. What a refresh queries is copied out of it into
/// [`TicketColumns`] ([`StoreChunk::push_recent`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreChunk {
    /// The ticket of each row (a removed ticket's stays until the row is reused).
    ids: Vec<TicketId>,
    grid: Vec<u32>,
    community: Vec<u32>,
    pub open: Vec<bool>,
    pub opened_at_ms: Vec<i64>,
    /// The deadline, dispatch, resolution and arrival on site ([`DEADLINE`]…), each as
    /// milliseconds after the opening (24 days either way), [`AFTER_NONE`] or [`AFTER_FAR`].
    after: [Vec<i32>; 4],
    /// The times farther than that from their ticket's opening, by (row, column).
    far: foldhash::HashMap<(u32, u8), i64>,
    satisfaction: Vec<i16>,
    pub pos_m: Vec<[f32; 2]>,
    pub priority: Vec<crate::protocol::Priority>,
    category: Vec<u8>,
    source: Vec<u8>,
}

/// Columns of [`StoreChunk::after`].
const DEADLINE: usize = 0;
const DISPATCHED: usize = 1;
const RESOLVED: usize = 2;
const ONSITE: usize = 3;
/// "None" in an `after` column.
const AFTER_NONE: i32 = i32::MIN;
/// "In the chunk's `far` map" in an `after` column.
const AFTER_FAR: i32 = i32::MAX;

fn slot_in(s: Option<u32>) -> u32 {
    s.unwrap_or(NO_SLOT)
}

fn slot_out(s: u32) -> Option<u32> {
    (s != NO_SLOT).then_some(s)
}

fn rating_in(r: Option<i32>) -> i16 {
    r.and_then(|r| i16::try_from(r).ok())
        .filter(|&r| r >= 0)
        .unwrap_or(NO_RATING)
}

fn rating_out(r: i16) -> Option<i32> {
    (r != NO_RATING).then_some(i32::from(r))
}

impl StoreChunk {
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The `after` value of time `t` of row `i` (opened at `opened`), noting it in `far`
    /// when it does not fit.
    fn after_in(&mut self, i: usize, col: usize, opened: i64, t: Option<i64>) -> i32 {
        let key = (i as u32, col as u8);
        let Some(t) = t else {
            if !self.far.is_empty() {
                self.far.remove(&key);
            }
            return AFTER_NONE;
        };
        match t
            .checked_sub(opened)
            .and_then(|d| i32::try_from(d).ok())
            .filter(|&d| d != AFTER_NONE && d != AFTER_FAR)
        {
            Some(d) => {
                if !self.far.is_empty() {
                    self.far.remove(&key);
                }
                d
            }
            None => {
                self.far.insert(key, t);
                AFTER_FAR
            }
        }
    }

    fn set_times(&mut self, i: usize, row: &TicketRow) {
        let times = [
            Some(row.deadline_ms),
            row.dispatched_at_ms,
            row.resolved_at_ms,
            row.onsite_at_ms,
        ];
        for (col, t) in times.into_iter().enumerate() {
            let a = self.after_in(i, col, row.opened_at_ms, t);
            if i == self.after[col].len() {
                self.after[col].push(a);
            } else {
                self.after[col][i] = a;
            }
        }
    }

    /// Time `col` of row `i`.
    fn time(&self, col: usize, i: usize) -> Option<i64> {
        match self.after[col][i] {
            AFTER_NONE => None,
            AFTER_FAR => self.far.get(&(i as u32, col as u8)).copied(),
            d => Some(self.opened_at_ms[i] + i64::from(d)),
        }
    }

    /// Row `i`'s deadline.
    pub fn deadline_ms(&self, i: usize) -> i64 {
        self.time(DEADLINE, i).unwrap_or(i64::MIN)
    }

    fn push(&mut self, id: TicketId, row: TicketRow) {
        let i = self.len();
        self.set_times(i, &row);
        self.ids.push(id);
        self.grid.push(slot_in(row.grid));
        self.community.push(slot_in(row.community));
        self.open.push(row.open);
        self.opened_at_ms.push(row.opened_at_ms);
        self.satisfaction.push(rating_in(row.satisfaction));
        self.pos_m.push(row.pos_m);
        self.priority.push(row.priority);
        self.category.push(row.category as u8);
        self.source.push(row.source as u8);
    }

    fn set(&mut self, i: usize, id: TicketId, row: TicketRow) {
        self.ids[i] = id;
        self.grid[i] = slot_in(row.grid);
        self.community[i] = slot_in(row.community);
        self.open[i] = row.open;
        self.opened_at_ms[i] = row.opened_at_ms;
        self.set_times(i, &row);
        self.satisfaction[i] = rating_in(row.satisfaction);
        self.pos_m[i] = row.pos_m;
        self.priority[i] = row.priority;
        self.category[i] = row.category as u8;
        self.source[i] = row.source as u8;
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> TicketRow {
        TicketRow {
            grid: slot_out(self.grid[i]),
            community: slot_out(self.community[i]),
            open: self.open[i],
            opened_at_ms: self.opened_at_ms[i],
            deadline_ms: self.deadline_ms(i),
            dispatched_at_ms: self.time(DISPATCHED, i),
            resolved_at_ms: self.time(RESOLVED, i),
            satisfaction: rating_out(self.satisfaction[i]),
            pos_m: self.pos_m[i],
            priority: self.priority[i],
            onsite_at_ms: self.time(ONSITE, i),
            category: crate::protocol::TicketCategory::ALL[usize::from(self.category[i])],
            source: crate::protocol::TicketSource::ALL[usize::from(self.source[i])],
        }
    }

    /// Every row, in order.
    pub fn rows(&self) -> impl Iterator<Item = TicketRow> + '_ {
        (0..self.len()).map(|i| self.row(i))
    }

    /// Whether row `i` was resolved at or after `since`.
    fn resolved_since(&self, i: usize, since: TimestampMs) -> bool {
        self.time(RESOLVED, i).is_some_and(|r| r >= since)
    }

    /// Append the rows the queries read since `since` ([`super::is_recent`]) to `out`,
    /// column by column (a filtered copy without building each row).
    pub fn push_recent(&self, since: TimestampMs, out: &mut TicketColumns) {
        let rows: Vec<usize> = (0..self.len())
            .filter(|&i| {
                super::is_recent(
                    self.time(DISPATCHED, i),
                    self.time(ONSITE, i),
                    self.time(RESOLVED, i),
                    since,
                )
            })
            .collect();
        fn take<T: Copy, U>(into: &mut Vec<U>, from: &[T], rows: &[usize], f: impl Fn(T) -> U) {
            into.extend(rows.iter().map(|&i| f(from[i])));
        }
        take(&mut out.grid, &self.grid, &rows, slot_out);
        take(&mut out.community, &self.community, &rows, slot_out);
        take(&mut out.open, &self.open, &rows, |v| v);
        take(&mut out.opened_at_ms, &self.opened_at_ms, &rows, |v| v);
        let times = |col: usize| rows.iter().map(move |&i| self.time(col, i));
        out.deadline_ms
            .extend(rows.iter().map(|&i| self.deadline_ms(i)));
        out.dispatched_at_ms.extend(times(DISPATCHED));
        out.resolved_at_ms.extend(times(RESOLVED));
        take(&mut out.satisfaction, &self.satisfaction, &rows, rating_out);
        take(&mut out.pos_m, &self.pos_m, &rows, |v| v);
        take(&mut out.priority, &self.priority, &rows, |v| v);
        out.onsite_at_ms.extend(times(ONSITE));
        take(&mut out.category, &self.category, &rows, |v| v);
        take(&mut out.source, &self.source, &rows, |v| v);
    }
}

impl TicketStore {
    /// Every ticket of `live`.
    pub fn from_live(live: &LiveState) -> Self {
        let county = live.county();
        let proj = county.pack.projection();
        let mut s = Self {
            proj: Some(proj),
            ..Self::default()
        };
        // Filled chunk by chunk: no lookups, no shared chunk to check.
        let mut chunk = StoreChunk::default();
        for t in live.tickets.values() {
            if chunk.len() == CHUNK_ROWS {
                s.chunks.push(Arc::new(std::mem::take(&mut chunk)));
            }
            chunk.push(t.id, row_of(county, &proj, t));
        }
        if !chunk.is_empty() {
            s.chunks.push(Arc::new(chunk));
        }
        let Self {
            chunks,
            rows,
            hasher,
            ..
        } = &mut s;
        *rows = HashTable::with_capacity(live.tickets.len());
        for (c, chunk) in chunks.iter().enumerate() {
            for (i, &id) in chunk.ids.iter().enumerate() {
                rows.insert_unique(hasher.hash_one(id), place(c, i), |&p| {
                    hasher.hash_one(id_at(chunks, p))
                });
            }
        }
        s.rollup = rollup_of(&s.chunks);
        s
    }

    /// Where ticket `id`'s row is.
    fn place_of(&self, id: TicketId) -> Option<Place> {
        let chunks = &self.chunks;
        self.rows
            .find(self.hasher.hash_one(id), |&p| id_at(chunks, p) == id)
            .copied()
    }

    /// Note that ticket `id`'s row is at `p` (its id already in the chunk).
    fn index(&mut self, id: TicketId, p: Place) {
        let Self {
            chunks,
            rows,
            hasher,
            ..
        } = self;
        rows.insert_unique(hasher.hash_one(id), p, |&q| {
            hasher.hash_one(id_at(chunks, q))
        });
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Insert or update one ticket's row (copies its chunk only if a refresh holds it).
    pub fn upsert(&mut self, county: &County, t: &Ticket) {
        let proj = *self.proj.get_or_insert_with(|| county.pack.projection());
        let row = row_of(county, &proj, t);
        if let Some(p) = self.place_of(t.id) {
            let (c, i) = unplace(p);
            let old = self.chunks[c].row(i);
            if old != row {
                self.rollup.remove(&old);
                self.rollup.add(&row);
                Arc::make_mut(&mut self.chunks[c]).set(i, t.id, row);
            }
            return;
        }
        self.rollup.add(&row);
        if let Some(p) = self.free.pop() {
            let (c, i) = unplace(p);
            Arc::make_mut(&mut self.chunks[c]).set(i, t.id, row);
            self.index(t.id, p);
            return;
        }
        if self.chunks.last().is_none_or(|c| c.len() >= CHUNK_ROWS) {
            self.chunks.push(Arc::new(StoreChunk::default()));
        }
        let c = self.chunks.len() - 1;
        let chunk = Arc::make_mut(&mut self.chunks[c]);
        chunk.push(t.id, row);
        let p = place(c, chunk.len() - 1);
        self.index(t.id, p);
    }

    /// Remove a ticket's row (it left the live state); its place is reused.
    pub fn remove(&mut self, id: TicketId) {
        let chunks = &self.chunks;
        let Ok(slot) = self
            .rows
            .find_entry(self.hasher.hash_one(id), |&p| id_at(chunks, p) == id)
        else {
            return;
        };
        let p = slot.remove().0;
        let (c, i) = unplace(p);
        self.rollup.remove(&self.chunks[c].row(i));
        Arc::make_mut(&mut self.chunks[c]).set(i, id, vacant());
        self.free.push(p);
    }

    /// The open tickets on the county's grid slot `slot`, in row order: a scan of the grid
    /// and open columns (a million rows in a millisecond or two), where a set of ids per grid
    /// kept beside the store took 14 MB at a million tickets.
    pub fn open_in_grid(&self, slot: usize) -> impl Iterator<Item = TicketId> + '_ {
        let slot = u32::try_from(slot).unwrap_or(NO_SLOT);
        self.chunks.iter().flat_map(move |c| {
            c.grid
                .iter()
                .zip(&c.open)
                .zip(&c.ids)
                .filter(move |((g, open), _)| **g == slot && **open && slot != NO_SLOT)
                .map(|(_, id)| *id)
        })
    }

    /// Rows allocated, used or free (what the store's memory follows).
    pub fn capacity_rows(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }

    /// A frozen view for a refresh: shares the chunks.
    pub fn snapshot(&self) -> Vec<Arc<StoreChunk>> {
        self.chunks.clone()
    }

    /// What a refresh at `now_ms` reads, taken where the events apply: the counts read from
    /// the roll-ups (well under a millisecond) and the chunks, shared.
    pub fn refresh_at(&self, now_ms: TimestampMs, communities: usize, grids: usize) -> Refresh {
        Refresh {
            rolled: self.rollup.read(now_ms, communities, grids),
            chunks: self.snapshot(),
        }
    }

    /// The roll-ups, kept as rows change.
    pub fn rollup(&self) -> &Rollup {
        &self.rollup
    }

    /// The roll-ups built afresh from the rows held (what [`Self::rollup`] must equal).
    pub fn rollup_rebuilt(&self) -> Rollup {
        Rollup::from_rows(self.rows.iter().map(|&p| {
            let (c, i) = unplace(p);
            self.chunks[c].row(i)
        }))
    }
}

/// The ticket whose row is at `p`.
fn id_at(chunks: &[Arc<StoreChunk>], p: Place) -> TicketId {
    let (c, i) = unplace(p);
    chunks[c].ids[i]
}

/// One refresh's input, frozen at its moment: run it on the task pool.
pub struct Refresh {
    /// The counts at its moment (medians and means empty).
    pub rolled: Analytics,
    pub chunks: Vec<Arc<StoreChunk>>,
}

impl Refresh {
    /// Gather the recent rows and query their medians and means; the figures at the moment
    /// the refresh was taken.
    pub fn run(self) -> Result<Analytics, AnalyticsError> {
        let recent = gather_recent(&self.chunks, self.rolled.now_ms);
        super::finish(self.rolled, recent)
    }
}

/// The roll-ups of every row of these chunks, built in bulk.
pub fn rollup_of(chunks: &[Arc<StoreChunk>]) -> Rollup {
    Rollup::from_rows(chunks.iter().flat_map(|c| c.rows()))
}

/// The rows of a snapshot the queries read at `now_ms` ([`super::is_recent`]).
pub fn gather_recent(chunks: &[Arc<StoreChunk>], now_ms: TimestampMs) -> TicketColumns {
    let since = window_start_ms(now_ms);
    let mut out = TicketColumns::default();
    for c in chunks {
        c.push_recent(since, &mut out);
    }
    out
}

/// The rows of a snapshot that can still move a figure at `now_ms` (open, or opened or
/// resolved within the window), as one table. Runs on the task pool.
pub fn gather(chunks: &[Arc<StoreChunk>], now_ms: TimestampMs) -> TicketColumns {
    let since = window_start_ms(now_ms);
    let mut out = TicketColumns::default();
    for c in chunks {
        for i in 0..c.len() {
            let open = c.open[i];
            let recent = c.opened_at_ms[i] >= since || c.resolved_since(i, since);
            if open || recent {
                out.push(c.row(i));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::county::default_pack_dir;
    use crate::sim::{SimConfig, Simulator};

    fn sorted(c: TicketColumns) -> Vec<String> {
        let mut rows: Vec<String> = (0..c.len()).map(|i| format!("{:?}", c.row(i))).collect();
        rows.sort();
        rows
    }

    #[test]
    fn a_chunk_gives_back_every_row_as_it_was_put_in_at_the_edges_of_each_column() {
        use crate::protocol::{Priority, TicketCategory, TicketSource};
        let base = TicketRow {
            grid: Some(0),
            community: None,
            open: true,
            opened_at_ms: 1_764_140_400_000,
            deadline_ms: 1_764_144_000_000,
            dispatched_at_ms: None,
            resolved_at_ms: Some(1_764_141_000_000),
            satisfaction: Some(0),
            pos_m: [-1.5, 2.25],
            priority: Priority::Urgent,
            onsite_at_ms: Some(0),
            category: TicketCategory::ALL[TicketCategory::ALL.len() - 1],
            source: TicketSource::ALL[TicketSource::ALL.len() - 1],
        };
        let rows = [
            base,
            TicketRow {
                grid: None,
                community: Some(u32::MAX - 1),
                satisfaction: Some(255),
                dispatched_at_ms: Some(i64::MIN + 1),
                resolved_at_ms: None,
                onsite_at_ms: None,
                ..base
            },
            TicketRow {
                satisfaction: None,
                opened_at_ms: i64::MIN,
                dispatched_at_ms: Some(i64::MAX),
                ..base
            },
            vacant(),
        ];
        let mut chunk = StoreChunk::default();
        for (id, r) in (u64::MAX - 3..=u64::MAX).zip(rows) {
            chunk.push(id, r);
        }
        let back: Vec<TicketRow> = (0..chunk.len()).map(|i| chunk.row(i)).collect();
        assert_eq!(back, rows);
        assert_eq!(
            chunk.ids,
            [u64::MAX - 3, u64::MAX - 2, u64::MAX - 1, u64::MAX]
        );
        // Rewritten in place, in the other order.
        for (i, r) in rows.iter().rev().enumerate() {
            chunk.set(i, i as u64, *r);
        }
        let back: Vec<TicketRow> = (0..chunk.len()).rev().map(|i| chunk.row(i)).collect();
        assert_eq!(back, rows);
        assert_eq!(chunk.ids, [0, 1, 2, 3]);
        // Times more than 24 days from the opening are kept whole beside the columns, and
        // leave with their row.
        assert!(!chunk.far.is_empty());
        let near = TicketRow {
            dispatched_at_ms: Some(base.opened_at_ms + i64::from(i32::MAX) - 1),
            resolved_at_ms: Some(base.opened_at_ms - i64::from(i32::MAX) + 1),
            onsite_at_ms: Some(base.opened_at_ms + 1),
            ..base
        };
        let far = TicketRow {
            dispatched_at_ms: Some(base.opened_at_ms + i64::from(i32::MAX)),
            resolved_at_ms: Some(base.opened_at_ms + 40 * 86_400_000),
            ..near
        };
        for i in 0..chunk.len() {
            chunk.set(i, 9, near);
        }
        assert!(chunk.far.is_empty(), "{:?}", chunk.far);
        assert!((0..chunk.len()).all(|i| chunk.row(i) == near));
        chunk.set(1, 9, far);
        assert_eq!(chunk.far.len(), 2);
        assert_eq!(chunk.row(1), far);
        assert_eq!(chunk.row(0), near);
        // (Back as they were: in the other order.)
        for (i, r) in rows.iter().rev().enumerate() {
            chunk.set(i, i as u64, *r);
        }
        let back: Vec<TicketRow> = (0..chunk.len()).rev().map(|i| chunk.row(i)).collect();
        assert_eq!(back, rows);
        // What a refresh copies out is the same rows, filtered as the wide columns filter.
        let since = 1_764_140_000_000;
        let mut wide = TicketColumns::default();
        for r in rows {
            wide.push(r);
        }
        let mut from_chunk = TicketColumns::default();
        chunk.push_recent(since, &mut from_chunk);
        let mut from_wide = TicketColumns::default();
        super::super::push_recent(&wide, since, &mut from_wide);
        assert_eq!(from_chunk, {
            // The chunk holds the rows reversed by now.
            let mut reversed = TicketColumns::default();
            for r in rows.iter().rev() {
                reversed.push(*r);
            }
            let mut out = TicketColumns::default();
            super::super::push_recent(&reversed, since, &mut out);
            out
        });
        assert_eq!(
            from_wide.len(),
            2,
            "the rows resolved or dispatched since: {from_wide:?}"
        );
    }

    #[test]
    fn the_store_follows_events_and_gathers_what_a_walk_finds() {
        let county = Arc::new(County::load(&default_pack_dir()).unwrap());
        let start = 1_764_140_400_000;
        let mut sim = Simulator::new(
            Arc::clone(&county),
            SimConfig {
                seed: 2,
                start_ms: start,
                warmup_hours: 26,
                ..Default::default()
            },
        );
        let events = sim.advance_to(start + 600_000);
        let (first, rest) = events.split_at(events.len() / 2);
        let mut live = LiveState::new(Arc::clone(&county));
        for e in first {
            live.apply(e).unwrap();
        }
        let mut store = TicketStore::from_live(&live);
        // A refresh holds a snapshot while more events arrive.
        let held = store.snapshot();
        let before = gather(&held, start);
        for e in rest {
            live.apply(e).unwrap();
            if let Some(t) = ticket_of(e).and_then(|id| live.tickets.get(&id)) {
                store.upsert(&county, t);
            }
        }
        let now = start + 600_000;
        assert_eq!(store.len(), live.tickets.len());
        assert_eq!(
            sorted(gather(&store.snapshot(), now)),
            sorted(TicketColumns::from_live(&live, now)),
            "the store equals a walk over the live state"
        );
        assert_eq!(
            sorted(gather(&held, start)),
            sorted(before),
            "a held snapshot does not change under it"
        );
        // Each grid's open tickets, as the grid panel finds them, after tickets were resolved
        // and opened under the store.
        let mut busy = 0;
        for (slot, g) in county.pack.grids.iter().enumerate() {
            let mut found: Vec<TicketId> = store.open_in_grid(slot).collect();
            found.sort_unstable();
            let mut walked: Vec<TicketId> = live
                .open_tickets()
                .filter(|t| t.grid_id == Some(g.id))
                .map(|t| t.id)
                .collect();
            walked.sort_unstable();
            assert_eq!(found, walked, "grid {}", g.id);
            busy += usize::from(found.len() >= 3);
        }
        assert!(busy >= 10, "too few busy grids to tell: {busy}");
        assert!(
            live.tickets.values().any(|t| !t.status.is_open()),
            "resolved tickets in the store"
        );
        assert_eq!(store.open_in_grid(usize::MAX).count(), 0);
    }

    #[test]
    fn removed_tickets_leave_the_figures_and_their_rows_are_reused() {
        let county = Arc::new(County::load(&default_pack_dir()).unwrap());
        let start = 1_764_140_400_000;
        let mut sim = Simulator::new(
            Arc::clone(&county),
            SimConfig {
                seed: 3,
                start_ms: start,
                warmup_hours: 6,
                ..Default::default()
            },
        );
        let mut live = LiveState::new(Arc::clone(&county));
        for e in sim.advance_to(start) {
            live.apply(&e).unwrap();
        }
        let mut store = TicketStore::from_live(&live);
        let rows = store.capacity_rows();
        let resolved: Vec<TicketId> = live
            .tickets
            .values()
            .filter(|t| !t.status.is_open())
            .map(|t| t.id)
            .take(10)
            .collect();
        assert_eq!(
            resolved.len(),
            10,
            "six hours resolve more than ten tickets"
        );
        for id in &resolved {
            live.tickets.remove(id);
            store.remove(*id);
        }
        assert_eq!(store.len(), live.tickets.len());
        assert_eq!(
            sorted(gather(&store.snapshot(), start)),
            sorted(TicketColumns::from_live(&live, start)),
            "removed rows count nowhere"
        );
        // New tickets take the freed rows before new ones are added.
        for e in sim.advance_to(start + 3_600_000) {
            // (A rating of a removed ticket is refused: it is gone.)
            if live.apply(&e).is_err() {
                continue;
            }
            if let Some(t) = ticket_of(&e).and_then(|id| live.tickets.get(&id)) {
                store.upsert(&county, t);
            }
        }
        let opened = live.tickets.len() + resolved.len() - rows;
        assert!(
            opened >= 10,
            "an hour opens more than ten tickets: {opened}"
        );
        assert_eq!(store.capacity_rows(), rows + opened - resolved.len());
        assert_eq!(
            sorted(gather(&store.snapshot(), start + 3_600_000)),
            sorted(TicketColumns::from_live(&live, start + 3_600_000))
        );
    }

    #[test]
    fn rows_across_chunks_are_found_by_the_id_in_their_chunk() {
        let county = Arc::new(County::load(&default_pack_dir()).unwrap());
        let grid = county.pack.grids[0].clone();
        let ticket = |id: TicketId, status: TicketStatus| Ticket {
            id,
            category: crate::protocol::TicketCategory::Repair,
            source: crate::protocol::TicketSource::MiniProgram,
            priority: crate::protocol::Priority::Low,
            pos: crate::protocol::LonLat {
                lon: 106.5,
                lat: 38.9,
            },
            grid_id: Some(grid.id),
            status,
            opened_at_ms: id as i64,
            sla_deadline_ms: id as i64 + 60_000,
            assignee: None,
            volunteer_id: None,
            satisfaction: None,
            summary: "x".into(),
            responsible_party: None,
            steps: Default::default(),
            supervised_at_ms: Default::default(),
        };
        // Ids far apart, more rows than two chunks hold.
        let n = 2 * CHUNK_ROWS as u64 + 1000;
        let id = |k: u64| k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut store = TicketStore::default();
        for k in 0..n {
            store.upsert(&county, &ticket(id(k), TicketStatus::Opened));
        }
        assert_eq!(store.len(), n as usize);
        assert_eq!(store.chunks.len(), 3);
        for k in (0..n).step_by(3) {
            store.remove(id(k));
        }
        store.remove(id(0));
        for k in (1..n).step_by(3) {
            store.upsert(&county, &ticket(id(k), TicketStatus::Resolved));
        }
        for k in 0..1000 {
            store.upsert(&county, &ticket(id(n + k), TicketStatus::Opened));
        }
        let left = n as usize - n.div_ceil(3) as usize + 1000;
        assert_eq!(store.len(), left);
        assert_eq!(
            store.capacity_rows(),
            n as usize,
            "removed rows were reused"
        );
        for k in 0..n + 1000 {
            let p = store.place_of(id(k));
            assert_eq!(p.is_some(), k >= n || k % 3 != 0, "ticket {k}");
            if let Some(p) = p {
                let (c, i) = unplace(p);
                assert_eq!(store.chunks[c].ids[i], id(k));
                let open = k >= n || k % 3 == 2;
                assert_eq!(store.chunks[c].open[i], open, "ticket {k}");
            }
        }
        let (c, g) = (county.pack.communities.len(), county.pack.grids.len());
        let at = (n / 2) as i64;
        let kept = store.rollup().read(at, c, g);
        assert!(kept.county.open > 0);
        assert_eq!(kept, store.rollup_rebuilt().read(at, c, g));
        assert_eq!(kept, store.clone().rollup_rebuilt().read(at, c, g));
    }
}
