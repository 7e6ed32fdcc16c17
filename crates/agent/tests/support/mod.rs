//! Test support shared by the agent's tests (crates/agent/tests) and the
//! binary's agent tests (crates/warden/tests/agent_*.rs, via `#[path]`):
//!
//! - [`FakeControlPlane`]: an in-process tonic server implementing the
//!   agent API, scripted per call (accept, fail, commit and then drop the
//!   connection before answering), recording everything it received and
//!   committing batches idempotently by batch id, like the real one;
//! - a TCP proxy in front of it that the test can take down (refusing and
//!   cutting connections) and bring back, to simulate outages;
//! - socket client helpers that write frames with the proto crate's encoder.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tonic::{Code, Request, Response, Status};
use warden_proto::api::{API_VERSION_HEADER, AUTHORIZATION_HEADER, bearer_token};
use warden_proto::codec::{Frame, Tag, encode_frame};
use warden_proto::domain::IngestBatch;
use warden_proto::wire::agentapi::agent_api_server::{AgentApi, AgentApiServer};
use warden_proto::wire::{self, BoundaryLog, ReportBoundaryLogsRequest, agentapi, boundary_log};

/// How long a test waits for a condition before failing.
pub const WAIT: Duration = Duration::from_secs(30);

/// What the fake does with the next `ReportBoundaryLogs` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Commit and answer.
    Accept,
    /// Answer with this error, committing nothing.
    Fail(Code),
    /// Commit, then cut every connection before answering: the agent never
    /// sees the acknowledgement.
    CommitThenDrop,
}

/// Everything the fake saw and holds.
#[derive(Default)]
pub struct State {
    pub manifest: agentapi::Manifest,
    pub token: String,
    /// Every ReportBoundaryLogs request, in arrival order (refused ones too).
    pub calls: Vec<agentapi::ReportBoundaryLogsRequest>,
    /// Committed batches by id, and their commit order.
    pub committed: HashMap<String, agentapi::Batch>,
    pub commit_order: Vec<String>,
    /// How often each batch id was delivered (committed or re-sent).
    pub deliveries: HashMap<String, u32>,
    pub script: VecDeque<Action>,
    pub manifest_calls: u32,
    pub unauthenticated: u32,
    /// Version headers seen.
    pub versions: Vec<String>,
}

impl State {
    /// Every committed record, in commit order.
    pub fn records(&self) -> Vec<BoundaryLog> {
        self.commit_order
            .iter()
            .filter_map(|id| self.committed[id].logs.as_ref())
            .flat_map(|logs| logs.logs.iter().cloned())
            .collect()
    }

    /// URLs of every committed record, sorted.
    pub fn urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self.records().iter().map(url_of).collect();
        urls.sort();
        urls
    }

    /// Committed batches carrying logs.
    pub fn log_batches(&self) -> Vec<&agentapi::Batch> {
        self.commit_order
            .iter()
            .map(|id| &self.committed[id])
            .filter(|b| b.logs.is_some())
            .collect()
    }

    /// Total of committed agent drops for `reason`: (records, frames).
    pub fn agent_drops(&self, reason: &str) -> (u64, u64) {
        self.committed
            .values()
            .flat_map(|b| &b.agent_drops)
            .filter(|d| d.reason == reason)
            .fold((0, 0), |(r, f), d| (r + d.records, f + d.frames))
    }

    pub fn client_status(&self) -> Vec<agentapi::ClientStatus> {
        self.commit_order
            .iter()
            .flat_map(|id| self.committed[id].client_status.iter().cloned())
            .collect()
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
    proxy: Arc<ProxyControl>,
}

/// A scripted control plane behind a cuttable proxy.
pub struct FakeControlPlane {
    shared: Arc<Shared>,
    /// The proxy's address: what the agent is given.
    pub addr: SocketAddr,
    tls: bool,
    server: JoinHandle<()>,
    proxy: JoinHandle<()>,
}

impl Drop for FakeControlPlane {
    fn drop(&mut self) {
        self.server.abort();
        self.proxy.abort();
    }
}

pub fn manifest() -> agentapi::Manifest {
    agentapi::Manifest {
        workspace_id: "6f1c2a57-3a0e-4f7c-9d0b-0d6a1f3b2c11".into(),
        workspace_name: "dev-ws".into(),
        owner_name: "alice".into(),
        agent_name: "main".into(),
        startup_script: String::new(),
        agent_id: "0c4b7e39-5d21-4a6f-8b3e-2f9a1c7d5e40".into(),
    }
}

impl FakeControlPlane {
    pub async fn start(token: &str) -> FakeControlPlane {
        Self::start_with(token, manifest()).await
    }

    pub async fn start_with(token: &str, manifest: agentapi::Manifest) -> FakeControlPlane {
        Self::start_inner(token, manifest, None).await
    }

    /// Serves TLS with `cert` and `key` (PEM); the URL is `https://`.
    pub async fn start_tls(token: &str, cert: &[u8], key: &[u8]) -> FakeControlPlane {
        let identity = tonic::transport::Identity::from_pem(cert, key);
        Self::start_inner(token, manifest(), Some(identity)).await
    }

    async fn start_inner(
        token: &str,
        manifest: agentapi::Manifest,
        tls: Option<tonic::transport::Identity>,
    ) -> FakeControlPlane {
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend_addr = backend.local_addr().unwrap();
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = front.local_addr().unwrap();
        let proxy_control = Arc::new(ProxyControl::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                manifest,
                token: token.to_owned(),
                ..State::default()
            }),
            changed: Notify::new(),
            proxy: proxy_control.clone(),
        });
        let service = AgentApiServer::new(Service {
            shared: shared.clone(),
        });
        let tls_on = tls.is_some();
        let server = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(backend);
            let mut builder = tonic::transport::Server::builder();
            if let Some(identity) = tls {
                builder = builder
                    .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                    .unwrap();
            }
            let _ = builder
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        let proxy = tokio::spawn(run_proxy(front, backend_addr, proxy_control));
        FakeControlPlane {
            shared,
            addr,
            tls: tls_on,
            server,
            proxy,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Reads or changes the state.
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let result = f(&mut self.shared.state.lock().unwrap());
        self.shared.changed.notify_waiters();
        result
    }

    /// Queues actions for the next calls (then `Accept` again).
    pub fn script(&self, actions: impl IntoIterator<Item = Action>) {
        self.with(|s| s.script.extend(actions));
    }

    /// Takes the control plane off the network (refusing and cutting
    /// connections) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.shared.proxy.set_down(down);
    }

    /// Waits until `cond` holds, failing the test after [`WAIT`].
    pub async fn wait_until(&self, what: &str, cond: impl Fn(&State) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.shared.changed.notified();
            if cond(&self.shared.state.lock().unwrap()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting until {what}");
            }
        }
    }
}

struct Service {
    shared: Arc<Shared>,
}

impl Service {
    fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let metadata = request.metadata();
        let version = metadata
            .get(API_VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let token = metadata
            .get(AUTHORIZATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .map(str::to_owned);
        let mut state = self.shared.state.lock().unwrap();
        state.versions.push(version.clone());
        if token.as_deref() != Some(state.token.as_str()) {
            state.unauthenticated += 1;
            drop(state);
            self.shared.changed.notify_waiters();
            return Err(Status::unauthenticated("unknown or revoked agent token"));
        }
        if version != "2.7" {
            return Err(Status::failed_precondition(format!("agent api {version}")));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl AgentApi for Service {
    async fn get_manifest(
        &self,
        request: Request<agentapi::GetManifestRequest>,
    ) -> Result<Response<agentapi::Manifest>, Status> {
        self.check(&request)?;
        let mut state = self.shared.state.lock().unwrap();
        state.manifest_calls += 1;
        let manifest = state.manifest.clone();
        drop(state);
        self.shared.changed.notify_waiters();
        Ok(Response::new(manifest))
    }

    async fn report_boundary_logs(
        &self,
        request: Request<agentapi::ReportBoundaryLogsRequest>,
    ) -> Result<Response<agentapi::ReportBoundaryLogsResponse>, Status> {
        self.check(&request)?;
        let request = request.into_inner();
        let records: usize = request
            .batches
            .iter()
            .map(|b| b.logs.as_ref().map_or(0, |l| l.logs.len()))
            .sum();
        let action = {
            let mut state = self.shared.state.lock().unwrap();
            state.calls.push(request.clone());
            state.script.pop_front().unwrap_or(Action::Accept)
        };
        self.shared.changed.notify_waiters();
        if let Action::Fail(code) = action {
            return Err(Status::new(code, "scripted failure"));
        }
        if records > 1000 {
            return Err(Status::invalid_argument(format!(
                "{records} records in one call"
            )));
        }
        let mut results = Vec::new();
        {
            let mut state = self.shared.state.lock().unwrap();
            for batch in &request.batches {
                IngestBatch::try_from(batch.clone())
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                *state.deliveries.entry(batch.batch_id.clone()).or_default() += 1;
                let already = state.committed.contains_key(&batch.batch_id);
                if !already {
                    state
                        .committed
                        .insert(batch.batch_id.clone(), batch.clone());
                    state.commit_order.push(batch.batch_id.clone());
                }
                results.push(agentapi::BatchResult {
                    batch_id: batch.batch_id.clone(),
                    stored: if already {
                        0
                    } else {
                        batch.logs.as_ref().map_or(0, |l| l.logs.len() as u32)
                    },
                    already_committed: already,
                    ..Default::default()
                });
            }
        }
        self.shared.changed.notify_waiters();
        if action == Action::CommitThenDrop {
            self.shared.proxy.cut();
            std::future::pending::<()>().await;
        }
        Ok(Response::new(agentapi::ReportBoundaryLogsResponse {
            results,
        }))
    }
}

/// Switches of the proxy.
#[derive(Default)]
struct ProxyControl {
    down: std::sync::atomic::AtomicBool,
    generation: Mutex<u64>,
    cut: Notify,
}

impl ProxyControl {
    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        if down {
            self.cut();
        }
    }

    fn cut(&self) {
        *self.generation.lock().unwrap() += 1;
        self.cut.notify_waiters();
    }
}

async fn run_proxy(front: TcpListener, backend: SocketAddr, control: Arc<ProxyControl>) {
    loop {
        let Ok((mut inbound, _)) = front.accept().await else {
            continue;
        };
        if control.down.load(std::sync::atomic::Ordering::SeqCst) {
            // Refused: closed at once.
            drop(inbound);
            continue;
        }
        let control = control.clone();
        let generation = *control.generation.lock().unwrap();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(backend).await else {
                return;
            };
            let cut = control.cut.notified();
            if *control.generation.lock().unwrap() != generation {
                return;
            }
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                () = cut => {}
            }
        });
    }
}

/// Polls `condition` (state another task changes, which offers nothing to
/// wait on) until it holds, failing after [`WAIT`] with `what`.
pub async fn eventually_sync(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// --- socket clients ---------------------------------------------------------

/// A record with a recognizable URL.
pub fn log(seq: i32, url: &str) -> BoundaryLog {
    BoundaryLog {
        allowed: seq % 2 == 0,
        time: Some(wire::Timestamp {
            seconds: 1_765_227_526,
            nanos: seq,
        }),
        resource: Some(boundary_log::Resource::HttpRequest(
            boundary_log::HttpRequest {
                method: "GET".into(),
                url: url.into(),
                matched_rule: String::new(),
            },
        )),
        sequence_number: seq,
    }
}

/// A logs request of `urls`, numbered from `first_seq`.
pub fn request(session: &str, first_seq: i32, urls: &[String]) -> ReportBoundaryLogsRequest {
    ReportBoundaryLogsRequest {
        logs: urls
            .iter()
            .enumerate()
            .map(|(i, u)| log(first_seq + i as i32, u))
            .collect(),
        session_id: session.into(),
        confined_process_name: "curl".into(),
        ..Default::default()
    }
}

/// URLs `https://{prefix}/{i}` for `range`.
pub fn urls(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("https://{prefix}/{i}")).collect()
}

pub fn url_of(log: &BoundaryLog) -> String {
    match &log.resource {
        Some(boundary_log::Resource::HttpRequest(r)) => r.url.clone(),
        None => String::new(),
    }
}

/// One encoded frame.
pub fn frame(tag: Tag, frame: &Frame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(tag, frame, &mut buf).unwrap();
    buf.to_vec()
}

/// A tag-2 logs frame.
pub fn logs_frame(request: ReportBoundaryLogsRequest) -> Vec<u8> {
    frame(Tag::Envelope, &Frame::Logs(request))
}

/// Connects to the agent's socket.
pub async fn connect(path: &Path) -> UnixStream {
    UnixStream::connect(path).await.unwrap()
}

/// Writes bytes and closes the write side.
pub async fn send_and_close(path: &Path, bytes: &[u8]) {
    let mut stream = connect(path).await;
    stream.write_all(bytes).await.unwrap();
    stream.shutdown().await.unwrap();
}

/// A client in Warden's acknowledged mode.
pub struct AckClient {
    write: tokio::net::unix::OwnedWriteHalf,
    read: tokio_util::codec::FramedRead<
        tokio::net::unix::OwnedReadHalf,
        warden_proto::codec::FrameCodec,
    >,
}

impl AckClient {
    /// Connects and asks for acknowledgements; panics unless accepted.
    pub async fn connect(path: &Path) -> AckClient {
        let (read, mut write) = connect(path).await.into_split();
        let ask = frame(
            Tag::AckRequest,
            &Frame::AckRequest(wire::AckRequest { version: 1 }),
        );
        write.write_all(&ask).await.unwrap();
        let mut client = AckClient {
            write,
            read: tokio_util::codec::FramedRead::new(read, warden_proto::codec::FrameCodec),
        };
        match client.next().await {
            Some(Frame::AckAccepted(accepted)) => assert_eq!(accepted.version, 1),
            other => panic!("expected AckAccepted, got {other:?}"),
        }
        client
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    /// The next frame from the agent (`None` at the end of the stream).
    pub async fn next(&mut self) -> Option<Frame> {
        use futures::StreamExt;
        let item = tokio::time::timeout(WAIT, self.read.next())
            .await
            .expect("timed out waiting for the agent");
        item.map(|r| {
            r.expect("a well-formed frame")
                .expect("a valid message")
                .frame
        })
    }

    /// The next acknowledgement.
    pub async fn ack(&mut self) -> wire::FrameAck {
        match self.next().await {
            Some(Frame::FrameAck(ack)) => ack,
            other => panic!("expected a FrameAck, got {other:?}"),
        }
    }
}
