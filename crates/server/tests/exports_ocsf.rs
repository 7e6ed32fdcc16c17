//! OCSF export: every event validates against the committed JSON Schema of
//! OCSF 1.3.0 HTTP Activity (`tests/data/ocsf-1.3.0-http-activity.schema.json`)
//! and carries the mapping of `docs/exports.md`; the file sink writes every
//! record once, rotates by size and resumes after a restart from its cursor.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use uuid::Uuid;
use warden_proto::domain::{Decision, EventTime, Peer};
use warden_server::LineFormat;
use warden_server::export::record::ExportRecord;
use warden_server::export::{ExportSettings, SinkTarget, ocsf};
use warden_store::StoredRecord;

fn validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(include_str!("data/ocsf-1.3.0-http-activity.schema.json")).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Validates one event and the rules a JSON Schema cannot state.
fn check(validator: &jsonschema::Validator, event: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(event)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?} in {event:#}");
    let class = event["class_uid"].as_i64().unwrap();
    let activity = event["activity_id"].as_i64().unwrap();
    assert_eq!(event["type_uid"].as_i64().unwrap(), class * 100 + activity);
    assert_eq!(event["metadata"]["version"], ocsf::OCSF_VERSION);
}

fn stored(id: i64, decision: Decision, method: &str, url: &str) -> StoredRecord {
    let t = jiff::Timestamp::new(1_765_227_526, 93_456_789).unwrap();
    StoredRecord {
        id,
        workspace_id: Uuid::now_v7(),
        workspace_name: "dev".into(),
        workspace_owner: "alice".into(),
        agent_id: Uuid::new_v4(),
        agent_name: "main".into(),
        batch_id: Uuid::now_v7(),
        session_id: Some(SESSION.into()),
        sequence_number: 12,
        event_time: EventTime::Known(t),
        received_at: t,
        agent_received_at: t,
        agent_time_suspect: false,
        committed_at: t,
        decision,
        method: method.into(),
        url: url.into(),
        url_original_bytes: None,
        matched_rule: if decision == Decision::Allow {
            "domain=dev.coder.com".into()
        } else {
            String::new()
        },
        process: "claude".into(),
        peer: Peer {
            uid: 1000,
            gid: 1001,
            pid: 77,
            comm: "boundary".into(),
            exe: "/usr/bin/boundary".into(),
        },
        policy_digest: Some("ab".repeat(32)),
        conflict: false,
    }
}

#[test]
fn every_kind_of_record_makes_a_valid_event_with_the_mapping() {
    let validator = validator();
    let allow = stored(
        7,
        Decision::Allow,
        "GET",
        "https://dev.coder.com:8443/a?b=c",
    );
    let event = ocsf::event(&ExportRecord::stored(&allow));
    check(&validator, &event);
    assert_eq!(
        (event["class_uid"].as_i64(), event["category_uid"].as_i64()),
        (Some(4002), Some(4))
    );
    assert_eq!(
        (event["activity_id"].as_i64(), event["type_uid"].as_i64()),
        (Some(3), Some(400203))
    );
    assert_eq!(
        (
            event["action_id"].as_i64(),
            event["disposition_id"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(event["firewall_rule"]["name"], "domain=dev.coder.com");
    assert_eq!(event["metadata"]["uid"], "7");
    assert_eq!(event["metadata"]["correlation_uid"], SESSION);
    assert_eq!(event["metadata"]["sequence"], 12);
    assert_eq!(event["time"], 1_765_227_526_093i64);
    assert_eq!(event["http_request"]["http_method"], "GET");
    assert_eq!(
        event["http_request"]["url"]["url_string"],
        "https://dev.coder.com:8443/a?b=c"
    );
    assert_eq!(event["http_request"]["url"]["hostname"], "dev.coder.com");
    assert_eq!(event["http_request"]["url"]["port"], 8443);
    assert_eq!(event["dst_endpoint"]["hostname"], "dev.coder.com");
    let process = &event["actor"]["process"];
    assert_eq!(
        (process["pid"].as_i64(), process["name"].as_str()),
        (Some(77), Some("boundary"))
    );
    assert_eq!(process["file"]["path"], "/usr/bin/boundary");
    assert_eq!(process["user"]["uid"], "1000");
    assert_eq!(event["unmapped"]["warden"]["record_id"], 7);
    assert_eq!(event["unmapped"]["warden"]["process"], "claude");

    let deny = stored(8, Decision::Deny, "POST", "http://evil.example/x");
    let event = ocsf::event(&ExportRecord::stored(&deny));
    check(&validator, &event);
    assert_eq!(
        (
            event["action_id"].as_i64(),
            event["disposition_id"].as_i64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(event["severity_id"], 2);
    assert!(event.get("firewall_rule").is_none());

    // A method the class does not name, a URL without a host, no session,
    // no event time, an unknown peer: still valid.
    let mut odd = stored(9, Decision::Deny, "PROPFIND", "not a url\n\u{1b}[31m");
    odd.session_id = None;
    odd.event_time = EventTime::Missing;
    odd.peer = Peer::default();
    odd.conflict = true;
    odd.url_original_bytes = Some(1 << 20);
    let event = ocsf::event(&ExportRecord::stored(&odd));
    check(&validator, &event);
    assert_eq!(event["activity_id"], 99);
    assert!(event["metadata"].get("correlation_uid").is_none());
    assert_eq!(event["unmapped"]["warden"]["time_received"], true);
    // One line, whatever the URL holds.
    assert_eq!(
        ocsf::line(&ExportRecord::stored(&odd))
            .matches('\n')
            .count(),
        1
    );
    for method in [
        "CONNECT", "DELETE", "HEAD", "OPTIONS", "PUT", "TRACE", "PATCH", "get",
    ] {
        check(
            &validator,
            &ocsf::event(&ExportRecord::stored(&stored(
                1,
                Decision::Allow,
                method,
                "https://a/",
            ))),
        );
    }
}

#[test]
fn the_schema_refuses_what_ocsf_refuses() {
    let validator = validator();
    let good = ocsf::event(&ExportRecord::stored(&stored(
        1,
        Decision::Allow,
        "GET",
        "https://a/",
    )));
    for (path, value) in [
        ("class_uid", None),
        ("metadata", None),
        ("activity_id", Some(Value::from(42))),
        ("action_id", Some(Value::from(7))),
        ("severity_id", Some(Value::from(9))),
        ("time", Some(Value::from("yesterday"))),
        ("http_request", None),
    ] {
        let mut bad = good.clone();
        match value {
            None => drop(bad.as_object_mut().unwrap().remove(path)),
            Some(v) => bad[path] = v,
        }
        assert!(!validator.is_valid(&bad), "{path} {bad:#}");
    }
    let mut bad = good.clone();
    bad["metadata"]["product"]
        .as_object_mut()
        .unwrap()
        .remove("vendor_name");
    assert!(!validator.is_valid(&bad));
}

/// Every line of the live file and its rotated ones, oldest first.
fn all_lines(path: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = (1..100)
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .filter(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_owned());
    files
        .iter()
        .filter(|p| p.exists())
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let lines = all_lines(path);
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {n} events, got {}",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ocsf_config(dir: &Path, file: &Path) -> warden_server::Config {
    let mut config = config(dir, LineFormat::Text);
    config.exports = ExportSettings {
        sinks: vec![SinkTarget::Ocsf {
            path: file.to_owned(),
            max_bytes: 8 * 1024,
            keep: 50,
        }],
        poll: Duration::from_millis(100),
        ..ExportSettings::default()
    };
    config
}

async fn report(server: &Server, workspace: &str, n: i32) {
    let token = server.workspace(workspace).await.agent_token;
    let mut agent = server.agent(&token).await;
    for chunk in 0..n / 10 {
        let logs = (chunk * 10..chunk * 10 + 10)
            .map(|s| {
                log(
                    s,
                    s % 2 == 0,
                    "GET",
                    &format!("https://example.com/{workspace}/{s}"),
                    "domain=example.com",
                )
            })
            .collect();
        agent
            .report(vec![batch(Some(SESSION), logs)])
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_sink_rotates_and_resumes_after_a_restart_without_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ocsf").join("warden.ocsf.jsonl");
    let server =
        Server::start_with(ocsf_config(dir.path(), &file), dir.path(), Capture::new()).await;
    report(&server, "dev", 40).await;
    wait_for_lines(&file, 40).await;
    server.stop().await.unwrap();

    let server =
        Server::start_with(ocsf_config(dir.path(), &file), dir.path(), Capture::new()).await;
    report(&server, "ops", 30).await;
    let lines = wait_for_lines(&file, 70).await;
    let validator = validator();
    let mut ids = Vec::new();
    for line in &lines {
        let event: Value = serde_json::from_str(line).unwrap();
        check(&validator, &event);
        ids.push(
            event["metadata"]["uid"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap(),
        );
    }
    // Once each, in commit order, across the restart and the rotations.
    let expected: Vec<i64> = (1..=70).collect();
    assert_eq!(ids, expected);
    assert!(
        Path::new(&format!("{}.2", file.display())).exists(),
        "the file should have rotated at 8 KiB"
    );
    for n in 1..100 {
        let rotated = PathBuf::from(format!("{}.{n}", file.display()));
        if rotated.exists() {
            assert!(std::fs::metadata(&rotated).unwrap().len() <= 8 * 1024);
        }
    }
    let ids: BTreeSet<i64> = ids.into_iter().collect();
    assert_eq!(ids.len(), 70);
    // The cursor is saved (and shown) just after the lines are written.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, metrics) = server.get("/metrics").await;
        let cursor = metric(&metrics, "warden_export_cursor{sink=\"ocsf\"}");
        if cursor == Some(70.0) {
            break;
        }
        assert!(Instant::now() < deadline, "cursor {cursor:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await.unwrap();
}
