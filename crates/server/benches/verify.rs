//! Offline verification at scale: `warden verify --data-dir` over a
//! generated SQLite store of a few million records (the `dataset` the
//! `query` bench reads, written through the store's ingest, so the chain
//! has one link per group commit as a server's has).
//!
//! - `store/check_chain`: the chain alone ([`check_store`]: every link's
//!   head, every record's leaf from its block, every link's records hash);
//! - `evidence/verify_store`: what `warden verify --data-dir` runs (the
//!   chain, the checkpoints, the session verdicts and the admin events).
//!
//! Criterion prints records/s (`thrpt`). `cargo bench -p warden-server
//! --bench verify`; `WARDEN_BENCH_RECORDS` changes the record count
//! (default 3 000 000).

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden_evidence::verify::{Trust, verify_store};
use warden_store::chain::check::check_store;
use warden_store::{SqliteStore, Store};

mod dataset;

/// 2025-12-08T20:58:46Z: event times start here.
const T0: i64 = 1_765_227_526;

/// This process's user and system CPU time so far, seconds (Linux:
/// `/proc/self/stat`, in clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime: fields 14 and 15 of the line, 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn verify(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let records = dataset::record_count(3_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    runtime.block_on(dataset::generate(
        &path,
        records,
        T0 * 1_000_000_000,
        1_000_000,
    ));
    let store = runtime.block_on(SqliteStore::open(&path)).unwrap();

    // One timed run first, with the CPU it took (all threads): on a loaded
    // machine CPU per record says more than wall time.
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let report = runtime
        .block_on(verify_store(&store, &Trust::default()))
        .unwrap();
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!("{}", report.verdict());
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.counts.records, records as u64);
    println!(
        "verify_store: {records} records in {wall:.2} s ({:.0} records/s), {cpu:.2} s of CPU ({:.3} µs per record, {:.2} cores busy)",
        records as f64 / wall,
        cpu * 1e6 / records as f64,
        cpu / wall,
    );

    let mut group = c.benchmark_group(format!("verify_sqlite_{records}_records"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(records as u64));
    group.bench_function("store/check_chain", |b| {
        b.iter(|| {
            let checker = runtime.block_on(check_store(&store)).unwrap();
            let (problems, counts) = checker.finish();
            assert!(problems.is_empty());
            counts
        });
    });
    group.bench_function("evidence/verify_store", |b| {
        b.iter(|| {
            let report = runtime
                .block_on(verify_store(&store, &Trust::default()))
                .unwrap();
            assert!(report.ok());
            report.counts
        });
    });
    group.finish();
    runtime.block_on(store.close()).unwrap();
}

criterion_group!(benches, verify);
criterion_main!(benches);
