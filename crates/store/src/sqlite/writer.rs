//! The single writer: one thread owns the SQLite write connection and
//! commits queued jobs together (group commit), each group as one
//! transaction run in one call.
//!
//! Why one thread: SQLite allows one writer at a time, and with
//! `synchronous=FULL` every commit costs an fsync of the WAL, which
//! dominates ingest time. Calls that arrive while a commit is in flight are
//! committed together in the next transaction, so N concurrent agents pay
//! for one fsync instead of N, and the thread hand-off is paid once per group
//! rather than once per statement. Each job's outcome is computed in order
//! within the transaction, exactly as if the jobs had been committed one by
//! one. If a grouped transaction fails, each job is retried alone so that one
//! bad job cannot fail the others. A thread (rather than a lock taken by each
//! caller) also means a commit never stops half-way because a caller went
//! away.
//!
//! Record ids are handed out here, from `store_state.next_record_id`, so they
//! grow in commit order and are never handed out twice. The writer also
//! keeps the line watermark: the ids of the records it committed whose lines
//! are not printed yet ([`Lines`]); every record at or below the watermark
//! has had its line printed, and the watermark is stored with the group that
//! moves it.
//!
//! Notes of printed lines do not get a transaction of their own when
//! nothing else is queued: the watermark is written by the next commit,
//! or by the flush [`SqliteStore::mark_printed`](super::SqliteStore) queues
//! [`NOTE_FLUSH_DELAY`] later, whichever comes first. At a steady rate the
//! next ingest commit comes first, so noting costs no fsync; a note costs
//! one transaction only when ingest is quiet. What was noted is published
//! at once ([`PrintedNotes`]) so this process's reads see it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::chain::{self as chain_sql, Identities};
use super::db::{self, Ctx, NEXT_RECORD_ID, PRINTED_THROUGH};
use super::ingest::{self, Queries};
use super::purge;
use super::session_index;
use crate::StoreError;
use crate::chain::{self, ChainHead, Checkpoint};
use crate::convert::nanos;
use crate::group::Group;
use crate::intervals::IntervalSet;
use crate::model::{IngestOutcome, IngestRequest, PurgeOutcome, RecordId, StoreOptions};

/// Stop adding jobs to a group past this many records or jobs, so one
/// transaction stays short.
const GROUP_MAX_RECORDS: usize = 20_000;
const GROUP_MAX_JOBS: usize = 256;

/// How long a note of printed lines may wait for a commit to write it.
/// The server notes every 50 ms, so a printed line is saved within about
/// 90 ms (`docs/stderr-format.md` asks for 100).
pub(super) const NOTE_FLUSH_DELAY: Duration = Duration::from_millis(40);

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Where printed-line notes stand, shared by the writer and the store.
#[derive(Debug, Default)]
pub(super) struct PrintedNotes {
    /// Every record at or below this id has had its line printed, as noted
    /// (written to the database or not yet).
    noted_through: AtomicI64,
    /// A flush is queued or waiting to be.
    flush_scheduled: AtomicBool,
}

impl PrintedNotes {
    pub(super) fn noted_through(&self) -> RecordId {
        self.noted_through.load(Ordering::Acquire)
    }

    /// True for the caller that should queue the next flush.
    pub(super) fn claim_flush(&self) -> bool {
        !self.flush_scheduled.swap(true, Ordering::AcqRel)
    }

    /// Called just before the flush is queued: notes after this point need
    /// a flush of their own.
    pub(super) fn flush_queued(&self) {
        self.flush_scheduled.store(false, Ordering::Release);
    }
}

/// Work for the writer.
pub(super) enum Job {
    Ingest(Arc<IngestRequest>, Reply<IngestOutcome>),
    /// These records' lines are printed (kept in memory until a commit).
    MarkPrinted(Vec<RecordId>, Reply<()>),
    /// Write the noted watermark if no commit has yet.
    FlushPrinted,
    Contact(Uuid, Timestamp, Reply<()>),
    /// One retention pass: records received before the time, at most so
    /// many.
    Purge(Timestamp, u32, Reply<PurgeOutcome>),
    /// Store a signed checkpoint.
    Checkpoint(Box<Checkpoint>, Reply<Checkpoint>),
    /// Finish what is queued before, then close the connection.
    Close(oneshot::Sender<()>),
}

impl Job {
    fn records(&self) -> usize {
        match self {
            Job::Ingest(request, _) => request.record_count(),
            _ => 0,
        }
    }

    fn fail(self, error: StoreError) {
        match self {
            Job::Ingest(_, reply) => drop(reply.send(Err(error))),
            Job::Purge(_, _, reply) => drop(reply.send(Err(error))),
            Job::Checkpoint(_, reply) => drop(reply.send(Err(error))),
            Job::MarkPrinted(_, reply) | Job::Contact(_, _, reply) => drop(reply.send(Err(error))),
            Job::Close(reply) => drop(reply.send(())),
            Job::FlushPrinted => {}
        }
    }

    fn is_printed_note(&self) -> bool {
        matches!(self, Job::MarkPrinted(..) | Job::FlushPrinted)
    }
}

/// What a job produced inside a transaction.
enum Done {
    Ingest(Result<usize, StoreError>),
    Purge(PurgeOutcome),
    Checkpoint(Checkpoint),
    Unit(Result<(), StoreError>),
}

/// The lines of this store's records that are due, and the watermark.
#[derive(Clone, Debug, Default)]
pub(super) struct Lines {
    /// Ids committed (or found unprinted at start) whose lines are not
    /// printed yet.
    pub due: IntervalSet,
    /// Every record at or below this id has had its line printed.
    pub printed_through: RecordId,
}

impl Lines {
    /// The watermark `due` allows, never lower than the current one.
    fn watermark(&self, next_id: RecordId) -> RecordId {
        let through = match self.due.first() {
            Some(first) => first - 1,
            None => next_id - 1,
        };
        through.max(self.printed_through)
    }
}

/// The writer thread's state.
pub(super) struct Writer {
    conn: Connection,
    /// Agent UUID -> internal key; agents are never removed, so entries
    /// never go stale.
    agents: HashMap<Uuid, i64>,
    next_id: RecordId,
    lines: Lines,
    /// Where the record chain stands (what the next link extends).
    chain: ChainHead,
    identities: Identities,
    options: StoreOptions,
    notes: Arc<PrintedNotes>,
    /// When the per-session index last caught up with the blocks.
    sessions_indexed_at: Instant,
}

impl Writer {
    /// Takes over the write connection; reads where ids and lines stand.
    pub(super) fn new(
        mut conn: Connection,
        options: StoreOptions,
        notes: Arc<PrintedNotes>,
    ) -> Result<Writer, StoreError> {
        let ctx = "reading the writer's state";
        let chain = chain_sql::open(&mut conn)?;
        let max_id: Option<i64> = conn
            .query_row("SELECT max(last_id) FROM blocks", [], |row| row.get(0))
            .ctx(ctx)?;
        let next_id = db::state(&conn, NEXT_RECORD_ID)
            .ctx(ctx)?
            .unwrap_or(1)
            .max(max_id.unwrap_or(0) + 1);
        let printed_through = db::state(&conn, PRINTED_THROUGH).ctx(ctx)?.unwrap_or(0);
        let mut due = IntervalSet::new();
        {
            let mut stmt = conn
                .prepare("SELECT first_id, last_id FROM blocks WHERE last_id > ?1")
                .ctx(ctx)?;
            let mut rows = stmt.query(params![printed_through]).ctx(ctx)?;
            while let Some(row) = rows.next().ctx(ctx)? {
                let (first, last): (i64, i64) = (row.get(0).ctx(ctx)?, row.get(1).ctx(ctx)?);
                due.insert(first.max(printed_through + 1), last);
            }
        }
        notes
            .noted_through
            .store(printed_through, Ordering::Release);
        // Blocks written since the last entries (a moment's, or all of an
        // upgraded database's) are entered before anything reads them.
        let tx = conn.transaction().ctx(ctx)?;
        session_index::enter_new_blocks(&tx, i64::MAX)?;
        tx.commit().ctx(ctx)?;
        Ok(Writer {
            conn,
            agents: HashMap::new(),
            next_id,
            lines: Lines {
                due,
                printed_through,
            },
            chain,
            identities: Identities::default(),
            options,
            notes,
            sessions_indexed_at: Instant::now(),
        })
    }

    /// Runs jobs until a `Close` (or until every sender is gone).
    pub(super) fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut closing = None;
        while closing.is_none() {
            let Some(first) = jobs.blocking_recv() else {
                break;
            };
            let mut group = vec![first];
            closing = collect(&mut jobs, &mut group);
            if !group.is_empty() {
                self.commit(group);
            }
        }
        jobs.close();
        while let Ok(job) = jobs.try_recv() {
            job.fail(StoreError::Closed);
        }
        // Notes waiting for a commit are written before the connection goes.
        self.note_printed(vec![Job::FlushPrinted]);
        if let Err(e) = self.conn.close() {
            tracing::warn!(error = %e.1, "closing the sqlite writer connection failed");
        }
        if let Some(reply) = closing {
            let _ = reply.send(());
        }
    }

    fn commit(&mut self, group: Vec<Job>) {
        if group.iter().all(Job::is_printed_note) {
            self.note_printed(group);
        } else {
            self.commit_together(group);
        }
    }

    /// Notes alone: kept in memory, written only by a flush that finds the
    /// watermark moved since the last commit.
    fn note_printed(&mut self, group: Vec<Job>) {
        let mut flush = false;
        let mut replies = Vec::with_capacity(group.len());
        for job in group {
            match job {
                Job::MarkPrinted(ids, reply) => {
                    for (first, last) in crate::intervals::runs(sorted(&ids)) {
                        self.lines.due.remove(first, last);
                    }
                    replies.push(reply);
                }
                Job::FlushPrinted => flush = true,
                job => job.fail(StoreError::Corrupt("not a printed-line note".into())),
            }
        }
        if flush && self.lines.watermark(self.next_id) != self.lines.printed_through {
            // The transaction of no job writes the watermark and nothing else.
            if let Err(e) = self.apply(&[]) {
                tracing::warn!(error = %e.chain(), "could not save which boundary lines are printed; the next commit will");
            }
        }
        // Published before the callers hear back, so their next read sees it.
        self.publish_noted();
        for reply in replies {
            drop(reply.send(Ok(())));
        }
    }

    fn publish_noted(&self) {
        self.notes
            .noted_through
            .store(self.lines.watermark(self.next_id), Ordering::Release);
    }

    fn commit_together(&mut self, group: Vec<Job>) {
        match self.apply(&group) {
            Ok(done) => reply_all(group, done),
            Err(_) if group.len() > 1 => {
                for job in group {
                    match self.apply(std::slice::from_ref(&job)) {
                        Ok(done) => reply_all(vec![job], done),
                        Err(cause) => job.fail(cause),
                    }
                }
            }
            Err(cause) => {
                if let Some(job) = group.into_iter().next() {
                    job.fail(cause);
                }
            }
        }
    }

    /// Runs the jobs in one transaction; an `Err` means nothing was
    /// committed and the writer's state is as before.
    fn apply(&mut self, jobs: &[Job]) -> Result<Vec<(Done, Option<IngestOutcome>)>, StoreError> {
        let ctx = "committing to the database";
        let mut agents = std::mem::take(&mut self.agents);
        let mut identities = std::mem::take(&mut self.identities);
        let index_sessions = self.sessions_indexed_at.elapsed() >= self.options.session_index_every;
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx(ctx)?;
            let mut lines = self.lines.clone();
            let mut head = self.chain;
            let mut group = Group::new(self.options.max_url_bytes);
            let mut done = Vec::with_capacity(jobs.len());
            for job in jobs {
                done.push(match job {
                    Job::Ingest(request, _) => {
                        match cached_agent(&tx, &mut agents, request.agent_id)? {
                            None => Done::Ingest(Err(StoreError::UnknownAgent(request.agent_id))),
                            Some(agent) => {
                                Done::Ingest(Ok(group.add(&mut Queries(&tx), agent, request)?))
                            }
                        }
                    }
                    Job::Purge(cutoff, max_rows, _) => {
                        let pass = purge::pass(&tx, nanos(*cutoff), *max_rows, &lines.due)?;
                        for &(first, last) in &pass.ids {
                            lines.due.remove(first, last);
                        }
                        if !pass.ids.is_empty() {
                            // The tombstone: what went, chained after the
                            // head at the cut.
                            let link = chain::purge_link(&head, &pass.ids, Timestamp::now());
                            chain_sql::insert_link(&tx, &link)?;
                            head = head.after(&link);
                        }
                        Done::Purge(pass.outcome)
                    }
                    Job::MarkPrinted(ids, _) => {
                        for (first, last) in crate::intervals::runs(sorted(ids)) {
                            lines.due.remove(first, last);
                        }
                        Done::Unit(Ok(()))
                    }
                    Job::Contact(agent_id, at, _) => {
                        match cached_agent(&tx, &mut agents, *agent_id)? {
                            None => Done::Unit(Err(StoreError::UnknownAgent(*agent_id))),
                            Some(agent) => {
                                tx.prepare_cached(
                                    "UPDATE agents SET last_contact_at = ?1 WHERE id = ?2",
                                )
                                .and_then(|mut s| s.execute(params![nanos(*at), agent]))
                                .ctx("noting an agent's contact")?;
                                Done::Unit(Ok(()))
                            }
                        }
                    }
                    Job::Checkpoint(checkpoint, _) => {
                        let mut stored = (**checkpoint).clone();
                        stored.id = chain_sql::insert_checkpoint(&tx, &stored)?;
                        Done::Checkpoint(stored)
                    }
                    Job::Close(_) | Job::FlushPrinted => Done::Unit(Ok(())),
                });
            }
            let mut finished = group.finish(self.next_id);
            let outcomes = std::mem::take(&mut finished.outcomes);
            let ids = finished.ids;
            // One link per group commit, in its transaction.
            let known = identities.fill(&tx, finished.agents())?;
            if let Some(link) = finished.chain_link(known, &head, Timestamp::now())? {
                chain_sql::insert_link(&tx, &link)?;
                head = head.after(&link);
            }
            ingest::write(&tx, finished)?;
            let caught_up = !index_sessions
                || session_index::enter_new_blocks(&tx, session_index::MAX_BLOCKS_A_COMMIT)?;
            let mut next_id = self.next_id;
            if let Some((first, last)) = ids {
                lines.due.insert(first, last);
                next_id = last + 1;
                db::set_state(&tx, NEXT_RECORD_ID, next_id).ctx(ctx)?;
            }
            let through = lines.watermark(next_id);
            if through != lines.printed_through {
                lines.printed_through = through;
                db::set_state(&tx, PRINTED_THROUGH, through).ctx(ctx)?;
            }
            tx.commit().ctx(ctx)?;
            let mut outcomes: Vec<Option<IngestOutcome>> = outcomes.into_iter().map(Some).collect();
            let done = done
                .into_iter()
                .map(|d| {
                    let outcome = match &d {
                        Done::Ingest(Ok(i)) => outcomes.get_mut(*i).and_then(Option::take),
                        _ => None,
                    };
                    (d, outcome)
                })
                .collect();
            Ok((done, lines, next_id, head, caught_up))
        })();
        self.agents = agents;
        self.identities = identities;
        let (done, lines, next_id, head, caught_up) = result?;
        // Behind (more than a commit's worth came in): the next commit
        // goes on.
        if index_sessions && caught_up {
            self.sessions_indexed_at = Instant::now();
        }
        self.lines = lines;
        self.next_id = next_id;
        self.chain = head;
        self.publish_noted();
        Ok(done)
    }
}

fn sorted(ids: &[RecordId]) -> Vec<RecordId> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}

fn cached_agent(
    tx: &Connection,
    agents: &mut HashMap<Uuid, i64>,
    agent: Uuid,
) -> Result<Option<i64>, StoreError> {
    if let Some(key) = agents.get(&agent) {
        return Ok(Some(*key));
    }
    let key = db::agent_key(tx, agent).ctx("finding an agent")?;
    if let Some(key) = key {
        agents.insert(agent, key);
    }
    Ok(key)
}

/// Adds queued jobs to `group` up to the group limits; a `Close` (returned)
/// ends the group.
fn collect(jobs: &mut mpsc::Receiver<Job>, group: &mut Vec<Job>) -> Option<oneshot::Sender<()>> {
    if let Some(Job::Close(_)) = group.last()
        && let Some(Job::Close(reply)) = group.pop()
    {
        return Some(reply);
    }
    let mut records: usize = group.iter().map(Job::records).sum();
    while records < GROUP_MAX_RECORDS && group.len() < GROUP_MAX_JOBS {
        match jobs.try_recv() {
            Ok(Job::Close(reply)) => return Some(reply),
            Ok(job) => {
                records += job.records();
                group.push(job);
            }
            Err(_) => break,
        }
    }
    None
}

fn reply_all(jobs: Vec<Job>, done: Vec<(Done, Option<IngestOutcome>)>) {
    for (job, (done, outcome)) in jobs.into_iter().zip(done) {
        match (job, done) {
            (Job::Ingest(_, reply), Done::Ingest(result)) => {
                let result = result.and_then(|_| {
                    outcome.ok_or_else(|| StoreError::Corrupt("an ingest lost its outcome".into()))
                });
                drop(reply.send(result));
            }
            (Job::Purge(_, _, reply), Done::Purge(outcome)) => drop(reply.send(Ok(outcome))),
            (Job::Checkpoint(_, reply), Done::Checkpoint(stored)) => drop(reply.send(Ok(stored))),
            (Job::MarkPrinted(_, reply) | Job::Contact(_, _, reply), Done::Unit(result)) => {
                drop(reply.send(result))
            }
            (Job::Close(reply), _) => drop(reply.send(())),
            (Job::FlushPrinted, _) => {}
            (job, _) => job.fail(StoreError::Corrupt("writer reply mismatch".into())),
        }
    }
}
