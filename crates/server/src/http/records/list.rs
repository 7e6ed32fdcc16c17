//! `GET /api/v1/records`: matching records, newest first, a page at a time.
//!
//! Pages are keyset pages on the record id (`next` = the last id shown), so
//! records committed while a client pages through cannot shift, skip or
//! repeat anything: they have higher ids than every page after the first.
//! A page ends at `limit` records or at the byte budget, whichever comes
//! first ([`super::budget`]); either way `next` says where to go on.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use warden_store::{Order, StoredRecord};

use super::budget::records_json;
use super::{json, query, record_query};
use warden_api::records::{RecordPage, RecordParams};

use crate::http::cursor::RecordCursor;
use crate::http::{AppState, HttpError};

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    params: Result<Query<RecordParams>, QueryRejection>,
) -> Result<Response, HttpError> {
    let params = query(params)?;
    if params.after.is_some() {
        return Err(HttpError::bad_request(
            "after is a stream parameter; pages take the cursor of the previous page",
        ));
    }
    let limit = params.page_limit().map_err(HttpError::bad_request)?;
    let before = params
        .cursor
        .as_deref()
        .map(str::parse::<RecordCursor>)
        .transpose()
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    let mut q = record_query(&state, &params).await?;
    q.order = Order::NewestFirst;
    // Read before the page: every record up to this id is visible to the
    // page's query (ids grow in commit order), so following from here (or
    // from the newest record shown, if newer) misses nothing and repeats
    // nothing.
    let last_before = state.store.last_record_id().await?.unwrap_or(0);
    let page = records_json(
        limit,
        state.max_response_bytes,
        |after: Option<&StoredRecord>, n| {
            let mut q = q.clone();
            q.before_id = after.map(|r| r.id).or(before.map(|c| c.0));
            q.limit = n;
            let store = Arc::clone(&state.store);
            async move { store.records(q).await }
        },
    )
    .await?;
    let head = page.first_id.map_or(last_before, |id| id.max(last_before));
    let next = page
        .more
        .then(|| page.last.as_ref().map(|r| RecordCursor(r.id).to_string()))
        .flatten();
    json(&RecordPage {
        records: page.records,
        next,
        head: RecordCursor(head).to_string(),
    })
}
