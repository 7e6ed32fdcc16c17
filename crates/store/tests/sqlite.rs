//! The conformance suite against the embedded SQLite store, plus checks that
//! only make sense for SQLite (its files and pragmas).

mod conformance;
#[path = "sqlite/session_index.rs"]
mod session_index;

use std::sync::Arc;

use conformance::StoreFactory;
use sqlx::{ConnectOptions, Row};
use warden_store::{SqliteStore, Store};

/// A fresh database file in its own temporary directory.
struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Sqlite {
        Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("data").join("warden.db")
    }
}

impl StoreFactory for Sqlite {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.path()).await.unwrap())
    }
}

conformance::suite!(Sqlite::new());
conformance::chain_suite!(Sqlite::new());
conformance::exports_suite!(Sqlite::new());
conformance::access_suite!(Sqlite::new());

#[tokio::test]
async fn the_database_is_in_wal_mode_with_full_sync() {
    let factory = Sqlite::new();
    let store = factory.open().await;
    store.ping().await.unwrap();
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(factory.path())
        .connect()
        .await
        .unwrap();
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "wal");
    store.close().await.unwrap();
}

#[tokio::test]
async fn opening_twice_runs_migrations_once() {
    let factory = Sqlite::new();
    let first = factory.open().await;
    first.close().await.unwrap();
    let second = factory.open().await;
    second.ping().await.unwrap();
}

/// The line watermark as written in the database file.
fn printed_through_on_disk(factory: &Sqlite) -> i64 {
    let conn = rusqlite::Connection::open(factory.path()).unwrap();
    conn.query_row(
        "SELECT coalesce((SELECT value FROM store_state WHERE key = 'printed_through'), 0)",
        [],
        |row| row.get(0),
    )
    .unwrap()
}

/// Commits records `seqs` of session `s1` for `dev`; their ids, sorted.
async fn commit_s1(
    store: &dyn Store,
    dev: &warden_store::Workspace,
    seqs: std::ops::Range<i32>,
) -> Vec<i64> {
    use conformance::{batch, records, request};

    let mut ids = store
        .ingest(request(dev, vec![batch(Some("s1"), records(seqs))]))
        .await
        .unwrap()
        .record_ids;
    ids.sort_unstable();
    ids
}

/// A note of printed lines waits for the next commit instead of paying a
/// transaction and an fsync of its own, and reads in this process see it
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printed_note_is_written_by_the_next_commit() {
    let factory = Sqlite::new();
    let store = factory.open().await;
    let dev = conformance::create(&*store, "dev").await;
    let first = commit_s1(&*store, &dev, 0..5).await;
    store.mark_printed(first.clone()).await.unwrap();
    assert!(store.unprinted_records(None, 100).await.unwrap().is_empty());
    let second = commit_s1(&*store, &dev, 5..8).await;
    // The second commit wrote the first one's note with it.
    assert_eq!(printed_through_on_disk(&factory), *first.last().unwrap());
    let due: Vec<i64> = store
        .unprinted_records(None, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(due, second);
    store.close().await.unwrap();
}

/// With no commit after it, a note is written by a flush of its own soon
/// after, so a crash then prints none of those lines again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printed_note_with_no_commit_after_it_is_flushed() {
    let factory = Sqlite::new();
    let store = factory.open().await;
    let dev = conformance::create(&*store, "dev").await;
    let ids = commit_s1(&*store, &dev, 0..5).await;
    let last = *ids.last().unwrap();
    store.mark_printed(ids).await.unwrap();
    // Waits for the flush's commit itself (about 40 ms), polling the file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while printed_through_on_disk(&factory) != last {
        assert!(
            std::time::Instant::now() < deadline,
            "the note was never written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // A crash now (no close) loses nothing of it.
    drop(store);
    let store = factory.open().await;
    assert!(store.unprinted_records(None, 100).await.unwrap().is_empty());
    store.close().await.unwrap();
}

/// The query API's most common questions pick blocks from an index walked
/// in id order: no scan of other workspaces' blocks, no sort.
#[tokio::test]
async fn a_workspaces_newest_records_and_denials_come_from_an_index() {
    use warden_proto::domain::Decision;
    use warden_store::{NewWorkspace, Order, RecordQuery, TokenHash};

    let factory = Sqlite::new();
    let store = SqliteStore::open(&factory.path()).await.unwrap();
    let dev = store
        .create_workspace(
            NewWorkspace {
                id: uuid::Uuid::now_v7(),
                name: "dev".into(),
                owner: "alice".into(),
                startup_script: String::new(),
                agent_id: uuid::Uuid::new_v4(),
                agent_name: "main".into(),
                token_hash: TokenHash([1; 32]),
            },
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
    let plan = |decision| RecordQuery {
        workspace_id: Some(dev.id),
        decision,
        order: Order::NewestFirst,
        limit: 100,
        ..Default::default()
    };
    let denied = store
        .records_plan(&plan(Some(Decision::Deny)))
        .await
        .unwrap();
    assert!(
        denied
            .iter()
            .any(|step| step.contains("blocks_agent_denied")),
        "{denied:?}"
    );
    let any = store.records_plan(&plan(None)).await.unwrap();
    assert!(
        any.iter().any(|step| step.contains("INDEX blocks_agent ")),
        "{any:?}"
    );
    for steps in [&denied, &any] {
        assert!(
            !steps.iter().any(|step| step.contains("TEMP B-TREE")),
            "sorted instead of walking the index: {steps:?}"
        );
    }
    store.close().await.unwrap();
}

/// A database written by the release that kept a row per record
/// (migrations 0001-0003; `tests/data/v3.db`, made by that release's store
/// API with the generator kept beside it as `tests/data/gen_fixture.rs`)
/// opens with this one: every record is there with the same id and fields,
/// sessions, losses and the lines still due are as that release answered
/// (`tests/data/v3.expected`), and ingest goes on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_row_per_record_release_keeps_everything() {
    use warden_proto::domain::{AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Peer};
    use warden_store::IngestRequest;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    std::fs::copy(format!("{fixture}/v3.db"), &path).unwrap();
    let expected = std::fs::read_to_string(format!("{fixture}/v3.expected")).unwrap();
    let store = SqliteStore::open(&path).await.unwrap();

    let records = store
        .records(warden_store::RecordQuery {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut want_records = Vec::new();
    let mut want_sessions = Vec::new();
    let mut want_losses = Vec::new();
    let mut want_unprinted = String::new();
    for line in expected.lines() {
        let (kind, rest) = line.split_once('\t').unwrap();
        match kind {
            "record" => want_records.push(rest.to_owned()),
            "session" => want_sessions.push(rest.to_owned()),
            "loss" => want_losses.push(rest.to_owned()),
            "unprinted" => want_unprinted = rest.to_owned(),
            other => panic!("unknown line kind {other}"),
        }
    }
    // The old release's receive time was the agent's; the control plane's
    // was the commit stamp. Both are kept, under their new names.
    let got_records: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{}\t{}\t{}\t{:?}\t{}\t{}\t{}\t{:?}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                r.id,
                r.workspace_name,
                r.batch_id,
                r.session_id,
                r.sequence_number,
                r.decision.as_str(),
                r.conflict,
                r.event_time,
                r.agent_received_at.as_nanosecond(),
                r.received_at.as_nanosecond(),
                r.method,
                r.url,
                r.matched_rule,
                r.process,
                r.peer.uid,
                r.peer.gid,
                r.peer.pid,
                r.peer.exe,
            )
        })
        .collect();
    assert_eq!(got_records.len(), 353);
    assert_eq!(got_records, want_records);

    let mut got_sessions = Vec::new();
    let mut got_losses = Vec::new();
    for name in ["dev", "ops"] {
        let w = store.workspace(name).await.unwrap().unwrap();
        for s in store.sessions(w.id).await.unwrap() {
            let m = &s.summary;
            got_sessions.push(format!(
                "{name}\t{}\t{}\t{}\t{}\t{:?}\t{:?}\t{:?}\t{}\t{}\t{}\t{:?}\t{:?}",
                m.session_id,
                m.records,
                m.conflicts,
                m.distinct_sequence_numbers,
                m.first_sequence_number,
                m.last_sequence_number,
                m.final_sequence_number,
                m.purged,
                m.reported_losses(),
                m.missing(),
                s.first_record_id,
                s.last_record_id
            ));
        }
        for l in store.workspace_losses(w.id).await.unwrap() {
            got_losses.push(format!(
                "{name}\t{}\t{}\t{}\t{}",
                l.source.as_str(),
                l.reason,
                l.records,
                l.frames
            ));
        }
    }
    assert_eq!(got_sessions, want_sessions);
    assert_eq!(got_losses, want_losses);
    let due: Vec<String> = store
        .unprinted_records(None, 1000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(due.join(","), want_unprinted);

    // Ingest goes on: old numbers are duplicates or conflicts against the
    // converted blocks, new ones get ids above every old one.
    let dev = store.workspace("dev").await.unwrap().unwrap();
    let old = records
        .iter()
        .find(|r| r.session_id.as_deref() == Some("s1") && r.sequence_number == 20)
        .unwrap();
    let resent = AuditRecord {
        decision: old.decision,
        event_time: old.event_time,
        method: old.method.clone(),
        url: old.url.clone(),
        matched_rule: old.matched_rule.clone(),
        sequence_number: 20,
    };
    let forged = AuditRecord {
        url: "https://evil.example/changed".into(),
        sequence_number: 21,
        ..resent.clone()
    };
    let new = AuditRecord {
        event_time: EventTime::Missing,
        decision: Decision::Deny,
        sequence_number: 300,
        ..resent.clone()
    };
    let outcome = store
        .ingest(std::sync::Arc::new(IngestRequest {
            agent_id: dev.agent.id,
            at: jiff::Timestamp::now(),
            batches: vec![IngestBatch {
                batch_id: uuid::Uuid::now_v7(),
                received_at: jiff::Timestamp::now(),
                peer: Peer {
                    uid: old.peer.uid,
                    gid: old.peer.gid,
                    pid: old.peer.pid,
                    comm: old.peer.comm.clone(),
                    exe: old.peer.exe.clone(),
                },
                logs: Some(ClientLogs {
                    session_id: Some("s1".into()),
                    confined_process_name: old.process.clone(),
                    records: vec![resent, forged, new],
                    ..Default::default()
                }),
                client_status: Vec::new(),
                agent_drops: Vec::new(),
            }],
        }))
        .await
        .unwrap();
    let result = &outcome.batches[0];
    assert_eq!(
        (result.stored(), result.duplicates, result.conflicts()),
        (1, 1, 1)
    );
    assert!(outcome.record_ids.iter().all(|&id| id > 363));
    store.close().await.unwrap();
    // A second open converts nothing again.
    let store = SqliteStore::open(&path).await.unwrap();
    let all = store
        .records(warden_store::RecordQuery {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 355);
    store.close().await.unwrap();
}

/// A database written before the record chain existed (the v3 fixture) is
/// sealed by the genesis link when first opened: its records check clean
/// from then on, new records chain after them, and reopening does not seal
/// again (a second genesis would bless whatever the file holds then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_stored_before_the_chain_are_sealed_by_the_genesis_link() {
    use warden_store::chain::check::check_store;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    std::fs::copy(format!("{fixture}/v3.db"), &path).unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    let links = store.chain_links(-1, 10).await.unwrap();
    assert_eq!(links.len(), 1);
    let genesis = &links[0];
    assert_eq!((genesis.seq, genesis.records), (0, 353));
    let (problems, counts) = check_store(&store).await.unwrap().finish();
    assert_eq!(problems, []);
    assert_eq!(counts.records, 353);
    store.close().await.unwrap();

    // Reopened: the same genesis, no second one.
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.chain_links(-1, 10).await.unwrap(), links);
    store.close().await.unwrap();

    // A modified sealed record is caught and named.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let ids: Vec<i64> = conn
        .prepare("SELECT first_id FROM blocks ORDER BY first_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // Swapping two whole blocks' contents moves their records.
    let (a, b) = (ids[0], ids[1]);
    conn.execute(
        "UPDATE blocks SET data = (SELECT data FROM blocks WHERE first_id = ?2) \
         WHERE first_id = ?1",
        [a, b],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).await.unwrap();
    let (problems, _) = check_store(&store).await.unwrap().finish();
    assert!(!problems.is_empty());
    assert!(
        problems
            .iter()
            .all(|p| p.record_id().is_some_and(|id| id >= a && id < b)),
        "{problems:?}"
    );
    store.close().await.unwrap();
}

/// A database whose chain was deleted does not open: starting a new chain
/// would seal whatever it holds now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_chain_was_deleted_refuses_to_open() {
    let factory = Sqlite::new();
    let store = factory.open().await;
    store.close().await.unwrap();
    let conn = rusqlite::Connection::open(factory.path()).unwrap();
    conn.execute("DELETE FROM chain_links", []).unwrap();
    drop(conn);
    let err = SqliteStore::open(&factory.path()).await.unwrap_err();
    assert!(err.to_string().contains("record chain is missing"), "{err}");
}
