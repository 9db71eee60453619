//! `datawall bench` smoke test: at tiny sizes it produces every figure, each within a range a
//! working measurement lands in on any machine (tests assert behaviour, benchmarks measure:
//! the ranges are wide, they catch a broken figure, not a slow one).

use datawall::bench::{Sizes, run_with};

use crate::common::{county, scratch_dir};

#[test]
fn bench_produces_every_figure() {
    datawall::net::metrics::CountingAlloc::installed();
    let dir = scratch_dir("bench");
    let json = dir.join("bench.json");
    let report = run_with(
        &county().pack,
        Sizes {
            #[cfg(feature = "wall")]
            wall_exe: Some(env!("CARGO_BIN_EXE_datawall").into()),
            ..Sizes::tiny()
        },
        true,
        Some(&json),
    )
    .unwrap();
    let names: Vec<String> = report
        .figures
        .iter()
        .map(|f| format!("{} {}", f.group, f.name))
        .collect();
    for expected in [
        "model apply volunteer fixes (1 core)",
        "codec JSON decode volunteer fix",
        "ingest loopback JSON decode+apply, 1k volunteers",
        "ingest loopback JSON decode+apply, 50k volunteers",
        "ingest loopback binary decode+apply, 1k volunteers",
        "ingest loopback binary decode+apply, 50k volunteers",
        "gateway fan-out to 1 client(s), per client",
        "gateway fan-out to 10 client(s), per client",
        "gateway fan-out to 100 client(s), per client",
        "latency publish→client p50, 1 client(s) at 1000/s",
        "latency publish→client p99, 10 client(s) at 10000/s",
        "backbone producer → JetStream (acked batches of 1000)",
        "backbone producer → JetStream → gateway → 10 walls",
        "backbone publish→wall p99, 10 walls at 1000/s",
        "backbone checkpoint write, 2000 tickets",
        "backbone checkpoint encode (gzip JSON), 2000 tickets",
        "backbone checkpoint load (fetch + decode), 2000 tickets",
        "backbone publish→ack p99, 100 batches/s",
        "backbone fresh gateway serves 2000 tickets (10000 events) from the checkpoint",
        "backbone fresh gateway serves 2000 tickets (10000 events) from the whole stream",
        "snapshot encode (json)",
        "snapshot size (json)",
        "snapshot decode + apply (json)",
        "snapshot encode (binary)",
        "snapshot size (binary)",
        "snapshot decode + apply (binary)",
        "snapshot longest publish wait during an encode",
        "memory peak RSS",
        "memory model: tickets",
        "memory model: per ticket",
        "memory gateway: hub (model + ring)",
        "memory gateway: JSON snapshot held while sent",
        "memory gateway: binary snapshot held while sent",
        "memory gateway: snapshot after it is sent",
        "memory wall: model (mirror)",
        "memory wall: model (mirror) beside an embedded gateway",
        "memory wall: model (mirror) beside an embedded gateway, after events",
        #[cfg(feature = "analytics")]
        "memory wall: analytics ticket store",
        #[cfg(feature = "wall")]
        "memory gateway alone: resident, backlog in",
        #[cfg(feature = "wall")]
        "memory gateway alone: resident after a binary snapshot",
        #[cfg(feature = "wall")]
        "memory gateway alone: peak RSS",
        "history disk per simulated day, county, fixes every 30 s",
        "history show any moment of 1 h, county, p50",
        "history show any moment of 1 h, county, max",
        "history disk per simulated day, county, fixes every 1 s",
        #[cfg(feature = "wall")]
        "frame frame p50, 640x360, 282 grids, 1000 tickets, 1160 volunteers, panels open, fixes 1000/s",
        #[cfg(feature = "wall")]
        "frame ECS p95, 640x360, 282 grids, 1000 tickets, 1160 volunteers, panels open, fixes 1000/s",
        #[cfg(feature = "wall")]
        "latency event→pixel p99, 640x360, 282 grids, 1000 tickets, 1160 volunteers, panels open, fixes 1000/s",
        #[cfg(feature = "wall")]
        "coldstart connect → first live frame, 640x360, 282 grids, 1000 tickets, 1160 volunteers, panels open, fixes 1000/s",
        #[cfg(feature = "wall")]
        "memory wall peak RSS, 640x360, 282 grids, 1000 tickets, 1160 volunteers, panels open, fixes 1000/s",
        // (wgpu's allocator report: Vulkan, lavapipe here)
        #[cfg(feature = "wall")]
        "memory wall GPU memory, 640x360, 282 grids, 1000 tickets, 1160 volunteers, panels open, fixes 1000/s",
        #[cfg(feature = "wall")]
        "latency event→pixel p50, 640x360, 282 grids, 1000 tickets, 1160 volunteers, fixes 1000/s, low latency",
        #[cfg(feature = "wall")]
        "frame frame p50, 640x360, 282 grids, 1000 tickets, 1160 volunteers, volunteers moving, map cache off",
        #[cfg(feature = "wall")]
        "frame map drawn into its cache, 640x360, 282 grids, 1000 tickets, 1160 volunteers, panels open, fixes 1000/s",
        #[cfg(feature = "analytics")]
        "analytics refresh, 2000 tickets",
        #[cfg(feature = "analytics")]
        "analytics roll-ups read + store snapshot, 2000 tickets",
        #[cfg(feature = "analytics")]
        "analytics gather recent rows, 2000 tickets",
        #[cfg(feature = "analytics")]
        "analytics queries (polars), 2000 tickets",
        #[cfg(feature = "analytics")]
        "analytics store + roll-ups built, 2000 tickets",
        #[cfg(feature = "analytics")]
        "analytics of which the roll-ups, 2000 tickets",
        #[cfg(feature = "analytics")]
        "analytics plain-Rust reference, 2000 tickets",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:#?}"
        );
    }
    // Plausible at these sizes on any machine that runs the suite (a debug build beside a
    // compiler included): a figure outside its range is a broken measurement, not a slow one.
    for f in &report.figures {
        let range = match (f.unit.as_str(), f.name.as_str()) {
            ("MB", n) if n.starts_with("size") => 0.05..50.0, // 2 000 tickets, 1 160 volunteers
            // Heap a structure holds (2 000 tickets): fixes update the model in place.
            ("MB", "model: volunteers' fixes") => 0.0..1.0,
            // Sent, the encoded snapshot is freed: the hub holds a weak reference only.
            ("MB", "gateway: snapshot after it is sent") => -1.0..0.5,
            // Every ticket of the memory load is open and untouched: the counts are rolled up,
            // so a refresh gathers none of them.
            ("MB", "wall: rows of one refresh") => -1.0..0.5,
            // A process of its own (`serve`), resident.
            ("MB", n) if n.starts_with("gateway alone") => 5.0..16_000.0,
            // The renderer's textures and buffers at 640x360: its targets alone take 1 MB each.
            ("MB", n) if n.starts_with("wall GPU memory") => 1.0..4_000.0,
            ("MB", n) if n.contains(": ") => 0.01..500.0,
            ("B", _) => 50.0..5_000.0, // bytes a ticket takes in the model
            ("%", n) if n.starts_with("map drawn into its cache") => 0.0..100.001,
            ("MB", _) => 5.0..16_000.0, // a process's resident memory
            ("ms", _) => 1e-6..120_000.0,
            ("events/s" | "lookups/s", _) => 1e3..1e10,
            (unit, _) => panic!(
                "{} {}: unit {unit:?} has no plausible range here",
                f.group, f.name
            ),
        };
        assert!(
            range.contains(&f.value),
            "{} {} = {} {} is outside {range:?}",
            f.group,
            f.name,
            f.value,
            f.unit
        );
    }
    let value = |name: &str| {
        report
            .figures
            .iter()
            .find(|f| format!("{} {}", f.group, f.name) == name)
            .map(|f| f.value)
            .unwrap()
    };
    // Orders that hold whatever the machine: a p99 is not below its p50; the backbone path
    // (producer → JetStream → gateway) is not faster than the gateway's own ingest.
    assert!(
        value("latency publish→client p99, 1 client(s) at 1000/s")
            >= value("latency publish→client p50, 1 client(s) at 1000/s")
    );
    assert!(
        value("backbone producer → JetStream → gateway → 10 walls")
            <= value("ingest loopback JSON decode+apply, 1k volunteers") * 1.5
    );
    // Beside an embedded gateway the wall's model shares every ticket record with it.
    assert!(
        value("memory wall: model (mirror) beside an embedded gateway")
            < value("memory wall: model (mirror)")
    );
    let note = |name: &str| {
        let f = report.figures.iter().find(|f| f.name == name).unwrap();
        f.note.clone()
    };
    let beside = note("wall: model (mirror) beside an embedded gateway");
    assert!(
        beside.contains("; 2000 ticket records shared with the gateway"),
        "{beside}"
    );
    // After events it holds no second copy of the tickets they changed: it took the gateway's.
    assert!(
        value("memory wall: model (mirror) beside an embedded gateway, after events")
            < value("memory wall: model (mirror)")
    );
    let after = note("wall: model (mirror) beside an embedded gateway, after events");
    assert!(
        after.contains("it took 200 records of them from the gateway"),
        "{after}"
    );
    // The binary snapshot is a fraction of the JSON one.
    assert!(value("snapshot size (binary)") * 3.0 < value("snapshot size (json)"));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        doc["figures"].as_array().unwrap().len(),
        report.figures.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}
