//! The tokio side: the feed gateway (listener, handler, hub, metrics), its event sources and
//! the feed client.

pub mod client;
pub mod gateway;
pub mod hub;
pub mod metrics;
pub mod source;

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::cli::ServeArgs;
use gateway::{GatewayConfig, Shutdown};
use hub::{Hub, HubConfig};

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

/// `datawall serve`: gateway + simulator (or replay) until Ctrl-C / SIGTERM.
pub async fn serve_command(args: ServeArgs) -> Result<()> {
    if args.token.trim().is_empty() {
        anyhow::bail!("the token is empty: pass --token TOKEN or set DATAWALL_TOKEN");
    }
    // `--scale N` multiplies the grids (each split N ways) and the roster (N copies).
    let scale = args.sim.scale.round().clamp(1.0, 999.0) as u32;
    let pack = crate::cli::load_county(&args.pack)?.pack;
    let county = Arc::new(crate::model::scale::scaled_county(pack, scale, scale));
    let hub = Hub::new(
        Arc::clone(&county),
        HubConfig {
            ring_capacity: args.ring.max(1),
            ..Default::default()
        },
    );
    let hub = Arc::new(hub);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (in use? pick another with --listen)",
                args.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let mut cfg = GatewayConfig::new(args.token.clone());
    cfg.allowed_origins = args.allow_origins.clone();
    cfg.max_clients = args.max_clients;
    let (shutdown, shutdown_rx) = Shutdown::new();

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
            let sim_cfg = args.sim.config();
            if let Some(path) = &args.record {
                let w = source::create_recording(
                    path,
                    &source::simulator_header(&hub, sim_cfg.start_ms),
                )
                .with_context(|| format!("cannot create {}", path.display()))?;
                hub.set_recorder(w);
                eprintln!("datawall: recording to {}", path.display());
            }
            let start_ms = sim_cfg.start_ms;
            let sim = crate::sim::Simulator::new(Arc::clone(&county), sim_cfg);
            eprintln!(
                "datawall: simulating {} at {}x (seed {})",
                county.pack.manifest.county_name, args.sim.speed, args.sim.seed
            );
            tokio::spawn(source::run_simulator(
                Arc::clone(&hub),
                sim,
                start_ms,
                args.sim.speed,
                shutdown_rx.clone(),
            ))
        }
    };
    eprintln!(
        "datawall: feed at ws://{addr}{} (bearer token required); health at http://{addr}/healthz, metrics at http://{addr}/metrics",
        crate::protocol::session::FEED_PATH
    );
    let server = tokio::spawn(gateway::serve(listener, Arc::clone(&hub), cfg, shutdown_rx));
    termination().await;
    eprintln!("datawall: shutting down (telling clients, draining)");
    shutdown.trigger();
    let _ = server.await;
    let _ = source.await;
    hub.finish_recorder().context("finishing the recording")?;
    Ok(())
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
    let token = format!(
        "{:016x}",
        hub::system_now_ms() as u64 ^ (u64::from(std::process::id()) << 20) ^ 0x5eed_da7a_ba5e
    );
    let hub = Arc::new(Hub::new(county, HubConfig::default()));
    let (shutdown, shutdown_rx) = Shutdown::new();
    let (addr_tx, addr_rx) = std::sync::mpsc::sync_channel(1);
    let (thread_hub, thread_token) = (Arc::clone(&hub), token.clone());
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
                gateway::serve(
                    listener,
                    Arc::clone(&thread_hub),
                    GatewayConfig::new(thread_token),
                    shutdown_rx,
                )
                .await;
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
