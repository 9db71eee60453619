//! Roll-ups kept as tickets change: every count the figures need, so a refresh reads them at
//! its moment in well under a millisecond instead of scanning a million rows. What cannot be
//! kept this way (the medians) is left to the polars queries over the rows with something
//! recent to say ([`super::is_recent`]).
//!
//! A row adds to:
//! - its area (its grid and community): open, and its deadline if open (overdue and at risk
//!   are counted from the sorted deadlines at the moment read);
//! - the county's overdue intervals: a ticket is overdue at `t` when it was opened by `t`, its
//!   deadline was before `t` and it was not resolved by `t`, i.e. `t` in `[start, end)` with
//!   `start = max(opened, deadline + 1)` and `end` its resolution (none while open);
//! - tallies by the county's local day and area (today's counts), and by hour and community
//!   (the hourly lanes and the source and category mix).
//!
//! Every change is a row taken out and a row put in, so the roll-ups always equal a build
//! from the rows they hold (tested against that, and against the plain-Rust reference).

use std::collections::BTreeMap;

use super::{
    Analytics, Figures, HOUR_MS, HOURS, Hourly, Mix, PLEDGE_MS, TicketColumns, TicketRow,
    hour_ends, hourly_start_ms,
};
use crate::model::sla::{AT_RISK_MS, local_day_start_ms};
use crate::model::time_blocks::TimeBlocks;
use crate::protocol::{TicketCategory, TimestampMs};

/// "No grid / community" in an area's key.
const NONE: u32 = u32::MAX;
/// Sorted times ([`TimeBlocks`] with no key): "how many at or before `t`" in a few binary
/// searches.
type Ranked = TimeBlocks<()>;

/// Today's counts of an area (by the local day they fall on).
const OPENED: usize = 0;
const RESOLVED: usize = 1;
const ONSITE: usize = 2;
const REPAIRS_ONSITE: usize = 3;
const WITHIN_PLEDGE: usize = 4;
type DayTally = [u32; 5];

/// An hour's counts of a community: the lanes of [`Hourly`] in order (opened, resolved, on
/// time, repairs on site, within the pledge, rated, rating sum), then openings by source and
/// by category.
const LANES: usize = 7;
const ON_TIME: usize = 2;
const RATED: usize = 5;
const RATING_SUM: usize = 6;
const BY_SOURCE: usize = LANES;
const BY_CATEGORY: usize = LANES + super::SOURCES;
type HourTally = [u32; LANES + super::SOURCES + super::CATEGORIES];

/// One area: a grid (or none) in a community (or none).
#[derive(Clone, Debug, Default)]
struct Area {
    grid: u32,
    community: u32,
    open: u32,
    /// Deadlines of its open tickets.
    deadlines: Ranked,
}

/// Every count of the figures, kept as rows come and go.
#[derive(Clone, Debug, Default)]
pub struct Rollup {
    area_of: foldhash::HashMap<(u32, u32), u32>,
    areas: Vec<Area>,
    /// (local day start, area) → today's counts.
    days: BTreeMap<(i64, u32), DayTally>,
    /// (hour start, community) → that hour's counts.
    hours: BTreeMap<(i64, u32), HourTally>,
    /// Starts and ends of the overdue intervals (see the module's notes).
    starts: Ranked,
    ends: Ranked,
    rows: usize,
}

/// What one row adds, each part once.
enum Part {
    /// An open ticket's deadline in its area.
    Deadline(i64),
    /// An overdue interval's start or end (county).
    Start(i64),
    End(i64),
    /// Counts for its area on a local day.
    Day(i64, DayTally),
    /// Counts for its community in an hour.
    Hour(i64, HourTally),
}

fn hour_of(t: i64) -> i64 {
    t.saturating_sub(t.rem_euclid(HOUR_MS))
}

/// Up to three tallies of one row, each key once (a ticket opened, reached and resolved within
/// one hour touches one hour).
struct Tallies<const N: usize> {
    keys: [i64; 3],
    tallies: [[u32; N]; 3],
    len: usize,
}

impl<const N: usize> Tallies<N> {
    fn new() -> Self {
        Self {
            keys: [0; 3],
            tallies: [[0; N]; 3],
            len: 0,
        }
    }

    fn at(&mut self, key: i64) -> &mut [u32; N] {
        let i = match self.keys[..self.len].iter().position(|&k| k == key) {
            Some(i) => i,
            None => {
                self.keys[self.len] = key;
                self.len += 1;
                self.len - 1
            }
        };
        &mut self.tallies[i]
    }

    fn each(&self, mut f: impl FnMut(i64, [u32; N])) {
        for i in 0..self.len {
            f(self.keys[i], self.tallies[i]);
        }
    }
}

/// Every part of one row.
fn parts(row: &TicketRow, mut f: impl FnMut(Part)) {
    if row.open {
        f(Part::Deadline(row.deadline_ms));
    }
    let start = row.opened_at_ms.max(row.deadline_ms.saturating_add(1));
    match (row.open, row.resolved_at_ms) {
        (true, _) => f(Part::Start(start)),
        (false, Some(end)) if start < end => {
            f(Part::Start(start));
            f(Part::End(end));
        }
        _ => {}
    }
    let mut days = Tallies::<5>::new();
    let mut hours = Tallies::<{ LANES + super::SOURCES + super::CATEGORIES }>::new();
    let opened = row.opened_at_ms;
    days.at(local_day_start_ms(opened))[OPENED] += 1;
    let h = hours.at(hour_of(opened));
    h[OPENED] += 1;
    h[BY_SOURCE + row.source as usize] += 1;
    h[BY_CATEGORY + row.category as usize] += 1;
    if let Some(r) = row.resolved_at_ms {
        days.at(local_day_start_ms(r))[RESOLVED] += 1;
        let h = hours.at(hour_of(r));
        h[RESOLVED] += 1;
        if r <= row.deadline_ms {
            h[ON_TIME] += 1;
        }
        if let Some(s) = row.satisfaction.filter(|&s| s > 0) {
            h[RATED] += 1;
            h[RATING_SUM] += s as u32;
        }
    }
    if let Some(o) = row.onsite_at_ms {
        let d = days.at(local_day_start_ms(o));
        d[ONSITE] += 1;
        if row.category == TicketCategory::Repair {
            let within = u32::from(o.saturating_sub(opened) <= PLEDGE_MS);
            d[REPAIRS_ONSITE] += 1;
            d[WITHIN_PLEDGE] += within;
            let h = hours.at(hour_of(o));
            h[REPAIRS_ONSITE] += 1;
            h[WITHIN_PLEDGE] += within;
        }
    }
    days.each(|k, t| f(Part::Day(k, t)));
    hours.each(|k, t| f(Part::Hour(k, t)));
}

/// Add a row's tally to (or, `add` false, take it from) the map's, dropping a tally once empty.
fn bump<const N: usize>(
    map: &mut BTreeMap<(i64, u32), [u32; N]>,
    key: (i64, u32),
    by: [u32; N],
    add: bool,
) {
    if add {
        add_into(map.entry(key).or_insert([0; N]), &by);
    } else if let Some(t) = map.get_mut(&key) {
        for (v, b) in t.iter_mut().zip(by) {
            *v = v.saturating_sub(b);
        }
        if t.iter().all(|&v| v == 0) {
            map.remove(&key);
        }
    }
}

fn slot(v: Option<u32>) -> u32 {
    v.unwrap_or(NONE)
}

impl Rollup {
    /// The roll-ups of every row of these columns, built in bulk.
    pub fn from_columns<'a>(columns: impl IntoIterator<Item = &'a TicketColumns>) -> Self {
        Self::from_rows(
            columns
                .into_iter()
                .flat_map(|cols| (0..cols.len()).map(|i| cols.row(i))),
        )
    }

    /// The roll-ups of these rows, built in bulk.
    pub fn from_rows(rows: impl IntoIterator<Item = TicketRow>) -> Self {
        let mut r = Self::default();
        let mut deadlines: Vec<Vec<i64>> = Vec::new();
        let (mut starts, mut ends) = (Vec::new(), Vec::new());
        let mut days: foldhash::HashMap<(i64, u32), DayTally> = Default::default();
        let mut hours: foldhash::HashMap<(i64, u32), HourTally> = Default::default();
        for row in rows {
            let area = r.area(row.grid, row.community) as usize;
            if deadlines.len() <= area {
                deadlines.resize_with(area + 1, Vec::new);
            }
            let community = slot(row.community);
            parts(&row, |p| match p {
                Part::Deadline(d) => deadlines[area].push(d),
                Part::Start(t) => starts.push(t),
                Part::End(t) => ends.push(t),
                Part::Day(d, t) => add_into(days.entry((d, area as u32)).or_default(), &t),
                Part::Hour(h, t) => add_into(hours.entry((h, community)).or_default(), &t),
            });
            r.rows += 1;
        }
        for (a, d) in r.areas.iter_mut().zip(deadlines) {
            a.open = d.len() as u32;
            a.deadlines = d.into_iter().map(|t| (t, ())).collect();
        }
        r.starts = starts.into_iter().map(|t| (t, ())).collect();
        r.ends = ends.into_iter().map(|t| (t, ())).collect();
        r.days = days.into_iter().collect();
        r.hours = hours.into_iter().collect();
        r
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn area(&mut self, grid: Option<u32>, community: Option<u32>) -> u32 {
        let key = (slot(grid), slot(community));
        if let Some(&a) = self.area_of.get(&key) {
            return a;
        }
        let a = self.areas.len() as u32;
        self.areas.push(Area {
            grid: key.0,
            community: key.1,
            ..Area::default()
        });
        self.area_of.insert(key, a);
        a
    }

    /// Count a row in.
    pub fn add(&mut self, row: &TicketRow) {
        self.apply(row, true);
    }

    /// Take a row out (one that was added).
    pub fn remove(&mut self, row: &TicketRow) {
        self.apply(row, false);
    }

    fn apply(&mut self, row: &TicketRow, add: bool) {
        let area = self.area(row.grid, row.community);
        let community = slot(row.community);
        let (areas, days, hours) = (&mut self.areas, &mut self.days, &mut self.hours);
        let (starts, ends) = (&mut self.starts, &mut self.ends);
        let set = |s: &mut Ranked, t: i64| {
            if add {
                s.insert(t, ());
            } else {
                s.remove(t, ());
            }
        };
        parts(row, |p| match p {
            Part::Deadline(d) => {
                let a = &mut areas[area as usize];
                set(&mut a.deadlines, d);
                a.open = a.deadlines.len() as u32;
            }
            Part::Start(t) => set(starts, t),
            Part::End(t) => set(ends, t),
            Part::Day(d, t) => bump(days, (d, area), t, add),
            Part::Hour(h, t) => bump(hours, (h, community), t, add),
        });
        if add {
            self.rows += 1;
        } else {
            self.rows = self.rows.saturating_sub(1);
        }
    }

    /// Every count at `now_ms` for a county with `communities` and `grids` slots; the medians
    /// and means are left empty for the queries ([`super::finish`]).
    pub fn read(&self, now_ms: TimestampMs, communities: usize, grids: usize) -> Analytics {
        let day_ms = local_day_start_ms(now_ms);
        let hour0 = hourly_start_ms(now_ms);
        let soon = now_ms.saturating_add(AT_RISK_MS);
        let mut by_area: Vec<Figures> = self
            .areas
            .iter()
            .map(|a| {
                let overdue = a.deadlines.count_lt(now_ms) as u32;
                Figures {
                    open: a.open,
                    overdue,
                    at_risk: a.deadlines.count_le(soon) as u32 - overdue,
                    ..Figures::default()
                }
            })
            .collect();
        for (&(_, area), t) in self.days.range((day_ms, 0)..) {
            let f = &mut by_area[area as usize];
            f.opened_today += t[OPENED];
            f.resolved_today += t[RESOLVED];
            f.onsite_today += t[ONSITE];
            f.repairs_onsite_today += t[REPAIRS_ONSITE];
            f.repairs_within_pledge += t[WITHIN_PLEDGE];
        }
        let mut out = Analytics {
            now_ms,
            day_start_ms: day_ms,
            hourly_start_ms: hour0,
            county: Figures::default(),
            communities: vec![Figures::default(); communities],
            grids: vec![Figures::default(); grids],
            county_hourly: Hourly::default(),
            community_hourly: vec![Hourly::default(); communities],
            county_mix: Mix::default(),
            community_mix: vec![Mix::default(); communities],
            overdue_hourly: [0; HOURS],
            rows: self.rows,
            queried: 0,
        };
        for (a, f) in self.areas.iter().zip(&by_area) {
            add_counts(&mut out.county, f);
            if let Some(c) = out.communities.get_mut(a.community as usize) {
                add_counts(c, f);
            }
            if let Some(g) = out.grids.get_mut(a.grid as usize) {
                add_counts(g, f);
            }
        }
        for (&(h, community), t) in self.hours.range((hour0, 0)..) {
            let bucket = ((h - hour0) / HOUR_MS) as usize;
            let today = h >= day_ms;
            let into = |hourly: &mut Hourly, mix: &mut Mix| {
                if bucket < HOURS {
                    let lanes: [&mut [u32; HOURS]; LANES] = [
                        &mut hourly.opened,
                        &mut hourly.resolved,
                        &mut hourly.on_time,
                        &mut hourly.repairs_onsite,
                        &mut hourly.repairs_within_pledge,
                        &mut hourly.rated,
                        &mut hourly.rating_sum,
                    ];
                    for (lane, n) in lanes.into_iter().zip(t) {
                        lane[bucket] += n;
                    }
                }
                let sources = &t[BY_SOURCE..BY_CATEGORY];
                let categories = &t[BY_CATEGORY..];
                add_into(&mut mix.day_by_source, sources);
                add_into(&mut mix.day_by_category, categories);
                if today {
                    add_into(&mut mix.today_by_source, sources);
                    add_into(&mut mix.today_by_category, categories);
                }
            };
            into(&mut out.county_hourly, &mut out.county_mix);
            if let (Some(h), Some(m)) = (
                out.community_hourly.get_mut(community as usize),
                out.community_mix.get_mut(community as usize),
            ) {
                into(h, m);
            }
        }
        for (slot, t) in out.overdue_hourly.iter_mut().zip(hour_ends(now_ms, hour0)) {
            *slot = (self.starts.count_le(t) - self.ends.count_le(t)) as u32;
        }
        out
    }
}

fn add_into(into: &mut [u32], from: &[u32]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// Add the counts of `f` (not its medians and means) to `into`.
fn add_counts(into: &mut Figures, f: &Figures) {
    into.open += f.open;
    into.overdue += f.overdue;
    into.at_risk += f.at_risk;
    into.opened_today += f.opened_today;
    into.resolved_today += f.resolved_today;
    into.onsite_today += f.onsite_today;
    into.repairs_onsite_today += f.repairs_onsite_today;
    into.repairs_within_pledge += f.repairs_within_pledge;
}
