//! One task per websocket: hello, snapshot or replay, then delta batches read from the
//! hub at this client's cursor; heartbeats both ways; limits and resync.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::stream::Conn;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message, Utf8Bytes};

use super::GatewayConfig;
use super::commands::{AuditLine, ack_event, annotation_event, validate};
use super::tokens::{Access, Role};
use crate::net::hub::{Entry, Hub, Read};
use crate::net::metrics::{ClientStats, Metrics};
use crate::protocol::binary::{DeltaEvent, encode_delta};
use crate::protocol::command::{
    Command, CommandResult, CommandStatus, MAX_CLIENT_ID_BYTES, PlatformCommand, errors,
};
use crate::protocol::session::{
    ClientMsg, Epoch, Heartbeat, Hello, Notice, Seq, ServerMsg, SnapshotFormat,
};
use crate::protocol::{Event, PROTOCOL_VERSION, VolunteerId};

/// Why a session ended (logged).
#[derive(Debug)]
enum End {
    ClientClosed,
    Flooding,
    Shutdown,
    HeartbeatTimeout,
    TooSlow,
    Oversized,
    HubGone,
    Socket(WsError),
}

type Ws = WebSocketStream<Conn>;

/// What a client asked for in the feed URL.
#[derive(Clone, Copy, Debug, Default)]
pub struct Asked {
    /// `resume_epoch` and `last_seq`.
    pub resume: Option<(Epoch, Seq)>,
    /// `format`: how the snapshot's chunks travel.
    pub format: SnapshotFormat,
}

/// Most commands one connection may have waiting for confirmation.
const MAX_PENDING_COMMANDS: usize = 32;
/// Client messages of any kind: a burst of this many, then this many a second; a client
/// past it is disconnected (a legitimate wall sends a heartbeat every 5 s).
const MESSAGES_BURST: f64 = 100.0;
const MESSAGES_PER_SEC: f64 = 20.0;
/// Commands: a burst of this many, then this many a second; past it they are refused
/// (`rate_limited`), the connection stays.
const COMMANDS_BURST: f64 = 20.0;
const COMMANDS_PER_SEC: f64 = 2.0;

/// A token bucket on the tokio clock.
struct Bucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    at: Instant,
}

impl Bucket {
    fn new(burst: f64, per_sec: f64) -> Self {
        Self {
            tokens: burst,
            burst,
            per_sec,
            at: Instant::now(),
        }
    }

    /// Take one token if there is one.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// An accepted command waiting for its answer on the feed.
struct Pending {
    client_id: String,
    command_id: String,
    /// `"command_id":"<id>"` as the answering event's JSON holds it.
    needle: String,
    since: Instant,
}

struct Session {
    ws: Ws,
    hub: Arc<Hub>,
    cfg: Arc<GatewayConfig>,
    stats: Arc<ClientStats>,
    cursor: Seq,
    format: SnapshotFormat,
    peer: String,
    access: Access,
    pending: Vec<Pending>,
    messages: Bucket,
    commands: Bucket,
}

fn encode(msg: &ServerMsg) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::to_string(msg).unwrap_or_default())
}

/// Build one delta message from ring entries, as JSON text or (`format=binary`) a binary
/// message. With `conflate`, a volunteer fix that a later fix of the same volunteer in this
/// batch supersedes is left out. Returns the message, the events sent and those left out.
pub fn delta_message(
    epoch: Epoch,
    prev_seq: Seq,
    entries: &[Entry],
    conflate: bool,
    format: SnapshotFormat,
) -> (Message, usize, usize) {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return (Message::Text(Utf8Bytes::default()), 0, 0);
    };
    let latest_fix: HashMap<VolunteerId, Seq> = if conflate {
        entries
            .iter()
            .filter_map(|e| e.fix.as_ref().map(|f| (f.volunteer_id, e.seq)))
            .collect()
    } else {
        HashMap::new()
    };
    let kept: Vec<&Entry> = entries
        .iter()
        .filter(|e| {
            e.fix
                .as_ref()
                .is_none_or(|f| latest_fix.get(&f.volunteer_id).is_none_or(|&s| s == e.seq))
        })
        .collect();
    let skipped = entries.len() - kept.len();
    let message = match format {
        SnapshotFormat::Json => {
            let bytes: usize = kept.iter().map(|e| e.json.len() + 1).sum();
            let mut out = String::with_capacity(bytes + 120);
            out.push_str(&format!(
                r#"{{"type":"delta","epoch":{epoch},"prev_seq":{prev_seq},"first_seq":{},"last_seq":{},"events":["#,
                first.seq, last.seq
            ));
            for (i, e) in kept.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&e.json);
            }
            out.push_str(&format!(r#"],"conflated":{skipped}}}"#));
            Message::Text(Utf8Bytes::from(out))
        }
        SnapshotFormat::Binary => {
            let events: Vec<(Seq, DeltaEvent)> = kept
                .iter()
                .map(|e| {
                    let event = match &e.fix {
                        Some(f) => DeltaEvent::Fix(f),
                        // `[seq,{…}]`: the event is what follows the first comma.
                        None => DeltaEvent::Json(
                            e.json
                                .split_once(',')
                                .and_then(|(_, rest)| rest.strip_suffix(']'))
                                .unwrap_or("{}"),
                        ),
                    };
                    (e.seq, event)
                })
                .collect();
            Message::Binary(
                encode_delta(
                    epoch,
                    prev_seq,
                    first.seq,
                    last.seq,
                    skipped as u32,
                    &events,
                )
                .into(),
            )
        }
    };
    (message, kept.len(), skipped)
}

impl Session {
    fn metrics(&self) -> &Metrics {
        &self.hub.metrics
    }

    fn set_cursor(&mut self, seq: Seq) {
        self.cursor = seq;
        self.stats.cursor.store(seq, Ordering::Relaxed);
    }

    async fn send(&mut self, text: Utf8Bytes) -> Result<(), End> {
        self.send_message(Message::Text(text)).await
    }

    async fn send_message(&mut self, message: Message) -> Result<(), End> {
        let len = message.len() as u64;
        match tokio::time::timeout(self.cfg.send_timeout, self.ws.send(message)).await {
            Err(_) => {
                Metrics::inc(&self.metrics().slow_disconnects);
                Err(End::TooSlow)
            }
            Ok(Err(e)) => Err(End::Socket(e)),
            Ok(Ok(())) => {
                Metrics::inc(&self.metrics().messages_out);
                Metrics::add(&self.metrics().bytes_out, len);
                Ok(())
            }
        }
    }

    async fn notice(&mut self, code: &str, message: String) -> Result<(), End> {
        self.send(encode(&ServerMsg::Notice(Notice {
            code: code.into(),
            message,
        })))
        .await
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(self.cfg.send_timeout, self.ws.close(Some(frame))).await;
    }

    async fn heartbeat(&mut self) -> Result<(), End> {
        let hb = ServerMsg::Heartbeat(Heartbeat {
            server_time_ms: self.hub.now_ms(),
            last_seq: self.cursor,
            backbone_down_since_ms: self.hub.backbone_down_since_ms(),
        });
        self.send(encode(&hb)).await
    }

    /// Send a snapshot; the cursor moves to the sequence number it covers.
    async fn send_snapshot(&mut self) -> Result<(), End> {
        let snap = self.hub.snapshot_as(self.format);
        for m in snap.messages() {
            self.send_message(m).await?;
        }
        Metrics::inc(&self.metrics().snapshots_sent);
        self.set_cursor(snap.seq);
        Ok(())
    }

    /// Continue after `last_seq` of `epoch` from the ring, or with a snapshot.
    async fn resume_or_snapshot(&mut self, resume: Option<(Epoch, Seq)>) -> Result<bool, End> {
        match resume {
            Some((epoch, seq)) if self.hub.can_resume(epoch, seq) => {
                Metrics::inc(&self.metrics().resumes_replayed);
                self.set_cursor(seq);
                Ok(true)
            }
            _ => {
                self.send_snapshot().await?;
                Ok(false)
            }
        }
    }

    /// Send up to `max_batches` delta batches; returns whether more are waiting.
    async fn drain(&mut self, latest: Seq, max_batches: usize) -> Result<bool, End> {
        for _ in 0..max_batches {
            if self.cursor >= latest {
                return Ok(false);
            }
            match self.hub.read_after(self.cursor, self.cfg.max_batch_events) {
                Read::Behind => {
                    Metrics::inc(&self.metrics().resyncs);
                    tracing::info!(target: "datawall::gateway", "{}: fell behind the replay buffer; resyncing", self.peer);
                    self.notice(
                        "resync",
                        "you fell behind the replay buffer; a fresh snapshot follows".into(),
                    )
                    .await?;
                    self.send_snapshot().await?;
                }
                Read::Events(entries) if entries.is_empty() => return Ok(false),
                Read::Events(entries) => {
                    // Events, not sequence numbers (a backbone's have holes).
                    let backlog = self.hub.events_after(self.cursor) as u64;
                    let conflate = backlog > self.cfg.conflate_after_events;
                    let (message, sent, skipped) =
                        delta_message(self.hub.epoch, self.cursor, &entries, conflate, self.format);
                    self.send_message(message).await?;
                    if !self.pending.is_empty() {
                        self.confirm(&entries).await?;
                    }
                    Metrics::add(&self.metrics().events_out, sent as u64);
                    Metrics::add(&self.metrics().conflated, skipped as u64);
                    Metrics::add(&self.stats.events_sent, sent as u64);
                    self.set_cursor(entries.last().map_or(self.cursor, |e| e.seq));
                }
            }
        }
        Ok(self.cursor < latest)
    }

    async fn command_result(&mut self, r: CommandResult) -> Result<(), End> {
        self.send(encode(&ServerMsg::CommandResult(r))).await
    }

    /// Write the audit line for a decision on a command.
    #[allow(clippy::too_many_arguments)]
    fn audit(
        &self,
        id: &str,
        command_id: Option<&str>,
        command: Option<&Command>,
        result: CommandStatus,
        error: Option<&str>,
        reason: Option<&str>,
        seq: Option<Seq>,
    ) {
        if let Some(desk) = &self.cfg.commands {
            desk.audit(AuditLine {
                at_ms: crate::net::hub::system_now_ms(),
                feed_ms: self.hub.now_ms(),
                who: &self.access.name,
                peer: &self.peer,
                id,
                command_id,
                command,
                result,
                error,
                reason,
                seq,
            });
        }
    }

    /// Reject a command: answer, log, audit.
    async fn reject(
        &mut self,
        id: &str,
        command: Option<&Command>,
        error: &str,
        reason: String,
    ) -> Result<(), End> {
        Metrics::inc(&self.metrics().commands_rejected);
        tracing::info!(target: "datawall::commands", "{}: command {id} rejected ({error}): {reason}", self.peer);
        self.audit(
            id,
            None,
            command,
            CommandStatus::Rejected,
            Some(error),
            Some(&reason),
            None,
        );
        self.command_result(CommandResult::rejected(id, error, reason))
            .await
    }

    /// An operator's command: check who, check it against the model, hand it on.
    async fn on_command(&mut self, id: String, command: Command) -> Result<(), End> {
        Metrics::inc(&self.metrics().commands_received);
        if id.is_empty() || id.len() > MAX_CLIENT_ID_BYTES {
            let why = format!("a command needs an id of 1 to {MAX_CLIENT_ID_BYTES} bytes");
            return self
                .reject(&id, Some(&command), errors::BAD_COMMAND, why)
                .await;
        }
        if !self.commands.take() {
            let why = format!(
                "more than {COMMANDS_BURST} commands at once or {COMMANDS_PER_SEC} a second; wait and send it again"
            );
            return self
                .reject(&id, Some(&command), errors::RATE_LIMITED, why)
                .await;
        }
        if self.access.role != Role::Operator {
            let why = format!(
                "{} may watch but not command; ask for an operator token",
                self.access.name
            );
            return self
                .reject(&id, Some(&command), errors::FORBIDDEN, why)
                .await;
        }
        let Some(desk) = self.cfg.commands.clone() else {
            let why = "this gateway takes no commands".to_owned();
            return self
                .reject(&id, Some(&command), errors::NO_PLATFORM, why)
                .await;
        };
        if self.pending.iter().any(|p| p.client_id == id) {
            let why = format!("command {id} is still pending; use a new id");
            return self
                .reject(&id, Some(&command), errors::DUPLICATE_ID, why)
                .await;
        }
        if self.pending.len() >= MAX_PENDING_COMMANDS {
            let why = format!(
                "{MAX_PENDING_COMMANDS} commands are waiting for the platform; wait for their answers"
            );
            return self
                .reject(&id, Some(&command), errors::TOO_MANY_PENDING, why)
                .await;
        }
        if let Err((code, why)) = self.hub.with_state(|s| validate(s, &command)) {
            return self.reject(&id, Some(&command), code, why).await;
        }
        let command_id = desk.next_id();
        let forwarded = match &command {
            // The gateway itself is the alert desk.
            Command::AlertAck { alert_id, note } => {
                self.acknowledge(alert_id, note, &command_id).await
            }
            // …and the desk for notes.
            Command::AnnotationAdd { .. } | Command::AnnotationRemove { .. } => {
                let now = self.hub.now_ms();
                let event = self.hub.with_state(|s| {
                    annotation_event(s, &command, &self.access.name, &command_id, now)
                });
                match event {
                    Ok(e) => self.publish_own(e, &command_id).await,
                    Err(refusal) => Err(refusal),
                }
            }
            _ => {
                let platform_cmd = PlatformCommand {
                    command_id: command_id.clone(),
                    by: self.access.name.clone(),
                    command: command.clone(),
                };
                desk.platform.forward(&platform_cmd).await
            }
        };
        if let Err((code, why)) = forwarded {
            return self.reject(&id, Some(&command), code, why).await;
        }
        Metrics::inc(&self.metrics().commands_accepted);
        tracing::info!(target: "datawall::commands", "{}: {} {} accepted as {command_id}", self.peer, command.type_name(), command.subject());
        self.audit(
            &id,
            Some(&command_id),
            Some(&command),
            CommandStatus::Accepted,
            None,
            None,
            None,
        );
        self.pending.push(Pending {
            client_id: id.clone(),
            needle: format!(
                "\"command_id\":{}",
                serde_json::to_string(&command_id).unwrap_or_default()
            ),
            command_id: command_id.clone(),
            since: Instant::now(),
        });
        self.command_result(CommandResult {
            id,
            status: CommandStatus::Accepted,
            error: None,
            reason: None,
            seq: None,
            command_id: Some(command_id),
        })
        .await
    }

    /// Publish the acknowledgement of an alert (to the stream on a backbone).
    async fn acknowledge(
        &self,
        alert_id: &str,
        note: &str,
        command_id: &str,
    ) -> Result<(), (&'static str, String)> {
        let now = self.hub.now_ms();
        let event = self
            .hub
            .with_state(|s| ack_event(s, alert_id, note, &self.access.name, command_id, now))
            .ok_or((errors::UNKNOWN_ALERT, format!("alert {alert_id} is gone")))?;
        self.publish_own(event, command_id).await
    }

    /// Publish an event the gateway itself writes for a command (to the stream on a backbone).
    async fn publish_own(
        &self,
        event: Event,
        command_id: &str,
    ) -> Result<(), (&'static str, String)> {
        match &self.cfg.publisher {
            Some(p) => p
                .publish(
                    p.names.events(),
                    &[event],
                    Some(command_id),
                    Some((self.hub.now_ms(), self.hub.clock_rate())),
                )
                .await
                .map(|_| ())
                .map_err(|e| (errors::PLATFORM_ERROR, format!("{e:#}"))),
            None => {
                let subject = command_subject(&event);
                let published = self.hub.publish(vec![event]);
                if published.accepted == 0 {
                    Err((
                        errors::ALREADY_ACKNOWLEDGED,
                        format!("{subject} changed meanwhile; look again"),
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Confirm the pending commands these just-sent events answer.
    async fn confirm(&mut self, entries: &[Entry]) -> Result<(), End> {
        for e in entries {
            let Some(i) = self.pending.iter().position(|p| e.json.contains(&p.needle)) else {
                continue;
            };
            let p = self.pending.swap_remove(i);
            Metrics::inc(&self.metrics().commands_confirmed);
            self.audit(
                &p.client_id,
                Some(&p.command_id),
                None,
                CommandStatus::Confirmed,
                None,
                None,
                Some(e.seq),
            );
            self.command_result(CommandResult {
                id: p.client_id,
                status: CommandStatus::Confirmed,
                error: None,
                reason: None,
                seq: Some(e.seq),
                command_id: Some(p.command_id),
            })
            .await?;
        }
        Ok(())
    }

    /// Report commands left unanswered too long.
    async fn expire_pending(&mut self) -> Result<(), End> {
        let Some(timeout) = self.cfg.commands.as_ref().map(|d| d.confirm_timeout) else {
            return Ok(());
        };
        while let Some(i) = self
            .pending
            .iter()
            .position(|p| p.since.elapsed() > timeout)
        {
            let p = self.pending.swap_remove(i);
            Metrics::inc(&self.metrics().commands_timed_out);
            let why = format!(
                "no answer on the feed within {} s; the platform may still act, watch the ticket",
                timeout.as_secs()
            );
            self.audit(
                &p.client_id,
                Some(&p.command_id),
                None,
                CommandStatus::TimedOut,
                None,
                Some(&why),
                None,
            );
            self.command_result(CommandResult {
                id: p.client_id,
                status: CommandStatus::TimedOut,
                error: None,
                reason: Some(why),
                seq: None,
                command_id: Some(p.command_id),
            })
            .await?;
        }
        Ok(())
    }

    /// Handle a client message; returns whether the cursor moved (a drain is due).
    async fn on_client_text(&mut self, text: &str) -> Result<bool, End> {
        match serde_json::from_str::<ClientMsg>(text) {
            Ok(ClientMsg::Heartbeat { .. }) => Ok(false),
            Ok(ClientMsg::Resume { epoch, last_seq }) => self
                .resume_or_snapshot(Some((epoch, last_seq)))
                .await
                .map(|_| true),
            Ok(ClientMsg::Command { id, command }) => {
                self.on_command(id, command).await.map(|_| false)
            }
            Err(e) if command_id_of(text).is_some() => {
                Metrics::inc(&self.metrics().bad_client_messages);
                let id = command_id_of(text).unwrap_or_default();
                self.reject(
                    &id,
                    None,
                    errors::BAD_COMMAND,
                    format!("the command did not parse: {e}"),
                )
                .await
                .map(|_| false)
            }
            Err(e) => {
                Metrics::inc(&self.metrics().bad_client_messages);
                self.notice(
                    "bad_message",
                    format!("ignored a message that did not parse: {e}"),
                )
                .await
                .map(|_| false)
            }
        }
    }

    async fn run(
        &mut self,
        resume: Option<(Epoch, Seq)>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), End> {
        let mut latest_rx = self.hub.subscribe();
        let latest = *latest_rx.borrow_and_update();
        let resumed = resume.is_some_and(|(e, s)| self.hub.can_resume(e, s));
        self.send(encode(&ServerMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            county_code: self.hub.county.pack.manifest.county_code,
            county_name: self.hub.county.pack.manifest.county_name.clone(),
            epoch: self.hub.epoch,
            last_seq: latest,
            server_time_ms: self.hub.now_ms(),
            clock_rate: self.hub.clock_rate(),
            heartbeat_ms: self.cfg.heartbeat.as_millis() as u64,
            max_client_message_bytes: self.cfg.max_client_message_bytes,
            roster_scale: self.hub.county.roster_scale,
            grid_split: self.hub.county.grid_split,
            resumed,
            backbone_down_since_ms: self.hub.backbone_down_since_ms(),
            simulated: self.cfg.simulated || self.hub.stream_simulated(),
            snapshot_format: self.format,
        })))
        .await?;
        let mut backbone_told = self.hub.backbone_down_since_ms();
        self.resume_or_snapshot(resume).await?;

        let mut heartbeat = tokio::time::interval(self.cfg.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        heartbeat.tick().await;
        let mut last_heard = Instant::now();
        let mut pending = true;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    let _ = self.notice("shutdown", "the gateway is shutting down; reconnect to another or retry".into()).await;
                    self.close(CloseCode::Away, "server shutting down").await;
                    return Err(End::Shutdown);
                }
                incoming = self.ws.next() => {
                    last_heard = Instant::now();
                    if matches!(incoming, Some(Ok(Message::Text(_) | Message::Binary(_))))
                        && !self.messages.take()
                    {
                        Metrics::inc(&self.metrics().flood_disconnects);
                        let reason = format!("more than {MESSAGES_PER_SEC} messages a second");
                        self.close(CloseCode::Policy, &reason).await;
                        return Err(End::Flooding);
                    }
                    match incoming {
                        None | Some(Ok(Message::Close(_))) => return Err(End::ClientClosed),
                        Some(Ok(Message::Text(t))) => {
                            // A resume moved the cursor: replay from there now, not at the
                            // next publish.
                            pending |= self.on_client_text(t.as_str()).await?;
                        }
                        Some(Ok(Message::Binary(_))) => {
                            Metrics::inc(&self.metrics().bad_client_messages);
                            self.notice("bad_message", "binary messages are not part of the protocol".into()).await?;
                        }
                        Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
                        Some(Err(WsError::Capacity(e))) => {
                            Metrics::inc(&self.metrics().oversized_messages);
                            let reason = format!("message too big ({e}); limit {} bytes", self.cfg.max_client_message_bytes);
                            self.close(CloseCode::Size, &reason).await;
                            return Err(End::Oversized);
                        }
                        Some(Err(e)) => return Err(End::Socket(e)),
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > self.cfg.client_silence {
                        Metrics::inc(&self.metrics().heartbeat_timeouts);
                        let reason = format!("heartbeat timeout: nothing heard for {} s", self.cfg.client_silence.as_secs_f64());
                        self.close(CloseCode::Policy, &reason).await;
                        return Err(End::HeartbeatTimeout);
                    }
                    self.heartbeat().await?;
                    self.ws.send(Message::Ping(Bytes::new())).await.map_err(End::Socket)?;
                    self.expire_pending().await?;
                }
                changed = latest_rx.changed() => {
                    if changed.is_err() {
                        return Err(End::HubGone);
                    }
                    let latest = *latest_rx.borrow_and_update();
                    pending = self.drain(latest, 8).await?;
                    // The backbone went down or came back: say so now.
                    let backbone = self.hub.backbone_down_since_ms();
                    if backbone != backbone_told {
                        backbone_told = backbone;
                        self.heartbeat().await?;
                    }
                }
                _ = std::future::ready(()), if pending => {
                    let latest = *latest_rx.borrow_and_update();
                    pending = self.drain(latest, 8).await?;
                }
            }
        }
    }
}

/// Serve one upgraded websocket until it ends.
pub async fn run_session(
    ws: Ws,
    hub: Arc<Hub>,
    cfg: Arc<GatewayConfig>,
    asked: Asked,
    shutdown: watch::Receiver<bool>,
    peer: String,
    access: Access,
) {
    Metrics::inc(&hub.metrics.connections_total);
    let stats = hub.metrics.register_client();
    // A gateway still catching up with its backbone would answer a resume with a snapshot
    // it does not need yet: wait until it has caught up, but less than the client's silence
    // limit (3 heartbeats), and not past a shutdown.
    if !hub.caught_up() {
        let mut latest = hub.subscribe();
        let mut stop = shutdown.clone();
        let _ = tokio::time::timeout(cfg.heartbeat * 2, async {
            while !hub.caught_up() {
                tokio::select! {
                    changed = latest.changed() => if changed.is_err() { return },
                    _ = stop.changed() => return,
                }
            }
        })
        .await;
    }
    let mut session = Session {
        ws,
        hub,
        cfg,
        stats,
        cursor: 0,
        format: asked.format,
        peer: format!("{peer} {}", access.name),
        access,
        pending: Vec::new(),
        messages: Bucket::new(MESSAGES_BURST, MESSAGES_PER_SEC),
        commands: Bucket::new(COMMANDS_BURST, COMMANDS_PER_SEC),
    };
    let end = session.run(asked.resume, shutdown).await;
    match end {
        Ok(()) | Err(End::ClientClosed) | Err(End::Shutdown) => {
            tracing::debug!(target: "datawall::gateway", "{}: session ended", session.peer)
        }
        Err(End::Socket(e)) => {
            if matches!(e, WsError::Protocol(_) | WsError::Utf8(_)) {
                Metrics::inc(&session.hub.metrics.protocol_errors);
            }
            tracing::info!(target: "datawall::gateway", "{}: session ended: socket error: {e}", session.peer)
        }
        Err(e) => {
            tracing::info!(target: "datawall::gateway", "{}: session ended: {e:?}", session.peer)
        }
    }
}

/// The `id` of a message that is a command but did not parse, so its sender hears why.
fn command_id_of(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Loose {
        #[serde(rename = "type")]
        kind: String,
        id: String,
    }
    serde_json::from_str::<Loose>(text)
        .ok()
        .filter(|l| l.kind == "command")
        .map(|l| l.id)
}

/// What an event the gateway writes is about, for a refusal.
fn command_subject(event: &Event) -> String {
    match event {
        Event::AlertAcked(e) => format!("alert {}", e.alert_id),
        Event::AnnotationAdded(e) => format!("note {}", e.annotation_id),
        Event::AnnotationRemoved(e) => format!("note {}", e.annotation_id),
        other => other.type_name().to_owned(),
    }
}
