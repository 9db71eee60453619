//! History figures: disk per simulated day, and the time to show any moment (the state at a
//! time rebuilt from the newest checkpoint before it and the events after it).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use super::{Report, percentile};
use crate::model::County;
use crate::net::history::{self, At, History};
use crate::net::hub::HubConfig;
use crate::protocol::TimestampMs;
use crate::sim::{SimConfig, Simulator};

const HOUR_MS: TimestampMs = 3_600_000;

/// A fresh scratch folder for one history.
fn scratch(name: &str) -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "datawall-bench-history-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Simulate `minutes` of live feed into a hub keeping its history in `dir` (plain segments,
/// a checkpoint every feed hour as a gateway writes them); returns the live start and end.
fn build(
    county: &Arc<County>,
    cfg: SimConfig,
    minutes: i64,
    dir: &Path,
) -> Result<(TimestampMs, TimestampMs)> {
    let start = cfg.start_ms;
    let mut sim = Simulator::new(Arc::clone(county), cfg);
    let (hub, mut writer) = history::open_for_gateway(dir, 7, county, HubConfig::default())?;
    writer.compress = false;
    hub.set_history(writer);
    let hub = Arc::new(hub);
    let publish = |events: Vec<crate::protocol::Event>| {
        for chunk in events.chunks(4_096) {
            hub.publish(chunk.iter().cloned());
        }
    };
    publish(sim.advance_to(start));
    history::checkpoint_now(&hub, dir, 7)?;
    let end = start + minutes * 60_000;
    let mut t = start;
    while t < end {
        let next = (t + 5 * 60_000).min(end);
        publish(sim.advance_to(next));
        if next.div_euclid(HOUR_MS) != t.div_euclid(HOUR_MS) {
            history::checkpoint_now(&hub, dir, 7)?;
        }
        t = next;
    }
    Ok((start, end))
}

/// Bytes of the live part's segments, plain and gzip (as a gateway compresses them).
fn disk(dir: &Path, after: TimestampMs) -> Result<(u64, u64)> {
    let (segments, _) = history::list(dir)?;
    let (mut plain, mut gz) = (0u64, 0u64);
    for s in segments.iter().filter(|s| s.t_ms >= after) {
        let bytes = std::fs::read(&s.path)?;
        plain += bytes.len() as u64;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &bytes)?;
        gz += enc.finish()?.len() as u64;
    }
    Ok((plain, gz))
}

/// The time to rebuild the state at `n` moments spread over (start, end]: p50 and max, ms.
fn show_moments(
    county: &Arc<County>,
    dir: &Path,
    start: TimestampMs,
    end: TimestampMs,
    n: usize,
) -> Result<(f64, f64, usize)> {
    let h = History::open(dir)?.ok_or_else(|| anyhow::anyhow!("no history written"))?;
    let mut times = Vec::new();
    let mut tickets = 0;
    for k in 1..=n {
        let at = start + (end - start) * k as i64 / n as i64;
        let t0 = Instant::now();
        let r = h.state_at(county, At::Time(at))?;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        tickets = tickets.max(r.state.tickets.len());
    }
    times.sort_by(f64::total_cmp);
    Ok((percentile(&times, 0.5), percentile(&times, 1.0), tickets))
}

/// History figures for the county (`county_hours` of feed, fixes every 30 s and every 1 s)
/// and, when `city` is set, `(minutes, backlog)` at city scale (44×).
pub fn history(
    report: &mut Report,
    pack: &crate::model::CountyPack,
    county_hours: i64,
    fast_minutes: i64,
    city: Option<(i64, usize)>,
) -> Result<()> {
    let county = Arc::new(crate::model::scale::scaled_county(pack.clone(), 1, 1));
    let per_day = 24.0 / county_hours as f64;
    // A day of the county with phones reporting every 30 s (hours simulated, scaled to a day).
    let dir = scratch("county")?;
    let cfg = SimConfig {
        fix_interval_ms: 30_000,
        ..SimConfig::default()
    };
    let (start, end) = build(&county, cfg, county_hours * 60, &dir)?;
    let (plain, gz) = disk(&dir, start)?;
    let mb = |b: u64| b as f64 / 1_048_576.0;
    report.add(
        "history",
        "disk per simulated day, county, fixes every 30 s",
        mb(plain) * per_day,
        "MB",
        format!(
            "{:.0} MB compressed (gzip, as finished segments are); {county_hours} h simulated",
            mb(gz) * per_day
        ),
    );
    let (p50, max, tickets) = show_moments(&county, &dir, start, end, 12)?;
    report.add(
        "history",
        &format!("show any moment of {county_hours} h, county, p50"),
        p50,
        "ms",
        format!("12 moments; checkpoint + events; {tickets} tickets"),
    );
    report.add(
        "history",
        &format!("show any moment of {county_hours} h, county, max"),
        max,
        "ms",
        String::new(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    // The wall's default: a fix every second (an hour, scaled to a day).
    let dir = scratch("county-1s")?;
    let minutes = fast_minutes;
    let (start, _) = build(&county, SimConfig::default(), minutes, &dir)?;
    let (plain, gz) = disk(&dir, start)?;
    let scale = 24.0 * 60.0 / minutes as f64;
    report.add(
        "history",
        "disk per simulated day, county, fixes every 1 s",
        mb(plain) * scale,
        "MB",
        format!(
            "{:.0} MB compressed; {minutes} min simulated",
            mb(gz) * scale
        ),
    );
    let _ = std::fs::remove_dir_all(&dir);
    if let Some((minutes, backlog)) = city {
        let city = Arc::new(crate::model::scale::scaled_county(pack.clone(), 44, 44));
        let dir = scratch("city")?;
        let cfg = SimConfig {
            fix_interval_ms: 30_000,
            scale: 44.0,
            backlog,
            warmup_hours: 1,
            ..SimConfig::default()
        };
        eprintln!("bench: history at city scale ({backlog} open tickets, {minutes} min of feed)");
        let (start, end) = build(&city, cfg, minutes, &dir)?;
        let (p50, max, tickets) = show_moments(&city, &dir, start, end, 6)?;
        report.add(
            "history",
            &format!("show any moment of {minutes} min, city scale, p50"),
            p50,
            "ms",
            format!("6 moments; {tickets} tickets"),
        );
        report.add(
            "history",
            &format!("show any moment of {minutes} min, city scale, max"),
            max,
            "ms",
            String::new(),
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
