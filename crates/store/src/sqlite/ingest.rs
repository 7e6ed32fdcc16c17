//! Ingest on SQLite: the calls of one group commit become blocks (see
//! [`crate::block`]), one per (agent, session).
//!
//! The rules are those of [`Store::ingest`](crate::Store::ingest): a batch
//! id already stored changes nothing; a record whose (agent, session,
//! sequence number) is stored with the same content is a duplicate, with
//! other content it is stored flagged as a conflict. What is new is how they
//! are checked: each session's stored sequence numbers are a set of ranges
//! (`session_seqs`), so a batch whose numbers are all outside the set (the
//! common case) is checked with one range lookup and costs no per-record
//! database work; only numbers inside the set (a re-send, a conflict) make
//! the blocks holding them be decoded and compared.
//!
//! Records are only appended to in-memory blocks while the group's calls are
//! processed, in order, so each call sees what the calls before it stored;
//! [`Group::finish`] then hands out the ids and writes the blocks, the batch
//! ids, the sequence ranges and the counters.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;
use warden_proto::domain::{AgentDrop, AuditRecord, ClientStatus, EventTime, IngestBatch};

use super::chain::Identities;
use super::counters::Counters;
use super::db::Ctx;
use crate::StoreError;
use crate::block::{self, BatchInfo, Block, BlockRecord, PeerRef};
use crate::chain::{self, LinkBuilder};
use crate::convert::{count_to_sql, nanos};
use crate::ingest::{hex_sha256, is_digest};
use crate::intervals::IntervalSet;
use crate::model::{
    BatchOutcome, CLIENT_BATCH_FULL, CLIENT_CHANNEL_FULL, IngestOutcome, IngestRequest, LossSource,
    NewRecord, RecordId, bound_url,
};

/// Agent reasons are free text from the agent; a longer one is cut so a
/// misbehaving agent cannot grow the losses table without bound.
const MAX_REASON_BYTES: usize = 64;

const ADD_LOSS: &str = "INSERT INTO losses (agent_id, session_id, source, reason, records, frames) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
    ON CONFLICT (agent_id, session_id, source, reason) DO UPDATE SET \
    records = CASE WHEN records > 9223372036854775807 - excluded.records \
        THEN 9223372036854775807 ELSE records + excluded.records END, \
    frames = CASE WHEN frames > 9223372036854775807 - excluded.frames \
        THEN 9223372036854775807 ELSE frames + excluded.frames END";

const ADD_DROPPED_RANGE: &str = "INSERT INTO agent_dropped_ranges \
    (agent_id, session_id, first_seq, last_seq) VALUES (?1, ?2, ?3, ?4) \
    ON CONFLICT (agent_id, session_id, first_seq) DO UPDATE SET \
    last_seq = max(last_seq, excluded.last_seq)";

const SET_FINAL_SEQUENCE: &str = "INSERT INTO sessions (agent_id, session_id, final_sequence_number) \
    VALUES (?1, ?2, ?3) ON CONFLICT (agent_id, session_id) \
    DO UPDATE SET final_sequence_number = excluded.final_sequence_number";

/// Per session counters of a group, added to the `sessions` row.
const ADD_SESSION: &str = "INSERT INTO sessions (agent_id, session_id, conflicts, first_id, \
    last_id, first_occurred, last_occurred, policy_digest) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (agent_id, session_id) DO UPDATE SET \
    conflicts = conflicts + excluded.conflicts, \
    first_id = coalesce(min(first_id, excluded.first_id), first_id, excluded.first_id), \
    last_id = coalesce(max(last_id, excluded.last_id), last_id, excluded.last_id), \
    first_occurred = coalesce(min(first_occurred, excluded.first_occurred), first_occurred, \
        excluded.first_occurred), \
    last_occurred = coalesce(max(last_occurred, excluded.last_occurred), last_occurred, \
        excluded.last_occurred), \
    policy_digest = coalesce(excluded.policy_digest, policy_digest)";

/// What makes two records with one session key the same record.
#[derive(Debug, PartialEq, Eq)]
struct Content<'a> {
    allowed: bool,
    method: &'a str,
    url: &'a str,
    url_original_bytes: Option<u64>,
    matched_rule: &'a str,
    event: EventTime,
    process: &'a str,
}

impl<'a> Content<'a> {
    fn of(record: &'a BlockRecord<'_>, process: &'a str) -> Content<'a> {
        Content {
            allowed: record.decision.is_allowed(),
            method: &record.method,
            url: &record.url,
            url_original_bytes: record.url_original_bytes,
            matched_rule: &record.matched_rule,
            event: record.event_time,
            process,
        }
    }
}

/// A block being filled.
struct Building<'r> {
    agent: i64,
    session: Option<&'r str>,
    block: Block<'r>,
    first_seq: i32,
    last_seq: i32,
    min_occurred: i64,
    max_occurred: i64,
    min_received: i64,
    max_received: i64,
    denied: u32,
    conflicts: u32,
    /// Assigned by [`Group::finish`].
    first_id: RecordId,
}

impl<'r> Building<'r> {
    fn new(agent: i64, session: Option<&'r str>) -> Building<'r> {
        Building {
            agent,
            session,
            block: Block::default(),
            first_seq: i32::MAX,
            last_seq: i32::MIN,
            min_occurred: i64::MAX,
            max_occurred: i64::MIN,
            min_received: i64::MAX,
            max_received: i64::MIN,
            denied: 0,
            conflicts: 0,
            first_id: 0,
        }
    }

    /// The process of record `i` (its batch's).
    fn process_of(&self, i: usize) -> &str {
        let mut start = 0;
        for b in &self.block.batches {
            start += b.records as usize;
            if i < start {
                return &b.process;
            }
        }
        ""
    }
}

/// What a group did to one session.
#[derive(Default)]
struct SessionWork<'r> {
    /// Sequence numbers newly stored (not conflicts).
    added: IntervalSet,
    conflicts: u64,
    policy_digest: Option<&'r str>,
}

/// A session's records in a group: ids and effective times.
struct Span {
    first_id: RecordId,
    last_id: RecordId,
    first_occurred: i64,
    last_occurred: i64,
}

/// Where a new record went: block and position.
type Place = (usize, u32);

/// One call of the group.
struct Call {
    outcome: IngestOutcome,
    places: Vec<Place>,
}

/// A batch id to store, with the place of its last record.
struct BatchRow {
    agent: i64,
    id: Uuid,
    received_ns: i64,
    last: Option<Place>,
}

/// The ingest calls of one group commit, in order.
pub(super) struct Group<'r> {
    max_url_bytes: usize,
    blocks: Vec<Building<'r>>,
    block_of: HashMap<(i64, Option<&'r str>), usize>,
    sessions: BTreeMap<(i64, &'r str), SessionWork<'r>>,
    batches: Vec<BatchRow>,
    seen_batches: HashSet<(i64, Uuid)>,
    calls: Vec<Call>,
    counters: Counters,
}

/// What [`Group::finish`] wrote.
pub(super) struct Finished {
    /// One per call, in order.
    pub outcomes: Vec<IngestOutcome>,
    /// The ids handed out, `first..=last` (none when empty).
    pub ids: Option<(RecordId, RecordId)>,
}

impl<'r> Group<'r> {
    pub(super) fn new(max_url_bytes: usize) -> Group<'r> {
        Group {
            max_url_bytes,
            blocks: Vec::new(),
            block_of: HashMap::new(),
            sessions: BTreeMap::new(),
            batches: Vec::new(),
            seen_batches: HashSet::new(),
            calls: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// Adds a call of the agent with internal key `agent`; returns its
    /// index among the group's calls.
    pub(super) fn add(
        &mut self,
        tx: &Connection,
        agent: i64,
        request: &'r IngestRequest,
    ) -> Result<usize, StoreError> {
        let at = nanos(request.at);
        let mut call = Call {
            outcome: IngestOutcome::default(),
            places: Vec::new(),
        };
        for batch in &request.batches {
            let result = self.add_batch(tx, agent, at, request.at, batch, &mut call.places)?;
            call.outcome.batches.push(result);
        }
        let last_batch = request.batches.last().map(|b| b.batch_id);
        tx.prepare_cached(
            "UPDATE agents SET last_contact_at = ?1, \
             last_batch_at = CASE WHEN ?2 IS NULL THEN last_batch_at ELSE ?1 END, \
             last_batch_uuid = coalesce(?2, last_batch_uuid) WHERE id = ?3",
        )
        .and_then(|mut s| {
            s.execute(params![
                at,
                last_batch.as_ref().map(|b| b.as_bytes().as_slice()),
                agent
            ])
        })
        .ctx("noting an agent's delivery")?;
        self.calls.push(call);
        Ok(self.calls.len() - 1)
    }

    fn add_batch(
        &mut self,
        tx: &Connection,
        agent: i64,
        at: i64,
        at_time: Timestamp,
        batch: &'r IngestBatch,
        places: &mut Vec<Place>,
    ) -> Result<BatchOutcome, StoreError> {
        let logs = batch.logs.as_ref();
        let records: &'r [AuditRecord] = logs.map_or(&[], |l| &l.records);
        let session: Option<&'r str> = logs.and_then(|l| l.session_id.as_deref());
        let process: &'r str = logs.map_or("", |l| l.confined_process_name.as_str());
        let rejected = logs.map_or(&[][..], |l| &l.rejected[..]);
        let mut outcome = BatchOutcome {
            batch_id: batch.batch_id,
            already_committed: false,
            new_records: Vec::new(),
            duplicates: 0,
            rejected: saturate(rejected.len()),
            policies_refused: 0,
        };
        if !self.seen_batches.insert((agent, batch.batch_id))
            || batch_stored(tx, agent, batch.batch_id)?
        {
            // The agent re-sent a committed batch: acknowledge, change nothing.
            outcome.already_committed = true;
            outcome.duplicates = saturate(records.len());
            return Ok(outcome);
        }

        let mut last = None;
        if !records.is_empty() {
            let bounded: Vec<(&'r str, Option<u64>)> = records
                .iter()
                .map(|r| bound_url(&r.url, self.max_url_bytes))
                .collect();
            let (fresh, candidates) = match session {
                None => ((0..records.len()).collect(), Vec::new()),
                Some(s) => self.split_taken(tx, agent, s, records)?,
            };
            let b = self.block_for(agent, session);
            let start = self.blocks[b].block.records.len();
            for &i in &fresh {
                self.append(b, &records[i], bounded[i], false, at);
            }
            let mut conflicts = Vec::new();
            if let Some(s) = session
                && !candidates.is_empty()
            {
                let (duplicates, found) = self.classify(
                    tx,
                    agent,
                    s,
                    b,
                    start,
                    process,
                    records,
                    &bounded,
                    &candidates,
                )?;
                outcome.duplicates = duplicates;
                for &i in &found {
                    self.append(b, &records[i], bounded[i], true, at);
                }
                if let Some(work) = self.sessions.get_mut(&(agent, s)) {
                    work.conflicts += found.len() as u64;
                }
                conflicts = found;
            }
            let added = self.blocks[b].block.records.len() - start;
            if added > 0 {
                let building = &mut self.blocks[b];
                building.min_received = building.min_received.min(at);
                building.max_received = building.max_received.max(at);
                building.block.batches.push(BatchInfo {
                    batch_id: batch.batch_id,
                    received_ns: at,
                    agent_received_at: batch.received_at,
                    peer: PeerRef::of(&batch.peer),
                    process: Cow::Borrowed(process),
                    policy_digest: logs
                        .and_then(|l| l.policy_digest.as_deref())
                        .filter(|d| is_digest(d))
                        .map(Cow::Borrowed),
                    records: u32::try_from(added).unwrap_or(u32::MAX),
                });
                let positions = (start..start + added).map(|p| (b, p as u32));
                places.extend(positions);
                last = Some((b, (start + added - 1) as u32));
            }
            let mut new_records: Vec<NewRecord> = fresh
                .iter()
                .map(|&index| (index, false))
                .chain(conflicts.iter().map(|&index| (index, true)))
                .map(|(index, conflict)| NewRecord {
                    index,
                    conflict,
                    url_original_bytes: bounded[index].1,
                })
                .collect();
            new_records.sort_by_key(|r| r.index);
            outcome.new_records = new_records;
            if let (Some(s), Some(digest)) = (
                session,
                logs.and_then(|l| l.policy_digest.as_deref())
                    .filter(|d| is_digest(d)),
            ) {
                self.sessions.entry((agent, s)).or_default().policy_digest = Some(digest);
            }
        }
        self.batches.push(BatchRow {
            agent,
            id: batch.batch_id,
            received_ns: at,
            last,
        });

        let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
        for rejection in rejected {
            *by_reason.entry(rejection.reason()).or_default() += 1;
        }
        for (reason, n) in by_reason {
            add_loss(
                tx,
                agent,
                session.unwrap_or(""),
                LossSource::Server,
                reason,
                n,
                0,
            )?;
        }
        for status in &batch.client_status {
            outcome.policies_refused += self.client_status(tx, agent, status, at_time)?;
        }
        for drop in &batch.agent_drops {
            if drop.records == 0 && drop.frames == 0 {
                continue;
            }
            if !self.first_report_of(tx, agent, at, drop)? {
                continue;
            }
            let reason: &str = match drop.known_reason() {
                Some(known) => known.as_str(),
                None => truncate(&drop.reason, MAX_REASON_BYTES),
            };
            let session = drop.session_id.as_deref().unwrap_or("");
            add_loss(
                tx,
                agent,
                session,
                LossSource::Agent,
                reason,
                drop.records,
                drop.frames,
            )?;
            if !session.is_empty() {
                let mut add = tx
                    .prepare_cached(ADD_DROPPED_RANGE)
                    .ctx("storing an agent's dropped sequence numbers")?;
                for range in &drop.sequence_ranges {
                    add.execute(params![agent, session, range.first, range.last])
                        .ctx("storing an agent's dropped sequence numbers")?;
                }
            }
        }
        Ok(outcome)
    }

    /// Whether a drop is to be counted. A drop of a whole spooled batch
    /// names that batch; it counts only if the batch was never committed
    /// (nor reported dropped before), and its id is then taken like a
    /// committed batch's (a batch id without a block), so a copy of the
    /// batch still on its way is acknowledged and not stored: the batch is
    /// either stored or reported, never both. Other drops always count
    /// (their report's own batch id makes re-sends harmless).
    fn first_report_of(
        &mut self,
        tx: &Connection,
        agent: i64,
        at: i64,
        drop: &AgentDrop,
    ) -> Result<bool, StoreError> {
        let Some(dropped) = drop.dropped_batch_id else {
            return Ok(true);
        };
        if !self.seen_batches.insert((agent, dropped)) || batch_stored(tx, agent, dropped)? {
            return Ok(false);
        }
        self.batches.push(BatchRow {
            agent,
            id: dropped,
            received_ns: at,
            last: None,
        });
        Ok(true)
    }

    /// Applies a client's status; returns 1 when it carried a policy text
    /// whose digest is wrong.
    fn client_status(
        &mut self,
        tx: &Connection,
        agent: i64,
        status: &'r ClientStatus,
        at: Timestamp,
    ) -> Result<u32, StoreError> {
        let session = status.session_id.as_deref().unwrap_or("");
        // Deltas are only ever added: a negative one is a client bug.
        for (reason, n) in [
            (CLIENT_CHANNEL_FULL, status.dropped_channel_full),
            (CLIENT_BATCH_FULL, status.dropped_batch_full),
        ] {
            if let Ok(n @ 1..) = u64::try_from(n) {
                add_loss(tx, agent, session, LossSource::Client, reason, n, 0)?;
            }
        }
        if let (Some(final_seq), false) = (status.final_sequence_number, session.is_empty()) {
            tx.prepare_cached(SET_FINAL_SEQUENCE)
                .and_then(|mut s| s.execute(params![agent, session, final_seq]))
                .ctx("recording a session's final sequence number")?;
        }
        let Some(policy) = &status.policy else {
            return Ok(0);
        };
        if !is_digest(&policy.digest) || hex_sha256(&policy.text) != policy.digest {
            return Ok(1);
        }
        tx.prepare_cached(
            "INSERT INTO policies (digest, text, first_seen) VALUES (?1, ?2, ?3) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![policy.digest, policy.text, nanos(at)]))
        .ctx("storing a policy")?;
        if let Some(s) = status.session_id.as_deref() {
            self.sessions.entry((agent, s)).or_default().policy_digest = Some(&policy.digest);
        }
        Ok(0)
    }

    fn block_for(&mut self, agent: i64, session: Option<&'r str>) -> usize {
        *self.block_of.entry((agent, session)).or_insert_with(|| {
            self.blocks.push(Building::new(agent, session));
            self.blocks.len() - 1
        })
    }

    fn append(
        &mut self,
        b: usize,
        record: &'r AuditRecord,
        (url, original): (&'r str, Option<u64>),
        conflict: bool,
        at: i64,
    ) {
        let building = &mut self.blocks[b];
        let occurred = record.event_time.known().map_or(at, nanos);
        building.first_seq = building.first_seq.min(record.sequence_number);
        building.last_seq = building.last_seq.max(record.sequence_number);
        building.min_occurred = building.min_occurred.min(occurred);
        building.max_occurred = building.max_occurred.max(occurred);
        let allowed = record.decision.is_allowed();
        if !allowed {
            building.denied += 1;
        }
        if conflict {
            building.conflicts += 1;
        }
        self.counters
            .add(building.agent, occurred, allowed, conflict, url);
        building.block.records.push(BlockRecord {
            sequence_number: record.sequence_number,
            decision: record.decision,
            conflict,
            event_time: record.event_time,
            method: Cow::Borrowed(&record.method),
            url: Cow::Borrowed(url),
            url_original_bytes: original,
            matched_rule: Cow::Borrowed(&record.matched_rule),
        });
    }

    /// Splits a session batch's records into those whose sequence number is
    /// new (first of its number in the batch and not stored) and the
    /// candidates for duplicates or conflicts; marks the new numbers stored.
    fn split_taken(
        &mut self,
        tx: &Connection,
        agent: i64,
        session: &'r str,
        records: &[AuditRecord],
    ) -> Result<(Vec<usize>, Vec<usize>), StoreError> {
        let (low, high) = records.iter().fold((i32::MAX, i32::MIN), |(l, h), r| {
            (l.min(r.sequence_number), h.max(r.sequence_number))
        });
        let stored = stored_ranges(tx, agent, session, i64::from(low), i64::from(high))?;
        let work = self.sessions.entry((agent, session)).or_default();
        let mut fresh = Vec::with_capacity(records.len());
        let mut candidates = Vec::new();
        let mut in_batch = IntervalSet::new();
        for (i, r) in records.iter().enumerate() {
            let seq = i64::from(r.sequence_number);
            if stored.contains(seq) || work.added.contains(seq) || in_batch.contains(seq) {
                candidates.push(i);
            } else {
                in_batch.insert(seq, seq);
                fresh.push(i);
            }
        }
        for (f, l) in in_batch.ranges() {
            work.added.insert(f, l);
        }
        Ok((fresh, candidates))
    }

    /// Tells duplicates (content equal to a stored record with the key, or
    /// to one stored earlier in this group) from conflicts (returned, in
    /// batch order).
    #[allow(clippy::too_many_arguments)]
    fn classify(
        &self,
        tx: &Connection,
        agent: i64,
        session: &str,
        b: usize,
        start: usize,
        process: &str,
        records: &[AuditRecord],
        bounded: &[(&str, Option<u64>)],
        candidates: &[usize],
    ) -> Result<(u32, Vec<usize>), StoreError> {
        let keys: HashSet<i32> = candidates
            .iter()
            .map(|&i| records[i].sequence_number)
            .collect();
        let (low, high) = keys
            .iter()
            .fold((i32::MAX, i32::MIN), |(l, h), &s| (l.min(s), h.max(s)));
        let mut stored_blocks = Vec::new();
        let mut stmt = tx
            .prepare_cached(
                "SELECT data FROM blocks WHERE agent_id = ?1 AND session_id = ?2 \
                 AND first_seq <= ?3 AND last_seq >= ?4",
            )
            .ctx("finding stored records of a session")?;
        let mut rows = stmt
            .query(params![agent, session, high, low])
            .ctx("finding stored records of a session")?;
        while let Some(row) = rows.next().ctx("finding stored records of a session")? {
            let data: Vec<u8> = row.get(0).ctx("finding stored records of a session")?;
            stored_blocks.push(block::decode(&data)?);
        }
        let mut known: HashMap<i32, Vec<Content<'_>>> = HashMap::new();
        for stored in &stored_blocks {
            let batch_of = stored.batch_of_each();
            for (i, r) in stored.records.iter().enumerate() {
                if keys.contains(&r.sequence_number) {
                    let process = &stored.batches[batch_of[i]].process;
                    known
                        .entry(r.sequence_number)
                        .or_default()
                        .push(Content::of(r, process));
                }
            }
        }
        // What this group stored before (earlier calls, and this batch's
        // new records, which sit after `start` with this batch's process).
        let building = &self.blocks[b];
        for (i, r) in building.block.records.iter().enumerate() {
            if keys.contains(&r.sequence_number) {
                let p = if i >= start {
                    process
                } else {
                    building.process_of(i)
                };
                known
                    .entry(r.sequence_number)
                    .or_default()
                    .push(Content::of(r, p));
            }
        }
        let mut duplicates = 0u32;
        let mut conflicts = Vec::new();
        let candidate_records: Vec<BlockRecord<'_>> = candidates
            .iter()
            .map(|&i| {
                let r = &records[i];
                BlockRecord {
                    sequence_number: r.sequence_number,
                    decision: r.decision,
                    conflict: true,
                    event_time: r.event_time,
                    method: Cow::Borrowed(&r.method),
                    url: Cow::Borrowed(bounded[i].0),
                    url_original_bytes: bounded[i].1,
                    matched_rule: Cow::Borrowed(&r.matched_rule),
                }
            })
            .collect();
        for (k, &i) in candidates.iter().enumerate() {
            let content = Content::of(&candidate_records[k], process);
            let stored = known.entry(records[i].sequence_number).or_default();
            if stored.contains(&content) {
                duplicates = duplicates.saturating_add(1);
            } else {
                // Later copies of this conflicting record are duplicates of it.
                stored.push(content);
                conflicts.push(i);
            }
        }
        Ok((duplicates, conflicts))
    }

    /// Hands out ids from `next_id`, writes the blocks, the batch ids, the
    /// sequence ranges and the counters; returns each call's outcome.
    /// Each new record's leaf goes to `chain`, in id order.
    pub(super) fn finish(
        mut self,
        tx: &Connection,
        next_id: RecordId,
        identities: &mut Identities,
        chain: &mut LinkBuilder,
    ) -> Result<Finished, StoreError> {
        let mut id = next_id;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO blocks (first_id, last_id, agent_id, session_id, first_seq, \
                 last_seq, min_occurred, max_occurred, min_received, max_received, records, \
                 denied, conflicts, data) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .ctx("storing records")?;
        for building in &mut self.blocks {
            let n = building.block.records.len() as i64;
            if n == 0 {
                continue;
            }
            building.first_id = id;
            id += n;
            let data = block::encode(&building.block);
            insert
                .execute(params![
                    building.first_id,
                    building.first_id + n - 1,
                    building.agent,
                    building.session,
                    building.first_seq,
                    building.last_seq,
                    building.min_occurred,
                    building.max_occurred,
                    building.min_received,
                    building.max_received,
                    n,
                    building.denied,
                    building.conflicts,
                    data,
                ])
                .ctx("storing records")?;
        }
        drop(insert);
        // The chain's leaves: blocks were given ids in this order.
        for building in &self.blocks {
            if building.block.records.is_empty() {
                continue;
            }
            let ids = identities.get(tx, building.agent)?;
            let batch_of = building.block.batch_of_each();
            for (i, r) in building.block.records.iter().enumerate() {
                let batch = &building.block.batches[batch_of[i]];
                let id = building.first_id + i as i64;
                chain.push(&chain::block_view(id, ids, building.session, r, batch));
            }
        }
        let id_of = |(b, pos): Place| self.blocks[b].first_id + i64::from(pos);

        let mut insert = tx
            .prepare_cached(
                "INSERT INTO batch_ids (agent_id, uuid, received_ns, block) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .ctx("storing batch ids")?;
        for row in &self.batches {
            insert
                .execute(params![
                    row.agent,
                    row.id.as_bytes().as_slice(),
                    row.received_ns,
                    row.last.map(id_of)
                ])
                .ctx("storing batch ids")?;
        }
        drop(insert);

        for (&(agent, session), work) in &self.sessions {
            for (first, last) in work.added.ranges() {
                add_range(tx, agent, session, first, last)?;
            }
        }
        // Sessions' counters: the blocks of a session in this group.
        let mut spans: BTreeMap<(i64, &str), Span> = BTreeMap::new();
        for building in &self.blocks {
            let (Some(session), false) = (building.session, building.block.records.is_empty())
            else {
                continue;
            };
            let last = building.first_id + building.block.records.len() as i64 - 1;
            let e = spans.entry((building.agent, session)).or_insert(Span {
                first_id: i64::MAX,
                last_id: i64::MIN,
                first_occurred: i64::MAX,
                last_occurred: i64::MIN,
            });
            e.first_id = e.first_id.min(building.first_id);
            e.last_id = e.last_id.max(last);
            e.first_occurred = e.first_occurred.min(building.min_occurred);
            e.last_occurred = e.last_occurred.max(building.max_occurred);
        }
        let mut upsert = tx.prepare_cached(ADD_SESSION).ctx("counting a session")?;
        for (&(agent, session), work) in &self.sessions {
            let ids = spans.get(&(agent, session));
            if ids.is_none() && work.policy_digest.is_none() {
                continue;
            }
            upsert
                .execute(params![
                    agent,
                    session,
                    count_to_sql(work.conflicts),
                    ids.map(|e| e.first_id),
                    ids.map(|e| e.last_id),
                    ids.map(|e| e.first_occurred),
                    ids.map(|e| e.last_occurred),
                    work.policy_digest,
                ])
                .ctx("counting a session")?;
        }
        drop(upsert);
        self.counters.write(tx, 1)?;

        let outcomes = self
            .calls
            .into_iter()
            .map(|call| {
                let mut outcome = call.outcome;
                outcome.record_ids = call
                    .places
                    .iter()
                    .map(|&(b, pos)| self.blocks[b].first_id + i64::from(pos))
                    .collect();
                outcome
            })
            .collect();
        Ok(Finished {
            outcomes,
            ids: (id > next_id).then_some((next_id, id - 1)),
        })
    }
}

/// Whether the agent delivered this batch id before.
fn batch_stored(tx: &Connection, agent: i64, batch_id: Uuid) -> Result<bool, StoreError> {
    tx.prepare_cached("SELECT 1 FROM batch_ids WHERE agent_id = ?1 AND uuid = ?2")
        .and_then(|mut s| {
            s.query_row(params![agent, batch_id.as_bytes().as_slice()], |_| Ok(()))
                .optional()
        })
        .map(|found| found.is_some())
        .ctx("looking up a batch id")
}

/// The stored sequence ranges of a session that overlap `low..=high`.
pub(super) fn stored_ranges(
    tx: &Connection,
    agent: i64,
    session: &str,
    low: i64,
    high: i64,
) -> Result<IntervalSet, StoreError> {
    let ctx = "reading a session's sequence numbers";
    let mut stmt = tx
        .prepare_cached(
            "SELECT first_seq, last_seq FROM session_seqs WHERE agent_id = ?1 \
             AND session_id = ?2 AND first_seq <= ?3 ORDER BY first_seq DESC",
        )
        .ctx(ctx)?;
    let mut rows = stmt.query(params![agent, session, high]).ctx(ctx)?;
    let mut set = IntervalSet::new();
    // Ranges are disjoint and sorted, so their lasts descend too: stop at
    // the first one that ends below the window.
    while let Some(row) = rows.next().ctx(ctx)? {
        let (first, last): (i64, i64) = (row.get(0).ctx(ctx)?, row.get(1).ctx(ctx)?);
        if last < low {
            break;
        }
        set.insert(first, last);
    }
    Ok(set)
}

/// Adds `first..=last` (not stored yet) to a session's ranges, merging
/// with the ranges it touches.
fn add_range(
    tx: &Connection,
    agent: i64,
    session: &str,
    first: i64,
    last: i64,
) -> Result<(), StoreError> {
    let ctx = "storing a session's sequence numbers";
    let touching = stored_ranges(tx, agent, session, first - 1, last + 1)?;
    let (mut low, mut high) = (first, last);
    let mut delete = tx
        .prepare_cached(
            "DELETE FROM session_seqs WHERE agent_id = ?1 AND session_id = ?2 AND first_seq = ?3",
        )
        .ctx(ctx)?;
    for (f, l) in touching.ranges() {
        low = low.min(f);
        high = high.max(l);
        delete.execute(params![agent, session, f]).ctx(ctx)?;
    }
    tx.prepare_cached(
        "INSERT INTO session_seqs (agent_id, session_id, first_seq, last_seq) \
         VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![agent, session, low, high]))
    .ctx(ctx)?;
    Ok(())
}

fn add_loss(
    tx: &Connection,
    agent: i64,
    session: &str,
    source: LossSource,
    reason: &str,
    records: u64,
    frames: u64,
) -> Result<(), StoreError> {
    tx.prepare_cached(ADD_LOSS)
        .and_then(|mut s| {
            s.execute(params![
                agent,
                session,
                source.as_str(),
                reason,
                count_to_sql(records),
                count_to_sql(frames)
            ])
        })
        .ctx("counting a loss")?;
    Ok(())
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked() {
        let text = "allow domain=example.com\n";
        let digest = hex_sha256(text);
        assert!(is_digest(&digest));
        assert!(!is_digest(&digest.to_uppercase()));
        assert!(!is_digest("abc"));
        assert_eq!(truncate("aé", 2), "a");
    }
}
