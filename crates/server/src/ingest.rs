//! Ingest: commit one call's batches, queue the new records' lines, count
//! what happened.
//!
//! Each commit runs in a task of its own, tracked for shutdown: once
//! started, a commit and the queueing of its lines finish even when the
//! caller goes away (an agent that timed out re-sends, and the batch id makes
//! that harmless), and a graceful shutdown waits for them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::task::TaskTracker;
use warden_proto::domain::Manifest;
use warden_store::{
    BatchOutcome, DEFAULT_MAX_URL_BYTES, IngestOutcome, IngestRequest, Store, StoreError, bound_url,
};

use crate::completeness::SessionWatch;
use crate::line::{LineFormat, LineRecord, PrintQueue, write_line};
use crate::metrics::{DecisionLabel, Metrics, ReasonLabel, agent_reason_label};
use crate::plausible;

/// Why an ingest did not commit.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the ingest task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Commits batches and gets their lines printed.
pub struct Ingestor {
    store: Arc<dyn Store>,
    lines: PrintQueue,
    format: LineFormat,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
    /// The store's URL bound (lines show URLs as stored).
    max_url_bytes: usize,
    /// Told which sessions each commit touched (for their verdicts).
    sessions: Option<Arc<SessionWatch>>,
}

impl Ingestor {
    pub fn new(
        store: Arc<dyn Store>,
        lines: PrintQueue,
        format: LineFormat,
        metrics: Arc<Metrics>,
    ) -> Ingestor {
        Ingestor {
            store,
            lines,
            format,
            metrics,
            tasks: TaskTracker::new(),
            max_url_bytes: DEFAULT_MAX_URL_BYTES,
            sessions: None,
        }
    }

    /// Tells `watch` which sessions each commit touched.
    pub fn with_session_watch(mut self, watch: Arc<SessionWatch>) -> Ingestor {
        self.sessions = Some(watch);
        self
    }

    /// Lines show URLs cut to `max` bytes, as a store opened with that bound
    /// keeps them.
    pub fn with_max_url_bytes(mut self, max: usize) -> Ingestor {
        self.max_url_bytes = max;
        self
    }

    /// Commits `request` for the agent `manifest` describes; returns once it
    /// is durable and its lines are queued.
    pub async fn ingest(
        &self,
        manifest: Manifest,
        mut request: IngestRequest,
    ) -> Result<IngestOutcome, IngestError> {
        // Counts are clamped before anything adds them up.
        for batch in &mut request.batches {
            let found = plausible::bound(batch);
            if !found.is_empty() {
                self.metrics
                    .plausibility
                    .note(&manifest.workspace_name, &found);
            }
        }
        let commit = Commit {
            store: Arc::clone(&self.store),
            lines: self.lines.clone(),
            format: self.format,
            metrics: Arc::clone(&self.metrics),
            manifest,
            request: Arc::new(request),
            max_url_bytes: self.max_url_bytes,
            sessions: self.sessions.clone(),
        };
        Ok(self.tasks.spawn(commit.run()).await??)
    }

    /// Waits for the commits in flight; no new ones are expected after this.
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

struct Commit {
    store: Arc<dyn Store>,
    lines: PrintQueue,
    format: LineFormat,
    metrics: Arc<Metrics>,
    manifest: Manifest,
    request: Arc<IngestRequest>,
    max_url_bytes: usize,
    sessions: Option<Arc<SessionWatch>>,
}

impl Commit {
    async fn run(self) -> Result<IngestOutcome, StoreError> {
        let started = Instant::now();
        let outcome = self.store.ingest(Arc::clone(&self.request)).await?;
        let mut lines = String::with_capacity(outcome.record_ids.len() * 320);
        for (batch, result) in self.request.batches.iter().zip(&outcome.batches) {
            let Some(logs) = &batch.logs else { continue };
            for new in &result.new_records {
                if let Some(record) = logs.records.get(new.index) {
                    let url = bound_url(&record.url, self.max_url_bytes);
                    write_line(
                        &mut lines,
                        self.format,
                        &LineRecord::ingested(&self.manifest, batch, record, self.request.at, url),
                    );
                }
            }
        }
        self.lines.print(lines, outcome.record_ids.clone()).await;
        self.observe(&outcome, started.elapsed());
        if let Some(watch) = &self.sessions {
            self.touch(watch);
        }
        Ok(outcome)
    }

    /// Every session the request carried records, a status or a loss for.
    fn touch(&self, watch: &SessionWatch) {
        let workspace = self.manifest.workspace_id;
        for batch in &self.request.batches {
            let sessions = batch
                .logs
                .iter()
                .map(|l| &l.session_id)
                .chain(batch.client_status.iter().map(|s| &s.session_id))
                .chain(batch.agent_drops.iter().map(|d| &d.session_id));
            for session in sessions.flatten() {
                watch.touch(workspace, session);
            }
        }
    }

    fn observe(&self, outcome: &IngestOutcome, elapsed: Duration) {
        let m = &self.metrics;
        m.ingest_seconds.observe(elapsed.as_secs_f64());
        for (batch, result) in self.request.batches.iter().zip(&outcome.batches) {
            if result.already_committed {
                m.batches_resent.inc();
                m.records_duplicate.inc_by(u64::from(result.duplicates));
                continue;
            }
            m.batch_records.observe(batch.record_count() as f64);
            if let Some(logs) = &batch.logs {
                for new in &result.new_records {
                    if let Some(record) = logs.records.get(new.index) {
                        m.records_ingested
                            .get_or_create(&DecisionLabel {
                                decision: record.decision.as_str(),
                            })
                            .inc();
                    }
                }
                for rejection in &logs.rejected {
                    m.records_rejected
                        .get_or_create(&ReasonLabel {
                            reason: rejection.reason(),
                        })
                        .inc();
                }
            }
            m.records_duplicate.inc_by(u64::from(result.duplicates));
            m.records_conflict.inc_by(u64::from(result.conflicts()));
            m.policies_refused
                .inc_by(u64::from(result.policies_refused));
            let truncated = result
                .new_records
                .iter()
                .filter(|r| r.url_original_bytes.is_some())
                .count();
            m.urls_truncated.inc_by(truncated as u64);
            for status in &batch.client_status {
                for (reason, n) in [
                    ("channel_full", status.dropped_channel_full),
                    ("batch_full", status.dropped_batch_full),
                ] {
                    if let Ok(n @ 1..) = u64::try_from(n) {
                        m.client_dropped
                            .get_or_create(&ReasonLabel { reason })
                            .inc_by(n);
                    }
                }
            }
            for drop in &batch.agent_drops {
                let reason = agent_reason_label(&drop.reason);
                m.agent_dropped_records
                    .get_or_create(&ReasonLabel { reason })
                    .inc_by(drop.records);
                m.agent_dropped_frames
                    .get_or_create(&ReasonLabel { reason })
                    .inc_by(drop.frames);
            }
            self.warn_about(batch, result);
        }
    }

    /// One warning per batch for records that were refused or conflict.
    fn warn_about(&self, batch: &warden_proto::domain::IngestBatch, result: &BatchOutcome) {
        let session = batch.logs.as_ref().and_then(|l| l.session_id.as_deref());
        if result.rejected > 0 {
            tracing::warn!(
                workspace = %self.manifest.workspace_name,
                agent = %self.manifest.agent_name,
                batch = %batch.batch_id,
                session = ?session,
                rejected = result.rejected,
                "refused boundary records that carry no request"
            );
        }
        if result.policies_refused > 0 {
            tracing::warn!(
                workspace = %self.manifest.workspace_name,
                agent = %self.manifest.agent_name,
                batch = %batch.batch_id,
                session = ?session,
                refused = result.policies_refused,
                "refused policy texts whose SHA-256 is not the digest they came with"
            );
        }
        let conflicts = result.conflicts();
        if conflicts > 0 {
            tracing::warn!(
                workspace = %self.manifest.workspace_name,
                agent = %self.manifest.agent_name,
                batch = %batch.batch_id,
                session = ?session,
                conflicts,
                "stored boundary records flagged as conflicting: their session and sequence number were already used by a different record"
            );
        }
    }
}
