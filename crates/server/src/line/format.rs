//! The boundary log line of `docs/stderr-format.md`, in its text, JSON and
//! `coder` forms.

use std::cell::RefCell;
use std::fmt::Write;

use jiff::Timestamp;
use serde::Serialize;
use uuid::Uuid;
use warden_api::time::{push_padded, push_stamp, push_utc_date_time, utc_subsec_nanos};
use warden_proto::domain::{AuditRecord, Decision, IngestBatch, Manifest};
use warden_store::StoredRecord;

use super::quote::{ascii_prefix, quote_into};

/// Which form the lines take (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LineFormat {
    /// `[API] 2025-12-08 20:58:46.093 [warn] boundary: ...`
    #[default]
    Text,
    /// One JSON object per line.
    Json,
    /// Coder's control plane's line (cdr.dev/slog's human format):
    /// `2026-01-16 00:11:40.564 [info]  coderd.agentrpc: boundary_request  owner=joe ...`
    Coder,
}

/// What one line shows, borrowed from wherever the record is.
#[derive(Clone, Debug)]
pub struct LineRecord<'a> {
    /// Always the delivering agent's workspace.
    pub workspace_id: Uuid,
    pub workspace_name: &'a str,
    pub workspace_owner: &'a str,
    pub agent_name: &'a str,
    pub decision: Decision,
    pub method: &'a str,
    pub url: &'a str,
    /// `None` when boundary sent no (valid) time.
    pub event_time: Option<Timestamp>,
    pub received_at: Timestamp,
    pub session_id: Option<&'a str>,
    pub sequence_number: i32,
    pub matched_rule: &'a str,
    pub process: &'a str,
    /// The URL's length as sent when `url` holds only its first bytes.
    pub url_original_bytes: Option<u64>,
    /// The agent's id of the batch that carried the record (the `coder`
    /// format's `request_id`).
    pub batch_id: Uuid,
    /// The line is printed again at a start: its record may have been
    /// printed just before the last stop (see `docs/stderr-format.md`).
    pub replayed: bool,
}

impl<'a> LineRecord<'a> {
    /// A record just committed from a batch the agent of `manifest` sent in
    /// a call the control plane took at `received_at`; `url` as stored (see
    /// [`warden_store::bound_url`]).
    pub fn ingested(
        manifest: &'a Manifest,
        batch: &'a IngestBatch,
        record: &'a AuditRecord,
        received_at: Timestamp,
        (url, url_original_bytes): (&'a str, Option<u64>),
    ) -> Self {
        let logs = batch.logs.as_ref();
        LineRecord {
            workspace_id: manifest.workspace_id,
            workspace_name: &manifest.workspace_name,
            workspace_owner: &manifest.owner_name,
            agent_name: &manifest.agent_name,
            decision: record.decision,
            method: &record.method,
            url,
            event_time: record.event_time.known(),
            received_at,
            session_id: logs.and_then(|l| l.session_id.as_deref()),
            sequence_number: record.sequence_number,
            matched_rule: &record.matched_rule,
            process: logs.map_or("", |l| &l.confined_process_name),
            url_original_bytes,
            batch_id: batch.batch_id,
            replayed: false,
        }
    }

    /// A record read back from the store (lines left over from a crash).
    pub fn stored(record: &'a StoredRecord) -> Self {
        LineRecord {
            workspace_id: record.workspace_id,
            workspace_name: &record.workspace_name,
            workspace_owner: &record.workspace_owner,
            agent_name: &record.agent_name,
            decision: record.decision,
            method: &record.method,
            url: &record.url,
            event_time: record.event_time.known(),
            received_at: record.received_at,
            session_id: record.session_id.as_deref(),
            sequence_number: record.sequence_number,
            matched_rule: &record.matched_rule,
            process: &record.process,
            url_original_bytes: record.url_original_bytes,
            batch_id: record.batch_id,
            replayed: false,
        }
    }

    /// The same line, marked as printed again at a start.
    pub fn replayed(self) -> Self {
        LineRecord {
            replayed: true,
            ..self
        }
    }

    /// The instant the line is stamped with: the event time, or the receive
    /// time when the record had none.
    pub(crate) fn stamp(&self) -> Timestamp {
        self.event_time.unwrap_or(self.received_at)
    }

    fn level(&self) -> &'static str {
        match self.decision {
            Decision::Deny => "warn",
            Decision::Allow => "info",
        }
    }
}

/// Appends the record's line, newline included, in `format`.
pub fn write_line(out: &mut String, format: LineFormat, record: &LineRecord<'_>) {
    match format {
        LineFormat::Text => write_text(out, record),
        LineFormat::Json => write_json(out, record),
        LineFormat::Coder => write_coder(out, record, Timestamp::now()),
    }
}

/// The `coder` line (`docs/stderr-format.md`, section `coder`), stamped
/// `written_at`: the time it is written, not the event time.
pub fn write_coder(out: &mut String, r: &LineRecord<'_>, written_at: Timestamp) {
    push_stamp(out, written_at);
    // Info for both decisions, as the reference logs it; two spaces after.
    out.push_str(" [info]  coderd.agentrpc: boundary_request");
    let key = |out: &mut String, key: &str| {
        out.push_str("  ");
        out.push_str(key);
        out.push('=');
    };
    // Values from outside go through `slog_value`; those made here (numbers,
    // UUIDs, the time) never need quoting and are written as they are.
    let field = |out: &mut String, name: &str, value: &str| {
        key(out, name);
        slog_value(out, value);
    };
    let mut uuid = Uuid::encode_buffer();
    field(out, "owner", r.workspace_owner);
    field(out, "workspace_name", r.workspace_name);
    field(out, "agent_name", r.agent_name);
    key(out, "decision");
    out.push_str(r.decision.as_str());
    if let Some(session) = r.session_id {
        field(out, "session_id", session);
        key(out, "sequence_number");
        out.push_str(itoa::Buffer::new().format(r.sequence_number));
    }
    key(out, "workspace_id");
    out.push_str(r.workspace_id.hyphenated().encode_lower(&mut uuid));
    field(out, "http_method", r.method);
    field(out, "http_url", r.url);
    key(out, "event_time");
    push_rfc3339_nano(out, r.stamp());
    if r.decision == Decision::Allow {
        field(out, "matched_rule", r.matched_rule);
    }
    key(out, "request_id");
    out.push_str(r.batch_id.hyphenated().encode_lower(&mut uuid));
    if r.replayed {
        key(out, "replayed");
        out.push_str("true");
    }
    out.push('\n');
}

/// A value as slog's human format writes it: Go-quoted when it is empty or
/// holds a space or a character Go does not print, as it is otherwise; so
/// no value can add a field or a line.
fn slog_value(out: &mut String, value: &str) {
    // Printable ASCII but the space, checked a chunk at a time; the rest
    // (non-ASCII, a space, a control) character by character.
    let ascii = ascii_prefix(value.as_bytes(), |b| (0x21..0x7f).contains(&b));
    let plain = !value.is_empty()
        && value[ascii..]
            .chars()
            .all(|c| c != ' ' && warden_proto::quote::is_print(c));
    if plain {
        out.push_str(value);
    } else {
        quote_into(out, value);
    }
}

fn write_text(out: &mut String, r: &LineRecord<'_>) {
    let stamp = r.stamp();
    out.push_str("[API] ");
    push_stamp(out, stamp);
    out.push_str(" [");
    out.push_str(r.level());
    out.push_str("] boundary: workspace.id=");
    out.push_str(
        r.workspace_id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer()),
    );
    out.push_str(" decision=");
    out.push_str(r.decision.as_str());
    out.push_str(" http.method=");
    quote_into(out, r.method);
    out.push_str(" http.url=");
    quote_into(out, r.url);
    out.push_str(" time=");
    out.push('"');
    push_rfc3339_nano(out, stamp);
    out.push('"');
    let quoted = |out: &mut String, key: &str, value: &str| {
        if !value.is_empty() {
            out.push(' ');
            out.push_str(key);
            out.push('=');
            quote_into(out, value);
        }
    };
    quoted(out, "workspace.name", r.workspace_name);
    quoted(out, "workspace.owner", r.workspace_owner);
    quoted(out, "agent.name", r.agent_name);
    if let Some(session) = r.session_id {
        out.push_str(" session.id=");
        quote_into(out, session);
        out.push_str(" sequence=");
        out.push_str(itoa::Buffer::new().format(r.sequence_number));
    }
    if r.decision == Decision::Allow {
        quoted(out, "http.matched_rule", r.matched_rule);
    }
    quoted(out, "process", r.process);
    if r.event_time.is_none() {
        out.push_str(" time.received=true");
    }
    if let Some(bytes) = r.url_original_bytes {
        let _ = write!(out, " http.url.truncated=true http.url.bytes={bytes}");
    }
    if r.replayed {
        out.push_str(" replayed=true");
    }
    out.push('\n');
}

/// The JSON form; optional keys are left out when unknown or empty. The
/// query API's record objects are this, plus what the line leaves out.
#[derive(Serialize)]
pub struct JsonLine<'a> {
    ts: JsonTime,
    level: &'static str,
    msg: &'static str,
    workspace_id: Uuid,
    #[serde(skip_serializing_if = "str::is_empty")]
    workspace_name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    workspace_owner: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    agent_name: &'a str,
    decision: &'static str,
    http_method: &'a str,
    http_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_time: Option<JsonTime>,
    received_at: JsonTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence: Option<i32>,
    #[serde(skip_serializing_if = "str::is_empty")]
    matched_rule: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    process: &'a str,
    /// Present (true) when the URL was stored cut to the control plane's
    /// bound; `http_url_bytes` is then its length as sent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    http_url_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_url_bytes: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
}

/// An instant of a JSON line, serialized as [`rfc3339_nano`] writes it
/// but through a buffer kept per thread rather than a string of its own
/// (three per line).
struct JsonTime(Timestamp);

impl Serialize for JsonTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        thread_local! {
            static TEXT: RefCell<String> = const { RefCell::new(String::new()) };
        }
        TEXT.with_borrow_mut(|text| {
            text.clear();
            push_rfc3339_nano(text, self.0);
            serializer.serialize_str(text)
        })
    }
}

/// Go's `time.RFC3339Nano` in UTC (see [`push_rfc3339_nano`]).
pub fn rfc3339_nano(t: Timestamp) -> String {
    let mut s = String::with_capacity(30);
    push_rfc3339_nano(&mut s, t);
    s
}

impl<'a> JsonLine<'a> {
    /// The JSON form of `r`.
    pub fn new(r: &LineRecord<'a>) -> JsonLine<'a> {
        JsonLine {
            ts: JsonTime(r.stamp()),
            level: r.level(),
            msg: "boundary",
            workspace_id: r.workspace_id,
            workspace_name: r.workspace_name,
            workspace_owner: r.workspace_owner,
            agent_name: r.agent_name,
            decision: r.decision.as_str(),
            http_method: r.method,
            http_url: r.url,
            event_time: r.event_time.map(JsonTime),
            received_at: JsonTime(r.received_at),
            session_id: r.session_id,
            sequence: r.session_id.map(|_| r.sequence_number),
            matched_rule: r.matched_rule,
            process: r.process,
            http_url_truncated: r.url_original_bytes.is_some(),
            http_url_bytes: r.url_original_bytes,
            replayed: r.replayed,
        }
    }
}

fn write_json(out: &mut String, r: &LineRecord<'_>) {
    let line = JsonLine::new(r);
    // Serializing these plain fields cannot fail; JSON escapes every control
    // character, so the line cannot be broken either.
    if let Ok(json) = serde_json::to_string(&line) {
        out.push_str(&json);
        out.push('\n');
    }
}

/// Go's `time.RFC3339Nano` in UTC: the fraction without trailing zeros,
/// and none at all when it is zero.
fn push_rfc3339_nano(out: &mut String, t: Timestamp) {
    push_utc_date_time(out, t, 'T');
    let nanos = utc_subsec_nanos(t);
    if nanos > 0 {
        let (mut fraction, mut digits) = (nanos, 9);
        while fraction % 10 == 0 {
            fraction /= 10;
            digits -= 1;
        }
        out.push('.');
        push_padded(out, fraction, digits);
    }
    out.push('Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp::new(seconds, nanos).unwrap()
    }

    fn example() -> LineRecord<'static> {
        LineRecord {
            workspace_id: "6f1c0a52-8a3e-4c1f-9d7b-2b1e5e0c9a11".parse().unwrap(),
            workspace_name: "dev",
            workspace_owner: "alice",
            agent_name: "main",
            decision: Decision::Deny,
            method: "GET",
            url: "https://evil.example/x",
            event_time: Some(ts(1_765_227_526, 93_456_789)),
            received_at: ts(1_765_227_527, 0),
            session_id: Some("0b6f8f0e-7a0c-4d7e-9a53-1f2d3c4b5a69"),
            sequence_number: 12,
            matched_rule: "",
            process: "",
            url_original_bytes: None,
            batch_id: "01a24e53-b93d-772f-bceb-6f83ecae5afe".parse().unwrap(),
            replayed: false,
        }
    }

    fn text(r: &LineRecord<'_>) -> String {
        let mut s = String::new();
        write_line(&mut s, LineFormat::Text, r);
        s
    }

    fn coder(r: &LineRecord<'_>) -> String {
        let mut s = String::new();
        // 2026-01-16 00:11:40.564 UTC
        write_coder(&mut s, r, ts(1_768_522_300, 564_999_999));
        s
    }

    /// The spec's example record.
    fn coder_example() -> LineRecord<'static> {
        LineRecord {
            workspace_id: "f2bd4e9f-0a6e-4b83-9a54-5b6f1c2d3e4f".parse().unwrap(),
            workspace_name: "some-task-c88d",
            workspace_owner: "joe",
            agent_name: "dev",
            decision: Decision::Allow,
            method: "GET",
            url: "https://dev.coder.com/",
            event_time: Some(ts(1_768_522_299, 388_607_657)),
            matched_rule: "domain=dev.coder.com",
            ..example()
        }
    }

    #[test]
    fn the_coder_line_matches_the_spec_example_byte_for_byte() {
        assert_eq!(
            coder(&coder_example()),
            "2026-01-16 00:11:40.564 [info]  coderd.agentrpc: boundary_request  owner=joe  workspace_name=some-task-c88d  agent_name=dev  decision=allow  session_id=0b6f8f0e-7a0c-4d7e-9a53-1f2d3c4b5a69  sequence_number=12  workspace_id=f2bd4e9f-0a6e-4b83-9a54-5b6f1c2d3e4f  http_method=GET  http_url=https://dev.coder.com/  event_time=2026-01-16T00:11:39.388607657Z  matched_rule=domain=dev.coder.com  request_id=01a24e53-b93d-772f-bceb-6f83ecae5afe\n"
        );
    }

    #[test]
    fn coder_lines_golden() {
        // Denied, no session, no event time: info all the same, no
        // matched_rule, the receive time as event_time.
        let denied = LineRecord {
            decision: Decision::Deny,
            session_id: None,
            event_time: None,
            received_at: ts(1_768_522_300, 500_000_000),
            url: "https://evil.example/x",
            ..coder_example()
        };
        assert_eq!(
            coder(&denied),
            "2026-01-16 00:11:40.564 [info]  coderd.agentrpc: boundary_request  owner=joe  workspace_name=some-task-c88d  agent_name=dev  decision=deny  workspace_id=f2bd4e9f-0a6e-4b83-9a54-5b6f1c2d3e4f  http_method=GET  http_url=https://evil.example/x  event_time=2026-01-16T00:11:40.5Z  request_id=01a24e53-b93d-772f-bceb-6f83ecae5afe\n"
        );
        // Allowed with an empty rule: matched_rule all the same, quoted;
        // values with spaces, controls or nothing at all are Go-quoted, so
        // nothing can add a field or a line; printable ones stay bare.
        let hostile = LineRecord {
            matched_rule: "",
            workspace_owner: "",
            agent_name: "a b",
            url: "https://x/\n2026-01-16 00:00:00.000 [info]  forged  decision=deny",
            method: "G\"T",
            replayed: true,
            ..coder_example()
        };
        assert_eq!(
            coder(&hostile),
            "2026-01-16 00:11:40.564 [info]  coderd.agentrpc: boundary_request  owner=\"\"  workspace_name=some-task-c88d  agent_name=\"a b\"  decision=allow  session_id=0b6f8f0e-7a0c-4d7e-9a53-1f2d3c4b5a69  sequence_number=12  workspace_id=f2bd4e9f-0a6e-4b83-9a54-5b6f1c2d3e4f  http_method=G\"T  http_url=\"https://x/\\n2026-01-16 00:00:00.000 [info]  forged  decision=deny\"  event_time=2026-01-16T00:11:39.388607657Z  matched_rule=\"\"  request_id=01a24e53-b93d-772f-bceb-6f83ecae5afe  replayed=true\n"
        );
        assert_eq!(coder(&hostile).matches('\n').count(), 1);
        // Non-ASCII printable stays, a bidi override is escaped.
        let unicode = LineRecord {
            url: "https://пример.рф/\u{202e}",
            ..coder_example()
        };
        assert!(coder(&unicode).contains("  http_url=\"https://пример.рф/\\u202e\"  "));
    }

    /// The chunked scan of a `coder` value agrees with looking at every
    /// character, wherever in the 16-byte chunks a space, a control, a
    /// printable non-ASCII character or a non-printable one falls.
    #[test]
    fn coder_values_are_quoted_exactly_when_a_character_needs_it() {
        let by_characters = |value: &str| {
            !value.is_empty()
                && value
                    .chars()
                    .all(|c| c != ' ' && warden_proto::quote::is_print(c))
        };
        for len in 0..40 {
            for at in 0..=len {
                for odd in [" ", "\n", "\u{7f}", "é", "\u{202e}", "\"", "="] {
                    let mut value = "a".repeat(len);
                    value.insert_str(at, odd);
                    let mut out = String::new();
                    slog_value(&mut out, &value);
                    let want = if by_characters(&value) {
                        value.clone()
                    } else {
                        warden_proto::quote::quote(&value)
                    };
                    assert_eq!(out, want, "{value:?}");
                }
            }
        }
        let mut out = String::new();
        slog_value(&mut out, "");
        assert_eq!(out, "\"\"");
    }

    #[test]
    fn the_spec_example_matches_byte_for_byte() {
        assert_eq!(
            text(&example()),
            "[API] 2025-12-08 20:58:46.093 [warn] boundary: workspace.id=6f1c0a52-8a3e-4c1f-9d7b-2b1e5e0c9a11 decision=deny http.method=\"GET\" http.url=\"https://evil.example/x\" time=\"2025-12-08T20:58:46.093456789Z\" workspace.name=\"dev\" workspace.owner=\"alice\" agent.name=\"main\" session.id=\"0b6f8f0e-7a0c-4d7e-9a53-1f2d3c4b5a69\" sequence=12\n"
        );
    }

    #[test]
    fn fractions_follow_go_rfc3339_nano_and_stamps_truncate() {
        let mut s = String::new();
        push_rfc3339_nano(&mut s, ts(1_765_227_526, 500_000_000));
        assert_eq!(s, "2025-12-08T20:58:46.5Z");
        s.clear();
        push_rfc3339_nano(&mut s, ts(1_765_227_526, 0));
        assert_eq!(s, "2025-12-08T20:58:46Z");
        s.clear();
        push_rfc3339_nano(&mut s, ts(-62_135_596_800, 1));
        assert_eq!(s, "0001-01-01T00:00:00.000000001Z");
        s.clear();
        push_stamp(&mut s, ts(1_765_227_526, 999_999_999));
        assert_eq!(s, "2025-12-08 20:58:46.999");
    }

    #[test]
    fn allowed_records_show_their_rule_and_process() {
        let r = LineRecord {
            decision: Decision::Allow,
            matched_rule: "domain=github.com",
            process: "claude",
            ..example()
        };
        let line = text(&r);
        assert!(line.contains(" [info] "), "{line}");
        assert!(
            line.ends_with(
                " sequence=12 http.matched_rule=\"domain=github.com\" process=\"claude\"\n"
            ),
            "{line}"
        );
        // A rule on a denied record is stored but not printed.
        let denied = LineRecord {
            matched_rule: "domain=github.com",
            ..example()
        };
        assert!(!text(&denied).contains("matched_rule"));
    }

    #[test]
    fn unknown_times_use_the_receive_time_and_say_so() {
        let r = LineRecord {
            event_time: None,
            session_id: None,
            ..example()
        };
        assert_eq!(
            text(&r),
            "[API] 2025-12-08 20:58:47.000 [warn] boundary: workspace.id=6f1c0a52-8a3e-4c1f-9d7b-2b1e5e0c9a11 decision=deny http.method=\"GET\" http.url=\"https://evil.example/x\" time=\"2025-12-08T20:58:47Z\" workspace.name=\"dev\" workspace.owner=\"alice\" agent.name=\"main\" time.received=true\n"
        );
    }

    #[test]
    fn replays_and_truncated_urls_say_so_at_the_end() {
        let r = LineRecord {
            url_original_bytes: Some(70_000),
            ..example()
        }
        .replayed();
        assert!(
            text(&r).ends_with(
                " sequence=12 http.url.truncated=true http.url.bytes=70000 replayed=true\n"
            ),
            "{}",
            text(&r)
        );
        let mut s = String::new();
        write_line(&mut s, LineFormat::Json, &r);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["replayed"], true);
        assert_eq!(v["http_url_truncated"], true);
        assert_eq!(v["http_url_bytes"], 70_000);
        // Neither appears on an ordinary line.
        let mut s = String::new();
        write_line(&mut s, LineFormat::Json, &example());
        assert!(!s.contains("replayed") && !s.contains("truncated"), "{s}");
        assert!(!text(&example()).contains("replayed"));
    }

    #[test]
    fn a_hostile_url_stays_on_one_line() {
        let r = LineRecord {
            url: "https://x/\r\n[API] 2025-12-08 20:58:46.093 [info] boundary: forged=1\u{1b}[31m\u{202e}",
            ..example()
        };
        let line = text(&r);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.contains(r#"http.url="https://x/\r\n[API] 2025-12-08 20:58:46.093 [info] boundary: forged=1\x1b[31m\u202e""#));
    }

    #[test]
    fn json_lines_carry_the_spec_keys() {
        let mut s = String::new();
        write_line(&mut s, LineFormat::Json, &example());
        assert!(s.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "ts": "2025-12-08T20:58:46.093456789Z",
                "level": "warn",
                "msg": "boundary",
                "workspace_id": "6f1c0a52-8a3e-4c1f-9d7b-2b1e5e0c9a11",
                "workspace_name": "dev",
                "workspace_owner": "alice",
                "agent_name": "main",
                "decision": "deny",
                "http_method": "GET",
                "http_url": "https://evil.example/x",
                "event_time": "2025-12-08T20:58:46.093456789Z",
                "received_at": "2025-12-08T20:58:47Z",
                "session_id": "0b6f8f0e-7a0c-4d7e-9a53-1f2d3c4b5a69",
                "sequence": 12
            })
        );
        let mut s = String::new();
        let r = LineRecord {
            event_time: None,
            session_id: None,
            decision: Decision::Allow,
            matched_rule: "domain=a",
            process: "p",
            ..example()
        };
        write_line(&mut s, LineFormat::Json, &r);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["ts"], "2025-12-08T20:58:47Z");
        assert_eq!(v["level"], "info");
        assert!(
            v.get("event_time").is_none()
                && v.get("session_id").is_none()
                && v.get("sequence").is_none()
        );
        assert_eq!(
            (v["matched_rule"].as_str(), v["process"].as_str()),
            (Some("domain=a"), Some("p"))
        );
    }
}
