//! The agent API over gRPC: limits, and the translation between wire
//! messages and the ingest path. The protocol version and the agent token
//! are checked before the body is read, by [`crate::agent_auth`].
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
use tonic::{Code, Status};
use warden_proto::domain::{IngestBatch, Manifest};
use warden_proto::wire::agentapi::{
    self, BatchResult, GetManifestRequest, ReportBoundaryLogsRequest, ReportBoundaryLogsResponse,
    agent_api_server::{AgentApi, AgentApiServer},
};
use warden_store::{IngestRequest, Store, StoreError};

use crate::agent_auth::AuthenticatedAgent;
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
}

/// The agent that [`AgentAuth`](crate::agent_auth::AgentAuth) authenticated
/// for this call, before its body was read.
fn authenticated<T>(request: &tonic::Request<T>) -> Result<Manifest, Status> {
    request
        .extensions()
        .get::<AuthenticatedAgent>()
        .map(|a| a.0.clone())
        .ok_or_else(|| Status::unauthenticated("missing agent token (authorization: Bearer ...)"))
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
        let manifest = authenticated(&request)?;
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
        let manifest = authenticated(&request)?;
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
