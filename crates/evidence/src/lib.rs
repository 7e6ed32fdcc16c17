//! Evidence an auditor can check: the control plane's Ed25519 signing key
//! ([`key`]), signed checkpoints over the record chain ([`checkpoint`]),
//! export bundles that verify offline ([`bundle`]), signed session
//! completeness verdicts ([`verdict`]), the JSON forms of verdicts and
//! admin events that bundles and the API carry ([`json`]), and the verification
//! that `warden verify` runs ([`verify`]). The chain itself (canonical
//! record encoding, links, the integrity checker) is the store's:
//! `warden_store::chain`.

#![warn(missing_docs, unreachable_pub)]

pub mod admin_events;
pub mod bundle;
pub mod checkpoint;
pub mod json;
pub mod key;
pub mod verdict;
pub mod verify;

/// What can go wrong outside the chain's content.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A file could not be read or written.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        cause: std::io::Error,
    },
    /// A key, checkpoint or bundle is malformed.
    #[error("{0}")]
    Malformed(String),
    /// The store failed.
    #[error("reading the store")]
    Store(#[source] warden_store::StoreError),
}

impl From<warden_store::StoreError> for EvidenceError {
    fn from(e: warden_store::StoreError) -> Self {
        EvidenceError::Store(e)
    }
}
