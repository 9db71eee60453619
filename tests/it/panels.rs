//! Drill-down panels without bevy: the views' rows, sort orders and countdown states on a
//! simulated county, and the egui functions run in a plain egui context (text drawn, colours,
//! a click on a row returns the command).

use std::sync::Arc;

use bevy_egui::egui;
use datawall::analytics::{self, Analytics};
use datawall::model::sla::{SlaState, countdown_text};
use datawall::model::{County, LiveState};
use datawall::protocol::VolunteerStatus;
use datawall::wall::panels::{
    self, Drill, Focus, PanelView, UiCommand, breadcrumbs, grid_view, incident_view, panel_ui,
    path_to, search,
};
use datawall::wall::theme;

use crate::common::{county, scratch_dir};

const START_MS: i64 = 1_764_140_400_000;

/// The simulated county 15 minutes into the live part (after the Taixi drill began).
fn world() -> (Arc<County>, LiveState, i64, Analytics) {
    let county = county();
    let mut sim = crate::common::simulator(county.clone(), 3, START_MS, 30);
    let now = START_MS + 15 * 60_000;
    let mut live = LiveState::new(county.clone());
    for e in sim.advance_to(now) {
        live.apply(&e).unwrap();
    }
    let a = analytics::compute_live(&live, now).unwrap();
    (county, live, now, a)
}

/// Run `add` in a plain egui context for two frames with `events` in the second; returns
/// every text drawn (with its colour) and the command of the last frame.
fn run_ui(
    mut add: impl FnMut(&mut egui::Ui) -> Option<UiCommand>,
    events: Vec<egui::Event>,
) -> (Vec<(String, egui::Color32, egui::Rect)>, Option<UiCommand>) {
    let ctx = egui::Context::default();
    let input = |events: Vec<egui::Event>| egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(900.0, 4000.0),
        )),
        events,
        ..Default::default()
    };
    let mut cmd = None;
    let mut out = None;
    for events in [Vec::new(), Vec::new(), events] {
        cmd = None;
        let mut o = ctx.run_ui(input(events), |ui| {
            ui.set_width(600.0);
            cmd = add(ui);
        });
        o.textures_delta.clear();
        out = Some(o);
    }
    let mut texts = Vec::new();
    fn walk(s: &egui::Shape, out: &mut Vec<(String, egui::Color32, egui::Rect)>) {
        match s {
            egui::Shape::Text(t) => {
                let color = t
                    .galley
                    .job
                    .sections
                    .first()
                    .map_or(t.fallback_color, |s| s.format.color);
                out.push((
                    t.galley.text().to_owned(),
                    color,
                    t.galley.rect.translate(t.pos.to_vec2()),
                ));
            }
            egui::Shape::Vec(v) => v.iter().for_each(|s| walk(s, out)),
            _ => {}
        }
    }
    for s in &out.expect("ran").shapes {
        walk(&s.shape, &mut texts);
    }
    (texts, cmd)
}

fn click_at(p: egui::Pos2) -> Vec<egui::Event> {
    let button = |pressed| egui::Event::PointerButton {
        pos: p,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: egui::Modifiers::NONE,
    };
    vec![egui::Event::PointerMoved(p), button(true), button(false)]
}

#[test]
fn grid_panel_lists_open_tickets_soonest_breach_first_with_countdowns() {
    let (county, live, now, a) = world();
    // The grid with the most open tickets.
    let slot = (0..a.grids.len())
        .max_by_key(|&i| (a.grids[i].open, i))
        .unwrap();
    let id = county.pack.grids[slot].id;
    let view = grid_view(&county, &live, Some(&a), id, None).unwrap();
    let index = datawall::analytics::store::TicketStore::from_live(&live);
    assert_eq!(
        grid_view(&county, &live, Some(&a), id, Some(&index)),
        Some(view.clone()),
        "the index gives the same panel as a walk"
    );
    assert_eq!(
        view.tickets.len() as u32,
        a.grids[slot].open,
        "the list agrees with the roll-up"
    );
    assert!(
        view.tickets.len() >= 3,
        "a busy grid: {}",
        view.tickets.len()
    );
    assert!(
        view.tickets
            .windows(2)
            .all(|w| w[0].deadline_ms <= w[1].deadline_ms)
    );
    for t in &view.tickets {
        let ticket = &live.tickets[&t.id];
        assert!(ticket.status.is_open() && ticket.grid_id == Some(id));
        let want = if now > t.deadline_ms {
            SlaState::Breached
        } else if (t.deadline_ms - now) * 5 < t.deadline_ms - t.opened_at_ms {
            SlaState::Amber
        } else {
            SlaState::OnTrack
        };
        assert_eq!(t.sla(now), want, "ticket {}", t.id);
    }
    assert_eq!(
        view.staff.len(),
        county.pack.staff.iter().filter(|s| s.grid_id == id).count()
    );
    assert!(
        view.nearby
            .windows(2)
            .all(|w| w[0].distance_m <= w[1].distance_m)
    );
    assert!(
        view.nearby
            .iter()
            .all(|v| v.status != VolunteerStatus::OffDuty)
    );

    // Drawn: the countdowns appear top to bottom in the same order, coloured by state —
    // drawn a second after the second-soonest limit passed, so the list holds overdue ones
    // and others.
    let now = view.tickets[1].deadline_ms + 1_000;
    let panel = PanelView::Grid(view.clone());
    let (texts, _) = run_ui(|ui| panel_ui(ui, &panel, now, 1.0), Vec::new());
    let mut last_y = f32::MIN;
    let mut seen = std::collections::BTreeSet::new();
    for t in view.tickets.iter().take(30) {
        let want = countdown_text(t.left_ms(now));
        let (_, color, rect) = texts
            .iter()
            .find(|(s, _, r)| *s == want && r.top() >= last_y)
            .unwrap_or_else(|| panic!("countdown {want} of ticket {} not drawn in order", t.id));
        last_y = rect.top();
        // Red once overdue, amber with under a fifth of the time limit left, else plain.
        let (left, limit) = (t.deadline_ms - now, t.deadline_ms - t.opened_at_ms);
        let expected = if left < 0 {
            theme::BAD
        } else if left * 5 < limit {
            theme::WARN
        } else {
            theme::TEXT
        };
        assert_eq!(
            *color, expected,
            "colour of {want} ({left} ms left of {limit})"
        );
        seen.insert(format!("{expected:?}"));
    }
    assert!(
        seen.len() >= 2,
        "the grid's list shows countdowns in more than one state: {seen:?}"
    );
    assert!(
        texts.iter().any(|(s, _, _)| s.contains(&view.name)),
        "heading"
    );
}

#[test]
fn an_overdue_ticket_is_red_and_amber_under_a_fifth_left() {
    assert_eq!(panels::sla_color(SlaState::Breached, 1.0), theme::BAD);
    assert_eq!(panels::sla_color(SlaState::Amber, 0.3), theme::WARN);
    assert_eq!(panels::sla_color(SlaState::OnTrack, 0.3), theme::TEXT);
    assert_ne!(
        panels::sla_color(SlaState::Breached, 0.0),
        panels::sla_color(SlaState::Breached, 1.0),
        "breached countdowns pulse"
    );
}

#[test]
fn ranking_rows_are_neediest_first_and_a_click_opens_the_community() {
    let (county, live, now, a) = world();
    let rows = panels::ranking_rows(&county, &a);
    assert_eq!(rows.len(), county.pack.communities.len());
    assert!(
        rows.windows(2)
            .all(|w| w[0].figures.attention() >= w[1].figures.attention())
    );
    let view = panels::panel_view(None, &county, Some(&live), Some(&a), None);
    let PanelView::County(ref r) = view else {
        panic!("county level shows the ranking")
    };
    assert_eq!(r, &rows);
    // Click the third row's name.
    let third = rows[2].name.clone();
    let (texts, _) = run_ui(|ui| panel_ui(ui, &view, now, 1.0), Vec::new());
    let (_, _, rect) = texts
        .iter()
        .find(|(s, _, _)| *s == third)
        .expect("row drawn")
        .clone();
    let (_, cmd) = run_ui(|ui| panel_ui(ui, &view, now, 1.0), click_at(rect.center()));
    assert_eq!(cmd, Some(UiCommand::Open(rows[2].focus)));
}

#[test]
fn community_panel_has_its_grids_fields_and_hourly_series() {
    let (county, live, _now, a) = world();
    let slot = county
        .pack
        .communities
        .iter()
        .position(|c| c.name.contains("太西"))
        .unwrap();
    let PanelView::Community(c) = panels::panel_view(
        Some(Focus::Community(slot)),
        &county,
        Some(&live),
        Some(&a),
        None,
    ) else {
        panic!("community view")
    };
    let code = county.pack.communities[slot].code;
    assert_eq!(c.grids.len(), county.pack.grids_of(code).count());
    assert!(
        c.grids
            .windows(2)
            .all(|w| w[0].figures.attention() >= w[1].figures.attention())
    );
    assert_eq!(c.figures, a.communities[slot]);
    assert_eq!(c.hourly, a.community_hourly[slot]);
    assert!(
        c.hourly.opened.iter().sum::<u32>() > 0,
        "tickets opened in the last 24 h"
    );
    assert!(c.fields.iter().any(|(k, v)| k.contains("households")
        && v == &county.pack.communities[slot].households.to_string()));
}

#[test]
fn breadcrumbs_and_esc_walk_the_path() {
    let (county, live, _now, _a) = world();
    let t = live.open_tickets().find(|t| t.grid_id.is_some()).unwrap();
    let grid = t.grid_id.unwrap();
    let community = county
        .pack
        .communities
        .iter()
        .position(|c| c.code == county.grid(grid).unwrap().community_code)
        .unwrap();
    let mut drill = Drill::default();
    drill.apply(UiCommand::Open(Focus::Ticket(t.id)), &county, Some(&live));
    assert_eq!(
        drill.path,
        vec![
            Focus::Community(community),
            Focus::Grid(grid),
            Focus::Ticket(t.id)
        ]
    );
    let crumbs = breadcrumbs(&drill, &county);
    assert_eq!(crumbs.len(), 4);
    assert_eq!(crumbs[0], county.pack.manifest.county_name);
    assert_eq!(crumbs[2], county.grid(grid).unwrap().name);
    assert_eq!(crumbs[3], format!("工单 #{}", t.id));
    // A click on the community crumb keeps two levels (county + community).
    let (texts, _) = run_ui(|ui| panels::breadcrumbs_ui(ui, &crumbs), Vec::new());
    let (_, _, rect) = texts
        .iter()
        .find(|(s, _, _)| *s == crumbs[1])
        .unwrap()
        .clone();
    let (_, cmd) = run_ui(
        |ui| panels::breadcrumbs_ui(ui, &crumbs),
        click_at(rect.center()),
    );
    assert_eq!(cmd, Some(UiCommand::Back(1)));
    drill.up();
    assert_eq!(drill.focus(), Some(Focus::Grid(grid)), "Esc: up one level");
    drill.apply(UiCommand::Back(1), &county, Some(&live));
    assert_eq!(drill.path, vec![Focus::Community(community)]);
    drill.up();
    assert!(drill.path.is_empty(), "back at the county");
    assert_eq!(
        path_to(Focus::Grid(grid), &county, None),
        vec![Focus::Community(community), Focus::Grid(grid)]
    );
}

#[test]
fn incident_panel_suggests_the_nearest_available_volunteers_and_teams() {
    let (county, live, now, _a) = world();
    let i = live
        .active_incidents()
        .find(|i| i.drill)
        .expect("the Taixi drill is running");
    let v = incident_view(&county, &live, i.id).unwrap();
    assert!(!v.mobilized.is_empty(), "the drill mobilized teams");
    assert!(!v.suggest_volunteers.is_empty());
    assert!(
        v.suggest_volunteers
            .windows(2)
            .all(|w| w[0].distance_m <= w[1].distance_m)
    );
    assert!(
        v.suggest_volunteers
            .iter()
            .all(|s| s.status == VolunteerStatus::Available)
    );
    // Nobody available is nearer than the first suggestion.
    let proj = county.pack.projection();
    let nearest = live
        .volunteers
        .iter()
        .filter(|x| x.status == VolunteerStatus::Available)
        .filter_map(|x| x.pos)
        .map(|p| proj.distance_m((p.lon, p.lat), (i.pos.lon, i.pos.lat)))
        .fold(f64::INFINITY, f64::min);
    assert!((v.suggest_volunteers[0].distance_m - nearest).abs() < 1e-6);
    assert!(
        v.suggest_teams
            .iter()
            .all(|t| !i.teams.iter().any(|m| m.team_id == t.id)),
        "mobilized teams are not suggested again"
    );
    assert!(
        v.suggest_teams
            .windows(2)
            .all(|w| w[0].distance_m <= w[1].distance_m)
    );
    // At cycling speed (4 m/s): 1.2 km is 5 minutes, 100 m is 25 s, 20 km is 1.4 hours.
    let mut shown = v.clone();
    assert!(shown.suggest_volunteers.len() >= 3, "three suggestions");
    for (k, d) in [1_200.0, 100.0, 20_000.0].into_iter().enumerate() {
        shown.suggest_volunteers[k].distance_m = d;
    }
    assert_eq!(shown.suggest_volunteers[0].eta_secs(), 300.0);
    let (texts, _) = run_ui(
        |ui| panel_ui(ui, &PanelView::Incident(shown.clone()), now, 1.0),
        Vec::new(),
    );
    assert!(
        texts
            .iter()
            .any(|(s, _, _)| s.contains(&v.suggest_volunteers[0].name))
    );
    for want in ["1200 m · 5 分钟", "100 m · 25 秒", "20000 m · 1.4 小时"] {
        assert!(
            texts.iter().any(|(s, _, _)| s.contains(want)),
            "{want} not drawn in {:?}",
            texts.iter().map(|t| &t.0).collect::<Vec<_>>()
        );
    }
}

#[test]
fn search_finds_communities_grids_people_and_ticket_ids() {
    let (county, live, _now, _a) = world();
    let hits = search("太西", &county, Some(&live), 12);
    assert!(
        matches!(hits.first(), Some((Focus::Community(_), _))),
        "{hits:?}"
    );
    assert!(hits.iter().any(|(f, _)| matches!(f, Focus::Grid(_))));
    let t = live.tickets.keys().min().unwrap();
    assert_eq!(
        search(&format!("#{t}"), &county, Some(&live), 12)
            .first()
            .map(|h| h.0),
        Some(Focus::Ticket(t))
    );
    let name = &county.pack.volunteers[7].name;
    assert!(
        search(name, &county, Some(&live), 50)
            .iter()
            .any(|(f, _)| *f == Focus::Volunteer(county.pack.volunteers[7].id))
    );
    assert!(search("不存在的地方", &county, Some(&live), 12).is_empty());
    assert!(search("  ", &county, Some(&live), 12).is_empty());
}

#[test]
fn the_grid_table_exports_as_csv() {
    let (county, live, now, a) = world();
    let slot = (0..a.grids.len())
        .max_by_key(|&i| (a.grids[i].open, i))
        .unwrap();
    let focus = Focus::Grid(county.pack.grids[slot].id);
    let view = panels::panel_view(Some(focus), &county, Some(&live), Some(&a), None);
    let (header, rows) = panels::panel_table(&view, now);
    let dir = scratch_dir("export");
    let path =
        panels::write_csv(&dir, &panels::export_stem(Some(focus), now), &header, &rows).unwrap();
    let mut r = csv::Reader::from_path(&path).unwrap();
    assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), header);
    let back: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(back.len() as u32, a.grids[slot].open);
    let PanelView::Grid(g) = view else { panic!() };
    assert_eq!(back[0].get(0).unwrap(), g.tickets[0].id.to_string());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_ticker_lists_breaches_waiting_for_acknowledgement_first_by_tier_then_newest() {
    use datawall::model::state::AlertState;
    use datawall::protocol::*;
    use datawall::wall::alerts::{Tier, alert_lines};
    let c = county();
    let mut live = LiveState::new(Arc::clone(&c));
    let t0 = 1_764_140_400_000;
    let grid = &c.pack.grids[0];
    for id in 1..=40u64 {
        live.apply(&Event::TicketOpened(TicketOpened {
            ticket_id: id,
            at_ms: t0,
            category: TicketCategory::Repair,
            source: TicketSource::Hotline,
            priority: Priority::ALL[(id % 4) as usize],
            pos: grid.label,
            grid_id: Some(grid.id),
            sla_deadline_ms: t0 + 60_000 + id as i64 * 1_000,
            summary: String::new(),
            responsible_party: None,
        }))
        .unwrap();
    }
    // Raised one by one as their limits pass; every third acknowledged.
    for id in 1..=40u64 {
        let now = t0 + 61_000 + id as i64 * 1_000;
        for e in live.alerts_due(now, 3_600_000) {
            live.apply(&e).unwrap();
        }
        if id % 3 == 0 {
            live.apply(&Event::AlertAcked(AlertAcked {
                alert_id: format!("sla-{id}"),
                at_ms: now,
                trigger: 1,
                by: "值班长".into(),
                note: String::new(),
                command_id: None,
            }))
            .unwrap();
        }
    }
    assert_eq!(live.alerts.len(), 40);
    let all = alert_lines(&live, 100);
    assert_eq!(all.len(), 40);
    // Waiting ones first; among them the loudest, then the newest.
    let waiting = all.iter().take_while(|l| l.acked.is_none()).count();
    assert_eq!(waiting, 40 - 13);
    assert!(
        all[waiting..]
            .iter()
            .all(|l| l.state == AlertState::Acknowledged && l.tier == Tier::Quiet)
    );
    for pair in all[..waiting].windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a.tier > b.tier || (a.tier == b.tier && a.raised_at_ms >= b.raised_at_ms),
            "{a:?} before {b:?}"
        );
    }
    assert_eq!(
        all[0].tier,
        Tier::Critical,
        "an urgent ticket's breach leads"
    );
    // The first few are the same whether 5 or all are asked for.
    assert_eq!(alert_lines(&live, 5), all[..5].to_vec());
}

#[test]
fn a_team_view_lists_its_members_tasks_and_area_and_is_reached_from_a_volunteer_and_search() {
    use datawall::protocol::Task;
    let (county, mut live, _now, a) = world();
    // Put two of a team's members to work: one on a ticket, one on the same ticket.
    let team = county.pack.teams[4].clone();
    let ticket = live.tickets.keys().min().unwrap();
    let ids: Vec<_> = live
        .volunteers
        .iter()
        .filter(|v| v.team_id == team.id)
        .map(|v| v.id)
        .take(2)
        .collect();
    for v in live.volunteers.iter_mut().filter(|v| ids.contains(&v.id)) {
        v.status = VolunteerStatus::Responding;
        v.task = Some(Task::Ticket(ticket));
    }
    let PanelView::Team(t) = panels::panel_view(
        Some(Focus::Team(team.id)),
        &county,
        Some(&live),
        Some(&a),
        None,
    ) else {
        panic!("team view")
    };
    // Members, counted straight from the roster and the live state.
    let members: Vec<_> = live
        .volunteers
        .iter()
        .filter(|v| v.team_id == team.id)
        .collect();
    assert_eq!(t.members.len(), members.len());
    let responding = members
        .iter()
        .filter(|v| v.status == VolunteerStatus::Responding)
        .count();
    assert!(responding >= 2);
    assert_eq!(t.responding, responding);
    assert_eq!(
        t.on_duty,
        members
            .iter()
            .filter(|v| v.status != VolunteerStatus::OffDuty)
            .count()
    );
    assert_eq!(t.leader, team.leader);
    // Responding first; the one ticket they are on, listed once.
    assert!(
        t.members[..2]
            .iter()
            .all(|m| m.status == VolunteerStatus::Responding)
    );
    assert!(t.tasks.contains(&Focus::Ticket(ticket)));
    assert_eq!(
        t.tasks
            .iter()
            .filter(|f| **f == Focus::Ticket(ticket))
            .count(),
        1
    );
    // Its area: the home grid first, then every grid a member lives in, once each.
    assert_eq!(t.area.first(), Some(&team.home_grid_id));
    for r in county
        .pack
        .volunteers
        .iter()
        .filter(|r| r.team_id == team.id)
    {
        assert!(t.area.contains(&r.home_grid_id));
    }
    let mut unique = t.area.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), t.area.len());
    // The path from the county runs through the team's community.
    let path = path_to(Focus::Team(team.id), &county, Some(&live));
    let community = county
        .pack
        .communities
        .iter()
        .position(|c| c.code == team.community_code)
        .unwrap();
    assert_eq!(
        path,
        vec![Focus::Community(community), Focus::Team(team.id)]
    );

    // Drawn: the heading, the counts, a member; a click on a member opens them.
    let view = PanelView::Team(t.clone());
    let (texts, _) = run_ui(|ui| panel_ui(ui, &view, 0, 0.0), Vec::new());
    assert!(texts.iter().any(|(s, _, _)| s == &team.name));
    let first = &t.members[0];
    let (_, _, rect) = texts
        .iter()
        .find(|(s, _, _)| s.starts_with(&first.name))
        .cloned()
        .expect("the first member is listed");
    let (_, cmd) = run_ui(|ui| panel_ui(ui, &view, 0, 0.0), click_at(rect.center()));
    assert_eq!(cmd, Some(UiCommand::Open(Focus::Volunteer(first.id))));

    // From a member's panel, the team link opens the team; search finds it by name.
    let PanelView::Volunteer(v) = panels::panel_view(
        Some(Focus::Volunteer(first.id)),
        &county,
        Some(&live),
        Some(&a),
        None,
    ) else {
        panic!("volunteer view")
    };
    let view = PanelView::Volunteer(v);
    let (texts, _) = run_ui(|ui| panel_ui(ui, &view, 0, 0.0), Vec::new());
    let (_, _, link) = texts
        .iter()
        .find(|(s, _, _)| s.starts_with("队伍 team"))
        .cloned()
        .expect("the team link");
    let (_, cmd) = run_ui(|ui| panel_ui(ui, &view, 0, 0.0), click_at(link.center()));
    assert_eq!(cmd, Some(UiCommand::Open(Focus::Team(team.id))));
    assert!(
        search(&team.name, &county, Some(&live), 12)
            .iter()
            .any(|(f, _)| *f == Focus::Team(team.id))
    );
}

#[test]
fn grid_and_community_panels_show_party_groups_centre_households_and_the_x() {
    let (county, live, _now, a) = world();
    // A grid with a party group; the pack's totals are the county report's (61 and 220).
    assert_eq!(
        county
            .pack
            .grids
            .iter()
            .map(|g| g.party_groups)
            .sum::<u32>(),
        61
    );
    assert_eq!(
        county
            .pack
            .grids
            .iter()
            .map(|g| g.centre_households)
            .sum::<u32>(),
        220
    );
    let g = county
        .pack
        .grids
        .iter()
        .find(|g| g.party_groups > 0)
        .unwrap();
    let v = grid_view(&county, &live, Some(&a), g.id, None).unwrap();
    assert_eq!(
        (v.party_groups, v.centre_households),
        (g.party_groups, g.centre_households)
    );
    let living = county
        .pack
        .volunteers
        .iter()
        .filter(|r| r.home_grid_id == g.id)
        .count();
    assert_eq!(v.resident_volunteers, living);
    let view = PanelView::Grid(v);
    let (texts, _) = run_ui(|ui| panel_ui(ui, &view, 0, 0.0), Vec::new());
    assert!(
        texts
            .iter()
            .any(|(s, _, _)| s.contains("网格党小组") && s.contains("中心户")),
        "{texts:?}"
    );
    // The community sums its grids' and lists its teams.
    let slot = county
        .pack
        .communities
        .iter()
        .position(|c| c.code == g.community_code)
        .unwrap();
    let PanelView::Community(c) = panels::panel_view(
        Some(Focus::Community(slot)),
        &county,
        Some(&live),
        Some(&a),
        None,
    ) else {
        panic!("community view")
    };
    let code = county.pack.communities[slot].code;
    let field = |k: &str| {
        c.fields
            .iter()
            .find(|(l, _)| l.contains(k))
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let groups: u32 = county.pack.grids_of(code).map(|g| g.party_groups).sum();
    assert_eq!(field("party groups"), groups.to_string());
    let teams = county
        .pack
        .teams
        .iter()
        .filter(|t| t.community_code == code)
        .count();
    assert!(field("volunteer teams").starts_with(&teams.to_string()));
}
