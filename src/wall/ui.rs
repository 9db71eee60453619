//! The wall's egui layer: CJK fonts, top bar with county KPIs and feed state, the feed-down
//! banner, map labels (by zoom, without overlaps), incident timers, legend and help.
//! Panels are plain functions over a view struct; the bevy systems are thin adapters.

use std::time::Instant;

use bevy::prelude::*;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::camera::SHORTCUTS;
use super::feed::{FeedState, WallModel};
use super::nav::Layers;
use super::nav::WallCamera;
use super::nav::world;
use super::stats::{Presence, Stats};
use super::theme;
pub use super::theme::{TOP_BAR_PX, UiScale};
use crate::analytics::Figures;
use crate::model::sla::clock_text;
use crate::protocol::TimestampMs;

/// The bundled GB2312 subset of Noto Sans SC.
const FONT_SUBSET: &[u8] = include_bytes!("../../assets/fonts/NotoSansSC-GB2312.otf");
/// The full system font, used as a fallback for rare characters when installed.
const SYSTEM_CJK: &str = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";

/// Where the feed banner starts, logical pixels from the top (below the top bar).
const BANNER_TOP_PX: f32 = TOP_BAR_PX + 8.0;

/// Install the CJK fonts into egui's proportional and monospace families.
pub fn install_fonts(ctx: &egui::Context) {
    let mut fonts = egui::FontDefinitions::default();
    fonts.font_data.insert(
        "noto-sc".into(),
        std::sync::Arc::new(egui::FontData::from_static(FONT_SUBSET)),
    );
    let mut names = vec!["noto-sc".to_owned()];
    if let Ok(bytes) = std::fs::read(SYSTEM_CJK) {
        let mut data = egui::FontData::from_owned(bytes);
        data.index = 2; // Noto Sans CJK SC inside the collection
        fonts
            .font_data
            .insert("noto-cjk-full".into(), std::sync::Arc::new(data));
        names.push("noto-cjk-full".into());
    }
    for family in [egui::FontFamily::Proportional, egui::FontFamily::Monospace] {
        let list = fonts.families.entry(family).or_default();
        for (i, n) in names.iter().enumerate() {
            list.insert(i, n.clone());
        }
    }
    ctx.set_fonts(fonts);
}

/// What the feed indicator and banner say.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedView {
    pub live: bool,
    /// The gateway's clock is stopped: a past moment (a recording or the history), not live.
    pub frozen: bool,
    pub indicator: String,
    /// Set when the feed is not live: the banner's text.
    pub banner: Option<String>,
}

pub fn feed_view(model: &WallModel) -> FeedView {
    feed_view_at(model, Instant::now())
}

/// [`feed_view`] at `now` (the wall's own clock).
pub fn feed_view_at(model: &WallModel, now: Instant) -> FeedView {
    let data_time = model.last_data_ms.map(clock_text);
    let since = |t: Instant| now.saturating_duration_since(t).as_secs();
    if let Some(problem) = &model.incompatible {
        return FeedView {
            live: false,
            frozen: false,
            indicator: "⚠ 数据源不兼容 incompatible feed".into(),
            banner: Some(format!("⚠ 数据源不兼容 INCOMPATIBLE FEED · {problem}")),
        };
    }
    match &model.state {
        FeedState::Connecting => FeedView {
            live: false,
            frozen: false,
            indicator: "○ 连接中 connecting".into(),
            banner: Some("正在连接数据源 connecting to the feed…".into()),
        },
        FeedState::Syncing => FeedView {
            live: false,
            frozen: false,
            indicator: match model.mirror.snapshot_progress() {
                Some(p) => format!(
                    "◐ 同步中 syncing {:.0}% ({} / {} 工单 tickets)",
                    p.fraction() * 100.0,
                    p.tickets,
                    p.of_tickets
                ),
                None => "◐ 同步中 syncing".into(),
            },
            banner: None,
        },
        FeedState::Reconnecting {
            since: t,
            attempt,
            error,
        } => FeedView {
            live: false,
            frozen: false,
            indicator: format!("⚠ 重连中 reconnecting {} s", since(*t)),
            banner: Some(format!(
                "⚠ 数据中断 FEED DOWN · 重连中 reconnecting for {} s (attempt {attempt}) · 画面停留在 data as of {} · {error}",
                since(*t),
                data_time.unwrap_or_else(|| "--:--:--".into())
            )),
        },
        FeedState::Live if model.is_stale_at(now) => FeedView {
            live: false,
            frozen: false,
            indicator: "⚠ 数据停滞 stale".into(),
            banner: Some(format!(
                "⚠ 数据停滞 FEED STALE since {} · 等待数据 waiting for the gateway",
                data_time.unwrap_or_else(|| "--:--:--".into())
            )),
        },
        FeedState::Live if model.replay.is_some() || model.replay_pending.is_some() => FeedView {
            live: true,
            frozen: true,
            indicator: match (&model.replay, model.replay_pending) {
                (_, Some(t)) => format!("⏪ 回放 REPLAY → {} …", clock_text(t)),
                (Some(r), None) => format!(
                    "⏪ 回放 REPLAY {}{} · 实时照常接收 live underneath · L 返回实时 back to live",
                    clock_text(r.at_ms),
                    if r.speed > 0.0 {
                        format!(" ×{}", r.speed)
                    } else {
                        " ⏸".to_owned()
                    }
                ),
                (None, None) => String::new(),
            },
            banner: None,
        },
        FeedState::Live => match model.backbone_down_since_ms {
            Some(t) => FeedView {
                live: false,
                frozen: false,
                indicator: "⚠ 主干中断 backbone down".into(),
                banner: Some(format!(
                    "⚠ 主干中断 BACKBONE DOWN since {} · 恢复后自动补齐 catches up when NATS is back",
                    clock_text(t)
                )),
            },
            None if model.clock.is_some_and(|c| c.rate() == 0.0) => FeedView {
                live: true,
                frozen: true,
                indicator: format!(
                    "⏸ 定格 frozen at {}",
                    data_time.unwrap_or_else(|| "--:--:--".into())
                ),
                banner: None,
            },
            None => FeedView {
                live: true,
                frozen: false,
                indicator: "● 实时 live".into(),
                banner: None,
            },
        },
    }
}

fn kpi_ui(ui: &mut egui::Ui, label: &str, value: String, color: egui::Color32) {
    ui.vertical(|ui| {
        ui.label(
            egui::RichText::new(label)
                .color(theme::TEXT_DIM)
                .size(theme::FONT_BAR * 0.6),
        );
        ui.label(
            egui::RichText::new(value)
                .color(color)
                .size(theme::FONT_BAR)
                .strong(),
        );
    });
    ui.add_space(12.0);
}

/// The top bar: county, feed state and server clock on the first row, KPIs on the second.
/// `figures` is None until the first analytics refresh.
pub fn top_bar_ui(
    ui: &mut egui::Ui,
    county_name: &str,
    feed: &FeedView,
    simulated: bool,
    figures: Option<&Figures>,
    presence: &Presence,
    now_ms: TimestampMs,
) {
    ui.horizontal(|ui| {
        ui.label(
            egui::RichText::new(format!("{county_name} · 基层治理指挥中心"))
                .color(theme::TEXT)
                .size(theme::FONT_BAR)
                .strong(),
        );
        ui.add_space(24.0);
        let c = match (feed.live, feed.frozen) {
            (true, false) => theme::GOOD,
            (true, true) => theme::WARN,
            (false, _) => theme::BAD,
        };
        ui.label(
            egui::RichText::new(&feed.indicator)
                .color(c)
                .size(theme::FONT_BAR * 0.8),
        );
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.label(
                egui::RichText::new(clock_text(now_ms))
                    .color(theme::TEXT)
                    .size(theme::FONT_BAR)
                    .monospace(),
            );
            if simulated {
                ui.add_space(16.0);
                ui.label(
                    egui::RichText::new(" 模拟数据 SIMULATED ")
                        .color(theme::PANEL_BG)
                        .background_color(theme::WARN)
                        .size(theme::FONT_BAR * 0.8)
                        .strong(),
                );
            }
        });
    });
    let pick = |bad: bool, c: egui::Color32| if bad { c } else { theme::TEXT };
    ui.horizontal(|ui| {
        let dash = || "—".to_owned();
        match figures {
            Some(k) => {
                kpi_ui(ui, "在办工单 open", k.open.to_string(), theme::TEXT);
                kpi_ui(
                    ui,
                    "已超时 overdue",
                    k.overdue.to_string(),
                    pick(k.overdue > 0, theme::BAD),
                );
                kpi_ui(
                    ui,
                    "30分钟内到期 at risk",
                    k.at_risk.to_string(),
                    pick(k.at_risk > 0, theme::WARN),
                );
                kpi_ui(
                    ui,
                    "今日受理/办结 today",
                    format!("{} / {}", k.opened_today, k.resolved_today),
                    theme::TEXT,
                );
                let mins = |v: Option<f64>| v.map_or_else(dash, |s| format!("{:.0} 分", s / 60.0));
                kpi_ui(
                    ui,
                    "响应/办结中位 median",
                    format!(
                        "{} / {}",
                        mins(k.median_response_secs),
                        mins(k.median_resolution_secs)
                    ),
                    theme::TEXT,
                );
                let rate = k.on_time_rate;
                kpi_ui(
                    ui,
                    "按时办结率 on time",
                    rate.map_or_else(dash, |r| format!("{:.0}%", r * 100.0)),
                    pick(rate.is_some_and(|r| r < 0.9), theme::WARN),
                );
                kpi_ui(
                    ui,
                    "满意度 rating",
                    k.satisfaction.map_or_else(dash, |v| format!("{v:.2}")),
                    theme::TEXT,
                );
                let pledge = k.pledge_rate();
                kpi_ui(
                    ui,
                    "20分钟到场 pledge",
                    pledge.map_or_else(dash, |r| format!("{:.0}%", r * 100.0)),
                    pick(pledge.is_some_and(|r| r < 0.9), theme::WARN),
                );
                kpi_ui(
                    ui,
                    "考核得分 score",
                    k.score().map_or_else(dash, |v| format!("{v:.1}")),
                    theme::ACCENT,
                );
            }
            None => kpi_ui(
                ui,
                "统计 figures",
                "统计中 computing…".into(),
                theme::TEXT_DIM,
            ),
        }
        kpi_ui(
            ui,
            "在岗志愿者 on duty",
            format!("{} ({} 出勤)", presence.on_duty, presence.responding),
            theme::GOOD,
        );
        kpi_ui(
            ui,
            "事件 incidents",
            presence.active_incidents.to_string(),
            pick(presence.active_incidents > 0, theme::BAD),
        );
    });
}

fn setup_ui(mut contexts: EguiContexts, scale: Res<UiScale>, mut done: Local<bool>) {
    if *done {
        return;
    }
    if let Ok(ctx) = contexts.ctx_mut() {
        install_fonts(ctx);
        ctx.set_zoom_factor(scale.0);
        *done = true;
    }
}

/// Volunteer and incident counts for the top bar, refreshed with the analytics.
#[derive(Resource, Default)]
pub struct PresenceCache {
    pub presence: Presence,
    generation: Option<u64>,
}

fn refresh_presence(model: Res<WallModel>, stats: Res<Stats>, mut cache: ResMut<PresenceCache>) {
    if cache.generation != Some(stats.generation) {
        cache.presence = super::stats::presence(&model);
        cache.generation = Some(stats.generation);
    }
}

pub(super) fn wall_ui(
    mut contexts: EguiContexts,
    model: Res<WallModel>,
    stats: Res<Stats>,
    presence: Res<PresenceCache>,
    layers: Res<Layers>,
    layout: Res<super::layout::Layout>,
    camera: Query<(&Camera, &GlobalTransform), With<WallCamera>>,
) -> Result {
    use super::layout::Dock;
    let ctx = contexts.ctx_mut()?;
    let feed = feed_view(&model);
    let now = model.now_ms();
    // Map labels first, so the panels paint over them.
    if let Ok((cam, cam_tf)) = camera.single() {
        labels_ui(ctx, &model, &layers, &layout, cam, cam_tf, now);
    }
    // A large snapshot (a city's) takes seconds: say how far it is.
    if let Some(p) = model
        .mirror
        .snapshot_progress()
        .filter(|p| p.of_chunks >= 4 && model.state == super::feed::FeedState::Syncing)
    {
        let at = if layout.wall {
            layout.dock(Dock::TopLeft)
        } else {
            ctx.viewport_rect()
        };
        snapshot_progress_ui(ctx, p, at);
    }
    if layout.wall {
        // The title, clock and KPIs are on the side panels (the board).
        if let Some(text) = &feed.banner {
            banner_ui(ctx, text, layout.dock(Dock::TopLeft));
        }
        legend_area(ctx, &model, layout.dock(Dock::BottomLeft).left_bottom());
        help_ui(ctx, &layers, layout.dock(Dock::TopLeft).center());
        return Ok(());
    }
    let mut root = egui::Ui::new(
        ctx.clone(),
        "wall_root".into(),
        egui::UiBuilder::new()
            .layer_id(egui::LayerId::background())
            .max_rect(ctx.viewport_rect()),
    );
    let frame = egui::Frame::default()
        .fill(theme::PANEL_BG)
        .inner_margin(egui::Margin::symmetric(14, 8));
    egui::Panel::top("top_bar")
        .frame(frame)
        .exact_size(TOP_BAR_PX)
        .show(&mut root, |ui| {
            top_bar_ui(
                ui,
                &model.county.pack.manifest.county_name,
                &feed,
                model.simulated,
                stats.latest.as_ref().map(|a| &a.county),
                &presence.presence,
                now,
            );
        });
    if let Some(text) = &feed.banner {
        // Just under the top bar, across the screen: impossible to miss from the back row.
        let top = ctx.viewport_rect().top() + BANNER_TOP_PX;
        let r = ctx.viewport_rect();
        banner_ui(
            ctx,
            text,
            egui::Rect::from_min_max(
                egui::pos2(r.left() + 20.0, top),
                r.right_bottom() - egui::vec2(20.0, 0.0),
            ),
        );
    }
    legend_area(
        ctx,
        &model,
        ctx.viewport_rect().left_bottom() + egui::vec2(12.0, -12.0),
    );
    help_ui(ctx, &layers, ctx.viewport_rect().center());
    Ok(())
}

/// A snapshot loading: a bar with what has come, centred in `at` (a large county's first
/// picture takes seconds; the wall says how far it is).
fn snapshot_progress_ui(
    ctx: &egui::Context,
    p: crate::net::client::SnapshotProgress,
    at: egui::Rect,
) {
    egui::Area::new("snapshot_progress".into())
        .pivot(egui::Align2::CENTER_CENTER)
        .fixed_pos(at.center())
        .order(egui::Order::Foreground)
        .show(ctx, |ui| {
            egui::Frame::default()
                .fill(theme::PANEL_BG)
                .inner_margin(egui::Margin::same(16))
                .corner_radius(4.0)
                .show(ui, |ui| {
                    ui.set_width(520.0);
                    ui.label(
                        egui::RichText::new("正在载入全量数据 loading the county's state")
                            .color(theme::TEXT)
                            .size(theme::FONT_BAR),
                    );
                    ui.add(
                        egui::ProgressBar::new(p.fraction())
                            .show_percentage()
                            .fill(theme::ACCENT),
                    );
                    ui.label(
                        egui::RichText::new(format!(
                            "{} / {} 工单 tickets · {} / {} 块 chunks",
                            p.tickets, p.of_tickets, p.chunks, p.of_chunks
                        ))
                        .color(theme::TEXT_DIM)
                        .size(theme::FONT_BAR * 0.7),
                    );
                });
        });
}

/// The feed-down banner across `at`'s width, from its top.
fn banner_ui(ctx: &egui::Context, text: &str, at: egui::Rect) {
    {
        let width = at.width();
        egui::Area::new("feed_banner".into())
            .fixed_pos(at.min)
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                egui::Frame::default()
                    .fill(theme::BANNER_BAD)
                    .inner_margin(egui::Margin::symmetric(16, 12))
                    .corner_radius(4.0)
                    .show(ui, |ui| {
                        ui.set_width(width - 32.0);
                        ui.add(
                            egui::Label::new(
                                egui::RichText::new(text)
                                    .color(theme::BANNER_TEXT)
                                    .size(theme::FONT_BANNER)
                                    .strong(),
                            )
                            .wrap(),
                        );
                    });
            });
    }
}

fn legend_area(ctx: &egui::Context, model: &WallModel, bottom_left: egui::Pos2) {
    egui::Area::new("legend".into())
        .pivot(egui::Align2::LEFT_BOTTOM)
        .fixed_pos(bottom_left)
        .show(ctx, |ui| {
            egui::Frame::default()
                .fill(theme::PANEL_BG)
                .inner_margin(egui::Margin::same(10))
                .show(ui, |ui| {
                    legend_ui(ui, model);
                });
        });
}

fn help_ui(ctx: &egui::Context, layers: &Layers, centre: egui::Pos2) {
    if layers.help {
        egui::Window::new("快捷键 shortcuts")
            .collapsible(false)
            .pivot(egui::Align2::CENTER_CENTER)
            .fixed_pos(centre)
            .show(ctx, |ui| {
                egui::Grid::new("keys")
                    .num_columns(2)
                    .spacing([24.0, 6.0])
                    .show(ui, |ui| {
                        for (k, what) in SHORTCUTS {
                            ui.label(egui::RichText::new(*k).strong().size(theme::FONT_BAR * 0.8));
                            ui.label(egui::RichText::new(*what).size(theme::FONT_BAR * 0.8));
                            ui.end_row();
                        }
                    });
            });
    }
}

fn legend_ui(ui: &mut egui::Ui, model: &WallModel) {
    let row = |ui: &mut egui::Ui, c: egui::Color32, text: &str| {
        ui.horizontal(|ui| {
            let (r, _) = ui.allocate_exact_size(egui::vec2(16.0, 16.0), egui::Sense::hover());
            ui.painter().rect_filled(r, 2.0, c);
            ui.label(
                egui::RichText::new(text)
                    .color(theme::TEXT)
                    .size(theme::FONT_BAR * 0.65),
            );
        });
    };
    row(
        ui,
        theme::rgba32(theme::GRID_OVERDUE),
        "网格有超时工单 overdue",
    );
    row(
        ui,
        theme::rgba32(theme::GRID_AT_RISK),
        "30分钟内到期 at risk",
    );
    row(ui, theme::rgba32(theme::GRID_OPEN), "有在办工单 open");
    row(ui, theme::rgba32(theme::GRID_QUIET), "无工单 quiet");
    ui.horizontal(|ui| {
        let (r, _) = ui.allocate_exact_size(egui::vec2(96.0, 14.0), egui::Sense::hover());
        let w = r.width() / theme::HEAT_RAMP.len() as f32;
        for (i, c) in theme::HEAT_RAMP.iter().enumerate() {
            let cell = egui::Rect::from_min_size(
                r.min + egui::vec2(w * i as f32, 0.0),
                egui::vec2(w, r.height()),
            );
            ui.painter().rect_filled(cell, 0.0, *c);
        }
        ui.label(
            egui::RichText::new("工单热度 ticket heat (4)")
                .color(theme::TEXT)
                .size(theme::FONT_BAR * 0.65),
        );
    });
    row(
        ui,
        theme::rgba32(theme::VOLUNTEER_AVAILABLE),
        "志愿者待命 available",
    );
    row(
        ui,
        theme::rgba32(theme::VOLUNTEER_RESPONDING),
        "志愿者出勤 responding (外圈颜色=所属队伍 ring = team)",
    );
    ui.label(
        egui::RichText::new(format!(
            "社区与网格边界为模拟数据 simulated areas · seq {} · 丢弃 dropped {}",
            model.mirror.last_seq, model.dropped
        ))
        .color(theme::TEXT_DIM)
        .size(theme::FONT_BAR * 0.55),
    );
    if let Some(p) = &model.last_problem {
        ui.label(
            egui::RichText::new(p)
                .color(theme::WARN)
                .size(theme::FONT_BAR * 0.55),
        );
    }
}

/// Community names at county zoom, grid names when zoomed in, incident timers; greedy
/// placement skips any label that would overlap one already placed.
/// Label rectangles already on screen, bucketed by area so a new label is checked against its
/// neighbours only (a linear scan is quadratic in the labels on screen).
#[derive(Default)]
pub struct PlacedLabels {
    buckets: std::collections::HashMap<(i32, i32), Vec<egui::Rect>>,
}

impl PlacedLabels {
    const BUCKET_PX: f32 = 96.0;

    fn cells(rect: egui::Rect) -> impl Iterator<Item = (i32, i32)> {
        let b = Self::BUCKET_PX;
        let (x0, x1) = (
            (rect.min.x / b).floor() as i32,
            (rect.max.x / b).floor() as i32,
        );
        let (y0, y1) = (
            (rect.min.y / b).floor() as i32,
            (rect.max.y / b).floor() as i32,
        );
        (y0..=y1).flat_map(move |y| (x0..=x1).map(move |x| (x, y)))
    }

    /// Keep `rect` clear of labels (a seam, a side panel), whatever is there.
    pub fn block(&mut self, rect: egui::Rect) {
        for c in Self::cells(rect) {
            self.buckets.entry(c).or_default().push(rect);
        }
    }

    /// Place `rect` unless it overlaps a label already placed; whether it was placed.
    pub fn try_place(&mut self, rect: egui::Rect) -> bool {
        let clash = Self::cells(rect).any(|c| {
            self.buckets
                .get(&c)
                .is_some_and(|v| v.iter().any(|r| r.intersects(rect)))
        });
        if clash {
            return false;
        }
        for c in Self::cells(rect) {
            self.buckets.entry(c).or_default().push(rect);
        }
        true
    }
}

fn labels_ui(
    ctx: &egui::Context,
    model: &WallModel,
    layers: &Layers,
    layout: &super::layout::Layout,
    cam: &Camera,
    cam_tf: &GlobalTransform,
    now: TimestampMs,
) {
    let proj = model.county.pack.projection();
    let painter = ctx.layer_painter(egui::LayerId::background());
    let zoom = ctx.zoom_factor();
    // Labels anchored off screen are never laid out (at city scale most of the 3 000 grids are).
    let view = ctx.viewport_rect().expand(80.0);
    let screen = |w: Vec2| {
        cam.world_to_viewport(cam_tf, w.extend(0.0))
            .ok()
            .map(|p| egui::pos2(p.x / zoom, p.y / zoom))
            .filter(|p| view.contains(*p))
    };
    let metres_per_px = {
        let a = cam.world_to_viewport(cam_tf, Vec3::ZERO).ok();
        let b = cam
            .world_to_viewport(cam_tf, Vec3::new(1000.0, 0.0, 0.0))
            .ok();
        match (a, b) {
            (Some(a), Some(b)) => 1000.0 / (b.x - a.x).abs().max(1e-6),
            _ => 100.0,
        }
    };
    let mut placed = PlacedLabels::default();
    // On a spliced wall no label straddles a seam or hides under a side panel.
    for r in layout.seams.iter().chain(&layout.left).chain(&layout.right) {
        placed.block(*r);
    }
    let mut place = |pos: egui::Pos2, text: &str, size: f32, color: egui::Color32| {
        let galley =
            painter.layout_no_wrap(text.to_owned(), egui::FontId::proportional(size), color);
        let rect = egui::Rect::from_center_size(pos, galley.size()).expand(2.0);
        if !placed.try_place(rect) {
            return;
        }
        painter.rect_filled(rect, 3.0, theme::LABEL_HALO);
        painter.galley(rect.min + egui::vec2(2.0, 2.0), galley, color);
    };
    // Incidents first: they matter most.
    if layers.incidents
        && let Some(live) = model.live()
    {
        for inc in live.active_incidents() {
            let Some(p) = screen(world(&proj, inc.pos)) else {
                continue;
            };
            let elapsed = (now - inc.opened_at_ms).max(0) / 1000;
            let over = elapsed > i64::from(inc.target_secs);
            let text = format!(
                "{} {:02}:{:02} / {:02}:{:02}",
                if inc.title.is_empty() {
                    inc.kind.label_zh()
                } else {
                    &inc.title
                },
                elapsed / 60,
                elapsed % 60,
                inc.target_secs / 60,
                inc.target_secs % 60
            );
            place(
                p + egui::vec2(0.0, -28.0),
                &text,
                theme::FONT_LABEL_COMMUNITY,
                if over { theme::BAD } else { theme::WARN },
            );
        }
    }
    // An after-action: under the site, the target and each team's first arrival once the
    // moment shown has reached it (the arrivals are metres apart: listed, not scattered).
    if let Some(aa) = model.after_action.as_deref()
        && let Some(p) = screen(world(&proj, aa.site))
    {
        use super::after_action::{Verdict, mm_ss, team_label, verdict};
        let elapsed = (now - aa.opened_at_ms).max(0) / 1000;
        place(
            p + egui::vec2(0.0, 34.0),
            &format!(
                "复盘 {} +{} / 目标 {}",
                aa.title,
                mm_ss(elapsed),
                mm_ss(i64::from(aa.target_secs))
            ),
            theme::FONT_LABEL_COMMUNITY,
            theme::WARN,
        );
        for (i, team) in aa.teams.iter().enumerate() {
            let color = match verdict(aa, team, now) {
                Verdict::InTime => theme::GOOD,
                Verdict::Late => theme::BAD,
                Verdict::NotArrived => theme::TEXT_DIM,
            };
            place(
                p + egui::vec2(0.0, 66.0 + 30.0 * i as f32),
                &team_label(&model.county, aa, team, now),
                theme::FONT_LABEL_GRID + 3.0,
                color,
            );
        }
    }
    // Operators' notes about the day before the moment shown: a pin each, the newest labelled
    // first.
    if let Some(all) = model.mirror.state.as_ref().map(|s| &s.annotations) {
        for n in super::notes::on_map(all, now) {
            let Some(p) = screen(world(&proj, n.pos)) else {
                continue;
            };
            super::notes::paint_pin(&painter, p);
            place(
                p + egui::vec2(0.0, -34.0),
                &super::notes::map_label(n),
                theme::FONT_LABEL_GRID + 2.0,
                theme::NOTE,
            );
        }
    }
    for c in &model.county.pack.communities {
        if let Some(p) = screen(world(&proj, c.label)) {
            place(
                p,
                &c.display_name,
                theme::FONT_LABEL_COMMUNITY,
                theme::LABEL_COMMUNITY,
            );
        }
    }
    if layers.grids_labels && metres_per_px < 4.0 {
        for g in &model.county.pack.grids {
            if let Some(p) = screen(world(&proj, g.label)) {
                let short = g.name.rsplit_once('第').map_or(g.name.as_str(), |(_, n)| n);
                place(
                    p + egui::vec2(0.0, 16.0),
                    &format!("第{short}"),
                    theme::FONT_LABEL_GRID,
                    theme::LABEL_GRID,
                );
            }
        }
    }
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<PresenceCache>()
        .add_systems(Update, refresh_presence.in_set(super::nav::WallSet::Draw))
        .add_systems(EguiPrimaryContextPass, (setup_ui, wall_ui).chain());
}

#[cfg(test)]
mod tests {
    use super::PlacedLabels;
    use bevy_egui::egui::{Rect, pos2, vec2};

    #[test]
    fn labels_that_overlap_are_left_out_wherever_they_fall() {
        let mut placed = PlacedLabels::default();
        let r = |x: f32, y: f32, w: f32, h: f32| Rect::from_min_size(pos2(x, y), vec2(w, h));
        assert!(placed.try_place(r(10.0, 10.0, 60.0, 20.0)));
        // Overlaps the first: refused.
        assert!(!placed.try_place(r(50.0, 20.0, 60.0, 20.0)));
        // Touches nothing, though it shares a bucket: placed.
        assert!(placed.try_place(r(10.0, 40.0, 60.0, 20.0)));
        // Straddles a bucket border and overlaps a label in the other bucket.
        assert!(placed.try_place(r(90.0, 90.0, 20.0, 20.0)));
        assert!(!placed.try_place(r(80.0, 80.0, 12.0, 12.0)));
        // A wide label spanning many buckets collides with a small one far from its start.
        assert!(placed.try_place(r(400.0, 300.0, 10.0, 10.0)));
        assert!(!placed.try_place(r(0.0, 295.0, 800.0, 20.0)));
        // Negative coordinates (labels just off the left or top edge) bucket correctly.
        assert!(placed.try_place(r(-50.0, -30.0, 40.0, 20.0)));
        assert!(!placed.try_place(r(-20.0, -20.0, 10.0, 10.0)));
    }
}
