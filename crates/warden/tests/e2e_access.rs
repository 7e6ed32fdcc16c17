//! Who may deliver, with the real binary as separate processes: the agent of
//! a deleted workspace is refused (its records stay in its spool, never in
//! the store), and agent and server speak TLS, the agent trusting only the
//! CA it is given.

mod support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::agent::AgentSetup;
use support::process::BoundaryLines;
use support::server::ServerProcess;
use support::{dirs, eventually, store};
use warden_client::{Auditor, Config, Record, Summary};

/// The server crate's throwaway test CA and `localhost`/`127.0.0.1`
/// certificate, reused rather than copied.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../server/tests/data")
        .join(name)
}

/// What the agent logs when the control plane refuses its token.
const REFUSED: &str = "refused the agent token";
/// What the agent logs when it has no manifest and must wait for one.
const NO_MANIFEST: &str = "no cached manifest; waiting for the control plane";

/// Sends `n` records through the agent's socket in acknowledged mode and
/// returns the summary once all are confirmed durable in the spool.
async fn send(socket: &Path, host: &str, n: usize) -> Summary {
    let mut config = Config::new(socket);
    config.batch_interval = Duration::from_millis(10);
    let auditor = Auditor::start(config).unwrap();
    for i in 0..n {
        let url = format!("https://{host}/{i}");
        let record = if i % 2 == 0 {
            Record::allow("GET", url, format!("domain={host}"))
        } else {
            Record::deny("PUT", url)
        };
        auditor.record(record).await.unwrap();
    }
    let summary = auditor.close().await.unwrap();
    assert!(summary.is_complete(), "{summary}");
    summary
}

async fn stored_urls(server: &ServerProcess, host: &str) -> usize {
    store::records(&server.database())
        .await
        .iter()
        .filter(|r| r.url.starts_with(&format!("https://{host}/")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_of_a_deleted_workspace_is_refused() {
    let dirs = dirs();
    let mut server = ServerProcess::start(&dirs.server, &[], BoundaryLines::Keep).await;
    let ws = server.create_workspace("doomed", "bob", &[]).await;
    let mut setup = AgentSetup::new(&server.url, &ws.token, &dirs.agent, &dirs.socket);
    setup.shutdown_grace = "1s";
    let mut agent = setup.start(&[]).await;

    send(&dirs.socket, "before.example", 20).await;
    eventually("the records before the deletion are stored", || {
        let server = &server;
        async move { stored_urls(server, "before.example").await == 20 }
    })
    .await;

    let deleted = server.workspace(&["delete", "doomed"]).await;
    assert_eq!(
        deleted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let listed = server.workspace(&["list", "--json"]).await;
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("doomed"));

    // The running agent still takes records (they are durable in its spool)
    // but the control plane refuses to take them from it.
    send(&dirs.socket, "after.example", 10).await;
    agent.wait_line(REFUSED).await;
    assert_eq!(stored_urls(&server, "after.example").await, 0);
    agent.terminate();
    assert_eq!(agent.exit().await, Some(0), "{}", agent.log());
    assert!(agent.log().contains("stay spooled"), "{}", agent.log());

    // A new agent with the revoked token and no cached manifest never gets
    // to open its socket.
    let mut fresh = AgentSetup::new(
        &server.url,
        &ws.token,
        &dirs.root.join("fresh-agent"),
        &dirs.root.join("fresh.sock"),
    );
    fresh.shutdown_grace = "1s";
    let mut fresh = fresh.spawn(&[]);
    fresh.wait_line(REFUSED).await;
    fresh.wait_line(NO_MANIFEST).await;
    assert!(!dirs.root.join("fresh.sock").exists());
    fresh.terminate();
    assert_eq!(fresh.exit().await, Some(0), "{}", fresh.log());

    // Nothing the refused agents held reached the store; what came before
    // the deletion stays.
    assert_eq!(stored_urls(&server, "after.example").await, 0);
    assert_eq!(stored_urls(&server, "before.example").await, 20);
    server.stop().await;
    assert!(!server.process.log().contains(&ws.token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_server_speak_tls_and_the_agent_checks_the_certificate() {
    let dirs = dirs();
    let tls: Vec<OsString> = vec![
        "--tls-cert".into(),
        fixture("server.pem").into(),
        "--tls-key".into(),
        fixture("server.key").into(),
    ];
    let mut server = ServerProcess::start(&dirs.server, &tls, BoundaryLines::Keep).await;
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let ca = fixture("ca.pem");
    let ws = server
        .create_workspace("secure", "carol", &["--ca-cert", ca.to_str().unwrap()])
        .await;

    let mut setup = AgentSetup::new(&server.url, &ws.token, &dirs.agent, &dirs.socket);
    setup.extra_args = vec!["--ca-cert".into(), ca.clone().into()];
    let mut agent = setup.start(&[]).await;
    send(&dirs.socket, "tls.example", 50).await;
    eventually("the records are stored", || {
        let server = &server;
        async move { stored_urls(server, "tls.example").await == 50 }
    })
    .await;
    agent.stop().await;

    // Without the CA the agent does not trust the server: no manifest, no
    // socket, nothing sent.
    let untrusting = AgentSetup::new(
        &server.url,
        &ws.token,
        &dirs.root.join("untrusting-agent"),
        &dirs.root.join("untrusting.sock"),
    );
    let mut untrusting = untrusting.spawn(&[]);
    // rustls' own words, then what they mean and the fix, as the CLI says it.
    untrusting
        .wait_line(
            "invalid peer certificate: UnknownIssuer: the server's certificate is not signed by a CA this client trusts: give the CA that signed it with --ca-cert",
        )
        .await;
    untrusting.wait_line(NO_MANIFEST).await;
    assert!(!dirs.root.join("untrusting.sock").exists());
    untrusting.terminate();
    assert_eq!(untrusting.exit().await, Some(0), "{}", untrusting.log());

    server.stop().await;
    let lines = server
        .process
        .lines()
        .iter()
        .filter(|l| l.starts_with("[API] ") && l.contains("tls.example"))
        .count();
    assert_eq!(lines, 50);
}
