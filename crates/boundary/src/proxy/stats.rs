//! Counters of what the tunnels carried and how (tests prove the splice
//! path with them; nothing in them is secret).

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::relay::Carried;

/// What the proxy's tunnels carried so far (tunnels count when they close).
#[derive(Debug)]
pub struct TunnelStats {
    /// Tunnels closed cleanly (a watch, so that one can wait for them).
    closed: watch::Sender<u64>,
    bytes: AtomicU64,
    spliced: AtomicU64,
}

impl Default for TunnelStats {
    fn default() -> Self {
        TunnelStats {
            closed: watch::Sender::new(0),
            bytes: AtomicU64::new(0),
            spliced: AtomicU64::new(0),
        }
    }
}

/// A snapshot of [`TunnelStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelCounts {
    /// Tunnels that ended cleanly (both directions closed).
    pub closed: u64,
    /// Bytes they carried, both ways.
    pub bytes: u64,
    /// Of those, bytes moved by splice(2) without passing through the
    /// proxy's memory.
    pub spliced: u64,
}

impl TunnelStats {
    pub(crate) fn tunnel_closed(&self, carried: &Carried) {
        self.bytes
            .fetch_add(carried.up + carried.down, Ordering::Relaxed);
        self.spliced.fetch_add(carried.spliced, Ordering::Relaxed);
        // Last: whoever waits for the count sees the bytes too.
        self.closed.send_modify(|closed| *closed += 1);
    }

    /// Waits until `count` tunnels have closed cleanly.
    pub async fn closed(&self, count: u64) {
        let _ = self
            .closed
            .subscribe()
            .wait_for(|closed| *closed >= count)
            .await;
    }

    /// The counts so far.
    pub fn counts(&self) -> TunnelCounts {
        TunnelCounts {
            closed: *self.closed.borrow(),
            bytes: self.bytes.load(Ordering::Relaxed),
            spliced: self.spliced.load(Ordering::Relaxed),
        }
    }
}
