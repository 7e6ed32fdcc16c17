//! `--retention` end to end: a server deletes the records it received
//! (by its own clock) longer ago than the period, keeps the rest whatever
//! the agents' clocks say, and counts what it did on `/metrics`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use support::*;
use warden_proto::domain::{AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Peer};
use warden_proto::wire;
use warden_server::LineFormat;
use warden_server::retention::Retention;
use warden_store::{IngestRequest, RecordQuery, SqliteStore, Store};

/// A wire timestamp `ago` before now.
fn before_now(ago: Duration) -> wire::Timestamp {
    let t = jiff::Timestamp::now() - ago;
    wire::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

/// A batch of domain records `seqs` of `session`, as an agent delivers it.
fn stored_batch(session: &str, seqs: std::ops::Range<i32>, agent_time: Timestamp) -> IngestBatch {
    IngestBatch {
        batch_id: uuid::Uuid::now_v7(),
        received_at: agent_time,
        peer: Peer::default(),
        logs: Some(ClientLogs {
            session_id: Some(session.into()),
            confined_process_name: "claude".into(),
            records: seqs
                .map(|seq| AuditRecord {
                    decision: Decision::Deny,
                    event_time: EventTime::Known(agent_time),
                    method: "GET".into(),
                    url: format!("https://example.com/{seq}"),
                    matched_rule: String::new(),
                    sequence_number: seq,
                })
                .collect(),
            ..Default::default()
        }),
        client_status: Vec::new(),
        agent_drops: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_records_are_deleted_and_counted_young_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let day = Duration::from_secs(24 * 3600);
    let now = Timestamp::now();

    // First life: an agent whose clock claims it read its batch 400 days
    // ago. Retention goes by when the control plane took the call, so this
    // batch is young whatever the agent says.
    let first = Server::start_in(dir.path(), LineFormat::Text).await;
    let ws = first.workspace("dev").await;
    let mut agent = first.agent(&ws.agent_token).await;
    let mut claimed = batch(Some("claimed"), logs(0..4));
    claimed.received_at = Some(before_now(400 * day));
    agent.report(vec![claimed]).await.unwrap();
    first.lines.wait_for(4).await;
    drop(agent);
    first.stop().await.unwrap();

    // Records the control plane took 40 days and one day ago (a test cannot
    // wait 40 days: they are committed through the store with those times).
    let database = dir.path().join("warden.db");
    let store = SqliteStore::open(&database).await.unwrap();
    let agent_id = store.workspace("dev").await.unwrap().unwrap().agent.id;
    for (at, seqs) in [(now - 40 * day, 0..30), (now - day, 30..35)] {
        store
            .ingest(Arc::new(IngestRequest {
                agent_id,
                at,
                batches: vec![stored_batch(SESSION, seqs, at)],
            }))
            .await
            .unwrap();
    }
    let due = store.unprinted_records(None, 1000).await.unwrap();
    store
        .mark_printed(due.iter().map(|r| r.id).collect())
        .await
        .unwrap();
    store.close().await.unwrap();

    // Second life, sweeping often so the test need not wait a minute.
    let mut config = config(dir.path(), LineFormat::Text);
    config.retention = Some(Retention {
        every: Duration::from_millis(200),
        ..Retention::new(30 * day)
    });
    let server = Server::start_with(config, dir.path(), Capture::new()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.get("/metrics").await;
        assert_eq!(status, 200);
        if metric(&body, "warden_retention_purged_records_total") == Some(30.0) {
            assert_eq!(
                metric(&body, "warden_retention_purged_batches_total"),
                Some(1.0)
            );
            assert_eq!(
                metric(&body, "warden_retention_dropped_lines_total"),
                Some(0.0)
            );
            break;
        }
        assert!(Instant::now() < deadline, "retention did not run: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await.unwrap();

    let store = SqliteStore::open(&database).await.unwrap();
    let kept = store.records(RecordQuery::default()).await.unwrap();
    let of = |session: &str| {
        kept.iter()
            .filter(|r| r.session_id.as_deref() == Some(session))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of(SESSION)
            .iter()
            .map(|r| r.sequence_number)
            .collect::<Vec<_>>(),
        (30..35).collect::<Vec<_>>()
    );
    // The agent's claim is kept as evidence, flagged, and did not count.
    let claimed = of("claimed");
    assert_eq!(claimed.len(), 4);
    assert!(claimed.iter().all(|r| r.agent_time_suspect));
    assert!(claimed.iter().all(|r| r.received_at > now - day));
    // The session still accounts for the purged records: no gap appears.
    let summary = store
        .session_summary(ws.workspace_id, SESSION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (summary.records, summary.purged, summary.missing()),
        (35, 30, 0)
    );
    store.close().await.unwrap();
}
