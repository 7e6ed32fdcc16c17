//! `/api/v1/admin-events`: the chained log of admin actions, oldest first
//! (`?after=SEQ&limit=N`), for auditors and `warden verify --url`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use warden_api::access::AdminEventList;

use super::{AppState, HttpError};
use crate::admin_events::info;

/// At most this many events per page.
const MAX_LIMIT: u32 = 10_000;

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/admin-events", get(list))
}

#[derive(Deserialize)]
struct Page {
    after: Option<i64>,
    limit: Option<u32>,
}

async fn list(
    State(state): State<Arc<AppState>>,
    Query(page): Query<Page>,
) -> Result<Json<AdminEventList>, HttpError> {
    let limit = page.limit.unwrap_or(1000).clamp(1, MAX_LIMIT);
    let events = state
        .store
        .admin_events(page.after.unwrap_or(0), limit)
        .await?;
    Ok(Json(AdminEventList {
        events: events.iter().map(info).collect(),
    }))
}
