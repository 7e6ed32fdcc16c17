//! `warden agent [--] [COMMAND [ARGS...]]`: parses the flags (each with its
//! environment variable, see `docs/cli.md`), reads the token (a private
//! `--token-file` is the documented way; `--token` shows in every user's
//! process list and is warned about loudly; a token from the environment or
//! the command line is then wiped from the process's initial strings), makes
//! the process non-dumpable (the sandboxed COMMAND usually runs as the same
//! user), sets up logging to stderr, runs the workspace agent
//! (`warden_agent::run`) until SIGTERM/SIGINT or until COMMAND exits, and
//! turns the outcome into the exit code (COMMAND's, or the failure's: 1
//! runtime, 2 usage or configuration).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use warden_agent::{AgentConfig, FullPolicy, RetryPolicy, SocketConfig, Token, hardening};
use warden_api::time::parse_duration;

use super::failure::Failure;
use super::process::{forward_signals, init_logging};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Control plane URL (http:// or https://).
    #[arg(long, env = "CODER_AGENT_URL")]
    url: String,
    /// The agent's token, from the environment (or, visible to every local
    /// user in the process list, given as a flag: prefer --token-file).
    #[arg(long, env = "CODER_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the agent's token: the documented way to give it.
    /// Must be private (no group or other permission bits), like an ssh key.
    #[arg(long, env = "WARDEN_AGENT_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Where the spool and the cached manifest live.
    #[arg(
        long,
        env = "WARDEN_AGENT_DATA_DIR",
        default_value = "./warden-agent-data"
    )]
    data_dir: PathBuf,
    /// Path of the boundary log socket.
    #[arg(
        long,
        env = "CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH",
        default_value_t = default_socket_path()
    )]
    boundary_log_proxy_socket_path: String,
    /// Serve Prometheus /metrics on this address (off by default).
    #[arg(long, env = "WARDEN_AGENT_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// PEM CA certificate to trust for an https:// URL.
    #[arg(long, env = "WARDEN_AGENT_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Time allowed on shutdown to flush (e.g. 10s, 1m); the rest stays spooled.
    #[arg(long, env = "WARDEN_AGENT_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// Group (name or gid) allowed to connect too: the socket becomes 0660.
    #[arg(long, env = "WARDEN_AGENT_SOCKET_GROUP")]
    socket_group: Option<String>,
    /// Only these executables may connect (repeatable; default: any).
    #[arg(
        long = "allow-exe",
        env = "WARDEN_AGENT_ALLOW_EXE",
        value_delimiter = ','
    )]
    allow_exe: Vec<PathBuf>,
    /// Bound of the on-disk spool in bytes.
    #[arg(long, env = "WARDEN_AGENT_SPOOL_MAX_BYTES", default_value_t = warden_agent::config::DEFAULT_SPOOL_MAX_BYTES)]
    spool_max_bytes: u64,
    /// What a full spool does.
    #[arg(long, env = "WARDEN_AGENT_SPOOL_FULL_POLICY", value_enum, default_value_t = Policy::Backpressure)]
    spool_full_policy: Policy,
    /// How long a small spool append may wait for other connections' appends
    /// to share its fsync (e.g. 8ms; 0s for none): fewer fsyncs at a low rate.
    /// Clients hear "durable" this much later at most; up to the forward
    /// delay, records reach the control plane no later.
    #[arg(long, env = "WARDEN_AGENT_SPOOL_COMMIT_DELAY", default_value = "8ms", value_parser = parse_duration)]
    spool_commit_delay: Duration,
    /// How long a batch may wait, counted from when the agent read it (its
    /// spool commit included), for others to share a call to the control
    /// plane while no call is in flight (e.g. 8ms; 0s for none): fewer,
    /// larger calls and commits at a low rate. A full call goes at once.
    #[arg(long, env = "WARDEN_AGENT_FORWARD_DELAY", default_value = "8ms", value_parser = parse_duration)]
    forward_delay: Duration,
    /// Most socket clients connected at once.
    #[arg(long, env = "WARDEN_AGENT_MAX_CONNECTIONS", default_value_t = warden_agent::config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Close a socket connection silent for this long (e.g. 15m).
    #[arg(long, env = "WARDEN_AGENT_IDLE_TIMEOUT", default_value = "15m", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Longest wait between reconnection attempts (e.g. 30s).
    #[arg(long, env = "WARDEN_AGENT_MAX_RETRY_DELAY", default_value = "30s", value_parser = parse_duration)]
    max_retry_delay: Duration,
    /// Command to run once the socket is up; the agent exits after it.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Policy {
    /// Stop reading clients until there is room.
    Backpressure,
    /// Drop the oldest spooled batches (counted and reported).
    #[value(name = "drop_oldest", alias = "drop-oldest")]
    DropOldest,
}

fn default_socket_path() -> String {
    std::env::temp_dir()
        .join("boundary-audit.sock")
        .to_string_lossy()
        .into_owned()
}

/// Where the token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenSource {
    File,
    Environment,
    Argument,
}

/// Whether `--token` was given on the command line (before COMMAND).
fn token_on_command_line() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--token" || a.to_string_lossy().starts_with("--token="))
}

impl Args {
    /// The token and where it came from: the file wins over the
    /// environment; a file and `--token` together are a usage error.
    fn token(&self) -> Result<(Token, TokenSource), String> {
        let on_command_line = token_on_command_line();
        match (&self.token_file, &self.token) {
            (Some(_), Some(_)) if on_command_line => {
                Err("give the token either with --token-file or with --token, not both".into())
            }
            (Some(file), _) => Token::from_file(file)
                .map(|t| (t, TokenSource::File))
                .map_err(|e| format!("{:#}", anyhow::Error::from(e))),
            (None, Some(token)) if on_command_line => {
                Ok((Token::new(token.clone()), TokenSource::Argument))
            }
            (None, Some(token)) => Ok((Token::new(token.clone()), TokenSource::Environment)),
            (None, None) => Err(
                "no agent token: give --token-file FILE (a file only you can read), or set CODER_AGENT_TOKEN"
                    .into(),
            ),
        }
    }

    fn into_config(self, token: Token) -> (AgentConfig, RetryPolicy) {
        let mut config = AgentConfig::new(
            self.url,
            token,
            self.data_dir,
            PathBuf::from(self.boundary_log_proxy_socket_path),
        );
        config.socket = SocketConfig {
            group: self.socket_group,
            allow_exe: self.allow_exe,
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
            ..config.socket
        };
        config.spool_max_bytes = self.spool_max_bytes;
        config.spool_full_policy = match self.spool_full_policy {
            Policy::Backpressure => FullPolicy::Backpressure,
            Policy::DropOldest => FullPolicy::DropOldest,
        };
        config.spool_commit_delay = self.spool_commit_delay;
        config.forward_delay = self.forward_delay;
        config.metrics_listen = self.metrics_listen;
        config.ca_cert = self.ca_cert;
        config.shutdown_grace = self.shutdown_grace;
        config.command = self.command;
        let defaults = RetryPolicy::default();
        let retry = RetryPolicy {
            max_delay: self.max_retry_delay.max(defaults.min_delay),
            ..defaults
        };
        (config, retry)
    }
}

pub fn main(args: Args) -> ExitCode {
    init_logging("info", false);
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => failure.exit("agent"),
    }
}

/// Runs the agent; COMMAND's exit code when it ran one, else 0.
fn run(args: Args) -> Result<u8, Failure> {
    let (token, source) = args.token().map_err(Failure::usage_msg)?;
    if source == TokenSource::Argument {
        eprintln!(
            "warden agent: WARNING: --token puts the agent token on the command line, where every local user can read it (ps, /proc/PID/cmdline) until the agent wipes it; use --token-file FILE (mode 0600) instead"
        );
    }
    // Still one thread, so nothing else reads the environment meanwhile;
    // and before the next step, which makes /proc/self/mem root's.
    if source != TokenSource::File
        && let Err(e) = hardening::scrub_initial_strings(token.expose())
    {
        tracing::warn!(
            error = %warden_agent::chain::display(&e),
            "cannot wipe the agent token from the process's environment and arguments"
        );
    }
    // From now on no process of this user may read this one's memory or
    // environment (the sandboxed COMMAND usually runs as the same user).
    if let Err(e) = hardening::make_undumpable() {
        tracing::warn!(
            error = %warden_agent::chain::display(&e),
            "cannot make the agent non-dumpable; processes of this user can read its memory"
        );
    }
    let (config, retry) = args.into_config(token);
    config.validate()?;
    // One worker: an agent's async work (socket reads, acknowledgements,
    // the forwarder) takes well under a core even at saturation (the spool
    // writes and fsyncs on its own thread), and with a second worker most
    // of its CPU at a low steady rate went to waking the other worker and
    // switching to it (`warden bench --rate 10000`: 15.1-15.8 → 12.2-13.3 µs
    // of agent CPU per record, saturation unchanged; docs/benchmarks.md).
    // A multi-thread runtime still, so blocking file work can move off it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::runtime)?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        forward_signals(shutdown.clone()).map_err(Failure::runtime)?;
        let ready =
            |path: &Path| eprintln!("warden agent boundary log socket at {}", path.display());
        let outcome = warden_agent::run(config, retry, ready, shutdown).await?;
        Ok(outcome.exit_code.clamp(0, 255) as u8)
    })
}
