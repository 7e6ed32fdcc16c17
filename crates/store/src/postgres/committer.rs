//! Group commit for one replica: a task takes the ingest calls that queue up
//! while a commit is in flight and commits them together.
//!
//! Ingest transactions run one at a time across all replicas (the commit
//! lock, see [`ingest`](super::ingest)), so what a transaction costs beyond
//! its rows (`BEGIN` and the lock, the agent update, `COMMIT` and its WAL
//! flush, the round trips) is paid by every call that waits. Folding the
//! calls that arrive meanwhile into the next transaction pays it once per
//! group; while another replica holds the lock the queue grows and the next
//! group is larger, so the batching adapts to load. Outcomes are computed in
//! order inside the transaction, exactly as if the calls had been committed
//! one by one. If a grouped transaction fails, each call is retried alone,
//! so one bad call cannot fail the others.
//!
//! A task (rather than a lock taken by each caller) also means a commit
//! never stops half-way because the caller's future was dropped.

use std::sync::Arc;

use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::ingest::commit;
use crate::StoreError;
use crate::group::Identities;
use crate::model::{IngestOutcome, IngestRequest};

/// Stop adding calls to a group past this many records or calls, so one
/// transaction (and the lock) stays short.
const GROUP_MAX_RECORDS: usize = 10_000;
const GROUP_MAX_CALLS: usize = 64;
/// Calls queued before callers wait (backpressure on ingest).
const QUEUE: usize = 1024;

type Reply = oneshot::Sender<Result<IngestOutcome, StoreError>>;

/// One ingest call: the agent's internal key, the request, where the
/// outcome goes.
struct Call {
    agent: i64,
    request: Arc<IngestRequest>,
    reply: Reply,
}

/// Queues ingest calls for the replica's committer task.
pub(super) struct Committer {
    calls: mpsc::Sender<Call>,
}

impl Committer {
    /// Starts the task; it ends once every [`Committer`] is dropped and the
    /// queue is drained.
    pub(super) fn start(pool: PgPool, replica: i32, max_url_bytes: usize) -> Committer {
        let (calls, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, replica, max_url_bytes, queue));
        Committer { calls }
    }

    /// Commits the request; `None` when the committer has stopped.
    pub(super) async fn ingest(
        &self,
        agent: i64,
        request: Arc<IngestRequest>,
    ) -> Option<Result<IngestOutcome, StoreError>> {
        let (reply, outcome) = oneshot::channel();
        let call = Call {
            agent,
            request,
            reply,
        };
        self.calls.send(call).await.ok()?;
        outcome.await.ok()
    }
}

async fn run(pool: PgPool, replica: i32, max_url_bytes: usize, mut queue: mpsc::Receiver<Call>) {
    let mut identities = Identities::new();
    while let Some(first) = queue.recv().await {
        let mut records = first.request.record_count();
        let mut group = vec![first];
        while records < GROUP_MAX_RECORDS && group.len() < GROUP_MAX_CALLS {
            let Ok(call) = queue.try_recv() else { break };
            records += call.request.record_count();
            group.push(call);
        }
        let requests: Vec<(i64, &IngestRequest)> =
            group.iter().map(|c| (c.agent, &*c.request)).collect();
        match commit(&pool, replica, max_url_bytes, &mut identities, &requests).await {
            Ok(outcomes) => {
                for (call, outcome) in group.into_iter().zip(outcomes) {
                    let _ = call.reply.send(Ok(outcome));
                }
            }
            Err(_) if group.len() > 1 => {
                for call in group {
                    let result = commit(
                        &pool,
                        replica,
                        max_url_bytes,
                        &mut identities,
                        &[(call.agent, &*call.request)],
                    )
                    .await
                    .and_then(|outcomes| {
                        outcomes.into_iter().next().ok_or_else(|| {
                            StoreError::Corrupt("a commit returned no outcome".into())
                        })
                    });
                    let _ = call.reply.send(result);
                }
            }
            Err(e) => {
                if let Some(call) = group.pop() {
                    let _ = call.reply.send(Err(e));
                }
            }
        }
    }
}
