//! SQLite's statements for the shared ingest algorithm
//! ([`crate::ingest`]), run inside the writer's transaction.

use sqlx::{AssertSqlSafe, Row, SqliteConnection};
use uuid::Uuid;
use warden_proto::domain::{AuditRecord, IngestBatch};

use super::sql::{MAX_ROWS, SqlCache};
use crate::convert::{count_to_sql, event_columns, occurred_nanos};
use crate::ingest::{Content, IngestTx, Target};
use crate::model::{LossSource, RecordId};

const INSERT_BATCH: &str = "INSERT INTO batches (agent_id, uuid, received_secs, received_nanos, \
    committed_at, session_id, process, peer_uid, peer_gid, peer_pid, peer_comm, peer_exe) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
    ON CONFLICT (agent_id, uuid) DO NOTHING";

const ADD_LOSS: &str = "INSERT INTO losses (agent_id, session_id, source, reason, records, frames) \
    VALUES (?, ?, ?, ?, ?, ?) \
    ON CONFLICT (agent_id, session_id, source, reason) DO UPDATE SET \
    records = CASE WHEN records > 9223372036854775807 - excluded.records \
        THEN 9223372036854775807 ELSE records + excluded.records END, \
    frames = CASE WHEN frames > 9223372036854775807 - excluded.frames \
        THEN 9223372036854775807 ELSE frames + excluded.frames END";

const ADD_DROPPED_RANGE: &str = "INSERT INTO agent_dropped_ranges \
    (agent_id, session_id, first_seq, last_seq) VALUES (?, ?, ?, ?) \
    ON CONFLICT (agent_id, session_id, first_seq) DO UPDATE SET \
    last_seq = max(last_seq, excluded.last_seq)";

const SET_FINAL_SEQUENCE: &str = "INSERT INTO sessions (agent_id, session_id, final_sequence_number) \
    VALUES (?, ?, ?) ON CONFLICT (agent_id, session_id) \
    DO UPDATE SET final_sequence_number = excluded.final_sequence_number";

const TOUCH_AGENT_BATCH: &str =
    "UPDATE agents SET last_contact_at = ?, last_batch_at = ?, last_batch_uuid = ? WHERE id = ?";

pub(super) const TOUCH_AGENT: &str = "UPDATE agents SET last_contact_at = ? WHERE id = ?";

/// The writer's connection inside its transaction, with the statement cache.
pub(super) struct SqliteIngest<'a> {
    pub(super) conn: &'a mut SqliteConnection,
    pub(super) sql: &'a mut SqlCache,
}

impl IngestTx for SqliteIngest<'_> {
    async fn insert_batch(
        &mut self,
        agent: i64,
        batch: &IngestBatch,
        committed_at: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let logs = batch.logs.as_ref();
        let done = sqlx::query(INSERT_BATCH)
            .bind(agent)
            .bind(batch.batch_id.as_bytes().as_slice())
            .bind(batch.received_at.as_second())
            .bind(batch.received_at.subsec_nanosecond())
            .bind(committed_at)
            .bind(logs.and_then(|l| l.session_id.as_deref()))
            .bind(logs.map_or("", |l| l.confined_process_name.as_str()))
            .bind(i64::from(batch.peer.uid))
            .bind(i64::from(batch.peer.gid))
            .bind(batch.peer.pid)
            .bind(batch.peer.comm.as_str())
            .bind(batch.peer.exe.as_str())
            .execute(&mut *self.conn)
            .await?;
        // Nothing inserted: the batch id is taken (a re-send).
        Ok((done.rows_affected() == 1).then(|| done.last_insert_rowid()))
    }

    async fn insert_records(
        &mut self,
        target: &Target<'_>,
        conflict: bool,
        records: &[AuditRecord],
        indexes: &[usize],
    ) -> Result<Vec<(RecordId, i32)>, sqlx::Error> {
        let mut inserted = Vec::with_capacity(indexes.len());
        for chunk in indexes.chunks(MAX_ROWS) {
            let statement = self.sql.insert_records(chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(statement))
                .bind(target.batch)
                .bind(target.agent)
                .bind(target.session)
                .bind(conflict);
            for &i in chunk {
                let record = &records[i];
                let (secs, nanos) = event_columns(record.event_time);
                query = query
                    .bind(record.sequence_number)
                    .bind(secs)
                    .bind(nanos)
                    .bind(occurred_nanos(record.event_time, target.received_at))
                    .bind(record.decision.is_allowed())
                    .bind(record.method.as_str())
                    .bind(record.url.as_str())
                    .bind(record.matched_rule.as_str());
            }
            // No RETURNING: sqlx hands every returned row from its worker
            // thread to the caller one by one, which cost more than the
            // insert. The rows a statement inserts get consecutive ids from
            // the single writer, ending at the last insert rowid.
            let done = query.execute(&mut *self.conn).await?;
            let stored = i64::try_from(done.rows_affected()).unwrap_or(i64::MAX);
            let last = done.last_insert_rowid();
            if stored == chunk.len() as i64 {
                // All went in, in VALUES order.
                let first = last - stored + 1;
                inserted.extend(
                    chunk
                        .iter()
                        .zip(first..)
                        .map(|(&i, id)| (id, records[i].sequence_number)),
                );
            } else if stored > 0 {
                // Some were already stored: ask which went in.
                let rows = sqlx::query(
                    "SELECT id, sequence_number FROM records WHERE id BETWEEN ? AND ? ORDER BY id",
                )
                .bind(last - stored + 1)
                .bind(last)
                .fetch_all(&mut *self.conn)
                .await?;
                for row in rows {
                    inserted.push((row.try_get(0)?, row.try_get(1)?));
                }
            }
        }
        Ok(inserted)
    }

    async fn stored_contents(
        &mut self,
        agent: i64,
        session: &str,
        sequence_numbers: &[i32],
    ) -> Result<Vec<(i32, Content)>, sqlx::Error> {
        let mut known = Vec::new();
        for chunk in sequence_numbers.chunks(MAX_ROWS) {
            let mut query = sqlx::query(AssertSqlSafe(self.sql.stored_contents(chunk.len())));
            // The statement has two halves, each with its own parameters.
            for _ in 0..2 {
                query = query.bind(agent).bind(session);
                for &seq in chunk {
                    query = query.bind(seq);
                }
            }
            for row in query.fetch_all(&mut *self.conn).await? {
                let content = Content {
                    allowed: row.try_get(1)?,
                    method: row.try_get(2)?,
                    url: row.try_get(3)?,
                    matched_rule: row.try_get(4)?,
                    event: (row.try_get(5)?, row.try_get(6)?),
                    process: row.try_get(7)?,
                };
                known.push((row.try_get(0)?, content));
            }
        }
        Ok(known)
    }

    async fn add_loss(
        &mut self,
        agent: i64,
        session: &str,
        source: LossSource,
        reason: &str,
        records: u64,
        frames: u64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(ADD_LOSS)
            .bind(agent)
            .bind(session)
            .bind(source.as_str())
            .bind(reason)
            .bind(count_to_sql(records))
            .bind(count_to_sql(frames))
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn add_dropped_range(
        &mut self,
        agent: i64,
        session: &str,
        first: i32,
        last: i32,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(ADD_DROPPED_RANGE)
            .bind(agent)
            .bind(session)
            .bind(first)
            .bind(last)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn set_final_sequence(
        &mut self,
        agent: i64,
        session: &str,
        final_sequence_number: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(SET_FINAL_SEQUENCE)
            .bind(agent)
            .bind(session)
            .bind(final_sequence_number)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn touch_agent(
        &mut self,
        agent: i64,
        at: i64,
        last_batch: Option<Uuid>,
    ) -> Result<(), sqlx::Error> {
        match last_batch {
            Some(batch) => {
                sqlx::query(TOUCH_AGENT_BATCH)
                    .bind(at)
                    .bind(at)
                    .bind(batch.as_bytes().as_slice())
                    .bind(agent)
                    .execute(&mut *self.conn)
                    .await?;
            }
            None => {
                sqlx::query(TOUCH_AGENT)
                    .bind(at)
                    .bind(agent)
                    .execute(&mut *self.conn)
                    .await?;
            }
        }
        Ok(())
    }
}
