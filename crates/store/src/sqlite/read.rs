//! Reading records from blocks: record queries, the lines due, a session's
//! records and summary, losses. Runs on a read connection, off the async
//! runtime (decoding blocks is CPU work).
//!
//! A query first picks blocks by their index rows (agent, session, id range,
//! time range, whether they hold denials or conflicts), newest or oldest
//! first, a few at a time; it decodes only those and filters their records
//! until it has enough. A URL search decompresses a block's URLs alone and
//! decodes the rest only when one matches.

use std::collections::HashMap;

use memchr::memmem;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use uuid::Uuid;
use warden_proto::domain::Decision;

use super::db::{self, BLOCK_COLUMNS, Ctx, PRINTED_THROUGH};
use crate::StoreError;
use crate::block;
use crate::convert::{count_from_sql, from_nanos, nanos};
use crate::losses;
use crate::model::{
    Loss, Order, RecordId, RecordQuery, SequencePosition, SequenceRange, SessionRecordQuery,
    SessionSummary, StoredRecord,
};
pub(super) use crate::records::{AgentInfo, BlockRow, matches, stored_record};

/// Blocks fetched per step of a query.
const BLOCKS_PER_STEP: i64 = 32;

/// A `blocks` row as readers select it ([`BLOCK_COLUMNS`]).
pub(super) fn block_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<BlockRow> {
    Ok(BlockRow {
        first_id: row.get(0)?,
        last_id: row.get(1)?,
        agent: row.get(2)?,
        session: row.get(3)?,
        data: row.get(4)?,
    })
}

/// Agent keys to identities, read once per query.
#[derive(Default)]
pub(super) struct Agents(HashMap<i64, AgentInfo>);

impl Agents {
    pub(super) fn get(&mut self, conn: &Connection, key: i64) -> Result<&AgentInfo, StoreError> {
        use std::collections::hash_map::Entry;
        let slot = match self.0.entry(key) {
            Entry::Occupied(known) => return Ok(known.into_mut()),
            Entry::Vacant(slot) => slot,
        };
        let ctx = "reading an agent";
        let info = conn
            .prepare_cached(
                "SELECT a.uuid, a.name, w.uuid, w.name, w.owner FROM agents a \
                 JOIN workspaces w ON w.id = a.workspace_id WHERE a.id = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![key], |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                })
            })
            .ctx(ctx)?;
        Ok(slot.insert(AgentInfo {
            agent_id: crate::convert::uuid(&info.0)?,
            agent_name: info.1,
            workspace_id: crate::convert::uuid(&info.2)?,
            workspace_name: info.3,
            workspace_owner: info.4,
        }))
    }
}

/// The internal keys of the agents a query's workspace, owner and agent name
/// filters allow; `None` when the query has none of them (any agent).
/// Deleted workspaces' agents count: their records stay.
fn matching_agents(conn: &Connection, query: &RecordQuery) -> Result<Option<Vec<i64>>, StoreError> {
    if query.workspace_id.is_none() && query.owner.is_none() && query.agent_name.is_none() {
        return Ok(None);
    }
    let ctx = "finding the agents a query names";
    let mut stmt = conn
        .prepare_cached(
            "SELECT a.id FROM agents a JOIN workspaces w ON w.id = a.workspace_id \
             WHERE (?1 IS NULL OR w.uuid = ?1) AND (?2 IS NULL OR w.owner = ?2) \
             AND (?3 IS NULL OR a.name = ?3) ORDER BY a.id",
        )
        .ctx(ctx)?;
    let rows = stmt
        .query_map(
            params![
                query.workspace_id.map(|w| w.as_bytes().to_vec()),
                query.owner,
                query.agent_name
            ],
            |row| row.get(0),
        )
        .ctx(ctx)?;
    rows.collect::<Result<Vec<i64>, _>>().ctx(ctx).map(Some)
}

/// Internal keys of the agents of a workspace (one today; deleted ones too).
pub(super) fn agent_keys(conn: &Connection, workspace_id: Uuid) -> Result<Vec<i64>, StoreError> {
    let ctx = "finding a workspace's agent";
    let mut stmt = conn
        .prepare_cached(
            "SELECT a.id FROM agents a JOIN workspaces w ON w.id = a.workspace_id \
             WHERE w.uuid = ?1 ORDER BY a.id",
        )
        .ctx(ctx)?;
    let rows = stmt
        .query_map(params![workspace_id.as_bytes().as_slice()], |row| {
            row.get(0)
        })
        .ctx(ctx)?;
    rows.collect::<Result<_, _>>().ctx(ctx)
}

/// The block query for `query` (one step, after a cursor), with its values.
fn blocks_sql(query: &RecordQuery, agents: Option<&[i64]>) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {BLOCK_COLUMNS} FROM blocks b WHERE true");
    let mut values: Vec<Value> = Vec::new();
    match agents {
        Some([one]) => {
            sql.push_str(" AND b.agent_id = ?");
            values.push(Value::Integer(*one));
        }
        Some(keys) => {
            sql.push_str(" AND b.agent_id IN (");
            sql.push_str(&vec!["?"; keys.len()].join(", "));
            sql.push(')');
            values.extend(keys.iter().map(|k| Value::Integer(*k)));
        }
        None => {}
    }
    if let Some(session) = &query.session_id {
        sql.push_str(" AND b.session_id = ?");
        values.push(Value::Text(session.clone()));
    }
    // Literals, so that the partial indexes on denials apply.
    match query.decision {
        Some(Decision::Deny) => sql.push_str(" AND b.denied > 0"),
        Some(Decision::Allow) => sql.push_str(" AND b.records > b.denied"),
        None => {}
    }
    match query.conflict {
        Some(true) => sql.push_str(" AND b.conflicts > 0"),
        Some(false) => sql.push_str(" AND b.records > b.conflicts"),
        None => {}
    }
    if let Some(since) = query.since {
        sql.push_str(" AND b.max_occurred >= ?");
        values.push(Value::Integer(nanos(since)));
    }
    if let Some(until) = query.until {
        sql.push_str(" AND b.min_occurred < ?");
        values.push(Value::Integer(nanos(until)));
    }
    // The cursors and the step's position are the last two values.
    sql.push_str(" AND b.last_id > ? AND b.first_id < ?");
    sql.push_str(match query.order {
        Order::OldestFirst => " ORDER BY b.first_id LIMIT ?",
        Order::NewestFirst => " ORDER BY b.first_id DESC LIMIT ?",
    });
    (sql, values)
}

/// The lowest and highest id of a session's stored records, over these
/// agents (all, when `None`); `None` when it has none.
fn session_span(
    conn: &Connection,
    session: &str,
    agents: Option<&[i64]>,
) -> Result<Option<(RecordId, RecordId)>, StoreError> {
    let ctx = "finding a session's records";
    let spans: Vec<(Option<i64>, Option<i64>)> = match agents {
        Some(keys) => {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT first_id, last_id FROM sessions WHERE agent_id = ?1 AND session_id = ?2",
                )
                .ctx(ctx)?;
            let mut spans = Vec::with_capacity(keys.len());
            for &agent in keys {
                if let Some(span) = stmt
                    .query_row(params![agent, session], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()
                    .ctx(ctx)?
                {
                    spans.push(span);
                }
            }
            spans
        }
        None => vec![
            conn.prepare_cached(
                "SELECT min(first_id), max(last_id) FROM sessions WHERE session_id = ?1",
            )
            .and_then(|mut s| s.query_row(params![session], |row| Ok((row.get(0)?, row.get(1)?))))
            .ctx(ctx)?,
        ],
    };
    Ok(spans
        .into_iter()
        .filter_map(|(first, last)| first.zip(last))
        .reduce(|(a, b), (f, l)| (a.min(f), b.max(l))))
}

/// Whether any URL of an encoded block contains `finder`'s needle.
fn any_url_contains(data: &[u8], finder: &memmem::Finder<'_>) -> Result<bool, StoreError> {
    let (raw, ranges) = block::urls(data)?;
    Ok(ranges
        .iter()
        .any(|&(s, e)| finder.find(&raw[s..e]).is_some()))
}

pub(super) fn records(
    conn: &Connection,
    query: &RecordQuery,
) -> Result<Vec<StoredRecord>, StoreError> {
    let ctx = "querying records";
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let agents = matching_agents(conn, query)?;
    if agents.as_ref().is_some_and(Vec::is_empty) {
        return Ok(out);
    }
    let (sql, values) = blocks_sql(query, agents.as_deref());
    let mut stmt = conn.prepare(&sql).ctx(ctx)?;
    let finder = query.url_contains.as_deref().map(memmem::Finder::new);
    let mut names = Agents::default();
    let (mut low, mut high) = (
        query.after_id.unwrap_or(i64::MIN),
        query.before_id.unwrap_or(i64::MAX),
    );
    // A session's records lie within the span of ids on its `sessions`
    // row(s): the scan starts and stops there rather than at the ends of
    // the workspace's history (an old session cost a scan of everything
    // after it: 290 ms against 0.3 among 500,000 blocks, measured).
    if let Some(session) = &query.session_id {
        let Some((first, last)) = session_span(conn, session, agents.as_deref())? else {
            return Ok(out);
        };
        low = low.max(first.saturating_sub(1));
        high = high.min(last.saturating_add(1));
    }
    loop {
        let mut step = values.clone();
        step.extend([
            Value::Integer(low),
            Value::Integer(high),
            Value::Integer(BLOCKS_PER_STEP),
        ]);
        let rows: Vec<BlockRow> = stmt
            .query_map(params_from_iter(step), block_row)
            .ctx(ctx)?
            .collect::<Result<_, _>>()
            .ctx(ctx)?;
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
            let order: Box<dyn Iterator<Item = usize>> = match query.order {
                Order::OldestFirst => Box::new(0..n),
                Order::NewestFirst => Box::new((0..n).rev()),
            };
            for i in order {
                if matches(query, row, &block, &batch_of, i) {
                    let agent = names.get(conn, row.agent)?;
                    out.push(stored_record(row, &block, &batch_of, i, agent)?);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
    }
}

/// How SQLite picks the blocks of [`records`] for `query`: the `detail`
/// column of `EXPLAIN QUERY PLAN`, one line per step.
pub(super) fn records_plan(
    conn: &Connection,
    query: &RecordQuery,
) -> Result<Vec<String>, StoreError> {
    let ctx = "explaining a record query";
    let agents = matching_agents(conn, query)?;
    if agents.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let (sql, mut values) = blocks_sql(query, agents.as_deref());
    values.extend([
        Value::Integer(i64::MIN),
        Value::Integer(i64::MAX),
        Value::Integer(BLOCKS_PER_STEP),
    ]);
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .ctx(ctx)?;
    let rows = stmt
        .query_map(params_from_iter(values), |row| row.get::<_, String>(3))
        .ctx(ctx)?;
    rows.collect::<Result<_, _>>().ctx(ctx)
}

/// Records whose line is not known to be printed (above the watermark),
/// after `after`, by id.
pub(super) fn unprinted(
    conn: &Connection,
    after: Option<RecordId>,
    noted_through: RecordId,
    limit: u32,
) -> Result<Vec<StoredRecord>, StoreError> {
    let through = db::state(conn, PRINTED_THROUGH)
        .ctx("reading the line watermark")?
        .unwrap_or(0)
        .max(noted_through);
    records(
        conn,
        &RecordQuery {
            after_id: Some(after.map_or(through, |a| a.max(through))),
            limit,
            ..RecordQuery::default()
        },
    )
}

/// One session's records in sequence order (by sequence number, then id),
/// after the query's position.
pub(super) fn session_records(
    conn: &Connection,
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
    for agent in agent_keys(conn, query.workspace_id)? {
        // Ids in order first (the index and the newest blocks merged, only
        // those sorted), then each block: one statement joining the two
        // would sort the blocks' data.
        let mut ids = conn
            .prepare_cached(
                "SELECT first_seq, first_id FROM session_block_ids WHERE agent_id = ?1 \
                 AND session_id = ?2 AND last_seq >= ?3 ORDER BY first_seq, first_id",
            )
            .ctx(ctx)?;
        let mut block_by_id = conn
            .prepare_cached(&format!(
                "SELECT {BLOCK_COLUMNS} FROM blocks b WHERE b.first_id = ?1"
            ))
            .ctx(ctx)?;
        let mut rows = ids
            .query(params![agent, query.session_id, after.sequence_number])
            .ctx(ctx)?;
        let mut mine: Vec<StoredRecord> = Vec::new();
        while let Some(r) = rows.next().ctx(ctx)? {
            let (first_seq, first_id): (i32, i64) = (r.get(0).ctx(ctx)?, r.get(1).ctx(ctx)?);
            // Blocks come by their lowest number: once `limit` records are
            // below this block's lowest, no later block can come before them.
            if mine.len() >= limit {
                mine.sort_by_key(SequencePosition::of);
                mine.truncate(limit);
                if mine.last().is_some_and(|l| l.sequence_number < first_seq) {
                    break;
                }
            }
            let row = block_by_id
                .query_row(params![first_id], block_row)
                .ctx(ctx)?;
            let block = block::decode(&row.data)?;
            let batch_of = block.batch_of_each();
            for i in 0..block.records.len() {
                let position = SequencePosition {
                    sequence_number: block.records[i].sequence_number,
                    id: row.first_id + i as i64,
                };
                if position > after {
                    let info = names.get(conn, agent)?;
                    mine.push(stored_record(&row, &block, &batch_of, i, info)?);
                }
            }
        }
        out.extend(mine);
    }
    out.sort_by_key(SequencePosition::of);
    out.truncate(limit);
    Ok(out)
}

/// The sequence numbers an agent reported losing, of one session or all:
/// (session, range), unmerged.
pub(super) fn dropped_ranges(
    conn: &Connection,
    agent: i64,
    session: Option<&str>,
) -> Result<Vec<(String, SequenceRange)>, StoreError> {
    let ctx = "reading an agent's dropped sequence numbers";
    let mut stmt = conn
        .prepare_cached(
            "SELECT session_id, first_seq, last_seq FROM agent_dropped_ranges \
             WHERE agent_id = ?1 AND (?2 IS NULL OR session_id = ?2)",
        )
        .ctx(ctx)?;
    let rows = stmt
        .query_map(params![agent, session], |row| {
            Ok((
                row.get::<_, String>(0)?,
                SequenceRange {
                    first: row.get(1)?,
                    last: row.get(2)?,
                },
            ))
        })
        .ctx(ctx)?;
    rows.collect::<Result<_, _>>().ctx(ctx)
}

/// Losses of an agent, of one session or all.
pub(super) fn losses(
    conn: &Connection,
    agent: i64,
    session: Option<&str>,
) -> Result<Vec<Loss>, StoreError> {
    let ctx = "reading losses";
    let mut stmt = conn
        .prepare_cached(
            "SELECT source, reason, records, frames FROM losses \
             WHERE agent_id = ?1 AND (?2 IS NULL OR session_id = ?2)",
        )
        .ctx(ctx)?;
    let rows = stmt
        .query_map(params![agent, session], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .ctx(ctx)?;
    let mut out = Vec::new();
    for row in rows {
        let (source, reason, records, frames) = row.ctx(ctx)?;
        losses::merge(
            &mut out,
            Loss {
                source: crate::sessions::loss_source(&source)?,
                reason,
                records: count_from_sql(records),
                frames: count_from_sql(frames),
            },
        );
    }
    Ok(out)
}

pub(super) fn workspace_losses(
    conn: &Connection,
    workspace_id: Uuid,
) -> Result<Vec<Loss>, StoreError> {
    let mut out = Vec::new();
    for agent in agent_keys(conn, workspace_id)? {
        for loss in losses(conn, agent, None)? {
            losses::merge(&mut out, loss);
        }
    }
    losses::sort(&mut out);
    Ok(out)
}

/// A session's stored sequence numbers of one agent: how many, lowest,
/// highest.
pub(super) fn seq_extent(
    conn: &Connection,
    agent: i64,
    session: &str,
) -> Result<(u64, Option<i32>, Option<i32>), StoreError> {
    let ctx = "summarising a session";
    conn.prepare_cached(
        "SELECT sum(last_seq - first_seq + 1), min(first_seq), max(last_seq) \
         FROM session_seqs WHERE agent_id = ?1 AND session_id = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![agent, session], |row| {
            Ok((
                count_from_sql(row.get::<_, Option<i64>>(0)?.unwrap_or(0)),
                row.get(1)?,
                row.get(2)?,
            ))
        })
    })
    .ctx(ctx)
}

pub(super) fn session_summary(
    conn: &Connection,
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
        policy_digest: None,
    };
    let mut seen = false;
    for agent in agent_keys(conn, workspace_id)? {
        let (distinct, first, last) = seq_extent(conn, agent, session_id)?;
        let row = conn
            .prepare_cached(
                "SELECT final_sequence_number, purged_records, purged_conflicts, purged_first, \
                 purged_last, conflicts, policy_digest FROM sessions \
                 WHERE agent_id = ?1 AND session_id = ?2",
            )
            .and_then(|mut s| {
                rusqlite::OptionalExtension::optional(s.query_row(
                    params![agent, session_id],
                    |row| {
                        Ok((
                            row.get::<_, Option<i64>>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, i64>(2)?,
                            row.get::<_, Option<i32>>(3)?,
                            row.get::<_, Option<i32>>(4)?,
                            row.get::<_, i64>(5)?,
                            row.get::<_, Option<String>>(6)?,
                        ))
                    },
                ))
            })
            .ctx(ctx)?;
        let losses = losses(conn, agent, Some(session_id))?;
        seen |= distinct > 0 || row.is_some() || !losses.is_empty();
        summary.distinct_sequence_numbers += distinct;
        summary.first_sequence_number = min_opt(summary.first_sequence_number, first);
        summary.last_sequence_number = summary.last_sequence_number.max(last);
        if let Some((final_seq, p_records, p_conflicts, p_first, p_last, conflicts, policy)) = row {
            let (p_records, p_conflicts) = (count_from_sql(p_records), count_from_sql(p_conflicts));
            summary.distinct_sequence_numbers += p_records;
            summary.conflicts += count_from_sql(conflicts) + p_conflicts;
            summary.purged += p_records + p_conflicts;
            summary.first_sequence_number = min_opt(summary.first_sequence_number, p_first);
            summary.last_sequence_number = summary.last_sequence_number.max(p_last);
            summary.final_sequence_number = summary.final_sequence_number.max(final_seq);
            summary.policy_digest = summary.policy_digest.or(policy);
        }
        let dropped = dropped_ranges(conn, agent, Some(session_id))?;
        seen |= !dropped.is_empty();
        summary
            .agent_dropped
            .extend(dropped.into_iter().map(|(_, range)| range));
        for loss in losses {
            losses::merge(&mut summary.losses, loss);
        }
    }
    summary.records = summary.distinct_sequence_numbers + summary.conflicts;
    losses::sort(&mut summary.losses);
    summary.agent_dropped = SequenceRange::merge(std::mem::take(&mut summary.agent_dropped));
    Ok(seen.then_some(summary))
}

/// The policy text with this digest.
pub(super) fn policy(
    conn: &Connection,
    digest: &str,
) -> Result<Option<crate::model::PolicyText>, StoreError> {
    let row = conn
        .prepare_cached("SELECT text, first_seen FROM policies WHERE digest = ?1")
        .and_then(|mut s| {
            rusqlite::OptionalExtension::optional(s.query_row(params![digest], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            }))
        })
        .ctx("reading a policy")?;
    row.map(|(text, first_seen)| {
        Ok(crate::model::PolicyText {
            digest: digest.to_owned(),
            text,
            first_seen: from_nanos(first_seen)?,
        })
    })
    .transpose()
}

fn min_opt(a: Option<i32>, b: Option<i32>) -> Option<i32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The leaves of the records with ids `after_id < id < before_id` (see
/// [`crate::chain::leaves`]), in id order.
pub(super) fn chain_leaves(
    conn: &Connection,
    after_id: RecordId,
    before_id: RecordId,
) -> Result<Vec<crate::chain::leaves::LeafBlock>, StoreError> {
    let ctx = "reading the records' leaves";
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {BLOCK_COLUMNS} FROM blocks b WHERE b.last_id > ?1 AND b.first_id < ?2 \
             ORDER BY b.first_id"
        ))
        .ctx(ctx)?;
    let rows = stmt
        .query_map(params![after_id, before_id], block_row)
        .ctx(ctx)?;
    let mut agents = Agents::default();
    let mut out = Vec::new();
    for row in rows {
        let row = row.ctx(ctx)?;
        let agent = agents.get(conn, row.agent)?;
        let (workspace_id, agent_id) = (agent.workspace_id, agent.agent_id);
        out.extend(crate::chain::leaves::block_leaves(
            &row,
            workspace_id,
            agent_id,
            after_id,
            before_id,
        )?);
    }
    Ok(out)
}
