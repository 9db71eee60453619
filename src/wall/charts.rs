//! Small charts and figures shared by the board and the panels: 24-hour bars, labelled bars,
//! and changes written with their unit.

use bevy_egui::egui;

use super::theme;
use crate::analytics::HOURS;

const FONT_LABEL: f32 = 17.0;

fn text(s: impl Into<String>, size: f32, color: egui::Color32) -> egui::RichText {
    egui::RichText::new(s.into()).size(size).color(color)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Share,
    Minutes,
    Rating,
    Score,
}

/// The change from `then` to `now`, written in `unit` ("+12", "−3.5 pp", "+2 分").
pub fn change_text(now: Option<f64>, then: Option<f64>, unit: Unit) -> String {
    let (Some(n), Some(t)) = (now, then) else {
        return "—".into();
    };
    // The change as shown (rounded to the digits shown), then its sign: a change that
    // rounds to nothing is ±0, never +0 or −0.
    let (scaled, digits, suffix) = match unit {
        Unit::Count => (n - t, 0, ""),
        Unit::Share => ((n - t) * 100.0, 1, " pp"),
        Unit::Minutes => ((n - t) / 60.0, 1, " 分"),
        Unit::Rating => (n - t, 2, ""),
        Unit::Score => (n - t, 1, ""),
    };
    let k = 10f64.powi(digits);
    let shown = (scaled * k).round() / k;
    let sign = if shown > 0.0 {
        "+"
    } else if shown < 0.0 {
        "−"
    } else {
        "±"
    };
    format!("{sign}{:.*}{suffix}", digits as usize, shown.abs())
}

pub fn ratio(num: &[u32; HOURS], den: &[u32; HOURS]) -> [f64; HOURS] {
    let mut out = [f64::NAN; HOURS];
    for i in 0..HOURS {
        if den[i] > 0 {
            out[i] = f64::from(num[i]) / f64::from(den[i]);
        }
    }
    out
}

/// Open tickets at the end of each hour, from those open now and the hourly openings and
/// resolutions: walking back, an hour's openings were not yet open before it and its
/// resolutions still were.
pub fn backlog(open_now: u32, h: &crate::analytics::Hourly) -> [f64; HOURS] {
    let mut out = [0.0; HOURS];
    let mut open = f64::from(open_now);
    for i in (0..HOURS).rev() {
        out[i] = open.max(0.0);
        open -= f64::from(h.opened[i]) - f64::from(h.resolved[i]);
    }
    out
}

/// An hourly series with gaps (hours without a value).
pub fn known(v: &[Option<u32>; HOURS]) -> [f64; HOURS] {
    v.map(|x| x.map_or(f64::NAN, f64::from))
}

pub fn counts(v: &[u32; HOURS]) -> [f64; HOURS] {
    v.map(f64::from)
}

/// A 24-hour series as bars (gaps where it has no value).
/// `top`: the value a full bar stands for (1 for shares), else the series' largest.
pub fn spark_ui(
    ui: &mut egui::Ui,
    series: &[f64; HOURS],
    height: f32,
    color: egui::Color32,
    top: Option<f64>,
) {
    let (rect, _) = ui.allocate_exact_size(
        egui::vec2(ui.available_width(), height),
        egui::Sense::hover(),
    );
    let p = ui.painter_at(rect);
    p.rect_filled(rect, 2.0, theme::SPARK_BG);
    let max = top
        .unwrap_or_else(|| {
            series
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max)
        })
        .max(1e-9);
    paint_bars(&p, rect, series, max, color);
}

/// One bar an hour across `rect`, `max` at its top (gaps where the series has no value).
pub fn paint_bars(
    p: &egui::Painter,
    rect: egui::Rect,
    series: &[f64; HOURS],
    max: f64,
    color: egui::Color32,
) {
    let w = rect.width() / HOURS as f32;
    for (i, v) in series.iter().enumerate() {
        if !v.is_finite() {
            continue;
        }
        let top = rect.bottom() - rect.height() * (*v / max.max(1e-9)) as f32;
        let x = rect.left() + i as f32 * w;
        p.rect_filled(
            egui::Rect::from_min_max(
                egui::pos2(x + 1.0, top),
                egui::pos2(x + w - 1.0, rect.bottom()),
            ),
            0.0,
            color,
        );
    }
}

/// Tickets by source and by category as rows of (label, today, over 24 h), each in two bar
/// groups with their captions.
pub fn mix_ui(ui: &mut egui::Ui, m: &crate::analytics::Mix, caption: f32) {
    use crate::protocol::{TicketCategory, TicketSource};
    ui.label(text(
        "来源 by source · 今日(亮) / 24小时(暗) today (bright) / 24 h (dim)",
        caption,
        theme::TEXT_DIM,
    ));
    let sources: Vec<(&str, u32, u32)> = TicketSource::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| (s.label_zh(), m.today_by_source[i], m.day_by_source[i]))
        .collect();
    bars_ui(ui, &sources);
    ui.add_space(6.0);
    ui.label(text("类别 by category", caption, theme::TEXT_DIM));
    let categories: Vec<(&str, u32, u32)> = TicketCategory::ALL
        .iter()
        .enumerate()
        .map(|(i, c)| (c.label_zh(), m.today_by_category[i], m.day_by_category[i]))
        .collect();
    bars_ui(ui, &categories);
}

/// Rows of (label, today, over 24 h) as two bars each: 24 h dim, today bright.
pub fn bars_ui(ui: &mut egui::Ui, rows: &[(&str, u32, u32)]) {
    let max = rows.iter().map(|r| r.2.max(r.1)).max().unwrap_or(0).max(1) as f32;
    let label_w = if ui.available_width() > 600.0 {
        130.0
    } else {
        80.0
    };
    for (label, today, day) in rows {
        ui.horizontal(|ui| {
            ui.allocate_ui(egui::vec2(label_w, 20.0), |ui| {
                ui.set_width(label_w);
                ui.label(text(*label, FONT_LABEL, theme::TEXT));
            });
            let width = (ui.available_width() - 110.0).max(40.0);
            let (rect, _) = ui.allocate_exact_size(egui::vec2(width, 18.0), egui::Sense::hover());
            let p = ui.painter_at(rect);
            p.rect_filled(rect, 2.0, theme::SPARK_BG);
            let bar = |n: u32| rect.width() * n as f32 / max;
            p.rect_filled(
                egui::Rect::from_min_size(rect.min, egui::vec2(bar(*day), rect.height())),
                2.0,
                theme::SPARK_OPENED,
            );
            p.rect_filled(
                egui::Rect::from_min_size(
                    rect.min + egui::vec2(0.0, 4.0),
                    egui::vec2(bar(*today), rect.height() - 8.0),
                ),
                2.0,
                theme::ACCENT,
            );
            ui.label(text(format!("{today} / {day}"), FONT_LABEL, theme::TEXT));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{Unit, backlog, change_text};

    #[test]
    fn the_backlog_walks_back_from_the_open_tickets_now() {
        let mut h = crate::analytics::Hourly::default();
        h.opened[23] = 3;
        h.resolved[23] = 1;
        h.opened[22] = 2;
        h.resolved[21] = 4;
        let b = backlog(10, &h);
        // Now 10; before this hour 10 − 3 + 1 = 8; before 22: 8 − 2 = 6; before 21: 6 + 4 = 10.
        assert_eq!(
            (b[23], b[22], b[21], b[20], b[0]),
            (10.0, 8.0, 6.0, 10.0, 10.0)
        );
    }

    #[test]
    fn changes_are_written_in_the_kpis_unit_with_a_sign() {
        assert_eq!(change_text(Some(120.0), Some(100.0), Unit::Count), "+20");
        assert_eq!(change_text(Some(0.92), Some(0.955), Unit::Share), "−3.5 pp");
        assert_eq!(
            change_text(Some(600.0), Some(480.0), Unit::Minutes),
            "+2.0 分"
        );
        assert_eq!(change_text(Some(4.2), Some(4.2), Unit::Rating), "±0.00");
        assert_eq!(change_text(Some(90.0), None, Unit::Score), "—");
        assert_eq!(change_text(None, Some(1.0), Unit::Count), "—");
        // What rounds to nothing is ±0, whichever side it fell.
        assert_eq!(change_text(Some(10.4), Some(10.0), Unit::Count), "±0");
        assert_eq!(change_text(Some(0.9), Some(0.9004), Unit::Share), "±0.0 pp");
        assert_eq!(change_text(Some(10.6), Some(10.0), Unit::Count), "+1");
    }
}
