//! The OTLP export against real receivers in the test: a tonic
//! `LogsService` server and an HTTP/protobuf endpoint, both decoding with
//! the same `opentelemetry-proto` types. Every record arrives once with the
//! mapping of `docs/exports.md`, and an HTTP receiver that is down for ten
//! seconds loses nothing: the exporter backs off, counts failures and lag,
//! and delivers everything once the receiver is back.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use warden_server::LineFormat;
use warden_server::export::otlp::OtlpProtocol;
use warden_server::export::{ExportSettings, SinkTarget};

/// A log record and its resource's attributes.
type Got = (Vec<(String, String)>, LogRecord);

/// What a receiver got: every log record with its resource's attributes.
#[derive(Default)]
struct Received {
    records: Mutex<Vec<Got>>,
    count: watch::Sender<usize>,
}

impl Received {
    fn take(&self, request: ExportLogsServiceRequest) {
        let mut records = self.records.lock().unwrap();
        for resource_logs in request.resource_logs {
            let resource: Vec<(String, String)> = resource_logs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .map(|kv| {
                    (
                        kv.key.clone(),
                        text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect();
            for scope in resource_logs.scope_logs {
                for record in scope.log_records {
                    records.push((resource.clone(), record));
                }
            }
        }
        self.count.send_replace(records.len());
    }

    async fn wait_for(&self, n: usize) -> Vec<Got> {
        let mut rx = self.count.subscribe();
        let arrived = tokio::time::timeout(DEADLINE, rx.wait_for(|c| *c >= n)).await;
        assert!(
            arrived.is_ok(),
            "waited for {n} log records, got {}",
            *self.count.borrow()
        );
        self.records.lock().unwrap().clone()
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(n)) => n.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn attr(record: &LogRecord, key: &str) -> Option<String> {
    record
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
}

struct Grpc(Arc<Received>);

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.take(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

async fn grpc_receiver(received: Arc<Received>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LogsServiceServer::new(Grpc(received)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

/// An OTLP/HTTP receiver on `listener` until `stop`: decodes each POST to
/// `/v1/logs` and answers with an empty success.
fn http_receiver(listener: TcpListener, received: Arc<Received>, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted.unwrap(),
                () = stop.cancelled() => return,
            };
            let received = Arc::clone(&received);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let received = Arc::clone(&received);
                        async move {
                            assert_eq!(request.uri().path(), "/v1/logs");
                            assert_eq!(request.headers()["content-type"], "application/x-protobuf");
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            received.take(ExportLogsServiceRequest::decode(body).unwrap());
                            let answer = ExportLogsServiceResponse::default().encode_to_vec();
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(answer),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn export_config(dir: &std::path::Path, target: SinkTarget) -> warden_server::Config {
    let mut config = config(dir, LineFormat::Text);
    config.exports = ExportSettings {
        sinks: vec![target],
        poll: Duration::from_millis(200),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_secs(1),
        ..ExportSettings::default()
    };
    config
}

/// Sends `n` records (every third allowed by a rule) in one batch of a
/// session; returns how many.
async fn report(server: &Server, workspace: &str, first: i32, n: i32) -> usize {
    let token = server.workspace(workspace).await.agent_token;
    let mut agent = server.agent(&token).await;
    let logs = (first..first + n)
        .map(|s| {
            if s % 3 == 0 {
                log(
                    s,
                    true,
                    "POST",
                    &format!("https://api.example.com:8443/v{s}?q=1"),
                    "domain=api.example.com",
                )
            } else {
                log(s, false, "GET", &format!("https://example.com/{s}"), "")
            }
        })
        .collect();
    agent
        .report(vec![batch(Some(SESSION), logs)])
        .await
        .unwrap();
    n as usize
}

fn check_mapping(resource: &[(String, String)], record: &LogRecord) {
    assert!(
        resource.contains(&("service.name".into(), "warden".into())),
        "{resource:?}"
    );
    let decision = attr(record, "warden.decision").unwrap();
    let (severity, text) = if decision == "allow" {
        (9, "INFO")
    } else {
        (13, "WARN")
    };
    assert_eq!(
        (record.severity_number, record.severity_text.as_str()),
        (severity, text)
    );
    let url = attr(record, "url.full").unwrap();
    let seq: i32 = attr(record, "warden.sequence").unwrap().parse().unwrap();
    assert_eq!(attr(record, "warden.session.id").as_deref(), Some(SESSION));
    assert_eq!(attr(record, "warden.owner").as_deref(), Some("alice"));
    assert_eq!(attr(record, "warden.agent.name").as_deref(), Some("main"));
    assert_eq!(
        attr(record, "warden.peer.exe").as_deref(),
        Some("/usr/bin/boundary")
    );
    assert_eq!(attr(record, "warden.peer.pid").as_deref(), Some("77"));
    assert_eq!(attr(record, "warden.process").as_deref(), Some("claude"));
    assert!(attr(record, "warden.workspace.id").is_some());
    assert!(attr(record, "warden.workspace.name").is_some());
    assert!(
        attr(record, "warden.record.id")
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    // 2025-12-08T20:58:46.093456789Z and the receive time.
    assert_eq!(record.time_unix_nano, 1_765_227_526_093_456_789);
    assert!(record.observed_time_unix_nano > 0);
    if decision == "allow" {
        assert_eq!(attr(record, "http.request.method").as_deref(), Some("POST"));
        assert_eq!(url, format!("https://api.example.com:8443/v{seq}?q=1"));
        assert_eq!(
            attr(record, "server.address").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(attr(record, "server.port").as_deref(), Some("8443"));
        assert_eq!(
            attr(record, "warden.rule").as_deref(),
            Some("domain=api.example.com")
        );
    } else {
        assert_eq!(attr(record, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(url, format!("https://example.com/{seq}"));
        assert_eq!(
            attr(record, "server.address").as_deref(),
            Some("example.com")
        );
        assert_eq!(attr(record, "server.port").as_deref(), Some("443"));
        assert_eq!(attr(record, "warden.rule"), None);
    }
}

/// Every record id exactly once.
fn ids(records: &[Got]) -> BTreeSet<i64> {
    let ids: Vec<i64> = records
        .iter()
        .map(|(_, r)| attr(r, "warden.record.id").unwrap().parse().unwrap())
        .collect();
    let set: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(set.len(), ids.len(), "repeated records: {ids:?}");
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_receiver_gets_every_record_once_with_the_mapping() {
    let received = Arc::new(Received::default());
    let receiver = grpc_receiver(Arc::clone(&received)).await;
    let dir = tempfile::tempdir().unwrap();
    let target = SinkTarget::Otlp {
        url: format!("http://{receiver}"),
        protocol: OtlpProtocol::Grpc,
    };
    let server = Server::start_with(
        export_config(dir.path(), target),
        dir.path(),
        Capture::new(),
    )
    .await;
    let n = report(&server, "dev", 0, 30).await + report(&server, "ops", 0, 12).await;
    let records = received.wait_for(n).await;
    assert_eq!(ids(&records).len(), n);
    for (resource, record) in &records {
        check_mapping(resource, record);
    }
    // The counter moves once the exporter saw the receiver's answer, a
    // moment after the receiver has the records.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, metrics) = server.get("/metrics").await;
        let delivered = metric(&metrics, "warden_export_records_total{sink=\"otlp\"}");
        if delivered == Some(n as f64) {
            assert_eq!(
                metric(&metrics, "warden_export_lease_held{sink=\"otlp\"}"),
                Some(1.0)
            );
            break;
        }
        assert!(Instant::now() < deadline, "delivered {delivered:?} of {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_receiver_down_for_ten_seconds_loses_nothing() {
    let received = Arc::new(Received::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = listener.local_addr().unwrap();
    let up = CancellationToken::new();
    http_receiver(listener, Arc::clone(&received), up.clone());
    let dir = tempfile::tempdir().unwrap();
    let target = SinkTarget::Otlp {
        url: format!("http://{receiver}/v1/logs"),
        protocol: OtlpProtocol::HttpProtobuf,
    };
    let server = Server::start_with(
        export_config(dir.path(), target),
        dir.path(),
        Capture::new(),
    )
    .await;
    let before = report(&server, "dev", 0, 20).await;
    let records = received.wait_for(before).await;
    for (resource, record) in &records {
        check_mapping(resource, record);
    }

    // The receiver goes away (connections refused) for ten seconds while
    // records keep coming.
    up.cancel();
    let down_since = Instant::now();
    let mut during = 0;
    for round in 0..5 {
        during += report(&server, &format!("ws{round}"), 0, 10).await;
    }
    // The exporter notices: failed attempts and lag show on /metrics.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, metrics) = server.get("/metrics").await;
        let failures = metric(&metrics, "warden_export_failures_total{sink=\"otlp\"}").unwrap();
        let lag = metric(&metrics, "warden_export_lag_records{sink=\"otlp\"}").unwrap();
        if failures >= 2.0 && lag >= 1.0 {
            assert!(metric(&metrics, "warden_export_lag_seconds{sink=\"otlp\"}").unwrap() >= 0.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failures or lag noted: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The outage itself lasts ten seconds: that is the scenario, not a wait
    // for anything to happen.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down_since.elapsed())).await;
    assert_eq!(
        received.records.lock().unwrap().len(),
        before,
        "nothing arrives while down"
    );

    // Back on the same address: everything arrives, once.
    let listener = TcpListener::bind(receiver).await.unwrap();
    http_receiver(listener, Arc::clone(&received), CancellationToken::new());
    let records = received.wait_for(before + during).await;
    assert_eq!(ids(&records).len(), before + during);
    for (resource, record) in &records {
        check_mapping(resource, record);
    }
    // Lag goes back to zero once the exporter caught up.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, metrics) = server.get("/metrics").await;
        if metric(&metrics, "warden_export_lag_records{sink=\"otlp\"}") == Some(0.0) {
            assert_eq!(
                metric(&metrics, "warden_export_records_total{sink=\"otlp\"}"),
                Some((before + during) as f64)
            );
            break;
        }
        assert!(Instant::now() < deadline, "lag stayed: {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await.unwrap();
}
