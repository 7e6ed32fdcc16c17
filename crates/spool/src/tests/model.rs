//! Model-based property tests: random sequences of appends, reads,
//! acknowledgements, injected faults, clean reopens and power losses (also
//! in the middle of a writer cycle) against a simple in-memory model.
//!
//! The model holds the entries that must be there: every confirmed,
//! unacknowledged entry comes back after any reopen or crash, in id order,
//! exactly once, with its data; an acknowledged entry never comes back after
//! a clean reopen, nor after a crash once its segment file was deleted; an
//! append that failed without a crash never shows up; only appends and
//! acknowledgements cut short by a crash may go either way.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index as Pick;

use super::{config, open, open_uncached, read_all};
use crate::format::{SEGMENT_SUFFIX, parse_segment_name};
use crate::sim::{Fault, Op, SimDisk};
use crate::{Entry, EntryId, FullPolicy, NewEntry, Recovery, Spool, SpoolConfig};

#[derive(Clone, Debug)]
enum Step {
    Append(Vec<(u32, usize)>),
    Read {
        from: Pick,
        max_entries: usize,
        max_bytes: usize,
    },
    Ack {
        picks: Vec<Pick>,
        unknown: bool,
    },
    Reopen,
    Crash {
        seed: u64,
    },
    CrashDuringAppend {
        ops: u64,
        seed: u64,
        entries: Vec<(u32, usize)>,
    },
    CrashDuringAck {
        ops: u64,
        seed: u64,
        picks: Vec<Pick>,
    },
    FailingAppend {
        fault: usize,
        partial: usize,
        entries: Vec<(u32, usize)>,
    },
}

fn entries() -> impl Strategy<Value = Vec<(u32, usize)>> {
    prop::collection::vec((0u32..20, 0usize..300), 1..5)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => entries().prop_map(Step::Append),
        3 => (any::<Pick>(), 0usize..6, 0usize..1200)
            .prop_map(|(from, max_entries, max_bytes)| Step::Read { from, max_entries, max_bytes }),
        3 => (prop::collection::vec(any::<Pick>(), 1..6), any::<bool>())
            .prop_map(|(picks, unknown)| Step::Ack { picks, unknown }),
        1 => Just(Step::Reopen),
        1 => any::<u64>().prop_map(|seed| Step::Crash { seed }),
        1 => (0u64..12, any::<u64>(), entries())
            .prop_map(|(ops, seed, entries)| Step::CrashDuringAppend { ops, seed, entries }),
        1 => (0u64..8, any::<u64>(), prop::collection::vec(any::<Pick>(), 1..4))
            .prop_map(|(ops, seed, picks)| Step::CrashDuringAck { ops, seed, picks }),
        1 => (0usize..FAULTS.len(), prop_oneof![Just(0usize), 0usize..200, Just(usize::MAX)], entries())
            .prop_map(|(fault, partial, entries)| Step::FailingAppend { fault, partial, entries }),
    ]
}

/// Faults an append can meet: (operation, only files whose name contains).
const FAULTS: [(Op, &str); 5] = [
    (Op::Write, SEGMENT_SUFFIX),
    (Op::Sync, SEGMENT_SUFFIX),
    (Op::SetLen, SEGMENT_SUFFIX),
    (Op::OpenAppend, SEGMENT_SUFFIX),
    (Op::SyncDir, ""),
];

#[derive(Default)]
struct Model {
    live: BTreeMap<u64, (u32, Bytes)>,
    /// Entries of appends cut short by a crash: they may come back, under
    /// ids nobody saw.
    unconfirmed: HashMap<Bytes, u32>,
    /// Entries whose acknowledgement was cut short by a crash.
    maybe_acked: BTreeMap<u64, (u32, Bytes)>,
    /// Entries acknowledged since the last clean reopen, with the first id
    /// of their segment: a crash may bring them back while that segment
    /// file exists.
    acked: BTreeMap<u64, (u32, Bytes, u64)>,
    /// Data of appends that failed without a crash: must never show up.
    failed: HashSet<Bytes>,
    /// Highest id ever seen: new ids must be above it.
    highest: u64,
    tag: u64,
}

impl Model {
    fn new_entries(&mut self, shape: &[(u32, usize)]) -> Vec<NewEntry> {
        shape
            .iter()
            .map(|&(records, len)| {
                self.tag += 1;
                let mut data = self.tag.to_le_bytes().to_vec();
                data.resize(8 + len, self.tag as u8);
                NewEntry {
                    records,
                    data: Bytes::from(data),
                }
            })
            .collect()
    }

    fn confirm(&mut self, ids: &[EntryId], entries: Vec<NewEntry>) -> Result<(), TestCaseError> {
        prop_assert_eq!(ids.len(), entries.len());
        for (id, entry) in ids.iter().zip(entries) {
            prop_assert!(
                id.0 > self.highest,
                "id {} not above {}",
                id.0,
                self.highest
            );
            self.highest = id.0;
            self.live.insert(id.0, (entry.records, entry.data));
        }
        Ok(())
    }

    fn pick_live(&self, picks: &[Pick]) -> Vec<u64> {
        let ids: Vec<u64> = self.live.keys().copied().collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let mut chosen: Vec<u64> = picks.iter().map(|p| ids[p.index(ids.len())]).collect();
        chosen.sort_unstable();
        chosen.dedup();
        chosen
    }

    /// What `read_after` must return.
    fn expected_read(&self, after: Option<u64>, max_entries: usize, max_bytes: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for (&id, (_, data)) in self.live.range(after.map_or(0, |a| a + 1)..) {
            if out.len() >= max_entries.max(1)
                || (!out.is_empty() && bytes + data.len() > max_bytes)
            {
                break;
            }
            bytes += data.len();
            out.push(id);
        }
        out
    }

    fn check_entries(&self, entries: &[Entry]) -> Result<(), TestCaseError> {
        for entry in entries {
            let (records, data) = self.live.get(&entry.id.0).ok_or_else(|| {
                TestCaseError::fail(format!("entry {:?} is not live in the model", entry.id))
            })?;
            prop_assert_eq!(*records, entry.records);
            prop_assert_eq!(data, &entry.data);
        }
        Ok(())
    }

    fn check_stats(&self, spool: &Spool) -> Result<(), TestCaseError> {
        let stats = spool.stats();
        prop_assert_eq!(stats.entries, self.live.len() as u64);
        prop_assert_eq!(
            stats.records,
            self.live.values().map(|(r, _)| u64::from(*r)).sum::<u64>()
        );
        prop_assert_eq!(
            stats.bytes,
            self.live.values().map(|(_, d)| d.len() as u64).sum::<u64>()
        );
        Ok(())
    }

    /// Everything the spool holds must be exactly the model's live entries.
    async fn check_exact(&self, spool: &Spool) -> Result<(), TestCaseError> {
        let all = read_all(spool).await;
        prop_assert_eq!(
            all.iter().map(|e| e.id.0).collect::<Vec<_>>(),
            self.live.keys().copied().collect::<Vec<_>>()
        );
        self.check_entries(&all)
    }

    /// Moves acknowledged entries out of `live`, remembering their segment
    /// (the newest segment file named at or below the id).
    fn acknowledge(&mut self, ids: &[u64], segments: &[u64]) {
        for id in ids {
            if let Some((records, data)) = self.live.remove(id) {
                let segment = segments.iter().copied().filter(|&s| s <= *id).max();
                self.acked
                    .insert(*id, (records, data, segment.expect("its segment exists")));
            }
        }
    }

    /// After a crash: confirmed entries all back, the rest only if it was
    /// uncertain; then the recovered state is the new truth. `segments` are
    /// the segment files that existed when the power went out.
    async fn reconcile(
        &mut self,
        spool: &Spool,
        recovery: &Recovery,
        segments: &[u64],
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            recovery.corrupt_entries,
            0,
            "a crash alone damages nothing durable"
        );
        let all = read_all(spool).await;
        prop_assert_eq!(recovery.entries, all.len() as u64);
        let mut previous = 0;
        for entry in &all {
            prop_assert!(entry.id.0 > previous, "ids in order, each once");
            previous = entry.id.0;
            prop_assert!(
                !self.failed.contains(&entry.data),
                "an append that failed came back"
            );
            if let Some((_, _, segment)) = self.acked.get(&entry.id.0) {
                prop_assert!(
                    segments.contains(segment),
                    "acknowledged entry {:?} came back after its segment was deleted",
                    entry.id
                );
            }
            let known = self
                .live
                .get(&entry.id.0)
                .or(self.maybe_acked.get(&entry.id.0))
                .map(|(records, data)| (*records, data))
                .or(self
                    .acked
                    .get(&entry.id.0)
                    .map(|(records, data, _)| (*records, data)));
            match known {
                Some((records, data)) => {
                    prop_assert_eq!(records, entry.records);
                    prop_assert_eq!(data, &entry.data);
                }
                None => {
                    let records = self.unconfirmed.get(&entry.data);
                    prop_assert_eq!(
                        records,
                        Some(&entry.records),
                        "entry {:?} never appended",
                        entry.id
                    );
                }
            }
        }
        let back: HashSet<u64> = all.iter().map(|e| e.id.0).collect();
        for id in self.live.keys() {
            prop_assert!(back.contains(id), "confirmed entry {} lost", id);
        }
        self.live = all
            .into_iter()
            .map(|e| (e.id.0, (e.records, e.data)))
            .collect();
        self.highest = self.highest.max(previous);
        self.unconfirmed.clear();
        self.maybe_acked.clear();
        self.acked.clear();
        Ok(())
    }
}

struct Harness {
    disk: SimDisk,
    config: SpoolConfig,
    cached: bool,
    spool: Spool,
}

impl Harness {
    async fn open(disk: SimDisk, config: SpoolConfig, cached: bool) -> (Harness, Recovery) {
        let (spool, recovery) = if cached {
            open(&disk, config.clone()).await
        } else {
            open_uncached(&disk, config.clone()).await
        }
        .expect("open");
        (
            Harness {
                disk,
                config,
                cached,
                spool,
            },
            recovery,
        )
    }

    /// First ids of the segment files in the directory now.
    fn segments(&self) -> Vec<u64> {
        self.disk
            .names()
            .iter()
            .filter_map(|n| parse_segment_name(n))
            .collect()
    }

    /// A power loss now: the spool is abandoned, a new one opens what
    /// survived. Returns what open found and the segment files that existed.
    async fn crash(&mut self, seed: u64) -> (Recovery, Vec<u64>) {
        let segments = self.segments();
        let survivor = self.disk.crash(seed);
        let (next, recovery) = Harness::open(survivor, self.config.clone(), self.cached).await;
        *self = next;
        (recovery, segments)
    }
}

async fn run_model(
    steps: Vec<Step>,
    segment_bytes: u64,
    cached: bool,
    commit_delay_us: u64,
) -> Result<(), TestCaseError> {
    let config = SpoolConfig {
        commit_delay: std::time::Duration::from_micros(commit_delay_us),
        ..config(1 << 30, segment_bytes, FullPolicy::Backpressure)
    };
    let (mut h, _) = Harness::open(SimDisk::new(), config, cached).await;
    let mut m = Model::default();
    for step in steps {
        match step {
            Step::Append(shape) => {
                let entries = m.new_entries(&shape);
                let appended = h.spool.append(entries.clone()).await.expect("append");
                prop_assert_eq!(appended.dropped, Default::default());
                m.confirm(&appended.ids, entries)?;
            }
            Step::Read {
                from,
                max_entries,
                max_bytes,
            } => {
                let ids: Vec<u64> = m.live.keys().copied().collect();
                let at = from.index(ids.len() + 1);
                let after = at.checked_sub(1).map(|i| ids[i]);
                let expected = m.expected_read(after, max_entries, max_bytes);
                if !expected.is_empty() {
                    let read = h
                        .spool
                        .read_after(after.map(EntryId), max_entries, max_bytes)
                        .await
                        .expect("read");
                    prop_assert_eq!(read.iter().map(|e| e.id.0).collect::<Vec<_>>(), expected);
                    m.check_entries(&read)?;
                }
            }
            Step::Ack { picks, unknown } => {
                let mut ids: Vec<EntryId> = m.pick_live(&picks).into_iter().map(EntryId).collect();
                if unknown {
                    ids.push(EntryId(m.highest + 1000));
                    ids.push(EntryId(0));
                }
                let segments = h.segments();
                h.spool.ack(&ids).await.expect("ack");
                m.acknowledge(&ids.iter().map(|id| id.0).collect::<Vec<_>>(), &segments);
                // Acknowledging twice is harmless.
                h.spool.ack(&ids).await.expect("second ack");
            }
            Step::Reopen => {
                h.spool.close().await;
                let (next, recovery) =
                    Harness::open(h.disk.clone(), h.config.clone(), h.cached).await;
                h = next;
                prop_assert_eq!(recovery.entries, m.live.len() as u64);
                prop_assert_eq!(
                    recovery.truncated_bytes,
                    0,
                    "a clean close leaves no torn tail"
                );
                prop_assert_eq!(recovery.corrupt_entries, 0);
                m.acked.clear();
                m.check_exact(&h.spool).await?;
            }
            Step::Crash { seed } => {
                let (recovery, segments) = h.crash(seed).await;
                m.reconcile(&h.spool, &recovery, &segments).await?;
            }
            Step::CrashDuringAppend { ops, seed, entries } => {
                let entries = m.new_entries(&entries);
                h.disk.freeze_after(ops);
                match h.spool.append(entries.clone()).await {
                    Ok(appended) => m.confirm(&appended.ids, entries)?,
                    Err(_) => m
                        .unconfirmed
                        .extend(entries.into_iter().map(|e| (e.data, e.records))),
                }
                let (recovery, segments) = h.crash(seed).await;
                m.reconcile(&h.spool, &recovery, &segments).await?;
            }
            Step::CrashDuringAck { ops, seed, picks } => {
                let ids = m.pick_live(&picks);
                let segments = h.segments();
                h.disk.freeze_after(ops);
                let acked = h
                    .spool
                    .ack(&ids.iter().copied().map(EntryId).collect::<Vec<_>>())
                    .await;
                if acked.is_ok() {
                    m.acknowledge(&ids, &segments);
                } else {
                    for id in ids {
                        let entry = m.live.remove(&id).expect("picked from live");
                        m.maybe_acked.insert(id, entry);
                    }
                }
                let (recovery, segments) = h.crash(seed).await;
                m.reconcile(&h.spool, &recovery, &segments).await?;
            }
            Step::FailingAppend {
                fault,
                partial,
                entries,
            } => {
                let (op, name_contains) = FAULTS[fault];
                h.disk.inject(Fault {
                    partial,
                    name_contains,
                    ..Fault::new(op, std::io::ErrorKind::StorageFull)
                });
                let entries = m.new_entries(&entries);
                match h.spool.append(entries.clone()).await {
                    Ok(appended) => m.confirm(&appended.ids, entries)?,
                    Err(e) => {
                        prop_assert!(e.is_disk_full(), "{}", e);
                        m.failed.extend(entries.into_iter().map(|e| e.data));
                    }
                }
                h.disk.clear_faults();
                m.check_exact(&h.spool).await?;
            }
        }
        m.check_stats(&h.spool)?;
    }
    // Finally a clean reopen must give back exactly the model.
    h.spool.close().await;
    let (h, recovery) = Harness::open(h.disk.clone(), h.config.clone(), h.cached).await;
    prop_assert_eq!(recovery.entries, m.live.len() as u64);
    m.check_exact(&h.spool).await?;
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn spool_matches_the_model(
        steps in prop::collection::vec(step(), 1..40),
        segment_bytes in 40u64..3000,
        cached in any::<bool>(),
        commit_delay_us in prop_oneof![Just(0u64), Just(500)],
    ) {
        runtime().block_on(run_model(steps, segment_bytes, cached, commit_delay_us))?;
    }
}

#[derive(Clone, Debug)]
enum FullStep {
    Append(Vec<(u32, usize)>),
    Ack(Vec<Pick>),
    Settle(Vec<Pick>),
    Reopen,
    Crash {
        seed: u64,
    },
    CrashDuringAppend {
        ops: u64,
        seed: u64,
        entries: Vec<(u32, usize)>,
    },
}

fn full_step() -> impl Strategy<Value = FullStep> {
    prop_oneof![
        6 => prop::collection::vec((1u32..20, 0usize..200), 1..4).prop_map(FullStep::Append),
        2 => prop::collection::vec(any::<Pick>(), 1..6).prop_map(FullStep::Ack),
        2 => prop::collection::vec(any::<Pick>(), 1..6).prop_map(FullStep::Settle),
        1 => Just(FullStep::Reopen),
        1 => any::<u64>().prop_map(|seed| FullStep::Crash { seed }),
        1 => (0u64..16, any::<u64>(), prop::collection::vec((1u32..20, 0usize..200), 1..4))
            .prop_map(|(ops, seed, entries)| FullStep::CrashDuringAppend { ops, seed, entries }),
    ]
}

/// The ledger's summary in these tests: the entry's 8-byte tag.
fn tag_summary(data: &[u8]) -> Vec<u8> {
    data[..8].to_vec()
}

/// What the drop ledger must hold: drops not settled, by id, with their
/// record count and tag; and the drops settled since.
#[derive(Default)]
struct LedgerModel {
    pending: BTreeMap<u64, (u32, Bytes)>,
    settled: BTreeMap<u64, u32>,
}

impl LedgerModel {
    /// Moves a live entry of `m` to the ledger.
    fn drop_entry(&mut self, m: &mut Model, id: u64) -> Result<u32, TestCaseError> {
        let (records, data) = m
            .live
            .remove(&id)
            .ok_or_else(|| TestCaseError::fail(format!("dropped entry {id} was not live")))?;
        self.pending.insert(id, (records, data.slice(..8)));
        Ok(records)
    }

    /// The spool's ledger must be exactly the model's.
    async fn check(&self, spool: &Spool) -> Result<(), TestCaseError> {
        prop_assert_eq!(spool.stats().dropped_pending, self.pending.len() as u64);
        if self.pending.is_empty() {
            return Ok(());
        }
        let read = spool
            .read_dropped(None, usize::MAX)
            .await
            .expect("read ledger");
        let got: Vec<(u64, u32, Bytes)> = read
            .into_iter()
            .map(|d| (d.id.0, d.records, d.summary))
            .collect();
        let want: Vec<(u64, u32, Bytes)> = self
            .pending
            .iter()
            .map(|(&id, (records, tag))| (id, *records, tag.clone()))
            .collect();
        prop_assert_eq!(got, want);
        // Reading after a cursor starts after it (it would wait for a
        // newer drop when there is none).
        if self.pending.len() > 1 {
            let first = *self.pending.keys().next().expect("not empty");
            let after = spool
                .read_dropped(Some(EntryId(first)), 1)
                .await
                .map(|d| d.first().map(|d| d.id.0));
            prop_assert_eq!(after.ok().flatten(), self.pending.keys().nth(1).copied());
        }
        Ok(())
    }
}

/// Appends; should the append wait because the ledger holds all it may,
/// settles every drop in the spool's ledger (as a forwarder would) so it can
/// go on. Returns the append and the drops settled meanwhile (some of which
/// the append itself made, so the caller learns of them only now).
async fn append_settling(
    spool: &Spool,
    entries: Vec<NewEntry>,
) -> (crate::Appended, BTreeMap<u64, (u32, Bytes)>) {
    let mut settled = BTreeMap::new();
    let append = spool.append(entries);
    tokio::pin!(append);
    loop {
        tokio::select! {
            appended = &mut append => return (appended.expect("append"), settled),
            () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                let stats = spool.stats();
                if stats.blocked_appends > 0 && stats.dropped_pending > 0 {
                    let drops = spool.read_dropped(None, usize::MAX).await.expect("read ledger");
                    let ids: Vec<EntryId> = drops.iter().map(|d| d.id).collect();
                    spool.settle_dropped(&ids).await.expect("settle");
                    settled.extend(drops.into_iter().map(|d| (d.id.0, (d.records, d.summary))));
                }
            }
        }
    }
}

/// Under `DropOldest` a full spool drops exactly the oldest live entries,
/// reports them, never holds more than its bound on disk (ledger included),
/// and keeps every drop in its ledger until it is settled, across reopens
/// and crashes (also in the middle of an append that drops): every entry
/// ever confirmed is live, acknowledged, or in the ledger, and never both
/// live and dropped.
async fn run_drop_oldest(
    steps: Vec<FullStep>,
    max_bytes: u64,
    segment_bytes: u64,
) -> Result<(), TestCaseError> {
    let config = SpoolConfig {
        segment_bytes,
        drop_summary: tag_summary,
        ..config(max_bytes, segment_bytes, FullPolicy::DropOldest)
    };
    let (mut h, _) = Harness::open(SimDisk::new(), config, true).await;
    let mut m = Model::default();
    let mut ledger = LedgerModel::default();
    // Acknowledged entries: a crash may bring them back while their
    // segment file is there.
    let mut acked: BTreeMap<u64, (u32, Bytes)> = BTreeMap::new();
    let mut total_dropped = crate::Dropped::default();
    for step in steps {
        match step {
            FullStep::Append(shape) => {
                let entries = m.new_entries(&shape);
                let (appended, settled) = append_settling(&h.spool, entries.clone()).await;
                let dropped = appended.dropped;
                let oldest: Vec<u64> = m
                    .live
                    .keys()
                    .take(dropped.entries as usize)
                    .copied()
                    .collect();
                prop_assert_eq!(
                    oldest.len() as u64,
                    dropped.entries,
                    "dropped more than was live"
                );
                let mut records = 0;
                for id in oldest {
                    records += u64::from(ledger.drop_entry(&mut m, id)?);
                }
                prop_assert_eq!(
                    records,
                    dropped.records,
                    "dropped records are those of the oldest entries"
                );
                for (id, drop) in settled {
                    let pending = ledger.pending.remove(&id);
                    prop_assert_eq!(pending.as_ref(), Some(&drop), "settled drop {} unknown", id);
                    ledger.settled.insert(id, drop.0);
                }
                total_dropped += dropped;
                m.confirm(&appended.ids, entries)?;
            }
            FullStep::Ack(picks) => {
                let ids = m.pick_live(&picks);
                h.spool
                    .ack(&ids.iter().copied().map(EntryId).collect::<Vec<_>>())
                    .await
                    .expect("ack");
                for id in ids {
                    acked.extend(m.live.remove(&id).map(|entry| (id, entry)));
                }
            }
            FullStep::Settle(picks) => {
                let pending: Vec<u64> = ledger.pending.keys().copied().collect();
                let mut ids: Vec<u64> = if pending.is_empty() {
                    Vec::new()
                } else {
                    picks
                        .iter()
                        .map(|p| pending[p.index(pending.len())])
                        .collect()
                };
                // Unknown and live ids are ignored.
                ids.push(m.highest + 1000);
                ids.extend(m.live.keys().next().copied());
                h.spool
                    .settle_dropped(&ids.iter().copied().map(EntryId).collect::<Vec<_>>())
                    .await
                    .expect("settle");
                for id in ids {
                    if let Some((records, _)) = ledger.pending.remove(&id) {
                        ledger.settled.insert(id, records);
                    }
                }
            }
            FullStep::Reopen => {
                h.spool.close().await;
                let (next, recovery) = Harness::open(h.disk.clone(), h.config.clone(), true).await;
                h = next;
                prop_assert_eq!(recovery.entries, m.live.len() as u64);
                prop_assert_eq!(recovery.dropped_pending, ledger.pending.len() as u64);
                prop_assert_eq!(recovery.ledger_damaged_bytes, 0);
                total_dropped = crate::Dropped::default();
                acked.clear();
                m.check_exact(&h.spool).await?;
            }
            FullStep::Crash { seed } => {
                // Every operation completed: only acknowledgements may be
                // undone (their entries come back while their segment is
                // there); drops and settlements were fsynced.
                let (recovery, _) = h.crash(seed).await;
                prop_assert_eq!(recovery.corrupt_entries, 0);
                prop_assert_eq!(recovery.dropped_pending, ledger.pending.len() as u64);
                let all = read_all(&h.spool).await;
                let back: HashSet<u64> = all.iter().map(|e| e.id.0).collect();
                for id in m.live.keys() {
                    prop_assert!(back.contains(id), "confirmed entry {} lost", id);
                }
                for entry in &all {
                    let id = entry.id.0;
                    prop_assert!(
                        !ledger.pending.contains_key(&id) && !ledger.settled.contains_key(&id),
                        "dropped entry {} came back",
                        id
                    );
                    let known = m.live.get(&id).or(acked.get(&id));
                    prop_assert_eq!(known, Some(&(entry.records, entry.data.clone())));
                }
                m.live = all
                    .into_iter()
                    .map(|e| (e.id.0, (e.records, e.data)))
                    .collect();
                acked.clear();
                total_dropped = crate::Dropped::default();
            }
            FullStep::CrashDuringAppend { ops, seed, entries } => {
                let entries = m.new_entries(&entries);
                h.disk.freeze_after(ops);
                // An append that waits for the ledger to be settled is cut
                // short by the crash like one that fails.
                let appended = {
                    let append = h.spool.append(entries.clone());
                    tokio::pin!(append);
                    loop {
                        tokio::select! {
                            appended = &mut append => break appended.map_err(|_| ()),
                            () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                                if h.spool.stats().blocked_appends > 0 {
                                    break Err(());
                                }
                            }
                        }
                    }
                };
                let (recovery, _) = h.crash(seed).await;
                prop_assert_eq!(recovery.corrupt_entries, 0);
                // What the spool says now, and what the model knew.
                let all = read_all(&h.spool).await;
                let dropped_now: BTreeMap<u64, (u32, Bytes)> = if recovery.dropped_pending == 0 {
                    BTreeMap::new()
                } else {
                    h.spool
                        .read_dropped(None, usize::MAX)
                        .await
                        .expect("read ledger")
                        .into_iter()
                        .map(|d| (d.id.0, (d.records, d.summary)))
                        .collect()
                };
                let back: BTreeMap<u64, (u32, Bytes)> = all
                    .into_iter()
                    .map(|e| (e.id.0, (e.records, e.data)))
                    .collect();
                for (id, (records, data)) in &m.live {
                    match (back.get(id), dropped_now.get(id)) {
                        (Some(entry), None) => prop_assert_eq!(entry, &(*records, data.clone())),
                        (None, Some((r, tag))) => {
                            prop_assert_eq!(*r, *records);
                            prop_assert_eq!(tag, &data.slice(..8));
                        }
                        (Some(_), Some(_)) => {
                            return Err(TestCaseError::fail(format!(
                                "entry {id} both live and dropped"
                            )));
                        }
                        (None, None) => {
                            return Err(TestCaseError::fail(format!(
                                "entry {id} neither live nor dropped"
                            )));
                        }
                    }
                }
                for (id, pending) in &ledger.pending {
                    prop_assert_eq!(dropped_now.get(id), Some(pending), "drop {} forgotten", id);
                }
                // The new entries: confirmed ones are like the others; the
                // rest may or may not be there.
                let fresh: HashMap<Bytes, u32> = entries
                    .iter()
                    .map(|e| (e.data.clone(), e.records))
                    .collect();
                if let Ok(appended) = &appended {
                    for (id, entry) in appended.ids.iter().zip(&entries) {
                        prop_assert!(
                            back.get(&id.0).map(|(_, d)| d) == Some(&entry.data)
                                || dropped_now.contains_key(&id.0),
                            "confirmed entry {:?} lost",
                            id
                        );
                    }
                }
                for (id, (records, data)) in &back {
                    if m.live.contains_key(id) {
                        continue;
                    }
                    if let Some(known) = acked.get(id) {
                        prop_assert_eq!(known, &(*records, data.clone()));
                    } else {
                        prop_assert!(
                            *id > m.highest && fresh.get(data) == Some(records),
                            "entry {} never appended",
                            id
                        );
                    }
                }
                for id in dropped_now.keys() {
                    prop_assert!(
                        !acked.contains_key(id) && !ledger.settled.contains_key(id),
                        "entry {} dropped after its acknowledgement or settlement",
                        id
                    );
                }
                // The recovered state is the new truth.
                ledger.pending = dropped_now
                    .into_iter()
                    .filter(|(id, _)| !ledger.settled.contains_key(id))
                    .collect();
                m.highest = m
                    .highest
                    .max(back.keys().copied().max().unwrap_or(0))
                    .max(ledger.pending.keys().copied().max().unwrap_or(0));
                m.live = back;
                acked.clear();
                total_dropped = crate::Dropped::default();
            }
        }
        let stats = h.spool.stats();
        prop_assert!(
            stats.disk_bytes <= max_bytes,
            "{} bytes on disk over the bound {}",
            stats.disk_bytes,
            max_bytes
        );
        prop_assert_eq!(stats.dropped, total_dropped);
        m.check_stats(&h.spool)?;
        ledger.check(&h.spool).await?;
    }
    m.check_exact(&h.spool).await?;
    // A clean reopen keeps the ledger as it is.
    h.spool.close().await;
    let (h, recovery) = Harness::open(h.disk.clone(), h.config.clone(), true).await;
    prop_assert_eq!(recovery.dropped_pending, ledger.pending.len() as u64);
    ledger.check(&h.spool).await
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn drop_oldest_drops_the_oldest_keeps_the_bound_and_ledgers_every_drop(
        steps in prop::collection::vec(full_step(), 1..60),
        max_bytes in 1024u64..6000,
        segment_bytes in 50u64..1000,
    ) {
        runtime().block_on(run_drop_oldest(steps, max_bytes, segment_bytes))?;
    }
}
