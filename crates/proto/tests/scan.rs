//! `scan::scan_logs` against prost: on arbitrary messages, on arbitrary
//! bytes and on damaged, padded and reshuffled encodings, the scan accepts
//! exactly what the control plane's decoder accepts where it reads a
//! client's request (as `Batch.logs` of an agent API request), and reports
//! what that decoded request says.

use proptest::prelude::*;
use prost::Message;
use warden_proto::scan::{envelope_logs, scan_logs};
use warden_proto::wire::{
    BoundaryLog, BoundaryMessage, ReportBoundaryLogsRequest, Timestamp, agentapi, boundary_log,
    boundary_message,
};

/// What the control plane decodes from `payload` in `Batch.logs`.
fn control_plane_view(payload: &[u8]) -> Option<ReportBoundaryLogsRequest> {
    let mut batch = Vec::new();
    prost::encoding::encode_key(4, prost::encoding::WireType::LengthDelimited, &mut batch);
    prost::encoding::encode_varint(payload.len() as u64, &mut batch);
    batch.extend_from_slice(payload);
    let mut request = Vec::new();
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut request);
    prost::encoding::encode_varint(batch.len() as u64, &mut request);
    request.extend_from_slice(&batch);
    let decoded = agentapi::ReportBoundaryLogsRequest::decode(request.as_slice()).ok()?;
    Some(decoded.batches[0].logs.clone().unwrap_or_default())
}

fn has_request(log: &BoundaryLog) -> bool {
    matches!(&log.resource, Some(boundary_log::Resource::HttpRequest(r))
        if !(r.method.is_empty() && r.url.is_empty() && r.matched_rule.is_empty()))
}

/// The scan and the decoder agree on `payload`.
fn agree(payload: &[u8]) -> Result<(), TestCaseError> {
    let mut seqs = Vec::new();
    let scanned = scan_logs(payload, &mut seqs);
    let decoded = control_plane_view(payload);
    match (scanned, decoded) {
        (Ok(scan), Some(request)) => {
            prop_assert_eq!(scan.records as usize, request.logs.len());
            prop_assert_eq!(
                scan.without_request as usize,
                request.logs.iter().filter(|l| !has_request(l)).count()
            );
            prop_assert_eq!(scan.session_id, request.session_id.as_str());
            let expected: Vec<i32> = request.logs.iter().map(|l| l.sequence_number).collect();
            prop_assert_eq!(seqs, expected);
        }
        (Err(_), None) => {}
        (scanned, decoded) => {
            return Err(TestCaseError::fail(format!(
                "scan {scanned:?} but decoder {:?} for {payload:02x?}",
                decoded.is_some()
            )));
        }
    }
    Ok(())
}

fn any_log() -> impl Strategy<Value = BoundaryLog> {
    (
        any::<bool>(),
        proptest::option::of((any::<i64>(), any::<i32>())),
        proptest::option::of(("[a-zA-Z]{0,3}", ".{0,12}", ".{0,4}")),
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
        proptest::collection::vec(any_log(), 0..8),
        ".{0,8}",
        ".{0,8}",
        ".{0,4}",
    )
        .prop_map(|(logs, session_id, confined_process_name, policy_digest)| {
            ReportBoundaryLogsRequest {
                logs,
                session_id,
                confined_process_name,
                policy_digest,
            }
        })
}

/// Bytes that are mostly protobuf-shaped: keys of the fields the scan knows
/// and some it does not, with varints, lengths and groups.
fn shaped_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        (1u32..5, 0u8..6).prop_map(|(tag, wire)| {
            let mut out = Vec::new();
            prost::encoding::encode_varint(u64::from(tag << 3 | u32::from(wire)), &mut out);
            out
        }),
        (1u32..200).prop_map(|tag| {
            let mut out = Vec::new();
            prost::encoding::encode_varint(u64::from(tag << 3 | 3), &mut out);
            out
        }),
        any::<u64>().prop_map(|v| {
            let mut out = Vec::new();
            prost::encoding::encode_varint(v % 40, &mut out);
            out
        }),
        proptest::collection::vec(any::<u8>(), 0..4),
        any_log().prop_map(|log| {
            let mut out = Vec::new();
            prost::encoding::message::encode(1, &log, &mut out);
            out
        }),
    ];
    proptest::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn valid_requests_are_read_as_decoded(request in any_request()) {
        let bytes = request.encode_to_vec();
        let mut seqs = Vec::new();
        let scan = scan_logs(&bytes, &mut seqs).expect("a valid request scans");
        prop_assert_eq!(scan.records as usize, request.logs.len());
        prop_assert_eq!(scan.session_id, request.session_id.as_str());
        agree(&bytes)?;
    }

    #[test]
    fn damaged_requests_are_judged_as_the_decoder_judges_them(
        request in any_request(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = request.encode_to_vec();
        if bytes.is_empty() {
            return Ok(());
        }
        let mut bad = bytes.clone();
        for (at, value) in &flips {
            let at = at.index(bad.len());
            bad[at] = *value;
        }
        agree(&bad)?;
        agree(&bytes[..cut.index(bytes.len())])?;
    }

    #[test]
    fn arbitrary_bytes_are_judged_as_the_decoder_judges_them(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        agree(&bytes)?;
    }

    #[test]
    fn protobuf_shaped_bytes_are_judged_as_the_decoder_judges_them(bytes in shaped_bytes()) {
        agree(&bytes)?;
    }

    #[test]
    fn repeated_and_unknown_fields_merge_as_the_decoder_merges_them(
        a in any_request(),
        b in any_request(),
        log_a in any_log(),
        log_b in any_log(),
    ) {
        // Two encodings concatenated are one message, merged.
        let mut bytes = a.encode_to_vec();
        bytes.extend(b.encode_to_vec());
        // An unknown varint, fixed and length-delimited field, and a group.
        bytes.extend([0xb8, 0x06, 0x05, 0x41, 1, 2, 3, 4, 5, 6, 7, 8, 0x52, 0x01, 0xff]);
        bytes.extend([0x5b, 0x08, 0x01, 0x5c]);
        agree(&bytes)?;
        // One record sent as two pieces: its fields merge.
        let mut log = Vec::new();
        log_a.encode(&mut log).unwrap();
        log_b.encode(&mut log).unwrap();
        let mut one = Vec::new();
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut one);
        prost::encoding::encode_varint(log.len() as u64, &mut one);
        one.extend(log);
        agree(&one)?;
    }
}

#[test]
fn nesting_is_limited_where_the_control_plane_limits_it() {
    // An unknown group nested `n` deep in a record.
    let nested = |n: usize| {
        // Field 5: `n` start-group keys, then `n` end-group keys.
        let mut group = vec![0x2b; n];
        group.extend(std::iter::repeat_n(0x2c, n));
        let mut payload = vec![0x0a];
        prost::encoding::encode_varint(group.len() as u64, &mut payload);
        payload.extend(group);
        payload
    };
    let mut accepted = 0;
    for n in 90..100 {
        let payload = nested(n);
        agree(&payload).unwrap();
        if scan_logs(&payload, &mut Vec::new()).is_ok() {
            accepted = n;
        }
    }
    assert!((90..99).contains(&accepted), "{accepted}");
}

#[test]
fn envelope_logs_are_the_logs_field_itself() {
    let logs = ReportBoundaryLogsRequest {
        session_id: "s".into(),
        ..Default::default()
    };
    let envelope = BoundaryMessage {
        msg: Some(boundary_message::Msg::Logs(logs.clone())),
    }
    .encode_to_vec();
    assert_eq!(
        envelope_logs(&envelope),
        Some(logs.encode_to_vec().as_slice())
    );
    let status = BoundaryMessage {
        msg: Some(boundary_message::Msg::Status(Default::default())),
    }
    .encode_to_vec();
    assert_eq!(envelope_logs(&status), None);
    assert_eq!(envelope_logs(&[]), None);
    // Anything after the field is for the slow path.
    let mut padded = envelope.clone();
    padded.extend([0x18, 0x01]);
    assert_eq!(envelope_logs(&padded), None);
    assert_eq!(envelope_logs(&envelope[..envelope.len() - 1]), None);
}
