//! The NATS JetStream backbone against a real nats-server (`sync_interval: always`): the
//! simulator as a producer, gateways following the stream, checkpoints, HTTP ingest, a
//! server killed with SIGKILL, a gateway restarted, two gateways with one numbering, and
//! third-party Python clients.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use datawall::model::LiveState;
use datawall::net::backbone::{self, Names};
use datawall::net::client::{FeedConnection, Mirror};
use datawall::net::gateway::{GatewayConfig, Shutdown};
use datawall::net::hub::Hub;
use datawall::net::producer::{self, ProducerConfig, ProducerReport};
use datawall::net::{BackboneGateway, BackboneOptions};
use datawall::protocol::Event;
use datawall::protocol::session::{ClientMsg, FEED_PATH, ServerMsg};
use datawall::sim::{SimConfig, Simulator};
use futures_util::StreamExt;

use crate::common::county;
use datawall::net::natsd::LocalNats;

const TOKEN: &str = "viewer-token-51c2";
const PRODUCER: &str = "producer-token-9d0e";
const START_MS: i64 = 1_764_140_400_000;
/// Long enough for anything a loaded 2-core machine does; tests wait for events, not time.
const PATIENCE: Duration = Duration::from_secs(120);

fn sim_config() -> SimConfig {
    SimConfig {
        seed: 11,
        start_ms: START_MS,
        warmup_hours: 2,
        fix_interval_ms: 5_000,
        ..Default::default()
    }
}

/// The producer, `live_minutes` of simulated time after the history at `speed`.
fn producer_config(url: &str, speed: f64, live_minutes: i64) -> ProducerConfig {
    ProducerConfig {
        url: url.to_owned(),
        sim: sim_config(),
        explicit_start: true,
        speed,
        batch_events: 500,
        until_ms: Some(START_MS + live_minutes * 60_000),
    }
}

/// What the producer's run publishes, computed offline: the events and the state they make.
fn truth(live_minutes: i64) -> (Vec<Event>, LiveState) {
    let mut sim = Simulator::new(county(), sim_config());
    let mut events = sim.advance_to(START_MS);
    events.extend(sim.advance_to(START_MS + live_minutes * 60_000));
    let mut state = LiveState::new(county());
    for e in &events {
        state.apply(e).expect("the simulator's events are possible");
    }
    (events, state)
}

async fn gateway(url: &str, checkpoints: bool) -> BackboneGateway {
    gateway_every(url, checkpoints.then(|| Duration::from_secs(3_600))).await
}

async fn gateway_every(url: &str, checkpoint_every: Option<Duration>) -> BackboneGateway {
    gateway_with(url, checkpoint_every, false, |_| {}).await
}

/// A gateway on the stream at `url`; `alerts` runs its alert engine; `tweak` adjusts its
/// settings.
async fn gateway_with(
    url: &str,
    checkpoint_every: Option<Duration>,
    alerts: bool,
    tweak: impl FnOnce(&mut GatewayConfig),
) -> BackboneGateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = GatewayConfig::new(TOKEN);
    cfg.producer_tokens = vec![PRODUCER.into()];
    tweak(&mut cfg);
    // Every event to every client: these tests compare what each client got.
    cfg.conflate_after_events = u64::MAX;
    BackboneGateway::start(
        county(),
        url,
        listener,
        cfg,
        BackboneOptions {
            history: None,
            ring: 1_000_000,
            ring_max_bytes: usize::MAX,
            checkpoint_every,
            audit_log: None,
            alerts,
        },
    )
    .await
    .expect("the gateway opens the stream")
}

/// Events a gateway has applied from the stream since it started.
fn events_in(g: &BackboneGateway) -> u64 {
    g.hub
        .metrics
        .events_in
        .load(std::sync::atomic::Ordering::Relaxed)
}

fn feed_url(g: &BackboneGateway) -> String {
    format!("ws://{}{FEED_PATH}", g.addr)
}

async fn next(conn: &mut FeedConnection) -> ServerMsg {
    tokio::time::timeout(PATIENCE, conn.next_msg())
        .await
        .expect("a message in time")
        .expect("the connection stays up")
}

/// Read into the mirror until it has applied `seq`; returns the messages.
async fn sync_to(conn: &mut FeedConnection, mirror: &mut Mirror, seq: u64) -> Vec<ServerMsg> {
    let mut seen = Vec::new();
    while mirror.state.is_none() || mirror.last_seq < seq {
        let m = next(conn).await;
        seen.push(m.clone());
        mirror.handle(m).expect("no gap, no bad snapshot");
    }
    seen
}

/// Wait until the gateway has applied stream message `stream_seq`.
async fn follows_to(g: &BackboneGateway, stream_seq: u64) {
    let mut latest = g.hub.subscribe();
    tokio::time::timeout(PATIENCE, async {
        // Woken by every stream message the hub takes.
        while g.hub.stream_seq() < stream_seq {
            latest.changed().await.expect("the hub is alive");
        }
    })
    .await
    .expect("the gateway catches up with the stream");
}

async fn stream_last_seq(js: &jetstream::Context, names: &Names) -> u64 {
    let mut s = js.get_stream(names.stream()).await.unwrap();
    s.info().await.unwrap().state.last_sequence
}

/// Every message of the stream: (stream seq, msg id, events).
async fn read_stream(js: &jetstream::Context, names: &Names) -> Vec<(u64, String, Vec<Event>)> {
    let last = stream_last_seq(js, names).await;
    let stream = js.get_stream(names.stream()).await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while out.last().is_none_or(|(s, _, _)| *s < last) {
        let m = tokio::time::timeout(PATIENCE, messages.next())
            .await
            .expect("stream message in time")
            .unwrap()
            .unwrap();
        let seq = m.info().unwrap().stream_sequence;
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let events = backbone::parse_events(&m.payload)
            .into_iter()
            .map(|(_, e)| e.unwrap())
            .collect();
        out.push((seq, id, events));
    }
    out
}

fn run_producer(
    cfg: ProducerConfig,
) -> (
    Shutdown,
    tokio::task::JoinHandle<anyhow::Result<ProducerReport>>,
) {
    let (stop, rx) = Shutdown::new();
    (stop, tokio::spawn(producer::run(county(), cfg, rx)))
}

/// A wall-side client on `g` and a producer of `live_minutes` at 120×, read until the client
/// has some of the live feed (a fault strikes mid-stream).
async fn mid_stream(
    g: &BackboneGateway,
    nats_url: &str,
    live_minutes: i64,
) -> (
    FeedConnection,
    Mirror,
    Shutdown,
    tokio::task::JoinHandle<anyhow::Result<ProducerReport>>,
) {
    let mut conn = FeedConnection::connect(&feed_url(g), TOKEN, None)
        .await
        .unwrap();
    let mut mirror = Mirror::new(county());
    let hello = next(&mut conn).await;
    assert!(
        matches!(&hello, ServerMsg::Hello(h) if !h.simulated),
        "nothing in the stream yet, nothing said simulated: {hello:?}"
    );
    mirror.handle(hello).unwrap();
    let (stop, producer) = run_producer(producer_config(nats_url, 120.0, live_minutes));
    while mirror.state.is_none() || mirror.last_seq == 0 || g.hub.now_ms() < START_MS + 60_000 {
        let m = next(&mut conn).await;
        mirror.handle(m).unwrap();
    }
    (conn, mirror, stop, producer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_mid_stream_loses_and_repeats_nothing() {
    let mut nats =
        LocalNats::start("kill9").expect("nats-server starts (scripts/test installs it)");
    let g = gateway(&nats.url(), false).await;
    let live_minutes = 20;
    let (mut conn, mut mirror, _stop, producer) = mid_stream(&g, &nats.url(), live_minutes).await;
    eprintln!("test: killing nats-server at seq {}", mirror.last_seq);
    nats.kill9().unwrap();
    // Every wall is told the backbone is down, and keeps its state.
    loop {
        match next(&mut conn).await {
            ServerMsg::Heartbeat(h) if h.backbone_down_since_ms.is_some() => break,
            m => {
                mirror.handle(m).unwrap();
            }
        }
    }
    eprintln!("test: the wall was told; restarting nats-server");
    nats.restart().unwrap();
    ends_at_the_producers_truth(&g, &mut conn, &mut mirror, producer, live_minutes).await;
    g.stop().await;
}

/// After a backbone fault: the producer finishes (the wall reading meanwhile), the stream
/// holds its events once, in order, and the gateway and the wall end at its truth, told the
/// backbone is back.
async fn ends_at_the_producers_truth(
    g: &BackboneGateway,
    conn: &mut FeedConnection,
    mirror: &mut Mirror,
    producer: tokio::task::JoinHandle<anyhow::Result<ProducerReport>>,
    live_minutes: i64,
) {
    let fault_over = std::time::Instant::now();
    // The wall keeps reading meanwhile (a wall silent for 15 s is dropped by the gateway).
    let mut producer = producer;
    let report = loop {
        tokio::select! {
            r = &mut producer => break r.unwrap().expect("the producer's run succeeds"),
            m = next(conn) => {
                mirror.handle(m).unwrap();
            }
        }
    };
    let (events, truth_state) = truth(live_minutes);
    assert_eq!(report.events as usize, events.len(), "{report:?}");

    // Every published event is in the stream exactly once, in order.
    let stored = read_stream(&g.js, &g.names).await;
    let ids: HashSet<&str> = stored.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), stored.len(), "no batch stored twice");
    let in_stream: Vec<Event> = stored.iter().flat_map(|(_, _, e)| e.clone()).collect();
    assert_eq!(in_stream.len(), events.len());
    assert!(
        in_stream == events,
        "the stream holds the run's events in order"
    );

    // The gateway and the wall-side client end at the producer's truth, without a gap.
    follows_to(g, stored.last().unwrap().0).await;
    assert!(g.hub.state().same_entities(&truth_state));
    sync_to(conn, mirror, g.hub.last_seq()).await;
    assert!(mirror.state.as_ref().unwrap().same_entities(&truth_state));
    assert_eq!(mirror.rejected, 0, "{:?}", mirror.last_rejection);
    // A wall connecting now is told the feed is simulated: the simulator's producer says so
    // with every message.
    let mut fresh = FeedConnection::connect(&feed_url(g), TOKEN, None)
        .await
        .unwrap();
    match next(&mut fresh).await {
        ServerMsg::Hello(h) => assert!(h.simulated, "{h:?}"),
        m => panic!("{m:?}"),
    }
    drop(fresh);
    // And it is told the backbone is back.
    let mut back = false;
    while !back {
        if let ServerMsg::Heartbeat(h) = next(conn).await {
            back = h.backbone_down_since_ms.is_none();
        }
    }
    eprintln!(
        "test: gateway and wall at the producer's truth, told the backbone is back, {:.1} s after the fault ended (the producer finishing its run included)",
        fault_over.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_link_to_nats_is_noticed_and_the_wall_ends_at_the_truth() {
    let nats = LocalNats::start("stall").expect("nats-server starts (scripts/test installs it)");
    let upstream: std::net::SocketAddr = nats.url().trim_start_matches("nats://").parse().unwrap();
    // The gateway reaches NATS through the fault proxy; the producer directly.
    let proxy = crate::common::Proxy::start(upstream).await;
    let g = gateway(&format!("nats://{}", proxy.addr), false).await;
    let live_minutes = 20;
    let (mut conn, mut mirror, _stop, producer) = mid_stream(&g, &nats.url(), live_minutes).await;
    proxy.set(crate::common::Mode::Stall);
    let stalled = std::time::Instant::now();
    eprintln!(
        "test: stalled the gateway's link to NATS at seq {}",
        mirror.last_seq
    );
    // No error, no close: the gateway notices the silence of its consumer's heartbeats and
    // tells every wall, which keeps its state.
    loop {
        match next(&mut conn).await {
            ServerMsg::Heartbeat(h) if h.backbone_down_since_ms.is_some() => break,
            m => {
                mirror.handle(m).unwrap();
            }
        }
    }
    eprintln!(
        "test: the wall was told the backbone is down {:.1} s into the stall; releasing it",
        stalled.elapsed().as_secs_f64()
    );
    proxy.set(crate::common::Mode::Pass);
    ends_at_the_producers_truth(&g, &mut conn, &mut mirror, producer, live_minutes).await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_producer_continues_without_repeating_or_skipping() {
    let nats = LocalNats::start("producer-restart")
        .expect("nats-server starts (scripts/test installs it)");
    let names = Names::new(640_221);
    // A first process publishes part of the run, then stops.
    let mut first = producer_config(&nats.url(), 1_000.0, 6);
    first.until_ms = Some(START_MS + 2 * 60_000);
    let (_s, p) = run_producer(first);
    let r1 = p.await.unwrap().unwrap();
    assert_eq!(r1.resumed_after, 0);
    // The second process of the same run (start time found in the stream) goes on to 6 min.
    let mut second = producer_config(&nats.url(), 1_000.0, 6);
    second.explicit_start = false;
    second.sim.start_ms = START_MS + 999_999; // ignored: the run in the stream wins
    let (_s, p) = run_producer(second);
    let r2 = p.await.unwrap().unwrap();
    assert_eq!(r2.resumed_after, r1.events, "{r1:?} {r2:?}");
    let (events, _) = truth(6);
    assert_eq!((r1.events + r2.events) as usize, events.len());
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let stored: Vec<Event> = read_stream(&js, &names)
        .await
        .into_iter()
        .flat_map(|(_, _, e)| e)
        .collect();
    assert!(
        stored == events,
        "the two processes' events are the run's, once each, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_number_alike_and_a_wall_moves_between_them_without_a_snapshot() {
    let nats =
        LocalNats::start("two-gateways").expect("nats-server starts (scripts/test installs it)");
    let a = gateway(&nats.url(), false).await;
    let b = gateway(&nats.url(), false).await;
    assert_eq!(a.hub.epoch, b.hub.epoch, "one epoch from the stream");
    let mut ca = FeedConnection::connect(&feed_url(&a), TOKEN, None)
        .await
        .unwrap();
    let mut cb = FeedConnection::connect(&feed_url(&b), TOKEN, None)
        .await
        .unwrap();
    let (mut ma, mut mb) = (Mirror::new(county()), Mirror::new(county()));
    // Both synced (empty) before anything is published, so both see every delta.
    sync_to(&mut ca, &mut ma, 0).await;
    sync_to(&mut cb, &mut mb, 0).await;

    let (_s, mut p) = run_producer(producer_config(&nats.url(), 2_000.0, 5));
    // Both walls keep reading while the producer runs.
    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    loop {
        tokio::select! {
            r = &mut p => {
                r.unwrap().unwrap();
                break;
            }
            m = next(&mut ca) => {
                seen_a.push(m.clone());
                ma.handle(m).unwrap();
            }
            m = next(&mut cb) => {
                seen_b.push(m.clone());
                mb.handle(m).unwrap();
            }
        }
    }
    let last = stream_last_seq(&a.js, &a.names).await;
    follows_to(&a, last).await;
    follows_to(&b, last).await;
    assert_eq!(a.hub.last_seq(), b.hub.last_seq());
    seen_a.extend(sync_to(&mut ca, &mut ma, a.hub.last_seq()).await);
    seen_b.extend(sync_to(&mut cb, &mut mb, b.hub.last_seq()).await);
    let lossless = |msgs: &[ServerMsg]| -> Vec<(u64, Event)> {
        msgs.iter()
            .filter_map(|m| match m {
                ServerMsg::Delta(d) => Some(d.events.clone()),
                _ => None,
            })
            .flatten()
            .filter(|(_, e)| !matches!(e, Event::VolunteerFix(_)))
            .collect()
    };
    let (la, lb) = (lossless(&seen_a), lossless(&seen_b));
    assert!(la.len() > 100, "{} lossless events", la.len());
    assert!(la == lb, "both gateways send the same (seq, event) stream");
    assert!(
        ma.state
            .as_ref()
            .unwrap()
            .same_entities(mb.state.as_ref().unwrap())
    );
    // Sequence numbers come from stream positions: a batch's events share its message.
    let (first_seq, _) = la[0];
    assert!(first_seq >= 1 << datawall::net::hub::EVENT_INDEX_BITS);

    // The wall on A moves to B: it resumes where it was, with no snapshot.
    let at = ma.last_seq;
    let mut moved = FeedConnection::connect(&feed_url(&b), TOKEN, Some((a.hub.epoch, at)))
        .await
        .unwrap();
    match next(&mut moved).await {
        ServerMsg::Hello(h) => assert!(h.resumed, "resumed on the other gateway"),
        m => panic!("first message {m:?}"),
    }
    // More events arrive as deltas following `at`, never a snapshot.
    let ticket = r#"{"type":"ticket.opened.v1","ticket_id":990000001,"at_ms":1764150000000,"category":"repair","source":"hotline","priority":"high","pos":[106.545,38.906],"sla_deadline_ms":1764160000000}"#;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.publish(a.names.events(), format!("{ticket}\n").into())
        .await
        .unwrap()
        .await
        .unwrap();
    loop {
        match next(&mut moved).await {
            ServerMsg::SnapshotBegin(_) => panic!("a snapshot after a resume"),
            ServerMsg::Delta(d) => {
                assert_eq!(d.follows(), at, "the first delta follows the resume point");
                assert!(d.events.iter().any(
                    |(_, e)| matches!(e, Event::TicketOpened(t) if t.ticket_id == 990_000_001)
                ));
                break;
            }
            _ => {}
        }
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_resumes_its_client_and_a_new_one_starts_from_the_checkpoint() {
    let nats =
        LocalNats::start("gateway-restart").expect("nats-server starts (scripts/test installs it)");
    let a = gateway(&nats.url(), true).await;
    let mut conn = FeedConnection::connect(&feed_url(&a), TOKEN, None)
        .await
        .unwrap();
    let mut mirror = Mirror::new(county());
    let (_s, p) = run_producer(producer_config(&nats.url(), 2_000.0, 4));
    // Mid-stream the gateway stops (its client sees the connection close).
    while mirror.state.is_none() || mirror.last_seq == 0 {
        mirror.handle(next(&mut conn).await).unwrap();
    }
    let resume = mirror.resume_point().unwrap();
    a.stop().await;
    p.await.unwrap().unwrap();

    // A new gateway process (caught up, as its /healthz says): the client resumes with no
    // loss.
    let a2 = gateway(&nats.url(), true).await;
    let last = stream_last_seq(&a2.js, &a2.names).await;
    follows_to(&a2, last).await;
    let mut conn = FeedConnection::connect(&feed_url(&a2), TOKEN, Some(resume))
        .await
        .unwrap();
    match next(&mut conn).await {
        ServerMsg::Hello(h) => assert!(h.resumed, "{h:?}"),
        m => panic!("first message {m:?}"),
    }
    sync_to(&mut conn, &mut mirror, a2.hub.last_seq()).await;
    let (_, truth_state) = truth(4);
    assert!(mirror.state.as_ref().unwrap().same_entities(&truth_state));

    // A checkpoint of the whole stream: the next gateway starts from it and applies nothing
    // from the stream.
    let (seq, stream_seq, bytes) =
        backbone::write_checkpoint(&a2.hub, &a2.js, &a2.names, &a2.writer_id)
            .await
            .unwrap();
    assert_eq!((seq, stream_seq), (a2.hub.last_seq(), last));
    assert!(bytes > 1_000);
    let c = gateway(&nats.url(), false).await;
    assert_eq!(c.hub.stream_seq(), last, "started at the checkpoint");
    assert_eq!(c.hub.last_seq(), seq);
    assert!(c.hub.state().same_entities(&truth_state));
    let mut fresh = FeedConnection::connect(&feed_url(&c), TOKEN, None)
        .await
        .unwrap();
    let mut m2 = Mirror::new(county());
    sync_to(&mut fresh, &mut m2, seq).await;
    assert!(m2.state.as_ref().unwrap().same_entities(&truth_state));
    assert_eq!(events_in(&c), 0, "nothing replayed from the stream");
    a2.stop().await;
    c.stop().await;
}

/// Send one HTTP request over a real socket; returns (status, body).
pub async fn http(addr: std::net::SocketAddr, request: String) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub fn post_events(token: &str, key: Option<&str>, body: &str) -> String {
    let key = key
        .map(|k| format!("Idempotency-Key: {k}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{key}Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const OPENED: &str = r#"{"type":"ticket.opened.v1","ticket_id":770001,"at_ms":1764140400000,"category":"repair","source":"mini_program","priority":"high","pos":[106.545,38.906],"sla_deadline_ms":1764147600000,"summary":"楼道水管爆裂"}"#;
const DISPATCH_UNKNOWN: &str =
    r#"{"type":"ticket.dispatched.v1","ticket_id":42,"at_ms":1764140460000,"assignee":"网格员"}"#;
const DISPATCH: &str = r#"{"type":"ticket.dispatched.v1","ticket_id":770001,"at_ms":1764140460000,"assignee":"网格员"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ingest_on_the_backbone_reaches_walls_with_reasons_for_bad_lines() {
    let nats = LocalNats::start("ingest").expect("nats-server starts (scripts/test installs it)");
    let g = gateway(&nats.url(), false).await;
    let mut conn = FeedConnection::connect(&feed_url(&g), TOKEN, None)
        .await
        .unwrap();
    let mut mirror = Mirror::new(county());
    sync_to(&mut conn, &mut mirror, 0).await;
    let body = format!(
        "{OPENED}\nnot json\n{DISPATCH_UNKNOWN}\n{DISPATCH}\n{{\"type\":\"ticket.teleported.v9\"}}\n"
    );
    let (status, reply) = http(g.addr, post_events(PRODUCER, Some("batch-1"), &body)).await;
    assert_eq!(status, 200, "{reply}");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["accepted"], 2, "{reply}");
    let lines: Vec<u64> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 3, 5], "{reply}");
    assert!(
        v["rejected"][1]["reason"].as_str().unwrap().contains("42"),
        "{reply}"
    );
    assert!(
        v["rejected"][2]["reason"]
            .as_str()
            .unwrap()
            .contains("teleported"),
        "{reply}"
    );
    // The good lines reach the wall through the stream.
    let stored_at = v["stream_seq"].as_u64().unwrap();
    follows_to(&g, stored_at).await;
    sync_to(&mut conn, &mut mirror, g.hub.last_seq()).await;
    let t = mirror
        .state
        .as_ref()
        .unwrap()
        .tickets
        .get(&770_001)
        .cloned()
        .unwrap();
    assert_eq!(t.assignee.as_deref(), Some("网格员"));
    // The same batch retried is taken once.
    let (status, again) = http(g.addr, post_events(PRODUCER, Some("batch-1"), &body)).await;
    assert_eq!(status, 200);
    let v2: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(
        (v2["duplicate"].as_bool(), v2["accepted"].as_u64()),
        (Some(true), Some(2))
    );
    assert_eq!(
        stream_last_seq(&g.js, &g.names).await,
        stored_at,
        "stored once"
    );
    // Later batches are checked against what the gateway holds: the ticket exists now.
    let on_site = r#"{"type":"ticket.on_site.v1","ticket_id":770001,"at_ms":1764140520000}"#;
    let body = format!("{OPENED}\n{on_site}\n");
    let (_, reply) = http(g.addr, post_events(PRODUCER, None, &body)).await;
    let v3: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v3["accepted"], 1, "{reply}");
    assert_eq!(
        v3["rejected"][0]["line"], 1,
        "opening it again is refused: {reply}"
    );
    // A viewer may not publish.
    let (status, _) = http(g.addr, post_events(TOKEN, None, OPENED)).await;
    assert_eq!(status, 403);
    g.stop().await;
}

#[tokio::test]
async fn http_ingest_embedded_limits_and_roles() {
    let hub = Arc::new(Hub::new(county(), Default::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = GatewayConfig::new(TOKEN);
    cfg.producer_tokens = vec![PRODUCER.into()];
    cfg.max_ingest_bytes = 2_000;
    let (shutdown, rx) = Shutdown::new();
    let server = tokio::spawn(datawall::net::gateway::serve(
        listener,
        Arc::clone(&hub),
        cfg,
        rx,
    ));

    let body = format!("{OPENED}\n{DISPATCH_UNKNOWN}\n{DISPATCH}\n");
    let (status, reply) = http(addr, post_events(PRODUCER, Some("k1"), &body)).await;
    assert_eq!(status, 200, "{reply}");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["rejected"][0]["line"], 2);
    assert_eq!(hub.last_seq(), 2, "published to the hub");
    let (_, again) = http(addr, post_events(PRODUCER, Some("k1"), &body)).await;
    assert!(again.contains("\"duplicate\":true"), "{again}");
    assert_eq!(hub.last_seq(), 2, "a retried key counts once");
    // Without a key the model itself refuses the repeat, line by line.
    let (_, repeat) = http(addr, post_events(PRODUCER, None, OPENED)).await;
    let v: serde_json::Value = serde_json::from_str(&repeat).unwrap();
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"][0]["line"].as_u64()),
        (Some(0), Some(1))
    );

    // What a producer may not send: a forged acknowledgement, a clock years ahead.
    let forged = r#"{"type":"alert.acked.v1","alert_id":"sla-770001","at_ms":1764140500000,"trigger":1,"by":"someone"}"#;
    let ahead = OPENED
        .replace("770001", "770002")
        .replace("1764140400000", "4102444800000");
    let (status, reply) = http(
        addr,
        post_events(PRODUCER, None, &format!("{forged}\n{ahead}\n")),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["accepted"], 0, "{reply}");
    let reasons: Vec<&str> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("alert engine"), "{reasons:?}");
    assert!(
        reasons[1].contains("ahead of the gateway's clock"),
        "{reasons:?}"
    );
    assert_eq!(hub.last_seq(), 2);

    let (status, _) = http(addr, post_events(TOKEN, None, OPENED)).await;
    assert_eq!(status, 403, "a viewer token may not publish");
    let (status, _) = http(addr, post_events("wrong", None, OPENED)).await;
    assert_eq!(status, 401);
    let big = format!("{OPENED}\n").repeat(20);
    let (status, reply) = http(addr, post_events(PRODUCER, None, &big)).await;
    assert_eq!(status, 413, "{reply}");
    assert!(reply.contains("2000"), "{reply}");
    assert_eq!(hub.last_seq(), 2);
    shutdown.trigger();
    server.await.unwrap();
}

#[tokio::test]
async fn healthz_is_503_until_the_gateway_has_caught_up() {
    let hub = Arc::new(Hub::on_backbone(county(), Default::default(), 77, None));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, rx) = Shutdown::new();
    let server = tokio::spawn(datawall::net::gateway::serve(
        listener,
        Arc::clone(&hub),
        GatewayConfig::new(TOKEN),
        rx,
    ));
    let get = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_owned();
    let (status, body) = http(addr, get.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("catching_up"), "{body}");
    hub.set_caught_up();
    let (status, body) = http(addr, get).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"epoch\":77"), "{body}");
    shutdown.trigger();
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_producer_reaches_a_python_feed_client() {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    let nats = LocalNats::start("python").expect("nats-server starts (scripts/test installs it)");
    let g = gateway(&nats.url(), false).await;
    let root = env!("CARGO_MANIFEST_DIR");
    let mut client = Command::new("python3")
        .arg(format!("{root}/examples/python/feed_client.py"))
        .arg(feed_url(&g))
        .arg(TOKEN)
        .arg("770001")
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test installs websockets and nats-py)");
    let stdout = client.stdout.take().unwrap();
    // The client's lines, read on a blocking thread and awaited here.
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(1_024);
    std::thread::Builder::new()
        .name("python-client-out".into())
        .spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        })
        .unwrap();
    let first = tokio::time::timeout(PATIENCE, lines.recv()).await.unwrap();
    assert_eq!(
        first.as_deref(),
        Some("ready"),
        "the Python client loaded the snapshot"
    );

    let url = nats.url();
    let published = tokio::task::spawn_blocking(move || {
        let mut p = Command::new("python3")
            .arg(format!("{root}/examples/python/nats_publish.py"))
            .arg(url)
            .arg("640221")
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin
            .take()
            .unwrap()
            .write_all(format!("{OPENED}\n").as_bytes())
            .unwrap();
        p.wait_with_output().unwrap()
    });
    let published = tokio::time::timeout(PATIENCE, published)
        .await
        .unwrap()
        .unwrap();
    let said = String::from_utf8_lossy(&published.stdout);
    assert!(published.status.success(), "{said}");
    assert!(said.contains("stream message 1 of DW_640221"), "{said}");
    // The client prints the event and exits 0 when ticket 770001 arrives in a delta.
    let mut seen = Vec::new();
    while let Some(line) = tokio::time::timeout(PATIENCE, lines.recv()).await.unwrap() {
        seen.push(line);
    }
    let status = tokio::task::spawn_blocking(move || client.wait().unwrap())
        .await
        .unwrap();
    assert!(
        status.success(),
        "the Python client got ticket 770001: {seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.ends_with("ticket.opened.v1 770001")),
        "{seen:?}"
    );
    g.stop().await;
}

/// A viewer's resume message against a backbone gateway is answered like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_message_after_the_stream_moved_on_replays_from_the_ring() {
    let nats =
        LocalNats::start("resume-msg").expect("nats-server starts (scripts/test installs it)");
    let g = gateway(&nats.url(), false).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    js.publish(g.names.events(), format!("{OPENED}\n").into())
        .await
        .unwrap()
        .await
        .unwrap();
    follows_to(&g, 1).await;
    let mut conn = FeedConnection::connect(&feed_url(&g), TOKEN, None)
        .await
        .unwrap();
    let mut mirror = Mirror::new(county());
    sync_to(&mut conn, &mut mirror, g.hub.last_seq()).await;
    let at = mirror.last_seq;
    js.publish(g.names.events(), format!("{DISPATCH}\n").into())
        .await
        .unwrap()
        .await
        .unwrap();
    follows_to(&g, 2).await;
    // The client has message 2 too; then it asks to go back to `at`.
    sync_to(&mut conn, &mut mirror, g.hub.last_seq()).await;
    assert_eq!(mirror.last_seq, datawall::net::hub::feed_seq(2, 0));
    conn.send(&ClientMsg::Resume {
        epoch: g.hub.epoch,
        last_seq: at,
    })
    .await
    .unwrap();
    // Replayed from the ring at once: a delta following `at`, not a snapshot.
    let replay = async {
        loop {
            match next(&mut conn).await {
                ServerMsg::Delta(d) => return d,
                ServerMsg::Heartbeat(_) => {}
                m => panic!("a resume inside the ring is answered with a delta, got {m:?}"),
            }
        }
    };
    let d = tokio::time::timeout(PATIENCE, replay)
        .await
        .expect("the replay comes without waiting for another publish");
    assert_eq!(d.follows(), at);
    assert_eq!(d.events[0].0, datawall::net::hub::feed_seq(2, 0));
    assert!(matches!(d.events[0].1, Event::TicketDispatched(_)));
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateway_writes_checkpoints_and_another_takes_over_when_it_stops() {
    let nats = LocalNats::start("lease").expect("nats-server starts (scripts/test installs it)");
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let names = Names::new(640_221);
    let every = Duration::from_secs(1);
    // The buckets as the gateways make them, so the test watches them from the start.
    let lease = backbone::lease_bucket(&js, &names, every).await.unwrap();
    let store = backbone::checkpoint_store(&js, &names).await.unwrap();
    let mut holders = lease.watch(backbone::LEASE_KEY).await.unwrap();
    let mut written = store.watch().await.unwrap();
    let a = gateway_every(&nats.url(), Some(every)).await;
    let b = gateway_every(&nats.url(), Some(every)).await;
    js.publish(names.events(), format!("{OPENED}\n").into())
        .await
        .unwrap()
        .await
        .unwrap();

    async fn next_holder(w: &mut async_nats::jetstream::kv::Watch) -> String {
        loop {
            let e = tokio::time::timeout(PATIENCE, w.next())
                .await
                .expect("a lease change in time")
                .unwrap()
                .unwrap();
            if e.operation == async_nats::jetstream::kv::Operation::Put {
                return String::from_utf8(e.value.to_vec()).unwrap();
            }
        }
    }
    /// The next checkpoint's writer and stream position.
    async fn next_writer(w: &mut async_nats::jetstream::object_store::Watch) -> (String, String) {
        let info = tokio::time::timeout(PATIENCE, w.next())
            .await
            .expect("a checkpoint in time")
            .unwrap()
            .unwrap();
        let get = |k: &str| info.metadata.get(k).cloned().unwrap_or_default();
        (get("writer"), get("stream_seq"))
    }
    let first = next_holder(&mut holders).await;
    let (writer, other) = if first == a.writer_id {
        (a, b)
    } else {
        assert_eq!(first, b.writer_id, "a gateway holds the lease");
        (b, a)
    };
    assert_eq!(
        next_writer(&mut written).await,
        (writer.writer_id.clone(), "1".to_owned()),
        "the holder writes"
    );
    // The holder stops: when its lease expires the other takes it and writes.
    writer.stop().await;
    js.publish(names.events(), format!("{DISPATCH}\n").into())
        .await
        .unwrap()
        .await
        .unwrap();
    while next_holder(&mut holders).await != other.writer_id {}
    while next_writer(&mut written).await != (other.writer_id.clone(), "2".to_owned()) {}
    // And a gateway started now begins at the survivor's checkpoint.
    let c = gateway(&nats.url(), false).await;
    assert_eq!(c.hub.stream_seq(), 2, "started from the latest checkpoint");
    assert_eq!(events_in(&c), 0, "nothing replayed from the stream");
    other.stop().await;
    c.stop().await;
}

#[test]
fn client_lag_counts_events_not_sequence_numbers() {
    let hub = Hub::on_backbone(county(), Default::default(), 5, None);
    let opened = |id: u64| -> Event {
        serde_json::from_str(&OPENED.replace("770001", &id.to_string())).unwrap()
    };
    hub.publish_stream_message(1, vec![opened(1), opened(2), opened(3)]);
    let client = hub.metrics.register_client();
    client.cursor.store(
        datawall::net::hub::feed_seq(1, 0),
        std::sync::atomic::Ordering::Relaxed,
    );
    hub.publish_stream_message(2, vec![opened(4), opened(5)]);
    let metrics = hub.render_metrics();
    // Behind by two events of message 1 and two of message 2, whatever the numbers' holes.
    assert!(metrics.contains("datawall_client_lag_max 4\n"), "{metrics}");
    assert_eq!(hub.events_after(datawall::net::hub::feed_seq(1, 0)), 4);
    assert_eq!(hub.events_after(hub.last_seq()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_command_the_platform_and_acknowledge_alerts_through_the_backbone() {
    use datawall::protocol::command::{Command, CommandResult, CommandStatus, errors};
    const OPERATOR: &str = "operator-token-77e1";
    let nats = LocalNats::start("commands").expect("nats-server starts (scripts/test installs it)");
    // Two gateways with the alert engine: each raises every breach, JetStream keeps one.
    let start = |url: String| async move {
        gateway_with(&url, None, true, |cfg| {
            cfg.operator_tokens = vec![OPERATOR.into()]
        })
        .await
    };
    let g1 = start(nats.url()).await;
    let g2 = start(nats.url()).await;
    // Before a producer listens, a command cannot reach the platform: said at once.
    let mut conn = FeedConnection::connect(&feed_url(&g1), OPERATOR, None)
        .await
        .unwrap();
    let mut mirror = Mirror::new(county());
    let mut results: Vec<CommandResult> = Vec::new();
    // Read until `done` holds, keeping the mirror and the command results.
    macro_rules! until {
        ($done:expr) => {
            while !$done(&mirror, &results) {
                match next(&mut conn).await {
                    ServerMsg::CommandResult(r) => results.push(r),
                    m => {
                        mirror.handle(m).expect("the mirror follows");
                    }
                }
            }
        };
    }
    until!(|m: &Mirror, _: &Vec<CommandResult>| m.state.is_some());
    // The producer: an hour of history, then two live hours at 60×.
    let mut cfg = producer_config(&nats.url(), 60.0, 120);
    cfg.sim.warmup_hours = 3;
    let (stop, producer) = run_producer(cfg);
    // Live once it listens for commands; its events reach the wall meanwhile.
    let answer = |id: &str, rs: &Vec<CommandResult>, st: CommandStatus| {
        rs.iter().find(|r| r.id == id && r.status == st).cloned()
    };
    let mut n = 0;
    let ticket = loop {
        until!(|m: &Mirror, _: &Vec<CommandResult>| m
            .state
            .as_ref()
            .is_some_and(|s| s.latest_event_ms >= START_MS));
        let s = mirror.state.as_ref().unwrap();
        let ticket = s
            .open_tickets()
            .filter(|t| t.opened_at_ms >= START_MS - 3_600_000)
            .filter(|t| t.status != datawall::model::TicketStatus::OnSite)
            .map(|t| t.id)
            .max()
            .expect("an open ticket");
        n += 1;
        let id = format!("s{n}");
        conn.send(&ClientMsg::Command {
            id: id.clone(),
            command: Command::TicketSupervise {
                ticket_id: ticket,
                note: "督办".into(),
            },
        })
        .await
        .unwrap();
        until!(|_: &Mirror, rs: &Vec<CommandResult>| rs.iter().any(|r| r.id == id));
        let r = results.iter().find(|r| r.id == id).unwrap().clone();
        if r.status == CommandStatus::Accepted {
            break (ticket, id);
        }
        // Acceptable: nobody listens yet (before the producer is live), or the ticket moved
        // on meanwhile — resolved at the gateway (this wall's copy lags it on a loaded
        // machine) or at the platform (ahead of the stream): try the newest ticket again.
        assert!(
            [
                Some(errors::NO_PLATFORM),
                Some(errors::TICKET_CLOSED),
                Some(errors::PLATFORM_ERROR)
            ]
            .contains(&r.error.as_deref()),
            "{r:?}"
        );
        // The next try waits for the feed to move on (and stays under the command rate).
        let seen = mirror.last_seq;
        until!(|m: &Mirror, _: &Vec<CommandResult>| m.last_seq > seen);
    };
    let (ticket, id) = ticket;
    until!(
        |_: &Mirror, rs: &Vec<CommandResult>| answer(&id, rs, CommandStatus::Confirmed).is_some()
    );
    let seq = answer(&id, &results, CommandStatus::Confirmed)
        .unwrap()
        .seq
        .unwrap();
    until!(|m: &Mirror, _: &Vec<CommandResult>| m.last_seq >= seq);
    assert!(
        mirror.state.as_ref().unwrap().tickets[&ticket]
            .supervised_at_ms
            .is_some()
    );

    // A breach is raised (once, though two engines raise it) and acknowledged through the
    // stream.
    until!(|m: &Mirror, _: &Vec<CommandResult>| m
        .state
        .as_ref()
        .is_some_and(|s| s.alerts.values().any(|a| a.acked.is_none())));
    let alert = mirror
        .state
        .as_ref()
        .unwrap()
        .alerts
        .values()
        .find(|a| a.acked.is_none())
        .unwrap()
        .id
        .clone();
    conn.send(&ClientMsg::Command {
        id: "ack".into(),
        command: Command::AlertAck {
            alert_id: alert.clone(),
            note: "收到".into(),
        },
    })
    .await
    .unwrap();
    until!(
        |_: &Mirror, rs: &Vec<CommandResult>| answer("ack", rs, CommandStatus::Confirmed).is_some()
            || answer("ack", rs, CommandStatus::Rejected).is_some()
    );
    let r = answer("ack", &results, CommandStatus::Confirmed).expect("confirmed");
    until!(|m: &Mirror, _: &Vec<CommandResult>| m.last_seq >= r.seq.unwrap());
    let ticket_of_alert = datawall::model::state::breach_alert_ticket(&alert).unwrap();
    assert_eq!(
        mirror.state.as_ref().unwrap().alerts[&ticket_of_alert]
            .acked
            .as_ref()
            .map(|a| a.by.as_str()),
        Some("--operator-token #1")
    );
    // A note pinned through one gateway goes through the stream to every gateway.
    let grid = county().pack.grids[0].id;
    conn.send(&ClientMsg::Command {
        id: "note".into(),
        command: Command::AnnotationAdd {
            place: datawall::protocol::entities::Place::Grid { grid_id: grid },
            moment_ms: None,
            text: "抢修中".into(),
        },
    })
    .await
    .unwrap();
    until!(
        |_: &Mirror, rs: &Vec<CommandResult>| answer("note", rs, CommandStatus::Confirmed)
            .is_some()
            || answer("note", rs, CommandStatus::Rejected).is_some()
    );
    let r = answer("note", &results, CommandStatus::Confirmed).expect("confirmed");
    until!(|m: &Mirror, _: &Vec<CommandResult>| m.last_seq >= r.seq.unwrap());
    let note_id = r.command_id.clone().unwrap();
    assert_eq!(
        mirror.state.as_ref().unwrap().annotations[&note_id].grid_id,
        Some(grid)
    );
    stop.trigger();
    producer.await.unwrap().unwrap();
    // The other gateway holds the same alerts and notes: one raise per breach reached both.
    let target = g1.hub.stream_seq();
    follows_to(&g2, target).await;
    assert_eq!(g1.hub.state().alerts, g2.hub.state().alerts);
    assert_eq!(g1.hub.state().annotations, g2.hub.state().annotations);
    assert!(g2.hub.state().annotations.contains_key(&note_id));
    g1.stop().await;
    g2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_future_stamps_on_the_stream_are_refused_by_every_gateway_alike() {
    let nats = LocalNats::start("future").expect("nats-server starts (scripts/test installs it)");
    let a = gateway(&nats.url(), false).await;
    let b = gateway(&nats.url(), false).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let now = datawall::net::hub::system_now_ms();
    let ticket = |id: u64, at: i64| {
        format!(
            r#"{{"type":"ticket.opened.v1","ticket_id":{id},"at_ms":{at},"category":"repair","source":"hotline","priority":"high","pos":[106.545,38.906],"sla_deadline_ms":{}}}"#,
            at + 3_600_000
        )
    };
    let two_days = 2 * 86_400_000;
    // A producer with a wrong clock, straight to NATS: two days ahead of when the stream
    // stored it. Refused by both gateways (it would lock the ticket for two days).
    js.publish(
        a.names.events(),
        format!("{}\n", ticket(7001, now + two_days)).into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    // A producer whose feed clock runs ahead (an accelerated simulation) says so in the
    // message's clock header: judged against that clock, the same stamp is fine.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        backbone::CLOCK_HEADER,
        (now + two_days).to_string().as_str(),
    );
    js.publish_with_headers(
        a.names.events(),
        headers,
        format!("{}\n", ticket(7002, now + two_days)).into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let last = stream_last_seq(&a.js, &a.names).await;
    for g in [&a, &b] {
        follows_to(g, last).await;
        let state = g.hub.state();
        assert!(
            !state.tickets.contains_key(&7001),
            "the far-future stamp is refused"
        );
        assert!(
            state.tickets.contains_key(&7002),
            "within its message's clock"
        );
        assert_eq!(
            g.hub
                .metrics
                .events_rejected
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
    assert!(a.hub.state().same_entities(&b.hub.state()));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_keeps_the_streams_history_and_continues_it_after_a_restart_or_a_torn_write() {
    use datawall::net::history::{At, History};
    use datawall::net::hub::feed_seq;
    let nats = LocalNats::start("history").expect("nats-server starts (scripts/test installs it)");
    let dir = crate::common::scratch_dir("backbone-history");
    let kept = |url: String, dir: std::path::PathBuf| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        BackboneGateway::start(
            county(),
            &url,
            listener,
            GatewayConfig::new(TOKEN),
            BackboneOptions {
                history: Some((dir, 7)),
                ring: 1_000_000,
                ring_max_bytes: usize::MAX,
                checkpoint_every: None,
                audit_log: None,
                alerts: false,
            },
        )
        .await
        .expect("the gateway opens the stream and its history")
    };
    // The history holds the state after every stream message: checked against the stream
    // itself, applied message by message offline.
    let check = |dir: &std::path::Path, stream: &[(u64, String, Vec<Event>)]| {
        let h = History::open(dir).unwrap().expect("a history");
        let mut state = LiveState::new(county());
        let picks = [stream.len() / 3, stream.len() * 2 / 3, stream.len() - 1];
        for (k, (s, _, events)) in stream.iter().enumerate() {
            for e in events {
                state.apply(e).unwrap();
            }
            if picks.contains(&k) {
                let at = feed_seq(*s, events.len() - 1);
                let rebuilt = h.state_at(&county(), At::Seq(at)).unwrap();
                assert_eq!(rebuilt.seq, at);
                assert!(
                    rebuilt.state.same_entities(&state),
                    "the history's state after stream message {s}"
                );
            }
        }
    };

    // A first stretch of the run, followed by a gateway that keeps a history.
    let mut first = producer_config(&nats.url(), 2_000.0, 8);
    first.until_ms = Some(START_MS + 3 * 60_000);
    let g = kept(nats.url(), dir.clone()).await;
    let (_s, p) = run_producer(first);
    p.await.unwrap().unwrap();
    let last = stream_last_seq(&g.js, &g.names).await;
    follows_to(&g, last).await;
    let stopped_at = g.hub.stream_seq();
    // A second gateway may not write the same history.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = BackboneGateway::start(
        county(),
        &nats.url(),
        listener,
        GatewayConfig::new(TOKEN),
        BackboneOptions {
            history: Some((dir.clone(), 7)),
            ring: 1_000,
            ring_max_bytes: usize::MAX,
            checkpoint_every: None,
            audit_log: None,
            alerts: false,
        },
    )
    .await;
    let why = refused.err().expect("refused").to_string();
    assert!(why.contains("another gateway"), "{why}");
    g.stop().await;

    // The run goes on while the gateway is down; restarted on its history, it continues
    // from where it stopped (not from the start, not from a backbone checkpoint: there is
    // none) and the history holds the whole stream.
    let mut second = producer_config(&nats.url(), 2_000.0, 8);
    second.explicit_start = false;
    let (_s, p) = run_producer(second);
    p.await.unwrap().unwrap();
    let g = kept(nats.url(), dir.clone()).await;
    let last = stream_last_seq(&g.js, &g.names).await;
    assert!(last > stopped_at + 1);
    follows_to(&g, last).await;
    let (_, truth_state) = truth(8);
    assert!(g.hub.state().same_entities(&truth_state));
    let stream = read_stream(&g.js, &g.names).await;
    let events_after = |from: u64| -> u64 {
        stream
            .iter()
            .filter(|(s, _, _)| *s > from)
            .map(|(_, _, e)| e.len() as u64)
            .sum()
    };
    assert_eq!(
        events_in(&g),
        events_after(stopped_at),
        "continued from its own history: only what followed was read from the stream"
    );
    check(&dir, &stream);
    // Its walls can ask it for any moment.
    let (status, body) = http(
        g.addr,
        format!(
            "GET /v1/history?seq={} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n",
            feed_seq(stopped_at, 0)
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    g.stop().await;

    // A clean stop wrote a checkpoint at the end: the gateway continued where it stopped.
    // A crash mid-write tears the last stream message and leaves no such checkpoint: the
    // message is dropped and read again.
    let h = History::open(&dir).unwrap().unwrap();
    let end = h.checkpoints.last().unwrap();
    assert_eq!(end.seq >> 12, last, "the clean stop's checkpoint");
    std::fs::remove_file(&end.path).unwrap();
    let seg = &h.segments.last().unwrap().path;
    let text = std::fs::read_to_string(seg).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let torn = format!(
        "{}\n{}",
        lines[..lines.len() - 1].join("\n"),
        &lines[lines.len() - 1][..10]
    );
    std::fs::write(seg, torn).unwrap();
    let g = kept(nats.url(), dir.clone()).await;
    follows_to(&g, last).await;
    // Restored, the hub may already stand at the torn message's number: wait for its events
    // to come in (woken by every stream message the hub takes), then compare.
    let mut latest = g.hub.subscribe();
    let torn_events = events_after(last - 1);
    tokio::time::timeout(PATIENCE, async {
        while events_in(&g) < torn_events {
            latest.changed().await.expect("the hub is alive");
        }
    })
    .await
    .expect("the torn message is read again from the stream");
    assert_eq!(
        events_in(&g),
        torn_events,
        "the torn message was read again, once"
    );
    assert!(g.hub.state().same_entities(&truth_state));
    g.stop().await;
    check(&dir, &stream);
    let _ = std::fs::remove_dir_all(dir);
}
