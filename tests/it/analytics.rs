//! Analytics: polars figures against hand-computed fixtures, against the plain-Rust reference
//! on a generated 1M-ticket table, and on a simulated county's live state.

use datawall::analytics::{self, Figures, TicketColumns, TicketRow, reference};
use datawall::model::LiveState;
use datawall::model::rng::Rng;
use datawall::model::sla::local_day_start_ms;
use datawall::sim::{SimConfig, Simulator};

use crate::common::county;

const H: i64 = 3_600_000;
const M: i64 = 60_000;

/// 10:00 local time on 2025-11-26: the day started ten hours ago.
fn ten_am() -> i64 {
    local_day_start_ms(1_764_140_400_000) + 10 * H
}

#[allow(clippy::too_many_arguments)]
fn row(
    grid: Option<u32>,
    community: Option<u32>,
    opened: i64,
    deadline: i64,
    dispatched: Option<i64>,
    resolved: Option<i64>,
    satisfaction: Option<i32>,
) -> TicketRow {
    TicketRow {
        grid,
        community,
        open: resolved.is_none(),
        opened_at_ms: opened,
        deadline_ms: deadline,
        dispatched_at_ms: dispatched,
        resolved_at_ms: resolved,
        satisfaction,
        pos_m: [0.0, 0.0],
        priority: datawall::protocol::Priority::Normal,
    }
}

fn fixture(now: i64) -> TicketColumns {
    let mut c = TicketColumns::default();
    // 1: overdue, dispatched after 10 min.
    c.push(row(
        Some(0),
        Some(0),
        now - H,
        now - 10 * M,
        Some(now - 50 * M),
        None,
        None,
    ));
    // 2: at risk (20 min left), not dispatched.
    c.push(row(
        Some(0),
        Some(0),
        now - 2 * H,
        now + 20 * M,
        None,
        None,
        None,
    ));
    // 3: open since yesterday, plenty of time.
    c.push(row(
        Some(1),
        Some(0),
        now - 30 * H,
        now + 5 * H,
        None,
        None,
        None,
    ));
    // 4: resolved today, an hour late, rated 4.
    c.push(row(
        Some(1),
        Some(0),
        now - 3 * H,
        now - 2 * H,
        Some(now - 150 * M),
        Some(now - H),
        Some(4),
    ));
    // 5: resolved today on time, rated 2.
    c.push(row(
        Some(2),
        Some(1),
        now - 4 * H,
        now + H,
        Some(now - 4 * H + 6 * M),
        Some(now - 2 * H),
        Some(2),
    ));
    // 6: outside every grid: county only.
    c.push(row(None, None, now - 5 * M, now + 2 * H, None, None, None));
    // 7: resolved yesterday evening: only the hourly series sees it.
    c.push(row(
        Some(2),
        Some(1),
        now - 26 * H,
        now - 22 * H,
        Some(now - 25 * H),
        Some(now - 20 * H),
        Some(5),
    ));
    c
}

#[test]
fn fixture_figures_match_hand_computed_values() {
    let now = ten_am();
    let a = analytics::compute(fixture(now), now, 3, 4).unwrap();
    assert_eq!(a.rows, 7);
    assert_eq!(
        a.county,
        Figures {
            open: 4,
            overdue: 1,
            at_risk: 1,
            opened_today: 5,
            resolved_today: 2,
            median_response_secs: Some(600.0),
            median_resolution_secs: Some(7200.0),
            on_time_rate: Some(0.5),
            satisfaction: Some(3.0),
        }
    );
    assert_eq!(
        a.communities[0],
        Figures {
            open: 3,
            overdue: 1,
            at_risk: 1,
            opened_today: 3,
            resolved_today: 1,
            median_response_secs: Some(1200.0),
            median_resolution_secs: Some(7200.0),
            on_time_rate: Some(0.0),
            satisfaction: Some(4.0),
        }
    );
    assert_eq!(
        a.communities[1],
        Figures {
            open: 0,
            overdue: 0,
            at_risk: 0,
            opened_today: 1,
            resolved_today: 1,
            median_response_secs: Some(360.0),
            median_resolution_secs: Some(7200.0),
            on_time_rate: Some(1.0),
            satisfaction: Some(2.0),
        }
    );
    assert_eq!(
        a.communities[2],
        Figures::default(),
        "no tickets, no figures"
    );
    assert_eq!(
        (a.grids[0].open, a.grids[0].overdue, a.grids[0].at_risk),
        (2, 1, 1)
    );
    assert_eq!(a.grids[0].median_response_secs, Some(600.0));
    assert_eq!((a.grids[1].open, a.grids[1].resolved_today), (1, 1));
    assert_eq!(a.grids[3], Figures::default());
    assert_eq!(
        a.ranking(),
        vec![0, 1, 2],
        "the community with the overdue ticket first"
    );

    // Hourly: bucket 23 is the current hour, 22 the hour before.
    let mut opened = [0; 24];
    opened[19] = 1;
    opened[20] = 1;
    opened[21] = 1;
    opened[22] = 2;
    assert_eq!(a.county_hourly.opened, opened);
    let mut resolved = [0; 24];
    resolved[3] = 1;
    resolved[21] = 1;
    resolved[22] = 1;
    assert_eq!(a.county_hourly.resolved, resolved);
    assert_eq!(a.community_hourly[1].opened[19], 1);
    assert_eq!(a.community_hourly[1].resolved[3], 1);
    assert_eq!(a.community_hourly[0].opened.iter().sum::<u32>(), 3);

    assert_eq!(
        reference::compute(&fixture(now), now, 3, 4),
        a,
        "the reference agrees"
    );
}

#[test]
fn empty_table_gives_empty_figures() {
    let now = ten_am();
    let a = analytics::compute(TicketColumns::default(), now, 2, 2).unwrap();
    assert_eq!(a.county, Figures::default());
    assert_eq!(a.communities, vec![Figures::default(); 2]);
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        (None, None) => true,
        _ => false,
    }
}

fn assert_figures_close(what: &str, p: &Figures, r: &Figures) {
    assert_eq!(
        (
            p.open,
            p.overdue,
            p.at_risk,
            p.opened_today,
            p.resolved_today
        ),
        (
            r.open,
            r.overdue,
            r.at_risk,
            r.opened_today,
            r.resolved_today
        ),
        "{what}"
    );
    assert!(
        close(p.median_response_secs, r.median_response_secs),
        "{what}: {p:?} vs {r:?}"
    );
    assert!(
        close(p.median_resolution_secs, r.median_resolution_secs),
        "{what}: {p:?} vs {r:?}"
    );
    assert!(
        close(p.on_time_rate, r.on_time_rate),
        "{what}: {p:?} vs {r:?}"
    );
    assert!(
        close(p.satisfaction, r.satisfaction),
        "{what}: {p:?} vs {r:?}"
    );
}

/// A city-scale table: 1M tickets over 3 000 grids in 100 communities, opened over two days.
pub fn generated(n: usize, now: i64, seed: u64) -> TicketColumns {
    let mut rng = Rng::new(seed);
    let mut c = TicketColumns::default();
    for _ in 0..n {
        let grid = rng.range_u32(0, 3_001);
        let grid = (grid < 3_000).then_some(grid);
        let opened = now - (rng.unit() * 48.0 * H as f64) as i64;
        let limit = [2 * H, 24 * H, 72 * H][rng.index(3)];
        let dispatched = rng
            .chance(0.8)
            .then(|| opened + (rng.unit() * 30.0 * M as f64) as i64);
        let resolved = dispatched
            .filter(|_| rng.chance(0.6))
            .map(|d| d + (rng.unit() * 40.0 * H as f64) as i64)
            .filter(|&r| r <= now);
        c.push(TicketRow {
            grid,
            community: grid.map(|g| g / 30),
            open: resolved.is_none(),
            opened_at_ms: opened,
            deadline_ms: opened + limit,
            dispatched_at_ms: dispatched.filter(|&d| d <= now),
            resolved_at_ms: resolved,
            satisfaction: resolved
                .filter(|_| rng.chance(0.7))
                .map(|_| rng.range_u32(1, 6) as i32),
            pos_m: [0.0, 0.0],
            priority: datawall::protocol::Priority::Normal,
        });
    }
    c
}

#[test]
fn polars_matches_the_reference_on_a_million_tickets() {
    let now = ten_am();
    let cols = generated(1_000_000, now, 11);
    let want = reference::compute(&cols, now, 100, 3_000);
    let got = analytics::compute(cols, now, 100, 3_000).unwrap();
    assert_eq!(got.rows, 1_000_000);
    assert!(
        want.county.open > 300_000 && want.county.resolved_today > 10_000,
        "{:?}",
        want.county
    );
    assert_figures_close("county", &got.county, &want.county);
    for (i, (p, r)) in got.communities.iter().zip(&want.communities).enumerate() {
        assert_figures_close(&format!("community {i}"), p, r);
    }
    for (i, (p, r)) in got.grids.iter().zip(&want.grids).enumerate() {
        assert_figures_close(&format!("grid {i}"), p, r);
    }
    assert_eq!(got.county_hourly, want.county_hourly);
    assert_eq!(got.community_hourly, want.community_hourly);
    assert_eq!(got.ranking(), want.ranking());
}

#[test]
fn live_state_figures_agree_with_a_walk_over_the_tickets() {
    let county = county();
    let start = 1_764_140_400_000;
    let mut sim = Simulator::new(
        county.clone(),
        SimConfig {
            seed: 9,
            start_ms: start,
            warmup_hours: 30,
            ..Default::default()
        },
    );
    let mut live = LiveState::new(county.clone());
    for e in sim.advance_to(start + 30 * M) {
        live.apply(&e).unwrap();
    }
    let now = start + 30 * M;
    let cols = TicketColumns::from_live(&live, now);
    assert!(
        cols.len() < live.tickets.len(),
        "tickets closed before the window are left out"
    );
    let a = analytics::compute_live(&live, now).unwrap();
    // Counts straight from the tickets.
    let open = live.open_tickets().count() as u32;
    let overdue = live.open_tickets().filter(|t| t.is_overdue(now)).count() as u32;
    let day = local_day_start_ms(now);
    let opened_today = live
        .tickets
        .values()
        .filter(|t| t.opened_at_ms >= day)
        .count() as u32;
    assert_eq!(
        (a.county.open, a.county.overdue, a.county.opened_today),
        (open, overdue, opened_today)
    );
    assert!(
        a.county.open > 0 && a.county.resolved_today > 0,
        "{:?}",
        a.county
    );
    let community_sum: u32 = a.communities.iter().map(|f| f.open).sum();
    let grid_sum: u32 = a.grids.iter().map(|f| f.open).sum();
    assert_eq!(community_sum, grid_sum, "every grid is in a community");
    assert!(grid_sum <= a.county.open);
    assert_eq!(a.communities.len(), county.pack.communities.len());
    assert_eq!(a.grids.len(), county.pack.grids.len());
    assert_eq!(
        a,
        reference::compute(&cols, now, a.communities.len(), a.grids.len())
    );
}
