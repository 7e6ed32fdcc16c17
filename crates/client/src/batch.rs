//! Size-aware batching and the frames the client writes.
//!
//! A batch is one tag-2 `BoundaryMessage { logs: ReportBoundaryLogsRequest }`
//! frame. Its payload size is kept as a running sum (each record's exact
//! encoded size plus its field overhead, then the envelope), so deciding
//! whether one more record fits is O(1) and the batch is encoded once, when
//! it is cut.

use bytes::{Bytes, BytesMut};
use prost::encoding::{encoded_len_varint, key_len};
use uuid::Uuid;
use warden_proto::codec::{EncodeError, Frame, MAX_PAYLOAD, Tag, encode_frame, envelope_len};
use warden_proto::wire::{AckRequest, BoundaryLog, BoundaryStatus, ReportBoundaryLogsRequest};

use crate::outbox::{Kind, Pending};
use crate::record::Queued;
use crate::sequence::SequenceSet;

/// The acknowledgement extension version this client speaks.
pub(crate) const ACK_VERSION: u32 = 1;

/// Bytes a `string` field takes in a request (none when empty: proto3).
fn string_field_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        key_len(tag) + encoded_len_varint(value.len() as u64) + value.len()
    }
}

/// Bytes one `logs` entry of `len` bytes adds to a request.
fn entry_len(len: usize) -> usize {
    key_len(1) + encoded_len_varint(len as u64) + len
}

/// Collects records into one frame's worth.
#[derive(Debug)]
pub(crate) struct Batcher {
    session_id: String,
    process_name: String,
    /// The session's policy digest, on every logs frame (empty: none).
    policy_digest: String,
    max_records: usize,
    /// Request bytes of the session id and process name fields.
    header_len: usize,
    logs: Vec<BoundaryLog>,
    seqs: SequenceSet,
    /// Encoded size of the request the batch would be now.
    request_len: usize,
}

impl Batcher {
    pub(crate) fn new(
        session_id: Uuid,
        process_name: &str,
        policy_digest: &str,
        max_records: usize,
    ) -> Batcher {
        let session_id = session_id.to_string();
        let header_len = string_field_len(2, &session_id)
            + string_field_len(3, process_name)
            + string_field_len(100, policy_digest);
        Batcher {
            session_id,
            process_name: process_name.to_owned(),
            policy_digest: policy_digest.to_owned(),
            max_records,
            header_len,
            logs: Vec::new(),
            seqs: SequenceSet::new(),
            request_len: header_len,
        }
    }

    /// The largest encoded record that fits in a frame on its own.
    pub(crate) fn max_record_len(&self) -> usize {
        let mut len = MAX_PAYLOAD;
        while len > 0 && envelope_len(self.header_len + entry_len(len)) > MAX_PAYLOAD {
            len -= 1;
        }
        len
    }

    /// Whether a record of `len` bytes still fits in this batch's frame.
    pub(crate) fn fits(&self, len: usize) -> bool {
        envelope_len(self.request_len + entry_len(len)) <= MAX_PAYLOAD
    }

    /// Adds a record; the caller has checked [`Batcher::fits`].
    pub(crate) fn push(&mut self, record: Queued) {
        self.request_len += entry_len(record.len);
        self.seqs.insert(record.log.sequence_number);
        self.logs.push(record.log);
    }

    pub(crate) fn len(&self) -> usize {
        self.logs.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.logs.len() >= self.max_records
    }

    /// The sequence numbers in the open batch.
    pub(crate) fn seqs(&self) -> &SequenceSet {
        &self.seqs
    }

    /// Encodes the open batch as a frame and starts a new one.
    pub(crate) fn cut(&mut self) -> Option<Result<Pending, EncodeError>> {
        if self.logs.is_empty() {
            return None;
        }
        let records = self.logs.len();
        let seqs = std::mem::take(&mut self.seqs);
        let expected = envelope_len(self.request_len);
        self.request_len = self.header_len;
        let frame = Frame::Logs(ReportBoundaryLogsRequest {
            logs: std::mem::take(&mut self.logs),
            session_id: self.session_id.clone(),
            confined_process_name: self.process_name.clone(),
            policy_digest: self.policy_digest.clone(),
        });
        Some(encode(Tag::Envelope, &frame).map(|bytes| {
            debug_assert_eq!(bytes.len(), warden_proto::codec::HEADER_LEN + expected);
            Pending {
                bytes,
                kind: Kind::Logs { seqs, records },
            }
        }))
    }

    /// A logs frame without records: it only names the session.
    pub(crate) fn anchor(&self) -> Result<Pending, EncodeError> {
        let frame = Frame::Logs(ReportBoundaryLogsRequest {
            logs: Vec::new(),
            session_id: self.session_id.clone(),
            confined_process_name: self.process_name.clone(),
            policy_digest: self.policy_digest.clone(),
        });
        Ok(Pending {
            bytes: encode(Tag::Envelope, &frame)?,
            kind: Kind::Anchor,
        })
    }
}

/// A status frame.
pub(crate) fn status_frame(status: BoundaryStatus) -> Result<Pending, EncodeError> {
    let is_final = status.final_sequence_number.is_some();
    Ok(Pending {
        bytes: encode(Tag::Envelope, &Frame::Status(status))?,
        kind: Kind::Status { is_final },
    })
}

/// The first frame of a connection that wants acknowledgements.
pub(crate) fn ack_request_frame() -> Result<Bytes, EncodeError> {
    encode(
        Tag::AckRequest,
        &Frame::AckRequest(AckRequest {
            version: ACK_VERSION,
        }),
    )
}

fn encode(tag: Tag, frame: &Frame) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::new();
    encode_frame(tag, frame, &mut buf)?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use proptest::prelude::*;
    use warden_proto::codec::payload_len;

    use super::*;
    use crate::record::{Decision, Encoded, Record};

    fn queued(url_len: usize, seq: i32) -> Queued {
        Encoded::new(
            Record::new(Decision::Allow, "GET", "u".repeat(url_len))
                .with_rule("domain=example.com")
                .with_time(Some(Timestamp::from_second(1_765_227_526).unwrap())),
        )
        .unwrap()
        .with_sequence(seq)
    }

    #[test]
    fn the_largest_single_record_fills_a_frame_exactly() {
        for name in ["", "curl", &"p".repeat(1000)] {
            let b = Batcher::new(Uuid::new_v4(), name, &"d".repeat(64), 10);
            let max = b.max_record_len();
            assert!(b.fits(max));
            assert!(!b.fits(max + 1));
            // Find a record of exactly `max` bytes and check the frame is full.
            let mut url_len = max - 60;
            let mut q = queued(url_len, 1);
            while q.len < max {
                url_len += 1;
                q = queued(url_len, 1);
            }
            // Near 32 KiB every length prefix is 3 bytes, so sizes step by one.
            assert_eq!(q.len, max);
            let mut b = b;
            b.push(q);
            let frame = b.cut().unwrap().unwrap();
            assert_eq!(frame.bytes.len(), 4 + MAX_PAYLOAD, "process name {name:?}");
        }
    }

    proptest! {
        #[test]
        fn running_size_matches_the_encoder(
            sizes in proptest::collection::vec((0usize..3000, 0i32..i32::MAX), 1..40),
            name in ".{0,20}",
            digest in "[0-9a-f]{0,64}",
        ) {
            let mut b = Batcher::new(Uuid::new_v4(), &name, &digest, usize::MAX);
            let mut frames = Vec::new();
            for (url_len, seq) in sizes {
                let q = queued(url_len, seq);
                if !b.fits(q.len) {
                    frames.push(b.cut().unwrap().unwrap());
                }
                prop_assert!(b.fits(q.len));
                b.push(q);
            }
            frames.push(b.cut().unwrap().unwrap());
            prop_assert!(b.cut().is_none());
            for frame in frames {
                prop_assert!(frame.bytes.len() <= 4 + MAX_PAYLOAD);
                // Decoding and re-measuring gives the same size.
                let decoded = warden_proto::codec::decode_payload(Tag::Envelope, frame.bytes.slice(4..)).unwrap();
                prop_assert_eq!(payload_len(Tag::Envelope, &decoded.frame).unwrap(), frame.bytes.len() - 4);
            }
        }
    }
}
