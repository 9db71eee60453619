//! The county simulator: a deterministic (seeded) discrete-event model of residents'
//! tickets, volunteers on duty and emergencies, producing protocol events in time order.
//!
//! The simulator owns its clock: `advance_to(t)` returns every event up to `t`, so the
//! output depends only on the seed and the pack, never on how often it is called.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use geo::{BoundingRect, Intersects, Point};

use crate::model::County;
use crate::model::geom::LocalProjection;
use crate::model::rng::Rng;
use crate::protocol::command::{Command, PlatformCommand};
use crate::protocol::*;

/// Simulator settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Feed time at which the live part starts, ms since the epoch.
    pub start_ms: TimestampMs,
    /// Hours simulated before `start_ms` (tickets and incidents only, no position fixes) so
    /// the wall opens on a realistic backlog.
    pub warmup_hours: u32,
    /// Resident tickets per day county-wide (before `scale`).
    pub tickets_per_day: f64,
    /// Emergencies per day county-wide (before `scale`).
    pub incidents_per_day: f64,
    /// Multiplies the ticket and incident rates.
    pub scale: f64,
    /// How often an on-duty volunteer's phone reports its position.
    pub fix_interval_ms: i64,
    /// Fire drills: minutes after the live start, and the community (display or official
    /// name) where it happens.
    pub drills: Vec<(u32, String)>,
    /// A standing backlog of this many open tickets, reported over the 72 h before the
    /// warm-up and never progressing (city-scale load tests: `--backlog 1000000`).
    pub backlog: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            start_ms: 1_764_140_400_000, // 2025-11-26 07:00 UTC = 15:00 in Ningxia
            warmup_hours: 24,
            tickets_per_day: 1_500.0,
            incidents_per_day: 24.0,
            scale: 1.0,
            fix_interval_ms: 1_000,
            // The county's report: a fire drill in Taixi community, alarm to fire out in 15 min.
            drills: vec![(10, "太西社区".to_owned())],
            backlog: 0,
        }
    }
}

/// How long the county's platform takes to act on an accepted command, feed time (ms):
/// a supervision is routed to the responsible party in 10–30 s; a volunteer or a team
/// accepts an assignment in 5–15 s.
pub const PLATFORM_HANDLING_MS: ((i64, i64), (i64, i64)) = ((10_000, 30_000), (5_000, 15_000));

/// Relative ticket arrival rate by local hour (UTC+8); mean 1.
const HOUR_PROFILE: [f64; 24] = [
    0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.5, 1.0, 1.6, 1.9, 1.9, 1.6, 1.2, 1.1, 1.4, 1.7, 1.7, 1.5,
    1.4, 1.5, 1.4, 1.0, 0.6, 0.3,
];

const SUMMARIES: [(TicketCategory, &[&str]); 6] = [
    (
        TicketCategory::Repair,
        &[
            "楼道灯不亮",
            "水管漏水",
            "暖气不热",
            "电梯故障",
            "下水道堵塞",
            "单元门禁损坏",
            "路灯不亮",
        ],
    ),
    (
        TicketCategory::Help,
        &[
            "独居老人需要帮助",
            "助老送餐",
            "残疾人出行协助",
            "代办证件咨询",
            "困难家庭求助",
        ],
    ),
    (
        TicketCategory::Feedback,
        &[
            "建议增设健身器材",
            "停车位规划建议",
            "社区活动建议",
            "对办事流程的意见",
        ],
    ),
    (
        TicketCategory::Dispute,
        &["邻里噪音纠纷", "楼上漏水纠纷", "占用公共空间", "宠物扰民"],
    ),
    (
        TicketCategory::Sanitation,
        &["垃圾清运不及时", "绿化带杂物", "楼道堆放杂物", "污水外溢"],
    ),
    (
        TicketCategory::Property,
        &[
            "物业费争议",
            "小区保安缺位",
            "公共设施维修慢",
            "物业服务态度",
        ],
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TicketStep {
    Dispatch,
    OnSite,
    /// The time limit passed: escalated if still open.
    Escalate,
    Resolve,
    Rate,
    Reopen,
}

/// Where the platform has a ticket (steps scheduled for another stage are skipped: an
/// operator's command may have moved it on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Opened,
    Dispatched,
    OnSite,
    Resolved,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    TicketArrival,
    /// A step of a ticket's life, for one generation of it (a reopened ticket starts a new
    /// one; steps of an older generation are skipped).
    Ticket(TicketId, TicketStep, u32),
    VolunteerTick(usize),
    VolunteerShift(usize),
    IncidentArrival,
    Backlog,
    /// The next batch of the standing backlog (so its million tickets leave the simulator a
    /// batch at a time when it is advanced in chunks).
    BacklogMore,
    Drill(usize),
    IncidentMobilize(IncidentId),
    IncidentClose(IncidentId),
    /// The platform acts on an operator's command it accepted (key into `commands`).
    Command(u64),
}

#[derive(Clone, Debug)]
struct SimVolunteer {
    id: VolunteerId,
    team_id: TeamId,
    home: (f64, f64),
    pos: (f64, f64),
    heading: f64,
    on_duty: bool,
    task: Option<Task>,
    target: Option<(f64, f64)>,
    ticking: bool,
}

#[derive(Clone, Debug)]
struct SimTicket {
    pos: LonLat,
    priority: Priority,
    opened_at_ms: TimestampMs,
    sla_ms: i64,
    volunteer: Option<usize>,
    escalated: bool,
    stage: Stage,
    generation: u32,
    supervised: bool,
}

#[derive(Clone, Debug)]
struct SimIncident {
    pos: (f64, f64),
    kind: IncidentKind,
    drill: bool,
}

/// The simulator. See the module docs.
pub struct Simulator {
    county: Arc<County>,
    cfg: SimConfig,
    proj: LocalProjection,
    rng: Rng,
    now_ms: TimestampMs,
    live_from_ms: TimestampMs,
    queue: BinaryHeap<Reverse<(TimestampMs, u64, Action)>>,
    order: u64,
    grid_weights: Vec<f64>,
    grid_worker: HashMap<GridId, String>,
    volunteers: Vec<SimVolunteer>,
    tickets: HashMap<TicketId, SimTicket>,
    incidents: HashMap<IncidentId, SimIncident>,
    next_ticket: TicketId,
    next_incident: IncidentId,
    out: Vec<Event>,
    /// Report times of the standing backlog's tickets not opened yet, newest first.
    backlog_left: Vec<TimestampMs>,
    /// Commands accepted and not yet acted on.
    commands: HashMap<u64, PlatformCommand>,
    next_command: u64,
}

/// Standing-backlog tickets opened per simulator step.
const BACKLOG_BATCH: usize = 10_000;

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

impl Simulator {
    pub fn new(county: Arc<County>, cfg: SimConfig) -> Self {
        let proj = county.pack.projection();
        let rng = Rng::new(cfg.seed);
        let grid_weights = county
            .pack
            .grids
            .iter()
            .map(|g| f64::from(g.households))
            .collect();
        let grid_worker = county
            .pack
            .staff
            .iter()
            .filter(|s| s.role == crate::model::county::StaffRole::GridWorker)
            .map(|s| (s.grid_id, s.name.clone()))
            .collect();
        let mut vrng = rng.fork("volunteers");
        let volunteers = county
            .pack
            .volunteers
            .iter()
            .map(|v| {
                let home = county
                    .grid(v.home_grid_id)
                    .map(|g| proj.metres_from_wgs84(g.label.lon, g.label.lat))
                    .unwrap_or((0.0, 0.0));
                let pos = (
                    home.0 + vrng.range_f64(-150.0, 150.0),
                    home.1 + vrng.range_f64(-150.0, 150.0),
                );
                SimVolunteer {
                    id: v.id,
                    team_id: v.team_id,
                    home,
                    pos,
                    heading: vrng.range_f64(0.0, std::f64::consts::TAU),
                    on_duty: false,
                    task: None,
                    target: None,
                    ticking: false,
                }
            })
            .collect();
        let begin = cfg.start_ms - i64::from(cfg.warmup_hours) * 3_600_000;
        let mut sim = Self {
            county,
            proj,
            rng: rng.fork("events"),
            now_ms: begin,
            live_from_ms: cfg.start_ms,
            queue: BinaryHeap::new(),
            order: 0,
            grid_weights,
            grid_worker,
            volunteers,
            tickets: HashMap::new(),
            incidents: HashMap::new(),
            next_ticket: 1,
            next_incident: 1,
            out: Vec::new(),
            backlog_left: Vec::new(),
            commands: HashMap::new(),
            next_command: 0,
            cfg,
        };
        sim.schedule(begin, Action::TicketArrival);
        sim.schedule(begin, Action::IncidentArrival);
        if sim.cfg.backlog > 0 {
            sim.schedule(begin, Action::Backlog);
        }
        for k in 0..sim.cfg.drills.len() {
            let at = sim.cfg.start_ms + i64::from(sim.cfg.drills[k].0) * 60_000;
            sim.schedule(at, Action::Drill(k));
        }
        // Shifts: about 60 % of volunteers come on duty at the live start, the rest later.
        for i in 0..sim.volunteers.len() {
            let at = if sim.rng.chance(0.6) {
                sim.cfg.start_ms
            } else {
                sim.cfg.start_ms + sim.rng.exp(3.0 * 3_600_000.0) as i64
            };
            sim.schedule(at, Action::VolunteerShift(i));
        }
        sim
    }

    /// Feed time of the last event produced.
    pub fn now_ms(&self) -> TimestampMs {
        self.now_ms
    }

    /// When the first event is due (the start of the warm-up).
    pub fn next_due_ms(&self) -> Option<TimestampMs> {
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }

    fn schedule(&mut self, at_ms: TimestampMs, action: Action) {
        self.order += 1;
        self.queue.push(Reverse((at_ms, self.order, action)));
    }

    /// Every event with `at_ms <= until_ms`, in time order.
    pub fn advance_to(&mut self, until_ms: TimestampMs) -> Vec<Event> {
        let mut all = Vec::new();
        self.advance_in_chunks(until_ms, usize::MAX, |events| all = events);
        all
    }

    /// The events of [`Self::advance_to`], handed to `emit` about `chunk` at a time as they
    /// are made (a city's backlog of a million tickets is never held whole); returns how many.
    pub fn advance_in_chunks(
        &mut self,
        until_ms: TimestampMs,
        chunk: usize,
        mut emit: impl FnMut(Vec<Event>),
    ) -> usize {
        let mut n = 0;
        loop {
            let more = self.step(until_ms);
            if self.out.len() >= chunk.max(1) || (!more && !self.out.is_empty()) {
                let out = std::mem::take(&mut self.out);
                n += out.len();
                emit(out);
            }
            if !more {
                break;
            }
        }
        self.now_ms = self.now_ms.max(until_ms);
        n
    }

    /// Run the next action due at or before `until_ms`; false when none is.
    fn step(&mut self, until_ms: TimestampMs) -> bool {
        match self.queue.peek() {
            Some(Reverse((at, _, _))) if *at <= until_ms => {}
            _ => return false,
        }
        let Some(Reverse((at, _, action))) = self.queue.pop() else {
            return false;
        };
        self.now_ms = at;
        self.run(action);
        true
    }

    /// Next arrival time of a Poisson process of `per_day` whose rate follows the hour
    /// profile (thinning: candidates at the peak rate, kept in proportion to the profile).
    fn next_arrival_ms(&mut self, per_day: f64) -> TimestampMs {
        let peak = HOUR_PROFILE.iter().copied().fold(0.0, f64::max);
        let peak_rate_per_ms = (per_day * self.cfg.scale * peak / 86_400_000.0).max(1e-15);
        let mut t = self.now_ms as f64;
        loop {
            t += self.rng.exp(1.0 / peak_rate_per_ms).max(1.0);
            let hour = ((t as i64 / 3_600_000 + 8) % 24) as usize;
            if self.rng.unit() * peak < HOUR_PROFILE[hour] {
                return t as TimestampMs;
            }
        }
    }

    fn wgs84(&self, p: (f64, f64)) -> LonLat {
        let (lon, lat) = self.proj.wgs84_from_metres(p.0, p.1);
        LonLat::new(round6(lon), round6(lat))
    }

    fn point_in_grid(&mut self, grid: usize) -> LonLat {
        let g = &self.county.pack.grids[grid];
        let Some(r) = g.area.bounding_rect() else {
            return g.label;
        };
        for _ in 0..50 {
            let p = LonLat::new(
                round6(self.rng.range_f64(r.min().x, r.max().x)),
                round6(self.rng.range_f64(r.min().y, r.max().y)),
            );
            if g.area.intersects(&Point::new(p.lon, p.lat)) {
                return p;
            }
        }
        g.label
    }

    fn run(&mut self, action: Action) {
        match action {
            Action::TicketArrival => {
                self.open_ticket();
                let next = self.next_arrival_ms(self.cfg.tickets_per_day);
                self.schedule(next, Action::TicketArrival);
            }
            Action::Ticket(id, step, generation) => {
                if self
                    .tickets
                    .get(&id)
                    .is_some_and(|t| t.generation == generation)
                {
                    self.ticket_step(id, step);
                }
            }
            Action::VolunteerTick(i) => self.volunteer_tick(i),
            Action::VolunteerShift(i) => self.volunteer_shift(i),
            Action::IncidentArrival => {
                if self.now_ms > self.cfg.start_ms - 3 * 3_600_000 {
                    self.open_incident();
                }
                let next = self.next_arrival_ms(self.cfg.incidents_per_day);
                self.schedule(next, Action::IncidentArrival);
            }
            Action::Backlog => {
                let mut times: Vec<TimestampMs> = (0..self.cfg.backlog)
                    .map(|_| self.now_ms - self.rng.range_f64(0.0, 72.0 * 3_600_000.0) as i64)
                    .collect();
                // Newest first, so the oldest is taken from the end.
                times.sort_unstable_by(|a, b| b.cmp(a));
                self.backlog_left = times;
                self.run(Action::BacklogMore);
            }
            Action::BacklogMore => {
                // Oldest first, so the feed reads like the ticket system's own history. The
                // next batch is due at this same moment, after what was already due then.
                for _ in 0..BACKLOG_BATCH {
                    let Some(at) = self.backlog_left.pop() else {
                        break;
                    };
                    self.open_ticket_at(at, false);
                }
                if self.backlog_left.is_empty() {
                    self.backlog_left = Vec::new();
                } else {
                    self.schedule(self.now_ms, Action::BacklogMore);
                }
            }
            Action::Drill(k) => {
                let name = self.cfg.drills[k].1.clone();
                let grid = self.county.pack.grids.iter().position(|g| {
                    self.county
                        .pack
                        .community(g.community_code)
                        .is_some_and(|c| c.display_name == name || c.name == name)
                });
                match grid {
                    Some(g) => self.open_incident_at(g, IncidentKind::Fire, true),
                    None => {
                        tracing::warn!(target: "datawall::sim", "drill community {name} is not in the pack")
                    }
                }
            }
            Action::IncidentMobilize(id) => self.mobilize(id),
            Action::IncidentClose(id) => self.close_incident(id),
            Action::Command(k) => {
                if let Some(cmd) = self.commands.remove(&k)
                    && let Err(e) = self.act(&cmd)
                {
                    tracing::info!(target: "datawall::sim", "the platform could not act on {}: {e}", cmd.command_id);
                }
            }
        }
    }

    fn open_ticket(&mut self) {
        self.open_ticket_at(self.now_ms, true);
    }

    /// Open a ticket reported at `at_ms`; a standing-backlog ticket (`live` false) is filed
    /// and never progresses (load tests: work waiting on other departments).
    fn open_ticket_at(&mut self, at_ms: TimestampMs, live: bool) {
        let grid = self.rng.weighted_index(&self.grid_weights);
        let grid_id = self.county.pack.grids[grid].id;
        let pos = self.point_in_grid(grid);
        let category = TicketCategory::ALL[self
            .rng
            .weighted_index(&[35.0, 15.0, 12.0, 8.0, 18.0, 12.0])];
        let source = TicketSource::ALL[self.rng.weighted_index(&[55.0, 20.0, 20.0, 5.0])];
        let priority = Priority::ALL[self.rng.weighted_index(&[20.0, 55.0, 20.0, 5.0])];
        let sla_ms: i64 = match priority {
            Priority::Urgent => 2 * 3_600_000,
            Priority::High => 8 * 3_600_000,
            Priority::Normal => 24 * 3_600_000,
            Priority::Low => 72 * 3_600_000,
        };
        let summary = SUMMARIES
            .iter()
            .find(|(c, _)| *c == category)
            .map(|(_, s)| s[self.rng.index(s.len())].to_owned())
            .unwrap_or_default();
        let responsible_party =
            matches!(category, TicketCategory::Property | TicketCategory::Repair).then(|| {
                [
                    "物业服务企业",
                    "业主委员会",
                    "社区托管（无物业小区）",
                    "红色物业理事会",
                ][self.rng.weighted_index(&[60.0, 20.0, 10.0, 10.0])]
                .to_owned()
            });
        let id = self.next_ticket;
        self.next_ticket += 1;
        self.out.push(Event::TicketOpened(TicketOpened {
            ticket_id: id,
            at_ms,
            category,
            source,
            priority,
            pos,
            grid_id: Some(grid_id),
            sla_deadline_ms: at_ms + sla_ms,
            summary,
            responsible_party,
        }));
        if !live {
            return;
        }
        self.tickets.insert(
            id,
            SimTicket {
                pos,
                priority,
                opened_at_ms: self.now_ms,
                sla_ms,
                volunteer: None,
                escalated: false,
                stage: Stage::Opened,
                generation: 0,
                supervised: false,
            },
        );
        self.schedule(at_ms + sla_ms, Action::Ticket(id, TicketStep::Escalate, 0));
        let delay = if source == TicketSource::Patrol {
            self.rng.range_f64(5_000.0, 60_000.0)
        } else {
            self.rng.exp(4.0 * 60_000.0) + 20_000.0
        };
        self.schedule(
            self.now_ms + delay as i64,
            Action::Ticket(id, TicketStep::Dispatch, 0),
        );
    }

    /// An available on-duty volunteer near `pos` (help tickets), if any within 1.5 km.
    fn nearby_available(&mut self, pos: (f64, f64)) -> Option<usize> {
        self.volunteers
            .iter()
            .enumerate()
            .filter(|(_, v)| v.on_duty && v.task.is_none())
            .map(|(i, v)| (i, (v.pos.0 - pos.0).hypot(v.pos.1 - pos.1)))
            .filter(|(_, d)| *d < 1_500.0)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }

    fn ticket_step(&mut self, id: TicketId, step: TicketStep) {
        let Some(t) = self.tickets.get(&id).cloned() else {
            return;
        };
        let now = self.now_ms;
        let at_stage = |stages: &[Stage]| stages.contains(&t.stage);
        let sched = |sim: &mut Self, at: TimestampMs, step| {
            sim.schedule(at, Action::Ticket(id, step, t.generation));
        };
        match step {
            TicketStep::Dispatch if !at_stage(&[Stage::Opened]) => {}
            TicketStep::OnSite if !at_stage(&[Stage::Dispatched]) => {}
            TicketStep::Escalate if at_stage(&[Stage::Resolved]) || t.escalated => {}
            TicketStep::Resolve if at_stage(&[Stage::Resolved]) => {}
            TicketStep::Rate | TicketStep::Reopen if !at_stage(&[Stage::Resolved]) => {}
            TicketStep::Dispatch => {
                let grid_id = self.county.index.grid_at(t.pos);
                let worker = grid_id
                    .and_then(|g| self.grid_worker.get(&g).cloned())
                    .unwrap_or_else(|| "社区值班员".to_owned());
                let here = self.proj.metres_from_wgs84(t.pos.lon, t.pos.lat);
                let volunteer = if now >= self.live_from_ms && self.rng.chance(0.25) {
                    self.nearby_available(here)
                } else {
                    None
                };
                let (assignee, volunteer_id) = match volunteer {
                    Some(i) => {
                        let (assignee, _) = self.send_volunteer(i, id, here);
                        (assignee, Some(self.volunteers[i].id))
                    }
                    None => (format!("网格员 {worker}"), None),
                };
                if let Some(tk) = self.tickets.get_mut(&id) {
                    tk.volunteer = volunteer;
                    tk.stage = Stage::Dispatched;
                }
                self.out.push(Event::TicketDispatched(TicketDispatched {
                    ticket_id: id,
                    at_ms: now,
                    assignee,
                    volunteer_id,
                    command_id: None,
                }));
                let mean = if t.priority >= Priority::High {
                    15.0
                } else {
                    35.0
                };
                let delay = self.rng.exp(mean * 60_000.0) + 5.0 * 60_000.0;
                sched(self, now + delay as i64, TicketStep::OnSite);
            }
            TicketStep::OnSite => {
                self.out.push(Event::TicketOnSite(TicketOnSite {
                    ticket_id: id,
                    at_ms: now,
                }));
                if let Some(tk) = self.tickets.get_mut(&id) {
                    tk.stage = Stage::OnSite;
                }
                // Resolution lands around 45 % of the time limit; some breach it. A
                // supervised (督办) ticket gets its responsible party's attention: half that.
                let mut fraction = (0.45 * (0.55 * self.rng.normal()).exp()).min(2.5);
                if t.supervised {
                    fraction *= 0.5;
                }
                let due = t.opened_at_ms + (fraction * t.sla_ms as f64) as i64;
                sched(self, due.max(now + 5 * 60_000), TicketStep::Resolve);
            }
            TicketStep::Escalate => {
                // Escalated because it breached its time limit, to the town's office.
                self.out.push(Event::TicketEscalated(TicketEscalated {
                    ticket_id: id,
                    at_ms: now,
                    reason: "超过办理时限，升级至街道/镇督办".into(),
                    sla_deadline_ms: None,
                }));
                if let Some(tk) = self.tickets.get_mut(&id) {
                    tk.escalated = true;
                }
            }
            TicketStep::Resolve => {
                self.out.push(Event::TicketResolved(TicketResolved {
                    ticket_id: id,
                    at_ms: now,
                    satisfaction: None,
                }));
                if let Some(i) = t.volunteer {
                    self.release_volunteer(i);
                }
                if let Some(tk) = self.tickets.get_mut(&id) {
                    tk.volunteer = None;
                    tk.stage = Stage::Resolved;
                }
                if self.rng.chance(0.03) {
                    // Within the day a resolved ticket stays in the live model.
                    let d = (self.rng.exp(6.0 * 3_600_000.0) as i64 + 600_000)
                        .min(crate::model::state::RESOLVED_RETENTION_MS - 3_600_000);
                    sched(self, now + d, TicketStep::Reopen);
                } else if self.rng.chance(0.7) {
                    let d = self.rng.exp(30.0 * 60_000.0) as i64 + 60_000;
                    sched(self, now + d, TicketStep::Rate);
                } else {
                    self.tickets.remove(&id);
                }
            }
            TicketStep::Rate => {
                let satisfaction =
                    [5, 4, 3, 2, 1][self.rng.weighted_index(&[55.0, 30.0, 10.0, 3.0, 2.0])];
                self.out.push(Event::TicketRated(TicketRated {
                    ticket_id: id,
                    at_ms: now,
                    satisfaction,
                }));
                self.tickets.remove(&id);
            }
            TicketStep::Reopen => {
                self.out.push(Event::TicketReopened(TicketReopened {
                    ticket_id: id,
                    at_ms: now,
                    reason: "居民反映问题未解决".into(),
                    sla_deadline_ms: now + t.sla_ms,
                }));
                let generation = t.generation + 1;
                if let Some(tk) = self.tickets.get_mut(&id) {
                    tk.opened_at_ms = now;
                    tk.stage = Stage::Opened;
                    tk.escalated = false;
                    tk.supervised = false;
                    tk.generation = generation;
                }
                let d = self.rng.exp(10.0 * 60_000.0) as i64 + 60_000;
                self.schedule(
                    now + d,
                    Action::Ticket(id, TicketStep::Dispatch, generation),
                );
                self.schedule(
                    now + t.sla_ms,
                    Action::Ticket(id, TicketStep::Escalate, generation),
                );
            }
        }
    }

    /// Send volunteer `i` to ticket `id` at `here` (metres): responding, heading there.
    /// Returns how the ticket names the assignee and the distance to go.
    fn send_volunteer(&mut self, i: usize, id: TicketId, here: (f64, f64)) -> (String, f64) {
        let now = self.now_ms;
        let v = &mut self.volunteers[i];
        v.task = Some(Task::Ticket(id));
        v.target = Some(here);
        let (vid, distance) = (v.id, (v.pos.0 - here.0).hypot(v.pos.1 - here.1));
        self.out
            .push(Event::VolunteerStatus(VolunteerStatusChanged {
                volunteer_id: vid,
                at_ms: now,
                status: VolunteerStatus::Responding,
                task: Some(Task::Ticket(id)),
            }));
        let name = self
            .county
            .pack
            .volunteers
            .iter()
            .find(|r| r.id == vid)
            .map_or_else(|| format!("志愿者{vid}"), |r| r.name.clone());
        (format!("志愿者 {name}"), distance)
    }

    fn release_volunteer(&mut self, i: usize) {
        let now = self.now_ms;
        let v = &mut self.volunteers[i];
        v.task = None;
        v.target = None;
        let status = if v.on_duty {
            VolunteerStatus::Available
        } else {
            VolunteerStatus::OffDuty
        };
        self.out
            .push(Event::VolunteerStatus(VolunteerStatusChanged {
                volunteer_id: v.id,
                at_ms: now,
                status,
                task: None,
            }));
    }

    fn volunteer_shift(&mut self, i: usize) {
        let now = self.now_ms;
        let v = &mut self.volunteers[i];
        if v.task.is_some() {
            // Finish the task first; try again later.
            self.schedule(now + 15 * 60_000, Action::VolunteerShift(i));
            return;
        }
        v.on_duty = !v.on_duty;
        let status = if v.on_duty {
            VolunteerStatus::Available
        } else {
            VolunteerStatus::OffDuty
        };
        let id = v.id;
        let start_ticking = v.on_duty && !v.ticking;
        if start_ticking {
            v.ticking = true;
        }
        self.out
            .push(Event::VolunteerStatus(VolunteerStatusChanged {
                volunteer_id: id,
                at_ms: now,
                status,
                task: None,
            }));
        if start_ticking {
            let offset = self.rng.range_f64(0.0, self.cfg.fix_interval_ms as f64) as i64;
            self.schedule(now + offset, Action::VolunteerTick(i));
        }
        let mean_shift = if self.volunteers[i].on_duty { 4.0 } else { 6.0 };
        let d = self.rng.exp(mean_shift * 3_600_000.0) as i64 + 30 * 60_000;
        self.schedule(now + d, Action::VolunteerShift(i));
    }

    fn volunteer_tick(&mut self, i: usize) {
        let now = self.now_ms;
        let dt_s = self.cfg.fix_interval_ms as f64 / 1000.0;
        if !self.volunteers[i].on_duty && self.volunteers[i].task.is_none() {
            self.volunteers[i].ticking = false;
            return;
        }
        let turn = self.rng.range_f64(-0.5, 0.5);
        let jitter = self.rng.range_f64(0.8, 1.2);
        let v = &mut self.volunteers[i];
        let (nx, ny) = match v.target {
            Some(t) => {
                // Cycling to the task at about 4.5 m/s.
                let (dx, dy) = (t.0 - v.pos.0, t.1 - v.pos.1);
                let d = dx.hypot(dy);
                let step = 4.5 * dt_s * jitter;
                if d <= step {
                    t
                } else {
                    (v.pos.0 + dx / d * step, v.pos.1 + dy / d * step)
                }
            }
            None => {
                // Walking about the home grid, drawn back when more than 400 m away.
                let (hx, hy) = (v.home.0 - v.pos.0, v.home.1 - v.pos.1);
                let home_heading = hy.atan2(hx);
                v.heading += turn;
                if hx.hypot(hy) > 400.0 {
                    v.heading = home_heading + turn * 0.3;
                }
                let step = 1.2 * dt_s * jitter;
                (
                    v.pos.0 + v.heading.cos() * step,
                    v.pos.1 + v.heading.sin() * step,
                )
            }
        };
        let (lon, lat) = self.proj.wgs84_from_metres(nx, ny);
        let candidate = LonLat::new(round6(lon), round6(lat));
        let v = &mut self.volunteers[i];
        if self.county.mask.contains(candidate) {
            v.pos = (nx, ny);
        } else {
            v.heading += std::f64::consts::PI;
        }
        let pos = self.wgs84(self.volunteers[i].pos);
        // No fixes during the warm-up: it exists only to build a ticket backlog.
        if now >= self.live_from_ms && self.county.mask.contains(pos) {
            self.out.push(Event::VolunteerFix(VolunteerFix {
                volunteer_id: self.volunteers[i].id,
                at_ms: now,
                pos,
            }));
        }
        let jitter_ms = self.rng.range_f64(-0.05, 0.05) * self.cfg.fix_interval_ms as f64;
        self.schedule(
            now + self.cfg.fix_interval_ms + jitter_ms as i64,
            Action::VolunteerTick(i),
        );
    }

    fn open_incident(&mut self) {
        let grid = self.rng.weighted_index(&self.grid_weights);
        let kind = IncidentKind::ALL[self.rng.weighted_index(&[20.0, 30.0, 10.0, 30.0, 10.0])];
        let drill = kind == IncidentKind::Fire && self.rng.chance(0.3);
        self.open_incident_at(grid, kind, drill);
    }

    fn open_incident_at(&mut self, grid: usize, kind: IncidentKind, drill: bool) {
        let pos = self.point_in_grid(grid);
        let severity = if drill {
            Severity::Moderate
        } else {
            [
                Severity::Minor,
                Severity::Moderate,
                Severity::Serious,
                Severity::Major,
            ][self.rng.weighted_index(&[35.0, 40.0, 20.0, 5.0])]
        };
        let target_secs = match kind {
            IncidentKind::Fire => 900,
            IncidentKind::BurstPipe => 3_600,
            IncidentKind::Flood => 7_200,
            IncidentKind::Medical => 1_200,
            IncidentKind::PublicHealth => 5_400,
        };
        let community = self
            .county
            .community_of_grid(self.county.pack.grids[grid].id)
            .map(|c| c.display_name.clone())
            .unwrap_or_default();
        let title = if drill {
            format!("{community}消防演练")
        } else {
            format!("{community}{}", kind.label_zh())
        };
        let id = self.next_incident;
        self.next_incident += 1;
        self.out.push(Event::IncidentOpened(IncidentOpened {
            incident_id: id,
            at_ms: self.now_ms,
            kind,
            severity,
            pos,
            title,
            drill,
            target_secs,
        }));
        self.incidents.insert(
            id,
            SimIncident {
                pos: self.proj.metres_from_wgs84(pos.lon, pos.lat),
                kind,
                drill,
            },
        );
        let d = self.rng.range_f64(40_000.0, 150_000.0) as i64;
        self.schedule(self.now_ms + d, Action::IncidentMobilize(id));
        let spread = 0.85 * (0.3 * self.rng.normal()).exp();
        // A drill is run to finish within its target (the report's: fire out in 15 minutes).
        let spread = if drill {
            spread.clamp(0.6, 0.97)
        } else {
            spread
        };
        let close = (f64::from(target_secs) * 1000.0 * spread) as i64;
        self.schedule(self.now_ms + close.max(300_000), Action::IncidentClose(id));
    }

    fn mobilize(&mut self, id: IncidentId) {
        let Some(inc) = self.incidents.get(&id).cloned() else {
            return;
        };
        let n_teams = match inc.kind {
            IncidentKind::Fire | IncidentKind::Flood => 3,
            IncidentKind::BurstPipe | IncidentKind::PublicHealth => 2,
            IncidentKind::Medical => 1,
        };
        let mut teams: Vec<(f64, TeamId)> = self
            .county
            .pack
            .teams
            .iter()
            .filter_map(|t| {
                let g = self.county.grid(t.home_grid_id)?;
                let p = self.proj.metres_from_wgs84(g.label.lon, g.label.lat);
                Some(((p.0 - inc.pos.0).hypot(p.1 - inc.pos.1), t.id))
            })
            .collect();
        teams.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let team_ids: Vec<TeamId> = teams.iter().take(n_teams).map(|(_, t)| *t).collect();
        self.send_teams(id, &inc, team_ids, None);
    }

    /// Mobilize `team_ids` to incident `id`: its on-duty, free members head to the site.
    fn send_teams(
        &mut self,
        id: IncidentId,
        inc: &SimIncident,
        team_ids: Vec<TeamId>,
        command_id: Option<String>,
    ) {
        self.out.push(Event::IncidentMobilized(IncidentMobilized {
            incident_id: id,
            at_ms: self.now_ms,
            team_ids: team_ids.clone(),
            command_id,
        }));
        let now = self.now_ms;
        for v in &mut self.volunteers {
            if team_ids.contains(&v.team_id) && v.on_duty && v.task.is_none() {
                v.task = Some(Task::Incident(id));
                v.target = Some((
                    inc.pos.0 + (v.id % 7) as f64 * 3.0,
                    inc.pos.1 + (v.id % 5) as f64 * 3.0,
                ));
                self.out
                    .push(Event::VolunteerStatus(VolunteerStatusChanged {
                        volunteer_id: v.id,
                        at_ms: now,
                        status: VolunteerStatus::Responding,
                        task: Some(Task::Incident(id)),
                    }));
            }
        }
    }

    /// Take an operator's command as the county's platform would: checked now (an error says
    /// why it cannot act, and nothing will happen), acted on after the platform's handling
    /// time ([`PLATFORM_HANDLING_MS`]); the answering events carry `command_id`.
    pub fn command(&mut self, cmd: &PlatformCommand) -> Result<(), String> {
        self.check(cmd)?;
        let (lo, hi) = match cmd.command {
            Command::TicketSupervise { .. } => PLATFORM_HANDLING_MS.0,
            _ => PLATFORM_HANDLING_MS.1,
        };
        let delay = self.rng.range_f64(lo as f64, hi as f64) as i64;
        self.next_command += 1;
        self.commands.insert(self.next_command, cmd.clone());
        self.schedule(self.now_ms + delay, Action::Command(self.next_command));
        Ok(())
    }

    /// Whether the platform can act on `cmd` now.
    fn check(&self, cmd: &PlatformCommand) -> Result<(), String> {
        match &cmd.command {
            Command::TicketSupervise { ticket_id, .. } => match self.tickets.get(ticket_id) {
                Some(t) if t.stage == Stage::Resolved => {
                    Err(format!("ticket {ticket_id} is resolved already"))
                }
                _ => Ok(()),
            },
            Command::TicketAssign {
                ticket_id,
                volunteer_id,
            } => {
                let t = self.tickets.get(ticket_id).ok_or_else(|| {
                    format!("ticket {ticket_id} is not one the platform is working (standing backlog or unknown)")
                })?;
                if !matches!(t.stage, Stage::Opened | Stage::Dispatched) {
                    return Err(format!(
                        "ticket {ticket_id} is past dispatch (someone is on site or it is resolved)"
                    ));
                }
                match self.volunteers.iter().find(|v| v.id == *volunteer_id) {
                    None => Err(format!("volunteer {volunteer_id} is not on the roster")),
                    Some(v) if !v.on_duty || v.task.is_some() => Err(format!(
                        "volunteer {volunteer_id} is not available (off duty or on a task)"
                    )),
                    Some(_) => Ok(()),
                }
            }
            Command::IncidentDispatch { incident_id, .. } => {
                if self.incidents.contains_key(incident_id) {
                    Ok(())
                } else {
                    Err(format!(
                        "incident {incident_id} is not open at the platform"
                    ))
                }
            }
            Command::AlertAck { .. }
            | Command::AnnotationAdd { .. }
            | Command::AnnotationRemove { .. } => {
                Err("alerts and notes are handled by the gateway, not the platform".into())
            }
        }
    }

    /// Carry out a command (after the handling time).
    fn act(&mut self, cmd: &PlatformCommand) -> Result<(), String> {
        self.check(cmd)?;
        let now = self.now_ms;
        match &cmd.command {
            Command::TicketSupervise { ticket_id, note } => {
                let id = *ticket_id;
                let tracked = self.tickets.get(&id).cloned();
                let pushed_to = tracked.as_ref().map(|t| {
                    self.county
                        .index
                        .grid_at(t.pos)
                        .and_then(|g| self.grid_worker.get(&g).cloned())
                        .map_or_else(|| "社区值班员".to_owned(), |w| format!("网格员 {w}"))
                });
                if tracked.as_ref().is_some_and(|t| t.stage == Stage::Resolved) {
                    return Err(format!("ticket {id} is resolved already"));
                }
                self.out.push(Event::TicketSupervised(TicketSupervised {
                    ticket_id: id,
                    at_ms: now,
                    by: cmd.by.clone(),
                    note: note.clone(),
                    pushed_to,
                    command_id: Some(cmd.command_id.clone()),
                }));
                // Pushed to the responsible party: the next step comes sooner.
                if let Some(t) = tracked {
                    let (step, delay) = match t.stage {
                        Stage::Opened => (TicketStep::Dispatch, self.rng.exp(60_000.0) + 30_000.0),
                        Stage::Dispatched => {
                            (TicketStep::OnSite, self.rng.exp(5.0 * 60_000.0) + 120_000.0)
                        }
                        _ => (
                            TicketStep::Resolve,
                            self.rng.exp(15.0 * 60_000.0) + 180_000.0,
                        ),
                    };
                    if let Some(tk) = self.tickets.get_mut(&id) {
                        tk.supervised = true;
                    }
                    self.schedule(now + delay as i64, Action::Ticket(id, step, t.generation));
                }
                Ok(())
            }
            Command::TicketAssign {
                ticket_id,
                volunteer_id,
            } => {
                let id = *ticket_id;
                let t = self.tickets.get(&id).cloned().ok_or_else(|| {
                    format!("ticket {id} is not one the platform is working (standing backlog or unknown)")
                })?;
                if !matches!(t.stage, Stage::Opened | Stage::Dispatched) {
                    return Err(format!(
                        "ticket {id} is past dispatch (someone is on site or it is resolved)"
                    ));
                }
                let i = self
                    .volunteers
                    .iter()
                    .position(|v| v.id == *volunteer_id)
                    .ok_or_else(|| format!("volunteer {volunteer_id} is not on the roster"))?;
                if !self.volunteers[i].on_duty || self.volunteers[i].task.is_some() {
                    return Err(format!(
                        "volunteer {volunteer_id} is not available (off duty or on a task)"
                    ));
                }
                if let Some(prev) = t.volunteer {
                    self.release_volunteer(prev);
                }
                let here = self.proj.metres_from_wgs84(t.pos.lon, t.pos.lat);
                let (assignee, distance) = self.send_volunteer(i, id, here);
                self.out.push(Event::TicketDispatched(TicketDispatched {
                    ticket_id: id,
                    at_ms: now,
                    assignee,
                    volunteer_id: Some(*volunteer_id),
                    command_id: Some(cmd.command_id.clone()),
                }));
                if let Some(tk) = self.tickets.get_mut(&id) {
                    tk.volunteer = Some(i);
                    tk.stage = Stage::Dispatched;
                }
                // Cycling at about 4.5 m/s, and a minute to find the door.
                let travel = (distance / 4.5 * 1000.0) as i64 + 60_000;
                self.schedule(
                    now + travel,
                    Action::Ticket(id, TicketStep::OnSite, t.generation),
                );
                Ok(())
            }
            Command::IncidentDispatch {
                incident_id,
                team_ids,
            } => {
                let inc =
                    self.incidents.get(incident_id).cloned().ok_or_else(|| {
                        format!("incident {incident_id} is not open at the platform")
                    })?;
                self.send_teams(
                    *incident_id,
                    &inc,
                    team_ids.clone(),
                    Some(cmd.command_id.clone()),
                );
                Ok(())
            }
            Command::AlertAck { .. }
            | Command::AnnotationAdd { .. }
            | Command::AnnotationRemove { .. } => {
                Err("alerts and notes are handled by the gateway, not the platform".into())
            }
        }
    }

    fn close_incident(&mut self, id: IncidentId) {
        let Some(inc) = self.incidents.remove(&id) else {
            return;
        };
        let outcome = if inc.drill {
            IncidentOutcome::DrillCompleted
        } else if self.rng.chance(0.05) {
            IncidentOutcome::FalseAlarm
        } else {
            IncidentOutcome::Resolved
        };
        self.out.push(Event::IncidentClosed(IncidentClosed {
            incident_id: id,
            at_ms: self.now_ms,
            outcome,
        }));
        let responders: Vec<usize> = self
            .volunteers
            .iter()
            .enumerate()
            .filter(|(_, v)| v.task == Some(Task::Incident(id)))
            .map(|(i, _)| i)
            .collect();
        for i in responders {
            self.release_volunteer(i);
        }
    }
}
