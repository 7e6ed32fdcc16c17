//! The admin token check in front of `/api/v1`. The read routes (`GET`)
//! also take the web page's session cookie, which is how the page's live
//! feed authenticates its `EventSource`; a route that changes something
//! takes the bearer token only, so a cookie (which a browser attaches on
//! its own) can never make a change: no CSRF surface on the API.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use warden_proto::api::bearer_token;

use super::{AppState, HttpError};
use crate::auth::token_matches;
use crate::grpc::PeerAddr;

/// Lets a request through only with `Authorization: Bearer <admin token>`,
/// or a read with a web session cookie; a refusal is logged once, without
/// the token or the cookie.
pub(super) async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    match token {
        Some(token) if token_matches(token, &state.admin_token) => next.run(request).await,
        None if reads && crate::web::signed_in(&state, request.headers()).is_some() => {
            next.run(request).await
        }
        _ => {
            let peer = request.extensions().get::<PeerAddr>().map(|p| p.0);
            tracing::warn!(
                method = %request.method(),
                path = request.uri().path(),
                peer = ?peer,
                presented = token.is_some(),
                "refused an admin api call without a valid admin token"
            );
            HttpError::unauthorized().into_response()
        }
    }
}
