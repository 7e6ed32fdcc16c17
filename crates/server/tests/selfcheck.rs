//! The background self-check: the tail of the record chain re-verified
//! from what the store returns, and loss nobody explained added up.

mod support;

use std::sync::Arc;

use jiff::Timestamp;
use support::*;
use warden_proto::domain::{AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Peer};
use warden_server::LineFormat;
use warden_server::selfcheck::{check_tail, unexplained_loss};
use warden_store::{IngestRequest, SqliteStore, Store};

fn stored_batch(session: &str, seqs: impl Iterator<Item = i32>) -> IngestBatch {
    IngestBatch {
        batch_id: uuid::Uuid::now_v7(),
        received_at: Timestamp::now(),
        peer: Peer::default(),
        logs: Some(ClientLogs {
            session_id: Some(session.into()),
            confined_process_name: "claude".into(),
            records: seqs
                .map(|seq| AuditRecord {
                    decision: Decision::Deny,
                    event_time: EventTime::Known(Timestamp::now()),
                    method: "GET".into(),
                    url: format!("https://example.com/{seq}"),
                    matched_rule: String::new(),
                    sequence_number: seq,
                })
                .collect(),
            ..Default::default()
        }),
        client_status: Vec::new(),
        agent_drops: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_is_checked_from_the_records_and_unexplained_loss_counted() {
    let dir = tempfile::tempdir().unwrap();
    // A server only to register the workspace and stop cleanly.
    let server = Server::start_in(dir.path(), LineFormat::Text).await;
    let ws = server.workspace("dev").await;
    let agent_id = server
        .admin()
        .list_workspaces()
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.workspace_name == "dev")
        .unwrap()
        .agent_id;
    drop(ws);
    server.stop().await.unwrap();

    let path = dir.path().join("warden.db");
    let store = SqliteStore::open(&path).await.unwrap();
    // Ten group commits of session "s", each of 3 records; number 1 of
    // session "gap" never arrives and nobody says why.
    for commit in 0..10 {
        store
            .ingest(Arc::new(IngestRequest {
                agent_id,
                at: Timestamp::now(),
                batches: vec![stored_batch("s", commit * 3..commit * 3 + 3)],
            }))
            .await
            .unwrap();
    }
    store
        .ingest(Arc::new(IngestRequest {
            agent_id,
            at: Timestamp::now(),
            batches: vec![stored_batch("gap", [0, 2].into_iter())],
        }))
        .await
        .unwrap();
    assert_eq!(check_tail(&store, 4).await.unwrap(), []);
    assert_eq!(check_tail(&store, 1000).await.unwrap(), []);
    assert_eq!(unexplained_loss(&store).await.unwrap(), 1);
    store.close().await.unwrap();

    // One URL of the newest commit of "s" changed behind the store's back
    // (its block's bytes swapped for the previous block's): the tail check
    // names the records.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let blocks: Vec<i64> = conn
        .prepare("SELECT first_id FROM blocks WHERE session_id = 's' ORDER BY first_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let (newest, before) = (blocks[blocks.len() - 1], blocks[blocks.len() - 2]);
    conn.execute(
        "UPDATE blocks SET data = (SELECT data FROM blocks WHERE first_id = ?2) WHERE first_id = ?1",
        [newest, before],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).await.unwrap();
    let problems = check_tail(&store, 4).await.unwrap();
    let named: Vec<i64> = problems.iter().filter_map(|p| p.record_id()).collect();
    assert_eq!(named, [newest, newest + 1, newest + 2], "{problems:?}");
    store.close().await.unwrap();
}
