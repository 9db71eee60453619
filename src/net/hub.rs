//! The hub: sequences accepted events, keeps the server's own model, a bounded replay ring
//! shared by every client, and a cached encoded snapshot. Handlers read from it at their
//! own cursor, so a slow client costs no memory beyond the shared ring.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};

use super::metrics::Metrics;
use crate::model::{ApplyError, County, LiveState};
use crate::protocol::binary::{Others, encode_chunk};
use crate::protocol::entities::{Alert, Annotation, Incident, Ticket, Volunteer};
use crate::protocol::session::{Epoch, Seq, ServerMsg, SnapshotBegin, SnapshotEnd, SnapshotFormat};
use crate::protocol::{Event, TimestampMs, VolunteerFix};

/// Sizes of the hub's buffers.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Events kept for replay (resume) and for slow clients to catch up…
    pub ring_capacity: usize,
    /// …and the most bytes they may take (their encoded lines and the ring's slots, half each:
    /// [`HubConfig::ring_slots`]): the oldest leave first, so a burst of large events (a
    /// million ticket openings at start-up, long notes) costs a shorter resume window, not
    /// memory.
    pub ring_max_bytes: usize,
    /// Tickets per snapshot chunk message.
    pub snapshot_chunk: usize,
}

impl HubConfig {
    /// Entries the ring holds at most: [`HubConfig::ring_capacity`], or as many as take half
    /// of [`HubConfig::ring_max_bytes`] if fewer (the other half is for their lines). The ring
    /// grows to them and no further (where doubling would overshoot them by up to half).
    pub fn ring_slots(&self) -> usize {
        self.ring_capacity
            .min(self.ring_max_bytes / (2 * std::mem::size_of::<Entry>()))
            .max(1)
    }

    /// Bytes the ring's lines may take: what its slots leave of [`HubConfig::ring_max_bytes`].
    fn ring_line_bytes(&self) -> usize {
        self.ring_max_bytes
            .saturating_sub(self.ring_slots() * std::mem::size_of::<Entry>())
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            ring_capacity: 200_000,
            ring_max_bytes: 32 << 20,
            snapshot_chunk: 5_000,
        }
    }
}

/// One sequenced event, encoded once for every client.
#[derive(Clone, Debug)]
pub struct Entry {
    pub seq: Seq,
    /// Set for volunteer fixes, which may be conflated (and travel as fields in a binary
    /// delta).
    pub fix: Option<VolunteerFix>,
    /// `[seq,{…event…}]`, in a block it shares with the lines published around it
    /// ([`LINE_BLOCK`]).
    pub json: Utf8Bytes,
}

/// The ring's lines are written one after another into blocks of this size, which leave the
/// heap whole once the ring has dropped every line in them. One allocation a line, freed as
/// the ring moves on, left the heap holed between the ticket records made meanwhile: pages
/// the allocator can neither reuse for them nor give back.
pub const LINE_BLOCK: usize = 256 << 10;

/// A snapshot shared by every client that needs it, for as long as one is sending it (the hub
/// keeps only a weak reference: no encoded snapshot outlives its use). Its messages (begin,
/// chunks…, end) are encoded one at a time as a client sends them: a client starts receiving
/// at once and decodes a chunk while the next is encoded. Binary chunks (about 32 bytes a
/// ticket) are encoded by the first client to need each and kept for the others; JSON chunks
/// (ten times larger: 370 MB at a million tickets) are encoded for each client as it sends
/// them and never kept, so a JSON client holds one chunk at a time. The begin and end are
/// text; the chunks are text (JSON) or binary (`protocol::binary`).
pub struct EncodedSnapshot {
    pub seq: Seq,
    pub format: SnapshotFormat,
    epoch: Epoch,
    chunk: usize,
    chunks: usize,
    messages: Vec<std::sync::OnceLock<Message>>,
    /// What the chunks are encoded from: until the last binary chunk is; JSON chunks, for as
    /// long as the snapshot is sent.
    source: Mutex<Option<Arc<SnapshotParts>>>,
    encoded: std::sync::atomic::AtomicUsize,
    pub built_at: Instant,
}

impl std::fmt::Debug for EncodedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedSnapshot")
            .field("seq", &self.seq)
            .field("format", &self.format)
            .field("messages", &self.messages.len())
            .finish()
    }
}

/// Chunks from which a snapshot is large enough for its memory to be handed back to the system
/// once every client has been sent it.
const TRIM_AFTER_CHUNKS: usize = 8;

impl Drop for EncodedSnapshot {
    fn drop(&mut self) {
        if self.chunks >= TRIM_AFTER_CHUNKS {
            super::metrics::trim_heap_in_background("sending a snapshot");
        }
    }
}

impl EncodedSnapshot {
    /// How many messages it takes (begin, chunks, end).
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Message `k`: encoded now if no client has needed it yet (a JSON chunk: always).
    pub fn message(&self, k: usize) -> Option<Message> {
        let slot = self.messages.get(k)?;
        if let Some(m) = slot.get() {
            return Some(m.clone());
        }
        if self.format == SnapshotFormat::Json {
            return Some(self.encode_chunk(k));
        }
        Some(slot.get_or_init(|| self.encode_chunk(k)).clone())
    }

    /// Every message in order (encoding those not yet encoded).
    pub fn messages(&self) -> impl Iterator<Item = Message> + '_ {
        (0..self.len()).filter_map(|k| self.message(k))
    }

    /// Bytes of all its messages.
    pub fn bytes(&self) -> usize {
        self.messages().map(|m| m.len()).sum()
    }

    /// Chunk message `k` (1 ..= chunks).
    fn encode_chunk(&self, k: usize) -> Message {
        let source = self
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(parts) = source else {
            // Every chunk was encoded before this one was asked for: cannot happen (each slot
            // is set before the count that frees the source moves).
            return Message::Binary(Bytes::new());
        };
        let part = k - 1;
        let these: Vec<&Ticket> = parts
            .tickets
            .chunks(self.chunk)
            .nth(part)
            .map(|c| c.iter().map(|(_, t)| &**t).collect())
            .unwrap_or_default();
        // The first chunk carries the volunteers, incidents, alerts and notes too.
        let others = if part == 0 {
            Others {
                volunteers: &parts.volunteers,
                incidents: &parts.incidents,
                alerts: &parts.alerts,
                annotations: &parts.annotations,
            }
        } else {
            Others::default()
        };
        let message = match self.format {
            SnapshotFormat::Json => Message::Text(Utf8Bytes::from(
                serde_json::to_string(&ChunkOut {
                    epoch: self.epoch,
                    seq: self.seq,
                    part,
                    tickets: these,
                    volunteers: others.volunteers,
                    incidents: others.incidents,
                    alerts: others.alerts,
                    annotations: others.annotations,
                })
                .unwrap_or_default(),
            )),
            SnapshotFormat::Binary => Message::Binary(Bytes::from(encode_chunk(
                self.epoch, self.seq, part, &these, others,
            ))),
        };
        // The last binary chunk encoded: the tickets are let go (the model stops copying on
        // write).
        if self.format == SnapshotFormat::Binary
            && self.encoded.fetch_add(1, Ordering::AcqRel) + 1 == self.chunks
        {
            *self.source.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        message
    }
}

/// A snapshot chunk as JSON, borrowing the tickets (the same object `ServerMsg::SnapshotChunk`
/// writes, without copying each ticket first).
#[derive(serde::Serialize)]
#[serde(tag = "type", rename = "snapshot_chunk")]
struct ChunkOut<'a> {
    epoch: Epoch,
    seq: Seq,
    part: usize,
    tickets: Vec<&'a Ticket>,
    volunteers: &'a [Volunteer],
    incidents: &'a [Incident],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    alerts: &'a [Alert],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    annotations: &'a [Annotation],
}

/// What a reader gets from [`Hub::read_after`].
#[derive(Debug)]
pub enum Read {
    /// Events after the cursor, oldest first (may be empty when up to date).
    Events(Vec<Entry>),
    /// The cursor is older than the ring: the client must be resynced with a snapshot.
    Behind,
}

/// The clock the feed runs on (the simulator's clock when accelerated).
pub type Clock = Arc<dyn Fn() -> TimestampMs + Send + Sync>;

/// Gateways serving from this process (`register_local`): a wall here shares their ticket
/// records instead of holding a copy of each.
static LOCAL: Mutex<Vec<std::sync::Weak<Hub>>> = Mutex::new(Vec::new());

/// Say `hub` serves from this process (an embedded gateway).
pub fn register_local(hub: &Arc<Hub>) {
    let mut local = LOCAL.lock().unwrap_or_else(|p| p.into_inner());
    local.retain(|h| h.strong_count() > 0);
    local.push(Arc::downgrade(hub));
}

/// The gateway in this process whose history is `epoch`, if one is.
pub fn local_hub(epoch: Epoch) -> Option<Arc<Hub>> {
    LOCAL
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .find(|h| h.epoch == epoch)
}

impl Hub {
    /// `tickets` with each one equal to this hub's record of it replaced by that record (one
    /// lookup each under the lock): a client in the same process holds no second copy.
    pub fn share_tickets(&self, tickets: Vec<Ticket>) -> Vec<Arc<Ticket>> {
        let inner = self.lock();
        tickets
            .into_iter()
            .map(|t| match inner.state.tickets.get(&t.id) {
                Some(h) if **h == t => Arc::clone(h),
                _ => Arc::new(t),
            })
            .collect()
    }

    /// In `tickets` (a client's model in this process), each of `ids` whose record equals this
    /// hub's replaced by the hub's, so the two hold one copy; how many were taken. Unless
    /// `wait`, it waits for no one: `None` while the hub is busy publishing (try again with
    /// the next events).
    pub fn share_records(
        &self,
        tickets: &mut crate::model::TicketMap,
        ids: &[crate::protocol::TicketId],
        wait: bool,
    ) -> Option<usize> {
        let inner = match self.inner.try_lock() {
            Ok(inner) => inner,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) if wait => self.lock(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        let mut taken = 0;
        for id in ids {
            if let (Some(mine), Some(theirs)) = (tickets.get_mut(id), inner.state.tickets.get(id))
                && !Arc::ptr_eq(mine, theirs)
                && **mine == **theirs
            {
                *mine = Arc::clone(theirs);
                taken += 1;
            }
        }
        Some(taken)
    }
}

/// A fresh 53-bit epoch (exact in every JSON implementation), never 0.
pub fn random_epoch() -> Epoch {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    ((nanos ^ (u64::from(std::process::id()) << 32)) & ((1 << 53) - 1)).max(1)
}

/// Wall-clock milliseconds since the epoch.
pub fn system_now_ms() -> TimestampMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as TimestampMs)
        .unwrap_or(0)
}

/// What a snapshot is encoded from, copied out of the state under the lock.
struct SnapshotParts {
    seq: Seq,
    /// In no order: sorted outside the lock.
    tickets: Vec<(
        crate::protocol::TicketId,
        Arc<crate::protocol::entities::Ticket>,
    )>,
    volunteers: Vec<crate::protocol::entities::Volunteer>,
    incidents: Vec<crate::protocol::entities::Incident>,
    alerts: Vec<crate::protocol::entities::Alert>,
    annotations: Vec<crate::protocol::entities::Annotation>,
    latest_event_ms: TimestampMs,
}

/// The hub's model and position (see [`Hub::export`]).
pub struct Exported {
    pub last_seq: Seq,
    pub stream_seq: u64,
    pub tickets: Vec<Arc<crate::protocol::entities::Ticket>>,
    pub volunteers: Vec<crate::protocol::entities::Volunteer>,
    pub incidents: Vec<crate::protocol::entities::Incident>,
    pub alerts: Vec<crate::protocol::entities::Alert>,
    pub annotations: Vec<crate::protocol::entities::Annotation>,
    pub latest_event_ms: TimestampMs,
}

struct Inner {
    state: LiveState,
    last_seq: Seq,
    /// Every event up to this sequence number has left the ring (or came before this
    /// gateway's starting point): a cursor below it must be resynced with a snapshot.
    floor: Seq,
    /// On a backbone: the last stream sequence applied (0 embedded).
    stream_seq: u64,
    /// Grown up to [`HubConfig::ring_slots`] and never past them.
    ring: VecDeque<Entry>,
    /// What the ring's lines take.
    line_bytes: usize,
    /// The rest of the block the next line is written into.
    lines: bytes::BytesMut,
    /// The last snapshot of each format, while a client still sends it.
    snapshots: [Weak<EncodedSnapshot>; 2],
    recorder: Option<Box<dyn Write + Send>>,
    history: Option<super::history::Writer>,
}

/// Shared by the source (publisher) and every connection handler.
pub struct Hub {
    inner: Mutex<Inner>,
    /// Held while a snapshot is encoded (outside `inner`): one encode at a time.
    encoding: Mutex<()>,
    latest: watch::Sender<Seq>,
    pub metrics: Arc<Metrics>,
    pub county: Arc<County>,
    pub epoch: Epoch,
    config: HubConfig,
    clock: Mutex<(Clock, f64)>,
    /// Feed-clock time the backbone was lost; 0 while it is up (or there is none).
    backbone_down_since_ms: AtomicI64,
    /// False while a gateway on a backbone is still catching up with the stream.
    caught_up: AtomicBool,
    /// The stream's latest message came from a simulator (its producer said so).
    simulated: AtomicBool,
}

/// Where a gateway on a backbone starts: the state a checkpoint holds and its position.
pub struct Restore {
    pub state: LiveState,
    pub last_seq: Seq,
    pub stream_seq: u64,
}

/// Bits of a feed sequence number that number the events inside one stream message: a
/// gateway on a backbone numbers the `i`-th event of stream message `s` as `s << 12 | i`,
/// so every gateway of the stream gives every event the same number.
pub const EVENT_INDEX_BITS: u32 = 12;
/// Events one stream message may carry (more are dropped, counted and logged).
pub const MAX_EVENTS_PER_MESSAGE: usize = 1 << EVENT_INDEX_BITS;

/// The feed sequence number of event `index` of stream message `stream_seq`.
pub fn feed_seq(stream_seq: u64, index: usize) -> Seq {
    (stream_seq << EVENT_INDEX_BITS) | index as u64
}

/// Counts of one publish call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub accepted: usize,
    pub rejected: usize,
}

impl Hub {
    /// A hub with its own history: a fresh epoch, sequence numbers from 1.
    pub fn new(county: Arc<County>, config: HubConfig) -> Self {
        Self::build(county, config, random_epoch(), None)
    }

    /// A hub that continues a history: its epoch, from the state and seq `restore` holds
    /// (walls at that seq resume without a snapshot).
    pub fn resumed(county: Arc<County>, config: HubConfig, epoch: Epoch, restore: Restore) -> Self {
        Self::build(county, config, epoch, Some(restore))
    }

    /// A hub that follows a backbone stream: the stream's epoch, starting from `restore`
    /// (a checkpoint) or from an empty state; not caught up until [`Hub::set_caught_up`].
    pub fn on_backbone(
        county: Arc<County>,
        config: HubConfig,
        epoch: Epoch,
        restore: Option<Restore>,
    ) -> Self {
        let hub = Self::build(county, config, epoch, restore);
        hub.caught_up.store(false, Ordering::Relaxed);
        hub
    }

    fn build(
        county: Arc<County>,
        config: HubConfig,
        epoch: Epoch,
        restore: Option<Restore>,
    ) -> Self {
        let (state, last_seq, stream_seq) = match restore {
            Some(r) => (r.state, r.last_seq, r.stream_seq),
            None => (LiveState::new(Arc::clone(&county)), 0, 0),
        };
        let (latest, _) = watch::channel(last_seq);
        Self {
            inner: Mutex::new(Inner {
                state,
                last_seq,
                floor: last_seq,
                stream_seq,
                ring: VecDeque::new(),
                line_bytes: 0,
                lines: bytes::BytesMut::new(),
                snapshots: [Weak::new(), Weak::new()],
                recorder: None,
                history: None,
            }),
            encoding: Mutex::new(()),
            latest,
            metrics: Arc::new(Metrics::default()),
            county,
            epoch: epoch.max(1),
            config,
            clock: Mutex::new((Arc::new(system_now_ms), 1.0)),
            backbone_down_since_ms: AtomicI64::new(0),
            caught_up: AtomicBool::new(true),
            simulated: AtomicBool::new(false),
        }
    }

    /// Whether the latest message of the backbone's stream came from a simulator.
    pub fn stream_simulated(&self) -> bool {
        self.simulated.load(Ordering::Relaxed)
    }

    pub fn set_stream_simulated(&self, simulated: bool) {
        self.simulated.store(simulated, Ordering::Relaxed);
    }

    /// Whether the hub has caught up with its backbone (always, embedded).
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }

    pub fn set_caught_up(&self) {
        if !self.caught_up.swap(true, Ordering::Relaxed) {
            tracing::info!(target: "datawall::hub", "caught up with the backbone at seq {}", self.last_seq());
            super::metrics::trim_heap_in_background("catching up with the backbone");
            self.latest.send_modify(|_| {});
        }
    }

    /// Since when (feed clock) the backbone has been unreachable, if it is.
    pub fn backbone_down_since_ms(&self) -> Option<TimestampMs> {
        match self.backbone_down_since_ms.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Mark the backbone down (keeping the first time it went down) or back up.
    pub fn set_backbone_down(&self, down: bool) {
        if down {
            let now = self.now_ms().max(1);
            let _ = self.backbone_down_since_ms.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        } else {
            self.backbone_down_since_ms.store(0, Ordering::Relaxed);
        }
        // Wake handlers so they tell their clients now, not at the next heartbeat.
        self.latest.send_modify(|_| {});
    }

    /// The last stream sequence applied (backbone).
    pub fn stream_seq(&self) -> u64 {
        self.lock().stream_seq
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the ring half-written (every mutation
        // is a push or pop), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set the feed clock and its rate relative to real time (the simulator's `--speed`).
    pub fn set_clock(&self, clock: Clock, rate: f64) {
        *self.clock.lock().unwrap_or_else(|p| p.into_inner()) = (clock, rate);
    }

    /// Now on the feed clock, ms.
    pub fn now_ms(&self) -> TimestampMs {
        (self.clock.lock().unwrap_or_else(|p| p.into_inner()).0)()
    }

    pub fn clock_rate(&self) -> f64 {
        self.clock.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// Keep every accepted event in `writer`'s history from now on.
    pub fn set_history(&self, writer: super::history::Writer) {
        self.lock().history = Some(writer);
    }

    /// The history's write errors and bytes written (0, 0 without one).
    pub fn history_stats(&self) -> (u64, u64) {
        self.lock()
            .history
            .as_ref()
            .map_or((0, 0), |h| (h.errors, h.bytes))
    }

    /// Write every accepted event to `w` as NDJSON (see `net::replay`).
    pub fn set_recorder(&self, w: Box<dyn Write + Send>) {
        self.lock().recorder = Some(w);
    }

    /// Flush and close the recording (a gzip recording is only complete after this).
    pub fn finish_recorder(&self) -> std::io::Result<()> {
        let w = self.lock().recorder.take();
        match w {
            Some(mut w) => w.flush(),
            None => Ok(()),
        }
    }

    pub fn flush_recorder(&self) -> std::io::Result<()> {
        match self.lock().recorder.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    /// Subscribe to the latest sequence number.
    pub fn subscribe(&self) -> watch::Receiver<Seq> {
        self.latest.subscribe()
    }

    pub fn last_seq(&self) -> Seq {
        self.lock().last_seq
    }

    /// Apply events to the server's model; sequence, encode and keep the accepted ones.
    /// Rejected events are logged and counted, never forwarded.
    pub fn publish(&self, events: impl IntoIterator<Item = Event>) -> Published {
        self.publish_with(events, |_, _| {})
    }

    /// Like [`Hub::publish`], telling `on_each` the model's verdict on every event in order.
    pub fn publish_with(
        &self,
        events: impl IntoIterator<Item = Event>,
        mut on_each: impl FnMut(usize, Result<Seq, ApplyError>),
    ) -> Published {
        let mut report = Published::default();
        let last = {
            let mut inner = self.lock();
            for (i, event) in events.into_iter().enumerate() {
                let seq = inner.last_seq + 1;
                let verdict = self.accept(&mut inner, seq, &event, &mut report);
                on_each(i, verdict);
            }
            Self::flush_history(&mut inner);
            inner.last_seq
        };
        let report = self.published(report, last);
        if report.accepted == 0 {
            // The position moved though no event was sequenced: tell whoever waits on it.
            self.latest.send_modify(|_| {});
        }
        report
    }

    /// Apply the events of stream message `stream_seq` (a backbone gateway): event `i` gets
    /// the sequence number [`feed_seq`]`(stream_seq, i)`. A message at or before the last one
    /// applied is a redelivery and is skipped.
    pub fn publish_stream_message(&self, stream_seq: u64, events: Vec<Event>) -> Published {
        let mut report = Published::default();
        let last = {
            let mut inner = self.lock();
            if stream_seq <= inner.stream_seq {
                return report;
            }
            inner.stream_seq = stream_seq;
            let n = events.len();
            for (i, event) in events.into_iter().enumerate() {
                if i >= MAX_EVENTS_PER_MESSAGE {
                    report.rejected += n - i;
                    tracing::warn!(target: "datawall::hub", "stream message {stream_seq}: {} events over the limit of {MAX_EVENTS_PER_MESSAGE} dropped", n - i);
                    break;
                }
                let _ = self.accept(&mut inner, feed_seq(stream_seq, i), &event, &mut report);
            }
            Self::flush_history(&mut inner);
            inner.last_seq
        };
        self.published(report, last)
    }

    fn published(&self, report: Published, last: Seq) -> Published {
        Metrics::add(&self.metrics.events_in, report.accepted as u64);
        Metrics::add(&self.metrics.events_rejected, report.rejected as u64);
        if report.accepted > 0 {
            self.latest.send_replace(last);
        }
        report
    }

    fn flush_history(inner: &mut Inner) {
        if let Some(h) = inner.history.as_mut()
            && let Err(e) = h.flush()
        {
            tracing::error!(target: "datawall::history", "history write failed: {e}; the live feed goes on, events are not kept until the next segment (check the disk)");
        }
    }

    /// Apply one event under the lock and, when the model accepts it, sequence it as `seq`.
    fn accept(
        &self,
        inner: &mut Inner,
        seq: Seq,
        event: &Event,
        report: &mut Published,
    ) -> Result<Seq, ApplyError> {
        if let Err(e) = inner.state.apply(event) {
            report.rejected += 1;
            tracing::warn!(target: "datawall::hub", "dropped {}: {e}", event.type_name());
            return Err(e);
        }
        let pruned = inner.state.take_pruned();
        let n = pruned.tickets.len() + pruned.incidents.len();
        if n > 0 {
            Metrics::add(&self.metrics.pruned, n as u64);
        }
        report.accepted += 1;
        inner.last_seq = seq;
        let event_json = serde_json::to_string(event).unwrap_or_default();
        if let Some(w) = inner.recorder.as_mut()
            && let Err(e) = writeln!(w, "{event_json}")
        {
            tracing::error!(target: "datawall::hub", "recording stopped: {e}");
            inner.recorder = None;
        }
        let fix = match event {
            Event::VolunteerFix(f) => Some(f.clone()),
            _ => None,
        };
        let line = format!("[{seq},{event_json}]");
        let t_ms = inner.state.latest_event_ms;
        if let Some(h) = inner.history.as_mut()
            && let Err(e) = h.append(seq, t_ms, &line)
        {
            tracing::error!(target: "datawall::history", "history write failed: {e}; the live feed goes on, events are not kept until the next segment (check the disk)");
        }
        if inner.lines.capacity() < line.len() {
            inner.lines = bytes::BytesMut::with_capacity(LINE_BLOCK.max(line.len()));
        }
        inner.lines.extend_from_slice(line.as_bytes());
        let json = Utf8Bytes::try_from(inner.lines.split())
            .unwrap_or_else(|_| Utf8Bytes::from(line.as_str()));
        let entry = Entry { seq, fix, json };
        // Room in the slots first (the ring never grows past them), then in the lines; the
        // newest entry always stays, however large.
        let (slots, line_bytes) = (self.config.ring_slots(), self.config.ring_line_bytes());
        while inner.ring.len() >= slots
            && let Some(old) = inner.ring.pop_front()
        {
            inner.line_bytes -= old.json.len();
            inner.floor = old.seq;
        }
        if inner.ring.len() == inner.ring.capacity() {
            let len = inner.ring.len();
            inner
                .ring
                .reserve_exact((len * 2).max(1024).min(slots) - len);
        }
        inner.line_bytes += entry.json.len();
        inner.ring.push_back(entry);
        while inner.ring.len() > 1
            && inner.line_bytes > line_bytes
            && let Some(old) = inner.ring.pop_front()
        {
            inner.line_bytes -= old.json.len();
            inner.floor = old.seq;
        }
        Ok(seq)
    }

    /// Up to `max` events after `cursor`.
    pub fn read_after(&self, cursor: Seq, max: usize) -> Read {
        let inner = self.lock();
        if cursor < inner.floor {
            return Read::Behind;
        }
        // Sequence numbers increase along the ring but may have holes (backbone).
        let start = inner.ring.partition_point(|e| e.seq <= cursor);
        Read::Events(inner.ring.range(start..).take(max).cloned().collect())
    }

    /// How many events the ring holds after `cursor` (a client's backlog).
    pub fn events_after(&self, cursor: Seq) -> usize {
        let inner = self.lock();
        inner.ring.len() - inner.ring.partition_point(|e| e.seq <= cursor)
    }

    /// Whether a client at `cursor` of `epoch` can continue from the ring.
    pub fn can_resume(&self, epoch: Epoch, cursor: Seq) -> bool {
        if epoch != self.epoch {
            return false;
        }
        let inner = self.lock();
        cursor <= inner.last_seq && cursor >= inner.floor
    }

    /// A JSON snapshot (see [`Hub::snapshot_as`]).
    pub fn snapshot(&self) -> Arc<EncodedSnapshot> {
        self.snapshot_as(SnapshotFormat::Json)
    }

    /// A snapshot the ring can continue from, in `format`: the one another client is still
    /// being sent while the ring still holds every event after it and it is less than half a
    /// ring old, else a fresh one.
    ///
    /// A fresh one is copied under the lock (a pointer per ticket, the roster and incidents)
    /// and encoded outside it, so publishing goes on while it is encoded; one encode runs at
    /// a time, and callers that waited for it take its result.
    pub fn snapshot_as(&self, format: SnapshotFormat) -> Arc<EncodedSnapshot> {
        let _one_encoder = self.encoding.lock().unwrap_or_else(|p| p.into_inner());
        let slot = format as usize;
        let parts = {
            let inner = self.lock();
            if let Some(s) = inner.snapshots[slot].upgrade()
                && s.seq >= inner.floor
                && inner.ring.len() - inner.ring.partition_point(|e| e.seq <= s.seq)
                    < self.config.ring_capacity / 2
            {
                return s;
            }
            Self::parts(&inner)
        };
        let snap = Arc::new(self.encode_snapshot(parts, format));
        self.lock().snapshots[slot] = Arc::downgrade(&snap);
        snap
    }

    fn parts(inner: &Inner) -> SnapshotParts {
        SnapshotParts {
            seq: inner.last_seq,
            tickets: inner.state.tickets_shared(),
            volunteers: inner.state.volunteers.clone(),
            incidents: inner
                .state
                .incidents_sorted()
                .into_iter()
                .cloned()
                .collect(),
            alerts: inner.state.alerts_sorted().into_iter().cloned().collect(),
            annotations: inner
                .state
                .annotations_sorted()
                .into_iter()
                .cloned()
                .collect(),
            latest_event_ms: inner.state.latest_event_ms,
        }
    }

    /// The whole model and its position, copied under the lock (tickets by pointer) and
    /// returned sorted by id: what a checkpoint holds.
    pub fn export(&self) -> Exported {
        let (parts, stream_seq) = {
            let inner = self.lock();
            (Self::parts(&inner), inner.stream_seq)
        };
        let mut tickets = parts.tickets;
        tickets.sort_unstable_by_key(|(id, _)| *id);
        Exported {
            last_seq: parts.seq,
            stream_seq,
            tickets: tickets.into_iter().map(|(_, t)| t).collect(),
            volunteers: parts.volunteers,
            incidents: parts.incidents,
            alerts: parts.alerts,
            annotations: parts.annotations,
            latest_event_ms: parts.latest_event_ms,
        }
    }

    /// A snapshot of `parts` whose begin and end are ready and whose chunks are encoded as
    /// they are sent.
    fn encode_snapshot(&self, mut parts: SnapshotParts, format: SnapshotFormat) -> EncodedSnapshot {
        parts.tickets.sort_unstable_by_key(|(id, _)| *id);
        let chunk = self.config.snapshot_chunk.max(1);
        let chunks = parts.tickets.len().div_ceil(chunk).max(1);
        let text = |m: &ServerMsg| {
            Message::Text(Utf8Bytes::from(
                serde_json::to_string(m).unwrap_or_default(),
            ))
        };
        let messages: Vec<std::sync::OnceLock<Message>> = (0..chunks + 2)
            .map(|_| std::sync::OnceLock::new())
            .collect();
        let _ = messages[0].set(text(&ServerMsg::SnapshotBegin(SnapshotBegin {
            epoch: self.epoch,
            seq: parts.seq,
            chunks,
            tickets: parts.tickets.len(),
            volunteers: parts.volunteers.len(),
            incidents: parts.incidents.len(),
        })));
        let _ = messages[chunks + 1].set(text(&ServerMsg::SnapshotEnd(SnapshotEnd {
            epoch: self.epoch,
            seq: parts.seq,
            latest_event_ms: parts.latest_event_ms,
        })));
        EncodedSnapshot {
            seq: parts.seq,
            format,
            epoch: self.epoch,
            chunk,
            chunks,
            messages,
            source: Mutex::new(Some(Arc::new(parts))),
            encoded: std::sync::atomic::AtomicUsize::new(0),
            built_at: Instant::now(),
        }
    }

    /// A copy of the server's model (tests, diagnostics).
    pub fn state(&self) -> LiveState {
        self.lock().state.clone()
    }

    /// The last sequence number and a copy of the model at it, read together.
    pub fn state_at_seq(&self) -> (Seq, LiveState) {
        let inner = self.lock();
        (inner.last_seq, inner.state.clone())
    }

    /// Run `f` on the server's model under the lock (the simulator reads it to plan).
    pub fn with_state<R>(&self, f: impl FnOnce(&LiveState) -> R) -> R {
        f(&self.lock().state)
    }

    pub fn ring_len(&self) -> usize {
        self.lock().ring.len()
    }

    pub fn ring_capacity(&self) -> usize {
        self.config.ring_capacity
    }

    /// What the ring takes now, bytes: its slots and its lines (at most
    /// [`HubConfig::ring_max_bytes`] unless it holds one entry).
    pub fn ring_bytes(&self) -> usize {
        Self::ring_bytes_of(&self.lock())
    }

    fn ring_bytes_of(inner: &Inner) -> usize {
        inner.ring.capacity() * std::mem::size_of::<Entry>() + inner.line_bytes
    }

    /// `/metrics` text including the hub's own gauges.
    pub fn render_metrics(&self) -> String {
        let cursors = self.metrics.client_cursors();
        let (last, ring, ring_bytes, open, held, lags) = {
            let inner = self.lock();
            // Backlogs in events (sequence numbers have holes on a backbone); a client
            // behind the ring counts at least the whole ring.
            let lags: Vec<u64> = cursors
                .iter()
                .map(|&c| (inner.ring.len() - inner.ring.partition_point(|e| e.seq <= c)) as u64)
                .collect();
            (
                inner.last_seq,
                inner.ring.len() as u64,
                Self::ring_bytes_of(&inner) as u64,
                inner.state.open_tickets().count() as u64,
                [
                    inner.state.tickets.len() as u64,
                    inner.state.incidents.len() as u64,
                    inner.state.alerts.len() as u64,
                ],
                lags,
            )
        };
        let (history_errors, history_bytes) = self.history_stats();
        self.metrics.render(
            &lags,
            &[
                ("datawall_last_seq", "Latest sequence number", last),
                ("datawall_ring_events", "Events held for replay", ring),
                (
                    "datawall_ring_capacity",
                    "Replay buffer capacity",
                    self.config.ring_capacity as u64,
                ),
                (
                    "datawall_ring_bytes",
                    "Bytes the replay buffer's events take",
                    ring_bytes,
                ),
                (
                    "datawall_ring_max_bytes",
                    "Most bytes the replay buffer may take",
                    self.config.ring_max_bytes as u64,
                ),
                (
                    "datawall_open_tickets",
                    "Open tickets in the server's model",
                    open,
                ),
                (
                    "datawall_tickets",
                    "Tickets in the server's model (open, and resolved within a day)",
                    held[0],
                ),
                (
                    "datawall_incidents",
                    "Incidents in the server's model (active, and closed within a day)",
                    held[1],
                ),
                (
                    "datawall_alerts",
                    "Breach alerts in the server's model",
                    held[2],
                ),
                (
                    "datawall_history_write_errors",
                    "Failed writes to the history since start (the feed went on; check the disk)",
                    history_errors,
                ),
                (
                    "datawall_history_bytes",
                    "Bytes of events written to the history since start",
                    history_bytes,
                ),
            ],
        )
    }
}
