//! Where the control plane keeps everything: the workspace registry, the
//! boundary records with their idempotency keys, loss counters, and the outbox
//! of boundary log lines not printed yet.
//!
//! Callers see one [`Store`] trait in domain terms ([`model`]); each backend
//! keeps its SQL to itself. [`SqliteStore`] is the embedded implementation
//! for one control plane; [`PgStore`] is the shared one, for several
//! control-plane replicas on one PostgreSQL database. [`open`] picks the
//! backend from a [`DatabaseUrl`]. The parts of ingest and retention that do
//! not depend on the database (idempotency and conflict rules, session
//! counters) are written once, in `ingest` and `purge`, and run by both.
//!
//! The conformance suite in `tests/conformance` states the behaviour every
//! backend must have; instantiate it for a new backend with its own factory.

#![warn(missing_docs, unreachable_pub)]

// Macros first: `macro_rules!` are visible to the modules declared after them.
#[macro_use]
mod record_sql;

pub mod access;
mod block;
pub mod chain;
mod convert;
pub mod error;
mod hosts;
mod ingest;
mod intervals;
mod losses;
mod migrations;
pub mod model;
pub mod postgres;
mod purge;
mod sessions;
pub mod sqlite;
pub mod store;
pub mod url;

use std::sync::Arc;

pub use access::{AdminEvent, ApiToken, NewAdminEvent, NewApiToken, TokenRole};
pub use error::StoreError;
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
