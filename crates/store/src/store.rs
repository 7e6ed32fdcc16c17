//! The [`Store`] trait: every operation the control plane needs from its
//! database, in domain terms, so a backend can be swapped without touching
//! callers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use uuid::Uuid;

use crate::StoreError;
use crate::access::{AdminEvent, ApiToken, NewAdminEvent, NewApiToken};
use crate::chain::leaves::LeafBlock;
use crate::chain::{ChainLink, Checkpoint};
use crate::exports::ExportState;
use crate::model::{
    ActivityQuery, AgentCredentials, IngestOutcome, IngestRequest, Loss, MinuteActivity,
    NewWorkspace, PolicyText, PurgeOutcome, RecordId, RecordQuery, SequenceRange, SessionActivity,
    SessionRecordQuery, SessionSummary, StoredRecord, TokenHash, Workspace, WorkspaceActivity,
};
use crate::verdict::{SessionKey, SessionVerdict};

/// What store operations return. Boxed so that `dyn Store` works: the server
/// picks the backend at run time from `--database-url`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The control plane's storage.
///
/// Contract (checked by the conformance suite in `tests/conformance`):
/// - [`ingest`](Store::ingest) returns only after the outcome is durably
///   committed, in one transaction with the outbox rows of the new records.
/// - Ingest is idempotent: a batch id already stored (per agent) changes
///   nothing; a record whose (agent, session id, sequence number) is stored
///   with the same content is a duplicate; with other content it is stored
///   again with `conflict = true`. Records without a session id rely on the
///   batch id alone.
/// - Status and drop counters of a batch are applied once, with the batch id.
/// - Record ids grow in commit order: once a reader has seen record `n`,
///   every record committed later has an id above `n`, so `id > cursor` never
///   misses one.
/// - Boundary lines: an ingest's new records are due for printing by the
///   store instance (replica) that committed them; see
///   [`unprinted_records`](Store::unprinted_records).
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does (health checks).
    fn ping(&self) -> StoreFuture<'_, ()>;

    /// Finishes queued writes and closes the database; later calls fail with
    /// [`StoreError::Closed`].
    fn close(&self) -> StoreFuture<'_, ()>;

    /// The admin token's hash, if one was set.
    fn admin_token_hash(&self) -> StoreFuture<'_, Option<TokenHash>>;

    /// Sets the admin token's hash, replacing any other.
    fn set_admin_token_hash(&self, hash: TokenHash) -> StoreFuture<'_, ()>;

    /// Sets the admin token's hash unless one exists; returns the one in
    /// force (so replicas sharing a database agree on the first one).
    fn init_admin_token_hash(&self, hash: TokenHash) -> StoreFuture<'_, TokenHash>;

    /// Sets the key that signs the web page's session cookies to
    /// `candidate` unless one exists; returns the one in force (so replicas
    /// sharing a database accept each other's cookies).
    fn init_web_session_key(&self, candidate: [u8; 32]) -> StoreFuture<'_, [u8; 32]>;

    /// Registers a workspace with its agent. Fails with
    /// [`StoreError::NameTaken`] when a live workspace has the name.
    fn create_workspace(&self, new: NewWorkspace, at: Timestamp) -> StoreFuture<'_, Workspace>;

    /// Live workspaces, by name.
    fn list_workspaces(&self) -> StoreFuture<'_, Vec<Workspace>>;

    /// The live workspace with this name.
    fn workspace<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Workspace>>;

    /// Gives the workspace's agent a new token hash; the old token stops
    /// working at once.
    fn rotate_agent_token<'a>(
        &'a self,
        name: &'a str,
        hash: TokenHash,
        at: Timestamp,
    ) -> StoreFuture<'a, Workspace>;

    /// Deletes a workspace: its agent is revoked and its name freed; its
    /// records and counters stay.
    fn delete_workspace<'a>(&'a self, name: &'a str, at: Timestamp) -> StoreFuture<'a, Workspace>;

    /// The identity and token hash of a live agent (`None` when unknown,
    /// revoked or deleted).
    fn agent_credentials(&self, agent_id: Uuid) -> StoreFuture<'_, Option<AgentCredentials>>;

    /// Notes that the agent made an authenticated call.
    fn record_contact(&self, agent_id: Uuid, at: Timestamp) -> StoreFuture<'_, ()>;

    /// Commits the batches of one call (see the contract above).
    fn ingest(&self, request: Arc<IngestRequest>) -> StoreFuture<'_, IngestOutcome>;

    /// Committed records whose line this store instance must print and has
    /// not marked printed, by id, after `after` (a cursor over earlier pages).
    ///
    /// These are the records this instance committed, plus those of instances
    /// that stopped without printing them (a crash). Where several replicas
    /// share one database, a call without a cursor first adopts the lines of
    /// replicas that are gone, atomically, so two replicas never both get
    /// them; the lines of live replicas are never returned. The server calls
    /// this at start, before it ingests.
    fn unprinted_records(
        &self,
        after: Option<RecordId>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<StoredRecord>>;

    /// Notes that these records' lines were printed. A store keeps at least
    /// a watermark: every record at or below it has had its line printed;
    /// records above it are returned by
    /// [`unprinted_records`](Store::unprinted_records) after a restart
    /// (printed again, marked as replays), so callers note printed lines
    /// often (at least every 50 ms) to keep that window small. A store may
    /// keep a note in memory for a short while to write it with its next
    /// commit (SQLite: at most 40 ms), but its own reads see the note at
    /// once.
    fn mark_printed(&self, ids: Vec<RecordId>) -> StoreFuture<'_, ()>;

    /// Retention: deletes at most `max_rows` records received before
    /// `cutoff` (and the batch rows they leave empty), in one short
    /// transaction; call it again until the outcome
    /// [is empty](PurgeOutcome::is_empty). A backend may keep the newest
    /// record (highest id) until a newer one exists, when deleting it would
    /// let its id be handed out again.
    ///
    /// "Received" is when the agent read the record from its socket, not the
    /// event time: event times come from the sandboxed side, and a wrong or
    /// forged clock must neither keep records forever nor purge them at once.
    ///
    /// A purged record's unprinted line is dropped with it and counted in
    /// [`PurgeOutcome::unprinted_lines`]: a line still unprinted after the
    /// whole retention period means printing has been broken that long, and
    /// keeping the record would break the retention promise instead. Loss
    /// counters and session summaries are kept (summaries count purged
    /// records, see [`SessionSummary::purged`]). The batch rows of purged
    /// records go too, so an agent re-sending such an old batch would store
    /// it again.
    fn purge_records_before(
        &self,
        cutoff: Timestamp,
        max_rows: u32,
    ) -> StoreFuture<'_, PurgeOutcome>;

    /// Stored records matching the query, by id.
    fn records(&self, query: RecordQuery) -> StoreFuture<'_, Vec<StoredRecord>>;

    /// What is known about one session of a workspace's agent.
    fn session_summary<'a>(
        &'a self,
        workspace_id: Uuid,
        session_id: &'a str,
    ) -> StoreFuture<'a, Option<SessionSummary>>;

    /// Every loss recorded for a workspace, summed over sessions, by source
    /// and reason.
    fn workspace_losses(&self, workspace_id: Uuid) -> StoreFuture<'_, Vec<Loss>>;

    /// The records of one session of a workspace in sequence order (by
    /// sequence number, then id), after the query's position.
    fn session_records(&self, query: SessionRecordQuery) -> StoreFuture<'_, Vec<StoredRecord>>;

    /// The gaps between the sequence numbers stored for a session (conflicts
    /// aside), lowest first, at most `limit`. Numbers before the first
    /// stored one and after the last are not included: see
    /// [`SessionSummary::gaps`].
    fn session_gaps<'a>(
        &'a self,
        workspace_id: Uuid,
        session_id: &'a str,
        limit: u32,
    ) -> StoreFuture<'a, Vec<SequenceRange>>;

    /// Every session known for a workspace (stored records, a final status
    /// or losses), the most recently stored-to first.
    fn sessions(&self, workspace_id: Uuid) -> StoreFuture<'_, Vec<SessionActivity>>;

    /// A workspace's records in a time range, counted by decision, with the
    /// most denied hosts.
    fn workspace_activity(&self, query: ActivityQuery) -> StoreFuture<'_, WorkspaceActivity>;

    /// Records per minute of effective time, for the minutes that start in
    /// `since..until` or contain `since` (minutes with records only, oldest
    /// first), of one workspace or (`None`) of all: the activity charts.
    /// Read from counters kept as records commit.
    fn minute_activity(
        &self,
        workspace_id: Option<Uuid>,
        since: Timestamp,
        until: Timestamp,
    ) -> StoreFuture<'_, Vec<MinuteActivity>>;

    /// The policy text a client reported with this digest (the first one
    /// stored wins; texts whose SHA-256 is not their digest are refused at
    /// ingest).
    fn policy<'a>(&'a self, digest: &'a str) -> StoreFuture<'a, Option<PolicyText>>;

    /// The highest record id committed so far by any instance (`None` when
    /// no record is stored). Every record with a lower id is committed and
    /// visible to a query that starts after this returns.
    fn last_record_id(&self) -> StoreFuture<'_, Option<RecordId>>;

    /// Changes whenever this store instance commits new records: the value is
    /// the highest id it committed so far (0 before the first). For waking
    /// followers at once; records other instances (replicas) commit do not
    /// show here.
    fn local_commits(&self) -> watch::Receiver<RecordId>;
    /// Links of the record chain (see [`crate::chain`]) after position
    /// `after_seq` (`-1` for all), in order, at most `limit`.
    fn chain_links(&self, after_seq: i64, limit: u32) -> StoreFuture<'_, Vec<ChainLink>>;

    /// The leaves of the stored records with ids `after_id < id <
    /// before_id`, in id order, one [`LeafBlock`] per stored block (see
    /// [`crate::chain::leaves`]): what a whole-store verification hashes,
    /// computed from the blocks without building the API's records. The
    /// caller bounds the range: all of it is read at once.
    fn chain_leaves(
        &self,
        after_id: RecordId,
        before_id: RecordId,
    ) -> StoreFuture<'_, Vec<LeafBlock>>;

    /// The newest link of the record chain (`None` only before the store
    /// made its genesis link).
    fn chain_head(&self) -> StoreFuture<'_, Option<ChainLink>>;

    /// Stores a signed checkpoint; returns it with its id.
    fn add_checkpoint(&self, checkpoint: Checkpoint) -> StoreFuture<'_, Checkpoint>;

    /// Stored checkpoints with an id above `after_id`, oldest first, at
    /// most `limit`.
    fn checkpoints(&self, after_id: i64, limit: u32) -> StoreFuture<'_, Vec<Checkpoint>>;

    /// The newest stored checkpoint.
    fn latest_checkpoint(&self) -> StoreFuture<'_, Option<Checkpoint>>;

    /// Stores a session completeness verdict; returns it with its id.
    fn add_session_verdict(&self, verdict: SessionVerdict) -> StoreFuture<'_, SessionVerdict>;

    /// A session's verdicts, oldest first (the last one is current).
    fn session_verdicts<'a>(
        &'a self,
        workspace_id: Uuid,
        session_id: &'a str,
    ) -> StoreFuture<'a, Vec<SessionVerdict>>;

    /// Every stored verdict with an id above `after_id`, oldest first, at
    /// most `limit`.
    fn verdicts_after(&self, after_id: i64, limit: u32) -> StoreFuture<'_, Vec<SessionVerdict>>;

    /// Sessions with records stored after their latest verdict (or without
    /// one), those stored to longest ago first, at most `limit`.
    fn sessions_awaiting_verdict(&self, limit: u32) -> StoreFuture<'_, Vec<SessionKey>>;
    /// Takes or renews the lease on export sink `sink` for `holder` until
    /// `ttl` from now (the store's clock), when it is free, expired or
    /// already `holder`'s, and returns the sink's cursor (0 for a new sink);
    /// `None` while another holder's lease runs. See [`crate::exports`].
    fn claim_export<'a>(
        &'a self,
        sink: &'a str,
        holder: Uuid,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<RecordId>>;

    /// Moves sink `sink`'s cursor up to `cursor` (never down) and renews the
    /// lease, if `holder` still holds it; `false` when it does not (another
    /// holder took over: stop exporting).
    fn save_export_cursor<'a>(
        &'a self,
        sink: &'a str,
        holder: Uuid,
        cursor: RecordId,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Frees `holder`'s lease on `sink` (nothing when it does not hold it),
    /// so that another holder takes over at once.
    fn release_export<'a>(&'a self, sink: &'a str, holder: Uuid) -> StoreFuture<'a, ()>;

    /// Every export sink's state, by name.
    fn export_states(&self) -> StoreFuture<'_, Vec<ExportState>>;

    /// Stores a named API token (its hash). Fails with
    /// [`StoreError::TokenNameTaken`] when a live token has the name.
    fn create_api_token(&self, new: NewApiToken, at: Timestamp) -> StoreFuture<'_, ApiToken>;

    /// Live named API tokens, by name.
    fn api_tokens(&self) -> StoreFuture<'_, Vec<ApiToken>>;

    /// A live named API token and its hash (`None` when unknown or revoked).
    fn api_token_credentials(&self, id: Uuid) -> StoreFuture<'_, Option<(ApiToken, TokenHash)>>;

    /// Revokes the live token with this name: it stops working at once and
    /// its name is free. Fails with [`StoreError::TokenNotFound`].
    fn revoke_api_token<'a>(&'a self, name: &'a str, at: Timestamp) -> StoreFuture<'a, ApiToken>;

    /// Notes that the token authenticated a call.
    fn note_api_token_use(&self, id: Uuid, at: Timestamp) -> StoreFuture<'_, ()>;

    /// Appends a signed admin event to the admin event chain (see
    /// [`crate::access`]); returns it with its place.
    fn append_admin_event(&self, event: NewAdminEvent) -> StoreFuture<'_, AdminEvent>;

    /// Admin events after `after_seq` (0 for all), oldest first, at most
    /// `limit`.
    fn admin_events(&self, after_seq: i64, limit: u32) -> StoreFuture<'_, Vec<AdminEvent>>;
}
