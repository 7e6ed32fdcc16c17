//! Coder's released session-log read API, served beside `/api/v1` so that
//! scripts written against Coder keep working:
//! `GET /api/v2/agent-firewall/sessions/{id}/logs?seq_after=&seq_before=&limit=`.
//! Bounds are exclusive, rows come in ascending sequence order, 100 by
//! default; the rows carry the reference's field names.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::records::{DEFAULT_LIMIT, MAX_LIMIT, parse_limit};

/// The path prefix.
pub const PREFIX: &str = "/api/v2/agent-firewall";

/// The query string. Values stay text so a bad one is named.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionLogParams {
    /// Only rows with a sequence number above this.
    pub seq_after: Option<String>,
    /// Only rows with a sequence number below this.
    pub seq_before: Option<String>,
    /// At most this many rows (1 to 1000, default 100).
    pub limit: Option<String>,
}

/// [`SessionLogParams`] checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLogQuery {
    /// Exclusive lower bound.
    pub seq_after: Option<i64>,
    /// Exclusive upper bound.
    pub seq_before: Option<i64>,
    /// Rows at most.
    pub limit: u32,
}

impl SessionLogParams {
    /// Checks the values; the error names the parameter.
    pub fn check(&self) -> Result<SessionLogQuery, String> {
        let seq = |name: &str, v: &Option<String>| {
            v.as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| format!("{name} must be a whole number, not {v:?}"))
                })
                .transpose()
        };
        let limit = match self.limit.as_deref().filter(|v| !v.is_empty()) {
            None => DEFAULT_LIMIT,
            Some(v) => parse_limit(Some(v), DEFAULT_LIMIT)?,
        };
        debug_assert!(limit <= MAX_LIMIT);
        Ok(SessionLogQuery {
            seq_after: seq("seq_after", &self.seq_after)?,
            seq_before: seq("seq_before", &self.seq_before)?,
            limit,
        })
    }
}

/// The answer: rows in ascending sequence order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLogs {
    /// The rows.
    pub logs: Vec<SessionLog>,
}

/// One row, with the reference's field names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLog {
    /// The record's number in its session.
    pub sequence_number: i64,
    /// The HTTP method.
    pub method: String,
    /// The URL.
    pub detail: String,
    /// The rule that allowed it (empty for none).
    pub matched_rule: String,
    /// When boundary decided (the receive time when it did not say).
    pub created_at: Timestamp,
    /// When the control plane received it.
    pub captured_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_and_named() {
        let q = SessionLogParams::default().check().unwrap();
        assert_eq!((q.seq_after, q.seq_before, q.limit), (None, None, 100));
        let q = SessionLogParams {
            seq_after: Some("3".into()),
            seq_before: Some("10".into()),
            limit: Some("5".into()),
        }
        .check()
        .unwrap();
        assert_eq!((q.seq_after, q.seq_before, q.limit), (Some(3), Some(10), 5));
        let e = SessionLogParams {
            seq_after: Some("x".into()),
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert!(e.starts_with("seq_after"), "{e}");
        assert!(
            SessionLogParams {
                limit: Some("0".into()),
                ..Default::default()
            }
            .check()
            .is_err()
        );
    }
}
