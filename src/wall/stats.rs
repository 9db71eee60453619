//! Analytics off the frame: on change (at most twice a second, and at least once a second
//! while live, since deadlines pass without events) a snapshot of the ticket store (shared
//! chunks, kept up to date as events apply) and the counts read from its roll-ups go to the
//! async compute pool, which gathers the recent rows and runs the polars queries for the
//! medians; the result is swapped into [`Stats`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::tasks::{AsyncComputeTaskPool, Task, futures::check_ready};

use super::feed::WallModel;
use crate::analytics::{self, Analytics};
use crate::net::client::FeedCommand;
use crate::protocol::VolunteerStatus;

/// Shortest gap between two refreshes.
const MIN_GAP: Duration = Duration::from_millis(500);
/// Longest gap while live: deadlines pass, at-risk becomes overdue.
const MAX_GAP: Duration = Duration::from_secs(1);

/// Latest analytics and what the refresh costs.
#[derive(Resource, Default)]
pub struct Stats {
    pub latest: Option<Arc<Analytics>>,
    /// When the refresh that computed `latest` took its copy of the tickets.
    pub latest_from: Option<Instant>,
    /// Bumped on every swap, so readers redraw only when it moves.
    pub generation: u64,
    /// Main-thread time of the last store snapshot, and pool time of the last refresh, ms.
    pub extract_ms: f64,
    pub compute_ms: f64,
    pub error: Option<String>,
    /// The same figures at the same time yesterday and a week ago, from the gateway's history
    /// (None until read, or when the history does not reach back that far).
    pub yesterday: Option<Arc<Analytics>>,
    pub last_week: Option<Arc<Analytics>>,
    /// Volunteers and incidents at those moments.
    past_presence: [Option<Presence>; 2],
    task: Option<Task<(Result<Analytics, analytics::AnalyticsError>, f64)>>,
    /// The comparison's moments being read or computed, and when they were last asked for.
    past_tasks: Vec<Task<PastFigures>>,
    past_asked: Option<(Instant, [crate::protocol::TimestampMs; 2])>,
    /// Why a comparison is missing (the history does not reach back, the feed is down).
    pub past_missing: Option<String>,
    /// Answers (figures or why not) since the last request.
    past_answers: usize,
    /// The wall shows a past moment.
    replaying: bool,
    started: Option<Instant>,
    /// `WallModel::ticket_changes` at the last start.
    seen_changes: u64,
}

impl Stats {
    pub fn is_computing(&self) -> bool {
        self.task.is_some()
    }

    /// The figures at the same moment yesterday and last week, where read; none while a past
    /// moment is shown (they are the live moment's past, not the replayed one's).
    pub fn past(&self) -> [Option<&Analytics>; 2] {
        if self.replaying {
            return [None, None];
        }
        [self.yesterday.as_deref(), self.last_week.as_deref()]
    }

    /// Volunteers and incidents at the same moment yesterday and last week (as [`Self::past`]).
    pub fn past_presence(&self) -> [Option<Presence>; 2] {
        if self.replaying {
            return [None, None];
        }
        self.past_presence
    }

    /// The moments last asked for: the same time yesterday and a week ago.
    pub fn past_moments(&self) -> Option<[crate::protocol::TimestampMs; 2]> {
        self.past_asked.map(|(_, at)| at)
    }

    /// Whether the comparison's moments were asked for and not all answered yet.
    pub fn past_pending(&self) -> bool {
        self.past_asked.is_some() && self.past_answers < PAST_OFFSETS_MS.len()
    }
}

/// Volunteer and incident figures (cheap: walked each refresh on the main thread).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Presence {
    pub on_duty: usize,
    pub responding: usize,
    pub active_incidents: usize,
}

pub fn presence(model: &WallModel) -> Presence {
    model.live().map(presence_of).unwrap_or_default()
}

/// Volunteers on duty and responding, incidents in progress, in `live`.
pub fn presence_of(live: &crate::model::LiveState) -> Presence {
    let mut p = Presence::default();
    for v in &live.volunteers {
        match v.status {
            VolunteerStatus::Available => p.on_duty += 1,
            VolunteerStatus::Responding => {
                p.on_duty += 1;
                p.responding += 1;
            }
            VolunteerStatus::OffDuty => {}
        }
    }
    p.active_incidents = live.active_incidents().count();
    p
}

/// Poll the running query; start the next one when due.
pub fn refresh_stats(model: Res<WallModel>, mut stats: ResMut<Stats>) {
    if let Some(task) = stats.task.as_mut() {
        let Some((result, ms)) = check_ready(task) else {
            return;
        };
        stats.task = None;
        stats.compute_ms = ms;
        match result {
            Ok(a) => {
                stats.latest = Some(Arc::new(a));
                stats.latest_from = stats.started;
                stats.generation += 1;
                stats.error = None;
            }
            Err(e) => {
                warn!("{e}");
                stats.error = Some(e.to_string());
            }
        }
    }
    if model.live().is_none() {
        return;
    }
    let since = stats.started.map(|t| t.elapsed());
    let changed = model.ticket_changes != stats.seen_changes;
    let due = match since {
        None => true,
        Some(gap) => gap >= MAX_GAP || (changed && gap >= MIN_GAP),
    };
    if !due {
        return;
    }
    let now_ms = model.now_ms();
    let t0 = Instant::now();
    let (communities, grids) = (
        model.county.pack.communities.len(),
        model.county.pack.grids.len(),
    );
    // The counts read from the roll-ups and a few Arc clones: the store is kept up to date as
    // events apply.
    let refresh = model.ticket_store.refresh_at(now_ms, communities, grids);
    stats.extract_ms = t0.elapsed().as_secs_f64() * 1000.0;
    stats.task = Some(AsyncComputeTaskPool::get().spawn(async move {
        let t = Instant::now();
        let r = refresh.run();
        (r, t.elapsed().as_secs_f64() * 1000.0)
    }));
    stats.started = Some(Instant::now());
    stats.seen_changes = model.ticket_changes;
}

/// A comparison's figures as computed: which, for what moment, and what came.
type PastFigures = (
    Past,
    crate::protocol::TimestampMs,
    Result<(Analytics, Presence), String>,
);

/// Which past moment a comparison reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Past {
    Yesterday,
    LastWeek,
}

/// How far back each comparison looks.
pub const PAST_OFFSETS_MS: [(Past, crate::protocol::TimestampMs); 2] = [
    (Past::Yesterday, 24 * 3_600_000),
    (Past::LastWeek, 7 * 24 * 3_600_000),
];
/// How often the past figures are read again (the comparison moves with the clock).
const PAST_REFRESH: Duration = Duration::from_secs(300);

/// Read the same moment yesterday and last week from the gateway's history (every five
/// minutes while live) and compute their figures on the task pool, as for the present.
pub fn refresh_past(
    mut model: ResMut<WallModel>,
    channel: Option<Res<super::feed::FeedChannel>>,
    mut stats: ResMut<Stats>,
) {
    stats.replaying = model.replay.is_some();
    // Answers computed.
    let mut i = 0;
    while i < stats.past_tasks.len() {
        let Some((which, at, result)) = check_ready(&mut stats.past_tasks[i]) else {
            i += 1;
            continue;
        };
        drop(stats.past_tasks.swap_remove(i));
        if !stats
            .past_moments()
            .is_some_and(|asked| asked.contains(&at))
        {
            continue; // for an earlier request
        }
        let k = which as usize;
        let slot = match which {
            Past::Yesterday => &mut stats.yesterday,
            Past::LastWeek => &mut stats.last_week,
        };
        match result {
            Ok((a, p)) => {
                *slot = Some(Arc::new(a));
                stats.past_presence[k] = Some(p);
            }
            Err(why) => {
                *slot = None;
                stats.past_presence[k] = None;
                debug!("figures of {which:?}: {why}");
                stats.past_missing = Some(why);
            }
        }
        stats.past_answers += 1;
        stats.generation += 1;
    }
    // Answers read: the state is built and its figures computed off the frame.
    for (at, moment) in std::mem::take(&mut model.past_moments) {
        debug!(
            "figures: the moment {at} came: {}",
            moment
                .as_ref()
                .map_or_else(|e| e.clone(), |m| format!("{} tickets", m.tickets.len()))
        );
        let asked = stats.past_asked.map(|(_, a)| a).unwrap_or_default();
        let Some(&(which, _)) = PAST_OFFSETS_MS
            .iter()
            .zip(asked)
            .find(|(_, a)| *a == at)
            .map(|(p, _)| p)
        else {
            continue; // asked before the last request
        };
        let county = Arc::clone(&model.county);
        stats
            .past_tasks
            .push(AsyncComputeTaskPool::get().spawn(async move {
                let result = moment.and_then(|mut m| {
                    let live = m.take_state(&county)?;
                    let a = analytics::compute_live(&live, at).map_err(|e| e.to_string())?;
                    Ok((a, presence_of(&live)))
                });
                (which, at, result)
            }));
    }
    let live_now = model.synced_at.is_some() && model.replay.is_none() && model.live().is_some();
    let now = model.now_ms();
    // Every five minutes, and at once when the county's day turns (just after midnight
    // "today" starts again, and so must yesterday's "today").
    let day = crate::model::sla::local_day_start_ms;
    let due = stats.past_asked.is_none_or(|(t, at)| {
        t.elapsed() >= PAST_REFRESH || day(at[0] + PAST_OFFSETS_MS[0].1) != day(now)
    });
    let Some(channel) = channel.filter(|_| live_now && due) else {
        return;
    };
    let at = PAST_OFFSETS_MS.map(|(_, back)| now - back);
    debug!("figures: reading yesterday's and last week's moments {at:?}");
    stats.past_asked = Some((Instant::now(), at));
    stats.past_answers = 0;
    stats.past_missing = None;
    for t in at {
        if channel.commands.try_send(FeedCommand::Past(t)).is_err() {
            // The feed is busy: counted as answered (without figures) until the next round.
            stats.past_answers += 1;
            stats.past_missing = Some("the feed is busy; asked again in five minutes".into());
        }
    }
}

/// Note the wall's first cold start: the first frame whose update has the live state and the
/// figures computed from it, measured from the websocket opening (the frame is drawn next).
pub fn note_cold_start(mut model: ResMut<WallModel>, stats: Res<Stats>) {
    if model.cold_start.is_some() {
        return;
    }
    let (Some(connected), Some(synced), Some(figures)) =
        (model.connected_at, model.synced_at, stats.latest_from)
    else {
        return;
    };
    if figures >= synced && synced >= connected {
        let took = connected.elapsed();
        info!(
            "cold start: {:.0} ms from connecting to a frame with the live state of {} tickets and its figures (the refresh took {:.0} ms)",
            took.as_secs_f64() * 1000.0,
            model.live().map_or(0, |l| l.tickets.len()),
            stats.compute_ms,
        );
        model.cold_start = Some(took);
        // The load's decoded chunks, the snapshot the embedded gateway encoded and the first
        // refresh's rows are freed by now: their pages go back to the system.
        crate::net::metrics::trim_heap_in_background("the cold start");
    }
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Stats>().add_systems(
        Update,
        (refresh_stats, refresh_past).in_set(super::nav::WallSet::Model),
    );
    app.add_systems(Last, note_cold_start);
}
