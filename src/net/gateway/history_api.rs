//! `GET /v1/history`: the state at a moment and the events after it, from the gateway's
//! history on disk, as NDJSON paced by the client's reading (TCP backpressure). It reads
//! files on a blocking thread and never takes the hub's lock, so the live feed goes on.
//!
//! ```text
//! GET /v1/history?at=<ms>[&to=<ms>]     or   ?seq=<n>[&to=<ms>]
//! {"type":"history","epoch":…,"seq":S,"latest_event_ms":…,"first_ms":…,"last_ms":…}
//! {"type":"state","tickets":[…],"volunteers":[…],"incidents":[…],"alerts":[…]}
//! [S+1,{event}]
//! …                                     (until model time passes `to`, or the history ends)
//! {"type":"end","seq":…,"events":…}
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::GatewayConfig;
use super::http::{RequestHead, respond};
use super::stream::Conn;
use crate::net::history::{At, History};
use crate::net::hub::Hub;
use crate::protocol::TimestampMs;
use crate::protocol::entities::{Alert, Incident, Ticket, Volunteer};
use crate::protocol::session::{Epoch, Seq};

pub const HISTORY_PATH: &str = "/v1/history";
/// Lines read ahead of the client.
const READ_AHEAD: usize = 256;

#[derive(Serialize)]
struct Header {
    #[serde(rename = "type")]
    kind: &'static str,
    epoch: Epoch,
    seq: Seq,
    latest_event_ms: TimestampMs,
    first_ms: Option<TimestampMs>,
    last_ms: Option<TimestampMs>,
}

#[derive(Serialize)]
struct StateLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    tickets: Vec<&'a Ticket>,
    volunteers: &'a [Volunteer],
    incidents: Vec<&'a Incident>,
    alerts: Vec<&'a Alert>,
    annotations: Vec<&'a crate::protocol::entities::Annotation>,
}

/// What the query asks for: where to start, and the model time to stop after.
fn parse(head: &RequestHead) -> Result<(At, Option<TimestampMs>), String> {
    let num = |k: &str| -> Result<Option<i64>, String> {
        head.query_param(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("{k}={v} is not a whole number"))
            })
            .transpose()
    };
    let at = match (num("at")?, num("seq")?) {
        (Some(t), None) => At::Time(t),
        (None, Some(s)) if s >= 0 => At::Seq(s as Seq),
        (None, None) => {
            return Err("pass at=<feed time, ms since the epoch> or seq=<sequence number>".into());
        }
        _ => return Err("pass either at= or seq=, not both (seq must be 0 or more)".into()),
    };
    Ok((at, num("to")?))
}

/// Answer one history request (the token was checked by the caller).
pub async fn handle(
    mut stream: Conn,
    peer: SocketAddr,
    head: RequestHead,
    hub: Arc<Hub>,
    cfg: Arc<GatewayConfig>,
) {
    let Some(dir) = cfg.history_dir.clone() else {
        let _ = respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            &[],
            "this gateway keeps no history; start it with --history-dir (or without --no-history)\n",
        )
        .await;
        return;
    };
    let (at, to) = match parse(&head) {
        Ok(x) => x,
        Err(why) => {
            let _ = respond(
                &mut stream,
                "400 Bad Request",
                "text/plain",
                &[],
                &format!("{why}\n"),
            )
            .await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel::<Result<String, (&'static str, String)>>(READ_AHEAD);
    let county = Arc::clone(&hub.county);
    let reader = tokio::task::spawn_blocking(move || {
        let send = |line| tx.blocking_send(Ok(line)).is_ok();
        let history = match History::open(&dir) {
            Ok(Some(h)) => h,
            Ok(None) => {
                let _ = tx.blocking_send(Err(("404 Not Found", "the history is empty".into())));
                return;
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(("500 Internal Server Error", e.to_string())));
                return;
            }
        };
        let rebuilt = match history.state_at(&county, at) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(("404 Not Found", e.to_string())));
                return;
            }
        };
        let state = &rebuilt.state;
        let span = history.span_ms();
        let header = Header {
            kind: "history",
            epoch: history.meta.epoch,
            seq: rebuilt.seq,
            latest_event_ms: state.latest_event_ms,
            first_ms: span.map(|s| s.0),
            last_ms: span.map(|s| s.1),
        };
        let body = StateLine {
            kind: "state",
            tickets: state.tickets_sorted(),
            volunteers: &state.volunteers,
            incidents: state.incidents_sorted(),
            alerts: state.alerts_sorted(),
            annotations: state.annotations_sorted(),
        };
        let encoded =
            serde_json::to_string(&header).and_then(|h| Ok((h, serde_json::to_string(&body)?)));
        let Ok((h, b)) = encoded else { return };
        if !send(h) || !send(b) {
            return;
        }
        let (mut latest, mut last, mut n) = (state.latest_event_ms, rebuilt.seq, 0u64);
        let result = history.for_each_after(rebuilt.seq, |seq, event| {
            if let Some(a) = event.at_ms() {
                latest = latest.max(a);
            }
            if to.is_some_and(|t| latest > t) {
                return false;
            }
            let Ok(json) = serde_json::to_string(&event) else {
                return true;
            };
            last = seq;
            n += 1;
            send(format!("[{seq},{json}]"))
        });
        if let Err(e) = result {
            tracing::warn!(target: "datawall::history", "{e}");
        }
        let _ = send(format!(
            "{{\"type\":\"end\",\"seq\":{last},\"events\":{n}}}"
        ));
    });
    // The head waits for the first line: a request the history cannot answer gets a status.
    match rx.recv().await {
        Some(Ok(first)) => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n";
            let mut ok = stream.write_all(head.as_bytes()).await.is_ok()
                && write_line(&mut stream, &first).await;
            while ok {
                match rx.recv().await {
                    Some(Ok(line)) => ok = write_line(&mut stream, &line).await,
                    _ => break,
                }
            }
            let _ = stream.shutdown().await;
        }
        Some(Err((status, why))) => {
            tracing::info!(target: "datawall::history", "{peer}: history request refused: {why}");
            let _ = respond(&mut stream, status, "text/plain", &[], &format!("{why}\n")).await;
        }
        None => {
            let _ = respond(
                &mut stream,
                "500 Internal Server Error",
                "text/plain",
                &[],
                "the history could not be read\n",
            )
            .await;
        }
    }
    drop(rx);
    let _ = reader.await;
}

async fn write_line(stream: &mut Conn, line: &str) -> bool {
    stream.write_all(line.as_bytes()).await.is_ok() && stream.write_all(b"\n").await.is_ok()
}
