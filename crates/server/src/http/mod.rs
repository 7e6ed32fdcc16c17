//! The HTTP side of the one port: operational endpoints, the workspace
//! admin API and the record query API (its stream included), and the
//! OpenAPI document that describes them. One module per area; each
//! contributes a router that [`router`] merges.

mod admin_auth;
mod agent_firewall;
pub(crate) mod bodies;
mod checkpoints;
pub mod cursor;
mod error;
mod fallback;
mod ops;
pub(crate) mod records;
mod stream;
mod workspaces;

use std::sync::Arc;

use axum::Router;
use tokio_util::sync::CancellationToken;
use warden_store::{Store, TokenHash};

use crate::metrics::Metrics;

pub use error::HttpError;
pub use fallback::{method_not_allowed, not_found};

/// What the HTTP handlers share.
pub struct AppState {
    /// Where records and the registry live.
    pub store: Arc<dyn Store>,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// The admin token's hash, settled at start.
    pub admin_token: TokenHash,
    /// Signs and checks the web page's session cookies (which the read
    /// routes accept too).
    pub sessions: crate::web::session::Sessions,
    /// Cancelled when the server starts shutting down: responses that never
    /// finish on their own (record streams) end then.
    pub shutdown: CancellationToken,
    /// The most bytes a page of records holds (see
    /// [`Config::max_response_bytes`](crate::Config::max_response_bytes)).
    pub max_response_bytes: usize,
}

/// `/healthz`, `/metrics` and `/api/v1/...`.
pub fn router(state: Arc<AppState>) -> Router {
    let admin = Router::new()
        .nest("/api/v1/workspaces", workspaces::router())
        .merge(records::router())
        .merge(agent_firewall::router())
        .merge(checkpoints::router())
        .merge(stream::router())
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            admin_auth::require_admin,
        ));
    Router::new()
        .merge(ops::router())
        .merge(crate::openapi::router())
        .merge(admin)
        .with_state(state)
}
