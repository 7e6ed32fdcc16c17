//! The embedded store: one SQLite file in WAL mode.
//!
//! - Durability: `synchronous=FULL`. In WAL mode `NORMAL` skips the fsync at
//!   commit, so a power loss can undo the last transactions, and the agent
//!   deletes a batch from its spool as soon as we acknowledge it; with `FULL`
//!   a commit that returned is on disk.
//! - Concurrency: one writer connection, driven by the [`writer`] task (group
//!   commit) and borrowed by the rare registry writes; a small pool of
//!   read-only connections for everything else. WAL lets reads run beside the
//!   writer.
//! - Schema: `migrations/sqlite`, embedded in the binary and applied at open.
//! - Ingest and retention run the shared algorithms ([`crate::ingest`],
//!   [`crate::purge`]) with SQLite's statements.

mod ingest;
mod purge;
mod read;
mod registry;
mod report;
mod sql;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use sqlx::ConnectOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use uuid::Uuid;

use crate::StoreError;
use crate::migrations::{Step, migrator};
use crate::model::{
    ActivityQuery, AgentCredentials, IngestOutcome, IngestRequest, Loss, MinuteCounts,
    NewWorkspace, PurgeOutcome, RecordId, RecordQuery, SequenceRange, SessionActivity,
    SessionRecordQuery, SessionSummary, StoredRecord, TokenHash, Workspace, WorkspaceActivity,
};
use crate::store::{Store, StoreFuture};
use writer::{Job, Writer};

/// Queued writer jobs before callers wait (backpressure on ingest).
const WRITER_QUEUE: usize = 1024;
/// Read-only connections.
const READERS: u32 = 4;
/// How long a connection waits for a lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, embedded.
const MIGRATIONS: &[Step] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "queries and retention",
        include_str!("../../migrations/sqlite/0002_queries_and_retention.sql"),
    ),
    (
        3,
        "query api",
        include_str!("../../migrations/sqlite/0003_query_api.sql"),
    ),
];

/// The SQLite [`Store`].
pub struct SqliteStore {
    writer: Arc<Mutex<Option<SqliteConnection>>>,
    jobs: mpsc::Sender<Job>,
    readers: SqlitePool,
    /// The highest record id this store committed (see
    /// [`Store::local_commits`]).
    commits: watch::Sender<RecordId>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating it (and its directory) and
    /// applying migrations as needed. Must be called inside a Tokio runtime.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::InvalidUrl(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Multi-row inserts with a conflict clause keep a statement
            // journal; in memory it costs no file writes.
            .pragma("temp_store", "memory")
            // 32 MiB of page cache (the default is 2 MiB): the hot pages of
            // the records table and its indexes stay in memory.
            .pragma("cache_size", "-32768")
            // One shape per multi-row insert size: keep them all prepared.
            .statement_cache_capacity(1024);
        let mut conn = options
            .connect()
            .await
            .map_err(StoreError::database("opening the database"))?;
        // `run_direct` rather than `run`: `run` takes an `Acquire` impl whose
        // lifetime bound makes this future not `Send` (a known sqlx wart).
        migrator(MIGRATIONS)
            .run_direct(None, &mut conn, false)
            .await
            .map_err(StoreError::Migrate)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(0)
            .connect_with(options.read_only(true).create_if_missing(false))
            .await
            .map_err(StoreError::database("opening read connections"))?;
        let writer = Arc::new(Mutex::new(Some(conn)));
        let (jobs, queue) = mpsc::channel(WRITER_QUEUE);
        tokio::spawn(Writer::new(Arc::clone(&writer)).run(queue));
        Ok(SqliteStore {
            writer,
            jobs,
            readers,
            commits: watch::Sender::new(0),
        })
    }

    /// How SQLite runs [`Store::records`] for `query`: one line per step of
    /// `EXPLAIN QUERY PLAN` (for benches, tests and slow-query hunts).
    pub async fn records_plan(&self, query: &RecordQuery) -> Result<Vec<String>, StoreError> {
        read::records_plan(&mut *self.read().await?, query).await
    }

    /// Queues a writer job and waits for its result.
    async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, result) = oneshot::channel();
        self.jobs
            .send(job(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }

    async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>, StoreError> {
        if self.readers.is_closed() {
            return Err(StoreError::Closed);
        }
        self.readers
            .acquire()
            .await
            .map_err(StoreError::database("waiting for a read connection"))
    }

    /// Runs a registry write on the writer connection.
    async fn with_writer<T>(
        &self,
        f: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.writer.lock().await;
        let conn = guard.as_mut().ok_or(StoreError::Closed)?;
        f(conn).await
    }
}

impl Store for SqliteStore {
    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if self.jobs.is_closed() {
                return Err(StoreError::Closed);
            }
            let mut conn = self.read().await?;
            sqlx::query("SELECT 1")
                .execute(&mut *conn)
                .await
                .map_err(StoreError::database("pinging the database"))?;
            Ok(())
        })
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // Readers first: the last connection to close checkpoints the
            // WAL into the database and removes it, which a read-only one
            // cannot do.
            self.readers.close().await;
            let (reply, done) = oneshot::channel();
            // Already closed when the writer is gone.
            if self.jobs.send(Job::Close(reply)).await.is_ok() {
                let _ = done.await;
            }
            Ok(())
        })
    }

    fn admin_token_hash(&self) -> StoreFuture<'_, Option<TokenHash>> {
        Box::pin(async move { registry::admin_token_hash(&mut *self.read().await?).await })
    }

    fn set_admin_token_hash(&self, hash: TokenHash) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.with_writer(async |conn| registry::put_admin_token_hash(conn, hash, true).await)
                .await
                .map(drop)
        })
    }

    fn init_admin_token_hash(&self, hash: TokenHash) -> StoreFuture<'_, TokenHash> {
        Box::pin(async move {
            self.with_writer(async |conn| registry::put_admin_token_hash(conn, hash, false).await)
                .await
        })
    }

    fn init_web_session_key(&self, candidate: [u8; 32]) -> StoreFuture<'_, [u8; 32]> {
        Box::pin(async move {
            self.with_writer(async |conn| registry::init_web_session_key(conn, candidate).await)
                .await
        })
    }

    fn create_workspace(&self, new: NewWorkspace, at: Timestamp) -> StoreFuture<'_, Workspace> {
        Box::pin(async move {
            self.with_writer(async |conn| registry::create_workspace(conn, new, at).await)
                .await
        })
    }

    fn list_workspaces(&self) -> StoreFuture<'_, Vec<Workspace>> {
        Box::pin(async move { registry::list_workspaces(&mut *self.read().await?).await })
    }

    fn workspace<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Workspace>> {
        Box::pin(async move { registry::live_workspace(&mut *self.read().await?, name).await })
    }

    fn rotate_agent_token<'a>(
        &'a self,
        name: &'a str,
        hash: TokenHash,
        at: Timestamp,
    ) -> StoreFuture<'a, Workspace> {
        Box::pin(async move {
            self.with_writer(async |conn| registry::rotate_agent_token(conn, name, hash, at).await)
                .await
        })
    }

    fn delete_workspace<'a>(&'a self, name: &'a str, at: Timestamp) -> StoreFuture<'a, Workspace> {
        Box::pin(async move {
            self.with_writer(async |conn| registry::delete_workspace(conn, name, at).await)
                .await
        })
    }

    fn agent_credentials(&self, agent_id: Uuid) -> StoreFuture<'_, Option<AgentCredentials>> {
        Box::pin(
            async move { registry::agent_credentials(&mut *self.read().await?, agent_id).await },
        )
    }

    fn record_contact(&self, agent_id: Uuid, at: Timestamp) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.submit(|reply| Job::Contact(agent_id, at, reply)).await })
    }

    fn ingest(&self, request: Arc<IngestRequest>) -> StoreFuture<'_, IngestOutcome> {
        Box::pin(async move {
            let outcome = self.submit(|reply| Job::Ingest(request, reply)).await?;
            crate::ingest::notify_commits(&self.commits, &outcome);
            Ok(outcome)
        })
    }

    fn unprinted_records(
        &self,
        after: Option<RecordId>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<StoredRecord>> {
        Box::pin(async move { read::unprinted(&mut *self.read().await?, after, limit).await })
    }

    fn mark_printed(&self, ids: Vec<RecordId>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            self.submit(|reply| Job::MarkPrinted(ids, reply)).await
        })
    }

    fn purge_records_before(
        &self,
        cutoff: Timestamp,
        max_rows: u32,
    ) -> StoreFuture<'_, PurgeOutcome> {
        Box::pin(async move {
            self.submit(|reply| Job::Purge(cutoff, max_rows, reply))
                .await
        })
    }

    fn records(&self, query: RecordQuery) -> StoreFuture<'_, Vec<StoredRecord>> {
        Box::pin(async move { read::records(&mut *self.read().await?, &query).await })
    }

    fn session_summary<'a>(
        &'a self,
        workspace_id: Uuid,
        session_id: &'a str,
    ) -> StoreFuture<'a, Option<SessionSummary>> {
        Box::pin(async move {
            read::session_summary(&mut *self.read().await?, workspace_id, session_id).await
        })
    }

    fn workspace_losses(&self, workspace_id: Uuid) -> StoreFuture<'_, Vec<Loss>> {
        Box::pin(
            async move { read::workspace_losses(&mut *self.read().await?, workspace_id).await },
        )
    }

    fn session_records(&self, query: SessionRecordQuery) -> StoreFuture<'_, Vec<StoredRecord>> {
        Box::pin(async move { read::session_records(&mut *self.read().await?, &query).await })
    }

    fn session_gaps<'a>(
        &'a self,
        workspace_id: Uuid,
        session_id: &'a str,
        limit: u32,
    ) -> StoreFuture<'a, Vec<SequenceRange>> {
        Box::pin(async move {
            report::session_gaps(&mut *self.read().await?, workspace_id, session_id, limit).await
        })
    }

    fn sessions(&self, workspace_id: Uuid) -> StoreFuture<'_, Vec<SessionActivity>> {
        Box::pin(async move { report::sessions(&mut *self.read().await?, workspace_id).await })
    }

    fn workspace_activity(&self, query: ActivityQuery) -> StoreFuture<'_, WorkspaceActivity> {
        Box::pin(async move { report::workspace_activity(&mut *self.read().await?, &query).await })
    }

    fn records_per_minute(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> StoreFuture<'_, Vec<MinuteCounts>> {
        Box::pin(
            async move { report::records_per_minute(&mut *self.read().await?, since, until).await },
        )
    }

    fn last_record_id(&self) -> StoreFuture<'_, Option<RecordId>> {
        Box::pin(async move { report::last_record_id(&mut *self.read().await?).await })
    }

    fn local_commits(&self) -> watch::Receiver<RecordId> {
        self.commits.subscribe()
    }
}
