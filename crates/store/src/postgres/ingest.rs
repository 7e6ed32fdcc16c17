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
//! is made cheap instead: a replica commits the calls that queue up together
//! (see `committer`); `BEGIN` and the lock are one round trip; per batch the
//! batch row is one statement, and its records (`UNNEST` of column arrays,
//! minus the session keys already stored), their outbox run and the batch's
//! id range another; the agents' rows are updated once per group; the hot
//! tables have no foreign keys.
//!
//! Alternatives considered: a second, commit-ordered position assigned at
//! commit time lets inserts overlap, but costs a second write of every record
//! (an UPDATE under the same kind of lock) or a log table to join on every
//! read. Transactions that reserve id blocks in order under a short lock and,
//! just before `COMMIT`, wait for the transaction holding the previous block
//! (a chain of advisory locks) would let inserts overlap with commits still
//! in id order, at the price of deadlock retries when two of them insert the
//! same keys; that pays only when the database has idle cores, which one
//! insert stream does not leave on a small server.
//!
//! The lock also serializes the same records arriving through two replicas at
//! once: the second transaction starts after the first committed and sees its
//! rows. So a plain read of the session keys inside the insert is exact, and
//! the insert needs no `ON CONFLICT` (whose speculative insertion costs about
//! half as much again per row); duplicates are classified by re-reading what
//! is stored. The unique indexes on batch ids and session keys stay as the
//! backstop, and the batch row keeps its `ON CONFLICT DO NOTHING` (one row
//! per batch).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

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
    committed_at, session_id, process, peer_uid, peer_gid, peer_pid, peer_comm, peer_exe, \
    policy_digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
    ON CONFLICT (agent_id, uuid) DO NOTHING RETURNING id";

/// Inserts records of one batch from column arrays, in array order (so ids
/// follow batch order), with their outbox runs and the batch's id range;
/// returns what went in. `$filter` leaves out the session keys already
/// stored: with the commit lock held no other transaction inserts records,
/// so this read is exact and the insert needs no `ON CONFLICT`.
macro_rules! insert_records {
    ($filter:literal) => {
        concat!(
            "WITH inserted AS ( \
                INSERT INTO records (batch_id, agent_id, session_id, conflict, \
                    sequence_number, event_secs, event_nanos, occurred_ns, allowed, method, url, \
                    matched_rule, url_original_bytes) \
                SELECT $1, $2, $3, $4, u.seq, u.secs, u.nanos, u.occurred, u.allowed, u.method, \
                    u.url, u.rule, u.original \
                FROM unnest($5::integer[], $6::bigint[], $7::integer[], $8::bigint[], \
                    $9::boolean[], $10::text[], $11::text[], $12::text[], $16::bigint[]) \
                    WITH ORDINALITY AS u(seq, secs, nanos, occurred, allowed, method, url, rule, \
                    original, ord) ",
            $filter,
            " ORDER BY u.ord \
                RETURNING id, sequence_number \
            ), runs AS ( \
                SELECT min(id) AS first_id, max(id) AS last_id \
                FROM (SELECT id, id - row_number() OVER (ORDER BY id) AS run FROM inserted) \
                    AS numbered \
                GROUP BY run \
            ), lines AS ( \
                INSERT INTO line_outbox (first_id, last_id, replica) \
                SELECT first_id, last_id, $13 FROM runs \
            ), batch AS ( \
                UPDATE batches SET \
                    first_record = LEAST(first_record, (SELECT min(id) FROM inserted)), \
                    last_record = GREATEST(last_record, (SELECT max(id) FROM inserted)) \
                WHERE id = $1 \
            ) \
            SELECT id, sequence_number FROM inserted ORDER BY id"
        )
    };
}

/// Every row goes in (conflict rows, rows without a session).
const INSERT_ALL: &str = insert_records!("");

/// Rows whose key is not taken, read with one index range scan over the
/// batch's sequence numbers (`$14..=$15`): the key lookups of `= ANY` would
/// descend the index once per number.
const INSERT_UNTAKEN_RANGE: &str = insert_records!(
    "WHERE u.seq NOT IN (SELECT sequence_number FROM records WHERE session_id = $3 \
     AND agent_id = $2 AND sequence_number BETWEEN $14 AND $15 AND NOT conflict)"
);

/// [`INSERT_UNTAKEN_RANGE`] for numbers too sparse for a range scan.
const INSERT_UNTAKEN_LIST: &str = insert_records!(
    "WHERE u.seq NOT IN (SELECT sequence_number FROM records WHERE session_id = $3 \
     AND agent_id = $2 AND sequence_number = ANY($5) AND NOT conflict)"
);

/// Last contact and last batch of the agents of a group, one row per agent.
const TOUCH_AGENTS: &str = "UPDATE agents a SET last_contact_at = u.contact, \
    last_batch_at = COALESCE(u.batch_at, a.last_batch_at), \
    last_batch_uuid = COALESCE(u.batch_uuid, a.last_batch_uuid) \
    FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::uuid[]) \
        AS u(agent, contact, batch_at, batch_uuid) \
    WHERE a.id = u.agent";

/// Two halves so each can use its partial index.
const STORED_CONTENTS: &str = "SELECT r.sequence_number, r.allowed, r.method, r.url, \
        r.matched_rule, r.event_secs, r.event_nanos, b.process, r.url_original_bytes \
    FROM records r JOIN batches b ON b.id = r.batch_id \
    WHERE r.session_id = $2 AND r.agent_id = $1 AND r.sequence_number = ANY($3) \
        AND NOT r.conflict \
    UNION ALL \
    SELECT r.sequence_number, r.allowed, r.method, r.url, r.matched_rule, r.event_secs, \
        r.event_nanos, b.process, r.url_original_bytes \
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
    max_url_bytes: usize,
    requests: &[(i64, &IngestRequest)],
) -> Result<Vec<IngestOutcome>, sqlx::Error> {
    let mut tx = pool.begin_with(BEGIN_LOCKED).await?;
    let mut statements = PgIngest {
        conn: &mut tx,
        replica,
        touched: HashMap::new(),
    };
    let mut outcomes = Vec::with_capacity(requests.len());
    for (agent, request) in requests {
        outcomes.push(ingest(&mut statements, *agent, request, max_url_bytes).await?);
    }
    statements.touch_agents().await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Which of a batch's rows the insert takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Untaken {
    /// All of them.
    All,
    /// Those whose key is not stored, looked up by the range of their
    /// sequence numbers.
    Range(i32, i32),
    /// The same, number by number (too sparse for a range).
    List,
}

impl Untaken {
    /// The lookup for these sequence numbers: a range scan unless the range
    /// is far wider than the batch.
    fn of(seqs: &[i32]) -> Untaken {
        let (Some(&low), Some(&high)) = (seqs.iter().min(), seqs.iter().max()) else {
            return Untaken::All;
        };
        let span = u64::try_from(i64::from(high) - i64::from(low)).unwrap_or(u64::MAX);
        let len = u64::try_from(seqs.len()).unwrap_or(u64::MAX);
        if span <= len.saturating_mul(4).saturating_add(64) {
            Untaken::Range(low, high)
        } else {
            Untaken::List
        }
    }

    fn statement(self) -> &'static str {
        match self {
            Untaken::All => INSERT_ALL,
            Untaken::Range(..) => INSERT_UNTAKEN_RANGE,
            Untaken::List => INSERT_UNTAKEN_LIST,
        }
    }
}

/// A connection inside an ingest transaction.
struct PgIngest<'a> {
    conn: &'a mut PgConnection,
    replica: i32,
    /// Agent updates, written once per agent before the commit.
    touched: HashMap<i64, Touch>,
}

/// What an agent's row gets at the end of a group: the last call's time, and
/// the time and id of the last batch delivered.
#[derive(Clone, Copy)]
struct Touch {
    contact: i64,
    batch: Option<(i64, Uuid)>,
}

impl PgIngest<'_> {
    /// Writes the agents' last contact and last batch, once per agent.
    async fn touch_agents(&mut self) -> Result<(), sqlx::Error> {
        if self.touched.is_empty() {
            return Ok(());
        }
        let n = self.touched.len();
        let (mut agents, mut contacts) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut batch_at, mut batch_uuid) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (agent, touch) in self.touched.drain() {
            agents.push(agent);
            contacts.push(touch.contact);
            batch_at.push(touch.batch.map(|(at, _)| at));
            batch_uuid.push(touch.batch.map(|(_, id)| id));
        }
        sqlx::query(TOUCH_AGENTS)
            .bind(agents)
            .bind(contacts)
            .bind(batch_at)
            .bind(batch_uuid)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }
}

impl IngestTx for PgIngest<'_> {
    async fn insert_batch(
        &mut self,
        agent: i64,
        batch: &IngestBatch,
        committed_at: i64,
        policy_digest: Option<&str>,
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
            .bind(policy_digest)
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
        // Only the first of repeated keys may go in; the statement leaves out
        // keys already stored.
        let mut indexes = indexes.to_vec();
        let filtered = !conflict && target.session.is_some();
        if filtered {
            let mut first = HashSet::new();
            indexes.retain(|&i| first.insert(records[i].sequence_number));
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
        let mut original: Vec<Option<i64>> = Vec::with_capacity(n);
        for &i in &indexes {
            let record = &records[i];
            let (s, ns) = event_parts(record.event_time);
            seq.push(record.sequence_number);
            secs.push(s);
            nanos.push(ns);
            occurred.push(occurred_nanos(record.event_time, target.received_at));
            allowed.push(record.decision.is_allowed());
            method.push(encode(&record.method));
            let (stored, cut_from) = target.urls[i];
            url.push(encode(stored));
            original.push(cut_from.map(count_to_sql));
            rule.push(encode(&record.matched_rule));
        }
        let filter = if filtered {
            Untaken::of(&seq)
        } else {
            Untaken::All
        };
        let query = sqlx::query(filter.statement())
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
            .bind(self.replica);
        // $14 and $15 are the range's bounds (unused otherwise); $16 the
        // original URL lengths.
        let (low, high) = match filter {
            Untaken::Range(low, high) => (low, high),
            Untaken::All | Untaken::List => (0, 0),
        };
        let query = query.bind(low).bind(high).bind(original);
        let rows = query.fetch_all(&mut *self.conn).await?;
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
                    url_original_bytes: row
                        .try_get::<Option<i64>, _>(8)?
                        .map(crate::convert::count_from_sql),
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

    async fn store_policy(&mut self, digest: &str, text: &str, at: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO policies (digest, text, first_seen) VALUES ($1, $2, $3) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(encode(text))
        .bind(at)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn set_session_policy(
        &mut self,
        agent: i64,
        session: &str,
        digest: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO sessions (agent_id, session_id, policy_digest) VALUES ($1, $2, $3) \
             ON CONFLICT (agent_id, session_id) DO UPDATE SET policy_digest = excluded.policy_digest",
        )
        .bind(agent)
        .bind(encode(session))
        .bind(digest)
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
        // Deferred to one statement per group (see `touch_agents`).
        let touch = self.touched.entry(agent).or_insert(Touch {
            contact: at,
            batch: None,
        });
        touch.contact = at;
        if let Some(batch) = last_batch {
            touch.batch = Some((at, batch));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Untaken;

    #[test]
    fn dense_numbers_are_looked_up_by_range_sparse_ones_one_by_one() {
        assert_eq!(Untaken::of(&[]), Untaken::All);
        assert_eq!(Untaken::of(&[5, 3, 4]), Untaken::Range(3, 5));
        assert_eq!(Untaken::of(&[0, 60]), Untaken::Range(0, 60));
        assert_eq!(Untaken::of(&[0, 1_000_000]), Untaken::List);
        assert_eq!(Untaken::of(&[i32::MIN, i32::MAX]), Untaken::List);
    }
}
