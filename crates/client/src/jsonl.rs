//! JSON lines to records: the library side of `warden emit`.
//!
//! Each line is `{"allowed": bool, "method": "GET", "url": "https://...",
//! "rule": "...", "time": "RFC 3339"}` with `rule` and `time` optional.
//! A line that is not such an object is reported with its line number and
//! skipped; blank lines are ignored. At EOF the auditor is closed (drained
//! within its deadline) and the report says what happened.

use std::fmt;
use std::io::Write;

use jiff::Timestamp;
use serde::Deserialize;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use warden_proto::domain::{Decision, timestamp_from_wire, timestamp_to_wire};

use crate::auditor::Auditor;
use crate::config::{Config, Overflow};
use crate::error::{CloseError, RecordError};
use crate::record::Record;
use crate::summary::{AckMode, Summary};

/// Longest line read; a record must fit in a 32 KiB frame anyway, this
/// leaves room for JSON escaping.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One input line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    allowed: bool,
    method: String,
    url: String,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    time: Option<Timestamp>,
}

/// What `warden emit` did.
#[derive(Clone, Debug)]
pub struct EmitReport {
    /// Lines read, blank lines not counted.
    pub read: u64,
    /// Lines skipped as malformed (bad JSON, bad fields, too long, or a
    /// record the client refused).
    pub malformed: u64,
    /// Reading the input failed; the lines before the failure were sent.
    pub read_error: Option<String>,
    /// What became of the records sent.
    pub summary: Summary,
}

impl EmitReport {
    /// Every line was valid and every record delivered (confirmed when the
    /// agent acknowledges, written otherwise).
    pub fn success(&self) -> bool {
        self.malformed == 0 && self.read_error.is_none() && self.summary.is_complete()
    }
}

impl fmt::Display for EmitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        write!(
            f,
            "read {}, malformed {}, sent {}",
            self.read,
            self.malformed,
            s.sent.len()
        )?;
        if s.acknowledgements == AckMode::Confirmed {
            write!(f, ", confirmed {}", s.confirmed.len())?;
        }
        write!(f, ", dropped {}", s.dropped.total())?;
        if s.refused.total() > 0 {
            write!(f, ", refused by the agent {}", s.refused.total())?;
        }
        write!(f, ", undelivered {}", s.undelivered)?;
        write!(f, "; acknowledgements {}", s.acknowledgements.as_str())?;
        if s.deadline_expired {
            f.write_str("; drain deadline passed")?;
        }
        Ok(())
    }
}

/// The auditor settings `warden emit` starts from: block mode (a bulk
/// producer must never lose records to its own queue), batches as large as
/// a frame holds, and a one-second interval for slow input.
pub fn config(socket_path: impl Into<std::path::PathBuf>) -> Config {
    let mut config = Config::new(socket_path);
    config.overflow = Overflow::Block { timeout: None };
    config.batch_max_records = 1000;
    config.buffer_records = 20_000;
    config.batch_interval = std::time::Duration::from_secs(1);
    config
}

/// Reads JSON lines from `input` into `auditor` until EOF, reporting bad
/// lines on `diagnostics`, then closes the auditor and reports.
pub async fn emit<R, W>(
    mut input: R,
    auditor: Auditor,
    diagnostics: &mut W,
) -> Result<EmitReport, CloseError>
where
    R: AsyncBufRead + Unpin,
    W: Write,
{
    let mut read = 0u64;
    let mut malformed = 0u64;
    let mut read_error = None;
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        let status = match read_line(&mut input, &mut line, MAX_LINE_BYTES).await {
            Ok(Some(status)) => status,
            Ok(None) => break,
            Err(error) => {
                read_error = Some(error.to_string());
                break;
            }
        };
        number += 1;
        if status == LineStatus::Complete && line.trim_ascii().is_empty() {
            continue;
        }
        read += 1;
        let record = match status {
            LineStatus::TooLong => Err(format!("longer than {MAX_LINE_BYTES} bytes")),
            LineStatus::Complete => parse_line(&line),
        };
        let record = match record {
            Ok(record) => record,
            Err(reason) => {
                malformed += 1;
                write_diagnostic(diagnostics, number, &reason);
                continue;
            }
        };
        match auditor.record(record).await {
            Ok(_) => {}
            Err(error @ (RecordError::TooLarge { .. } | RecordError::NoRequest)) => {
                malformed += 1;
                write_diagnostic(diagnostics, number, &error.to_string());
            }
            // Counted in the summary.
            Err(error @ (RecordError::QueueFull { .. } | RecordError::QueueTimeout { .. })) => {
                write_diagnostic(diagnostics, number, &error.to_string());
            }
            Err(error @ (RecordError::Closed | RecordError::SequenceExhausted)) => {
                write_diagnostic(diagnostics, number, &format!("{error}; stopped reading"));
                break;
            }
        }
    }
    let summary = auditor.close().await?;
    Ok(EmitReport {
        read,
        malformed,
        read_error,
        summary,
    })
}

/// Parses one input line (without its line end) into a record, or says
/// why it is not one.
pub fn parse_line(line: &[u8]) -> Result<Record, String> {
    let line: Line =
        serde_json::from_slice(line).map_err(|e| format!("not a valid record: {e}"))?;
    if let Some(time) = line.time {
        // The agent would flag such a time as out of range; say so here.
        if timestamp_from_wire(&timestamp_to_wire(time)).is_none() {
            return Err(format!("time {time} is outside years 0001 to 9999"));
        }
    }
    Ok(Record {
        decision: Decision::from_allowed(line.allowed),
        method: line.method,
        url: line.url,
        matched_rule: line.rule,
        time: line.time,
    })
}

/// Writes `line N: reason` as one line, with control characters escaped so
/// that input cannot forge other diagnostic lines.
pub fn write_diagnostic(diagnostics: &mut impl Write, number: u64, reason: &str) {
    let reason: String = reason
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    // Diagnostics are best effort; a closed stderr must not stop the data.
    let _ = writeln!(diagnostics, "line {number}: {reason}");
}

/// What [`read_line`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineStatus {
    /// A whole line, now in the buffer.
    Complete,
    /// Longer than the limit; its bytes were read and discarded.
    TooLong,
}

/// Reads one line (without its `\n` or `\r\n`) into `buf`, keeping at most
/// `max` bytes in memory. `None` at EOF.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<LineStatus>> {
    buf.clear();
    let mut seen = false;
    let mut too_long = false;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            break;
        }
        seen = true;
        let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        input.consume(used);
        if done {
            break;
        }
    }
    if !seen {
        return Ok(None);
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(if too_long {
        LineStatus::TooLong
    } else {
        LineStatus::Complete
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_bounded_and_stripped() {
        let input = b"a\r\nbb\n\ncccccc\ndd".as_slice();
        let mut reader = tokio::io::BufReader::with_capacity(2, input);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(status) = read_line(&mut reader, &mut buf, 4).await.unwrap() {
            got.push((status, String::from_utf8(buf.clone()).unwrap()));
        }
        assert_eq!(
            got,
            vec![
                (LineStatus::Complete, "a".into()),
                (LineStatus::Complete, "bb".into()),
                (LineStatus::Complete, "".into()),
                (LineStatus::TooLong, "".into()),
                (LineStatus::Complete, "dd".into()),
            ]
        );
    }

    #[test]
    fn a_line_becomes_a_record() {
        let r = parse_line(br#"{"allowed": true, "method": "GET", "url": "https://a.io", "rule": "domain=a.io", "time": "2025-12-08T20:58:46.093456789Z"}"#).unwrap();
        assert_eq!(r.decision, Decision::Allow);
        assert_eq!(r.matched_rule.as_deref(), Some("domain=a.io"));
        assert_eq!(
            r.time.unwrap().to_string(),
            "2025-12-08T20:58:46.093456789Z"
        );
        // A rule on a denied record is kept as sent; a missing time stays missing.
        let r = parse_line(br#"{"allowed": false, "method": "POST", "url": "u", "rule": "r"}"#)
            .unwrap();
        assert_eq!(
            (r.decision, r.matched_rule.as_deref(), r.time),
            (Decision::Deny, Some("r"), None)
        );
        // Offsets are converted to UTC.
        let r = parse_line(br#"{"allowed": false, "method": "GET", "url": "u", "time": "2025-01-01T02:00:00+02:00"}"#).unwrap();
        assert_eq!(r.time.unwrap().to_string(), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn bad_lines_say_why() {
        for (line, why) in [
            (&b"not json"[..], "not a valid record"),
            (br#"{"allowed": "yes", "method": "GET", "url": "u"}"#, "invalid type"),
            (br#"{"allowed": true, "url": "u"}"#, "missing field `method`"),
            (br#"{"allowed": true, "method": "GET", "url": "u", "rul": "x"}"#, "unknown field `rul`"),
            (br#"{"allowed": true, "method": "GET", "url": "u", "time": "yesterday"}"#, "not a valid record"),
            (br#"{"allowed": true, "method": "GET", "url": "u", "time": "2025-01-01T00:00:00"}"#, "not a valid record"),
            (br#"{"allowed": true, "method": "GET", "url": "u", "time": "0000-06-01T00:00:00Z"}"#, "outside years"),
            (b"{\"allowed\": true, \"method\": \"GET\", \"url\": \"\xff\"}", "not a valid record"),
        ] {
            let err = parse_line(line).unwrap_err();
            assert!(err.contains(why), "{err:?} should mention {why:?}");
        }
    }

    #[test]
    fn diagnostics_cannot_forge_lines() {
        let mut out = Vec::new();
        write_diagnostic(&mut out, 7, "unknown field `a\nline 8: forged`");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.starts_with("line 7: "));
        assert!(text.contains("\\n"));
    }
}
