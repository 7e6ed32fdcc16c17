//! Reading a spool directory back after a restart or a crash: which entries
//! the segment files hold, which of them the acknowledgement log says are
//! dead, what is damaged, and which id comes next. Reads only; the opener
//! applies the result (truncations, deletions, the new active segment).

use std::io;
use std::ops::Range;

use bytes::Bytes;

use crate::format::{
    self, DEAD_LOG, DEAD_RECORD_LEN, ENTRY_HEADER_LEN, Frame, LEDGER, SEGMENT_HEADER_LEN,
    decode_frame, decode_ledger, find_header, parse_segment_name, segment_header_ok,
};
use crate::ledger::Ledger;
use crate::storage::Storage;
use crate::{Recovery, SpoolError};

/// Ids recorded dead in the acknowledgement log, as sorted disjoint ranges.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeadSet {
    ranges: Vec<(u64, u64)>,
}

impl DeadSet {
    pub(crate) fn from_ranges(mut ranges: Vec<(u64, u64)>) -> Self {
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        DeadSet { ranges: merged }
    }

    /// This set and the ranges `more`.
    pub(crate) fn with(self, more: &[(u64, u64)]) -> Self {
        if more.is_empty() {
            return self;
        }
        let mut ranges = self.ranges;
        ranges.extend_from_slice(more);
        DeadSet::from_ranges(ranges)
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        let at = self.ranges.partition_point(|&(start, _)| start <= id);
        at > 0 && id < self.ranges[at - 1].1
    }

    /// How many ids of `ids` are dead.
    pub(crate) fn count_in(&self, ids: Range<u64>) -> u64 {
        self.ranges
            .iter()
            .map(|&(start, end)| end.min(ids.end).saturating_sub(start.max(ids.start)))
            .sum()
    }
}

/// Reads the acknowledgement log: whole records with a valid CRC count,
/// damaged ones are skipped (their entries are delivered again), a partial
/// record at the end is a torn write.
pub(crate) fn load_dead_log(storage: &dyn Storage) -> Result<(DeadSet, u64), SpoolError> {
    let bytes = match storage.read(DEAD_LOG) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(SpoolError::io(
                "read acknowledgement log",
                storage.dir().join(DEAD_LOG),
                e,
            ));
        }
    };
    let mut ranges = Vec::new();
    let mut damaged = 0u64;
    for record in bytes.chunks_exact(DEAD_RECORD_LEN) {
        match format::decode_dead(record) {
            Some(range) => ranges.push(range),
            None => damaged += 1,
        }
    }
    Ok((DeadSet::from_ranges(ranges), damaged))
}

/// What the drop ledger file holds.
pub(crate) struct LoadedLedger {
    pub ledger: Ledger,
    /// Ids the file names as dropped, settled or not: dead.
    pub dropped: Vec<(u64, u64)>,
    /// Length of the file.
    pub bytes: u64,
    /// Bytes that were not valid records.
    pub damaged: u64,
}

/// Reads the drop ledger; a missing file is an empty ledger.
pub(crate) fn load_ledger(storage: &dyn Storage) -> Result<LoadedLedger, SpoolError> {
    let bytes = match storage.read(LEDGER) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(SpoolError::io(
                "read drop ledger",
                storage.dir().join(LEDGER),
                e,
            ));
        }
    };
    let (records, damaged) = decode_ledger(&bytes);
    let (ledger, dropped) = Ledger::from_records(&records);
    Ok(LoadedLedger {
        ledger,
        dropped,
        bytes: bytes.len() as u64,
        damaged,
    })
}

/// One entry found in a segment file.
pub(crate) struct FoundEntry {
    pub id: u64,
    pub offset: u64,
    pub records: u32,
    pub data_len: u32,
}

/// Damaged bytes between two valid entries (or before the first): the ids
/// they may have held and their size.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Gap {
    pub ids: Range<u64>,
    pub bytes: u64,
}

pub(crate) struct Scan {
    pub header_ok: bool,
    pub entries: Vec<FoundEntry>,
    pub gaps: Vec<Gap>,
    /// End of the last valid entry (or of the header): what follows is the tail.
    pub valid_end: u64,
    /// The id after the last valid entry (or the segment's first id).
    pub next_id: u64,
}

/// Reads the entries of one segment file named after `first_id`, accepting
/// ids in `first_id..upper` (`upper` is the next segment's first id: a
/// segment never holds ids of the one after it, and anything that looks like
/// one is the residue of a failed write).
///
/// Damage never stops the scan: after bytes that are not a valid entry, the
/// scan looks for the next valid entry header and goes on from there. A
/// damaged entry whose header is intact is skipped by its length.
pub(crate) fn scan_segment(file: &[u8], first_id: u64, upper: u64) -> Scan {
    let header_ok = segment_header_ok(file, first_id);
    let start = SEGMENT_HEADER_LEN.min(file.len());
    let mut pos = start;
    let mut valid_end = start;
    let mut expected = first_id;
    let mut entries = Vec::new();
    let mut gaps = Vec::new();
    while pos < file.len() {
        let accept = |id: u64| id >= expected && id < upper;
        match decode_frame(&file[pos..]) {
            Frame::Valid(header) if accept(header.id) => {
                if pos > valid_end {
                    gaps.push(Gap {
                        ids: expected..header.id,
                        bytes: (pos - valid_end) as u64,
                    });
                }
                entries.push(FoundEntry {
                    id: header.id,
                    offset: pos as u64,
                    records: header.records,
                    data_len: header.data_len,
                });
                expected = header.id + 1;
                pos += header.frame_len() as usize;
                valid_end = pos;
            }
            Frame::DamagedData(header) if accept(header.id) => {
                // The header is intact, so the length is right: skip the
                // whole frame rather than search its data for headers.
                pos += header.frame_len() as usize;
            }
            _ => match find_header(file, pos + 1, |h| accept(h.id)) {
                Some((next, _)) => pos = next,
                None => break,
            },
        }
    }
    Scan {
        header_ok,
        entries,
        gaps,
        valid_end: valid_end as u64,
        next_id: expected,
    }
}

/// Entries lost in a damaged stretch that stood for the ids `ids`: ids
/// already known dead (acknowledged, or counted at an earlier open) do not
/// count.
fn lost_entries(dead: &DeadSet, ids: Range<u64>) -> u64 {
    (ids.end - ids.start) - dead.count_in(ids)
}

pub(crate) struct RecoveredEntry {
    pub id: u64,
    pub offset: u64,
    pub records: u32,
    pub data_len: u32,
    pub live: bool,
    /// The data, for live entries while the cache budget lasts.
    pub data: Option<Bytes>,
}

pub(crate) struct RecoveredSegment {
    pub first_id: u64,
    pub name: String,
    pub entries: Vec<RecoveredEntry>,
    /// Damaged bytes inside the segment that stay on disk.
    pub damaged_bytes: u64,
    /// Length to cut the file to (its tail is not entries).
    pub truncate_to: Option<u64>,
}

pub(crate) struct Recovered {
    pub segments: Vec<RecoveredSegment>,
    pub ledger: LoadedLedger,
    /// The first id the next append may use: above every id ever written.
    pub next_id: u64,
    pub report: Recovery,
}

/// Undoes the drops of a ledger write that a crash cut short.
///
/// A drop takes whole segments: the writer fsyncs the acknowledgement log,
/// then writes and fsyncs one drop record for every live entry of the
/// victims, and only then reports the drops and deletes the victims. So a
/// segment still on disk that holds a live entry next to entries the ledger
/// names as dropped and unsettled is a victim whose drop records were not all
/// written when the power went: that drop never happened (nobody saw it).
/// Its entries become live again and their records go at the ledger's
/// compaction; kept, they would leave the segment on disk and the ledger
/// paying for it too, over the bound.
fn undo_torn_drops(
    segments: &mut [RecoveredSegment],
    acked: &DeadSet,
    ledger: &mut LoadedLedger,
    report: &mut Recovery,
) {
    for segment in segments {
        if !segment.entries.iter().any(|e| e.live) {
            continue;
        }
        for entry in &mut segment.entries {
            if entry.live || acked.contains(entry.id) || !ledger.ledger.undo(entry.id) {
                continue;
            }
            entry.live = true;
            report.entries += 1;
            report.records += u64::from(entry.records);
            report.bytes += u64::from(entry.data_len);
            tracing::warn!(
                segment = %segment.name,
                id = entry.id,
                "a drop cut short by a crash is undone; the entry will be delivered"
            );
        }
    }
}

/// Scans the whole directory. `cache_bytes` bounds the data kept in memory
/// for the first reads.
pub(crate) fn recover(storage: &dyn Storage, cache_bytes: u64) -> Result<Recovered, SpoolError> {
    let dir = storage.dir().to_path_buf();
    let mut names: Vec<(u64, String)> = storage
        .list()
        .map_err(|e| SpoolError::io("list spool directory", dir.clone(), e))?
        .into_iter()
        .filter_map(|name| parse_segment_name(&name).map(|id| (id, name)))
        .collect();
    names.sort_unstable();
    let (dead, damaged_records) = load_dead_log(storage)?;
    if damaged_records > 0 {
        tracing::warn!(
            damaged_records,
            "skipped damaged records in the spool's acknowledgement log; their entries will be delivered again"
        );
    }
    // Entries the ledger names were dropped: dead, even when a crash came
    // before their segment was deleted.
    let mut ledger = load_ledger(storage)?;
    if ledger.damaged > 0 {
        tracing::warn!(
            damaged_bytes = ledger.damaged,
            "skipped damaged bytes in the spool's drop ledger; the drops they recorded are no longer known"
        );
    }
    let acked = dead.clone();
    let dead = dead.with(&ledger.dropped);

    let mut report = Recovery::default();
    let mut segments = Vec::with_capacity(names.len());
    let mut next_id = 1u64;
    let mut cache_left = cache_bytes;
    for (i, (first_id, name)) in names.iter().enumerate() {
        let is_last = i + 1 == names.len();
        let upper = names.get(i + 1).map_or(u64::MAX, |(id, _)| *id);
        let file = storage
            .read(name)
            .map_err(|e| SpoolError::io("read segment", dir.join(name), e))?;
        let scan = scan_segment(&file, *first_id, upper);
        if !scan.header_ok && file.len() >= SEGMENT_HEADER_LEN {
            tracing::warn!(segment = %name, "damaged spool segment header; reading its entries anyway");
        }

        let mut corrupt: u64 = scan
            .gaps
            .iter()
            .map(|g| lost_entries(&dead, g.ids.clone()))
            .sum();
        let tail = file.len() as u64 - scan.valid_end;
        if !is_last {
            // A closed segment has no torn tail: it held every id below the
            // next segment's first id, so ids missing at its end are damaged
            // entries. Bytes that stand for ids at or above that are leftovers
            // of a failed append, never confirmed.
            corrupt += lost_entries(&dead, scan.next_id..upper);
        }
        if corrupt > 0 {
            tracing::warn!(segment = %name, corrupt, "damaged entries in spool segment skipped");
        }
        report.corrupt_entries += corrupt;
        report.truncated_bytes += tail;
        let gap_bytes: u64 = scan.gaps.iter().map(|g| g.bytes).sum();

        let mut entries = Vec::with_capacity(scan.entries.len());
        for found in &scan.entries {
            let live = !dead.contains(found.id);
            let mut data = None;
            if live {
                report.entries += 1;
                report.records += u64::from(found.records);
                report.bytes += u64::from(found.data_len);
                if u64::from(found.data_len) <= cache_left {
                    cache_left -= u64::from(found.data_len);
                    let start = found.offset as usize + ENTRY_HEADER_LEN;
                    data = Some(Bytes::copy_from_slice(
                        &file[start..start + found.data_len as usize],
                    ));
                }
            }
            entries.push(RecoveredEntry {
                id: found.id,
                offset: found.offset,
                records: found.records,
                data_len: found.data_len,
                live,
                data,
            });
        }

        next_id = next_id.max(*first_id).max(scan.next_id);
        if is_last {
            // A torn tail may hold entries whose id was handed out (a damaged
            // last entry looks just like a torn write). Never reuse those ids:
            // skip as many as the tail could have held.
            next_id += tail / ENTRY_HEADER_LEN as u64;
        }
        segments.push(RecoveredSegment {
            first_id: *first_id,
            name: name.clone(),
            entries,
            damaged_bytes: gap_bytes,
            truncate_to: (tail > 0).then_some(scan.valid_end),
        });
    }
    undo_torn_drops(&mut segments, &acked, &mut ledger, &mut report);
    report.dropped_pending = ledger.ledger.len();
    report.ledger_damaged_bytes = ledger.damaged;
    Ok(Recovered {
        segments,
        ledger,
        next_id,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_entry, encode_segment_header};

    fn segment(first_id: u64, entries: &[(u64, &[u8])]) -> (Vec<u8>, Vec<usize>) {
        let mut file = encode_segment_header(first_id).to_vec();
        let mut offsets = Vec::new();
        for (id, data) in entries {
            offsets.push(file.len());
            encode_entry(&mut file, *id, 1, data);
        }
        (file, offsets)
    }

    fn ids(scan: &Scan) -> Vec<u64> {
        scan.entries.iter().map(|e| e.id).collect()
    }

    #[test]
    fn clean_segment_scans_whole() {
        let (file, _) = segment(5, &[(5, b"a"), (6, b"bb"), (7, b"ccc")]);
        let scan = scan_segment(&file, 5, u64::MAX);
        assert!(scan.header_ok);
        assert_eq!(ids(&scan), [5, 6, 7]);
        assert!(scan.gaps.is_empty());
        assert_eq!(scan.valid_end, file.len() as u64);
        assert_eq!(scan.next_id, 8);
    }

    #[test]
    fn damaged_middle_entry_is_skipped_whatever_byte_is_hit() {
        let (file, offsets) = segment(
            1,
            &[
                (1, b"first entry"),
                (2, b"second entry"),
                (3, b"third entry"),
            ],
        );
        for at in offsets[1]..offsets[2] {
            let mut bad = file.clone();
            bad[at] ^= 0x55;
            let scan = scan_segment(&bad, 1, u64::MAX);
            assert_eq!(ids(&scan), [1, 3], "byte {at}");
            assert_eq!(
                scan.gaps,
                [Gap {
                    ids: 2..3,
                    bytes: (offsets[2] - offsets[1]) as u64
                }],
                "byte {at}"
            );
        }
    }

    #[test]
    fn torn_tail_ends_the_scan() {
        let (file, offsets) = segment(1, &[(1, b"first"), (2, b"second")]);
        for cut in offsets[1]..file.len() {
            let scan = scan_segment(&file[..cut], 1, u64::MAX);
            assert_eq!(ids(&scan), [1]);
            assert_eq!(scan.valid_end, offsets[1] as u64);
            assert!(scan.gaps.is_empty());
        }
    }

    #[test]
    fn ids_of_the_next_segment_are_not_accepted() {
        let (file, offsets) = segment(1, &[(1, b"a"), (2, b"b"), (3, b"c")]);
        let scan = scan_segment(&file, 1, 3);
        assert_eq!(ids(&scan), [1, 2]);
        assert_eq!(scan.valid_end, offsets[2] as u64);
    }

    #[test]
    fn a_damaged_header_does_not_hide_entries() {
        let (mut file, _) = segment(9, &[(9, b"a"), (10, b"b")]);
        file[3] ^= 1;
        let scan = scan_segment(&file, 9, u64::MAX);
        assert!(!scan.header_ok);
        assert_eq!(ids(&scan), [9, 10]);
    }

    #[test]
    fn lost_entries_ignore_dead_ids() {
        let dead = DeadSet::from_ranges(vec![(3, 5), (4, 6), (10, 11)]);
        assert!(dead.contains(3) && dead.contains(5) && !dead.contains(6) && !dead.contains(2));
        assert_eq!(dead.count_in(0..100), 4);
        assert_eq!(lost_entries(&dead, 2..7), 2);
        assert_eq!(lost_entries(&dead, 6..8), 2);
        assert_eq!(lost_entries(&dead, 10..11), 0);
    }
}
