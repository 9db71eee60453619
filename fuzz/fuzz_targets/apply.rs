//! Decode + apply: any NDJSON body, applied event by event to the bundled county's model,
//! with the alert engine's look at the clock in between. Nothing panics, and an event the
//! model refuses leaves it unchanged.
#![no_main]

use datawall::model::LiveState;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::county;

fuzz_target!(|data: &[u8]| {
    let mut state = LiveState::new(county());
    for (_, parsed) in datawall::net::backbone::parse_events(data) {
        let Ok(event) = parsed else { continue };
        let before = (
            state.tickets.len(),
            state.incidents.len(),
            state.alerts.len(),
            state.applied,
        );
        if state.apply(&event).is_err() {
            let after = (
                state.tickets.len(),
                state.incidents.len(),
                state.alerts.len(),
                state.applied,
            );
            assert_eq!(
                before, after,
                "a refused event changed the model: {event:?}"
            );
        }
        if let Some(at) = event.at_ms() {
            for due in state.alerts_due(at.saturating_add(3_600_000), 3_600_000) {
                let _ = state.apply(&due);
            }
        }
    }
});
