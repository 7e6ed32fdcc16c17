//! Ingest on PostgreSQL: the calls of one group commit become blocks, as on
//! SQLite (the shared [`crate::group`] builds them; see it for how
//! duplicates and conflicts are found), and the commit lock orders record
//! ids across replicas.
//!
//! Why a lock: record ids must grow in commit order across replicas (a
//! reader following `id > cursor` must never see id 20 committed before id
//! 10 is). So every ingest transaction first takes one transaction advisory
//! lock (`pg_advisory_xact_lock`), which PostgreSQL releases only once the
//! commit is done; the next id is read and advanced (`store_state`) under
//! it. Ids are handed out and committed one transaction at a time, across
//! all replicas, and a snapshot that sees a record sees every record with a
//! lower id. One lock per group commit, never per record: a replica commits
//! the calls that queue up meanwhile together (see `committer`).
//!
//! The lock also serializes the same records arriving through two replicas
//! at once: the second transaction starts after the first committed and
//! reads its batch ids and sequence ranges. So the group's questions
//! ([`Lookup`]) are answered exactly by a few statements run right after the
//! lock, for the whole group ([`Prefetched`]): the batch ids it carries (and
//! those of the batches its agents report dropped), the
//! stored sequence ranges around each session's numbers, and only when
//! numbers fall inside those ranges (a re-send, a conflict) the blocks that
//! hold them. Then the group is built in memory and its [`Plan`] written with
//! one multi-row statement per table (`unnest` of column arrays). The
//! primary keys on batch ids and blocks stay as the backstop.
//!
//! The price: ingest transactions do not overlap, so write throughput is
//! that of one transaction stream (replicas add availability, not ingest
//! capacity), and the commit's WAL flush is inside the lock. With blocks a
//! transaction costs about ten statements whatever its size, so large
//! groups make that cheap.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;
use sqlx::postgres::{PgConnection, PgPool};
use uuid::Uuid;

use super::text::encode;
use super::{chain, col, db};
use crate::StoreError;
use crate::block::{self, Block};
use crate::convert::count_to_sql;
use crate::counters::Counters;
use crate::group::{Group, Identities, Lookup, Plan, SideWrite};
use crate::intervals::IntervalSet;
use crate::model::{IngestOutcome, IngestRequest, LossSource, RecordId};

/// Starts an ingest transaction holding the commit lock, in one round trip.
/// The key (single-key form) is 0x5744434f4d4d4954, "WDCOMMIT".
pub(super) const BEGIN_LOCKED: &str = "BEGIN; SELECT pg_advisory_xact_lock(6288224987594443092)";

/// `store_state` key: the next record id to hand out.
pub(super) const NEXT_RECORD_ID: &str = "next_record_id";

const CTX: &str = "committing to the database";

/// Commits the requests (each with its agent's internal key) in one
/// transaction, their lines owned by `replica`; one outcome per request, as
/// if they had been committed one after the other.
pub(super) async fn commit(
    pool: &PgPool,
    replica: i32,
    max_url_bytes: usize,
    identities: &mut Identities,
    requests: &[(i64, &IngestRequest)],
) -> Result<Vec<IngestOutcome>, StoreError> {
    let mut conn = pool.acquire().await.map_err(db(CTX))?;
    // What the chain hashes of each record's origin: agents never move, so
    // the caller's cache stays valid and the lookup stays out of the lock.
    chain::fill_identities(&mut conn, identities, requests.iter().map(|(a, _)| *a)).await?;
    // Built before the lock, so that building and encoding overlap with
    // other replicas' commits; valid when what it read has not changed by
    // the time the lock is held (checked below). A group that carries
    // stored numbers again (its blocks are compared) is built under the lock.
    let early = Prefetched::load(&mut conn, requests).await?;
    let speculative = if early.blocks.is_empty() {
        Some(build(&mut early.clone(), requests, max_url_bytes)?)
    } else {
        None
    };
    let mut tx = sqlx::Connection::begin_with(&mut *conn, BEGIN_LOCKED)
        .await
        .map_err(db(CTX))?;
    let pre = Prefetched::load(&mut tx, requests).await?;
    let mut plan = match speculative {
        Some(plan) if pre.same_as(&early) => plan,
        _ => build(&mut pre.clone(), requests, max_url_bytes)?,
    };
    plan.shift(next_record_id(&mut tx).await?);
    let outcomes = std::mem::take(&mut plan.outcomes);
    // The group's one link, after the head as it stands under the lock.
    if plan.ids.is_some() {
        let head = chain::head(&mut tx).await?;
        if let Some(link) = plan.chain_link(identities, &head, Timestamp::now())? {
            chain::insert_link(&mut tx, &link).await?;
        }
    }
    write(&mut tx, &pre, plan, replica).await?;
    tx.commit().await.map_err(db(CTX))?;
    Ok(outcomes)
}

/// The group's plan, its ids from 0.
fn build<'r>(
    pre: &mut Prefetched,
    requests: &[(i64, &'r IngestRequest)],
    max_url_bytes: usize,
) -> Result<Plan<'r>, StoreError> {
    let mut group = Group::new(max_url_bytes);
    for (agent, request) in requests {
        group.add(pre, *agent, request)?;
    }
    Ok(group.finish(0))
}

/// The next record id (under the commit lock).
pub(super) async fn next_record_id(conn: &mut PgConnection) -> Result<RecordId, StoreError> {
    let row = sqlx::query(
        "SELECT coalesce((SELECT value FROM store_state WHERE key = $1), \
         (SELECT coalesce(max(last_id), 0) + 1 FROM blocks))",
    )
    .bind(NEXT_RECORD_ID)
    .fetch_one(&mut *conn)
    .await
    .map_err(db(CTX))?;
    col(&row, 0, CTX)
}

/// Sets the next record id (under the commit lock).
pub(super) async fn set_next_record_id(
    conn: &mut PgConnection,
    next: RecordId,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO store_state (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(NEXT_RECORD_ID)
    .bind(next)
    .execute(&mut *conn)
    .await
    .map_err(db(CTX))?;
    Ok(())
}

/// A session of one agent.
type SessionKey = (i64, String);

/// The group's questions, answered for the whole group right after the
/// commit lock was taken (nothing changes under the lock but what this
/// transaction writes).
#[derive(Clone, Default)]
pub(super) struct Prefetched {
    batches: HashSet<(i64, Uuid)>,
    /// Stored ranges overlapping each session's window (its numbers in the
    /// group, one wider on each side so that touching ranges are there to be
    /// merged with).
    ranges: HashMap<SessionKey, IntervalSet>,
    /// Blocks holding numbers the group carries again, with their sequence
    /// ranges.
    blocks: HashMap<SessionKey, Vec<(i32, i32, Block<'static>)>>,
}

impl Prefetched {
    /// Whether a group built from `other` is valid with what this one read:
    /// the same batch ids and ranges, and no stored blocks compared.
    fn same_as(&self, other: &Prefetched) -> bool {
        self.blocks.is_empty()
            && other.blocks.is_empty()
            && self.batches == other.batches
            && self.ranges == other.ranges
    }

    async fn load(
        conn: &mut PgConnection,
        requests: &[(i64, &IngestRequest)],
    ) -> Result<Prefetched, StoreError> {
        let ctx = "reading what a group commit must know";
        let mut out = Prefetched::default();
        let (mut agents, mut ids) = (Vec::new(), Vec::new());
        let mut windows: BTreeMap<(i64, &str), (i64, i64)> = BTreeMap::new();
        for (agent, request) in requests {
            for batch in &request.batches {
                agents.push(*agent);
                ids.push(batch.batch_id);
                // The batches the agent reports dropped: such a drop counts
                // only if the id is not taken.
                for dropped in batch.agent_drops.iter().filter_map(|d| d.dropped_batch_id) {
                    agents.push(*agent);
                    ids.push(dropped);
                }
                let Some(logs) = &batch.logs else { continue };
                let Some(session) = logs.session_id.as_deref() else {
                    continue;
                };
                for r in &logs.records {
                    let seq = i64::from(r.sequence_number);
                    let w = windows.entry((*agent, session)).or_insert((seq, seq));
                    w.0 = w.0.min(seq);
                    w.1 = w.1.max(seq);
                }
            }
        }
        if !ids.is_empty() {
            let rows = sqlx::query(
                "SELECT b.agent_id, b.uuid FROM unnest($1::bigint[], $2::uuid[]) AS u(agent, id) \
                 JOIN batch_ids b ON b.agent_id = u.agent AND b.uuid = u.id",
            )
            .bind(&agents)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(db(ctx))?;
            for row in &rows {
                out.batches.insert((col(row, 0, ctx)?, col(row, 1, ctx)?));
            }
        }
        if windows.is_empty() {
            return Ok(out);
        }
        let n = windows.len();
        let (mut w_agents, mut w_sessions) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut lows, mut highs) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (&(agent, session), &(low, high)) in &windows {
            w_agents.push(agent);
            w_sessions.push(encode(session).into_owned());
            lows.push(low - 1);
            highs.push(high + 1);
        }
        let rows = sqlx::query(
            "SELECT w.ord, s.first_seq, s.last_seq \
             FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[]) \
                 WITH ORDINALITY AS w(agent, session, low, high, ord) \
             JOIN session_seqs s ON s.agent_id = w.agent AND s.session_id = w.session \
                 AND s.first_seq <= w.high AND s.last_seq >= w.low",
        )
        .bind(&w_agents)
        .bind(&w_sessions)
        .bind(&lows)
        .bind(&highs)
        .fetch_all(&mut *conn)
        .await
        .map_err(db(ctx))?;
        let keys: Vec<(i64, &str)> = windows.keys().copied().collect();
        for row in &rows {
            let ord: i64 = col(row, 0, ctx)?;
            let (agent, session) = keys[usize::try_from(ord - 1).unwrap_or(usize::MAX)];
            out.ranges
                .entry((agent, session.to_owned()))
                .or_default()
                .insert(col(row, 1, ctx)?, col(row, 2, ctx)?);
        }
        // Numbers the group carries again: the blocks that hold them.
        let mut hits: BTreeMap<(i64, &str), (i32, i32)> = BTreeMap::new();
        for (agent, request) in requests {
            for batch in &request.batches {
                let Some(logs) = &batch.logs else { continue };
                let Some(session) = logs.session_id.as_deref() else {
                    continue;
                };
                let Some(stored) = out.ranges.get(&(*agent, session.to_owned())) else {
                    continue;
                };
                for r in &logs.records {
                    if stored.contains(i64::from(r.sequence_number)) {
                        let s = r.sequence_number;
                        let h = hits.entry((*agent, session)).or_insert((s, s));
                        h.0 = h.0.min(s);
                        h.1 = h.1.max(s);
                    }
                }
            }
        }
        if hits.is_empty() {
            return Ok(out);
        }
        let n = hits.len();
        let (mut h_agents, mut h_sessions) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut lows, mut highs) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (&(agent, session), &(low, high)) in &hits {
            h_agents.push(agent);
            h_sessions.push(encode(session).into_owned());
            lows.push(low);
            highs.push(high);
        }
        let rows = sqlx::query(
            "SELECT w.ord, b.first_seq, b.last_seq, b.data \
             FROM unnest($1::bigint[], $2::text[], $3::integer[], $4::integer[]) \
                 WITH ORDINALITY AS w(agent, session, low, high, ord) \
             JOIN blocks b ON b.agent_id = w.agent AND b.session_id = w.session \
                 AND b.session_id IS NOT NULL AND b.first_seq <= w.high AND b.last_seq >= w.low",
        )
        .bind(&h_agents)
        .bind(&h_sessions)
        .bind(&lows)
        .bind(&highs)
        .fetch_all(&mut *conn)
        .await
        .map_err(db(ctx))?;
        let keys: Vec<(i64, &str)> = hits.keys().copied().collect();
        for row in &rows {
            let ord: i64 = col(row, 0, ctx)?;
            let (agent, session) = keys[usize::try_from(ord - 1).unwrap_or(usize::MAX)];
            let data: Vec<u8> = col(row, 3, ctx)?;
            out.blocks
                .entry((agent, session.to_owned()))
                .or_default()
                .push((col(row, 1, ctx)?, col(row, 2, ctx)?, block::decode(&data)?));
        }
        Ok(out)
    }
}

impl Lookup for Prefetched {
    fn batch_stored(&mut self, agent: i64, batch: Uuid) -> Result<bool, StoreError> {
        Ok(self.batches.contains(&(agent, batch)))
    }

    fn stored_ranges(
        &mut self,
        agent: i64,
        session: &str,
        _low: i64,
        _high: i64,
    ) -> Result<IntervalSet, StoreError> {
        Ok(self
            .ranges
            .get(&(agent, session.to_owned()))
            .cloned()
            .unwrap_or_default())
    }

    fn session_blocks(
        &mut self,
        agent: i64,
        session: &str,
        low: i32,
        high: i32,
    ) -> Result<Vec<Block<'static>>, StoreError> {
        Ok(self
            .blocks
            .get(&(agent, session.to_owned()))
            .into_iter()
            .flatten()
            .filter(|(first, last, _)| *first <= high && *last >= low)
            .map(|(_, _, b)| b.clone())
            .collect())
    }
}

const INSERT_BLOCKS: &str = "INSERT INTO blocks (first_id, last_id, agent_id, session_id, \
    first_seq, last_seq, min_occurred, max_occurred, min_received, max_received, records, \
    denied, conflicts, data) \
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::integer[], \
        $6::integer[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::integer[], \
        $12::integer[], $13::integer[], $14::bytea[])";

const ADD_SESSIONS: &str = "INSERT INTO sessions (agent_id, session_id, conflicts, first_id, \
    last_id, first_occurred, last_occurred, policy_digest) \
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], \
        $6::bigint[], $7::bigint[], $8::text[]) \
    ON CONFLICT (agent_id, session_id) DO UPDATE SET \
    conflicts = sessions.conflicts + excluded.conflicts, \
    first_id = LEAST(sessions.first_id, excluded.first_id), \
    last_id = GREATEST(sessions.last_id, excluded.last_id), \
    first_occurred = LEAST(sessions.first_occurred, excluded.first_occurred), \
    last_occurred = GREATEST(sessions.last_occurred, excluded.last_occurred), \
    policy_digest = coalesce(excluded.policy_digest, sessions.policy_digest)";

const ADD_LOSSES: &str = "INSERT INTO losses (agent_id, session_id, source, reason, records, \
    frames) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], \
        $5::bigint[], $6::bigint[]) \
    ON CONFLICT (agent_id, session_id, source, reason) DO UPDATE SET \
    records = CASE WHEN losses.records > 9223372036854775807 - excluded.records \
        THEN 9223372036854775807 ELSE losses.records + excluded.records END, \
    frames = CASE WHEN losses.frames > 9223372036854775807 - excluded.frames \
        THEN 9223372036854775807 ELSE losses.frames + excluded.frames END";

const SET_FINAL_SEQUENCES: &str = "INSERT INTO sessions (agent_id, session_id, \
    final_sequence_number) SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]) \
    ON CONFLICT (agent_id, session_id) \
    DO UPDATE SET final_sequence_number = excluded.final_sequence_number";

/// Several rows of a group may share a key (the statement may touch a row
/// once): they are folded before, keeping the larger last.
const ADD_DROPPED_RANGES: &str = "INSERT INTO agent_dropped_ranges \
    (agent_id, session_id, first_seq, last_seq) \
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::integer[], $4::integer[]) \
    ON CONFLICT (agent_id, session_id, first_seq) DO UPDATE SET \
    last_seq = GREATEST(agent_dropped_ranges.last_seq, excluded.last_seq)";

const STORE_POLICIES: &str = "INSERT INTO policies (digest, text, first_seen) \
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) ON CONFLICT (digest) DO NOTHING";

/// Last contact and last batch of the agents of a group, one row per agent.
const TOUCH_AGENTS: &str = "UPDATE agents a SET last_contact_at = u.contact, \
    last_batch_at = COALESCE(u.batch_at, a.last_batch_at), \
    last_batch_uuid = COALESCE(u.batch_uuid, a.last_batch_uuid) \
    FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::uuid[]) \
        AS u(agent, contact, batch_at, batch_uuid) \
    WHERE a.id = u.agent";

/// Writes a group's plan: one statement per table.
async fn write(
    conn: &mut PgConnection,
    pre: &Prefetched,
    plan: Plan<'_>,
    replica: i32,
) -> Result<(), StoreError> {
    if !plan.blocks.is_empty() {
        insert_blocks(conn, &plan.blocks).await?;
    }
    if !plan.batch_ids.is_empty() {
        let rows = &plan.batch_ids;
        sqlx::query(
            "INSERT INTO batch_ids (agent_id, uuid, received_ns, block) \
             SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bigint[], $4::bigint[])",
        )
        .bind(rows.iter().map(|r| r.agent).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.received_ns).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.last_record).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .map_err(db("storing batch ids"))?;
    }
    write_ranges(conn, pre, &plan.ranges).await?;
    if !plan.sessions.is_empty() {
        let s = &plan.sessions;
        sqlx::query(ADD_SESSIONS)
            .bind(s.iter().map(|s| s.agent).collect::<Vec<_>>())
            .bind(
                s.iter()
                    .map(|s| encode(s.session).into_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(
                s.iter()
                    .map(|s| count_to_sql(s.conflicts))
                    .collect::<Vec<_>>(),
            )
            .bind(s.iter().map(|s| s.first_id).collect::<Vec<_>>())
            .bind(s.iter().map(|s| s.last_id).collect::<Vec<_>>())
            .bind(s.iter().map(|s| s.first_occurred).collect::<Vec<_>>())
            .bind(s.iter().map(|s| s.last_occurred).collect::<Vec<_>>())
            .bind(s.iter().map(|s| s.policy_digest).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .map_err(db("counting sessions"))?;
    }
    add_counters(conn, &plan.counters).await?;
    if let Some((first, last)) = plan.ids {
        set_next_record_id(conn, last + 1).await?;
        sqlx::query("INSERT INTO line_outbox (first_id, last_id, replica) VALUES ($1, $2, $3)")
            .bind(first)
            .bind(last)
            .bind(replica)
            .execute(&mut *conn)
            .await
            .map_err(db("noting lines to print"))?;
    }
    side_writes(conn, &plan.side).await
}

/// Inserts blocks with their index rows.
pub(super) async fn insert_blocks(
    conn: &mut PgConnection,
    blocks: &[crate::group::BlockRow],
) -> Result<(), StoreError> {
    let b = blocks;
    sqlx::query(INSERT_BLOCKS)
        .bind(b.iter().map(|b| b.first_id).collect::<Vec<_>>())
        .bind(b.iter().map(|b| b.last_id).collect::<Vec<_>>())
        .bind(b.iter().map(|b| b.agent).collect::<Vec<_>>())
        .bind(
            b.iter()
                .map(|b| b.session.as_deref().map(|s| encode(s).into_owned()))
                .collect::<Vec<_>>(),
        )
        .bind(b.iter().map(|b| b.first_seq).collect::<Vec<_>>())
        .bind(b.iter().map(|b| b.last_seq).collect::<Vec<_>>())
        .bind(b.iter().map(|b| b.min_occurred).collect::<Vec<_>>())
        .bind(b.iter().map(|b| b.max_occurred).collect::<Vec<_>>())
        .bind(b.iter().map(|b| b.min_received).collect::<Vec<_>>())
        .bind(b.iter().map(|b| b.max_received).collect::<Vec<_>>())
        .bind(
            b.iter()
                .map(|b| i32::try_from(b.records).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(
            b.iter()
                .map(|b| i32::try_from(b.denied).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(
            b.iter()
                .map(|b| i32::try_from(b.conflicts).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(b.iter().map(|b| b.data.as_slice()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .map_err(db("storing records"))?;
    Ok(())
}

/// Adds the group's new numbers to the sessions' ranges: the prefetched
/// ranges around them are replaced by their union with the new ones.
async fn write_ranges(
    conn: &mut PgConnection,
    pre: &Prefetched,
    ranges: &[(i64, &str, IntervalSet)],
) -> Result<(), StoreError> {
    let ctx = "storing sessions' sequence numbers";
    let (mut del_agent, mut del_session, mut del_first) = (Vec::new(), Vec::new(), Vec::new());
    let (mut agents, mut sessions, mut firsts, mut lasts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (agent, session, added) in ranges {
        let before = pre
            .ranges
            .get(&(*agent, (*session).to_owned()))
            .cloned()
            .unwrap_or_default();
        let mut after = before.clone();
        for (f, l) in added.ranges() {
            after.insert(f, l);
        }
        let old: HashSet<(i64, i64)> = before.ranges().collect();
        let new: HashSet<(i64, i64)> = after.ranges().collect();
        let session = encode(session).into_owned();
        for &(f, l) in old.difference(&new) {
            let _ = l;
            del_agent.push(*agent);
            del_session.push(session.clone());
            del_first.push(f);
        }
        for &(f, l) in new.difference(&old) {
            agents.push(*agent);
            sessions.push(session.clone());
            firsts.push(f);
            lasts.push(l);
        }
    }
    if !del_first.is_empty() {
        sqlx::query(
            "DELETE FROM session_seqs s USING unnest($1::bigint[], $2::text[], $3::bigint[]) \
                 AS d(agent, session, first) \
             WHERE s.agent_id = d.agent AND s.session_id = d.session AND s.first_seq = d.first",
        )
        .bind(&del_agent)
        .bind(&del_session)
        .bind(&del_first)
        .execute(&mut *conn)
        .await
        .map_err(db(ctx))?;
    }
    if !firsts.is_empty() {
        sqlx::query(
            "INSERT INTO session_seqs (agent_id, session_id, first_seq, last_seq) \
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[])",
        )
        .bind(&agents)
        .bind(&sessions)
        .bind(&firsts)
        .bind(&lasts)
        .execute(&mut *conn)
        .await
        .map_err(db(ctx))?;
    }
    Ok(())
}

/// Adds counts to the minute and host counters.
pub(super) async fn add_counters(
    conn: &mut PgConnection,
    counters: &Counters,
) -> Result<(), StoreError> {
    let ctx = "counting records";
    if !counters.minutes.is_empty() {
        let m: Vec<(&(i64, i64), &crate::counters::Minute)> = counters.minutes.iter().collect();
        sqlx::query(
            "INSERT INTO activity_minutes (agent_id, minute, allowed, denied, conflicts, \
             min_occurred, max_occurred) SELECT * FROM unnest($1::bigint[], $2::bigint[], \
             $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[]) \
             ON CONFLICT (agent_id, minute) DO UPDATE SET \
             allowed = activity_minutes.allowed + excluded.allowed, \
             denied = activity_minutes.denied + excluded.denied, \
             conflicts = activity_minutes.conflicts + excluded.conflicts, \
             min_occurred = LEAST(activity_minutes.min_occurred, excluded.min_occurred), \
             max_occurred = GREATEST(activity_minutes.max_occurred, excluded.max_occurred)",
        )
        .bind(m.iter().map(|(k, _)| k.0).collect::<Vec<_>>())
        .bind(m.iter().map(|(k, _)| k.1).collect::<Vec<_>>())
        .bind(m.iter().map(|(_, v)| v.allowed).collect::<Vec<_>>())
        .bind(m.iter().map(|(_, v)| v.denied).collect::<Vec<_>>())
        .bind(m.iter().map(|(_, v)| v.conflicts).collect::<Vec<_>>())
        .bind(m.iter().map(|(_, v)| v.min_occurred).collect::<Vec<_>>())
        .bind(m.iter().map(|(_, v)| v.max_occurred).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .map_err(db(ctx))?;
    }
    if !counters.hosts.is_empty() {
        add_hosts(conn, counters, 1).await?;
    }
    Ok(())
}

/// Adds (`sign` 1) or takes away (-1) the host counts.
pub(super) async fn add_hosts(
    conn: &mut PgConnection,
    counters: &Counters,
    sign: i64,
) -> Result<(), StoreError> {
    let h: Vec<(&(i64, i64, String), &i64)> = counters.hosts.iter().collect();
    sqlx::query(
        "INSERT INTO denied_hosts (agent_id, hour, host, records) \
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[]) \
         ON CONFLICT (agent_id, hour, host) DO UPDATE SET \
         records = denied_hosts.records + excluded.records",
    )
    .bind(h.iter().map(|(k, _)| k.0).collect::<Vec<_>>())
    .bind(h.iter().map(|(k, _)| k.1).collect::<Vec<_>>())
    .bind(
        h.iter()
            .map(|(k, _)| encode(&k.2).into_owned())
            .collect::<Vec<_>>(),
    )
    .bind(h.iter().map(|(_, n)| **n * sign).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .map_err(db("counting records"))?;
    let t = counters.host_totals();
    sqlx::query(
        "INSERT INTO denied_host_totals (agent_id, host, records) \
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]) \
         ON CONFLICT (agent_id, host) DO UPDATE SET \
         records = denied_host_totals.records + excluded.records",
    )
    .bind(t.iter().map(|(k, _)| k.0).collect::<Vec<_>>())
    .bind(
        t.iter()
            .map(|(k, _)| encode(k.1).into_owned())
            .collect::<Vec<_>>(),
    )
    .bind(t.iter().map(|(_, n)| *n * sign).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .map_err(db("counting records"))?;
    Ok(())
}

/// Applies the group's other writes, each kind as one statement (the
/// group's order decides which value wins where one does).
async fn side_writes(conn: &mut PgConnection, side: &[SideWrite<'_>]) -> Result<(), StoreError> {
    let mut losses: BTreeMap<(i64, &str, LossSource, &str), (u64, u64)> = BTreeMap::new();
    let mut finals: BTreeMap<(i64, &str), i64> = BTreeMap::new();
    // (agent, session, first) -> last
    let mut dropped: BTreeMap<(i64, &str, i32), i32> = BTreeMap::new();
    let mut policies: BTreeMap<&str, (&str, i64)> = BTreeMap::new();
    // agent -> (contact, last batch)
    let mut touched: BTreeMap<i64, (i64, Option<(i64, Uuid)>)> = BTreeMap::new();
    for s in side {
        match *s {
            SideWrite::Loss {
                agent,
                session,
                source,
                reason,
                records,
                frames,
            } => {
                let e = losses.entry((agent, session, source, reason)).or_default();
                e.0 = e.0.saturating_add(records);
                e.1 = e.1.saturating_add(frames);
            }
            SideWrite::FinalSequence {
                agent,
                session,
                final_sequence_number,
            } => {
                finals.insert((agent, session), final_sequence_number);
            }
            SideWrite::DroppedRange {
                agent,
                session,
                first,
                last,
            } => {
                let e = dropped.entry((agent, session, first)).or_insert(last);
                *e = (*e).max(last);
            }
            SideWrite::Policy { digest, text, at } => {
                policies.entry(digest).or_insert((text, at));
            }
            SideWrite::Touch {
                agent,
                at,
                last_batch,
            } => {
                let e = touched.entry(agent).or_insert((at, None));
                e.0 = at;
                if let Some(id) = last_batch {
                    e.1 = Some((at, id));
                }
            }
        }
    }
    if !losses.is_empty() {
        let l: Vec<_> = losses.into_iter().collect();
        sqlx::query(ADD_LOSSES)
            .bind(l.iter().map(|(k, _)| k.0).collect::<Vec<_>>())
            .bind(
                l.iter()
                    .map(|(k, _)| encode(k.1).into_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(l.iter().map(|(k, _)| k.2.as_str()).collect::<Vec<_>>())
            .bind(
                l.iter()
                    .map(|(k, _)| encode(k.3).into_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(l.iter().map(|(_, v)| count_to_sql(v.0)).collect::<Vec<_>>())
            .bind(l.iter().map(|(_, v)| count_to_sql(v.1)).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .map_err(db("counting losses"))?;
    }
    if !finals.is_empty() {
        let f: Vec<_> = finals.into_iter().collect();
        sqlx::query(SET_FINAL_SEQUENCES)
            .bind(f.iter().map(|(k, _)| k.0).collect::<Vec<_>>())
            .bind(
                f.iter()
                    .map(|(k, _)| encode(k.1).into_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(f.iter().map(|(_, v)| *v).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .map_err(db("recording sessions' final sequence numbers"))?;
    }
    if !dropped.is_empty() {
        let d: Vec<_> = dropped.into_iter().collect();
        sqlx::query(ADD_DROPPED_RANGES)
            .bind(d.iter().map(|(k, _)| k.0).collect::<Vec<_>>())
            .bind(
                d.iter()
                    .map(|(k, _)| encode(k.1).into_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(d.iter().map(|(k, _)| k.2).collect::<Vec<_>>())
            .bind(d.iter().map(|(_, v)| *v).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .map_err(db("storing agents' dropped sequence numbers"))?;
    }
    if !policies.is_empty() {
        let p: Vec<_> = policies.into_iter().collect();
        sqlx::query(STORE_POLICIES)
            .bind(p.iter().map(|(d, _)| *d).collect::<Vec<_>>())
            .bind(
                p.iter()
                    .map(|(_, v)| encode(v.0).into_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(p.iter().map(|(_, v)| v.1).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .map_err(db("storing policies"))?;
    }
    if !touched.is_empty() {
        let t: Vec<_> = touched.into_iter().collect();
        sqlx::query(TOUCH_AGENTS)
            .bind(t.iter().map(|(a, _)| *a).collect::<Vec<_>>())
            .bind(t.iter().map(|(_, v)| v.0).collect::<Vec<_>>())
            .bind(t.iter().map(|(_, v)| v.1.map(|b| b.0)).collect::<Vec<_>>())
            .bind(t.iter().map(|(_, v)| v.1.map(|b| b.1)).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .map_err(db("noting agents' deliveries"))?;
    }
    Ok(())
}
