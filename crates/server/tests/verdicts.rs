//! Session completeness verdicts end to end: a session whose client reports
//! its end is judged and the signed verdict served with the session; a late
//! drop report produces a new verdict that supersedes the first, which
//! stays; a session without a reported end is judged incomplete once idle;
//! and everything verifies offline afterwards.

mod support;

use std::time::Duration;

use support::*;
use warden_api::records::{SessionReportParams, VerdictInfo};
use warden_evidence::verify::{Trust, verify_store};
use warden_proto::wire::{self, agentapi};
use warden_server::LineFormat;
use warden_store::SqliteStore;

/// A batch carrying only a client status for `session`.
fn status(session: &str, channel_full: i64, final_seq: Option<i64>) -> agentapi::Batch {
    let mut b = batch(Some(session), Vec::new());
    b.logs = None;
    b.client_status.push(agentapi::ClientStatus {
        session_id: session.into(),
        status: Some(wire::BoundaryStatus {
            dropped_channel_full: channel_full,
            final_sequence_number: final_seq,
            ..Default::default()
        }),
    });
    b
}

/// Waits until `session` of `workspace` has `n` verdicts; returns them.
async fn verdicts(server: &Server, workspace: &str, session: &str, n: usize) -> Vec<VerdictInfo> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let report = server
            .admin()
            .session_report(workspace, session, &SessionReportParams::default())
            .await
            .unwrap();
        if report.verdicts.len() >= n {
            return report.verdicts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "session {session}: {} verdicts, waiting for {n}",
            report.verdicts.len()
        );
        // Polling the API for a condition with a deadline.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_sessions_are_judged_and_later_reports_supersede_without_erasing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), LineFormat::Text);
    config.session_idle = Duration::from_secs(3600);
    let server = Server::start_with(config, dir.path(), Capture::new()).await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;

    // s1: every record, then its end.
    agent
        .report(vec![batch(Some("s1"), logs(0..5))])
        .await
        .unwrap();
    agent.report(vec![status("s1", 0, Some(4))]).await.unwrap();
    let s1 = verdicts(&server, "dev", "s1", 1).await;
    assert_eq!(s1[0].verdict, "complete");
    assert!(s1[0].end_reported);
    assert_eq!(s1[0].supersedes, None);
    assert!(s1[0].statement.contains("\nfinal-sequence 4\nrecords 5\n"));

    // s2: number 3 never arrives; nobody says why.
    let mut sparse = logs(0..3);
    sparse.extend(logs(4..7));
    agent.report(vec![batch(Some("s2"), sparse)]).await.unwrap();
    agent.report(vec![status("s2", 0, Some(6))]).await.unwrap();
    let first = verdicts(&server, "dev", "s2", 1).await;
    assert_eq!(first[0].verdict, "incomplete");
    assert!(first[0].end_reported);

    // The client's late report explains it: a new verdict supersedes the
    // first, which is still there.
    agent.report(vec![status("s2", 1, None)]).await.unwrap();
    let both = verdicts(&server, "dev", "s2", 2).await;
    assert_eq!(both[0], first[0]);
    assert_eq!(both[1].verdict, "complete-except-reported-drops");
    assert_eq!(both[1].supersedes, Some(first[0].id));

    let metrics = server.get("/metrics").await.1;
    assert_eq!(metric(&metrics, "warden_session_verdicts_total"), Some(3.0));
    server.stop().await.unwrap();

    // Offline: the verdicts are signed, at links the chain has, each naming
    // the one it superseded.
    let store = SqliteStore::open(&dir.path().join("warden.db"))
        .await
        .unwrap();
    let report = verify_store(&store, &Trust::default()).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.verdicts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_without_a_reported_end_is_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), LineFormat::Text);
    config.session_idle = Duration::from_secs(1);
    let server = Server::start_with(config, dir.path(), Capture::new()).await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    agent
        .report(vec![batch(Some("quiet"), logs(0..3))])
        .await
        .unwrap();
    let v = verdicts(&server, "dev", "quiet", 1).await;
    assert_eq!(v[0].verdict, "incomplete");
    assert!(!v[0].end_reported);
    assert!(v[0].statement.contains("\nfinal-sequence none\n"));
    server.stop().await.unwrap();
}

/// Sessions a previous run never judged (it stopped first) are judged by
/// the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_judges_what_the_previous_run_left() {
    let dir = tempfile::tempdir().unwrap();
    let mut config_once = config(dir.path(), LineFormat::Text);
    config_once.session_idle = Duration::from_secs(3600);
    let server = Server::start_with(config_once, dir.path(), Capture::new()).await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    agent
        .report(vec![batch(Some("left"), logs(0..2))])
        .await
        .unwrap();
    server.stop().await.unwrap();

    let mut config_again = config(dir.path(), LineFormat::Text);
    config_again.session_idle = Duration::from_secs(1);
    let server = Server::start_with(config_again, dir.path(), Capture::new()).await;
    let v = verdicts(&server, "dev", "left", 1).await;
    assert_eq!(v[0].verdict, "incomplete");
    server.stop().await.unwrap();
}
