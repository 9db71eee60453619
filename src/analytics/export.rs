//! `datawall export`: the events of a stretch of the gateway's history as Parquet (one row
//! per event, typed columns, readable by pandas, polars, duckdb) or NDJSON.
//!
//! The stretch is in model time (the history's own clock: the latest event time so far), so
//! `--from T1 --to T2` is exactly the events between the state the timeline shows at T1 and
//! the one it shows at T2.

use std::io::Write;
use std::path::Path;

use polars::prelude::*;

use crate::net::history::History;
use crate::protocol::session::Seq;
use crate::protocol::{Event, TimestampMs};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Ndjson,
}

impl Format {
    /// From the output file's extension (`.parquet`, `.ndjson` / `.jsonl`).
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "parquet" => Some(Self::Parquet),
            "ndjson" | "jsonl" => Some(Self::Ndjson),
            _ => None,
        }
    }
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Exported {
    pub events: usize,
    pub first_seq: Option<Seq>,
    pub last_seq: Option<Seq>,
    pub bytes: u64,
}

/// The events after model time `from` up to `to` (inclusive), in seq order, with their seq.
/// Starts from the newest checkpoint at or before `from` (its name holds its seq and time),
/// so nothing is rebuilt.
pub fn events_between(
    history: &History,
    from: TimestampMs,
    to: TimestampMs,
    mut progress: impl FnMut(usize),
) -> Result<Vec<(Seq, Event)>, crate::net::history::HistoryError> {
    let (base_seq, mut latest) = history
        .checkpoints
        .iter()
        .rev()
        .find(|c| c.t_ms <= from)
        .map_or((0, TimestampMs::MIN), |c| (c.seq, c.t_ms));
    let mut out = Vec::new();
    history.for_each_after(base_seq, |seq, event| {
        if let Some(a) = event.at_ms() {
            latest = latest.max(a);
        }
        if latest > to {
            return false;
        }
        if latest > from {
            out.push((seq, event));
            if out.len() % 100_000 == 0 {
                progress(out.len());
            }
        }
        true
    })?;
    Ok(out)
}

/// The row fields an event has, read from its JSON by name (every event type alike).
struct Row {
    seq: u64,
    kind: String,
    at_ms: Option<i64>,
    ticket_id: Option<u64>,
    volunteer_id: Option<u64>,
    incident_id: Option<u64>,
    alert_id: Option<String>,
    grid_id: Option<u64>,
    lon: Option<f64>,
    lat: Option<f64>,
    category: Option<String>,
    source: Option<String>,
    priority: Option<String>,
    status: Option<String>,
    severity: Option<String>,
    incident_kind: Option<String>,
    level: Option<String>,
    satisfaction: Option<u64>,
    command_id: Option<String>,
    by: Option<String>,
    text: Option<String>,
    annotation_id: Option<String>,
    moment_ms: Option<i64>,
    event: String,
}

fn row(seq: Seq, event: &Event) -> Row {
    let v = serde_json::to_value(event).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    // A note's place names its ticket, incident or grid one level down.
    let u = |k: &str| {
        v.get(k)
            .or_else(|| v.get("place").and_then(|p| p.get(k)))
            .and_then(|x| x.as_u64())
    };
    let pos = v.get("pos").and_then(|p| p.as_array());
    let coord = |i: usize| pos.and_then(|p| p.get(i)).and_then(|x| x.as_f64());
    Row {
        seq,
        kind: event.type_name().to_owned(),
        at_ms: event.at_ms(),
        ticket_id: u("ticket_id"),
        volunteer_id: u("volunteer_id"),
        incident_id: u("incident_id"),
        alert_id: s("alert_id"),
        grid_id: u("grid_id"),
        lon: coord(0),
        lat: coord(1),
        category: s("category"),
        source: s("source"),
        priority: s("priority"),
        status: s("status"),
        severity: s("severity"),
        incident_kind: s("kind"),
        level: s("level"),
        satisfaction: u("satisfaction"),
        command_id: s("command_id"),
        by: s("by"),
        text: s("summary")
            .or_else(|| s("reason"))
            .or_else(|| s("note"))
            .or_else(|| s("title"))
            .or_else(|| s("text")),
        annotation_id: s("annotation_id"),
        moment_ms: v.get("moment_ms").and_then(|x| x.as_i64()),
        event: serde_json::to_string(event).unwrap_or_default(),
    }
}

/// The events as a table: one row per event.
pub fn frame(events: &[(Seq, Event)]) -> PolarsResult<DataFrame> {
    let rows: Vec<Row> = events.iter().map(|(s, e)| row(*s, e)).collect();
    macro_rules! col {
        ($name:literal, $field:ident) => {
            Column::new(
                $name.into(),
                rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>(),
            )
        };
    }
    let at = Column::new(
        "at".into(),
        rows.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
    )
    // UTC, written without a zone (polars is built without its time-zone database).
    .cast(&DataType::Datetime(TimeUnit::Milliseconds, None))?;
    DataFrame::new_infer_height(vec![
        col!("seq", seq),
        col!("type", kind),
        col!("at_ms", at_ms),
        at,
        col!("ticket_id", ticket_id),
        col!("volunteer_id", volunteer_id),
        col!("incident_id", incident_id),
        col!("alert_id", alert_id),
        col!("grid_id", grid_id),
        col!("lon", lon),
        col!("lat", lat),
        col!("category", category),
        col!("source", source),
        col!("priority", priority),
        col!("status", status),
        col!("severity", severity),
        col!("incident_kind", incident_kind),
        col!("level", level),
        col!("satisfaction", satisfaction),
        col!("command_id", command_id),
        col!("by", by),
        col!("text", text),
        col!("annotation_id", annotation_id),
        col!("moment_ms", moment_ms),
        col!("event", event),
    ])
}

/// Write `events` to `out` as `format`.
pub fn write(events: &[(Seq, Event)], out: &Path, format: Format) -> anyhow::Result<Exported> {
    use anyhow::Context;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    match format {
        Format::Parquet => {
            let mut df = frame(events).context("building the table")?;
            ParquetWriter::new(file)
                .finish(&mut df)
                .with_context(|| format!("writing {}", out.display()))?;
        }
        Format::Ndjson => {
            let mut w = std::io::BufWriter::new(file);
            for (seq, e) in events {
                let mut v = serde_json::to_value(e)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("seq".into(), (*seq).into());
                }
                serde_json::to_writer(&mut w, &v)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
    }
    Ok(Exported {
        events: events.len(),
        first_seq: events.first().map(|e| e.0),
        last_seq: events.last().map(|e| e.0),
        bytes: std::fs::metadata(out).map(|m| m.len()).unwrap_or(0),
    })
}

/// A time on the command line: milliseconds since the epoch, or an ISO 8601 / RFC 3339 time
/// (`2026-11-30T14:05:00+08:00`, `2026-11-30T06:05Z`, `2026-11-30 14:05` read as UTC+8, the
/// county's time).
pub fn parse_time(s: &str) -> Result<TimestampMs, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        format!(
            "{s:?} is not a time: give ms since the epoch or e.g. 2026-11-30T14:05:00+08:00 (no zone: the county's, UTC+8)"
        )
    };
    let (date, rest) = s.split_at_checked(10).ok_or_else(bad)?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (Some(Ok(y)), Some(Ok(mo)), Some(Ok(day)), None) = (d.next(), d.next(), d.next(), d.next())
    else {
        return Err(bad());
    };
    let rest = rest.strip_prefix(['T', ' ']).unwrap_or(rest);
    let (clock, zone_ms) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = rest.rfind(['+', '-']).filter(|&i| i >= 5) {
        let (c, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let mut hm = z[1..].split(':').map(|x| x.parse::<i64>());
        let (Some(Ok(h)), m) = (hm.next(), hm.next()) else {
            return Err(bad());
        };
        let m = m.unwrap_or(Ok(0)).map_err(|_| bad())?;
        (c, sign * (h * 3_600_000 + m * 60_000))
    } else {
        (rest, 8 * 3_600_000)
    };
    let mut parts = clock.split(':');
    let h: i64 = parts
        .next()
        .filter(|x| !x.is_empty())
        .map_or(Ok(0), str::parse)
        .map_err(|_| bad())?;
    let mi: i64 = parts.next().map_or(Ok(0), str::parse).map_err(|_| bad())?;
    let sec: f64 = parts
        .next()
        .map_or(Ok(0.0), str::parse)
        .map_err(|_| bad())?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec >= 61.0 {
        return Err(bad());
    }
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400_000 + h * 3_600_000 + mi * 60_000 + (sec * 1000.0).round() as i64 - zone_ms)
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_on_the_command_line() {
        // 2025-11-26 07:00 UTC is 1 764 140 400 000 ms (the simulator's default start).
        assert_eq!(parse_time("1764140400000"), Ok(1_764_140_400_000));
        assert_eq!(parse_time("2025-11-26T07:00:00Z"), Ok(1_764_140_400_000));
        assert_eq!(parse_time("2025-11-26T15:00+08:00"), Ok(1_764_140_400_000));
        assert_eq!(parse_time("2025-11-26 15:00"), Ok(1_764_140_400_000));
        assert_eq!(
            parse_time("2025-11-26T02:00:30-05:00"),
            Ok(1_764_140_430_000)
        );
        assert_eq!(parse_time("2024-02-29T00:00Z"), Ok(1_709_164_800_000));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2025-13-01T00:00Z").is_err());
    }
}
