//! Where a record's time goes, read back from the store after a run: every
//! stored record carries its event time (the client made it), the time the
//! agent read it from its socket (the batch's receive time) and the time the
//! control plane took the call that delivered it (the batch's commit stamp,
//! taken when the call arrives, before the commit). So per record:
//!
//! - client: event time to agent read (client queue, batching, socket);
//! - agent: agent read to the server's call (spool fsync, forwarder queue,
//!   gRPC);
//!
//! and what the end-to-end latency adds to both is the server's (decode,
//! group commit, printing the line).

use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use sqlx::{ConnectOptions, Connection, Row};

use super::latency::Latency;

/// The per-stage latencies of one run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Stages {
    /// Event time to the agent reading the record.
    pub client: Latency,
    /// The agent reading it to the server taking the call.
    pub agent: Latency,
    /// Event time to the server taking the call.
    pub to_server: Latency,
}

/// Unix nanoseconds of (event time, agent read, server call) per record.
type Times = Vec<(i64, i64, i64)>;

const SQLITE_TIMES: &str = "SELECT r.event_secs, r.event_nanos, b.received_secs, b.received_nanos, \
     b.committed_at FROM records r JOIN batches b ON b.id = r.batch_id \
     WHERE r.event_secs IS NOT NULL";

const POSTGRES_TIMES: &str = "SELECT r.event_secs, r.event_nanos::bigint, b.received_secs, \
     b.received_nanos::bigint, b.committed_at FROM records r \
     JOIN batches b ON b.id = r.batch_id JOIN agents a ON a.id = b.agent_id \
     JOIN workspaces w ON w.id = a.workspace_id \
     WHERE r.event_secs IS NOT NULL AND w.uuid = $1::uuid";

/// Reads the times of every record of a fresh SQLite database.
pub async fn sqlite(database: &Path) -> anyhow::Result<Stages> {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(database)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("opening {}", database.display()))?;
    let rows = sqlx::query(SQLITE_TIMES)
        .fetch_all(&mut conn)
        .await
        .context("reading the record times")?;
    let times = rows.iter().map(times_of).collect::<Result<Times, _>>()?;
    let _ = conn.close().await;
    Ok(Stages::of(&times))
}

/// Reads the times of the workspace's records from PostgreSQL.
pub async fn postgres(url: &str, workspace_id: &str) -> anyhow::Result<Stages> {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    let rows = sqlx::query(POSTGRES_TIMES)
        .bind(workspace_id)
        .fetch_all(&mut conn)
        .await
        .context("reading the record times")?;
    let times = rows.iter().map(times_of).collect::<Result<Times, _>>()?;
    let _ = conn.close().await;
    Ok(Stages::of(&times))
}

fn times_of<R: Row>(row: &R) -> Result<(i64, i64, i64), sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let nanos = |secs: i64, nanos: i64| secs.saturating_mul(1_000_000_000).saturating_add(nanos);
    Ok((
        nanos(row.try_get(0)?, row.try_get(1)?),
        nanos(row.try_get(2)?, row.try_get(3)?),
        row.try_get(4)?,
    ))
}

impl Stages {
    fn of(times: &[(i64, i64, i64)]) -> Stages {
        let span = |f: fn(&(i64, i64, i64)) -> i64| {
            let mut nanos: Vec<u64> = times.iter().map(|t| f(t).max(0) as u64).collect();
            Latency::of(&mut nanos)
        };
        Stages {
            client: span(|&(event, read, _)| read - event),
            agent: span(|&(_, read, call)| call - read),
            to_server: span(|&(event, _, call)| call - event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stage_is_measured_from_its_own_start() {
        let ms = 1_000_000;
        let times: Vec<_> = (0..100)
            .map(|i| (i * ms, i * ms + 2 * ms, i * ms + 7 * ms))
            .collect();
        let stages = Stages::of(&times);
        assert_eq!(stages.client.p50_ms, 2.0);
        assert_eq!(stages.agent.p99_ms, 5.0);
        assert_eq!(stages.to_server.max_ms, 7.0);
        assert_eq!(stages.client.samples, 100);
    }
}
