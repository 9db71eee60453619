//! The wall's feed: the link to the gateway (`net::client::spawn_feed`: a named thread running
//! tokio connects, decodes off the main thread, reconnects with backoff and resume, and hands
//! messages through a bounded channel); one system drains it under a time budget into the
//! wall's model, `WallModel` — the state shown, live or a past moment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use tokio::sync::mpsc;

use crate::model::{County, LiveState};
pub use crate::net::client::{
    AFTER_ACTION_MAX_MS, FeedCommand, FeedItem, FeedTarget, HistoryMoment, Link, PLAYBACK_FETCH_MS,
    ServerClock, backoff, spawn_feed,
};
use crate::net::client::{Handled, Mirror};
use crate::protocol::TimestampMs;
use crate::protocol::session::{Seq, ServerMsg};

/// Latency stamps kept between frames (the probe drains them every frame).
const MAX_LATENCY_STAMPS: usize = 1 << 20;
/// Time the drain system may always spend per frame…
pub const DRAIN_BUDGET: Duration = Duration::from_millis(6);
/// …or this share of the last frame when frames are slow (a software renderer, a 4K wall at
/// city scale), so the feed is applied as fast as it arrives instead of queueing behind the
/// renderer…
const DRAIN_SHARE: f64 = 0.25;
/// …but never more than this.
const DRAIN_BUDGET_MAX: Duration = Duration::from_millis(250);

/// The drain budget for a frame after one that took `last_frame`.
pub fn drain_budget(last_frame: Duration) -> Duration {
    last_frame
        .mul_f64(DRAIN_SHARE)
        .clamp(DRAIN_BUDGET, DRAIN_BUDGET_MAX)
}
/// Heartbeats missed before the wall calls the feed stale.
pub const STALE_AFTER_HEARTBEATS: u32 = 2;

/// Alerts kept for the ticker.
pub const MAX_ALERTS: usize = 64;

/// One line of the alert ticker.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub at_ms: TimestampMs,
    pub text: String,
    pub focus: super::nav::Focus,
    /// New incidents pre-empt the kiosk tour.
    pub incident_opened: bool,
}

impl Alert {
    /// The alert an event raises, if any.
    pub fn of(e: &crate::protocol::Event) -> Option<Self> {
        use super::nav::Focus;
        use crate::protocol::{Event, Priority};
        let (at_ms, text, focus, incident_opened) = match e {
            Event::IncidentOpened(i) => (
                i.at_ms,
                format!(
                    "{}{} {}",
                    if i.drill { "演练 " } else { "" },
                    i.kind.label_zh(),
                    i.title
                ),
                Focus::Incident(i.incident_id),
                true,
            ),
            Event::IncidentClosed(i) => (
                i.at_ms,
                format!("事件 #{} 已处置 closed", i.incident_id),
                Focus::Incident(i.incident_id),
                false,
            ),
            Event::TicketEscalated(t) => (
                t.at_ms,
                format!("工单 #{} 升级 escalated: {}", t.ticket_id, t.reason),
                Focus::Ticket(t.ticket_id),
                false,
            ),
            Event::TicketOpened(t) if t.priority == Priority::Urgent => (
                t.at_ms,
                format!("紧急工单 urgent #{} {}", t.ticket_id, t.category.label_zh()),
                Focus::Ticket(t.ticket_id),
                false,
            ),
            _ => return None,
        };
        Some(Self {
            at_ms,
            text,
            focus,
            incident_opened,
        })
    }
}

/// What the operator sees about the feed.
#[derive(Clone, Debug, PartialEq)]
pub enum FeedState {
    Connecting,
    Syncing,
    Live,
    Reconnecting {
        since: Instant,
        attempt: u32,
        error: String,
    },
}

/// The wall's model and everything the feed tells about it.
#[derive(Resource)]
pub struct WallModel {
    pub county: Arc<County>,
    pub mirror: Mirror,
    pub state: FeedState,
    pub clock: Option<ServerClock>,
    /// Local time of the last message; "stale since" is measured from it.
    pub last_message: Option<Instant>,
    /// Server time of the last message: the banner says the picture is "as of" then.
    pub last_data_ms: Option<TimestampMs>,
    pub heartbeat: Duration,
    /// Counts ticket/incident events and snapshots: the analytics refresh when it moves.
    pub ticket_changes: u64,
    /// The tickets as the analytics read them (and the grid panel finds a grid's open
    /// tickets in), kept up to date event by event.
    pub ticket_store: crate::analytics::store::TicketStore,
    /// Ticket changes the heatmap has not taken in yet.
    /// What the state shown learnt since the last frame, for `drain_feed` to hand on as a
    /// message (kept only once a drain with listeners runs: a headless client keeps none).
    pub learnt: super::nav::Learnt,
    /// Set by the first drain that has listeners for [`super::nav::Learnt`].
    pub keep_learnt: bool,
    /// Volunteer fixes since the last frame: (roster index, fix time ms).
    pub moved: Vec<(usize, TimestampMs)>,
    pub volunteers_dirty: bool,
    pub messages: u64,
    pub events: u64,
    pub dropped: u64,
    pub last_problem: Option<String>,
    /// Set while the gateway serves a county this wall was not built for (another `--scale`):
    /// its data is not applied, and the banner says how to fix it.
    pub incompatible: Option<String>,
    /// When set (latency measurement), the stamps of the volunteer fixes applied since the
    /// last frame.
    pub latency_stamps: Option<Vec<TimestampMs>>,
    /// Recent alerts for the ticker, newest last (new incidents, escalations, urgent tickets).
    pub alerts: std::collections::VecDeque<Alert>,
    /// Set once a snapshot has been loaded.
    pub synced_at: Option<Instant>,
    /// When the feed's websocket last opened.
    pub connected_at: Option<Instant>,
    /// Build a snapshot's model on a worker (the wall's frames: [`drain_with_budget`] takes
    /// it in), not in [`apply_item`] (the callers that pump the feed themselves).
    prepare_off_thread: bool,
    /// A snapshot's model and indexes being built on a worker.
    preparing: Option<bevy::tasks::Task<Result<Prepared, crate::net::client::MirrorError>>>,
    /// The analytics store built with it, for the load to take.
    prepared: Option<crate::analytics::store::TicketStore>,
    /// The first cold start: from the websocket opening to the end of the first frame update
    /// with the live state and the figures computed from it (`stats::note_cold_start`).
    pub cold_start: Option<Duration>,
    /// The gateway says its backbone (NATS) has been unreachable since this feed time.
    pub backbone_down_since_ms: Option<TimestampMs>,
    /// The gateway says its feed is simulated (hello): the top bar says so, always.
    pub simulated: bool,
    /// The operator's commands and the gateway's answers.
    pub outbox: super::outbox::Outbox,
    /// The timeline: a past moment shown instead of the live state (which goes on being
    /// applied underneath), and the moment asked for and not yet received.
    pub replay: Option<Replay>,
    pub replay_pending: Option<TimestampMs>,
    /// An incident's after-action shown over the replay (tracks, arrivals), and the incident
    /// asked for and not yet received.
    pub after_action: Option<Box<crate::model::after_action::AfterAction>>,
    pub after_action_pending: Option<crate::protocol::IncidentId>,
    /// Past moments read for the figures' comparison, waiting for the analytics to take them.
    pub past_moments: Vec<(TimestampMs, Result<Box<HistoryMoment>, String>)>,
}

/// A past moment the wall shows.
pub struct Replay {
    pub at_ms: TimestampMs,
    pub seq: Seq,
    pub state: LiveState,
    /// Events after the moment not yet played, and the model time they reach.
    pub events: std::collections::VecDeque<(Seq, crate::protocol::Event)>,
    pub events_to_ms: TimestampMs,
    /// Playback speed (feed time per real time); 0 paused.
    pub speed: f64,
    /// Where the history begins.
    pub first_ms: TimestampMs,
}

impl WallModel {
    pub fn new(county: Arc<County>) -> Self {
        Self {
            mirror: Mirror::new(Arc::clone(&county)),
            county,
            state: FeedState::Connecting,
            clock: None,
            last_message: None,
            last_data_ms: None,
            heartbeat: Duration::from_secs(5),
            ticket_changes: 0,
            ticket_store: Default::default(),
            learnt: Default::default(),
            keep_learnt: false,
            moved: Vec::new(),
            volunteers_dirty: true,
            messages: 0,
            events: 0,
            dropped: 0,
            last_problem: None,
            alerts: std::collections::VecDeque::new(),
            incompatible: None,
            latency_stamps: None,
            synced_at: None,
            connected_at: None,
            cold_start: None,
            prepare_off_thread: false,
            preparing: None,
            prepared: None,
            backbone_down_since_ms: None,
            simulated: false,
            outbox: Default::default(),
            replay: None,
            replay_pending: None,
            after_action: None,
            after_action_pending: None,
            past_moments: Vec::new(),
        }
    }

    /// Fold `history` (from just before incident `id` opened) into its after-action.
    pub fn fold_after_action(
        &self,
        id: crate::protocol::IncidentId,
        history: HistoryMoment,
    ) -> Result<crate::model::after_action::AfterAction, String> {
        let mut history = history;
        let start = history.take_state(&self.county)?;
        let mut b = crate::model::after_action::Builder::new(&start, id);
        for (_, e) in &history.events {
            b.event(e);
        }
        b.finish()
            .ok_or_else(|| format!("incident {id} is not in the gateway's history"))
    }

    /// The state the wall shows: a past moment on the timeline, else the live one.
    pub fn live(&self) -> Option<&LiveState> {
        match &self.replay {
            Some(r) => Some(&r.state),
            None => self.mirror.state.as_ref(),
        }
    }

    /// Show `moment` (from the gateway's history) until [`WallModel::leave_replay`]; the live
    /// feed goes on being applied underneath.
    pub fn enter_replay(&mut self, moment: HistoryMoment) -> Result<(), String> {
        let mut moment = moment;
        let state = moment.take_state(&self.county)?;
        // A stretch fetched while playing goes on at the same speed.
        let speed = self.replay.as_ref().map_or(0.0, |r| r.speed);
        self.replay = Some(Replay {
            at_ms: moment.at_ms,
            seq: moment.seq,
            state,
            events: moment.events.into(),
            events_to_ms: moment.events_to_ms,
            speed,
            first_ms: moment.first_ms,
        });
        self.replay_pending = None;
        self.reindex();
        Ok(())
    }

    /// Play the moment on by `by_ms` of feed time: the fetched events up to the new time are
    /// applied to the state shown. Returns whether the cursor has reached the end of what was
    /// fetched (the next stretch is needed).
    pub fn advance_replay(&mut self, by_ms: TimestampMs) -> bool {
        let Some(r) = self.replay.as_mut() else {
            return false;
        };
        let to = (r.at_ms + by_ms).min(r.events_to_ms);
        let mut touched = Vec::new();
        while let Some((seq, e)) = r.events.front() {
            let t = e
                .at_ms()
                .map_or(r.state.latest_event_ms, |a| a.max(r.state.latest_event_ms));
            if t > to {
                break;
            }
            // Each was accepted by the gateway once; one that is not now is shown as a problem.
            if let Err(err) = r.state.apply(e) {
                self.last_problem = Some(format!("回放 timeline: event {seq}: {err}"));
            }
            touched.extend(e.ticket_id());
            r.seq = *seq;
            r.events.pop_front();
        }
        r.at_ms = to;
        let _ = r.state.take_pruned();
        let at_end = to >= r.events_to_ms;
        if !touched.is_empty() {
            for id in touched {
                self.index_ticket(id);
            }
            self.ticket_changes += 1;
        }
        // The moment moved on: the state shown changed throughout.
        self.learnt.replaced();
        self.volunteers_dirty = true;
        at_end
    }

    /// Bring the wall's indexes up to date for ticket `id` of the state shown.
    fn index_ticket(&mut self, id: crate::protocol::TicketId) {
        let Some(t) = self.live().and_then(|s| s.tickets.get(&id)).cloned() else {
            return;
        };
        self.ticket_store.upsert(&self.county, &t);
    }

    /// Back to the live state, at once (it was kept up to date meanwhile).
    pub fn leave_replay(&mut self) {
        self.replay_pending = None;
        self.after_action = None;
        self.after_action_pending = None;
        if self.replay.take().is_some() {
            self.reindex();
        }
    }

    /// Show `state` (the model at `seq`, time `at_ms`, of a history beginning at `first_ms`)
    /// as a paused replay: a moment read by the wall itself (a range of report frames).
    pub fn show_moment(
        &mut self,
        state: LiveState,
        seq: Seq,
        at_ms: TimestampMs,
        first_ms: TimestampMs,
    ) {
        self.replay = Some(Replay {
            at_ms,
            seq,
            state,
            events: Default::default(),
            events_to_ms: at_ms,
            speed: 0.0,
            first_ms,
        });
        self.replay_pending = None;
        self.reindex();
    }

    /// Rebuild the wall's own indexes from the state shown.
    fn reindex(&mut self) {
        if let Some(shown) = self.live() {
            self.ticket_store = crate::analytics::store::TicketStore::from_live(shown);
        }
        self.ticket_changes += 1;
        self.learnt.replaced();
        self.volunteers_dirty = true;
        self.moved.clear();
    }

    /// Now on the server's clock (falls back to the latest event time before the first hello);
    /// the moment shown while replaying.
    pub fn now_ms(&self) -> TimestampMs {
        if let Some(r) = &self.replay {
            return r.at_ms;
        }
        self.clock
            .map(|c| c.now_ms())
            .or_else(|| self.live().map(|s| s.latest_event_ms))
            .unwrap_or(0)
    }

    /// No message for two heartbeats while supposedly live (within a second of a stall at
    /// the gateway's default 500 ms).
    pub fn is_stale(&self) -> bool {
        self.is_stale_at(Instant::now())
    }

    /// [`WallModel::is_stale`] at `now` (on this wall's own clock).
    pub fn is_stale_at(&self, now: Instant) -> bool {
        self.last_message.is_none_or(|t| {
            now.saturating_duration_since(t) > self.heartbeat * STALE_AFTER_HEARTBEATS
        })
    }

    /// Apply one message; returns a problem that needs a resync.
    pub fn handle(&mut self, msg: ServerMsg) -> Result<(), String> {
        self.heard();
        if self.incompatible.is_some() && !matches!(msg, ServerMsg::Hello(_)) {
            return Ok(()); // another county's data: not applied (the banner says why)
        }
        match &msg {
            ServerMsg::Hello(h) => {
                let (roster, split) = (self.county.roster_scale, self.county.grid_split);
                if (h.roster_scale, h.grid_split) != (roster, split) {
                    let problem = format!(
                        "the gateway serves the county at --scale roster ×{} grids ×{}, this wall was built for ×{roster} / ×{split}: restart the wall so it rebuilds the county from the gateway's hello",
                        h.roster_scale, h.grid_split
                    );
                    tracing::error!(target: "datawall::feed", "{problem}");
                    self.incompatible = Some(problem);
                    return Ok(());
                }
                self.incompatible = None;
                self.backbone_down_since_ms = h.backbone_down_since_ms;
                self.simulated = h.simulated;
                self.clock = Some(ServerClock::new(h.server_time_ms, h.clock_rate));
                self.heartbeat = Duration::from_millis(h.heartbeat_ms.max(100));
                self.state = FeedState::Syncing;
            }
            ServerMsg::CommandResult(r) => self.outbox.on_result(r),
            ServerMsg::Heartbeat(h) => {
                self.backbone_down_since_ms = h.backbone_down_since_ms;
                if let Some(c) = self.clock.as_mut() {
                    c.sync(h.server_time_ms);
                }
                // Resumed with nothing missed (a quiet feed): no delta will say we are live.
                if self.state == FeedState::Syncing
                    && self.mirror.state.is_some()
                    && h.last_seq <= self.mirror.last_seq
                {
                    self.state = FeedState::Live;
                }
            }
            ServerMsg::Delta(d) => self.events += d.events.len() as u64,
            _ => {}
        }
        self.last_data_ms = self.clock.map(|c| c.now_ms());
        let rejected_before = self.mirror.rejected + self.mirror.unknown;
        let t0 = Instant::now();
        let handled = self.mirror.handle(msg);
        self.mirrored(handled, rejected_before, t0)
    }

    /// Build snapshots' models on a worker while the frames go on (the wall app).
    pub fn preparing_off_thread(mut self) -> Self {
        self.prepare_off_thread = true;
        self
    }

    /// A snapshot the feed thread put together: its model and the wall's indexes over it are
    /// built on a worker while the frames go on ([`WallModel::still_preparing`] takes them in;
    /// the feed waits meanwhile), or here when there is no worker pool.
    pub fn load_snapshot(&mut self, a: crate::net::client::Assembly) -> Result<(), String> {
        self.heard();
        if self.incompatible.is_some() {
            return Ok(());
        }
        let county = Arc::clone(&self.county);
        match bevy::tasks::AsyncComputeTaskPool::try_get().filter(|_| self.prepare_off_thread) {
            Some(pool) => {
                self.preparing = Some(pool.spawn(async move { prepare(county, a) }));
                Ok(())
            }
            None => self.install(prepare(county, a)),
        }
    }

    /// Whether a snapshot is still being prepared on a worker (the feed waits); takes it in
    /// when it is ready.
    pub fn still_preparing(&mut self) -> Result<bool, String> {
        let Some(task) = self.preparing.as_mut() else {
            return Ok(false);
        };
        let Some(prepared) = bevy::tasks::futures::check_ready(task) else {
            return Ok(true);
        };
        self.preparing = None;
        self.install(prepared).map(|()| false)
    }

    fn install(
        &mut self,
        prepared: Result<Prepared, crate::net::client::MirrorError>,
    ) -> Result<(), String> {
        self.last_data_ms = self.clock.map(|c| c.now_ms());
        let rejected_before = self.mirror.rejected + self.mirror.unknown;
        let t0 = Instant::now();
        let handled = prepared.and_then(|p| {
            let seq = p.built.seq;
            let handled = self.mirror.install(p.built)?;
            // Indexes of the snapshot itself: good unless deltas were applied on top.
            if self.mirror.last_seq == seq {
                self.prepared = Some(p.store);
            }
            Ok(handled)
        });
        self.mirrored(handled, rejected_before, t0)
    }

    /// How far the snapshot the feed thread is putting together has come.
    pub fn snapshot_progress(&mut self, p: crate::net::client::SnapshotProgress) {
        self.heard();
        if p.chunks == 0 {
            tracing::info!(target: "datawall::feed",
                "a snapshot of {} tickets in {} chunks begins ({} ms after connecting)",
                p.of_tickets,
                p.of_chunks,
                self.connected_at.map_or(0, |c| c.elapsed().as_millis()),
            );
        }
        self.mirror.set_progress(p);
    }

    /// A message came from the gateway (the feed is not stale).
    fn heard(&mut self) {
        self.messages += 1;
        self.last_message = Some(Instant::now());
    }

    /// What the wall does with what its mirror made of a message or a snapshot.
    fn mirrored(
        &mut self,
        handled: Result<Handled, crate::net::client::MirrorError>,
        rejected_before: u64,
        t0: Instant,
    ) -> Result<(), String> {
        match handled {
            Ok(Handled::SnapshotLoaded { .. }) => {
                let prepared = self.prepared.take();
                if let Some(live) = self.mirror.state.as_ref().filter(|_| self.replay.is_none()) {
                    self.ticket_store = prepared
                        .unwrap_or_else(|| crate::analytics::store::TicketStore::from_live(live));
                }
                tracing::info!(target: "datawall::feed",
                    "snapshot loaded: {:.0} ms on the wall's thread ({} ms after connecting)",
                    t0.elapsed().as_secs_f64() * 1000.0,
                    self.connected_at.map_or(0, |c| c.elapsed().as_millis()),
                );
                self.state = FeedState::Live;
                self.synced_at = Some(Instant::now());
                self.ticket_changes += 1;
                self.learnt.replaced();
                self.volunteers_dirty = true;
                self.moved.clear();
            }
            Ok(Handled::Applied { accepted, .. }) => {
                self.learn(accepted);
                if self.state == FeedState::Syncing {
                    self.state = FeedState::Live;
                    self.synced_at.get_or_insert_with(Instant::now);
                }
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        self.take_pruned();
        let dropped = self.mirror.rejected + self.mirror.unknown - rejected_before;
        if dropped > 0 {
            self.dropped += dropped;
            self.last_problem = self
                .mirror
                .last_rejection
                .as_ref()
                .map(|e| format!("dropped an event: {e}"))
                .or_else(|| Some("dropped an event of an unknown type".into()));
            tracing::warn!(target: "datawall::feed", "{}", self.last_problem.as_deref().unwrap_or(""));
        }
        Ok(())
    }

    /// What the wall learns from the events its model took — from the model's own account of
    /// each change, never from the raw feed: a rejected event moves nothing, rings nothing.
    fn learn(&mut self, accepted: Vec<crate::net::client::Accepted>) {
        use crate::model::Change;
        let mut touched = Vec::new();
        // Live changes reach the state shown only when it is the live one.
        let keep = self.keep_learnt && self.replay.is_none();
        for a in accepted {
            if keep {
                self.learnt.push(a.change.clone());
            }
            match a.change {
                Change::VolunteerMoved { id, .. } => {
                    if let Some(i) = self.roster_index(id) {
                        self.note_moved(i, a.event.at_ms().unwrap_or(0));
                    }
                    if let Some(stamps) = self.latency_stamps.as_mut()
                        && stamps.len() < MAX_LATENCY_STAMPS
                        && let Some(at) = a.event.at_ms()
                    {
                        stamps.push(at);
                    }
                    continue;
                }
                Change::Ticket { id, .. }
                | Change::TicketRated { id, .. }
                | Change::TicketSupervised { id, .. } => touched.push(id),
                Change::Alert { ticket_id, .. } => touched.push(ticket_id),
                _ => {}
            }
            if let Some(line) = Alert::of(&a.event) {
                if self.alerts.len() == MAX_ALERTS {
                    self.alerts.pop_front();
                }
                self.alerts.push_back(line);
            }
            self.ticket_changes += 1;
            self.volunteers_dirty = true;
        }
        // While replaying, the indexes follow the moment shown (rebuilt on return).
        if self.replay.is_none() {
            touched.sort_unstable();
            touched.dedup();
            for id in touched {
                self.index_ticket(id);
            }
        }
    }

    /// Remember that volunteer `i` moved, for the next frame. Frames that do not come (a
    /// window the compositor stopped drawing, a headless client) must not let the list grow:
    /// past one entry per volunteer it gives way to "every volunteer", which the next frame
    /// reads from the model.
    pub fn note_moved(&mut self, i: usize, at_ms: TimestampMs) {
        if self.volunteers_dirty {
            return;
        }
        let cap = self.county.pack.volunteers.len().max(1_024);
        if self.moved.len() >= cap {
            self.moved = Vec::new();
            self.volunteers_dirty = true;
        } else {
            self.moved.push((i, at_ms));
        }
    }

    /// Drop from the wall's own indexes what the model pruned (resolved a day ago).
    fn take_pruned(&mut self) {
        let Some(live) = self.mirror.state.as_mut() else {
            return;
        };
        let pruned = live.take_pruned();
        if pruned.tickets.is_empty() && pruned.incidents.is_empty() {
            return;
        }
        if self.replay.is_none() {
            for id in pruned.tickets {
                self.ticket_store.remove(id);
            }
        }
        self.ticket_changes += 1;
    }

    fn roster_index(&self, id: crate::protocol::VolunteerId) -> Option<usize> {
        let live = self.live()?;
        live.volunteers.binary_search_by_key(&id, |v| v.id).ok()
    }

    /// Apply a link report from the feed thread.
    pub fn link(&mut self, link: Link) {
        match link {
            Link::Connecting { attempt } if attempt == 0 && self.mirror.state.is_none() => {
                self.state = FeedState::Connecting
            }
            Link::Connected { at } => self.connected_at = Some(at),
            Link::Connecting { .. } => {}
            Link::Down { attempt, error, .. } => {
                let since = match &self.state {
                    FeedState::Reconnecting { since, .. } => *since,
                    _ => self.last_message.unwrap_or_else(Instant::now),
                };
                self.state = FeedState::Reconnecting {
                    since,
                    attempt,
                    error,
                };
            }
        }
    }
}

/// The channel ends, as a resource.
#[derive(Resource)]
pub struct FeedChannel {
    pub rx: mpsc::Receiver<FeedItem>,
    pub commands: mpsc::Sender<FeedCommand>,
}

/// Drain the feed within a time budget per frame (Rerun's viewer does the same): at least
/// [`DRAIN_BUDGET`], a quarter of the last frame when frames are slow.
pub fn drain_feed(
    mut channel: ResMut<FeedChannel>,
    mut model: ResMut<WallModel>,
    time: Res<Time<Real>>,
    learnt: Option<ResMut<Messages<super::nav::Learnt>>>,
) {
    drain_with_budget(&mut channel, &mut model, drain_budget(time.delta()));
    // What the model learnt goes on as one message a frame, to whoever reads it.
    if let Some(mut out) = learnt {
        if !model.keep_learnt {
            model.keep_learnt = true;
            model.learnt.replaced();
        }
        let l = std::mem::take(&mut model.learnt);
        if !l.is_empty() {
            out.write(l);
        }
    }
}

/// The drain with an explicit budget; returns how many items it took.
pub fn drain_with_budget(
    channel: &mut FeedChannel,
    model: &mut WallModel,
    budget: Duration,
) -> usize {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < budget {
        // The items after a snapshot wait until its model is in.
        match model.still_preparing() {
            Ok(false) => {}
            Ok(true) => break,
            Err(problem) => {
                resync_on(channel, model, Err(problem));
                continue;
            }
        }
        let Ok(item) = channel.rx.try_recv() else {
            break;
        };
        n += 1;
        apply_item(channel, model, item);
    }
    n
}

/// A snapshot's model and the wall's indexes over it, built off the wall's thread.
pub struct Prepared {
    built: crate::net::client::Built,
    store: crate::analytics::store::TicketStore,
}

fn prepare(
    county: Arc<County>,
    a: crate::net::client::Assembly,
) -> Result<Prepared, crate::net::client::MirrorError> {
    let t0 = Instant::now();
    let built = a.build(county)?;
    let t1 = Instant::now();
    let store = crate::analytics::store::TicketStore::from_live(&built.state);
    tracing::info!(target: "datawall::feed",
        "snapshot prepared on a worker: model {:.0} ms, analytics store {:.0} ms",
        (t1 - t0).as_secs_f64() * 1000.0,
        t1.elapsed().as_secs_f64() * 1000.0,
    );
    Ok(Prepared { store, built })
}

/// A problem the model could not follow asks the feed for a fresh snapshot.
fn resync_on(channel: &FeedChannel, model: &mut WallModel, handled: Result<(), String>) {
    if let Err(problem) = handled {
        tracing::warn!(target: "datawall::feed", "resyncing: {problem}");
        model.last_problem = Some(format!("resync: {problem}"));
        let _ = channel.commands.try_send(FeedCommand::Resync(problem));
    }
}

/// Take one item from the feed thread into the model (a problem asks it to resync).
pub fn apply_item(channel: &FeedChannel, model: &mut WallModel, item: FeedItem) {
    match item {
        FeedItem::Msg(msg) => {
            let handled = model.handle(msg);
            resync_on(channel, model, handled);
        }
        FeedItem::Snapshot(a) => {
            let handled = model.load_snapshot(*a);
            resync_on(channel, model, handled);
        }
        FeedItem::SnapshotProgress(p) => model.snapshot_progress(p),
        FeedItem::Link(link) => model.link(link),
        FeedItem::History(Ok(moment)) => {
            if model.replay_pending.is_none() {
                return; // asked for, then back to live before it came
            }
            if let Err(why) = model.enter_replay(*moment) {
                model.last_problem = Some(why);
            }
        }
        FeedItem::History(Err(why)) => {
            model.replay_pending = None;
            tracing::warn!(target: "datawall::feed", "timeline: {why}");
            model.last_problem = Some(format!("回放 timeline: {why}"));
        }
        FeedItem::Past(at, moment) => model.past_moments.push((at, moment)),
        FeedItem::AfterAction(id, history) => {
            if model.after_action_pending != Some(id) {
                return; // asked for, then given up
            }
            model.after_action_pending = None;
            match history.and_then(|h| model.fold_after_action(id, *h)) {
                Ok(aa) => model.after_action = Some(Box::new(aa)),
                Err(why) => {
                    tracing::warn!(target: "datawall::feed", "after-action: {why}");
                    model.last_problem = Some(format!("复盘 after-action: {why}"));
                }
            }
        }
    }
}

/// Open incident `id`'s after-action: its history from the opening to its close (or now) is
/// fetched and folded, and the timeline goes to its opening.
pub fn request_after_action(
    channel: &FeedChannel,
    model: &mut WallModel,
    id: crate::protocol::IncidentId,
) {
    let Some((opened, closed)) = model
        .live()
        .and_then(|s| s.incidents.get(&id))
        .map(|i| (i.opened_at_ms, i.closed_at_ms))
    else {
        model.last_problem = Some(format!("复盘 after-action: incident {id} is not known"));
        return;
    };
    let live_ms = model.clock.map_or_else(|| model.now_ms(), |c| c.now_ms());
    let to_ms = closed.unwrap_or(live_ms);
    model.after_action = None;
    model.after_action_pending = Some(id);
    if channel
        .commands
        .try_send(FeedCommand::AfterAction {
            incident_id: id,
            from_ms: opened,
            to_ms,
        })
        .is_err()
    {
        model.after_action_pending = None;
        model.last_problem = Some("复盘 after-action: the feed is busy; try again".into());
        return;
    }
    request_moment(channel, model, opened);
}

/// Ask for the moment `at_ms` on the timeline (the answer arrives as a feed item).
pub fn request_moment(channel: &FeedChannel, model: &mut WallModel, at_ms: TimestampMs) {
    model.replay_pending = Some(at_ms);
    if channel
        .commands
        .try_send(FeedCommand::History(at_ms))
        .is_err()
    {
        model.replay_pending = None;
        model.last_problem = Some("回放 timeline: the feed is busy; try again".into());
    }
}

pub(super) fn plugin(app: &mut App) {
    app.add_message::<super::nav::Learnt>();
    app.add_systems(Update, drain_feed.in_set(super::nav::WallSet::Feed));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_frames_get_a_larger_drain_budget_within_bounds() {
        assert_eq!(drain_budget(Duration::ZERO), DRAIN_BUDGET);
        assert_eq!(drain_budget(Duration::from_millis(4)), DRAIN_BUDGET);
        // A 600 ms frame (4K on a software renderer) may drain for 150 ms.
        assert_eq!(
            drain_budget(Duration::from_millis(600)),
            Duration::from_millis(150)
        );
        assert_eq!(drain_budget(Duration::from_secs(30)), DRAIN_BUDGET_MAX);
    }
}
