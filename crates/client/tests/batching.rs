//! Batching: by count, by time (paused clock), by size near the 32768-byte
//! frame limit, and refusal of records that no frame can hold.

mod support;

use std::time::Duration;

use jiff::Timestamp;
use prost::Message;
use support::{FakeAgent, Script, all};
use tokio::time::Instant;
use warden_client::{Auditor, Config, Decision, Record, RecordError};
use warden_proto::codec::{Frame, MAX_PAYLOAD, Tag, envelope_len};

fn record(i: usize) -> Record {
    Record::allow(
        "GET",
        format!("https://example.com/{i}"),
        "domain=example.com",
    )
}

fn seqs(logs: &warden_proto::wire::ReportBoundaryLogsRequest) -> Vec<i32> {
    logs.logs.iter().map(|l| l.sequence_number).collect()
}

#[tokio::test(start_paused = true)]
async fn a_batch_goes_out_when_it_reaches_its_record_count_and_the_rest_after_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), Script::warden());
    let auditor = Auditor::start(Config::new(&agent.path)).unwrap();
    assert_eq!(auditor.session_id().get_version_num(), 4);
    let start = Instant::now();
    for i in 0..25 {
        assert_eq!(auditor.try_record(record(i)), Ok(i as i32));
    }
    // Two full batches of the default 10 go out at once...
    let first = agent.next_logs().await;
    let second = agent.next_logs().await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(seqs(&first), (0..10).collect::<Vec<_>>());
    assert_eq!(seqs(&second), (10..20).collect::<Vec<_>>());
    assert_eq!(first.session_id, auditor.session_id().to_string());
    // ...and the last 5 only when the 5 s interval has passed.
    let third = agent.next_logs().await;
    assert!(start.elapsed() >= Duration::from_secs(5));
    assert_eq!(seqs(&third), (20..25).collect::<Vec<_>>());
    let summary = auditor.close().await.unwrap();
    assert!(summary.is_complete());
    assert_eq!(summary.confirmed.iter().collect::<Vec<_>>(), all(25));
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_waits_for_the_configured_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), Script::warden());
    let mut config = Config::new(&agent.path);
    config.batch_max_records = 100;
    config.batch_interval = Duration::from_secs(30);
    let auditor = Auditor::start(config).unwrap();
    let start = Instant::now();
    for i in 0..3 {
        auditor.try_record(record(i)).unwrap();
    }
    let logs = agent.next_logs().await;
    assert!(
        start.elapsed() >= Duration::from_secs(30),
        "sent after {:?}",
        start.elapsed()
    );
    assert_eq!(seqs(&logs), vec![0, 1, 2]);
    // The interval counts from the first record of a batch.
    tokio::time::advance(Duration::from_secs(7)).await;
    let second_start = Instant::now();
    auditor.try_record(record(3)).unwrap();
    let logs = agent.next_logs().await;
    assert!(second_start.elapsed() >= Duration::from_secs(30));
    assert_eq!(seqs(&logs), vec![3]);
    auditor.close().await.unwrap();
}

#[tokio::test]
async fn batches_are_cut_before_their_frame_would_pass_32768_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), Script::warden());
    let mut config = Config::new(&agent.path);
    config.batch_max_records = 100_000;
    config.buffer_records = 100_000;
    config.queue_capacity = 2000;
    config.batch_interval = Duration::from_secs(3600);
    config.confined_process_name = "curl".into();
    let auditor = Auditor::start(config).unwrap();
    // Records of varying size, about 150 bytes: roughly 200 per frame.
    let n = 1500;
    let time = Timestamp::from_second(1_765_227_526).unwrap();
    for i in 0..n {
        let url = format!("https://example.com/{}", "p".repeat(60 + i % 37));
        let r = Record::allow("GET", url, "domain=example.com").with_time(Some(time));
        auditor.try_record(r).unwrap();
    }
    let summary = auditor.close().await.unwrap();
    assert!(summary.is_complete(), "{summary}");
    let received = agent.until_final_status().await;
    let frames: Vec<_> = received
        .frames()
        .filter(|(_, f)| matches!(f.frame, Frame::Logs(_)))
        .map(|(_, f)| f.clone())
        .collect();
    assert!(frames.len() >= 7, "{} frames", frames.len());
    let mut next_seq = 0;
    for (i, frame) in frames.iter().enumerate() {
        let Frame::Logs(logs) = &frame.frame else {
            unreachable!()
        };
        assert_eq!(frame.tag, Tag::Envelope);
        assert!(frame.payload_len <= MAX_PAYLOAD);
        assert_eq!(logs.confined_process_name, "curl");
        for log in &logs.logs {
            assert_eq!(log.sequence_number, next_seq);
            next_seq += 1;
        }
        // Every frame but the last was cut only because the next record
        // would not have fit.
        if let Some(Frame::Logs(next)) = frames.get(i + 1).map(|f| &f.frame) {
            let next_len = next.logs[0].encoded_len();
            let with_next =
                logs.encoded_len() + 1 + prost::length_delimiter_len(next_len) + next_len;
            assert!(
                envelope_len(with_next) > MAX_PAYLOAD,
                "frame {i} of {} bytes was cut early",
                frame.payload_len
            );
        }
    }
    assert_eq!(next_seq, n as i32);
}

#[tokio::test]
async fn a_record_too_large_for_any_frame_is_refused_and_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), Script::warden());
    let auditor = Auditor::start(Config::new(&agent.path)).unwrap();
    let sized =
        |url_len: usize| Record::new(Decision::Deny, "POST", "u".repeat(url_len)).with_time(None);
    // Find the largest URL the client accepts: one more byte is refused.
    let mut url_len = 32_600;
    let refused = loop {
        match auditor.try_record(sized(url_len)) {
            Ok(_) => url_len += 1,
            Err(error) => break error,
        }
    };
    let RecordError::TooLarge { size, max } = refused else {
        panic!("expected TooLarge, got {refused:?}");
    };
    assert_eq!(size, max + 1);
    assert!(
        refused.to_string().contains("does not fit in a frame"),
        "{refused}"
    );
    assert_eq!(refused.sequence_number(), None);
    // Far too large is refused the same way.
    assert!(matches!(
        auditor.try_record(sized(100_000)),
        Err(RecordError::TooLarge { .. })
    ));
    let accepted = (url_len - 32_600) as i32;
    // The refusals used no sequence numbers and block nothing.
    assert_eq!(auditor.try_record(record(0)), Ok(accepted));
    let summary = auditor.close().await.unwrap();
    assert!(summary.is_complete(), "{summary}");
    assert_eq!(summary.rejected, 2);
    assert_eq!(summary.assigned, accepted as u64 + 1);
    let received = agent.until_final_status().await;
    for (_, frame) in received.frames() {
        assert!(frame.payload_len <= MAX_PAYLOAD);
    }
    assert_eq!(received.stored(), all(accepted + 1));
    // The largest records went one per frame, each frame nearly full.
    let largest = received.logs().filter(|l| l.logs.len() == 1).count();
    assert!(largest >= accepted as usize);
}

#[tokio::test]
async fn a_record_without_any_request_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let auditor = Auditor::start(Config::new(dir.path().join("none.sock"))).unwrap();
    let empty = Record::new(Decision::Allow, "", "");
    assert_eq!(auditor.try_record(empty), Err(RecordError::NoRequest));
    assert_eq!(auditor.assigned(), 0);
    let summary = auditor.close_within(Duration::ZERO).await.unwrap();
    assert_eq!(summary.rejected, 1);
    assert_eq!(summary.final_sequence_number, -1);
}
