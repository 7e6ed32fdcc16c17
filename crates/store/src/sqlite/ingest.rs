//! Ingest on SQLite: the calls of one group commit become blocks (see
//! [`crate::group`] for how duplicates and conflicts are still found), and
//! this module answers the group's questions ([`Lookup`]) with queries and
//! writes its [`Plan`]: the blocks, the batch ids (with those of batches
//! the agent reported dropped), the sequence ranges, the counters and the
//! other writes (losses, dropped sequence ranges, policies, ...).

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::db::Ctx;
use crate::StoreError;
use crate::block::{self, Block};
use crate::convert::count_to_sql;
use crate::group::{Lookup, Plan, SideWrite};
use crate::intervals::IntervalSet;
use crate::model::LossSource;

const ADD_LOSS: &str = "INSERT INTO losses (agent_id, session_id, source, reason, records, frames) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
    ON CONFLICT (agent_id, session_id, source, reason) DO UPDATE SET \
    records = CASE WHEN records > 9223372036854775807 - excluded.records \
        THEN 9223372036854775807 ELSE records + excluded.records END, \
    frames = CASE WHEN frames > 9223372036854775807 - excluded.frames \
        THEN 9223372036854775807 ELSE frames + excluded.frames END";

const ADD_DROPPED_RANGE: &str = "INSERT INTO agent_dropped_ranges \
    (agent_id, session_id, first_seq, last_seq) VALUES (?1, ?2, ?3, ?4) \
    ON CONFLICT (agent_id, session_id, first_seq) DO UPDATE SET \
    last_seq = max(last_seq, excluded.last_seq)";

const SET_FINAL_SEQUENCE: &str = "INSERT INTO sessions (agent_id, session_id, final_sequence_number) \
    VALUES (?1, ?2, ?3) ON CONFLICT (agent_id, session_id) \
    DO UPDATE SET final_sequence_number = excluded.final_sequence_number";

/// Per session counters of a group, added to the `sessions` row.
const ADD_SESSION: &str = "INSERT INTO sessions (agent_id, session_id, conflicts, first_id, \
    last_id, first_occurred, last_occurred, policy_digest) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (agent_id, session_id) DO UPDATE SET \
    conflicts = conflicts + excluded.conflicts, \
    first_id = coalesce(min(first_id, excluded.first_id), first_id, excluded.first_id), \
    last_id = coalesce(max(last_id, excluded.last_id), last_id, excluded.last_id), \
    first_occurred = coalesce(min(first_occurred, excluded.first_occurred), first_occurred, \
        excluded.first_occurred), \
    last_occurred = coalesce(max(last_occurred, excluded.last_occurred), last_occurred, \
        excluded.last_occurred), \
    policy_digest = coalesce(excluded.policy_digest, policy_digest)";

/// [`Lookup`] by queries on the writer's transaction.
pub(super) struct Queries<'c>(pub &'c Connection);

impl Lookup for Queries<'_> {
    fn batch_stored(&mut self, agent: i64, batch: Uuid) -> Result<bool, StoreError> {
        self.0
            .prepare_cached("SELECT 1 FROM batch_ids WHERE agent_id = ?1 AND uuid = ?2")
            .and_then(|mut s| {
                s.query_row(params![agent, batch.as_bytes().as_slice()], |_| Ok(()))
                    .optional()
            })
            .map(|found| found.is_some())
            .ctx("looking up a batch id")
    }

    fn stored_ranges(
        &mut self,
        agent: i64,
        session: &str,
        low: i64,
        high: i64,
    ) -> Result<IntervalSet, StoreError> {
        stored_ranges(self.0, agent, session, low, high)
    }

    fn session_blocks(
        &mut self,
        agent: i64,
        session: &str,
        low: i32,
        high: i32,
    ) -> Result<Vec<Block<'static>>, StoreError> {
        let ctx = "finding stored records of a session";
        let mut stmt = self
            .0
            .prepare_cached(
                "SELECT data FROM blocks WHERE first_id IN (SELECT first_id \
                 FROM session_block_ids WHERE agent_id = ?1 AND session_id = ?2 \
                 AND first_seq <= ?3 AND last_seq >= ?4)",
            )
            .ctx(ctx)?;
        let mut rows = stmt.query(params![agent, session, high, low]).ctx(ctx)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().ctx(ctx)? {
            let data: Vec<u8> = row.get(0).ctx(ctx)?;
            out.push(block::decode(&data)?);
        }
        Ok(out)
    }
}

/// Writes a group's plan in the writer's transaction.
pub(super) fn write(tx: &Connection, plan: Plan<'_>) -> Result<(), StoreError> {
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO blocks (first_id, last_id, agent_id, session_id, first_seq, \
             last_seq, min_occurred, max_occurred, min_received, max_received, records, \
             denied, conflicts, data) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .ctx("storing records")?;
    for b in &plan.blocks {
        insert
            .execute(params![
                b.first_id,
                b.last_id,
                b.agent,
                b.session,
                b.first_seq,
                b.last_seq,
                b.min_occurred,
                b.max_occurred,
                b.min_received,
                b.max_received,
                b.records,
                b.denied,
                b.conflicts,
                b.data,
            ])
            .ctx("storing records")?;
    }
    drop(insert);
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO batch_ids (agent_id, uuid, received_ns, block) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .ctx("storing batch ids")?;
    for row in &plan.batch_ids {
        insert
            .execute(params![
                row.agent,
                row.id.as_bytes().as_slice(),
                row.received_ns,
                row.last_record
            ])
            .ctx("storing batch ids")?;
    }
    drop(insert);
    for (agent, session, added) in &plan.ranges {
        for (first, last) in added.ranges() {
            add_range(tx, *agent, session, first, last)?;
        }
    }
    let mut upsert = tx.prepare_cached(ADD_SESSION).ctx("counting a session")?;
    for s in &plan.sessions {
        upsert
            .execute(params![
                s.agent,
                s.session,
                count_to_sql(s.conflicts),
                s.first_id,
                s.last_id,
                s.first_occurred,
                s.last_occurred,
                s.policy_digest,
            ])
            .ctx("counting a session")?;
    }
    drop(upsert);
    super::counters::write(plan.counters, tx, 1)?;
    for side in &plan.side {
        side_write(tx, side)?;
    }
    Ok(())
}

fn side_write(tx: &Connection, side: &SideWrite<'_>) -> Result<(), StoreError> {
    match *side {
        SideWrite::Loss {
            agent,
            session,
            source,
            reason,
            records,
            frames,
        } => add_loss(tx, agent, session, source, reason, records, frames),
        SideWrite::FinalSequence {
            agent,
            session,
            final_sequence_number,
        } => tx
            .prepare_cached(SET_FINAL_SEQUENCE)
            .and_then(|mut s| s.execute(params![agent, session, final_sequence_number]))
            .map(drop)
            .ctx("recording a session's final sequence number"),
        SideWrite::DroppedRange {
            agent,
            session,
            first,
            last,
        } => tx
            .prepare_cached(ADD_DROPPED_RANGE)
            .and_then(|mut s| s.execute(params![agent, session, first, last]))
            .map(drop)
            .ctx("storing an agent's dropped sequence numbers"),
        SideWrite::Policy { digest, text, at } => tx
            .prepare_cached(
                "INSERT INTO policies (digest, text, first_seen) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (digest) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![digest, text, at]))
            .map(drop)
            .ctx("storing a policy"),
        SideWrite::Touch {
            agent,
            at,
            last_batch,
        } => tx
            .prepare_cached(
                "UPDATE agents SET last_contact_at = ?1, \
                 last_batch_at = CASE WHEN ?2 IS NULL THEN last_batch_at ELSE ?1 END, \
                 last_batch_uuid = coalesce(?2, last_batch_uuid) WHERE id = ?3",
            )
            .and_then(|mut s| {
                s.execute(params![
                    at,
                    last_batch.as_ref().map(|b| b.as_bytes().as_slice()),
                    agent
                ])
            })
            .map(drop)
            .ctx("noting an agent's delivery"),
    }
}

/// The stored sequence ranges of a session that overlap `low..=high`.
pub(super) fn stored_ranges(
    tx: &Connection,
    agent: i64,
    session: &str,
    low: i64,
    high: i64,
) -> Result<IntervalSet, StoreError> {
    let ctx = "reading a session's sequence numbers";
    let mut stmt = tx
        .prepare_cached(
            "SELECT first_seq, last_seq FROM session_seqs WHERE agent_id = ?1 \
             AND session_id = ?2 AND first_seq <= ?3 ORDER BY first_seq DESC",
        )
        .ctx(ctx)?;
    let mut rows = stmt.query(params![agent, session, high]).ctx(ctx)?;
    let mut set = IntervalSet::new();
    // Ranges are disjoint and sorted, so their lasts descend too: stop at
    // the first one that ends below the window.
    while let Some(row) = rows.next().ctx(ctx)? {
        let (first, last): (i64, i64) = (row.get(0).ctx(ctx)?, row.get(1).ctx(ctx)?);
        if last < low {
            break;
        }
        set.insert(first, last);
    }
    Ok(set)
}

/// Adds `first..=last` (not stored yet) to a session's ranges, merging
/// with the ranges it touches.
fn add_range(
    tx: &Connection,
    agent: i64,
    session: &str,
    first: i64,
    last: i64,
) -> Result<(), StoreError> {
    let ctx = "storing a session's sequence numbers";
    let touching = stored_ranges(tx, agent, session, first - 1, last + 1)?;
    // The common case, a session going on where it stopped: one range
    // that starts at or before the new one grows in place (one statement,
    // the row keeps its key) instead of being deleted and inserted again.
    let mut ranges = touching.ranges();
    if let (Some((start, end)), None) = (ranges.next(), ranges.next())
        && start <= first
    {
        tx.prepare_cached(
            "UPDATE session_seqs SET last_seq = ?4 \
             WHERE agent_id = ?1 AND session_id = ?2 AND first_seq = ?3",
        )
        .and_then(|mut s| s.execute(params![agent, session, start, end.max(last)]))
        .ctx(ctx)?;
        return Ok(());
    }
    let (mut low, mut high) = (first, last);
    let mut delete = tx
        .prepare_cached(
            "DELETE FROM session_seqs WHERE agent_id = ?1 AND session_id = ?2 AND first_seq = ?3",
        )
        .ctx(ctx)?;
    for (f, l) in touching.ranges() {
        low = low.min(f);
        high = high.max(l);
        delete.execute(params![agent, session, f]).ctx(ctx)?;
    }
    tx.prepare_cached(
        "INSERT INTO session_seqs (agent_id, session_id, first_seq, last_seq) \
         VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![agent, session, low, high]))
    .ctx(ctx)?;
    Ok(())
}

fn add_loss(
    tx: &Connection,
    agent: i64,
    session: &str,
    source: LossSource,
    reason: &str,
    records: u64,
    frames: u64,
) -> Result<(), StoreError> {
    tx.prepare_cached(ADD_LOSS)
        .and_then(|mut s| {
            s.execute(params![
                agent,
                session,
                source.as_str(),
                reason,
                count_to_sql(records),
                count_to_sql(frames)
            ])
        })
        .ctx("counting a loss")?;
    Ok(())
}
