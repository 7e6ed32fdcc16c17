//! Export sinks' state in the store: a cursor per sink (the highest record
//! id it delivered) and a lease, so that one store instance (replica) at a
//! time exports a sink and another takes over when its holder dies.
//!
//! The protocol, for an exporter of sink `s` with its own holder id `h`:
//! 1. [`claim_export`](crate::Store::claim_export) takes the lease (or renews
//!    it) and returns the cursor; `None` means another live holder has it.
//! 2. Read records with ids above the cursor
//!    ([`records`](crate::Store::records)), send them.
//! 3. [`save_export_cursor`](crate::Store::save_export_cursor) moves the
//!    cursor (never backwards) and renews the lease, but only while `h`
//!    still holds it: a holder that lost its lease (it stalled past the
//!    expiry and another took over) learns so and stops, so two holders never
//!    both advance one cursor.
//! 4. At shutdown, [`release_export`](crate::Store::release_export) frees the
//!    lease so another replica takes over at once.
//!
//! Records are sent again only between sending and saving the cursor (a
//! crash there), or when a stalled holder's lease expired mid-send.

use std::time::Duration;

use jiff::Timestamp;
use uuid::Uuid;

use crate::model::RecordId;

/// A sink's state as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportState {
    /// The sink's name (what the exporter claims it by).
    pub sink: String,
    /// Every record with an id at or below this was delivered (0: none).
    pub cursor: RecordId,
    /// Who holds (or last held) the lease; `None` when released.
    pub holder: Option<Uuid>,
    /// When the lease ends unless renewed.
    pub lease_expires_at: Option<Timestamp>,
    /// When the cursor or lease last changed.
    pub updated_at: Timestamp,
}

/// The shortest lease a store grants: a shorter one would expire between
/// two renewals of a healthy holder.
pub const MIN_LEASE: Duration = Duration::from_millis(100);

/// `ttl` as whole nanoseconds, at least [`MIN_LEASE`].
pub(crate) fn lease_nanos(ttl: Duration) -> i64 {
    i64::try_from(ttl.max(MIN_LEASE).as_nanos()).unwrap_or(i64::MAX)
}
