//! Analytics off the frame: on change (at most twice a second, and at least once a second
//! while live, since deadlines pass without events) a snapshot of the ticket store (shared
//! chunks, kept up to date as events apply) goes to the async compute pool, which gathers the
//! rows and runs the polars queries; the result is swapped into [`Stats`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::tasks::{AsyncComputeTaskPool, Task, futures::check_ready};

use super::feed::WallModel;
use crate::analytics::store::gather;
use crate::analytics::{self, Analytics};
use crate::protocol::VolunteerStatus;

/// Shortest gap between two refreshes.
const MIN_GAP: Duration = Duration::from_millis(500);
/// Longest gap while live: deadlines pass, at-risk becomes overdue.
const MAX_GAP: Duration = Duration::from_secs(1);

/// Latest analytics and what the refresh costs.
#[derive(Resource, Default)]
pub struct Stats {
    pub latest: Option<Arc<Analytics>>,
    /// Bumped on every swap, so readers redraw only when it moves.
    pub generation: u64,
    /// Main-thread time of the last store snapshot, and pool time of the last refresh, ms.
    pub extract_ms: f64,
    pub compute_ms: f64,
    pub error: Option<String>,
    task: Option<Task<(Result<Analytics, analytics::AnalyticsError>, f64)>>,
    started: Option<Instant>,
    /// `WallModel::ticket_changes` at the last start.
    seen_changes: u64,
}

impl Stats {
    pub fn is_computing(&self) -> bool {
        self.task.is_some()
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
    let Some(live) = model.live() else {
        return Presence::default();
    };
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
    // A few Arc clones: the store is kept up to date as events apply.
    let chunks = model.ticket_store.snapshot();
    stats.extract_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let (communities, grids) = (
        model.county.pack.communities.len(),
        model.county.pack.grids.len(),
    );
    stats.task = Some(AsyncComputeTaskPool::get().spawn(async move {
        let t = Instant::now();
        let cols = gather(&chunks, now_ms);
        let r = analytics::compute(cols, now_ms, communities, grids);
        (r, t.elapsed().as_secs_f64() * 1000.0)
    }));
    stats.started = Some(Instant::now());
    stats.seen_changes = model.ticket_changes;
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Stats>()
        .add_systems(Update, refresh_stats.in_set(super::nav::WallSet::Model));
}
