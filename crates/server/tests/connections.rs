//! Connection exhaustion (issue 17, medium 3), scaled down: a flood of
//! connections that never send a request (an HTTP/2 preface and SETTINGS
//! and nothing more, or nothing at all) against a server with a low
//! connection limit. `/healthz`, an established agent and a newly
//! connecting agent keep working, and the idle connections are closed.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Endpoint;
use warden_server::{ConnectionLimits, LineFormat};

/// The HTTP/2 client preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Opens a connection that says hello in HTTP/2 (or not at all) and then
/// nothing more.
async fn idle_connection(server: &Server, h2: bool) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    if h2 {
        stream.write_all(H2_PREFACE).await.unwrap();
    }
    stream
}

/// Waits until the server closes `stream` (end of file or a reset),
/// reading and discarding what it sends before (SETTINGS, GOAWAY).
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, read_to_end).await.is_ok()
}

/// Whether `stream` is still open: whatever the server sent is read, and
/// no end of file follows.
fn still_open(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// An agent client that counts the connections it opens (tonic reconnects
/// on its own, so a call that works does not show its connection was kept).
async fn counted_agent(addr: SocketAddr, token: &str) -> (Agent, Arc<AtomicUsize>) {
    let connects = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connects);
    let connector = tower::service_fn(move |_: http::Uri| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { TcpStream::connect(addr).await.map(TokioIo::new) }
    });
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .unwrap();
    (Agent::over(channel, token), connects)
}

async fn server_with(limits: ConnectionLimits) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), LineFormat::Text);
    config.connections = limits;
    let server = Server::start_with(config, dir.path(), Capture::new()).await;
    (server, dir)
}

#[tokio::test]
async fn a_flood_of_idle_connections_locks_out_neither_health_checks_nor_agents() {
    // 16 connections, 4 of them kept for clients with a valid token; idle
    // strangers are not timed out during this test.
    let (server, _dir) = server_with(ConnectionLimits {
        max_connections: 16,
        reserved: 4,
        unauthenticated_timeout: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(600),
    })
    .await;
    let ws = server.workspace("dev").await;
    let (mut agent, connects) = counted_agent(server.addr, &ws.agent_token).await;
    agent.manifest().await.unwrap();

    // Three times as many idle connections as the limit allows.
    let mut idle = Vec::new();
    for i in 0..48 {
        idle.push(idle_connection(&server, i % 2 == 0).await);
    }
    // Each new one pushed out the one idle longest: the first 36 are closed
    // (all but the newest 12, the unauthenticated share).
    for (i, stream) in idle.iter_mut().enumerate().take(36) {
        assert!(
            closed_by_server(stream).await,
            "idle connection {i} is still open"
        );
    }

    // A health check on a new connection, the established agent, and an
    // agent that connects now all get through.
    assert_eq!(server.get("/healthz").await, (200, "ok\n".into()));
    agent.manifest().await.unwrap();
    agent.report(vec![batch(None, logs(0..3))]).await.unwrap();
    assert_eq!(
        connects.load(Ordering::SeqCst),
        1,
        "the established agent lost its connection"
    );
    let mut newcomer = server.agent(&ws.agent_token).await;
    newcomer.manifest().await.unwrap();

    let metrics = server.get("/metrics").await.1;
    let evicted = metric(
        &metrics,
        "warden_connections_closed_by_server_total{reason=\"evicted\"}",
    )
    .unwrap();
    assert!(evicted >= 36.0, "{metrics}");
    // The agents' connections are authenticated and were left alone.
    assert!(
        metric(&metrics, "warden_connections_open{state=\"authenticated\"}").unwrap() >= 2.0,
        "{metrics}"
    );
    agent.manifest().await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn connections_that_send_no_valid_token_in_time_are_closed() {
    let (server, _dir) = server_with(ConnectionLimits {
        max_connections: 64,
        reserved: 8,
        unauthenticated_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(600),
    })
    .await;
    let ws = server.workspace("dev").await;
    let (mut agent, connects) = counted_agent(server.addr, &ws.agent_token).await;
    agent.manifest().await.unwrap();

    let mut silent = idle_connection(&server, false).await;
    let mut preface_only = idle_connection(&server, true).await;
    assert!(closed_by_server(&mut silent).await);
    assert!(closed_by_server(&mut preface_only).await);

    // An HTTP/1.1 connection whose requests are not authenticated (a health
    // check kept alive) is closed too once it idles.
    let mut http1 = TcpStream::connect(server.addr).await.unwrap();
    http1
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = [0u8; 15];
    http1.read_exact(&mut response).await.unwrap();
    assert_eq!(&response, b"HTTP/1.1 200 OK");
    assert!(closed_by_server(&mut http1).await);

    // The agent's connection, older than all of these, proved its token:
    // the short timeout is not its, and it still carries calls.
    agent.manifest().await.unwrap();
    assert_eq!(connects.load(Ordering::SeqCst), 1);
    let metrics = server.get("/metrics").await.1;
    assert!(
        metric(
            &metrics,
            "warden_connections_closed_by_server_total{reason=\"unauthenticated_timeout\"}"
        )
        .unwrap()
            >= 3.0,
        "{metrics}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_newest_idle_connections_stay_until_they_time_out() {
    let (server, _dir) = server_with(ConnectionLimits {
        max_connections: 8,
        reserved: 2,
        unauthenticated_timeout: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(600),
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..6 {
        idle.push(idle_connection(&server, true).await);
    }
    // Room for 6 strangers: a health check on a seventh connection pushes
    // out the oldest, and the others are still open.
    assert_eq!(server.get("/healthz").await.0, 200);
    assert!(closed_by_server(&mut idle[0]).await);
    for (i, stream) in idle.iter_mut().enumerate().skip(1) {
        assert!(still_open(stream), "connection {i} was closed");
    }
    server.stop().await.unwrap();
}
