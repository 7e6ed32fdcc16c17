//! Turning what a client sent into spooled batches.
//!
//! A spool entry is one encoded [`agentapi::Batch`] with its own UUIDv7
//! batch id, assigned here, once: re-sends after a lost ack or a restart
//! carry the same id, which is what makes them harmless at the control plane.
//!
//! A client frame can hold more than one RPC may carry (a tag-0 frame of
//! 1 MiB holds thousands of records; the control plane takes at most
//! [`MAX_RECORDS_PER_RPC`] records per call), so a frame's records are split
//! into batches of at most that many records and about [`MAX_BATCH_BYTES`].
//! All batches of one frame are appended together, so the frame becomes
//! durable as a whole.

use bytes::Bytes;
use jiff::Timestamp;
use prost::Message;
use uuid::Uuid;
use warden_proto::domain::timestamp_to_wire;
use warden_proto::wire::{
    BoundaryLog, BoundaryStatus, ReportBoundaryLogsRequest, agentapi, boundary_log,
};
use warden_spool::NewEntry;

/// Most records the control plane takes in one `ReportBoundaryLogs` call.
pub const MAX_RECORDS_PER_RPC: usize = 1000;
/// Target size of one batch's records; a single larger record still makes a
/// batch of its own (at most a 1 MiB tag-0 payload).
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

/// When and from whom a frame arrived; stamped on every batch made from it.
#[derive(Clone, Debug)]
pub struct Stamp {
    pub peer: agentapi::SocketPeer,
    pub received_at: Timestamp,
}

impl Stamp {
    fn batch(&self) -> agentapi::Batch {
        agentapi::Batch {
            batch_id: Uuid::now_v7().to_string(),
            received_at: Some(timestamp_to_wire(self.received_at)),
            peer: Some(self.peer.clone()),
            ..Default::default()
        }
    }
}

/// The records of a logs frame as spool entries (none for an empty frame).
pub fn logs_entries(request: ReportBoundaryLogsRequest, stamp: &Stamp) -> Vec<NewEntry> {
    if request.logs.is_empty() {
        return Vec::new();
    }
    split(request)
        .into_iter()
        .map(|logs| {
            let records = logs.logs.len() as u32;
            let batch = agentapi::Batch {
                logs: Some(logs),
                ..stamp.batch()
            };
            entry(records, &batch)
        })
        .collect()
}

/// A client's status report, attributed to `session_id` (empty: none known).
pub fn status_entry(session_id: &str, status: BoundaryStatus, stamp: &Stamp) -> NewEntry {
    let batch = agentapi::Batch {
        client_status: vec![agentapi::ClientStatus {
            session_id: session_id.to_owned(),
            status: Some(status),
        }],
        ..stamp.batch()
    };
    entry(0, &batch)
}

/// A report of the agent's own drops, for one peer (or none).
pub fn drops_entry(
    peer: Option<agentapi::SocketPeer>,
    drops: Vec<agentapi::AgentDrop>,
    received_at: Timestamp,
) -> NewEntry {
    let batch = agentapi::Batch {
        batch_id: Uuid::now_v7().to_string(),
        received_at: Some(timestamp_to_wire(received_at)),
        peer,
        agent_drops: drops,
        ..Default::default()
    };
    entry(0, &batch)
}

fn entry(records: u32, batch: &agentapi::Batch) -> NewEntry {
    NewEntry {
        records,
        data: Bytes::from(batch.encode_to_vec()),
    }
}

/// Records of a frame that carry no request. They are spooled as sent and
/// the control plane rejects and counts them (`BatchResult.rejected`); the
/// agent only reports the number back to an acknowledged client and in its
/// metrics, so the loss is counted once, at the control plane.
pub fn count_without_request(request: &ReportBoundaryLogsRequest) -> u32 {
    request.logs.iter().filter(|log| !has_request(log)).count() as u32
}

fn has_request(log: &BoundaryLog) -> bool {
    match &log.resource {
        Some(boundary_log::Resource::HttpRequest(r)) => {
            !(r.method.is_empty() && r.url.is_empty() && r.matched_rule.is_empty())
        }
        None => false,
    }
}

/// Splits a request into requests within the per-batch limits, keeping the
/// session and process name on each part.
fn split(mut request: ReportBoundaryLogsRequest) -> Vec<ReportBoundaryLogsRequest> {
    if request.logs.len() <= MAX_RECORDS_PER_RPC && request.encoded_len() <= MAX_BATCH_BYTES {
        return vec![request];
    }
    let logs = std::mem::take(&mut request.logs);
    let mut parts = Vec::new();
    let mut current: Vec<BoundaryLog> = Vec::new();
    let mut bytes = 0;
    for log in logs {
        let len = prost::encoding::message::encoded_len(1, &log);
        if !current.is_empty()
            && (current.len() == MAX_RECORDS_PER_RPC || bytes + len > MAX_BATCH_BYTES)
        {
            parts.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += len;
        current.push(log);
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|logs| ReportBoundaryLogsRequest {
            logs,
            session_id: request.session_id.clone(),
            confined_process_name: request.confined_process_name.clone(),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_proto::domain::IngestBatch;

    fn log(seq: i32, url_len: usize) -> BoundaryLog {
        BoundaryLog {
            allowed: true,
            time: None,
            resource: Some(boundary_log::Resource::HttpRequest(
                boundary_log::HttpRequest {
                    method: "GET".into(),
                    url: "u".repeat(url_len),
                    matched_rule: String::new(),
                },
            )),
            sequence_number: seq,
        }
    }

    fn stamp() -> Stamp {
        Stamp {
            peer: agentapi::SocketPeer {
                uid: 1,
                gid: 2,
                pid: 3,
                comm: "c".into(),
                exe: "/e".into(),
            },
            received_at: Timestamp::now(),
        }
    }

    fn decode(entry: &NewEntry) -> agentapi::Batch {
        agentapi::Batch::decode(entry.data.clone()).unwrap()
    }

    #[test]
    fn a_small_frame_is_one_batch() {
        let request = ReportBoundaryLogsRequest {
            logs: (0..10).map(|i| log(i, 10)).collect(),
            session_id: "s".into(),
            confined_process_name: "p".into(),
            ..Default::default()
        };
        let entries = logs_entries(request.clone(), &stamp());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].records, 10);
        let batch = decode(&entries[0]);
        assert_eq!(batch.logs, Some(request));
        assert_eq!(batch.peer.unwrap().pid, 3);
        // The control plane can take it.
        let ingest = IngestBatch::try_from(decode(&entries[0])).unwrap();
        assert_eq!(ingest.record_count(), 10);
    }

    #[test]
    fn a_large_frame_is_split_within_the_rpc_limits() {
        let request = ReportBoundaryLogsRequest {
            logs: (0..2500).map(|i| log(i, 300)).collect(),
            session_id: "s".into(),
            confined_process_name: "p".into(),
            ..Default::default()
        };
        let entries = logs_entries(request.clone(), &stamp());
        assert!(entries.len() >= 3);
        let mut ids = std::collections::HashSet::new();
        let mut all = Vec::new();
        for entry in &entries {
            let batch = decode(entry);
            assert!(ids.insert(batch.batch_id.clone()), "batch ids are unique");
            let logs = batch.logs.unwrap();
            assert_eq!(logs.session_id, "s");
            assert_eq!(logs.confined_process_name, "p");
            assert!(logs.logs.len() <= MAX_RECORDS_PER_RPC);
            assert!(logs.encoded_len() <= MAX_BATCH_BYTES + 64);
            assert_eq!(entry.records as usize, logs.logs.len());
            all.extend(logs.logs);
        }
        assert_eq!(all, request.logs, "every record, in order");
    }

    #[test]
    fn a_record_larger_than_the_target_gets_a_batch_of_its_own() {
        let request = ReportBoundaryLogsRequest {
            logs: vec![log(0, 10), log(1, MAX_BATCH_BYTES + 10), log(2, 10)],
            ..Default::default()
        };
        let entries = logs_entries(request, &stamp());
        let sizes: Vec<u32> = entries.iter().map(|e| e.records).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }

    #[test]
    fn empty_frames_spool_nothing_and_status_and_drops_spool_reports() {
        assert!(logs_entries(ReportBoundaryLogsRequest::default(), &stamp()).is_empty());
        let status = BoundaryStatus {
            dropped_channel_full: 5,
            dropped_batch_full: 3,
            final_sequence_number: None,
            ..Default::default()
        };
        let entry = status_entry("sess", status.clone(), &stamp());
        assert_eq!(entry.records, 0);
        let batch = decode(&entry);
        assert_eq!(batch.client_status[0].session_id, "sess");
        assert_eq!(batch.client_status[0].status, Some(status));
        let drop = agentapi::AgentDrop {
            reason: "unknown_tag".into(),
            records: 0,
            frames: 1,
        };
        let batch = decode(&drops_entry(None, vec![drop.clone()], Timestamp::now()));
        assert_eq!(batch.agent_drops, vec![drop]);
        assert!(batch.peer.is_none() && batch.logs.is_none());
        IngestBatch::try_from(batch).unwrap();
    }

    #[test]
    fn records_without_request_are_counted() {
        let mut request = ReportBoundaryLogsRequest {
            logs: vec![log(0, 1), log(1, 1)],
            ..Default::default()
        };
        request.logs[1].resource = None;
        request.logs.push(BoundaryLog {
            resource: Some(boundary_log::Resource::HttpRequest(Default::default())),
            ..log(2, 1)
        });
        assert_eq!(count_without_request(&request), 2);
    }
}
