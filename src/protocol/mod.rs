//! Wire types of the feed: every domain event as a versioned, tagged JSON object (serde only).
//!
//! Each event is a JSON object whose `type` field names the event and its version
//! (`"ticket.opened.v1"`). A breaking change to an event gets a new type name; adding an
//! optional field does not. Times are milliseconds since the Unix epoch (UTC), positions are
//! WGS84 `[lon, lat]` in degrees. See `docs/PROTOCOL.md`.

use serde::{Deserialize, Serialize};

pub mod binary;
pub mod command;
pub mod entities;
pub mod session;
pub(crate) mod tagged;

/// Version of the event vocabulary in this module. Sent in the session `hello`.
pub const PROTOCOL_VERSION: u16 = 1;

/// Milliseconds since the Unix epoch, UTC.
pub type TimestampMs = i64;
/// Ticket id as issued by the ticket system.
pub type TicketId = u64;
/// Volunteer id from the county pack's roster.
pub type VolunteerId = u32;
/// Emergency-volunteer team id from the county pack.
pub type TeamId = u32;
/// Grid id from the county pack.
pub type GridId = u32;
/// Incident id as issued by the emergency desk.
pub type IncidentId = u64;

/// A WGS84 position, `[lon, lat]` in degrees on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "[f64; 2]", into = "[f64; 2]")]
pub struct LonLat {
    pub lon: f64,
    pub lat: f64,
}

impl LonLat {
    pub const fn new(lon: f64, lat: f64) -> Self {
        Self { lon, lat }
    }

    pub fn is_finite(&self) -> bool {
        self.lon.is_finite() && self.lat.is_finite()
    }
}

impl From<[f64; 2]> for LonLat {
    fn from([lon, lat]: [f64; 2]) -> Self {
        Self { lon, lat }
    }
}

impl From<LonLat> for [f64; 2] {
    fn from(p: LonLat) -> Self {
        [p.lon, p.lat]
    }
}

/// What a resident's ticket is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketCategory {
    /// 报修: something broken (water pipe, lift, street light).
    Repair,
    /// 求助: a resident needs help.
    Help,
    /// 意见反馈: feedback or a suggestion.
    Feedback,
    /// 矛盾纠纷: a dispute between neighbours.
    Dispute,
    /// 环境卫生: rubbish, sanitation.
    Sanitation,
    /// 物业: a property-management complaint.
    Property,
}

impl TicketCategory {
    pub const ALL: [TicketCategory; 6] = [
        Self::Repair,
        Self::Help,
        Self::Feedback,
        Self::Dispute,
        Self::Sanitation,
        Self::Property,
    ];

    /// The Chinese label shown on the wall.
    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Repair => "报修",
            Self::Help => "求助",
            Self::Feedback => "意见反馈",
            Self::Dispute => "矛盾纠纷",
            Self::Sanitation => "环境卫生",
            Self::Property => "物业",
        }
    }
}

/// Where a ticket came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketSource {
    /// The residents' phone mini-program (one-tap report).
    MiniProgram,
    /// The community hotline.
    Hotline,
    /// A grid worker's patrol.
    Patrol,
    /// The residents' wish list (微心愿).
    WishList,
}

impl TicketSource {
    pub const ALL: [TicketSource; 4] = [
        Self::MiniProgram,
        Self::Hotline,
        Self::Patrol,
        Self::WishList,
    ];

    pub fn label_zh(self) -> &'static str {
        match self {
            Self::MiniProgram => "小程序",
            Self::Hotline => "热线",
            Self::Patrol => "网格巡查",
            Self::WishList => "微心愿",
        }
    }
}

/// Ticket priority; weights the heatmap and orders lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Self::Low, Self::Normal, Self::High, Self::Urgent];
}

/// Volunteer duty status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolunteerStatus {
    Available,
    Responding,
    OffDuty,
}

/// Kind of emergency incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    Fire,
    BurstPipe,
    Flood,
    Medical,
    PublicHealth,
}

impl IncidentKind {
    pub const ALL: [IncidentKind; 5] = [
        Self::Fire,
        Self::BurstPipe,
        Self::Flood,
        Self::Medical,
        Self::PublicHealth,
    ];

    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Fire => "火情",
            Self::BurstPipe => "爆管",
            Self::Flood => "内涝",
            Self::Medical => "急救",
            Self::PublicHealth => "公共卫生",
        }
    }
}

/// Incident severity, 1 (minor) to 4 (major) on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Minor,
    Moderate,
    Serious,
    Major,
}

/// How an incident ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentOutcome {
    Resolved,
    HandedOver,
    FalseAlarm,
    DrillCompleted,
}

/// A ticket was reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketOpened {
    pub ticket_id: TicketId,
    pub at_ms: TimestampMs,
    pub category: TicketCategory,
    pub source: TicketSource,
    pub priority: Priority,
    pub pos: LonLat,
    /// The grid the ticket system filed it under; when absent the wall locates it by position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_id: Option<GridId>,
    /// Time limit: the ticket is overdue after this instant unless resolved.
    pub sla_deadline_ms: TimestampMs,
    /// One line the resident wrote.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// Responsible party for building tickets (property company, owner committee, custodian).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsible_party: Option<String>,
}

/// A ticket was handed to a person (grid worker, officer, crew).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketDispatched {
    pub ticket_id: TicketId,
    pub at_ms: TimestampMs,
    pub assignee: String,
    /// Set when the assignee is a volunteer from the roster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volunteer_id: Option<VolunteerId>,
    /// The operator's command this answers (`ticket.assign.v1`), when it answers one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

/// The assignee arrived at the ticket's location.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketOnSite {
    pub ticket_id: TicketId,
    pub at_ms: TimestampMs,
}

/// The ticket was resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketResolved {
    pub ticket_id: TicketId,
    pub at_ms: TimestampMs,
    /// Resident's satisfaction 1..=5 when given at resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satisfaction: Option<u8>,
}

/// The ticket was escalated to a higher level (community, county department).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketEscalated {
    pub ticket_id: TicketId,
    pub at_ms: TimestampMs,
    pub reason: String,
    /// A new time limit when the escalation extends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_deadline_ms: Option<TimestampMs>,
}

/// A resolved ticket was reopened by the resident or a check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketReopened {
    pub ticket_id: TicketId,
    pub at_ms: TimestampMs,
    pub reason: String,
    pub sla_deadline_ms: TimestampMs,
}

/// The resident rated a resolved ticket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketRated {
    pub ticket_id: TicketId,
    pub at_ms: TimestampMs,
    pub satisfaction: u8,
}

/// A position fix from a volunteer's phone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolunteerFix {
    pub volunteer_id: VolunteerId,
    pub at_ms: TimestampMs,
    pub pos: LonLat,
}

/// A volunteer's duty status changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolunteerStatusChanged {
    pub volunteer_id: VolunteerId,
    pub at_ms: TimestampMs,
    pub status: VolunteerStatus,
    /// What the volunteer is responding to, when responding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
}

/// What a responding volunteer works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Task {
    Ticket(TicketId),
    Incident(IncidentId),
}

/// An emergency incident was opened by the emergency desk (or a drill started).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentOpened {
    pub incident_id: IncidentId,
    pub at_ms: TimestampMs,
    pub kind: IncidentKind,
    pub severity: Severity,
    pub pos: LonLat,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// A drill, not a real emergency.
    #[serde(default)]
    pub drill: bool,
    /// Target time from alarm to closure, seconds (e.g. 900 for the fire drill).
    pub target_secs: u32,
}

/// Teams were mobilized to an incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentMobilized {
    pub incident_id: IncidentId,
    pub at_ms: TimestampMs,
    pub team_ids: Vec<TeamId>,
    /// The operator's command this answers (`incident.dispatch.v1`), when it answers one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

/// An incident's severity changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentSeverityChanged {
    pub incident_id: IncidentId,
    pub at_ms: TimestampMs,
    pub severity: Severity,
}

/// An incident was closed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentClosed {
    pub incident_id: IncidentId,
    pub at_ms: TimestampMs,
    pub outcome: IncidentOutcome,
}

/// The command centre supervised (督办) a ticket: the platform pushed it to its responsible
/// party with the note.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketSupervised {
    pub ticket_id: TicketId,
    pub at_ms: TimestampMs,
    /// Who supervised it (the operator's name as the gateway knows it).
    pub by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Whom the platform pushed it to (responsible party or grid worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

/// Who an alert has reached on the ladder 社区 → 街道/镇 → 县.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    /// 社区: the community that owns the ticket.
    Community,
    /// 街道/镇: the town or street office above it.
    Town,
    /// 县: the county command centre.
    County,
}

impl AlertLevel {
    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Community => "社区",
            Self::Town => "街道/镇",
            Self::County => "县",
        }
    }

    /// The next rung, if any.
    pub fn next(self) -> Option<Self> {
        match self {
            Self::Community => Some(Self::Town),
            Self::Town => Some(Self::County),
            Self::County => None,
        }
    }
}

/// A ticket passed its time limit: a breach alert, raised (or raised again: `trigger` counts
/// the times) by the gateway's alert engine. It needs an acknowledgement for this trigger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRaised {
    pub alert_id: String,
    pub at_ms: TimestampMs,
    pub ticket_id: TicketId,
    /// The time limit that was passed.
    pub deadline_ms: TimestampMs,
    pub level: AlertLevel,
    /// 1 the first time; each re-trigger (the ticket breached again) adds one.
    pub trigger: u32,
}

/// An unacknowledged alert climbed the ladder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEscalated {
    pub alert_id: String,
    pub at_ms: TimestampMs,
    pub level: AlertLevel,
    pub trigger: u32,
}

/// An operator acknowledged an alert (for one trigger of it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertAcked {
    pub alert_id: String,
    pub at_ms: TimestampMs,
    pub trigger: u32,
    pub by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

/// An operator pinned a note to a moment and a place; the gateway writes it (see
/// [`command::Command::AnnotationAdd`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnotationAdded {
    pub annotation_id: String,
    /// When it was written.
    pub at_ms: TimestampMs,
    /// The moment it is about.
    pub moment_ms: TimestampMs,
    pub place: entities::Place,
    /// Where it shows on the map.
    pub pos: LonLat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_id: Option<GridId>,
    pub text: String,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

/// An operator took a note down.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnotationRemoved {
    pub annotation_id: String,
    pub at_ms: TimestampMs,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

/// Every domain event on the feed.
///
/// Unknown event types decode to [`Event::Unknown`] so a client can count and drop them
/// instead of failing the whole batch.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "ticket.opened.v1")]
    TicketOpened(TicketOpened),
    #[serde(rename = "ticket.dispatched.v1")]
    TicketDispatched(TicketDispatched),
    #[serde(rename = "ticket.on_site.v1")]
    TicketOnSite(TicketOnSite),
    #[serde(rename = "ticket.resolved.v1")]
    TicketResolved(TicketResolved),
    #[serde(rename = "ticket.escalated.v1")]
    TicketEscalated(TicketEscalated),
    #[serde(rename = "ticket.reopened.v1")]
    TicketReopened(TicketReopened),
    #[serde(rename = "ticket.rated.v1")]
    TicketRated(TicketRated),
    #[serde(rename = "volunteer.fix.v1")]
    VolunteerFix(VolunteerFix),
    #[serde(rename = "volunteer.status.v1")]
    VolunteerStatus(VolunteerStatusChanged),
    #[serde(rename = "incident.opened.v1")]
    IncidentOpened(IncidentOpened),
    #[serde(rename = "incident.mobilized.v1")]
    IncidentMobilized(IncidentMobilized),
    #[serde(rename = "incident.severity.v1")]
    IncidentSeverity(IncidentSeverityChanged),
    #[serde(rename = "incident.closed.v1")]
    IncidentClosed(IncidentClosed),
    #[serde(rename = "ticket.supervised.v1")]
    TicketSupervised(TicketSupervised),
    #[serde(rename = "alert.raised.v1")]
    AlertRaised(AlertRaised),
    #[serde(rename = "alert.escalated.v1")]
    AlertEscalated(AlertEscalated),
    #[serde(rename = "alert.acked.v1")]
    AlertAcked(AlertAcked),
    #[serde(rename = "annotation.added.v1")]
    AnnotationAdded(AnnotationAdded),
    #[serde(rename = "annotation.removed.v1")]
    AnnotationRemoved(AnnotationRemoved),
    /// A type this build does not know (newer server); counted and dropped by clients.
    #[serde(other)]
    Unknown,
}

tagged::tagged_deserialize!(Event, "a feed event object with a `type`", {
    "ticket.opened.v1" => TicketOpened,
    "ticket.dispatched.v1" => TicketDispatched,
    "ticket.on_site.v1" => TicketOnSite,
    "ticket.resolved.v1" => TicketResolved,
    "ticket.escalated.v1" => TicketEscalated,
    "ticket.reopened.v1" => TicketReopened,
    "ticket.rated.v1" => TicketRated,
    "volunteer.fix.v1" => VolunteerFix,
    "volunteer.status.v1" => VolunteerStatus,
    "incident.opened.v1" => IncidentOpened,
    "incident.mobilized.v1" => IncidentMobilized,
    "incident.severity.v1" => IncidentSeverity,
    "incident.closed.v1" => IncidentClosed,
    "ticket.supervised.v1" => TicketSupervised,
    "alert.raised.v1" => AlertRaised,
    "alert.escalated.v1" => AlertEscalated,
    "alert.acked.v1" => AlertAcked,
    "annotation.added.v1" => AnnotationAdded,
    "annotation.removed.v1" => AnnotationRemoved,
}, unknown => Unknown);

impl Event {
    /// The ticket the event is about, if it is a ticket event.
    pub fn ticket_id(&self) -> Option<TicketId> {
        Some(match self {
            Event::TicketOpened(x) => x.ticket_id,
            Event::TicketDispatched(x) => x.ticket_id,
            Event::TicketOnSite(x) => x.ticket_id,
            Event::TicketResolved(x) => x.ticket_id,
            Event::TicketEscalated(x) => x.ticket_id,
            Event::TicketReopened(x) => x.ticket_id,
            Event::TicketRated(x) => x.ticket_id,
            Event::TicketSupervised(x) => x.ticket_id,
            _ => return None,
        })
    }

    /// The event's own timestamp, `None` for [`Event::Unknown`].
    pub fn at_ms(&self) -> Option<TimestampMs> {
        Some(match self {
            Event::TicketOpened(e) => e.at_ms,
            Event::TicketDispatched(e) => e.at_ms,
            Event::TicketOnSite(e) => e.at_ms,
            Event::TicketResolved(e) => e.at_ms,
            Event::TicketEscalated(e) => e.at_ms,
            Event::TicketReopened(e) => e.at_ms,
            Event::TicketRated(e) => e.at_ms,
            Event::VolunteerFix(e) => e.at_ms,
            Event::VolunteerStatus(e) => e.at_ms,
            Event::IncidentOpened(e) => e.at_ms,
            Event::IncidentMobilized(e) => e.at_ms,
            Event::IncidentSeverity(e) => e.at_ms,
            Event::IncidentClosed(e) => e.at_ms,
            Event::TicketSupervised(e) => e.at_ms,
            Event::AlertRaised(e) => e.at_ms,
            Event::AlertEscalated(e) => e.at_ms,
            Event::AlertAcked(e) => e.at_ms,
            Event::AnnotationAdded(e) => e.at_ms,
            Event::AnnotationRemoved(e) => e.at_ms,
            Event::Unknown => return None,
        })
    }

    /// The wire `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::TicketOpened(_) => "ticket.opened.v1",
            Event::TicketDispatched(_) => "ticket.dispatched.v1",
            Event::TicketOnSite(_) => "ticket.on_site.v1",
            Event::TicketResolved(_) => "ticket.resolved.v1",
            Event::TicketEscalated(_) => "ticket.escalated.v1",
            Event::TicketReopened(_) => "ticket.reopened.v1",
            Event::TicketRated(_) => "ticket.rated.v1",
            Event::VolunteerFix(_) => "volunteer.fix.v1",
            Event::VolunteerStatus(_) => "volunteer.status.v1",
            Event::IncidentOpened(_) => "incident.opened.v1",
            Event::IncidentMobilized(_) => "incident.mobilized.v1",
            Event::IncidentSeverity(_) => "incident.severity.v1",
            Event::IncidentClosed(_) => "incident.closed.v1",
            Event::TicketSupervised(_) => "ticket.supervised.v1",
            Event::AlertRaised(_) => "alert.raised.v1",
            Event::AlertEscalated(_) => "alert.escalated.v1",
            Event::AlertAcked(_) => "alert.acked.v1",
            Event::AnnotationAdded(_) => "annotation.added.v1",
            Event::AnnotationRemoved(_) => "annotation.removed.v1",
            Event::Unknown => "unknown",
        }
    }

    /// The operator's command this event answers, if any.
    pub fn command_id(&self) -> Option<&str> {
        match self {
            Event::TicketDispatched(e) => e.command_id.as_deref(),
            Event::IncidentMobilized(e) => e.command_id.as_deref(),
            Event::TicketSupervised(e) => e.command_id.as_deref(),
            Event::AlertAcked(e) => e.command_id.as_deref(),
            Event::AnnotationAdded(e) => e.command_id.as_deref(),
            Event::AnnotationRemoved(e) => e.command_id.as_deref(),
            _ => None,
        }
    }

    /// Position fixes may be conflated under load; everything else is lossless.
    pub fn is_conflatable(&self) -> bool {
        matches!(self, Event::VolunteerFix(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lonlat_is_an_array_on_the_wire() {
        let json = serde_json::to_string(&LonLat::new(106.54, 38.9)).unwrap();
        assert_eq!(json, "[106.54,38.9]");
    }

    #[test]
    fn unknown_type_decodes_to_unknown() {
        let e: Event =
            serde_json::from_str(r#"{"type":"ticket.teleported.v9","ticket_id":1}"#).unwrap();
        assert_eq!(e, Event::Unknown);
        assert_eq!(e.at_ms(), None);
    }

    #[test]
    fn missing_field_is_an_error_not_a_default() {
        let r: Result<Event, _> =
            serde_json::from_str(r#"{"type":"ticket.on_site.v1","ticket_id":1}"#);
        assert!(r.unwrap_err().to_string().contains("at_ms"));
    }
}
