//! What every page shares: the security headers, the page chrome (header,
//! navigation, sign-out form), error pages, and the two asset files built
//! into the binary.

use std::sync::LazyLock;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use sha2::{Digest, Sha256};

/// The page's script and style sheet.
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");

/// Scripts and styles from this server's files only, nothing inline, no
/// `eval`; no plugins, frames or foreign connections; forms post here only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every response of the web page.
pub(super) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Which navigation entry is the current page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    Feed,
    Overview,
    Other,
}

/// The signed-in chrome: the CSRF token of the sign-out form.
pub(super) struct Chrome {
    pub csrf: String,
    pub role: &'static str,
}

/// A whole page.
pub(super) fn page(title: &str, nav: Nav, chrome: &Chrome, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Warden" }
                link rel="stylesheet" href=(asset_url("app.css", &CSS_TAG));
                script src=(asset_url("app.js", &JS_TAG)) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Warden" }
                    nav aria-label="Main" {
                        a href="/" aria-current=[(nav == Nav::Feed).then_some("page")] { "Live feed" }
                        a href="/overview" aria-current=[(nav == Nav::Overview).then_some("page")] { "Overview" }
                    }
                    form.signout method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(chrome.csrf);
                        span.role { "signed in as " (chrome.role) }
                        button type="submit" { "Sign out" }
                    }
                }
                main #main tabindex="-1" { (main) }
            }
        }
    }
}

/// A page without the signed-in chrome (sign-in).
pub(super) fn bare_page(title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Warden" }
                link rel="stylesheet" href=(asset_url("app.css", &CSS_TAG));
            }
            body.bare {
                main #main { (main) }
            }
        }
    }
}

/// An HTML response.
pub(super) fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A page that says what went wrong.
pub(super) fn error_page(status: StatusCode, chrome: Option<&Chrome>, message: &str) -> Response {
    let main = html! {
        h1 { (status.canonical_reason().unwrap_or("Error")) }
        p.error role="alert" { (message) }
        p { a href="/" { "Back to the live feed" } }
    };
    let markup = match chrome {
        Some(chrome) => page("Error", Nav::Other, chrome, main),
        None => bare_page("Error", main),
    };
    html_response(status, markup)
}

/// A store failure as a page: logged once here, without details for the
/// browser.
pub(super) fn store_failure(chrome: &Chrome, e: &warden_store::StoreError) -> Response {
    if matches!(e, warden_store::StoreError::Closed) {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(chrome),
            "the control plane is shutting down",
        );
    }
    tracing::error!(error = %e, "a web page failed in the store");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some(chrome),
        "storage failure; see the control plane's log",
    )
}

static JS_TAG: LazyLock<String> = LazyLock::new(|| tag(APP_JS));
static CSS_TAG: LazyLock<String> = LazyLock::new(|| tag(APP_CSS));

fn tag(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// The asset's URL with its content hash, so a new build's files are
/// fetched anew while unchanged ones come from the cache.
fn asset_url(name: &str, tag: &str) -> String {
    format!("/assets/{name}?v={tag}")
}

/// `GET /assets/app.js`.
pub(super) async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /assets/app.css`.
pub(super) async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The URL carries the content hash: a changed file has a new URL.
            (header::CACHE_CONTROL, "public, max-age=86400, immutable"),
        ],
        body,
    )
        .into_response()
}
