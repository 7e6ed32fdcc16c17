//! The one way into the spool: appends entries (resolving once they are
//! fsynced), and counts what the spool's drop_oldest policy threw away to
//! make room, so that every such loss reaches the control plane.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use warden_spool::{EntryId, NewEntry, Spool, SpoolError};

use crate::drops::{DropReporter, reason};
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
    pub fn new(spool: Spool, drops: DropReporter, metrics: Arc<Metrics>) -> Self {
        Ingest {
            spool,
            drops,
            metrics,
            warned_full: Arc::default(),
        }
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    pub fn drops(&self) -> &DropReporter {
        &self.drops
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Makes `entries` durable (together). Under the backpressure policy
    /// this waits for room; under drop_oldest it counts what was dropped.
    pub async fn append(&self, entries: Vec<NewEntry>) -> Result<Vec<EntryId>, SpoolError> {
        let records: u64 = entries.iter().map(|e| u64::from(e.records)).sum();
        let appended = self.spool.append(entries).await?;
        let dropped = appended.dropped;
        if dropped.entries > 0 {
            if !self.warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    batches = dropped.entries,
                    records = dropped.records,
                    "the spool is full: dropping the oldest batches (reported to the control plane)"
                );
            }
            self.drops
                .record(None, reason::SPOOL_FULL, dropped.records, dropped.entries);
        }
        self.metrics.records_accepted.inc_by(records);
        Ok(appended.ids)
    }
}
