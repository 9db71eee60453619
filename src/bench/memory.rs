//! Where the bytes go at city scale: the heap each structure of a gateway and a wall adds, as
//! the binary's counting allocator sees it (resident memory when the allocator is not the
//! counting one, e.g. under `cargo test`).

use std::sync::Arc;

use anyhow::{Context, Result};

use super::{Report, T0, fixes, tickets};
use crate::model::{CountyPack, LiveState};
use crate::net::client::{Mirror, decode_message};
use crate::net::hub::{Hub, HubConfig};
use crate::net::metrics::{count_heap, heap_bytes, rss_bytes};
use crate::protocol::session::{Delta, ServerMsg, SnapshotFormat};
use crate::protocol::{Event, TicketDispatched};

/// A reading of what is held: counted heap bytes, or resident bytes.
struct Meter {
    counted: bool,
}

impl Meter {
    fn read(&self) -> i64 {
        if self.counted {
            heap_bytes() as i64
        } else {
            rss_bytes() as i64
        }
    }
}

/// `n_tickets` open tickets on a county with its roster `roster`× and its grids split
/// `split` ways: the gateway's model and ring, an encoded snapshot while it is held, the
/// wall's mirror of the state, the analytics' ticket store and the rows of one refresh.
pub fn memory(
    report: &mut Report,
    pack: &CountyPack,
    n_tickets: usize,
    roster: u32,
    split: u32,
) -> Result<()> {
    let county = Arc::new(crate::model::scale::scaled_county(
        pack.clone(),
        roster,
        split,
    ));
    let label = format!(
        "{n_tickets} tickets, {} grids, {} volunteers",
        county.pack.grids.len(),
        county.pack.volunteers.len()
    );
    let opened = tickets(&county, n_tickets);
    let fixed = fixes(&county, T0, county.pack.volunteers.len());
    let meter = Meter {
        counted: count_heap(true),
    };
    let how = if meter.counted {
        "heap held (counted)"
    } else {
        "resident growth (no counting allocator)"
    };
    let add = |report: &mut Report, name: &str, bytes: i64, note: String| {
        report.add(
            "memory",
            name,
            bytes as f64 / 1e6,
            "MB",
            format!("{note}; {how}"),
        );
    };

    // The model alone: empty (the roster's volunteers, indexes), then tickets, then the
    // volunteers' positions (updated in place).
    let before = meter.read();
    let mut live = LiveState::new(Arc::clone(&county));
    let t0 = meter.read();
    add(
        report,
        "model: empty (roster, indexes)",
        t0 - before,
        label.clone(),
    );
    for e in &opened {
        live.apply(e)?;
    }
    let t1 = meter.read();
    for e in &fixed {
        live.apply(e)?;
    }
    let t2 = meter.read();
    add(report, "model: tickets", t1 - t0, label.clone());
    report.add(
        "memory",
        "model: per ticket",
        (t1 - t0) as f64 / n_tickets.max(1) as f64,
        "B",
        format!("with its step trace, strings and indexes; {how}"),
    );
    add(
        report,
        "model: volunteers' fixes",
        t2 - t1,
        format!("{} fixes, updated in place", fixed.len()),
    );
    drop(live);

    // The gateway: its model and the ring of recent events.
    let t3 = meter.read();
    let hub = Arc::new(Hub::new(Arc::clone(&county), HubConfig::default()));
    for chunk in opened.chunks(50_000) {
        hub.publish(chunk.iter().cloned());
    }
    hub.publish(fixed.iter().cloned());
    let t4 = meter.read();
    add(
        report,
        "gateway: hub (model + ring)",
        t4 - t3,
        format!(
            "{label}, ring of at most {} events or {} MB",
            HubConfig::default().ring_capacity,
            HubConfig::default().ring_max_bytes >> 20
        ),
    );
    // An encoded snapshot, while a client is sent it: JSON (third-party clients), then binary
    // (the wall's).
    let json = hub.snapshot_as(SnapshotFormat::Json);
    let json_bytes = json.bytes(); // every chunk encoded, as a client is sent it
    let t5 = meter.read();
    add(
        report,
        "gateway: JSON snapshot held while sent",
        t5 - t4,
        format!(
            "{:.0} MB in {} messages",
            json_bytes as f64 / 1e6,
            json.len()
        ),
    );
    drop(json);
    let t5 = meter.read();
    let snap = hub.snapshot_as(SnapshotFormat::Binary);
    let bytes = snap.bytes();
    let t6 = meter.read();
    add(
        report,
        "gateway: binary snapshot held while sent",
        t6 - t5,
        format!("{:.0} MB in {} messages", bytes as f64 / 1e6, snap.len()),
    );

    // The wall: its mirror of the state, decoded from the binary snapshot.
    let mut mirror = Mirror::new(Arc::clone(&county));
    mirror.epoch = Some(hub.epoch);
    for m in snap.messages() {
        if let Some(msg) = decode_message(&m).context("decoding the snapshot")? {
            mirror.handle(msg)?;
        }
    }
    let t7 = meter.read();
    add(report, "wall: model (mirror)", t7 - t6, label.clone());
    // The same beside an embedded gateway in this process: the mirror takes the gateway's
    // ticket records where they are equal.
    crate::net::hub::register_local(&hub);
    let mut beside = Mirror::new(Arc::clone(&county));
    beside.epoch = Some(hub.epoch);
    for m in snap.messages() {
        if let Some(msg) = decode_message(&m).context("decoding the snapshot")? {
            beside.handle(msg)?;
        }
    }
    let shared = beside.state.as_ref().map_or(0, |s| {
        s.tickets
            .values()
            .filter(|t| std::sync::Arc::strong_count(t) > 1)
            .count()
    });
    let t_beside = meter.read();
    add(
        report,
        "wall: model (mirror) beside an embedded gateway",
        t_beside - t7,
        format!("{label}; {shared} ticket records shared with the gateway"),
    );
    drop(snap);
    // Sent to every client that asked: the hub keeps no encoded snapshot.
    add(
        report,
        "gateway: snapshot after it is sent",
        meter.read() - t_beside + (t6 - t5),
        "the hub keeps a weak reference only".into(),
    );
    // Events after the snapshot: a tenth of the tickets dispatched, applied by the gateway
    // and then by the mirror beside it, which takes the gateway's records of what it changed.
    let changed: Vec<Event> = (0..n_tickets.div_ceil(10))
        .map(|i| {
            Event::TicketDispatched(TicketDispatched {
                ticket_id: (i * 10) as u64 + 1,
                at_ms: T0 + 1_000,
                assignee: "网格员 grid worker".into(),
                volunteer_id: None,
                command_id: None,
            })
        })
        .collect();
    let n_changed = changed.len();
    let first = hub.last_seq();
    let t_publish = meter.read();
    hub.publish(changed.iter().cloned());
    let t8 = meter.read();
    let before_shared = beside.shared;
    let handled = beside.handle(ServerMsg::Delta(Delta {
        epoch: hub.epoch,
        prev_seq: Some(first),
        first_seq: first + 1,
        last_seq: first + n_changed as u64,
        conflated: 0,
        events: (first + 1..).zip(changed).collect(),
    }))?;
    drop(handled);
    beside.share_changed_now();
    let beside_shared = beside.shared;
    // What the mirror holds of its own is what letting it go frees.
    let t9 = meter.read();
    drop(beside);
    add(
        report,
        "wall: model (mirror) beside an embedded gateway, after events",
        t9 - meter.read(),
        format!(
            "its own, after {n_changed} tickets were dispatched (the gateway took {:.1} MB for \
             them with its ring); it took {} records of them from the gateway",
            (t8 - t_publish) as f64 / 1e6,
            beside_shared - before_shared
        ),
    );
    let state = mirror.state.as_ref().context("the mirror holds no state")?;
    #[cfg(feature = "analytics")]
    {
        use crate::analytics::store::{TicketStore, gather_recent};
        let t7 = meter.read();
        let store = TicketStore::from_live(state);
        let t8 = meter.read();
        add(
            report,
            "wall: analytics ticket store",
            t8 - t7,
            label.clone(),
        );
        let rows = gather_recent(&store.snapshot(), T0);
        let t9 = meter.read();
        add(
            report,
            "wall: rows of one refresh",
            t9 - t8,
            format!(
                "{} rows with a dispatch, arrival or resolution within the window (the counts are \
                 rolled up), freed after the refresh",
                rows.len()
            ),
        );
    }
    report.add(
        "memory",
        "resident now",
        rss_bytes() as f64 / 1e6,
        "MB",
        "gateway hub + wall mirror + analytics store in one process",
    );
    count_heap(false);
    drop(hub);
    anyhow::ensure!(state.tickets.len() == n_tickets, "the mirror lost tickets");
    Ok(())
}

/// `VmRSS` and `VmHWM` of process `pid`, MB.
fn rss_and_peak_mb(pid: u32) -> Result<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading the memory of process {pid}"))?;
    let kb = |field: &str| {
        s.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    Ok((kb("VmRSS:"), kb("VmHWM:")))
}

/// The gateway alone, as a county runs it for many walls: `exe serve` with a standing backlog
/// of `backlog` open tickets on the county's grids split `split` ways, the simulator live and
/// the history kept. Its resident memory once the backlog is in (read when it logs the heap
/// handed back after the backlog), then after a wall has taken a binary snapshot (when it logs
/// the heap handed back after the send), and its peak.
pub fn gateway_alone(
    report: &mut Report,
    rt: &tokio::runtime::Runtime,
    exe: &std::path::Path,
    backlog: usize,
    split: u32,
) -> Result<()> {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("datawall-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut child = std::process::Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--token", super::TOKEN])
        .args(["--scale", &split.to_string()])
        .args(["--backlog", &backlog.to_string()])
        .arg("--history-dir")
        .arg(dir.join("history"))
        .arg("--audit-log")
        .arg(dir.join("audit.ndjson"))
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} serve", exe.display()))?;
    let pid = child.id();
    let stderr = child.stderr.take().context("the gateway's log")?;
    // Its log lines, read on a thread of their own until it ends (so it never blocks on a
    // full pipe).
    let (tx, lines) = std::sync::mpsc::sync_channel::<String>(1024);
    std::thread::Builder::new()
        .name("datawall-bench-serve-log".into())
        .spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                // Only the lines waited for are kept.
                if (line.contains("feed at ") || line.contains("datawall::memory"))
                    && tx.send(line).is_err()
                {
                    return;
                }
            }
        })?;
    let wait_for = |what: &str| -> Result<String> {
        loop {
            let line = lines
                .recv_timeout(std::time::Duration::from_secs(600))
                .with_context(|| format!("the gateway never logged {what:?}"))?;
            if line.contains(what) {
                return Ok(line);
            }
        }
    };
    let measured = (|| -> Result<()> {
        let feed = wait_for("feed at ")?;
        let url = feed
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .context("no ws:// address in the gateway's log")?
            .to_owned();
        wait_for("after the simulator's history")?;
        let (rss_in, _) = rss_and_peak_mb(pid)?;
        rt.block_on(async {
            let conn = super::connect_synced(&format!("{url}?format=binary")).await?;
            conn.close().await;
            anyhow::Ok(())
        })?;
        wait_for("after sending a snapshot")?;
        let (rss_sent, peak) = rss_and_peak_mb(pid)?;
        let label = format!("{backlog} open tickets, grids split {split} ways, history kept");
        for (name, value) in [
            ("gateway alone: resident, backlog in", rss_in),
            ("gateway alone: resident after a binary snapshot", rss_sent),
            ("gateway alone: peak RSS", peak),
        ] {
            report.add("memory", name, value, "MB", label.clone());
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    measured
}
