//! Reading the audit trail at scale: the record query API over 10 million
//! stored records on SQLite.
//!
//! Setup (once, timed and printed): a fresh database with the server's
//! schema and ten workspaces, then 10 million records (1 million per
//! workspace, one in ten denied, in batches of 1000) written with direct
//! SQL (a recursive CTE), which is much faster than ingest. It prints the
//! query plan SQLite picks, then measures:
//!
//! - `store/newest_100_denied_of_one_workspace`: the operator's first
//!   question (`warden logs --workspace W --decision deny`), through the
//!   store; the target is well under 50 ms;
//! - `store/newest_100_of_one_workspace` and
//!   `store/older_page_of_denials` (a keyset page from the middle);
//! - `http/newest_100_denied_of_one_workspace`: the same through a running
//!   server (admin auth, JSON, a TCP round trip per call).
//!
//! `cargo bench -p warden-server --bench query`; `WARDEN_BENCH_RECORDS`
//! changes the record count (default 10 000 000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use sqlx::{ConnectOptions, Connection, Row};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use warden_api::ApiClient;
use warden_api::records::RecordParams;
use warden_proto::domain::Decision;
use warden_server::{AdminTokenSource, Config, LineSink, WriterSink};
use warden_store::{
    DatabaseUrl, NewWorkspace, Order, RecordQuery, SqliteStore, Store, TokenHash, Workspace,
};

const WORKSPACES: usize = 10;
const BATCH: i64 = 1000;
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
/// 2025-12-08T20:58:46Z: event times start here.
const T0: i64 = 1_765_227_526;

fn record_count() -> i64 {
    std::env::var("WARDEN_BENCH_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= BATCH)
        .unwrap_or(10_000_000)
}

struct Data {
    dir: tempfile::TempDir,
    /// The workspace the queries ask about.
    workspace: Workspace,
}

impl Data {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("warden.db")
    }
}

/// The schema and workspaces through the store, then the records with
/// direct SQL.
async fn generate(records: i64) -> Data {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let mut workspaces = Vec::new();
    for i in 0..WORKSPACES {
        workspaces.push(
            store
                .create_workspace(
                    NewWorkspace {
                        id: Uuid::now_v7(),
                        name: format!("ws-{i}"),
                        owner: "bench".into(),
                        startup_script: String::new(),
                        agent_id: Uuid::new_v4(),
                        agent_name: "main".into(),
                        token_hash: TokenHash([0; 32]),
                    },
                    Timestamp::now(),
                )
                .await
                .unwrap(),
        );
    }
    store.close().await.unwrap();

    let started = Instant::now();
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    let agents: Vec<i64> = sqlx::query("SELECT id FROM agents ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        agents,
        (agents[0]..agents[0] + WORKSPACES as i64).collect::<Vec<_>>(),
        "agent keys are contiguous"
    );
    // A bulk load: no journal, no fsync, a big cache. WAL again afterwards,
    // as the store runs it.
    for pragma in [
        "PRAGMA journal_mode=DELETE",
        "PRAGMA journal_mode=OFF",
        "PRAGMA synchronous=OFF",
        "PRAGMA cache_size=-1000000",
        "PRAGMA temp_store=MEMORY",
    ] {
        sqlx::query(pragma).execute(&mut conn).await.unwrap();
    }
    let batches = records / BATCH;
    // Batch b belongs to workspace b % 10; its records are numbered
    // b*1000.. and share its session.
    sqlx::query(
        "WITH RECURSIVE n(b) AS (SELECT 0 UNION ALL SELECT b + 1 FROM n WHERE b + 1 < ?1) \
         INSERT INTO batches (id, agent_id, uuid, received_secs, received_nanos, committed_at, \
             session_id, process, peer_uid, peer_gid, peer_pid, peer_comm, peer_exe) \
         SELECT b + 1, ?2 + b % ?3, randomblob(16), ?4 + b, 0, (?4 + b) * 1000000000, \
             's' || b, 'claude', 1000, 1000, 7, 'boundary', '/usr/bin/boundary' FROM n",
    )
    .bind(batches)
    .bind(agents[0])
    .bind(WORKSPACES as i64)
    .bind(T0)
    .execute(&mut conn)
    .await
    .unwrap();
    // One record in ten denied; URLs over 997 hosts.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1) \
         INSERT INTO records (id, batch_id, agent_id, session_id, sequence_number, event_secs, \
             event_nanos, allowed, method, url, matched_rule, conflict, occurred_ns) \
         SELECT i + 1, i / ?2 + 1, ?3 + (i / ?2) % ?4, 's' || (i / ?2), i % ?2, ?5 + i / ?2, \
             (i % ?2) * 1000000, i % 10 <> 3, 'GET', \
             'https://host' || (i % 997) || '.example/path/' || i, '', 0, \
             (?5 + i / ?2) * 1000000000 + (i % ?2) * 1000000 FROM n",
    )
    .bind(records)
    .bind(BATCH)
    .bind(agents[0])
    .bind(WORKSPACES as i64)
    .bind(T0)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("PRAGMA journal_mode=WAL")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    println!(
        "generated {records} records in {} workspaces in {:.1} s",
        WORKSPACES,
        started.elapsed().as_secs_f64()
    );
    Data {
        dir,
        workspace: workspaces.swap_remove(3),
    }
}

fn newest_denied(workspace: &Workspace) -> RecordQuery {
    RecordQuery {
        workspace_id: Some(workspace.id),
        decision: Some(Decision::Deny),
        order: Order::NewestFirst,
        limit: 100,
        ..Default::default()
    }
}

fn query(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let records = record_count();
    let data = runtime.block_on(generate(records));
    let store = Arc::new(runtime.block_on(SqliteStore::open(&data.path())).unwrap());

    let plan = runtime
        .block_on(store.records_plan(&newest_denied(&data.workspace)))
        .unwrap();
    println!("query plan of the newest denials of one workspace:");
    for step in &plan {
        println!("  {step}");
    }
    let found = runtime
        .block_on(store.records(newest_denied(&data.workspace)))
        .unwrap();
    assert_eq!(found.len(), 100);
    assert!(found.iter().all(|r| r.decision == Decision::Deny));
    assert!(found.windows(2).all(|w| w[0].id > w[1].id));

    let mut group = c.benchmark_group(format!("query_sqlite_{records}_records"));
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("store/newest_100_denied_of_one_workspace", |b| {
        b.iter(|| {
            runtime
                .block_on(store.records(newest_denied(&data.workspace)))
                .unwrap()
        });
    });
    group.bench_function("store/newest_100_of_one_workspace", |b| {
        let q = RecordQuery {
            decision: None,
            ..newest_denied(&data.workspace)
        };
        b.iter(|| runtime.block_on(store.records(q.clone())).unwrap());
    });
    group.bench_function("store/older_page_of_denials", |b| {
        let q = RecordQuery {
            before_id: Some(records / 2),
            ..newest_denied(&data.workspace)
        };
        b.iter(|| runtime.block_on(store.records(q.clone())).unwrap());
    });
    runtime.block_on(store.close()).unwrap();

    // The same question through a running server.
    let shutdown = CancellationToken::new();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = Config::new(
        DatabaseUrl::Sqlite(data.path()),
        AdminTokenSource::Given(ADMIN_TOKEN.into()),
    );
    let lines: Arc<dyn LineSink> = Arc::new(WriterSink::new(std::io::sink()));
    let server = runtime.spawn(warden_server::run(
        config,
        listener,
        shutdown.clone(),
        lines,
    ));
    let client = ApiClient::new(&url, ADMIN_TOKEN, None).unwrap();
    let params = RecordParams {
        workspace: Some(data.workspace.name.clone()),
        decision: Some("deny".into()),
        limit: Some("100".into()),
        ..Default::default()
    };
    let page = runtime.block_on(client.records(&params)).unwrap();
    assert_eq!(page.records.len(), 100);
    group.bench_function("http/newest_100_denied_of_one_workspace", |b| {
        b.iter(|| runtime.block_on(client.records(&params)).unwrap());
    });
    group.finish();
    shutdown.cancel();
    runtime.block_on(server).unwrap().unwrap();
}

criterion_group!(benches, query);
criterion_main!(benches);
