//! `/api/v1/workspaces`: register, list, rotate tokens, delete.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use jiff::Timestamp;
use uuid::Uuid;
use warden_store::{NewWorkspace, Workspace};

use warden_api::workspaces::{
    CreateWorkspace, DEFAULT_AGENT_NAME, WorkspaceInfo, WorkspaceList, WorkspaceToken,
};

use serde_json::json;

use super::bodies::workspace_info;
use super::{AppState, HttpError};
use crate::access::Principal;
use crate::admin_events::record;
use crate::auth::{hash_token, new_agent_token};
use crate::names::{check_name, check_owner, check_script};

pub(super) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(list).post(create))
        .route("/{name}", delete(remove))
        .route("/{name}/rotate-token", post(rotate))
}

fn token_response(w: &Workspace, token: String) -> WorkspaceToken {
    WorkspaceToken {
        workspace_id: w.id,
        workspace_name: w.name.clone(),
        owner: w.owner.clone(),
        agent_name: w.agent.name.clone(),
        agent_token: token,
    }
}

async fn create(
    State(state): State<Arc<AppState>>,
    Extension(actor): Extension<Principal>,
    body: Result<Json<CreateWorkspace>, JsonRejection>,
) -> Result<(StatusCode, Json<WorkspaceToken>), HttpError> {
    let Json(req) = body.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let agent_name = req
        .agent_name
        .unwrap_or_else(|| DEFAULT_AGENT_NAME.to_owned());
    let startup_script = req.startup_script.unwrap_or_default();
    check_name("workspace name", &req.name).map_err(HttpError::bad_request)?;
    check_name("agent name", &agent_name).map_err(HttpError::bad_request)?;
    check_owner(&req.owner).map_err(HttpError::bad_request)?;
    check_script(&startup_script).map_err(HttpError::bad_request)?;
    // The agent id is part of its token, so it is chosen here.
    let agent_id = Uuid::new_v4();
    let token = new_agent_token(agent_id);
    let workspace = state
        .store
        .create_workspace(
            NewWorkspace {
                id: Uuid::now_v7(),
                name: req.name,
                owner: req.owner,
                startup_script,
                agent_id,
                agent_name,
                token_hash: hash_token(&token),
            },
            Timestamp::now(),
        )
        .await?;
    record(
        &*state.store,
        &state.signing_key,
        &actor,
        "workspace.create",
        &workspace.name,
        json!({
            "workspace_id": workspace.id,
            "owner": workspace.owner,
            "agent_id": workspace.agent.id,
            "agent_name": workspace.agent.name,
        }),
    )
    .await?;
    tracing::info!(workspace = %workspace.name, id = %workspace.id, "registered a workspace");
    Ok((StatusCode::CREATED, Json(token_response(&workspace, token))))
}

async fn list(State(state): State<Arc<AppState>>) -> Result<Json<WorkspaceList>, HttpError> {
    let mut workspaces = Vec::new();
    for w in state.store.list_workspaces().await? {
        let losses = state.store.workspace_losses(w.id).await?;
        workspaces.push(workspace_info(&w, &losses));
    }
    Ok(Json(WorkspaceList { workspaces }))
}

async fn rotate(
    State(state): State<Arc<AppState>>,
    Extension(actor): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<WorkspaceToken>, HttpError> {
    let workspace = state.store.workspace(&name).await?.ok_or_else(|| {
        HttpError::new(
            StatusCode::NOT_FOUND,
            format!("no workspace named {name:?}"),
        )
    })?;
    let token = new_agent_token(workspace.agent.id);
    let workspace = state
        .store
        .rotate_agent_token(&name, hash_token(&token), Timestamp::now())
        .await?;
    record(
        &*state.store,
        &state.signing_key,
        &actor,
        "workspace.rotate-token",
        &workspace.name,
        json!({ "workspace_id": workspace.id, "agent_id": workspace.agent.id }),
    )
    .await?;
    tracing::info!(workspace = %workspace.name, "rotated an agent token; the old one is revoked");
    Ok(Json(token_response(&workspace, token)))
}

async fn remove(
    State(state): State<Arc<AppState>>,
    Extension(actor): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<WorkspaceInfo>, HttpError> {
    let workspace = state
        .store
        .delete_workspace(&name, Timestamp::now())
        .await?;
    record(
        &*state.store,
        &state.signing_key,
        &actor,
        "workspace.delete",
        &workspace.name,
        json!({ "workspace_id": workspace.id, "agent_id": workspace.agent.id }),
    )
    .await?;
    let losses = state.store.workspace_losses(workspace.id).await?;
    tracing::info!(workspace = %workspace.name, id = %workspace.id, "deleted a workspace; its agent is revoked, its records stay");
    Ok(Json(workspace_info(&workspace, &losses)))
}
