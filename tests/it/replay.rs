//! Record and replay: what the hub publishes is written to a file, and serving that file
//! rebuilds the same state.

use std::sync::Arc;

use datawall::net::gateway::Shutdown;
use datawall::net::hub::{Hub, HubConfig};
use datawall::net::source::{RecordingHeader, create_recording, read_recording, run_replay};
use datawall::protocol::Event;

use crate::common::{county, scratch_dir};

const START_MS: i64 = 1_764_140_400_000;

#[tokio::test]
async fn a_recording_replays_to_the_same_state() {
    let dir = scratch_dir("replay");
    let path = dir.join("feed.ndjson.gz");
    let hub = Hub::new(county(), HubConfig::default());
    let header = RecordingHeader {
        kind: "recording".into(),
        protocol: 1,
        county_code: 640_221,
        live_from_ms: START_MS,
    };
    hub.set_recorder(create_recording(&path, &header).unwrap());
    let mut sim = crate::common::simulator(county(), 4, START_MS, 4);
    hub.publish(sim.advance_to(START_MS));
    hub.publish(sim.advance_to(START_MS + 20_000));
    // A bad event from the source is dropped, not recorded.
    let bogus: Event =
        serde_json::from_str(r#"{"type":"ticket.on_site.v1","ticket_id":999999999,"at_ms":1}"#)
            .unwrap();
    assert_eq!(hub.publish([bogus]).rejected, 1);
    hub.finish_recorder().unwrap();

    let recording = read_recording(&path).unwrap();
    assert_eq!(recording.header, header);
    assert_eq!(recording.events.len() as u64, hub.last_seq());

    let replayed = Arc::new(Hub::new(county(), HubConfig::default()));
    let (_shutdown, rx) = Shutdown::new();
    run_replay(Arc::clone(&replayed), recording, 1_000.0, rx).await;
    assert_eq!(replayed.last_seq(), hub.last_seq());
    assert!(replayed.state().same_entities(&hub.state()));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_bundled_hour_loads_and_is_valid() {
    let path =
        datawall::model::county::default_pack_dir().join("../recordings/pingluo-1h.ndjson.gz");
    let recording = read_recording(&path).unwrap();
    assert_eq!(recording.header.county_code, 640_221);
    let mut state = datawall::model::LiveState::new(county());
    for e in &recording.events {
        state.apply(e).unwrap_or_else(|err| panic!("{e:?}: {err}"));
    }
    let live = recording
        .events
        .iter()
        .filter(|e| e.at_ms().unwrap() > recording.header.live_from_ms)
        .count();
    assert!(live > 10_000, "{live} events in the live hour");
    assert!(
        state.incidents.values().any(|i| i.drill),
        "the hour includes the fire drill"
    );
}

#[test]
fn a_broken_recording_names_the_line() {
    let dir = scratch_dir("broken-recording");
    let path = dir.join("bad.ndjson");
    std::fs::write(&path, "{\"type\":\"recording\",\"protocol\":1,\"county_code\":640221,\"live_from_ms\":0}\n{\"type\":\"ticket.opened.v1\"}\n").unwrap();
    let err = read_recording(&path).err().unwrap().to_string();
    assert!(err.contains("line 2"), "{err}");
    assert!(
        read_recording(&dir.join("missing.ndjson"))
            .err()
            .unwrap()
            .to_string()
            .contains("cannot open")
    );
    let _ = std::fs::remove_dir_all(dir);
}
