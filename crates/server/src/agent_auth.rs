//! Agent authentication in front of the agent API: the protocol version
//! and the agent token are checked from the call's headers (gRPC metadata)
//! before anything reads the request body, so that a caller without a valid
//! token never gets a 16 MiB message decoded, and garbage sent without a
//! token is refused as unauthenticated (not counted as the control plane's
//! internal error).
//!
//! [`AgentAuth`] wraps the tonic service. A call that passes carries the
//! agent's identity to the service as an [`AuthenticatedAgent`] extension,
//! and marks its connection as authenticated
//! ([`crate::connections::note_authenticated`]); a call that fails is
//! answered with its gRPC status at once, and its body is dropped unread.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderMap;
use tonic::Status;
use tonic::server::NamedService;
use warden_proto::api::{API_VERSION_HEADER, AUTHORIZATION_HEADER, ApiVersion, bearer_token};
use warden_proto::domain::Manifest;
use warden_store::{Store, StoreError, TokenHash};

use crate::access::identify;
use crate::auth::{agent_of_token, token_matches};
use crate::connections::note_authenticated;

/// The identity of the agent whose token a call carried, put into the
/// call's extensions by [`AgentAuth`].
#[derive(Clone, Debug)]
pub struct AuthenticatedAgent(pub Manifest);

/// The agent API service behind the version and token check.
#[derive(Clone)]
pub struct AgentAuth<S> {
    inner: S,
    store: Arc<dyn Store>,
    /// The bootstrap admin token's hash: an admin or auditor token is told
    /// `PERMISSION_DENIED` (valid, wrong role), anything else that is not a
    /// live agent token `UNAUTHENTICATED`.
    admin_token: TokenHash,
}

impl<S> AgentAuth<S> {
    /// `inner`, reachable only with a supported version and a valid agent
    /// token.
    pub fn new(inner: S, store: Arc<dyn Store>, admin_token: TokenHash) -> Self {
        AgentAuth {
            inner,
            store,
            admin_token,
        }
    }
}

impl<S: NamedService> NamedService for AgentAuth<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AgentAuth<S>
where
    S: tower::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let store = Arc::clone(&self.store);
        let admin_token = self.admin_token;
        Box::pin(async move {
            match authenticate(&*store, &admin_token, request.headers()).await {
                Ok(manifest) => {
                    note_authenticated(request.extensions());
                    request
                        .extensions_mut()
                        .insert(AuthenticatedAgent(manifest));
                    inner.call(request).await
                }
                // Answered here: the body is dropped unread.
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// Checks the version and the token; returns the agent's identity.
pub async fn authenticate(
    store: &dyn Store,
    admin_token: &TokenHash,
    headers: &HeaderMap,
) -> Result<Manifest, Status> {
    check_version(headers)?;
    let token = headers
        .get(AUTHORIZATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or_else(|| {
            Status::unauthenticated("missing agent token (authorization: Bearer ...)")
        })?;
    let failed = |e: StoreError| match e {
        StoreError::Closed => Status::unavailable("the control plane is shutting down"),
        e => {
            tracing::error!(error = %e, "authenticating an agent failed");
            Status::internal("authenticating an agent failed; see the control plane's log")
        }
    };
    let Some(agent) = agent_of_token(token) else {
        // An admin or auditor token is valid, for another role.
        return Err(
            match identify(store, admin_token, token).await.map_err(failed)? {
                Some(principal) => Status::permission_denied(format!(
                    "an {} token may not use the agent api; it takes a workspace's agent token",
                    principal.role.as_str()
                )),
                None => Status::unauthenticated("malformed agent token"),
            },
        );
    };
    let credentials = store.agent_credentials(agent).await.map_err(failed)?;
    match credentials {
        Some(c) if token_matches(token, &c.token_hash) => Ok(c.manifest),
        _ => Err(Status::unauthenticated("unknown or revoked agent token")),
    }
}

/// The version check: exactly 2.7 (`docs/boundary-wire.md`, "Agent API
/// version negotiation"), refusals naming both versions.
fn check_version(headers: &HeaderMap) -> Result<(), Status> {
    let ours = ApiVersion::CURRENT;
    let accepted = format!("server is at version {ours}");
    let Some(value) = headers.get(API_VERSION_HEADER) else {
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
    match version.refusal() {
        Some(why) => Err(Status::failed_precondition(why)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn headers(version: Option<&str>) -> HeaderMap {
        let mut m = HeaderMap::new();
        if let Some(v) = version {
            m.insert(API_VERSION_HEADER, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn versions_are_checked_and_both_named() {
        assert!(check_version(&headers(Some("2.7"))).is_ok());
        // The reference's words for a newer minor.
        assert_eq!(
            check_version(&headers(Some("2.8"))).unwrap_err().message(),
            "server is at version 2.7, behind requested minor version 2.8"
        );
        for bad in [
            Some("2.6"),
            Some("2.8"),
            Some("2.10"),
            Some("3.0"),
            Some("1.9"),
            Some("x"),
            None,
        ] {
            let status = check_version(&headers(bad)).unwrap_err();
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert!(status.message().contains("2.7"), "{}", status.message());
            if let Some(v) = bad {
                assert!(status.message().contains(v), "{}", status.message());
            }
        }
    }
}
