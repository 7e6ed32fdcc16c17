//! Why the control plane could not start or keep running.

use warden_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration cannot work (exit code 2).
    #[error("{0}")]
    Config(String),
    /// A TLS certificate or key could not be loaded (exit code 2).
    #[error("tls: {0}")]
    Tls(String),
    /// The store failed. (Its message is shown inline, so it is not also
    /// the error's source: chain printers would repeat it.)
    #[error("store: {0}")]
    Store(StoreError),
    /// A file the server manages could not be read or written.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
}

impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        ServerError::Store(e)
    }
}

impl ServerError {
    /// Whether this is the operator's to fix in the configuration (exit 2)
    /// rather than a runtime failure (exit 1).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            ServerError::Config(_)
                | ServerError::Tls(_)
                | ServerError::Store(StoreError::InvalidUrl(_) | StoreError::Unsupported(_))
        )
    }
}
