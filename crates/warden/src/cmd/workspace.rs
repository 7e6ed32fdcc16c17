//! `warden workspace create|list|rotate-token|delete`: the workspace admin
//! API of a running server, with the admin token. The server and token come
//! from `--url`/`WARDEN_URL` and `--token`/`WARDEN_ADMIN_TOKEN`, or from the
//! `server-url` and `admin-token` files of `--data-dir` (`--url` wins).
//!
//! Machine-readable output (`--json`, and a new token alone) goes to stdout,
//! everything for people to stderr. Exit codes: 0 success, 1 runtime failure
//! (server unreachable, refused), 2 usage or configuration (no URL or token,
//! bad input, wrong token).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use warden_server::admin_api::{CreateWorkspace, WorkspaceInfo, WorkspaceToken};
use warden_server::admin_client::{AdminClient, ClientError};
use warden_server::admin_token::ADMIN_TOKEN_FILE;

use super::server::SERVER_URL_FILE;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Register a workspace with one agent; prints the agent's token (shown once).
    Create(CreateArgs),
    /// List workspaces (never their tokens).
    List(ListArgs),
    /// Issue a new agent token; the old one stops working at once.
    RotateToken(NameArgs),
    /// Delete a workspace: its agent is revoked, its records stay.
    Delete(NameArgs),
}

/// Which server, with which admin token.
#[derive(clap::Args, Debug)]
pub struct Connection {
    /// The server's URL (default: <data-dir>/server-url).
    #[arg(long, env = "WARDEN_URL")]
    url: Option<String>,
    /// The admin token (default: <data-dir>/admin-token).
    #[arg(long, env = "WARDEN_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The server's data dir, to read server-url and admin-token from.
    #[arg(long, env = "WARDEN_DATA_DIR", default_value = "./warden-data")]
    data_dir: PathBuf,
    /// PEM CA certificate to trust for an https:// URL (default: system roots).
    #[arg(long, env = "WARDEN_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Workspace name (letters, digits, '.', '_', '-'), unique.
    #[arg(long)]
    name: String,
    /// Owner of the workspace.
    #[arg(long)]
    owner: String,
    /// Name of the workspace's agent.
    #[arg(long, default_value = warden_server::admin_api::DEFAULT_AGENT_NAME)]
    agent: String,
    /// Shell script the agent runs once its socket is up.
    #[arg(long)]
    startup_script: Option<String>,
    /// Print one JSON line instead of the token alone.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// One JSON object per workspace instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(clap::Args, Debug)]
pub struct NameArgs {
    /// The workspace's name.
    name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

/// A failure and its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::Url { .. } | ClientError::Tls(_) => 2,
            // Bad input or a wrong admin token: the caller's to fix.
            ClientError::Api { status, .. } if *status == 400 || *status == 401 => 2,
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

pub fn main(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("warden workspace: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(execute(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("warden workspace: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn execute(command: Command) -> Result<(), Failure> {
    match command {
        Command::Create(args) => {
            let client = connect(&args.connection)?;
            let created = client
                .create_workspace(&CreateWorkspace {
                    name: args.name,
                    owner: args.owner,
                    agent_name: Some(args.agent),
                    startup_script: args.startup_script,
                })
                .await?;
            eprintln!(
                "created workspace {} ({}) owned by {} with agent {}; its token is printed once",
                created.workspace_name, created.workspace_id, created.owner, created.agent_name
            );
            print_token(&created, args.json)
        }
        Command::List(args) => {
            let workspaces = connect(&args.connection)?.list_workspaces().await?;
            if args.json {
                for w in &workspaces {
                    println!("{}", to_json(w)?);
                }
            } else {
                print!("{}", table(&workspaces));
            }
            Ok(())
        }
        Command::RotateToken(args) => {
            let rotated = connect(&args.connection)?.rotate_token(&args.name).await?;
            eprintln!(
                "issued a new token for workspace {}; the old one no longer works",
                rotated.workspace_name
            );
            print_token(&rotated, args.json)
        }
        Command::Delete(args) => {
            let deleted = connect(&args.connection)?
                .delete_workspace(&args.name)
                .await?;
            eprintln!(
                "deleted workspace {} ({}); its agent is revoked, its records stay",
                deleted.workspace_name, deleted.workspace_id
            );
            if args.json {
                println!("{}", to_json(&deleted)?);
            }
            Ok(())
        }
    }
}

fn print_token(token: &WorkspaceToken, json: bool) -> Result<(), Failure> {
    if json {
        println!("{}", to_json(token)?);
    } else {
        println!("{}", token.agent_token);
    }
    Ok(())
}

fn to_json(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure {
        code: 1,
        message: format!("encoding json: {e}"),
    })
}

/// The client for the server and token the flags (or the data dir) name.
fn connect(connection: &Connection) -> Result<AdminClient, Failure> {
    let url = match &connection.url {
        Some(url) => url.clone(),
        None => read_setting(&connection.data_dir, SERVER_URL_FILE).ok_or_else(|| {
            Failure::usage(format!(
                "no server url: pass --url, set WARDEN_URL, or point --data-dir at the server's data dir (no {} there)",
                connection.data_dir.join(SERVER_URL_FILE).display()
            ))
        })?,
    };
    let token = match &connection.token {
        Some(token) => token.clone(),
        None => read_setting(&connection.data_dir, ADMIN_TOKEN_FILE).ok_or_else(|| {
            Failure::usage(format!(
                "no admin token: pass --token, set WARDEN_ADMIN_TOKEN, or point --data-dir at the server's data dir (no {} there)",
                connection.data_dir.join(ADMIN_TOKEN_FILE).display()
            ))
        })?,
    };
    Ok(AdminClient::new(
        &url,
        token,
        connection.ca_cert.as_deref(),
    )?)
}

/// The trimmed content of a one-line file, if it exists and is not empty.
fn read_setting(dir: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The human-readable list.
fn table(workspaces: &[WorkspaceInfo]) -> String {
    let header = [
        "NAME",
        "OWNER",
        "AGENT",
        "WORKSPACE ID",
        "LAST CONTACT",
        "LOST",
    ];
    let rows: Vec<[String; 6]> = workspaces
        .iter()
        .map(|w| {
            let lost: u64 = w.losses.iter().map(|l| l.records).sum();
            [
                w.workspace_name.clone(),
                w.owner.clone(),
                w.agent_name.clone(),
                w.workspace_id.to_string(),
                w.last_contact_at
                    .map(|t| {
                        t.round(jiff::Unit::Second)
                            .map_or_else(|_| t.to_string(), |t| t.to_string())
                    })
                    .unwrap_or_else(|| "never".into()),
                lost.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: &[&str]| {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    };
    push_row(&header);
    for row in &rows {
        push_row(&row.each_ref().map(String::as_str));
    }
    if workspaces.is_empty() {
        out.push_str("(no workspaces)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_and_token_come_from_the_data_dir_unless_given() {
        let dir = tempfile::tempdir().unwrap();
        let connection = |url: Option<&str>| Connection {
            url: url.map(str::to_owned),
            token: None,
            data_dir: dir.path().to_owned(),
            ca_cert: None,
        };
        assert_eq!(connect(&connection(None)).err().unwrap().code, 2);
        std::fs::write(dir.path().join(SERVER_URL_FILE), "http://127.0.0.1:9\n").unwrap();
        let missing_token = connect(&connection(None)).err().unwrap();
        assert_eq!(missing_token.code, 2);
        assert!(
            missing_token.message.contains("admin token"),
            "{}",
            missing_token.message
        );
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "t0ken\n").unwrap();
        assert!(connect(&connection(None)).is_ok());
        assert_eq!(connect(&connection(Some("ftp://x"))).err().unwrap().code, 2);
    }

    #[test]
    fn the_table_lines_up() {
        let w = WorkspaceInfo {
            workspace_id: Default::default(),
            workspace_name: "dev".into(),
            owner: "alice".into(),
            agent_id: Default::default(),
            agent_name: "main".into(),
            startup_script: String::new(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
            token_issued_at: jiff::Timestamp::UNIX_EPOCH,
            last_contact_at: None,
            last_batch_at: None,
            last_batch_id: None,
            losses: Vec::new(),
        };
        let text = table(&[w]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("NAME  OWNER  AGENT  WORKSPACE ID"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("dev   alice  main   00000000-0000-0000-0000-000000000000  never"),
            "{text}"
        );
        assert!(table(&[]).contains("(no workspaces)"));
    }
}
