//! Reports over stored records on SQLite: a session's gaps, a workspace's
//! sessions, a workspace's activity in a time range, the last record id.

use sqlx::{AssertSqlSafe, Row, SqliteConnection};
use uuid::Uuid;

use super::read::agent_keys;
use crate::StoreError;
use crate::convert::{count_from_sql, from_nanos, nanos};
use crate::hosts::top_hosts;
use crate::model::{
    ActivityQuery, Loss, MINUTE_NANOS, MinuteCounts, RecordId, SequenceRange, SessionActivity,
    WorkspaceActivity,
};
use crate::sessions::{LiveRows, LossRow, SessionRow, Sessions, loss_source};

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    StoreError::database(context)
}

/// `agent_id IN (?, ...)` for `n` agents.
fn agents_in(n: usize) -> String {
    format!("agent_id IN ({})", vec!["?"; n].join(", "))
}

/// A query with fixed SQL text; the caller binds every value.
fn query(sql: String) -> sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(AssertSqlSafe(sql))
}

pub(super) async fn session_gaps(
    conn: &mut SqliteConnection,
    workspace_id: Uuid,
    session_id: &str,
    limit: u32,
) -> Result<Vec<SequenceRange>, StoreError> {
    let ctx = "finding a session's gaps";
    let agents = agent_keys(conn, workspace_id).await?;
    if agents.is_empty() {
        return Ok(Vec::new());
    }
    // `conflict = 0` keeps the partial session-key index in play; each
    // number appears once per agent, DISTINCT merges agents.
    let mut q = query(format!(
        "SELECT prev + 1, seq - 1 FROM ( \
            SELECT seq, LAG(seq) OVER (ORDER BY seq) AS prev FROM ( \
                SELECT DISTINCT sequence_number AS seq FROM records \
                WHERE {} AND session_id = ? AND conflict = 0)) \
         WHERE seq > prev + 1 ORDER BY seq LIMIT ?",
        agents_in(agents.len())
    ));
    for agent in &agents {
        q = q.bind(*agent);
    }
    let rows = q
        .bind(session_id.to_owned())
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(db(ctx))?;
    rows.iter()
        .map(|row| {
            Ok(SequenceRange {
                first: row.try_get(0).map_err(db(ctx))?,
                last: row.try_get(1).map_err(db(ctx))?,
            })
        })
        .collect()
}

pub(super) async fn sessions(
    conn: &mut SqliteConnection,
    workspace_id: Uuid,
) -> Result<Vec<SessionActivity>, StoreError> {
    let ctx = "listing sessions";
    let agents = agent_keys(conn, workspace_id).await?;
    let mut sessions = Sessions::new(workspace_id);
    if agents.is_empty() {
        return Ok(sessions.finish());
    }
    let within = agents_in(agents.len());

    let mut q = query(format!(
        "SELECT session_id, sum(conflict = 0), sum(conflict = 1), \
            min(CASE WHEN conflict = 0 THEN sequence_number END), \
            max(CASE WHEN conflict = 0 THEN sequence_number END), \
            min(id), max(id), min(occurred_ns), max(occurred_ns) \
         FROM records WHERE {within} AND session_id IS NOT NULL GROUP BY session_id"
    ));
    for agent in &agents {
        q = q.bind(*agent);
    }
    for row in q.fetch_all(&mut *conn).await.map_err(db(ctx))? {
        let get = |i| row.try_get::<Option<i64>, _>(i).map_err(db(ctx));
        sessions.add_live(LiveRows {
            session_id: row.try_get(0).map_err(db(ctx))?,
            distinct: count_from_sql(get(1)?.unwrap_or(0)),
            conflicts: count_from_sql(get(2)?.unwrap_or(0)),
            first_sequence_number: row.try_get(3).map_err(db(ctx))?,
            last_sequence_number: row.try_get(4).map_err(db(ctx))?,
            first_id: get(5)?.unwrap_or(0),
            last_id: get(6)?.unwrap_or(0),
            first_time: get(7)?.map(from_nanos).transpose()?,
            last_time: get(8)?.map(from_nanos).transpose()?,
        });
    }

    let mut q = query(format!(
        "SELECT session_id, final_sequence_number, purged_records, purged_conflicts, \
            purged_first, purged_last FROM sessions WHERE {within}"
    ));
    for agent in &agents {
        q = q.bind(*agent);
    }
    for row in q.fetch_all(&mut *conn).await.map_err(db(ctx))? {
        sessions.add_session_row(SessionRow {
            session_id: row.try_get(0).map_err(db(ctx))?,
            final_sequence_number: row.try_get(1).map_err(db(ctx))?,
            purged_records: count_from_sql(row.try_get(2).map_err(db(ctx))?),
            purged_conflicts: count_from_sql(row.try_get(3).map_err(db(ctx))?),
            purged_first: row.try_get(4).map_err(db(ctx))?,
            purged_last: row.try_get(5).map_err(db(ctx))?,
        });
    }

    let mut q = query(format!(
        "SELECT session_id, source, reason, records, frames FROM losses \
         WHERE {within} AND session_id <> ''"
    ));
    for agent in &agents {
        q = q.bind(*agent);
    }
    for row in q.fetch_all(&mut *conn).await.map_err(db(ctx))? {
        let source: &str = row.try_get(1).map_err(db(ctx))?;
        sessions.add_loss(LossRow {
            session_id: row.try_get(0).map_err(db(ctx))?,
            loss: Loss {
                source: loss_source(source)?,
                reason: row.try_get(2).map_err(db(ctx))?,
                records: count_from_sql(row.try_get(3).map_err(db(ctx))?),
                frames: count_from_sql(row.try_get(4).map_err(db(ctx))?),
            },
        });
    }
    Ok(sessions.finish())
}

pub(super) async fn workspace_activity(
    conn: &mut SqliteConnection,
    activity: &ActivityQuery,
) -> Result<WorkspaceActivity, StoreError> {
    let ctx = "counting a workspace's records";
    let agents = agent_keys(conn, activity.workspace_id).await?;
    let mut out = WorkspaceActivity::default();
    if agents.is_empty() {
        return Ok(out);
    }
    let mut filter = agents_in(agents.len());
    if activity.since.is_some() {
        filter.push_str(" AND occurred_ns >= ?");
    }
    if activity.until.is_some() {
        filter.push_str(" AND occurred_ns < ?");
    }
    let bind_filter = |mut q: sqlx::query::Query<'static, _, _>| {
        for agent in &agents {
            q = q.bind(*agent);
        }
        if let Some(since) = activity.since {
            q = q.bind(nanos(since));
        }
        if let Some(until) = activity.until {
            q = q.bind(nanos(until));
        }
        q
    };

    let q = bind_filter(query(format!(
        "SELECT allowed, count(*), sum(conflict), min(occurred_ns), max(occurred_ns) \
         FROM records WHERE {filter} GROUP BY allowed"
    )));
    for row in q.fetch_all(&mut *conn).await.map_err(db(ctx))? {
        let allowed: bool = row.try_get(0).map_err(db(ctx))?;
        let count = count_from_sql(row.try_get(1).map_err(db(ctx))?);
        if allowed {
            out.allowed = count;
        } else {
            out.denied = count;
        }
        out.conflicts += count_from_sql(row.try_get(2).map_err(db(ctx))?);
        let first = from_nanos(row.try_get(3).map_err(db(ctx))?)?;
        let last = from_nanos(row.try_get(4).map_err(db(ctx))?)?;
        out.first_time = Some(out.first_time.map_or(first, |t| t.min(first)));
        out.last_time = out.last_time.max(Some(last));
    }

    if out.denied > 0 && activity.top_hosts > 0 {
        // The part of the URL after "://" up to the first '/'; hosts.rs does
        // the rest.
        let q = bind_filter(query(format!(
            "SELECT CASE WHEN instr(rest, '/') > 0 THEN substr(rest, 1, instr(rest, '/') - 1) \
                ELSE rest END AS authority, count(*) \
             FROM (SELECT CASE WHEN instr(url, '://') > 0 THEN substr(url, instr(url, '://') + 3) \
                ELSE url END AS rest FROM records WHERE {filter} AND allowed = 0) \
             GROUP BY authority"
        )));
        let mut prefixes = Vec::new();
        for row in q.fetch_all(&mut *conn).await.map_err(db(ctx))? {
            let prefix: String = row.try_get(0).map_err(db(ctx))?;
            prefixes.push((prefix, count_from_sql(row.try_get(1).map_err(db(ctx))?)));
        }
        out.top_denied_hosts = top_hosts(prefixes, activity.top_hosts);
    }
    Ok(out)
}

pub(super) async fn last_record_id(
    conn: &mut SqliteConnection,
) -> Result<Option<RecordId>, StoreError> {
    sqlx::query("SELECT max(id) FROM records")
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(db("reading the last record id"))
}

/// Per-minute counts over the effective-time index. Effective times inside
/// the range are positive, so integer division floors.
pub(super) async fn records_per_minute(
    conn: &mut SqliteConnection,
    since: jiff::Timestamp,
    until: jiff::Timestamp,
) -> Result<Vec<MinuteCounts>, StoreError> {
    let ctx = "counting records per minute";
    let rows = sqlx::query(
        "SELECT occurred_ns / ?1 AS minute, sum(allowed), count(*) FROM records \
         WHERE occurred_ns >= ?2 AND occurred_ns < ?3 GROUP BY minute ORDER BY minute",
    )
    .bind(MINUTE_NANOS)
    .bind(nanos(since))
    .bind(nanos(until))
    .fetch_all(&mut *conn)
    .await
    .map_err(db(ctx))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let minute: i64 = row.try_get(0).map_err(db(ctx))?;
        let allowed = count_from_sql(row.try_get(1).map_err(db(ctx))?);
        let all = count_from_sql(row.try_get(2).map_err(db(ctx))?);
        out.push(MinuteCounts {
            minute: from_nanos(minute.saturating_mul(MINUTE_NANOS))?,
            allowed,
            denied: all.saturating_sub(allowed),
        });
    }
    Ok(out)
}
