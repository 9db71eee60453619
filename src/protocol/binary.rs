//! The binary messages of the feed: what a client that connects with `format=binary` receives
//! in place of each `snapshot_chunk` and each `delta` JSON message (the `snapshot_begin` and
//! `snapshot_end`, heartbeats and the rest stay JSON). The delta's layout is at
//! [`encode_delta`]; the snapshot chunk's follows.
//!
//! A snapshot chunk has the JSON chunk's content in a fifth of the bytes, decoded without a
//! parser: tickets and volunteers are fixed fields, varints and deltas; the strings of a chunk
//! are written once each in a table the tickets index. See `docs/PROTOCOL.md`, "Binary
//! snapshot" and "Binary delta".
//!
//! Layout, little-endian; `v` is an unsigned LEB128 varint, `z` a zigzag-encoded signed one:
//!
//! ```text
//! "DWB1" kind:u8=1 epoch:v seq:v part:v
//! strings:v { len:v utf8 }*
//! tickets:v { id:Δv b0:u8 status:u8 flags:u8 lon:f64 lat:f64 [grid:v] opened:Δz sla:Δz
//!             [assignee:v] [volunteer:v] [satisfaction:u8] summary:v [party:v]
//!             [supervised:Δz] steps:v { status:u8 at:Δz }* }*
//! volunteers:v { id:v team:v status:u8 flags:u8 [lon:f64 lat:f64] [grid:v] [fix:z] last:z
//!                [task:v] }*
//! rest:v utf8-JSON {"incidents":[…],"alerts":[…],"annotations":[…]}
//! ```
//!
//! Ticket ids are deltas from the previous ticket's id (tickets go in increasing id), opening
//! times deltas from the previous ticket's, deadlines and the supervision time deltas from the
//! ticket's opening, each step's time a delta from the step before it. Incidents, alerts and
//! notes are few; they ride as JSON inside the chunk. A decoder refuses anything it cannot
//! read whole: a short or long message, an unknown code, a string index out of the table, a
//! count larger than the bytes left could hold.

use std::collections::HashMap;

use super::entities::{
    Alert, Annotation, Incident, Text, Ticket, TicketStatus, TicketStep, Volunteer,
};
use super::session::{Delta, Epoch, Seq, SnapshotChunk};
use super::{
    Event, LonLat, Priority, Task, TicketCategory, TicketSource, VolunteerFix, VolunteerStatus,
};

/// First bytes of every binary message of the feed.
pub const MAGIC: &[u8; 4] = b"DWB1";
/// The kind byte of a snapshot chunk.
pub const KIND_SNAPSHOT_CHUNK: u8 = 1;

/// Why a binary message could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("binary {of}, byte {at}: {what}")]
pub struct BinaryError {
    /// What was being read: "snapshot chunk" or "delta".
    pub of: &'static str,
    pub at: usize,
    pub what: String,
}

/// What a chunk holds besides its tickets: the first chunk of a snapshot carries these.
#[derive(Clone, Copy, Default)]
pub struct Others<'a> {
    pub volunteers: &'a [Volunteer],
    pub incidents: &'a [Incident],
    pub alerts: &'a [Alert],
    pub annotations: &'a [Annotation],
}

#[derive(serde::Serialize)]
struct RestOut<'a> {
    incidents: &'a [Incident],
    alerts: &'a [Alert],
    annotations: &'a [Annotation],
}

#[derive(serde::Deserialize)]
struct RestIn {
    #[serde(default)]
    incidents: Vec<Incident>,
    #[serde(default)]
    alerts: Vec<Alert>,
    #[serde(default)]
    annotations: Vec<Annotation>,
}

// Ticket flags.
const T_GRID: u8 = 1;
const T_ASSIGNEE: u8 = 2;
const T_VOLUNTEER: u8 = 4;
const T_SATISFACTION: u8 = 8;
const T_PARTY: u8 = 16;
const T_SUPERVISED: u8 = 32;
// Volunteer flags.
const V_POS: u8 = 1;
const V_GRID: u8 = 2;
const V_FIX: u8 = 4;
const V_TASK_TICKET: u8 = 8;
const V_TASK_INCIDENT: u8 = 16;

const TICKET_STATUSES: [TicketStatus; 6] = [
    TicketStatus::Opened,
    TicketStatus::Dispatched,
    TicketStatus::OnSite,
    TicketStatus::Resolved,
    TicketStatus::Escalated,
    TicketStatus::Reopened,
];
const VOLUNTEER_STATUSES: [VolunteerStatus; 3] = [
    VolunteerStatus::Available,
    VolunteerStatus::Responding,
    VolunteerStatus::OffDuty,
];

fn code_of<T: PartialEq + Copy>(all: &[T], v: T) -> u8 {
    all.iter().position(|x| *x == v).unwrap_or(0) as u8
}

struct Out {
    buf: Vec<u8>,
}

impl Out {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn v(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }
    fn z(&mut self, v: i64) {
        self.v(((v << 1) ^ (v >> 63)) as u64);
    }
    fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.v(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
}

/// The strings of a chunk, each once.
#[derive(Default)]
struct Table<'a> {
    index: HashMap<&'a str, u32>,
    order: Vec<&'a str>,
}

impl<'a> Table<'a> {
    fn id(&mut self, s: &'a str) -> u32 {
        let next = self.order.len() as u32;
        *self.index.entry(s).or_insert_with(|| {
            self.order.push(s);
            next
        })
    }
}

/// Encode one snapshot chunk: `tickets` in increasing id (as the hub sorts them).
pub fn encode_chunk(
    epoch: Epoch,
    seq: Seq,
    part: usize,
    tickets: &[&Ticket],
    others: Others<'_>,
) -> Vec<u8> {
    let mut table = Table::default();
    let refs: Vec<[u32; 3]> = tickets
        .iter()
        .map(|t| {
            [
                t.assignee.as_deref().map_or(0, |s| table.id(s)),
                table.id(&t.summary),
                t.responsible_party.as_deref().map_or(0, |s| table.id(s)),
            ]
        })
        .collect();
    let strings: usize = table.order.iter().map(|s| s.len() + 2).sum();
    let mut o = Out {
        // About 32 bytes a ticket and 30 a volunteer; what is left over is given back below.
        buf: Vec::with_capacity(64 + strings + tickets.len() * 40 + others.volunteers.len() * 36),
    };
    o.buf.extend_from_slice(MAGIC);
    o.u8(KIND_SNAPSHOT_CHUNK);
    o.v(epoch);
    o.v(seq);
    o.v(part as u64);
    o.v(table.order.len() as u64);
    for s in &table.order {
        o.bytes(s.as_bytes());
    }
    o.v(tickets.len() as u64);
    let (mut prev_id, mut prev_opened) = (0u64, 0i64);
    for (t, [assignee, summary, party]) in tickets.iter().zip(refs) {
        o.v(t.id.wrapping_sub(prev_id));
        prev_id = t.id;
        o.u8(code_of(&TicketCategory::ALL, t.category)
            | code_of(&TicketSource::ALL, t.source) << 3
            | code_of(&Priority::ALL, t.priority) << 5);
        o.u8(code_of(&TICKET_STATUSES, t.status));
        let mut flags = 0;
        for (set, bit) in [
            (t.grid_id.is_some(), T_GRID),
            (t.assignee.is_some(), T_ASSIGNEE),
            (t.volunteer_id.is_some(), T_VOLUNTEER),
            (t.satisfaction.is_some(), T_SATISFACTION),
            (t.responsible_party.is_some(), T_PARTY),
            (t.supervised_at_ms.is_some(), T_SUPERVISED),
        ] {
            if set {
                flags |= bit;
            }
        }
        o.u8(flags);
        o.f64(t.pos.lon);
        o.f64(t.pos.lat);
        if let Some(g) = t.grid_id {
            o.v(g.into());
        }
        o.z(t.opened_at_ms.wrapping_sub(prev_opened));
        prev_opened = t.opened_at_ms;
        o.z(t.sla_deadline_ms.wrapping_sub(t.opened_at_ms));
        if t.assignee.is_some() {
            o.v(assignee.into());
        }
        if let Some(v) = t.volunteer_id {
            o.v(v.into());
        }
        if let Some(s) = t.satisfaction {
            o.u8(s);
        }
        o.v(summary.into());
        if t.responsible_party.is_some() {
            o.v(party.into());
        }
        if let Some(s) = t.supervised_at_ms.get() {
            o.z(s.wrapping_sub(t.opened_at_ms));
        }
        o.v(t.steps.len() as u64);
        let mut at = t.opened_at_ms;
        for s in &t.steps {
            o.u8(code_of(&TICKET_STATUSES, s.status));
            o.z(s.at_ms.wrapping_sub(at));
            at = s.at_ms;
        }
    }
    o.v(others.volunteers.len() as u64);
    for v in others.volunteers {
        o.v(v.id.into());
        o.v(v.team_id.into());
        o.u8(code_of(&VOLUNTEER_STATUSES, v.status));
        let mut flags = 0;
        if v.pos.is_some() {
            flags |= V_POS;
        }
        if v.grid_id.is_some() {
            flags |= V_GRID;
        }
        if v.last_fix_ms.is_some() {
            flags |= V_FIX;
        }
        match v.task {
            Some(Task::Ticket(_)) => flags |= V_TASK_TICKET,
            Some(Task::Incident(_)) => flags |= V_TASK_INCIDENT,
            None => {}
        }
        o.u8(flags);
        if let Some(p) = v.pos {
            o.f64(p.lon);
            o.f64(p.lat);
        }
        if let Some(g) = v.grid_id {
            o.v(g.into());
        }
        if let Some(f) = v.last_fix_ms {
            o.z(f);
        }
        o.z(v.last_at_ms);
        match v.task {
            Some(Task::Ticket(id) | Task::Incident(id)) => o.v(id),
            None => {}
        }
    }
    let rest = serde_json::to_vec(&RestOut {
        incidents: others.incidents,
        alerts: others.alerts,
        annotations: others.annotations,
    })
    .unwrap_or_else(|_| b"{}".to_vec());
    o.bytes(&rest);
    o.buf.shrink_to_fit();
    o.buf
}

struct In<'b> {
    b: &'b [u8],
    at: usize,
    of: &'static str,
}

impl<'b> In<'b> {
    /// A reader past the magic and kind of a message of `kind`.
    fn start(b: &'b [u8], kind: u8, of: &'static str) -> Result<Self, BinaryError> {
        let mut r = In { b, at: 0, of };
        if b.get(..4) != Some(MAGIC.as_slice()) {
            return r.err("not a Datawall binary message (it does not start with DWB1)");
        }
        r.at = 4;
        let k = r.u8()?;
        if k != kind {
            return r.err(format!("kind {k} is not a {of} ({kind})"));
        }
        Ok(r)
    }

    /// Refuse bytes after the message's end.
    fn end(&self) -> Result<(), BinaryError> {
        if self.at == self.b.len() {
            return Ok(());
        }
        self.err(format!(
            "{} bytes after the end of the {}",
            self.b.len() - self.at,
            self.of
        ))
    }

    fn err<T>(&self, what: impl Into<String>) -> Result<T, BinaryError> {
        Err(BinaryError {
            of: self.of,
            at: self.at,
            what: what.into(),
        })
    }
    fn u8(&mut self) -> Result<u8, BinaryError> {
        match self.b.get(self.at) {
            Some(v) => {
                self.at += 1;
                Ok(*v)
            }
            None => self.err("the message ends early"),
        }
    }
    fn v(&mut self) -> Result<u64, BinaryError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.err("a number longer than 64 bits")
    }
    fn z(&mut self) -> Result<i64, BinaryError> {
        let v = self.v()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }
    fn f64(&mut self) -> Result<f64, BinaryError> {
        match self.b.get(self.at..self.at + 8) {
            Some(s) => {
                self.at += 8;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                Ok(f64::from_le_bytes(a))
            }
            None => self.err("the message ends early"),
        }
    }
    fn u32(&mut self, what: &str) -> Result<u32, BinaryError> {
        let v = self.v()?;
        u32::try_from(v).or_else(|_| self.err(format!("{what} {v} is out of range")))
    }
    /// A count of items each at least `min_bytes` long: never more than the bytes left hold.
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize, BinaryError> {
        let n = self.v()?;
        let left = (self.b.len() - self.at) / min_bytes.max(1);
        if n > left as u64 {
            return self.err(format!(
                "{n} {what} announced, the {} bytes left hold at most {left}",
                self.b.len() - self.at
            ));
        }
        Ok(n as usize)
    }
    fn bytes(&mut self) -> Result<&'b [u8], BinaryError> {
        let n = self.count("bytes", 1)?;
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    /// A field present when `flag` is set in `flags`.
    fn when<T>(
        &mut self,
        flags: u8,
        flag: u8,
        read: impl FnOnce(&mut Self) -> Result<T, BinaryError>,
    ) -> Result<Option<T>, BinaryError> {
        if flags & flag == 0 {
            return Ok(None);
        }
        read(self).map(Some)
    }

    fn code<T: Copy>(&self, all: &[T], c: u8, what: &str) -> Result<T, BinaryError> {
        match all.get(usize::from(c)) {
            Some(v) => Ok(*v),
            None => self.err(format!("unknown {what} code {c}")),
        }
    }
    fn string(&mut self, table: &[Text]) -> Result<Text, BinaryError> {
        let i = self.v()?;
        match table.get(i as usize) {
            Some(s) => Ok(s.clone()),
            None => self.err(format!(
                "string {i} is not in the chunk's table of {}",
                table.len()
            )),
        }
    }
}

/// Whether a binary message is a snapshot chunk this decoder reads.
pub fn is_snapshot_chunk(bytes: &[u8]) -> bool {
    bytes.len() > 4 && &bytes[..4] == MAGIC && bytes[4] == KIND_SNAPSHOT_CHUNK
}

/// Decode one binary snapshot chunk.
pub fn decode_chunk(bytes: &[u8]) -> Result<SnapshotChunk, BinaryError> {
    let mut r = In::start(bytes, KIND_SNAPSHOT_CHUNK, "snapshot chunk")?;
    let epoch = r.v()?;
    let seq = r.v()?;
    let part = r.v()? as usize;
    let n = r.count("strings", 1)?;
    let mut table = Vec::with_capacity(n);
    for _ in 0..n {
        let at = r.at;
        let b = r.bytes()?;
        match std::str::from_utf8(b) {
            Ok(s) => table.push(Text::from(s)),
            Err(e) => {
                return Err(BinaryError {
                    of: r.of,
                    at,
                    what: format!("a string is not UTF-8: {e}"),
                });
            }
        }
    }
    // A ticket takes at least 24 bytes (id, three codes, the position, two times, a summary, a step count).
    let n = r.count("tickets", 24)?;
    let mut tickets = Vec::with_capacity(n);
    let (mut id, mut opened) = (0u64, 0i64);
    for _ in 0..n {
        id = id.wrapping_add(r.v()?);
        let b0 = r.u8()?;
        let category = r.code(&TicketCategory::ALL, b0 & 7, "category")?;
        let source = r.code(&TicketSource::ALL, (b0 >> 3) & 3, "source")?;
        let priority = r.code(&Priority::ALL, (b0 >> 5) & 3, "priority")?;
        let c = r.u8()?;
        let status = r.code(&TICKET_STATUSES, c, "ticket status")?;
        let flags = r.u8()?;
        let lon = r.f64()?;
        let lat = r.f64()?;
        let grid_id = r.when(flags, T_GRID, |r| r.u32("grid"))?;
        opened = opened.wrapping_add(r.z()?);
        let sla_deadline_ms = opened.wrapping_add(r.z()?);
        let assignee = r.when(flags, T_ASSIGNEE, |r| r.string(&table))?;
        let volunteer_id = r.when(flags, T_VOLUNTEER, |r| r.u32("volunteer"))?;
        let satisfaction = r.when(flags, T_SATISFACTION, |r| r.u8())?;
        let summary = r.string(&table)?;
        let responsible_party = r.when(flags, T_PARTY, |r| r.string(&table))?;
        let supervised_at_ms = r.when(flags, T_SUPERVISED, |r| Ok(opened.wrapping_add(r.z()?)))?;
        let k = r.count("steps", 2)?;
        let mut steps = super::entities::Steps::with_capacity(k);
        let mut at = opened;
        for _ in 0..k {
            let c = r.u8()?;
            let status = r.code(&TICKET_STATUSES, c, "step status")?;
            at = at.wrapping_add(r.z()?);
            steps.push(TicketStep { status, at_ms: at });
        }
        tickets.push(Ticket {
            id,
            category,
            source,
            priority,
            pos: super::LonLat::new(lon, lat),
            grid_id,
            status,
            opened_at_ms: opened,
            sla_deadline_ms,
            assignee,
            volunteer_id,
            satisfaction,
            summary,
            responsible_party,
            steps,
            supervised_at_ms: supervised_at_ms.into(),
        });
    }
    let n = r.count("volunteers", 5)?;
    let mut volunteers = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.u32("volunteer")?;
        let team_id = r.u32("team")?;
        let c = r.u8()?;
        let status = r.code(&VOLUNTEER_STATUSES, c, "volunteer status")?;
        let flags = r.u8()?;
        let pos = r.when(flags, V_POS, |r| Ok(super::LonLat::new(r.f64()?, r.f64()?)))?;
        let grid_id = r.when(flags, V_GRID, |r| r.u32("grid"))?;
        let last_fix_ms = r.when(flags, V_FIX, |r| r.z())?;
        let last_at_ms = r.z()?;
        let task = match r.when(flags, V_TASK_TICKET, |r| r.v())? {
            Some(id) => Some(Task::Ticket(id)),
            None => r
                .when(flags, V_TASK_INCIDENT, |r| r.v())?
                .map(Task::Incident),
        };
        volunteers.push(Volunteer {
            id,
            team_id,
            status,
            pos,
            grid_id,
            last_fix_ms,
            last_at_ms,
            task,
        });
    }
    let at = r.at;
    let rest: RestIn = serde_json::from_slice(r.bytes()?).map_err(|e| BinaryError {
        of: r.of,
        at,
        what: format!("incidents, alerts and notes: {e}"),
    })?;
    r.end()?;
    Ok(SnapshotChunk {
        epoch,
        seq,
        part,
        tickets,
        volunteers,
        incidents: rest.incidents,
        alerts: rest.alerts,
        annotations: rest.annotations,
    })
}

/// The kind byte of a delta.
pub const KIND_DELTA: u8 = 2;
/// Event codes in a binary delta.
const E_JSON: u8 = 0;
const E_FIX: u8 = 1;

/// One event of a delta as the encoder takes it: a volunteer fix in fields, any other event as
/// its JSON object.
#[derive(Clone, Copy, Debug)]
pub enum DeltaEvent<'a> {
    Fix(&'a VolunteerFix),
    Json(&'a str),
}

/// Encode a delta (`first_seq..=last_seq` after `prev_seq`, `conflated` fixes left out) with
/// its events, in increasing `seq`:
///
/// ```text
/// "DWB1" kind:u8=2 epoch:v prev_seq:v first_seq:v last_seq:v conflated:v
/// events:v { seq:Δv code:u8 (1: id:v at:z lon:f64 lat:f64 | 0: len:v utf8-JSON) }*
/// ```
///
/// Each `seq` is a delta from the one before it (the first from `prev_seq`).
pub fn encode_delta<'a>(
    epoch: Epoch,
    prev_seq: Seq,
    first_seq: Seq,
    last_seq: Seq,
    conflated: u32,
    events: &[(Seq, DeltaEvent<'a>)],
) -> Vec<u8> {
    let json: usize = events
        .iter()
        .map(|(_, e)| match e {
            DeltaEvent::Json(j) => j.len() + 3,
            DeltaEvent::Fix(_) => 0,
        })
        .sum();
    let mut o = Out {
        buf: Vec::with_capacity(40 + events.len() * 30 + json),
    };
    o.buf.extend_from_slice(MAGIC);
    o.u8(KIND_DELTA);
    for v in [epoch, prev_seq, first_seq, last_seq, u64::from(conflated)] {
        o.v(v);
    }
    o.v(events.len() as u64);
    let mut prev = prev_seq;
    for (seq, e) in events {
        o.v(seq.wrapping_sub(prev));
        prev = *seq;
        match e {
            DeltaEvent::Fix(f) => {
                o.u8(E_FIX);
                o.v(u64::from(f.volunteer_id));
                o.z(f.at_ms);
                o.f64(f.pos.lon);
                o.f64(f.pos.lat);
            }
            DeltaEvent::Json(j) => {
                o.u8(E_JSON);
                o.bytes(j.as_bytes());
            }
        }
    }
    o.buf
}

/// Whether a binary message is a delta this decoder reads.
pub fn is_delta(bytes: &[u8]) -> bool {
    bytes.len() > 4 && &bytes[..4] == MAGIC && bytes[4] == KIND_DELTA
}

/// Decode one binary delta. An event whose JSON does not read as an event becomes
/// [`Event::Unknown`] (the mirror counts it), as in a JSON delta; anything else that cannot be
/// read whole refuses the message.
pub fn decode_delta(bytes: &[u8]) -> Result<Delta, BinaryError> {
    let mut r = In::start(bytes, KIND_DELTA, "delta")?;
    let epoch = r.v()?;
    let prev_seq = r.v()?;
    let first_seq = r.v()?;
    let last_seq = r.v()?;
    let conflated = r.u32("conflated count")?;
    // The shortest event: a one-byte seq step, its code and a one-byte JSON length.
    let n = r.count("events", 3)?;
    let mut events = Vec::with_capacity(n);
    let mut seq = prev_seq;
    for _ in 0..n {
        let step = r.v()?;
        seq = match seq.checked_add(step) {
            Some(s) => s,
            None => return r.err(format!("seq {seq} + {step} overflows")),
        };
        let code = r.u8()?;
        let event = match code {
            E_FIX => Event::VolunteerFix(VolunteerFix {
                volunteer_id: r.u32("volunteer id")?,
                at_ms: r.z()?,
                pos: LonLat {
                    lon: r.f64()?,
                    lat: r.f64()?,
                },
            }),
            E_JSON => serde_json::from_slice(r.bytes()?).unwrap_or(Event::Unknown),
            _ => return r.err(format!("unknown event code {code}")),
        };
        events.push((seq, event));
    }
    r.end()?;
    Ok(Delta {
        epoch,
        prev_seq: Some(prev_seq),
        first_seq,
        last_seq,
        conflated,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::AlertLevel;

    fn ticket(id: u64, full: bool) -> Ticket {
        let opened = 1_764_140_400_000 + id as i64 * 7_919;
        Ticket {
            id,
            category: if full {
                TicketCategory::Property
            } else {
                TicketCategory::Repair
            },
            source: TicketSource::WishList,
            priority: Priority::Urgent,
            pos: LonLat::new(106.544_123_456_789_01, 38.904_1 + id as f64 * 1e-9),
            grid_id: full.then_some(4_000_000_000),
            status: if full {
                TicketStatus::Reopened
            } else {
                TicketStatus::Opened
            },
            opened_at_ms: opened,
            sla_deadline_ms: opened - 5, // before the opening: deltas go both ways
            assignee: full.then(|| "张三".into()),
            volunteer_id: full.then_some(u32::MAX),
            satisfaction: full.then_some(5),
            summary: if full { "楼道灯不亮" } else { "" }.into(),
            responsible_party: full.then(|| "物业公司".into()),
            steps: if full {
                smallvec::smallvec![
                    TicketStep {
                        status: TicketStatus::Opened,
                        at_ms: opened,
                    },
                    TicketStep {
                        status: TicketStatus::Resolved,
                        at_ms: opened + 3_600_000,
                    },
                    TicketStep {
                        status: TicketStatus::Reopened,
                        at_ms: opened + 60_000, // out of order: a delta below zero
                    },
                ]
            } else {
                smallvec::smallvec![TicketStep {
                    status: TicketStatus::Opened,
                    at_ms: opened,
                }]
            },
            supervised_at_ms: full.then_some(i64::MAX).into(),
        }
    }

    fn volunteers() -> Vec<Volunteer> {
        vec![
            Volunteer {
                id: 7,
                team_id: 3,
                status: VolunteerStatus::Responding,
                pos: Some(LonLat::new(106.5, 38.9)),
                grid_id: Some(12),
                last_fix_ms: Some(-1),
                last_at_ms: 1_764_140_400_000,
                task: Some(Task::Incident(u64::MAX)),
            },
            Volunteer {
                id: 8,
                team_id: 3,
                status: VolunteerStatus::OffDuty,
                pos: None,
                grid_id: None,
                last_fix_ms: None,
                last_at_ms: 0,
                task: None,
            },
        ]
    }

    fn alert() -> Alert {
        Alert {
            id: "breach-3".into(),
            ticket_id: 3,
            deadline_ms: 5,
            level: AlertLevel::Town,
            trigger: 2,
            raised_at_ms: 9,
            escalated_at_ms: Some(10),
            acked: None,
            resolved_at_ms: None,
        }
    }

    fn sample() -> (Vec<Ticket>, Vec<Volunteer>, Vec<u8>) {
        let tickets = vec![ticket(3, true), ticket(4, false), ticket(u64::MAX, true)];
        let vols = volunteers();
        let refs: Vec<&Ticket> = tickets.iter().collect();
        let alerts = [alert()];
        let bytes = encode_chunk(
            42,
            99,
            0,
            &refs,
            Others {
                volunteers: &vols,
                alerts: &alerts,
                ..Others::default()
            },
        );
        (tickets, vols, bytes)
    }

    #[test]
    fn a_chunk_decodes_to_what_was_encoded_bit_for_bit() {
        let (tickets, vols, bytes) = sample();
        assert!(is_snapshot_chunk(&bytes));
        let c = decode_chunk(&bytes).unwrap();
        assert_eq!((c.epoch, c.seq, c.part), (42, 99, 0));
        assert_eq!(c.tickets, tickets);
        assert_eq!(c.volunteers, vols);
        assert_eq!(c.alerts, vec![alert()]);
        assert!(c.incidents.is_empty() && c.annotations.is_empty());
        assert_eq!(c.tickets[0].pos.lon.to_bits(), tickets[0].pos.lon.to_bits());
        // Repeated strings are written once.
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(text.matches("楼道灯不亮").count(), 1, "{text}");
    }

    #[test]
    fn a_cut_message_is_refused_at_every_length() {
        let (_, _, bytes) = sample();
        for len in 0..bytes.len() {
            let err = decode_chunk(&bytes[..len]).expect_err("a cut chunk is refused");
            assert!(err.at <= len, "{err} for {len} bytes");
        }
    }

    #[test]
    fn hostile_bytes_are_refused_with_a_reason_and_never_panic() {
        let (_, _, bytes) = sample();
        // Every byte flipped in turn: an error or a chunk, never a panic.
        for i in 0..bytes.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= x;
                let _ = decode_chunk(&b);
            }
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(
            decode_chunk(&long)
                .unwrap_err()
                .what
                .contains("after the end")
        );
        assert!(
            decode_chunk(b"{\"type\":\"snapshot_chunk\"}")
                .unwrap_err()
                .what
                .contains("DWB1")
        );
        // A count the bytes cannot hold is refused before anything is reserved for it.
        let mut huge = MAGIC.to_vec();
        huge.extend([KIND_SNAPSHOT_CHUNK, 1, 1, 0, 0]);
        huge.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        let err = decode_chunk(&huge).unwrap_err();
        assert!(err.what.contains("tickets announced"), "{err}");
        // An unknown status code names itself.
        let (tickets, _, _) = sample();
        let one = encode_chunk(1, 1, 0, &[&tickets[1]], Others::default());
        // Header (8), the table (one empty summary: 2), the count, the id, the codes byte.
        let status_at = 8 + 2 + 1 + 1 + 1;
        let mut bad = one.clone();
        bad[status_at] = 9;
        let err = decode_chunk(&bad).unwrap_err();
        assert!(err.what.contains("unknown ticket status code 9"), "{err}");
    }

    /// A delta of fixes (one at the edges of every field) and other events, one of them not
    /// an event any more.
    fn delta_sample() -> (Vec<(Seq, Event)>, Vec<u8>) {
        let fixes = [
            VolunteerFix {
                volunteer_id: 7,
                at_ms: 1_764_140_400_123,
                pos: LonLat::new(106.123_456_789, 38.987_654_321),
            },
            VolunteerFix {
                volunteer_id: u32::MAX,
                at_ms: i64::MIN,
                pos: LonLat::new(-0.0, f64::MAX),
            },
        ];
        let ticket =
            serde_json::to_string(&Event::TicketResolved(crate::protocol::TicketResolved {
                ticket_id: 5,
                at_ms: 1_764_140_400_000,
                satisfaction: Some(4),
            }))
            .unwrap();
        let garbage = r#"{"type":"no_such_event","x":1}"#;
        let events = [
            (12, DeltaEvent::Fix(&fixes[0])),
            (13, DeltaEvent::Json(&ticket)),
            (40, DeltaEvent::Fix(&fixes[1])),
            (u64::MAX, DeltaEvent::Json(garbage)),
        ];
        let bytes = encode_delta(3, 11, 12, u64::MAX, 2, &events);
        let want = vec![
            (12, Event::VolunteerFix(fixes[0].clone())),
            (13, serde_json::from_str(&ticket).unwrap()),
            (40, Event::VolunteerFix(fixes[1].clone())),
            (u64::MAX, Event::Unknown),
        ];
        (want, bytes)
    }

    #[test]
    fn a_delta_decodes_to_what_was_encoded_and_a_fix_takes_a_fraction_of_its_json() {
        let (want, bytes) = delta_sample();
        assert!(is_delta(&bytes) && !is_snapshot_chunk(&bytes));
        let d = decode_delta(&bytes).unwrap();
        assert_eq!(
            (d.epoch, d.prev_seq, d.first_seq, d.last_seq, d.conflated),
            (3, Some(11), 12, u64::MAX, 2)
        );
        assert_eq!(d.events, want);
        assert!(matches!(d.events[1].1, Event::TicketResolved(_)));
        let Event::VolunteerFix(f) = &d.events[0].1 else {
            panic!("a fix")
        };
        assert_eq!(f.pos.lon.to_bits(), 106.123_456_789f64.to_bits());
        let Event::VolunteerFix(f) = &d.events[2].1 else {
            panic!("a fix")
        };
        assert!(f.pos.lon.is_sign_negative(), "-0.0 stays -0.0");
        // A typical fix: its JSON against its bytes in a delta.
        let fix = VolunteerFix {
            volunteer_id: 51_040,
            at_ms: 1_764_140_400_123,
            pos: LonLat::new(106.5, 38.9),
        };
        let one = encode_delta(1, 0, 1, 1, 0, &[(1, DeltaEvent::Fix(&fix))]);
        let json = serde_json::to_string(&Event::VolunteerFix(fix)).unwrap();
        let per_fix = one.len() - encode_delta(1, 0, 1, 1, 0, &[]).len();
        assert!(
            per_fix * 3 < json.len(),
            "{per_fix} bytes in binary, {} in JSON",
            json.len()
        );
    }

    #[test]
    fn a_cut_or_hostile_delta_is_refused_with_a_reason_and_never_panics() {
        let (_, bytes) = delta_sample();
        for len in 0..bytes.len() {
            let err = decode_delta(&bytes[..len]).expect_err("a cut delta is refused");
            assert!(err.at <= len && err.of == "delta", "{err} for {len} bytes");
        }
        for i in 0..bytes.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= x;
                let _ = decode_delta(&b);
            }
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(
            decode_delta(&long)
                .unwrap_err()
                .what
                .contains("after the end")
        );
        let chunk = sample().2;
        assert!(
            decode_delta(&chunk)
                .unwrap_err()
                .what
                .contains("not a delta")
        );
        // An event code nobody defined, and a seq that runs past the largest.
        let mut bad = encode_delta(1, 0, 1, 1, 0, &[(1, DeltaEvent::Json("{}"))]);
        let code_at = bad.len() - 4;
        assert_eq!(bad[code_at], E_JSON);
        bad[code_at] = 9;
        assert!(
            decode_delta(&bad)
                .unwrap_err()
                .what
                .contains("unknown event code 9")
        );
        let over = encode_delta(1, u64::MAX, 1, 1, 0, &[(0, DeltaEvent::Json("{}"))]);
        assert!(decode_delta(&over).unwrap_err().what.contains("overflows"));
        // A count the bytes cannot hold.
        let mut huge = MAGIC.to_vec();
        huge.extend([KIND_DELTA, 1, 0, 1, 1, 0]);
        huge.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(
            decode_delta(&huge)
                .unwrap_err()
                .what
                .contains("events announced")
        );
    }
}
