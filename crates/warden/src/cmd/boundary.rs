//! `warden boundary [OPTIONS] [-- COMMAND [ARGS...]]`: the egress proxy
//! (`warden_boundary::run::run`), `warden boundary check` (a dry run of the
//! policy) and `warden boundary bench` (side by side with squid). This
//! module only parses flags and turns outcomes into exit codes.

mod bench;

use clap::builder::BoolishValueParser;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use warden_boundary::policy::{Denial, Policy, PolicySources, Verdict};
use warden_boundary::run::{Network, RunConfig};

use super::process::on_shutdown_signal;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Decide one request against the rules: prints `allow RULE` (exit 0) or
    /// `deny [RULE]` (exit 1).
    Check(CheckArgs),
    /// Measure requests/s and added latency through warden boundary and
    /// through squid, side by side.
    Bench(bench::Args),
}

/// Where the rules come from (see docs/boundary-rules.md).
#[derive(clap::Args, Debug, Clone)]
pub struct RuleArgs {
    /// An allow rule, e.g. 'domain=*.npmjs.org method=GET,HEAD' (repeatable;
    /// in the variable, one rule per line).
    #[arg(
        long = "allow",
        env = "WARDEN_BOUNDARY_ALLOW",
        value_delimiter = '\n',
        value_name = "RULE"
    )]
    allow: Vec<String>,
    /// A deny rule; deny rules win over allow rules (repeatable; in the
    /// variable, one rule per line).
    #[arg(
        long = "deny",
        env = "WARDEN_BOUNDARY_DENY",
        value_delimiter = '\n',
        value_name = "RULE"
    )]
    deny: Vec<String>,
    /// YAML file with `allowlist:` and `denylist:` lists of rules (read
    /// before the flags).
    #[arg(long, env = "WARDEN_BOUNDARY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

impl RuleArgs {
    /// The policy, or a usage error naming the bad rule.
    fn policy(&self) -> Result<Policy, String> {
        Policy::load(&PolicySources {
            config: self.config.clone(),
            allow: self.allow.clone(),
            deny: self.deny.clone(),
        })
        .map_err(|e| {
            // The message names the rule (and the file); add the cause.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        })
    }
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    rules: RuleArgs,
    /// Address to listen on (loopback; port 0 picks a free port).
    #[arg(long, env = "WARDEN_BOUNDARY_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Terminate TLS in CONNECT tunnels with a CA of our own and decide
    /// every request inside on method and path.
    #[arg(long, env = "WARDEN_BOUNDARY_TLS_INTERCEPT", value_parser = BoolishValueParser::new())]
    tls_intercept: bool,
    /// Keep the interception CA in DIR (ca.crt, ca.key mode 0600) instead of
    /// generating one in memory per run.
    #[arg(long, env = "WARDEN_BOUNDARY_CA_DIR", value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// PEM CA certificate to trust for origins besides the system roots
    /// (repeatable).
    #[arg(long, env = "WARDEN_BOUNDARY_UPSTREAM_CA", value_name = "FILE")]
    upstream_ca: Vec<PathBuf>,
    /// Run COMMAND in a network namespace whose only way out is the proxy
    /// (Linux, needs root).
    #[arg(long, env = "WARDEN_BOUNDARY_JAIL", value_parser = BoolishValueParser::new())]
    jail: bool,
    /// Threads of the proxy's runtime (1: a single-threaded event loop; 0:
    /// one per core). CONNECT tunnels run on relay threads of their own.
    #[arg(long, env = "WARDEN_BOUNDARY_THREADS", default_value_t = 0)]
    threads: usize,
    /// Level of the stderr lines (DENY lines are warn, ALLOW lines info).
    #[arg(long, env = "WARDEN_BOUNDARY_LOG_LEVEL", value_enum, default_value_t = Level::Warn)]
    log_level: Level,
    /// The agent's boundary log socket (default: CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH,
    /// then CODER_BOUNDARY_LOG_SOCKET).
    #[arg(
        long,
        env = "WARDEN_BOUNDARY_LOG_PROXY_SOCKET_PATH",
        value_name = "PATH"
    )]
    log_proxy_socket_path: Option<PathBuf>,
    /// Command to run with the proxy variables set; without one the proxy
    /// runs until SIGTERM or SIGINT.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<OsString>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    rules: RuleArgs,
    /// The request's method, e.g. GET.
    method: String,
    /// The request's URL (https:// is assumed without a scheme).
    url: String,
}

pub fn main(args: Args) -> ExitCode {
    match args.command {
        Some(Sub::Check(check)) => self::check(check),
        Some(Sub::Bench(bench)) => bench::main(bench),
        None => run(args.run),
    }
}

fn check(args: CheckArgs) -> ExitCode {
    let policy = match args.rules.policy() {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("warden boundary check: {e}");
            return ExitCode::from(2);
        }
    };
    match policy.decide_url(&args.method, &args.url) {
        Verdict::Allow(rule) => {
            println!("allow {}", rule.text());
            ExitCode::SUCCESS
        }
        Verdict::Deny(denial) => {
            match &denial {
                Denial::Rule(rule) => println!("deny {}", rule.text()),
                _ => println!("deny"),
            }
            eprintln!("warden boundary check: {denial}");
            ExitCode::from(1)
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let policy = match args.rules.policy() {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("warden boundary: {e}");
            return ExitCode::from(2);
        }
    };
    if args.ca_dir.is_some() && !args.tls_intercept {
        eprintln!("warden boundary: --ca-dir needs --tls-intercept");
        return ExitCode::from(2);
    }
    init_logging(args.log_level);
    let log_socket = args
        .log_proxy_socket_path
        .or_else(warden_client::socket_path_from_env);
    let config = RunConfig {
        policy,
        listen: args.listen,
        tls_intercept: args.tls_intercept,
        ca_dir: args.ca_dir,
        upstream_ca: args.upstream_ca,
        jail: args.jail,
        log_socket,
        command: args.command,
    };
    let runtime = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    }
    .enable_all()
    .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("warden boundary: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        if let Err(e) = on_shutdown_signal(move |_| token.cancel()) {
            eprintln!("warden boundary: {e:#}");
            return ExitCode::from(1);
        }
        match warden_boundary::run::run(config, Network::default(), shutdown).await {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                eprintln!("warden boundary: {text}");
                ExitCode::from(e.exit_code())
            }
        }
    })
}

/// Lines on stderr at `level` and above (the per-decision lines included).
fn init_logging(level: Level) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::new(level.as_str());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
