//! `datawall sim --nats URL`: the county simulator as a producer on the backbone, the stand-in
//! for the county's ticket platform and the volunteers' phones.
//!
//! It publishes NDJSON batches to `datawall.<county>.events.sim`, each with a `Nats-Msg-Id`
//! and headers naming the run and how many events it has published so far. One publish is
//! unacknowledged at a time (a batch of up to `batch_events` events): a failed publish is
//! retried with the same id until JetStream stores it, so a batch is never reordered behind
//! a later one. A restarted producer reads the last batch it stored, rebuilds the
//! (deterministic) simulation up to there and continues with the next event: nothing is
//! published twice or skipped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use async_nats::jetstream;
use futures_util::StreamExt as _;
use tokio::sync::watch;

use super::backbone::{self, Names, Publisher};
use crate::model::County;
use crate::protocol::command::PlatformCommand;
use crate::protocol::{Event, TimestampMs};
use crate::sim::{SimConfig, Simulator};

/// Header: which simulation run a batch belongs to (seed, scale, start…).
pub const RUN_HEADER: &str = "Datawall-Sim-Run";
/// Header: events the run has published up to and including this batch.
pub const COUNT_HEADER: &str = "Datawall-Sim-Events";
/// Header: the simulation time the run had reached when it cut this batch.
pub const UNTIL_HEADER: &str = "Datawall-Sim-Until-Ms";

/// How the producer runs.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    pub url: String,
    pub sim: SimConfig,
    /// Whether `sim.start_ms` was asked for (else a run found in the stream is continued
    /// whatever its start).
    pub explicit_start: bool,
    pub speed: f64,
    /// Events per published batch at most.
    pub batch_events: usize,
    /// Stop once the simulation clock passes this (tests, benchmarks); `None`: run until
    /// shutdown.
    pub until_ms: Option<TimestampMs>,
}

/// What a producer run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerReport {
    /// Events of the run already in the stream when it started.
    pub resumed_after: u64,
    pub events: u64,
    pub batches: u64,
    /// Publishes that failed and were retried.
    pub retries: u64,
    /// Retried batches JetStream had already stored (dropped by their id).
    pub duplicates: u64,
}

fn run_id(sim: &SimConfig) -> String {
    format!(
        "seed={};scale={};fix={};warmup={};backlog={};start={}",
        sim.seed, sim.scale, sim.fix_interval_ms, sim.warmup_hours, sim.backlog, sim.start_ms
    )
}

/// Where a run stopped, read from its last batch in the stream.
struct Resume {
    start_ms: TimestampMs,
    count: u64,
    until_ms: TimestampMs,
}

fn same_run_except_start(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.rsplit_once(";start=").map(|(head, _)| head.to_owned());
    strip(a).is_some() && strip(a) == strip(b)
}

async fn find_resume(
    stream: &jetstream::stream::Stream,
    names: &Names,
    cfg: &ProducerConfig,
) -> Result<Option<Resume>> {
    let last = match stream
        .get_last_raw_message_by_subject(&names.sim_events())
        .await
    {
        Ok(m) => m,
        Err(e)
            if matches!(
                e.kind(),
                jetstream::stream::LastRawMessageErrorKind::NoMessageFound
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e).context("reading where the simulator stopped"),
    };
    let header = |name: &str| last.headers.get(name).map(|v| v.as_str().to_owned());
    let (Some(run), Some(count), Some(until)) = (
        header(RUN_HEADER),
        header(COUNT_HEADER).and_then(|c| c.parse::<u64>().ok()),
        header(UNTIL_HEADER).and_then(|c| c.parse::<TimestampMs>().ok()),
    ) else {
        return Ok(None);
    };
    let mine = run_id(&cfg.sim);
    let matches = if cfg.explicit_start {
        run == mine
    } else {
        same_run_except_start(&run, &mine)
    };
    if !matches {
        eprintln!(
            "datawall: the stream's last simulation run ({run}) differs from this one ({mine}); starting a new run"
        );
        return Ok(None);
    }
    let start_ms = run
        .rsplit_once(";start=")
        .and_then(|(_, s)| s.parse().ok())
        .unwrap_or(cfg.sim.start_ms);
    Ok(Some(Resume {
        start_ms,
        count,
        until_ms: until,
    }))
}

/// Publishes a run's events in order, one acknowledged batch at a time, skipping the
/// events an earlier process of the run already stored.
struct Out {
    publisher: Publisher,
    stream: jetstream::stream::Stream,
    subject: String,
    run: String,
    skip: u64,
    count: u64,
    batch_events: usize,
    speed: f64,
    report: ProducerReport,
}

impl Out {
    /// Publish `events` (cut at `until_ms` of simulation time) in batches.
    async fn send(
        &mut self,
        events: Vec<Event>,
        until_ms: TimestampMs,
        clock_ms: TimestampMs,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<()> {
        let mut events = events;
        if self.skip > 0 {
            let n = (self.skip as usize).min(events.len());
            events.drain(..n);
            self.skip -= n as u64;
        }
        for batch in events.chunks(self.batch_events.max(1)) {
            let after = self.count + batch.len() as u64;
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.publish(batch, after, until_ms, clock_ms).await {
                    Ok(duplicate) => {
                        if duplicate {
                            self.report.duplicates += 1;
                        }
                        break;
                    }
                    Err(e) => {
                        if *shutdown.borrow() {
                            return Err(e.context("stopped while a batch was unacknowledged"));
                        }
                        self.report.retries += 1;
                        tracing::warn!(target: "datawall::producer", "publish failed ({e:#}); retrying the same batch in {} ms", backoff.as_millis());
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        // Stored, with the acknowledgement lost, longer ago than the
                        // duplicate window? Then a retry would store it twice: look first.
                        if self.stored_through().await.is_some_and(|n| n >= after) {
                            self.report.duplicates += 1;
                            break;
                        }
                    }
                }
            }
            self.count = after;
            self.report.events += batch.len() as u64;
            self.report.batches += 1;
        }
        Ok(())
    }

    /// Events of this run the stream holds, from its last batch's headers.
    async fn stored_through(&self) -> Option<u64> {
        let last = self
            .stream
            .get_last_raw_message_by_subject(&self.subject)
            .await
            .ok()?;
        let header = |name: &str| last.headers.get(name).map(|v| v.as_str().to_owned());
        (header(RUN_HEADER)? == self.run)
            .then(|| header(COUNT_HEADER)?.parse().ok())
            .flatten()
    }

    async fn publish(
        &self,
        batch: &[Event],
        after: u64,
        until_ms: TimestampMs,
        clock_ms: TimestampMs,
    ) -> Result<bool> {
        let body = backbone::encode_events(batch);
        let msg = jetstream::message::PublishMessage::build()
            .payload(body.into())
            .message_id(format!("sim:{}:{after}", self.run))
            .header(RUN_HEADER, self.run.as_str())
            .header(COUNT_HEADER, after.to_string().as_str())
            .header(UNTIL_HEADER, until_ms.to_string().as_str())
            .header(backbone::CLOCK_HEADER, clock_ms.to_string().as_str())
            .header(backbone::CLOCK_RATE_HEADER, self.speed.to_string().as_str())
            .header(backbone::SIMULATED_HEADER, "true");
        let ack = self
            .publisher
            .js
            .send_publish(self.subject.clone(), msg)
            .await?
            .await?;
        Ok(ack.duplicate)
    }
}

/// Run the simulator into the county's stream until `shutdown` (or `cfg.until_ms`).
pub async fn run(
    county: Arc<County>,
    cfg: ProducerConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<ProducerReport> {
    let names = Names::new(county.pack.manifest.county_code);
    let client = backbone::connect(&cfg.url, "datawall-sim", Arc::default(), false).await?;
    let js = jetstream::new(client.clone());
    let (stream, _epoch) = backbone::ensure_stream(&js, &names).await?;
    let resume = find_resume(&stream, &names, &cfg).await?;
    let mut sim_cfg = cfg.sim.clone();
    if let Some(r) = &resume {
        sim_cfg.start_ms = r.start_ms;
    }
    let start_ms = sim_cfg.start_ms;
    let run_name = run_id(&sim_cfg);
    let mut sim = Simulator::new(Arc::clone(&county), sim_cfg);
    let mut out = Out {
        publisher: Publisher {
            js,
            names: names.clone(),
        },
        stream: stream.clone(),
        subject: names.sim_events(),
        run: run_name,
        skip: resume.as_ref().map_or(0, |r| r.count),
        count: resume.as_ref().map_or(0, |r| r.count),
        batch_events: cfg.batch_events,
        speed: cfg.speed,
        report: ProducerReport {
            resumed_after: resume.as_ref().map_or(0, |r| r.count),
            ..Default::default()
        },
    };
    // The events before the live start, published as fast as JetStream stores them.
    let history = sim.advance_to(start_ms);
    let total = history.len();
    let mut live_from = start_ms;
    if let Some(r) = &resume {
        eprintln!(
            "datawall: continuing the simulation after event {} (simulation time {})",
            r.count, r.until_ms
        );
        out.send(history, start_ms, start_ms, &shutdown).await?;
        // Rebuild the live part up to where the run stopped (the simulation is
        // deterministic), publishing only what the stream does not hold yet.
        if r.until_ms > start_ms {
            let rebuilt = sim.advance_to(r.until_ms);
            out.send(rebuilt, r.until_ms, r.until_ms, &shutdown).await?;
            live_from = r.until_ms;
        }
    } else {
        eprintln!(
            "datawall: publishing {total} events of history to {} (stream {})",
            names.sim_events(),
            names.stream()
        );
        let mut sent = 0usize;
        let step = (out.batch_events.max(1) * 64).max(1);
        let mut it = history.into_iter().peekable();
        while it.peek().is_some() {
            let part: Vec<Event> = it.by_ref().take(step).collect();
            sent += part.len();
            out.send(part, start_ms, start_ms, &shutdown).await?;
            eprintln!("datawall: history {sent}/{total}");
            if *shutdown.borrow() {
                return Ok(out.report);
            }
        }
    }
    eprintln!(
        "datawall: live at {}x from simulation time {live_from}",
        cfg.speed
    );
    // The county's platform: operators' commands arrive as requests, answered at once; what
    // the platform does follows as events on the stream.
    let mut commands = client
        .subscribe(names.commands())
        .await
        .context("subscribing to the operators' commands")?;
    eprintln!(
        "datawall: acting on operators' commands from {}",
        names.commands()
    );
    let clock = super::source::accelerated_clock(live_from, cfg.speed);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut shutdown_rx = shutdown.clone();
    loop {
        let command = tokio::select! {
            _ = shutdown_rx.changed() => break,
            _ = tick.tick() => None,
            Some(msg) = commands.next() => Some(msg),
        };
        let mut now = clock();
        let last = cfg.until_ms.is_some_and(|u| now >= u);
        if let Some(u) = cfg.until_ms {
            now = now.min(u);
        }
        let mut events = sim.advance_to(now);
        if let Some(msg) = command {
            let reply = match serde_json::from_slice::<PlatformCommand>(&msg.payload) {
                Ok(cmd) => {
                    let result = sim.command(&cmd);
                    match &result {
                        Ok(()) => eprintln!(
                            "datawall: acting on {} ({})",
                            cmd.command_id,
                            cmd.command.type_name()
                        ),
                        Err(e) => eprintln!("datawall: cannot act on {}: {e}", cmd.command_id),
                    }
                    super::gateway::commands::platform_reply(result)
                }
                Err(e) => super::gateway::commands::platform_reply(Err(format!(
                    "the command did not parse: {e}"
                ))),
            };
            events.extend(sim.advance_to(now));
            if let Some(to) = msg.reply {
                let body = serde_json::to_vec(&reply).unwrap_or_default();
                if let Err(e) = client.publish(to, body.into()).await {
                    tracing::warn!(target: "datawall::producer", "answering a command failed: {e}");
                }
            }
        }
        if !events.is_empty() {
            out.send(events, now, now, &shutdown).await?;
        }
        if last {
            break;
        }
    }
    Ok(out.report)
}
