//! What the query API reads beyond plain record filters: the agent, method
//! and conflict filters, a session's records in sequence order with its
//! gaps, a workspace's sessions and activity, and the follow helpers (the
//! last record id, local commit notifications).

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;
use warden_proto::domain::{AuditRecord, ClientStatus, Decision, EventTime};
use warden_store::{
    ActivityQuery, HostCount, LossSource, NewWorkspace, RecordQuery, SequencePosition,
    SequenceRange, SessionRecordQuery, Store, StoredRecord, Workspace,
};

use super::{StoreFactory, at, batch, create, hash, record, records, request};

async fn create_with_agent(store: &dyn Store, name: &str, agent: &str) -> Workspace {
    store
        .create_workspace(
            NewWorkspace {
                id: Uuid::now_v7(),
                name: name.into(),
                owner: "carol".into(),
                startup_script: String::new(),
                agent_id: Uuid::new_v4(),
                agent_name: agent.into(),
                token_hash: hash(2),
            },
            at(0),
        )
        .await
        .unwrap()
}

/// A session's records by sequence number, read a page of three at a time.
pub(crate) async fn session_in_pages(
    store: &dyn Store,
    workspace: &Workspace,
    session: &str,
) -> Vec<StoredRecord> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .session_records(SessionRecordQuery {
                workspace_id: workspace.id,
                session_id: session.into(),
                after,
                limit: 3,
            })
            .await
            .unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else {
            return all;
        };
        after = Some(SequencePosition::of(last));
        all.extend(page);
    }
}

fn seqs(records: &[StoredRecord]) -> Vec<i32> {
    records.iter().map(|r| r.sequence_number).collect()
}

pub async fn record_queries_filter_by_agent_method_and_conflict(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let ci = create_with_agent(&*store, "ci", "runner").await;
    let mut sent = records(0..4);
    sent[1].method = "POST".into();
    sent[3].method = "post".into();
    store
        .ingest(request(&dev, vec![batch(Some("a"), sent)]))
        .await
        .unwrap();
    // Sequence number 2 again with other content: a conflict.
    store
        .ingest(request(
            &dev,
            vec![batch(
                Some("a"),
                vec![record(2, "https://evil.example/forged")],
            )],
        ))
        .await
        .unwrap();
    store
        .ingest(request(&ci, vec![batch(Some("b"), records(0..2))]))
        .await
        .unwrap();

    let by = |q: RecordQuery| {
        let store = &store;
        async move { store.records(q).await.unwrap() }
    };
    let runner = by(RecordQuery {
        agent_name: Some("runner".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(runner.len(), 2);
    assert!(runner.iter().all(|r| r.workspace_id == ci.id));
    assert!(
        by(RecordQuery {
            agent_name: Some("runner".into()),
            workspace_id: Some(dev.id),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert!(
        by(RecordQuery {
            agent_name: Some("nobody".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );

    // Methods match exactly, case included.
    let posts = by(RecordQuery {
        method: Some("POST".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(seqs(&posts), [1]);
    let gets = by(RecordQuery {
        method: Some("GET".into()),
        workspace_id: Some(dev.id),
        ..Default::default()
    })
    .await;
    assert_eq!(seqs(&gets), [0, 2, 2]);

    let conflicts = by(RecordQuery {
        conflict: Some(true),
        ..Default::default()
    })
    .await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].url, "https://evil.example/forged");
    assert!(conflicts[0].conflict);
    let clean = by(RecordQuery {
        conflict: Some(false),
        workspace_id: Some(dev.id),
        ..Default::default()
    })
    .await;
    assert_eq!(seqs(&clean), [0, 1, 2, 3]);

    // The owner of several workspaces: records of all of them, in id order.
    let alice = create(&*store, "dev2").await;
    store
        .ingest(request(&alice, vec![batch(Some("c"), records(0..1))]))
        .await
        .unwrap();
    let owned = by(RecordQuery {
        owner: Some("alice".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(owned.len(), 6);
    assert!(owned.windows(2).all(|w| w[0].id < w[1].id));
}

pub async fn session_records_come_in_sequence_order_in_pages(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    // Sent out of order, in three batches, with a conflict on 3 and a
    // record of another session in between.
    store
        .ingest(request(&dev, vec![batch(Some("s"), records(5..9))]))
        .await
        .unwrap();
    store
        .ingest(request(&dev, vec![batch(Some("other"), records(0..3))]))
        .await
        .unwrap();
    store
        .ingest(request(&dev, vec![batch(Some("s"), records(0..5))]))
        .await
        .unwrap();
    store
        .ingest(request(
            &dev,
            vec![batch(Some("s"), vec![record(3, "https://evil.example/3")])],
        ))
        .await
        .unwrap();

    let pages = session_in_pages(&*store, &dev, "s").await;
    assert_eq!(seqs(&pages), [0, 1, 2, 3, 3, 4, 5, 6, 7, 8]);
    // The first record of a number comes first, its conflict after it.
    assert!(!pages[3].conflict && pages[4].conflict);
    assert!(
        pages
            .iter()
            .all(|r| r.session_id.as_deref() == Some("s") && r.workspace_id == dev.id)
    );
    // Another workspace has no such session.
    let ops = create(&*store, "ops").await;
    assert!(
        store
            .session_records(SessionRecordQuery {
                workspace_id: ops.id,
                session_id: "s".into(),
                after: None,
                limit: 100,
            })
            .await
            .unwrap()
            .is_empty()
    );
}

/// A session's stored sequence numbers across deliveries: going on where it
/// stopped, after a gap, before the first range, inside a gap, joining two
/// ranges, joining three (with numbers already stored), and a duplicate.
pub async fn session_ranges_grow_merge_and_split_across_deliveries(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let range = |first, last| SequenceRange { first, last };
    let deliveries: [(std::ops::Range<i32>, &[SequenceRange]); 7] = [
        (10..20, &[]),
        // Goes on where it stopped.
        (20..25, &[]),
        // After a gap.
        (30..35, &[range(25, 29)]),
        // Before the first range.
        (2..5, &[range(5, 9), range(25, 29)]),
        // Inside a gap, touching neither side.
        (26..28, &[range(5, 9), range(25, 25), range(28, 29)]),
        // Joins two ranges.
        (5..10, &[range(25, 25), range(28, 29)]),
        // Joins three, 26 and 27 already stored.
        (25..30, &[]),
    ];
    for (numbers, gaps) in deliveries {
        store
            .ingest(request(
                &dev,
                vec![batch(Some("s"), records(numbers.clone()))],
            ))
            .await
            .unwrap();
        assert_eq!(
            store.session_gaps(dev.id, "s", 100).await.unwrap(),
            gaps,
            "after {numbers:?}"
        );
    }
    // The same records again change nothing.
    store
        .ingest(request(&dev, vec![batch(Some("s"), records(20..25))]))
        .await
        .unwrap();
    assert_eq!(store.session_gaps(dev.id, "s", 100).await.unwrap(), []);
    let summary = store.session_summary(dev.id, "s").await.unwrap().unwrap();
    assert_eq!(summary.missing(), 2, "0 and 1 before the first stored");
}

pub async fn session_gaps_are_reported_as_ranges(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    // Stored: 2, 3, 4, 7, 10, 11; the client says it assigned up to 14 and
    // dropped 2.
    let mut sent = records(2..12);
    sent.retain(|r| ![5, 6, 8, 9].contains(&r.sequence_number));
    let mut b = batch(Some("s"), sent);
    b.client_status.push(ClientStatus {
        session_id: Some("s".into()),
        dropped_channel_full: 2,
        dropped_batch_full: 0,
        final_sequence_number: Some(14),
        ..Default::default()
    });
    store.ingest(request(&dev, vec![b])).await.unwrap();
    // A conflict on a gap's edge changes nothing.
    store
        .ingest(request(
            &dev,
            vec![batch(Some("s"), vec![record(7, "https://evil.example/")])],
        ))
        .await
        .unwrap();

    let interior = store.session_gaps(dev.id, "s", 100).await.unwrap();
    let range = |first, last| SequenceRange { first, last };
    assert_eq!(interior, [range(5, 6), range(8, 9)]);
    assert_eq!(
        store.session_gaps(dev.id, "s", 1).await.unwrap(),
        [range(5, 6)]
    );
    let summary = store.session_summary(dev.id, "s").await.unwrap().unwrap();
    let gaps = summary.gaps(&interior);
    assert_eq!(gaps, [range(0, 1), range(5, 6), range(8, 9), range(12, 14)]);
    assert_eq!(
        gaps.iter().map(SequenceRange::count).sum::<u64>(),
        summary.missing()
    );
    assert_eq!(summary.unexplained(), 9 - 2);
    assert!(
        store
            .session_gaps(dev.id, "unknown", 100)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn sessions_are_listed_most_recent_first(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let ops = create(&*store, "ops").await;
    store
        .ingest(request(&dev, vec![batch(Some("first"), records(0..4))]))
        .await
        .unwrap();
    let mut sent = records(0..6);
    sent.remove(2);
    store
        .ingest(request(&dev, vec![batch(Some("second"), sent)]))
        .await
        .unwrap();
    // A session the client only reported drops for.
    let mut status_only = batch(None, Vec::new());
    status_only.logs = None;
    status_only.client_status.push(ClientStatus {
        session_id: Some("dropped".into()),
        dropped_channel_full: 0,
        dropped_batch_full: 5,
        final_sequence_number: Some(4),
        ..Default::default()
    });
    store
        .ingest(request(&dev, vec![status_only]))
        .await
        .unwrap();
    store
        .ingest(request(&ops, vec![batch(Some("elsewhere"), records(0..2))]))
        .await
        .unwrap();

    let sessions = store.sessions(dev.id).await.unwrap();
    let names: Vec<&str> = sessions
        .iter()
        .map(|s| s.summary.session_id.as_str())
        .collect();
    assert_eq!(names, ["second", "first", "dropped"]);
    let second = &sessions[0];
    assert_eq!(second.summary.records, 5);
    assert_eq!(
        (
            second.summary.first_sequence_number,
            second.summary.last_sequence_number
        ),
        (Some(0), Some(5))
    );
    assert_eq!(second.summary.missing(), 1);
    assert!(second.first_record_id < second.last_record_id);
    assert!(second.first_record_id > sessions[1].last_record_id);
    let t = Timestamp::new(1_765_227_526, 93_456_789).unwrap();
    assert_eq!((second.first_time, second.last_time), (Some(t), Some(t)));
    // Each summary is the one session_summary gives.
    for s in &sessions {
        let alone = store
            .session_summary(dev.id, &s.summary.session_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.summary, alone);
    }
    let dropped = &sessions[2];
    assert_eq!(dropped.last_record_id, None);
    assert_eq!(dropped.summary.final_sequence_number, Some(4));
    assert_eq!(dropped.summary.losses[0].source, LossSource::Client);
    assert_eq!(dropped.summary.reported_losses(), 5);
    assert_eq!(dropped.summary.unexplained(), 0);

    let none = create(&*store, "empty").await;
    assert!(store.sessions(none.id).await.unwrap().is_empty());
}

pub async fn workspace_activity_counts_a_time_range(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let ops = create(&*store, "ops").await;
    let base = Timestamp::new(1_765_000_000, 0).unwrap();
    let at_sec = |s: i64| base + SignedDuration::from_secs(s);
    let rec = |seq: i32, allowed: bool, url: &str, sec: i64| AuditRecord {
        decision: Decision::from_allowed(allowed),
        event_time: EventTime::Known(at_sec(sec)),
        ..record(seq, url)
    };
    let sent = vec![
        rec(0, false, "https://evil.example/a", 0),
        rec(1, false, "https://EVIL.example:443/b?x", 10),
        rec(2, false, "http://user@tracker.example/p", 20),
        rec(3, false, "tracker.example:443", 30),
        rec(4, false, "https://other.example?q=1", 40),
        rec(5, true, "https://github.com/", 50),
        rec(6, true, "https://github.com/x", 60),
        rec(7, false, "https://evil.example/late", 1000),
    ];
    store
        .ingest(request(&dev, vec![batch(Some("s"), sent)]))
        .await
        .unwrap();
    store
        .ingest(request(
            &ops,
            vec![batch(
                Some("s"),
                vec![rec(0, false, "https://evil.example/ops", 5)],
            )],
        ))
        .await
        .unwrap();

    let activity = store
        .workspace_activity(ActivityQuery {
            workspace_id: dev.id,
            since: Some(at_sec(0)),
            until: Some(at_sec(1000)),
            top_hosts: 2,
        })
        .await
        .unwrap();
    assert_eq!((activity.allowed, activity.denied), (2, 5));
    assert_eq!(activity.conflicts, 0);
    assert_eq!(
        (activity.first_time, activity.last_time),
        (Some(at_sec(0)), Some(at_sec(60)))
    );
    assert_eq!(
        activity.top_denied_hosts,
        [
            HostCount {
                host: "evil.example".into(),
                records: 2
            },
            HostCount {
                host: "tracker.example".into(),
                records: 2
            },
        ]
    );

    let all = store
        .workspace_activity(ActivityQuery {
            workspace_id: dev.id,
            since: None,
            until: None,
            top_hosts: 10,
        })
        .await
        .unwrap();
    assert_eq!((all.allowed, all.denied), (2, 6));
    assert_eq!(all.top_denied_hosts.len(), 3);
    assert_eq!(all.top_denied_hosts[0].records, 3);

    let quiet = store
        .workspace_activity(ActivityQuery {
            workspace_id: dev.id,
            since: Some(at_sec(2000)),
            until: None,
            top_hosts: 10,
        })
        .await
        .unwrap();
    assert_eq!(quiet, Default::default());
}

pub async fn the_last_record_id_and_local_commits_follow_ingest(factory: &impl StoreFactory) {
    let store = factory.open().await;
    assert_eq!(store.last_record_id().await.unwrap(), None);
    let mut commits = store.local_commits();
    assert_eq!(*commits.borrow_and_update(), 0);
    let dev = create(&*store, "dev").await;
    let outcome = store
        .ingest(request(&dev, vec![batch(Some("s"), records(0..5))]))
        .await
        .unwrap();
    let last = *outcome.record_ids.iter().max().unwrap();
    assert!(commits.has_changed().unwrap());
    assert_eq!(*commits.borrow_and_update(), last);
    assert_eq!(store.last_record_id().await.unwrap(), Some(last));
    // A re-sent batch commits nothing new: no wake-up.
    store
        .ingest(request(&dev, vec![batch(Some("s"), records(0..5))]))
        .await
        .unwrap();
    assert!(!commits.has_changed().unwrap());
    // Everything at or below the last id is readable.
    let seen: BTreeSet<i64> = store
        .records(RecordQuery::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(seen.last(), Some(&last));
}

pub async fn records_are_counted_per_minute(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let ops = create(&*store, "ops").await;
    // A whole minute, so minute boundaries fall on whole multiples of 60 s.
    let base = Timestamp::new(1_765_000_020, 0).unwrap();
    let at_sec = |s: i64| base + SignedDuration::from_secs(s);
    let rec = |seq: i32, allowed: bool, sec: i64| AuditRecord {
        decision: Decision::from_allowed(allowed),
        event_time: EventTime::Known(at_sec(sec)),
        ..record(seq, "https://example.com/")
    };
    store
        .ingest(request(
            &dev,
            vec![batch(
                Some("s"),
                vec![
                    rec(0, true, -1),   // before the range
                    rec(1, true, 0),    // minute 0
                    rec(2, false, 59),  // minute 0
                    rec(3, false, 60),  // minute 1
                    rec(4, true, 185),  // minute 3
                    rec(5, false, 240), // the range's end: excluded
                ],
            )],
        ))
        .await
        .unwrap();
    store
        .ingest(request(
            &ops,
            vec![batch(Some("s"), vec![rec(0, false, 61)])],
        ))
        .await
        .unwrap();
    let counts = store
        .minute_activity(None, at_sec(0), at_sec(240))
        .await
        .unwrap();
    let got: Vec<(Timestamp, u64, u64)> = counts
        .iter()
        .map(|m| (m.minute, m.allowed, m.denied))
        .collect();
    assert_eq!(
        got,
        vec![(at_sec(0), 1, 1), (at_sec(60), 0, 2), (at_sec(180), 1, 0),]
    );
    assert!(
        store
            .minute_activity(None, at_sec(1000), at_sec(2000))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn the_first_web_session_key_wins(factory: &impl StoreFactory) {
    let store = factory.open().await;
    assert_eq!(store.init_web_session_key([1; 32]).await.unwrap(), [1; 32]);
    assert_eq!(store.init_web_session_key([2; 32]).await.unwrap(), [1; 32]);
    drop(store);
    let reopened = factory.open().await;
    assert_eq!(
        reopened.init_web_session_key([3; 32]).await.unwrap(),
        [1; 32]
    );
}
