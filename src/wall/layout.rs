//! Where everything goes on the canvas: `wall.toml` (the physical panels of a spliced wall,
//! their bezels, the side panels' cards, the start-up settings) and the layout computed from it
//! — the physical tiles, the seams between them, the map's region and the side panels' tiles.
//! Pure geometry: no bevy systems here (the board draws the cards, the camera frames the map).
//!
//! Without a `wall.toml` the wall keeps the desk layout (a top bar, the ranking column on the
//! left, the drill-down on the right). With one, the canvas is the grid of panels: on a wall of
//! three or more panel columns the outer columns hold the side panels and the inner ones the
//! map; on one or two columns the side panels take a share of the edge panels. Cards are laid
//! out inside one physical panel each, so nothing readable straddles a seam; map labels that
//! would are left out.

use std::path::Path;

use bevy_egui::egui::{Rect, pos2, vec2};
use serde::Deserialize;

/// What a side panel can show, top to bottom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Card {
    /// The county's KPIs: value, 24-hour sparkline, change against yesterday and last week.
    Kpis,
    /// Tickets opened and resolved per hour over the last 24 hours.
    Trends,
    /// Report → on site and the 20-minute repair pledge, with its hourly share.
    Pledge,
    /// Tickets by source and by category, today and over 24 hours.
    Mix,
    /// The communities in the configured ranking order, with their assessment score.
    Ranking,
    /// Breach alerts, newest first.
    Alerts,
    /// Incidents in progress with their timers, and those closed in the last 24 hours.
    Incidents,
    /// The volunteer teams: members on duty and responding, the busiest first.
    Teams,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanvasConfig {
    pub width: Option<u32>,
    pub height: Option<u32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelsConfig {
    pub columns: u32,
    pub rows: u32,
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub bezel: u32,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    pub scale: Option<f32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LayersConfig {
    pub heat: bool,
    pub volunteers: bool,
    pub incidents: bool,
    pub grid_labels: bool,
}

impl Default for LayersConfig {
    fn default() -> Self {
        Self {
            heat: true,
            volunteers: true,
            incidents: true,
            grid_labels: true,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SideConfig {
    pub left: Vec<Card>,
    pub right: Vec<Card>,
    /// On a wall of one or two panel columns: the share of an edge panel a side takes.
    pub share: f32,
}

impl Default for SideConfig {
    fn default() -> Self {
        Self {
            left: vec![Card::Kpis, Card::Trends, Card::Pledge, Card::Mix],
            right: vec![Card::Ranking, Card::Incidents, Card::Teams, Card::Alerts],
            share: 0.25,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RankingConfig {
    pub order: crate::analytics::RankOrder,
    pub rows: u32,
}

impl Default for RankingConfig {
    fn default() -> Self {
        Self {
            order: crate::analytics::RankOrder::Attention,
            rows: 15,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TourConfig {
    pub after_min: f64,
}

impl Default for TourConfig {
    fn default() -> Self {
        Self { after_min: 5.0 }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SoundsConfig {
    pub mute: bool,
}

/// `wall.toml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WallConfig {
    #[serde(default)]
    pub canvas: CanvasConfig,
    pub panels: Option<PanelsConfig>,
    #[serde(default)]
    pub ui: UiConfig,
    #[serde(default)]
    pub layers: LayersConfig,
    #[serde(default)]
    pub side: SideConfig,
    #[serde(default)]
    pub ranking: RankingConfig,
    #[serde(default)]
    pub tour: TourConfig,
    #[serde(default)]
    pub sounds: SoundsConfig,
}

/// A `wall.toml` that cannot be used: which key, what it holds, what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: `{key}` = {value}: {allowed}")]
    Range {
        path: String,
        key: &'static str,
        value: String,
        allowed: String,
    },
}

fn check<T: PartialOrd + std::fmt::Display>(
    path: &str,
    key: &'static str,
    value: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    if value >= lo && value <= hi {
        return Ok(());
    }
    Err(ConfigError::Range {
        path: path.into(),
        key,
        value: value.to_string(),
        allowed: format!("must be {lo}–{hi}"),
    })
}

impl WallConfig {
    /// Read and check a `wall.toml`: every error names the key and what is allowed.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// [`Self::load`] of a text (`path` names it in errors).
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let c: Self = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.into(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        c.validate(path)?;
        Ok(c)
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        if let Some(p) = &self.panels {
            check(path, "panels.columns", p.columns, 1, 16)?;
            check(path, "panels.rows", p.rows, 1, 8)?;
            check(path, "panels.width", p.width, 320, 7680)?;
            check(path, "panels.height", p.height, 240, 4320)?;
            check(path, "panels.bezel", p.bezel, 0, 200)?;
        }
        for (key, v) in [
            ("canvas.width", self.canvas.width),
            ("canvas.height", self.canvas.height),
        ] {
            if let Some(v) = v {
                check(path, key, v, 320, 32_768)?;
            }
        }
        if let (Some(p), (w, h)) = (&self.panels, self.panel_canvas()) {
            for (key, given, want) in [
                ("canvas.width", self.canvas.width, w),
                ("canvas.height", self.canvas.height, h),
            ] {
                if let Some(given) = given.filter(|&g| g != want) {
                    return Err(ConfigError::Range {
                        path: path.into(),
                        key,
                        value: given.to_string(),
                        allowed: format!(
                            "must be {want}, the {} × {} panels of {} × {} px with {} px bezels (or leave it out)",
                            p.columns, p.rows, p.width, p.height, p.bezel
                        ),
                    });
                }
            }
        }
        if self.panels.is_none() && (self.canvas.width.is_none() || self.canvas.height.is_none()) {
            return Err(ConfigError::Range {
                path: path.into(),
                key: "panels",
                value: "(missing)".into(),
                allowed: "give [panels] (columns, rows, width, height, bezel) or both canvas.width and canvas.height".into(),
            });
        }
        if let Some(s) = self.ui.scale {
            check(path, "ui.scale", s, 0.5, 4.0)?;
        }
        check(path, "side.share", self.side.share, 0.15, 0.4)?;
        let (w, h) = self.panel_canvas();
        if w > 32_768 || h > 32_768 {
            return Err(ConfigError::Range {
                path: path.into(),
                key: "panels",
                value: format!("a canvas of {w} × {h}"),
                allowed: "the panels with their bezels must make at most 32 768 px a side".into(),
            });
        }
        // Room for the cards: a side strip of a one- or two-column wall, a panel's height.
        let p = self.panels();
        let scale = self.ui_scale();
        let side = if p.columns >= 3 {
            p.width as f32
        } else {
            p.width as f32 * self.side.share
        } / scale;
        if side < 200.0 || p.height as f32 / scale < 240.0 {
            return Err(ConfigError::Range {
                path: path.into(),
                key: "ui.scale",
                value: format!("{scale}"),
                allowed: format!(
                    "too large for these panels: the side panels would be {side:.0} px wide at this scale (at least 200); lower ui.scale or raise side.share"
                ),
            });
        }
        let mut cards = self.side.left.clone();
        cards.extend(&self.side.right);
        for (i, c) in cards.iter().enumerate() {
            if cards[..i].contains(c) {
                return Err(ConfigError::Range {
                    path: path.into(),
                    key: "side",
                    value: format!("{c:?} twice"),
                    allowed: "each card may show once, on the left or the right".into(),
                });
            }
        }
        check(path, "ranking.rows", self.ranking.rows, 3, 60)?;
        check(path, "tour.after_min", self.tour.after_min, 0.0, 1440.0)?;
        Ok(())
    }

    /// The canvas the panels make with their bezels, pixels.
    fn panel_canvas(&self) -> (u32, u32) {
        match &self.panels {
            Some(p) => (
                p.columns * p.width + (p.columns - 1) * p.bezel,
                p.rows * p.height + (p.rows - 1) * p.bezel,
            ),
            None => (
                self.canvas.width.unwrap_or(1920),
                self.canvas.height.unwrap_or(1080),
            ),
        }
    }

    /// The physical panels: given, or one panel the size of the canvas.
    pub fn panels(&self) -> PanelsConfig {
        self.panels.clone().unwrap_or_else(|| {
            let (width, height) = self.panel_canvas();
            PanelsConfig {
                columns: 1,
                rows: 1,
                width,
                height,
                bezel: 0,
            }
        })
    }

    /// Canvas size, pixels (the window's size).
    pub fn canvas(&self) -> (u32, u32) {
        self.panel_canvas()
    }

    /// UI scale: given, or the panel height over 720 (1.5 on panels of 1 080 lines).
    pub fn ui_scale(&self) -> f32 {
        self.ui
            .scale
            .unwrap_or_else(|| (self.panels().height as f32 / 720.0).clamp(0.75, 4.0))
    }
}

/// Physical pixels kept clear of text on each side of a seam (beyond the bezel itself).
pub const SEAM_CLEARANCE_PX: f32 = 6.0;
/// Inset of the cards from their panel's edges, logical pixels.
pub const TILE_MARGIN: f32 = 14.0;

/// Where everything goes, logical pixels (physical ÷ UI scale).
#[derive(Clone, Debug, PartialEq, bevy::prelude::Resource)]
pub struct Layout {
    pub canvas: Rect,
    /// The side-panel layout of a `wall.toml`, or the desk layout.
    pub wall: bool,
    /// Physical panels, row by row.
    pub tiles: Vec<Rect>,
    /// Columns of `tiles`.
    pub columns: usize,
    /// Bands that must stay clear of text: the bezels and their clearance.
    pub seams: Vec<Rect>,
    /// The map's unobstructed region.
    pub map: Rect,
    /// Side panels' tiles (one per physical panel they use), top to bottom.
    pub left: Vec<Rect>,
    pub right: Vec<Rect>,
    pub left_cards: Vec<Card>,
    pub right_cards: Vec<Card>,
}

impl Layout {
    /// The desk layout of a window: the map below the top bar, right of the ranking column.
    pub fn desk(width: f32, height: f32) -> Self {
        let canvas = Rect::from_min_size(pos2(0.0, 0.0), vec2(width, height));
        Self {
            canvas,
            wall: false,
            tiles: vec![canvas],
            columns: 1,
            seams: Vec::new(),
            map: Rect::from_min_max(
                pos2(super::theme::RANKING_PX, super::theme::TOP_BAR_PX),
                canvas.max,
            ),
            left: Vec::new(),
            right: Vec::new(),
            left_cards: Vec::new(),
            right_cards: Vec::new(),
        }
    }

    /// The layout of `config` on its canvas, in logical pixels at `scale`.
    pub fn of_wall(config: &WallConfig, scale: f32) -> Self {
        let p = config.panels();
        let (cols, rows) = (p.columns as usize, p.rows as usize);
        let s = scale.max(0.1);
        let (pw, ph, b) = (p.width as f32 / s, p.height as f32 / s, p.bezel as f32 / s);
        let (cw, ch) = config.canvas();
        let canvas = Rect::from_min_size(pos2(0.0, 0.0), vec2(cw as f32 / s, ch as f32 / s));
        let tile = |c: usize, r: usize| {
            Rect::from_min_size(pos2(c as f32 * (pw + b), r as f32 * (ph + b)), vec2(pw, ph))
        };
        let tiles: Vec<Rect> = (0..rows)
            .flat_map(|r| (0..cols).map(move |c| (c, r)))
            .map(|(c, r)| tile(c, r))
            .collect();
        let clear = SEAM_CLEARANCE_PX / s;
        let mut seams = Vec::new();
        for c in 1..cols {
            let x = tile(c, 0).min.x;
            seams.push(Rect::from_min_max(
                pos2(x - b - clear, canvas.min.y),
                pos2(x + clear, canvas.max.y),
            ));
        }
        for r in 1..rows {
            let y = tile(0, r).min.y;
            seams.push(Rect::from_min_max(
                pos2(canvas.min.x, y - b - clear),
                pos2(canvas.max.x, y + clear),
            ));
        }
        let inset = |r: Rect| r.shrink(TILE_MARGIN);
        let (left, right, map) = if cols >= 3 {
            let left: Vec<Rect> = (0..rows).map(|r| inset(tile(0, r))).collect();
            let right: Vec<Rect> = (0..rows).map(|r| inset(tile(cols - 1, r))).collect();
            let map = Rect::from_min_max(
                pos2(tile(1, 0).min.x, canvas.min.y),
                pos2(tile(cols - 2, 0).max.x, canvas.max.y),
            );
            (left, right, map)
        } else {
            let side = pw * config.side.share;
            let strip = |c: usize, r: usize, from_left: bool| {
                let t = tile(c, r);
                inset(if from_left {
                    Rect::from_min_max(t.min, pos2(t.min.x + side, t.max.y))
                } else {
                    Rect::from_min_max(pos2(t.max.x - side, t.min.y), t.max)
                })
            };
            let left: Vec<Rect> = (0..rows).map(|r| strip(0, r, true)).collect();
            let right: Vec<Rect> = (0..rows).map(|r| strip(cols - 1, r, false)).collect();
            let map = Rect::from_min_max(
                pos2(canvas.min.x + side, canvas.min.y),
                pos2(canvas.max.x - side, canvas.max.y),
            );
            (left, right, map)
        };
        Self {
            canvas,
            wall: true,
            tiles,
            columns: cols,
            seams,
            map,
            left,
            right,
            left_cards: config.side.left.clone(),
            right_cards: config.side.right.clone(),
        }
    }

    /// Whether `r` overlaps a seam band (touching its edge does not count).
    pub fn crosses_seam(&self, r: Rect) -> bool {
        self.seams.iter().any(|s| {
            r.min.x < s.max.x && r.max.x > s.min.x && r.min.y < s.max.y && r.max.y > s.min.y
        })
    }

    /// The map tiles (physical panels the map region covers most of), row by row.
    fn map_tiles(&self) -> Vec<Rect> {
        self.tiles
            .iter()
            .filter_map(|t| {
                let i = t.intersect(self.map);
                (i.is_positive() && i.width() >= t.width() * 0.3).then_some(i)
            })
            .collect()
    }

    /// Where a floating overlay goes: inside one panel of the map, never across a seam.
    pub fn dock(&self, dock: Dock) -> Rect {
        let tiles = self.map_tiles();
        let first = tiles.first().copied().unwrap_or(self.map);
        let top_row: Vec<Rect> = tiles
            .iter()
            .copied()
            .filter(|t| (t.min.y - first.min.y).abs() < 1.0)
            .collect();
        let last_row: Vec<Rect> = tiles
            .iter()
            .copied()
            .filter(|t| (t.max.y - tiles.last().map_or(first, |l| *l).max.y).abs() < 1.0)
            .collect();
        let pick = |row: &[Rect], last: bool| {
            let r = if last { row.last() } else { row.first() };
            r.copied().unwrap_or(first).shrink(TILE_MARGIN)
        };
        match dock {
            Dock::TopLeft => pick(&top_row, false),
            Dock::TopRight => pick(&top_row, true),
            Dock::BottomLeft => pick(&last_row, false),
            Dock::BottomRight => pick(&last_row, true),
        }
    }

    /// Whether a side shows this card (the floating overlay it replaces is then hidden).
    pub fn shows(&self, card: Card) -> bool {
        self.wall && (self.left_cards.contains(&card) || self.right_cards.contains(&card))
    }

    /// Each side tile with the cards it holds: a side's cards spread in order over its tiles.
    pub fn card_tiles(&self) -> Vec<(Rect, Vec<Card>)> {
        let mut out = Vec::new();
        for (tiles, cards) in [
            (&self.left, &self.left_cards),
            (&self.right, &self.right_cards),
        ] {
            let n = tiles.len().max(1);
            for (i, t) in tiles.iter().enumerate() {
                let (a, b) = (i * cards.len() / n, (i + 1) * cards.len() / n);
                out.push((*t, cards[a..b].to_vec()));
            }
        }
        out
    }
}

/// Corners of the map's panels where the floating overlays go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dock {
    TopLeft,
    TopRight,
    BottomLeft,
    BottomRight,
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../assets/wall.example.toml");

    #[test]
    fn the_example_is_a_four_by_two_wall_with_seams_between_its_panels() {
        let c = WallConfig::parse(EXAMPLE, "wall.example.toml").unwrap();
        assert_eq!(c.canvas(), (4 * 1920 + 3 * 12, 2 * 1080 + 12));
        assert_eq!(c.ui_scale(), 1.5);
        let l = Layout::of_wall(&c, 1.0);
        assert_eq!(l.tiles.len(), 8);
        assert_eq!(l.tiles[1].min.x, 1932.0);
        assert_eq!(l.tiles[4].min.y, 1092.0);
        assert_eq!(l.seams.len(), 3 + 1);
        // The map takes the two middle columns; the sides the outer ones.
        assert_eq!(
            (l.map.min.x, l.map.max.x),
            (1932.0, 1932.0 + 1920.0 + 12.0 + 1920.0)
        );
        assert!(l.left.iter().chain(&l.right).all(|r| !l.crosses_seam(*r)));
        for d in [
            Dock::TopLeft,
            Dock::TopRight,
            Dock::BottomLeft,
            Dock::BottomRight,
        ] {
            assert!(!l.crosses_seam(l.dock(d)), "{d:?}");
        }
        // A label across the middle seam crosses; one beside it does not.
        let seam_x = l.tiles[2].min.x;
        assert!(l.crosses_seam(Rect::from_min_size(
            pos2(seam_x - 30.0, 100.0),
            vec2(40.0, 20.0)
        )));
        assert!(!l.crosses_seam(Rect::from_min_size(
            pos2(seam_x + 10.0, 100.0),
            vec2(40.0, 20.0)
        )));
        let held: Vec<Card> = l.card_tiles().into_iter().flat_map(|(_, c)| c).collect();
        assert_eq!(
            held.len(),
            c.side.left.len() + c.side.right.len(),
            "every card placed once"
        );
    }

    #[test]
    fn a_single_screen_keeps_its_sides_inside_the_one_panel() {
        let c = WallConfig::parse(
            "[canvas]\nwidth = 1920\nheight = 1080\n[ui]\nscale = 1.0\n",
            "one.toml",
        )
        .unwrap();
        let l = Layout::of_wall(&c, c.ui_scale());
        assert!(l.seams.is_empty());
        assert_eq!(l.left.len(), 1);
        assert!((l.map.width() - 1920.0 * 0.5).abs() < 0.5, "{:?}", l.map);
    }

    #[test]
    fn bad_values_name_the_key_and_what_is_allowed() {
        let err = |t: &str| WallConfig::parse(t, "w.toml").unwrap_err().to_string();
        let panels = "[panels]\ncolumns = 4\nrows = 2\nwidth = 1920\nheight = 1080\nbezel = 12\n";
        assert_eq!(
            err(&panels.replace("columns = 4", "columns = 0")),
            "w.toml: `panels.columns` = 0: must be 1–16"
        );
        assert!(
            err(&format!("{panels}[ui]\nscale = 9\n")).contains("`ui.scale` = 9: must be 0.5–4"),
        );
        assert!(
            err(&format!("[canvas]\nwidth = 7680\n{panels}"))
                .contains("`canvas.width` = 7680: must be 7716"),
        );
        let unknown = err(&format!("{panels}[side]\nleft = [\"kpis\", \"weather\"]\n"));
        assert!(
            unknown.contains("weather") && unknown.contains("kpis"),
            "{unknown}"
        );
        let typo = err(&format!("{panels}[layers]\nheatmap = true\n"));
        assert!(typo.contains("heatmap"), "{typo}");
        assert!(err("[ui]\nscale = 1.5\n").contains("`panels`"));
        assert!(
            err(&panels
                .replace("columns = 4", "columns = 16")
                .replace("width = 1920", "width = 7680"))
            .contains("at most 32 768"),
        );
        assert!(
            err("[canvas]\nwidth = 800\nheight = 600\n[ui]\nscale = 3\n")
                .contains("`ui.scale` = 3"),
        );
        assert!(
            err(&format!(
                "{panels}[side]\nleft = [\"kpis\"]\nright = [\"kpis\"]\n"
            ))
            .contains("Kpis twice"),
        );
    }
}
