//! Named API tokens and admin events on PostgreSQL. Replicas may create the
//! same token name at once: the partial unique index decides. Appends to the
//! admin event chain lock `admin_event_head` first, so replicas extend the
//! chain one at a time.

use jiff::Timestamp;
use sqlx::postgres::{PgPool, PgRow};
use uuid::Uuid;

use super::text::{decode, encode};
use super::{col, db};
use crate::StoreError;
use crate::access::{
    ADMIN_CHAIN_START, AdminEvent, ApiToken, NewAdminEvent, NewApiToken, TokenRole,
    admin_chain_hash,
};
use crate::convert::{from_nanos, nanos, opt_from_nanos};
use crate::model::TokenHash;

/// The columns [`token_from_row`] reads, as a literal for `concat!`.
macro_rules! token_columns {
    () => {
        "uuid, name, role, created_at, last_used_at, token_hash"
    };
}

fn token_from_row(row: &PgRow) -> Result<(ApiToken, TokenHash), StoreError> {
    let ctx = "reading a token";
    let role: String = col(row, 2, ctx)?;
    let hash: Vec<u8> = col(row, 5, ctx)?;
    Ok((
        ApiToken {
            id: col(row, 0, ctx)?,
            name: decode(col(row, 1, ctx)?),
            role: TokenRole::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("token role {role:?}")))?,
            created_at: from_nanos(col(row, 3, ctx)?)?,
            last_used_at: opt_from_nanos(col(row, 4, ctx)?)?,
        },
        TokenHash(
            hash.try_into()
                .map_err(|_| StoreError::Corrupt("a token hash is not 32 bytes".into()))?,
        ),
    ))
}

pub(super) async fn create(
    pool: &PgPool,
    new: NewApiToken,
    at: Timestamp,
) -> Result<ApiToken, StoreError> {
    let done = sqlx::query(
        "INSERT INTO api_tokens (uuid, name, role, token_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(new.id)
    .bind(encode(&new.name))
    .bind(new.role.as_str())
    .bind(new.token_hash.0.as_slice())
    .bind(nanos(at))
    .execute(pool)
    .await
    .map_err(db("creating a token"))?;
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

pub(super) async fn list(pool: &PgPool) -> Result<Vec<ApiToken>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        token_columns!(),
        " FROM api_tokens WHERE revoked_at IS NULL ORDER BY name"
    ))
    .fetch_all(pool)
    .await
    .map_err(db("listing tokens"))?;
    rows.iter()
        .map(|r| token_from_row(r).map(|(t, _)| t))
        .collect()
}

pub(super) async fn credentials(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<(ApiToken, TokenHash)>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        token_columns!(),
        " FROM api_tokens WHERE uuid = $1 AND revoked_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(db("reading a token"))?;
    row.as_ref().map(token_from_row).transpose()
}

pub(super) async fn revoke(
    pool: &PgPool,
    name: &str,
    at: Timestamp,
) -> Result<ApiToken, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL RETURNING ",
        token_columns!()
    ))
    .bind(nanos(at))
    .bind(encode(name))
    .fetch_optional(pool)
    .await
    .map_err(db("revoking a token"))?;
    match row {
        Some(row) => Ok(token_from_row(&row)?.0),
        None => Err(StoreError::TokenNotFound(name.to_owned())),
    }
}

pub(super) async fn note_use(pool: &PgPool, id: Uuid, at: Timestamp) -> Result<(), StoreError> {
    sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE uuid = $2")
        .bind(nanos(at))
        .bind(id)
        .execute(pool)
        .await
        .map_err(db("noting a token's use"))?;
    Ok(())
}

pub(super) async fn append_event(
    pool: &PgPool,
    event: NewAdminEvent,
) -> Result<AdminEvent, StoreError> {
    let ctx = "recording an admin event";
    let mut tx = pool.begin().await.map_err(db(ctx))?;
    // The lock that orders appends across replicas.
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM admin_event_head FOR UPDATE")
        .fetch_one(&mut *tx)
        .await
        .map_err(db(ctx))?;
    let prev = if seq == 0 {
        ADMIN_CHAIN_START
    } else {
        let hash: Vec<u8> = sqlx::query_scalar("SELECT hash FROM admin_events WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(ctx))?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("admin event {seq}, the chain's head, is missing"))
            })?;
        hash32(hash)?
    };
    let seq = seq + 1;
    let hash = admin_chain_hash(&prev, seq, &event);
    sqlx::query(
        "INSERT INTO admin_events (seq, uuid, at_ns, actor_id, actor_name, actor_role, action, \
         target, detail, key_id, public_key, signature, prev, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(seq)
    .bind(event.id)
    .bind(nanos(event.at))
    .bind(event.actor_id)
    .bind(encode(&event.actor_name))
    .bind(encode(&event.actor_role))
    .bind(encode(&event.action))
    .bind(encode(&event.target))
    .bind(encode(&event.detail))
    .bind(encode(&event.key_id))
    .bind(event.public_key.as_slice())
    .bind(event.signature.as_slice())
    .bind(prev.as_slice())
    .bind(hash.as_slice())
    .execute(&mut *tx)
    .await
    .map_err(db(ctx))?;
    sqlx::query("UPDATE admin_event_head SET seq = $1")
        .bind(seq)
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
    pool: &PgPool,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<AdminEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, uuid, at_ns, actor_id, actor_name, actor_role, action, target, detail, \
         key_id, public_key, signature, prev, hash FROM admin_events WHERE seq > $1 \
         ORDER BY seq LIMIT $2",
    )
    .bind(after_seq)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db("reading admin events"))?;
    rows.iter().map(event_from_row).collect()
}

fn event_from_row(row: &PgRow) -> Result<AdminEvent, StoreError> {
    let ctx = "reading an admin event";
    Ok(AdminEvent {
        seq: col(row, 0, ctx)?,
        event: NewAdminEvent {
            id: col(row, 1, ctx)?,
            at: from_nanos(col(row, 2, ctx)?)?,
            actor_id: col(row, 3, ctx)?,
            actor_name: decode(col(row, 4, ctx)?),
            actor_role: decode(col(row, 5, ctx)?),
            action: decode(col(row, 6, ctx)?),
            target: decode(col(row, 7, ctx)?),
            detail: decode(col(row, 8, ctx)?),
            key_id: decode(col(row, 9, ctx)?),
            public_key: col(row, 10, ctx)?,
            signature: col(row, 11, ctx)?,
        },
        prev: hash32(col(row, 12, ctx)?)?,
        hash: hash32(col(row, 13, ctx)?)?,
    })
}

fn hash32(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("an admin event hash is not 32 bytes".into()))
}
