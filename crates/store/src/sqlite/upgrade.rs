//! Upgrading a database written by a release that kept a row per record
//! (migrations 0001-0003): its records become blocks with the same ids, and
//! everything kept beside them (batch ids, sequence ranges, session and
//! activity counters, the printed-line watermark) is derived from them, in
//! one transaction, right after migration 0005 created the new tables. The
//! old tables are dropped at the end, so this runs once.
//!
//! The old outbox listed each unprinted record; the watermark says "every
//! record up to here is printed". It becomes the id before the first
//! unprinted record, so a record printed after that one (lines go out in
//! commit order, so only within the last moments before the stop) is
//! printed again, marked as a replay, rather than one being missed.
//!
//! In the old rows the receive time is the agent's; the control plane's is
//! the batch's commit stamp (taken when the call arrived), which is what the
//! new code records as the receive time.

use std::borrow::Cow;
use std::collections::BTreeMap;

use jiff::Timestamp;
use rusqlite::{Connection, TransactionBehavior, params};
use warden_proto::domain::Decision;

use super::counters::Counters;
use super::db::{self, Ctx, NEXT_RECORD_ID, PRINTED_THROUGH};
use super::purge::write_block;
use crate::StoreError;
use crate::block::{BatchInfo, Block, BlockRecord, PeerRef};
use crate::convert::{event_time, nanos, uuid};
use crate::intervals::IntervalSet;
use crate::model::RecordId;

/// Records per block made from old rows.
const BLOCK_RECORDS: usize = 1000;

/// What a session's rows added up to.
#[derive(Default)]
struct SessionSums {
    seqs: IntervalSet,
    conflicts: i64,
    first_id: Option<i64>,
    last_id: Option<i64>,
    first_occurred: Option<i64>,
    last_occurred: Option<i64>,
}

/// A block being made from consecutive old rows.
struct Pending {
    first_id: RecordId,
    next_id: RecordId,
    agent: i64,
    session: Option<String>,
    batch_key: i64,
    block: Block<'static>,
}

/// Converts the old tables, if there are any.
pub(super) fn upgrade(conn: &mut Connection) -> Result<(), StoreError> {
    let ctx = "converting stored records to blocks";
    let old: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'records'",
            [],
            |row| row.get(0),
        )
        .ctx(ctx)?;
    if !old {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx(ctx)?;
    let max_id: Option<i64> = tx
        .query_row("SELECT max(id) FROM records", [], |row| row.get(0))
        .ctx(ctx)?;
    let first_unprinted: Option<i64> = tx
        .query_row("SELECT min(record_id) FROM line_outbox", [], |row| {
            row.get(0)
        })
        .ctx(ctx)?;
    let printed_through = first_unprinted.map_or(max_id.unwrap_or(0), |first| first - 1);

    let mut counters = Counters::default();
    let mut sessions: BTreeMap<(i64, String), SessionSums> = BTreeMap::new();
    let mut pending: Option<Pending> = None;
    {
        let mut stmt = tx
            .prepare(
                "SELECT r.id, r.batch_id, r.agent_id, r.session_id, r.sequence_number, \
                 r.event_secs, r.event_nanos, r.allowed, r.method, r.url, r.matched_rule, \
                 r.conflict, b.uuid, b.received_secs, b.received_nanos, b.committed_at, \
                 b.process, b.peer_uid, b.peer_gid, b.peer_pid, b.peer_comm, b.peer_exe \
                 FROM records r JOIN batches b ON b.id = r.batch_id ORDER BY r.id",
            )
            .ctx(ctx)?;
        let mut rows = stmt.query([]).ctx(ctx)?;
        while let Some(row) = rows.next().ctx(ctx)? {
            let id: i64 = row.get(0).ctx(ctx)?;
            let batch_key: i64 = row.get(1).ctx(ctx)?;
            let agent: i64 = row.get(2).ctx(ctx)?;
            let session: Option<String> = row.get(3).ctx(ctx)?;
            let committed_at: i64 = row.get(15).ctx(ctx)?;
            let same_block = pending.as_ref().is_some_and(|p| {
                p.next_id == id
                    && p.agent == agent
                    && p.session == session
                    && p.block.records.len() < BLOCK_RECORDS
            });
            if !same_block {
                if let Some(done) = pending.take() {
                    flush(&tx, done)?;
                }
                pending = Some(Pending {
                    first_id: id,
                    next_id: id,
                    agent,
                    session: session.clone(),
                    batch_key,
                    block: Block::default(),
                });
            }
            let Some(p) = pending.as_mut() else {
                continue;
            };
            if p.block.batches.is_empty() || p.batch_key != batch_key {
                let secs: i64 = row.get(13).ctx(ctx)?;
                let nanos_: i64 = row.get(14).ctx(ctx)?;
                let agent_received_at = i32::try_from(nanos_)
                    .ok()
                    .and_then(|n| Timestamp::new(secs, n).ok())
                    .ok_or_else(|| StoreError::Corrupt(format!("receive time of record {id}")))?;
                p.batch_key = batch_key;
                p.block.batches.push(BatchInfo {
                    batch_id: uuid(&row.get::<_, Vec<u8>>(12).ctx(ctx)?)?,
                    received_ns: committed_at,
                    agent_received_at,
                    peer: PeerRef {
                        uid: u32::try_from(row.get::<_, i64>(17).ctx(ctx)?).unwrap_or(u32::MAX),
                        gid: u32::try_from(row.get::<_, i64>(18).ctx(ctx)?).unwrap_or(u32::MAX),
                        pid: row.get(19).ctx(ctx)?,
                        comm: Cow::Owned(row.get(20).ctx(ctx)?),
                        exe: Cow::Owned(row.get(21).ctx(ctx)?),
                    },
                    process: Cow::Owned(row.get(16).ctx(ctx)?),
                    policy_digest: None,
                    records: 0,
                });
            }
            let record = BlockRecord {
                sequence_number: row.get(4).ctx(ctx)?,
                decision: Decision::from_allowed(row.get(7).ctx(ctx)?),
                conflict: row.get(11).ctx(ctx)?,
                event_time: event_time(row.get(5).ctx(ctx)?, row.get(6).ctx(ctx)?),
                method: Cow::Owned(row.get(8).ctx(ctx)?),
                url: Cow::Owned(row.get(9).ctx(ctx)?),
                url_original_bytes: None,
                matched_rule: Cow::Owned(row.get(10).ctx(ctx)?),
            };
            let occurred = record.event_time.known().map_or(committed_at, nanos);
            counters.add(
                agent,
                occurred,
                record.decision.is_allowed(),
                record.conflict,
                &record.url,
            );
            if let Some(session) = session {
                let s = sessions.entry((agent, session)).or_default();
                if record.conflict {
                    s.conflicts += 1;
                } else {
                    let seq = i64::from(record.sequence_number);
                    s.seqs.insert(seq, seq);
                }
                s.first_id = Some(s.first_id.map_or(id, |f| f.min(id)));
                s.last_id = Some(s.last_id.map_or(id, |l| l.max(id)));
                s.first_occurred = Some(s.first_occurred.map_or(occurred, |f| f.min(occurred)));
                s.last_occurred = Some(s.last_occurred.map_or(occurred, |l| l.max(occurred)));
            }
            if let Some(batch) = p.block.batches.last_mut() {
                batch.records += 1;
            }
            p.block.records.push(record);
            p.next_id = id + 1;
        }
    }
    if let Some(done) = pending.take() {
        flush(&tx, done)?;
    }
    counters.write(&tx, 1)?;
    for ((agent, session), sums) in &sessions {
        for (first, last) in sums.seqs.ranges() {
            tx.execute(
                "INSERT INTO session_seqs (agent_id, session_id, first_seq, last_seq) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![agent, session, first, last],
            )
            .ctx(ctx)?;
        }
        tx.execute(
            "INSERT INTO sessions (agent_id, session_id, conflicts, first_id, last_id, \
             first_occurred, last_occurred) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (agent_id, session_id) DO UPDATE SET conflicts = excluded.conflicts, \
             first_id = excluded.first_id, last_id = excluded.last_id, \
             first_occurred = excluded.first_occurred, last_occurred = excluded.last_occurred",
            params![
                agent,
                session,
                sums.conflicts,
                sums.first_id,
                sums.last_id,
                sums.first_occurred,
                sums.last_occurred
            ],
        )
        .ctx(ctx)?;
    }
    tx.execute(
        "INSERT INTO batch_ids (agent_id, uuid, received_ns, block) \
         SELECT b.agent_id, b.uuid, b.committed_at, \
            (SELECT max(r.id) FROM records r WHERE r.batch_id = b.id) FROM batches b",
        [],
    )
    .ctx(ctx)?;
    db::set_state(&tx, NEXT_RECORD_ID, max_id.unwrap_or(0) + 1).ctx(ctx)?;
    db::set_state(&tx, PRINTED_THROUGH, printed_through).ctx(ctx)?;
    tx.execute_batch("DROP TABLE line_outbox; DROP TABLE records; DROP TABLE batches;")
        .ctx(ctx)?;
    tx.commit().ctx(ctx)?;
    Ok(())
}

fn flush(tx: &Connection, pending: Pending) -> Result<(), StoreError> {
    write_block(
        tx,
        pending.first_id,
        pending.agent,
        pending.session.as_deref(),
        &pending.block,
    )
}
