//! Operators' notes (annotations) on the wall: which show on the map at the moment shown,
//! which belong to a panel, the pin and its label, a panel's list of notes, and a click on a
//! note taking the timeline to its moment. A leaf: it knows the protocol and the theme.
//!
//! The notes come from the live model even while a past moment is shown, so a note written
//! afterwards about that moment shows with it.

use std::collections::BTreeMap;

use bevy::prelude::Resource;
use bevy_egui::egui;

use super::theme;
use crate::model::sla::clock_text;
use crate::protocol::entities::{Annotation, Place};
use crate::protocol::{GridId, IncidentId, TicketId, TimestampMs};

/// A note shows on the map from its moment until this long after it.
pub const MAP_WINDOW_MS: TimestampMs = 24 * 3_600_000;
/// Characters of a note's text on its map label.
pub const MAP_LABEL_CHARS: usize = 18;

/// Notes a panel lists before "… more".
const SECTION_ROWS: usize = 6;

/// A moment asked for by a click on a note (in a panel or on the time bar); the timeline goes
/// there and takes it.
#[derive(Resource, Default, Debug)]
pub struct GoTo(pub Option<TimestampMs>);

/// The notes that show on the map at `shown_ms`: about a moment within the last
/// [`MAP_WINDOW_MS`] (not after it), the latest moment first.
pub fn on_map(notes: &BTreeMap<String, Annotation>, shown_ms: TimestampMs) -> Vec<&Annotation> {
    let mut v: Vec<&Annotation> = notes
        .values()
        .filter(|n| n.moment_ms <= shown_ms && n.moment_ms > shown_ms - MAP_WINDOW_MS)
        .collect();
    v.sort_by(|a, b| b.moment_ms.cmp(&a.moment_ms).then(a.id.cmp(&b.id)));
    v
}

/// What a panel lists: the notes on a grid (pinned to it, or to anything in it), a ticket, an
/// incident, or any of a community's grids.
#[derive(Clone, Copy, Debug)]
pub enum Of<'a> {
    Grids(&'a [GridId]),
    Ticket(TicketId),
    Incident(IncidentId),
}

/// The notes of `of`, the latest moment first.
pub fn of<'a>(notes: &'a BTreeMap<String, Annotation>, of: Of<'_>) -> Vec<&'a Annotation> {
    let mut v: Vec<&Annotation> = notes
        .values()
        .filter(|n| match of {
            Of::Grids(gs) => n.grid_id.is_some_and(|g| gs.contains(&g)),
            Of::Ticket(t) => n.place == Place::Ticket { ticket_id: t },
            Of::Incident(i) => n.place == Place::Incident { incident_id: i },
        })
        .collect();
    v.sort_by(|a, b| b.moment_ms.cmp(&a.moment_ms).then(a.id.cmp(&b.id)));
    v
}

/// The first `n` characters of `text`, with an ellipsis when cut.
pub fn short(text: &str, n: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(n).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// A note's map label: its moment and the start of its text.
pub fn map_label(n: &Annotation) -> String {
    format!(
        "{} {}",
        clock_text(n.moment_ms),
        short(&n.text, MAP_LABEL_CHARS)
    )
}

/// The pin: a filled marker with its point at `tip` (screen pixels).
pub fn paint_pin(painter: &egui::Painter, tip: egui::Pos2) {
    let head = tip + egui::vec2(0.0, -14.0);
    painter.add(egui::Shape::convex_polygon(
        vec![
            tip,
            head + egui::vec2(-6.0, 2.0),
            head + egui::vec2(6.0, 2.0),
        ],
        theme::NOTE,
        egui::Stroke::NONE,
    ));
    painter.circle(
        head,
        7.0,
        theme::NOTE,
        egui::Stroke::new(1.5, theme::LABEL_HALO),
    );
    painter.circle_filled(head, 2.5, theme::PANEL_BG);
}

/// A panel's notes: moment, who, text; a click on one asks for its moment.
pub fn section_ui(ui: &mut egui::Ui, notes: &[&Annotation]) -> Option<TimestampMs> {
    if notes.is_empty() {
        return None;
    }
    let mut go = None;
    ui.label(
        egui::RichText::new(format!("标注 notes ({})", notes.len()))
            .size(theme::FONT_PANEL)
            .color(theme::NOTE)
            .strong(),
    );
    for n in notes.iter().take(SECTION_ROWS) {
        let line = egui::RichText::new(format!(
            "{} · {} · {}",
            clock_text(n.moment_ms),
            n.by,
            n.text
        ))
        .size(theme::FONT_PANEL_SMALL)
        .color(theme::TEXT);
        if ui
            .add(egui::Label::new(line).wrap().sense(egui::Sense::click()))
            .on_hover_text("回放到此刻 replay this moment")
            .clicked()
        {
            go = Some(n.moment_ms);
        }
    }
    if notes.len() > SECTION_ROWS {
        ui.label(
            egui::RichText::new(format!("… {} more", notes.len() - SECTION_ROWS))
                .size(theme::FONT_PANEL_SMALL)
                .color(theme::TEXT_DIM),
        );
    }
    ui.separator();
    go
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LonLat;

    const H: TimestampMs = 3_600_000;

    fn note(id: &str, moment_ms: TimestampMs, place: Place, grid_id: Option<GridId>) -> Annotation {
        Annotation {
            id: id.into(),
            moment_ms,
            place,
            pos: LonLat::new(106.5, 38.9),
            grid_id,
            text: "积水".into(),
            by: "值班员".into(),
            at_ms: moment_ms + H,
        }
    }

    fn notes() -> BTreeMap<String, Annotation> {
        [
            note("a", 10 * H, Place::Grid { grid_id: 1 }, Some(1)),
            note("b", 20 * H, Place::Ticket { ticket_id: 7 }, Some(1)),
            note("c", 30 * H, Place::Incident { incident_id: 3 }, Some(2)),
            note("d", 40 * H, Place::Grid { grid_id: 2 }, Some(2)),
        ]
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect()
    }

    fn ids(v: &[&Annotation]) -> Vec<String> {
        v.iter().map(|n| n.id.clone()).collect()
    }

    #[test]
    fn the_map_shows_the_notes_of_the_day_before_the_moment_shown() {
        let n = notes();
        // At 30 h: c (its moment), b (10 h before); a is 20 h before: also within the day.
        assert_eq!(ids(&on_map(&n, 30 * H)), ["c", "b", "a"]);
        // At 35 h: a is 25 h old, gone; d is not yet.
        assert_eq!(ids(&on_map(&n, 35 * H)), ["c", "b"]);
        // Before any moment: none.
        assert!(on_map(&n, 5 * H).is_empty());
    }

    #[test]
    fn a_panel_lists_the_notes_of_its_grid_ticket_or_incident() {
        let n = notes();
        assert_eq!(ids(&of(&n, Of::Grids(&[1]))), ["b", "a"]);
        assert_eq!(ids(&of(&n, Of::Grids(&[1, 2]))), ["d", "c", "b", "a"]);
        assert_eq!(ids(&of(&n, Of::Ticket(7))), ["b"]);
        assert_eq!(ids(&of(&n, Of::Incident(3))), ["c"]);
        assert!(of(&n, Of::Ticket(8)).is_empty());
    }

    #[test]
    fn long_texts_are_cut_with_an_ellipsis() {
        assert_eq!(short("一二三", 3), "一二三");
        assert_eq!(short("一二三四", 3), "一二三…");
    }
}
