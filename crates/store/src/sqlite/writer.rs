//! The single writer: one task owns the write path and commits queued ingest
//! jobs together (group commit).
//!
//! Why a task: SQLite allows one writer at a time, and with
//! `synchronous=FULL` every commit costs an fsync of the WAL, which dominates
//! ingest time. Calls that arrive while a commit is in flight are committed
//! together in the next transaction, so N concurrent agents pay for one fsync
//! instead of N. Each job's outcome is computed in order within the
//! transaction, exactly as if the jobs had been committed one by one. If a
//! grouped transaction fails, each job is retried alone so that one bad job
//! cannot fail the others.
//!
//! A task (rather than a lock taken by each caller) also means a commit never
//! stops half-way because the caller's future was dropped.
//!
//! Retention passes are writer jobs too: SQLite has one writer, so a pass
//! holds ingest up for as long as it runs, which its row bound keeps short.
//!
//! Record ids come from SQLite's rowid (the largest id + 1) inside this
//! single writer, so they grow in commit order; the outbox rows of a
//! transaction are "every record with an id above the largest before it".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use sqlx::{Connection, Row, SqliteConnection};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::ingest::{SqliteIngest, TOUCH_AGENT};
use super::purge::SqlitePurge;
use super::sql::SqlCache;
use crate::StoreError;
use crate::convert::nanos;
use crate::ingest::ingest;
use crate::model::{IngestOutcome, IngestRequest, PurgeOutcome, RecordId};
use crate::purge::purge;

/// Stop adding jobs to a group past this many records or jobs, so one
/// transaction stays short.
const GROUP_MAX_RECORDS: usize = 10_000;
const GROUP_MAX_JOBS: usize = 128;

/// How long notes of printed lines wait for an ingest to join.
const MARK_DELAY: Duration = Duration::from_millis(20);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Adds queued jobs to `group` up to the group limits; a `Close` (returned)
/// ends the group. A `Close` already in `group` is taken out and returned.
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

/// Work for the writer.
pub(super) enum Job {
    Ingest(Arc<IngestRequest>, Reply<IngestOutcome>),
    MarkPrinted(Vec<RecordId>, Reply<()>),
    Contact(Uuid, Timestamp, Reply<()>),
    /// One retention pass: records received before the time, at most so
    /// many.
    Purge(Timestamp, u32, Reply<PurgeOutcome>),
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
            Job::MarkPrinted(_, reply) | Job::Contact(_, _, reply) => drop(reply.send(Err(error))),
            Job::Close(reply) => drop(reply.send(())),
        }
    }
}

/// What a job produced inside a transaction.
enum Done {
    Ingest(Result<IngestOutcome, StoreError>),
    Purge(PurgeOutcome),
    Unit(Result<(), StoreError>),
}

pub(super) struct Writer {
    /// Shared with the registry calls, which take it for their own
    /// transactions; `None` once closed.
    pub(super) conn: Arc<Mutex<Option<SqliteConnection>>>,
    /// Agent UUID -> internal key; agents are never removed, so entries
    /// never go stale.
    agents: HashMap<Uuid, i64>,
    sql: SqlCache,
}

impl Writer {
    pub(super) fn new(conn: Arc<Mutex<Option<SqliteConnection>>>) -> Writer {
        Writer {
            conn,
            agents: HashMap::new(),
            sql: SqlCache::default(),
        }
    }

    pub(super) async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut closing = None;
        while closing.is_none() {
            let Some(first) = jobs.recv().await else {
                break;
            };
            let mut group = vec![first];
            closing = collect(&mut jobs, &mut group);
            // Notes of printed lines are not urgent: they ride along with the
            // next ingest's transaction, which saves them an fsync of their
            // own, unless nothing else comes soon. (A crash in between prints
            // those lines again at the next start.)
            if closing.is_none()
                && group.iter().all(|job| matches!(job, Job::MarkPrinted(..)))
                && let Ok(Some(next)) = tokio::time::timeout(MARK_DELAY, jobs.recv()).await
            {
                group.push(next);
                closing = collect(&mut jobs, &mut group);
            }
            if !group.is_empty() {
                self.commit(group).await;
            }
        }
        jobs.close();
        while let Ok(job) = jobs.try_recv() {
            job.fail(StoreError::Closed);
        }
        if let Some(conn) = self.conn.lock().await.take()
            && let Err(e) = conn.close().await
        {
            tracing::warn!(error = %e, "closing the sqlite writer connection failed");
        }
        if let Some(reply) = closing {
            let _ = reply.send(());
        }
    }

    async fn commit(&mut self, group: Vec<Job>) {
        let conn = Arc::clone(&self.conn);
        let mut guard = conn.lock().await;
        let Some(conn) = guard.as_mut() else {
            for job in group {
                job.fail(StoreError::Closed);
            }
            return;
        };
        match self.apply(conn, &group).await {
            Ok(done) => reply_all(group, done),
            Err(_) if group.len() > 1 => {
                for job in group {
                    match self.apply(conn, std::slice::from_ref(&job)).await {
                        Ok(done) => reply_all(vec![job], done),
                        Err(cause) => job.fail(commit_error(cause)),
                    }
                }
            }
            Err(cause) => {
                // A group of one (larger groups were retried above).
                if let Some(job) = group.into_iter().next() {
                    job.fail(commit_error(cause));
                }
            }
        }
    }

    /// Runs the jobs in one transaction; an `Err` means nothing was
    /// committed.
    async fn apply(
        &mut self,
        conn: &mut SqliteConnection,
        jobs: &[Job],
    ) -> Result<Vec<Done>, sqlx::Error> {
        let mut tx = conn.begin().await?;
        let max_before: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM records")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let mut done = Vec::with_capacity(jobs.len());
        let mut ingested = false;
        for job in jobs {
            done.push(match job {
                Job::Ingest(request, _) => match self.agent_key(&mut tx, request.agent_id).await? {
                    None => Done::Ingest(Err(StoreError::UnknownAgent(request.agent_id))),
                    Some(agent) => {
                        ingested = true;
                        let mut statements = SqliteIngest {
                            conn: &mut tx,
                            sql: &mut self.sql,
                        };
                        Done::Ingest(Ok(ingest(&mut statements, agent, request).await?))
                    }
                },
                Job::Purge(cutoff, max_rows, _) => Done::Purge(
                    purge(&mut SqlitePurge { conn: &mut tx }, *cutoff, *max_rows).await?,
                ),
                Job::MarkPrinted(ids, _) => {
                    mark_printed(&mut tx, ids).await?;
                    Done::Unit(Ok(()))
                }
                Job::Contact(agent_id, at, _) => match self.agent_key(&mut tx, *agent_id).await? {
                    None => Done::Unit(Err(StoreError::UnknownAgent(*agent_id))),
                    Some(agent) => {
                        sqlx::query(TOUCH_AGENT)
                            .bind(nanos(*at))
                            .bind(agent)
                            .execute(&mut *tx)
                            .await?;
                        Done::Unit(Ok(()))
                    }
                },
                Job::Close(_) => Done::Unit(Ok(())),
            });
        }
        if ingested {
            sqlx::query("INSERT INTO line_outbox (record_id) SELECT id FROM records WHERE id > ?")
                .bind(max_before)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn agent_key(
        &mut self,
        conn: &mut SqliteConnection,
        agent: Uuid,
    ) -> Result<Option<i64>, sqlx::Error> {
        if let Some(key) = self.agents.get(&agent) {
            return Ok(Some(*key));
        }
        let key: Option<i64> = sqlx::query("SELECT id FROM agents WHERE uuid = ?")
            .bind(agent.as_bytes().as_slice())
            .fetch_optional(&mut *conn)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        if let Some(key) = key {
            self.agents.insert(agent, key);
        }
        Ok(key)
    }
}

fn commit_error(cause: sqlx::Error) -> StoreError {
    StoreError::Database {
        context: "committing to the database",
        cause,
    }
}

fn reply_all(jobs: Vec<Job>, done: Vec<Done>) {
    for (job, done) in jobs.into_iter().zip(done) {
        match (job, done) {
            (Job::Ingest(_, reply), Done::Ingest(result)) => drop(reply.send(result)),
            (Job::Purge(_, _, reply), Done::Purge(outcome)) => drop(reply.send(Ok(outcome))),
            (Job::MarkPrinted(_, reply) | Job::Contact(_, _, reply), Done::Unit(result)) => {
                drop(reply.send(result))
            }
            (Job::Close(reply), _) => drop(reply.send(())),
            (job, _) => job.fail(StoreError::Corrupt("writer reply mismatch".into())),
        }
    }
}

/// Removes outbox rows, a contiguous run of ids per statement.
async fn mark_printed(conn: &mut SqliteConnection, ids: &[RecordId]) -> Result<(), sqlx::Error> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while i + 1 < ids.len() && ids[i + 1] == end + 1 {
            i += 1;
            end = ids[i];
        }
        sqlx::query("DELETE FROM line_outbox WHERE record_id BETWEEN ? AND ?")
            .bind(start)
            .bind(end)
            .execute(&mut *conn)
            .await?;
        i += 1;
    }
    Ok(())
}
