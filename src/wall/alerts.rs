//! Breach alerts as the wall shows them: the ticker's lines, and how urgent each is (the tier
//! decides colour and sound). A leaf: the model and protocol only.

use crate::model::LiveState;
use crate::model::state::{Alert, AlertState};
use crate::protocol::{AlertLevel, Priority, TicketId, TimestampMs};

/// How loudly an alert asks for attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Acknowledged or resolved: shown, silent.
    Quiet,
    /// New at 社区: one chime.
    Attention,
    /// Reached 街道/镇, or a high-priority ticket: two tones.
    Urgent,
    /// Reached 县, or an urgent ticket: an alarm that repeats until acknowledged.
    Critical,
}

impl Tier {
    pub fn label_zh(self) -> &'static str {
        match self {
            Tier::Quiet => "已处理",
            Tier::Attention => "提示",
            Tier::Urgent => "紧急",
            Tier::Critical => "特急",
        }
    }
}

/// The tier of an alert in `state` at `level` on a ticket of `priority`.
pub fn tier(state: AlertState, level: AlertLevel, priority: Priority) -> Tier {
    if state != AlertState::New {
        return Tier::Quiet;
    }
    match (level, priority) {
        (AlertLevel::County, _) | (_, Priority::Urgent) => Tier::Critical,
        (AlertLevel::Town, _) | (_, Priority::High) => Tier::Urgent,
        _ => Tier::Attention,
    }
}

/// One breach alert in the ticker.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertLine {
    pub ticket_id: TicketId,
    pub alert_id: String,
    pub level: AlertLevel,
    pub trigger: u32,
    pub raised_at_ms: TimestampMs,
    pub state: AlertState,
    pub tier: Tier,
    /// Who acknowledged it, and their note.
    pub acked: Option<(String, String)>,
    /// The ticket's category and summary.
    pub what: String,
}

impl AlertLine {
    pub fn of(a: &Alert, live: &LiveState) -> Self {
        let t = live.tickets.get(&a.ticket_id);
        let priority = t.map_or(Priority::Normal, |t| t.priority);
        Self {
            ticket_id: a.ticket_id,
            alert_id: a.id.clone(),
            level: a.level,
            trigger: a.trigger,
            raised_at_ms: a.raised_at_ms,
            state: a.state(),
            tier: tier(a.state(), a.level, priority),
            acked: a.acked.as_ref().map(|k| (k.by.clone(), k.note.clone())),
            what: t.map_or_else(String::new, |t| {
                format!("{} {}", t.category.label_zh(), t.summary)
            }),
        }
    }

    /// The ticker's text.
    pub fn text(&self) -> String {
        let again = if self.trigger > 1 {
            format!(" (第{}次 again)", self.trigger)
        } else {
            String::new()
        };
        let state = match (&self.acked, self.state) {
            (_, AlertState::Resolved) => "已办结 resolved".to_owned(),
            (Some((by, _)), _) => format!("✔ {by} 已确认 acknowledged"),
            (None, _) => "未确认 unacknowledged · A 确认".to_owned(),
        };
        format!(
            "超时 breach #{} {} → {}{again} · {state}",
            self.ticket_id,
            self.what,
            self.level.label_zh()
        )
    }
}

/// The unresolved alerts, the ones needing acknowledgement first (highest tier, newest
/// first), then the acknowledged ones; at most `limit`.
pub fn alert_lines(live: &LiveState, limit: usize) -> Vec<AlertLine> {
    // Ranked on plain keys, lines built for the first `limit` only: a city can hold many.
    type Key = (bool, Tier, TimestampMs, TicketId);
    let mut keyed: Vec<(Key, &Alert)> = live
        .alerts
        .values()
        .filter(|a| a.state() != AlertState::Resolved)
        .map(|a| {
            let priority = live
                .tickets
                .get(&a.ticket_id)
                .map_or(Priority::Normal, |t| t.priority);
            let key = (
                a.acked.is_none(),
                tier(a.state(), a.level, priority),
                a.raised_at_ms,
                a.ticket_id,
            );
            (key, a)
        })
        .collect();
    let order = |x: &(Key, &Alert), y: &(Key, &Alert)| y.0.cmp(&x.0);
    if keyed.len() > limit && limit > 0 {
        keyed.select_nth_unstable_by(limit - 1, order);
    }
    keyed.truncate(limit);
    keyed.sort_by(order);
    keyed
        .into_iter()
        .map(|(_, a)| AlertLine::of(a, live))
        .collect()
}

/// The alert the `A` key acknowledges: the focused ticket's if it needs one, else the most
/// pressing unacknowledged alert.
pub fn ack_target(live: &LiveState, focused_ticket: Option<TicketId>) -> Option<TicketId> {
    let needs = |id: &TicketId| {
        live.alerts
            .get(id)
            .is_some_and(|a| a.state() == AlertState::New)
    };
    focused_ticket.filter(needs).or_else(|| {
        alert_lines(live, 1)
            .first()
            .filter(|l| l.acked.is_none())
            .map(|l| l.ticket_id)
    })
}

/// The loudest tier among alerts raised or climbed since `since_ms` (a new sound is due when
/// this is not `Quiet`).
pub fn loudest_since(live: &LiveState, since_ms: TimestampMs) -> Tier {
    live.alerts
        .values()
        .filter(|a| a.raised_at_ms.max(a.escalated_at_ms.unwrap_or(0)) > since_ms)
        .map(|a| AlertLine::of(a, live).tier)
        .max()
        .unwrap_or(Tier::Quiet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tier_rises_with_the_ladder_and_the_priority_and_falls_silent_when_handled() {
        use AlertLevel::*;
        use Priority::*;
        let new = AlertState::New;
        assert_eq!(tier(new, Community, Normal), Tier::Attention);
        assert_eq!(tier(new, Community, Low), Tier::Attention);
        assert_eq!(tier(new, Community, High), Tier::Urgent);
        assert_eq!(tier(new, Town, Normal), Tier::Urgent);
        assert_eq!(tier(new, County, Low), Tier::Critical);
        assert_eq!(tier(new, Community, Urgent), Tier::Critical);
        for handled in [AlertState::Acknowledged, AlertState::Resolved] {
            assert_eq!(tier(handled, County, Urgent), Tier::Quiet);
        }
    }
}
