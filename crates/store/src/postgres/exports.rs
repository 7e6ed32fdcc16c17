//! Export cursors and leases (see [`crate::exports`]) in PostgreSQL. Lease
//! times come from the database's clock (`clock_timestamp()`), so replicas
//! whose clocks disagree still agree on when a lease ends. Two replicas
//! claiming one sink at once are serialized by the row (`ON CONFLICT ... DO
//! UPDATE ... WHERE` locks it): exactly one of them gets it.

use std::time::Duration;

use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::db;
use crate::StoreError;
use crate::convert::from_nanos;
use crate::exports::{ExportState, lease_nanos};
use crate::model::RecordId;

/// The database's clock as Unix nanoseconds (microsecond precision).
macro_rules! db_now {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000000000)::bigint"
    };
}

pub(super) async fn claim(
    pool: &PgPool,
    sink: &str,
    holder: Uuid,
    ttl: Duration,
) -> Result<Option<RecordId>, StoreError> {
    let row = sqlx::query(concat!(
        "WITH now AS (SELECT ",
        db_now!(),
        " AS t) \
         INSERT INTO export_cursors AS c (sink, cursor, holder, lease_expires_at, updated_at) \
         SELECT $1, 0, $2, now.t + $3, now.t FROM now \
         ON CONFLICT (sink) DO UPDATE SET holder = excluded.holder, \
             lease_expires_at = excluded.lease_expires_at, updated_at = excluded.updated_at \
         WHERE c.holder IS NULL OR c.holder = excluded.holder \
             OR c.lease_expires_at <= excluded.updated_at \
         RETURNING c.cursor"
    ))
    .bind(sink)
    .bind(holder)
    .bind(lease_nanos(ttl))
    .fetch_optional(pool)
    .await
    .map_err(db("claiming an export lease"))?;
    row.map(|r| r.try_get(0).map_err(db("claiming an export lease")))
        .transpose()
}

pub(super) async fn save(
    pool: &PgPool,
    sink: &str,
    holder: Uuid,
    cursor: RecordId,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let done = sqlx::query(concat!(
        "UPDATE export_cursors SET cursor = GREATEST(cursor, $1), \
             lease_expires_at = ",
        db_now!(),
        " + $2, updated_at = ",
        db_now!(),
        " WHERE sink = $3 AND holder = $4"
    ))
    .bind(cursor)
    .bind(lease_nanos(ttl))
    .bind(sink)
    .bind(holder)
    .execute(pool)
    .await
    .map_err(db("saving an export cursor"))?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn release(pool: &PgPool, sink: &str, holder: Uuid) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "UPDATE export_cursors SET holder = NULL, lease_expires_at = 0, updated_at = ",
        db_now!(),
        " WHERE sink = $1 AND holder = $2"
    ))
    .bind(sink)
    .bind(holder)
    .execute(pool)
    .await
    .map_err(db("releasing an export lease"))?;
    Ok(())
}

pub(super) async fn states(pool: &PgPool) -> Result<Vec<ExportState>, StoreError> {
    let rows = sqlx::query(
        "SELECT sink, cursor, holder, lease_expires_at, updated_at FROM export_cursors \
         ORDER BY sink",
    )
    .fetch_all(pool)
    .await
    .map_err(db("reading export cursors"))?;
    rows.iter()
        .map(|row| {
            let get = |e: sqlx::Error| StoreError::database("reading export cursors")(e);
            let expires: i64 = row.try_get(3).map_err(get)?;
            Ok(ExportState {
                sink: row.try_get(0).map_err(get)?,
                cursor: row.try_get(1).map_err(get)?,
                holder: row.try_get(2).map_err(get)?,
                lease_expires_at: (expires != 0).then(|| from_nanos(expires)).transpose()?,
                updated_at: from_nanos(row.try_get(4).map_err(get)?)?,
            })
        })
        .collect()
}
