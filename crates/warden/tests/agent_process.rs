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

/// Starts `warden agent` for the fake control plane with `args` and `env`
/// (no token from the default environment), as `uid` when given.
fn spawn_agent_with(
    cp: &FakeControlPlane,
    dirs: &Dirs,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    uid: Option<u32>,
    command: &[&str],
) -> WardenProcess {
    let mut cmd = warden();
    cmd.arg("agent")
        .arg("--url")
        .arg(cp.url())
        .arg("--data-dir")
        .arg(&dirs.data)
        .arg("--boundary-log-proxy-socket-path")
        .arg(&dirs.socket)
        .args(["--shutdown-grace", "3s", "--max-retry-delay", "200ms"])
        .args(args)
        .env_remove("CODER_AGENT_TOKEN");
    for (key, value) in env {
        cmd.env(key, value);
    }
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    if !command.is_empty() {
        cmd.arg("--").args(command);
    }
    WardenProcess::spawn("warden agent", cmd, BoundaryLines::Keep)
}

/// Root may read any process's memory, so to see what a process of the
/// agent's own user can do, the test runs the agent as `nobody` when it
/// runs as root (in a directory `nobody` owns).
fn unprivileged(dirs: &Dirs) -> Option<u32> {
    const NOBODY: u32 = 65534;
    if rustix::process::geteuid().as_raw() != 0 {
        return None;
    }
    std::os::unix::fs::chown(&dirs.root, Some(NOBODY), Some(NOBODY)).unwrap();
    Some(NOBODY)
}

fn token_file(dirs: &Dirs, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dirs.root.join("agent.token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[tokio::test]
async fn a_token_file_others_can_read_is_refused_and_a_private_one_used() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let open = token_file(&dirs, 0o644);
    let mut refused = spawn_agent_with(
        &cp,
        &dirs,
        &["--token-file".as_ref(), open.as_os_str()],
        &[],
        None,
        &[],
    );
    assert_eq!(refused.exit().await, Some(2), "{}", refused.log());
    assert!(
        refused.log().contains("accessible by other users") && refused.log().contains("chmod 600"),
        "{}",
        refused.log()
    );
    assert!(!refused.log().contains(TOKEN));

    let private = token_file(&dirs, 0o600);
    let path = private.to_string_lossy().into_owned();
    let mut agent = spawn_agent_with(
        &cp,
        &dirs,
        &[],
        &[("WARDEN_AGENT_TOKEN_FILE", &path)],
        None,
        &[],
    );
    ready(&mut agent).await;
    let expected = urls("file.example", 0..3);
    fake::send_and_close(&dirs.socket, &logs_frame(request("s-file", 0, &expected))).await;
    cp.wait_until("records arrived", |s| s.urls() == sorted(expected.clone()))
        .await;
    agent.terminate();
    assert_eq!(agent.exit().await, Some(0), "{}", agent.log());
    assert!(!agent.log().contains("WARNING"), "{}", agent.log());
}

#[tokio::test]
async fn a_token_on_the_command_line_is_warned_about_and_wiped_from_it() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut agent = spawn_agent_with(
        &cp,
        &dirs,
        &["--token".as_ref(), TOKEN.as_ref()],
        &[],
        None,
        &[],
    );
    ready(&mut agent).await;
    assert!(
        agent
            .log()
            .contains("WARNING: --token puts the agent token on the command line"),
        "{}",
        agent.log()
    );
    // Every local user can read a process's command line: not the token.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", agent.pid())).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("--token"),
        "the flag itself stays"
    );
    assert!(
        !cmdline.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    // And it works.
    let expected = urls("argv.example", 0..2);
    fake::send_and_close(&dirs.socket, &logs_frame(request("s-argv", 0, &expected))).await;
    cp.wait_until("records arrived", |s| s.urls() == sorted(expected.clone()))
        .await;
    agent.terminate();
    assert_eq!(agent.exit().await, Some(0), "{}", agent.log());
}

#[tokio::test]
async fn command_cannot_read_the_agents_environment() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let uid = unprivileged(&dirs);
    let out = dirs.root.join("out");
    // COMMAND runs as the agent's user: it tries the agent's environment,
    // then waits to be told to finish.
    let script = format!(
        "cat /proc/$PPID/environ > '{out}.environ' 2> '{out}.err'; echo $? > '{out}.rc'; read line",
        out = out.display()
    );
    let mut agent = spawn_agent_with(
        &cp,
        &dirs,
        &[],
        &[("CODER_AGENT_TOKEN", TOKEN)],
        uid,
        &["sh", "-c", &script],
    );
    ready(&mut agent).await;
    let rc = out.with_extension("rc");
    support::eventually("COMMAND tried the agent's environment", || {
        let done = std::fs::read_to_string(&rc).is_ok_and(|s| s.ends_with('\n'));
        async move { done }
    })
    .await;
    let err = std::fs::read_to_string(out.with_extension("err")).unwrap();
    assert_ne!(std::fs::read_to_string(&rc).unwrap().trim(), "0", "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert_eq!(std::fs::read(out.with_extension("environ")).unwrap(), b"");
    // The test itself: as root it may read the agent's environment, which
    // no longer holds the token; otherwise it is refused like COMMAND.
    match std::fs::read(format!("/proc/{}/environ", agent.pid())) {
        Ok(environ) => {
            assert!(
                uid.is_some(),
                "a process of the agent's user read its environment"
            );
            assert!(
                !environ.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
                "the token is still in the agent's environment"
            );
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}"),
    }
    agent.say("done\n").await;
    assert_eq!(agent.exit().await, Some(0), "{}", agent.log());
    assert!(!agent.log().contains("cannot wipe"), "{}", agent.log());
    assert!(!agent.log().contains("non-dumpable"), "{}", agent.log());
}

#[tokio::test]
async fn a_peer_named_with_control_characters_is_logged_on_one_quoted_line() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    // A program whose name (its comm) carries ESC, CR and LF.
    let evil = dirs.root.join("ev\u{1b}[31mil\rx\ny");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_warden"), &evil).unwrap();
    let mut agent = spawn_agent_with(
        &cp,
        &dirs,
        &["--allow-exe".as_ref(), "/bin/sh".as_ref()],
        &[("CODER_AGENT_TOKEN", TOKEN)],
        None,
        &[],
    );
    ready(&mut agent).await;
    let mut emit = tokio::process::Command::new(&evil)
        .arg("emit")
        .arg("--socket")
        .arg(&dirs.socket)
        .args(["--acks", "off"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = emit.stdin.take().unwrap();
    stdin
        .write_all(b"{\"allowed\": false, \"method\": \"GET\", \"url\": \"https://x.example/\"}\n")
        .await
        .unwrap();
    drop(stdin);
    let _ = emit.wait().await;
    let line = agent.wait_line("outside the allowlist").await;
    assert!(
        line.contains(r#"comm="ev\x1b[31mil\rx\ny""#),
        "the name is quoted: {line:?}"
    );
    let log = agent.log();
    assert!(!log.contains('\u{1b}') && !log.contains('\r'), "{log:?}");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("il") || l.starts_with("y")),
        "the warning was split: {log}"
    );
    agent.terminate();
    assert_eq!(agent.exit().await, Some(0), "{}", agent.log());
}
