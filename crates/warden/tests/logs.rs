//! `warden logs` against a real `warden server` process: filters, JSON and
//! the terminal-sized table, `--follow` across a server restart, the
//! session commands, and errors with their exit codes.
//!
//! Records reach the server through the agent API directly (a gRPC client
//! in this file), so each test decides exactly what is stored.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use rustix::process::{Pid, Signal, kill_process};
use support::process::{BoundaryLines, warden};
use support::server::{ServerProcess, Workspace};
use support::{WAIT, dirs};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tonic::transport::Channel;
use warden_proto::api::{API_VERSION_HEADER, AUTHORIZATION_HEADER};
use warden_proto::wire::agentapi::{self, agent_api_client::AgentApiClient};
use warden_proto::wire::{self, boundary_log};

/// Event times start here: 2025-12-08T20:58:46Z.
const T0: i64 = 1_765_227_526;

/// Reports batches as `workspace`'s agent.
async fn report(server: &ServerProcess, workspace: &Workspace, batches: Vec<agentapi::Batch>) {
    let channel = Channel::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AgentApiClient::new(channel);
    let mut request = tonic::Request::new(agentapi::ReportBoundaryLogsRequest { batches });
    let metadata = request.metadata_mut();
    metadata.insert(
        AUTHORIZATION_HEADER,
        format!("Bearer {}", workspace.token).parse().unwrap(),
    );
    metadata.insert(API_VERSION_HEADER, "2.7".parse().unwrap());
    client.report_boundary_logs(request).await.unwrap();
}

fn log(seq: i32, allowed: bool, method: &str, url: &str, offset: i64) -> wire::BoundaryLog {
    wire::BoundaryLog {
        allowed,
        time: Some(wire::Timestamp {
            seconds: T0 + offset,
            nanos: 0,
        }),
        resource: Some(boundary_log::Resource::HttpRequest(
            boundary_log::HttpRequest {
                method: method.into(),
                url: url.into(),
                matched_rule: String::new(),
            },
        )),
        sequence_number: seq,
    }
}

fn batch(session: &str, logs: Vec<wire::BoundaryLog>) -> agentapi::Batch {
    agentapi::Batch {
        batch_id: uuid::Uuid::now_v7().to_string(),
        received_at: Some(wire::Timestamp {
            seconds: T0 + 3600,
            nanos: 0,
        }),
        peer: Some(agentapi::SocketPeer {
            uid: 1000,
            gid: 1000,
            pid: 7,
            comm: "boundary".into(),
            exe: "/usr/bin/boundary".into(),
        }),
        logs: Some(wire::ReportBoundaryLogsRequest {
            logs,
            session_id: session.into(),
            confined_process_name: "claude".into(),
            ..Default::default()
        }),
        client_status: Vec::new(),
        agent_drops: Vec::new(),
    }
}

/// `warden logs ARGS --data-dir DIR` with `COLUMNS` as given.
async fn logs(
    data_dir: &Path,
    args: &[&str],
    columns: Option<&str>,
) -> (Option<i32>, String, String) {
    let mut command = warden();
    command
        .arg("logs")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir);
    match columns {
        Some(c) => command.env("COLUMNS", c),
        None => command.env_remove("COLUMNS"),
    };
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .expect("warden logs did not finish")
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn urls(records: &[serde_json::Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["http_url"].as_str().unwrap())
        .collect()
}

async fn server_with_records() -> (support::Dirs, ServerProcess, Workspace, Workspace) {
    let dirs = dirs();
    let server = ServerProcess::start(&dirs.server, &[], BoundaryLines::Count).await;
    let dev = server.create_workspace("dev", "alice", &[]).await;
    let ops = server
        .create_workspace("ops", "bob", &["--agent", "runner"])
        .await;
    report(
        &server,
        &dev,
        vec![batch(
            "s1",
            vec![
                log(0, true, "GET", "https://github.com/a", 0),
                log(1, false, "POST", "https://evil.example/x", 10),
                log(2, false, "GET", "https://evil.example/\u{1b}[2Jy", 20),
                log(
                    3,
                    true,
                    "PUT",
                    &format!("https://api.example/{}", "z".repeat(200)),
                    30,
                ),
            ],
        )],
    )
    .await;
    report(
        &server,
        &ops,
        vec![batch(
            "s2",
            vec![log(0, false, "DELETE", "https://evil.example/ops", 5)],
        )],
    )
    .await;
    (dirs, server, dev, ops)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_listed_filtered_and_printed_as_json_or_a_table() {
    let (dirs, mut server, _dev, _ops) = server_with_records().await;
    let data = &dirs.server;

    let (code, out, err) = logs(data, &["--json"], None).await;
    assert_eq!(code, Some(0), "{err}");
    let all = json_lines(&out);
    assert_eq!(all.len(), 5);
    let ids: Vec<i64> = all.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    // The keys of the JSON boundary line, plus id, peer and conflict.
    let first = all[0].as_object().unwrap();
    for key in [
        "id",
        "ts",
        "level",
        "msg",
        "workspace_id",
        "workspace_name",
        "workspace_owner",
        "agent_name",
        "decision",
        "http_method",
        "http_url",
        "event_time",
        "received_at",
        "session_id",
        "sequence",
        "process",
        "peer",
        "conflict",
    ] {
        assert!(first.contains_key(key), "{key} missing from {first:?}");
    }
    assert_eq!(all[0]["workspace_name"], "ops");
    assert_eq!(all[0]["agent_name"], "runner");
    assert_eq!(all[0]["peer"]["exe"], "/usr/bin/boundary");

    let (code, out, _) = logs(
        data,
        &[
            "--json",
            "--workspace",
            "dev",
            "--decision",
            "deny",
            "--limit",
            "1",
        ],
        None,
    )
    .await;
    assert_eq!(code, Some(0));
    assert_eq!(urls(&json_lines(&out)), ["https://evil.example/\u{1b}[2Jy"]);
    for (args, expected) in [
        (&["--owner", "bob"][..], vec!["https://evil.example/ops"]),
        (&["--agent", "runner"][..], vec!["https://evil.example/ops"]),
        (&["--method", "POST"][..], vec!["https://evil.example/x"]),
        (&["--session", "s2"][..], vec!["https://evil.example/ops"]),
        (
            &["--url-contains", "github"][..],
            vec!["https://github.com/a"],
        ),
        (
            &[
                "--since",
                "2025-12-08T20:58:50Z",
                "--until",
                "2025-12-08T20:59:00Z",
            ][..],
            vec!["https://evil.example/ops", "https://evil.example/x"],
        ),
        (&["--since", "15m"][..], vec![]),
        (&["--conflict"][..], vec![]),
    ] {
        let mut all_args = vec!["--json"];
        all_args.extend_from_slice(args);
        let (code, out, err) = logs(data, &all_args, None).await;
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert_eq!(urls(&json_lines(&out)), expected, "{args:?}");
    }

    // The table fits the terminal; the hostile URL is quoted, the long one
    // cut.
    let (code, table, err) = logs(data, &[], Some("80")).await;
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    assert!(lines[0].starts_with("TIME"), "{table}");
    assert!(
        lines[0].contains("WORKSPACE") && lines[0].ends_with("URL"),
        "{table}"
    );
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{table}");
    assert!(
        !table.contains('\u{1b}'),
        "escape sequences reach the terminal: {table:?}"
    );
    assert!(table.contains(r#""https://evil.example/\x1"#), "{table}");
    assert!(
        table.contains("https://api.example/zzz") && table.contains('…'),
        "{table}"
    );
    assert!(
        lines[1].starts_with("2025-12-08 20:58:51.000  ops"),
        "{table}"
    );
    // Without a terminal (and no COLUMNS), nothing is cut.
    let (_, wide, _) = logs(data, &[], None).await;
    assert!(wide.contains(&"z".repeat(200)), "{wide}");
    assert!(
        wide.contains(r#""https://evil.example/\x1b[2Jy""#),
        "{wide}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsf_format_prints_valid_http_activity_events() {
    let (dirs, mut server, _dev, _ops) = server_with_records().await;
    let data = &dirs.server;
    let (code, out, err) = logs(data, &["--json"], None).await;
    assert_eq!(code, Some(0), "{err}");
    let records = json_lines(&out);
    let (code, out, err) = logs(data, &["--format", "ocsf"], None).await;
    assert_eq!(code, Some(0), "{err}");
    let events = json_lines(&out);
    assert_eq!(events.len(), records.len());
    let schema: serde_json::Value = serde_json::from_str(include_str!(
        "../../server/tests/data/ocsf-1.3.0-http-activity.schema.json"
    ))
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (event, record) in events.iter().zip(&records) {
        let errors: Vec<String> = validator
            .iter_errors(event)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?} in {event:#}");
        assert_eq!(event["metadata"]["uid"], record["id"].to_string());
        assert_eq!(
            event["http_request"]["url"]["url_string"],
            record["http_url"]
        );
        let denied = record["decision"] == "deny";
        assert_eq!(event["action_id"], if denied { 2 } else { 1 });
        assert_eq!(event["metadata"]["correlation_uid"], record["session_id"]);
        assert_eq!(event["metadata"]["sequence"], record["sequence"]);
    }
    // The terminal escape in a URL is escaped like --json does it.
    assert!(!out.contains('\u{1b}'));
    // --format json is --json.
    let (code, json, _) = logs(data, &["--format", "json"], None).await;
    assert_eq!((code, json_lines(&json).len()), (Some(0), records.len()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_is_wrong_with_usage_and_runtime_exit_codes() {
    let (dirs, mut server, _dev, _ops) = server_with_records().await;
    let data = &dirs.server;
    // Usage and configuration: exit 2.
    for (args, needle) in [
        (&["--since", "yesterday"][..], "--since: "),
        (
            &["--since", "1h", "--until", "2h"][..],
            "must be before until",
        ),
        (&["--token", "wrong-token-wrong-token"][..], "invalid token"),
        (&["--decision", "maybe"][..], "invalid value 'maybe'"),
        (&["--limit", "0"][..], "--limit"),
    ] {
        let (code, out, err) = logs(data, args, None).await;
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
    // A workspace or session that does not exist: exit 1, one line.
    for (args, needle) in [
        (&["--workspace", "nope"][..], "no workspace named \"nope\""),
        (
            &["sessions", "--workspace", "nope"][..],
            "no workspace named \"nope\"",
        ),
        (
            &["session", "no-such-session", "--workspace", "dev"][..],
            "no-such-session",
        ),
        (&["session", "no-such-session"][..], "no live workspace has"),
    ] {
        let (code, out, err) = logs(data, args, None).await;
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_one_line(&err);
        assert!(out.is_empty(), "{args:?}: {out}");
    }
    // No server: the message is one line that ends in a newline, so the
    // shell's prompt starts on a line of its own.
    let empty = tempfile::tempdir().unwrap();
    for args in [&[][..], &["sessions"], &["session", "s1"]] {
        let (code, _, err) = logs(empty.path(), args, None).await;
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("no server url"), "{args:?}: {err}");
        assert_one_line(&err);
    }

    let url = server.url.clone();
    server.stop().await;
    for args in [&[][..], &["sessions"]] {
        let mut args = args.to_vec();
        args.extend(["--url", &url]);
        let (code, _, err) = logs(data, &args, None).await;
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("cannot reach"), "{args:?}: {err}");
        assert!(err.contains("Connection refused"), "the cause: {err}");
        assert_one_line(&err);
    }
}

/// `warden ARGS` with the server's data dir and `env` in the environment;
/// its stdout, once it succeeded.
async fn run_with_env(data: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = warden();
    command.args(args).env("WARDEN_DATA_DIR", data);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .expect("warden did not finish")
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(0), "{args:?} {env:?}: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// `warden logs: MESSAGE\n`: one line, ended.
fn assert_one_line(stderr: &str) {
    assert!(stderr.starts_with("warden logs: "), "{stderr:?}");
    assert!(stderr.ends_with('\n'), "no newline at the end: {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flag_of_logs_and_workspace_reads_its_environment_variable() {
    let (dirs, server, _dev, _ops) = server_with_records().await;
    let data = dirs.server.to_str().unwrap();
    let run = |args, env| run_with_env(data, args, env);
    // The filters, the limit and the output form.
    let out = run(
        &["logs"],
        &[
            ("WARDEN_LOGS_JSON", "true"),
            ("WARDEN_LOGS_DECISION", "deny"),
            ("WARDEN_LOGS_WORKSPACE", "dev"),
            ("WARDEN_LOGS_URL_CONTAINS", "evil"),
            ("WARDEN_LOGS_METHOD", "POST"),
            ("WARDEN_LOGS_SINCE", "2025-12-08T20:58:50Z"),
            ("WARDEN_LOGS_UNTIL", "2025-12-08T20:59:00Z"),
            ("WARDEN_LOGS_OWNER", "alice"),
            ("WARDEN_LOGS_AGENT", "main"),
            ("WARDEN_LOGS_SESSION", "s1"),
            ("WARDEN_LOGS_LIMIT", "5"),
        ],
    )
    .await;
    assert_eq!(urls(&json_lines(&out)), ["https://evil.example/x"]);
    let out = run(
        &["logs"],
        &[("WARDEN_LOGS_JSON", "1"), ("WARDEN_LOGS_LIMIT", "2")],
    )
    .await;
    assert_eq!(json_lines(&out).len(), 2);
    // No record conflicts here: the flag from the environment filters all.
    let out = run(
        &["logs"],
        &[("WARDEN_LOGS_JSON", "1"), ("WARDEN_LOGS_CONFLICT", "true")],
    )
    .await;
    assert!(out.is_empty(), "{out}");
    // The session commands share the workspace and output variables.
    let out = run(
        &["logs", "sessions"],
        &[("WARDEN_LOGS_JSON", "1"), ("WARDEN_LOGS_WORKSPACE", "ops")],
    )
    .await;
    let sessions = json_lines(&out);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["session_id"], "s2");
    let out = run(
        &["logs", "session", "s1"],
        &[
            ("WARDEN_LOGS_JSON", "1"),
            ("WARDEN_LOGS_SESSION_LIMIT", "1"),
        ],
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["records"].as_array().unwrap().len(), 1);
    assert_eq!(report["workspace_name"], "dev");
    // Workspace commands.
    let out = run(
        &["workspace", "create"],
        &[
            ("WARDEN_WORKSPACE_NAME", "from-env"),
            ("WARDEN_WORKSPACE_OWNER", "carol"),
            ("WARDEN_WORKSPACE_AGENT", "bot"),
            ("WARDEN_WORKSPACE_STARTUP_SCRIPT", "true"),
            ("WARDEN_WORKSPACE_JSON", "1"),
        ],
    )
    .await;
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["workspace_name"], "from-env");
    assert_eq!(created["owner"], "carol");
    assert_eq!(created["agent_name"], "bot");
    let out = run(&["workspace", "list"], &[("WARDEN_WORKSPACE_JSON", "1")]).await;
    let listed = json_lines(&out);
    let mine = listed
        .iter()
        .find(|w| w["workspace_name"] == "from-env")
        .unwrap();
    assert_eq!(mine["startup_script"], "true");
    // The connection: URL and token from the environment, no data dir.
    let token = std::fs::read_to_string(dirs.server.join("admin-token")).unwrap();
    let nowhere = tempfile::tempdir().unwrap();
    let mut command = warden();
    command
        .args(["workspace", "list", "--json"])
        .env("WARDEN_DATA_DIR", nowhere.path())
        .env("WARDEN_URL", &server.url)
        .env("WARDEN_ADMIN_TOKEN", token.trim());
    let output = command.output().await.unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        json_lines(&String::from_utf8(output.stdout).unwrap()).len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_a_session_report_show_gaps_and_drops() {
    let dirs = dirs();
    let mut server = ServerProcess::start(&dirs.server, &[], BoundaryLines::Count).await;
    let dev = server.create_workspace("dev", "alice", &[]).await;
    let session = "0b6f8f0e-7a0c-4d7e-9a53-1f2d3c4b5a69";
    let mut b = batch(
        session,
        (0..10)
            .filter(|s| ![3, 4, 7].contains(s))
            .map(|s| {
                log(
                    s,
                    s % 2 == 0,
                    "GET",
                    &format!("https://example.com/{s}"),
                    i64::from(s),
                )
            })
            .collect(),
    );
    b.client_status.push(agentapi::ClientStatus {
        session_id: session.into(),
        status: Some(wire::BoundaryStatus {
            dropped_channel_full: 2,
            dropped_batch_full: 0,
            final_sequence_number: Some(12),
            ..Default::default()
        }),
    });
    report(&server, &dev, vec![b]).await;
    report(
        &server,
        &dev,
        vec![batch("other", vec![log(0, true, "GET", "https://x/", 0)])],
    )
    .await;
    let data = &dirs.server;

    let (code, out, err) = logs(data, &["sessions", "--workspace", "dev", "--json"], None).await;
    assert_eq!(code, Some(0), "{err}");
    let sessions = json_lines(&out);
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["session_id"], "other");
    let s = &sessions[1];
    assert_eq!(s["workspace_name"], "dev");
    assert_eq!(
        (
            &s["records"],
            &s["first_sequence"],
            &s["last_sequence"],
            &s["final_sequence"]
        ),
        (&7.into(), &0.into(), &9.into(), &12.into())
    );
    assert_eq!(
        (&s["missing"], &s["reported_lost"], &s["unexplained"]),
        (&6.into(), &2.into(), &4.into())
    );

    let (code, table, err) = logs(data, &["sessions"], Some("200")).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .starts_with("WORKSPACE  RECORDS"),
        "{table}"
    );
    assert!(table.contains(session), "{table}");

    // Without --workspace, the one workspace with the session is found.
    let (code, out, err) = logs(data, &["session", session, "--json"], None).await;
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        report["gaps"],
        serde_json::json!([{"first": 3, "last": 4}, {"first": 7, "last": 7}, {"first": 10, "last": 12}])
    );
    assert_eq!(report["session"]["losses"][0]["reason"], "channel_full");
    let seqs: Vec<i64> = report["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [0, 1, 2, 5, 6, 8, 9]);

    let (code, text, err) = logs(
        data,
        &["session", session, "--workspace", "dev", "--limit", "2"],
        Some("120"),
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        text.contains("missing      6 in 3 gaps: 3-4, 7, 10-12"),
        "{text}"
    );
    assert!(
        text.contains("reported     2 lost: client channel_full 2"),
        "{text}"
    );
    assert!(text.contains("unexplained  4"), "{text}");
    assert!(
        text.contains("sequence     first 0, last 9, final 12"),
        "{text}"
    );
    assert!(text.contains("SEQ"), "{text}");
    assert!(err.contains("raise --limit"), "{err}");

    let (code, _, err) = logs(data, &["session", "nope"], None).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no live workspace has a session nope"),
        "{err}"
    );
    server.stop().await;
}

/// A `warden logs --follow` child with its stdout read line by line.
struct Follower {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Follower {
    fn start(data_dir: &Path, args: &[&str]) -> Follower {
        let mut command = warden();
        command
            .args(["logs", "--follow", "--json"])
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Follower { child, lines }
    }

    /// The next `n` records it prints.
    async fn records(&mut self, n: usize) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let line = tokio::time::timeout(WAIT, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("the follower printed {} of {n} records", out.len()))
                .unwrap()
                .expect("the follower ended");
            out.push(serde_json::from_str(&line).unwrap());
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_new_records_across_a_server_restart_once_each() {
    let (dirs, mut server, dev, _ops) = server_with_records().await;
    let mut follower = Follower::start(&dirs.server, &["--workspace", "dev", "--limit", "2"]);
    // The two newest of dev first, oldest of them first.
    let backlog = follower.records(2).await;
    assert_eq!(
        urls(&backlog),
        [
            "https://evil.example/\u{1b}[2Jy",
            &format!("https://api.example/{}", "z".repeat(200))
        ]
    );
    let mut seen: Vec<i64> = backlog.iter().map(|r| r["id"].as_i64().unwrap()).collect();

    report(
        &server,
        &dev,
        vec![batch(
            "f1",
            (0..3)
                .map(|s| log(s, false, "GET", &format!("https://new.example/{s}"), 100))
                .collect(),
        )],
    )
    .await;
    let new = follower.records(3).await;
    assert_eq!(
        urls(&new),
        [
            "https://new.example/0",
            "https://new.example/1",
            "https://new.example/2"
        ]
    );
    seen.extend(new.iter().map(|r| r["id"].as_i64().unwrap()));

    // The server goes away and comes back on the same address; the follower
    // reconnects and picks up where it was.
    server.stop().await;
    server.start_again().await;
    report(
        &server,
        &dev,
        vec![batch(
            "f2",
            (0..4)
                .map(|s| log(s, true, "GET", &format!("https://after.example/{s}"), 200))
                .collect(),
        )],
    )
    .await;
    let after = follower.records(4).await;
    assert_eq!(urls(&after)[0], "https://after.example/0");
    seen.extend(after.iter().map(|r| r["id"].as_i64().unwrap()));
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "no record twice: {seen:?}"
    );
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 9);

    // Ctrl-C ends it cleanly.
    let pid = Pid::from_raw(follower.child.id().unwrap() as i32).unwrap();
    kill_process(pid, Signal::INT).unwrap();
    let status = tokio::time::timeout(WAIT, follower.child.wait())
        .await
        .expect("the follower did not stop")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    server.stop().await;
}
