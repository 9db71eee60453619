//! `datawall serve` and `datawall sim --nats`: the command line's arguments turned into the
//! network's configuration types, and the processes run until Ctrl-C / SIGTERM. The network
//! layer (`net`) takes those types, never the command line's.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::cli::ServeArgs;
use crate::net::gateway::{self, GatewayConfig, Shutdown};
use crate::net::hub::{self, Hub, HubConfig};
use crate::net::{BackboneGateway, BackboneOptions, command_desk, history, producer, source, tls};

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

/// The audit log a gateway started by `args` writes.
fn audit_path(args: &ServeArgs) -> std::path::PathBuf {
    args.audit_log
        .clone()
        .unwrap_or_else(gateway::commands::default_audit_path)
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
        ring_max_bytes: args.ring_mb.max(1) << 20,
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
        ring_max_bytes: args.ring_mb.max(1) << 20,
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
    // The simulator, or a recording of it.
    cfg.simulated = true;
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
                let skipped = sim.advance_in_chunks(at, 50_000, drop);
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
