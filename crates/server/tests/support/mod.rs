//! What the server tests share: a real `run()` on an ephemeral port with a
//! temporary data dir, a line sink the tests can wait on, a tonic agent
//! client, and builders for wire batches.

#![allow(dead_code)]

pub mod web;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use warden_api::ApiClient;
use warden_api::workspaces::{CreateWorkspace, WorkspaceToken};
use warden_proto::api::{API_VERSION_HEADER, AUTHORIZATION_HEADER};
use warden_proto::wire::agentapi::{self, agent_api_client::AgentApiClient};
use warden_proto::wire::{self, boundary_log};
use warden_server::{AdminTokenSource, Config, LineFormat, LineSink, ServerError};
use warden_store::DatabaseUrl;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const SESSION: &str = "0b6f8f0e-7a0c-4d7e-9a53-1f2d3c4b5a69";

/// How long a test waits for something that should happen at once before
/// failing (a deadline, not a synchronisation).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Collects lines and lets a test wait for a number of them.
pub struct Capture {
    bytes: Mutex<Vec<u8>>,
    count: watch::Sender<usize>,
}

impl Capture {
    pub fn new() -> Arc<Capture> {
        Arc::new(Capture {
            bytes: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
        })
    }

    /// Every line so far, newline included.
    pub fn lines(&self) -> Vec<String> {
        let bytes = self.bytes.lock().unwrap();
        String::from_utf8(bytes.clone())
            .unwrap()
            .split_inclusive('\n')
            .map(str::to_owned)
            .collect()
    }

    /// Waits until at least `n` lines arrived; returns all lines.
    pub async fn wait_for(&self, n: usize) -> Vec<String> {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(DEADLINE, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("waited for {n} lines, got {:?}", self.lines()))
            .unwrap();
        self.lines()
    }
}

impl LineSink for Capture {
    fn write_lines(&self, lines: &[u8]) -> io::Result<()> {
        let mut bytes = self.bytes.lock().unwrap();
        bytes.extend_from_slice(lines);
        let n = bytes.iter().filter(|b| **b == b'\n').count();
        self.count.send_replace(n);
        Ok(())
    }
}

/// A control plane running in the test's runtime.
pub struct Server {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub lines: Arc<Capture>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
}

pub fn config(dir: &Path, format: LineFormat) -> Config {
    let mut config = Config::new(
        DatabaseUrl::Sqlite(dir.join("warden.db")),
        AdminTokenSource::Given(ADMIN_TOKEN.into()),
    );
    config.log_format = format;
    config
}

impl Server {
    /// Starts a server on a fresh temporary data dir.
    pub async fn start() -> (Server, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start_in(dir.path(), LineFormat::Text).await;
        (server, dir)
    }

    /// Starts a server on `dir` (a restart when it was used before).
    pub async fn start_in(dir: &Path, format: LineFormat) -> Server {
        Server::start_with(config(dir, format), dir, Capture::new()).await
    }

    pub async fn start_with(config: Config, dir: &Path, lines: Arc<Capture>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let sink: Arc<dyn LineSink> = lines.clone();
        let task = tokio::spawn(warden_server::run(config, listener, shutdown.clone(), sink));
        Server {
            addr,
            dir: dir.to_owned(),
            lines,
            shutdown,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown; returns what `run` returned.
    pub async fn stop(self) -> Result<(), ServerError> {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the server did not stop")
            .unwrap()
    }

    pub fn admin(&self) -> ApiClient {
        ApiClient::new(&self.url(), ADMIN_TOKEN, None).unwrap()
    }

    /// Registers a workspace `name` owned by alice; returns its token.
    pub async fn workspace(&self, name: &str) -> WorkspaceToken {
        self.admin()
            .create_workspace(&CreateWorkspace {
                name: name.into(),
                owner: "alice".into(),
                agent_name: None,
                startup_script: None,
            })
            .await
            .unwrap()
    }

    pub async fn agent(&self, token: &str) -> Agent {
        Agent::connect(&self.url(), token).await
    }

    /// GET on the server's HTTP side; returns the status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path).await
    }
}

/// A plain HTTP/1.1 GET.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// An agent API client that adds the token and version to each call.
pub struct Agent {
    pub client: AgentApiClient<Channel>,
    pub token: Option<String>,
    pub version: Option<String>,
}

impl Agent {
    pub async fn connect(url: &str, token: &str) -> Agent {
        let channel = Channel::from_shared(url.to_owned())
            .unwrap()
            .connect()
            .await
            .unwrap();
        Agent::over(channel, token)
    }

    pub fn over(channel: Channel, token: &str) -> Agent {
        Agent {
            client: AgentApiClient::new(channel).max_encoding_message_size(64 << 20),
            token: Some(token.to_owned()),
            version: Some("2.7".into()),
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert(
                AUTHORIZATION_HEADER,
                format!("Bearer {token}").parse().unwrap(),
            );
        }
        if let Some(version) = &self.version {
            request
                .metadata_mut()
                .insert(API_VERSION_HEADER, version.parse().unwrap());
        }
        request
    }

    pub async fn manifest(&mut self) -> Result<agentapi::Manifest, tonic::Status> {
        let request = self.request(agentapi::GetManifestRequest {});
        self.client
            .get_manifest(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn report(
        &mut self,
        batches: Vec<agentapi::Batch>,
    ) -> Result<agentapi::ReportBoundaryLogsResponse, tonic::Status> {
        let request = self.request(agentapi::ReportBoundaryLogsRequest { batches });
        self.client
            .report_boundary_logs(request)
            .await
            .map(|r| r.into_inner())
    }
}

/// 2025-12-08T20:58:46.093456789Z
pub fn event_time() -> wire::Timestamp {
    wire::Timestamp {
        seconds: 1_765_227_526,
        nanos: 93_456_789,
    }
}

/// 2025-12-08T20:58:47.25Z
pub fn received_time() -> wire::Timestamp {
    wire::Timestamp {
        seconds: 1_765_227_527,
        nanos: 250_000_000,
    }
}

pub fn log(seq: i32, allowed: bool, method: &str, url: &str, rule: &str) -> wire::BoundaryLog {
    wire::BoundaryLog {
        allowed,
        time: Some(event_time()),
        resource: Some(boundary_log::Resource::HttpRequest(
            boundary_log::HttpRequest {
                method: method.into(),
                url: url.into(),
                matched_rule: rule.into(),
            },
        )),
        sequence_number: seq,
    }
}

/// Denied `GET https://example.com/<seq>` records.
pub fn logs(seqs: std::ops::Range<i32>) -> Vec<wire::BoundaryLog> {
    seqs.map(|s| log(s, false, "GET", &format!("https://example.com/{s}"), ""))
        .collect()
}

pub fn batch(session: Option<&str>, logs: Vec<wire::BoundaryLog>) -> agentapi::Batch {
    agentapi::Batch {
        batch_id: uuid::Uuid::now_v7().to_string(),
        received_at: Some(received_time()),
        peer: Some(agentapi::SocketPeer {
            uid: 1000,
            gid: 1000,
            pid: 77,
            comm: "boundary".into(),
            exe: "/usr/bin/boundary".into(),
        }),
        logs: Some(wire::ReportBoundaryLogsRequest {
            logs,
            session_id: session.unwrap_or_default().into(),
            confined_process_name: "claude".into(),
            ..Default::default()
        }),
        client_status: Vec::new(),
        agent_drops: Vec::new(),
    }
}

/// The value of a metric line `name{labels} value` in an exposition.
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
