//! The conformance suite against the embedded SQLite store, plus checks that
//! only make sense for SQLite (its files and pragmas).

mod conformance;

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
