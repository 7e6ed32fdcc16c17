//! Coder's session-log read API (`warden_api::agent_firewall`): one
//! session's records in ascending sequence order between exclusive bounds,
//! as rows with the reference's field names. A session id names a session
//! in whichever workspace has it (client session ids are UUIDs); one the
//! caller may not see, or no one has, is a 404.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use warden_api::agent_firewall::{PREFIX, SessionLog, SessionLogParams, SessionLogs};
use warden_store::{Order, RecordQuery, SequencePosition, SessionRecordQuery};

use super::records::{json, query};
use super::{AppState, HttpError};

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new().route(&format!("{PREFIX}/sessions/{{id}}/logs"), get(logs))
}

async fn logs(
    State(state): State<Arc<AppState>>,
    Path(session): Path<String>,
    params: Result<Query<SessionLogParams>, QueryRejection>,
) -> Result<Response, HttpError> {
    let params = query(params)?.check().map_err(HttpError::bad_request)?;
    let not_found = || HttpError::new(StatusCode::NOT_FOUND, format!("no session {session:?}"));
    // The workspace whose agent first stored a record of the session.
    let first = state
        .store
        .records(RecordQuery {
            session_id: Some(session.clone()),
            order: Order::OldestFirst,
            limit: 1,
            ..RecordQuery::default()
        })
        .await?;
    let workspace_id = first.first().ok_or_else(not_found)?.workspace_id;
    // Sequence numbers are i32 in the store; bounds are any i64.
    let after = match params.seq_after {
        None => None,
        Some(seq) if seq < i64::from(i32::MIN) => None,
        Some(seq) => match i32::try_from(seq) {
            // After every sequence number of one: past it (conflicting
            // records share numbers, told apart by id).
            Ok(seq) => Some(SequencePosition {
                sequence_number: seq,
                id: i64::MAX,
            }),
            Err(_) => return json(&SessionLogs { logs: Vec::new() }),
        },
    };
    let records = state
        .store
        .session_records(SessionRecordQuery {
            workspace_id,
            session_id: session.clone(),
            after,
            limit: params.limit,
        })
        .await?;
    let logs = records
        .iter()
        .take_while(|r| {
            params
                .seq_before
                .is_none_or(|before| i64::from(r.sequence_number) < before)
        })
        .map(|r| SessionLog {
            sequence_number: i64::from(r.sequence_number),
            method: r.method.clone(),
            detail: r.url.clone(),
            matched_rule: r.matched_rule.clone(),
            created_at: r.event_time.known().unwrap_or(r.received_at),
            captured_at: r.received_at,
        })
        .collect();
    json(&SessionLogs { logs })
}
