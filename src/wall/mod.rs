//! The wall: a bevy app (one plugin per file) drawing the live county from the feed.
//!
//! `feed` (thread + drain), `map` (county, grids, borders), `heat` (ticket heatmap, WGSL),
//! `map_cache` (the map drawn into a texture when it changes), `volunteers` (one mesh),
//! `incidents` (gizmos), `camera` (input, layers), `ui` (egui: bar, banner, labels, legend).

pub mod actions;
pub mod after_action;
pub mod alerts;
pub mod board;
pub mod camera;
pub mod charts;
pub mod feed;
pub mod heat;
pub mod incidents;
pub mod late;
pub mod layout;
pub mod map;
pub mod map_cache;
pub mod nav;
pub mod notes;
pub mod outbox;
pub mod panels;
pub mod probe;
pub mod sounds;
pub mod stats;
pub mod theme;
pub mod timeline;
pub mod tour;
pub mod ui;
pub mod volunteers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, save_to_disk};
use bevy::window::{MonitorSelection, PresentMode, WindowMode, WindowPosition, WindowResolution};

use crate::model::County;
use feed::{FeedChannel, FeedTarget, WallModel, spawn_feed};

pub use nav::WallSet;

/// How the wall window is set up.
#[derive(Clone)]
pub struct WallOptions {
    pub target: FeedTarget,
    pub width: u32,
    pub height: u32,
    pub borderless: bool,
    pub monitor: Option<usize>,
    pub ui_scale: f32,
    pub view: camera::InitialView,
    /// Start with the ticket heatmap shown.
    pub heat: bool,
    /// Kiosk tour after this much idle time (zero: never).
    pub tour_after: Duration,
    /// No pipelined rendering: a frame is drawn in the same step as its update.
    pub low_latency: bool,
    /// No alert sounds.
    pub mute: bool,
    /// Draw the map (land, fills, heat, borders) into a texture only when it changes.
    pub map_cache: bool,
    /// A `wall.toml`: the side-panel layout on its panels, and its start-up settings.
    pub layout: Option<layout::WallConfig>,
    pub snapshot: Option<SnapshotPlan>,
}

/// Render, save a PNG and quit (`datawall snapshot`).
#[derive(Clone)]
pub struct SnapshotPlan {
    pub out: PathBuf,
    /// Frames to draw after the model is in sync, before the picture.
    pub settle_frames: u32,
    /// Give up after this long without a synced model.
    pub timeout: Duration,
    /// Stop the embedded gateway once synced and take the picture when the wall shows the
    /// feed is down (the stale-feed check).
    pub cut_feed: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Measure this many frames after settling (frame time and ECS time) before the picture.
    pub measure_frames: u32,
    /// Measure event → pixel latency over the measured frames (the source stamps fixes).
    pub measure_latency: bool,
    /// Open the drill-down on the first search hit for this (a community, grid, volunteer
    /// name or a ticket id) before the picture.
    pub select: Option<String>,
    /// Act before the picture, as an operator would: acknowledge one breach alert with a
    /// note, open the most pressing one's ticket and 督办 it (pictured while pending).
    pub act: bool,
    /// Render into an image instead of a window: no display server is needed (any Vulkan
    /// adapter, a headless GPU or lavapipe). Each frame waits for the GPU to finish, so the
    /// measured frame time is CPU and GPU work with no presentation in it.
    pub offscreen: bool,
    /// Rewind the timeline this far (feed ms) before the picture: a replay frame.
    pub rewind_ms: Option<crate::protocol::TimestampMs>,
    /// Wait for a closed incident whose title has this (or with this id), open its
    /// after-action and picture the moment it closed.
    pub after_action: Option<String>,
    /// Picture these moments of a history, one PNG each, instead of one picture.
    pub frames: Option<FramesPlan>,
    /// After the picture, switch the map cache off and picture the same state again here:
    /// the two must be the same pixels.
    pub uncached_out: Option<PathBuf>,
    /// While measuring frames, every volunteer on duty sends a fix every frame (a step of
    /// about 40 m, there and back), applied through the model as a feed's delta would be.
    pub move_volunteers: bool,
}

/// How far a measured frame's fixes move a volunteer, degrees (the peer's scene moves its
/// points by up to this much a frame).
const MOVE_STEP_DEG: f64 = 0.0004;

/// `SnapshotPlan::move_volunteers`: one delta with a fix for every volunteer on duty, each a
/// step toward the county's centre on even frames and back on odd ones, numbered after the
/// mirror's last event.
fn move_volunteers(snap: Res<Snapshot>, mut model: ResMut<WallModel>, mut frame: Local<u64>) {
    let measuring = snap.plan.move_volunteers
        && model.synced_at.is_some()
        && snap.frames_after_sync >= snap.plan.settle_frames
        && (snap.frame_ms.len() as u32) < snap.plan.measure_frames;
    let (Some(live), Some(epoch), true) = (model.live(), model.mirror.epoch, measuring) else {
        return;
    };
    *frame += 1;
    let sign = if *frame % 2 == 1 { 1.0 } else { -1.0 };
    let (min, max) = model.county.pack.bounds();
    let centre = crate::protocol::LonLat::new((min.lon + max.lon) / 2.0, (min.lat + max.lat) / 2.0);
    let first = model.mirror.last_seq + 1;
    let mut events = Vec::with_capacity(live.volunteers.len());
    for v in &live.volunteers {
        let Some(p) = v
            .pos
            .filter(|_| v.status != crate::protocol::VolunteerStatus::OffDuty)
        else {
            continue;
        };
        let step = |from: f64, to: f64| MOVE_STEP_DEG * sign * (to - from).signum();
        let next = crate::protocol::LonLat::new(
            p.lon + step(p.lon, centre.lon),
            p.lat + step(p.lat, centre.lat),
        );
        if !model.county.mask.contains(next) {
            continue;
        }
        events.push((
            first + events.len() as u64,
            crate::protocol::Event::VolunteerFix(crate::protocol::VolunteerFix {
                volunteer_id: v.id,
                at_ms: v.last_at_ms + 1,
                pos: next,
            }),
        ));
    }
    let Some(last_seq) = events.last().map(|e| e.0) else {
        return;
    };
    let delta = crate::protocol::session::Delta {
        epoch,
        prev_seq: Some(first - 1),
        first_seq: first,
        last_seq,
        conflated: 0,
        events,
    };
    if let Err(e) = model.handle(crate::protocol::session::ServerMsg::Delta(delta)) {
        tracing::warn!(target: "datawall::wall", "snapshot: moving the volunteers: {e}");
    }
}

/// Physical pixels per logical pixel of `layout` on a window `width` wide.
fn ctx_zoom(layout: &layout::Layout, width: f32) -> f32 {
    width / layout.canvas.width().max(1.0)
}

/// Moments of a history to picture (`snapshot --from … --to … --every …`).
#[derive(Clone, Debug)]
pub struct FramesPlan {
    pub history: PathBuf,
    pub moments: Vec<crate::protocol::TimestampMs>,
    /// Where the frames go: `frame-<k>-<hhmmss>.png`.
    pub dir: PathBuf,
}

/// Where a range of frames stands.
#[derive(Default)]
struct FramesState {
    next: usize,
    /// The moment is shown; the analytics generation it was shown at.
    shown_at_generation: Option<u64>,
    frames_since: u32,
    /// A picture asked for: when, and its file.
    shot: Option<(Instant, PathBuf)>,
    history: Option<crate::net::history::History>,
}

pub use nav::OffscreenTarget;

/// Render-world times per frame (offscreen snapshots): CPU from the start of the render
/// schedule to submission, and the wait for the GPU after it, ms; shared with the main world.
#[derive(Resource, Clone, Default)]
pub struct RenderTimes(Arc<std::sync::Mutex<RenderTimesInner>>);

#[derive(Default)]
struct RenderTimesInner {
    start: Option<Instant>,
    cpu_ms: std::collections::VecDeque<f64>,
    gpu_ms: std::collections::VecDeque<f64>,
}

impl RenderTimes {
    /// The last `n` frames' (render CPU, GPU wait) percentiles p50 and p95.
    fn summary(&self, n: usize) -> [f64; 4] {
        let Ok(t) = self.0.lock() else {
            return [0.0; 4];
        };
        let last = |v: &std::collections::VecDeque<f64>| -> Vec<f64> {
            v.iter().rev().take(n).copied().collect()
        };
        let (c, g) = (last(&t.cpu_ms), last(&t.gpu_ms));
        [
            percentile(&c, 0.5),
            percentile(&c, 0.95),
            percentile(&g, 0.5),
            percentile(&g, 0.95),
        ]
    }
}

fn render_start(times: Option<Res<RenderTimes>>) {
    if let Some(t) = times
        && let Ok(mut t) = t.0.lock()
    {
        t.start = Some(Instant::now());
    }
}

/// Render world, after the frame is submitted. Offscreen: block until the GPU has drawn it,
/// so frame intervals include the GPU's work (a window's swapchain does this through
/// presentation). With a latency probe: note when the frame was done.
fn frame_done(
    device: Res<bevy::render::renderer::RenderDevice>,
    offscreen: Option<Res<OffscreenTarget>>,
    frame: Res<bevy::diagnostic::FrameCount>,
    drawn: Option<Res<probe::DrawnFrames>>,
    times: Option<Res<RenderTimes>>,
) {
    let submitted = Instant::now();
    if offscreen.is_some()
        && let Err(e) = device.poll(bevy::render::render_resource::PollType::wait_indefinitely())
    {
        tracing::warn!(target: "datawall::wall", "waiting for the GPU: {e}");
    }
    if let Some(t) = times
        && let Ok(mut t) = t.0.lock()
        && let Some(start) = t.start.take()
    {
        if t.cpu_ms.len() >= 1024 {
            t.cpu_ms.pop_front();
            t.gpu_ms.pop_front();
        }
        t.cpu_ms
            .push_back((submitted - start).as_secs_f64() * 1000.0);
        t.gpu_ms
            .push_back(submitted.elapsed().as_secs_f64() * 1000.0);
    }
    if let Some(d) = drawn {
        // The main world counts a frame at its end (`Last`), before extraction: the frame
        // drawn here is the one the main world numbered one less.
        d.note(frame.0.wrapping_sub(1));
    }
}

#[derive(Resource)]
struct Snapshot {
    plan: SnapshotPlan,
    started: Instant,
    frames_after_sync: u32,
    cut: bool,
    frames_with_banner: u32,
    selected: bool,
    /// `act`: steps done, and the ticket supervised.
    acted: u8,
    act_ticket: Option<crate::protocol::TicketId>,
    requested: Option<Instant>,
    /// `uncached_out`: 0 not begun, 1 cache switched off (frames since), 2 picture asked
    /// for (when).
    uncached: (u8, u32, Option<Instant>),
    /// The first picture's sidecar, for the second's.
    info: Option<SnapshotInfo>,
    rewound: bool,
    /// `after_action`: 0 waiting for the incident, 1 fetching, 2 going to its close, 3 there.
    aa_stage: u8,
    frames: FramesState,
    /// Frame intervals and main-world (ECS) times, ms, while measuring.
    frame_ms: Vec<f64>,
    ecs_ms: Vec<f64>,
    last_frame: Option<Instant>,
}

/// When this frame's main-world update began (ECS-time measurement).
#[derive(Resource, Default)]
struct FrameStart(Option<Instant>);

fn mark_frame_start(mut start: ResMut<FrameStart>) {
    start.0 = Some(Instant::now());
}

fn record_frame(mut snap: ResMut<Snapshot>, start: Res<FrameStart>, model: Res<WallModel>) {
    let now = Instant::now();
    let measuring = model.synced_at.is_some()
        && snap.frames_after_sync >= snap.plan.settle_frames
        && (snap.frame_ms.len() as u32) < snap.plan.measure_frames;
    if measuring {
        if let Some(prev) = snap.last_frame {
            snap.frame_ms.push((now - prev).as_secs_f64() * 1000.0);
        }
        if let Some(s) = start.0 {
            snap.ecs_ms.push((now - s).as_secs_f64() * 1000.0);
        }
    }
    snap.last_frame = Some(now);
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(((s.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// What the snapshot's sidecar JSON records, so tests can map world positions to pixels.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct SnapshotInfo {
    pub width: f32,
    pub height: f32,
    /// Camera centre, world metres, and metres per logical pixel.
    pub centre: [f32; 2],
    pub scale: f32,
    pub scale_factor: f32,
    pub feed_state: String,
    pub events: u64,
    /// Frame measurements (`--measure-frames`), ms: interval between frames and the
    /// main-world (ECS) update time.
    #[serde(default)]
    pub frames_measured: usize,
    #[serde(default)]
    pub frame_ms_p50: f64,
    #[serde(default)]
    pub frame_ms_p95: f64,
    #[serde(default)]
    pub ecs_ms_p50: f64,
    #[serde(default)]
    pub ecs_ms_p95: f64,
    #[serde(default)]
    pub tickets: usize,
    #[serde(default)]
    pub volunteers: usize,
    #[serde(default)]
    pub grids: usize,
    /// Event → pixel latency over the measured frames, ms (with `--probe-rate`).
    #[serde(default)]
    pub latency_ms_p50: f64,
    #[serde(default)]
    pub latency_ms_p99: f64,
    #[serde(default)]
    pub latency_samples: usize,
    /// From the feed's websocket opening to the first frame with the live state and its
    /// figures, ms (`stats::note_cold_start`).
    #[serde(default)]
    pub cold_start_ms: f64,
    /// Peak resident memory of the wall process when the picture was taken, MB.
    #[serde(default)]
    pub wall_rss_mb: f64,
    /// Resident memory of the wall process when the picture was taken, MB (after the load's
    /// transients were handed back: `net::metrics::trim_heap`).
    #[serde(default)]
    pub wall_rss_now_mb: f64,
    /// The render adapter: name, backend and driver (e.g. llvmpipe, or a GPU's name).
    #[serde(default)]
    pub adapter: String,
    /// Rendered into an image rather than a window.
    #[serde(default)]
    pub offscreen: bool,
    /// The gateway said its feed is simulated (the top bar's badge).
    #[serde(default)]
    pub simulated: bool,
    /// Offscreen: render-world CPU time per frame (render schedule start → submission) and
    /// the wait for the GPU after submission, ms, over the measured frames.
    #[serde(default)]
    pub render_cpu_ms_p50: f64,
    #[serde(default)]
    pub render_cpu_ms_p95: f64,
    #[serde(default)]
    pub gpu_wait_ms_p50: f64,
    #[serde(default)]
    pub gpu_wait_ms_p95: f64,
    /// A `wall.toml` layout: its physical panels (x, y, width, height in canvas pixels)…
    #[serde(default)]
    pub panels: Vec<[f32; 4]>,
    /// …the text pieces drawn in the last frame, and those across a seam (none, or a bug).
    #[serde(default)]
    pub texts_drawn: usize,
    #[serde(default)]
    pub texts_across_seams: Vec<String>,
    /// The board's comparison: whether yesterday's and last week's figures were read.
    #[serde(default)]
    pub past_figures: [bool; 2],
    /// With the map cache on: frames that drew the map into it, and frames drawn.
    #[serde(default)]
    pub map_cache: Option<[u64; 2]>,
    /// The renderer's GPU memory when the picture was taken (wgpu's allocator report, where
    /// the backend gives one): the textures and buffers, MB, and the blocks reserved for them.
    #[serde(default)]
    pub gpu: Option<GpuMemory>,
}

/// What the renderer holds in GPU memory (on a software renderer, main memory).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct GpuMemory {
    pub allocated_mb: f64,
    pub reserved_mb: f64,
    /// The largest by name (textures and buffers of one label together), MB.
    pub largest: Vec<(String, f64)>,
}

impl GpuMemory {
    fn of(device: &bevy::render::renderer::RenderDevice) -> Option<Self> {
        let report = device.wgpu_device().generate_allocator_report()?;
        let mut by_name: std::collections::HashMap<&str, u64> = Default::default();
        for a in &report.allocations {
            let name = if a.name.is_empty() {
                "(no label)"
            } else {
                &a.name
            };
            *by_name.entry(name).or_default() += a.size;
        }
        let mut largest: Vec<(String, f64)> = by_name
            .into_iter()
            .map(|(n, b)| (n.to_string(), b as f64 / 1e6))
            .collect();
        largest.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        largest.truncate(8);
        Some(Self {
            allocated_mb: report.total_allocated_bytes as f64 / 1e6,
            reserved_mb: report.total_reserved_bytes as f64 / 1e6,
            largest,
        })
    }
}

/// One step of `SnapshotPlan::act`; true once the commands stand where the picture wants
/// them (the acknowledgement and a note on the ticket confirmed, the 督办 waiting for the
/// platform).
fn act_step(
    snap: &mut Snapshot,
    model: &WallModel,
    drill: &mut panels::Drill,
    fly: &mut camera::FlyTo,
    prompt: &mut outbox::NotePrompt,
) -> bool {
    use outbox::{Action, SentStatus};
    let Some(live) = model.live() else {
        return false;
    };
    match snap.acted {
        0 => {
            let waiting: Vec<_> = alerts::alert_lines(live, 16)
                .into_iter()
                .filter(|l| l.acked.is_none())
                .collect();
            // The most pressing breach's ticket is opened; the next one (or, when it is the
            // only one, itself) is acknowledged.
            let (Some(first), second) = (waiting.first(), waiting.get(1).or(waiting.first()))
            else {
                tracing::debug!(target: "datawall::wall", "snapshot --act: waiting for a breach");
                return false;
            };
            let (first, second) = (
                first.ticket_id,
                second.map_or(first.ticket_id, |s| s.ticket_id),
            );
            let focus = panels::Focus::Ticket(first);
            drill.apply(panels::UiCommand::Open(focus), &model.county, Some(live));
            fly.to(
                panels::focus_points(focus, &model.county, Some(live)),
                &model.county,
                true,
            );
            *prompt = outbox::NotePrompt {
                action: Some(Action::Ack(second)),
                text: "已联系网格员，处理中".into(),
                submit: true,
            };
            snap.act_ticket = Some(first);
            snap.acted = 1;
            false
        }
        1 => {
            if let Some(t) = snap.act_ticket {
                *prompt = outbox::NotePrompt {
                    action: Some(Action::Supervise(t)),
                    text: "请责任方今日办结".into(),
                    submit: true,
                };
            }
            snap.acted = 2;
            false
        }
        2 => {
            if let Some(place) = snap
                .act_ticket
                .and_then(|t| actions::note_place(panels::Focus::Ticket(t), model))
            {
                *prompt = outbox::NotePrompt {
                    action: Some(Action::Annotate(place, model.now_ms())),
                    text: "管道抢修队已到场，预计 30 分钟修复".into(),
                    submit: true,
                };
            }
            snap.acted = 3;
            false
        }
        _ => {
            let status = |want: fn(&Action) -> bool| {
                model
                    .outbox
                    .sent
                    .iter()
                    .find(|s| want(&s.action))
                    .map(|s| s.status.clone())
            };
            let ack = status(|a| matches!(a, Action::Ack(_)));
            let supervise = status(|a| matches!(a, Action::Supervise(_)));
            let note = status(|a| matches!(a, Action::Annotate(..)));
            let answered =
                |s: &Option<SentStatus>| s.as_ref().is_some_and(|s| *s != SentStatus::Pending);
            let confirmed = |s: &Option<SentStatus>| matches!(s, Some(SentStatus::Confirmed(_)));
            if !(confirmed(&ack) && confirmed(&note) && answered(&supervise)) {
                let failed = |s: &Option<SentStatus>| {
                    s.as_ref()
                        .is_some_and(|s| !s.is_pending() && !matches!(s, SentStatus::Confirmed(_)))
                };
                if failed(&ack) || failed(&note) {
                    tracing::warn!(target: "datawall::wall", "snapshot: not confirmed: acknowledgement {ack:?}, note {note:?}");
                } else {
                    return false;
                }
            }
            snap.acted = 4;
            true
        }
    }
}

/// One step of `SnapshotPlan::after_action`: find the closed incident, fetch its
/// after-action, then go to the moment it closed with the tracks in view.
fn after_action_step(
    snap: &mut Snapshot,
    query: &str,
    channel: &feed::FeedChannel,
    model: &mut WallModel,
    drill: &mut panels::Drill,
    fly: &mut camera::FlyTo,
) {
    match snap.aa_stage {
        0 => {
            let found = model.mirror.state.as_ref().and_then(|s| {
                s.incidents_sorted()
                    .into_iter()
                    .find(|i| {
                        i.closed_at_ms.is_some()
                            && (i.title.contains(query) || i.id.to_string() == query)
                    })
                    .map(|i| i.id)
            });
            let Some(id) = found else {
                return; // the simulator has not run it yet
            };
            tracing::info!(target: "datawall::wall", "snapshot: the after-action of incident {id}");
            let focus = panels::Focus::Incident(id);
            drill.apply(panels::UiCommand::Open(focus), &model.county, model.live());
            feed::request_after_action(channel, model, id);
            snap.aa_stage = 1;
        }
        1 => {
            if let Some(why) = model.last_problem.as_deref().filter(|p| p.contains("复盘")) {
                tracing::error!(target: "datawall::wall", "snapshot: {why}");
                snap.aa_stage = 3;
                return;
            }
            let Some(aa) = model.after_action.as_deref() else {
                return;
            };
            if model.replay.is_none() {
                return;
            }
            let end = aa.closed_at_ms.unwrap_or(aa.until_ms);
            let mut points: Vec<crate::protocol::LonLat> = aa
                .tracks
                .iter()
                .flat_map(|t| t.points.iter().map(|(_, p)| *p))
                .collect();
            points.push(aa.site);
            fly.to(points, &model.county, true);
            feed::request_moment(channel, model, end);
            snap.aa_stage = 2;
        }
        _ => {
            if model.replay_pending.is_none() && model.replay.is_some() {
                snap.aa_stage = 3;
            }
        }
    }
}

/// One step of a range of frames: show the next moment from the history, wait for its
/// figures and a few frames, picture it, go on; exit when all are written.
fn frames_step(
    st: &mut FramesState,
    plan: &FramesPlan,
    model: &mut WallModel,
    stats: &stats::Stats,
    commands: &mut Commands,
    (offscreen, info): (Option<&OffscreenTarget>, &SnapshotInfo),
    exit: &mut MessageWriter<AppExit>,
) {
    use crate::net::history::{At, History};
    if let Some((at, path)) = &st.shot {
        if !(path.exists() && at.elapsed() > Duration::from_millis(300)) {
            return;
        }
        st.shot = None;
        st.shown_at_generation = None;
        st.next += 1;
    }
    let n = plan.moments.len();
    let Some(&t) = plan.moments.get(st.next) else {
        eprintln!("snapshot: wrote {n} frames to {}", plan.dir.display());
        exit.write(AppExit::Success);
        return;
    };
    let Some(generation) = st.shown_at_generation else {
        if st.history.is_none() {
            match History::open(&plan.history) {
                Ok(Some(h)) => st.history = Some(h),
                Ok(None) => {
                    tracing::error!(target: "datawall::wall", "snapshot: no history in {}", plan.history.display());
                    exit.write(AppExit::error());
                    return;
                }
                Err(e) => {
                    tracing::error!(target: "datawall::wall", "snapshot: {e}");
                    exit.write(AppExit::error());
                    return;
                }
            }
        }
        let Some(h) = st.history.as_ref() else { return };
        match h.state_at(&model.county, At::Time(t)) {
            Ok(rebuilt) => {
                let first = h.span_ms().map_or(t, |s| s.0);
                model.show_moment(rebuilt.state, rebuilt.seq, t, first);
                st.shown_at_generation = Some(stats.generation);
                st.frames_since = 0;
            }
            Err(e) => {
                tracing::error!(target: "datawall::wall", "snapshot: the moment {t}: {e}");
                exit.write(AppExit::error());
            }
        }
        return;
    };
    // The figures of this moment, then a few frames for the map to follow.
    if stats.generation == generation {
        return;
    }
    st.frames_since += 1;
    if st.frames_since < 10 {
        return;
    }
    let path = plan.dir.join(format!(
        "frame-{:03}-{}.png",
        st.next + 1,
        crate::model::sla::clock_text(t).replace(':', "")
    ));
    let _ = std::fs::remove_file(&path);
    // Beside each frame, what it shows and where the camera was (as for one picture).
    write_sidecar(&path, info);
    eprintln!(
        "snapshot: frame {}/{n} at {} → {}",
        st.next + 1,
        crate::model::sla::clock_text(t),
        path.display()
    );
    let shot = match offscreen {
        Some(o) => Screenshot::image(o.0.clone()),
        None => Screenshot::primary_window(),
    };
    commands.spawn(shot).observe(save_to_disk(path.clone()));
    st.shot = Some((Instant::now(), path));
}

/// The snapshot driver's other parameters.
#[derive(bevy::ecs::system::SystemParam)]
struct PictureParams<'w> {
    audit: Res<'w, board::SeamAudit>,
    layout: Res<'w, layout::Layout>,
    cache_on: ResMut<'w, map_cache::MapCacheEnabled>,
    cache: Option<Res<'w, map_cache::MapCache>>,
    clock: ResMut<'w, Time<Virtual>>,
    device: Option<Res<'w, bevy::render::renderer::RenderDevice>>,
}

/// After the picture: the second one without the map cache (`SnapshotPlan::uncached_out`);
/// true when there is nothing more to draw.
fn uncached_step(
    snap: &mut Snapshot,
    commands: &mut Commands,
    offscreen: Option<&OffscreenTarget>,
    cache_on: &mut map_cache::MapCacheEnabled,
) -> bool {
    let Some(second) = snap.plan.uncached_out.clone() else {
        return true;
    };
    match snap.uncached {
        (0, ..) => {
            cache_on.0 = false;
            snap.uncached = (1, 0, None);
        }
        // A few frames for the layers to move back to the wall camera.
        (1, n, _) if n < 5 => snap.uncached.1 += 1,
        (1, ..) => {
            let shot = match offscreen {
                Some(o) => Screenshot::image(o.0.clone()),
                None => Screenshot::primary_window(),
            };
            if let Some(mut info) = snap.info.clone() {
                info.map_cache = None;
                write_sidecar(&second, &info);
            }
            commands.spawn(shot).observe(save_to_disk(second));
            snap.uncached = (2, 0, Some(Instant::now()));
        }
        (_, _, Some(asked)) => {
            return second.exists() && asked.elapsed() > Duration::from_millis(300);
        }
        _ => {}
    }
    false
}

/// The JSON beside a picture.
fn write_sidecar(png: &std::path::Path, info: &SnapshotInfo) {
    let sidecar = png.with_extension("json");
    if let Err(e) = std::fs::write(
        &sidecar,
        serde_json::to_string_pretty(info).unwrap_or_default(),
    ) {
        tracing::error!(target: "datawall::wall", "cannot write {}: {e}", sidecar.display());
    }
}

#[allow(clippy::too_many_arguments)]
fn snapshot_driver(
    mut commands: Commands,
    mut snap: ResMut<Snapshot>,
    mut model: ResMut<WallModel>,
    channel: Option<Res<feed::FeedChannel>>,
    stats: Res<stats::Stats>,
    mut drill: ResMut<panels::Drill>,
    mut fly: ResMut<camera::FlyTo>,
    mut latency: Option<ResMut<probe::Latency>>,
    camera: Query<(&Transform, &Projection), With<camera::WallCamera>>,
    window: Query<&Window>,
    adapter: Option<Res<bevy::render::renderer::RenderAdapterInfo>>,
    offscreen: Option<Res<OffscreenTarget>>,
    render_times: Option<Res<RenderTimes>>,
    mut exit: MessageWriter<AppExit>,
    mut prompt: ResMut<outbox::NotePrompt>,
    mut more: PictureParams,
) {
    let (audit, layout) = (&more.audit, &more.layout);
    if snap.started.elapsed() > snap.plan.timeout {
        tracing::error!(target: "datawall::wall", "snapshot: no synced feed after {:?}; giving up", snap.plan.timeout);
        exit.write(AppExit::error());
        return;
    }
    if let Some(at) = snap.requested {
        if !(snap.plan.out.exists() && at.elapsed() > Duration::from_millis(300)) {
            return;
        }
        if uncached_step(
            &mut snap,
            &mut commands,
            offscreen.as_deref(),
            &mut more.cache_on,
        ) {
            exit.write(AppExit::Success);
        }
        return;
    }
    // Synced, and the first analytics are in (the map colours and KPIs come from them).
    if model.synced_at.is_none() || stats.latest.is_none() || stats.past_pending() {
        tracing::debug!(target: "datawall::wall", "snapshot: synced {}, analytics {}, past figures pending {}", model.synced_at.is_some(), stats.latest.is_some(), stats.past_pending());
        return;
    }
    if let (Some(q), false) = (snap.plan.select.clone(), snap.selected) {
        snap.selected = true;
        let Some((focus, label)) = panels::search(&q, &model.county, model.live(), 1)
            .into_iter()
            .next()
        else {
            tracing::error!(target: "datawall::wall", "snapshot: nothing matches --select {q:?}; try a community or grid name, or a ticket id");
            exit.write(AppExit::error());
            return;
        };
        tracing::info!(target: "datawall::wall", "snapshot: selecting {label}");
        drill.apply(panels::UiCommand::Open(focus), &model.county, model.live());
        fly.to(
            panels::focus_points(focus, &model.county, model.live()),
            &model.county,
            true,
        );
    }
    if let (Some(back), Some(channel)) = (snap.plan.rewind_ms, channel.as_ref()) {
        if !snap.rewound {
            snap.rewound = true;
            let at = model.now_ms() - back;
            feed::request_moment(channel, &mut model, at);
            return;
        }
        if model.replay.is_none() {
            if model.replay_pending.is_none() {
                tracing::error!(target: "datawall::wall", "snapshot: the rewind failed: {}", model.last_problem.as_deref().unwrap_or("no answer"));
                exit.write(AppExit::error());
            }
            return;
        }
    }
    if let (Some(q), Some(channel)) = (snap.plan.after_action.clone(), channel.as_ref())
        && snap.aa_stage < 3
    {
        after_action_step(&mut snap, &q, channel, &mut model, &mut drill, &mut fly);
        return;
    }
    if snap.plan.act
        && snap.acted < 4
        && !act_step(&mut snap, &model, &mut drill, &mut fly, &mut prompt)
    {
        return;
    }
    snap.frames_after_sync += 1;
    if snap.frames_after_sync < snap.plan.settle_frames {
        return;
    }
    if let Some(cut) = snap.plan.cut_feed.clone() {
        if !snap.cut {
            cut();
            snap.cut = true;
            return;
        }
        if ui::feed_view(&model).banner.is_none() {
            return; // still looks live: wait for the wall to notice
        }
        // egui lays a new area out invisibly on its first frame: let the banner settle.
        snap.frames_with_banner += 1;
        if snap.frames_with_banner < 10 {
            return;
        }
    }
    let measuring = (snap.frame_ms.len() as u32) < snap.plan.measure_frames;
    if let Some(l) = latency.as_mut() {
        l.measuring = measuring;
    }
    if measuring {
        return;
    }
    if snap.plan.frames.is_none() {
        let _ = std::fs::remove_file(&snap.plan.out);
    }
    if let Some(second) = &snap.plan.uncached_out {
        let _ = std::fs::remove_file(second);
    }
    let (Ok((tf, Projection::Orthographic(o))), Ok(w)) = (camera.single(), window.single()) else {
        return;
    };
    let [render_cpu_p50, render_cpu_p95, gpu_p50, gpu_p95] =
        render_times.map_or([0.0; 4], |t| t.summary(snap.frame_ms.len()));
    let info = SnapshotInfo {
        width: w.width(),
        height: w.height(),
        centre: [tf.translation.x, tf.translation.y],
        scale: o.scale,
        scale_factor: w.scale_factor(),
        feed_state: ui::feed_view(&model).indicator,
        events: model.events,
        frames_measured: snap.frame_ms.len(),
        frame_ms_p50: percentile(&snap.frame_ms, 0.5),
        frame_ms_p95: percentile(&snap.frame_ms, 0.95),
        ecs_ms_p50: percentile(&snap.ecs_ms, 0.5),
        ecs_ms_p95: percentile(&snap.ecs_ms, 0.95),
        tickets: model.live().map_or(0, |l| l.tickets.len()),
        volunteers: model.county.pack.volunteers.len(),
        grids: model.county.pack.grids.len(),
        latency_ms_p50: latency
            .as_ref()
            .map_or(0.0, |l| percentile(&l.samples_ms, 0.5)),
        latency_ms_p99: latency
            .as_ref()
            .map_or(0.0, |l| percentile(&l.samples_ms, 0.99)),
        latency_samples: latency.as_ref().map_or(0, |l| l.samples_ms.len()),
        wall_rss_mb: crate::net::metrics::peak_rss_mb(),
        wall_rss_now_mb: crate::net::metrics::rss_bytes() as f64 / (1024.0 * 1024.0),
        cold_start_ms: model.cold_start.map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        adapter: adapter.map_or_else(String::new, |a| {
            format!("{} ({:?}, {})", a.name, a.backend, a.driver_info)
        }),
        offscreen: offscreen.is_some(),
        simulated: model.simulated,
        render_cpu_ms_p50: render_cpu_p50,
        render_cpu_ms_p95: render_cpu_p95,
        gpu_wait_ms_p50: gpu_p50,
        gpu_wait_ms_p95: gpu_p95,
        panels: if layout.wall {
            let s = w.scale_factor() * ctx_zoom(layout, w.width());
            layout
                .tiles
                .iter()
                .map(|t| [t.min.x * s, t.min.y * s, t.width() * s, t.height() * s])
                .collect()
        } else {
            Vec::new()
        },
        texts_drawn: audit.texts,
        texts_across_seams: audit.crossing.clone(),
        past_figures: [stats.yesterday.is_some(), stats.last_week.is_some()],
        map_cache: more
            .cache
            .as_ref()
            .filter(|_| more.cache_on.0)
            .map(|c| [c.renders, c.frames]),
        gpu: more.device.as_deref().and_then(GpuMemory::of),
    };
    if let Some(plan) = snap.plan.frames.clone() {
        frames_step(
            &mut snap.frames,
            &plan,
            &mut model,
            &stats,
            &mut commands,
            (offscreen.as_deref(), &info),
            &mut exit,
        );
        return;
    }
    write_sidecar(&snap.plan.out, &info);
    snap.info = Some(info);
    if snap.plan.uncached_out.is_some() {
        // Animations (an incident's pulse) hold still until the second picture.
        more.clock.pause();
    }
    let shot = match offscreen {
        Some(o) => Screenshot::image(o.0.clone()),
        None => Screenshot::primary_window(),
    };
    commands
        .spawn(shot)
        .observe(save_to_disk(snap.plan.out.clone()));
    snap.requested = Some(Instant::now());
}

/// Offscreen rendering (`offscreen`: the image size) and the render-world probes: frame
/// completion for event → pixel latency, render CPU / GPU wait times.
fn add_render_instruments(app: &mut App, offscreen: Option<(u32, u32)>, measure_latency: bool) {
    if let Some((width, height)) = offscreen {
        app.add_plugins(bevy::app::ScheduleRunnerPlugin::run_loop(Duration::ZERO));
        // Only the GPU writes it; the picture is read back from the GPU.
        let image = map_cache::target_image(UVec2::new(width, height));
        let handle = app.world_mut().resource_mut::<Assets<Image>>().add(image);
        let times = RenderTimes::default();
        app.insert_resource(OffscreenTarget(handle.clone()))
            .insert_resource(times.clone());
        app.sub_app_mut(bevy::render::RenderApp)
            .insert_resource(OffscreenTarget(handle))
            .insert_resource(times)
            .add_systems(
                bevy::render::Render,
                render_start.before(bevy::render::RenderSystems::ExtractCommands),
            );
    }
    if measure_latency {
        let drawn = probe::DrawnFrames::default();
        app.insert_resource(drawn.clone());
        app.sub_app_mut(bevy::render::RenderApp)
            .insert_resource(drawn);
    }
    if offscreen.is_some() || measure_latency {
        app.sub_app_mut(bevy::render::RenderApp).add_systems(
            bevy::render::Render,
            frame_done
                .after(bevy::render::RenderSystems::Render)
                .before(bevy::render::RenderSystems::Cleanup),
        );
    }
}

/// Build and run the wall until the window closes (or the snapshot is written).
pub fn run(county: Arc<County>, opts: WallOptions) -> anyhow::Result<()> {
    let (rx, commands) = spawn_feed(opts.target.clone())?;
    let mode = match (opts.borderless, opts.monitor) {
        (true, Some(m)) => WindowMode::BorderlessFullscreen(MonitorSelection::Index(m)),
        (true, None) => WindowMode::BorderlessFullscreen(MonitorSelection::Current),
        _ => WindowMode::Windowed,
    };
    let window = Window {
        title: format!("Datawall · {}", county.pack.manifest.county_name),
        resolution: WindowResolution::new(opts.width, opts.height).with_scale_factor_override(1.0),
        mode,
        position: match opts.monitor {
            Some(m) if !opts.borderless => WindowPosition::Centered(MonitorSelection::Index(m)),
            _ => WindowPosition::Automatic,
        },
        present_mode: PresentMode::AutoVsync,
        ..default()
    };
    let offscreen = opts.snapshot.as_ref().is_some_and(|p| p.offscreen);
    let mut plugins = DefaultPlugins
        .build()
        .disable::<bevy::log::LogPlugin>()
        // Nothing here is animated or post-processed: their systems and pipelines would be
        // set up at start for nothing.
        .disable::<bevy::post_process::PostProcessPlugin>()
        .disable::<bevy::animation::AnimationPlugin>()
        .set(WindowPlugin {
            primary_window: Some(window),
            ..default()
        });
    if offscreen {
        // No windowing system: the `Window` entity stays as the wall's size and scale for
        // layout, bevy's schedule runner drives frames, and the camera draws into an image.
        plugins = plugins.disable::<bevy::winit::WinitPlugin>();
    }
    if opts.low_latency {
        plugins = plugins.disable::<bevy::render::pipelined_rendering::PipelinedRenderingPlugin>();
    }
    if opts.snapshot.is_some() {
        // A picture needs no speaker (and a render machine may have none).
        plugins = plugins.disable::<bevy::audio::AudioPlugin>();
    }
    let measure_latency = opts.snapshot.as_ref().is_some_and(|p| p.measure_latency);
    let mut app = App::new();
    app.insert_resource(ClearColor(theme::BACKGROUND))
        .add_plugins(plugins);
    // Every mesh in a buffer of its own: the wall draws a handful of meshes, and each of the
    // renderer's shared mesh buffers keeps an allocator with room for 128 Ki allocations,
    // about 5 MB of memory apiece (about 20 MB across the wall's vertex layouts) that it
    // writes whole when it is made. An empty mesh still takes a shared buffer.
    if let Some(render) = app.get_sub_app_mut(bevy::render::RenderApp) {
        render.insert_resource(bevy::render::mesh::allocator::MeshAllocatorSettings {
            slab_allocator_settings: bevy::render::slab_allocator::SlabAllocatorSettings {
                large_threshold: 1,
                ..default()
            },
            ..default()
        });
    }
    add_render_instruments(
        &mut app,
        offscreen.then_some((opts.width, opts.height)),
        measure_latency,
    );
    app.add_plugins(bevy_egui::EguiPlugin::default())
        // The wall camera takes the board's context (`camera::setup_camera`), not whichever
        // camera comes first.
        .insert_resource(bevy_egui::EguiGlobalSettings {
            auto_create_primary_context: false,
            ..default()
        })
        .insert_resource(map_cache::MapCacheEnabled(opts.map_cache))
        .insert_resource(WallModel::new(county).preparing_off_thread())
        .insert_resource(FeedChannel { rx, commands })
        .insert_resource(ui::UiScale(opts.ui_scale))
        .insert_resource(opts.view)
        .insert_resource(heat::ShowHeat(opts.heat))
        .insert_resource(sounds::Mute(opts.mute))
        .insert_resource(tour::Tour::new(tour::TourConfig {
            idle_after: opts.tour_after,
            ..Default::default()
        }))
        .configure_sets(
            Update,
            (WallSet::Feed, WallSet::Model, WallSet::Input, WallSet::Draw).chain(),
        )
        .add_plugins((
            feed::plugin,
            (map::plugin, map_cache::plugin, late::plugin),
            heat::plugin,
            volunteers::plugin,
            incidents::plugin,
            camera::plugin,
            stats::plugin,
            panels::plugin,
            actions::plugin,
            sounds::plugin,
            after_action::plugin,
            tour::plugin,
            timeline::plugin,
            ui::plugin,
            board::plugin,
        ));
    let scale = opts.ui_scale.max(0.1);
    match &opts.layout {
        Some(c) => {
            app.insert_resource(layout::Layout::of_wall(c, scale))
                .insert_resource(nav::Layers {
                    grids_labels: c.layers.grid_labels,
                    incidents: c.layers.incidents,
                    help: false,
                })
                .insert_resource(nav::ShowVolunteers(c.layers.volunteers))
                .insert_resource(board::Ranking {
                    order: c.ranking.order,
                    rows: c.ranking.rows as usize,
                });
        }
        None => {
            app.insert_resource(layout::Layout::desk(
                opts.width as f32 / scale,
                opts.height as f32 / scale,
            ));
        }
    }
    if let Some(plan) = opts.snapshot {
        app.insert_resource(Snapshot {
            plan,
            started: Instant::now(),
            frames_after_sync: 0,
            cut: false,
            frames_with_banner: 0,
            selected: false,
            acted: 0,
            act_ticket: None,
            requested: None,
            uncached: (0, 0, None),
            info: None,
            rewound: false,
            aa_stage: 0,
            frames: FramesState::default(),
            frame_ms: Vec::new(),
            ecs_ms: Vec::new(),
            last_frame: None,
        })
        .init_resource::<FrameStart>()
        .add_systems(First, mark_frame_start)
        .add_systems(Last, record_frame)
        .add_systems(Update, snapshot_driver.after(WallSet::Draw))
        .add_systems(
            Update,
            move_volunteers.after(WallSet::Feed).before(WallSet::Model),
        );
        if measure_latency {
            app.world_mut().resource_mut::<WallModel>().latency_stamps = Some(Vec::new());
            app.init_resource::<probe::Latency>()
                .add_systems(First, probe::settle_stamps)
                .add_systems(
                    Update,
                    probe::collect_stamps
                        .after(WallSet::Feed)
                        .before(WallSet::Model),
                );
        }
    }
    match app.run() {
        AppExit::Success => Ok(()),
        AppExit::Error(code) => anyhow::bail!("the wall exited with code {code}"),
    }
}
