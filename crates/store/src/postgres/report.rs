//! Reports over stored records on PostgreSQL: a session's gaps, a
//! workspace's sessions, a workspace's activity in a time range, the last
//! record id.

use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::read::agent_keys;
use super::text::{decode, encode};
use super::{col, db};
use crate::StoreError;
use crate::convert::{count_from_sql, from_nanos, nanos};
use crate::hosts::top_hosts;
use crate::model::{
    ActivityQuery, Loss, MINUTE_NANOS, MinuteActivity, RecordId, SequenceRange, SessionActivity,
    WorkspaceActivity,
};
use crate::sessions::{LiveRows, LossRow, SessionRow, Sessions, loss_source};

const SESSION_GAPS: &str = "SELECT prev + 1, seq - 1 FROM ( \
        SELECT seq, lag(seq) OVER (ORDER BY seq) AS prev FROM ( \
            SELECT DISTINCT sequence_number::bigint AS seq FROM records \
            WHERE session_id = $1 AND agent_id = ANY($2) AND NOT conflict) d) g \
    WHERE seq > prev + 1 ORDER BY seq LIMIT $3";

pub(super) async fn session_gaps(
    pool: &PgPool,
    workspace_id: Uuid,
    session_id: &str,
    limit: u32,
) -> Result<Vec<SequenceRange>, StoreError> {
    let ctx = "finding a session's gaps";
    let agents = agent_keys(pool, workspace_id).await?;
    let rows = sqlx::query(SESSION_GAPS)
        .bind(encode(session_id))
        .bind(&agents)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(db(ctx))?;
    rows.iter()
        .map(|row| {
            Ok(SequenceRange {
                first: col(row, 0, ctx)?,
                last: col(row, 1, ctx)?,
            })
        })
        .collect()
}

const LIVE_SESSIONS: &str = "SELECT session_id, \
        count(*) FILTER (WHERE NOT conflict), count(*) FILTER (WHERE conflict), \
        min(sequence_number) FILTER (WHERE NOT conflict), \
        max(sequence_number) FILTER (WHERE NOT conflict), \
        min(id), max(id), min(occurred_ns), max(occurred_ns) \
    FROM records WHERE agent_id = ANY($1) AND session_id IS NOT NULL GROUP BY session_id";

pub(super) async fn sessions(
    pool: &PgPool,
    workspace_id: Uuid,
) -> Result<Vec<SessionActivity>, StoreError> {
    let ctx = "listing sessions";
    let agents = agent_keys(pool, workspace_id).await?;
    let mut sessions = Sessions::new(workspace_id);
    for row in sqlx::query(LIVE_SESSIONS)
        .bind(&agents)
        .fetch_all(pool)
        .await
        .map_err(db(ctx))?
    {
        let row = &row;
        sessions.add_live(LiveRows {
            session_id: decode(col(row, 0, ctx)?),
            distinct: count_from_sql(col(row, 1, ctx)?),
            conflicts: count_from_sql(col(row, 2, ctx)?),
            first_sequence_number: col(row, 3, ctx)?,
            last_sequence_number: col(row, 4, ctx)?,
            first_id: col(row, 5, ctx)?,
            last_id: col(row, 6, ctx)?,
            first_time: Some(from_nanos(col(row, 7, ctx)?)?),
            last_time: Some(from_nanos(col(row, 8, ctx)?)?),
        });
    }
    for row in sqlx::query(
        "SELECT session_id, final_sequence_number, purged_records, purged_conflicts, \
         purged_first, purged_last, policy_digest FROM sessions WHERE agent_id = ANY($1)",
    )
    .bind(&agents)
    .fetch_all(pool)
    .await
    .map_err(db(ctx))?
    {
        let row = &row;
        sessions.add_session_row(SessionRow {
            session_id: decode(col(row, 0, ctx)?),
            final_sequence_number: col(row, 1, ctx)?,
            purged_records: count_from_sql(col(row, 2, ctx)?),
            purged_conflicts: count_from_sql(col(row, 3, ctx)?),
            purged_first: col(row, 4, ctx)?,
            purged_last: col(row, 5, ctx)?,
            policy_digest: col(row, 6, ctx)?,
        });
    }
    for row in sqlx::query(
        "SELECT session_id, source, reason, records, frames FROM losses \
         WHERE agent_id = ANY($1) AND session_id <> ''",
    )
    .bind(&agents)
    .fetch_all(pool)
    .await
    .map_err(db(ctx))?
    {
        let row = &row;
        let source: String = col(row, 1, ctx)?;
        sessions.add_loss(LossRow {
            session_id: decode(col(row, 0, ctx)?),
            loss: Loss {
                source: loss_source(&source)?,
                reason: decode(col(row, 2, ctx)?),
                records: count_from_sql(col(row, 3, ctx)?),
                frames: count_from_sql(col(row, 4, ctx)?),
            },
        });
    }
    Ok(sessions.finish())
}

const ACTIVITY: &str = "SELECT allowed, count(*), count(*) FILTER (WHERE conflict), \
        min(occurred_ns), max(occurred_ns) \
    FROM records WHERE agent_id = ANY($1) \
        AND ($2::bigint IS NULL OR occurred_ns >= $2) AND ($3::bigint IS NULL OR occurred_ns < $3) \
    GROUP BY allowed";

/// The part of denied URLs after "://" up to the first '/', counted;
/// hosts.rs does the rest.
const DENIED_PREFIXES: &str = "SELECT split_part(CASE WHEN strpos(url, '://') > 0 \
        THEN substr(url, strpos(url, '://') + 3) ELSE url END, '/', 1) AS authority, count(*) \
    FROM records WHERE agent_id = ANY($1) AND NOT allowed \
        AND ($2::bigint IS NULL OR occurred_ns >= $2) AND ($3::bigint IS NULL OR occurred_ns < $3) \
    GROUP BY 1";

pub(super) async fn workspace_activity(
    pool: &PgPool,
    activity: &ActivityQuery,
) -> Result<WorkspaceActivity, StoreError> {
    let ctx = "counting a workspace's records";
    let agents = agent_keys(pool, activity.workspace_id).await?;
    let since = activity.since.map(nanos);
    let until = activity.until.map(nanos);
    let mut out = WorkspaceActivity::default();
    for row in sqlx::query(ACTIVITY)
        .bind(&agents)
        .bind(since)
        .bind(until)
        .fetch_all(pool)
        .await
        .map_err(db(ctx))?
    {
        let row = &row;
        let count = count_from_sql(col(row, 1, ctx)?);
        if col::<bool>(row, 0, ctx)? {
            out.allowed = count;
        } else {
            out.denied = count;
        }
        out.conflicts += count_from_sql(col(row, 2, ctx)?);
        let first = from_nanos(col(row, 3, ctx)?)?;
        let last = from_nanos(col(row, 4, ctx)?)?;
        out.first_time = Some(out.first_time.map_or(first, |t| t.min(first)));
        out.last_time = out.last_time.max(Some(last));
    }
    if out.denied > 0 && activity.top_hosts > 0 {
        let rows = sqlx::query(DENIED_PREFIXES)
            .bind(&agents)
            .bind(since)
            .bind(until)
            .fetch_all(pool)
            .await
            .map_err(db(ctx))?;
        let mut prefixes = Vec::with_capacity(rows.len());
        for row in &rows {
            prefixes.push((decode(col(row, 0, ctx)?), count_from_sql(col(row, 1, ctx)?)));
        }
        out.top_denied_hosts = top_hosts(prefixes, activity.top_hosts);
    }
    Ok(out)
}

pub(super) async fn last_record_id(pool: &PgPool) -> Result<Option<RecordId>, StoreError> {
    let ctx = "reading the last record id";
    let row = sqlx::query("SELECT max(id) FROM records")
        .fetch_one(pool)
        .await
        .map_err(db(ctx))?;
    col(&row, 0, ctx)
}

/// Records per minute of effective time (one workspace's, or all), for the
/// minutes that contain `since` or start before `until`.
pub(super) async fn minute_activity(
    pool: &PgPool,
    workspace_id: Option<Uuid>,
    since: jiff::Timestamp,
    until: jiff::Timestamp,
) -> Result<Vec<MinuteActivity>, StoreError> {
    let ctx = "counting records per minute";
    let rows = sqlx::query(
        "SELECT floor(r.occurred_ns / $4::double precision)::bigint AS minute, \
            count(*) FILTER (WHERE r.allowed), count(*) FILTER (WHERE NOT r.allowed) \
         FROM records r JOIN agents a ON a.id = r.agent_id \
         JOIN workspaces w ON w.id = a.workspace_id \
         WHERE ($1::uuid IS NULL OR w.uuid = $1) AND r.occurred_ns >= $2 AND r.occurred_ns < $3 \
         GROUP BY minute ORDER BY minute",
    )
    .bind(workspace_id)
    .bind(nanos(since).div_euclid(MINUTE_NANOS) * MINUTE_NANOS)
    .bind(
        nanos(until)
            .saturating_add(MINUTE_NANOS - 1)
            .div_euclid(MINUTE_NANOS)
            .saturating_mul(MINUTE_NANOS),
    )
    .bind(MINUTE_NANOS as f64)
    .fetch_all(pool)
    .await
    .map_err(db(ctx))?;
    rows.iter()
        .map(|row| {
            let minute: i64 = col(row, 0, ctx)?;
            Ok(MinuteActivity {
                minute: from_nanos(minute.saturating_mul(MINUTE_NANOS))?,
                allowed: count_from_sql(col(row, 1, ctx)?),
                denied: count_from_sql(col(row, 2, ctx)?),
            })
        })
        .collect()
}
