//! The public API on real files: appends, reads, acknowledgements, restarts,
//! the bound (backpressure and drop-oldest), bad input and locking.

mod common;

use std::time::{Duration, Instant};

use common::{config, entry, ids, read_all, segment_files, tags};
use warden_spool::{Dropped, EntryId, FullPolicy, Spool, SpoolConfig, SpoolError};

const BIG: u64 = 64 << 20;

/// Polls `condition` until it holds; fails the test after a generous deadline.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn appended_entries_are_read_in_order_and_acked_ones_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, recovery) = Spool::open(config(dir.path(), BIG, 4096, FullPolicy::Backpressure))
        .await
        .unwrap();
    assert_eq!(recovery.entries, 0);
    let first = spool
        .append(vec![entry(1, 10, 100), entry(2, 20, 200)])
        .await
        .unwrap();
    let second = spool.append(vec![entry(3, 30, 300)]).await.unwrap();
    assert_eq!(first.dropped, Dropped::default());
    assert!(first.ids[0] < first.ids[1] && first.ids[1] < second.ids[0]);

    let stats = spool.stats();
    assert_eq!((stats.entries, stats.records, stats.bytes), (3, 60, 624));
    let all = spool.read_after(None, 10, 1 << 20).await.unwrap();
    assert_eq!(tags(&all), [1, 2, 3]);
    assert_eq!(
        all.iter().map(|e| e.records).collect::<Vec<_>>(),
        [10, 20, 30]
    );
    assert_eq!(all[1].data, entry(2, 20, 200).data);
    assert_eq!(
        tags(
            &spool
                .read_after(Some(first.ids[0]), 10, 1 << 20)
                .await
                .unwrap()
        ),
        [2, 3]
    );
    assert_eq!(
        tags(&spool.read_after(None, 2, 1 << 20).await.unwrap()),
        [1, 2]
    );
    assert_eq!(
        tags(&spool.read_after(None, 10, 10).await.unwrap()),
        [1],
        "at least one entry"
    );

    spool.ack(&[first.ids[1]]).await.unwrap();
    spool.ack(&[first.ids[1], EntryId(9999)]).await.unwrap();
    assert_eq!(tags(&read_all(&spool).await), [1, 3]);
    let stats = spool.stats();
    assert_eq!((stats.entries, stats.records), (2, 40));
}

#[tokio::test]
async fn a_read_waits_for_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(config(dir.path(), BIG, 4096, FullPolicy::Backpressure))
        .await
        .unwrap();
    let a = spool.append(vec![entry(1, 1, 10)]).await.unwrap();
    let reader = spool.clone();
    let after = a.ids[0];
    let waiting = tokio::spawn(async move { reader.read_after(Some(after), 10, 1000).await });
    let b = spool.append(vec![entry(2, 1, 10)]).await.unwrap();
    let read = waiting.await.unwrap().unwrap();
    assert_eq!(ids(&read), b.ids);
}

#[tokio::test]
async fn unacknowledged_entries_survive_a_restart_and_ids_keep_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), BIG, 300, FullPolicy::Backpressure);
    let (spool, _) = Spool::open(cfg.clone()).await.unwrap();
    let mut appended = Vec::new();
    for tag in 0..20 {
        appended.extend(spool.append(vec![entry(tag, 2, 90)]).await.unwrap().ids);
    }
    assert!(segment_files(dir.path()).len() > 3, "small segments roll");
    let acked: Vec<EntryId> = appended
        .iter()
        .copied()
        .filter(|id| id.0 % 3 != 0)
        .collect();
    spool.ack(&acked).await.unwrap();
    spool.close().await;

    let (spool, recovery) = Spool::open(cfg.clone()).await.unwrap();
    let expected: Vec<EntryId> = appended
        .iter()
        .copied()
        .filter(|id| id.0 % 3 == 0)
        .collect();
    assert_eq!(recovery.entries, expected.len() as u64);
    assert_eq!(recovery.records, 2 * expected.len() as u64);
    assert_eq!((recovery.truncated_bytes, recovery.corrupt_entries), (0, 0));
    assert_eq!(ids(&read_all(&spool).await), expected);

    // Acknowledge everything: all old segments go, and ids still go up.
    spool.ack(&expected).await.unwrap();
    spool.wait_drained().await;
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "only the newest segment stays"
    );
    spool.close().await;
    let (spool, recovery) = Spool::open(cfg).await.unwrap();
    assert_eq!(recovery.entries, 0);
    let next = spool.append(vec![entry(99, 1, 1)]).await.unwrap();
    assert!(next.ids[0] > *appended.last().unwrap());
}

/// Entries of 200 data bytes take 236 bytes on disk; with a 1 KiB bound
/// (segments of 128 bytes, so one entry per segment) four fit.
fn small(policy: FullPolicy, dir: &std::path::Path) -> SpoolConfig {
    config(dir, 1024, 128, policy)
}

#[tokio::test]
async fn a_full_spool_makes_appends_wait_until_acknowledgements_free_room() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(small(FullPolicy::Backpressure, dir.path()))
        .await
        .unwrap();
    let mut held = Vec::new();
    for tag in 0..4 {
        held.extend(spool.append(vec![entry(tag, 1, 200)]).await.unwrap().ids);
    }
    assert_eq!(spool.stats().disk_bytes, 4 * 236);

    let appender = spool.clone();
    let blocked = tokio::spawn(async move { appender.append(vec![entry(4, 1, 200)]).await });
    eventually("the append waits for room", || {
        spool.stats().blocked_appends == 1
    })
    .await;
    assert!(!blocked.is_finished());
    assert_eq!(spool.stats().entries, 4, "nothing was dropped");

    spool.ack(&held[..1]).await.unwrap();
    let appended = blocked.await.unwrap().unwrap();
    assert_eq!(appended.dropped, Dropped::default());
    assert_eq!(spool.stats().blocked_appends, 0);
    assert!(spool.stats().disk_bytes <= 1024);
    assert_eq!(tags(&read_all(&spool).await), [1, 2, 3, 4]);
}

#[tokio::test]
async fn acknowledging_everything_in_one_segment_frees_it_for_a_waiting_append() {
    let dir = tempfile::tempdir().unwrap();
    // One append call never spans two segments: both entries sit in the
    // active segment, which must be closed and deleted to make room.
    let (spool, _) = Spool::open(config(dir.path(), 1024, 1 << 20, FullPolicy::Backpressure))
        .await
        .unwrap();
    let first = spool
        .append(vec![entry(1, 1, 300), entry(2, 1, 300)])
        .await
        .unwrap();
    let appender = spool.clone();
    let blocked = tokio::spawn(async move { appender.append(vec![entry(3, 1, 400)]).await });
    eventually("the append waits for room", || {
        spool.stats().blocked_appends == 1
    })
    .await;
    spool.ack(&first.ids).await.unwrap();
    blocked.await.unwrap().unwrap();
    assert_eq!(tags(&read_all(&spool).await), [3]);
}

#[tokio::test]
async fn drop_oldest_makes_room_and_reports_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(small(FullPolicy::DropOldest, dir.path()))
        .await
        .unwrap();
    for tag in 0..4 {
        spool
            .append(vec![entry(tag, tag as u32 + 1, 200)])
            .await
            .unwrap();
    }
    let appended = spool.append(vec![entry(4, 5, 200)]).await.unwrap();
    assert_eq!(
        appended.dropped,
        Dropped {
            entries: 1,
            records: 1
        }
    );
    let appended = spool
        .append(vec![entry(5, 6, 200), entry(6, 7, 200)])
        .await
        .unwrap();
    assert_eq!(
        appended.dropped,
        Dropped {
            entries: 2,
            records: 2 + 3
        }
    );
    let stats = spool.stats();
    assert_eq!(
        stats.dropped,
        Dropped {
            entries: 3,
            records: 6
        }
    );
    assert!(stats.disk_bytes <= 1024);
    assert_eq!(tags(&read_all(&spool).await), [3, 4, 5, 6]);
}

#[tokio::test]
async fn entries_bigger_than_the_bound_are_refused_and_nothing_else_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(small(FullPolicy::Backpressure, dir.path()))
        .await
        .unwrap();
    let kept = spool.append(vec![entry(1, 1, 10)]).await.unwrap();

    let error = spool.append(vec![entry(2, 1, 1000)]).await.unwrap_err();
    assert!(
        matches!(
            error,
            SpoolError::EntryTooLarge {
                size: 1036,
                max: 1024
            }
        ),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "entry of 1036 bytes (with its frame) exceeds the largest allowed entry of 1024 bytes"
    );
    let error = spool
        .append(vec![entry(3, 1, 400), entry(4, 1, 400), entry(5, 1, 400)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SpoolError::AppendTooLarge {
                size: 1308,
                max: 1024
            }
        ),
        "{error}"
    );

    let empty = spool.append(Vec::new()).await.unwrap();
    assert!(empty.ids.is_empty());
    assert_eq!(ids(&read_all(&spool).await), kept.ids);
}

#[tokio::test]
async fn wait_drained_resolves_once_everything_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(config(dir.path(), BIG, 4096, FullPolicy::Backpressure))
        .await
        .unwrap();
    spool.wait_drained().await;
    let a = spool
        .append(vec![entry(1, 1, 10), entry(2, 1, 10)])
        .await
        .unwrap();
    let waiter = spool.clone();
    let drained = tokio::spawn(async move { waiter.wait_drained().await });
    spool.ack(&a.ids[..1]).await.unwrap();
    spool.ack(&a.ids[1..]).await.unwrap();
    drained.await.unwrap();
    assert_eq!(spool.stats().entries, 0);
}

#[tokio::test]
async fn one_directory_takes_one_spool() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), BIG, 4096, FullPolicy::Backpressure);
    let (spool, _) = Spool::open(cfg.clone()).await.unwrap();
    let error = Spool::open(cfg.clone()).await.unwrap_err();
    assert!(matches!(error, SpoolError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("locked by another spool"));
    spool.close().await;
    let (reopened, _) = Spool::open(cfg).await.unwrap();
    reopened.close().await;
}

#[tokio::test]
async fn bad_configuration_is_refused_before_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("spool");
    let error = Spool::open(config(&target, 10, 4096, FullPolicy::Backpressure))
        .await
        .unwrap_err();
    assert!(matches!(error, SpoolError::InvalidConfig(_)), "{error}");
    assert!(!target.exists());
}

#[tokio::test]
async fn concurrent_appenders_share_the_spool_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), BIG, 16 * 1024, FullPolicy::Backpressure);
    let (spool, _) = Spool::open(cfg.clone()).await.unwrap();
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..50u64 {
                let tag = task * 1000 + i;
                let ids = spool.append(vec![entry(tag, 3, 120)]).await.unwrap().ids;
                mine.push((ids[0], tag));
            }
            mine
        }));
    }
    let mut appended = Vec::new();
    for task in tasks {
        appended.extend(task.await.unwrap());
    }
    appended.sort();
    let all = read_all(&spool).await;
    assert_eq!(all.len(), 400);
    let got: Vec<(EntryId, u64)> = all.iter().map(|e| (e.id, common::tag(e))).collect();
    assert_eq!(
        got, appended,
        "every entry once, under the id its append returned"
    );
    spool.close().await;
    let (reopened, recovery) = Spool::open(cfg).await.unwrap();
    assert_eq!(recovery.entries, 400);
    assert_eq!(read_all(&reopened).await.len(), 400);
}

#[tokio::test]
async fn concurrent_appenders_under_drop_oldest_all_finish_and_every_drop_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(SpoolConfig {
        drop_summary: |data| data[..8].to_vec(),
        ..config(dir.path(), 4096, 256, FullPolicy::DropOldest)
    })
    .await
    .unwrap();
    // What a forwarder does with the ledger: report each drop, then settle
    // it. Without it the ledger would fill its share of the bound and the
    // appends would wait, as under backpressure.
    let settler = {
        let spool = spool.clone();
        tokio::spawn(async move {
            let mut seen: Vec<(EntryId, u32, u64)> = Vec::new();
            while let Ok(drops) = spool.read_dropped(None, 16).await {
                let ids: Vec<EntryId> = drops.iter().map(|d| d.id).collect();
                seen.extend(drops.iter().map(|d| {
                    let tag = u64::from_le_bytes(d.summary[..8].try_into().unwrap());
                    (d.id, d.records, tag)
                }));
                spool.settle_dropped(&ids).await.unwrap();
            }
            seen
        })
    };
    let mut tasks = Vec::new();
    for task in 0..6u64 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            let mut dropped = Dropped::default();
            for i in 0..40u64 {
                let appended = spool
                    .append(vec![entry(task * 100 + i, 2, 150)])
                    .await
                    .unwrap();
                dropped.entries += appended.dropped.entries;
                dropped.records += appended.dropped.records;
                assert!(spool.stats().disk_bytes <= 4096);
            }
            dropped
        }));
    }
    let mut dropped = Dropped::default();
    for task in tasks {
        let mine = task.await.unwrap();
        dropped.entries += mine.entries;
        dropped.records += mine.records;
    }
    let stats = spool.stats();
    assert_eq!(
        stats.dropped, dropped,
        "every drop reported to exactly one append"
    );
    assert_eq!(
        stats.entries + dropped.entries,
        240,
        "appended = live + dropped"
    );
    assert_eq!(dropped.records, 2 * dropped.entries);
    assert!(dropped.entries > 0);
    // Drops take the oldest entries: what is left of each appender is its
    // newest entries.
    let live = read_all(&spool).await;
    assert_eq!(live.len() as u64, stats.entries);
    for task in 0..6u64 {
        let mine: Vec<u64> = live
            .iter()
            .map(common::tag)
            .filter(|t| t / 100 == task)
            .map(|t| t % 100)
            .collect();
        let first = 40 - mine.len() as u64;
        assert_eq!(mine, (first..40).collect::<Vec<_>>(), "appender {task}");
    }
    // Every dropped entry went through the ledger once, with its summary:
    // the live entries and the ledger's are all 240, each once.
    eventually("every drop is settled", || {
        spool.stats().dropped_pending == 0
    })
    .await;
    spool.close().await;
    let seen = settler.await.unwrap();
    assert_eq!(seen.len() as u64, dropped.entries);
    let mut tags: Vec<u64> = seen.iter().map(|(_, _, tag)| *tag).collect();
    tags.extend(live.iter().map(common::tag));
    tags.sort_unstable();
    let all: Vec<u64> = (0..6u64)
        .flat_map(|task| (0..40).map(move |i| task * 100 + i))
        .collect();
    assert_eq!(tags, all);
    assert!(seen.iter().all(|(_, records, _)| *records == 2));
}

#[tokio::test]
async fn concurrent_appenders_under_backpressure_deliver_everything_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(config(dir.path(), 4096, 256, FullPolicy::Backpressure))
        .await
        .unwrap();
    let consumer = {
        let spool = spool.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = None;
            while seen.len() < 240 {
                let read = spool.read_after(cursor, 3, 1 << 20).await.unwrap();
                cursor = read.last().map(|e| e.id);
                let ids: Vec<EntryId> = read.iter().map(|e| e.id).collect();
                seen.extend(read.iter().map(common::tag));
                spool.ack(&ids).await.unwrap();
            }
            seen
        })
    };
    let mut tasks = Vec::new();
    for task in 0..6u64 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40u64 {
                let appended = spool
                    .append(vec![entry(task * 100 + i, 2, 150)])
                    .await
                    .unwrap();
                assert_eq!(appended.dropped, Dropped::default());
                assert!(spool.stats().disk_bytes <= 4096);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut seen = consumer.await.unwrap();
    spool.wait_drained().await;
    seen.sort_unstable();
    let expected: Vec<u64> = (0..6u64)
        .flat_map(|t| (0..40).map(move |i| t * 100 + i))
        .collect();
    assert_eq!(seen, expected);
}

/// One caller with many appends in flight at once (as the agent's
/// connection pipelines a client's frames): the spool gives them ids in the
/// order they were made, also while it is full and dropping, so that what
/// `DropOldest` drops is always the oldest of them and never a newer one
/// that lost a race for room.
#[tokio::test]
async fn pipelined_appends_keep_their_order_while_drop_oldest_makes_room() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(SpoolConfig {
        drop_summary: |data| data[..8].to_vec(),
        ..config(dir.path(), 4096, 256, FullPolicy::DropOldest)
    })
    .await
    .unwrap();
    let settler = {
        let spool = spool.clone();
        tokio::spawn(async move {
            while let Ok(drops) = spool.read_dropped(None, 16).await {
                let ids: Vec<EntryId> = drops.iter().map(|d| d.id).collect();
                spool.settle_dropped(&ids).await.unwrap();
            }
        })
    };
    let mut pending = futures::stream::FuturesOrdered::new();
    for tag in 0..300u64 {
        let spool = spool.clone();
        pending.push_back(async move { spool.append(vec![entry(tag, 1, 150)]).await });
    }
    let ids: Vec<EntryId> = pending
        .map(|appended| appended.unwrap().ids[0])
        .collect()
        .await;
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids out of call order: {ids:?}"
    );
    let live = tags(&read_all(&spool).await);
    let first = 300 - live.len() as u64;
    assert!(first > 0, "nothing was dropped");
    assert_eq!(
        live,
        (first..300).collect::<Vec<_>>(),
        "the newest are kept"
    );
    spool.close().await;
    settler.await.unwrap();
}
