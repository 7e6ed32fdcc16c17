//! `warden logs sessions` (a workspace's sessions, or every live
//! workspace's) and `warden logs session ID` (one session: summary, gaps as
//! ranges, records in sequence order): where lost records show.

use clap::builder::BoolishValueParser;
use serde::Serialize;
use uuid::Uuid;
use warden_api::ApiClient;
use warden_api::client::RawRecord;
use warden_api::records::{
    GapRange, MAX_LIMIT, SessionInfo, SessionListParams, SessionListing, SessionReport,
    SessionReportParams, VerdictInfo,
};
use warden_api::time::stamp;

use super::output::{Output, Table, write_out};
use crate::cmd::connection::{Connection, to_json};
use crate::cmd::failure::Failure;
use crate::cmd::table::{Column, Layout, clean, terminal_width};

#[derive(clap::Args, Debug)]
pub struct SessionsArgs {
    /// Only this workspace (by name, or by id for a deleted one); default:
    /// every live workspace.
    #[arg(long, env = "WARDEN_LOGS_WORKSPACE")]
    workspace: Option<String>,
    /// At most this many sessions per workspace, the most recently active
    /// first.
    #[arg(long, env = "WARDEN_LOGS_SESSIONS_LIMIT", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// One JSON object per session instead of a table.
    #[arg(long, env = "WARDEN_LOGS_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(clap::Args, Debug)]
pub struct SessionArgs {
    /// The session id.
    id: String,
    /// The session's workspace (by name, or by id for a deleted one);
    /// default: the one live workspace that has the session.
    #[arg(long, env = "WARDEN_LOGS_WORKSPACE")]
    workspace: Option<String>,
    /// At most this many of its records, in sequence order.
    #[arg(long, env = "WARDEN_LOGS_SESSION_LIMIT", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    limit: u64,
    /// One JSON object (summary, gaps, records) instead of text.
    #[arg(long, env = "WARDEN_LOGS_JSON", value_parser = BoolishValueParser::new())]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

/// A listed session with its workspace, for `--json`.
#[derive(Serialize)]
struct SessionLine<'a> {
    workspace_id: Uuid,
    workspace_name: Option<&'a str>,
    #[serde(flatten)]
    session: &'a SessionListing,
}

const SESSION_COLUMNS: [Column; 10] = [
    Column::new("WORKSPACE", 20),
    Column::new("RECORDS", 10),
    Column::new("FIRST", 11),
    Column::new("LAST", 11),
    Column::new("FINAL", 11),
    Column::new("MISSING", 10),
    Column::new("DROPPED", 10),
    Column::new("UNEXPLAINED", 11),
    Column::new("LAST RECORD", 23),
    Column::shrinking("SESSION"),
];

pub async fn list(args: SessionsArgs) -> Result<(), Failure> {
    let client = args.connection.client()?;
    let workspaces = match &args.workspace {
        Some(name) => vec![name.clone()],
        None => client
            .list_workspaces()
            .await?
            .into_iter()
            .map(|w| w.workspace_name)
            .collect(),
    };
    let mut rows = Vec::new();
    for workspace in &workspaces {
        let (id, name, sessions) = sessions_of(&client, workspace, args.limit).await?;
        for s in &sessions {
            if args.json {
                write_out(&format!(
                    "{}\n",
                    to_json(&SessionLine {
                        workspace_id: id,
                        workspace_name: name.as_deref(),
                        session: s,
                    })?
                ))?;
            } else {
                rows.push(session_row(name.as_deref().unwrap_or(workspace), s));
            }
        }
    }
    if !args.json {
        if rows.is_empty() {
            eprintln!("warden logs: no sessions");
            return Ok(());
        }
        let layout = Layout::fit(&SESSION_COLUMNS, &rows, &[], terminal_width());
        let mut text = layout.header();
        text.push('\n');
        for row in &rows {
            text.push_str(&layout.row(row));
            text.push('\n');
        }
        write_out(&text)?;
    }
    Ok(())
}

/// A workspace's sessions, page by page, up to `limit`.
async fn sessions_of(
    client: &ApiClient,
    workspace: &str,
    limit: Option<u64>,
) -> Result<(Uuid, Option<String>, Vec<SessionListing>), Failure> {
    let mut params = SessionListParams::default();
    let mut out = Vec::new();
    loop {
        let left = limit.map_or(u64::from(MAX_LIMIT), |l| l - out.len() as u64);
        params.limit = Some(left.min(u64::from(MAX_LIMIT)).to_string());
        let page = client.sessions(workspace, &params).await?;
        out.extend(page.sessions);
        let full = limit.is_some_and(|l| out.len() as u64 >= l);
        match page.next {
            Some(next) if !full => params.cursor = Some(next),
            _ => return Ok((page.workspace_id, page.workspace_name, out)),
        }
    }
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

fn session_row(workspace: &str, s: &SessionListing) -> Vec<String> {
    let i = &s.session;
    vec![
        workspace.to_owned(),
        i.records.to_string(),
        opt(i.first_sequence),
        opt(i.last_sequence),
        opt(i.final_sequence),
        i.missing.to_string(),
        i.reported_lost.to_string(),
        i.unexplained.to_string(),
        time(s.last_record_at),
        clean(&i.session_id).into_owned(),
    ]
}

pub async fn report(args: SessionArgs) -> Result<(), Failure> {
    let client = args.connection.client()?;
    let workspace = match &args.workspace {
        Some(w) => w.clone(),
        None => find_workspace(&client, &args.id).await?,
    };
    let mut params = SessionReportParams {
        limit: Some(args.limit.min(u64::from(MAX_LIMIT)).to_string()),
        ..Default::default()
    };
    let mut report = client.session_report(&workspace, &args.id, &params).await?;
    // The rest of the records, up to the limit.
    while (report.records.len() as u64) < args.limit
        && let Some(next) = report.next.take()
    {
        params.cursor = Some(next);
        let left = args.limit - report.records.len() as u64;
        params.limit = Some(left.min(u64::from(MAX_LIMIT)).to_string());
        let page = client.session_report(&workspace, &args.id, &params).await?;
        report.records.extend(page.records);
        report.next = page.next;
    }
    if args.json {
        // `next` says whether records were left out.
        return write_out(&format!("{}\n", to_json(&report)?));
    }
    write_out(&summary_text(&workspace, &report))?;
    if !report.records.is_empty() {
        write_out("\n")?;
        Output::with_table(false, Table::Session)
            .records(report.records.iter().map(|r| r.get()), &[])?;
    }
    if report.next.is_some() {
        eprintln!(
            "warden logs: showing the first {} records; raise --limit for more",
            report.records.len()
        );
    }
    Ok(())
}

/// The live workspace that has session `id`: asks each one.
async fn find_workspace(client: &ApiClient, id: &str) -> Result<String, Failure> {
    let probe = SessionReportParams {
        limit: Some("1".into()),
        max_gaps: Some("0".into()),
        ..Default::default()
    };
    let mut found = Vec::new();
    for w in client.list_workspaces().await? {
        match client.session_report(&w.workspace_name, id, &probe).await {
            Ok(_) => found.push(w.workspace_name),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Failure::runtime_msg(format_args!(
            "no live workspace has a session {}",
            clean(id)
        ))),
        _ => Err(Failure::usage_msg(format_args!(
            "workspaces {} all have a session {}: pass --workspace",
            found.join(", "),
            clean(id)
        ))),
    }
}

/// `3-4, 7, 10-12`
fn gap_list(gaps: &[GapRange]) -> String {
    gaps.iter()
        .map(|g| {
            if g.first == g.last {
                g.first.to_string()
            } else {
                format!("{}-{}", g.first, g.last)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn summary_text(workspace: &str, report: &SessionReport<RawRecord>) -> String {
    let SessionInfo {
        session_id,
        records,
        conflicts,
        first_sequence,
        last_sequence,
        final_sequence,
        missing,
        reported_lost,
        unexplained,
        losses,
        agent_dropped,
        purged,
        policy_digest,
    } = &report.session;
    let name = report.workspace_name.as_deref().unwrap_or(workspace);
    let mut text = format!(
        "session      {}\nworkspace    {} ({})\nrecords      {records} ({conflicts} conflicting, {purged} purged by retention)\nsequence     first {}, last {}, final {}\n",
        clean(session_id),
        clean(name),
        report.workspace_id,
        opt(*first_sequence),
        opt(*last_sequence),
        final_sequence.map_or_else(|| "not reported".into(), |f| f.to_string()),
    );
    if *missing == 0 {
        text.push_str("missing      none\n");
    } else {
        text.push_str(&format!(
            "missing      {missing} in {}{} gap{}: {}{}\n",
            report.gaps.len(),
            if report.gaps_truncated { "+" } else { "" },
            if report.gaps.len() == 1 { "" } else { "s" },
            gap_list(&report.gaps),
            if report.gaps_truncated { ", ..." } else { "" }
        ));
    }
    if losses.is_empty() {
        text.push_str("reported     no loss\n");
    } else {
        let by_reason: Vec<String> = losses
            .iter()
            .map(|l| format!("{} {} {}", l.source, clean(&l.reason), l.records))
            .collect();
        text.push_str(&format!(
            "reported     {reported_lost} lost: {}\n",
            by_reason.join(", ")
        ));
    }
    if !agent_dropped.is_empty() {
        let count: i64 = agent_dropped.iter().map(|r| r.last - r.first + 1).sum();
        text.push_str(&format!(
            "agent lost   {count}: {}\n",
            gap_list(agent_dropped)
        ));
    }
    text.push_str(&format!("unexplained  {unexplained}\n"));
    if let Some(digest) = policy_digest {
        text.push_str(&format!("policy       {}\n", clean(digest)));
    }
    text.push_str(&verdict_line(&report.verdicts));
    text
}

/// `verdict      complete (#4, signed 2026-12-07T10:00:00Z by KEY; supersedes #2)`,
/// or why there is none yet.
fn verdict_line(verdicts: &[VerdictInfo]) -> String {
    let Some(v) = verdicts.last() else {
        return "verdict      none yet (judged when the client reports its end, or after the session is idle)\n".into();
    };
    let verdict = match (v.verdict.as_str(), v.end_reported) {
        ("incomplete", false) => "incomplete, no end reported".to_owned(),
        ("complete-except-reported-drops", _) => "complete except reported drops".to_owned(),
        (other, _) => clean(other).into_owned(),
    };
    let supersedes = v
        .supersedes
        .map(|s| format!("; supersedes #{s}"))
        .unwrap_or_default();
    format!(
        "verdict      {verdict} (#{}, signed {} by {}{supersedes})\n",
        v.id,
        clean(&v.signed_at),
        clean(&v.key_id)
    )
}

fn time(t: Option<jiff::Timestamp>) -> String {
    t.map_or_else(|| "-".into(), stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_read_as_ranges() {
        let g = |first, last| GapRange { first, last };
        assert_eq!(gap_list(&[g(3, 4), g(7, 7), g(10, 12)]), "3-4, 7, 10-12");
        assert_eq!(gap_list(&[]), "");
    }
}
