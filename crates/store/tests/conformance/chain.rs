//! The record chain: every committed record is covered, in commit order,
//! one link per group commit, and checks clean; retention leaves a tombstone
//! so that what remains still checks.

use warden_store::chain::check::{Problem, check_store};
use warden_store::chain::{ChainHead, Checkpoint, LinkKind};

use super::*;

async fn check(store: &dyn Store) -> (Vec<Problem>, warden_store::chain::check::Counts) {
    check_store(store).await.unwrap().finish()
}

pub async fn every_committed_record_is_chained(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let w = create(&*store, "chained").await;
    let (problems, counts) = check(&*store).await;
    assert_eq!(problems, []);
    assert_eq!(counts.records, 0);
    // The genesis link exists from the start.
    let genesis = store.chain_head().await.unwrap().unwrap();
    assert_eq!((genesis.seq, genesis.records), (0, 0));

    for round in 0..3 {
        let batches = vec![
            batch(Some(SESSION), records(round * 10..round * 10 + 10)),
            batch(None, records(0..3)),
        ];
        store.ingest(request(&w, batches)).await.unwrap();
    }
    let links = store.chain_links(-1, 100).await.unwrap();
    assert!(links.len() >= 2, "one link per group commit: {links:?}");
    assert_eq!(links.iter().map(|l| l.records).sum::<i64>(), 39);
    let mut prev = ChainHead::EMPTY;
    for link in &links {
        assert_eq!(link.seq, prev.next_seq);
        assert_eq!(link.compute_head(&prev.head), link.head);
        prev = prev.after(link);
    }
    assert_eq!(store.chain_head().await.unwrap().as_ref(), links.last());
    let (problems, counts) = check(&*store).await;
    assert_eq!(problems, []);
    assert_eq!(counts.records, 39);
    // A re-sent batch adds no record and so no link.
    let before = store.chain_head().await.unwrap();
    store
        .ingest(request(&w, vec![batch(Some(SESSION), records(0..10))]))
        .await
        .unwrap();
    assert_eq!(store.chain_head().await.unwrap(), before);
    store.close().await.unwrap();
}

/// The leaves the store hashes from its blocks (what a whole-store check
/// reads) are those of the records the query API returns, for every range:
/// cut inside a block, at a batch boundary inside a block, or not. The
/// blocks hold several batches each (different peers, receive times and
/// batch ids), a conflicting record and records without an event time, so
/// that a field taken from the wrong batch or record shows.
pub async fn leaves_from_blocks_are_the_records_leaves(factory: &impl StoreFactory) {
    use warden_store::chain::RecordView;
    let store = factory.open().await;
    let w = create(&*store, "leaves").await;
    for round in 0..3 {
        let base = round * 10;
        let mut second = batch(Some(SESSION), records(base + 5..base + 10));
        second.peer.pid = 7000 + round;
        second.peer.comm = "wget".into();
        second.received_at = at(60 + i64::from(round));
        let mut untimed = records(0..3);
        for r in &mut untimed {
            r.event_time = warden_proto::domain::EventTime::Missing;
        }
        let batches = vec![
            batch(Some(SESSION), records(base..base + 5)),
            second,
            batch(None, untimed),
        ];
        store.ingest(request(&w, batches)).await.unwrap();
    }
    // The same sequence number with another URL: stored, flagged.
    let conflicting = vec![record(3, "https://example.com/other")];
    store
        .ingest(request(&w, vec![batch(Some(SESSION), conflicting)]))
        .await
        .unwrap();
    let all = store
        .records(RecordQuery {
            order: warden_store::Order::OldestFirst,
            limit: 1000,
            ..RecordQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 40);
    assert!(all.iter().any(|r| r.conflict), "a conflict is stored");
    let mut buf = Vec::new();
    let expected: Vec<(i64, Option<String>, [u8; 32])> = all
        .iter()
        .map(|r| (r.id, r.session_id.clone(), RecordView::of(r).leaf(&mut buf)))
        .collect();
    let leaves = |after: i64, before: i64| {
        let store = &store;
        async move {
            store
                .chain_leaves(after, before)
                .await
                .unwrap()
                .into_iter()
                .flat_map(|b| {
                    let session = b.session.clone();
                    b.leaves
                        .into_iter()
                        .enumerate()
                        .map(move |(i, leaf)| (b.first_id + i as i64, session.clone(), leaf))
                })
                .collect::<Vec<(i64, Option<String>, [u8; 32])>>()
        }
    };
    let want = |after: i64, before: i64| -> Vec<(i64, Option<String>, [u8; 32])> {
        expected
            .iter()
            .filter(|(id, _, _)| *id > after && *id < before)
            .cloned()
            .collect()
    };
    assert_eq!(leaves(i64::MIN, i64::MAX).await, expected);
    // Every start, with ends one, a few and many records on: each cut
    // falls at every offset inside some block.
    let (first, last) = (all[0].id, all[39].id);
    for after in first - 1..=last {
        for len in [1, 2, 3, 6, 11, 50] {
            let before = after + len;
            assert_eq!(
                leaves(after, before).await,
                want(after, before),
                "ids in ({after}, {before})"
            );
        }
    }
    store.close().await.unwrap();
}

pub async fn retention_leaves_a_tombstone_and_the_rest_checks(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let w = create(&*store, "purged").await;
    for round in 0..4 {
        store
            .ingest(request(
                &w,
                vec![batch(Some(SESSION), records(round * 5..round * 5 + 5))],
            ))
            .await
            .unwrap();
    }
    // Every record was received at `at(10)`: purge some of them.
    let outcome = store.purge_records_before(at(11), 7).await.unwrap();
    assert_eq!(outcome.records, 7);
    let head = store.chain_head().await.unwrap().unwrap();
    assert_eq!(head.kind, LinkKind::Purge);
    assert_eq!(head.records, 7);
    let (problems, counts) = check(&*store).await;
    assert_eq!(problems, []);
    assert_eq!((counts.records, counts.purged), (13, 7));
    store.close().await.unwrap();
}

pub async fn checkpoints_are_stored_and_listed(factory: &impl StoreFactory) {
    let store = factory.open().await;
    assert_eq!(store.latest_checkpoint().await.unwrap(), None);
    let head = store.chain_head().await.unwrap().unwrap();
    let mut stored = Vec::new();
    for i in 0..3 {
        let c = store
            .add_checkpoint(Checkpoint {
                id: 0,
                link_seq: head.seq,
                last_id: head.last_id,
                head: head.head,
                signed_ns: 1_000 + i,
                key_id: "k".into(),
                public_key: vec![1; 32],
                signature: vec![i as u8; 64],
            })
            .await
            .unwrap();
        assert!(c.id > stored.last().map_or(0, |s: &Checkpoint| s.id));
        stored.push(c);
    }
    assert_eq!(store.checkpoints(0, 10).await.unwrap(), stored);
    assert_eq!(
        store.checkpoints(stored[0].id, 1).await.unwrap(),
        stored[1..2]
    );
    assert_eq!(
        store.latest_checkpoint().await.unwrap().as_ref(),
        stored.last()
    );
    store.close().await.unwrap();
}

/// Session verdicts are only added: listed per session and store-wide in
/// id order, with their bytes as given; a session with records after its
/// latest verdict (or without one) awaits one.
pub async fn session_verdicts_are_kept_and_sessions_awaiting_one_found(
    factory: &impl StoreFactory,
) {
    use warden_store::verdict::{SessionKey, SessionVerdict};
    let store = factory.open().await;
    let w = create(&*store, "judged").await;
    store
        .ingest(request(&w, vec![batch(Some("s\u{0}1"), records(0..3))]))
        .await
        .unwrap();
    store
        .ingest(request(&w, vec![batch(Some("s2"), records(0..2))]))
        .await
        .unwrap();
    let awaiting = |keys: Vec<SessionKey>| {
        keys.into_iter()
            .map(|k| {
                assert_eq!(k.workspace_id, w.id);
                k.session_id
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        awaiting(store.sessions_awaiting_verdict(10).await.unwrap()),
        ["s\u{0}1", "s2"]
    );
    let last_id = store.last_record_id().await.unwrap().unwrap();
    let verdict = |session: &str, n: u8| SessionVerdict {
        id: 0,
        workspace_id: w.id,
        session_id: session.into(),
        last_id,
        made_ns: 1_765_227_526_000_000_000 + i64::from(n),
        statement: format!("statement {n}\n"),
        key_id: "k".into(),
        public_key: vec![n; 32],
        signature: vec![n; 64],
    };
    let first = store
        .add_session_verdict(verdict("s\u{0}1", 1))
        .await
        .unwrap();
    let second = store
        .add_session_verdict(verdict("s\u{0}1", 2))
        .await
        .unwrap();
    assert!(first.id > 0 && second.id > first.id);
    assert_eq!(
        second,
        SessionVerdict {
            id: second.id,
            ..verdict("s\u{0}1", 2)
        }
    );
    assert_eq!(
        store.session_verdicts(w.id, "s\u{0}1").await.unwrap(),
        [first.clone(), second.clone()]
    );
    assert_eq!(store.session_verdicts(w.id, "s2").await.unwrap(), []);
    assert_eq!(
        store.verdicts_after(first.id, 10).await.unwrap(),
        std::slice::from_ref(&second)
    );
    assert_eq!(
        awaiting(store.sessions_awaiting_verdict(10).await.unwrap()),
        ["s2"]
    );
    // New records after the verdict: due again.
    store
        .ingest(request(&w, vec![batch(Some("s\u{0}1"), records(3..4))]))
        .await
        .unwrap();
    assert_eq!(
        awaiting(store.sessions_awaiting_verdict(10).await.unwrap()),
        ["s2", "s\u{0}1"]
    );
    store.close().await.unwrap();
}
