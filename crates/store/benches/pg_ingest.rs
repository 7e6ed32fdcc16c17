//! Ingest throughput into PostgreSQL, the way control-plane replicas drive
//! it: several agents' calls at once, each one batch of records, the lines
//! marked printed behind them by a marker task per replica (as the server's
//! printer does).
//!
//! Scenarios, one after the other on one database:
//! 1. one replica;
//! 2. two replicas on the same database, agents spread across them;
//! 3. one replica while a retention purge of at least a million old rows
//!    runs beside it (the old rows are loaded first, not timed).
//!
//! Run: `cargo bench -p warden-store --bench pg_ingest`, with options after
//! `--`: `--batch N` records per call (default 500), `--records N` per
//! scenario (default 400000), `--agents N` concurrent agents (default 8),
//! `--purge-rows N` old rows for scenario 3 (default 1000000),
//! `--purge-batch N` rows per purge pass (default 2000). The cluster is a
//! private PostgreSQL 15 with production durability (fsync and synchronous
//! commit on), or the server `WARDEN_TEST_PG_URL` names.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::mpsc;
use uuid::Uuid;
use warden_proto::domain::{AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Peer};
use warden_store::{IngestRequest, NewWorkspace, PgStore, RecordId, Store, TokenHash, Workspace};
use warden_testpg::{Durability, TestPg};

struct Options {
    batch: usize,
    records: usize,
    agents: usize,
    purge_rows: usize,
    purge_batch: u32,
}

impl Options {
    fn parse() -> Options {
        let mut o = Options {
            batch: 500,
            records: 400_000,
            agents: 8,
            purge_rows: 1_000_000,
            purge_batch: 2000,
        };
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| -> Option<usize> {
            let i = args.iter().position(|a| a == name)?;
            let v = args.get(i + 1)?;
            Some(
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} wants a number, not {v:?}")),
            )
        };
        if let Some(v) = value("--batch") {
            o.batch = v.max(1);
        }
        if let Some(v) = value("--records") {
            o.records = v;
        }
        if let Some(v) = value("--agents") {
            o.agents = v.max(1);
        }
        if let Some(v) = value("--purge-rows") {
            o.purge_rows = v;
        }
        if let Some(v) = value("--purge-batch") {
            o.purge_batch = u32::try_from(v).unwrap_or(u32::MAX).max(1);
        }
        o
    }
}

fn batch(session: &str, records: usize, received_at: Timestamp) -> IngestBatch {
    let time = EventTime::Known(received_at - SignedDuration::from_millis(3));
    IngestBatch {
        batch_id: Uuid::now_v7(),
        received_at,
        peer: Peer {
            uid: 1000,
            gid: 1000,
            pid: 4242,
            comm: "claude".into(),
            exe: "/usr/local/bin/claude".into(),
        },
        logs: Some(ClientLogs {
            session_id: Some(session.into()),
            confined_process_name: "claude".into(),
            records: (0..records)
                .map(|i| {
                    let allowed = i % 7 != 0;
                    AuditRecord {
                        decision: Decision::from_allowed(allowed),
                        event_time: time,
                        method: "GET".into(),
                        url: format!("https://registry.npmjs.org/@types/node/-/node-22.{i}.tgz"),
                        matched_rule: if allowed {
                            "domain=registry.npmjs.org".into()
                        } else {
                            String::new()
                        },
                        sequence_number: i32::try_from(i).unwrap_or(i32::MAX),
                    }
                })
                .collect(),
            rejected: Vec::new(),
            policy_digest: None,
        }),
        client_status: Vec::new(),
        agent_drops: Vec::new(),
    }
}

async fn workspaces(store: &dyn Store, n: usize) -> Vec<Workspace> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            store
                .create_workspace(
                    NewWorkspace {
                        id: Uuid::now_v7(),
                        name: format!("bench-{}-{i}", Uuid::new_v4()),
                        owner: "bench".into(),
                        startup_script: String::new(),
                        agent_id: Uuid::new_v4(),
                        agent_name: "main".into(),
                        token_hash: TokenHash([7; 32]),
                    },
                    Timestamp::now(),
                )
                .await
                .expect("creating a workspace"),
        );
    }
    out
}

/// Marks lines printed behind the ingest, as the server's printer does.
fn marker(
    store: Arc<PgStore>,
) -> (
    mpsc::UnboundedSender<Vec<RecordId>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<RecordId>>();
    let task = tokio::spawn(async move {
        while let Some(mut ids) = rx.recv().await {
            while let Ok(more) = rx.try_recv() {
                ids.extend(more);
            }
            store
                .mark_printed(ids)
                .await
                .expect("marking lines printed");
        }
    });
    (tx, task)
}

struct Run {
    records: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        l.get(((l.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    }
}

/// Each agent sends calls of one batch until `total` records went in, the
/// agents spread over `replicas`.
async fn ingest(
    replicas: &[Arc<PgStore>],
    agents: &[Workspace],
    total: usize,
    batch_size: usize,
    received_at: Timestamp,
) -> Run {
    let markers: Vec<_> = replicas.iter().map(|r| marker(Arc::clone(r))).collect();
    let calls = total.div_ceil(batch_size);
    let per_agent = calls.div_ceil(agents.len());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, agent) in agents.iter().enumerate() {
        let store = Arc::clone(&replicas[i % replicas.len()]);
        let marks = markers[i % replicas.len()].0.clone();
        let agent = agent.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_agent);
            let mut stored = 0;
            for call in 0..per_agent {
                let request = Arc::new(IngestRequest {
                    agent_id: agent.agent.id,
                    // The control plane's receive time: what retention
                    // goes by (old for the rows scenario 3 purges).
                    at: received_at,
                    batches: vec![batch(
                        &format!("{}-{call}", Uuid::new_v4()),
                        batch_size,
                        received_at,
                    )],
                });
                let t = Instant::now();
                let outcome = store.ingest(request).await.expect("ingest");
                latencies.push(t.elapsed());
                stored += outcome.record_ids.len();
                let _ = marks.send(outcome.record_ids);
            }
            (stored, latencies)
        }));
    }
    let mut run = Run {
        records: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (stored, latencies) = task.await.expect("an agent task");
        run.records += stored;
        run.latencies.extend(latencies);
    }
    run.elapsed = started.elapsed();
    for (tx, task) in markers {
        drop(tx);
        task.await.expect("the marker task");
    }
    run
}

fn report(name: &str, run: &Run) {
    println!(
        "{name:<44} {:>10.0} records/s  ({} records in {:.2} s; call p50 {:.1} ms, p99 {:.1} ms)",
        run.rate(),
        run.records,
        run.elapsed.as_secs_f64(),
        run.percentile(0.5).as_secs_f64() * 1000.0,
        run.percentile(0.99).as_secs_f64() * 1000.0,
    );
}

#[tokio::main]
async fn main() {
    let o = Options::parse();
    let pg = TestPg::start_with(Durability::Durable).expect("a PostgreSQL database");
    let a = Arc::new(PgStore::open(pg.url()).await.expect("opening replica a"));
    let b = Arc::new(PgStore::open(pg.url()).await.expect("opening replica b"));
    let agents = workspaces(&*a, o.agents).await;
    println!(
        "PostgreSQL ingest: {} agents, {} records per call, synchronous commit on",
        o.agents, o.batch
    );

    // Warm-up: prepared statements, caches.
    ingest(
        &[Arc::clone(&a)],
        &agents,
        o.batch * o.agents * 2,
        o.batch,
        Timestamp::now(),
    )
    .await;

    let one = ingest(
        &[Arc::clone(&a)],
        &agents,
        o.records,
        o.batch,
        Timestamp::now(),
    )
    .await;
    report("1 replica", &one);
    let two = ingest(
        &[Arc::clone(&a), Arc::clone(&b)],
        &agents,
        o.records,
        o.batch,
        Timestamp::now(),
    )
    .await;
    report("2 replicas", &two);

    // Scenario 3: old rows to purge, loaded untimed.
    let old = Timestamp::now() - SignedDuration::from_hours(24 * 400);
    let loaded = ingest(&[Arc::clone(&a)], &agents, o.purge_rows, 1000, old).await;
    println!(
        "loaded {} old records to purge ({:.0} records/s)",
        loaded.records,
        loaded.rate()
    );
    let cutoff = Timestamp::now() - SignedDuration::from_hours(24 * 30);
    let purger = {
        let store = Arc::clone(&b);
        let max_rows = o.purge_batch;
        tokio::spawn(async move {
            let started = Instant::now();
            let mut purged = 0u64;
            let mut passes = 0u64;
            loop {
                let pass = store
                    .purge_records_before(cutoff, max_rows)
                    .await
                    .expect("purge pass");
                if pass.is_empty() {
                    return (purged, passes, started.elapsed());
                }
                purged += pass.records;
                passes += 1;
            }
        })
    };
    // Ingest for as long as the purge runs, in rounds.
    let mut during = Run {
        records: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    while !purger.is_finished() {
        let round = ingest(
            &[Arc::clone(&a)],
            &agents,
            o.batch * o.agents * 20,
            o.batch,
            Timestamp::now(),
        )
        .await;
        during.records += round.records;
        during.elapsed += round.elapsed;
        during.latencies.extend(round.latencies);
    }
    let (purged, passes, purge_time) = purger.await.expect("the purge task");
    report("1 replica, purge running", &during);
    println!(
        "purge: {purged} rows in {passes} passes of <= {} in {:.2} s ({:.0} rows/s)",
        o.purge_batch,
        purge_time.as_secs_f64(),
        purged as f64 / purge_time.as_secs_f64()
    );
    a.close().await.expect("closing a");
    b.close().await.expect("closing b");
}
