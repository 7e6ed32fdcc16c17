//! Committing the batches of one agent call inside the writer's transaction:
//! the batch id makes agent re-sends no-ops, the session key catches client
//! re-sends, and content comparison tells duplicates from conflicts.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{AssertSqlSafe, Row, SqliteConnection};
use warden_proto::domain::{AuditRecord, IngestBatch};

use super::convert::{count_to_sql, event_columns, nanos};
use super::sql::{MAX_ROWS, SqlCache};
use crate::model::{
    BatchOutcome, CLIENT_BATCH_FULL, CLIENT_CHANNEL_FULL, IngestOutcome, IngestRequest, LossSource,
    NewRecord, RecordId,
};

/// Agent reasons are free text from the agent; a longer one is cut here so a
/// misbehaving agent cannot grow the table without bound.
const MAX_REASON_BYTES: usize = 64;

const INSERT_BATCH: &str = "INSERT INTO batches (agent_id, uuid, received_secs, received_nanos, \
    committed_at, session_id, process, peer_uid, peer_gid, peer_pid, peer_comm, peer_exe) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
    ON CONFLICT (agent_id, uuid) DO NOTHING RETURNING id";

const ADD_LOSS: &str = "INSERT INTO losses (agent_id, session_id, source, reason, records, frames) \
    VALUES (?, ?, ?, ?, ?, ?) \
    ON CONFLICT (agent_id, session_id, source, reason) DO UPDATE SET \
    records = CASE WHEN records > 9223372036854775807 - excluded.records \
        THEN 9223372036854775807 ELSE records + excluded.records END, \
    frames = CASE WHEN frames > 9223372036854775807 - excluded.frames \
        THEN 9223372036854775807 ELSE frames + excluded.frames END";

const SET_FINAL_SEQUENCE: &str = "INSERT INTO sessions (agent_id, session_id, final_sequence_number) \
    VALUES (?, ?, ?) ON CONFLICT (agent_id, session_id) \
    DO UPDATE SET final_sequence_number = excluded.final_sequence_number";

const TOUCH_AGENT_BATCH: &str =
    "UPDATE agents SET last_contact_at = ?, last_batch_at = ?, last_batch_uuid = ? WHERE id = ?";

pub(super) const TOUCH_AGENT: &str = "UPDATE agents SET last_contact_at = ? WHERE id = ?";

/// Commits one request's batches for the agent with internal key `agent`.
pub(super) async fn ingest(
    conn: &mut SqliteConnection,
    sql: &mut SqlCache,
    agent: i64,
    request: &IngestRequest,
) -> Result<IngestOutcome, sqlx::Error> {
    let committed_at = nanos(request.at);
    let mut outcome = IngestOutcome::default();
    for batch in &request.batches {
        let result = ingest_batch(
            conn,
            sql,
            agent,
            committed_at,
            batch,
            &mut outcome.record_ids,
        )
        .await?;
        outcome.batches.push(result);
    }
    match request.batches.last() {
        Some(last) => {
            sqlx::query(TOUCH_AGENT_BATCH)
                .bind(committed_at)
                .bind(committed_at)
                .bind(last.batch_id.as_bytes().as_slice())
                .bind(agent)
                .execute(&mut *conn)
                .await?;
        }
        None => {
            sqlx::query(TOUCH_AGENT)
                .bind(committed_at)
                .bind(agent)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(outcome)
}

async fn ingest_batch(
    conn: &mut SqliteConnection,
    sql: &mut SqlCache,
    agent: i64,
    committed_at: i64,
    batch: &IngestBatch,
    record_ids: &mut Vec<RecordId>,
) -> Result<BatchOutcome, sqlx::Error> {
    let logs = batch.logs.as_ref();
    let records: &[AuditRecord] = logs.map_or(&[], |l| &l.records);
    let session = logs.and_then(|l| l.session_id.as_deref());
    let process = logs.map_or("", |l| l.confined_process_name.as_str());
    let rejected = logs.map_or(&[][..], |l| &l.rejected[..]);
    let mut outcome = BatchOutcome {
        batch_id: batch.batch_id,
        already_committed: false,
        new_records: Vec::new(),
        duplicates: 0,
        rejected: u32::try_from(rejected.len()).unwrap_or(u32::MAX),
    };

    let batch_key: Option<i64> = sqlx::query(INSERT_BATCH)
        .bind(agent)
        .bind(batch.batch_id.as_bytes().as_slice())
        .bind(batch.received_at.as_second())
        .bind(batch.received_at.subsec_nanosecond())
        .bind(committed_at)
        .bind(session)
        .bind(process)
        .bind(i64::from(batch.peer.uid))
        .bind(i64::from(batch.peer.gid))
        .bind(batch.peer.pid)
        .bind(batch.peer.comm.as_str())
        .bind(batch.peer.exe.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.get(0));
    let Some(batch_key) = batch_key else {
        // The agent re-sent a committed batch: acknowledge, change nothing.
        outcome.already_committed = true;
        outcome.duplicates = u32::try_from(records.len()).unwrap_or(u32::MAX);
        return Ok(outcome);
    };

    let target = Target {
        batch: batch_key,
        agent,
        session,
    };
    if !records.is_empty() {
        let indexes: Vec<usize> = (0..records.len()).collect();
        let inserted = insert_records(conn, sql, &target, false, records, &indexes).await?;
        record_ids.extend(inserted.iter().map(|(id, _)| *id));
        match session {
            // Without a session id the batch id is the only key: all new.
            None => {
                outcome.new_records = indexes
                    .into_iter()
                    .map(|index| NewRecord {
                        index,
                        conflict: false,
                    })
                    .collect();
            }
            Some(session) => {
                let inserted: HashSet<i32> = inserted.iter().map(|(_, seq)| *seq).collect();
                let mut first_seen = HashSet::new();
                let mut candidates = Vec::new();
                for (index, record) in records.iter().enumerate() {
                    let first = first_seen.insert(record.sequence_number);
                    if first && inserted.contains(&record.sequence_number) {
                        outcome.new_records.push(NewRecord {
                            index,
                            conflict: false,
                        });
                    } else {
                        candidates.push(index);
                    }
                }
                if !candidates.is_empty() {
                    let (duplicates, conflicts) =
                        classify(conn, sql, agent, session, process, records, &candidates).await?;
                    outcome.duplicates = duplicates;
                    if !conflicts.is_empty() {
                        let inserted =
                            insert_records(conn, sql, &target, true, records, &conflicts).await?;
                        record_ids.extend(inserted.iter().map(|(id, _)| *id));
                        outcome
                            .new_records
                            .extend(conflicts.into_iter().map(|index| NewRecord {
                                index,
                                conflict: true,
                            }));
                        outcome.new_records.sort_by_key(|r| r.index);
                    }
                }
            }
        }
    }

    // Counters ride on the batch id: applied once, with the batch.
    let mut rejected_by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for rejection in rejected {
        *rejected_by_reason.entry(rejection.reason()).or_default() += 1;
    }
    for (reason, n) in rejected_by_reason {
        add_loss(
            conn,
            agent,
            session.unwrap_or(""),
            LossSource::Server,
            reason,
            n,
            0,
        )
        .await?;
    }
    for status in &batch.client_status {
        let session = status.session_id.as_deref().unwrap_or("");
        // Deltas are only ever added: a negative one is a client bug.
        for (reason, n) in [
            (CLIENT_CHANNEL_FULL, status.dropped_channel_full),
            (CLIENT_BATCH_FULL, status.dropped_batch_full),
        ] {
            if let Ok(n @ 1..) = u64::try_from(n) {
                add_loss(conn, agent, session, LossSource::Client, reason, n, 0).await?;
            }
        }
        if let (Some(final_seq), false) = (status.final_sequence_number, session.is_empty()) {
            sqlx::query(SET_FINAL_SEQUENCE)
                .bind(agent)
                .bind(session)
                .bind(final_seq)
                .execute(&mut *conn)
                .await?;
        }
    }
    for drop in &batch.agent_drops {
        if drop.records == 0 && drop.frames == 0 {
            continue;
        }
        let reason = truncate(&drop.reason, MAX_REASON_BYTES);
        add_loss(
            conn,
            agent,
            "",
            LossSource::Agent,
            reason,
            drop.records,
            drop.frames,
        )
        .await?;
    }
    Ok(outcome)
}

/// Where inserted records go.
struct Target<'a> {
    batch: i64,
    agent: i64,
    session: Option<&'a str>,
}

/// Inserts `records[i]` for each `i` in `indexes`; returns the (id,
/// sequence number) of the rows that went in.
async fn insert_records(
    conn: &mut SqliteConnection,
    sql: &mut SqlCache,
    target: &Target<'_>,
    conflict: bool,
    records: &[AuditRecord],
    indexes: &[usize],
) -> Result<Vec<(RecordId, i32)>, sqlx::Error> {
    let mut inserted = Vec::with_capacity(indexes.len());
    for chunk in indexes.chunks(MAX_ROWS) {
        let statement = sql.insert_records(chunk.len());
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
                .bind(record.decision.is_allowed())
                .bind(record.method.as_str())
                .bind(record.url.as_str())
                .bind(record.matched_rule.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            inserted.push((row.try_get(0)?, row.try_get(1)?));
        }
    }
    Ok(inserted)
}

/// What makes two records with one session key the same record.
#[derive(PartialEq, Eq)]
struct Content {
    allowed: bool,
    method: String,
    url: String,
    matched_rule: String,
    event: (Option<i64>, Option<i64>),
    process: String,
}

impl Content {
    fn of(record: &AuditRecord, process: &str) -> Content {
        Content {
            allowed: record.decision.is_allowed(),
            method: record.method.clone(),
            url: record.url.clone(),
            matched_rule: record.matched_rule.clone(),
            event: event_columns(record.event_time),
            process: process.to_owned(),
        }
    }
}

/// Splits the candidates (records whose session key was already taken) into
/// duplicates (content equal to a stored record with that key) and conflicts
/// (returned, in batch order, to be stored flagged).
async fn classify(
    conn: &mut SqliteConnection,
    sql: &mut SqlCache,
    agent: i64,
    session: &str,
    process: &str,
    records: &[AuditRecord],
    candidates: &[usize],
) -> Result<(u32, Vec<usize>), sqlx::Error> {
    let mut keys: Vec<i32> = candidates
        .iter()
        .map(|&i| records[i].sequence_number)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut known: HashMap<i32, Vec<Content>> = HashMap::new();
    for chunk in keys.chunks(MAX_ROWS) {
        let mut query = sqlx::query(AssertSqlSafe(sql.stored_contents(chunk.len())))
            .bind(agent)
            .bind(session);
        for &seq in chunk {
            query = query.bind(seq);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let content = Content {
                allowed: row.try_get(1)?,
                method: row.try_get(2)?,
                url: row.try_get(3)?,
                matched_rule: row.try_get(4)?,
                event: (row.try_get(5)?, row.try_get(6)?),
                process: row.try_get(7)?,
            };
            known.entry(row.try_get(0)?).or_default().push(content);
        }
    }
    let mut duplicates = 0u32;
    let mut conflicts = Vec::new();
    for &i in candidates {
        let record = &records[i];
        let content = Content::of(record, process);
        let stored = known.entry(record.sequence_number).or_default();
        if stored.contains(&content) {
            duplicates = duplicates.saturating_add(1);
        } else {
            // Later copies of this conflicting record are duplicates of it.
            stored.push(content);
            conflicts.push(i);
        }
    }
    Ok((duplicates, conflicts))
}

async fn add_loss(
    conn: &mut SqliteConnection,
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
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("spool_full", 64), "spool_full");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("abc", 2), "ab");
    }
}
