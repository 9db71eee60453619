//! The after-action view of an incident (`R` on its panel, or its button): the timeline goes
//! to the incident's opening and plays on from there, while the responders' tracks grow on the
//! map up to the moment shown, each team's first arrival is marked with its time, and the
//! panel lists the teams against the target. The facts come from the gateway's history,
//! folded by [`crate::model::after_action`]. A leaf: it knows the feed model and the theme.

use bevy::prelude::*;
use bevy_egui::egui;

use super::feed::{FeedChannel, WallModel, request_after_action};
use super::nav::world;
use super::theme;
use crate::model::County;
use crate::model::after_action::{AfterAction, TeamPart};
use crate::model::sla::clock_text;
use crate::protocol::{IncidentId, TimestampMs};

/// An after-action asked for by a panel's button or a key, for [`open_requested`] to fetch.
#[derive(Resource, Default, Debug)]
pub struct Request(pub Option<IncidentId>);

/// "mm:ss" of a duration in seconds (minutes may pass 59).
pub fn mm_ss(secs: i64) -> String {
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// How a team did: its first arrival after the opening against the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Arrived within the target.
    InTime,
    /// Arrived after it.
    Late,
    /// Not (yet) arrived by the moment shown.
    NotArrived,
}

/// `team`'s verdict at `shown_ms` (an arrival after the moment shown is not known yet).
pub fn verdict(aa: &AfterAction, team: &TeamPart, shown_ms: TimestampMs) -> Verdict {
    match team.first_arrival {
        Some((t, _)) if t <= shown_ms => {
            if t - aa.opened_at_ms <= i64::from(aa.target_secs) * 1000 {
                Verdict::InTime
            } else {
                Verdict::Late
            }
        }
        _ => Verdict::NotArrived,
    }
}

/// A team's line in the panel and its label on the map.
pub fn team_label(
    county: &County,
    aa: &AfterAction,
    team: &TeamPart,
    shown_ms: TimestampMs,
) -> String {
    let name = county
        .team(team.team_id)
        .map_or_else(|| format!("队伍 {}", team.team_id), |t| t.name.clone());
    match (
        verdict(aa, team, shown_ms),
        team.arrival_secs(aa.opened_at_ms),
    ) {
        (Verdict::NotArrived, _) | (_, None) => format!("{name} 未到场 not on site"),
        (v, Some(s)) => format!(
            "{name} 到场 on site +{} {}",
            mm_ss(s),
            if v == Verdict::InTime {
                "✔"
            } else {
                "✖ 超时 late"
            }
        ),
    }
}

/// Take a requested after-action to the feed thread.
pub fn open_requested(
    mut request: ResMut<Request>,
    channel: Option<Res<FeedChannel>>,
    mut model: ResMut<WallModel>,
) {
    let (Some(id), Some(channel)) = (request.0.take(), channel) else {
        return;
    };
    request_after_action(&channel, &mut model, id);
}

/// The tracks up to the moment shown, in the team's colour, with the site and each arrival.
fn draw_tracks(
    model: Res<WallModel>,
    camera: Query<&Projection, With<super::nav::WallCamera>>,
    mut gizmos: Gizmos,
) {
    let Some(aa) = model.after_action.as_deref() else {
        return;
    };
    let scale = match camera.single() {
        Ok(Projection::Orthographic(o)) => o.scale,
        _ => 1.0,
    };
    let proj = model.county.pack.projection();
    let shown = model.now_ms();
    let site = world(&proj, aa.site);
    gizmos.circle_2d(
        Isometry2d::from_translation(site),
        14.0 * scale,
        theme::INCIDENT_DRILL,
    );
    gizmos.circle_2d(
        Isometry2d::from_translation(site),
        22.0 * scale,
        theme::INCIDENT_DRILL.with_alpha(0.5),
    );
    for t in &aa.tracks {
        let color = theme::team_color_bevy(t.team_id);
        let points: Vec<Vec2> = t
            .points
            .iter()
            .take_while(|(at, _)| *at <= shown)
            .map(|(_, p)| world(&proj, *p))
            .collect();
        if points.len() >= 2 {
            gizmos.linestrip_2d(points.iter().copied(), color);
        }
        if let Some(&start) = points.first() {
            gizmos.rect_2d(
                Isometry2d::from_translation(start),
                Vec2::splat(6.0 * scale),
                color,
            );
        }
        if let Some(&last) = points.last() {
            gizmos.circle_2d(Isometry2d::from_translation(last), 4.0 * scale, color);
        }
    }
}

/// The after-action's part of the incident panel; a click on the button asks for it when it
/// is not shown.
pub fn section_ui(
    ui: &mut egui::Ui,
    county: &County,
    model: &WallModel,
    id: IncidentId,
) -> Option<IncidentId> {
    let heading = |ui: &mut egui::Ui, s: String| {
        ui.label(
            egui::RichText::new(s)
                .size(theme::FONT_PANEL)
                .color(theme::ACCENT)
                .strong(),
        );
    };
    let small = |ui: &mut egui::Ui, s: String, c: egui::Color32| {
        ui.label(
            egui::RichText::new(s)
                .size(theme::FONT_PANEL_SMALL)
                .color(c),
        );
    };
    match model
        .after_action
        .as_deref()
        .filter(|a| a.incident_id == id)
    {
        Some(aa) => {
            let shown = model.now_ms();
            heading(ui, "复盘 after-action".into());
            small(
                ui,
                format!(
                    "开始 opened {} · 目标 target {} · {}",
                    clock_text(aa.opened_at_ms),
                    mm_ss(i64::from(aa.target_secs)),
                    match aa.closed_at_ms {
                        Some(c) => format!("结束 closed +{}", mm_ss((c - aa.opened_at_ms) / 1000)),
                        None => "进行中 still open".into(),
                    }
                ),
                theme::TEXT_DIM,
            );
            for team in &aa.teams {
                let color = match verdict(aa, team, shown) {
                    Verdict::InTime => theme::GOOD,
                    Verdict::Late => theme::BAD,
                    Verdict::NotArrived => theme::TEXT_DIM,
                };
                small(
                    ui,
                    format!(
                        "{} · 调派 sent +{} · {}/{} 人到场 on site",
                        team_label(county, aa, team, shown),
                        mm_ss((team.mobilized_at_ms - aa.opened_at_ms).max(0) / 1000),
                        team.arrived,
                        team.responders
                    ),
                    color,
                );
            }
            ui.separator();
            None
        }
        None if model.after_action_pending == Some(id) => {
            small(
                ui,
                "复盘 after-action: 读取历史 reading the history…".into(),
                theme::TEXT_DIM,
            );
            None
        }
        None => {
            let button = egui::Button::new(
                egui::RichText::new("复盘 after-action (R)").size(theme::FONT_PANEL_SMALL),
            );
            let asked = ui
                .add(button)
                .on_hover_text("从事件开始回放，显示各队轨迹与到场时间 replay from the opening with the teams' tracks and arrivals")
                .clicked();
            asked.then_some(id)
        }
    }
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Request>()
        .add_systems(Update, open_requested.in_set(super::nav::WallSet::Model))
        .add_systems(Update, draw_tracks.in_set(super::nav::WallSet::Draw));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_team_is_in_time_late_or_not_yet_there_at_the_moment_shown() {
        const M: TimestampMs = 60_000;
        let team = |id, arrival: Option<TimestampMs>| TeamPart {
            team_id: id,
            mobilized_at_ms: M,
            responders: 2,
            arrived: usize::from(arrival.is_some()),
            first_arrival: arrival.map(|t| (t, 7)),
        };
        let aa = AfterAction {
            incident_id: 1,
            title: "演练".into(),
            drill: true,
            site: crate::protocol::LonLat::new(106.5, 38.9),
            opened_at_ms: 0,
            target_secs: 900,
            closed_at_ms: None,
            teams: vec![team(1, Some(10 * M)), team(2, Some(20 * M)), team(3, None)],
            tracks: Vec::new(),
            until_ms: 30 * M,
        };
        let v = |i: usize, at| verdict(&aa, &aa.teams[i], at);
        // Exactly at the target is in time; a minute before the arrival, not there yet.
        assert_eq!(v(0, 30 * M), Verdict::InTime);
        assert_eq!(v(0, 9 * M), Verdict::NotArrived);
        assert_eq!(v(1, 30 * M), Verdict::Late);
        assert_eq!(v(2, 30 * M), Verdict::NotArrived);
        let on_time = AfterAction {
            teams: vec![team(1, Some(15 * M))],
            ..aa.clone()
        };
        assert_eq!(
            verdict(&on_time, &on_time.teams[0], 15 * M),
            Verdict::InTime
        );
    }

    #[test]
    fn durations_read_as_minutes_and_seconds() {
        assert_eq!(mm_ss(0), "0:00");
        assert_eq!(mm_ss(450), "7:30");
        assert_eq!(mm_ss(3_725), "62:05");
    }
}
