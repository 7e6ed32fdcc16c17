//! The agent's own losses and refusals (malformed frames, unknown tags,
//! refused peers, spool errors, ...), counted by reason, peer and session
//! and shipped to the control plane in spooled batches of their own
//! (`Batch.agent_drops`, with their own batch id, so a re-send is
//! deduplicated like any batch).
//!
//! Counts are aggregated in memory and spooled every [`FLUSH_INTERVAL`] and
//! on shutdown, so a flood of bad frames costs one small batch per interval
//! and peer, not one per frame. Counts not yet spooled die with a crashed
//! agent; records never depend on them. A lost frame whose records are
//! known (a spool error) is reported with its session and sequence ranges.
//!
//! What the spool's `drop_oldest` policy drops is not counted here: the
//! spool keeps it in its drop ledger, which the forwarder reports
//! (the forwarder's `report_drops`), so that accounting survives the
//! eviction it describes. Records without a request are not reported here
//! either: they are spooled as sent and the control plane rejects and
//! counts them, so each is counted once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;
use warden_proto::domain::{DropReason, Peer, SequenceRange};
use warden_proto::wire::agentapi;
use warden_proto::wire::spool::entry_header::Kind;

use crate::entry::{self, Attribution};
use crate::metrics::Metrics;

/// How often pending counts are spooled.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Default, Debug, PartialEq, Eq)]
struct Tally {
    records: u64,
    frames: u64,
    ranges: Vec<SequenceRange>,
}

/// Who lost something: the peer (when known) and the session (when known).
type Key = (Option<Peer>, String);
type Pending = HashMap<Key, BTreeMap<DropReason, Tally>>;

/// What was lost, for [`DropReporter::record`].
#[derive(Clone, Copy, Debug)]
pub struct Loss<'a> {
    /// The peer, when known.
    pub peer: Option<&'a Peer>,
    /// The session of the lost records; empty when unknown.
    pub session_id: &'a str,
    /// Their sequence numbers, when known.
    pub ranges: &'a [SequenceRange],
    /// Records lost (0 when unknown).
    pub records: u64,
    /// Frames (or connections) concerned.
    pub frames: u64,
}

impl<'a> Loss<'a> {
    /// `frames` frames or connections of `peer`, records unknown.
    pub fn frames(peer: Option<&'a Peer>, frames: u64) -> Self {
        Loss {
            peer,
            session_id: "",
            ranges: &[],
            records: 0,
            frames,
        }
    }
}

/// Collects drops; cheap to clone.
#[derive(Clone)]
pub struct DropReporter {
    pending: Arc<Mutex<Pending>>,
    metrics: Arc<Metrics>,
}

impl DropReporter {
    /// A reporter counting into `metrics` as well.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        DropReporter {
            pending: Arc::default(),
            metrics,
        }
    }

    /// Counts a loss for `reason`.
    pub fn record(&self, reason: DropReason, loss: Loss<'_>) {
        self.metrics.dropped(reason, loss.records, loss.frames);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let tally = pending
            .entry((loss.peer.cloned(), loss.session_id.to_owned()))
            .or_default()
            .entry(reason)
            .or_default();
        tally.records += loss.records;
        tally.frames += loss.frames;
        if !loss.ranges.is_empty() {
            tally.ranges.extend_from_slice(loss.ranges);
            tally.ranges = SequenceRange::normalize(std::mem::take(&mut tally.ranges));
        }
    }

    /// Takes the pending counts as spool entries, one per peer.
    pub(crate) fn take_entries(&self) -> Vec<warden_spool::NewEntry> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut by_peer: HashMap<Option<Peer>, Vec<agentapi::AgentDrop>> = HashMap::new();
        for ((peer, session_id), reasons) in pending {
            let drops = by_peer.entry(peer).or_default();
            drops.extend(reasons.into_iter().map(|(reason, t)| agentapi::AgentDrop {
                reason: reason.as_str().to_owned(),
                records: t.records,
                frames: t.frames,
                session_id: session_id.clone(),
                sequence_ranges: t.ranges.into_iter().map(Into::into).collect(),
                dropped_batch_id: String::new(),
            }));
        }
        let now = Timestamp::now();
        by_peer
            .into_iter()
            .map(|(peer, agent_drops)| {
                let batch = agentapi::Batch {
                    agent_drops,
                    ..Default::default()
                };
                let none = Attribution {
                    session_id: "",
                    ranges: &[],
                };
                warden_spool::NewEntry {
                    records: 0,
                    data: entry::write_batch(Kind::Drops, batch, peer.map(Into::into), now, none),
                }
            })
            .collect()
    }

    /// Spools pending counts now; returns whether there were any.
    pub async fn flush(&self, spool: &warden_spool::Spool) -> bool {
        let entries = self.take_entries();
        if entries.is_empty() {
            return false;
        }
        if let Err(e) = spool.append(entries).await {
            tracing::error!(
                error = %crate::chain::display(&e),
                "cannot spool the agent's drop counts"
            );
        }
        true
    }

    /// Spools pending counts every [`FLUSH_INTERVAL`] until `shutdown`; the
    /// final flush is the shutdown sequence's (see [`DropReporter::flush`]).
    pub async fn run(self, spool: warden_spool::Spool, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => { self.flush(&spool).await; }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn decode(entry: &warden_spool::NewEntry) -> agentapi::Batch {
        let parsed = entry::parse(&entry.data).unwrap();
        agentapi::Batch::decode(parsed.batch).unwrap()
    }

    #[test]
    fn counts_aggregate_by_peer_session_and_reason() {
        let reporter = DropReporter::new(Metrics::new());
        let peer = Peer {
            pid: 42,
            ..Peer::default()
        };
        reporter.record(DropReason::MalformedFrame, Loss::frames(Some(&peer), 1));
        reporter.record(DropReason::MalformedFrame, Loss::frames(Some(&peer), 1));
        reporter.record(DropReason::UnknownTag, Loss::frames(Some(&peer), 1));
        let range = |first, last| SequenceRange { first, last };
        for ranges in [[range(0, 4)], [range(5, 9)]] {
            reporter.record(
                DropReason::SpoolError,
                Loss {
                    peer: Some(&peer),
                    session_id: "s1",
                    ranges: &ranges,
                    records: 5,
                    frames: 1,
                },
            );
        }
        reporter.record(DropReason::ConnectionLimit, Loss::frames(None, 3));
        let mut entries = reporter.take_entries();
        assert_eq!(entries.len(), 2, "one batch per peer");
        entries.sort_by_key(|e| decode(e).peer.is_some());
        let global = decode(&entries[0]);
        assert_eq!(
            global.agent_drops,
            vec![agentapi::AgentDrop {
                reason: "connection_limit".into(),
                frames: 3,
                ..Default::default()
            }]
        );
        let per_peer = decode(&entries[1]);
        assert_eq!(per_peer.peer.unwrap().pid, 42);
        let mut drops: Vec<_> = per_peer
            .agent_drops
            .iter()
            .map(|d| {
                (
                    d.session_id.as_str(),
                    d.reason.as_str(),
                    d.records,
                    d.frames,
                )
            })
            .collect();
        drops.sort();
        assert_eq!(
            drops,
            vec![
                ("", "malformed_frame", 0, 2),
                ("", "unknown_tag", 0, 1),
                ("s1", "spool_error", 10, 2)
            ]
        );
        let spool_error = per_peer
            .agent_drops
            .iter()
            .find(|d| d.reason == "spool_error")
            .unwrap();
        assert_eq!(
            spool_error.sequence_ranges,
            [agentapi::SequenceRange { first: 0, last: 9 }]
        );
        assert!(reporter.take_entries().is_empty(), "taken once");
    }
}
