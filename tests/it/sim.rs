//! The county simulator: deterministic, plausible, and every event it makes is one the model
//! accepts.

use std::collections::HashMap;

use datawall::model::LiveState;
use datawall::protocol::{Event, IncidentKind, LonLat, Task, VolunteerStatus};
use datawall::sim::{SimConfig, Simulator};

use crate::common::county;

const START_MS: i64 = 1_764_140_400_000;

fn config(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        start_ms: START_MS,
        ..Default::default()
    }
}

#[test]
fn same_seed_same_events_however_it_is_stepped() {
    let end = START_MS + 5 * 60_000;
    let mut a = Simulator::new(county(), config(9));
    let one_go = a.advance_to(end);
    let mut b = Simulator::new(county(), config(9));
    let mut stepped = Vec::new();
    let mut t = START_MS - 24 * 3_600_000;
    while t < end {
        t = (t + 7_919).min(end);
        stepped.extend(b.advance_to(t));
    }
    assert_eq!(one_go.len(), stepped.len());
    assert!(one_go == stepped, "stepping changed the events");
    let other = Simulator::new(county(), config(10)).advance_to(end);
    assert!(one_go != other, "another seed gives another day");
}

#[test]
fn a_simulated_day_is_plausible_and_fully_accepted_by_the_model() {
    let mut sim = Simulator::new(county(), config(1));
    let mut state = LiveState::new(county());
    let history = sim.advance_to(START_MS);
    let opened = history
        .iter()
        .filter(|e| matches!(e, Event::TicketOpened(_)))
        .count();
    assert!(
        (1_000..=2_100).contains(&opened),
        "{opened} tickets in 24 h; the county's rate is about 1500"
    );
    assert!(
        !history
            .iter()
            .any(|e| matches!(e, Event::VolunteerFix(f) if f.at_ms < START_MS)),
        "no position fixes in the warm-up (the live part starts at START_MS)"
    );
    for e in &history {
        state.apply(e).unwrap_or_else(|err| panic!("{e:?}: {err}"));
    }
    let open = state.open_tickets().count();
    assert!(
        open > 200,
        "a backlog of open tickets at the start ({open})"
    );
    let overdue = state
        .open_tickets()
        .filter(|t| t.is_overdue(START_MS))
        .count();
    assert!(
        overdue > 0 && overdue < open / 3,
        "{overdue} of {open} overdue"
    );

    // Thirty live minutes: volunteers report about once a second, at walking/cycling speed.
    let live = sim.advance_to(START_MS + 30 * 60_000);
    let mut last_fix: HashMap<u32, (i64, LonLat)> = HashMap::new();
    let proj = county().pack.projection();
    let mut fixes = 0;
    for e in &live {
        state.apply(e).unwrap_or_else(|err| panic!("{e:?}: {err}"));
        if let Event::VolunteerFix(f) = e {
            fixes += 1;
            if let Some((t0, p0)) = last_fix.insert(f.volunteer_id, (f.at_ms, f.pos)) {
                let dt = (f.at_ms - t0) as f64 / 1000.0;
                assert!((0.9..=1.1).contains(&dt), "fix interval {dt} s");
                let d = proj.distance_m((p0.lon, p0.lat), (f.pos.lon, f.pos.lat));
                assert!(
                    d / dt < 6.5,
                    "volunteer {} moved at {} m/s",
                    f.volunteer_id,
                    d / dt
                );
            }
        }
    }
    let on_duty = state
        .volunteers
        .iter()
        .filter(|v| v.status != VolunteerStatus::OffDuty)
        .count();
    assert!((500..=900).contains(&on_duty), "{on_duty} of 1160 on duty");
    assert!(fixes > on_duty * 60 * 25, "{fixes} fixes in 30 min");
}

#[test]
fn the_taixi_fire_drill_mobilizes_the_nearest_teams_who_converge() {
    let mut sim = Simulator::new(county(), config(2));
    let mut state = LiveState::new(county());
    for e in sim.advance_to(START_MS + 9 * 60_000) {
        state.apply(&e).unwrap();
    }
    let before: Vec<u64> = state.incidents.keys().copied().collect();
    for e in sim.advance_to(START_MS + 14 * 60_000) {
        state.apply(&e).unwrap();
    }
    let drill = state
        .incidents
        .values()
        .find(|i| !before.contains(&i.id) && i.drill)
        .expect("the scheduled drill opened")
        .clone();
    assert_eq!(drill.kind, IncidentKind::Fire);
    assert!(drill.title.contains("太西"), "{}", drill.title);
    assert_eq!(drill.teams.len(), 3);
    let c = county();
    let proj = c.pack.projection();
    let dist = |team: u32| {
        let g = c.grid(c.team(team).unwrap().home_grid_id).unwrap();
        proj.distance_m((g.label.lon, g.label.lat), (drill.pos.lon, drill.pos.lat))
    };
    let farthest_mobilized = drill
        .teams
        .iter()
        .map(|m| dist(m.team_id))
        .fold(0.0, f64::max);
    for t in &c.pack.teams {
        if !drill.teams.iter().any(|m| m.team_id == t.id) {
            assert!(
                dist(t.id) >= farthest_mobilized,
                "team {} is nearer than a mobilized one",
                t.name
            );
        }
    }
    let responders: Vec<u32> = state
        .volunteers
        .iter()
        .filter(|v| v.task == Some(Task::Incident(drill.id)))
        .map(|v| v.id)
        .collect();
    assert!(!responders.is_empty(), "nobody responding to the drill");
    let mean_distance = |s: &LiveState| {
        let d: f64 = responders
            .iter()
            .filter_map(|id| s.volunteer(*id)?.pos)
            .map(|p| proj.distance_m((p.lon, p.lat), (drill.pos.lon, drill.pos.lat)))
            .sum();
        d / responders.len() as f64
    };
    let at_mobilization = mean_distance(&state);
    for e in sim.advance_to(START_MS + 18 * 60_000) {
        state.apply(&e).unwrap();
    }
    assert!(
        mean_distance(&state) < at_mobilization * 0.7,
        "responders did not converge"
    );
    // The drill ends within about its 15-minute target, and responders are released.
    for e in sim.advance_to(START_MS + 60 * 60_000) {
        state.apply(&e).unwrap();
    }
    let closed = &state.incidents[&drill.id];
    let took_s = (closed.closed_at_ms.unwrap() - closed.opened_at_ms) / 1000;
    // The report: alarm to fire out in 15 minutes.
    assert_eq!(closed.target_secs, 15 * 60);
    assert!(
        (300..=15 * 60).contains(&took_s),
        "drill took {took_s} s, over its 15-minute target"
    );
    assert!(
        state
            .volunteers
            .iter()
            .all(|v| v.task != Some(Task::Incident(drill.id)))
    );
}

#[test]
fn a_standing_backlog_stays_open_and_is_valid() {
    let mut sim = Simulator::new(
        county(),
        SimConfig {
            backlog: 20_000,
            warmup_hours: 1,
            ..config(5)
        },
    );
    let mut state = LiveState::new(county());
    for e in sim.advance_to(START_MS + 60_000) {
        state.apply(&e).unwrap_or_else(|err| panic!("{e:?}: {err}"));
    }
    let open = state.open_tickets().count();
    assert!(open >= 20_000, "{open} open tickets");
    let oldest = state
        .tickets
        .values()
        .map(|t| t.opened_at_ms)
        .min()
        .unwrap();
    assert!(
        START_MS - oldest > 48 * 3_600_000,
        "the backlog reaches back days"
    );
    assert!(
        state
            .open_tickets()
            .filter(|t| t.is_overdue(START_MS))
            .count()
            > 5_000,
        "much of it overdue"
    );
}

#[test]
fn tickets_are_escalated_because_they_breach_their_time_limit() {
    let end = START_MS + 12 * 3_600_000;
    let mut sim = Simulator::new(county(), config(21));
    let events = sim.advance_to(end);
    let mut state = LiveState::new(county());
    let mut escalated = 0;
    for e in &events {
        if let Event::TicketEscalated(x) = e {
            let t = &state.tickets[&x.ticket_id];
            assert!(
                t.status.is_open(),
                "ticket {} escalated after it closed",
                t.id
            );
            assert_eq!(
                x.at_ms, t.sla_deadline_ms,
                "ticket {} escalated at {}, not when its limit {} passed",
                t.id, x.at_ms, t.sla_deadline_ms
            );
            escalated += 1;
        }
        state.apply(e).expect("the simulator's events are possible");
    }
    assert!(escalated > 0, "some tickets breach in half a day");
    // Every open ticket past its limit has been escalated.
    for t in state.open_tickets() {
        if t.sla_deadline_ms < end && t.opened_at_ms >= START_MS - 24 * 3_600_000 {
            assert!(
                t.steps
                    .iter()
                    .any(|s| s.status == datawall::model::TicketStatus::Escalated),
                "ticket {} is past its limit and was not escalated",
                t.id
            );
        }
    }
}

#[test]
fn the_platform_acts_on_commands_and_supervised_tickets_are_resolved_sooner() {
    use datawall::protocol::command::{Command, PlatformCommand};
    let live = START_MS + 3_600_000;
    // The same day twice; in the second, the platform is told to supervise 40 tickets.
    let run = |supervise: bool| {
        // Position fixes are beside the point here: one an hour keeps the run short.
        let cfg = SimConfig {
            fix_interval_ms: 3_600_000,
            ..config(33)
        };
        let mut sim = Simulator::new(county(), cfg);
        let mut events = sim.advance_to(live);
        let mut state = LiveState::new(county());
        for e in &events {
            state.apply(e).unwrap();
        }
        let mut chosen: Vec<_> = state
            .open_tickets()
            .filter(|t| t.opened_at_ms >= live - 3_600_000)
            .map(|t| t.id)
            .collect();
        chosen.sort_unstable();
        chosen.truncate(40);
        if supervise {
            for (i, id) in chosen.iter().enumerate() {
                sim.command(&PlatformCommand {
                    command_id: format!("c{i}"),
                    by: "值班长".into(),
                    command: Command::TicketSupervise {
                        ticket_id: *id,
                        note: String::new(),
                    },
                })
                .unwrap();
            }
        }
        events.extend(sim.advance_to(live + 48 * 3_600_000));
        let mut state = LiveState::new(county());
        for e in &events {
            state
                .apply(e)
                .expect("every event, commands' answers too, is possible");
        }
        let supervised: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::TicketSupervised(s) if s.command_id.is_some() => Some(s.ticket_id),
                _ => None,
            })
            .collect();
        // When each ticket was first resolved (read from the events: two days on, tickets
        // resolved the first day have left the live state).
        let mut first_resolved = std::collections::HashMap::new();
        for e in &events {
            if let Event::TicketResolved(r) = e {
                first_resolved.entry(r.ticket_id).or_insert(r.at_ms);
            }
        }
        // The platform acts after its handling time; a ticket resolved meanwhile is not
        // supervised (the gateway reports the command timed out).
        for id in &chosen {
            if !supervised.contains(id) && supervise {
                let resolved = first_resolved.get(id);
                assert!(
                    resolved.is_some_and(|&r| r <= live + datawall::sim::PLATFORM_HANDLING_MS.0.1),
                    "ticket {id} was neither supervised nor resolved before the platform acted"
                );
            }
        }
        let open_for: i64 = chosen
            .iter()
            .map(|id| {
                first_resolved
                    .get(id)
                    .copied()
                    .unwrap_or(live + 48 * 3_600_000)
                    - live
            })
            .sum();
        (supervised.len(), open_for / chosen.len() as i64)
    };
    let (none, plain) = run(false);
    let (all, pushed) = run(true);
    assert_eq!(none, 0);
    assert!(all >= 35, "{all} of 40 commands supervised a ticket");
    assert!(
        pushed < plain,
        "supervised tickets stay open {pushed} ms on average, unsupervised {plain} ms"
    );
}

#[test]
fn a_backlog_advanced_in_chunks_is_the_same_feed_never_held_whole() {
    let cfg = SimConfig {
        backlog: 30_000,
        warmup_hours: 1,
        ..config(5)
    };
    let whole = Simulator::new(county(), cfg.clone()).advance_to(START_MS + 60_000);
    let mut sim = Simulator::new(county(), cfg);
    let mut chunks: Vec<Vec<Event>> = Vec::new();
    let n = sim.advance_in_chunks(START_MS + 60_000, 4_096, |c| chunks.push(c));
    assert_eq!(n, whole.len());
    let largest = chunks.iter().map(Vec::len).max().unwrap_or(0);
    assert!(
        largest < 15_000,
        "a chunk of {largest} events: the backlog of 30 000 came out at once"
    );
    assert!(chunks.iter().all(|c| !c.is_empty()));
    assert_eq!(chunks.into_iter().flatten().collect::<Vec<_>>(), whole);
    // And the simulator goes on from the same moment as one advanced whole.
    assert_eq!(sim.now_ms(), START_MS + 60_000);
}
