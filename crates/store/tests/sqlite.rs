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
