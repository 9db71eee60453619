//! Live entities as the snapshot carries them: tickets with their step trace, volunteers'
//! live status, incidents (serde only; the model mutates them through `apply`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{
    AlertLevel, AnnotationAdded, GridId, IncidentId, IncidentKind, IncidentOutcome, LonLat,
    Priority, Severity, Task, TeamId, TicketCategory, TicketId, TicketSource, TimestampMs,
    VolunteerId, VolunteerStatus,
};

/// Where a ticket is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Opened,
    Dispatched,
    OnSite,
    Resolved,
    Escalated,
    Reopened,
}

impl TicketStatus {
    pub fn is_open(self) -> bool {
        self != TicketStatus::Resolved
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Opened => "已上报",
            Self::Dispatched => "已派单",
            Self::OnSite => "已到场",
            Self::Resolved => "已办结",
            Self::Escalated => "已升级",
            Self::Reopened => "已重开",
        }
    }
}

/// A ticket's trace: the first step (every ticket has it) held in the ticket itself, more on
/// the heap. Most tickets have one or two: a million of them save a million small
/// allocations (about 32 MB with the allocator's own bytes) over a `Vec`.
pub type Steps = smallvec::SmallVec<[TicketStep; 1]>;

/// One step in a ticket's trace.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketStep {
    pub status: TicketStatus,
    pub at_ms: TimestampMs,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: TicketId,
    pub category: TicketCategory,
    pub source: TicketSource,
    pub priority: Priority,
    pub pos: LonLat,
    pub grid_id: Option<GridId>,
    pub status: TicketStatus,
    pub opened_at_ms: TimestampMs,
    pub sla_deadline_ms: TimestampMs,
    /// Shared text (`Arc<str>`): a snapshot's tickets with the same assignee, summary or
    /// party point at one copy.
    #[serde(with = "shared_str::option")]
    pub assignee: Option<Arc<str>>,
    pub volunteer_id: Option<VolunteerId>,
    pub satisfaction: Option<u8>,
    #[serde(with = "shared_str")]
    pub summary: Arc<str>,
    #[serde(with = "shared_str::option")]
    pub responsible_party: Option<Arc<str>>,
    /// Every step with its time, oldest first; the first is `Opened`.
    #[serde(with = "steps")]
    pub steps: Steps,
    /// Last time the command centre supervised (督办) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervised_at_ms: Option<TimestampMs>,
}

impl Ticket {
    /// Time of the latest step.
    pub fn last_at_ms(&self) -> TimestampMs {
        self.steps.last().map_or(self.opened_at_ms, |s| s.at_ms)
    }

    /// First time the ticket reached `status`.
    pub fn first_at_ms(&self, status: TicketStatus) -> Option<TimestampMs> {
        self.steps
            .iter()
            .find(|s| s.status == status)
            .map(|s| s.at_ms)
    }

    /// Whether it is open and past its time limit at `now_ms`.
    pub fn is_overdue(&self, now_ms: TimestampMs) -> bool {
        self.status.is_open() && now_ms > self.sla_deadline_ms
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Volunteer {
    pub id: VolunteerId,
    pub team_id: TeamId,
    pub status: VolunteerStatus,
    pub pos: Option<LonLat>,
    pub grid_id: Option<GridId>,
    pub last_fix_ms: Option<TimestampMs>,
    pub last_at_ms: TimestampMs,
    pub task: Option<Task>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mobilization {
    pub team_id: TeamId,
    pub at_ms: TimestampMs,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub kind: IncidentKind,
    pub severity: Severity,
    pub pos: LonLat,
    pub grid_id: Option<GridId>,
    pub title: String,
    pub drill: bool,
    pub target_secs: u32,
    pub opened_at_ms: TimestampMs,
    pub teams: Vec<Mobilization>,
    pub closed_at_ms: Option<TimestampMs>,
    pub outcome: Option<IncidentOutcome>,
    pub last_at_ms: TimestampMs,
}

/// An acknowledgement of an alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertAck {
    pub by: String,
    pub at_ms: TimestampMs,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// A breach alert on a ticket: new → acknowledged (by whom) → resolved (the ticket was).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub ticket_id: TicketId,
    pub deadline_ms: TimestampMs,
    pub level: AlertLevel,
    pub trigger: u32,
    /// When this trigger was raised.
    pub raised_at_ms: TimestampMs,
    /// When it last climbed the ladder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at_ms: Option<TimestampMs>,
    /// The acknowledgement of this trigger, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked: Option<AlertAck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at_ms: Option<TimestampMs>,
}

/// Where an alert is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertState {
    New,
    Acknowledged,
    Resolved,
}

impl Alert {
    pub fn state(&self) -> AlertState {
        if self.resolved_at_ms.is_some() {
            AlertState::Resolved
        } else if self.acked.is_some() {
            AlertState::Acknowledged
        } else {
            AlertState::New
        }
    }
}

/// Where an operator's note is pinned: a grid, a ticket, an incident or a point on the map.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Place {
    Grid { grid_id: GridId },
    Ticket { ticket_id: TicketId },
    Incident { incident_id: IncidentId },
    Point { pos: LonLat },
}

// Positions on the wire are finite (the model refuses others), so equality is total.
impl Eq for Place {}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Grid { grid_id } => write!(f, "grid {grid_id}"),
            Place::Ticket { ticket_id } => write!(f, "ticket {ticket_id}"),
            Place::Incident { incident_id } => write!(f, "incident {incident_id}"),
            Place::Point { pos } => write!(f, "[{:.5}, {:.5}]", pos.lon, pos.lat),
        }
    }
}

/// An operator's note pinned to a moment and a place (an annotation): on the timeline at
/// `moment_ms`, on the map at `pos`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub id: String,
    /// The moment it is about (at or before `at_ms`).
    pub moment_ms: TimestampMs,
    pub place: Place,
    /// Where it shows on the map (the place's position when it was written).
    pub pos: LonLat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_id: Option<GridId>,
    pub text: String,
    /// Who wrote it (the operator token's name).
    pub by: String,
    /// When it was written.
    pub at_ms: TimestampMs,
}

impl From<&AnnotationAdded> for Annotation {
    fn from(e: &AnnotationAdded) -> Self {
        Self {
            id: e.annotation_id.clone(),
            moment_ms: e.moment_ms,
            place: e.place,
            pos: e.pos,
            grid_id: e.grid_id,
            text: e.text.clone(),
            by: e.by.clone(),
            at_ms: e.at_ms,
        }
    }
}

/// Text held as `Arc<str>` on the wire: a plain JSON string.
/// [`Steps`] on the wire: a sequence, as a `Vec` is.
mod steps {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    use super::{Steps, TicketStep};

    pub fn serialize<S: Serializer>(v: &Steps, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Steps, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Steps;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sequence of ticket steps")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Steps, A::Error> {
                let mut steps = Steps::new();
                while let Some(s) = seq.next_element::<TicketStep>()? {
                    steps.push(s);
                }
                Ok(steps)
            }
        }
        d.deserialize_seq(V)
    }
}

pub(crate) mod shared_str {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        Ok(Arc::from(String::deserialize(d)?))
    }

    pub mod option {
        use std::sync::Arc;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_some(&**v),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
            Ok(Option::<String>::deserialize(d)?.map(Arc::from))
        }
    }
}
