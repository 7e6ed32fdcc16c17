//! [`BlockingAuditor`]: the auditor for code that is not async. It runs its
//! own one-thread tokio runtime for the background task.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use uuid::Uuid;

use crate::auditor::{Attempt, Auditor};
use crate::config::Config;
use crate::error::{CloseError, ConfigError, RecordError};
use crate::record::Record;
use crate::sequence::Sequencer;
use crate::summary::Summary;

/// An [`Auditor`] for synchronous callers.
///
/// Dropping it without calling [`BlockingAuditor::close`] drains the same
/// way, within the configured `close_timeout`, blocking the dropping thread
/// until then (the summary is lost; call `close` to see it).
#[derive(Debug)]
pub struct BlockingAuditor {
    auditor: Auditor,
    /// `None` only while dropping.
    runtime: Option<Runtime>,
    closed: bool,
}

impl BlockingAuditor {
    /// Starts an auditor on a runtime of its own (one worker thread).
    pub fn start(config: Config) -> Result<BlockingAuditor, ConfigError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("warden-client")
            .enable_all()
            .build()
            .map_err(|e| ConfigError::Runtime(Arc::new(e)))?;
        let auditor = Auditor::start_on(config, runtime.handle(), Sequencer::new())?;
        Ok(BlockingAuditor {
            auditor,
            runtime: Some(runtime),
            closed: false,
        })
    }

    /// The session id sent with every batch.
    pub fn session_id(&self) -> Uuid {
        self.auditor.session_id()
    }

    /// See [`Auditor::try_record`]: never waits.
    pub fn try_record(&self, record: Record) -> Result<i32, RecordError> {
        self.auditor.try_record(record)
    }

    /// See [`Auditor::record`]: in block mode the calling thread waits for
    /// room, at most the configured timeout.
    pub fn record(&self, record: Record) -> Result<i32, RecordError> {
        // Only a full queue in block mode needs the runtime (for its timer).
        match self.auditor.record_without_waiting(record) {
            Attempt::Done(result) => result,
            Attempt::MustWait(encoded, timeout) => {
                let auditor = self.auditor.clone();
                self.block_on(async move { auditor.wait_and_send(encoded, timeout).await })
                    .unwrap_or(Err(RecordError::Closed))
            }
        }
    }

    /// See [`Auditor::close`].
    pub fn close(mut self) -> Result<Summary, CloseError> {
        self.closed = true;
        let auditor = self.auditor.clone();
        self.block_on(auditor.close())?
    }

    /// See [`Auditor::close_within`].
    pub fn close_within(mut self, timeout: Duration) -> Result<Summary, CloseError> {
        self.closed = true;
        let auditor = self.auditor.clone();
        self.block_on(auditor.close_within(timeout))?
    }

    /// Runs `future` on the auditor's runtime and waits for it on this
    /// thread. Works from any thread, even one inside another runtime
    /// (which it then blocks).
    fn block_on<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, CloseError> {
        let runtime = self.runtime.as_ref().ok_or(CloseError::WorkerGone)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv().map_err(|_| CloseError::WorkerGone)
    }
}

impl Drop for BlockingAuditor {
    fn drop(&mut self) {
        if !self.closed {
            let auditor = self.auditor.clone();
            if let Ok(Err(error)) = self.block_on(auditor.close()) {
                tracing::warn!(%error, "closing the auditor on drop");
            }
        }
        if let Some(runtime) = self.runtime.take() {
            // Allowed even inside another runtime, unlike dropping it.
            runtime.shutdown_background();
        }
    }
}
