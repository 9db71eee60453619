//! Operator commands on the gateway: who may command, validation against the gateway's model,
//! the append-only audit log, forwarding to the county's platform, and the alert engine that
//! raises breach alerts and climbs the ladder. See `docs/PROTOCOL.md`, "Operator commands".

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::model::{LiveState, TicketStatus};
use crate::net::hub::Hub;
use crate::protocol::command::{
    Command, CommandStatus, MAX_DISPATCH_TEAMS, MAX_NOTE_CHARS, PlatformCommand, PlatformReply,
    errors,
};
use crate::protocol::entities::Place;
use crate::protocol::session::Seq;
use crate::protocol::{
    AlertAcked, AnnotationAdded, AnnotationRemoved, Event, GridId, LonLat, TimestampMs,
    VolunteerStatus,
};

/// Commands in flight to the embedded simulator, with the channel for its answer.
pub type SimulatorCommands = mpsc::Sender<(PlatformCommand, oneshot::Sender<PlatformReply>)>;

/// Longest wait for the platform's first answer (accepted or not).
pub const PLATFORM_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Breaches older than this when the engine first sees them raise nothing.
pub const BREACH_LOOKBACK_MS: TimestampMs = 3_600_000;
/// How often the alert engine looks at the clock (real time).
pub const ALERT_ENGINE_TICK: Duration = Duration::from_millis(250);

/// What carries a command out to the county's platform.
#[derive(Clone, Debug)]
pub enum Platform {
    /// The embedded simulator's task.
    Simulator(SimulatorCommands),
    /// A NATS request on `subject` (`datawall.<county>.commands`), answered by the producer.
    Nats {
        client: async_nats::Client,
        subject: String,
    },
    /// Nothing acts on commands (a recording is replayed); alerts are still acknowledged.
    None,
}

impl Platform {
    /// Hand `cmd` to the platform; `Err((code, reason))` when it cannot take it.
    pub async fn forward(&self, cmd: &PlatformCommand) -> Result<(), (&'static str, String)> {
        match self {
            Platform::None => Err((
                errors::NO_PLATFORM,
                "this gateway replays a recording: nothing can act on commands".into(),
            )),
            Platform::Simulator(tx) => {
                let (reply_tx, reply_rx) = oneshot::channel();
                tx.send((cmd.clone(), reply_tx)).await.map_err(|_| {
                    (
                        errors::NO_PLATFORM,
                        "the simulator has stopped; restart the gateway".to_owned(),
                    )
                })?;
                match tokio::time::timeout(PLATFORM_ANSWER_TIMEOUT, reply_rx).await {
                    Ok(Ok(reply)) => reply_result(reply),
                    _ => Err((
                        errors::PLATFORM_ERROR,
                        "the simulator did not answer".into(),
                    )),
                }
            }
            Platform::Nats { client, subject } => {
                let body = serde_json::to_vec(cmd).unwrap_or_default();
                let answer = tokio::time::timeout(
                    PLATFORM_ANSWER_TIMEOUT,
                    client.request(subject.clone(), body.into()),
                )
                .await;
                match answer {
                    Err(_) => Err((
                        errors::PLATFORM_ERROR,
                        format!(
                            "no answer on {subject} within {} s; is the platform's producer running?",
                            PLATFORM_ANSWER_TIMEOUT.as_secs()
                        ),
                    )),
                    Ok(Err(e))
                        if e.kind() == async_nats::client::RequestErrorKind::NoResponders =>
                    {
                        Err((
                            errors::NO_PLATFORM,
                            format!(
                                "nothing listens on {subject}: start the platform's producer (`datawall sim --nats`)"
                            ),
                        ))
                    }
                    Ok(Err(e)) => Err((errors::PLATFORM_ERROR, format!("NATS request: {e}"))),
                    Ok(Ok(msg)) => match serde_json::from_slice::<PlatformReply>(&msg.payload) {
                        Ok(reply) => reply_result(reply),
                        Err(e) => Err((
                            errors::PLATFORM_ERROR,
                            format!("the platform's answer did not parse: {e}"),
                        )),
                    },
                }
            }
        }
    }
}

fn reply_result(reply: PlatformReply) -> Result<(), (&'static str, String)> {
    if reply.ok {
        Ok(())
    } else {
        Err((
            errors::PLATFORM_ERROR,
            reply
                .error
                .unwrap_or_else(|| "the platform refused it".into()),
        ))
    }
}

/// One line of the audit log.
#[derive(Serialize)]
pub struct AuditLine<'a> {
    /// Wall-clock time of the line, ms since the epoch.
    pub at_ms: TimestampMs,
    /// The feed clock at the time.
    pub feed_ms: TimestampMs,
    /// The token's name.
    pub who: &'a str,
    pub peer: &'a str,
    /// The client's id of the command.
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<&'a Command>,
    pub result: CommandStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<Seq>,
}

/// The append-only audit log: one JSON line per command decision (NDJSON), written through.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    pub failures: AtomicU64,
}

impl AuditLog {
    /// Open `path` for appending (creating it and its folder).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
            failures: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one line. A failure is logged and counted; the command goes on.
    pub fn write(&self, line: &AuditLine<'_>) {
        let mut text = serde_json::to_string(line).unwrap_or_default();
        text.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(text.as_bytes()) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: "datawall::audit", "cannot write the audit log {}: {e}; free disk space or fix its permissions", self.path.display());
        }
    }
}

/// The default audit log: `$XDG_STATE_HOME/datawall/audit.ndjson` (or under `~/.local/state`).
pub fn default_audit_path() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("datawall").join("audit.ndjson")
}

/// How a gateway takes commands.
#[derive(Debug)]
pub struct CommandDesk {
    pub platform: Platform,
    pub audit: Option<AuditLog>,
    /// An accepted command not confirmed on the feed within this is reported timed out.
    pub confirm_timeout: Duration,
    prefix: String,
    next: AtomicU64,
}

impl CommandDesk {
    pub fn new(platform: Platform, audit: Option<AuditLog>) -> Self {
        let prefix = crate::net::random_token()
            .map(|t| t[..8].to_owned())
            .unwrap_or_else(|_| format!("{:x}", crate::net::hub::random_epoch()));
        Self {
            platform,
            audit,
            confirm_timeout: Duration::from_secs(30),
            prefix,
            next: AtomicU64::new(1),
        }
    }

    /// A command id no other gateway issues (`cmd-<random>-<n>`).
    pub fn next_id(&self) -> String {
        format!(
            "cmd-{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub fn audit(&self, line: AuditLine<'_>) {
        if let Some(a) = &self.audit {
            a.write(&line);
        }
    }
}

/// Why a command cannot be carried out on this model: `(code, reason)`.
pub type Refusal = (&'static str, String);

/// How far back a note may be about: the history a gateway keeps by default.
pub const ANNOTATION_LOOKBACK_MS: TimestampMs = crate::model::state::ANNOTATION_RETENTION_MS;

/// Where a note on `place` shows on the map, and its grid.
pub fn place_position(
    state: &LiveState,
    place: &Place,
) -> Result<(LonLat, Option<GridId>), Refusal> {
    let county = state.county();
    match *place {
        Place::Grid { grid_id } => county
            .grid(grid_id)
            .map(|g| (g.label, Some(grid_id)))
            .ok_or_else(|| {
                (
                    errors::UNKNOWN_GRID,
                    format!("grid {grid_id} is not in the pack"),
                )
            }),
        Place::Ticket { ticket_id } => state
            .tickets
            .get(&ticket_id)
            .map(|t| (t.pos, t.grid_id))
            .ok_or_else(|| {
                (
                    errors::UNKNOWN_TICKET,
                    format!(
                        "ticket {ticket_id} is not known to this gateway (pin the note to its grid)"
                    ),
                )
            }),
        Place::Incident { incident_id } => state
            .incidents
            .get(&incident_id)
            .map(|i| (i.pos, i.grid_id))
            .ok_or_else(|| {
                (
                    errors::UNKNOWN_INCIDENT,
                    format!("incident {incident_id} is not known to this gateway"),
                )
            }),
        Place::Point { pos } => {
            if pos.is_finite() && county.mask.contains(pos) {
                Ok((pos, county.index.grid_at(pos)))
            } else {
                Err((
                    errors::BAD_PLACE_OR_MOMENT,
                    format!("[{}, {}] is outside the county", pos.lon, pos.lat),
                ))
            }
        }
    }
}

/// Check a note against the model and the feed clock `now_ms`.
fn validate_annotation(
    state: &LiveState,
    place: &Place,
    moment_ms: Option<TimestampMs>,
    text: &str,
    now_ms: TimestampMs,
) -> Result<(), Refusal> {
    let n = text.trim().chars().count();
    if n == 0 || text.chars().count() > MAX_NOTE_CHARS {
        return Err((
            errors::BAD_COMMAND,
            format!("a note is 1 to {MAX_NOTE_CHARS} characters"),
        ));
    }
    if let Some(m) = moment_ms
        && (m > now_ms || m < now_ms - ANNOTATION_LOOKBACK_MS)
    {
        return Err((
            errors::BAD_PLACE_OR_MOMENT,
            format!(
                "the moment {m} is not within the last {} days of the feed clock ({now_ms})",
                ANNOTATION_LOOKBACK_MS / 86_400_000
            ),
        ));
    }
    if state.annotations.len() >= crate::model::state::MAX_ANNOTATIONS {
        return Err((
            errors::TOO_MANY_ANNOTATIONS,
            format!(
                "this gateway holds {} notes; take some down first",
                state.annotations.len()
            ),
        ));
    }
    place_position(state, place).map(|_| ())
}

/// The event that carries a note command (the gateway is the desk for notes), checked.
pub fn annotation_event(
    state: &LiveState,
    cmd: &Command,
    by: &str,
    command_id: &str,
    now_ms: TimestampMs,
) -> Result<Event, Refusal> {
    match cmd {
        Command::AnnotationAdd {
            place,
            moment_ms,
            text,
        } => {
            validate_annotation(state, place, *moment_ms, text, now_ms)?;
            let (pos, grid_id) = place_position(state, place)?;
            Ok(Event::AnnotationAdded(AnnotationAdded {
                annotation_id: command_id.to_owned(),
                at_ms: now_ms,
                moment_ms: moment_ms.unwrap_or(now_ms),
                place: *place,
                pos,
                grid_id,
                text: text.trim().to_owned(),
                by: by.to_owned(),
                command_id: Some(command_id.to_owned()),
            }))
        }
        Command::AnnotationRemove { annotation_id } => {
            if !state.annotations.contains_key(annotation_id) {
                return Err((
                    errors::UNKNOWN_ANNOTATION,
                    format!("note {annotation_id} is not known to this gateway"),
                ));
            }
            Ok(Event::AnnotationRemoved(AnnotationRemoved {
                annotation_id: annotation_id.clone(),
                at_ms: now_ms,
                by: by.to_owned(),
                command_id: Some(command_id.to_owned()),
            }))
        }
        other => Err((
            errors::BAD_COMMAND,
            format!("{} is not a note", other.type_name()),
        )),
    }
}

/// Check `cmd` against the gateway's model.
pub fn validate(state: &LiveState, cmd: &Command) -> Result<(), Refusal> {
    let note_ok = |note: &str| {
        if note.chars().count() > MAX_NOTE_CHARS {
            Err((
                errors::BAD_COMMAND,
                format!("the note is longer than {MAX_NOTE_CHARS} characters"),
            ))
        } else {
            Ok(())
        }
    };
    let open_ticket = |id| {
        let t = state.tickets.get(&id).ok_or_else(|| {
            (
                errors::UNKNOWN_TICKET,
                format!("ticket {id} is not known to this gateway"),
            )
        })?;
        if t.status.is_open() {
            Ok(t)
        } else {
            Err((
                errors::TICKET_CLOSED,
                format!("ticket {id} is resolved already"),
            ))
        }
    };
    match cmd {
        Command::TicketSupervise { ticket_id, note } => {
            note_ok(note)?;
            open_ticket(*ticket_id).map(|_| ())
        }
        Command::TicketAssign {
            ticket_id,
            volunteer_id,
        } => {
            let t = open_ticket(*ticket_id)?;
            if t.status == TicketStatus::OnSite {
                return Err((
                    errors::TICKET_CLOSED,
                    format!("ticket {ticket_id} has someone on site already"),
                ));
            }
            let v = state.volunteer(*volunteer_id).ok_or_else(|| {
                (
                    errors::UNKNOWN_VOLUNTEER,
                    format!("volunteer {volunteer_id} is not on the roster"),
                )
            })?;
            match v.status {
                VolunteerStatus::Available => Ok(()),
                VolunteerStatus::OffDuty => Err((
                    errors::VOLUNTEER_UNAVAILABLE,
                    format!("volunteer {volunteer_id} is off duty"),
                )),
                VolunteerStatus::Responding => Err((
                    errors::VOLUNTEER_UNAVAILABLE,
                    format!("volunteer {volunteer_id} is responding to another task"),
                )),
            }
        }
        Command::IncidentDispatch {
            incident_id,
            team_ids,
        } => {
            let i = state.incidents.get(incident_id).ok_or_else(|| {
                (
                    errors::UNKNOWN_INCIDENT,
                    format!("incident {incident_id} is not known to this gateway"),
                )
            })?;
            if i.closed_at_ms.is_some() {
                return Err((
                    errors::INCIDENT_CLOSED,
                    format!("incident {incident_id} is closed"),
                ));
            }
            if team_ids.is_empty() || team_ids.len() > MAX_DISPATCH_TEAMS {
                return Err((
                    errors::BAD_COMMAND,
                    format!("send 1 to {MAX_DISPATCH_TEAMS} teams"),
                ));
            }
            for t in team_ids {
                if state.county().team(*t).is_none() {
                    return Err((errors::UNKNOWN_TEAM, format!("team {t} is not in the pack")));
                }
                if i.teams.iter().any(|m| m.team_id == *t) {
                    return Err((
                        errors::TEAM_ALREADY_SENT,
                        format!("team {t} was sent to incident {incident_id} already"),
                    ));
                }
            }
            Ok(())
        }
        Command::AlertAck { alert_id, note } => {
            note_ok(note)?;
            let a = crate::model::state::breach_alert_ticket(alert_id)
                .and_then(|t| state.alerts.get(&t))
                .ok_or_else(|| {
                    (
                        errors::UNKNOWN_ALERT,
                        format!("alert {alert_id} is not known to this gateway"),
                    )
                })?;
            if a.resolved_at_ms.is_some() {
                return Err((
                    errors::ALERT_RESOLVED,
                    format!("alert {alert_id} is resolved (its ticket was)"),
                ));
            }
            if let Some(ack) = &a.acked {
                return Err((
                    errors::ALREADY_ACKNOWLEDGED,
                    format!("alert {alert_id} was acknowledged by {} already", ack.by),
                ));
            }
            Ok(())
        }
        // Checked against the clock too when the event is made (`annotation_event`).
        Command::AnnotationAdd {
            place,
            moment_ms: _,
            text,
        } => validate_annotation(state, place, None, text, state.latest_event_ms),
        Command::AnnotationRemove { .. } => annotation_event(state, cmd, "", "", 0).map(|_| ()),
    }
}

/// The acknowledgement event for `alert_id`, at its current trigger.
pub fn ack_event(
    state: &LiveState,
    alert_id: &str,
    note: &str,
    by: &str,
    command_id: &str,
    now_ms: TimestampMs,
) -> Option<Event> {
    let a =
        crate::model::state::breach_alert_ticket(alert_id).and_then(|t| state.alerts.get(&t))?;
    Some(Event::AlertAcked(AlertAcked {
        alert_id: alert_id.to_owned(),
        at_ms: now_ms
            .max(a.raised_at_ms)
            .max(a.escalated_at_ms.unwrap_or(0)),
        trigger: a.trigger,
        by: by.to_owned(),
        note: note.to_owned(),
        command_id: Some(command_id.to_owned()),
    }))
}

/// Where the alert engine's events go.
pub enum AlertSink {
    /// Straight into the hub (embedded).
    Hub,
    /// To the stream; every gateway runs an engine, and the message id (alert, trigger,
    /// rung) lets JetStream keep one copy.
    Backbone(Box<crate::net::backbone::Publisher>),
}

/// Every [`ALERT_ENGINE_TICK`], raise the breach alerts and ladder climbs due on the feed
/// clock, until `shutdown`.
pub async fn run_alert_engine(hub: Arc<Hub>, sink: AlertSink, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(ALERT_ENGINE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        if !hub.caught_up() {
            continue;
        }
        let now = hub.now_ms();
        let due = hub.with_state(|s| s.alerts_due(now, BREACH_LOOKBACK_MS));
        if due.is_empty() {
            continue;
        }
        match &sink {
            AlertSink::Hub => {
                hub.publish(due);
            }
            AlertSink::Backbone(p) => {
                for e in due {
                    let id = match &e {
                        Event::AlertRaised(a) => format!("{}-{}-raised", a.alert_id, a.trigger),
                        Event::AlertEscalated(a) => {
                            format!("{}-{}-{:?}", a.alert_id, a.trigger, a.level)
                        }
                        _ => continue,
                    };
                    let subject = format!("{}.alerts", p.names.events());
                    // With the feed clock: gateways judge the stamps against it.
                    let clock = Some((hub.now_ms(), hub.clock_rate()));
                    if let Err(e) = p.publish(subject, &[e], Some(&id), clock).await {
                        tracing::warn!(target: "datawall::alerts", "publishing alert {id} failed: {e:#}; retrying on the next tick");
                        break;
                    }
                }
            }
        }
    }
}

/// The platform's answer for what [`crate::sim::Simulator::command`] returned.
pub fn platform_reply(result: Result<(), String>) -> PlatformReply {
    match result {
        Ok(()) => PlatformReply {
            ok: true,
            error: None,
        },
        Err(e) => PlatformReply {
            ok: false,
            error: Some(e),
        },
    }
}
