//! The agent's own losses and refusals (malformed frames, unknown tags,
//! refused peers, spool drops, ...), counted by reason and peer and shipped
//! to the control plane in spooled batches of their own (`Batch.agent_drops`,
//! with their own batch id, so a re-send is deduplicated like any batch).
//!
//! Counts are aggregated in memory and spooled every [`FLUSH_INTERVAL`] and
//! on shutdown, so a flood of bad frames costs one small batch per interval
//! and peer, not one per frame. Counts not yet spooled die with a crashed
//! agent; records never depend on them.
//!
//! Records without a request are not reported here: they are spooled as
//! sent and the control plane rejects and counts them, so each is counted
//! once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;
use warden_proto::domain::Peer;
use warden_proto::wire::agentapi;

use crate::batching;
use crate::ingest::Ingest;
use crate::metrics::Metrics;

/// How often pending counts are spooled.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Reasons, as the control plane and metrics name them.
pub mod reason {
    pub const UNKNOWN_TAG: &str = "unknown_tag";
    pub const FRAME_TOO_LONG: &str = "frame_too_long";
    pub const TRUNCATED_FRAME: &str = "truncated_frame";
    pub const READ_ERROR: &str = "read_error";
    pub const MALFORMED_FRAME: &str = "malformed_frame";
    pub const EMPTY_ENVELOPE: &str = "empty_envelope";
    pub const UNEXPECTED_FRAME: &str = "unexpected_frame";
    pub const PEER_NOT_ALLOWED: &str = "peer_not_allowed";
    pub const CONNECTION_LIMIT: &str = "connection_limit";
    pub const IDLE_TIMEOUT: &str = "idle_timeout";
    pub const SPOOL_FULL: &str = "spool_full";
    pub const SPOOL_ERROR: &str = "spool_error";
    pub const REJECTED_BY_CONTROL_PLANE: &str = "rejected_by_control_plane";
    pub const NO_REQUEST: &str = "no_request";
}

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Tally {
    records: u64,
    frames: u64,
}

type Pending = HashMap<Option<Peer>, BTreeMap<&'static str, Tally>>;

/// Collects drops; cheap to clone.
#[derive(Clone)]
pub struct DropReporter {
    pending: Arc<Mutex<Pending>>,
    metrics: Arc<Metrics>,
}

impl DropReporter {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        DropReporter {
            pending: Arc::default(),
            metrics,
        }
    }

    /// Counts `frames` frames (or connections) and `records` records lost
    /// for `reason`, attributed to `peer` when known.
    pub fn record(&self, peer: Option<&Peer>, reason: &'static str, records: u64, frames: u64) {
        self.metrics.dropped(reason, records, frames);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let tally = pending
            .entry(peer.cloned())
            .or_default()
            .entry(reason)
            .or_default();
        tally.records += records;
        tally.frames += frames;
    }

    /// Takes the pending counts as spool entries, one per peer.
    fn take_entries(&self) -> Vec<warden_spool::NewEntry> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let now = Timestamp::now();
        pending
            .into_iter()
            .map(|(peer, reasons)| {
                let drops = reasons
                    .into_iter()
                    .map(|(reason, t)| agentapi::AgentDrop {
                        reason: reason.to_owned(),
                        records: t.records,
                        frames: t.frames,
                    })
                    .collect();
                batching::drops_entry(peer.map(Into::into), drops, now)
            })
            .collect()
    }

    /// Spools pending counts now; returns whether there were any.
    pub async fn flush(&self, ingest: &Ingest) -> bool {
        let entries = self.take_entries();
        if entries.is_empty() {
            return false;
        }
        if let Err(e) = ingest.append(entries).await {
            tracing::error!("cannot spool the agent's drop counts: {e}");
        }
        true
    }

    /// Spools pending counts every [`FLUSH_INTERVAL`] until `shutdown`; the
    /// final flush is the shutdown sequence's (see [`DropReporter::flush`]).
    pub async fn run(self, ingest: Ingest, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => { self.flush(&ingest).await; }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn counts_aggregate_by_peer_and_reason() {
        let reporter = DropReporter::new(Metrics::new());
        let peer = Peer {
            pid: 42,
            ..Peer::default()
        };
        reporter.record(Some(&peer), reason::MALFORMED_FRAME, 0, 1);
        reporter.record(Some(&peer), reason::MALFORMED_FRAME, 0, 1);
        reporter.record(Some(&peer), reason::UNKNOWN_TAG, 0, 1);
        reporter.record(None, reason::SPOOL_FULL, 30, 3);
        let mut entries = reporter.take_entries();
        assert_eq!(entries.len(), 2);
        entries.sort_by_key(|e| {
            agentapi::Batch::decode(e.data.clone())
                .unwrap()
                .peer
                .is_some()
        });
        let global = agentapi::Batch::decode(entries[0].data.clone()).unwrap();
        assert_eq!(
            global.agent_drops,
            vec![agentapi::AgentDrop {
                reason: "spool_full".into(),
                records: 30,
                frames: 3
            }]
        );
        let per_peer = agentapi::Batch::decode(entries[1].data.clone()).unwrap();
        assert_eq!(per_peer.peer.unwrap().pid, 42);
        let reasons: Vec<_> = per_peer
            .agent_drops
            .iter()
            .map(|d| (d.reason.as_str(), d.frames))
            .collect();
        assert_eq!(reasons, vec![("malformed_frame", 2), ("unknown_tag", 1)]);
        assert!(reporter.take_entries().is_empty(), "taken once");
    }
}
