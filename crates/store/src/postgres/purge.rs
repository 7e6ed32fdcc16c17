//! PostgreSQL's statements for the shared retention pass
//! ([`crate::purge`]).
//!
//! A pass is its own short transaction and does not take the commit lock:
//! ingest keeps going beside it, waiting only where both touch the same rows
//! (a re-sent record whose stored twin is being purged). Records are locked
//! with `SKIP LOCKED`, so passes run by two replicas at once split the work
//! instead of queueing.

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

/// One retention pass in its own transaction.
pub(super) async fn purge(
    pool: &PgPool,
    cutoff: Timestamp,
    max_rows: u32,
) -> Result<PurgeOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
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
        let rows = sqlx::query(
            "SELECT id FROM batches WHERE (received_secs, received_nanos) < ($1, $2) \
             ORDER BY received_secs, received_nanos LIMIT $3",
        )
        .bind(cutoff.as_second())
        .bind(cutoff.subsec_nanosecond())
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
        // batch_id.
        let rows = sqlx::query(
            "SELECT r.id, r.agent_id, r.session_id, r.sequence_number, r.conflict \
             FROM batches b JOIN records r \
                ON r.id BETWEEN b.first_record AND b.last_record AND r.batch_id = b.id \
             WHERE b.id = ANY($1) ORDER BY r.id LIMIT $2 FOR UPDATE OF r SKIP LOCKED",
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
            "DELETE FROM batches b WHERE b.id = ANY($1) AND NOT EXISTS (SELECT 1 FROM records r \
             WHERE r.id BETWEEN b.first_record AND b.last_record AND r.batch_id = b.id)",
        )
        .bind(batches)
        .execute(&mut *self.conn)
        .await?
        .rows_affected())
    }
}
