//! Reading records from blocks on PostgreSQL: record queries, the lines
//! due, a session's records and summary, losses. As on SQLite, a query picks
//! blocks by their index rows a few at a time, decodes only those and
//! filters their records until it has enough.

use std::collections::HashMap;

use memchr::memmem;
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgRow};
use sqlx::{Arguments, AssertSqlSafe};
use uuid::Uuid;
use warden_proto::domain::Decision;

use super::outbox;
use super::text::{decode, decode_opt, encode};
use super::{col, db};
use crate::StoreError;
use crate::block::{self, Block};
use crate::convert::{count_from_sql, from_nanos, nanos};
use crate::model::{
    Loss, LossSource, Order, RecordId, RecordQuery, SequencePosition, SequenceRange,
    SessionRecordQuery, SessionSummary, StoredRecord,
};
use crate::records::{AgentInfo, BlockRow, matches, stored_record};

/// Blocks fetched per step of a query.
const BLOCKS_PER_STEP: i64 = 32;

/// The columns of a `blocks` row a reader needs, in this order.
pub(super) const BLOCK_COLUMNS: &str = "b.first_id, b.last_id, b.agent_id, b.session_id, b.data";

/// A `blocks` row as readers select it ([`BLOCK_COLUMNS`]).
pub(super) fn block_row(row: &PgRow) -> Result<BlockRow, StoreError> {
    let ctx = "reading a block";
    Ok(BlockRow {
        first_id: col(row, 0, ctx)?,
        last_id: col(row, 1, ctx)?,
        agent: col(row, 2, ctx)?,
        session: decode_opt(col(row, 3, ctx)?),
        data: col(row, 4, ctx)?,
    })
}

/// Agent keys to identities, read once per query.
#[derive(Default)]
pub(super) struct Agents(HashMap<i64, AgentInfo>);

impl Agents {
    pub(super) async fn get(
        &mut self,
        conn: &mut PgConnection,
        key: i64,
    ) -> Result<&AgentInfo, StoreError> {
        use std::collections::hash_map::Entry;
        let slot = match self.0.entry(key) {
            Entry::Occupied(known) => return Ok(known.into_mut()),
            Entry::Vacant(slot) => slot,
        };
        let ctx = "reading an agent";
        let row = sqlx::query(
            "SELECT a.uuid, a.name, w.uuid, w.name, w.owner FROM agents a \
             JOIN workspaces w ON w.id = a.workspace_id WHERE a.id = $1",
        )
        .bind(key)
        .fetch_one(&mut *conn)
        .await
        .map_err(db(ctx))?;
        Ok(slot.insert(AgentInfo {
            agent_id: col(&row, 0, ctx)?,
            agent_name: decode(col(&row, 1, ctx)?),
            workspace_id: col(&row, 2, ctx)?,
            workspace_name: decode(col(&row, 3, ctx)?),
            workspace_owner: decode(col(&row, 4, ctx)?),
        }))
    }
}

/// The records of decoded blocks as the API shows them, those `keep` says.
async fn push_records(
    conn: &mut PgConnection,
    names: &mut Agents,
    row: &BlockRow,
    block: &Block<'_>,
    indexes: impl Iterator<Item = usize>,
    out: &mut Vec<StoredRecord>,
) -> Result<(), StoreError> {
    let batch_of = block.batch_of_each();
    for i in indexes {
        let agent = names.get(conn, row.agent).await?;
        out.push(stored_record(row, block, &batch_of, i, agent)?);
    }
    Ok(())
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

/// The block query for `query`, one step between the cursors `low` and
/// `high` (exclusive).
fn blocks_query(
    query: &RecordQuery,
    agents: Option<&[i64]>,
    low: RecordId,
    high: RecordId,
) -> Result<Filter, StoreError> {
    let mut f = Filter {
        sql: format!("SELECT {BLOCK_COLUMNS} FROM blocks b WHERE true"),
        args: PgArguments::default(),
        count: 0,
    };
    match agents {
        Some([one]) => f.push(" AND b.agent_id = $", *one)?,
        Some(keys) => f.push(" AND b.agent_id = ANY($)", keys.to_vec())?,
        None => {}
    }
    if let Some(session) = &query.session_id {
        f.push(" AND b.session_id = $", encode(session).into_owned())?;
    }
    // Literals, so that the partial indexes on denials apply.
    match query.decision {
        Some(Decision::Deny) => f.sql.push_str(" AND b.denied > 0"),
        Some(Decision::Allow) => f.sql.push_str(" AND b.records > b.denied"),
        None => {}
    }
    match query.conflict {
        Some(true) => f.sql.push_str(" AND b.conflicts > 0"),
        Some(false) => f.sql.push_str(" AND b.records > b.conflicts"),
        None => {}
    }
    if let Some(since) = query.since {
        f.push(" AND b.max_occurred >= $", nanos(since))?;
    }
    if let Some(until) = query.until {
        f.push(" AND b.min_occurred < $", nanos(until))?;
    }
    f.push(" AND b.last_id > $", low)?;
    f.push(" AND b.first_id < $", high)?;
    f.sql.push_str(match query.order {
        Order::OldestFirst => " ORDER BY b.first_id",
        Order::NewestFirst => " ORDER BY b.first_id DESC",
    });
    f.push(" LIMIT $", BLOCKS_PER_STEP)?;
    Ok(f)
}

/// Whether any URL of an encoded block contains `finder`'s needle.
fn any_url_contains(data: &[u8], finder: &memmem::Finder<'_>) -> Result<bool, StoreError> {
    let (raw, ranges) = block::urls(data)?;
    Ok(ranges
        .iter()
        .any(|&(s, e)| finder.find(&raw[s..e]).is_some()))
}

pub(super) async fn records(
    pool: &PgPool,
    query: &RecordQuery,
) -> Result<Vec<StoredRecord>, StoreError> {
    let ctx = "querying records";
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let agents = matching_agents(pool, query).await?;
    if agents.as_ref().is_some_and(Vec::is_empty) {
        return Ok(out);
    }
    let mut conn = pool.acquire().await.map_err(db(ctx))?;
    let finder = query.url_contains.as_deref().map(memmem::Finder::new);
    let mut names = Agents::default();
    let (mut low, mut high) = (
        query.after_id.unwrap_or(i64::MIN),
        query.before_id.unwrap_or(i64::MAX),
    );
    loop {
        let f = blocks_query(query, agents.as_deref(), low, high)?;
        let rows = sqlx::query_with(AssertSqlSafe(f.sql), f.args)
            .fetch_all(&mut *conn)
            .await
            .map_err(db(ctx))?;
        let rows = rows.iter().map(block_row).collect::<Result<Vec<_>, _>>()?;
        let Some(last) = rows.last() else {
            return Ok(out);
        };
        match query.order {
            Order::OldestFirst => low = last.last_id,
            Order::NewestFirst => high = last.first_id,
        }
        for row in &rows {
            if let Some(finder) = &finder
                && !any_url_contains(&row.data, finder)?
            {
                continue;
            }
            let block = block::decode(&row.data)?;
            let batch_of = block.batch_of_each();
            let n = block.records.len();
            let order: Box<dyn Iterator<Item = usize> + Send> = match query.order {
                Order::OldestFirst => Box::new(0..n),
                Order::NewestFirst => Box::new((0..n).rev()),
            };
            let picked: Vec<usize> = order
                .filter(|&i| matches(query, row, &block, &batch_of, i))
                .take(limit - out.len())
                .collect();
            push_records(
                &mut conn,
                &mut names,
                row,
                &block,
                picked.into_iter(),
                &mut out,
            )
            .await?;
            if out.len() >= limit {
                return Ok(out);
            }
        }
    }
}

/// The records with these ids (sorted), by id.
pub(super) async fn records_by_ids(
    conn: &mut PgConnection,
    ids: &[RecordId],
) -> Result<Vec<StoredRecord>, StoreError> {
    let ctx = "reading records by id";
    let (Some(&low), Some(&high)) = (ids.first(), ids.last()) else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {BLOCK_COLUMNS} FROM blocks b WHERE b.last_id >= $1 AND b.first_id <= $2 \
         ORDER BY b.first_id"
    )))
    .bind(low)
    .bind(high)
    .fetch_all(&mut *conn)
    .await
    .map_err(db(ctx))?;
    let wanted: std::collections::HashSet<RecordId> = ids.iter().copied().collect();
    let mut names = Agents::default();
    let mut out = Vec::with_capacity(ids.len());
    for row in &rows {
        let row = block_row(row)?;
        let block = block::decode(&row.data)?;
        let picked: Vec<usize> = (0..block.records.len())
            .filter(|&i| wanted.contains(&(row.first_id + i as i64)))
            .collect();
        push_records(conn, &mut names, &row, &block, picked.into_iter(), &mut out).await?;
    }
    Ok(out)
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
    records_by_ids(&mut conn, &ids).await
}

/// One session's records in sequence order (by sequence number, then id),
/// after the query's position.
pub(super) async fn session_records(
    pool: &PgPool,
    query: &SessionRecordQuery,
) -> Result<Vec<StoredRecord>, StoreError> {
    let ctx = "reading a session's records";
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let after = query.after.unwrap_or(SequencePosition {
        sequence_number: i32::MIN,
        id: i64::MIN,
    });
    let mut out: Vec<StoredRecord> = Vec::new();
    let mut names = Agents::default();
    let agents = agent_keys(pool, query.workspace_id).await?;
    let mut conn = pool.acquire().await.map_err(db(ctx))?;
    for agent in agents {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {BLOCK_COLUMNS}, b.first_seq FROM blocks b WHERE b.agent_id = $1 \
             AND b.session_id = $2 AND b.last_seq >= $3 ORDER BY b.first_seq, b.first_id"
        )))
        .bind(agent)
        .bind(encode(&query.session_id).into_owned())
        .bind(after.sequence_number)
        .fetch_all(&mut *conn)
        .await
        .map_err(db(ctx))?;
        let mut mine: Vec<StoredRecord> = Vec::new();
        for r in &rows {
            let first_seq: i32 = col(r, 5, ctx)?;
            // Blocks come by their lowest number: once `limit` records are
            // below this block's lowest, no later block can come before them.
            if mine.len() >= limit {
                mine.sort_by_key(SequencePosition::of);
                mine.truncate(limit);
                if mine.last().is_some_and(|l| l.sequence_number < first_seq) {
                    break;
                }
            }
            let row = block_row(r)?;
            let block = block::decode(&row.data)?;
            let picked: Vec<usize> = (0..block.records.len())
                .filter(|&i| {
                    SequencePosition {
                        sequence_number: block.records[i].sequence_number,
                        id: row.first_id + i as i64,
                    } > after
                })
                .collect();
            push_records(
                &mut conn,
                &mut names,
                &row,
                &block,
                picked.into_iter(),
                &mut mine,
            )
            .await?;
        }
        out.extend(mine);
    }
    out.sort_by_key(SequencePosition::of);
    out.truncate(limit);
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

/// The dropped ranges of a workspace's agents, of one session or all:
/// (session, range).
pub(super) async fn dropped_ranges(
    pool: &PgPool,
    workspace_id: Uuid,
    session: Option<&str>,
) -> Result<Vec<(String, SequenceRange)>, StoreError> {
    let ctx = "reading dropped ranges";
    let rows = sqlx::query(
        "SELECT d.session_id, d.first_seq, d.last_seq FROM agent_dropped_ranges d \
         JOIN agents a ON a.id = d.agent_id JOIN workspaces w ON w.id = a.workspace_id \
         WHERE w.uuid = $1 AND ($2::text IS NULL OR d.session_id = $2)",
    )
    .bind(workspace_id)
    .bind(session.map(encode))
    .fetch_all(pool)
    .await
    .map_err(db(ctx))?;
    rows.iter()
        .map(|row| {
            Ok((
                decode(col(row, 0, ctx)?),
                SequenceRange {
                    first: i64::from(col::<i32>(row, 1, ctx)?),
                    last: i64::from(col::<i32>(row, 2, ctx)?),
                },
            ))
        })
        .collect()
}

pub(super) async fn workspace_losses(
    pool: &PgPool,
    workspace_id: Uuid,
) -> Result<Vec<Loss>, StoreError> {
    losses(pool, workspace_id, None).await
}

/// One row about a session over a workspace's agents: its stored numbers
/// (ranges), then what the `sessions` rows know.
const SESSION_SUMMARY: &str = "WITH agent AS (SELECT a.id FROM agents a \
        JOIN workspaces w ON w.id = a.workspace_id WHERE w.uuid = $1) \
    SELECT q.distinct_seqs, q.first_seq, q.last_seq, s.conflicts, \
        s.rows, s.final_seq, s.purged_records, s.purged_conflicts, s.purged_first, \
        s.purged_last, s.policy_digest \
    FROM (SELECT coalesce(sum(last_seq - first_seq + 1), 0)::bigint AS distinct_seqs, \
            min(first_seq)::integer AS first_seq, max(last_seq)::integer AS last_seq \
        FROM session_seqs WHERE session_id = $2 AND agent_id IN (SELECT id FROM agent)) q, \
        (SELECT count(*) AS rows, max(final_sequence_number) AS final_seq, \
            sum(purged_records)::bigint AS purged_records, \
            sum(purged_conflicts)::bigint AS purged_conflicts, \
            min(purged_first) AS purged_first, max(purged_last) AS purged_last, \
            max(policy_digest) AS policy_digest, \
            coalesce(sum(conflicts), 0)::bigint AS conflicts \
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
    let agent_dropped = SequenceRange::merge(
        dropped_ranges(pool, workspace_id, Some(session_id))
            .await?
            .into_iter()
            .map(|(_, range)| range)
            .collect(),
    );

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
        agent_dropped,
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

/// The leaves of the records with ids `after_id < id < before_id` (see
/// [`crate::chain::leaves`]), in id order. The blocks are decoded and hashed
/// off the async runtime (CPU work).
pub(super) async fn chain_leaves(
    pool: &PgPool,
    after_id: RecordId,
    before_id: RecordId,
) -> Result<Vec<crate::chain::leaves::LeafBlock>, StoreError> {
    let ctx = "reading the records' leaves";
    let mut conn = pool.acquire().await.map_err(db(ctx))?;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {BLOCK_COLUMNS} FROM blocks b WHERE b.last_id > $1 AND b.first_id < $2 \
         ORDER BY b.first_id"
    )))
    .bind(after_id)
    .bind(before_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db(ctx))?;
    let mut names = Agents::default();
    let mut blocks = Vec::with_capacity(rows.len());
    for row in &rows {
        let row = block_row(row)?;
        let agent = names.get(&mut conn, row.agent).await?;
        blocks.push((row, agent.workspace_id, agent.agent_id));
    }
    drop(conn);
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(blocks.len());
        for (row, workspace_id, agent_id) in &blocks {
            out.extend(crate::chain::leaves::block_leaves(
                row,
                *workspace_id,
                *agent_id,
                after_id,
                before_id,
            )?);
        }
        Ok(out)
    })
    .await
    .map_err(|e| StoreError::database(ctx)(e))?
}
