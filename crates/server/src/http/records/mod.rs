//! The record query API under `/api/v1` (admin token): records newest
//! first with keyset pages ([`list`]), a workspace's sessions and one
//! session's report ([`sessions`]), per-workspace summaries
//! ([`summaries`]). The live stream (`super::stream`) builds on
//! [`record_query`] and [`RecordOut`]. Bodies are the
//! types of [`warden_api::records`].
//!
//! What the handlers share lives here: turning query parameters into a
//! store query, finding a workspace, and rendering a stored record.

mod budget;
mod list;
mod policies;
mod sessions;
mod summaries;

use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use serde::Serialize;
use uuid::Uuid;
use warden_store::{RecordId, RecordQuery, StoredRecord};

use warden_api::records::{RecordFilter, RecordParams};

use super::{AppState, HttpError};
use crate::line::LineRecord;
use crate::line::format::JsonLine;

/// The routes, relative to the root (they sit under `/api/v1/workspaces`
/// beside the workspace admin routes, hence `{name}`).
pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/records", get(list::list))
        .route("/api/v1/workspaces/{name}/sessions", get(sessions::list))
        .route(
            "/api/v1/workspaces/{name}/sessions/{session}",
            get(sessions::report),
        )
        .route("/api/v1/summaries", get(summaries::summaries))
        .route("/api/v1/policies/{digest}", get(policies::policy))
}

/// A query string, or a 400 that says what is wrong with it.
pub(crate) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, HttpError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| HttpError::bad_request(e.body_text()))
}

/// Checks the record filter parameters (durations count back from now) and
/// resolves a workspace name; everything but order, paging and limit.
pub(crate) async fn record_query(
    state: &AppState,
    params: &RecordParams,
) -> Result<RecordQuery, HttpError> {
    let RecordFilter {
        workspace,
        workspace_id,
        owner,
        agent,
        decision,
        session,
        since,
        until,
        url_contains,
        method,
        conflict,
    } = params
        .check(Timestamp::now())
        .map_err(HttpError::bad_request)?;
    let workspace_id = match (workspace, workspace_id) {
        (Some(_), Some(_)) => {
            return Err(HttpError::bad_request(
                "give workspace (a name) or workspace_id, not both",
            ));
        }
        (Some(name), None) => Some(live_workspace(state, &name).await?.id),
        (None, id) => id,
    };
    Ok(RecordQuery {
        workspace_id,
        owner,
        session_id: session,
        decision,
        since,
        until,
        url_contains,
        agent_name: agent,
        method,
        conflict,
        ..RecordQuery::default()
    })
}

/// The live workspace with this name, or a 404.
pub(crate) async fn live_workspace(
    state: &AppState,
    name: &str,
) -> Result<warden_store::Workspace, HttpError> {
    state.store.workspace(name).await?.ok_or_else(|| {
        HttpError::new(
            StatusCode::NOT_FOUND,
            format!("no workspace named {name:?}"),
        )
    })
}

/// A workspace named in a path: a live workspace's name, or the id of any
/// workspace (deleted ones keep their records). Its name when live.
pub(crate) async fn workspace_in_path(
    state: &AppState,
    name_or_id: &str,
) -> Result<(Uuid, Option<String>), HttpError> {
    if let Some(w) = state.store.workspace(name_or_id).await? {
        return Ok((w.id, Some(w.name)));
    }
    Uuid::try_parse(name_or_id)
        .map(|id| (id, None))
        .map_err(|_| {
            HttpError::new(
                StatusCode::NOT_FOUND,
                format!("no workspace named {name_or_id:?}"),
            )
        })
}

impl From<budget::RecordsError> for HttpError {
    fn from(e: budget::RecordsError) -> Self {
        match e {
            budget::RecordsError::Store(e) => e.into(),
            budget::RecordsError::Encode(cause) => {
                // Handled here: logged once with its cause.
                tracing::error!(error = %cause, "encoding a record of a page failed");
                HttpError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "encoding the response failed; see the control plane's log",
                )
            }
        }
    }
}

/// A JSON response of a body that borrows (record objects borrow their
/// stored record, so `Json` of a value that outlives the handler does not
/// fit).
pub(crate) fn json(body: &impl Serialize) -> Result<Response, HttpError> {
    match serde_json::to_vec(body) {
        Ok(bytes) => Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response()),
        Err(e) => {
            // Handled here: logged once.
            tracing::error!(error = %e, "encoding an api response failed");
            Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding the response failed; see the control plane's log",
            ))
        }
    }
}

/// A record as the API shows it: the `json` boundary line, plus the
/// record's id, socket peer and conflict flag.
#[derive(Serialize)]
pub(crate) struct RecordOut<'a> {
    id: RecordId,
    #[serde(flatten)]
    line: JsonLine<'a>,
    agent_received_at: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    agent_time_suspect: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_digest: Option<&'a str>,
    peer: PeerOut<'a>,
    conflict: bool,
}

#[derive(Serialize)]
struct PeerOut<'a> {
    uid: u32,
    gid: u32,
    pid: i32,
    comm: &'a str,
    exe: &'a str,
}

impl<'a> RecordOut<'a> {
    pub(crate) fn new(r: &'a StoredRecord) -> RecordOut<'a> {
        RecordOut {
            id: r.id,
            line: JsonLine::new(&LineRecord::stored(r)),
            agent_received_at: crate::line::format::rfc3339_nano(r.agent_received_at),
            agent_time_suspect: r.agent_time_suspect,
            policy_digest: r.policy_digest.as_deref(),
            peer: PeerOut {
                uid: r.peer.uid,
                gid: r.peer.gid,
                pid: r.peer.pid,
                comm: &r.peer.comm,
                exe: &r.peer.exe,
            },
            conflict: r.conflict,
        }
    }
}

#[cfg(test)]
mod tests {
    use warden_proto::domain::{Decision, EventTime, Peer};

    use super::*;
    use crate::line::{LineFormat, write_line};
    use warden_api::records::Record;

    fn stored() -> StoredRecord {
        StoredRecord {
            id: 42,
            workspace_id: Uuid::nil(),
            workspace_name: "dev".into(),
            workspace_owner: "alice".into(),
            agent_id: Uuid::nil(),
            agent_name: "main".into(),
            batch_id: Uuid::nil(),
            session_id: Some("s".into()),
            sequence_number: 7,
            event_time: EventTime::Missing,
            received_at: Timestamp::new(1_765_227_527, 250_000_000).unwrap(),
            agent_received_at: Timestamp::new(978_307_200, 0).unwrap(),
            agent_time_suspect: true,
            committed_at: Timestamp::new(1_765_227_528, 0).unwrap(),
            decision: Decision::Allow,
            method: "GET".into(),
            url: "https://example.com/\u{1b}[31m".into(),
            url_original_bytes: Some(70_000),
            matched_rule: "domain=example.com".into(),
            policy_digest: Some("ab".repeat(32)),
            process: "claude".into(),
            peer: Peer {
                uid: 1000,
                gid: 1001,
                pid: 77,
                comm: "curl".into(),
                exe: "/usr/bin/curl".into(),
            },
            conflict: true,
        }
    }

    /// The API's record object is the json line plus id, peer and conflict,
    /// and a client reads every field back.
    #[test]
    fn a_record_object_is_the_json_line_plus_id_peer_and_conflict() {
        let r = stored();
        let mut line = String::new();
        write_line(&mut line, LineFormat::Json, &LineRecord::stored(&r));
        let mut expected: serde_json::Value = serde_json::from_str(&line).unwrap();
        let extra = serde_json::json!({
            "id": 42,
            "agent_received_at": "2001-01-01T00:00:00Z",
            "agent_time_suspect": true,
            "policy_digest": "ab".repeat(32),
            "peer": {"uid": 1000, "gid": 1001, "pid": 77, "comm": "curl", "exe": "/usr/bin/curl"},
            "conflict": true,
        });
        for (k, v) in extra.as_object().unwrap() {
            expected[k] = v.clone();
        }
        let text = serde_json::to_string(&RecordOut::new(&r)).unwrap();
        let actual: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(actual, expected);
        assert!(text.starts_with(r#"{"id":42,"ts":"#), "{text}");

        let read: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(read.id, 42);
        assert_eq!(read.ts, r.received_at);
        assert_eq!(read.event_time, None);
        assert_eq!(read.http_url, r.url);
        assert_eq!(read.sequence, Some(7));
        assert_eq!(read.peer.exe, "/usr/bin/curl");
        assert!(read.conflict);
        assert!(read.http_url_truncated && read.agent_time_suspect);
        assert_eq!(read.http_url_bytes, Some(70_000));
        assert_eq!(read.agent_received_at, Some(r.agent_received_at));
        assert_eq!(read.policy_digest, r.policy_digest);
    }
}
