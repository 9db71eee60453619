//! The operator's hands on the wall: keyboard focus (Tab between map, ranking and panel; ↑/↓
//! and Enter in the focused list), the action keys (S 督办, D dispatch the suggestion, A
//! acknowledge an alert, N pin a note to the selection at the moment shown), the note prompt,
//! and sending the commands through the feed.

use bevy::prelude::*;
use bevy_egui::egui;

use super::feed::{FeedChannel, FeedCommand, WallModel};
use super::nav::Drill;
use super::nav::Focus;
use super::nav::UiCommand;
use super::outbox::{Action, FocusArea, KeyFocus, NotePrompt, SentStatus};
use super::panels::{
    ListTarget, PanelView, Requests, SearchBox, Toast, focus_points, list_targets, panel_view,
};
use super::theme;
use crate::protocol::entities::Place;
use crate::protocol::session::ClientMsg;

/// Where `N` pins a note on `focus`: the ticket, incident or grid itself while the gateway still
/// holds it (a past moment may show one it has let go: then its grid, or its position), a
/// volunteer's or a community's position.
pub fn note_place(focus: Focus, model: &WallModel) -> Option<Place> {
    let live = model.mirror.state.as_ref();
    let shown = model.live();
    let point = |pos| Some(Place::Point { pos });
    match focus {
        Focus::Grid(g) => Some(Place::Grid { grid_id: g }),
        Focus::Ticket(t) if live.is_some_and(|l| l.tickets.contains_key(&t)) => {
            Some(Place::Ticket { ticket_id: t })
        }
        Focus::Ticket(t) => {
            let ticket = shown?.tickets.get(&t)?;
            match ticket.grid_id {
                Some(grid_id) => Some(Place::Grid { grid_id }),
                None => point(ticket.pos),
            }
        }
        Focus::Incident(i) if live.is_some_and(|l| l.incidents.contains_key(&i)) => {
            Some(Place::Incident { incident_id: i })
        }
        Focus::Incident(i) => point(shown?.incidents.get(&i)?.pos),
        Focus::Volunteer(v) => point(shown?.volunteer(v)?.pos?),
        Focus::Community(c) => point(model.county.pack.communities.get(c)?.label),
        Focus::Team(t) => Some(Place::Grid {
            grid_id: model.county.team(t)?.home_grid_id,
        }),
    }
}

/// The rows of the list the keyboard is in.
fn focused_targets(
    area: FocusArea,
    drill: &Drill,
    model: &WallModel,
    stats: &super::stats::Stats,
) -> Vec<ListTarget> {
    let a = stats.latest.as_deref();
    let view = match area {
        FocusArea::Map => return Vec::new(),
        FocusArea::Ranking => panel_view(None, &model.county, model.live(), a, None),
        FocusArea::Panel => {
            let Some(focus) = drill.focus() else {
                return Vec::new();
            };
            panel_view(
                Some(focus),
                &model.county,
                model.live(),
                a,
                Some(&model.ticket_store),
            )
        }
    };
    list_targets(&view)
}

/// The action a key asks for on the current focus, if it applies there.
fn key_action(
    key: KeyCode,
    focus: Option<Focus>,
    model: &WallModel,
    stats: &super::stats::Stats,
) -> Option<Action> {
    let live = model.live()?;
    match (key, focus) {
        (KeyCode::KeyS, Some(Focus::Ticket(t))) => live
            .tickets
            .get(&t)
            .filter(|t| t.status.is_open())
            .map(|_| Action::Supervise(t)),
        (KeyCode::KeyD, Some(Focus::Incident(i))) => {
            let view = panel_view(
                Some(Focus::Incident(i)),
                &model.county,
                Some(live),
                stats.latest.as_deref(),
                None,
            );
            match view {
                PanelView::Incident(v) if !v.closed && !v.suggest_teams.is_empty() => Some(
                    Action::Dispatch(i, v.suggest_teams.iter().map(|t| t.id).collect()),
                ),
                _ => None,
            }
        }
        (KeyCode::KeyN, Some(f)) => {
            note_place(f, model).map(|p| Action::Annotate(p, model.now_ms()))
        }
        (KeyCode::KeyA, f) => {
            let ticket = match f {
                Some(Focus::Ticket(t)) => Some(t),
                _ => None,
            };
            super::alerts::ack_target(live, ticket).map(Action::Ack)
        }
        _ => None,
    }
}

/// Tab, ↑/↓, Enter and the action keys.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn action_keys(
    mut keys: ResMut<ButtonInput<KeyCode>>,
    mut focus: ResMut<KeyFocus>,
    mut drill: ResMut<Drill>,
    mut fly: ResMut<super::camera::FlyTo>,
    model: Res<WallModel>,
    stats: Res<super::stats::Stats>,
    mut requests: ResMut<Requests>,
    (mut prompt, search, mut toast, egui_input, mut after_action): (
        ResMut<NotePrompt>,
        Option<Res<SearchBox>>,
        ResMut<Toast>,
        Option<Res<bevy_egui::input::EguiWantsInput>>,
        Option<ResMut<super::after_action::Request>>,
    ),
) {
    if prompt.action.is_some() {
        // The prompt's text field has the keyboard; without one (headless), Enter and Esc
        // still work.
        if keys.just_pressed(KeyCode::Enter) {
            prompt.submit = true;
        }
        if keys.just_pressed(KeyCode::Escape) {
            *prompt = NotePrompt::default();
            toast.show("已取消 cancelled");
        }
        // Taken here: Esc must not also leave the panel.
        keys.clear_just_pressed(KeyCode::Enter);
        keys.clear_just_pressed(KeyCode::Escape);
        return;
    }
    if search.is_some_and(|s| s.open) || egui_input.is_some_and(|e| e.wants_keyboard_input()) {
        return;
    }
    let panel_open = drill.focus().is_some();
    if focus.area == FocusArea::Panel && !panel_open {
        *focus = KeyFocus::default();
    }
    if keys.just_pressed(KeyCode::Tab) {
        let back = keys.pressed(KeyCode::ShiftLeft) || keys.pressed(KeyCode::ShiftRight);
        focus.cycle(back, panel_open);
    }
    if keys.just_pressed(KeyCode::KeyR) {
        match (drill.focus(), after_action.as_deref_mut()) {
            (Some(Focus::Incident(i)), Some(r)) => r.0 = Some(i),
            _ => toast.show("R 复盘: 先选择一个事件 select an incident first"),
        }
    }
    for key in [KeyCode::KeyS, KeyCode::KeyD, KeyCode::KeyA, KeyCode::KeyN] {
        if keys.just_pressed(key) {
            match key_action(key, drill.focus(), &model, &stats) {
                Some(a) => requests.0.push(a),
                None => toast.show(match key {
                    KeyCode::KeyS => "S 督办: 先选择一张在办工单 select an open ticket first",
                    KeyCode::KeyD => "D 调度: 先选择一个有调度建议的事件 select an open incident with a suggestion",
                    KeyCode::KeyN => "N 标注: 先在地图上选择一个网格、工单或事件 select a grid, ticket or incident first",
                    _ => "A 确认: 没有待确认的告警 no alert waits for acknowledgement",
                }),
            }
        }
    }
    if focus.area == FocusArea::Map {
        return;
    }
    let (up, down, enter) = (
        keys.just_pressed(KeyCode::ArrowUp),
        keys.just_pressed(KeyCode::ArrowDown),
        keys.just_pressed(KeyCode::Enter) || keys.just_pressed(KeyCode::NumpadEnter),
    );
    if !(up || down || enter) {
        return;
    }
    let targets = focused_targets(focus.area, &drill, &model, &stats);
    if targets.is_empty() {
        return;
    }
    let last = targets.len() - 1;
    focus.row = focus.row.min(last);
    if up {
        focus.row = focus.row.saturating_sub(1);
    }
    if down {
        focus.row = (focus.row + 1).min(last);
    }
    if enter {
        match targets[focus.row].clone() {
            ListTarget::Act(a) => requests.0.push(a),
            ListTarget::Open(f) => {
                drill.apply(UiCommand::Open(f), &model.county, model.live());
                fly.to(
                    focus_points(f, &model.county, model.live()),
                    &model.county,
                    false,
                );
                // The list that opens is the panel's: the keyboard follows it.
                focus.area = FocusArea::Panel;
                focus.row = 0;
            }
        }
    }
}

/// Send what was asked for: at once, or after the note prompt for actions that want one.
pub fn send_requests(
    mut requests: ResMut<Requests>,
    mut prompt: ResMut<NotePrompt>,
    mut model: ResMut<WallModel>,
    channel: Option<Res<FeedChannel>>,
    mut toast: ResMut<Toast>,
) {
    let mut to_send = Vec::new();
    if prompt.submit {
        if let Some(a) = prompt.action.take() {
            to_send.push((a, std::mem::take(&mut prompt.text)));
        }
        *prompt = NotePrompt::default();
    }
    for a in requests.0.drain(..) {
        if a.wants_note() {
            if prompt.action.is_none() {
                prompt.action = Some(a);
                prompt.text.clear();
            }
        } else {
            to_send.push((a, String::new()));
        }
    }
    for (action, note) in to_send {
        if !action.note_optional() && note.trim().is_empty() {
            toast.show("标注需要文字 a note needs a text; nothing was sent");
            continue;
        }
        let command = action.command(note.trim());
        let label = action.label();
        let id = model.outbox.record(action);
        let live = model.state == super::feed::FeedState::Live;
        let sent = live
            && channel.as_ref().is_some_and(|c| {
                c.commands
                    .try_send(FeedCommand::Send(ClientMsg::Command {
                        id: id.clone(),
                        command,
                    }))
                    .is_ok()
            });
        if sent {
            toast.show(format!("已发送 sent: {label}"));
        } else {
            if let Some(s) = model.outbox.sent.iter_mut().find(|s| s.id == id) {
                s.status = SentStatus::Lost;
            }
            toast.show(format!(
                "未发送 not sent: {label} — the feed is not connected; retry when it is"
            ));
        }
    }
    if model
        .outbox
        .sent
        .iter()
        .any(|s| s.status == SentStatus::Pending)
    {
        model.outbox.expire();
    }
}

/// The note prompt: a line of text for 督办 or an acknowledgement; Enter sends, Esc cancels.
pub fn prompt_ui(
    mut contexts: bevy_egui::EguiContexts,
    mut prompt: ResMut<NotePrompt>,
    layout: Option<Res<super::layout::Layout>>,
) -> Result {
    let Some(action) = prompt.action.clone() else {
        return Ok(());
    };
    let ctx = contexts.ctx_mut()?;
    // Centred on the screen, or on a spliced wall in one map panel (the screen's centre may
    // be a seam).
    let centre = layout
        .as_deref()
        .filter(|l| l.wall)
        .map_or(ctx.viewport_rect().center(), |l| {
            l.dock(super::layout::Dock::TopLeft).center()
        });
    egui::Area::new("note_prompt".into())
        .pivot(egui::Align2::CENTER_CENTER)
        .fixed_pos(centre)
        .order(egui::Order::Foreground)
        .show(ctx, |ui| {
            egui::Frame::default()
                .fill(theme::PANEL_BG)
                .stroke(egui::Stroke::new(2.0, theme::WARN))
                .inner_margin(egui::Margin::same(16))
                .corner_radius(4.0)
                .show(ui, |ui| {
                    ui.set_width(560.0);
                    ui.label(
                        egui::RichText::new(action.label())
                            .size(theme::FONT_PANEL_TITLE)
                            .color(theme::TEXT),
                    );
                    ui.label(
                        egui::RichText::new(if action.note_optional() {
                            "备注 note (可空 optional) · Enter 发送 send · Esc 取消 cancel"
                        } else {
                            "标注内容 the note, for every wall · Enter 发送 send · Esc 取消 cancel"
                        })
                        .size(theme::FONT_PANEL_SMALL)
                        .color(theme::TEXT_DIM),
                    );
                    let edit = ui.add(
                        egui::TextEdit::singleline(&mut prompt.text)
                            .desired_width(f32::INFINITY)
                            .char_limit(crate::protocol::command::MAX_NOTE_CHARS),
                    );
                    edit.request_focus();
                    if ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                        prompt.submit = true;
                    }
                    if ui.input(|i| i.key_pressed(egui::Key::Escape)) {
                        *prompt = NotePrompt::default();
                    }
                });
        });
    Ok(())
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<NotePrompt>().add_systems(
        Update,
        (
            action_keys
                .before(super::panels::drill_keys)
                .before(super::camera::layer_keys),
            send_requests,
        )
            .chain()
            .in_set(super::nav::WallSet::Input),
    );
    app.add_systems(bevy_egui::EguiPrimaryContextPass, prompt_ui);
}
