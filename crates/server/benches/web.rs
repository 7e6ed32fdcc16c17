//! The web page's speed, measured in headless Chromium (not a test: the
//! figures go to `docs/benchmarks.md`).
//!
//! Setup: a SQLite database with ten workspaces and `WARDEN_BENCH_RECORDS`
//! records (default 10 million; one in ten denied) whose times spread evenly
//! over the last `WARDEN_BENCH_SPAN_HOURS` hours (default 24), written
//! through the store's ingest as the query bench does (`dataset`). Then a
//! control plane on it, and `tests/browser/bench.mjs` in Chromium:
//!
//! - navigation timing (`responseEnd`, `loadEventEnd`) of the feed, the
//!   feed filtered to denials, and the overview, the median of
//!   `WARDEN_BENCH_RUNS` loads after a warm-up (target: 300 ms);
//! - the live feed while this bench sends `WARDEN_BENCH_LIVE_RATE` records
//!   a second (default 1000) for `WARDEN_BENCH_LIVE_SECS` (default 600)
//!   through the agent API: every 10 s the tab's JS heap, its renderer's
//!   resident memory, its DOM nodes and how far the newest row lags
//!   (target: the memory stays under 200 MiB).
//!
//! `cargo bench -p warden-server --bench web` (needs what the browser test
//! needs: `scripts/install-test-deps.sh`). `WARDEN_BENCH_DB=PATH` keeps the
//! generated database at PATH and reuses it on the next run.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warden_api::ApiClient;
use warden_api::workspaces::CreateWorkspace;
use warden_proto::wire;
use warden_server::{AdminTokenSource, Config, LineSink, WriterSink};
use warden_store::DatabaseUrl;

mod dataset;

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The generated database (see `dataset`), its records spread evenly over
/// the last `span_hours` hours.
async fn generate(path: &Path, records: i64, span_hours: i64) {
    let span_ns = span_hours * 3600 * 1_000_000_000;
    let start_ns = Timestamp::now().as_nanosecond() as i64 - span_ns;
    dataset::generate(path, records, start_ns, span_ns / records).await;
}

/// Sends `rate` records a second for `secs` through the agent API, in
/// batches every 100 ms, each record stamped with the time it is made.
async fn load(url: String, token: String, rate: u64, secs: u64) -> u64 {
    let mut agent = support::Agent::connect(&url, &token).await;
    let per_tick = (rate / 10).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let started = Instant::now();
    let mut sent = 0u64;
    let mut seq = 0i32;
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let now = Timestamp::now();
        let time = wire::Timestamp {
            seconds: now.as_second(),
            nanos: now.subsec_nanosecond(),
        };
        let logs = (0..per_tick)
            .map(|_| {
                seq += 1;
                wire::BoundaryLog {
                    time: Some(time),
                    ..support::log(
                        seq,
                        seq % 10 != 3,
                        "GET",
                        &format!("https://live{}.example/path/{seq}", seq % 97),
                        "",
                    )
                }
            })
            .collect();
        agent
            .report(vec![support::batch(Some("live"), logs)])
            .await
            .unwrap();
        sent += per_tick;
    }
    sent
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let records: i64 = dataset::record_count(10_000_000);
    let span_hours: i64 = env_or("WARDEN_BENCH_SPAN_HOURS", 24);
    let rate: u64 = env_or("WARDEN_BENCH_LIVE_RATE", 1000);
    let live_secs: u64 = env_or("WARDEN_BENCH_LIVE_SECS", 600);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let temp = tempfile::tempdir().unwrap();
    let path = std::env::var_os("WARDEN_BENCH_DB")
        .map_or_else(|| temp.path().join("warden.db"), PathBuf::from);
    if !path.exists() {
        runtime.block_on(generate(&path, records, span_hours));
    } else {
        println!("reusing {}", path.display());
    }
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let config = Config::new(
            DatabaseUrl::Sqlite(path.clone()),
            AdminTokenSource::Given(ADMIN_TOKEN.into()),
        );
        let lines: Arc<dyn LineSink> = Arc::new(WriterSink::new(std::io::sink()));
        let server = tokio::spawn(warden_server::run(
            config,
            listener,
            shutdown.clone(),
            lines,
        ));
        let admin = ApiClient::new(&url, ADMIN_TOKEN, None).unwrap();
        // The live load's workspace (a token the bench knows).
        let live = match admin.rotate_token("live").await {
            Ok(t) => t,
            Err(_) => admin
                .create_workspace(&CreateWorkspace {
                    name: "live".into(),
                    owner: "bench".into(),
                    agent_name: None,
                    startup_script: None,
                })
                .await
                .unwrap(),
        };
        let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        let mut child = tokio::process::Command::new("node")
            .arg(browser.join("bench.mjs"))
            .current_dir(&browser)
            .env("WARDEN_URL", &url)
            .env("WARDEN_TOKEN", ADMIN_TOKEN)
            .env("WARDEN_BENCH_LIVE_SECS", live_secs.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting node (see scripts/install-test-deps.sh)");
        let mut stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut sender = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "need stream" {
                sender = Some(tokio::spawn(load(
                    url.clone(),
                    live.agent_token.clone(),
                    rate,
                    live_secs,
                )));
                stdin.write_all(b"sent\n").await.unwrap();
            } else if line == "done" {
                break;
            } else {
                println!("{line}");
            }
        }
        assert!(child.wait().await.unwrap().success(), "bench.mjs failed");
        if let Some(sender) = sender {
            let sent = sender.await.unwrap();
            println!("sent {sent} records in {live_secs} s ({rate}/s asked)");
        }
        shutdown.cancel();
        server.await.unwrap().unwrap();
    });
}
