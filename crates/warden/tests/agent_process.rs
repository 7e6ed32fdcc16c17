//! `warden agent` as a real child process, against the scripted fake
//! control plane (crates/agent/tests/support) running in the test process:
//! crash (kill -9) and restart, restart during an outage, COMMAND's
//! environment and exit code, a live socket, SIGTERM.

#[path = "../../agent/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use support::{AckClient, Action, FakeControlPlane, WAIT, logs_frame, request, urls};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
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

/// A running `warden agent` and its stderr, line by line.
struct AgentProcess {
    child: Child,
    stderr: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl AgentProcess {
    fn spawn(cp: &FakeControlPlane, dirs: &Dirs, data: &Path, command: &[&str]) -> AgentProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.arg("agent")
            .arg("--url")
            .arg(cp.url())
            .arg("--data-dir")
            .arg(data)
            .arg("--boundary-log-proxy-socket-path")
            .arg(&dirs.socket)
            .args(["--shutdown-grace", "3s", "--max-retry-delay", "200ms"])
            .env("CODER_AGENT_TOKEN", TOKEN)
            .env("WARDEN_LOG", "info")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if !command.is_empty() {
            cmd.arg("--").args(command);
        }
        let mut child = cmd.spawn().unwrap();
        let (tx, stderr) = mpsc::unbounded_channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
        AgentProcess {
            child,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle`.
    async fn wait_line(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.stderr.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Ok(None) => panic!("stderr ended before {needle:?}:\n{}", self.seen.join("\n")),
                Err(_) => panic!("no {needle:?} on stderr:\n{}", self.seen.join("\n")),
            }
        }
    }

    async fn ready(&mut self) {
        self.wait_line("warden agent boundary log socket at").await;
    }

    /// Waits for the process to exit; its exit code (`None`: a signal).
    async fn exit(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the agent did not exit")
            .unwrap();
        // Collect what is left of stderr for failure messages.
        while let Ok(line) = self.stderr.try_recv() {
            self.seen.push(line);
        }
        status.code()
    }

    fn terminate(&self) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn after_kill_9_and_a_restart_every_acknowledged_record_arrives_once() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut agent = AgentProcess::spawn(&cp, &dirs, &dirs.data, &[]);
    agent.ready().await;

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
    let mut reference = support::connect(&dirs.socket).await;
    let unsure = urls("unsure.example", 0..50);
    for chunk in unsure.chunks(10) {
        reference
            .write_all(&logs_frame(request("s-unsure", 0, chunk)))
            .await
            .unwrap();
    }

    agent.child.start_kill().unwrap(); // SIGKILL
    assert_eq!(agent.exit().await, None, "killed by a signal");
    drop((client, reference));

    cp.set_down(false);
    let mut agent = AgentProcess::spawn(&cp, &dirs, &dirs.data, &[]);
    agent.ready().await;
    let expected = acked.clone();
    cp.wait_until("every acknowledged record arrived", |s| {
        let have: std::collections::HashSet<String> = s.urls().into_iter().collect();
        expected.iter().all(|u| have.contains(u))
    })
    .await;
    agent.terminate();
    assert_eq!(agent.exit().await, Some(0), "{}", agent.seen.join("\n"));

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
    let mut first = AgentProcess::spawn(&cp, &dirs, &dirs.data, &["true"]);
    first.ready().await;
    assert_eq!(first.exit().await, Some(0), "{}", first.seen.join("\n"));

    cp.set_down(true);
    let env_file = dirs.root.join("env");
    let script = format!(
        "env > '{env}'; if [ -S \"$CODER_BOUNDARY_LOG_SOCKET\" ]; then echo SOCKET_UP >> '{env}'; fi; exit 5",
        env = env_file.display()
    );
    let mut second = AgentProcess::spawn(&cp, &dirs, &dirs.data, &["sh", "-c", &script]);
    second.ready().await;
    assert_eq!(
        second.exit().await,
        Some(5),
        "COMMAND's exit code:\n{}",
        second.seen.join("\n")
    );

    let env = std::fs::read_to_string(&env_file).unwrap();
    let socket = dirs.socket.display().to_string();
    for expected in [
        format!("CODER_BOUNDARY_LOG_SOCKET={socket}"),
        format!("CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH={socket}"),
        format!("CODER_WORKSPACE_ID={}", support::manifest().workspace_id),
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
        !second.seen.iter().any(|l| l.contains(TOKEN)),
        "the token appears in the agent's log"
    );
}

#[tokio::test]
async fn a_second_agent_on_a_live_socket_exits_2() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut first = AgentProcess::spawn(&cp, &dirs, &dirs.data, &[]);
    first.ready().await;
    let mut second = AgentProcess::spawn(&cp, &dirs, &dirs.root.join("other-data"), &[]);
    assert_eq!(second.exit().await, Some(2));
    assert!(
        second
            .seen
            .iter()
            .any(|l| l.contains("another process is serving the socket")),
        "{}",
        second.seen.join("\n")
    );
    // The first one still serves.
    let expected = urls("still.example", 0..3);
    support::send_and_close(&dirs.socket, &logs_frame(request("s", 0, &expected))).await;
    cp.wait_until("records arrived", |s| s.urls() == sorted(expected.clone()))
        .await;
    first.terminate();
    assert_eq!(first.exit().await, Some(0));
}

#[tokio::test]
async fn sigterm_leaves_unacknowledged_records_for_the_next_start() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut agent = AgentProcess::spawn(&cp, &dirs, &dirs.data, &[]);
    agent.ready().await;
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
    assert!(
        agent.seen.iter().any(|l| l.contains("stay spooled")),
        "{}",
        agent.seen.join("\n")
    );

    cp.set_down(false);
    let mut agent = AgentProcess::spawn(&cp, &dirs, &dirs.data, &[]);
    agent.ready().await;
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
    let mut agent = AgentProcess::spawn(&cp, &dirs, &dirs.data, &["sleep", "60"]);
    agent.ready().await;
    agent.terminate();
    assert_eq!(
        agent.exit().await,
        Some(128 + 15),
        "{}",
        agent.seen.join("\n")
    );
}
