//! Answers for requests no route takes: a JSON 404 (or 405) for HTTP
//! clients, and gRPC's `unimplemented` status for gRPC clients, which read
//! the status from headers and not the HTTP status.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpError;

/// Whether a request is a gRPC call (`application/grpc`, `+proto` and the
/// like).
fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A path no route serves: 404 with a JSON error, or `unimplemented` for a
/// gRPC call to a service the server does not have.
pub async fn not_found(request: Request) -> Response {
    if is_grpc(&request) {
        return tonic::Status::unimplemented(format!(
            "no such service or method: {}",
            request.uri().path()
        ))
        .into_http::<axum::body::Body>();
    }
    HttpError::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", shown_path(request.uri().path())),
    )
    .into_response()
}

/// A path that exists, called with a method it does not take.
pub async fn method_not_allowed(request: Request) -> Response {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {}",
            shown_path(request.uri().path()),
            request.method()
        ),
    )
    .into_response()
}

/// A path as it is echoed back: at most 200 characters.
fn shown_path(path: &str) -> String {
    const MAX: usize = 200;
    match path.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &path[..end]),
        None => path.to_owned(),
    }
}
