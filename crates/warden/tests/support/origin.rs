//! Local origins for `warden boundary` tests, on loopback only: an HTTP or
//! HTTPS server (its own test CA) that answers with what it saw, streams a
//! response in two parts on request, echoes bytes after a WebSocket-style
//! upgrade, and serves a directory of static files (a dumb-HTTP git
//! repository); plus checks for the external tools the tests drive.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

type Body = BoxBody<Bytes, Infallible>;

/// Fails the test with install advice when `tool` is missing.
pub fn require(tool: &str, package: &str) {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "this test needs `{tool}`: install it with `apt-get install -y {package}`"
    );
}

/// A request the origin answered.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query as received.
    pub target: String,
    pub host: String,
}

/// A test CA and a certificate for `localhost`, `origin.test` and
/// 127.0.0.1 signed by it.
pub struct TestCa {
    pub pem_path: PathBuf,
    config: Arc<rustls::ServerConfig>,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "warden test origin CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![
            "localhost".into(),
            "origin.test".into(),
            "127.0.0.1".into(),
        ])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
        let pem_path = dir.join("origin-ca.pem");
        std::fs::write(&pem_path, ca_cert.pem()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TestCa {
            pem_path,
            config: Arc::new(config),
        }
    }
}

/// A running origin.
pub struct Origin {
    pub address: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Releases the second half of a `/stream` response.
    pub release: Arc<Notify>,
}

impl Origin {
    /// Plain HTTP on 127.0.0.1.
    pub async fn http(files: Option<PathBuf>) -> Origin {
        Origin::start(None, files).await
    }

    /// HTTPS on 127.0.0.1 with `ca`'s certificate.
    pub async fn https(ca: &TestCa, files: Option<PathBuf>) -> Origin {
        Origin::start(Some(ca.config.clone()), files).await
    }

    async fn start(tls: Option<Arc<rustls::ServerConfig>>, files: Option<PathBuf>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let state = State {
            seen: seen.clone(),
            release: release.clone(),
            files,
        };
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(state.clone(), request));
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Origin {
            address,
            seen,
            release,
        }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct State {
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<Notify>,
    files: Option<PathBuf>,
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response
}

async fn handle(
    state: State,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    state.seen.lock().unwrap().push(Seen {
        method: request.method().to_string(),
        target: target.clone(),
        host: host.clone(),
    });
    let path = request.uri().path().to_owned();
    if path == "/ws" && request.headers().contains_key(http::header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()).boxed());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert(http::header::UPGRADE, "websocket".parse().unwrap());
        response
            .headers_mut()
            .insert(http::header::CONNECTION, "upgrade".parse().unwrap());
        return Ok(response);
    }
    if path == "/stream" {
        // The first part now, the second only once the test has read the
        // first through the proxy: a proxy that buffers whole bodies hangs.
        let release = state.release.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
        tokio::spawn(async move {
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(b"first-part\n"))))
                .await;
            release.notified().await;
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(b"second-part\n"))))
                .await;
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        return Ok(Response::new(StreamBody::new(stream).boxed()));
    }
    if path == "/upload" {
        let body = request.into_body().collect().await.map(|b| b.to_bytes());
        let len = body.map(|b| b.len()).unwrap_or(0);
        return Ok(text(StatusCode::OK, format!("received {len} bytes\n")));
    }
    if let Some(root) = &state.files {
        let relative = path.trim_start_matches('/');
        let file = root.join(relative);
        if !relative.contains("..") && file.is_file() {
            let bytes = std::fs::read(&file).unwrap();
            return Ok(Response::new(Full::new(Bytes::from(bytes)).boxed()));
        }
        return Ok(text(StatusCode::NOT_FOUND, "not found\n".into()));
    }
    Ok(text(
        StatusCode::OK,
        format!("origin-ok {} {target} host={host}\n", request.method()),
    ))
}
