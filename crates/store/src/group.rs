//! Building blocks from the ingest calls of one group commit, for both
//! backends (see [`crate::block`]): one block per (agent, session).
//!
//! The rules are those of [`Store::ingest`](crate::Store::ingest): a batch
//! id already stored changes nothing; a record whose (agent, session,
//! sequence number) is stored with the same content is a duplicate, with
//! other content it is stored flagged as a conflict. Each session's stored
//! sequence numbers are a set of ranges, so a batch whose numbers are all
//! outside the set (the common case) is checked with one range lookup and
//! costs no per-record database work; only numbers inside the set (a
//! re-send, a conflict) make the blocks holding them be decoded and compared.
//!
//! The database is asked through [`Lookup`] (SQLite answers each question
//! with a query; PostgreSQL prefetches the answers for the whole group in a
//! few statements), and nothing is written while the group's calls are
//! processed, in order, so each call sees what the calls before it stored:
//! records go to in-memory blocks and the other writes are noted
//! ([`SideWrite`]). [`Group::finish`] then hands out the ids and encodes the
//! blocks into a [`Plan`] that the backend writes in its transaction.
//!
//! The agent's drop ledger rides on the same two paths: a drop naming a
//! spooled batch is counted only if [`Lookup::batch_stored`] (and the group
//! so far) never saw that batch id, and then its id is taken like a
//! committed batch's (a [`BatchIdRow`] without a record), so the batch is
//! either stored or reported lost, never both; the sequence numbers a drop
//! names are a [`SideWrite::DroppedRange`].
//!
//! The record chain ([`crate::chain`]) is extended from the plan too: the
//! plan keeps the group's blocks as built ([`ChainBlock`]), and once the
//! backend knows the ids (under its commit order) [`Plan::chain_link`]
//! hashes their records into the group's one link, so both backends chain
//! exactly what they commit, the same way.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;
use uuid::Uuid;
use warden_proto::domain::{AgentDrop, AuditRecord, ClientStatus, EventTime, IngestBatch};

use crate::StoreError;
use crate::block::{self, BatchInfo, Block, BlockRecord, PeerRef};
use crate::chain::{self, ChainHead, ChainLink, LinkBuilder};
use crate::convert::nanos;
use crate::counters::Counters;
use crate::ingest::{hex_sha256, is_digest};
use crate::intervals::IntervalSet;
use crate::model::{
    BatchOutcome, CLIENT_BATCH_FULL, CLIENT_CHANNEL_FULL, IngestOutcome, IngestRequest, LossSource,
    NewRecord, RecordId, bound_url,
};

/// Agent reasons are free text from the agent; a longer one is cut so a
/// misbehaving agent cannot grow the losses table without bound.
const MAX_REASON_BYTES: usize = 64;

/// What the group asks the database, inside the backend's transaction.
pub(crate) trait Lookup {
    /// Whether this agent has delivered this batch id before, or reported
    /// the batch dropped (its id taken without records).
    fn batch_stored(&mut self, agent: i64, batch: Uuid) -> Result<bool, StoreError>;

    /// The stored sequence ranges of a session that overlap `low..=high`
    /// (more is fine).
    fn stored_ranges(
        &mut self,
        agent: i64,
        session: &str,
        low: i64,
        high: i64,
    ) -> Result<IntervalSet, StoreError>;

    /// The stored blocks of a session whose sequence range overlaps
    /// `low..=high` (more is fine), decoded.
    fn session_blocks(
        &mut self,
        agent: i64,
        session: &str,
        low: i32,
        high: i32,
    ) -> Result<Vec<Block<'static>>, StoreError>;
}

/// A write the group notes while it builds, applied by the backend in this
/// order.
#[derive(Debug)]
pub(crate) enum SideWrite<'r> {
    /// Adds to a loss counter (saturating), creating it at zero first.
    Loss {
        agent: i64,
        session: &'r str,
        source: LossSource,
        reason: &'r str,
        records: u64,
        frames: u64,
    },
    /// The last sequence number a client said it assigned.
    FinalSequence {
        agent: i64,
        session: &'r str,
        final_sequence_number: i64,
    },
    /// A policy text by its (checked) digest, unless one is stored.
    Policy {
        digest: &'r str,
        text: &'r str,
        at: i64,
    },
    /// Sequence numbers `first..=last` of a session that the agent reported
    /// losing (a row with the same first keeps the larger last; readers
    /// merge the rest).
    DroppedRange {
        agent: i64,
        session: &'r str,
        first: i32,
        last: i32,
    },
    /// The agent's last contact (`at`) and, with a batch, its last batch.
    Touch {
        agent: i64,
        at: i64,
        last_batch: Option<Uuid>,
    },
}

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
pub(crate) struct Group<'r> {
    max_url_bytes: usize,
    blocks: Vec<Building<'r>>,
    block_of: HashMap<(i64, Option<&'r str>), usize>,
    sessions: BTreeMap<(i64, &'r str), SessionWork<'r>>,
    batches: Vec<BatchRow>,
    seen_batches: HashSet<(i64, Uuid)>,
    calls: Vec<Call>,
    counters: Counters,
    side: Vec<SideWrite<'r>>,
}

/// A block to write, with its index row.
pub(crate) struct BlockRow {
    pub first_id: RecordId,
    pub last_id: RecordId,
    pub agent: i64,
    pub session: Option<String>,
    pub first_seq: i32,
    pub last_seq: i32,
    pub min_occurred: i64,
    pub max_occurred: i64,
    pub min_received: i64,
    pub max_received: i64,
    pub records: i64,
    pub denied: i64,
    pub conflicts: i64,
    pub data: Vec<u8>,
}

/// A delivered batch id to store, with the id of its last record (`None`
/// when it added none, or when it is the id of a batch the agent reported
/// dropped).
pub(crate) struct BatchIdRow {
    pub agent: i64,
    pub id: Uuid,
    pub received_ns: i64,
    pub last_record: Option<RecordId>,
}

/// What a group adds to a session's row.
pub(crate) struct SessionAdd<'r> {
    pub agent: i64,
    pub session: &'r str,
    pub conflicts: u64,
    /// Ids and effective times of the session's records in the group
    /// (`None` when it stored none).
    pub first_id: Option<RecordId>,
    pub last_id: Option<RecordId>,
    pub first_occurred: Option<i64>,
    pub last_occurred: Option<i64>,
    pub policy_digest: Option<&'r str>,
}

/// A block's records as the chain hashes them, with the ids they get.
pub(crate) struct ChainBlock<'r> {
    pub first_id: RecordId,
    pub agent: i64,
    pub session: Option<&'r str>,
    pub block: Block<'r>,
}

/// The workspace and agent uuids of agents by internal key: what the chain
/// hashes of a record's origin (the backend looks them up).
pub(crate) type Identities = HashMap<i64, (Uuid, Uuid)>;

/// Everything a group commit writes, ready for the backend.
pub(crate) struct Plan<'r> {
    /// One per call, in order.
    pub outcomes: Vec<IngestOutcome>,
    /// The ids handed out, `first..=last` (none when empty).
    pub ids: Option<(RecordId, RecordId)>,
    pub blocks: Vec<BlockRow>,
    pub batch_ids: Vec<BatchIdRow>,
    /// Sequence numbers newly stored, per (agent, session): to add to the
    /// session's ranges (they are not stored yet).
    pub ranges: Vec<(i64, &'r str, IntervalSet)>,
    pub sessions: Vec<SessionAdd<'r>>,
    pub counters: Counters,
    pub side: Vec<SideWrite<'r>>,
    /// The blocks' records, in id order, for [`Plan::chain_link`].
    pub chained: Vec<ChainBlock<'r>>,
}

impl Plan<'_> {
    /// The agents whose records the plan stores.
    pub(crate) fn agents(&self) -> impl Iterator<Item = i64> + '_ {
        self.chained.iter().map(|c| c.agent)
    }

    /// The chain's link for this group commit after `prev` (`None` when it
    /// stores no record): every new record's leaf, in id order. The ids
    /// must be final (after [`Plan::shift`]) and `identities` must know
    /// every agent of [`Plan::agents`].
    pub(crate) fn chain_link(
        &self,
        identities: &Identities,
        prev: &ChainHead,
        at: Timestamp,
    ) -> Result<Option<ChainLink>, StoreError> {
        let Some((_, last)) = self.ids else {
            return Ok(None);
        };
        let mut leaves = LinkBuilder::default();
        for c in &self.chained {
            let ids = *identities.get(&c.agent).ok_or_else(|| {
                StoreError::Corrupt(format!("no identity for agent {} to chain", c.agent))
            })?;
            let batch_of = c.block.batch_of_each();
            for (i, r) in c.block.records.iter().enumerate() {
                let batch = &c.block.batches[batch_of[i]];
                let id = c.first_id + i as i64;
                leaves.push(&chain::block_view(id, ids, c.session, r, batch));
            }
        }
        Ok(Some(leaves.finish(prev, last, at)))
    }

    /// Moves every id the plan hands out up by `by`: a plan built from id 0
    /// before the next id was known (block data holds no ids).
    pub(crate) fn shift(&mut self, by: RecordId) {
        for b in &mut self.blocks {
            b.first_id += by;
            b.last_id += by;
        }
        for row in &mut self.batch_ids {
            row.last_record = row.last_record.map(|id| id + by);
        }
        for s in &mut self.sessions {
            s.first_id = s.first_id.map(|id| id + by);
            s.last_id = s.last_id.map(|id| id + by);
        }
        for c in &mut self.chained {
            c.first_id += by;
        }
        for outcome in &mut self.outcomes {
            for id in &mut outcome.record_ids {
                *id += by;
            }
        }
        self.ids = self.ids.map(|(first, last)| (first + by, last + by));
    }
}

impl<'r> Group<'r> {
    pub(crate) fn new(max_url_bytes: usize) -> Group<'r> {
        Group {
            max_url_bytes,
            blocks: Vec::new(),
            block_of: HashMap::new(),
            sessions: BTreeMap::new(),
            batches: Vec::new(),
            seen_batches: HashSet::new(),
            calls: Vec::new(),
            counters: Counters::default(),
            side: Vec::new(),
        }
    }

    /// Adds a call of the agent with internal key `agent`; returns its
    /// index among the group's calls.
    pub(crate) fn add(
        &mut self,
        tx: &mut impl Lookup,
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
        self.side.push(SideWrite::Touch {
            agent,
            at,
            last_batch,
        });
        self.calls.push(call);
        Ok(self.calls.len() - 1)
    }

    fn add_batch(
        &mut self,
        tx: &mut impl Lookup,
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
            || tx.batch_stored(agent, batch.batch_id)?
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
            self.side.push(SideWrite::Loss {
                agent,
                session: session.unwrap_or(""),
                source: LossSource::Server,
                reason,
                records: n,
                frames: 0,
            });
        }
        for status in &batch.client_status {
            outcome.policies_refused += self.client_status(agent, status, at_time);
        }
        for drop in &batch.agent_drops {
            if drop.records == 0 && drop.frames == 0 {
                continue;
            }
            if !self.first_report_of(tx, agent, at, drop)? {
                continue;
            }
            let reason: &'r str = match drop.known_reason() {
                Some(known) => known.as_str(),
                None => truncate(&drop.reason, MAX_REASON_BYTES),
            };
            let session: &'r str = drop.session_id.as_deref().unwrap_or("");
            self.side.push(SideWrite::Loss {
                agent,
                session,
                source: LossSource::Agent,
                reason,
                records: drop.records,
                frames: drop.frames,
            });
            if !session.is_empty() {
                for range in &drop.sequence_ranges {
                    self.side.push(SideWrite::DroppedRange {
                        agent,
                        session,
                        first: range.first,
                        last: range.last,
                    });
                }
            }
        }
        Ok(outcome)
    }

    /// Whether a drop is to be counted. A drop of a whole spooled batch
    /// names that batch; it counts only if the batch was never committed
    /// (nor reported dropped before, in this group or earlier), and its id
    /// is then taken like a committed batch's (a batch id without a block),
    /// so a copy of the batch still on its way is acknowledged and not
    /// stored: the batch is either stored or reported, never both. Other
    /// drops always count (their report's own batch id makes re-sends
    /// harmless).
    fn first_report_of(
        &mut self,
        tx: &mut impl Lookup,
        agent: i64,
        at: i64,
        drop: &AgentDrop,
    ) -> Result<bool, StoreError> {
        let Some(dropped) = drop.dropped_batch_id else {
            return Ok(true);
        };
        if !self.seen_batches.insert((agent, dropped)) || tx.batch_stored(agent, dropped)? {
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
    fn client_status(&mut self, agent: i64, status: &'r ClientStatus, at: Timestamp) -> u32 {
        let session = status.session_id.as_deref().unwrap_or("");
        // Deltas are only ever added: a negative one is a client bug.
        for (reason, n) in [
            (CLIENT_CHANNEL_FULL, status.dropped_channel_full),
            (CLIENT_BATCH_FULL, status.dropped_batch_full),
        ] {
            if let Ok(n @ 1..) = u64::try_from(n) {
                self.side.push(SideWrite::Loss {
                    agent,
                    session,
                    source: LossSource::Client,
                    reason,
                    records: n,
                    frames: 0,
                });
            }
        }
        if let (Some(final_seq), false) = (status.final_sequence_number, session.is_empty()) {
            self.side.push(SideWrite::FinalSequence {
                agent,
                session,
                final_sequence_number: final_seq,
            });
        }
        let Some(policy) = &status.policy else {
            return 0;
        };
        if !is_digest(&policy.digest) || hex_sha256(&policy.text) != policy.digest {
            return 1;
        }
        self.side.push(SideWrite::Policy {
            digest: &policy.digest,
            text: &policy.text,
            at: nanos(at),
        });
        if let Some(s) = status.session_id.as_deref() {
            self.sessions.entry((agent, s)).or_default().policy_digest = Some(&policy.digest);
        }
        0
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
        tx: &mut impl Lookup,
        agent: i64,
        session: &'r str,
        records: &[AuditRecord],
    ) -> Result<(Vec<usize>, Vec<usize>), StoreError> {
        let (low, high) = records.iter().fold((i32::MAX, i32::MIN), |(l, h), r| {
            (l.min(r.sequence_number), h.max(r.sequence_number))
        });
        let stored = tx.stored_ranges(agent, session, i64::from(low), i64::from(high))?;
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
        tx: &mut impl Lookup,
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
        let stored_blocks = tx.session_blocks(agent, session, low, high)?;
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

    /// Hands out ids from `next_id` and encodes the blocks: what the
    /// backend writes.
    pub(crate) fn finish(mut self, next_id: RecordId) -> Plan<'r> {
        let mut id = next_id;
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for building in &mut self.blocks {
            let n = building.block.records.len() as i64;
            if n == 0 {
                continue;
            }
            building.first_id = id;
            id += n;
            blocks.push(BlockRow {
                first_id: building.first_id,
                last_id: building.first_id + n - 1,
                agent: building.agent,
                session: building.session.map(str::to_owned),
                first_seq: building.first_seq,
                last_seq: building.last_seq,
                min_occurred: building.min_occurred,
                max_occurred: building.max_occurred,
                min_received: building.min_received,
                max_received: building.max_received,
                records: n,
                denied: i64::from(building.denied),
                conflicts: i64::from(building.conflicts),
                data: block::encode(&building.block),
            });
        }
        let id_of = |(b, pos): Place| self.blocks[b].first_id + i64::from(pos);
        let batch_ids = self
            .batches
            .iter()
            .map(|row| BatchIdRow {
                agent: row.agent,
                id: row.id,
                received_ns: row.received_ns,
                last_record: row.last.map(id_of),
            })
            .collect();

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
        let mut ranges = Vec::new();
        let mut sessions = Vec::new();
        for (&(agent, session), work) in &self.sessions {
            if work.added.first().is_some() {
                ranges.push((agent, session, work.added.clone()));
            }
            let ids = spans.get(&(agent, session));
            if ids.is_none() && work.policy_digest.is_none() {
                continue;
            }
            sessions.push(SessionAdd {
                agent,
                session,
                conflicts: work.conflicts,
                first_id: ids.map(|e| e.first_id),
                last_id: ids.map(|e| e.last_id),
                first_occurred: ids.map(|e| e.first_occurred),
                last_occurred: ids.map(|e| e.last_occurred),
                policy_digest: work.policy_digest,
            });
        }
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
        let chained = self
            .blocks
            .into_iter()
            .filter(|b| !b.block.records.is_empty())
            .map(|b| ChainBlock {
                first_id: b.first_id,
                agent: b.agent,
                session: b.session,
                block: b.block,
            })
            .collect();
        Plan {
            outcomes,
            ids: (id > next_id).then_some((next_id, id - 1)),
            blocks,
            batch_ids,
            ranges,
            sessions,
            counters: self.counters,
            side: self.side,
            chained,
        }
    }
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
