//! Live entities as the snapshot carries them: tickets with their step trace, volunteers'
//! live status, incidents (serde only; the model mutates them through `apply`).

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

/// Text shared by every ticket that carries it, behind one thin pointer (8 bytes in the
/// ticket, a `None` included, where an `Arc<str>` takes 16): with the step inline, a ticket
/// record (with its reference counts) fits the allocator's 144-byte class.
pub type Text = arcstr::ArcStr;

/// A time that may be absent, in 8 bytes where an `Option<TimestampMs>` takes 16: the oldest
/// millisecond `i64` holds (292 million years before 1970, a time no feed carries) is none.
/// On the wire it is an optional number, as an `Option` is.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MaybeMs(Option<std::num::NonZeroI64>);

impl MaybeMs {
    pub const NONE: Self = Self(None);

    /// `at_ms`; the oldest millisecond `i64` holds stands for the next one.
    pub fn at(at_ms: TimestampMs) -> Self {
        // Shifted so that `i64::MIN` is the none and every other time keeps its value.
        Self(std::num::NonZeroI64::new(
            at_ms.max(TimestampMs::MIN + 1) ^ TimestampMs::MIN,
        ))
    }

    pub fn get(self) -> Option<TimestampMs> {
        self.0.map(|v| v.get() ^ TimestampMs::MIN)
    }

    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }

    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl From<Option<TimestampMs>> for MaybeMs {
    fn from(v: Option<TimestampMs>) -> Self {
        v.map_or(Self::NONE, Self::at)
    }
}

impl std::fmt::Debug for MaybeMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl Serialize for MaybeMs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> Deserialize<'de> for MaybeMs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<TimestampMs>::deserialize(d).map(Self::from)
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
    /// Shared text ([`Text`]): a snapshot's tickets with the same assignee, summary or
    /// party point at one copy.
    pub assignee: Option<Text>,
    pub volunteer_id: Option<VolunteerId>,
    pub satisfaction: Option<u8>,
    pub summary: Text,
    pub responsible_party: Option<Text>,
    /// Every step with its time, oldest first; the first is `Opened`.
    #[serde(with = "steps")]
    pub steps: Steps,
    /// Last time the command centre supervised (督办) it.
    #[serde(default, skip_serializing_if = "MaybeMs::is_none")]
    pub supervised_at_ms: MaybeMs,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_time_keeps_every_time_but_the_oldest_and_travels_as_an_option() {
        for t in [
            0,
            1,
            -1,
            1_764_140_400_000,
            TimestampMs::MAX,
            TimestampMs::MIN + 1,
        ] {
            let m = MaybeMs::at(t);
            assert_eq!(m.get(), Some(t));
            assert!(m.is_some() && !m.is_none());
            assert_eq!(serde_json::to_string(&m).unwrap(), t.to_string());
            assert_eq!(serde_json::from_str::<MaybeMs>(&t.to_string()).unwrap(), m);
        }
        assert_eq!(
            MaybeMs::at(TimestampMs::MIN).get(),
            Some(TimestampMs::MIN + 1)
        );
        assert_eq!(MaybeMs::NONE.get(), None);
        assert_eq!(MaybeMs::from(None), MaybeMs::NONE);
        assert_eq!(serde_json::to_string(&MaybeMs::NONE).unwrap(), "null");
        assert_eq!(
            serde_json::from_str::<MaybeMs>("null").unwrap(),
            MaybeMs::NONE
        );
        assert_eq!(format!("{:?}", MaybeMs::at(5)), "Some(5)");
    }

    #[test]
    fn a_ticket_with_its_reference_counts_fits_the_allocators_144_byte_class() {
        // glibc's malloc rounds a request plus its 8-byte header up to 16: `Arc<Ticket>`
        // (two counts and the ticket) of at most 136 bytes takes a 144-byte chunk, where the
        // ticket with wide texts and a 16-byte optional time took 176.
        assert!(std::mem::size_of::<Ticket>() + 16 <= 136);
        assert_eq!(std::mem::size_of::<Option<Text>>(), 8);
        assert_eq!(std::mem::size_of::<MaybeMs>(), 8);
        assert_eq!(std::mem::size_of::<Steps>(), 24);
    }
}
