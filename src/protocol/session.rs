//! Session messages of the feed: hello, chunked snapshot, sequenced delta batches,
//! heartbeats, resume. See `docs/PROTOCOL.md`, "Session layer".

use serde::{Deserialize, Serialize};

use super::command::{Command, CommandResult};
use super::entities::{Alert, Incident, Ticket, Volunteer};
use super::{Event, TimestampMs};

/// Position in the stream: events are numbered 1, 2, 3… within one epoch.
pub type Seq = u64;
/// Identifies one unbroken history of sequence numbers. A new epoch means offsets from an
/// older one are meaningless (the server restarted or lost history).
pub type Epoch = u64;

/// The websocket path of the feed.
pub const FEED_PATH: &str = "/v1/feed";

/// How the snapshot's chunks and the deltas travel, chosen by the client with the feed URL's
/// `format` query parameter: `json` (the default: every message is JSON text) or `binary`
/// (each `snapshot_chunk` and each `delta` is a binary message, `protocol::binary`; everything
/// else stays JSON).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotFormat {
    #[default]
    Json = 0,
    Binary = 1,
}

impl SnapshotFormat {
    pub const ALL: [SnapshotFormat; 2] = [Self::Json, Self::Binary];

    /// The name in the query parameter and in `hello`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Binary => "binary",
        }
    }

    /// The format a query parameter names, if it names one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }

    fn is_json(&self) -> bool {
        *self == Self::Json
    }
}

/// Messages the server sends.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First message on every connection.
    Hello(Hello),
    /// A snapshot follows in `chunks` parts; it covers every event up to and including `seq`.
    SnapshotBegin(SnapshotBegin),
    SnapshotChunk(SnapshotChunk),
    /// The snapshot is complete; deltas continue from `seq + 1`.
    SnapshotEnd(SnapshotEnd),
    /// A batch of events `first_seq..=last_seq`, in order. Under load superseded volunteer
    /// fixes may be left out (`conflated` counts them); nothing else ever is.
    Delta(Delta),
    /// Sent every heartbeat interval; also tells the client the server's clock.
    Heartbeat(Heartbeat),
    /// Why the server is about to close the connection or resend a snapshot.
    Notice(Notice),
    /// Where one of this connection's commands stands (`protocol::command`).
    CommandResult(CommandResult),
}

super::tagged::tagged_deserialize!(ServerMsg, "a server message object with a `type`", {
    "hello" => Hello,
    "snapshot_begin" => SnapshotBegin,
    "snapshot_chunk" => SnapshotChunk,
    "snapshot_end" => SnapshotEnd,
    "delta" => Delta,
    "heartbeat" => Heartbeat,
    "notice" => Notice,
    "command_result" => CommandResult,
});

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u16,
    pub county_code: u64,
    pub county_name: String,
    pub epoch: Epoch,
    /// Latest sequence number at the server when the connection opened.
    pub last_seq: Seq,
    pub server_time_ms: TimestampMs,
    /// How fast the feed clock runs relative to real time (1.0 live; 60 for a simulation at
    /// 60×). Clients extrapolate the server's clock between heartbeats with it.
    pub clock_rate: f64,
    /// The server sends a heartbeat this often (500 ms by default); a client calls the feed
    /// stale after two without a message. The server drops a client silent for 15 s.
    pub heartbeat_ms: u64,
    /// Largest message the server accepts from the client, bytes.
    pub max_client_message_bytes: usize,
    /// The volunteer roster is the pack's replicated this many times (`--scale` load tests);
    /// clients build their county the same way (`model::scale::scaled_county`).
    #[serde(default = "one")]
    pub roster_scale: u32,
    /// Every grid of the pack is split into this many (`--scale` load tests).
    #[serde(default = "one")]
    pub grid_split: u32,
    /// Whether what follows replays missed events (`true`) or starts with a snapshot.
    pub resumed: bool,
    /// Set while the gateway has lost its backbone (NATS): it keeps serving the last state,
    /// and everything published meanwhile arrives once the backbone is back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone_down_since_ms: Option<TimestampMs>,
    /// The feed is simulated (the county simulator, a recording of it, a synthetic load), not
    /// the county's own systems: walls say so on screen, always.
    #[serde(default)]
    pub simulated: bool,
    /// How this connection's snapshot chunks travel (`format` in the feed URL).
    #[serde(default, skip_serializing_if = "SnapshotFormat::is_json")]
    pub snapshot_format: SnapshotFormat,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotBegin {
    pub epoch: Epoch,
    pub seq: Seq,
    pub chunks: usize,
    pub tickets: usize,
    pub volunteers: usize,
    pub incidents: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub epoch: Epoch,
    pub seq: Seq,
    pub part: usize,
    #[serde(default)]
    pub tickets: Vec<Ticket>,
    #[serde(default)]
    pub volunteers: Vec<Volunteer>,
    #[serde(default)]
    pub incidents: Vec<Incident>,
    /// Alerts (open, and resolved within the last hour).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<Alert>,
    /// Operators' notes (written within the last week).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<crate::protocol::entities::Annotation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotEnd {
    pub epoch: Epoch,
    pub seq: Seq,
    pub latest_event_ms: TimestampMs,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub epoch: Epoch,
    /// The sequence number this batch follows: the client's cursor when the gateway read it.
    /// Sequence numbers may have holes (a gateway on a backbone numbers events by their
    /// stream position), so a client detects a gap by `prev_seq > last_seq`; when absent it
    /// is `first_seq - 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_seq: Option<Seq>,
    pub first_seq: Seq,
    pub last_seq: Seq,
    #[serde(default)]
    pub conflated: u32,
    /// `[seq, event]` pairs in increasing `seq`.
    pub events: Vec<(Seq, Event)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub server_time_ms: TimestampMs,
    pub last_seq: Seq,
    /// Set while the gateway's backbone (NATS) is unreachable, since this feed-clock time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone_down_since_ms: Option<TimestampMs>,
}

impl Delta {
    /// The sequence number this batch follows (see [`Delta::prev_seq`]).
    pub fn follows(&self) -> Seq {
        self.prev_seq
            .unwrap_or_else(|| self.first_seq.saturating_sub(1))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// `resync` (a fresh snapshot follows), `slow_consumer`, `shutdown`, `heartbeat_timeout`,
    /// `bad_message`.
    pub code: String,
    pub message: String,
}

/// Messages a client sends. All are small; the server enforces a size limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Continue after `last_seq` of `epoch`: the server replays what was missed, or sends a
    /// snapshot when it no longer has it (or the epoch changed).
    Resume { epoch: Epoch, last_seq: Seq },
    /// Keep-alive; `client_time_ms` is echoed into the log for clock diagnostics.
    Heartbeat {
        #[serde(default)]
        client_time_ms: TimestampMs,
    },
    /// An operator's command; `id` (the client's, at most 64 bytes) names it in the
    /// `command_result` messages that answer it.
    Command { id: String, command: Command },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_events_are_seq_event_pairs() {
        let d = ServerMsg::Delta(Delta {
            epoch: 9,
            prev_seq: None,
            first_seq: 4,
            last_seq: 4,
            conflated: 0,
            events: vec![(4, Event::Unknown)],
        });
        let json = serde_json::to_string(&d).unwrap();
        assert!(
            json.starts_with(r#"{"type":"delta","epoch":9,"first_seq":4"#),
            "{json}"
        );
        assert!(
            json.contains(r#""events":[[4,{"type":"Unknown"}]]"#),
            "{json}"
        );
    }

    #[test]
    fn resume_decodes() {
        let m: ClientMsg =
            serde_json::from_str(r#"{"type":"resume","epoch":5,"last_seq":77}"#).unwrap();
        assert_eq!(
            m,
            ClientMsg::Resume {
                epoch: 5,
                last_seq: 77
            }
        );
    }
}
