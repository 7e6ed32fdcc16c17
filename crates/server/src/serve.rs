//! One TCP port for gRPC and HTTP: hyper-util's auto builder speaks
//! HTTP/1.1 and HTTP/2 (with prior knowledge, so plain gRPC works without
//! TLS), optionally behind TLS; graceful shutdown lets open calls finish.
//!
//! Every connection is admitted by [`Connections`] first, and its task
//! closes it when the connection outlives its timeouts or the registry
//! evicts it (see [`crate::connections`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::connections::{Admitted, CloseReason, Connections, Verdict};
use crate::grpc::PeerAddr;

/// How long a client has to finish the TLS handshake or send its headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After an accept error (out of file descriptors, say), wait this long
/// before accepting again instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a connection the server decided to close (idle, evicted) gets
/// to finish what is in flight after the server said goodbye (HTTP/2
/// GOAWAY).
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// HTTP/2 pings on an otherwise quiet connection, so that a dead peer is
/// noticed; a ping unanswered for [`KEEP_ALIVE_TIMEOUT`] closes it.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// What every connection task shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    app: Router,
    tls: Option<TlsAcceptor>,
    /// Cancelled when the server stops accepting: connections finish their
    /// calls and close.
    shutdown: CancellationToken,
    /// Cancelled when the grace period is over: connections close at once.
    abort: CancellationToken,
}

/// Serves `app` on `listener` until `shutdown`, then waits up to `grace` for
/// open connections to finish their calls.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    connections: Arc<Connections>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    let shared = Arc::new(Shared {
        builder,
        app,
        tls: tls.map(TlsAcceptor::from),
        shutdown: shutdown.clone(),
        abort: CancellationToken::new(),
    });
    let tasks = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Some(admitted) = connections.admit() else {
            // Over the limits with nothing idle to close: the socket closes
            // as it drops. Counted in the metrics; a log line per refusal
            // would let a flood fill the log.
            tracing::debug!(peer = %peer, "refused a connection: the connection limits are reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        tasks.spawn(connection(Arc::clone(&shared), stream, peer, admitted));
    }
    drop(listener);
    tasks.close();
    tokio::select! {
        () = tasks.wait() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace = ?grace, "connections still open after the shutdown grace period; closing them");
            shared.abort.cancel();
            tasks.wait().await;
        }
    }
}

/// Serves one connection: the TLS handshake when configured, then HTTP.
async fn connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, admitted: Admitted) {
    let result = match &shared.tls {
        None => serve_io(&shared, stream, peer, &admitted).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => handshake,
                () = admitted.evicted() => return,
                () = shared.shutdown.cancelled() => return,
            };
            match handshake {
                Ok(Ok(stream)) => serve_io(&shared, stream, peer, &admitted).await,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, "tls handshake timed out");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

/// Where a connection is in its life.
enum Phase {
    Serving,
    /// Told to finish (graceful shutdown started); closed at this instant
    /// at the latest (`None`: when the server's grace period ends).
    Closing(Option<Instant>),
}

async fn serve_io<I>(
    shared: &Shared,
    io: I,
    peer: SocketAddr,
    admitted: &Admitted,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = shared.app.clone();
    let handle = admitted.handle();
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        let app = app.clone();
        let handle = handle.clone();
        async move {
            let in_flight = handle.0.begin_request();
            request.extensions_mut().insert(PeerAddr(peer));
            request.extensions_mut().insert(handle);
            let response: Response = app.oneshot(request).await?;
            Ok::<_, Infallible>(response.map(|body| in_flight.hold_for(body)))
        }
    });
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut phase = Phase::Serving;
    loop {
        match phase {
            Phase::Serving => {
                let wake = match admitted.verdict(Instant::now()) {
                    Verdict::KeepUntil(at) => at,
                    Verdict::Close(reason) => {
                        log_close(peer, reason);
                        admitted.closing(reason);
                        conn.as_mut().graceful_shutdown();
                        phase = Phase::Closing(Some(Instant::now() + CLOSE_GRACE));
                        continue;
                    }
                };
                tokio::select! {
                    result = conn.as_mut() => return result,
                    () = tokio::time::sleep_until(wake) => {}
                    () = admitted.evicted() => {
                        tracing::debug!(peer = %peer, "closing an idle unauthenticated connection to make room for a new one");
                        conn.as_mut().graceful_shutdown();
                        phase = Phase::Closing(Some(Instant::now() + CLOSE_GRACE));
                    }
                    () = shared.shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        // A connection with calls in flight gets the whole
                        // grace period to finish them; an idle one only
                        // needs to say goodbye (an HTTP/2 client that never
                        // acknowledges the GOAWAY must not hold up the stop).
                        phase = Phase::Closing(
                            admitted.is_idle().then(|| Instant::now() + CLOSE_GRACE),
                        );
                    }
                }
            }
            Phase::Closing(until) => {
                let deadline = async {
                    match until {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                return tokio::select! {
                    result = conn.as_mut() => result,
                    () = deadline => Ok(()),
                    () = shared.abort.cancelled() => Ok(()),
                };
            }
        }
    }
}

fn log_close(peer: SocketAddr, reason: CloseReason) {
    match reason {
        CloseReason::Unauthenticated => tracing::debug!(
            peer = %peer,
            "closing a connection that sent no valid token in time"
        ),
        _ => tracing::debug!(peer = %peer, "closing an idle connection"),
    }
}
