//! PostgreSQL's statements for the shared ingest algorithm
//! ([`crate::ingest`]), and the commit lock that orders record ids.
//!
//! Why a lock: ids come from an identity sequence, and a sequence hands out
//! numbers when rows are inserted, not when transactions commit. Two
//! concurrent ingests A (ids 1-10) and B (ids 11-20) can commit B first; a
//! reader following `id > cursor` would see 11-20, move its cursor to 20 and
//! never see 1-10. So every ingest transaction first takes one transaction
//! advisory lock (`pg_advisory_xact_lock`), which PostgreSQL releases only
//! once the commit is done: ids are handed out and committed one transaction
//! at a time, across all replicas, and a snapshot that sees a record sees
//! every record with a lower id.
//!
//! The price: ingest transactions do not overlap, so write throughput is that
//! of one transaction stream (replicas add availability, not ingest
//! capacity), and the commit's WAL flush is inside the lock. Each transaction
//! is made cheap instead: `BEGIN` and the lock in one round trip; per batch
//! the batch row, one range read of the session's stored keys, then all its
//! records, their outbox run and the batch's id range in one statement
//! (`UNNEST` of column arrays); no foreign-key triggers on the hot tables.
//! The alternative, a second commit-ordered position assigned at commit time,
//! lets inserts overlap but costs a second write of every record (an UPDATE
//! under the same kind of lock) or a log table to join on every read.
//!
//! The lock also serializes the same records arriving through two replicas at
//! once: the second transaction starts after the first committed and sees its
//! rows. So a plain read of the session keys before the insert is exact, and
//! the insert needs no `ON CONFLICT` (whose speculative insertion costs about
//! half as much again per row); duplicates are classified by re-reading what
//! is stored. The unique indexes on batch ids and session keys stay as the
//! backstop, and the batch row keeps its `ON CONFLICT DO NOTHING` (one row
//! per batch).

use std::borrow::Cow;
use std::collections::HashSet;

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool};
use uuid::Uuid;
use warden_proto::domain::{AuditRecord, IngestBatch};

use super::text::{decode, encode};
use crate::convert::{count_to_sql, event_parts, occurred_nanos};
use crate::ingest::{Content, IngestTx, Target, ingest};
use crate::model::{IngestOutcome, IngestRequest, LossSource, RecordId};

/// Starts an ingest transaction holding the commit lock, in one round trip.
/// The key (single-key form) is 0x5744434f4d4d4954, "WDCOMMIT".
const BEGIN_LOCKED: &str = "BEGIN; SELECT pg_advisory_xact_lock(6288224987594443092)";

const INSERT_BATCH: &str = "INSERT INTO batches (agent_id, uuid, received_secs, received_nanos, \
    committed_at, session_id, process, peer_uid, peer_gid, peer_pid, peer_comm, peer_exe) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
    ON CONFLICT (agent_id, uuid) DO NOTHING RETURNING id";

/// Records of one batch from column arrays, in array order (so ids follow
/// batch order), with their outbox runs and the batch's id range; returns
/// what went in. A plain insert: the caller has left out the session keys
/// that are taken (see [`TAKEN_RANGE`]).
const INSERT_RECORDS: &str = "WITH inserted AS ( \
        INSERT INTO records (batch_id, agent_id, session_id, conflict, sequence_number, \
            event_secs, event_nanos, occurred_ns, allowed, method, url, matched_rule) \
        SELECT $1, $2, $3, $4, u.seq, u.secs, u.nanos, u.occurred, u.allowed, u.method, u.url, \
            u.rule \
        FROM unnest($5::integer[], $6::bigint[], $7::integer[], $8::bigint[], $9::boolean[], \
            $10::text[], $11::text[], $12::text[]) \
            WITH ORDINALITY AS u(seq, secs, nanos, occurred, allowed, method, url, rule, ord) \
        ORDER BY u.ord \
        RETURNING id, sequence_number \
    ), runs AS ( \
        SELECT min(id) AS first_id, max(id) AS last_id \
        FROM (SELECT id, id - row_number() OVER (ORDER BY id) AS run FROM inserted) AS numbered \
        GROUP BY run \
    ), lines AS ( \
        INSERT INTO line_outbox (first_id, last_id, replica) \
        SELECT first_id, last_id, $13 FROM runs \
    ), batch AS ( \
        UPDATE batches SET first_record = LEAST(first_record, (SELECT min(id) FROM inserted)), \
            last_record = GREATEST(last_record, (SELECT max(id) FROM inserted)) \
        WHERE id = $1 \
    ) \
    SELECT id, sequence_number FROM inserted ORDER BY id";

/// Stored (non-conflict) session keys among a range of sequence numbers:
/// one index range scan, where `= ANY` would descend the index once per
/// number. Exact because the caller holds the commit lock: no other
/// transaction inserts records meanwhile.
const TAKEN_RANGE: &str = "SELECT sequence_number FROM records \
    WHERE session_id = $1 AND agent_id = $2 AND sequence_number BETWEEN $3 AND $4 \
    AND NOT conflict";

/// [`TAKEN_RANGE`] for numbers too sparse for a range scan.
const TAKEN_LIST: &str = "SELECT sequence_number FROM records \
    WHERE session_id = $1 AND agent_id = $2 AND sequence_number = ANY($3) AND NOT conflict";

/// Two halves so each can use its partial index.
const STORED_CONTENTS: &str = "SELECT r.sequence_number, r.allowed, r.method, r.url, \
        r.matched_rule, r.event_secs, r.event_nanos, b.process \
    FROM records r JOIN batches b ON b.id = r.batch_id \
    WHERE r.session_id = $2 AND r.agent_id = $1 AND r.sequence_number = ANY($3) \
        AND NOT r.conflict \
    UNION ALL \
    SELECT r.sequence_number, r.allowed, r.method, r.url, r.matched_rule, r.event_secs, \
        r.event_nanos, b.process \
    FROM records r JOIN batches b ON b.id = r.batch_id \
    WHERE r.session_id = $2 AND r.agent_id = $1 AND r.sequence_number = ANY($3) AND r.conflict";

const ADD_LOSS: &str = "INSERT INTO losses (agent_id, session_id, source, reason, records, frames) \
    VALUES ($1, $2, $3, $4, $5, $6) \
    ON CONFLICT (agent_id, session_id, source, reason) DO UPDATE SET \
    records = CASE WHEN losses.records > 9223372036854775807 - excluded.records \
        THEN 9223372036854775807 ELSE losses.records + excluded.records END, \
    frames = CASE WHEN losses.frames > 9223372036854775807 - excluded.frames \
        THEN 9223372036854775807 ELSE losses.frames + excluded.frames END";

const SET_FINAL_SEQUENCE: &str = "INSERT INTO sessions (agent_id, session_id, \
    final_sequence_number) VALUES ($1, $2, $3) ON CONFLICT (agent_id, session_id) \
    DO UPDATE SET final_sequence_number = excluded.final_sequence_number";

/// Commits the requests (each with its agent's internal key) in one
/// transaction, their lines owned by `replica`; one outcome per request, as
/// if they had been committed one after the other.
pub(super) async fn commit(
    pool: &PgPool,
    replica: i32,
    requests: &[(i64, &IngestRequest)],
) -> Result<Vec<IngestOutcome>, sqlx::Error> {
    let mut tx = pool.begin_with(BEGIN_LOCKED).await?;
    let mut statements = PgIngest {
        conn: &mut tx,
        replica,
    };
    let mut outcomes = Vec::with_capacity(requests.len());
    for (agent, request) in requests {
        outcomes.push(ingest(&mut statements, *agent, request).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// A connection inside an ingest transaction.
struct PgIngest<'a> {
    conn: &'a mut PgConnection,
    replica: i32,
}

impl PgIngest<'_> {
    /// The sequence numbers of `records[indexes]` that the session has
    /// stored already.
    async fn taken(
        &mut self,
        agent: i64,
        session: &str,
        records: &[AuditRecord],
        indexes: &[usize],
    ) -> Result<HashSet<i32>, sqlx::Error> {
        let seqs: Vec<i32> = indexes
            .iter()
            .map(|&i| records[i].sequence_number)
            .collect();
        let (Some(&low), Some(&high)) = (seqs.iter().min(), seqs.iter().max()) else {
            return Ok(HashSet::new());
        };
        let span = u64::try_from(i64::from(high) - i64::from(low)).unwrap_or(u64::MAX);
        let query = if span <= 4 * seqs.len() as u64 + 64 {
            sqlx::query(TAKEN_RANGE)
                .bind(encode(session))
                .bind(agent)
                .bind(low)
                .bind(high)
        } else {
            sqlx::query(TAKEN_LIST)
                .bind(encode(session))
                .bind(agent)
                .bind(seqs)
        };
        query
            .fetch_all(&mut *self.conn)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect()
    }
}

impl IngestTx for PgIngest<'_> {
    async fn insert_batch(
        &mut self,
        agent: i64,
        batch: &IngestBatch,
        committed_at: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let logs = batch.logs.as_ref();
        let row = sqlx::query(INSERT_BATCH)
            .bind(agent)
            .bind(batch.batch_id)
            .bind(batch.received_at.as_second())
            .bind(batch.received_at.subsec_nanosecond())
            .bind(committed_at)
            .bind(logs.and_then(|l| l.session_id.as_deref()).map(encode))
            .bind(encode(
                logs.map_or("", |l| l.confined_process_name.as_str()),
            ))
            .bind(i64::from(batch.peer.uid))
            .bind(i64::from(batch.peer.gid))
            .bind(batch.peer.pid)
            .bind(encode(&batch.peer.comm))
            .bind(encode(&batch.peer.exe))
            .fetch_optional(&mut *self.conn)
            .await?;
        row.map(|row| row.try_get(0)).transpose()
    }

    async fn insert_records(
        &mut self,
        target: &Target<'_>,
        conflict: bool,
        records: &[AuditRecord],
        indexes: &[usize],
    ) -> Result<Vec<(RecordId, i32)>, sqlx::Error> {
        let mut indexes = indexes.to_vec();
        if let (false, Some(session)) = (conflict, target.session) {
            let taken = self.taken(target.agent, session, records, &indexes).await?;
            let mut first = HashSet::new();
            indexes.retain(|&i| {
                let seq = records[i].sequence_number;
                !taken.contains(&seq) && first.insert(seq)
            });
        }
        if indexes.is_empty() {
            return Ok(Vec::new());
        }
        let n = indexes.len();
        let mut seq = Vec::with_capacity(n);
        let mut secs = Vec::with_capacity(n);
        let mut nanos = Vec::with_capacity(n);
        let mut occurred = Vec::with_capacity(n);
        let mut allowed = Vec::with_capacity(n);
        let mut method: Vec<Cow<'_, str>> = Vec::with_capacity(n);
        let mut url: Vec<Cow<'_, str>> = Vec::with_capacity(n);
        let mut rule: Vec<Cow<'_, str>> = Vec::with_capacity(n);
        for &i in &indexes {
            let record = &records[i];
            let (s, ns) = event_parts(record.event_time);
            seq.push(record.sequence_number);
            secs.push(s);
            nanos.push(ns);
            occurred.push(occurred_nanos(record.event_time, target.received_at));
            allowed.push(record.decision.is_allowed());
            method.push(encode(&record.method));
            url.push(encode(&record.url));
            rule.push(encode(&record.matched_rule));
        }
        let rows = sqlx::query(INSERT_RECORDS)
            .bind(target.batch)
            .bind(target.agent)
            .bind(target.session.map(encode))
            .bind(conflict)
            .bind(seq)
            .bind(secs)
            .bind(nanos)
            .bind(occurred)
            .bind(allowed)
            .bind(method)
            .bind(url)
            .bind(rule)
            .bind(self.replica)
            .fetch_all(&mut *self.conn)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    async fn stored_contents(
        &mut self,
        agent: i64,
        session: &str,
        sequence_numbers: &[i32],
    ) -> Result<Vec<(i32, Content)>, sqlx::Error> {
        let rows = sqlx::query(STORED_CONTENTS)
            .bind(agent)
            .bind(encode(session))
            .bind(sequence_numbers)
            .fetch_all(&mut *self.conn)
            .await?;
        rows.iter()
            .map(|row| {
                let nanos: Option<i32> = row.try_get(6)?;
                let content = Content {
                    allowed: row.try_get(1)?,
                    method: decode(row.try_get(2)?),
                    url: decode(row.try_get(3)?),
                    matched_rule: decode(row.try_get(4)?),
                    event: (row.try_get(5)?, nanos.map(i64::from)),
                    process: decode(row.try_get(7)?),
                };
                Ok((row.try_get(0)?, content))
            })
            .collect()
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
            .bind(encode(session))
            .bind(source.as_str())
            .bind(encode(reason))
            .bind(count_to_sql(records))
            .bind(count_to_sql(frames))
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
            .bind(encode(session))
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
        let query = match last_batch {
            Some(batch) => sqlx::query(
                "UPDATE agents SET last_contact_at = $1, last_batch_at = $1, \
                 last_batch_uuid = $2 WHERE id = $3",
            )
            .bind(at)
            .bind(batch)
            .bind(agent),
            None => sqlx::query("UPDATE agents SET last_contact_at = $1 WHERE id = $2")
                .bind(at)
                .bind(agent),
        };
        query.execute(&mut *self.conn).await?;
        Ok(())
    }
}
