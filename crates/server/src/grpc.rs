//! The agent API over gRPC: the protocol version check, agent
//! authentication, limits, and the translation between wire messages and the
//! ingest path.
//!
//! Failures the caller caused (no token, wrong version, too many records)
//! are logged once as a warning by [`observe`], which also counts every
//! failure by code; failures of the control plane itself are logged at error
//! level where they happen, with their cause.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use jiff::Timestamp;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use warden_proto::api::{API_VERSION_HEADER, AUTHORIZATION_HEADER, ApiVersion, bearer_token};
use warden_proto::domain::{IngestBatch, Manifest};
use warden_proto::wire::agentapi::{
    self, BatchResult, GetManifestRequest, ReportBoundaryLogsRequest, ReportBoundaryLogsResponse,
    agent_api_server::{AgentApi, AgentApiServer},
};
use warden_store::{IngestRequest, Store, StoreError};

use crate::auth::{agent_of_token, token_matches};
use crate::config::Limits;
use crate::ingest::{IngestError, Ingestor};
use crate::metrics::{Metrics, RpcLabels};

/// The peer address of a connection, put into every request's extensions by
/// the server.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// The AgentApi service.
pub struct AgentService {
    store: Arc<dyn Store>,
    ingestor: Arc<Ingestor>,
    limits: Limits,
}

impl AgentService {
    pub fn new(store: Arc<dyn Store>, ingestor: Arc<Ingestor>, limits: Limits) -> AgentService {
        AgentService {
            store,
            ingestor,
            limits,
        }
    }

    /// The tonic server for this service, with the message-size cap.
    pub fn into_server(self) -> AgentApiServer<AgentService> {
        let max = self.limits.max_message_bytes;
        AgentApiServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    /// Checks the version and the token; returns the agent's identity.
    async fn authenticate(&self, metadata: &MetadataMap) -> Result<Manifest, Status> {
        check_version(metadata)?;
        let token = metadata
            .get(AUTHORIZATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(|| {
                Status::unauthenticated("missing agent token (authorization: Bearer ...)")
            })?;
        let agent = agent_of_token(token)
            .ok_or_else(|| Status::unauthenticated("malformed agent token"))?;
        let credentials = self
            .store
            .agent_credentials(agent)
            .await
            .map_err(|e| store_failure("authenticating an agent", e))?;
        match credentials {
            Some(c) if token_matches(token, &c.token_hash) => Ok(c.manifest),
            _ => Err(Status::unauthenticated("unknown or revoked agent token")),
        }
    }
}

/// The version check: 2.7 and later within major 2.
fn check_version(metadata: &MetadataMap) -> Result<(), Status> {
    let ours = ApiVersion::CURRENT;
    let accepted = format!(
        "this control plane speaks agent api {ours} and accepts {} and later within major {}",
        ApiVersion::MINIMUM,
        ApiVersion::MINIMUM.major
    );
    let Some(value) = metadata.get(API_VERSION_HEADER) else {
        return Err(Status::failed_precondition(format!(
            "the call names no agent api version ({API_VERSION_HEADER}); {accepted}"
        )));
    };
    let text = value.to_str().unwrap_or("");
    let version: ApiVersion = text.parse().map_err(|_| {
        let shown: String = text.chars().take(32).collect();
        Status::failed_precondition(format!(
            "agent api version {shown:?} is not MAJOR.MINOR; {accepted}"
        ))
    })?;
    if !version.is_supported() {
        return Err(Status::failed_precondition(format!(
            "agent api version {version} is not supported: {accepted}"
        )));
    }
    Ok(())
}

/// Logs a failure of the control plane once, with its cause, and gives the
/// caller a status without internals.
fn store_failure(doing: &'static str, e: StoreError) -> Status {
    match e {
        StoreError::Closed => Status::unavailable("the control plane is shutting down"),
        e => {
            tracing::error!(error = %e.chain(), "{doing} failed");
            Status::internal(format!("{doing} failed; see the control plane's log"))
        }
    }
}

#[tonic::async_trait]
impl AgentApi for AgentService {
    async fn get_manifest(
        &self,
        request: tonic::Request<GetManifestRequest>,
    ) -> Result<tonic::Response<agentapi::Manifest>, Status> {
        let manifest = self.authenticate(request.metadata()).await?;
        if let Err(e) = self
            .store
            .record_contact(manifest.agent_id, Timestamp::now())
            .await
        {
            // The manifest is still right; only "last contact" is stale.
            tracing::warn!(error = %e.chain(), agent = %manifest.agent_id, "could not note an agent's contact");
        }
        Ok(tonic::Response::new(agentapi::Manifest::from(&manifest)))
    }

    async fn report_boundary_logs(
        &self,
        request: tonic::Request<ReportBoundaryLogsRequest>,
    ) -> Result<tonic::Response<ReportBoundaryLogsResponse>, Status> {
        let manifest = self.authenticate(request.metadata()).await?;
        let at = Timestamp::now();
        let request = request.into_inner();
        let records: usize = request
            .batches
            .iter()
            .map(|b| b.logs.as_ref().map_or(0, |l| l.logs.len()))
            .sum();
        let max = self.limits.max_records_per_call;
        if records > max {
            return Err(Status::invalid_argument(format!(
                "the call carries {records} records; at most {max} per call"
            )));
        }
        let mut batches = Vec::with_capacity(request.batches.len());
        for (i, batch) in request.batches.into_iter().enumerate() {
            // A UUID is 36 characters; do not echo a huge id back.
            if batch.batch_id.len() > 64 {
                return Err(Status::invalid_argument(format!(
                    "batch {i}: the batch id is not a UUID"
                )));
            }
            let batch = IngestBatch::try_from(batch)
                .map_err(|e| Status::invalid_argument(format!("batch {i}: {e}")))?;
            batches.push(batch);
        }
        let agent_id = manifest.agent_id;
        let outcome = self
            .ingestor
            .ingest(
                manifest,
                IngestRequest {
                    agent_id,
                    at,
                    batches,
                },
            )
            .await
            .map_err(|e| match e {
                IngestError::Store(e) => store_failure("committing boundary records", e),
                IngestError::Task(e) => {
                    tracing::error!(error = %e, "an ingest task failed");
                    Status::internal(
                        "committing boundary records failed; see the control plane's log",
                    )
                }
            })?;
        let results = outcome
            .batches
            .iter()
            .map(|b| BatchResult {
                batch_id: b.batch_id.to_string(),
                stored: b.stored(),
                duplicates: b.duplicates,
                conflicts: b.conflicts(),
                rejected: b.rejected,
                already_committed: b.already_committed,
            })
            .collect();
        Ok(tonic::Response::new(ReportBoundaryLogsResponse { results }))
    }
}

/// The method name of a gRPC path, as a bounded label value.
fn method_label(path: &str) -> &'static str {
    match path.rsplit('/').next() {
        Some("GetManifest") => "GetManifest",
        Some("ReportBoundaryLogs") => "ReportBoundaryLogs",
        _ => "unknown",
    }
}

fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// Middleware on the gRPC routes: counts failed calls by method and code and
/// logs one warning for each call the caller got wrong. The status is read
/// from the response, so failures tonic produces itself (a message over the
/// size cap, an undecodable message, an unknown method) are seen too.
pub async fn observe(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = method_label(request.uri().path());
    let peer = request.extensions().get::<PeerAddr>().map(|p| p.0);
    let response = next.run(request).await;
    let status = response.extensions().get::<Status>().cloned().or_else(|| {
        // A status in the headers (trailers-only response) without the
        // extension: take the code alone.
        let code = response
            .headers()
            .get("grpc-status")?
            .to_str()
            .ok()?
            .parse::<i32>()
            .ok()?;
        Some(Status::new(Code::from_i32(code), ""))
    });
    if let Some(status) = status.filter(|s| s.code() != Code::Ok) {
        let code = status.code();
        metrics
            .rpc_errors
            .get_or_create(&RpcLabels {
                method,
                code: code_label(code),
            })
            .inc();
        let ours = matches!(
            code,
            Code::Internal | Code::Unavailable | Code::Unknown | Code::DataLoss
        );
        if !ours {
            tracing::warn!(
                method,
                peer = ?peer,
                code = code_label(code),
                reason = status.message(),
                "refused an agent api call"
            );
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(version: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(v) = version {
            m.insert(API_VERSION_HEADER, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn versions_are_checked_and_both_named() {
        assert!(check_version(&metadata(Some("2.7"))).is_ok());
        assert!(check_version(&metadata(Some("2.9"))).is_ok());
        for bad in [Some("2.6"), Some("3.0"), Some("x"), None] {
            let status = check_version(&metadata(bad)).unwrap_err();
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert!(status.message().contains("2.7"), "{}", status.message());
            if let Some(v) = bad {
                assert!(status.message().contains(v), "{}", status.message());
            }
        }
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(
            method_label("/warden.agentapi.v2.AgentApi/GetManifest"),
            "GetManifest"
        );
        assert_eq!(method_label("/warden.agentapi.v2.AgentApi/Nope"), "unknown");
        assert_eq!(code_label(Code::Unauthenticated), "unauthenticated");
    }
}
