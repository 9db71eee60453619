//! The wall rendered for real (bevy + Mesa lavapipe under Xvfb) from the recorded hour; the
//! picture is checked pixel by pixel where the projection puts things.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use datawall::model::county::default_pack_dir;
use datawall::model::{County, LiveState};
use datawall::net::source::read_recording;
use datawall::protocol::{LonLat, VolunteerStatus};
use datawall::wall::SnapshotInfo;
use datawall::wall::map::{grid_statuses, world};
use datawall::wall::theme;

use crate::common::{county, scratch_dir};

const AT_MINUTES: f64 = 15.0;

fn recording() -> PathBuf {
    default_pack_dir().join("../recordings/pingluo-1h.ndjson.gz")
}

struct Picture {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
    info: SnapshotInfo,
}

impl Picture {
    fn load(png_path: &Path) -> Self {
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(png_path).unwrap(),
        ));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut buf).unwrap();
        let channels = match frame.color_type {
            png::ColorType::Rgba => 4,
            png::ColorType::Rgb => 3,
            other => panic!("unexpected PNG colour type {other:?}"),
        };
        let rgba = buf[..frame.buffer_size()]
            .chunks(channels)
            .flat_map(|p| [p[0], p[1], p[2], if channels == 4 { p[3] } else { 255 }])
            .collect();
        let info: SnapshotInfo = serde_json::from_str(
            &std::fs::read_to_string(png_path.with_extension("json")).unwrap(),
        )
        .unwrap();
        Self {
            width: frame.width,
            height: frame.height,
            rgba,
            info,
        }
    }

    fn pixel(&self, x: i64, y: i64) -> Option<[u8; 3]> {
        if x < 0 || y < 0 || x >= i64::from(self.width) || y >= i64::from(self.height) {
            return None;
        }
        let i = ((y as u32 * self.width + x as u32) * 4) as usize;
        Some([self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]])
    }

    /// Physical pixel of a world point, from the camera the wall recorded.
    fn project(&self, w: bevy::math::Vec2) -> (i64, i64) {
        let f = self.info.scale_factor;
        let x = (w.x - self.info.centre[0]) / self.info.scale + self.info.width / 2.0;
        let y = self.info.height / 2.0 - (w.y - self.info.centre[1]) / self.info.scale;
        ((x * f).round() as i64, (y * f).round() as i64)
    }

    /// Whether any pixel within `r` of (x, y) is within `tol` of `c`.
    fn near(&self, (x, y): (i64, i64), r: i64, c: [u8; 3], tol: i32) -> bool {
        (-r..=r).any(|dy| {
            (-r..=r).any(|dx| self.pixel(x + dx, y + dy).is_some_and(|p| close(p, c, tol)))
        })
    }
}

fn close(p: [u8; 3], c: [u8; 3], tol: i32) -> bool {
    (0..3).all(|i| (i32::from(p[i]) - i32::from(c[i])).abs() <= tol)
}

fn srgb8(c: [f32; 4]) -> [u8; 3] {
    [
        (c[0] * 255.0).round() as u8,
        (c[1] * 255.0).round() as u8,
        (c[2] * 255.0).round() as u8,
    ]
}

fn color8(c: bevy::color::Color) -> [u8; 3] {
    let s = c.to_srgba();
    srgb8([s.red, s.green, s.blue, 1.0])
}

/// Run `datawall snapshot` under Xvfb. Needs xvfb-run and a Vulkan driver (Mesa lavapipe):
/// `.ci/run` and `scripts/test` install them.
fn snapshot<S: AsRef<std::ffi::OsStr>>(name: &str, extra: &[S]) -> Picture {
    render(name, extra, false)
}

/// `extra` after the arguments that show the recorded hour at [`AT_MINUTES`].
fn recorded_args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--replay".into(),
        recording().to_string_lossy().into_owned(),
        "--at".into(),
        AT_MINUTES.to_string(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

/// Run `datawall snapshot` on the recorded hour at [`AT_MINUTES`], with `extra`.
fn recorded(name: &str, extra: &[&str]) -> Picture {
    snapshot(name, &recorded_args(extra))
}

fn render<S: AsRef<std::ffi::OsStr>>(name: &str, extra: &[S], offscreen: bool) -> Picture {
    let out = scratch_dir(name).join("wall.png");
    let exe = env!("CARGO_BIN_EXE_datawall");
    let mut cmd = if offscreen {
        let mut c = Command::new(exe);
        c.env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY");
        c.args(["snapshot", "--offscreen"]);
        c
    } else {
        // Tests run in parallel: give each its own first display number so concurrent
        // xvfb-run calls do not race for the same one (`-a` still moves on if it is taken).
        let display = 110
            + name
                .bytes()
                .fold(0u32, |h, b| (h * 31 + u32::from(b)) % 400)
                * 7
                % 400;
        let mut c = Command::new("xvfb-run");
        c.args([
            "-a",
            "-n",
            &display.to_string(),
            "-s",
            "-screen 0 1600x900x24",
        ])
        .args([exe, "snapshot"]);
        c
    };
    let status = cmd
        .args(["--width", "1600", "--height", "900"])
        .arg("--out")
        .arg(&out)
        .args(extra)
        .env("DATAWALL_PACK", default_pack_dir())
        .status()
        .expect(
            "xvfb-run is missing: apt-get install xvfb mesa-vulkan-drivers (scripts/test does)",
        );
    assert!(status.success(), "datawall snapshot failed: {status}");
    Picture::load(&out)
}

/// The recorded county at the snapshot's moment, as the wall's model sees it.
fn state_at(minutes: f64) -> (LiveState, i64) {
    let rec = read_recording(&recording()).unwrap();
    let at = rec.header.live_from_ms + (minutes * 60_000.0) as i64;
    let mut s = LiveState::new(county());
    for e in rec
        .events
        .iter()
        .filter(|e| e.at_ms().is_some_and(|t| t <= at))
    {
        s.apply(e).unwrap();
    }
    (s, at)
}

/// Grids with overdue tickets are filled with the overdue colour, a quiet one is not.
fn assert_grid_fills(pic: &Picture, state: &LiveState, now: i64) {
    let c: Arc<County> = county();
    let proj = c.pack.projection();
    // Grids with overdue tickets are filled with the overdue colour (labels and markers may
    // cover parts of a grid, so the best-exposed one is judged by its interior samples).
    let statuses = grid_statuses(&c, state, now);
    let overdue: Vec<_> = statuses
        .iter()
        .filter(|(_, s)| s.overdue > 0)
        .map(|(id, _)| *id)
        .collect();
    assert!(!overdue.is_empty(), "the recording has overdue tickets");
    let interior = |id: u32| -> Vec<(i64, i64)> {
        let g = c.grid(id).unwrap();
        let label = world(&proj, g.label);
        g.area
            .exterior()
            .coords()
            .flat_map(|corner| {
                let corner = world(&proj, LonLat::new(corner.x, corner.y));
                [0.35, 0.6, 0.8].map(|t| pic.project(label.lerp(corner, t)))
            })
            .collect()
    };
    let best = overdue
        .iter()
        .map(|id| {
            let samples = interior(*id);
            let hot = samples
                .iter()
                .filter(|p| pic.near(**p, 0, srgb8(theme::GRID_OVERDUE), 30))
                .count();
            (hot as f32 / samples.len() as f32, *id)
        })
        .fold((0.0f32, 0u32), |a, b| if b.0 > a.0 { b } else { a });
    assert!(
        best.0 >= 0.34,
        "no overdue grid is drawn red (best: grid {} at {:.0} %)",
        best.1,
        best.0 * 100.0
    );
    // And a grid with nothing open is not.
    let (quiet_id, _) = statuses
        .iter()
        .filter(|(_, s)| s.open == 0)
        .min_by_key(|(id, _)| **id)
        .expect("a quiet grid");
    let q = world(&proj, c.grid(*quiet_id).unwrap().label);
    assert!(!pic.near(pic.project(q), 0, srgb8(theme::GRID_OVERDUE), 30));
}

#[test]
fn the_recorded_hour_renders_map_grids_and_volunteers() {
    // Heatmap off: the grid fills are checked by colour.
    let pic = recorded("render-seat", &["--heat", "false"]);
    let c: Arc<County> = county();
    let proj = c.pack.projection();
    let (state, now) = state_at(AT_MINUTES);
    // The simulator's recording: the gateway says so, and the top bar shows it, amber, in
    // its right part (left of the clock).
    assert!(pic.info.simulated, "a simulated feed is said to be");
    let amber = [theme::WARN.r(), theme::WARN.g(), theme::WARN.b()];
    let w = i64::from(pic.width);
    let badge = (w / 2..w)
        .step_by(2)
        .flat_map(|x| (8..40).step_by(2).map(move |y| (x, y)))
        .filter(|p| pic.near(*p, 0, amber, 30))
        .count();
    assert!(
        badge >= 40,
        "no 模拟数据 SIMULATED badge in the top bar ({badge})"
    );
    // A recording shown at a moment: in sync, the clock stopped there.
    assert!(
        pic.info.feed_state.contains("定格 frozen"),
        "{}",
        pic.info.feed_state
    );

    assert_grid_fills(&pic, &state, now);

    // A volunteer on duty, away from others and from the panels, shows its marker.
    let on_map: Vec<_> = state
        .volunteers
        .iter()
        .filter(|v| v.status == VolunteerStatus::Available)
        .filter_map(|v| Some((v.id, world(&proj, v.pos?))))
        .collect();
    let team_of = |id: u32| {
        state
            .volunteers
            .iter()
            .find(|v| v.id == id)
            .map(|v| v.team_id)
            .unwrap()
    };
    // Away from other markers, panels, community labels and incident markers.
    let covered: Vec<(i64, i64)> = c
        .pack
        .communities
        .iter()
        .map(|cm| pic.project(world(&proj, cm.label)))
        .chain(
            state
                .active_incidents()
                .map(|i| pic.project(world(&proj, i.pos))),
        )
        .collect();
    let lonely = on_map
        .iter()
        .filter(|(id, p)| {
            let (x, y) = pic.project(*p);
            x > 560
                && x < 1500
                && y > 300
                && y < 820
                && covered
                    .iter()
                    .all(|(lx, ly)| (lx - x).abs() > 90 || (ly - y).abs() > 40)
                && on_map
                    .iter()
                    .all(|(o, q)| o == id || q.distance(*p) > 14.0 * pic.info.scale)
        })
        .take(6)
        .collect::<Vec<_>>();
    assert!(lonely.len() >= 3, "too few isolated volunteers in view");
    let drawn: Vec<_> = lonely
        .iter()
        .filter(|(_, p)| pic.near(pic.project(*p), 2, srgb8(theme::VOLUNTEER_AVAILABLE), 45))
        .collect();
    assert!(
        drawn.len() + 1 >= lonely.len(),
        "volunteers not drawn where they are: {:?}",
        lonely
            .iter()
            .map(|(id, p)| (id, pic.project(*p)))
            .collect::<Vec<_>>()
    );
    // Each wears its team's ring around the fill: the team's colour at the marker's edge,
    // not at its centre.
    let half = (theme::VOLUNTEER_MARKER_PX / 2.0).floor() as i64;
    let ringed: Vec<_> = drawn
        .iter()
        .filter(|(id, p)| {
            let (x, y) = pic.project(*p);
            let team = srgb8(theme::team_color(team_of(*id)));
            let edge = [(x - half, y), (x + half, y), (x, y - half), (x, y + half)];
            edge.iter().filter(|&&e| pic.near(e, 0, team, 45)).count() >= 3
                && !pic.near((x, y), 0, team, 20)
        })
        .collect();
    assert!(
        ringed.len() + 1 >= drawn.len(),
        "team rings missing: {} of {} markers have one",
        ringed.len(),
        drawn.len()
    );
}

#[test]
fn the_county_outline_is_drawn_where_the_projection_puts_it() {
    let pic = recorded("render-county", &["--view", "county"]);
    let c = county();
    let proj = c.pack.projection();
    let border = color8(theme::COUNTY_BORDER);
    let ring = c.pack.boundary.0[0].exterior();
    let mut checked = 0;
    let mut hits = 0;
    for p in ring.coords().step_by(10) {
        let (x, y) = pic.project(world(&proj, LonLat::new(p.x, p.y)));
        // Skip what the top bar and the legend cover.
        if y < 130 || (x < 500 && y > 620) {
            continue;
        }
        checked += 1;
        if pic.near((x, y), 2, border, 50) {
            hits += 1;
        }
    }
    assert!(checked > 40, "only {checked} boundary points in view");
    assert!(
        hits * 10 >= checked * 9,
        "outline found at {hits} of {checked} boundary points"
    );
    // Outside the county is background.
    assert!(
        pic.near((5, 450), 0, color8(theme::BACKGROUND), 12)
            || pic.near((1595, 450), 0, color8(theme::BACKGROUND), 12)
    );
}

#[test]
fn a_cut_feed_shows_the_feed_down_banner() {
    let pic = recorded("render-cut", &["--cut-feed"]);
    assert!(
        !pic.info.feed_state.contains("live"),
        "{}",
        pic.info.feed_state
    );
    // A band of the banner's red across the screen just under the top bar.
    let red = [200, 30, 30];
    let banner_rows = (60..300)
        .filter(|y| {
            (40..1560)
                .step_by(20)
                .filter(|x| pic.near((*x, *y), 0, red, 24))
                .count()
                >= 40
        })
        .count();
    assert!(
        banner_rows >= 8,
        "no feed-down banner under the top bar ({banner_rows} red rows)"
    );
}

#[test]
fn the_densest_ticket_cluster_glows_hot() {
    use datawall::wall::heat::{HeatGrid, density_texels};
    let pic = recorded("render-heat", &[]);
    let c = county();
    let (state, now) = state_at(AT_MINUTES);
    let grid = HeatGrid::around_communities(&c);
    let texels = density_texels(&grid, &state, now);
    // The hottest cells in view (not under the panels).
    let mut hottest: Vec<(u8, (i64, i64))> = texels
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                *v,
                pic.project(grid.cell_centre(i % grid.cols, i / grid.cols)),
            )
        })
        .filter(|(_, (x, y))| *x > 500 && *x < 1550 && *y > 150 && *y < 860)
        .collect();
    hottest.sort_by_key(|(v, _)| std::cmp::Reverse(*v));
    assert!(hottest[0].0 > 200, "the recording has a dense cluster");
    let hot = |p: [u8; 3]| p[0] > 180 && p[2] < 110 && p[0] > p[2] + 100;
    let glowing = hottest
        .iter()
        .take(12)
        .filter(|(_, xy)| (-2..=2).any(|d| pic.pixel(xy.0 + d, xy.1).is_some_and(hot)))
        .count();
    assert!(
        glowing >= 8,
        "only {glowing} of the 12 hottest cells look hot: {:?}",
        hottest
            .iter()
            .take(4)
            .map(|(_, xy)| pic.pixel(xy.0, xy.1))
            .collect::<Vec<_>>()
    );
    // Quiet land far from any ticket is not hot.
    let (x, y) = texels
        .iter()
        .enumerate()
        .filter(|(_, v)| **v == 0)
        .map(|(i, _)| pic.project(grid.cell_centre(i % grid.cols, i / grid.cols)))
        .find(|(x, y)| *x > 0 && *y > 150 && *x < 1600 && *y < 900)
        .expect("quiet land inside the picture, clear of the panels");
    let p = pic.pixel(x, y).expect("inside the picture");
    assert!(!hot(p), "quiet land at ({x}, {y}) looks hot: {p:?}");
}

#[test]
fn a_selected_community_shows_its_panel_breadcrumbs_and_is_centred() {
    let pic = recorded("render-drill", &["--heat", "false", "--select", "太西"]);
    let ui = 1.25; // the default --ui-scale
    let (w, h) = (i64::from(pic.width), i64::from(pic.height));
    let panel_left = w - ((12.0 + theme::DRILL_PX) * ui) as i64;
    let panel_top = ((datawall::wall::ui::TOP_BAR_PX + 8.0) * ui) as i64;
    let ranking_right = ((12.0 + theme::RANKING_PX) * ui) as i64;
    // The drill-down panel's background fills the right column…
    let bg = [12, 18, 28];
    let samples: Vec<(i64, i64)> = (0..20)
        .flat_map(|i| {
            (0..8).map(move |j| {
                (
                    panel_left + 8 + j * ((w - panel_left - 24) / 8),
                    panel_top + 40 + i * ((h - panel_top - 80) / 20),
                )
            })
        })
        .collect();
    let on_bg = samples.iter().filter(|p| pic.near(**p, 0, bg, 24)).count();
    assert!(
        on_bg * 2 >= samples.len(),
        "the right column is not the panel: {on_bg} of {} samples",
        samples.len()
    );
    // …with text in it, and the breadcrumb links along its top.
    let text = (panel_left..w)
        .step_by(2)
        .flat_map(|x| (panel_top..h).step_by(2).map(move |y| (x, y)))
        .filter(|p| {
            pic.near(
                *p,
                0,
                [theme::TEXT.r(), theme::TEXT.g(), theme::TEXT.b()],
                40,
            )
        })
        .count();
    assert!(text > 300, "little text in the panel ({text} samples)");
    let link = [theme::LINK.r(), theme::LINK.g(), theme::LINK.b()];
    let crumbs = (panel_left..panel_left + 300)
        .flat_map(|x| (panel_top..panel_top + 60).map(move |y| (x, y)))
        .filter(|p| pic.near(*p, 0, link, 40))
        .count();
    assert!(
        crumbs > 30,
        "no breadcrumb links at the top of the panel ({crumbs} px)"
    );
    // The camera flew to the community: its label sits in the map between the panels.
    let c = county();
    let taixi = c
        .pack
        .communities
        .iter()
        .find(|cm| cm.name.contains("太西"))
        .unwrap();
    let (x, y) = pic.project(world(&c.pack.projection(), taixi.label));
    let mid = (ranking_right + panel_left) / 2;
    assert!(
        (x - mid).abs() < (panel_left - ranking_right) / 4 && y > panel_top && y < h,
        "the community is not centred in the free map: ({x}, {y}), middle {mid}"
    );
}

#[test]
fn offscreen_rendering_needs_no_display_and_draws_what_the_window_does() {
    let args = ["--select", "太西", "--measure-frames", "5"];
    let window = recorded("render-offscreen-window", &args);
    let image = render("render-offscreen-image", &recorded_args(&args), true);
    assert!(image.info.offscreen && !window.info.offscreen);
    assert!(
        !image.info.adapter.is_empty(),
        "the sidecar names the render adapter"
    );
    assert_eq!(image.info.frames_measured, 5, "offscreen frames are timed");
    assert!(image.info.frame_ms_p50 > 0.0);
    assert!(
        image.info.render_cpu_ms_p50 > 0.0 && image.info.gpu_wait_ms_p50 >= 0.0,
        "offscreen frames split render-world CPU and GPU wait"
    );
    assert_eq!((image.width, image.height), (window.width, window.height));
    // Same scene, same camera: the pictures agree pixel for pixel (a few may differ where a
    // marker glides between the two runs' frames).
    assert_eq!(image.info.centre, window.info.centre);
    let n = (image.width * image.height) as usize;
    let differing = (0..n)
        .filter(|i| {
            let (a, b) = (
                &image.rgba[i * 4..i * 4 + 3],
                &window.rgba[i * 4..i * 4 + 3],
            );
            a.iter().zip(b).any(|(x, y)| x.abs_diff(*y) > 24)
        })
        .count();
    assert!(
        differing * 1000 < n,
        "{differing} of {n} pixels differ between the offscreen and the window picture"
    );
    // …and it is the wall, not an empty frame: the drill-down panel is there.
    let bg = [12, 18, 28];
    let panel = (0..n)
        .filter(|i| {
            close(
                [
                    image.rgba[i * 4],
                    image.rgba[i * 4 + 1],
                    image.rgba[i * 4 + 2],
                ],
                bg,
                2,
            )
        })
        .count();
    assert!(panel * 10 > n, "the panels cover part of the picture");
}

#[test]
fn the_map_drawn_from_its_cache_is_the_map_drawn_every_frame_pixel_for_pixel() {
    // The camera flies to a community after the first frames, so a cache that kept the
    // first view would show the county where the picture without it shows the community.
    let dir = scratch_dir("render-map-cache");
    let second = dir.join("uncached.png");
    let cached = recorded(
        "render-map-cache",
        &[
            "--select",
            "太西",
            "--also-uncached",
            second.to_str().unwrap(),
        ],
    );
    let uncached = Picture::load(&second);
    let [renders, frames] = cached
        .info
        .map_cache
        .expect("the first picture is drawn with the map cache");
    assert!(
        renders >= 1 && renders * 2 < frames,
        "the map was drawn into the cache in {renders} of {frames} frames: it should be drawn \
         when it changes, and copied in the others"
    );
    assert!(uncached.info.map_cache.is_none());
    assert_eq!(cached.info.centre, uncached.info.centre);
    assert_eq!(
        (cached.width, cached.height),
        (uncached.width, uncached.height)
    );
    let differing: Vec<(usize, usize)> = cached
        .rgba
        .chunks(4)
        .zip(uncached.rgba.chunks(4))
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| (i % cached.width as usize, i / cached.width as usize))
        .collect();
    assert!(
        differing.is_empty(),
        "{} pixels differ between the cached and the uncached map, first at {:?}",
        differing.len(),
        &differing[..differing.len().min(5)]
    );
    // …and it is the map, not two empty frames.
    let background = cached
        .rgba
        .chunks(4)
        .filter(|p| close([p[0], p[1], p[2]], color8(theme::BACKGROUND), 2))
        .count();
    assert!(
        background < cached.rgba.len() / 4 / 2,
        "half the picture is background ({background} px): the map is missing"
    );
}

/// A gateway's history in `dir` of the recorded hour (with a checkpoint at its end when
/// `checkpoint`); the recording.
fn history_of_the_recording(dir: &Path, checkpoint: bool) -> datawall::net::source::Recording {
    use datawall::net::history;
    let rec = read_recording(&recording()).unwrap();
    let (hub, writer) =
        history::open_for_gateway(dir, 7, &county(), datawall::net::hub::HubConfig::default())
            .unwrap();
    hub.set_history(writer);
    for chunk in rec.events.chunks(4_096) {
        hub.publish(chunk.iter().cloned());
    }
    if checkpoint {
        history::checkpoint_now(&hub, dir, 7).unwrap();
    }
    rec
}

#[test]
fn a_past_moment_from_the_history_is_drawn_as_it_was_and_marked_frozen() {
    use datawall::net::history::{At, History};
    // A gateway's history of the recorded hour.
    let dir = scratch_dir("render-history-src");
    let rec = history_of_the_recording(&dir, true);
    let at = rec.header.live_from_ms + (AT_MINUTES * 60_000.0) as i64;
    let pic = snapshot(
        "render-history",
        &[
            "--history-dir",
            dir.to_str().unwrap(),
            "--moment",
            &at.to_string(),
            "--heat",
            "false",
        ],
    );
    assert!(
        pic.info.feed_state.contains("定格 frozen"),
        "a past moment is not shown as live: {}",
        pic.info.feed_state
    );
    assert!(
        !pic.info.simulated,
        "a history's moment does not say where it came from: not claimed simulated"
    );
    let then = History::open(&dir)
        .unwrap()
        .unwrap()
        .state_at(&county(), At::Time(at))
        .unwrap();
    assert_grid_fills(&pic, &then.state, at);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_rewound_wall_says_replay_and_shows_the_moment() {
    let pic = snapshot("render-rewind", &["--rewind", "30"]);
    assert!(
        pic.info.feed_state.contains("回放 REPLAY") && pic.info.feed_state.contains("L 返回实时"),
        "the replay is unmistakable: {}",
        pic.info.feed_state
    );
    // The indicator is drawn in the top bar, amber.
    let amber = [theme::WARN.r(), theme::WARN.g(), theme::WARN.b()];
    let amber_px = (280..1200)
        .step_by(4)
        .filter(|x| pic.near((*x, 20), 6, amber, 40))
        .count();
    assert!(
        amber_px >= 10,
        "no amber replay indicator in the top bar ({amber_px})"
    );
    // And the time bar along the bottom, right of the legend, with the moment in amber.
    let (w, h) = (i64::from(pic.width), i64::from(pic.height));
    let bar_amber = (w / 3..w)
        .step_by(3)
        .flat_map(|x| (h - 60..h - 8).step_by(3).map(move |y| (x, y)))
        .filter(|p| pic.near(*p, 0, amber, 40))
        .count();
    assert!(
        bar_amber >= 10,
        "no time bar along the bottom ({bar_amber} amber samples)"
    );
}

#[test]
fn a_range_of_moments_becomes_one_frame_each_drawn_as_it_was() {
    use datawall::net::history::{At, History};
    let dir = scratch_dir("render-frames-src");
    let rec = history_of_the_recording(&dir, false);
    let from = rec.header.live_from_ms + 10 * 60_000;
    let to = from + 40 * 60_000;
    let out = scratch_dir("render-frames");
    // The frames go into `out` (a folder); `snapshot` writes its own picture path there too.
    let exe = env!("CARGO_BIN_EXE_datawall");
    let status = Command::new("xvfb-run")
        .args(["-a", "-n", "731", "-s", "-screen 0 1600x900x24"])
        .args([
            exe, "snapshot", "--width", "1600", "--height", "900", "--heat", "false",
        ])
        .args(["--history-dir", dir.to_str().unwrap()])
        .args([
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
            "--every",
            "20",
        ])
        .arg("--out")
        .arg(&out)
        .env("DATAWALL_PACK", default_pack_dir())
        .status()
        .expect("xvfb-run (scripts/test installs it)");
    assert!(
        status.success(),
        "datawall snapshot --from … --to … failed: {status}"
    );
    let mut frames: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    frames.sort();
    assert_eq!(frames.len(), 3, "every 20 min from +10 to +50: {frames:?}");
    let h = History::open(&dir).unwrap().unwrap();
    for (k, path) in frames.iter().enumerate() {
        let at = from + k as i64 * 20 * 60_000;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&format!("frame-{:03}-", k + 1)), "{name}");
        let pic = Picture::load(path);
        assert!(
            pic.info.feed_state.contains("回放 REPLAY"),
            "{}",
            pic.info.feed_state
        );
        // Each frame's grid colours are the history's state at its moment.
        let then = h.state_at(&county(), At::Time(at)).unwrap();
        assert_grid_fills(&pic, &then.state, at);
    }
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(out);
}

/// `assets/<name>`.
fn asset(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// `assets/<name>` with the heatmap off (the grid fills are checked by colour), written to
/// a scratch folder.
fn without_heat(name: &str) -> String {
    let text = std::fs::read_to_string(asset(name)).unwrap();
    let text = if text.contains("heat = true") {
        text.replace("heat = true", "heat = false")
    } else {
        format!("{text}\n[layers]\nheat = false\n")
    };
    let path = scratch_dir(&format!("config-{name}")).join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Amber pixels (the 模拟数据 SIMULATED badge) in the top-right corner of a panel.
fn badge_pixels(pic: &Picture, [x, y, w, _]: [f32; 4]) -> usize {
    let amber = [theme::WARN.r(), theme::WARN.g(), theme::WARN.b()];
    let (x1, y0) = ((x + w) as i64, y as i64);
    (x1 - 420..x1)
        .step_by(2)
        .flat_map(|px| (y0..y0 + 60).step_by(2).map(move |py| (px, py)))
        .filter(|p| pic.near(*p, 0, amber, 30))
        .count()
}

/// Share of a rectangle's pixels (sampled) that are the board's colours: the panels' cards
/// and the background between them.
fn board_share(pic: &Picture, (x0, y0, x1, y1): (i64, i64, i64, i64)) -> f32 {
    let board = [theme::BOARD_BG, theme::PANEL_BG].map(|c| [c.r(), c.g(), c.b()]);
    let samples: Vec<(i64, i64)> = (x0..x1)
        .step_by(7)
        .flat_map(|x| (y0..y1).step_by(7).map(move |y| (x, y)))
        .collect();
    let hits = samples
        .iter()
        .filter(|p| board.iter().any(|c| pic.near(**p, 0, *c, 3)))
        .count();
    hits as f32 / samples.len().max(1) as f32
}

#[test]
fn a_spliced_wall_of_four_by_two_panels_draws_no_text_across_a_seam() {
    let config = without_heat("wall.example.toml");
    // A community open, as an operator would have it: its panel docked in a map panel.
    let pic = render(
        "render-spliced-4x2",
        &recorded_args(&["--config", &config, "--select", "和平社区"]),
        true,
    );
    // Eight 1920 × 1080 panels with 12-pixel bezels between them.
    assert_eq!((pic.width, pic.height), (4 * 1920 + 3 * 12, 2 * 1080 + 12));
    assert_eq!(pic.info.panels.len(), 8, "{:?}", pic.info.panels);
    for p in &pic.info.panels {
        assert_eq!((p[2].round(), p[3].round()), (1920.0, 1080.0), "{p:?}");
    }
    // Every piece of text the frame drew — map labels, KPI figures, card text — checked
    // against the seams: none straddles one (and there is plenty of text to check).
    assert!(
        pic.info.texts_drawn > 250,
        "only {} texts drawn",
        pic.info.texts_drawn
    );
    assert!(
        pic.info.texts_across_seams.is_empty(),
        "text across a seam: {:?}",
        pic.info.texts_across_seams
    );
    // The simulated source is said in the corner of every panel.
    for p in &pic.info.panels {
        let n = badge_pixels(&pic, *p);
        assert!(n >= 60, "no SIMULATED badge in the panel at {p:?} ({n})");
    }
    // The outer columns are the board (cards on their background), the middle ones the map.
    let left = (20, 20, 1900, 2150);
    let right = (5796 + 20, 20, 7716 - 20, 2150);
    let middle = (1932 + 400, 300, 5784 - 400, 1800);
    assert!(board_share(&pic, left) > 0.6, "{}", board_share(&pic, left));
    assert!(
        board_share(&pic, right) > 0.6,
        "{}",
        board_share(&pic, right)
    );
    assert!(
        board_share(&pic, middle) < 0.2,
        "the map fills the middle: {}",
        board_share(&pic, middle)
    );
    // The community is framed between the side panels (the 16:9 test checks the fills).
    let c = county();
    let heping = c
        .pack
        .communities
        .iter()
        .find(|m| m.name.contains("和平"))
        .unwrap();
    let (x, y) = pic.project(world(&c.pack.projection(), heping.label));
    assert!(
        x > 1932 && x < 5784 - 470 * 3 / 2 && y > 0 && y < 2172,
        "和平 is framed in the map's panels, left of the drill-down: ({x}, {y})"
    );
}

#[test]
fn a_single_sixteen_by_nine_screen_gets_the_same_board_beside_the_map() {
    let pic = render(
        "render-board-16x9",
        &recorded_args(&["--config", &without_heat("wall.16x9.toml")]),
        true,
    );
    assert_eq!((pic.width, pic.height), (1920, 1080));
    assert_eq!(pic.info.panels.len(), 1);
    assert!(pic.info.texts_across_seams.is_empty());
    assert!(pic.info.texts_drawn > 120, "{}", pic.info.texts_drawn);
    assert!(badge_pixels(&pic, pic.info.panels[0]) >= 60);
    // A quarter of the screen each side is the board; the map between.
    assert!(board_share(&pic, (10, 10, 470, 1070)) > 0.6);
    assert!(board_share(&pic, (1450, 10, 1910, 1070)) > 0.6);
    assert!(board_share(&pic, (700, 200, 1220, 800)) < 0.25);
    // Nothing of the map shows through a side column: the board's colour fills the 14 px
    // ring around each card (painted as strips around it, not under it), and the card's
    // own colour its inside edge, pixel for pixel.
    let board = [
        theme::BOARD_BG.r(),
        theme::BOARD_BG.g(),
        theme::BOARD_BG.b(),
    ];
    let card = [
        theme::PANEL_BG.r(),
        theme::PANEL_BG.g(),
        theme::PANEL_BG.b(),
    ];
    for x0 in [0, 1440] {
        for (colour, rect) in [
            (board, (x0, 0, x0 + 14, 1080)),
            (board, (x0 + 466, 0, x0 + 480, 1080)),
            // (the simulated-data badge sits over the right column's top-right corner)
            (board, (x0, 0, x0 + 200, 14)),
            (board, (x0, 1066, x0 + 480, 1080)),
            (card, (x0 + 14, 40, x0 + 24, 1050)),
            (card, (x0 + 456, 40, x0 + 466, 1050)),
        ] {
            let (x_0, y_0, x_1, y_1) = rect;
            let off: Vec<(i64, i64)> = (x_0..x_1)
                .flat_map(|x| (y_0..y_1).map(move |y| (x, y)))
                .filter(|p| pic.pixel(p.0, p.1) != Some(colour))
                .collect();
            assert!(
                off.is_empty(),
                "{} pixels of {rect:?} are not {colour:?}, first {:?}: {:?}",
                off.len(),
                off[0],
                pic.pixel(off[0].0, off[0].1)
            );
        }
    }
    let (state, now) = state_at(AT_MINUTES);
    assert_grid_fills(&pic, &state, now);
}
