//! Where the control plane keeps everything: the workspace registry, the
//! boundary records with their idempotency keys, loss counters, and the outbox
//! of boundary log lines not printed yet.
//!
//! Callers see one [`Store`] trait in domain terms ([`model`]); each backend
//! keeps its SQL to itself. [`SqliteStore`] is the embedded implementation;
//! a PostgreSQL one fits behind the same trait. [`open`] picks the backend
//! from a [`DatabaseUrl`].
//!
//! The conformance suite in `tests/conformance` states the behaviour every
//! backend must have; instantiate it for a new backend with its own factory.

pub mod error;
pub mod model;
pub mod sqlite;
pub mod store;
pub mod url;

use std::sync::Arc;

pub use error::StoreError;
pub use model::*;
pub use sqlite::SqliteStore;
pub use store::{Store, StoreFuture};
pub use url::DatabaseUrl;

/// Opens (creating and migrating when needed) the store `url` names.
pub async fn open(url: &DatabaseUrl) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        DatabaseUrl::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path).await?)),
        DatabaseUrl::Postgres(_) => Err(StoreError::Unsupported(
            "the postgresql store is not part of this build yet; use sqlite://PATH",
        )),
    }
}
