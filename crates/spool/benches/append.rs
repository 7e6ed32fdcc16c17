//! Append throughput with group commit, on the real file system.
//!
//! Concurrent appenders (tasks) append entries of 10 records of about 150
//! bytes each (~1.6 KB per entry) while a forwarder-like consumer reads and
//! acknowledges them, so the spool stays under its bound as in production
//! and segment files are created and deleted along the way. Every append
//! waits for its fsync. Throughput is reported in records/s and bytes/s.
//!
//! Run: `cargo bench -p warden-spool --bench append -- --warm-up-time 1 --measurement-time 5`
//!
//! The spool lives in the system temp directory, so the numbers are those of
//! that disk's fsync latency and bandwidth. To measure the spool's own
//! overhead without the disk, run with `TMPDIR=/dev/shm` (tmpfs: fsync is
//! free).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use warden_spool::{NewEntry, Spool, SpoolConfig};

const RECORDS_PER_ENTRY: u32 = 10;
const RECORD_BYTES: usize = 160;

/// (appending tasks, entries per append call). An append resolves only
/// after its fsync, so throughput is (entries in flight) / (fsync latency):
/// the shapes show how group commit scales with concurrency and batching.
const SHAPES: [(usize, usize); 4] = [(8, 1), (64, 1), (8, 16), (8, 64)];

fn typical_entry(seq: usize) -> NewEntry {
    // Record-like bytes rather than zeros, so nothing downstream can cheat.
    let mut data = Vec::with_capacity(RECORD_BYTES * RECORDS_PER_ENTRY as usize);
    for record in 0..RECORDS_PER_ENTRY as usize {
        let line = format!(
            "{seq:012}/{record:02} GET https://api.github.com/repos/coder/coder/pulls/{:05}/files?page=2 allow domain=api.github.com",
            seq % 99_991
        );
        let mut bytes = line.into_bytes();
        bytes.resize(RECORD_BYTES, b' ');
        data.extend_from_slice(&bytes);
    }
    NewEntry {
        records: RECORDS_PER_ENTRY,
        data: Bytes::from(data),
    }
}

/// Reads and acknowledges everything appended, as the forwarder does.
async fn consume(spool: Spool) {
    let mut cursor = None;
    loop {
        let read = spool.read_after(cursor, 4096, 8 << 20).await.expect("read");
        cursor = read.last().map(|e| e.id).or(cursor);
        let ids: Vec<_> = read.iter().map(|e| e.id).collect();
        spool.ack(&ids).await.expect("ack");
    }
}

async fn append_calls(spool: &Spool, tasks: usize, per_call: usize, calls: u64) -> Duration {
    let entry = typical_entry(7);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks as u64 {
        let spool = spool.clone();
        let entry = entry.clone();
        // Spread `calls` over the tasks.
        let mine = calls / tasks as u64 + u64::from(task < calls % tasks as u64);
        handles.push(tokio::spawn(async move {
            for _ in 0..mine {
                let entries = vec![entry.clone(); per_call];
                spool.append(entries).await.expect("append");
            }
        }));
    }
    for handle in handles {
        handle.await.expect("appender");
    }
    start.elapsed()
}

fn append(c: &mut Criterion) {
    let runtime = Arc::new(Runtime::new().expect("runtime"));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("append");
    for (tasks, per_call) in SHAPES {
        let spool_dir = dir.path().join(format!("{tasks}x{per_call}"));
        let (spool, _) = runtime
            .block_on(Spool::open(SpoolConfig::new(spool_dir)))
            .expect("open spool");
        let consumer = runtime.spawn(consume(spool.clone()));

        let entry_bytes = typical_entry(0).data.len() as u64;
        group.throughput(Throughput::ElementsAndBytes {
            elements: per_call as u64 * u64::from(RECORDS_PER_ENTRY),
            bytes: per_call as u64 * entry_bytes,
        });
        let id = BenchmarkId::new(
            format!("{tasks}_tasks_x_{per_call}_entries_of_10_records"),
            "records",
        );
        group.bench_function(id, |b| {
            b.iter_custom(|calls| runtime.block_on(append_calls(&spool, tasks, per_call, calls)));
        });
        consumer.abort();
        runtime.block_on(spool.close());
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
