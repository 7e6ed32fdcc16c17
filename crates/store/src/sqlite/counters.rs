//! Counters kept as records commit and as retention removes them: a
//! workspace's (its agent's) records per minute of effective time, its
//! denials per hour and host. Summaries and the activity chart read these
//! instead of the records; only the partial buckets at the edges of a time
//! range are counted from blocks ([`Window`]).

use std::collections::{BTreeSet, HashMap};

use rusqlite::{Connection, params};

use super::db::Ctx;
use crate::StoreError;
use crate::block;
use crate::hosts::host_of_url;

/// Nanoseconds in a minute and an hour.
pub(super) const MINUTE: i64 = crate::model::MINUTE_NANOS;
pub(super) const HOUR: i64 = 60 * MINUTE;

/// The minute bucket (its start over [`MINUTE`]) of an effective time.
pub(super) fn minute_of(t: i64) -> i64 {
    t.div_euclid(MINUTE)
}

/// The hour bucket of an effective time.
pub(super) fn hour_of(t: i64) -> i64 {
    t.div_euclid(HOUR)
}

/// One minute's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Minute {
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
pub(super) struct Counters {
    minutes: HashMap<(i64, i64), Minute>,
    hosts: HashMap<(i64, i64, String), i64>,
}

impl Counters {
    /// Counts one record of `agent`.
    pub(super) fn add(
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

    /// Adds the counts to the tables (`sign` 1), or takes them away (`sign`
    /// -1: retention), in which case emptied rows go and the time bounds of
    /// the minutes left are counted again from the blocks.
    pub(super) fn write(self, tx: &Connection, sign: i64) -> Result<(), StoreError> {
        let ctx = "counting records";
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO activity_minutes (agent_id, minute, allowed, denied, conflicts, \
                 min_occurred, max_occurred) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (agent_id, minute) DO UPDATE SET \
                 allowed = allowed + excluded.allowed, denied = denied + excluded.denied, \
                 conflicts = conflicts + excluded.conflicts, \
                 min_occurred = min(min_occurred, excluded.min_occurred), \
                 max_occurred = max(max_occurred, excluded.max_occurred)",
            )
            .ctx(ctx)?;
        for (&(agent, minute), m) in &self.minutes {
            if sign > 0 {
                upsert
                    .execute(params![
                        agent,
                        minute,
                        m.allowed,
                        m.denied,
                        m.conflicts,
                        m.min_occurred,
                        m.max_occurred
                    ])
                    .ctx(ctx)?;
            } else {
                tx.prepare_cached(
                    "UPDATE activity_minutes SET allowed = allowed - ?3, denied = denied - ?4, \
                     conflicts = conflicts - ?5 WHERE agent_id = ?1 AND minute = ?2",
                )
                .and_then(|mut s| {
                    s.execute(params![agent, minute, m.allowed, m.denied, m.conflicts])
                })
                .ctx(ctx)?;
            }
        }
        drop(upsert);
        let mut hosts = tx
            .prepare_cached(
                "INSERT INTO denied_hosts (agent_id, hour, host, records) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (agent_id, hour, host) DO UPDATE SET records = records + excluded.records",
            )
            .ctx(ctx)?;
        for ((agent, hour, host), n) in &self.hosts {
            hosts
                .execute(params![agent, hour, host, n * sign])
                .ctx(ctx)?;
        }
        drop(hosts);
        if sign < 0 {
            let mut gone = tx
                .prepare_cached(
                    "DELETE FROM denied_hosts WHERE agent_id = ?1 AND hour = ?2 AND host = ?3 \
                     AND records <= 0",
                )
                .ctx(ctx)?;
            for (agent, hour, host) in self.hosts.keys() {
                gone.execute(params![agent, hour, host]).ctx(ctx)?;
            }
            drop(gone);
            let touched: BTreeSet<(i64, i64)> = self.minutes.keys().copied().collect();
            for (agent, minute) in touched {
                let left = Window::count(tx, agent, minute * MINUTE, (minute + 1) * MINUTE)?;
                if left.minute.allowed + left.minute.denied == 0 {
                    tx.prepare_cached(
                        "DELETE FROM activity_minutes WHERE agent_id = ?1 AND minute = ?2",
                    )
                    .and_then(|mut s| s.execute(params![agent, minute]))
                    .ctx(ctx)?;
                } else {
                    tx.prepare_cached(
                        "UPDATE activity_minutes SET min_occurred = ?3, max_occurred = ?4 \
                         WHERE agent_id = ?1 AND minute = ?2",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            agent,
                            minute,
                            left.minute.min_occurred,
                            left.minute.max_occurred
                        ])
                    })
                    .ctx(ctx)?;
                }
            }
        }
        Ok(())
    }
}

/// An agent's records in a time window, counted from its blocks: the
/// partial buckets at the edges of a range.
#[derive(Default)]
pub(super) struct Window {
    pub minute: Minute,
    /// Denied records by host.
    pub hosts: HashMap<String, u64>,
}

impl Window {
    /// Counts the records of `agent` with an effective time in
    /// `since..until` (nanoseconds).
    pub(super) fn count(
        conn: &Connection,
        agent: i64,
        since: i64,
        until: i64,
    ) -> Result<Window, StoreError> {
        let ctx = "counting records in a time range";
        let mut out = Window::default();
        if since >= until {
            return Ok(out);
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT data FROM blocks WHERE agent_id = ?1 AND max_occurred >= ?2 \
                 AND min_occurred < ?3",
            )
            .ctx(ctx)?;
        let mut rows = stmt.query(params![agent, since, until]).ctx(ctx)?;
        while let Some(row) = rows.next().ctx(ctx)? {
            let data: Vec<u8> = row.get(0).ctx(ctx)?;
            let block = block::decode(&data)?;
            let batch_of = block.batch_of_each();
            for (i, r) in block.records.iter().enumerate() {
                let received = block.batches[batch_of[i]].received_ns;
                let t = r.event_time.known().map_or(received, crate::convert::nanos);
                if t < since || t >= until {
                    continue;
                }
                let m = &mut out.minute;
                if r.decision.is_allowed() {
                    m.allowed += 1;
                } else {
                    m.denied += 1;
                    *out.hosts.entry(host_of_url(&r.url)).or_default() += 1;
                }
                if r.conflict {
                    m.conflicts += 1;
                }
                m.min_occurred = m.min_occurred.min(t);
                m.max_occurred = m.max_occurred.max(t);
            }
        }
        Ok(out)
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
}
