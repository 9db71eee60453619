//! Backbone figures against a local nats-server with `sync_interval: always`: producer →
//! JetStream → gateway → walls throughput and latency, and how fast a fresh gateway serves
//! a large county from a checkpoint (against reading the whole stream).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream;

use super::{Report, TOKEN, connect_synced, counting_client, fixes, percentile, tickets};
use crate::model::County;
use crate::net::backbone::{Names, Publisher};
use crate::net::gateway::GatewayConfig;
use crate::net::natsd::LocalNats;
use crate::net::{BackboneGateway, BackboneOptions};
use crate::protocol::Event;
use crate::protocol::session::FEED_PATH;

const GROUP: &str = "backbone";
/// Events per published message (what `datawall sim` sends at most).
const BATCH: usize = 1_000;

async fn gateway(county: &Arc<County>, url: &str) -> Result<BackboneGateway> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut cfg = GatewayConfig::new(TOKEN);
    cfg.max_clients = 1_000;
    // Every bench client connects from loopback.
    cfg.max_clients_per_address = 1_000;
    cfg.conflate_after_events = u64::MAX;
    BackboneGateway::start(
        Arc::clone(county),
        url,
        listener,
        cfg,
        BackboneOptions {
            history: None,
            ring: 4_000_000,
            ring_max_bytes: usize::MAX,
            checkpoint_every: None,
            audit_log: None,
            alerts: false,
        },
    )
    .await
}

fn url_of(g: &BackboneGateway) -> String {
    format!("ws://{}{FEED_PATH}", g.addr)
}

/// Wait until `g` has applied stream message `stream_seq` and is caught up.
async fn caught_up(g: &BackboneGateway, stream_seq: u64) {
    let mut latest = g.hub.subscribe();
    while g.hub.stream_seq() < stream_seq || !g.hub.caught_up() {
        if latest.changed().await.is_err() {
            return;
        }
    }
}

/// Publish `events` in batches, each acknowledged before the next (as the simulator does);
/// returns the stream sequence of the last batch.
async fn publish_all(p: &Publisher, events: &[Event]) -> Result<u64> {
    let mut last = 0;
    for (k, batch) in events.chunks(BATCH).enumerate() {
        let (seq, _) = p
            .publish(p.names.events(), batch, Some(&format!("bench:{k}")), None)
            .await?;
        last = seq;
    }
    Ok(last)
}

/// Throughput: `n` fixes published (acknowledged batches of 1 000) through a gateway to
/// `clients` walls; events/s until the slowest wall has decoded everything. Latency:
/// batches of `rate / 100` every 10 ms for `secs`; publish → decoded by each wall.
pub async fn run(
    report: &mut Report,
    county: Arc<County>,
    n: usize,
    clients: usize,
    latency_secs: f64,
    checkpoint_tickets: usize,
) -> Result<()> {
    let nats = LocalNats::start("bench")?;
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let g = gateway(&county, &url).await?;
    let publisher = Publisher {
        js: g.js.clone(),
        names: Names::new(county.pack.manifest.county_code),
    };

    // Throughput.
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(connect_synced(&url_of(&g)).await?);
    }
    let events = fixes(&county, super::T0, n);
    let messages = n.div_ceil(BATCH) as u64;
    // The last event: the last index of the last message.
    let until = crate::net::hub::feed_seq(messages, (n - 1) % BATCH);
    let origin = Instant::now();
    let readers: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(counting_client(c, until, None, origin)))
        .collect();
    let start = Instant::now();
    publish_all(&publisher, &events).await?;
    let produced = start.elapsed().as_secs_f64();
    let mut delivered = 0;
    for r in readers {
        delivered += r.await??.0;
    }
    let secs = start.elapsed().as_secs_f64();
    report.add(
        GROUP,
        "producer → JetStream (acked batches of 1000)",
        n as f64 / produced,
        "events/s",
        "sync_interval: always",
    );
    report.add(
        GROUP,
        &format!("producer → JetStream → gateway → {clients} walls"),
        n as f64 / secs,
        "events/s",
        format!("per wall; {delivered} events decoded in total"),
    );

    // Latency: stamp each message's publish time by its stream sequence.
    let first_msg = messages + 1;
    let batches = (latency_secs * 100.0).max(1.0) as usize;
    let per_batch = 10;
    let stamps: Arc<Vec<std::sync::atomic::AtomicU64>> = Arc::new(
        (0..first_msg + batches as u64 + 1)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect(),
    );
    let mut readers = Vec::new();
    let last_msg = first_msg + batches as u64 - 1;
    let now_at = g.hub.last_seq();
    for _ in 0..clients {
        // Past its snapshot and through any backlog the ring replays after it.
        let conn = connect_caught_up(&url_of(&g), now_at).await?;
        readers.push(tokio::spawn(latency_client(
            conn,
            crate::net::hub::feed_seq(last_msg, 0),
            Arc::clone(&stamps),
            origin,
        )));
    }
    let later = fixes(&county, super::T0 + 3_600_000, batches * per_batch);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut acks = Vec::with_capacity(batches);
    for (k, batch) in later.chunks(per_batch).enumerate() {
        tick.tick().await;
        let msg = first_msg + k as u64;
        stamps[msg as usize].store(
            origin.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let sent = Instant::now();
        publisher
            .publish(publisher.names.events(), batch, None, None)
            .await?;
        acks.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    acks.sort_by(f64::total_cmp);
    for (p, label) in [(0.5, "p50"), (0.99, "p99")] {
        report.add(
            GROUP,
            &format!("publish→ack {label}, 100 batches/s"),
            percentile(&acks, p),
            "ms",
            "JetStream stored (fsync) and acknowledged",
        );
    }
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await??);
    }
    all.sort_by(f64::total_cmp);
    let rate = per_batch * 100;
    report.add(
        GROUP,
        &format!("publish→wall p50, {clients} walls at {rate}/s"),
        percentile(&all, 0.5),
        "ms",
        "producer acked publish → JetStream → gateway → decoded",
    );
    report.add(
        GROUP,
        &format!("publish→wall p99, {clients} walls at {rate}/s"),
        percentile(&all, 0.99),
        "ms",
        format!("{} samples", all.len()),
    );
    g.stop().await;
    drop(publisher);
    drop(nats);

    checkpoint_start(report, county, checkpoint_tickets).await
}

/// A wall that has everything up to `seq`.
async fn connect_caught_up(url: &str, seq: u64) -> Result<crate::net::client::FeedConnection> {
    use crate::protocol::session::ServerMsg;
    let mut conn = crate::net::client::FeedConnection::connect(url, TOKEN, None).await?;
    loop {
        match conn.next_msg().await? {
            ServerMsg::SnapshotEnd(e) if e.seq >= seq => return Ok(conn),
            ServerMsg::Delta(d) if d.last_seq >= seq => return Ok(conn),
            _ => {}
        }
    }
}

/// Each delta's events: publish (of their stream message) → decoded.
async fn latency_client(
    mut conn: crate::net::client::FeedConnection,
    until: u64,
    stamps: Arc<Vec<std::sync::atomic::AtomicU64>>,
    origin: Instant,
) -> Result<Vec<f64>> {
    use crate::protocol::session::ServerMsg;
    let mut out = Vec::new();
    loop {
        let msg = conn.next_msg().await?;
        if let ServerMsg::Delta(d) = msg {
            let now = origin.elapsed().as_nanos() as u64;
            for (seq, _) in &d.events {
                let message = (seq >> crate::net::hub::EVENT_INDEX_BITS) as usize;
                if let Some(t) = stamps.get(message) {
                    let sent = t.load(std::sync::atomic::Ordering::Relaxed);
                    if sent > 0 {
                        out.push(now.saturating_sub(sent) as f64 / 1e6);
                    }
                }
            }
            if d.last_seq >= until {
                break;
            }
        }
    }
    conn.close().await;
    Ok(out)
}

/// A county of `n` open tickets in the stream: the time a fresh gateway needs to serve it
/// (caught up and a wall's snapshot delivered), from a checkpoint and from the whole stream.
async fn checkpoint_start(report: &mut Report, county: Arc<County>, n: usize) -> Result<()> {
    let nats = LocalNats::start("bench-checkpoint")?;
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let first = gateway(&county, &url).await?;
    let publisher = Publisher {
        js: first.js.clone(),
        names: first.names.clone(),
    };
    // The tickets, then the volunteers' fixes of a while: the history a stream holds.
    let mut load = tickets(&county, n);
    load.extend(fixes(&county, super::T0 + 7_200_000, 4 * n));
    eprintln!(
        "bench: publishing {n} tickets and {} position fixes to the stream",
        4 * n
    );
    let last = publish_all(&publisher, &load).await?;
    caught_up(&first, last).await;
    let t = Instant::now();
    let hub = Arc::clone(&first.hub);
    tokio::task::spawn_blocking(move || crate::net::backbone::encode_checkpoint(&hub)).await??;
    report.add(
        GROUP,
        &format!("checkpoint encode (gzip JSON), {n} tickets"),
        t.elapsed().as_secs_f64() * 1e3,
        "ms",
        "of the write below",
    );
    let t = Instant::now();
    let (_, _, bytes) = crate::net::backbone::write_checkpoint(
        &first.hub,
        &first.js,
        &first.names,
        &first.writer_id,
    )
    .await?;
    report.add(
        GROUP,
        &format!("checkpoint write, {n} tickets"),
        t.elapsed().as_secs_f64() * 1e3,
        "ms",
        format!("{:.1} MB gzip JSON", bytes as f64 / 1e6),
    );
    let t = Instant::now();
    let loaded =
        crate::net::backbone::load_checkpoint(&first.js, &first.names, &county, first.hub.epoch)
            .await
            .context("the checkpoint just written loads")?;
    report.add(
        GROUP,
        &format!("checkpoint load (fetch + decode), {n} tickets"),
        t.elapsed().as_secs_f64() * 1e3,
        "ms",
        format!("{} tickets", loaded.state.tickets.len()),
    );
    first.stop().await;

    for (label, from_checkpoint) in [
        ("from the checkpoint", true),
        ("from the whole stream", false),
    ] {
        if !from_checkpoint {
            let js = jetstream::new(async_nats::connect(&url).await?);
            js.delete_object_store(Names::new(county.pack.manifest.county_code).checkpoints())
                .await
                .context("removing the checkpoint")?;
        }
        let t = Instant::now();
        let g = gateway(&county, &url).await?;
        caught_up(&g, last).await;
        let conn = connect_synced(&url_of(&g)).await?;
        let secs = t.elapsed().as_secs_f64();
        conn.close().await;
        report.add(
            GROUP,
            &format!(
                "fresh gateway serves {n} tickets ({} events) {label}",
                5 * n
            ),
            secs * 1e3,
            "ms",
            "start → caught up → a wall's snapshot delivered",
        );
        g.stop().await;
    }
    drop(publisher);
    Ok(())
}
