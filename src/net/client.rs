//! The feed client: connect with a token (optionally resuming), read session messages, and
//! mirror the server's state from snapshot + sequenced deltas with gap detection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::model::{ApplyError, Change, County, LiveState};
use crate::protocol::entities::{Incident, Volunteer};
use crate::protocol::session::{ClientMsg, Epoch, Seq, ServerMsg};
use crate::protocol::{Event, TimestampMs};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: WsError },
    #[error("cannot connect to {url}: {source}; the gateway may be serving TLS: use wss://")]
    PlainToTls { url: String, source: WsError },
    #[error("TLS settings: {0}")]
    Tls(#[from] super::tls::TlsError),
    #[error("the server refused the connection: HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("websocket error: {0}")]
    Socket(#[from] WsError),
    #[error("the server closed the connection{}", .0.as_ref().map(|f| format!(": {} {}", f.code, f.reason)).unwrap_or_default())]
    Closed(Option<CloseFrame>),
    #[error("message from the server did not parse: {0}")]
    Decode(#[from] serde_json::Error),
    #[error(
        "binary message from the server did not decode: {0}; reconnecting (add format=json to the feed URL to take the snapshot and deltas as JSON)"
    )]
    Binary(#[from] crate::protocol::binary::BinaryError),
    #[error(
        "the server sent a binary message that is neither a snapshot chunk nor a delta ({0} bytes)"
    )]
    UnknownBinary(usize),
}

/// One websocket connection to the gateway.
pub struct FeedConnection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl FeedConnection {
    /// Connect to `url` (e.g. `ws://127.0.0.1:8710/v1/feed`) with a bearer token, optionally
    /// resuming after `last_seq` of `epoch`.
    pub async fn connect(
        url: &str,
        token: &str,
        resume: Option<(Epoch, Seq)>,
    ) -> Result<Self, ClientError> {
        Self::connect_with(url, token, resume, None).await
    }

    /// Like [`FeedConnection::connect`]; a `wss://` URL is verified against `tls` (built by
    /// [`super::tls::client_config`], e.g. with `--ca`), or the system's roots when `None`.
    pub async fn connect_with(
        url: &str,
        token: &str,
        resume: Option<(Epoch, Seq)>,
        tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    ) -> Result<Self, ClientError> {
        let full = match resume {
            Some((epoch, seq)) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}resume_epoch={epoch}&last_seq={seq}")
            }
            None => url.to_owned(),
        };
        let mut request =
            full.as_str()
                .into_client_request()
                .map_err(|source| ClientError::Connect {
                    url: url.to_owned(),
                    source,
                })?;
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
            request.headers_mut().insert("authorization", v);
        }
        let secure = url.starts_with("wss://");
        let connector = match (secure, tls) {
            (true, Some(c)) => Some(tokio_tungstenite::Connector::Rustls(c)),
            (true, None) => Some(tokio_tungstenite::Connector::Rustls(
                super::tls::client_config(None)?,
            )),
            (false, _) => None,
        };
        let connected =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector).await;
        match connected {
            Ok((ws, _)) => Ok(Self { ws }),
            Err(WsError::Http(resp)) => Err(ClientError::Refused {
                status: resp.status().as_u16(),
                body: resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                    .unwrap_or_default(),
            }),
            // A TLS server answers a plain HTTP request with an alert, or hangs up.
            Err(
                source @ (WsError::HttpFormat(_)
                | WsError::Protocol(_)
                | WsError::Io(_)
                | WsError::ConnectionClosed
                | WsError::AlreadyClosed),
            ) if !secure && !is_refused(&source) => Err(ClientError::PlainToTls {
                url: url.to_owned(),
                source,
            }),
            Err(source) => Err(ClientError::Connect {
                url: url.to_owned(),
                source,
            }),
        }
    }

    /// The next session message (control frames are handled underneath).
    pub async fn next_msg(&mut self) -> Result<ServerMsg, ClientError> {
        loop {
            match self.ws.next().await {
                None => return Err(ClientError::Closed(None)),
                Some(Err(e)) => return Err(ClientError::Socket(e)),
                Some(Ok(Message::Text(t))) => return Ok(decode_server_msg(t.as_str())?),
                Some(Ok(Message::Binary(b))) => return decode_binary_msg(&b),
                Some(Ok(Message::Close(frame))) => return Err(ClientError::Closed(frame)),
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next raw text message, undecoded (benchmarks, diagnostics).
    pub async fn next_text(&mut self) -> Result<String, ClientError> {
        loop {
            match self.ws.next().await {
                None => return Err(ClientError::Closed(None)),
                Some(Err(e)) => return Err(ClientError::Socket(e)),
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
                Some(Ok(Message::Close(frame))) => return Err(ClientError::Closed(frame)),
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn send(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        let text = serde_json::to_string(msg)?;
        Ok(self.ws.send(Message::text(text)).await?)
    }

    /// Send raw text (tests of the server's limits).
    pub async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        Ok(self.ws.send(Message::text(text)).await?)
    }

    /// Connect, read the `hello` (which says how the county is scaled) and hang up.
    pub async fn probe_hello(
        url: &str,
        token: &str,
        tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    ) -> Result<crate::protocol::session::Hello, ClientError> {
        let mut conn = Self::connect_with(url, token, None, tls).await?;
        let msg = conn.next_msg().await?;
        conn.close().await;
        match msg {
            ServerMsg::Hello(h) => Ok(h),
            _ => Err(ClientError::Closed(None)),
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

fn is_refused(e: &WsError) -> bool {
    matches!(e, WsError::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::HostUnreachable
            | std::io::ErrorKind::NetworkUnreachable
            | std::io::ErrorKind::AddrNotAvailable
    ))
}

/// Decode a binary server message (`format=binary`): a snapshot chunk or a delta.
pub fn decode_binary_msg(bytes: &[u8]) -> Result<ServerMsg, ClientError> {
    use crate::protocol::binary::{decode_chunk, decode_delta, is_delta, is_snapshot_chunk};
    if is_snapshot_chunk(bytes) {
        Ok(ServerMsg::SnapshotChunk(decode_chunk(bytes)?))
    } else if is_delta(bytes) {
        Ok(ServerMsg::Delta(decode_delta(bytes)?))
    } else {
        Err(ClientError::UnknownBinary(bytes.len()))
    }
}

/// Decode any server message as the websocket carried it; `None` for control frames.
pub fn decode_message(message: &Message) -> Result<Option<ServerMsg>, ClientError> {
    match message {
        Message::Text(t) => Ok(Some(decode_server_msg(t.as_str())?)),
        Message::Binary(b) => decode_binary_msg(b).map(Some),
        _ => Ok(None),
    }
}

/// Decode a server message. A delta whose batch holds a malformed event still yields its
/// good events: the bad ones become [`Event::Unknown`] and are counted by the mirror.
pub fn decode_server_msg(text: &str) -> Result<ServerMsg, serde_json::Error> {
    match serde_json::from_str::<ServerMsg>(text) {
        Ok(m) => Ok(m),
        Err(e) => {
            #[derive(serde::Deserialize)]
            struct LooseDelta {
                #[serde(rename = "type")]
                kind: String,
                epoch: Epoch,
                #[serde(default)]
                prev_seq: Option<Seq>,
                first_seq: Seq,
                last_seq: Seq,
                #[serde(default)]
                conflated: u32,
                events: Vec<(Seq, serde_json::Value)>,
            }
            let loose: LooseDelta = serde_json::from_str(text).map_err(|_| e)?;
            if loose.kind != "delta" {
                return serde_json::from_str::<ServerMsg>(text);
            }
            Ok(ServerMsg::Delta(crate::protocol::session::Delta {
                epoch: loose.epoch,
                prev_seq: loose.prev_seq,
                first_seq: loose.first_seq,
                last_seq: loose.last_seq,
                conflated: loose.conflated,
                events: loose
                    .events
                    .into_iter()
                    .map(|(seq, v)| (seq, serde_json::from_value(v).unwrap_or(Event::Unknown)))
                    .collect(),
            }))
        }
    }
}

/// Something the mirror could not follow; the client should reconnect (resume) or resync.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MirrorError {
    #[error("gap: at seq {expected}, got a batch that follows {got}")]
    Gap { expected: Seq, got: Seq },
    #[error("message for epoch {got} while following epoch {expected}")]
    WrongEpoch { expected: Epoch, got: Epoch },
    #[error("snapshot is inconsistent: {0}")]
    BadSnapshot(String),
    #[error("delta before any snapshot or resume point")]
    NotSynced,
}

/// What a handled message did.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    Hello,
    SnapshotProgress,
    SnapshotLoaded {
        seq: Seq,
    },
    Applied {
        events: usize,
        rejected: usize,
        unknown: usize,
        /// The events the model took, each with what it changed: the one account of what
        /// the client learnt (rejected and unknown events are not in it).
        accepted: Vec<Accepted>,
    },
    Stale,
    Heartbeat,
    Notice(String),
    CommandResult(crate::protocol::command::CommandResult),
}

/// An event the mirror's model accepted, with its seq and the model's account of the change.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub seq: Seq,
    pub event: Event,
    pub change: Change,
}

/// A snapshot put together chunk by chunk, the tickets straight into the model's map. The
/// wall's feed thread assembles it ([`Assembler`]) so that the wall's own thread takes it whole
/// ([`Mirror::load`]); a [`Mirror`] fed the messages assembles it itself.
#[derive(Default)]
pub struct Assembly {
    pub epoch: Epoch,
    pub seq: Seq,
    /// What the begin said is coming: chunks and tickets.
    chunks: usize,
    expected_tickets: usize,
    parts: usize,
    tickets: crate::model::TicketMap,
    volunteers: Vec<Volunteer>,
    incidents: Vec<Incident>,
    alerts: Vec<crate::protocol::entities::Alert>,
    annotations: Vec<crate::protocol::entities::Annotation>,
    latest_event_ms: TimestampMs,
    /// The gateway sending it when that gateway is in this process: a decoded ticket equal to
    /// the gateway's record takes the record itself (one copy per process).
    local: Option<Arc<crate::net::hub::Hub>>,
}

impl std::fmt::Debug for Assembly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembly")
            .field("epoch", &self.epoch)
            .field("seq", &self.seq)
            .field("progress", &self.progress())
            .field("beside_its_gateway", &self.local.is_some())
            .finish()
    }
}

impl Assembly {
    fn begin(b: &crate::protocol::session::SnapshotBegin) -> Self {
        Self {
            epoch: b.epoch,
            seq: b.seq,
            chunks: b.chunks,
            expected_tickets: b.tickets,
            // (What the begin announces is the server's word: reserve what a city needs, no
            // more.)
            tickets: crate::model::TicketMap::with_capacity(b.tickets.min(1 << 21)),
            local: crate::net::hub::local_hub(b.epoch),
            ..Default::default()
        }
    }

    fn add(&mut self, c: crate::protocol::session::SnapshotChunk) -> Result<(), MirrorError> {
        if (c.epoch, c.seq) != (self.epoch, self.seq) {
            return Err(MirrorError::BadSnapshot(
                "chunk without a matching begin".into(),
            ));
        }
        self.parts += 1;
        match &self.local {
            Some(hub) => self.tickets.extend(hub.share_tickets(c.tickets)),
            None => self.tickets.extend(c.tickets.into_iter().map(Arc::new)),
        }
        self.volunteers.extend(c.volunteers);
        self.incidents.extend(c.incidents);
        self.alerts.extend(c.alerts);
        self.annotations.extend(c.annotations);
        Ok(())
    }

    fn finish(mut self, end: &crate::protocol::session::SnapshotEnd) -> Result<Self, MirrorError> {
        if (end.epoch, end.seq) != (self.epoch, self.seq) {
            return Err(MirrorError::BadSnapshot(
                "end without a matching begin".into(),
            ));
        }
        self.latest_event_ms = end.latest_event_ms;
        self.local = None;
        Ok(self)
    }

    /// Build the model from it (on any thread: the wall does it on a worker).
    pub fn build(self, county: Arc<County>) -> Result<Built, MirrorError> {
        let state = LiveState::from_shared(
            county,
            self.tickets,
            self.volunteers,
            self.incidents,
            self.alerts,
            self.annotations,
            self.latest_event_ms,
            // The gateway raises the breach alerts; the mirror applies them.
            crate::model::state::BreachWatch::Off,
        )
        .map_err(|e| MirrorError::BadSnapshot(e.to_string()))?;
        Ok(Built {
            epoch: self.epoch,
            seq: self.seq,
            state,
        })
    }

    pub fn progress(&self) -> SnapshotProgress {
        SnapshotProgress {
            chunks: self.parts,
            of_chunks: self.chunks,
            tickets: self.tickets.len(),
            of_tickets: self.expected_tickets,
        }
    }
}

/// A model built from a snapshot, ready for a mirror to take ([`Mirror::install`]).
pub struct Built {
    pub epoch: Epoch,
    pub seq: Seq,
    pub state: LiveState,
}

/// What the feed thread passes on to the wall for a message (see [`Assembler`]).
#[derive(Debug)]
pub enum Assembled {
    /// Not part of a snapshot: the wall handles it.
    Pass(ServerMsg),
    /// A snapshot is on its way, this far.
    Progress(SnapshotProgress),
    /// A snapshot is complete.
    Done(Box<Assembly>),
}

/// Assembles snapshots where the messages are read (the feed thread), so that a million
/// tickets go into their map beside the wall's frames, not in them.
#[derive(Default)]
pub struct Assembler {
    epoch: Option<Epoch>,
    building: Option<Assembly>,
}

impl Assembler {
    pub fn take(&mut self, msg: ServerMsg) -> Result<Assembled, MirrorError> {
        match msg {
            ServerMsg::Hello(h) => {
                self.epoch = Some(h.epoch);
                self.building = None;
                Ok(Assembled::Pass(ServerMsg::Hello(h)))
            }
            ServerMsg::SnapshotBegin(b) => {
                if let Some(expected) = self.epoch.filter(|e| *e != b.epoch) {
                    return Err(MirrorError::WrongEpoch {
                        expected,
                        got: b.epoch,
                    });
                }
                tracing::debug!(target: "datawall::feed", "assembling a snapshot of {} tickets in {} chunks", b.tickets, b.chunks);
                let a = Assembly::begin(&b);
                let progress = a.progress();
                self.building = Some(a);
                Ok(Assembled::Progress(progress))
            }
            ServerMsg::SnapshotChunk(c) => {
                let a = self.building.as_mut().ok_or_else(|| {
                    MirrorError::BadSnapshot("chunk without a matching begin".into())
                })?;
                a.add(c)?;
                Ok(Assembled::Progress(a.progress()))
            }
            ServerMsg::SnapshotEnd(end) => {
                let a = self.building.take().ok_or_else(|| {
                    MirrorError::BadSnapshot("end without a matching begin".into())
                })?;
                tracing::info!(target: "datawall::feed", "a snapshot of {} tickets has arrived", a.tickets.len());
                Ok(Assembled::Done(Box::new(a.finish(&end)?)))
            }
            other => Ok(Assembled::Pass(other)),
        }
    }
}

/// A snapshot on its way: chunks and tickets received of those its begin announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotProgress {
    pub chunks: usize,
    pub of_chunks: usize,
    pub tickets: usize,
    pub of_tickets: usize,
}

impl SnapshotProgress {
    /// Share received, 0–1 (by chunks: tickets, volunteers and the rest all count).
    pub fn fraction(&self) -> f32 {
        if self.of_chunks == 0 {
            return 0.0;
        }
        (self.chunks as f32 / self.of_chunks as f32).clamp(0.0, 1.0)
    }
}

/// A client-side copy of the server's state, kept in step by session messages.
pub struct Mirror {
    county: Arc<County>,
    pub state: Option<LiveState>,
    pub epoch: Option<Epoch>,
    /// Last sequence number applied (or covered by the loaded snapshot).
    pub last_seq: Seq,
    snapshot: Option<Assembly>,
    /// How far a snapshot assembled elsewhere (the feed thread) has come.
    progress: Option<SnapshotProgress>,
    /// Deltas that arrived while a snapshot was loading.
    buffered: Vec<crate::protocol::session::Delta>,
    pub rejected: u64,
    pub unknown: u64,
    pub last_rejection: Option<ApplyError>,
    /// The gateway in this process whose history this is, if one is: the tickets events
    /// change are then taken from its records where equal, so the process holds one copy.
    local: Option<std::sync::Weak<crate::net::hub::Hub>>,
    /// Tickets changed since the last time the local gateway's records were taken.
    unshared: Vec<crate::protocol::TicketId>,
    /// Ticket records taken from the local gateway after events.
    pub shared: u64,
}

impl Mirror {
    pub fn new(county: Arc<County>) -> Self {
        Self {
            county,
            state: None,
            epoch: None,
            last_seq: 0,
            snapshot: None,
            progress: None,
            buffered: Vec::new(),
            rejected: 0,
            unknown: 0,
            last_rejection: None,
            local: None,
            unshared: Vec::new(),
            shared: 0,
        }
    }

    /// How far a snapshot being received has come, if one is.
    pub fn snapshot_progress(&self) -> Option<SnapshotProgress> {
        self.snapshot
            .as_ref()
            .map(Assembly::progress)
            .or(self.progress)
    }

    /// How far a snapshot assembled elsewhere has come (the feed thread reports it).
    pub fn set_progress(&mut self, progress: SnapshotProgress) {
        self.progress = Some(progress);
    }

    /// Where to resume from after a disconnect.
    pub fn resume_point(&self) -> Option<(Epoch, Seq)> {
        match (self.epoch, &self.state) {
            (Some(e), Some(_)) => Some((e, self.last_seq)),
            _ => None,
        }
    }

    fn check_epoch(&self, got: Epoch) -> Result<(), MirrorError> {
        match self.epoch {
            Some(expected) if expected != got => Err(MirrorError::WrongEpoch { expected, got }),
            _ => Ok(()),
        }
    }

    pub fn handle(&mut self, msg: ServerMsg) -> Result<Handled, MirrorError> {
        match msg {
            ServerMsg::Hello(h) => {
                // A snapshot cut by the reconnect will not be finished.
                self.snapshot = None;
                self.progress = None;
                self.buffered.clear();
                if self.epoch != Some(h.epoch) || !h.resumed {
                    // A new history, or the server will send a snapshot: start clean.
                    self.state = None;
                    self.last_seq = 0;
                }
                self.epoch = Some(h.epoch);
                Ok(Handled::Hello)
            }
            ServerMsg::SnapshotBegin(b) => {
                self.check_epoch(b.epoch)?;
                self.snapshot = Some(Assembly::begin(&b));
                Ok(Handled::SnapshotProgress)
            }
            ServerMsg::SnapshotChunk(c) => {
                self.check_epoch(c.epoch)?;
                let a = self.snapshot.as_mut().ok_or_else(|| {
                    MirrorError::BadSnapshot("chunk without a matching begin".into())
                })?;
                a.add(c)?;
                Ok(Handled::SnapshotProgress)
            }
            ServerMsg::SnapshotEnd(end) => {
                self.check_epoch(end.epoch)?;
                let a = self.snapshot.take().ok_or_else(|| {
                    MirrorError::BadSnapshot("end without a matching begin".into())
                })?;
                self.load(a.finish(&end)?)
            }
            ServerMsg::Delta(d) => {
                self.check_epoch(d.epoch)?;
                if self.snapshot.is_some() || self.progress.is_some() {
                    self.buffered.push(d);
                    return Ok(Handled::SnapshotProgress);
                }
                self.apply_delta(d)
            }
            ServerMsg::Heartbeat(_) => Ok(Handled::Heartbeat),
            ServerMsg::Notice(n) => Ok(Handled::Notice(n.code)),
            ServerMsg::CommandResult(r) => Ok(Handled::CommandResult(r)),
        }
    }

    /// Take a complete snapshot: the model is rebuilt from it, then what arrived meanwhile is
    /// applied (skipping what the snapshot already covers).
    pub fn load(&mut self, a: Assembly) -> Result<Handled, MirrorError> {
        self.check_epoch(a.epoch)?;
        let built = a.build(Arc::clone(&self.county))?;
        self.install(built)
    }

    /// Take a model built from a snapshot ([`Assembly::build`]), then apply what arrived
    /// meanwhile.
    pub fn install(&mut self, built: Built) -> Result<Handled, MirrorError> {
        self.check_epoch(built.epoch)?;
        self.progress = None;
        self.state = Some(built.state);
        self.last_seq = built.seq;
        self.local = crate::net::hub::local_hub(built.epoch).map(|h| Arc::downgrade(&h));
        self.unshared.clear();
        for d in std::mem::take(&mut self.buffered) {
            self.apply_delta(d)?;
        }
        Ok(Handled::SnapshotLoaded { seq: built.seq })
    }

    fn apply_delta(&mut self, d: crate::protocol::session::Delta) -> Result<Handled, MirrorError> {
        let state = self.state.as_mut().ok_or(MirrorError::NotSynced)?;
        if d.last_seq <= self.last_seq {
            return Ok(Handled::Stale);
        }
        if d.follows() > self.last_seq {
            return Err(MirrorError::Gap {
                expected: self.last_seq,
                got: d.follows(),
            });
        }
        let (mut rejected, mut unknown) = (0, 0);
        let mut accepted = Vec::with_capacity(d.events.len());
        let last_seq = d.last_seq;
        for (seq, event) in d.events {
            if seq <= self.last_seq {
                continue;
            }
            match state.apply(&event) {
                Ok(change) => {
                    if self.local.is_some()
                        && let Some(id) = event.ticket_id()
                    {
                        self.unshared.push(id);
                    }
                    accepted.push(Accepted { seq, event, change })
                }
                Err(ApplyError::UnknownEventType) => unknown += 1,
                Err(e) => {
                    rejected += 1;
                    self.last_rejection = Some(e);
                }
            }
        }
        self.last_seq = last_seq;
        self.rejected += rejected as u64;
        self.unknown += unknown as u64;
        self.share_changed(false);
        Ok(Handled::Applied {
            events: accepted.len(),
            rejected,
            unknown,
            accepted,
        })
    }
}

/// Changed tickets a mirror remembers while its local gateway is busy (8 bytes each).
const MAX_UNSHARED: usize = 1 << 18;

impl Mirror {
    /// Take the local gateway's records of the tickets changed since the last time, waiting
    /// for its lock if it is busy (after each delta the mirror does so without waiting).
    pub fn share_changed_now(&mut self) {
        self.share_changed(true);
    }

    /// Take the local gateway's records of the tickets changed since the last time (see
    /// [`crate::net::hub::Hub::share_records`]); unless `wait`, while it is busy they wait for
    /// the next events. A record the gateway has moved past is taken once the mirror catches
    /// up with it, at the next event of that ticket.
    fn share_changed(&mut self, wait: bool) {
        if self.unshared.is_empty() {
            return;
        }
        let (Some(hub), Some(state)) = (
            self.local.as_ref().and_then(std::sync::Weak::upgrade),
            self.state.as_mut(),
        ) else {
            self.unshared.clear();
            return;
        };
        if let Some(n) = hub.share_records(&mut state.tickets, &self.unshared, wait) {
            self.shared += n as u64;
            self.unshared.clear();
        } else if self.unshared.len() > MAX_UNSHARED {
            // A gateway busy for that long: each ticket once, and at most half the bound (the
            // highest ids: the newest tickets).
            self.unshared.sort_unstable();
            self.unshared.dedup();
            let over = self.unshared.len().saturating_sub(MAX_UNSHARED / 2);
            self.unshared.drain(..over);
        }
    }
}

// The wall's link to its gateway: a named thread with its own runtime keeps the connection
// (reconnect with backoff, resume, heartbeats), measures nothing itself, and fetches moments
// of the history beside the live feed; the wall drains what it reports.

/// Messages in flight between the feed thread and the wall, at most.
const CHANNEL_CAPACITY: usize = 1_024;

const BACKOFF_MIN: Duration = Duration::from_millis(250);

/// Longest wait for a connection and its handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// A snapshot is on its way (assembled on the feed thread), this far.
    SnapshotProgress(SnapshotProgress),
    /// A snapshot, complete: the wall's mirror takes it whole.
    Snapshot(Box<Assembly>),
    Link(Link),
    /// A moment of the gateway's history (the timeline), or why it could not be had.
    History(Result<Box<HistoryMoment>, String>),
    /// The state at a past moment, for the figures' comparison (yesterday, last week).
    Past(TimestampMs, Result<Box<HistoryMoment>, String>),
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

impl HistoryMoment {
    /// The state the answer holds, built for `county` (the entities move out of `self`).
    pub fn take_state(&mut self, county: &Arc<County>) -> Result<LiveState, String> {
        LiveState::from_parts(
            Arc::clone(county),
            std::mem::take(&mut self.tickets),
            std::mem::take(&mut self.volunteers),
            std::mem::take(&mut self.incidents),
            std::mem::take(&mut self.alerts),
            std::mem::take(&mut self.annotations),
            self.latest_event_ms,
        )
        .map_err(|e| format!("the history's state does not load: {e}"))
    }
}

/// Feed time of events fetched with a moment, for playback (the next stretch is fetched when
/// the cursor reaches the end).
pub const PLAYBACK_FETCH_MS: TimestampMs = 5 * 60_000;

/// Ask the gateway for the state at `at_ms` (`GET /v1/history` on the feed's host).
async fn fetch_moment(target: &FeedTarget, at_ms: TimestampMs) -> Result<HistoryMoment, String> {
    fetch_history(target, at_ms, at_ms + PLAYBACK_FETCH_MS).await
}

/// Longest stretch an after-action reads (an incident open longer is cut there).
pub const AFTER_ACTION_MAX_MS: TimestampMs = 6 * 3_600_000;

/// The history for an incident's after-action: from just before `from_ms` (its opening, so
/// the opening is among the events) to `to_ms`, at most [`AFTER_ACTION_MAX_MS`].
async fn fetch_after_action(
    target: &FeedTarget,
    from_ms: TimestampMs,
    to_ms: TimestampMs,
) -> Result<HistoryMoment, String> {
    let to_ms = to_ms.clamp(from_ms, from_ms + AFTER_ACTION_MAX_MS);
    fetch_history(target, from_ms - 1, to_ms).await
}

/// One HTTP/1.1 exchange on the feed's host: `request` out, the whole answer back (read to the
/// close). Over `wss://` it is TLS, verified as the feed is (`--ca`, or the system's roots).
async fn http_exchange(target: &FeedTarget, request: String) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        mut s: S,
        request: &[u8],
    ) -> Result<Vec<u8>, String> {
        s.write_all(request).await.map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        match s.read_to_end(&mut body).await {
            Ok(_) => Ok(body),
            // A peer that closes without TLS's close_notify after a complete answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !body.is_empty() => Ok(body),
            Err(e) => Err(e.to_string()),
        }
    }
    let (secure, rest) = match (
        target.url.strip_prefix("wss://"),
        target.url.strip_prefix("ws://"),
    ) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        _ => return Err(format!("{} is not a ws:// or wss:// feed", target.url)),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>().is_ok())
        .map_or(authority, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if secure { 443 } else { 80 })
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("no answer from {addr}"))?
        .map_err(|e| format!("cannot reach {addr}: {e}"))?;
    let request = request.replace("{host}", authority);
    if !secure {
        return exchange(tcp, request.as_bytes()).await;
    }
    let config = match &target.tls {
        Some(c) => Arc::clone(c),
        None => super::tls::client_config(None).map_err(|e| e.to_string())?,
    };
    let name = rustls_pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host}: {e}"))?;
    let tls = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| format!("no TLS handshake from {addr}"))?
    .map_err(|e| format!("TLS with {addr}: {e}"))?;
    exchange(tls, request.as_bytes()).await
}

/// The state at `at_ms` and the events after it up to `to_ms` (model time), from the gateway's
/// `GET /v1/history`.
async fn fetch_history(
    target: &FeedTarget,
    at_ms: TimestampMs,
    to_ms: TimestampMs,
) -> Result<HistoryMoment, String> {
    let request = format!(
        "GET /v1/history?at={at_ms}&to={to_ms} HTTP/1.1\r\nHost: {{host}}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        target.token
    );
    let body = http_exchange(target, request).await?;
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
    /// The websocket opened (`at`: when, on the feed thread).
    Connected {
        at: Instant,
    },
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
    /// Fetch the state at this feed time, for the figures' comparison with the past
    /// (yesterday, last week) — no events after it.
    Past(TimestampMs),
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

impl FeedTarget {
    /// The URL the feed connects to: the snapshot in binary (`format=binary`) unless the URL
    /// names a format itself (`?format=json` takes it as JSON, e.g. to read it in a proxy).
    pub fn feed_url(&self) -> String {
        let names_format = self
            .url
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with("format=")));
        if names_format {
            return self.url.clone();
        }
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}format=binary", self.url)
    }
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
                FeedCommand::Past(at) => {
                    let why = "the feed is down; the history cannot be reached".to_owned();
                    if tx.send(FeedItem::Past(at, Err(why))).await.is_err() {
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
        let url = target.feed_url();
        let connect = FeedConnection::connect_with(&url, &target.token, resume, target.tls.clone());
        let error = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Err(_) => format!(
                "no answer from {} within {} s (host down or blocked?)",
                target.url,
                CONNECT_TIMEOUT.as_secs()
            ),
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(conn)) => {
                attempt = 0;
                let connected = Link::Connected { at: Instant::now() };
                if tx.send(FeedItem::Link(connected)).await.is_err() {
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
    let mut assembler = Assembler::default();
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
                let item = match assembler.take(msg) {
                    Ok(Assembled::Pass(msg)) => FeedItem::Msg(msg),
                    Ok(Assembled::Progress(p)) => FeedItem::SnapshotProgress(p),
                    Ok(Assembled::Done(a)) => FeedItem::Snapshot(a),
                    Err(e) => {
                        // Nothing of it reached the wall: start again with a fresh snapshot.
                        *resume = None;
                        conn.close().await;
                        return Err(format!("the snapshot could not be put together: {e}; asking for a fresh one"));
                    }
                };
                if tx.send(item).await.is_err() {
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
                    let (tx, target) = (tx.clone(), target.clone());
                    tokio::spawn(async move {
                        let moment = fetch_moment(&target, at).await.map(Box::new);
                        let _ = tx.send(FeedItem::History(moment)).await;
                    });
                }
                Some(FeedCommand::Past(at)) => {
                    let (tx, target) = (tx.clone(), target.clone());
                    tokio::spawn(async move {
                        let moment = fetch_history(&target, at, at).await.map(Box::new);
                        let _ = tx.send(FeedItem::Past(at, moment)).await;
                    });
                }
                Some(FeedCommand::AfterAction { incident_id, from_ms, to_ms }) => {
                    let (tx, target) = (tx.clone(), target.clone());
                    tokio::spawn(async move {
                        let h = fetch_after_action(&target, from_ms, to_ms)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff(0, 0.5), Duration::from_millis(250));
        assert!(backoff(3, 0.5) == Duration::from_secs(2));
        assert_eq!(backoff(30, 0.5), BACKOFF_MAX);
        assert!(backoff(2, 0.0) < backoff(2, 1.0));
        assert!(backoff(30, 1.0) <= BACKOFF_MAX.mul_f64(1.25));
    }
}
