//! Export cursors and leases (see [`crate::exports`]) in SQLite: rare,
//! small writes on the registry's connection, each its own transaction.
//! One SQLite file serves one control plane, but the lease works the same
//! as PostgreSQL's (a second store instance on the file waits its turn).

use std::time::Duration;

use jiff::Timestamp;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use crate::StoreError;
use crate::convert::{from_nanos, nanos, uuid};
use crate::exports::{ExportState, lease_nanos};
use crate::model::RecordId;

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    StoreError::database(context)
}

pub(super) async fn claim(
    conn: &mut SqliteConnection,
    sink: &str,
    holder: Uuid,
    ttl: Duration,
) -> Result<Option<RecordId>, StoreError> {
    let now = nanos(Timestamp::now());
    let expires = now.saturating_add(lease_nanos(ttl));
    // Taken when free, expired or already ours; otherwise no row comes back.
    let row = sqlx::query(
        "INSERT INTO export_cursors (sink, cursor, holder, lease_expires_at, updated_at) \
         VALUES (?1, 0, ?2, ?3, ?4) \
         ON CONFLICT (sink) DO UPDATE SET holder = excluded.holder, \
             lease_expires_at = excluded.lease_expires_at, updated_at = excluded.updated_at \
         WHERE export_cursors.holder IS NULL OR export_cursors.holder = excluded.holder \
             OR export_cursors.lease_expires_at <= ?4 \
         RETURNING cursor",
    )
    .bind(sink)
    .bind(holder.as_bytes().as_slice())
    .bind(expires)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("claiming an export lease"))?;
    row.map(|r| r.try_get(0).map_err(db("claiming an export lease")))
        .transpose()
}

pub(super) async fn save(
    conn: &mut SqliteConnection,
    sink: &str,
    holder: Uuid,
    cursor: RecordId,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let now = nanos(Timestamp::now());
    let done = sqlx::query(
        "UPDATE export_cursors SET cursor = MAX(cursor, ?1), lease_expires_at = ?2, \
             updated_at = ?3 \
         WHERE sink = ?4 AND holder = ?5",
    )
    .bind(cursor)
    .bind(now.saturating_add(lease_nanos(ttl)))
    .bind(now)
    .bind(sink)
    .bind(holder.as_bytes().as_slice())
    .execute(&mut *conn)
    .await
    .map_err(db("saving an export cursor"))?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn release(
    conn: &mut SqliteConnection,
    sink: &str,
    holder: Uuid,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE export_cursors SET holder = NULL, lease_expires_at = 0, updated_at = ?1 \
         WHERE sink = ?2 AND holder = ?3",
    )
    .bind(nanos(Timestamp::now()))
    .bind(sink)
    .bind(holder.as_bytes().as_slice())
    .execute(&mut *conn)
    .await
    .map_err(db("releasing an export lease"))?;
    Ok(())
}

pub(super) async fn states(conn: &mut SqliteConnection) -> Result<Vec<ExportState>, StoreError> {
    let rows = sqlx::query(
        "SELECT sink, cursor, holder, lease_expires_at, updated_at FROM export_cursors \
         ORDER BY sink",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading export cursors"))?;
    rows.iter()
        .map(|row| {
            let get = |e: sqlx::Error| StoreError::database("reading export cursors")(e);
            let holder: Option<Vec<u8>> = row.try_get(2).map_err(get)?;
            let expires: i64 = row.try_get(3).map_err(get)?;
            Ok(ExportState {
                sink: row.try_get(0).map_err(get)?,
                cursor: row.try_get(1).map_err(get)?,
                holder: holder.as_deref().map(uuid).transpose()?,
                lease_expires_at: (expires != 0).then(|| from_nanos(expires)).transpose()?,
                updated_at: from_nanos(row.try_get(4).map_err(get)?)?,
            })
        })
        .collect()
}
