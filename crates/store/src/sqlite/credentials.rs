//! Agent credentials kept in memory between agent calls.
//!
//! The agent API checks the token of every call. At a steady 10,000
//! records/s that look-up (a query on a registry read connection, a thread
//! hop each way) was a tenth of the control plane's CPU, for an answer that
//! changes only when a token is rotated or a workspace deleted.
//!
//! Why a cache is exact here: a SQLite database has one writing process (its
//! writer thread hands out record ids), so every change of credentials goes
//! through this store, which forgets what it cached as soon as its write
//! returns. A look-up that started before such a write may still answer
//! with what it read (the call is then ordered before the change, as without
//! the cache), but it cannot put that answer back into the cache: a
//! generation number, moved by every forget, tells it that it is stale.
//! Entries are also read again after [`FRESH_FOR`], in case the file was
//! changed behind the store's back. Unknown agents are never cached, so a
//! new workspace's agent is found at once.
//!
//! The PostgreSQL store does not cache: another replica can rotate a token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::model::AgentCredentials;

/// How long an entry is used before it is read again.
pub(super) const FRESH_FOR: Duration = Duration::from_secs(1);

/// Credentials of the agents that called recently.
#[derive(Debug, Default)]
pub(super) struct CredentialCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Moved by every [`CredentialCache::forget_all`].
    generation: u64,
    entries: HashMap<Uuid, Entry>,
}

#[derive(Debug)]
struct Entry {
    credentials: AgentCredentials,
    read_at: Instant,
}

/// Where the cache stood when a look-up went to the database.
#[derive(Clone, Copy, Debug)]
pub(super) struct ReadStart {
    generation: u64,
    at: Instant,
}

impl CredentialCache {
    /// The cached credentials of `agent`, if read less than [`FRESH_FOR`]
    /// before `now`.
    pub(super) fn get(&self, agent: Uuid, now: Instant) -> Option<AgentCredentials> {
        let state = self.lock();
        let entry = state.entries.get(&agent)?;
        (now.saturating_duration_since(entry.read_at) < FRESH_FOR)
            .then(|| entry.credentials.clone())
    }

    /// To be taken before reading credentials from the database, and handed
    /// to [`put`](CredentialCache::put) with what was read.
    pub(super) fn start_read(&self, now: Instant) -> ReadStart {
        ReadStart {
            generation: self.lock().generation,
            at: now,
        }
    }

    /// Keeps what a look-up read, unless credentials were changed since it
    /// started.
    pub(super) fn put(&self, agent: Uuid, credentials: AgentCredentials, read: ReadStart) {
        let mut state = self.lock();
        if state.generation != read.generation {
            return;
        }
        state.entries.insert(
            agent,
            Entry {
                credentials,
                read_at: read.at,
            },
        );
    }

    /// Forgets every entry, and every look-up in flight; called after any
    /// write that can change an agent's credentials.
    pub(super) fn forget_all(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.entries.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent after every statement: a panic elsewhere
        // cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use warden_proto::domain::Manifest;

    use super::*;
    use crate::model::TokenHash;

    fn credentials(hash: u8) -> AgentCredentials {
        AgentCredentials {
            manifest: Manifest {
                workspace_id: Uuid::from_u128(1),
                workspace_name: "dev".into(),
                owner_name: "alice".into(),
                agent_id: Uuid::from_u128(2),
                agent_name: "main".into(),
                startup_script: String::new(),
            },
            token_hash: TokenHash([hash; 32]),
        }
    }

    #[test]
    fn an_entry_is_served_until_it_is_a_second_old() {
        let cache = CredentialCache::default();
        let agent = Uuid::from_u128(2);
        let t0 = Instant::now();
        assert_eq!(cache.get(agent, t0), None);
        cache.put(agent, credentials(7), cache.start_read(t0));
        assert_eq!(cache.get(agent, t0), Some(credentials(7)));
        let almost = t0 + FRESH_FOR - Duration::from_millis(1);
        assert_eq!(cache.get(agent, almost), Some(credentials(7)));
        assert_eq!(cache.get(agent, t0 + FRESH_FOR), None);
        assert_eq!(cache.get(Uuid::from_u128(3), t0), None);
    }

    #[test]
    fn forgetting_drops_entries_and_what_lookups_in_flight_read() {
        let cache = CredentialCache::default();
        let agent = Uuid::from_u128(2);
        let t0 = Instant::now();
        cache.put(agent, credentials(7), cache.start_read(t0));
        // A look-up starts, the token is rotated, then the look-up returns
        // the old hash it read: it must not be cached.
        let in_flight = cache.start_read(t0);
        cache.forget_all();
        assert_eq!(cache.get(agent, t0), None);
        cache.put(agent, credentials(7), in_flight);
        assert_eq!(cache.get(agent, t0), None);
        // A look-up that started after the change is kept.
        cache.put(agent, credentials(8), cache.start_read(t0));
        assert_eq!(cache.get(agent, t0), Some(credentials(8)));
    }
}
