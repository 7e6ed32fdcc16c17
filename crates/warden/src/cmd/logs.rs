//! `warden logs`: the stored boundary records of a server, through its query
//! API with the admin token (same `--url`/`--token`/`--data-dir` as `warden
//! workspace`).
//!
//! - `warden logs [FILTERS]`: matching records, newest first, as a table
//!   sized to the terminal or (`--json`) one record object per line;
//!   `--follow` prints the newest few oldest first, then new records as they
//!   are committed, reconnecting (without a gap or a repeat) when the
//!   connection drops ([`follow`]).
//! - `warden logs sessions` and `warden logs session ID`: sessions, their
//!   gaps and reported drops ([`sessions`]).
//!
//! Records go to stdout, everything for people to stderr. Exit codes: 0
//! success, 1 runtime failure (server unreachable, unknown workspace or
//! session), 2 usage (bad filter, no or wrong admin token).

mod follow;
mod output;
mod sessions;

use clap::builder::BoolishValueParser;
use std::process::ExitCode;

use jiff::Timestamp;
use warden_api::ApiClient;
use warden_api::client::RawRecord;
use warden_api::records::{MAX_LIMIT, RecordParams};
use warden_api::time::parse_time;

use super::connection::{self, Connection};
use super::failure::Failure;
use output::Output;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, after_help = output::MARKS)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    query: QueryArgs,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// List sessions: records, first/last sequence number, missing numbers,
    /// drops the client reported, unexplained loss.
    Sessions(sessions::SessionsArgs),
    /// Report one session: its summary, its gaps as ranges, and its records
    /// in sequence order.
    Session(sessions::SessionArgs),
}

/// The record filters, shared by the listing and `--follow`.
#[derive(clap::Args, Debug, Default)]
struct Filters {
    /// Only this workspace (by name).
    #[arg(long, env = "WARDEN_LOGS_WORKSPACE")]
    workspace: Option<String>,
    /// Only workspaces of this owner.
    #[arg(long, env = "WARDEN_LOGS_OWNER")]
    owner: Option<String>,
    /// Only records delivered by the agent of this name.
    #[arg(long, env = "WARDEN_LOGS_AGENT")]
    agent: Option<String>,
    /// Only allowed or only denied requests.
    #[arg(long, env = "WARDEN_LOGS_DECISION", value_enum)]
    decision: Option<Decision>,
    /// Only this client session.
    #[arg(long, env = "WARDEN_LOGS_SESSION")]
    session: Option<String>,
    /// From this time on: a duration back from now (15m, 2h, 7d, 1h30m) or
    /// an RFC 3339 timestamp. Times are event times (receive times for
    /// records without one).
    #[arg(long, env = "WARDEN_LOGS_SINCE")]
    since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long, env = "WARDEN_LOGS_UNTIL")]
    until: Option<String>,
    /// Only URLs containing this text (case-sensitive).
    #[arg(long, env = "WARDEN_LOGS_URL_CONTAINS")]
    url_contains: Option<String>,
    /// Only this HTTP method, exactly as sent (case-sensitive).
    #[arg(long, env = "WARDEN_LOGS_METHOD")]
    method: Option<String>,
    /// Only records flagged as conflicting (their session and sequence
    /// number were already used by a record with other content).
    #[arg(long, env = "WARDEN_LOGS_CONFLICT", value_parser = BoolishValueParser::new())]
    conflict: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Allow,
    Deny,
}

/// `--format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Ocsf,
}

#[derive(clap::Args, Debug)]
struct QueryArgs {
    #[command(flatten)]
    filters: Filters,
    /// How many records to show, newest first [default: 100; 10 with
    /// --follow, before it follows].
    #[arg(long, env = "WARDEN_LOGS_LIMIT", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Then print new matching records as they are stored, until Ctrl-C
    /// (the records shown first come oldest first, like tail -f).
    #[arg(long, short = 'f', env = "WARDEN_LOGS_FOLLOW", value_parser = BoolishValueParser::new())]
    follow: bool,
    /// One JSON object per record (the keys of the server's JSON boundary
    /// line, plus id, peer and conflict) instead of a table.
    #[arg(long, env = "WARDEN_LOGS_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    /// Output format: table, json (like --json) or ocsf (OCSF 1.3.0 HTTP
    /// Activity events, one JSON object per line, as `warden server
    /// --export-ocsf` writes them).
    #[arg(long, env = "WARDEN_LOGS_FORMAT", value_enum, conflicts_with = "json")]
    format: Option<Format>,
    #[command(flatten)]
    connection: Connection,
}

pub fn main(args: Args) -> ExitCode {
    connection::run("logs", execute(args))
}

async fn execute(args: Args) -> Result<(), Failure> {
    match args.command {
        Some(Command::Sessions(args)) => sessions::list(args).await,
        Some(Command::Session(args)) => sessions::report(args).await,
        None => records(args.query).await,
    }
}

impl Filters {
    /// The query parameters; times are made absolute now, so that a
    /// reconnecting follower keeps the same window.
    fn params(&self, now: Timestamp) -> Result<RecordParams, Failure> {
        let time = |flag: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| {
                    parse_time(v, now)
                        .map(|t| t.to_string())
                        .map_err(|e| Failure::usage_msg(format_args!("--{flag}: {e}")))
                })
                .transpose()
        };
        let params = RecordParams {
            workspace: self.workspace.clone(),
            owner: self.owner.clone(),
            agent: self.agent.clone(),
            decision: self.decision.map(|d| {
                match d {
                    Decision::Allow => "allow",
                    Decision::Deny => "deny",
                }
                .to_owned()
            }),
            session: self.session.clone(),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            url_contains: self.url_contains.clone(),
            method: self.method.clone(),
            conflict: self.conflict.then(|| "true".to_owned()),
            ..RecordParams::default()
        };
        // The server checks again; checking here gives the flag's name.
        params
            .check(now)
            .map_err(|e| Failure::usage_msg(format_args!("bad filter: {e}")))?;
        Ok(params)
    }
}

async fn records(args: QueryArgs) -> Result<(), Failure> {
    let params = args.filters.params(Timestamp::now())?;
    let client = args.connection.client()?;
    let limit = args.limit.unwrap_or(if args.follow { 10 } else { 100 });
    let (records, head) = newest(&client, &params, limit).await?;
    let json = args.json || args.format == Some(Format::Json);
    let mut out = match args.format {
        Some(Format::Ocsf) => Output::ocsf(),
        _ => Output::new(json),
    };
    if args.follow {
        // Oldest first, then what comes.
        out.records(records.iter().rev().map(|r| r.get()), follow::MIN_WIDTHS)?;
        follow::follow(&client, &params, head, &mut out).await
    } else {
        out.records(records.iter().map(|r| r.get()), &[])?;
        if records.is_empty() && !json && args.format != Some(Format::Ocsf) {
            eprintln!("warden logs: no matching records");
        }
        Ok(())
    }
}

/// Up to `limit` newest matching records, newest first, and the cursor to
/// follow on from them.
async fn newest(
    client: &ApiClient,
    params: &RecordParams,
    limit: u64,
) -> Result<(Vec<RawRecord>, String), Failure> {
    let mut params = params.clone();
    let mut records = Vec::new();
    let mut head = None;
    loop {
        let left = limit - records.len() as u64;
        params.limit = Some(left.min(u64::from(MAX_LIMIT)).to_string());
        let page = client.records(&params).await?;
        head.get_or_insert(page.head);
        records.extend(page.records);
        match page.next {
            Some(next) if (records.len() as u64) < limit => params.cursor = Some(next),
            _ => break,
        }
    }
    Ok((records, head.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-12-08T20:00:00Z".parse().unwrap()
    }

    #[test]
    fn times_become_absolute_and_bad_filters_name_the_flag() {
        let filters = Filters {
            since: Some("15m".into()),
            until: Some("2025-12-08T21:30:00+01:00".into()),
            decision: Some(Decision::Deny),
            conflict: true,
            ..Default::default()
        };
        let params = filters.params(now()).unwrap();
        assert_eq!(params.since.as_deref(), Some("2025-12-08T19:45:00Z"));
        assert_eq!(params.until.as_deref(), Some("2025-12-08T20:30:00Z"));
        assert_eq!(params.decision.as_deref(), Some("deny"));
        assert_eq!(params.conflict.as_deref(), Some("true"));

        let bad = Filters {
            since: Some("yesterday".into()),
            ..Default::default()
        };
        let e = bad.params(now()).unwrap_err();
        assert_eq!(e.code(), 2);
        assert!(e.message().starts_with("--since: "), "{}", e.message());
        let backwards = Filters {
            since: Some("1h".into()),
            until: Some("2h".into()),
            ..Default::default()
        };
        let e = backwards.params(now()).unwrap_err();
        assert!(
            e.message().contains("must be before until"),
            "{}",
            e.message()
        );
        let empty = Filters {
            workspace: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(empty.params(now()).unwrap_err().code(), 2);
    }
}
