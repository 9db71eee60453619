//! Event → pixel latency (`datawall snapshot --probe-rate N`): the embedded gateway publishes
//! volunteer fixes stamped with the system clock at publish time; the wall notes the stamps of
//! the fixes each frame applies, the render world notes when each frame has been drawn
//! (offscreen: the GPU has finished it; in a window: submitted for presentation), and
//! `drawn − stamp` is that event's latency.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bevy::diagnostic::FrameCount;
use bevy::prelude::*;

use super::feed::WallModel;
use crate::protocol::TimestampMs;

/// Frames the render world has finished: (main-world frame number, system clock ms), shared
/// between the two worlds.
#[derive(Resource, Clone, Default)]
pub struct DrawnFrames(Arc<Mutex<VecDeque<(u32, TimestampMs)>>>);

impl DrawnFrames {
    /// The render world finished drawing the main world's frame `frame` now.
    pub fn note(&self, frame: u32) {
        let now = crate::net::hub::system_now_ms();
        if let Ok(mut q) = self.0.lock() {
            if q.len() >= 1024 {
                q.pop_front();
            }
            q.push_back((frame, now));
        }
    }

    fn take(&self) -> Vec<(u32, TimestampMs)> {
        self.0
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }
}

/// Latency samples, ms, and the stamps waiting for their frame to be drawn.
#[derive(Resource, Default)]
pub struct Latency {
    pending: VecDeque<(u32, Vec<TimestampMs>)>,
    /// Collect samples only while this is set (the snapshot's measuring window).
    pub measuring: bool,
    pub samples_ms: Vec<f64>,
}

/// After the drain: the stamps of the fixes applied this frame.
pub fn collect_stamps(
    mut model: ResMut<WallModel>,
    mut latency: ResMut<Latency>,
    frame: Res<FrameCount>,
) {
    collect_for(&mut model, &mut latency, frame.0);
}

/// The stamps of the fixes applied since the last call, drawn in the main world's `frame`.
pub fn collect_for(model: &mut WallModel, latency: &mut Latency, frame: u32) {
    let Some(stamps) = model.latency_stamps.as_mut() else {
        return;
    };
    let stamps = std::mem::take(stamps);
    if !stamps.is_empty() {
        latency.pending.push_back((frame, stamps));
    }
}

/// At the start of a frame: stamps whose frame has been drawn become samples.
pub fn settle_stamps(mut latency: ResMut<Latency>, drawn: Res<DrawnFrames>) {
    for (done, at) in drawn.take() {
        // Frame `f` is drawn once `done` has reached it (frame numbers wrap).
        while latency
            .pending
            .front()
            .is_some_and(|(f, _)| done.wrapping_sub(*f) < u32::MAX / 2)
        {
            let Some((_, stamps)) = latency.pending.pop_front() else {
                break;
            };
            if latency.measuring {
                let samples: Vec<f64> = stamps.iter().map(|&s| (at - s) as f64).collect();
                latency.samples_ms.extend(samples);
            }
        }
    }
}
