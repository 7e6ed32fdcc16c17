//! The memory all connections together may hold in large frames.
//!
//! A frame of at most [`SMALL_FRAME`] payload bytes (every tag-1 and tag-2
//! frame) is read into its connection's buffer as it arrives; a connection
//! holds at most one such partial frame. A larger one (a tag-0 frame, up to
//! 1 MiB) must first get its declared length from this budget, waiting in
//! line when it is used up (backpressure: the connection is simply not read
//! meanwhile, nothing is dropped), and keeps it until the frame is settled
//! (spooled, refused, or lost with its connection). So partial and queued
//! large frames together never hold more than the budget, however many
//! clients announce a 1 MiB frame and then send nothing, and the buffer of a
//! frame grows only as its bytes arrive.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest payload read without asking the budget: the maximum of tag-1,
/// tag-2 and extension frames.
pub const SMALL_FRAME: usize = warden_proto::codec::MAX_PAYLOAD;

/// Default budget: 64 MiB.
pub const DEFAULT_FRAME_MEMORY: u64 = 64 << 20;

/// The shared budget; cheap to clone.
#[derive(Clone, Debug)]
pub struct FrameBudget {
    permits: Arc<Semaphore>,
    /// Bytes granted to frames now (the semaphore's free count also leaves
    /// out bytes set aside for a waiting frame before it is granted).
    held: Arc<AtomicU64>,
    total: usize,
}

/// Bytes of the budget a frame holds; given back when dropped.
#[derive(Debug)]
pub struct Charge(Option<(OwnedSemaphorePermit, Arc<AtomicU64>)>);

impl Charge {
    /// No charge (a small frame).
    pub fn none() -> Self {
        Charge(None)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some((permit, held)) = self.0.take() {
            held.fetch_sub(permit.num_permits() as u64, Ordering::Relaxed);
        }
    }
}

impl FrameBudget {
    /// A budget of `bytes` (at least one largest frame, at most what a
    /// semaphore holds).
    pub fn new(bytes: u64) -> Self {
        let total = usize::try_from(bytes).unwrap_or(usize::MAX).clamp(
            warden_proto::codec::MAX_LEGACY_PAYLOAD,
            Semaphore::MAX_PERMITS,
        );
        FrameBudget {
            permits: Arc::new(Semaphore::new(total)),
            held: Arc::default(),
            total,
        }
    }

    /// Waits (in line) until `bytes` of the budget are free and takes them.
    pub async fn take(&self, bytes: usize) -> Charge {
        let bytes = u32::try_from(bytes.min(self.total)).unwrap_or(u32::MAX);
        match self.permits.clone().acquire_many_owned(bytes).await {
            Ok(permit) => {
                self.held.fetch_add(u64::from(bytes), Ordering::Relaxed);
                Charge(Some((permit, self.held.clone())))
            }
            // Never closed; no charge rather than no progress.
            Err(_) => Charge(None),
        }
    }

    /// Bytes held by frames now.
    pub fn in_use(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// The budget's size.
    pub fn total(&self) -> u64 {
        self.total as u64
    }
}
