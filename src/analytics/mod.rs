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
//! - *on site*: reported → first on-site step, over tickets that reached the site today;
//!   *within the pledge*: the share of today's on-site repairs (报修) reached within
//!   [`PLEDGE_MS`] (the county's 20-minute repair pledge).
//! - *hourly*: 24 one-hour buckets ending with the current hour: tickets opened / resolved in
//!   each (resolved on time, repairs on site and within the pledge: the KPI sparklines).
//! - *mix*: tickets opened by source and by category, today and over the hourly window.
//! - *assessment score* (0–100, [`Figures::score`]): 50 % on-time rate, 30 % satisfaction
//!   ((rating − 1) / 4), 20 % response (1 − median response / 60 min, at least 0); a part
//!   without data today is left out and the others weighted up; no part, no score.

pub mod export;
pub mod reference;
pub mod rollup;
pub mod store;

use polars::prelude::*;

use crate::model::sla::local_day_start_ms;
use crate::model::{County, LiveState};
use crate::protocol::{TicketCategory, TicketSource, TimestampMs};

/// The county's repair pledge: on site within 20 minutes of the report.
pub const PLEDGE_MS: i64 = 20 * 60_000;
/// Response time that scores nothing in the assessment.
pub const SCORE_RESPONSE_MS: f64 = 3_600_000.0;
/// Weights of the assessment score's parts: on time, satisfaction, response.
pub const SCORE_WEIGHTS: [f64; 3] = [0.5, 0.3, 0.2];
/// Sources and categories, in the order of `TicketSource::ALL` / `TicketCategory::ALL`.
pub const SOURCES: usize = TicketSource::ALL.len();
pub const CATEGORIES: usize = TicketCategory::ALL.len();

/// Hours in the sparkline series.
pub const HOURS: usize = 24;
pub(crate) const HOUR_MS: i64 = 3_600_000;

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
    /// First on-site step.
    pub onsite_at_ms: Vec<Option<i64>>,
    /// Index in `TicketCategory::ALL` / `TicketSource::ALL`.
    pub category: Vec<u8>,
    pub source: Vec<u8>,
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
        self.onsite_at_ms.push(row.onsite_at_ms);
        self.category.push(row.category as u8);
        self.source.push(row.source as u8);
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> TicketRow {
        TicketRow {
            grid: self.grid[i],
            community: self.community[i],
            open: self.open[i],
            opened_at_ms: self.opened_at_ms[i],
            deadline_ms: self.deadline_ms[i],
            dispatched_at_ms: self.dispatched_at_ms[i],
            resolved_at_ms: self.resolved_at_ms[i],
            satisfaction: self.satisfaction[i],
            pos_m: self.pos_m[i],
            priority: self.priority[i],
            onsite_at_ms: self.onsite_at_ms[i],
            category: TicketCategory::ALL[usize::from(self.category[i])],
            source: TicketSource::ALL[usize::from(self.source[i])],
        }
    }

    /// Append rows `rows` of `other`, column by column (a filtered copy without building
    /// each row).
    pub fn extend_rows(&mut self, other: &Self, rows: &[usize]) {
        fn take<T: Copy>(into: &mut Vec<T>, from: &[T], rows: &[usize]) {
            into.extend(rows.iter().map(|&i| from[i]));
        }
        take(&mut self.grid, &other.grid, rows);
        take(&mut self.community, &other.community, rows);
        take(&mut self.open, &other.open, rows);
        take(&mut self.opened_at_ms, &other.opened_at_ms, rows);
        take(&mut self.deadline_ms, &other.deadline_ms, rows);
        take(&mut self.dispatched_at_ms, &other.dispatched_at_ms, rows);
        take(&mut self.resolved_at_ms, &other.resolved_at_ms, rows);
        take(&mut self.satisfaction, &other.satisfaction, rows);
        take(&mut self.pos_m, &other.pos_m, rows);
        take(&mut self.priority, &other.priority, rows);
        take(&mut self.onsite_at_ms, &other.onsite_at_ms, rows);
        take(&mut self.category, &other.category, rows);
        take(&mut self.source, &other.source, rows);
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
    pub onsite_at_ms: Option<i64>,
    pub category: TicketCategory,
    pub source: TicketSource,
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
    /// Tickets that reached the site today; median report → on site over them.
    pub onsite_today: u32,
    pub median_onsite_secs: Option<f64>,
    /// Repairs that reached the site today, and of them those within [`PLEDGE_MS`].
    pub repairs_onsite_today: u32,
    pub repairs_within_pledge: u32,
}

impl Figures {
    /// Share of today's on-site repairs reached within the pledge, 0–1.
    pub fn pledge_rate(&self) -> Option<f64> {
        (self.repairs_onsite_today > 0)
            .then(|| f64::from(self.repairs_within_pledge) / f64::from(self.repairs_onsite_today))
    }

    /// The assessment score, 0–100 (see the module's definitions); None without any part.
    pub fn score(&self) -> Option<f64> {
        score(
            self.on_time_rate,
            self.satisfaction,
            self.median_response_secs,
        )
    }

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
    /// Of `resolved`, by the deadline.
    pub on_time: [u32; HOURS],
    /// Repairs reaching the site in each hour, and of them within the pledge.
    pub repairs_onsite: [u32; HOURS],
    pub repairs_within_pledge: [u32; HOURS],
    /// Resolutions rated in each hour, and the sum of their ratings.
    pub rated: [u32; HOURS],
    pub rating_sum: [u32; HOURS],
    /// Median report → first dispatch over tickets first dispatched in each hour, and report →
    /// on site over tickets on site in it, whole seconds.
    pub median_response_secs: [Option<u32>; HOURS],
    pub median_onsite_secs: [Option<u32>; HOURS],
}

impl Default for Hourly {
    fn default() -> Self {
        Self {
            opened: [0; HOURS],
            resolved: [0; HOURS],
            on_time: [0; HOURS],
            repairs_onsite: [0; HOURS],
            repairs_within_pledge: [0; HOURS],
            rated: [0; HOURS],
            rating_sum: [0; HOURS],
            median_response_secs: [None; HOURS],
            median_onsite_secs: [None; HOURS],
        }
    }
}

/// The assessment score of its parts (see the module's definitions): the on-time rate (0–1),
/// the mean rating (1–5) and the median response (seconds), each where known.
pub fn score(on_time: Option<f64>, rating: Option<f64>, response_secs: Option<f64>) -> Option<f64> {
    let parts = [
        on_time,
        rating.map(|s| ((s - 1.0) / 4.0).clamp(0.0, 1.0)),
        response_secs.map(|r| (1.0 - r * 1000.0 / SCORE_RESPONSE_MS).clamp(0.0, 1.0)),
    ];
    let (sum, weight) = parts
        .iter()
        .zip(SCORE_WEIGHTS)
        .filter_map(|(p, w)| p.map(|p| (p * w, w)))
        .fold((0.0, 0.0), |(s, t), (p, w)| (s + p, t + w));
    (weight > 0.0).then(|| 100.0 * sum / weight)
}

impl Hourly {
    /// Each hour's mean rating, on-time rate and median response folded into its score.
    pub fn score_series(&self) -> [Option<f64>; HOURS] {
        std::array::from_fn(|i| {
            let share = |n: u32, d: u32| (d > 0).then(|| f64::from(n) / f64::from(d));
            score(
                share(self.on_time[i], self.resolved[i]),
                (self.rated[i] > 0)
                    .then(|| f64::from(self.rating_sum[i]) / f64::from(self.rated[i])),
                self.median_response_secs[i].map(f64::from),
            )
        })
    }
}

/// One lane of [`Hourly`] (the queries fill the lanes in turn).
pub type Lane = fn(&mut Hourly) -> &mut [u32; HOURS];

impl Hourly {
    /// The most tickets opened or resolved in any one hour (a chart's top).
    pub fn busiest_hour(&self) -> u32 {
        self.opened
            .iter()
            .chain(&self.resolved)
            .copied()
            .max()
            .unwrap_or(0)
    }
}

/// Tickets opened by source and by category: today, and over the hourly window (24 h).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mix {
    pub today_by_source: [u32; SOURCES],
    pub today_by_category: [u32; CATEGORIES],
    pub day_by_source: [u32; SOURCES],
    pub day_by_category: [u32; CATEGORIES],
}

/// How communities are ordered in the ranking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankOrder {
    /// Neediest first: overdue, then at risk, then open.
    #[default]
    Attention,
    /// The assessment: highest score first, communities without one last.
    Score,
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
    pub county_mix: Mix,
    /// By slot in `pack.communities`.
    pub community_mix: Vec<Mix>,
    /// The county's overdue tickets at the end of each hourly bucket (the last: now).
    pub overdue_hourly: [u32; HOURS],
    /// Rows the figures were computed from.
    pub rows: usize,
    /// Of them, the rows the queries read ([`is_recent`]).
    pub queried: usize,
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

    /// Community slots in `order` (ties by slot).
    pub fn ranking_by(&self, order: RankOrder) -> Vec<usize> {
        match order {
            RankOrder::Attention => self.ranking(),
            RankOrder::Score => {
                let mut slots: Vec<usize> = (0..self.communities.len()).collect();
                let key = |i: usize| self.communities[i].score().unwrap_or(-1.0);
                slots.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
                slots
            }
        }
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
    let onsite = times(cols.onsite_at_ms);
    let small = |v: Vec<u8>| -> Vec<u32> { v.into_iter().map(u32::from).collect() };
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
            Column::new("onsite_at_ms".into(), onsite),
            Column::new("category".into(), small(cols.category)),
            Column::new("source".into(), small(cols.source)),
        ],
    )
}

/// The medians and means every area gets over today's rows, aliased to `Figures`' field names
/// (the counts come from the roll-ups).
fn stat_exprs(day_ms: i64) -> Vec<Expr> {
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
    let onsite_today = || col("onsite_at_ms").gt_eq(lit(day_ms));
    vec![
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
        (col("onsite_at_ms") - col("opened_at_ms"))
            .filter(onsite_today())
            .cast(DataType::Float64)
            .median()
            .alias("median_onsite_ms"),
    ]
}

/// Rows that today's medians and means look at.
fn today_rows(day_ms: i64) -> Expr {
    col("resolved_at_ms")
        .gt_eq(lit(day_ms))
        .or(col("dispatched_at_ms").gt_eq(lit(day_ms)))
        .or(col("onsite_at_ms").gt_eq(lit(day_ms)))
        .fill_null(lit(false))
}

/// A statistic's value (None when null or the frame does not have the column).
fn f64_at(df: &DataFrame, name: &str, i: usize) -> PolarsResult<Option<f64>> {
    match df.column(name) {
        Ok(c) => Ok(c.get(i)?.extract::<f64>()),
        Err(_) => Ok(None),
    }
}

/// Counts from the roll-ups, statistics from the queries.
fn merge(counts: Figures, stats: Figures) -> Figures {
    Figures {
        median_response_secs: stats.median_response_secs,
        median_resolution_secs: stats.median_resolution_secs,
        on_time_rate: stats.on_time_rate,
        satisfaction: stats.satisfaction,
        median_onsite_secs: stats.median_onsite_secs,
        ..counts
    }
}

/// The medians and means of row `i` of a query's result.
fn stats_at(df: &DataFrame, i: usize) -> PolarsResult<Figures> {
    Ok(Figures {
        median_response_secs: f64_at(df, "median_response_ms", i)?.map(|v| v / 1000.0),
        median_resolution_secs: f64_at(df, "median_resolution_ms", i)?.map(|v| v / 1000.0),
        on_time_rate: f64_at(df, "on_time_rate", i)?,
        satisfaction: f64_at(df, "satisfaction", i)?,
        median_onsite_secs: f64_at(df, "median_onsite_ms", i)?.map(|v| v / 1000.0),
        ..Figures::default()
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
            out[slot] = stats_at(&df, i)?;
        }
    }
    Ok(out)
}

/// The rows where `only` holds with `at` in the hourly window: community, hour bucket and
/// `value`.
fn bucketed(
    lf: LazyFrame,
    at: &str,
    only: Expr,
    start_ms: i64,
    value: Expr,
) -> PolarsResult<LazyFrame> {
    let offset = || col(at) - lit(start_ms);
    Ok(lf
        .filter(col(at).gt_eq(lit(start_ms)).and(only))
        .select([
            value.alias("value"),
            col("community"),
            // Whole hours since the start: the offset less its remainder is an exact multiple of
            // an hour, so the quotient is a whole number give or take rounding; +0.5 and
            // truncation make it exact.
            (((offset() - offset() % lit(HOUR_MS)).cast(DataType::Float64) / lit(HOUR_MS as f64)
                + lit(0.5))
            .cast(DataType::Int64))
            .alias("bucket"),
        ])
        .filter(col("bucket").lt(lit(HOURS as i64))))
}

/// The median of `value` (ms) per hour bucket, whole seconds: for the county (over every
/// community) and per community.
type HourlyMedians = (Vec<(usize, u32)>, Vec<(u32, usize, u32)>);
fn hourly_medians(
    lf: LazyFrame,
    at: &str,
    value: Expr,
    start_ms: i64,
) -> PolarsResult<HourlyMedians> {
    let rows = bucketed(lf, at, lit(true), start_ms, value.cast(DataType::Float64))?;
    let secs = |v: Option<f64>| v.map(|ms| (ms / 1000.0).round() as u32);
    let county = rows
        .clone()
        .group_by([col("bucket")])
        .agg([col("value").median().alias("m")])
        .collect()?;
    let by_county = county
        .column("bucket")?
        .i64()?
        .into_iter()
        .zip(county.column("m")?.f64()?)
        .filter_map(|(b, m)| Some((b? as usize, secs(m)?)))
        .collect();
    let comm = rows
        .filter(col("community").lt(lit(NO_SLOT)))
        .group_by([col("community"), col("bucket")])
        .agg([col("value").median().alias("m")])
        .collect()?;
    let by_comm = comm
        .column("community")?
        .u32()?
        .into_iter()
        .zip(comm.column("bucket")?.i64()?)
        .zip(comm.column("m")?.f64()?)
        .filter_map(|((c, b), m)| Some((c?, b? as usize, secs(m)?)))
        .collect();
    Ok((by_county, by_comm))
}

/// Whether a row has anything the queries read at `now_ms`: a dispatch, an arrival on site or
/// a resolution within the window (today's medians and means, the hourly medians). Every
/// count comes from the roll-ups.
pub fn is_recent(
    dispatched: Option<i64>,
    onsite: Option<i64>,
    resolved: Option<i64>,
    since: i64,
) -> bool {
    [dispatched, onsite, resolved]
        .into_iter()
        .any(|t| t.is_some_and(|t| t >= since))
}

/// The rows of `cols` that the queries read at `now_ms` ([`is_recent`]).
pub fn recent_rows(cols: &TicketColumns, now_ms: TimestampMs) -> TicketColumns {
    let mut out = TicketColumns::default();
    push_recent(cols, window_start_ms(now_ms), &mut out);
    out
}

/// Append the rows of `cols` with something since `since` to `out`.
pub(crate) fn push_recent(cols: &TicketColumns, since: TimestampMs, out: &mut TicketColumns) {
    let rows: Vec<usize> = (0..cols.len())
        .filter(|&i| {
            is_recent(
                cols.dispatched_at_ms[i],
                cols.onsite_at_ms[i],
                cols.resolved_at_ms[i],
                since,
            )
        })
        .collect();
    out.extend_rows(cols, &rows);
}

/// Compute every figure at `now_ms` for a county with `communities` and `grids` slots: the
/// counts rolled up from every row, the medians and means queried over the recent ones.
pub fn compute(
    cols: TicketColumns,
    now_ms: TimestampMs,
    communities: usize,
    grids: usize,
) -> Result<Analytics, AnalyticsError> {
    let rolled = rollup::Rollup::from_columns([&cols]).read(now_ms, communities, grids);
    finish(rolled, recent_rows(&cols, now_ms))
}

/// The figures from the counts read at a moment and the rows with something recent to say
/// ([`is_recent`] at that moment): today's medians and means per area, and the hourly medians.
pub fn finish(rolled: Analytics, recent: TicketColumns) -> Result<Analytics, AnalyticsError> {
    let now_ms = rolled.now_ms;
    let (communities, grids) = (rolled.communities.len(), rolled.grids.len());
    let day_ms = local_day_start_ms(now_ms);
    let hour0 = hourly_start_ms(now_ms);
    let queried = recent.len();
    let lf = frame(recent)?.lazy();
    let stats = stat_exprs(day_ms);
    // Today's rows, once, for the medians and means.
    let today = lf.clone().filter(today_rows(day_ms)).collect()?.lazy();
    let county = merge(
        rolled.county,
        stats_at(&today.clone().select(stats.clone()).collect()?, 0)?,
    );
    let with_stats = |counts: Vec<Figures>, key: &str, n: usize| -> PolarsResult<Vec<Figures>> {
        let s = figures_by(today.clone(), key, n, stats.clone())?;
        Ok(counts
            .into_iter()
            .zip(s)
            .map(|(c, s)| merge(c, s))
            .collect())
    };
    let by_community = with_stats(rolled.communities, "community", communities)?;
    let by_grid = with_stats(rolled.grids, "grid", grids)?;

    let mut county_hourly = rolled.county_hourly;
    let mut community_hourly = rolled.community_hourly;
    type MedianLane = fn(&mut Hourly) -> &mut [Option<u32>; HOURS];
    let medians: [(&str, MedianLane); 2] = [
        ("dispatched_at_ms", |h| &mut h.median_response_secs),
        ("onsite_at_ms", |h| &mut h.median_onsite_secs),
    ];
    for (at, lane) in medians {
        let (county, by_comm) =
            hourly_medians(lf.clone(), at, col(at) - col("opened_at_ms"), hour0)?;
        for (bucket, s) in county {
            lane(&mut county_hourly)[bucket] = Some(s);
        }
        for (c, bucket, s) in by_comm {
            if let Some(h) = community_hourly.get_mut(c as usize) {
                lane(h)[bucket] = Some(s);
            }
        }
    }
    Ok(Analytics {
        county,
        communities: by_community,
        grids: by_grid,
        county_hourly,
        community_hourly,
        queried,
        ..rolled
    })
}

/// The ends of the hourly buckets: each hour's end, the current one's now.
pub fn hour_ends(now_ms: TimestampMs, hour0: TimestampMs) -> [TimestampMs; HOURS] {
    std::array::from_fn(|h| {
        if h + 1 == HOURS {
            now_ms
        } else {
            hour0 + (h as i64 + 1) * HOUR_MS
        }
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
