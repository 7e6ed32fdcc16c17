//! Sets of integers kept as disjoint, non-adjacent ranges: the sequence
//! numbers stored for a session, the record ids whose lines are due.

use std::collections::BTreeMap;

/// A set of `i64`s as ranges `first..=last`, disjoint and never adjacent
/// (adjacent ranges are merged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IntervalSet {
    /// first -> last.
    ranges: BTreeMap<i64, i64>,
}

impl IntervalSet {
    pub(crate) fn new() -> IntervalSet {
        IntervalSet::default()
    }

    /// The ranges, lowest first.
    pub(crate) fn ranges(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ranges.iter().map(|(&f, &l)| (f, l))
    }

    /// The lowest number in the set.
    pub(crate) fn first(&self) -> Option<i64> {
        self.ranges.keys().next().copied()
    }

    pub(crate) fn contains(&self, n: i64) -> bool {
        self.ranges
            .range(..=n)
            .next_back()
            .is_some_and(|(_, &last)| last >= n)
    }

    /// Adds `first..=last` (nothing when `first > last`).
    pub(crate) fn insert(&mut self, first: i64, last: i64) {
        if first > last {
            return;
        }
        let (mut lo, mut hi) = (first, last);
        // Ranges that overlap or touch: their first is at most last + 1 and
        // their last at least first - 1.
        let touching: Vec<(i64, i64)> = self
            .ranges
            .range(..=hi.saturating_add(1))
            .rev()
            .take_while(|(_, l)| **l >= lo.saturating_sub(1))
            .map(|(&f, &l)| (f, l))
            .collect();
        for (f, l) in touching {
            self.ranges.remove(&f);
            lo = lo.min(f);
            hi = hi.max(l);
        }
        self.ranges.insert(lo, hi);
    }

    /// Removes `first..=last`.
    pub(crate) fn remove(&mut self, first: i64, last: i64) {
        if first > last {
            return;
        }
        let hit: Vec<(i64, i64)> = self
            .ranges
            .range(..=last)
            .rev()
            .take_while(|(_, l)| **l >= first)
            .map(|(&f, &l)| (f, l))
            .collect();
        for (f, l) in hit {
            self.ranges.remove(&f);
            if f < first {
                self.ranges.insert(f, first - 1);
            }
            if l > last {
                self.ranges.insert(last + 1, l);
            }
        }
    }

    /// How many numbers the set holds (saturating).
    pub(crate) fn len(&self) -> u64 {
        self.ranges
            .iter()
            .map(|(&f, &l)| u64::try_from(i128::from(l) - i128::from(f) + 1).unwrap_or(u64::MAX))
            .fold(0u64, u64::saturating_add)
    }
}

/// Sorted numbers as ranges of consecutive ones.
pub(crate) fn runs(sorted: impl IntoIterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for n in sorted {
        match out.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(n) || *last == n => *last = n,
            _ => out.push((n, n)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ranges_merge_when_they_touch_and_split_when_cut() {
        let mut s = IntervalSet::new();
        s.insert(0, 9);
        s.insert(10, 19);
        s.insert(30, 39);
        assert_eq!(s.ranges().collect::<Vec<_>>(), [(0, 19), (30, 39)]);
        s.insert(15, 31);
        assert_eq!(s.ranges().collect::<Vec<_>>(), [(0, 39)]);
        s.remove(5, 7);
        assert_eq!(s.ranges().collect::<Vec<_>>(), [(0, 4), (8, 39)]);
        assert!(s.contains(4) && !s.contains(5) && s.contains(39) && !s.contains(40));
        assert_eq!(s.len(), 37);
        s.insert(i64::MIN, i64::MIN + 1);
        s.insert(i64::MAX, i64::MAX);
        assert_eq!(s.first(), Some(i64::MIN));
        assert_eq!(runs([1, 2, 3, 5, 5, 6, 9]), [(1, 3), (5, 6), (9, 9)]);
    }

    proptest! {
        #[test]
        fn the_set_matches_a_plain_set(
            ops in proptest::collection::vec((any::<bool>(), 0i64..60, 0i64..8), 0..40),
        ) {
            let mut s = IntervalSet::new();
            let mut plain = BTreeSet::new();
            for (add, first, len) in ops {
                let last = first + len;
                if add {
                    s.insert(first, last);
                    plain.extend(first..=last);
                } else {
                    s.remove(first, last);
                    for n in first..=last {
                        plain.remove(&n);
                    }
                }
            }
            let got: BTreeSet<i64> = s.ranges().flat_map(|(f, l)| f..=l).collect();
            prop_assert_eq!(&got, &plain);
            prop_assert!(s.ranges().collect::<Vec<_>>().windows(2).all(|w| w[0].1 + 1 < w[1].0));
            prop_assert_eq!(s.len(), plain.len() as u64);
        }
    }
}
