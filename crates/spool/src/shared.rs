//! State shared between the [`crate::Spool`] handles and the writer thread.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::config::SpoolConfig;
use crate::index::Index;
use crate::room::Room;
use crate::{Dropped, SpoolStats};

pub(crate) struct Shared {
    pub config: SpoolConfig,
    pub state: Mutex<State>,
    pub room: Room,
    /// Woken after every writer cycle that changed something (new durable
    /// entries, acknowledgements, drops, close). Readers, drain waiters and
    /// dropping appenders wait on it.
    pub events: Notify,
}

pub(crate) struct State {
    pub index: Index,
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
            disk_bytes: state.index.disk_bytes(),
            blocked_appends: self.room.blocked(),
        }
    }
}
