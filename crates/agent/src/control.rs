//! The control plane connection: a lazily connected gRPC channel that
//! carries the token and the API version on every call, the classification
//! of failures (retry soon, retry slowly, give up on this request), the retry
//! schedule, and log lines that say when the link goes down and comes back
//! (once per transition, not once per attempt).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::{Buf, BufMut, Bytes};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};
use warden_proto::api::{API_VERSION_HEADER, AUTHORIZATION_HEADER, ApiVersion};
use warden_proto::domain::{BadManifest, Manifest};
use warden_proto::wire::agentapi::{self, agent_api_client::AgentApiClient};

use crate::token::Token;

/// The control plane could not be configured (bad URL or TLS settings).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The URL is not one a channel can use.
    #[error("control plane url {url:?}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The CA certificate cannot be read.
    #[error("reading the ca certificate {path}")]
    CaCert {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TLS cannot be set up.
    #[error("configuring tls for {url}")]
    Tls {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
}

impl ControlError {
    /// Every one of these is fixed by changing the configuration.
    pub fn is_usage(&self) -> bool {
        true
    }
}

/// One call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The token is revoked or unknown (the message is the control plane's).
    #[error("the control plane refused the agent token (revoked or unknown): {0}")]
    Unauthenticated(String),
    /// The agent may not do this.
    #[error("the control plane refused this agent: {0}")]
    PermissionDenied(String),
    /// The control plane does not speak this API version.
    #[error("the control plane does not serve agent api version {version}: {message}")]
    VersionRejected {
        /// What this agent speaks.
        version: ApiVersion,
        /// The control plane's message.
        message: String,
    },
    /// The request itself is refused; sending it again cannot help.
    #[error("the control plane refused the request as invalid ({code:?}): {message}")]
    Rejected {
        /// The gRPC code.
        code: Code,
        /// The control plane's message.
        message: String,
    },
    /// The call failed; a later one may succeed.
    #[error("control plane unavailable ({code:?}): {message}")]
    Unavailable {
        /// The gRPC code.
        code: Code,
        /// The message.
        message: String,
    },
    /// The manifest cannot be used.
    #[error("the control plane sent an unusable manifest")]
    BadManifest(#[from] BadManifest),
}

impl CallError {
    fn from_status(status: Status) -> CallError {
        let mut message = status.message().to_owned();
        if let Some(words) = refused_certificate(&status) {
            message = format!("{message}: {words}");
        }
        match status.code() {
            Code::Unauthenticated => CallError::Unauthenticated(message),
            Code::PermissionDenied => CallError::PermissionDenied(message),
            Code::FailedPrecondition => CallError::VersionRejected {
                version: ApiVersion::CURRENT,
                message,
            },
            // The request itself is wrong (or too large): sending it again
            // unchanged cannot help.
            code @ (Code::InvalidArgument | Code::OutOfRange) => {
                CallError::Rejected { code, message }
            }
            code => CallError::Unavailable { code, message },
        }
    }

    /// Failures an operator must fix (token, version): retried slowly and
    /// logged loudly every time.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            CallError::Unauthenticated(_)
                | CallError::PermissionDenied(_)
                | CallError::VersionRejected { .. }
        )
    }
}

/// When the call failed because the TLS handshake refused the control
/// plane's certificate: what is wrong, in words, and how to fix it (rustls
/// names it in a form only its authors read, e.g. `UnknownIssuer`). The
/// explanation is the CLI's (`warden_api::tls`), so both say the same.
fn refused_certificate(status: &Status) -> Option<String> {
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(words) = warden_api::tls::explain_handshake(io)
        {
            return Some(words);
        }
        cause = error.source();
    }
    None
}

/// Adds the token and the API version to every call.
#[derive(Clone)]
pub struct Auth {
    authorization: MetadataValue<Ascii>,
    version: MetadataValue<Ascii>,
}

impl Auth {
    fn new(token: &Token) -> Auth {
        // The config validated the token as visible ASCII, so this parses.
        let mut authorization: MetadataValue<Ascii> = format!("Bearer {}", token.expose())
            .parse()
            .unwrap_or_else(|_| MetadataValue::from_static(""));
        authorization.set_sensitive(true);
        let version = ApiVersion::CURRENT
            .to_string()
            .parse()
            .unwrap_or_else(|_| MetadataValue::from_static("2.7"));
        Auth {
            authorization,
            version,
        }
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let metadata = request.metadata_mut();
        metadata.insert(AUTHORIZATION_HEADER, self.authorization.clone());
        metadata.insert(API_VERSION_HEADER, self.version.clone());
        Ok(request)
    }
}

/// How long to wait between attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay after a failure; it doubles (with jitter) up to `max_delay`.
    pub min_delay: Duration,
    /// Longest delay.
    pub max_delay: Duration,
    /// Delay after a failure an operator must fix (revoked token, version).
    pub operator_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            operator_delay: Duration::from_secs(60),
        }
    }
}

/// The delays of one retry loop: capped exponential backoff with jitter,
/// and the slow fixed delay for failures an operator must fix.
pub struct Retry {
    policy: RetryPolicy,
    backoff: ExponentialBackoff,
}

impl Retry {
    /// Delays following `policy`.
    pub fn new(policy: RetryPolicy) -> Retry {
        Retry {
            policy,
            backoff: Self::build(policy),
        }
    }

    fn build(policy: RetryPolicy) -> ExponentialBackoff {
        // Without backon's `std` feature the jitter would use one fixed seed,
        // and every agent restarted by the same outage would retry in step.
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        ExponentialBuilder::new()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .without_max_times()
            .with_jitter()
            .with_jitter_seed(seed)
            .build()
    }

    /// The delay before the next attempt after `error`.
    pub fn delay_after(&mut self, error: &CallError) -> Duration {
        if error.needs_operator() {
            return self.policy.operator_delay;
        }
        self.backoff.next().unwrap_or(self.policy.max_delay)
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.backoff = Self::build(self.policy);
    }
}

type Client = AgentApiClient<InterceptedService<Channel, Auth>>;
type Raw = tonic::client::Grpc<InterceptedService<Channel, Auth>>;

/// A `ReportBoundaryLogsRequest` of spooled batches, sent as they are: its
/// encoding is each batch's bytes behind its field key and length (a
/// repeated message field is the concatenation of the encoded messages), so
/// nothing is decoded or re-encoded on the way out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawBatches(pub Vec<Bytes>);

impl prost::Message for RawBatches {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for batch in &self.0 {
            prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, buf);
            prost::encoding::encode_varint(batch.len() as u64, buf);
            buf.put_slice(batch);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Only ever encoded (by the agent); decoding keeps the batches'
        // bytes, which is what tests compare.
        match tag {
            1 => {
                let mut batch = Bytes::new();
                prost::encoding::bytes::merge(wire_type, &mut batch, buf, ctx)?;
                self.0.push(batch);
                Ok(())
            }
            _ => prost::encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.0
            .iter()
            .map(|b| 1 + prost::encoding::encoded_len_varint(b.len() as u64) + b.len())
            .sum()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// A handle on the control plane; cheap to clone (one shared channel).
#[derive(Clone)]
pub struct ControlPlane {
    client: Client,
    raw: Raw,
    url: Arc<str>,
    link: Arc<Link>,
}

impl ControlPlane {
    /// Prepares the channel; nothing connects until the first call, and the
    /// channel reconnects by itself after a failure.
    pub fn new(url: &str, token: &Token, ca_cert: Option<&Path>) -> Result<Self, ControlError> {
        let bad_url = |source| ControlError::BadUrl {
            url: url.to_owned(),
            source,
        };
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(bad_url)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        if url.to_ascii_lowercase().starts_with("https://") {
            let tls = match ca_cert {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|source| ControlError::CaCert {
                        path: path.to_owned(),
                        source,
                    })?;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|source| ControlError::Tls {
                    url: url.to_owned(),
                    source,
                })?;
        }
        let channel = InterceptedService::new(endpoint.connect_lazy(), Auth::new(token));
        let client = AgentApiClient::new(channel.clone());
        Ok(ControlPlane {
            client,
            raw: tonic::client::Grpc::new(channel),
            url: url.into(),
            link: Arc::new(Link::default()),
        })
    }

    /// Fetches the agent's manifest.
    pub async fn manifest(&self) -> Result<Manifest, CallError> {
        let result = self
            .client
            .clone()
            .get_manifest(agentapi::GetManifestRequest {})
            .await;
        let manifest = self.observe(result)?;
        Ok(Manifest::try_from(manifest)?)
    }

    /// Delivers encoded batches as they are; `Ok` means every batch named in
    /// the response is durably committed by the control plane.
    pub async fn report(
        &self,
        batches: RawBatches,
    ) -> Result<agentapi::ReportBoundaryLogsResponse, CallError> {
        let mut raw = self.raw.clone();
        let result = async {
            raw.ready()
                .await
                .map_err(|e| Status::unavailable(format!("the channel is not ready: {e}")))?;
            let mut request = Request::new(batches);
            request.extensions_mut().insert(tonic::GrpcMethod::new(
                "warden.agentapi.v2.AgentApi",
                "ReportBoundaryLogs",
            ));
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                "/warden.agentapi.v2.AgentApi/ReportBoundaryLogs",
            );
            raw.unary(request, path, tonic_prost::ProstCodec::default())
                .await
        }
        .await;
        self.observe(result)
    }

    fn observe<T>(&self, result: Result<tonic::Response<T>, Status>) -> Result<T, CallError> {
        match result {
            Ok(response) => {
                self.link.up(&self.url);
                Ok(response.into_inner())
            }
            Err(status) => {
                let error = CallError::from_status(status);
                self.link.failed(&self.url, &error);
                Err(error)
            }
        }
    }
}

/// Whether the last call failed, so that the link's state changes are
/// logged once each, while failures an operator must fix are logged at
/// every (slow) attempt.
#[derive(Default)]
struct Link {
    down: AtomicBool,
}

impl Link {
    fn up(&self, url: &str) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(url, "control plane reachable again");
        }
    }

    fn failed(&self, url: &str, error: &CallError) {
        let was_down = self.down.swap(true, Ordering::Relaxed);
        if error.needs_operator() {
            tracing::error!(
                url,
                "{}; still accepting and spooling records, retrying slowly",
                crate::chain::display(error)
            );
        } else if matches!(error, CallError::Rejected { .. }) {
            // Reported by the caller, which knows what was refused.
        } else if !was_down {
            tracing::warn!(
                url,
                "{}; accepting and spooling records until it is back",
                crate::chain::display(error)
            );
        } else {
            tracing::debug!(url, "{}", crate::chain::display(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let class = |code| CallError::from_status(Status::new(code, "m"));
        assert!(matches!(
            class(Code::Unauthenticated),
            CallError::Unauthenticated(_)
        ));
        assert!(class(Code::Unauthenticated).needs_operator());
        assert!(class(Code::FailedPrecondition).needs_operator());
        assert!(matches!(
            class(Code::InvalidArgument),
            CallError::Rejected { .. }
        ));
        assert!(matches!(
            class(Code::OutOfRange),
            CallError::Rejected { .. }
        ));
        for code in [
            Code::Unavailable,
            Code::Internal,
            Code::DeadlineExceeded,
            Code::Unknown,
        ] {
            assert!(
                matches!(class(code), CallError::Unavailable { .. }),
                "{code:?}"
            );
            assert!(!class(code).needs_operator());
        }
    }

    #[test]
    fn retry_delays_grow_to_the_cap_and_operator_failures_wait_long() {
        let policy = RetryPolicy {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            operator_delay: Duration::from_secs(60),
        };
        let mut retry = Retry::new(policy);
        let transient = CallError::Unavailable {
            code: Code::Unavailable,
            message: String::new(),
        };
        let delays: Vec<_> = (0..20).map(|_| retry.delay_after(&transient)).collect();
        assert!(delays[0] >= policy.min_delay && delays[0] <= 2 * policy.min_delay);
        // Jitter adds at most the delay itself on top of the cap.
        assert!(
            delays.iter().all(|d| *d <= 2 * policy.max_delay),
            "{delays:?}"
        );
        assert!(delays[19] >= policy.max_delay, "{delays:?}");
        let revoked = CallError::Unauthenticated(String::new());
        assert_eq!(retry.delay_after(&revoked), policy.operator_delay);
        retry.reset();
        assert!(retry.delay_after(&transient) <= 2 * policy.min_delay);
    }

    #[test]
    fn raw_batches_encode_as_the_request_message() {
        use prost::Message;
        let batches: Vec<agentapi::Batch> = (0..3)
            .map(|i| agentapi::Batch {
                batch_id: format!("b{i}"),
                ..Default::default()
            })
            .collect();
        let raw = RawBatches(
            batches
                .iter()
                .map(|b| Bytes::from(b.encode_to_vec()))
                .collect(),
        );
        let bytes = raw.encode_to_vec();
        assert_eq!(bytes.len(), raw.encoded_len());
        let decoded = agentapi::ReportBoundaryLogsRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.batches, batches);
        assert_eq!(
            bytes,
            agentapi::ReportBoundaryLogsRequest { batches }.encode_to_vec()
        );
    }

    #[test]
    fn every_call_carries_the_token_and_version() {
        let mut auth = Auth::new(&Token::new("tok"));
        let request = auth.call(Request::new(())).unwrap();
        let metadata = request.metadata();
        assert_eq!(metadata.get(AUTHORIZATION_HEADER).unwrap(), "Bearer tok");
        assert_eq!(metadata.get(API_VERSION_HEADER).unwrap(), "2.7");
        // Marked sensitive, so tonic's and hyper's debug output hide it.
        assert!(metadata.get(AUTHORIZATION_HEADER).unwrap().is_sensitive());
    }
}
