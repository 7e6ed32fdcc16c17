//! `warden token create|list|revoke`: named admin and auditor tokens on a
//! running server, with an admin token (the same `--url`/`--token`/
//! `--data-dir` as `warden workspace`).
//!
//! A new token is printed alone on stdout, once (only its hash is kept);
//! `--json` prints one JSON line instead. The list never shows a token or
//! its hash. Exit codes: 0 success, 1 runtime failure (server unreachable,
//! no such token, name already taken), 2 usage or configuration.

use std::process::ExitCode;

use clap::builder::BoolishValueParser;
use warden_api::access::{CreateToken, TokenInfo};

use super::connection::{self, Connection, print_listing, to_json};
use super::failure::Failure;
use super::table::{Column, Layout};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a named admin or auditor token; prints it (shown once).
    Create(CreateArgs),
    /// List live named tokens: name, role, created, last used (never the tokens).
    List(ListArgs),
    /// Revoke a named token: it stops working at once.
    Revoke(RevokeArgs),
}

/// The roles a named token can have.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read-only: records, sessions, checkpoints, admin events, verify,
    /// export, the web page.
    Auditor,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// What the token may do.
    #[arg(long, value_enum, env = "WARDEN_TOKEN_ROLE")]
    role: Role,
    /// The token's name (letters, digits, '.', '_', '-'), unique among live tokens.
    #[arg(long, env = "WARDEN_TOKEN_NAME")]
    name: String,
    /// Print one JSON line instead of the token alone.
    #[arg(long, env = "WARDEN_TOKEN_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// One JSON object per token instead of a table.
    #[arg(long, env = "WARDEN_TOKEN_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(clap::Args, Debug)]
pub struct RevokeArgs {
    /// The token's name.
    name: String,
    #[command(flatten)]
    connection: Connection,
}

pub fn main(command: Command) -> ExitCode {
    connection::run("token", execute(command))
}

async fn execute(command: Command) -> Result<(), Failure> {
    match command {
        Command::Create(args) => {
            let role = match args.role {
                Role::Admin => "admin",
                Role::Auditor => "auditor",
            };
            let created = args
                .connection
                .client()?
                .create_token(&CreateToken {
                    name: args.name,
                    role: role.into(),
                })
                .await?;
            eprintln!(
                "created {} token {} ({}); it is printed once",
                created.role, created.name, created.id
            );
            if args.json {
                println!("{}", to_json(&created)?);
            } else {
                println!("{}", created.token);
            }
            Ok(())
        }
        Command::List(args) => {
            let tokens = args.connection.client()?.list_tokens().await?;
            print_listing(&tokens, args.json, table)
        }
        Command::Revoke(args) => {
            let revoked = args.connection.client()?.revoke_token(&args.name).await?;
            eprintln!(
                "revoked {} token {} ({}); it no longer works",
                revoked.role, revoked.name, revoked.id
            );
            Ok(())
        }
    }
}

fn time(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Second)
        .map_or_else(|_| t.to_string(), |t| t.to_string())
}

/// The human-readable list.
fn table(tokens: &[TokenInfo]) -> String {
    const COLUMNS: [Column; 4] = [
        Column::new("NAME", usize::MAX),
        Column::new("ROLE", usize::MAX),
        Column::new("CREATED", usize::MAX),
        Column::new("LAST USED", usize::MAX),
    ];
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.role.clone(),
                time(t.created_at),
                t.last_used_at.map_or_else(|| "never".into(), time),
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
    if tokens.is_empty() {
        out.push_str("(no named tokens; the bootstrap admin token is not listed)\n");
    }
    out
}
