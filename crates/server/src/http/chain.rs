//! `/api/v1/chain/links`, `/api/v1/chain/records` and
//! `/api/v1/chain/verdicts`: the record chain's links, the records in chain
//! form (every field the chain's encoding covers) and every stored session
//! verdict with the columns its check compares, oldest first, a page at a
//! time, so that `warden verify --url` can run the offline checks against a
//! running server with an auditor token.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use warden_evidence::bundle::{LinkJson, RecordJson};
use warden_evidence::json::VerdictJson;
use warden_store::{Order, RecordQuery};

use super::{AppState, HttpError};

/// At most this many links or records per page.
const MAX_LIMIT: u32 = 10_000;
/// Per page when the caller does not say.
const DEFAULT_LIMIT: u32 = 1000;

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/chain/links", get(links))
        .route("/api/v1/chain/records", get(records))
        .route("/api/v1/chain/verdicts", get(verdicts))
}

#[derive(Deserialize)]
struct LinkPage {
    /// Links after this position (`-1`: from the genesis link).
    after: Option<i64>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct RecordPage {
    /// Records with a greater id (0: from the first).
    after: Option<i64>,
    /// Records with a smaller id.
    before: Option<i64>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct VerdictPage {
    /// Verdicts with a greater id (0: from the first).
    after: Option<i64>,
    limit: Option<u32>,
}

/// `GET /api/v1/chain/verdicts`.
#[derive(Serialize)]
struct Verdicts {
    verdicts: Vec<VerdictJson>,
}

/// `GET /api/v1/chain/links`.
#[derive(Serialize)]
struct Links {
    links: Vec<LinkJson>,
}

/// `GET /api/v1/chain/records`.
#[derive(Serialize)]
struct Records {
    records: Vec<RecordJson>,
}

fn limit(l: Option<u32>) -> u32 {
    l.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

async fn links(
    State(state): State<Arc<AppState>>,
    Query(page): Query<LinkPage>,
) -> Result<Json<Links>, HttpError> {
    let links = state
        .store
        .chain_links(page.after.unwrap_or(-1), limit(page.limit))
        .await?;
    Ok(Json(Links {
        links: links.iter().map(LinkJson::of).collect(),
    }))
}

async fn records(
    State(state): State<Arc<AppState>>,
    Query(page): Query<RecordPage>,
) -> Result<Json<Records>, HttpError> {
    let records = state
        .store
        .records(RecordQuery {
            after_id: page.after,
            before_id: page.before,
            order: Order::OldestFirst,
            limit: limit(page.limit),
            ..RecordQuery::default()
        })
        .await?;
    Ok(Json(Records {
        records: records.into_iter().map(RecordJson::of).collect(),
    }))
}

async fn verdicts(
    State(state): State<Arc<AppState>>,
    Query(page): Query<VerdictPage>,
) -> Result<Json<Verdicts>, HttpError> {
    let verdicts = state
        .store
        .verdicts_after(page.after.unwrap_or(0), limit(page.limit))
        .await?;
    Ok(Json(Verdicts {
        verdicts: verdicts.iter().map(VerdictJson::of).collect(),
    }))
}
