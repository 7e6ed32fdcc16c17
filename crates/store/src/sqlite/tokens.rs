//! Named API tokens and admin events on SQLite: rare writes on the registry
//! connection, each in its own `BEGIN IMMEDIATE` transaction (so appends to
//! the admin event chain run one at a time), and the reads behind them.

use jiff::Timestamp;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use crate::StoreError;
use crate::access::{
    ADMIN_CHAIN_START, AdminEvent, ApiToken, NewAdminEvent, NewApiToken, TokenRole,
    admin_chain_hash,
};
use crate::convert::{from_nanos, nanos, opt_from_nanos, uuid};
use crate::model::TokenHash;

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    StoreError::database(context)
}

/// The columns [`token_from_row`] reads, as a literal for `concat!`.
macro_rules! select_tokens {
    () => {
        "SELECT uuid, name, role, created_at, last_used_at, token_hash FROM api_tokens"
    };
}

fn token_from_row(row: &SqliteRow) -> Result<(ApiToken, TokenHash), StoreError> {
    let get = |e: sqlx::Error| StoreError::database("reading a token")(e);
    let role: String = row.try_get(2).map_err(get)?;
    let hash: Vec<u8> = row.try_get(5).map_err(get)?;
    Ok((
        ApiToken {
            id: uuid(row.try_get::<&[u8], _>(0).map_err(get)?)?,
            name: row.try_get(1).map_err(get)?,
            role: TokenRole::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("token role {role:?}")))?,
            created_at: from_nanos(row.try_get(3).map_err(get)?)?,
            last_used_at: opt_from_nanos(row.try_get(4).map_err(get)?)?,
        },
        TokenHash(
            hash.try_into()
                .map_err(|_| StoreError::Corrupt("a token hash is not 32 bytes".into()))?,
        ),
    ))
}

pub(super) async fn create(
    conn: &mut SqliteConnection,
    new: NewApiToken,
    at: Timestamp,
) -> Result<ApiToken, StoreError> {
    let ctx = "creating a token";
    let done = sqlx::query(
        "INSERT INTO api_tokens (uuid, name, role, token_hash, created_at) \
         VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(new.id.as_bytes().as_slice())
    .bind(new.name.as_str())
    .bind(new.role.as_str())
    .bind(new.token_hash.0.as_slice())
    .bind(nanos(at))
    .execute(&mut *conn)
    .await
    .map_err(db(ctx))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::TokenNameTaken(new.name));
    }
    Ok(ApiToken {
        id: new.id,
        name: new.name,
        role: new.role,
        created_at: from_nanos(nanos(at))?,
        last_used_at: None,
    })
}

pub(super) async fn list(conn: &mut SqliteConnection) -> Result<Vec<ApiToken>, StoreError> {
    let rows = sqlx::query(concat!(
        select_tokens!(),
        " WHERE revoked_at IS NULL ORDER BY name"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(db("listing tokens"))?;
    rows.iter()
        .map(|r| token_from_row(r).map(|(t, _)| t))
        .collect()
}

pub(super) async fn credentials(
    conn: &mut SqliteConnection,
    id: Uuid,
) -> Result<Option<(ApiToken, TokenHash)>, StoreError> {
    let row = sqlx::query(concat!(
        select_tokens!(),
        " WHERE uuid = ? AND revoked_at IS NULL"
    ))
    .bind(id.as_bytes().as_slice())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading a token"))?;
    row.as_ref().map(token_from_row).transpose()
}

pub(super) async fn revoke(
    conn: &mut SqliteConnection,
    name: &str,
    at: Timestamp,
) -> Result<ApiToken, StoreError> {
    let row = sqlx::query(
        "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL \
         RETURNING uuid, name, role, created_at, last_used_at, token_hash",
    )
    .bind(nanos(at))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("revoking a token"))?;
    match row {
        Some(row) => Ok(token_from_row(&row)?.0),
        None => Err(StoreError::TokenNotFound(name.to_owned())),
    }
}

pub(super) async fn note_use(
    conn: &mut SqliteConnection,
    id: Uuid,
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE uuid = ?")
        .bind(nanos(at))
        .bind(id.as_bytes().as_slice())
        .execute(&mut *conn)
        .await
        .map_err(db("noting a token's use"))?;
    Ok(())
}

pub(super) async fn append_event(
    conn: &mut SqliteConnection,
    event: NewAdminEvent,
) -> Result<AdminEvent, StoreError> {
    let ctx = "recording an admin event";
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
        .await
        .map_err(db(ctx))?;
    let last = sqlx::query("SELECT seq, hash FROM admin_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(ctx))?;
    let (seq, prev) = match last {
        None => (1, ADMIN_CHAIN_START),
        Some(row) => {
            let seq: i64 = row.try_get(0).map_err(db(ctx))?;
            let hash: Vec<u8> = row.try_get(1).map_err(db(ctx))?;
            (seq + 1, hash32(hash)?)
        }
    };
    let hash = admin_chain_hash(&prev, seq, &event);
    sqlx::query(
        "INSERT INTO admin_events (seq, uuid, at_ns, actor_id, actor_name, actor_role, action, \
         target, detail, key_id, public_key, signature, prev, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(seq)
    .bind(event.id.as_bytes().as_slice())
    .bind(nanos(event.at))
    .bind(event.actor_id.map(|id| id.as_bytes().to_vec()))
    .bind(event.actor_name.as_str())
    .bind(event.actor_role.as_str())
    .bind(event.action.as_str())
    .bind(event.target.as_str())
    .bind(event.detail.as_str())
    .bind(event.key_id.as_str())
    .bind(event.public_key.as_slice())
    .bind(event.signature.as_slice())
    .bind(prev.as_slice())
    .bind(hash.as_slice())
    .execute(&mut *tx)
    .await
    .map_err(db(ctx))?;
    tx.commit().await.map_err(db(ctx))?;
    Ok(AdminEvent {
        seq,
        event,
        prev,
        hash,
    })
}

pub(super) async fn events(
    conn: &mut SqliteConnection,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<AdminEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, uuid, at_ns, actor_id, actor_name, actor_role, action, target, detail, \
         key_id, public_key, signature, prev, hash FROM admin_events WHERE seq > ? \
         ORDER BY seq LIMIT ?",
    )
    .bind(after_seq)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading admin events"))?;
    rows.iter().map(event_from_row).collect()
}

fn event_from_row(row: &SqliteRow) -> Result<AdminEvent, StoreError> {
    let get = |e: sqlx::Error| StoreError::database("reading an admin event")(e);
    let actor: Option<Vec<u8>> = row.try_get(3).map_err(get)?;
    Ok(AdminEvent {
        seq: row.try_get(0).map_err(get)?,
        event: NewAdminEvent {
            id: uuid(row.try_get::<&[u8], _>(1).map_err(get)?)?,
            at: from_nanos(row.try_get(2).map_err(get)?)?,
            actor_id: actor.as_deref().map(uuid).transpose()?,
            actor_name: row.try_get(4).map_err(get)?,
            actor_role: row.try_get(5).map_err(get)?,
            action: row.try_get(6).map_err(get)?,
            target: row.try_get(7).map_err(get)?,
            detail: row.try_get(8).map_err(get)?,
            key_id: row.try_get(9).map_err(get)?,
            public_key: row.try_get(10).map_err(get)?,
            signature: row.try_get(11).map_err(get)?,
        },
        prev: hash32(row.try_get(12).map_err(get)?)?,
        hash: hash32(row.try_get(13).map_err(get)?)?,
    })
}

fn hash32(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("an admin event hash is not 32 bytes".into()))
}
