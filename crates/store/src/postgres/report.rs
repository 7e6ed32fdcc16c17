//! Reports on PostgreSQL, read from the counters kept as records commit
//! rather than from the records, as on SQLite: a session's gaps (its
//! sequence ranges), a workspace's sessions (one `sessions` row each), a
//! workspace's activity in a time range (minute and hour buckets, with the
//! partial buckets at the edges counted from blocks), the per-minute chart,
//! the last record id.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use sqlx::postgres::{PgConnection, PgPool};
use uuid::Uuid;

use super::read::{agent_keys, dropped_ranges};
use super::text::{decode, decode_opt, encode};
use super::{col, db};
use crate::StoreError;
use crate::block;
use crate::convert::{count_from_sql, from_nanos, nanos};
use crate::counters::{HOUR, MINUTE, Window, edges, whole_buckets};
use crate::hosts::top_hosts;
use crate::intervals::IntervalSet;
use crate::model::{
    ActivityQuery, Loss, MinuteActivity, RecordId, SequenceRange, SessionActivity,
    WorkspaceActivity,
};
use crate::sessions::{DroppedRow, LiveRows, LossRow, SessionRow, Sessions, loss_source};

pub(super) async fn session_gaps(
    pool: &PgPool,
    workspace_id: Uuid,
    session_id: &str,
    limit: u32,
) -> Result<Vec<SequenceRange>, StoreError> {
    let ctx = "finding a session's gaps";
    let agents = agent_keys(pool, workspace_id).await?;
    let rows = sqlx::query(
        "SELECT first_seq, last_seq FROM session_seqs \
         WHERE agent_id = ANY($1) AND session_id = $2",
    )
    .bind(&agents)
    .bind(encode(session_id))
    .fetch_all(pool)
    .await
    .map_err(db(ctx))?;
    let mut stored = IntervalSet::new();
    for row in &rows {
        stored.insert(col(row, 0, ctx)?, col(row, 1, ctx)?);
    }
    let ranges: Vec<(i64, i64)> = stored.ranges().collect();
    Ok(ranges
        .windows(2)
        .map(|w| SequenceRange {
            first: w[0].1 + 1,
            last: w[1].0 - 1,
        })
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect())
}

pub(super) async fn sessions(
    pool: &PgPool,
    workspace_id: Uuid,
) -> Result<Vec<SessionActivity>, StoreError> {
    let ctx = "listing sessions";
    let mut out = Sessions::new(workspace_id);
    let agents = agent_keys(pool, workspace_id).await?;
    let mut conn = pool.acquire().await.map_err(db(ctx))?;
    for agent in agents {
        let mut extents: HashMap<String, (u64, Option<i32>, Option<i32>)> = HashMap::new();
        let rows = sqlx::query(
            "SELECT session_id, sum(last_seq - first_seq + 1)::bigint, min(first_seq)::integer, \
             max(last_seq)::integer FROM session_seqs WHERE agent_id = $1 GROUP BY session_id",
        )
        .bind(agent)
        .fetch_all(&mut *conn)
        .await
        .map_err(db(ctx))?;
        for row in &rows {
            extents.insert(
                decode(col(row, 0, ctx)?),
                (
                    count_from_sql(col(row, 1, ctx)?),
                    col(row, 2, ctx)?,
                    col(row, 3, ctx)?,
                ),
            );
        }
        let rows = sqlx::query(
            "SELECT session_id, final_sequence_number, purged_records, purged_conflicts, \
             purged_first, purged_last, conflicts, first_id, last_id, first_occurred, \
             last_occurred, policy_digest FROM sessions WHERE agent_id = $1",
        )
        .bind(agent)
        .fetch_all(&mut *conn)
        .await
        .map_err(db(ctx))?;
        for row in &rows {
            let session = decode(col(row, 0, ctx)?);
            let first_id: Option<RecordId> = col(row, 7, ctx)?;
            let last_id: Option<RecordId> = col(row, 8, ctx)?;
            let (distinct, first_seq, last_seq) =
                extents.remove(&session).unwrap_or((0, None, None));
            if let (Some(first_id), Some(last_id)) = (first_id, last_id) {
                let first_time: Option<i64> = col(row, 9, ctx)?;
                let last_time: Option<i64> = col(row, 10, ctx)?;
                out.add_live(LiveRows {
                    session_id: session.clone(),
                    distinct,
                    conflicts: count_from_sql(col(row, 6, ctx)?),
                    first_sequence_number: first_seq,
                    last_sequence_number: last_seq,
                    first_id,
                    last_id,
                    first_time: first_time.map(from_nanos).transpose()?,
                    last_time: last_time.map(from_nanos).transpose()?,
                });
            }
            out.add_session_row(SessionRow {
                session_id: session,
                final_sequence_number: col(row, 1, ctx)?,
                purged_records: count_from_sql(col(row, 2, ctx)?),
                purged_conflicts: count_from_sql(col(row, 3, ctx)?),
                purged_first: col(row, 4, ctx)?,
                purged_last: col(row, 5, ctx)?,
                policy_digest: decode_opt(col(row, 11, ctx)?),
            });
        }
        let rows = sqlx::query(
            "SELECT session_id, source, reason, records, frames FROM losses \
             WHERE agent_id = $1 AND session_id <> ''",
        )
        .bind(agent)
        .fetch_all(&mut *conn)
        .await
        .map_err(db(ctx))?;
        for row in &rows {
            let source: String = col(row, 1, ctx)?;
            out.add_loss(LossRow {
                session_id: decode(col(row, 0, ctx)?),
                loss: Loss {
                    source: loss_source(&source)?,
                    reason: decode(col(row, 2, ctx)?),
                    records: count_from_sql(col(row, 3, ctx)?),
                    frames: count_from_sql(col(row, 4, ctx)?),
                },
            });
        }
    }
    for (session_id, range) in dropped_ranges(pool, workspace_id, None).await? {
        out.add_dropped(DroppedRow { session_id, range });
    }
    Ok(out.finish())
}

/// Counts the records of `agent` with an effective time in `since..until`
/// (nanoseconds) from its blocks.
pub(super) async fn window(
    conn: &mut PgConnection,
    agent: i64,
    since: i64,
    until: i64,
) -> Result<Window, StoreError> {
    let ctx = "counting records in a time range";
    let mut out = Window::default();
    if since >= until {
        return Ok(out);
    }
    let rows = sqlx::query(
        "SELECT data FROM blocks WHERE agent_id = $1 AND max_occurred >= $2 \
         AND min_occurred < $3",
    )
    .bind(agent)
    .bind(since)
    .bind(until)
    .fetch_all(&mut *conn)
    .await
    .map_err(db(ctx))?;
    for row in &rows {
        let data: Vec<u8> = col(row, 0, ctx)?;
        out.add_block(&block::decode(&data)?, since, until);
    }
    Ok(out)
}

pub(super) async fn workspace_activity(
    pool: &PgPool,
    query: &ActivityQuery,
) -> Result<WorkspaceActivity, StoreError> {
    let ctx = "counting a workspace's records";
    let since = query.since.map(nanos);
    let until = query.until.map(nanos);
    let mut out = WorkspaceActivity::default();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut hosts: BTreeMap<String, u64> = BTreeMap::new();
    if since.zip(until).is_some_and(|(s, u)| s >= u) {
        return Ok(out);
    }
    let agents = agent_keys(pool, query.workspace_id).await?;
    let mut conn = pool.acquire().await.map_err(db(ctx))?;
    for &agent in &agents {
        let (m0, m1) = whole_buckets(since, until, MINUTE);
        let row = sqlx::query(
            "SELECT sum(allowed)::bigint, sum(denied)::bigint, sum(conflicts)::bigint, \
             min(min_occurred), max(max_occurred) FROM activity_minutes \
             WHERE agent_id = $1 AND minute >= $2 AND minute < $3",
        )
        .bind(agent)
        .bind(m0)
        .bind(m1)
        .fetch_one(&mut *conn)
        .await
        .map_err(db(ctx))?;
        let mut add = |allowed: i64, denied: i64, conflicts: i64, lo: i64, hi: i64| {
            out.allowed += count_from_sql(allowed);
            out.denied += count_from_sql(denied);
            out.conflicts += count_from_sql(conflicts);
            if allowed + denied > 0 {
                first = first.min(lo);
                last = last.max(hi);
            }
        };
        add(
            col::<Option<i64>>(&row, 0, ctx)?.unwrap_or(0),
            col::<Option<i64>>(&row, 1, ctx)?.unwrap_or(0),
            col::<Option<i64>>(&row, 2, ctx)?.unwrap_or(0),
            col::<Option<i64>>(&row, 3, ctx)?.unwrap_or(i64::MAX),
            col::<Option<i64>>(&row, 4, ctx)?.unwrap_or(i64::MIN),
        );
        // The partial minutes at the edges.
        for (s, u) in edges(since, until, (m0, m1), MINUTE) {
            let m = window(&mut conn, agent, s, u).await?.minute;
            add(
                m.allowed,
                m.denied,
                m.conflicts,
                m.min_occurred,
                m.max_occurred,
            );
        }
        if query.top_hosts > 0 && since.is_none() && until.is_none() {
            // All time: the totals, the most denied first from the index
            // (all of them when several agents' counts must be added up).
            let limit = (agents.len() == 1).then_some(i64::from(query.top_hosts));
            let rows = sqlx::query(
                "SELECT host, records FROM denied_host_totals WHERE agent_id = $1 \
                 ORDER BY records DESC, host LIMIT $2",
            )
            .bind(agent)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await
            .map_err(db(ctx))?;
            for row in &rows {
                let n: i64 = col(row, 1, ctx)?;
                *hosts.entry(decode(col(row, 0, ctx)?)).or_default() += count_from_sql(n);
            }
        } else if query.top_hosts > 0 {
            let (h0, h1) = whole_buckets(since, until, HOUR);
            let rows = sqlx::query(
                "SELECT host, sum(records)::bigint FROM denied_hosts \
                 WHERE agent_id = $1 AND hour >= $2 AND hour < $3 GROUP BY host",
            )
            .bind(agent)
            .bind(h0)
            .bind(h1)
            .fetch_all(&mut *conn)
            .await
            .map_err(db(ctx))?;
            for row in &rows {
                let n: i64 = col(row, 1, ctx)?;
                *hosts.entry(decode(col(row, 0, ctx)?)).or_default() += count_from_sql(n);
            }
            for (s, u) in edges(since, until, (h0, h1), HOUR) {
                for (host, n) in window(&mut conn, agent, s, u).await?.hosts {
                    *hosts.entry(host).or_default() += n;
                }
            }
        }
    }
    if out.allowed + out.denied > 0 {
        out.first_time = Some(from_nanos(first)?);
        out.last_time = Some(from_nanos(last)?);
    }
    if out.denied > 0 {
        out.top_denied_hosts =
            top_hosts(hosts.into_iter().filter(|(_, n)| *n > 0), query.top_hosts);
    }
    Ok(out)
}

/// Records per minute of effective time (one workspace's, or all), for the
/// minutes that contain `since` or start before `until`.
pub(super) async fn minute_activity(
    pool: &PgPool,
    workspace_id: Option<Uuid>,
    since: Timestamp,
    until: Timestamp,
) -> Result<Vec<MinuteActivity>, StoreError> {
    let ctx = "counting records per minute";
    let (m0, m1) = (
        nanos(since).div_euclid(MINUTE),
        nanos(until).saturating_add(MINUTE - 1).div_euclid(MINUTE),
    );
    // Every agent's minutes when no workspace is named.
    let agents: Option<Vec<i64>> = match workspace_id {
        Some(workspace_id) => Some(agent_keys(pool, workspace_id).await?),
        None => None,
    };
    let rows = sqlx::query(
        "SELECT minute, sum(allowed)::bigint, sum(denied)::bigint FROM activity_minutes \
         WHERE ($1::bigint[] IS NULL OR agent_id = ANY($1)) AND minute >= $2 AND minute < $3 \
         GROUP BY minute ORDER BY minute",
    )
    .bind(agents)
    .bind(m0)
    .bind(m1)
    .fetch_all(pool)
    .await
    .map_err(db(ctx))?;
    let mut out = Vec::new();
    for row in &rows {
        let minute: i64 = col(row, 0, ctx)?;
        let allowed = count_from_sql(col(row, 1, ctx)?);
        let denied = count_from_sql(col(row, 2, ctx)?);
        if allowed + denied > 0 {
            out.push(MinuteActivity {
                minute: from_nanos(minute.saturating_mul(MINUTE))?,
                allowed,
                denied,
            });
        }
    }
    Ok(out)
}

pub(super) async fn last_record_id(pool: &PgPool) -> Result<Option<RecordId>, StoreError> {
    let ctx = "reading the last record id";
    let row = sqlx::query("SELECT max(last_id) FROM blocks")
        .fetch_one(pool)
        .await
        .map_err(db(ctx))?;
    col(&row, 0, ctx)
}
