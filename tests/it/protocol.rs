//! Every wire event round-trips through JSON, and the golden file documents the format.

use datawall::protocol::Event;
use serde_json::Value;

const GOLDEN: &str = include_str!("../data/events_v1.ndjson");

#[test]
fn golden_file_has_every_event_type_and_round_trips() {
    let mut seen = std::collections::BTreeSet::new();
    for line in GOLDEN.lines() {
        let event: Event = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_ne!(event, Event::Unknown, "{line}");
        seen.insert(event.type_name());
        // Encoding gives back the same JSON object (field order aside).
        let again: Value = serde_json::to_value(&event).unwrap();
        let original: Value = serde_json::from_str(line).unwrap();
        assert_eq!(again, original, "round trip of {line}");
        // And decoding the encoding gives the same event.
        let back: Event = serde_json::from_value(again).unwrap();
        assert_eq!(back, event);
        assert_eq!(original["type"], event.type_name());
    }
    assert_eq!(seen.len(), 13, "one line per event type: {seen:?}");
}

#[test]
fn malformed_events_are_errors_not_panics() {
    for bad in [
        r#"{"type":"ticket.opened.v1"}"#,
        r#"{"type":"volunteer.fix.v1","volunteer_id":1,"at_ms":5,"pos":[1]}"#,
        r#"{"type":"volunteer.fix.v1","volunteer_id":-1,"at_ms":5,"pos":[1,2]}"#,
        r#"{"type":"ticket.opened.v1","ticket_id":1,"at_ms":1,"category":"teleport","source":"hotline","priority":"low","pos":[1,2],"sla_deadline_ms":2}"#,
        r#"{"ticket_id":1}"#,
        r#"[1,2,3]"#,
        "not json",
    ] {
        assert!(
            serde_json::from_str::<Event>(bad).is_err(),
            "{bad} should not decode"
        );
    }
}

#[test]
fn optional_fields_may_be_absent() {
    let e: Event = serde_json::from_str(
        r#"{"type":"ticket.opened.v1","ticket_id":1,"at_ms":1,"category":"help","source":"hotline","priority":"low","pos":[106.5,38.9],"sla_deadline_ms":2}"#,
    )
    .unwrap();
    let Event::TicketOpened(t) = e else {
        panic!("wrong variant")
    };
    assert_eq!(t.grid_id, None);
    assert!(t.summary.is_empty());
}
