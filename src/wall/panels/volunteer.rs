//! A volunteer's panel: status, position, skills and the current task.

#[allow(unused_imports)]
use super::*;

/// The volunteer panel.
#[derive(Clone, Debug, PartialEq)]
pub struct VolunteerView {
    pub id: VolunteerId,
    pub name: String,
    pub team: String,
    pub team_id: crate::protocol::TeamId,
    pub skills: String,
    pub status: VolunteerStatus,
    pub grid: String,
    pub pos: Option<LonLat>,
    pub last_fix_ms: Option<TimestampMs>,
    pub task: Option<Focus>,
}

pub fn volunteer_view(county: &County, live: &LiveState, id: VolunteerId) -> Option<VolunteerView> {
    let v = live.volunteer(id)?;
    let r = volunteer_record(county, id);
    Some(VolunteerView {
        id,
        name: r.map_or_else(String::new, |r| r.name.clone()),
        team: team_name(county, v.team_id),
        team_id: v.team_id,
        skills: r.map_or_else(String::new, |r| r.skills.replace(';', " · ")),
        status: v.status,
        grid: v
            .grid_id
            .and_then(|g| county.grid(g))
            .map_or_else(|| "—".into(), |g| g.name.clone()),
        pos: v.pos,
        last_fix_ms: v.last_fix_ms,
        task: v.task.map(|t| match t {
            Task::Ticket(t) => Focus::Ticket(t),
            Task::Incident(i) => Focus::Incident(i),
        }),
    })
}

/// Draw the volunteer panel; what a click asks for.
pub fn volunteer_ui(ui: &mut egui::Ui, v: &VolunteerView, _cx: &Cx<'_>) -> Option<UiCommand> {
    let mut asked = Asked::default();
    heading_ui(ui, &v.name, &v.team);
    ui.label(text(
        format!("状态 status: {}", status_label(v.status)),
        theme::FONT_PANEL,
        theme::TEXT,
    ));
    if ui
        .link(text(
            format!("队伍 team: {} ›", v.team),
            theme::FONT_PANEL,
            theme::LINK,
        ))
        .clicked()
    {
        asked.take(Some(UiCommand::Open(Focus::Team(v.team_id))));
    }
    ui.label(text(
        format!("网格 grid: {}", v.grid),
        theme::FONT_PANEL_SMALL,
        theme::TEXT,
    ));
    if let Some(p) = v.pos {
        ui.label(text(
            format!("位置 position: {:.5}, {:.5}", p.lon, p.lat),
            theme::FONT_PANEL_SMALL,
            theme::TEXT,
        ));
    }
    if let Some(t) = v.last_fix_ms {
        ui.label(text(
            format!("最近定位 last fix: {}", clock_text(t)),
            theme::FONT_PANEL_SMALL,
            theme::TEXT,
        ));
    }
    ui.label(text(
        format!("技能 skills: {}", v.skills),
        theme::FONT_PANEL_SMALL,
        theme::TEXT,
    ));
    if let Some(task) = v.task {
        let label = match task {
            Focus::Ticket(t) => format!("当前任务 task: 工单 #{t}"),
            Focus::Incident(i) => format!("当前任务 task: 事件 #{i}"),
            _ => String::new(),
        };
        if ui
            .link(text(label, theme::FONT_PANEL, theme::LINK))
            .clicked()
        {
            asked.take(Some(UiCommand::Open(task)));
        }
    }
    asked.0
}
