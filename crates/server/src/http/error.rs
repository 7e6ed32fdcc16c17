//! Errors of the HTTP API as JSON bodies with the right status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use warden_store::StoreError;

use warden_api::workspaces::ApiError;

/// An HTTP API failure.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    /// A failure with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
        }
    }

    /// A 400: the caller's input is wrong, as `message` says.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The status this failure answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong, for the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A 401: no token, or one that is not valid here.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "missing or invalid token")
    }

    /// A 403: a valid credential that may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// A 500 whose cause is in the control plane's log.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NameTaken(_) | StoreError::TokenNameTaken(_) => {
                HttpError::new(StatusCode::CONFLICT, e.to_string())
            }
            StoreError::TokenNotFound(_) => HttpError::new(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::WorkspaceNotFound(_) => {
                HttpError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            StoreError::Closed => HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the control plane is shutting down",
            ),
            e => {
                // Handled here: logged once with its cause.
                tracing::error!(error = %e.chain(), "an admin api call failed in the store");
                HttpError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage failure; see the control plane's log",
                )
            }
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ApiError {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
