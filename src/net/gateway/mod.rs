//! The feed gateway, layered like tokio's mini-redis: listener (accept loop, connection
//! limit), handler (one task per socket), hub (fan-out, `net::hub`), source (`net::source`),
//! shutdown (a watch channel every task observes; `serve` returns when all have drained).

pub mod handler;
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use self::http::{RequestHead, accept_upgrade, constant_time_eq, read_head, respond};
use super::hub::Hub;
use super::metrics::Metrics;
use crate::protocol::session::FEED_PATH;

/// Gateway settings. Defaults are the production values.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Bearer token every feed client must present.
    pub token: String,
    /// When set, browsers (requests with an `Origin` header) must come from one of these.
    pub allowed_origins: Vec<String>,
    pub max_clients: usize,
    /// Server heartbeat interval; a client silent for 3 intervals is dropped.
    pub heartbeat: Duration,
    /// Largest message (and frame) a client may send.
    pub max_client_message_bytes: usize,
    /// Events per delta message at most.
    pub max_batch_events: usize,
    /// A client further behind than this gets superseded volunteer fixes conflated.
    pub conflate_after_events: u64,
    /// A single send blocked longer than this disconnects the client.
    pub send_timeout: Duration,
    /// Time allowed for the HTTP request head.
    pub head_timeout: Duration,
}

impl GatewayConfig {
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            allowed_origins: Vec::new(),
            max_clients: 256,
            heartbeat: Duration::from_secs(5),
            max_client_message_bytes: 64 * 1024,
            max_batch_events: 2_048,
            conflate_after_events: 8_192,
            send_timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(10),
        }
    }

    fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.max_client_message_bytes))
            .max_frame_size(Some(self.max_client_message_bytes))
            .write_buffer_size(128 * 1024)
            // One snapshot chunk or delta batch at most is buffered beyond the socket.
            .max_write_buffer_size(32 * 1024 * 1024)
    }
}

/// Stops the gateway: every session says goodbye and `serve` returns.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Sender<bool>);

impl Shutdown {
    pub fn new() -> (Self, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (Self(tx), rx)
    }

    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// Accept connections until `shutdown` fires, then wait for every session to finish.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    cfg: GatewayConfig,
    shutdown: watch::Receiver<bool>,
) {
    let cfg = Arc::new(cfg);
    let limit = Arc::new(Semaphore::new(cfg.max_clients));
    // Each connection task holds a sender; when all are dropped, every task has finished.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut stop = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::error!(target: "datawall::gateway", "accept failed: {e}; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let permit = Arc::clone(&limit).try_acquire_owned().ok();
        let (hub, cfg, shutdown, done) = (
            Arc::clone(&hub),
            Arc::clone(&cfg),
            shutdown.clone(),
            done_tx.clone(),
        );
        tokio::spawn(async move {
            let _done = done;
            match permit {
                Some(_permit) => handle_connection(stream, peer, hub, cfg, shutdown).await,
                None => {
                    Metrics::inc(&hub.metrics.connections_rejected_limit);
                    let mut stream = stream;
                    let _ = respond(
                        &mut stream,
                        "503 Service Unavailable",
                        "text/plain",
                        &[("Retry-After", "5")],
                        "connection limit reached; retry in a few seconds\n",
                    )
                    .await;
                }
            }
        });
    }
    drop(done_tx);
    let _ = done_rx.recv().await;
    tracing::debug!(target: "datawall::gateway", "gateway stopped");
}

/// Answer a request that cannot be served, saying why.
async fn bad_request(stream: &mut TcpStream, why: &str) {
    let _ = respond(
        stream,
        "400 Bad Request",
        "text/plain",
        &[],
        &format!("{why}\n"),
    )
    .await;
}

fn parse_resume(head: &RequestHead) -> Option<(u64, u64)> {
    let epoch = head.query_param("resume_epoch")?.parse().ok()?;
    let seq = head.query_param("last_seq")?.parse().ok()?;
    Some((epoch, seq))
}

async fn handle_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    hub: Arc<Hub>,
    cfg: Arc<GatewayConfig>,
    shutdown: watch::Receiver<bool>,
) {
    let head = match read_head(&mut stream, cfg.head_timeout).await {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(target: "datawall::gateway", "{peer}: {e}");
            bad_request(&mut stream, &e.to_string()).await;
            return;
        }
    };
    let result = match (head.method.as_str(), head.path.as_str()) {
        ("GET", "/healthz") => {
            let body = format!(
                "{{\"status\":\"ok\",\"epoch\":{},\"last_seq\":{},\"clients\":{}}}\n",
                hub.epoch,
                hub.last_seq(),
                hub.metrics.client_lags(0).len()
            );
            respond(&mut stream, "200 OK", "application/json", &[], &body).await
        }
        ("GET", "/metrics") => {
            let body = hub.render_metrics();
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4",
                &[],
                &body,
            )
            .await
        }
        (_, FEED_PATH) => return feed(stream, peer, head, hub, cfg, shutdown).await,
        _ => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                &[],
                "not found; the feed is at /v1/feed\n",
            )
            .await
        }
    };
    if let Err(e) = result {
        tracing::debug!(target: "datawall::gateway", "{peer}: {e}");
    }
}

async fn feed(
    mut stream: TcpStream,
    peer: SocketAddr,
    head: RequestHead,
    hub: Arc<Hub>,
    cfg: Arc<GatewayConfig>,
    shutdown: watch::Receiver<bool>,
) {
    let authorized = head
        .bearer_token()
        .is_some_and(|t| constant_time_eq(t.as_bytes(), cfg.token.as_bytes()));
    if !authorized {
        Metrics::inc(&hub.metrics.auth_failures);
        tracing::warn!(target: "datawall::gateway", "{peer}: rejected: missing or wrong token");
        let _ = respond(
            &mut stream,
            "401 Unauthorized",
            "text/plain",
            &[("WWW-Authenticate", "Bearer")],
            "a valid token is required: send `Authorization: Bearer TOKEN` or `?token=TOKEN`\n",
        )
        .await;
        return;
    }
    if let Some(origin) = head.header("origin")
        && !cfg.allowed_origins.is_empty()
        && !cfg.allowed_origins.iter().any(|o| o == origin)
    {
        Metrics::inc(&hub.metrics.origin_rejections);
        let _ = respond(
            &mut stream,
            "403 Forbidden",
            "text/plain",
            &[],
            "origin not allowed\n",
        )
        .await;
        return;
    }
    if !head.is_websocket_upgrade() {
        let _ = respond(
            &mut stream,
            "426 Upgrade Required",
            "text/plain",
            &[("Upgrade", "websocket")],
            "the feed is a websocket; connect with a websocket client\n",
        )
        .await;
        return;
    }
    if let Err(e) = accept_upgrade(&mut stream, &head).await {
        bad_request(&mut stream, &e).await;
        return;
    }
    let ws = WebSocketStream::from_partially_read(
        stream,
        head.rest.clone(),
        Role::Server,
        Some(cfg.websocket_config()),
    )
    .await;
    handler::run_session(
        ws,
        hub,
        cfg,
        parse_resume(&head),
        shutdown,
        peer.to_string(),
    )
    .await;
}
