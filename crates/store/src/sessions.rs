//! Listing a workspace's sessions: each backend reads three kinds of rows
//! (stored records grouped by session, `sessions` rows, per-session losses)
//! and this module puts them together the same way for all of them, with the
//! rules of [`SessionSummary`] (purged records still count).

use std::collections::BTreeMap;

use jiff::Timestamp;
use uuid::Uuid;

use crate::model::{Loss, LossSource, RecordId, SequenceRange, SessionActivity, SessionSummary};

/// Stored records of one session (of one agent), grouped.
pub(crate) struct LiveRows {
    pub session_id: String,
    /// Records without the conflict flag (one per sequence number).
    pub distinct: u64,
    pub conflicts: u64,
    pub first_sequence_number: Option<i32>,
    pub last_sequence_number: Option<i32>,
    pub first_id: RecordId,
    pub last_id: RecordId,
    pub first_time: Option<Timestamp>,
    pub last_time: Option<Timestamp>,
}

/// A `sessions` row: what the client said and what retention removed.
pub(crate) struct SessionRow {
    pub session_id: String,
    pub final_sequence_number: Option<i64>,
    pub purged_records: u64,
    pub purged_conflicts: u64,
    pub purged_first: Option<i32>,
    pub purged_last: Option<i32>,
    /// The policy the session's latest records were decided under.
    pub policy_digest: Option<String>,
}

/// An `agent_dropped_ranges` row.
pub(crate) struct DroppedRow {
    pub session_id: String,
    pub range: SequenceRange,
}

/// A per-session `losses` row.
pub(crate) struct LossRow {
    pub session_id: String,
    pub loss: Loss,
}

/// Collects rows of any agent of one workspace, session by session.
pub(crate) struct Sessions {
    workspace_id: Uuid,
    by_id: BTreeMap<String, SessionActivity>,
}

impl Sessions {
    pub(crate) fn new(workspace_id: Uuid) -> Sessions {
        Sessions {
            workspace_id,
            by_id: BTreeMap::new(),
        }
    }

    fn entry(&mut self, session_id: String) -> &mut SessionActivity {
        let workspace_id = self.workspace_id;
        self.by_id
            .entry(session_id)
            .or_insert_with_key(|id| SessionActivity {
                summary: SessionSummary {
                    workspace_id,
                    session_id: id.clone(),
                    records: 0,
                    conflicts: 0,
                    distinct_sequence_numbers: 0,
                    first_sequence_number: None,
                    last_sequence_number: None,
                    final_sequence_number: None,
                    losses: Vec::new(),
                    agent_dropped: Vec::new(),
                    purged: 0,
                    policy_digest: None,
                },
                first_record_id: None,
                last_record_id: None,
                first_time: None,
                last_time: None,
            })
    }

    pub(crate) fn add_live(&mut self, row: LiveRows) {
        let s = self.entry(row.session_id);
        s.summary.distinct_sequence_numbers += row.distinct;
        s.summary.conflicts += row.conflicts;
        s.summary.first_sequence_number =
            min_opt(s.summary.first_sequence_number, row.first_sequence_number);
        s.summary.last_sequence_number =
            s.summary.last_sequence_number.max(row.last_sequence_number);
        s.first_record_id = min_opt(s.first_record_id, Some(row.first_id));
        s.last_record_id = s.last_record_id.max(Some(row.last_id));
        s.first_time = min_opt(s.first_time, row.first_time);
        s.last_time = s.last_time.max(row.last_time);
    }

    pub(crate) fn add_session_row(&mut self, row: SessionRow) {
        let s = self.entry(row.session_id);
        s.summary.distinct_sequence_numbers += row.purged_records;
        s.summary.conflicts += row.purged_conflicts;
        s.summary.purged += row.purged_records + row.purged_conflicts;
        s.summary.first_sequence_number =
            min_opt(s.summary.first_sequence_number, row.purged_first);
        s.summary.last_sequence_number = s.summary.last_sequence_number.max(row.purged_last);
        s.summary.final_sequence_number = s
            .summary
            .final_sequence_number
            .max(row.final_sequence_number);
        if row.policy_digest.is_some() {
            s.summary.policy_digest = row.policy_digest;
        }
    }

    pub(crate) fn add_dropped(&mut self, row: DroppedRow) {
        self.entry(row.session_id)
            .summary
            .agent_dropped
            .push(row.range);
    }

    pub(crate) fn add_loss(&mut self, row: LossRow) {
        crate::losses::merge(&mut self.entry(row.session_id).summary.losses, row.loss);
    }

    /// Every session seen, the most recently stored-to first (by last record
    /// id); sessions without stored records last, by session id.
    pub(crate) fn finish(self) -> Vec<SessionActivity> {
        let mut out: Vec<SessionActivity> = self
            .by_id
            .into_values()
            .map(|mut s| {
                s.summary.records = s.summary.distinct_sequence_numbers + s.summary.conflicts;
                crate::losses::sort(&mut s.summary.losses);
                s.summary.agent_dropped =
                    SequenceRange::merge(std::mem::take(&mut s.summary.agent_dropped));
                s
            })
            .collect();
        // Stable sort: ties (no records) stay in session id order.
        out.sort_by_key(|s| std::cmp::Reverse(s.last_record_id));
        out
    }
}

/// A loss row's source column, checked.
pub(crate) fn loss_source(source: &str) -> Result<LossSource, crate::StoreError> {
    LossSource::parse(source)
        .ok_or_else(|| crate::StoreError::Corrupt(format!("loss source {source:?}")))
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(session: &str, first: i32, last: i32, last_id: RecordId) -> LiveRows {
        LiveRows {
            session_id: session.into(),
            distinct: u64::try_from(last - first + 1).unwrap(),
            conflicts: 0,
            first_sequence_number: Some(first),
            last_sequence_number: Some(last),
            first_id: last_id - 5,
            last_id,
            first_time: None,
            last_time: None,
        }
    }

    #[test]
    fn rows_of_one_session_merge_and_recent_sessions_come_first() {
        let mut sessions = Sessions::new(Uuid::nil());
        sessions.add_live(live("old", 0, 9, 10));
        sessions.add_live(live("new", 0, 4, 50));
        sessions.add_session_row(SessionRow {
            session_id: "new".into(),
            final_sequence_number: Some(7),
            purged_records: 0,
            purged_conflicts: 0,
            purged_first: None,
            purged_last: None,
            policy_digest: None,
        });
        sessions.add_loss(LossRow {
            session_id: "lost".into(),
            loss: Loss {
                source: LossSource::Client,
                reason: "channel_full".into(),
                records: 3,
                frames: 0,
            },
        });
        let out = sessions.finish();
        let ids: Vec<&str> = out.iter().map(|s| s.summary.session_id.as_str()).collect();
        assert_eq!(ids, ["new", "old", "lost"]);
        assert_eq!(out[0].summary.records, 5);
        assert_eq!(out[0].summary.missing(), 3);
        assert_eq!(out[2].summary.reported_losses(), 3);
        assert_eq!(out[2].last_record_id, None);
    }
}
