//! `/workspaces/{name}` (a workspace: its agent, losses and sessions) and
//! `/workspaces/{name}/sessions/{session}` (a session's records in sequence
//! order with its gaps drawn where they are). `{name}` is a live
//! workspace's name or any workspace's id (deleted ones keep their
//! records).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use warden_store::verdict::SessionVerdict;
use warden_store::{SessionRecordQuery, SessionSummary, StoredRecord};

use super::feed::record_row;
use super::layout::{Nav, error_page, html_response, page, store_failure};
use super::require_session;
use super::text::{path_segment, shown};
use crate::http::AppState;
use crate::http::bodies::verdict_info;
use crate::http::cursor::SessionCursor;
use crate::http::records::workspace_in_path;

/// Sessions listed on a workspace's page.
const SESSIONS_SHOWN: usize = 200;
/// Records per session page.
const SESSION_PAGE: u32 = 500;

pub(super) async fn workspace(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
) -> Response {
    let chrome = match require_session(&state, &headers, &uri).await {
        Ok(chrome) => chrome,
        Err(redirect) => return redirect.into_response(),
    };
    let (id, live_name) = match workspace_in_path(&state, &name).await {
        Ok(found) => found,
        Err(e) => return error_page(e.status(), Some(&chrome), e.message()),
    };
    let workspace = match &live_name {
        Some(n) => match state.store.workspace(n).await {
            Ok(w) => w,
            Err(e) => return store_failure(&chrome, &e),
        },
        None => None,
    };
    let sessions = match state.store.sessions(id).await {
        Ok(s) => s,
        Err(e) => return store_failure(&chrome, &e),
    };
    let losses = match state.store.workspace_losses(id).await {
        Ok(l) => l,
        Err(e) => return store_failure(&chrome, &e),
    };
    let title = live_name.clone().unwrap_or_else(|| id.to_string());
    let main = html! {
        h1 { "Workspace " (shown(&title)) }
        dl.facts {
            dt { "Id" } dd { (id) }
            @if let Some(w) = &workspace {
                dt { "Owner" } dd { (shown(&w.owner)) }
                dt { "Agent" } dd { (shown(&w.agent.name)) }
                dt { "Last contact" } dd { (opt_time(w.agent.last_contact_at)) }
                dt { "Last batch" } dd { (opt_time(w.agent.last_batch_at)) }
            } @else {
                dt { "State" } dd { "deleted (its records stay)" }
            }
        }
        p {
            @if let Some(n) = &live_name {
                a href=(format!("/?workspace={}", path_segment(n))) { "Its records in the live feed" }
                " · "
                a href=(format!("/?workspace={}&decision=deny", path_segment(n))) { "its denials" }
            }
        }
        section aria-labelledby="losses-h" {
            h2 #losses-h { "Reported loss" }
            @if losses.is_empty() {
                p.empty { "Nothing reported lost." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Seen by" } th scope="col" { "Reason" } th.num scope="col" { "Records" } th.num scope="col" { "Frames" } } }
                    tbody {
                        @for l in &losses {
                            tr { td { (l.source.as_str()) } td { (shown(&l.reason)) } td.num { (l.records) } td.num { (l.frames) } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="sessions-h" {
            h2 #sessions-h { "Sessions" }
            @if sessions.is_empty() {
                p.empty { "No sessions yet." }
            } @else {
                p { (sessions.len()) " sessions, most recently active first"
                    @if sessions.len() > SESSIONS_SHOWN { "; the first " (SESSIONS_SHOWN) " are listed" } "." }
                div.scroll {
                    table #sessions {
                        thead {
                            tr {
                                th scope="col" { "Session" }
                                th.num scope="col" { "Records" }
                                th.num scope="col" { "Last seq." }
                                th.num scope="col" { "Final seq." }
                                th.num scope="col" { "Gaps" }
                                th.num scope="col" { "Reported lost" }
                                th.num scope="col" { "Unexplained" }
                                th scope="col" { "Last record" }
                            }
                        }
                        tbody {
                            @for s in sessions.iter().take(SESSIONS_SHOWN) {
                                @let sum = &s.summary;
                                tr.lossy[sum.unexplained() > 0] {
                                    td.wrap { a href=(format!("/workspaces/{id}/sessions/{}", path_segment(&sum.session_id))) { (shown(&sum.session_id)) } }
                                    td.num { (sum.records) }
                                    td.num { (opt(sum.last_sequence_number)) }
                                    td.num { (opt(sum.final_sequence_number)) }
                                    td.num { (sum.missing()) }
                                    td.num { (sum.reported_losses()) }
                                    td.num.bad[sum.unexplained() > 0] { (sum.unexplained()) }
                                    td { (opt_time(s.last_time)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&title, Nav::Other, &chrome, main))
}

#[derive(Deserialize)]
pub(super) struct SessionPage {
    cursor: Option<String>,
}

pub(super) async fn session(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path((name, session)): Path<(String, String)>,
    Query(params): Query<SessionPage>,
) -> Response {
    let chrome = match require_session(&state, &headers, &uri).await {
        Ok(chrome) => chrome,
        Err(redirect) => return redirect.into_response(),
    };
    let (id, live_name) = match workspace_in_path(&state, &name).await {
        Ok(found) => found,
        Err(e) => return error_page(e.status(), Some(&chrome), e.message()),
    };
    let after = match params.cursor.as_deref().map(str::parse::<SessionCursor>) {
        None => None,
        Some(Ok(c)) => Some(c.0),
        Some(Err(e)) => return error_page(StatusCode::BAD_REQUEST, Some(&chrome), &e.to_string()),
    };
    let summary = match state.store.session_summary(id, &session).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return error_page(
                StatusCode::NOT_FOUND,
                Some(&chrome),
                &format!("no session {session:?} in this workspace"),
            );
        }
        Err(e) => return store_failure(&chrome, &e),
    };
    let records = match state
        .store
        .session_records(SessionRecordQuery {
            workspace_id: id,
            session_id: session.clone(),
            after,
            limit: SESSION_PAGE,
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return store_failure(&chrome, &e),
    };
    let verdicts = match state.store.session_verdicts(id, &session).await {
        Ok(v) => v,
        Err(e) => return store_failure(&chrome, &e),
    };
    let next = (records.len() == SESSION_PAGE as usize)
        .then(|| records.last())
        .flatten()
        .map(|r| SessionCursor(warden_store::SequencePosition::of(r)).to_string());
    let ws_name = live_name.unwrap_or_else(|| id.to_string());
    let main = html! {
        p.crumbs { a href=(format!("/workspaces/{id}")) { "Workspace " (shown(&ws_name)) } }
        h1 { "Session " span.wrap { (shown(&session)) } }
        (session_facts(&summary))
        (completeness(&verdicts))
        section aria-labelledby="records-h" {
            h2 #records-h { "Records in sequence order" }
            @if after.is_some() { p { "Continued from an earlier page; " a href=(format!("/workspaces/{id}/sessions/{}", path_segment(&session))) { "back to the start" } "." } }
            ol #session-records.records {
                (rows_with_gaps(&records, &summary, after.is_none(), next.is_none()))
            }
            @if let Some(next) = next {
                p { a rel="next" href=(format!("/workspaces/{id}/sessions/{}?cursor={next}", path_segment(&session))) { "Later records →" } }
            }
        }
    };
    let title = format!("Session {session}");
    html_response(StatusCode::OK, page(&title, Nav::Other, &chrome, main))
}

fn session_facts(s: &SessionSummary) -> Markup {
    html! {
        dl.facts #session-facts {
            dt { "Records stored" } dd { (s.records) @if s.purged > 0 { " (" (s.purged) " since removed by retention)" } }
            dt { "Sequence numbers stored" } dd { (opt(s.first_sequence_number)) " – " (opt(s.last_sequence_number)) }
            dt { "Final sequence number" } dd #final-seq {
                @match s.final_sequence_number {
                    Some(-1) => "none assigned (the client reported an empty session)",
                    Some(n) => (n),
                    None => "not reported (the client has not closed the session)",
                }
            }
            dt { "Missing" } dd #missing { (s.missing()) }
            dt { "Reported lost" } dd #reported { (s.reported_losses())
                @for l in &s.losses { " · " (l.source.as_str()) " " (shown(&l.reason)) ": " (l.records) }
            }
            dt { "Unexplained" } dd #unexplained .bad[s.unexplained() > 0] { (s.unexplained()) }
            @if s.conflicts > 0 { dt { "Conflicts" } dd { (s.conflicts) } }
        }
    }
}

/// The session's signed completeness verdict (the latest; earlier ones
/// listed as superseded), or why there is none yet.
fn completeness(verdicts: &[SessionVerdict]) -> Markup {
    let infos: Vec<_> = verdicts.iter().map(verdict_info).collect();
    html! {
        section #completeness aria-labelledby="completeness-h" {
            h2 #completeness-h { "Completeness" }
            @match infos.last() {
                None => p.muted #verdict { "No verdict yet: the session is judged when its client reports its end, or once it has been idle. The counts above are what is stored." },
                Some(v) => {
                    p #verdict .bad[v.verdict == "incomplete"] {
                        strong { (verdict_words(&v.verdict, v.end_reported)) }
                        " · signed " (shown(&v.signed_at)) " by key " code { (shown(&v.key_id)) }
                        " (verdict #" (v.id) ")"
                    }
                    @if infos.len() > 1 {
                        details {
                            summary { "Superseded verdicts (" (infos.len() - 1) ")" }
                            ul {
                                @for old in infos.iter().rev().skip(1) {
                                    li { "#" (old.id) ": " (verdict_words(&old.verdict, old.end_reported)) ", signed " (shown(&old.signed_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A verdict in words.
fn verdict_words(verdict: &str, end_reported: bool) -> String {
    match (verdict, end_reported) {
        ("complete", _) => "Complete".into(),
        ("complete-except-reported-drops", _) => "Complete except reported drops".into(),
        ("incomplete", false) => "Incomplete: no end reported".into(),
        ("incomplete", true) => "Incomplete: records are missing that nobody reported".into(),
        (other, _) => other.to_owned(),
    }
}

/// One row of a session page.
#[derive(Debug, PartialEq, Eq)]
enum Row<'a> {
    Record(&'a StoredRecord),
    /// Missing sequence numbers, both ends included.
    Gap(i64, i64),
}

/// The page's records with a gap wherever sequence numbers are missing:
/// before the first (from 0, on the first page), between records, and
/// after the last up to the final number (on the last page).
fn with_gaps<'a>(
    records: &'a [StoredRecord],
    final_sequence: Option<i64>,
    first_page: bool,
    last_page: bool,
) -> Vec<Row<'a>> {
    let mut rows = Vec::with_capacity(records.len() + 2);
    let mut expected: Option<i64> = first_page.then_some(0);
    for r in records {
        let seq = i64::from(r.sequence_number);
        if let Some(e) = expected
            && seq > e
        {
            rows.push(Row::Gap(e, seq - 1));
        }
        rows.push(Row::Record(r));
        // Conflicting records repeat a number: never expect less.
        expected = Some(expected.map_or(seq + 1, |e| e.max(seq + 1)));
    }
    let last_final = final_sequence.unwrap_or(-1);
    let from = expected.unwrap_or(0);
    if last_page && last_final >= from {
        rows.push(Row::Gap(from, last_final));
    }
    rows
}

fn rows_with_gaps(
    records: &[StoredRecord],
    summary: &SessionSummary,
    first_page: bool,
    last_page: bool,
) -> Markup {
    html! {
        @for row in with_gaps(records, summary.final_sequence_number, first_page, last_page) {
            @match row {
                Row::Record(r) => (record_row(r)),
                Row::Gap(first, last) => (gap_row(first, last)),
            }
        }
    }
}

fn gap_row(first: i64, last: i64) -> Markup {
    let n = last - first + 1;
    html! {
        li.gap data-first=(first) data-last=(last) {
            @if n == 1 {
                "gap: sequence number " (first) " is missing"
            } @else {
                "gap: sequence numbers " (first) "–" (last) " are missing (" (n) ")"
            }
        }
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| v.to_string())
}

fn opt_time(t: Option<jiff::Timestamp>) -> String {
    t.map_or_else(|| "never".to_owned(), crate::line::format::rfc3339_nano)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use uuid::Uuid;
    use warden_proto::domain::{Decision, EventTime, Peer};

    fn rec(seq: i32) -> StoredRecord {
        StoredRecord {
            id: i64::from(seq) + 100,
            workspace_id: Uuid::nil(),
            workspace_name: "dev".into(),
            workspace_owner: "alice".into(),
            agent_id: Uuid::nil(),
            agent_name: "main".into(),
            batch_id: Uuid::nil(),
            session_id: Some("s".into()),
            sequence_number: seq,
            event_time: EventTime::Missing,
            received_at: Timestamp::UNIX_EPOCH,
            agent_received_at: Timestamp::UNIX_EPOCH,
            agent_time_suspect: false,
            committed_at: Timestamp::UNIX_EPOCH,
            decision: Decision::Deny,
            method: "GET".into(),
            url: "https://example.com/".into(),
            url_original_bytes: None,
            matched_rule: String::new(),
            process: String::new(),
            peer: Peer {
                uid: 0,
                gid: 0,
                pid: 1,
                comm: String::new(),
                exe: String::new(),
            },
            policy_digest: None,
            conflict: false,
        }
    }

    fn shape(rows: &[Row<'_>]) -> Vec<String> {
        rows.iter()
            .map(|r| match r {
                Row::Record(r) => r.sequence_number.to_string(),
                Row::Gap(a, b) => format!("gap {a}-{b}"),
            })
            .collect()
    }

    #[test]
    fn gaps_are_drawn_where_numbers_are_missing() {
        let records: Vec<StoredRecord> = [2, 3, 3, 7].into_iter().map(rec).collect();
        assert_eq!(
            shape(&with_gaps(&records, Some(9), true, true)),
            ["gap 0-1", "2", "3", "3", "gap 4-6", "7", "gap 8-9"]
        );
        // A later page does not know what came before it; an earlier one
        // does not draw the tail.
        assert_eq!(
            shape(&with_gaps(&records, Some(9), false, false)),
            ["2", "3", "3", "gap 4-6", "7"]
        );
        // No final number: no tail gap; nothing stored but a final number.
        assert_eq!(
            shape(&with_gaps(&records[..1], None, true, true)),
            ["gap 0-1", "2"]
        );
        assert_eq!(shape(&with_gaps(&[], Some(4), true, true)), ["gap 0-4"]);
        assert!(with_gaps(&[], Some(-1), true, true).is_empty());
    }
}
