//! Session completeness verdicts on PostgreSQL (see [`crate::verdict`]);
//! session ids stored with NUL escaped ([`super::text`]).

use sqlx::postgres::{PgPool, PgRow};
use uuid::Uuid;

use super::text::{decode, encode};
use super::{col, db};
use crate::StoreError;
use crate::verdict::{SessionKey, SessionVerdict};

macro_rules! verdict_columns {
    () => {
        "v.id, w.uuid, v.session_id, v.last_id, v.made_ns, v.statement, v.key_id, v.public_key, \
         v.signature FROM session_verdicts v JOIN workspaces w ON w.id = v.workspace_id"
    };
}

/// Stores a verdict; returns it with its id.
pub(super) async fn add(
    pool: &PgPool,
    mut v: SessionVerdict,
) -> Result<SessionVerdict, StoreError> {
    let ctx = "storing a session verdict";
    let row = sqlx::query(
        "INSERT INTO session_verdicts (workspace_id, session_id, last_id, made_ns, statement, \
         key_id, public_key, signature) \
         SELECT id, $1, $2, $3, $4, $5, $6, $7 FROM workspaces WHERE uuid = $8 RETURNING id",
    )
    .bind(encode(&v.session_id))
    .bind(v.last_id)
    .bind(v.made_ns)
    .bind(&v.statement)
    .bind(&v.key_id)
    .bind(&v.public_key)
    .bind(&v.signature)
    .bind(v.workspace_id)
    .fetch_optional(pool)
    .await
    .map_err(db(ctx))?
    .ok_or_else(|| StoreError::Corrupt(format!("no workspace {}", v.workspace_id)))?;
    v.id = col(&row, 0, ctx)?;
    Ok(v)
}

fn from_row(row: &PgRow) -> Result<SessionVerdict, StoreError> {
    let ctx = "reading session verdicts";
    Ok(SessionVerdict {
        id: col(row, 0, ctx)?,
        workspace_id: col(row, 1, ctx)?,
        session_id: decode(col(row, 2, ctx)?),
        last_id: col(row, 3, ctx)?,
        made_ns: col(row, 4, ctx)?,
        statement: col(row, 5, ctx)?,
        key_id: col(row, 6, ctx)?,
        public_key: col(row, 7, ctx)?,
        signature: col(row, 8, ctx)?,
    })
}

/// A session's verdicts, oldest first.
pub(super) async fn of_session(
    pool: &PgPool,
    workspace_id: Uuid,
    session_id: &str,
) -> Result<Vec<SessionVerdict>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        verdict_columns!(),
        " WHERE w.uuid = $1 AND v.session_id = $2 ORDER BY v.id"
    ))
    .bind(workspace_id)
    .bind(encode(session_id))
    .fetch_all(pool)
    .await
    .map_err(db("reading session verdicts"))?;
    rows.iter().map(from_row).collect()
}

/// Every verdict with an id above `after_id`, oldest first.
pub(super) async fn after(
    pool: &PgPool,
    after_id: i64,
    limit: u32,
) -> Result<Vec<SessionVerdict>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        verdict_columns!(),
        " WHERE v.id > $1 ORDER BY v.id LIMIT $2"
    ))
    .bind(after_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db("reading session verdicts"))?;
    rows.iter().map(from_row).collect()
}

/// Sessions with records stored after their latest verdict (or none yet).
pub(super) async fn awaiting(pool: &PgPool, limit: u32) -> Result<Vec<SessionKey>, StoreError> {
    let ctx = "finding sessions without a current verdict";
    let rows = sqlx::query(
        "SELECT w.uuid, s.session_id FROM sessions s \
         JOIN agents a ON a.id = s.agent_id JOIN workspaces w ON w.id = a.workspace_id \
         WHERE s.last_id > coalesce((SELECT max(v.last_id) FROM session_verdicts v \
             WHERE v.workspace_id = w.id AND v.session_id = s.session_id), 0) \
         ORDER BY s.last_id LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db(ctx))?;
    rows.iter()
        .map(|row| {
            Ok(SessionKey {
                workspace_id: col(row, 0, ctx)?,
                session_id: decode(col(row, 1, ctx)?),
            })
        })
        .collect()
}
