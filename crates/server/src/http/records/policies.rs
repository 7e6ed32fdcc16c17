//! `GET /api/v1/policies/{digest}`: a policy text a client reported, by its
//! digest (what records and session reports name).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::json;
use crate::http::{AppState, HttpError};
use warden_api::records::PolicyInfo;

pub(super) async fn policy(
    State(state): State<Arc<AppState>>,
    Path(digest): Path<String>,
) -> Result<Response, HttpError> {
    let policy = state.store.policy(&digest).await?.ok_or_else(|| {
        // A digest is 64 hex characters: do not echo anything longer.
        let shown: String = digest.chars().take(64).collect();
        HttpError::new(
            StatusCode::NOT_FOUND,
            format!("no policy with digest {shown:?}"),
        )
    })?;
    json(&PolicyInfo {
        digest: policy.digest,
        text: policy.text,
        first_seen: policy.first_seen,
    })
}
