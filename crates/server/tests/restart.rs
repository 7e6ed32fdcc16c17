//! Crashes and restarts: lines of records committed just before a crash are
//! printed at the next start, once; state on disk carries over.

mod support;

use std::io;
use std::sync::{Arc, Mutex, mpsc};

use support::*;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warden_server::{AdminTokenSource, LineFormat, LineSink};

/// Stands for a process that dies while printing: the first write reports
/// itself and then never completes until the test lets go, and then fails.
struct Frozen {
    reached: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl LineSink for Frozen {
    fn write_lines(&self, _lines: &[u8]) -> io::Result<()> {
        if let Some(reached) = self.reached.lock().unwrap().take() {
            let _ = reached.send(());
        }
        let _ = self.release.lock().unwrap().recv();
        Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the process is gone",
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_print_prints_the_lines_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (reached_tx, reached) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let frozen = Arc::new(Frozen {
        reached: Mutex::new(Some(reached_tx)),
        release: Mutex::new(release_rx),
    });

    // The first life: commits, then dies while printing.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let first = tokio::spawn(warden_server::run(
        config(dir.path(), LineFormat::Text),
        listener,
        CancellationToken::new(),
        frozen,
    ));
    let admin = warden_api::ApiClient::new(&url, ADMIN_TOKEN, None).unwrap();
    let ws = admin
        .create_workspace(&warden_api::workspaces::CreateWorkspace {
            name: "dev".into(),
            owner: "alice".into(),
            agent_name: None,
            startup_script: None,
        })
        .await
        .unwrap();
    let mut agent = Agent::connect(&url, &ws.agent_token).await;
    let response = agent
        .report(vec![batch(Some(SESSION), logs(0..3))])
        .await
        .unwrap();
    assert_eq!(response.results[0].stored, 3, "acknowledged: committed");
    tokio::task::spawn_blocking(move || reached.recv().unwrap())
        .await
        .unwrap();
    // Killed: no graceful shutdown of any kind.
    first.abort();
    drop(agent);

    // The second life prints what the first one could not, before serving.
    let second = Server::start_in(dir.path(), LineFormat::Text).await;
    let lines = second.lines.wait_for(3).await;
    assert_eq!(lines.len(), 3);
    for (seq, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with("[API] 2025-12-08 20:58:46.093 [warn] boundary: "),
            "{line}"
        );
        assert!(
            line.contains(&format!("workspace.id={} ", ws.workspace_id)),
            "{line}"
        );
        assert!(
            line.contains(&format!("http.url=\"https://example.com/{seq}\"")),
            "{line}"
        );
        // Printed again at a start: marked, as its record may have been
        // printed just before the stop.
        assert!(
            line.ends_with(&format!(
                "sequence={seq} process=\"claude\" replayed=true\n"
            )),
            "{line}"
        );
    }
    // New records after the restart are printed once too, unmarked.
    let mut agent = second.agent(&ws.agent_token).await;
    agent
        .report(vec![batch(Some(SESSION), logs(3..4))])
        .await
        .unwrap();
    second.lines.wait_for(4).await;
    let second_lines = second.lines.clone();
    second.stop().await.unwrap();
    let all = second_lines.lines();
    assert_eq!(all.len(), 4);
    assert!(
        all[3].ends_with("sequence=3 process=\"claude\"\n"),
        "{}",
        all[3]
    );
    // The frozen writer of the dead process finally gives up.
    release.send(()).unwrap();

    // A third life has nothing left to print.
    let third = Server::start_in(dir.path(), LineFormat::Text).await;
    let mut agent = third.agent(&ws.agent_token).await;
    agent
        .report(vec![batch(Some(SESSION), logs(4..5))])
        .await
        .unwrap();
    let lines = third.lines.wait_for(1).await;
    let third_lines = third.lines.clone();
    third.stop().await.unwrap();
    assert_eq!(third_lines.lines().len(), 1, "{lines:?}");
    assert!(lines[0].contains("sequence=4 "));
}

/// stderr that fails: the lines stay owed until a start that can print.
struct Broken;

impl LineSink for Broken {
    fn write_lines(&self, _lines: &[u8]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "stderr is closed",
        ))
    }
}

#[tokio::test]
async fn lines_that_could_not_be_written_are_printed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let first = tokio::spawn(warden_server::run(
        config(dir.path(), LineFormat::Json),
        listener,
        shutdown.clone(),
        Arc::new(Broken),
    ));
    let admin = warden_api::ApiClient::new(&url, ADMIN_TOKEN, None).unwrap();
    let ws = admin
        .create_workspace(&warden_api::workspaces::CreateWorkspace {
            name: "dev".into(),
            owner: "alice".into(),
            agent_name: None,
            startup_script: None,
        })
        .await
        .unwrap();
    let mut agent = Agent::connect(&url, &ws.agent_token).await;
    agent.report(vec![batch(None, logs(0..2))]).await.unwrap();
    drop(agent);
    shutdown.cancel();
    first.await.unwrap().unwrap();

    let second = Server::start_in(dir.path(), LineFormat::Json).await;
    let lines = second.lines.wait_for(2).await;
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["workspace_id"], ws.workspace_id.to_string());
        assert!(v.get("session_id").is_none());
    }
    second.stop().await.unwrap();
}

#[tokio::test]
async fn a_generated_admin_token_is_written_once_and_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), LineFormat::Text);
    cfg.admin_token = AdminTokenSource::DataDir(dir.path().to_owned());
    let server = Server::start_with(cfg.clone(), dir.path(), Capture::new()).await;
    let path = dir.path().join("admin-token");
    // `run` writes the file before it serves, so once any call is answered
    // (refused, with a wrong token) the file is there.
    let wrong = warden_api::ApiClient::new(&server.url(), "x".repeat(64), None).unwrap();
    assert!(matches!(
        wrong.list_workspaces().await,
        Err(warden_api::ClientError::Api { status, .. }) if status == 401
    ));
    let token = std::fs::read_to_string(&path).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let client = warden_api::ApiClient::new(&server.url(), &token, None).unwrap();
    client.list_workspaces().await.unwrap();
    server.stop().await.unwrap();

    // A restart reads the same token.
    let server = Server::start_with(cfg, dir.path(), Capture::new()).await;
    let client = warden_api::ApiClient::new(&server.url(), &token, None).unwrap();
    client.list_workspaces().await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), token);
    server.stop().await.unwrap();
}
