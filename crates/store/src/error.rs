//! What can go wrong in a store, in terms a caller can act on.

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A live workspace already has this name.
    #[error("a workspace named {0:?} already exists")]
    NameTaken(String),
    /// No live workspace has this name.
    #[error("no workspace named {0:?}")]
    WorkspaceNotFound(String),
    /// The agent an ingest names is not registered.
    #[error("no agent with id {0}")]
    UnknownAgent(uuid::Uuid),
    /// The database URL cannot be used.
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    /// A backend this build cannot open.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The store was closed (the server is stopping).
    #[error("the store is closed")]
    Closed,
    /// The database refused or failed an operation.
    #[error("{context}: {cause}")]
    Database {
        context: &'static str,
        cause: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("migrating the database: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// A stored value the code cannot read (a corrupt or foreign database).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps a database error with what was being done.
    pub fn database(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |cause| StoreError::Database { context, cause }
    }
}
