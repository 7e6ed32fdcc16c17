//! Property tests of the frame codec: arbitrary messages round-trip through
//! every framing, arbitrary chunking of a stream does not change what is
//! decoded, and arbitrary bytes never panic the decoder nor make it read
//! past the frame its header announced.

use bytes::BytesMut;
use proptest::prelude::*;
use tokio_util::codec::Decoder;
use warden_proto::codec::{
    DecodedFrame, Frame, FrameCodec, FrameError, HEADER_LEN, Tag, encode_frame, parse_header,
};
use warden_proto::wire::{
    BoundaryLog, BoundaryStatus, ReportBoundaryLogsRequest, Timestamp, boundary_log,
};

fn any_log() -> impl Strategy<Value = BoundaryLog> {
    (
        any::<bool>(),
        proptest::option::of((any::<i64>(), any::<i32>())),
        proptest::option::of((".{0,12}", ".{0,40}", ".{0,12}")),
        any::<i32>(),
    )
        .prop_map(|(allowed, time, request, sequence_number)| BoundaryLog {
            allowed,
            time: time.map(|(seconds, nanos)| Timestamp { seconds, nanos }),
            resource: request.map(|(method, url, matched_rule)| {
                boundary_log::Resource::HttpRequest(boundary_log::HttpRequest {
                    method,
                    url,
                    matched_rule,
                })
            }),
            sequence_number,
        })
}

fn any_request() -> impl Strategy<Value = ReportBoundaryLogsRequest> {
    (
        proptest::collection::vec(any_log(), 0..12),
        ".{0,36}",
        ".{0,16}",
    )
        .prop_map(
            |(logs, session_id, confined_process_name)| ReportBoundaryLogsRequest {
                logs,
                session_id,
                confined_process_name,
                ..Default::default()
            },
        )
}

fn any_frame() -> impl Strategy<Value = (Tag, Frame)> {
    prop_oneof![
        any_request().prop_map(|r| (Tag::Legacy, Frame::Logs(r))),
        any_request().prop_map(|r| (Tag::V1, Frame::Logs(r))),
        any_request().prop_map(|r| (Tag::Envelope, Frame::Logs(r))),
        (
            any::<i64>(),
            any::<i64>(),
            proptest::option::of(any::<i64>())
        )
            .prop_map(|(channel, batch, last)| (
                Tag::Envelope,
                Frame::Status(BoundaryStatus {
                    dropped_channel_full: channel,
                    dropped_batch_full: batch,
                    final_sequence_number: last,
                    ..Default::default()
                })
            )),
        Just((Tag::Envelope, Frame::EmptyEnvelope)),
    ]
}

/// Feeds `bytes` to the decoder in chunks of the given sizes, as a socket
/// would deliver them, and collects what it yields until an error.
fn decode_stream(bytes: &[u8], chunks: &[usize]) -> (Vec<DecodedFrame>, Option<FrameError>, usize) {
    let mut codec = FrameCodec;
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    let mut chunk_sizes = chunks.iter().cycle();
    let mut consumed = 0;
    loop {
        let at_eof = fed == bytes.len();
        if !at_eof {
            let n = (*chunk_sizes.next().unwrap()).clamp(1, bytes.len() - fed);
            buf.extend_from_slice(&bytes[fed..fed + n]);
            fed += n;
        }
        loop {
            let before = buf.len();
            let step = if at_eof {
                codec.decode_eof(&mut buf)
            } else {
                codec.decode(&mut buf)
            };
            match step {
                Ok(Some(item)) => {
                    consumed += before - buf.len();
                    frames.push(item.expect("generated payloads are valid"));
                }
                Ok(None) => break,
                Err(err) => return (frames, Some(err), consumed),
            }
        }
        if at_eof {
            return (frames, None, consumed);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frames_round_trip_through_any_chunking(
        frames in proptest::collection::vec(any_frame(), 0..8),
        chunks in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let mut stream = BytesMut::new();
        for (tag, frame) in &frames {
            encode_frame(*tag, frame, &mut stream).unwrap();
        }
        let (decoded, err, consumed) = decode_stream(&stream, &chunks);
        prop_assert!(err.is_none(), "{err:?}");
        prop_assert_eq!(consumed, stream.len());
        let decoded: Vec<(Tag, Frame)> = decoded.into_iter().map(|d| (d.tag, d.frame)).collect();
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_read_past_a_frame(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        chunks in proptest::collection::vec(1usize..32, 1..4),
    ) {
        let mut codec = FrameCodec;
        let mut buf = BytesMut::new();
        let mut offset = 0; // position in `bytes` of the next frame header
        for chunk in bytes.chunks(chunks[0]) {
            buf.extend_from_slice(chunk);
            loop {
                let before = buf.len();
                match codec.decode(&mut buf) {
                    Ok(Some(_frame_or_malformed)) => {
                        let header: [u8; HEADER_LEN] = bytes[offset..offset + HEADER_LEN].try_into().unwrap();
                        let (_, len) = parse_header(header).unwrap();
                        // Exactly one frame was consumed, no more.
                        prop_assert_eq!(before - buf.len(), HEADER_LEN + len);
                        offset += HEADER_LEN + len;
                    }
                    Ok(None) => {
                        prop_assert_eq!(before, buf.len(), "waiting consumes nothing");
                        break;
                    }
                    Err(_) => return Ok(()),
                }
            }
        }
        // At the end of the stream, leftover bytes are a truncated frame.
        match codec.decode_eof(&mut buf) {
            Ok(None) => prop_assert!(buf.is_empty()),
            Ok(Some(_)) => prop_assert!(false, "decode already drained every whole frame"),
            Err(err) => {
                let closes = matches!(
                    err,
                    FrameError::Truncated { .. } | FrameError::UnknownTag { .. } | FrameError::TooLong { .. }
                );
                prop_assert!(closes, "unexpected error {}", err);
            }
        }
    }

    #[test]
    fn any_payload_under_a_valid_header_is_a_frame_or_a_skip(
        tag in proptest::sample::select(Tag::ALL.to_vec()),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        trailer in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&((u32::from(tag.byte()) << 24) | payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(&payload);
        buf.extend_from_slice(&trailer);
        // Whatever the payload, the frame is consumed whole and the bytes
        // after it are left for the next frame.
        let item = FrameCodec.decode(&mut buf).unwrap().unwrap();
        prop_assert_eq!(&buf[..], &trailer[..]);
        if let Err(malformed) = item {
            prop_assert_eq!(malformed.tag, tag);
            prop_assert_eq!(malformed.payload_len, payload.len());
        }
    }
}

#[test]
fn unknown_tags_close_the_connection() {
    for byte in [0x03u8, 0x3f, 0x43, 0x80, 0xff] {
        let mut buf = BytesMut::from(&[byte, 0, 0, 0][..]);
        let err = FrameCodec.decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::UnknownTag { tag } if tag == byte));
        assert_eq!(err.reason(), "unknown_tag");
    }
}

#[test]
fn a_stream_ending_inside_a_header_or_body_is_truncated() {
    for bytes in [&[0x02u8, 0x00][..], &[0x02, 0x00, 0x00, 0x05, 0x0a][..]] {
        let mut buf = BytesMut::from(bytes);
        assert!(FrameCodec.decode(&mut buf).unwrap().is_none());
        let err = FrameCodec.decode_eof(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { .. }), "{err}");
        assert_eq!(err.reason(), "truncated_frame");
    }
}

#[test]
fn invalid_utf8_is_a_skippable_frame_and_the_next_frame_still_decodes() {
    // ReportBoundaryLogsRequest.session_id (field 2) holding 0xff.
    let bad_payload = [0x12, 0x01, 0xff];
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0x01, 0x00, 0x00, bad_payload.len() as u8]);
    buf.extend_from_slice(&bad_payload);
    encode_frame(Tag::Envelope, &Frame::EmptyEnvelope, &mut buf).unwrap();

    let first = FrameCodec.decode(&mut buf).unwrap().unwrap();
    let malformed = first.unwrap_err();
    assert_eq!(malformed.tag, Tag::V1);
    assert!(malformed.to_string().contains("not a valid message"));
    let second = FrameCodec.decode(&mut buf).unwrap().unwrap().unwrap();
    assert_eq!(second.frame, Frame::EmptyEnvelope);
}
