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

/// The same object with its `type` key moved from first to last.
fn type_last(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    let obj = v.as_object().unwrap();
    let mut parts: Vec<String> = obj
        .iter()
        .filter(|(k, _)| *k != "type")
        .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v))
        .collect();
    parts.push(format!("\"type\":{}", obj["type"]));
    format!("{{{}}}", parts.join(","))
}

#[test]
fn events_decode_the_same_whatever_the_key_order_or_reader() {
    for line in GOLDEN.lines() {
        assert!(
            line.starts_with(r#"{"type":"#),
            "golden lines lead with type: {line}"
        );
        let first: Event = serde_json::from_str(line).unwrap();
        let last: Event = serde_json::from_str(&type_last(line))
            .unwrap_or_else(|e| panic!("{}: {e}", type_last(line)));
        assert_eq!(first, last, "{line}");
        // A reader gives owned strings rather than borrowed ones.
        let read: Event = serde_json::from_reader(line.as_bytes()).unwrap();
        assert_eq!(first, read);
    }
    // Unknown types become Unknown in either order, the rest of the object skipped.
    for unknown in [
        r#"{"type":"ticket.teleported.v9","ticket_id":1,"nested":{"a":[1,2]}}"#,
        r#"{"ticket_id":1,"nested":{"a":[1,2]},"type":"ticket.teleported.v9"}"#,
    ] {
        let batch = format!("[{unknown},{}]", GOLDEN.lines().next().unwrap());
        let events: Vec<Event> = serde_json::from_str(&batch).unwrap();
        assert_eq!(events[0], Event::Unknown);
        assert_ne!(events[1], Event::Unknown, "the next event still decodes");
    }
    // A missing or non-string type is an error in either position.
    for bad in [
        r#"{"type":7,"ticket_id":1}"#,
        r#"{"ticket_id":1,"type":7}"#,
        r#"{}"#,
    ] {
        assert!(serde_json::from_str::<Event>(bad).is_err(), "{bad}");
    }
}

#[test]
fn server_messages_decode_the_same_whatever_the_key_order() {
    use datawall::protocol::session::ServerMsg;
    let events: Vec<&str> = GOLDEN.lines().collect();
    let delta = format!(
        r#"{{"type":"delta","epoch":7,"first_seq":1,"last_seq":{},"conflated":0,"events":[{}]}}"#,
        events.len(),
        events
            .iter()
            .enumerate()
            .map(|(i, e)| format!("[{},{e}]", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    );
    let fast: ServerMsg = serde_json::from_str(&delta).unwrap_or_else(|e| panic!("{delta}: {e}"));
    let ServerMsg::Delta(d) = &fast else {
        panic!("not a delta: {fast:?}")
    };
    assert_eq!(d.events.len(), 13);
    let reordered = type_last(&delta);
    let slow: ServerMsg = serde_json::from_str(&reordered).unwrap();
    assert_eq!(fast, slow);
    // What the server encodes decodes back to itself.
    let again: ServerMsg = serde_json::from_str(&serde_json::to_string(&fast).unwrap()).unwrap();
    assert_eq!(again, fast);
    // An unknown server message type is an error that names it (clients report and reconnect).
    let err = serde_json::from_str::<ServerMsg>(r#"{"type":"teleport","x":1}"#).unwrap_err();
    assert!(err.to_string().contains("teleport"), "{err}");
}
