//! Datawall: a real-time command-centre data wall for a county's grassroots governance.
//!
//! Layers, each depending only on the ones above it:
//!
//! ```text
//! protocol  wire events (serde only)                       src/protocol/
//! model     county pack, spatial index, live state, apply  src/model/
//! cli       subcommands behind the `datawall` binary       src/cli.rs
//! ```
//!
//! Coming with later work: `analytics` (polars KPIs), `net` (gateway and feed client),
//! `sim` (county simulator) and `wall` (bevy shell), as `docs/ARCHITECTURE.md` describes.

pub mod cli;
pub mod model;
pub mod protocol;
