//! `GET /login` (the form), `POST /login` (field `token`) and
//! `POST /logout`. Both forms carry a CSRF token: the sign-in form's is
//! double-submitted (a cookie of its own and a hidden field), the sign-out
//! form's derives from the session. The token travels in the POST body
//! only and is never logged.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::html;
use serde::Deserialize;

use super::layout::{bare_page, error_page, html_response};
use super::session;
use super::{binding_for_token, see_other, signed_in};
use crate::grpc::PeerAddr;
use crate::http::AppState;

/// `?next=` of the sign-in form: where to go once signed in.
#[derive(Deserialize)]
pub(super) struct Next {
    next: Option<String>,
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

#[derive(Deserialize)]
struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// A path of this server to go back to; anything else (another site,
/// `//host`, a scheme) becomes `/`.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => "/",
    }
}

pub(super) async fn form(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(next): Query<Next>,
) -> Response {
    let next = safe_next(next.next.as_deref());
    if signed_in(&state, &headers).await.is_some() {
        return see_other(next);
    }
    login_page(&state, StatusCode::OK, next, None)
}

fn login_page(state: &AppState, status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let (csrf, cookie) = state.sessions.login_csrf();
    let markup = bare_page(
        "Sign in",
        html! {
            h1 { "Warden" }
            form.login method="post" action="/login" {
                h2 { "Sign in" }
                @if let Some(error) = error {
                    p.error role="alert" { (error) }
                }
                label for="token" { "Admin or auditor token" }
                input #token type="password" name="token" required autocomplete="current-password" autofocus;
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                button type="submit" { "Sign in" }
                p.hint { "The token is the one `warden server` printed or wrote to its data dir's admin-token file; `warden dev` prints it." }
            }
        },
    );
    let mut response = html_response(status, markup);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

pub(super) async fn sign_in(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Option<axum::Extension<PeerAddr>>,
    body: Bytes,
) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<SignIn>(&body) else {
        return login_page(
            &state,
            StatusCode::BAD_REQUEST,
            "/",
            Some("the form was malformed"),
        );
    };
    let next = safe_next(form.next.as_deref());
    if !session::login_csrf_matches(&headers, &form.csrf) {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            next,
            Some("the sign-in form expired or came from another page; try again"),
        );
    }
    let peer = peer.map(|p| p.0.0);
    let binding = match binding_for_token(&state, form.token.trim()).await {
        Ok(binding) => binding,
        Err(e) => {
            tracing::error!(error = %e.chain(), "checking a web sign-in failed");
            return login_page(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                next,
                Some("the control plane could not check the token; try again"),
            );
        }
    };
    let Some(binding) = binding else {
        tracing::warn!(peer = ?peer, "refused a web sign-in without a valid token");
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            next,
            Some("that token is not valid here"),
        );
    };
    match state.sessions.issue(&binding, Timestamp::now()) {
        Some((value, session)) => {
            tracing::info!(peer = ?peer, role = ?session.role, token = %binding.principal.name, "signed in to the web page");
            let mut response = see_other(next);
            let headers = response.headers_mut();
            headers.append(header::SET_COOKIE, state.sessions.session_cookie(&value));
            headers.append(header::SET_COOKIE, clear_login_csrf());
            response
        }
        None => {
            tracing::warn!(peer = ?peer, role = binding.principal.role.as_str(), "refused a web sign-in with a token whose role may not use the page");
            login_page(
                &state,
                StatusCode::FORBIDDEN,
                next,
                Some(
                    "an agent token cannot sign in to the web page; use an admin or auditor token",
                ),
            )
        }
    }
}

pub(super) async fn sign_out(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = serde_urlencoded::from_bytes::<SignOut>(&body).ok();
    if let Some(session) = signed_in(&state, &headers).await {
        let csrf = form.as_ref().map_or("", |f| f.csrf.as_str());
        if !state.sessions.csrf_matches(&session, csrf) {
            return error_page(
                StatusCode::FORBIDDEN,
                None,
                "the sign-out form came from another page; sign out from the page itself",
            );
        }
    }
    let mut response = see_other("/login");
    response
        .headers_mut()
        .append(header::SET_COOKIE, state.sessions.clear_session_cookie());
    response.into_response()
}

fn clear_login_csrf() -> HeaderValue {
    HeaderValue::from_static(
        "warden_login_csrf=; Path=/login; Max-Age=0; HttpOnly; SameSite=Strict",
    )
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/?decision=deny")), "/?decision=deny");
        assert_eq!(safe_next(Some("/workspaces/dev")), "/workspaces/dev");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "/\nx",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
