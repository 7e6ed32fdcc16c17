//! The writer thread: the only code that writes files or changes which
//! entries are live, one cycle at a time.
//!
//! A cycle takes every command that queued up while the previous cycle ran
//! (group commit), then:
//! 1. appends: encodes all entries into one buffer, one `write`, one
//!    `fdatasync` (more only when the batch crosses into a new segment);
//!    only then are they indexed (readable) and their callers answered;
//! 2. kills (acknowledgements, corruption found by reads): appends the ids
//!    that are live to the acknowledgement log with one `write`, then marks
//!    them dead. The log is fsynced lazily: before any segment is deleted,
//!    at close, and at most [`ACK_SYNC_DELAY`] after a write, so that acks
//!    never cost the appends an fsync;
//! 3. housekeeping: deletes dead segments (giving their bytes back to the
//!    bound), makes room for appends that asked, compacts the log;
//! 4. wakes readers and waiters.
//!
//! After a failed write or fsync the segment is abandoned: cut back to its
//! durable length (best effort), sealed, and the next append starts a new
//! segment file. The failed entries' ids are handed out again: no caller
//! ever saw them, and recovery ignores ids of a segment that belong to the
//! next one, so leftovers in the abandoned file can never shadow them.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use bytes::Bytes;

use crate::config::MAX_SUMMARY_BYTES;
use crate::format::{
    self, DEAD_LOG, DEAD_LOG_TMP, DEAD_RECORD_LEN, ENTRY_HEADER_LEN, LEDGER, LEDGER_TMP,
    SEGMENT_HEADER_LEN, encode_dead, encode_drop, encode_entry, encode_segment_header,
    encode_settle, segment_name,
};
use crate::index::{Planned, Source};
use crate::queue::{Queued, Received, Receiver};
use crate::shared::Shared;
use crate::storage::{AppendFile, DirLock, Storage};
use crate::{Dropped, EntryId, NewEntry, SpoolError};

/// Most append bytes gathered into one group commit.
const MAX_GROUP_BYTES: u64 = 16 * 1024 * 1024;
/// Appends smaller than this together wait up to the commit delay for
/// company (see [`crate::SpoolConfig::commit_delay`]).
const LINGER_BYTES: u64 = 256 * 1024;
/// The acknowledgement log is compacted once it is this big, and again each
/// time it doubles.
const MIN_COMPACT_BYTES: u64 = 64 * 1024;
/// Longest an acknowledgement stays in the page cache before it is fsynced.
pub(crate) const ACK_SYNC_DELAY: Duration = Duration::from_millis(100);

pub(crate) enum Command {
    Append {
        entries: Vec<NewEntry>,
        /// Frame bytes of the entries, already taken from the bound.
        frame_bytes: u64,
        reply: oneshot::Sender<Result<Vec<EntryId>, SpoolError>>,
    },
    Kill {
        ids: Vec<u64>,
        cause: Cause,
        reply: Option<KillReply>,
    },
    MakeRoom {
        bytes: u64,
        drop_oldest: bool,
        reply: oneshot::Sender<Result<RoomMade, SpoolError>>,
    },
    Settle {
        ids: Vec<u64>,
        reply: SettleReply,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

impl Queued for Command {
    fn append_bytes(&self) -> u64 {
        match self {
            Command::Append { frame_bytes, .. } => *frame_bytes,
            _ => 0,
        }
    }

    /// Closing or freeing room must not wait for a group's company.
    fn urgent(&self) -> bool {
        matches!(self, Command::Close { .. } | Command::MakeRoom { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    Ack,
    Corrupt,
}

struct Call {
    entries: Vec<NewEntry>,
    frame_bytes: u64,
    reply: oneshot::Sender<Result<Vec<EntryId>, SpoolError>>,
}

/// A call encoded into the write buffer.
struct Encoded {
    call: Call,
    first_id: u64,
    /// Offsets of its frames in the buffer.
    offsets: Vec<u64>,
}

type KillReply = oneshot::Sender<Result<(), SpoolError>>;
type SettleReply = oneshot::Sender<Result<(), SpoolError>>;

struct Kill {
    ids: Vec<u64>,
    cause: Cause,
    reply: Option<KillReply>,
}

struct RoomRequest {
    bytes: u64,
    drop_oldest: bool,
    reply: oneshot::Sender<Result<RoomMade, SpoolError>>,
}

/// What a [`Command::MakeRoom`] did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RoomMade {
    pub dropped: Dropped,
    /// More would have been dropped but the drop ledger is at its share of
    /// the bound: nothing more can go until drops are settled.
    pub ledger_full: bool,
}

/// The segment being appended to.
struct Active {
    name: String,
    file: Box<dyn AppendFile>,
    /// Durable length of the file.
    len: u64,
    entries: u64,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    storage: Arc<dyn Storage>,
    /// `None` after a failed write until the next segment is started.
    active: Option<Active>,
    /// The id the next appended entry gets.
    next_id: u64,
    /// `None` after a failed write: the next use rewrites it whole.
    dead_log: Option<Box<dyn AppendFile>>,
    dead_log_len: u64,
    /// Since when the log has records that are not fsynced.
    dead_log_dirty: Option<Instant>,
    compact_at: u64,
    segment_bytes: u64,
    buf: Vec<u8>,
    /// Segments whose deletion failed, to warn once about each.
    undeletable: HashSet<u64>,
    /// How long a small append may wait for others to share its fsync.
    commit_delay: Duration,
    /// The drop ledger; `None` after a failed write: the next use rewrites
    /// it whole from memory.
    ledger: Option<Box<dyn AppendFile>>,
    lock: Option<DirLock>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        storage: Arc<dyn Storage>,
        next_id: u64,
        lock: DirLock,
    ) -> Self {
        let segment_bytes = shared.config.effective_segment_bytes();
        let commit_delay = shared.config.commit_delay;
        Writer {
            commit_delay,
            shared,
            storage,
            active: None,
            next_id,
            dead_log: None,
            dead_log_len: 0,
            dead_log_dirty: None,
            compact_at: MIN_COMPACT_BYTES,
            segment_bytes,
            buf: Vec::new(),
            undeletable: HashSet::new(),
            ledger: None,
            lock: Some(lock),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.storage.dir().join(name)
    }

    /// Serves commands until [`Command::Close`] or until every handle is gone.
    pub(crate) fn run(mut self, commands: Receiver<Command>) {
        let mut close_reply = None;
        loop {
            let deadline = self.dead_log_dirty.map(|since| since + ACK_SYNC_DELAY);
            let first = match commands.recv(deadline) {
                Received::Command(command) => command,
                Received::Timeout => {
                    self.sync_dead_log_or_warn();
                    continue;
                }
                Received::Disconnected => break,
            };
            let mut bytes = first.append_bytes();
            // A small append waits up to the commit delay for others to
            // share its fsync (a large one, or a full group, goes at once;
            // so does anything urgent queued meanwhile).
            if bytes > 0 && bytes < LINGER_BYTES && !self.commit_delay.is_zero() {
                commands.linger(Instant::now() + self.commit_delay, LINGER_BYTES - bytes);
            }
            let mut batch = vec![first];
            commands.take(&mut batch, &mut bytes, MAX_GROUP_BYTES);
            close_reply = self.cycle(batch);
            if close_reply.is_some() {
                break;
            }
        }
        self.close();
        // Commands still queued are dropped with the receiver: their callers
        // see the reply channel close and report `Closed`.
        drop(commands);
        if let Some(reply) = close_reply {
            let _ = reply.send(());
        }
    }

    /// One group commit. Returns the reply of a close request, if any.
    fn cycle(&mut self, batch: Vec<Command>) -> Option<oneshot::Sender<()>> {
        let mut appends = Vec::new();
        let mut kills = Vec::new();
        let mut rooms = Vec::new();
        let mut settles = Vec::new();
        let mut close = None;
        for command in batch {
            match command {
                Command::Append {
                    entries,
                    frame_bytes,
                    reply,
                } => appends.push(Call {
                    entries,
                    frame_bytes,
                    reply,
                }),
                Command::Kill { ids, cause, reply } => kills.push(Kill { ids, cause, reply }),
                Command::MakeRoom {
                    bytes,
                    drop_oldest,
                    reply,
                } => rooms.push(RoomRequest {
                    bytes,
                    drop_oldest,
                    reply,
                }),
                Command::Settle { ids, reply } => settles.push((ids, reply)),
                Command::Close { reply } => close = Some(reply),
            }
        }
        if !appends.is_empty() {
            self.commit_appends(appends);
        }
        let acked = self.commit_kills(kills);
        self.settle(settles);
        self.housekeeping(rooms);
        // Acknowledgements resolve after the segments they emptied are gone.
        for (reply, result) in acked {
            let _ = reply.send(result);
        }
        if self
            .dead_log_dirty
            .is_some_and(|since| since.elapsed() >= ACK_SYNC_DELAY)
        {
            self.sync_dead_log_or_warn();
        }
        self.shared.events.notify_waiters();
        close
    }

    // ---- appends ----

    fn commit_appends(&mut self, calls: Vec<Call>) {
        let mut batch: Vec<Encoded> = Vec::with_capacity(calls.len());
        self.buf.clear();
        let mut calls = calls.into_iter();
        while let Some(call) = calls.next() {
            if self.needs_roll(call.frame_bytes) {
                if !batch.is_empty() {
                    self.flush(&mut batch);
                }
                if let Err(error) = self.roll() {
                    self.fail(call, &error);
                    for call in calls {
                        self.fail(call, &error);
                    }
                    return;
                }
            }
            let first_id = self.next_id;
            let mut offsets = Vec::with_capacity(call.entries.len());
            for entry in &call.entries {
                offsets.push(self.buf.len() as u64);
                encode_entry(&mut self.buf, self.next_id, entry.records, &entry.data);
                self.next_id += 1;
            }
            batch.push(Encoded {
                call,
                first_id,
                offsets,
            });
        }
        if !batch.is_empty() {
            self.flush(&mut batch);
        }
    }

    /// Whether a call of `frame_bytes` must go to a new segment. One call
    /// never spans two segments, so a segment exceeds its size only when a
    /// single call is bigger than it.
    fn needs_roll(&self, frame_bytes: u64) -> bool {
        match &self.active {
            None => true,
            Some(active) => {
                let holds = active.entries > 0 || !self.buf.is_empty();
                let size = active.len - SEGMENT_HEADER_LEN as u64 + self.buf.len() as u64;
                holds && size + frame_bytes > self.segment_bytes
            }
        }
    }

    /// Writes and fsyncs the buffer, then indexes and confirms its calls.
    fn flush(&mut self, batch: &mut Vec<Encoded>) {
        let active = self
            .active
            .as_mut()
            .expect("a segment is active when flushing");
        let written = match active.file.write_all(&self.buf) {
            Ok(()) => active.file.sync_data().map_err(|e| ("fsync segment", e)),
            Err(e) => Err(("write segment", e)),
        };
        match written {
            Ok(()) => {
                let base = active.len;
                active.len += self.buf.len() as u64;
                let count: u64 = batch.iter().map(|e| e.call.entries.len() as u64).sum();
                active.entries += count;
                {
                    let mut state = self.shared.lock();
                    for encoded in batch.iter() {
                        let entries = encoded.call.entries.iter().zip(&encoded.offsets);
                        for (id, (entry, offset)) in (encoded.first_id..).zip(entries) {
                            let data_len = entry.data.len() as u32;
                            let data = Some(entry.data.clone());
                            state.index.insert(
                                id,
                                base + offset,
                                entry.records,
                                data_len,
                                data,
                                true,
                            );
                        }
                    }
                    state.in_flight -= count;
                }
                for encoded in batch.drain(..) {
                    let count = encoded.call.entries.len() as u64;
                    let ids = (encoded.first_id..encoded.first_id + count)
                        .map(EntryId)
                        .collect();
                    let _ = encoded.call.reply.send(Ok(ids));
                }
            }
            Err((op, e)) => {
                let error = SpoolError::io(op, self.storage.dir().join(&active.name), e);
                self.next_id = batch[0].first_id;
                self.abandon_active();
                for encoded in batch.drain(..) {
                    self.fail(encoded.call, &error);
                }
            }
        }
        self.buf.clear();
    }

    /// Answers a call that was not made durable and gives its room back.
    fn fail(&self, call: Call, error: &SpoolError) {
        self.shared.room.give_back(call.frame_bytes);
        self.shared.lock().in_flight -= call.entries.len() as u64;
        let _ = call.reply.send(Err(error.clone()));
    }

    /// Stops appending to the active segment after a failed write or fsync.
    /// Whatever the kernel did with the failed bytes, later appends go to a
    /// fresh file whose own fsyncs tell the truth.
    fn abandon_active(&mut self) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        self.shared.lock().index.seal_active();
        let cut = active
            .file
            .set_len(active.len)
            .and_then(|()| active.file.sync_data());
        if let Err(e) = cut {
            // The failed bytes may still be on disk. A newer segment makes
            // recovery ignore them (they carry its ids), so start one now.
            tracing::warn!(
                segment = %active.name,
                "cannot cut a spool segment back after a failed write ({e}); starting a new segment"
            );
            drop(active);
            if let Err(e) = self.roll() {
                tracing::warn!("cannot start a new spool segment either: {e}");
            }
        }
    }

    fn roll(&mut self) -> Result<(), SpoolError> {
        let started = self.start_segment(self.next_id);
        if started.is_err() && self.active.take().is_some() {
            // The new segment's file may exist now. Its name says that ids
            // from `next_id` on belong to it, so none may go to the old
            // segment any more: the next append retries the new one.
            self.shared.lock().index.seal_active();
        }
        started
    }

    /// Makes `segment_name(first_id)` the active segment: header written,
    /// file and directory entry fsynced before any entry goes in.
    pub(crate) fn start_segment(&mut self, first_id: u64) -> Result<(), SpoolError> {
        let name = segment_name(first_id);
        let path = self.path(&name);
        let io = |op| {
            let path = path.clone();
            move |e: io::Error| SpoolError::io(op, path, e)
        };
        let mut file = self
            .storage
            .open_append(&name)
            .map_err(io("create segment"))?;
        // The name may exist without entries (abandoned after its first write
        // failed, or left empty by a crash): start it afresh.
        file.set_len(0).map_err(io("reset segment"))?;
        file.write_all(&encode_segment_header(first_id))
            .map_err(io("write segment header"))?;
        file.sync_data().map_err(io("fsync segment"))?;
        self.storage.sync_dir().map_err(|e| {
            SpoolError::io("fsync spool directory", self.storage.dir().to_path_buf(), e)
        })?;
        let reader = self.storage.open_read(&name).map_err(io("open segment"))?;
        let freed = self
            .shared
            .lock()
            .index
            .push_segment(first_id, name.clone(), reader);
        self.shared.room.give_back(freed);
        self.active = Some(Active {
            name,
            file,
            len: SEGMENT_HEADER_LEN as u64,
            entries: 0,
        });
        Ok(())
    }

    // ---- acknowledgements and corruption ----

    /// Returns the replies to send once housekeeping is done.
    fn commit_kills(&mut self, kills: Vec<Kill>) -> Vec<(KillReply, Result<(), SpoolError>)> {
        if kills.is_empty() {
            return Vec::new();
        }
        let (mut acked, mut corrupt) = (Vec::new(), Vec::new());
        {
            let state = self.shared.lock();
            for kill in &kills {
                let live = kill
                    .ids
                    .iter()
                    .copied()
                    .filter(|&id| state.index.is_live(id));
                match kill.cause {
                    Cause::Ack => acked.extend(live),
                    Cause::Corrupt => corrupt.extend(live),
                }
            }
        }
        let mut logged: Vec<u64> = acked.iter().chain(&corrupt).copied().collect();
        logged.sort_unstable();
        logged.dedup();
        let result = if logged.is_empty() {
            Ok(())
        } else {
            self.log_dead(&logged)
        };
        {
            let mut state = self.shared.lock();
            // Corruption stays a fact even if logging it failed: the next open
            // finds it again.
            for &id in &corrupt {
                if state.index.kill(id).is_some() {
                    state.corrupt_entries += 1;
                }
            }
            if result.is_ok() {
                for &id in &acked {
                    state.index.kill(id);
                }
            }
        }
        kills
            .into_iter()
            .filter_map(|kill| kill.reply)
            .map(|reply| (reply, result.clone()))
            .collect()
    }

    /// Appends records for the sorted ids to the acknowledgement log (fsynced
    /// later, see [`Writer::sync_dead_log`]).
    fn log_dead(&mut self, ids: &[u64]) -> Result<(), SpoolError> {
        let mut records = Vec::new();
        let mut start = ids[0];
        for pair in ids.windows(2) {
            if pair[1] != pair[0] + 1 {
                encode_dead(&mut records, start, pair[0] + 1);
                start = pair[1];
            }
        }
        encode_dead(&mut records, start, ids[ids.len() - 1] + 1);
        if self.dead_log.is_none() {
            self.compact_dead_log()?;
        }
        let file = self.dead_log.as_mut().expect("opened by compaction");
        match file.write_all(&records) {
            Ok(()) => {
                self.dead_log_len += records.len() as u64;
                self.dead_log_dirty.get_or_insert_with(Instant::now);
                Ok(())
            }
            Err(e) => {
                // Rewrite the log whole before its next use rather than append
                // after bytes in an unknown state.
                self.dead_log = None;
                Err(SpoolError::io(
                    "write acknowledgement log",
                    self.path(DEAD_LOG),
                    e,
                ))
            }
        }
    }

    /// Makes every record written to the acknowledgement log durable. After a
    /// failed fsync the log is rewritten whole from memory (which knows every
    /// dead id) instead of trusting the file.
    pub(crate) fn sync_dead_log(&mut self) -> Result<(), SpoolError> {
        if self.dead_log_dirty.is_none() {
            return Ok(());
        }
        let synced = match self.dead_log.as_mut() {
            Some(file) => file.sync_data(),
            None => Err(std::io::ErrorKind::NotFound.into()),
        };
        if synced.is_err() {
            self.dead_log = None;
            self.compact_dead_log()?;
        }
        self.dead_log_dirty = None;
        Ok(())
    }

    fn sync_dead_log_or_warn(&mut self) {
        if let Err(e) = self.sync_dead_log() {
            tracing::warn!("cannot fsync the spool's acknowledgement log, will retry: {e}");
            // Retry after another delay, not in a tight loop.
            self.dead_log_dirty = Some(Instant::now());
        }
    }

    /// Rewrites the acknowledgement log with the dead ids of the segments
    /// still on disk (atomically: a temporary file renamed over it).
    pub(crate) fn compact_dead_log(&mut self) -> Result<(), SpoolError> {
        let ranges = self.shared.lock().index.dead_ranges(self.next_id);
        let mut records = Vec::with_capacity(ranges.len() * DEAD_RECORD_LEN);
        for (start, end) in ranges {
            encode_dead(&mut records, start, end);
        }
        let tmp = self.path(DEAD_LOG_TMP);
        let io = |op| {
            let tmp = tmp.clone();
            move |e: io::Error| SpoolError::io(op, tmp, e)
        };
        let mut file = self
            .storage
            .open_append(DEAD_LOG_TMP)
            .map_err(io("create acknowledgement log"))?;
        file.set_len(0).map_err(io("reset acknowledgement log"))?;
        file.write_all(&records)
            .map_err(io("write acknowledgement log"))?;
        file.sync_data().map_err(io("fsync acknowledgement log"))?;
        self.storage
            .rename(DEAD_LOG_TMP, DEAD_LOG)
            .map_err(io("rename acknowledgement log"))?;
        self.storage.sync_dir().map_err(|e| {
            SpoolError::io("fsync spool directory", self.storage.dir().to_path_buf(), e)
        })?;
        // The handle follows the file through the rename.
        self.dead_log = Some(file);
        self.dead_log_dirty = None;
        self.dead_log_len = records.len() as u64;
        self.compact_at = MIN_COMPACT_BYTES.max(2 * self.dead_log_len);
        Ok(())
    }

    // ---- room ----

    fn housekeeping(&mut self, rooms: Vec<RoomRequest>) {
        self.delete_dead();
        for request in rooms {
            let result = self.make_room(request.bytes, request.drop_oldest);
            let _ = request.reply.send(result);
        }
        // Appends waiting for room while the active segment holds nothing
        // live: start a new segment so the old one can go.
        if self.shared.room.blocked() > 0 && self.shared.lock().index.active_is_dead() {
            match self.roll() {
                Ok(()) => {
                    self.delete_dead();
                }
                Err(e) => tracing::warn!("cannot start a new spool segment to free room: {e}"),
            }
        }
        if self.dead_log_len > self.compact_at
            && let Err(e) = self.compact_dead_log()
        {
            tracing::warn!("cannot compact the spool's acknowledgement log: {e}");
        }
    }

    /// Deletes the segments with nothing live left; returns whether any went.
    pub(crate) fn delete_dead(&mut self) -> bool {
        let dead = self.shared.lock().index.dead_sealed();
        if dead.is_empty() {
            return false;
        }
        // Acknowledgements first: should a crash undo a deletion, the
        // segment comes back with all its entries known dead.
        if let Err(e) = self.sync_dead_log() {
            tracing::warn!(
                "cannot fsync the spool's acknowledgement log; keeping acknowledged segments for now: {e}"
            );
            return false;
        }
        let mut deleted = false;
        for first_id in dead {
            let name = segment_name(first_id);
            match self.storage.remove(&name) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    if self.undeletable.insert(first_id) {
                        tracing::warn!(segment = %name, "cannot delete an acknowledged spool segment ({e}); will retry");
                    }
                }
                _ => {
                    self.undeletable.remove(&first_id);
                    let removed = self.shared.lock().index.remove_segment(first_id);
                    if let Some(segment) = removed {
                        self.shared.room.give_back(segment.disk_bytes);
                    }
                    deleted = true;
                }
            }
        }
        deleted
    }

    /// Frees room for an append of `bytes`: under `drop_oldest`, drops the
    /// live entries of the oldest segments until their deletion covers the
    /// shortfall; otherwise only rolls past a dead active segment.
    fn make_room(&mut self, bytes: u64, drop_oldest: bool) -> Result<RoomMade, SpoolError> {
        let mut dropped = Dropped::default();
        let shortfall = self.shared.room.shortfall(bytes);
        if shortfall == 0 {
            return Ok(RoomMade::default());
        }
        if !drop_oldest {
            if self.shared.lock().index.active_is_dead() {
                self.roll()?;
                self.delete_dead();
            }
            return Ok(RoomMade::default());
        }
        let (_, freeable) = self.shared.lock().index.oldest_to_free(shortfall);
        if freeable < shortfall && self.shared.lock().index.active_has_entries() {
            // Seal the active segment so that it can be dropped too.
            self.roll()?;
        }
        let (chosen, ledger_bytes) = {
            let state = self.shared.lock();
            (state.index.oldest_to_free(shortfall).0, state.ledger_bytes)
        };
        // The ledger first: once a drop is durable there it is never
        // forgotten, and only then may the entries' data go. Whole segments
        // only (dropping part of one frees nothing), and only as many as the
        // ledger's share of the bound takes.
        let cap = self.shared.config.ledger_cap();
        let mut victims: Vec<Planned> = Vec::new();
        let mut summaries = Vec::new();
        let mut records = Vec::new();
        let mut ledger_full = false;
        for first_id in chosen {
            let entries = self.shared.lock().index.live_entries(first_id);
            let mut segment_records = Vec::new();
            let mut segment_summaries = Vec::with_capacity(entries.len());
            for victim in &entries {
                let summary = self.summarize(victim);
                encode_drop(&mut segment_records, victim.id, victim.records, &summary);
                segment_summaries.push(summary);
            }
            if ledger_bytes + (records.len() + segment_records.len()) as u64 > cap {
                ledger_full = true;
                break;
            }
            records.extend(segment_records);
            summaries.extend(segment_summaries);
            victims.extend(entries);
        }
        if !records.is_empty() {
            // The victims' other entries are dead only by acknowledgements
            // that may still be in the page cache. Should a crash follow the
            // ledger write, recovery deletes the victims (paying for the drop
            // records) only if all their entries are dead, so those
            // acknowledgements must be durable first: otherwise a victim comes
            // back with live entries and stays, and the spool reopens holding
            // its bytes and the ledger's, over the bound.
            self.sync_dead_log()?;
            self.write_ledger(&records)?;
        }
        // The ledger's bytes count against the bound like the segments':
        // they take what room is free now and owe the rest, which the
        // segments about to be deleted pay first. (Debt alone would leave
        // the free room takeable: should a deletion fail, an append could
        // then go over the bound.)
        let ledger_added = records.len() as u64;
        self.shared.room.charge(ledger_added);
        let mut ids = Vec::with_capacity(victims.len());
        {
            let mut state = self.shared.lock();
            for (victim, summary) in victims.iter().zip(summaries) {
                if let Some(killed) = state.index.kill(victim.id) {
                    dropped.entries += 1;
                    dropped.records += u64::from(killed.records);
                    state.ledger.add(victim.id, victim.records, summary);
                    ids.push(victim.id);
                }
            }
            state.dropped.entries += dropped.entries;
            state.dropped.records += dropped.records;
        }
        // Also dead in the acknowledgement log, which outlives the ledger's
        // settled records for segments that could not be deleted.
        if !ids.is_empty()
            && let Err(e) = self.log_dead(&ids)
        {
            tracing::warn!(
                "cannot record dropped spool entries as dead (the drop ledger has them): {e}"
            );
        }
        if self.delete_dead()
            && dropped.entries > 0
            && let Err(e) = self.storage.sync_dir()
        {
            // Only matters after a crash: the segments come back, but the
            // ledger keeps their dropped entries dead.
            tracing::warn!("cannot make the deletion of dropped spool segments durable: {e}");
        }
        // Counted once the segments it stands for are gone, so the spool
        // never reports more than its bound.
        self.shared.lock().ledger_bytes += ledger_added;
        Ok(RoomMade {
            dropped,
            ledger_full,
        })
    }

    /// What the ledger keeps of a live entry about to be dropped: the
    /// configured summary of its data, read from memory or from its segment
    /// file (empty when the data cannot be read).
    fn summarize(&self, victim: &Planned) -> Bytes {
        let summarize = self.shared.config.drop_summary;
        let mut summary = match &victim.source {
            Source::Cached(data) => summarize(data),
            Source::Disk {
                file,
                name,
                offset,
                data_len,
            } => {
                let mut frame = vec![0; ENTRY_HEADER_LEN + *data_len as usize];
                let read = file.read_exact_at(&mut frame, *offset);
                match (read, format::decode_frame(&frame)) {
                    (Ok(()), format::Frame::Valid(header)) if header.id == victim.id => {
                        summarize(&frame[ENTRY_HEADER_LEN..])
                    }
                    (read, _) => {
                        tracing::warn!(
                            segment = %name,
                            id = victim.id,
                            error = ?read.err(),
                            "cannot read a spool entry being dropped; its drop is recorded without its summary"
                        );
                        Vec::new()
                    }
                }
            }
        };
        summary.truncate(MAX_SUMMARY_BYTES);
        Bytes::from(summary)
    }

    // ---- the drop ledger ----

    /// Appends records to the ledger and fsyncs them.
    fn write_ledger(&mut self, records: &[u8]) -> Result<(), SpoolError> {
        if self.ledger.is_none() {
            self.compact_ledger()?;
        }
        let file = self.ledger.as_mut().expect("opened by compaction");
        let written = file
            .write_all(records)
            .map_err(|e| ("write drop ledger", e))
            .and_then(|()| file.sync_data().map_err(|e| ("fsync drop ledger", e)));
        written.map_err(|(op, e)| {
            // Rewrite it whole from memory before its next use rather than
            // append after bytes in an unknown state.
            self.ledger = None;
            SpoolError::io(op, self.path(LEDGER), e)
        })
    }

    /// Rewrites the ledger with the unsettled drops only (atomically: a
    /// temporary file renamed over it) and gives the bytes it shed back to
    /// the bound.
    pub(crate) fn compact_ledger(&mut self) -> Result<(), SpoolError> {
        let content = self.shared.lock().ledger.encode();
        let tmp = self.path(LEDGER_TMP);
        let io = |op| {
            let tmp = tmp.clone();
            move |e: io::Error| SpoolError::io(op, tmp, e)
        };
        let mut file = self
            .storage
            .open_append(LEDGER_TMP)
            .map_err(io("create drop ledger"))?;
        file.set_len(0).map_err(io("reset drop ledger"))?;
        file.write_all(&content).map_err(io("write drop ledger"))?;
        file.sync_data().map_err(io("fsync drop ledger"))?;
        self.storage
            .rename(LEDGER_TMP, LEDGER)
            .map_err(io("rename drop ledger"))?;
        self.storage.sync_dir().map_err(|e| {
            SpoolError::io("fsync spool directory", self.storage.dir().to_path_buf(), e)
        })?;
        self.ledger = Some(file);
        let new_len = content.len() as u64;
        let old_len = std::mem::replace(&mut self.shared.lock().ledger_bytes, new_len);
        if old_len > new_len {
            self.shared.room.give_back(old_len - new_len);
            // Appends that could drop nothing more may now.
            self.shared.ledger_shrank.notify_waiters();
        } else {
            self.shared.room.charge(new_len - old_len);
        }
        Ok(())
    }

    /// Settles drops: one fsynced settle record per run of consecutive ids,
    /// then the ledger forgets them (and is compacted once mostly settled).
    fn settle(&mut self, settles: Vec<(Vec<u64>, SettleReply)>) {
        if settles.is_empty() {
            return;
        }
        let mut ids: Vec<u64> = settles
            .iter()
            .flat_map(|(ids, _)| ids.iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let pending: Vec<u64> = {
            let state = self.shared.lock();
            ids.into_iter()
                .filter(|&id| state.ledger.contains(id))
                .collect()
        };
        let result = if pending.is_empty() {
            Ok(())
        } else {
            let mut records = Vec::new();
            let mut start = pending[0];
            for pair in pending.windows(2) {
                if pair[1] != pair[0] + 1 {
                    encode_settle(&mut records, start, pair[0] + 1);
                    start = pair[1];
                }
            }
            encode_settle(&mut records, start, pending[pending.len() - 1] + 1);
            if self.shared.room.try_take(records.len() as u64) {
                self.write_ledger(&records)
                    .map(|()| {
                        let mut state = self.shared.lock();
                        state.ledger.settle(&pending);
                        state.ledger_bytes += records.len() as u64;
                    })
                    .inspect_err(|_| self.shared.room.give_back(records.len() as u64))
            } else {
                // No room even for the settle records: rewrite the ledger
                // without the settled drops instead (which frees room).
                self.shared.lock().ledger.settle(&pending);
                self.compact_ledger()
            }
        };
        if result.is_ok() {
            let (len, compacted) = {
                let state = self.shared.lock();
                (state.ledger_bytes, state.ledger.compacted_len())
            };
            // Settled records are dead weight counted against the bound:
            // shed them once they are a good part of the file (at once when
            // appends wait for room).
            let shed = len.saturating_sub(compacted);
            let worth = MIN_COMPACT_BYTES.min(self.shared.config.ledger_cap() / 4);
            let due = self.shared.room.blocked() > 0 || (shed >= worth && len >= 2 * compacted);
            if shed > 0
                && due
                && let Err(e) = self.compact_ledger()
            {
                tracing::warn!("cannot compact the spool's drop ledger: {e}");
            }
        }
        for (_, reply) in settles {
            let _ = reply.send(result.clone());
        }
    }

    // ---- close ----

    /// Idempotent; also runs on drop, so that a panicking writer leaves a
    /// closed spool behind rather than callers waiting forever.
    fn close(&mut self) {
        // Appends are durable already; acknowledgements become durable now.
        if self.lock.is_some() {
            self.sync_dead_log_or_warn();
        }
        self.active = None;
        self.dead_log = None;
        self.ledger = None;
        self.shared.lock().closed = true;
        self.shared.room.close();
        self.lock = None;
        self.shared.events.notify_waiters();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}
