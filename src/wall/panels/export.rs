//! Exports: the panel's table as CSV (`E`), the view as PNG (`P`), and the toast that says where they went.

#[allow(unused_imports)]
use super::*;

/// The current panel as a table (CSV export): header and rows.
pub fn panel_table(view: &PanelView, now_ms: TimestampMs) -> (Vec<String>, Vec<Vec<String>>) {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let area = |rows: &[AreaRow]| {
        rows.iter()
            .map(|r| {
                let f = &r.figures;
                vec![
                    r.name.clone(),
                    f.open.to_string(),
                    f.overdue.to_string(),
                    f.at_risk.to_string(),
                    f.opened_today.to_string(),
                    f.resolved_today.to_string(),
                    f.on_time_rate
                        .map_or_else(String::new, |v| format!("{:.3}", v)),
                ]
            })
            .collect()
    };
    let area_header = s(&[
        "name",
        "open",
        "overdue",
        "at_risk",
        "opened_today",
        "resolved_today",
        "on_time_rate",
    ]);
    match view {
        PanelView::County(rows) => (area_header, area(rows)),
        PanelView::Community(c) => (area_header, area(&c.grids)),
        PanelView::Grid(g) => (
            s(&[
                "ticket_id",
                "category",
                "status",
                "priority",
                "opened_at",
                "deadline",
                "sla_left_secs",
                "summary",
            ]),
            g.tickets
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.category.to_owned(),
                        t.status.to_owned(),
                        priority_label(t.priority).to_owned(),
                        clock_text(t.opened_at_ms),
                        clock_text(t.deadline_ms),
                        (t.left_ms(now_ms) / 1000).to_string(),
                        t.summary.clone(),
                    ]
                })
                .collect(),
        ),
        PanelView::Ticket(t) => (
            s(&["step", "at", "took_secs"]),
            t.steps
                .iter()
                .map(|st| {
                    vec![
                        st.status.to_owned(),
                        clock_text(st.at_ms),
                        st.took_ms
                            .map_or_else(String::new, |ms| (ms / 1000).to_string()),
                    ]
                })
                .collect(),
        ),
        PanelView::Incident(i) => (
            s(&["kind", "team_or_volunteer", "distance_m", "eta_secs"]),
            i.mobilized
                .iter()
                .map(|t| ("mobilized", t.name.clone(), t.distance_m))
                .chain(
                    i.suggest_teams
                        .iter()
                        .map(|t| ("suggested_team", t.name.clone(), t.distance_m)),
                )
                .chain(
                    i.suggest_volunteers
                        .iter()
                        .map(|v| ("suggested_volunteer", v.name.clone(), Some(v.distance_m))),
                )
                .map(|(k, n, d)| {
                    vec![
                        k.to_owned(),
                        n,
                        d.map_or_else(String::new, |d| format!("{d:.0}")),
                        d.map_or_else(String::new, |d| format!("{:.0}", d / ETA_SPEED_M_PER_S)),
                    ]
                })
                .collect(),
        ),
        PanelView::Team(t) => (
            s(&["volunteer_id", "name", "status", "task"]),
            t.members
                .iter()
                .map(|m| {
                    vec![
                        m.id.to_string(),
                        m.name.clone(),
                        status_label(m.status).to_owned(),
                        m.task.map_or_else(String::new, |f| format!("{f:?}")),
                    ]
                })
                .collect(),
        ),
        PanelView::Volunteer(v) => (
            s(&["id", "name", "team", "status", "grid"]),
            vec![vec![
                v.id.to_string(),
                v.name.clone(),
                v.team.clone(),
                status_label(v.status).to_owned(),
                v.grid.clone(),
            ]],
        ),
        PanelView::Missing(_) => (Vec::new(), Vec::new()),
    }
}

/// Where exports (CSV tables, PNG views) go: `$DATAWALL_EXPORT_DIR` or `./datawall-exports`.
pub fn export_dir() -> std::path::PathBuf {
    std::env::var_os("DATAWALL_EXPORT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("datawall-exports"))
}

/// Write a table as CSV; returns the file written.
pub fn write_csv(
    dir: &std::path::Path,
    stem: &str,
    header: &[String],
    rows: &[Vec<String>],
) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{stem}.csv"));
    let mut w = csv::Writer::from_path(&path)?;
    w.write_record(header)?;
    for r in rows {
        w.write_record(r)?;
    }
    w.flush()?;
    Ok(path)
}

/// File-name stem for an export of the current focus at `now_ms`.
pub fn export_stem(focus: Option<Focus>, now_ms: TimestampMs) -> String {
    let what = match focus {
        None => "county-ranking".to_owned(),
        Some(Focus::Community(c)) => format!("community-{c}"),
        Some(Focus::Grid(g)) => format!("grid-{g}"),
        Some(Focus::Ticket(t)) => format!("ticket-{t}"),
        Some(Focus::Volunteer(v)) => format!("volunteer-{v}"),
        Some(Focus::Incident(i)) => format!("incident-{i}"),
        Some(Focus::Team(t)) => format!("team-{t}"),
    };
    format!("{what}-{}", clock_text(now_ms).replace(':', ""))
}

/// A short message shown under the panels (what was exported and where).
#[derive(Resource, Default)]
pub struct Toast(pub Option<(String, std::time::Instant)>);

impl Toast {
    pub fn show(&mut self, text: impl Into<String>) {
        let text = text.into();
        info!("{text}");
        self.0 = Some((text, std::time::Instant::now()));
    }
}

/// `E` writes the current panel's table as CSV, `P` the current view as PNG.
pub(super) fn export_keys(
    mut commands: Commands,
    keys: Res<ButtonInput<KeyCode>>,
    drill: Res<Drill>,
    cache: Res<PanelCache>,
    model: Res<crate::wall::feed::WallModel>,
    mut toast: ResMut<Toast>,
    egui_input: Option<Res<bevy_egui::input::EguiWantsInput>>,
) {
    if egui_input.is_some_and(|e| e.wants_keyboard_input()) {
        return;
    }
    let dir = export_dir();
    let stem = export_stem(drill.focus(), model.now_ms());
    if keys.just_pressed(KeyCode::KeyE) {
        let Some(view) = cache.view.as_deref() else {
            return;
        };
        let (header, rows) = panel_table(view, model.now_ms());
        match write_csv(&dir, &stem, &header, &rows) {
            Ok(p) => toast.show(format!(
                "已导出 exported {} rows → {}",
                rows.len(),
                p.display()
            )),
            Err(e) => toast.show(format!(
                "导出失败 export failed: {e} (check that {} is writable)",
                dir.display()
            )),
        }
    }
    if keys.just_pressed(KeyCode::KeyP) {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            toast.show(format!(
                "截图失败 screenshot failed: {e} (check that {} is writable)",
                dir.display()
            ));
            return;
        }
        let path = dir.join(format!("{stem}.png"));
        toast.show(format!("截图 view saved → {}", path.display()));
        commands
            .spawn(bevy::render::view::screenshot::Screenshot::primary_window())
            .observe(bevy::render::view::screenshot::save_to_disk(path));
    }
}
