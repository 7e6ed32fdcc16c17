//! The reference encoder's frames (`data/frame-vectors.tsv`, produced by the Go
//! boundary client) decode to the documented values and re-encode to the same
//! bytes; the size limits hold at exactly the maximum and one byte past it.

use bytes::BytesMut;
use tokio_util::codec::Decoder;
use warden_proto::codec::{
    DecodedFrame, EncodeError, Frame, FrameCodec, FrameError, HEADER_LEN, MAX_LEGACY_PAYLOAD,
    MAX_PAYLOAD, Tag, encode_frame,
};
use warden_proto::wire::{
    BoundaryLog, BoundaryStatus, ReportBoundaryLogsRequest, Timestamp, boundary_log,
};

const VECTORS: &str = include_str!("data/frame-vectors.tsv");
const SESSION: &str = "0b6f8f0e-7a0c-4d7e-9a53-1f2d3c4b5a69";

fn vector(name: &str) -> &'static str {
    VECTORS
        .lines()
        .find_map(|line| {
            let (n, value) = line.split_once('\t')?;
            (n == name).then_some(value)
        })
        .unwrap_or_else(|| panic!("vector {name} missing"))
}

fn decode_one(bytes: &[u8]) -> DecodedFrame {
    let mut buf = BytesMut::from(bytes);
    let frame = FrameCodec
        .decode_eof(&mut buf)
        .expect("frame is well formed")
        .expect("one whole frame")
        .expect("payload is valid");
    assert!(buf.is_empty(), "decoder left {} bytes", buf.len());
    frame
}

fn encode(tag: Tag, frame: &Frame) -> Result<Vec<u8>, EncodeError> {
    let mut buf = BytesMut::new();
    encode_frame(tag, frame, &mut buf)?;
    Ok(buf.to_vec())
}

fn http(method: &str, url: &str, rule: &str) -> Option<boundary_log::Resource> {
    Some(boundary_log::Resource::HttpRequest(
        boundary_log::HttpRequest {
            method: method.into(),
            url: url.into(),
            matched_rule: rule.into(),
        },
    ))
}

fn log_one() -> BoundaryLog {
    BoundaryLog {
        allowed: true,
        time: Some(Timestamp {
            seconds: 1_765_227_526,
            nanos: 93_456_789,
        }),
        resource: http("GET", "https://github.com/coder/coder", "domain=github.com"),
        sequence_number: 7,
    }
}

fn two_logs() -> ReportBoundaryLogsRequest {
    ReportBoundaryLogsRequest {
        logs: vec![
            log_one(),
            BoundaryLog {
                allowed: false,
                time: Some(Timestamp {
                    seconds: 1_765_227_526,
                    nanos: 93_456_789,
                }),
                resource: http("POST", "https://evil.example/upload?x=1", ""),
                sequence_number: 0,
            },
        ],
        session_id: SESSION.into(),
        confined_process_name: String::new(),
        ..Default::default()
    }
}

/// Decodes the named vector, checks it against `tag` and `expected`, and
/// re-encodes `expected` to the same bytes.
fn check(name: &str, tag: Tag, expected: Frame) {
    let bytes = hex::decode(vector(name)).unwrap();
    let decoded = decode_one(&bytes);
    assert_eq!(decoded.tag, tag, "{name}");
    assert_eq!(decoded.payload_len, bytes.len() - HEADER_LEN, "{name}");
    assert_eq!(decoded.frame, expected, "{name}");
    assert_eq!(encode(tag, &expected).unwrap(), bytes, "{name} re-encoding");
}

#[test]
fn v1_two_logs() {
    check("v1_two_logs", Tag::V1, Frame::Logs(two_logs()));
}

#[test]
fn v2_logs_two() {
    check("v2_logs_two", Tag::Envelope, Frame::Logs(two_logs()));
}

#[test]
fn v2_status_5_3() {
    let status = BoundaryStatus {
        dropped_channel_full: 5,
        dropped_batch_full: 3,
        final_sequence_number: None,
        ..Default::default()
    };
    check("v2_status_5_3", Tag::Envelope, Frame::Status(status));
}

#[test]
fn v2_empty_envelope() {
    check("v2_empty_envelope", Tag::Envelope, Frame::EmptyEnvelope);
}

#[test]
fn v1_empty_request() {
    check(
        "v1_empty_request",
        Tag::V1,
        Frame::Logs(ReportBoundaryLogsRequest::default()),
    );
}

#[test]
fn v1_one_log_no_time() {
    let request = ReportBoundaryLogsRequest {
        logs: vec![BoundaryLog {
            allowed: true,
            time: None,
            resource: http("GET", "https://a.io", ""),
            sequence_number: 0,
        }],
        ..Default::default()
    };
    check("v1_one_log_no_time", Tag::V1, Frame::Logs(request));
}

#[test]
fn v2_oversize_450_logs_is_refused_by_the_encoder() {
    let expected = vector("v2_oversize_450_logs")
        .strip_prefix("ERROR ")
        .expect("row holds the error text");
    let request = ReportBoundaryLogsRequest {
        logs: vec![log_one(); 450],
        ..Default::default()
    };
    let err = encode(Tag::Envelope, &Frame::Logs(request)).unwrap_err();
    assert_eq!(
        err,
        EncodeError::TooLarge {
            tag: Tag::Envelope,
            size: 34654,
            max: 32768
        }
    );
    assert!(
        expected.starts_with(&err.to_string()),
        "{err} vs reference {expected}"
    );
}

#[test]
fn every_vector_row_is_covered() {
    let names: Vec<&str> = VECTORS
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(n, _)| n))
        .collect();
    assert_eq!(
        names,
        [
            "v1_two_logs",
            "v2_logs_two",
            "v2_status_5_3",
            "v2_empty_envelope",
            "v1_empty_request",
            "v1_one_log_no_time",
            "v2_oversize_450_logs"
        ]
    );
}

/// A request whose tag-`tag` payload is exactly `size` bytes: one record
/// whose URL and method are padded to fit. Varint length prefixes make sizes
/// move in steps, so a few combinations are tried.
fn request_of_payload_size(tag: Tag, size: usize) -> Frame {
    for url_len in (size.saturating_sub(32)..size).rev() {
        for method_len in 1..8 {
            let frame = Frame::Logs(ReportBoundaryLogsRequest {
                logs: vec![BoundaryLog {
                    resource: http(&"M".repeat(method_len), &"u".repeat(url_len), ""),
                    ..Default::default()
                }],
                ..Default::default()
            });
            if warden_proto::codec::payload_len(tag, &frame).unwrap() == size {
                return frame;
            }
        }
    }
    panic!("no request of exactly {size} bytes")
}

#[test]
fn exact_maximum_passes_and_one_byte_more_fails_for_each_logs_tag() {
    for (tag, max) in [
        (Tag::Legacy, MAX_LEGACY_PAYLOAD),
        (Tag::V1, MAX_PAYLOAD),
        (Tag::Envelope, MAX_PAYLOAD),
    ] {
        let at_max = request_of_payload_size(tag, max);
        let bytes = encode(tag, &at_max).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + max, "tag {tag}");
        assert_eq!(decode_one(&bytes).frame, at_max, "tag {tag}");

        let over = request_of_payload_size(tag, max + 1);
        assert_eq!(
            encode(tag, &over),
            Err(EncodeError::TooLarge {
                tag,
                size: max + 1,
                max
            })
        );
    }
}

#[test]
fn decoder_closes_on_a_length_one_past_the_maximum_of_each_tag() {
    for tag in Tag::ALL {
        let max = tag.max_payload();
        // At the maximum the header is accepted and the decoder waits for the body.
        let mut at_max = BytesMut::new();
        at_max.extend_from_slice(&((u32::from(tag.byte()) << 24) | max as u32).to_be_bytes());
        assert!(
            FrameCodec.decode(&mut at_max).unwrap().is_none(),
            "tag {tag}"
        );

        let mut over = BytesMut::new();
        over.extend_from_slice(&((u32::from(tag.byte()) << 24) | (max as u32 + 1)).to_be_bytes());
        let err = FrameCodec.decode(&mut over).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLong { len, .. } if len == max + 1),
            "tag {tag}: {err}"
        );
        assert_eq!(err.reason(), "frame_too_long");
    }
}

#[test]
fn extension_frames_round_trip() {
    use warden_proto::wire::{AckAccepted, AckRequest, FrameAck, frame_ack::Outcome};
    let frames = [
        (
            Tag::AckRequest,
            Frame::AckRequest(AckRequest { version: 1 }),
        ),
        (
            Tag::AckAccepted,
            Frame::AckAccepted(AckAccepted { version: 1 }),
        ),
        (
            Tag::FrameAck,
            Frame::FrameAck(FrameAck {
                frame: 42,
                outcome: Outcome::Durable as i32,
                records: 10,
                rejected: 1,
            }),
        ),
    ];
    for (tag, frame) in frames {
        let bytes = encode(tag, &frame).unwrap();
        assert_eq!(bytes[0], tag.byte());
        assert!(tag.is_extension());
        assert_eq!(decode_one(&bytes).frame, frame);
    }
}

#[test]
fn frames_sent_with_the_wrong_tag_are_refused() {
    let status = Frame::Status(BoundaryStatus::default());
    assert!(matches!(
        encode(Tag::V1, &status),
        Err(EncodeError::TagMismatch { .. })
    ));
    assert!(matches!(
        encode(Tag::AckRequest, &Frame::Logs(two_logs())),
        Err(EncodeError::TagMismatch { .. })
    ));
}
