//! The gateway over a real loopback websocket: session flow, state equality, resume,
//! limits, slow consumers, fan-out, heartbeats, health and metrics.

use std::sync::Arc;
use std::time::Duration;

use datawall::net::client::{ClientError, FeedConnection, Mirror, decode_message};
use datawall::net::gateway::handler::delta_message;
use datawall::net::gateway::{GatewayConfig, Shutdown};
use datawall::net::hub::{Entry, Hub, HubConfig, Read};
use datawall::protocol::Event;
use datawall::protocol::entities::TicketStatus;
use datawall::protocol::session::{ClientMsg, FEED_PATH, Hello, ServerMsg, SnapshotFormat};
use datawall::sim::{SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::{county, fixes};

const TOKEN: &str = "test-token-7f3a";
const START_MS: i64 = 1_764_140_400_000;

struct Server {
    addr: std::net::SocketAddr,
    hub: Arc<Hub>,
    shutdown: Shutdown,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(ring: usize, tweak: impl FnOnce(&mut GatewayConfig)) -> Self {
        Self::start_with(county(), ring, tweak).await
    }

    async fn start_with(
        county: Arc<datawall::model::County>,
        ring: usize,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> Self {
        let hub = Arc::new(Hub::new(
            county,
            HubConfig {
                ring_capacity: ring,
                snapshot_chunk: 200,
                ..Default::default()
            },
        ));
        let (addr, shutdown, task) = crate::common::serve_hub(&hub, TOKEN, tweak).await;
        Self {
            addr,
            hub,
            shutdown,
            task,
        }
    }

    /// A gateway counter's value.
    fn count(
        &self,
        counter: impl Fn(&datawall::net::metrics::Metrics) -> &std::sync::atomic::AtomicU64,
    ) -> u64 {
        counter(&self.hub.metrics).load(std::sync::atomic::Ordering::Relaxed)
    }

    fn url(&self) -> String {
        format!("ws://{}{FEED_PATH}", self.addr)
    }

    async fn connect(&self) -> FeedConnection {
        FeedConnection::connect(&self.url(), TOKEN, None)
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.drained().await;
    }

    /// Wait until the gateway has finished (after a shutdown was triggered).
    async fn drained(self) {
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("gateway drains")
            .unwrap();
    }
}

/// A simulator whose events the tests publish by hand.
fn simulator() -> Simulator {
    crate::common::simulator(county(), 3, START_MS, 3)
}

/// Read messages into the mirror until it has applied `seq`; returns every message seen.
async fn sync_to(conn: &mut FeedConnection, mirror: &mut Mirror, seq: u64) -> Vec<ServerMsg> {
    let mut seen = Vec::new();
    while mirror.state.is_none() || mirror.last_seq < seq {
        let msg = tokio::time::timeout(Duration::from_secs(20), conn.next_msg())
            .await
            .expect("message in time")
            .unwrap();
        seen.push(msg.clone());
        mirror.handle(msg).unwrap();
    }
    seen
}

/// The client's mirror holds exactly the server's model.
fn assert_in_step(mirror: &Mirror, server: &Server) {
    let state = mirror.state.as_ref().expect("the mirror is synced");
    assert!(
        state.same_entities(&server.hub.state()),
        "the client's state differs from the server's"
    );
}

fn deltas(msgs: &[ServerMsg]) -> Vec<(u64, Event)> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMsg::Delta(d) => Some(d.events.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test]
async fn hello_snapshot_then_gap_free_deltas_rebuild_the_server_state() {
    // No conflation here: every event must arrive (conflation has its own test).
    let server = Server::start(100_000, |c| c.conflate_after_events = u64::MAX).await;
    let mut sim = simulator();
    server.hub.publish(sim.advance_to(START_MS));
    let before = server.hub.last_seq();
    assert!(before > 100, "warm-up produced {before} events");

    let mut conn = server.connect().await;
    let mut mirror = Mirror::new(county());
    let first = conn.next_msg().await.unwrap();
    let ServerMsg::Hello(hello) = &first else {
        panic!("first message is {first:?}")
    };
    assert_eq!(
        (
            hello.protocol,
            hello.county_code,
            hello.last_seq,
            hello.resumed
        ),
        (1, 640_221, before, false)
    );
    mirror.handle(first).unwrap();
    let msgs = sync_to(&mut conn, &mut mirror, before).await;
    assert!(
        matches!(msgs[0], ServerMsg::SnapshotBegin(ref b) if b.seq == before && b.chunks >= 2),
        "{:?}",
        msgs[0]
    );
    assert!(matches!(msgs.last(), Some(ServerMsg::SnapshotEnd(_))));

    // Live: two minutes of the county, volunteers moving.
    for k in 1..=12 {
        server.hub.publish(sim.advance_to(START_MS + k * 10_000));
    }
    let last = server.hub.last_seq();
    assert!(
        last > before + 1_000,
        "live part produced {} events",
        last - before
    );
    let msgs = sync_to(&mut conn, &mut mirror, last).await;
    let mut expect = before + 1;
    for m in &msgs {
        if let ServerMsg::Delta(d) = m {
            assert_eq!(d.first_seq, expect, "batches are contiguous");
            assert_eq!(d.conflated, 0);
            for (i, (seq, _)) in d.events.iter().enumerate() {
                assert_eq!(
                    *seq,
                    d.first_seq + i as u64,
                    "events carry consecutive seqs"
                );
            }
            expect = d.last_seq + 1;
        }
    }
    assert_eq!(expect, last + 1);
    assert_eq!(mirror.rejected, 0, "{:?}", mirror.last_rejection);
    assert!(
        mirror
            .state
            .as_ref()
            .unwrap()
            .same_entities(&server.hub.state()),
        "mirror differs from the server's model"
    );
    conn.close().await;
    server.stop().await;
}

#[tokio::test]
async fn resume_gets_exactly_the_missed_events_and_a_snapshot_when_they_are_gone() {
    let server = Server::start(3_000, |_| {}).await;
    let mut sim = simulator();
    server.hub.publish(sim.advance_to(START_MS));
    let mut conn = server.connect().await;
    let mut mirror = Mirror::new(county());
    sync_to(&mut conn, &mut mirror, server.hub.last_seq()).await;
    conn.close().await;

    // Missed while away: fewer than the ring holds.
    let seen_up_to = mirror.last_seq;
    server.hub.publish(sim.advance_to(START_MS + 2_000));
    let last = server.hub.last_seq();
    assert!(last - seen_up_to > 100 && last - seen_up_to < 3_000);
    let mut conn = FeedConnection::connect(&server.url(), TOKEN, mirror.resume_point())
        .await
        .unwrap();
    let msgs = sync_to(&mut conn, &mut mirror, last).await;
    let ServerMsg::Hello(h) = &msgs[0] else {
        panic!()
    };
    assert!(h.resumed);
    assert!(
        !msgs
            .iter()
            .any(|m| matches!(m, ServerMsg::SnapshotBegin(_))),
        "no snapshot on resume"
    );
    let seqs: Vec<u64> = deltas(&msgs).iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (seen_up_to + 1..=last).collect::<Vec<_>>(),
        "exactly the missed events, once each"
    );
    assert_in_step(&mirror, &server);
    conn.close().await;

    // Missed more than the ring holds: a fresh snapshot instead.
    let seen_up_to = mirror.last_seq;
    server.hub.publish(sim.advance_to(START_MS + 60_000));
    let last = server.hub.last_seq();
    assert!(last - seen_up_to > 3_000);
    let mut conn = FeedConnection::connect(&server.url(), TOKEN, mirror.resume_point())
        .await
        .unwrap();
    let msgs = sync_to(&mut conn, &mut mirror, last).await;
    let ServerMsg::Hello(h) = &msgs[0] else {
        panic!()
    };
    assert!(!h.resumed);
    assert!(matches!(msgs[1], ServerMsg::SnapshotBegin(ref b) if b.seq == last));
    assert_in_step(&mirror, &server);

    // A resume message on an open connection, for an unknown epoch: snapshot too.
    conn.send(&ClientMsg::Resume {
        epoch: 12345,
        last_seq: 1,
    })
    .await
    .unwrap();
    let next = conn.next_msg().await.unwrap();
    assert!(matches!(next, ServerMsg::SnapshotBegin(_)), "{next:?}");
    assert_eq!(server.count(|m| &m.resumes_replayed), 1);
    conn.close().await;
    server.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_token_is_refused_with_401() {
    let server = Server::start(1_000, |_| {}).await;
    for token in ["", "wrong", "test-token-7f3b", "test-token-7f3a-longer"] {
        match FeedConnection::connect(&server.url(), token, None).await {
            Err(ClientError::Refused { status, body }) => {
                assert_eq!(status, 401);
                assert!(body.contains("token"), "{body}");
            }
            Err(e) => panic!("expected 401, got {e}"),
            Ok(_) => panic!("token {token:?} was accepted"),
        }
    }
    // The token may also come in the query string.
    let mut conn = FeedConnection::connect(&format!("{}?token={TOKEN}", server.url()), "", None)
        .await
        .unwrap();
    assert!(matches!(
        conn.next_msg().await.unwrap(),
        ServerMsg::Hello(_)
    ));
    assert_eq!(server.count(|m| &m.auth_failures), 4);
    conn.close().await;
    server.stop().await;
}

#[tokio::test]
async fn oversized_client_message_closes_with_a_reason() {
    let server = Server::start(1_000, |c| c.max_client_message_bytes = 4_096).await;
    let mut conn = server.connect().await;
    let mut mirror = Mirror::new(county());
    sync_to(&mut conn, &mut mirror, 0).await;
    conn.send_text(format!(
        "{{\"type\":\"heartbeat\",\"pad\":\"{}\"}}",
        "x".repeat(10_000)
    ))
    .await
    .unwrap();
    let end = loop {
        match conn.next_msg().await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    match end {
        ClientError::Closed(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Size);
            assert!(frame.reason.contains("4096"), "{}", frame.reason);
        }
        other => panic!("expected a close frame, got {other}"),
    }
    assert_eq!(server.count(|m| &m.oversized_messages), 1);
    server.stop().await;
}

#[tokio::test]
async fn bad_client_messages_are_counted_and_answered_not_fatal() {
    let server = Server::start(1_000, |_| {}).await;
    let mut conn = server.connect().await;
    let mut mirror = Mirror::new(county());
    sync_to(&mut conn, &mut mirror, 0).await;
    conn.send_text("{\"type\":\"launch_missiles\"}".into())
        .await
        .unwrap();
    let msg = conn.next_msg().await.unwrap();
    assert!(
        matches!(msg, ServerMsg::Notice(ref n) if n.code == "bad_message"),
        "{msg:?}"
    );
    conn.send(&ClientMsg::Heartbeat { client_time_ms: 1 })
        .await
        .unwrap();
    server
        .hub
        .publish(simulator().advance_to(START_MS - 3_600_000));
    let msgs = sync_to(&mut conn, &mut mirror, server.hub.last_seq()).await;
    assert!(!msgs.is_empty());
    conn.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_resynced_not_buffered() {
    let server = Server::start(5_000, |_| {}).await;
    let mut conn = server.connect().await;
    let mut mirror = Mirror::new(county());
    sync_to(&mut conn, &mut mirror, 0).await;
    // The client reads nothing while 300k fixes (tens of MB) go out.
    for k in 0..60 {
        server.hub.publish(fixes(START_MS + k * 5_000, 5_000));
        tokio::task::yield_now().await;
        assert!(
            server.hub.ring_len() <= 5_000,
            "the shared ring is the only buffer"
        );
    }
    // The handler blocks on the full socket: its cursor stays behind the ring.
    crate::common::eventually("the client falls more than the ring behind", || {
        server.hub.metrics.client_lags(server.hub.last_seq())[0] > 5_000
    })
    .await;
    let lag = server.hub.metrics.client_lags(server.hub.last_seq());
    assert_eq!(lag.len(), 1);
    assert!(
        lag[0] > 5_000,
        "the client is behind by {} events, more than the ring",
        lag[0]
    );
    // Reading again, it is told to resync, gets a snapshot and ends equal to the server.
    let last = server.hub.last_seq();
    let msgs = sync_to(&mut conn, &mut mirror, last).await;
    assert!(
        msgs.iter()
            .any(|m| matches!(m, ServerMsg::Notice(n) if n.code == "resync")),
        "no resync notice"
    );
    assert!(server.count(|m| &m.resyncs) >= 1);
    assert_in_step(&mirror, &server);
    conn.close().await;
    server.stop().await;
}

#[tokio::test]
async fn lagging_clients_get_superseded_fixes_conflated() {
    let server = Server::start(100_000, |c| {
        c.conflate_after_events = 100;
        c.max_batch_events = 5_000;
    })
    .await;
    let mut conn = server.connect().await;
    let mut mirror = Mirror::new(county());
    sync_to(&mut conn, &mut mirror, 0).await;
    // 20 fixes per volunteer published at once: the client is far behind at the first batch.
    server.hub.publish(fixes(START_MS, 1_160 * 20));
    let msgs = sync_to(&mut conn, &mut mirror, server.hub.last_seq()).await;
    let conflated: u32 = msgs
        .iter()
        .map(|m| {
            if let ServerMsg::Delta(d) = m {
                d.conflated
            } else {
                0
            }
        })
        .sum();
    assert!(conflated > 10_000, "only {conflated} fixes conflated");
    let (ours, theirs) = (mirror.state.as_ref().unwrap(), server.hub.state());
    for (a, b) in ours.volunteers.iter().zip(&theirs.volunteers) {
        assert_eq!(a, b, "conflation lost a final position");
    }
    assert!(ours.same_entities(&theirs));
    conn.close().await;
    server.stop().await;
}

#[tokio::test]
async fn two_clients_see_identical_streams() {
    let server = Server::start(100_000, |c| c.conflate_after_events = u64::MAX).await;
    let mut sim = simulator();
    server.hub.publish(sim.advance_to(START_MS));
    let (mut a, mut b) = (server.connect().await, server.connect().await);
    let (mut ma, mut mb) = (Mirror::new(county()), Mirror::new(county()));
    let start = server.hub.last_seq();
    sync_to(&mut a, &mut ma, start).await;
    sync_to(&mut b, &mut mb, start).await;
    for k in 1..=6 {
        server.hub.publish(sim.advance_to(START_MS + k * 5_000));
    }
    let last = server.hub.last_seq();
    let da = deltas(&sync_to(&mut a, &mut ma, last).await);
    let db = deltas(&sync_to(&mut b, &mut mb, last).await);
    assert_eq!(da.len() as u64, last - start);
    assert_eq!(da, db);
    a.close().await;
    b.close().await;
    server.stop().await;
}

#[tokio::test]
async fn silent_clients_are_dropped_and_reading_clients_kept() {
    let server = Server::start(1_000, |c| {
        c.heartbeat = Duration::from_millis(250);
        c.client_silence = Duration::from_millis(750);
    })
    .await;
    // This one reads all along (its websocket library answers pings).
    let mut alive = server.connect().await;
    let (six_beats, mut six_beats_rx) = tokio::sync::mpsc::channel(1);
    let reader = tokio::spawn(async move {
        let mut beats = 0;
        loop {
            match alive.next_msg().await {
                Ok(ServerMsg::Heartbeat(_)) => {
                    beats += 1;
                    if beats == 6 {
                        let _ = six_beats.send(()).await;
                    }
                }
                Ok(_) => {}
                Err(e) => return (beats, e),
            }
        }
    });
    // This one is a bare socket that never answers: the server drops it with a close frame
    // whose reason names the heartbeat.
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let handshake = format!(
        "GET {FEED_PATH} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    silent.write_all(handshake.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut received))
        .await
        .expect("dropped in time")
        .unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(
        text.contains("heartbeat timeout"),
        "no close reason in what the server sent"
    );
    assert_eq!(server.count(|m| &m.heartbeat_timeouts), 1);
    // The reader is still served after twice the timeout; shutting down ends it.
    tokio::time::timeout(Duration::from_secs(10), six_beats_rx.recv())
        .await
        .expect("six heartbeats");
    server.shutdown.trigger();
    let (beats, end) = reader.await.unwrap();
    assert!(beats >= 6, "{beats} heartbeats");
    assert!(
        matches!(end, ClientError::Closed(Some(ref f)) if f.code == CloseCode::Away),
        "{end}"
    );
    server.drained().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn health_metrics_limits_and_shutdown() {
    let server = Server::start(1_000, |c| c.max_clients = 2).await;
    server
        .hub
        .publish(simulator().advance_to(START_MS - 3_600_000));
    let health = http_get(server.addr, "/healthz").await;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.contains("\"status\":\"ok\""),
        "{health}"
    );
    let mut a = server.connect().await;
    assert!(matches!(a.next_msg().await.unwrap(), ServerMsg::Hello(_)));
    let mut b = server.connect().await;
    assert!(matches!(b.next_msg().await.unwrap(), ServerMsg::Hello(_)));
    // Both permits are taken: a third connection is refused with 503.
    match FeedConnection::connect(&server.url(), TOKEN, None).await {
        Err(ClientError::Refused { status, .. }) => assert_eq!(status, 503),
        other => panic!("expected 503, got {:?}", other.err()),
    }
    // Both receive their snapshot (encoded off the async workers) before `a` leaves.
    for conn in [&mut a, &mut b] {
        while !matches!(conn.next_msg().await.unwrap(), ServerMsg::SnapshotEnd(_)) {}
    }
    a.close().await;
    // The handler of `a` notices the close and gives its place back.
    crate::common::eventually("one client left", || {
        server.hub.metrics.client_cursors().len() == 1
    })
    .await;
    let metrics = http_get(server.addr, "/metrics").await;
    for line in [
        "datawall_connections_total 2",
        "datawall_connections_rejected_limit_total 1",
        "datawall_clients 1",
        "datawall_snapshots_sent_total 2",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    assert!(
        http_get(server.addr, "/nope")
            .await
            .starts_with("HTTP/1.1 404")
    );
    // Shutdown tells the remaining client why.
    server.shutdown.trigger();
    let mut saw_notice = false;
    let end = loop {
        match b.next_msg().await {
            Ok(ServerMsg::Notice(n)) if n.code == "shutdown" => saw_notice = true,
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(saw_notice);
    assert!(
        matches!(end, ClientError::Closed(Some(ref f)) if f.code == CloseCode::Away),
        "{end}"
    );
    server.drained().await;
}

#[tokio::test]
async fn browsers_from_other_origins_are_refused() {
    let server = Server::start(1_000, |c| {
        c.allowed_origins = vec!["https://wall.example".into()]
    })
    .await;
    let upgrade = |origin: &str| {
        format!(
            "GET {FEED_PATH}?token={TOKEN} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
        )
    };
    for (origin, status) in [
        ("https://evil.example", "403"),
        ("https://wall.example", "101"),
    ] {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(upgrade(origin).as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&buf),
            format!("HTTP/1.1 {status}"),
            "{origin}"
        );
    }
    // Clients without an Origin header (not browsers) are not affected.
    let mut conn = server.connect().await;
    assert!(matches!(
        conn.next_msg().await.unwrap(),
        ServerMsg::Hello(_)
    ));
    assert_eq!(server.count(|m| &m.origin_rejections), 1);
    conn.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_scaled_county_is_announced_in_hello_and_rebuilt_by_clients() {
    use datawall::model::scale::scaled_county;
    let pack = county().pack.clone();
    let scaled = Arc::new(scaled_county(pack.clone(), 2, 3));
    assert_eq!(scaled.pack.grids.len(), pack.grids.len() * 3);
    let server = Server::start_with(Arc::clone(&scaled), 100_000, |_| {}).await;
    let mut sim = Simulator::new(
        Arc::clone(&scaled),
        SimConfig {
            seed: 8,
            start_ms: START_MS,
            warmup_hours: 2,
            scale: 2.0,
            ..Default::default()
        },
    );
    server.hub.publish(sim.advance_to(START_MS + 30_000));
    assert!(server.hub.last_seq() > 1_000);
    let hello = FeedConnection::probe_hello(&server.url(), TOKEN, None)
        .await
        .unwrap();
    assert_eq!((hello.roster_scale, hello.grid_split), (2, 3));
    // A client that builds the county from the hello's factors takes every event.
    let rebuilt = Arc::new(scaled_county(pack, hello.roster_scale, hello.grid_split));
    let mut mirror = Mirror::new(rebuilt);
    let mut conn = server.connect().await;
    sync_to(&mut conn, &mut mirror, server.hub.last_seq()).await;
    assert_eq!(mirror.rejected, 0, "{:?}", mirror.last_rejection);
    assert_in_step(&mirror, &server);
    let tickets_in_split_grids = mirror
        .state
        .as_ref()
        .unwrap()
        .tickets
        .values()
        .filter(|t| {
            t.grid_id
                .is_some_and(|g| g > datawall::model::scale::GRID_ID_STRIDE)
        })
        .count();
    assert!(
        tickets_in_split_grids > 0,
        "tickets land in the split grids"
    );
    conn.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_joining_while_the_feed_publishes_get_snapshots_consistent_with_their_seq() {
    // A small ring makes every join encode a fresh snapshot (the cache lasts half a ring),
    // and the encode runs outside the hub lock while a publisher keeps going.
    let server = Server::start(2_000, |c| c.conflate_after_events = u64::MAX).await;
    let mut sim = simulator();
    server.hub.publish(sim.advance_to(START_MS));
    let hub = Arc::clone(&server.hub);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    // Publishes until every client has joined: the joins happen while it runs.
    let publisher = tokio::task::spawn_blocking(move || {
        let (mut published, mut k) = (0, 0);
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            k += 1;
            published += hub.publish(sim.advance_to(START_MS + k * 500)).accepted;
            std::thread::sleep(Duration::from_millis(1));
        }
        published
    });
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut conn = server.connect().await;
        let mut mirror = Mirror::new(county());
        let at = server.hub.last_seq();
        sync_to(&mut conn, &mut mirror, at).await;
        clients.push((conn, mirror));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let published = publisher.await.unwrap();
    assert!(published > 0, "the publisher ran");
    let last = server.hub.last_seq();
    let snapshots = server.count(|m| &m.snapshots_sent);
    assert!(
        snapshots >= 4,
        "every client started from a snapshot ({snapshots})"
    );
    for (mut conn, mut mirror) in clients {
        sync_to(&mut conn, &mut mirror, last).await;
        assert_eq!(mirror.rejected, 0, "{:?}", mirror.last_rejection);
        assert_in_step(&mirror, &server);
        conn.close().await;
    }
    server.stop().await;
}

/// A client's mirror synced from a fresh connection to `url`, and the hello it got.
async fn synced_mirror(url: &str, seq: u64) -> (FeedConnection, Mirror, Hello) {
    let mut conn = FeedConnection::connect(url, TOKEN, None).await.unwrap();
    let mut mirror = Mirror::new(county());
    let first = conn.next_msg().await.unwrap();
    let ServerMsg::Hello(hello) = first.clone() else {
        panic!("first message is {first:?}")
    };
    mirror.handle(first).unwrap();
    sync_to(&mut conn, &mut mirror, seq).await;
    (conn, mirror, hello)
}

#[tokio::test]
async fn binary_and_json_snapshots_decode_to_the_same_state() {
    let server = Server::start(100_000, |c| c.conflate_after_events = u64::MAX).await;
    let mut sim = simulator();
    server.hub.publish(sim.advance_to(START_MS));
    // A minute live (volunteers on duty and moving).
    server.hub.publish(sim.advance_to(START_MS + 60_000));
    // What the simulator leaves out: a supervised ticket and an operator's note.
    let state = server.hub.state();
    let open = state
        .tickets_sorted()
        .into_iter()
        .find(|t| t.status.is_open() && t.last_at_ms() <= START_MS)
        .map(|t| (t.id, t.pos, t.grid_id))
        .unwrap();
    let waiting = state
        .tickets_sorted()
        .into_iter()
        .find(|t| t.status == TicketStatus::Opened && t.last_at_ms() <= START_MS)
        .map(|t| t.id)
        .unwrap();
    server.hub.publish([
        Event::TicketDispatched(datawall::protocol::TicketDispatched {
            ticket_id: waiting,
            at_ms: START_MS + 60_000,
            assignee: "志愿者".into(),
            volunteer_id: Some(state.volunteers[0].id),
            command_id: None,
        }),
        Event::VolunteerStatus(datawall::protocol::VolunteerStatusChanged {
            volunteer_id: state.volunteers[0].id,
            at_ms: START_MS + 60_000,
            status: datawall::protocol::VolunteerStatus::Responding,
            task: Some(datawall::protocol::Task::Ticket(waiting)),
        }),
        Event::VolunteerFix(datawall::protocol::VolunteerFix {
            volunteer_id: state.volunteers[0].id,
            at_ms: START_MS + 60_000,
            pos: open.1,
        }),
        Event::TicketSupervised(datawall::protocol::TicketSupervised {
            ticket_id: open.0,
            at_ms: START_MS + 60_000,
            by: "值班员".into(),
            note: String::new(),
            pushed_to: None,
            command_id: None,
        }),
        Event::AnnotationAdded(datawall::protocol::AnnotationAdded {
            annotation_id: "n-1".into(),
            at_ms: START_MS + 60_000,
            moment_ms: START_MS - 60_000,
            place: datawall::protocol::entities::Place::Ticket { ticket_id: open.0 },
            pos: open.1,
            grid_id: open.2,
            text: "楼下积水".into(),
            by: "值班员".into(),
            command_id: None,
        }),
    ]);
    // A ticket past its time limit, and its breach alert.
    server
        .hub
        .publish([Event::TicketOpened(datawall::protocol::TicketOpened {
            ticket_id: 9_000_000_001,
            at_ms: START_MS + 60_000,
            category: datawall::protocol::TicketCategory::Repair,
            source: datawall::protocol::TicketSource::Hotline,
            priority: datawall::protocol::Priority::Urgent,
            pos: open.1,
            grid_id: open.2,
            sla_deadline_ms: START_MS + 60_001,
            summary: "电梯困人".into(),
            responsible_party: None,
        })]);
    let due = server
        .hub
        .with_state(|s| s.alerts_due(START_MS + 60_002, 86_400_000));
    server.hub.publish(due);
    let state = server.hub.state();
    let tickets = state.tickets_sorted();
    // Every optional part of a ticket and a volunteer is on the wire at least once.
    for (what, n) in [
        (
            "assignee",
            tickets.iter().filter(|t| t.assignee.is_some()).count(),
        ),
        (
            "volunteer",
            tickets.iter().filter(|t| t.volunteer_id.is_some()).count(),
        ),
        (
            "rating",
            tickets.iter().filter(|t| t.satisfaction.is_some()).count(),
        ),
        (
            "party",
            tickets
                .iter()
                .filter(|t| t.responsible_party.is_some())
                .count(),
        ),
        (
            "supervised",
            tickets
                .iter()
                .filter(|t| t.supervised_at_ms.is_some())
                .count(),
        ),
        (
            "several steps",
            tickets.iter().filter(|t| t.steps.len() > 2).count(),
        ),
        ("alert", state.alerts.len()),
        ("note", state.annotations.len()),
        (
            "volunteer on a task",
            state.volunteers.iter().filter(|v| v.task.is_some()).count(),
        ),
        (
            "volunteer placed",
            state.volunteers.iter().filter(|v| v.pos.is_some()).count(),
        ),
    ] {
        assert!(n > 0, "the state has no {what} to carry");
    }
    let seq = server.hub.last_seq();

    let (mut json_conn, mut json, json_hello) = synced_mirror(&server.url(), seq).await;
    let json_bytes = server.count(|m| &m.bytes_out);
    let binary_url = format!("{}?format=binary", server.url());
    let (mut bin_conn, mut bin, bin_hello) = synced_mirror(&binary_url, seq).await;
    let bin_bytes = server.count(|m| &m.bytes_out) - json_bytes;
    assert_eq!(json_hello.snapshot_format, SnapshotFormat::Json);
    assert_eq!(bin_hello.snapshot_format, SnapshotFormat::Binary);
    let snap: Vec<_> = server
        .hub
        .snapshot_as(SnapshotFormat::Binary)
        .messages()
        .collect();
    assert!(
        snap[1..snap.len() - 1].iter().all(|m| m.is_binary())
            && snap[0].is_text()
            && snap[snap.len() - 1].is_text(),
        "binary chunks between a JSON begin and end"
    );
    assert!(
        bin_bytes * 3 < json_bytes,
        "binary {bin_bytes} bytes against JSON {json_bytes}"
    );
    assert_in_step(&json, &server);
    assert_in_step(&bin, &server);
    let (a, b) = (json.state.as_ref().unwrap(), bin.state.as_ref().unwrap());
    assert!(a.same_entities(b));
    assert_eq!(a.tickets.len(), tickets.len());

    // Live deltas continue from the binary snapshot as from the JSON one.
    for k in 1..=6 {
        server
            .hub
            .publish(sim.advance_to(START_MS + 60_000 + k * 10_000));
    }
    let last = server.hub.last_seq();
    let json_seen = sync_to(&mut json_conn, &mut json, last).await;
    let bin_seen = sync_to(&mut bin_conn, &mut bin, last).await;
    assert_in_step(&bin, &server);
    assert_eq!(bin.rejected, 0, "{:?}", bin.last_rejection);
    let (json_events, bin_events) = (deltas(&json_seen), deltas(&bin_seen));
    assert!(
        json_events.len() > 100
            && json_events
                .iter()
                .any(|(_, e)| matches!(e, Event::VolunteerFix(_)))
            && json_events
                .iter()
                .any(|(_, e)| !matches!(e, Event::VolunteerFix(_))),
        "a minute of fixes and other events: {}",
        json_events.len()
    );
    assert_eq!(bin_events, json_events, "the same events either way");
    // The same batch as the gateway writes it each way: binary, a fraction of the bytes, and
    // the same delta once decoded.
    let Read::Events(entries) = server.hub.read_after(seq, 10_000) else {
        panic!("the ring holds the minute")
    };
    let batch = |format| delta_message(server.hub.epoch, seq, &entries, false, format);
    let ((as_json, n, _), (as_bin, m, _)) =
        (batch(SnapshotFormat::Json), batch(SnapshotFormat::Binary));
    assert!(as_json.is_text() && as_bin.is_binary() && n == m && n == entries.len());
    assert!(
        as_bin.len() * 2 < as_json.len(),
        "binary {} bytes, JSON {}",
        as_bin.len(),
        as_json.len()
    );
    let decoded = |msg| match decode_message(&msg) {
        Ok(Some(ServerMsg::Delta(d))) => d,
        other => panic!("a delta: {other:?}"),
    };
    let (dj, db) = (decoded(as_json), decoded(as_bin));
    assert_eq!(
        (db.prev_seq, db.first_seq, db.last_seq, &db.events),
        (dj.prev_seq, dj.first_seq, dj.last_seq, &dj.events)
    );

    // A format the gateway does not know is refused before the upgrade, saying what is.
    let err = FeedConnection::connect(&format!("{}?format=cbor", server.url()), TOKEN, None)
        .await
        .err()
        .expect("an unknown format is refused");
    match err {
        ClientError::Refused { status, body } => {
            assert_eq!(status, 400);
            assert!(body.contains("format=binary"), "{body}");
        }
        other => panic!("refused with {other}"),
    }
    json_conn.close().await;
    bin_conn.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_wall_beside_its_gateway_shares_the_ticket_records_and_stays_equal() {
    let server = Server::start(100_000, |c| c.conflate_after_events = u64::MAX).await;
    datawall::net::hub::register_local(&server.hub);
    let mut sim = simulator();
    server.hub.publish(sim.advance_to(START_MS));
    let seq = server.hub.last_seq();
    let url = format!("{}?format=binary", server.url());
    let (mut conn, mut mirror, _) = synced_mirror(&url, seq).await;
    let shared = |mirror: &Mirror| {
        let hub = server.hub.state();
        let mine = mirror.state.as_ref().unwrap();
        mine.tickets
            .values()
            .filter(|t| hub.tickets.get(&t.id).is_some_and(|h| Arc::ptr_eq(h, t)))
            .count()
    };
    let tickets = server.hub.state().tickets.len();
    assert!(tickets > 100);
    assert_eq!(
        shared(&mirror),
        tickets,
        "every record is the gateway's own"
    );
    assert_in_step(&mirror, &server);
    // Both sides change tickets from here on: the mirror copies a record it changes, then
    // takes the gateway's once the two are equal again, so the models stay equal and the
    // process keeps one copy of each ticket.
    let mut opened = 0;
    for k in 1..=12 {
        let events = sim.advance_to(START_MS + k * 10_000);
        opened += events
            .iter()
            .filter(|e| matches!(e, Event::TicketOpened(_)))
            .count();
        server.hub.publish(events);
    }
    assert!(opened > 0, "the simulator opened no ticket");
    sync_to(&mut conn, &mut mirror, server.hub.last_seq()).await;
    assert_in_step(&mirror, &server);
    // (After each delta the mirror takes what it can without waiting for the gateway's lock;
    // this takes the rest.)
    mirror.share_changed_now();
    let tickets = server.hub.state().tickets.len();
    assert_eq!(
        shared(&mirror),
        tickets,
        "every record, changed or new, is the gateway's own"
    );
    assert!(
        mirror.shared >= opened as u64,
        "{} records taken after events, {opened} tickets opened",
        mirror.shared
    );
    conn.close().await;
    server.stop().await;
}

#[test]
fn the_ring_keeps_its_bytes_under_the_cap_and_a_client_behind_it_is_resynced() {
    const CAP: usize = 48 * 1024;
    let config = HubConfig {
        ring_capacity: 1_000_000,
        ring_max_bytes: CAP,
        snapshot_chunk: 200,
    };
    // Half the bytes are for the ring's slots, the other half for its lines.
    let slots = config.ring_slots();
    assert_eq!(slots, CAP / (2 * std::mem::size_of::<Entry>()));
    let hub = Hub::new(county(), config);
    let events = fixes(START_MS, 2_000);
    let published = hub.publish(events.clone());
    assert_eq!(published.accepted, 2_000, "{published:?}");
    let (held, bytes) = (hub.ring_len(), hub.ring_bytes());
    assert!(bytes <= CAP, "{bytes} bytes in the ring, the cap is {CAP}");
    assert!(
        (100..2_000).contains(&held),
        "the ring holds {held} of 2 000 fixes: the bytes, not the count, bound it"
    );
    // Its entries are the newest, and every one of them can still be read after its
    // predecessor; a cursor before them is behind.
    let last = hub.last_seq();
    let Read::Events(tail) = hub.read_after(last - held as u64, usize::MAX) else {
        panic!("the ring's own first cursor is behind");
    };
    assert_eq!(tail.len(), held);
    assert_eq!(tail.last().map(|e| e.seq), Some(last));
    assert!(
        held < slots,
        "{held} entries: the lines, not the slots, bound these"
    );
    // (Fewer than 1 024 slots are taken at once.)
    assert_eq!(
        slots * std::mem::size_of::<Entry>() + tail.iter().map(|e| e.json.len()).sum::<usize>(),
        bytes
    );
    assert!(matches!(hub.read_after(0, 10), Read::Behind));
    assert!(matches!(
        hub.read_after(last - held as u64 - 1, 10),
        Read::Behind
    ));
    let metrics = hub.render_metrics();
    assert!(
        metrics.contains(&format!("datawall_ring_bytes {bytes}")),
        "{metrics}"
    );

    // A cap below one entry: the newest still stays, alone.
    let tiny = Hub::new(
        county(),
        HubConfig {
            ring_capacity: 1_000_000,
            ring_max_bytes: 10,
            snapshot_chunk: 200,
        },
    );
    tiny.publish(events.iter().take(5).cloned());
    assert_eq!(tiny.ring_len(), 1);
    let Read::Events(one) = tiny.read_after(tiny.last_seq() - 1, 10) else {
        panic!("the newest event left the ring");
    };
    assert_eq!(one.len(), 1);
    // A count below what the bytes allow bounds the ring by itself.
    let counted = Hub::new(
        county(),
        HubConfig {
            ring_capacity: 50,
            ring_max_bytes: CAP,
            snapshot_chunk: 200,
        },
    );
    counted.publish(events);
    assert_eq!(counted.ring_len(), 50);
    assert!(counted.ring_bytes() <= CAP);
    assert!(matches!(
        counted.read_after(counted.last_seq() - 51, 10),
        Read::Behind
    ));
}

#[test]
fn json_snapshot_chunks_are_encoded_for_each_client_and_binary_ones_shared() {
    let hub = Hub::new(
        county(),
        HubConfig {
            snapshot_chunk: 50,
            ..Default::default()
        },
    );
    let mut sim = simulator();
    hub.publish(sim.advance_to(START_MS));
    for format in SnapshotFormat::ALL {
        let snap = hub.snapshot_as(format);
        assert!(snap.len() > 3, "{format:?}: {} messages", snap.len());
        // Two clients sent it in turn get the same messages, however it keeps them.
        let first: Vec<_> = snap.messages().collect();
        let second: Vec<_> = snap.messages().collect();
        assert_eq!(first, second, "{format:?}");
        let chunk = |m: &tokio_tungstenite::tungstenite::Message| m.clone().into_data();
        let same_bytes = first[1..first.len() - 1]
            .iter()
            .zip(&second[1..second.len() - 1])
            .all(|(a, b)| chunk(a).as_ptr() == chunk(b).as_ptr());
        match format {
            // Kept: the second client is sent the first one's bytes.
            SnapshotFormat::Binary => assert!(same_bytes, "binary chunks encoded again"),
            // Not kept: each client's chunks are its own.
            SnapshotFormat::Json => assert!(!same_bytes, "JSON chunks kept for the next client"),
        }
    }
}

#[test]
fn the_rings_lines_stay_each_events_own_across_blocks_and_leave_with_their_events() {
    use datawall::net::hub::LINE_BLOCK;
    // Several blocks' worth of lines: the simulator's first hours, then a backlog of openings.
    let mut events = simulator().advance_to(START_MS);
    events.extend(
        datawall::bench::load_tickets(&county(), 4_000)
            .into_iter()
            .map(|e| match e {
                Event::TicketOpened(mut t) => {
                    t.ticket_id += 1 << 40;
                    Event::TicketOpened(t)
                }
                e => e,
            }),
    );
    let line = |seq: u64, e: &Event| format!("[{seq},{}]", serde_json::to_string(e).unwrap());
    let total: usize = (1..).zip(&events).map(|(s, e)| line(s, e).len()).sum();
    assert!(total > 4 * LINE_BLOCK, "{total} bytes of lines");
    let whole = Hub::new(
        county(),
        HubConfig {
            ring_capacity: usize::MAX,
            ring_max_bytes: usize::MAX,
            ..Default::default()
        },
    );
    let report = whole.publish(events.clone());
    assert_eq!((report.accepted, report.rejected), (events.len(), 0));
    let Read::Events(kept) = whole.read_after(0, usize::MAX) else {
        panic!("the whole run is in the ring")
    };
    assert_eq!(kept.len(), events.len());
    for ((seq, e), entry) in (1..).zip(&events).zip(&kept) {
        assert_eq!(entry.seq, seq);
        assert_eq!(&*entry.json, line(seq, e), "event {seq}");
    }
    // Bounded in bytes, the ring keeps the newest lines whole and drops the oldest.
    let bound = 2 * LINE_BLOCK + LINE_BLOCK / 3;
    let bounded = Hub::new(
        county(),
        HubConfig {
            ring_capacity: usize::MAX,
            ring_max_bytes: bound,
            ..Default::default()
        },
    );
    bounded.publish(events.clone());
    assert!(bounded.ring_bytes() <= bound);
    assert!(matches!(bounded.read_after(0, usize::MAX), Read::Behind));
    let floor = events.len() as u64 - bounded.ring_len() as u64;
    let Read::Events(tail) = bounded.read_after(floor, usize::MAX) else {
        panic!("the ring holds what follows its floor")
    };
    assert_eq!(tail.len(), bounded.ring_len());
    for (entry, (seq, e)) in tail
        .iter()
        .zip((floor + 1..).zip(&events[floor as usize..]))
    {
        assert_eq!(entry.seq, seq);
        assert_eq!(&*entry.json, line(seq, e), "event {seq}");
    }
}
