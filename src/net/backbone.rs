//! The NATS JetStream backbone: producers publish events to `datawall.<county>.events`
//! (stream `DW_<county>`), every gateway of the county follows the stream into its hub, and
//! one gateway at a time writes checkpoints (object store) so a starting gateway loads the
//! latest one and then only the stream's tail.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use async_nats::jetstream::{self, consumer, object_store, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::hub::{Hub, Restore, system_now_ms};
use crate::model::{County, LiveState};
use crate::protocol::entities::{Incident, Ticket, Volunteer};
use crate::protocol::session::{Epoch, Seq};
use crate::protocol::{Event, TimestampMs};

/// Header: the producer's feed clock when it published (ms since the epoch).
pub const CLOCK_HEADER: &str = "Datawall-Clock-Ms";
/// Header: how fast that clock runs relative to real time (the simulator's `--speed`).
pub const CLOCK_RATE_HEADER: &str = "Datawall-Clock-Rate";
/// Set to `true` by a producer whose events are simulated (`datawall sim`): the gateways of
/// the stream then tell their walls so (`hello.simulated`), as long as the stream's latest
/// message says it.
pub const SIMULATED_HEADER: &str = "Datawall-Simulated";
/// Set to `gateway` on what the gateways publish themselves (alerts, operators' commands,
/// events posted to `/v1/events`): not a producer's word on whether the feed is simulated.
pub const ORIGIN_HEADER: &str = "Datawall-Origin";
/// Stream metadata key holding the feed epoch every gateway of the stream announces.
pub const EPOCH_METADATA: &str = "datawall_epoch";
/// How long JetStream remembers a `Nats-Msg-Id` to drop a retried publish.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Largest message body a producer should publish (the server's default `max_payload`).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Bytes a gateway asks for in one pull: well under the server's 64 MiB per client.
const PULL_BYTES: usize = 8 * 1024 * 1024;

/// The names one county uses on the backbone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub county_code: u64,
}

impl Names {
    pub fn new(county_code: u64) -> Self {
        Self { county_code }
    }
    /// `DW_<county>`
    pub fn stream(&self) -> String {
        format!("DW_{}", self.county_code)
    }
    /// `datawall.<county>.events`: where producers publish. A producer may add tokens naming
    /// itself (`datawall.<county>.events.sim`); the stream takes both.
    pub fn events(&self) -> String {
        format!("datawall.{}.events", self.county_code)
    }
    /// The simulator's own subject inside the stream (it finds where it stopped there).
    pub fn sim_events(&self) -> String {
        format!("{}.sim", self.events())
    }
    /// `datawall.<county>.commands`: operators' commands as NATS requests to the platform
    /// (not in the stream; the platform's answers are events in it).
    pub fn commands(&self) -> String {
        format!("datawall.{}.commands", self.county_code)
    }
    /// Object store bucket of the checkpoints.
    pub fn checkpoints(&self) -> String {
        format!("DW_{}_checkpoints", self.county_code)
    }
    /// Key-value bucket holding the checkpoint writer's lease.
    pub fn lease(&self) -> String {
        format!("DW_{}_lease", self.county_code)
    }
}

/// The hub a connection marks down when it is lost (set once the hub exists).
pub type HubCell = Arc<std::sync::OnceLock<Arc<Hub>>>;

/// A gateway's connection: a server that is not up yet is retried in the background.
pub async fn connect_gateway(url: &str, hub: HubCell) -> Result<async_nats::Client> {
    connect(url, "datawall-gateway", hub, true).await
}

/// Connect to NATS. The hub in `hub`, once set, is marked down while the connection is
/// lost. With `retry`, a server that is not up yet is retried in the background; without,
/// an unreachable server is an error at once.
pub async fn connect(
    url: &str,
    name: &str,
    hub: HubCell,
    retry: bool,
) -> Result<async_nats::Client> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100u64 << attempts.min(5) as u32).min(2_000))
        })
        .event_callback(move |event| {
            let hub = hub.get().cloned();
            async move {
                match event {
                    async_nats::Event::Disconnected => {
                        tracing::warn!(target: "datawall::backbone", "lost the NATS connection; reconnecting");
                        if let Some(h) = &hub {
                            h.set_backbone_down(true);
                        }
                    }
                    async_nats::Event::Connected => {
                        tracing::info!(target: "datawall::backbone", "connected to NATS");
                        if let Some(h) = &hub {
                            h.set_backbone_down(false);
                        }
                    }
                    other => tracing::info!(target: "datawall::backbone", "NATS: {other}"),
                }
            }
        });
    if retry {
        opts = opts.retry_on_initial_connect();
    }
    opts.connect(url).await.with_context(|| {
        format!("cannot reach NATS at {url}: start it (scripts/nats) or fix --nats")
    })
}

/// Get the county's stream, creating it (file storage, 2-minute duplicate window, a fresh
/// epoch in its metadata) when it does not exist. Returns the stream and its epoch.
pub async fn ensure_stream(
    js: &jetstream::Context,
    names: &Names,
) -> Result<(stream::Stream, Epoch)> {
    let mut metadata = HashMap::new();
    metadata.insert(
        EPOCH_METADATA.to_owned(),
        super::hub::random_epoch().to_string(),
    );
    metadata.insert("datawall_county".to_owned(), names.county_code.to_string());
    let config = stream::Config {
        name: names.stream(),
        subjects: vec![names.events(), format!("{}.>", names.events())],
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        allow_direct: true,
        max_message_size: MAX_BODY_BYTES as i32,
        metadata,
        description: Some(format!(
            "Datawall events of county {} (docs/PROTOCOL.md)",
            names.county_code
        )),
        ..Default::default()
    };
    let mut stream = match js.get_or_create_stream(config).await {
        Ok(s) => s,
        // Another gateway or producer created it at the same moment (with its own epoch).
        Err(first) => js
            .get_stream(names.stream())
            .await
            .map_err(|_| first)
            .with_context(|| {
                format!(
                    "cannot open or create the JetStream stream {}",
                    names.stream()
                )
            })?,
    };
    let epoch = stream_epoch(stream.info().await.context("reading the stream's info")?);
    Ok((stream, epoch))
}

/// The feed epoch of a stream: from its metadata, or (a stream made by someone else) from
/// the time it was created; either way the same for every gateway, and new if the stream is
/// deleted and made again.
pub fn stream_epoch(info: &stream::Info) -> Epoch {
    info.config
        .metadata
        .get(EPOCH_METADATA)
        .and_then(|e| e.parse::<Epoch>().ok())
        .filter(|e| *e > 0)
        .unwrap_or_else(|| ((info.created.unix_timestamp_nanos() as u64) & ((1 << 53) - 1)).max(1))
}

/// Why one line of a message body was not taken.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LineError {
    /// 1-based line number in the body.
    pub line: usize,
    pub reason: String,
}

/// Decode a message body: one event object (possibly spread over lines) or NDJSON, one event
/// a line; blank lines are skipped. Every line's result in order, with its line number.
pub fn parse_events(body: &[u8]) -> Vec<(usize, Result<Event, String>)> {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => return vec![(1, Err(format!("not UTF-8: {e}")))],
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Vec::new();
    }
    // A single (pretty-printed) object.
    if trimmed.contains('\n')
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(trimmed)
        && v.is_object()
    {
        return vec![(
            1,
            serde_json::from_value::<Event>(v).map_err(|e| e.to_string()),
        )];
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, decode_event(l)))
        .collect()
}

fn decode_event(line: &str) -> Result<Event, String> {
    match serde_json::from_str::<Event>(line) {
        Ok(Event::Unknown) => Err(format!(
            "unknown event type {}",
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("type").map(|t| t.to_string()))
                .unwrap_or_else(|| "(none)".into())
        )),
        Ok(e) => Ok(e),
        Err(e) => Err(e.to_string()),
    }
}

/// NDJSON of `events`, one a line.
pub fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 160);
    for e in events {
        if serde_json::to_writer(&mut out, e).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// Follow the stream into `hub` from the message after the hub's position, until shutdown.
/// Connection trouble marks the backbone down and the consumer is made again from where the
/// hub stopped, so nothing is skipped or applied twice.
pub async fn follow(
    hub: Arc<Hub>,
    js: jetstream::Context,
    names: Names,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let run = follow_once(&hub, &js, &names, &mut shutdown);
        match run.await {
            Ok(()) => return,
            Err(e) => {
                hub.set_backbone_down(true);
                tracing::warn!(target: "datawall::backbone", "following {}: {e:#}; retrying in {} ms", names.stream(), backoff.as_millis());
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn follow_once(
    hub: &Arc<Hub>,
    js: &jetstream::Context,
    names: &Names,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<()> {
    let mut stream = js
        .get_stream(names.stream())
        .await
        .context("reading the stream")?;
    let target = stream
        .info()
        .await
        .context("stream info")?
        .state
        .last_sequence;
    let start = hub.stream_seq() + 1;
    if target < start {
        hub.set_caught_up();
    }
    // An ephemeral consumer without acks, read in pulls bounded in bytes (NATS drops a client
    // that has more than 64 MiB on its way to it; 500 messages of up to 1 MiB would be); it
    // is made again from the hub's position when anything goes wrong.
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            memory_storage: true,
            description: Some("datawall gateway".into()),
            ..Default::default()
        })
        .await
        .context("creating the gateway's consumer")?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(256)
        .max_bytes_per_batch(PULL_BYTES)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .context("subscribing")?;
    let mut consumer_seq = 0;
    // Nothing to deliver (the stream's tail was deleted, or it is all applied): caught up.
    let mut consumer = consumer;
    if consumer.info().await.map(|i| i.num_pending).unwrap_or(1) == 0 {
        hub.set_caught_up();
    }
    hub.set_backbone_down(false);
    tracing::info!(target: "datawall::backbone", "following {} from stream message {start} (stream holds {target})", names.stream());
    loop {
        let next = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            m = messages.next() => m,
        };
        let message = match next {
            None => anyhow::bail!("the consumer ended"),
            Some(Err(e)) => anyhow::bail!("consumer: {e}"),
            Some(Ok(m)) => m,
        };
        let (stream_seq, pending) = match message.info() {
            Ok(info) => {
                // Delivered in order, none missed (else: made again from where the hub is).
                if info.consumer_sequence != consumer_seq + 1 {
                    anyhow::bail!(
                        "consumer sequence jumped from {consumer_seq} to {}",
                        info.consumer_sequence
                    );
                }
                consumer_seq = info.consumer_sequence;
                (info.stream_sequence, info.pending)
            }
            Err(e) => anyhow::bail!("a message without stream info: {e}"),
        };
        if let Some(headers) = &message.headers {
            follow_clock(hub, headers, &message);
        }
        // A producer's message says whether the feed is simulated (it stays so through the
        // gateways' own messages in between).
        let headers = message.headers.as_ref();
        if headers
            .and_then(|h| h.get(ORIGIN_HEADER))
            .is_none_or(|v| v.as_str() != "gateway")
        {
            hub.set_stream_simulated(
                headers
                    .and_then(|h| h.get(SIMULATED_HEADER))
                    .is_some_and(|v| v.as_str() == "true"),
            );
        }
        // Far-future stamps are judged against the message itself (the feed clock its
        // publisher sent with it, else the time the stream stored it), so every gateway of
        // the stream refuses the same events.
        let (reference_ms, reference) = match message_clock(&message) {
            Some(ms) => (ms, "the feed clock its message carries"),
            None => (
                message
                    .info()
                    .map(|i| (i.published.unix_timestamp_nanos() / 1_000_000) as TimestampMs)
                    .unwrap_or(TimestampMs::MAX),
                "the time the stream stored its message",
            ),
        };
        let mut events = Vec::new();
        for (line, parsed) in parse_events(&message.payload) {
            let parsed = parsed.and_then(|e| {
                super::gateway::ingest::within_clock(&e, reference_ms, reference).map(|()| e)
            });
            match parsed {
                Ok(e) => events.push(e),
                Err(why) => {
                    super::metrics::Metrics::inc(&hub.metrics.events_rejected);
                    tracing::warn!(target: "datawall::backbone", "stream message {stream_seq} line {line}: {why}; dropped");
                }
            }
        }
        hub.publish_stream_message(stream_seq, events);
        if hub.backbone_down_since_ms().is_some() {
            hub.set_backbone_down(false);
        }
        if pending == 0 || stream_seq >= target {
            hub.set_caught_up();
        }
    }
}

/// The feed clock a message's headers carry (its publisher's clock when it was sent), if a
/// usable one.
fn message_clock(message: &jetstream::Message) -> Option<TimestampMs> {
    const LATEST_MS: TimestampMs = 16_725_225_600_000; // 2500-01-01
    message
        .headers
        .as_ref()?
        .get(CLOCK_HEADER)?
        .as_str()
        .parse::<TimestampMs>()
        .ok()
        .filter(|ms| (0..LATEST_MS).contains(ms))
}

/// Take the producer's feed clock from a message's headers, advanced by the time since it
/// was published.
fn follow_clock(hub: &Hub, headers: &async_nats::HeaderMap, message: &jetstream::Message) {
    // A producer's header is input like any other: a clock outside 1970..2500 or a rate
    // outside 0..=10 000 is ignored (logged), never trusted into an overflow.
    const LATEST_MS: TimestampMs = 16_725_225_600_000; // 2500-01-01
    let clock_ms = headers
        .get(CLOCK_HEADER)
        .and_then(|v| v.as_str().parse::<TimestampMs>().ok());
    let Some(clock_ms) = clock_ms else { return };
    let rate = headers
        .get(CLOCK_RATE_HEADER)
        .map(|v| v.as_str().parse::<f64>().unwrap_or(f64::NAN))
        .unwrap_or(1.0);
    if !(0..LATEST_MS).contains(&clock_ms) || !(0.0..=10_000.0).contains(&rate) {
        tracing::warn!(target: "datawall::backbone", "ignoring a producer clock of {clock_ms} ms at rate {rate}: out of range");
        return;
    }
    let published_ms = message
        .info()
        .map(|i| (i.published.unix_timestamp_nanos() / 1_000_000) as TimestampMs)
        .unwrap_or_else(|_| system_now_ms());
    let since_ms = (system_now_ms() - published_ms).clamp(0, 365 * 86_400_000);
    let base = clock_ms.saturating_add((since_ms as f64 * rate) as TimestampMs);
    hub.set_clock(Arc::new(super::source::accelerated_clock(base, rate)), rate);
}

/// What a checkpoint holds: the model and the position it covers.
#[derive(Serialize, Deserialize)]
pub struct Checkpoint<T = Ticket> {
    pub format: u32,
    pub county_code: u64,
    pub epoch: Epoch,
    pub roster_scale: u32,
    pub grid_split: u32,
    pub last_seq: Seq,
    pub stream_seq: u64,
    pub latest_event_ms: TimestampMs,
    pub written_at_ms: TimestampMs,
    pub tickets: Vec<T>,
    pub volunteers: Vec<Volunteer>,
    pub incidents: Vec<Incident>,
    #[serde(default)]
    pub alerts: Vec<crate::protocol::entities::Alert>,
    #[serde(default)]
    pub annotations: Vec<crate::protocol::entities::Annotation>,
}

const CHECKPOINT_FORMAT: u32 = 1;
const CHECKPOINT_OBJECT: &str = "latest";

/// Encode the hub's model as a gzip JSON checkpoint (runs on a blocking thread: seconds at
/// a million tickets).
pub fn encode_checkpoint(hub: &Hub) -> Result<(Vec<u8>, Seq, u64)> {
    let c = encode_checkpoint_full(hub)?;
    Ok((c.gz, c.last_seq, c.stream_seq))
}

/// An encoded checkpoint and the position and model time it covers.
pub struct EncodedCheckpoint {
    pub gz: Vec<u8>,
    pub last_seq: Seq,
    pub stream_seq: u64,
    pub latest_event_ms: TimestampMs,
}

/// [`encode_checkpoint`], with the model time it covers.
pub fn encode_checkpoint_full(hub: &Hub) -> Result<EncodedCheckpoint> {
    let ex = hub.export();
    let cp = Checkpoint::<&Ticket> {
        format: CHECKPOINT_FORMAT,
        county_code: hub.county.pack.manifest.county_code,
        epoch: hub.epoch,
        roster_scale: hub.county.roster_scale,
        grid_split: hub.county.grid_split,
        last_seq: ex.last_seq,
        stream_seq: ex.stream_seq,
        latest_event_ms: ex.latest_event_ms,
        written_at_ms: system_now_ms(),
        tickets: ex.tickets.iter().map(|t| t.as_ref()).collect(),
        volunteers: ex.volunteers,
        incidents: ex.incidents,
        alerts: ex.alerts,
        annotations: ex.annotations,
    };
    // Encoded into the compressor through a large buffer: the JSON (hundreds of MB at a
    // million tickets) is never held whole, and the compressor still takes big writes (many
    // small ones cost it ten times more).
    let mut gz =
        flate2::write::GzEncoder::new(Vec::with_capacity(1 << 20), flate2::Compression::fast());
    {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut gz);
        serde_json::to_writer(&mut out, &cp).context("encoding the checkpoint")?;
        std::io::Write::flush(&mut out)?;
    }
    Ok(EncodedCheckpoint {
        gz: gz.finish()?,
        last_seq: ex.last_seq,
        stream_seq: ex.stream_seq,
        latest_event_ms: ex.latest_event_ms,
    })
}

/// A gzip JSON checkpoint decoded into the model it holds, checked to be of `county` (and its
/// scale) and `epoch`.
pub fn decode_checkpoint(gz: &[u8], county: &Arc<County>, epoch: Epoch) -> Result<Restore, String> {
    // Decompressed whole, then decoded from the slice (a reader is read byte by byte).
    let mut json = Vec::with_capacity(gz.len() * 8);
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut json)
        .map_err(|e| format!("does not decompress: {e}"))?;
    let cp: Checkpoint =
        serde_json::from_slice(&json).map_err(|e| format!("does not decode: {e}"))?;
    if cp.format != CHECKPOINT_FORMAT
        || cp.epoch != epoch
        || cp.county_code != county.pack.manifest.county_code
        || cp.roster_scale != county.roster_scale
        || cp.grid_split != county.grid_split
    {
        return Err(format!(
            "it is for county {} epoch {} scale {}x{} (format {}), not this gateway's",
            cp.county_code, cp.epoch, cp.roster_scale, cp.grid_split, cp.format
        ));
    }
    let state = LiveState::from_parts(
        Arc::clone(county),
        cp.tickets,
        cp.volunteers,
        cp.incidents,
        cp.alerts,
        cp.annotations,
        cp.latest_event_ms,
    )
    .map_err(|e| format!("does not load: {e}"))?;
    Ok(Restore {
        state,
        last_seq: cp.last_seq,
        stream_seq: cp.stream_seq,
    })
}

/// Read the latest checkpoint for this county and epoch, if there is a usable one. Returns
/// `None` (with the reason logged) when there is none, it is for another epoch or scale, or
/// it does not load into the model.
pub async fn load_checkpoint(
    js: &jetstream::Context,
    names: &Names,
    county: &Arc<County>,
    epoch: Epoch,
) -> Option<Restore> {
    let store = js.get_object_store(names.checkpoints()).await.ok()?;
    let mut object = match store.get(CHECKPOINT_OBJECT).await {
        Ok(o) => o,
        Err(e) => {
            tracing::info!(target: "datawall::backbone", "no checkpoint to start from ({e}); reading the whole stream");
            return None;
        }
    };
    let mut gz = Vec::new();
    if let Err(e) = object.read_to_end(&mut gz).await {
        tracing::warn!(target: "datawall::backbone", "reading the checkpoint failed: {e}; reading the whole stream");
        return None;
    }
    let county = Arc::clone(county);
    let decoded = tokio::task::spawn_blocking(move || decode_checkpoint(&gz, &county, epoch)).await;
    match decoded {
        Ok(Ok(r)) => {
            tracing::info!(target: "datawall::backbone", "starting from the checkpoint at stream message {} (seq {})", r.stream_seq, r.last_seq);
            Some(r)
        }
        Ok(Err(why)) => {
            tracing::warn!(target: "datawall::backbone", "ignoring the checkpoint: {why}; reading the whole stream");
            None
        }
        Err(e) => {
            tracing::warn!(target: "datawall::backbone", "ignoring the checkpoint: {e}");
            None
        }
    }
}

/// Write a checkpoint every `every` while this gateway holds the writer's lease (a key in a
/// key-value bucket that expires after three periods): one gateway writes, and another takes
/// over when it stops.
pub async fn write_checkpoints(
    hub: Arc<Hub>,
    js: jetstream::Context,
    names: Names,
    every: Duration,
    me: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    let mut lease: Option<u64> = None;
    let mut written_stream_seq = 0;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = interval.tick() => {}
        }
        if !hub.caught_up() {
            continue;
        }
        match hold_lease(&js, &names, &me, lease, every).await {
            Ok(rev) => lease = Some(rev),
            Err(e) => {
                if lease.take().is_some() {
                    tracing::info!(target: "datawall::backbone", "another gateway writes the checkpoints now ({e})");
                }
                continue;
            }
        }
        if hub.stream_seq() == written_stream_seq {
            continue;
        }
        match write_checkpoint(&hub, &js, &names, &me).await {
            Ok((seq, stream_seq, bytes)) => {
                written_stream_seq = stream_seq;
                tracing::info!(target: "datawall::backbone", "checkpoint written: seq {seq}, stream message {stream_seq}, {bytes} bytes");
            }
            Err(e) => {
                tracing::warn!(target: "datawall::backbone", "writing a checkpoint failed: {e:#}; trying again next period")
            }
        }
    }
}

/// The key whose holder writes the checkpoints.
pub const LEASE_KEY: &str = "checkpoint-writer";

/// The lease bucket (made when missing): a key in it expires three periods after its last
/// update.
pub async fn lease_bucket(
    js: &jetstream::Context,
    names: &Names,
    every: Duration,
) -> Result<jetstream::kv::Store> {
    match js.get_key_value(names.lease()).await {
        Ok(kv) => Ok(kv),
        Err(_) => js
            .create_key_value(jetstream::kv::Config {
                bucket: names.lease(),
                history: 1,
                max_age: every * 3,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .context("creating the lease bucket"),
    }
}

/// The checkpoint store (made when missing).
pub async fn checkpoint_store(
    js: &jetstream::Context,
    names: &Names,
) -> Result<object_store::ObjectStore> {
    match js.get_object_store(names.checkpoints()).await {
        Ok(s) => Ok(s),
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: names.checkpoints(),
                description: Some("Datawall gateway checkpoints".into()),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .context("creating the checkpoint store"),
    }
}

async fn hold_lease(
    js: &jetstream::Context,
    names: &Names,
    me: &str,
    held: Option<u64>,
    every: Duration,
) -> Result<u64> {
    let kv = lease_bucket(js, names, every).await?;
    let value = bytes::Bytes::from(me.to_owned());
    let tried = match held {
        Some(rev) => kv
            .update(LEASE_KEY, value, rev)
            .await
            .map_err(anyhow::Error::from),
        None => kv
            .create(LEASE_KEY, value)
            .await
            .map_err(anyhow::Error::from),
    };
    match tried {
        Ok(rev) => Ok(rev),
        // An earlier update of ours may have landed with its answer lost: still ours?
        Err(e) => match kv.entry(LEASE_KEY).await {
            Ok(Some(entry)) if entry.value.as_ref() == me.as_bytes() => Ok(entry.revision),
            _ => Err(e),
        },
    }
}

/// Write one checkpoint now (`writer` names the gateway in its metadata); returns (seq,
/// stream message, bytes).
pub async fn write_checkpoint(
    hub: &Arc<Hub>,
    js: &jetstream::Context,
    names: &Names,
    writer: &str,
) -> Result<(Seq, u64, usize)> {
    let h = Arc::clone(hub);
    let (bytes, seq, stream_seq) = tokio::task::spawn_blocking(move || encode_checkpoint(&h))
        .await
        .context("checkpoint encoder")??;
    let store = checkpoint_store(js, names).await?;
    let len = bytes.len();
    let meta = object_store::ObjectMetadata {
        name: CHECKPOINT_OBJECT.into(),
        description: Some(format!(
            "checkpoint at stream message {stream_seq}, written by {writer}"
        )),
        metadata: HashMap::from([
            ("writer".to_owned(), writer.to_owned()),
            ("stream_seq".to_owned(), stream_seq.to_string()),
            ("last_seq".to_owned(), seq.to_string()),
        ]),
        ..Default::default()
    };
    store
        .put(meta, &mut bytes.as_slice())
        .await
        .context("storing the checkpoint")?;
    Ok((seq, stream_seq, len))
}

/// The backbone's side of a gateway: the stream's names and a JetStream context to publish
/// HTTP-ingested events with.
#[derive(Clone)]
pub struct Publisher {
    pub js: jetstream::Context,
    pub names: Names,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Publisher({})", self.names.events())
    }
}

impl Publisher {
    /// Publish one batch (NDJSON) and wait until JetStream has stored it. `msg_id` makes a
    /// retry within the duplicate window a no-op. Returns the stream sequence and whether it
    /// was a duplicate.
    pub async fn publish(
        &self,
        subject: String,
        events: &[Event],
        msg_id: Option<&str>,
        clock: Option<(TimestampMs, f64)>,
    ) -> Result<(u64, bool)> {
        let mut msg = jetstream::message::PublishMessage::build()
            .payload(encode_events(events).into())
            .header(ORIGIN_HEADER, "gateway");
        if let Some(id) = msg_id {
            msg = msg.message_id(id);
        }
        if let Some((ms, rate)) = clock {
            msg = msg
                .header(CLOCK_HEADER, ms.to_string().as_str())
                .header(CLOCK_RATE_HEADER, rate.to_string().as_str());
        }
        let ack = self
            .js
            .send_publish(subject, msg)
            .await
            .context("publishing to JetStream")?
            .await
            .context("waiting for JetStream to store the batch")?;
        Ok((ack.sequence, ack.duplicate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_one_object_or_ndjson() {
        let a = r#"{"type":"ticket.on_site.v1","ticket_id":1,"at_ms":5}"#;
        let pretty =
            "{\n  \"type\": \"ticket.on_site.v1\",\n  \"ticket_id\": 1,\n  \"at_ms\": 5\n}\n";
        assert_eq!(parse_events(a.as_bytes()).len(), 1);
        let p = parse_events(pretty.as_bytes());
        assert_eq!(p.len(), 1);
        assert!(p[0].1.is_ok(), "{p:?}");
        let body = format!("{a}\n\nnot json\n{{\"type\":\"nope.v9\"}}\n{a}\n");
        let lines: Vec<_> = parse_events(body.as_bytes())
            .into_iter()
            .map(|(n, r)| (n, r.is_ok()))
            .collect();
        assert_eq!(lines, vec![(1, true), (3, false), (4, false), (5, true)]);
        let unknown = parse_events(b"{\"type\":\"nope.v9\"}");
        assert!(unknown[0].1.as_ref().unwrap_err().contains("nope.v9"));
        assert!(parse_events(b"  \n").is_empty());
        assert!(parse_events(&[0xff, 0xfe]).first().unwrap().1.is_err());
    }

    #[test]
    fn encoded_events_parse_back() {
        let e: Event =
            serde_json::from_str(r#"{"type":"ticket.on_site.v1","ticket_id":1,"at_ms":5}"#)
                .unwrap();
        let body = encode_events(&[e.clone(), e.clone()]);
        let back: Vec<Event> = parse_events(&body)
            .into_iter()
            .map(|(_, r)| r.unwrap())
            .collect();
        assert_eq!(back, vec![e.clone(), e]);
    }
}
