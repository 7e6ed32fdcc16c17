//! Tests that need internal seams: the simulated disk (failure injection,
//! power loss in the middle of a writer cycle, model-based property tests)
//! and reads that bypass the read cache.

mod faults;
mod model;
mod os;

use std::sync::Arc;

use bytes::Bytes;

use crate::sim::SimDisk;
use crate::{Entry, EntryId, FullPolicy, NewEntry, Recovery, Spool, SpoolConfig, SpoolError};

pub(crate) fn config(max_bytes: u64, segment_bytes: u64, full_policy: FullPolicy) -> SpoolConfig {
    SpoolConfig {
        dir: "/sim/spool".into(),
        max_bytes,
        segment_bytes,
        full_policy,
        drop_summary: crate::no_summary,
        commit_delay: std::time::Duration::ZERO,
    }
}

pub(crate) async fn open(
    disk: &SimDisk,
    config: SpoolConfig,
) -> Result<(Spool, Recovery), SpoolError> {
    let cache = config.cache_bytes();
    Spool::open_with(config, Arc::new(disk.clone()), cache).await
}

/// Opens without a read cache, so that every read goes to the segment files.
pub(crate) async fn open_uncached(
    disk: &SimDisk,
    config: SpoolConfig,
) -> Result<(Spool, Recovery), SpoolError> {
    Spool::open_with(config, Arc::new(disk.clone()), 0).await
}

/// An entry whose data starts with `tag`, so tests can tell entries apart by content.
pub(crate) fn entry(tag: u64, records: u32, len: usize) -> NewEntry {
    let mut data = tag.to_le_bytes().to_vec();
    data.extend((0..len).map(|i| (tag as usize + i) as u8));
    NewEntry {
        records,
        data: Bytes::from(data),
    }
}

/// Every live entry, oldest first, without waiting for more.
pub(crate) async fn read_all(spool: &Spool) -> Vec<Entry> {
    let total = spool.stats().entries as usize;
    let mut out: Vec<Entry> = Vec::new();
    while out.len() < total {
        let after = out.last().map(|e| e.id);
        out.extend(spool.read_after(after, 7, 1 << 20).await.expect("read"));
    }
    out
}

pub(crate) fn ids(entries: &[Entry]) -> Vec<EntryId> {
    entries.iter().map(|e| e.id).collect()
}
