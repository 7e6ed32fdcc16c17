//! Small helpers for the rusqlite side of the SQLite store: errors with
//! context, the `store_state` values, the columns every block query reads.

use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreError;

/// Adds what was being done to a driver error.
pub(super) trait Ctx<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for Result<T, rusqlite::Error> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(StoreError::database(context))
    }
}

/// `store_state` key: the next record id to hand out.
pub(super) const NEXT_RECORD_ID: &str = "next_record_id";
/// `store_state` key: every record at or below it has had its line printed.
pub(super) const PRINTED_THROUGH: &str = "printed_through";

/// A `store_state` value.
pub(super) fn state(conn: &Connection, key: &str) -> Result<Option<i64>, rusqlite::Error> {
    conn.prepare_cached("SELECT value FROM store_state WHERE key = ?1")?
        .query_row(params![key], |row| row.get(0))
        .optional()
}

pub(super) fn set_state(conn: &Connection, key: &str, value: i64) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO store_state (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// The columns of a `blocks` row a reader needs, in this order (see
/// [`BlockRow`](super::read::BlockRow)).
pub(super) const BLOCK_COLUMNS: &str = "b.first_id, b.last_id, b.agent_id, b.session_id, b.data";

/// The internal key of the agent with this UUID.
pub(super) fn agent_key(
    conn: &Connection,
    agent: uuid::Uuid,
) -> Result<Option<i64>, rusqlite::Error> {
    conn.prepare_cached("SELECT id FROM agents WHERE uuid = ?1")?
        .query_row(params![agent.as_bytes().as_slice()], |row| row.get(0))
        .optional()
}
