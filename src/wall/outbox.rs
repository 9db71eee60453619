//! What the operator asked for and where each request stands: actions from panels and keys,
//! the commands sent for them, and the gateway's answers (pending → accepted → confirmed, or
//! rejected / timed out). A leaf: it knows the protocol, not the wall's views.

use std::collections::VecDeque;

use bevy::prelude::Resource;
use std::time::{Duration, Instant};

use crate::protocol::command::{Command, CommandResult, CommandStatus};
use crate::protocol::entities::Place;
use crate::protocol::session::Seq;
use crate::protocol::{IncidentId, TeamId, TicketId, TimestampMs, VolunteerId};

/// Commands remembered for the panels, newest last.
const KEEP: usize = 32;
/// A command the gateway has not even acknowledged in this long is reported lost.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the keyboard is: Tab moves between the map, the ranking and the drill-down panel;
/// ↑/↓ and Enter move through the focused list (on the map the arrows pan).
#[derive(Resource, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyFocus {
    pub area: FocusArea,
    pub row: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FocusArea {
    #[default]
    Map,
    Ranking,
    Panel,
}

impl KeyFocus {
    /// The next area (Tab), or the previous (Shift+Tab); the panel only when one is open.
    pub fn cycle(&mut self, back: bool, panel_open: bool) {
        use FocusArea::*;
        let order: &[FocusArea] = if panel_open {
            &[Map, Ranking, Panel]
        } else {
            &[Map, Ranking]
        };
        let at = order.iter().position(|a| *a == self.area).unwrap_or(0);
        let n = order.len();
        let next = if back { (at + n - 1) % n } else { (at + 1) % n };
        self.area = order[next];
        self.row = 0;
    }

    /// The row marked in `area`, if the keyboard is there.
    pub fn row_in(&self, area: FocusArea) -> Option<usize> {
        (self.area == area).then_some(self.row)
    }
}

/// A note being written for an action that wants one (督办, acknowledgement).
#[derive(Resource, Debug, Default)]
pub struct NotePrompt {
    pub action: Option<Action>,
    pub text: String,
    /// Enter was pressed in the text field: send.
    pub submit: bool,
}

/// Something the operator asked the wall to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// 督办 a ticket (asks for a note first).
    Supervise(TicketId),
    /// 派单: send this volunteer to the ticket.
    Assign(TicketId, VolunteerId),
    /// Send the incident panel's suggested teams.
    Dispatch(IncidentId, Vec<TeamId>),
    /// Acknowledge a ticket's breach alert (asks for a note first).
    Ack(TicketId),
    /// Pin a note to this place and moment (asks for its text first).
    Annotate(Place, TimestampMs),
}

impl Action {
    /// Whether the operator writes a note before it is sent.
    pub fn wants_note(&self) -> bool {
        matches!(
            self,
            Action::Supervise(_) | Action::Ack(_) | Action::Annotate(..)
        )
    }

    /// Whether the note may be left empty.
    pub fn note_optional(&self) -> bool {
        !matches!(self, Action::Annotate(..))
    }

    /// The protocol command for it, with `note`.
    pub fn command(&self, note: &str) -> Command {
        match self {
            Action::Supervise(t) => Command::TicketSupervise {
                ticket_id: *t,
                note: note.to_owned(),
            },
            Action::Assign(t, v) => Command::TicketAssign {
                ticket_id: *t,
                volunteer_id: *v,
            },
            Action::Dispatch(i, teams) => Command::IncidentDispatch {
                incident_id: *i,
                team_ids: teams.clone(),
            },
            Action::Ack(t) => Command::AlertAck {
                alert_id: crate::model::state::breach_alert_id(*t),
                note: note.to_owned(),
            },
            Action::Annotate(place, moment_ms) => Command::AnnotationAdd {
                place: *place,
                moment_ms: Some(*moment_ms),
                text: note.to_owned(),
            },
        }
    }

    /// How the wall names it.
    pub fn label(&self) -> String {
        match self {
            Action::Supervise(t) => format!("督办 supervise #{t}"),
            Action::Assign(t, v) => format!("派单 assign #{t} → 志愿者 {v}"),
            Action::Dispatch(i, teams) => format!("调度 dispatch #{i} → {} 队 teams", teams.len()),
            Action::Ack(t) => format!("确认 acknowledge 超时 #{t}"),
            Action::Annotate(place, at) => format!(
                "标注 note @ {} on {place}",
                crate::model::sla::clock_text(*at)
            ),
        }
    }

    /// The ticket or incident it concerns: (is incident, id).
    pub fn subject(&self) -> (bool, u64) {
        match self {
            Action::Supervise(t) | Action::Assign(t, _) | Action::Ack(t) => (false, *t),
            Action::Dispatch(i, _) => (true, *i),
            Action::Annotate(Place::Incident { incident_id }, _) => (true, *incident_id),
            Action::Annotate(Place::Ticket { ticket_id }, _) => (false, *ticket_id),
            // Shown with no ticket's or incident's panel (ids start at 1).
            Action::Annotate(..) => (false, 0),
        }
    }
}

/// Where a sent command stands, as the wall shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SentStatus {
    /// Sent; no answer yet.
    Pending,
    /// The gateway took it; the platform's answer is awaited.
    Accepted,
    /// The answer is on the feed at this seq.
    Confirmed(Seq),
    Rejected {
        error: String,
        reason: String,
    },
    TimedOut(String),
    /// No answer from the gateway at all (the link went down?).
    Lost,
}

impl SentStatus {
    pub fn is_pending(&self) -> bool {
        matches!(self, SentStatus::Pending | SentStatus::Accepted)
    }

    pub fn label(&self) -> String {
        match self {
            SentStatus::Pending => "⏳ 发送中 sending…".into(),
            SentStatus::Accepted => "⏳ 待确认 pending platform".into(),
            SentStatus::Confirmed(seq) => format!("✔ 已确认 confirmed (seq {seq})"),
            SentStatus::Rejected { error, reason } => {
                format!("✖ 未执行 rejected ({error}): {reason}")
            }
            SentStatus::TimedOut(why) => format!("⌛ 超时 timed out: {why}"),
            SentStatus::Lost => {
                "✖ 无应答 no answer from the gateway; check the feed and retry".into()
            }
        }
    }
}

/// A command the wall sent.
#[derive(Clone, Debug)]
pub struct Sent {
    pub id: String,
    pub action: Action,
    pub status: SentStatus,
    pub at: Instant,
}

/// Requests from the panels and the commands sent for them.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Asked for this frame (clicks, keys); the actions system takes them.
    pub requested: Vec<Action>,
    /// Newest last.
    pub sent: VecDeque<Sent>,
    next: u64,
}

impl Outbox {
    /// Record a command about to be sent; returns its id.
    pub fn record(&mut self, action: Action) -> String {
        self.next += 1;
        let id = format!("wall-{}-{}", std::process::id(), self.next);
        if self.sent.len() == KEEP {
            self.sent.pop_front();
        }
        self.sent.push_back(Sent {
            id: id.clone(),
            action,
            status: SentStatus::Pending,
            at: Instant::now(),
        });
        id
    }

    /// Take the gateway's answer.
    pub fn on_result(&mut self, r: &CommandResult) {
        let Some(s) = self.sent.iter_mut().find(|s| s.id == r.id) else {
            return;
        };
        s.status = match r.status {
            CommandStatus::Accepted => SentStatus::Accepted,
            CommandStatus::Confirmed => SentStatus::Confirmed(r.seq.unwrap_or(0)),
            CommandStatus::Rejected => SentStatus::Rejected {
                error: r.error.clone().unwrap_or_default(),
                reason: r.reason.clone().unwrap_or_default(),
            },
            CommandStatus::TimedOut => SentStatus::TimedOut(r.reason.clone().unwrap_or_default()),
        };
    }

    /// Commands the gateway never answered become `Lost`.
    pub fn expire(&mut self) {
        for s in &mut self.sent {
            if s.status == SentStatus::Pending && s.at.elapsed() > ANSWER_TIMEOUT {
                s.status = SentStatus::Lost;
            }
        }
    }

    /// The commands about a ticket or incident, newest first.
    pub fn about(&self, incident: bool, id: u64) -> impl Iterator<Item = &Sent> {
        self.sent
            .iter()
            .rev()
            .filter(move |s| s.action.subject() == (incident, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_move_a_command_along_and_unknown_ids_are_ignored() {
        let mut o = Outbox::default();
        let id = o.record(Action::Supervise(7));
        let answer = |status, seq| CommandResult {
            id: id.clone(),
            status,
            error: None,
            reason: None,
            seq,
            command_id: Some("cmd-1".into()),
        };
        o.on_result(&answer(CommandStatus::Accepted, None));
        assert!(o.sent[0].status.is_pending());
        o.on_result(&CommandResult {
            id: "someone-else".into(),
            ..answer(CommandStatus::Rejected, None)
        });
        assert_eq!(o.sent[0].status, SentStatus::Accepted);
        o.on_result(&answer(CommandStatus::Confirmed, Some(41)));
        assert_eq!(o.sent[0].status, SentStatus::Confirmed(41));
        assert_eq!(o.about(false, 7).count(), 1);
        assert_eq!(o.about(true, 7).count(), 0, "incident 7 is not ticket 7");
    }
}
