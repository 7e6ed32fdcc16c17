//! Reading records back: every query filter, text kept exactly as sent, and
//! a follow cursor that never misses a record.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use jiff::{SignedDuration, Timestamp};
use warden_proto::domain::{AgentDrop, AuditRecord, Decision, EventTime};
use warden_store::{Order, RecordQuery, Store, StoredRecord};

use super::{StoreFactory, all_records, batch, create, create_owned, record, records, request};

fn base() -> Timestamp {
    Timestamp::new(1_765_000_000, 0).unwrap()
}

/// A record at `base() + seq` seconds.
fn timed(seq: i32, url: &str) -> AuditRecord {
    AuditRecord {
        event_time: EventTime::Known(base() + SignedDuration::from_secs(i64::from(seq))),
        ..record(seq, url)
    }
}

async fn query(store: &dyn Store, q: RecordQuery) -> Vec<StoredRecord> {
    store.records(q).await.unwrap()
}

fn urls(records: &[StoredRecord]) -> Vec<&str> {
    records.iter().map(|r| r.url.as_str()).collect()
}

pub async fn record_queries_filter_by_every_field(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create_owned(&*store, "dev", "alice").await;
    let ops = create_owned(&*store, "ops", "bob").await;
    // dev: 0..6 at base + seq seconds (even allowed, odd denied), one without
    // a time (its receive time counts), one with wildcard characters.
    let mut sent: Vec<AuditRecord> = (0..6)
        .map(|s| timed(s, &format!("https://example.com/{s}")))
        .collect();
    sent.push(AuditRecord {
        event_time: EventTime::Missing,
        ..record(6, "https://example.com/untimed")
    });
    sent.push(timed(8, "https://example.com/100%_off"));
    store
        .ingest(request(&dev, vec![batch(Some("a"), sent)]))
        .await
        .unwrap();
    store
        .ingest(request(
            &ops,
            vec![batch(Some("b"), vec![timed(1, "https://other.example/x")])],
        ))
        .await
        .unwrap();
    let all = query(&*store, RecordQuery::default()).await;
    assert_eq!(all.len(), 9);

    let by_owner = query(
        &*store,
        RecordQuery {
            owner: Some("bob".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(urls(&by_owner), ["https://other.example/x"]);
    assert!(
        query(
            &*store,
            RecordQuery {
                owner: Some("carol".into()),
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );

    let denied = query(
        &*store,
        RecordQuery {
            workspace_id: Some(dev.id),
            decision: Some(Decision::Deny),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        denied.iter().map(|r| r.sequence_number).collect::<Vec<_>>(),
        [1, 3, 5]
    );
    let allowed = query(
        &*store,
        RecordQuery {
            decision: Some(Decision::Allow),
            ..Default::default()
        },
    )
    .await;
    assert!(allowed.iter().all(|r| r.decision == Decision::Allow));
    assert_eq!(allowed.len(), 5);

    // Event times from base+2 s (inclusive) to base+5 s (exclusive).
    let window = query(
        &*store,
        RecordQuery {
            workspace_id: Some(dev.id),
            since: Some(base() + SignedDuration::from_secs(2)),
            until: Some(base() + SignedDuration::from_secs(5)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        window.iter().map(|r| r.sequence_number).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    // Nanosecond precision at the edges.
    let edge = base() + SignedDuration::from_secs(2);
    let just_after = query(
        &*store,
        RecordQuery {
            workspace_id: Some(dev.id),
            since: Some(edge + SignedDuration::from_nanos(1)),
            until: Some(base() + SignedDuration::from_secs(4)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        just_after
            .iter()
            .map(|r| r.sequence_number)
            .collect::<Vec<_>>(),
        [3]
    );
    // The record without a time is found by the time the control plane
    // received it (not the agent's).
    let untimed = query(
        &*store,
        RecordQuery {
            since: Some(super::at(10)),
            until: Some(super::at(10) + SignedDuration::from_nanos(1)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(urls(&untimed), ["https://example.com/untimed"]);

    // Substrings, case-sensitive, with no wildcards.
    let other = query(
        &*store,
        RecordQuery {
            url_contains: Some("other.example".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(urls(&other), ["https://other.example/x"]);
    for (needle, hits) in [("%_", 1), ("EXAMPLE", 0), ("_", 1), ("%", 1), ("/1", 2)] {
        let found = query(
            &*store,
            RecordQuery {
                url_contains: Some(needle.into()),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(found.len(), hits, "{needle:?}: {:?}", urls(&found));
    }

    // Session, and filters combined.
    let session_a = query(
        &*store,
        RecordQuery {
            session_id: Some("a".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(session_a.len(), 8);
    let combined = query(
        &*store,
        RecordQuery {
            workspace_id: Some(dev.id),
            owner: Some("alice".into()),
            session_id: Some("a".into()),
            decision: Some(Decision::Allow),
            since: Some(base() + SignedDuration::from_secs(1)),
            url_contains: Some("example.com/".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        combined
            .iter()
            .map(|r| r.sequence_number)
            .collect::<Vec<_>>(),
        [2, 4, 6, 8]
    );
    assert!(
        query(
            &*store,
            RecordQuery {
                workspace_id: Some(dev.id),
                owner: Some("bob".into()),
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );

    // Newest first, in pages.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = query(
            &*store,
            RecordQuery {
                order: Order::NewestFirst,
                before_id: before,
                limit: 4,
                ..Default::default()
            },
        )
        .await;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        pages.extend(page);
    }
    let mut newest_first = all.clone();
    newest_first.reverse();
    assert_eq!(pages, newest_first);
}

pub async fn text_is_kept_as_sent(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let session = "s\0\u{FFFF}0é";
    let odd = AuditRecord {
        method: "GE\u{FFFF}T".into(),
        url: "https://example.com/\0nul/\u{FFFF}0/😀".into(),
        matched_rule: "rule\0".into(),
        ..record(0, "")
    };
    let mut b = batch(Some(session), vec![odd.clone()]);
    b.peer.comm = "c\0".into();
    b.peer.exe = "/bin/\u{FFFF}\u{FFFF}".into();
    b.logs.as_mut().unwrap().confined_process_name = "pro\0c".into();
    b.agent_drops.push(AgentDrop {
        reason: "spool\0full".into(),
        records: 1,
        frames: 0,
        ..Default::default()
    });
    store.ingest(request(&dev, vec![b.clone()])).await.unwrap();

    let stored = all_records(&*store, &dev).await;
    assert_eq!(stored.len(), 1);
    let r = &stored[0];
    assert_eq!(r.url, odd.url);
    assert_eq!(r.method, odd.method);
    assert_eq!(r.matched_rule, odd.matched_rule);
    assert_eq!(r.session_id.as_deref(), Some(session));
    assert_eq!(r.process, "pro\0c");
    assert_eq!(r.peer, b.peer);
    let losses = store.workspace_losses(dev.id).await.unwrap();
    assert_eq!(losses[0].reason, "spool\0full");

    // The same record re-sent in another batch is a duplicate, not a
    // conflict: what is read back compares equal to what was sent.
    let mut again = batch(Some(session), vec![odd]);
    again.logs.as_mut().unwrap().confined_process_name = "pro\0c".into();
    let outcome = store.ingest(request(&dev, vec![again])).await.unwrap();
    assert_eq!(
        (
            outcome.batches[0].duplicates,
            outcome.batches[0].conflicts()
        ),
        (1, 0)
    );
    let summary = store
        .session_summary(dev.id, session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.records, 1);
    let found = store
        .records(RecordQuery {
            session_id: Some(session.into()),
            url_contains: Some("\0nul/\u{FFFF}0".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

/// Concurrent ingests while a reader follows with `id > cursor`: the reader
/// must end up with every record, in id order. With ids that do not follow
/// commit order, a commit with low ids landing after one with high ids would
/// be skipped for good.
pub async fn a_follow_cursor_never_misses_a_record(factory: &impl StoreFactory) {
    const WRITERS: usize = 6;
    const CALLS: usize = 15;
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let finished = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&store);
        let finished = Arc::clone(&finished);
        let dev = dev.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for c in 0..CALLS {
                let session = format!("w{w}c{c}");
                let outcome = store
                    .ingest(request(&dev, vec![batch(Some(&session), records(0..20))]))
                    .await
                    .unwrap();
                ids.extend(outcome.record_ids);
            }
            finished.fetch_add(1, AtomicOrdering::SeqCst);
            ids
        }));
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        // Read the flag before the page: a page read after every writer
        // finished sees every commit.
        let all_done = finished.load(AtomicOrdering::SeqCst) == WRITERS;
        let page = store
            .records(RecordQuery {
                after_id: cursor,
                limit: 500,
                ..Default::default()
            })
            .await
            .unwrap();
        if let Some(last) = page.last() {
            cursor = Some(last.id);
        } else if all_done {
            break;
        } else {
            tokio::task::yield_now().await;
        }
        seen.extend(page.into_iter().map(|r| r.id));
    }
    let mut committed = BTreeSet::new();
    for writer in writers {
        committed.extend(writer.await.unwrap());
    }
    assert_eq!(committed.len(), WRITERS * CALLS * 20);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ids out of order");
    let seen: BTreeSet<i64> = seen.into_iter().collect();
    let missed: Vec<_> = committed.difference(&seen).collect();
    assert!(
        missed.is_empty(),
        "the follower missed {} records",
        missed.len()
    );
}

/// A session filter finds a session's records wherever they lie: one that
/// started long ago, went quiet while others wrote, and came back; paged
/// from either end with cursors; in its workspace only; and nothing for a
/// session that never sent.
pub async fn a_session_filter_pages_through_an_old_session_among_later_ones(
    factory: &impl StoreFactory,
) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let ops = create(&*store, "ops").await;
    let send = |workspace, session: &str, seqs: std::ops::Range<i32>| {
        let urls: Vec<AuditRecord> = seqs
            .map(|s| record(s, &format!("https://{session}.example/{s}")))
            .collect();
        store.ingest(request(workspace, vec![batch(Some(session), urls)]))
    };
    // Its first and last records alone in their blocks, so a span cut by
    // one at either end would lose them.
    send(&dev, "old", 0..1).await.unwrap();
    for i in 0..20 {
        send(&dev, &format!("later-{i}"), 0..5).await.unwrap();
        send(&ops, "old", i * 2..i * 2 + 2).await.unwrap();
        if i == 10 {
            send(&dev, "old", 1..6).await.unwrap();
        }
    }
    send(&dev, "old", 6..7).await.unwrap();
    let want: Vec<String> = (0..7).map(|s| format!("https://old.example/{s}")).collect();

    for order in [Order::OldestFirst, Order::NewestFirst] {
        let mut pages = Vec::new();
        let (mut after_id, mut before_id) = (None, None);
        loop {
            let page = query(
                &*store,
                RecordQuery {
                    workspace_id: Some(dev.id),
                    session_id: Some("old".into()),
                    order,
                    after_id,
                    before_id,
                    limit: 3,
                    ..Default::default()
                },
            )
            .await;
            let Some(last) = page.last() else { break };
            match order {
                Order::OldestFirst => after_id = Some(last.id),
                Order::NewestFirst => before_id = Some(last.id),
            }
            pages.extend(page);
        }
        let mut got: Vec<String> = pages.iter().map(|r| r.url.clone()).collect();
        if order == Order::NewestFirst {
            got.reverse();
        }
        assert_eq!(got, want, "{order:?}");
        assert!(pages.iter().all(|r| r.workspace_id == dev.id));
    }
    let none = RecordQuery {
        workspace_id: Some(dev.id),
        session_id: Some("never".into()),
        ..Default::default()
    };
    assert!(query(&*store, none).await.is_empty());
    // Without a workspace: both workspaces' sessions of that name.
    let everywhere = RecordQuery {
        session_id: Some("old".into()),
        limit: 1000,
        ..Default::default()
    };
    assert_eq!(query(&*store, everywhere).await.len(), 7 + 40);
}
