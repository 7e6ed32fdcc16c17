//! Reporting what the spool dropped: the spool keeps, for every batch its
//! drop_oldest policy dropped, what [`entry::summarize`] made of it in its
//! drop ledger (outside the evictable segments, counted in its bound) until
//! the agent settles the drop. This task reads the ledger, reports each
//! drop to the control plane and settles it once the control plane has
//! committed the report:
//!
//! - a dropped batch of records becomes an `AgentDrop` (`spool_full`) that
//!   names the batch, its session and its sequence ranges, so the control
//!   plane counts the loss against that session and can show which records
//!   went (and counts it only if it never committed that batch);
//! - a dropped status or drop report is sent itself, as it was spooled
//!   (same batch id: harmless if it had arrived before), so client drop
//!   counts and the agent's own are never lost to eviction.
//!
//! A drop whose summary could not be read is reported with its record
//! count alone.

use std::collections::HashMap;

use bytes::Bytes;
use jiff::Timestamp;
use prost::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use warden_proto::domain::{DropReason, timestamp_to_wire};
use warden_proto::wire::agentapi;
use warden_proto::wire::spool::entry_header::Kind;
use warden_spool::{DroppedEntry, EntryId, Spool};

use super::MAX_BATCHES_PER_RPC;
use crate::control::{CallError, ControlPlane, RawBatches, Retry, RetryPolicy};
use crate::entry;

/// Reports the spool's drops until `stop`.
pub async fn report_drops(
    spool: Spool,
    control: ControlPlane,
    policy: RetryPolicy,
    stop: CancellationToken,
) {
    let mut retry = Retry::new(policy);
    loop {
        let read = tokio::select! {
            () = stop.cancelled() => return,
            read = spool.read_dropped(None, MAX_BATCHES_PER_RPC) => read,
        };
        let drops = match read {
            Ok(drops) => drops,
            // Closed: the agent is stopping.
            Err(_) => return,
        };
        let (batches, ids) = report(&drops);
        let sent = tokio::select! {
            () = stop.cancelled() => return,
            sent = control.report(RawBatches(batches.clone())) => sent,
        };
        let error = match sent {
            Ok(response) if response.results.len() == batches.len() => {
                retry.reset();
                if let Err(e) = spool.settle_dropped(&ids).await {
                    tracing::error!(
                        error = %crate::chain::display(&e),
                        "cannot settle reported spool drops; they will be reported again (harmless)"
                    );
                }
                tracing::info!(
                    batches = ids.len(),
                    records = drops.iter().map(|d| u64::from(d.records)).sum::<u64>(),
                    "reported batches the full spool dropped to the control plane"
                );
                continue;
            }
            Ok(response) => CallError::Unavailable {
                code: tonic::Code::Internal,
                message: format!(
                    "the control plane confirmed {} of {} batches of a drop report",
                    response.results.len(),
                    batches.len()
                ),
            },
            Err(e) => e,
        };
        if let CallError::Rejected { code, message } = &error {
            // Nothing in a drop report should be refusable; say so loudly
            // and keep trying (the drops stay in the ledger).
            tracing::error!(
                "the control plane refused a report of spool drops ({code:?}: {message}); keeping it and retrying"
            );
        }
        let delay = retry.delay_after(&error);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// A peer and the drops of what it wrote.
type PeerDrops = (Option<agentapi::SocketPeer>, Vec<agentapi::AgentDrop>);

/// The batches that report `drops`, and the ledger ids they settle.
fn report(drops: &[DroppedEntry]) -> (Vec<Bytes>, Vec<EntryId>) {
    let mut batches = Vec::new();
    // Drops by the peer that wrote them (its encoding, for a key).
    let mut by_peer: HashMap<Option<Vec<u8>>, PeerDrops> = HashMap::new();
    for drop in drops {
        match entry::read_summary(&drop.summary) {
            Some(summary) if summary.header.kind() == Kind::Logs => {
                let header = summary.header;
                let key = header.peer.as_ref().map(Message::encode_to_vec);
                let (_, list) = by_peer
                    .entry(key)
                    .or_insert_with(|| (header.peer.clone(), Vec::new()));
                list.push(agentapi::AgentDrop {
                    reason: DropReason::SpoolFull.as_str().to_owned(),
                    records: u64::from(drop.records),
                    frames: 1,
                    session_id: header.session_id,
                    sequence_ranges: header.sequence_ranges,
                    dropped_batch_id: header.batch_id,
                });
            }
            // A status or drop report: sent itself.
            Some(summary) if summary.batch.is_some() => {
                batches.extend(summary.batch);
            }
            _ => {
                let (_, list) = by_peer.entry(None).or_insert_with(|| (None, Vec::new()));
                list.push(agentapi::AgentDrop {
                    reason: DropReason::SpoolFull.as_str().to_owned(),
                    records: u64::from(drop.records),
                    frames: 1,
                    ..Default::default()
                });
            }
        }
    }
    let now = Some(timestamp_to_wire(Timestamp::now()));
    for (_, (peer, agent_drops)) in by_peer {
        let batch = agentapi::Batch {
            batch_id: Uuid::now_v7().to_string(),
            received_at: now,
            peer,
            agent_drops,
            ..Default::default()
        };
        batches.push(Bytes::from(batch.encode_to_vec()));
    }
    (batches, drops.iter().map(|d| d.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_proto::domain::SequenceRange;
    use warden_proto::wire::ReportBoundaryLogsRequest;

    use crate::entry::{Attribution, PeerBytes, Stamp};

    #[test]
    fn drops_are_reported_by_session_and_reports_are_sent_themselves() {
        let peer = PeerBytes::new(&agentapi::SocketPeer {
            pid: 7,
            ..Default::default()
        });
        let mut logs = Vec::new();
        let request = ReportBoundaryLogsRequest {
            session_id: "s-9".into(),
            ..Default::default()
        };
        entry::write_logs(
            &mut logs,
            &request.encode_to_vec(),
            &Stamp {
                peer: &peer,
                received_at: Timestamp::now(),
            },
            Attribution {
                session_id: "s-9",
                ranges: &[SequenceRange {
                    first: 100,
                    last: 299,
                }],
            },
        );
        let status = entry::write_batch(
            Kind::Status,
            agentapi::Batch {
                client_status: vec![agentapi::ClientStatus {
                    session_id: "s-9".into(),
                    status: Some(Default::default()),
                }],
                ..Default::default()
            },
            None,
            Timestamp::now(),
            Attribution {
                session_id: "s-9",
                ranges: &[],
            },
        );
        let dropped = |id, records, data: &[u8]| DroppedEntry {
            id: EntryId(id),
            records,
            summary: Bytes::from(entry::summarize(data)),
        };
        let drops = vec![
            dropped(4, 200, &logs),
            dropped(5, 0, &status),
            DroppedEntry {
                id: EntryId(6),
                records: 3,
                summary: Bytes::new(),
            },
        ];
        let (batches, ids) = report(&drops);
        assert_eq!(ids, [EntryId(4), EntryId(5), EntryId(6)]);
        let batches: Vec<agentapi::Batch> = batches
            .iter()
            .map(|b| agentapi::Batch::decode(b.clone()).unwrap())
            .collect();
        let relocated = entry::parse(&status).unwrap();
        let status_batch = agentapi::Batch::decode(relocated.batch).unwrap();
        assert!(
            batches.contains(&status_batch),
            "the status report is sent as spooled"
        );
        let drops: Vec<&agentapi::AgentDrop> =
            batches.iter().flat_map(|b| &b.agent_drops).collect();
        assert_eq!(drops.len(), 2);
        let logs_drop = drops.iter().find(|d| d.session_id == "s-9").unwrap();
        let original = entry::header(&logs).unwrap();
        assert_eq!(logs_drop.reason, "spool_full");
        assert_eq!((logs_drop.records, logs_drop.frames), (200, 1));
        assert_eq!(logs_drop.dropped_batch_id, original.batch_id);
        assert_eq!(
            logs_drop.sequence_ranges,
            [agentapi::SequenceRange {
                first: 100,
                last: 299
            }]
        );
        let unknown = drops.iter().find(|d| d.session_id.is_empty()).unwrap();
        assert_eq!(
            (unknown.records, unknown.dropped_batch_id.as_str()),
            (3, "")
        );
        // Every report batch is one the control plane accepts.
        for batch in batches {
            warden_proto::domain::IngestBatch::try_from(batch).unwrap();
        }
    }
}
