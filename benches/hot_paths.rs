//! criterion micro-benchmarks of the hot paths: decoding a delta, applying events, point →
//! grid, heat accumulation, the analytics refresh and the grid panel's list. `cargo bench --bench hot_paths`
//! (`datawall bench` measures the end-to-end figures).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use datawall::bench::{load_start_ms, load_tickets};
use datawall::model::county::default_pack_dir;
use datawall::model::{County, LiveState};
use datawall::net::client::decode_server_msg;
use datawall::protocol::session::{Delta, ServerMsg};
use datawall::protocol::{Event, LonLat, VolunteerFix};

fn county() -> Arc<County> {
    Arc::new(County::load(&default_pack_dir()).expect("the bundled county pack (data/pingluo)"))
}

/// One fix per roster volunteer, a few metres from home, time increasing.
fn fixes(county: &County, from_ms: i64, rounds: usize) -> Vec<Event> {
    let mut out = Vec::new();
    for r in 0..rounds {
        for (i, v) in county.pack.volunteers.iter().enumerate() {
            let home = county
                .grid(v.home_grid_id)
                .map_or(LonLat::new(0.0, 0.0), |g| g.label);
            out.push(Event::VolunteerFix(VolunteerFix {
                volunteer_id: v.id,
                at_ms: from_ms + (r * 1000 + i) as i64,
                pos: LonLat::new(home.lon + (r % 7) as f64 * 1e-5, home.lat),
            }));
        }
    }
    out
}

fn decode(c: &mut Criterion) {
    let county = county();
    let events = fixes(&county, load_start_ms(), 1);
    let n = events.len();
    let msg = ServerMsg::Delta(Delta {
        epoch: 1,
        prev_seq: Some(0),
        first_seq: 1,
        last_seq: n as u64,
        conflated: 0,
        events: events
            .into_iter()
            .enumerate()
            .map(|(i, e)| (i as u64 + 1, e))
            .collect(),
    });
    let text = serde_json::to_string(&msg).expect("encodes");
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("delta of volunteer fixes (JSON)", |b| {
        b.iter(|| decode_server_msg(black_box(&text)).expect("decodes"))
    });
    g.finish();
}

fn apply(c: &mut Criterion) {
    let county = county();
    let mut g = c.benchmark_group("apply");
    let fixes = fixes(&county, load_start_ms(), 4);
    g.throughput(Throughput::Elements(fixes.len() as u64));
    g.bench_function("volunteer fixes", |b| {
        b.iter_batched(
            || LiveState::new(Arc::clone(&county)),
            |mut live| {
                for e in &fixes {
                    let _ = live.apply(e);
                }
                live
            },
            BatchSize::LargeInput,
        )
    });
    let tickets = load_tickets(&county, 10_000);
    g.throughput(Throughput::Elements(tickets.len() as u64));
    g.bench_function("ticket opened", |b| {
        b.iter_batched(
            || LiveState::new(Arc::clone(&county)),
            |mut live| {
                for e in &tickets {
                    let _ = live.apply(e);
                }
                live
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn point_to_grid(c: &mut Criterion) {
    let county = county();
    let (min, max) = county.pack.bounds();
    // A deterministic spread of points over the county's bounding box.
    let points: Vec<LonLat> = (0..10_000)
        .map(|i| {
            let fx = (i as f64 * 0.618_034) % 1.0;
            let fy = (i as f64 * 0.414_214) % 1.0;
            LonLat::new(
                min.lon + fx * (max.lon - min.lon),
                min.lat + fy * (max.lat - min.lat),
            )
        })
        .collect();
    let mut g = c.benchmark_group("point_to_grid");
    g.throughput(Throughput::Elements(points.len() as u64));
    g.bench_function("R-tree + exact test", |b| {
        b.iter(|| {
            points
                .iter()
                .filter(|p| county.index.grid_at(**p).is_some())
                .count()
        })
    });
    g.bench_function("county mask", |b| {
        b.iter(|| points.iter().filter(|p| county.mask.contains(**p)).count())
    });
    g.finish();
}

#[cfg(feature = "analytics")]
fn open_state(county: &Arc<County>, n: usize) -> LiveState {
    let mut live = LiveState::new(Arc::clone(county));
    for e in load_tickets(county, n) {
        let _ = live.apply(&e);
    }
    live
}

#[cfg(feature = "wall")]
fn heat(c: &mut Criterion) {
    use datawall::analytics::store::TicketStore;
    use datawall::wall::heat::{HeatGrid, density_from_rows};
    let county = county();
    let grid = HeatGrid::around_communities(&county);
    let mut g = c.benchmark_group("heat");
    g.sample_size(10);
    for n in [10_000, 100_000] {
        let chunks = TicketStore::from_live(&open_state(&county, n)).snapshot();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("density texels, {n} open tickets"), |b| {
            b.iter(|| density_from_rows(&grid, &chunks, load_start_ms()))
        });
    }
    g.finish();
}

#[cfg(not(feature = "wall"))]
fn heat(_: &mut Criterion) {}

#[cfg(feature = "analytics")]
fn analytics(c: &mut Criterion) {
    use datawall::analytics::store::TicketStore;
    use datawall::analytics::{TicketColumns, compute, reference};
    let county = county();
    let mut g = c.benchmark_group("analytics");
    g.sample_size(10);
    let (nc, ng) = (county.pack.communities.len(), county.pack.grids.len());
    for n in [10_000, 100_000] {
        let live = open_state(&county, n);
        let now = load_start_ms();
        let cols = TicketColumns::from_live(&live, now);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("column copy, {n} tickets"), |b| {
            b.iter(|| TicketColumns::from_live(&live, now))
        });
        let store = TicketStore::from_live(&live);
        g.bench_function(format!("refresh from the store, {n} tickets"), |b| {
            b.iter(|| store.refresh_at(now, nc, ng).run())
        });
        g.bench_function(format!("compute from columns, {n} tickets"), |b| {
            b.iter_batched(
                || cols.clone(),
                |c| compute(c, now, nc, ng),
                BatchSize::LargeInput,
            )
        });
        g.bench_function(format!("plain-Rust reference, {n} tickets"), |b| {
            b.iter(|| reference::compute(&cols, now, nc, ng))
        });
    }
    g.finish();
}

#[cfg(not(feature = "analytics"))]
fn analytics(_: &mut Criterion) {}

/// The grid panel's list: a grid's open tickets, found by a scan of the store's grid and open
/// columns (the busiest grid of the county's 282).
#[cfg(feature = "analytics")]
fn grid_panel(c: &mut Criterion) {
    use datawall::analytics::store::TicketStore;
    let county = county();
    let mut g = c.benchmark_group("grid panel");
    g.sample_size(10);
    for n in [100_000, 1_000_000] {
        let store = TicketStore::from_live(&open_state(&county, n));
        let busiest = (0..county.pack.grids.len())
            .max_by_key(|&s| store.open_in_grid(s).count())
            .unwrap_or(0);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(
            format!("a grid's open tickets from the store, {n} tickets"),
            |b| b.iter(|| store.open_in_grid(black_box(busiest)).count()),
        );
    }
    g.finish();
}

#[cfg(not(feature = "analytics"))]
fn grid_panel(_: &mut Criterion) {}

criterion_group!(
    hot_paths,
    decode,
    apply,
    point_to_grid,
    heat,
    analytics,
    grid_panel
);
criterion_main!(hot_paths);
