//! The library side of `warden emit`: JSON lines in, records delivered,
//! bad lines reported with their numbers.

mod support;

use std::fmt::Write as _;

use support::{FakeAgent, Script, all};
use warden_client::{AckMode, Auditor, jsonl};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_delivers_100000_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), Script::warden());
    let n = 100_000;
    let mut input = String::new();
    for i in 0..n {
        if i % 3 == 0 {
            writeln!(
                input,
                r#"{{"allowed": true, "method": "GET", "url": "https://github.com/coder/{i}", "rule": "domain=github.com", "time": "2025-12-08T20:58:46.093456789Z"}}"#
            )
            .unwrap();
        } else {
            writeln!(
                input,
                r#"{{"allowed": false, "method": "POST", "url": "https://evil.example/{i}"}}"#
            )
            .unwrap();
        }
    }
    let auditor = Auditor::start(jsonl::config(&agent.path)).unwrap();
    let mut diagnostics = Vec::new();
    let report = jsonl::emit(input.as_bytes(), auditor, &mut diagnostics)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&diagnostics), "");
    assert!(report.success(), "{report}");
    assert_eq!((report.read, report.malformed), (n as u64, 0));
    assert_eq!(report.summary.acknowledgements, AckMode::Confirmed);
    assert_eq!(report.summary.confirmed.len(), n as u64);
    assert_eq!(report.summary.dropped.total(), 0);
    let text = report.to_string();
    assert!(
        text.starts_with("read 100000, malformed 0, sent 100000, confirmed 100000, dropped 0"),
        "{text}"
    );

    let received = agent.until_final_status().await;
    assert_eq!(received.stored(), all(n));
    // Spot-check content: line 3 (i = 3) is an allowed record with its rule and time.
    let log = received
        .logs()
        .flat_map(|l| l.logs.iter())
        .find(|l| l.sequence_number == 3)
        .unwrap()
        .clone();
    assert!(log.allowed);
    assert_eq!(log.time.unwrap().seconds, 1_765_227_526);
}

#[tokio::test]
async fn malformed_lines_are_reported_with_their_numbers_and_the_rest_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(&dir.path().join("a.sock"), Script::warden());
    let huge_url = "u".repeat(40_000);
    let input = format!(
        "{}\n{}\n{}\n{}\n\n{}\n{}\n{}",
        r#"{"allowed": true, "method": "GET", "url": "https://a.io", "rule": "domain=a.io"}"#,
        "garbage",
        r#"{"allowed": false, "method": "GET", "url": "https://b.io"}"#,
        r#"{"allowed": true}"#,
        format_args!(r#"{{"allowed": false, "method": "GET", "url": "{huge_url}"}}"#),
        r#"{"allowed": false, "method": "", "url": ""}"#,
        r#"{"allowed": false, "method": "DELETE", "url": "https://c.io"}"#,
    );
    let auditor = Auditor::start(jsonl::config(&agent.path)).unwrap();
    let mut diagnostics = Vec::new();
    let report = jsonl::emit(input.as_bytes(), auditor, &mut diagnostics)
        .await
        .unwrap();
    let diagnostics = String::from_utf8(diagnostics).unwrap();
    let lines: Vec<_> = diagnostics.lines().collect();
    assert_eq!(lines.len(), 4, "{diagnostics}");
    assert!(
        lines[0].starts_with("line 2: not a valid record"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("line 4: not a valid record: missing field"),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("line 6: record of "), "{}", lines[2]);
    assert!(
        lines[3].starts_with("line 7: record carries no request"),
        "{}",
        lines[3]
    );
    // The blank line 5 is neither read nor malformed.
    assert_eq!((report.read, report.malformed), (7, 4));
    assert!(!report.success());
    assert!(report.summary.is_complete(), "{}", report.summary);
    let received = agent.until_final_status().await;
    assert_eq!(received.stored(), all(3));
    let urls: Vec<_> = received
        .logs()
        .flat_map(|l| l.logs.iter())
        .map(|l| match &l.resource {
            Some(warden_proto::wire::boundary_log::Resource::HttpRequest(r)) => r.url.clone(),
            None => String::new(),
        })
        .collect();
    assert_eq!(urls, ["https://a.io", "https://b.io", "https://c.io"]);
}
