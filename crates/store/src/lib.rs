//! Where the control plane keeps everything: the workspace registry, the
//! boundary records (in compressed blocks, see `block`) with their idempotency
//! keys, loss and activity counters, and which boundary log lines are not
//! printed yet.
//!
//! Callers see one [`Store`] trait in domain terms ([`model`]); each backend
//! keeps its SQL to itself. [`SqliteStore`] is the embedded implementation
//! for one control plane; [`PgStore`] is the shared one, for several
//! control-plane replicas on one PostgreSQL database. [`open`] picks the
//! backend from a [`DatabaseUrl`]. The parts of ingest that do not depend
//! on the database (building blocks, idempotency and conflict rules, the
//! counters) are written once, in `group` and `counters`, and run by both.
//!
//! The conformance suite in `tests/conformance` states the behaviour every
//! backend must have; instantiate it for a new backend with its own factory.

#![warn(missing_docs, unreachable_pub)]

pub mod access;
mod block;
pub mod chain;
mod convert;
mod counters;
pub mod error;
pub mod exports;
mod group;
mod hosts;
mod ingest;
mod intervals;
mod losses;
mod migrations;
pub mod model;
pub mod postgres;
mod records;
mod sessions;
pub mod sqlite;
pub mod store;
pub mod url;
pub mod verdict;

use std::sync::Arc;

pub use access::{AdminEvent, ApiToken, NewAdminEvent, NewApiToken, TokenRole};
pub use error::StoreError;
pub use exports::ExportState;
pub use model::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use store::{Store, StoreFuture};
pub use url::DatabaseUrl;

/// Opens (creating and migrating when needed) the store `url` names.
pub async fn open(url: &DatabaseUrl) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, StoreOptions::default()).await
}

/// [`open`] with these options.
pub async fn open_with(
    url: &DatabaseUrl,
    options: StoreOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        DatabaseUrl::Sqlite(path) => Ok(Arc::new(SqliteStore::open_with(path, options).await?)),
        DatabaseUrl::Postgres(url) => Ok(Arc::new(PgStore::open_with(url, options).await?)),
    }
}
