//! The feed gateway, layered like tokio's mini-redis: listener (accept loop, connection
//! limit), handler (one task per socket), hub (fan-out, `net::hub`), source (`net::source`),
//! shutdown (a watch channel every task observes; `serve` returns when all have drained).

pub mod commands;
pub mod handler;
pub mod history_api;
pub mod http;
pub mod ingest;
pub mod stream;
pub mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use self::http::{RequestHead, accept_upgrade, constant_time_eq, read_head, respond};
use self::stream::Conn;
use super::hub::Hub;
use super::metrics::Metrics;
use crate::protocol::session::{FEED_PATH, SnapshotFormat};

/// Gateway settings. Defaults are the production values.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The history `GET /v1/history` reads (none: 404).
    pub history_dir: Option<std::path::PathBuf>,
    /// Bearer token every feed client must present.
    pub token: String,
    /// When set, browsers (requests with an `Origin` header) must come from one of these.
    pub allowed_origins: Vec<String>,
    pub max_clients: usize,
    /// Most simultaneous connections from one address (one host cannot take every slot).
    pub max_clients_per_address: usize,
    /// Server heartbeat interval: walls call the feed stale after two missed heartbeats.
    pub heartbeat: Duration,
    /// A client silent this long (no message, no pong) is dropped.
    pub client_silence: Duration,
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
    /// Tokens that may POST events to `/v1/events`.
    pub producer_tokens: Vec<String>,
    /// Largest `/v1/events` body accepted (over it: 413).
    pub max_ingest_bytes: usize,
    /// On a backbone: ingested events are published to JetStream (else to the hub).
    pub publisher: Option<super::backbone::Publisher>,
    /// Retried ingest batches (`Idempotency-Key`) answered from here.
    pub ingest_keys: Arc<ingest::IdempotencyCache>,
    /// Serve TLS (`wss://`, `https://`) with these settings.
    pub tls: Option<Tls>,
    /// Named tokens with roles (`--tokens FILE`), besides `token` and `producer_tokens`.
    pub tokens_file: Option<Arc<tokens::Tokens>>,
    /// Tokens that may read the feed and command (`--operator-token`).
    pub operator_tokens: Vec<String>,
    /// How commands are checked, logged and carried out; `None`: this gateway takes none.
    pub commands: Option<Arc<commands::CommandDesk>>,
    /// Tell clients the feed is simulated (`Hello::simulated`).
    pub simulated: bool,
}

/// The gateway's TLS settings.
#[derive(Clone)]
pub struct Tls(pub tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    pub fn new(config: Arc<tokio_rustls::rustls::ServerConfig>) -> Self {
        Self(tokio_rustls::TlsAcceptor::from(config))
    }
}

impl GatewayConfig {
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            allowed_origins: Vec::new(),
            max_clients: 256,
            max_clients_per_address: 64,
            heartbeat: Duration::from_millis(500),
            client_silence: Duration::from_secs(15),
            max_client_message_bytes: 64 * 1024,
            max_batch_events: 2_048,
            conflate_after_events: 8_192,
            send_timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(10),
            producer_tokens: Vec::new(),
            max_ingest_bytes: 1024 * 1024,
            publisher: None,
            ingest_keys: Arc::default(),
            tls: None,
            tokens_file: None,
            operator_tokens: Vec::new(),
            commands: None,
            history_dir: None,
            simulated: false,
        }
    }

    /// Who presents `token` (compared in constant time), if anyone.
    pub fn access(&self, token: &str) -> Option<tokens::Access> {
        let flag = |known: &str, name: String, role| {
            (!known.is_empty() && constant_time_eq(known.as_bytes(), token.as_bytes()))
                .then_some(tokens::Access { name, role })
        };
        let mut found = flag(&self.token, "--token".into(), tokens::Role::Viewer);
        for (i, o) in self.operator_tokens.iter().enumerate() {
            found = found.or_else(|| {
                flag(
                    o,
                    format!("--operator-token #{}", i + 1),
                    tokens::Role::Operator,
                )
            });
        }
        for (i, p) in self.producer_tokens.iter().enumerate() {
            found = found.or_else(|| {
                flag(
                    p,
                    format!("--producer-token #{}", i + 1),
                    tokens::Role::Producer,
                )
            });
        }
        found.or_else(|| self.tokens_file.as_ref().and_then(|t| t.lookup(token)))
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

/// Connections per client address.
type PerAddress = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One connection's place in its address's count, given back when dropped.
struct AddressSlot {
    map: PerAddress,
    ip: std::net::IpAddr,
}

impl AddressSlot {
    /// A place for `ip` if it has fewer than `max` connections.
    fn take(map: &PerAddress, ip: std::net::IpAddr, max: usize) -> Option<Self> {
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Self {
            map: Arc::clone(map),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
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
    let per_address = PerAddress::default();
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
        let from_here = AddressSlot::take(&per_address, peer.ip(), cfg.max_clients_per_address);
        let permit = Arc::clone(&limit).try_acquire_owned().ok();
        let (hub, cfg, shutdown, done) = (
            Arc::clone(&hub),
            Arc::clone(&cfg),
            shutdown.clone(),
            done_tx.clone(),
        );
        tokio::spawn(async move {
            let _done = done;
            // TLS first, so even the over-the-limit answer reaches a TLS client readably.
            let mut conn = match &cfg.tls {
                None => Conn::Plain(stream),
                Some(tls) => {
                    match tokio::time::timeout(cfg.head_timeout, tls.0.accept(stream)).await {
                        Ok(Ok(s)) => Conn::Tls(Box::new(s)),
                        Ok(Err(e)) => {
                            Metrics::inc(&hub.metrics.tls_failures);
                            tracing::info!(target: "datawall::gateway", "{peer}: TLS handshake failed ({e}); a plain ws:// or http:// client on the TLS port?");
                            return;
                        }
                        Err(_) => {
                            Metrics::inc(&hub.metrics.tls_failures);
                            tracing::info!(target: "datawall::gateway", "{peer}: TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            match (permit, from_here) {
                (Some(_permit), Some(_slot)) => {
                    handle_connection(conn, peer, hub, cfg, shutdown).await
                }
                (_, None) => {
                    Metrics::inc(&hub.metrics.connections_rejected_limit);
                    tracing::info!(target: "datawall::gateway", "{peer}: over {} connections from one address", cfg.max_clients_per_address);
                    let _ = respond(
                        &mut conn,
                        "503 Service Unavailable",
                        "text/plain",
                        &[("Retry-After", "5")],
                        &format!(
                            "too many connections from your address (at most {}); close some and retry\n",
                            cfg.max_clients_per_address
                        ),
                    )
                    .await;
                }
                (None, Some(_)) => {
                    Metrics::inc(&hub.metrics.connections_rejected_limit);
                    let _ = respond(
                        &mut conn,
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
async fn bad_request(stream: &mut Conn, why: &str) {
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

/// What the feed URL asks for: where to resume, and how the snapshot travels.
fn parse_asked(head: &RequestHead) -> Result<handler::Asked, String> {
    let format = match head.query_param("format") {
        None => SnapshotFormat::Json,
        Some(f) => SnapshotFormat::parse(f).ok_or_else(|| {
            format!("format={f} is not a snapshot format; use format=json (the default) or format=binary")
        })?,
    };
    Ok(handler::Asked {
        resume: parse_resume(head),
        format,
    })
}

async fn handle_connection(
    mut stream: Conn,
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
            let caught_up = hub.caught_up();
            let backbone = match (cfg.publisher.is_some(), hub.backbone_down_since_ms()) {
                (false, _) => "\"embedded\"".to_owned(),
                (true, None) => "\"up\"".to_owned(),
                (true, Some(t)) => format!("{{\"down_since_ms\":{t}}}"),
            };
            let body = format!(
                "{{\"status\":\"{}\",\"epoch\":{},\"last_seq\":{},\"stream_seq\":{},\"backbone\":{backbone},\"clients\":{}}}\n",
                if caught_up { "ok" } else { "catching_up" },
                hub.epoch,
                hub.last_seq(),
                hub.stream_seq(),
                hub.metrics.client_lags(0).len()
            );
            let status = if caught_up {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            respond(&mut stream, status, "application/json", &[], &body).await
        }
        (_, ingest::INGEST_PATH) => {
            return ingest::handle(stream, peer, head, hub, cfg).await;
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
        ("GET", history_api::HISTORY_PATH) => {
            let Some(_) = authorize_reader(&mut stream, peer, &head, &hub, &cfg).await else {
                return;
            };
            return history_api::handle(stream, peer, head, hub, cfg).await;
        }
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

/// The access of a request that reads the feed or its history, or `None` after answering
/// 401 (no or a wrong token) or 403 (a producer's token).
async fn authorize_reader(
    stream: &mut Conn,
    peer: SocketAddr,
    head: &RequestHead,
    hub: &Hub,
    cfg: &GatewayConfig,
) -> Option<tokens::Access> {
    let access = head.bearer_token().and_then(|t| cfg.access(t));
    match access {
        Some(a) if a.role.may_read_feed() => Some(a),
        Some(a) => {
            Metrics::inc(&hub.metrics.auth_failures);
            tracing::warn!(target: "datawall::gateway", "{peer}: {} ({:?}) may not read the feed", a.name, a.role);
            let _ = respond(
                stream,
                "403 Forbidden",
                "text/plain",
                &[],
                "this token may not read the feed; use a viewer or operator token\n",
            )
            .await;
            None
        }
        None => {
            Metrics::inc(&hub.metrics.auth_failures);
            tracing::warn!(target: "datawall::gateway", "{peer}: rejected: missing or wrong token");
            let _ = respond(
                stream,
                "401 Unauthorized",
                "text/plain",
                &[("WWW-Authenticate", "Bearer")],
                "a valid token is required: send `Authorization: Bearer TOKEN` or `?token=TOKEN`\n",
            )
            .await;
            None
        }
    }
}

async fn feed(
    mut stream: Conn,
    peer: SocketAddr,
    head: RequestHead,
    hub: Arc<Hub>,
    cfg: Arc<GatewayConfig>,
    shutdown: watch::Receiver<bool>,
) {
    let Some(access) = authorize_reader(&mut stream, peer, &head, &hub, &cfg).await else {
        return;
    };
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
    let asked = match parse_asked(&head) {
        Ok(a) => a,
        Err(why) => {
            bad_request(&mut stream, &why).await;
            return;
        }
    };
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
    tracing::info!(target: "datawall::gateway", "{peer}: {} ({:?}) connected", access.name, access.role);
    handler::run_session(ws, hub, cfg, asked, shutdown, peer.to_string(), access).await;
}
