//! The byte bound: room left under `max_bytes`, handed out to appends
//! first-come first-served and given back when segment files are deleted.
//!
//! A tokio semaphore with one permit per byte holds the room. Appends that
//! find too little wait their [`Turn`] in a FIFO queue (a tokio mutex, fair
//! and cancel-safe: an append that gives up leaves the queue), and no append
//! takes room past one that waits: a caller with several appends in flight
//! (the agent pipelines a client's frames) gets its ids in call order, so
//! what `DropOldest` drops is always the oldest of them. A spool reopened
//! with a smaller bound than its content starts in debt: freed bytes pay the
//! debt before they become room.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Semaphore;

use crate::SpoolError;

pub(crate) struct Room {
    permits: Semaphore,
    /// The queue of appends waiting for room; the holder is served first.
    turns: tokio::sync::Mutex<()>,
    debt: Mutex<u64>,
    /// Appends waiting for room now.
    blocked: AtomicU64,
}

impl Room {
    /// Room for a bound of `max` bytes of which `used` are taken.
    pub(crate) fn new(max: u64, used: u64) -> Self {
        Room {
            permits: Semaphore::new(to_usize(max.saturating_sub(used))),
            turns: tokio::sync::Mutex::new(()),
            debt: Mutex::new(used.saturating_sub(max)),
            blocked: AtomicU64::new(0),
        }
    }

    /// Takes `bytes` (at most `u32::MAX`, checked by the caller) if free now.
    pub(crate) fn try_take(&self, bytes: u64) -> bool {
        match self.permits.try_acquire_many(to_u32(bytes)) {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// Takes `bytes` if free now and no append waits for room (taking them
    /// then would overtake it).
    pub(crate) fn try_take_unqueued(&self, bytes: u64) -> bool {
        self.blocked() == 0 && self.try_take(bytes)
    }

    /// Waits until every append that waited for room before the caller was
    /// served; the caller is counted as blocked, and appends after it wait,
    /// until the [`Turn`] is dropped (once its append is in the writer's
    /// queue, so that ids follow the order of the turns).
    pub(crate) async fn turn(&self) -> Turn<'_> {
        let blocked = self.block();
        let queue = self.turns.lock().await;
        Turn {
            _queue: queue,
            _blocked: blocked,
        }
    }

    /// Waits for `bytes`, in arrival order.
    pub(crate) async fn take(&self, bytes: u64) -> Result<(), SpoolError> {
        let permit = self
            .permits
            .acquire_many(to_u32(bytes))
            .await
            .map_err(|_| SpoolError::Closed)?;
        permit.forget();
        Ok(())
    }

    /// Gives back bytes that left the disk (or were never written).
    pub(crate) fn give_back(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut debt = self.debt.lock().expect("room lock");
        let paid = bytes.min(*debt);
        *debt -= paid;
        drop(debt);
        if bytes > paid {
            self.permits.add_permits(to_usize(bytes - paid));
        }
    }

    /// Takes `bytes` that are already on disk (the drop ledger's records):
    /// what is free now, and the rest as debt that freed bytes pay first.
    pub(crate) fn charge(&self, bytes: u64) {
        let mut left = bytes;
        while left > 0 {
            let now = left
                .min(self.permits.available_permits() as u64)
                .min(u64::from(u32::MAX));
            if now == 0 {
                break;
            }
            // Another taker may get there first: then look again.
            if let Ok(permit) = self.permits.try_acquire_many(to_u32(now)) {
                permit.forget();
                left -= now;
            }
        }
        if left > 0 {
            *self.debt.lock().expect("room lock") += left;
        }
    }

    /// Bytes that must still be freed before `bytes` fit.
    pub(crate) fn shortfall(&self, bytes: u64) -> u64 {
        let debt = *self.debt.lock().expect("room lock");
        (bytes + debt).saturating_sub(self.permits.available_permits() as u64)
    }

    /// Marks the caller as waiting for room until the guard is dropped.
    pub(crate) fn block(&self) -> Blocked<'_> {
        self.blocked.fetch_add(1, Ordering::SeqCst);
        Blocked(self)
    }

    pub(crate) fn blocked(&self) -> u64 {
        self.blocked.load(Ordering::SeqCst)
    }

    /// Fails every current and future wait with [`SpoolError::Closed`].
    pub(crate) fn close(&self) {
        self.permits.close();
    }
}

pub(crate) struct Blocked<'a>(&'a Room);

/// An append's turn to take room: see [`Room::turn`].
pub(crate) struct Turn<'a> {
    _queue: tokio::sync::MutexGuard<'a, ()>,
    _blocked: Blocked<'a>,
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.blocked.fetch_sub(1, Ordering::SeqCst);
    }
}

fn to_usize(bytes: u64) -> usize {
    // The configuration caps max_bytes at what a semaphore can hold.
    usize::try_from(bytes).expect("max_bytes fits a semaphore")
}

fn to_u32(bytes: u64) -> u32 {
    u32::try_from(bytes).expect("append size checked at admission")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_taken_and_given_back() {
        let room = Room::new(100, 30);
        assert!(room.try_take(70));
        assert!(!room.try_take(1));
        assert_eq!(room.shortfall(10), 10);
        room.give_back(25);
        assert_eq!(room.shortfall(10), 0);
        assert!(room.try_take(25));
    }

    #[test]
    fn freed_bytes_pay_the_debt_first() {
        let room = Room::new(100, 150);
        assert_eq!(room.shortfall(10), 60);
        room.give_back(40);
        assert!(!room.try_take(1), "still 10 bytes in debt");
        room.give_back(30);
        assert!(room.try_take(20));
        assert!(!room.try_take(1));
    }

    #[test]
    fn debt_is_paid_by_the_next_bytes_freed() {
        let room = Room::new(100, 100);
        room.charge(30);
        room.give_back(50);
        assert!(room.try_take(20));
        assert!(!room.try_take(1));
    }

    #[test]
    fn charged_bytes_take_room_or_become_debt() {
        let room = Room::new(100, 0);
        room.charge(30);
        assert_eq!(room.shortfall(70), 0);
        assert_eq!(room.shortfall(71), 1);
        room.charge(80);
        assert_eq!(room.shortfall(0), 10, "10 bytes of debt");
        room.give_back(15);
        assert!(room.try_take(5));
        assert!(!room.try_take(1));
    }

    #[tokio::test]
    async fn close_fails_waiters() {
        let room = Room::new(10, 10);
        let (taken, ()) = tokio::join!(room.take(5), async { room.close() });
        assert!(matches!(taken, Err(SpoolError::Closed)));
    }

    #[test]
    fn blocked_counts_guards() {
        let room = Room::new(10, 0);
        let a = room.block();
        let b = room.block();
        assert_eq!(room.blocked(), 2);
        drop(a);
        drop(b);
        assert_eq!(room.blocked(), 0);
    }
}
