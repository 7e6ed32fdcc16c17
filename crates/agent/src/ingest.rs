//! The one way into the spool for client frames: appends entries (resolving
//! once they are fsynced), and says so when the spool's drop_oldest policy
//! threw older batches away to make room (the spool's drop ledger keeps
//! what they were; the forwarder reports them).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use warden_proto::domain::DropReason;
use warden_spool::{EntryId, NewEntry, Spool, SpoolError};

use crate::drops::DropReporter;
use crate::metrics::Metrics;

/// Appends to the spool and accounts for it; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    spool: Spool,
    drops: DropReporter,
    metrics: Arc<Metrics>,
    warned_full: Arc<AtomicBool>,
}

impl Ingest {
    /// The way into `spool`; losses are counted by `drops`.
    pub fn new(spool: Spool, drops: DropReporter, metrics: Arc<Metrics>) -> Self {
        Ingest {
            spool,
            drops,
            metrics,
            warned_full: Arc::default(),
        }
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Where the agent's own losses are counted.
    pub fn drops(&self) -> &DropReporter {
        &self.drops
    }

    /// The agent's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Makes `entries` durable (together). Under the backpressure policy
    /// this waits for room; under drop_oldest older batches may go (and are
    /// reported from the spool's drop ledger).
    pub async fn append(&self, entries: Vec<NewEntry>) -> Result<Vec<EntryId>, SpoolError> {
        let records: u64 = entries.iter().map(|e| u64::from(e.records)).sum();
        let appended = self.spool.append(entries).await?;
        let dropped = appended.dropped;
        if dropped.entries > 0 {
            if !self.warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    batches = dropped.entries,
                    records = dropped.records,
                    "the spool is full: dropping the oldest batches (each is reported to the control plane with its session and sequence numbers)"
                );
            }
            self.metrics
                .dropped(DropReason::SpoolFull, dropped.records, dropped.entries);
        }
        self.metrics.records_accepted.inc_by(records);
        Ok(appended.ids)
    }
}
