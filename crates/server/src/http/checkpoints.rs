//! `/api/v1/checkpoints`: the signed checkpoints over the record chain, as
//! an auditor keeps them (oldest first, `?after=ID&limit=N`), and
//! `/api/v1/checkpoints/latest`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use warden_evidence::checkpoint::CheckpointFile;

use super::{AppState, HttpError};

/// At most this many checkpoints per page.
const MAX_LIMIT: u32 = 10_000;

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/checkpoints", get(list))
        .route("/api/v1/checkpoints/latest", get(latest))
}

#[derive(Deserialize)]
struct Page {
    after: Option<i64>,
    limit: Option<u32>,
}

async fn list(
    State(state): State<Arc<AppState>>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<CheckpointFile>>, HttpError> {
    let limit = page.limit.unwrap_or(1000).clamp(1, MAX_LIMIT);
    let list = state
        .store
        .checkpoints(page.after.unwrap_or(0), limit)
        .await?;
    Ok(Json(list.iter().map(CheckpointFile::of).collect()))
}

async fn latest(State(state): State<Arc<AppState>>) -> Result<Json<CheckpointFile>, HttpError> {
    match state.store.latest_checkpoint().await? {
        Some(c) => Ok(Json(CheckpointFile::of(&c))),
        None => Err(HttpError::new(
            StatusCode::NOT_FOUND,
            "no checkpoint signed yet",
        )),
    }
}
