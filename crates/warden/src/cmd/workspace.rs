//! `warden workspace create|list|rotate-token|delete`: the workspace admin
//! API of a running server, with the admin token. The server and token come
//! from `--url`/`WARDEN_URL` and `--token`/`WARDEN_ADMIN_TOKEN`, or from the
//! `server-url` and `admin-token` files of `--data-dir` (`--url` wins).
//!
//! Machine-readable output (`--json`, and a new token alone) goes to stdout,
//! everything for people to stderr. Exit codes: 0 success, 1 runtime failure
//! (server unreachable, no such workspace, name already taken), 2 usage or
//! configuration (no URL or token, bad input, wrong token).

use clap::builder::BoolishValueParser;
use std::process::ExitCode;

use warden_api::workspaces::{CreateWorkspace, WorkspaceInfo, WorkspaceToken};

use super::connection::{self, Connection, print_listing, to_json};
use super::failure::Failure;
use super::table::{Column, Layout};

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

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Workspace name (letters, digits, '.', '_', '-'), unique.
    #[arg(long, env = "WARDEN_WORKSPACE_NAME")]
    name: String,
    /// Owner of the workspace.
    #[arg(long, env = "WARDEN_WORKSPACE_OWNER")]
    owner: String,
    /// Name of the workspace's agent.
    #[arg(long, env = "WARDEN_WORKSPACE_AGENT", default_value = warden_api::workspaces::DEFAULT_AGENT_NAME)]
    agent: String,
    /// Shell script the agent runs once its socket is up.
    #[arg(long, env = "WARDEN_WORKSPACE_STARTUP_SCRIPT")]
    startup_script: Option<String>,
    /// Print one JSON line instead of the token alone.
    #[arg(long, env = "WARDEN_WORKSPACE_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// One JSON object per workspace instead of a table.
    #[arg(long, env = "WARDEN_WORKSPACE_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(clap::Args, Debug)]
pub struct NameArgs {
    /// The workspace's name.
    name: String,
    /// Print JSON instead of text.
    #[arg(long, env = "WARDEN_WORKSPACE_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

pub fn main(command: Command) -> ExitCode {
    connection::run("workspace", execute(command))
}

async fn execute(command: Command) -> Result<(), Failure> {
    match command {
        Command::Create(args) => {
            let client = args.connection.client()?;
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
            let workspaces = args.connection.client()?.list_workspaces().await?;
            print_listing(&workspaces, args.json, table)
        }
        Command::RotateToken(args) => {
            let rotated = args.connection.client()?.rotate_token(&args.name).await?;
            eprintln!(
                "issued a new token for workspace {}; the old one no longer works",
                rotated.workspace_name
            );
            print_token(&rotated, args.json)
        }
        Command::Delete(args) => {
            let deleted = args
                .connection
                .client()?
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

/// The human-readable list.
fn table(workspaces: &[WorkspaceInfo]) -> String {
    const COLUMNS: [Column; 6] = [
        Column::new("NAME", usize::MAX),
        Column::new("OWNER", usize::MAX),
        Column::new("AGENT", usize::MAX),
        Column::new("WORKSPACE ID", usize::MAX),
        Column::new("LAST CONTACT", usize::MAX),
        Column::new("LOST", usize::MAX),
    ];
    let rows: Vec<Vec<String>> = workspaces
        .iter()
        .map(|w| {
            // Reported counts: a total that saturates, never wraps.
            let lost = w
                .losses
                .iter()
                .fold(0, |sum: u64, l| sum.saturating_add(l.records));
            vec![
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
    let layout = Layout::fit(&COLUMNS, &rows, &[], None);
    let mut out = layout.header();
    out.push('\n');
    for row in &rows {
        out.push_str(&layout.row(row));
        out.push('\n');
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
