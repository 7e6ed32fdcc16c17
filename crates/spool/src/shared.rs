//! State shared between the [`crate::Spool`] handles and the writer thread.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::config::SpoolConfig;
use crate::index::Index;
use crate::ledger::Ledger;
use crate::room::Room;
use crate::{Dropped, SpoolStats};

/// The spool's state, one per open spool.
pub(crate) struct Shared {
    pub config: SpoolConfig,
    pub state: Mutex<State>,
    pub room: Room,
    /// Woken after every writer cycle that changed something (new durable
    /// entries, acknowledgements, drops, close). Readers, drain waiters and
    /// dropping appenders wait on it.
    pub events: Notify,
    /// Woken when the drop ledger shrank (settled drops compacted away):
    /// appends that found it full may drop again.
    pub ledger_shrank: Notify,
}

/// What the writer changes and readers look at, under one lock.
pub(crate) struct State {
    pub index: Index,
    /// Drops not settled yet.
    pub ledger: Ledger,
    /// Length of the ledger file (counted against the bound).
    pub ledger_bytes: u64,
    /// Entries sent to the writer and not yet committed or failed.
    pub in_flight: u64,
    pub dropped: Dropped,
    pub corrupt_entries: u64,
    pub closed: bool,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this crate; the
        // index is still the best knowledge there is, so keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn stats(&self) -> SpoolStats {
        let state = self.lock();
        let live = state.index.totals();
        SpoolStats {
            bytes: live.bytes,
            entries: live.entries,
            records: live.records,
            dropped: state.dropped,
            corrupt_entries: state.corrupt_entries,
            disk_bytes: state.index.disk_bytes() + state.ledger_bytes,
            dropped_pending: state.ledger.len(),
            blocked_appends: self.room.blocked(),
        }
    }
}
