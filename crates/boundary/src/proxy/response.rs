//! Responses the proxy makes itself (403 for a denial, 502 when an allowed
//! origin cannot be reached, 400 for what is not a proxy request), and the
//! hop-by-hop headers that never cross the proxy.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::policy::Denial;
use crate::rules::Rule;
use crate::target::Host;

use super::Body;

/// The header every denial carries.
pub const DECISION_HEADER: &str = "x-warden-decision";

/// A body of the proxy's own.
pub(crate) fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}

fn text_response(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// 403: what was denied, why, and the rule that would admit it.
pub(crate) fn denied(
    method: &str,
    url: &str,
    host: Option<&Host>,
    denial: &Denial,
) -> Response<Body> {
    let mut text = format!("warden boundary denied {method} {url}\nreason: {denial}\n");
    if let Some(advice) = advice(method, url, host, denial) {
        text.push_str(&advice);
    }
    let mut response = text_response(StatusCode::FORBIDDEN, text);
    response
        .headers_mut()
        .insert(DECISION_HEADER, HeaderValue::from_static("deny"));
    response
}

/// What to change to allow the request, when a rule change can.
fn advice(method: &str, url: &str, host: Option<&Host>, denial: &Denial) -> Option<String> {
    let host = host?;
    let domain = format!("domain={host}");
    match denial {
        Denial::NoRule | Denial::Address(_) => {
            let mut text = format!("to allow it: --allow '{domain}'");
            // A narrower rule when the path can be written as a pattern.
            let path = crate::target::Target::parse(url)
                .ok()
                .map(|t| t.path().to_owned())
                .filter(|p| !p.contains(',') && p != "/");
            if let Some(path) = path {
                let narrow = format!("{domain} method={method} path={path}");
                if Rule::parse(&narrow).is_ok() {
                    text.push_str(&format!(" (or only this request: --allow '{narrow}')"));
                }
            }
            text.push('\n');
            Some(text)
        }
        Denial::Rule(rule) => Some(format!(
            "deny rules win over allow rules: remove --deny '{}' to allow it\n",
            rule.text()
        )),
        Denial::Spoofed(_) | Denial::BadUrl(_) => None,
    }
}

/// 502: the request was allowed but the origin cannot be reached.
pub(crate) fn bad_gateway(url: &str, error: &(dyn std::error::Error + 'static)) -> Response<Body> {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        chain.push_str(": ");
        chain.push_str(&e.to_string());
        source = e.source();
    }
    text_response(
        StatusCode::BAD_GATEWAY,
        format!("warden boundary allowed {url} but cannot reach it: {chain}\n"),
    )
}

/// 400: not something a proxy serves.
pub(crate) fn bad_request(text: &str) -> Response<Body> {
    text_response(
        StatusCode::BAD_REQUEST,
        format!("warden boundary: {text}\n"),
    )
}

/// Removes hop-by-hop headers (RFC 9110 7.6.1): the fixed list and those
/// the `Connection` header names. `te: trailers` stays (gRPC needs it), and
/// with `keep_upgrade` the `Connection: upgrade` and `Upgrade` of a
/// protocol switch stay too.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in [
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
    ] {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    headers.remove(header::CONNECTION);
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Whether an HTTP/1.1 request asks to switch protocols (WebSocket).
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_the_rest_stays() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic abc"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        let mut plain = headers.clone();
        strip_hop_by_hop(&mut plain, false);
        let mut names: Vec<_> = plain.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["accept", "te"]);
        let mut upgrade = headers;
        strip_hop_by_hop(&mut upgrade, true);
        assert_eq!(upgrade["connection"], "upgrade");
        assert_eq!(upgrade["upgrade"], "websocket");
        assert!(!upgrade.contains_key("x-secret"));
    }

    #[tokio::test]
    async fn a_denial_names_the_request_and_the_rule_that_would_admit_it() {
        let host = Host::Name("example.com".into());
        let response = denied(
            "POST",
            "https://example.com/upload",
            Some(&host),
            &Denial::NoRule,
        );
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[DECISION_HEADER], "deny");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            body.contains("denied POST https://example.com/upload"),
            "{body}"
        );
        assert!(body.contains("--allow 'domain=example.com'"), "{body}");
        assert!(
            body.contains("--allow 'domain=example.com method=POST path=/upload'"),
            "{body}"
        );
    }
}
