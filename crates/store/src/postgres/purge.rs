//! PostgreSQL's statements for the shared retention pass
//! ([`crate::purge`]).
//!
//! A pass is its own short transaction and does not take the commit lock:
//! ingest keeps going beside it (it never changes stored records, and reads
//! of rows being deleted see them until the pass commits). Passes exclude
//! each other with a transaction advisory lock taken with `try`: when another
//! replica is purging, a pass returns at once with nothing done and that
//! replica finishes the work. Exclusion is what lets a pass read the records
//! it will delete without locking them row by row, which would write every
//! row twice.

use jiff::Timestamp;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool};

use super::outbox;
use super::text::{decode_opt, encode};
use crate::convert::count_to_sql;
use crate::model::{PurgeOutcome, RecordId};
use crate::purge::{Doomed, PurgeTx, PurgedSession, purge as pass};

/// LEAST and GREATEST ignore NULLs, which is what folding optional sequence
/// numbers needs.
const FOLD_SESSION: &str = "INSERT INTO sessions (agent_id, session_id, purged_records, \
    purged_conflicts, purged_first, purged_last) VALUES ($1, $2, $3, $4, $5, $6) \
    ON CONFLICT (agent_id, session_id) DO UPDATE SET \
    purged_records = sessions.purged_records + excluded.purged_records, \
    purged_conflicts = sessions.purged_conflicts + excluded.purged_conflicts, \
    purged_first = LEAST(sessions.purged_first, excluded.purged_first), \
    purged_last = GREATEST(sessions.purged_last, excluded.purged_last)";

/// The key of the purge lock (single-key form): "WDPURGE".
const PURGE_LOCK: i64 = 0x0057_4450_5552_4745;

/// One retention pass in its own transaction; nothing when another pass
/// (of any replica) is running.
pub(super) async fn purge(
    pool: &PgPool,
    cutoff: Timestamp,
    max_rows: u32,
) -> Result<PurgeOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let alone: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1)")
        .bind(PURGE_LOCK)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    if !alone {
        return Ok(PurgeOutcome::default());
    }
    let outcome = pass(&mut PgPurge { conn: &mut tx }, cutoff, max_rows).await?;
    tx.commit().await?;
    Ok(outcome)
}

struct PgPurge<'a> {
    conn: &'a mut PgConnection,
}

impl PurgeTx for PgPurge<'_> {
    async fn old_batches(
        &mut self,
        cutoff: Timestamp,
        limit: u32,
    ) -> Result<Vec<i64>, sqlx::Error> {
        // The oldest batches, only as many as hold about `limit` records
        // (each batch's id range bounds its count; the first is always
        // taken), so that a pass reads little more than it deletes.
        // By the control plane's receive time (the commit stamp), never the
        // agent's.
        let rows = sqlx::query(
            "SELECT id FROM ( \
                SELECT id, sum(span) OVER (ORDER BY committed_at, id \
                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - span AS before \
                FROM (SELECT id, committed_at, \
                        COALESCE(last_record - first_record + 1, 0) AS span \
                    FROM batches WHERE committed_at < $1 \
                    ORDER BY committed_at, id LIMIT $2) AS oldest \
             ) AS counted WHERE before < $2",
        )
        .bind(crate::convert::nanos(cutoff))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn)
        .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    async fn doomed_records(
        &mut self,
        batches: &[i64],
        limit: u32,
    ) -> Result<Vec<Doomed>, sqlx::Error> {
        // By each batch's id range (see the batches table), checked against
        // batch_id, one batch after the other. Not one `ORDER BY r.id` over
        // all of them: PostgreSQL would walk the primary key from its start,
        // through the index entries of every record earlier passes deleted
        // and vacuum has not cleared yet, and passes would slow down as the
        // purge goes on.
        let rows = sqlx::query(
            "SELECT r.id, r.agent_id, r.session_id, r.sequence_number, r.conflict \
             FROM batches b CROSS JOIN LATERAL ( \
                SELECT id, agent_id, session_id, sequence_number, conflict FROM records \
                WHERE id BETWEEN b.first_record AND b.last_record AND batch_id = b.id \
                ORDER BY id LIMIT $2) AS r \
             WHERE b.id = ANY($1) LIMIT $2",
        )
        .bind(batches)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Doomed {
                    id: row.try_get(0)?,
                    agent: row.try_get(1)?,
                    session: decode_opt(row.try_get(2)?),
                    sequence_number: row.try_get(3)?,
                    conflict: row.try_get(4)?,
                })
            })
            .collect()
    }

    async fn delete_records(&mut self, ids: &[RecordId]) -> Result<(u64, u64), sqlx::Error> {
        let lines = outbox::remove(self.conn, ids).await?;
        let records = sqlx::query("DELETE FROM records WHERE id = ANY($1)")
            .bind(ids)
            .execute(&mut *self.conn)
            .await?
            .rows_affected();
        Ok((records, lines))
    }

    async fn fold_session(
        &mut self,
        agent: i64,
        session: &str,
        purged: &PurgedSession,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(FOLD_SESSION)
            .bind(agent)
            .bind(encode(session))
            .bind(count_to_sql(purged.records))
            .bind(count_to_sql(purged.conflicts))
            .bind(purged.first)
            .bind(purged.last)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn delete_empty_batches(&mut self, batches: &[i64]) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            // A lateral probe per batch: as a plain NOT EXISTS the planner
            // picks a hash anti join over the whole records table.
            "DELETE FROM batches WHERE id IN (SELECT b.id FROM batches b \
             LEFT JOIN LATERAL (SELECT 1 AS found FROM records r \
                WHERE r.id BETWEEN b.first_record AND b.last_record AND r.batch_id = b.id \
                LIMIT 1) AS r ON true \
             WHERE b.id = ANY($1) AND r.found IS NULL)",
        )
        .bind(batches)
        .execute(&mut *self.conn)
        .await?
        .rows_affected())
    }
}
