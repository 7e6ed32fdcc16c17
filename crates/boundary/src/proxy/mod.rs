//! The explicit HTTP proxy: accepts client connections (HTTP/1.1, or
//! HTTP/2 with prior knowledge), and routes each request:
//!
//! - an absolute-form request (`GET http://host/path`) is decided on its
//!   method, host and path and forwarded ([`http`]);
//! - `CONNECT host:port` is decided on host and port and becomes a tunnel
//!   ([`tunnel`]), or with interception a TLS session terminated here whose
//!   requests are decided one by one and forwarded over a new TLS
//!   connection verified against the system roots ([`intercept`]);
//! - anything else is answered 400.
//!
//! Bodies stream both ways: the client's body is handed to the origin as it
//! arrives and the origin's response body to the client, never collected.

mod connection;
mod http;
mod intercept;
mod relay;
mod response;
mod stats;
mod tunnel;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ::http::{Method, Request, Response};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::Audit;
use crate::policy::Policy;
use crate::tls::{self, CertificateAuthority, TlsError};
use crate::upstream::{Connect, Dialer, PlainConnector, Resolve, TlsConnectorService};

pub use response::DECISION_HEADER;
pub use stats::{TunnelCounts, TunnelStats};

/// Errors a response body can carry.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the proxy sends.
pub(crate) type Body = BoxBody<Bytes, BoxError>;

/// How long idle pooled connections to origins are kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// How long in-flight requests may take to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the proxy needs.
pub struct ProxyConfig {
    /// The rules.
    pub policy: Arc<Policy>,
    /// Where decisions go.
    pub audit: Arc<Audit>,
    /// The interception CA; `None`: CONNECT tunnels are not intercepted.
    pub ca: Option<Arc<CertificateAuthority>>,
    /// The roots origins are verified against.
    pub upstream_roots: Arc<RootCertStore>,
    /// Name resolution for origins.
    pub resolver: Arc<dyn Resolve>,
    /// TCP connections to origins.
    pub connector: Arc<dyn Connect>,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("intercept", &self.ca.is_some())
            .finish_non_exhaustive()
    }
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub(crate) policy: Arc<Policy>,
    pub(crate) audit: Arc<Audit>,
    pub(crate) ca: Option<Arc<CertificateAuthority>>,
    pub(crate) dialer: Dialer,
    pub(crate) stats: Arc<TunnelStats>,
    /// The threads tunnels run on (`None` when intercepting: no tunnel is
    /// relayed as bytes, or when none could be started).
    pub(crate) relays: Option<relay::Relays>,
    /// `http://` origins.
    pub(crate) http: Client<PlainConnector, Incoming>,
    /// `https://` origins for HTTP/1.1 clients (ALPN http/1.1 only, so that
    /// upgrades work).
    pub(crate) https1: Client<TlsConnectorService, Incoming>,
    /// `https://` origins for HTTP/2 clients (ALPN h2, then http/1.1).
    pub(crate) https2: Client<TlsConnectorService, Incoming>,
}

/// A proxy ready to serve a listener.
pub struct Proxy {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    /// Builds the proxy. `own_address` (the listening address) is never
    /// dialed as an origin.
    pub fn new(config: ProxyConfig, own_address: Option<SocketAddr>) -> Result<Proxy, TlsError> {
        let dialer = Dialer::new(
            config.policy.clone(),
            config.resolver,
            config.connector,
            own_address,
        );
        let builder = || {
            let mut builder = Client::builder(TokioExecutor::new());
            builder
                .pool_idle_timeout(POOL_IDLE)
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .timer(hyper_util::rt::TokioTimer::new());
            builder
        };
        let h1 = tls::client_config(config.upstream_roots.clone(), &[b"http/1.1"])?;
        let h2 = tls::client_config(config.upstream_roots, &[b"h2", b"http/1.1"])?;
        let shared = Shared {
            http: builder().build(PlainConnector(dialer.clone())),
            https1: builder().build(TlsConnectorService::new(dialer.clone(), h1)),
            https2: builder().build(TlsConnectorService::new(dialer.clone(), h2)),
            policy: config.policy,
            audit: config.audit,
            dialer,
            stats: Arc::default(),
            relays: if config.ca.is_none() {
                relay::Relays::start(relay::Relays::default_count())
            } else {
                None
            },
            ca: config.ca,
        };
        Ok(Proxy {
            shared: Arc::new(shared),
        })
    }

    /// What the tunnels carried (live counters).
    pub fn tunnel_stats(&self) -> Arc<TunnelStats> {
        self.shared.stats.clone()
    }

    /// Serves `listener` until `shutdown`, then lets in-flight requests
    /// finish for a few seconds.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let connections = TaskTracker::new();
        // Cancelled at shutdown: every connection then finishes its
        // in-flight requests and closes.
        let closing = CancellationToken::new();
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // EMFILE and the like: say so, breathe, go on.
                        tracing::warn!(%error, "accepting a proxy connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            connections.spawn(connection::serve(
                self.shared.clone(),
                stream,
                peer,
                closing.clone(),
            ));
        }
        drop(listener);
        closing.cancel();
        connections.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
            .await
            .is_err()
        {
            tracing::debug!("requests still in flight at shutdown");
        }
    }
}

/// Sends each request where it belongs.
pub(crate) async fn route(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if request.method() == Method::CONNECT {
        return Ok(tunnel::connect(shared, request).await);
    }
    if request.uri().scheme().is_some() && request.uri().authority().is_some() {
        return Ok(http::forward(shared, request, http::Origin::Proxied).await);
    }
    Ok(response::bad_request(
        "this is a proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port",
    ))
}
