//! OTLP logs: one `LogRecord` per record, in the `opentelemetry-proto`
//! types, sent over gRPC (tonic) or HTTP with a protobuf body.
//!
//! The mapping (also in `docs/exports.md`): severity INFO for an allowed
//! request and WARN for a denied one; the OpenTelemetry semantic-convention
//! attributes `http.request.method`, `url.full`, `server.address`,
//! `server.port`; everything else Warden knows under `warden.*`, the record
//! id (`warden.record.id`) included so a receiver can drop repeats; the
//! resource says `service.name=warden`.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use warden_proto::domain::Decision;

use super::SinkError;
use super::record::ExportRecord;

/// How long one delivery may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(30);

/// OTLP's transport (`--export-otlp-protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// Protobuf bodies POSTed to the logs endpoint (`/v1/logs`).
    #[default]
    HttpProtobuf,
    /// The `LogsService/Export` gRPC call.
    Grpc,
}

impl OtlpProtocol {
    /// Reads `http/protobuf` or `grpc`.
    pub fn parse(s: &str) -> Result<OtlpProtocol, String> {
        match s {
            "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
            "grpc" => Ok(OtlpProtocol::Grpc),
            other => Err(format!(
                "{other:?} is not an OTLP protocol: use http/protobuf or grpc"
            )),
        }
    }
}

/// The export request for these records.
pub fn request(records: &[ExportRecord<'_>]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![string("service.name", "warden")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "warden.boundary".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                log_records: records.iter().map(log_record).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// One record's `LogRecord`.
pub fn log_record(r: &ExportRecord<'_>) -> LogRecord {
    let (severity, text) = match r.decision {
        Decision::Allow => (SeverityNumber::Info, "INFO"),
        Decision::Deny => (SeverityNumber::Warn, "WARN"),
    };
    let mut attributes = vec![
        string("http.request.method", r.method),
        string("url.full", r.url),
    ];
    if let Some((host, port)) = r.server() {
        attributes.push(string("server.address", &host));
        if let Some(port) = port {
            attributes.push(int("server.port", i64::from(port)));
        }
    }
    attributes.extend([
        int("warden.record.id", r.id),
        string("warden.decision", r.decision.as_str()),
        string("warden.workspace.id", &r.workspace_id.to_string()),
        string("warden.workspace.name", r.workspace_name),
        string("warden.owner", r.workspace_owner),
        string("warden.agent.name", r.agent_name),
    ]);
    if !r.matched_rule.is_empty() {
        attributes.push(string("warden.rule", r.matched_rule));
    }
    if let Some(session) = r.session_id {
        attributes.push(string("warden.session.id", session));
        attributes.push(int("warden.sequence", i64::from(r.sequence_number)));
    }
    if !r.process.is_empty() {
        attributes.push(string("warden.process", r.process));
    }
    attributes.extend([
        int("warden.peer.uid", i64::from(r.peer.uid)),
        int("warden.peer.gid", i64::from(r.peer.gid)),
        int("warden.peer.pid", i64::from(r.peer.pid)),
    ]);
    if !r.peer.comm.is_empty() {
        attributes.push(string("warden.peer.comm", r.peer.comm));
    }
    if !r.peer.exe.is_empty() {
        attributes.push(string("warden.peer.exe", r.peer.exe));
    }
    if let Some(digest) = r.policy_digest {
        attributes.push(string("warden.policy.digest", digest));
    }
    if let Some(bytes) = r.url_original_bytes {
        attributes.push(int(
            "warden.url.original_bytes",
            i64::try_from(bytes).unwrap_or(i64::MAX),
        ));
    }
    if r.conflict {
        attributes.push(KeyValue {
            key: "warden.conflict".into(),
            value: Some(AnyValue {
                value: Some(Value::BoolValue(true)),
            }),
            ..Default::default()
        });
    }
    LogRecord {
        time_unix_nano: r.event_time.map_or(0, unix_nanos),
        observed_time_unix_nano: unix_nanos(r.received_at),
        severity_number: severity as i32,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(format!(
                "{} {} {}",
                r.decision.as_str(),
                r.method,
                r.url
            ))),
        }),
        attributes,
        event_name: "warden.boundary.request".into(),
        ..Default::default()
    }
}

fn unix_nanos(t: jiff::Timestamp) -> u64 {
    u64::try_from(t.as_nanosecond()).unwrap_or(0)
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// Delivers export requests to one OTLP endpoint.
#[derive(Debug)]
pub enum OtlpClient {
    /// `POST` to the logs endpoint.
    Http(HttpTarget),
    /// The gRPC `Export` call on a channel that reconnects by itself
    /// (made at the first call: making it needs the runtime).
    Grpc {
        /// Where to.
        endpoint: Box<Endpoint>,
        /// The client, once made.
        client: Option<LogsServiceClient<Channel>>,
    },
}

/// Where OTLP/HTTP requests go.
pub struct HttpTarget {
    uri: Uri,
    host: String,
    port: u16,
    authority: String,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTarget")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl OtlpClient {
    /// A client for `url` (the full logs endpoint for HTTP, such as
    /// `http://collector:4318/v1/logs`; `http://collector:4317` for gRPC),
    /// checked but not connected yet. `https://` URLs trust the system's
    /// roots.
    pub fn new(url: &str, protocol: OtlpProtocol) -> Result<OtlpClient, String> {
        let uri: Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{url:?}: the scheme must be http or https")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("{url:?} has no host"))?
            .to_owned();
        match protocol {
            OtlpProtocol::Grpc => {
                let mut endpoint = Endpoint::from_shared(url.to_owned())
                    .map_err(|e| format!("{url:?}: {e}"))?
                    .connect_timeout(Duration::from_secs(10))
                    .timeout(TIMEOUT);
                if https {
                    endpoint = endpoint
                        .tls_config(ClientTlsConfig::new().with_native_roots())
                        .map_err(|e| format!("{url:?}: {e}"))?;
                }
                Ok(OtlpClient::Grpc {
                    endpoint: Box::new(endpoint),
                    client: None,
                })
            }
            OtlpProtocol::HttpProtobuf => {
                let tls = if https {
                    let config = warden_api::tls::client_config(None)
                        .map_err(|e| format!("tls for {url:?}: {e}"))?;
                    Some(TlsConnector::from(config))
                } else {
                    None
                };
                let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
                Ok(OtlpClient::Http(HttpTarget {
                    authority: format!("{host}:{port}"),
                    host: host.trim_matches(['[', ']']).to_owned(),
                    port,
                    uri,
                    tls,
                }))
            }
        }
    }

    /// Sends one request; an error means it may not have arrived.
    pub async fn send(&mut self, request: ExportLogsServiceRequest) -> Result<(), SinkError> {
        match self {
            OtlpClient::Grpc { endpoint, client } => {
                let client =
                    client.get_or_insert_with(|| LogsServiceClient::new(endpoint.connect_lazy()));
                let answer = client
                    .export(request)
                    .await
                    .map_err(|status| SinkError::Refused(format!("grpc {status}")))?;
                rejected(
                    answer
                        .into_inner()
                        .partial_success
                        .map(|p| p.rejected_log_records),
                )
            }
            OtlpClient::Http(target) => {
                tokio::time::timeout(TIMEOUT, target.post(request.encode_to_vec()))
                    .await
                    .map_err(|_| SinkError::Timeout(TIMEOUT))?
            }
        }
    }
}

/// A receiver that says it rejected records has not taken them: sending
/// again is the only way not to lose them.
fn rejected(count: Option<i64>) -> Result<(), SinkError> {
    match count {
        Some(n) if n > 0 => Err(SinkError::Refused(format!(
            "the receiver rejected {n} log records"
        ))),
        _ => Ok(()),
    }
}

impl HttpTarget {
    async fn post(&self, body: Vec<u8>) -> Result<(), SinkError> {
        let request = Request::post(self.uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SinkError::Refused(format!("cannot form the request: {e}")))?;
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(SinkError::Io)?;
        let (status, body) = match &self.tls {
            None => exchange(stream, request).await?,
            Some(connector) => {
                let name =
                    rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(|_| {
                        SinkError::Refused(format!("{:?} is not a tls name", self.host))
                    })?;
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(SinkError::Io)?;
                exchange(stream, request).await?
            }
        };
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(SinkError::Refused(format!(
                "http {status}: {}",
                text.trim()
            )));
        }
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
        let answer = ExportLogsServiceResponse::decode(body).unwrap_or_default();
        rejected(answer.partial_success.map(|p| p.rejected_log_records))
    }
}

async fn exchange<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), SinkError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| SinkError::Refused(format!("http: {e}"));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(http)?
        .to_bytes();
    Ok((status, body))
}
