//! Upgrades keep data: a spool written by the previous release (whose
//! entries are bare `agentapi::Batch` encodings, format 1) opens with this
//! agent, and every record in it is delivered, with its status and drop
//! reports; what that release had acknowledged stays delivered.
//!
//! `tests/data/spool-0.1.0/` was made by release 0.1.0 (commit 5ae091d,
//! `warden agent` against a `warden server`): 10 records of
//! `delivered.example` sent and acknowledged while the control plane was up;
//! then, with it down, 120 records of `fixture.example` (session
//! 8940e28f-750f-414d-b90e-fc43948a1eea) and 30 of `second.example`
//! (session 74ff606a-340b-4f45-b6de-7d99720ae820) through `warden emit`
//! (tag-2 frames and a closing status each), and one frame with an unknown
//! tag (the agent's own drop report); then SIGTERM. The spool kept 5
//! batches: 2 of records, 2 statuses, 1 drop report.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{FakeControlPlane, urls};
use tokio_util::sync::CancellationToken;
use warden_agent::{AgentConfig, RetryPolicy, Token};

const TOKEN: &str = "old-spool-token";
const FIRST: &str = "8940e28f-750f-414d-b90e-fc43948a1eea";
const SECOND: &str = "74ff606a-340b-4f45-b6de-7d99720ae820";

#[tokio::test]
async fn a_spool_of_the_previous_release_is_delivered_whole() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spool = data.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/spool-0.1.0");
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), spool.join(entry.file_name())).unwrap();
    }

    let mut config = AgentConfig::new(
        cp.url(),
        Token::new(TOKEN),
        &data,
        tmp.path().join("agent.sock"),
    );
    config.shutdown_grace = Duration::from_secs(10);
    let retry = RetryPolicy {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        operator_delay: Duration::from_millis(300),
    };
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(warden_agent::run(
        config,
        retry,
        move |_: &Path| {
            if let Some(tx) = ready_tx.take() {
                let _ = tx.send(());
            }
        },
        shutdown.clone(),
    ));
    ready.await.unwrap();

    let mut expected = urls("fixture.example", 0..120);
    expected.extend(urls("second.example", 0..30));
    expected.sort();
    cp.wait_until("every spooled record arrived", |s| s.urls() == expected)
        .await;
    cp.wait_until("both statuses and the drop report arrived", |s| {
        s.client_status().len() == 2 && s.agent_drops("unknown_tag") == (0, 1)
    })
    .await;
    shutdown.cancel();
    let outcome = agent.await.unwrap().unwrap();
    assert!(
        outcome.drained,
        "everything in the old spool was acknowledged"
    );

    cp.with(|s| {
        // Once each, as spooled (the batch ids of the old release).
        assert!(s.deliveries.values().all(|n| *n == 1), "{:?}", s.deliveries);
        let batches = s.log_batches();
        assert_eq!(batches.len(), 2);
        for batch in batches {
            let logs = batch.logs.as_ref().unwrap();
            let host = if logs.session_id == FIRST {
                "fixture.example"
            } else {
                assert_eq!(logs.session_id, SECOND);
                "second.example"
            };
            assert!(support::url_of(&logs.logs[0]).contains(host));
            let peer = batch.peer.as_ref().unwrap();
            assert!(peer.exe.ends_with("/warden"), "{peer:?}");
        }
        let mut finals: Vec<(String, Option<i64>)> = s
            .client_status()
            .into_iter()
            .map(|c| (c.session_id, c.status.unwrap().final_sequence_number))
            .collect();
        finals.sort();
        assert_eq!(
            finals,
            [(SECOND.into(), Some(29)), (FIRST.into(), Some(119))]
        );
        // What the old release had delivered does not come again.
        assert!(!s.urls().iter().any(|u| u.contains("delivered.example")));
    });
}
