//! Frames that hold more than one call may carry: a tag-0 frame of 1 MiB
//! can hold thousands of records, and the control plane takes at most
//! [`MAX_RECORDS_PER_RPC`] records per call. Such a frame is decoded and
//! split into requests of at most that many records and about
//! [`MAX_BATCH_BYTES`], each spooled as a batch of its own (all appended
//! together, so the frame becomes durable as a whole). This is the one path
//! that re-encodes a client's records; every other frame is spooled as the
//! bytes the client sent (see [`crate::entry`]).

use prost::Message;
use warden_proto::wire::{BoundaryLog, ReportBoundaryLogsRequest};

pub use warden_proto::api::MAX_RECORDS_PER_CALL as MAX_RECORDS_PER_RPC;

/// Target size of one batch's records; a single larger record still makes a
/// batch of its own (at most a 1 MiB tag-0 payload).
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

/// Whether a request of `records` records in `bytes` bytes must be split.
pub fn needs_split(records: u32, bytes: usize) -> bool {
    records as usize > MAX_RECORDS_PER_RPC || bytes > MAX_BATCH_BYTES
}

/// Splits a request into requests within the per-batch limits, keeping the
/// session, process name and policy digest on each part.
pub fn split(mut request: ReportBoundaryLogsRequest) -> Vec<ReportBoundaryLogsRequest> {
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
            ..request.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_proto::wire::boundary_log;

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

    #[test]
    fn a_large_frame_is_split_by_records_and_bytes_keeping_the_session() {
        let request = ReportBoundaryLogsRequest {
            logs: (0..2500).map(|i| log(i, 10)).collect(),
            session_id: "s".into(),
            confined_process_name: "p".into(),
            policy_digest: "d".into(),
        };
        assert!(needs_split(2500, request.encoded_len()));
        let parts = split(request.clone());
        assert_eq!(
            parts.iter().map(|p| p.logs.len()).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        assert!(parts.iter().all(|p| p.session_id == "s"
            && p.confined_process_name == "p"
            && p.policy_digest == "d"));
        let rejoined: Vec<BoundaryLog> = parts.into_iter().flat_map(|p| p.logs).collect();
        assert_eq!(rejoined, request.logs);

        let big = ReportBoundaryLogsRequest {
            logs: (0..3).map(|i| log(i, 300 * 1024)).collect(),
            ..Default::default()
        };
        assert_eq!(
            split(big).iter().map(|p| p.logs.len()).collect::<Vec<_>>(),
            [1, 1, 1],
            "each part about 512 KiB at most"
        );
        assert!(!needs_split(1000, MAX_BATCH_BYTES));
    }
}
