//! Counters kept as records commit and as retention removes them, shared by
//! both backends: a workspace's (its agent's) records per minute of
//! effective time, its denials per hour and host. Summaries and the
//! activity chart read these instead of the records; only the partial
//! buckets at the edges of a time range are counted from blocks
//! ([`Window`]). Each backend writes them with its own SQL.

use std::collections::HashMap;

use crate::block::Block;
use crate::hosts::host_of_url;

/// Nanoseconds in a minute and an hour.
pub(crate) const MINUTE: i64 = crate::model::MINUTE_NANOS;
pub(crate) const HOUR: i64 = 60 * MINUTE;

/// The minute bucket (its start over [`MINUTE`]) of an effective time.
pub(crate) fn minute_of(t: i64) -> i64 {
    t.div_euclid(MINUTE)
}

/// The hour bucket of an effective time.
pub(crate) fn hour_of(t: i64) -> i64 {
    t.div_euclid(HOUR)
}

/// One minute's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Minute {
    pub allowed: i64,
    pub denied: i64,
    pub conflicts: i64,
    pub min_occurred: i64,
    pub max_occurred: i64,
}

impl Default for Minute {
    fn default() -> Self {
        Minute {
            allowed: 0,
            denied: 0,
            conflicts: 0,
            min_occurred: i64::MAX,
            max_occurred: i64::MIN,
        }
    }
}

/// Counts to add to (or take from) the tables.
#[derive(Default)]
pub(crate) struct Counters {
    /// (agent, minute) -> counts.
    pub minutes: HashMap<(i64, i64), Minute>,
    /// (agent, hour, host) -> denied records.
    pub hosts: HashMap<(i64, i64, String), i64>,
}

impl Counters {
    /// Counts one record of `agent`.
    pub(crate) fn add(
        &mut self,
        agent: i64,
        occurred: i64,
        allowed: bool,
        conflict: bool,
        url: &str,
    ) {
        let m = self
            .minutes
            .entry((agent, minute_of(occurred)))
            .or_default();
        if allowed {
            m.allowed += 1;
        } else {
            m.denied += 1;
            *self
                .hosts
                .entry((agent, hour_of(occurred), host_of_url(url)))
                .or_default() += 1;
        }
        if conflict {
            m.conflicts += 1;
        }
        m.min_occurred = m.min_occurred.min(occurred);
        m.max_occurred = m.max_occurred.max(occurred);
    }
}

impl Counters {
    /// The host counts summed over hours: what the all-time totals get.
    pub(crate) fn host_totals(&self) -> Vec<((i64, &str), i64)> {
        let mut totals: HashMap<(i64, &str), i64> = HashMap::new();
        for ((agent, _, host), n) in &self.hosts {
            *totals.entry((*agent, host.as_str())).or_default() += n;
        }
        totals.into_iter().collect()
    }
}

/// An agent's records in a time window, counted from its blocks: the
/// partial buckets at the edges of a range.
#[derive(Default)]
pub(crate) struct Window {
    pub minute: Minute,
    /// Denied records by host.
    pub hosts: HashMap<String, u64>,
}

impl Window {
    /// Counts the records of a decoded block with an effective time in
    /// `since..until` (nanoseconds).
    pub(crate) fn add_block(&mut self, block: &Block<'_>, since: i64, until: i64) {
        let batch_of = block.batch_of_each();
        for (i, r) in block.records.iter().enumerate() {
            let received = block.batches[batch_of[i]].received_ns;
            let t = r.event_time.known().map_or(received, crate::convert::nanos);
            if t < since || t >= until {
                continue;
            }
            let m = &mut self.minute;
            if r.decision.is_allowed() {
                m.allowed += 1;
            } else {
                m.denied += 1;
                *self.hosts.entry(host_of_url(&r.url)).or_default() += 1;
            }
            if r.conflict {
                m.conflicts += 1;
            }
            m.min_occurred = m.min_occurred.min(t);
            m.max_occurred = m.max_occurred.max(t);
        }
    }
}

/// Buckets of `size` nanoseconds wholly inside `since..until`: the first
/// and one past the last (`None` bounds: all of them).
pub(crate) fn whole_buckets(since: Option<i64>, until: Option<i64>, size: i64) -> (i64, i64) {
    let first = since.map_or(i64::MIN, |s| {
        let b = s.div_euclid(size);
        if s.rem_euclid(size) == 0 { b } else { b + 1 }
    });
    let end = until.map_or(i64::MAX, |u| u.div_euclid(size));
    (first, end.max(first))
}

/// The parts of `since..until` outside the whole buckets `b0..b1` of
/// `size`.
pub(crate) fn edges(
    since: Option<i64>,
    until: Option<i64>,
    (b0, b1): (i64, i64),
    size: i64,
) -> Vec<(i64, i64)> {
    match (since, until) {
        (Some(s), Some(u)) if b1 <= b0 => vec![(s, u)],
        _ => {
            let mut out = Vec::new();
            if let Some(s) = since {
                out.push((s, b0.saturating_mul(size)));
            }
            if let Some(u) = until {
                out.push((b1.saturating_mul(size), u));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_floor_negative_times_too() {
        assert_eq!(minute_of(0), 0);
        assert_eq!(minute_of(MINUTE - 1), 0);
        assert_eq!(minute_of(-1), -1);
        assert_eq!(hour_of(HOUR), 1);
        assert_eq!(minute_of(i64::MIN), i64::MIN.div_euclid(MINUTE));
    }

    #[test]
    fn whole_buckets_leave_the_partial_edges_out() {
        assert_eq!(whole_buckets(Some(0), Some(120), 60), (0, 2));
        assert_eq!(whole_buckets(Some(1), Some(119), 60), (1, 1));
        assert_eq!(whole_buckets(Some(-61), Some(60), 60), (-1, 1));
        assert_eq!(whole_buckets(None, None, 60), (i64::MIN, i64::MAX));
    }
}
