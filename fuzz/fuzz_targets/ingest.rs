//! What producers and operators send, checked as the gateway checks it, against a model built
//! from the same input. Each NDJSON line is either an event — screened by the producers' rules
//! as HTTP ingest screens it, then judged on the copy of the state the backbone path uses
//! (`LiveState::subset`, only the tickets it names), which must give the whole state's verdict
//! — or an operator's command, validated against the model; an acknowledgement the gateway
//! writes for a valid `alert.ack.v1` must be accepted by the model. Alerts (which producers may
//! not send) are applied as the gateway's own engine would, so commands meet every alert state.
#![no_main]

use datawall::model::LiveState;
use datawall::net::gateway::commands::{ack_event, validate};
use datawall::net::gateway::ingest::producer_may_send;
use datawall::protocol::command::Command;
use datawall::protocol::session::ClientMsg;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::county;

fuzz_target!(|data: &[u8]| {
    let mut state = LiveState::new(county());
    for line in data.split(|b| *b == b'\n') {
        if let Ok(ClientMsg::Command { command, .. }) = serde_json::from_slice::<ClientMsg>(line) {
            let verdict = validate(&state, &command);
            if let (Ok(()), Command::AlertAck { alert_id, note }) = (&verdict, &command) {
                let now = state.latest_event_ms;
                // The gateway names the command with its own id and the operator's name.
                let ack = ack_event(&state, alert_id, note, "值班员", "gw-1", now)
                    .expect("a valid acknowledgement names a known alert");
                if let Err(e) = state.apply(&ack) {
                    panic!("the model refused the acknowledgement of a valid command: {e}");
                }
            }
            continue;
        }
        for (_, parsed) in datawall::net::backbone::parse_events(line) {
            let Ok(event) = parsed else { continue };
            let from_producer = producer_may_send(&event, state.latest_event_ms).is_ok();
            if from_producer {
                let mut scratch = state.subset(event.ticket_id());
                let on_copy = scratch.apply(&event).map(|_| ());
                let on_whole = state.apply(&event).map(|_| ());
                assert_eq!(
                    on_copy, on_whole,
                    "the backbone's copy and the whole state disagree on {event:?}"
                );
            } else {
                let _ = state.apply(&event);
            }
        }
    }
});
