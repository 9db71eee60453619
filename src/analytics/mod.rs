//! Analytics (polars): SLA roll-ups, KPIs and 24 h hourly series per grid, community and
//! county, computed from a columnar copy of the tickets; pure functions, run off the frame.
//!
//! Definitions (the wall's top bar, ranking and panels all read these):
//! - *open*: not resolved; *overdue*: open and past its deadline; *at risk*: open and due
//!   within [`AT_RISK_MS`](crate::model::sla::AT_RISK_MS).
//! - *today* is the county's local day (UTC+8) containing `now`.
//! - *response*: reported → first dispatch, over tickets first dispatched today.
//! - *resolution*: reported → resolved, *on time*: resolved by the deadline, *satisfaction*:
//!   mean rating (1–5); all three over tickets resolved today.
//! - *hourly*: 24 one-hour buckets ending with the current hour: tickets opened / resolved in
//!   each.

pub mod export;
pub mod reference;
pub mod store;

use polars::prelude::*;

use crate::model::sla::{AT_RISK_MS, local_day_start_ms};
use crate::model::{County, LiveState};
use crate::protocol::TimestampMs;

/// Hours in the sparkline series.
pub const HOURS: usize = 24;
const HOUR_MS: i64 = 3_600_000;

/// The ticket columns the analytics read: one row per ticket that is open or was opened or
/// resolved within the window (older closed tickets cannot change any figure).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TicketColumns {
    /// Slot in `pack.grids` (None: outside every grid).
    pub grid: Vec<Option<u32>>,
    /// Slot in `pack.communities`.
    pub community: Vec<Option<u32>>,
    pub open: Vec<bool>,
    pub opened_at_ms: Vec<i64>,
    pub deadline_ms: Vec<i64>,
    pub dispatched_at_ms: Vec<Option<i64>>,
    pub resolved_at_ms: Vec<Option<i64>>,
    pub satisfaction: Vec<Option<i32>>,
    /// Where it is, local metres (the heatmap), and its priority.
    pub pos_m: Vec<[f32; 2]>,
    pub priority: Vec<crate::protocol::Priority>,
}

impl TicketColumns {
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    pub fn push(&mut self, row: TicketRow) {
        self.grid.push(row.grid);
        self.community.push(row.community);
        self.open.push(row.open);
        self.opened_at_ms.push(row.opened_at_ms);
        self.deadline_ms.push(row.deadline_ms);
        self.dispatched_at_ms.push(row.dispatched_at_ms);
        self.resolved_at_ms.push(row.resolved_at_ms);
        self.satisfaction.push(row.satisfaction);
        self.pos_m.push(row.pos_m);
        self.priority.push(row.priority);
    }

    /// The rows of `live` that matter at `now_ms`.
    pub fn from_live(live: &LiveState, now_ms: TimestampMs) -> Self {
        let county = live.county();
        let since = window_start_ms(now_ms);
        let proj = county.pack.projection();
        let mut cols = Self::default();
        for t in live.tickets.values() {
            let open = t.status.is_open();
            let resolved_at_ms = (!open).then(|| t.last_at_ms());
            if !open && t.opened_at_ms < since && resolved_at_ms.is_some_and(|r| r < since) {
                continue;
            }
            cols.push(store::row_of(county, &proj, t));
        }
        cols
    }
}

/// One ticket as the analytics see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TicketRow {
    pub grid: Option<u32>,
    pub community: Option<u32>,
    pub open: bool,
    pub opened_at_ms: i64,
    pub deadline_ms: i64,
    pub dispatched_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub satisfaction: Option<i32>,
    pub pos_m: [f32; 2],
    pub priority: crate::protocol::Priority,
}

/// Oldest time any figure looks at: the start of today or of the hourly window.
pub fn window_start_ms(now_ms: TimestampMs) -> TimestampMs {
    local_day_start_ms(now_ms).min(hourly_start_ms(now_ms))
}

/// Start of the first hourly bucket (the 24th bucket holds the current hour).
pub fn hourly_start_ms(now_ms: TimestampMs) -> TimestampMs {
    now_ms.div_euclid(HOUR_MS) * HOUR_MS - (HOURS as i64 - 1) * HOUR_MS
}

/// The figures of one area (a grid, a community or the county).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    pub open: u32,
    pub overdue: u32,
    pub at_risk: u32,
    pub opened_today: u32,
    pub resolved_today: u32,
    pub median_response_secs: Option<f64>,
    pub median_resolution_secs: Option<f64>,
    /// Share of today's resolutions made by the deadline, 0–1.
    pub on_time_rate: Option<f64>,
    /// Mean rating of today's resolutions, 1–5.
    pub satisfaction: Option<f64>,
}

impl Figures {
    /// Ranking key: most overdue first, then at risk, then open.
    pub fn attention(&self) -> (u32, u32, u32) {
        (self.overdue, self.at_risk, self.open)
    }
}

/// Tickets opened and resolved in each of the last 24 hours (index 23: the current hour).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hourly {
    pub opened: [u32; HOURS],
    pub resolved: [u32; HOURS],
}

impl Default for Hourly {
    fn default() -> Self {
        Self {
            opened: [0; HOURS],
            resolved: [0; HOURS],
        }
    }
}

/// Everything the panels read, for one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Analytics {
    pub now_ms: TimestampMs,
    pub day_start_ms: TimestampMs,
    pub hourly_start_ms: TimestampMs,
    pub county: Figures,
    /// By slot in `pack.communities`.
    pub communities: Vec<Figures>,
    /// By slot in `pack.grids`.
    pub grids: Vec<Figures>,
    pub county_hourly: Hourly,
    /// By slot in `pack.communities`.
    pub community_hourly: Vec<Hourly>,
    /// Rows the figures were computed from.
    pub rows: usize,
}

impl Analytics {
    /// Community slots, neediest first (overdue, then at risk, then open; ties by slot).
    pub fn ranking(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.communities.len()).collect();
        order.sort_by(|&a, &b| {
            self.communities[b]
                .attention()
                .cmp(&self.communities[a].attention())
                .then(a.cmp(&b))
        });
        order
    }
}

/// Why the analytics could not be computed.
#[derive(Debug, thiserror::Error)]
#[error("analytics query failed: {0}")]
pub struct AnalyticsError(#[from] PolarsError);

/// "No grid / community" in the frame's slot columns.
const NO_SLOT: u32 = u32::MAX;
/// "Not yet" in the frame's time columns (compares below any real time).
const NEVER: i64 = i64::MIN;

/// The frame the queries run on. Missing values become sentinels ([`NO_SLOT`], [`NEVER`],
/// satisfaction 0) so every column is a plain buffer without a validity mask: cheaper to build
/// and to scan.
fn frame(cols: TicketColumns) -> PolarsResult<DataFrame> {
    let height = cols.len();
    let slots =
        |v: Vec<Option<u32>>| -> Vec<u32> { v.into_iter().map(|s| s.unwrap_or(NO_SLOT)).collect() };
    let times =
        |v: Vec<Option<i64>>| -> Vec<i64> { v.into_iter().map(|t| t.unwrap_or(NEVER)).collect() };
    let ratings: Vec<i32> = cols
        .satisfaction
        .into_iter()
        .map(|s| s.unwrap_or(0))
        .collect();
    DataFrame::new(
        height,
        vec![
            Column::new("grid".into(), slots(cols.grid)),
            Column::new("community".into(), slots(cols.community)),
            Column::new("open".into(), cols.open),
            Column::new("opened_at_ms".into(), cols.opened_at_ms),
            Column::new("deadline_ms".into(), cols.deadline_ms),
            Column::new("dispatched_at_ms".into(), times(cols.dispatched_at_ms)),
            Column::new("resolved_at_ms".into(), times(cols.resolved_at_ms)),
            Column::new("satisfaction".into(), ratings),
        ],
    )
}

/// Count of rows where a boolean expression holds (nulls count as false).
fn count_where(e: Expr) -> Expr {
    e.fill_null(lit(false)).cast(DataType::Int64).sum()
}

/// The aggregations every area gets, aliased to `Figures`' field names: counts over every
/// row, then the medians and means over today's rows (a much smaller frame).
fn figure_exprs(now_ms: i64, day_ms: i64) -> (Vec<Expr>, Vec<Expr>) {
    let open = || col("open");
    let deadline = || col("deadline_ms");
    let resolved_today = || {
        col("resolved_at_ms")
            .gt_eq(lit(day_ms))
            .fill_null(lit(false))
    };
    let dispatched_today = || {
        col("dispatched_at_ms")
            .gt_eq(lit(day_ms))
            .fill_null(lit(false))
    };
    let counts = vec![
        count_where(open()).alias("open"),
        count_where(open().and(deadline().lt(lit(now_ms)))).alias("overdue"),
        count_where(
            open()
                .and(deadline().gt_eq(lit(now_ms)))
                .and(deadline().lt_eq(lit(now_ms + AT_RISK_MS))),
        )
        .alias("at_risk"),
        count_where(col("opened_at_ms").gt_eq(lit(day_ms))).alias("opened_today"),
        count_where(resolved_today()).alias("resolved_today"),
    ];
    let today = vec![
        (col("dispatched_at_ms") - col("opened_at_ms"))
            .filter(dispatched_today())
            .cast(DataType::Float64)
            .median()
            .alias("median_response_ms"),
        (col("resolved_at_ms") - col("opened_at_ms"))
            .filter(resolved_today())
            .cast(DataType::Float64)
            .median()
            .alias("median_resolution_ms"),
        col("resolved_at_ms")
            .lt_eq(deadline())
            .filter(resolved_today())
            .cast(DataType::Float64)
            .mean()
            .alias("on_time_rate"),
        col("satisfaction")
            .filter(resolved_today().and(col("satisfaction").gt(lit(0))))
            .cast(DataType::Float64)
            .mean()
            .alias("satisfaction"),
    ];
    (counts, today)
}

/// Rows that today's medians and means look at.
fn today_rows(day_ms: i64) -> Expr {
    col("resolved_at_ms")
        .gt_eq(lit(day_ms))
        .or(col("dispatched_at_ms").gt_eq(lit(day_ms)))
        .fill_null(lit(false))
}

/// A count column's value (0 when the frame does not have the column).
fn u32_at(df: &DataFrame, name: &str, i: usize) -> PolarsResult<u32> {
    match df.column(name) {
        Ok(c) => Ok(c.get(i)?.extract::<i64>().unwrap_or(0) as u32),
        Err(_) => Ok(0),
    }
}

/// A statistic's value (None when null or the frame does not have the column).
fn f64_at(df: &DataFrame, name: &str, i: usize) -> PolarsResult<Option<f64>> {
    match df.column(name) {
        Ok(c) => Ok(c.get(i)?.extract::<f64>()),
        Err(_) => Ok(None),
    }
}

/// Counts from one pass, statistics from the other.
fn merge(counts: Figures, stats: Figures) -> Figures {
    Figures {
        median_response_secs: stats.median_response_secs,
        median_resolution_secs: stats.median_resolution_secs,
        on_time_rate: stats.on_time_rate,
        satisfaction: stats.satisfaction,
        ..counts
    }
}

fn figures_at(df: &DataFrame, i: usize) -> PolarsResult<Figures> {
    Ok(Figures {
        open: u32_at(df, "open", i)?,
        overdue: u32_at(df, "overdue", i)?,
        at_risk: u32_at(df, "at_risk", i)?,
        opened_today: u32_at(df, "opened_today", i)?,
        resolved_today: u32_at(df, "resolved_today", i)?,
        median_response_secs: f64_at(df, "median_response_ms", i)?.map(|v| v / 1000.0),
        median_resolution_secs: f64_at(df, "median_resolution_ms", i)?.map(|v| v / 1000.0),
        on_time_rate: f64_at(df, "on_time_rate", i)?,
        satisfaction: f64_at(df, "satisfaction", i)?,
    })
}

/// Figures per value of `key` (a slot column), into a vector of `n` (slots without tickets
/// keep the default).
fn figures_by(lf: LazyFrame, key: &str, n: usize, exprs: Vec<Expr>) -> PolarsResult<Vec<Figures>> {
    let df = lf
        .filter(col(key).lt(lit(NO_SLOT)))
        .group_by([col(key)])
        .agg(exprs)
        .collect()?;
    let mut out = vec![Figures::default(); n];
    let keys = df.column(key)?.u32()?;
    for (i, k) in keys.into_iter().enumerate() {
        if let Some(slot) = k.map(|k| k as usize).filter(|&k| k < n) {
            out[slot] = figures_at(&df, i)?;
        }
    }
    Ok(out)
}

/// The counts per grid and per community from one pass over every row (grouped by both: a
/// grid lies in one community), and the county's as their sum (rows outside any grid included).
fn counts_by_area(
    lf: LazyFrame,
    exprs: Vec<Expr>,
    communities: usize,
    grids: usize,
) -> PolarsResult<(Figures, Vec<Figures>, Vec<Figures>)> {
    let df = lf
        .group_by([col("grid"), col("community")])
        .agg(exprs)
        .collect()?;
    let mut county = Figures::default();
    let mut by_c = vec![Figures::default(); communities];
    let mut by_g = vec![Figures::default(); grids];
    let add = |into: &mut Figures, f: &Figures| {
        into.open += f.open;
        into.overdue += f.overdue;
        into.at_risk += f.at_risk;
        into.opened_today += f.opened_today;
        into.resolved_today += f.resolved_today;
    };
    let g_keys = df.column("grid")?.u32()?;
    let c_keys = df.column("community")?.u32()?;
    for (i, (g, c)) in g_keys.into_iter().zip(c_keys).enumerate() {
        let f = figures_at(&df, i)?;
        add(&mut county, &f);
        if let Some(slot) = g.map(|g| g as usize).filter(|&g| g < grids) {
            add(&mut by_g[slot], &f);
        }
        if let Some(slot) = c.map(|c| c as usize).filter(|&c| c < communities) {
            add(&mut by_c[slot], &f);
        }
    }
    Ok((county, by_c, by_g))
}

/// Tickets per (community, hour bucket) for the time column `at`.
fn hourly_counts(
    lf: LazyFrame,
    at: &str,
    start_ms: i64,
) -> PolarsResult<Vec<(Option<u32>, usize, u32)>> {
    let offset = || col(at) - lit(start_ms);
    let df = lf
        .filter(col(at).gt_eq(lit(start_ms)))
        .select([
            col("community"),
            // Whole hours since the start: the offset less its remainder is an exact multiple of
            // an hour, so the quotient is a whole number give or take rounding; +0.5 and
            // truncation make it exact.
            (((offset() - offset() % lit(HOUR_MS)).cast(DataType::Float64) / lit(HOUR_MS as f64)
                + lit(0.5))
            .cast(DataType::Int64))
            .alias("bucket"),
        ])
        .filter(col("bucket").lt(lit(HOURS as i64)))
        .group_by([col("community"), col("bucket")])
        .agg([len().cast(DataType::Int64).alias("n")])
        .collect()?;
    let communities = df.column("community")?.u32()?;
    let buckets = df.column("bucket")?.i64()?;
    let counts = df.column("n")?.i64()?;
    Ok(communities
        .into_iter()
        .zip(buckets)
        .zip(counts)
        .filter_map(|((c, b), n)| Some((c.filter(|&c| c != NO_SLOT), b? as usize, n? as u32)))
        .collect())
}

/// Compute every figure at `now_ms` for a county with `communities` and `grids` slots.
pub fn compute(
    cols: TicketColumns,
    now_ms: TimestampMs,
    communities: usize,
    grids: usize,
) -> Result<Analytics, AnalyticsError> {
    let rows = cols.len();
    let day_ms = local_day_start_ms(now_ms);
    let hour0 = hourly_start_ms(now_ms);
    let lf = frame(cols)?.lazy();
    let (counts, stats) = figure_exprs(now_ms, day_ms);
    // Today's rows, once, for the medians and means.
    let today = lf.clone().filter(today_rows(day_ms)).collect()?.lazy();

    let (county_counts, c_counts, g_counts) =
        counts_by_area(lf.clone(), counts, communities, grids)?;
    let county = merge(
        county_counts,
        figures_at(&today.clone().select(stats.clone()).collect()?, 0)?,
    );
    let with_stats = |counts: Vec<Figures>, key: &str, n: usize| -> PolarsResult<Vec<Figures>> {
        let s = figures_by(today.clone(), key, n, stats.clone())?;
        Ok(counts
            .into_iter()
            .zip(s)
            .map(|(c, s)| merge(c, s))
            .collect())
    };
    let by_community = with_stats(c_counts, "community", communities)?;
    let by_grid = with_stats(g_counts, "grid", grids)?;

    let mut county_hourly = Hourly::default();
    let mut community_hourly = vec![Hourly::default(); communities];
    for (at, resolved) in [("opened_at_ms", false), ("resolved_at_ms", true)] {
        for (c, bucket, n) in hourly_counts(lf.clone(), at, hour0)? {
            let pick = |h: &mut Hourly| {
                if resolved {
                    h.resolved[bucket] += n
                } else {
                    h.opened[bucket] += n
                }
            };
            pick(&mut county_hourly);
            if let Some(h) = c.and_then(|c| community_hourly.get_mut(c as usize)) {
                pick(h);
            }
        }
    }
    Ok(Analytics {
        now_ms,
        day_start_ms: day_ms,
        hourly_start_ms: hour0,
        county,
        communities: by_community,
        grids: by_grid,
        county_hourly,
        community_hourly,
        rows,
    })
}

/// Extract and compute in one go (tests, bench).
pub fn compute_live(live: &LiveState, now_ms: TimestampMs) -> Result<Analytics, AnalyticsError> {
    let county: &County = live.county();
    compute(
        TicketColumns::from_live(live, now_ms),
        now_ms,
        county.pack.communities.len(),
        county.pack.grids.len(),
    )
}
