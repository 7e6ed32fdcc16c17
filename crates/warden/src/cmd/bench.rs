//! `warden bench`: pushes records from N concurrent client connections
//! through a real agent, spool and server into the store, and reports
//! records/s end to end, end-to-end latency percentiles, and the agent's and
//! server's CPU time and peak memory.
//!
//! The agent and the server run as child processes of this binary (`warden
//! agent`, `warden server`) in a fresh work dir, so /proc tells their CPU
//! seconds (utime + stime, measured over the run) and peak resident memory
//! (VmHWM) apart from the clients', which run here ([`load`]). Latency is
//! measured where the pipeline ends: the server prints a record's boundary
//! line after committing it, and [`lines`] timestamps each line as it
//! arrives on the server's stderr against the event time the client put in
//! the record.
//!
//! Exit codes: 0 when every record arrived, 1 otherwise or on a failure, 2
//! for bad flags.

mod calls;
mod latency;
mod lines;
mod load;
mod peer;
mod procs;
mod report;
mod stages;

use clap::builder::BoolishValueParser;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use warden_api::ApiClient;
use warden_api::time::parse_duration;
use warden_api::workspaces::CreateWorkspace;
use warden_client::AckPolicy;

use super::failure::{self, Failure};
use calls::Calls;
use latency::Latency;
use lines::ServerLines;
use load::Load;
use procs::{Process, Usage};
use report::{ProcessFigures, Report};

/// How long the children may take to start, and to stop.
const START_LIMIT: Duration = Duration::from_secs(60);
const STOP_LIMIT: Duration = Duration::from_secs(60);
/// A run fails when no boundary line arrives for this long.
const STALL_LIMIT: Duration = Duration::from_secs(60);
/// What the agent prints once its socket accepts connections.
const AGENT_READY: &[u8] = b"warden agent boundary log socket at";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Concurrent client connections (one warden-client auditor each).
    #[arg(long, env = "WARDEN_BENCH_CLIENTS", default_value_t = 8)]
    clients: usize,
    /// Records in all, split evenly between the clients.
    #[arg(long, env = "WARDEN_BENCH_RECORDS", default_value_t = 400_000)]
    records: u64,
    /// Encoded size of one record in bytes (its URL is padded to it).
    #[arg(long, env = "WARDEN_BENCH_RECORD_SIZE", default_value_t = 200)]
    record_size: usize,
    /// Most records per client frame (a frame also ends before 32 KiB).
    #[arg(long, env = "WARDEN_BENCH_BATCH_SIZE", default_value_t = 100)]
    batch_size: usize,
    /// A client sends a partial batch this long after its first record.
    #[arg(long, env = "WARDEN_BENCH_BATCH_INTERVAL", default_value = "5ms", value_parser = parse_duration)]
    batch_interval: Duration,
    /// Records per second in all, paced evenly over the clients (for latency
    /// at a fixed load) [default: as fast as the pipeline takes them].
    #[arg(long, env = "WARDEN_BENCH_RATE")]
    rate: Option<f64>,
    /// `sqlite` (a fresh database in the work dir) or a `postgres://` URL
    /// (the server's admin token there is set to the bench's).
    #[arg(long, env = "WARDEN_BENCH_STORE", default_value = "sqlite")]
    store: String,
    /// Ask the agent to confirm records durable (`auto`) or not (`off`).
    #[arg(long, env = "WARDEN_BENCH_ACKS", value_enum, default_value_t = Acks::Auto)]
    acks: Acks,
    /// Directory to create the work dir (spool, database) in [default: the
    /// system's temporary directory].
    #[arg(long, env = "WARDEN_BENCH_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Print the results as one JSON object on stdout instead of text.
    #[arg(long, env = "WARDEN_BENCH_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    /// First send the same records (clients, count, size) through a peer and
    /// report both and the ratio: `rsyslog` forwards them over RELP to a
    /// second rsyslog writing one line per record (needs Debian's `rsyslog`
    /// and `rsyslog-relp`).
    #[arg(long, env = "WARDEN_BENCH_COMPARE", value_enum)]
    compare: Option<Peer>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Peer {
    Rsyslog,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Acks {
    Auto,
    Off,
}

/// Where the records go.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Store {
    Sqlite,
    Postgres(String),
}

impl Args {
    fn check(&self) -> anyhow::Result<Store> {
        if self.clients == 0 || self.clients > 10_000 {
            return Err(anyhow!("--clients must be between 1 and 10000"));
        }
        if self.records < self.clients as u64 {
            return Err(anyhow!("--records must be at least --clients"));
        }
        let smallest = load::record_size(0);
        if self.record_size < smallest || self.record_size > 30_000 {
            return Err(anyhow!(
                "--record-size must be between {smallest} and 30000 bytes"
            ));
        }
        if self.batch_size == 0 {
            return Err(anyhow!("--batch-size must be at least 1"));
        }
        if self.batch_interval.is_zero() {
            return Err(anyhow!("--batch-interval must be positive"));
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(anyhow!("--rate must be a positive number of records/s"));
        }
        match self.store.as_str() {
            "sqlite" => Ok(Store::Sqlite),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Store::Postgres(url.to_owned()))
            }
            other => Err(anyhow!(
                "--store {other:?} is neither sqlite nor a postgres:// URL"
            )),
        }
    }
}

pub fn main(args: Args) -> ExitCode {
    failure::exit("bench", run(&args))
}

fn run(args: &Args) -> Result<(), Failure> {
    let store = args.check().map_err(Failure::usage)?;
    let report = bench(args, &store).map_err(Failure::runtime)?;
    if args.json {
        let json = serde_json::to_string(&report)
            .context("encoding the results")
            .map_err(Failure::runtime)?;
        println!("{json}");
    } else {
        print!("{report}");
    }
    Ok(())
}

fn bench(args: &Args, store: &Store) -> anyhow::Result<Report> {
    let exe = std::env::current_exe().context("finding this program")?;
    let parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("warden-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a work dir in {}", parent.display()))?;
    let peer = match args.compare {
        Some(Peer::Rsyslog) => Some(peer::rsyslog(
            work.path(),
            args.clients,
            args.records,
            args.record_size,
        )?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    let server_lines = ServerLines::new();
    let admin_token = std::env::var("WARDEN_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| {
            format!(
                "bench-{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )
        });
    let server = start_server(&exe, work.path(), store, &admin_token, &server_lines)?;
    let url = server_lines
        .url()
        .map(str::to_owned)
        .context("the server's URL")?;

    let admin = ApiClient::new(&url, admin_token, None).context("the server's URL")?;
    let workspace = runtime.block_on(async {
        let name = format!("bench-{}", jiff::Timestamp::now().as_millisecond());
        admin
            .create_workspace(&CreateWorkspace {
                name,
                owner: "bench".into(),
                agent_name: None,
                startup_script: None,
            })
            .await
    });
    let workspace = workspace.context("registering the bench workspace")?;
    server_lines.follow(&workspace.workspace_id.to_string());

    let socket = work.path().join("agent.sock");
    let agent = start_agent(&exe, work.path(), &url, &workspace.agent_token, &socket)?;

    let url_padding = load::padding_for(args.record_size);
    let load = Load {
        socket,
        clients: args.clients,
        records: args.records,
        url_padding,
        batch_size: args.batch_size,
        batch_interval: args.batch_interval,
        rate: args.rate,
        acks: match args.acks {
            Acks::Auto => AckPolicy::Auto,
            Acks::Off => AckPolicy::Off,
        },
    };
    eprintln!(
        "warden bench: {} clients sending {} records through the agent (pid {}) and the server (pid {}, {})",
        args.clients,
        args.records,
        agent.pid(),
        server.pid(),
        match store {
            Store::Sqlite => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    );
    let before = (agent.usage()?, server.usage()?, Usage::of("self")?);
    let sent = runtime.block_on(load.run())?;
    let last_line = wait_for_lines(&server_lines, args.records, sent.started)?;
    let after = (agent.usage()?, server.usage()?, Usage::of("self")?);
    let calls = runtime
        .block_on(admin.metrics_text())
        .map_err(anyhow::Error::from)
        .and_then(|text| {
            calls::ingest_calls(&text).context("the server's metrics count no ingest calls")
        })
        .inspect_err(|error| eprintln!("warden bench: no call count: {error:#}"))
        .ok();

    // Stop the agent first: it may still hold acknowledgements to send.
    let stopped_agent = agent.stop(STOP_LIMIT);
    let stopped_server = server.stop(STOP_LIMIT);
    stopped_agent?;
    stopped_server?;

    let stages = runtime
        .block_on(async {
            let url = match store {
                Store::Sqlite => {
                    warden_store::DatabaseUrl::Sqlite(work.path().join("server").join("warden.db"))
                }
                Store::Postgres(url) => warden_store::DatabaseUrl::Postgres(url.clone()),
            };
            stages::read(&url, workspace.workspace_id).await
        })
        .inspect_err(|error| eprintln!("warden bench: no per-stage figures: {error:#}"))
        .ok();
    drop(runtime);

    let seconds = last_line.duration_since(sent.started).as_secs_f64();
    let records = args.records;
    let records_per_second = records as f64 / seconds;
    let (agent_used, server_used) = (after.0.since(before.0), after.1.since(before.1));
    let mut latencies = server_lines.take_latencies();
    if server_lines.untimed() > 0 {
        eprintln!(
            "warden bench: {} boundary lines had no readable event time",
            server_lines.untimed()
        );
    }
    Ok(Report {
        clients: args.clients,
        records,
        record_size: load::record_size(url_padding),
        batch_size: args.batch_size,
        batch_interval_ms: args.batch_interval.as_secs_f64() * 1e3,
        rate: args.rate,
        acknowledgements: args.acks == Acks::Auto,
        store: match store {
            Store::Sqlite => "sqlite".into(),
            Store::Postgres(_) => "postgres".into(),
        },
        seconds,
        records_per_second,
        accepted_per_second: records as f64 / sent.accepted_after.as_secs_f64(),
        latency: Latency::of(&mut latencies),
        stages,
        calls: calls
            .map(|calls| Calls::new(calls, records, seconds, server_used.cpu, agent_used.cpu)),
        agent: ProcessFigures::new(agent_used, records),
        server: ProcessFigures::new(server_used, records),
        clients_process: ProcessFigures::new(after.2.since(before.2), records),
        ratio_to_peer: peer
            .as_ref()
            .map(|p| records_per_second / p.records_per_second),
        peer,
    })
}

/// `warden server` on a free loopback port; returns once it listens.
fn start_server(
    exe: &Path,
    work: &Path,
    store: &Store,
    admin_token: &str,
    lines: &Arc<ServerLines>,
) -> anyhow::Result<Process> {
    let mut args: Vec<OsString> = vec![
        "server".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        work.join("server").into(),
    ];
    let mut envs = vec![
        ("WARDEN_ADMIN_TOKEN", admin_token.to_owned()),
        ("WARDEN_LOG", "info".to_owned()),
        ("WARDEN_LOG_FORMAT", "text".to_owned()),
    ];
    if let Store::Postgres(url) = store {
        // Through the environment: a URL may hold a password.
        envs.push(("WARDEN_DATABASE_URL", url.clone()));
    } else {
        args.push("--database-url".into());
        args.push(
            format!(
                "sqlite://{}",
                work.join("server").join("warden.db").display()
            )
            .into(),
        );
    }
    let reader = Arc::clone(lines);
    let mut server = Process::spawn("server", exe, &args, &envs, move |chunk| {
        reader.on_lines(chunk)
    })?;
    wait_until("the server listens", START_LIMIT, &mut server, || {
        lines.url().is_some()
    })?;
    Ok(server)
}

/// `warden agent` for the bench workspace; returns once its socket is up.
fn start_agent(
    exe: &Path,
    work: &Path,
    url: &str,
    token: &str,
    socket: &Path,
) -> anyhow::Result<Process> {
    let args: Vec<OsString> = vec![
        "agent".into(),
        "--url".into(),
        url.into(),
        "--data-dir".into(),
        work.join("agent").into(),
        "--boundary-log-proxy-socket-path".into(),
        socket.into(),
        "--shutdown-grace".into(),
        "30s".into(),
    ];
    let envs = [
        ("CODER_AGENT_TOKEN", token.to_owned()),
        ("WARDEN_LOG", "warn".to_owned()),
    ];
    let ready = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&ready);
    let mut agent = Process::spawn("agent", exe, &args, &envs, move |chunk| {
        for line in procs::lines(chunk) {
            if line.windows(AGENT_READY.len()).any(|w| w == AGENT_READY) {
                seen.store(true, Ordering::Release);
            } else {
                eprint!("agent: {}", String::from_utf8_lossy(line));
            }
        }
    })?;
    wait_until("the agent's socket is up", START_LIMIT, &mut agent, || {
        ready.load(Ordering::Acquire)
    })?;
    Ok(agent)
}

/// Polls `ready` until it holds, failing when the process exits first or
/// `limit` passes.
fn wait_until(
    what: &str,
    limit: Duration,
    process: &mut Process,
    ready: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !ready() {
        if let Some(code) = process.exited() {
            return Err(anyhow!(
                "the {} exited (code {code:?}) before {what}",
                process.name
            ));
        }
        if Instant::now() >= deadline {
            return Err(anyhow!("timed out waiting until {what}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Waits until the server printed a line for every record; returns when the
/// last one arrived. Fails when lines stop coming.
fn wait_for_lines(lines: &ServerLines, records: u64, started: Instant) -> anyhow::Result<Instant> {
    let mut progress = (lines.printed(), Instant::now());
    loop {
        let printed = lines.printed();
        if printed >= records {
            return Ok(lines.last_line().unwrap_or_else(Instant::now).max(started));
        }
        if printed != progress.0 {
            progress = (printed, Instant::now());
        } else if progress.1.elapsed() > STALL_LIMIT {
            return Err(anyhow!(
                "only {printed} of {records} boundary lines after {STALL_LIMIT:?} without progress"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::parse_args;

    fn check(argv: &[&str]) -> anyhow::Result<Store> {
        parse_args::<Args>(argv)?.check()
    }

    #[test]
    fn flags_are_checked_before_anything_starts() {
        assert_eq!(check(&[]).unwrap(), Store::Sqlite);
        assert_eq!(
            check(&["--store", "postgres://u@h/db"]).unwrap(),
            Store::Postgres("postgres://u@h/db".into())
        );
        for argv in [
            &["--clients", "0"][..],
            &["--clients", "8", "--records", "7"],
            &["--record-size", "10"],
            &["--record-size", "40000"],
            &["--batch-size", "0"],
            &["--batch-interval", "0s"],
            &["--rate", "0"],
            &["--rate", "inf"],
            &["--store", "mysql://x"],
        ] {
            assert!(check(argv).is_err(), "{argv:?}");
        }
    }
}
