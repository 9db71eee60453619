//! The ticket columns kept up to date as events apply, in chunks shared copy-on-write, so a
//! refresh takes a snapshot for the task pool by cloning a few `Arc`s instead of walking a
//! million tickets on the frame. Only chunks touched while a refresh runs are copied.

use std::sync::Arc;

use super::rollup::Rollup;
use super::{Analytics, AnalyticsError, TicketColumns, TicketRow, window_start_ms};
use crate::model::geom::LocalProjection;
use crate::model::{County, LiveState, Ticket, TicketStatus};
use crate::protocol::{Event, TicketId, TimestampMs};

/// Rows per chunk.
pub const CHUNK_ROWS: usize = 1 << 16;

/// Every ticket's row, by id, in shared chunks.
#[derive(Clone, Debug, Default)]
pub struct TicketStore {
    chunks: Vec<Arc<StoreChunk>>,
    rows: foldhash::HashMap<TicketId, (u32, u32)>,
    /// Rows of removed tickets, reused by the next inserts (so a week of tickets coming and
    /// going keeps the same chunks).
    free: Vec<(u32, u32)>,
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

/// "None" in a time column of a [`StoreChunk`]: no step a ticket can take is this old (a step
/// is never earlier than the ticket's opening, and no ticket system opens one 292 million
/// years ago).
const NO_TIME: i64 = i64::MIN;
/// "None" in a slot column.
const NO_SLOT: u32 = u32::MAX;
/// "None" in the satisfaction column (ratings are 0..=255).
const NO_RATING: i16 = -1;

/// One chunk of the store's rows, column by column, each column as narrow as its values allow
/// ("none" a sentinel instead of an `Option`, which doubles an `i64`): 62 bytes a row where
/// [`TicketColumns`] takes 100. What a refresh queries is copied out of it into
/// [`TicketColumns`] ([`StoreChunk::push_recent`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreChunk {
    grid: Vec<u32>,
    community: Vec<u32>,
    pub open: Vec<bool>,
    pub opened_at_ms: Vec<i64>,
    pub deadline_ms: Vec<i64>,
    dispatched_at_ms: Vec<i64>,
    resolved_at_ms: Vec<i64>,
    onsite_at_ms: Vec<i64>,
    satisfaction: Vec<i16>,
    pub pos_m: Vec<[f32; 2]>,
    pub priority: Vec<crate::protocol::Priority>,
    category: Vec<u8>,
    source: Vec<u8>,
}

fn time_in(t: Option<i64>) -> i64 {
    t.unwrap_or(NO_TIME)
}

fn time_out(t: i64) -> Option<i64> {
    (t != NO_TIME).then_some(t)
}

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

    fn push(&mut self, row: TicketRow) {
        self.grid.push(slot_in(row.grid));
        self.community.push(slot_in(row.community));
        self.open.push(row.open);
        self.opened_at_ms.push(row.opened_at_ms);
        self.deadline_ms.push(row.deadline_ms);
        self.dispatched_at_ms.push(time_in(row.dispatched_at_ms));
        self.resolved_at_ms.push(time_in(row.resolved_at_ms));
        self.onsite_at_ms.push(time_in(row.onsite_at_ms));
        self.satisfaction.push(rating_in(row.satisfaction));
        self.pos_m.push(row.pos_m);
        self.priority.push(row.priority);
        self.category.push(row.category as u8);
        self.source.push(row.source as u8);
    }

    fn set(&mut self, i: usize, row: TicketRow) {
        self.grid[i] = slot_in(row.grid);
        self.community[i] = slot_in(row.community);
        self.open[i] = row.open;
        self.opened_at_ms[i] = row.opened_at_ms;
        self.deadline_ms[i] = row.deadline_ms;
        self.dispatched_at_ms[i] = time_in(row.dispatched_at_ms);
        self.resolved_at_ms[i] = time_in(row.resolved_at_ms);
        self.onsite_at_ms[i] = time_in(row.onsite_at_ms);
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
            deadline_ms: self.deadline_ms[i],
            dispatched_at_ms: time_out(self.dispatched_at_ms[i]),
            resolved_at_ms: time_out(self.resolved_at_ms[i]),
            satisfaction: rating_out(self.satisfaction[i]),
            pos_m: self.pos_m[i],
            priority: self.priority[i],
            onsite_at_ms: time_out(self.onsite_at_ms[i]),
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
        time_out(self.resolved_at_ms[i]).is_some_and(|r| r >= since)
    }

    /// Append the rows the queries read since `since` ([`super::is_recent`]) to `out`,
    /// column by column (a filtered copy without building each row).
    pub fn push_recent(&self, since: TimestampMs, out: &mut TicketColumns) {
        let rows: Vec<usize> = (0..self.len())
            .filter(|&i| {
                super::is_recent(
                    time_out(self.dispatched_at_ms[i]),
                    time_out(self.onsite_at_ms[i]),
                    time_out(self.resolved_at_ms[i]),
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
        take(&mut out.deadline_ms, &self.deadline_ms, &rows, |v| v);
        take(
            &mut out.dispatched_at_ms,
            &self.dispatched_at_ms,
            &rows,
            time_out,
        );
        take(
            &mut out.resolved_at_ms,
            &self.resolved_at_ms,
            &rows,
            time_out,
        );
        take(&mut out.satisfaction, &self.satisfaction, &rows, rating_out);
        take(&mut out.pos_m, &self.pos_m, &rows, |v| v);
        take(&mut out.priority, &self.priority, &rows, |v| v);
        take(&mut out.onsite_at_ms, &self.onsite_at_ms, &rows, time_out);
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
        s.rows.reserve(live.tickets.len());
        // Filled chunk by chunk: no lookups, no shared chunk to check.
        let mut chunk = StoreChunk::default();
        for t in live.tickets.values() {
            if chunk.len() == CHUNK_ROWS {
                s.chunks.push(Arc::new(std::mem::take(&mut chunk)));
            }
            s.rows
                .insert(t.id, (s.chunks.len() as u32, chunk.len() as u32));
            chunk.push(row_of(county, &proj, t));
        }
        if !chunk.is_empty() {
            s.chunks.push(Arc::new(chunk));
        }
        s.rollup = rollup_of(&s.chunks);
        s
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
        if let Some(&(c, i)) = self.rows.get(&t.id) {
            let old = self.chunks[c as usize].row(i as usize);
            if old != row {
                self.rollup.remove(&old);
                self.rollup.add(&row);
                Arc::make_mut(&mut self.chunks[c as usize]).set(i as usize, row);
            }
            return;
        }
        self.rollup.add(&row);
        if let Some((c, i)) = self.free.pop() {
            Arc::make_mut(&mut self.chunks[c as usize]).set(i as usize, row);
            self.rows.insert(t.id, (c, i));
            return;
        }
        if self.chunks.last().is_none_or(|c| c.len() >= CHUNK_ROWS) {
            self.chunks.push(Arc::new(StoreChunk::default()));
        }
        let c = self.chunks.len() - 1;
        let chunk = Arc::make_mut(&mut self.chunks[c]);
        chunk.push(row);
        self.rows.insert(t.id, (c as u32, (chunk.len() - 1) as u32));
    }

    /// Remove a ticket's row (it left the live state); its place is reused.
    pub fn remove(&mut self, id: TicketId) {
        if let Some((c, i)) = self.rows.remove(&id) {
            self.rollup.remove(&self.chunks[c as usize].row(i as usize));
            Arc::make_mut(&mut self.chunks[c as usize]).set(i as usize, vacant());
            self.free.push((c, i));
        }
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
        Rollup::from_rows(
            self.rows
                .values()
                .map(|&(c, i)| self.chunks[c as usize].row(i as usize)),
        )
    }
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
        for r in rows {
            chunk.push(r);
        }
        let back: Vec<TicketRow> = (0..chunk.len()).map(|i| chunk.row(i)).collect();
        assert_eq!(back, rows);
        // Rewritten in place, in the other order.
        for (i, r) in rows.iter().rev().enumerate() {
            chunk.set(i, *r);
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
}
