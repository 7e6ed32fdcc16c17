//! Reading the audit trail at scale: the record query API over 10 million
//! stored records on SQLite.
//!
//! Setup (once, timed and printed): a fresh database with ten workspaces,
//! then 10 million records (1 million per workspace, one in ten denied,
//! realistic URLs: popular and rare hosts, paths with names and ids, query
//! strings) written through the store's ingest in calls of 10,000 records;
//! it prints the ingest rate and the bytes on disk per record, the query
//! plan SQLite picks, then measures:
//!
//! - `store/newest_100_denied_of_one_workspace`: the operator's first
//!   question (`warden logs --workspace W --decision deny`), through the
//!   store; the target is well under 50 ms;
//! - `store/newest_100_of_one_workspace` and
//!   `store/older_page_of_denials` (a keyset page from the middle);
//! - `store/summaries_of_every_workspace`: what `/api/v1/summaries` reads
//!   (target: 100 ms at 10 million records);
//! - `store/url_contains_over_every_record`: a URL search matching a few
//!   records, which reads every block's URLs (target: 1 s at 10 million);
//! - `http/newest_100_denied_of_one_workspace`: the same through a running
//!   server (admin auth, JSON, a TCP round trip per call).
//!
//! `cargo bench -p warden-server --bench query`; `WARDEN_BENCH_RECORDS`
//! changes the record count (default 10 000 000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use warden_api::ApiClient;
use warden_api::records::RecordParams;
use warden_proto::domain::{AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Peer};
use warden_server::{AdminTokenSource, Config, LineSink, WriterSink};
use warden_store::{
    ActivityQuery, DatabaseUrl, IngestRequest, NewWorkspace, Order, RecordQuery, SqliteStore,
    Store, TokenHash, Workspace,
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

/// Hosts of the generated URLs: some popular, many rare.
fn host(n: u64) -> String {
    const POPULAR: [&str; 8] = [
        "github.com",
        "api.github.com",
        "pypi.org",
        "files.pythonhosted.org",
        "registry.npmjs.org",
        "crates.io",
        "static.crates.io",
        "objects.githubusercontent.com",
    ];
    if !n.is_multiple_of(4) {
        POPULAR[(n / 4 % 8) as usize].to_owned()
    } else {
        format!("svc-{}.example{}.com", n % 977, n % 13)
    }
}

/// A realistic URL for record `n`: a host, a path with names and ids, and
/// sometimes a query string.
fn url(n: u64) -> String {
    // A cheap mix, so that neighbouring records differ.
    let x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    let path = match x % 5 {
        0 => format!(
            "/repos/org-{}/project-{}/pulls/{}",
            x % 300,
            x % 1700,
            x % 90_000
        ),
        1 => format!("/simple/package-{}/", x % 20_000),
        2 => format!(
            "/packages/{:02x}/{:02x}/{:016x}/pkg-{}.whl",
            x % 256,
            (x >> 8) % 256,
            x,
            x % 5000
        ),
        3 => format!(
            "/api/v1/crates/crate-{}/{}.{}.{}/download",
            x % 9000,
            x % 4,
            x % 30,
            x % 12
        ),
        _ => format!("/v2/objects/{:032x}", u128::from(x) * 0x1_0000_0001),
    };
    let query = if x.is_multiple_of(3) {
        format!("?ref={:08x}&page={}", x >> 20, x % 40)
    } else {
        String::new()
    };
    format!("https://{}{path}{query}", host(x >> 3))
}

/// A fresh database with ten workspaces and `records` records (spread evenly,
/// one in ten denied), written through the store's ingest in calls of 10,000
/// records: the blocks a real server writes.
async fn generate(records: i64) -> Data {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("warden.db"))
        .await
        .unwrap();
    let mut workspaces = Vec::new();
    for i in 0..WORKSPACES {
        workspaces.push(
            store
                .create_workspace(
                    NewWorkspace {
                        id: Uuid::now_v7(),
                        name: format!("ws-{i}"),
                        owner: format!("owner-{}", i % 3),
                        startup_script: String::new(),
                        agent_id: Uuid::new_v4(),
                        agent_name: "main".into(),
                        token_hash: TokenHash([i as u8; 32]),
                    },
                    Timestamp::now(),
                )
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    let per_call = 10 * BATCH;
    let mut n: i64 = 0;
    let mut call = 0usize;
    while n < records {
        let w = &workspaces[call % WORKSPACES];
        let session = format!("session-{}", call / WORKSPACES / 10);
        let mut batches = Vec::new();
        let mut in_call = 0;
        while in_call < per_call && n < records {
            let size = BATCH.min(records - n);
            let first_seq = (call / WORKSPACES % 10) as i64 * per_call + in_call;
            batches.push(IngestBatch {
                batch_id: Uuid::now_v7(),
                received_at: Timestamp::new(T0 + n / 1000, 0).unwrap(),
                peer: Peer {
                    uid: 1000,
                    gid: 1000,
                    pid: 4242,
                    comm: "claude".into(),
                    exe: "/usr/bin/claude".into(),
                },
                logs: Some(ClientLogs {
                    session_id: Some(session.clone()),
                    confined_process_name: "claude".into(),
                    records: (0..size)
                        .map(|i| {
                            let k = (n + i) as u64;
                            AuditRecord {
                                decision: if k.is_multiple_of(10) {
                                    Decision::Deny
                                } else {
                                    Decision::Allow
                                },
                                event_time: EventTime::Known(
                                    Timestamp::new(
                                        T0 + (n + i) / 1000,
                                        ((k % 1000) * 1_000_000) as i32,
                                    )
                                    .unwrap(),
                                ),
                                method: if k.is_multiple_of(7) { "POST" } else { "GET" }.into(),
                                url: url(k),
                                matched_rule: if k.is_multiple_of(10) {
                                    String::new()
                                } else {
                                    format!("domain={}", host(k >> 3))
                                },
                                sequence_number: (first_seq + i) as i32,
                            }
                        })
                        .collect(),
                    ..Default::default()
                }),
                client_status: Vec::new(),
                agent_drops: Vec::new(),
            });
            n += size;
            in_call += size;
        }
        let outcome = store
            .ingest(Arc::new(IngestRequest {
                agent_id: w.agent.id,
                at: Timestamp::new(T0 + n / 1000, 0).unwrap(),
                batches,
            }))
            .await
            .unwrap();
        // As a server's printer would: the server started below then has no
        // lines to print again.
        store.mark_printed(outcome.record_ids).await.unwrap();
        call += 1;
    }
    store.close().await.unwrap();
    let bytes = std::fs::metadata(dir.path().join("warden.db"))
        .unwrap()
        .len();
    println!(
        "generated {records} records in {} workspaces in {:.1} s ({:.0} records/s through ingest); \
         database {:.1} MB, {:.1} bytes per record (no search index: a URL search reads blocks)",
        WORKSPACES,
        started.elapsed().as_secs_f64(),
        records as f64 / started.elapsed().as_secs_f64(),
        bytes as f64 / 1e6,
        bytes as f64 / records as f64,
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
    // What `/api/v1/summaries` asks for every workspace: all-time counts and
    // the most denied hosts, losses, sessions.
    group.bench_function("store/summaries_of_every_workspace", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for w in store.list_workspaces().await.unwrap() {
                    store
                        .workspace_activity(ActivityQuery {
                            workspace_id: w.id,
                            since: None,
                            until: None,
                            top_hosts: 10,
                        })
                        .await
                        .unwrap();
                    store.workspace_losses(w.id).await.unwrap();
                    store.sessions(w.id).await.unwrap();
                }
            })
        });
    });
    group.finish();
    // A URL search that matches a handful of records: every block's URLs
    // are read (there is no search index).
    let rare = url(records as u64 / 2);
    let needle = rare.split('/').next_back().unwrap_or(&rare).to_owned();
    let search = RecordQuery {
        url_contains: Some(needle.clone()),
        order: Order::NewestFirst,
        limit: 100,
        ..Default::default()
    };
    let found = runtime.block_on(store.records(search.clone())).unwrap();
    println!("url_contains {needle:?} finds {} records", found.len());
    assert!(!found.is_empty());
    let mut slow = c.benchmark_group(format!("query_sqlite_{records}_records_scan"));
    slow.sample_size(10);
    slow.measurement_time(Duration::from_secs(20));
    slow.bench_function("store/url_contains_over_every_record", |b| {
        b.iter(|| runtime.block_on(store.records(search.clone())).unwrap());
    });
    slow.finish();
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
    let mut group = c.benchmark_group(format!("query_sqlite_{records}_records_http"));
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("http/newest_100_denied_of_one_workspace", |b| {
        b.iter(|| runtime.block_on(client.records(&params)).unwrap());
    });
    group.finish();
    shutdown.cancel();
    runtime.block_on(server).unwrap().unwrap();
}

criterion_group!(benches, query);
criterion_main!(benches);
