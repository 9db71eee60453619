//! Operator commands: a wall with an operator token asks the county's platform to act
//! (`{"type":"command","id":"…","command":{…}}`), and the gateway answers with
//! `command_result` messages: accepted or rejected at once, then confirmed (with the seq of
//! the feed event that carries the platform's answer) or timed out. See `docs/PROTOCOL.md`,
//! "Operator commands".

use serde::{Deserialize, Serialize};

use super::entities::Place;
use super::session::Seq;
use super::{IncidentId, TeamId, TicketId, TimestampMs, VolunteerId};

/// Longest note an operator may attach, in characters.
pub const MAX_NOTE_CHARS: usize = 500;
/// Most teams one dispatch may send.
pub const MAX_DISPATCH_TEAMS: usize = 16;
/// Longest client command id, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 64;

/// What an operator asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Command {
    /// 督办: push an open ticket to its responsible party with a note.
    #[serde(rename = "ticket.supervise.v1")]
    TicketSupervise {
        ticket_id: TicketId,
        #[serde(default)]
        note: String,
    },
    /// 派单: send an available volunteer to an open ticket.
    #[serde(rename = "ticket.assign.v1")]
    TicketAssign {
        ticket_id: TicketId,
        volunteer_id: VolunteerId,
    },
    /// Send teams to an open incident.
    #[serde(rename = "incident.dispatch.v1")]
    IncidentDispatch {
        incident_id: IncidentId,
        team_ids: Vec<TeamId>,
    },
    /// Acknowledge an alert (its current trigger).
    #[serde(rename = "alert.ack.v1")]
    AlertAck {
        alert_id: String,
        #[serde(default)]
        note: String,
    },
    /// Pin a note to a moment (default: now on the feed clock) and a place, for every wall
    /// and the history.
    #[serde(rename = "annotation.add.v1")]
    AnnotationAdd {
        place: Place,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        moment_ms: Option<TimestampMs>,
        text: String,
    },
    /// Take a note down.
    #[serde(rename = "annotation.remove.v1")]
    AnnotationRemove { annotation_id: String },
}

impl Command {
    /// The wire `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Command::TicketSupervise { .. } => "ticket.supervise.v1",
            Command::TicketAssign { .. } => "ticket.assign.v1",
            Command::IncidentDispatch { .. } => "incident.dispatch.v1",
            Command::AlertAck { .. } => "alert.ack.v1",
            Command::AnnotationAdd { .. } => "annotation.add.v1",
            Command::AnnotationRemove { .. } => "annotation.remove.v1",
        }
    }

    /// What it is about, for logs and the wall ("ticket 42").
    pub fn subject(&self) -> String {
        match self {
            Command::TicketSupervise { ticket_id, .. }
            | Command::TicketAssign { ticket_id, .. } => {
                format!("ticket {ticket_id}")
            }
            Command::IncidentDispatch { incident_id, .. } => format!("incident {incident_id}"),
            Command::AlertAck { alert_id, .. } => format!("alert {alert_id}"),
            Command::AnnotationAdd { place, .. } => format!("a note on {place}"),
            Command::AnnotationRemove { annotation_id } => format!("note {annotation_id}"),
        }
    }
}

/// A command as the county's platform receives it from the gateway (embedded: the simulator;
/// on a backbone: a NATS request on `datawall.<county>.commands`). The platform answers the
/// request with [`PlatformReply`] at once, and with feed events carrying `command_id` when it
/// has acted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlatformCommand {
    /// The gateway's id for it, unique across gateways.
    pub command_id: String,
    /// Who sent it (the operator token's name).
    pub by: String,
    pub command: Command,
}

/// The platform's immediate answer to a [`PlatformCommand`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlatformReply {
    pub ok: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a command stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// Valid, recorded and handed to the platform; its answer will follow.
    Accepted,
    /// Not carried out; `error` and `reason` say why. Nothing happened.
    Rejected,
    /// The platform's answer is on the feed at `seq`.
    Confirmed,
    /// Accepted, but no answer reached the feed in time; the platform may still act.
    TimedOut,
}

/// Why a command was rejected (`error` of a rejected `command_result`).
pub mod errors {
    /// The token may read the feed but not command (a viewer).
    pub const FORBIDDEN: &str = "forbidden";
    /// The command did not parse (unknown type, missing or wrong field).
    pub const BAD_COMMAND: &str = "bad_command";
    pub const UNKNOWN_TICKET: &str = "unknown_ticket";
    pub const TICKET_CLOSED: &str = "ticket_closed";
    pub const UNKNOWN_VOLUNTEER: &str = "unknown_volunteer";
    pub const VOLUNTEER_UNAVAILABLE: &str = "volunteer_unavailable";
    pub const UNKNOWN_INCIDENT: &str = "unknown_incident";
    pub const INCIDENT_CLOSED: &str = "incident_closed";
    pub const UNKNOWN_TEAM: &str = "unknown_team";
    pub const TEAM_ALREADY_SENT: &str = "team_already_sent";
    pub const UNKNOWN_ALERT: &str = "unknown_alert";
    pub const ALREADY_ACKNOWLEDGED: &str = "already_acknowledged";
    pub const ALERT_RESOLVED: &str = "alert_resolved";
    pub const UNKNOWN_GRID: &str = "unknown_grid";
    pub const UNKNOWN_ANNOTATION: &str = "unknown_annotation";
    /// The place is outside the county, or the moment is in the future or too long ago.
    pub const BAD_PLACE_OR_MOMENT: &str = "bad_place_or_moment";
    /// The gateway holds as many notes as it keeps; take some down first.
    pub const TOO_MANY_ANNOTATIONS: &str = "too_many_annotations";
    /// Nothing can act on it: a recording is being replayed, or no producer listens.
    pub const NO_PLATFORM: &str = "no_platform";
    /// The platform or the backbone refused or could not be reached.
    pub const PLATFORM_ERROR: &str = "platform_error";
    /// The same client id is already pending on this connection.
    pub const DUPLICATE_ID: &str = "duplicate_id";
    /// Too many commands pending on this connection.
    pub const TOO_MANY_PENDING: &str = "too_many_pending";
    /// Commands sent faster than the gateway takes them (20 at once, then 2 a second).
    pub const RATE_LIMITED: &str = "rate_limited";
}

/// The gateway's answer to a command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The client's id of the command.
    pub id: String,
    pub status: CommandStatus,
    /// Rejected: a code from [`errors`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A sentence for the operator (why rejected, what happens next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Confirmed: the sequence number of the event carrying the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<Seq>,
    /// The gateway's id of the command, carried as `command_id` by the answering event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

impl CommandResult {
    pub fn rejected(id: &str, error: &str, reason: impl Into<String>) -> Self {
        Self {
            id: id.to_owned(),
            status: CommandStatus::Rejected,
            error: Some(error.to_owned()),
            reason: Some(reason.into()),
            seq: None,
            command_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::session::ClientMsg;

    #[test]
    fn a_command_message_decodes_with_its_type_names() {
        let m: ClientMsg = serde_json::from_str(
            r#"{"type":"command","id":"c1","command":{"type":"incident.dispatch.v1","incident_id":7,"team_ids":[3,4]}}"#,
        )
        .unwrap();
        let ClientMsg::Command { id, command } = m else {
            panic!("not a command: {m:?}");
        };
        assert_eq!(id, "c1");
        assert_eq!(command.subject(), "incident 7");
        assert_eq!(command.type_name(), "incident.dispatch.v1");
    }

    #[test]
    fn unknown_commands_and_stray_fields_are_errors() {
        let unknown =
            serde_json::from_str::<Command>(r#"{"type":"ticket.delete.v1","ticket_id":1}"#);
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("ticket.delete.v1")
        );
        let stray = serde_json::from_str::<Command>(
            r#"{"type":"alert.ack.v1","alert_id":"sla-1","ticket_id":3}"#,
        );
        assert!(stray.unwrap_err().to_string().contains("ticket_id"));
    }
}
