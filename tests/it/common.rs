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

/// The county simulator with the defaults but its seed, start and hours of history before it.
pub fn simulator(
    county: Arc<County>,
    seed: u64,
    start_ms: i64,
    warmup_hours: u32,
) -> datawall::sim::Simulator {
    datawall::sim::Simulator::new(
        county,
        datawall::sim::SimConfig {
            seed,
            start_ms,
            warmup_hours,
            ..Default::default()
        },
    )
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

/// What the proxy does to the bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Pass,
    /// Hold everything (both ways) until the mode changes: a stalled network.
    Stall,
    /// At most this many bytes a second each way (the wall's fault tests).
    #[cfg_attr(not(feature = "wall"), allow(dead_code))]
    Throttle(usize),
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    mode: tokio::sync::watch::Sender<Mode>,
}

impl Proxy {
    pub async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = tokio::sync::watch::channel(Mode::Pass);
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::spawn(pump(dr, uw, rx.clone()));
                tokio::spawn(pump(ur, dw, rx.clone()));
            }
        });
        Self { addr, mode }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// Carry bytes from `from` to `to` as the mode says, until either side closes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: tokio::sync::watch::Receiver<Mode>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut at = 0;
        while at < n {
            let current = *mode.borrow_and_update();
            match current {
                Mode::Stall => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                Mode::Pass => {
                    if to.write_all(&buf[at..n]).await.is_err() {
                        return;
                    }
                    at = n;
                }
                Mode::Throttle(bytes_per_sec) => {
                    // A tenth of a second's worth at a time.
                    let step = (bytes_per_sec / 10).max(1).min(n - at);
                    if to.write_all(&buf[at..at + step]).await.is_err() {
                        return;
                    }
                    at += step;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

#[cfg(feature = "wall")]
/// Drain the wall's feed until `done` holds (60 s at most).
pub async fn pump_wall(
    ch: &mut datawall::wall::feed::FeedChannel,
    model: &mut datawall::wall::feed::WallModel,
    what: &str,
    done: impl Fn(&datawall::wall::feed::WallModel) -> bool,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done(model) {
        assert!(
            std::time::Instant::now() < deadline,
            "never: {what} ({:?})",
            model.state
        );
        // Woken by the next item from the feed thread; a stall shows by the wall's clock
        // alone, so look again at least every 50 ms.
        if let Ok(Some(item)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), ch.rx.recv()).await
        {
            datawall::wall::feed::apply_item(ch, model, item);
        }
    }
}

/// A wall's feed on a gateway serving `hub` (with its history in `history_dir`), followed
/// until it is live at the hub's last seq: the wall's channel and model, and the gateway's
/// stopper.
#[cfg(feature = "wall")]
pub async fn live_wall_on_history(
    hub: &Arc<datawall::net::hub::Hub>,
    token: &str,
    history_dir: &std::path::Path,
) -> (
    datawall::wall::feed::FeedChannel,
    datawall::wall::feed::WallModel,
    datawall::net::gateway::Shutdown,
) {
    use datawall::wall::feed::{FeedChannel, FeedState, FeedTarget, WallModel, spawn_feed};
    let dir = history_dir.to_owned();
    let (addr, shutdown, _task) = serve_hub(hub, token, |cfg| cfg.history_dir = Some(dir)).await;
    let (rx, commands) = spawn_feed(FeedTarget {
        url: format!("ws://{addr}{}", datawall::protocol::session::FEED_PATH),
        token: token.into(),
        tls: None,
    })
    .unwrap();
    let mut ch = FeedChannel { rx, commands };
    let mut model = WallModel::new(county());
    let target = hub.last_seq();
    pump_wall(&mut ch, &mut model, "live", |m| {
        m.state == FeedState::Live && m.mirror.last_seq == target
    })
    .await;
    (ch, model, shutdown)
}
