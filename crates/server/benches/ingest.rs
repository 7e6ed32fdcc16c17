//! Ingest throughput into SQLite: the server's ingest path (commit with the
//! outbox rows, format the lines, write them to a file, mark them printed)
//! with batches of 100 records, as one agent calling in a loop and as 4 and
//! 16 agents calling at once (group commit shares the fsyncs).
//!
//! `cargo bench -p warden-server --bench ingest`; criterion reports
//! records/s as "thrpt".

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use uuid::Uuid;
use warden_proto::domain::{
    AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Manifest, Peer,
};
use warden_server::ingest::Ingestor;
use warden_server::line::{LineFormat, Printer, WriterSink};
use warden_server::metrics::Metrics;
use warden_store::{IngestRequest, NewWorkspace, SqliteStore, Store, TokenHash};

const RECORDS_PER_BATCH: usize = 100;

struct Bench {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    ingestor: Arc<Ingestor>,
    printer: Printer,
    manifests: Vec<Manifest>,
    seq: AtomicI32,
}

async fn setup(agents: usize) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("warden.db"))
            .await
            .unwrap(),
    );
    let mut manifests = Vec::new();
    for i in 0..agents {
        let w = store
            .create_workspace(
                NewWorkspace {
                    id: Uuid::now_v7(),
                    name: format!("bench-{i}"),
                    owner: "bench".into(),
                    startup_script: String::new(),
                    agent_id: Uuid::new_v4(),
                    agent_name: "main".into(),
                    token_hash: TokenHash([0; 32]),
                },
                Timestamp::now(),
            )
            .await
            .unwrap();
        manifests.push(w.manifest());
    }
    let file = std::fs::File::create(dir.path().join("lines.log")).unwrap();
    let metrics = Arc::new(Metrics::new());
    let printer = Printer::start(
        Arc::new(WriterSink::new(file)),
        Arc::clone(&store),
        Arc::clone(&metrics),
    );
    let ingestor = Arc::new(Ingestor::new(
        Arc::clone(&store),
        printer.queue(),
        LineFormat::Text,
        metrics,
    ));
    Bench {
        _dir: dir,
        store,
        ingestor,
        printer,
        manifests,
        seq: AtomicI32::new(0),
    }
}

/// One call's worth: a batch of 100 records of a session.
fn request(manifest: &Manifest, session: &str, first_seq: i32) -> IngestRequest {
    let records = (0..RECORDS_PER_BATCH as i32)
        .map(|i| AuditRecord {
            decision: if i % 3 == 0 {
                Decision::Deny
            } else {
                Decision::Allow
            },
            event_time: EventTime::Known(Timestamp::now()),
            method: "GET".into(),
            url: format!("https://api.example.com/v1/items/{}?page=2", first_seq + i),
            matched_rule: if i % 3 == 0 {
                String::new()
            } else {
                "domain=example.com".into()
            },
            sequence_number: first_seq + i,
        })
        .collect();
    IngestRequest {
        agent_id: manifest.agent_id,
        at: Timestamp::now(),
        batches: vec![IngestBatch {
            batch_id: Uuid::now_v7(),
            received_at: Timestamp::now(),
            peer: Peer {
                uid: 1000,
                gid: 1000,
                pid: 4242,
                comm: "boundary".into(),
                exe: "/usr/local/bin/boundary".into(),
            },
            logs: Some(ClientLogs {
                session_id: Some(session.to_owned()),
                confined_process_name: "claude".into(),
                records,
                rejected: Vec::new(),
                ..Default::default()
            }),
            client_status: Vec::new(),
            agent_drops: Vec::new(),
        }],
    }
}

/// Runs `calls` ingest calls spread over the bench's agents, concurrently.
async fn run_calls(bench: &Bench, calls: u64) -> Duration {
    let agents = bench.manifests.len() as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (a, manifest) in bench.manifests.iter().enumerate() {
        let share = calls / agents + u64::from((a as u64) < calls % agents);
        let ingestor = Arc::clone(&bench.ingestor);
        let manifest = manifest.clone();
        let first = bench
            .seq
            .fetch_add((share as i32) * RECORDS_PER_BATCH as i32, Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            let session = format!("session-{}", manifest.agent_id);
            for call in 0..share as i32 {
                let request = request(&manifest, &session, first + call * RECORDS_PER_BATCH as i32);
                ingestor.ingest(manifest.clone(), request).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// Lets the last lines out and closes the store.
async fn teardown(bench: Bench) {
    let Bench {
        store,
        ingestor,
        printer,
        ..
    } = bench;
    ingestor.drain().await;
    drop(ingestor);
    printer.shutdown().await;
    store.close().await.unwrap();
}

fn ingest(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("ingest_sqlite");
    group.throughput(Throughput::Elements(RECORDS_PER_BATCH as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for agents in [1usize, 4, 16] {
        let bench = runtime.block_on(setup(agents));
        group.bench_function(format!("batches_of_100/{agents}_agents"), |b| {
            b.iter_custom(|calls| runtime.block_on(run_calls(&bench, calls)));
        });
        runtime.block_on(teardown(bench));
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
