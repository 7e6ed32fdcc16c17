//! The shared store: PostgreSQL, for control planes run as several replicas
//! behind a load balancer.
//!
//! # Layout
//!
//! Records are kept in the same blocks as on SQLite ([`crate::block`]): one
//! `blocks` row per (group commit, agent, session), the block a compressed
//! `bytea` (stored `EXTERNAL`: it is compressed already) beside its index
//! columns (id range, agent, session, sequence range, effective and receive
//! time ranges, record, denial and conflict counts). Beside them, kept in
//! the same transaction as the blocks: `batch_ids` (the idempotency key of
//! agent re-sends), `session_seqs` (each session's stored sequence numbers
//! as ranges), the per-session counters in `sessions`, the per-minute and
//! per-hour-and-host counters, the all-time per-host totals, and
//! `store_state` (the next record id). Schema: `migrations/postgres` (0006
//! for blocks; a database of the row-per-record release is converted once at
//! open, [`upgrade`]).
//!
//! # Commit order
//!
//! Record ids grow in commit order across replicas, which a follower's
//! `id > cursor` relies on. Every ingest transaction takes one transaction
//! advisory lock (the commit lock) first, reads the next id under it,
//! writes its blocks with ids from there and advances the next id;
//! PostgreSQL releases the lock only once the commit is done. So id ranges
//! are handed out and committed one transaction at a time across all
//! replicas: when a snapshot shows a block, every block with lower ids was
//! committed before it (retention, which rewrites ranges and counters, takes
//! the same lock). One lock per group commit, never per record: each replica
//! commits the calls that queue up meanwhile together ([`committer`]), and
//! [`ingest`] keeps each transaction to a few statements whatever its size.
//!
//! # Replicas and lines
//!
//! Each [`PgStore`] is one replica. It takes a replica number and holds a
//! session advisory lock on it while it lives ([`replica`]). The lines of
//! the records it commits are its to print: the line outbox holds runs of
//! record ids with their replica, one run per group commit (a group's ids
//! are contiguous), cut down as lines are printed ([`outbox`]); the lines
//! of a replica whose lock is free (it died) are adopted atomically by the
//! next replica that starts.
//!
//! Idempotency: the commit lock serializes the same records arriving
//! through two replicas at once, so the second transaction reads the
//! first's batch ids and sequence ranges, and stores them once. Text is
//! stored with NUL escaped ([`text`]).

mod chain;
mod committer;
mod exports;
mod ingest;
mod outbox;
mod purge;
mod read;
mod registry;
mod replica;
mod report;
mod text;
mod tokens;
mod upgrade;
mod verdicts;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use jiff::Timestamp;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Postgres, Row};
use tokio::sync::{Mutex, watch};
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
use committer::Committer;
use replica::Liveness;

/// Pooled connections per replica. Ingest transactions run one at a time
/// across all replicas anyway; the rest serve reads, retention and the
/// registry.
const POOL_SIZE: u32 = 10;
/// How long a call waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

const MIGRATIONS: &[Step] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "query api",
        include_str!("../../migrations/postgres/0002_query_api.sql"),
    ),
    // Numbered 4 like SQLite's, which has one more before it; versions are
    // per backend. A database that already has 5 gets 4 applied after it
    // (the migrator applies every version it has not applied; 4 only adds
    // a table).
    (
        4,
        "agent dropped ranges",
        include_str!("../../migrations/postgres/0004_agent_dropped_ranges.sql"),
    ),
    (
        5,
        "bounds and policies",
        include_str!("../../migrations/postgres/0005_bounds_and_policies.sql"),
    ),
    (
        6,
        "blocks",
        include_str!("../../migrations/postgres/0006_blocks.sql"),
    ),
    (
        7,
        "record chain",
        include_str!("../../migrations/postgres/0007_chain.sql"),
    ),
    (
        8,
        "export cursors",
        include_str!("../../migrations/postgres/0008_exports.sql"),
    ),
    (
        9,
        "roles and admin events",
        include_str!("../../migrations/postgres/0009_roles.sql"),
    ),
    (
        10,
        "session verdicts",
        include_str!("../../migrations/postgres/0010_session_verdicts.sql"),
    ),
];

/// Wraps a database error with what was being done; a closed pool is
/// [`StoreError::Closed`].
fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |cause| match cause {
        sqlx::Error::PoolClosed => StoreError::Closed,
        cause => StoreError::database(context)(cause),
    }
}

/// Column `i` of a row, a failure reported with `context`.
fn col<'r, T>(row: &'r PgRow, i: usize, context: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(i).map_err(db(context))
}

/// The PostgreSQL [`Store`]: one control-plane replica's view of the shared
/// database.
pub struct PgStore {
    pool: PgPool,
    /// This replica's group commit.
    committer: Committer,
    /// This replica's number (see [`replica`]).
    replica: i32,
    /// Holds the replica lock; `None` once closed.
    liveness: Mutex<Option<Liveness>>,
    /// Agent UUID -> internal key; agents are never removed, so entries
    /// never go stale.
    agents: StdMutex<HashMap<Uuid, i64>>,
    /// The highest record id this replica committed (see
    /// [`Store::local_commits`]).
    commits: watch::Sender<RecordId>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database `url` names (`postgres://...`), applies
    /// migrations as needed and registers this replica, with the default
    /// [`StoreOptions`]. Must be called inside a Tokio runtime.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        PgStore::open_with(url, StoreOptions::default()).await
    }

    /// [`open`](PgStore::open) with these options.
    pub async fn open_with(url: &str, store_options: StoreOptions) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(format!("{}: {e}", crate::url::redact(url))))?
            .application_name("warden");
        let mut conn = options
            .connect()
            .await
            .map_err(db("connecting to the database"))?;
        // `run_direct` rather than `run`: `run` takes an `Acquire` impl whose
        // lifetime bound makes this future not `Send`. The migrator locks the
        // database (an advisory lock) while it works.
        migrator(MIGRATIONS)
            .run_direct(None, &mut conn, false)
            .await
            .map_err(StoreError::Migrate)?;
        let liveness = Liveness::start(conn, options.clone()).await?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(db("connecting to the database"))?;
        upgrade::upgrade(&pool).await?;
        chain::open(&pool).await?;
        let replica = liveness.replica();
        Ok(PgStore {
            committer: Committer::start(pool.clone(), replica, store_options.max_url_bytes),
            pool,
            replica,
            liveness: Mutex::new(Some(liveness)),
            agents: StdMutex::new(HashMap::new()),
            commits: watch::Sender::new(0),
        })
    }

    /// This replica's number: the owner of the lines it commits.
    pub fn replica(&self) -> i32 {
        self.replica
    }

    /// The internal key of an agent, cached.
    async fn agent_key(&self, agent: Uuid) -> Result<Option<i64>, StoreError> {
        if let Some(key) = self.cached_agent(agent) {
            return Ok(Some(key));
        }
        let key = registry::agent_key(&self.pool, agent).await?;
        if let Some(key) = key
            && let Ok(mut agents) = self.agents.lock()
        {
            agents.insert(agent, key);
        }
        Ok(key)
    }

    fn cached_agent(&self, agent: Uuid) -> Option<i64> {
        self.agents.lock().ok()?.get(&agent).copied()
    }
}

impl Store for PgStore {
    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(db("pinging the database"))?;
            Ok(())
        })
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.pool.close().await;
            // Last: releasing the replica lock lets the next replica to start
            // adopt whatever lines this one leaves unprinted.
            if let Some(liveness) = self.liveness.lock().await.take() {
                liveness.stop().await;
            }
            Ok(())
        })
    }

    fn admin_token_hash(&self) -> StoreFuture<'_, Option<TokenHash>> {
        Box::pin(registry::admin_token_hash(&self.pool))
    }

    fn set_admin_token_hash(&self, hash: TokenHash) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            registry::put_admin_token_hash(&self.pool, hash, true)
                .await
                .map(drop)
        })
    }

    fn init_admin_token_hash(&self, hash: TokenHash) -> StoreFuture<'_, TokenHash> {
        Box::pin(registry::put_admin_token_hash(&self.pool, hash, false))
    }

    fn init_web_session_key(&self, candidate: [u8; 32]) -> StoreFuture<'_, [u8; 32]> {
        Box::pin(registry::init_web_session_key(&self.pool, candidate))
    }

    fn create_workspace(&self, new: NewWorkspace, at: Timestamp) -> StoreFuture<'_, Workspace> {
        Box::pin(registry::create_workspace(&self.pool, new, at))
    }

    fn list_workspaces(&self) -> StoreFuture<'_, Vec<Workspace>> {
        Box::pin(registry::list_workspaces(&self.pool))
    }

    fn workspace<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Workspace>> {
        Box::pin(async move {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(db("reading a workspace"))?;
            registry::live_workspace(&mut conn, name).await
        })
    }

    fn rotate_agent_token<'a>(
        &'a self,
        name: &'a str,
        hash: TokenHash,
        at: Timestamp,
    ) -> StoreFuture<'a, Workspace> {
        Box::pin(registry::rotate_agent_token(&self.pool, name, hash, at))
    }

    fn delete_workspace<'a>(&'a self, name: &'a str, at: Timestamp) -> StoreFuture<'a, Workspace> {
        Box::pin(registry::delete_workspace(&self.pool, name, at))
    }

    fn agent_credentials(&self, agent_id: Uuid) -> StoreFuture<'_, Option<AgentCredentials>> {
        Box::pin(registry::agent_credentials(&self.pool, agent_id))
    }

    fn record_contact(&self, agent_id: Uuid, at: Timestamp) -> StoreFuture<'_, ()> {
        Box::pin(registry::record_contact(&self.pool, agent_id, at))
    }

    fn ingest(&self, request: Arc<IngestRequest>) -> StoreFuture<'_, IngestOutcome> {
        Box::pin(async move {
            let agent = self
                .agent_key(request.agent_id)
                .await?
                .ok_or(StoreError::UnknownAgent(request.agent_id))?;
            let outcome = match self.committer.ingest(agent, request).await {
                Some(outcome) => outcome?,
                None => return Err(StoreError::Closed),
            };
            crate::ingest::notify_commits(&self.commits, &outcome);
            Ok(outcome)
        })
    }

    fn unprinted_records(
        &self,
        after: Option<RecordId>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<StoredRecord>> {
        Box::pin(async move {
            if after.is_none() {
                let adopted = replica::adopt_orphaned_lines(&self.pool, self.replica).await?;
                if adopted > 0 {
                    tracing::info!(
                        lines = adopted,
                        "adopted the unprinted boundary lines of replicas that stopped"
                    );
                }
            }
            read::unprinted(&self.pool, self.replica, after, limit).await
        })
    }

    fn mark_printed(&self, ids: Vec<RecordId>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            let ctx = "noting printed lines";
            let mut tx = self.pool.begin().await.map_err(db(ctx))?;
            outbox::remove(&mut tx, &ids).await.map_err(db(ctx))?;
            tx.commit().await.map_err(db(ctx))
        })
    }

    fn purge_records_before(
        &self,
        cutoff: Timestamp,
        max_rows: u32,
    ) -> StoreFuture<'_, PurgeOutcome> {
        Box::pin(async move { purge::purge(&self.pool, cutoff, max_rows).await })
    }

    fn records(&self, query: RecordQuery) -> StoreFuture<'_, Vec<StoredRecord>> {
        Box::pin(async move { read::records(&self.pool, &query).await })
    }

    fn session_summary<'a>(
        &'a self,
        workspace_id: Uuid,
        session_id: &'a str,
    ) -> StoreFuture<'a, Option<SessionSummary>> {
        Box::pin(read::session_summary(&self.pool, workspace_id, session_id))
    }

    fn workspace_losses(&self, workspace_id: Uuid) -> StoreFuture<'_, Vec<Loss>> {
        Box::pin(read::workspace_losses(&self.pool, workspace_id))
    }

    fn session_records(&self, query: SessionRecordQuery) -> StoreFuture<'_, Vec<StoredRecord>> {
        Box::pin(async move { read::session_records(&self.pool, &query).await })
    }

    fn session_gaps<'a>(
        &'a self,
        workspace_id: Uuid,
        session_id: &'a str,
        limit: u32,
    ) -> StoreFuture<'a, Vec<SequenceRange>> {
        Box::pin(report::session_gaps(
            &self.pool,
            workspace_id,
            session_id,
            limit,
        ))
    }

    fn sessions(&self, workspace_id: Uuid) -> StoreFuture<'_, Vec<SessionActivity>> {
        Box::pin(report::sessions(&self.pool, workspace_id))
    }

    fn workspace_activity(&self, query: ActivityQuery) -> StoreFuture<'_, WorkspaceActivity> {
        Box::pin(async move { report::workspace_activity(&self.pool, &query).await })
    }

    fn minute_activity(
        &self,
        workspace_id: Option<Uuid>,
        since: Timestamp,
        until: Timestamp,
    ) -> StoreFuture<'_, Vec<MinuteActivity>> {
        Box::pin(report::minute_activity(
            &self.pool,
            workspace_id,
            since,
            until,
        ))
    }

    fn policy<'a>(&'a self, digest: &'a str) -> StoreFuture<'a, Option<PolicyText>> {
        Box::pin(read::policy(&self.pool, digest))
    }

    fn last_record_id(&self) -> StoreFuture<'_, Option<RecordId>> {
        Box::pin(report::last_record_id(&self.pool))
    }

    fn local_commits(&self) -> watch::Receiver<RecordId> {
        self.commits.subscribe()
    }

    fn chain_links(&self, after_seq: i64, limit: u32) -> StoreFuture<'_, Vec<ChainLink>> {
        Box::pin(chain::links(&self.pool, after_seq, limit))
    }

    fn chain_leaves(
        &self,
        after_id: RecordId,
        before_id: RecordId,
    ) -> StoreFuture<'_, Vec<crate::chain::leaves::LeafBlock>> {
        Box::pin(read::chain_leaves(&self.pool, after_id, before_id))
    }

    fn chain_head(&self) -> StoreFuture<'_, Option<ChainLink>> {
        Box::pin(chain::last_link(&self.pool))
    }

    fn add_checkpoint(&self, checkpoint: Checkpoint) -> StoreFuture<'_, Checkpoint> {
        Box::pin(chain::insert_checkpoint(&self.pool, checkpoint))
    }

    fn checkpoints(&self, after_id: i64, limit: u32) -> StoreFuture<'_, Vec<Checkpoint>> {
        Box::pin(chain::checkpoints(&self.pool, after_id, limit))
    }

    fn latest_checkpoint(&self) -> StoreFuture<'_, Option<Checkpoint>> {
        Box::pin(chain::latest_checkpoint(&self.pool))
    }

    fn add_session_verdict(&self, verdict: SessionVerdict) -> StoreFuture<'_, SessionVerdict> {
        Box::pin(verdicts::add(&self.pool, verdict))
    }

    fn session_verdicts<'a>(
        &'a self,
        workspace_id: Uuid,
        session_id: &'a str,
    ) -> StoreFuture<'a, Vec<SessionVerdict>> {
        Box::pin(verdicts::of_session(&self.pool, workspace_id, session_id))
    }

    fn verdicts_after(&self, after_id: i64, limit: u32) -> StoreFuture<'_, Vec<SessionVerdict>> {
        Box::pin(verdicts::after(&self.pool, after_id, limit))
    }

    fn sessions_awaiting_verdict(&self, limit: u32) -> StoreFuture<'_, Vec<SessionKey>> {
        Box::pin(verdicts::awaiting(&self.pool, limit))
    }

    fn claim_export<'a>(
        &'a self,
        sink: &'a str,
        holder: Uuid,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<RecordId>> {
        Box::pin(exports::claim(&self.pool, sink, holder, ttl))
    }

    fn save_export_cursor<'a>(
        &'a self,
        sink: &'a str,
        holder: Uuid,
        cursor: RecordId,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(exports::save(&self.pool, sink, holder, cursor, ttl))
    }

    fn release_export<'a>(&'a self, sink: &'a str, holder: Uuid) -> StoreFuture<'a, ()> {
        Box::pin(exports::release(&self.pool, sink, holder))
    }

    fn export_states(&self) -> StoreFuture<'_, Vec<ExportState>> {
        Box::pin(exports::states(&self.pool))
    }

    fn create_api_token(&self, new: NewApiToken, at: Timestamp) -> StoreFuture<'_, ApiToken> {
        Box::pin(tokens::create(&self.pool, new, at))
    }

    fn api_tokens(&self) -> StoreFuture<'_, Vec<ApiToken>> {
        Box::pin(tokens::list(&self.pool))
    }

    fn api_token_credentials(&self, id: Uuid) -> StoreFuture<'_, Option<(ApiToken, TokenHash)>> {
        Box::pin(tokens::credentials(&self.pool, id))
    }

    fn revoke_api_token<'a>(&'a self, name: &'a str, at: Timestamp) -> StoreFuture<'a, ApiToken> {
        Box::pin(tokens::revoke(&self.pool, name, at))
    }

    fn note_api_token_use(&self, id: Uuid, at: Timestamp) -> StoreFuture<'_, ()> {
        Box::pin(tokens::note_use(&self.pool, id, at))
    }

    fn append_admin_event(&self, event: NewAdminEvent) -> StoreFuture<'_, AdminEvent> {
        Box::pin(tokens::append_event(&self.pool, event))
    }

    fn admin_events(&self, after_seq: i64, limit: u32) -> StoreFuture<'_, Vec<AdminEvent>> {
        Box::pin(tokens::events(&self.pool, after_seq, limit))
    }
}
