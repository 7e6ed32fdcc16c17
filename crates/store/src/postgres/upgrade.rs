//! Upgrading a database written by a release that kept a row per record
//! (migrations 0001-0005): its records become blocks with the same ids, and
//! what is kept beside them (batch ids, sequence ranges, session and activity
//! counters, the next record id) is derived from them, in one transaction
//! under the commit lock, right after migration 0006 created the new tables.
//! The old `records` and `batches` tables are dropped at the end, so this
//! runs once; a replica starting at the same time waits for the lock and
//! then finds nothing to convert. The line outbox is the same table in both
//! layouts (runs of record ids per replica), so printed-line state is kept
//! as it is.
//!
//! The control plane's receive time of an old record is its batch's commit
//! stamp (taken when the call arrived), as the old reads reported it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use jiff::Timestamp;
use sqlx::postgres::{PgConnection, PgPool};
use warden_proto::domain::Decision;

use super::ingest::{BEGIN_LOCKED, add_counters, insert_blocks, set_next_record_id};
use super::text::{decode, decode_opt, encode};
use super::{col, db};
use crate::StoreError;
use crate::block::{self, BatchInfo, Block, BlockRecord, PeerRef};
use crate::convert::{count_to_sql, event_time, nanos};
use crate::counters::Counters;
use crate::group::BlockRow;
use crate::intervals::IntervalSet;
use crate::model::RecordId;

const CTX: &str = "converting stored records to blocks";
/// Records per block made from old rows.
const BLOCK_RECORDS: usize = 1000;
/// Old rows read per query.
const PAGE: i64 = 10_000;

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
    min_received: i64,
    max_received: i64,
}

const OLD_ROWS: &str = "SELECT r.id, r.batch_id, r.agent_id, r.session_id, r.sequence_number, \
    r.event_secs, r.event_nanos, r.allowed, r.method, r.url, r.matched_rule, r.conflict, \
    r.url_original_bytes, b.uuid, b.received_secs, b.received_nanos, b.committed_at, b.process, \
    b.peer_uid, b.peer_gid, b.peer_pid, b.peer_comm, b.peer_exe, b.policy_digest \
    FROM records r JOIN batches b ON b.id = r.batch_id WHERE r.id > $1 ORDER BY r.id LIMIT $2";

/// Converts the old tables, if there are any.
pub(super) async fn upgrade(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin_with(BEGIN_LOCKED).await.map_err(db(CTX))?;
    let old: bool = col(
        &sqlx::query("SELECT to_regclass('records') IS NOT NULL")
            .fetch_one(&mut *tx)
            .await
            .map_err(db(CTX))?,
        0,
        CTX,
    )?;
    if !old {
        return Ok(());
    }
    // Never hand out an id the old identity handed out, even one retention
    // removed since.
    let next_id: RecordId = col(
        &sqlx::query(
            "SELECT GREATEST(nextval(pg_get_serial_sequence('records', 'id')), \
             (SELECT coalesce(max(id), 0) + 1 FROM records))",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db(CTX))?,
        0,
        CTX,
    )?;
    let mut counters = Counters::default();
    let mut sessions: BTreeMap<(i64, String), SessionSums> = BTreeMap::new();
    let mut pending: Option<Pending> = None;
    let mut done: Vec<BlockRow> = Vec::new();
    let mut after = i64::MIN;
    loop {
        let rows = sqlx::query(OLD_ROWS)
            .bind(after)
            .bind(PAGE)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(CTX))?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let id: i64 = col(row, 0, CTX)?;
            after = id;
            let batch_key: i64 = col(row, 1, CTX)?;
            let agent: i64 = col(row, 2, CTX)?;
            let session = decode_opt(col(row, 3, CTX)?);
            let committed_at: i64 = col(row, 16, CTX)?;
            let same_block = pending.as_ref().is_some_and(|p| {
                p.next_id == id
                    && p.agent == agent
                    && p.session == session
                    && p.block.records.len() < BLOCK_RECORDS
            });
            if !same_block {
                if let Some(p) = pending.take() {
                    done.push(finish(p));
                }
                pending = Some(Pending {
                    first_id: id,
                    next_id: id,
                    agent,
                    session: session.clone(),
                    batch_key,
                    block: Block::default(),
                    min_received: i64::MAX,
                    max_received: i64::MIN,
                });
            }
            let Some(p) = pending.as_mut() else {
                continue;
            };
            if p.block.batches.is_empty() || p.batch_key != batch_key {
                let secs: i64 = col(row, 14, CTX)?;
                let nanos_: i32 = col(row, 15, CTX)?;
                let agent_received_at = Timestamp::new(secs, nanos_)
                    .map_err(|_| StoreError::Corrupt(format!("receive time of record {id}")))?;
                p.batch_key = batch_key;
                p.block.batches.push(BatchInfo {
                    batch_id: col(row, 13, CTX)?,
                    received_ns: committed_at,
                    agent_received_at,
                    peer: PeerRef {
                        uid: u32::try_from(col::<i64>(row, 18, CTX)?).unwrap_or(u32::MAX),
                        gid: u32::try_from(col::<i64>(row, 19, CTX)?).unwrap_or(u32::MAX),
                        pid: col(row, 20, CTX)?,
                        comm: Cow::Owned(decode(col(row, 21, CTX)?)),
                        exe: Cow::Owned(decode(col(row, 22, CTX)?)),
                    },
                    process: Cow::Owned(decode(col(row, 17, CTX)?)),
                    policy_digest: decode_opt(col(row, 23, CTX)?).map(Cow::Owned),
                    records: 0,
                });
            }
            p.min_received = p.min_received.min(committed_at);
            p.max_received = p.max_received.max(committed_at);
            let original: Option<i64> = col(row, 12, CTX)?;
            let event_nanos: Option<i32> = col(row, 6, CTX)?;
            let record = BlockRecord {
                sequence_number: col(row, 4, CTX)?,
                decision: Decision::from_allowed(col(row, 7, CTX)?),
                conflict: col(row, 11, CTX)?,
                event_time: event_time(col(row, 5, CTX)?, event_nanos.map(i64::from)),
                method: Cow::Owned(decode(col(row, 8, CTX)?)),
                url: Cow::Owned(decode(col(row, 9, CTX)?)),
                url_original_bytes: original.and_then(|n| u64::try_from(n).ok()),
                matched_rule: Cow::Owned(decode(col(row, 10, CTX)?)),
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
        if done.len() >= 64 {
            insert_blocks(&mut tx, &std::mem::take(&mut done)).await?;
        }
    }
    if let Some(p) = pending.take() {
        done.push(finish(p));
    }
    if !done.is_empty() {
        insert_blocks(&mut tx, &done).await?;
    }
    add_counters(&mut tx, &counters).await?;
    write_sessions(&mut tx, &sessions).await?;
    sqlx::query(
        "INSERT INTO batch_ids (agent_id, uuid, received_ns, block) \
         SELECT agent_id, uuid, committed_at, last_record FROM batches",
    )
    .execute(&mut *tx)
    .await
    .map_err(db(CTX))?;
    set_next_record_id(&mut tx, next_id).await?;
    sqlx::raw_sql("DROP TABLE records; DROP TABLE batches")
        .execute(&mut *tx)
        .await
        .map_err(db(CTX))?;
    tx.commit().await.map_err(db(CTX))?;
    Ok(())
}

/// A pending block with its index row.
fn finish(p: Pending) -> BlockRow {
    let b = &p.block;
    let batch_of = b.batch_of_each();
    let mut row = BlockRow {
        first_id: p.first_id,
        last_id: p.next_id - 1,
        agent: p.agent,
        session: p.session.clone(),
        first_seq: i32::MAX,
        last_seq: i32::MIN,
        min_occurred: i64::MAX,
        max_occurred: i64::MIN,
        min_received: p.min_received,
        max_received: p.max_received,
        records: b.records.len() as i64,
        denied: 0,
        conflicts: 0,
        data: block::encode(b),
    };
    for (i, r) in b.records.iter().enumerate() {
        let occurred = r
            .event_time
            .known()
            .map_or(b.batches[batch_of[i]].received_ns, nanos);
        row.first_seq = row.first_seq.min(r.sequence_number);
        row.last_seq = row.last_seq.max(r.sequence_number);
        row.min_occurred = row.min_occurred.min(occurred);
        row.max_occurred = row.max_occurred.max(occurred);
        row.denied += i64::from(!r.decision.is_allowed());
        row.conflicts += i64::from(r.conflict);
    }
    row
}

async fn write_sessions(
    conn: &mut PgConnection,
    sessions: &BTreeMap<(i64, String), SessionSums>,
) -> Result<(), StoreError> {
    for ((agent, session), sums) in sessions {
        let session = encode(session);
        let (firsts, lasts): (Vec<i64>, Vec<i64>) = sums.seqs.ranges().unzip();
        sqlx::query(
            "INSERT INTO session_seqs (agent_id, session_id, first_seq, last_seq) \
             SELECT $1, $2, * FROM unnest($3::bigint[], $4::bigint[])",
        )
        .bind(agent)
        .bind(&session)
        .bind(&firsts)
        .bind(&lasts)
        .execute(&mut *conn)
        .await
        .map_err(db(CTX))?;
        sqlx::query(
            "INSERT INTO sessions (agent_id, session_id, conflicts, first_id, last_id, \
             first_occurred, last_occurred) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (agent_id, session_id) DO UPDATE SET conflicts = excluded.conflicts, \
             first_id = excluded.first_id, last_id = excluded.last_id, \
             first_occurred = excluded.first_occurred, last_occurred = excluded.last_occurred",
        )
        .bind(agent)
        .bind(&session)
        .bind(count_to_sql(u64::try_from(sums.conflicts).unwrap_or(0)))
        .bind(sums.first_id)
        .bind(sums.last_id)
        .bind(sums.first_occurred)
        .bind(sums.last_occurred)
        .execute(&mut *conn)
        .await
        .map_err(db(CTX))?;
    }
    Ok(())
}
