//! `/api/v1/tokens`: named admin and auditor tokens (create, list, revoke).
//! Admin only. A token is shown once, when created; only its hash is kept.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use jiff::Timestamp;
use serde_json::json;
use uuid::Uuid;
use warden_api::access::{CreateToken, TokenCreated, TokenInfo, TokenList};
use warden_store::{ApiToken, NewApiToken, TokenRole};

use super::{AppState, HttpError};
use crate::access::Principal;
use crate::admin_events::record;
use crate::auth::{hash_token, new_api_token};
use crate::names::check_name;

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/tokens", get(list).post(create))
        .route("/api/v1/tokens/{name}", delete(revoke))
}

fn info(t: &ApiToken) -> TokenInfo {
    TokenInfo {
        id: t.id,
        name: t.name.clone(),
        role: t.role.as_str().to_owned(),
        created_at: t.created_at,
        last_used_at: t.last_used_at,
    }
}

async fn create(
    State(state): State<Arc<AppState>>,
    Extension(actor): Extension<Principal>,
    body: Result<Json<CreateToken>, JsonRejection>,
) -> Result<(StatusCode, Json<TokenCreated>), HttpError> {
    let Json(req) = body.map_err(|e| HttpError::bad_request(e.body_text()))?;
    check_name("token name", &req.name).map_err(HttpError::bad_request)?;
    let role = TokenRole::parse(&req.role).ok_or_else(|| {
        HttpError::bad_request(format!(
            "role {:?} is not one of admin, auditor (agent tokens belong to workspaces)",
            req.role
        ))
    })?;
    let id = Uuid::new_v4();
    let token = new_api_token(id);
    let created = state
        .store
        .create_api_token(
            NewApiToken {
                id,
                name: req.name,
                role,
                token_hash: hash_token(&token),
            },
            Timestamp::now(),
        )
        .await?;
    record(
        &*state.store,
        &state.signing_key,
        &actor,
        "token.create",
        &created.name,
        json!({ "token_id": created.id, "role": created.role.as_str() }),
    )
    .await?;
    tracing::info!(name = %created.name, role = %created.role, "created a token");
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            id: created.id,
            name: created.name,
            role: created.role.as_str().to_owned(),
            created_at: created.created_at,
            token,
        }),
    ))
}

async fn list(State(state): State<Arc<AppState>>) -> Result<Json<TokenList>, HttpError> {
    let tokens = state.store.api_tokens().await?;
    Ok(Json(TokenList {
        tokens: tokens.iter().map(info).collect(),
    }))
}

async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(actor): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<TokenInfo>, HttpError> {
    let revoked = state
        .store
        .revoke_api_token(&name, Timestamp::now())
        .await?;
    record(
        &*state.store,
        &state.signing_key,
        &actor,
        "token.revoke",
        &revoked.name,
        json!({ "token_id": revoked.id, "role": revoked.role.as_str() }),
    )
    .await?;
    tracing::info!(name = %revoked.name, "revoked a token; it stops working at once");
    Ok(Json(info(&revoked)))
}
