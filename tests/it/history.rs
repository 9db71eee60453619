//! The gateway's history on disk: the state at any moment rebuilt from checkpoints and
//! segments equals the live state recorded at that moment (across checkpoints and a gateway
//! restart); a restarted gateway keeps its epoch and seq and its walls resume without a
//! snapshot; `GET /v1/history` serves a moment and what followed; damage and write failures
//! are logged and counted while the feed goes on.

use std::path::Path;
use std::sync::Arc;

use datawall::model::LiveState;
use datawall::net::client::{FeedConnection, Mirror};
use datawall::net::history::{self, At, History};
use datawall::net::hub::{Hub, HubConfig};
use datawall::protocol::entities::Place;
use datawall::protocol::session::{FEED_PATH, ServerMsg};
use datawall::protocol::{AnnotationAdded, Event};
use datawall::sim::{SimConfig, Simulator};

use crate::backbone::http;
use crate::common::{county, scratch_dir, serve_hub};

const START_MS: i64 = 1_764_140_400_000;
const MIN: i64 = 60_000;
const TOKEN: &str = "history-viewer-7f1c";

fn simulator() -> Simulator {
    Simulator::new(
        county(),
        SimConfig {
            seed: 5,
            start_ms: START_MS,
            warmup_hours: 2,
            // Fixes once a minute: hours of feed in a few thousand events.
            fix_interval_ms: 60_000,
            ..Default::default()
        },
    )
}

/// A hub keeping its history in `dir` (continuing one that is there); finished segments are
/// compressed on a thread of their own, as a gateway does.
fn hub_on(dir: &Path) -> Arc<Hub> {
    hub_keeping(dir, true)
}

fn hub_keeping(dir: &Path, compress: bool) -> Arc<Hub> {
    let (hub, mut writer) =
        history::open_for_gateway(dir, 7, &county(), HubConfig::default()).unwrap();
    writer.compress = compress;
    hub.set_history(writer);
    Arc::new(hub)
}

/// A moment recorded live: the seq, the model's time and the state.
struct Moment {
    seq: u64,
    t_ms: i64,
    state: LiveState,
}

fn record(hub: &Hub) -> Moment {
    let (seq, state) = hub.state_at_seq();
    Moment {
        seq,
        t_ms: state.latest_event_ms,
        state,
    }
}

/// An operator's note on grid 0, about ten minutes before it was written.
fn pin_note(hub: &Hub, id: &str, text: &str) {
    // Just after the model's time, so the moment recorded before it stays its own.
    let at = hub.with_state(|s| s.latest_event_ms) + 1;
    let g = &county().pack.grids[0];
    let published = hub.publish(vec![Event::AnnotationAdded(AnnotationAdded {
        annotation_id: id.into(),
        at_ms: at,
        moment_ms: at - 10 * MIN,
        place: Place::Grid { grid_id: g.id },
        pos: g.label,
        grid_id: Some(g.id),
        text: text.into(),
        by: "值班员".into(),
        command_id: Some(id.into()),
    })]);
    assert_eq!(published.accepted, 1);
}

/// Publish the simulation up to `until` in 20-minute steps, recording the state after each.
fn run(hub: &Hub, sim: &mut Simulator, until: i64, moments: &mut Vec<Moment>) {
    let mut t = hub.with_state(|s| s.latest_event_ms).max(START_MS);
    while t < until {
        t = (t + 20 * MIN).min(until);
        let published = hub.publish(sim.advance_to(t));
        assert_eq!(published.rejected, 0);
        moments.push(record(hub));
    }
}

fn check_moments(dir: &Path, moments: &[Moment]) {
    let history = History::open(dir).unwrap().expect("a history");
    for m in moments {
        let by_seq = history.state_at(&county(), At::Seq(m.seq)).unwrap();
        assert_eq!(by_seq.seq, m.seq);
        assert!(by_seq.damaged.is_none());
        assert!(
            by_seq.state.same_entities(&m.state),
            "the state at seq {} differs from the one recorded live",
            m.seq
        );
        let by_time = history.state_at(&county(), At::Time(m.t_ms)).unwrap();
        assert_eq!(by_time.seq, m.seq, "the state at {}", m.t_ms);
        assert!(by_time.state.same_entities(&m.state));
    }
}

#[test]
fn the_state_at_any_moment_equals_the_live_state_recorded_then_across_checkpoints_and_a_restart() {
    let dir = scratch_dir("history-moments");
    let mut sim = simulator();
    let mut moments = Vec::new();
    let epoch;
    {
        let hub = hub_on(&dir);
        epoch = hub.epoch;
        hub.publish(sim.advance_to(START_MS));
        moments.push(record(&hub));
        run(&hub, &mut sim, START_MS + 70 * MIN, &mut moments);
        pin_note(&hub, "note-1", "before the checkpoint");
        let (cp_seq, ..) = history::checkpoint_now(&hub, &dir, 7).unwrap();
        assert_eq!(cp_seq, hub.last_seq());
        pin_note(&hub, "note-2", "after it");
        run(&hub, &mut sim, START_MS + 150 * MIN, &mut moments);
        // The gateway stops here (its writer flushed after every publish).
    }
    let (segments, checkpoints) = history::list(&dir).unwrap();
    assert!(segments.len() >= 4, "a segment per feed hour: {segments:?}");
    assert_eq!(checkpoints.len(), 1);

    // Restarted on the same history: same epoch, same seq, same state; it goes on.
    let last = moments.last().unwrap();
    let hub = hub_on(&dir);
    assert_eq!(hub.epoch, epoch, "the epoch is kept");
    assert_eq!(hub.last_seq(), last.seq, "the seq is kept");
    assert!(hub.state().same_entities(&last.state));
    assert_eq!(hub.state().annotations.len(), 2, "the notes are kept");
    run(&hub, &mut sim, START_MS + 200 * MIN, &mut moments);
    history::checkpoint_now(&hub, &dir, 7).unwrap();
    run(&hub, &mut sim, START_MS + 230 * MIN, &mut moments);

    // Every recorded moment, by seq and by time: before, between and after the checkpoints,
    // before and after the restart.
    check_moments(&dir, &moments);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restarted_on_its_history_is_resumed_by_its_walls_and_serves_any_moment() {
    let dir = scratch_dir("history-restart");
    let mut sim = simulator();
    let hub = hub_on(&dir);
    hub.publish(sim.advance_to(START_MS));
    let mut moments = Vec::new();
    run(&hub, &mut sim, START_MS + 40 * MIN, &mut moments);
    let (addr, shutdown, task) = serve_hub(&hub, TOKEN, |_| {}).await;
    let url = format!("ws://{addr}{FEED_PATH}");
    let mut conn = FeedConnection::connect(&url, TOKEN, None).await.unwrap();
    let mut mirror = Mirror::new(county());
    while mirror.state.is_none() || mirror.last_seq < hub.last_seq() {
        mirror.handle(conn.next_msg().await.unwrap()).unwrap();
    }
    let (epoch, seq) = (hub.epoch, mirror.last_seq);
    conn.close().await;
    shutdown.trigger();
    let _ = task.await;
    drop(hub);

    // The gateway comes back on its history (another port: a new process would reuse it).
    let hub = hub_on(&dir);
    let (addr, shutdown, _task) = serve_hub(&hub, TOKEN, |cfg| {
        cfg.history_dir = Some(dir.clone());
    })
    .await;
    let url = format!("ws://{addr}{FEED_PATH}");
    let mut conn = FeedConnection::connect(&url, TOKEN, Some((epoch, seq)))
        .await
        .unwrap();
    match conn.next_msg().await.unwrap() {
        ServerMsg::Hello(h) => {
            assert_eq!(h.epoch, epoch);
            assert!(h.resumed, "the wall resumes without a snapshot");
            mirror.handle(ServerMsg::Hello(h)).unwrap();
        }
        other => panic!("expected hello, got {other:?}"),
    }
    // Live events after the restart reach it as deltas.
    hub.publish(sim.advance_to(START_MS + 60 * MIN));
    while mirror.last_seq < hub.last_seq() {
        let m = conn.next_msg().await.unwrap();
        assert!(
            !matches!(m, ServerMsg::SnapshotBegin(_)),
            "no snapshot after a resume"
        );
        mirror.handle(m).unwrap();
    }
    assert!(mirror.state.as_ref().unwrap().same_entities(&hub.state()));

    // GET /v1/history: the state at a moment before the restart, then what followed.
    let m = &moments[0];
    let get = |query: &str, token: &str| {
        format!(
            "GET /v1/history?{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
    };
    let to = moments[1].t_ms;
    let (status, body) = http(addr, get(&format!("at={}&to={to}", m.t_ms), TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "history");
    assert_eq!(lines[0]["epoch"], epoch);
    assert_eq!(lines[0]["seq"], m.seq);
    assert_eq!(lines[1]["type"], "state");
    let tickets = lines[1]["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), m.state.tickets.len());
    let events: Vec<&serde_json::Value> = lines[2..lines.len() - 1].iter().collect();
    assert_eq!(
        events.len() as u64,
        moments[1].seq - m.seq,
        "the events from the moment to `to`"
    );
    assert_eq!(events[0][0], m.seq + 1);
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["seq"], moments[1].seq);
    // Applied to the state it served, the events give the state recorded at `to`.
    let mut rebuilt = History::open(&dir)
        .unwrap()
        .unwrap()
        .state_at(&county(), At::Seq(m.seq))
        .unwrap()
        .state;
    for e in &events {
        rebuilt
            .apply(&serde_json::from_value(e[1].clone()).unwrap())
            .unwrap();
    }
    assert!(rebuilt.same_entities(&moments[1].state));

    // Refusals say why.
    assert_eq!(http(addr, get("at=1", "wrong")).await.0, 401);
    let (status, body) = http(addr, get("since=yesterday", TOKEN)).await;
    assert_eq!(status, 400);
    assert!(body.contains("at="), "{body}");
    let (status, body) = http(
        addr,
        get(&format!("at={}", START_MS - 30 * 86_400_000), TOKEN),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    shutdown.trigger();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn without_a_history_the_api_says_how_to_keep_one() {
    let hub = Arc::new(Hub::new(county(), HubConfig::default()));
    let (addr, shutdown, _) = serve_hub(&hub, TOKEN, |_| {}).await;
    let (status, body) = http(
        addr,
        format!("GET /v1/history?at=1 HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 404);
    assert!(body.contains("--history-dir"), "{body}");
    shutdown.trigger();
}

#[test]
fn a_damaged_history_is_set_aside_and_a_torn_last_line_is_forgiven() {
    let dir = scratch_dir("history-damage");
    let mut sim = simulator();
    let mut moments = Vec::new();
    // Plain segments: this test edits them as text.
    let epoch = {
        let hub = hub_keeping(&dir, false);
        hub.publish(sim.advance_to(START_MS));
        run(&hub, &mut sim, START_MS + 130 * MIN, &mut moments);
        hub.epoch
    };
    let (segments, _) = history::list(&dir).unwrap();
    // A crash mid-write leaves half a line at the end of the last segment: forgiven.
    let last = &segments.last().unwrap().path;
    let mut text = std::fs::read_to_string(last).unwrap();
    text.push_str("[999999999,{\"type\":\"volunteer.fix.v1\",\"volun");
    std::fs::write(last, &text).unwrap();
    let h = History::open(&dir).unwrap().unwrap();
    let end = h.state_at(&county(), At::End).unwrap();
    assert!(end.damaged.is_none());
    assert_eq!(end.seq, moments.last().unwrap().seq);
    {
        let hub = hub_keeping(&dir, false);
        assert_eq!(hub.epoch, epoch);
        assert_eq!(hub.last_seq(), moments.last().unwrap().seq);
        // It goes on into new segments; the torn line is gone, so a later restart reads the
        // old segment whole.
        run(&hub, &mut sim, START_MS + 200 * MIN, &mut moments);
    }
    {
        let hub = hub_keeping(&dir, false);
        assert_eq!(hub.epoch, epoch, "not set aside as damaged");
        assert_eq!(hub.last_seq(), moments.last().unwrap().seq);
    }
    let (segments, _) = history::list(&dir).unwrap();
    // A line in the middle that does not parse is damage: the state before it is still
    // served, and a gateway starting on it sets it aside and starts anew (walls resync).
    let first = &segments[1].path;
    let text = std::fs::read_to_string(first).unwrap();
    let broken: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 2 {
                "not json\n".to_owned()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(first, broken).unwrap();
    let h = History::open(&dir).unwrap().unwrap();
    let end = h.state_at(&county(), At::End).unwrap();
    let why = end.damaged.expect("damage reported");
    assert!(why.contains("line 3"), "{why}");
    assert!(end.seq < moments.last().unwrap().seq);
    let hub = hub_on(&dir);
    assert_ne!(hub.epoch, epoch, "a new epoch: walls resync");
    assert_eq!(hub.last_seq(), 0);
    let aside: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with(&format!(
                "{}.damaged-",
                dir.file_name().unwrap().to_string_lossy()
            ))
        })
        .collect();
    assert_eq!(aside.len(), 1, "the damaged history is kept for inspection");
    for a in aside {
        let _ = std::fs::remove_dir_all(dir.parent().unwrap().join(a));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_history_that_cannot_be_written_is_counted_and_the_feed_goes_on() {
    let dir = scratch_dir("history-unwritable");
    let hub = hub_on(&dir);
    let mut sim = simulator();
    let events = sim.advance_to(START_MS);
    // The first segment's name is taken by a folder: the file cannot be created.
    let first_t = hub
        .with_state(|s| s.latest_event_ms)
        .max(events[0].at_ms().unwrap());
    std::fs::create_dir_all(dir.join(format!("seg-{:020}-{first_t}.ndjson", 1))).unwrap();
    let published = hub.publish(events);
    assert!(published.accepted > 0, "the feed goes on");
    assert_eq!(hub.last_seq(), published.accepted as u64);
    let metrics = hub.render_metrics();
    assert!(
        !metrics.contains("datawall_history_write_errors 0"),
        "the failure is counted:\n{metrics}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(feature = "analytics")]
#[test]
fn an_exported_stretch_reads_back_in_pyarrow_with_every_event_and_its_types() {
    let dir = scratch_dir("history-export");
    let mut sim = simulator();
    let mut moments = Vec::new();
    {
        let hub = hub_on(&dir);
        hub.publish(sim.advance_to(START_MS));
        moments.push(record(&hub));
        run(&hub, &mut sim, START_MS + 70 * MIN, &mut moments);
        history::checkpoint_now(&hub, &dir, 7).unwrap();
        pin_note(&hub, "note-x", "第一支队伍到场");
        run(&hub, &mut sim, START_MS + 130 * MIN, &mut moments);
    }
    // From the moment after the first step to the one after the fifth: across the checkpoint.
    let (from, to) = (&moments[1], &moments[5]);
    let ndjson = dir.join("events.ndjson");
    for out in [dir.join("events.parquet"), ndjson.clone()] {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_datawall"))
            .args(["export", "--history-dir"])
            .arg(&dir)
            .args([
                "--from",
                &from.t_ms.to_string(),
                "--to",
                &to.t_ms.to_string(),
                "--out",
            ])
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "export to {}", out.display());
    }
    // Every event between the two moments, once, in order, applied to the first moment's
    // state, gives the second's.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&ndjson)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, to.seq - from.seq);
    let mut state = from.state.clone();
    for (k, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], from.seq + 1 + k as u64);
        state
            .apply(&serde_json::from_value(l.clone()).unwrap())
            .unwrap();
    }
    assert!(state.same_entities(&to.state));
    // Read back by pyarrow: the same rows, with their types.
    let script = r#"
import json, sys
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
print(json.dumps({
    "rows": t.num_rows,
    "types": {f.name: str(f.type) for f in t.schema},
    "first_seq": t.column("seq")[0].as_py(),
    "last_seq": t.column("seq")[t.num_rows - 1].as_py(),
    "kinds": sorted(set(t.column("type").to_pylist())),
    "fixes_with_position": sum(1 for k, lon in zip(t.column("type").to_pylist(), t.column("lon").to_pylist()) if k == "volunteer.fix.v1" and lon is not None),
    "fixes": t.column("type").to_pylist().count("volunteer.fix.v1"),
    "notes": [(n, m, x) for k, n, m, x in zip(t.column("type").to_pylist(), t.column("annotation_id").to_pylist(), t.column("moment_ms").to_pylist(), t.column("text").to_pylist()) if k == "annotation.added.v1"],
}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.join("events.parquet"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow (scripts/deps.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["rows"], lines.len());
    assert_eq!(r["first_seq"], from.seq + 1);
    assert_eq!(r["last_seq"], to.seq);
    let types = &r["types"];
    assert_eq!(types["seq"], "uint64");
    // (Arrow's string view, as polars writes it; pyarrow 16+ reads it.)
    for text in ["type", "category", "event"] {
        assert!(
            ["string", "large_string", "string_view"].contains(&types[text].as_str().unwrap()),
            "{text}: {}",
            types[text]
        );
    }
    assert_eq!(types["at_ms"], "int64");
    // A timestamp in UTC (polars without its time-zone feature writes it without the zone).
    assert!(
        types["at"].as_str().unwrap().starts_with("timestamp[ms"),
        "{}",
        types["at"]
    );
    assert_eq!(types["ticket_id"], "uint64");
    assert_eq!(types["lon"], "double");
    assert_eq!(types["satisfaction"], "uint64");
    let kinds: Vec<&str> = r["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    for k in ["ticket.opened.v1", "volunteer.fix.v1", "ticket.resolved.v1"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    assert_eq!(r["fixes_with_position"], r["fixes"]);
    // The operator's note, with its moment and text.
    assert_eq!(types["moment_ms"], "int64");
    let notes = r["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0][0], "note-x");
    assert_eq!(notes[0][2], "第一支队伍到场");
    assert!(notes[0][1].as_i64().unwrap() < to.t_ms);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(feature = "wall")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_rewinds_to_a_moment_while_the_live_feed_goes_on_and_returns_at_once() {
    use crate::common::pump_wall;
    use datawall::wall::feed::request_moment;
    use datawall::wall::ui::feed_view;
    let dir = scratch_dir("history-timeline");
    let mut sim = simulator();
    let hub = hub_on(&dir);
    hub.publish(sim.advance_to(START_MS));
    let mut moments = Vec::new();
    run(&hub, &mut sim, START_MS + 60 * MIN, &mut moments);
    let (mut ch, mut model, shutdown) =
        crate::common::live_wall_on_history(&hub, TOKEN, &dir).await;

    // Back to the moment after the first 20 minutes.
    let then = moments.remove(0);
    request_moment(&ch, &mut model, then.t_ms);
    pump_wall(&mut ch, &mut model, "the moment shown", |m| {
        m.replay.is_some()
    })
    .await;
    assert!(
        model.live().unwrap().same_entities(&then.state),
        "the wall shows the moment as it was"
    );
    assert_eq!(model.now_ms(), then.t_ms, "its clock reads the moment");
    assert!(feed_view(&model).indicator.contains("回放 REPLAY"));
    // The live feed goes on underneath.
    run(&hub, &mut sim, START_MS + 80 * MIN, &mut moments);
    let target = hub.last_seq();
    pump_wall(&mut ch, &mut model, "live events underneath", |m| {
        m.mirror.last_seq == target
    })
    .await;
    assert!(
        model.live().unwrap().same_entities(&then.state),
        "still the moment"
    );
    // Played on from there, stretch by stretch as the wall fetches them, it reaches the
    // next recorded moment exactly as it was.
    let next = &moments[0];
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while model.replay.as_ref().unwrap().at_ms < next.t_ms {
        assert!(std::time::Instant::now() < give_up, "playback stalled");
        let at = model.replay.as_ref().unwrap().at_ms;
        let at_end = model.advance_replay(next.t_ms - at);
        if at_end && model.replay.as_ref().unwrap().at_ms < next.t_ms {
            let at = model.replay.as_ref().unwrap().at_ms;
            request_moment(&ch, &mut model, at);
            pump_wall(&mut ch, &mut model, "the next stretch", |m| {
                m.replay_pending.is_none()
            })
            .await;
        }
    }
    assert!(
        model.live().unwrap().same_entities(&next.state),
        "played on to {}, the wall shows what was recorded then",
        next.t_ms
    );
    // Back to live at once: the state is the gateway's, nothing was missed.
    model.leave_replay();
    assert!(model.live().unwrap().same_entities(&hub.state()));
    assert!(feed_view(&model).indicator.contains("实时 live"));
    shutdown.trigger();
    let _ = std::fs::remove_dir_all(dir);
}
