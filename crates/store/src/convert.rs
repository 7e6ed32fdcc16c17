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

pub(crate) fn event_time(secs: Option<i64>, nanos: Option<i64>) -> EventTime {
    match (secs, nanos) {
        (Some(seconds), Some(nanos)) => EventTime::from_wire(Some(&wire::Timestamp {
            seconds,
            nanos: i32::try_from(nanos).unwrap_or(i32::MAX),
        })),
        _ => EventTime::Missing,
    }
}

/// Counters are u64 in the domain and i64 in the databases.
pub(crate) fn count_to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn count_from_sql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
