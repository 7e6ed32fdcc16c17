//! State the caller-facing handles and the background task share: the
//! session, its sequence numbers and the drop counters. Everything here is
//! lock-free; the handles never wait on the background task.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::sequence::Sequencer;
use crate::summary::DropCounts;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) session_id: Uuid,
    pub(crate) sequencer: Sequencer,
    /// Largest encoded record (with the largest sequence number) a frame holds.
    pub(crate) max_record_len: usize,
    queue_full: AtomicU64,
    queue_timeout: AtomicU64,
    rejected: AtomicU64,
    /// How many distinct records were written to a socket so far (the size
    /// of the summary's `sent` set, kept live for [`Auditor::sent`]).
    ///
    /// [`Auditor::sent`]: crate::Auditor::sent
    sent: AtomicU64,
    /// Wakes a closing background task that waits for the last numbered
    /// record to be either received or counted as dropped.
    pub(crate) drop_counted: Notify,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum DropReason {
    QueueFull,
    QueueTimeout,
}

impl Shared {
    pub(crate) fn new(session_id: Uuid, sequencer: Sequencer, max_record_len: usize) -> Shared {
        Shared {
            session_id,
            sequencer,
            max_record_len,
            queue_full: AtomicU64::new(0),
            queue_timeout: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            drop_counted: Notify::new(),
        }
    }

    pub(crate) fn count_drop(&self, reason: DropReason) {
        let counter = match reason {
            DropReason::QueueFull => &self.queue_full,
            DropReason::QueueTimeout => &self.queue_timeout,
        };
        counter.fetch_add(1, Ordering::AcqRel);
        self.drop_counted.notify_one();
    }

    pub(crate) fn count_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops so far (totals, not deltas).
    pub(crate) fn drops(&self) -> DropCounts {
        DropCounts {
            queue_full: self.queue_full.load(Ordering::Acquire),
            queue_timeout: self.queue_timeout.load(Ordering::Acquire),
        }
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub(crate) fn set_sent(&self, records: u64) {
        self.sent.store(records, Ordering::Release);
    }

    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }
}
