//! The whole pipeline with the real binary as separate processes: `warden
//! server`, `warden workspace create`, `warden agent` running a COMMAND
//! (which runs `warden emit`, finding the socket through the environment
//! the agent gave it), and clients of every framing writing at once: raw tag
//! 0 and tag 1 frames and a `warden_client` auditor (tag 2, acknowledged).
//! Every record must end up stored once, attributed to the workspace and to
//! the process that wrote it, with one boundary line on the server's stderr.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::BytesMut;
use support::agent::AgentSetup;
use support::process::BoundaryLines;
use support::server::ServerProcess;
use support::{dirs, eventually};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use warden_client::{AckMode, Auditor, Config, Record};
use warden_proto::codec::{Frame, Tag, encode_frame};
use warden_proto::wire::{BoundaryLog, ReportBoundaryLogsRequest, Timestamp, boundary_log};

/// Records per client.
const PER_CLIENT: i32 = 300;
/// Records per raw frame.
const PER_FRAME: i32 = 10;

/// What a record should look like once stored.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Expected {
    session_id: Option<String>,
    /// Shown only for records of a session.
    sequence: Option<i32>,
    allowed: bool,
    method: String,
    url: String,
    matched_rule: String,
}

impl Expected {
    /// A record as `warden logs --json` shows it.
    fn of(shown: &serde_json::Value) -> Expected {
        let text = |key: &str| shown[key].as_str().map(str::to_owned);
        Expected {
            session_id: text("session_id"),
            sequence: shown["sequence"].as_i64().map(|s| s as i32),
            allowed: match text("decision").as_deref() {
                Some("allow") => true,
                Some("deny") => false,
                other => panic!("decision {other:?} in {shown}"),
            },
            method: text("http_method").unwrap_or_default(),
            url: text("http_url").unwrap_or_default(),
            matched_rule: text("matched_rule").unwrap_or_default(),
        }
    }
}

/// Record `i` of the client named `client`: every third one denied.
fn expected(client: &str, session: Option<&str>, i: i32) -> Expected {
    let allowed = i % 3 != 0;
    Expected {
        session_id: session.map(str::to_owned),
        sequence: session.map(|_| i),
        allowed,
        method: if allowed { "GET" } else { "POST" }.to_owned(),
        url: format!("https://{client}.example/item/{i}"),
        matched_rule: if allowed {
            format!("domain={client}.example")
        } else {
            String::new()
        },
    }
}

fn wire_log(e: &Expected) -> BoundaryLog {
    BoundaryLog {
        allowed: e.allowed,
        time: Some(Timestamp {
            seconds: 1_765_227_526,
            nanos: seq_of(e),
        }),
        resource: Some(boundary_log::Resource::HttpRequest(
            boundary_log::HttpRequest {
                method: e.method.clone(),
                url: e.url.clone(),
                matched_rule: e.matched_rule.clone(),
            },
        )),
        sequence_number: seq_of(e),
    }
}

/// The record's number, from its URL (records of no session show none).
fn seq_of(e: &Expected) -> i32 {
    e.url.rsplit('/').next().unwrap().parse().unwrap()
}

/// A reference-style client: writes `records` in frames of `tag`, no
/// acknowledgements, then closes.
async fn raw_client(socket: &std::path::Path, tag: Tag, session: &str, records: &[Expected]) {
    let mut stream = UnixStream::connect(socket).await.unwrap();
    for chunk in records.chunks(PER_FRAME as usize) {
        let request = ReportBoundaryLogsRequest {
            logs: chunk.iter().map(wire_log).collect(),
            session_id: session.to_owned(),
            confined_process_name: format!("tag{}", tag.byte()),
            ..Default::default()
        };
        let mut frame = BytesMut::new();
        encode_frame(tag, &Frame::Logs(request), &mut frame).unwrap();
        stream.write_all(&frame).await.unwrap();
        // Let the other clients' frames interleave with these.
        tokio::task::yield_now().await;
    }
    stream.shutdown().await.unwrap();
}

/// The JSON line `warden emit` reads for `e`.
fn emit_line(e: &Expected) -> String {
    let mut value = serde_json::json!({
        "allowed": e.allowed,
        "method": e.method,
        "url": e.url,
        "time": "2025-12-08T20:58:46.5Z",
    });
    if !e.matched_rule.is_empty() {
        value["rule"] = e.matched_rule.clone().into();
    }
    value.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_every_framing_reach_the_store_and_the_stderr_lines_once() {
    let dirs = dirs();
    let mut server = ServerProcess::start(&dirs.server, &[], BoundaryLines::Keep).await;
    let ws = server.create_workspace("e2e-ws", "alice", &[]).await;

    // COMMAND: record its environment, run `warden emit` on the socket it
    // finds there, then wait for the test's word and exit with emit's code.
    let emit_records: Vec<Expected> = (0..PER_CLIENT).map(|i| expected("emit", None, i)).collect();
    let input: String = emit_records.iter().map(|e| emit_line(e) + "\n").collect();
    let input_file = dirs.root.join("emit-input.jsonl");
    std::fs::write(&input_file, input).unwrap();
    let env_file = dirs.root.join("command-env");
    let warden = env!("CARGO_BIN_EXE_warden");
    let script = r#"env > "$1"; "$2" emit --json --process-name sandboxed-tool < "$3" > "$4"; code=$?; read go; exit $code"#;
    let emit_json = dirs.root.join("emit.json");
    let command = [
        "sh",
        "-c",
        script,
        "sh",
        env_file.to_str().unwrap(),
        warden,
        input_file.to_str().unwrap(),
        emit_json.to_str().unwrap(),
    ];
    let setup = AgentSetup::new(&server.url, &ws.token, &dirs.agent, &dirs.socket);
    let mut agent = setup.start(&command).await;

    // Tag 0 (no session id, like the earliest clients), tag 1 and tag 2 at
    // once, beside emit.
    let tag0: Vec<Expected> = (0..PER_CLIENT).map(|i| expected("tag0", None, i)).collect();
    let session1 = uuid::Uuid::new_v4().to_string();
    let tag1: Vec<Expected> = (0..PER_CLIENT)
        .map(|i| expected("tag1", Some(&session1), i))
        .collect();
    let mut config = Config::new(&dirs.socket);
    config.batch_interval = Duration::from_millis(20);
    config.confined_process_name = "auditor".into();
    let auditor = Auditor::start(config).unwrap();
    let session2 = auditor.session_id().to_string();
    let tag2: Vec<Expected> = (0..PER_CLIENT)
        .map(|i| expected("tag2", Some(&session2), i))
        .collect();
    let producer = {
        let auditor = auditor.clone();
        let records = tag2.clone();
        async move {
            for e in &records {
                let record = if e.allowed {
                    Record::allow(&e.method, &e.url, &e.matched_rule)
                } else {
                    Record::deny(&e.method, &e.url)
                };
                let seq = seq_of(e);
                assert_eq!(auditor.record(record).await, Ok(seq));
                if seq % PER_FRAME == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    };
    tokio::join!(
        raw_client(&dirs.socket, Tag::Legacy, "", &tag0),
        raw_client(&dirs.socket, Tag::V1, &session1, &tag1),
        producer,
    );
    let summary = auditor.close().await.unwrap();
    assert_eq!(summary.acknowledgements, AckMode::Confirmed, "{summary}");
    assert!(summary.is_complete(), "{summary}");

    // emit is done once its summary is out; then COMMAND may finish, and
    // the agent exits with its code once the spool is acknowledged.
    agent.wait_line("warden emit: read").await;
    agent.say("go").await;
    assert_eq!(agent.exit().await, Some(0), "{}", agent.log());
    let emit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&emit_json).unwrap()).unwrap();
    assert_eq!(emit["confirmed"], PER_CLIENT, "{emit}");
    let emit_session = emit["session_id"].as_str().unwrap().to_owned();

    // Stored: each record exactly once, as sent, as the query API shows.
    let shown = server
        .logs(&["--workspace", "e2e-ws", "--limit", "100000"])
        .await;
    let mut want: Vec<Expected> = Vec::new();
    want.extend(tag0.iter().cloned());
    want.extend(tag1.iter().cloned());
    want.extend(tag2.iter().cloned());
    want.extend(emit_records.iter().map(|e| Expected {
        session_id: Some(emit_session.clone()),
        sequence: Some(seq_of(e)),
        ..e.clone()
    }));
    want.sort();
    let mut got: Vec<Expected> = shown.iter().map(Expected::of).collect();
    got.sort();
    assert_eq!(got.len(), want.len(), "records stored");
    assert_eq!(got, want);

    // Attribution: the workspace of the agent, the socket peer of each
    // client and the name it sent.
    let me = u64::from(std::process::id());
    for r in &shown {
        assert_eq!(r["conflict"], false, "{r}");
        assert_eq!(r["workspace_id"], ws.id.as_str(), "{r}");
        assert_eq!(r["workspace_name"], "e2e-ws", "{r}");
        let url = r["http_url"].as_str().unwrap();
        let client = url
            .trim_start_matches("https://")
            .split('.')
            .next()
            .unwrap();
        let pid = r["peer"]["pid"].as_u64().unwrap();
        match client {
            "emit" => {
                assert_eq!(r["process"], "sandboxed-tool", "{r}");
                assert_eq!(r["peer"]["comm"], "warden", "{r}");
                let exe = r["peer"]["exe"].as_str().unwrap();
                assert_eq!(
                    std::fs::canonicalize(exe).unwrap(),
                    std::fs::canonicalize(warden).unwrap()
                );
                assert_ne!(pid, me);
            }
            "tag0" | "tag1" => {
                assert_eq!(pid, me, "{r}");
                assert_eq!(r["process"], client, "{r}");
            }
            "tag2" => {
                assert_eq!(pid, me, "{r}");
                assert_eq!(r["process"], "auditor", "{r}");
            }
            other => panic!("a record from nowhere: {other} {r}"),
        }
    }

    // One boundary line per record, for this workspace.
    let total = want.len() as u64;
    eventually("every record has its line", || {
        let printed = server.process.boundary_lines();
        async move { printed >= total }
    })
    .await;
    server.stop().await;
    assert_eq!(server.boundary_lines(), total, "one line per record");
    let lines: Vec<&String> = server
        .process
        .lines()
        .iter()
        .filter(|l| l.starts_with("[API] "))
        .collect();
    let urls: BTreeSet<&str> = lines
        .iter()
        .map(|line| {
            assert!(line.contains(&format!("workspace.id={} ", ws.id)), "{line}");
            assert!(line.contains(r#"workspace.name="e2e-ws""#), "{line}");
            assert!(line.contains(r#"workspace.owner="alice""#), "{line}");
            let level = if line.contains(" decision=allow ") {
                "[info]"
            } else {
                assert!(line.contains(" decision=deny "), "{line}");
                "[warn]"
            };
            assert!(line.contains(level), "{line}");
            let start = line.find("http.url=\"").unwrap() + "http.url=\"".len();
            let end = start + line[start..].find('"').unwrap();
            &line[start..end]
        })
        .collect();
    let want_urls: BTreeSet<&str> = want.iter().map(|e| e.url.as_str()).collect();
    assert_eq!(urls, want_urls);
    let sessioned = lines.iter().filter(|l| l.contains("session.id=")).count();
    assert_eq!(sessioned as i32, 3 * PER_CLIENT, "tag 0 carried no session");

    // COMMAND saw the workspace's environment, and not the agent's token.
    let env = std::fs::read_to_string(&env_file).unwrap();
    let socket = dirs.socket.display().to_string();
    for expected in [
        format!("CODER_BOUNDARY_LOG_SOCKET={socket}"),
        format!("CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH={socket}"),
        format!("CODER_WORKSPACE_ID={}", ws.id),
        "CODER_WORKSPACE_NAME=e2e-ws".to_owned(),
        "CODER_WORKSPACE_OWNER_NAME=alice".to_owned(),
        format!("CODER_WORKSPACE_AGENT_NAME={}", ws.agent_name),
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "missing {expected}:\n{env}"
        );
    }
    assert!(
        !env.contains(&ws.token),
        "the agent token leaked to COMMAND"
    );
    assert!(
        !agent.log().contains(&ws.token),
        "the token is in the agent's log"
    );
}
