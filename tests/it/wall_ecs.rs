//! The wall's logic headless (bevy `MinimalPlugins`, no window): the drain budget,
//! interpolation, the reconnect state machine against a real gateway, layer toggles, picking.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use datawall::net::gateway::{GatewayConfig, Shutdown, serve};
use datawall::net::hub::{Hub, HubConfig};
use datawall::protocol::session::{FEED_PATH, Heartbeat, ServerMsg};
use datawall::protocol::{Event, LonLat, VolunteerFix, VolunteerStatus, VolunteerStatusChanged};
use datawall::wall::camera::{Layers, layer_keys, pick};
use datawall::wall::feed::{
    FeedChannel, FeedItem, FeedState, FeedTarget, WallModel, drain_feed, drain_with_budget,
    spawn_feed,
};
use datawall::wall::map::world;
use datawall::wall::ui::feed_view;
use datawall::wall::volunteers::{
    ShowVolunteers, VolunteerMarkers, glide_buffer, track_volunteers,
};

use crate::common::county;

const T0: i64 = 1_764_140_400_000;

/// Session messages a gateway would send: hello and a snapshot of `hub`.
fn hello_and_snapshot(hub: &Hub) -> Vec<ServerMsg> {
    let hello = ServerMsg::Hello(datawall::protocol::session::Hello {
        protocol: 1,
        county_code: 640_221,
        county_name: "平罗县".into(),
        epoch: hub.epoch,
        last_seq: hub.last_seq(),
        server_time_ms: T0,
        clock_rate: 1.0,
        heartbeat_ms: 5_000,
        max_client_message_bytes: 65_536,
        roster_scale: 1,
        grid_split: 1,
        resumed: false,
        backbone_down_since_ms: None,
        simulated: true,
        snapshot_format: Default::default(),
    });
    let mut out = vec![hello];
    out.extend(
        hub.snapshot()
            .messages()
            .map(|m| serde_json::from_str(m.to_text().unwrap()).unwrap()),
    );
    out
}

/// Publish a volunteer coming on duty at `pos`.
fn on_duty_at(hub: &Hub, volunteer_id: u32, pos: LonLat) {
    hub.publish([
        Event::VolunteerStatus(VolunteerStatusChanged {
            volunteer_id,
            at_ms: T0,
            status: VolunteerStatus::Available,
            task: None,
        }),
        Event::VolunteerFix(VolunteerFix {
            volunteer_id,
            at_ms: T0,
            pos,
        }),
    ]);
}

fn channel() -> (tokio::sync::mpsc::Sender<FeedItem>, FeedChannel) {
    let (tx, rx) = tokio::sync::mpsc::channel(10_000);
    let (commands, _) = tokio::sync::mpsc::channel(16);
    (tx, FeedChannel { rx, commands })
}

#[test]
fn the_drain_stops_at_its_budget_and_the_system_applies_messages() {
    let hub = Hub::new(county(), HubConfig::default());
    let (tx, mut ch) = channel();
    let mut model = WallModel::new(county());
    for m in hello_and_snapshot(&hub) {
        tx.try_send(FeedItem::Msg(m)).unwrap();
    }
    for i in 0..5_000 {
        tx.try_send(FeedItem::Msg(ServerMsg::Heartbeat(Heartbeat {
            server_time_ms: T0 + i,
            last_seq: 0,
            backbone_down_since_ms: None,
        })))
        .unwrap();
    }
    assert_eq!(
        drain_with_budget(&mut ch, &mut model, Duration::ZERO),
        0,
        "a zero budget takes nothing"
    );
    // In an app: one frame with the real budget applies what fits, then the rest follows.
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(model)
        .insert_resource(ch)
        .add_systems(Update, drain_feed);
    app.update();
    let after_one = app.world().resource::<WallModel>().messages;
    assert!(after_one > 0);
    for _ in 0..200 {
        app.update();
    }
    let model = app.world().resource::<WallModel>();
    assert_eq!(
        model.messages as usize,
        5_000 + hello_and_snapshot(&hub).len()
    );
    assert_eq!(model.state, FeedState::Live);
}

/// The markers of `n` volunteers, none placed yet (no render world: default handles).
fn markers_for(n: usize) -> VolunteerMarkers {
    VolunteerMarkers {
        handle: Handle::default(),
        material: Handle::default(),
        buffer: Handle::default(),
        colors_buffer: Handle::default(),
        glides_dirty: false,
        colors_dirty: false,
        epoch_s: 0.0,
        glides: vec![None; n],
        colors: vec![[0.0; 4]; n],
        team_colors: vec![[0.0; 4]; n],
        visible: vec![false; n],
        origin: Instant::now(),
    }
}

/// A delta of one fix of `volunteer_id` at `pos`, numbered after the hub's last event.
fn fix_delta(hub: &Hub, volunteer_id: u32, at_ms: i64, pos: LonLat) -> ServerMsg {
    let seq = hub.last_seq() + 1;
    ServerMsg::Delta(datawall::protocol::session::Delta {
        epoch: hub.epoch,
        prev_seq: None,
        first_seq: seq,
        last_seq: seq,
        conflated: 0,
        events: vec![(
            seq,
            Event::VolunteerFix(VolunteerFix {
                volunteer_id,
                at_ms,
                pos,
            }),
        )],
    })
}

/// The county's first volunteer on duty at their home grid in a hub, and a wall's model
/// synced to it: the county, the hub, where the volunteer is, the model.
fn first_volunteer_on_duty() -> (Arc<datawall::model::County>, Hub, LonLat, WallModel) {
    let c = county();
    let hub = Hub::new(Arc::clone(&c), HubConfig::default());
    let v = &c.pack.volunteers[0];
    let start = c.grid(v.home_grid_id).unwrap().label;
    on_duty_at(&hub, v.id, start);
    let mut model = WallModel::new(Arc::clone(&c));
    for m in hello_and_snapshot(&hub) {
        model.handle(m).unwrap();
    }
    (c, hub, start, model)
}

#[test]
fn a_fix_that_arrives_after_the_update_is_in_the_frame_extracted_next() {
    use bevy::diagnostic::FrameCount;
    use bevy::ecs::system::RunSystemOnce;
    use bevy::render::MainWorld;
    use datawall::wall::late::{LateGlides, drain_late};
    use datawall::wall::probe::{DrawnFrames, Latency, settle_stamps};
    let (c, hub, start, mut model) = first_volunteer_on_duty();
    let v = &c.pack.volunteers[0];
    model.latency_stamps = Some(Vec::new());
    let (tx, ch) = channel();
    let mut latency = Latency::default();
    latency.measuring = true;
    // The main world after its update of frame 7 (counted at its end: `FrameCount` is 8).
    let mut main = World::new();
    main.insert_resource(model);
    main.insert_resource(ch);
    main.insert_resource(markers_for(c.pack.volunteers.len()));
    main.insert_resource(ShowVolunteers(true));
    main.insert_resource(FrameCount(8));
    main.insert_resource(latency);
    main.run_system_once(track_volunteers).unwrap();
    main.resource_mut::<VolunteerMarkers>().glides_dirty = false;
    // A fix comes in after the update; the frame is extracted.
    let next = LonLat::new(start.lon + 0.0005, start.lat);
    tx.try_send(FeedItem::Msg(fix_delta(&hub, v.id, T0 + 1_000, next)))
        .unwrap();
    let mut render = World::new();
    render.init_resource::<MainWorld>();
    render.init_resource::<LateGlides>();
    std::mem::swap(&mut **render.resource_mut::<MainWorld>(), &mut main);
    render.run_system_once(drain_late).unwrap();
    // The frame being extracted carries the marker's glide toward the new fix…
    let (id, glides) = render
        .resource_mut::<LateGlides>()
        .0
        .take()
        .expect("glides for the frame being extracted");
    std::mem::swap(&mut **render.resource_mut::<MainWorld>(), &mut main);
    let proj = c.pack.projection();
    let to = world(&proj, next);
    assert_eq!(id, main.resource::<VolunteerMarkers>().buffer.id());
    assert_eq!((glides[0].z, glides[0].w), (to.x, to.y));
    assert_eq!(glides[1].z, 1.0, "shown");
    // …the model took it and the next update still writes the main world's buffer…
    let model = main.resource::<WallModel>();
    assert_eq!(model.live().unwrap().volunteers[0].pos, Some(next));
    assert!(main.resource::<VolunteerMarkers>().glides_dirty);
    // …and its latency is counted against frame 7, the one drawn with it.
    main.insert_resource(DrawnFrames::default());
    main.resource::<DrawnFrames>().note(7);
    main.run_system_once(settle_stamps).unwrap();
    assert_eq!(main.resource::<Latency>().samples_ms.len(), 1);
    // Nothing new: nothing written for the next frame.
    std::mem::swap(&mut **render.resource_mut::<MainWorld>(), &mut main);
    render.run_system_once(drain_late).unwrap();
    assert!(render.resource::<LateGlides>().0.is_none());
}

#[test]
fn markers_glide_to_new_fixes() {
    let (c, hub, start, model) = first_volunteer_on_duty();
    let v = &c.pack.volunteers[0];
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(model)
        .insert_resource(markers_for(c.pack.volunteers.len()))
        .add_systems(Update, track_volunteers);
    app.update();
    let proj = c.pack.projection();
    let markers = app.world().resource::<VolunteerMarkers>();
    assert!(markers.visible[0]);
    let g = markers.glides[0].unwrap();
    assert_eq!(
        g.position(markers.now_s()),
        world(&proj, start),
        "placed at its fix"
    );
    // A fix a second later: the marker glides there over about a second.
    let next = LonLat::new(start.lon + 0.0005, start.lat);
    let delta = fix_delta(&hub, v.id, T0 + 1_000, next);
    app.world_mut()
        .resource_mut::<WallModel>()
        .handle(delta)
        .unwrap();
    app.update();
    let markers = app.world().resource::<VolunteerMarkers>();
    let g = markers.glides[0].unwrap();
    assert_eq!(g.to, world(&proj, next));
    assert!((g.duration_s - 1.0).abs() < 1e-6);
    assert_eq!(g.position(g.start_s + 2.0), world(&proj, next));
    let mid = g.position(g.start_s + 0.5);
    assert!(
        mid.distance(world(&proj, start)) > 1.0 && mid.distance(world(&proj, next)) > 1.0,
        "halfway is between"
    );
    // What the GPU gets: the glide of marker 0, visible, on the buffer's clock.
    assert!(
        markers.glides_dirty,
        "a fix marks the glide buffer for upload"
    );
    let buffer = glide_buffer(markers, true);
    assert_eq!(buffer.len(), 2 * c.pack.volunteers.len());
    assert_eq!(buffer[0], Vec4::new(g.from.x, g.from.y, g.to.x, g.to.y));
    assert_eq!(buffer[1], Vec4::new(g.start_s as f32, 1.0, 1.0, 0.0));
    assert_eq!(buffer[3].z, 0.0, "a volunteer off duty is hidden");
    assert!(
        glide_buffer(markers, false)
            .iter()
            .skip(1)
            .step_by(2)
            .all(|t| t.z == 0.0),
        "layer off: all hidden"
    );
}

async fn gateway_on(
    addr: std::net::SocketAddr,
    hub: Arc<Hub>,
) -> (Shutdown, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (shutdown, rx) = Shutdown::new();
    let mut cfg = GatewayConfig::new("t");
    cfg.heartbeat = Duration::from_millis(300);
    (shutdown, tokio::spawn(serve(listener, hub, cfg, rx)))
}

/// Drain into the model until `done` holds or 20 s pass.
async fn pump(
    ch: &mut FeedChannel,
    model: &mut WallModel,
    done: impl Fn(&WallModel) -> bool,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        drain_with_budget(ch, model, Duration::from_millis(50));
        if done(model) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_shows_a_dead_gateway_and_recovers_when_it_returns() {
    let c = county();
    let hub = Arc::new(Hub::new(Arc::clone(&c), HubConfig::default()));
    let v = &c.pack.volunteers[3];
    let pos = c.grid(v.home_grid_id).unwrap().label;
    hub.publish([Event::VolunteerFix(VolunteerFix {
        volunteer_id: v.id,
        at_ms: T0,
        pos,
    })]);
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let (shutdown, task) = gateway_on(addr, Arc::clone(&hub)).await;
    let (rx, commands) = spawn_feed(FeedTarget {
        url: format!("ws://{addr}{FEED_PATH}"),
        token: "t".into(),
        tls: None,
    })
    .unwrap();
    let mut ch = FeedChannel { rx, commands };
    let mut model = WallModel::new(Arc::clone(&c));
    assert!(
        pump(&mut ch, &mut model, |m| m.state == FeedState::Live
            && m.live().is_some())
        .await,
        "never went live"
    );
    assert!(feed_view(&model).live);

    // The gateway dies: the wall says so, with a banner, and keeps its last picture.
    shutdown.trigger();
    task.await.unwrap();
    assert!(
        pump(&mut ch, &mut model, |m| matches!(
            m.state,
            FeedState::Reconnecting { .. }
        ))
        .await,
        "never noticed"
    );
    let view = feed_view(&model);
    assert!(!view.live);
    assert!(
        view.banner
            .as_deref()
            .is_some_and(|b| b.contains("FEED DOWN")),
        "{view:?}"
    );
    assert_eq!(
        model.live().unwrap().volunteer(v.id).unwrap().pos,
        Some(pos),
        "the last state stays on screen"
    );

    // A new gateway (new epoch, more history) on the same address: the wall resyncs.
    let hub2 = Arc::new(Hub::new(Arc::clone(&c), HubConfig::default()));
    let pos2 = LonLat::new(pos.lon + 0.001, pos.lat);
    hub2.publish([Event::VolunteerFix(VolunteerFix {
        volunteer_id: v.id,
        at_ms: T0 + 5_000,
        pos: pos2,
    })]);
    let (shutdown2, task2) = gateway_on(addr, Arc::clone(&hub2)).await;
    assert!(
        pump(&mut ch, &mut model, |m| m.state == FeedState::Live
            && m.live().and_then(|l| l.volunteer(v.id)?.pos)
                == Some(pos2))
        .await,
        "never recovered: {:?}",
        model.state
    );
    assert!(model.live().unwrap().same_entities(&hub2.state()));
    shutdown2.trigger();
    task2.await.unwrap();
}

#[test]
fn number_keys_toggle_layers_and_f1_shows_help() {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .init_resource::<ButtonInput<KeyCode>>()
        .init_resource::<Layers>()
        .insert_resource(ShowVolunteers(true))
        .insert_resource(datawall::wall::heat::ShowHeat(true))
        .add_systems(Update, layer_keys);
    press(&mut app, KeyCode::Digit2);
    assert!(!app.world().resource::<ShowVolunteers>().0);
    press(&mut app, KeyCode::Digit1);
    press(&mut app, KeyCode::Digit3);
    let layers = *app.world().resource::<Layers>();
    assert!(!layers.grids_labels && !layers.incidents);
    press(&mut app, KeyCode::F1);
    assert!(app.world().resource::<Layers>().help);
    press(&mut app, KeyCode::Escape);
    assert!(!app.world().resource::<Layers>().help);
    press(&mut app, KeyCode::Digit2);
    assert!(app.world().resource::<ShowVolunteers>().0);
    press(&mut app, KeyCode::Digit4);
    assert!(!app.world().resource::<datawall::wall::heat::ShowHeat>().0);
}

#[test]
fn picking_finds_the_grid_the_nearest_volunteer_and_ticket() {
    use datawall::protocol::{Priority, TicketCategory, TicketOpened, TicketSource};
    use datawall::wall::camera::Selection;
    let c = county();
    let hub = Hub::new(Arc::clone(&c), HubConfig::default());
    let v = &c.pack.volunteers[10];
    let g = c.grid(v.home_grid_id).unwrap();
    on_duty_at(&hub, v.id, g.label);
    let ticket_pos = LonLat::new(g.label.lon + 0.00005, g.label.lat);
    hub.publish([Event::TicketOpened(TicketOpened {
        ticket_id: 77,
        at_ms: T0,
        category: TicketCategory::Repair,
        source: TicketSource::Hotline,
        priority: Priority::High,
        pos: ticket_pos,
        grid_id: Some(g.id),
        sla_deadline_ms: T0 + 3_600_000,
        summary: String::new(),
        responsible_party: None,
    })]);
    let mut model = WallModel::new(Arc::clone(&c));
    for m in hello_and_snapshot(&hub) {
        model.handle(m).unwrap();
    }
    let proj = c.pack.projection();
    let at = world(&proj, g.label) + Vec2::new(3.0, 0.0);
    assert_eq!(
        pick(&model, at, 10.0),
        Selection {
            grid: Some(g.id),
            volunteer: Some(v.id),
            ticket: Some(77)
        }
    );
    assert_eq!(
        pick(&model, at, 1.0),
        Selection {
            grid: Some(g.id),
            volunteer: None,
            ticket: None
        },
        "too far for both"
    );
    assert_eq!(pick(&model, world(&proj, ticket_pos), 1.0).ticket, Some(77));
    assert_eq!(
        pick(&model, Vec2::new(1.0e6, 1.0e6), 10.0),
        Selection::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_goes_silent_is_detected_without_waiting_for_tcp() {
    use futures_util::SinkExt;
    // A "gateway" that says hello (heartbeat 2 s, so silence means 6 s: longer than the wall's
    // own 5 s heartbeat, which must not reset the check) and then never sends again, keeping
    // the socket open: a half-open connection as far as the wall can tell.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        let hello = serde_json::json!({
            "type": "hello", "protocol": 1, "county_code": 640221, "county_name": "平罗县",
            "epoch": 7, "last_seq": 0, "server_time_ms": T0, "clock_rate": 1.0,
            "heartbeat_ms": 2000, "max_client_message_bytes": 65536, "resumed": false
        });
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            hello.to_string(),
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(ws);
    });
    let (rx, commands) = spawn_feed(FeedTarget {
        url: format!("ws://{addr}{FEED_PATH}"),
        token: "t".into(),
        tls: None,
    })
    .unwrap();
    let mut ch = FeedChannel { rx, commands };
    let mut model = WallModel::new(county());
    assert!(
        pump(&mut ch, &mut model, |m| matches!(&m.state, FeedState::Reconnecting { error, .. } if error.contains("presumed dead"))).await,
        "silence never noticed: {:?}",
        model.state
    );
    // The socket is still open (the server holds it for 30 s): the wall gave up on silence,
    // after at least three of the server's 2 s heartbeats, as it says.
    let FeedState::Reconnecting { error, .. } = &model.state else {
        unreachable!()
    };
    let silent_for: f64 = error
        .split("nothing from the gateway for ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no silence in {error:?}"));
    assert!(silent_for >= 6.0, "gave up after {silent_for} s: {error}");
    assert!(!server.is_finished(), "the gateway had not hung up");
    server.abort();
}

#[test]
fn analytics_run_on_the_task_pool_and_swap_into_the_stats_resource() {
    use datawall::protocol::session::Delta;
    use datawall::protocol::{Priority, TicketCategory, TicketOpened, TicketSource};
    use datawall::wall::stats::{Stats, refresh_stats};

    let c = county();
    let hub = Hub::new(Arc::clone(&c), HubConfig::default());
    let mut sim = crate::common::simulator(Arc::clone(&c), 5, T0, 24);
    hub.publish(sim.advance_to(T0));
    let mut model = WallModel::new(Arc::clone(&c));
    for m in hello_and_snapshot(&hub) {
        model.handle(m).unwrap();
    }
    let open = model.live().unwrap().open_tickets().count() as u32;
    assert!(open > 100);
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(model)
        .init_resource::<Stats>()
        .add_systems(Update, refresh_stats);
    app.update();
    {
        let stats = app.world().resource::<Stats>();
        assert!(
            stats.latest.is_none() && stats.is_computing(),
            "the query runs off the frame"
        );
    }
    let wait_for = |app: &mut App, generation: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while app.world().resource::<Stats>().generation < generation {
            assert!(Instant::now() < deadline, "analytics never arrived");
            std::thread::sleep(Duration::from_millis(5));
            app.update();
        }
    };
    wait_for(&mut app, 1);
    let first = app.world().resource::<Stats>().latest.clone().unwrap();
    assert_eq!(first.grids.len(), c.pack.grids.len());
    assert_eq!(first.county.open, open);

    // A new ticket arrives: a later refresh counts it.
    let grid = &c.pack.grids[0];
    let opened = Event::TicketOpened(TicketOpened {
        ticket_id: 9_000_000,
        at_ms: T0 + 1,
        category: TicketCategory::Sanitation,
        source: TicketSource::Hotline,
        priority: Priority::Normal,
        pos: grid.label,
        grid_id: Some(grid.id),
        sla_deadline_ms: T0 + 3_600_000,
        summary: String::new(),
        responsible_party: None,
    });
    hub.publish([opened.clone()]);
    let seq = hub.last_seq();
    app.world_mut()
        .resource_mut::<WallModel>()
        .handle(ServerMsg::Delta(Delta {
            epoch: hub.epoch,
            prev_seq: None,
            first_seq: seq,
            last_seq: seq,
            conflated: 0,
            events: vec![(seq, opened)],
        }))
        .unwrap();
    // A refresh that started before the ticket may still land first; a later one counts it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut generation = 1;
    loop {
        generation += 1;
        wait_for(&mut app, generation);
        let a = app.world().resource::<Stats>().latest.clone().unwrap();
        if a.county.open == open + 1 {
            assert_eq!(a.grids[0].open, first.grids[0].open + 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new ticket was never counted"
        );
    }
}

#[test]
fn a_gateway_scaled_differently_is_reported_not_applied() {
    use datawall::model::scale::scaled_county;
    let c = county();
    let scaled = Arc::new(scaled_county(c.pack.clone(), 2, 3));
    let hub = Hub::new(scaled, HubConfig::default());
    on_duty_at(
        &hub,
        c.pack.volunteers[0].id + 100_000,
        c.grid(c.pack.volunteers[0].home_grid_id).unwrap().label,
    );
    let mut msgs = hello_and_snapshot(&hub);
    if let ServerMsg::Hello(h) = &mut msgs[0] {
        h.roster_scale = 2;
        h.grid_split = 3;
    }
    let mut model = WallModel::new(Arc::clone(&c));
    for m in msgs {
        model.handle(m).unwrap();
    }
    assert!(
        model.live().is_none(),
        "another county's snapshot is not applied"
    );
    let view = feed_view(&model);
    assert!(!view.live);
    let banner = view.banner.unwrap();
    assert!(
        banner.contains("restart the wall") && banner.contains("×2"),
        "{banner}"
    );
}

#[test]
fn a_gateway_without_its_backbone_is_shown_on_the_wall_and_cleared_when_back() {
    let hub = Hub::new(county(), HubConfig::default());
    let mut model = WallModel::new(county());
    for m in hello_and_snapshot(&hub) {
        model.handle(m).unwrap();
    }
    assert!(feed_view(&model).live);
    let beat = |down: Option<i64>| {
        ServerMsg::Heartbeat(Heartbeat {
            server_time_ms: T0 + 1_000,
            last_seq: hub.last_seq(),
            backbone_down_since_ms: down,
        })
    };
    // 2025-11-26 07:00:30 UTC = 15:00:30 in the county.
    model.handle(beat(Some(T0 + 30_000))).unwrap();
    let view = feed_view(&model);
    assert!(!view.live);
    let banner = view.banner.unwrap();
    assert!(banner.contains("BACKBONE DOWN since 15:00:30"), "{banner}");
    assert!(model.live().is_some(), "the last state stays on the wall");
    model.handle(beat(None)).unwrap();
    assert!(feed_view(&model).live);
}

/// A headless wall that acts: the feed to `url` with `token`, the drain, the action keys and
/// the sending of commands (plus `extra` systems after them).
fn acting_wall<M>(
    c: &Arc<datawall::model::County>,
    url: String,
    token: String,
    extra: impl IntoScheduleConfigs<bevy::ecs::system::ScheduleSystem, M>,
) -> App {
    use datawall::wall::actions::{action_keys, send_requests};
    use datawall::wall::camera::FlyTo;
    use datawall::wall::outbox::{KeyFocus, NotePrompt};
    use datawall::wall::panels::{Drill, Requests, Toast};
    use datawall::wall::stats::Stats;
    let (rx, commands) = spawn_feed(FeedTarget {
        url,
        token,
        tls: None,
    })
    .unwrap();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_message::<datawall::wall::nav::Learnt>()
        .init_resource::<ButtonInput<KeyCode>>()
        .insert_resource(WallModel::new(Arc::clone(c)))
        .insert_resource(FeedChannel { rx, commands })
        .init_resource::<Stats>()
        .init_resource::<Drill>()
        .init_resource::<FlyTo>()
        .init_resource::<KeyFocus>()
        .init_resource::<Requests>()
        .init_resource::<NotePrompt>()
        .init_resource::<Toast>()
        .add_systems(
            Update,
            (
                (drain_feed, (action_keys, send_requests).chain()).chain(),
                extra,
            )
                .chain(),
        );
    app
}

/// Press and release `key` over one update.
fn press(app: &mut App, key: KeyCode) {
    app.world_mut()
        .resource_mut::<ButtonInput<KeyCode>>()
        .press(key);
    app.update();
    let mut input = app.world_mut().resource_mut::<ButtonInput<KeyCode>>();
    input.release(key);
    input.clear();
}

/// Update `app` until `done` holds (the feed thread and the analytics pool work meanwhile).
fn step_until(app: &mut App, what: &str, done: impl Fn(&World) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(app.world()) {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
        app.update();
    }
}

#[test]
fn the_keyboard_walks_ranking_community_grid_ticket_and_supervises() {
    use datawall::net::{EmbeddedSource, spawn_embedded};
    use datawall::protocol::entities::Place;
    use datawall::sim::SimConfig;
    use datawall::wall::outbox::{Action, FocusArea, KeyFocus, NotePrompt, SentStatus};
    use datawall::wall::panels::{Drill, Focus};
    use datawall::wall::stats::{Stats, refresh_stats};

    let c = county();
    let gw = spawn_embedded(
        Arc::clone(&c),
        EmbeddedSource::Simulator {
            config: SimConfig {
                seed: 5,
                start_ms: T0,
                fix_interval_ms: 60_000,
                ..Default::default()
            },
            // The platform takes 10–30 s of feed time to act on 督办: at 20×, a second.
            speed: 20.0,
        },
    )
    .unwrap();
    let mut app = acting_wall(&c, gw.url.clone(), gw.token.clone(), refresh_stats);
    step_until(&mut app, "live with analytics", |w| {
        w.resource::<WallModel>().state == FeedState::Live && w.resource::<Stats>().latest.is_some()
    });
    let focus = |app: &App| *app.world().resource::<KeyFocus>();
    let drilled = |app: &App| app.world().resource::<Drill>().focus();

    // Tab: the keyboard leaves the map for the ranking; Enter opens its first community.
    assert_eq!(focus(&app).area, FocusArea::Map);
    press(&mut app, KeyCode::Tab);
    assert_eq!(focus(&app).area, FocusArea::Ranking);
    press(&mut app, KeyCode::Enter);
    assert!(
        matches!(drilled(&app), Some(Focus::Community(_))),
        "{:?}",
        drilled(&app)
    );
    assert_eq!(
        focus(&app).area,
        FocusArea::Panel,
        "the keyboard follows into the panel"
    );
    // Enter: the community's first grid (most overdue first), then its first ticket.
    press(&mut app, KeyCode::Enter);
    assert!(
        matches!(drilled(&app), Some(Focus::Grid(_))),
        "{:?}",
        drilled(&app)
    );
    press(&mut app, KeyCode::Enter);
    let Some(Focus::Ticket(ticket)) = drilled(&app) else {
        panic!("the grid's first row is a ticket: {:?}", drilled(&app))
    };
    // S asks for a note; Enter sends 督办.
    press(&mut app, KeyCode::KeyS);
    assert_eq!(
        app.world().resource::<NotePrompt>().action,
        Some(Action::Supervise(ticket))
    );
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.world().resource::<NotePrompt>().action, None);
    let sent = app.world().resource::<WallModel>().outbox.sent.clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].action, Action::Supervise(ticket));
    // The gateway confirms it and the wall's own model shows the supervision.
    step_until(&mut app, "the supervision confirmed on the feed", |w| {
        let m = w.resource::<WallModel>();
        matches!(m.outbox.sent[0].status, SentStatus::Confirmed(_))
            && m.live()
                .is_some_and(|l| l.tickets[&ticket].supervised_at_ms.is_some())
    });
    assert!(gw.hub.state().tickets[&ticket].supervised_at_ms.is_some());
    // N pins a note on the ticket at the moment shown: its text is asked for; without one
    // nothing is sent.
    let moment = app.world().resource::<WallModel>().now_ms();
    press(&mut app, KeyCode::KeyN);
    let Some(Action::Annotate(place, at)) = app.world().resource::<NotePrompt>().action.clone()
    else {
        panic!("N asks for a note's text");
    };
    assert_eq!(place, Place::Ticket { ticket_id: ticket });
    assert!(at >= moment, "the moment shown when N was pressed");
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.world().resource::<WallModel>().outbox.sent.len(), 1);
    press(&mut app, KeyCode::KeyN);
    let Some(Action::Annotate(_, at)) = app.world().resource::<NotePrompt>().action.clone() else {
        panic!("N asks again");
    };
    app.world_mut().resource_mut::<NotePrompt>().text = "管道抢修队已到场".into();
    press(&mut app, KeyCode::Enter);
    step_until(&mut app, "the note confirmed and on the wall", |w| {
        let m = w.resource::<WallModel>();
        m.outbox.sent.len() == 2
            && matches!(m.outbox.sent[1].status, SentStatus::Confirmed(_))
            && m.mirror
                .state
                .as_ref()
                .is_some_and(|s| s.annotations.values().any(|n| n.text == "管道抢修队已到场"))
    });
    let truth = gw.hub.state();
    let note = truth
        .annotations
        .values()
        .next()
        .expect("the gateway has it");
    assert_eq!(note.place, Place::Ticket { ticket_id: ticket });
    assert_eq!(note.moment_ms, at);
    assert_eq!(note.pos, truth.tickets[&ticket].pos);
    // Shift+Tab goes back to the ranking; the arrows move there, not on the map.
    app.world_mut()
        .resource_mut::<ButtonInput<KeyCode>>()
        .press(KeyCode::ShiftLeft);
    press(&mut app, KeyCode::Tab);
    assert_eq!(focus(&app).area, FocusArea::Ranking);
    press(&mut app, KeyCode::ArrowDown);
    assert_eq!(focus(&app).row, 1);
}

#[test]
fn a_breach_on_the_feed_clock_is_sounded_climbs_and_is_acknowledged_from_the_keyboard() {
    use std::sync::atomic::{AtomicI64, Ordering};

    use datawall::net::gateway::commands::{AlertSink, CommandDesk, Platform, run_alert_engine};
    use datawall::protocol::{AlertLevel, Priority, TicketCategory, TicketOpened, TicketSource};
    use datawall::wall::alerts::Tier;
    use datawall::wall::outbox::{Action, NotePrompt};
    use datawall::wall::sounds::{Mute, SoundCues, alert_cues};

    let c = county();
    let hub = Arc::new(Hub::new(Arc::clone(&c), HubConfig::default()));
    // The feed clock is the test's.
    let now = Arc::new(AtomicI64::new(T0));
    let clock = Arc::clone(&now);
    hub.set_clock(Arc::new(move || clock.load(Ordering::SeqCst)), 1.0);
    let grid = &c.pack.grids[0];
    hub.publish((1..=2).map(|id| {
        Event::TicketOpened(TicketOpened {
            ticket_id: id,
            at_ms: T0,
            category: TicketCategory::Repair,
            source: TicketSource::MiniProgram,
            priority: Priority::Normal,
            pos: grid.label,
            grid_id: Some(grid.id),
            sla_deadline_ms: T0 + 60_000,
            summary: "电梯故障".into(),
            responsible_party: None,
        })
    }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = GatewayConfig::new("");
    cfg.operator_tokens = vec!["operator".into()];
    cfg.commands = Some(Arc::new(CommandDesk::new(Platform::None, None)));
    let (shutdown, rx) = Shutdown::new();
    rt.spawn(run_alert_engine(
        Arc::clone(&hub),
        AlertSink::Hub,
        rx.clone(),
    ));
    rt.spawn(serve(listener, Arc::clone(&hub), cfg, rx));

    let mut app = acting_wall(
        &c,
        format!("ws://{addr}{FEED_PATH}"),
        "operator".into(),
        alert_cues,
    );
    app.init_resource::<SoundCues>().insert_resource(Mute(true));
    step_until(&mut app, "live", |w| {
        w.resource::<WallModel>().state == FeedState::Live
    });
    let alert = |app: &App, id: u64| {
        app.world()
            .resource::<WallModel>()
            .live()
            .and_then(|l| l.alerts.get(&id).cloned())
    };
    let cue = |app: &App| app.world().resource::<SoundCues>().last;
    assert!(alert(&app, 1).is_none());
    assert_eq!(cue(&app), None, "nothing to sound before a breach");

    // The limit passes on the gateway's clock: both breaches reach the wall, with a chime.
    now.store(T0 + 61_000, Ordering::SeqCst);
    step_until(&mut app, "both breaches on the wall", |w| {
        w.resource::<WallModel>()
            .live()
            .is_some_and(|l| l.alerts.len() == 2)
    });
    step_until(&mut app, "a chime", |w| {
        w.resource::<SoundCues>().last.is_some()
    });
    assert_eq!(cue(&app), Some(Tier::Attention));
    assert_eq!(alert(&app, 1).unwrap().level, AlertLevel::Community);

    // A acknowledges the most pressing one (ticket 2: same tier, newer id) with a note.
    press(&mut app, KeyCode::KeyA);
    assert_eq!(
        app.world().resource::<NotePrompt>().action,
        Some(Action::Ack(2))
    );
    app.world_mut().resource_mut::<NotePrompt>().text = "已通知物业".into();
    press(&mut app, KeyCode::Enter);
    step_until(&mut app, "the acknowledgement back on the wall", |w| {
        w.resource::<WallModel>()
            .live()
            .is_some_and(|l| l.alerts[&2].acked.is_some())
    });
    let ack = alert(&app, 2).unwrap().acked.unwrap();
    assert_eq!(
        (ack.by.as_str(), ack.note.as_str()),
        ("--operator-token #1", "已通知物业")
    );

    // Ten minutes unacknowledged: ticket 1's alert reaches 街道/镇, louder; 2 stays.
    now.store(T0 + 61_000 + 10 * 60_000, Ordering::SeqCst);
    step_until(&mut app, "街道/镇", |w| {
        w.resource::<WallModel>()
            .live()
            .is_some_and(|l| l.alerts[&1].level == AlertLevel::Town)
    });
    step_until(&mut app, "two tones", |w| {
        w.resource::<SoundCues>().last == Some(Tier::Urgent)
    });
    assert_eq!(alert(&app, 2).unwrap().level, AlertLevel::Community);
    // Thirty minutes: 县, the alarm.
    now.store(T0 + 61_000 + 30 * 60_000, Ordering::SeqCst);
    step_until(&mut app, "县 and the alarm", |w| {
        w.resource::<WallModel>()
            .live()
            .is_some_and(|l| l.alerts[&1].level == AlertLevel::County)
            && w.resource::<SoundCues>().last == Some(Tier::Critical)
    });
    assert_eq!(
        alert(&app, 2).unwrap().level,
        AlertLevel::Community,
        "acknowledged: it stays"
    );
    shutdown.trigger();
}

/// A real `datawall serve` process: its feed URL, read from what it prints.
struct ServeProcess {
    child: std::process::Child,
    url: String,
}

impl ServeProcess {
    fn start(listen: &str, seed: u64, audit: &std::path::Path) -> Self {
        use std::io::BufRead;
        // Its own history, next to the audit log (a new one per seed: a new epoch).
        let history = audit.with_file_name(format!("history-{seed}"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_datawall"))
            .args([
                "serve",
                "--token",
                "fault-token",
                "--listen",
                listen,
                "--seed",
                &seed.to_string(),
                "--start-ms",
                &T0.to_string(),
                // A stopped feed clock: the state after the history is the truth to compare.
                "--speed",
                "0",
                "--audit-log",
                audit.to_str().unwrap(),
                "--history-dir",
                history.to_str().unwrap(),
            ])
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("datawall serve starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("serve-stderr".into())
            .spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if let Some(rest) = line.split("feed at ").nth(1) {
                        let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                        // One address is wanted; later lines are drained and dropped.
                        let _ = tx.try_send(url);
                    }
                }
            })
            .unwrap();
        let url = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("datawall serve says where its feed is");
        Self { child, url }
    }

    fn kill9(mut self) {
        // SIGKILL: no goodbye to the clients, no flush.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway's truth: a fresh client's mirror once it has caught up with the hello's seq.
async fn truth_of(url: &str) -> datawall::net::client::Mirror {
    use datawall::net::client::{FeedConnection, Mirror};
    let mut conn = FeedConnection::connect(url, "fault-token", None)
        .await
        .unwrap();
    let mut mirror = Mirror::new(county());
    let mut last = None;
    while last.is_none_or(|l| mirror.state.is_none() || mirror.last_seq < l) {
        let m = tokio::time::timeout(Duration::from_secs(60), conn.next_msg())
            .await
            .unwrap()
            .unwrap();
        if let ServerMsg::Hello(h) = &m {
            last = Some(h.last_seq);
        }
        mirror.handle(m).unwrap();
    }
    conn.close().await;
    mirror
}

/// The wall and a fresh client of `url` hold the same state at the same seq (the gateway's
/// alert engine may publish once after start: compared again until they meet).
async fn converges(
    ch: &mut FeedChannel,
    model: &mut WallModel,
    url: &str,
) -> datawall::net::client::Mirror {
    for _ in 0..20 {
        let truth = truth_of(url).await;
        let (epoch, seq) = (truth.epoch, truth.last_seq);
        assert!(
            pump(ch, model, |m| m.state == FeedState::Live
                && m.mirror.epoch == epoch
                && m.mirror.last_seq >= seq)
            .await,
            "the wall never reached seq {seq}: {:?}",
            model.state
        );
        if model.mirror.last_seq == seq {
            assert!(
                model
                    .live()
                    .unwrap()
                    .same_entities(truth.state.as_ref().unwrap()),
                "the wall differs from the gateway at seq {seq}"
            );
            return truth;
        }
    }
    panic!("the gateway's state never settled");
}

/// The wall notices its gateway is gone (it reconnects) and keeps its picture.
async fn killed_and_noticed(ch: &mut FeedChannel, model: &mut WallModel) {
    assert!(
        pump(ch, model, |m| matches!(
            m.state,
            FeedState::Reconnecting { .. }
        ))
        .await,
        "never noticed the gateway was gone"
    );
    assert!(model.live().is_some(), "the last picture stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_process_killed_and_restarted_leaves_the_wall_equal_to_the_new_truth() {
    let dir = crate::common::scratch_dir("kill9");
    let first = ServeProcess::start("127.0.0.1:0", 3, &dir.join("audit.ndjson"));
    let url = first.url.clone();
    let listen = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let (rx, commands) = spawn_feed(FeedTarget {
        url: url.clone(),
        token: "fault-token".into(),
        tls: None,
    })
    .unwrap();
    let mut ch = FeedChannel { rx, commands };
    let mut model = WallModel::new(county());
    let before = converges(&mut ch, &mut model, &url).await;

    // kill -9: the wall notices and keeps its picture.
    first.kill9();
    killed_and_noticed(&mut ch, &mut model).await;
    assert!(model.live().is_some(), "the last picture stays");

    // Restarted on the same address with another history (a new epoch): the wall resyncs to
    // exactly the new gateway's state, nothing of the old one left.
    let second = ServeProcess::start(&listen, 4, &dir.join("audit.ndjson"));
    assert_eq!(second.url, url);
    let listening = std::time::Instant::now();
    let after = converges(&mut ch, &mut model, &url).await;
    eprintln!(
        "test: the wall equals the restarted gateway {:.1} s after it listened",
        listening.elapsed().as_secs_f64()
    );
    assert_ne!(after.epoch, before.epoch);
    assert!(
        !model
            .live()
            .unwrap()
            .same_entities(before.state.as_ref().unwrap()),
        "the new history differs from the old"
    );

    // Killed again and restarted on the same history: the same epoch and seq, and the wall
    // resumes where it was, without a snapshot.
    let synced = model.synced_at;
    second.kill9();
    killed_and_noticed(&mut ch, &mut model).await;
    let third = ServeProcess::start(&listen, 4, &dir.join("audit.ndjson"));
    let again = converges(&mut ch, &mut model, &url).await;
    assert_eq!(again.epoch, after.epoch, "the history keeps the epoch");
    assert!(
        again.last_seq >= after.last_seq,
        "the seq goes on from where it was"
    );
    assert_eq!(
        model.synced_at, synced,
        "the wall resumed without a snapshot"
    );
    drop(third);
}

#[test]
fn a_silent_feed_is_called_stale_within_a_second_on_the_walls_own_clock() {
    use datawall::wall::ui::feed_view_at;
    let c = county();
    let hub = Hub::new(Arc::clone(&c), HubConfig::default());
    let v = &c.pack.volunteers[0];
    on_duty_at(&hub, v.id, c.grid(v.home_grid_id).unwrap().label);
    let mut model = WallModel::new(Arc::clone(&c));
    // The gateway's default heartbeat.
    let heartbeat = datawall::net::gateway::GatewayConfig::new("t").heartbeat;
    for mut m in hello_and_snapshot(&hub) {
        if let ServerMsg::Hello(h) = &mut m {
            h.heartbeat_ms = heartbeat.as_millis() as u64;
        }
        model.handle(m).unwrap();
    }
    assert_eq!(model.state, FeedState::Live);
    let last = model.last_message.unwrap();
    // Two heartbeats may pass unheard (one lost, one late) …
    assert!(feed_view_at(&model, last + heartbeat * 2).live);
    // … not more: the banner is up within a second of the last message.
    let stalled = feed_view_at(&model, last + Duration::from_millis(1_001));
    assert!(!stalled.live);
    assert!(
        stalled
            .banner
            .as_deref()
            .is_some_and(|b| b.contains("FEED STALE")),
        "{stalled:?}"
    );
    // A heartbeat heard clears it.
    model
        .handle(ServerMsg::Heartbeat(Heartbeat {
            server_time_ms: T0 + 2_000,
            last_seq: hub.last_seq(),
            backbone_down_since_ms: None,
        }))
        .unwrap();
    let now = model.last_message.unwrap();
    assert!(feed_view_at(&model, now).live);
}

#[test]
fn a_stopped_gateway_clock_is_shown_as_a_frozen_moment_not_live() {
    use datawall::wall::ui::feed_view_at;
    let c = county();
    let hub = Hub::new(Arc::clone(&c), HubConfig::default());
    let v = &c.pack.volunteers[0];
    on_duty_at(&hub, v.id, c.grid(v.home_grid_id).unwrap().label);
    for rate in [1.0, 0.0] {
        let mut model = WallModel::new(Arc::clone(&c));
        for mut m in hello_and_snapshot(&hub) {
            if let ServerMsg::Hello(h) = &mut m {
                // A past moment (history, recording) is served with the clock stopped.
                h.clock_rate = rate;
            }
            model.handle(m).unwrap();
        }
        let view = feed_view_at(&model, std::time::Instant::now());
        assert!(view.live, "in sync either way");
        assert_eq!(view.frozen, rate == 0.0);
        assert_eq!(
            view.indicator.contains("定格 frozen"),
            rate == 0.0,
            "{}",
            view.indicator
        );
        assert_eq!(view.indicator.contains("实时 live"), rate == 1.0);
    }
}

#[test]
fn the_wall_learns_only_what_its_model_took_a_rejected_event_rings_nothing() {
    use datawall::protocol::session::Delta;
    use datawall::protocol::{
        Priority, TicketCategory, TicketEscalated, TicketOpened, TicketSource, VolunteerFix,
    };
    let c = county();
    let hub = Hub::new(Arc::clone(&c), HubConfig::default());
    let mut model = WallModel::new(Arc::clone(&c));
    for m in hello_and_snapshot(&hub) {
        model.handle(m).unwrap();
    }
    let inside = c.pack.grids[5].label;
    let urgent = |id, pos| {
        Event::TicketOpened(TicketOpened {
            ticket_id: id,
            at_ms: T0,
            category: TicketCategory::Repair,
            source: TicketSource::Hotline,
            priority: Priority::Urgent,
            pos,
            grid_id: None,
            sla_deadline_ms: T0 + 3_600_000,
            summary: "燃气泄漏".into(),
            responsible_party: None,
        })
    };
    let events = vec![
        // A fix of an on-roster volunteer (taken), one of a volunteer not on the roster (not).
        Event::VolunteerFix(VolunteerFix {
            volunteer_id: c.pack.volunteers[0].id,
            at_ms: T0,
            pos: inside,
        }),
        Event::VolunteerFix(VolunteerFix {
            volunteer_id: 9_999_999,
            at_ms: T0,
            pos: inside,
        }),
        // Taken: an urgent ticket (on the ticker). Refused: one outside the county, an
        // escalation of a ticket nobody opened.
        urgent(1, inside),
        urgent(2, LonLat::new(100.0, 30.0)),
        Event::TicketEscalated(TicketEscalated {
            ticket_id: 99,
            at_ms: T0,
            reason: "超时".into(),
            sla_deadline_ms: None,
        }),
    ];
    let n = events.len() as u64;
    // The frame drew everything the snapshot brought.
    model.volunteers_dirty = false;
    model.moved.clear();
    let changes = model.ticket_changes;
    model
        .handle(ServerMsg::Delta(Delta {
            epoch: hub.epoch,
            prev_seq: None,
            first_seq: 1,
            last_seq: n,
            conflated: 0,
            events: (1..=n).zip(events).collect(),
        }))
        .unwrap();
    assert_eq!(model.dropped, 3, "three refused, counted");
    let ticker: Vec<&str> = model.alerts.iter().map(|a| a.text.as_str()).collect();
    assert_eq!(
        ticker.len(),
        1,
        "only the ticket the model took rings: {ticker:?}"
    );
    assert!(ticker[0].contains("#1"), "{ticker:?}");
    assert_eq!(model.ticket_changes, changes + 1, "one ticket change");
    assert_eq!(model.moved.len(), 1, "one volunteer moved");
    assert_eq!(
        model.ticket_store.len(),
        1,
        "the taken ticket is indexed, no other"
    );
}

#[test]
fn the_drain_hands_on_what_the_model_learnt_as_one_message_a_frame() {
    use datawall::model::Change;
    use datawall::protocol::session::Delta;
    use datawall::wall::nav::Learnt;
    #[derive(Resource, Default)]
    struct Heard(Vec<Learnt>);
    fn listen(mut learnt: MessageReader<Learnt>, mut heard: ResMut<Heard>) {
        heard.0.extend(learnt.read().cloned());
    }
    let c = county();
    let hub = Hub::new(Arc::clone(&c), HubConfig::default());
    let (tx, ch) = channel();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_message::<Learnt>()
        .init_resource::<Heard>()
        .insert_resource(WallModel::new(Arc::clone(&c)))
        .insert_resource(ch)
        .add_systems(Update, (drain_feed, listen).chain());
    // Hello and snapshot: everything is new.
    for m in hello_and_snapshot(&hub) {
        tx.try_send(FeedItem::Msg(m)).unwrap();
    }
    app.update();
    let heard = std::mem::take(&mut app.world_mut().resource_mut::<Heard>().0);
    assert_eq!(heard.len(), 1, "one message a frame");
    assert!(heard[0].reset, "a snapshot replaces the state shown");
    // A fix and a ticket the model takes, one it refuses: the message holds the two taken,
    // in the model's words.
    let inside = c.pack.grids[2].label;
    let v = c.pack.volunteers[0].id;
    let events = [
        Event::VolunteerFix(VolunteerFix {
            volunteer_id: v,
            at_ms: T0,
            pos: inside,
        }),
        Event::VolunteerFix(VolunteerFix {
            volunteer_id: v,
            at_ms: T0 - 1,
            pos: inside,
        }),
    ];
    tx.try_send(FeedItem::Msg(ServerMsg::Delta(Delta {
        epoch: hub.epoch,
        prev_seq: None,
        first_seq: 1,
        last_seq: 2,
        conflated: 0,
        events: vec![(1, events[0].clone()), (2, events[1].clone())],
    })))
    .unwrap();
    app.update();
    let heard = std::mem::take(&mut app.world_mut().resource_mut::<Heard>().0);
    assert_eq!(heard.len(), 1);
    assert!(!heard[0].reset);
    assert!(
        matches!(&heard[0].changes[..], [Change::VolunteerMoved { id, .. }] if *id == v),
        "the older fix was refused: {:?}",
        heard[0].changes
    );
    assert!(
        !heard[0].beyond_fixes(),
        "the heat and panels need not redraw"
    );
    // A quiet frame: no message.
    app.update();
    assert!(app.world().resource::<Heard>().0.is_empty());
}

#[test]
fn the_board_compares_with_the_same_moment_yesterday_read_from_the_gateways_history() {
    use datawall::analytics;
    use datawall::net::history::{self, At, History};
    use datawall::wall::board::kpis;
    use datawall::wall::charts::{Unit, change_text};
    use datawall::wall::stats::{Presence, Stats, refresh_past, refresh_stats};

    const TOKEN: &str = "board-viewer-7c1e";
    const HOUR: i64 = 3_600_000;
    // Thirty simulated hours kept as a gateway keeps its history: yesterday at this time is in
    // it, last week is not.
    let c = county();
    let dir = crate::common::scratch_dir("board-past");
    let (hub, writer) = history::open_for_gateway(&dir, 7, &c, HubConfig::default()).unwrap();
    hub.set_history(writer);
    let hub = Arc::new(hub);
    let mut sim = crate::common::simulator(Arc::clone(&c), 12, T0, 30);
    assert_eq!(hub.publish(sim.advance_to(T0)).rejected, 0);
    // The gateway's clock stands at T0 (the wall compares with T0 less a day).
    hub.set_clock(Arc::new(|| T0), 0.0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let history_dir = dir.clone();
    let (addr, shutdown, _task) = rt.block_on(crate::common::serve_hub(&hub, TOKEN, |cfg| {
        cfg.history_dir = Some(history_dir)
    }));
    let mut app = acting_wall(
        &c,
        format!("ws://{addr}{FEED_PATH}"),
        TOKEN.into(),
        (refresh_stats, refresh_past),
    );
    step_until(
        &mut app,
        "live, with the figures of now and of the past",
        |w| {
            let s = w.resource::<Stats>();
            s.latest.is_some() && s.past_moments().is_some() && !s.past_pending()
        },
    );
    let stats = app.world().resource::<Stats>();
    let [yesterday_at, week_at] = stats.past_moments().unwrap();
    assert_eq!(yesterday_at - week_at, 6 * 24 * HOUR);
    assert_eq!(
        yesterday_at,
        T0 - 24 * HOUR,
        "a day before the gateway's clock"
    );

    // Yesterday's figures are the analytics of the history's state at that moment.
    let h = History::open(&dir).unwrap().unwrap();
    let then = h.state_at(&c, At::Time(yesterday_at)).unwrap();
    let want = analytics::compute_live(&then.state, yesterday_at).unwrap();
    let got = stats.yesterday.clone().expect("yesterday's figures");
    assert_eq!(*got, want, "the wall's yesterday is the history's");
    assert!(
        want.county.opened_today > 0 && want.county.open > 0,
        "{:?}",
        want.county
    );
    assert!(
        stats.last_week.is_none(),
        "the history does not reach back a week"
    );
    let why = stats.past_missing.clone().unwrap_or_default();
    assert!(why.contains("before the history"), "{why}");

    // The board's KPIs carry it: the change against yesterday, none against last week.
    let latest = stats.latest.clone().unwrap();
    let list = kpis(
        &latest,
        &Presence::default(),
        [Some(&got), None],
        stats.past_presence(),
    );
    // Volunteers on duty yesterday: counted straight from the history's state.
    let on_duty = then
        .state
        .volunteers
        .iter()
        .filter(|v| v.status != datawall::protocol::VolunteerStatus::OffDuty)
        .count();
    let duty = list.iter().find(|k| k.label.starts_with("在岗")).unwrap();
    assert_eq!(duty.yesterday, Some(on_duty as f64));
    assert_eq!(duty.last_week, None);
    let open = list.iter().find(|k| k.label.starts_with("在办")).unwrap();
    assert_eq!(open.yesterday, Some(f64::from(want.county.open)));
    assert_eq!(open.last_week, None);
    let d = i64::from(latest.county.open) - i64::from(want.county.open);
    let shown = change_text(open.value, open.yesterday, Unit::Count);
    let expected = match d {
        0 => "±0".to_owned(),
        d if d > 0 => format!("+{d}"),
        d => format!("−{}", -d),
    };
    assert_eq!(shown, expected);
    assert_eq!(change_text(open.value, open.last_week, Unit::Count), "—");
    shutdown.trigger();
    drop(rt);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_large_snapshot_shows_how_far_it_has_come_while_it_loads() {
    use datawall::wall::feed::FeedState;
    let c = county();
    // Small chunks, so the county's snapshot comes in many parts.
    let hub = Hub::new(
        Arc::clone(&c),
        HubConfig {
            snapshot_chunk: 200,
            ..HubConfig::default()
        },
    );
    let mut sim = crate::common::simulator(Arc::clone(&c), 8, T0, 24);
    hub.publish(sim.advance_to(T0));
    let msgs = hello_and_snapshot(&hub);
    let ServerMsg::SnapshotBegin(begin) = &msgs[1] else {
        panic!("{:?}", msgs[1])
    };
    let (chunks, tickets) = (begin.chunks, begin.tickets);
    assert!(chunks >= 4, "{chunks} chunks");
    let mut model = WallModel::new(Arc::clone(&c));
    let mut seen = Vec::new();
    for m in msgs {
        model.handle(m).unwrap();
        if let Some(p) = model.mirror.snapshot_progress() {
            assert_eq!((p.of_chunks, p.of_tickets), (chunks, tickets));
            assert_eq!(model.state, FeedState::Syncing);
            let view = feed_view(&model);
            let pct = format!("{:.0}%", p.fraction() * 100.0);
            assert!(
                view.indicator.contains(&pct) && view.indicator.contains(&tickets.to_string()),
                "{}",
                view.indicator
            );
            seen.push((p.chunks, p.tickets));
        }
    }
    // From nothing to every chunk and ticket, never backwards; gone once loaded.
    assert_eq!(seen.first(), Some(&(0, 0)));
    assert_eq!(seen.last(), Some(&(chunks, tickets)));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    assert!(model.mirror.snapshot_progress().is_none());
    assert_eq!(model.live().unwrap().tickets.len(), tickets);
}
