//! CONNECT tunnels (not intercepted) carry bytes exactly: large payloads
//! both ways at once (on Linux through splice(2), which the proxy's tunnel
//! counters prove), a half-close in each direction, a peer that resets,
//! bytes the client sends in the same packet as its CONNECT, and the TLS
//! server name check on such bytes; and an HTTP/2 prior-knowledge client
//! still reaches the proxy (such connections are not HTTP/1.1 tunnels).
//! Origins are on loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use warden_boundary::audit::Audit;
use warden_boundary::policy::Policy;
use warden_boundary::proxy::{Proxy, ProxyConfig, TunnelStats};
use warden_boundary::upstream::{SystemResolver, TcpConnector};

struct Setup {
    proxy: SocketAddr,
    stats: Arc<TunnelStats>,
    audit: Arc<Audit>,
    _stop: tokio_util::sync::DropGuard,
}

async fn setup() -> Setup {
    let policy = Arc::new(Policy::from_rules::<&str>(&[], &["domain=127.0.0.1"]).unwrap());
    let audit = Arc::new(Audit::new(None));
    let proxy = Proxy::new(
        ProxyConfig {
            policy,
            audit: audit.clone(),
            ca: None,
            upstream_roots: Arc::new(rustls::RootCertStore::empty()),
            resolver: Arc::new(SystemResolver),
            connector: Arc::new(TcpConnector),
        },
        None,
    )
    .unwrap();
    let stats = proxy.tunnel_stats();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(proxy.serve(listener, stop.clone()));
    Setup {
        proxy: address,
        stats,
        audit,
        _stop: stop.drop_guard(),
    }
}

/// Opens a tunnel to `origin`, sending `first` in the same write as the
/// CONNECT request; returns the stream after the `200`.
async fn tunnel(proxy: SocketAddr, origin: SocketAddr, first: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let mut request = format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n").into_bytes();
    request.extend_from_slice(first);
    stream.write_all(&request).await.unwrap();
    // Read the response head byte by byte: nothing of the tunnel's bytes
    // may be taken with it.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "proxy closed: {head:?}"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
}

/// `len` bytes of a pattern that is not TLS (so the tunnel opens without
/// a ClientHello) and differs with `seed`.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes[0] = b'X';
    bytes
}

fn digest(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// Reads to end of stream, hashing.
async fn read_all_digest(stream: &mut (impl AsyncReadExt + Unpin)) -> (usize, Vec<u8>) {
    let mut hasher = Sha256::new();
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            return (total, hasher.finalize().to_vec());
        }
        hasher.update(&buf[..n]);
        total += n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payloads_cross_both_ways_at_once_byte_exact() {
    const SIZE: usize = 8 * 1024 * 1024;
    let setup = setup().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let down = payload(SIZE, 2);
    let down_digest = digest(&down);
    let origin_task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let sending = tokio::spawn(async move {
            write.write_all(&down).await.unwrap();
            write.shutdown().await.unwrap();
        });
        let received = read_all_digest(&mut read).await;
        sending.await.unwrap();
        received
    });

    let up = payload(SIZE, 1);
    let up_digest = digest(&up);
    let stream = tunnel(setup.proxy, origin, &[]).await;
    let (mut read, mut write) = stream.into_split();
    let sending = tokio::spawn(async move {
        write.write_all(&up).await.unwrap();
        write.shutdown().await.unwrap();
    });
    let (got, got_digest) = read_all_digest(&mut read).await;
    sending.await.unwrap();
    assert_eq!(got, SIZE);
    assert!(got_digest == down_digest, "origin to client bytes differ");
    let (received, received_digest) = origin_task.await.unwrap();
    assert_eq!(received, SIZE);
    assert!(
        received_digest == up_digest,
        "client to origin bytes differ"
    );

    setup.stats.closed(1).await;
    let counts = setup.stats.counts();
    assert_eq!(counts.bytes, 2 * SIZE as u64);
    if cfg!(target_os = "linux") {
        // Bulk transfers go through the pipe, not this process's memory.
        assert!(
            counts.spliced > SIZE as u64,
            "spliced only {} of {} bytes",
            counts.spliced,
            counts.bytes
        );
    } else {
        assert_eq!(counts.spliced, 0);
    }
    assert_eq!(setup.audit.counts().decisions, 1);
}

#[tokio::test]
async fn small_messages_go_back_and_forth_in_order() {
    let setup = setup().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    // An echo origin, message by message.
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            stream.write_all(&buf[..n]).await.unwrap();
        }
    });
    let mut stream = tunnel(setup.proxy, origin, &[]).await;
    for i in 0..200u32 {
        let message = format!("X message {i}");
        stream.write_all(message.as_bytes()).await.unwrap();
        let mut back = vec![0u8; message.len()];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(back, message.as_bytes());
    }
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    setup.stats.closed(1).await;
    assert_eq!(setup.stats.counts().spliced, 0, "small messages are copied");
}

#[tokio::test]
async fn the_client_half_closes_and_still_reads_the_answer() {
    let setup = setup().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    // Reads to end of stream, then answers with what it got.
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        let answer = format!("got {} bytes ending {:?}", got.len(), &got[got.len() - 3..]);
        stream.write_all(answer.as_bytes()).await.unwrap();
    });
    let mut stream = tunnel(setup.proxy, origin, &[]).await;
    let sent = payload(300_000, 3);
    stream.write_all(&sent).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert_eq!(
        answer,
        format!("got 300000 bytes ending {:?}", &sent[sent.len() - 3..])
    );
    setup.stats.closed(1).await;
}

#[tokio::test]
async fn the_origin_half_closes_and_still_reads_the_client() {
    let setup = setup().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let (report, reported) = oneshot::channel();
    // Speaks first and says all it has, then reads to end of stream.
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream
            .write_all(b"banner, then nothing more")
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        let _ = report.send(got);
    });
    // The client reads the origin's whole say before it speaks: the
    // origin's end of stream reaches it while the tunnel still waits for
    // its first bytes.
    let mut stream = tunnel(setup.proxy, origin, &[]).await;
    let mut banner = String::new();
    stream.read_to_string(&mut banner).await.unwrap();
    assert_eq!(banner, "banner, then nothing more");
    let sent = payload(200_000, 4);
    stream.write_all(&sent).await.unwrap();
    stream.shutdown().await.unwrap();
    assert!(
        reported.await.unwrap() == sent,
        "the origin got other bytes"
    );
    setup.stats.closed(1).await;
}

/// Closes `stream` with a reset (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    let stream = stream.into_std().unwrap();
    rustix::net::sockopt::set_socket_linger(&stream, Some(std::time::Duration::ZERO)).unwrap();
    drop(stream);
}

#[tokio::test]
async fn an_origin_that_resets_ends_the_tunnel() {
    let setup = setup().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        reset(stream);
    });
    let mut stream = tunnel(setup.proxy, origin, b"Xhi!\n").await;
    let mut buf = [0u8; 16];
    // The proxy closes the client's side: end of stream or a reset, never
    // data and never a hang.
    match stream.read(&mut buf).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("read {n} bytes from a reset origin"),
    }
}

#[tokio::test]
async fn a_client_that_resets_ends_the_tunnel() {
    let setup = setup().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let (report, reported) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let end = loop {
            match stream.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(error) => break Err(error.kind()),
            }
        };
        let _ = report.send((got, end));
    });
    let mut stream = tunnel(setup.proxy, origin, &[]).await;
    stream.write_all(b"X before the reset").await.unwrap();
    reset(stream);
    let (got, _end) = reported.await.unwrap();
    // The origin's read ended (rather than waiting forever), and what came
    // through before the reset came intact (the reset may overtake bytes
    // the proxy had not read yet).
    assert!(b"X before the reset".starts_with(&got), "{got:?}");
}

#[tokio::test]
async fn bytes_sent_with_the_connect_request_reach_the_origin() {
    let setup = setup().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        stream.write_all(&got).await.unwrap();
    });
    let first = payload(5000, 5);
    let mut stream = tunnel(setup.proxy, origin, &first).await;
    stream.write_all(b"and more").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    let mut expected = first.clone();
    expected.extend_from_slice(b"and more");
    assert!(back == expected, "the origin got other bytes");
}

/// A TLS ClientHello naming `name`.
fn client_hello(name: &str) -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let mut connection =
        rustls::ClientConnection::new(Arc::new(config), name.to_owned().try_into().unwrap())
            .unwrap();
    let mut hello = Vec::new();
    while connection.wants_write() {
        connection.write_tls(&mut hello).unwrap();
    }
    hello
}

#[tokio::test]
async fn a_client_hello_sent_with_the_connect_request_is_checked() {
    let setup = setup().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let (report, reported) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got).await;
        let _ = report.send(got);
    });
    // CONNECT names an allowed address, the ClientHello in the same packet
    // another host: the tunnel closes and the origin never sees the hello.
    let mut stream = tunnel(setup.proxy, origin, &client_hello("elsewhere.test")).await;
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    assert!(rest.is_empty());
    assert!(
        reported.await.unwrap().is_empty(),
        "the hello was forwarded"
    );
    assert_eq!(setup.audit.counts().decisions, 1);
}

#[tokio::test]
async fn an_http2_prior_knowledge_client_is_still_served() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let setup = setup().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0);
            head.extend_from_slice(&buf[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\norigin-ok")
            .await
            .unwrap();
    });
    // The connection opens with the HTTP/2 preface: the proxy's automatic
    // server takes it (an HTTP/1.1 connection goes to the HTTP/1 server).
    let stream = TcpStream::connect(setup.proxy).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!("http://{origin}/h2"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"origin-ok");
    assert_eq!(setup.audit.counts().decisions, 1);
}
