//! Event → pixel latency (`datawall snapshot --probe-rate N`): the embedded gateway publishes
//! volunteer fixes stamped with the system clock at publish time; the wall notes the stamps of
//! the fixes each frame applies and, two frames later (when the frame that drew them has been
//! rendered and presented: rendering runs one frame behind the main world), takes
//! `now − stamp` as that event's latency.

use std::collections::VecDeque;

use bevy::prelude::*;

use super::feed::WallModel;
use crate::protocol::TimestampMs;

/// Latency samples, ms, and the stamps waiting for their frame to be drawn.
#[derive(Resource, Default)]
pub struct Latency {
    frame: u64,
    pending: VecDeque<(u64, Vec<TimestampMs>)>,
    /// Collect samples only while this is set (the snapshot's measuring window).
    pub measuring: bool,
    pub samples_ms: Vec<f64>,
}

/// After the drain: the stamps of the fixes applied this frame.
pub fn collect_stamps(mut model: ResMut<WallModel>, mut latency: ResMut<Latency>) {
    let Some(stamps) = model.latency_stamps.as_mut() else {
        return;
    };
    let stamps = std::mem::take(stamps);
    let frame = latency.frame;
    if !stamps.is_empty() {
        latency.pending.push_back((frame, stamps));
    }
}

/// At the start of a frame: stamps applied two frames ago have been drawn by now.
pub fn settle_stamps(mut latency: ResMut<Latency>) {
    latency.frame += 1;
    let now = crate::net::hub::system_now_ms();
    while latency
        .pending
        .front()
        .is_some_and(|(f, _)| f + 2 <= latency.frame)
    {
        let Some((_, stamps)) = latency.pending.pop_front() else {
            break;
        };
        if latency.measuring {
            let samples: Vec<f64> = stamps.iter().map(|&at| (now - at) as f64).collect();
            latency.samples_ms.extend(samples);
        }
    }
}
