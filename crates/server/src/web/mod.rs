//! The operator's web page, served by the control plane on its own port:
//! sign-in, the live feed of records, an overview of the last hour and of
//! loss, and workspace and session pages.
//!
//! **How it is built: server-rendered HTML with a little JavaScript.** Every
//! page is HTML rendered here with [maud] (compile-time templates that
//! escape every value), so a page shows its data on first paint without a
//! second round trip, works without a build step or Node anywhere, and the
//! only script (`web/app.js`, about 200 lines, no dependencies) does what
//! HTML cannot: follow the record stream with `EventSource`, pause and
//! resume it, and keep the feed's window bounded. A TypeScript app would
//! need a toolchain to change one line and would render the same rows;
//! the stream's record objects are already the JSON the API serves. The
//! script and style sheet are built into the binary (`include_str!`) and
//! served from `/assets/`, which the Content-Security-Policy allows as the
//! only source of scripts and styles: nothing inline, no `eval`.
//!
//! Attacker-controlled text (URLs, rules, process and workspace names) is
//! only ever text: maud escapes it, [`text::shown`] marks the characters
//! that would hide or disguise it, and the script builds live rows with
//! `textContent`, never `innerHTML`.
//!
//! Signing in: [`session`] (signed cookies, roles, CSRF). The API's read
//! routes accept the session cookie too (see `http::admin_auth`), which is
//! how the page's stream authenticates.
//!
//! Modules: [`session`] (who is signed in), [`login`] (sign-in and
//! sign-out), `layout` (headers, chrome, assets), [`text`] (showing
//! hostile text), `feed`, `overview`, `workspace` (the pages).

mod feed;
mod layout;
pub mod login;
mod overview;
pub mod session;
pub mod text;
mod workspace;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;

pub use layout::CONTENT_SECURITY_POLICY;
use layout::Chrome;
use session::{Binding, SESSION_COOKIE, Session, Sessions, Who};

use crate::access::{Principal, identify};

use crate::http::AppState;

/// The web page's routes (beside the API's on the same listener).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(feed::feed))
        .route("/overview", get(overview::overview))
        .route("/workspaces/{name}", get(workspace::workspace))
        .route(
            "/workspaces/{name}/sessions/{session}",
            get(workspace::session),
        )
        .route("/login", get(login::form).post(login::sign_in))
        .route("/logout", post(login::sign_out))
        .route("/assets/app.js", get(layout::app_js))
        .route("/assets/app.css", get(layout::app_css))
        .layer(axum::middleware::from_fn(layout::security_headers))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            crate::access::authorize,
        ))
        .with_state(state)
}

/// What a session signed in with `who` is bound to now (`None`: the token
/// was revoked or never existed).
pub(crate) async fn binding_of(state: &AppState, who: Who) -> Option<Binding> {
    match who {
        Who::Bootstrap => Some(Binding {
            who,
            principal: Principal::bootstrap(),
            hash: state.admin_token,
        }),
        Who::Token(id) => match state.store.api_token_credentials(id).await {
            Ok(Some((token, hash))) => Some(Binding {
                who,
                principal: Principal {
                    role: token.role.into(),
                    id: Some(token.id),
                    name: token.name,
                },
                hash,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e.chain(), "looking up a web session's token failed");
                None
            }
        },
    }
}

/// What a session signed in with `token` would be bound to, and who the
/// token is (`None`: not valid here).
pub(crate) async fn binding_for_token(
    state: &AppState,
    token: &str,
) -> Result<Option<Binding>, warden_store::StoreError> {
    let Some(principal) = identify(&*state.store, &state.admin_token, token).await? else {
        return Ok(None);
    };
    // (An agent's binding is never issued a session: see `Sessions::issue`.)
    let who = principal.id.map_or(Who::Bootstrap, Who::Token);
    Ok(Some(Binding {
        who,
        principal,
        hash: crate::auth::hash_token(token),
    }))
}

/// The session a request's cookie proves, if any.
pub(crate) async fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let value = session::cookie(headers, SESSION_COOKIE)?;
    let binding = binding_of(state, Sessions::claimed(value)?).await?;
    state.sessions.verify(value, &binding, Timestamp::now())
}

/// The signed-in person's chrome, or the redirect to the sign-in form
/// (which comes back here afterwards).
async fn require_session(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Chrome, ToSignIn> {
    match signed_in(state, headers).await {
        Some(session) => Ok(Chrome {
            csrf: state.sessions.csrf_token(&session),
            role: match session.role {
                session::Role::Admin => "admin",
                session::Role::Auditor => "auditor",
            },
        }),
        None => {
            let back = uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_owned();
            let location = if back == "/" {
                "/login".to_owned()
            } else {
                format!(
                    "/login?{}",
                    serde_urlencoded::to_string([("next", back.as_str())]).unwrap_or_default()
                )
            };
            Err(ToSignIn(location))
        }
    }
}

/// The redirect to the sign-in form (its `Location`).
struct ToSignIn(String);

impl IntoResponse for ToSignIn {
    fn into_response(self) -> Response {
        see_other(&self.0)
    }
}

/// A `303 See Other` to a path of this server.
fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}
