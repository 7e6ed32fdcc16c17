//! One client connection to the proxy.
//!
//! HTTP/1.1 (what proxy clients speak) is served by hyper's HTTP/1 server
//! directly on the TCP stream, so that a CONNECT's upgraded connection can
//! be taken back as that TCP stream ([`super::tunnel`] relays it with
//! splice(2) on Linux). A connection that opens with the HTTP/2 preface
//! (prior knowledge) goes to hyper-util's automatic server, which wraps the
//! stream and so keeps its tunnels on the copying relay.
//!
//! Which one is decided by peeking at the first bytes (nothing is consumed).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{Shared, route};

/// What an HTTP/2 client with prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one connection until it ends; when `closing` is cancelled,
/// in-flight requests finish and the connection closes.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    closing: CancellationToken,
) {
    let mut first = [0u8; H2_PREFACE.len()];
    let seen = tokio::select! {
        () = closing.cancelled() => return,
        peeked = stream.peek(&mut first) => match peeked {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        },
    };
    let service = service_fn(move |request| route(shared.clone(), request));
    // A prefix of the preface (even a short one) may be HTTP/2: the
    // automatic server reads on until it knows.
    let result = if H2_PREFACE.starts_with(&first[..seen]) {
        let builder = auto::Builder::new(TokioExecutor::new());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => result,
            () = closing.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    } else {
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => result,
            () = closing.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
        .map_err(Into::into)
    };
    if let Err(error) = result {
        tracing::debug!(%peer, error = %error, "proxy connection ended");
    }
}
