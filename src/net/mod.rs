//! The tokio side: the feed gateway (listener, handler, hub, metrics), its event sources and
//! the feed client.

pub mod backbone;
pub mod client;
pub mod gateway;
pub mod history;
pub mod hub;
pub mod metrics;
pub mod natsd;
pub mod producer;
pub mod source;
pub mod tls;

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::cli::ServeArgs;
use gateway::{GatewayConfig, Shutdown};
use hub::{Hub, HubConfig};

async fn listen(addr: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (in use? pick another with --listen)"))
}

/// Read the tokens file again on every SIGHUP (the tokens in force stay on error).
fn reload_tokens_on_hangup(cfg: &GatewayConfig) {
    #[cfg(unix)]
    if let Some(tokens) = cfg.tokens_file.clone() {
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                match tokens.reload() {
                    Ok(n) => eprintln!("datawall: tokens file reloaded ({n} tokens)"),
                    Err(e) => eprintln!("datawall: {e}; the tokens in force are unchanged"),
                }
            }
        });
    }
}

/// Resolve when Ctrl-C or SIGTERM arrives.
async fn termination() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// `datawall sim --nats URL`: the simulator as a producer on the backbone until Ctrl-C.
pub async fn sim_command(args: crate::cli::SimProducerArgs) -> Result<()> {
    let scale = args.sim.scale.round().clamp(1.0, 999.0) as u32;
    let pack = crate::cli::load_county(&args.pack)?.pack;
    let county = Arc::new(crate::model::scale::scaled_county(pack, scale, scale));
    let sim = args.sim.config();
    let until_ms = args.minutes.map(|m| sim.start_ms + i64::from(m) * 60_000);
    let cfg = producer::ProducerConfig {
        url: args.nats.clone(),
        sim,
        explicit_start: args.sim.start_ms.is_some(),
        speed: args.sim.speed,
        batch_events: args.batch_events.clamp(1, hub::MAX_EVENTS_PER_MESSAGE),
        until_ms,
    };
    let (shutdown, shutdown_rx) = Shutdown::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        termination().await;
        eprintln!("datawall: stopping the producer after the batch in flight");
        stopper.trigger();
    });
    let report = producer::run(county, cfg, shutdown_rx).await?;
    eprintln!(
        "datawall: published {} events in {} batches ({} retries, {} already stored; the run had {} events before this process)",
        report.events, report.batches, report.retries, report.duplicates, report.resumed_after
    );
    Ok(())
}

fn gateway_config(args: &ServeArgs) -> Result<GatewayConfig> {
    let mut cfg = GatewayConfig::new(args.token.clone());
    if let Some(path) = &args.tokens {
        let tokens = gateway::tokens::Tokens::default().with_file(path)?;
        cfg.tokens_file = Some(Arc::new(tokens));
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        cfg.tls = Some(gateway::Tls::new(tls::server_config(cert, key)?));
    }
    cfg.allowed_origins = args.allow_origins.clone();
    cfg.max_clients = args.max_clients;
    cfg.max_clients_per_address = args.max_clients_per_address.max(1);
    cfg.operator_tokens = args
        .operator_tokens
        .iter()
        .filter(|t| !t.trim().is_empty())
        .cloned()
        .collect();
    cfg.producer_tokens = args
        .producer_tokens
        .iter()
        .filter(|t| !t.trim().is_empty())
        .cloned()
        .collect();
    Ok(cfg)
}

fn scheme(cfg: &GatewayConfig) -> (&'static str, &'static str) {
    if cfg.tls.is_some() {
        ("wss", "https")
    } else {
        ("ws", "http")
    }
}

/// The command desk of a gateway whose platform is `platform`, auditing to `audit_log`.
fn command_desk(
    platform: gateway::commands::Platform,
    audit_log: Option<&std::path::Path>,
) -> Result<Arc<gateway::commands::CommandDesk>> {
    let audit = match audit_log {
        Some(path) => Some(gateway::commands::AuditLog::open(path).with_context(|| {
            format!(
                "cannot open the audit log {} for appending (pick another with --audit-log)",
                path.display()
            )
        })?),
        None => None,
    };
    Ok(Arc::new(gateway::commands::CommandDesk::new(
        platform, audit,
    )))
}

/// The audit log a gateway started by `args` writes.
fn audit_path(args: &ServeArgs) -> std::path::PathBuf {
    args.audit_log
        .clone()
        .unwrap_or_else(gateway::commands::default_audit_path)
}

/// Settings of a gateway on a backbone beyond [`GatewayConfig`].
#[derive(Clone, Debug)]
pub struct BackboneOptions {
    pub ring: usize,
    /// Take part in writing checkpoints this often (one gateway writes at a time).
    pub checkpoint_every: Option<std::time::Duration>,
    /// Where commands are audited (none: not audited).
    pub audit_log: Option<std::path::PathBuf>,
    /// Run the alert engine (breach alerts, the ladder) on this gateway.
    pub alerts: bool,
    /// Keep a history of the stream in this folder for this many days (the walls' timeline
    /// and after-action, `datawall export`).
    pub history: Option<(std::path::PathBuf, u32)>,
}

/// A gateway following the county's stream on a NATS backbone, serving walls on a listener.
pub struct BackboneGateway {
    pub hub: Arc<Hub>,
    pub addr: std::net::SocketAddr,
    pub js: async_nats::jetstream::Context,
    pub names: backbone::Names,
    /// How this gateway names itself as the checkpoint writer.
    pub writer_id: String,
    shutdown: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BackboneGateway {
    /// Open (or create) the stream, load the latest checkpoint, start following the stream
    /// and serving. Errors when NATS cannot be reached or the stream cannot be opened.
    pub async fn start(
        county: Arc<crate::model::County>,
        url: &str,
        listener: tokio::net::TcpListener,
        mut cfg: GatewayConfig,
        options: BackboneOptions,
    ) -> Result<Self> {
        let names = backbone::Names::new(county.pack.manifest.county_code);
        let hub_cell: backbone::HubCell = Arc::default();
        let client = backbone::connect_gateway(url, Arc::clone(&hub_cell)).await?;
        let js = async_nats::jetstream::new(client.clone());
        let (mut stream, epoch) = backbone::ensure_stream(&js, &names).await?;
        // Its own history first, when the stream still holds what follows it; else the
        // backbone's checkpoint (and a new history begins there).
        let mut kept = match &options.history {
            Some((dir, days)) => {
                let first = stream
                    .info()
                    .await
                    .context("reading the stream's info")?
                    .state
                    .first_sequence;
                Some((
                    dir.clone(),
                    *days,
                    history::open_for_backbone(dir, *days, &county, epoch, first)?,
                ))
            }
            None => None,
        };
        let own = kept.as_mut().and_then(|(_, _, k)| k.restore.take());
        let from_history = own.is_some();
        let restore = match own {
            Some(r) => Some(r),
            None => backbone::load_checkpoint(&js, &names, &county, epoch).await,
        };
        let hub = Arc::new(Hub::on_backbone(
            Arc::clone(&county),
            HubConfig {
                ring_capacity: options.ring.max(1),
                ..Default::default()
            },
            epoch,
            restore,
        ));
        let _ = hub_cell.set(Arc::clone(&hub));
        let addr = listener.local_addr()?;
        let mut history_task = None;
        if let Some((dir, days, k)) = kept {
            hub.set_history(k.writer);
            if !from_history && hub.last_seq() > 0 {
                // The new history's base: the model it starts from.
                let (h, d) = (Arc::clone(&hub), dir.clone());
                tokio::task::spawn_blocking(move || history::checkpoint_now(&h, &d, days))
                    .await??;
            }
            cfg.history_dir = Some(dir.clone());
            history_task = Some((dir, days));
        }
        let publisher = backbone::Publisher {
            js: js.clone(),
            names: names.clone(),
        };
        cfg.publisher = Some(publisher.clone());
        cfg.commands = Some(command_desk(
            gateway::commands::Platform::Nats {
                client,
                subject: names.commands(),
            },
            options.audit_log.as_deref(),
        )?);
        let (shutdown, shutdown_rx) = Shutdown::new();
        let writer_id = format!("gateway-{}-{addr}-{}", std::process::id(), random_token()?);
        let mut tasks = vec![tokio::spawn(backbone::follow(
            Arc::clone(&hub),
            js.clone(),
            names.clone(),
            shutdown_rx.clone(),
        ))];
        if let Some((dir, days)) = history_task {
            tasks.push(tokio::spawn(history::run_checkpoints(
                Arc::clone(&hub),
                dir,
                days,
                shutdown_rx.clone(),
            )));
        }
        if options.alerts {
            tasks.push(tokio::spawn(gateway::commands::run_alert_engine(
                Arc::clone(&hub),
                gateway::commands::AlertSink::Backbone(Box::new(publisher)),
                shutdown_rx.clone(),
            )));
        }
        if let Some(every) = options.checkpoint_every {
            tasks.push(tokio::spawn(backbone::write_checkpoints(
                Arc::clone(&hub),
                js.clone(),
                names.clone(),
                every,
                writer_id.clone(),
                shutdown_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(gateway::serve(
            listener,
            Arc::clone(&hub),
            cfg,
            shutdown_rx,
        )));
        Ok(Self {
            hub,
            addr,
            js,
            names,
            writer_id,
            shutdown,
            tasks,
        })
    }

    /// Stop serving (clients are told) and following; returns when every task has ended.
    pub async fn stop(self) {
        self.shutdown.trigger();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A gateway that follows the county's stream on a NATS backbone.
async fn serve_backbone(
    args: ServeArgs,
    county: Arc<crate::model::County>,
    url: &str,
) -> Result<()> {
    let listener = listen(&args.listen).await?;
    let options = BackboneOptions {
        ring: args.ring,
        checkpoint_every: (args.checkpoint_secs > 0)
            .then(|| std::time::Duration::from_secs(args.checkpoint_secs)),
        audit_log: Some(audit_path(&args)),
        alerts: true,
        history: history_dir(&args, &county).map(|d| (d, args.history_days)),
    };
    if let Some((dir, days)) = &options.history {
        eprintln!(
            "datawall: history of the stream in {} ({days} days kept)",
            dir.display()
        );
    }
    eprintln!("datawall: connecting to NATS at {url}");
    let cfg = gateway_config(&args)?;
    reload_tokens_on_hangup(&cfg);
    let (ws, http) = scheme(&cfg);
    let gateway = tokio::select! {
        g = BackboneGateway::start(county, url, listener, cfg, options) => g?,
        _ = termination() => return Ok(()),
    };
    let addr = gateway.addr;
    eprintln!(
        "datawall: feed at {ws}://{addr}{} following {} (epoch {}, from stream message {}); health at {http}://{addr}/healthz (503 until caught up); events in at {http}://{addr}{}",
        crate::protocol::session::FEED_PATH,
        gateway.names.stream(),
        gateway.hub.epoch,
        gateway.hub.stream_seq() + 1,
        gateway::ingest::INGEST_PATH,
    );
    termination().await;
    eprintln!("datawall: shutting down (telling clients, draining)");
    gateway.stop().await;
    Ok(())
}

/// Where `serve` keeps its history: `--history-dir`, else the default folder (not for a
/// replayed recording), none with `--no-history`.
fn history_dir(args: &ServeArgs, county: &crate::model::County) -> Option<std::path::PathBuf> {
    match (&args.history_dir, args.no_history, &args.replay) {
        (_, true, _) => None,
        (Some(dir), _, _) => Some(dir.clone()),
        (None, _, Some(_)) => None,
        (None, _, None) => Some(history::default_dir(county.pack.manifest.county_code)),
    }
}

/// `datawall serve`: gateway + simulator (or replay, or a NATS backbone) until Ctrl-C / SIGTERM.
pub async fn serve_command(args: ServeArgs) -> Result<()> {
    if args.token.trim().is_empty() && args.tokens.is_none() {
        anyhow::bail!(
            "no token: pass --token TOKEN (or set DATAWALL_TOKEN), or --tokens FILE with named tokens"
        );
    }
    // `--scale N` multiplies the grids (each split N ways) and the roster (N copies).
    let scale = args.sim.scale.round().clamp(1.0, 999.0) as u32;
    let pack = crate::cli::load_county(&args.pack)?.pack;
    let county = Arc::new(crate::model::scale::scaled_county(pack, scale, scale));
    if let Some(url) = args.nats.clone() {
        return serve_backbone(args, county, &url).await;
    }
    let hub_config = HubConfig {
        ring_capacity: args.ring.max(1),
        ..Default::default()
    };
    let history_dir = history_dir(&args, &county);
    let (hub, history_writer) = match &history_dir {
        Some(dir) => {
            let (hub, writer) =
                history::open_for_gateway(dir, args.history_days, &county, hub_config)?;
            (hub, Some(writer))
        }
        None => (Hub::new(Arc::clone(&county), hub_config), None),
    };
    let hub = Arc::new(hub);
    let resumed_at = (hub.last_seq() > 0).then(|| hub.with_state(|s| s.latest_event_ms));
    let listener = listen(&args.listen).await?;
    let addr = listener.local_addr()?;
    let mut cfg = gateway_config(&args)?;
    cfg.history_dir = history_dir.clone();
    reload_tokens_on_hangup(&cfg);
    let (ws, http) = scheme(&cfg);
    let (shutdown, shutdown_rx) = Shutdown::new();
    let (commands_tx, commands_rx) = tokio::sync::mpsc::channel(64);
    let platform = if args.replay.is_some() {
        gateway::commands::Platform::None
    } else {
        gateway::commands::Platform::Simulator(commands_tx)
    };
    let audit = audit_path(&args);
    cfg.commands = Some(command_desk(platform, Some(&audit))?);
    eprintln!("datawall: operator commands audited to {}", audit.display());
    tokio::spawn(gateway::commands::run_alert_engine(
        Arc::clone(&hub),
        gateway::commands::AlertSink::Hub,
        shutdown_rx.clone(),
    ));
    let history_dir_for_source = history_dir.clone();
    let checkpoints = match (history_dir, history_writer) {
        (Some(dir), Some(writer)) => {
            hub.set_history(writer);
            eprintln!(
                "datawall: history in {} ({} days kept)",
                dir.display(),
                args.history_days
            );
            Some(tokio::spawn(history::run_checkpoints(
                Arc::clone(&hub),
                dir,
                args.history_days,
                shutdown_rx.clone(),
            )))
        }
        _ => None,
    };

    let source = match &args.replay {
        Some(path) => {
            let recording = source::read_recording(path)?;
            if recording.header.county_code != county.pack.manifest.county_code {
                anyhow::bail!(
                    "{} was recorded for county {}, but the pack is {}; pass the matching --pack",
                    path.display(),
                    recording.header.county_code,
                    county.pack.manifest.county_code
                );
            }
            eprintln!(
                "datawall: replaying {} ({} events) at {}x",
                path.display(),
                recording.events.len(),
                args.sim.speed
            );
            tokio::spawn(source::run_replay(
                Arc::clone(&hub),
                recording,
                args.sim.speed,
                shutdown_rx.clone(),
            ))
        }
        None => {
            let mut sim_cfg = args.sim.config();
            if let Some(dir) = &history_dir_for_source {
                sim_cfg.start_ms = history::simulator_start(dir, &sim_cfg)?;
            }
            if let Some(path) = &args.record {
                let w = source::create_recording(
                    path,
                    &source::simulator_header(&hub, sim_cfg.start_ms),
                )
                .with_context(|| format!("cannot create {}", path.display()))?;
                hub.set_recorder(w);
                eprintln!("datawall: recording to {}", path.display());
            }
            let mut start_ms = sim_cfg.start_ms;
            let mut sim = crate::sim::Simulator::new(Arc::clone(&county), sim_cfg);
            if let Some(at) = resumed_at {
                // Continuing a history: the simulation up to where it ended is already in the
                // model (run with the same --seed, --scale and --start-ms to continue it).
                let skipped = sim.advance_to(at).len();
                start_ms = start_ms.max(at);
                eprintln!(
                    "datawall: the simulator continues at the history's end ({skipped} events already kept)"
                );
            }
            eprintln!(
                "datawall: simulating {} at {}x (seed {})",
                county.pack.manifest.county_name, args.sim.speed, args.sim.seed
            );
            tokio::spawn(source::run_simulator(
                Arc::clone(&hub),
                sim,
                start_ms,
                args.sim.speed,
                commands_rx,
                shutdown_rx.clone(),
            ))
        }
    };
    eprintln!(
        "datawall: feed at {ws}://{addr}{} (bearer token required); health at {http}://{addr}/healthz, metrics at {http}://{addr}/metrics",
        crate::protocol::session::FEED_PATH
    );
    let server = tokio::spawn(gateway::serve(listener, Arc::clone(&hub), cfg, shutdown_rx));
    termination().await;
    eprintln!("datawall: shutting down (telling clients, draining)");
    shutdown.trigger();
    let _ = server.await;
    let _ = source.await;
    if let Some(c) = checkpoints {
        eprintln!("datawall: writing the last checkpoint of the history");
        let _ = c.await;
    }
    hub.finish_recorder().context("finishing the recording")?;
    Ok(())
}

/// 128 bits from the OS random source, as hex: a token nobody can guess.
pub fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What an embedded gateway serves.
pub enum EmbeddedSource {
    /// The live simulator at `speed`.
    Simulator {
        config: crate::sim::SimConfig,
        speed: f64,
    },
    /// A fixed set of events and a stopped clock (snapshots of a recording at a moment).
    Frozen {
        events: Vec<crate::protocol::Event>,
        clock_ms: crate::protocol::TimestampMs,
    },
    /// Like `Frozen`, then volunteer fixes at `rate` a second stamped with the system clock
    /// (`at_ms` = publish time): the wall measures event → pixel latency from them.
    Probe {
        events: Vec<crate::protocol::Event>,
        clock_ms: crate::protocol::TimestampMs,
        rate: f64,
    },
    /// Nothing publishes on its own: the caller publishes into [`Embedded::hub`] and moves
    /// the feed clock (`datawall soak` drives a simulated week this way).
    Driven {
        clock_ms: Arc<std::sync::atomic::AtomicI64>,
    },
    /// A state (a past moment rebuilt from a history) and a stopped clock.
    State {
        state: Box<crate::model::LiveState>,
        seq: crate::protocol::session::Seq,
        clock_ms: crate::protocol::TimestampMs,
    },
    /// A recording replayed at `speed`.
    Replay {
        recording: source::Recording,
        speed: f64,
    },
}

/// A gateway running on its own thread on 127.0.0.1 with a random token, for one wall.
pub struct Embedded {
    pub url: String,
    pub token: String,
    pub hub: Arc<Hub>,
    shutdown: Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Embedded {
    /// Stop serving (clients see the feed go down).
    pub fn stop(&self) {
        self.shutdown.trigger();
    }

    /// A closure that stops it, for callers that only hold a handle.
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let s = self.shutdown.clone();
        move || s.trigger()
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start an embedded gateway with its source; returns once it listens.
pub fn spawn_embedded(
    county: Arc<crate::model::County>,
    source: EmbeddedSource,
) -> Result<Embedded> {
    spawn_embedded_with(county, source, None)
}

/// Like [`spawn_embedded`], auditing the wall's commands to `audit_log`. The wall's token is
/// an operator's: the wall on its own gateway may command.
pub fn spawn_embedded_with(
    county: Arc<crate::model::County>,
    source: EmbeddedSource,
    audit_log: Option<std::path::PathBuf>,
) -> Result<Embedded> {
    spawn_embedded_keeping(county, source, audit_log, None)
}

/// Like [`spawn_embedded_with`], keeping a history in `history_dir` (a fresh one is expected:
/// the wall's timeline reads it through `GET /v1/history`).
pub fn spawn_embedded_keeping(
    county: Arc<crate::model::County>,
    source: EmbeddedSource,
    audit_log: Option<std::path::PathBuf>,
    history_dir: Option<std::path::PathBuf>,
) -> Result<Embedded> {
    let token = random_token().context("reading the OS random source for the wall's token")?;
    let (commands_tx, commands_rx) = tokio::sync::mpsc::channel(64);
    let platform = match &source {
        EmbeddedSource::Simulator { .. } => gateway::commands::Platform::Simulator(commands_tx),
        _ => gateway::commands::Platform::None,
    };
    let alerts = matches!(
        source,
        EmbeddedSource::Simulator { .. }
            | EmbeddedSource::Replay { .. }
            | EmbeddedSource::Driven { .. }
    );
    let mut cfg = GatewayConfig::new("");
    // The audit log and the acknowledgements name the wall's operator.
    cfg.tokens_file = Some(Arc::new(gateway::tokens::Tokens::single(
        "本机值班员 wall operator",
        gateway::tokens::Role::Operator,
        &token,
    )));
    cfg.commands = Some(command_desk(platform, audit_log.as_deref())?);
    let (hub, source) = match source {
        EmbeddedSource::State {
            state,
            seq,
            clock_ms,
        } => (
            Hub::resumed(
                county,
                HubConfig::default(),
                hub::random_epoch(),
                hub::Restore {
                    state: *state,
                    last_seq: seq,
                    stream_seq: 0,
                },
            ),
            EmbeddedSource::Frozen {
                events: Vec::new(),
                clock_ms,
            },
        ),
        other => match &history_dir {
            Some(dir) => {
                let (hub, writer) =
                    history::open_for_gateway(dir, 1, &county, HubConfig::default())?;
                hub.set_history(writer);
                (hub, other)
            }
            None => (Hub::new(county, HubConfig::default()), other),
        },
    };
    cfg.history_dir = history_dir.clone();
    let hub = Arc::new(hub);
    let (shutdown, shutdown_rx) = Shutdown::new();
    let (addr_tx, addr_rx) = std::sync::mpsc::sync_channel(1);
    let thread_hub = Arc::clone(&hub);
    let thread = std::thread::Builder::new()
        .name("datawall-gateway".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = addr_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = addr_tx.send(listener.local_addr().map_err(|e| e.to_string()));
                if let Some(dir) = history_dir {
                    tokio::spawn(history::run_checkpoints(
                        Arc::clone(&thread_hub),
                        dir,
                        1,
                        shutdown_rx.clone(),
                    ));
                }
                if alerts {
                    tokio::spawn(gateway::commands::run_alert_engine(
                        Arc::clone(&thread_hub),
                        gateway::commands::AlertSink::Hub,
                        shutdown_rx.clone(),
                    ));
                }
                let src = match source {
                    EmbeddedSource::Simulator { config, speed } => {
                        let start = config.start_ms;
                        let sim =
                            crate::sim::Simulator::new(Arc::clone(&thread_hub.county), config);
                        tokio::spawn(source::run_simulator(
                            Arc::clone(&thread_hub),
                            sim,
                            start,
                            speed,
                            commands_rx,
                            shutdown_rx.clone(),
                        ))
                    }
                    EmbeddedSource::Replay { recording, speed } => {
                        tokio::spawn(source::run_replay(
                            Arc::clone(&thread_hub),
                            recording,
                            speed,
                            shutdown_rx.clone(),
                        ))
                    }
                    EmbeddedSource::Frozen { events, clock_ms } => {
                        thread_hub.publish(events);
                        thread_hub.set_clock(Arc::new(move || clock_ms), 0.0);
                        tokio::spawn(async {})
                    }
                    // Made a `Frozen` source over a restored hub above.
                    EmbeddedSource::State { .. } => tokio::spawn(async {}),
                    EmbeddedSource::Driven { clock_ms } => {
                        thread_hub.set_clock(
                            Arc::new(move || clock_ms.load(std::sync::atomic::Ordering::Relaxed)),
                            0.0,
                        );
                        tokio::spawn(async {})
                    }
                    EmbeddedSource::Probe {
                        events,
                        clock_ms,
                        rate,
                    } => {
                        thread_hub.publish(events);
                        thread_hub.set_clock(Arc::new(move || clock_ms), 0.0);
                        tokio::spawn(source::run_probe(
                            Arc::clone(&thread_hub),
                            rate,
                            shutdown_rx.clone(),
                        ))
                    }
                };
                gateway::serve(listener, Arc::clone(&thread_hub), cfg, shutdown_rx).await;
                let _ = src.await;
            });
        })
        .context("starting the gateway thread")?;
    let addr = addr_rx
        .recv()
        .context("the gateway thread ended before listening")?
        .map_err(|e| anyhow::anyhow!("the embedded gateway could not start: {e}"))?;
    Ok(Embedded {
        url: format!("ws://{addr}{}", crate::protocol::session::FEED_PATH),
        token,
        hub,
        shutdown,
        thread: Some(thread),
    })
}
