//! Time limits (SLA): at-risk window, countdown states and the county's local day.

use crate::protocol::TimestampMs;

/// A ticket whose deadline is this close is "at risk" (top bar, map colour, ranking).
pub const AT_RISK_MS: i64 = 30 * 60_000;

/// Below this fraction of its limit left, a countdown turns amber.
pub const AMBER_FRACTION: f64 = 0.2;

/// The county's offset from UTC (China Standard Time).
pub const LOCAL_OFFSET_MS: i64 = 8 * 3_600_000;

/// How a live countdown looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SlaState {
    /// More than a fifth of the limit left.
    OnTrack,
    /// Under a fifth of the limit left: amber.
    Amber,
    /// Past the deadline: red, pulsing.
    Breached,
}

/// State of a countdown from `opened_at_ms` to `deadline_ms` at `now_ms`.
pub fn sla_state(
    now_ms: TimestampMs,
    opened_at_ms: TimestampMs,
    deadline_ms: TimestampMs,
) -> SlaState {
    let left = deadline_ms - now_ms;
    if left < 0 {
        return SlaState::Breached;
    }
    let limit = (deadline_ms - opened_at_ms).max(1) as f64;
    if (left as f64) < limit * AMBER_FRACTION {
        SlaState::Amber
    } else {
        SlaState::OnTrack
    }
}

/// `H:MM:SS` left, or `-H:MM:SS` overdue.
pub fn countdown_text(left_ms: i64) -> String {
    let sign = if left_ms < 0 { "-" } else { "" };
    let s = left_ms.unsigned_abs() / 1000;
    format!("{sign}{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Start of the local (UTC+8) day containing `now_ms`.
pub fn local_day_start_ms(now_ms: TimestampMs) -> TimestampMs {
    // Saturating: a time at the ends of the range (hostile input) has a day too.
    let local = now_ms.saturating_add(LOCAL_OFFSET_MS);
    local
        .saturating_sub(local.rem_euclid(86_400_000))
        .saturating_sub(LOCAL_OFFSET_MS)
}

/// `HH:MM:SS` of a time in the county's zone.
pub fn clock_text(ms: TimestampMs) -> String {
    let s = (ms / 1000 + LOCAL_OFFSET_MS / 1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdown_turns_amber_under_a_fifth_then_breaches() {
        let opened = 0;
        let deadline = 100_000;
        assert_eq!(sla_state(0, opened, deadline), SlaState::OnTrack);
        assert_eq!(sla_state(80_000, opened, deadline), SlaState::OnTrack);
        assert_eq!(sla_state(80_001, opened, deadline), SlaState::Amber);
        assert_eq!(sla_state(100_000, opened, deadline), SlaState::Amber);
        assert_eq!(sla_state(100_001, opened, deadline), SlaState::Breached);
    }

    #[test]
    fn countdown_text_signs_and_pads() {
        assert_eq!(countdown_text(3_723_000), "1:02:03");
        assert_eq!(countdown_text(-61_500), "-0:01:01");
        assert_eq!(countdown_text(0), "0:00:00");
    }

    #[test]
    fn local_day_is_utc_plus_eight() {
        // 2024-11-26 16:30 UTC is 00:30 on the 27th in the county.
        let t = 1_732_638_600_000;
        assert_eq!(clock_text(t), "00:30:00");
        assert_eq!(t - local_day_start_ms(t), 30 * 60_000);
        // 2025-11-26 07:00:00 UTC is 15:00:00 in Ningxia.
        let day = local_day_start_ms(1_764_140_400_000);
        assert_eq!(clock_text(1_764_140_400_000), "15:00:00");
        assert_eq!(1_764_140_400_000 - day, 15 * 3_600_000);
    }
}
