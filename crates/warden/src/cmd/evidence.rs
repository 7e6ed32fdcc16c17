//! `warden verify`, `warden export` and `warden checkpoint export`: the
//! record chain and its signed checkpoints, checked or carried away
//! offline (from a data dir's database, a `--database-url`, or a bundle),
//! or verified through a running server (`verify --url`, see
//! [`super::remote_verify`]).

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use jiff::Timestamp;
use warden_evidence::bundle::{self, Filter};
use warden_evidence::checkpoint::CheckpointFile;
use warden_evidence::key::PublicKey;
use warden_evidence::verify::{Report, Trust, verify_bundle, verify_store};
use warden_store::{DatabaseUrl, Store};

use super::failure::Failure;
use super::process::init_logging;

/// Which store to read.
#[derive(clap::Args, Debug)]
pub struct Source {
    /// The data dir of a server that is not running (its warden.db).
    #[arg(long, env = "WARDEN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://... (wins over --data-dir).
    #[arg(long, env = "WARDEN_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

impl Source {
    fn url(&self) -> Result<DatabaseUrl, Failure> {
        match (&self.database_url, &self.data_dir) {
            (Some(url), _) => url
                .parse::<DatabaseUrl>()
                .map_err(|e| Failure::usage(anyhow::Error::new(e).context("--database-url"))),
            (None, Some(dir)) => {
                let path = dir.join("warden.db");
                if !path.exists() {
                    return Err(Failure::runtime_msg(format!(
                        "{} holds no database",
                        dir.display()
                    )));
                }
                Ok(DatabaseUrl::Sqlite(path))
            }
            (None, None) => Err(Failure::usage_msg(
                "give --data-dir, --database-url or (for verify) --bundle or --url",
            )),
        }
    }

    async fn open(&self) -> Result<std::sync::Arc<dyn Store>, Failure> {
        let url = self.url()?;
        warden_store::open(&url)
            .await
            .context("opening the store")
            .map_err(Failure::runtime)
    }
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    source: Source,
    /// An export bundle to verify instead of a store.
    #[arg(long, env = "WARDEN_VERIFY_BUNDLE")]
    bundle: Option<PathBuf>,
    /// A running server to verify through its API (wins over --data-dir and
    /// --database-url; --bundle wins over it).
    #[arg(long, env = "WARDEN_URL")]
    url: Option<String>,
    /// The token for --url: an auditor (or admin) token.
    #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA certificate to trust for an https:// --url (default: system roots).
    #[arg(long, env = "WARDEN_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// The control plane's public key (its signing-key.pub): checkpoints
    /// must be signed by it.
    #[arg(long, env = "WARDEN_TRUSTED_KEY")]
    trusted_key: Option<PathBuf>,
    /// A checkpoint kept elsewhere: the chain must extend it.
    #[arg(long, env = "WARDEN_TRUSTED_CHECKPOINT")]
    trusted_checkpoint: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    source: Source,
    /// Records with an effective time at or after this (a duration like 1h
    /// back from now, or an RFC 3339 time).
    #[arg(long, env = "WARDEN_EXPORT_SINCE")]
    since: Option<String>,
    /// Records before this time (same forms as --since).
    #[arg(long, env = "WARDEN_EXPORT_UNTIL")]
    until: Option<String>,
    /// Only this workspace's records.
    #[arg(long, env = "WARDEN_EXPORT_WORKSPACE")]
    workspace: Option<String>,
    /// Where to write the bundle.
    #[arg(long, env = "WARDEN_EXPORT_OUT")]
    out: PathBuf,
}

#[derive(clap::Subcommand, Debug)]
pub enum CheckpointCommand {
    /// Write the latest signed checkpoint as a small JSON file to keep
    /// elsewhere (a witness).
    Export(CheckpointExportArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckpointExportArgs {
    #[command(flatten)]
    source: Source,
    /// Where to write it (default: stdout).
    #[arg(long, env = "WARDEN_CHECKPOINT_OUT")]
    out: Option<PathBuf>,
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::runtime)
}

fn finish(result: Result<ExitCode, Failure>, what: &str) -> ExitCode {
    result.unwrap_or_else(|failure| {
        eprintln!("warden {what}: {}", failure.message());
        ExitCode::from(failure.code())
    })
}

pub fn verify_main(args: VerifyArgs) -> ExitCode {
    init_logging("warn", false);
    finish(run_verify(args), "verify")
}

fn run_verify(args: VerifyArgs) -> Result<ExitCode, Failure> {
    let trust = Trust {
        key: args
            .trusted_key
            .as_deref()
            .map(PublicKey::read)
            .transpose()
            .context("--trusted-key")
            .map_err(Failure::usage)?,
        checkpoint: args
            .trusted_checkpoint
            .as_deref()
            .map(CheckpointFile::read)
            .transpose()
            .context("--trusted-checkpoint")
            .map_err(Failure::usage)?,
    };
    let report: Report = match &args.bundle {
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("opening {}", path.display()))
                .map_err(Failure::runtime)?;
            let bundle = bundle::read(BufReader::new(file))
                .context("reading the bundle")
                .map_err(Failure::runtime)?;
            verify_bundle(bundle, &trust)
        }
        None if args.url.is_some() => {
            let url = args.url.as_deref().unwrap_or_default();
            let token = args.token.as_deref().ok_or_else(|| {
                Failure::usage_msg("--url needs --token (an auditor or admin token; WARDEN_TOKEN)")
            })?;
            let client = warden_api::ApiClient::new(url, token, args.ca_cert.as_deref())?;
            runtime()?.block_on(super::remote_verify::verify(&client, &trust))?
        }
        None => {
            args.source.url()?;
            runtime()?.block_on(async {
                let store = args.source.open().await?;
                let report = verify_store(&*store, &trust).await;
                let _ = store.close().await;
                report.context("verifying").map_err(Failure::runtime)
            })?
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", report.verdict());
    for problem in &report.problems {
        let _ = writeln!(out, "  {problem}");
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn export_main(args: ExportArgs) -> ExitCode {
    init_logging("warn", false);
    finish(run_export(args), "export")
}

fn run_export(args: ExportArgs) -> Result<ExitCode, Failure> {
    let now = Timestamp::now();
    let time = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| warden_api::time::parse_time(t, now))
            .transpose()
            .map_err(|e| Failure::usage_msg(format!("--{flag}: {e}")))
    };
    let since = time("since", &args.since)?;
    let until = time("until", &args.until)?;
    runtime()?.block_on(async {
        let store = args.source.open().await?;
        let result = async {
            let workspace_id = match &args.workspace {
                None => None,
                Some(name) => Some(
                    store
                        .workspace(name)
                        .await
                        .context("finding the workspace")
                        .map_err(Failure::runtime)?
                        .ok_or_else(|| {
                            Failure::runtime_msg(format!("workspace {name:?} not found"))
                        })?
                        .id,
                ),
            };
            let file = std::fs::File::create(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))
                .map_err(Failure::runtime)?;
            let mut out = std::io::BufWriter::new(file);
            let filter = Filter {
                since,
                until,
                workspace_id,
            };
            let done = bundle::export(&*store, &filter, &mut out)
                .await
                .context("exporting")
                .map_err(Failure::runtime)?;
            out.flush()
                .context("writing the bundle")
                .map_err(Failure::runtime)?;
            eprintln!(
                "warden export: wrote {} ({} more by hash only), {}, {}, {}, {} to {}",
                counted(done.records, "record"),
                done.leaves,
                counted(done.links, "chain link"),
                counted(done.checkpoints, "checkpoint"),
                counted(done.verdicts, "session verdict"),
                counted(done.admin_events, "admin event"),
                args.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        .await;
        let _ = store.close().await;
        result
    })
}

pub fn checkpoint_main(command: CheckpointCommand) -> ExitCode {
    init_logging("warn", false);
    let CheckpointCommand::Export(args) = command;
    finish(run_checkpoint_export(args), "checkpoint export")
}

fn run_checkpoint_export(args: CheckpointExportArgs) -> Result<ExitCode, Failure> {
    runtime()?.block_on(async {
        let store = args.source.open().await?;
        let latest = store.latest_checkpoint().await;
        let _ = store.close().await;
        let latest = latest
            .context("reading checkpoints")
            .map_err(Failure::runtime)?
            .ok_or_else(|| Failure::runtime_msg("no checkpoint signed yet"))?;
        let mut json = serde_json::to_string_pretty(&CheckpointFile::of(&latest))
            .context("encoding the checkpoint")
            .map_err(Failure::runtime)?;
        json.push('\n');
        match &args.out {
            Some(path) => std::fs::write(path, json)
                .with_context(|| format!("writing {}", path.display()))
                .map_err(Failure::runtime)?,
            None => print!("{json}"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `n` and `noun`, plural unless `n` is 1 (for the export's summary line).
fn counted(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}
