//! Retention on PostgreSQL, as on SQLite (see `sqlite::purge`): a block goes
//! once its newest record was received before the cutoff, oldest first, at
//! most `max_rows` records a pass; a block with more records than the pass
//! has left is split (its later records are written back as a block of their
//! own, with their ids). What goes is taken off the counters, folded into the
//! sessions' purge counts, taken out of the sessions' ranges and of the line
//! outbox (counted as unprinted lines).
//!
//! A pass is one short transaction under the commit lock: it rewrites
//! sequence ranges and counters that ingest reads and writes under that
//! lock, and it keeps passes of several replicas apart.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use sqlx::postgres::{PgConnection, PgPool};

use super::ingest::{BEGIN_LOCKED, add_hosts, insert_blocks};
use super::text::{decode_opt, encode};
use super::{chain, col, db, outbox};
use crate::StoreError;
use crate::block::{self, Block};
use crate::convert::{count_to_sql, nanos};
use crate::counters::{Counters, MINUTE};
use crate::group::BlockRow;
use crate::intervals::IntervalSet;
use crate::model::{PurgeOutcome, RecordId};

const CTX: &str = "purging old records";

/// What a pass removed from one session.
#[derive(Default)]
struct Purged {
    seqs: IntervalSet,
    records: u64,
    conflicts: u64,
    first: Option<i32>,
    last: Option<i32>,
}

/// LEAST and GREATEST ignore NULLs, which is what folding optional sequence
/// numbers needs.
const FOLD_SESSION: &str = "INSERT INTO sessions (agent_id, session_id, purged_records, \
    purged_conflicts, purged_first, purged_last) VALUES ($1, $2, $3, $4, $5, $6) \
    ON CONFLICT (agent_id, session_id) DO UPDATE SET \
    conflicts = GREATEST(sessions.conflicts - excluded.purged_conflicts, 0), \
    purged_records = sessions.purged_records + excluded.purged_records, \
    purged_conflicts = sessions.purged_conflicts + excluded.purged_conflicts, \
    purged_first = LEAST(sessions.purged_first, excluded.purged_first), \
    purged_last = GREATEST(sessions.purged_last, excluded.purged_last)";

/// The session's live bounds, counted again from its remaining blocks.
const SESSION_BOUNDS: &str = "UPDATE sessions SET \
    first_id = (SELECT min(first_id) FROM blocks WHERE agent_id = $1 AND session_id = $2), \
    last_id = (SELECT max(last_id) FROM blocks WHERE agent_id = $1 AND session_id = $2), \
    first_occurred = (SELECT min(min_occurred) FROM blocks WHERE agent_id = $1 \
        AND session_id = $2), \
    last_occurred = (SELECT max(max_occurred) FROM blocks WHERE agent_id = $1 \
        AND session_id = $2) \
    WHERE agent_id = $1 AND session_id = $2";

/// One retention pass in its own transaction.
pub(super) async fn purge(
    pool: &PgPool,
    cutoff: Timestamp,
    max_rows: u32,
) -> Result<PurgeOutcome, StoreError> {
    let mut out = PurgeOutcome::default();
    if max_rows == 0 {
        return Ok(out);
    }
    let cutoff = nanos(cutoff);
    let mut tx = pool.begin_with(BEGIN_LOCKED).await.map_err(db(CTX))?;
    let rows = sqlx::query(
        "SELECT first_id, agent_id, session_id, data FROM blocks \
         WHERE max_received < $1 ORDER BY max_received, first_id LIMIT $2",
    )
    .bind(cutoff)
    .bind(i64::from(max_rows))
    .fetch_all(&mut *tx)
    .await
    .map_err(db(CTX))?;
    let mut budget = u64::from(max_rows);
    let mut counters = Counters::default();
    let mut sessions: BTreeMap<(i64, String), Purged> = BTreeMap::new();
    let mut deleted: Vec<RecordId> = Vec::new();
    let mut rewritten: Vec<BlockRow> = Vec::new();
    let mut purged_ids: Vec<RecordId> = Vec::new();
    for row in &rows {
        if budget == 0 {
            break;
        }
        let first_id: RecordId = col(row, 0, CTX)?;
        let agent: i64 = col(row, 1, CTX)?;
        let session = decode_opt(col(row, 2, CTX)?);
        let data: Vec<u8> = col(row, 3, CTX)?;
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
        deleted.push(first_id);
        if take < n {
            let rest = block.suffix(take as usize);
            rewritten.push(block_row(first_id + take as i64, agent, session, &rest));
        }
        purged_ids.extend(first_id..first_id + take as i64);
        out.records += take;
    }
    if !deleted.is_empty() {
        sqlx::query("DELETE FROM blocks WHERE first_id = ANY($1)")
            .bind(&deleted)
            .execute(&mut *tx)
            .await
            .map_err(db(CTX))?;
    }
    if !rewritten.is_empty() {
        insert_blocks(&mut tx, &rewritten).await?;
    }
    if !purged_ids.is_empty() {
        // The tombstone: what went, chained after the head at the cut.
        let head = chain::head(&mut tx).await?;
        let mut sorted = purged_ids.clone();
        sorted.sort_unstable();
        let ranges = crate::intervals::runs(sorted);
        let link = crate::chain::purge_link(&head, &ranges, Timestamp::now());
        chain::insert_link(&mut tx, &link).await?;
    }
    out.unprinted_lines = outbox::remove(&mut tx, &purged_ids)
        .await
        .map_err(db(CTX))?;
    take_counters(&mut tx, &counters).await?;
    for ((agent, session), purged) in &sessions {
        remove_ranges(&mut tx, *agent, session, &purged.seqs).await?;
        sqlx::query(FOLD_SESSION)
            .bind(agent)
            .bind(encode(session))
            .bind(count_to_sql(purged.records))
            .bind(count_to_sql(purged.conflicts))
            .bind(purged.first)
            .bind(purged.last)
            .execute(&mut *tx)
            .await
            .map_err(db(CTX))?;
        sqlx::query(SESSION_BOUNDS)
            .bind(agent)
            .bind(encode(session))
            .execute(&mut *tx)
            .await
            .map_err(db(CTX))?;
    }
    // A batch id goes with its last record (a block loses records from its
    // start, so once the last is gone, all are).
    out.batches = sqlx::query(
        "DELETE FROM batch_ids WHERE (agent_id, uuid) IN ( \
            SELECT i.agent_id, i.uuid FROM batch_ids i WHERE i.received_ns < $1 AND ( \
                i.block IS NULL OR NOT EXISTS ( \
                    SELECT 1 FROM blocks b WHERE b.first_id <= i.block AND b.last_id >= i.block)) \
            LIMIT $2)",
    )
    .bind(cutoff)
    .bind(i64::from(max_rows))
    .execute(&mut *tx)
    .await
    .map_err(db(CTX))?
    .rows_affected();
    tx.commit().await.map_err(db(CTX))?;
    Ok(out)
}

/// The index row of `block`, stored from `first_id`.
fn block_row(
    first_id: RecordId,
    agent: i64,
    session: Option<String>,
    block: &Block<'_>,
) -> BlockRow {
    let batch_of = block.batch_of_each();
    let n = block.records.len() as i64;
    let mut row = BlockRow {
        first_id,
        last_id: first_id + n - 1,
        agent,
        session,
        first_seq: i32::MAX,
        last_seq: i32::MIN,
        min_occurred: i64::MAX,
        max_occurred: i64::MIN,
        min_received: i64::MAX,
        max_received: i64::MIN,
        records: n,
        denied: 0,
        conflicts: 0,
        data: block::encode(block),
    };
    for (i, r) in block.records.iter().enumerate() {
        let received = block.batches[batch_of[i]].received_ns;
        let occurred = r.event_time.known().map_or(received, nanos);
        row.first_seq = row.first_seq.min(r.sequence_number);
        row.last_seq = row.last_seq.max(r.sequence_number);
        row.min_occurred = row.min_occurred.min(occurred);
        row.max_occurred = row.max_occurred.max(occurred);
        row.min_received = row.min_received.min(received);
        row.max_received = row.max_received.max(received);
        row.denied += i64::from(!r.decision.is_allowed());
        row.conflicts += i64::from(r.conflict);
    }
    row
}

/// Takes purged records off the counters: emptied host rows go, and the
/// minutes touched are counted again from the blocks left.
async fn take_counters(conn: &mut PgConnection, counters: &Counters) -> Result<(), StoreError> {
    if !counters.hosts.is_empty() {
        add_hosts(conn, counters, -1).await?;
        sqlx::query("DELETE FROM denied_host_totals WHERE records <= 0 AND agent_id = ANY($1)")
            .bind(
                counters
                    .hosts
                    .keys()
                    .map(|k| k.0)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *conn)
            .await
            .map_err(db(CTX))?;
        let keys: Vec<&(i64, i64, String)> = counters.hosts.keys().collect();
        sqlx::query(
            "DELETE FROM denied_hosts h USING unnest($1::bigint[], $2::bigint[], $3::text[]) \
                 AS k(agent, hour, host) \
             WHERE h.agent_id = k.agent AND h.hour = k.hour AND h.host = k.host \
                 AND h.records <= 0",
        )
        .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
        .bind(
            keys.iter()
                .map(|k| encode(&k.2).into_owned())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await
        .map_err(db(CTX))?;
    }
    for (&(agent, minute), m) in &counters.minutes {
        let left = minute_left(conn, agent, minute).await?;
        if left.allowed + left.denied == 0 {
            sqlx::query("DELETE FROM activity_minutes WHERE agent_id = $1 AND minute = $2")
                .bind(agent)
                .bind(minute)
                .execute(&mut *conn)
                .await
                .map_err(db(CTX))?;
        } else {
            sqlx::query(
                "UPDATE activity_minutes SET allowed = allowed - $3, denied = denied - $4, \
                 conflicts = conflicts - $5, min_occurred = $6, max_occurred = $7 \
                 WHERE agent_id = $1 AND minute = $2",
            )
            .bind(agent)
            .bind(minute)
            .bind(m.allowed)
            .bind(m.denied)
            .bind(m.conflicts)
            .bind(left.min_occurred)
            .bind(left.max_occurred)
            .execute(&mut *conn)
            .await
            .map_err(db(CTX))?;
        }
    }
    Ok(())
}

/// Takes purged numbers out of a session's ranges.
async fn remove_ranges(
    conn: &mut PgConnection,
    agent: i64,
    session: &str,
    purged: &IntervalSet,
) -> Result<(), StoreError> {
    let (Some(low), Some(high)) = (purged.first(), purged.ranges().last().map(|r| r.1)) else {
        return Ok(());
    };
    let session = encode(session);
    let rows = sqlx::query(
        "DELETE FROM session_seqs WHERE agent_id = $1 AND session_id = $2 \
         AND first_seq <= $4 AND last_seq >= $3 RETURNING first_seq, last_seq",
    )
    .bind(agent)
    .bind(&session)
    .bind(low)
    .bind(high)
    .fetch_all(&mut *conn)
    .await
    .map_err(db(CTX))?;
    let mut left = IntervalSet::new();
    for row in &rows {
        left.insert(col(row, 0, CTX)?, col(row, 1, CTX)?);
    }
    for (f, l) in purged.ranges() {
        left.remove(f, l);
    }
    let (firsts, lasts): (Vec<i64>, Vec<i64>) = left.ranges().unzip();
    if !firsts.is_empty() {
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
    }
    Ok(())
}

/// What is left of an agent's minute once purged blocks are gone: whether
/// any record, and the effective time bounds. Blocks wholly inside the
/// minute give their bounds from the index row; only blocks straddling its
/// edges are decoded.
async fn minute_left(
    conn: &mut PgConnection,
    agent: i64,
    minute: i64,
) -> Result<crate::counters::Minute, StoreError> {
    let (since, until) = (minute * MINUTE, (minute + 1) * MINUTE);
    let rows = sqlx::query(
        "SELECT min_occurred, max_occurred, records, \
         CASE WHEN min_occurred >= $2 AND max_occurred < $3 THEN NULL ELSE data END \
         FROM blocks WHERE agent_id = $1 AND max_occurred >= $2 AND min_occurred < $3",
    )
    .bind(agent)
    .bind(since)
    .bind(until)
    .fetch_all(&mut *conn)
    .await
    .map_err(db(CTX))?;
    let mut left = crate::counters::Window::default();
    for row in &rows {
        match col::<Option<Vec<u8>>>(row, 3, CTX)? {
            None => {
                let m = &mut left.minute;
                // Only whether any is left matters, and the bounds.
                m.allowed += i64::from(col::<i32>(row, 2, CTX)?);
                m.min_occurred = m.min_occurred.min(col(row, 0, CTX)?);
                m.max_occurred = m.max_occurred.max(col(row, 1, CTX)?);
            }
            Some(data) => left.add_block(&block::decode(&data)?, since, until),
        }
    }
    Ok(left.minute)
}
