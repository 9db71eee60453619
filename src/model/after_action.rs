//! After-action: what happened at an incident, folded from the events that followed its
//! opening — the teams sent and when, each responder's track from the moment they were sent to
//! the site, and when each first came within [`ARRIVAL_RADIUS_M`] of it, against the target.
//! A pure function of the events (and the state at the start, for positions already known),
//! so the wall, a test and a report compute the same answer.

use std::collections::HashMap;

use super::County;
use super::state::LiveState;
use crate::protocol::{
    Event, IncidentId, LonLat, Task, TeamId, TimestampMs, VolunteerId, VolunteerStatus,
};

/// A responder is on site at the first fix this close to the incident (metres).
pub const ARRIVAL_RADIUS_M: f64 = 50.0;
/// Points kept per track (a day of one-second fixes would be more than anyone draws).
pub const MAX_TRACK_POINTS: usize = 4_096;

/// A responder's way to the site.
#[derive(Clone, Debug, PartialEq)]
pub struct Track {
    pub volunteer_id: VolunteerId,
    pub team_id: TeamId,
    /// When they were sent (their status became responding to the incident).
    pub sent_at_ms: TimestampMs,
    /// Positions in time order: where they were when sent (if known), then every fix.
    pub points: Vec<(TimestampMs, LonLat)>,
    /// The first fix within [`ARRIVAL_RADIUS_M`] of the site.
    pub arrived_at_ms: Option<TimestampMs>,
    /// They left the task (done, or sent elsewhere) at this time: no more points.
    pub left_at_ms: Option<TimestampMs>,
}

/// A team's part.
#[derive(Clone, Debug, PartialEq)]
pub struct TeamPart {
    pub team_id: TeamId,
    pub mobilized_at_ms: TimestampMs,
    /// Members who responded.
    pub responders: usize,
    /// Members who reached the site.
    pub arrived: usize,
    /// The team's first arrival and who it was.
    pub first_arrival: Option<(TimestampMs, VolunteerId)>,
}

impl TeamPart {
    /// Seconds from the incident's opening to the team's first arrival.
    pub fn arrival_secs(&self, opened_at_ms: TimestampMs) -> Option<i64> {
        self.first_arrival
            .map(|(t, _)| (t - opened_at_ms).max(0) / 1000)
    }
}

/// The incident's after-action.
#[derive(Clone, Debug, PartialEq)]
pub struct AfterAction {
    pub incident_id: IncidentId,
    pub title: String,
    pub drill: bool,
    pub site: LonLat,
    pub opened_at_ms: TimestampMs,
    pub target_secs: u32,
    pub closed_at_ms: Option<TimestampMs>,
    /// In the order they were mobilized.
    pub teams: Vec<TeamPart>,
    /// By volunteer id.
    pub tracks: Vec<Track>,
    /// Feed time the events reach to.
    pub until_ms: TimestampMs,
}

impl AfterAction {
    /// The first arrival of any team, seconds after the opening.
    pub fn first_arrival_secs(&self) -> Option<i64> {
        self.teams
            .iter()
            .filter_map(|t| t.arrival_secs(self.opened_at_ms))
            .min()
    }
}

/// Folds events into an [`AfterAction`].
pub struct Builder {
    county: std::sync::Arc<County>,
    out: AfterAction,
    /// Last known position of every volunteer (to start a track where they were).
    last_pos: HashMap<VolunteerId, (TimestampMs, LonLat)>,
    /// Index into `out.tracks` of responders still on the task.
    active: HashMap<VolunteerId, usize>,
    known: bool,
}

impl Builder {
    /// Start from `state` (the moment the events follow): the incident must be in it, or be
    /// opened by the events.
    pub fn new(state: &LiveState, incident_id: IncidentId) -> Self {
        let county = std::sync::Arc::clone(state.county());
        let inc = state.incidents.get(&incident_id);
        let site = inc.map_or(LonLat::new(0.0, 0.0), |i| i.pos);
        let mut b = Self {
            out: AfterAction {
                incident_id,
                title: inc.map_or_else(String::new, |i| i.title.clone()),
                drill: inc.is_some_and(|i| i.drill),
                site,
                opened_at_ms: inc.map_or(0, |i| i.opened_at_ms),
                target_secs: inc.map_or(0, |i| i.target_secs),
                closed_at_ms: inc.and_then(|i| i.closed_at_ms),
                teams: inc
                    .map(|i| {
                        i.teams
                            .iter()
                            .map(|m| TeamPart {
                                team_id: m.team_id,
                                mobilized_at_ms: m.at_ms,
                                responders: 0,
                                arrived: 0,
                                first_arrival: None,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                tracks: Vec::new(),
                until_ms: state.latest_event_ms,
            },
            last_pos: HashMap::new(),
            active: HashMap::new(),
            known: inc.is_some(),
            county,
        };
        for v in &state.volunteers {
            if let (Some(p), Some(t)) = (v.pos, v.last_fix_ms) {
                b.last_pos.insert(v.id, (t, p));
            }
            if v.task == Some(Task::Incident(incident_id))
                && v.status == VolunteerStatus::Responding
            {
                b.respond(v.id, v.team_id, v.last_at_ms);
            }
        }
        b
    }

    fn respond(&mut self, id: VolunteerId, team_id: TeamId, at_ms: TimestampMs) {
        if self.active.contains_key(&id) {
            return;
        }
        let mut points = Vec::new();
        if let Some(&(_, p)) = self.last_pos.get(&id) {
            points.push((at_ms, p));
        }
        self.out.tracks.push(Track {
            volunteer_id: id,
            team_id,
            sent_at_ms: at_ms,
            points,
            arrived_at_ms: None,
            left_at_ms: None,
        });
        let i = self.out.tracks.len() - 1;
        self.active.insert(id, i);
        self.check_arrival(i);
    }

    /// Whether the track's last point is on site (then the arrival is recorded).
    fn check_arrival(&mut self, i: usize) {
        let proj = self.county.pack.projection();
        let t = &mut self.out.tracks[i];
        if t.arrived_at_ms.is_some() {
            return;
        }
        let Some(&(at, p)) = t.points.last() else {
            return;
        };
        let site = (self.out.site.lon, self.out.site.lat);
        if proj.distance_m((p.lon, p.lat), site) <= ARRIVAL_RADIUS_M {
            t.arrived_at_ms = Some(at);
        }
    }

    /// Take the next event (in feed order).
    pub fn event(&mut self, e: &Event) {
        let id = self.out.incident_id;
        if let Some(at) = e.at_ms() {
            self.out.until_ms = self.out.until_ms.max(at);
        }
        match e {
            Event::IncidentOpened(o) if o.incident_id == id => {
                self.known = true;
                self.out.site = o.pos;
                self.out.title = o.title.clone();
                self.out.drill = o.drill;
                self.out.opened_at_ms = o.at_ms;
                self.out.target_secs = o.target_secs;
            }
            Event::IncidentMobilized(m) if m.incident_id == id => {
                for t in &m.team_ids {
                    if !self.out.teams.iter().any(|p| p.team_id == *t) {
                        self.out.teams.push(TeamPart {
                            team_id: *t,
                            mobilized_at_ms: m.at_ms,
                            responders: 0,
                            arrived: 0,
                            first_arrival: None,
                        });
                    }
                }
            }
            Event::IncidentClosed(c) if c.incident_id == id => {
                self.out.closed_at_ms = Some(c.at_ms);
                for (_, i) in self.active.drain() {
                    self.out.tracks[i].left_at_ms.get_or_insert(c.at_ms);
                }
            }
            Event::VolunteerStatus(s) => {
                let responding =
                    s.status == VolunteerStatus::Responding && s.task == Some(Task::Incident(id));
                if responding && self.out.closed_at_ms.is_none() {
                    let team = self
                        .county
                        .pack
                        .volunteers
                        .iter()
                        .find(|v| v.id == s.volunteer_id)
                        .map_or(0, |v| v.team_id);
                    self.respond(s.volunteer_id, team, s.at_ms);
                } else if !responding && let Some(i) = self.active.remove(&s.volunteer_id) {
                    self.out.tracks[i].left_at_ms = Some(s.at_ms);
                }
            }
            Event::VolunteerFix(f) => {
                self.last_pos.insert(f.volunteer_id, (f.at_ms, f.pos));
                if let Some(&i) = self.active.get(&f.volunteer_id) {
                    let t = &mut self.out.tracks[i];
                    if t.points.len() < MAX_TRACK_POINTS {
                        t.points.push((f.at_ms, f.pos));
                    }
                    self.check_arrival(i);
                }
            }
            _ => {}
        }
    }

    /// The after-action, or `None` when the incident was never seen.
    pub fn finish(mut self) -> Option<AfterAction> {
        if !self.known {
            return None;
        }
        self.out
            .tracks
            .sort_by_key(|t| (t.volunteer_id, t.sent_at_ms));
        for team in &mut self.out.teams {
            let of_team = || self.out.tracks.iter().filter(|t| t.team_id == team.team_id);
            team.responders = of_team().count();
            team.arrived = of_team().filter(|t| t.arrived_at_ms.is_some()).count();
            team.first_arrival = of_team()
                .filter_map(|t| Some((t.arrived_at_ms?, t.volunteer_id)))
                .min();
        }
        Some(self.out)
    }
}
