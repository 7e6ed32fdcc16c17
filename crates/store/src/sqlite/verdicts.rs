//! Session completeness verdicts on SQLite (see [`crate::verdict`]): added
//! on the registry's write connection (rare, small), read with the record
//! readers.

use rusqlite::{Connection, params};
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use super::db::Ctx;
use crate::StoreError;
use crate::convert::uuid;
use crate::verdict::{SessionKey, SessionVerdict};

macro_rules! verdict_columns {
    () => {
        "v.id, w.uuid, v.session_id, v.last_id, v.made_ns, v.statement, v.key_id, v.public_key, \
         v.signature FROM session_verdicts v JOIN workspaces w ON w.id = v.workspace_id"
    };
}

/// Stores a verdict; returns it with its id.
pub(super) async fn add(
    conn: &mut SqliteConnection,
    mut v: SessionVerdict,
) -> Result<SessionVerdict, StoreError> {
    let ctx = "storing a session verdict";
    let row = sqlx::query(
        "INSERT INTO session_verdicts (workspace_id, session_id, last_id, made_ns, statement, \
         key_id, public_key, signature) \
         SELECT id, ?, ?, ?, ?, ?, ?, ? FROM workspaces WHERE uuid = ? RETURNING id",
    )
    .bind(&v.session_id)
    .bind(v.last_id)
    .bind(v.made_ns)
    .bind(&v.statement)
    .bind(&v.key_id)
    .bind(&v.public_key)
    .bind(&v.signature)
    .bind(v.workspace_id.as_bytes().as_slice())
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::database(ctx))?
    .ok_or_else(|| StoreError::Corrupt(format!("no workspace {}", v.workspace_id)))?;
    v.id = row.try_get(0).map_err(StoreError::database(ctx))?;
    Ok(v)
}

/// A verdict and its workspace's uuid bytes (decoded by [`collect`]).
fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Vec<u8>, SessionVerdict)> {
    Ok((
        row.get(1)?,
        SessionVerdict {
            id: row.get(0)?,
            workspace_id: Uuid::nil(),
            session_id: row.get(2)?,
            last_id: row.get(3)?,
            made_ns: row.get(4)?,
            statement: row.get(5)?,
            key_id: row.get(6)?,
            public_key: row.get(7)?,
            signature: row.get(8)?,
        },
    ))
}

fn collect(
    rows: impl Iterator<Item = rusqlite::Result<(Vec<u8>, SessionVerdict)>>,
    ctx: &'static str,
) -> Result<Vec<SessionVerdict>, StoreError> {
    rows.map(|row| {
        let (workspace, mut v) = row.ctx(ctx)?;
        v.workspace_id = uuid(&workspace)?;
        Ok(v)
    })
    .collect()
}

/// A session's verdicts, oldest first.
pub(super) fn of_session(
    conn: &Connection,
    workspace_id: Uuid,
    session_id: &str,
) -> Result<Vec<SessionVerdict>, StoreError> {
    let ctx = "reading session verdicts";
    let mut stmt = conn
        .prepare_cached(concat!(
            "SELECT ",
            verdict_columns!(),
            " WHERE w.uuid = ?1 AND v.session_id = ?2 ORDER BY v.id"
        ))
        .ctx(ctx)?;
    let rows = stmt
        .query_map(
            params![workspace_id.as_bytes().as_slice(), session_id],
            from_row,
        )
        .ctx(ctx)?;
    collect(rows, ctx)
}

/// Every verdict with an id above `after_id`, oldest first.
pub(super) fn after(
    conn: &Connection,
    after_id: i64,
    limit: u32,
) -> Result<Vec<SessionVerdict>, StoreError> {
    let ctx = "reading session verdicts";
    let mut stmt = conn
        .prepare_cached(concat!(
            "SELECT ",
            verdict_columns!(),
            " WHERE v.id > ?1 ORDER BY v.id LIMIT ?2"
        ))
        .ctx(ctx)?;
    let rows = stmt
        .query_map(params![after_id, limit], from_row)
        .ctx(ctx)?;
    collect(rows, ctx)
}

/// Sessions with records stored after their latest verdict (or none yet).
pub(super) fn awaiting(conn: &Connection, limit: u32) -> Result<Vec<SessionKey>, StoreError> {
    let ctx = "finding sessions without a current verdict";
    let mut stmt = conn
        .prepare_cached(
            "SELECT w.uuid, s.session_id FROM sessions s \
             JOIN agents a ON a.id = s.agent_id JOIN workspaces w ON w.id = a.workspace_id \
             WHERE s.last_id > coalesce((SELECT max(v.last_id) FROM session_verdicts v \
                 WHERE v.workspace_id = w.id AND v.session_id = s.session_id), 0) \
             ORDER BY s.last_id LIMIT ?1",
        )
        .ctx(ctx)?;
    let rows = stmt
        .query_map(params![limit], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, String>(1)?))
        })
        .ctx(ctx)?;
    rows.map(|row| {
        let (workspace, session_id) = row.ctx(ctx)?;
        Ok(SessionKey {
            workspace_id: uuid(&workspace)?,
            session_id,
        })
    })
    .collect()
}
