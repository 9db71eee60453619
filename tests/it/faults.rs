//! Network faults between a wall and its gateway, through a TCP fault proxy on loopback: a
//! stalled connection and a throttled one. Each ends with the wall's state equal to the
//! gateway's; while it lasts, the wall says what is wrong.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datawall::net::gateway::Shutdown;
use datawall::net::hub::{Hub, HubConfig};
use datawall::protocol::session::FEED_PATH;
use datawall::wall::feed::{FeedChannel, FeedState, FeedTarget, WallModel, apply_item, spawn_feed};
use datawall::wall::ui::feed_view;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::common::{county, fixes};

const T0: i64 = 1_764_140_400_000;

/// What the proxy does to the bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Pass,
    /// Hold everything (both ways) until the mode changes: a stalled network.
    Stall,
    /// At most this many bytes a second each way.
    Throttle(usize),
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`.
struct Proxy {
    addr: std::net::SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Pass);
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::spawn(pump(dr, uw, rx.clone()));
                tokio::spawn(pump(ur, dw, rx.clone()));
            }
        });
        Self { addr, mode }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// Carry bytes from `from` to `to` as the mode says, until either side closes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut at = 0;
        while at < n {
            let current = *mode.borrow_and_update();
            match current {
                Mode::Stall => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                Mode::Pass => {
                    if to.write_all(&buf[at..n]).await.is_err() {
                        return;
                    }
                    at = n;
                }
                Mode::Throttle(bytes_per_sec) => {
                    // A tenth of a second's worth at a time.
                    let step = (bytes_per_sec / 10).max(1).min(n - at);
                    if to.write_all(&buf[at..at + step]).await.is_err() {
                        return;
                    }
                    at += step;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// A gateway with a fast heartbeat (the wall then notices silence within a second).
async fn gateway(ring: usize) -> (Arc<Hub>, std::net::SocketAddr, Shutdown) {
    let hub = Arc::new(Hub::new(
        county(),
        HubConfig {
            ring_capacity: ring,
            snapshot_chunk: 500,
        },
    ));
    hub.publish(fixes(T0, 500));
    let (addr, shutdown, _) = crate::common::serve_hub(&hub, "fault-token", |cfg| {
        cfg.heartbeat = Duration::from_millis(300);
        cfg.conflate_after_events = u64::MAX;
    })
    .await;
    (hub, addr, shutdown)
}

/// Drain the wall's feed until `done` holds (60 s at most).
async fn pump_wall(
    ch: &mut FeedChannel,
    model: &mut WallModel,
    what: &str,
    done: impl Fn(&WallModel) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(model) {
        assert!(
            Instant::now() < deadline,
            "never: {what} ({:?})",
            model.state
        );
        // Woken by the next item from the feed thread; a stall shows by the wall's clock
        // alone, so look again at least every 50 ms.
        if let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(50), ch.rx.recv()).await
        {
            apply_item(ch, model, item);
        }
    }
}

fn wall_through(proxy: &Proxy) -> (FeedChannel, WallModel) {
    let (rx, commands) = spawn_feed(FeedTarget {
        url: format!("ws://{}{FEED_PATH}", proxy.addr),
        token: "fault-token".into(),
        tls: None,
    })
    .unwrap();
    (FeedChannel { rx, commands }, WallModel::new(county()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_is_shown_and_the_wall_catches_up_when_it_moves_again() {
    let (hub, addr, shutdown) = gateway(100_000).await;
    let proxy = Proxy::start(addr).await;
    let (mut ch, mut model) = wall_through(&proxy);
    pump_wall(&mut ch, &mut model, "live", |m| {
        m.state == FeedState::Live && m.mirror.last_seq == hub.last_seq()
    })
    .await;
    assert!(feed_view(&model).live);

    // The network stalls; the gateway goes on publishing.
    proxy.set(Mode::Stall);
    hub.publish(fixes(T0 + 10_000, 2_000));
    pump_wall(&mut ch, &mut model, "the stall shown", |m| {
        feed_view(m).banner.is_some()
    })
    .await;
    assert!(!feed_view(&model).live);
    assert!(model.live().is_some(), "the last picture stays on screen");

    // It moves again: the wall reconnects, resumes and holds exactly the gateway's state.
    proxy.set(Mode::Pass);
    let target = hub.last_seq();
    pump_wall(&mut ch, &mut model, "caught up after the stall", |m| {
        m.state == FeedState::Live && m.mirror.last_seq == target
    })
    .await;
    assert!(model.live().unwrap().same_entities(&hub.state()));
    assert!(feed_view(&model).live);
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_wall_falls_off_the_ring_is_resynced_and_ends_equal() {
    // A small ring: a client a few thousand events behind has fallen off it.
    let (hub, addr, shutdown) = gateway(1_000).await;
    let proxy = Proxy::start(addr).await;
    let (mut ch, mut model) = wall_through(&proxy);
    pump_wall(&mut ch, &mut model, "live", |m| {
        m.state == FeedState::Live && m.mirror.last_seq == hub.last_seq()
    })
    .await;
    let resyncs = || {
        hub.metrics
            .resyncs
            .load(std::sync::atomic::Ordering::Relaxed)
            + hub
                .metrics
                .slow_disconnects
                .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(resyncs(), 0);
    // 20 KB/s while the gateway publishes far more than that, in batches a wall at full
    // speed takes one by one.
    proxy.set(Mode::Throttle(20_000));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut k = 0;
    while resyncs() == 0 {
        assert!(
            Instant::now() < deadline,
            "the throttled wall was never resynced"
        );
        hub.publish(fixes(T0 + 100_000 + k * 1_000, 200));
        k += 1;
        tokio::task::yield_now().await;
    }
    assert!(model.mirror.last_seq < hub.last_seq(), "the wall is behind");
    proxy.set(Mode::Pass);
    let target = hub.last_seq();
    pump_wall(&mut ch, &mut model, "caught up after the throttle", |m| {
        m.state == FeedState::Live && m.mirror.last_seq == target
    })
    .await;
    assert!(
        resyncs() >= 1,
        "the gateway resynced the slow wall instead of buffering for it"
    );
    assert!(model.live().unwrap().same_entities(&hub.state()));
    shutdown.trigger();
}
