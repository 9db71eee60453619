//! Event sources for the hub: the county simulator in (accelerated) real time, and replay of
//! a recording. Recordings are NDJSON (optionally gzip): one header line, then one event per
//! line in publish order.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::hub::Hub;
use crate::protocol::command::{PlatformCommand, PlatformReply};
use crate::protocol::{Event, PROTOCOL_VERSION, TimestampMs};
use crate::sim::Simulator;

/// How often the source wakes to publish what is due (real time).
const TICK: Duration = Duration::from_millis(20);
/// Events per publish call, so a burst (warm-up, replay catch-up) never holds the hub long.
const PUBLISH_CHUNK: usize = 4_096;

/// First line of a recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingHeader {
    #[serde(rename = "type")]
    pub kind: String,
    pub protocol: u16,
    pub county_code: u64,
    /// Events before this time are history (published at once on replay); after it, replay
    /// paces events by their timestamps.
    pub live_from_ms: TimestampMs,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("cannot open recording {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {what}")]
    Bad {
        path: String,
        line: usize,
        what: String,
    },
}

/// Open `path` for writing a recording (gzip when it ends in `.gz`) and write its header.
pub fn create_recording(
    path: &Path,
    header: &RecordingHeader,
) -> std::io::Result<Box<dyn Write + Send>> {
    let file = std::fs::File::create(path)?;
    let mut w: Box<dyn Write + Send> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(std::io::BufWriter::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::best(),
        )))
    } else {
        Box::new(std::io::BufWriter::new(file))
    };
    writeln!(w, "{}", serde_json::to_string(header).unwrap_or_default())?;
    Ok(w)
}

/// A whole recording in memory: header and events.
pub struct Recording {
    pub header: RecordingHeader,
    pub events: Vec<Event>,
}

/// Read a recording (gzip when it ends in `.gz`). A line that does not parse is an error
/// naming the line; an unknown event type is kept (and dropped, counted, by the hub).
pub fn read_recording(path: &Path) -> Result<Recording, RecordingError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| RecordingError::Open {
        path: name.clone(),
        source,
    })?;
    let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::new(flate2::read::GzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let bad = |line: usize, what: String| RecordingError::Bad {
        path: name.clone(),
        line,
        what,
    };
    let mut lines = reader.lines();
    let header_line = lines
        .next()
        .ok_or_else(|| bad(1, "empty file".into()))?
        .map_err(|e| bad(1, e.to_string()))?;
    let header: RecordingHeader = serde_json::from_str(&header_line)
        .map_err(|e| bad(1, format!("not a recording header: {e}")))?;
    let mut events = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.map_err(|e| bad(i + 2, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        events.push(serde_json::from_str(&line).map_err(|e| bad(i + 2, e.to_string()))?);
    }
    Ok(Recording { header, events })
}

/// Publish in chunks of [`PUBLISH_CHUNK`] so a burst never holds the hub long.
pub fn publish_chunked(hub: &Hub, events: Vec<Event>) {
    let mut it = events.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<Event> = it.by_ref().take(PUBLISH_CHUNK).collect();
        hub.publish(chunk);
    }
}

/// A feed clock that starts at `start_ms` now and runs `speed` times real time.
pub fn accelerated_clock(
    start_ms: TimestampMs,
    speed: f64,
) -> impl Fn() -> TimestampMs + Send + Sync + Clone {
    let origin = std::time::Instant::now();
    move || start_ms + (origin.elapsed().as_secs_f64() * 1000.0 * speed) as TimestampMs
}

/// Run the simulator into the hub until `shutdown`: first the warm-up history at once (published
/// as it is made, a chunk at a time), then
/// live at `speed` times real time, acting on the operators' `commands` as the county's
/// platform would.
pub async fn run_simulator(
    hub: Arc<Hub>,
    mut sim: Simulator,
    start_ms: TimestampMs,
    speed: f64,
    mut commands: mpsc::Receiver<(PlatformCommand, oneshot::Sender<PlatformReply>)>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Published as it is made: a city's backlog is never held whole beside the model.
    let n = sim.advance_in_chunks(start_ms, PUBLISH_CHUNK, |chunk| {
        hub.publish(chunk);
    });
    tracing::info!(target: "datawall::source", "simulator: {n} events of history");
    super::metrics::trim_heap_in_background("the simulator's history");
    let clock = accelerated_clock(start_ms, speed);
    hub.set_clock(Arc::new(clock.clone()), speed);
    let mut tick = tokio::time::interval_at(Instant::now() + TICK, TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {
                let events = sim.advance_to(clock());
                publish_chunked(&hub, events);
            }
            Some((cmd, reply)) = commands.recv() => {
                // Everything due first, so the answer is stamped after it.
                let mut events = sim.advance_to(clock());
                let result = sim.command(&cmd);
                if let Err(e) = &result {
                    tracing::info!(target: "datawall::source", "simulator: cannot act on {}: {e}", cmd.command_id);
                }
                let _ = reply.send(super::gateway::commands::platform_reply(result));
                events.extend(sim.advance_to(clock()));
                publish_chunked(&hub, events);
            }
        }
    }
    if let Err(e) = hub.flush_recorder() {
        tracing::error!(target: "datawall::source", "flushing the recording failed: {e}");
    }
}

/// Serve a recording: history at once, then events paced by their timestamps at `speed`.
/// Returns when the recording is exhausted (the gateway keeps serving) or on shutdown.
pub async fn run_replay(
    hub: Arc<Hub>,
    recording: Recording,
    speed: f64,
    mut shutdown: watch::Receiver<bool>,
) {
    let live_from = recording.header.live_from_ms;
    let mut events = recording.events.into_iter().peekable();
    let mut history = Vec::new();
    while let Some(e) = events.next_if(|e| e.at_ms().is_none_or(|t| t <= live_from)) {
        history.push(e);
    }
    tracing::info!(target: "datawall::source", "replay: {} events of history", history.len());
    publish_chunked(&hub, history);
    super::metrics::trim_heap_in_background("the recording's history");
    let clock = accelerated_clock(live_from, speed);
    hub.set_clock(Arc::new(clock.clone()), speed);
    let mut tick = tokio::time::interval_at(Instant::now() + TICK, TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while events.peek().is_some() {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {
                let now = clock();
                let mut due = Vec::new();
                while let Some(e) = events.next_if(|e| e.at_ms().is_none_or(|t| t <= now)) {
                    due.push(e);
                }
                publish_chunked(&hub, due);
            }
        }
    }
    tracing::info!(target: "datawall::source", "replay finished; still serving the final state");
}

/// The header a simulator recording starts with.
pub fn simulator_header(hub: &Hub, live_from_ms: TimestampMs) -> RecordingHeader {
    RecordingHeader {
        kind: "recording".into(),
        protocol: PROTOCOL_VERSION,
        county_code: hub.county.pack.manifest.county_code,
        live_from_ms,
    }
}

/// Volunteer fixes at `rate` a second, round-robin over the volunteers on duty, each stamped
/// with the system clock when published (event → pixel latency); a few metres from where each
/// volunteer is, so every fix is accepted.
pub async fn run_probe(hub: Arc<Hub>, rate: f64, mut shutdown: watch::Receiver<bool>) {
    use crate::protocol::{VolunteerFix, VolunteerStatus};
    let on_duty: Vec<(u32, crate::protocol::LonLat)> = {
        let state = hub.state();
        state
            .volunteers
            .iter()
            .filter(|v| v.status != VolunteerStatus::OffDuty)
            .filter_map(|v| Some((v.id, v.pos?)))
            .collect()
    };
    if on_duty.is_empty() || !rate.is_finite() || rate <= 0.0 {
        tracing::warn!(target: "datawall::source", "latency probe: nobody on duty to move (or rate {rate}); no probe events");
        return;
    }
    // Batches every millisecond (or less often below 1 000 events a second).
    let tick = std::time::Duration::from_secs_f64((1.0 / rate).max(0.001));
    let per_tick = (rate * tick.as_secs_f64()).round().max(1.0) as usize;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0usize;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = super::hub::system_now_ms();
        let batch: Vec<Event> = (0..per_tick)
            .map(|_| {
                let (id, home) = on_duty[next % on_duty.len()];
                let wiggle = ((next / on_duty.len()) % 8) as f64 * 2e-6;
                next += 1;
                Event::VolunteerFix(VolunteerFix {
                    volunteer_id: id,
                    at_ms: now,
                    pos: crate::protocol::LonLat::new(home.lon + wiggle, home.lat),
                })
            })
            .collect();
        hub.publish(batch);
    }
}
