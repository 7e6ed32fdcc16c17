//! SQLite's statements for the shared retention pass ([`crate::purge`]), run
//! as a writer job.
//!
//! The newest record (highest id) is never purged: SQLite gives a new row
//! the largest id + 1, so deleting the newest record would hand its id out
//! again and a reader following `id > cursor` would miss the new record. It
//! goes once a newer one exists.

use jiff::Timestamp;
use sqlx::{AssertSqlSafe, Row, SqliteConnection};

use super::sql::MAX_ROWS;
use crate::model::RecordId;
use crate::purge::{Doomed, PurgeTx, PurgedSession};

const FOLD_SESSION: &str = "INSERT INTO sessions (agent_id, session_id, purged_records, \
    purged_conflicts, purged_first, purged_last) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
    ON CONFLICT (agent_id, session_id) DO UPDATE SET \
    purged_records = purged_records + excluded.purged_records, \
    purged_conflicts = purged_conflicts + excluded.purged_conflicts, \
    purged_first = CASE WHEN purged_first IS NULL OR excluded.purged_first < purged_first \
        THEN COALESCE(excluded.purged_first, purged_first) ELSE purged_first END, \
    purged_last = CASE WHEN purged_last IS NULL OR excluded.purged_last > purged_last \
        THEN COALESCE(excluded.purged_last, purged_last) ELSE purged_last END";

/// The writer's connection inside its transaction.
pub(super) struct SqlitePurge<'a> {
    pub(super) conn: &'a mut SqliteConnection,
}

/// `?first, ?first+1, ...` for an IN list of `n` values.
fn list(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl PurgeTx for SqlitePurge<'_> {
    async fn old_batches(
        &mut self,
        cutoff: Timestamp,
        limit: u32,
    ) -> Result<Vec<i64>, sqlx::Error> {
        // The first condition is the index range; the second makes it exact.
        let rows = sqlx::query(
            "SELECT id FROM batches WHERE received_secs <= ?1 \
             AND (received_secs < ?1 OR received_nanos < ?2) \
             ORDER BY received_secs, received_nanos LIMIT ?3",
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
        // Batch by batch, oldest first, until the limit: reading every record
        // of every old batch to keep `limit` of them would make a pass cost
        // far more than what it deletes.
        let mut doomed = Vec::new();
        for batch in batches {
            let left = i64::from(limit) - i64::try_from(doomed.len()).unwrap_or(i64::MAX);
            if left <= 0 {
                break;
            }
            let rows = sqlx::query(
                "SELECT id, agent_id, session_id, sequence_number, conflict FROM records \
                 WHERE batch_id = ?1 AND id < (SELECT MAX(id) FROM records) \
                 ORDER BY id LIMIT ?2",
            )
            .bind(batch)
            .bind(left)
            .fetch_all(&mut *self.conn)
            .await?;
            for row in rows {
                doomed.push(Doomed {
                    id: row.try_get(0)?,
                    agent: row.try_get(1)?,
                    session: row.try_get(2)?,
                    sequence_number: row.try_get(3)?,
                    conflict: row.try_get(4)?,
                });
            }
        }
        Ok(doomed)
    }

    async fn delete_records(&mut self, ids: &[RecordId]) -> Result<(u64, u64), sqlx::Error> {
        let (mut records, mut lines) = (0, 0);
        for chunk in ids.chunks(MAX_ROWS) {
            let list = list(1, chunk.len());
            for (table, column, count) in [
                ("line_outbox", "record_id", &mut lines),
                ("records", "id", &mut records),
            ] {
                let sql = format!("DELETE FROM {table} WHERE {column} IN ({list})");
                // Only fixed names and numbered placeholders above.
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for id in chunk {
                    query = query.bind(id);
                }
                *count += query.execute(&mut *self.conn).await?.rows_affected();
            }
        }
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
            .bind(session)
            .bind(crate::convert::count_to_sql(purged.records))
            .bind(crate::convert::count_to_sql(purged.conflicts))
            .bind(purged.first)
            .bind(purged.last)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn delete_empty_batches(&mut self, batches: &[i64]) -> Result<u64, sqlx::Error> {
        let mut deleted = 0;
        for chunk in batches.chunks(MAX_ROWS) {
            let sql = format!(
                "DELETE FROM batches WHERE id IN ({}) \
                 AND NOT EXISTS (SELECT 1 FROM records r WHERE r.batch_id = batches.id)",
                list(1, chunk.len())
            );
            // Only numbered placeholders above; every value is bound.
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for batch in chunk {
                query = query.bind(batch);
            }
            deleted += query.execute(&mut *self.conn).await?.rows_affected();
        }
        Ok(deleted)
    }
}
