//! Hostile clients against a real gateway over loopback: garbage before and after the upgrade,
//! a client that is not a websocket, a slow-loris request head, an oversized head, invalid
//! UTF-8, and two hundred clients at once. Each gets a clear answer or is let go; the gateway
//! keeps serving everyone else.

use std::sync::Arc;
use std::time::Duration;

use datawall::net::client::{FeedConnection, Mirror};
use datawall::net::gateway::{GatewayConfig, Shutdown};
use datawall::net::hub::{Hub, HubConfig};
use datawall::protocol::session::{FEED_PATH, ServerMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::county;

const TOKEN: &str = "hostile-test-token-2f9e";
const START_MS: i64 = 1_764_140_400_000;
const PATIENCE: Duration = Duration::from_secs(60);

struct Gateway {
    addr: std::net::SocketAddr,
    hub: Arc<Hub>,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

async fn gateway(tweak: impl FnOnce(&mut GatewayConfig)) -> Gateway {
    let hub = Arc::new(Hub::new(county(), HubConfig::default()));
    let mut sim = crate::common::simulator(county(), 4, START_MS, 2);
    hub.publish(sim.advance_to(START_MS));
    let (addr, shutdown, task) = crate::common::serve_hub(&hub, TOKEN, tweak).await;
    Gateway {
        addr,
        hub,
        shutdown,
        task,
    }
}

impl Gateway {
    /// A well-behaved client syncs to the gateway's state.
    async fn still_serves(&self) {
        let url = format!("ws://{}{FEED_PATH}", self.addr);
        let mut conn = FeedConnection::connect(&url, TOKEN, None).await.unwrap();
        let mut mirror = Mirror::new(county());
        tokio::time::timeout(PATIENCE, async {
            while mirror.state.is_none() || mirror.last_seq < self.hub.last_seq() {
                let m = conn.next_msg().await.unwrap();
                mirror.handle(m).unwrap();
            }
        })
        .await
        .expect("a good client is served");
        assert!(
            mirror
                .state
                .as_ref()
                .unwrap()
                .same_entities(&self.hub.state())
        );
        conn.close().await;
    }

    async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Send `bytes` on a raw connection and read until the gateway closes it.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut out))
        .await
        .expect("the gateway answers and hangs up")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_half_requests_and_non_websockets_get_answers_and_others_are_served() {
    let gw = gateway(|c| c.head_timeout = Duration::from_millis(300)).await;
    // A TLS client hello (or any binary) on the plain port.
    let answer = raw(
        gw.addr,
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    // A proper request for the feed that is not a websocket.
    let answer = raw(
        gw.addr,
        format!("GET {FEED_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer:?}");
    assert!(answer.contains("websocket"), "{answer:?}");
    // Slow-loris: half a head, then nothing.
    let answer = raw(
        gw.addr,
        format!("GET {FEED_PATH} HTTP/1.1\r\nHost: x\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(answer.contains("timed out"), "{answer:?}");
    // A head larger than the gateway reads.
    let mut huge = format!("GET {FEED_PATH} HTTP/1.1\r\nHost: x\r\n").into_bytes();
    for i in 0..10 {
        huge.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "a".repeat(2_000)).as_bytes());
    }
    huge.extend_from_slice(b"\r\n");
    let answer = raw(gw.addr, &huge).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(answer.contains("larger than"), "{answer:?}");
    // Too many headers.
    let mut many = format!("GET {FEED_PATH} HTTP/1.1\r\nHost: x\r\n").into_bytes();
    for i in 0..200 {
        many.extend_from_slice(format!("X-{i}: a\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let answer = raw(gw.addr, &many).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(answer.contains("too many headers"), "{answer:?}");
    gw.still_serves().await;
    gw.stop().await;
}

/// Upgrade a raw connection by hand; returns it after the 101 and the hello.
async fn upgraded(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET {FEED_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 101"), "{text:?}");
    s
}

/// Read until the gateway closes the connection (frames and all).
async fn until_closed(mut s: TcpStream) {
    let mut sink = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut sink))
        .await
        .expect("the gateway lets the connection go")
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_and_invalid_utf8_after_the_upgrade_end_only_that_connection() {
    let gw = gateway(|_| {}).await;
    // Bytes that are no websocket frame (an unmasked frame with reserved bits and opcode).
    let mut s = upgraded(gw.addr).await;
    s.write_all(&[0xff; 64]).await.unwrap();
    until_closed(s).await;
    // A masked text frame whose payload is not UTF-8.
    let mut s = upgraded(gw.addr).await;
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let payload = [0xffu8, 0xfe, 0xfd];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await.unwrap();
    until_closed(s).await;
    // Both counted (the session ends just after the socket closes: wait for it).
    let counted = || {
        gw.hub
            .metrics
            .protocol_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    tokio::time::timeout(PATIENCE, async {
        while counted() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("both protocol errors counted");
    gw.still_serves().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_walls_connecting_at_once_are_all_served() {
    let gw = gateway(|c| {
        c.max_clients = 256;
        c.max_clients_per_address = 256;
    })
    .await;
    let url = format!("ws://{}{FEED_PATH}", gw.addr);
    let last = gw.hub.last_seq();
    let walls: Vec<_> = (0..200)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut conn = FeedConnection::connect(&url, TOKEN, None).await?;
                loop {
                    if let ServerMsg::SnapshotEnd(end) = conn.next_msg().await? {
                        conn.close().await;
                        return Ok::<_, datawall::net::client::ClientError>(end.seq);
                    }
                }
            })
        })
        .collect();
    for w in walls {
        let seq = tokio::time::timeout(PATIENCE, w)
            .await
            .expect("every wall gets its snapshot in time")
            .unwrap()
            .expect("no wall is refused");
        assert_eq!(seq, last);
    }
    assert_eq!(
        gw.hub
            .metrics
            .connections_rejected_limit
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    gw.still_serves().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let gw = gateway(|c| c.max_clients_per_address = 2).await;
    let url = format!("ws://{}{FEED_PATH}", gw.addr);
    let a = FeedConnection::connect(&url, TOKEN, None).await.unwrap();
    let _b = FeedConnection::connect(&url, TOKEN, None).await.unwrap();
    match FeedConnection::connect(&url, TOKEN, None).await {
        Err(datawall::net::client::ClientError::Refused { status, body }) => {
            assert_eq!(status, 503);
            assert!(body.contains("from your address"), "{body}");
        }
        other => panic!("expected 503, got {:?}", other.err()),
    }
    // One leaves: its place is given back (once its session has ended).
    a.close().await;
    let mut again = None;
    for _ in 0..1_000 {
        match FeedConnection::connect(&url, TOKEN, None).await {
            Ok(c) => {
                again = Some(c);
                break;
            }
            Err(datawall::net::client::ClientError::Refused { status: 503, .. }) => {
                tokio::task::yield_now().await
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(again.is_some(), "the address's place was never given back");
    gw.stop().await;
}
