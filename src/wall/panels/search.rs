//! Search (`/`): ticket or incident ids, community, grid, volunteer and team names.

#[allow(unused_imports)]
use super::*;

/// Search (`/`): ticket or incident id (`123`, `#123`), community or grid name or code, volunteer
/// or team name, by substring; communities first, then grids, people, tickets. At most `limit`.
pub fn search(
    query: &str,
    county: &County,
    live: Option<&LiveState>,
    limit: usize,
) -> Vec<(Focus, String)> {
    let trimmed = query.trim();
    let ids_only = trimmed.starts_with('#');
    let q = trimmed.trim_start_matches('#').trim();
    if q.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<(Focus, String)> = Vec::new();
    // A number is first of all a ticket or incident id.
    if let (Ok(id), Some(live)) = (q.parse::<u64>(), live) {
        if let Some(t) = live.tickets.get(&id) {
            out.push((
                Focus::Ticket(id),
                format!("工单 #{id} {}", t.category.label_zh()),
            ));
        }
        if let Some(i) = live.incidents.get(&id) {
            out.push((Focus::Incident(i.id), format!("事件 #{} {}", i.id, i.title)));
        }
    }
    if ids_only {
        return out;
    }
    for (i, c) in county.pack.communities.iter().enumerate() {
        if c.name.contains(q) || c.display_name.contains(q) || c.code.to_string() == q {
            out.push((Focus::Community(i), format!("社区 {}", c.name)));
        }
    }
    for g in &county.pack.grids {
        if out.len() >= limit {
            break;
        }
        if g.name.contains(q) || g.code.contains(q) {
            out.push((Focus::Grid(g.id), format!("网格 {}", g.name)));
        }
    }
    for t in &county.pack.teams {
        if out.len() >= limit {
            break;
        }
        if t.name.contains(q) {
            out.push((Focus::Team(t.id), format!("队伍 {}", t.name)));
        }
    }
    for v in &county.pack.volunteers {
        if out.len() >= limit {
            break;
        }
        if v.name.contains(q) {
            out.push((
                Focus::Volunteer(v.id),
                format!("志愿者 {} · {}", v.name, team_name(county, v.team_id)),
            ));
        }
    }
    out.truncate(limit);
    out
}

/// The search box (`/`).
#[derive(Resource, Default)]
pub struct SearchBox {
    pub open: bool,
    pub query: String,
    /// Focus the text field on the next frame.
    pub(super) grab: bool,
}

/// The search box: type, `Enter` opens the first hit, a click opens any; `Esc` closes.
pub fn search_ui(
    ui: &mut egui::Ui,
    search: &mut SearchBox,
    hits: &[(Focus, String)],
) -> Option<UiCommand> {
    let mut cmd = None;
    ui.label(text(
        "搜索 search: 工单号 / 社区 / 网格 / 志愿者",
        theme::FONT_PANEL_SMALL,
        theme::TEXT_DIM,
    ));
    let edit = ui.add(
        egui::TextEdit::singleline(&mut search.query)
            .font(egui::FontId::proportional(theme::FONT_PANEL_TITLE))
            .desired_width(f32::INFINITY),
    );
    if search.grab {
        edit.request_focus();
        search.grab = false;
    }
    let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    let escape = ui.input(|i| i.key_pressed(egui::Key::Escape));
    for (i, (focus, label)) in hits.iter().enumerate() {
        if ui
            .link(text(label, theme::FONT_PANEL, theme::TEXT))
            .clicked()
            || (enter && i == 0)
        {
            cmd = Some(UiCommand::Open(*focus));
        }
    }
    if !search.query.trim().is_empty() && hits.is_empty() {
        ui.label(text("无结果 no match", theme::FONT_PANEL, theme::TEXT_DIM));
    }
    if cmd.is_some() || escape {
        search.open = false;
        search.query.clear();
    }
    cmd
}

pub(super) fn search_hits(
    query: &str,
    county: &County,
    live: Option<&LiveState>,
) -> Vec<(Focus, String)> {
    search(query, county, live, 12)
}
