//! Deciding and forwarding one HTTP request: an absolute-form request to
//! the proxy, or a request inside an intercepted TLS tunnel.
//!
//! The decision is made on the canonical URL ([`Target`]), and that URL is
//! what is forwarded. The record is written once the connection to the
//! origin is known: when the client checks a connection out of its pool or
//! dials a new one. A new connection checks the addresses it connects to
//! (link-local and metadata addresses need a rule naming the host), so a
//! request that only resolves to such addresses is recorded as denied,
//! answered 403, and never sent.

use std::sync::Arc;

use ::http::header::{self, HeaderValue};
use ::http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::capture_connection;
use tokio::io::copy_bidirectional;

use crate::policy::{Denial, Verdict};
use crate::target::{Host, Target};
use crate::upstream::DialError;

use super::response::{self, strip_hop_by_hop, wants_upgrade};
use super::{Body, Shared};

/// Where a request came from.
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    /// An absolute-form request to the proxy.
    Proxied,
    /// A request inside an intercepted tunnel to `host:port`.
    Tunnel {
        /// The CONNECT target's host.
        host: Host,
        /// The CONNECT target's port.
        port: u16,
    },
}

/// Decides `request` and forwards it if allowed.
pub(crate) async fn forward(
    shared: Arc<Shared>,
    mut request: Request<Incoming>,
    origin: Origin,
) -> Response<Body> {
    let method = request.method().as_str().to_owned();
    let target = match &origin {
        Origin::Proxied => Target::parse(&request.uri().to_string()),
        Origin::Tunnel { host, port } => {
            let authority = if *port == 443 {
                host.to_string()
            } else {
                format!("{host}:{port}")
            };
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            Target::https(&authority, &path)
        }
    };
    let target = match target {
        Ok(target) => target,
        Err(error) => {
            let url = request.uri().to_string();
            let denial = Denial::from(error);
            let host = request.uri().host().unwrap_or_default().to_owned();
            shared
                .audit
                .decision(&method, &url, &host, &Verdict::Deny(denial.clone()));
            return response::denied(&method, &url, None, &denial);
        }
    };
    let host_text = target.host().to_string();
    let url = target.as_str().to_owned();
    let deny = |denial: Denial| {
        shared
            .audit
            .decision(&method, &url, &host_text, &Verdict::Deny(denial.clone()));
        response::denied(&method, &url, Some(target.host()), &denial)
    };
    if let Some(why) = host_mismatch(&request, &target, &origin) {
        return deny(Denial::Spoofed(why));
    }
    let rule = match shared.policy.decide(&method, &target) {
        Verdict::Allow(rule) => rule,
        Verdict::Deny(denial) => return deny(denial),
    };

    let upgrade = request.version() == Version::HTTP_11 && wants_upgrade(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let inbound_version = request.version();
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let authority = authority_header(&target);
    parts.headers.insert(header::HOST, authority);
    parts.version = Version::HTTP_11;
    parts.uri = match format!(
        "{}://{}{}",
        target.scheme(),
        target.authority(),
        target.path_and_query()
    )
    .parse::<Uri>()
    {
        Ok(uri) => uri,
        Err(error) => return deny(Denial::BadUrl(error.to_string())),
    };
    let mut outbound = Request::from_parts(parts, body);
    let mut capture = capture_connection(&mut outbound);
    let sending = async {
        if target.scheme() == "http" {
            shared.http.request(outbound).await
        } else if inbound_version == Version::HTTP_2 && !upgrade {
            shared.https2.request(outbound).await
        } else {
            shared.https1.request(outbound).await
        }
    };
    tokio::pin!(sending);
    let allowed = Verdict::Allow(rule);
    // Record as soon as a connection is in hand (the request body may take
    // long to stream); or when the request fails first.
    let result = tokio::select! {
        biased;
        result = &mut sending => result,
        _ = async { capture.wait_for_connection_metadata().await.is_some() } => {
            shared.audit.decision(&method, &url, &host_text, &allowed);
            let result = sending.await;
            return respond(result, &url, client_upgrade);
        }
    };
    if let Err(error) = &result
        && let Some(DialError::Forbidden { address }) = DialError::find(error)
    {
        return deny(Denial::Address(*address));
    }
    shared.audit.decision(&method, &url, &host_text, &allowed);
    respond(result, &url, client_upgrade)
}

/// Turns the origin's answer into the client's response.
fn respond(
    result: Result<Response<Incoming>, hyper_util::client::legacy::Error>,
    url: &str,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<Body> {
    let mut upstream = match result {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(url, error = %error, "origin unreachable");
            return response::bad_gateway(url, &error);
        }
    };
    let switching = upstream.status() == ::http::StatusCode::SWITCHING_PROTOCOLS;
    if switching && let Some(client_upgrade) = client_upgrade {
        let origin_upgrade = hyper::upgrade::on(&mut upstream);
        let url = url.to_owned();
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, origin_upgrade) {
                Ok((client, origin)) => {
                    let mut client = hyper_util::rt::TokioIo::new(client);
                    let mut origin = hyper_util::rt::TokioIo::new(origin);
                    if let Err(error) = copy_bidirectional(&mut client, &mut origin).await {
                        tracing::debug!(url, %error, "upgraded connection ended");
                    }
                }
                Err(error) => tracing::debug!(url, %error, "protocol switch failed"),
            }
        });
    }
    let (mut parts, body) = upstream.into_parts();
    strip_hop_by_hop(&mut parts.headers, switching);
    Response::from_parts(parts, body.map_err(Into::into).boxed())
}

/// The Host header to send: the host, and the port when not the scheme's
/// default.
fn authority_header(target: &Target) -> HeaderValue {
    let default = if target.scheme() == "https" { 443 } else { 80 };
    let text = if target.port() == default {
        target.host().to_string()
    } else {
        target.authority()
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// A Host header (or HTTP/2 authority) that names another host or port
/// than the one decided on: a request that would be routed by the origin
/// to somewhere else than what was allowed.
fn host_mismatch<B>(request: &Request<B>, target: &Target, origin: &Origin) -> Option<String> {
    let mut claims: Vec<String> = Vec::new();
    if let Some(host) = request.headers().get(header::HOST) {
        match host.to_str() {
            Ok(host) => claims.push(host.to_owned()),
            Err(_) => return Some("the Host header is not text".into()),
        }
    }
    // In a tunnel, an HTTP/2 request's authority is what the origin routes by.
    if let Origin::Tunnel { .. } = origin
        && let Some(authority) = request.uri().authority()
    {
        claims.push(authority.as_str().to_owned());
    }
    let (expected_host, expected_port, what) = match origin {
        Origin::Proxied => (target.host().clone(), target.port(), "the request URL"),
        Origin::Tunnel { host, port } => (host.clone(), *port, "the CONNECT target"),
    };
    let default_port = if target.scheme() == "https" { 443 } else { 80 };
    for claim in claims {
        let (host, port) = split_host_port(&claim);
        let same_host = Host::parse(host).is_ok_and(|h| h == expected_host);
        let same_port = match port {
            Some(port) => port.parse::<u16>().ok() == Some(expected_port),
            None => expected_port == default_port,
        };
        if !(same_host && same_port) {
            return Some(format!(
                "Host {claim:?} does not match {what} {:?}",
                if expected_port == default_port {
                    expected_host.to_string()
                } else {
                    format!("{expected_host}:{expected_port}")
                }
            ));
        }
    }
    None
}

/// `host[:port]`, with brackets around IPv6 kept on the host.
pub(crate) fn split_host_port(text: &str) -> (&str, Option<&str>) {
    if text.starts_with('[') {
        return match text.find(']') {
            Some(end) => {
                let port = text[end + 1..].strip_prefix(':');
                (&text[..=end], port)
            }
            None => (text, None),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    }
}
