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
//! changes the record count (default 10 000 000). `WARDEN_BENCH_DB=PATH`
//! keeps the generated database at `PATH` and, when `PATH` already holds
//! one, measures it without generating again (give the same
//! `WARDEN_BENCH_RECORDS` both times): a 100 million record
//! database takes minutes to build, and its queries are best measured
//! later on a quiet machine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warden_api::ApiClient;
use warden_api::records::RecordParams;
use warden_proto::domain::Decision;
use warden_server::{AdminTokenSource, Config, LineSink, WriterSink};
use warden_store::{ActivityQuery, DatabaseUrl, Order, RecordQuery, SqliteStore, Store, Workspace};

mod dataset;

use dataset::url;

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
/// 2025-12-08T20:58:46Z: event times start here.
const T0: i64 = 1_765_227_526;

struct Data {
    /// Where the database is: a temporary directory (deleted at the end)
    /// or the file `WARDEN_BENCH_DB` names (kept).
    place: Place,
    /// The workspace the queries ask about.
    workspace: Workspace,
}

enum Place {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Data {
    fn path(&self) -> PathBuf {
        match &self.place {
            Place::Temporary(dir) => dir.path().join("warden.db"),
            Place::Kept(path) => path.clone(),
        }
    }
}

/// The workspace every query asks about (one of the ten).
const QUERIED_WORKSPACE: usize = 3;

/// The database to measure: the one `WARDEN_BENCH_DB` names if it exists,
/// else a generated one where record `n` happens at `T0 + n` ms.
async fn database(records: i64) -> Data {
    let place = match std::env::var_os("WARDEN_BENCH_DB") {
        Some(path) => Place::Kept(PathBuf::from(path)),
        None => Place::Temporary(tempfile::tempdir().unwrap()),
    };
    let path = match &place {
        Place::Temporary(dir) => dir.path().join("warden.db"),
        Place::Kept(path) => path.clone(),
    };
    let mut workspaces = if path.exists() {
        println!("measuring the database kept at {}", path.display());
        let store = SqliteStore::open(&path).await.unwrap();
        let mut workspaces = store.list_workspaces().await.unwrap();
        store.close().await.unwrap();
        workspaces.sort_by(|a, b| a.name.cmp(&b.name));
        workspaces
    } else {
        dataset::generate(&path, records, T0 * 1_000_000_000, 1_000_000).await
    };
    Data {
        place,
        workspace: workspaces.swap_remove(QUERIED_WORKSPACE),
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
    let records = dataset::record_count(10_000_000);
    let data = runtime.block_on(database(records));
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
