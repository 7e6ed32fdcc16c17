//! The row-per-record ingest algorithm (PostgreSQL's): the batch id makes
//! agent re-sends no-ops, the session key catches client re-sends, and
//! content comparison tells duplicates from conflicts. Counters ride on the
//! batch id, so they are applied once with it. (SQLite stores blocks and has
//! its own, `sqlite::ingest`, with the same rules.)
//!
//! A backend supplies the statements ([`IngestTx`]) and runs [`ingest`]
//! inside its transaction; how it orders commits (and so record ids) is its
//! own business.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;

use jiff::Timestamp;
use uuid::Uuid;
use warden_proto::domain::{AuditRecord, IngestBatch};

use crate::convert::{event_columns, nanos};
use crate::model::{
    BatchOutcome, CLIENT_BATCH_FULL, CLIENT_CHANNEL_FULL, IngestOutcome, IngestRequest, LossSource,
    NewRecord, RecordId, bound_url,
};

/// Agent reasons are free text from the agent; a longer one is cut here so a
/// misbehaving agent cannot grow the losses table without bound.
const MAX_REASON_BYTES: usize = 64;

/// Where inserted records go.
pub(crate) struct Target<'a> {
    /// Internal key of the batch row.
    pub batch: i64,
    /// Internal key of the agent.
    pub agent: i64,
    pub session: Option<&'a str>,
    /// When the control plane took the call (a record's effective time when
    /// it has no event time).
    pub received_at: Timestamp,
    /// Each record's URL as stored (cut to the bound) and its length as sent
    /// when cut, by index into the batch's records.
    pub urls: &'a [(&'a str, Option<u64>)],
}

/// What makes two records with one session key the same record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Content {
    pub allowed: bool,
    pub method: String,
    /// As stored (cut to the bound), with its length as sent when cut.
    pub url: String,
    pub url_original_bytes: Option<u64>,
    pub matched_rule: String,
    /// Event time as stored: (seconds, nanoseconds), both `None` when missing.
    pub event: (Option<i64>, Option<i64>),
    /// The batch's `confined_process_name`.
    pub process: String,
}

impl Content {
    fn of(record: &AuditRecord, url: (&str, Option<u64>), process: &str) -> Content {
        Content {
            allowed: record.decision.is_allowed(),
            method: record.method.clone(),
            url: url.0.to_owned(),
            url_original_bytes: url.1,
            matched_rule: record.matched_rule.clone(),
            event: event_columns(record.event_time),
            process: process.to_owned(),
        }
    }
}

/// The statements [`ingest`] needs, run inside the backend's transaction.
pub(crate) trait IngestTx: Send {
    /// Inserts the batch row unless the agent delivered this batch id before;
    /// returns the new row's key, `None` when it existed. Must not fail when
    /// another transaction inserts the same batch at the same moment (it waits
    /// for it and then sees the row).
    fn insert_batch(
        &mut self,
        agent: i64,
        batch: &IngestBatch,
        committed_at: i64,
        policy_digest: Option<&str>,
    ) -> impl Future<Output = Result<Option<i64>, sqlx::Error>> + Send;

    /// Inserts `records[i]` for each `i` in `indexes`, in that order, skipping
    /// (not failing on) rows whose session key is stored already or repeated
    /// earlier in the call, unless `conflict`; returns the (id, sequence
    /// number) of the rows that went in. The new rows' lines become due.
    fn insert_records(
        &mut self,
        target: &Target<'_>,
        conflict: bool,
        records: &[AuditRecord],
        indexes: &[usize],
    ) -> impl Future<Output = Result<Vec<(RecordId, i32)>, sqlx::Error>> + Send;

    /// The content of every stored record (conflict rows included) of the
    /// agent's session with one of these sequence numbers.
    fn stored_contents(
        &mut self,
        agent: i64,
        session: &str,
        sequence_numbers: &[i32],
    ) -> impl Future<Output = Result<Vec<(i32, Content)>, sqlx::Error>> + Send;

    /// Adds to a loss counter (saturating), creating it at zero first.
    fn add_loss(
        &mut self,
        agent: i64,
        session: &str,
        source: LossSource,
        reason: &str,
        records: u64,
        frames: u64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Records the last sequence number a client said it assigned.
    fn set_final_sequence(
        &mut self,
        agent: i64,
        session: &str,
        final_sequence_number: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Stores a policy text by its (checked) digest unless one is stored.
    fn store_policy(
        &mut self,
        digest: &str,
        text: &str,
        at: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Notes the policy a session's latest records were decided under.
    fn set_session_policy(
        &mut self,
        agent: i64,
        session: &str,
        digest: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Sets the agent's last contact to `at` and, with a batch, its last
    /// batch (time `at`, and id).
    fn touch_agent(
        &mut self,
        agent: i64,
        at: i64,
        last_batch: Option<Uuid>,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

/// Commits one request's batches for the agent with internal key `agent`.
pub(crate) async fn ingest<T: IngestTx>(
    tx: &mut T,
    agent: i64,
    request: &IngestRequest,
    max_url_bytes: usize,
) -> Result<IngestOutcome, sqlx::Error> {
    let committed_at = nanos(request.at);
    let mut outcome = IngestOutcome::default();
    for batch in &request.batches {
        let result = ingest_batch(
            tx,
            agent,
            (committed_at, request.at),
            max_url_bytes,
            batch,
            &mut outcome.record_ids,
        )
        .await?;
        outcome.batches.push(result);
    }
    let last_batch = request.batches.last().map(|b| b.batch_id);
    tx.touch_agent(agent, committed_at, last_batch).await?;
    Ok(outcome)
}

async fn ingest_batch<T: IngestTx>(
    tx: &mut T,
    agent: i64,
    (committed_at, at): (i64, Timestamp),
    max_url_bytes: usize,
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
        rejected: saturate(rejected.len()),
        policies_refused: 0,
    };
    let policy_digest = logs
        .and_then(|l| l.policy_digest.as_deref())
        .filter(|d| is_digest(d));

    let Some(batch_key) = tx
        .insert_batch(agent, batch, committed_at, policy_digest)
        .await?
    else {
        // The agent re-sent a committed batch: acknowledge, change nothing.
        outcome.already_committed = true;
        outcome.duplicates = saturate(records.len());
        return Ok(outcome);
    };

    let urls: Vec<(&str, Option<u64>)> = records
        .iter()
        .map(|r| bound_url(&r.url, max_url_bytes))
        .collect();
    let target = Target {
        batch: batch_key,
        agent,
        session,
        received_at: at,
        urls: &urls,
    };
    if !records.is_empty() {
        let indexes: Vec<usize> = (0..records.len()).collect();
        let inserted = tx.insert_records(&target, false, records, &indexes).await?;
        record_ids.extend(inserted.iter().map(|(id, _)| *id));
        match session {
            // Without a session id the batch id is the only key: all new.
            None => {
                outcome.new_records = indexes
                    .into_iter()
                    .map(|index| NewRecord {
                        index,
                        conflict: false,
                        url_original_bytes: urls[index].1,
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
                            url_original_bytes: urls[index].1,
                        });
                    } else {
                        candidates.push(index);
                    }
                }
                if !candidates.is_empty() {
                    let (duplicates, conflicts) =
                        classify(tx, agent, session, process, records, &urls, &candidates).await?;
                    outcome.duplicates = duplicates;
                    if !conflicts.is_empty() {
                        let inserted = tx
                            .insert_records(&target, true, records, &conflicts)
                            .await?;
                        record_ids.extend(inserted.iter().map(|(id, _)| *id));
                        outcome
                            .new_records
                            .extend(conflicts.into_iter().map(|index| NewRecord {
                                index,
                                conflict: true,
                                url_original_bytes: urls[index].1,
                            }));
                        outcome.new_records.sort_by_key(|r| r.index);
                    }
                }
                if let Some(digest) = policy_digest {
                    tx.set_session_policy(agent, session, digest).await?;
                }
            }
        }
    }

    let mut rejected_by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for rejection in rejected {
        *rejected_by_reason.entry(rejection.reason()).or_default() += 1;
    }
    for (reason, n) in rejected_by_reason {
        let session = session.unwrap_or("");
        tx.add_loss(agent, session, LossSource::Server, reason, n, 0)
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
                tx.add_loss(agent, session, LossSource::Client, reason, n, 0)
                    .await?;
            }
        }
        if let (Some(final_seq), false) = (status.final_sequence_number, session.is_empty()) {
            tx.set_final_sequence(agent, session, final_seq).await?;
        }
        if let Some(policy) = &status.policy {
            if !is_digest(&policy.digest) || hex_sha256(&policy.text) != policy.digest {
                outcome.policies_refused += 1;
            } else {
                tx.store_policy(&policy.digest, &policy.text, committed_at)
                    .await?;
                if !session.is_empty() {
                    tx.set_session_policy(agent, session, &policy.digest)
                        .await?;
                }
            }
        }
    }
    for drop in &batch.agent_drops {
        if drop.records == 0 && drop.frames == 0 {
            continue;
        }
        let reason = truncate(&drop.reason, MAX_REASON_BYTES);
        tx.add_loss(
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

/// Splits the candidates (records whose session key was already taken) into
/// duplicates (content equal to a stored record with that key) and conflicts
/// (returned, in batch order, to be stored flagged).
async fn classify<T: IngestTx>(
    tx: &mut T,
    agent: i64,
    session: &str,
    process: &str,
    records: &[AuditRecord],
    urls: &[(&str, Option<u64>)],
    candidates: &[usize],
) -> Result<(u32, Vec<usize>), sqlx::Error> {
    let mut keys: Vec<i32> = candidates
        .iter()
        .map(|&i| records[i].sequence_number)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut known: HashMap<i32, Vec<Content>> = HashMap::new();
    for (seq, content) in tx.stored_contents(agent, session, &keys).await? {
        known.entry(seq).or_default().push(content);
    }
    let mut duplicates = 0u32;
    let mut conflicts = Vec::new();
    for &i in candidates {
        let record = &records[i];
        let content = Content::of(record, urls[i], process);
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

/// A policy digest as `warden boundary` sends it: lower-case hex SHA-256.
pub(crate) fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lower-case hex SHA-256 of `text`.
pub(crate) fn hex_sha256(text: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let mut out = String::with_capacity(64);
    for byte in Sha256::digest(text.as_bytes()) {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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

/// Tells followers of [`Store::local_commits`](crate::Store::local_commits)
/// about the records an ingest committed (only when it moved the position).
pub(crate) fn notify_commits(
    commits: &tokio::sync::watch::Sender<RecordId>,
    outcome: &IngestOutcome,
) {
    if let Some(&last) = outcome.record_ids.iter().max() {
        commits.send_if_modified(|seen| {
            let newer = last > *seen;
            *seen = (*seen).max(last);
            newer
        });
    }
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
