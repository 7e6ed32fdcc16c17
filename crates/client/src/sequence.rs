//! Sequence numbers: the per-session allocator and [`SequenceSet`], the
//! compact set the summary uses to say exactly which records got where.
//!
//! # Wrap
//!
//! `sequence_number` is an `int32` on the wire and the control plane reads a
//! gap in a session's numbers as loss. So a session holds at most 2^31
//! records, numbered `0..=i32::MAX`; after that the allocator refuses (the
//! caller gets [`RecordError::SequenceExhausted`](crate::RecordError)) instead
//! of wrapping into negative numbers, which would look like a huge gap, or
//! silently switching session ids, which status frames (they carry no session
//! id) could not follow. At a million records a second that is 35 minutes of
//! continuous load; a sandbox run that needs more starts a new auditor, i.e. a
//! new session.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many sequence numbers one session can assign.
pub const SEQUENCE_LIMIT: u64 = i32::MAX as u64 + 1;

/// Set in the allocator's counter once the session is closing.
const CLOSED: u64 = 1 << 63;

/// Why no sequence number was assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Closed,
    Exhausted,
}

/// Hands out sequence numbers from 0 and closes atomically, so that the
/// number of assignments is exact when the session ends.
#[derive(Debug)]
pub(crate) struct Sequencer {
    next: AtomicU64,
}

impl Sequencer {
    pub(crate) fn new() -> Sequencer {
        Sequencer::starting_at(0)
    }

    /// A sequencer whose next number is `next` (tests reach the limit with it).
    pub(crate) fn starting_at(next: u64) -> Sequencer {
        Sequencer {
            next: AtomicU64::new(next),
        }
    }

    /// The next sequence number, unless the session is closed or full.
    pub(crate) fn assign(&self) -> Result<i32, Refused> {
        self.next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n & CLOSED == 0 && n < SEQUENCE_LIMIT).then_some(n + 1)
            })
            .map(|n| n as i32)
            .map_err(|n| {
                if n & CLOSED != 0 {
                    Refused::Closed
                } else {
                    Refused::Exhausted
                }
            })
    }

    /// Stops assigning and returns how many numbers were assigned.
    pub(crate) fn close(&self) -> u64 {
        self.next.fetch_or(CLOSED, Ordering::AcqRel) & !CLOSED
    }

    /// How many numbers were assigned so far.
    pub(crate) fn assigned(&self) -> u64 {
        self.next.load(Ordering::Acquire) & !CLOSED
    }
}

/// A set of sequence numbers kept as sorted, disjoint, non-adjacent ranges,
/// so a session's worth of mostly consecutive numbers stays a few ranges.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SequenceSet {
    /// Inclusive `(first, last)` pairs.
    ranges: Vec<(i32, i32)>,
}

impl SequenceSet {
    /// An empty set.
    pub fn new() -> SequenceSet {
        SequenceSet::default()
    }

    /// Adds one number; appending past the end is O(1).
    pub fn insert(&mut self, seq: i32) {
        self.insert_range(seq, seq);
    }

    /// Adds `first..=last` (nothing when `first > last`).
    pub fn insert_range(&mut self, first: i32, last: i32) {
        if first > last {
            return;
        }
        // Fast path: numbers mostly arrive in order.
        match self.ranges.last_mut() {
            None => {
                self.ranges.push((first, last));
                return;
            }
            Some(tail) if i64::from(first) > i64::from(tail.1) + 1 => {
                self.ranges.push((first, last));
                return;
            }
            Some(tail) if i64::from(first) >= i64::from(tail.0) => {
                tail.1 = tail.1.max(last);
                return;
            }
            Some(_) => {}
        }
        // Ranges that overlap or touch `first..=last` merge into one.
        let lo = self
            .ranges
            .partition_point(|&(_, end)| i64::from(end) + 1 < i64::from(first));
        let hi = self
            .ranges
            .partition_point(|&(start, _)| i64::from(start) <= i64::from(last) + 1);
        if lo == hi {
            self.ranges.insert(lo, (first, last));
        } else {
            let merged = (
                first.min(self.ranges[lo].0),
                last.max(self.ranges[hi - 1].1),
            );
            self.ranges.splice(lo..hi, std::iter::once(merged));
        }
    }

    /// Adds every number of `other`.
    pub fn extend_from(&mut self, other: &SequenceSet) {
        for &(first, last) in &other.ranges {
            self.insert_range(first, last);
        }
    }

    /// Whether `seq` is in the set.
    pub fn contains(&self, seq: i32) -> bool {
        let i = self.ranges.partition_point(|&(_, end)| end < seq);
        self.ranges.get(i).is_some_and(|&(start, _)| start <= seq)
    }

    /// How many numbers the set holds.
    pub fn len(&self) -> u64 {
        self.ranges
            .iter()
            .map(|&(first, last)| (i64::from(last) - i64::from(first) + 1) as u64)
            .sum()
    }

    /// Whether the set holds no number.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> impl Iterator<Item = RangeInclusive<i32>> + '_ {
        self.ranges.iter().map(|&(first, last)| first..=last)
    }

    /// Every number, in order.
    pub fn iter(&self) -> impl Iterator<Item = i32> + '_ {
        self.ranges().flatten()
    }

    /// The smallest number.
    pub fn first(&self) -> Option<i32> {
        self.ranges.first().map(|r| r.0)
    }

    /// The largest number.
    pub fn last(&self) -> Option<i32> {
        self.ranges.last().map(|r| r.1)
    }
}

impl std::fmt::Debug for SequenceSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.ranges()).finish()
    }
}

impl std::fmt::Display for SequenceSet {
    /// `0-9,12,15-20`; empty prints as `-`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ranges.is_empty() {
            return f.write_str("-");
        }
        for (i, &(first, last)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if first == last {
                write!(f, "{first}")?;
            } else {
                write!(f, "{first}-{last}")?;
            }
        }
        Ok(())
    }
}

impl FromIterator<i32> for SequenceSet {
    fn from_iter<I: IntoIterator<Item = i32>>(iter: I) -> Self {
        let mut set = SequenceSet::new();
        for seq in iter {
            set.insert(seq);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn sequencer_counts_from_zero_and_closes_exactly() {
        let s = Sequencer::new();
        assert_eq!(s.assign(), Ok(0));
        assert_eq!(s.assign(), Ok(1));
        assert_eq!(s.assigned(), 2);
        assert_eq!(s.close(), 2);
        assert_eq!(s.assign(), Err(Refused::Closed));
        assert_eq!(s.assigned(), 2);
        assert_eq!(s.close(), 2);
    }

    #[test]
    fn sequencer_refuses_past_i32_max_instead_of_wrapping() {
        let s = Sequencer::starting_at(SEQUENCE_LIMIT - 1);
        assert_eq!(s.assign(), Ok(i32::MAX));
        assert_eq!(s.assign(), Err(Refused::Exhausted));
        assert_eq!(s.assign(), Err(Refused::Exhausted));
        assert_eq!(s.close(), SEQUENCE_LIMIT);
        assert_eq!(s.assign(), Err(Refused::Closed));
    }

    #[test]
    fn set_merges_touching_ranges_and_prints_them() {
        let mut set = SequenceSet::new();
        for seq in [5, 0, 1, 2, 9, 4, 7, 8] {
            set.insert(seq);
        }
        assert_eq!(set.to_string(), "0-2,4-5,7-9");
        set.insert(3);
        set.insert(6);
        assert_eq!(set.to_string(), "0-9");
        assert_eq!(set.len(), 10);
        set.insert_range(i32::MAX - 1, i32::MAX);
        assert_eq!(
            set.to_string(),
            format!("0-9,{}-{}", i32::MAX - 1, i32::MAX)
        );
        assert_eq!(set.len(), 12);
        assert_eq!(SequenceSet::new().to_string(), "-");
    }

    proptest! {
        #[test]
        fn set_behaves_like_a_btreeset(
            ops in proptest::collection::vec((0i32..200, 0i32..8), 0..120),
            probes in proptest::collection::vec(-2i32..210, 0..50),
        ) {
            let mut set = SequenceSet::new();
            let mut model = BTreeSet::new();
            for (first, width) in ops {
                set.insert_range(first, first + width);
                model.extend(first..=first + width);
            }
            prop_assert_eq!(set.len(), model.len() as u64);
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
            for p in probes {
                prop_assert_eq!(set.contains(p), model.contains(&p));
            }
            // Canonical form: sorted, disjoint and never touching.
            let ranges: Vec<_> = set.ranges().collect();
            for pair in ranges.windows(2) {
                prop_assert!(i64::from(*pair[0].end()) + 1 < i64::from(*pair[1].start()));
            }
        }
    }
}
