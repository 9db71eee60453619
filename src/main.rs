//! The `datawall` binary: parse arguments, pick the mode, run.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    datawall::cli::run(datawall::cli::Cli::parse())
}
