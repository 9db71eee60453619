//! The same figures in plain Rust, row by row: the yardstick the polars queries are tested
//! and benchmarked against.

use super::{
    Analytics, Figures, HOURS, Hourly, Mix, PLEDGE_MS, TicketColumns, hour_ends, hourly_start_ms,
};
use crate::model::sla::{AT_RISK_MS, local_day_start_ms};
use crate::protocol::TicketCategory;

#[derive(Default)]
struct Acc {
    f: Figures,
    response: Vec<f64>,
    resolution: Vec<f64>,
    onsite: Vec<f64>,
    on_time: (u32, u32),
    rating: (f64, u32),
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl Acc {
    fn finish(mut self) -> Figures {
        self.f.median_response_secs = median(&mut self.response).map(|v| v / 1000.0);
        self.f.median_resolution_secs = median(&mut self.resolution).map(|v| v / 1000.0);
        self.f.median_onsite_secs = median(&mut self.onsite).map(|v| v / 1000.0);
        self.f.on_time_rate =
            (self.on_time.1 > 0).then(|| f64::from(self.on_time.0) / f64::from(self.on_time.1));
        self.f.satisfaction = (self.rating.1 > 0).then(|| self.rating.0 / f64::from(self.rating.1));
        self.f
    }
}

/// Every figure of [`super::compute`], computed by walking the rows.
pub fn compute(cols: &TicketColumns, now_ms: i64, communities: usize, grids: usize) -> Analytics {
    let day = local_day_start_ms(now_ms);
    let hour0 = hourly_start_ms(now_ms);
    let mut county = Acc::default();
    let mut by_c: Vec<Acc> = (0..communities).map(|_| Acc::default()).collect();
    let mut by_g: Vec<Acc> = (0..grids).map(|_| Acc::default()).collect();
    let mut county_hourly = Hourly::default();
    let mut community_hourly = vec![Hourly::default(); communities];
    let mut county_mix = Mix::default();
    let ends = hour_ends(now_ms, hour0);
    let mut overdue_hourly = [0u32; HOURS];
    let mut county_samples: [Vec<Vec<f64>>; 2] = std::array::from_fn(|_| vec![Vec::new(); HOURS]);
    let mut comm_samples: [Vec<Vec<Vec<f64>>>; 2] =
        std::array::from_fn(|_| vec![vec![Vec::new(); HOURS]; communities]);
    let mut community_mix = vec![Mix::default(); communities];
    let bucket = |at: i64| {
        let b = (at - hour0).div_euclid(3_600_000);
        (at >= hour0 && b < HOURS as i64).then_some(b as usize)
    };
    for i in 0..cols.len() {
        let open = cols.open[i];
        let opened = cols.opened_at_ms[i];
        let deadline = cols.deadline_ms[i];
        let resolved = cols.resolved_at_ms[i];
        let resolved_today = resolved.is_some_and(|r| r >= day);
        let onsite = cols.onsite_at_ms[i];
        let repair = usize::from(cols.category[i]) == TicketCategory::Repair as usize;
        let within = |at: i64| at - opened <= PLEDGE_MS;
        let mut accs: Vec<&mut Acc> = vec![&mut county];
        if let Some(c) = cols.community[i].and_then(|c| by_c.get_mut(c as usize)) {
            accs.push(c);
        }
        if let Some(g) = cols.grid[i].and_then(|g| by_g.get_mut(g as usize)) {
            accs.push(g);
        }
        for a in accs {
            let f = &mut a.f;
            if open {
                f.open += 1;
                if deadline < now_ms {
                    f.overdue += 1;
                } else if deadline <= now_ms + AT_RISK_MS {
                    f.at_risk += 1;
                }
            }
            if opened >= day {
                f.opened_today += 1;
            }
            if let Some(d) = cols.dispatched_at_ms[i].filter(|&d| d >= day) {
                a.response.push((d - opened) as f64);
            }
            if let Some(o) = onsite.filter(|&o| o >= day) {
                f.onsite_today += 1;
                a.onsite.push((o - opened) as f64);
                if repair {
                    f.repairs_onsite_today += 1;
                    if within(o) {
                        f.repairs_within_pledge += 1;
                    }
                }
            }
            if let (true, Some(r)) = (resolved_today, resolved) {
                f.resolved_today += 1;
                a.resolution.push((r - opened) as f64);
                a.on_time.1 += 1;
                if r <= deadline {
                    a.on_time.0 += 1;
                }
                if let Some(s) = cols.satisfaction[i] {
                    a.rating.0 += f64::from(s);
                    a.rating.1 += 1;
                }
            }
        }
        let community = cols.community[i].map(|c| c as usize);
        let repair_onsite = onsite.filter(|_| repair);
        for (h, &t) in ends.iter().enumerate() {
            if opened <= t && deadline < t && (open || resolved.is_some_and(|r| r > t)) {
                overdue_hourly[h] += 1;
            }
        }
        let rating = cols.satisfaction[i].filter(|&s| s > 0);
        let rated = resolved.filter(|_| rating.is_some());
        let lanes: [(Option<i64>, super::Lane, u32); 7] = [
            (Some(opened), |h| &mut h.opened, 1),
            (resolved, |h| &mut h.resolved, 1),
            (resolved.filter(|&r| r <= deadline), |h| &mut h.on_time, 1),
            (repair_onsite, |h| &mut h.repairs_onsite, 1),
            (
                repair_onsite.filter(|&o| within(o)),
                |h| &mut h.repairs_within_pledge,
                1,
            ),
            (rated, |h| &mut h.rated, 1),
            (rated, |h| &mut h.rating_sum, rating.unwrap_or(0) as u32),
        ];
        for (at, lane, n) in lanes {
            let Some(b) = at.and_then(bucket) else {
                continue;
            };
            lane(&mut county_hourly)[b] += n;
            if let Some(h) = community.and_then(|c| community_hourly.get_mut(c)) {
                lane(h)[b] += n;
            }
        }
        // The medians' samples, by lane, (community,) hour.
        for (lane, at) in [(0, cols.dispatched_at_ms[i]), (1, onsite)] {
            if let Some((b, at)) = at.and_then(|t| Some((bucket(t)?, t))) {
                let ms = (at - opened) as f64;
                county_samples[lane][b].push(ms);
                if let Some(v) = community.and_then(|c| comm_samples[lane].get_mut(c)) {
                    v[b].push(ms);
                }
            }
        }
        if opened >= hour0 {
            let (s, k) = (usize::from(cols.source[i]), usize::from(cols.category[i]));
            let add = |m: &mut Mix| {
                m.day_by_source[s] += 1;
                m.day_by_category[k] += 1;
                if opened >= day {
                    m.today_by_source[s] += 1;
                    m.today_by_category[k] += 1;
                }
            };
            add(&mut county_mix);
            if let Some(m) = community.and_then(|c| community_mix.get_mut(c)) {
                add(m);
            }
        }
    }
    for lane in 0..2 {
        fn pick(h: &mut Hourly, lane: usize) -> &mut [Option<u32>; HOURS] {
            if lane == 0 {
                &mut h.median_response_secs
            } else {
                &mut h.median_onsite_secs
            }
        }
        let secs = |v: &mut [f64]| median(v).map(|ms| (ms / 1000.0).round() as u32);
        for (b, v) in county_samples[lane].iter_mut().enumerate() {
            pick(&mut county_hourly, lane)[b] = secs(v);
        }
        for (h, hours) in community_hourly
            .iter_mut()
            .zip(comm_samples[lane].iter_mut())
        {
            for (b, v) in hours.iter_mut().enumerate() {
                pick(h, lane)[b] = secs(v);
            }
        }
    }
    Analytics {
        now_ms,
        day_start_ms: day,
        hourly_start_ms: hour0,
        county: county.finish(),
        communities: by_c.into_iter().map(Acc::finish).collect(),
        grids: by_g.into_iter().map(Acc::finish).collect(),
        county_hourly,
        community_hourly,
        county_mix,
        community_mix,
        overdue_hourly,
        rows: cols.len(),
        queried: (0..cols.len())
            .filter(|&i| {
                super::is_recent(
                    cols.dispatched_at_ms[i],
                    cols.onsite_at_ms[i],
                    cols.resolved_at_ms[i],
                    super::window_start_ms(now_ms),
                )
            })
            .count(),
    }
}
