//! Feeds arbitrary bytes to `warden emit`'s input side, as if they were its
//! stdin: the line splitter (with its length limit and `\r\n` handling), the
//! JSON record parser and the diagnostics it writes for bad lines. None may
//! panic; each line read is exactly the input between two `\n` (less one
//! `\r`), or said to be too long; every line is either a record that says
//! what the JSON said or exactly one diagnostic line that input cannot forge
//! another line into.
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
    // What each line must be: the bytes between two `\n`, without one
    // trailing `\r`; too long when the bytes read (with that `\r`) exceed
    // the limit.
    let mut expected: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if data.is_empty() || data.last() == Some(&b'\n') {
        expected.pop();
    }
    let mut input = data;
    let mut line = Vec::new();
    let mut number = 0u64;
    while let Some(status) = read_line(&mut input, &mut line, MAX).await.expect("a slice cannot fail") {
        let raw = expected[number as usize];
        number += 1;
        match status {
            LineStatus::TooLong => {
                assert!(raw.len() > MAX, "{raw:?} is not too long");
                assert!(line.is_empty());
            }
            LineStatus::Complete => {
                assert!(raw.len() <= MAX);
                assert_eq!(line.as_slice(), raw.strip_suffix(b"\r").unwrap_or(raw));
                check_line(&line, number);
            }
        }
    }
    assert_eq!(number as usize, expected.len(), "every line was read");
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
