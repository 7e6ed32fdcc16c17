//! Durable on-disk queue of spooled batches between the agent's socket and its forwarder.
//!
//! Producers [`Spool::append`] entries (one entry is one encoded batch of
//! audit records). An append resolves once its entries are written and
//! fsynced: that is the moment its records are *accepted*, and nothing
//! accepted is lost afterwards, short of the disk itself losing fsynced data.
//! The forwarder [`Spool::read_after`]s entries, ships them, and
//! [`Spool::ack`]s what the control plane committed; the disk space of
//! acknowledged entries comes back when every entry of their segment file is
//! acknowledged.
//!
//! # On-disk format
//!
//! One directory per spool ([`SpoolConfig::dir`]):
//!
//! - `LOCK`: held with an exclusive `flock` while a spool is open on the
//!   directory, so two spools (in one process or two) never share it;
//! - `<first id, 20 digits>.seg`: segment files, named after the id of their
//!   first entry, zero-padded so that names sort like ids;
//! - `acks.log`: the acknowledgement log, ids that are dead (acknowledged or
//!   found corrupt); `acks.log.tmp` is a compaction in progress;
//! - `dropped.log`: the drop ledger, entries [`FullPolicy::DropOldest`]
//!   dropped and not settled yet (see "Full spool" below);
//!   `dropped.log.tmp` is a compaction in progress.
//!
//! The directory is 0700 and every file in it 0600, whatever existed before
//! (an open call makes them so).
//!
//! All integers are little-endian; CRCs are CRC-32 (IEEE, `crc32fast`).
//!
//! ```text
//! segment header, 24 bytes:
//!   "WDNSPOOL" | version u32 (1) | first id u64 | crc of the 20 bytes before it
//! entry frame, repeated until the end of the file:
//!   "WSE1" | header crc u32 | id u64 | records u32 | data length u32 | data crc u32 | data
//!            (header crc covers the 20 bytes after it: id .. data crc)
//! acks.log record, 24 bytes, repeated:
//!   "WSD1" | crc u32 (of the 16 bytes after it) | start id u64 | end id u64 (exclusive)
//! dropped.log records, in any order:
//!   drop:   "WSX1" | crc u32 (of all after it) | id u64 | records u32 | summary length u32 | summary
//!   settle: "WSY1" | crc u32 (of the 16 bytes after it) | start id u64 | end id u64 (exclusive)
//! ```
//!
//! The entry header has its own CRC so that its length can be trusted when
//! only the data is damaged, and so that resynchronising after damage (below)
//! rejects candidates after 28 bytes instead of hashing megabytes.
//!
//! # Invariants
//!
//! 1. One writer thread hands out ids, strictly increasing, starting at 1.
//!    An id returned to a caller never names another entry, also across
//!    restarts (the ids of a failed append, which nobody saw, are reused). A
//!    segment holds increasing ids, all at least its name and below the
//!    next segment's name.
//! 2. An entry enters the in-memory index (becomes readable, acknowledgeable
//!    and counted) only after its frame was written and `fdatasync`ed; its
//!    append resolves only then. Nothing is confirmed or readable before it is
//!    durable.
//! 3. A new segment's header and its directory entry are fsynced before any
//!    entry goes in, so a durable entry never sits in a file whose name could
//!    vanish in a crash.
//! 4. An acknowledged id is written to `acks.log` before it is marked dead,
//!    and `acks.log` is fsynced before any segment file is deleted. So an
//!    acknowledged entry is never returned again by this process, nor after a
//!    clean close; after a crash only entries acknowledged in the last
//!    moments (see below) whose segment still exists can come back.
//! 5. A segment file is deleted only when it is sealed, holds no live entry,
//!    and is not the newest one. The newest segment always exists: its name
//!    is the high-water mark of ids.
//! 6. The bound counts the entry frames of the segment files on disk, live or
//!    dead. An append takes its room before it is written; deleting a
//!    segment (or failing the append) gives the room back.
//!
//! # Group commit
//!
//! Appends are sent to a dedicated writer thread (file I/O never runs on
//! async worker threads). The writer takes every command that queued while
//! its previous cycle ran, encodes all appended entries into one buffer,
//! does one `write` and one `fdatasync` for all of them (two when the batch
//! crosses into a new segment; one append call never spans two segments),
//! then indexes them and answers every caller. Acknowledgements of the same
//! cycle share one write to `acks.log`, which is not fsynced on that path
//! (see below), so acks never slow appends down. Reads are served from
//! the data of recent entries kept in memory (up to `min(max_bytes, 64 MiB)`)
//! and otherwise read from the segment file on a blocking thread, CRC-checked.
//!
//! # Recovery (what [`Spool::open`] does)
//!
//! 1. Lock the directory; list `*.seg` files and sort them by name.
//! 2. Read `acks.log`: whole records with a valid CRC are dead id ranges; a
//!    damaged record is skipped (its entries are delivered again, which is
//!    harmless); a partial record at the end is a torn write.
//! 3. Scan each segment from the end of its header (a damaged header is
//!    reported and otherwise ignored: the name gives the first id). A valid
//!    frame with an id in `[expected, next segment's first id)` is an entry.
//!    Anything else starts a resynchronisation: the scan searches forward for
//!    the next valid entry header with an acceptable id and continues there;
//!    a frame whose header is intact but whose data is damaged is skipped by
//!    its length. Entries whose id is dead are indexed as dead.
//! 4. Bytes after the last valid entry of the **newest** segment are a torn
//!    write: they are cut off and reported as `truncated_bytes`. Because a
//!    damaged last entry looks the same, the next id skips as many ids as the
//!    cut bytes could have held entries, so an id that was handed out is never
//!    reused. An **older** segment held every id below the next segment's
//!    first id: ids missing at its end are damaged entries (counted as
//!    corrupt, see below); bytes after its last valid entry are cut off too
//!    (damaged entries, or the leftover of a failed append).
//! 5. Start the active segment named after the next id (or restart an empty
//!    newest segment of that name), then cut the tails, delete segments with
//!    nothing live, and rewrite `acks.log` from the recovered state.
//!
//! A durable entry is never lost by recovery: the only bytes cut are those
//! after the last valid entry of a file, and damage in the middle of a file
//! never stops the scan.
//!
//! # Acknowledgements across restarts
//!
//! Acknowledgements are persisted, cheaply: one 24-byte record per run of
//! consecutive ids, written once per writer cycle for all the acks of the
//! cycle, and fsynced lazily: at most 100 ms later, before any segment file
//! is deleted, and at close. So after a clean restart only unacknowledged
//! entries come back, and after a crash also those acknowledged in the last
//! 100 ms whose segment was not deleted yet: they are delivered again, which
//! is harmless because the control plane dedupes batches by their batch id.
//! An entry whose segment was deleted never comes back. The log is compacted
//! (rewritten to a temporary file, fsynced, renamed over, directory fsynced)
//! at every open and whenever it doubles: the compacted log holds, for each
//! segment still on disk, the ids in its span that are not live; ids of
//! deleted segments are forgotten. A damaged log record is skipped at open:
//! its entries are delivered again, harmlessly.
//!
//! # A damaged entry in the middle of a segment
//!
//! The scan skips it, counts it in [`Recovery::corrupt_entries`] (and
//! [`SpoolStats::corrupt_entries`]), and goes on reading the rest of the
//! segment and the following segments. Lost entries are counted from the
//! missing ids: ids of the damaged stretch (or missing at the end of an
//! older segment) that are not already known dead. The compacted `acks.log`
//! then records those ids as dead, so the same damage is counted once, not
//! at every start. A read that finds a damaged frame on
//! disk (CRC mismatch after open) does the same at run time: skip, count,
//! log the id dead.
//!
//! # Write failures (disk full, I/O errors)
//!
//! If the `write` or `fdatasync` of a group commit fails (ENOSPC or any
//! other error), every append of that write gets the error, its room is
//! given back, and its entries are neither indexed nor readable. The segment
//! is abandoned: cut back to its durable length and fsynced (best effort),
//! sealed, and the next append starts a new segment file. After an fsync
//! failure the kernel may have dropped the failed pages and would report a
//! later fsync of the same file as a success, so the spool never writes to
//! that file again. The failed ids are handed out again to the next append:
//! no caller ever saw them, and recovery ignores ids in a segment that belong
//! to the next segment, so leftovers in the abandoned file cannot shadow
//! them. Appends keep working once the disk has room again (acknowledged
//! segments are deleted as usual). A failed `acks.log` write fails the
//! acknowledgements of that cycle (their entries stay live); after a failed
//! write or fsync the log is rewritten whole from memory before its next use.
//!
//! # Full spool
//!
//! Appends that find too little room wait their turn in call order, and no
//! append takes room past one that waits, so a caller with several appends
//! in flight gets ids in the order it made them (what `DropOldest` drops is
//! then always the oldest of them). With
//! [`FullPolicy::Backpressure`] an append waits (first come, first
//! served) until deleted segments free enough room. With
//! [`FullPolicy::DropOldest`] it drops the live entries of the oldest
//! segments until deleting those segments covers the shortfall; that is the
//! oldest unacknowledged entries, a whole segment at a time (disk space only
//! comes back a segment at a time). Each drop is counted in
//! [`Appended::dropped`] of the append that caused it and in
//! [`SpoolStats::dropped`]. An entry whose frame is bigger than the bound is
//! refused with [`SpoolError::EntryTooLarge`], an append whose entries
//! together are with [`SpoolError::AppendTooLarge`].
//!
//! # The drop ledger
//!
//! A drop must not be forgotten with the data it drops, so before the
//! writer deletes anything it appends one drop record per dropped entry to
//! `dropped.log` (its id, record count, and what
//! [`SpoolConfig::drop_summary`] makes of its data: the caller decides what
//! identifies an entry) and fsyncs it; only then are the entries marked
//! dead (in `acks.log` too) and their segments deleted. A crash before the
//! fsync drops nothing (the segments are still there); after it, the ledger
//! has the drops, and recovery treats every id the ledger names as dead even
//! if its segment survived. Before the drop records are written,
//! `acks.log` is fsynced, so that after such a crash every entry of the
//! dropped segments is known dead and recovery deletes them: the drop
//! records are paid for by those segments, also across a crash. A crash in
//! the middle of the ledger write may keep some of its records: recovery
//! finds their segment still holding live entries and undoes those drops
//! (nobody saw them), so that a spool never reopens holding a segment and
//! the drop records meant to replace it. The caller reads the drops
//! ([`Spool::read_dropped`]), reports them, and settles them
//! ([`Spool::settle_dropped`]: an fsynced settle record); settled drops are
//! forgotten when the ledger is compacted (rewritten with the unsettled ones
//! only, at open and once settled records are a good part of it, or at once
//! when appends wait for room). [`Spool::wait_drained`] also waits for the
//! ledger to be settled.
//!
//! The ledger counts against `max_bytes` like the segments (a drop record's
//! bytes are paid for by the segment it frees), and may take at most a
//! quarter of it: when it is that full, nothing more can be dropped until
//! drops are settled, and appends wait as under backpressure, so that the
//! accounting of what was dropped is never what gives way. A damaged drop
//! record is skipped at open (counted in [`Recovery::ledger_damaged_bytes`]);
//! a damaged settle record only means a drop is read again.
//!
//! # Known limits
//!
//! - A power loss can persist the pages of an unconfirmed write out of order.
//!   Entries of that write found after a hole are returned (they were written,
//!   just never confirmed), and the hole is counted as corrupt: the spool
//!   cannot tell it from damage.
//! - If cutting an abandoned segment back and starting a new one both fail
//!   and the machine then crashes, an append that returned an error may be
//!   delivered after the restart. Nothing confirmed is lost in any case.
//! - An entry dropped under `DropOldest` while the forwarder holds it may
//!   still be delivered, and is in the ledger all the same: the caller must
//!   make sure it is counted once (the agent names the dropped batch, and the
//!   control plane counts the drop only if it never committed that batch).
//! - A crash during an open that cuts a torn tail, before that open rewrote
//!   `acks.log`, makes the next open count the ids it skipped as corrupt.
//! - The index costs about 80 bytes of memory per entry on disk.

#![warn(missing_docs, unreachable_pub)]

mod config;
mod error;
mod format;
mod index;
mod ledger;
mod open;
mod queue;
mod recovery;
mod room;
mod shared;
mod storage;
mod writer;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

pub use config::{
    DEFAULT_MAX_BYTES, DEFAULT_SEGMENT_BYTES, FullPolicy, MAX_SUMMARY_BYTES, MIN_MAX_BYTES,
    SpoolConfig, no_summary,
};
pub use error::SpoolError;

use format::{ENTRY_HEADER_LEN, decode_frame, frame_len};
use index::{Planned, Source};
use room::Turn;
use shared::Shared;
use storage::{OsStorage, Storage};
use writer::{Cause, Command, Writer};

/// Identifies a spooled entry. Strictly increasing in append order, also
/// across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(
    /// The number itself (1 for the first entry ever appended).
    pub u64,
);

/// An entry to append.
#[derive(Clone, Debug)]
pub struct NewEntry {
    /// How many audit records the entry holds (for drop accounting and stats).
    pub records: u32,
    /// The entry's bytes, opaque to the spool.
    pub data: Bytes,
}

/// An entry read back.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its id, for [`Spool::ack`] and as a read cursor.
    pub id: EntryId,
    /// The record count it was appended with.
    pub records: u32,
    /// Its bytes, as appended.
    pub data: Bytes,
}

/// Entries (and the records in them) dropped to make room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Entries dropped.
    pub entries: u64,
    /// Records in them.
    pub records: u64,
}

/// An entry [`FullPolicy::DropOldest`] dropped, as the drop ledger keeps it
/// until the caller settles the drop ([`Spool::settle_dropped`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedEntry {
    /// The id the entry had.
    pub id: EntryId,
    /// Its record count.
    pub records: u32,
    /// What [`SpoolConfig::drop_summary`] made of its data (empty when the
    /// data could no longer be read).
    pub summary: Bytes,
}

impl std::ops::AddAssign for Dropped {
    fn add_assign(&mut self, other: Dropped) {
        self.entries += other.entries;
        self.records += other.records;
    }
}

/// What an append did.
#[derive(Clone, Debug)]
pub struct Appended {
    /// The ids of the entries, in the order given.
    pub ids: Vec<EntryId>,
    /// What [`FullPolicy::DropOldest`] removed to make room for them.
    pub dropped: Dropped,
}

/// What [`Spool::open`] found.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// Unacknowledged entries recovered (they will be read again).
    pub entries: u64,
    /// Records in them.
    pub records: u64,
    /// Data bytes of those entries.
    pub bytes: u64,
    /// Bytes cut from the ends of segment files (torn writes, leftovers of
    /// failed appends, damaged last entries).
    pub truncated_bytes: u64,
    /// Durable entries found damaged and skipped.
    pub corrupt_entries: u64,
    /// Drops in the ledger not settled yet (they will be read again).
    pub dropped_pending: u64,
    /// Bytes of the drop ledger that could not be read (damage; a drop
    /// whose record is damaged is no longer known).
    pub ledger_damaged_bytes: u64,
}

/// A snapshot of the spool.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpoolStats {
    /// Data bytes of the unacknowledged entries.
    pub bytes: u64,
    /// Unacknowledged entries.
    pub entries: u64,
    /// Records in the unacknowledged entries.
    pub records: u64,
    /// Dropped by [`FullPolicy::DropOldest`] since open.
    pub dropped: Dropped,
    /// Damaged entries found since open (including those found by open).
    pub corrupt_entries: u64,
    /// Bytes counted against the bound: frames in segment files still on
    /// disk, acknowledged or not, and the drop ledger.
    pub disk_bytes: u64,
    /// Drops in the ledger not settled yet.
    pub dropped_pending: u64,
    /// Appends waiting for room now.
    pub blocked_appends: u64,
}

/// The durable queue. Cheap to clone; all clones are one spool. The files
/// stay locked until [`Spool::close`] or until the last clone is dropped.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    commands: queue::Sender<Command>,
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.inner.shared.config.dir)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (creating if needed) the spool in `config.dir`, recovering what
    /// an earlier run left. Fails with [`SpoolError::Locked`] if another spool
    /// has the directory open.
    pub async fn open(config: SpoolConfig) -> Result<(Spool, Recovery), SpoolError> {
        config.validate()?;
        let storage = Arc::new(OsStorage::new(config.dir.clone()));
        let cache_bytes = config.cache_bytes();
        Spool::open_with(config, storage, cache_bytes).await
    }

    /// [`Spool::open`] on any storage, with a read cache of `cache_bytes`.
    pub(crate) async fn open_with(
        config: SpoolConfig,
        storage: Arc<dyn Storage>,
        cache_bytes: u64,
    ) -> Result<(Spool, Recovery), SpoolError> {
        config.validate()?;
        let opened =
            tokio::task::spawn_blocking(move || open::open_blocking(config, storage, cache_bytes))
                .await
                .map_err(|e| match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(_) => SpoolError::Closed,
                })?;
        let (shared, writer, recovery) = opened?;
        let (commands, receiver) = queue::queue();
        let dir = shared.config.dir.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || Writer::run(writer, receiver))
            .map_err(|e| SpoolError::io("start writer thread", dir, e))?;
        let spool = Spool {
            inner: Arc::new(Inner { shared, commands }),
        };
        Ok((spool, recovery))
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.config.dir
    }

    fn send(&self, command: Command) -> Result<(), SpoolError> {
        self.inner
            .commands
            .send(command)
            .map_err(|_| SpoolError::Closed)
    }

    /// Appends entries and resolves once all of them are durable (written and
    /// fsynced). Concurrent callers share fsyncs (group commit). When the
    /// spool is full, waits for room ([`FullPolicy::Backpressure`]) or drops
    /// the oldest entries ([`FullPolicy::DropOldest`]).
    ///
    /// On error none of the entries was confirmed and none is readable.
    pub async fn append(&self, entries: Vec<NewEntry>) -> Result<Appended, SpoolError> {
        if entries.is_empty() {
            return Ok(Appended {
                ids: Vec::new(),
                dropped: Dropped::default(),
            });
        }
        let config = &self.inner.shared.config;
        let mut frame_bytes = 0u64;
        for entry in &entries {
            let size = frame_len(entry.data.len());
            if size > config.max_frame_bytes() {
                return Err(SpoolError::EntryTooLarge {
                    size,
                    max: config.max_frame_bytes(),
                });
            }
            frame_bytes += size;
        }
        if frame_bytes > config.max_append_bytes() {
            return Err(SpoolError::AppendTooLarge {
                size: frame_bytes,
                max: config.max_append_bytes(),
            });
        }
        let (dropped, turn) = self.reserve(frame_bytes).await?;
        let (reply, answer) = oneshot::channel();
        {
            let mut state = self.inner.shared.lock();
            if state.closed {
                drop(state);
                self.inner.shared.room.give_back(frame_bytes);
                return Err(SpoolError::Closed);
            }
            state.in_flight += entries.len() as u64;
        }
        self.send(Command::Append {
            entries,
            frame_bytes,
            reply,
        })?;
        // The append is queued: the next one may take room (and its ids
        // come after these).
        drop(turn);
        let ids = answer.await.map_err(|_| SpoolError::Closed)??;
        Ok(Appended { ids, dropped })
    }

    /// Takes `bytes` of room, waiting or dropping as the policy says. An
    /// append that had to wait returns its turn, which the next waiting
    /// append waits for until this one is in the writer's queue.
    async fn reserve(&self, bytes: u64) -> Result<(Dropped, Option<Turn<'_>>), SpoolError> {
        let shared = &self.inner.shared;
        let mut dropped = Dropped::default();
        if shared.room.try_take_unqueued(bytes) {
            return Ok((dropped, None));
        }
        let turn = Some(shared.room.turn().await);
        if shared.room.try_take(bytes) {
            return Ok((dropped, turn));
        }
        let drop_oldest = shared.config.full_policy == FullPolicy::DropOldest;
        loop {
            let mut shrank = pin!(shared.ledger_shrank.notified());
            shrank.as_mut().enable();
            // Ask the writer to free what it can: segments with nothing live
            // left (including the active one), and under DropOldest the
            // oldest entries.
            let (reply, answer) = oneshot::channel();
            self.send(Command::MakeRoom {
                bytes,
                drop_oldest,
                reply,
            })?;
            let made = answer.await.map_err(|_| SpoolError::Closed)??;
            dropped += made.dropped;
            if !drop_oldest {
                shared.room.take(bytes).await?;
                return Ok((dropped, turn));
            }
            // What is left may be room other appends took but have not
            // written yet: once written it can be dropped, so retry after
            // the next writer cycle unless the room comes first.
            let mut changed = pin!(shared.events.notified());
            changed.as_mut().enable();
            if shared.room.try_take(bytes) {
                return Ok((dropped, turn));
            }
            if shared.lock().closed {
                return Err(SpoolError::Closed);
            }
            if made.dropped.entries > 0 {
                // The drop freed about the shortfall, but the drop records
                // it added to the ledger took part of that back: ask again
                // at once. Waiting for a writer cycle here could wait for
                // ever, as nothing else may be about to start one (the
                // appends behind this one wait for its turn).
                continue;
            }
            if made.ledger_full {
                // The ledger holds as much as it may: nothing more can be
                // dropped until drops are settled. Wait like backpressure.
                tokio::select! {
                    taken = shared.room.take(bytes) => {
                        taken?;
                        return Ok((dropped, turn));
                    }
                    () = shrank => {}
                }
                continue;
            }
            tokio::select! {
                taken = shared.room.take(bytes) => {
                    taken?;
                    return Ok((dropped, turn));
                }
                () = changed => {}
            }
        }
    }

    /// Durable, unacknowledged entries with id > `after` (`None`: from the
    /// oldest), in id order: at most `max_entries` and about `max_bytes` of
    /// data, but always at least one entry. Waits until at least one exists.
    pub async fn read_after(
        &self,
        after: Option<EntryId>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, SpoolError> {
        let shared = &self.inner.shared;
        let mut after = after.map(|id| id.0);
        loop {
            let mut changed = pin!(shared.events.notified());
            changed.as_mut().enable();
            let planned = {
                let state = shared.lock();
                if state.closed {
                    return Err(SpoolError::Closed);
                }
                state.index.plan_read(after, max_entries, max_bytes)
            };
            let Some(last) = planned.last() else {
                changed.await;
                continue;
            };
            let last = last.id;
            let entries = self.load(planned).await?;
            if !entries.is_empty() {
                return Ok(entries);
            }
            // Everything planned was damaged or died meanwhile: go on after it.
            after = Some(last);
        }
    }

    /// Fetches the data of planned entries, from memory or from disk.
    async fn load(&self, planned: Vec<Planned>) -> Result<Vec<Entry>, SpoolError> {
        let from_disk = planned
            .iter()
            .any(|p| matches!(p.source, Source::Disk { .. }));
        if !from_disk {
            return Ok(planned
                .into_iter()
                .map(|p| match p.source {
                    Source::Cached(data) => Entry {
                        id: EntryId(p.id),
                        records: p.records,
                        data,
                    },
                    Source::Disk { .. } => unreachable!("checked above"),
                })
                .collect());
        }
        let dir = self.inner.shared.config.dir.clone();
        let loaded = tokio::task::spawn_blocking(move || read_planned(planned, &dir))
            .await
            .map_err(|e| match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => SpoolError::Closed,
            })??;
        let (entries, corrupt): (Vec<_>, Vec<_>) = loaded.into_iter().partition(|r| r.is_ok());
        let corrupt: Vec<u64> = corrupt.into_iter().filter_map(|r| r.err()).collect();
        if !corrupt.is_empty() {
            tracing::warn!(ids = ?corrupt, "damaged entries in a spool segment; skipping them");
            let (reply, answer) = oneshot::channel();
            self.send(Command::Kill {
                ids: corrupt,
                cause: Cause::Corrupt,
                reply: Some(reply),
            })?;
            // The entries are dead and counted either way; failing to log them
            // only means the next open finds and counts them again.
            if let Err(e) = answer.await.map_err(|_| SpoolError::Closed)? {
                tracing::warn!("cannot record damaged spool entries as dead: {e}");
            }
        }
        // The lock was released while reading: leave out what was
        // acknowledged or dropped meanwhile.
        let state = self.inner.shared.lock();
        Ok(entries
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| state.index.is_live(e.id.0))
            .collect())
    }

    /// Marks entries delivered (any order; unknown or already dead ids are
    /// ignored). Resolves once the acknowledgement is recorded (written to
    /// the acknowledgement log, fsynced within 100 ms) and the segments it
    /// emptied are deleted, which wakes appends waiting for room. An
    /// acknowledged entry is never read again; after a crash it may be if its
    /// segment still existed and its record was not fsynced yet.
    pub async fn ack(&self, ids: &[EntryId]) -> Result<(), SpoolError> {
        let live: Vec<u64> = {
            let state = self.inner.shared.lock();
            if state.closed {
                return Err(SpoolError::Closed);
            }
            ids.iter()
                .map(|id| id.0)
                .filter(|&id| state.index.is_live(id))
                .collect()
        };
        if live.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Kill {
            ids: live,
            cause: Cause::Ack,
            reply: Some(reply),
        })?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Drops in the ledger not settled yet with id > `after` (`None`: from
    /// the oldest), oldest first, at most `max_entries` but at least one:
    /// waits until there is one. What [`FullPolicy::DropOldest`] dropped is
    /// read here until [`Spool::settle_dropped`], across restarts too.
    pub async fn read_dropped(
        &self,
        after: Option<EntryId>,
        max_entries: usize,
    ) -> Result<Vec<DroppedEntry>, SpoolError> {
        let shared = &self.inner.shared;
        loop {
            let mut changed = pin!(shared.events.notified());
            changed.as_mut().enable();
            {
                let state = shared.lock();
                if state.closed {
                    return Err(SpoolError::Closed);
                }
                let pending = state.ledger.read(after.map(|id| id.0), max_entries);
                if !pending.is_empty() {
                    return Ok(pending);
                }
            }
            changed.await;
        }
    }

    /// Marks drops as settled (reported where they had to go): the ledger
    /// forgets them. Unknown or settled ids are ignored. Resolves once the
    /// settlement is written and fsynced; a settlement lost in a crash only
    /// means the drop is read again.
    pub async fn settle_dropped(&self, ids: &[EntryId]) -> Result<(), SpoolError> {
        if ids.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Settle {
            ids: ids.iter().map(|id| id.0).collect(),
            reply,
        })?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SpoolStats {
        self.inner.shared.stats()
    }

    /// Resolves when every appended entry has been acknowledged (or dropped)
    /// and every drop settled, or when the spool is closed.
    pub async fn wait_drained(&self) {
        let shared = &self.inner.shared;
        loop {
            let mut changed = pin!(shared.events.notified());
            changed.as_mut().enable();
            {
                let state = shared.lock();
                if state.closed
                    || (state.index.totals().entries == 0
                        && state.in_flight == 0
                        && state.ledger.is_empty())
                {
                    return;
                }
            }
            changed.await;
        }
    }

    /// Stops the writer and releases the directory. Appends already handed to
    /// the writer complete first; every later call fails with
    /// [`SpoolError::Closed`]. Closing twice is fine.
    pub async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::Close { reply }).is_ok() {
            // An error means the writer is already gone, which is the goal.
            let _ = answer.await;
        }
    }
}

/// Reads planned entries from their segment files, checking each frame.
/// `Err(id)` marks an entry whose frame is damaged.
fn read_planned(planned: Vec<Planned>, dir: &Path) -> Result<Vec<Result<Entry, u64>>, SpoolError> {
    planned
        .into_iter()
        .map(|p| match p.source {
            Source::Cached(data) => Ok(Ok(Entry {
                id: EntryId(p.id),
                records: p.records,
                data,
            })),
            Source::Disk {
                file,
                name,
                offset,
                data_len,
            } => {
                let mut frame = vec![0; ENTRY_HEADER_LEN + data_len as usize];
                file.read_exact_at(&mut frame, offset)
                    .map_err(|e| SpoolError::io("read segment", dir.join(&*name), e))?;
                Ok(match decode_frame(&frame) {
                    format::Frame::Valid(header)
                        if header.id == p.id && header.records == p.records =>
                    {
                        let mut data = Bytes::from(frame);
                        Ok(Entry {
                            id: EntryId(p.id),
                            records: p.records,
                            data: data.split_off(ENTRY_HEADER_LEN),
                        })
                    }
                    _ => Err(p.id),
                })
            }
        })
        .collect()
}
