//! The `datawall` binary: parse arguments, set up logging, run the chosen mode.

use clap::Parser;

/// Counts heap bytes for `datawall bench --only memory` (off otherwise: one relaxed load per
/// allocation).
#[global_allocator]
static ALLOC: datawall::net::metrics::CountingAlloc = datawall::net::metrics::CountingAlloc;

fn main() -> anyhow::Result<()> {
    datawall::net::metrics::CountingAlloc::installed();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DATAWALL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    datawall::cli::run(datawall::cli::Cli::parse())
}
