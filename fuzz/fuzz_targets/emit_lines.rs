//! Feeds arbitrary bytes to `warden emit`'s input side, as if they were its
//! stdin: the line splitter (with its length limit and `\r\n` handling), the
//! JSON record parser and the diagnostics it writes for bad lines. None may
//! panic; every line is either a record that says what the JSON said or
//! exactly one diagnostic line that input cannot forge another line into.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use warden_client::jsonl::{LineStatus, parse_line, read_line, write_diagnostic};
use warden_proto::domain::Decision;

/// A small limit, so that the fuzzer reaches the too-long path.
const MAX: usize = 256;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
});

fuzz_target!(|data: &[u8]| {
    RUNTIME.block_on(check(data));
});

async fn check(data: &[u8]) {
    let mut input = data;
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut consumed_lines = 0usize;
    while let Some(status) = read_line(&mut input, &mut line, MAX).await.expect("a slice cannot fail") {
        number += 1;
        consumed_lines += 1;
        match status {
            LineStatus::TooLong => assert!(line.is_empty()),
            LineStatus::Complete => {
                assert!(line.len() <= MAX);
                assert!(!line.contains(&b'\n'));
                assert!(line.last() != Some(&b'\r'));
                check_line(&line, number);
            }
        }
    }
    // Every `\n` ended one line; what follows the last one is one more.
    let newlines = data.iter().filter(|&&b| b == b'\n').count();
    let tail = !data.is_empty() && data.last() != Some(&b'\n');
    assert_eq!(consumed_lines, newlines + usize::from(tail));
}

fn check_line(line: &[u8], number: u64) {
    match parse_line(line) {
        Ok(record) => {
            // The record says what the JSON said.
            let value: serde_json::Value = serde_json::from_slice(line).expect("it parsed");
            assert_eq!(value["method"].as_str(), Some(record.method.as_str()));
            assert_eq!(value["url"].as_str(), Some(record.url.as_str()));
            assert_eq!(value["rule"].as_str(), record.matched_rule.as_deref());
            let allowed = value["allowed"].as_bool().expect("a bool");
            assert_eq!(record.decision, Decision::from_allowed(allowed));
        }
        Err(reason) => {
            let mut out = Vec::new();
            write_diagnostic(&mut out, number, &reason);
            let text = String::from_utf8(out).expect("diagnostics are UTF-8");
            assert!(text.starts_with(&format!("line {number}: ")));
            assert!(text.ends_with('\n'));
            assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
            assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        }
    }
}
