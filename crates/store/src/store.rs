//! The [`Store`] trait: every operation the control plane needs from its
//! database, in domain terms, so a backend can be swapped without touching
//! callers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jiff::Timestamp;
use uuid::Uuid;

use crate::StoreError;
use crate::model::{
    AgentCredentials, IngestOutcome, IngestRequest, Loss, NewWorkspace, RecordId, RecordQuery,
    SessionSummary, StoredRecord, TokenHash, Workspace,
};

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
/// - Record ids grow in commit order.
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

    /// Committed records whose line has not been printed, by id, after
    /// `after` (a cursor over earlier pages).
    fn unprinted_records(
        &self,
        after: Option<RecordId>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<StoredRecord>>;

    /// Notes that these records' lines were printed.
    fn mark_printed(&self, ids: Vec<RecordId>) -> StoreFuture<'_, ()>;

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
}
