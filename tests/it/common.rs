//! Shared fixtures: the bundled county and scratch folders.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use datawall::model::County;
use datawall::model::county::default_pack_dir;

/// The bundled Pingluo pack, loaded once per test binary.
pub fn county() -> Arc<County> {
    static COUNTY: OnceLock<Arc<County>> = OnceLock::new();
    COUNTY
        .get_or_init(|| Arc::new(County::load(&default_pack_dir()).expect("bundled pack loads")))
        .clone()
}

/// A fresh, empty scratch folder under the system temp dir.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("datawall-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A gateway serving `hub` on 127.0.0.1 with `token` (as a viewer's), `tweak`ed.
pub async fn serve_hub(
    hub: &Arc<datawall::net::hub::Hub>,
    token: &str,
    tweak: impl FnOnce(&mut datawall::net::gateway::GatewayConfig),
) -> (
    std::net::SocketAddr,
    datawall::net::gateway::Shutdown,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = datawall::net::gateway::GatewayConfig::new(token);
    tweak(&mut cfg);
    let (shutdown, rx) = datawall::net::gateway::Shutdown::new();
    let task = tokio::spawn(datawall::net::gateway::serve(
        listener,
        Arc::clone(hub),
        cfg,
        rx,
    ));
    (addr, shutdown, task)
}

/// Position fixes for `n` roster volunteers from `from_ms`, a few metres from their home grid.
pub fn fixes(from_ms: i64, n: usize) -> Vec<datawall::protocol::Event> {
    use datawall::protocol::{Event, LonLat, VolunteerFix};
    let c = county();
    (0..n)
        .map(|i| {
            let v = &c.pack.volunteers[i % c.pack.volunteers.len()];
            let g = c.grid(v.home_grid_id).unwrap();
            Event::VolunteerFix(VolunteerFix {
                volunteer_id: v.id,
                at_ms: from_ms + i as i64,
                pos: LonLat::new(g.label.lon + (i % 7) as f64 * 1e-5, g.label.lat),
            })
        })
        .collect()
}

/// Wait until `cond` holds, looking again every 10 ms (at most a minute; then panic naming
/// `what`): for state that changes without an event to wait on (a metric, a gauge).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(
            std::time::Instant::now() < give_up,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
