//! Reading records, the line outbox, sessions and losses (on the read pool).

use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row, SqliteConnection};
use uuid::Uuid;
use warden_proto::domain::{Decision, Peer};

use crate::StoreError;
use crate::convert::{count_from_sql, event_time, from_nanos, nanos, received_at, uuid};
use crate::model::{
    Loss, LossSource, Order, RecordId, RecordQuery, SequencePosition, SequenceRange,
    SessionRecordQuery, SessionSummary, StoredRecord,
};

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    StoreError::database(context)
}

fn record_from_row(row: &SqliteRow) -> Result<StoredRecord, StoreError> {
    let get = |e: sqlx::Error| StoreError::Database {
        context: "reading a record",
        cause: e,
    };
    let allowed: bool = row.try_get(14).map_err(get)?;
    Ok(StoredRecord {
        id: row.try_get(0).map_err(get)?,
        workspace_id: uuid(row.try_get::<&[u8], _>(1).map_err(get)?)?,
        workspace_name: row.try_get(2).map_err(get)?,
        workspace_owner: row.try_get(3).map_err(get)?,
        agent_id: uuid(row.try_get::<&[u8], _>(4).map_err(get)?)?,
        agent_name: row.try_get(5).map_err(get)?,
        batch_id: uuid(row.try_get::<&[u8], _>(6).map_err(get)?)?,
        session_id: row.try_get(7).map_err(get)?,
        sequence_number: row.try_get(8).map_err(get)?,
        event_time: event_time(row.try_get(9).map_err(get)?, row.try_get(10).map_err(get)?),
        received_at: received_at(row.try_get(11).map_err(get)?, row.try_get(12).map_err(get)?)?,
        committed_at: from_nanos(row.try_get(13).map_err(get)?)?,
        decision: Decision::from_allowed(allowed),
        method: row.try_get(15).map_err(get)?,
        url: row.try_get(16).map_err(get)?,
        matched_rule: row.try_get(17).map_err(get)?,
        process: row.try_get(18).map_err(get)?,
        peer: Peer {
            uid: u32::try_from(row.try_get::<i64, _>(19).map_err(get)?).unwrap_or(u32::MAX),
            gid: u32::try_from(row.try_get::<i64, _>(20).map_err(get)?).unwrap_or(u32::MAX),
            pid: row.try_get(21).map_err(get)?,
            comm: row.try_get(22).map_err(get)?,
            exe: row.try_get(23).map_err(get)?,
        },
        conflict: row.try_get(24).map_err(get)?,
    })
}

pub(super) async fn unprinted(
    conn: &mut SqliteConnection,
    after: Option<RecordId>,
    limit: u32,
) -> Result<Vec<StoredRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        record_columns!(),
        "FROM line_outbox o JOIN records r ON r.id = o.record_id",
        record_joins!(),
        "WHERE o.record_id > ? ORDER BY o.record_id LIMIT ?"
    ))
    .bind(after.unwrap_or(i64::MIN))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading unprinted records"))?;
    rows.iter().map(record_from_row).collect()
}

/// The internal keys of the agents a query's workspace, owner and agent name
/// filters allow; `None` when the query has none of them (any agent).
/// Deleted workspaces' agents count: their records stay.
async fn matching_agents(
    conn: &mut SqliteConnection,
    query: &RecordQuery,
) -> Result<Option<Vec<i64>>, StoreError> {
    if query.workspace_id.is_none() && query.owner.is_none() && query.agent_name.is_none() {
        return Ok(None);
    }
    let mut sql = String::from(
        "SELECT a.id FROM agents a JOIN workspaces w ON w.id = a.workspace_id WHERE true",
    );
    if query.workspace_id.is_some() {
        sql.push_str(" AND w.uuid = ?");
    }
    if query.owner.is_some() {
        sql.push_str(" AND w.owner = ?");
    }
    if query.agent_name.is_some() {
        sql.push_str(" AND a.name = ?");
    }
    sql.push_str(" ORDER BY a.id");
    // Only fixed fragments above; every value is bound, in the same order.
    let mut q = sqlx::query(AssertSqlSafe(sql));
    if let Some(id) = query.workspace_id {
        q = q.bind(id.as_bytes().to_vec());
    }
    if let Some(owner) = &query.owner {
        q = q.bind(owner.clone());
    }
    if let Some(name) = &query.agent_name {
        q = q.bind(name.clone());
    }
    let rows = q
        .fetch_all(&mut *conn)
        .await
        .map_err(db("finding the agents a query names"))?;
    rows.iter()
        .map(|row| {
            row.try_get(0)
                .map_err(db("finding the agents a query names"))
        })
        .collect::<Result<Vec<i64>, _>>()
        .map(Some)
}

/// `?, ?, ...` for `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

pub(super) async fn records(
    conn: &mut SqliteConnection,
    query: &RecordQuery,
) -> Result<Vec<StoredRecord>, StoreError> {
    // The workspace, owner and agent filters are resolved to agent keys
    // first: with one agent (a workspace) the query becomes `agent_id = ?`,
    // which the (agent_id, id) indexes serve in id order without sorting.
    let agents = matching_agents(conn, query).await?;
    if agents.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let rows = records_statement("", query, agents.as_deref())
        .fetch_all(&mut *conn)
        .await
        .map_err(db("querying records"))?;
    rows.iter().map(record_from_row).collect()
}

/// How SQLite runs [`records`] for `query`: the `detail` column of
/// `EXPLAIN QUERY PLAN`, one line per step (empty when no agent matches,
/// as the query is not run then).
pub(super) async fn records_plan(
    conn: &mut SqliteConnection,
    query: &RecordQuery,
) -> Result<Vec<String>, StoreError> {
    let agents = matching_agents(conn, query).await?;
    if agents.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let rows = records_statement("EXPLAIN QUERY PLAN ", query, agents.as_deref())
        .fetch_all(&mut *conn)
        .await
        .map_err(db("explaining a record query"))?;
    rows.iter()
        .map(|row| {
            row.try_get("detail")
                .map_err(db("explaining a record query"))
        })
        .collect()
}

/// The record query `query` describes, after `prefix`, with every value
/// bound.
fn records_statement(
    prefix: &str,
    query: &RecordQuery,
    agents: Option<&[i64]>,
) -> sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    let mut sql = String::from(prefix);
    sql.push_str(concat!(
        record_columns!(),
        "FROM records r",
        record_joins!(),
        "WHERE true"
    ));
    match agents {
        Some([_]) => sql.push_str(" AND r.agent_id = ?"),
        Some(keys) => {
            sql.push_str(" AND r.agent_id IN (");
            sql.push_str(&placeholders(keys.len()));
            sql.push(')');
        }
        None => {}
    }
    if query.session_id.is_some() {
        sql.push_str(" AND r.session_id = ?");
    }
    // Literals rather than parameters, so the partial indexes on denials
    // apply.
    match query.decision {
        Some(Decision::Allow) => sql.push_str(" AND r.allowed = 1"),
        Some(Decision::Deny) => sql.push_str(" AND r.allowed = 0"),
        None => {}
    }
    match query.conflict {
        Some(true) => sql.push_str(" AND r.conflict = 1"),
        Some(false) => sql.push_str(" AND r.conflict = 0"),
        None => {}
    }
    if query.since.is_some() {
        sql.push_str(" AND r.occurred_ns >= ?");
    }
    if query.until.is_some() {
        sql.push_str(" AND r.occurred_ns < ?");
    }
    if query.url_contains.is_some() {
        // instr, not LIKE: LIKE ignores ASCII case in SQLite and treats % and
        // _ as wildcards.
        sql.push_str(" AND instr(r.url, ?) > 0");
    }
    if query.method.is_some() {
        sql.push_str(" AND r.method = ?");
    }
    if query.after_id.is_some() {
        sql.push_str(" AND r.id > ?");
    }
    if query.before_id.is_some() {
        sql.push_str(" AND r.id < ?");
    }
    sql.push_str(match query.order {
        Order::OldestFirst => " ORDER BY r.id LIMIT ?",
        Order::NewestFirst => " ORDER BY r.id DESC LIMIT ?",
    });
    // Only fixed fragments above; every value is bound, in the same order.
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for key in agents.into_iter().flatten() {
        q = q.bind(*key);
    }
    if let Some(session) = &query.session_id {
        q = q.bind(session.clone());
    }
    if let Some(since) = query.since {
        q = q.bind(nanos(since));
    }
    if let Some(until) = query.until {
        q = q.bind(nanos(until));
    }
    if let Some(text) = &query.url_contains {
        q = q.bind(text.clone());
    }
    if let Some(method) = &query.method {
        q = q.bind(method.clone());
    }
    if let Some(after) = query.after_id {
        q = q.bind(after);
    }
    if let Some(before) = query.before_id {
        q = q.bind(before);
    }
    q.bind(i64::from(query.limit))
}

/// One session's records in sequence order. Conflict rows and the others
/// are read apart, so that each read walks its partial index in order
/// (`(agent_id, session_id, sequence_number)`, rowid last), then merged.
pub(super) async fn session_records(
    conn: &mut SqliteConnection,
    query: &SessionRecordQuery,
) -> Result<Vec<StoredRecord>, StoreError> {
    let (seq, id) = query
        .after
        .map_or((i32::MIN, i64::MIN), |p| (p.sequence_number, p.id));
    let mut out = Vec::new();
    for agent in agent_keys(conn, query.workspace_id).await? {
        for conflict in ["0", "1"] {
            let sql = format!(
                "{} FROM records r {} WHERE r.agent_id = ? AND r.session_id = ? \
                 AND r.conflict = {conflict} \
                 AND (r.sequence_number, r.id) > (?, ?) \
                 ORDER BY r.sequence_number, r.id LIMIT ?",
                record_columns!(),
                record_joins!()
            );
            // Only fixed fragments above; every value is bound.
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(agent)
                .bind(&query.session_id)
                .bind(seq)
                .bind(id)
                .bind(i64::from(query.limit))
                .fetch_all(&mut *conn)
                .await
                .map_err(db("reading a session's records"))?;
            for row in &rows {
                out.push(record_from_row(row)?);
            }
        }
    }
    out.sort_by_key(SequencePosition::of);
    out.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
    Ok(out)
}

/// Internal keys of the agents of a workspace (one today; deleted ones too).
pub(super) async fn agent_keys(
    conn: &mut SqliteConnection,
    workspace_id: Uuid,
) -> Result<Vec<i64>, StoreError> {
    let rows = sqlx::query(
        "SELECT a.id FROM agents a JOIN workspaces w ON w.id = a.workspace_id WHERE w.uuid = ?",
    )
    .bind(workspace_id.as_bytes().as_slice())
    .fetch_all(&mut *conn)
    .await
    .map_err(db("finding a workspace's agent"))?;
    rows.iter()
        .map(|row| row.try_get(0).map_err(db("finding a workspace's agent")))
        .collect()
}

/// The agent's dropped ranges, of one session or all: (session, range).
pub(super) async fn dropped_ranges(
    conn: &mut SqliteConnection,
    agent: i64,
    session: Option<&str>,
) -> Result<Vec<(String, SequenceRange)>, StoreError> {
    let ctx = "reading dropped ranges";
    let rows = match session {
        Some(session) => sqlx::query(
            "SELECT session_id, first_seq, last_seq FROM agent_dropped_ranges \
             WHERE agent_id = ? AND session_id = ?",
        )
        .bind(agent)
        .bind(session),
        None => sqlx::query(
            "SELECT session_id, first_seq, last_seq FROM agent_dropped_ranges WHERE agent_id = ?",
        )
        .bind(agent),
    }
    .fetch_all(&mut *conn)
    .await
    .map_err(db(ctx))?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0).map_err(db(ctx))?,
                SequenceRange {
                    first: i64::from(row.try_get::<i32, _>(1).map_err(db(ctx))?),
                    last: i64::from(row.try_get::<i32, _>(2).map_err(db(ctx))?),
                },
            ))
        })
        .collect()
}

async fn losses(
    conn: &mut SqliteConnection,
    agent: i64,
    session: Option<&str>,
) -> Result<Vec<Loss>, StoreError> {
    let rows = match session {
        Some(session) => sqlx::query(
            "SELECT source, reason, records, frames FROM losses WHERE agent_id = ? AND session_id = ?",
        )
        .bind(agent)
        .bind(session),
        None => sqlx::query("SELECT source, reason, records, frames FROM losses WHERE agent_id = ?")
            .bind(agent),
    }
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading losses"))?;
    let mut out: Vec<Loss> = Vec::new();
    for row in &rows {
        let source: &str = row.try_get(0).map_err(db("reading losses"))?;
        let source = LossSource::parse(source)
            .ok_or_else(|| StoreError::Corrupt(format!("loss source {source:?}")))?;
        let reason: String = row.try_get(1).map_err(db("reading losses"))?;
        let records = count_from_sql(row.try_get(2).map_err(db("reading losses"))?);
        let frames = count_from_sql(row.try_get(3).map_err(db("reading losses"))?);
        add_loss(&mut out, source, reason, records, frames);
    }
    Ok(out)
}

/// Adds into `out`, summing (saturating) equal (source, reason) pairs.
fn add_loss(out: &mut Vec<Loss>, source: LossSource, reason: String, records: u64, frames: u64) {
    match out
        .iter_mut()
        .find(|l| l.source == source && l.reason == reason)
    {
        Some(loss) => {
            loss.records = loss.records.saturating_add(records);
            loss.frames = loss.frames.saturating_add(frames);
        }
        None => out.push(Loss {
            source,
            reason,
            records,
            frames,
        }),
    }
}

pub(super) async fn workspace_losses(
    conn: &mut SqliteConnection,
    workspace_id: Uuid,
) -> Result<Vec<Loss>, StoreError> {
    let mut out = Vec::new();
    for agent in agent_keys(conn, workspace_id).await? {
        for loss in losses(conn, agent, None).await? {
            add_loss(
                &mut out,
                loss.source,
                loss.reason,
                loss.records,
                loss.frames,
            );
        }
    }
    sort_losses(&mut out);
    Ok(out)
}

fn sort_losses(losses: &mut [Loss]) {
    losses.sort_by(|a, b| (a.source, &a.reason).cmp(&(b.source, &b.reason)));
}

pub(super) async fn session_summary(
    conn: &mut SqliteConnection,
    workspace_id: Uuid,
    session_id: &str,
) -> Result<Option<SessionSummary>, StoreError> {
    let ctx = "summarising a session";
    let mut summary = SessionSummary {
        workspace_id,
        session_id: session_id.to_owned(),
        records: 0,
        conflicts: 0,
        distinct_sequence_numbers: 0,
        first_sequence_number: None,
        last_sequence_number: None,
        final_sequence_number: None,
        losses: Vec::new(),
        agent_dropped: Vec::new(),
        purged: 0,
    };
    let mut seen = false;
    for agent in agent_keys(conn, workspace_id).await? {
        // Two queries, so each can use its partial index.
        let row = sqlx::query(
            "SELECT COUNT(*), MIN(sequence_number), MAX(sequence_number) FROM records \
             WHERE agent_id = ? AND session_id = ? AND conflict = 0",
        )
        .bind(agent)
        .bind(session_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(db(ctx))?;
        // The key is unique over non-conflict rows: count = distinct count.
        let distinct = count_from_sql(row.try_get(0).map_err(db(ctx))?);
        let first: Option<i32> = row.try_get(1).map_err(db(ctx))?;
        let last: Option<i32> = row.try_get(2).map_err(db(ctx))?;
        let conflicts: i64 = sqlx::query(
            "SELECT COUNT(*) FROM records WHERE agent_id = ? AND session_id = ? AND conflict = 1",
        )
        .bind(agent)
        .bind(session_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(db(ctx))?
        .try_get(0)
        .map_err(db(ctx))?;
        let session_row = sqlx::query(
            "SELECT final_sequence_number, purged_records, purged_conflicts, purged_first, \
             purged_last FROM sessions WHERE agent_id = ? AND session_id = ?",
        )
        .bind(agent)
        .bind(session_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db(ctx))?;
        let mut final_seq = None;
        let mut purged = PurgedCounts::default();
        if let Some(row) = &session_row {
            final_seq = Some(row.try_get::<Option<i64>, _>(0).map_err(db(ctx))?);
            purged = PurgedCounts {
                records: count_from_sql(row.try_get(1).map_err(db(ctx))?),
                conflicts: count_from_sql(row.try_get(2).map_err(db(ctx))?),
                first: row.try_get(3).map_err(db(ctx))?,
                last: row.try_get(4).map_err(db(ctx))?,
            };
        }
        let losses = losses(conn, agent, Some(session_id)).await?;

        seen |= distinct > 0 || conflicts > 0 || final_seq.is_some() || !losses.is_empty();
        summary.distinct_sequence_numbers += distinct + purged.records;
        summary.conflicts += count_from_sql(conflicts) + purged.conflicts;
        summary.purged += purged.records + purged.conflicts;
        summary.first_sequence_number =
            min_opt(min_opt(summary.first_sequence_number, first), purged.first);
        summary.last_sequence_number = summary.last_sequence_number.max(last).max(purged.last);
        if let Some(Some(final_seq)) = final_seq {
            summary.final_sequence_number = summary.final_sequence_number.max(Some(final_seq));
        }
        for loss in losses {
            add_loss(
                &mut summary.losses,
                loss.source,
                loss.reason,
                loss.records,
                loss.frames,
            );
        }
        summary.agent_dropped.extend(
            dropped_ranges(conn, agent, Some(session_id))
                .await?
                .into_iter()
                .map(|(_, r)| r),
        );
    }
    summary.records = summary.distinct_sequence_numbers + summary.conflicts;
    sort_losses(&mut summary.losses);
    summary.agent_dropped = SequenceRange::merge(std::mem::take(&mut summary.agent_dropped));
    Ok(seen.then_some(summary))
}

/// What retention removed from a session (its `sessions` row).
#[derive(Default)]
struct PurgedCounts {
    records: u64,
    conflicts: u64,
    first: Option<i32>,
    last: Option<i32>,
}

fn min_opt(a: Option<i32>, b: Option<i32>) -> Option<i32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
