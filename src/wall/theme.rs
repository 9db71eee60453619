//! Every colour and size the wall uses. Nothing else in the wall hard-codes a colour (clippy
//! refuses colour constructors elsewhere: `clippy.toml`).
#![allow(clippy::disallowed_methods)]

use bevy::prelude::Color;
use bevy_egui::egui::Color32;

/// Background behind the county.
pub const BACKGROUND: Color = Color::srgb(0.035, 0.05, 0.08);
/// County land (outside built-up areas).
pub const COUNTY_FILL: Color = Color::srgb(0.07, 0.10, 0.15);
pub const COUNTY_BORDER: Color = Color::srgb(0.35, 0.75, 0.95);
pub const COMMUNITY_BORDER: Color = Color::srgb(0.55, 0.62, 0.72);
pub const GRID_BORDER: Color = Color::srgb(0.16, 0.20, 0.27);

/// Grid fills by state.
pub const GRID_QUIET: [f32; 4] = [0.10, 0.15, 0.22, 1.0];
pub const GRID_OPEN: [f32; 4] = [0.13, 0.32, 0.55, 1.0];
pub const GRID_AT_RISK: [f32; 4] = [0.85, 0.60, 0.10, 1.0];
pub const GRID_OVERDUE: [f32; 4] = [0.80, 0.14, 0.16, 1.0];

/// Volunteer markers.
pub const VOLUNTEER_AVAILABLE: [f32; 4] = [0.25, 0.95, 0.55, 1.0];
pub const VOLUNTEER_RESPONDING: [f32; 4] = [1.0, 0.55, 0.10, 1.0];
/// Marker size on screen, logical pixels (the team ring; the status fill is 60 % of it).
pub const VOLUNTEER_MARKER_PX: f32 = 9.0;
/// The status fill's share of a marker's width; the team ring is the rest.
pub const VOLUNTEER_FILL_FRACTION: f32 = 0.6;

/// [`team_color`] as a bevy colour (track lines).
pub fn team_color_bevy(team_id: u32) -> Color {
    let [r, g, b, _] = team_color(team_id);
    Color::srgb(r, g, b)
}

/// A distinct ring colour per team (golden-angle hues), sRGB components.
pub fn team_color(team_id: u32) -> [f32; 4] {
    let hue = (team_id as f32 * 137.508) % 360.0;
    let c = Color::hsl(hue, 0.75, 0.62).to_srgba();
    [c.red, c.green, c.blue, 1.0]
}

pub const INCIDENT: Color = Color::srgb(1.0, 0.22, 0.18);
pub const INCIDENT_DRILL: Color = Color::srgb(1.0, 0.75, 0.2);
pub const MOBILIZATION_LINE: Color = Color::srgba(1.0, 0.6, 0.3, 0.8);

/// The selection on the map: grid / point, community, and a pre-empting flash.
pub const SELECT: Color = Color::srgb(1.0, 1.0, 1.0);
pub const SELECT_COMMUNITY: Color = Color::srgb(0.45, 0.85, 1.0);
pub const FLASH: Color = Color::srgb(1.0, 0.3, 0.25);

/// Border widths on screen, pixels…
pub const COUNTY_BORDER_PX: f32 = 3.0;
pub const COMMUNITY_BORDER_PX: f32 = 2.0;
pub const GRID_BORDER_PX: f32 = 1.0;
/// …but never wider than this on the ground, metres (so grid borders fade at county zoom).
pub const COUNTY_BORDER_M: f32 = f32::INFINITY;
pub const COMMUNITY_BORDER_M: f32 = 22.0;
pub const GRID_BORDER_M: f32 = 5.0;

/// egui (panels, labels, banners).
pub const TEXT: Color32 = Color32::from_rgb(225, 232, 240);
pub const TEXT_DIM: Color32 = Color32::from_rgb(140, 155, 175);
pub const PANEL_BG: Color32 = Color32::from_rgb(12, 18, 28);
/// Behind the cards of a spliced wall's side panels.
pub const BOARD_BG: Color32 = Color32::from_rgb(7, 11, 18);
pub const GOOD: Color32 = Color32::from_rgb(70, 220, 120);
pub const WARN: Color32 = Color32::from_rgb(240, 170, 40);
pub const BAD: Color32 = Color32::from_rgb(235, 60, 55);
/// The banner that says the feed is not live.
pub const BANNER_BAD: Color32 = Color32::from_rgb(200, 30, 30);
pub const BANNER_TEXT: Color32 = Color32::WHITE;
pub const LABEL_COMMUNITY: Color32 = Color32::from_rgb(235, 240, 250);
pub const LABEL_GRID: Color32 = Color32::from_rgb(170, 185, 205);
pub const LABEL_HALO: Color32 = Color32::from_rgba_premultiplied(0, 0, 0, 170);
/// Operators' notes: pins on the map, marks on the time bar, panel headings.
pub const NOTE: Color32 = Color32::from_rgb(200, 130, 255);

/// Links in panels (breadcrumbs, rows) and section headings.
pub const LINK: Color32 = Color32::from_rgb(120, 190, 255);
pub const ACCENT: Color32 = Color32::from_rgb(110, 200, 235);
/// The hourly sparkline: background, opened bars, resolved line.
pub const SPARK_BG: Color32 = Color32::from_rgb(20, 28, 42);
pub const SPARK_OPENED: Color32 = Color32::from_rgb(70, 110, 170);
pub const SPARK_RESOLVED: Color32 = Color32::from_rgb(70, 220, 120);
/// Toasts (export written, tour stopped).
pub const TOAST_BG: Color32 = Color32::from_rgb(25, 70, 45);
/// The alert ticker.
pub const TICKER_BG: Color32 = Color32::from_rgba_premultiplied(60, 20, 20, 235);

/// Panel widths, logical pixels before `--ui-scale`: the ranking column (left) and the
/// drill-down panel (right). The camera fits selections into the map between them.
pub const RANKING_PX: f32 = 330.0;
pub const DRILL_PX: f32 = 470.0;

/// Text sizes for a wall read from 5 m, logical pixels (scaled by `--ui-scale`).
pub const FONT_BAR: f32 = 22.0;
pub const FONT_BANNER: f32 = 30.0;
pub const FONT_LABEL_COMMUNITY: f32 = 18.0;
pub const FONT_LABEL_GRID: f32 = 13.0;
pub const FONT_PANEL_TITLE: f32 = 24.0;
pub const FONT_PANEL: f32 = 17.0;
pub const FONT_PANEL_SMALL: f32 = 14.0;

/// egui colour of a grid state (legend).
pub fn rgba32(c: [f32; 4]) -> Color32 {
    Color32::from_rgb(
        (c[0] * 255.0) as u8,
        (c[1] * 255.0) as u8,
        (c[2] * 255.0) as u8,
    )
}

/// The heatmap ramp as the legend shows it (sRGB of `shaders/heat.wgsl`'s linear stops).
pub const HEAT_RAMP: [Color32; 4] = [
    Color32::from_rgb(25, 63, 180),
    Color32::from_rgb(0, 195, 231),
    Color32::from_rgb(255, 225, 40),
    Color32::from_rgb(255, 56, 25),
];

/// Height of the top bar, logical pixels.
pub const TOP_BAR_PX: f32 = 100.0;

/// Wall-wide UI scale (`--ui-scale`).
#[derive(bevy::prelude::Resource, Clone, Copy, Debug)]
pub struct UiScale(pub f32);
