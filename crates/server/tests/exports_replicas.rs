//! Two control-plane replicas on one PostgreSQL database with the same
//! export sink: one replica at a time exports it (the lease in the store),
//! the other takes over once the holder dies, and every record reaches the
//! sink once, whichever replica committed it.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tokio_util::sync::CancellationToken;
use warden_server::export::{ExportSettings, SinkTarget};
use warden_server::{AdminTokenSource, Config};
use warden_store::DatabaseUrl;
use warden_testpg::TestPg;

fn config(pg: &TestPg, file: &Path) -> Config {
    let mut config = Config::new(
        DatabaseUrl::Postgres(pg.url().to_owned()),
        AdminTokenSource::Given(ADMIN_TOKEN.into()),
    );
    config.exports = ExportSettings {
        sinks: vec![SinkTarget::Ocsf {
            path: file.to_owned(),
            max_bytes: 1 << 30,
            keep: 1,
        }],
        lease: Duration::from_secs(1),
        poll: Duration::from_millis(100),
        ..ExportSettings::default()
    };
    config
}

/// A replica in a runtime of its own, so that the test can kill it the way
/// a crash would: every task stops where it is and its connections close,
/// with no graceful shutdown (its lease is not released).
struct Replica {
    addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
}

impl Replica {
    fn start(config: Config) -> Replica {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = warden_server::run(config, listener, CancellationToken::new(), Capture::new())
                .await;
        });
        Replica { addr, runtime }
    }

    fn kill(self) {
        self.runtime.shutdown_background();
    }
}

async fn metric_of(addr: SocketAddr, series: &str) -> Option<f64> {
    let (status, body) = http_get(addr, "/metrics").await;
    if status != 200 {
        return None;
    }
    metric(&body, series)
}

/// Waits until `series` on `addr` has `value`.
async fn wait_metric(addr: SocketAddr, series: &str, value: f64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        // A replica still starting refuses connections: ask again.
        let reachable = tokio::net::TcpStream::connect(addr).await.is_ok();
        if reachable && metric_of(addr, series).await == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {value} on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The record ids in the file, each once.
async fn wait_for_ids(file: &Path, n: usize) -> BTreeSet<i64> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let ids: Vec<i64> = text
            .lines()
            .map(|l| {
                let event: Value = serde_json::from_str(l).unwrap();
                event["metadata"]["uid"].as_str().unwrap().parse().unwrap()
            })
            .collect();
        let set: BTreeSet<i64> = ids.iter().copied().collect();
        assert_eq!(set.len(), ids.len(), "a record was exported twice: {ids:?}");
        if ids.len() >= n {
            assert_eq!(ids.len(), n, "more records than were sent");
            return set;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {n} events, got {}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn report(server: &Server, workspace: &str, n: i32) {
    let token = server.workspace(workspace).await.agent_token;
    let mut agent = server.agent(&token).await;
    agent
        .report(vec![batch(Some(SESSION), logs(0..n))])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_exports_a_sink_and_another_takes_over_when_it_dies() {
    let pg = TestPg::start().expect("a PostgreSQL test database");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    const HELD: &str = "warden_export_lease_held{sink=\"ocsf\"}";
    const DELIVERED: &str = "warden_export_records_total{sink=\"ocsf\"}";
    const CURSOR: &str = "warden_export_cursor{sink=\"ocsf\"}";

    let a = Replica::start(config(&pg, &file));
    wait_metric(a.addr, HELD, 1.0).await;
    let b = Server::start_with(config(&pg, &file), dir.path(), Capture::new()).await;

    // Records committed by B are exported by A, the lease holder.
    report(&b, "dev", 30).await;
    let ids = wait_for_ids(&file, 30).await;
    let last = *ids.last().unwrap();
    wait_metric(a.addr, CURSOR, last as f64).await;
    assert_eq!(metric_of(a.addr, DELIVERED).await, Some(30.0));
    let (_, metrics) = b.get("/metrics").await;
    assert_eq!(metric(&metrics, DELIVERED), Some(0.0));
    assert_eq!(metric(&metrics, HELD), Some(0.0));

    // A dies without releasing its lease: B takes the sink over once the
    // lease expires, from A's cursor.
    a.kill();
    report(&b, "ops", 20).await;
    let ids = wait_for_ids(&file, 50).await;
    assert_eq!(ids.len(), 50);
    wait_metric(b.addr, HELD, 1.0).await;
    wait_metric(b.addr, DELIVERED, 20.0).await;
    let store = warden_store::PgStore::open(pg.url()).await.unwrap();
    let states = warden_store::Store::export_states(&store).await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].cursor, *ids.last().unwrap());
    warden_store::Store::close(&store).await.unwrap();
    b.stop().await.unwrap();
}
