//! The store the evidence tests tamper with or export: a fixture with a
//! signed checkpoint and session verdicts, on SQLite or PostgreSQL, and its
//! tables to edit behind the store's back.

#![allow(dead_code)] // each test file uses part of it

use std::sync::Arc;

use jiff::Timestamp;
use sha2::Digest;
use uuid::Uuid;
use warden_evidence::checkpoint;
use warden_evidence::key::SigningKey;
use warden_evidence::verify::{Report, Trust, verify_store};
use warden_proto::domain::{AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Peer};
use warden_store::{
    IngestRequest, NewWorkspace, PgStore, SqliteStore, Store, TokenHash, Workspace,
};
use warden_testpg::TestPg;

/// Runs each `async fn case(new_db: fn() -> Db)` of the test file on both
/// backends, as `sqlite::case` and `pg::case`.
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::support::Db::sqlite).await;
                }
            )*
        }
        mod pg {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::support::Db::pg).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_stores;

pub fn batch(session: &str, seqs: std::ops::Range<i32>) -> IngestBatch {
    IngestBatch {
        batch_id: Uuid::now_v7(),
        received_at: Timestamp::new(1_765_227_527, 0).unwrap(),
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
                    event_time: EventTime::Known(Timestamp::new(1_765_227_526, 0).unwrap()),
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

/// A store under test, and its tables to edit behind its back.
pub enum Db {
    Sqlite(tempfile::TempDir),
    Pg(TestPg),
}

/// A value bound to an edit's statement.
pub enum Param {
    Int(i64),
    Blob(Vec<u8>),
    Text(String),
}

impl Db {
    pub fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    pub fn pg() -> Db {
        Db::Pg(TestPg::start().expect("a PostgreSQL test database"))
    }

    pub async fn open(&self) -> Box<dyn Store> {
        match self {
            Db::Sqlite(dir) => Box::new(
                SqliteStore::open(&dir.path().join("warden.db"))
                    .await
                    .unwrap(),
            ),
            Db::Pg(pg) => Box::new(PgStore::open(pg.url()).await.unwrap()),
        }
    }

    /// Runs `statement` (SQLite's `?N` placeholders; `$N` on PostgreSQL).
    pub async fn exec(&self, statement: &str, params: &[Param]) -> u64 {
        match self {
            Db::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("warden.db")).unwrap();
                let values: Vec<rusqlite::types::Value> = params
                    .iter()
                    .map(|p| match p {
                        Param::Int(i) => rusqlite::types::Value::Integer(*i),
                        Param::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
                        Param::Text(t) => rusqlite::types::Value::Text(t.clone()),
                    })
                    .collect();
                conn.execute(statement, rusqlite::params_from_iter(values))
                    .unwrap() as u64
            }
            Db::Pg(pg) => {
                let mut sql = statement.to_owned();
                for i in (1..=params.len()).rev() {
                    sql = sql.replace(&format!("?{i}"), &format!("${i}"));
                }
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for p in params {
                    query = match p {
                        Param::Int(i) => query.bind(*i),
                        Param::Blob(b) => query.bind(b.clone()),
                        Param::Text(t) => query.bind(t.clone()),
                    };
                }
                let mut conn = pg_connect(pg.url()).await;
                let done = query.execute(&mut conn).await.unwrap().rows_affected();
                sqlx::Connection::close(conn).await.unwrap();
                done
            }
        }
    }

    /// The block that holds session `s`'s records: (first id, data).
    pub async fn block_of(&self, session: &str) -> (i64, Vec<u8>) {
        match self {
            Db::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("warden.db"))
                .unwrap()
                .query_row(
                    "SELECT first_id, data FROM blocks WHERE session_id = ?1",
                    [session],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap(),
            Db::Pg(pg) => {
                let mut conn = pg_connect(pg.url()).await;
                let row: (i64, Vec<u8>) =
                    sqlx::query_as("SELECT first_id, data FROM blocks WHERE session_id = $1")
                        .bind(session)
                        .fetch_one(&mut conn)
                        .await
                        .unwrap();
                sqlx::Connection::close(conn).await.unwrap();
                row
            }
        }
    }
}

pub async fn pg_connect(url: &str) -> sqlx::PgConnection {
    <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap()
}

/// Creates workspace `name` (owner alice, agent "main").
pub async fn workspace(store: &dyn Store, name: &str) -> Workspace {
    store
        .create_workspace(
            NewWorkspace {
                id: Uuid::now_v7(),
                name: name.into(),
                owner: "alice".into(),
                startup_script: String::new(),
                agent_id: Uuid::new_v4(),
                agent_name: "main".into(),
                // Distinct per workspace: token hashes are unique.
                token_hash: TokenHash(sha2::Sha256::digest(name.as_bytes()).into()),
            },
            Timestamp::now(),
        )
        .await
        .unwrap()
}

/// A store with three group commits (sessions "a" with 10 records, then
/// "b" and "c" with one record each in one group, then "d" with 5), a
/// checkpoint over all of it; returns the key that signed it.
pub async fn fixture(db: &Db) -> SigningKey {
    let store = db.open().await;
    let w = workspace(&*store, "dev").await;
    for batches in [
        vec![batch("a", 0..10)],
        vec![batch("b", 0..1), batch("c", 0..1)],
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
    let (key, _) = SigningKey::generate().unwrap();
    checkpoint_head(&*store, &key).await;
    store.close().await.unwrap();
    key
}

/// Signs a checkpoint of the store's chain head with `key` and stores it.
pub async fn checkpoint_head(store: &dyn Store, key: &SigningKey) {
    let head = store.chain_head().await.unwrap().unwrap();
    store
        .add_checkpoint(checkpoint::sign(key, &head, head.last_id, Timestamp::now()))
        .await
        .unwrap();
}

pub async fn verify(db: &Db, trust: &Trust) -> Report {
    let store = db.open().await;
    let report = verify_store(&*store, trust).await.unwrap();
    store.close().await.unwrap();
    report
}

pub fn trust(key: &SigningKey) -> Trust {
    Trust {
        key: Some(key.public_key()),
        checkpoint: None,
    }
}

/// Signs a verdict for session `session` of workspace `workspace` over the
/// chain as it stands, superseding the session's current one, as the
/// server's completeness task does; stores it and returns its id.
pub async fn with_verdict(db: &Db, key: &SigningKey, workspace: &str, session: &str) -> i64 {
    use warden_evidence::verdict;
    let store = db.open().await;
    let workspace = store.workspace(workspace).await.unwrap().unwrap().id;
    let head = store.chain_head().await.unwrap().unwrap();
    let summary = store
        .session_summary(workspace, session)
        .await
        .unwrap()
        .unwrap();
    let supersedes = store
        .session_verdicts(workspace, session)
        .await
        .unwrap()
        .last()
        .map(|v| v.id);
    let v = verdict::sign(key, &summary, &head, head.last_id, supersedes, 1);
    let id = store.add_session_verdict(v).await.unwrap().id;
    store.close().await.unwrap();
    id
}

/// Verdicts for sessions "a" (twice: the second supersedes the first) and
/// "d" of workspace "dev"; their ids.
pub async fn with_verdicts(db: &Db, key: &SigningKey) -> Vec<i64> {
    let mut ids = Vec::new();
    for session in ["a", "a", "d"] {
        ids.push(with_verdict(db, key, "dev", session).await);
    }
    ids
}
