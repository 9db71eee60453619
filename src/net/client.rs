//! The feed client: connect with a token (optionally resuming), read session messages, and
//! mirror the server's state from snapshot + sequenced deltas with gap detection.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::model::{ApplyError, Change, County, LiveState};
use crate::protocol::Event;
use crate::protocol::entities::{Incident, Ticket, Volunteer};
use crate::protocol::session::{ClientMsg, Epoch, Seq, ServerMsg};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: WsError },
    #[error("cannot connect to {url}: {source}; the gateway may be serving TLS: use wss://")]
    PlainToTls { url: String, source: WsError },
    #[error("TLS settings: {0}")]
    Tls(#[from] super::tls::TlsError),
    #[error("the server refused the connection: HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("websocket error: {0}")]
    Socket(#[from] WsError),
    #[error("the server closed the connection{}", .0.as_ref().map(|f| format!(": {} {}", f.code, f.reason)).unwrap_or_default())]
    Closed(Option<CloseFrame>),
    #[error("message from the server did not parse: {0}")]
    Decode(#[from] serde_json::Error),
}

/// One websocket connection to the gateway.
pub struct FeedConnection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl FeedConnection {
    /// Connect to `url` (e.g. `ws://127.0.0.1:8710/v1/feed`) with a bearer token, optionally
    /// resuming after `last_seq` of `epoch`.
    pub async fn connect(
        url: &str,
        token: &str,
        resume: Option<(Epoch, Seq)>,
    ) -> Result<Self, ClientError> {
        Self::connect_with(url, token, resume, None).await
    }

    /// Like [`FeedConnection::connect`]; a `wss://` URL is verified against `tls` (built by
    /// [`super::tls::client_config`], e.g. with `--ca`), or the system's roots when `None`.
    pub async fn connect_with(
        url: &str,
        token: &str,
        resume: Option<(Epoch, Seq)>,
        tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    ) -> Result<Self, ClientError> {
        let full = match resume {
            Some((epoch, seq)) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}resume_epoch={epoch}&last_seq={seq}")
            }
            None => url.to_owned(),
        };
        let mut request =
            full.as_str()
                .into_client_request()
                .map_err(|source| ClientError::Connect {
                    url: url.to_owned(),
                    source,
                })?;
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
            request.headers_mut().insert("authorization", v);
        }
        let secure = url.starts_with("wss://");
        let connector = match (secure, tls) {
            (true, Some(c)) => Some(tokio_tungstenite::Connector::Rustls(c)),
            (true, None) => Some(tokio_tungstenite::Connector::Rustls(
                super::tls::client_config(None)?,
            )),
            (false, _) => None,
        };
        let connected =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector).await;
        match connected {
            Ok((ws, _)) => Ok(Self { ws }),
            Err(WsError::Http(resp)) => Err(ClientError::Refused {
                status: resp.status().as_u16(),
                body: resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                    .unwrap_or_default(),
            }),
            // A TLS server answers a plain HTTP request with an alert, or hangs up.
            Err(
                source @ (WsError::HttpFormat(_)
                | WsError::Protocol(_)
                | WsError::Io(_)
                | WsError::ConnectionClosed
                | WsError::AlreadyClosed),
            ) if !secure && !is_refused(&source) => Err(ClientError::PlainToTls {
                url: url.to_owned(),
                source,
            }),
            Err(source) => Err(ClientError::Connect {
                url: url.to_owned(),
                source,
            }),
        }
    }

    /// The next session message (control frames are handled underneath).
    pub async fn next_msg(&mut self) -> Result<ServerMsg, ClientError> {
        loop {
            match self.ws.next().await {
                None => return Err(ClientError::Closed(None)),
                Some(Err(e)) => return Err(ClientError::Socket(e)),
                Some(Ok(Message::Text(t))) => return Ok(decode_server_msg(t.as_str())?),
                Some(Ok(Message::Close(frame))) => return Err(ClientError::Closed(frame)),
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next raw text message, undecoded (benchmarks, diagnostics).
    pub async fn next_text(&mut self) -> Result<String, ClientError> {
        loop {
            match self.ws.next().await {
                None => return Err(ClientError::Closed(None)),
                Some(Err(e)) => return Err(ClientError::Socket(e)),
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
                Some(Ok(Message::Close(frame))) => return Err(ClientError::Closed(frame)),
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn send(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        let text = serde_json::to_string(msg)?;
        Ok(self.ws.send(Message::text(text)).await?)
    }

    /// Send raw text (tests of the server's limits).
    pub async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        Ok(self.ws.send(Message::text(text)).await?)
    }

    /// Connect, read the `hello` (which says how the county is scaled) and hang up.
    pub async fn probe_hello(
        url: &str,
        token: &str,
        tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    ) -> Result<crate::protocol::session::Hello, ClientError> {
        let mut conn = Self::connect_with(url, token, None, tls).await?;
        let msg = conn.next_msg().await?;
        conn.close().await;
        match msg {
            ServerMsg::Hello(h) => Ok(h),
            _ => Err(ClientError::Closed(None)),
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

fn is_refused(e: &WsError) -> bool {
    matches!(e, WsError::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::HostUnreachable
            | std::io::ErrorKind::NetworkUnreachable
            | std::io::ErrorKind::AddrNotAvailable
    ))
}

/// Decode a server message. A delta whose batch holds a malformed event still yields its
/// good events: the bad ones become [`Event::Unknown`] and are counted by the mirror.
pub fn decode_server_msg(text: &str) -> Result<ServerMsg, serde_json::Error> {
    match serde_json::from_str::<ServerMsg>(text) {
        Ok(m) => Ok(m),
        Err(e) => {
            #[derive(serde::Deserialize)]
            struct LooseDelta {
                #[serde(rename = "type")]
                kind: String,
                epoch: Epoch,
                #[serde(default)]
                prev_seq: Option<Seq>,
                first_seq: Seq,
                last_seq: Seq,
                #[serde(default)]
                conflated: u32,
                events: Vec<(Seq, serde_json::Value)>,
            }
            let loose: LooseDelta = serde_json::from_str(text).map_err(|_| e)?;
            if loose.kind != "delta" {
                return serde_json::from_str::<ServerMsg>(text);
            }
            Ok(ServerMsg::Delta(crate::protocol::session::Delta {
                epoch: loose.epoch,
                prev_seq: loose.prev_seq,
                first_seq: loose.first_seq,
                last_seq: loose.last_seq,
                conflated: loose.conflated,
                events: loose
                    .events
                    .into_iter()
                    .map(|(seq, v)| (seq, serde_json::from_value(v).unwrap_or(Event::Unknown)))
                    .collect(),
            }))
        }
    }
}

/// Something the mirror could not follow; the client should reconnect (resume) or resync.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MirrorError {
    #[error("gap: at seq {expected}, got a batch that follows {got}")]
    Gap { expected: Seq, got: Seq },
    #[error("message for epoch {got} while following epoch {expected}")]
    WrongEpoch { expected: Epoch, got: Epoch },
    #[error("snapshot is inconsistent: {0}")]
    BadSnapshot(String),
    #[error("delta before any snapshot or resume point")]
    NotSynced,
}

/// What a handled message did.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    Hello,
    SnapshotProgress,
    SnapshotLoaded {
        seq: Seq,
    },
    Applied {
        events: usize,
        rejected: usize,
        unknown: usize,
        /// The events the model took, each with what it changed: the one account of what
        /// the client learnt (rejected and unknown events are not in it).
        accepted: Vec<Accepted>,
    },
    Stale,
    Heartbeat,
    Notice(String),
    CommandResult(crate::protocol::command::CommandResult),
}

/// An event the mirror's model accepted, with its seq and the model's account of the change.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub seq: Seq,
    pub event: Event,
    pub change: Change,
}

#[derive(Default)]
struct SnapshotBuf {
    seq: Seq,
    tickets: Vec<Ticket>,
    volunteers: Vec<Volunteer>,
    incidents: Vec<Incident>,
    alerts: Vec<crate::protocol::entities::Alert>,
    annotations: Vec<crate::protocol::entities::Annotation>,
}

/// A client-side copy of the server's state, kept in step by session messages.
pub struct Mirror {
    county: Arc<County>,
    pub state: Option<LiveState>,
    pub epoch: Option<Epoch>,
    /// Last sequence number applied (or covered by the loaded snapshot).
    pub last_seq: Seq,
    snapshot: Option<SnapshotBuf>,
    /// Deltas that arrived while a snapshot was loading.
    buffered: Vec<crate::protocol::session::Delta>,
    pub rejected: u64,
    pub unknown: u64,
    pub last_rejection: Option<ApplyError>,
}

impl Mirror {
    pub fn new(county: Arc<County>) -> Self {
        Self {
            county,
            state: None,
            epoch: None,
            last_seq: 0,
            snapshot: None,
            buffered: Vec::new(),
            rejected: 0,
            unknown: 0,
            last_rejection: None,
        }
    }

    /// Where to resume from after a disconnect.
    pub fn resume_point(&self) -> Option<(Epoch, Seq)> {
        match (self.epoch, &self.state) {
            (Some(e), Some(_)) => Some((e, self.last_seq)),
            _ => None,
        }
    }

    fn check_epoch(&self, got: Epoch) -> Result<(), MirrorError> {
        match self.epoch {
            Some(expected) if expected != got => Err(MirrorError::WrongEpoch { expected, got }),
            _ => Ok(()),
        }
    }

    pub fn handle(&mut self, msg: ServerMsg) -> Result<Handled, MirrorError> {
        match msg {
            ServerMsg::Hello(h) => {
                if self.epoch != Some(h.epoch) || !h.resumed {
                    // A new history, or the server will send a snapshot: start clean.
                    self.state = None;
                    self.last_seq = 0;
                }
                self.epoch = Some(h.epoch);
                Ok(Handled::Hello)
            }
            ServerMsg::SnapshotBegin(b) => {
                self.check_epoch(b.epoch)?;
                self.snapshot = Some(SnapshotBuf {
                    seq: b.seq,
                    ..Default::default()
                });
                Ok(Handled::SnapshotProgress)
            }
            ServerMsg::SnapshotChunk(c) => {
                self.check_epoch(c.epoch)?;
                let buf = self
                    .snapshot
                    .as_mut()
                    .filter(|b| b.seq == c.seq)
                    .ok_or_else(|| {
                        MirrorError::BadSnapshot("chunk without a matching begin".into())
                    })?;
                buf.tickets.extend(c.tickets);
                buf.volunteers.extend(c.volunteers);
                buf.incidents.extend(c.incidents);
                buf.alerts.extend(c.alerts);
                buf.annotations.extend(c.annotations);
                Ok(Handled::SnapshotProgress)
            }
            ServerMsg::SnapshotEnd(end) => {
                self.check_epoch(end.epoch)?;
                let buf = self
                    .snapshot
                    .take()
                    .filter(|b| b.seq == end.seq)
                    .ok_or_else(|| {
                        MirrorError::BadSnapshot("end without a matching begin".into())
                    })?;
                let state = LiveState::from_parts(
                    Arc::clone(&self.county),
                    buf.tickets,
                    buf.volunteers,
                    buf.incidents,
                    buf.alerts,
                    buf.annotations,
                    end.latest_event_ms,
                )
                .map_err(|e| MirrorError::BadSnapshot(e.to_string()))?;
                self.state = Some(state);
                self.last_seq = end.seq;
                // Apply what arrived meanwhile, skipping what the snapshot already covers.
                for d in std::mem::take(&mut self.buffered) {
                    self.apply_delta(d)?;
                }
                Ok(Handled::SnapshotLoaded { seq: end.seq })
            }
            ServerMsg::Delta(d) => {
                self.check_epoch(d.epoch)?;
                if self.snapshot.is_some() {
                    self.buffered.push(d);
                    return Ok(Handled::SnapshotProgress);
                }
                self.apply_delta(d)
            }
            ServerMsg::Heartbeat(_) => Ok(Handled::Heartbeat),
            ServerMsg::Notice(n) => Ok(Handled::Notice(n.code)),
            ServerMsg::CommandResult(r) => Ok(Handled::CommandResult(r)),
        }
    }

    fn apply_delta(&mut self, d: crate::protocol::session::Delta) -> Result<Handled, MirrorError> {
        let state = self.state.as_mut().ok_or(MirrorError::NotSynced)?;
        if d.last_seq <= self.last_seq {
            return Ok(Handled::Stale);
        }
        if d.follows() > self.last_seq {
            return Err(MirrorError::Gap {
                expected: self.last_seq,
                got: d.follows(),
            });
        }
        let (mut rejected, mut unknown) = (0, 0);
        let mut accepted = Vec::with_capacity(d.events.len());
        let last_seq = d.last_seq;
        for (seq, event) in d.events {
            if seq <= self.last_seq {
                continue;
            }
            match state.apply(&event) {
                Ok(change) => accepted.push(Accepted { seq, event, change }),
                Err(ApplyError::UnknownEventType) => unknown += 1,
                Err(e) => {
                    rejected += 1;
                    self.last_rejection = Some(e);
                }
            }
        }
        self.last_seq = last_seq;
        self.rejected += rejected as u64;
        self.unknown += unknown as u64;
        Ok(Handled::Applied {
            events: accepted.len(),
            rejected,
            unknown,
            accepted,
        })
    }
}
