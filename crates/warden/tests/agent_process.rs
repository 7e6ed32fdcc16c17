//! `warden agent` as a real child process, against the scripted fake
//! control plane (crates/agent/tests/support) running in the test process:
//! crash (kill -9) and restart, restart during an outage, COMMAND's
//! environment and exit code, a live socket, SIGTERM.

mod support;

use std::path::{Path, PathBuf};

use support::agent_support::{
    self as fake, AckClient, Action, FakeControlPlane, logs_frame, request, urls,
};
use support::process::{BoundaryLines, WardenProcess, warden};
use tokio::io::AsyncWriteExt;
use warden_proto::wire::frame_ack;

const TOKEN: &str = "process-test-token";

struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    socket: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    Dirs {
        root: tmp.path().to_owned(),
        data: tmp.path().join("data"),
        socket: tmp.path().join("boundary.sock"),
        _tmp: tmp,
    }
}

/// Starts `warden agent` for the fake control plane.
fn spawn_agent(cp: &FakeControlPlane, dirs: &Dirs, data: &Path, command: &[&str]) -> WardenProcess {
    let mut cmd = warden();
    cmd.arg("agent")
        .arg("--url")
        .arg(cp.url())
        .arg("--data-dir")
        .arg(data)
        .arg("--boundary-log-proxy-socket-path")
        .arg(&dirs.socket)
        .args(["--shutdown-grace", "3s", "--max-retry-delay", "200ms"])
        .env("CODER_AGENT_TOKEN", TOKEN);
    if !command.is_empty() {
        cmd.arg("--").args(command);
    }
    WardenProcess::spawn("warden agent", cmd, BoundaryLines::Keep)
}

async fn ready(agent: &mut WardenProcess) {
    agent.wait_line(support::agent::READY).await;
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn after_kill_9_and_a_restart_every_acknowledged_record_arrives_once() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut agent = spawn_agent(&cp, &dirs, &dirs.data, &[]);
    ready(&mut agent).await;

    // The first delivery is committed but its answer is lost, and the
    // control plane then goes away: the agent cannot know it was stored.
    cp.script([Action::CommitThenDrop]);
    let mut client = AckClient::connect(&dirs.socket).await;
    let mut acked = Vec::new();
    for f in 0..20 {
        let batch = urls("crash.example", f * 10..(f + 1) * 10);
        client
            .send(&logs_frame(request("s-crash", (f * 10) as i32, &batch)))
            .await;
        let ack = client.ack().await;
        assert_eq!(ack.outcome, frame_ack::Outcome::Durable as i32);
        assert_eq!(ack.frame, f as u64 + 1);
        acked.extend(batch);
        if f == 0 {
            cp.wait_until("the first batch was committed", |s| !s.committed.is_empty())
                .await;
            cp.set_down(true);
        }
    }
    // A reference client's records in flight at the crash may or may not
    // have been accepted; they must never arrive twice.
    let mut reference = fake::connect(&dirs.socket).await;
    let unsure = urls("unsure.example", 0..50);
    for chunk in unsure.chunks(10) {
        reference
            .write_all(&logs_frame(request("s-unsure", 0, chunk)))
            .await
            .unwrap();
    }

    agent.kill().await; // SIGKILL
    drop((client, reference));

    cp.set_down(false);
    let mut agent = spawn_agent(&cp, &dirs, &dirs.data, &[]);
    ready(&mut agent).await;
    let expected = acked.clone();
    cp.wait_until("every acknowledged record arrived", |s| {
        let have: std::collections::HashSet<String> = s.urls().into_iter().collect();
        expected.iter().all(|u| have.contains(u))
    })
    .await;
    agent.terminate();
    assert_eq!(agent.exit().await, Some(0), "{}", agent.log());

    cp.with(|s| {
        let urls = s.urls();
        let mut unique = urls.clone();
        unique.dedup();
        assert_eq!(urls, unique, "no record was stored twice");
        assert!(
            s.deliveries.values().any(|n| *n >= 2),
            "the batch whose answer was lost was sent again with its id"
        );
    });
}

#[tokio::test]
async fn a_restart_during_an_outage_runs_the_socket_and_command_from_the_cached_manifest() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    // First run: the control plane is up; the manifest gets cached.
    let mut first = spawn_agent(&cp, &dirs, &dirs.data, &["true"]);
    ready(&mut first).await;
    assert_eq!(first.exit().await, Some(0), "{}", first.log());

    cp.set_down(true);
    let env_file = dirs.root.join("env");
    let script = format!(
        "env > '{env}'; if [ -S \"$CODER_BOUNDARY_LOG_SOCKET\" ]; then echo SOCKET_UP >> '{env}'; fi; exit 5",
        env = env_file.display()
    );
    let mut second = spawn_agent(&cp, &dirs, &dirs.data, &["sh", "-c", &script]);
    ready(&mut second).await;
    assert_eq!(
        second.exit().await,
        Some(5),
        "COMMAND's exit code:\n{}",
        second.log()
    );

    let env = std::fs::read_to_string(&env_file).unwrap();
    let socket = dirs.socket.display().to_string();
    for expected in [
        format!("CODER_BOUNDARY_LOG_SOCKET={socket}"),
        format!("CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH={socket}"),
        format!("CODER_WORKSPACE_ID={}", fake::manifest().workspace_id),
        "CODER_WORKSPACE_NAME=dev-ws".to_owned(),
        "CODER_WORKSPACE_OWNER_NAME=alice".to_owned(),
        "CODER_WORKSPACE_AGENT_NAME=main".to_owned(),
        "SOCKET_UP".to_owned(),
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "missing {expected}:\n{env}"
        );
    }
    assert!(
        !env.contains(TOKEN),
        "the agent token leaked to COMMAND:\n{env}"
    );
    assert!(
        !second.log().contains(TOKEN),
        "the token appears in the agent's log"
    );
}

#[tokio::test]
async fn a_second_agent_on_a_live_socket_exits_2() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut first = spawn_agent(&cp, &dirs, &dirs.data, &[]);
    ready(&mut first).await;
    let mut second = spawn_agent(&cp, &dirs, &dirs.root.join("other-data"), &[]);
    assert_eq!(second.exit().await, Some(2));
    assert!(
        second
            .log()
            .contains("another process is serving the socket"),
        "{}",
        second.log()
    );
    // The first one still serves.
    let expected = urls("still.example", 0..3);
    fake::send_and_close(&dirs.socket, &logs_frame(request("s", 0, &expected))).await;
    cp.wait_until("records arrived", |s| s.urls() == sorted(expected.clone()))
        .await;
    first.terminate();
    assert_eq!(first.exit().await, Some(0));
}

#[tokio::test]
async fn sigterm_leaves_unacknowledged_records_for_the_next_start() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut agent = spawn_agent(&cp, &dirs, &dirs.data, &[]);
    ready(&mut agent).await;
    cp.set_down(true);
    let mut client = AckClient::connect(&dirs.socket).await;
    let expected = urls("term.example", 0..10);
    client
        .send(&logs_frame(request("s-term", 0, &expected)))
        .await;
    assert_eq!(
        client.ack().await.outcome,
        frame_ack::Outcome::Durable as i32
    );
    drop(client);
    agent.terminate();
    assert_eq!(agent.exit().await, Some(0));
    assert!(!dirs.socket.exists(), "the socket file is removed");
    assert!(agent.log().contains("stay spooled"), "{}", agent.log());

    cp.set_down(false);
    let mut agent = spawn_agent(&cp, &dirs, &dirs.data, &[]);
    ready(&mut agent).await;
    cp.wait_until("the spooled records arrived", |s| {
        s.urls() == sorted(expected.clone())
    })
    .await;
    agent.terminate();
    assert_eq!(agent.exit().await, Some(0));
}

#[tokio::test]
async fn bad_flags_are_usage_errors() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["agent", "--url", "ftp://nowhere", "--token", "t"])
        .env_remove("CODER_AGENT_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not http:// or https://"), "{stderr}");
}

#[tokio::test]
async fn sigterm_is_passed_to_command_and_its_signal_becomes_the_exit_code() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut agent = spawn_agent(&cp, &dirs, &dirs.data, &["sleep", "60"]);
    ready(&mut agent).await;
    agent.terminate();
    assert_eq!(agent.exit().await, Some(128 + 15), "{}", agent.log());
}
