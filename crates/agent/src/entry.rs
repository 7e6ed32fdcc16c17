//! The agent's spool entries: the batch the control plane will get, exactly
//! as it is sent, behind a small header that tells the agent what it needs
//! without decoding the batch.
//!
//! ```text
//! entry (format 2):   'W' (0x57) | 2 | varint(header length) | EntryHeader | Batch
//! entry (format 1):   Batch                   (written by releases before this one)
//! ```
//!
//! `Batch` is an encoded `warden.agentapi.v2.Batch`; `EntryHeader` is the
//! `warden.agent.v1.EntryHeader` of `proto/warden/agent/v1/spool.proto`
//! (kind, batch id, receive time, session, sequence ranges, peer). An
//! encoded batch always starts with its `batch_id` field (0x0a), and 0x57
//! can never start a protobuf message (wire type 7 does not exist), so the
//! two formats cannot be mistaken for each other: a spool written by an
//! older release is read and delivered as it is.
//!
//! A logs batch is written by hand: its header fields, then the client's
//! `ReportBoundaryLogsRequest` as the bytes the client sent (an embedded
//! message field is byte-identical to the encoded message), so a frame is
//! never decoded into records nor re-encoded on its way. The forwarder
//! sends the batch part of each entry as it is, and what the spool's drop
//! ledger keeps of a dropped entry ([`summarize`]) is its header alone (a
//! logs batch: enough to report which records were lost) or the whole entry
//! (a status or drop report, small, sent later from the ledger instead).

use bytes::{BufMut, Bytes};
use jiff::Timestamp;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use uuid::Uuid;
use warden_proto::domain::{SequenceRange, timestamp_from_wire, timestamp_to_wire};
use warden_proto::wire::agentapi;
use warden_proto::wire::spool::{EntryHeader, entry_header::Kind};

/// First byte of a format-2 entry.
const MAGIC: u8 = 0x57;
/// The format this release writes.
const FORMAT: u8 = 2;

/// Who sent a connection's frames, encoded once for all its entries.
#[derive(Clone, Debug)]
pub struct PeerBytes(Bytes);

impl PeerBytes {
    /// The peer's `SocketPeer` encoding.
    pub fn new(peer: &agentapi::SocketPeer) -> Self {
        PeerBytes(Bytes::from(peer.encode_to_vec()))
    }
}

/// When and from whom a frame arrived, and the batch id it gets: stamped on
/// every batch made from it.
#[derive(Clone, Debug)]
pub struct Stamp<'a> {
    /// The peer that wrote the frame.
    pub peer: &'a PeerBytes,
    /// When the agent read the frame.
    pub received_at: Timestamp,
}

/// What a logs entry says about its records.
#[derive(Clone, Copy, Debug)]
pub struct Attribution<'a> {
    /// The client session, empty when none was sent.
    pub session_id: &'a str,
    /// The records' sequence numbers, as sorted, disjoint ranges.
    pub ranges: &'a [SequenceRange],
}

/// Appends a format-2 logs entry to `out`: `logs` is an encoded
/// `ReportBoundaryLogsRequest`, embedded as it is.
pub fn write_logs(out: &mut Vec<u8>, logs: &[u8], who: &Stamp<'_>, what: Attribution<'_>) {
    let id = batch_id();
    let time = timestamp_to_wire(who.received_at);
    let time_len = timestamp_len(&time);
    let peer = &who.peer.0;

    let mut header_len = 2 // kind
        + field_len(2, id.len())
        + field_len(3, time_len)
        + field_len(6, peer.len());
    if !what.session_id.is_empty() {
        header_len += field_len(4, what.session_id.len());
    }
    for range in what.ranges {
        header_len += field_len(5, range_len(*range));
    }
    let body_len = field_len(1, id.len())
        + field_len(2, time_len)
        + field_len(3, peer.len())
        + field_len(4, logs.len());
    out.reserve(2 + encoded_len_varint(header_len as u64) + header_len + body_len);

    out.push(MAGIC);
    out.push(FORMAT);
    encode_varint(header_len as u64, out);
    let header_start = out.len();
    encode_key(1, WireType::Varint, out);
    encode_varint(Kind::Logs as u64, out);
    put_bytes(out, 2, &id);
    put_timestamp(out, 3, &time, time_len);
    if !what.session_id.is_empty() {
        put_bytes(out, 4, what.session_id.as_bytes());
    }
    for range in what.ranges {
        encode_key(5, WireType::LengthDelimited, out);
        encode_varint(range_len(*range) as u64, out);
        put_int32(out, 1, range.first);
        put_int32(out, 2, range.last);
    }
    put_bytes(out, 6, peer);
    debug_assert_eq!(out.len() - header_start, header_len);

    put_bytes(out, 1, &id);
    put_timestamp(out, 2, &time, time_len);
    put_bytes(out, 3, peer);
    put_bytes(out, 4, logs);
}

/// A format-2 entry of a batch built as a message (status and drop
/// reports, and frames split into several batches): `batch` gets a new id
/// and the stamp's time and peer.
pub fn write_batch(
    kind: Kind,
    mut batch: agentapi::Batch,
    peer: Option<agentapi::SocketPeer>,
    received_at: Timestamp,
    what: Attribution<'_>,
) -> Bytes {
    let id = String::from_utf8(batch_id().to_vec()).unwrap_or_default();
    batch.batch_id.clone_from(&id);
    batch.received_at = Some(timestamp_to_wire(received_at));
    batch.peer.clone_from(&peer);
    let header = EntryHeader {
        kind: kind as i32,
        batch_id: id,
        received_at: batch.received_at,
        session_id: what.session_id.to_owned(),
        sequence_ranges: what.ranges.iter().map(|r| (*r).into()).collect(),
        peer,
    };
    join(&header, &batch.encode_to_vec())
}

/// `'W' 2 varint(len) header body`.
fn join(header: &EntryHeader, body: &[u8]) -> Bytes {
    let header_len = header.encoded_len();
    let mut out =
        Vec::with_capacity(2 + encoded_len_varint(header_len as u64) + header_len + body.len());
    out.push(MAGIC);
    out.push(FORMAT);
    encode_varint(header_len as u64, &mut out);
    header.encode(&mut out).expect("a Vec grows as needed");
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// A spooled entry as the forwarder sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The batch id (UUID text).
    pub batch_id: Bytes,
    /// When the agent read the frame, when known.
    pub received_at: Option<Timestamp>,
    /// The encoded `agentapi::Batch`, to send as it is.
    pub batch: Bytes,
}

/// The entry is neither format.
#[derive(Debug, thiserror::Error)]
#[error("not a spool entry of a known format: {0}")]
pub struct BadEntry(&'static str);

/// Reads what the forwarder needs from an entry, decoding only the header
/// (or, for a format-1 entry, the batch).
pub fn parse(data: &Bytes) -> Result<Parsed, BadEntry> {
    match split(data)? {
        Split::Format2 { header, batch } => {
            let mut parsed = Parsed {
                batch_id: Bytes::new(),
                received_at: None,
                batch: data.slice(batch..),
            };
            // Where the header starts in `data` (slices of one buffer).
            let base = header.as_ptr() as usize - data.as_ptr() as usize;
            let mut r = header;
            while !r.is_empty() {
                let (tag, wire) =
                    prost::encoding::decode_key(&mut r).map_err(|_| BadEntry("header"))?;
                match (tag, wire) {
                    (2, WireType::LengthDelimited) => {
                        let len = varint(&mut r)? as usize;
                        let at = base + (header.len() - r.len());
                        if len > r.len() {
                            return Err(BadEntry("header"));
                        }
                        parsed.batch_id = data.slice(at..at + len);
                        r = &r[len..];
                    }
                    (3, WireType::LengthDelimited) => {
                        let len = varint(&mut r)? as usize;
                        let time = warden_proto::wire::Timestamp::decode(
                            r.get(..len).ok_or(BadEntry("header"))?,
                        )
                        .map_err(|_| BadEntry("header"))?;
                        parsed.received_at = timestamp_from_wire(&time);
                        r = &r[len..];
                    }
                    _ => prost::encoding::skip_field(wire, tag, &mut r, Default::default())
                        .map_err(|_| BadEntry("header"))?,
                }
            }
            if parsed.batch_id.is_empty() {
                return Err(BadEntry("header without a batch id"));
            }
            Ok(parsed)
        }
        Split::Format1 => {
            let batch = agentapi::Batch::decode(data.clone()).map_err(|_| BadEntry("batch"))?;
            Ok(Parsed {
                batch_id: Bytes::from(batch.batch_id.into_bytes()),
                received_at: batch.received_at.as_ref().and_then(timestamp_from_wire),
                batch: data.clone(),
            })
        }
    }
}

/// An entry's header, decoded whole (to report the entry as lost).
pub fn header(data: &[u8]) -> Option<EntryHeader> {
    match split(data).ok()? {
        Split::Format2 { header, .. } => EntryHeader::decode(header).ok(),
        Split::Format1 => {
            let batch = agentapi::Batch::decode(data).ok()?;
            Some(legacy_header(&batch))
        }
    }
}

/// What the spool's drop ledger keeps of an entry it drops (the spool's
/// `drop_summary`): a logs entry's header (format 2, without the batch), or
/// a whole status or drop report (format 2), to be sent from the ledger.
/// Format-1 entries are summarised the same way. Empty for bytes that are
/// neither format (the drop is then reported without attribution).
pub fn summarize(data: &[u8]) -> Vec<u8> {
    match split(data) {
        Ok(Split::Format2 { header, batch }) => {
            let kind = EntryHeader::decode(header).map(|h| h.kind());
            match kind {
                Ok(Kind::Logs) => data[..batch].to_vec(),
                Ok(_) => data.to_vec(),
                Err(_) => Vec::new(),
            }
        }
        Ok(Split::Format1) => match agentapi::Batch::decode(data) {
            Ok(batch) => {
                let header = legacy_header(&batch);
                let body: &[u8] = if header.kind() == Kind::Logs {
                    &[]
                } else {
                    data
                };
                join(&header, body).to_vec()
            }
            Err(_) => Vec::new(),
        },
        Err(_) => Vec::new(),
    }
}

/// A summary read back from the drop ledger.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The dropped entry's header.
    pub header: EntryHeader,
    /// For a status or drop report: its encoded batch, to send as it is.
    pub batch: Option<Bytes>,
}

/// Reads a summary [`summarize`] made; `None` for an empty or unreadable one.
pub fn read_summary(summary: &Bytes) -> Option<Summary> {
    match split(summary).ok()? {
        Split::Format2 { header, batch } => {
            let header = EntryHeader::decode(header).ok()?;
            let batch = (batch < summary.len()).then(|| summary.slice(batch..));
            Some(Summary { header, batch })
        }
        Split::Format1 => None,
    }
}

/// The header an entry written by an older release would have had.
fn legacy_header(batch: &agentapi::Batch) -> EntryHeader {
    let (kind, session_id, sequence_ranges) = match &batch.logs {
        Some(logs) => {
            let mut numbers: Vec<i32> = logs.logs.iter().map(|l| l.sequence_number).collect();
            let ranges = SequenceRange::from_numbers(&mut numbers);
            (
                Kind::Logs,
                logs.session_id.clone(),
                ranges.into_iter().map(Into::into).collect(),
            )
        }
        None if !batch.client_status.is_empty() => (
            Kind::Status,
            batch.client_status[0].session_id.clone(),
            Vec::new(),
        ),
        None => (Kind::Drops, String::new(), Vec::new()),
    };
    EntryHeader {
        kind: kind as i32,
        batch_id: batch.batch_id.clone(),
        received_at: batch.received_at,
        session_id,
        sequence_ranges,
        peer: batch.peer.clone(),
    }
}

enum Split<'a> {
    /// The header's bytes, and where the batch starts.
    Format2 {
        header: &'a [u8],
        batch: usize,
    },
    Format1,
}

fn split(data: &[u8]) -> Result<Split<'_>, BadEntry> {
    match data {
        [MAGIC, FORMAT, rest @ ..] => {
            let mut r = rest;
            let len = varint(&mut r)? as usize;
            let start = data.len() - r.len();
            let header = r.get(..len).ok_or(BadEntry("header runs past the entry"))?;
            Ok(Split::Format2 {
                header,
                batch: start + len,
            })
        }
        [MAGIC, ..] => Err(BadEntry("unknown entry format")),
        [0x0a, ..] => Ok(Split::Format1),
        _ => Err(BadEntry("neither format")),
    }
}

fn varint(r: &mut &[u8]) -> Result<u64, BadEntry> {
    prost::encoding::decode_varint(r).map_err(|_| BadEntry("varint"))
}

/// A new batch id: UUIDv7 text (time-ordered, as the control plane expects).
fn batch_id() -> [u8; 36] {
    let mut text = [0u8; 36];
    Uuid::now_v7().hyphenated().encode_lower(&mut text);
    text
}

fn field_len(tag: u32, len: usize) -> usize {
    prost::encoding::key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_bytes(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.put_slice(bytes);
}

fn timestamp_len(time: &warden_proto::wire::Timestamp) -> usize {
    let mut len = 0;
    if time.seconds != 0 {
        len += 1 + encoded_len_varint(time.seconds as u64);
    }
    if time.nanos != 0 {
        len += 1 + encoded_len_varint(i64::from(time.nanos) as u64);
    }
    len
}

fn put_timestamp(out: &mut Vec<u8>, tag: u32, time: &warden_proto::wire::Timestamp, len: usize) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
    if time.seconds != 0 {
        encode_key(1, WireType::Varint, out);
        encode_varint(time.seconds as u64, out);
    }
    if time.nanos != 0 {
        encode_key(2, WireType::Varint, out);
        encode_varint(i64::from(time.nanos) as u64, out);
    }
}

fn range_len(range: SequenceRange) -> usize {
    let int32 = |v: i32| {
        if v == 0 {
            0
        } else {
            1 + encoded_len_varint(i64::from(v) as u64)
        }
    };
    int32(range.first) + int32(range.last)
}

fn put_int32(out: &mut Vec<u8>, tag: u32, value: i32) {
    if value != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(i64::from(value) as u64, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_proto::wire::{BoundaryLog, ReportBoundaryLogsRequest, boundary_log};

    fn peer() -> PeerBytes {
        PeerBytes::new(&agentapi::SocketPeer {
            uid: 1000,
            gid: 1000,
            pid: 4242,
            comm: "curl".into(),
            exe: "/usr/bin/curl".into(),
        })
    }

    fn request(first: i32, n: i32) -> ReportBoundaryLogsRequest {
        ReportBoundaryLogsRequest {
            logs: (first..first + n)
                .map(|seq| BoundaryLog {
                    allowed: seq % 2 == 0,
                    time: None,
                    resource: Some(boundary_log::Resource::HttpRequest(
                        boundary_log::HttpRequest {
                            method: "GET".into(),
                            url: format!("https://a.example/{seq}"),
                            matched_rule: String::new(),
                        },
                    )),
                    sequence_number: seq,
                })
                .collect(),
            session_id: "s-1".into(),
            confined_process_name: "curl".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_logs_entry_carries_the_client_bytes_in_a_batch_the_control_plane_decodes() {
        let peer = peer();
        let request = request(-2, 5);
        let logs = request.encode_to_vec();
        let ranges = [SequenceRange { first: -2, last: 2 }];
        let received_at = Timestamp::new(1_765_227_526, 93_456_789).unwrap();
        let mut out = Vec::new();
        write_logs(
            &mut out,
            &logs,
            &Stamp {
                peer: &peer,
                received_at,
            },
            Attribution {
                session_id: "s-1",
                ranges: &ranges,
            },
        );
        let data = Bytes::from(out);
        let parsed = parse(&data).unwrap();
        let batch = agentapi::Batch::decode(parsed.batch.clone()).unwrap();
        assert_eq!(batch.logs, Some(request));
        assert_eq!(parsed.batch_id, batch.batch_id.as_bytes());
        Uuid::parse_str(&batch.batch_id).unwrap();
        assert_eq!(parsed.received_at, Some(received_at));
        assert_eq!(batch.received_at, Some(timestamp_to_wire(received_at)));
        assert_eq!(batch.peer.unwrap().exe, "/usr/bin/curl");
        let header = header(&data).unwrap();
        assert_eq!(header.kind(), Kind::Logs);
        assert_eq!(header.batch_id, batch.batch_id);
        assert_eq!(header.session_id, "s-1");
        assert_eq!(
            header.sequence_ranges,
            [agentapi::SequenceRange { first: -2, last: 2 }]
        );
        assert_eq!(header.peer.unwrap().pid, 4242);

        // The ledger keeps the header, not the records.
        let summary = Bytes::from(summarize(&data));
        assert!(summary.len() < 200, "{}", summary.len());
        let read = read_summary(&summary).unwrap();
        assert_eq!(read.header, super::header(&data).unwrap());
        assert_eq!(read.batch, None);
    }

    #[test]
    fn reports_are_kept_whole_by_the_ledger() {
        let status = agentapi::Batch {
            client_status: vec![agentapi::ClientStatus {
                session_id: "s-2".into(),
                status: Some(Default::default()),
            }],
            ..Default::default()
        };
        let data = write_batch(
            Kind::Status,
            status,
            None,
            Timestamp::now(),
            Attribution {
                session_id: "s-2",
                ranges: &[],
            },
        );
        let parsed = parse(&data).unwrap();
        let read = read_summary(&Bytes::from(summarize(&data))).unwrap();
        assert_eq!(read.header.kind(), Kind::Status);
        assert_eq!(read.batch, Some(parsed.batch.clone()));
        let batch = agentapi::Batch::decode(parsed.batch).unwrap();
        assert_eq!(batch.client_status[0].session_id, "s-2");
        assert_eq!(batch.batch_id.as_bytes(), parsed.batch_id);
    }

    #[test]
    fn entries_of_the_previous_format_are_read_and_summarised() {
        let logs_batch = agentapi::Batch {
            batch_id: Uuid::now_v7().to_string(),
            received_at: Some(timestamp_to_wire(Timestamp::now())),
            peer: None,
            logs: Some(request(7, 3)),
            ..Default::default()
        };
        let data = Bytes::from(logs_batch.encode_to_vec());
        let parsed = parse(&data).unwrap();
        assert_eq!(parsed.batch, data, "sent as it is");
        assert_eq!(parsed.batch_id, logs_batch.batch_id.as_bytes());
        let read = read_summary(&Bytes::from(summarize(&data))).unwrap();
        assert_eq!(read.header.kind(), Kind::Logs);
        assert_eq!(read.header.session_id, "s-1");
        assert_eq!(
            read.header.sequence_ranges,
            [agentapi::SequenceRange { first: 7, last: 9 }]
        );
        assert_eq!(read.batch, None);

        let drops = agentapi::Batch {
            batch_id: Uuid::now_v7().to_string(),
            agent_drops: vec![agentapi::AgentDrop {
                reason: "unknown_tag".into(),
                frames: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        let data = Bytes::from(drops.encode_to_vec());
        let read = read_summary(&Bytes::from(summarize(&data))).unwrap();
        assert_eq!(read.header.kind(), Kind::Drops);
        assert_eq!(read.batch, Some(data));
    }

    #[test]
    fn garbage_is_refused_and_summarised_as_nothing() {
        for bad in [
            &b""[..],
            b"\x57\x09",
            b"\x57\x02\xff",
            b"\x57\x02\x10",
            b"xyz",
        ] {
            assert!(parse(&Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
            assert!(summarize(bad).is_empty(), "{bad:?}");
        }
    }
}
