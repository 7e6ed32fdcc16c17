//! Plausibility bounds on the counts an agent reports: drops a client or
//! the agent says it had, and a session's final sequence number. They are
//! added into totals (per session, per workspace, in metrics), so one
//! absurd report (`i64::MAX` drops) would make every total after it
//! nonsense or wrap it around. [`bound`] clamps each count to what is
//! possible and says what it changed, for the caller to log, count and
//! store as a flag.
//!
//! What is possible: a session's sequence numbers are `0..=i32::MAX`, so no
//! session has more than 2^31 records, and no report can truthfully say it
//! lost more ([`MAX_REPORTED_RECORDS`]); a client's two drop counts
//! together cannot exceed that either. The agent's own drop reports cover
//! what it lost between two batches; the same bound is generous for them
//! (2^31 records of even 100 bytes is 200 GiB dropped between two batches).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use warden_proto::domain::IngestBatch;

/// The most records (or frames) one report may say were lost.
pub const MAX_REPORTED_RECORDS: u64 = 1 << 31;

/// A count that was out of bounds, and what was kept instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Implausible {
    /// Which count (a metric label).
    pub field: &'static str,
    /// The session the count was for, when it names one.
    pub session: Option<String>,
    /// What was reported.
    pub reported: i128,
    /// What is kept: the count clamped into bounds (`None`: dropped, for a
    /// final sequence number out of range).
    pub kept: Option<u64>,
}

/// Clamps every count in `batch` into bounds; returns what was changed.
pub fn bound(batch: &mut IngestBatch) -> Vec<Implausible> {
    let mut found = Vec::new();
    for status in &mut batch.client_status {
        let session = status.session_id.clone();
        let mut left = MAX_REPORTED_RECORDS;
        for (field, count) in [
            (
                "client_dropped_channel_full",
                &mut status.dropped_channel_full,
            ),
            ("client_dropped_batch_full", &mut status.dropped_batch_full),
        ] {
            // Negative deltas are client bugs; they are not added (the
            // store ignores them), and are flagged here.
            let kept = u64::try_from(*count).unwrap_or(0).min(left);
            if i128::from(*count) != i128::from(kept) {
                found.push(Implausible {
                    field,
                    session: session.clone(),
                    reported: i128::from(*count),
                    kept: Some(kept),
                });
                // At most 2^31: fits an i64.
                *count = i64::try_from(kept).unwrap_or(i64::MAX);
            }
            left -= kept;
        }
        if let Some(n) = status.final_sequence_number
            && !(-1..=i64::from(i32::MAX)).contains(&n)
        {
            found.push(Implausible {
                field: "client_final_sequence_number",
                session,
                reported: i128::from(n),
                kept: None,
            });
            status.final_sequence_number = None;
        }
    }
    for drop in &mut batch.agent_drops {
        for (field, count) in [
            ("agent_dropped_records", &mut drop.records),
            ("agent_dropped_frames", &mut drop.frames),
        ] {
            if *count > MAX_REPORTED_RECORDS {
                found.push(Implausible {
                    field,
                    session: None,
                    reported: i128::from(*count),
                    kept: Some(MAX_REPORTED_RECORDS),
                });
                *count = MAX_REPORTED_RECORDS;
            }
        }
    }
    found
}

/// The sum of counts that came from agents, stopping at `u64::MAX` instead
/// of wrapping around (or panicking) however many absurd reports were added
/// up: what every total of reported counts uses.
pub fn saturating_total(counts: impl IntoIterator<Item = u64>) -> u64 {
    counts.into_iter().fold(0, u64::saturating_add)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FieldLabel {
    field: &'static str,
}

/// `warden_implausible_reports_total{field}`.
#[derive(Debug, Default)]
pub struct PlausibilityMetrics {
    implausible: Family<FieldLabel, Counter>,
}

impl PlausibilityMetrics {
    /// Adds the metric to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "implausible_reports",
            "Counts agents reported beyond what is possible (more drops than a session has sequence numbers, a final sequence number out of range), clamped before they were added, by field",
            self.implausible.clone(),
        );
    }

    /// Counts and logs what [`bound`] changed in a batch of `workspace`.
    pub fn note(&self, workspace: &str, found: &[Implausible]) {
        for f in found {
            self.implausible
                .get_or_create(&FieldLabel { field: f.field })
                .inc();
            tracing::warn!(
                workspace,
                session = ?f.session,
                field = f.field,
                reported = %f.reported,
                kept = ?f.kept,
                "an agent reported an impossible count; kept the bound instead"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use uuid::Uuid;
    use warden_proto::domain::{AgentDrop, ClientStatus, Peer};

    use super::*;

    fn batch(status: Vec<ClientStatus>, drops: Vec<AgentDrop>) -> IngestBatch {
        IngestBatch {
            batch_id: Uuid::nil(),
            received_at: Timestamp::UNIX_EPOCH,
            peer: Peer::default(),
            logs: None,
            client_status: status,
            agent_drops: drops,
        }
    }

    fn status(channel: i64, batch: i64, final_seq: Option<i64>) -> ClientStatus {
        ClientStatus {
            session_id: Some("s".into()),
            dropped_channel_full: channel,
            dropped_batch_full: batch,
            final_sequence_number: final_seq,
            ..ClientStatus::default()
        }
    }

    #[test]
    fn totals_saturate() {
        assert_eq!(saturating_total([1, 2, 3]), 6);
        assert_eq!(saturating_total([u64::MAX - 1, u64::MAX - 1]), u64::MAX);
        assert_eq!(saturating_total([]), 0);
    }

    #[test]
    fn plausible_counts_are_kept_as_they_are() {
        let mut b = batch(
            vec![status(5, 7, Some(99)), status(1 << 30, 1 << 30, Some(-1))],
            vec![AgentDrop {
                reason: "spool_full".into(),
                records: 1 << 31,
                frames: 3,
                ..Default::default()
            }],
        );
        let before = b.clone();
        assert_eq!(bound(&mut b), []);
        assert_eq!(b, before);
    }

    #[test]
    fn impossible_counts_are_clamped_and_named() {
        let mut b = batch(
            vec![
                status(i64::MAX, i64::MAX, Some(i64::MAX)),
                status(-5, 3, Some(-2)),
            ],
            vec![AgentDrop {
                reason: "spool_full".into(),
                records: u64::MAX,
                frames: u64::MAX,
                ..Default::default()
            }],
        );
        let found = bound(&mut b);
        let fields: Vec<_> = found.iter().map(|f| (f.field, f.kept)).collect();
        assert_eq!(
            fields,
            [
                ("client_dropped_channel_full", Some(1 << 31)),
                ("client_dropped_batch_full", Some(0)),
                ("client_final_sequence_number", None),
                ("client_dropped_channel_full", Some(0)),
                ("client_final_sequence_number", None),
                ("agent_dropped_records", Some(1 << 31)),
                ("agent_dropped_frames", Some(1 << 31)),
            ]
        );
        assert_eq!(found[0].reported, i128::from(i64::MAX));
        let s = &b.client_status[0];
        // Together at most the sequence space of a session.
        assert_eq!(
            (
                s.dropped_channel_full,
                s.dropped_batch_full,
                s.final_sequence_number
            ),
            (1 << 31, 0, None)
        );
        let s = &b.client_status[1];
        assert_eq!((s.dropped_channel_full, s.dropped_batch_full), (0, 3));
        assert_eq!(b.agent_drops[0].records, 1 << 31);
        // Whatever is reported, totals of any number of reports fit.
        let total: u64 = b
            .client_status
            .iter()
            .map(|s| s.dropped_channel_full as u64 + s.dropped_batch_full as u64)
            .sum();
        assert_eq!(total, (1 << 31) + 3);
    }
}
