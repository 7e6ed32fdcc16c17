//! The retention pass, written once for every backend (see
//! [`Store::purge_records_before`](crate::Store::purge_records_before) for
//! what it promises).
//!
//! One pass: take the oldest batches received before the cutoff, delete at
//! most `max_rows` of their records (with their outbox rows), fold what was
//! deleted into the per-session counters so summaries do not turn purged
//! records into gaps, then delete the batches left without records. Each
//! pass is one short transaction, so ingest waits for it briefly at most.

use std::collections::BTreeMap;
use std::future::Future;

use jiff::Timestamp;

use crate::model::{PurgeOutcome, RecordId};

/// A record chosen for deletion, with what the session counters need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Doomed {
    pub id: RecordId,
    pub agent: i64,
    pub session: Option<String>,
    pub sequence_number: i32,
    pub conflict: bool,
}

/// What one pass removed from one session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PurgedSession {
    /// Records without the conflict flag (one per sequence number).
    pub records: u64,
    pub conflicts: u64,
    /// Lowest and highest sequence number among `records`.
    pub first: Option<i32>,
    pub last: Option<i32>,
}

/// The statements [`purge`] needs, run inside the backend's transaction.
pub(crate) trait PurgeTx: Send {
    /// Internal keys of up to `limit` batches received before `cutoff`,
    /// oldest first.
    fn old_batches(
        &mut self,
        cutoff: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<i64>, sqlx::Error>> + Send;

    /// Up to `limit` records of these batches, to delete in this
    /// transaction. Records a concurrent pass is deleting must not be
    /// returned (a backend locks them, or lets one pass run at a time).
    fn doomed_records(
        &mut self,
        batches: &[i64],
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Doomed>, sqlx::Error>> + Send;

    /// Deletes these records and their outbox rows; returns how many records
    /// and how many outbox rows (unprinted lines) went.
    fn delete_records(
        &mut self,
        ids: &[RecordId],
    ) -> impl Future<Output = Result<(u64, u64), sqlx::Error>> + Send;

    /// Adds a pass's deletions to the session's purge counters.
    fn fold_session(
        &mut self,
        agent: i64,
        session: &str,
        purged: &PurgedSession,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Deletes those of these batches that have no record left; returns how
    /// many.
    fn delete_empty_batches(
        &mut self,
        batches: &[i64],
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;
}

/// One retention pass.
pub(crate) async fn purge<T: PurgeTx>(
    tx: &mut T,
    cutoff: Timestamp,
    max_rows: u32,
) -> Result<PurgeOutcome, sqlx::Error> {
    if max_rows == 0 {
        return Ok(PurgeOutcome::default());
    }
    let batches = tx.old_batches(cutoff, max_rows).await?;
    if batches.is_empty() {
        return Ok(PurgeOutcome::default());
    }
    let doomed = tx.doomed_records(&batches, max_rows).await?;
    let mut outcome = PurgeOutcome::default();
    if !doomed.is_empty() {
        let ids: Vec<RecordId> = doomed.iter().map(|d| d.id).collect();
        (outcome.records, outcome.unprinted_lines) = tx.delete_records(&ids).await?;
        for ((agent, session), purged) in by_session(&doomed) {
            tx.fold_session(agent, session, &purged).await?;
        }
    }
    outcome.batches = tx.delete_empty_batches(&batches).await?;
    Ok(outcome)
}

/// Sums the doomed records of each (agent, session); records without a
/// session have no summary to keep.
fn by_session(doomed: &[Doomed]) -> BTreeMap<(i64, &str), PurgedSession> {
    let mut sessions: BTreeMap<(i64, &str), PurgedSession> = BTreeMap::new();
    for d in doomed {
        let Some(session) = d.session.as_deref() else {
            continue;
        };
        let s = sessions.entry((d.agent, session)).or_default();
        if d.conflict {
            s.conflicts += 1;
        } else {
            s.records += 1;
            s.first = Some(
                s.first
                    .map_or(d.sequence_number, |f| f.min(d.sequence_number)),
            );
            s.last = Some(
                s.last
                    .map_or(d.sequence_number, |l| l.max(d.sequence_number)),
            );
        }
    }
    sessions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doomed(id: i64, session: Option<&str>, seq: i32, conflict: bool) -> Doomed {
        Doomed {
            id,
            agent: 1,
            session: session.map(str::to_owned),
            sequence_number: seq,
            conflict,
        }
    }

    #[test]
    fn deletions_are_summed_per_session() {
        let doomed = [
            doomed(1, Some("a"), 5, false),
            doomed(2, Some("a"), 2, false),
            doomed(3, Some("a"), 9, true),
            doomed(4, Some("b"), 0, true),
            doomed(5, None, 0, false),
        ];
        let sums = by_session(&doomed);
        assert_eq!(sums.len(), 2);
        assert_eq!(
            sums[&(1, "a")],
            PurgedSession {
                records: 2,
                conflicts: 1,
                first: Some(2),
                last: Some(5),
            }
        );
        assert_eq!(
            sums[&(1, "b")],
            PurgedSession {
                records: 0,
                conflicts: 1,
                first: None,
                last: None,
            }
        );
    }
}
