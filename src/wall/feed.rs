//! The wall's feed: a named thread running tokio connects to the gateway, decodes off the
//! main thread and hands messages through a bounded channel; one system drains it under a
//! time budget into the wall's model. Reconnects with backoff and resume.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use tokio::sync::mpsc;

use crate::model::{County, LiveState};
use crate::net::client::{FeedConnection, Handled, Mirror};
use crate::protocol::TimestampMs;
use crate::protocol::session::{ClientMsg, Epoch, Seq, ServerMsg};

/// Messages in flight between the feed thread and the wall, at most.
const CHANNEL_CAPACITY: usize = 1_024;
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
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest wait for a connection and its handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeats missed before the wall calls the feed stale.
pub const STALE_AFTER_HEARTBEATS: u32 = 2;
/// Silence (no message at all) after which the connection is presumed dead and remade: three
/// heartbeats, but never less than this.
const DEAD_AFTER_MIN: Duration = Duration::from_secs(5);
/// How often the wall tells the gateway it is alive.
const CLIENT_HEARTBEAT: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// What the feed thread reports.
#[derive(Debug)]
pub enum FeedItem {
    Msg(ServerMsg),
    Link(Link),
    /// A moment of the gateway's history (the timeline), or why it could not be had.
    History(Result<Box<HistoryMoment>, String>),
    /// The history from an incident's opening, for its after-action (folded by the model).
    AfterAction(
        crate::protocol::IncidentId,
        Result<Box<HistoryMoment>, String>,
    ),
}

/// The state at a moment, as `GET /v1/history` serves it.
#[derive(Debug, serde::Deserialize)]
pub struct HistoryMoment {
    #[serde(skip)]
    pub at_ms: TimestampMs,
    #[serde(skip)]
    pub seq: Seq,
    #[serde(skip)]
    pub latest_event_ms: TimestampMs,
    /// Where the gateway's history begins (the time bar's left end).
    #[serde(skip)]
    pub first_ms: TimestampMs,
    pub tickets: Vec<crate::protocol::entities::Ticket>,
    pub volunteers: Vec<crate::protocol::entities::Volunteer>,
    pub incidents: Vec<crate::protocol::entities::Incident>,
    #[serde(default)]
    pub alerts: Vec<crate::protocol::entities::Alert>,
    #[serde(default)]
    pub annotations: Vec<crate::protocol::entities::Annotation>,
    /// The events after the moment, up to `events_to_ms` (model time), for playback.
    #[serde(skip)]
    pub events: Vec<(Seq, crate::protocol::Event)>,
    #[serde(skip)]
    pub events_to_ms: TimestampMs,
}

/// Feed time of events fetched with a moment, for playback (the next stretch is fetched when
/// the cursor reaches the end).
pub const PLAYBACK_FETCH_MS: TimestampMs = 5 * 60_000;

/// Ask the gateway for the state at `at_ms` (`GET /v1/history` on the feed's host).
async fn fetch_moment(url: &str, token: &str, at_ms: TimestampMs) -> Result<HistoryMoment, String> {
    fetch_history(url, token, at_ms, at_ms + PLAYBACK_FETCH_MS).await
}

/// Longest stretch an after-action reads (an incident open longer is cut there).
pub const AFTER_ACTION_MAX_MS: TimestampMs = 6 * 3_600_000;

/// The history for an incident's after-action: from just before `from_ms` (its opening, so
/// the opening is among the events) to `to_ms`, at most [`AFTER_ACTION_MAX_MS`].
async fn fetch_after_action(
    url: &str,
    token: &str,
    from_ms: TimestampMs,
    to_ms: TimestampMs,
) -> Result<HistoryMoment, String> {
    let to_ms = to_ms.clamp(from_ms, from_ms + AFTER_ACTION_MAX_MS);
    fetch_history(url, token, from_ms - 1, to_ms).await
}

/// The state at `at_ms` and the events after it up to `to_ms` (model time), from the gateway's
/// `GET /v1/history`.
async fn fetch_history(
    url: &str,
    token: &str,
    at_ms: TimestampMs,
    to_ms: TimestampMs,
) -> Result<HistoryMoment, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(rest) = url.strip_prefix("ws://") else {
        return Err("the timeline needs a ws:// feed (over TLS it is not supported yet)".into());
    };
    let host = rest.split('/').next().unwrap_or(rest);
    let mut s = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(host))
        .await
        .map_err(|_| format!("no answer from {host}"))?
        .map_err(|e| format!("cannot reach {host}: {e}"))?;
    let request = format!(
        "GET /v1/history?at={at_ms}&to={to_ms} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&body);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or("no answer from the gateway")?;
    if !head.starts_with("HTTP/1.1 200") {
        let status = head
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("HTTP/1.1 ");
        return Err(format!("the gateway's history: {status}: {}", rest.trim()));
    }
    let mut lines = rest.lines();
    let header: serde_json::Value = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or("the history's answer has no header")?;
    let mut moment: HistoryMoment = lines
        .next()
        .ok_or("the history's answer has no state")
        .and_then(|l| serde_json::from_str(l).map_err(|_| "the history's state does not decode"))?;
    for line in lines {
        if let Ok(pair) = serde_json::from_str::<(Seq, crate::protocol::Event)>(line) {
            moment.events.push(pair);
        }
    }
    moment.events_to_ms = to_ms;
    moment.at_ms = at_ms;
    moment.seq = header["seq"].as_u64().unwrap_or(0);
    moment.latest_event_ms = header["latest_event_ms"].as_i64().unwrap_or(at_ms);
    moment.first_ms = header["first_ms"].as_i64().unwrap_or(at_ms).min(at_ms);
    Ok(moment)
}

/// The link as the feed thread sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum Link {
    Connecting {
        attempt: u32,
    },
    Connected,
    Down {
        attempt: u32,
        error: String,
        retry_in: Duration,
    },
}

/// Orders from the wall to the feed thread.
#[derive(Debug)]
pub enum FeedCommand {
    /// The model could not follow (gap, bad snapshot): reconnect without resume.
    Resync(String),
    /// Send this to the gateway (an operator's command).
    Send(ClientMsg),
    /// Fetch the state at this feed time from the gateway's history (the timeline).
    History(TimestampMs),
    /// Fetch the history of an incident from its opening (`from_ms`) to `to_ms`.
    AfterAction {
        incident_id: crate::protocol::IncidentId,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
    },
}

/// Where the feed connects.
#[derive(Clone, Debug)]
pub struct FeedTarget {
    pub url: String,
    pub token: String,
    /// TLS settings for a `wss://` feed (`--ca`); the system's roots when `None`.
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

/// Exponential backoff with jitter: 250 ms, 500 ms, 1 s … 15 s, each ±25 %.
pub fn backoff(attempt: u32, jitter_unit: f64) -> Duration {
    let base = BACKOFF_MIN.as_secs_f64() * 2f64.powi(attempt.min(10) as i32);
    let capped = base.min(BACKOFF_MAX.as_secs_f64());
    Duration::from_secs_f64(capped * (0.75 + 0.5 * jitter_unit.clamp(0.0, 1.0)))
}

/// Start the feed thread. The returned receiver is drained by the wall.
pub fn spawn_feed(
    target: FeedTarget,
) -> std::io::Result<(mpsc::Receiver<FeedItem>, mpsc::Sender<FeedCommand>)> {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    std::thread::Builder::new()
        .name("datawall-feed".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.blocking_send(FeedItem::Link(Link::Down {
                        attempt: 0,
                        error: format!("cannot start the feed runtime: {e}"),
                        retry_in: Duration::MAX,
                    }));
                    return;
                }
            };
            rt.block_on(feed_loop(target, tx, cmd_rx));
        })?;
    Ok((rx, cmd_tx))
}

async fn feed_loop(
    target: FeedTarget,
    tx: mpsc::Sender<FeedItem>,
    mut commands: mpsc::Receiver<FeedCommand>,
) {
    let mut resume: Option<(Epoch, Seq)> = None;
    let mut attempt: u32 = 0;
    let mut jitter = crate::model::rng::Rng::new(std::process::id() as u64);
    loop {
        // Commands written for a link that has gone are not sent on the next one: the wall
        // has told the operator they were not sent.
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                FeedCommand::Send(msg) => {
                    tracing::warn!(target: "datawall::feed", "dropped a message written while the link was down: {msg:?}");
                }
                FeedCommand::History(_) => {
                    let why = "the feed is down; the history cannot be reached".to_owned();
                    if tx.send(FeedItem::History(Err(why))).await.is_err() {
                        return;
                    }
                }
                FeedCommand::AfterAction { incident_id, .. } => {
                    let why = "the feed is down; the history cannot be reached".to_owned();
                    if tx
                        .send(FeedItem::AfterAction(incident_id, Err(why)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                FeedCommand::Resync(_) => {}
            }
        }
        if tx
            .send(FeedItem::Link(Link::Connecting { attempt }))
            .await
            .is_err()
        {
            return;
        }
        let connect =
            FeedConnection::connect_with(&target.url, &target.token, resume, target.tls.clone());
        let error = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Err(_) => format!(
                "no answer from {} within {} s (host down or blocked?)",
                target.url,
                CONNECT_TIMEOUT.as_secs()
            ),
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(conn)) => {
                attempt = 0;
                if tx.send(FeedItem::Link(Link::Connected)).await.is_err() {
                    return;
                }
                match follow(conn, &target, &tx, &mut commands, &mut resume).await {
                    Ok(()) => return, // the wall went away
                    Err(e) => e,
                }
            }
        };
        let retry_in = backoff(attempt, jitter.unit());
        attempt = attempt.saturating_add(1);
        tracing::warn!(target: "datawall::feed", "feed down: {error}; retrying in {retry_in:?}");
        if tx
            .send(FeedItem::Link(Link::Down {
                attempt,
                error,
                retry_in,
            }))
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(retry_in).await;
    }
}

/// Read one connection until it fails. `Ok` means the wall closed the channel.
async fn follow(
    mut conn: FeedConnection,
    target: &FeedTarget,
    tx: &mpsc::Sender<FeedItem>,
    commands: &mut mpsc::Receiver<FeedCommand>,
    resume: &mut Option<(Epoch, Seq)>,
) -> Result<(), String> {
    // A half-open socket never errors: silence longer than three server heartbeats means the
    // gateway is gone. Checked on a short tick, so detection does not wait for our own
    // heartbeat period.
    let mut silence = Duration::from_secs(15);
    let mut last_heard = Instant::now();
    let mut last_sent = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut epoch: Option<Epoch> = None;
    loop {
        tokio::select! {
            msg = conn.next_msg() => {
                let msg = msg.map_err(|e| e.to_string())?;
                last_heard = Instant::now();
                match &msg {
                    ServerMsg::Hello(h) => {
                        epoch = Some(h.epoch);
                        silence = Duration::from_millis(h.heartbeat_ms.max(100) * 3).max(DEAD_AFTER_MIN);
                        if !h.resumed {
                            *resume = None;
                        }
                    }
                    ServerMsg::SnapshotEnd(e) => *resume = epoch.map(|ep| (ep, e.seq)),
                    ServerMsg::Delta(d) => {
                        if let Some((ep, _)) = resume {
                            *resume = Some((*ep, d.last_seq));
                        }
                    }
                    _ => {}
                }
                if tx.send(FeedItem::Msg(msg)).await.is_err() {
                    conn.close().await;
                    return Ok(());
                }
            }
            _ = tick.tick() => {
                if last_heard.elapsed() > silence {
                    return Err(format!(
                        "nothing from the gateway for {:.1} s; the connection is presumed dead",
                        last_heard.elapsed().as_secs_f64()
                    ));
                }
                if last_sent.elapsed() >= CLIENT_HEARTBEAT {
                    last_sent = Instant::now();
                    let now = crate::net::hub::system_now_ms();
                    conn.send(&ClientMsg::Heartbeat { client_time_ms: now }).await.map_err(|e| e.to_string())?;
                }
            }
            cmd = commands.recv() => match cmd {
                Some(FeedCommand::Resync(why)) => {
                    *resume = None;
                    conn.close().await;
                    return Err(format!("resync requested: {why}"));
                }
                Some(FeedCommand::Send(msg)) => {
                    last_sent = Instant::now();
                    conn.send(&msg).await.map_err(|e| e.to_string())?;
                }
                Some(FeedCommand::History(at)) => {
                    // Read beside the live feed, which goes on meanwhile.
                    let (tx, url, token) = (tx.clone(), target.url.clone(), target.token.clone());
                    tokio::spawn(async move {
                        let moment = fetch_moment(&url, &token, at).await.map(Box::new);
                        let _ = tx.send(FeedItem::History(moment)).await;
                    });
                }
                Some(FeedCommand::AfterAction { incident_id, from_ms, to_ms }) => {
                    let (tx, url, token) = (tx.clone(), target.url.clone(), target.token.clone());
                    tokio::spawn(async move {
                        let h = fetch_after_action(&url, &token, from_ms, to_ms)
                            .await
                            .map(Box::new);
                        let _ = tx.send(FeedItem::AfterAction(incident_id, h)).await;
                    });
                }
                None => return Ok(()),
            }
        }
    }
}

/// The server's clock as measured from hello and heartbeats: countdowns use it, never the
/// wall PC's own clock.
#[derive(Clone, Copy, Debug)]
pub struct ServerClock {
    server_ms_at_sync: TimestampMs,
    local_at_sync: Instant,
    rate: f64,
}

impl ServerClock {
    pub fn new(server_ms: TimestampMs, rate: f64) -> Self {
        Self {
            server_ms_at_sync: server_ms,
            local_at_sync: Instant::now(),
            rate,
        }
    }

    pub fn sync(&mut self, server_ms: TimestampMs) {
        self.server_ms_at_sync = server_ms;
        self.local_at_sync = Instant::now();
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The server's "now", extrapolated.
    pub fn now_ms(&self) -> TimestampMs {
        self.server_ms_at_sync
            + (self.local_at_sync.elapsed().as_secs_f64() * 1000.0 * self.rate) as TimestampMs
    }
}

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
    /// Open tickets by grid (the grid panel), kept up to date event by event.
    pub open_by_grid: super::nav::OpenByGrid,
    /// The tickets as the analytics read them, kept up to date event by event.
    pub ticket_store: crate::analytics::store::TicketStore,
    /// Ticket changes the heatmap has not taken in yet.
    pub heat_dirty: bool,
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
    /// The gateway says its backbone (NATS) has been unreachable since this feed time.
    pub backbone_down_since_ms: Option<TimestampMs>,
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
            open_by_grid: Default::default(),
            heat_dirty: true,
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
            backbone_down_since_ms: None,
            outbox: Default::default(),
            replay: None,
            replay_pending: None,
            after_action: None,
            after_action_pending: None,
        }
    }

    /// Fold `history` (from just before incident `id` opened) into its after-action.
    pub fn fold_after_action(
        &self,
        id: crate::protocol::IncidentId,
        history: HistoryMoment,
    ) -> Result<crate::model::after_action::AfterAction, String> {
        let start = LiveState::from_parts(
            Arc::clone(&self.county),
            history.tickets,
            history.volunteers,
            history.incidents,
            history.alerts,
            history.annotations,
            history.latest_event_ms,
        )
        .map_err(|e| format!("the history's state does not load: {e}"))?;
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
        let state = LiveState::from_parts(
            Arc::clone(&self.county),
            moment.tickets,
            moment.volunteers,
            moment.incidents,
            moment.alerts,
            moment.annotations,
            moment.latest_event_ms,
        )
        .map_err(|e| format!("the history's state does not load: {e}"))?;
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
            self.heat_dirty = true;
        }
        self.volunteers_dirty = true;
        at_end
    }

    /// Bring the wall's indexes up to date for ticket `id` of the state shown.
    fn index_ticket(&mut self, id: crate::protocol::TicketId) {
        let Some(t) = self.live().and_then(|s| s.tickets.get(&id)).cloned() else {
            return;
        };
        self.ticket_store.upsert(&self.county, &t);
        if let Some(g) = t.grid_id {
            let set = self.open_by_grid.entry(g).or_default();
            if t.status.is_open() {
                set.insert(t.id);
            } else {
                set.remove(&t.id);
            }
        }
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
            let store = crate::analytics::store::TicketStore::from_live(shown);
            let open = super::nav::open_by_grid(shown);
            self.ticket_store = store;
            self.open_by_grid = open;
        }
        self.ticket_changes += 1;
        self.heat_dirty = true;
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
        self.messages += 1;
        self.last_message = Some(Instant::now());
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
        match self.mirror.handle(msg) {
            Ok(Handled::SnapshotLoaded { .. }) => {
                if let Some(live) = self.mirror.state.as_ref().filter(|_| self.replay.is_none()) {
                    self.ticket_store = crate::analytics::store::TicketStore::from_live(live);
                    self.open_by_grid = super::nav::open_by_grid(live);
                }
                self.state = FeedState::Live;
                self.synced_at = Some(Instant::now());
                self.ticket_changes += 1;
                self.heat_dirty = true;
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
        for a in accepted {
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
            self.heat_dirty = true;
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
            Link::Connecting { .. } | Link::Connected => {}
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
) {
    drain_with_budget(&mut channel, &mut model, drain_budget(time.delta()));
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
        let Ok(item) = channel.rx.try_recv() else {
            break;
        };
        n += 1;
        apply_item(channel, model, item);
    }
    n
}

/// Take one item from the feed thread into the model (a problem asks it to resync).
pub fn apply_item(channel: &FeedChannel, model: &mut WallModel, item: FeedItem) {
    match item {
        FeedItem::Msg(msg) => {
            if let Err(problem) = model.handle(msg) {
                tracing::warn!(target: "datawall::feed", "resyncing: {problem}");
                model.last_problem = Some(format!("resync: {problem}"));
                let _ = channel.commands.try_send(FeedCommand::Resync(problem));
            }
        }
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

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff(0, 0.5), Duration::from_millis(250));
        assert!(backoff(3, 0.5) == Duration::from_secs(2));
        assert_eq!(backoff(30, 0.5), BACKOFF_MAX);
        assert!(backoff(2, 0.0) < backoff(2, 1.0));
        assert!(backoff(30, 1.0) <= BACKOFF_MAX.mul_f64(1.25));
    }
}
