//! An intercepted tunnel: TLS terminated here with a certificate for the
//! CONNECT target issued by the proxy's CA, then every request inside is
//! decided on its own (method, path) and forwarded over a new TLS
//! connection to the origin (see [`super::http`]).
//!
//! The ClientHello's server name must name the CONNECT target (or be
//! absent, as for IP literals); otherwise the tunnel is refused and
//! recorded as a spoofing attempt. Each request's Host (or HTTP/2
//! authority) must name it too.

use std::sync::Arc;

use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio_rustls::LazyConfigAcceptor;

use crate::policy::{Denial, Verdict};
use crate::target::Host;

use super::Shared;
use super::http::{Origin, forward};

/// Serves the TLS session of an accepted CONNECT.
pub(crate) async fn serve(shared: Arc<Shared>, upgrade: OnUpgrade, host: Host, port: u16) {
    let Some(ca) = shared.ca.clone() else {
        return;
    };
    let url = if port == 443 {
        format!("https://{host}/")
    } else {
        format!("https://{host}:{port}/")
    };
    let client = match upgrade.await {
        Ok(client) => TokioIo::new(client),
        Err(error) => {
            tracing::debug!(%error, url, "CONNECT upgrade failed");
            return;
        }
    };
    let start = match LazyConfigAcceptor::new(rustls::server::Acceptor::default(), client).await {
        Ok(start) => start,
        Err(error) => {
            tracing::debug!(%error, url, "no TLS ClientHello in an intercepted tunnel");
            return;
        }
    };
    let host_text = host.to_string();
    if let Some(name) = start.client_hello().server_name()
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
    let config = match ca.server_config(&host) {
        Ok(config) => config,
        Err(error) => {
            tracing::warn!(%error, url, "issuing a certificate");
            return;
        }
    };
    let tls = match start.into_stream(config).await {
        Ok(tls) => tls,
        Err(error) => {
            // Typically a client that does not trust the CA.
            tracing::info!(%error, url, "TLS handshake with the client failed");
            return;
        }
    };
    let origin = Origin::Tunnel { host, port };
    let service = service_fn(move |request| {
        let shared = shared.clone();
        let origin = origin.clone();
        async move { Ok::<_, std::convert::Infallible>(forward(shared, request, origin).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(error) = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%error, url, "intercepted connection ended");
    }
}
