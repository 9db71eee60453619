//! Datawall: a real-time command-centre data wall for a county's grassroots governance.
//!
//! Layers, each depending only on the ones above it:
//!
//! ```text
//! protocol  wire events (serde only)                       src/protocol/
//! model     county pack, spatial index, live state, apply  src/model/
//! analytics polars: SLA roll-ups, KPIs, hourly series     src/analytics/  (feature `analytics`)
//! sim       deterministic county simulator (events)        src/sim/
//! net       tokio: gateway (listener, handler, hub), sources, feed client   src/net/
//! bench     `datawall bench`: figures users feel          src/bench/
//! wall      bevy shell: feed, map, volunteers, incidents,   src/wall/
//!           camera, ui (feature `wall`)
//! soak      `datawall soak`: a simulated week, memory sampled src/soak.rs  (feature `wall`)
//! cli       subcommands behind the `datawall` binary       src/cli.rs
//! ```
//!

#[cfg(feature = "analytics")]
pub mod analytics;
pub mod bench;
pub mod cli;
pub mod model;
pub mod net;
pub mod protocol;
pub mod serve;
pub mod sim;
#[cfg(feature = "wall")]
pub mod soak;
#[cfg(feature = "wall")]
pub mod wall;
