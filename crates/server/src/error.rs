//! Why the control plane could not start or keep running. Causes are the
//! error's source, not part of its message: print the chain.

use warden_store::StoreError;

/// Why the control plane could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration cannot work (exit code 2).
    #[error("{0}")]
    Config(String),
    /// A TLS certificate or key could not be loaded (exit code 2).
    #[error("tls: {what}")]
    Tls {
        /// What was being loaded or checked.
        what: String,
        /// Why it failed.
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
    /// A file the server manages could not be read or written.
    #[error("{context}")]
    Io {
        /// What the server was doing (`writing /data/admin-token`).
        context: String,
        /// Why it failed.
        #[source]
        cause: std::io::Error,
    },
}

impl ServerError {
    /// Whether this is the operator's to fix in the configuration (exit 2)
    /// rather than a runtime failure (exit 1).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            ServerError::Config(_)
                | ServerError::Tls { .. }
                | ServerError::Store(StoreError::InvalidUrl(_) | StoreError::Unsupported(_))
        )
    }
}
