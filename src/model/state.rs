//! The live state of the county (tickets, volunteers, incidents) and `apply(event)`.

use std::collections::HashMap;
use std::sync::Arc;

use super::County;
pub use crate::protocol::entities::{
    Incident, Mobilization, Ticket, TicketStatus, TicketStep, Volunteer,
};
use crate::protocol::{
    Event, GridId, IncidentId, LonLat, Severity, TeamId, TicketId, TimestampMs, VolunteerId,
    VolunteerStatus,
};

/// Which entity an error or change concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntityRef {
    Ticket(TicketId),
    Volunteer(VolunteerId),
    Incident(IncidentId),
}

impl std::fmt::Display for EntityRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntityRef::Ticket(id) => write!(f, "ticket {id}"),
            EntityRef::Volunteer(id) => write!(f, "volunteer {id}"),
            EntityRef::Incident(id) => write!(f, "incident {id}"),
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
}

/// Live state of one county.
#[derive(Clone, Debug)]
pub struct LiveState {
    county: Arc<County>,
    /// Shared so a copy of the state (a snapshot being encoded, the analytics) costs a pointer
    /// per ticket; a ticket changed while shared is copied on write.
    pub tickets: HashMap<TicketId, Arc<Ticket>>,
    pub volunteers: Vec<Volunteer>,
    volunteer_slot: HashMap<VolunteerId, usize>,
    pub incidents: HashMap<IncidentId, Incident>,
    /// Latest event time seen (ms), the state's notion of "now" without a clock.
    pub latest_event_ms: TimestampMs,
    pub applied: u64,
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
            tickets: HashMap::new(),
            volunteers,
            volunteer_slot,
            incidents: HashMap::new(),
            latest_event_ms: 0,
            applied: 0,
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
        use TicketStatus as S;
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
                self.tickets.insert(
                    e.ticket_id,
                    Arc::new(Ticket {
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
                        summary: e.summary.clone(),
                        responsible_party: e.responsible_party.clone(),
                        steps: vec![TicketStep {
                            status: S::Opened,
                            at_ms: e.at_ms,
                        }],
                    }),
                );
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
                self.step_ticket(
                    e.ticket_id,
                    e.at_ms,
                    S::Dispatched,
                    "dispatch",
                    &[S::Opened, S::Dispatched, S::Escalated, S::Reopened],
                    |t| {
                        t.assignee = Some(e.assignee.clone());
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
        };
        if let Some(at) = event.at_ms() {
            self.latest_event_ms = self.latest_event_ms.max(at);
        }
        self.applied += 1;
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
    /// Rebuild a state from snapshot parts. Volunteers not in the parts keep their roster
    /// defaults; a volunteer id the roster does not know is an error.
    pub fn from_parts(
        county: Arc<County>,
        tickets: impl IntoIterator<Item = Ticket>,
        volunteers: impl IntoIterator<Item = Volunteer>,
        incidents: impl IntoIterator<Item = Incident>,
        latest_event_ms: TimestampMs,
    ) -> Result<Self, ApplyError> {
        let mut s = Self::new(county);
        s.tickets = tickets.into_iter().map(|t| (t.id, Arc::new(t))).collect();
        s.incidents = incidents.into_iter().map(|i| (i.id, i)).collect();
        for v in volunteers {
            let slot = s.volunteer_mut(v.id)?;
            *slot = v;
        }
        s.latest_event_ms = latest_event_ms;
        Ok(s)
    }

    /// A copy with only the tickets `ticket_ids` names (every volunteer and incident too):
    /// enough to check events about those tickets, without copying every ticket.
    pub fn subset(&self, ticket_ids: impl IntoIterator<Item = TicketId>) -> Self {
        Self {
            county: Arc::clone(&self.county),
            tickets: ticket_ids
                .into_iter()
                .filter_map(|id| self.tickets.get(&id).map(|t| (id, Arc::clone(t))))
                .collect(),
            volunteers: self.volunteers.clone(),
            volunteer_slot: self.volunteer_slot.clone(),
            incidents: self.incidents.clone(),
            latest_event_ms: self.latest_event_ms,
            applied: self.applied,
        }
    }

    /// Whether two states hold the same tickets, volunteers and incidents (counters and the
    /// county are not compared).
    pub fn same_entities(&self, other: &LiveState) -> bool {
        self.tickets == other.tickets
            && self.volunteers == other.volunteers
            && self.incidents == other.incidents
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
            .iter()
            .map(|(id, t)| (*id, Arc::clone(t)))
            .collect()
    }

    /// Incidents sorted by id.
    pub fn incidents_sorted(&self) -> Vec<&Incident> {
        let mut v: Vec<&Incident> = self.incidents.values().collect();
        v.sort_unstable_by_key(|i| i.id);
        v
    }
}
