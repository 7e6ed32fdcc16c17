//! Turning domain values into column values and back, the same way for
//! every backend: control-plane times as Unix nanoseconds, times a client or
//! agent sent as a raw (seconds, nanoseconds) pair, counters as `i64`.

use jiff::Timestamp;
use uuid::Uuid;
use warden_proto::domain::EventTime;
use warden_proto::wire;

use crate::StoreError;

/// A time as Unix nanoseconds. A server clock is always within the ±292
/// years that fit; anything else is clamped to the nearest edge.
pub(crate) fn nanos(t: Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(if t.as_second() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

pub(crate) fn from_nanos(n: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_nanosecond(i128::from(n))
        .map_err(|_| StoreError::Corrupt(format!("timestamp {n} ns is out of range")))
}

pub(crate) fn opt_from_nanos(n: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    n.map(from_nanos).transpose()
}

pub(crate) fn uuid(bytes: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes)
        .map_err(|_| StoreError::Corrupt(format!("{} bytes are not a uuid", bytes.len())))
}

/// An event time as (seconds, nanoseconds) columns; out-of-range values are
/// kept raw because a record is evidence.
pub(crate) fn event_parts(t: EventTime) -> (Option<i64>, Option<i32>) {
    match t {
        EventTime::Known(ts) => (Some(ts.as_second()), Some(ts.subsec_nanosecond())),
        EventTime::Missing => (None, None),
        EventTime::OutOfRange { seconds, nanos } => (Some(seconds), Some(nanos)),
    }
}

/// [`event_parts`] with both columns as `i64` (SQLite's integers).
pub(crate) fn event_columns(t: EventTime) -> (Option<i64>, Option<i64>) {
    let (secs, nanos) = event_parts(t);
    (secs, nanos.map(i64::from))
}

pub(crate) fn event_time(secs: Option<i64>, nanos: Option<i64>) -> EventTime {
    match (secs, nanos) {
        (Some(seconds), Some(nanos)) => EventTime::from_wire(Some(&wire::Timestamp {
            seconds,
            nanos: i32::try_from(nanos).unwrap_or(i32::MAX),
        })),
        _ => EventTime::Missing,
    }
}

/// A receive time the agent sent (validated to years 1..=9999).
pub(crate) fn received_at(secs: i64, nanos: i64) -> Result<Timestamp, StoreError> {
    i32::try_from(nanos)
        .ok()
        .and_then(|nanos| Timestamp::new(secs, nanos).ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!("receive time {secs}s {nanos}ns is out of range"))
        })
}

/// A record's effective time (its event time, or its receive time when it
/// has none usable) as Unix nanoseconds, clamped to what an `i64` holds
/// (years 1677..=2262). Clamping keeps the order, so comparisons against a
/// bound inside that range stay exact.
pub(crate) fn occurred_nanos(event: EventTime, received: Timestamp) -> i64 {
    nanos(event.known().unwrap_or(received))
}

/// Counters are u64 in the domain and i64 in the databases.
pub(crate) fn count_to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn count_from_sql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
