//! Opening a spool: lock the directory, recover what is there, make the disk
//! match what was recovered, and hand a ready writer to the caller.

use std::io;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::config::SpoolConfig;
use crate::format::LOCK_FILE;
use crate::index::Index;
use crate::recovery::recover;
use crate::room::Room;
use crate::shared::{Shared, State};
use crate::storage::Storage;
use crate::writer::Writer;
use crate::{Recovery, SpoolError};

/// Does the blocking part of [`crate::Spool::open`].
pub(crate) fn open_blocking(
    config: SpoolConfig,
    storage: Arc<dyn Storage>,
    cache_bytes: u64,
) -> Result<(Arc<Shared>, Writer, Recovery), SpoolError> {
    let dir = storage.dir().to_path_buf();
    let lock = storage.lock().map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => SpoolError::Locked { dir: dir.clone() },
        _ => SpoolError::io("lock spool directory", dir.join(LOCK_FILE), e),
    })?;
    let recovered = recover(&*storage, cache_bytes)?;
    let next_id = recovered.next_id;

    let mut index = Index::new(cache_bytes);
    let mut cuts = Vec::new();
    for segment in recovered.segments {
        let reader = storage
            .open_read(&segment.name)
            .map_err(|e| SpoolError::io("open segment", dir.join(&segment.name), e))?;
        index.push_segment(segment.first_id, segment.name.clone(), reader);
        index.add_unindexed_bytes(segment.damaged_bytes);
        for entry in segment.entries {
            index.insert(
                entry.id,
                entry.offset,
                entry.records,
                entry.data_len,
                entry.data,
                entry.live,
            );
        }
        if let Some(len) = segment.truncate_to
            && segment.first_id != next_id
        {
            cuts.push((segment.first_id, segment.name, len));
        }
    }
    let ledger_bytes = recovered.ledger.bytes;
    let used = index.disk_bytes() + ledger_bytes;
    let shared = Arc::new(Shared {
        room: Room::new(config.max_bytes, used),
        config,
        state: Mutex::new(State {
            index,
            ledger: recovered.ledger.ledger,
            ledger_bytes,
            in_flight: 0,
            dropped: Default::default(),
            corrupt_entries: recovered.report.corrupt_entries,
            closed: false,
        }),
        events: Notify::new(),
        ledger_shrank: Notify::new(),
    });
    let mut writer = Writer::new(shared.clone(), storage.clone(), next_id, lock);
    // Order matters for a crash in the middle of opening:
    // 1. the new active segment: its name records the highest id handed out,
    //    of which a torn tail about to be cut may have been the only trace;
    writer.start_segment(next_id)?;
    writer.delete_dead();
    // 2. the acknowledgement log rewritten from what was recovered: it
    //    forgets ids of deleted segments and records damaged and skipped ids
    //    as dead, so that a crash before 3. does not count them as corrupt
    //    again;
    writer.compact_dead_log()?;
    //    and the drop ledger rewritten with the unsettled drops only (the
    //    settled ones' ids are dead in the log just written, as far as their
    //    segments are still there);
    writer.compact_ledger()?;
    // 3. the tails cut (of the segments still there).
    for (first_id, name, len) in cuts {
        if !shared.lock().index.has_segment(first_id) {
            continue;
        }
        let cut = storage.open_append(&name).and_then(|mut file| {
            file.set_len(len)?;
            file.sync_data()
        });
        cut.map_err(|e| SpoolError::io("truncate segment", dir.join(&name), e))?;
    }
    Ok((shared, writer, recovered.report))
}
