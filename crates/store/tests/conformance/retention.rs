//! Retention: what a purge removes, in bounded passes, and what it keeps.

use jiff::{SignedDuration, Timestamp};
use warden_proto::domain::{AuditRecord, ClientStatus, EventTime, IngestBatch};
use warden_store::{PurgeOutcome, RecordQuery, SessionSummary, Store};

use std::sync::Arc;

use warden_store::{IngestRequest, Workspace};

use super::{StoreFactory, all_records, batch, create, received, record, records};

/// The batches delivered in one call the control plane took at the first
/// batch's receive time (retention goes by the control plane's clock).
fn request(workspace: &Workspace, batches: Vec<IngestBatch>) -> Arc<IngestRequest> {
    Arc::new(IngestRequest {
        agent_id: workspace.agent.id,
        at: batches.first().map_or_else(received, |b| b.received_at),
        batches,
    })
}

/// A batch the agent received (and the control plane took) at `at`.
fn batch_at(session: &str, records: Vec<AuditRecord>, at: Timestamp) -> IngestBatch {
    IngestBatch {
        received_at: at,
        ..batch(Some(session), records)
    }
}

fn with_event_time(records: Vec<AuditRecord>, t: Timestamp) -> Vec<AuditRecord> {
    records
        .into_iter()
        .map(|r| AuditRecord {
            event_time: EventTime::Known(t),
            ..r
        })
        .collect()
}

fn hour() -> SignedDuration {
    SignedDuration::from_hours(1)
}

/// Runs passes until one is empty; returns the sum and checks each pass
/// against `max_rows`.
async fn purge_all(store: &dyn Store, cutoff: Timestamp, max_rows: u32) -> (PurgeOutcome, u32) {
    let mut total = PurgeOutcome::default();
    let mut passes = 0;
    loop {
        let pass = store.purge_records_before(cutoff, max_rows).await.unwrap();
        assert!(pass.records <= u64::from(max_rows), "{pass:?}");
        assert!(pass.batches <= u64::from(max_rows), "{pass:?}");
        if pass.is_empty() {
            return (total, passes);
        }
        passes += 1;
        assert!(passes < 1000, "purge does not converge");
        total.records += pass.records;
        total.unprinted_lines += pass.unprinted_lines;
        total.batches += pass.batches;
    }
}

async fn mark_all_printed(store: &dyn Store) {
    let ids = store
        .unprinted_records(None, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    store.mark_printed(ids).await.unwrap();
}

pub async fn purge_removes_what_was_received_before_the_cutoff(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let t0 = received();
    // Received long ago, but claiming an event time in the future.
    let old = batch_at(
        "old",
        with_event_time(records(0..5), Timestamp::new(1_900_000_000, 0).unwrap()),
        t0,
    );
    // Received recently, but claiming an event time in 1970.
    let young = batch_at(
        "young",
        with_event_time(records(0..3), Timestamp::UNIX_EPOCH),
        t0 + hour(),
    );
    store.ingest(request(&dev, vec![old])).await.unwrap();
    store.ingest(request(&dev, vec![young])).await.unwrap();

    let cutoff = t0 + SignedDuration::from_mins(1);
    let first = store.purge_records_before(cutoff, 1000).await.unwrap();
    assert_eq!(
        first,
        PurgeOutcome {
            records: 5,
            // Never printed: dropped with the records, and counted.
            unprinted_lines: 5,
            batches: 1,
        }
    );
    assert!(
        store
            .purge_records_before(cutoff, 1000)
            .await
            .unwrap()
            .is_empty()
    );
    let kept = all_records(&*store, &dev).await;
    assert_eq!(kept.len(), 3);
    assert!(
        kept.iter()
            .all(|r| r.session_id.as_deref() == Some("young"))
    );
    // The kept records' lines are still due; the purged ones' are gone.
    let due = store.unprinted_records(None, 100).await.unwrap();
    assert_eq!(due, kept);
    // Nothing before an earlier cutoff, and a zero bound does nothing.
    assert!(
        store
            .purge_records_before(t0 + hour(), 0)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn purge_works_in_bounded_passes(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let t0 = received();
    let old = (0..3)
        .map(|i| batch_at(&format!("s{i}"), records(0..10), t0))
        .collect();
    store.ingest(request(&dev, old)).await.unwrap();
    store
        .ingest(request(
            &dev,
            vec![batch_at("young", records(0..1), t0 + hour())],
        ))
        .await
        .unwrap();
    mark_all_printed(&*store).await;

    let (total, passes) = purge_all(&*store, t0 + SignedDuration::from_mins(1), 4).await;
    assert_eq!(
        total,
        PurgeOutcome {
            records: 30,
            unprinted_lines: 0,
            batches: 3,
        }
    );
    assert!(passes >= 8, "{passes} passes of at most 4 records");
    assert_eq!(all_records(&*store, &dev).await.len(), 1);
}

/// The summary minus what says it was purged.
fn without_purged(summary: &SessionSummary) -> SessionSummary {
    SessionSummary {
        purged: 0,
        ..summary.clone()
    }
}

pub async fn purge_keeps_session_summaries_and_losses(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let t0 = received();
    let session = "kept";
    let mut first = records(0..10);
    first.retain(|r| r.sequence_number != 3);
    let mut a = batch_at(session, first, t0);
    a.client_status.push(ClientStatus {
        session_id: Some(session.into()),
        dropped_channel_full: 1,
        dropped_batch_full: 0,
        final_sequence_number: Some(12),
        ..Default::default()
    });
    let b = batch_at(session, vec![record(5, "https://evil.example/")], t0);
    let c = batch_at(session, records(10..12), t0 + hour());
    let gone = batch_at("gone", records(0..3), t0);
    store.ingest(request(&dev, vec![a, b, gone])).await.unwrap();
    store.ingest(request(&dev, vec![c])).await.unwrap();

    let before = store
        .session_summary(dev.id, session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            before.records,
            before.conflicts,
            before.missing(),
            before.unexplained()
        ),
        (12, 1, 2, 1)
    );
    let gone_before = store
        .session_summary(dev.id, "gone")
        .await
        .unwrap()
        .unwrap();
    let losses_before = store.workspace_losses(dev.id).await.unwrap();

    let (total, _) = purge_all(&*store, t0 + SignedDuration::from_mins(1), 5).await;
    assert_eq!(total.records, 13);

    let after = store
        .session_summary(dev.id, session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.purged, 10, "9 records and 1 conflict");
    assert_eq!(without_purged(&after), before);
    assert_eq!((after.missing(), after.unexplained()), (2, 1));
    // A session purged entirely is still known.
    let gone_after = store
        .session_summary(dev.id, "gone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone_after.purged, 3);
    assert_eq!(without_purged(&gone_after), gone_before);
    assert_eq!(store.workspace_losses(dev.id).await.unwrap(), losses_before);
    assert_eq!(all_records(&*store, &dev).await.len(), 2);
}

pub async fn purge_never_hands_an_id_out_again(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let t0 = received();
    store
        .ingest(request(
            &dev,
            vec![batch_at("young", records(0..2), t0 + hour())],
        ))
        .await
        .unwrap();
    // An old batch delivered late (say from a long-offline agent's spool):
    // its records have the highest ids.
    let late = store
        .ingest(request(&dev, vec![batch_at("late", records(0..4), t0)]))
        .await
        .unwrap();
    let highest = *late.record_ids.iter().max().unwrap();
    let (total, _) = purge_all(&*store, t0 + SignedDuration::from_mins(1), 100).await;
    assert!(total.records >= 3, "{total:?}");

    let next = store
        .ingest(request(
            &dev,
            vec![batch_at("next", records(0..3), t0 + hour())],
        ))
        .await
        .unwrap();
    assert!(
        next.record_ids.iter().all(|id| *id > highest),
        "{:?} reuses ids up to {highest}",
        next.record_ids
    );
    let followed = store
        .records(RecordQuery {
            after_id: Some(highest),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        followed.iter().map(|r| r.id).collect::<Vec<_>>(),
        next.record_ids
    );
}
