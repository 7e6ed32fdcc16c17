//! Which replica prints which boundary line.
//!
//! Every store instance takes a fresh number from the `replica_numbers`
//! sequence and holds a *session* advisory lock on it, on a connection of its
//! own, for as long as it lives. Its outbox rows carry that number. A
//! replica's lock is free exactly when its connection is gone: the process
//! died (the kernel closes its sockets, and PostgreSQL ends the session), it
//! closed the store, or the network dropped the connection.
//!
//! At start, a replica adopts the lines of replicas that are gone: in one
//! transaction it try-locks the number of every other replica that owns
//! outbox rows (`pg_try_advisory_xact_lock`, which fails while the owner
//! holds its session lock) and moves the rows of those it could lock to its
//! own number. Two replicas starting at once cannot both adopt one dead
//! replica's rows: the transaction lock lets one of them in, and the other
//! then finds the rows moved. Numbers are never reused, so a new replica is
//! never mistaken for a dead one.
//!
//! The one case that can print a line twice is a live replica whose lock
//! connection broke (a network fault) while another replica started: the
//! starter adopts the lines the first one is still about to print. The lock
//! connection is checked every few seconds and re-established, which keeps
//! that window short; printing a line twice is the outbox's failure mode
//! anyway (a crash between print and mark does the same), never losing one.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::db;
use crate::StoreError;

/// The first key of replica locks (the two-key form, so that it can never
/// meet the single-key commit lock); the second is the replica number.
const REPLICA_LOCK_SPACE: i32 = 0x5744;
/// How often the lock connection is checked.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The task that holds this replica's lock.
pub(super) struct Liveness {
    replica: i32,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Liveness {
    /// Takes a replica number and its lock on `conn`, which it keeps; with
    /// `options` it reconnects when the connection breaks. The task ends,
    /// closing the connection and so releasing the lock, on
    /// [`stop`](Liveness::stop) or when this value is dropped.
    pub(super) async fn start(
        mut conn: PgConnection,
        options: PgConnectOptions,
    ) -> Result<Liveness, StoreError> {
        let replica: i32 = sqlx::query("SELECT nextval('replica_numbers')::integer")
            .fetch_one(&mut conn)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(db("taking a replica number"))?;
        // Nobody else ever locks a fresh number for longer than a
        // transaction, so this returns at once.
        sqlx::query("SELECT pg_advisory_lock($1, $2)")
            .bind(REPLICA_LOCK_SPACE)
            .bind(replica)
            .execute(&mut conn)
            .await
            .map_err(db("locking the replica number"))?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(hold(conn, options, replica, stopped));
        Ok(Liveness {
            replica,
            stop,
            task,
        })
    }

    pub(super) fn replica(&self) -> i32 {
        self.replica
    }

    /// Releases the lock and waits for the task to end.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the replica lock task failed");
        }
    }
}

/// Keeps the lock until told to stop (or the [`Liveness`] is dropped).
async fn hold(
    conn: PgConnection,
    options: PgConnectOptions,
    replica: i32,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut conn = Some(conn);
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    let mut lost = false;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = check.tick() => {}
        }
        let healthy = match conn.as_mut() {
            Some(c) => c.ping().await.is_ok(),
            None => false,
        };
        if healthy {
            continue;
        }
        conn = None;
        match relock(&options, replica).await {
            Ok(c) => {
                if lost {
                    tracing::info!(replica, "replica lock connection re-established");
                }
                lost = false;
                conn = Some(c);
            }
            Err(e) => {
                if !lost {
                    tracing::warn!(
                        replica,
                        error = %e,
                        "lost the replica lock connection; another replica starting now may print lines this one still prints"
                    );
                }
                lost = true;
            }
        }
    }
    if let Some(conn) = conn
        && let Err(e) = conn.close().await
    {
        tracing::debug!(error = %e, "closing the replica lock connection");
    }
}

/// A new lock connection holding this replica's number again.
async fn relock(options: &PgConnectOptions, replica: i32) -> Result<PgConnection, sqlx::Error> {
    let mut conn = options.connect().await?;
    let locked: bool = sqlx::query("SELECT pg_try_advisory_lock($1, $2)")
        .bind(REPLICA_LOCK_SPACE)
        .bind(replica)
        .fetch_one(&mut conn)
        .await?
        .try_get(0)?;
    if locked {
        Ok(conn)
    } else {
        // A starting replica holds it for an adoption right now.
        Err(sqlx::Error::Protocol(
            "the replica number is locked by another session".into(),
        ))
    }
}

/// Moves the unprinted lines of replicas that are gone to `me`; returns how
/// many.
pub(super) async fn adopt_orphaned_lines(pool: &PgPool, me: i32) -> Result<u64, StoreError> {
    let ctx = "adopting unprinted lines";
    let mut tx = pool.begin().await.map_err(db(ctx))?;
    let owners: Vec<i32> =
        sqlx::query("SELECT DISTINCT replica FROM line_outbox WHERE replica <> $1")
            .bind(me)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(ctx))?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(db(ctx))?;
    let mut gone = Vec::new();
    for owner in owners {
        let free: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1, $2)")
            .bind(REPLICA_LOCK_SPACE)
            .bind(owner)
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(db(ctx))?;
        if free {
            gone.push(owner);
        }
    }
    if gone.is_empty() {
        return Ok(0);
    }
    // Rows are locked in key order, as everywhere else (see `outbox`), so
    // that this cannot deadlock with a purge cutting the same runs.
    let moved: i64 = sqlx::query(
        "WITH moved AS (UPDATE line_outbox SET replica = $1 WHERE first_id IN \
         (SELECT first_id FROM line_outbox WHERE replica = ANY($2) ORDER BY first_id \
         FOR UPDATE) RETURNING last_id - first_id + 1 AS lines) \
         SELECT COALESCE(sum(lines), 0)::bigint FROM moved",
    )
    .bind(me)
    .bind(&gone)
    .fetch_one(&mut *tx)
    .await
    .and_then(|row| row.try_get(0))
    .map_err(db(ctx))?;
    tx.commit().await.map_err(db(ctx))?;
    Ok(u64::try_from(moved).unwrap_or(0))
}
