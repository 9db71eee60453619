//! Integration tests, one binary (each extra test binary would link every dependency again).

// A test's failure is a panic with its message.
#![allow(clippy::unwrap_used)]

/// As in the binary: `bench`'s memory figures count the heap each structure holds.
#[global_allocator]
static ALLOC: datawall::net::metrics::CountingAlloc = datawall::net::metrics::CountingAlloc;

mod after_action;
#[cfg(feature = "analytics")]
mod analytics;
mod architecture;
mod backbone;
mod bench;
mod commands;
mod common;
#[cfg(feature = "wall")]
mod faults;
mod gateway;
mod history;
mod hostile;
mod index;
mod model_apply;
mod pack;
#[cfg(feature = "wall")]
mod panels;
mod protocol;
#[cfg(feature = "wall")]
mod render;
mod replay;
mod sim;
#[cfg(feature = "wall")]
mod soak;
mod tls;
#[cfg(feature = "wall")]
mod wall_ecs;
