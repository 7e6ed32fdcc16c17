//! Helpers shared by the integration tests (real files in temp directories).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use warden_spool::{Entry, EntryId, FullPolicy, NewEntry, Spool, SpoolConfig};

/// Bytes of a segment header and of an entry frame header, as documented in
/// the crate's format description.
pub const SEGMENT_HEADER: usize = 24;
pub const ENTRY_HEADER: usize = 28;

pub fn config(
    dir: &Path,
    max_bytes: u64,
    segment_bytes: u64,
    full_policy: FullPolicy,
) -> SpoolConfig {
    SpoolConfig {
        max_bytes,
        segment_bytes,
        full_policy,
        ..SpoolConfig::new(dir)
    }
}

/// An entry whose data starts with `tag` (8 bytes) followed by `len` bytes.
pub fn entry(tag: u64, records: u32, len: usize) -> NewEntry {
    let mut data = tag.to_le_bytes().to_vec();
    data.extend((0..len).map(|i| (tag as usize * 31 + i) as u8));
    NewEntry {
        records,
        data: Bytes::from(data),
    }
}

pub fn tag(entry: &Entry) -> u64 {
    u64::from_le_bytes(entry.data[..8].try_into().expect("tagged entry"))
}

pub fn tags(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(tag).collect()
}

pub fn ids(entries: &[Entry]) -> Vec<EntryId> {
    entries.iter().map(|e| e.id).collect()
}

/// Every live entry, oldest first, without waiting for more.
pub async fn read_all(spool: &Spool) -> Vec<Entry> {
    let total = spool.stats().entries as usize;
    let mut out: Vec<Entry> = Vec::new();
    while out.len() < total {
        let after = out.last().map(|e| e.id);
        out.extend(spool.read_after(after, 5, 1 << 20).await.expect("read"));
    }
    out
}

/// Segment files of a spool directory, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Offsets of the entry frames in a segment file written by the spool.
pub fn frame_offsets(file: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut pos = SEGMENT_HEADER;
    while pos + ENTRY_HEADER <= file.len() {
        offsets.push(pos);
        let len =
            u32::from_le_bytes(file[pos + 20..pos + 24].try_into().expect("4 bytes")) as usize;
        pos += ENTRY_HEADER + len;
    }
    offsets
}
