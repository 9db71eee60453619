//! Kiosk tour and selection highlight. After some idle minutes the wall tours the communities
//! that need attention (most overdue / at risk first), pausing on each; any operator input
//! stops it; a new incident or a burst of breaches pre-empts it and flashes the place.
//! The tour's decisions are a pure function of times and figures ([`Tour::step`]).

use std::time::{Duration, Instant};

use bevy::prelude::*;

use super::camera::{FlyTo, LastInput};
use super::feed::WallModel;
use super::nav::Drill;
use super::nav::Focus;
use super::nav::UiCommand;
use super::nav::WallCamera;
use super::nav::world;
use super::panels::{Toast, focus_points};
use super::stats::Stats;
use super::theme;

/// This many more overdue tickets since the last look is a burst.
pub const BREACH_BURST: u32 = 5;
/// How long a flash lasts.
pub const FLASH: Duration = Duration::from_secs(8);

/// Tour settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TourConfig {
    /// Idle time before the tour starts; zero turns it off.
    pub idle_after: Duration,
    /// Pause on each stop.
    pub dwell: Duration,
    /// Communities per round.
    pub stops: usize,
}

impl Default for TourConfig {
    fn default() -> Self {
        Self {
            idle_after: Duration::from_secs(5 * 60),
            dwell: Duration::from_secs(15),
            stops: 6,
        }
    }
}

/// What the tour wants the wall to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TourAction {
    /// Fly to and open this.
    Show(Focus),
    /// Fly to, open and flash this (pre-emption).
    Flash(Focus),
    /// The operator is back: the tour ended.
    Stop,
}

/// The tour's state.
#[derive(Resource, Clone, Debug, Default)]
pub struct Tour {
    pub config: TourConfig,
    pub active: bool,
    next_stop: usize,
    next_at: Duration,
    last_overdue: Option<u32>,
}

impl Tour {
    pub fn new(config: TourConfig) -> Self {
        Self {
            config,
            ..Default::default()
        }
    }

    /// One decision at `now` (wall time since start) with the operator idle for `idle`.
    /// `ranking`: community slots neediest first; `overdue`: the county's overdue count;
    /// `new_incident`: an incident that opened since the last step.
    pub fn step(
        &mut self,
        now: Duration,
        idle: Duration,
        ranking: &[usize],
        overdue: Option<u32>,
        new_incident: Option<Focus>,
    ) -> Option<TourAction> {
        if self.config.idle_after.is_zero() {
            return None;
        }
        if idle < self.config.idle_after {
            let was = std::mem::replace(&mut self.active, false);
            return was.then_some(TourAction::Stop);
        }
        if !self.active {
            self.active = true;
            self.next_stop = 0;
            self.next_at = now;
            self.last_overdue = overdue;
        }
        let burst = match (self.last_overdue, overdue) {
            (Some(before), Some(now)) => now >= before + BREACH_BURST,
            _ => false,
        };
        if overdue.is_some() {
            self.last_overdue = overdue;
        }
        let hold = now + self.config.dwell * 2;
        if let Some(f) = new_incident {
            self.next_at = hold;
            return Some(TourAction::Flash(f));
        }
        if burst && let Some(&c) = ranking.first() {
            self.next_at = hold;
            return Some(TourAction::Flash(Focus::Community(c)));
        }
        if now < self.next_at || ranking.is_empty() {
            return None;
        }
        let stops = ranking.len().min(self.config.stops.max(1));
        let slot = ranking[self.next_stop % stops];
        self.next_stop += 1;
        self.next_at = now + self.config.dwell;
        Some(TourAction::Show(Focus::Community(slot)))
    }
}

/// A place flashing on the map until `until`.
#[derive(Resource, Default)]
pub struct Flash(pub Option<(Focus, Instant)>);

/// Drive the tour from the wall's clock, input and feed.
#[allow(clippy::too_many_arguments)]
fn run_tour(
    mut tour: ResMut<Tour>,
    time: Res<Time<Real>>,
    last_input: Res<LastInput>,
    model: Res<WallModel>,
    stats: Res<Stats>,
    mut drill: ResMut<Drill>,
    mut fly: ResMut<FlyTo>,
    mut flash: ResMut<Flash>,
    mut toast: ResMut<Toast>,
    mut seen_alerts: Local<Option<i64>>,
) {
    let now = time.elapsed();
    let idle = last_input.0.map_or(now, |t| t.elapsed());
    // Incidents that opened since the last look (the first look only marks the place).
    let newest = model.alerts.back().map(|a| a.at_ms);
    let new_incident = match *seen_alerts {
        Some(seen) => model
            .alerts
            .iter()
            .rev()
            .take_while(|a| a.at_ms > seen)
            .find(|a| a.incident_opened)
            .map(|a| a.focus),
        None => None,
    };
    if newest.is_some() {
        *seen_alerts = newest;
    } else if seen_alerts.is_none() {
        *seen_alerts = Some(i64::MIN);
    }
    let Some(a) = stats.latest.as_ref() else {
        return;
    };
    let ranking: Vec<usize> = {
        let needy: Vec<usize> = a
            .ranking()
            .into_iter()
            .filter(|&c| a.communities[c].overdue + a.communities[c].at_risk > 0)
            .collect();
        if needy.is_empty() { a.ranking() } else { needy }
    };
    let action = tour.step(now, idle, &ranking, Some(a.county.overdue), new_incident);
    let was_active = tour.active;
    let show = |f: Focus, drill: &mut Drill, fly: &mut FlyTo| {
        drill.apply(UiCommand::Open(f), &model.county, model.live());
        fly.to(
            focus_points(f, &model.county, model.live()),
            &model.county,
            false,
        );
    };
    match action {
        Some(TourAction::Show(f)) => {
            if drill.path.is_empty() && was_active && tour_just_started(&tour) {
                toast.show(format!(
                    "导览 tour: 空闲 {} 分钟，巡视需关注的社区 · idle, touring communities that need attention (any key stops)",
                    tour.config.idle_after.as_secs() / 60
                ));
            }
            show(f, &mut drill, &mut fly);
        }
        Some(TourAction::Flash(f)) => {
            show(f, &mut drill, &mut fly);
            flash.0 = Some((f, Instant::now() + FLASH));
        }
        Some(TourAction::Stop) => toast.show("导览已停止 tour stopped"),
        None => {}
    }
}

fn tour_just_started(tour: &Tour) -> bool {
    tour.next_stop == 1
}

/// Outline the selected community and grid, ring a selected point, flash pre-empted places.
fn draw_selection(
    drill: Res<Drill>,
    model: Res<WallModel>,
    flash: Res<Flash>,
    camera: Query<&Projection, With<WallCamera>>,
    time: Res<Time>,
    mut gizmos: Gizmos,
) {
    let scale = match camera.single() {
        Ok(Projection::Orthographic(o)) => o.scale,
        _ => 1.0,
    };
    let proj = model.county.pack.projection();
    let live = model.live();
    let outline = |gizmos: &mut Gizmos, f: Focus, color: Color| {
        let pts: Vec<Vec2> = focus_points(f, &model.county, live)
            .into_iter()
            .map(|p| world(&proj, p))
            .collect();
        match pts.len() {
            0 => {}
            1 => {
                gizmos.circle_2d(Isometry2d::from_translation(pts[0]), 14.0 * scale, color);
            }
            _ => {
                gizmos.linestrip_2d(pts, color);
            }
        }
    };
    for f in &drill.path {
        // A team: each grid of its area outlined in the team's colour, rings on its members.
        if let Focus::Team(t) = f {
            let color = theme::team_color_bevy(*t);
            for g in super::panels::team_area(&model.county, *t) {
                let ring = super::panels::focus_points(Focus::Grid(g), &model.county, live);
                gizmos.linestrip_2d(ring.into_iter().map(|p| world(&proj, p)), color);
            }
            for v in live.into_iter().flat_map(|l| l.volunteers.iter()) {
                if let (true, Some(p)) = (v.team_id == *t, v.pos) {
                    let at = Isometry2d::from_translation(world(&proj, p));
                    gizmos.circle_2d(at, 10.0 * scale, color);
                }
            }
            continue;
        }
        let color = match f {
            Focus::Community(_) => theme::SELECT_COMMUNITY,
            _ => theme::SELECT,
        };
        outline(&mut gizmos, *f, color);
    }
    if let Some((f, until)) = flash.0
        && Instant::now() < until
    {
        let pulse = (time.elapsed_secs() * 6.0).sin() * 0.5 + 0.5;
        let pts: Vec<Vec2> = focus_points(f, &model.county, live)
            .into_iter()
            .map(|p| world(&proj, p))
            .collect();
        if let Some(c) = super::camera::Frame::of_points(pts.iter().copied()) {
            let centre = (c.min + c.max) / 2.0;
            let r = ((c.max - c.min).length() / 2.0).max(20.0 * scale);
            for k in [1.0, 1.25 + 0.35 * pulse] {
                gizmos.circle_2d(
                    Isometry2d::from_translation(centre),
                    r * k,
                    theme::FLASH.with_alpha(1.0 - 0.6 * pulse),
                );
            }
        }
    }
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<Flash>()
        .add_systems(
            Update,
            run_tour
                .in_set(super::nav::WallSet::Input)
                .after(super::camera::click_pick),
        )
        .add_systems(Update, draw_selection.in_set(super::nav::WallSet::Draw));
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn tour() -> Tour {
        Tour::new(TourConfig {
            idle_after: 60 * S,
            dwell: 10 * S,
            stops: 3,
        })
    }

    #[test]
    fn starts_after_idle_cycles_the_neediest_and_stops_on_input() {
        let mut t = tour();
        let ranking = [4, 2, 7, 9];
        assert_eq!(
            t.step(30 * S, 30 * S, &ranking, Some(3), None),
            None,
            "not idle long enough"
        );
        let show = |c| Some(TourAction::Show(Focus::Community(c)));
        assert_eq!(t.step(60 * S, 60 * S, &ranking, Some(3), None), show(4));
        assert_eq!(
            t.step(65 * S, 65 * S, &ranking, Some(3), None),
            None,
            "pausing"
        );
        assert_eq!(t.step(70 * S, 70 * S, &ranking, Some(3), None), show(2));
        assert_eq!(t.step(80 * S, 80 * S, &ranking, Some(3), None), show(7));
        assert_eq!(
            t.step(90 * S, 90 * S, &ranking, Some(3), None),
            show(4),
            "three stops a round"
        );
        assert_eq!(
            t.step(91 * S, Duration::ZERO, &ranking, Some(3), None),
            Some(TourAction::Stop)
        );
        assert!(!t.active);
        assert_eq!(t.step(92 * S, 1 * S, &ranking, Some(3), None), None);
    }

    #[test]
    fn incidents_and_breach_bursts_pre_empt_the_tour() {
        let mut t = tour();
        let ranking = [4, 2];
        t.step(60 * S, 60 * S, &ranking, Some(3), None);
        let fire = Focus::Incident(77);
        assert_eq!(
            t.step(61 * S, 61 * S, &ranking, Some(3), Some(fire)),
            Some(TourAction::Flash(fire))
        );
        // It holds on the incident for two dwells.
        assert_eq!(t.step(75 * S, 75 * S, &ranking, Some(3), None), None);
        assert_eq!(
            t.step(81 * S, 81 * S, &ranking, Some(3), None),
            Some(TourAction::Show(Focus::Community(2)))
        );
        assert_eq!(
            t.step(82 * S, 82 * S, &ranking, Some(4), None),
            None,
            "one more breach is not a burst"
        );
        assert_eq!(
            t.step(83 * S, 83 * S, &ranking, Some(4 + BREACH_BURST), None),
            Some(TourAction::Flash(Focus::Community(4)))
        );
    }

    #[test]
    fn zero_idle_time_turns_the_tour_off() {
        let mut t = Tour::new(TourConfig {
            idle_after: Duration::ZERO,
            ..Default::default()
        });
        assert_eq!(t.step(3_600 * S, 3_600 * S, &[1], Some(0), None), None);
    }
}
