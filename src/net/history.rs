//! The gateway's history on disk: every accepted event, in sequence order, in segment files,
//! and checkpoints (the whole model at a sequence number), so the state at any moment of the
//! last days is a checkpoint plus the events after it.
//!
//! ```text
//! DIR/meta.json                                 county, scale, epoch (format 1)
//! DIR/seg-<first seq, 20 digits>-<t0>.ndjson    `[seq,event]` lines, as the feed sends them
//!                                               (gzip, `.ndjson.gz`, once the hour is over)
//! DIR/cp-<seq, 20 digits>-<t>.json.gz           the model at seq (the backbone's checkpoint)
//! ```
//!
//! Time in the history is the model's own: the latest event time seen so far (`t0` of a
//! segment, `t` of a checkpoint), so "the state at T" is the state after every event up to the
//! last one that kept it at or before T — the same on every gateway and in every test, whatever
//! the wall clock did. A segment is started when that time enters a new feed hour; checkpoints
//! are written every feed hour by the gateway; files older than `--history-days` are removed
//! (a checkpoint before the window is kept as the base).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{County, LiveState};
use crate::protocol::session::{Epoch, Seq};
use crate::protocol::{Event, TimestampMs};

pub const HISTORY_FORMAT: u32 = 1;
/// Feed time a segment covers, and between checkpoints.
pub const SEGMENT_MS: TimestampMs = 3_600_000;
pub const CHECKPOINT_EVERY_MS: TimestampMs = 3_600_000;
const DAY_MS: TimestampMs = 86_400_000;

/// What the history is of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub format: u32,
    pub county_code: u64,
    pub roster_scale: u32,
    pub grid_split: u32,
    pub epoch: Epoch,
}

impl Meta {
    pub fn of(county: &County, epoch: Epoch) -> Self {
        Self {
            format: HISTORY_FORMAT,
            county_code: county.pack.manifest.county_code,
            roster_scale: county.roster_scale,
            grid_split: county.grid_split,
            epoch,
        }
    }

    /// Why this history cannot serve `county`, if it cannot.
    pub fn mismatch(&self, county: &County) -> Option<String> {
        let want = Self::of(county, self.epoch);
        (*self != want).then(|| {
            format!(
                "it is of county {} at scale {}x{} (format {}), not county {} at {}x{}",
                self.county_code,
                self.roster_scale,
                self.grid_split,
                self.format,
                want.county_code,
                want.roster_scale,
                want.grid_split
            )
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {what}")]
    Corrupt {
        path: String,
        line: usize,
        what: String,
    },
    #[error("{0}")]
    Other(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HistoryError + '_ {
    move |source| HistoryError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A segment or checkpoint file: its sequence number and feed time, from its name.
#[derive(Clone, Debug, PartialEq)]
pub struct FileInfo {
    pub seq: Seq,
    pub t_ms: TimestampMs,
    pub path: PathBuf,
}

fn parse_name(name: &str, prefix: &str, suffix: &str) -> Option<(Seq, TimestampMs)> {
    let core = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    let (seq, t) = core.split_once('-')?;
    Some((seq.parse().ok()?, t.parse().ok()?))
}

/// The segments and checkpoints in `dir`, each sorted by sequence number.
pub fn list(dir: &Path) -> Result<(Vec<FileInfo>, Vec<FileInfo>), HistoryError> {
    let mut segments = Vec::new();
    let mut checkpoints = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((seq, t_ms)) =
            parse_name(&name, "seg-", ".ndjson").or_else(|| parse_name(&name, "seg-", ".ndjson.gz"))
        {
            segments.push(FileInfo {
                seq,
                t_ms,
                path: entry.path(),
            });
        } else if let Some((seq, t_ms)) = parse_name(&name, "cp-", ".json.gz") {
            checkpoints.push(FileInfo {
                seq,
                t_ms,
                path: entry.path(),
            });
        }
    }
    // While a segment is being compressed both files exist, each complete: take the gzip.
    segments.sort_by_key(|f| (f.seq, !is_gz(&f.path)));
    segments.dedup_by_key(|f| f.seq);
    checkpoints.sort_by_key(|f| f.seq);
    Ok((segments, checkpoints))
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Compress a finished segment to `.ndjson.gz` (then remove the plain file), on a thread of
/// its own: an hour of a busy feed is a few hundred MB, about a fifth of that compressed.
fn compress_later(path: PathBuf) {
    let spawned = std::thread::Builder::new()
        .name("datawall-history-gzip".into())
        .spawn(move || {
            let gz = path.with_extension("ndjson.gz");
            let tmp = path.with_extension("ndjson.gz.tmp");
            let result = (|| -> std::io::Result<()> {
                let mut input = BufReader::new(File::open(&path)?);
                let mut out = flate2::write::GzEncoder::new(
                    BufWriter::new(File::create(&tmp)?),
                    flate2::Compression::fast(),
                );
                std::io::copy(&mut input, &mut out)?;
                out.finish()?.flush()?;
                std::fs::rename(&tmp, &gz)?;
                std::fs::remove_file(&path)
            })();
            if let Err(e) = result {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(target: "datawall::history", "compressing {} failed: {e}; it stays uncompressed", path.display());
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(target: "datawall::history", "cannot start the compression thread: {e}");
    }
}

fn read_meta(dir: &Path) -> Result<Option<Meta>, HistoryError> {
    let path = dir.join("meta.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| HistoryError::Corrupt {
                path: path.display().to_string(),
                line: 1,
                what: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Write `bytes` to `path` through a temporary file and a rename (never half a file).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HistoryError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The segment being written: its feed hour, file (none after a failure) and path.
struct Segment {
    bucket: TimestampMs,
    file: Option<BufWriter<File>>,
    path: PathBuf,
}

/// Appends events as the hub accepts them (called under the hub's lock, in seq order).
pub struct Writer {
    dir: PathBuf,
    days: u32,
    /// Held while writing: one gateway per history.
    _lock: File,
    current: Option<Segment>,
    /// Compress segments once they are finished (on by default).
    pub compress: bool,
    pub errors: u64,
    pub bytes: u64,
}

impl Writer {
    /// Write into `dir` (created), for `meta`'s county and epoch.
    pub fn create(dir: &Path, meta: &Meta, days: u32) -> Result<Self, HistoryError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if let Err(e) = lock.try_lock() {
            return Err(HistoryError::Other(format!(
                "{}: another gateway keeps its history there ({e}); pass another --history-dir",
                dir.display()
            )));
        }
        let json =
            serde_json::to_vec_pretty(meta).map_err(|e| HistoryError::Other(e.to_string()))?;
        write_atomic(&dir.join("meta.json"), &json)?;
        Ok(Self {
            dir: dir.to_owned(),
            days,
            _lock: lock,
            current: None,
            compress: true,
            errors: 0,
            bytes: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn days(&self) -> u32 {
        self.days
    }

    /// Append event `seq` (`line` is its `[seq,event]` JSON) after which the model's time is
    /// `t_ms`. After an error (returned once; the caller logs and counts it) the events are
    /// not kept until the next segment, and the live feed goes on.
    pub fn append(&mut self, seq: Seq, t_ms: TimestampMs, line: &str) -> Result<(), HistoryError> {
        let bucket = t_ms.div_euclid(SEGMENT_MS);
        if self.current.as_ref().is_none_or(|c| c.bucket != bucket) {
            self.roll(seq, t_ms, bucket)?;
        }
        let Some(seg) = self.current.as_mut() else {
            return Ok(());
        };
        let Some(w) = seg.file.as_mut() else {
            return Ok(());
        };
        match w
            .write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
        {
            Ok(()) => {
                self.bytes += line.len() as u64 + 1;
                Ok(())
            }
            Err(e) => {
                seg.file = None;
                self.errors += 1;
                Err(io(&seg.path)(e))
            }
        }
    }

    fn roll(
        &mut self,
        seq: Seq,
        t_ms: TimestampMs,
        bucket: TimestampMs,
    ) -> Result<(), HistoryError> {
        if let Some(Segment {
            file: Some(mut w),
            path,
            ..
        }) = self.current.take()
        {
            match w.flush() {
                Ok(()) if self.compress => compress_later(path),
                Ok(()) => {}
                Err(e) => {
                    self.errors += 1;
                    tracing::error!(target: "datawall::history", "closing {}: {e}", path.display());
                }
            }
        }
        let path = self.dir.join(format!("seg-{seq:020}-{t_ms}.ndjson"));
        let file = File::create(&path);
        let (file, result) = match file {
            Ok(f) => (Some(BufWriter::with_capacity(64 * 1024, f)), Ok(())),
            Err(e) => {
                self.errors += 1;
                (None, Err(io(&path)(e)))
            }
        };
        self.current = Some(Segment { bucket, file, path });
        result
    }

    /// Push what is buffered to the file (after each publish call: a reader, or a restart
    /// after a crash, sees every event the feed has sent).
    pub fn flush(&mut self) -> Result<(), HistoryError> {
        let Some(seg) = self.current.as_mut() else {
            return Ok(());
        };
        if let Some(w) = seg.file.as_mut()
            && let Err(e) = w.flush()
        {
            seg.file = None;
            self.errors += 1;
            return Err(io(&seg.path)(e));
        }
        Ok(())
    }
}

/// Write checkpoint `gz` (the backbone's gzip JSON checkpoint) for `seq` at feed time `t_ms`,
/// and remove what has left the window of `days` before `t_ms`: checkpoints before the newest
/// one older than the window (kept as the base), and segments wholly before that base.
pub fn write_checkpoint(
    dir: &Path,
    seq: Seq,
    t_ms: TimestampMs,
    gz: &[u8],
    days: u32,
) -> Result<usize, HistoryError> {
    write_atomic(&dir.join(format!("cp-{seq:020}-{t_ms}.json.gz")), gz)?;
    let (segments, checkpoints) = list(dir)?;
    let window_start = t_ms - i64::from(days) * DAY_MS;
    let Some(base) = checkpoints.iter().rev().find(|c| c.t_ms <= window_start) else {
        return Ok(0);
    };
    let mut removed = 0;
    for c in checkpoints.iter().filter(|c| c.seq < base.seq) {
        std::fs::remove_file(&c.path).map_err(io(&c.path))?;
        removed += 1;
    }
    // A segment is wholly before the base when the next one starts at or before it.
    for pair in segments.windows(2) {
        if pair[1].seq <= base.seq + 1 {
            std::fs::remove_file(&pair[0].path).map_err(io(&pair[0].path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Where to stop when rebuilding the state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum At {
    /// After event `seq` (or the last one before it).
    Seq(Seq),
    /// After the last event that keeps the model's time at or before this.
    Time(TimestampMs),
    /// After every event there is.
    End,
}

/// A history read back: what it holds and the state at any point in it.
pub struct History {
    pub dir: PathBuf,
    pub meta: Meta,
    pub segments: Vec<FileInfo>,
    pub checkpoints: Vec<FileInfo>,
}

/// A state rebuilt from the history, and where it stands.
pub struct Rebuilt {
    pub state: LiveState,
    pub seq: Seq,
    /// Set when the history ended on damage (a corrupt line): the state is the one before it.
    pub damaged: Option<String>,
}

impl History {
    /// The history in `dir`, if there is one (`Ok(None)` for an empty or missing folder).
    pub fn open(dir: &Path) -> Result<Option<Self>, HistoryError> {
        if !dir.exists() {
            return Ok(None);
        }
        let Some(meta) = read_meta(dir)? else {
            return Ok(None);
        };
        let (segments, checkpoints) = list(dir)?;
        Ok(Some(Self {
            dir: dir.to_owned(),
            meta,
            segments,
            checkpoints,
        }))
    }

    /// The first and last feed time the history covers (from file names), if any.
    pub fn span_ms(&self) -> Option<(TimestampMs, TimestampMs)> {
        let first = self
            .checkpoints
            .first()
            .map(|c| c.t_ms)
            .into_iter()
            .chain(self.segments.first().map(|s| s.t_ms))
            .min()?;
        let last = self
            .segments
            .last()
            .map(|s| s.t_ms)
            .into_iter()
            .chain(self.checkpoints.last().map(|c| c.t_ms))
            .max()?;
        Some((first, last))
    }

    /// The checkpoint to start from for `at`: the newest at or before it.
    fn base(&self, at: At) -> Option<&FileInfo> {
        self.checkpoints.iter().rev().find(|c| match at {
            At::Seq(s) => c.seq <= s,
            At::Time(t) => c.t_ms <= t,
            At::End => true,
        })
    }

    /// The state at `at`: the nearest checkpoint before it, then the events after it.
    pub fn state_at(&self, county: &Arc<County>, at: At) -> Result<Rebuilt, HistoryError> {
        if let (At::Time(t), Some((first, _))) = (at, self.span_ms())
            && t < first
        {
            return Err(HistoryError::Other(format!(
                "{t} is before the history's first moment ({first}): it holds --history-days of feed"
            )));
        }
        let (mut state, mut seq) = match self.base(at) {
            Some(cp) => load_checkpoint(&cp.path, county, self.meta.epoch)?,
            None => {
                // The first event is seq 1, or (a backbone's numbering) stream message 1's.
                let first = [1, crate::net::hub::feed_seq(1, 0)];
                if self
                    .segments
                    .first()
                    .is_some_and(|s| !first.contains(&s.seq))
                {
                    return Err(HistoryError::Other(format!(
                        "no checkpoint before {at:?} and the segments start at seq {}: that moment has left the history",
                        self.segments[0].seq
                    )));
                }
                (LiveState::new(Arc::clone(county)), 0)
            }
        };
        if let At::Time(t) = at
            && state.latest_event_ms > t
        {
            return Err(HistoryError::Other(format!(
                "{t} is before the history's first checkpoint"
            )));
        }
        let mut damaged = None;
        let result = self.for_each_after(seq, |s, event| {
            let next_t = event
                .at_ms()
                .map_or(state.latest_event_ms, |a| a.max(state.latest_event_ms));
            let stop = match at {
                At::Seq(target) => s > target,
                At::Time(t) => next_t > t,
                At::End => false,
            };
            if stop {
                return false;
            }
            // Every event in the history was accepted once; one that is not now is damage.
            if let Err(e) = state.apply(&event) {
                damaged = Some(format!("event {s} does not apply: {e}"));
                return false;
            }
            seq = s;
            true
        });
        if let Err(e) = result {
            damaged = Some(e.to_string());
        }
        if let Some(d) = &damaged {
            tracing::error!(target: "datawall::history", "the history in {} is damaged: {d}; it is usable up to seq {seq}", self.dir.display());
        }
        Ok(Rebuilt {
            state,
            seq,
            damaged,
        })
    }

    /// Call `f` with every event after `after`, in order, until it returns false. A line
    /// that does not parse is an error naming it, except a torn last line of the last
    /// segment (a crash mid-write), which ends the history.
    pub fn for_each_after(
        &self,
        after: Seq,
        mut f: impl FnMut(Seq, Event) -> bool,
    ) -> Result<(), HistoryError> {
        let start = self
            .segments
            .partition_point(|s| s.seq <= after)
            .saturating_sub(1);
        let last = self.segments.len().saturating_sub(1);
        for (k, seg) in self.segments.iter().enumerate().skip(start) {
            // Compressed since it was listed: the gzip is complete before the plain file goes.
            let (file, path) = match File::open(&seg.path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !is_gz(&seg.path) => {
                    let gz = seg.path.with_extension("ndjson.gz");
                    (File::open(&gz).map_err(io(&gz))?, gz)
                }
                other => (other.map_err(io(&seg.path))?, seg.path.clone()),
            };
            let reader: Box<dyn std::io::Read> = if is_gz(&path) {
                Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                    256 * 1024,
                    file,
                )))
            } else {
                Box::new(file)
            };
            let mut lines = BufReader::with_capacity(256 * 1024, reader)
                .lines()
                .peekable();
            let mut n = 0;
            while let Some(line) = lines.next() {
                n += 1;
                let line = line.map_err(io(&seg.path))?;
                let parsed: Result<(Seq, Event), _> = serde_json::from_str(&line);
                let (seq, event) = match parsed {
                    Ok(x) => x,
                    Err(_) if k == last && lines.peek().is_none() => {
                        tracing::warn!(target: "datawall::history", "{}: line {n} is torn (a crash mid-write); the history ends before it", seg.path.display());
                        return Ok(());
                    }
                    Err(e) => {
                        return Err(HistoryError::Corrupt {
                            path: seg.path.display().to_string(),
                            line: n,
                            what: e.to_string(),
                        });
                    }
                };
                if seq <= after {
                    continue;
                }
                if !f(seq, event) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Read checkpoint `path` into a state: the model at its seq.
pub fn load_checkpoint(
    path: &Path,
    county: &Arc<County>,
    epoch: Epoch,
) -> Result<(LiveState, Seq), HistoryError> {
    let gz = std::fs::read(path).map_err(io(path))?;
    let restore = crate::net::backbone::decode_checkpoint(&gz, county, epoch).map_err(|what| {
        HistoryError::Corrupt {
            path: path.display().to_string(),
            line: 1,
            what,
        }
    })?;
    Ok((restore.state, restore.last_seq))
}

/// The default history folder for a county: `$XDG_DATA_HOME/datawall/history/<county code>`
/// (`~/.local/share/…`).
pub fn default_dir(county_code: u64) -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("datawall/history").join(county_code.to_string())
}

/// Write a checkpoint of `hub`'s model into `dir` now (seconds at a million tickets: call it
/// off the async workers); returns its seq, model time, size and the files the window
/// removed.
pub fn checkpoint_now(
    hub: &crate::net::hub::Hub,
    dir: &Path,
    days: u32,
) -> Result<(Seq, TimestampMs, usize, usize), HistoryError> {
    let c = crate::net::backbone::encode_checkpoint_full(hub)
        .map_err(|e| HistoryError::Other(format!("{e:#}")))?;
    let removed = write_checkpoint(dir, c.last_seq, c.latest_event_ms, &c.gz, days)?;
    Ok((c.last_seq, c.latest_event_ms, c.gz.len(), removed))
}

/// Write a checkpoint whenever the model's time enters a new feed hour, and at shutdown; drop
/// what has left the window of `days`. Runs until `shutdown` (after the last checkpoint).
pub async fn run_checkpoints(
    hub: Arc<crate::net::hub::Hub>,
    dir: PathBuf,
    days: u32,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut written = (hub.last_seq(), hub.with_state(|s| s.latest_event_ms));
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = shutdown.changed() => true,
            _ = tick.tick() => false,
        };
        let (seq, t) = (hub.last_seq(), hub.with_state(|s| s.latest_event_ms));
        let new_hour =
            t.div_euclid(CHECKPOINT_EVERY_MS) != written.1.div_euclid(CHECKPOINT_EVERY_MS);
        if seq != written.0 && (new_hour || stopping) {
            let h = Arc::clone(&hub);
            let dir = dir.clone();
            let result = tokio::task::spawn_blocking(move || checkpoint_now(&h, &dir, days)).await;
            match result {
                Ok(Ok((seq, t, bytes, removed))) => {
                    tracing::info!(target: "datawall::history", "checkpoint at seq {seq} ({bytes} bytes){}", if removed > 0 { format!("; {removed} files past the {days}-day window removed") } else { String::new() });
                    written = (seq, t);
                    crate::net::metrics::trim_heap_in_background("writing a checkpoint");
                }
                Ok(Err(e)) => {
                    crate::net::metrics::Metrics::inc(&hub.metrics.history_errors);
                    tracing::error!(target: "datawall::history", "writing a checkpoint failed: {e}; the live feed goes on (check the disk); trying again in a second");
                }
                // The runtime is going away (the process ends): nothing to report.
                Err(e) if e.is_cancelled() => return,
                Err(e) => {
                    tracing::error!(target: "datawall::history", "the checkpoint task failed: {e}")
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// Open the history in `dir` for a gateway of `county` that publishes on its own (not from a
/// backbone): the hub to serve (continuing the history's epoch, state and seq when there is
/// one) and the writer to keep it. A damaged history is moved aside (`DIR.damaged-<time>`)
/// and a new one started, with a new epoch so walls resync; one of another county or scale is
/// an error naming what to do.
pub fn open_for_gateway(
    dir: &Path,
    days: u32,
    county: &Arc<County>,
    config: crate::net::hub::HubConfig,
) -> anyhow::Result<(crate::net::hub::Hub, Writer)> {
    use crate::net::hub::{Hub, Restore};
    if let Some(history) = History::open(dir)? {
        if let Some(why) = history.meta.mismatch(county) {
            anyhow::bail!(
                "the history in {} cannot be continued: {why}; pass another --history-dir (or remove that folder)",
                dir.display()
            );
        }
        eprintln!(
            "datawall: reading the history in {} ({} segments, {} checkpoints)",
            dir.display(),
            history.segments.len(),
            history.checkpoints.len()
        );
        let rebuilt = history.state_at(county, At::End)?;
        match rebuilt.damaged {
            None => {
                // A torn last line (a crash mid-write) goes, so the segment reads whole once
                // others follow it.
                if let Some(last) = history.segments.last() {
                    trim_torn_tail(&last.path)?;
                }
                let epoch = history.meta.epoch;
                eprintln!(
                    "datawall: continuing epoch {epoch} at seq {} (walls resume where they were)",
                    rebuilt.seq
                );
                let hub = Hub::resumed(
                    Arc::clone(county),
                    config,
                    epoch,
                    Restore {
                        state: rebuilt.state,
                        last_seq: rebuilt.seq,
                        stream_seq: 0,
                    },
                );
                let writer = Writer::create(dir, &history.meta, days)?;
                return Ok((hub, writer));
            }
            Some(why) => {
                let aside =
                    dir.with_extension(format!("damaged-{}", crate::net::hub::system_now_ms()));
                std::fs::rename(dir, &aside).map_err(io(dir))?;
                tracing::error!(target: "datawall::history", "the history is damaged ({why}); moved to {} for inspection, starting a new one (walls resync)", aside.display());
            }
        }
    }
    let hub = Hub::new(Arc::clone(county), config);
    let writer = Writer::create(dir, &Meta::of(county, hub.epoch), days)?;
    Ok((hub, writer))
}

/// What a gateway on a backbone continues from its own history.
pub struct BackboneHistory {
    pub writer: Writer,
    /// The model and position to follow the stream from; `None`: nothing usable (a new
    /// history was begun; the gateway starts from the backbone's checkpoint and writes one
    /// here once it has).
    pub restore: Option<crate::net::hub::Restore>,
}

/// Open the history in `dir` for a gateway following stream epoch `epoch`, whose first
/// retained message is `stream_first_seq`. The history is the stream's, message by message:
/// its last stream message may have been cut short by a crash, so it is dropped and read again
/// from the stream. When the stream no longer holds what follows the history, or the history
/// is of another epoch or damaged, it is moved aside (`DIR.<why>-<time>`) and a new one
/// begun; one of another county or scale is an error.
pub fn open_for_backbone(
    dir: &Path,
    days: u32,
    county: &Arc<County>,
    epoch: Epoch,
    stream_first_seq: u64,
) -> anyhow::Result<BackboneHistory> {
    use crate::net::hub::{EVENT_INDEX_BITS, Restore};
    let aside = |why: &str| -> anyhow::Result<()> {
        let to = dir.with_extension(format!("{why}-{}", crate::net::hub::system_now_ms()));
        std::fs::rename(dir, &to).map_err(io(dir))?;
        tracing::warn!(target: "datawall::history", "the history in {} cannot be continued ({why}); moved to {}, starting a new one", dir.display(), to.display());
        Ok(())
    };
    if let Some(history) = History::open(dir)? {
        if let Some(why) = history.meta.mismatch(county) {
            anyhow::bail!(
                "the history in {} cannot be continued: {why}; pass another --history-dir (or remove that folder)",
                dir.display()
            );
        }
        if history.meta.epoch != epoch {
            aside("other-epoch")?;
        } else {
            let end = history.state_at(county, At::End)?;
            let last_message = end.seq >> EVENT_INDEX_BITS;
            // A checkpoint at the very end (a clean stop writes one) says its last message
            // was written whole.
            let whole = history.checkpoints.last().is_some_and(|c| c.seq == end.seq);
            match end.damaged {
                Some(_) => aside("damaged")?,
                None if last_message > 0
                    && !whole
                    && !drop_from(&history, last_message << EVENT_INDEX_BITS)? =>
                {
                    aside("unfinished")?
                }
                None => {
                    // Read again without the last message (or a torn line after it).
                    let history = History::open(dir)?
                        .ok_or_else(|| anyhow::anyhow!("{} went away", dir.display()))?;
                    if let Some(last) = history.segments.last() {
                        trim_torn_tail(&last.path)?;
                    }
                    let rebuilt = history.state_at(county, At::End)?;
                    let stream_seq = rebuilt.seq >> EVENT_INDEX_BITS;
                    if stream_first_seq > stream_seq + 1 {
                        aside("behind-the-stream")?;
                    } else {
                        eprintln!(
                            "datawall: continuing the history in {} from stream message {} (the stream holds what follows)",
                            dir.display(),
                            stream_seq + 1
                        );
                        return Ok(BackboneHistory {
                            writer: Writer::create(dir, &history.meta, days)?,
                            restore: Some(Restore {
                                state: rebuilt.state,
                                last_seq: rebuilt.seq,
                                stream_seq,
                            }),
                        });
                    }
                }
            }
        }
    }
    Ok(BackboneHistory {
        writer: Writer::create(dir, &Meta::of(county, epoch), days)?,
        restore: None,
    })
}

/// Remove every event from `cut` on (and checkpoints at or after it) from the history's
/// plain segments; false when one of them is compressed (it cannot be cut in place).
fn drop_from(history: &History, cut: Seq) -> Result<bool, HistoryError> {
    for cp in history.checkpoints.iter().filter(|c| c.seq >= cut) {
        std::fs::remove_file(&cp.path).map_err(io(&cp.path))?;
    }
    let segments = &history.segments;
    for (k, seg) in segments.iter().enumerate().rev() {
        if seg.seq >= cut {
            std::fs::remove_file(&seg.path).map_err(io(&seg.path))?;
            continue;
        }
        // The segment holding `cut`, unless the next one began exactly there.
        if segments.get(k + 1).is_some_and(|n| n.seq == cut) {
            break;
        }
        if is_gz(&seg.path) {
            return Ok(false);
        }
        let text = std::fs::read_to_string(&seg.path).map_err(io(&seg.path))?;
        let mut out = String::with_capacity(text.len());
        for line in text.lines().filter(|l| {
            serde_json::from_str::<(Seq, serde::de::IgnoredAny)>(l).is_ok_and(|(seq, _)| seq < cut)
        }) {
            out.push_str(line);
            out.push('\n');
        }
        std::fs::write(&seg.path, out).map_err(io(&seg.path))?;
        break;
    }
    Ok(true)
}

/// Cut a plain segment back to its last complete line.
fn trim_torn_tail(path: &Path) -> Result<(), HistoryError> {
    if is_gz(path) {
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(io(path))?;
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if keep < bytes.len() {
        tracing::warn!(target: "datawall::history", "{}: dropping a torn last line ({} bytes) left by a crash", path.display(), bytes.len() - keep);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io(path))?;
        f.set_len(keep as u64).map_err(io(path))?;
    }
    Ok(())
}

/// What the simulator of a history ran with (`DIR/simulator.json`): a gateway restarted on
/// the history continues the same simulation.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct SimulatorRun {
    seed: u64,
    start_ms: TimestampMs,
    scale: f64,
}

/// The live start of the simulation this history holds: the one it was started with
/// (recorded on the first run), so a restart continues the same simulation instead of
/// repeating its ids. Warns when the seed or scale changed (the continuation will not match).
pub fn simulator_start(
    dir: &Path,
    cfg: &crate::sim::SimConfig,
) -> Result<TimestampMs, HistoryError> {
    let path = dir.join("simulator.json");
    let now = SimulatorRun {
        seed: cfg.seed,
        start_ms: cfg.start_ms,
        scale: cfg.scale,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let run: SimulatorRun =
                serde_json::from_slice(&bytes).map_err(|e| HistoryError::Corrupt {
                    path: path.display().to_string(),
                    line: 1,
                    what: e.to_string(),
                })?;
            if (run.seed, run.scale) != (now.seed, now.scale) {
                tracing::warn!(target: "datawall::history", "the history was simulated with --seed {} --scale {}, this run has --seed {} --scale {}: the simulation will not continue it (its events will be refused as duplicates); pass the same flags or another --history-dir", run.seed, run.scale, now.seed, now.scale);
            }
            Ok(run.start_ms)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let json = serde_json::to_vec(&now).map_err(|e| HistoryError::Other(e.to_string()))?;
            write_atomic(&path, &json)?;
            Ok(now.start_ms)
        }
        Err(e) => Err(io(&path)(e)),
    }
}
