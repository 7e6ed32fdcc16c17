//! The in-memory index of what the segment files hold: which entries exist,
//! where, whether they are still live (neither acknowledged, dropped nor
//! found corrupt), and the data of recent ones so reads rarely touch the disk.
//!
//! Only durable entries are ever inserted. Pure bookkeeping: no I/O.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::format::frame_len;
use crate::storage::ReadAt;

/// Live (unacknowledged) content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub entries: u64,
    pub records: u64,
    /// Data bytes, without frames.
    pub bytes: u64,
}

struct Slot {
    id: u64,
    /// Offset of the frame in the segment file.
    offset: u64,
    data_len: u32,
    records: u32,
    live: bool,
    cached: Option<Bytes>,
}

pub(crate) struct Segment {
    pub first_id: u64,
    pub name: Arc<str>,
    /// Ascending ids.
    slots: Vec<Slot>,
    live: usize,
    /// Bytes the segment's frames take (counted against the bound).
    pub disk_bytes: u64,
    /// No more entries will be written to it; it may be deleted once dead.
    pub sealed: bool,
    reader: Arc<dyn ReadAt>,
}

/// Where a read finds the data of one entry.
pub(crate) enum Source {
    Cached(Bytes),
    Disk {
        file: Arc<dyn ReadAt>,
        /// The segment file's name, for errors.
        name: Arc<str>,
        offset: u64,
        data_len: u32,
    },
}

pub(crate) struct Planned {
    pub id: u64,
    pub records: u32,
    pub source: Source,
}

/// What killing an entry removed from the live totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Killed {
    pub records: u32,
}

pub(crate) struct Index {
    /// Ascending first ids; the last one is the active segment unless sealed.
    segments: VecDeque<Segment>,
    live: Totals,
    disk_bytes: u64,
    cache_used: u64,
    cache_cap: u64,
}

impl Index {
    pub(crate) fn new(cache_cap: u64) -> Self {
        Index {
            segments: VecDeque::new(),
            live: Totals::default(),
            disk_bytes: 0,
            cache_used: 0,
            cache_cap,
        }
    }

    pub(crate) fn totals(&self) -> Totals {
        self.live
    }

    /// Frame bytes of all segments still on disk.
    pub(crate) fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Adds a segment after the others, sealing the one before it. A previous
    /// segment with the same first id has no entries (it was abandoned after a
    /// failed write, or found empty at open) and is replaced: the returned
    /// bytes are what it counted against the bound.
    pub(crate) fn push_segment(
        &mut self,
        first_id: u64,
        name: String,
        reader: Arc<dyn ReadAt>,
    ) -> u64 {
        let mut freed = 0;
        if self.segments.back().is_some_and(|s| s.first_id == first_id) {
            let old = self.segments.pop_back().expect("checked");
            debug_assert!(
                old.slots.is_empty(),
                "a segment with entries is never replaced"
            );
            freed = old.disk_bytes;
            self.disk_bytes -= old.disk_bytes;
        }
        debug_assert!(self.segments.back().is_none_or(|s| s.first_id < first_id));
        if let Some(last) = self.segments.back_mut() {
            last.sealed = true;
        }
        self.segments.push_back(Segment {
            first_id,
            name: name.into(),
            slots: Vec::new(),
            live: 0,
            disk_bytes: 0,
            sealed: false,
            reader,
        });
        freed
    }

    /// Seals the active segment (after a write failure: it gets no more entries).
    pub(crate) fn seal_active(&mut self) {
        if let Some(last) = self.segments.back_mut() {
            last.sealed = true;
        }
    }

    /// Records a durable entry at the end of the last segment. `cached` is its
    /// data when the caller has it in memory; it is kept while the cache has room.
    pub(crate) fn insert(
        &mut self,
        id: u64,
        offset: u64,
        records: u32,
        data_len: u32,
        cached: Option<Bytes>,
        live: bool,
    ) {
        let segment = self
            .segments
            .back_mut()
            .expect("a segment exists before entries");
        debug_assert!(segment.slots.last().is_none_or(|s| s.id < id));
        let frame = frame_len(data_len as usize);
        segment.disk_bytes += frame;
        self.disk_bytes += frame;
        let cached = match cached {
            Some(data) if live && self.cache_used + u64::from(data_len) <= self.cache_cap => {
                self.cache_used += u64::from(data_len);
                Some(data)
            }
            _ => None,
        };
        if live {
            segment.live += 1;
            self.live.entries += 1;
            self.live.records += u64::from(records);
            self.live.bytes += u64::from(data_len);
        }
        segment.slots.push(Slot {
            id,
            offset,
            data_len,
            records,
            live,
            cached,
        });
    }

    /// Counts bytes of a segment that hold no entry (damaged regions kept at
    /// open) against the bound.
    pub(crate) fn add_unindexed_bytes(&mut self, bytes: u64) {
        if let Some(last) = self.segments.back_mut() {
            last.disk_bytes += bytes;
            self.disk_bytes += bytes;
        }
    }

    fn locate(&self, id: u64) -> Option<(usize, usize)> {
        let seg = self
            .segments
            .partition_point(|s| s.first_id <= id)
            .checked_sub(1)?;
        let slots = &self.segments[seg].slots;
        let slot = slots.binary_search_by_key(&id, |s| s.id).ok()?;
        Some((seg, slot))
    }

    pub(crate) fn is_live(&self, id: u64) -> bool {
        self.locate(id)
            .is_some_and(|(seg, slot)| self.segments[seg].slots[slot].live)
    }

    /// Marks a live entry dead (acknowledged, dropped or corrupt). `None` if
    /// the id is unknown or already dead.
    pub(crate) fn kill(&mut self, id: u64) -> Option<Killed> {
        let (seg, slot) = self.locate(id)?;
        let segment = &mut self.segments[seg];
        let slot = &mut segment.slots[slot];
        if !slot.live {
            return None;
        }
        slot.live = false;
        if slot.cached.take().is_some() {
            self.cache_used -= u64::from(slot.data_len);
        }
        segment.live -= 1;
        self.live.entries -= 1;
        self.live.records -= u64::from(slot.records);
        self.live.bytes -= u64::from(slot.data_len);
        Some(Killed {
            records: slot.records,
        })
    }

    /// Live entries of one segment, oldest first, and where their data is.
    pub(crate) fn live_entries(&self, first_id: u64) -> Vec<Planned> {
        let Some(segment) = self.segments.iter().find(|s| s.first_id == first_id) else {
            return Vec::new();
        };
        segment
            .slots
            .iter()
            .filter(|slot| slot.live)
            .map(|slot| Planned {
                id: slot.id,
                records: slot.records,
                source: source(segment, slot),
            })
            .collect()
    }

    /// Live entries with id > `after`, oldest first: at most `max_entries`,
    /// and no more data than `max_bytes` unless that would return nothing.
    pub(crate) fn plan_read(
        &self,
        after: Option<u64>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Vec<Planned> {
        let (mut seg, mut slot) = match after {
            None => (0, 0),
            Some(after) => match self
                .segments
                .partition_point(|s| s.first_id <= after)
                .checked_sub(1)
            {
                None => (0, 0),
                Some(seg) => (
                    seg,
                    self.segments[seg].slots.partition_point(|s| s.id <= after),
                ),
            },
        };
        let mut planned = Vec::new();
        let mut bytes = 0usize;
        while seg < self.segments.len() && planned.len() < max_entries.max(1) {
            let segment = &self.segments[seg];
            if segment.live == 0 || slot >= segment.slots.len() {
                seg += 1;
                slot = 0;
                continue;
            }
            let entry = &segment.slots[slot];
            slot += 1;
            if !entry.live {
                continue;
            }
            let len = entry.data_len as usize;
            if !planned.is_empty() && bytes.saturating_add(len) > max_bytes {
                break;
            }
            bytes = bytes.saturating_add(len);
            planned.push(Planned {
                id: entry.id,
                records: entry.records,
                source: source(segment, entry),
            });
        }
        planned
    }

    /// First ids of sealed segments without live entries: ready for
    /// deletion. The newest segment is never one of them: its name carries
    /// the highest id handed out across a restart.
    pub(crate) fn dead_sealed(&self) -> Vec<u64> {
        let newest = self.segments.len().saturating_sub(1);
        self.segments
            .iter()
            .take(newest)
            .filter(|s| s.sealed && s.live == 0)
            .map(|s| s.first_id)
            .collect()
    }

    /// Forgets a segment (its file is being deleted); returns its bytes.
    pub(crate) fn remove_segment(&mut self, first_id: u64) -> Option<Segment> {
        let at = self.segments.iter().position(|s| s.first_id == first_id)?;
        let segment = self.segments.remove(at)?;
        debug_assert_eq!(segment.live, 0, "only dead segments are removed");
        for slot in &segment.slots {
            if slot.cached.is_some() {
                self.cache_used -= u64::from(slot.data_len);
            }
        }
        self.disk_bytes -= segment.disk_bytes;
        Some(segment)
    }

    pub(crate) fn has_segment(&self, first_id: u64) -> bool {
        self.segments.iter().any(|s| s.first_id == first_id)
    }

    /// The active (unsealed) segment, if any.
    pub(crate) fn active(&self) -> Option<&Segment> {
        self.segments.back().filter(|s| !s.sealed)
    }

    /// Whether the active segment holds entries and none is live: rolling
    /// past it lets it be deleted.
    pub(crate) fn active_is_dead(&self) -> bool {
        self.active()
            .is_some_and(|s| !s.slots.is_empty() && s.live == 0)
    }

    /// The oldest deletable segments (sealed, not the newest) whose
    /// deletion frees at least `needed` bytes, or all of them when that is
    /// not enough, with the bytes they free. Segments already dead count too.
    pub(crate) fn oldest_to_free(&self, needed: u64) -> (Vec<u64>, u64) {
        let newest = self.segments.len().saturating_sub(1);
        let mut chosen = Vec::new();
        let mut freed = 0u64;
        for segment in self.segments.iter().take(newest) {
            if freed >= needed || !segment.sealed {
                break;
            }
            freed += segment.disk_bytes;
            chosen.push(segment.first_id);
        }
        (chosen, freed)
    }

    /// Whether the active segment holds entries (rolling past it would let
    /// it be deleted once they are dead).
    pub(crate) fn active_has_entries(&self) -> bool {
        self.active().is_some_and(|s| !s.slots.is_empty())
    }

    /// Ids that are not live within the id span of each segment (from its
    /// first id to the next segment's, or to `next_id` for the last one), as
    /// merged ranges. This is what the compacted acknowledgement log holds.
    pub(crate) fn dead_ranges(&self, next_id: u64) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let mut push = |start: u64, end: u64| {
            if start >= end {
                return;
            }
            match ranges.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => ranges.push((start, end)),
            }
        };
        for (i, segment) in self.segments.iter().enumerate() {
            let span_end = self.segments.get(i + 1).map_or(next_id, |s| s.first_id);
            let mut cursor = segment.first_id;
            for slot in segment.slots.iter().filter(|s| s.live) {
                push(cursor, slot.id);
                cursor = slot.id + 1;
            }
            push(cursor, span_end.max(cursor));
        }
        ranges
    }
}

/// Where the data of `slot` (of `segment`) is.
fn source(segment: &Segment, slot: &Slot) -> Source {
    match &slot.cached {
        Some(data) => Source::Cached(data.clone()),
        None => Source::Disk {
            file: segment.reader.clone(),
            name: segment.name.clone(),
            offset: slot.offset,
            data_len: slot.data_len,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    struct NoFile;
    impl ReadAt for NoFile {
        fn read_exact_at(&self, _: &mut [u8], _: u64) -> io::Result<()> {
            Err(io::ErrorKind::NotFound.into())
        }
    }

    fn index_with(segments: &[&[u64]]) -> Index {
        let mut index = Index::new(1 << 20);
        for ids in segments {
            index.push_segment(ids[0], format!("{}", ids[0]), Arc::new(NoFile));
            for &id in *ids {
                index.insert(id, 0, 2, 10, Some(Bytes::from(vec![0; 10])), true);
            }
        }
        index
    }

    fn ids(planned: &[Planned]) -> Vec<u64> {
        planned.iter().map(|p| p.id).collect()
    }

    #[test]
    fn reads_skip_dead_entries_and_respect_limits() {
        let mut index = index_with(&[&[1, 2, 3], &[4, 5], &[6]]);
        index.kill(2).unwrap();
        index.kill(4).unwrap();
        index.kill(5).unwrap();
        assert_eq!(ids(&index.plan_read(None, 10, 1000)), [1, 3, 6]);
        assert_eq!(ids(&index.plan_read(Some(1), 10, 1000)), [3, 6]);
        assert_eq!(ids(&index.plan_read(Some(3), 10, 1000)), [6]);
        assert_eq!(ids(&index.plan_read(Some(6), 10, 1000)), Vec::<u64>::new());
        assert_eq!(ids(&index.plan_read(None, 2, 1000)), [1, 3]);
        assert_eq!(ids(&index.plan_read(None, 10, 15)), [1], "byte limit");
        assert_eq!(ids(&index.plan_read(None, 10, 0)), [1], "always one entry");
        assert_eq!(
            ids(&index.plan_read(None, 0, 1000)),
            [1],
            "always one entry"
        );
    }

    #[test]
    fn kill_updates_totals_once() {
        let mut index = index_with(&[&[1, 2]]);
        assert_eq!(
            index.totals(),
            Totals {
                entries: 2,
                records: 4,
                bytes: 20
            }
        );
        assert_eq!(index.kill(1), Some(Killed { records: 2 }));
        assert_eq!(index.kill(1), None);
        assert_eq!(index.kill(99), None);
        assert_eq!(
            index.totals(),
            Totals {
                entries: 1,
                records: 2,
                bytes: 10
            }
        );
        assert!(!index.is_live(1));
        assert!(index.is_live(2));
    }

    #[test]
    fn only_sealed_segments_without_live_entries_are_deletable() {
        let mut index = index_with(&[&[1, 2], &[3]]);
        index.kill(1);
        assert!(index.dead_sealed().is_empty());
        index.kill(2);
        assert_eq!(index.dead_sealed(), [1]);
        index.kill(3);
        assert_eq!(
            index.dead_sealed(),
            [1],
            "the active segment is not deletable"
        );
        assert!(index.active_is_dead());
        index.seal_active();
        assert_eq!(
            index.dead_sealed(),
            [1],
            "nor is the newest one once sealed"
        );
        let removed = index.remove_segment(1).unwrap();
        assert_eq!(removed.disk_bytes, 2 * frame_len(10));
        assert_eq!(index.disk_bytes(), frame_len(10));
    }

    #[test]
    fn dead_ranges_are_the_complement_of_live_ids_within_spans() {
        let mut index = index_with(&[&[1, 2, 3], &[6, 7]]);
        index.kill(2);
        index.kill(7);
        // Span of the first segment is 1..6, ids 4 and 5 never existed there.
        assert_eq!(index.dead_ranges(9), [(2, 3), (4, 6), (7, 9)]);
        index.kill(1);
        index.kill(3);
        assert_eq!(index.dead_ranges(8), [(1, 6), (7, 8)]);
    }

    #[test]
    fn oldest_to_free_walks_sealed_segments_in_order() {
        let mut index = index_with(&[&[1, 2], &[3], &[4]]);
        let frame = frame_len(10);
        assert_eq!(index.oldest_to_free(1), (vec![1], 2 * frame));
        assert_eq!(index.oldest_to_free(2 * frame + 1), (vec![1, 3], 3 * frame));
        assert_eq!(index.oldest_to_free(100 * frame), (vec![1, 3], 3 * frame));
        index.seal_active();
        assert_eq!(
            index.oldest_to_free(100 * frame),
            (vec![1, 3], 3 * frame),
            "the newest segment stays even when sealed"
        );
    }

    #[test]
    fn cache_is_bounded_and_released() {
        let mut index = Index::new(15);
        index.push_segment(1, "1".into(), Arc::new(NoFile));
        index.insert(1, 0, 1, 10, Some(Bytes::from(vec![1; 10])), true);
        index.insert(2, 38, 1, 10, Some(Bytes::from(vec![2; 10])), true);
        let planned = index.plan_read(None, 10, 1000);
        assert!(matches!(planned[0].source, Source::Cached(_)));
        assert!(
            matches!(planned[1].source, Source::Disk { offset: 38, .. }),
            "over the cache cap"
        );
        index.kill(1);
        index.insert(3, 76, 1, 10, Some(Bytes::from(vec![3; 10])), true);
        let planned = index.plan_read(Some(2), 10, 1000);
        assert!(
            matches!(planned[0].source, Source::Cached(_)),
            "room freed by the kill"
        );
    }
}
