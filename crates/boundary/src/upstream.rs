//! Connections to origins: resolve once, check every address, connect to an
//! address that passed.
//!
//! The address check (link-local and metadata addresses need a rule naming
//! the host) is made on the addresses the connection will actually use, and
//! the name is resolved only here, once per connection: there is no second
//! lookup an attacker's DNS could answer differently (no rebinding window).
//! [`Resolve`] and [`Connect`] are traits so that tests can map names to
//! addresses and prove that a forbidden address is never dialed, without
//! sending a packet beyond loopback.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::policy::Policy;
use crate::target::Host;

/// A boxed future, for the object-safe traits below.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Name resolution.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `name` (a domain name, never an IP literal).
    fn resolve(&self, name: String, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>>;
}

/// Opening TCP connections.
pub trait Connect: Send + Sync + 'static {
    /// Connects to `address`.
    fn connect(&self, address: SocketAddr) -> BoxFuture<io::Result<TcpStream>>;
}

/// The system resolver (`getaddrinfo` on a blocking thread).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: String, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((name, port)).await?.collect()) })
    }
}

/// Plain TCP connections with Nagle off (the proxy writes whole messages).
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpConnector;

impl Connect for TcpConnector {
    fn connect(&self, address: SocketAddr) -> BoxFuture<io::Result<TcpStream>> {
        Box::pin(async move {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    }
}

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Every address of the host is link-local or metadata and no allow
    /// rule names the host: a denial, not a failure.
    #[error("{address} is a link-local or metadata address and no allow rule names this host")]
    Forbidden {
        /// The first forbidden address.
        address: IpAddr,
    },
    /// The only address is the proxy itself.
    #[error("{0} is the proxy's own address")]
    Loop(SocketAddr),
    /// The name did not resolve.
    #[error("resolving {name}")]
    Resolve {
        /// The name.
        name: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// The name resolved to nothing.
    #[error("{0} has no addresses")]
    NoAddresses(String),
    /// Every address refused or timed out.
    #[error("connecting to {address}")]
    Connect {
        /// The last address tried.
        address: SocketAddr,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The URI has no usable host (cannot happen for URIs the proxy builds).
    #[error("no host in {0}")]
    NoHost(String),
    /// TLS to the origin failed (certificate not trusted, handshake error).
    #[error("TLS handshake with {host}")]
    Tls {
        /// The origin.
        host: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl DialError {
    /// Finds a dial error in an error's source chain (the HTTP client wraps
    /// its connector's errors).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a DialError> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(dial) = e.downcast_ref::<DialError>() {
                return Some(dial);
            }
            current = e.source();
        }
        None
    }
}

/// Resolves and connects under a policy.
#[derive(Clone)]
pub struct Dialer {
    policy: Arc<Policy>,
    resolver: Arc<dyn Resolve>,
    connector: Arc<dyn Connect>,
    /// The proxy's own listening address: never dialed (a request to the
    /// proxy through itself would loop).
    own_address: Option<SocketAddr>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("own_address", &self.own_address)
            .finish_non_exhaustive()
    }
}

impl Dialer {
    /// A dialer for `policy` with these resolver and connector.
    pub fn new(
        policy: Arc<Policy>,
        resolver: Arc<dyn Resolve>,
        connector: Arc<dyn Connect>,
        own_address: Option<SocketAddr>,
    ) -> Dialer {
        Dialer {
            policy,
            resolver,
            connector,
            own_address,
        }
    }

    /// Resolves `host` once, keeps the addresses the policy admits, and
    /// connects to the first that answers.
    pub async fn dial(&self, host: &Host, port: u16) -> Result<TcpStream, DialError> {
        let addresses = match host {
            Host::Ipv4(a) => vec![SocketAddr::new(IpAddr::V4(*a), port)],
            Host::Ipv6(a) => vec![SocketAddr::new(IpAddr::V6(*a), port)],
            Host::Name(name) => {
                self.resolver
                    .resolve(name.clone(), port)
                    .await
                    .map_err(|source| DialError::Resolve {
                        name: name.clone(),
                        source,
                    })?
            }
        };
        let mut forbidden = None;
        let mut looping = None;
        let mut last_error = None;
        for address in addresses {
            if !self.policy.admits_address(host, address.ip()) {
                forbidden.get_or_insert(address.ip());
                continue;
            }
            if self.own_address.is_some_and(|own| is_same(own, address)) {
                looping = Some(address);
                continue;
            }
            match self.connector.connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(source) => last_error = Some(DialError::Connect { address, source }),
            }
        }
        Err(last_error
            .or(forbidden.map(|address| DialError::Forbidden { address }))
            .or(looping.map(DialError::Loop))
            .unwrap_or_else(|| DialError::NoAddresses(host.to_string())))
    }

    /// Dials the host and port of `uri`.
    async fn dial_uri(&self, uri: &Uri) -> Result<(TcpStream, Host), DialError> {
        let host = uri
            .host()
            .and_then(|h| Host::parse(h).ok())
            .ok_or_else(|| DialError::NoHost(uri.to_string()))?;
        let default = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let port = uri.port_u16().unwrap_or(default);
        let stream = self.dial(&host, port).await?;
        Ok((stream, host))
    }
}

/// Whether `a` and `b` are the same endpoint (an unspecified listening
/// address stands for every local address).
fn is_same(own: SocketAddr, address: SocketAddr) -> bool {
    own.port() == address.port()
        && (own.ip() == address.ip() || (own.ip().is_unspecified() && (address.ip().is_loopback())))
}

/// A TCP connection for the HTTP client.
#[derive(Debug)]
pub struct PlainConnection(TokioIo<TcpStream>);

/// A TLS connection for the HTTP client.
#[derive(Debug)]
pub struct TlsConnection(TokioIo<TlsStream<TcpStream>>);

macro_rules! delegate_io {
    ($ty:ty) => {
        impl hyper::rt::Read for $ty {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: hyper::rt::ReadBufCursor<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_read(cx, buf)
            }
        }
        impl hyper::rt::Write for $ty {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.0).poll_write(cx, buf)
            }
            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_flush(cx)
            }
            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_shutdown(cx)
            }
            fn is_write_vectored(&self) -> bool {
                self.0.is_write_vectored()
            }
            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
            }
        }
    };
}
delegate_io!(PlainConnection);
delegate_io!(TlsConnection);

impl Connection for PlainConnection {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Connection for TlsConnection {
    fn connected(&self) -> Connected {
        let h2 = self.0.inner().get_ref().1.alpn_protocol() == Some(b"h2");
        if h2 {
            Connected::new().negotiated_h2()
        } else {
            Connected::new()
        }
    }
}

/// The HTTP client's connector for `http://` origins.
#[derive(Clone, Debug)]
pub struct PlainConnector(pub Dialer);

impl tower_service::Service<Uri> for PlainConnector {
    type Response = PlainConnection;
    type Error = DialError;
    type Future = BoxFuture<Result<PlainConnection, DialError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.0.clone();
        Box::pin(async move {
            let (stream, _) = dialer.dial_uri(&uri).await?;
            Ok(PlainConnection(TokioIo::new(stream)))
        })
    }
}

/// The HTTP client's connector for `https://` origins: TLS verified
/// against the configured roots, ALPN as configured.
#[derive(Clone)]
pub struct TlsConnectorService {
    dialer: Dialer,
    tls: TlsConnector,
}

impl std::fmt::Debug for TlsConnectorService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnectorService")
            .finish_non_exhaustive()
    }
}

impl TlsConnectorService {
    /// A connector dialing with `dialer` and speaking TLS with `config`.
    pub fn new(dialer: Dialer, config: Arc<rustls::ClientConfig>) -> TlsConnectorService {
        TlsConnectorService {
            dialer,
            tls: TlsConnector::from(config),
        }
    }
}

impl tower_service::Service<Uri> for TlsConnectorService {
    type Response = TlsConnection;
    type Error = DialError;
    type Future = BoxFuture<Result<TlsConnection, DialError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.dialer.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let (stream, host) = dialer.dial_uri(&uri).await?;
            let name = server_name(&host)?;
            let stream = tls
                .connect(name, stream)
                .await
                .map_err(|source| DialError::Tls {
                    host: host.to_string(),
                    source,
                })?;
            Ok(TlsConnection(TokioIo::new(stream)))
        })
    }
}

/// The TLS server name for a host (an IP address for literals).
pub fn server_name(host: &Host) -> Result<ServerName<'static>, DialError> {
    match host {
        Host::Name(name) => ServerName::try_from(name.clone()).map_err(|e| DialError::Tls {
            host: name.clone(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        }),
        Host::Ipv4(a) => Ok(ServerName::IpAddress(IpAddr::V4(*a).into())),
        Host::Ipv6(a) => Ok(ServerName::IpAddress(IpAddr::V6(*a).into())),
    }
}
