//! `CONNECT host:port`: decided on host and port.
//!
//! Without interception the origin is dialed first (so that an unreachable
//! or forbidden address is answered before the client is told `200`), then
//! the tunnel carries bytes both ways. The first bytes the client sends
//! (some may have come with the CONNECT request itself) are held back until
//! they show what they are: a TLS ClientHello whose server name differs
//! from the CONNECT target closes the tunnel as a spoofing attempt (the
//! origin would route by that name, not by the target that was allowed).
//! The origin's bytes, and its end of stream, flow at once, so protocols
//! where the server speaks first still work. The record is written when
//! this is settled; then [`super::relay`] carries the rest, on a relay
//! thread when the client's side is the TCP stream itself (HTTP/1.1).
//!
//! With interception the tunnel is handed to [`super::intercept`].

use std::sync::Arc;

use ::http::{Request, Response};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::policy::{Denial, Verdict};
use crate::target::{Host, Target};
use crate::tls::{Hello, HelloReader};
use crate::upstream::DialError;

use super::http::split_host_port;
use super::{Body, Shared, TunnelStats};
use super::{relay, response};

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
    tokio::spawn(relay(
        shared,
        upgrade,
        origin,
        url,
        host,
        Verdict::Allow(rule),
    ));
    Response::new(response::full(""))
}

/// Takes the client's side of the tunnel back from the HTTP server and
/// carries bytes both ways once the client's first bytes are checked.
async fn relay(
    shared: Arc<Shared>,
    upgrade: OnUpgrade,
    mut origin: TcpStream,
    url: String,
    host: Host,
    allowed: Verdict,
) {
    let client = match upgrade.await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(%error, url, "CONNECT upgrade failed");
            return;
        }
    };
    match client.downcast::<TokioIo<TcpStream>>() {
        // An HTTP/1.1 connection: the TCP stream itself, and what the
        // client sent after its request (typically its ClientHello).
        Ok(parts) => {
            let mut client = parts.io.into_inner();
            let first = parts.read_buf;
            let Some(settled) = settle(
                &shared,
                &mut client,
                &mut origin,
                first,
                &url,
                &host,
                allowed,
            )
            .await
            else {
                return;
            };
            let Some(relays) = &shared.relays else {
                let carried = relay::tcp(&client, &origin).await;
                return finished(&shared.stats, &url, settled, carried);
            };
            // Move both sockets to a relay thread's event loop.
            let (client, origin) = match (client.into_std(), origin.into_std()) {
                (Ok(client), Ok(origin)) => (client, origin),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::debug!(url, %error, "handing a tunnel to a relay thread");
                    return;
                }
            };
            let stats = shared.stats.clone();
            relays.spawn(async move {
                let carried = match (TcpStream::from_std(client), TcpStream::from_std(origin)) {
                    (Ok(client), Ok(origin)) => relay::tcp(&client, &origin).await,
                    (Err(error), _) | (_, Err(error)) => Err(error),
                };
                finished(&stats, &url, settled, carried);
            });
        }
        Err(client) => {
            let mut client = TokioIo::new(client);
            let Some(settled) = settle(
                &shared,
                &mut client,
                &mut origin,
                Bytes::new(),
                &url,
                &host,
                allowed,
            )
            .await
            else {
                return;
            };
            let carried = relay::copy(&mut client, &mut origin).await;
            finished(&shared.stats, &url, settled, carried);
        }
    }
}

/// Counts and logs a tunnel's end (`settled`: what crossed while its first
/// bytes were checked).
fn finished(
    stats: &TunnelStats,
    url: &str,
    settled: relay::Carried,
    carried: std::io::Result<relay::Carried>,
) {
    match carried {
        Ok(mut carried) => {
            carried.up += settled.up;
            carried.down += settled.down;
            stats.tunnel_closed(&carried);
            tracing::debug!(
                url,
                up = carried.up,
                down = carried.down,
                spliced = carried.spliced,
                "tunnel closed"
            );
        }
        Err(error) => tracing::debug!(url, %error, "tunnel ended"),
    }
}

/// Holds the client's first bytes back until they show what they are
/// (passing the origin's bytes on meanwhile), decides and records, and
/// sends them on. `first`: bytes the HTTP server read past the CONNECT
/// request. Returns the bytes carried meanwhile when the tunnel goes on.
async fn settle<C>(
    shared: &Shared,
    client: &mut C,
    origin: &mut TcpStream,
    first: Bytes,
    url: &str,
    host: &Host,
    allowed: Verdict,
) -> Option<relay::Carried>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let host_text = host.to_string();
    let mut held = Vec::new();
    let mut reader = HelloReader::default();
    let mut buf = vec![0u8; relay::BUFFER];
    let mut from_origin = vec![0u8; relay::BUFFER];
    let mut settled = None;
    if !first.is_empty() {
        held.extend_from_slice(&first);
        settled = hello(&mut reader, &first, held.len());
    }
    // Until the client's first bytes are settled, the origin's bytes (and
    // its end of stream) are passed on as they come.
    let mut origin_open = true;
    let mut carried = relay::Carried::default();
    let settled = match settled {
        Some(name) => Some(name),
        None => loop {
            tokio::select! {
                read = client.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => {
                        held.extend_from_slice(&buf[..n]);
                        if let Some(name) = hello(&mut reader, &buf[..n], held.len()) {
                            break Some(name);
                        }
                    }
                },
                read = origin.read(&mut from_origin), if origin_open => match read {
                    Err(_) => break None,
                    Ok(0) => {
                        // The origin said all it will; the client may still
                        // speak (half-close).
                        origin_open = false;
                        if client.shutdown().await.is_err() {
                            break None;
                        }
                    }
                    Ok(n) => {
                        if client.write_all(&from_origin[..n]).await.is_err() {
                            break None;
                        }
                        carried.down += n as u64;
                    }
                },
            }
        },
    };
    if let Some(Some(name)) = &settled
        && Host::parse(name).ok().as_ref() != Some(host)
    {
        let denial = Denial::Spoofed(format!(
            "TLS server name {name:?} does not match the CONNECT target {host_text:?}"
        ));
        shared
            .audit
            .decision("CONNECT", url, &host_text, &Verdict::Deny(denial));
        return None;
    }
    shared.audit.decision("CONNECT", url, &host_text, &allowed);
    if settled.is_none() {
        // One side closed before the client said anything.
        let _ = origin.shutdown().await;
        return None;
    }
    origin.write_all(&held).await.ok()?;
    carried.up += held.len() as u64;
    Some(carried)
}

/// Feeds the client's next bytes to the ClientHello reader: `None` while
/// more are needed, then the server name the hello carries (`Some(None)`:
/// none, or not TLS at all).
fn hello(reader: &mut HelloReader, bytes: &[u8], held: usize) -> Option<Option<String>> {
    match reader.feed(bytes) {
        Hello::Incomplete if held < MAX_HELLO => None,
        Hello::Incomplete | Hello::NotTls => Some(None),
        Hello::Tls(name) => Some(name),
    }
}

/// `host:port` of a CONNECT request (the port is required).
fn parse_authority(authority: &str) -> Option<(Host, u16)> {
    let (host, port) = split_host_port(authority);
    let port = port?.parse::<u16>().ok().filter(|p| *p != 0)?;
    let host = Host::parse(host).ok()?;
    Some((host, port))
}
