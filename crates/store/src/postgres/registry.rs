//! The workspace registry and the admin token on PostgreSQL. Replicas may
//! run the same registry call at the same moment; the unique indexes decide
//! (a second live workspace with one name is refused as
//! [`StoreError::NameTaken`], never stored).

use jiff::Timestamp;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use uuid::Uuid;
use warden_proto::domain::Manifest;

use super::text::{decode, encode};
use super::{col, db};
use crate::StoreError;
use crate::convert::{from_nanos, nanos, opt_from_nanos};
use crate::model::{Agent, AgentCredentials, NewWorkspace, TokenHash, Workspace};

const ADMIN_TOKEN_KEY: &str = "admin_token_sha256";
const WEB_SESSION_KEY: &str = "web_session_hmac_key";

/// The columns [`workspace_from_row`] reads, as a literal for `concat!`.
macro_rules! select_workspaces {
    () => {
        "SELECT w.uuid, w.name, w.owner, w.startup_script, w.created_at, \
         a.uuid, a.name, a.token_issued_at, a.last_contact_at, a.last_batch_at, a.last_batch_uuid \
         FROM workspaces w JOIN agents a ON a.workspace_id = w.id"
    };
}

fn workspace_from_row(row: &PgRow) -> Result<Workspace, StoreError> {
    let ctx = "reading a workspace";
    Ok(Workspace {
        id: col(row, 0, ctx)?,
        name: decode(col(row, 1, ctx)?),
        owner: decode(col(row, 2, ctx)?),
        startup_script: decode(col(row, 3, ctx)?),
        created_at: from_nanos(col(row, 4, ctx)?)?,
        agent: Agent {
            id: col(row, 5, ctx)?,
            name: decode(col(row, 6, ctx)?),
            token_issued_at: from_nanos(col(row, 7, ctx)?)?,
            last_contact_at: opt_from_nanos(col(row, 8, ctx)?)?,
            last_batch_at: opt_from_nanos(col(row, 9, ctx)?)?,
            last_batch_id: col(row, 10, ctx)?,
        },
    })
}

pub(super) async fn live_workspace(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<Workspace>, StoreError> {
    let row = sqlx::query(concat!(
        select_workspaces!(),
        " WHERE w.name = $1 AND w.deleted_at IS NULL"
    ))
    .bind(encode(name))
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading a workspace"))?;
    row.as_ref().map(workspace_from_row).transpose()
}

pub(super) async fn list_workspaces(pool: &PgPool) -> Result<Vec<Workspace>, StoreError> {
    let rows = sqlx::query(concat!(
        select_workspaces!(),
        " WHERE w.deleted_at IS NULL ORDER BY w.name"
    ))
    .fetch_all(pool)
    .await
    .map_err(db("listing workspaces"))?;
    let mut workspaces = rows
        .iter()
        .map(workspace_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    // By name as the caller sees it (escaping can change the byte order),
    // and the same order SQLite gives: by code point, not by locale.
    workspaces.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(workspaces)
}

pub(super) async fn create_workspace(
    pool: &PgPool,
    new: NewWorkspace,
    at: Timestamp,
) -> Result<Workspace, StoreError> {
    let ctx = "creating a workspace";
    let mut tx = pool.begin().await.map_err(db(ctx))?;
    if live_workspace(&mut tx, &new.name).await?.is_some() {
        return Err(StoreError::NameTaken(new.name));
    }
    let inserted = sqlx::query(
        "INSERT INTO workspaces (uuid, name, owner, startup_script, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(new.id)
    .bind(encode(&new.name))
    .bind(encode(&new.owner))
    .bind(encode(&new.startup_script))
    .bind(nanos(at))
    .fetch_one(&mut *tx)
    .await;
    let key: i64 = match inserted {
        Ok(row) => row.try_get(0).map_err(db(ctx))?,
        // Another replica created the name since the check above.
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("workspaces_live_name") => {
            return Err(StoreError::NameTaken(new.name));
        }
        Err(e) => return Err(db(ctx)(e)),
    };
    sqlx::query(
        "INSERT INTO agents (uuid, workspace_id, name, token_hash, token_issued_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(new.agent_id)
    .bind(key)
    .bind(encode(&new.agent_name))
    .bind(new.token_hash.0.as_slice())
    .bind(nanos(at))
    .execute(&mut *tx)
    .await
    .map_err(db("creating an agent"))?;
    let workspace = live_workspace(&mut tx, &new.name)
        .await?
        .ok_or(StoreError::WorkspaceNotFound(new.name))?;
    tx.commit().await.map_err(db(ctx))?;
    Ok(workspace)
}

pub(super) async fn rotate_agent_token(
    pool: &PgPool,
    name: &str,
    hash: TokenHash,
    at: Timestamp,
) -> Result<Workspace, StoreError> {
    let ctx = "rotating a token";
    let mut tx = pool.begin().await.map_err(db(ctx))?;
    let done = sqlx::query(
        "UPDATE agents SET token_hash = $1, token_issued_at = $2 WHERE workspace_id = \
         (SELECT id FROM workspaces WHERE name = $3 AND deleted_at IS NULL)",
    )
    .bind(hash.0.as_slice())
    .bind(nanos(at))
    .bind(encode(name))
    .execute(&mut *tx)
    .await
    .map_err(db(ctx))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::WorkspaceNotFound(name.to_owned()));
    }
    let workspace = live_workspace(&mut tx, name)
        .await?
        .ok_or_else(|| StoreError::WorkspaceNotFound(name.to_owned()))?;
    tx.commit().await.map_err(db(ctx))?;
    Ok(workspace)
}

pub(super) async fn delete_workspace(
    pool: &PgPool,
    name: &str,
    at: Timestamp,
) -> Result<Workspace, StoreError> {
    let ctx = "deleting a workspace";
    let mut tx = pool.begin().await.map_err(db(ctx))?;
    let workspace = live_workspace(&mut tx, name)
        .await?
        .ok_or_else(|| StoreError::WorkspaceNotFound(name.to_owned()))?;
    let done =
        sqlx::query("UPDATE workspaces SET deleted_at = $1 WHERE uuid = $2 AND deleted_at IS NULL")
            .bind(nanos(at))
            .bind(workspace.id)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
    if done.rows_affected() == 0 {
        // Another replica deleted it since the read above.
        return Err(StoreError::WorkspaceNotFound(name.to_owned()));
    }
    sqlx::query("UPDATE agents SET token_hash = NULL WHERE uuid = $1")
        .bind(workspace.agent.id)
        .execute(&mut *tx)
        .await
        .map_err(db("revoking an agent"))?;
    tx.commit().await.map_err(db(ctx))?;
    Ok(workspace)
}

pub(super) async fn agent_credentials(
    pool: &PgPool,
    agent_id: Uuid,
) -> Result<Option<AgentCredentials>, StoreError> {
    let ctx = "reading agent credentials";
    let row = sqlx::query(
        "SELECT w.uuid, w.name, w.owner, w.startup_script, a.name, a.token_hash \
         FROM agents a JOIN workspaces w ON w.id = a.workspace_id \
         WHERE a.uuid = $1 AND w.deleted_at IS NULL AND a.token_hash IS NOT NULL",
    )
    .bind(agent_id)
    .fetch_optional(pool)
    .await
    .map_err(db(ctx))?;
    let Some(row) = row else { return Ok(None) };
    let hash: Vec<u8> = col(&row, 5, ctx)?;
    let hash: [u8; 32] = hash
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("token hash of {} bytes", hash.len())))?;
    Ok(Some(AgentCredentials {
        manifest: Manifest {
            workspace_id: col(&row, 0, ctx)?,
            workspace_name: decode(col(&row, 1, ctx)?),
            owner_name: decode(col(&row, 2, ctx)?),
            startup_script: decode(col(&row, 3, ctx)?),
            agent_id,
            agent_name: decode(col(&row, 4, ctx)?),
        },
        token_hash: TokenHash(hash),
    }))
}

/// The internal key of an agent, revoked or not.
pub(super) async fn agent_key(pool: &PgPool, agent: Uuid) -> Result<Option<i64>, StoreError> {
    let ctx = "finding an agent";
    sqlx::query("SELECT id FROM agents WHERE uuid = $1")
        .bind(agent)
        .fetch_optional(pool)
        .await
        .map_err(db(ctx))?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(db(ctx))
}

pub(super) async fn record_contact(
    pool: &PgPool,
    agent: Uuid,
    at: Timestamp,
) -> Result<(), StoreError> {
    let done = sqlx::query("UPDATE agents SET last_contact_at = $1 WHERE uuid = $2")
        .bind(nanos(at))
        .bind(agent)
        .execute(pool)
        .await
        .map_err(db("recording contact"))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::UnknownAgent(agent));
    }
    Ok(())
}

pub(super) async fn admin_token_hash(pool: &PgPool) -> Result<Option<TokenHash>, StoreError> {
    let ctx = "reading the admin token hash";
    let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
        .bind(ADMIN_TOKEN_KEY)
        .fetch_optional(pool)
        .await
        .map_err(db(ctx))?;
    let Some(row) = row else { return Ok(None) };
    let value: Vec<u8> = col(&row, 0, ctx)?;
    let hash: [u8; 32] = value
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("admin token hash of {} bytes", value.len())))?;
    Ok(Some(TokenHash(hash)))
}

/// Stores the admin token hash; with `replace` false an existing one wins
/// (replicas starting together agree on the first).
pub(super) async fn put_admin_token_hash(
    pool: &PgPool,
    hash: TokenHash,
    replace: bool,
) -> Result<TokenHash, StoreError> {
    let sql = if replace {
        "INSERT INTO settings (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    } else {
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"
    };
    sqlx::query(sql)
        .bind(ADMIN_TOKEN_KEY)
        .bind(hash.0.as_slice())
        .execute(pool)
        .await
        .map_err(db("storing the admin token hash"))?;
    admin_token_hash(pool)
        .await?
        .ok_or(StoreError::Corrupt("the admin token hash vanished".into()))
}

/// Stores the web session key unless one exists; returns the one in force
/// (the first replica's, when several start at once).
pub(super) async fn init_web_session_key(
    pool: &PgPool,
    candidate: [u8; 32],
) -> Result<[u8; 32], StoreError> {
    let ctx = "storing the web session key";
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(WEB_SESSION_KEY)
        .bind(candidate.as_slice())
        .execute(pool)
        .await
        .map_err(db(ctx))?;
    let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
        .bind(WEB_SESSION_KEY)
        .fetch_one(pool)
        .await
        .map_err(db(ctx))?;
    let value: Vec<u8> = col(&row, 0, ctx)?;
    value
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("web session key of {} bytes", value.len())))
}
