//! The workspace registry and the admin token: rare writes, run on the writer
//! connection in their own transactions, and the reads behind them.

use jiff::Timestamp;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;
use warden_proto::domain::Manifest;

use crate::StoreError;
use crate::convert::{from_nanos, nanos, opt_from_nanos, uuid};
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

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    StoreError::database(context)
}

fn workspace_from_row(row: &SqliteRow) -> Result<Workspace, StoreError> {
    let get = |e: sqlx::Error| StoreError::database("reading a workspace")(e);
    let last_batch: Option<Vec<u8>> = row.try_get(10).map_err(get)?;
    Ok(Workspace {
        id: uuid(row.try_get::<&[u8], _>(0).map_err(get)?)?,
        name: row.try_get(1).map_err(get)?,
        owner: row.try_get(2).map_err(get)?,
        startup_script: row.try_get(3).map_err(get)?,
        created_at: from_nanos(row.try_get(4).map_err(get)?)?,
        agent: Agent {
            id: uuid(row.try_get::<&[u8], _>(5).map_err(get)?)?,
            name: row.try_get(6).map_err(get)?,
            token_issued_at: from_nanos(row.try_get(7).map_err(get)?)?,
            last_contact_at: opt_from_nanos(row.try_get(8).map_err(get)?)?,
            last_batch_at: opt_from_nanos(row.try_get(9).map_err(get)?)?,
            last_batch_id: last_batch.as_deref().map(uuid).transpose()?,
        },
    })
}

pub(super) async fn live_workspace(
    conn: &mut SqliteConnection,
    name: &str,
) -> Result<Option<Workspace>, StoreError> {
    let row = sqlx::query(concat!(
        select_workspaces!(),
        " WHERE w.name = ? AND w.deleted_at IS NULL"
    ))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading a workspace"))?;
    row.as_ref().map(workspace_from_row).transpose()
}

pub(super) async fn list_workspaces(
    conn: &mut SqliteConnection,
) -> Result<Vec<Workspace>, StoreError> {
    let rows = sqlx::query(concat!(
        select_workspaces!(),
        " WHERE w.deleted_at IS NULL ORDER BY w.name"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(db("listing workspaces"))?;
    rows.iter().map(workspace_from_row).collect()
}

pub(super) async fn create_workspace(
    conn: &mut SqliteConnection,
    new: NewWorkspace,
    at: Timestamp,
) -> Result<Workspace, StoreError> {
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
        .await
        .map_err(db("creating a workspace"))?;
    if live_workspace(&mut tx, &new.name).await?.is_some() {
        return Err(StoreError::NameTaken(new.name));
    }
    let (workspace_id, agent_id) = (new.id, new.agent_id);
    let key: i64 = sqlx::query(
        "INSERT INTO workspaces (uuid, name, owner, startup_script, created_at) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(workspace_id.as_bytes().as_slice())
    .bind(new.name.as_str())
    .bind(new.owner.as_str())
    .bind(new.startup_script.as_str())
    .bind(nanos(at))
    .fetch_one(&mut *tx)
    .await
    .map_err(db("creating a workspace"))?
    .get(0);
    sqlx::query(
        "INSERT INTO agents (uuid, workspace_id, name, token_hash, token_issued_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(agent_id.as_bytes().as_slice())
    .bind(key)
    .bind(new.agent_name.as_str())
    .bind(new.token_hash.0.as_slice())
    .bind(nanos(at))
    .execute(&mut *tx)
    .await
    .map_err(db("creating an agent"))?;
    let workspace = live_workspace(&mut tx, &new.name)
        .await?
        .ok_or(StoreError::WorkspaceNotFound(new.name))?;
    tx.commit().await.map_err(db("creating a workspace"))?;
    Ok(workspace)
}

pub(super) async fn rotate_agent_token(
    conn: &mut SqliteConnection,
    name: &str,
    hash: TokenHash,
    at: Timestamp,
) -> Result<Workspace, StoreError> {
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
        .await
        .map_err(db("rotating a token"))?;
    let done = sqlx::query(
        "UPDATE agents SET token_hash = ?, token_issued_at = ? WHERE workspace_id = \
         (SELECT id FROM workspaces WHERE name = ? AND deleted_at IS NULL)",
    )
    .bind(hash.0.as_slice())
    .bind(nanos(at))
    .bind(name)
    .execute(&mut *tx)
    .await
    .map_err(db("rotating a token"))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::WorkspaceNotFound(name.to_owned()));
    }
    let workspace = live_workspace(&mut tx, name)
        .await?
        .ok_or_else(|| StoreError::WorkspaceNotFound(name.to_owned()))?;
    tx.commit().await.map_err(db("rotating a token"))?;
    Ok(workspace)
}

pub(super) async fn delete_workspace(
    conn: &mut SqliteConnection,
    name: &str,
    at: Timestamp,
) -> Result<Workspace, StoreError> {
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
        .await
        .map_err(db("deleting a workspace"))?;
    let workspace = live_workspace(&mut tx, name)
        .await?
        .ok_or_else(|| StoreError::WorkspaceNotFound(name.to_owned()))?;
    sqlx::query("UPDATE workspaces SET deleted_at = ? WHERE uuid = ?")
        .bind(nanos(at))
        .bind(workspace.id.as_bytes().as_slice())
        .execute(&mut *tx)
        .await
        .map_err(db("deleting a workspace"))?;
    sqlx::query("UPDATE agents SET token_hash = NULL WHERE uuid = ?")
        .bind(workspace.agent.id.as_bytes().as_slice())
        .execute(&mut *tx)
        .await
        .map_err(db("revoking an agent"))?;
    tx.commit().await.map_err(db("deleting a workspace"))?;
    Ok(workspace)
}

pub(super) async fn agent_credentials(
    conn: &mut SqliteConnection,
    agent_id: Uuid,
) -> Result<Option<AgentCredentials>, StoreError> {
    let row = sqlx::query(
        "SELECT w.uuid, w.name, w.owner, w.startup_script, a.name, a.token_hash \
         FROM agents a JOIN workspaces w ON w.id = a.workspace_id \
         WHERE a.uuid = ? AND w.deleted_at IS NULL AND a.token_hash IS NOT NULL",
    )
    .bind(agent_id.as_bytes().as_slice())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading agent credentials"))?;
    let Some(row) = row else { return Ok(None) };
    let get = |e: sqlx::Error| StoreError::database("reading agent credentials")(e);
    let hash: &[u8] = row.try_get(5).map_err(get)?;
    let hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("token hash of {} bytes", hash.len())))?;
    Ok(Some(AgentCredentials {
        manifest: Manifest {
            workspace_id: uuid(row.try_get::<&[u8], _>(0).map_err(get)?)?,
            workspace_name: row.try_get(1).map_err(get)?,
            owner_name: row.try_get(2).map_err(get)?,
            startup_script: row.try_get(3).map_err(get)?,
            agent_id,
            agent_name: row.try_get(4).map_err(get)?,
        },
        token_hash: TokenHash(hash),
    }))
}

pub(super) async fn admin_token_hash(
    conn: &mut SqliteConnection,
) -> Result<Option<TokenHash>, StoreError> {
    let row = sqlx::query("SELECT value FROM settings WHERE key = ?")
        .bind(ADMIN_TOKEN_KEY)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading the admin token hash"))?;
    let Some(row) = row else { return Ok(None) };
    let value: &[u8] = row.try_get(0).map_err(db("reading the admin token hash"))?;
    let hash: [u8; 32] = value
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("admin token hash of {} bytes", value.len())))?;
    Ok(Some(TokenHash(hash)))
}

/// Stores the admin token hash; with `replace` false an existing one wins.
pub(super) async fn put_admin_token_hash(
    conn: &mut SqliteConnection,
    hash: TokenHash,
    replace: bool,
) -> Result<TokenHash, StoreError> {
    let sql = if replace {
        "INSERT INTO settings (key, value) VALUES (?, ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    } else {
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"
    };
    sqlx::query(sql)
        .bind(ADMIN_TOKEN_KEY)
        .bind(hash.0.as_slice())
        .execute(&mut *conn)
        .await
        .map_err(db("storing the admin token hash"))?;
    admin_token_hash(conn)
        .await?
        .ok_or(StoreError::Corrupt("the admin token hash vanished".into()))
}

/// Stores the web session key unless one exists; returns the one in force.
pub(super) async fn init_web_session_key(
    conn: &mut SqliteConnection,
    candidate: [u8; 32],
) -> Result<[u8; 32], StoreError> {
    let ctx = "storing the web session key";
    sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
        .bind(WEB_SESSION_KEY)
        .bind(candidate.as_slice())
        .execute(&mut *conn)
        .await
        .map_err(db(ctx))?;
    let row = sqlx::query("SELECT value FROM settings WHERE key = ?")
        .bind(WEB_SESSION_KEY)
        .fetch_one(&mut *conn)
        .await
        .map_err(db(ctx))?;
    let value: &[u8] = row.try_get(0).map_err(db(ctx))?;
    value
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("web session key of {} bytes", value.len())))
}
