//! What can go wrong in a store, in terms a caller can act on.

use std::fmt;

/// The cause of a [`StoreError::Database`]: whichever driver failed.
pub type DatabaseCause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A live workspace already has this name.
    #[error("a workspace named {0:?} already exists")]
    NameTaken(String),
    /// No live workspace has this name.
    #[error("no workspace named {0:?}")]
    WorkspaceNotFound(String),
    /// A live API token already has this name.
    #[error("a token named {0:?} already exists")]
    TokenNameTaken(String),
    /// No live API token has this name.
    #[error("token {0:?} not found")]
    TokenNotFound(String),
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
    /// The database refused or failed an operation; the driver's error is
    /// the source.
    #[error("{context}")]
    Database {
        /// What the store was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        cause: DatabaseCause,
    },
    /// The schema could not be brought up to date.
    #[error("migrating the database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A stored value the code cannot read (a corrupt or foreign database).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps a database error with what was being done.
    pub fn database<E>(context: &'static str) -> impl FnOnce(E) -> StoreError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |cause| StoreError::Database {
            context,
            cause: Box::new(cause),
        }
    }

    /// The error and its causes, `: `-separated, for a log line.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

/// [`StoreError::chain`].
#[derive(Debug)]
pub struct Chain<'a>(&'a StoreError);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_the_source_not_the_message() {
        let e = StoreError::database("reading a record")(std::io::Error::other("disk on fire"));
        assert_eq!(e.to_string(), "reading a record");
        assert_eq!(e.chain().to_string(), "reading a record: disk on fire");
    }
}
