//! The HTTP side of the one port: operational endpoints, the workspace and
//! token admin API, the admin event log, the record query API (its stream
//! included), and the OpenAPI document that describes them. One module per
//! area; each contributes a router that [`router`] merges. Every route is
//! checked against its rule in [`crate::access`].

mod admin_events;
mod agent_firewall;
pub(crate) mod bodies;
mod chain;
mod checkpoints;
pub mod cursor;
mod error;
mod fallback;
mod ops;
pub(crate) mod records;
mod stream;
mod tokens;
mod workspaces;

use std::sync::Arc;

use axum::Router;
use tokio_util::sync::CancellationToken;
use warden_evidence::key::SigningKey;
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
    /// The bootstrap admin token's hash, settled at start.
    pub admin_token: TokenHash,
    /// Signs admin events (the checkpoint key).
    pub signing_key: Arc<SigningKey>,
    /// When named tokens' use was last noted.
    pub token_use: crate::access::UseNotes,
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

/// `/healthz`, `/metrics` and `/api/v1/...`, each route behind its access
/// rule.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(ops::router())
        .merge(crate::openapi::router())
        .nest("/api/v1/workspaces", workspaces::router())
        .merge(tokens::router())
        .merge(admin_events::router())
        .merge(records::router())
        .merge(agent_firewall::router())
        .merge(checkpoints::router())
        .merge(chain::router())
        .merge(stream::router())
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            crate::access::authorize,
        ))
        .with_state(state)
}
