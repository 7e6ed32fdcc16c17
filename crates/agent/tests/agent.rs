//! The agent in-process, on real sockets, against the scripted fake control
//! plane in `support`: delivery across outages and lost acknowledgements,
//! the socket's protocol rules, peers, the acknowledged mode, commands and
//! shutdown.

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{AckClient, Action, FakeControlPlane, WAIT, frame, logs_frame, request, urls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warden_agent::{AgentConfig, AgentError, Events, FullPolicy, Outcome, RetryPolicy, Token};
use warden_proto::codec::{Frame, Tag};
use warden_proto::wire::{self, frame_ack};

const TOKEN: &str = "agent-token-1";

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        operator_delay: Duration::from_millis(300),
    }
}

struct Dirs {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    socket: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    Dirs {
        data: tmp.path().join("data"),
        socket: tmp.path().join("boundary.sock"),
        _tmp: tmp,
    }
}

fn config(cp: &FakeControlPlane, dirs: &Dirs) -> AgentConfig {
    let mut config = AgentConfig::new(cp.url(), Token::new(TOKEN), &dirs.data, &dirs.socket);
    config.shutdown_grace = Duration::from_secs(5);
    config
}

struct Ready {
    socket: Option<oneshot::Sender<PathBuf>>,
    metrics: Option<oneshot::Sender<SocketAddr>>,
}

impl Events for Ready {
    fn socket_ready(&mut self, path: &Path) {
        if let Some(tx) = self.socket.take() {
            let _ = tx.send(path.to_owned());
        }
    }

    fn metrics_ready(&mut self, addr: SocketAddr) {
        if let Some(tx) = self.metrics.take() {
            let _ = tx.send(addr);
        }
    }
}

struct Agent {
    socket: PathBuf,
    metrics: oneshot::Receiver<SocketAddr>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<Outcome, AgentError>>,
}

impl Agent {
    /// Starts an agent and waits until its socket accepts connections.
    async fn start(config: AgentConfig) -> Agent {
        let (socket_tx, socket_rx) = oneshot::channel();
        let (metrics_tx, metrics) = oneshot::channel();
        let shutdown = CancellationToken::new();
        let events = Ready {
            socket: Some(socket_tx),
            metrics: Some(metrics_tx),
        };
        let task = tokio::spawn(warden_agent::run(
            config,
            fast_retry(),
            events,
            shutdown.clone(),
        ));
        let socket = tokio::time::timeout(WAIT, socket_rx)
            .await
            .expect("the socket did not come up")
            .expect("the agent stopped before its socket came up");
        Agent {
            socket,
            metrics,
            shutdown,
            task,
        }
    }

    async fn stop(self) -> Outcome {
        self.shutdown.cancel();
        self.finish().await
    }

    async fn finish(self) -> Outcome {
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the agent did not stop")
            .unwrap()
            .unwrap()
    }
}

async fn send_records(
    socket: &Path,
    session: &str,
    prefix: &str,
    frames: usize,
    per_frame: usize,
) -> Vec<String> {
    let mut stream = support::connect(socket).await;
    let mut all = Vec::new();
    for f in 0..frames {
        let batch = urls(prefix, f * per_frame..(f + 1) * per_frame);
        stream
            .write_all(&logs_frame(request(
                session,
                (f * per_frame) as i32,
                &batch,
            )))
            .await
            .unwrap();
        all.extend(batch);
    }
    stream.shutdown().await.unwrap();
    all.sort();
    all
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn records_sent_while_the_control_plane_is_down_arrive_after_it_comes_back() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let agent = Agent::start(config(&cp, &dirs)).await;
    cp.set_down(true);

    // An acknowledged client proves the records were accepted while the
    // control plane was unreachable.
    let mut client = AckClient::connect(&agent.socket).await;
    let mut expected = Vec::new();
    for f in 0..5 {
        let batch = urls("outage.example", f * 10..(f + 1) * 10);
        client
            .send(&logs_frame(request("s-outage", (f * 10) as i32, &batch)))
            .await;
        expected.extend(batch);
    }
    for f in 1..=5u64 {
        let ack = client.ack().await;
        assert_eq!(
            (ack.frame, ack.outcome, ack.records),
            (f, frame_ack::Outcome::Durable as i32, 10)
        );
    }
    // A reference client too.
    expected.extend(send_records(&agent.socket, "s-ref", "ref.example", 3, 7).await);
    assert!(
        cp.with(|s| s.calls.is_empty()),
        "nothing got through while down"
    );

    cp.set_down(false);
    let expected = sorted(expected);
    cp.wait_until("every record arrived", |s| s.urls() == expected)
        .await;
    let outcome = agent.stop().await;
    assert!(outcome.drained);
    assert_eq!(outcome.exit_code, 0);
}

#[tokio::test]
async fn a_lost_acknowledgement_leads_to_a_resend_with_the_same_batch_id() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let agent = Agent::start(config(&cp, &dirs)).await;
    cp.script([Action::CommitThenDrop]);
    let expected = send_records(&agent.socket, "s-lost", "lost.example", 1, 10).await;

    cp.wait_until("the batch was delivered twice", |s| {
        s.deliveries.values().any(|n| *n >= 2)
    })
    .await;
    cp.with(|s| {
        let first: Vec<&str> = s.calls[0]
            .batches
            .iter()
            .map(|b| b.batch_id.as_str())
            .collect();
        let second: Vec<&str> = s.calls[1]
            .batches
            .iter()
            .map(|b| b.batch_id.as_str())
            .collect();
        assert_eq!(first, second, "the re-send carries the same batch ids");
        assert_eq!(s.committed.len(), 1);
        assert_eq!(s.urls(), expected, "stored once");
    });
    assert!(agent.stop().await.drained, "acknowledged after the re-send");
}

#[tokio::test]
async fn failed_calls_are_retried_until_accepted() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let agent = Agent::start(config(&cp, &dirs)).await;
    cp.script([
        Action::Fail(tonic::Code::Unavailable),
        Action::Fail(tonic::Code::Internal),
    ]);
    let expected = send_records(&agent.socket, "s-retry", "retry.example", 2, 5).await;
    cp.wait_until("every record arrived", |s| s.urls() == expected)
        .await;
    assert!(cp.with(|s| s.calls.len() >= 3));
    agent.stop().await;
}

#[tokio::test]
async fn a_revoked_token_keeps_records_spooled_until_it_is_accepted_again() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let agent = Agent::start(config(&cp, &dirs)).await;
    cp.with(|s| s.token = "rotated".into());
    let expected = send_records(&agent.socket, "s-revoked", "revoked.example", 2, 5).await;
    cp.wait_until("the agent was refused", |s| s.unauthenticated >= 2)
        .await;
    assert!(cp.with(|s| s.committed.is_empty()));
    cp.with(|s| s.token = TOKEN.into());
    cp.wait_until("every record arrived", |s| s.urls() == expected)
        .await;
    cp.with(|s| assert!(s.versions.iter().all(|v| v == "2.7")));
    agent.stop().await;
}

#[tokio::test]
async fn a_bad_frame_on_one_connection_does_not_disturb_another() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let agent = Agent::start(config(&cp, &dirs)).await;

    let mut good = support::connect(&agent.socket).await;
    good.write_all(&logs_frame(request(
        "s-good",
        0,
        &urls("good.example", 0..5),
    )))
    .await
    .unwrap();

    // An unknown tag unaligns the stream: that connection is closed.
    let mut bad = support::connect(&agent.socket).await;
    bad.write_all(&[0x07, 0, 0, 1, 0xff]).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, bad.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty(), "closed without a byte");

    // A malformed payload is skipped; the same connection keeps working.
    let mut skipping = support::connect(&agent.socket).await;
    skipping
        .write_all(&[0x02, 0, 0, 2, 0x0a, 0x05])
        .await
        .unwrap(); // truncated submessage
    skipping
        .write_all(&logs_frame(request(
            "s-skip",
            0,
            &urls("skip.example", 0..3),
        )))
        .await
        .unwrap();
    skipping
        .write_all(&frame(Tag::Envelope, &Frame::EmptyEnvelope))
        .await
        .unwrap();
    skipping.shutdown().await.unwrap();

    // An over-long length closes its connection too.
    let mut long = support::connect(&agent.socket).await;
    long.write_all(&[0x01, 0x00, 0x80, 0x01]).await.unwrap(); // 32769 bytes announced
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, long.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();

    // The good connection carries on after all that.
    good.write_all(&logs_frame(request(
        "s-good",
        5,
        &urls("good.example", 5..10),
    )))
    .await
    .unwrap();
    good.shutdown().await.unwrap();

    let expected = sorted([urls("good.example", 0..10), urls("skip.example", 0..3)].concat());
    cp.wait_until("the good records arrived", |s| s.urls() == expected)
        .await;
    cp.wait_until("the agent reported its drops", |s| {
        s.agent_drops("unknown_tag").1 == 1
            && s.agent_drops("malformed_frame").1 == 1
            && s.agent_drops("empty_envelope").1 == 1
            && s.agent_drops("frame_too_long").1 == 1
    })
    .await;
    let peers: Vec<i32> = cp.with(|s| {
        s.committed
            .values()
            .filter(|b| !b.agent_drops.is_empty())
            .map(|b| b.peer.as_ref().map_or(0, |p| p.pid))
            .collect()
    });
    assert!(
        peers.iter().all(|pid| *pid == std::process::id() as i32),
        "drops carry the peer"
    );
    agent.stop().await;
}

#[tokio::test]
async fn the_socket_is_private_and_batches_carry_the_peer() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let agent = Agent::start(config(&cp, &dirs)).await;
    let mode = std::fs::metadata(&agent.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let expected = send_records(&agent.socket, "s-peer", "peer.example", 1, 2).await;
    cp.wait_until("the records arrived", |s| s.urls() == expected)
        .await;
    let peer = cp.with(|s| s.log_batches()[0].peer.clone().unwrap());
    assert_eq!(peer.pid, std::process::id() as i32);
    assert_eq!(peer.uid, rustix::process::getuid().as_raw());
    assert_eq!(peer.gid, rustix::process::getgid().as_raw());
    let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    assert_eq!(peer.exe, exe.to_string_lossy());
    assert!(!peer.comm.is_empty());

    agent.stop().await;
    assert!(
        !dirs.socket.exists(),
        "the socket file is removed on shutdown"
    );
}

#[tokio::test]
async fn a_peer_outside_the_allowlist_is_refused_and_counted() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut config = config(&cp, &dirs);
    config.socket.allow_exe = vec![PathBuf::from("/bin/sh")];
    let agent = Agent::start(config).await;

    let mut stream = support::connect(&agent.socket).await;
    let _ = stream
        .write_all(&logs_frame(request(
            "s-x",
            0,
            &urls("refused.example", 0..3),
        )))
        .await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .unwrap();
    cp.wait_until("the refusal was reported", |s| {
        s.agent_drops("peer_not_allowed").1 == 1
    })
    .await;
    cp.with(|s| {
        assert!(
            s.records().is_empty(),
            "nothing from the refused peer is kept"
        );
        let batch = s
            .committed
            .values()
            .find(|b| !b.agent_drops.is_empty())
            .unwrap();
        assert_eq!(batch.peer.as_ref().unwrap().pid, std::process::id() as i32);
    });
    agent.stop().await;

    // The same client is let in when its executable is on the list.
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = self::dirs();
    let mut config = self::config(&cp, &dirs);
    config.socket.allow_exe = vec![std::env::current_exe().unwrap()];
    let agent = Agent::start(config).await;
    let expected = send_records(&agent.socket, "s-ok", "allowed.example", 1, 3).await;
    cp.wait_until("the allowed records arrived", |s| s.urls() == expected)
        .await;
    agent.stop().await;
}

#[tokio::test]
async fn an_acknowledged_client_gets_one_confirmation_per_frame_in_order() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let agent = Agent::start(config(&cp, &dirs)).await;
    let mut client = AckClient::connect(&agent.socket).await;

    let mut with_rejects = request("s-ack", 0, &urls("ack.example", 0..4));
    with_rejects.logs[1].resource = None;
    let status = wire::BoundaryStatus {
        dropped_channel_full: 2,
        dropped_batch_full: 1,
        final_sequence_number: None,
        ..Default::default()
    };
    client
        .send(&logs_frame(request(
            "s-ack",
            10,
            &urls("ack.example", 10..13),
        )))
        .await;
    client.send(&[0x02, 0, 0, 2, 0x0a, 0x05]).await; // malformed
    client.send(&logs_frame(with_rejects)).await;
    client
        .send(&frame(Tag::Envelope, &Frame::Status(status.clone())))
        .await;
    client
        .send(&frame(
            Tag::V1,
            &Frame::Logs(request("s-ack", 20, &urls("ack.example", 20..21))),
        ))
        .await;

    let durable = frame_ack::Outcome::Durable as i32;
    let acks: Vec<(u64, i32, u32, u32)> = {
        let mut acks = Vec::new();
        for _ in 0..5 {
            let a = client.ack().await;
            acks.push((a.frame, a.outcome, a.records, a.rejected));
        }
        acks
    };
    assert_eq!(
        acks,
        vec![
            (1, durable, 3, 0),
            (2, frame_ack::Outcome::Malformed as i32, 0, 0),
            (3, durable, 3, 1),
            (4, durable, 0, 0),
            (5, durable, 1, 0),
        ]
    );
    drop(client);
    cp.wait_until("the status arrived", |s| !s.client_status().is_empty())
        .await;
    let reported = cp.with(|s| s.client_status());
    assert_eq!(
        reported[0].session_id, "s-ack",
        "attributed to the last session"
    );
    assert_eq!(reported[0].status, Some(status));
    agent.stop().await;
}

#[tokio::test]
async fn acknowledged_frames_are_in_the_spool_when_the_agent_stops() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut config = config(&cp, &dirs);
    config.shutdown_grace = Duration::from_millis(50);
    let agent = Agent::start(config.clone()).await;
    cp.set_down(true);
    let mut client = AckClient::connect(&agent.socket).await;
    let expected = urls("kept.example", 0..30);
    for chunk in expected.chunks(10) {
        client.send(&logs_frame(request("s-kept", 0, chunk))).await;
    }
    for _ in 0..3 {
        assert_eq!(
            client.ack().await.outcome,
            frame_ack::Outcome::Durable as i32
        );
    }
    drop(client);
    let outcome = agent.stop().await;
    assert!(!outcome.drained, "the control plane was down");

    // What the agent confirmed is in the spool, and the next run sends it.
    cp.set_down(false);
    let agent = Agent::start(config).await;
    cp.wait_until("the spooled records arrived", |s| {
        s.urls() == sorted(expected.clone())
    })
    .await;
    agent.stop().await;
}

#[tokio::test]
async fn a_frame_larger_than_one_call_is_split() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let agent = Agent::start(config(&cp, &dirs)).await;
    let all = urls("big.example", 0..2500);
    let legacy = frame(Tag::Legacy, &Frame::Logs(request("s-big", 0, &all)));
    support::send_and_close(&agent.socket, &legacy).await;
    let expected = sorted(all);
    cp.wait_until("every record arrived", |s| s.urls() == expected)
        .await;
    cp.with(|s| {
        assert!(s.log_batches().len() >= 3);
        for call in &s.calls {
            let records: usize = call
                .batches
                .iter()
                .map(|b| b.logs.as_ref().map_or(0, |l| l.logs.len()))
                .sum();
            assert!(records <= 1000, "{records} records in one call");
        }
    });
    agent.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut config = config(&cp, &dirs);
    config.socket.max_connections = 1;
    let agent = Agent::start(config).await;

    let mut first = support::connect(&agent.socket).await;
    first
        .write_all(&logs_frame(request("s-1", 0, &urls("first.example", 0..1))))
        .await
        .unwrap();
    cp.wait_until("the first connection is served", |s| s.records().len() == 1)
        .await;

    let mut second = support::connect(&agent.socket).await;
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, second.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    cp.wait_until("the refusal was reported", |s| {
        s.agent_drops("connection_limit").1 == 1
    })
    .await;

    // Once the first one is gone, a new client gets in.
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut third = support::connect(&agent.socket).await;
        third
            .write_all(&logs_frame(request("s-3", 0, &urls("third.example", 0..1))))
            .await
            .ok();
        third.shutdown().await.ok();
        if tokio::time::timeout(
            Duration::from_secs(1),
            cp.wait_until("third", |s| s.records().len() == 2),
        )
        .await
        .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no connection was let in again"
        );
    }
    agent.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut config = config(&cp, &dirs);
    config.socket.idle_timeout = Duration::from_millis(200);
    let agent = Agent::start(config).await;
    let mut idle = support::connect(&agent.socket).await;
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, idle.read_to_end(&mut rest))
        .await
        .expect("the agent closes an idle connection")
        .unwrap();
    assert!(rest.is_empty());
    agent.stop().await;
}

#[tokio::test]
async fn the_startup_script_and_command_see_every_variable() {
    let dirs = dirs();
    let out = dirs.data.parent().unwrap().to_owned();
    let script_env = out.join("script-env");
    let manifest = warden_proto::wire::agentapi::Manifest {
        startup_script: format!("env > '{}.tmp' && mv '{0}.tmp' '{0}'", script_env.display()),
        ..support::manifest()
    };
    let cp = FakeControlPlane::start_with(TOKEN, manifest.clone()).await;
    let mut config = config(&cp, &dirs);
    let command_env = out.join("command-env");
    config.command = vec![
        "sh".into(),
        "-c".into(),
        format!(
            "cd '{}' && env > '{}' && exit 3",
            out.display(),
            command_env.display()
        ),
    ];
    let agent = Agent::start(config).await;
    let socket = agent.socket.clone();
    let outcome = agent.finish().await;
    assert_eq!(outcome.exit_code, 3, "COMMAND's exit code");

    let expect = [
        (
            "CODER_BOUNDARY_LOG_SOCKET",
            socket.to_string_lossy().into_owned(),
        ),
        (
            "CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH",
            socket.to_string_lossy().into_owned(),
        ),
        ("CODER_WORKSPACE_ID", manifest.workspace_id.clone()),
        ("CODER_WORKSPACE_NAME", manifest.workspace_name.clone()),
        ("CODER_WORKSPACE_OWNER_NAME", manifest.owner_name.clone()),
        ("CODER_WORKSPACE_AGENT_NAME", manifest.agent_name.clone()),
    ];
    let env = std::fs::read_to_string(&command_env).unwrap();
    for (key, value) in &expect {
        assert!(
            env.lines().any(|l| l == format!("{key}={value}")),
            "COMMAND lacks {key}={value}:\n{env}"
        );
    }
    // The startup script may have been stopped with the agent before it
    // wrote its file; when it did write it (renamed whole), it saw them all.
    // A second, long-lived run makes sure it gets the time to.
    let text = match std::fs::read_to_string(&script_env) {
        Ok(text) => text,
        Err(_) => {
            let mut config = self::config(&cp, &dirs);
            config.command.clear();
            let agent = Agent::start(config).await;
            let deadline = tokio::time::Instant::now() + WAIT;
            let text = loop {
                if let Ok(text) = std::fs::read_to_string(&script_env) {
                    break text;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the startup script never wrote its env"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            agent.stop().await;
            text
        }
    };
    for (key, value) in &expect {
        assert!(
            text.lines().any(|l| l == format!("{key}={value}")),
            "script lacks {key}:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_command_killed_by_a_signal_exits_128_plus_the_signal() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut config = config(&cp, &dirs);
    config.command = vec!["sh".into(), "-c".into(), "kill -TERM $$".into()];
    let outcome = Agent::start(config).await.finish().await;
    assert_eq!(outcome.exit_code, 128 + 15);
}

#[tokio::test]
async fn a_restart_during_an_outage_starts_from_the_cached_manifest() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    Agent::start(config(&cp, &dirs)).await.stop().await;
    cp.set_down(true);
    let manifest_calls = cp.with(|s| s.manifest_calls);

    let mut config = config(&cp, &dirs);
    config.shutdown_grace = Duration::from_millis(100);
    let env_file = dirs.data.parent().unwrap().join("env");
    config.command = vec![
        "sh".into(),
        "-c".into(),
        format!("env > '{}'", env_file.display()),
    ];
    let outcome = Agent::start(config).await.finish().await;
    assert_eq!(outcome.exit_code, 0);
    let env = std::fs::read_to_string(env_file).unwrap();
    assert!(env.contains("CODER_WORKSPACE_NAME=dev-ws"), "{env}");
    assert_eq!(
        cp.with(|s| s.manifest_calls),
        manifest_calls,
        "the control plane was never reached"
    );
}

#[tokio::test]
async fn without_any_manifest_the_socket_waits_for_the_control_plane() {
    let cp = FakeControlPlane::start(TOKEN).await;
    cp.set_down(true);
    let dirs = dirs();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let config = config(&cp, &dirs);
    let task = tokio::spawn(warden_agent::run(
        config,
        fast_retry(),
        move |path: &Path| {
            let _ = tx.send(path.to_owned());
        },
        shutdown.clone(),
    ));
    assert!(rx.try_recv().is_err());
    assert!(!dirs.socket.exists());
    cp.set_down(false);
    let socket = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(socket.exists());
    shutdown.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_live_socket_is_never_taken_over() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let agent = Agent::start(config(&cp, &dirs)).await;
    // Another agent on the same socket (its own data dir)...
    let mut other = config(&cp, &dirs);
    other.data_dir = dirs.data.with_file_name("other-data");
    let second = warden_agent::run(other, fast_retry(), (), CancellationToken::new());
    let err = tokio::time::timeout(WAIT, second)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, AgentError::Socket(_)), "{err}");
    assert_eq!(err.exit_code(), 2, "{err}");
    // ...or on the same data dir.
    let third = warden_agent::run(
        config(&cp, &dirs),
        fast_retry(),
        (),
        CancellationToken::new(),
    );
    let err = tokio::time::timeout(WAIT, third)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, AgentError::Spool(_)), "{err}");
    assert_eq!(err.exit_code(), 2, "{err}");
    // The first agent still serves.
    let expected = send_records(&agent.socket, "s-live", "live.example", 1, 1).await;
    cp.wait_until("records arrived", |s| s.urls() == expected)
        .await;
    agent.stop().await;
}

#[tokio::test]
async fn a_full_spool_under_drop_oldest_drops_and_reports_it() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut config = config(&cp, &dirs);
    config.spool_max_bytes = warden_agent::config::MIN_SPOOL_BYTES;
    config.spool_full_policy = FullPolicy::DropOldest;
    let agent = Agent::start(config).await;
    cp.set_down(true);
    // 12 frames of ~0.5 MiB: three times what the spool holds.
    let mut client = AckClient::connect(&agent.socket).await;
    let long = "x".repeat(5000);
    for f in 0..12 {
        let batch: Vec<String> = (0..100)
            .map(|i| format!("https://drop.example/{f}/{i}/{long}"))
            .collect();
        client
            .send(&frame(
                Tag::Legacy,
                &Frame::Logs(request("s-drop", f * 100, &batch)),
            ))
            .await;
    }
    for _ in 0..12 {
        let ack = client.ack().await;
        assert_ne!(ack.outcome, frame_ack::Outcome::Malformed as i32);
    }
    drop(client);
    cp.set_down(false);
    cp.wait_until("the drops were reported", |s| {
        s.agent_drops("spool_full").0 > 0
    })
    .await;
    cp.wait_until("every record arrived or was counted as dropped", |s| {
        s.records().len() as u64 + s.agent_drops("spool_full").0 == 1200
    })
    .await;
    assert!(
        agent.stop().await.drained,
        "the ledger was reported and settled"
    );
    // Each dropped batch is reported with its id, its session and which
    // records it held: exactly those that did not arrive.
    cp.with(|s| {
        let stored: std::collections::BTreeSet<i32> =
            s.records().iter().map(|l| l.sequence_number).collect();
        let mut dropped = std::collections::BTreeSet::new();
        let mut batch_ids = std::collections::BTreeSet::new();
        for drop in s
            .committed
            .values()
            .flat_map(|b| &b.agent_drops)
            .filter(|d| d.reason == "spool_full")
        {
            assert_eq!(drop.session_id, "s-drop");
            assert_eq!(drop.frames, 1);
            assert!(
                batch_ids.insert(drop.dropped_batch_id.clone()),
                "one report per batch"
            );
            assert!(
                !s.committed.contains_key(&drop.dropped_batch_id),
                "dropped and delivered"
            );
            let mut records = 0;
            for r in &drop.sequence_ranges {
                dropped.extend(r.first..=r.last);
                records += (r.last - r.first + 1) as u64;
            }
            assert_eq!(records, drop.records);
        }
        assert!(dropped.is_disjoint(&stored));
        let all: std::collections::BTreeSet<i32> = stored.union(&dropped).copied().collect();
        assert_eq!(all, (0..1200).collect());
    });
}

#[tokio::test]
async fn metrics_are_served_with_the_established_names_and_pass_promtool() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let mut config = config(&cp, &dirs);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let mut agent = Agent::start(config).await;
    let addr = (&mut agent.metrics).await.unwrap();
    let expected = send_records(&agent.socket, "s-m", "metrics.example", 1, 4).await;
    cp.wait_until("records arrived", |s| s.urls() == expected)
        .await;
    support::send_and_close(&agent.socket, &[0x09, 0, 0, 0]).await;
    cp.wait_until("the drop arrived", |s| s.agent_drops("unknown_tag").1 == 1)
        .await;

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    for line in [
        "agent_boundary_log_proxy_batches_forwarded_total ",
        "agent_boundary_log_proxy_batches_dropped_total{reason=\"unknown_tag\"} 1",
        "agent_boundary_log_proxy_frames_rejected_total{reason=\"unknown_tag\"} 1",
        "agent_boundary_log_proxy_records_accepted_total 4",
        "agent_boundary_log_proxy_spool_bytes ",
        "agent_boundary_log_proxy_connected_clients ",
        "agent_boundary_log_proxy_forward_latency_seconds_count ",
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(line)),
            "missing {line:?} in\n{body}"
        );
    }
    let (_, exposition) = body.split_once("\r\n\r\n").unwrap();
    promtool_check(exposition);
    agent.stop().await;
}

/// Runs `promtool check metrics` on `text`; fails with what it said.
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("this test needs promtool ({e}): install the Debian package prometheus (apt-get install prometheus), or run scripts/install-test-deps.sh")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

#[tokio::test]
async fn an_https_control_plane_is_trusted_with_the_given_ca() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let cert = std::fs::read(data.join("server.pem")).unwrap();
    let key = std::fs::read(data.join("server.key")).unwrap();
    let cp = FakeControlPlane::start_tls(TOKEN, &cert, &key).await;
    assert!(cp.url().starts_with("https://127.0.0.1:"));
    let dirs = dirs();
    let mut config = config(&cp, &dirs);
    config.ca_cert = Some(data.join("ca.pem"));
    let agent = Agent::start(config).await;
    let expected = send_records(&agent.socket, "s-tls", "tls.example", 1, 3).await;
    cp.wait_until("records arrived over tls", |s| s.urls() == expected)
        .await;
    agent.stop().await;

    // A CA file that cannot be read is a usage error.
    let mut config = self::config(&cp, &dirs);
    config.ca_cert = Some(data.join("missing.pem"));
    let err = warden_agent::run(config, fast_retry(), (), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
}

#[tokio::test]
async fn a_batch_the_control_plane_refuses_is_set_aside_and_counted() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    let agent = Agent::start(config(&cp, &dirs)).await;
    cp.script([Action::Fail(tonic::Code::InvalidArgument)]);
    send_records(&agent.socket, "s-refused", "refused.example", 1, 4).await;
    cp.wait_until("the refusal was reported", |s| {
        s.agent_drops("rejected_by_control_plane") == (4, 1)
    })
    .await;
    let refused_id = cp.with(|s| {
        assert!(s.records().is_empty());
        s.calls[0].batches[0].batch_id.clone()
    });
    // Kept on disk, out of the spool.
    let kept = dirs
        .data
        .join("rejected")
        .join(format!("{refused_id}.binpb"));
    let bytes = std::fs::read(&kept).unwrap();
    let batch =
        <warden_proto::wire::agentapi::Batch as prost::Message>::decode(bytes.as_slice()).unwrap();
    assert_eq!(batch.logs.unwrap().logs.len(), 4);
    assert!(agent.stop().await.drained);
    // Private, like everything the agent keeps.
    assert_eq!(mode(&kept), 0o600);
    assert_eq!(mode(&dirs.data.join("rejected")), 0o700);
    // The loss names its session and records.
    cp.with(|s| {
        let drop = s
            .committed
            .values()
            .flat_map(|b| &b.agent_drops)
            .find(|d| d.reason == "rejected_by_control_plane")
            .unwrap();
        assert_eq!(drop.session_id, "s-refused");
        assert_eq!(
            drop.sequence_ranges,
            [wire::agentapi::SequenceRange { first: 0, last: 3 }]
        );
    });
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[tokio::test]
async fn every_file_the_agent_keeps_is_private_even_in_an_open_data_dir() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    // What systemd's StateDirectory= or an older release leaves.
    std::fs::create_dir(&dirs.data).unwrap();
    std::fs::set_permissions(&dirs.data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let manifest = dirs.data.join("manifest.binpb");
    std::fs::write(&manifest, b"").unwrap();
    std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut config = config(&cp, &dirs);
    config.spool_full_policy = FullPolicy::DropOldest;
    let agent = Agent::start(config).await;
    cp.set_down(true);
    send_records(&agent.socket, "s-private", "private.example", 3, 10).await;
    cp.set_down(false);
    assert!(agent.stop().await.drained);
    let mut seen = Vec::new();
    let mut stack = vec![dirs.data.clone()];
    while let Some(dir) = stack.pop() {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    seen.sort();
    for name in ["manifest.binpb", "LOCK", "acks.log", "dropped.log"] {
        assert!(seen.iter().any(|n| n == name), "{name} in {seen:?}");
    }
    assert!(seen.iter().any(|n| n.ends_with(".seg")), "{seen:?}");
    let lock = warden_agent::socket::listener::lock_path(&dirs.socket);
    assert_eq!(mode(&lock), 0o600);
}

#[tokio::test]
async fn a_data_dir_others_can_write_is_refused() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let dirs = dirs();
    std::fs::create_dir(&dirs.data).unwrap();
    std::fs::set_permissions(&dirs.data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = warden_agent::run(
        config(&cp, &dirs),
        fast_retry(),
        (),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    let text = warden_agent::chain::display(&err);
    assert!(
        text.contains("writable by other users") && text.contains("chmod 700"),
        "{text}"
    );
    assert_eq!(mode(&dirs.data), 0o777, "left as it was");
    assert!(!dirs.data.join("spool").exists(), "nothing was put there");
}
