//! Two control planes (replicas) on one PostgreSQL database: agents spread
//! across them, the same batches delivered through both at once, each record
//! stored once (the idempotency lives in the database) and its boundary line
//! printed by exactly one replica.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use support::*;
use warden_proto::wire::agentapi;
use warden_server::{AdminTokenSource, Config};
use warden_store::{DatabaseUrl, PgStore, RecordQuery, Store};
use warden_testpg::TestPg;

const AGENTS: usize = 4;
const ROUNDS: i32 = 12;
const PER_BATCH: i32 = 40;

fn config(pg: &TestPg) -> Config {
    Config::new(
        DatabaseUrl::Postgres(pg.url().to_owned()),
        AdminTokenSource::Given(ADMIN_TOKEN.into()),
    )
}

/// (workspace name, session id, sequence number) of a boundary line.
fn key(line: &str) -> (String, String, i32) {
    let quoted = |field: &str| {
        let start = line
            .find(&format!(" {field}=\""))
            .unwrap_or_else(|| panic!("no {field} in {line}"))
            + field.len()
            + 3;
        line[start..start + line[start..].find('"').unwrap()].to_owned()
    };
    let sequence = line
        .split(" sequence=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sequence in {line}"));
    (quoted("workspace.name"), quoted("session.id"), sequence)
}

fn result(response: &agentapi::ReportBoundaryLogsResponse) -> &agentapi::BatchResult {
    &response.results[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_store_each_record_once_and_print_each_line_once() {
    let pg = TestPg::start().expect("a PostgreSQL test database");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start_with(config(&pg), dir_a.path(), Capture::new()).await;
    let b = Server::start_with(config(&pg), dir_b.path(), Capture::new()).await;

    let mut tasks = Vec::new();
    for i in 0..AGENTS {
        let ws = a.workspace(&format!("ws{i}")).await;
        // Each agent has a home replica, and reaches the other one too (a
        // load balancer may send a re-delivery anywhere).
        let (home, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let mut home = home.agent(&ws.agent_token).await;
        let mut other = other.agent(&ws.agent_token).await;
        tasks.push(tokio::spawn(async move {
            let session = format!("session-{i}");
            for round in 0..ROUNDS {
                let sent = batch(
                    Some(&session),
                    logs(round * PER_BATCH..(round + 1) * PER_BATCH),
                );
                match round % 3 {
                    // Delivered once.
                    0 => {
                        let r = home.report(vec![sent]).await.unwrap();
                        assert_eq!(result(&r).stored, PER_BATCH as u32);
                    }
                    // The same batch through both replicas at the same
                    // moment (the agent timed out and re-sent elsewhere).
                    1 => {
                        let (x, y) =
                            tokio::join!(home.report(vec![sent.clone()]), other.report(vec![sent]));
                        let (x, y) = (x.unwrap(), y.unwrap());
                        let (x, y) = (result(&x), result(&y));
                        assert!(
                            x.already_committed != y.already_committed,
                            "exactly one commit: {x:?} {y:?}"
                        );
                        assert_eq!(x.stored + y.stored, PER_BATCH as u32);
                        assert_eq!(x.conflicts + y.conflicts, 0);
                    }
                    // The client re-sent its records, so they arrive in two
                    // batches (two batch ids) through both replicas at once.
                    _ => {
                        let again = batch(Some(&session), sent.logs.clone().unwrap().logs);
                        let (x, y) =
                            tokio::join!(home.report(vec![sent]), other.report(vec![again]));
                        let (x, y) = (x.unwrap(), y.unwrap());
                        let (x, y) = (result(&x), result(&y));
                        assert_eq!(x.stored + y.stored, PER_BATCH as u32, "{x:?} {y:?}");
                        assert_eq!(x.duplicates + y.duplicates, PER_BATCH as u32);
                        assert_eq!(x.conflicts + y.conflicts, 0, "{x:?} {y:?}");
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // A graceful stop prints every committed record's line.
    let (lines_a, lines_b) = (Arc::clone(&a.lines), Arc::clone(&b.lines));
    a.stop().await.unwrap();
    b.stop().await.unwrap();

    let expected = AGENTS * (ROUNDS * PER_BATCH) as usize;
    let (lines_a, lines_b) = (lines_a.lines(), lines_b.lines());
    assert!(
        !lines_a.is_empty() && !lines_b.is_empty(),
        "both replicas committed and printed"
    );
    let mut printed: HashMap<(String, String, i32), usize> = HashMap::new();
    for line in lines_a.iter().chain(&lines_b) {
        *printed.entry(key(line)).or_default() += 1;
    }
    let twice: Vec<_> = printed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "printed more than once: {twice:?}");
    assert_eq!(printed.len(), expected, "every record printed");

    let store = PgStore::open(pg.url()).await.unwrap();
    let stored = store
        .records(RecordQuery {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), expected, "each record stored once");
    assert!(stored.iter().all(|r| !r.conflict));
    // Every line is out: nothing is left for a replica starting now.
    assert!(
        store.unprinted_records(None, 10).await.unwrap().is_empty(),
        "lines left unprinted"
    );
    store.close().await.unwrap();
}
