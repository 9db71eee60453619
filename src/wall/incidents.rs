//! Incidents: pulsing rings at the site, lines to the mobilized teams (drawn with gizmos:
//! a handful of shapes, rebuilt each frame).

use bevy::prelude::*;

use super::feed::WallModel;
use super::nav::Layers;
use super::nav::WallCamera;
use super::nav::world;
use super::theme;
use crate::protocol::Task;

fn draw_incidents(
    model: Res<WallModel>,
    layers: Res<Layers>,
    camera: Query<&Projection, With<WallCamera>>,
    time: Res<Time>,
    mut gizmos: Gizmos,
) {
    if !layers.incidents {
        return;
    }
    let Some(live) = model.live() else {
        return;
    };
    let scale = match camera.single() {
        Ok(Projection::Orthographic(o)) => o.scale,
        _ => 1.0,
    };
    let proj = model.county.pack.projection();
    let pulse = (time.elapsed_secs() * 3.0).sin() * 0.5 + 0.5;
    for inc in live.active_incidents() {
        let site = world(&proj, inc.pos);
        let color = if inc.drill {
            theme::INCIDENT_DRILL
        } else {
            theme::INCIDENT
        };
        // Rings sized in screen pixels so they read at any zoom.
        for (px, alpha) in [(10.0, 1.0), (18.0 + 14.0 * pulse, 1.0 - pulse * 0.8)] {
            gizmos.circle_2d(
                Isometry2d::from_translation(site),
                px * scale,
                color.with_alpha(alpha),
            );
        }
        for m in &inc.teams {
            // Toward the team's responders when any are out, else its home grid.
            let responders: Vec<Vec2> = live
                .volunteers
                .iter()
                .filter(|v| v.team_id == m.team_id && v.task == Some(Task::Incident(inc.id)))
                .filter_map(|v| v.pos.map(|p| world(&proj, p)))
                .collect();
            let from = if responders.is_empty() {
                model
                    .county
                    .team(m.team_id)
                    .and_then(|t| model.county.grid(t.home_grid_id))
                    .map(|g| world(&proj, g.label))
            } else {
                Some(responders.iter().copied().sum::<Vec2>() / responders.len() as f32)
            };
            if let Some(from) = from {
                gizmos.line_2d(from, site, theme::MOBILIZATION_LINE);
            }
        }
    }
}

pub(super) fn plugin(app: &mut App) {
    app.add_systems(Update, draw_incidents.in_set(super::nav::WallSet::Draw));
}
