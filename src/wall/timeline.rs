//! The timeline, by keys: `,` ten minutes back, `.` ten minutes on (back to live when it
//! reaches now), `]` plays on faster (1×, 2×, 5×, 10×, 30×, 60×), `[` slower down to paused,
//! `L` live at once. The moment comes from the gateway's history (`GET /v1/history`, with the
//! events of the next minutes for playback); the live feed goes on being applied underneath.

use bevy::prelude::*;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::feed::{FeedChannel, WallModel, request_moment};
use super::theme;
use crate::model::sla::clock_text;
use crate::protocol::TimestampMs;

/// One step of `,` and `.`, feed time.
pub const STEP_MS: TimestampMs = 10 * 60_000;

/// Playback speeds `]` and `[` step through (0: paused).
pub const SPEEDS: [f64; 7] = [0.0, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// The next speed up or down from `speed`.
pub fn next_speed(speed: f64, faster: bool) -> f64 {
    let i = SPEEDS.iter().rposition(|s| *s <= speed).unwrap_or(0);
    if faster {
        SPEEDS[(i + 1).min(SPEEDS.len() - 1)]
    } else {
        SPEEDS[i.saturating_sub(1)]
    }
}

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
    mut go_to: ResMut<super::notes::GoTo>,
    egui_input: Option<Res<bevy_egui::input::EguiWantsInput>>,
) {
    // A note clicked in a panel or on the time bar: its moment.
    if let Some(t) = go_to.0.take()
        && let Some(channel) = channel.as_deref()
    {
        request_moment(channel, &mut model, t);
        return;
    }
    if egui_input.is_some_and(|e| e.wants_keyboard_input()) {
        return;
    }
    let Some(channel) = channel else { return };
    if keys.just_pressed(KeyCode::KeyL) {
        model.leave_replay();
        return;
    }
    for (key, faster) in [(KeyCode::BracketRight, true), (KeyCode::BracketLeft, false)] {
        if keys.just_pressed(key)
            && let Some(r) = model.replay.as_mut()
        {
            r.speed = next_speed(r.speed, faster);
        }
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

/// Play the moment on at its speed; fetch the next stretch at the end of what was fetched;
/// back to live when it reaches now.
pub fn timeline_play(
    time: Res<Time<Real>>,
    channel: Option<Res<FeedChannel>>,
    mut model: ResMut<WallModel>,
) {
    let Some(speed) = model.replay.as_ref().map(|r| r.speed) else {
        return;
    };
    if speed <= 0.0 || model.replay_pending.is_some() {
        return;
    }
    let by = (time.delta_secs_f64() * 1000.0 * speed) as TimestampMs;
    let at_end = model.advance_replay(by);
    let (at, live_ms) = (
        model.replay.as_ref().map_or(0, |r| r.at_ms),
        model.clock.map_or(0, |c| c.now_ms()),
    );
    if at >= live_ms {
        model.leave_replay();
    } else if at_end && let Some(channel) = channel {
        request_moment(&channel, &mut model, at);
    }
}

/// How long ago, for the time bar's left end ("24 h 前 ago").
pub fn ago_text(ms: TimestampMs) -> String {
    if ms >= 3_600_000 {
        format!("{:.0} h 前 ago", ms as f64 / 3_600_000.0)
    } else {
        format!("{} 分钟前 min ago", ms / 60_000)
    }
}

/// The time bar while replaying: from where the history begins to now, the moment shown on it;
/// dragging it (or clicking) goes to that moment, to the right end back to live.
pub fn timeline_bar(
    mut contexts: EguiContexts,
    channel: Option<Res<FeedChannel>>,
    mut model: ResMut<WallModel>,
    layout: Option<Res<super::layout::Layout>>,
) -> Result {
    let Some(r) = model.replay.as_ref() else {
        return Ok(());
    };
    let live_ms = model.clock.map_or(r.at_ms, |c| c.now_ms()).max(r.at_ms);
    let first = r.first_ms.min(r.at_ms);
    let (mut at, speed) = (r.at_ms, r.speed);
    let notes = model.mirror.state.as_ref().map(|s| &s.annotations);
    let ctx = contexts.ctx_mut()?;
    // Right of the legend (bottom left), below the map.
    let viewport = ctx.viewport_rect().width();
    let area = egui::Area::new("timeline".into());
    // On a spliced wall: inside the map's bottom-right panel.
    let (area, width) = match layout.as_deref().filter(|l| l.wall) {
        Some(l) => {
            let d = l.dock(super::layout::Dock::BottomRight);
            (
                area.pivot(egui::Align2::RIGHT_BOTTOM)
                    .fixed_pos(d.right_bottom()),
                (d.width() - 560.0).max(200.0),
            )
        }
        None => (
            area.anchor(
                egui::Align2::CENTER_BOTTOM,
                egui::vec2(viewport * 0.1, -16.0),
            ),
            (viewport * 0.28).max(240.0),
        ),
    };
    let mut jump = None;
    area.order(egui::Order::Foreground).show(ctx, |ui| {
        egui::Frame::default()
            .fill(theme::PANEL_BG)
            .inner_margin(egui::Margin::symmetric(16, 10))
            .corner_radius(4.0)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    let dim = |s: String| egui::RichText::new(s).color(theme::TEXT_DIM);
                    ui.label(dim(ago_text(live_ms - first)));
                    ui.spacing_mut().slider_width = width;
                    let bar = ui.add(egui::Slider::new(&mut at, first..=live_ms).show_value(false));
                    if bar.drag_stopped() || (bar.changed() && !bar.dragged()) {
                        jump = Some(at);
                    }
                    if let Some(t) = note_marks(ui, bar.rect, first, live_ms, notes) {
                        jump = Some(t);
                    }
                    ui.label(dim(format!("{} 实时 live", clock_text(live_ms))));
                    ui.label(
                        egui::RichText::new(format!(
                            "⏪ {} {} · , . [ ] L",
                            clock_text(at),
                            if speed > 0.0 {
                                format!("×{speed}")
                            } else {
                                "⏸".into()
                            }
                        ))
                        .color(theme::WARN)
                        .strong(),
                    );
                });
            });
    });
    match (jump, channel) {
        (Some(t), _) if t >= live_ms => model.leave_replay(),
        (Some(t), Some(channel)) => request_moment(&channel, &mut model, t),
        _ => {}
    }
    Ok(())
}

/// Where on a bar from `first` to `last` (`left`..`right`, pixels) a moment falls.
pub fn mark_x(t: TimestampMs, first: TimestampMs, last: TimestampMs, left: f32, right: f32) -> f32 {
    let span = (last - first).max(1) as f64;
    let f = ((t - first) as f64 / span).clamp(0.0, 1.0);
    left + (f64::from(right - left) * f) as f32
}

/// A mark above the time bar for each note whose moment is on it; hovering shows the note, a
/// click asks for its moment.
fn note_marks(
    ui: &mut egui::Ui,
    bar: egui::Rect,
    first: TimestampMs,
    last: TimestampMs,
    notes: Option<&std::collections::BTreeMap<String, crate::protocol::entities::Annotation>>,
) -> Option<TimestampMs> {
    let mut go = None;
    // The slider's ends sit half a handle inside its rectangle.
    let (left, right) = (
        bar.left() + bar.height() / 2.0,
        bar.right() - bar.height() / 2.0,
    );
    for n in notes?.values() {
        if n.moment_ms < first || n.moment_ms > last {
            continue;
        }
        let x = mark_x(n.moment_ms, first, last, left, right);
        let tip = egui::pos2(x, bar.top());
        let rect =
            egui::Rect::from_center_size(tip + egui::vec2(0.0, -7.0), egui::vec2(12.0, 14.0));
        ui.painter().add(egui::Shape::convex_polygon(
            vec![
                tip,
                tip + egui::vec2(-5.0, -8.0),
                tip + egui::vec2(0.0, -14.0),
                tip + egui::vec2(5.0, -8.0),
            ],
            theme::NOTE,
            egui::Stroke::NONE,
        ));
        let id = ui.id().with(("note_mark", &n.id));
        let hit = ui
            .interact(rect, id, egui::Sense::click())
            .on_hover_text(format!(
                "{} · {} · {}",
                clock_text(n.moment_ms),
                n.by,
                n.text
            ));
        if hit.clicked() {
            go = Some(n.moment_ms);
        }
    }
    go
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<super::notes::GoTo>();
    app.add_systems(
        Update,
        (timeline_keys, timeline_play)
            .chain()
            .in_set(super::nav::WallSet::Model),
    )
    .add_systems(
        EguiPrimaryContextPass,
        timeline_bar.after(super::ui::wall_ui),
    );
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

    #[test]
    fn marks_fall_where_their_moment_is_on_the_bar() {
        let (first, last) = (1_000, 11_000);
        assert_eq!(mark_x(1_000, first, last, 100.0, 300.0), 100.0);
        assert_eq!(mark_x(6_000, first, last, 100.0, 300.0), 200.0);
        assert_eq!(mark_x(11_000, first, last, 100.0, 300.0), 300.0);
        // Outside the bar: held at its ends.
        assert_eq!(mark_x(0, first, last, 100.0, 300.0), 100.0);
    }

    #[test]
    fn the_bar_starts_so_long_ago() {
        assert_eq!(ago_text(24 * 3_600_000), "24 h 前 ago");
        assert_eq!(ago_text(90 * 60_000), "2 h 前 ago");
        assert_eq!(ago_text(45 * 60_000), "45 分钟前 min ago");
    }

    #[test]
    fn speeds_go_up_to_sixty_and_down_to_paused() {
        assert_eq!(next_speed(0.0, true), 1.0);
        assert_eq!(next_speed(1.0, true), 2.0);
        assert_eq!(next_speed(60.0, true), 60.0);
        assert_eq!(next_speed(10.0, false), 5.0);
        assert_eq!(next_speed(1.0, false), 0.0);
        assert_eq!(next_speed(0.0, false), 0.0);
    }
}
