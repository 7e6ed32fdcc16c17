//! Turning domain values into SQLite column values and back.

use jiff::Timestamp;
use uuid::Uuid;
use warden_proto::domain::EventTime;
use warden_proto::wire;

use crate::StoreError;

/// A time the control plane stamps itself, as Unix nanoseconds (a server
/// clock is always within the ±292 years that fit).
pub(super) fn nanos(t: Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(if t.as_second() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

pub(super) fn from_nanos(n: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_nanosecond(i128::from(n))
        .map_err(|_| StoreError::Corrupt(format!("timestamp {n} ns is out of range")))
}

pub(super) fn opt_from_nanos(n: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    n.map(from_nanos).transpose()
}

pub(super) fn uuid(bytes: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes)
        .map_err(|_| StoreError::Corrupt(format!("{} bytes are not a uuid", bytes.len())))
}

/// An event time as (seconds, nanoseconds) columns; out-of-range values are
/// kept raw because a record is evidence.
pub(super) fn event_columns(t: EventTime) -> (Option<i64>, Option<i64>) {
    match t {
        EventTime::Known(ts) => (
            Some(ts.as_second()),
            Some(i64::from(ts.subsec_nanosecond())),
        ),
        EventTime::Missing => (None, None),
        EventTime::OutOfRange { seconds, nanos } => (Some(seconds), Some(i64::from(nanos))),
    }
}

pub(super) fn event_time(secs: Option<i64>, nanos: Option<i64>) -> EventTime {
    match (secs, nanos) {
        (Some(seconds), Some(nanos)) => EventTime::from_wire(Some(&wire::Timestamp {
            seconds,
            nanos: i32::try_from(nanos).unwrap_or(i32::MAX),
        })),
        _ => EventTime::Missing,
    }
}

/// A receive time the agent sent (validated to years 1..=9999).
pub(super) fn received_at(secs: i64, nanos: i64) -> Result<Timestamp, StoreError> {
    i32::try_from(nanos)
        .ok()
        .and_then(|nanos| Timestamp::new(secs, nanos).ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!("receive time {secs}s {nanos}ns is out of range"))
        })
}

/// Counters are u64 in the domain and i64 in SQLite.
pub(super) fn count_to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn count_from_sql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
