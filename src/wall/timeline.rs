//! The timeline, by keys: `,` ten minutes back, `.` ten minutes on (back to live when it
//! reaches now), `L` live at once. The moment comes from the gateway's history
//! (`GET /v1/history`); the live feed goes on being applied underneath.

use bevy::prelude::*;

use super::feed::{FeedChannel, WallModel, request_moment};
use crate::protocol::TimestampMs;

/// One step of `,` and `.`, feed time.
pub const STEP_MS: TimestampMs = 10 * 60_000;

/// Where a key takes the timeline: `Some(t)` a moment to fetch, `None` live.
pub fn step(shown_ms: TimestampMs, live_ms: TimestampMs, back: bool) -> Option<TimestampMs> {
    let t = if back {
        shown_ms - STEP_MS
    } else {
        shown_ms + STEP_MS
    };
    (t < live_ms).then_some(t)
}

pub fn timeline_keys(
    keys: Res<ButtonInput<KeyCode>>,
    channel: Option<Res<FeedChannel>>,
    mut model: ResMut<WallModel>,
    egui_input: Option<Res<bevy_egui::input::EguiWantsInput>>,
) {
    if egui_input.is_some_and(|e| e.wants_keyboard_input()) {
        return;
    }
    let Some(channel) = channel else { return };
    if keys.just_pressed(KeyCode::KeyL) {
        model.leave_replay();
        return;
    }
    let back = keys.just_pressed(KeyCode::Comma);
    if !back && !keys.just_pressed(KeyCode::Period) {
        return;
    }
    let live_ms = model.clock.map_or_else(|| model.now_ms(), |c| c.now_ms());
    let shown = model
        .replay_pending
        .or(model.replay.as_ref().map(|r| r.at_ms))
        .unwrap_or(live_ms);
    match step(shown, live_ms, back) {
        Some(t) => request_moment(&channel, &mut model, t),
        None => model.leave_replay(),
    }
}

pub(super) fn plugin(app: &mut App) {
    app.add_systems(Update, timeline_keys.in_set(super::WallSet::Model));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_step_ten_minutes_and_reach_live() {
        let now = 1_000 * 60_000;
        assert_eq!(step(now, now, true), Some(now - 10 * 60_000));
        assert_eq!(step(now - 30 * 60_000, now, false), Some(now - 20 * 60_000));
        // Ten minutes on from five minutes ago is past now: live.
        assert_eq!(step(now - 5 * 60_000, now, false), None);
    }
}
