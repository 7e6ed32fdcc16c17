//! The record a sandbox hands over, and its wire form with its exact
//! encoded size (computed once, on the caller's thread, so the background
//! task can batch by size with additions only).

use jiff::Timestamp;
use prost::Message;
use prost::encoding::encoded_len_varint;
use warden_proto::domain::timestamp_to_wire;
use warden_proto::wire::{BoundaryLog, boundary_log};

pub use warden_proto::domain::Decision;

use crate::error::RecordError;

/// One allow/deny decision of the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Allowed or denied.
    pub decision: Decision,
    /// The HTTP method, e.g. `GET`.
    pub method: String,
    /// The fully qualified URL.
    pub url: String,
    /// The allow rule that matched; normally set only when allowed, but kept
    /// as given either way.
    pub matched_rule: Option<String>,
    /// When the decision was made; `None` is sent as "unknown" (the control
    /// plane then uses its receive time), never as the Unix epoch.
    pub time: Option<Timestamp>,
}

impl Record {
    /// A decision made now, without a rule.
    pub fn new(decision: Decision, method: impl Into<String>, url: impl Into<String>) -> Record {
        Record {
            decision,
            method: method.into(),
            url: url.into(),
            matched_rule: None,
            time: Some(Timestamp::now()),
        }
    }

    /// A request allowed now by `rule`.
    pub fn allow(
        method: impl Into<String>,
        url: impl Into<String>,
        rule: impl Into<String>,
    ) -> Record {
        Record::new(Decision::Allow, method, url).with_rule(rule)
    }

    /// A request denied now.
    pub fn deny(method: impl Into<String>, url: impl Into<String>) -> Record {
        Record::new(Decision::Deny, method, url)
    }

    /// The rule that matched (kept as given, also on a denied record).
    pub fn with_rule(mut self, rule: impl Into<String>) -> Record {
        self.matched_rule = Some(rule.into());
        self
    }

    /// Replaces the decision time (`None`: unknown).
    pub fn with_time(mut self, time: Option<Timestamp>) -> Record {
        self.time = time;
        self
    }
}

/// Bytes the `sequence_number` field takes at most (tag and a 5-byte varint).
pub(crate) const MAX_SEQUENCE_FIELD_LEN: usize = 1 + 5;

/// A validated record in wire form, before it has a sequence number.
#[derive(Debug)]
pub(crate) struct Encoded {
    log: BoundaryLog,
    /// Encoded size with sequence number 0 (which proto3 leaves out).
    base_len: usize,
}

impl Encoded {
    /// Refuses a record the agent would count and skip: one that carries no
    /// request at all (the same rule as `warden_proto::domain`).
    pub(crate) fn new(record: Record) -> Result<Encoded, RecordError> {
        let rule = record.matched_rule.unwrap_or_default();
        if record.method.is_empty() && record.url.is_empty() && rule.is_empty() {
            return Err(RecordError::NoRequest);
        }
        let log = BoundaryLog {
            allowed: record.decision.is_allowed(),
            time: record.time.map(timestamp_to_wire),
            resource: Some(boundary_log::Resource::HttpRequest(
                boundary_log::HttpRequest {
                    method: record.method,
                    url: record.url,
                    matched_rule: rule,
                },
            )),
            sequence_number: 0,
        };
        let base_len = log.encoded_len();
        Ok(Encoded { log, base_len })
    }

    /// The size with the largest possible sequence number: what must fit.
    pub(crate) fn worst_case_len(&self) -> usize {
        self.base_len + MAX_SEQUENCE_FIELD_LEN
    }

    pub(crate) fn with_sequence(mut self, seq: i32) -> Queued {
        self.log.sequence_number = seq;
        Queued {
            log: self.log,
            len: self.base_len + sequence_field_len(seq),
        }
    }
}

/// A record on its way to the background task, numbered and sized.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) log: BoundaryLog,
    /// Exact encoded size of `log`.
    pub(crate) len: usize,
}

/// Bytes the `sequence_number` field takes (none for 0, proto3's default).
fn sequence_field_len(seq: i32) -> usize {
    if seq == 0 {
        0
    } else {
        // int32 is encoded as a sign-extended 64-bit varint.
        1 + encoded_len_varint(i64::from(seq) as u64)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_record_without_any_request_is_refused() {
        let empty = Record::new(Decision::Deny, "", "");
        assert!(matches!(Encoded::new(empty), Err(RecordError::NoRequest)));
        // A rule alone is still something the agent keeps.
        let rule_only = Record::new(Decision::Allow, "", "").with_rule("r");
        assert!(Encoded::new(rule_only).is_ok());
    }

    #[test]
    fn a_missing_time_stays_missing() {
        let q = Encoded::new(Record::deny("GET", "https://a.io").with_time(None))
            .unwrap()
            .with_sequence(3);
        assert_eq!(q.log.time, None);
        assert_eq!(q.log.sequence_number, 3);
    }

    proptest! {
        #[test]
        fn sizes_are_exact(
            seq in prop_oneof![Just(0i32), Just(i32::MAX), 0i32..=i32::MAX],
            method in ".{0,12}",
            url in ".{1,300}",
            rule in proptest::option::of(".{0,40}"),
            allowed: bool,
            time in proptest::option::of(-62_135_596_800i64..253_402_207_999),
        ) {
            let record = Record {
                decision: Decision::from_allowed(allowed),
                method,
                url,
                matched_rule: rule,
                time: time.map(|s| Timestamp::from_second(s).unwrap()),
            };
            let encoded = Encoded::new(record).unwrap();
            let worst = encoded.worst_case_len();
            let queued = encoded.with_sequence(seq);
            prop_assert_eq!(queued.len, queued.log.encoded_len());
            prop_assert!(queued.len <= worst);
        }
    }
}
