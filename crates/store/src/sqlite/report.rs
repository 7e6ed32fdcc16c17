//! Reports on SQLite, read from the counters kept as records commit rather
//! than from the records: a session's gaps (its sequence ranges), a
//! workspace's sessions (one `sessions` row each), a workspace's activity
//! in a time range (minute and hour buckets, with the partial buckets at the
//! edges counted from blocks), the per-minute chart, the last record id.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use rusqlite::{Connection, params};
use uuid::Uuid;

use super::counters::{HOUR, MINUTE, Window};
use super::db::Ctx;
use super::read::agent_keys;
use crate::StoreError;
use crate::convert::{count_from_sql, from_nanos, nanos};
use crate::hosts::top_hosts;
use crate::intervals::IntervalSet;
use crate::model::{
    ActivityQuery, MinuteActivity, RecordId, SequenceRange, SessionActivity, WorkspaceActivity,
};
use crate::sessions::{LiveRows, LossRow, SessionRow, Sessions};

pub(super) fn session_gaps(
    conn: &Connection,
    workspace_id: Uuid,
    session_id: &str,
    limit: u32,
) -> Result<Vec<SequenceRange>, StoreError> {
    let ctx = "finding a session's gaps";
    let mut stored = IntervalSet::new();
    for agent in agent_keys(conn, workspace_id)? {
        let mut stmt = conn
            .prepare_cached(
                "SELECT first_seq, last_seq FROM session_seqs \
                 WHERE agent_id = ?1 AND session_id = ?2",
            )
            .ctx(ctx)?;
        let rows = stmt
            .query_map(params![agent, session_id], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
            })
            .ctx(ctx)?;
        for row in rows {
            let (first, last) = row.ctx(ctx)?;
            stored.insert(first, last);
        }
    }
    let ranges: Vec<(i64, i64)> = stored.ranges().collect();
    Ok(ranges
        .windows(2)
        .map(|w| SequenceRange {
            first: w[0].1 + 1,
            last: w[1].0 - 1,
        })
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect())
}

pub(super) fn sessions(
    conn: &Connection,
    workspace_id: Uuid,
) -> Result<Vec<SessionActivity>, StoreError> {
    let ctx = "listing sessions";
    let mut out = Sessions::new(workspace_id);
    for agent in agent_keys(conn, workspace_id)? {
        let mut extents: HashMap<String, (u64, Option<i32>, Option<i32>)> = HashMap::new();
        let mut stmt = conn
            .prepare_cached(
                "SELECT session_id, sum(last_seq - first_seq + 1), min(first_seq), max(last_seq) \
                 FROM session_seqs WHERE agent_id = ?1 GROUP BY session_id",
            )
            .ctx(ctx)?;
        let rows = stmt
            .query_map(params![agent], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<i32>>(2)?,
                    row.get::<_, Option<i32>>(3)?,
                ))
            })
            .ctx(ctx)?;
        for row in rows {
            let (session, n, first, last) = row.ctx(ctx)?;
            extents.insert(session, (count_from_sql(n), first, last));
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT session_id, final_sequence_number, purged_records, purged_conflicts, \
                 purged_first, purged_last, conflicts, first_id, last_id, first_occurred, \
                 last_occurred, policy_digest FROM sessions WHERE agent_id = ?1",
            )
            .ctx(ctx)?;
        let mut rows = stmt.query(params![agent]).ctx(ctx)?;
        while let Some(row) = rows.next().ctx(ctx)? {
            let session: String = row.get(0).ctx(ctx)?;
            let first_id: Option<RecordId> = row.get(7).ctx(ctx)?;
            let last_id: Option<RecordId> = row.get(8).ctx(ctx)?;
            let (distinct, first_seq, last_seq) =
                extents.remove(&session).unwrap_or((0, None, None));
            if let (Some(first_id), Some(last_id)) = (first_id, last_id) {
                let first_time: Option<i64> = row.get(9).ctx(ctx)?;
                let last_time: Option<i64> = row.get(10).ctx(ctx)?;
                out.add_live(LiveRows {
                    session_id: session.clone(),
                    distinct,
                    conflicts: count_from_sql(row.get(6).ctx(ctx)?),
                    first_sequence_number: first_seq,
                    last_sequence_number: last_seq,
                    first_id,
                    last_id,
                    first_time: first_time.map(from_nanos).transpose()?,
                    last_time: last_time.map(from_nanos).transpose()?,
                });
            }
            out.add_session_row(SessionRow {
                session_id: session,
                final_sequence_number: row.get(1).ctx(ctx)?,
                purged_records: count_from_sql(row.get(2).ctx(ctx)?),
                purged_conflicts: count_from_sql(row.get(3).ctx(ctx)?),
                purged_first: row.get(4).ctx(ctx)?,
                purged_last: row.get(5).ctx(ctx)?,
                policy_digest: row.get(11).ctx(ctx)?,
            });
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT session_id, source, reason, records, frames FROM losses \
                 WHERE agent_id = ?1 AND session_id <> ''",
            )
            .ctx(ctx)?;
        let mut rows = stmt.query(params![agent]).ctx(ctx)?;
        while let Some(row) = rows.next().ctx(ctx)? {
            let source: String = row.get(1).ctx(ctx)?;
            out.add_loss(LossRow {
                session_id: row.get(0).ctx(ctx)?,
                loss: crate::model::Loss {
                    source: crate::sessions::loss_source(&source)?,
                    reason: row.get(2).ctx(ctx)?,
                    records: count_from_sql(row.get(3).ctx(ctx)?),
                    frames: count_from_sql(row.get(4).ctx(ctx)?),
                },
            });
        }
    }
    Ok(out.finish())
}

/// Buckets of `size` nanoseconds wholly inside `since..until`: the first
/// and one past the last (`None` bounds: all of them).
fn whole_buckets(since: Option<i64>, until: Option<i64>, size: i64) -> (i64, i64) {
    let first = since.map_or(i64::MIN, |s| {
        let b = s.div_euclid(size);
        if s.rem_euclid(size) == 0 { b } else { b + 1 }
    });
    let end = until.map_or(i64::MAX, |u| u.div_euclid(size));
    (first, end.max(first))
}

/// The parts of `since..until` outside the whole buckets `b0..b1` of
/// `size`.
fn edges(
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

pub(super) fn workspace_activity(
    conn: &Connection,
    query: &ActivityQuery,
) -> Result<WorkspaceActivity, StoreError> {
    let ctx = "counting a workspace's records";
    let since = query.since.map(nanos);
    let until = query.until.map(nanos);
    let mut out = WorkspaceActivity::default();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut hosts: BTreeMap<String, u64> = BTreeMap::new();
    if since.zip(until).is_some_and(|(s, u)| s >= u) {
        return Ok(out);
    }
    for agent in agent_keys(conn, query.workspace_id)? {
        let (m0, m1) = whole_buckets(since, until, MINUTE);
        let row = conn
            .prepare_cached(
                "SELECT sum(allowed), sum(denied), sum(conflicts), min(min_occurred), \
                 max(max_occurred) FROM activity_minutes \
                 WHERE agent_id = ?1 AND minute >= ?2 AND minute < ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![agent, m0, m1], |row| {
                    Ok((
                        row.get::<_, Option<i64>>(0)?,
                        row.get::<_, Option<i64>>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                        row.get::<_, Option<i64>>(3)?,
                        row.get::<_, Option<i64>>(4)?,
                    ))
                })
            })
            .ctx(ctx)?;
        let mut add = |allowed: i64, denied: i64, conflicts: i64, lo: i64, hi: i64| {
            out.allowed += count_from_sql(allowed);
            out.denied += count_from_sql(denied);
            out.conflicts += count_from_sql(conflicts);
            if allowed + denied > 0 {
                first = first.min(lo);
                last = last.max(hi);
            }
        };
        add(
            row.0.unwrap_or(0),
            row.1.unwrap_or(0),
            row.2.unwrap_or(0),
            row.3.unwrap_or(i64::MAX),
            row.4.unwrap_or(i64::MIN),
        );
        // The partial minutes at the edges.
        let edge_list = edges(since, until, (m0, m1), MINUTE);
        for (s, u) in edge_list {
            let w = Window::count(conn, agent, s, u)?;
            let m = w.minute;
            add(
                m.allowed,
                m.denied,
                m.conflicts,
                m.min_occurred,
                m.max_occurred,
            );
        }
        if query.top_hosts > 0 {
            let (h0, h1) = whole_buckets(since, until, HOUR);
            let mut stmt = conn
                .prepare_cached(
                    "SELECT host, sum(records) FROM denied_hosts \
                     WHERE agent_id = ?1 AND hour >= ?2 AND hour < ?3 GROUP BY host",
                )
                .ctx(ctx)?;
            let rows = stmt
                .query_map(params![agent, h0, h1], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .ctx(ctx)?;
            for row in rows {
                let (host, n) = row.ctx(ctx)?;
                *hosts.entry(host).or_default() += count_from_sql(n);
            }
            for (s, u) in edges(since, until, (h0, h1), HOUR) {
                for (host, n) in Window::count(conn, agent, s, u)?.hosts {
                    *hosts.entry(host).or_default() += n;
                }
            }
        }
    }
    if out.allowed + out.denied > 0 {
        out.first_time = Some(from_nanos(first)?);
        out.last_time = Some(from_nanos(last)?);
    }
    if out.denied > 0 {
        out.top_denied_hosts =
            top_hosts(hosts.into_iter().filter(|(_, n)| *n > 0), query.top_hosts);
    }
    Ok(out)
}

/// A workspace's records per minute of effective time in `since..until`.
pub(super) fn minute_activity(
    conn: &Connection,
    workspace_id: Option<Uuid>,
    since: Timestamp,
    until: Timestamp,
) -> Result<Vec<MinuteActivity>, StoreError> {
    let ctx = "counting records per minute";
    // Minutes that contain `since` or start before `until`.
    let (m0, m1) = (
        nanos(since).div_euclid(MINUTE),
        nanos(until).saturating_add(MINUTE - 1).div_euclid(MINUTE),
    );
    let agents = match workspace_id {
        Some(workspace_id) => agent_keys(conn, workspace_id)?,
        None => all_agent_keys(conn)?,
    };
    let mut by_minute: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    // One index range per agent (the key is agent, minute).
    for agent in agents {
        let mut stmt = conn
            .prepare_cached(
                "SELECT minute, allowed, denied FROM activity_minutes \
                 WHERE agent_id = ?1 AND minute >= ?2 AND minute < ?3",
            )
            .ctx(ctx)?;
        let rows = stmt
            .query_map(params![agent, m0, m1], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .ctx(ctx)?;
        for row in rows {
            let (minute, allowed, denied) = row.ctx(ctx)?;
            let e = by_minute.entry(minute).or_default();
            e.0 += count_from_sql(allowed);
            e.1 += count_from_sql(denied);
        }
    }
    by_minute
        .into_iter()
        .filter(|(_, (a, d))| a + d > 0)
        .map(|(minute, (allowed, denied))| {
            Ok(MinuteActivity {
                minute: from_nanos(minute.saturating_mul(MINUTE))?,
                allowed,
                denied,
            })
        })
        .collect()
}

/// Every agent's key.
fn all_agent_keys(conn: &Connection) -> Result<Vec<i64>, StoreError> {
    let ctx = "listing agents";
    let mut stmt = conn
        .prepare_cached("SELECT id FROM agents ORDER BY id")
        .ctx(ctx)?;
    let rows = stmt.query_map([], |row| row.get(0)).ctx(ctx)?;
    rows.collect::<Result<_, _>>().ctx(ctx)
}

pub(super) fn last_record_id(conn: &Connection) -> Result<Option<RecordId>, StoreError> {
    conn.query_row("SELECT max(last_id) FROM blocks", [], |row| row.get(0))
        .ctx("reading the last record id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_buckets_leave_the_partial_edges_out() {
        assert_eq!(whole_buckets(Some(0), Some(120), 60), (0, 2));
        assert_eq!(whole_buckets(Some(1), Some(119), 60), (1, 1));
        assert_eq!(whole_buckets(Some(-61), Some(60), 60), (-1, 1));
        assert_eq!(whole_buckets(None, None, 60), (i64::MIN, i64::MAX));
    }
}
