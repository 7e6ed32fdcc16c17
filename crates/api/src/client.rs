//! A small client for the HTTP API, for the `warden workspace` and `warden
//! logs` commands, `warden dev`, `warden bench` and tests: one HTTP/1.1
//! request per connection over hyper, TLS (rustls, ring) when the URL is
//! `https://`. Enough for an operator's command without pulling in a full
//! HTTP client. The workspace calls are here, the record query calls and
//! the record stream in [`records`].

mod access;
mod records;
mod sse;

pub use http::StatusCode;
pub use records::{EventStream, ParseRecord, RawRecord};
pub use sse::{SseEvent, SseParser};

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::workspaces::{ApiError, CreateWorkspace, WorkspaceInfo, WorkspaceList, WorkspaceToken};

/// Why a call failed. Causes are the error's source, not part of its
/// message: print the chain.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL cannot be used.
    #[error("invalid server url {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// TLS could not be set up (a CA file, the system roots, the server's
    /// name) or the handshake failed.
    #[error("tls")]
    Tls(#[source] TlsError),
    /// No connection to the server.
    #[error("cannot reach {authority}")]
    Connect {
        /// `HOST:PORT` of the server.
        authority: String,
        /// Why the connection failed.
        #[source]
        cause: std::io::Error,
    },
    /// The connection failed during the exchange.
    #[error("talking to the server")]
    Http(#[from] hyper::Error),
    /// The server did not answer in time.
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    /// The server refused the call; `message` is its explanation.
    #[error("{message} (http {status})")]
    Api {
        /// The response's status.
        status: StatusCode,
        /// The server's explanation (the `error` of its body).
        message: String,
    },
    /// The request could not be encoded.
    #[error("cannot encode the request")]
    Encode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The answer is not what the API promises.
    #[error("unexpected answer from the server")]
    Decode(#[source] DecodeError),
}

impl ClientError {
    /// Whether the server said the workspace, session or other thing named
    /// does not exist (`404`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

/// Why TLS failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The trusted certificates could not be loaded.
    #[error(transparent)]
    Config(#[from] crate::tls::ConfigError),
    /// The host is not a valid TLS server name.
    #[error("{0:?} is not a valid server name for tls")]
    ServerName(String),
    /// The handshake failed (an untrusted or invalid certificate, say).
    #[error("handshake with the server")]
    Handshake(#[source] std::io::Error),
    /// The server's certificate was refused: what is wrong in words and how
    /// to fix it ([`crate::tls::explain_handshake`]); rustls' error is the
    /// source.
    #[error("{problem}")]
    Certificate {
        /// What is wrong, and the fix.
        problem: String,
        /// The handshake's error.
        #[source]
        cause: std::io::Error,
    },
}

/// An answer that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is not the JSON the call promises.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// An event stream line grew past any sensible size.
    #[error("an event stream line is longer than {0} bytes")]
    LineTooLong(usize),
}

/// The file in a server's data dir that holds the server's URL (written by
/// `warden server` once it listens, removed when it stops): how a client on
/// the same machine finds it.
pub const SERVER_URL_FILE: &str = "server-url";
/// The file in a server's data dir that holds the admin token the server
/// generated (mode 0600).
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// A client for one server and admin token.
#[derive(Clone)]
pub struct ApiClient {
    authority: String,
    host: String,
    port: u16,
    base_path: String,
    token: String,
    tls: Option<TlsConnector>,
    timeout: Duration,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("authority", &self.authority)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client for the server at `url` (`http://HOST:PORT` or `https://...`,
    /// optionally with a path prefix). `ca_cert` is trusted for `https://`
    /// instead of the system roots.
    pub fn new(
        url: &str,
        token: impl Into<String>,
        ca_cert: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let bad = |reason| ClientError::Url {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.trim().parse().map_err(|_| bad("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => Some(TlsConnector::from(
                crate::tls::client_config(ca_cert)
                    .map_err(|e| ClientError::Tls(TlsError::Config(e)))?,
            )),
            _ => return Err(bad("the scheme must be http or https")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let port = uri
            .port_u16()
            .unwrap_or(if tls.is_some() { 443 } else { 80 });
        // An IPv6 host keeps its brackets in the authority but not for DNS.
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(ApiClient {
            authority: format!("{host}:{port}"),
            host: bare_host,
            port,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            token: token.into(),
            tls,
            timeout: Duration::from_secs(30),
        })
    }

    /// Registers a workspace; the answer holds the agent token (shown once).
    pub async fn create_workspace(
        &self,
        request: &CreateWorkspace,
    ) -> Result<WorkspaceToken, ClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Encode(Box::new(e)))?;
        self.call(Method::POST, "/api/v1/workspaces", Some(body))
            .await
    }

    /// Live workspaces, by name.
    pub async fn list_workspaces(&self) -> Result<Vec<WorkspaceInfo>, ClientError> {
        let list: WorkspaceList = self.call(Method::GET, "/api/v1/workspaces", None).await?;
        Ok(list.workspaces)
    }

    /// A new agent token for the workspace; the old one stops working.
    pub async fn rotate_token(&self, name: &str) -> Result<WorkspaceToken, ClientError> {
        let path = format!("/api/v1/workspaces/{}/rotate-token", encode_segment(name));
        self.call(Method::POST, &path, None).await
    }

    /// Deletes the workspace (its agent is revoked, its records stay).
    pub async fn delete_workspace(&self, name: &str) -> Result<WorkspaceInfo, ClientError> {
        let path = format!("/api/v1/workspaces/{}", encode_segment(name));
        self.call(Method::DELETE, &path, None).await
    }

    /// The server's Prometheus metrics (`GET /metrics`), as text.
    pub async fn metrics_text(&self) -> Result<String, ClientError> {
        let bytes = self
            .fetch(Method::GET, "/metrics", "text/plain", None)
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let bytes = self.fetch(method, path, "application/json", body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.into()))
    }

    /// The body of a successful answer, within the client's timeout.
    async fn fetch(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        let request = self.request(method, path, accept, &[], body)?;
        let (status, bytes) = tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        Ok(bytes)
    }

    /// A GET whose answer is read as it arrives (an event stream): the
    /// response once its headers are in, with a successful status; the
    /// connection lives as long as its body is read.
    async fn open(
        &self,
        path: &str,
        accept: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response<Incoming>, ClientError> {
        let request = self.request(Method::GET, path, accept, headers, None)?;
        let response = tokio::time::timeout(self.timeout, self.send_request(request))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;
        let status = response.status();
        if !status.is_success() {
            let bytes = tokio::time::timeout(self.timeout, response.into_body().collect())
                .await
                .map_err(|_| ClientError::Timeout(self.timeout))??
                .to_bytes();
            return Err(api_error(status, &bytes));
        }
        Ok(response)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_path))
            .header(header::HOST, &self.authority)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::ACCEPT, accept);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| ClientError::Url {
                url: path.to_owned(),
                reason: "cannot form a request",
            })
    }

    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let response = self.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    async fn send_request(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|cause| ClientError::Connect {
                authority: self.authority.clone(),
                cause,
            })?;
        match &self.tls {
            None => send(stream, request).await,
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|_| ClientError::Tls(TlsError::ServerName(self.host.clone())))?;
                let stream = connector.connect(name, stream).await.map_err(|e| {
                    ClientError::Tls(match crate::tls::explain_handshake(&e) {
                        Some(problem) => TlsError::Certificate { problem, cause: e },
                        None => TlsError::Handshake(e),
                    })
                })?;
                send(stream, request).await
            }
        }
    }
}

/// The error a refusal's body explains (an [`ApiError`], or plain text).
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<ApiError>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_owned());
    ClientError::Api { status, message }
}

async fn send<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection ends once the response body is read (or dropped) and
    // the sender is gone; its own errors show up on the body.
    tokio::spawn(connection);
    Ok(sender.send_request(request).await?)
}

/// Percent-encodes a path segment or query value (everything but RFC 3986
/// unreserved characters): for every URL built from a name, here and in the
/// web page's links.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let c = ApiClient::new("http://127.0.0.1:7080", "t", None).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.base_path.as_str()),
            ("127.0.0.1", 7080, "")
        );
        let c = ApiClient::new("http://[::1]:9/prefix/", "t", None).unwrap();
        assert_eq!(
            (c.host.as_str(), c.authority.as_str(), c.base_path.as_str()),
            ("::1", "[::1]:9", "/prefix")
        );
        assert!(ApiClient::new("ftp://x", "t", None).is_err());
        assert!(ApiClient::new("not a url", "t", None).is_err());
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("dev-1.x_y"), "dev-1.x_y");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_segment("a?\"<é~"), "a%3F%22%3C%C3%A9~");
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let c = ApiClient::new("http://127.0.0.1:1", "sekrit-token", None).unwrap();
        assert!(!format!("{c:?}").contains("sekrit"));
    }
}
