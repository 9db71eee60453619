//! Command-line interface of the `datawall` binary: argument types and the county commands.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::model::County;
use crate::model::check::check_pack;
use crate::model::county::default_pack_dir;
use crate::model::generate::{DEFAULT_SEED, DIVISIONS_CSV, generate};

#[derive(Debug, Parser)]
#[command(
    name = "datawall",
    version,
    about = "Real-time command-centre data wall for a county's grassroots governance"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect, check or rebuild a county pack.
    County {
        #[command(subcommand)]
        command: CountyCommand,
    },
    /// Run the feed gateway (websocket) with the county simulator or a replay as its source.
    Serve(Box<ServeArgs>),
    /// Simulate offline, as fast as possible, and write a recording for `serve --replay`.
    Record(RecordArgs),
    /// Run the simulator as a producer on the NATS JetStream backbone (the stand-in for the
    /// county's ticket platform and the volunteers' phones).
    Sim(SimProducerArgs),
    /// Open the wall on a remote gateway.
    #[cfg(feature = "wall")]
    Wall(WallArgs),
    /// Render the wall once and write a PNG: in a window (needs a display; Xvfb works) or,
    /// with --offscreen, into an image with no display at all.
    #[cfg(feature = "wall")]
    Snapshot(Box<SnapshotArgs>),
    /// Run the simulator, an embedded gateway and a headless wall client for simulated days;
    /// report memory over time, events, drops, resyncs and whether the client ends equal to
    /// the gateway (exit status 1 when it does not, when events were dropped, or when memory
    /// grew more than 5 % from day 2).
    #[cfg(feature = "wall")]
    Soak(SoakArgs),
    /// Write the events of a stretch of a gateway's history as Parquet (one row per event,
    /// typed columns) or NDJSON.
    #[cfg(feature = "analytics")]
    Export(ExportArgs),
    /// Measure ingest, fan-out, latency, snapshot and memory on this machine.
    Bench {
        /// Smaller loads (under 2 minutes).
        #[arg(long)]
        quick: bool,
        /// Also write the figures as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Only these groups, comma-separated: model, ingest, fanout, latency, backbone,
        /// snapshot, memory, analytics, history, frame.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// The `datawall` binary that renders the frame benchmark (default: this one), e.g. the
        /// debug build while the network figures come from a release build without the wall.
        #[arg(long)]
        wall_exe: Option<PathBuf>,
        /// Render the frame benchmark into an image with no window or display server (a
        /// headless GPU, or lavapipe without Xvfb); each frame waits for the GPU.
        #[arg(long)]
        offscreen: bool,
        #[command(flatten)]
        pack: PackArg,
    },
}

#[derive(Debug, Args, Clone)]
pub struct ScreenArgs {
    /// Window width in pixels (one window may span several screens, e.g. 7680).
    #[arg(long, default_value_t = 1920)]
    pub width: u32,
    /// Window height in pixels.
    #[arg(long, default_value_t = 1080)]
    pub height: u32,
    /// Borderless fullscreen on the monitor.
    #[arg(long)]
    pub borderless: bool,
    /// Monitor index to open on.
    #[arg(long)]
    pub monitor: Option<usize>,
    /// Scale of text and panels (1.5–2 for a wall read from 5 m).
    #[arg(long, default_value_t = 1.25)]
    pub ui_scale: f32,
    /// What the camera frames at start.
    #[cfg(feature = "wall")]
    #[arg(long, value_enum, default_value = "seat")]
    pub view: crate::wall::camera::InitialView,
    /// Start with the ticket heatmap shown (key 4 toggles it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub heat: bool,
    /// Kiosk tour of the communities that need attention after this many idle minutes
    /// (0: never).
    #[arg(long, default_value_t = 5.0)]
    pub tour_after_min: f64,
    /// Draw each frame in the same step as its update instead of overlapping rendering with
    /// the next update: about one frame less from event to pixel, less headroom on a heavy
    /// scene.
    #[arg(long)]
    pub low_latency: bool,
    /// No alert sounds (the ticker still shows every alert).
    #[arg(long)]
    pub mute: bool,
    /// Draw the map (land, grid fills, heat, borders) into a texture only when it changes,
    /// and copy it each frame; `false` draws every layer every frame (pictures are the same).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub map_cache: bool,
    /// The wall's layout and start-up settings (`wall.toml`: the physical panels and their
    /// bezels, side panels, layers, ranking order, tour, sounds; see
    /// `assets/wall.example.toml`); its canvas and scale replace --width, --height and
    /// --ui-scale.
    #[cfg(feature = "wall")]
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[cfg(feature = "wall")]
impl ScreenArgs {
    /// The `wall.toml` read and checked (before any window opens) and what it sets.
    fn with_config(&self) -> Result<(ScreenArgs, Option<crate::wall::layout::WallConfig>)> {
        let Some(path) = &self.config else {
            return Ok((self.clone(), None));
        };
        let c = crate::wall::layout::WallConfig::load(path)
            .with_context(|| "the wall's layout; see assets/wall.example.toml for every key")?;
        let (width, height) = c.canvas();
        let screen = ScreenArgs {
            width,
            height,
            ui_scale: c.ui_scale(),
            heat: c.layers.heat,
            tour_after_min: c.tour.after_min,
            mute: self.mute || c.sounds.mute,
            ..self.clone()
        };
        Ok((screen, Some(c)))
    }
}

#[derive(Debug, Args, Clone)]
pub struct WallArgs {
    /// Gateway feed URL (`wss://` for a gateway serving TLS).
    #[arg(long, default_value = "ws://127.0.0.1:8710/v1/feed")]
    pub feed: String,
    /// PEM certificate(s) to trust for a `wss://` feed (a private CA or the gateway's
    /// self-signed certificate); without it, the system's roots.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Bearer token of the gateway.
    #[arg(long, env = "DATAWALL_TOKEN", hide_env_values = true)]
    pub token: String,
    #[command(flatten)]
    pub screen: ScreenArgs,
    #[command(flatten)]
    pub pack: PackArg,
}

#[derive(Debug, Args, Clone)]
pub struct SnapshotArgs {
    /// PNG to write (a JSON sidecar with the camera goes beside it).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub screen: ScreenArgs,
    /// Render a recording instead of the live simulator.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Minutes into the recording's live part to show (with --replay).
    #[arg(long, default_value_t = 30.0)]
    pub at: f64,
    /// Render a past moment from a gateway's history (with --moment).
    #[arg(long, conflicts_with = "replay")]
    pub history_dir: Option<PathBuf>,
    /// The moment to show from --history-dir: ms since the epoch or e.g.
    /// 2026-11-30T14:05+08:00 (no zone: the county's, UTC+8).
    #[arg(long, requires = "history_dir", conflicts_with = "from")]
    pub moment: Option<String>,
    /// A range of moments from --history-dir as PNG frames for a report: from this moment…
    #[arg(long, requires_all = ["history_dir", "to"])]
    pub from: Option<String>,
    /// …to this one (inclusive), every --every minutes; --out is then a folder.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Minutes between frames of --from … --to.
    #[arg(long, default_value_t = 10.0)]
    pub every: f64,
    /// Frames to draw after sync before the picture.
    #[arg(long, default_value_t = 30)]
    pub settle_frames: u32,
    /// Cut the feed once synced and picture the wall's feed-down state.
    #[arg(long)]
    pub cut_feed: bool,
    /// Once synced, have the gateway report its backbone (NATS) down and picture the wall's
    /// "backbone down" state.
    #[arg(long, conflicts_with = "cut_feed")]
    pub backbone_down: bool,
    /// Measure frame and ECS times over this many frames (written to the JSON sidecar).
    #[arg(long, default_value_t = 0)]
    pub measure_frames: u32,
    /// While measuring, every volunteer on duty sends a fix every frame (a step of about
    /// 40 m there and back), as the deck.gl peer moves every point every frame.
    #[arg(long)]
    pub move_volunteers: bool,
    /// After the picture, switch the map cache off and picture the same state again into
    /// this PNG (the two are the same pixels; a test compares them).
    #[arg(long, conflicts_with = "from")]
    pub also_uncached: Option<PathBuf>,
    /// Event → pixel latency: the synthetic load (`--load-tickets`, `--load-volunteers`) plus
    /// this many volunteer fixes a second stamped at publish; p50/p99 over the measured frames
    /// go to the JSON sidecar.
    #[arg(long)]
    pub probe_rate: Option<f64>,
    /// Open the drill-down on the first search hit for this before the picture: a community
    /// or grid name, a volunteer's name, or a ticket id.
    #[arg(long)]
    pub select: Option<String>,
    /// Before the picture, act as an operator: acknowledge one breach alert with a note and
    /// 督办 the most pressing one's ticket (pictured while the platform has not yet answered).
    #[arg(long, conflicts_with_all = ["select", "replay", "load_tickets", "cut_feed"])]
    pub act: bool,
    /// Rewind the timeline this many minutes before the picture (a replay frame; the
    /// embedded gateway keeps a history for it).
    #[arg(long, conflicts_with_all = ["replay", "history_dir", "load_tickets", "cut_feed"])]
    pub rewind: Option<f64>,
    /// Wait for a closed incident whose title has this (or with this id) and picture its
    /// after-action at the moment it closed: the teams' tracks and arrivals (with e.g.
    /// `--speed 60`, the Taixi fire drill: `--after-action 太西`).
    #[arg(long, conflicts_with_all = ["replay", "history_dir", "load_tickets", "cut_feed", "act", "rewind", "select"])]
    pub after_action: Option<String>,
    /// Render into an image with no window or display server (any Vulkan adapter: a headless
    /// GPU, or lavapipe without Xvfb); frame times then include waiting for the GPU.
    #[arg(long)]
    pub offscreen: bool,
    /// Synthetic load instead of the simulator: this many open tickets…
    #[arg(long)]
    pub load_tickets: Option<usize>,
    /// How the wall takes the embedded gateway's snapshot: `binary` (as `datawall wall`
    /// does) or `json` (to compare cold starts).
    #[arg(long, default_value = "binary", value_parser = ["binary", "json"])]
    pub snapshot_format: String,
    /// …and about this many volunteers on duty (the roster is replicated to reach it).
    #[arg(long, default_value_t = 1_160)]
    pub load_volunteers: usize,
    #[command(flatten)]
    pub pack: PackArg,
    #[command(flatten)]
    pub sim: SimArgs,
}

#[derive(Debug, Args, Clone)]
pub struct RecordArgs {
    /// Output file (NDJSON; gzip when it ends in .gz).
    #[arg(long)]
    pub out: PathBuf,
    /// Minutes of live feed after the warm-up history.
    #[arg(long, default_value_t = 60)]
    pub minutes: u32,
    #[command(flatten)]
    pub pack: PackArg,
    #[command(flatten)]
    pub sim: SimArgs,
}

#[derive(Debug, Args, Clone)]
pub struct SimProducerArgs {
    /// NATS server URL, e.g. nats://127.0.0.1:4222.
    #[arg(long, env = "DATAWALL_NATS")]
    pub nats: String,
    /// Events per published batch at most.
    #[arg(long, default_value_t = 1_000)]
    pub batch_events: usize,
    /// Stop after this many minutes of simulated live time (default: run until Ctrl-C).
    #[arg(long)]
    pub minutes: Option<u32>,
    #[command(flatten)]
    pub pack: PackArg,
    #[command(flatten)]
    pub sim: SimArgs,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Serve TLS (`wss://`, `https://`) with this PEM certificate chain…
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// …and this PEM private key.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Follow the county's stream on this NATS JetStream server instead of running the
    /// simulator in the gateway (e.g. nats://127.0.0.1:4222).
    #[arg(long, env = "DATAWALL_NATS", conflicts_with_all = ["record", "replay"])]
    pub nats: Option<String>,
    /// Token of an operator: reads the feed and may command (repeatable).
    #[arg(
        long = "operator-token",
        env = "DATAWALL_OPERATOR_TOKEN",
        hide_env_values = true
    )]
    pub operator_tokens: Vec<String>,
    /// Append-only log of every operator command and its outcome (NDJSON); default
    /// `$XDG_STATE_HOME/datawall/audit.ndjson` (`~/.local/state/datawall/audit.ndjson`).
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Token that may POST events to /v1/events (repeatable).
    #[arg(
        long = "producer-token",
        env = "DATAWALL_PRODUCER_TOKEN",
        hide_env_values = true
    )]
    pub producer_tokens: Vec<String>,
    /// On a backbone: seconds between checkpoints (one gateway writes them; 0: never).
    #[arg(long, default_value_t = 60)]
    pub checkpoint_secs: u64,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8710")]
    pub listen: String,
    /// Bearer token walls must present (a viewer's).
    #[arg(
        long,
        env = "DATAWALL_TOKEN",
        hide_env_values = true,
        required_unless_present = "tokens",
        default_value = ""
    )]
    pub token: String,
    /// Named tokens with roles (TOML: `[[token]] name, role = viewer|operator|producer,
    /// token`), reloaded on SIGHUP.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Allowed browser Origin (repeatable); without any, Origin is not checked.
    #[arg(long = "allow-origin")]
    pub allow_origins: Vec<String>,
    /// Most simultaneous connections.
    #[arg(long, default_value_t = 256)]
    pub max_clients: usize,
    /// Most simultaneous connections from one address.
    #[arg(long, default_value_t = 64)]
    pub max_clients_per_address: usize,
    /// Events kept for resume and slow clients…
    #[arg(long, default_value_t = 200_000)]
    pub ring: usize,
    /// …and the most MB they may take, their slots and encoded lines half each (the oldest
    /// leave first).
    #[arg(long, default_value_t = 32)]
    pub ring_mb: usize,
    #[command(flatten)]
    pub pack: PackArg,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Write every event that goes out to FILE (NDJSON; gzip when it ends in .gz).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Serve a recording instead of the simulator.
    #[arg(long, conflicts_with = "record")]
    pub replay: Option<PathBuf>,
    /// Keep every event and hourly checkpoints here (the timeline, `GET /v1/history`,
    /// `datawall export`); a gateway restarted on it continues its epoch and seq. Default
    /// `$XDG_DATA_HOME/datawall/history/<county code>` (`~/.local/share/…`).
    #[arg(long, conflicts_with = "no_history")]
    pub history_dir: Option<PathBuf>,
    /// Days of history kept (older segments and checkpoints are removed).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub history_days: u32,
    /// Keep no history (a replay keeps none unless --history-dir is given).
    #[arg(long)]
    pub no_history: bool,
}

#[derive(Debug, Args, Clone)]
pub struct SimArgs {
    /// Simulator seed: the same seed and pack give the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Feed clock speed relative to real time (60 = one hour a minute); applies to replay too.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Multiplies the ticket and incident rates and (rounded) the volunteer roster: load tests.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Milliseconds between a volunteer's position fixes.
    #[arg(long, default_value_t = 1_000)]
    pub fix_interval_ms: i64,
    /// Hours of history simulated before the live start.
    #[arg(long, default_value_t = 24)]
    pub warmup_hours: u32,
    /// Feed time of the live start, ms since the epoch (default: now).
    #[arg(long)]
    pub start_ms: Option<i64>,
    /// A standing backlog of this many open tickets (city-scale load tests).
    #[arg(long, default_value_t = 0)]
    pub backlog: usize,
}

impl SimArgs {
    pub fn config(&self) -> crate::sim::SimConfig {
        crate::sim::SimConfig {
            seed: self.seed,
            start_ms: self.start_ms.unwrap_or_else(crate::net::hub::system_now_ms),
            warmup_hours: self.warmup_hours,
            scale: self.scale,
            fix_interval_ms: self.fix_interval_ms.max(50),
            backlog: self.backlog,
            ..Default::default()
        }
    }
}

#[cfg(feature = "analytics")]
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The gateway's history (default: the one `serve` keeps for this pack's county).
    #[arg(long)]
    pub history_dir: Option<PathBuf>,
    /// From this time (exclusive): ms since the epoch or e.g. 2026-11-30T14:05+08:00 (no
    /// zone: the county's, UTC+8). Default: the history's start.
    #[arg(long)]
    pub from: Option<String>,
    /// To this time (inclusive). Default: the history's end.
    #[arg(long)]
    pub to: Option<String>,
    /// Output file; its extension picks the format unless --format is given.
    #[arg(long)]
    pub out: PathBuf,
    /// parquet or ndjson.
    #[arg(long)]
    pub format: Option<String>,
    #[command(flatten)]
    pub pack: PackArg,
}

#[cfg(feature = "wall")]
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Simulated days after the day of warm-up history.
    #[arg(long, default_value_t = 7.0)]
    pub days: f64,
    /// Feed seconds per real second; 0 runs as fast as the wall client keeps up.
    #[arg(long, default_value_t = 0.0)]
    pub speed: f64,
    /// Milliseconds between a volunteer's position fixes.
    #[arg(long, default_value_t = 30_000)]
    pub fix_interval_ms: i64,
    /// Simulator seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Multiplies the ticket and incident rates.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Also write the report (every hourly sample) as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub pack: PackArg,
}

#[derive(Debug, Args, Clone)]
pub struct PackArg {
    /// County pack folder (default: the bundled Pingluo pack).
    #[arg(long, env = "DATAWALL_PACK")]
    pub pack: Option<PathBuf>,
}

impl PackArg {
    pub fn dir(&self) -> PathBuf {
        self.pack.clone().unwrap_or_else(|| {
            let local = PathBuf::from("data/pingluo");
            if local.join("pack.json").exists() {
                local
            } else {
                default_pack_dir()
            }
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum CountyCommand {
    /// Print the county: towns, communities with their grids, teams and volunteers.
    Summary {
        #[command(flatten)]
        pack: PackArg,
    },
    /// Run the pack checks (geometry nesting and partition, names and codes, roster).
    Check {
        #[command(flatten)]
        pack: PackArg,
    },
    /// Rebuild a pack from the real sources (divisions.csv + boundary GeoJSON).
    Generate {
        /// Folder holding divisions.csv and shizuishan_districts.geojson.
        #[arg(long, default_value = "data/pingluo/source")]
        sources: PathBuf,
        /// Output pack folder.
        #[arg(long, default_value = "data/pingluo")]
        out: PathBuf,
        /// Seed for the simulated parts; the same seed gives identical files.
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
    },
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        #[cfg(feature = "wall")]
        None => embedded_wall(),
        #[cfg(not(feature = "wall"))]
        None => {
            let dir = PackArg { pack: None }.dir();
            print!("{}", summary(&load(&dir)?));
            println!("\n(Built without the `wall` feature: this build prints the county.)");
            Ok(())
        }
        #[cfg(feature = "wall")]
        Some(Command::Wall(args)) => {
            let tls = args
                .ca
                .as_deref()
                .map(|ca| crate::net::tls::client_config(Some(ca)))
                .transpose()?;
            let (screen, layout) = args.screen.with_config()?;
            let county = std::sync::Arc::new(remote_county(&args, tls.clone())?);
            let target = crate::wall::feed::FeedTarget {
                url: args.feed.clone(),
                token: args.token.clone(),
                tls,
            };
            crate::wall::run(county, wall_options(target, &screen, layout, None))
        }
        #[cfg(feature = "wall")]
        Some(Command::Snapshot(args)) => snapshot(&args),
        #[cfg(feature = "wall")]
        Some(Command::Soak(args)) => soak(&args),
        #[cfg(feature = "analytics")]
        Some(Command::Export(args)) => export(&args),
        Some(Command::County { command }) => run_county(command),
        Some(Command::Record(args)) => record(&args),
        Some(Command::Bench {
            quick,
            json,
            only,
            wall_exe,
            offscreen,
            pack,
        }) => {
            if cfg!(debug_assertions) {
                eprintln!(
                    "bench: this is a debug build; figures are only meaningful from `cargo run --release -- bench`"
                );
            }
            crate::bench::run(
                &load(&pack.dir())?.pack,
                quick,
                json.as_deref(),
                only,
                wall_exe,
                offscreen,
            )
            .map(|_| ())
        }
        Some(Command::Sim(args)) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("datawall-sim")
                .build()
                .context("starting the tokio runtime")?;
            rt.block_on(crate::serve::sim_command(args))
        }
        Some(Command::Serve(args)) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("datawall-gateway")
                .build()
                .context("starting the tokio runtime")?;
            rt.block_on(crate::serve::serve_command(*args))
        }
    }
}

/// The county a remote wall draws: the pack, scaled as the gateway's `hello` says (a gateway
/// run with `--scale` splits grids and replicates the roster). When the gateway cannot be
/// reached yet, the pack as it is; the wall says so on screen if the gateway turns out to be
/// scaled.
#[cfg(feature = "wall")]
fn remote_county(
    args: &WallArgs,
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
) -> Result<crate::model::County> {
    let pack = load(&args.pack.dir())?.pack;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let hello = rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            crate::net::client::FeedConnection::probe_hello(&args.feed, &args.token, tls.clone()),
        )
        .await
    });
    let (roster, split) = match hello {
        Ok(Ok(h)) => (h.roster_scale, h.grid_split),
        Ok(Err(e)) => {
            eprintln!(
                "wall: cannot read the gateway's hello yet ({e}); starting with the county as packed"
            );
            (1, 1)
        }
        Err(_) => {
            eprintln!(
                "wall: no hello from {} within 10 s; starting with the county as packed",
                args.feed
            );
            (1, 1)
        }
    };
    if (roster, split) != (1, 1) {
        eprintln!("wall: the gateway is scaled: roster ×{roster}, grids split ×{split}");
    }
    Ok(crate::model::scale::scaled_county(pack, roster, split))
}

#[cfg(feature = "wall")]
fn wall_options(
    target: crate::wall::feed::FeedTarget,
    s: &ScreenArgs,
    layout: Option<crate::wall::layout::WallConfig>,
    snapshot: Option<crate::wall::SnapshotPlan>,
) -> crate::wall::WallOptions {
    crate::wall::WallOptions {
        target,
        width: s.width,
        height: s.height,
        borderless: s.borderless,
        monitor: s.monitor,
        ui_scale: s.ui_scale,
        view: s.view,
        heat: s.heat,
        tour_after: std::time::Duration::from_secs_f64(s.tour_after_min.max(0.0) * 60.0),
        low_latency: s.low_latency,
        mute: s.mute,
        map_cache: s.map_cache,
        layout,
        snapshot,
    }
}

#[cfg(feature = "wall")]
fn require_display() -> Result<()> {
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        bail!(
            "no display (DISPLAY is not set). On a headless machine run `scripts/run`, which renders \
             the wall under Xvfb, or: xvfb-run -a datawall snapshot --out wall.png (or \
             datawall snapshot --offscreen --out wall.png, which needs no display)"
        );
    }
    Ok(())
}

/// A fresh history folder for this process's embedded gateway (the timeline reads it).
#[cfg(feature = "wall")]
fn session_history_dir() -> PathBuf {
    let dir = session_history_dir_path();
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[cfg(feature = "wall")]
fn session_history_dir_path() -> PathBuf {
    std::env::temp_dir().join(format!("datawall-session-{}", std::process::id()))
}

/// `datawall` alone: gateway + simulator in-process, the wall connected through a real websocket.
#[cfg(feature = "wall")]
fn embedded_wall() -> Result<()> {
    require_display()?;
    let county = std::sync::Arc::new(load(&PackArg { pack: None }.dir())?);
    let config = crate::sim::SimConfig {
        start_ms: crate::net::hub::system_now_ms(),
        ..Default::default()
    };
    let audit = crate::net::gateway::commands::default_audit_path();
    // This session's history, for the timeline (a durable one: `datawall serve`).
    let gw = crate::net::spawn_embedded_keeping(
        std::sync::Arc::clone(&county),
        crate::net::EmbeddedSource::Simulator { config, speed: 1.0 },
        Some(audit.clone()),
        Some(session_history_dir()),
    )?;
    eprintln!(
        "datawall: embedded gateway at {} (simulated {}); opening the wall; operator commands audited to {}",
        gw.url,
        county.pack.manifest.county_name,
        audit.display()
    );
    let target = crate::wall::feed::FeedTarget {
        url: gw.url.clone(),
        token: gw.token.clone(),
        tls: None,
    };
    let screen = ScreenArgs {
        width: 1920,
        height: 1080,
        borderless: false,
        monitor: None,
        ui_scale: 1.25,
        view: Default::default(),
        heat: true,
        tour_after_min: 5.0,
        low_latency: false,
        mute: false,
        map_cache: true,
        config: None,
    };
    let result = crate::wall::run(county, wall_options(target, &screen, None, None));
    drop(gw);
    let _ = std::fs::remove_dir_all(session_history_dir_path());
    result
}

/// `datawall snapshot`: the wall rendered once to a PNG.
#[cfg(feature = "wall")]
fn snapshot(args: &SnapshotArgs) -> Result<()> {
    if !args.offscreen {
        require_display()?;
    }
    let (screen, layout) = args.screen.with_config()?;
    let pack = load(&args.pack.dir())?.pack;
    let roster_scale = args
        .load_volunteers
        .div_ceil(pack.volunteers.len().max(1))
        .max(1) as u32;
    // `--scale N` splits every grid N ways, as `serve --scale N` does.
    let grid_split = args.sim.scale.round().clamp(1.0, 999.0) as u32;
    let county = std::sync::Arc::new(crate::model::scale::scaled_county(
        pack,
        roster_scale,
        grid_split,
    ));
    let source = match &args.replay {
        None if args.load_tickets.is_some() || args.probe_rate.is_some() => {
            let n = args.load_tickets.unwrap_or(0);
            let at = crate::bench::load_start_ms();
            let mut events = crate::bench::load_tickets(&county, n);
            events.extend(crate::bench::load_volunteers_on_duty(&county, at));
            match args.probe_rate {
                Some(rate) => crate::net::EmbeddedSource::Probe {
                    events,
                    clock_ms: at,
                    rate,
                },
                None => crate::net::EmbeddedSource::Frozen {
                    events,
                    clock_ms: at,
                },
            }
        }
        None if args.history_dir.is_some() => {
            let dir = args.history_dir.clone().unwrap_or_default();
            let Some(when) = args.moment.as_deref().or(args.from.as_deref()) else {
                anyhow::bail!("--history-dir needs --moment T, or --from T1 --to T2");
            };
            let at = crate::analytics::export::parse_time(when)
                .map_err(|e| anyhow::anyhow!("--moment/--from: {e}"))?;
            let history = crate::net::history::History::open(&dir)?
                .with_context(|| format!("no history in {}", dir.display()))?;
            eprintln!(
                "snapshot: rebuilding the state at {at} from {}",
                dir.display()
            );
            let rebuilt = history.state_at(&county, crate::net::history::At::Time(at))?;
            crate::net::EmbeddedSource::State {
                state: Box::new(rebuilt.state),
                seq: rebuilt.seq,
                clock_ms: at,
            }
        }
        Some(path) => {
            let rec = crate::net::source::read_recording(path)?;
            let clock_ms = rec.header.live_from_ms + (args.at * 60_000.0) as i64;
            let events = rec
                .events
                .into_iter()
                .filter(|e| e.at_ms().is_some_and(|t| t <= clock_ms))
                .collect();
            crate::net::EmbeddedSource::Frozen { events, clock_ms }
        }
        None => crate::net::EmbeddedSource::Simulator {
            config: args.sim.config(),
            speed: args.sim.speed,
        },
    };
    // The timeline, an after-action and the figures' comparison with yesterday and last week
    // read the gateway's history: the simulator's is kept (from its warm-up on).
    let simulated =
        args.replay.is_none() && args.load_tickets.is_none() && args.probe_rate.is_none();
    let history = (args.rewind.is_some() || args.after_action.is_some() || simulated)
        .then(session_history_dir);
    let gw = crate::net::spawn_embedded_keeping(
        std::sync::Arc::clone(&county),
        source,
        None,
        history.clone(),
    )?;
    let target = crate::wall::feed::FeedTarget {
        url: format!("{}?format={}", gw.url, args.snapshot_format),
        token: gw.token.clone(),
        tls: None,
    };
    let plan = crate::wall::SnapshotPlan {
        out: args.out.clone(),
        settle_frames: args.settle_frames,
        timeout: std::time::Duration::from_secs(180),
        cut_feed: if args.cut_feed {
            Some(std::sync::Arc::new(gw.stopper()) as std::sync::Arc<dyn Fn() + Send + Sync>)
        } else if args.backbone_down {
            let hub = std::sync::Arc::clone(&gw.hub);
            Some(std::sync::Arc::new(move || hub.set_backbone_down(true))
                as std::sync::Arc<dyn Fn() + Send + Sync>)
        } else {
            None
        },
        measure_frames: args.measure_frames,
        measure_latency: args.probe_rate.is_some(),
        select: args.select.clone(),
        act: args.act,
        offscreen: args.offscreen,
        rewind_ms: args.rewind.map(|m| (m * 60_000.0) as i64),
        after_action: args.after_action.clone(),
        frames: frames_plan(args)?,
        uncached_out: args.also_uncached.clone(),
        move_volunteers: args.move_volunteers,
    };
    eprintln!(
        "snapshot: rendering {}x{} to {}",
        screen.width,
        screen.height,
        args.out.display()
    );
    let result = crate::wall::run(county, wall_options(target, &screen, layout, Some(plan)));
    drop(gw);
    if let Some(dir) = history {
        let _ = std::fs::remove_dir_all(dir);
    }
    result?;
    if args.from.is_none() {
        eprintln!("snapshot: wrote {}", args.out.display());
    }
    Ok(())
}

/// `snapshot --from … --to … --every …`: the moments to picture and where.
#[cfg(feature = "wall")]
fn frames_plan(args: &SnapshotArgs) -> Result<Option<crate::wall::FramesPlan>> {
    let (Some(from), Some(to), Some(dir)) = (&args.from, &args.to, &args.history_dir) else {
        return Ok(None);
    };
    let parse = |s: &str, what: &str| {
        crate::analytics::export::parse_time(s).map_err(|e| anyhow::anyhow!("{what}: {e}"))
    };
    let (from, to) = (parse(from, "--from")?, parse(to, "--to")?);
    if to < from {
        anyhow::bail!("--to is before --from");
    }
    if args.every.is_nan() || args.every <= 0.0 {
        anyhow::bail!("--every is minutes between frames: more than 0");
    }
    let step = (args.every * 60_000.0) as i64;
    let moments: Vec<i64> = (0..)
        .map(|k| from + k * step)
        .take_while(|t| *t <= to)
        .collect();
    if moments.len() > 1_000 {
        anyhow::bail!(
            "{} frames: more than 1 000; pass a larger --every",
            moments.len()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create the folder {}", args.out.display()))?;
    Ok(Some(crate::wall::FramesPlan {
        history: dir.clone(),
        moments,
        dir: args.out.clone(),
    }))
}

/// `datawall record`: run the simulator offline and write what the hub would publish.
fn record(args: &RecordArgs) -> Result<()> {
    use crate::net::source::{RecordingHeader, create_recording};
    let county = std::sync::Arc::new(load(&args.pack.dir())?);
    let cfg = args.sim.config();
    let start_ms = cfg.start_ms;
    let header = RecordingHeader {
        kind: "recording".into(),
        protocol: crate::protocol::PROTOCOL_VERSION,
        county_code: county.pack.manifest.county_code,
        live_from_ms: start_ms,
    };
    let mut out = create_recording(&args.out, &header)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut sim = crate::sim::Simulator::new(std::sync::Arc::clone(&county), cfg);
    let mut state = crate::model::LiveState::new(county);
    let (mut written, mut rejected) = (0u64, 0u64);
    let end_ms = start_ms + i64::from(args.minutes) * 60_000;
    let mut t = sim.next_due_ms().unwrap_or(start_ms);
    while t < end_ms {
        t = (t + 60_000).min(end_ms);
        for event in sim.advance_to(t) {
            if state.apply(&event).is_err() {
                rejected += 1;
                continue;
            }
            serde_json::to_writer(&mut out, &event)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        if t > start_ms && (t - start_ms) % (10 * 60_000) == 0 {
            eprintln!(
                "record: {} of {} live minutes, {written} events",
                (t - start_ms) / 60_000,
                args.minutes
            );
        }
    }
    out.flush()?;
    drop(out);
    eprintln!(
        "record: wrote {written} events to {} ({rejected} rejected by the model)",
        args.out.display()
    );
    Ok(())
}

#[cfg(feature = "analytics")]
fn export(args: &ExportArgs) -> Result<()> {
    use crate::analytics::export::{self, Format};
    let format = match args.format.as_deref() {
        Some("parquet") => Format::Parquet,
        Some("ndjson") => Format::Ndjson,
        Some(other) => anyhow::bail!("--format {other}: use parquet or ndjson"),
        None => Format::from_path(&args.out).with_context(|| {
            format!(
                "{}: name it .parquet or .ndjson, or pass --format",
                args.out.display()
            )
        })?,
    };
    let dir = match &args.history_dir {
        Some(d) => d.clone(),
        None => crate::net::history::default_dir(load(&args.pack.dir())?.pack.manifest.county_code),
    };
    let history = crate::net::history::History::open(&dir)?.with_context(|| {
        format!(
            "no history in {}: a gateway keeps one with `serve --history-dir` (the default), or pass --history-dir",
            dir.display()
        )
    })?;
    let time = |s: &Option<String>, default: i64| -> Result<i64> {
        s.as_deref()
            .map_or(Ok(default), export::parse_time)
            .map_err(|e| anyhow::anyhow!(e))
    };
    let from = time(&args.from, i64::MIN)?;
    let to = time(&args.to, i64::MAX)?;
    if from >= to {
        anyhow::bail!("--from must be before --to");
    }
    eprintln!("export: reading {}", dir.display());
    let events = export::events_between(&history, from, to, |n| {
        eprintln!("export: {n} events read");
    })?;
    let done = export::write(&events, &args.out, format)?;
    eprintln!(
        "export: wrote {} events (seq {}–{}) to {} ({} bytes)",
        done.events,
        done.first_seq.map_or("-".into(), |s| s.to_string()),
        done.last_seq.map_or("-".into(), |s| s.to_string()),
        args.out.display(),
        done.bytes
    );
    Ok(())
}

#[cfg(feature = "wall")]
fn soak(args: &SoakArgs) -> Result<()> {
    let county = std::sync::Arc::new(load(&args.pack.dir())?);
    let cfg = crate::soak::SoakConfig {
        days: args.days,
        speed: args.speed,
        seed: args.seed,
        fix_interval_ms: args.fix_interval_ms,
        scale: args.scale,
    };
    let mb = |b: u64| b as f64 / 1_048_576.0;
    eprintln!(
        "soak: {} simulated days of {} (a volunteer fix every {} s), {}",
        cfg.days,
        county.pack.manifest.county_name,
        cfg.fix_interval_ms as f64 / 1000.0,
        if cfg.speed > 0.0 {
            format!("{}× real time", cfg.speed)
        } else {
            "as fast as the wall client keeps up".into()
        }
    );
    println!(
        "{:>6} {:>8} {:>9} {:>12} {:>9} {:>7} {:>9} {:>7} {:>9} {:>10}",
        "day",
        "real s",
        "RSS MB",
        "events",
        "gw tix",
        "gw inc",
        "wall tix",
        "alerts",
        "store",
        "analytics"
    );
    let report = crate::soak::run(county, &cfg, |s| {
        // Every 6 feed hours on the terminal (the JSON has every hour).
        if (s.day * 4.0 - (s.day * 4.0).round()).abs() < 1e-9 {
            println!(
                "{:>6.2} {:>8.1} {:>9.1} {:>12} {:>9} {:>7} {:>9} {:>7} {:>9} {:>10}",
                s.day,
                s.real_s,
                mb(s.rss_bytes),
                s.events,
                s.gateway_tickets,
                s.gateway_incidents,
                s.wall_tickets,
                s.gateway_alerts,
                s.wall_store_rows,
                s.analytics_rows
            );
        }
    })?;
    println!(
        "events: {} accepted, {} rejected by the gateway; the wall client received {}, dropped {}",
        report.events_accepted, report.events_rejected, report.client_events, report.client_dropped
    );
    println!(
        "resyncs: {} (snapshots after the first: {}); fixes conflated for a lagging client: {}; pruned after a day: {}",
        report.resyncs, report.snapshots_after_first, report.conflated, report.pruned
    );
    let opt_mb = |b: Option<u64>| b.map_or("-".to_owned(), |b| format!("{:.1}", mb(b)));
    println!(
        "RSS MB: day 1 {}, day 2 {}, end {:.1}; from day 2 {}",
        opt_mb(report.rss_day1_bytes),
        opt_mb(report.rss_day2_bytes),
        mb(report.rss_last_bytes),
        report
            .rss_growth_from_day2
            .map_or("-".to_owned(), |g| format!("{:+.2} %", g * 100.0))
    );
    println!(
        "final state at seq {}: {} ({:.0} s)",
        report.final_seq,
        if report.final_state_equal {
            "the wall client equals the gateway"
        } else {
            "DIFFERS"
        },
        report.real_s
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("soak: report written to {}", path.display());
    }
    let problems = report.problems();
    if !problems.is_empty() {
        anyhow::bail!("soak failed: {}", problems.join("; "));
    }
    Ok(())
}

fn load(dir: &Path) -> Result<County> {
    County::load(dir).with_context(|| {
        format!(
            "loading the county pack from {} (rebuild it with `datawall county generate`)",
            dir.display()
        )
    })
}

fn run_county(command: CountyCommand) -> Result<()> {
    match command {
        CountyCommand::Summary { pack } => {
            print!("{}", summary(&load(&pack.dir())?));
            Ok(())
        }
        CountyCommand::Check { pack } => {
            let dir = pack.dir();
            let county = load(&dir)?;
            let divisions = dir.join("source").join(DIVISIONS_CSV);
            let report = check_pack(
                &county.pack,
                divisions.exists().then_some(divisions.as_path()),
            )?;
            for p in &report.passed {
                println!("ok    {p}");
            }
            for p in &report.problems {
                println!("FAIL  {p}");
            }
            if !report.is_ok() {
                bail!(
                    "{} problem(s) in {}; regenerate with `datawall county generate` or fix the files",
                    report.problems.len(),
                    dir.display()
                );
            }
            Ok(())
        }
        CountyCommand::Generate { sources, out, seed } => {
            let mut progress = |line: &str| eprintln!("generate: {line}");
            let pack = generate(&sources, seed, &mut progress).with_context(|| {
                format!(
                    "generating from {} (it needs {DIVISIONS_CSV} and the boundary GeoJSON)",
                    sources.display()
                )
            })?;
            eprintln!("generate: checking");
            let report = check_pack(&pack, Some(&sources.join(DIVISIONS_CSV)))?;
            if !report.is_ok() {
                bail!(
                    "generated pack fails its checks:\n{}",
                    report.problems.join("\n")
                );
            }
            pack.save(&out)?;
            copy_sources(&sources, &out.join("source"))?;
            eprintln!("generate: wrote {}", out.display());
            Ok(())
        }
    }
}

/// Keep the real sources beside the pack so it can be rebuilt from a clean clone.
fn copy_sources(from: &Path, to: &Path) -> Result<()> {
    if from.canonicalize().ok() == to.canonicalize().ok() {
        return Ok(());
    }
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Display width in terminal columns (CJK characters are two wide).
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| if (c as u32) >= 0x1100 { 2 } else { 1 })
        .sum()
}

fn pad(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(width(s))))
}

/// The text of `datawall county summary`.
pub fn summary(county: &County) -> String {
    let pack = &county.pack;
    let counts = pack.counts_by_community();
    let mut out = String::new();
    let m = &pack.manifest;
    let (min, max) = pack.bounds();
    let _ = writeln!(out, "{} ({})", m.county_name, m.county_code);
    let _ = writeln!(
        out,
        "boundary: lon {:.3}..{:.3}, lat {:.3}..{:.3} (real)",
        min.lon, max.lon, min.lat, max.lat
    );
    let _ = writeln!(out, "\ntowns: {}", pack.towns.len());
    for t in &pack.towns {
        let n = pack
            .communities
            .iter()
            .filter(|c| c.town_code == t.code)
            .count();
        let _ = writeln!(out, "  {} {}  {n} communities", t.code, pad(&t.name, 10));
    }
    let _ = writeln!(
        out,
        "\ncommunities: {} (real names and codes; areas and grids simulated)",
        pack.communities.len()
    );
    let _ = writeln!(
        out,
        "  {:<12} {} {} {:>10} {:>5} {:>5} {:>10}",
        "code",
        pad("community", 16),
        pad("town", 10),
        "households",
        "grids",
        "teams",
        "volunteers"
    );
    for c in &pack.communities {
        let k = counts.get(&c.code).cloned().unwrap_or_default();
        let town = pack
            .towns
            .iter()
            .find(|t| t.code == c.town_code)
            .map_or("?", |t| t.name.as_str());
        let _ = writeln!(
            out,
            "  {:<12} {} {} {:>10} {:>5} {:>5} {:>10}",
            c.code,
            pad(&c.display_name, 16),
            pad(town, 10),
            c.households,
            k.grids,
            k.teams,
            k.volunteers
        );
    }
    let households: u32 = pack.communities.iter().map(|c| c.households).sum();
    let sum = |f: fn(&crate::model::Grid) -> u32| pack.grids.iter().map(f).sum::<u32>();
    let _ = writeln!(out, "\ntotals");
    let _ = writeln!(out, "  grids                      {}", pack.grids.len());
    let _ = writeln!(out, "  households                 {households}");
    let _ = writeln!(out, "  grid staff (1+4+X)         {}", pack.staff.len());
    let _ = writeln!(
        out,
        "  grid party groups          {}",
        sum(|g| g.party_groups)
    );
    let _ = writeln!(
        out,
        "  party-member households    {}",
        sum(|g| g.centre_households)
    );
    let _ = writeln!(
        out,
        "  owner committees           {}",
        pack.communities
            .iter()
            .map(|c| c.owner_committees)
            .sum::<u32>()
    );
    let _ = writeln!(
        out,
        "  red-property councils      {}",
        pack.communities
            .iter()
            .filter(|c| c.red_property_council)
            .count()
    );
    let _ = writeln!(
        out,
        "  custodial old estates      {}",
        pack.communities
            .iter()
            .map(|c| c.custodial_estates)
            .sum::<u32>()
    );
    let _ = writeln!(out, "  emergency volunteer teams  {}", pack.teams.len());
    let _ = writeln!(
        out,
        "  volunteers                 {}",
        pack.volunteers.len()
    );
    let _ = writeln!(out, "\nsimulated (pack.json): {}", m.simulated.join("; "));
    out
}

/// Load the county for a subcommand that accepts `--pack`.
pub fn load_county(pack: &PackArg) -> Result<County> {
    load(&pack.dir())
}
