//! `POST /v1/events`: HTTP ingest for systems that cannot speak NATS. The body is NDJSON
//! (one event a line, as in docs/PROTOCOL.md); a producer token is required. Every line is
//! decoded and checked against the gateway's model in order; the good ones are published
//! (to the hub, or to JetStream on a backbone) and the answer names each rejected line and
//! why. An `Idempotency-Key` makes a retried batch count once.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::stream::Conn;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::GatewayConfig;
use super::http::{RequestHead, respond};
use super::tokens::Role;
use crate::net::backbone::{self, LineError};
use crate::net::hub::Hub;
use crate::net::metrics::Metrics;
use crate::protocol::{Event, TimestampMs};

pub const INGEST_PATH: &str = "/v1/events";
/// Idempotency keys remembered (oldest forgotten first).
const KEYS_KEPT: usize = 10_000;
/// Time allowed to receive the body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The answer to one ingest request.
#[derive(Clone, Debug, Serialize)]
pub struct IngestReply {
    pub accepted: usize,
    pub rejected: Vec<LineError>,
    /// This key's batch was already taken; the first answer is repeated.
    pub duplicate: bool,
    /// On a backbone: the stream message that holds the accepted events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_seq: Option<u64>,
}

/// Answers of recent batches by `Idempotency-Key`; `None` while the key's batch is being
/// taken.
#[derive(Debug, Default)]
pub struct IdempotencyCache {
    inner: Mutex<Keys>,
}

/// Answers by key (`None`: being taken), and the keys oldest first.
type Keys = (HashMap<String, Option<IngestReply>>, VecDeque<String>);

/// What the cache says about a key.
enum Claim {
    /// Nobody has it: this request takes the batch.
    Mine,
    /// Another request with this key is being taken right now.
    InFlight,
    /// Taken before: its answer.
    Done(IngestReply),
}

impl IdempotencyCache {
    /// Look up `key` and, when it is new, claim it, in one step.
    fn claim(&self, key: &str) -> Claim {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *g;
        match map.get(key) {
            Some(Some(reply)) => Claim::Done(reply.clone()),
            Some(None) => Claim::InFlight,
            None => {
                map.insert(key.to_owned(), None);
                order.push_back(key.to_owned());
                while order.len() > KEYS_KEPT {
                    if let Some(old) = order.pop_front() {
                        map.remove(&old);
                    }
                }
                Claim::Mine
            }
        }
    }

    /// The claimed key's batch was taken (`Some`) or failed and may be retried (`None`).
    fn finish(&self, key: &str, reply: Option<IngestReply>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match reply {
            Some(r) => {
                if let Some(slot) = g.0.get_mut(key) {
                    *slot = Some(r);
                }
            }
            None => {
                g.0.remove(key);
            }
        }
    }
}

async fn answer(stream: &mut Conn, status: &str, body: &str) {
    let _ = respond(stream, status, "application/json", &[], body).await;
}

/// Read and drop what the client sends after an early answer (up to `limit` bytes, for a
/// few seconds), so closing the socket does not reset it before the client reads the answer.
async fn discard_body(stream: &mut Conn, limit: usize) {
    let drain = async {
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0;
        while total < limit {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}

/// An early answer to a request whose body was not read.
async fn refuse(
    stream: &mut Conn,
    head: &RequestHead,
    status: &str,
    extra: &[(&str, &str)],
    why: &str,
) {
    let _ = respond(stream, status, "application/json", extra, &error_json(why)).await;
    let length = head
        .header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .saturating_sub(head.rest.len());
    discard_body(stream, length.min(64 * 1024 * 1024)).await;
}

fn error_json(why: &str) -> String {
    serde_json::json!({ "error": why }).to_string() + "\n"
}

pub async fn handle(
    mut stream: Conn,
    peer: SocketAddr,
    head: RequestHead,
    hub: Arc<Hub>,
    cfg: Arc<GatewayConfig>,
) {
    if head.method != "POST" {
        refuse(
            &mut stream,
            &head,
            "405 Method Not Allowed",
            &[("Allow", "POST")],
            "POST NDJSON events here",
        )
        .await;
        return;
    }
    let access = head.bearer_token().and_then(|t| cfg.access(t));
    let producer = access.as_ref().filter(|a| a.role == Role::Producer);
    if producer.is_none() {
        Metrics::inc(&hub.metrics.auth_failures);
        if let Some(a) = &access {
            tracing::warn!(target: "datawall::ingest", "{peer}: {} ({:?}) tried to publish events", a.name, a.role);
            refuse(
                &mut stream,
                &head,
                "403 Forbidden",
                &[],
                "this token may read the feed but not publish; use a producer token",
            )
            .await;
        } else {
            refuse(
                &mut stream,
                &head,
                "401 Unauthorized",
                &[("WWW-Authenticate", "Bearer")],
                "a producer token is required: Authorization: Bearer TOKEN",
            )
            .await;
        }
        return;
    }
    let Some(length) = head
        .header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok())
    else {
        answer(
            &mut stream,
            "411 Length Required",
            &error_json("send Content-Length (chunked bodies are not accepted)"),
        )
        .await;
        return;
    };
    if length > cfg.max_ingest_bytes {
        let why = format!(
            "body of {length} bytes is over the limit of {} bytes; split the batch",
            cfg.max_ingest_bytes
        );
        refuse(&mut stream, &head, "413 Content Too Large", &[], &why).await;
        return;
    }
    let key = head
        .header("idempotency-key")
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    let mut body = head.rest.clone();
    body.truncate(length);
    if body.len() < length {
        let mut rest = vec![0u8; length - body.len()];
        match tokio::time::timeout(BODY_TIMEOUT, stream.read_exact(&mut rest)).await {
            Ok(Ok(_)) => body.extend_from_slice(&rest),
            _ => {
                answer(
                    &mut stream,
                    "400 Bad Request",
                    &error_json("the body ended before Content-Length bytes"),
                )
                .await;
                return;
            }
        }
    }
    if let Some(k) = &key {
        match cfg.ingest_keys.claim(k) {
            Claim::Mine => {}
            Claim::InFlight => {
                answer(
                    &mut stream,
                    "409 Conflict",
                    &error_json(
                        "a batch with this Idempotency-Key is being taken now; retry in a moment",
                    ),
                )
                .await;
                return;
            }
            Claim::Done(mut first) => {
                first.duplicate = true;
                answer(
                    &mut stream,
                    "200 OK",
                    &(serde_json::to_string(&first).unwrap_or_default() + "\n"),
                )
                .await;
                return;
            }
        }
    }
    let taken = ingest(&hub, &cfg, &body, key.as_deref()).await;
    if let Some(k) = &key {
        cfg.ingest_keys.finish(k, taken.as_ref().ok().cloned());
    }
    let reply = match taken {
        Ok(r) => r,
        Err((status, why)) => {
            tracing::warn!(target: "datawall::ingest", "{peer}: {why}");
            answer(&mut stream, status, &error_json(&why)).await;
            return;
        }
    };
    let who = producer.map(|a| a.name.as_str()).unwrap_or_default();
    tracing::info!(target: "datawall::ingest", "{peer} {who}: {} events accepted, {} lines rejected", reply.accepted, reply.rejected.len());
    answer(
        &mut stream,
        "200 OK",
        &(serde_json::to_string(&reply).unwrap_or_default() + "\n"),
    )
    .await;
}

/// Check every line against the model and publish the good ones.
/// How far ahead of the gateway's feed clock a producer's event may be stamped.
pub const MAX_AHEAD_MS: TimestampMs = 3_600_000;

/// What a producer may not send, whatever the model says: alerts, their acknowledgements and
/// operators' notes (the gateway's own, from its alert engine and its operators), and events stamped far in
/// the future (a wrong clock would lock the entity: every later, true event would look older).
pub fn producer_may_send(e: &Event, now_ms: TimestampMs) -> Result<(), String> {
    if matches!(
        e,
        Event::AlertRaised(_)
            | Event::AlertEscalated(_)
            | Event::AlertAcked(_)
            | Event::AnnotationAdded(_)
            | Event::AnnotationRemoved(_)
    ) {
        return Err(format!(
            "{} comes from the gateway's alert engine and its operators, not from producers",
            e.type_name()
        ));
    }
    within_clock(e, now_ms, "the gateway's clock")
}

/// An event stamped more than [`MAX_AHEAD_MS`] after `now_ms` (`clock` names it in the reason)
/// is refused: a wrong clock would lock the entity.
pub fn within_clock(e: &Event, now_ms: TimestampMs, clock: &str) -> Result<(), String> {
    match e.at_ms() {
        Some(at) if at > now_ms.saturating_add(MAX_AHEAD_MS) => Err(format!(
            "at_ms {at} is {:.1} h ahead of {clock} ({now_ms}); check the producer's clock",
            (at - now_ms) as f64 / 3_600_000.0
        )),
        _ => Ok(()),
    }
}

async fn ingest(
    hub: &Hub,
    cfg: &GatewayConfig,
    body: &[u8],
    key: Option<&str>,
) -> Result<IngestReply, (&'static str, String)> {
    if !hub.caught_up() {
        return Err((
            "503 Service Unavailable",
            "the gateway is catching up with the backbone; retry in a few seconds".into(),
        ));
    }
    let mut rejected = Vec::new();
    let mut good = Vec::new();
    let now = hub.now_ms();
    for (line, parsed) in backbone::parse_events(body) {
        match parsed.and_then(|e| producer_may_send(&e, now).map(|()| e)) {
            Ok(e) => good.push((line, e)),
            Err(reason) => rejected.push(LineError { line, reason }),
        }
    }
    if good.len() > crate::net::hub::MAX_EVENTS_PER_MESSAGE {
        return Err((
            "413 Content Too Large",
            format!(
                "{} events in one batch; at most {} a batch: split it",
                good.len(),
                crate::net::hub::MAX_EVENTS_PER_MESSAGE
            ),
        ));
    }
    let mut reply = IngestReply {
        accepted: 0,
        rejected,
        duplicate: false,
        stream_seq: None,
    };
    match &cfg.publisher {
        None => {
            let lines: Vec<usize> = good.iter().map(|(l, _)| *l).collect();
            let report = hub.publish_with(good.into_iter().map(|(_, e)| e), |i, verdict| {
                if let Err(e) = verdict {
                    reply.rejected.push(LineError {
                        line: lines[i],
                        reason: e.to_string(),
                    });
                }
            });
            reply.accepted = report.accepted;
        }
        Some(publisher) => {
            // The model's verdict in order on a copy of the gateway's state; what it takes
            // goes to the stream, where every gateway applies it.
            // Only the tickets the batch names are copied (under the hub lock), not all.
            let mut scratch =
                hub.with_state(|s| s.subset(good.iter().filter_map(|(_, e)| e.ticket_id())));
            let mut accepted = Vec::new();
            for (line, e) in good {
                match scratch.apply(&e) {
                    Ok(_) => accepted.push(e),
                    Err(err) => reply.rejected.push(LineError {
                        line,
                        reason: err.to_string(),
                    }),
                }
            }
            let encoded = backbone::encode_events(&accepted).len();
            if encoded + 8 * 1024 > backbone::MAX_BODY_BYTES {
                return Err((
                    "413 Content Too Large",
                    format!(
                        "the batch encodes to {encoded} bytes, over a stream message's {} bytes: split it",
                        backbone::MAX_BODY_BYTES
                    ),
                ));
            }
            if !accepted.is_empty() {
                let id = key.map(|k| format!("ingest:{k}"));
                let (seq, duplicate) = publisher
                    .publish(
                        publisher.names.events(),
                        &accepted,
                        id.as_deref(),
                        Some((now, hub.clock_rate())),
                    )
                    .await
                    .map_err(|e| {
                        ("503 Service Unavailable", format!("the backbone did not store the batch ({e:#}); retry with the same Idempotency-Key"))
                    })?;
                reply.stream_seq = Some(seq);
                // Stored before under this key (another gateway took the first try).
                reply.duplicate = duplicate;
            }
            reply.accepted = accepted.len();
        }
    }
    reply.rejected.sort_by_key(|r| r.line);
    Ok(reply)
}
