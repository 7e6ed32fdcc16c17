//! Retention on SQLite: one pass, run as a writer job (see
//! [`Store::purge_records_before`](crate::Store::purge_records_before) for
//! what a pass promises).
//!
//! A block goes once its newest record was received (by the control plane)
//! before the cutoff, oldest blocks first. A pass deletes at most `max_rows`
//! records: when a block holds more than the pass has left, the block is
//! split: its first records go and the rest is written back as a block of
//! its own (a suffix of its id range, so the remaining records keep their
//! ids). What is deleted is taken off the counters (minutes, hosts, the
//! session's live counts) and folded into the session's purge counts, and
//! its sequence numbers leave the session's ranges, so that a summary stays
//! whole and purged numbers show as gaps. Batch ids go once the last record
//! of their batch is gone (or, for batches without records, once received
//! before the cutoff).

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::counters::Counters;
use super::db::Ctx;
use super::ingest::stored_ranges;
use crate::StoreError;
use crate::block::{self, Block};
use crate::convert::{count_to_sql, nanos};
use crate::intervals::IntervalSet;
use crate::model::{PurgeOutcome, RecordId};

/// What one pass did, and the id ranges it deleted.
pub(super) struct Pass {
    pub outcome: PurgeOutcome,
    pub ids: Vec<(RecordId, RecordId)>,
}

/// What a pass removed from one session.
#[derive(Default)]
struct Purged {
    seqs: IntervalSet,
    records: u64,
    conflicts: u64,
    first: Option<i32>,
    last: Option<i32>,
}

const FOLD_SESSION: &str = "INSERT INTO sessions (agent_id, session_id, purged_records, \
    purged_conflicts, purged_first, purged_last) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
    ON CONFLICT (agent_id, session_id) DO UPDATE SET \
    conflicts = max(conflicts - excluded.purged_conflicts, 0), \
    purged_records = purged_records + excluded.purged_records, \
    purged_conflicts = purged_conflicts + excluded.purged_conflicts, \
    purged_first = coalesce(min(purged_first, excluded.purged_first), purged_first, \
        excluded.purged_first), \
    purged_last = coalesce(max(purged_last, excluded.purged_last), purged_last, \
        excluded.purged_last)";

/// The session's live bounds, counted again from its remaining blocks.
const SESSION_BOUNDS: &str = "UPDATE sessions SET \
    (first_id, last_id, first_occurred, last_occurred) = ( \
        SELECT min(first_id), max(last_id), min(min_occurred), max(max_occurred) \
        FROM blocks WHERE first_id IN (SELECT first_id FROM session_block_ids \
            WHERE agent_id = ?1 AND session_id = ?2)) \
    WHERE agent_id = ?1 AND session_id = ?2";

/// One retention pass: records received before `cutoff` (ns), at most
/// `max_rows` of them; `due` are the ids whose lines are not printed yet.
pub(super) fn pass(
    tx: &Connection,
    cutoff: i64,
    max_rows: u32,
    due: &IntervalSet,
) -> Result<Pass, StoreError> {
    let ctx = "purging old records";
    let mut out = Pass {
        outcome: PurgeOutcome::default(),
        ids: Vec::new(),
    };
    if max_rows == 0 {
        return Ok(out);
    }
    let mut budget = u64::from(max_rows);
    let mut counters = Counters::default();
    let mut sessions: BTreeMap<(i64, String), Purged> = BTreeMap::new();
    let old: Vec<(i64, i64, Option<String>, Vec<u8>)> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT first_id, agent_id, session_id, data FROM blocks \
                 WHERE max_received < ?1 ORDER BY max_received, first_id LIMIT ?2",
            )
            .ctx(ctx)?;
        let rows = stmt
            .query_map(params![cutoff, max_rows], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .ctx(ctx)?;
        rows.collect::<Result<_, _>>().ctx(ctx)?
    };
    for (first_id, agent, session, data) in old {
        if budget == 0 {
            break;
        }
        let block = block::decode(&data)?;
        let n = block.records.len() as u64;
        let take = n.min(budget);
        budget -= take;
        let batch_of = block.batch_of_each();
        for (i, r) in block.records.iter().take(take as usize).enumerate() {
            let received = block.batches[batch_of[i]].received_ns;
            let occurred = r.event_time.known().map_or(received, nanos);
            counters.add(agent, occurred, r.decision.is_allowed(), r.conflict, &r.url);
            if let Some(session) = &session {
                let s = sessions.entry((agent, session.clone())).or_default();
                if r.conflict {
                    s.conflicts += 1;
                } else {
                    s.records += 1;
                    let seq = r.sequence_number;
                    s.seqs.insert(i64::from(seq), i64::from(seq));
                    s.first = Some(s.first.map_or(seq, |f| f.min(seq)));
                    s.last = Some(s.last.map_or(seq, |l| l.max(seq)));
                }
            }
        }
        tx.prepare_cached("DELETE FROM blocks WHERE first_id = ?1")
            .and_then(|mut s| s.execute(params![first_id]))
            .ctx(ctx)?;
        if take < n {
            let rest = block.suffix(take as usize);
            write_block(tx, first_id + take as i64, agent, session.as_deref(), &rest)?;
        }
        let last = first_id + take as i64 - 1;
        out.ids.push((first_id, last));
        out.outcome.records += take;
        let mut unprinted = due.clone();
        unprinted.remove(i64::MIN, first_id - 1);
        unprinted.remove(last + 1, i64::MAX);
        out.outcome.unprinted_lines += unprinted.len();
    }
    super::counters::write(counters, tx, -1)?;
    for ((agent, session), purged) in &sessions {
        for (first, last) in purged.seqs.ranges() {
            remove_range(tx, *agent, session, first, last)?;
        }
        tx.prepare_cached(FOLD_SESSION)
            .and_then(|mut s| {
                s.execute(params![
                    agent,
                    session,
                    count_to_sql(purged.records),
                    count_to_sql(purged.conflicts),
                    purged.first,
                    purged.last
                ])
            })
            .ctx(ctx)?;
        tx.prepare_cached(SESSION_BOUNDS)
            .and_then(|mut s| s.execute(params![agent, session]))
            .ctx(ctx)?;
    }
    // A batch id goes with its last record (a block loses records from its
    // start, so once the last is gone, all are).
    out.outcome.batches = tx
        .prepare_cached(
            "DELETE FROM batch_ids WHERE (agent_id, uuid) IN ( \
                SELECT agent_id, uuid FROM batch_ids WHERE received_ns < ?1 AND ( \
                    block IS NULL OR NOT EXISTS ( \
                        SELECT 1 FROM (SELECT last_id FROM blocks \
                            WHERE first_id <= batch_ids.block ORDER BY first_id DESC LIMIT 1) \
                        WHERE last_id >= batch_ids.block)) \
                LIMIT ?2)",
        )
        .and_then(|mut s| s.execute(params![cutoff, max_rows]))
        .ctx(ctx)? as u64;
    Ok(out)
}

/// Writes `block` as the block starting at `first_id`, with its index row.
pub(super) fn write_block(
    tx: &Connection,
    first_id: RecordId,
    agent: i64,
    session: Option<&str>,
    block: &Block<'_>,
) -> Result<(), StoreError> {
    let batch_of = block.batch_of_each();
    let n = block.records.len() as i64;
    let (mut first_seq, mut last_seq) = (i32::MAX, i32::MIN);
    let (mut min_occ, mut max_occ) = (i64::MAX, i64::MIN);
    let (mut min_rec, mut max_rec) = (i64::MAX, i64::MIN);
    let (mut denied, mut conflicts) = (0i64, 0i64);
    for (i, r) in block.records.iter().enumerate() {
        let received = block.batches[batch_of[i]].received_ns;
        let occurred = r.event_time.known().map_or(received, nanos);
        first_seq = first_seq.min(r.sequence_number);
        last_seq = last_seq.max(r.sequence_number);
        min_occ = min_occ.min(occurred);
        max_occ = max_occ.max(occurred);
        min_rec = min_rec.min(received);
        max_rec = max_rec.max(received);
        denied += i64::from(!r.decision.is_allowed());
        conflicts += i64::from(r.conflict);
    }
    tx.prepare_cached(
        "INSERT INTO blocks (first_id, last_id, agent_id, session_id, first_seq, last_seq, \
         min_occurred, max_occurred, min_received, max_received, records, denied, conflicts, \
         data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )
    .and_then(|mut s| {
        s.execute(params![
            first_id,
            first_id + n - 1,
            agent,
            session,
            first_seq,
            last_seq,
            min_occ,
            max_occ,
            min_rec,
            max_rec,
            n,
            denied,
            conflicts,
            block::encode(block)
        ])
    })
    .ctx("storing records")?;
    Ok(())
}

/// Takes `first..=last` out of a session's ranges.
fn remove_range(
    tx: &Connection,
    agent: i64,
    session: &str,
    first: i64,
    last: i64,
) -> Result<(), StoreError> {
    let ctx = "removing purged sequence numbers";
    let hit = stored_ranges(tx, agent, session, first, last)?;
    for (f, l) in hit.ranges() {
        tx.prepare_cached(
            "DELETE FROM session_seqs WHERE agent_id = ?1 AND session_id = ?2 AND first_seq = ?3",
        )
        .and_then(|mut s| s.execute(params![agent, session, f]))
        .ctx(ctx)?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO session_seqs (agent_id, session_id, first_seq, last_seq) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .ctx(ctx)?;
        if f < first {
            insert
                .execute(params![agent, session, f, first - 1])
                .ctx(ctx)?;
        }
        if l > last {
            insert
                .execute(params![agent, session, last + 1, l])
                .ctx(ctx)?;
        }
    }
    Ok(())
}
