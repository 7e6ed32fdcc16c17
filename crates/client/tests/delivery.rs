//! Delivery: drop counting and status frames, block mode, redialing after
//! the agent restarts, and draining on close and on drop.

mod support;

use std::time::Duration;

use support::{FakeAgent, Script, all};
use warden_client::{
    AckMode, AckPolicy, Auditor, BlockingAuditor, Config, FinalStatus, Overflow, Record,
    RecordError,
};
use warden_proto::codec::Frame;

fn record(i: usize) -> Record {
    Record::deny("GET", format!("https://example.com/{i}"))
}

fn seqs(logs: &warden_proto::wire::ReportBoundaryLogsRequest) -> Vec<i32> {
    logs.logs.iter().map(|l| l.sequence_number).collect()
}

#[tokio::test]
async fn dropped_records_are_counted_and_reported_in_status_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), Script::warden());
    let mut config = Config::new(&agent.path);
    config.queue_capacity = 4;
    config.batch_max_records = 4;
    config.buffer_records = 8;
    let auditor = Auditor::start(config).unwrap();
    // This single-threaded test does not yield, so the background task
    // takes nothing from the queue meanwhile: 4 fit, 6 are dropped.
    for i in 0..10 {
        let result = auditor.try_record(record(i));
        if i < 4 {
            assert_eq!(result, Ok(i as i32));
        } else {
            assert_eq!(
                result,
                Err(RecordError::QueueFull {
                    sequence_number: i as i32
                })
            );
        }
    }
    // The drops follow the next logs frame, on the same connection.
    let (conn, logs) = loop {
        let (conn, frame) = agent.next_frame().await;
        if let Frame::Logs(logs) = frame.frame {
            break (conn, logs);
        }
    };
    assert_eq!(seqs(&logs), vec![0, 1, 2, 3]);
    let (status_conn, status) = agent.next_frame().await;
    let Frame::Status(status) = status.frame else {
        panic!("expected a status frame, got {status:?}");
    };
    assert_eq!(status_conn, conn);
    assert_eq!(
        (status.dropped_channel_full, status.dropped_batch_full),
        (6, 0)
    );
    assert_eq!(status.final_sequence_number, None);

    // The session goes on after its drops.
    assert_eq!(auditor.try_record(record(10)), Ok(10));
    let summary = auditor.close().await.unwrap();
    let received = agent.until_final_status().await;
    let last = received.statuses().last().unwrap();
    assert_eq!(last.final_sequence_number, Some(10));
    assert_eq!(
        last.dropped_channel_full, 0,
        "drops are deltas, reported once"
    );

    assert_eq!(summary.dropped.queue_full, 6);
    assert_eq!(summary.delivered.to_string(), "0-3,10");
    assert_eq!(summary.undelivered, 0);
    assert!(!summary.is_complete());
    // What the control plane can check: the gap is exactly the reported drops.
    let stored: Vec<i32> = [seqs(&logs), received.stored()].concat();
    let gaps = 11 - stored.len() as i64;
    assert_eq!(gaps, status.dropped_channel_full);
}

#[tokio::test]
async fn block_mode_waits_for_room_instead_of_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), Script::warden());
    let mut config = Config::new(&agent.path);
    config.queue_capacity = 1;
    config.buffer_records = 10;
    config.overflow = Overflow::Block { timeout: None };
    let auditor = Auditor::start(config).unwrap();
    for i in 0..500 {
        assert_eq!(auditor.record(record(i)).await, Ok(i as i32));
    }
    let summary = auditor.close().await.unwrap();
    assert!(summary.is_complete(), "{summary}");
    assert_eq!(summary.dropped.total(), 0);
    assert_eq!(agent.until_final_status().await.stored(), all(500));
}

#[tokio::test(start_paused = true)]
async fn block_mode_drops_and_counts_once_its_wait_is_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sock");
    // No agent yet: the client can hold 2 records plus 1 in the queue.
    let mut config = Config::new(&path);
    config.queue_capacity = 1;
    config.batch_max_records = 2;
    config.buffer_records = 2;
    config.reconnect_max = Duration::from_millis(100);
    config.overflow = Overflow::Block {
        timeout: Some(Duration::from_secs(1)),
    };
    let auditor = Auditor::start(config).unwrap();
    let mut timed_out = Vec::new();
    for i in 0..10 {
        match auditor.record(record(i)).await {
            Ok(seq) => assert_eq!(seq, i as i32),
            Err(error @ RecordError::QueueTimeout { .. }) => {
                assert_eq!(error.sequence_number(), Some(i as i32));
                timed_out.push(i as i32);
            }
            Err(error) => panic!("unexpected {error}"),
        }
    }
    assert!(!timed_out.is_empty());
    let mut agent = FakeAgent::start(&path, Script::warden());
    let summary = auditor.close().await.unwrap();
    assert_eq!(summary.dropped.queue_timeout, timed_out.len() as u64);
    assert_eq!(summary.undelivered, 0, "{summary}");
    let received = agent.until_final_status().await;
    let reported: i64 = received.statuses().map(|s| s.dropped_channel_full).sum();
    assert_eq!(reported, timed_out.len() as i64);
    let mut everything = received.stored();
    everything.extend(&timed_out);
    everything.sort();
    assert_eq!(everything, all(10));
}

#[tokio::test]
async fn the_client_waits_for_a_missing_socket_and_redials_when_the_agent_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sock");
    let mut config = Config::new(&path);
    config.batch_max_records = 5;
    config.reconnect_min = Duration::from_millis(5);
    config.reconnect_max = Duration::from_millis(50);
    // The socket does not exist yet.
    let auditor = Auditor::start(config).unwrap();
    for i in 0..5 {
        auditor.try_record(record(i)).unwrap();
    }
    let mut first = FakeAgent::start(&path, Script::warden());
    let first_logs = first.next_logs().await;
    assert_eq!(seqs(&first_logs), all(5));
    first.stop().await;

    for i in 5..10 {
        auditor.try_record(record(i)).unwrap();
    }
    let mut second = FakeAgent::start(&path, Script::warden());
    let summary = auditor.close().await.unwrap();
    assert!(summary.is_complete(), "{summary}");
    assert_eq!(summary.confirmed.iter().collect::<Vec<_>>(), all(10));
    assert!(summary.connections >= 2);
    let mut stored = seqs(&first_logs);
    stored.extend(first.drain().stored());
    stored.extend(second.until_final_status().await.stored());
    stored.sort();
    stored.dedup();
    assert_eq!(stored, all(10));
}

async fn drain_on_close(script: Script, acks: AckPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), script);
    let mut config = Config::new(&agent.path);
    config.acknowledgements = acks;
    // Reference defaults: 10 records or 5 s per batch.
    let auditor = Auditor::start(config).unwrap();
    for i in 0..25 {
        auditor.try_record(record(i)).unwrap();
    }
    // The producer exits right after its last record.
    let summary = auditor.close().await.unwrap();
    assert!(summary.is_complete(), "{summary}");
    assert!(!summary.deadline_expired);
    assert_eq!(summary.final_sequence_number, 24);
    assert_eq!(summary.delivered.iter().collect::<Vec<_>>(), all(25));
    let received = agent.until_final_status().await;
    assert_eq!(received.stored(), all(25));
    let last = received.statuses().last().unwrap();
    assert_eq!(last.final_sequence_number, Some(24));
    match acks {
        AckPolicy::Auto => {
            assert_eq!(summary.acknowledgements, AckMode::Confirmed);
            assert_eq!(summary.final_status, FinalStatus::Confirmed);
        }
        AckPolicy::Off => {
            assert_eq!(summary.acknowledgements, AckMode::Off);
            assert_eq!(summary.final_status, FinalStatus::Written);
            assert!(summary.confirmed.is_empty());
        }
    }
}

#[tokio::test]
async fn close_delivers_every_record_even_right_after_the_last_one() {
    drain_on_close(Script::warden(), AckPolicy::Auto).await;
}

#[tokio::test]
async fn close_drains_in_plain_mode_too() {
    drain_on_close(Script::reference(), AckPolicy::Off).await;
}

#[tokio::test]
async fn dropping_the_last_handle_drains_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), Script::warden());
    let auditor = Auditor::start(Config::new(&agent.path)).unwrap();
    let other = auditor.clone();
    for i in 0..25 {
        let handle = if i % 2 == 0 { &auditor } else { &other };
        handle.try_record(record(i)).unwrap();
    }
    drop(auditor);
    drop(other);
    let received = agent.until_final_status().await;
    assert_eq!(received.stored(), all(25));
    assert_eq!(
        received.statuses().last().unwrap().final_sequence_number,
        Some(24)
    );
}

#[tokio::test]
async fn a_session_without_records_still_reports_how_it_ended() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), Script::warden());
    let auditor = Auditor::start(Config::new(&agent.path)).unwrap();
    let session = auditor.session_id().to_string();
    let summary = auditor.close().await.unwrap();
    assert_eq!(summary.final_sequence_number, -1);
    assert_eq!(summary.final_status, FinalStatus::Confirmed);
    assert!(summary.is_complete());
    let received = agent.until_final_status().await;
    // A status frame has no session id: an empty logs frame naming the
    // session comes first on the connection, so the agent can attribute it.
    let frames: Vec<_> = received.frames().map(|(_, f)| f.frame.clone()).collect();
    let [
        Frame::AckRequest(_),
        Frame::Logs(anchor),
        Frame::Status(status),
    ] = frames.as_slice()
    else {
        panic!("unexpected frames {frames:?}");
    };
    assert!(anchor.logs.is_empty());
    assert_eq!(anchor.session_id, session);
    assert_eq!(status.final_sequence_number, Some(-1));
}

#[test]
fn the_blocking_auditor_records_from_plain_threads_and_drains_on_drop() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sock");
    let mut agent = runtime.block_on(async { FakeAgent::start(&path, Script::warden()) });
    let mut config = Config::new(&path);
    // A queue of one makes most records take the waiting path.
    config.queue_capacity = 1;
    config.overflow = Overflow::Block { timeout: None };
    {
        let auditor = BlockingAuditor::start(config.clone()).unwrap();
        std::thread::scope(|scope| {
            for t in 0..2 {
                let auditor = &auditor;
                scope.spawn(move || {
                    for i in 0..50 {
                        auditor.record(record(t * 50 + i)).unwrap();
                    }
                });
            }
        });
        // Dropped here without close(): it drains before returning.
    }
    let received = runtime.block_on(agent.until_final_status());
    assert_eq!(received.stored(), all(100));

    // close() returns the summary.
    let auditor = BlockingAuditor::start(config).unwrap();
    auditor.record(record(0)).unwrap();
    let summary = auditor.close().unwrap();
    assert!(summary.is_complete(), "{summary}");
    assert_eq!(summary.confirmed.len(), 1);
}

#[test]
fn the_async_auditor_needs_a_runtime_to_start() {
    let result = Auditor::start(Config::new("/nonexistent/a.sock")).map(|_| ());
    assert!(
        matches!(result, Err(warden_client::ConfigError::NoRuntime)),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_live_sent_count_is_the_size_of_the_summary_sent_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sock");
    let mut config = Config::new(&path);
    config.acknowledgements = AckPolicy::Off;
    config.batch_max_records = 4;
    // The socket does not exist yet: nothing can be written.
    let auditor = Auditor::start(config).unwrap();
    for i in 0..10 {
        auditor.try_record(record(i)).unwrap();
    }
    assert_eq!(auditor.sent(), 0);
    let mut agent = FakeAgent::start(&path, Script::reference());
    let handle = auditor.clone();
    let summary = auditor.close().await.unwrap();
    assert!(summary.is_complete(), "{summary}");
    assert_eq!(summary.sent.len(), 10);
    assert_eq!(handle.sent(), 10);
    assert_eq!(agent.until_final_status().await.stored(), all(10));
}
