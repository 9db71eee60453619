//! Analytics: polars figures against hand-computed fixtures, against the plain-Rust reference
//! on a generated 1M-ticket table, and on a simulated county's live state.

use datawall::analytics::{self, Figures, Mix, RankOrder, TicketColumns, TicketRow, reference};
use datawall::model::LiveState;
use datawall::model::rng::Rng;
use datawall::model::sla::local_day_start_ms;
use datawall::protocol::{TicketCategory, TicketSource};

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
        onsite_at_ms: None,
        category: TicketCategory::Help,
        source: TicketSource::Hotline,
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
            ..Figures::default()
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
            ..Figures::default()
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
            ..Figures::default()
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
    // Overdue at each hour's end (bucket 0 ends 12:00 yesterday, 22 at 10:00 today, 23 now):
    // ticket 7 (due 12:00 yesterday, resolved 14:00) at 13:00 only — at 12:00 it was not yet
    // past due and at 14:00 resolved; ticket 1 (due 09:50) at 10:00; ticket 4 (due 08:00,
    // resolved 09:00) at no hour's end.
    let mut overdue = [0u32; 24];
    (overdue[1], overdue[22], overdue[23]) = (1, 1, 1);
    assert_eq!(a.overdue_hourly, overdue);

    assert_eq!(
        reference::compute(&fixture(now), now, 3, 4),
        a,
        "the reference agrees"
    );
}

/// A ticket of the on-site fixture: its category, source, area and steps.
struct Trace {
    category: TicketCategory,
    source: TicketSource,
    area: Option<(u32, u32)>,
    opened: i64,
    deadline: i64,
    dispatched: Option<i64>,
    onsite: Option<i64>,
    resolved: Option<(i64, i32)>,
}

fn traced(t: Trace) -> TicketRow {
    TicketRow {
        onsite_at_ms: t.onsite,
        category: t.category,
        source: t.source,
        ..row(
            t.area.map(|a| a.0),
            t.area.map(|a| a.1),
            t.opened,
            t.deadline,
            t.dispatched,
            t.resolved.map(|r| r.0),
            t.resolved.map(|r| r.1),
        )
    }
}

/// Six tickets at 10:00 with on-site steps, sources and categories (grid, community).
fn onsite_fixture(now: i64) -> TicketColumns {
    use TicketCategory::*;
    use TicketSource::*;
    let mut c = TicketColumns::default();
    for t in [
        // a: a repair on site in 15 min (within the pledge), resolved on time, rated 5.
        Trace {
            category: Repair,
            source: MiniProgram,
            area: Some((0, 0)),
            opened: now - 60 * M,
            deadline: now + H,
            dispatched: Some(now - 58 * M),
            onsite: Some(now - 45 * M),
            resolved: Some((now - 30 * M, 5)),
        },
        // b: a repair on site in 25 min (past the pledge), resolved on time, rated 3.
        Trace {
            category: Repair,
            source: Hotline,
            area: Some((0, 0)),
            opened: now - 3 * H,
            deadline: now - H,
            dispatched: Some(now - 3 * H + 5 * M),
            onsite: Some(now - 3 * H + 25 * M),
            resolved: Some((now - 2 * H, 3)),
        },
        // c: a request for help on site in 40 min, still open.
        Trace {
            category: Help,
            source: Patrol,
            area: Some((2, 1)),
            opened: now - 2 * H,
            deadline: now + H,
            dispatched: Some(now - 2 * H + 30 * M),
            onsite: Some(now - 2 * H + 40 * M),
            resolved: None,
        },
        // d: a wish-list repair yesterday evening, on site in 10 min, resolved before midnight.
        Trace {
            category: Repair,
            source: WishList,
            area: Some((2, 1)),
            opened: now - 12 * H,
            deadline: now + 12 * H,
            dispatched: Some(now - 12 * H + 2 * M),
            onsite: Some(now - 12 * H + 10 * M),
            resolved: Some((now - 11 * H, 4)),
        },
        // e: feedback from the mini-program, open, not dispatched.
        Trace {
            category: Feedback,
            source: MiniProgram,
            area: Some((3, 1)),
            opened: now - 30 * M,
            deadline: now + 2 * H,
            dispatched: None,
            onsite: None,
            resolved: None,
        },
        // f: a repair outside every grid, on site exactly 20 min after the report (within).
        Trace {
            category: Repair,
            source: MiniProgram,
            area: None,
            opened: now - 20 * M,
            deadline: now + H,
            dispatched: None,
            onsite: Some(now),
            resolved: None,
        },
    ] {
        c.push(traced(t));
    }
    c
}

#[test]
fn report_to_site_pledge_mix_and_assessment_match_hand_computed_values() {
    let now = ten_am();
    let a = analytics::compute(onsite_fixture(now), now, 3, 4).unwrap();
    let county = Figures {
        open: 3,
        overdue: 0,
        at_risk: 0,
        opened_today: 5,
        resolved_today: 2,
        // Dispatched today after 2, 5 and 30 min.
        median_response_secs: Some(300.0),
        // 30 and 60 min.
        median_resolution_secs: Some(2700.0),
        on_time_rate: Some(1.0),
        satisfaction: Some(4.0),
        // On site today after 15, 25, 40 and 20 min (d reached the site yesterday).
        onsite_today: 4,
        median_onsite_secs: Some(1350.0),
        // Repairs a, b, f; a (15 min) and f (20 min, the limit itself) within the pledge.
        repairs_onsite_today: 3,
        repairs_within_pledge: 2,
    };
    assert_eq!(a.county, county);
    assert_eq!(a.county.pledge_rate(), Some(2.0 / 3.0));
    // 100 × (0.5 × 1 + 0.3 × (4 − 1) / 4 + 0.2 × (1 − 5 / 60)).
    let score = a.county.score().unwrap();
    assert!((score - 90.833_333).abs() < 1e-3, "{score}");

    let c0 = &a.communities[0];
    assert_eq!(
        (
            c0.onsite_today,
            c0.median_onsite_secs,
            c0.repairs_onsite_today,
            c0.repairs_within_pledge
        ),
        (2, Some(1200.0), 2, 1)
    );
    assert_eq!(c0.pledge_rate(), Some(0.5));
    // Response 2 and 5 min → 3.5 min: 100 × (0.5 + 0.225 + 0.2 × (1 − 3.5 / 60)).
    assert!((c0.score().unwrap() - 91.333_333).abs() < 1e-3, "{c0:?}");
    let c1 = &a.communities[1];
    assert_eq!((c1.onsite_today, c1.median_onsite_secs), (1, Some(2400.0)));
    assert_eq!(c1.pledge_rate(), None, "no repair on site today");
    // Nothing resolved today: the score is the response part alone, 1 − 30 / 60.
    assert_eq!(c1.score(), Some(50.0));
    assert_eq!(a.communities[2].score(), None, "no data, no score");
    assert_eq!(a.grids[2].onsite_today, 1);
    assert_eq!(a.ranking_by(RankOrder::Score), vec![0, 1, 2]);
    assert_eq!(
        a.ranking_by(RankOrder::Attention),
        vec![1, 0, 2],
        "two open tickets before none"
    );

    // Sources in `TicketSource::ALL` order (mini-program, hotline, patrol, wish list), and
    // categories in `TicketCategory::ALL` order (repair, help, feedback, …).
    assert_eq!(
        a.county_mix,
        Mix {
            today_by_source: [3, 1, 1, 0],
            today_by_category: [3, 1, 1, 0, 0, 0],
            day_by_source: [3, 1, 1, 1],
            day_by_category: [4, 1, 1, 0, 0, 0],
        }
    );
    assert_eq!(
        a.community_mix[1],
        Mix {
            today_by_source: [1, 0, 1, 0],
            today_by_category: [0, 1, 1, 0, 0, 0],
            day_by_source: [1, 0, 1, 1],
            day_by_category: [1, 1, 1, 0, 0, 0],
        }
    );
    assert_eq!(a.community_mix[2], Mix::default());

    // The sparklines' lanes, bucket 23 being 10:00–11:00 and bucket 0 11:00 yesterday.
    let lane = |at: &[usize]| {
        let mut v = [0u32; 24];
        for &b in at {
            v[b] += 1;
        }
        v
    };
    assert_eq!(a.county_hourly.repairs_onsite, lane(&[11, 20, 22, 23]));
    assert_eq!(a.county_hourly.repairs_within_pledge, lane(&[11, 22, 23]));
    assert_eq!(a.county_hourly.on_time, lane(&[12, 21, 22]));
    assert_eq!(a.community_hourly[1].repairs_onsite, lane(&[11]));
    // Ratings: a (5) at 09:30, b (3) at 08:00, d (4) at 23:00 yesterday.
    assert_eq!(a.county_hourly.rated, lane(&[12, 21, 22]));
    let mut sum = [0u32; 24];
    (sum[12], sum[21], sum[22]) = (4, 3, 5);
    assert_eq!(a.county_hourly.rating_sum, sum);
    // Medians per hour, seconds: first dispatch (a 2 min at 09:02, b 5 min at 07:05, c 30 min
    // at 08:30, d 2 min at 22:02) and on site (a 15, b 25, c 40, d 10, f 20 min).
    let at = |pairs: &[(usize, u32)]| {
        let mut v = [None; 24];
        for &(b, s) in pairs {
            v[b] = Some(s);
        }
        v
    };
    assert_eq!(
        a.county_hourly.median_response_secs,
        at(&[(11, 120), (20, 300), (21, 1800), (22, 120)])
    );
    assert_eq!(
        a.county_hourly.median_onsite_secs,
        at(&[(11, 600), (20, 1500), (21, 2400), (22, 900), (23, 1200)])
    );
    assert_eq!(
        a.community_hourly[1].median_onsite_secs,
        at(&[(11, 600), (21, 2400)])
    );
    // Each hour's score from its parts: 09:00 100 × (0.5 + 0.3 + 0.2 × (1 − 2 / 60)); 08:00
    // 100 × (0.5 + 0.3 × 0.5 + 0.2 × 0.5); 10:00 has none.
    // Overdue at each hour's end: none (b, due at 09:00, was resolved at 08:00).
    assert_eq!(a.overdue_hourly, [0; 24]);
    let s = a.county_hourly.score_series();
    assert!((s[22].unwrap() - 99.333_333).abs() < 1e-3, "{:?}", s[22]);
    assert!((s[21].unwrap() - 75.0).abs() < 1e-9, "{:?}", s[21]);
    assert_eq!(s[23], None);

    assert_eq!(
        reference::compute(&onsite_fixture(now), now, 3, 4),
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
    assert_eq!(
        (
            p.onsite_today,
            p.repairs_onsite_today,
            p.repairs_within_pledge
        ),
        (
            r.onsite_today,
            r.repairs_onsite_today,
            r.repairs_within_pledge
        ),
        "{what}"
    );
    assert!(
        close(p.median_onsite_secs, r.median_onsite_secs),
        "{what}: {p:?} vs {r:?}"
    );
    assert!(close(p.score(), r.score()), "{what}: {p:?} vs {r:?}");
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
        let onsite = dispatched
            .filter(|_| rng.chance(0.7))
            .map(|d| d + (rng.unit() * 30.0 * M as f64) as i64)
            .filter(|&o| o <= resolved.unwrap_or(now));
        let category = TicketCategory::ALL[rng.index(TicketCategory::ALL.len())];
        let source = TicketSource::ALL[rng.index(TicketSource::ALL.len())];
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
            onsite_at_ms: onsite,
            category,
            source,
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
    assert_eq!(got.county_mix, want.county_mix);
    assert_eq!(got.overdue_hourly, want.overdue_hourly);
    assert!(want.overdue_hourly[23] > 0 && want.overdue_hourly[23] == want.county.overdue);
    assert_eq!(got.community_mix, want.community_mix);
    assert!(
        want.county.repairs_within_pledge > 1_000
            && want.county.repairs_within_pledge < want.county.repairs_onsite_today,
        "{:?}",
        want.county
    );
    assert_eq!(got.ranking(), want.ranking());
    assert_eq!(
        got.ranking_by(RankOrder::Score),
        want.ranking_by(RankOrder::Score)
    );
}

#[test]
fn live_state_figures_agree_with_a_walk_over_the_tickets() {
    let county = county();
    let start = 1_764_140_400_000;
    let mut sim = crate::common::simulator(county.clone(), 9, start, 30);
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

/// Yesterday at 10:00 and today at 10:00, hand-built: the board's KPIs carry each figure's
/// change against yesterday, written with its unit.
#[cfg(feature = "wall")]
#[test]
fn the_change_against_yesterday_matches_hand_computed_values() {
    use datawall::wall::board::kpis;
    use datawall::wall::charts::{Unit, change_text};
    use datawall::wall::stats::Presence;
    const DAY: i64 = 24 * H;
    let now = ten_am();
    let yesterday = now - DAY;
    // Yesterday: two tickets opened since midnight, one resolved on time, one repair on site in
    // 30 min (past the pledge).
    let mut then = TicketColumns::default();
    for t in [
        Trace {
            category: TicketCategory::Repair,
            source: TicketSource::Hotline,
            area: Some((0, 0)),
            opened: yesterday - 2 * H,
            deadline: yesterday + H,
            dispatched: Some(yesterday - 2 * H + 10 * M),
            onsite: Some(yesterday - 2 * H + 30 * M),
            resolved: Some((yesterday - H, 4)),
        },
        Trace {
            category: TicketCategory::Help,
            source: TicketSource::Patrol,
            area: Some((0, 0)),
            opened: yesterday - 30 * M,
            deadline: yesterday + 2 * H,
            dispatched: None,
            onsite: None,
            resolved: None,
        },
    ] {
        then.push(traced(t));
    }
    let past = analytics::compute(then, yesterday, 3, 4).unwrap();
    let today = analytics::compute(onsite_fixture(now), now, 3, 4).unwrap();
    let list = kpis(
        &today,
        &Presence::default(),
        [Some(&past), None],
        [None, None],
    );
    let change = |label: &str| {
        let k = list.iter().find(|k| k.label.starts_with(label)).unwrap();
        change_text(k.value, k.yesterday, k.unit)
    };
    // Opened today 5 against 2; resolved 2 against 1; open 3 against 1.
    assert_eq!(change("今日受理"), "+3");
    assert_eq!(change("今日办结"), "+1");
    assert_eq!(change("在办"), "+2");
    // The pledge: 2 of 3 today, 0 of 1 yesterday: +66.7 points.
    assert_eq!(change("20分钟到场率"), "+66.7 pp");
    // On time 100 % both days; the median to site 22.5 against 30 min: −7.5 min.
    assert_eq!(change("按时办结率"), "±0.0 pp");
    assert_eq!(change("报告到场中位"), "−7.5 分");
    // Rating 4.0 both days.
    assert_eq!(change("满意度"), "±0.00");
    // Nothing from last week: no change shown.
    let k = list.iter().find(|k| k.label.starts_with("在办")).unwrap();
    assert_eq!(change_text(k.value, k.last_week, Unit::Count), "—");
}

/// The wall's store keeps its roll-ups as events apply, tickets are pruned and rows reused;
/// at every moment read — now, an hour back (events after it count as the future), later than
/// anything — across the county's midnight, its figures equal a walk over the live state, and
/// its roll-ups equal a build from its rows.
#[test]
fn rollups_kept_as_events_apply_equal_a_walk_at_any_moment() {
    use datawall::analytics::store::TicketStore;
    let county = county();
    // 23:00 local: the county's day turns an hour in.
    let start = 1_764_169_200_000;
    assert_eq!(
        local_day_start_ms(start + H) - local_day_start_ms(start),
        24 * H
    );
    let mut sim = crate::common::simulator(county.clone(), 4, start, 26);
    let mut live = LiveState::new(county.clone());
    for e in sim.advance_to(start) {
        live.apply(&e).unwrap();
    }
    live.take_pruned();
    let mut store = TicketStore::from_live(&live);
    let (c, g) = (county.pack.communities.len(), county.pack.grids.len());
    let (mut pruned, mut checked) = (0, 0);
    for step in 1..=8 {
        let now = start + step * 15 * M;
        for e in sim.advance_to(now) {
            live.apply(&e).unwrap();
            if let Some(t) = e.ticket_id().and_then(|id| live.tickets.get(&id)) {
                store.upsert(&county, t);
            }
        }
        for id in live.take_pruned().tickets {
            store.remove(id);
            pruned += 1;
        }
        for at in [now, now - H, now + 30 * H] {
            let mut got = store.refresh_at(at, c, g).run().unwrap();
            let want = reference::compute(&TicketColumns::from_live(&live, at), at, c, g);
            assert_eq!(got.rows, live.tickets.len());
            got.rows = want.rows;
            assert_figures_close("county", &got.county, &want.county);
            for (i, (p, r)) in got.communities.iter().zip(&want.communities).enumerate() {
                assert_figures_close(&format!("community {i}"), p, r);
            }
            for (i, (p, r)) in got.grids.iter().zip(&want.grids).enumerate() {
                assert_figures_close(&format!("grid {i}"), p, r);
            }
            assert_eq!(got.county_hourly.opened, want.county_hourly.opened);
            assert_eq!(
                (got.county_mix, &got.community_mix, got.overdue_hourly),
                (want.county_mix, &want.community_mix, want.overdue_hourly)
            );
            assert_eq!(got.community_hourly, want.community_hourly);
            assert_eq!(got.queried, want.queried);
            assert_eq!(
                store.rollup().read(at, c, g),
                store.rollup_rebuilt().read(at, c, g),
                "kept as events apply = built from the rows, at {at}"
            );
            checked += 1;
        }
    }
    let a = store.refresh_at(start + 2 * H, c, g).run().unwrap();
    assert!(
        a.county.open > 0
            && a.county.opened_today > 0
            && a.county.resolved_today > 0
            && a.overdue_hourly.iter().any(|&n| n > 0)
            && a.county_hourly.resolved.iter().sum::<u32>() > 0,
        "the figures have something in them: {:?}",
        a.county
    );
    assert!(pruned > 0, "tickets resolved a day ago were pruned");
    assert_eq!(checked, 24);
}
