//! `CONNECT host:port`: decided on host and port.
//!
//! Without interception the origin is dialed first (so that an unreachable
//! or forbidden address is answered before the client is told `200`), then
//! the tunnel carries bytes both ways. The first bytes the client sends are
//! held back until they show what they are: a TLS ClientHello whose server
//! name differs from the CONNECT target closes the tunnel as a spoofing
//! attempt (the origin would route by that name, not by the target that was
//! allowed). The origin's bytes flow at once, so protocols where the server
//! speaks first still work. The record is written when this is settled.
//!
//! With interception the tunnel is handed to [`super::intercept`].

use std::sync::Arc;

use ::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::policy::{Denial, Verdict};
use crate::target::{Host, Target};
use crate::tls::{Hello, HelloReader};
use crate::upstream::DialError;

use super::http::split_host_port;
use super::response;
use super::{Body, Shared};

/// Most bytes held back while waiting for a whole ClientHello.
const MAX_HELLO: usize = 64 * 1024;

/// Handles a CONNECT request.
pub(crate) async fn connect(shared: Arc<Shared>, mut request: Request<Incoming>) -> Response<Body> {
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let Some((host, port)) = parse_authority(&authority) else {
        let denial = Denial::BadUrl(format!("CONNECT target {authority:?} is not host:port"));
        let verdict = Verdict::Deny(denial.clone());
        shared.audit.decision("CONNECT", &authority, "", &verdict);
        return response::denied("CONNECT", &authority, None, &denial);
    };
    let target = match Target::parse(&format!("https://{}:{port}", host)) {
        Ok(target) => target,
        Err(error) => {
            let denial = Denial::from(error);
            shared
                .audit
                .decision("CONNECT", &authority, "", &Verdict::Deny(denial.clone()));
            return response::denied("CONNECT", &authority, None, &denial);
        }
    };
    let url = target.as_str().to_owned();
    let host_text = host.to_string();
    let deny = |denial: Denial| {
        shared
            .audit
            .decision("CONNECT", &url, &host_text, &Verdict::Deny(denial.clone()));
        response::denied("CONNECT", &url, Some(&host), &denial)
    };
    let intercepting = shared.ca.is_some();
    let rule = match shared.policy.decide_tunnel(&target, intercepting) {
        Verdict::Allow(rule) => rule,
        Verdict::Deny(denial) => return deny(denial),
    };
    let upgrade = hyper::upgrade::on(&mut request);
    if intercepting {
        tokio::spawn(super::intercept::serve(shared.clone(), upgrade, host, port));
        return Response::new(response::full(""));
    }
    let origin = match shared.dialer.dial(&host, port).await {
        Ok(origin) => origin,
        Err(DialError::Forbidden { address }) => return deny(Denial::Address(address)),
        Err(error) => {
            shared
                .audit
                .decision("CONNECT", &url, &host_text, &Verdict::Allow(rule));
            return response::bad_gateway(&url, &error);
        }
    };
    tokio::spawn(async move {
        let client = match upgrade.await {
            Ok(client) => client,
            Err(error) => {
                tracing::debug!(%error, url, "CONNECT upgrade failed");
                return;
            }
        };
        let verdict = Verdict::Allow(rule);
        relay(shared, TokioIo::new(client), origin, url, host, verdict).await;
    });
    Response::new(response::full(""))
}

/// Carries bytes both ways once the client's first bytes are checked.
async fn relay(
    shared: Arc<Shared>,
    mut client: TokioIo<hyper::upgrade::Upgraded>,
    origin: TcpStream,
    url: String,
    host: Host,
    allowed: Verdict,
) {
    let host_text = host.to_string();
    let (mut origin_read, mut origin_write) = origin.into_split();
    let mut held = Vec::new();
    let mut reader = HelloReader::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut from_origin = vec![0u8; 16 * 1024];
    // Until the client's first bytes are settled, the origin's bytes are
    // passed on as they come.
    let settled = loop {
        tokio::select! {
            read = client.read(&mut buf) => match read {
                Ok(0) | Err(_) => break None,
                Ok(n) => {
                    held.extend_from_slice(&buf[..n]);
                    match reader.feed(&buf[..n]) {
                        Hello::Incomplete if held.len() < MAX_HELLO => continue,
                        Hello::Incomplete | Hello::NotTls => break Some(None),
                        Hello::Tls(name) => break Some(name),
                    }
                }
            },
            read = origin_read.read(&mut from_origin) => match read {
                Ok(0) | Err(_) => break None,
                Ok(n) => {
                    if client.write_all(&from_origin[..n]).await.is_err() {
                        break None;
                    }
                }
            },
        }
    };
    if let Some(Some(name)) = &settled
        && Host::parse(name).ok().as_ref() != Some(&host)
    {
        let denial = Denial::Spoofed(format!(
            "TLS server name {name:?} does not match the CONNECT target {host_text:?}"
        ));
        shared
            .audit
            .decision("CONNECT", &url, &host_text, &Verdict::Deny(denial));
        return;
    }
    shared.audit.decision("CONNECT", &url, &host_text, &allowed);
    if settled.is_none() {
        // One side closed before the client said anything.
        let _ = origin_write.shutdown().await;
        return;
    }
    if origin_write.write_all(&held).await.is_err() {
        return;
    }
    drop(held);
    let mut origin = match origin_read.reunite(origin_write) {
        Ok(origin) => origin,
        Err(_) => return,
    };
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut origin).await {
        tracing::debug!(url, %error, "tunnel ended");
    }
}

/// `host:port` of a CONNECT request (the port is required).
fn parse_authority(authority: &str) -> Option<(Host, u16)> {
    let (host, port) = split_host_port(authority);
    let port = port?.parse::<u16>().ok().filter(|p| *p != 0)?;
    let host = Host::parse(host).ok()?;
    Some((host, port))
}
