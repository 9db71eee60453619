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

use gateway::{GatewayConfig, Shutdown};
use hub::{Hub, HubConfig};

/// The command desk of a gateway whose platform is `platform`, auditing to `audit_log`.
pub(crate) fn command_desk(
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

/// Settings of a gateway on a backbone beyond [`GatewayConfig`].
#[derive(Clone, Debug)]
pub struct BackboneOptions {
    pub ring: usize,
    /// The most bytes the ring may take ([`HubConfig::ring_max_bytes`]).
    pub ring_max_bytes: usize,
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
                ring_max_bytes: options.ring_max_bytes,
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
    // Everything but a moment read from a history is made here: say so.
    cfg.simulated = !matches!(source, EmbeddedSource::State { .. });
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
    // A wall in this process shares this gateway's ticket records.
    hub::register_local(&hub);
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
