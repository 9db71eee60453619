//! Gateway counters and gauges, rendered in Prometheus text format on `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Per-connection figures the handler updates and `/metrics` reads.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Last sequence number sent to this client (its cursor in the hub).
    pub cursor: AtomicU64,
    pub events_sent: AtomicU64,
}

/// Everything the gateway counts. Counters only go up.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_total: AtomicU64,
    pub connections_rejected_limit: AtomicU64,
    pub auth_failures: AtomicU64,
    pub tls_failures: AtomicU64,
    pub origin_rejections: AtomicU64,
    pub events_in: AtomicU64,
    pub events_rejected: AtomicU64,
    pub events_out: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub conflated: AtomicU64,
    pub snapshots_sent: AtomicU64,
    pub resyncs: AtomicU64,
    pub resumes_replayed: AtomicU64,
    pub slow_disconnects: AtomicU64,
    pub heartbeat_timeouts: AtomicU64,
    pub oversized_messages: AtomicU64,
    pub bad_client_messages: AtomicU64,
    pub flood_disconnects: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub commands_received: AtomicU64,
    pub commands_accepted: AtomicU64,
    pub commands_rejected: AtomicU64,
    pub commands_confirmed: AtomicU64,
    pub commands_timed_out: AtomicU64,
    pub pruned: AtomicU64,
    pub history_errors: AtomicU64,
    clients: Mutex<Vec<Weak<ClientStats>>>,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Register a connection; it disappears from the gauges when the `Arc` is dropped.
    pub fn register_client(&self) -> Arc<ClientStats> {
        let stats = Arc::new(ClientStats::default());
        if let Ok(mut clients) = self.clients.lock() {
            clients.retain(|w| w.strong_count() > 0);
            clients.push(Arc::downgrade(&stats));
        }
        stats
    }

    /// How many events each live connection is behind `latest`.
    pub fn client_lags(&self, latest: u64) -> Vec<u64> {
        self.client_cursors()
            .into_iter()
            .map(|c| latest.saturating_sub(c))
            .collect()
    }

    /// Every connected client's position (the last sequence number it was sent).
    pub fn client_cursors(&self) -> Vec<u64> {
        self.clients
            .lock()
            .map(|c| {
                c.iter()
                    .filter_map(Weak::upgrade)
                    .map(|s| s.cursor.load(Ordering::Relaxed))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Prometheus exposition text; `lags` are the clients' backlogs in events, `extra` adds
    /// gauges owned by others (hub ring, seq).
    pub fn render(&self, lags: &[u64], extra: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 27] = [
            (
                "datawall_connections_total",
                "Websocket sessions accepted",
                &self.connections_total,
            ),
            (
                "datawall_connections_rejected_limit_total",
                "Connections refused at the connection limit",
                &self.connections_rejected_limit,
            ),
            (
                "datawall_auth_failures_total",
                "Requests without a valid token",
                &self.auth_failures,
            ),
            (
                "datawall_tls_failures_total",
                "TLS handshakes that failed or timed out",
                &self.tls_failures,
            ),
            (
                "datawall_origin_rejections_total",
                "Requests from an Origin not allowed",
                &self.origin_rejections,
            ),
            (
                "datawall_events_in_total",
                "Events accepted from the source",
                &self.events_in,
            ),
            (
                "datawall_events_rejected_total",
                "Events from the source the model rejected",
                &self.events_rejected,
            ),
            (
                "datawall_events_out_total",
                "Events sent to clients (sum over clients)",
                &self.events_out,
            ),
            (
                "datawall_messages_out_total",
                "Websocket messages sent",
                &self.messages_out,
            ),
            (
                "datawall_bytes_out_total",
                "Payload bytes sent",
                &self.bytes_out,
            ),
            (
                "datawall_conflated_total",
                "Superseded volunteer fixes left out for lagging clients",
                &self.conflated,
            ),
            (
                "datawall_snapshots_sent_total",
                "Snapshots sent",
                &self.snapshots_sent,
            ),
            (
                "datawall_resyncs_total",
                "Clients that fell behind the replay buffer and got a fresh snapshot",
                &self.resyncs,
            ),
            (
                "datawall_resumes_replayed_total",
                "Resumes served from the replay buffer",
                &self.resumes_replayed,
            ),
            (
                "datawall_slow_disconnects_total",
                "Clients disconnected for not reading",
                &self.slow_disconnects,
            ),
            (
                "datawall_heartbeat_timeouts_total",
                "Clients dropped after going silent",
                &self.heartbeat_timeouts,
            ),
            (
                "datawall_oversized_messages_total",
                "Client messages over the size limit",
                &self.oversized_messages,
            ),
            (
                "datawall_bad_client_messages_total",
                "Client messages that did not parse",
                &self.bad_client_messages,
            ),
            (
                "datawall_protocol_errors_total",
                "Connections ended by frames that break the websocket protocol or UTF-8",
                &self.protocol_errors,
            ),
            (
                "datawall_flood_disconnects_total",
                "Clients disconnected for sending messages too fast",
                &self.flood_disconnects,
            ),
            (
                "datawall_commands_received_total",
                "Operator commands received",
                &self.commands_received,
            ),
            (
                "datawall_commands_accepted_total",
                "Operator commands handed to the platform",
                &self.commands_accepted,
            ),
            (
                "datawall_commands_rejected_total",
                "Operator commands rejected (forbidden, invalid, no platform)",
                &self.commands_rejected,
            ),
            (
                "datawall_commands_confirmed_total",
                "Operator commands answered on the feed",
                &self.commands_confirmed,
            ),
            (
                "datawall_commands_timed_out_total",
                "Operator commands not answered in time",
                &self.commands_timed_out,
            ),
            (
                "datawall_pruned_total",
                "Resolved tickets and closed incidents that left the live model after a day",
                &self.pruned,
            ),
            (
                "datawall_history_checkpoint_errors_total",
                "Checkpoints of the history that could not be written",
                &self.history_errors,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let gauges = [
            (
                "datawall_clients",
                "Connected websocket clients",
                lags.len() as u64,
            ),
            (
                "datawall_client_lag_max",
                "Largest number of events a client is behind",
                lags.iter().copied().max().unwrap_or(0),
            ),
            (
                "datawall_client_lag_sum",
                "Events queued for clients in total",
                lags.iter().sum(),
            ),
        ];
        for (name, help, v) in gauges.iter().copied().chain(extra.iter().copied()) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

/// A `kB` line of `/proc/self/status` (Linux; `None` elsewhere).
fn proc_status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// Resident memory of this process, bytes (Linux `VmRSS`; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    proc_status_kb("VmRSS:").map_or(0, |kb| kb * 1024)
}

/// The system allocator, counting the bytes it holds while [`count_heap`] is on: the
/// binary installs it (`#[global_allocator]`) so that `datawall bench` can say where the bytes
/// go, structure by structure. Off, it costs one relaxed load per allocation.
pub struct CountingAlloc;

static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
thread_local! {
    /// Bytes this thread allocated less those it freed while counting (per thread, so that
    /// other threads' work does not blur a reading).
    static HEAP: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn count(delta: isize) {
    if COUNTING.load(std::sync::atomic::Ordering::Relaxed) {
        // (Not during the thread's teardown.)
        let _ = HEAP.try_with(|h| h.set(h.get() + delta));
    }
}

// SAFETY: every call is passed to the system allocator unchanged; the counter is a side effect.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as for `alloc` (the system's zeroed pages, not a fill).
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        count(-(layout.size() as isize));
        // SAFETY: as for `alloc`.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new) };
        if !p.is_null() {
            count(new as isize - layout.size() as isize);
        }
        p
    }
}

impl CountingAlloc {
    /// Say the binary installed it (call once from `main`).
    pub fn installed() {
        INSTALLED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Start or stop counting; whether the counting allocator is installed (when it is not,
/// [`heap_bytes`] stays 0).
pub fn count_heap(on: bool) -> bool {
    COUNTING.store(on, std::sync::atomic::Ordering::Relaxed);
    INSTALLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Bytes this thread allocated less those it freed while counting (compare two readings: the
/// difference is what the thread built between them and still holds).
pub fn heap_bytes() -> isize {
    HEAP.try_with(std::cell::Cell::get).unwrap_or(0)
}

/// Hand the heap's free pages back to the system (glibc's `malloc_trim`) and return the
/// resident bytes that freed. A load leaves most of its transients (decoded events, encoded
/// chunks, the rows of a first refresh) as free memory inside the allocator's arenas, which
/// the process would otherwise keep resident for the rest of its life. Takes tens of
/// milliseconds at a million tickets: call it off the frame and the event loops
/// ([`trim_heap_in_background`]). A no-op (0) where the allocator is not glibc's.
pub fn trim_heap() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let before = rss_bytes();
        // SAFETY: `malloc_trim` only walks the allocator's own arenas under their locks.
        unsafe { libc::malloc_trim(0) };
        before.saturating_sub(rss_bytes())
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        0
    }
}

/// [`trim_heap`] on a thread of its own, logging what it released after `what` (a load that
/// has just finished and dropped its transients).
pub fn trim_heap_in_background(what: &'static str) {
    let spawned = std::thread::Builder::new()
        .name("datawall-trim".into())
        .spawn(move || {
            let released = trim_heap();
            tracing::info!(
                target: "datawall::memory",
                "after {what}: {:.0} MB of free heap returned to the system, {:.0} MB resident",
                released as f64 / 1e6,
                rss_bytes() as f64 / 1e6
            );
        });
    if let Err(e) = spawned {
        tracing::warn!(target: "datawall::memory", "could not start the heap trim after {what}: {e}");
    }
}

/// Peak resident memory of this process, MB (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    proc_status_kb("VmHWM:").map_or(0.0, |kb| kb as f64 / 1024.0)
}
