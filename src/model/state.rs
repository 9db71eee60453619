//! The live state of the county (tickets, volunteers, incidents) and `apply(event)`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::protocol::entities::Text;

use super::County;
use super::time_blocks::TimeBlocks;
pub use crate::protocol::entities::{
    Alert, AlertAck, AlertState, Annotation, Incident, Mobilization, Place, Ticket, TicketStatus,
    TicketStep, Volunteer,
};
use crate::protocol::{
    AlertLevel, Event, GridId, IncidentId, LonLat, Severity, TeamId, TicketId, TimestampMs,
    VolunteerId, VolunteerStatus,
};

/// Every ticket of the model by the id it carries (one pointer a slot; see
/// [`super::ticket_map`]).
pub use super::ticket_map::TicketMap;

/// Which entity an error or change concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntityRef {
    Ticket(TicketId),
    Volunteer(VolunteerId),
    Incident(IncidentId),
    /// The breach alert of a ticket.
    Alert(TicketId),
    /// An operator's note (its id is in the error's text).
    Annotation,
}

impl std::fmt::Display for EntityRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntityRef::Ticket(id) => write!(f, "ticket {id}"),
            EntityRef::Volunteer(id) => write!(f, "volunteer {id}"),
            EntityRef::Incident(id) => write!(f, "incident {id}"),
            EntityRef::Alert(id) => write!(f, "alert {}", breach_alert_id(*id)),
            EntityRef::Annotation => write!(f, "note"),
        }
    }
}

/// Why an event was rejected. The state is unchanged when `apply` returns one.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ApplyError {
    #[error("unknown event type (newer server?); dropped")]
    UnknownEventType,
    #[error("{0} is not known")]
    UnknownEntity(EntityRef),
    #[error("{0} already exists")]
    Duplicate(EntityRef),
    #[error("unknown grid {0}")]
    UnknownGrid(GridId),
    #[error("unknown team {0}")]
    UnknownTeam(TeamId),
    #[error("{entity}: coordinate [{lon}, {lat}] is not a finite number")]
    NonFiniteCoordinate {
        entity: EntityRef,
        lon: f64,
        lat: f64,
    },
    #[error("{entity}: position [{lon}, {lat}] is outside the county")]
    OutsideCounty {
        entity: EntityRef,
        lon: f64,
        lat: f64,
    },
    #[error("{entity}: event at {at_ms} is older than its last event at {last_ms}")]
    TimeWentBackwards {
        entity: EntityRef,
        at_ms: TimestampMs,
        last_ms: TimestampMs,
    },
    #[error("{entity}: cannot go from {from:?} by {event}")]
    InvalidTransition {
        entity: EntityRef,
        from: TicketStatus,
        event: &'static str,
    },
    #[error("{entity}: {what}")]
    InvalidField { entity: EntityRef, what: String },
    #[error("{0} is closed")]
    Closed(EntityRef),
}

/// What an accepted event changed; the wall uses it to redraw only what moved.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Ticket {
        id: TicketId,
        grid_id: Option<GridId>,
        from: Option<TicketStatus>,
        to: TicketStatus,
    },
    TicketRated {
        id: TicketId,
        grid_id: Option<GridId>,
        satisfaction: u8,
    },
    VolunteerMoved {
        id: VolunteerId,
        from: Option<LonLat>,
        to: LonLat,
        grid_id: Option<GridId>,
    },
    VolunteerStatus {
        id: VolunteerId,
        from: VolunteerStatus,
        to: VolunteerStatus,
    },
    IncidentOpened {
        id: IncidentId,
        grid_id: Option<GridId>,
    },
    IncidentMobilized {
        id: IncidentId,
        team_ids: Vec<TeamId>,
    },
    IncidentSeverity {
        id: IncidentId,
        from: Severity,
        to: Severity,
    },
    IncidentClosed {
        id: IncidentId,
    },
    TicketSupervised {
        id: TicketId,
        grid_id: Option<GridId>,
    },
    /// A ticket's alert was raised, climbed, or was acknowledged.
    Alert {
        ticket_id: TicketId,
        state: AlertState,
        level: AlertLevel,
    },
    /// An operator's note was pinned (`added`) or taken down.
    Annotation {
        id: String,
        added: bool,
    },
}

/// The id of a ticket's breach alert (`sla-<ticket id>`).
pub fn breach_alert_id(ticket_id: TicketId) -> String {
    format!("sla-{ticket_id}")
}

/// The ticket a breach alert id names, if it is one.
pub fn breach_alert_ticket(alert_id: &str) -> Option<TicketId> {
    alert_id.strip_prefix("sla-")?.parse().ok()
}

/// Resolved alerts stay this long (feed time) after their ticket was resolved.
pub const RESOLVED_ALERT_RETENTION_MS: TimestampMs = 3_600_000;
/// Resolved tickets and closed incidents leave the live state this long (feed time) after
/// they were resolved or closed: every figure looks back at most a day (today, the last 24
/// hours), so they are still counted, and a week of feed does not grow the state.
pub const RESOLVED_RETENTION_MS: TimestampMs = 24 * 3_600_000;
/// How often (feed time) the state drops what has passed its retention: when an event's time
/// enters a new period of this length. The same events prune the same things everywhere.
pub const PRUNE_EVERY_MS: TimestampMs = 60_000;
/// Operators' notes leave the live state this long (feed time) after they were written: the
/// history keeps a week, and so do the walls' timelines.
pub const ANNOTATION_RETENTION_MS: TimestampMs = 7 * 24 * 3_600_000;
/// Most notes a gateway takes (it refuses more until some are taken down or age out).
pub const MAX_ANNOTATIONS: usize = 10_000;
/// Pruned ids kept for [`LiveState::take_pruned`] when nobody takes them.
const PRUNED_KEPT: usize = 1 << 16;

/// What a prune removed, for whoever indexes the state (the wall's analytics store).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pruned {
    pub tickets: Vec<TicketId>,
    pub incidents: Vec<IncidentId>,
}

/// The ladder: an alert unacknowledged this long after it was raised reaches 街道/镇…
pub const LADDER_TOWN_AFTER_MS: TimestampMs = 10 * 60_000;
/// …and this long after, 县.
pub const LADDER_COUNTY_AFTER_MS: TimestampMs = 30 * 60_000;

/// When an alert raised at `raised_at_ms` and now at `level` climbs next, if it does.
pub fn ladder_due_ms(raised_at_ms: TimestampMs, level: AlertLevel) -> Option<TimestampMs> {
    match level {
        AlertLevel::Community => Some(raised_at_ms + LADDER_TOWN_AFTER_MS),
        AlertLevel::Town => Some(raised_at_ms + LADDER_COUNTY_AFTER_MS),
        AlertLevel::County => None,
    }
}

/// Whether a state keeps the index of open tickets' time limits that
/// [`LiveState::alerts_due`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreachWatch {
    /// A gateway's state: its alert engine raises breach alerts from it.
    Kept,
    /// A wall's mirror: its gateway raises the alerts and the wall applies them, so no index
    /// is kept (a B-tree of about 18 MB at a million open tickets); `alerts_due` raises no
    /// breach from such a state.
    Off,
}

/// Live state of one county.
#[derive(Clone, Debug)]
pub struct LiveState {
    county: Arc<County>,
    /// Shared so a copy of the state (a snapshot being encoded, the analytics) costs a pointer
    /// per ticket; a ticket changed while shared is copied on write.
    pub tickets: TicketMap,
    pub volunteers: Vec<Volunteer>,
    volunteer_slot: foldhash::HashMap<VolunteerId, usize>,
    pub incidents: HashMap<IncidentId, Incident>,
    /// Breach alerts by ticket (open ones, and resolved ones for an hour).
    pub alerts: HashMap<TicketId, Alert>,
    /// Open tickets whose current time limit has not raised an alert: (deadline, ticket).
    /// `None` where no alert engine reads it ([`BreachWatch::Off`]: a wall's mirror).
    pending_breach: Option<TimeBlocks<TicketId>>,
    /// Unacknowledged alerts by when they climb next: (due, ticket).
    ladder: BTreeSet<(TimestampMs, TicketId)>,
    /// Resolved alerts by when: (resolved at, ticket).
    resolved_alerts: BTreeSet<(TimestampMs, TicketId)>,
    /// Resolved tickets by when: (resolved at, ticket).
    resolved_tickets: BTreeSet<(TimestampMs, TicketId)>,
    /// Closed incidents by when: (closed at, incident).
    closed_incidents: BTreeSet<(TimestampMs, IncidentId)>,
    /// Operators' notes by id.
    pub annotations: BTreeMap<String, Annotation>,
    /// Notes by when they were written: (at, id).
    annotations_by_time: BTreeSet<(TimestampMs, String)>,
    /// Removed by prunes and not taken yet.
    pruned: Pruned,
    /// Latest event time seen (ms), the state's notion of "now" without a clock.
    pub latest_event_ms: TimestampMs,
    pub applied: u64,
    /// Assignees' and responsible parties' names, each held once for all their tickets.
    names: Names,
    /// Summaries that recur (a one-tap report's or a template's text), each held once.
    summaries: Names<MAX_SHARED_SUMMARIES>,
}

/// Texts that recur on many tickets, each held once (up to `CAP` of them; past that a text is
/// kept per ticket, so a producer sending endless new texts cannot grow the set).
#[derive(Clone, Debug, Default)]
struct Names<const CAP: usize = MAX_NAMES>(foldhash::HashSet<Text>);

const MAX_NAMES: usize = 1 << 16;
/// Summaries are free text, up to [`MAX_TEXT_CHARS`] each: fewer are kept shared.
const MAX_SHARED_SUMMARIES: usize = 1 << 12;

impl<const CAP: usize> Names<CAP> {
    fn get(&mut self, name: &str) -> Text {
        if let Some(n) = self.0.get(name) {
            return n.clone();
        }
        let n = Text::from(name);
        if self.0.len() < CAP {
            self.0.insert(n.clone());
        }
        n
    }

    fn share(&mut self, name: &mut Option<Text>) {
        if let Some(n) = name.as_deref() {
            *name = Some(self.get(n));
        }
    }

    fn share_text(&mut self, text: &mut Text) {
        *text = self.get(text);
    }
}

fn check_pos(entity: EntityRef, pos: LonLat, county: &County) -> Result<(), ApplyError> {
    if !pos.is_finite() {
        return Err(ApplyError::NonFiniteCoordinate {
            entity,
            lon: pos.lon,
            lat: pos.lat,
        });
    }
    if !county.mask.contains(pos) {
        return Err(ApplyError::OutsideCounty {
            entity,
            lon: pos.lon,
            lat: pos.lat,
        });
    }
    Ok(())
}

fn check_time(
    entity: EntityRef,
    at_ms: TimestampMs,
    last_ms: TimestampMs,
) -> Result<(), ApplyError> {
    if at_ms < last_ms {
        return Err(ApplyError::TimeWentBackwards {
            entity,
            at_ms,
            last_ms,
        });
    }
    Ok(())
}

/// Longest free text in an event, characters: a summary, note or reason…
pub const MAX_TEXT_CHARS: usize = 500;
/// …a name (assignee, responsible party, operator, incident title)…
pub const MAX_NAME_CHARS: usize = 200;
/// …an id (command, alert).
pub const MAX_ID_CHARS: usize = 64;
/// Most teams one mobilization names.
pub const MAX_TEAMS_PER_EVENT: usize = 64;

/// Text and lists within their limits, so one hostile event cannot bloat every snapshot.
fn check_sizes(event: &Event) -> Result<(), ApplyError> {
    let entity = match event {
        Event::VolunteerFix(e) => EntityRef::Volunteer(e.volunteer_id),
        Event::VolunteerStatus(e) => EntityRef::Volunteer(e.volunteer_id),
        Event::IncidentOpened(e) => EntityRef::Incident(e.incident_id),
        Event::IncidentMobilized(e) => EntityRef::Incident(e.incident_id),
        Event::IncidentSeverity(e) => EntityRef::Incident(e.incident_id),
        Event::IncidentClosed(e) => EntityRef::Incident(e.incident_id),
        Event::AlertRaised(e) => EntityRef::Alert(e.ticket_id),
        Event::AlertEscalated(_) | Event::AlertAcked(_) => EntityRef::Alert(0),
        Event::AnnotationAdded(_) | Event::AnnotationRemoved(_) => EntityRef::Annotation,
        other => EntityRef::Ticket(other.ticket_id().unwrap_or(0)),
    };
    let check = |field: &str, value: &str, max: usize| {
        let n = value.chars().count();
        if n > max {
            Err(ApplyError::InvalidField {
                entity,
                what: format!("{field} is {n} characters; at most {max}"),
            })
        } else {
            Ok(())
        }
    };
    let opt = |field: &str, value: &Option<String>, max: usize| {
        value.as_deref().map_or(Ok(()), |v| check(field, v, max))
    };
    match event {
        Event::TicketOpened(e) => {
            check("summary", &e.summary, MAX_TEXT_CHARS)?;
            opt("responsible_party", &e.responsible_party, MAX_NAME_CHARS)
        }
        Event::TicketDispatched(e) => {
            check("assignee", &e.assignee, MAX_NAME_CHARS)?;
            opt("command_id", &e.command_id, MAX_ID_CHARS)
        }
        Event::TicketEscalated(e) => check("reason", &e.reason, MAX_TEXT_CHARS),
        Event::TicketReopened(e) => check("reason", &e.reason, MAX_TEXT_CHARS),
        Event::IncidentOpened(e) => check("title", &e.title, MAX_NAME_CHARS),
        Event::IncidentMobilized(e) => {
            if e.team_ids.len() > MAX_TEAMS_PER_EVENT {
                return Err(ApplyError::InvalidField {
                    entity,
                    what: format!(
                        "{} teams in one mobilization; at most {MAX_TEAMS_PER_EVENT}",
                        e.team_ids.len()
                    ),
                });
            }
            opt("command_id", &e.command_id, MAX_ID_CHARS)
        }
        Event::TicketSupervised(e) => {
            check("by", &e.by, MAX_NAME_CHARS)?;
            check("note", &e.note, MAX_TEXT_CHARS)?;
            opt("pushed_to", &e.pushed_to, MAX_NAME_CHARS)?;
            opt("command_id", &e.command_id, MAX_ID_CHARS)
        }
        Event::AlertRaised(e) => check("alert_id", &e.alert_id, MAX_ID_CHARS),
        Event::AlertEscalated(e) => check("alert_id", &e.alert_id, MAX_ID_CHARS),
        Event::AlertAcked(e) => {
            check("alert_id", &e.alert_id, MAX_ID_CHARS)?;
            check("by", &e.by, MAX_NAME_CHARS)?;
            check("note", &e.note, MAX_TEXT_CHARS)?;
            opt("command_id", &e.command_id, MAX_ID_CHARS)
        }
        Event::AnnotationAdded(e) => {
            check("annotation_id", &e.annotation_id, MAX_ID_CHARS)?;
            check("text", &e.text, MAX_TEXT_CHARS)?;
            check("by", &e.by, MAX_NAME_CHARS)?;
            opt("command_id", &e.command_id, MAX_ID_CHARS)
        }
        Event::AnnotationRemoved(e) => {
            check("annotation_id", &e.annotation_id, MAX_ID_CHARS)?;
            check("by", &e.by, MAX_NAME_CHARS)?;
            opt("command_id", &e.command_id, MAX_ID_CHARS)
        }
        _ => Ok(()),
    }
}

fn check_satisfaction(entity: EntityRef, s: u8) -> Result<(), ApplyError> {
    if (1..=5).contains(&s) {
        Ok(())
    } else {
        Err(ApplyError::InvalidField {
            entity,
            what: format!("satisfaction {s} is not in 1..=5"),
        })
    }
}

impl LiveState {
    /// An empty state: no tickets or incidents, every roster volunteer off duty without a fix.
    pub fn new(county: Arc<County>) -> Self {
        let volunteers: Vec<Volunteer> = county
            .pack
            .volunteers
            .iter()
            .map(|v| Volunteer {
                id: v.id,
                team_id: v.team_id,
                status: VolunteerStatus::OffDuty,
                pos: None,
                grid_id: None,
                last_fix_ms: None,
                last_at_ms: TimestampMs::MIN,
                task: None,
            })
            .collect();
        let volunteer_slot = volunteers
            .iter()
            .enumerate()
            .map(|(i, v)| (v.id, i))
            .collect();
        Self {
            county,
            tickets: TicketMap::default(),
            volunteers,
            volunteer_slot,
            incidents: HashMap::new(),
            alerts: HashMap::new(),
            pending_breach: Some(TimeBlocks::default()),
            ladder: BTreeSet::new(),
            resolved_alerts: BTreeSet::new(),
            resolved_tickets: BTreeSet::new(),
            closed_incidents: BTreeSet::new(),
            annotations: BTreeMap::new(),
            annotations_by_time: BTreeSet::new(),
            pruned: Pruned::default(),
            latest_event_ms: 0,
            applied: 0,
            names: Names::default(),
            summaries: Names::default(),
        }
    }

    pub fn county(&self) -> &Arc<County> {
        &self.county
    }

    pub fn volunteer(&self, id: VolunteerId) -> Option<&Volunteer> {
        self.volunteer_slot.get(&id).map(|&i| &self.volunteers[i])
    }

    fn volunteer_mut(&mut self, id: VolunteerId) -> Result<&mut Volunteer, ApplyError> {
        match self.volunteer_slot.get(&id) {
            Some(&i) => Ok(&mut self.volunteers[i]),
            None => Err(ApplyError::UnknownEntity(EntityRef::Volunteer(id))),
        }
    }

    fn ticket_mut(&mut self, id: TicketId, at_ms: TimestampMs) -> Result<&mut Ticket, ApplyError> {
        let entity = EntityRef::Ticket(id);
        let t = self
            .tickets
            .get_mut(&id)
            .ok_or(ApplyError::UnknownEntity(entity))?;
        check_time(entity, at_ms, t.last_at_ms())?;
        Ok(Arc::make_mut(t))
    }

    fn incident_mut(
        &mut self,
        id: IncidentId,
        at_ms: TimestampMs,
    ) -> Result<&mut Incident, ApplyError> {
        let entity = EntityRef::Incident(id);
        let i = self
            .incidents
            .get_mut(&id)
            .ok_or(ApplyError::UnknownEntity(entity))?;
        check_time(entity, at_ms, i.last_at_ms)?;
        if i.closed_at_ms.is_some() {
            return Err(ApplyError::Closed(entity));
        }
        Ok(i)
    }

    /// Move a ticket to `to` if `allowed` contains its current status.
    fn step_ticket(
        &mut self,
        id: TicketId,
        at_ms: TimestampMs,
        to: TicketStatus,
        event: &'static str,
        allowed: &[TicketStatus],
        update: impl FnOnce(&mut Ticket),
    ) -> Result<Change, ApplyError> {
        let t = self.ticket_mut(id, at_ms)?;
        if !allowed.contains(&t.status) {
            return Err(ApplyError::InvalidTransition {
                entity: EntityRef::Ticket(id),
                from: t.status,
                event,
            });
        }
        let from = t.status;
        update(t);
        t.status = to;
        t.steps.push(TicketStep { status: to, at_ms });
        Ok(Change::Ticket {
            id,
            grid_id: t.grid_id,
            from: Some(from),
            to,
        })
    }

    /// Apply one event. On error nothing changed; the caller counts and logs the drop.
    pub fn apply(&mut self, event: &Event) -> Result<Change, ApplyError> {
        let before = event
            .ticket_id()
            .and_then(|id| self.tickets.get(&id))
            .map(|t| (t.sla_deadline_ms, t.status.is_open()));
        let change = self.apply_inner(event)?;
        if let Some(id) = event.ticket_id() {
            self.track_deadline(id, before, event.at_ms().unwrap_or(0));
        }
        if let Some(at) = event.at_ms() {
            if at.div_euclid(PRUNE_EVERY_MS) > self.latest_event_ms.div_euclid(PRUNE_EVERY_MS) {
                self.prune(at);
            }
            self.latest_event_ms = self.latest_event_ms.max(at);
        }
        if let Change::IncidentClosed { id } = &change
            && let Some(at) = self.incidents.get(id).and_then(|i| i.closed_at_ms)
        {
            self.closed_incidents.insert((at, *id));
        }
        self.applied += 1;
        Ok(change)
    }

    /// Drop tickets resolved and incidents closed more than [`RESOLVED_RETENTION_MS`] before
    /// `now_ms`, and alerts past theirs.
    fn prune(&mut self, now_ms: TimestampMs) {
        let cutoff = now_ms.saturating_sub(RESOLVED_RETENTION_MS);
        while let Some(&(at, id)) = self.resolved_tickets.first() {
            if at >= cutoff {
                break;
            }
            self.resolved_tickets.pop_first();
            if self.tickets.get(&id).is_some_and(|t| !t.status.is_open()) {
                self.tickets.remove(&id);
                if let Some(a) = self.alerts.remove(&id)
                    && let Some(r) = a.resolved_at_ms
                {
                    self.resolved_alerts.remove(&(r, id));
                }
                self.pruned.tickets.push(id);
            }
        }
        while let Some(&(at, id)) = self.closed_incidents.first() {
            if at >= cutoff {
                break;
            }
            self.closed_incidents.pop_first();
            if self.incidents.remove(&id).is_some() {
                self.pruned.incidents.push(id);
            }
        }
        self.prune_alerts(now_ms);
        let cutoff = now_ms.saturating_sub(ANNOTATION_RETENTION_MS);
        while let Some((at, _)) = self.annotations_by_time.first() {
            if *at >= cutoff {
                break;
            }
            if let Some((_, id)) = self.annotations_by_time.pop_first() {
                self.annotations.remove(&id);
            }
        }
        for list in [&mut self.pruned.tickets, &mut self.pruned.incidents] {
            if list.len() > PRUNED_KEPT {
                list.drain(..list.len() - PRUNED_KEPT);
            }
        }
    }

    /// What prunes removed since the last call (at most the last 65 536 of each kind).
    pub fn take_pruned(&mut self) -> Pruned {
        std::mem::take(&mut self.pruned)
    }

    /// Tickets resolved and incidents closed, still held: what the next prunes may drop.
    pub fn retained_counts(&self) -> (usize, usize) {
        (self.resolved_tickets.len(), self.closed_incidents.len())
    }

    /// Keep the breach and ladder indexes in step with a ticket that changed.
    fn track_deadline(
        &mut self,
        id: TicketId,
        before: Option<(TimestampMs, bool)>,
        at_ms: TimestampMs,
    ) {
        let Some(after) = self
            .tickets
            .get(&id)
            .map(|t| (t.sla_deadline_ms, t.status.is_open()))
        else {
            return;
        };
        let moved = before.is_some_and(|b| b.0 != after.0);
        if let Some((old, true)) = before
            && (!after.1 || moved)
            && let Some(p) = &mut self.pending_breach
        {
            p.remove(old, id);
        }
        if after.1
            && (before.is_none_or(|b| !b.1) || moved)
            && let Some(p) = &mut self.pending_breach
        {
            p.insert_new(after.0, id);
        }
        if before.is_some_and(|b| b.1) && !after.1 {
            self.resolve_alert(id, at_ms);
            self.resolved_tickets.insert((at_ms, id));
        }
        if before.is_some_and(|b| !b.1) && after.1 {
            // Reopened: no longer waiting to be pruned.
            let resolved_at = self.tickets.get(&id).and_then(|t| {
                t.steps
                    .iter()
                    .rev()
                    .find(|s| s.status == TicketStatus::Resolved)
                    .map(|s| s.at_ms)
            });
            if let Some(r) = resolved_at {
                self.resolved_tickets.remove(&(r, id));
            }
        }
    }

    fn resolve_alert(&mut self, ticket_id: TicketId, at_ms: TimestampMs) {
        if let Some(a) = self.alerts.get_mut(&ticket_id)
            && a.resolved_at_ms.is_none()
        {
            if let Some(due) = ladder_due_ms(a.raised_at_ms, a.level) {
                self.ladder.remove(&(due, ticket_id));
            }
            a.resolved_at_ms = Some(at_ms);
            self.resolved_alerts.insert((at_ms, ticket_id));
        }
    }

    /// Drop alerts resolved longer than [`RESOLVED_ALERT_RETENTION_MS`] before `now_ms`
    /// (done when an alert is raised: the same events prune the same alerts everywhere).
    fn prune_alerts(&mut self, now_ms: TimestampMs) {
        while let Some(&(at, id)) = self.resolved_alerts.first() {
            if at >= now_ms - RESOLVED_ALERT_RETENTION_MS {
                break;
            }
            self.resolved_alerts.pop_first();
            if self
                .alerts
                .get(&id)
                .is_some_and(|a| a.resolved_at_ms == Some(at))
            {
                self.alerts.remove(&id);
            }
        }
    }

    /// The alert `alert_id` names, checked: it exists, is at `trigger` and not resolved.
    fn alert_mut(&mut self, alert_id: &str, trigger: u32) -> Result<&mut Alert, ApplyError> {
        let ticket_id = breach_alert_ticket(alert_id).ok_or_else(|| ApplyError::InvalidField {
            entity: EntityRef::Alert(0),
            what: format!("alert id {alert_id:?} is not a breach alert id (sla-<ticket>)"),
        })?;
        let entity = EntityRef::Alert(ticket_id);
        let a = self
            .alerts
            .get_mut(&ticket_id)
            .ok_or(ApplyError::UnknownEntity(entity))?;
        if a.trigger != trigger {
            return Err(ApplyError::InvalidField {
                entity,
                what: format!("trigger {trigger} is not the current trigger {}", a.trigger),
            });
        }
        if a.resolved_at_ms.is_some() {
            return Err(ApplyError::Closed(entity));
        }
        Ok(a)
    }

    /// Breach alerts and ladder climbs due at `now_ms` (feed clock): what the gateway's alert
    /// engine publishes. Time limits passed more than `lookback_ms` ago raise nothing (a
    /// backlog at start-up is a figure on the wall, not an alarm storm). A state that keeps no
    /// breach index ([`BreachWatch::Off`]) raises only ladder climbs.
    pub fn alerts_due(&self, now_ms: TimestampMs, lookback_ms: TimestampMs) -> Vec<Event> {
        use crate::protocol::{AlertEscalated, AlertRaised};
        let mut out = Vec::new();
        let from = now_ms.saturating_sub(lookback_ms);
        let pending = self.pending_breach.iter();
        for (deadline, id) in pending.flat_map(|p| p.between(from, now_ms)) {
            if deadline >= now_ms {
                continue; // overdue means strictly after the limit
            }
            let trigger = self.alerts.get(&id).map_or(1, |a| a.trigger + 1);
            out.push(Event::AlertRaised(AlertRaised {
                alert_id: breach_alert_id(id),
                at_ms: now_ms,
                ticket_id: id,
                deadline_ms: deadline,
                level: AlertLevel::Community,
                trigger,
            }));
        }
        for &(_, id) in self.ladder.range(..=(now_ms, TicketId::MAX)) {
            let Some(a) = self.alerts.get(&id) else {
                continue;
            };
            if let Some(level) = a.level.next() {
                out.push(Event::AlertEscalated(AlertEscalated {
                    alert_id: a.id.clone(),
                    at_ms: now_ms,
                    level,
                    trigger: a.trigger,
                }));
            }
        }
        out
    }

    fn apply_inner(&mut self, event: &Event) -> Result<Change, ApplyError> {
        use TicketStatus as S;
        check_sizes(event)?;
        let change = match event {
            Event::Unknown => return Err(ApplyError::UnknownEventType),
            Event::TicketOpened(e) => {
                let entity = EntityRef::Ticket(e.ticket_id);
                if self.tickets.contains_key(&e.ticket_id) {
                    return Err(ApplyError::Duplicate(entity));
                }
                check_pos(entity, e.pos, &self.county)?;
                let grid_id = match e.grid_id {
                    Some(g) if self.county.grid(g).is_none() => {
                        return Err(ApplyError::UnknownGrid(g));
                    }
                    Some(g) => Some(g),
                    None => self.county.index.grid_at(e.pos),
                };
                if e.sla_deadline_ms < e.at_ms {
                    return Err(ApplyError::InvalidField {
                        entity,
                        what: format!(
                            "deadline {} is before opening {}",
                            e.sla_deadline_ms, e.at_ms
                        ),
                    });
                }
                self.tickets.insert(Arc::new(Ticket {
                    id: e.ticket_id,
                    category: e.category,
                    source: e.source,
                    priority: e.priority,
                    pos: e.pos,
                    grid_id,
                    status: S::Opened,
                    opened_at_ms: e.at_ms,
                    sla_deadline_ms: e.sla_deadline_ms,
                    assignee: None,
                    volunteer_id: None,
                    satisfaction: None,
                    summary: self.summaries.get(&e.summary),
                    responsible_party: e.responsible_party.as_deref().map(|p| self.names.get(p)),
                    steps: smallvec::smallvec![TicketStep {
                        status: S::Opened,
                        at_ms: e.at_ms,
                    }],
                    supervised_at_ms: Default::default(),
                }));
                Change::Ticket {
                    id: e.ticket_id,
                    grid_id,
                    from: None,
                    to: S::Opened,
                }
            }
            Event::TicketDispatched(e) => {
                if let Some(v) = e.volunteer_id
                    && self.volunteer(v).is_none()
                {
                    return Err(ApplyError::UnknownEntity(EntityRef::Volunteer(v)));
                }
                let assignee = self.names.get(&e.assignee);
                self.step_ticket(
                    e.ticket_id,
                    e.at_ms,
                    S::Dispatched,
                    "dispatch",
                    &[S::Opened, S::Dispatched, S::Escalated, S::Reopened],
                    |t| {
                        t.assignee = Some(assignee);
                        t.volunteer_id = e.volunteer_id;
                    },
                )?
            }
            Event::TicketOnSite(e) => self.step_ticket(
                e.ticket_id,
                e.at_ms,
                S::OnSite,
                "on_site",
                &[S::Dispatched, S::Escalated],
                |_| {},
            )?,
            Event::TicketResolved(e) => {
                if let Some(s) = e.satisfaction {
                    check_satisfaction(EntityRef::Ticket(e.ticket_id), s)?;
                }
                self.step_ticket(
                    e.ticket_id,
                    e.at_ms,
                    S::Resolved,
                    "resolve",
                    &[
                        S::Opened,
                        S::Dispatched,
                        S::OnSite,
                        S::Escalated,
                        S::Reopened,
                    ],
                    |t| {
                        if e.satisfaction.is_some() {
                            t.satisfaction = e.satisfaction;
                        }
                    },
                )?
            }
            Event::TicketEscalated(e) => self.step_ticket(
                e.ticket_id,
                e.at_ms,
                S::Escalated,
                "escalate",
                &[S::Opened, S::Dispatched, S::OnSite, S::Reopened],
                |t| {
                    if let Some(d) = e.sla_deadline_ms {
                        t.sla_deadline_ms = d;
                    }
                },
            )?,
            Event::TicketReopened(e) => self.step_ticket(
                e.ticket_id,
                e.at_ms,
                S::Reopened,
                "reopen",
                &[S::Resolved],
                |t| {
                    t.sla_deadline_ms = e.sla_deadline_ms;
                    t.satisfaction = None;
                },
            )?,
            Event::TicketRated(e) => {
                let entity = EntityRef::Ticket(e.ticket_id);
                check_satisfaction(entity, e.satisfaction)?;
                let t = self.ticket_mut(e.ticket_id, e.at_ms)?;
                if t.status != S::Resolved {
                    return Err(ApplyError::InvalidTransition {
                        entity,
                        from: t.status,
                        event: "rate",
                    });
                }
                t.satisfaction = Some(e.satisfaction);
                Change::TicketRated {
                    id: e.ticket_id,
                    grid_id: t.grid_id,
                    satisfaction: e.satisfaction,
                }
            }
            Event::VolunteerFix(e) => {
                let entity = EntityRef::Volunteer(e.volunteer_id);
                let county = Arc::clone(&self.county);
                let v = self.volunteer_mut(e.volunteer_id)?;
                check_time(entity, e.at_ms, v.last_at_ms)?;
                check_pos(entity, e.pos, &county)?;
                let from = v.pos;
                v.pos = Some(e.pos);
                v.grid_id = county.index.grid_at(e.pos);
                v.last_fix_ms = Some(e.at_ms);
                v.last_at_ms = e.at_ms;
                Change::VolunteerMoved {
                    id: e.volunteer_id,
                    from,
                    to: e.pos,
                    grid_id: v.grid_id,
                }
            }
            Event::VolunteerStatus(e) => {
                let entity = EntityRef::Volunteer(e.volunteer_id);
                let v = self.volunteer_mut(e.volunteer_id)?;
                check_time(entity, e.at_ms, v.last_at_ms)?;
                let from = v.status;
                v.status = e.status;
                v.task = if e.status == VolunteerStatus::Responding {
                    e.task
                } else {
                    None
                };
                v.last_at_ms = e.at_ms;
                Change::VolunteerStatus {
                    id: e.volunteer_id,
                    from,
                    to: e.status,
                }
            }
            Event::IncidentOpened(e) => {
                let entity = EntityRef::Incident(e.incident_id);
                if self.incidents.contains_key(&e.incident_id) {
                    return Err(ApplyError::Duplicate(entity));
                }
                check_pos(entity, e.pos, &self.county)?;
                let grid_id = self.county.index.grid_at(e.pos);
                self.incidents.insert(
                    e.incident_id,
                    Incident {
                        id: e.incident_id,
                        kind: e.kind,
                        severity: e.severity,
                        pos: e.pos,
                        grid_id,
                        title: e.title.clone(),
                        drill: e.drill,
                        target_secs: e.target_secs,
                        opened_at_ms: e.at_ms,
                        teams: Vec::new(),
                        closed_at_ms: None,
                        outcome: None,
                        last_at_ms: e.at_ms,
                    },
                );
                Change::IncidentOpened {
                    id: e.incident_id,
                    grid_id,
                }
            }
            Event::IncidentMobilized(e) => {
                if let Some(&bad) = e.team_ids.iter().find(|t| self.county.team(**t).is_none()) {
                    return Err(ApplyError::UnknownTeam(bad));
                }
                let i = self.incident_mut(e.incident_id, e.at_ms)?;
                for &team_id in &e.team_ids {
                    if !i.teams.iter().any(|m| m.team_id == team_id) {
                        i.teams.push(Mobilization {
                            team_id,
                            at_ms: e.at_ms,
                        });
                    }
                }
                i.last_at_ms = e.at_ms;
                Change::IncidentMobilized {
                    id: e.incident_id,
                    team_ids: e.team_ids.clone(),
                }
            }
            Event::IncidentSeverity(e) => {
                let i = self.incident_mut(e.incident_id, e.at_ms)?;
                let from = i.severity;
                i.severity = e.severity;
                i.last_at_ms = e.at_ms;
                Change::IncidentSeverity {
                    id: e.incident_id,
                    from,
                    to: e.severity,
                }
            }
            Event::IncidentClosed(e) => {
                let i = self.incident_mut(e.incident_id, e.at_ms)?;
                i.closed_at_ms = Some(e.at_ms);
                i.outcome = Some(e.outcome);
                i.last_at_ms = e.at_ms;
                Change::IncidentClosed { id: e.incident_id }
            }
            Event::TicketSupervised(e) => {
                let t = self.ticket_mut(e.ticket_id, e.at_ms)?;
                if !t.status.is_open() {
                    return Err(ApplyError::Closed(EntityRef::Ticket(e.ticket_id)));
                }
                t.supervised_at_ms = crate::protocol::entities::MaybeMs::at(e.at_ms);
                Change::TicketSupervised {
                    id: e.ticket_id,
                    grid_id: t.grid_id,
                }
            }
            Event::AlertRaised(e) => {
                let entity = EntityRef::Alert(e.ticket_id);
                if e.alert_id != breach_alert_id(e.ticket_id) {
                    return Err(ApplyError::InvalidField {
                        entity,
                        what: format!(
                            "alert id {:?} does not name ticket {}",
                            e.alert_id, e.ticket_id
                        ),
                    });
                }
                let t = self
                    .tickets
                    .get(&e.ticket_id)
                    .ok_or(ApplyError::UnknownEntity(EntityRef::Ticket(e.ticket_id)))?;
                if !t.status.is_open() {
                    return Err(ApplyError::Closed(EntityRef::Ticket(e.ticket_id)));
                }
                let deadline = t.sla_deadline_ms;
                if let Some(a) = self.alerts.get(&e.ticket_id)
                    && a.trigger >= e.trigger
                {
                    // Raised already (two gateways raising the same breach).
                    return Err(ApplyError::Duplicate(entity));
                }
                if let Some(old) = self.alerts.get(&e.ticket_id) {
                    if let Some(due) = ladder_due_ms(old.raised_at_ms, old.level) {
                        self.ladder.remove(&(due, e.ticket_id));
                    }
                    if let Some(r) = old.resolved_at_ms {
                        self.resolved_alerts.remove(&(r, e.ticket_id));
                    }
                }
                self.prune_alerts(e.at_ms);
                if let Some(p) = &mut self.pending_breach {
                    p.remove(deadline, e.ticket_id);
                }
                if let Some(due) = ladder_due_ms(e.at_ms, e.level) {
                    self.ladder.insert((due, e.ticket_id));
                }
                self.alerts.insert(
                    e.ticket_id,
                    Alert {
                        id: e.alert_id.clone(),
                        ticket_id: e.ticket_id,
                        deadline_ms: e.deadline_ms,
                        level: e.level,
                        trigger: e.trigger,
                        raised_at_ms: e.at_ms,
                        escalated_at_ms: None,
                        acked: None,
                        resolved_at_ms: None,
                    },
                );
                Change::Alert {
                    ticket_id: e.ticket_id,
                    state: AlertState::New,
                    level: e.level,
                }
            }
            Event::AlertEscalated(e) => {
                let a = self.alert_mut(&e.alert_id, e.trigger)?;
                let entity = EntityRef::Alert(a.ticket_id);
                if e.level <= a.level {
                    return Err(ApplyError::Duplicate(entity));
                }
                if a.acked.is_some() {
                    return Err(ApplyError::InvalidField {
                        entity,
                        what: "an acknowledged alert does not climb".into(),
                    });
                }
                let (ticket_id, old_due) = (a.ticket_id, ladder_due_ms(a.raised_at_ms, a.level));
                a.level = e.level;
                a.escalated_at_ms = Some(e.at_ms);
                let new_due = ladder_due_ms(a.raised_at_ms, a.level);
                if let Some(d) = old_due {
                    self.ladder.remove(&(d, ticket_id));
                }
                if let Some(d) = new_due {
                    self.ladder.insert((d, ticket_id));
                }
                Change::Alert {
                    ticket_id,
                    state: AlertState::New,
                    level: e.level,
                }
            }
            Event::AlertAcked(e) => {
                let a = self.alert_mut(&e.alert_id, e.trigger)?;
                let entity = EntityRef::Alert(a.ticket_id);
                if a.acked.is_some() {
                    return Err(ApplyError::Duplicate(entity));
                }
                a.acked = Some(AlertAck {
                    by: e.by.clone(),
                    at_ms: e.at_ms,
                    note: e.note.clone(),
                });
                let (ticket_id, level, due) =
                    (a.ticket_id, a.level, ladder_due_ms(a.raised_at_ms, a.level));
                if let Some(d) = due {
                    self.ladder.remove(&(d, ticket_id));
                }
                Change::Alert {
                    ticket_id,
                    state: AlertState::Acknowledged,
                    level,
                }
            }
            Event::AnnotationAdded(e) => {
                let entity = EntityRef::Annotation;
                let invalid = |what: String| ApplyError::InvalidField { entity, what };
                if self.annotations.contains_key(&e.annotation_id) {
                    return Err(invalid(format!("note {} exists already", e.annotation_id)));
                }
                if e.text.trim().is_empty() || e.annotation_id.is_empty() {
                    return Err(invalid("a note needs an id and a text".into()));
                }
                if e.moment_ms > e.at_ms {
                    return Err(invalid(format!(
                        "note {} is about {} but was written at {}",
                        e.annotation_id, e.moment_ms, e.at_ms
                    )));
                }
                check_pos(entity, e.pos, &self.county)?;
                if let Some(g) = e.grid_id
                    && self.county.grid(g).is_none()
                {
                    return Err(ApplyError::UnknownGrid(g));
                }
                if let Place::Point { pos } = e.place {
                    check_pos(entity, pos, &self.county)?;
                }
                let note = Annotation::from(e);
                self.annotations_by_time
                    .insert((note.at_ms, note.id.clone()));
                self.annotations.insert(note.id.clone(), note);
                Change::Annotation {
                    id: e.annotation_id.clone(),
                    added: true,
                }
            }
            Event::AnnotationRemoved(e) => {
                let note = self.annotations.remove(&e.annotation_id).ok_or_else(|| {
                    ApplyError::InvalidField {
                        entity: EntityRef::Annotation,
                        what: format!("note {} is not known", e.annotation_id),
                    }
                })?;
                self.annotations_by_time.remove(&(note.at_ms, note.id));
                Change::Annotation {
                    id: e.annotation_id.clone(),
                    added: false,
                }
            }
        };
        Ok(change)
    }

    /// Open tickets.
    pub fn open_tickets(&self) -> impl Iterator<Item = &Ticket> {
        self.tickets
            .values()
            .map(|t| &**t)
            .filter(|t| t.status.is_open())
    }

    /// Active (not closed) incidents.
    pub fn active_incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values().filter(|i| i.closed_at_ms.is_none())
    }
}

impl LiveState {
    /// Rebuild a state from snapshot parts (the breach and ladder indexes are built once, from
    /// the tickets and `alerts`). Volunteers not in the parts keep their roster defaults; a
    /// volunteer id the roster does not know is an error.
    pub fn from_parts(
        county: Arc<County>,
        tickets: impl IntoIterator<Item = Ticket>,
        volunteers: impl IntoIterator<Item = Volunteer>,
        incidents: impl IntoIterator<Item = Incident>,
        alerts: impl IntoIterator<Item = Alert>,
        annotations: impl IntoIterator<Item = Annotation>,
        latest_event_ms: TimestampMs,
    ) -> Result<Self, ApplyError> {
        Self::from_shared(
            county,
            tickets.into_iter().map(Arc::new).collect(),
            volunteers,
            incidents,
            alerts,
            annotations,
            latest_event_ms,
            BreachWatch::Kept,
        )
    }

    /// [`LiveState::from_parts`] with the tickets already in their map (a snapshot decoded
    /// straight into it, chunk by chunk), and with or without the breach index.
    #[allow(clippy::too_many_arguments)]
    pub fn from_shared(
        county: Arc<County>,
        tickets: TicketMap,
        volunteers: impl IntoIterator<Item = Volunteer>,
        incidents: impl IntoIterator<Item = Incident>,
        alerts: impl IntoIterator<Item = Alert>,
        annotations: impl IntoIterator<Item = Annotation>,
        latest_event_ms: TimestampMs,
        breaches: BreachWatch,
    ) -> Result<Self, ApplyError> {
        let mut s = Self::new(county);
        if breaches == BreachWatch::Off {
            s.pending_breach = None;
        }
        s.tickets = tickets;
        for t in s.tickets.values_mut() {
            if let Some(t) = Arc::get_mut(t) {
                s.names.share(&mut t.assignee);
                s.names.share(&mut t.responsible_party);
                s.summaries.share_text(&mut t.summary);
            }
        }
        s.incidents = incidents.into_iter().map(|i| (i.id, i)).collect();
        for v in volunteers {
            let slot = s.volunteer_mut(v.id)?;
            *slot = v;
        }
        s.latest_event_ms = latest_event_ms;
        s.set_alerts(alerts);
        for a in annotations {
            s.annotations_by_time.insert((a.at_ms, a.id.clone()));
            s.annotations.insert(a.id.clone(), a);
        }
        Ok(s)
    }

    /// Replace the alerts (a snapshot's) and rebuild the breach and ladder indexes from them
    /// and the tickets.
    fn set_alerts(&mut self, alerts: impl IntoIterator<Item = Alert>) {
        self.alerts = alerts.into_iter().map(|a| (a.ticket_id, a)).collect();
        self.pending_breach = self.pending_breach.is_some().then(|| {
            self.tickets
                .values()
                .filter(|t| t.status.is_open())
                .filter(|t| {
                    !self.alerts.get(&t.id).is_some_and(|a| {
                        a.deadline_ms == t.sla_deadline_ms && a.resolved_at_ms.is_none()
                    })
                })
                .map(|t| (t.sla_deadline_ms, t.id))
                .collect()
        });
        self.ladder = self
            .alerts
            .values()
            .filter(|a| a.state() == AlertState::New)
            .filter_map(|a| Some((ladder_due_ms(a.raised_at_ms, a.level)?, a.ticket_id)))
            .collect();
        self.resolved_alerts = self
            .alerts
            .values()
            .filter_map(|a| Some((a.resolved_at_ms?, a.ticket_id)))
            .collect();
        self.resolved_tickets = self
            .tickets
            .values()
            .filter(|t| !t.status.is_open())
            .filter_map(|t| {
                let step = t
                    .steps
                    .iter()
                    .rev()
                    .find(|s| s.status == TicketStatus::Resolved)?;
                Some((step.at_ms, t.id))
            })
            .collect();
        self.closed_incidents = self
            .incidents
            .values()
            .filter_map(|i| Some((i.closed_at_ms?, i.id)))
            .collect();
    }

    /// Alerts sorted by ticket (stable order for snapshots).
    pub fn alerts_sorted(&self) -> Vec<&Alert> {
        let mut v: Vec<&Alert> = self.alerts.values().collect();
        v.sort_unstable_by_key(|a| a.ticket_id);
        v
    }

    /// A copy with only the tickets `ticket_ids` names (every volunteer and incident too):
    /// enough to check events about those tickets, without copying every ticket.
    pub fn subset(&self, ticket_ids: impl IntoIterator<Item = TicketId>) -> Self {
        let tickets: TicketMap = ticket_ids
            .into_iter()
            .filter_map(|id| self.tickets.get(&id).map(Arc::clone))
            .collect();
        Self {
            county: Arc::clone(&self.county),
            alerts: tickets
                .keys()
                .filter_map(|id| Some((id, self.alerts.get(&id)?.clone())))
                .collect(),
            tickets,
            volunteers: self.volunteers.clone(),
            volunteer_slot: self.volunteer_slot.clone(),
            incidents: self.incidents.clone(),
            pending_breach: self.pending_breach.as_ref().map(|_| TimeBlocks::default()),
            ladder: BTreeSet::new(),
            resolved_alerts: BTreeSet::new(),
            resolved_tickets: BTreeSet::new(),
            closed_incidents: BTreeSet::new(),
            annotations: self.annotations.clone(),
            annotations_by_time: BTreeSet::new(),
            pruned: Pruned::default(),
            latest_event_ms: self.latest_event_ms,
            applied: self.applied,
            names: Names::default(),
            summaries: Names::default(),
        }
    }

    /// Whether two states hold the same tickets, volunteers and incidents (counters and the
    /// county are not compared).
    pub fn same_entities(&self, other: &LiveState) -> bool {
        self.tickets == other.tickets
            && self.volunteers == other.volunteers
            && self.incidents == other.incidents
            && self.alerts == other.alerts
            && self.annotations == other.annotations
    }

    /// Tickets sorted by id (stable order for snapshots).
    pub fn tickets_sorted(&self) -> Vec<&Ticket> {
        let mut v: Vec<&Ticket> = self.tickets.values().map(|t| &**t).collect();
        v.sort_unstable_by_key(|t| t.id);
        v
    }

    /// Every ticket, shared (a pointer each, in no order): for encoding a snapshot without
    /// holding the state.
    pub fn tickets_shared(&self) -> Vec<(TicketId, Arc<Ticket>)> {
        self.tickets
            .values()
            .map(|t| (t.id, Arc::clone(t)))
            .collect()
    }

    /// Notes sorted by id.
    pub fn annotations_sorted(&self) -> Vec<&Annotation> {
        self.annotations.values().collect()
    }

    /// Incidents sorted by id.
    pub fn incidents_sorted(&self) -> Vec<&Incident> {
        let mut v: Vec<&Incident> = self.incidents.values().collect();
        v.sort_unstable_by_key(|i| i.id);
        v
    }
}
