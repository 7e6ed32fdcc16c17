//! Failure injection: disk full, failed fsyncs, failed segment creation and
//! acknowledgement-log failures, one at a time and then every single fault
//! a scenario can meet.

use std::collections::BTreeMap;
use std::io::ErrorKind;

use super::{config, entry, ids, open, open_uncached, read_all};
use crate::format::{SEGMENT_SUFFIX, parse_segment_name};
use crate::sim::{Fault, Op, SimDisk};
use crate::{EntryId, FullPolicy, SpoolConfig, SpoolError};

const BIG: u64 = 1 << 30;

fn segments(disk: &SimDisk) -> Vec<u64> {
    disk.names()
        .iter()
        .filter_map(|n| parse_segment_name(n))
        .collect()
}

#[tokio::test]
async fn disk_full_fails_only_that_append_and_the_spool_goes_on() {
    let disk = SimDisk::new();
    let (spool, _) = open(&disk, config(BIG, BIG, FullPolicy::Backpressure))
        .await
        .unwrap();
    let a = spool.append(vec![entry(1, 1, 100)]).await.unwrap();

    disk.inject(Fault {
        partial: 60,
        ..Fault::new(Op::Write, ErrorKind::StorageFull)
    });
    let error = spool
        .append(vec![entry(2, 1, 100), entry(3, 1, 100)])
        .await
        .unwrap_err();
    assert!(error.is_disk_full(), "{error}");
    assert!(error.to_string().contains("write segment"), "{error}");
    assert_eq!(
        spool.stats().entries,
        1,
        "nothing of the failed append is counted"
    );
    assert_eq!(ids(&read_all(&spool).await), a.ids, "nor readable");

    let c = spool.append(vec![entry(4, 1, 100)]).await.unwrap();
    assert!(c.ids[0] > a.ids[0]);
    let live = read_all(&spool).await;
    assert_eq!(ids(&live), [a.ids[0], c.ids[0]]);
    assert_eq!(&live[1].data[..8], &4u64.to_le_bytes());

    for seed in 0..20 {
        let after = disk.crash(seed);
        let (reopened, recovery) = open(&after, config(BIG, BIG, FullPolicy::Backpressure))
            .await
            .unwrap();
        assert_eq!(recovery.corrupt_entries, 0);
        let back = read_all(&reopened).await;
        assert_eq!(ids(&back), [a.ids[0], c.ids[0]], "seed {seed}");
        let tags: Vec<u8> = back.iter().map(|e| e.data[0]).collect();
        assert_eq!(
            tags,
            [1, 4],
            "seed {seed}: the failed append never comes back"
        );
        reopened.close().await;
    }
}

#[tokio::test]
async fn fsync_failure_abandons_the_segment_and_hides_the_failed_entries() {
    let disk = SimDisk::new();
    let (spool, _) = open(&disk, config(BIG, BIG, FullPolicy::Backpressure))
        .await
        .unwrap();
    let a = spool.append(vec![entry(1, 1, 50)]).await.unwrap();
    assert_eq!(segments(&disk).len(), 1);

    // The failed fsync still made the whole append durable: the worst case.
    disk.inject(Fault {
        partial: usize::MAX,
        name_contains: SEGMENT_SUFFIX,
        ..Fault::new(Op::Sync, ErrorKind::Other)
    });
    let error = spool.append(vec![entry(2, 1, 50)]).await.unwrap_err();
    assert!(error.to_string().contains("fsync segment"), "{error}");

    let c = spool.append(vec![entry(3, 1, 50)]).await.unwrap();
    assert_eq!(
        segments(&disk).len(),
        2,
        "later appends go to a new segment file"
    );
    assert_eq!(ids(&read_all(&spool).await), [a.ids[0], c.ids[0]]);

    for seed in 0..20 {
        let (reopened, _) = open(
            &disk.crash(seed),
            config(BIG, BIG, FullPolicy::Backpressure),
        )
        .await
        .unwrap();
        let tags: Vec<u8> = read_all(&reopened)
            .await
            .iter()
            .map(|e| e.data[0])
            .collect();
        assert_eq!(tags, [1, 3], "seed {seed}");
        reopened.close().await;
    }
}

#[tokio::test]
async fn failed_entries_stay_hidden_even_when_the_segment_cannot_be_cut_back() {
    let disk = SimDisk::new();
    let (spool, _) = open(&disk, config(BIG, BIG, FullPolicy::Backpressure))
        .await
        .unwrap();
    let a = spool.append(vec![entry(1, 1, 50)]).await.unwrap();
    disk.inject(Fault {
        partial: usize::MAX,
        name_contains: SEGMENT_SUFFIX,
        ..Fault::new(Op::Sync, ErrorKind::Other)
    });
    disk.inject(Fault::new(Op::SetLen, ErrorKind::Other));
    spool.append(vec![entry(2, 1, 50)]).await.unwrap_err();
    // No further append: the spool started a new segment right away, whose
    // name tells recovery that the failed entry's id belongs to it.
    let names = segments(&disk);
    assert_eq!(names.len(), 2);
    assert_eq!(names[1], a.ids[0].0 + 1);

    for seed in 0..20 {
        let (reopened, recovery) = open(
            &disk.crash(seed),
            config(BIG, BIG, FullPolicy::Backpressure),
        )
        .await
        .unwrap();
        let back = read_all(&reopened).await;
        assert_eq!(ids(&back), a.ids, "seed {seed}");
        assert_eq!(recovery.corrupt_entries, 0, "seed {seed}");
        let next = reopened.append(vec![entry(9, 1, 5)]).await.unwrap();
        assert!(next.ids[0] > a.ids[0]);
        reopened.close().await;
    }
}

#[tokio::test]
async fn a_failed_segment_start_fails_the_append_only() {
    let disk = SimDisk::new();
    // Segments of one entry: every append starts a new segment.
    let (spool, _) = open(&disk, config(64 * 1024, 10, FullPolicy::Backpressure))
        .await
        .unwrap();
    let a = spool.append(vec![entry(1, 1, 20)]).await.unwrap();
    disk.inject(Fault::new(Op::SyncDir, ErrorKind::StorageFull));
    let error = spool.append(vec![entry(2, 1, 20)]).await.unwrap_err();
    assert!(
        error.to_string().contains("fsync spool directory"),
        "{error}"
    );
    assert!(error.is_disk_full());
    let c = spool.append(vec![entry(3, 1, 20)]).await.unwrap();
    assert_eq!(ids(&read_all(&spool).await), [a.ids[0], c.ids[0]]);
    spool.close().await;
    let (reopened, _) = open(&disk, config(64 * 1024, 10, FullPolicy::Backpressure))
        .await
        .unwrap();
    let tags: Vec<u8> = read_all(&reopened)
        .await
        .iter()
        .map(|e| e.data[0])
        .collect();
    assert_eq!(tags, [1, 3]);
}

#[tokio::test]
async fn a_failed_acknowledgement_write_keeps_the_entries_live() {
    let disk = SimDisk::new();
    let (spool, _) = open(&disk, config(BIG, BIG, FullPolicy::Backpressure))
        .await
        .unwrap();
    let a = spool
        .append(vec![entry(1, 1, 10), entry(2, 1, 10)])
        .await
        .unwrap();
    disk.inject(Fault {
        name_contains: "acks.log",
        ..Fault::new(Op::Write, ErrorKind::StorageFull)
    });
    let error = spool.ack(&a.ids[..1]).await.unwrap_err();
    assert!(error.to_string().contains("acknowledgement log"), "{error}");
    assert_eq!(spool.stats().entries, 2, "a failed ack changes nothing");
    spool.ack(&a.ids[..1]).await.unwrap();
    assert_eq!(ids(&read_all(&spool).await), a.ids[1..]);
    spool.close().await;
    let (reopened, _) = open(&disk, config(BIG, BIG, FullPolicy::Backpressure))
        .await
        .unwrap();
    assert_eq!(ids(&read_all(&reopened).await), a.ids[1..]);
}

#[tokio::test]
async fn acknowledgements_become_durable_shortly_without_further_activity() {
    let disk = SimDisk::new();
    let (spool, _) = open(&disk, config(BIG, BIG, FullPolicy::Backpressure))
        .await
        .unwrap();
    let a = spool
        .append(vec![entry(1, 1, 10), entry(2, 1, 10)])
        .await
        .unwrap();
    spool.ack(&a.ids[..1]).await.unwrap();
    // The writer fsyncs the log on its own within ACK_SYNC_DELAY: poll for it.
    let deadline = std::time::Instant::now() + 50 * crate::writer::ACK_SYNC_DELAY;
    while !disk.is_durable("acks.log") {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        assert!(
            std::time::Instant::now() < deadline,
            "acknowledgement log never fsynced"
        );
    }
    for seed in 0..10 {
        let (reopened, _) = open(
            &disk.crash(seed),
            config(BIG, BIG, FullPolicy::Backpressure),
        )
        .await
        .unwrap();
        assert_eq!(ids(&read_all(&reopened).await), a.ids[1..], "seed {seed}");
        reopened.close().await;
    }
}

/// A power loss at any point of a `DropOldest` drop leaves a spool that
/// reopens within its bound, drop ledger included. The dropped segment holds
/// an entry acknowledged just before (acknowledgements are fsynced lazily)
/// and two live ones (two drop records, which a crash before their fsync may
/// keep one of). Either way recovery must not find that segment with a live
/// entry next to drop records paying for it: it would keep the segment and
/// the records both. And a drop once confirmed stays in the ledger.
#[tokio::test]
async fn a_crash_while_dropping_never_reopens_over_the_bound() {
    const MAX: u64 = 2400;
    // Frames of 86 bytes, three to a 300-byte segment, then one of 78: the
    // spool is exactly full.
    let cfg = config(MAX, 300, FullPolicy::DropOldest);
    for ops in 0..10 {
        for seed in 0..8 {
            let disk = SimDisk::new();
            let (spool, _) = open(&disk, cfg.clone()).await.unwrap();
            let mut appended = Vec::new();
            for tag in 0..27 {
                let new = spool.append(vec![entry(tag, 1, 50)]).await.unwrap();
                appended.extend(new.ids);
            }
            appended.extend(spool.append(vec![entry(27, 1, 42)]).await.unwrap().ids);
            assert_eq!(spool.stats().disk_bytes, MAX);
            assert_eq!(segments(&disk).len(), 10);
            spool.ack(&appended[..1]).await.unwrap();

            // Room for one more 86-byte frame: drops the oldest segment and
            // pays for its drop records with it.
            disk.freeze_after(ops);
            let (reply, made) = tokio::sync::oneshot::channel();
            spool
                .send(crate::writer::Command::MakeRoom {
                    bytes: 86,
                    drop_oldest: true,
                    reply,
                })
                .unwrap();
            let confirmed = made
                .await
                .unwrap()
                .is_ok_and(|made| made.dropped.entries == 2);

            let (reopened, recovery) = open(&disk.crash(seed), cfg.clone()).await.unwrap();
            let at = format!("ops {ops} seed {seed}");
            assert_eq!(recovery.corrupt_entries, 0, "{at}");
            let stats = reopened.stats();
            assert!(
                stats.disk_bytes <= MAX,
                "{at}: {} bytes on disk over the bound {MAX}",
                stats.disk_bytes
            );
            // The segment's live entries were dropped together or not at all
            // (the acknowledged one may come back, the rest is all there).
            let live = ids(&read_all(&reopened).await);
            let (b, c) = (live.contains(&appended[1]), live.contains(&appended[2]));
            let dropped = recovery.dropped_pending;
            assert!(
                (dropped == 0 && b && c) || (dropped == 2 && !b && !c),
                "{at}: {dropped} drops, live {live:?}"
            );
            assert!(live.ends_with(&appended[3..]), "{at}");
            // A drop made durable (and reported) is never undone.
            assert!(
                !confirmed || dropped == 2,
                "{at}: a confirmed drop was forgotten"
            );
            reopened.close().await;
            spool.close().await;
        }
    }
}

#[tokio::test]
async fn damage_found_by_a_read_is_skipped_counted_and_remembered() {
    let disk = SimDisk::new();
    let cfg = config(BIG, BIG, FullPolicy::Backpressure);
    // No read cache: every read goes to the segment file.
    let (spool, _) = open_uncached(&disk, cfg.clone()).await.unwrap();
    let a = spool
        .append(vec![entry(1, 1, 30), entry(2, 5, 30), entry(3, 1, 30)])
        .await
        .unwrap();
    let name = crate::format::segment_name(a.ids[0].0);
    let second = crate::format::SEGMENT_HEADER_LEN + crate::format::frame_len(38) as usize;
    disk.flip(&name, second + crate::format::ENTRY_HEADER_LEN + 3);

    let read = spool.read_after(None, 10, 1 << 20).await.unwrap();
    assert_eq!(ids(&read), [a.ids[0], a.ids[2]]);
    let stats = spool.stats();
    assert_eq!(
        (stats.corrupt_entries, stats.entries, stats.records),
        (1, 2, 2)
    );
    spool.close().await;

    let (reopened, recovery) = open_uncached(&disk, cfg).await.unwrap();
    assert_eq!(
        recovery.corrupt_entries, 0,
        "counted once, when it was found"
    );
    assert_eq!(recovery.entries, 2);
    assert_eq!(ids(&read_all(&reopened).await), [a.ids[0], a.ids[2]]);
}

/// Runs a fixed scenario with one injected fault and checks that every
/// confirmed, unacknowledged entry is there, in-process and after a crash,
/// and that no failed append ever shows up.
async fn scenario_with_fault(fault: Fault, seed: u64) -> usize {
    let disk = SimDisk::new();
    let cfg = config(BIG, 200, FullPolicy::Backpressure);
    let (spool, _) = open(&disk, cfg.clone()).await.unwrap();
    disk.inject(fault.clone());
    let mut live: BTreeMap<EntryId, u64> = BTreeMap::new();
    let mut maybe_acked: BTreeMap<EntryId, u64> = BTreeMap::new();
    // Acknowledged entries may come back after a crash until their record is
    // fsynced (the contract; the model test checks the finer rule).
    let mut acked: BTreeMap<EntryId, u64> = BTreeMap::new();
    let mut failures = 0;
    for step in 0..24u64 {
        let entries = vec![entry(step * 2, 1, 40), entry(step * 2 + 1, 2, 60)];
        match spool.append(entries).await {
            Ok(appended) => {
                live.insert(appended.ids[0], step * 2);
                live.insert(appended.ids[1], step * 2 + 1);
            }
            Err(_) => failures += 1,
        }
        if step % 3 == 2 {
            let chosen: Vec<EntryId> = live.keys().copied().step_by(2).take(3).collect();
            match spool.ack(&chosen).await {
                Ok(()) => chosen.iter().for_each(|id| {
                    acked.insert(*id, live.remove(id).unwrap());
                }),
                Err(_) => {
                    failures += 1;
                    for id in chosen {
                        maybe_acked.insert(id, live.remove(&id).unwrap());
                    }
                }
            }
        }
        let now: BTreeMap<EntryId, u64> = read_all(&spool)
            .await
            .iter()
            .map(|e| (e.id, u64::from_le_bytes(e.data[..8].try_into().unwrap())))
            .collect();
        let mut expected = live.clone();
        // An ack that failed left its entries live in the process.
        expected.extend(maybe_acked.iter());
        assert_eq!(now, expected, "{fault:?} step {step}");
    }
    let after = disk.crash(seed);
    let (reopened, recovery) = open(&after, cfg).await.unwrap();
    assert_eq!(recovery.corrupt_entries, 0, "{fault:?}");
    let back: BTreeMap<EntryId, u64> = read_all(&reopened)
        .await
        .iter()
        .map(|e| (e.id, u64::from_le_bytes(e.data[..8].try_into().unwrap())))
        .collect();
    for (id, tag) in &live {
        assert_eq!(
            back.get(id),
            Some(tag),
            "{fault:?}: confirmed entry {id:?} lost"
        );
    }
    for (id, tag) in &back {
        assert!(
            [&live, &maybe_acked, &acked]
                .iter()
                .any(|m| m.get(id) == Some(tag)),
            "{fault:?}: entry {id:?} ({tag}) came back but was never confirmed"
        );
    }
    failures
}

#[tokio::test]
async fn every_single_fault_keeps_confirmed_entries_and_hides_failed_ones() {
    let kinds = [
        (Op::Write, ErrorKind::StorageFull),
        (Op::Sync, ErrorKind::Other),
        (Op::SetLen, ErrorKind::Other),
        (Op::OpenAppend, ErrorKind::StorageFull),
        (Op::Remove, ErrorKind::PermissionDenied),
        (Op::Rename, ErrorKind::Other),
        (Op::SyncDir, ErrorKind::Other),
    ];
    let mut fired = 0;
    for (op, kind) in kinds {
        for skip in 0..12 {
            for partial in [0, 30, usize::MAX] {
                let fault = Fault {
                    skip,
                    partial,
                    ..Fault::new(op, kind)
                };
                let failures =
                    scenario_with_fault(fault, skip as u64 * 7 + partial as u64 % 5).await;
                assert!(
                    failures <= 1,
                    "{op:?} skip {skip}: one fault failed {failures} operations"
                );
                fired += failures;
            }
        }
    }
    assert!(
        fired > 50,
        "the faults must actually hit operations ({fired})"
    );
}

#[tokio::test]
async fn closed_spool_refuses_everything() {
    let disk = SimDisk::new();
    let (spool, _) = open(&disk, config(BIG, BIG, FullPolicy::Backpressure))
        .await
        .unwrap();
    let a = spool.append(vec![entry(1, 1, 10)]).await.unwrap();
    let reader = spool.clone();
    let first = a.ids[0];
    let waiting = tokio::spawn(async move { reader.read_after(Some(first), 10, 100).await });
    spool.close().await;
    assert!(matches!(waiting.await.unwrap(), Err(SpoolError::Closed)));
    assert!(matches!(
        spool.append(vec![entry(2, 1, 1)]).await,
        Err(SpoolError::Closed)
    ));
    assert!(matches!(spool.ack(&a.ids).await, Err(SpoolError::Closed)));
    assert!(matches!(
        spool.read_after(None, 1, 1).await,
        Err(SpoolError::Closed)
    ));
    spool.wait_drained().await;
    spool.close().await;
    // The directory is free again.
    let (reopened, recovery) = open(&disk, config(BIG, BIG, FullPolicy::Backpressure))
        .await
        .unwrap();
    assert_eq!(recovery.entries, 1);
    reopened.close().await;
}

#[tokio::test]
async fn a_second_spool_on_the_same_directory_is_refused() {
    let disk = SimDisk::new();
    let (_spool, _) = open(&disk, config(BIG, BIG, FullPolicy::Backpressure))
        .await
        .unwrap();
    let error = open(&disk, config(BIG, BIG, FullPolicy::Backpressure))
        .await
        .unwrap_err();
    assert!(matches!(error, SpoolError::Locked { .. }), "{error}");
}

/// The commit delay gathers small appends into one write and one fsync, and
/// none of them resolves before that fsync: a single failed fsync fails
/// every append it was to make durable, and after a good one all of them are
/// durable on disk.
#[tokio::test]
async fn appends_gathered_by_the_commit_delay_share_one_fsync_and_resolve_after_it() {
    use futures::FutureExt;

    let disk = SimDisk::new();
    let mut gathering = config(BIG, BIG, FullPolicy::Backpressure);
    // Longer than any test run: only a large append ends the gathering.
    gathering.commit_delay = std::time::Duration::from_secs(3600);
    let (spool, _) = open(&disk, gathering).await.unwrap();
    let large = 300 * 1024;
    // A large append goes at once (and starts the segment).
    let first = spool.append(vec![entry(1, 1, large)]).await.unwrap();

    for round in 0..2u64 {
        let failing = round == 0;
        if failing {
            disk.inject(Fault {
                name_contains: SEGMENT_SUFFIX,
                ..Fault::new(Op::Sync, ErrorKind::Other)
            });
        }
        // The small append is queued first and waits for company...
        let mut small = Box::pin(spool.append(vec![entry(10 + round, 1, 100)]));
        assert!(
            (&mut small).now_or_never().is_none(),
            "a small append waits for the fsync"
        );
        // ...which the large one brings: both go in one cycle.
        let big = spool.append(vec![entry(20 + round, 1, large)]).await;
        let small = small.await;
        if failing {
            let (small, big) = (small.unwrap_err(), big.unwrap_err());
            assert!(small.to_string().contains("fsync segment"), "{small}");
            assert!(big.to_string().contains("fsync segment"), "{big}");
            assert_eq!(spool.stats().entries, 1, "neither was confirmed");
        } else {
            let (small, big) = (small.unwrap(), big.unwrap());
            assert_eq!(big.ids[0].0, small.ids[0].0 + 1, "one group, in order");
            for name in disk.names().iter().filter(|n| n.ends_with(SEGMENT_SUFFIX)) {
                assert!(disk.is_durable(name), "{name} is fsynced");
            }
            let live = read_all(&spool).await;
            assert_eq!(ids(&live), [first.ids[0], small.ids[0], big.ids[0]]);
        }
    }
}

fn tag_summary(data: &[u8]) -> Vec<u8> {
    data[..8].to_vec()
}

/// Under `DropOldest` a single appender whose drops are settled never
/// waits: whatever the sizes, each append drops what it must and finishes. (The drop records a drop
/// adds to the ledger take room too: a drop that freed just the shortfall
/// left the append short of those bytes, and it waited for a writer cycle
/// that nothing would start. The timeout only turns such a hang into a
/// failure.)
#[tokio::test]
async fn drop_oldest_appends_finish_whatever_the_sizes() {
    for max in [2_000u64, 3_000, 4_096] {
        for len in [10usize, 37, 90, 150, 230] {
            let cfg = SpoolConfig {
                drop_summary: tag_summary,
                ..config(max, max / 8, FullPolicy::DropOldest)
            };
            let (spool, _) = open(&SimDisk::new(), cfg).await.expect("open");
            for tag in 0..300u64 {
                // Drops reported and settled as the agent does, so that the
                // ledger never fills (then appends wait, by design).
                if spool.stats().dropped_pending > 0 {
                    let drops = spool.read_dropped(None, usize::MAX).await.expect("ledger");
                    let ids: Vec<EntryId> = drops.iter().map(|d| d.id).collect();
                    spool.settle_dropped(&ids).await.expect("settle");
                }
                let size = len + (tag as usize * 7) % 50;
                tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    spool.append(vec![entry(tag, 1, size)]),
                )
                .await
                .unwrap_or_else(|_| panic!("append {tag} of {size} bytes (max {max}) hung"))
                .expect("append");
            }
            spool.close().await;
        }
    }
}
