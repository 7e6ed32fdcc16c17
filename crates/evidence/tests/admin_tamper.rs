//! Tampering with the admin event log behind the store's back (SQLite file,
//! PostgreSQL tables), the way someone with write access to the database
//! would, and checking that verification names each changed, deleted or
//! moved event.

use std::path::Path;

use jiff::Timestamp;
use uuid::Uuid;
use warden_evidence::admin_events::{all, check};
use warden_evidence::key::SigningKey;
use warden_evidence::verify::{Trust, verify_store};
use warden_store::{NewAdminEvent, PgStore, SqliteStore, Store};
use warden_testpg::TestPg;

/// Appends `n` signed events, as the control plane does.
async fn record(store: &dyn Store, key: &SigningKey, n: usize) {
    for i in 1..=n {
        let public = key.public_key();
        let mut event = NewAdminEvent {
            id: Uuid::now_v7(),
            at: Timestamp::now(),
            actor_id: None,
            actor_name: "admin".into(),
            actor_role: "admin".into(),
            action: "workspace.create".into(),
            target: format!("w{i}"),
            detail: format!(r#"{{"owner":"alice{i}"}}"#),
            key_id: public.key_id(),
            public_key: public.0.to_vec(),
            signature: Vec::new(),
        };
        event.signature = key.sign(&event.signed_form());
        store.append_admin_event(event).await.unwrap();
    }
}

async fn sqlite_fixture(dir: &Path) -> (std::path::PathBuf, SigningKey) {
    let path = dir.join("warden.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let (key, _) = SigningKey::generate().unwrap();
    record(&store, &key, 4).await;
    store.close().await.unwrap();
    (path, key)
}

async fn sqlite_problems(path: &Path, key: &SigningKey) -> (bool, Vec<String>, String) {
    let store = SqliteStore::open(path).await.unwrap();
    let report = verify_store(
        &store,
        &Trust {
            key: Some(key.public_key()),
            checkpoint: None,
        },
    )
    .await
    .unwrap();
    store.close().await.unwrap();
    (report.ok(), report.problems.clone(), report.verdict())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_untouched_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = sqlite_fixture(dir.path()).await;
    let (ok, problems, verdict) = sqlite_problems(&path, &key).await;
    assert!(ok, "{problems:?}");
    assert!(verdict.contains("4 admin events"), "{verdict}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_changed_event_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = sqlite_fixture(dir.path()).await;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE admin_events SET target = 'prod' WHERE seq = 2", [])
        .unwrap();
    let (ok, problems, verdict) = sqlite_problems(&path, &key).await;
    assert!(!ok);
    assert!(verdict.starts_with("FAILED"), "{verdict}");
    assert!(
        problems
            .iter()
            .all(|p| p.starts_with("admin event 2 (workspace.create \"prod\")")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("modified")),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_deleted_event_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = sqlite_fixture(dir.path()).await;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM admin_events WHERE seq = 3", [])
        .unwrap();
    let (ok, problems, _) = sqlite_problems(&path, &key).await;
    assert!(!ok);
    assert_eq!(
        problems,
        ["admin event 3: missing: deleted from the admin event chain"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_swapped_events_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = sqlite_fixture(dir.path()).await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    // Renumber 2 and 3 the other way round: the rows are otherwise intact.
    conn.execute_batch(
        "UPDATE admin_events SET seq = -2 WHERE seq = 2;
         UPDATE admin_events SET seq = 2 WHERE seq = 3;
         UPDATE admin_events SET seq = 3 WHERE seq = -2;",
    )
    .unwrap();
    drop(conn);
    let (ok, problems, _) = sqlite_problems(&path, &key).await;
    assert!(!ok);
    assert!(
        problems.iter().any(|p| p.starts_with("admin event 2")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("admin event 3")),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_resigned_event_is_foreign_to_the_trusted_key() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = sqlite_fixture(dir.path()).await;
    // Someone appends with a key of their own (a consistent chain).
    let store = SqliteStore::open(&path).await.unwrap();
    let (forger, _) = SigningKey::generate().unwrap();
    record(&store, &forger, 1).await;
    store.close().await.unwrap();
    let (ok, problems, _) = sqlite_problems(&path, &key).await;
    assert!(!ok);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("admin event 5") && problems[0].contains("foreign key"),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_deletions_and_swaps_are_named() {
    use sqlx::Connection;
    let pg = TestPg::start().expect("a PostgreSQL test database");
    let store = PgStore::open(pg.url()).await.unwrap();
    let (key, _) = SigningKey::generate().unwrap();
    record(&store, &key, 5).await;
    let trusted = [key.public_key()];
    assert!(
        check(&all(&store).await.unwrap(), Some(&trusted))
            .problems
            .is_empty()
    );

    let mut conn = sqlx::PgConnection::connect(pg.url()).await.unwrap();
    sqlx::query("UPDATE admin_events SET detail = '{\"owner\":\"mallory\"}' WHERE seq = 2")
        .execute(&mut conn)
        .await
        .unwrap();
    let found = check(&all(&store).await.unwrap(), Some(&trusted)).problems;
    assert!(!found.is_empty());
    assert!(
        found.iter().all(|p| p.starts_with("admin event 2 ")),
        "{found:?}"
    );

    sqlx::query("DELETE FROM admin_events WHERE seq = 4")
        .execute(&mut conn)
        .await
        .unwrap();
    let found = check(&all(&store).await.unwrap(), Some(&trusted)).problems;
    assert!(
        found.contains(&"admin event 4: missing: deleted from the admin event chain".to_owned()),
        "{found:?}"
    );

    for renumber in [
        "UPDATE admin_events SET seq = -1 WHERE seq = 1",
        "UPDATE admin_events SET seq = 1 WHERE seq = 3",
        "UPDATE admin_events SET seq = 3 WHERE seq = -1",
    ] {
        sqlx::query(renumber).execute(&mut conn).await.unwrap();
    }
    let found = check(&all(&store).await.unwrap(), Some(&trusted)).problems;
    assert!(
        found.iter().any(|p| p.starts_with("admin event 1 ")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.starts_with("admin event 3 ")),
        "{found:?}"
    );
    conn.close().await.unwrap();
    store.close().await.unwrap();
}
