//! `warden admin-events`: the admin event log of a running server (every
//! workspace create, delete and token rotation, every token create and
//! revoke, with who did it), oldest first, with an admin or auditor token.
//! `warden verify` checks the log's signatures and chain.

use std::process::ExitCode;

use clap::builder::BoolishValueParser;
use warden_api::access::AdminEventInfo;

use super::connection::{self, Connection, print_listing};
use super::failure::Failure;
use super::table::{Column, Layout};

/// Events fetched per request.
const PAGE: u32 = 1000;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// One JSON object per event instead of a table.
    #[arg(long, env = "WARDEN_ADMIN_EVENTS_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

pub fn main(args: Args) -> ExitCode {
    connection::run("admin-events", execute(args))
}

async fn execute(args: Args) -> Result<(), Failure> {
    let client = args.connection.client()?;
    let mut events = Vec::new();
    loop {
        let after = events.last().map_or(0, |e: &AdminEventInfo| e.seq);
        let page = client.admin_events(after, PAGE).await?;
        let full = page.len() == PAGE as usize;
        events.extend(page);
        if !full {
            break;
        }
    }
    print_listing(&events, args.json, table)
}

fn table(events: &[AdminEventInfo]) -> String {
    const COLUMNS: [Column; 6] = [
        Column::new("SEQ", usize::MAX),
        Column::new("TIME", usize::MAX),
        Column::new("ACTOR", usize::MAX),
        Column::new("ACTION", usize::MAX),
        Column::new("TARGET", usize::MAX),
        Column::new("DETAIL", 80),
    ];
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                e.time
                    .round(jiff::Unit::Second)
                    .map_or_else(|_| e.time.to_string(), |t| t.to_string()),
                format!("{} ({})", e.actor.name, e.actor.role),
                e.action.clone(),
                e.target.clone(),
                e.detail.clone(),
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
    if events.is_empty() {
        out.push_str("(no admin events)\n");
    }
    out
}
