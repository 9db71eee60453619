//! Network faults between a wall and its gateway, through a TCP fault proxy on loopback: a
//! stalled connection and a throttled one. Each ends with the wall's state equal to the
//! gateway's; while it lasts, the wall says what is wrong.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datawall::net::gateway::Shutdown;
use datawall::net::hub::{Hub, HubConfig};
use datawall::protocol::session::FEED_PATH;
use datawall::wall::feed::{FeedChannel, FeedState, FeedTarget, WallModel, spawn_feed};
use datawall::wall::ui::feed_view;

use crate::common::{Mode, Proxy, county, fixes, pump_wall};

const T0: i64 = 1_764_140_400_000;

/// A gateway with a fast heartbeat (the wall then notices silence within a second).
async fn gateway(
    ring: usize,
    client_silence: Duration,
) -> (Arc<Hub>, std::net::SocketAddr, Shutdown) {
    let hub = Arc::new(Hub::new(
        county(),
        HubConfig {
            ring_capacity: ring,
            snapshot_chunk: 500,
            ..Default::default()
        },
    ));
    hub.publish(fixes(T0, 500));
    let (addr, shutdown, _) = crate::common::serve_hub(&hub, "fault-token", |cfg| {
        cfg.heartbeat = Duration::from_millis(300);
        cfg.client_silence = client_silence;
        cfg.conflate_after_events = u64::MAX;
    })
    .await;
    (hub, addr, shutdown)
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

/// A gateway (`ring`, `client_silence`), the fault proxy in front of it and a wall through
/// the proxy, live at the gateway's seq.
async fn live_through_proxy(
    ring: usize,
    client_silence: Duration,
) -> (Arc<Hub>, Shutdown, Proxy, FeedChannel, WallModel) {
    let (hub, addr, shutdown) = gateway(ring, client_silence).await;
    let proxy = Proxy::start(addr).await;
    let (mut ch, mut model) = wall_through(&proxy);
    pump_wall(&mut ch, &mut model, "live", |m| {
        m.state == FeedState::Live && m.mirror.last_seq == hub.last_seq()
    })
    .await;
    (hub, shutdown, proxy, ch, model)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_is_shown_and_the_wall_catches_up_when_it_moves_again() {
    // A silent client is dropped after 3 s (15 s by default): the long stall below outlasts
    // it without a long test.
    let (hub, shutdown, proxy, mut ch, mut model) =
        live_through_proxy(100_000, Duration::from_secs(3)).await;
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
    let stalled = Instant::now();

    // A long stall, as long as every timer on both sides needs to fire: the wall gives up on
    // the silent socket and tries again (through the same stalled network), and the gateway
    // drops the client it has not heard from.
    pump_wall(&mut ch, &mut model, "the wall reconnecting", |m| {
        matches!(m.state, FeedState::Reconnecting { .. })
    })
    .await;
    crate::common::eventually("the gateway drops the silent wall", || {
        hub.metrics
            .heartbeat_timeouts
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    })
    .await;
    hub.publish(fixes(T0 + 20_000, 2_000));
    assert!(
        model.live().is_some(),
        "the last picture is still on screen"
    );
    assert!(feed_view(&model).banner.is_some());

    // It moves again: the wall reconnects, resumes and holds exactly the gateway's state.
    proxy.set(Mode::Pass);
    let moved = Instant::now();
    let target = hub.last_seq();
    pump_wall(&mut ch, &mut model, "caught up after the stall", |m| {
        m.state == FeedState::Live && m.mirror.last_seq == target
    })
    .await;
    eprintln!(
        "test: stalled {:.1} s; live and equal {:.1} s after the network moved",
        moved.duration_since(stalled).as_secs_f64(),
        moved.elapsed().as_secs_f64()
    );
    assert!(model.live().unwrap().same_entities(&hub.state()));
    assert!(feed_view(&model).live);
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_wall_falls_off_the_ring_is_resynced_and_ends_equal() {
    // A small ring: a client a few thousand events behind has fallen off it.
    let (hub, shutdown, proxy, mut ch, mut model) =
        live_through_proxy(1_000, Duration::from_secs(15)).await;
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
    let moved = Instant::now();
    let target = hub.last_seq();
    pump_wall(&mut ch, &mut model, "caught up after the throttle", |m| {
        m.state == FeedState::Live && m.mirror.last_seq == target
    })
    .await;
    eprintln!(
        "test: live and equal {:.1} s after the throttle ended",
        moved.elapsed().as_secs_f64()
    );
    assert!(
        resyncs() >= 1,
        "the gateway resynced the slow wall instead of buffering for it"
    );
    assert!(model.live().unwrap().same_entities(&hub.state()));
    shutdown.trigger();
}

/// A hostile gateway that sends every connection `hello` (binary format) and then `messages`;
/// each connection's request URI comes out of the channel.
#[allow(clippy::result_large_err)]
async fn hostile_binary_gateway(
    messages: Vec<tokio_tungstenite::tungstenite::Message>,
) -> (std::net::SocketAddr, tokio::sync::mpsc::Receiver<String>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (asked_tx, asked) = tokio::sync::mpsc::channel::<String>(8);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let asked_tx = asked_tx.clone();
            let messages = messages.clone();
            tokio::spawn(async move {
                let mut uri = String::new();
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(
                    tcp,
                    |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                        uri = req.uri().to_string();
                        Ok(resp)
                    },
                )
                .await
                else {
                    return;
                };
                let _ = asked_tx.try_send(uri);
                let hello = serde_json::json!({
                    "type": "hello", "protocol": 1, "county_code": 640221,
                    "county_name": "平罗县", "epoch": 7, "last_seq": 10,
                    "server_time_ms": T0, "clock_rate": 1.0, "heartbeat_ms": 500,
                    "max_client_message_bytes": 65536, "resumed": false,
                    "snapshot_format": "binary"
                });
                for m in std::iter::once(Message::text(hello.to_string())).chain(messages) {
                    if ws.send(m).await.is_err() {
                        return;
                    }
                }
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (addr, asked)
}

/// `snapshot_begin` of epoch 7 at seq 10: one chunk of `tickets` tickets.
fn begin_of(tickets: usize) -> tokio_tungstenite::tungstenite::Message {
    tokio_tungstenite::tungstenite::Message::text(
        serde_json::json!({
            "type": "snapshot_begin", "epoch": 7, "seq": 10, "chunks": 1,
            "tickets": tickets, "volunteers": 0, "incidents": 0
        })
        .to_string(),
    )
}

/// A wall's model and the feed thread that fills it, connected to `addr`.
fn wall_fed_from(addr: std::net::SocketAddr) -> (FeedChannel, WallModel) {
    let (rx, commands) = spawn_feed(FeedTarget {
        url: format!("ws://{addr}{FEED_PATH}"),
        token: "any".into(),
        tls: None,
    })
    .unwrap();
    (FeedChannel { rx, commands }, WallModel::new(county()))
}

/// The next connection's request URI.
async fn next_ask(asked: &mut tokio::sync::mpsc::Receiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(60), asked.recv())
        .await
        .expect("the wall connects again")
        .unwrap()
}

/// A gateway that breaks its binary snapshot: the wall says what is wrong, drops the
/// connection and asks again for a fresh snapshot (nothing of the broken one is applied).
#[tokio::test]
async fn a_broken_binary_snapshot_chunk_is_refused_and_asked_for_again() {
    use tokio_tungstenite::tungstenite::Message;
    // A chunk cut after its ticket count: one ticket announced, none there.
    let mut cut = b"DWB1".to_vec();
    cut.extend([1, 7, 10, 0, 0, 1]);
    let (addr, mut asked) = hostile_binary_gateway(vec![begin_of(1), Message::binary(cut)]).await;
    let (mut ch, mut model) = wall_fed_from(addr);
    pump_wall(&mut ch, &mut model, "the broken chunk refused", |m| {
        matches!(&m.state, FeedState::Reconnecting { error, .. }
            if error.contains("binary snapshot chunk") && error.contains("format=json"))
    })
    .await;
    assert!(model.live().is_none(), "nothing of it was applied");
    let view = feed_view(&model);
    assert!(
        view.banner
            .as_deref()
            .is_some_and(|b| b.contains("binary snapshot chunk")),
        "the wall says why: {:?}",
        view.banner
    );
    // Asked for in binary, then again with no resume point: a fresh snapshot.
    for _ in 0..2 {
        let uri = next_ask(&mut asked).await;
        assert!(
            uri.contains("format=binary") && !uri.contains("resume_epoch"),
            "{uri}"
        );
    }
}

/// A gateway whose snapshot is whole but whose binary delta is cut: the wall keeps what it
/// has, says what is wrong and connects again (asking for binary).
#[tokio::test]
async fn a_broken_binary_delta_is_refused_and_the_wall_connects_again() {
    use datawall::protocol::binary::{DeltaEvent, Others, encode_chunk, encode_delta};
    use datawall::protocol::{LonLat, VolunteerFix};
    use tokio_tungstenite::tungstenite::Message;
    let end = serde_json::json!({
        "type": "snapshot_end", "epoch": 7, "seq": 10, "latest_event_ms": T0
    });
    let fix = VolunteerFix {
        volunteer_id: county().pack.volunteers[0].id,
        at_ms: T0,
        pos: LonLat::new(106.5, 38.9),
    };
    let delta = encode_delta(7, 10, 11, 11, 0, &[(11, DeltaEvent::Fix(&fix))]);
    let (addr, mut asked) = hostile_binary_gateway(vec![
        begin_of(0),
        Message::binary(encode_chunk(7, 10, 0, &[], Others::default())),
        Message::text(end.to_string()),
        Message::binary(delta[..delta.len() - 3].to_vec()),
    ])
    .await;
    let (mut ch, mut model) = wall_fed_from(addr);
    pump_wall(&mut ch, &mut model, "the broken delta refused", |m| {
        matches!(&m.state, FeedState::Reconnecting { error, .. }
            if error.contains("binary delta") && error.contains("format=json"))
    })
    .await;
    assert!(model.live().is_some(), "the snapshot before it stands");
    assert_eq!(model.mirror.last_seq, 10, "nothing of the delta applied");
    for _ in 0..2 {
        let uri = next_ask(&mut asked).await;
        assert!(uri.contains("format=binary"), "{uri}");
    }
}

/// A gateway holding the county after a day of the simulator, its snapshot in small chunks.
async fn county_day_gateway() -> (Arc<Hub>, std::net::SocketAddr, Shutdown) {
    let hub = Arc::new(Hub::new(
        county(),
        HubConfig {
            ring_capacity: 10_000,
            snapshot_chunk: 200,
            ..Default::default()
        },
    ));
    let mut sim = crate::common::simulator(county(), 8, T0, 24);
    hub.publish(sim.advance_to(T0));
    let (addr, shutdown, _) = crate::common::serve_hub(&hub, "fault-token", |_| {}).await;
    (hub, addr, shutdown)
}

/// The wall's own path: the snapshot comes in binary, its chunks are put together on the feed
/// thread (the wall sees only how far it has come), the model is built from it whole —
/// here, and on a worker while frames would go on — and equals the gateway's.
#[tokio::test]
async fn a_binary_snapshot_is_assembled_on_the_feed_thread_and_shown_as_it_comes() {
    use datawall::net::client::FeedItem;
    use datawall::protocol::session::ServerMsg;
    let (hub, addr, shutdown) = county_day_gateway().await;
    let connect = || {
        let (rx, commands) = spawn_feed(FeedTarget {
            url: format!("ws://{addr}{FEED_PATH}"),
            token: "fault-token".into(),
            tls: None,
        })
        .unwrap();
        FeedChannel { rx, commands }
    };
    let mut ch = connect();
    let mut model = WallModel::new(county());
    let mut seen = Vec::new();
    while model.state != FeedState::Live {
        let item = tokio::time::timeout(Duration::from_secs(60), ch.rx.recv())
            .await
            .expect("the feed goes on")
            .unwrap();
        assert!(
            !matches!(
                item,
                FeedItem::Msg(ServerMsg::SnapshotChunk(_) | ServerMsg::SnapshotBegin(_))
            ),
            "the snapshot's messages stay on the feed thread"
        );
        datawall::wall::feed::apply_item(&ch, &mut model, item);
        if let Some(p) = model.mirror.snapshot_progress() {
            let pct = format!("{:.0}%", p.fraction() * 100.0);
            let view = feed_view(&model);
            assert!(view.indicator.contains(&pct), "{}", view.indicator);
            seen.push((p.chunks, p.of_chunks, p.tickets));
        }
    }
    let (_, chunks, _) = seen[0];
    let tickets = hub.state().tickets.len();
    assert!(chunks >= 4, "{chunks} chunks");
    assert_eq!(seen.first(), Some(&(0, chunks, 0)));
    assert_eq!(seen.last(), Some(&(chunks, chunks, tickets)));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0 && w[0].2 <= w[1].2));
    assert!(model.mirror.snapshot_progress().is_none());
    assert!(model.live().unwrap().same_entities(&hub.state()));

    // As the wall app does it: built on a worker, the feed held back until it is in.
    bevy::tasks::AsyncComputeTaskPool::get_or_init(bevy::tasks::TaskPool::new);
    let mut ch = connect();
    let mut model = WallModel::new(county()).preparing_off_thread();
    crate::common::eventually("live from a snapshot built on a worker", || {
        datawall::wall::feed::drain_with_budget(&mut ch, &mut model, Duration::from_millis(50));
        model.state == FeedState::Live && model.mirror.last_seq == hub.last_seq()
    })
    .await;
    assert!(model.live().unwrap().same_entities(&hub.state()));
    assert_eq!(
        model.ticket_store.len(),
        tickets,
        "the analytics store came with it"
    );
    shutdown.trigger();
}
