//! The HTTP side of the one port: operational endpoints and the admin API.
//! One module per area; each contributes a router that [`router`] merges
//! (the record query API will join as `/api/v1/records`).

mod admin_auth;
mod error;
mod ops;
mod workspaces;

use std::sync::Arc;

use axum::Router;
use warden_store::{Store, TokenHash};

use crate::metrics::Metrics;

pub use error::HttpError;

/// What the HTTP handlers share.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// The admin token's hash, settled at start.
    pub admin_token: TokenHash,
}

/// `/healthz`, `/metrics` and `/api/v1/...`.
pub fn router(state: Arc<AppState>) -> Router {
    let admin = Router::new()
        .nest("/api/v1/workspaces", workspaces::router())
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            admin_auth::require_admin,
        ));
    Router::new()
        .merge(ops::router())
        .merge(admin)
        .with_state(state)
}
