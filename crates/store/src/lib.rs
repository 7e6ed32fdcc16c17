//! The Store trait and its SQLite and PostgreSQL implementations.
