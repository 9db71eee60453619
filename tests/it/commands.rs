//! Operator commands and alerts through a real gateway and real websocket clients: an
//! operator supervises, assigns and dispatches and hears accepted then confirmed; a viewer is
//! forbidden; every invalid command gets its reason; the audit log holds every decision;
//! breach alerts are raised on the feed clock, climb the ladder unacknowledged, and an
//! acknowledgement on one wall shows on the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use datawall::model::{LiveState, TicketStatus};
use datawall::net::client::{FeedConnection, Mirror};
use datawall::net::gateway::commands::{
    AlertSink, AuditLog, CommandDesk, Platform, run_alert_engine,
};
use datawall::net::gateway::{GatewayConfig, Shutdown, serve};
use datawall::net::hub::{Hub, HubConfig};
use datawall::protocol::command::{Command, CommandResult, CommandStatus, errors};
use datawall::protocol::entities::Place;
use datawall::protocol::session::{ClientMsg, FEED_PATH, ServerMsg};
use datawall::protocol::*;
use datawall::sim::{SimConfig, Simulator};
use tokio::task::JoinHandle;

use crate::common::{county, scratch_dir};

const VIEWER: &str = "viewer-token-3b81";
const OPERATOR: &str = "operator-token-c04d";
const START_MS: i64 = 1_764_140_400_000;
/// Long enough for anything a loaded 2-core machine does; tests wait for events, not time.
const PATIENCE: Duration = Duration::from_secs(60);

struct Gateway {
    addr: std::net::SocketAddr,
    hub: Arc<Hub>,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// A gateway whose commands go to `platform`, audited to `audit`, with the alert engine.
    async fn start(hub: Arc<Hub>, platform: Platform, audit: &std::path::Path) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut cfg = GatewayConfig::new(VIEWER);
        cfg.operator_tokens = vec![OPERATOR.into()];
        cfg.commands = Some(Arc::new(CommandDesk::new(
            platform,
            Some(AuditLog::open(audit).unwrap()),
        )));
        let (shutdown, rx) = Shutdown::new();
        let tasks = vec![
            tokio::spawn(run_alert_engine(
                Arc::clone(&hub),
                AlertSink::Hub,
                rx.clone(),
            )),
            tokio::spawn(serve(listener, Arc::clone(&hub), cfg, rx)),
        ];
        Self {
            addr,
            hub,
            shutdown,
            tasks,
        }
    }

    async fn connect(&self, token: &str) -> Wall {
        let url = format!("ws://{}{FEED_PATH}", self.addr);
        let conn = FeedConnection::connect(&url, token, None).await.unwrap();
        let mut wall = Wall {
            conn,
            mirror: Mirror::new(county()),
            results: Vec::new(),
        };
        wall.until(|w| w.mirror.state.is_some()).await;
        wall
    }

    async fn stop(self) {
        self.shutdown.trigger();
        for t in self.tasks {
            tokio::time::timeout(PATIENCE, t).await.unwrap().unwrap();
        }
    }
}

/// A wall: its connection, its mirror of the gateway's model, the command results it heard.
struct Wall {
    conn: FeedConnection,
    mirror: Mirror,
    results: Vec<CommandResult>,
}

impl Wall {
    /// Read messages (applying them) until `done` holds.
    async fn until(&mut self, mut done: impl FnMut(&Wall) -> bool) {
        while !done(self) {
            let msg = tokio::time::timeout(PATIENCE, self.conn.next_msg())
                .await
                .expect("a message in time")
                .expect("the feed stays up");
            if let ServerMsg::CommandResult(r) = &msg {
                self.results.push(r.clone());
            }
            self.mirror.handle(msg).expect("the mirror follows");
        }
    }

    fn state(&self) -> &LiveState {
        self.mirror.state.as_ref().expect("synced")
    }

    async fn command(&mut self, id: &str, command: Command) {
        self.conn
            .send(&ClientMsg::Command {
                id: id.into(),
                command,
            })
            .await
            .unwrap();
    }

    /// Wait for the result of command `id` with `status`.
    async fn result(&mut self, id: &str, status: CommandStatus) -> CommandResult {
        let found = |w: &Wall| {
            w.results
                .iter()
                .find(|r| r.id == id && r.status == status)
                .cloned()
        };
        self.until(|w| found(w).is_some()).await;
        found(self).unwrap()
    }

    /// Send `command` and return its first answer (accepted or rejected).
    async fn first_answer(&mut self, id: &str, command: Command) -> CommandResult {
        self.command(id, command).await;
        let answered = |w: &Wall| {
            w.results
                .iter()
                .find(|r| {
                    r.id == id
                        && matches!(r.status, CommandStatus::Accepted | CommandStatus::Rejected)
                })
                .cloned()
        };
        self.until(|w| answered(w).is_some()).await;
        answered(self).unwrap()
    }
}

fn audit_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each audit line is JSON"))
        .collect()
}

/// The simulator as the platform, live at 20× after three hours of history.
async fn simulated(audit: &std::path::Path) -> (Gateway, JoinHandle<()>, Shutdown) {
    let hub = Arc::new(Hub::new(county(), HubConfig::default()));
    let sim = Simulator::new(
        county(),
        SimConfig {
            seed: 5,
            start_ms: START_MS,
            warmup_hours: 3,
            fix_interval_ms: 10_000,
            ..Default::default()
        },
    );
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let (stop_sim, stop_rx) = Shutdown::new();
    let mut published = hub.subscribe();
    let sim_task = tokio::spawn(datawall::net::source::run_simulator(
        Arc::clone(&hub),
        sim,
        START_MS,
        // The platform takes 5–30 s of feed time to act: at 20× that is a second or so.
        20.0,
        rx,
        stop_rx,
    ));
    // The history is in once anything is.
    tokio::time::timeout(PATIENCE, published.changed())
        .await
        .unwrap()
        .unwrap();
    let gw = Gateway::start(hub, Platform::Simulator(tx), audit).await;
    (gw, sim_task, stop_sim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_commands_a_viewer_cannot_and_every_decision_is_audited() {
    let dir = scratch_dir("commands");
    let audit = dir.join("audit.ndjson");
    let (gw, sim_task, stop_sim) = simulated(&audit).await;
    let mut operator = gw.connect(OPERATOR).await;
    let mut viewer = gw.connect(VIEWER).await;

    // 督办 an open ticket the platform is working on, not yet on site.
    let ticket = operator
        .state()
        .open_tickets()
        .filter(|t| matches!(t.status, TicketStatus::Opened | TicketStatus::Dispatched))
        .filter(|t| t.supervised_at_ms.is_none())
        .map(|t| t.id)
        .max()
        .expect("an open ticket");
    let supervise = Command::TicketSupervise {
        ticket_id: ticket,
        note: "请尽快处理".into(),
    };
    let accepted = operator.first_answer("s1", supervise.clone()).await;
    assert_eq!(accepted.status, CommandStatus::Accepted, "{accepted:?}");
    let command_id = accepted.command_id.clone().expect("a command id");
    let confirmed = operator.result("s1", CommandStatus::Confirmed).await;
    let seq = confirmed.seq.expect("the answering event's seq");
    // The answer is an ordinary feed event, and it reaches the viewer too.
    viewer.until(|w| w.mirror.last_seq >= seq).await;
    let seen = viewer.state().tickets[&ticket].supervised_at_ms;
    assert!(seen.is_some(), "the viewer's wall shows the supervision");
    assert_eq!(
        operator.state().tickets[&ticket].supervised_at_ms,
        seen,
        "both walls show the same supervision"
    );

    // The viewer may not command: forbidden, and nothing happens.
    let forbidden = viewer.first_answer("v1", supervise.clone()).await;
    assert_eq!(forbidden.status, CommandStatus::Rejected);
    assert_eq!(forbidden.error.as_deref(), Some(errors::FORBIDDEN));
    assert_eq!(forbidden.command_id, None);

    // Every invalid command gets its reason.
    let state = gw.hub.state();
    let resolved = state
        .tickets
        .values()
        .find(|t| !t.status.is_open())
        .expect("a resolved ticket")
        .id;
    let off_duty = state
        .volunteers
        .iter()
        .find(|v| v.status == VolunteerStatus::OffDuty)
        .expect("someone off duty")
        .id;
    let on_site = state
        .open_tickets()
        .find(|t| t.status == TicketStatus::OnSite)
        .map(|t| t.id);
    let cases: Vec<(&str, Command, &str)> = vec![
        (
            "bad-ticket",
            Command::TicketSupervise {
                ticket_id: 987_654_321,
                note: String::new(),
            },
            errors::UNKNOWN_TICKET,
        ),
        (
            "closed",
            Command::TicketSupervise {
                ticket_id: resolved,
                note: String::new(),
            },
            errors::TICKET_CLOSED,
        ),
        (
            "off-duty",
            Command::TicketAssign {
                ticket_id: ticket,
                volunteer_id: off_duty,
            },
            errors::VOLUNTEER_UNAVAILABLE,
        ),
        (
            "no-one",
            Command::TicketAssign {
                ticket_id: ticket,
                volunteer_id: 9_999_999,
            },
            errors::UNKNOWN_VOLUNTEER,
        ),
        (
            "no-incident",
            Command::IncidentDispatch {
                incident_id: 424_242,
                team_ids: vec![1],
            },
            errors::UNKNOWN_INCIDENT,
        ),
        (
            "no-alert",
            Command::AlertAck {
                alert_id: "sla-987654321".into(),
                note: String::new(),
            },
            errors::UNKNOWN_ALERT,
        ),
        (
            "long-note",
            Command::TicketSupervise {
                ticket_id: ticket,
                note: "长".repeat(501),
            },
            errors::BAD_COMMAND,
        ),
    ];
    for (id, command, error) in &cases {
        let r = operator.first_answer(id, command.clone()).await;
        assert_eq!(r.status, CommandStatus::Rejected, "{id}: {r:?}");
        assert_eq!(r.error.as_deref(), Some(*error), "{id}: {r:?}");
        assert!(r.reason.as_ref().is_some_and(|r| !r.is_empty()), "{id}");
    }
    if let Some(on_site) = on_site {
        let available = state
            .volunteers
            .iter()
            .find(|v| v.status == VolunteerStatus::Available)
            .map(|v| v.id);
        if let Some(v) = available {
            let r = operator
                .first_answer(
                    "on-site",
                    Command::TicketAssign {
                        ticket_id: on_site,
                        volunteer_id: v,
                    },
                )
                .await;
            assert_eq!(r.error.as_deref(), Some(errors::TICKET_CLOSED), "{r:?}");
        }
    }
    // Malformed: an unknown command type, and a missing field, answered by id.
    operator
        .conn
        .send_text(
            r#"{"type":"command","id":"m1","command":{"type":"ticket.delete.v1","ticket_id":1}}"#
                .into(),
        )
        .await
        .unwrap();
    operator
        .conn
        .send_text(
            r#"{"type":"command","id":"m2","command":{"type":"ticket.assign.v1","ticket_id":1}}"#
                .into(),
        )
        .await
        .unwrap();
    for id in ["m1", "m2"] {
        let r = operator.result(id, CommandStatus::Rejected).await;
        assert_eq!(r.error.as_deref(), Some(errors::BAD_COMMAND), "{r:?}");
    }

    // 派单: an available volunteer heads to an open ticket; the platform confirms.
    let (assign_ticket, volunteer) = {
        let s = gw.hub.state();
        let v = s
            .volunteers
            .iter()
            .filter(|v| v.status == VolunteerStatus::Available)
            .map(|v| v.id)
            .min()
            .expect("someone available");
        let t = s
            .open_tickets()
            .filter(|t| matches!(t.status, TicketStatus::Opened | TicketStatus::Dispatched))
            .map(|t| t.id)
            .max()
            .expect("an open ticket");
        (t, v)
    };
    let r = operator
        .first_answer(
            "a1",
            Command::TicketAssign {
                ticket_id: assign_ticket,
                volunteer_id: volunteer,
            },
        )
        .await;
    assert_eq!(r.status, CommandStatus::Accepted, "{r:?}");
    let seq = operator
        .result("a1", CommandStatus::Confirmed)
        .await
        .seq
        .unwrap();
    operator.until(|w| w.mirror.last_seq >= seq).await;
    let t = &operator.state().tickets[&assign_ticket];
    assert_eq!(t.volunteer_id, Some(volunteer));
    assert_eq!(
        operator.state().volunteer(volunteer).unwrap().status,
        VolunteerStatus::Responding
    );

    // Dispatch to an open incident: the teams are mobilized; sending one again is refused.
    let incident = gw
        .hub
        .state()
        .active_incidents()
        .map(|i| (i.id, i.teams.iter().map(|m| m.team_id).collect::<Vec<_>>()))
        .next();
    if let Some((incident, sent)) = incident {
        let team = county()
            .pack
            .teams
            .iter()
            .map(|t| t.id)
            .find(|t| !sent.contains(t))
            .unwrap();
        let dispatch = Command::IncidentDispatch {
            incident_id: incident,
            team_ids: vec![team],
        };
        let r = operator.first_answer("d1", dispatch.clone()).await;
        assert_eq!(r.status, CommandStatus::Accepted, "{r:?}");
        let seq = operator
            .result("d1", CommandStatus::Confirmed)
            .await
            .seq
            .unwrap();
        operator.until(|w| w.mirror.last_seq >= seq).await;
        assert!(
            operator.state().incidents[&incident]
                .teams
                .iter()
                .any(|m| m.team_id == team)
        );
        let again = operator.first_answer("d2", dispatch).await;
        assert_eq!(
            again.error.as_deref(),
            Some(errors::TEAM_ALREADY_SENT),
            "{again:?}"
        );
    }

    // The audit log holds every decision, with who made it.
    let lines = audit_lines(&audit);
    let find = |id: &str, result: &str| {
        lines
            .iter()
            .find(|l| l["id"] == id && l["result"] == result)
            .unwrap_or_else(|| panic!("no {result} line for {id} in {lines:#?}"))
    };
    let s1 = find("s1", "accepted");
    assert_eq!(s1["who"], "--operator-token #1");
    assert_eq!(s1["command_id"], command_id.as_str());
    assert_eq!(s1["command"]["type"], "ticket.supervise.v1");
    assert_eq!(find("s1", "confirmed")["command_id"], command_id.as_str());
    let v1 = find("v1", "rejected");
    assert_eq!(v1["who"], "--token");
    assert_eq!(v1["error"], errors::FORBIDDEN);
    for (id, _, error) in &cases {
        assert_eq!(find(id, "rejected")["error"], *error);
    }
    find("a1", "accepted");
    find("a1", "confirmed");
    find("m1", "rejected");

    let hub = Arc::clone(&gw.hub);
    gw.stop().await;
    stop_sim.trigger();
    sim_task.await.unwrap();
    // Only the operator's supervision happened.
    assert_eq!(
        hub.state().tickets[&ticket].supervised_at_ms,
        seen,
        "the viewer's command changed nothing"
    );
}

/// A ticket opened at `at_ms` with a time limit `limit_ms` later.
fn ticket(id: TicketId, at_ms: i64, limit_ms: i64) -> Event {
    Event::TicketOpened(TicketOpened {
        ticket_id: id,
        at_ms,
        category: TicketCategory::Repair,
        source: TicketSource::Hotline,
        priority: Priority::High,
        pos: county().pack.grids[0].label,
        grid_id: None,
        sla_deadline_ms: at_ms + limit_ms,
        summary: "水管漏水".into(),
        responsible_party: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaches_raise_alerts_that_climb_unless_acknowledged_on_any_wall() {
    let dir = scratch_dir("alerts");
    let audit = dir.join("audit.ndjson");
    let hub = Arc::new(Hub::new(county(), HubConfig::default()));
    // The feed clock is the test's.
    let now = Arc::new(AtomicI64::new(START_MS));
    let clock = Arc::clone(&now);
    hub.set_clock(Arc::new(move || clock.load(Ordering::SeqCst)), 1.0);
    hub.publish(vec![
        ticket(1, START_MS, 60_000),
        ticket(2, START_MS, 60_000),
        ticket(3, START_MS, 3_600_000),
    ]);
    let gw = Gateway::start(Arc::clone(&hub), Platform::None, &audit).await;
    let mut first = gw.connect(OPERATOR).await;
    let mut second = gw.connect(VIEWER).await;
    assert!(first.state().alerts.is_empty(), "nothing has breached yet");

    // The limit passes on the feed clock: both breaches are raised, at 社区.
    now.store(START_MS + 61_000, Ordering::SeqCst);
    first.until(|w| w.state().alerts.len() == 2).await;
    for id in [1, 2] {
        let a = &first.state().alerts[&id];
        assert_eq!(a.id, format!("sla-{id}"));
        assert_eq!(a.level, AlertLevel::Community);
        assert_eq!(a.trigger, 1);
        assert!(a.acked.is_none());
    }
    assert!(
        !first.state().alerts.contains_key(&3),
        "3 is within its limit"
    );

    // Acknowledged on the first wall…
    let r = first
        .first_answer(
            "ack1",
            Command::AlertAck {
                alert_id: "sla-1".into(),
                note: "已联系物业".into(),
            },
        )
        .await;
    assert_eq!(r.status, CommandStatus::Accepted, "{r:?}");
    let seq = first
        .result("ack1", CommandStatus::Confirmed)
        .await
        .seq
        .unwrap();
    // …shows on the second.
    second.until(|w| w.mirror.last_seq >= seq).await;
    let ack = second.state().alerts[&1]
        .acked
        .clone()
        .expect("acknowledged");
    assert_eq!(ack.by, "--operator-token #1");
    assert_eq!(ack.note, "已联系物业");
    // A second acknowledgement is refused with who did it.
    let again = first
        .first_answer(
            "ack2",
            Command::AlertAck {
                alert_id: "sla-1".into(),
                note: String::new(),
            },
        )
        .await;
    assert_eq!(again.error.as_deref(), Some(errors::ALREADY_ACKNOWLEDGED));

    // Ten minutes on, the unacknowledged one climbs to 街道/镇, the acknowledged one stays.
    now.store(START_MS + 61_000 + 10 * 60_000, Ordering::SeqCst);
    second
        .until(|w| w.state().alerts[&2].level == AlertLevel::Town)
        .await;
    assert_eq!(second.state().alerts[&1].level, AlertLevel::Community);
    // Thirty minutes after it was raised: 县.
    now.store(START_MS + 61_000 + 30 * 60_000, Ordering::SeqCst);
    second
        .until(|w| w.state().alerts[&2].level == AlertLevel::County)
        .await;

    // The ticket is escalated with a new limit and breaches again: a fresh trigger needs a
    // fresh acknowledgement.
    let later = START_MS + 61_000 + 31 * 60_000;
    hub.publish(vec![Event::TicketEscalated(TicketEscalated {
        ticket_id: 1,
        at_ms: later,
        reason: "升级".into(),
        sla_deadline_ms: Some(later + 60_000),
    })]);
    now.store(later + 61_000, Ordering::SeqCst);
    first.until(|w| w.state().alerts[&1].trigger == 2).await;
    let a = &first.state().alerts[&1];
    assert!(
        a.acked.is_none(),
        "a re-triggered alert needs a fresh acknowledgement"
    );
    assert_eq!(a.level, AlertLevel::Community);

    // Resolving the ticket resolves its alert; acknowledging it then is refused.
    hub.publish(vec![Event::TicketResolved(TicketResolved {
        ticket_id: 2,
        at_ms: later + 62_000,
        satisfaction: None,
    })]);
    first
        .until(|w| w.state().alerts[&2].resolved_at_ms.is_some())
        .await;
    let r = first
        .first_answer(
            "ack3",
            Command::AlertAck {
                alert_id: "sla-2".into(),
                note: String::new(),
            },
        )
        .await;
    assert_eq!(r.error.as_deref(), Some(errors::ALERT_RESOLVED));

    // Both walls hold the gateway's alerts exactly.
    let truth = hub.state();
    let target = hub.last_seq();
    for wall in [&mut first, &mut second] {
        wall.until(|w| w.mirror.last_seq >= target).await;
        assert!(wall.state().same_entities(&truth));
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_platform_takes_but_never_carries_out_is_reported_timed_out() {
    let dir = scratch_dir("timeout");
    let audit = dir.join("audit.ndjson");
    let hub = Arc::new(Hub::new(county(), HubConfig::default()));
    hub.publish(vec![ticket(7, START_MS, 3_600_000)]);
    // A platform that says yes and then does nothing (a stuck integration).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(
        datawall::protocol::command::PlatformCommand,
        tokio::sync::oneshot::Sender<datawall::protocol::command::PlatformReply>,
    )>(4);
    let platform = tokio::spawn(async move {
        let mut taken = Vec::new();
        while let Some((cmd, reply)) = rx.recv().await {
            let _ = reply.send(datawall::net::gateway::commands::platform_reply(Ok(())));
            taken.push(cmd.command_id);
        }
        taken
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = GatewayConfig::new(VIEWER);
    cfg.operator_tokens = vec![OPERATOR.into()];
    // Pending commands are looked at with every heartbeat.
    cfg.heartbeat = Duration::from_millis(200);
    let mut desk = CommandDesk::new(
        Platform::Simulator(tx),
        Some(AuditLog::open(&audit).unwrap()),
    );
    desk.confirm_timeout = Duration::from_millis(600);
    cfg.commands = Some(Arc::new(desk));
    let (shutdown, rx) = Shutdown::new();
    let server = tokio::spawn(serve(listener, Arc::clone(&hub), cfg, rx));
    let gw = Gateway {
        addr,
        hub,
        shutdown,
        tasks: vec![server],
    };
    let mut wall = gw.connect(OPERATOR).await;
    let r = wall
        .first_answer(
            "s1",
            Command::TicketSupervise {
                ticket_id: 7,
                note: String::new(),
            },
        )
        .await;
    assert_eq!(r.status, CommandStatus::Accepted);
    let late = wall.result("s1", CommandStatus::TimedOut).await;
    assert_eq!(late.command_id, r.command_id);
    assert!(late.reason.is_some_and(|r| r.contains("may still act")));
    assert!(
        wall.state().tickets[&7].supervised_at_ms.is_none(),
        "nothing happened on the feed"
    );
    let lines = audit_lines(&audit);
    assert!(
        lines
            .iter()
            .any(|l| l["id"] == "s1" && l["result"] == "timed_out")
    );
    gw.stop().await;
    let taken = platform.await.unwrap();
    assert_eq!(
        taken,
        vec![r.command_id.unwrap()],
        "the platform got it once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_flood_is_refused_and_a_message_flood_disconnects() {
    let dir = scratch_dir("flood");
    let hub = Arc::new(Hub::new(county(), HubConfig::default()));
    let gw = Gateway::start(hub, Platform::None, &dir.join("audit.ndjson")).await;
    let mut wall = gw.connect(OPERATOR).await;
    // Sixty commands at once: the first twenty are taken (and refused on their merits), some
    // of the rest are refused for the rate.
    for i in 0..60 {
        wall.command(
            &format!("c{i}"),
            Command::TicketSupervise {
                ticket_id: 1_000_000 + i,
                note: String::new(),
            },
        )
        .await;
    }
    wall.until(|w| w.results.len() == 60).await;
    for r in &wall.results[..20] {
        assert_eq!(r.error.as_deref(), Some(errors::UNKNOWN_TICKET), "{r:?}");
    }
    let limited = wall
        .results
        .iter()
        .filter(|r| r.error.as_deref() == Some(errors::RATE_LIMITED))
        .count();
    assert!(limited > 0, "sixty commands at once were all taken");
    // The connection stays up: the next command is answered.
    wall.command(
        "after",
        Command::AlertAck {
            alert_id: "sla-1".into(),
            note: String::new(),
        },
    )
    .await;
    wall.until(|w| w.results.iter().any(|r| r.id == "after"))
        .await;
    assert_eq!(gw.hub.metrics.flood_disconnects.load(Ordering::Relaxed), 0);

    // Five hundred messages at once from another client: it is cut off, and counted.
    let url = format!("ws://{}{FEED_PATH}", gw.addr);
    let mut noisy = FeedConnection::connect(&url, VIEWER, None).await.unwrap();
    for _ in 0..500 {
        if noisy
            .send(&ClientMsg::Heartbeat { client_time_ms: 0 })
            .await
            .is_err()
        {
            break;
        }
    }
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match noisy.next_msg().await {
                Err(datawall::net::client::ClientError::Closed(Some(frame))) => return Some(frame),
                Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the flooding client is let go");
    if let Some(frame) = closed {
        assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
        assert!(frame.reason.contains("messages a second"), "{frame:?}");
    }
    assert_eq!(gw.hub.metrics.flood_disconnects.load(Ordering::Relaxed), 1);
    gw.stop().await;
}

/// A note command on `place`.
fn note(place: Place, moment_ms: Option<i64>, text: &str) -> Command {
    Command::AnnotationAdd {
        place,
        moment_ms,
        text: text.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_pin_notes_that_every_wall_sees_and_a_late_wall_loads() {
    let dir = scratch_dir("notes");
    let audit = dir.join("audit.ndjson");
    // A short ring: the late wall gets a fresh snapshot, not the first walls' one.
    let hub = Arc::new(Hub::new(
        county(),
        HubConfig {
            ring_capacity: 4,
            ..Default::default()
        },
    ));
    let now = Arc::new(AtomicI64::new(START_MS + 60_000));
    let clock = Arc::clone(&now);
    hub.set_clock(Arc::new(move || clock.load(Ordering::SeqCst)), 1.0);
    hub.publish(vec![ticket(1, START_MS, 3_600_000)]);
    let gw = Gateway::start(Arc::clone(&hub), Platform::None, &audit).await;
    let mut op = gw.connect(OPERATOR).await;
    let mut viewer = gw.connect(VIEWER).await;
    let c = county();
    let grid = &c.pack.grids[3];

    // Pinned to a ticket, about a moment half a minute ago: every wall has it, placed where
    // the ticket is.
    let r = op
        .first_answer(
            "n1",
            note(
                Place::Ticket { ticket_id: 1 },
                Some(START_MS + 30_000),
                "  管道抢修队 14:05 到场  ",
            ),
        )
        .await;
    assert_eq!(r.status, CommandStatus::Accepted, "{r:?}");
    let id1 = r.command_id.clone().unwrap();
    let seq = op.result("n1", CommandStatus::Confirmed).await.seq.unwrap();
    viewer.until(|w| w.mirror.last_seq >= seq).await;
    let n = viewer.state().annotations[&id1].clone();
    assert_eq!(n.text, "管道抢修队 14:05 到场", "trimmed");
    assert_eq!(n.moment_ms, START_MS + 30_000);
    assert_eq!(n.at_ms, START_MS + 60_000, "written on the feed clock");
    assert_eq!(n.by, "--operator-token #1");
    let t = &hub.state().tickets[&1];
    assert_eq!((n.pos, n.grid_id), (t.pos, t.grid_id));

    // Pinned to a grid without a moment: now, at the grid's label.
    now.store(START_MS + 90_000, Ordering::SeqCst);
    let r = op
        .first_answer("n2", note(Place::Grid { grid_id: grid.id }, None, "积水点"))
        .await;
    let id2 = r.command_id.clone().expect("accepted");
    let seq = op.result("n2", CommandStatus::Confirmed).await.seq.unwrap();
    viewer.until(|w| w.mirror.last_seq >= seq).await;
    let n = &viewer.state().annotations[&id2];
    assert_eq!(n.moment_ms, START_MS + 90_000);
    assert_eq!((n.pos, n.grid_id), (grid.label, Some(grid.id)));

    // What is refused, and why.
    let outside = LonLat::new(100.0, 30.0);
    for (id, cmd, code) in [
        (
            "bad1",
            note(Place::Grid { grid_id: grid.id }, None, "   "),
            errors::BAD_COMMAND,
        ),
        (
            "bad2",
            note(
                Place::Grid { grid_id: grid.id },
                Some(START_MS + 10 * 60_000),
                "未来",
            ),
            errors::BAD_PLACE_OR_MOMENT,
        ),
        (
            "bad3",
            note(Place::Point { pos: outside }, None, "县外"),
            errors::BAD_PLACE_OR_MOMENT,
        ),
        (
            "bad4",
            note(Place::Ticket { ticket_id: 99 }, None, "?"),
            errors::UNKNOWN_TICKET,
        ),
        (
            "bad5",
            note(Place::Grid { grid_id: 999_999 }, None, "?"),
            errors::UNKNOWN_GRID,
        ),
        (
            "bad6",
            Command::AnnotationRemove {
                annotation_id: "cmd-nope-1".into(),
            },
            errors::UNKNOWN_ANNOTATION,
        ),
    ] {
        let r = op.first_answer(id, cmd).await;
        assert_eq!(r.error.as_deref(), Some(code), "{id}: {r:?}");
        assert!(r.reason.is_some_and(|s| !s.is_empty()));
    }
    let r = viewer
        .first_answer("v1", note(Place::Grid { grid_id: grid.id }, None, "看"))
        .await;
    assert_eq!(r.error.as_deref(), Some(errors::FORBIDDEN));

    // Taken down on one wall: gone on the other.
    let r = op
        .first_answer(
            "rm",
            Command::AnnotationRemove {
                annotation_id: id2.clone(),
            },
        )
        .await;
    assert_eq!(r.status, CommandStatus::Accepted, "{r:?}");
    let seq = op.result("rm", CommandStatus::Confirmed).await.seq.unwrap();
    viewer.until(|w| w.mirror.last_seq >= seq).await;
    assert!(!viewer.state().annotations.contains_key(&id2));
    assert!(viewer.state().annotations.contains_key(&id1));

    // A wall that connects now loads the note with its snapshot; every wall equals the
    // gateway.
    let mut late = gw.connect(VIEWER).await;
    assert_eq!(late.state().annotations.len(), 1, "in the snapshot");
    let truth = hub.state();
    let target = hub.last_seq();
    for wall in [&mut op, &mut viewer, &mut late] {
        wall.until(|w| w.mirror.last_seq >= target).await;
        assert!(wall.state().same_entities(&truth));
    }
    // The audit log holds who pinned and took down what.
    let lines = audit_lines(&audit);
    let kinds: Vec<(&str, &str)> = lines
        .iter()
        .filter_map(|l| Some((l["command"]["type"].as_str()?, l["result"].as_str()?)))
        .collect();
    assert!(kinds.contains(&("annotation.add.v1", "accepted")));
    assert!(kinds.contains(&("annotation.remove.v1", "accepted")));
    assert!(kinds.contains(&("annotation.add.v1", "rejected")));
    gw.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
