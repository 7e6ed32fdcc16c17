//! `warden emit`: sends audit records from JSON lines on stdin to the
//! agent's boundary log socket, then reports what became of them.
//!
//! The work is `warden_client::jsonl::emit`; this file turns flags into a
//! client configuration, prints the summary (stderr, and `--json` on stdout)
//! and picks the exit code: 0 when every line was valid and delivered
//! (confirmed when the agent acknowledges, written otherwise), 1 otherwise,
//! 2 for a usage or configuration error such as no socket.

use clap::builder::BoolishValueParser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use warden_api::time::parse_duration;
use warden_client::jsonl::{self, EmitReport};
use warden_client::{AckMode, AckPolicy, Auditor, Overflow, socket_path_from_env};

use super::failure::{self, Failure};
use super::process::init_logging;

#[derive(clap::Args)]
pub struct Args {
    /// The agent's boundary log socket [default: $CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH,
    /// then $CODER_BOUNDARY_LOG_SOCKET].
    #[arg(
        long,
        env = "CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH",
        value_name = "PATH"
    )]
    socket: Option<PathBuf>,
    /// How long to wait at EOF for the records to be delivered (confirmed,
    /// when the agent acknowledges).
    #[arg(long, env = "WARDEN_EMIT_DRAIN_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// How long one record may wait for room in the client's queue before it
    /// is dropped and counted [default: as long as it takes].
    #[arg(long, env = "WARDEN_EMIT_QUEUE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    queue_timeout: Option<Duration>,
    /// A batch goes out at the latest this long after its first record.
    #[arg(long, env = "WARDEN_EMIT_BATCH_INTERVAL", value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    batch_interval: Duration,
    /// Ask the agent to confirm records end to end (`auto`: when it supports
    /// it) or not (`off`: written to the socket counts as delivered).
    #[arg(long, env = "WARDEN_EMIT_ACKS", value_enum, default_value_t = Acks::Auto)]
    acks: Acks,
    /// `confined_process_name` sent with every batch.
    #[arg(
        long,
        env = "WARDEN_EMIT_PROCESS_NAME",
        value_name = "NAME",
        default_value = ""
    )]
    process_name: String,
    /// Also print the summary as one JSON object on stdout.
    #[arg(long, env = "WARDEN_EMIT_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Acks {
    Auto,
    Off,
}

pub fn main(args: Args) -> ExitCode {
    // The client's own warnings only, unless WARDEN_LOG says otherwise.
    init_logging("warn", false);
    failure::exit("emit", emit(args))
}

fn emit(args: Args) -> Result<(), Failure> {
    let socket = args
        .socket
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(socket_path_from_env)
        .ok_or_else(|| {
            Failure::usage_msg(
                "no agent socket: pass --socket or set \
                 CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH or CODER_BOUNDARY_LOG_SOCKET",
            )
        })?;
    let mut config = jsonl::config(socket);
    config.close_timeout = args.drain_timeout;
    config.batch_interval = args.batch_interval;
    config.overflow = Overflow::Block {
        timeout: args.queue_timeout,
    };
    config.acknowledgements = match args.acks {
        Acks::Auto => AckPolicy::Auto,
        Acks::Off => AckPolicy::Off,
    };
    config.confined_process_name = args.process_name.clone();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")
        .map_err(Failure::runtime)?;
    let report = runtime.block_on(async {
        let auditor = Auditor::start(config)
            .map_err(|e| Failure::usage(anyhow::Error::new(e).context("invalid configuration")))?;
        let stdin = tokio::io::BufReader::with_capacity(1 << 16, tokio::io::stdin());
        // Not a locked handle: the client's own warnings go to stderr too.
        jsonl::emit(stdin, auditor, &mut std::io::stderr())
            .await
            .map_err(Failure::runtime)
    })?;
    if let Some(error) = &report.read_error {
        eprintln!("warden emit: reading stdin: {error}");
    }
    eprintln!("warden emit: {report}");
    if args.json {
        println!("{}", json(&report));
    }
    if report.success() {
        Ok(())
    } else {
        // The summary above says what went wrong.
        Err(Failure::already_reported())
    }
}

fn json(report: &EmitReport) -> serde_json::Value {
    let s = &report.summary;
    let acknowledged = s.acknowledgements == AckMode::Confirmed;
    serde_json::json!({
        "read": report.read,
        "malformed": report.malformed,
        "sent": s.sent.len(),
        "confirmed": acknowledged.then(|| s.confirmed.len()),
        "dropped": s.dropped.total(),
        "refused": s.refused.total(),
        "undelivered": s.undelivered,
        "acknowledgements": match s.acknowledgements {
            AckMode::Confirmed => "confirmed",
            AckMode::Unsupported => "unsupported",
            AckMode::Off => "off",
            AckMode::Unknown => "unknown",
        },
        "session_id": s.session_id.to_string(),
        "final_sequence_number": s.final_sequence_number,
        "deadline_expired": s.deadline_expired,
        "read_error": report.read_error,
        "success": report.success(),
    })
}
