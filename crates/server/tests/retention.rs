//! `--retention` end to end: a server deletes the records its agents
//! received longer ago than the period, keeps the rest, and counts what it
//! did on `/metrics`.

mod support;

use std::time::{Duration, Instant};

use support::*;
use warden_proto::wire;
use warden_server::LineFormat;
use warden_server::retention::Retention;
use warden_store::{RecordQuery, SqliteStore, Store};

/// A wire timestamp `ago` before now.
fn before_now(ago: Duration) -> wire::Timestamp {
    let t = jiff::Timestamp::now() - ago;
    wire::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_records_are_deleted_and_counted_young_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let day = Duration::from_secs(24 * 3600);
    let mut config = config(dir.path(), LineFormat::Text);
    // Sweeping often, so the test need not wait for the default minute.
    config.retention = Some(Retention {
        every: Duration::from_millis(200),
        ..Retention::new(30 * day)
    });
    let server = Server::start_with(config, dir.path(), Capture::new()).await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;

    // Spooled for 40 days (an agent that was offline), then delivered: old
    // by its receive time, whatever its event times say.
    let mut old = batch(Some(SESSION), logs(0..30));
    old.received_at = Some(before_now(40 * day));
    let mut young = batch(Some(SESSION), logs(30..35));
    young.received_at = Some(before_now(day));
    agent.report(vec![old, young]).await.unwrap();
    // Every line is printed before retention could drop one.
    server.lines.wait_for(35).await;

    // The sweep at start may have run before the records arrived: a later
    // one takes them. Poll /metrics with a deadline.
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

    let store = SqliteStore::open(&dir.path().join("warden.db"))
        .await
        .unwrap();
    let kept = store.records(RecordQuery::default()).await.unwrap();
    assert_eq!(
        kept.iter().map(|r| r.sequence_number).collect::<Vec<_>>(),
        (30..35).collect::<Vec<_>>()
    );
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
