//! The embedded store: one SQLite file in WAL mode.
//!
//! - Durability: `synchronous=FULL`. In WAL mode `NORMAL` skips the fsync at
//!   commit, so a power loss can undo the last transactions, and the agent
//!   deletes a batch from its spool as soon as we acknowledge it; with `FULL`
//!   a commit that returned is on disk.
//! - Records are stored in blocks ([`crate::block`]), many to a row; see
//!   [`ingest`] for how duplicates and conflicts are still found. A
//!   session's blocks are listed by sequence number off the commit path
//!   ([`session_index`]).
//! - Concurrency: one writer thread owns the write connection (rusqlite) and
//!   commits queued jobs together ([`writer`]); record reads run on a few
//!   read-only connections on blocking threads ([`Readers`]), beside the
//!   writer thanks to WAL. The workspace registry (rare writes) keeps its
//!   sqlx connections.
//! - Schema: `migrations/sqlite`, embedded and applied at open; a database of
//!   an earlier release has its records converted once ([`upgrade`]).

mod chain;
mod counters;
mod credentials;
mod db;
mod exports;
mod ingest;
mod purge;
mod read;
mod registry;
mod report;
mod session_index;
mod tokens;
mod upgrade;
mod verdicts;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags};
use sqlx::ConnectOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use uuid::Uuid;

use crate::StoreError;
use crate::access::{AdminEvent, ApiToken, NewAdminEvent, NewApiToken};
use crate::chain::{ChainLink, Checkpoint};
use crate::exports::ExportState;
use crate::migrations::{Step, migrator};
use crate::model::{
    ActivityQuery, AgentCredentials, IngestOutcome, IngestRequest, Loss, MinuteActivity,
    NewWorkspace, PolicyText, PurgeOutcome, RecordId, RecordQuery, SequenceRange, SessionActivity,
    SessionRecordQuery, SessionSummary, StoreOptions, StoredRecord, TokenHash, Workspace,
    WorkspaceActivity,
};
use crate::store::{Store, StoreFuture};
use crate::verdict::{SessionKey, SessionVerdict};
use credentials::CredentialCache;
use db::Ctx;
use writer::{Job, NOTE_FLUSH_DELAY, PrintedNotes, Writer};

/// Queued writer jobs before callers wait (backpressure on ingest).
const WRITER_QUEUE: usize = 1024;
/// Idle read connections kept.
const READERS: usize = 4;
/// How long a connection waits for a lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Page cache per connection, KiB (SQLite's default is 2 MiB).
const CACHE_KIB: i64 = 32 * 1024;

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
    (
        4,
        "agent dropped ranges",
        include_str!("../../migrations/sqlite/0004_agent_dropped_ranges.sql"),
    ),
    (
        5,
        "blocks",
        include_str!("../../migrations/sqlite/0005_blocks.sql"),
    ),
    (
        10,
        "record chain",
        include_str!("../../migrations/sqlite/0010_chain.sql"),
    ),
    (
        11,
        "denied host totals",
        include_str!("../../migrations/sqlite/0011_denied_host_totals.sql"),
    ),
    (
        12,
        "export cursors",
        include_str!("../../migrations/sqlite/0012_exports.sql"),
    ),
    (
        13,
        "roles and admin events",
        include_str!("../../migrations/sqlite/0013_roles.sql"),
    ),
    (
        14,
        "session verdicts",
        include_str!("../../migrations/sqlite/0014_session_verdicts.sql"),
    ),
    (
        15,
        "session blocks off the commit path",
        include_str!("../../migrations/sqlite/0015_session_blocks.sql"),
    ),
];

/// Read-only rusqlite connections for record reads, opened as needed.
struct Readers {
    path: PathBuf,
    idle: StdMutex<Vec<Connection>>,
    closed: AtomicBool,
}

impl Readers {
    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ctx("opening a read connection")?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .ctx("opening a read connection")?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)
            .ctx("opening a read connection")?;
        Ok(conn)
    }

    /// Runs `f` on an idle connection (or a new one).
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = f(&conn);
        if !self.closed.load(Ordering::Acquire)
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < READERS
        {
            idle.push(conn);
        }
        result
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// Opens the write connection with the store's pragmas.
fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let ctx = "opening the database";
    let conn = Connection::open(path).ctx(ctx)?;
    conn.busy_timeout(BUSY_TIMEOUT).ctx(ctx)?;
    conn.pragma_update(None, "journal_mode", "WAL").ctx(ctx)?;
    conn.pragma_update(None, "synchronous", "FULL").ctx(ctx)?;
    conn.pragma_update(None, "foreign_keys", true).ctx(ctx)?;
    conn.pragma_update(None, "temp_store", "MEMORY").ctx(ctx)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .ctx(ctx)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The SQLite [`Store`].
pub struct SqliteStore {
    /// The registry's writes (sqlx); `None` once closed.
    registry: Arc<Mutex<Option<SqliteConnection>>>,
    /// The registry's reads.
    registry_reads: SqlitePool,
    /// Agent credentials read recently (every agent call checks them).
    credentials: CredentialCache,
    /// The printed-line watermark as noted, and whether a flush is due.
    notes: Arc<PrintedNotes>,
    jobs: mpsc::Sender<Job>,
    writer: StdMutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Readers>,
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
    /// applying migrations as needed, with the default [`StoreOptions`].
    /// Must be called inside a Tokio runtime.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, StoreOptions::default()).await
    }

    /// [`open`](SqliteStore::open) with these options.
    pub async fn open_with(path: &Path, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::InvalidUrl(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let sqlx_options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let mut conn = sqlx_options
            .connect()
            .await
            .map_err(StoreError::database("opening the database"))?;
        // `run_direct` rather than `run`: `run` takes an `Acquire` impl whose
        // lifetime bound makes this future not `Send` (a known sqlx wart).
        migrator(MIGRATIONS)
            .run_direct(None, &mut conn, false)
            .await
            .map_err(StoreError::Migrate)?;
        let owned = path.to_owned();
        let notes = Arc::new(PrintedNotes::default());
        let writer_notes = Arc::clone(&notes);
        let writer = tokio::task::spawn_blocking(move || {
            let mut conn = open_writer(&owned)?;
            upgrade::upgrade(&mut conn)?;
            Writer::new(conn, options, writer_notes)
        })
        .await
        .map_err(|e| StoreError::database("starting the writer")(e))??;
        let registry_reads = SqlitePoolOptions::new()
            .max_connections(2)
            .min_connections(0)
            .connect_with(sqlx_options.read_only(true).create_if_missing(false))
            .await
            .map_err(StoreError::database("opening read connections"))?;
        let (jobs, queue) = mpsc::channel(WRITER_QUEUE);
        let thread = std::thread::Builder::new()
            .name("warden-sqlite-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(StoreError::database("starting the writer"))?;
        Ok(SqliteStore {
            registry: Arc::new(Mutex::new(Some(conn))),
            registry_reads,
            credentials: CredentialCache::default(),
            notes,
            jobs,
            writer: StdMutex::new(Some(thread)),
            readers: Arc::new(Readers {
                path: path.to_owned(),
                idle: StdMutex::new(Vec::new()),
                closed: AtomicBool::new(false),
            }),
            commits: watch::Sender::new(0),
        })
    }

    /// How SQLite picks the blocks of [`Store::records`] for `query`: one
    /// line per step of `EXPLAIN QUERY PLAN` (for benches, tests and
    /// slow-query hunts).
    pub async fn records_plan(&self, query: &RecordQuery) -> Result<Vec<String>, StoreError> {
        let query = query.clone();
        self.read(move |conn| read::records_plan(conn, &query))
            .await
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

    /// Runs a read on a read connection, on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(|e| StoreError::database("reading")(e))?
    }

    async fn registry_read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>, StoreError> {
        if self.registry_reads.is_closed() {
            return Err(StoreError::Closed);
        }
        self.registry_reads
            .acquire()
            .await
            .map_err(StoreError::database("waiting for a read connection"))
    }

    /// Runs a registry write on the registry's connection.
    async fn with_writer<T>(
        &self,
        f: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.registry.lock().await;
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
            self.read(|conn| {
                conn.query_row("SELECT 1", [], |_| Ok(()))
                    .ctx("pinging the database")
            })
            .await
        })
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // Readers first: the last connection to close checkpoints the
            // WAL into the database and removes it, which a read-only one
            // cannot do; the writer thread closes its connection last.
            self.readers.close();
            self.registry_reads.close().await;
            if let Some(conn) = self.registry.lock().await.take() {
                let _ = sqlx::Connection::close(conn).await;
            }
            let (reply, done) = oneshot::channel();
            // Already closed when the writer is gone.
            if self.jobs.send(Job::Close(reply)).await.is_ok() {
                let _ = done.await;
            }
            let thread = self.writer.lock().ok().and_then(|mut t| t.take());
            if let Some(thread) = thread {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            Ok(())
        })
    }

    fn admin_token_hash(&self) -> StoreFuture<'_, Option<TokenHash>> {
        Box::pin(async move { registry::admin_token_hash(&mut *self.registry_read().await?).await })
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
        Box::pin(async move { registry::list_workspaces(&mut *self.registry_read().await?).await })
    }

    fn workspace<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Workspace>> {
        Box::pin(
            async move { registry::live_workspace(&mut *self.registry_read().await?, name).await },
        )
    }

    fn rotate_agent_token<'a>(
        &'a self,
        name: &'a str,
        hash: TokenHash,
        at: Timestamp,
    ) -> StoreFuture<'a, Workspace> {
        Box::pin(async move {
            let rotated = self
                .with_writer(async |conn| registry::rotate_agent_token(conn, name, hash, at).await)
                .await;
            self.credentials.forget_all();
            rotated
        })
    }

    fn delete_workspace<'a>(&'a self, name: &'a str, at: Timestamp) -> StoreFuture<'a, Workspace> {
        Box::pin(async move {
            let deleted = self
                .with_writer(async |conn| registry::delete_workspace(conn, name, at).await)
                .await;
            self.credentials.forget_all();
            deleted
        })
    }

    fn agent_credentials(&self, agent_id: Uuid) -> StoreFuture<'_, Option<AgentCredentials>> {
        Box::pin(async move {
            if let Some(cached) = self.credentials.get(agent_id, Instant::now()) {
                return Ok(Some(cached));
            }
            let read = self.credentials.start_read(Instant::now());
            let found =
                registry::agent_credentials(&mut *self.registry_read().await?, agent_id).await?;
            if let Some(credentials) = &found {
                self.credentials.put(agent_id, credentials.clone(), read);
            }
            Ok(found)
        })
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
        // What this process noted counts before it is written.
        let noted = self.notes.noted_through();
        Box::pin(self.read(move |conn| read::unprinted(conn, after, noted, limit)))
    }

    fn mark_printed(&self, ids: Vec<RecordId>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            self.submit(|reply| Job::MarkPrinted(ids, reply)).await?;
            if self.notes.claim_flush() {
                let jobs = self.jobs.clone();
                let notes = Arc::clone(&self.notes);
                tokio::spawn(async move {
                    tokio::time::sleep(NOTE_FLUSH_DELAY).await;
                    notes.flush_queued();
                    // Gone only when the store closed, which wrote it.
                    let _ = jobs.send(Job::FlushPrinted).await;
                });
            }
            Ok(())
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
        Box::pin(self.read(move |conn| read::records(conn, &query)))
    }

    fn session_summary<'a>(
        &'a self,
        workspace_id: Uuid,
        session_id: &'a str,
    ) -> StoreFuture<'a, Option<SessionSummary>> {
        let session_id = session_id.to_owned();
        Box::pin(self.read(move |conn| read::session_summary(conn, workspace_id, &session_id)))
    }

    fn workspace_losses(&self, workspace_id: Uuid) -> StoreFuture<'_, Vec<Loss>> {
        Box::pin(self.read(move |conn| read::workspace_losses(conn, workspace_id)))
    }

    fn session_records(&self, query: SessionRecordQuery) -> StoreFuture<'_, Vec<StoredRecord>> {
        Box::pin(self.read(move |conn| read::session_records(conn, &query)))
    }

    fn session_gaps<'a>(
        &'a self,
        workspace_id: Uuid,
        session_id: &'a str,
        limit: u32,
    ) -> StoreFuture<'a, Vec<SequenceRange>> {
        let session_id = session_id.to_owned();
        Box::pin(
            self.read(move |conn| report::session_gaps(conn, workspace_id, &session_id, limit)),
        )
    }

    fn sessions(&self, workspace_id: Uuid) -> StoreFuture<'_, Vec<SessionActivity>> {
        Box::pin(self.read(move |conn| report::sessions(conn, workspace_id)))
    }

    fn workspace_activity(&self, query: ActivityQuery) -> StoreFuture<'_, WorkspaceActivity> {
        Box::pin(self.read(move |conn| report::workspace_activity(conn, &query)))
    }

    fn minute_activity(
        &self,
        workspace_id: Option<Uuid>,
        since: Timestamp,
        until: Timestamp,
    ) -> StoreFuture<'_, Vec<MinuteActivity>> {
        Box::pin(self.read(move |conn| report::minute_activity(conn, workspace_id, since, until)))
    }

    fn policy<'a>(&'a self, digest: &'a str) -> StoreFuture<'a, Option<PolicyText>> {
        let digest = digest.to_owned();
        Box::pin(self.read(move |conn| read::policy(conn, &digest)))
    }

    fn last_record_id(&self) -> StoreFuture<'_, Option<RecordId>> {
        Box::pin(self.read(report::last_record_id))
    }

    fn local_commits(&self) -> watch::Receiver<RecordId> {
        self.commits.subscribe()
    }

    fn chain_links(&self, after_seq: i64, limit: u32) -> StoreFuture<'_, Vec<ChainLink>> {
        Box::pin(self.read(move |conn| chain::links(conn, after_seq, limit)))
    }

    fn chain_leaves(
        &self,
        after_id: RecordId,
        before_id: RecordId,
    ) -> StoreFuture<'_, Vec<crate::chain::leaves::LeafBlock>> {
        Box::pin(self.read(move |conn| read::chain_leaves(conn, after_id, before_id)))
    }

    fn chain_head(&self) -> StoreFuture<'_, Option<ChainLink>> {
        Box::pin(self.read(chain::last_link))
    }

    fn add_checkpoint(&self, checkpoint: Checkpoint) -> StoreFuture<'_, Checkpoint> {
        Box::pin(async move {
            self.submit(|reply| Job::Checkpoint(Box::new(checkpoint), reply))
                .await
        })
    }

    fn checkpoints(&self, after_id: i64, limit: u32) -> StoreFuture<'_, Vec<Checkpoint>> {
        Box::pin(self.read(move |conn| chain::checkpoints(conn, after_id, limit)))
    }

    fn latest_checkpoint(&self) -> StoreFuture<'_, Option<Checkpoint>> {
        Box::pin(self.read(chain::latest_checkpoint))
    }

    fn add_session_verdict(&self, verdict: SessionVerdict) -> StoreFuture<'_, SessionVerdict> {
        Box::pin(async move {
            self.with_writer(async |conn| verdicts::add(conn, verdict).await)
                .await
        })
    }

    fn session_verdicts<'a>(
        &'a self,
        workspace_id: Uuid,
        session_id: &'a str,
    ) -> StoreFuture<'a, Vec<SessionVerdict>> {
        let session_id = session_id.to_owned();
        Box::pin(self.read(move |conn| verdicts::of_session(conn, workspace_id, &session_id)))
    }

    fn verdicts_after(&self, after_id: i64, limit: u32) -> StoreFuture<'_, Vec<SessionVerdict>> {
        Box::pin(self.read(move |conn| verdicts::after(conn, after_id, limit)))
    }

    fn sessions_awaiting_verdict(&self, limit: u32) -> StoreFuture<'_, Vec<SessionKey>> {
        Box::pin(self.read(move |conn| verdicts::awaiting(conn, limit)))
    }

    fn claim_export<'a>(
        &'a self,
        sink: &'a str,
        holder: Uuid,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<RecordId>> {
        Box::pin(async move {
            self.with_writer(async |conn| exports::claim(conn, sink, holder, ttl).await)
                .await
        })
    }

    fn save_export_cursor<'a>(
        &'a self,
        sink: &'a str,
        holder: Uuid,
        cursor: RecordId,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.with_writer(async |conn| exports::save(conn, sink, holder, cursor, ttl).await)
                .await
        })
    }

    fn release_export<'a>(&'a self, sink: &'a str, holder: Uuid) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.with_writer(async |conn| exports::release(conn, sink, holder).await)
                .await
        })
    }

    fn export_states(&self) -> StoreFuture<'_, Vec<ExportState>> {
        Box::pin(async move { exports::states(&mut *self.registry_read().await?).await })
    }

    fn create_api_token(&self, new: NewApiToken, at: Timestamp) -> StoreFuture<'_, ApiToken> {
        Box::pin(async move {
            self.with_writer(async |conn| tokens::create(conn, new, at).await)
                .await
        })
    }

    fn api_tokens(&self) -> StoreFuture<'_, Vec<ApiToken>> {
        Box::pin(async move { tokens::list(&mut *self.registry_read().await?).await })
    }

    fn api_token_credentials(&self, id: Uuid) -> StoreFuture<'_, Option<(ApiToken, TokenHash)>> {
        Box::pin(async move { tokens::credentials(&mut *self.registry_read().await?, id).await })
    }

    fn revoke_api_token<'a>(&'a self, name: &'a str, at: Timestamp) -> StoreFuture<'a, ApiToken> {
        Box::pin(async move {
            self.with_writer(async |conn| tokens::revoke(conn, name, at).await)
                .await
        })
    }

    fn note_api_token_use(&self, id: Uuid, at: Timestamp) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.with_writer(async |conn| tokens::note_use(conn, id, at).await)
                .await
        })
    }

    fn append_admin_event(&self, event: NewAdminEvent) -> StoreFuture<'_, AdminEvent> {
        Box::pin(async move {
            self.with_writer(async |conn| tokens::append_event(conn, event).await)
                .await
        })
    }

    fn admin_events(&self, after_seq: i64, limit: u32) -> StoreFuture<'_, Vec<AdminEvent>> {
        Box::pin(async move {
            tokens::events(&mut *self.registry_read().await?, after_seq, limit).await
        })
    }
}
