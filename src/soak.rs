//! `datawall soak`: a simulated week through the real parts, to show that nothing grows.
//!
//! The county simulator publishes into an embedded gateway (its hub, alert engine and
//! websocket server on loopback, the feed clock driven by the soak), and a headless wall
//! client follows it: the wall's own feed thread, model and analytics store, with the
//! analytics computed every feed hour as the wall's panels would. Every feed hour the soak
//! samples this process's resident memory and the size of every structure that could grow;
//! at the end it checks that the client holds exactly the gateway's state.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::model::County;
use crate::net::hub::Hub;
use crate::protocol::TimestampMs;
use crate::sim::{SimConfig, Simulator};
use crate::wall::feed::{FeedChannel, FeedTarget, WallModel, apply_item, spawn_feed};

const HOUR_MS: TimestampMs = 3_600_000;
const DAY_MS: TimestampMs = 24 * HOUR_MS;
/// Feed time published per step.
const STEP_MS: TimestampMs = 60_000;
/// How long the client may make no progress before the soak gives up.
const STALL_LIMIT: Duration = Duration::from_secs(120);
/// Memory is flat when the resident set at the end is within this share of day 2's.
pub const FLAT_WITHIN: f64 = 0.05;

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Simulated days after the day of warm-up history.
    pub days: f64,
    /// Feed seconds per real second; 0 runs as fast as the client keeps up (in step with it,
    /// one feed minute at a time).
    pub speed: f64,
    pub seed: u64,
    /// How often an on-duty volunteer reports its position (a week at one fix a second
    /// would be 450 million events; the default is one every 30 s).
    pub fix_interval_ms: i64,
    /// Multiplies the ticket and incident rates.
    pub scale: f64,
}

impl Default for SoakConfig {
    fn default() -> Self {
        Self {
            days: 7.0,
            speed: 0.0,
            seed: 1,
            fix_interval_ms: 30_000,
            scale: 1.0,
        }
    }
}

/// One hourly sample.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// Feed days since the live start.
    pub day: f64,
    pub feed_ms: TimestampMs,
    pub real_s: f64,
    /// Resident memory of the whole process (simulator, gateway and wall client), bytes.
    pub rss_bytes: u64,
    /// Events the gateway accepted so far, and the seq the gateway and the wall were at (the
    /// gateway's alert engine may have published a little more when the sample was taken).
    pub events: u64,
    pub gateway_seq: u64,
    pub wall_seq: u64,
    pub gateway_tickets: usize,
    pub gateway_open_tickets: usize,
    pub gateway_incidents: usize,
    pub gateway_alerts: usize,
    pub gateway_ring: usize,
    pub wall_tickets: usize,
    pub wall_incidents: usize,
    /// Rows of the wall's analytics store, allocated (used or free).
    pub wall_store_rows: usize,
    pub wall_ticker: usize,
    /// Rows the last analytics refresh queried (those with something within the window).
    pub analytics_rows: usize,
}

/// What the soak found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakReport {
    pub days: f64,
    pub speed: f64,
    pub fix_interval_ms: i64,
    pub real_s: f64,
    pub samples: Vec<Sample>,
    pub events_accepted: u64,
    pub events_rejected: u64,
    /// Events the wall client received and the ones its model dropped.
    pub client_events: u64,
    pub client_dropped: u64,
    /// Clients that fell behind the replay buffer, and snapshots sent after the first.
    pub resyncs: u64,
    pub snapshots_after_first: u64,
    pub conflated: u64,
    pub pruned: u64,
    pub final_seq: u64,
    /// The client's state equals the gateway's at `final_seq`.
    pub final_state_equal: bool,
    pub rss_day1_bytes: Option<u64>,
    pub rss_day2_bytes: Option<u64>,
    pub rss_last_bytes: u64,
    /// Change of the resident set from day 2 to the end, as a share of day 2's.
    pub rss_growth_from_day2: Option<f64>,
    /// Within [`FLAT_WITHIN`] (judged from day 2 on; `None` for runs under three days).
    pub flat: Option<bool>,
}

impl SoakReport {
    /// What is wrong, if anything: the run's verdict.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.final_state_equal {
            out.push(format!(
                "the wall client's state differs from the gateway's at seq {}",
                self.final_seq
            ));
        }
        if self.events_rejected > 0 || self.client_dropped > 0 {
            out.push(format!(
                "events dropped: {} by the gateway, {} by the wall client",
                self.events_rejected, self.client_dropped
            ));
        }
        if self.flat == Some(false) {
            out.push(format!(
                "memory grew {:+.1} % from day 2 to the end (at most {:.0} %)",
                self.rss_growth_from_day2.unwrap_or(0.0) * 100.0,
                FLAT_WITHIN * 100.0
            ));
        }
        out
    }
}

pub use crate::net::metrics::rss_bytes;

/// The client's side: the wall's feed channel and model, with a runtime to wait on it.
struct Client {
    rt: tokio::runtime::Runtime,
    channel: FeedChannel,
    model: WallModel,
    analytics_rows: usize,
}

impl Client {
    /// Apply what the feed thread has, waiting at most `wait` for the first item.
    fn pump(&mut self, wait: Duration) -> Result<()> {
        let rx = &mut self.channel.rx;
        let first = self
            .rt
            .block_on(async { tokio::time::timeout(wait, rx.recv()).await });
        match first {
            Ok(Some(item)) => apply_item(&self.channel, &mut self.model, item),
            Ok(None) => bail!("the wall client's feed thread ended"),
            Err(_) => return Ok(()),
        }
        while let Ok(item) = self.channel.rx.try_recv() {
            apply_item(&self.channel, &mut self.model, item);
        }
        Ok(())
    }

    /// Follow the feed until the model has applied `seq`.
    fn reach(&mut self, seq: u64) -> Result<()> {
        let mut seen = self.model.mirror.last_seq;
        let mut progress = Instant::now();
        while self.model.mirror.state.is_none() || self.model.mirror.last_seq < seq {
            self.pump(Duration::from_millis(200))?;
            if self.model.mirror.last_seq != seen {
                seen = self.model.mirror.last_seq;
                progress = Instant::now();
            } else if progress.elapsed() > STALL_LIMIT {
                bail!(
                    "the wall client made no progress for {} s at seq {seen} of {seq} ({:?}; last problem: {})",
                    STALL_LIMIT.as_secs(),
                    self.model.state,
                    self.model.last_problem.as_deref().unwrap_or("none")
                );
            }
        }
        Ok(())
    }

    /// The analytics the wall's panels show, from its store (as `refresh_stats` does).
    fn refresh_analytics(&mut self) -> Result<()> {
        let now_ms = self.model.now_ms();
        let pack = &self.model.county.pack;
        let a = self
            .model
            .ticket_store
            .refresh_at(now_ms, pack.communities.len(), pack.grids.len())
            .run()
            .context("the wall's analytics failed")?;
        self.analytics_rows = a.queried;
        Ok(())
    }
}

fn sample(
    hub: &Hub,
    client: &Client,
    start_ms: TimestampMs,
    feed_ms: TimestampMs,
    real: Instant,
) -> Sample {
    let (gateway_seq, tickets, open, incidents, alerts) = {
        let (seq, s) = hub.state_at_seq();
        (
            seq,
            s.tickets.len(),
            s.open_tickets().count(),
            s.incidents.len(),
            s.alerts.len(),
        )
    };
    let live = client.model.live();
    Sample {
        day: (feed_ms - start_ms) as f64 / DAY_MS as f64,
        feed_ms,
        real_s: real.elapsed().as_secs_f64(),
        rss_bytes: rss_bytes(),
        events: hub.metrics.events_in.load(Ordering::Relaxed),
        gateway_seq,
        wall_seq: client.model.mirror.last_seq,
        gateway_tickets: tickets,
        gateway_open_tickets: open,
        gateway_incidents: incidents,
        gateway_alerts: alerts,
        gateway_ring: hub.ring_len(),
        wall_tickets: live.map_or(0, |l| l.tickets.len()),
        wall_incidents: live.map_or(0, |l| l.incidents.len()),
        wall_store_rows: client.model.ticket_store.capacity_rows(),
        wall_ticker: client.model.alerts.len(),
        analytics_rows: client.analytics_rows,
    }
}

/// Run the soak; `progress` sees every hourly sample as it is taken.
pub fn run(
    county: Arc<County>,
    cfg: &SoakConfig,
    mut progress: impl FnMut(&Sample),
) -> Result<SoakReport> {
    if !(cfg.days > 0.0 && cfg.days <= 60.0) {
        bail!("--days {} is outside 0–60", cfg.days);
    }
    if !(cfg.speed >= 0.0 && cfg.speed.is_finite()) {
        bail!(
            "--speed {} must be 0 (as fast as the client keeps up) or more",
            cfg.speed
        );
    }
    let sim_cfg = SimConfig {
        seed: cfg.seed,
        fix_interval_ms: cfg.fix_interval_ms,
        scale: cfg.scale,
        ..SimConfig::default()
    };
    let start = sim_cfg.start_ms;
    let end = start + (cfg.days * DAY_MS as f64) as TimestampMs;
    let mut sim = Simulator::new(Arc::clone(&county), sim_cfg);
    let clock = Arc::new(AtomicI64::new(start));
    let gw = crate::net::spawn_embedded(
        Arc::clone(&county),
        crate::net::EmbeddedSource::Driven {
            clock_ms: Arc::clone(&clock),
        },
    )?;
    let hub = Arc::clone(&gw.hub);
    crate::net::source::publish_chunked(&hub, sim.advance_to(start));
    let (rx, commands) = spawn_feed(FeedTarget {
        url: gw.url.clone(),
        token: gw.token.clone(),
        tls: None,
    })
    .context("starting the wall client's feed thread")?;
    let mut client = Client {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .context("starting the soak's runtime")?,
        channel: FeedChannel { rx, commands },
        model: WallModel::new(Arc::clone(&county)),
        analytics_rows: 0,
    };
    client.reach(hub.last_seq())?;
    client.refresh_analytics()?;
    let real = Instant::now();
    let mut samples = vec![sample(&hub, &client, start, start, real)];
    progress(&samples[0]);
    let mut t = start;
    while t < end {
        t = (t + STEP_MS).min(end);
        clock.store(t, Ordering::Relaxed);
        crate::net::source::publish_chunked(&hub, sim.advance_to(t));
        if cfg.speed > 0.0 {
            let due = real + Duration::from_secs_f64((t - start) as f64 / 1000.0 / cfg.speed);
            while let Some(left) = due.checked_duration_since(Instant::now()) {
                client.pump(left)?;
            }
        } else {
            client.reach(hub.last_seq())?;
        }
        if (t - start) % HOUR_MS == 0 || t == end {
            client.reach(hub.last_seq())?;
            client.refresh_analytics()?;
            let s = sample(&hub, &client, start, t, real);
            progress(&s);
            samples.push(s);
        }
    }
    // The end: the clock stops; follow until the client holds the gateway's last seq (the
    // alert engine may still publish what was due), then compare.
    let mut final_state_equal = false;
    let mut final_seq = 0;
    for _ in 0..50 {
        let (seq, truth) = hub.state_at_seq();
        client.reach(seq)?;
        if client.model.mirror.last_seq == seq {
            final_seq = seq;
            final_state_equal = client.model.live().is_some_and(|l| l.same_entities(&truth));
            break;
        }
    }
    if final_seq == 0 {
        bail!("the gateway kept publishing after the clock stopped; no quiet moment to compare");
    }
    let m = &hub.metrics;
    let at_day = |d: f64| {
        samples
            .iter()
            .find(|s| (s.day - d).abs() < 1e-9)
            .map(|s| s.rss_bytes)
    };
    let rss_last = samples.last().map_or(0, |s| s.rss_bytes);
    let (rss_day1, rss_day2) = (at_day(1.0), at_day(2.0));
    let growth = rss_day2
        .filter(|&b| b > 0)
        .map(|b| (rss_last as f64 - b as f64) / b as f64);
    let flat = (cfg.days >= 3.0)
        .then(|| growth.map(|g| g.abs() <= FLAT_WITHIN))
        .flatten();
    let report = SoakReport {
        days: cfg.days,
        speed: cfg.speed,
        fix_interval_ms: cfg.fix_interval_ms,
        real_s: real.elapsed().as_secs_f64(),
        samples,
        events_accepted: m.events_in.load(Ordering::Relaxed),
        events_rejected: m.events_rejected.load(Ordering::Relaxed),
        client_events: client.model.events,
        client_dropped: client.model.dropped,
        resyncs: m.resyncs.load(Ordering::Relaxed),
        snapshots_after_first: m.snapshots_sent.load(Ordering::Relaxed).saturating_sub(1),
        conflated: m.conflated.load(Ordering::Relaxed),
        pruned: m.pruned.load(Ordering::Relaxed),
        final_seq,
        final_state_equal,
        rss_day1_bytes: rss_day1,
        rss_day2_bytes: rss_day2,
        rss_last_bytes: rss_last,
        rss_growth_from_day2: growth,
        flat,
    };
    gw.stop();
    Ok(report)
}
