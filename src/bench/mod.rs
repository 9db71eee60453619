//! `datawall bench`: measures what users feel, on this machine, and prints a table (and
//! JSON). Loads are seeded so every run measures the same work. See `docs/PERFORMANCE.md`.

mod backbone;
mod history;
mod memory;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::model::{County, CountyPack, LiveState};
use crate::net::client::{FeedConnection, Mirror, decode_message, decode_server_msg};
use crate::net::gateway::{GatewayConfig, Shutdown, serve};
use crate::net::hub::{Hub, HubConfig};
use crate::protocol::session::{FEED_PATH, ServerMsg, SnapshotFormat};
use crate::protocol::*;

const TOKEN: &str = "bench";
const T0: TimestampMs = 1_764_140_400_000;

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub group: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub note: String,
}

/// Collects figures and prints them as they come (long runs show progress).
#[derive(Default)]
pub struct Report {
    pub figures: Vec<Figure>,
}

impl Report {
    fn add(&mut self, group: &str, name: &str, value: f64, unit: &str, note: impl Into<String>) {
        let f = Figure {
            group: group.into(),
            name: name.into(),
            value,
            unit: unit.into(),
            note: note.into(),
        };
        println!(
            "{:<10} {:<44} {:>14} {:<8} {}",
            f.group,
            f.name,
            fmt_value(f.value),
            f.unit,
            f.note
        );
        self.figures.push(f);
    }
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// Groups of figures, in the order they run (`--only` picks some).
pub const GROUPS: &[&str] = &[
    "model",
    "ingest",
    "fanout",
    "latency",
    "backbone",
    "snapshot",
    "memory",
    "analytics",
    "history",
    "frame",
];

/// Sizes of one run.
#[derive(Clone, Debug)]
pub struct Sizes {
    pub apply_events: usize,
    pub fanout_events: usize,
    pub latency_secs: f64,
    pub snapshot_tickets: usize,
    pub snapshot_roster_scale: u32,
    pub big_roster_scale: u32,
    /// Wall frame-time loads (skipped without the `wall` feature).
    pub frame_loads: &'static [FrameLoad],
    /// The `datawall` binary that renders them (default: this executable).
    pub wall_exe: Option<std::path::PathBuf>,
    /// Render the frames into an image with no window (`snapshot --offscreen`): no Xvfb, and
    /// each frame waits for the GPU.
    pub offscreen: bool,
    /// Run only these groups (empty: all of [`GROUPS`]).
    pub only: Vec<String>,
    /// Ticket counts for the analytics refresh (skipped without the `analytics` feature).
    pub analytics_tickets: &'static [usize],
    /// Events through the NATS backbone, and the tickets of the checkpoint start.
    pub backbone_events: usize,
    pub backbone_checkpoint_tickets: usize,
    /// Hours of county history, minutes of it with a fix a second, and (minutes, open
    /// tickets) at city scale.
    pub history_hours: i64,
    pub history_fast_minutes: i64,
    pub history_city: Option<(i64, usize)>,
    /// Grids split this many ways for the memory figures (with the snapshot's tickets and
    /// roster: 11 gives the city scale of 3 102 grids).
    pub memory_grid_split: u32,
    /// Open tickets standing in the gateway-alone figure (`serve --backlog`; at least the 40 000
    /// that make a snapshot large enough for its memory to be handed back when sent).
    pub gateway_backlog: usize,
}

impl Sizes {
    pub fn quick() -> Self {
        Self {
            apply_events: 200_000,
            fanout_events: 40_000,
            latency_secs: 2.0,
            snapshot_tickets: 100_000,
            snapshot_roster_scale: 10,
            big_roster_scale: 44,
            frame_loads: FRAMES_QUICK,
            wall_exe: None,
            offscreen: false,
            only: Vec::new(),
            analytics_tickets: &[10_000, 100_000, 1_000_000],
            backbone_events: 100_000,
            backbone_checkpoint_tickets: 100_000,
            history_hours: 6,
            history_fast_minutes: 15,
            history_city: Some((10, 100_000)),
            memory_grid_split: 11,
            gateway_backlog: 100_000,
        }
    }

    /// Smallest loads that still exercise every path (the smoke test).
    pub fn tiny() -> Self {
        Self {
            apply_events: 2_000,
            fanout_events: 2_000,
            latency_secs: 0.2,
            snapshot_tickets: 2_000,
            snapshot_roster_scale: 2,
            big_roster_scale: 2,
            frame_loads: FRAMES_TINY,
            wall_exe: None,
            offscreen: false,
            only: Vec::new(),
            analytics_tickets: &[2_000],
            backbone_events: 2_000,
            backbone_checkpoint_tickets: 2_000,
            history_hours: 1,
            history_fast_minutes: 2,
            history_city: None,
            memory_grid_split: 1,
            gateway_backlog: 50_000,
        }
    }

    pub fn full() -> Self {
        Self {
            apply_events: 2_000_000,
            fanout_events: 200_000,
            latency_secs: 8.0,
            snapshot_tickets: 1_000_000,
            snapshot_roster_scale: 44,
            big_roster_scale: 44,
            frame_loads: FRAMES_FULL,
            wall_exe: None,
            offscreen: false,
            only: Vec::new(),
            analytics_tickets: &[10_000, 100_000, 1_000_000],
            backbone_events: 1_000_000,
            backbone_checkpoint_tickets: 1_000_000,
            history_hours: 24,
            history_fast_minutes: 60,
            history_city: Some((60, 1_000_000)),
            memory_grid_split: 11,
            gateway_backlog: 1_000_000,
        }
    }
}

impl Sizes {
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

/// Volunteer fixes that the model accepts: each volunteer walks a little, time increases.
fn fixes(county: &County, from_ms: TimestampMs, n: usize) -> Vec<Event> {
    let roster = &county.pack.volunteers;
    let labels: Vec<LonLat> = roster
        .iter()
        .map(|v| {
            county
                .grid(v.home_grid_id)
                .map_or(LonLat::new(0.0, 0.0), |g| g.label)
        })
        .collect();
    (0..n)
        .map(|i| {
            let k = i % roster.len();
            let step = (i / roster.len()) as f64;
            Event::VolunteerFix(VolunteerFix {
                volunteer_id: roster[k].id,
                at_ms: from_ms + i as i64,
                pos: LonLat::new(labels[k].lon + (step % 20.0) * 1e-5, labels[k].lat),
            })
        })
        .collect()
}

/// `n` open tickets spread over the grids (deterministic).
fn tickets(county: &County, n: usize) -> Vec<Event> {
    let grids = &county.pack.grids;
    (0..n)
        .map(|i| {
            let g = &grids[i % grids.len()];
            let jitter = ((i / grids.len()) % 50) as f64 * 2e-6;
            Event::TicketOpened(TicketOpened {
                ticket_id: i as u64 + 1,
                at_ms: T0 - 3_600_000 + (i % 3_600_000) as i64,
                category: TicketCategory::ALL[i % 6],
                source: TicketSource::ALL[i % 4],
                priority: Priority::ALL[i % 4],
                pos: LonLat::new(g.label.lon + jitter, g.label.lat),
                grid_id: Some(g.id),
                sla_deadline_ms: T0 + (i % 86_400) as i64 * 1000,
                summary: "楼道灯不亮".into(),
                responsible_party: None,
            })
        })
        .collect()
}

/// Feed time at which synthetic loads are set.
pub fn load_start_ms() -> TimestampMs {
    T0
}

/// `n` open tickets spread over the grids (frame benchmarks).
pub fn load_tickets(county: &County, n: usize) -> Vec<Event> {
    tickets(county, n)
}

/// Every roster volunteer on duty with a position near their home grid.
pub fn load_volunteers_on_duty(county: &County, at_ms: TimestampMs) -> Vec<Event> {
    let mut out: Vec<Event> = county
        .pack
        .volunteers
        .iter()
        .map(|v| {
            Event::VolunteerStatus(VolunteerStatusChanged {
                volunteer_id: v.id,
                at_ms,
                status: VolunteerStatus::Available,
                task: None,
            })
        })
        .collect();
    out.extend(fixes(county, at_ms, county.pack.volunteers.len()));
    out
}

pub use crate::net::metrics::peak_rss_mb;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Gateway {
    hub: Arc<Hub>,
    url: String,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

async fn start_gateway(county: Arc<County>, ring: usize) -> Result<Gateway> {
    let hub = Arc::new(Hub::new(
        county,
        HubConfig {
            ring_capacity: ring,
            // The whole run stays in the ring: no client is resynced mid-measurement.
            ring_max_bytes: usize::MAX,
            snapshot_chunk: 5_000,
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}{FEED_PATH}", listener.local_addr()?);
    let mut cfg = GatewayConfig::new(TOKEN);
    cfg.max_clients = 1_000;
    // Every bench client connects from loopback.
    cfg.max_clients_per_address = 1_000;
    // Throughput runs measure full delivery: no conflation.
    cfg.conflate_after_events = u64::MAX;
    let (shutdown, rx) = Shutdown::new();
    let task = tokio::spawn(serve(listener, Arc::clone(&hub), cfg, rx));
    Ok(Gateway {
        hub,
        url,
        shutdown,
        task,
    })
}

impl Gateway {
    async fn stop(self) {
        self.shutdown.trigger();
        let _ = self.task.await;
    }
}

/// A client that decodes every message and counts events until it has `until` seq.
async fn counting_client(
    mut conn: FeedConnection,
    until: u64,
    stamps: Option<Arc<Vec<AtomicU64>>>,
    origin: Instant,
) -> Result<(u64, Vec<f64>)> {
    let mut events = 0u64;
    let mut latencies = Vec::new();
    loop {
        let text = conn.next_text().await?;
        let msg = decode_server_msg(&text)?;
        match msg {
            ServerMsg::Delta(d) => {
                events += d.events.len() as u64;
                if let Some(stamps) = &stamps {
                    let now = origin.elapsed().as_nanos() as u64;
                    for (seq, _) in &d.events {
                        if let Some(t) = stamps.get(*seq as usize) {
                            let sent = t.load(Ordering::Relaxed);
                            if sent > 0 {
                                latencies.push((now.saturating_sub(sent)) as f64 / 1e6);
                            }
                        }
                    }
                }
                if d.last_seq >= until {
                    break;
                }
            }
            ServerMsg::SnapshotEnd(e) if e.seq >= until => break,
            _ => {}
        }
    }
    conn.close().await;
    Ok((events, latencies))
}

async fn connect_synced(url: &str) -> Result<FeedConnection> {
    let mut conn = FeedConnection::connect(url, TOKEN, None).await?;
    loop {
        if let ServerMsg::SnapshotEnd(_) = conn.next_msg().await? {
            return Ok(conn);
        }
    }
}

/// Fan-out: `clients` connected and synced, `n` events published as fast as the hub takes
/// them; events/s until the slowest client has decoded everything.
async fn fanout(report: &mut Report, county: Arc<County>, clients: usize, n: usize) -> Result<()> {
    let gw = start_gateway(Arc::clone(&county), n + 1).await?;
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(connect_synced(&gw.url).await?);
    }
    let events = fixes(&county, T0, n);
    let until = n as u64;
    let origin = Instant::now();
    let readers: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(counting_client(c, until, None, origin)))
        .collect();
    let start = Instant::now();
    for chunk in events.chunks(1_000) {
        gw.hub.publish(chunk.iter().cloned());
        tokio::task::yield_now().await;
    }
    let mut delivered = 0;
    for r in readers {
        delivered += r.await??.0;
    }
    let secs = start.elapsed().as_secs_f64();
    report.add(
        "gateway",
        &format!("fan-out to {clients} client(s), per client"),
        n as f64 / secs,
        "events/s",
        format!(
            "{} events decoded in total, {:.0} events/s aggregate",
            delivered,
            delivered as f64 / secs
        ),
    );
    gw.stop().await;
    Ok(())
}

/// Delivery latency: events published at `rate` per second in 1 ms ticks to `clients`;
/// publish → decoded by the client.
async fn latency(
    report: &mut Report,
    county: Arc<County>,
    clients: usize,
    rate: usize,
    secs: f64,
) -> Result<()> {
    let n = (rate as f64 * secs) as usize;
    let gw = start_gateway(Arc::clone(&county), n + 1).await?;
    let stamps: Arc<Vec<AtomicU64>> = Arc::new((0..=n).map(|_| AtomicU64::new(0)).collect());
    let origin = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..clients {
        let conn = connect_synced(&gw.url).await?;
        readers.push(tokio::spawn(counting_client(
            conn,
            n as u64,
            Some(Arc::clone(&stamps)),
            origin,
        )));
    }
    let events = fixes(&county, T0, n);
    let start = Instant::now();
    let mut published = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while published < n {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(n);
        if due > published {
            let now = origin.elapsed().as_nanos() as u64;
            for seq in published + 1..=due {
                stamps[seq].store(now, Ordering::Relaxed);
            }
            gw.hub.publish(events[published..due].iter().cloned());
            published = due;
        }
    }
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await??.1);
    }
    all.sort_by(f64::total_cmp);
    let name = format!("publish→client p50, {clients} client(s) at {rate}/s");
    report.add("latency", &name, percentile(&all, 0.5), "ms", "");
    let name = format!("publish→client p99, {clients} client(s) at {rate}/s");
    report.add(
        "latency",
        &name,
        percentile(&all, 0.99),
        "ms",
        format!("{} samples", all.len()),
    );
    gw.stop().await;
    Ok(())
}

/// Ingest: one client decoding and applying to its own model, from a real websocket, with the
/// deltas in `format` (JSON text or binary messages).
async fn ingest(
    report: &mut Report,
    county: Arc<County>,
    n: usize,
    label: &str,
    format: SnapshotFormat,
) -> Result<()> {
    let gw = start_gateway(Arc::clone(&county), n + 1).await?;
    let url = format!("{}?format={}", gw.url, format.name());
    let mut conn = FeedConnection::connect(&url, TOKEN, None).await?;
    let mut mirror = Mirror::new(Arc::clone(&county));
    while mirror.state.is_none() {
        mirror.handle(conn.next_msg().await?)?;
    }
    let bytes_before = gw.hub.metrics.bytes_out.load(Ordering::Relaxed);
    let events = fixes(&county, T0, n);
    let start = Instant::now();
    let hub = Arc::clone(&gw.hub);
    let publisher = tokio::spawn(async move {
        for chunk in events.chunks(2_000) {
            hub.publish(chunk.iter().cloned());
            tokio::task::yield_now().await;
        }
    });
    while mirror.last_seq < n as u64 {
        mirror.handle(conn.next_msg().await?)?;
    }
    publisher.await?;
    let secs = start.elapsed().as_secs_f64();
    report.add(
        "ingest",
        &format!(
            "loopback {} decode+apply, {label}",
            match format {
                SnapshotFormat::Json => "JSON",
                SnapshotFormat::Binary => "binary",
            }
        ),
        n as f64 / secs,
        "events/s",
        format!(
            "{} volunteers; {:.0} bytes a fix on the wire",
            county.pack.volunteers.len(),
            (gw.hub.metrics.bytes_out.load(Ordering::Relaxed) - bytes_before) as f64 / n as f64
        ),
    );
    conn.close().await;
    gw.stop().await;
    Ok(())
}

fn model_and_codec(report: &mut Report, county: &Arc<County>, n: usize) {
    let events = fixes(county, T0, n);
    let mut state = LiveState::new(Arc::clone(county));
    let start = Instant::now();
    for e in &events {
        let _ = state.apply(e);
    }
    report.add(
        "model",
        "apply volunteer fixes (1 core)",
        n as f64 / start.elapsed().as_secs_f64(),
        "events/s",
        "",
    );
    let start = Instant::now();
    let encoded: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap_or_default())
        .collect();
    report.add(
        "codec",
        "JSON encode volunteer fix",
        n as f64 / start.elapsed().as_secs_f64(),
        "events/s",
        format!("{} bytes each", encoded[0].len()),
    );
    let start = Instant::now();
    let mut ok = 0;
    for s in &encoded {
        ok += usize::from(serde_json::from_str::<Event>(s).is_ok());
    }
    report.add(
        "codec",
        "JSON decode volunteer fix",
        ok as f64 / start.elapsed().as_secs_f64(),
        "events/s",
        "",
    );
    let start = Instant::now();
    for _ in 0..(n / 20) {
        let _ = county.index.grid_at(LonLat::new(106.54, 38.91));
    }
    report.add(
        "model",
        "point → grid lookup",
        (n / 20) as f64 / start.elapsed().as_secs_f64(),
        "lookups/s",
        "",
    );
}

/// While a fresh snapshot is encoded for a joining client, the feed keeps publishing: the
/// longest a publish call waited, against the encode's duration.
fn publish_during_encode(report: &mut Report, hub: &Arc<Hub>, county: &County, label: &str) {
    // Move the ring on by more than half its length so the cached snapshot is stale.
    let mut batches = fixes(county, T0 + 60_000, 200_000).into_iter();
    hub.publish(batches.by_ref().take(hub.ring_capacity() / 2 + 1));
    let encoder = {
        let hub = Arc::clone(hub);
        std::thread::Builder::new()
            .name("bench-snapshot".into())
            .spawn(move || hub.snapshot().bytes())
            .expect("a thread for the snapshot encode")
    };
    let mut longest = Duration::ZERO;
    let mut calls = 0;
    loop {
        let batch: Vec<Event> = batches.by_ref().take(10).collect();
        if batch.is_empty() {
            break;
        }
        let start = Instant::now();
        hub.publish(batch);
        longest = longest.max(start.elapsed());
        calls += 1;
        if encoder.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = encoder.join();
    report.add(
        "snapshot",
        "longest publish wait during an encode",
        longest.as_secs_f64() * 1000.0,
        "ms",
        format!("{calls} publishes of 10 fixes while encoding; {label}"),
    );
}

fn snapshot(report: &mut Report, pack: &CountyPack, n_tickets: usize, scale: u32) -> Result<()> {
    let county = Arc::new(County::with_roster_scale(pack.clone(), scale));
    let hub = Arc::new(Hub::new(
        Arc::clone(&county),
        HubConfig {
            ring_capacity: 1_000,
            snapshot_chunk: 5_000,
            ..Default::default()
        },
    ));
    for chunk in tickets(&county, n_tickets).chunks(50_000) {
        hub.publish(chunk.iter().cloned());
    }
    hub.publish(fixes(&county, T0, county.pack.volunteers.len()));
    let label = format!(
        "{n_tickets} tickets, {} volunteers",
        county.pack.volunteers.len()
    );
    for format in SnapshotFormat::ALL {
        let name = format.name();
        let start = Instant::now();
        let snap = hub.snapshot_as(format);
        let bytes = snap.bytes(); // every chunk encoded
        report.add(
            "snapshot",
            &format!("encode ({name})"),
            start.elapsed().as_secs_f64() * 1000.0,
            "ms",
            label.clone(),
        );
        if format == SnapshotFormat::Json {
            publish_during_encode(report, &hub, &county, &label);
        }
        report.add(
            "snapshot",
            &format!("size ({name})"),
            bytes as f64 / 1e6,
            "MB",
            format!("{} messages", snap.len()),
        );
        let start = Instant::now();
        let mut mirror = Mirror::new(Arc::clone(&county));
        mirror.epoch = Some(hub.epoch);
        for m in snap.messages() {
            if let Some(msg) = decode_message(&m).context("decoding the snapshot")? {
                mirror.handle(msg)?;
            }
        }
        report.add(
            "snapshot",
            &format!("decode + apply ({name})"),
            start.elapsed().as_secs_f64() * 1000.0,
            "ms",
            label.clone(),
        );
        anyhow::ensure!(
            mirror
                .state
                .as_ref()
                .is_some_and(|s| s.tickets.len() == n_tickets),
            "snapshot lost tickets"
        );
    }
    Ok(())
}

/// Analytics refresh at each ticket count as the wall runs it: the roll-ups read and the store
/// snapshot (main thread), gathering the recent rows and the polars queries (task pool); and
/// the plain-Rust reference walking every row for comparison. A third of the tickets were
/// resolved today, the rest are open with deadlines spread around now.
#[cfg(feature = "analytics")]
fn analytics(report: &mut Report, county: &Arc<County>, sizes: &[usize]) -> Result<()> {
    use crate::analytics::store::{TicketStore, gather, gather_recent};
    use crate::analytics::{TicketColumns, finish, reference};
    for &n in sizes {
        let mut live = LiveState::new(Arc::clone(county));
        let opened = tickets(county, n);
        for e in &opened {
            live.apply(e)?;
        }
        for e in opened.iter().step_by(3) {
            let Event::TicketOpened(t) = e else { continue };
            live.apply(&Event::TicketDispatched(TicketDispatched {
                ticket_id: t.ticket_id,
                at_ms: t.at_ms + 120_000,
                assignee: "网格员".into(),
                volunteer_id: None,
                command_id: None,
            }))?;
            live.apply(&Event::TicketResolved(TicketResolved {
                ticket_id: t.ticket_id,
                at_ms: t.at_ms + 1_800_000,
                satisfaction: Some(4),
            }))?;
        }
        let now = T0 + 3_600_000;
        let best = |f: &mut dyn FnMut()| {
            (0..3)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1000.0
                })
                .fold(f64::INFINITY, f64::min)
        };
        let (c, g) = (county.pack.communities.len(), county.pack.grids.len());
        let mut store = TicketStore::default();
        let build = best(&mut || store = TicketStore::from_live(&live));
        let mut rollup = None;
        let rolled_up =
            best(&mut || rollup = Some(crate::analytics::store::rollup_of(&store.snapshot())));
        let mut input = None;
        let read = best(&mut || input = Some(store.refresh_at(now, c, g)));
        let Some(input) = input else { continue };
        let mut recent = TicketColumns::default();
        let gathered = best(&mut || recent = gather_recent(&input.chunks, now));
        let mut failed = None;
        let mut got = None;
        let queries = best(&mut || match finish(input.rolled.clone(), recent.clone()) {
            Ok(a) => got = Some(a),
            Err(e) => failed = Some(e),
        });
        let total = best(&mut || {
            if let Err(e) = store.refresh_at(now, c, g).run() {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        let all = gather(&input.chunks, now);
        let mut want = None;
        let plain = best(&mut || want = Some(reference::compute(&all, now, c, g)));
        let (Some(got), Some(want)) = (got, want) else {
            continue;
        };
        anyhow::ensure!(
            (
                got.county.open,
                got.county.overdue,
                got.overdue_hourly,
                got.county_mix
            ) == (
                want.county.open,
                want.county.overdue,
                want.overdue_hourly,
                want.county_mix
            ),
            "the refresh disagrees with the plain-Rust reference"
        );
        let label = format!("{n} tickets");
        report.add(
            "analytics",
            &format!("refresh, {label}"),
            total,
            "ms",
            format!(
                "roll-ups read + recent rows gathered + polars medians; {} of {} rows queried",
                got.queried, got.rows
            ),
        );
        report.add(
            "analytics",
            &format!("roll-ups read + store snapshot, {label}"),
            read.max(1e-6),
            "ms",
            "main thread, where events apply",
        );
        report.add(
            "analytics",
            &format!("gather recent rows, {label}"),
            gathered,
            "ms",
            "task pool",
        );
        report.add(
            "analytics",
            &format!("queries (polars), {label}"),
            queries,
            "ms",
            "task pool: today's medians and means per area, hourly medians",
        );
        report.add(
            "analytics",
            &format!("store + roll-ups built, {label}"),
            build,
            "ms",
            "once, at a snapshot (the wall builds it on a worker)",
        );
        report.add(
            "analytics",
            &format!("of which the roll-ups, {label}"),
            rolled_up,
            "ms",
            "built in bulk from the rows",
        );
        report.add(
            "analytics",
            &format!("plain-Rust reference, {label}"),
            plain,
            "ms",
            format!(
                "every figure by walking all {} rows; the refresh takes {:.2}x its time",
                all.len(),
                total / plain.max(1e-9)
            ),
        );
    }
    Ok(())
}

/// One frame-benchmark load: open tickets, volunteers on duty, window size.
#[derive(Clone, Copy, Debug)]
pub struct FrameLoad {
    pub tickets: usize,
    pub volunteers: usize,
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    /// Open the drill-down on this (a search string) while measuring.
    pub select: Option<&'static str>,
    /// Every grid split this many ways (282 grids × 11 = 3 102).
    pub grid_split: u32,
    /// Also publish this many volunteer fixes a second and measure event → pixel latency.
    pub probe_rate: Option<u32>,
    /// Draw each frame in the step that updates it (`--low-latency`, no pipelined rendering).
    pub low_latency: bool,
    /// Every volunteer sends a fix every measured frame (`--move-volunteers`, as the deck.gl
    /// peer moves every point every frame).
    pub moving: bool,
    /// Draw the map into a texture only when it changes (`--map-cache`, the default).
    pub map_cache: bool,
}

impl FrameLoad {
    /// Open tickets, volunteers on duty, window and frames to measure; no panels, the grids
    /// as packed, no probe.
    pub const fn new(
        tickets: usize,
        volunteers: usize,
        width: u32,
        height: u32,
        frames: u32,
    ) -> Self {
        Self {
            tickets,
            volunteers,
            width,
            height,
            frames,
            select: None,
            grid_split: 1,
            probe_rate: None,
            low_latency: false,
            moving: false,
            map_cache: true,
        }
    }

    pub const fn moving(self) -> Self {
        Self {
            moving: true,
            ..self
        }
    }

    pub const fn uncached(self) -> Self {
        Self {
            map_cache: false,
            ..self
        }
    }

    pub const fn low_latency(self) -> Self {
        Self {
            low_latency: true,
            ..self
        }
    }

    pub const fn select(self, query: &'static str) -> Self {
        Self {
            select: Some(query),
            ..self
        }
    }

    pub const fn grid_split(self, k: u32) -> Self {
        Self {
            grid_split: k,
            ..self
        }
    }

    pub const fn probe(self, fixes_per_s: u32) -> Self {
        Self {
            probe_rate: Some(fixes_per_s),
            ..self
        }
    }
}

const FRAMES_TINY: &[FrameLoad] = &[
    FrameLoad::new(1000, 1160, 640, 360, 5)
        .select("太西")
        .probe(1000),
    FrameLoad::new(1000, 1160, 640, 360, 5)
        .probe(1000)
        .low_latency(),
    FrameLoad::new(1000, 1160, 640, 360, 5).moving().uncached(),
];
const FRAMES_QUICK: &[FrameLoad] = &[
    FrameLoad::new(10000, 1160, 1920, 1080, 30).probe(1000),
    FrameLoad::new(10000, 1160, 1920, 1080, 30).probe(10000),
    FrameLoad::new(10000, 1160, 1920, 1080, 30)
        .probe(10000)
        .low_latency(),
    FrameLoad::new(100000, 10000, 1920, 1080, 40),
    // The deck.gl peer's scene B, volunteers moving every frame, with and without the cache.
    FrameLoad::new(1000000, 10000, 1920, 1080, 40).moving(),
    FrameLoad::new(1000000, 10000, 1920, 1080, 40)
        .moving()
        .uncached(),
];
const FRAMES_FULL: &[FrameLoad] = &[
    FrameLoad::new(10000, 1160, 1920, 1080, 120).probe(1000),
    FrameLoad::new(10000, 1160, 1920, 1080, 120).probe(10000),
    FrameLoad::new(10000, 1160, 1920, 1080, 120)
        .probe(1000)
        .low_latency(),
    FrameLoad::new(10000, 1160, 1920, 1080, 120)
        .probe(10000)
        .low_latency(),
    FrameLoad::new(1000000, 50000, 3840, 2160, 60)
        .grid_split(11)
        .probe(10000)
        .low_latency(),
    FrameLoad::new(1000000, 50000, 1920, 1080, 120).grid_split(11),
    FrameLoad::new(1000000, 50000, 3840, 2160, 60).grid_split(11),
    FrameLoad::new(1000000, 50000, 1920, 1080, 120)
        .select("太西社区第11网格-1")
        .grid_split(11),
    FrameLoad::new(100000, 10000, 1920, 1080, 120),
    FrameLoad::new(1000000, 10000, 1920, 1080, 120),
    FrameLoad::new(1000000, 50000, 1920, 1080, 120),
    FrameLoad::new(100000, 10000, 3840, 2160, 60),
    FrameLoad::new(1000000, 10000, 3840, 2160, 60),
    FrameLoad::new(1000000, 50000, 3840, 2160, 60),
    // The deck.gl peer's scenes A, B, C and B4K (`../shared/peer/deckgl`): volunteers moving
    // every frame as the peer's points do, with the map cache and without it.
    FrameLoad::new(100000, 10000, 1920, 1080, 60).moving(),
    FrameLoad::new(1000000, 10000, 1920, 1080, 60).moving(),
    FrameLoad::new(1000000, 50000, 1920, 1080, 60)
        .grid_split(11)
        .moving(),
    FrameLoad::new(1000000, 10000, 3840, 2160, 40).moving(),
    FrameLoad::new(100000, 10000, 1920, 1080, 60)
        .moving()
        .uncached(),
    FrameLoad::new(1000000, 10000, 1920, 1080, 60)
        .moving()
        .uncached(),
    FrameLoad::new(1000000, 50000, 1920, 1080, 60)
        .grid_split(11)
        .moving()
        .uncached(),
    FrameLoad::new(1000000, 10000, 3840, 2160, 40)
        .moving()
        .uncached(),
];

/// Frame time of the real wall (this binary's `snapshot --measure-frames`: in a window, under
/// Xvfb when there is no display, or offscreen) at each load. Skipped, with a note, in builds
/// without the wall.
fn frames(
    report: &mut Report,
    loads: &[FrameLoad],
    exe: Option<&std::path::Path>,
    offscreen: bool,
) -> Result<()> {
    if !cfg!(feature = "wall") {
        println!("frame      skipped: built without the `wall` feature");
        return Ok(());
    }
    let exe = match exe {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe().context("locating the datawall binary")?,
    };
    let dir = std::env::temp_dir().join(format!("datawall-bench-frames-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let headless = !offscreen && std::env::var_os("DISPLAY").is_none();
    for l in loads {
        let out = dir.join(format!(
            "frame-{}-{}-{}.png",
            l.tickets, l.volunteers, l.width
        ));
        let mut cmd = if headless {
            let mut c = std::process::Command::new("xvfb-run");
            c.args([
                "-a",
                "-s",
                &format!("-screen 0 {}x{}x24", l.width, l.height),
            ])
            .arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        cmd.args(["snapshot", "--settle-frames", "10"])
            .args(offscreen.then_some("--offscreen"))
            .args(l.low_latency.then_some("--low-latency"))
            .args([
                "--width",
                &l.width.to_string(),
                "--height",
                &l.height.to_string(),
            ])
            .args([
                "--load-tickets",
                &l.tickets.to_string(),
                "--load-volunteers",
                &l.volunteers.to_string(),
            ])
            .args(["--measure-frames", &l.frames.to_string()])
            .args(l.moving.then_some("--move-volunteers"))
            .args(["--map-cache", if l.map_cache { "true" } else { "false" }])
            .args(l.select.map(|q| ["--select", q]).into_iter().flatten())
            .args(["--scale", &l.grid_split.to_string()])
            .args(
                l.probe_rate
                    .map(|r| ["--probe-rate".to_owned(), r.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .arg("--out")
            .arg(&out)
            .env("DATAWALL_LOG", "error");
        let status = cmd
            .status()
            .context("running the wall for frame timing (needs xvfb-run without a display)")?;
        anyhow::ensure!(
            status.success(),
            "the wall exited with {status} while measuring frames"
        );
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.with_extension("json"))?)?;
        let f = |k: &str| info[k].as_f64().unwrap_or(0.0);
        let label = format!(
            "{}x{}, {} grids, {} tickets, {} volunteers{}",
            l.width,
            l.height,
            info["grids"].as_u64().unwrap_or(0),
            l.tickets,
            l.volunteers,
            if l.select.is_some() {
                ", panels open"
            } else {
                ""
            }
        ) + &l
            .probe_rate
            .map_or_else(String::new, |r| format!(", fixes {r}/s"))
            + if l.low_latency { ", low latency" } else { "" }
            + if l.moving { ", volunteers moving" } else { "" }
            + if l.map_cache { "" } else { ", map cache off" };
        if l.probe_rate.is_some() {
            for (p, key) in [("p50", "latency_ms_p50"), ("p99", "latency_ms_p99")] {
                report.add(
                    "latency",
                    &format!("event→pixel {p}, {label}"),
                    f(key),
                    "ms",
                    format!("{} events", info["latency_samples"]),
                );
            }
        }
        report.add(
            "frame",
            &format!("frame p50, {label}"),
            f("frame_ms_p50"),
            "ms",
            format!(
                "{}{}",
                info["adapter"].as_str().unwrap_or("?"),
                if offscreen { ", offscreen" } else { "" }
            ),
        );
        report.add(
            "frame",
            &format!("frame p95, {label}"),
            f("frame_ms_p95"),
            "ms",
            "",
        );
        report.add(
            "frame",
            &format!("ECS p50, {label}"),
            f("ecs_ms_p50"),
            "ms",
            "main-world update",
        );
        report.add(
            "frame",
            &format!("ECS p95, {label}"),
            f("ecs_ms_p95"),
            "ms",
            format!("{} frames", info["frames_measured"]),
        );
        if offscreen {
            for (name, key, note) in [
                (
                    "render CPU p50",
                    "render_cpu_ms_p50",
                    "render world, schedule start → submit",
                ),
                (
                    "GPU wait p50",
                    "gpu_wait_ms_p50",
                    "after submission, until the GPU is done",
                ),
            ] {
                report.add("frame", &format!("{name}, {label}"), f(key), "ms", note);
            }
        }
        if let Some([renders, frames]) = info["map_cache"]
            .as_array()
            .and_then(|a| Some([a.first()?.as_u64()?, a.get(1)?.as_u64()?]))
        {
            report.add(
                "frame",
                &format!("map drawn into its cache, {label}"),
                renders as f64 * 100.0 / frames.max(1) as f64,
                "%",
                format!("{renders} of {frames} frames"),
            );
        }
        report.add(
            "coldstart",
            &format!("connect → first live frame, {label}"),
            f("cold_start_ms"),
            "ms",
            "websocket open → a frame with the snapshot's state and its figures (binary snapshot)",
        );
        report.add(
            "memory",
            &format!("wall peak RSS, {label}"),
            f("wall_rss_mb"),
            "MB",
            "the wall process (embedded gateway included)",
        );
        report.add(
            "memory",
            &format!("wall resident at the picture, {label}"),
            f("wall_rss_now_mb"),
            "MB",
            "the wall process (embedded gateway included), its load's freed memory handed back",
        );
        let gpu = &info["gpu"];
        if let Some(allocated) = gpu["allocated_mb"].as_f64() {
            let largest: Vec<String> = gpu["largest"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| Some(format!("{} {:.1}", e[0].as_str()?, e[1].as_f64()?)))
                .collect();
            report.add(
                "memory",
                &format!("wall GPU memory, {label}"),
                allocated,
                "MB",
                format!(
                    "textures and buffers ({:.0} MB of blocks reserved; on a software renderer \
                     in main memory); largest: {}",
                    gpu["reserved_mb"].as_f64().unwrap_or(0.0),
                    largest.join(", ")
                ),
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Run the benchmarks at the quick or full sizes (only the `only` groups when given, the wall
/// frames rendered by `wall_exe` when given); `json` receives the figures.
pub fn run(
    pack: &CountyPack,
    quick: bool,
    json: Option<&std::path::Path>,
    only: Vec<String>,
    wall_exe: Option<std::path::PathBuf>,
    offscreen: bool,
) -> Result<Report> {
    if let Some(bad) = only.iter().find(|g| !GROUPS.contains(&g.as_str())) {
        anyhow::bail!(
            "unknown benchmark group {bad:?}; the groups are {}",
            GROUPS.join(", ")
        );
    }
    let sizes = Sizes {
        only,
        wall_exe,
        offscreen,
        ..if quick { Sizes::quick() } else { Sizes::full() }
    };
    run_with(pack, sizes, quick, json)
}

/// Run every benchmark at the given sizes.
pub fn run_with(
    pack: &CountyPack,
    sizes: Sizes,
    quick: bool,
    json: Option<&std::path::Path>,
) -> Result<Report> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("datawall-bench")
        .build()?;
    let mut report = Report::default();
    println!(
        "{:<10} {:<44} {:>14} {:<8} note",
        "group", "figure", "value", "unit"
    );
    let county = Arc::new(County::new(pack.clone()));
    let big = Arc::new(County::with_roster_scale(
        pack.clone(),
        sizes.big_roster_scale,
    ));
    if sizes.wants("model") {
        model_and_codec(&mut report, &county, sizes.apply_events);
    }
    rt.block_on(async {
        if !sizes.wants("ingest") {
            return anyhow::Ok(());
        }
        for format in SnapshotFormat::ALL {
            ingest(
                &mut report,
                Arc::clone(&county),
                sizes.fanout_events,
                "1k volunteers",
                format,
            )
            .await?;
            ingest(
                &mut report,
                Arc::clone(&big),
                sizes.fanout_events,
                "50k volunteers",
                format,
            )
            .await?;
        }
        anyhow::Ok(())
    })?;
    rt.block_on(async {
        if !sizes.wants("fanout") {
            return anyhow::Ok(());
        }
        for clients in [1, 10, 100] {
            let n = if clients == 100 {
                sizes.fanout_events / 4
            } else {
                sizes.fanout_events
            };
            fanout(&mut report, Arc::clone(&county), clients, n).await?;
        }
        anyhow::Ok(())
    })?;
    rt.block_on(async {
        if !sizes.wants("latency") {
            return anyhow::Ok(());
        }
        for (clients, rate) in [(1, 1_000), (1, 10_000), (10, 1_000), (10, 10_000)] {
            latency(
                &mut report,
                Arc::clone(&county),
                clients,
                rate,
                sizes.latency_secs,
            )
            .await?;
        }
        anyhow::Ok(())
    })?;
    rt.block_on(async {
        if !sizes.wants("backbone") {
            return;
        }
        let run = backbone::run(
            &mut report,
            Arc::clone(&county),
            sizes.backbone_events,
            10,
            sizes.latency_secs,
            sizes.backbone_checkpoint_tickets,
        );
        if let Err(e) = run.await {
            eprintln!("bench: backbone figures skipped: {e:#}");
        }
    });
    if sizes.wants("snapshot") {
        snapshot(
            &mut report,
            pack,
            sizes.snapshot_tickets,
            sizes.snapshot_roster_scale,
        )?;
    }
    if sizes.wants("memory") {
        memory::memory(
            &mut report,
            pack,
            sizes.snapshot_tickets,
            sizes.snapshot_roster_scale,
            sizes.memory_grid_split,
        )?;
        // The gateway alone runs as its own process: the datawall binary's `serve`.
        let exe = sizes.wall_exe.clone().or_else(|| {
            std::env::current_exe().ok().filter(|p| {
                p.file_stem()
                    .is_some_and(|n| n.to_string_lossy().starts_with("datawall"))
            })
        });
        match exe {
            Some(exe) => memory::gateway_alone(
                &mut report,
                &rt,
                &exe,
                sizes.gateway_backlog,
                sizes.memory_grid_split,
            )?,
            None => println!("memory     gateway alone skipped: no datawall binary to run"),
        }
    }
    #[cfg(feature = "analytics")]
    if sizes.wants("analytics") {
        analytics(&mut report, &county, sizes.analytics_tickets)?;
    }
    if sizes.wants("history") {
        history::history(
            &mut report,
            pack,
            sizes.history_hours,
            sizes.history_fast_minutes,
            sizes.history_city,
        )?;
    }
    if sizes.wants("frame") {
        frames(
            &mut report,
            sizes.frame_loads,
            sizes.wall_exe.as_deref(),
            sizes.offscreen,
        )?;
    }
    report.add(
        "memory",
        "peak RSS",
        peak_rss_mb(),
        "MB",
        "whole bench process",
    );
    if let Some(path) = json {
        let doc = serde_json::json!({
            "quick": quick,
            "date_ms": crate::net::hub::system_now_ms(),
            "figures": report.figures,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    Ok(report)
}
