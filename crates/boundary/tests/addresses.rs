//! Link-local and metadata addresses behind names, decided on the address
//! actually connected to. A test resolver maps names to 169.254.169.254;
//! the connector double connects to loopback only and records any other
//! address it is asked for, so no packet ever leaves loopback and a dial
//! to a forbidden address fails the test.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use warden_boundary::audit::Audit;
use warden_boundary::policy::Policy;
use warden_boundary::proxy::{Proxy, ProxyConfig};
use warden_boundary::upstream::{BoxFuture, Connect, Resolve};

/// Names to fixed addresses.
struct MapResolver(Vec<(&'static str, Vec<IpAddr>)>);

impl Resolve for MapResolver {
    fn resolve(&self, name: String, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let found = self
            .0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, ips)| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        Box::pin(async move { found.ok_or_else(|| io::Error::other("no such name")) })
    }
}

/// Connects to loopback; records every other address and refuses it.
#[derive(Default)]
struct LoopbackOnly {
    refused: Mutex<Vec<SocketAddr>>,
}

impl Connect for LoopbackOnly {
    fn connect(&self, address: SocketAddr) -> BoxFuture<io::Result<TcpStream>> {
        if !address.ip().is_loopback() {
            self.refused.lock().unwrap().push(address);
            return Box::pin(async { Err(io::Error::other("test double: not loopback")) });
        }
        Box::pin(TcpStream::connect(address))
    }
}

struct Setup {
    proxy: SocketAddr,
    connector: Arc<LoopbackOnly>,
    audit: Arc<Audit>,
    _stop: tokio_util::sync::DropGuard,
}

async fn setup(allow: &[&str], origin: SocketAddr) -> Setup {
    let policy = Arc::new(Policy::from_rules::<&str>(&[], allow).unwrap());
    let metadata: IpAddr = "169.254.169.254".parse().unwrap();
    let resolver = MapResolver(vec![
        ("metadata.test", vec![metadata]),
        ("rebind.test", vec![metadata, origin.ip()]),
    ]);
    let connector = Arc::new(LoopbackOnly::default());
    let audit = Arc::new(Audit::new(None));
    let proxy = Proxy::new(
        ProxyConfig {
            policy,
            audit: audit.clone(),
            ca: None,
            upstream_roots: Arc::new(rustls::RootCertStore::empty()),
            resolver: Arc::new(resolver),
            connector: connector.clone(),
        },
        None,
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(proxy.serve(listener, stop.clone()));
    Setup {
        proxy: address,
        connector,
        audit,
        _stop: stop.drop_guard(),
    }
}

async fn send(proxy: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the head and what body there is (every answer here is short and
    // the connection is closed or the body ends).
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if n == 0 || (text.contains("\r\n\r\n") && (text.ends_with('\n') || text.contains(" 200 ")))
        {
            return text.into_owned();
        }
    }
}

async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\norigin-ok\n")
                    .await;
            });
        }
    });
    address
}

#[tokio::test]
async fn a_name_resolving_to_a_metadata_address_is_denied_and_never_dialed() {
    let origin = origin().await;
    let setup = setup(&["domain=*.test"], origin).await;
    let answer = send(
        setup.proxy,
        "GET http://metadata.test/latest/meta-data/ HTTP/1.1\r\nHost: metadata.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("169.254.169.254 is a link-local or metadata address"),
        "{answer}"
    );
    let answer = send(
        setup.proxy,
        "CONNECT metadata.test:443 HTTP/1.1\r\nHost: metadata.test:443\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        setup.connector.refused.lock().unwrap().is_empty(),
        "dialed a forbidden address"
    );
    assert_eq!(setup.audit.counts().decisions, 2);
}

#[tokio::test]
async fn of_several_addresses_only_the_admitted_ones_are_dialed() {
    let origin = origin().await;
    let setup = setup(&["domain=*.test"], origin).await;
    let request = format!(
        "GET http://rebind.test:{0}/ HTTP/1.1\r\nHost: rebind.test:{0}\r\nConnection: close\r\n\r\n",
        origin.port()
    );
    let answer = send(setup.proxy, &request).await;
    assert!(answer.contains("origin-ok"), "{answer}");
    assert!(setup.connector.refused.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_rule_naming_the_host_admits_its_metadata_address() {
    let origin = origin().await;
    let setup = setup(&["domain=metadata.test"], origin).await;
    let answer = send(
        setup.proxy,
        "GET http://metadata.test/latest HTTP/1.1\r\nHost: metadata.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    // The proxy tried that address (the double refused it: 502, not 403).
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let refused = setup.connector.refused.lock().unwrap().clone();
    assert_eq!(
        refused,
        ["169.254.169.254:80".parse::<SocketAddr>().unwrap()]
    );
}
