//! `LiveState::apply`: every event type is applied, and impossible events are rejected with
//! a typed error and leave the state unchanged.

use datawall::model::state::TicketStatus;
use datawall::model::{ApplyError, Change, EntityRef, LiveState};
use datawall::protocol::*;

use crate::common::county;

const T0: i64 = 1_764_115_200_000;

fn state() -> LiveState {
    LiveState::new(county())
}

fn grid_pos(i: usize) -> (GridId, LonLat) {
    let g = &county().pack.grids[i];
    (g.id, g.label)
}

fn opened(id: TicketId, at_ms: i64) -> Event {
    let (_, pos) = grid_pos(0);
    Event::TicketOpened(TicketOpened {
        ticket_id: id,
        at_ms,
        category: TicketCategory::Repair,
        source: TicketSource::MiniProgram,
        priority: Priority::High,
        pos,
        grid_id: None,
        sla_deadline_ms: at_ms + 2 * 3_600_000,
        summary: "水管爆裂".into(),
        responsible_party: None,
    })
}

fn dispatched(id: TicketId, at_ms: i64) -> Event {
    Event::TicketDispatched(TicketDispatched {
        ticket_id: id,
        at_ms,
        assignee: "王伟".into(),
        volunteer_id: None,
        command_id: None,
    })
}
fn on_site(id: TicketId, at_ms: i64) -> Event {
    Event::TicketOnSite(TicketOnSite {
        ticket_id: id,
        at_ms,
    })
}
fn resolved(id: TicketId, at_ms: i64) -> Event {
    Event::TicketResolved(TicketResolved {
        ticket_id: id,
        at_ms,
        satisfaction: None,
    })
}

/// `s` as a client that loaded it from a snapshot holds it.
fn reloaded(s: &LiveState) -> LiveState {
    LiveState::from_parts(
        county(),
        s.tickets.values().map(|t| (**t).clone()),
        s.volunteers.clone(),
        s.incidents.values().cloned(),
        s.alerts.values().cloned(),
        s.annotations.values().cloned(),
        s.latest_event_ms,
    )
    .unwrap()
}

/// Apply, expecting an error, and check nothing changed.
fn rejects(s: &mut LiveState, e: &Event) -> ApplyError {
    let tickets = s.tickets.clone();
    let volunteers = s.volunteers.clone();
    let incidents = s.incidents.clone();
    let applied = s.applied;
    let err = s.apply(e).expect_err("event should be rejected");
    assert_eq!(s.tickets, tickets, "tickets changed by a rejected event");
    assert_eq!(
        s.volunteers, volunteers,
        "volunteers changed by a rejected event"
    );
    assert_eq!(
        s.incidents, incidents,
        "incidents changed by a rejected event"
    );
    assert_eq!(s.applied, applied);
    err
}

#[test]
fn ticket_lifecycle_records_every_step() {
    let mut s = state();
    let (grid_id, _) = grid_pos(0);
    let c = s.apply(&opened(1, T0)).unwrap();
    assert_eq!(
        c,
        Change::Ticket {
            id: 1,
            grid_id: Some(grid_id),
            from: None,
            to: TicketStatus::Opened
        }
    );
    s.apply(&dispatched(1, T0 + 60_000)).unwrap();
    s.apply(&on_site(1, T0 + 20 * 60_000)).unwrap();
    let c = s.apply(&resolved(1, T0 + 50 * 60_000)).unwrap();
    assert_eq!(
        c,
        Change::Ticket {
            id: 1,
            grid_id: Some(grid_id),
            from: Some(TicketStatus::OnSite),
            to: TicketStatus::Resolved
        }
    );
    s.apply(&Event::TicketRated(TicketRated {
        ticket_id: 1,
        at_ms: T0 + 60 * 60_000,
        satisfaction: 5,
    }))
    .unwrap();
    let t = &s.tickets[&1];
    assert_eq!(t.status, TicketStatus::Resolved);
    assert_eq!(t.assignee.as_deref(), Some("王伟"));
    assert_eq!(t.satisfaction, Some(5));
    let steps: Vec<_> = t.steps.iter().map(|s| (s.status, s.at_ms - T0)).collect();
    assert_eq!(
        steps,
        vec![
            (TicketStatus::Opened, 0),
            (TicketStatus::Dispatched, 60_000),
            (TicketStatus::OnSite, 1_200_000),
            (TicketStatus::Resolved, 3_000_000)
        ]
    );
    // Reopen with a new limit, escalate with an extension, resolve again.
    s.apply(&Event::TicketReopened(TicketReopened {
        ticket_id: 1,
        at_ms: T0 + 70 * 60_000,
        reason: "复发".into(),
        sla_deadline_ms: T0 + 200 * 60_000,
    }))
    .unwrap();
    assert_eq!(
        s.tickets[&1].satisfaction, None,
        "a reopened ticket loses its rating"
    );
    s.apply(&Event::TicketEscalated(TicketEscalated {
        ticket_id: 1,
        at_ms: T0 + 80 * 60_000,
        reason: "需水务局".into(),
        sla_deadline_ms: Some(T0 + 400 * 60_000),
    }))
    .unwrap();
    assert_eq!(s.tickets[&1].sla_deadline_ms, T0 + 400 * 60_000);
    assert!(s.tickets[&1].status.is_open());
    s.apply(&resolved(1, T0 + 90 * 60_000)).unwrap();
    assert_eq!(s.open_tickets().count(), 0);
    assert_eq!(s.applied, 8);
}

#[test]
fn ticket_without_grid_is_located_by_position() {
    let mut s = state();
    let (grid_id, pos) = grid_pos(17);
    let Event::TicketOpened(mut t) = opened(5, T0) else {
        unreachable!()
    };
    t.pos = pos;
    s.apply(&Event::TicketOpened(t.clone())).unwrap();
    assert_eq!(s.tickets[&5].grid_id, Some(grid_id));
    // A ticket outside every grid (open county) is kept without a grid.
    let town = county()
        .pack
        .towns
        .iter()
        .find(|t| t.name == "高仁乡")
        .unwrap()
        .clone();
    t.ticket_id = 6;
    t.pos = LonLat::new(town.lon, town.lat);
    s.apply(&Event::TicketOpened(t)).unwrap();
    assert_eq!(s.tickets[&6].grid_id, None);
}

#[test]
fn impossible_ticket_events_are_rejected() {
    let mut s = state();
    assert_eq!(
        rejects(&mut s, &dispatched(9, T0)),
        ApplyError::UnknownEntity(EntityRef::Ticket(9))
    );
    s.apply(&opened(1, T0)).unwrap();
    assert_eq!(
        rejects(&mut s, &opened(1, T0 + 1)),
        ApplyError::Duplicate(EntityRef::Ticket(1))
    );
    assert!(matches!(
        rejects(&mut s, &on_site(1, T0 + 1)),
        ApplyError::InvalidTransition {
            from: TicketStatus::Opened,
            ..
        }
    ));
    assert!(
        matches!(rejects(&mut s, &dispatched(1, T0 - 1)), ApplyError::TimeWentBackwards { at_ms, last_ms, .. } if at_ms == T0 - 1 && last_ms == T0)
    );
    assert!(matches!(
        rejects(
            &mut s,
            &Event::TicketRated(TicketRated {
                ticket_id: 1,
                at_ms: T0 + 5,
                satisfaction: 4
            })
        ),
        ApplyError::InvalidTransition { .. }
    ));
    assert!(matches!(
        rejects(
            &mut s,
            &Event::TicketReopened(TicketReopened {
                ticket_id: 1,
                at_ms: T0 + 5,
                reason: String::new(),
                sla_deadline_ms: T0 + 10
            })
        ),
        ApplyError::InvalidTransition { .. }
    ));
    s.apply(&resolved(1, T0 + 10)).unwrap();
    assert!(matches!(
        rejects(&mut s, &resolved(1, T0 + 11)),
        ApplyError::InvalidTransition {
            from: TicketStatus::Resolved,
            ..
        }
    ));
    assert!(matches!(
        rejects(&mut s, &on_site(1, T0 + 11)),
        ApplyError::InvalidTransition { .. }
    ));
    assert!(matches!(
        rejects(
            &mut s,
            &Event::TicketRated(TicketRated {
                ticket_id: 1,
                at_ms: T0 + 12,
                satisfaction: 9
            })
        ),
        ApplyError::InvalidField { .. }
    ));
    assert!(matches!(
        rejects(
            &mut s,
            &Event::TicketEscalated(TicketEscalated {
                ticket_id: 1,
                at_ms: T0 + 12,
                reason: String::new(),
                sla_deadline_ms: None
            })
        ),
        ApplyError::InvalidTransition { .. }
    ));

    let bad_opens = [
        (LonLat::new(f64::NAN, 38.9), "finite"),
        (LonLat::new(106.5, f64::INFINITY), "finite"),
        (LonLat::new(116.4, 39.9), "outside the county"),
        (LonLat::new(0.0, 0.0), "outside the county"),
    ];
    for (i, (pos, what)) in bad_opens.into_iter().enumerate() {
        let Event::TicketOpened(mut t) = opened(100 + i as u64, T0) else {
            unreachable!()
        };
        t.pos = pos;
        let err = rejects(&mut s, &Event::TicketOpened(t));
        assert!(err.to_string().contains(what), "{err}");
    }
    let Event::TicketOpened(mut t) = opened(200, T0) else {
        unreachable!()
    };
    t.grid_id = Some(999_999);
    assert_eq!(
        rejects(&mut s, &Event::TicketOpened(t.clone())),
        ApplyError::UnknownGrid(999_999)
    );
    t.grid_id = None;
    t.sla_deadline_ms = T0 - 1;
    assert!(matches!(
        rejects(&mut s, &Event::TicketOpened(t)),
        ApplyError::InvalidField { .. }
    ));
    let unknown_volunteer = Event::TicketDispatched(TicketDispatched {
        ticket_id: 1,
        at_ms: T0 + 20,
        assignee: "x".into(),
        volunteer_id: Some(99_999),
        command_id: None,
    });
    assert_eq!(
        rejects(&mut s, &unknown_volunteer),
        ApplyError::UnknownEntity(EntityRef::Volunteer(99_999))
    );
    assert_eq!(
        rejects(&mut s, &Event::Unknown),
        ApplyError::UnknownEventType
    );
}

#[test]
fn volunteer_fixes_and_status() {
    let mut s = state();
    let (grid_id, pos) = grid_pos(3);
    let fix = |at_ms, pos| {
        Event::VolunteerFix(VolunteerFix {
            volunteer_id: 1,
            at_ms,
            pos,
        })
    };
    assert_eq!(s.volunteer(1).unwrap().pos, None);
    let c = s.apply(&fix(T0, pos)).unwrap();
    assert_eq!(
        c,
        Change::VolunteerMoved {
            id: 1,
            from: None,
            to: pos,
            grid_id: Some(grid_id)
        }
    );
    let v = s.volunteer(1).unwrap();
    assert_eq!(
        (v.pos, v.grid_id, v.last_fix_ms),
        (Some(pos), Some(grid_id), Some(T0))
    );

    let status = Event::VolunteerStatus(VolunteerStatusChanged {
        volunteer_id: 1,
        at_ms: T0 + 5,
        status: VolunteerStatus::Responding,
        task: Some(Task::Incident(3)),
    });
    let c = s.apply(&status).unwrap();
    assert_eq!(
        c,
        Change::VolunteerStatus {
            id: 1,
            from: VolunteerStatus::OffDuty,
            to: VolunteerStatus::Responding
        }
    );
    assert_eq!(s.volunteer(1).unwrap().task, Some(Task::Incident(3)));

    assert!(matches!(
        rejects(&mut s, &fix(T0 + 1, pos)),
        ApplyError::TimeWentBackwards { .. }
    ));
    assert!(matches!(
        rejects(&mut s, &fix(T0 + 10, LonLat::new(f64::NAN, f64::NAN))),
        ApplyError::NonFiniteCoordinate { .. }
    ));
    assert!(matches!(
        rejects(&mut s, &fix(T0 + 10, LonLat::new(120.0, 30.0))),
        ApplyError::OutsideCounty { .. }
    ));
    let stranger = Event::VolunteerFix(VolunteerFix {
        volunteer_id: 50_000,
        at_ms: T0,
        pos,
    });
    assert_eq!(
        rejects(&mut s, &stranger),
        ApplyError::UnknownEntity(EntityRef::Volunteer(50_000))
    );
    let stranger = Event::VolunteerStatus(VolunteerStatusChanged {
        volunteer_id: 0,
        at_ms: T0,
        status: VolunteerStatus::Available,
        task: None,
    });
    assert_eq!(
        rejects(&mut s, &stranger),
        ApplyError::UnknownEntity(EntityRef::Volunteer(0))
    );
}

#[test]
fn incident_lifecycle_and_rejections() {
    let mut s = state();
    let (grid_id, pos) = grid_pos(40);
    let open = Event::IncidentOpened(IncidentOpened {
        incident_id: 7,
        at_ms: T0,
        kind: IncidentKind::Fire,
        severity: Severity::Serious,
        pos,
        title: "消防演练".into(),
        drill: true,
        target_secs: 900,
    });
    assert_eq!(
        s.apply(&open).unwrap(),
        Change::IncidentOpened {
            id: 7,
            grid_id: Some(grid_id)
        }
    );
    assert_eq!(
        rejects(&mut s, &open),
        ApplyError::Duplicate(EntityRef::Incident(7))
    );
    let mobilize = |at_ms, team_ids: Vec<TeamId>| {
        Event::IncidentMobilized(IncidentMobilized {
            incident_id: 7,
            at_ms,
            team_ids,
            command_id: None,
        })
    };
    s.apply(&mobilize(T0 + 30_000, vec![1, 2])).unwrap();
    s.apply(&mobilize(T0 + 60_000, vec![2, 3])).unwrap();
    let teams: Vec<_> = s.incidents[&7]
        .teams
        .iter()
        .map(|m| (m.team_id, m.at_ms - T0))
        .collect();
    assert_eq!(
        teams,
        vec![(1, 30_000), (2, 30_000), (3, 60_000)],
        "a team is mobilized once"
    );
    assert_eq!(
        rejects(&mut s, &mobilize(T0 + 70_000, vec![4, 999])),
        ApplyError::UnknownTeam(999)
    );
    assert!(matches!(
        rejects(&mut s, &mobilize(T0, vec![4])),
        ApplyError::TimeWentBackwards { .. }
    ));
    let c = s
        .apply(&Event::IncidentSeverity(IncidentSeverityChanged {
            incident_id: 7,
            at_ms: T0 + 100_000,
            severity: Severity::Minor,
        }))
        .unwrap();
    assert_eq!(
        c,
        Change::IncidentSeverity {
            id: 7,
            from: Severity::Serious,
            to: Severity::Minor
        }
    );
    let close = Event::IncidentClosed(IncidentClosed {
        incident_id: 7,
        at_ms: T0 + 900_000,
        outcome: IncidentOutcome::DrillCompleted,
    });
    s.apply(&close).unwrap();
    assert_eq!(s.incidents[&7].closed_at_ms, Some(T0 + 900_000));
    assert_eq!(s.active_incidents().count(), 0);
    assert_eq!(
        rejects(&mut s, &close),
        ApplyError::Closed(EntityRef::Incident(7))
    );
    let unknown = Event::IncidentClosed(IncidentClosed {
        incident_id: 8,
        at_ms: T0,
        outcome: IncidentOutcome::Resolved,
    });
    assert_eq!(
        rejects(&mut s, &unknown),
        ApplyError::UnknownEntity(EntityRef::Incident(8))
    );
    let Event::IncidentOpened(mut far) = open else {
        unreachable!()
    };
    far.incident_id = 9;
    far.pos = LonLat::new(100.0, 40.0);
    assert!(matches!(
        rejects(&mut s, &Event::IncidentOpened(far)),
        ApplyError::OutsideCounty { .. }
    ));
}

#[test]
fn golden_events_apply_in_order() {
    // The documented example stream is a valid story for the bundled county.
    let mut s = state();
    for line in include_str!("../data/events_v1.ndjson").lines() {
        let e: Event = serde_json::from_str(line).unwrap();
        s.apply(&e).unwrap_or_else(|err| panic!("{line}: {err}"));
    }
    assert_eq!(s.tickets[&1001].status, TicketStatus::Escalated);
    assert!(s.incidents[&7].closed_at_ms.is_some());
}

#[test]
fn breach_alerts_are_due_once_climb_on_schedule_and_survive_a_snapshot() {
    use datawall::model::state::{LADDER_COUNTY_AFTER_MS, LADDER_TOWN_AFTER_MS};
    let mut s = LiveState::new(county());
    let open = |id, at_ms| match opened(id, at_ms) {
        Event::TicketOpened(mut t) => {
            t.sla_deadline_ms = at_ms + 60_000;
            Event::TicketOpened(t)
        }
        _ => unreachable!(),
    };
    s.apply(&open(1, T0)).unwrap();
    s.apply(&open(2, T0 + 30_000)).unwrap();
    let lookback = 3_600_000;
    assert!(
        s.alerts_due(T0 + 60_000, lookback).is_empty(),
        "at the limit is not past it"
    );
    let due = s.alerts_due(T0 + 61_000, lookback);
    assert_eq!(due.len(), 1, "{due:?}");
    let Event::AlertRaised(raised) = &due[0] else {
        panic!("{due:?}")
    };
    assert_eq!((raised.ticket_id, raised.trigger), (1, 1));
    s.apply(&due[0]).unwrap();
    assert!(
        s.alerts_due(T0 + 61_000, lookback).is_empty(),
        "raised once"
    );
    // Raised twice (two gateways): the second is a duplicate.
    assert!(matches!(s.apply(&due[0]), Err(ApplyError::Duplicate(_))));
    // A limit passed longer ago than the lookback raises nothing.
    let late = s.alerts_due(T0 + 90_000 + lookback + 1, lookback);
    assert!(
        !late.iter().any(|e| matches!(e, Event::AlertRaised(_))),
        "{late:?}"
    );

    // The ladder: unacknowledged, 街道/镇 after 10 min and 县 after 30.
    let raised_at = raised.at_ms;
    assert!(
        s.alerts_due(raised_at + LADDER_TOWN_AFTER_MS - 1, 0)
            .is_empty()
    );
    let climb = s.alerts_due(raised_at + LADDER_TOWN_AFTER_MS, 0);
    assert!(matches!(&climb[..], [Event::AlertEscalated(e)] if e.level == AlertLevel::Town));
    s.apply(&climb[0]).unwrap();
    // A wall that starts from a snapshot now computes the same next step.
    let copy = reloaded(&s);
    let top = raised_at + LADDER_COUNTY_AFTER_MS;
    assert_eq!(s.alerts_due(top, 0), copy.alerts_due(top, 0));
    let climb = s.alerts_due(top, 0);
    assert!(matches!(&climb[..], [Event::AlertEscalated(e)] if e.level == AlertLevel::County));
    s.apply(&climb[0]).unwrap();
    assert!(s.alerts_due(top + 3_600_000, 0).is_empty(), "县 is the top");

    // An acknowledgement stops the climb; the alert resolves with its ticket.
    let due = s.alerts_due(T0 + 91_000, lookback);
    s.apply(&due[0]).unwrap();
    s.apply(&Event::AlertAcked(AlertAcked {
        alert_id: "sla-2".into(),
        at_ms: T0 + 92_000,
        trigger: 1,
        by: "值班长".into(),
        note: String::new(),
        command_id: None,
    }))
    .unwrap();
    assert!(
        s.alerts_due(T0 + 92_000 + LADDER_COUNTY_AFTER_MS, 0)
            .is_empty()
    );
    let wrong_trigger = Event::AlertAcked(AlertAcked {
        alert_id: "sla-1".into(),
        at_ms: T0 + 93_000,
        trigger: 7,
        by: "x".into(),
        note: String::new(),
        command_id: None,
    });
    assert!(matches!(
        s.apply(&wrong_trigger),
        Err(ApplyError::InvalidField { .. })
    ));
    s.apply(&Event::TicketResolved(TicketResolved {
        ticket_id: 2,
        at_ms: T0 + 100_000,
        satisfaction: None,
    }))
    .unwrap();
    assert_eq!(
        s.alerts[&2].state(),
        datawall::model::state::AlertState::Resolved
    );
    // Resolved alerts are dropped an hour later, when the next alert is raised.
    s.apply(&open(3, T0 + 2 * 3_600_000)).unwrap();
    let due = s.alerts_due(T0 + 2 * 3_600_000 + 61_000, lookback);
    s.apply(&due[0]).unwrap();
    assert!(!s.alerts.contains_key(&2));
    assert!(s.alerts.contains_key(&1), "unresolved alerts stay");
}

#[test]
fn a_mirror_without_the_breach_index_applies_what_its_gateway_raises_alike() {
    use datawall::model::state::BreachWatch;
    let open = |id, at_ms| match opened(id, at_ms) {
        Event::TicketOpened(mut t) => {
            t.sla_deadline_ms = at_ms + 60_000;
            Event::TicketOpened(t)
        }
        _ => unreachable!(),
    };
    let mut gateway = LiveState::new(county());
    gateway.apply(&open(1, T0)).unwrap();
    gateway.apply(&open(2, T0 + 30_000)).unwrap();
    let mirror_of = |s: &LiveState| {
        LiveState::from_shared(
            county(),
            s.tickets.values().cloned().collect(),
            s.volunteers.clone(),
            s.incidents.values().cloned(),
            s.alerts.values().cloned(),
            s.annotations.values().cloned(),
            s.latest_event_ms,
            BreachWatch::Off,
        )
        .unwrap()
    };
    let mut mirror = mirror_of(&gateway);
    let lookback = 3_600_000;
    assert!(
        mirror.alerts_due(T0 + 200_000, lookback).is_empty(),
        "a mirror raises no breach itself"
    );
    // What the gateway raises, the mirror applies to the same state.
    for now in [T0 + 61_000, T0 + 91_000, T0 + 61_000 + 600_000] {
        for e in gateway.alerts_due(now, lookback) {
            gateway.apply(&e).unwrap();
            mirror.apply(&e).unwrap();
        }
    }
    gateway.apply(&open(3, T0 + 700_000)).unwrap();
    mirror.apply(&open(3, T0 + 700_000)).unwrap();
    assert_eq!(gateway.alerts.len(), 2);
    assert_eq!(mirror.alerts, gateway.alerts);
    assert!(
        mirror.same_entities(&gateway),
        "the same tickets and alerts"
    );
    // A new ticket's limit passed: the gateway raises it, the mirror does not; the ladder
    // climb due then (the second alert's, to 街道/镇) both see.
    let now = T0 + 761_000;
    let due = gateway.alerts_due(now, lookback);
    let raised = |d: &[Event]| {
        d.iter()
            .filter(|e| matches!(e, Event::AlertRaised(_)))
            .count()
    };
    assert_eq!(raised(&due), 1, "{due:?}");
    let climbs: Vec<Event> = due
        .iter()
        .filter(|e| matches!(e, Event::AlertEscalated(_)))
        .cloned()
        .collect();
    assert_eq!(climbs.len(), 1, "{due:?}");
    assert_eq!(mirror.alerts_due(now, lookback), climbs);
    // A mirror built again from the mirror keeps no index either, and sees the same.
    let again = mirror_of(&mirror);
    assert_eq!(again.alerts_due(now, lookback), climbs);
    assert!(again.same_entities(&gateway));
}

#[test]
fn oversized_text_and_lists_are_refused_and_leave_the_state_unchanged() {
    let mut s = state();
    let huge = |e: Event| -> Event {
        match e {
            Event::TicketOpened(mut t) => {
                t.summary = "漏".repeat(501);
                Event::TicketOpened(t)
            }
            other => other,
        }
    };
    let before = s.clone();
    let err = s.apply(&huge(opened(1, T0))).unwrap_err();
    assert!(
        matches!(&err, ApplyError::InvalidField { what, .. } if what.contains("summary is 501 characters")),
        "{err}"
    );
    assert!(s.same_entities(&before) && s.tickets.is_empty());
    // 500 characters is fine.
    let mut ok = opened(1, T0);
    if let Event::TicketOpened(t) = &mut ok {
        t.summary = "漏".repeat(500);
    }
    s.apply(&ok).unwrap();
    let teams = Event::IncidentMobilized(IncidentMobilized {
        incident_id: 1,
        at_ms: T0,
        team_ids: vec![1; 65],
        command_id: None,
    });
    assert!(matches!(
        s.apply(&teams),
        Err(ApplyError::InvalidField { what, .. }) if what.contains("65 teams")
    ));
    let note = Event::AlertAcked(AlertAcked {
        alert_id: "sla-1".into(),
        at_ms: T0,
        trigger: 1,
        by: "x".repeat(201),
        note: String::new(),
        command_id: None,
    });
    assert!(matches!(
        s.apply(&note),
        Err(ApplyError::InvalidField { what, .. }) if what.contains("by is 201 characters")
    ));
}

#[test]
fn resolved_tickets_and_closed_incidents_leave_a_day_later_alike_everywhere() {
    use datawall::model::state::{PRUNE_EVERY_MS, Pruned, RESOLVED_RETENTION_MS};
    const H: i64 = 3_600_000;
    // Hand-computed: a day after it was resolved, at the first event in a new minute.
    assert_eq!(RESOLVED_RETENTION_MS, 24 * H);
    assert_eq!(PRUNE_EVERY_MS, 60_000);
    let (_, pos) = grid_pos(40);
    let rated = |id, at_ms| {
        Event::TicketRated(TicketRated {
            ticket_id: id,
            at_ms,
            satisfaction: 4,
        })
    };
    let early = vec![
        opened(1, T0),
        opened(2, T0),
        Event::IncidentOpened(IncidentOpened {
            incident_id: 7,
            at_ms: T0,
            kind: IncidentKind::Fire,
            severity: Severity::Minor,
            pos,
            title: "消防演练".into(),
            drill: true,
            target_secs: 900,
        }),
        resolved(1, T0 + 60_000),
        resolved(2, T0 + 120_000),
        Event::IncidentClosed(IncidentClosed {
            incident_id: 7,
            at_ms: T0 + 5 * 60_000,
            outcome: IncidentOutcome::DrillCompleted,
        }),
        Event::TicketReopened(TicketReopened {
            ticket_id: 2,
            at_ms: T0 + 3 * H,
            reason: "居民反映问题未解决".into(),
            sla_deadline_ms: T0 + 5 * H,
        }),
        // Still held 23 hours on: a rating is taken.
        rated(1, T0 + 23 * H),
    ];
    let mut s = state();
    for e in &early {
        s.apply(e).unwrap();
    }
    // A wall that loads the state as a snapshot here, then follows the same events.
    let mut wall = reloaded(&s);
    let both = |s: &mut LiveState, wall: &mut LiveState, e: &Event| {
        s.apply(e).unwrap();
        wall.apply(e).unwrap();
    };
    // 24 h + 30 s after the first resolution is still within the minute of 24 h: kept.
    both(&mut s, &mut wall, &opened(3, T0 + 24 * H + 30_000));
    assert!(s.tickets.contains_key(&1));
    // The next minute prunes ticket 1 (resolved at T0 + 1 min < cutoff T0 + 1 min 30 s).
    both(&mut s, &mut wall, &opened(4, T0 + 24 * H + 90_000));
    for st in [&mut s, &mut wall] {
        assert!(!st.tickets.contains_key(&1), "resolved a day ago: pruned");
        assert!(st.tickets.contains_key(&2), "reopened: stays");
        assert!(
            st.incidents.contains_key(&7),
            "closed 23 h 56 min ago: stays"
        );
        assert_eq!(
            st.take_pruned(),
            Pruned {
                tickets: vec![1],
                incidents: vec![]
            }
        );
    }
    both(&mut s, &mut wall, &opened(5, T0 + 24 * H + 6 * 60_000));
    for st in [&mut s, &mut wall] {
        assert!(!st.incidents.contains_key(&7));
        assert_eq!(st.take_pruned().incidents, vec![7]);
        assert_eq!(st.retained_counts(), (0, 0));
    }
    assert!(
        s.same_entities(&wall),
        "the snapshot-loaded state pruned alike"
    );
    // An event for a pruned ticket is refused like any unknown ticket.
    assert_eq!(
        rejects(&mut s, &rated(1, T0 + 25 * H)),
        ApplyError::UnknownEntity(EntityRef::Ticket(1))
    );
    assert_eq!(s.tickets.len(), 4);
}

#[test]
fn notes_are_checked_taken_down_and_leave_a_week_after_they_were_written() {
    use datawall::model::state::ANNOTATION_RETENTION_MS;
    use datawall::protocol::entities::Place;
    const H: i64 = 3_600_000;
    assert_eq!(ANNOTATION_RETENTION_MS, 7 * 24 * H);
    let (g, pos) = grid_pos(12);
    let note = |id: &str, at_ms: i64, moment_ms: i64| AnnotationAdded {
        annotation_id: id.into(),
        at_ms,
        moment_ms,
        place: Place::Grid { grid_id: g },
        pos,
        grid_id: Some(g),
        text: "积水".into(),
        by: "值班员".into(),
        command_id: None,
    };
    let mut s = state();
    assert_eq!(
        s.apply(&Event::AnnotationAdded(note("a", T0, T0 - H))),
        Ok(Change::Annotation {
            id: "a".into(),
            added: true
        })
    );
    assert_eq!(s.annotations["a"].moment_ms, T0 - H);
    // Refused, and nothing changes: the same id again, a moment after it was written, a place
    // outside the county, an unknown grid, an empty or oversized text, an unknown removal.
    let before = s.clone();
    let bad = [
        note("a", T0 + 1, T0),
        note("b", T0, T0 + 1),
        AnnotationAdded {
            pos: LonLat::new(100.0, 30.0),
            ..note("c", T0, T0)
        },
        AnnotationAdded {
            grid_id: Some(999_999),
            ..note("d", T0, T0)
        },
        AnnotationAdded {
            text: " ".into(),
            ..note("e", T0, T0)
        },
        AnnotationAdded {
            text: "字".repeat(501),
            ..note("f", T0, T0)
        },
    ];
    for n in bad {
        assert!(
            s.apply(&Event::AnnotationAdded(n.clone())).is_err(),
            "{n:?}"
        );
    }
    let unknown = Event::AnnotationRemoved(AnnotationRemoved {
        annotation_id: "zz".into(),
        at_ms: T0,
        by: "值班员".into(),
        command_id: None,
    });
    assert!(s.apply(&unknown).is_err());
    assert!(s.same_entities(&before));

    // Two more; one taken down.
    s.apply(&Event::AnnotationAdded(note("b", T0 + 2 * H, T0)))
        .unwrap();
    s.apply(&Event::AnnotationAdded(note("c", T0 + 3 * H, T0)))
        .unwrap();
    s.apply(&Event::AnnotationRemoved(AnnotationRemoved {
        annotation_id: "c".into(),
        at_ms: T0 + 3 * H,
        by: "值班员".into(),
        command_id: None,
    }))
    .unwrap();
    let mut wall = reloaded(&s);
    // A week after "a" was written (in the next feed minute) it leaves; "b" a week after its
    // own writing, two hours later — alike on the snapshot-loaded copy.
    let week = 7 * 24 * H;
    for (at, left) in [
        (T0 + week - 60_000, vec!["a", "b"]),
        (T0 + week + 60_000, vec!["b"]),
        (T0 + week + 2 * H + 60_000, vec![]),
    ] {
        for st in [&mut s, &mut wall] {
            st.apply(&opened(at as u64, at)).unwrap();
            let ids: Vec<&str> = st.annotations.keys().map(String::as_str).collect();
            assert_eq!(ids, left, "at T0 + {} h", (at - T0) / H);
        }
    }
    assert!(s.same_entities(&wall));
}

#[test]
fn an_assignee_or_summary_on_many_tickets_is_held_once_in_the_model_and_after_a_snapshot() {
    let mut s = state();
    for id in 1..=3 {
        s.apply(&opened(id, T0)).unwrap();
        s.apply(&dispatched(id, T0 + 1_000)).unwrap();
    }
    // A fourth with a summary of its own keeps it.
    let Event::TicketOpened(mut own) = opened(4, T0) else {
        unreachable!()
    };
    own.summary = "3号楼电梯困人".into();
    s.apply(&Event::TicketOpened(own)).unwrap();
    let shared = |s: &LiveState| {
        let names: Vec<_> = (1..=3)
            .map(|id| s.tickets[&id].assignee.clone().unwrap())
            .collect();
        assert!(names.iter().all(|n| &**n == "王伟"));
        let summaries: Vec<_> = (1..=3).map(|id| s.tickets[&id].summary.clone()).collect();
        assert!(summaries.iter().all(|n| &**n == "水管爆裂"));
        assert_eq!(&*s.tickets[&4].summary, "3号楼电梯困人");
        [names, summaries].iter().all(|texts| {
            texts
                .windows(2)
                .all(|w| datawall::protocol::entities::Text::ptr_eq(&w[0], &w[1]))
        })
    };
    assert!(
        shared(&s),
        "the three tickets point at one name and one summary"
    );
    // A model rebuilt from a snapshot's tickets, each decoded from JSON with its own copy of
    // the name, shares it again.
    let decoded: Vec<datawall::model::Ticket> = s
        .tickets
        .values()
        .map(|t| serde_json::from_str(&serde_json::to_string(&**t).unwrap()).unwrap())
        .collect();
    let copies: Vec<_> = decoded.iter().filter_map(|t| t.assignee.as_ref()).collect();
    assert!(!datawall::protocol::entities::Text::ptr_eq(
        copies[0], copies[1]
    ));
    let again = LiveState::from_parts(
        county(),
        decoded,
        s.volunteers.clone(),
        [],
        [],
        [],
        s.latest_event_ms,
    )
    .unwrap();
    assert!(again.same_entities(&s));
    assert!(
        shared(&again),
        "the reloaded tickets point at one name and one summary"
    );
}
