//! `warden dev`: the whole pipeline on one machine with embedded defaults,
//! for a first look and for developing against.
//!
//! In this one process, on real sockets: a control plane (`warden_server`,
//! SQLite in the data dir, loopback only) whose boundary lines are shown as
//! they are printed; a workspace registered through its admin API (created
//! the first time, its agent token rotated on every later run, so re-runs
//! reuse the data); that workspace's agent (`warden_agent::run`, socket in
//! the data dir); and a demo producer sending a mix of allowed and denied
//! requests through `warden_client`. Then it says how to query the records
//! and how to point a sandbox at the socket, and runs until Ctrl-C, which
//! stops the producer, the agent (flushing its spool) and the server, in
//! that order. It prints the web page's address and the admin token to
//! sign in with.
//!
//! The data dir is laid out like `warden server`'s (`warden.db`,
//! `admin-token`, `server-url`), so `warden logs --data-dir` and `warden
//! workspace --data-dir` work on it; the agent keeps its spool in
//! `agents/<workspace id>/`.
//!
//! Exit codes: 0 after Ctrl-C, 1 runtime failure, 2 usage or configuration.

mod demo;
mod display;

use clap::builder::BoolishValueParser;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warden_agent::{AgentConfig, AgentError, RetryPolicy, Token};
use warden_api::ApiClient;
use warden_api::client::ADMIN_TOKEN_FILE;
use warden_api::workspaces::{CreateWorkspace, WorkspaceToken};
use warden_server::{AdminTokenSource, Config, LineFormat, ServerError};
use warden_store::DatabaseUrl;

use super::failure::{self, Failure};
use super::process::{init_logging, on_shutdown_signal, private_files, write_server_url};
use display::Lines;

/// Longest Unix socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Time the agent gets on Ctrl-C to hand its spool to the server.
const AGENT_GRACE: Duration = Duration::from_secs(5);
/// Time the server gets on Ctrl-C for open calls.
const SERVER_GRACE: Duration = Duration::from_secs(5);
/// How long the demo waits for the lines of its records before it moves on.
const LINES_WAIT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the database, the admin token, the server URL and the agent's
    /// spool live; kept between runs.
    #[arg(long, env = "WARDEN_DEV_DATA_DIR", default_value = "./warden-dev")]
    data_dir: PathBuf,
    /// Loopback address of the control plane (port 0 picks a free port).
    #[arg(long, env = "WARDEN_DEV_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The agent's boundary log socket [default: <data-dir>/boundary.sock].
    #[arg(long, env = "WARDEN_DEV_SOCKET")]
    socket: Option<PathBuf>,
    /// Name of the demo workspace.
    #[arg(long, env = "WARDEN_DEV_WORKSPACE", default_value = "dev")]
    workspace: String,
    /// Owner of the demo workspace [default: $USER].
    #[arg(long, env = "WARDEN_DEV_OWNER")]
    owner: Option<String>,
    /// How many demo records to send.
    #[arg(long, env = "WARDEN_DEV_RECORDS", default_value_t = 40)]
    records: u64,
    /// Demo records per second.
    #[arg(long, env = "WARDEN_DEV_RATE", default_value_t = 5.0)]
    rate: f64,
    /// Run the pipeline without the demo producer.
    #[arg(long, env = "WARDEN_DEV_NO_DEMO", value_parser = BoolishValueParser::new())]
    no_demo: bool,
}

/// The settings, checked before anything starts.
struct Plan {
    data_dir: PathBuf,
    listen: SocketAddr,
    socket: PathBuf,
    workspace: String,
    owner: String,
    /// Demo records and their rate; `None` without the demo.
    demo: Option<(u64, f64)>,
    color: bool,
}

impl Plan {
    fn new(args: Args) -> anyhow::Result<Plan> {
        if !args.listen.ip().is_loopback() {
            return Err(anyhow!(
                "--listen {} is not a loopback address: warden dev serves plain HTTP on this machine only",
                args.listen
            ));
        }
        if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 1e6) {
            return Err(anyhow!(
                "--rate {} must be above 0 and at most 1000000",
                args.rate
            ));
        }
        let cwd = std::env::current_dir().context("reading the current directory")?;
        // Absolute, for the instructions; without `.` components.
        let socket: PathBuf = cwd
            .join(
                args.socket
                    .clone()
                    .unwrap_or_else(|| args.data_dir.join("boundary.sock")),
            )
            .components()
            .collect();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(anyhow!(
                "the socket path {} is longer than {MAX_SOCKET_PATH} bytes; pass a shorter --socket",
                socket.display()
            ));
        }
        let owner = args
            .owner
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "developer".to_owned());
        Ok(Plan {
            data_dir: args.data_dir,
            listen: args.listen,
            socket,
            workspace: args.workspace,
            owner,
            demo: (!args.no_demo && args.records > 0).then_some((args.records, args.rate)),
            color: std::io::stderr().is_terminal(),
        })
    }
}

pub fn main(args: Args) -> ExitCode {
    // Only warnings and errors of the parts by default: the boundary lines
    // and this command's own lines are the show.
    init_logging("warn", false);
    let result = Plan::new(args).map_err(Failure::usage).and_then(|plan| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")
            .map_err(Failure::runtime)?
            .block_on(run(plan))
    });
    failure::exit("dev", result)
}

/// The running parts, stopped in reverse order of their start.
struct Pipeline {
    server: JoinHandle<Result<(), ServerError>>,
    server_stop: CancellationToken,
    agent: Option<JoinHandle<Result<warden_agent::Outcome, AgentError>>>,
    agent_stop: CancellationToken,
    /// `<data-dir>/server-url`, once written.
    url_file: Option<PathBuf>,
}

async fn run(plan: Plan) -> Result<(), Failure> {
    private_files();
    warden_server::files::prepare_data_dir(&plan.data_dir)?;
    if tokio::net::UnixStream::connect(&plan.socket).await.is_ok() {
        return Err(Failure::usage_msg(format_args!(
            "{} is served by another warden dev or agent; stop it or pass --socket and --data-dir",
            plan.socket.display()
        )));
    }
    let stop = CancellationToken::new();
    forward_signals(stop.clone()).map_err(Failure::runtime)?;

    let lines = Arc::new(Lines::new(plan.color));
    let (mut pipeline, url) = start_server(&plan, Arc::clone(&lines)).await?;
    let result = run_started(&plan, &mut pipeline, &url, &lines, stop).await;
    let stopped = pipeline.stop().await;
    result.and(stopped)
}

/// Everything after the server is up; the caller stops the pipeline.
async fn run_started(
    plan: &Plan,
    pipeline: &mut Pipeline,
    url: &str,
    lines: &Lines,
    stop: CancellationToken,
) -> Result<(), Failure> {
    let workspace = register(plan, url).await?;
    let agent_dir = plan
        .data_dir
        .join("agents")
        .join(workspace.workspace_id.to_string());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let mut config = AgentConfig::new(
        url,
        Token::new(workspace.agent_token.clone()),
        &agent_dir,
        &plan.socket,
    );
    config.shutdown_grace = AGENT_GRACE;
    let retry = RetryPolicy {
        max_delay: Duration::from_secs(2),
        ..RetryPolicy::default()
    };
    let agent_stop = pipeline.agent_stop.clone();
    let agent = tokio::spawn(async move {
        let ready = move |_: &Path| {
            if let Some(tx) = ready_tx.take() {
                let _ = tx.send(());
            }
        };
        warden_agent::run(config, retry, ready, agent_stop).await
    });
    pipeline.agent = Some(agent);
    tokio::select! {
        ready = ready_rx => if ready.is_err() {
            // The agent ended before its socket was up: its error says why.
            return match pipeline.agent.take() {
                Some(agent) => Err(agent_ended(agent.await)),
                None => Ok(()),
            };
        },
        () = stop.cancelled() => return Ok(()),
        ended = &mut pipeline.server => return Err(server_ended(ended)),
    }
    say(&format!(
        "workspace {:?} ({}), owner {:?}; agent socket at {}",
        workspace.workspace_name,
        workspace.workspace_id,
        workspace.owner,
        plan.socket.display()
    ));

    let program = display::program();
    let instructions = display::instructions(&program, &plan.data_dir, &plan.socket, plan.color);
    if let Some((records, rate)) = plan.demo {
        say(&format!(
            "sending {records} demo records ({rate}/s) through warden-client; the control plane's boundary lines follow:"
        ));
        let before = lines.printed();
        let demo = demo::run(&plan.socket, records, rate, stop.clone());
        let summary = tokio::select! {
            summary = demo => summary.map_err(Failure::runtime)?,
            ended = &mut pipeline.server => return Err(server_ended(ended)),
        };
        if !stop.is_cancelled() {
            // Show the demo's lines before the instructions.
            let confirmed = summary.confirmed.len();
            lines.wait_printed(before + confirmed, LINES_WAIT).await;
        }
        say(&format!(
            "demo client (session {}): {summary}",
            summary.session_id
        ));
    }
    if !stop.is_cancelled() {
        eprint!("{instructions}");
        let _ = std::io::stderr().flush();
    }
    let agent_done = async {
        match pipeline.agent.as_mut() {
            Some(agent) => agent.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = stop.cancelled() => Ok(()),
        ended = &mut pipeline.server => Err(server_ended(ended)),
        ended = agent_done => {
            pipeline.agent = None;
            Err(agent_ended(ended))
        }
    }
}

/// Binds, starts the control plane and announces its URL.
async fn start_server(plan: &Plan, lines: Arc<Lines>) -> Result<(Pipeline, String), Failure> {
    let listener = tokio::net::TcpListener::bind(plan.listen)
        .await
        .with_context(|| format!("listening on {}", plan.listen))
        .map_err(Failure::runtime)?;
    let mut config = Config::new(
        DatabaseUrl::Sqlite(plan.data_dir.join("warden.db")),
        AdminTokenSource::DataDir(plan.data_dir.clone()),
    );
    config.log_format = LineFormat::Text;
    config.shutdown_grace = SERVER_GRACE;
    config.signing_key = Some((plan.data_dir.join("signing-key"), true));
    let server = warden_server::Server::start(config, listener, lines)
        .await
        .map_err(control_plane)?;
    let url = server.url();
    let server_stop = CancellationToken::new();
    let handle = tokio::spawn(server.serve(server_stop.clone()));
    let mut pipeline = Pipeline {
        server: handle,
        server_stop,
        agent: None,
        agent_stop: CancellationToken::new(),
        url_file: None,
    };
    // For `warden logs --data-dir` and `warden workspace --data-dir`.
    match write_server_url(&plan.data_dir, &url) {
        Ok(path) => pipeline.url_file = Some(path),
        Err(error) => {
            let _ = pipeline.stop().await;
            return Err(Failure::runtime(error));
        }
    }
    say(&format!(
        "control plane at {url}, data in {}",
        plan.data_dir.display()
    ));
    // The token is this data dir's, on this machine only (loopback): shown
    // so that the first thing a person can do is open the page.
    let token_file = plan.data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&token_file) {
        Ok(token) => say(&format!(
            "web page at {url}/ ; sign in with the admin token {} (from {})",
            token.trim(),
            token_file.display()
        )),
        Err(e) => say(&format!(
            "web page at {url}/ ; sign in with the admin token in {} (reading it failed: {e})",
            token_file.display()
        )),
    }
    Ok((pipeline, url))
}

/// The demo workspace: created the first time; on later runs its agent
/// gets a new token (only its hash is stored, so the old one is unknown).
async fn register(plan: &Plan, url: &str) -> Result<WorkspaceToken, Failure> {
    let token_file = plan.data_dir.join(ADMIN_TOKEN_FILE);
    let admin_token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading {}", token_file.display()))
        .map_err(Failure::runtime)?;
    let admin = ApiClient::new(url, admin_token.trim(), None)
        .context("admin client")
        .map_err(Failure::runtime)?;
    let existing = admin
        .list_workspaces()
        .await
        .map_err(|e| Failure::runtime(e).context("listing workspaces"))?;
    let registered = if existing.iter().any(|w| w.workspace_name == plan.workspace) {
        admin.rotate_token(&plan.workspace).await
    } else {
        admin
            .create_workspace(&CreateWorkspace {
                name: plan.workspace.clone(),
                owner: plan.owner.clone(),
                agent_name: None,
                startup_script: None,
            })
            .await
    };
    // A name or owner the server refuses is the caller's to fix (exit 2).
    registered.map_err(|e| {
        Failure::from(e).context(format!("registering workspace {:?}", plan.workspace))
    })
}

impl Pipeline {
    /// Stops the agent (which flushes its spool to the server), then the
    /// server; removes the server-url file.
    async fn stop(self) -> Result<(), Failure> {
        let mut result = Ok(());
        if let Some(agent) = self.agent {
            self.agent_stop.cancel();
            match agent.await {
                Ok(Ok(outcome)) if !outcome.drained => say(
                    "the agent stopped with records not yet delivered; they stay in its spool for the next run",
                ),
                Ok(Ok(_)) => {}
                ended => result = Err(agent_ended(ended)),
            }
        }
        self.server_stop.cancel();
        match self.server.await {
            Ok(Ok(())) => {}
            ended => result = result.and(Err(server_ended(ended))),
        }
        if let Some(url_file) = &self.url_file {
            let _ = std::fs::remove_file(url_file);
        }
        say("stopped");
        result
    }
}

/// The control plane's error, said to be its.
fn control_plane(e: ServerError) -> Failure {
    Failure::from(e).context("control plane")
}

fn server_ended(ended: Result<Result<(), ServerError>, tokio::task::JoinError>) -> Failure {
    match ended {
        Ok(Err(e)) => control_plane(e),
        Ok(Ok(())) => Failure::runtime(anyhow!("the control plane stopped unexpectedly")),
        Err(e) => Failure::runtime(anyhow::Error::new(e).context("the control plane task failed")),
    }
}

fn agent_ended(
    ended: Result<Result<warden_agent::Outcome, AgentError>, tokio::task::JoinError>,
) -> Failure {
    match ended {
        Ok(Err(e)) => Failure::from(e).context("agent"),
        Ok(Ok(_)) => Failure::runtime(anyhow!("the agent stopped unexpectedly")),
        Err(e) => Failure::runtime(anyhow::Error::new(e).context("the agent task failed")),
    }
}

/// A line of `warden dev`'s own, on stderr.
fn say(text: &str) {
    eprintln!("warden dev: {text}");
}

/// On SIGINT (Ctrl-C) or SIGTERM: say what stops, then cancel `stop`.
fn forward_signals(stop: CancellationToken) -> anyhow::Result<()> {
    on_shutdown_signal(move |_| {
        // After ^C on the terminal: start on a fresh line.
        eprintln!();
        say("stopping: the demo, then the agent (flushing its spool), then the control plane");
        stop.cancel();
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::parse_args;

    fn plan(argv: &[&str]) -> anyhow::Result<Plan> {
        Plan::new(parse_args::<Args>(argv)?)
    }

    #[test]
    fn defaults_are_embedded_and_local() {
        let defaults = plan(&[]).unwrap();
        assert_eq!(defaults.data_dir, PathBuf::from("./warden-dev"));
        assert!(defaults.listen.ip().is_loopback());
        assert!(defaults.socket.is_absolute());
        assert!(defaults.socket.ends_with("warden-dev/boundary.sock"));
        assert!(!defaults.socket.to_string_lossy().contains("/./"));
        assert_eq!(defaults.demo, Some((40, 5.0)));
        assert_eq!(plan(&["--no-demo"]).unwrap().demo, None);
    }

    #[test]
    fn bad_settings_are_refused_before_anything_starts() {
        for argv in [
            &["--listen", "0.0.0.0:7080"][..],
            &["--rate", "0"],
            &["--rate", "nan"],
            &["--rate", "-3"],
        ] {
            assert!(plan(argv).is_err(), "{argv:?}");
        }
        let long = format!("/tmp/{}/s.sock", "x".repeat(120));
        let error = plan(&["--socket", &long]).err().unwrap();
        assert!(
            error.to_string().contains("pass a shorter --socket"),
            "{error}"
        );
    }
}
