//! `GET /api/v1/summaries`: per live workspace, its records over a time
//! range (allowed and denied counts, the most denied hosts), its losses, the
//! loss its sessions' gaps show that nobody reported, and when its agent
//! was last heard from.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use jiff::Timestamp;
use warden_store::{ActivityQuery, Workspace};

use super::{live_workspace, query};
use warden_api::records::{
    DEFAULT_TOP_HOSTS, HostInfo, MAX_TOP_HOSTS, SummaryList, SummaryParams, WorkspaceSummary,
    parse_count,
};
use warden_api::time::parse_time;

use crate::http::bodies::loss_infos;
use crate::http::{AppState, HttpError};
use crate::plausible::saturating_total;

pub(super) async fn summaries(
    State(state): State<Arc<AppState>>,
    params: Result<Query<SummaryParams>, QueryRejection>,
) -> Result<Json<SummaryList>, HttpError> {
    let params = query(params)?;
    let now = Timestamp::now();
    let time = |name: &str, value: Option<&str>| {
        value
            .map(|v| parse_time(v, now).map_err(|e| HttpError::bad_request(format!("{name}: {e}"))))
            .transpose()
    };
    let since = time("since", params.since.as_deref())?;
    let until = time("until", params.until.as_deref())?;
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(HttpError::bad_request(format!(
            "since ({s}) must be before until ({u})"
        )));
    }
    let top = parse_count(
        "top",
        params.top.as_deref(),
        DEFAULT_TOP_HOSTS,
        MAX_TOP_HOSTS,
    )
    .map_err(HttpError::bad_request)?;
    let workspaces = match &params.workspace {
        Some(name) => vec![live_workspace(&state, name).await?],
        None => state.store.list_workspaces().await?,
    };
    let mut out = Vec::with_capacity(workspaces.len());
    for w in &workspaces {
        out.push(summarise(&state, w, since, until, top).await?);
    }
    Ok(Json(SummaryList {
        since,
        until,
        workspaces: out,
    }))
}

async fn summarise(
    state: &AppState,
    w: &Workspace,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    top_hosts: u32,
) -> Result<WorkspaceSummary, HttpError> {
    let activity = state
        .store
        .workspace_activity(ActivityQuery {
            workspace_id: w.id,
            since,
            until,
            top_hosts,
        })
        .await?;
    let losses = state.store.workspace_losses(w.id).await?;
    let sessions = state.store.sessions(w.id).await?;
    Ok(WorkspaceSummary {
        workspace_id: w.id,
        workspace_name: w.name.clone(),
        owner: w.owner.clone(),
        agent_name: w.agent.name.clone(),
        allowed: activity.allowed,
        denied: activity.denied,
        conflicts: activity.conflicts,
        first_record_at: activity.first_time,
        last_record_at: activity.last_time,
        top_denied_hosts: activity
            .top_denied_hosts
            .into_iter()
            .map(|h| HostInfo {
                host: h.host,
                records: h.records,
            })
            .collect(),
        losses: loss_infos(&losses),
        sessions: sessions.len() as u64,
        missing: saturating_total(sessions.iter().map(|s| s.summary.missing())),
        reported_lost: saturating_total(sessions.iter().map(|s| s.summary.reported_losses())),
        unexplained_loss: saturating_total(sessions.iter().map(|s| s.summary.unexplained())),
        last_contact_at: w.agent.last_contact_at,
        last_batch_at: w.agent.last_batch_at,
    })
}
