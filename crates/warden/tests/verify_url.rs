//! `warden verify --url URL --token TOKEN` against a running `warden
//! server`, with an auditor token: the same checks, verdict lines and exit
//! codes as verifying the stopped server's data dir, tampering included.

mod support;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use jiff::Timestamp;
use support::dirs;
use support::process::{BoundaryLines, warden};
use support::server::ServerProcess;
use uuid::Uuid;
use warden_evidence::checkpoint;
use warden_evidence::key::SigningKey;
use warden_proto::domain::{AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Peer};
use warden_store::{IngestRequest, NewWorkspace, SqliteStore, Store, TokenHash};

fn batch(session: &str, seqs: std::ops::Range<i32>) -> IngestBatch {
    IngestBatch {
        batch_id: Uuid::now_v7(),
        received_at: Timestamp::now(),
        peer: Peer {
            uid: 1000,
            gid: 1000,
            pid: 42,
            comm: "curl".into(),
            exe: "/usr/bin/curl".into(),
        },
        logs: Some(ClientLogs {
            session_id: Some(session.into()),
            confined_process_name: "claude".into(),
            records: seqs
                .map(|s| AuditRecord {
                    decision: Decision::from_allowed(s % 2 == 0),
                    event_time: EventTime::Known(Timestamp::now()),
                    method: "GET".into(),
                    url: format!("https://example.com/{s:04}"),
                    matched_rule: String::new(),
                    sequence_number: s,
                })
                .collect(),
            ..Default::default()
        }),
        client_status: Vec::new(),
        agent_drops: Vec::new(),
    }
}

/// A data dir with 16 records in three group commits, signed by the key
/// the server will load from it.
async fn fixture(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    let store = SqliteStore::open(&data.join("warden.db")).await.unwrap();
    let w = store
        .create_workspace(
            NewWorkspace {
                id: Uuid::now_v7(),
                name: "dev".into(),
                owner: "alice".into(),
                startup_script: String::new(),
                agent_id: Uuid::new_v4(),
                agent_name: "main".into(),
                token_hash: TokenHash([1; 32]),
            },
            Timestamp::now(),
        )
        .await
        .unwrap();
    for batches in [
        vec![batch("a", 0..10)],
        vec![batch("b", 0..1)],
        vec![batch("d", 0..5)],
    ] {
        store
            .ingest(Arc::new(IngestRequest {
                agent_id: w.agent.id,
                at: Timestamp::now(),
                batches,
            }))
            .await
            .unwrap();
    }
    let (key, _) = SigningKey::load(&data.join("signing-key"), true).unwrap();
    let head = store.chain_head().await.unwrap().unwrap();
    store
        .add_checkpoint(checkpoint::sign(
            &key,
            &head,
            head.last_id,
            Timestamp::now(),
        ))
        .await
        .unwrap();
    store.close().await.unwrap();
}

async fn verify(args: &[&str]) -> Output {
    warden()
        .arg("verify")
        .args(args)
        .env_remove("WARDEN_DATA_DIR")
        .env_remove("WARDEN_URL")
        .output()
        .await
        .expect("running warden verify")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_through_a_running_server_matches_the_offline_verdict() {
    let dirs = dirs();
    fixture(&dirs.server).await;
    let mut server = ServerProcess::start(&dirs.server, &[], BoundaryLines::Keep).await;
    let created = warden()
        .args(["token", "create", "--role", "auditor", "--name", "carol"])
        .arg("--data-dir")
        .arg(&dirs.server)
        .output()
        .await
        .unwrap();
    assert_eq!(created.status.code(), Some(0), "{}", text(&created.stderr));
    let auditor = text(&created.stdout).trim().to_owned();
    let key = dirs.server.join("signing-key.pub");
    let key = key.to_str().unwrap();
    let url = server.url.clone();

    let ok = verify(&["--url", &url, "--token", &auditor, "--trusted-key", key]).await;
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}{}",
        text(&ok.stdout),
        text(&ok.stderr)
    );
    let verdict = text(&ok.stdout);
    assert!(
        verdict.starts_with("OK: 16 records in 4 chain links verified"),
        "{verdict}"
    );
    assert!(
        verdict.contains("1 admin event)"),
        "the token's creation: {verdict}"
    );
    assert!(verdict.contains("signed by the trusted key"), "{verdict}");

    // Usage: no token, a token that may not read (an agent's), no token at all.
    let ws = server.create_workspace("other", "bob", &[]).await;
    let agent = verify(&["--url", &url, "--token", &ws.token]).await;
    assert_eq!(agent.status.code(), Some(2), "{}", text(&agent.stderr));
    let none = verify(&["--url", &url]).await;
    assert_eq!(none.status.code(), Some(2), "{}", text(&none.stderr));

    // Records deleted behind the running server's back.
    let conn = rusqlite::Connection::open(server.database()).unwrap();
    conn.execute("DELETE FROM blocks WHERE session_id = 'b'", [])
        .unwrap();
    drop(conn);
    let failed = verify(&["--url", &url, "--token", &auditor, "--trusted-key", key]).await;
    assert_eq!(failed.status.code(), Some(1));
    let remote = text(&failed.stdout);
    assert!(remote.starts_with("FAILED: 1 problem"), "{remote}");
    assert!(remote.contains("record 11: missing"), "{remote}");

    // The same lines as verifying the stopped server's data dir.
    server.stop().await;
    let offline = verify(&[
        "--data-dir",
        dirs.server.to_str().unwrap(),
        "--trusted-key",
        key,
    ])
    .await;
    assert_eq!(offline.status.code(), Some(1));
    let offline = text(&offline.stdout);
    let lines = |t: &str| t.lines().map(str::to_owned).collect::<Vec<_>>();
    // The server signed a checkpoint at shutdown, over the chain that now
    // lacks record 11: the checkpoint counts may differ, the problems not.
    assert_eq!(
        lines(&remote)[1..],
        lines(&offline)[1..],
        "{remote}\n{offline}"
    );
}

/// Signs verdicts for sessions "a" (twice: the second supersedes the
/// first) and "d" with the data dir's key, as the server's completeness
/// task does; returns their ids.
async fn with_verdicts(data: &Path) -> Vec<i64> {
    use warden_evidence::verdict;
    let (key, _) = SigningKey::load(&data.join("signing-key"), false).unwrap();
    let store = SqliteStore::open(&data.join("warden.db")).await.unwrap();
    let workspace = store.workspace("dev").await.unwrap().unwrap().id;
    let head = store.chain_head().await.unwrap().unwrap();
    let mut ids = Vec::new();
    let mut previous = None;
    for session in ["a", "a", "d"] {
        let summary = store
            .session_summary(workspace, session)
            .await
            .unwrap()
            .unwrap();
        let supersedes = if session == "a" { previous } else { None };
        let v = verdict::sign(&key, &summary, &head, head.last_id, supersedes, 1);
        let stored = store.add_session_verdict(v).await.unwrap();
        previous = Some(stored.id);
        ids.push(stored.id);
    }
    store.close().await.unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_through_a_running_server_checks_session_verdicts() {
    let dirs = dirs();
    fixture(&dirs.server).await;
    let ids = with_verdicts(&dirs.server).await;
    let mut server = ServerProcess::start(&dirs.server, &[], BoundaryLines::Keep).await;
    let created = warden()
        .args(["token", "create", "--role", "auditor", "--name", "carol"])
        .arg("--data-dir")
        .arg(&dirs.server)
        .output()
        .await
        .unwrap();
    assert_eq!(created.status.code(), Some(0), "{}", text(&created.stderr));
    let auditor = text(&created.stdout).trim().to_owned();
    let key = dirs.server.join("signing-key.pub");
    let key = key.to_str().unwrap();
    let url = server.url.clone();

    let ok = verify(&["--url", &url, "--token", &auditor, "--trusted-key", key]).await;
    let verdict = text(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{verdict}{}", text(&ok.stderr));
    assert!(verdict.contains("3 session verdicts"), "{verdict}");

    // A verdict's words changed, and the superseded verdict of "a" removed,
    // behind the running server's back.
    let conn = rusqlite::Connection::open(server.database()).unwrap();
    conn.execute(
        "UPDATE session_verdicts SET statement = replace(statement, 'verdict incomplete', 'verdict complete') WHERE id = ?1",
        [ids[2]],
    )
    .unwrap();
    conn.execute("DELETE FROM session_verdicts WHERE id = ?1", [ids[0]])
        .unwrap();
    drop(conn);
    let failed = verify(&["--url", &url, "--token", &auditor, "--trusted-key", key]).await;
    assert_eq!(failed.status.code(), Some(1));
    let remote = text(&failed.stdout);
    assert!(remote.starts_with("FAILED: 2 problems"), "{remote}");
    assert!(
        remote
            .lines()
            .any(|l| l.contains(&format!("session verdict {}", ids[2]))
                && l.contains("signature does not hold")),
        "{remote}"
    );
    assert!(
        remote
            .lines()
            .any(|l| l.contains(&format!("session verdict {}", ids[1]))
                && l.contains("a verdict was removed or replaced")),
        "{remote}"
    );

    // The same lines as verifying the stopped server's data dir.
    server.stop().await;
    let offline = verify(&[
        "--data-dir",
        dirs.server.to_str().unwrap(),
        "--trusted-key",
        key,
    ])
    .await;
    assert_eq!(offline.status.code(), Some(1));
    let offline = text(&offline.stdout);
    let lines = |t: &str| t.lines().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        lines(&remote)[1..],
        lines(&offline)[1..],
        "{remote}\n{offline}"
    );
}
