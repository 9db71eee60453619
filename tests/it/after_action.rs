//! After-action: the teams sent to an incident, each responder's track and arrival against
//! the target, folded from the events (hand-computed fixture); and, on the wall, fetched from a
//! real gateway's history for a drill the simulator ran.

use datawall::model::LiveState;
use datawall::model::after_action::{ARRIVAL_RADIUS_M, Builder};
use datawall::protocol::*;

use crate::common::county;

const T0: i64 = 1_764_115_200_000;
const S: i64 = 1_000;

fn status(v: VolunteerId, at_ms: i64, status: VolunteerStatus, task: Option<Task>) -> Event {
    Event::VolunteerStatus(VolunteerStatusChanged {
        volunteer_id: v,
        at_ms,
        status,
        task,
    })
}

fn fix(v: VolunteerId, at_ms: i64, pos: LonLat) -> Event {
    Event::VolunteerFix(VolunteerFix {
        volunteer_id: v,
        at_ms,
        pos,
    })
}

#[test]
fn arrivals_are_the_first_fix_within_fifty_metres_per_responder_and_team() {
    let c = county();
    let site = c.pack.grids[20].label;
    // A degree of latitude is about 111 km: 0.0003° ≈ 33 m (on site), 0.0006° ≈ 67 m (not).
    let north = |deg: f64| LonLat::new(site.lon, site.lat + deg);
    const { assert!(ARRIVAL_RADIUS_M > 33.4 && ARRIVAL_RADIUS_M < 66.6) };
    // Two teams with at least two members each.
    let members = |team: TeamId| -> Vec<VolunteerId> {
        c.pack
            .volunteers
            .iter()
            .filter(|v| v.team_id == team)
            .map(|v| v.id)
            .collect()
    };
    let mut teams = c
        .pack
        .teams
        .iter()
        .map(|t| t.id)
        .filter(|t| members(*t).len() >= 2);
    let (x, y) = (teams.next().unwrap(), teams.next().unwrap());
    let (a, b, d) = (members(x)[0], members(x)[1], members(x).get(2).copied());
    let cv = members(y)[0];
    let responding = Some(Task::Incident(9));
    let mut events = vec![
        Event::IncidentOpened(IncidentOpened {
            incident_id: 9,
            at_ms: T0,
            kind: IncidentKind::Fire,
            severity: Severity::Moderate,
            pos: site,
            title: "消防演练".into(),
            drill: true,
            target_secs: 900,
        }),
        Event::IncidentMobilized(IncidentMobilized {
            incident_id: 9,
            at_ms: T0 + 60 * S,
            team_ids: vec![x, y],
            command_id: None,
        }),
        status(a, T0 + 60 * S, VolunteerStatus::Responding, responding),
        status(b, T0 + 60 * S, VolunteerStatus::Responding, responding),
        status(cv, T0 + 60 * S, VolunteerStatus::Responding, responding),
        fix(a, T0 + 70 * S, north(0.01)),
        fix(b, T0 + 90 * S, north(0.02)),
        // B is sent elsewhere: what follows is not on this incident.
        status(b, T0 + 120 * S, VolunteerStatus::Available, None),
        fix(a, T0 + 200 * S, north(0.0006)),
        fix(a, T0 + 260 * S, north(0.0003)),
        fix(b, T0 + 300 * S, site),
        fix(a, T0 + 330 * S, site),
        fix(cv, T0 + 400 * S, site),
        Event::IncidentClosed(IncidentClosed {
            incident_id: 9,
            at_ms: T0 + 900 * S,
            outcome: IncidentOutcome::DrillCompleted,
        }),
        // After the close: not on the track.
        fix(a, T0 + 960 * S, north(0.01)),
    ];
    if let Some(d) = d {
        // Someone of the team who was never sent: ignored though on site.
        events.insert(3, status(d, T0 + 50 * S, VolunteerStatus::Available, None));
        events.push(fix(d, T0 + 100 * S, site));
    }
    // The events are valid on the model, and the fold starts from the state before them.
    let start = LiveState::new(c.clone());
    let mut state = start.clone();
    let mut builder = Builder::new(&start, 9);
    for e in &events {
        state.apply(e).unwrap_or_else(|err| panic!("{e:?}: {err}"));
        builder.event(e);
    }
    let aa = builder.finish().expect("the incident was seen");
    assert_eq!(aa.opened_at_ms, T0);
    assert_eq!(aa.closed_at_ms, Some(T0 + 900 * S));
    assert_eq!(aa.target_secs, 900);
    assert_eq!(aa.site, site);
    let team = |t: TeamId| aa.teams.iter().find(|p| p.team_id == t).unwrap();
    // Team X: A and B responded, A reached the site at 260 s (33 m), not at 200 s (67 m).
    assert_eq!(team(x).responders, 2);
    assert_eq!(team(x).arrived, 1);
    assert_eq!(team(x).first_arrival, Some((T0 + 260 * S, a)));
    assert_eq!(team(x).arrival_secs(T0), Some(260));
    assert_eq!(team(x).mobilized_at_ms, T0 + 60 * S);
    // Team Y: C at 400 s.
    assert_eq!(team(y).first_arrival, Some((T0 + 400 * S, cv)));
    assert_eq!(aa.first_arrival_secs(), Some(260));
    // A's track: every fix while on the task, none after the close.
    let track = |v| aa.tracks.iter().find(|t| t.volunteer_id == v).unwrap();
    let times: Vec<i64> = track(a).points.iter().map(|(t, _)| (t - T0) / S).collect();
    assert_eq!(times, [70, 200, 260, 330]);
    assert_eq!(track(a).left_at_ms, Some(T0 + 900 * S));
    // B's ends when B was sent elsewhere; B never arrived.
    assert_eq!(track(b).points.len(), 1);
    assert_eq!(track(b).left_at_ms, Some(T0 + 120 * S));
    assert_eq!(track(b).arrived_at_ms, None);
    assert_eq!(aa.tracks.len(), 3, "only those sent have tracks");
    // An incident the events never mention: nothing.
    let mut other = Builder::new(&start, 10);
    for e in &events {
        other.event(e);
    }
    assert!(other.finish().is_none());
}

#[cfg(feature = "wall")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_opens_the_taixi_drills_after_action_from_the_gateways_history() {
    use std::sync::Arc;

    use datawall::model::after_action::AfterAction;
    use datawall::net::history::{self, At, History};
    use datawall::net::hub::HubConfig;
    use datawall::sim::{SimConfig, Simulator};
    use datawall::wall::feed::request_after_action;

    use crate::common::{pump_wall, scratch_dir};
    const TOKEN: &str = "after-action-viewer-51aa";
    const MIN: i64 = 60_000;

    // The simulator runs the county's fire drill in Taixi ten minutes after the live start;
    // its history is kept as a gateway keeps it.
    let dir = scratch_dir("after-action");
    let (hub, writer) =
        history::open_for_gateway(&dir, 7, &county(), HubConfig::default()).unwrap();
    hub.set_history(writer);
    let hub = Arc::new(hub);
    let mut sim = Simulator::new(
        county(),
        SimConfig {
            seed: 5,
            start_ms: T0,
            warmup_hours: 1,
            fix_interval_ms: 20_000,
            ..Default::default()
        },
    );
    let mut t = T0;
    while t < T0 + 40 * MIN {
        t += MIN;
        assert_eq!(hub.publish(sim.advance_to(t)).rejected, 0);
    }
    let truth = hub.state();
    let drill = truth
        .incidents
        .values()
        .find(|i| i.drill && i.title.contains("太西"))
        .expect("the Taixi drill ran")
        .clone();
    let closed = drill.closed_at_ms.expect("and finished");
    assert!(!drill.teams.is_empty());

    let (mut ch, mut model, shutdown) =
        crate::common::live_wall_on_history(&hub, TOKEN, &dir).await;

    // From the incident's panel: the after-action, and the timeline at the opening.
    request_after_action(&ch, &mut model, drill.id);
    pump_wall(
        &mut ch,
        &mut model,
        "the after-action and the opening",
        |m| m.after_action.is_some() && m.replay.is_some() && m.replay_pending.is_none(),
    )
    .await;
    assert_eq!(
        model.now_ms(),
        drill.opened_at_ms,
        "replayed from its opening"
    );
    let aa: AfterAction = *model.after_action.clone().unwrap();

    // The same fold, read straight from the history on disk.
    let h = History::open(&dir).unwrap().unwrap();
    let start = h
        .state_at(&county(), At::Time(drill.opened_at_ms - 1))
        .unwrap();
    let mut b = Builder::new(&start.state, drill.id);
    h.for_each_after(start.seq, |_, e| {
        if e.at_ms().is_some_and(|t| t > closed) {
            return false;
        }
        b.event(&e);
        true
    })
    .unwrap();
    assert_eq!(
        aa,
        b.finish().unwrap(),
        "the wall's after-action is the history's"
    );

    // And it agrees with what the gateway's model says of the incident.
    assert_eq!(
        (aa.opened_at_ms, aa.closed_at_ms),
        (drill.opened_at_ms, Some(closed))
    );
    assert_eq!(aa.target_secs, 900);
    let sent: Vec<(TeamId, i64)> = drill.teams.iter().map(|m| (m.team_id, m.at_ms)).collect();
    let parts: Vec<(TeamId, i64)> = aa
        .teams
        .iter()
        .map(|p| (p.team_id, p.mobilized_at_ms))
        .collect();
    assert_eq!(parts, sent);
    let proj = county().pack.projection();
    assert!(
        aa.teams.iter().any(|t| t.first_arrival.is_some()),
        "someone reached the drill: {aa:?}"
    );
    // (A team may have had nobody on duty to send.)
    for team in &aa.teams {
        let Some((at, v)) = team.first_arrival else {
            continue;
        };
        assert!(at <= closed && at >= team.mobilized_at_ms);
        assert!(team.arrived >= 1 && team.arrived <= team.responders);
        let track = aa.tracks.iter().find(|t| t.volunteer_id == v).unwrap();
        let (_, p) = track.points.iter().find(|(t, _)| *t == at).unwrap();
        assert!(proj.distance_m((p.lon, p.lat), (aa.site.lon, aa.site.lat)) <= ARRIVAL_RADIUS_M);
    }
    // Back to live: the after-action goes with the replay.
    model.leave_replay();
    assert!(model.after_action.is_none());
    shutdown.trigger();
    let _ = std::fs::remove_dir_all(dir);
}
