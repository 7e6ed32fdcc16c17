//! The acknowledgement extension: fallback against a reference agent,
//! confirmations, re-sending what was not confirmed, agent refusals, and
//! the close deadline.

mod support;

use std::time::Duration;

use support::{Event, FakeAgent, Limits, Script, all};
use tokio::time::Instant;
use warden_client::{AckMode, Auditor, Config, FinalStatus, Record};
use warden_proto::codec::{Frame, Tag};
use warden_proto::wire::frame_ack::Outcome;

fn record(i: usize) -> Record {
    Record::allow(
        "GET",
        format!("https://github.com/{i}"),
        "domain=github.com",
    )
}

fn start(path: &std::path::Path, n: usize) -> Auditor {
    let auditor = Auditor::start(Config::new(path)).unwrap();
    for i in 0..n {
        auditor.try_record(record(i)).unwrap();
    }
    auditor
}

#[tokio::test]
async fn a_reference_agent_makes_the_client_carry_on_without_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), Script::reference());
    let summary = start(&agent.path, 25).close().await.unwrap();
    assert_eq!(summary.acknowledgements, AckMode::Unsupported);
    assert!(
        summary
            .to_string()
            .contains("acknowledgements unsupported by the agent"),
        "{summary}"
    );
    // Plain mode: written means delivered; nothing is "confirmed".
    assert!(summary.is_complete(), "{summary}");
    assert!(summary.confirmed.is_empty());
    assert_eq!(summary.final_status, FinalStatus::Written);

    let received = agent.until_final_status().await;
    // The first connection carried the request and was closed on it...
    let first: Vec<_> = received
        .frames()
        .filter(|(c, _)| *c == 1)
        .map(|(_, f)| f.tag)
        .collect();
    assert_eq!(first, vec![Tag::AckRequest]);
    assert!(
        received
            .events
            .iter()
            .any(|e| matches!(e, Event::Closed { conn: 1 }))
    );
    // ...and the client redialed and sent everything without extension tags.
    assert!(
        received
            .frames()
            .filter(|(c, _)| *c > 1)
            .all(|(_, f)| !f.tag.is_extension())
    );
    assert_eq!(received.stored(), all(25));
}

#[tokio::test]
async fn acknowledged_mode_confirms_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), Script::warden());
    let summary = start(&agent.path, 100).close().await.unwrap();
    assert_eq!(summary.acknowledgements, AckMode::Confirmed);
    assert_eq!(summary.confirmed.iter().collect::<Vec<_>>(), all(100));
    assert_eq!(summary.confirmed, summary.delivered);
    assert_eq!(summary.final_status, FinalStatus::Confirmed);
    assert_eq!(summary.connections, 1);
    let received = agent.until_final_status().await;
    let tags: Vec<_> = received.frames().map(|(_, f)| f.tag).collect();
    assert_eq!(tags[0], Tag::AckRequest);
    assert!(tags[1..].iter().all(|t| *t == Tag::Envelope));
    assert_eq!(received.stored(), all(100));
}

#[tokio::test]
async fn unconfirmed_frames_are_sent_again_after_the_agent_drops_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    // The first connection acknowledges 2 frames, reads 2 more, and dies.
    let mut script = Script::warden();
    script.first_connection = Limits {
        ack: Some(2),
        read: Some(4),
    };
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), script);
    let summary = start(&agent.path, 100).close().await.unwrap();
    assert!(summary.is_complete(), "{summary}");
    assert_eq!(summary.acknowledgements, AckMode::Confirmed);
    assert_eq!(summary.confirmed.iter().collect::<Vec<_>>(), all(100));
    assert!(summary.connections >= 2);

    let received = agent.until_final_status().await;
    let counts = received.sequence_counts();
    // Stored exactly once after deduplication...
    assert_eq!(received.stored(), all(100));
    // ...while confirmed frames were never sent again and the two read but
    // unconfirmed frames were.
    assert!((0..20).all(|s| counts[&s] == 1), "{counts:?}");
    assert!((20..40).all(|s| counts[&s] >= 2), "{counts:?}");
    // Every new connection asks for acknowledgements again.
    let second_first_frame = received.frames().find(|(c, _)| *c == 2).map(|(_, f)| f.tag);
    assert_eq!(second_first_frame, Some(Tag::AckRequest));
}

#[tokio::test]
async fn frames_the_agent_drops_are_reported_as_refused_and_not_resent() {
    let dir = tempfile::tempdir().unwrap();
    let mut script = Script::warden();
    script.outcome = Outcome::Dropped;
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), script);
    let summary = start(&agent.path, 30).close().await.unwrap();
    assert_eq!(summary.refused.dropped, 30);
    assert!(summary.delivered.is_empty());
    assert_eq!(summary.undelivered, 0);
    assert!(!summary.is_complete());
    assert!(
        summary.to_string().contains("refused by the agent 30"),
        "{summary}"
    );
    let received = agent.until_final_status().await;
    assert!(received.sequence_counts().values().all(|&n| n == 1));
}

#[tokio::test(start_paused = true)]
async fn close_returns_at_its_deadline_when_nothing_is_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut script = Script::warden();
    let never = Limits {
        ack: Some(0),
        read: None,
    };
    script.first_connection = never;
    script.later_connections = never;
    let agent = FakeAgent::start(&dir.path().join("a.sock"), script);
    let auditor = start(&agent.path, 20);
    let started = Instant::now();
    let summary = auditor.close_within(Duration::from_secs(2)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(summary.deadline_expired);
    assert_eq!(summary.acknowledgements, AckMode::Confirmed);
    assert_eq!(summary.sent.iter().collect::<Vec<_>>(), all(20));
    assert!(summary.confirmed.is_empty());
    assert_eq!(summary.undelivered, 20);
    assert_eq!(
        summary.undelivered_sequences.iter().collect::<Vec<_>>(),
        all(20)
    );
    assert_eq!(summary.final_status, FinalStatus::NotSent);
    assert!(!summary.is_complete());
}

#[tokio::test]
async fn an_agent_that_breaks_the_protocol_is_redialed() {
    // Logs frames from the agent make no sense to the client: it drops the
    // connection and carries on (here with the same agent, which then acks).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let auditor = start(&path, 10);
    let (stream, _) = listener.accept().await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let mut buf = bytes::BytesMut::new();
    warden_proto::codec::encode_frame(Tag::Envelope, &Frame::EmptyEnvelope, &mut buf).unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut write, &buf)
        .await
        .unwrap();
    // The client closes this connection; read until EOF.
    let mut sink = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut read, &mut sink)
        .await
        .unwrap();
    assert_eq!(sink.first(), Some(&Tag::AckRequest.byte()));
    drop(listener);
    std::fs::remove_file(&path).unwrap();
    let mut agent = FakeAgent::start(&path, Script::warden());
    let summary = auditor.close().await.unwrap();
    assert!(summary.is_complete(), "{summary}");
    assert_eq!(summary.acknowledgements, AckMode::Confirmed);
    assert_eq!(agent.until_final_status().await.stored(), all(10));
}
