//! A volunteer team's panel: its leader and community, members on duty and responding, the
//! tasks they are on, and its area (the grids its members live in, drawn on the map in the
//! team's colour while the panel is open).

#[allow(unused_imports)]
use super::*;

/// One member of a team, as its panel lists them.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberRow {
    pub id: VolunteerId,
    pub name: String,
    pub status: VolunteerStatus,
    pub task: Option<Focus>,
}

/// The team panel.
#[derive(Clone, Debug, PartialEq)]
pub struct TeamView {
    pub id: crate::protocol::TeamId,
    pub name: String,
    pub community: String,
    pub leader: String,
    /// Responding first, then on duty, then off duty; by name within each.
    pub members: Vec<MemberRow>,
    pub on_duty: usize,
    pub responding: usize,
    /// The tickets and incidents its members are on, each once.
    pub tasks: Vec<Focus>,
    /// Its area: the grids its members live in, and their names.
    pub area: Vec<GridId>,
    pub area_names: Vec<String>,
}

/// The grids a team's members live in (its home grid first).
pub fn team_area(county: &County, team: crate::protocol::TeamId) -> Vec<GridId> {
    let mut area: Vec<GridId> = county
        .team(team)
        .map(|t| t.home_grid_id)
        .into_iter()
        .collect();
    for r in county.pack.volunteers.iter().filter(|r| r.team_id == team) {
        if !area.contains(&r.home_grid_id) {
            area.push(r.home_grid_id);
        }
    }
    area
}

pub fn team_view(
    county: &County,
    live: &LiveState,
    id: crate::protocol::TeamId,
) -> Option<TeamView> {
    let t = county.team(id)?;
    let community = county
        .pack
        .communities
        .iter()
        .find(|c| c.code == t.community_code)
        .map_or_else(String::new, |c| c.name.clone());
    let mut members: Vec<MemberRow> = live
        .volunteers
        .iter()
        .filter(|v| v.team_id == id)
        .map(|v| MemberRow {
            id: v.id,
            name: volunteer_record(county, v.id)
                .map_or_else(|| format!("#{}", v.id), |r| r.name.clone()),
            status: v.status,
            task: v.task.map(|t| match t {
                Task::Ticket(t) => Focus::Ticket(t),
                Task::Incident(i) => Focus::Incident(i),
            }),
        })
        .collect();
    let rank = |s: VolunteerStatus| match s {
        VolunteerStatus::Responding => 0,
        VolunteerStatus::Available => 1,
        VolunteerStatus::OffDuty => 2,
    };
    members.sort_by(|a, b| {
        rank(a.status)
            .cmp(&rank(b.status))
            .then(a.name.cmp(&b.name))
    });
    let responding = members
        .iter()
        .filter(|m| m.status == VolunteerStatus::Responding)
        .count();
    let on_duty = members
        .iter()
        .filter(|m| m.status != VolunteerStatus::OffDuty)
        .count();
    let mut tasks: Vec<Focus> = Vec::new();
    for task in members.iter().filter_map(|m| m.task) {
        if !tasks.contains(&task) {
            tasks.push(task);
        }
    }
    Some(TeamView {
        id,
        name: t.name.clone(),
        community,
        leader: t.leader.clone(),
        members,
        on_duty,
        responding,
        tasks,
        area_names: team_area(county, id)
            .iter()
            .filter_map(|g| county.grid(*g))
            .map(|g| g.name.clone())
            .collect(),
        area: team_area(county, id),
    })
}

/// Draw the team panel; what a click asks for.
pub fn team_ui(ui: &mut egui::Ui, t: &TeamView, cx: &Cx<'_>) -> Option<UiCommand> {
    let mut asked = Asked::default();
    heading_ui(ui, &t.name, &t.community);
    ui.label(text(
        format!("队长 leader: {}", t.leader),
        theme::FONT_PANEL,
        theme::TEXT,
    ));
    ui.label(text(
        format!(
            "队员 members {} · 在岗 on duty {} · 出勤 responding {}",
            t.members.len(),
            t.on_duty,
            t.responding
        ),
        theme::FONT_PANEL,
        if t.responding > 0 {
            theme::WARN
        } else {
            theme::GOOD
        },
    ));
    section_ui(ui, "当前任务 current tasks");
    if t.tasks.is_empty() {
        ui.label(text("无 none", theme::FONT_PANEL_SMALL, theme::TEXT_DIM));
    }
    for task in &t.tasks {
        let label = match task {
            Focus::Ticket(id) => format!("工单 ticket #{id}"),
            Focus::Incident(id) => format!("事件 incident #{id}"),
            _ => continue,
        };
        if ui
            .link(text(label, theme::FONT_PANEL, theme::LINK))
            .clicked()
        {
            asked.take(Some(UiCommand::Open(*task)));
        }
    }
    section_ui(ui, "队员 members");
    for (i, m) in t.members.iter().enumerate() {
        let color = match m.status {
            VolunteerStatus::Responding => theme::WARN,
            VolunteerStatus::Available => theme::GOOD,
            VolunteerStatus::OffDuty => theme::TEXT_DIM,
        };
        let selected = cx.extras.selected == Some(i);
        let label = format!(
            "{}{} · {}",
            if selected { "▶ " } else { "" },
            m.name,
            status_label(m.status)
        );
        if ui
            .link(text(label, theme::FONT_PANEL_SMALL, color))
            .clicked()
        {
            asked.take(Some(UiCommand::Open(Focus::Volunteer(m.id))));
        }
    }
    section_ui(ui, "片区 area (队员所在网格, 地图上以队伍颜色标出)");
    ui.label(text(
        t.area_names.join(" · "),
        theme::FONT_PANEL_SMALL,
        theme::TEXT,
    ));
    asked.0
}
