//! TLS and named tokens on a real gateway: `wss://` with a self-signed certificate made here,
//! a plain `ws://` client on the TLS port told what is wrong, and roles from a tokens file.

use std::sync::Arc;

use datawall::net::client::{ClientError, FeedConnection};
use datawall::net::gateway::tokens::Tokens;
use datawall::net::gateway::{GatewayConfig, Shutdown, Tls, serve};
use datawall::net::hub::Hub;
use datawall::net::tls::{client_config, server_config};
use datawall::protocol::session::{FEED_PATH, ServerMsg};

use crate::common::{county, scratch_dir};

const TOKEN: &str = "tls-viewer-token";

async fn gateway(
    cfg: GatewayConfig,
) -> (std::net::SocketAddr, Shutdown, tokio::task::JoinHandle<()>) {
    let hub = Arc::new(Hub::new(county(), Default::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, rx) = Shutdown::new();
    let task = tokio::spawn(serve(listener, hub, cfg, rx));
    (addr, shutdown, task)
}

/// A self-signed certificate for localhost and 127.0.0.1, and its key, written into `dir`.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("gateway.pem"), dir.join("gateway.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[tokio::test]
async fn wss_with_a_self_signed_certificate_and_a_clear_error_for_plain_ws() {
    let dir = scratch_dir("tls");
    let (cert, key) = self_signed(&dir);
    let mut cfg = GatewayConfig::new(TOKEN);
    cfg.tls = Some(Tls::new(server_config(&cert, &key).unwrap()));
    let (addr, shutdown, task) = gateway(cfg).await;

    let trust = client_config(Some(&cert)).unwrap();
    let url = format!("wss://127.0.0.1:{}{FEED_PATH}", addr.port());
    let mut conn = FeedConnection::connect_with(&url, TOKEN, None, Some(trust))
        .await
        .expect("wss with the gateway's certificate trusted");
    assert!(matches!(
        conn.next_msg().await.unwrap(),
        ServerMsg::Hello(_)
    ));
    assert!(matches!(
        conn.next_msg().await.unwrap(),
        ServerMsg::SnapshotBegin(_)
    ));

    // Not trusted: refused by the client.
    let untrusted =
        FeedConnection::connect_with(&url, TOKEN, None, Some(client_config(None).unwrap())).await;
    assert!(
        untrusted.is_err(),
        "a certificate nobody vouches for is refused"
    );

    // Plain ws:// to the TLS port: an error that says what to do.
    let plain = format!("ws://127.0.0.1:{}{FEED_PATH}", addr.port());
    let err = FeedConnection::connect(&plain, TOKEN, None)
        .await
        .err()
        .expect("plain websocket to a TLS port fails");
    assert!(matches!(err, ClientError::PlainToTls { .. }), "{err:?}");
    assert!(err.to_string().contains("use wss://"), "{err}");

    // A key file that is not a key: a clear error naming the file.
    let bad = server_config(&cert, &cert).unwrap_err().to_string();
    assert!(bad.contains("gateway.pem"), "{bad}");
    shutdown.trigger();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn named_tokens_from_a_file_have_roles_and_can_be_revoked() {
    let dir = scratch_dir("tokens");
    let path = dir.join("tokens.toml");
    std::fs::write(
        &path,
        "[[token]]\nname = \"wall-hall-1\"\nrole = \"viewer\"\ntoken = \"wall-hall-1-0123456789\"\n\
         [[token]]\nname = \"ticket-platform\"\nrole = \"producer\"\ntoken = \"platform-0123456789\"\n",
    )
    .unwrap();
    let tokens = Arc::new(Tokens::default().with_file(&path).unwrap());
    let mut cfg = GatewayConfig::new("");
    cfg.tokens_file = Some(Arc::clone(&tokens));
    let (addr, shutdown, task) = gateway(cfg).await;
    let url = format!("ws://{addr}{FEED_PATH}");

    let mut conn = FeedConnection::connect(&url, "wall-hall-1-0123456789", None)
        .await
        .expect("the wall's own token");
    assert!(matches!(
        conn.next_msg().await.unwrap(),
        ServerMsg::Hello(_)
    ));
    // A producer's token publishes but does not read the feed; an empty token is nobody's.
    let refused = FeedConnection::connect(&url, "platform-0123456789", None)
        .await
        .map(|_| ());
    assert!(
        matches!(refused, Err(ClientError::Refused { status: 403, .. })),
        "{refused:?}"
    );
    let refused = FeedConnection::connect(&url, "", None).await.map(|_| ());
    assert!(
        matches!(refused, Err(ClientError::Refused { status: 401, .. })),
        "{refused:?}"
    );
    let body = r#"{"type":"ticket.on_site.v1","ticket_id":5,"at_ms":1}"#;
    let (status, reply) = crate::backbone::http(
        addr,
        crate::backbone::post_events("platform-0123456789", None, body),
    )
    .await;
    assert_eq!(status, 200, "{reply}");

    // Revoked: the file without the wall, reloaded (as SIGHUP does).
    std::fs::write(
        &path,
        "[[token]]\nname = \"ticket-platform\"\nrole = \"producer\"\ntoken = \"platform-0123456789\"\n",
    )
    .unwrap();
    assert_eq!(tokens.reload().unwrap(), 1);
    let revoked = FeedConnection::connect(&url, "wall-hall-1-0123456789", None)
        .await
        .map(|_| ());
    assert!(
        matches!(revoked, Err(ClientError::Refused { status: 401, .. })),
        "{revoked:?}"
    );
    shutdown.trigger();
    drop(conn);
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_reads_the_history_over_wss_as_the_feed_is_verified() {
    use datawall::net::client::{FeedCommand, FeedItem, FeedTarget, spawn_feed};
    use datawall::net::history::{self, At, History};
    use datawall::sim::{SimConfig, Simulator};
    let dir = scratch_dir("tls-history");
    let (cert, key) = self_signed(&dir);
    // A gateway keeping a history of a simulated hour, over TLS.
    let hist = dir.join("history");
    let (hub, writer) = history::open_for_gateway(&hist, 7, &county(), Default::default()).unwrap();
    hub.set_history(writer);
    let start = 1_764_140_400_000;
    let mut sim = Simulator::new(
        county(),
        SimConfig {
            seed: 3,
            start_ms: start,
            warmup_hours: 1,
            fix_interval_ms: 60_000,
            ..Default::default()
        },
    );
    hub.publish(sim.advance_to(start + 30 * 60_000));
    let hub = Arc::new(hub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = GatewayConfig::new(TOKEN);
    cfg.tls = Some(Tls::new(server_config(&cert, &key).unwrap()));
    cfg.history_dir = Some(hist.clone());
    let (shutdown, rx) = Shutdown::new();
    let task = tokio::spawn(serve(listener, Arc::clone(&hub), cfg, rx));

    // The wall's link, verifying the gateway by its certificate, asks for a moment.
    let (mut items, commands) = spawn_feed(FeedTarget {
        url: format!("wss://127.0.0.1:{}{FEED_PATH}", addr.port()),
        token: TOKEN.into(),
        tls: Some(client_config(Some(&cert)).unwrap()),
    })
    .unwrap();
    // Once connected (the feed's hello has come).
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(60), items.recv())
            .await
            .expect("connected in time")
            .expect("the link is alive")
        {
            FeedItem::Msg(ServerMsg::Hello(_)) => break,
            _ => continue,
        }
    }
    let at = start + 10 * 60_000;
    commands.send(FeedCommand::History(at)).await.unwrap();
    let moment = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(60), items.recv())
            .await
            .expect("an answer in time")
            .expect("the link is alive")
        {
            FeedItem::History(m) => break m.expect("the moment, over wss"),
            _ => continue,
        }
    };
    let truth = History::open(&hist)
        .unwrap()
        .unwrap()
        .state_at(&county(), At::Time(at))
        .unwrap();
    assert_eq!(moment.seq, truth.seq);
    assert_eq!(moment.tickets.len(), truth.state.tickets.len());
    assert!(
        !moment.events.is_empty(),
        "and the minutes after it, for playback"
    );
    drop(commands);
    shutdown.trigger();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
