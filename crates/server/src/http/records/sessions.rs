//! A workspace's sessions (`GET /api/v1/workspaces/{name}/sessions`) and
//! one session's report with its records in sequence order
//! (`.../sessions/{session}`): where an operator tells loss from gaps.

use std::cmp::Reverse;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use warden_store::{SequencePosition, SessionActivity, SessionRecordQuery, StoredRecord};

use super::budget::records_json;
use super::{json, query, workspace_in_path};
use warden_api::records::{
    DEFAULT_LIMIT, GapRange, MAX_GAPS, SessionList, SessionListParams, SessionListing,
    SessionReport, SessionReportParams, parse_count, parse_limit,
};

use crate::http::bodies::{session_info, verdict_info};
use crate::http::cursor::{SessionCursor, SessionListCursor};
use crate::http::{AppState, HttpError};

/// Where a session sits in the list: most recently stored-to first,
/// sessions without stored records last, by id.
fn list_order(last_record_id: Option<i64>, session_id: &str) -> (Reverse<Option<i64>>, &str) {
    (Reverse(last_record_id), session_id)
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    params: Result<Query<SessionListParams>, QueryRejection>,
) -> Result<Response, HttpError> {
    let params = query(params)?;
    let limit =
        parse_limit(params.limit.as_deref(), DEFAULT_LIMIT).map_err(HttpError::bad_request)?;
    let after = params
        .cursor
        .as_deref()
        .map(str::parse::<SessionListCursor>)
        .transpose()
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    let (workspace_id, workspace_name) = workspace_in_path(&state, &name).await?;
    let all = state.store.sessions(workspace_id).await?;
    let mut page: Vec<&SessionActivity> = all
        .iter()
        .filter(|s| {
            after.as_ref().is_none_or(|c| {
                list_order(s.last_record_id, &s.summary.session_id)
                    > list_order(c.last_record_id, &c.session_id)
            })
        })
        .take(limit as usize + 1)
        .collect();
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next = more.then(|| page.last()).flatten().map(|s| {
        SessionListCursor {
            last_record_id: s.last_record_id,
            session_id: s.summary.session_id.clone(),
        }
        .to_string()
    });
    json(&SessionList {
        workspace_id,
        workspace_name,
        sessions: page
            .into_iter()
            .map(|s| SessionListing {
                session: session_info(&s.summary),
                first_record_at: s.first_time,
                last_record_at: s.last_time,
            })
            .collect(),
        next,
    })
}

pub(super) async fn report(
    State(state): State<Arc<AppState>>,
    Path((name, session)): Path<(String, String)>,
    params: Result<Query<SessionReportParams>, QueryRejection>,
) -> Result<Response, HttpError> {
    let params = query(params)?;
    let limit =
        parse_limit(params.limit.as_deref(), DEFAULT_LIMIT).map_err(HttpError::bad_request)?;
    let max_gaps = parse_count("max_gaps", params.max_gaps.as_deref(), MAX_GAPS, MAX_GAPS)
        .map_err(HttpError::bad_request)?;
    let after = params
        .cursor
        .as_deref()
        .map(str::parse::<SessionCursor>)
        .transpose()
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    let (workspace_id, workspace_name) = workspace_in_path(&state, &name).await?;
    let summary = state
        .store
        .session_summary(workspace_id, &session)
        .await?
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::NOT_FOUND,
                format!("no session {session:?} in workspace {name:?}"),
            )
        })?;
    // One more than asked tells whether the list was cut.
    let interior = state
        .store
        .session_gaps(workspace_id, &session, max_gaps.saturating_add(1))
        .await?;
    let mut gaps = summary.gaps(&interior);
    let gaps_truncated = gaps.len() > max_gaps as usize;
    gaps.truncate(max_gaps as usize);
    let page = records_json(
        limit,
        state.max_response_bytes,
        |last: Option<&StoredRecord>, n| {
            let query = SessionRecordQuery {
                workspace_id,
                session_id: session.clone(),
                after: last.map(SequencePosition::of).or(after.map(|c| c.0)),
                limit: n,
            };
            let store = Arc::clone(&state.store);
            async move { store.session_records(query).await }
        },
    )
    .await?;
    let next = page
        .more
        .then_some(page.last.as_ref())
        .flatten()
        .map(|r| SessionCursor(SequencePosition::of(r)).to_string());
    let verdicts = state
        .store
        .session_verdicts(workspace_id, &session)
        .await?
        .iter()
        .map(verdict_info)
        .collect();
    json(&SessionReport {
        verdicts,
        workspace_id,
        workspace_name,
        session: session_info(&summary),
        gaps: gaps
            .iter()
            .map(|g| GapRange {
                first: g.first,
                last: g.last,
            })
            .collect(),
        gaps_truncated,
        records: page.records,
        next,
    })
}
