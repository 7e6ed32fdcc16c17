//! Every decision becomes an audit record for the agent (through
//! `warden-client`) and a line on stderr.
//!
//! The record path never waits: `Auditor::try_record` queues or, when the
//! queue is full, drops and counts (the sequence number is used up, so the
//! control plane sees the gap, and the client reports the drop). The stderr
//! line follows the reference implementation: `DENY` at warn, `ALLOW` at
//! info, with method, URL and host (and the rule or the reason).

use std::sync::atomic::{AtomicU64, Ordering};

use warden_client::{Auditor, Record, RecordError};

use crate::policy::Verdict;

/// The `tracing` target of the per-decision lines.
pub const DECISION_TARGET: &str = "warden_boundary::decision";

/// URLs longer than this are cut in records (a record must fit in one
/// 32 KiB frame); the stderr line shows them whole.
const MAX_RECORDED_URL: usize = 16 * 1024;

/// Where decisions go.
#[derive(Debug)]
pub struct Audit {
    auditor: Option<Auditor>,
    decisions: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
}

/// What the audit path did over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditCounts {
    /// Decisions made.
    pub decisions: u64,
    /// Records dropped because the client's queue was full.
    pub dropped: u64,
    /// Records the client refused (too large to send).
    pub refused: u64,
}

impl Audit {
    /// Records go to `auditor`; `None` logs locally only.
    pub fn new(auditor: Option<Auditor>) -> Audit {
        Audit {
            auditor,
            decisions: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The auditor, if records are forwarded.
    pub fn auditor(&self) -> Option<&Auditor> {
        self.auditor.as_ref()
    }

    /// Logs and records one decision. Never waits.
    pub fn decision(&self, method: &str, url: &str, host: &str, verdict: &Verdict) {
        self.decisions.fetch_add(1, Ordering::Relaxed);
        let record = match verdict {
            Verdict::Allow(rule) => {
                tracing::info!(target: DECISION_TARGET, method, url, host, rule = rule.text(), "ALLOW");
                Record::allow(method, recorded_url(url), rule.text())
            }
            Verdict::Deny(denial) => {
                let reason = denial.to_string();
                tracing::warn!(target: DECISION_TARGET, method, url, host, reason, "DENY");
                let record = Record::deny(method, recorded_url(url));
                match denial.recorded_rule() {
                    Some(rule) => record.with_rule(rule),
                    None => record,
                }
            }
        };
        let Some(auditor) = &self.auditor else {
            return;
        };
        match auditor.try_record(record) {
            Ok(_) => {}
            Err(error) if error.is_drop() => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(RecordError::Closed) => {}
            Err(error) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, url, "audit record refused by the client");
            }
        }
    }

    /// Counts so far.
    pub fn counts(&self) -> AuditCounts {
        AuditCounts {
            decisions: self.decisions.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

fn recorded_url(url: &str) -> String {
    if url.len() <= MAX_RECORDED_URL {
        return url.to_owned();
    }
    let mut end = MAX_RECORDED_URL;
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...(truncated)", &url[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_urls_are_cut_on_a_character_boundary() {
        let url = format!("https://a.io/{}", "é".repeat(MAX_RECORDED_URL));
        let cut = recorded_url(&url);
        assert!(cut.len() <= MAX_RECORDED_URL + 20);
        assert!(cut.ends_with("...(truncated)"));
        assert_eq!(recorded_url("https://a.io/"), "https://a.io/");
    }
}
