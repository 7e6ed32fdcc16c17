//! Operational log lines in the JSON schema of the boundary lines
//! (`docs/stderr-format.md`, `json`): `ts` (RFC 3339, nanoseconds, UTC),
//! `level` (lower case), `msg`, then the event's fields. So in `--log-format
//! json` every stderr line, operational or boundary, has `ts`, `level` and
//! `msg`; clap's usage errors too ([`usage_error`]).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The tracing event format.
#[derive(Debug, Default)]
pub struct JsonLines;

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, Value::from(format!("{value:?}")));
    }
}

impl Fields {
    fn insert(&mut self, field: &Field, value: Value) {
        let key = match field.name() {
            "message" => "msg",
            // The line's own keys stay the line's.
            name @ ("ts" | "level" | "msg") => {
                return drop(self.0.insert(format!("field.{name}"), value));
            }
            name => name,
        };
        self.0.insert(key.to_owned(), value);
    }
}

/// One line: `ts`, `level`, `msg`, then the fields.
pub fn line(level: &str, msg: &str, fields: Map<String, Value>) -> String {
    let mut out = Map::new();
    out.insert(
        "ts".into(),
        Value::from(warden_server::line::format::rfc3339_nano(
            jiff::Timestamp::now(),
        )),
    );
    out.insert("level".into(), Value::from(level));
    out.insert("msg".into(), Value::from(msg));
    out.extend(fields);
    let mut text = Value::Object(out).to_string();
    text.push('\n');
    text
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let msg = match fields.0.remove("msg") {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        writer.write_str(&line(&level, &msg, fields.0))
    }
}

/// Whether `argv` runs `warden server` with JSON logs (the flag, or its
/// variable): then a usage error is a JSON line too.
pub fn wants_json(argv: &[String]) -> bool {
    if argv.get(1).map(String::as_str) != Some("server") {
        return false;
    }
    let flag = argv
        .windows(2)
        .any(|w| w[0] == "--log-format" && w[1] == "json")
        || argv.iter().any(|a| a == "--log-format=json");
    flag || std::env::var("WARDEN_LOG_FORMAT").is_ok_and(|v| v == "json")
}

/// A clap usage error as one JSON line: `msg` its first line, `usage` the
/// rest.
pub fn usage_error(rendered: &str) -> String {
    let text = rendered.trim();
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let msg = first.strip_prefix("error: ").unwrap_or(first);
    let mut fields = Map::new();
    if !rest.trim().is_empty() {
        fields.insert("usage".into(), Value::from(rest.trim()));
    }
    line("error", msg, fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_are_one_json_line_with_the_line_keys() {
        let line = usage_error(
            "error: unexpected argument '--bogus' found\n\nUsage: warden server [OPTIONS]\n\nFor more information, try '--help'.\n",
        );
        assert_eq!(line.matches('\n').count(), 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "unexpected argument '--bogus' found");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        assert!(
            v["usage"]
                .as_str()
                .unwrap()
                .starts_with("Usage: warden server")
        );
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants_json(&argv(&[
            "warden",
            "server",
            "--log-format",
            "json",
            "--bogus"
        ])));
        assert!(wants_json(&argv(&[
            "warden",
            "server",
            "--log-format=json"
        ])));
        assert!(!wants_json(&argv(&[
            "warden",
            "logs",
            "--log-format",
            "json"
        ])));
    }
}
