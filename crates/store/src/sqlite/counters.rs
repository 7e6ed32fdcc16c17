//! SQLite's side of the counters ([`crate::counters`]): writing them, and
//! counting the partial buckets at the edges of a range from blocks.

use std::collections::BTreeSet;

use rusqlite::{Connection, params};

use super::db::Ctx;
use crate::StoreError;
use crate::block;
pub(super) use crate::counters::{Counters, HOUR, MINUTE, Window};

/// Adds the counts to the tables (`sign` 1), or takes them away (`sign`
/// -1: retention), in which case emptied rows go and the time bounds of
/// the minutes left are counted again from the blocks.
pub(super) fn write(counters: Counters, tx: &Connection, sign: i64) -> Result<(), StoreError> {
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
    for (&(agent, minute), m) in &counters.minutes {
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
            .and_then(|mut s| s.execute(params![agent, minute, m.allowed, m.denied, m.conflicts]))
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
    for ((agent, hour, host), n) in &counters.hosts {
        hosts
            .execute(params![agent, hour, host, n * sign])
            .ctx(ctx)?;
    }
    drop(hosts);
    let mut totals = tx
        .prepare_cached(
            "INSERT INTO denied_host_totals (agent_id, host, records) VALUES (?1, ?2, ?3) \
             ON CONFLICT (agent_id, host) DO UPDATE SET records = records + excluded.records",
        )
        .ctx(ctx)?;
    for ((agent, host), n) in counters.host_totals() {
        totals.execute(params![agent, host, n * sign]).ctx(ctx)?;
    }
    drop(totals);
    if sign < 0 {
        let mut gone = tx
            .prepare_cached(
                "DELETE FROM denied_host_totals WHERE agent_id = ?1 AND host = ?2 \
                 AND records <= 0",
            )
            .ctx(ctx)?;
        for ((agent, host), _) in counters.host_totals() {
            gone.execute(params![agent, host]).ctx(ctx)?;
        }
        drop(gone);
        let mut gone = tx
            .prepare_cached(
                "DELETE FROM denied_hosts WHERE agent_id = ?1 AND hour = ?2 AND host = ?3 \
                 AND records <= 0",
            )
            .ctx(ctx)?;
        for (agent, hour, host) in counters.hosts.keys() {
            gone.execute(params![agent, hour, host]).ctx(ctx)?;
        }
        drop(gone);
        let touched: BTreeSet<(i64, i64)> = counters.minutes.keys().copied().collect();
        for (agent, minute) in touched {
            let left = window(tx, agent, minute * MINUTE, (minute + 1) * MINUTE)?;
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

/// Counts the records of `agent` with an effective time in `since..until`
/// (nanoseconds).
pub(super) fn window(
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
        out.add_block(&block::decode(&data)?, since, until);
    }
    Ok(out)
}
