//! Reading records, the line outbox, sessions and losses on PostgreSQL.

use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::{Arguments, AssertSqlSafe};
use uuid::Uuid;
use warden_proto::domain::{Decision, Peer};

use super::outbox;
use super::text::{decode, decode_opt, encode};
use super::{col, db};
use crate::StoreError;
use crate::convert::{count_from_sql, event_time, from_nanos, nanos, received_at};
use crate::model::{
    Loss, LossSource, Order, RecordId, RecordQuery, SequencePosition, SessionRecordQuery,
    SessionSummary, StoredRecord, agent_time_suspect,
};

fn record_from_row(row: &PgRow) -> Result<StoredRecord, StoreError> {
    let ctx = "reading a record";
    let event_nanos: Option<i32> = col(row, 10, ctx)?;
    let agent_nanos: i32 = col(row, 12, ctx)?;
    let agent_received_at = received_at(col(row, 11, ctx)?, i64::from(agent_nanos))?;
    // The commit stamp is when the control plane took the call.
    let received_at = from_nanos(col(row, 13, ctx)?)?;
    let original: Option<i64> = col(row, 25, ctx)?;
    Ok(StoredRecord {
        id: col(row, 0, ctx)?,
        workspace_id: col(row, 1, ctx)?,
        workspace_name: decode(col(row, 2, ctx)?),
        workspace_owner: decode(col(row, 3, ctx)?),
        agent_id: col(row, 4, ctx)?,
        agent_name: decode(col(row, 5, ctx)?),
        batch_id: col(row, 6, ctx)?,
        session_id: decode_opt(col(row, 7, ctx)?),
        sequence_number: col(row, 8, ctx)?,
        event_time: event_time(col(row, 9, ctx)?, event_nanos.map(i64::from)),
        received_at,
        agent_received_at,
        agent_time_suspect: agent_time_suspect(agent_received_at, received_at),
        committed_at: received_at,
        decision: Decision::from_allowed(col(row, 14, ctx)?),
        method: decode(col(row, 15, ctx)?),
        url: decode(col(row, 16, ctx)?),
        url_original_bytes: original.map(count_from_sql),
        matched_rule: decode(col(row, 17, ctx)?),
        process: decode(col(row, 18, ctx)?),
        peer: Peer {
            uid: u32::try_from(col::<i64>(row, 19, ctx)?).unwrap_or(u32::MAX),
            gid: u32::try_from(col::<i64>(row, 20, ctx)?).unwrap_or(u32::MAX),
            pid: col(row, 21, ctx)?,
            comm: decode(col(row, 22, ctx)?),
            exe: decode(col(row, 23, ctx)?),
        },
        policy_digest: col(row, 26, ctx)?,
        conflict: col(row, 24, ctx)?,
    })
}

pub(super) async fn unprinted(
    pool: &PgPool,
    replica: i32,
    after: Option<RecordId>,
    limit: u32,
) -> Result<Vec<StoredRecord>, StoreError> {
    let ctx = "reading unprinted records";
    let mut conn = pool.acquire().await.map_err(db(ctx))?;
    let ids = outbox::due_ids(&mut conn, replica, after.unwrap_or(i64::MIN), limit)
        .await
        .map_err(db(ctx))?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        record_columns!(),
        "FROM records r",
        record_joins!(),
        "WHERE r.id = ANY($1) ORDER BY r.id"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db(ctx))?;
    rows.iter().map(record_from_row).collect()
}

/// SQL text and its arguments, numbering placeholders as they are added.
struct Filter {
    sql: String,
    args: PgArguments,
    count: usize,
}

impl Filter {
    /// Appends `fragment` with `$` replaced by the next placeholder, and
    /// binds `value` to it.
    fn push<'q, T>(&mut self, fragment: &str, value: T) -> Result<(), StoreError>
    where
        T: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + 'q,
    {
        self.count += 1;
        let placeholder = format!("${}", self.count);
        self.sql.push_str(&fragment.replace('$', &placeholder));
        self.args
            .add(value)
            .map_err(|e| StoreError::database("building a record query")(sqlx::Error::Encode(e)))
    }
}

/// The internal keys of the agents a query's workspace, owner and agent name
/// filters allow; `None` when the query has none of them (any agent).
/// Deleted workspaces' agents count: their records stay.
async fn matching_agents(
    pool: &PgPool,
    query: &RecordQuery,
) -> Result<Option<Vec<i64>>, StoreError> {
    if query.workspace_id.is_none() && query.owner.is_none() && query.agent_name.is_none() {
        return Ok(None);
    }
    let ctx = "finding the agents a query names";
    let rows = sqlx::query(
        "SELECT a.id FROM agents a JOIN workspaces w ON w.id = a.workspace_id \
         WHERE ($1::uuid IS NULL OR w.uuid = $1) AND ($2::text IS NULL OR w.owner = $2) \
         AND ($3::text IS NULL OR a.name = $3) ORDER BY a.id",
    )
    .bind(query.workspace_id)
    .bind(query.owner.as_deref().map(encode))
    .bind(query.agent_name.as_deref().map(encode))
    .fetch_all(pool)
    .await
    .map_err(db(ctx))?;
    rows.iter()
        .map(|row| col(row, 0, ctx))
        .collect::<Result<Vec<i64>, _>>()
        .map(Some)
}

/// The internal keys of a workspace's agents (deleted ones too).
pub(super) async fn agent_keys(pool: &PgPool, workspace_id: Uuid) -> Result<Vec<i64>, StoreError> {
    let ctx = "finding a workspace's agent";
    let rows = sqlx::query(
        "SELECT a.id FROM agents a JOIN workspaces w ON w.id = a.workspace_id \
         WHERE w.uuid = $1 ORDER BY a.id",
    )
    .bind(workspace_id)
    .fetch_all(pool)
    .await
    .map_err(db(ctx))?;
    rows.iter().map(|row| col(row, 0, ctx)).collect()
}

pub(super) async fn records(
    pool: &PgPool,
    query: &RecordQuery,
) -> Result<Vec<StoredRecord>, StoreError> {
    // The workspace, owner and agent filters are resolved to agent keys
    // first: with one agent (a workspace) the query becomes
    // `agent_id = $n`, which the (agent_id, id) indexes serve in id order.
    let agents = matching_agents(pool, query).await?;
    if agents.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let mut f = Filter {
        sql: String::from(concat!(
            record_columns!(),
            "FROM records r",
            record_joins!(),
            "WHERE true"
        )),
        args: PgArguments::default(),
        count: 0,
    };
    match agents {
        Some(keys) if keys.len() == 1 => f.push(" AND r.agent_id = $", keys[0])?,
        Some(keys) => f.push(" AND r.agent_id = ANY($)", keys)?,
        None => {}
    }
    if let Some(session) = &query.session_id {
        f.push(" AND r.session_id = $", encode(session).into_owned())?;
    }
    // Literals rather than parameters, so the partial indexes on denials
    // apply whatever plan PostgreSQL caches.
    match query.decision {
        Some(Decision::Allow) => f.sql.push_str(" AND r.allowed"),
        Some(Decision::Deny) => f.sql.push_str(" AND NOT r.allowed"),
        None => {}
    }
    match query.conflict {
        Some(true) => f.sql.push_str(" AND r.conflict"),
        Some(false) => f.sql.push_str(" AND NOT r.conflict"),
        None => {}
    }
    if let Some(since) = query.since {
        f.push(" AND r.occurred_ns >= $", nanos(since))?;
    }
    if let Some(until) = query.until {
        f.push(" AND r.occurred_ns < $", nanos(until))?;
    }
    if let Some(text) = &query.url_contains {
        f.push(" AND strpos(r.url, $) > 0", encode(text).into_owned())?;
    }
    if let Some(method) = &query.method {
        f.push(" AND r.method = $", encode(method).into_owned())?;
    }
    if let Some(after) = query.after_id {
        f.push(" AND r.id > $", after)?;
    }
    if let Some(before) = query.before_id {
        f.push(" AND r.id < $", before)?;
    }
    f.sql.push_str(match query.order {
        Order::OldestFirst => " ORDER BY r.id",
        Order::NewestFirst => " ORDER BY r.id DESC",
    });
    f.push(" LIMIT $", i64::from(query.limit))?;
    let Filter { sql, args, .. } = f;
    // Only fixed fragments and numbered placeholders; every value is bound.
    let rows = sqlx::query_with(AssertSqlSafe(sql), args)
        .fetch_all(pool)
        .await
        .map_err(db("querying records"))?;
    rows.iter().map(record_from_row).collect()
}

/// One session's records in sequence order. Conflict rows and the others
/// are read apart, so that each read walks its partial index
/// (`(session_id, agent_id, sequence_number)`) in order, then merged.
pub(super) async fn session_records(
    pool: &PgPool,
    query: &SessionRecordQuery,
) -> Result<Vec<StoredRecord>, StoreError> {
    let agents = agent_keys(pool, query.workspace_id).await?;
    if agents.is_empty() {
        return Ok(Vec::new());
    }
    let (seq, id) = query
        .after
        .map_or((i32::MIN, i64::MIN), |p| (p.sequence_number, p.id));
    let mut out = Vec::new();
    for conflict in ["NOT r.conflict", "r.conflict"] {
        let sql = format!(
            "{} FROM records r {} WHERE r.session_id = $1 AND r.agent_id = ANY($2) AND {conflict} \
             AND (r.sequence_number, r.id) > ($3, $4) \
             ORDER BY r.sequence_number, r.id LIMIT $5",
            record_columns!(),
            record_joins!()
        );
        // Only fixed fragments and numbered placeholders; every value is bound.
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(encode(&query.session_id))
            .bind(&agents)
            .bind(seq)
            .bind(id)
            .bind(i64::from(query.limit))
            .fetch_all(pool)
            .await
            .map_err(db("reading a session's records"))?;
        for row in &rows {
            out.push(record_from_row(row)?);
        }
    }
    out.sort_by_key(SequencePosition::of);
    out.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
    Ok(out)
}

/// Losses of a workspace's agents, of one session or all of them.
async fn losses(
    pool: &PgPool,
    workspace_id: Uuid,
    session: Option<&str>,
) -> Result<Vec<Loss>, StoreError> {
    let ctx = "reading losses";
    let rows = sqlx::query(
        "SELECT l.source, l.reason, l.records, l.frames FROM losses l \
         JOIN agents a ON a.id = l.agent_id JOIN workspaces w ON w.id = a.workspace_id \
         WHERE w.uuid = $1 AND ($2::text IS NULL OR l.session_id = $2)",
    )
    .bind(workspace_id)
    .bind(session.map(encode))
    .fetch_all(pool)
    .await
    .map_err(db(ctx))?;
    let mut out = Vec::new();
    for row in &rows {
        let source: String = col(row, 0, ctx)?;
        let source = LossSource::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("loss source {source:?}")))?;
        crate::losses::merge(
            &mut out,
            Loss {
                source,
                reason: decode(col(row, 1, ctx)?),
                records: count_from_sql(col(row, 2, ctx)?),
                frames: count_from_sql(col(row, 3, ctx)?),
            },
        );
    }
    crate::losses::sort(&mut out);
    Ok(out)
}

pub(super) async fn workspace_losses(
    pool: &PgPool,
    workspace_id: Uuid,
) -> Result<Vec<Loss>, StoreError> {
    losses(pool, workspace_id, None).await
}

/// One row about a session over a workspace's agents: live records (each
/// count can use its partial index), then what the `sessions` rows know.
const SESSION_SUMMARY: &str = "WITH agent AS (SELECT a.id FROM agents a \
        JOIN workspaces w ON w.id = a.workspace_id WHERE w.uuid = $1) \
    SELECT \
        (SELECT count(*) FROM records WHERE session_id = $2 \
            AND agent_id IN (SELECT id FROM agent) AND NOT conflict), \
        (SELECT min(sequence_number) FROM records WHERE session_id = $2 \
            AND agent_id IN (SELECT id FROM agent) AND NOT conflict), \
        (SELECT max(sequence_number) FROM records WHERE session_id = $2 \
            AND agent_id IN (SELECT id FROM agent) AND NOT conflict), \
        (SELECT count(*) FROM records WHERE session_id = $2 \
            AND agent_id IN (SELECT id FROM agent) AND conflict), \
        s.rows, s.final_seq, s.purged_records, s.purged_conflicts, s.purged_first, \
        s.purged_last, s.policy_digest \
    FROM (SELECT count(*) AS rows, max(final_sequence_number) AS final_seq, \
            sum(purged_records)::bigint AS purged_records, \
            sum(purged_conflicts)::bigint AS purged_conflicts, \
            min(purged_first) AS purged_first, max(purged_last) AS purged_last, \
            max(policy_digest) AS policy_digest \
        FROM sessions WHERE session_id = $2 AND agent_id IN (SELECT id FROM agent)) s";

pub(super) async fn session_summary(
    pool: &PgPool,
    workspace_id: Uuid,
    session_id: &str,
) -> Result<Option<SessionSummary>, StoreError> {
    let ctx = "summarising a session";
    let row = sqlx::query(SESSION_SUMMARY)
        .bind(workspace_id)
        .bind(encode(session_id))
        .fetch_one(pool)
        .await
        .map_err(db(ctx))?;
    let distinct = count_from_sql(col(&row, 0, ctx)?);
    let first: Option<i32> = col(&row, 1, ctx)?;
    let last: Option<i32> = col(&row, 2, ctx)?;
    let conflicts = count_from_sql(col(&row, 3, ctx)?);
    let session_rows: i64 = col(&row, 4, ctx)?;
    let final_seq: Option<i64> = col(&row, 5, ctx)?;
    let purged_records = count_from_sql(col::<Option<i64>>(&row, 6, ctx)?.unwrap_or(0));
    let purged_conflicts = count_from_sql(col::<Option<i64>>(&row, 7, ctx)?.unwrap_or(0));
    let purged_first: Option<i32> = col(&row, 8, ctx)?;
    let purged_last: Option<i32> = col(&row, 9, ctx)?;
    let policy_digest: Option<String> = col(&row, 10, ctx)?;
    let losses = losses(pool, workspace_id, Some(session_id)).await?;

    let seen = distinct > 0 || conflicts > 0 || session_rows > 0 || !losses.is_empty();
    if !seen {
        return Ok(None);
    }
    let distinct = distinct + purged_records;
    let conflicts = conflicts + purged_conflicts;
    Ok(Some(SessionSummary {
        workspace_id,
        session_id: session_id.to_owned(),
        records: distinct + conflicts,
        conflicts,
        distinct_sequence_numbers: distinct,
        first_sequence_number: [first, purged_first].into_iter().flatten().min(),
        last_sequence_number: [last, purged_last].into_iter().flatten().max(),
        final_sequence_number: final_seq,
        losses,
        purged: purged_records + purged_conflicts,
        policy_digest,
    }))
}

/// The policy text with this digest.
pub(super) async fn policy(
    pool: &PgPool,
    digest: &str,
) -> Result<Option<crate::model::PolicyText>, StoreError> {
    let ctx = "reading a policy";
    let row = sqlx::query("SELECT text, first_seen FROM policies WHERE digest = $1")
        .bind(digest)
        .fetch_optional(pool)
        .await
        .map_err(db(ctx))?;
    row.map(|row| {
        Ok(crate::model::PolicyText {
            digest: digest.to_owned(),
            text: decode(col(&row, 0, ctx)?),
            first_seen: from_nanos(col(&row, 1, ctx)?)?,
        })
    })
    .transpose()
}
