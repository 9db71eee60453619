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
    let roster_scale = args.sim.scale.round().max(1.0) as u32;
    let pack = crate::cli::load_county(&args.pack)?.pack;
    let county = Arc::new(crate::model::County::with_roster_scale(pack, roster_scale));
    let mut hub = Hub::new(
        Arc::clone(&county),
        HubConfig {
            ring_capacity: args.ring.max(1),
            ..Default::default()
        },
    );
    hub.roster_scale = roster_scale;
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
