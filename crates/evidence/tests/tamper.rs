//! Tampering with a store behind its back, the way someone with write
//! access to the SQLite file or the PostgreSQL tables would, and checking
//! that verification catches each change and names the record. Each case
//! runs on both backends (`sqlite_*`, `pg_*`): the same fixture, the same
//! edits (the same SQL, placeholders aside) and the same problem lines.

use std::sync::Arc;

use jiff::Timestamp;
use uuid::Uuid;
use warden_evidence::checkpoint::{self, CheckpointFile};
use warden_evidence::key::SigningKey;
use warden_evidence::verify::{Authenticity, Report, Trust, verify_store};
use warden_proto::domain::{AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Peer};
use warden_store::{IngestRequest, NewWorkspace, PgStore, SqliteStore, Store, TokenHash};
use warden_testpg::TestPg;

fn batch(session: &str, seqs: std::ops::Range<i32>) -> IngestBatch {
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
enum Db {
    Sqlite(tempfile::TempDir),
    Pg(TestPg),
}

/// A value bound to an edit's statement.
enum Param {
    Int(i64),
    Blob(Vec<u8>),
    Text(String),
}

impl Db {
    fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    fn pg() -> Db {
        Db::Pg(TestPg::start().expect("a PostgreSQL test database"))
    }

    async fn open(&self) -> Box<dyn Store> {
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
    async fn exec(&self, statement: &str, params: &[Param]) -> u64 {
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
    async fn block_of(&self, session: &str) -> (i64, Vec<u8>) {
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

async fn pg_connect(url: &str) -> sqlx::PgConnection {
    <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap()
}

/// A store with three group commits (sessions "a" with 10 records, then
/// "b" and "c" with one record each in one group, then "d" with 5), a
/// checkpoint over all of it; returns the key that signed it.
async fn fixture(db: &Db) -> SigningKey {
    let store = db.open().await;
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
    key
}

async fn verify(db: &Db, trust: &Trust) -> Report {
    let store = db.open().await;
    let report = verify_store(&*store, trust).await.unwrap();
    store.close().await.unwrap();
    report
}

fn trust(key: &SigningKey) -> Trust {
    Trust {
        key: Some(key.public_key()),
        checkpoint: None,
    }
}

/// Runs each `async fn case(new_db: fn() -> Db)` on both backends, as
/// `sqlite::case` and `pg::case`.
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Db::sqlite).await;
                }
            )*
        }
        mod pg {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Db::pg).await;
                }
            )*
        }
    };
}

on_both_stores!(
    an_untouched_store_verifies_and_is_authentic_with_its_key,
    a_changed_url_is_caught_and_the_record_named,
    a_deleted_record_is_caught_and_named,
    swapped_records_are_caught_as_reordered,
    a_dropped_tail_is_caught_with_or_without_its_links,
    a_replaced_checkpoint_is_caught,
    changed_forged_or_removed_session_verdicts_are_caught,
);

/// Rewrites one URL of a block in place, as an attacker who read the block
/// format would: decompress the URL section, change bytes, recompress.
fn change_url(data: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    // version, codec, meta length (one varint byte here), meta, urls.
    let meta_len = usize::from(data[2]);
    assert!(meta_len < 0x80);
    let meta = &data[3..3 + meta_len];
    let urls = zstd::stream::decode_all(&data[3 + meta_len..]).unwrap();
    let text = String::from_utf8(urls).unwrap().replacen(from, to, 1);
    let urls = zstd::bulk::compress(text.as_bytes(), 1).unwrap();
    let mut out = data[..3].to_vec();
    out.extend_from_slice(meta);
    out.extend_from_slice(&urls);
    out
}

async fn an_untouched_store_verifies_and_is_authentic_with_its_key(new_db: fn() -> Db) {
    let db = new_db();
    let key = fixture(&db).await;
    let report = verify(&db, &trust(&key)).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.counts.records, 17);
    assert!(matches!(
        report.authenticity,
        Authenticity::Established { through: 17, .. }
    ));
    assert!(report.verdict().starts_with("OK: 17 records"));

    // Without a trusted key: integrity only, and the verdict says so.
    let report = verify(&db, &Trust::default()).await;
    assert!(report.ok());
    assert_eq!(report.authenticity, Authenticity::NotEstablished);
    assert!(
        report.verdict().contains("authenticity NOT established"),
        "{}",
        report.verdict()
    );

    // Another key is not trusted.
    let (other, _) = SigningKey::generate().unwrap();
    let report = verify(&db, &trust(&other)).await;
    assert!(!report.ok());
    assert!(
        report.problems[0].contains("foreign key"),
        "{:?}",
        report.problems
    );
}

/// Rewrites one URL of session "a"'s block (record `first + 3`); returns
/// `first`.
async fn change_url_of_a(db: &Db) -> i64 {
    let (first, data) = db.block_of("a").await;
    let tampered = change_url(
        &data,
        "https://example.com/0003",
        "https://evil.test.c/0003",
    );
    db.exec(
        "UPDATE blocks SET data = ?1 WHERE first_id = ?2",
        &[Param::Blob(tampered), Param::Int(first)],
    )
    .await;
    first
}

async fn a_changed_url_is_caught_and_the_record_named(new_db: fn() -> Db) {
    let db = new_db();
    let key = fixture(&db).await;
    let first = change_url_of_a(&db).await;
    let report = verify(&db, &trust(&key)).await;
    assert_eq!(
        report.problems,
        [format!(
            "record {} (session a): modified: its content is not what link 1 committed",
            first + 3
        )]
    );
    assert!(report.verdict().starts_with("FAILED: 1 problem"));
}

async fn a_deleted_record_is_caught_and_named(new_db: fn() -> Db) {
    let db = new_db();
    let key = fixture(&db).await;
    let (first, _) = db.block_of("b").await;
    db.exec("DELETE FROM blocks WHERE first_id = ?1", &[Param::Int(first)])
        .await;
    let report = verify(&db, &trust(&key)).await;
    assert_eq!(
        report.problems,
        [format!(
            "record {first}: missing: committed by link 2, gone without a retention tombstone"
        )]
    );
}

async fn swapped_records_are_caught_as_reordered(new_db: fn() -> Db) {
    let db = new_db();
    let key = fixture(&db).await;
    let (b, b_data) = db.block_of("b").await;
    let (c, c_data) = db.block_of("c").await;
    // Swap the two one-record blocks' contents (and sessions), keeping ids.
    for (id, data, session) in [(b, c_data, "c"), (c, b_data, "b")] {
        db.exec(
            "UPDATE blocks SET data = ?1, session_id = ?2 WHERE first_id = ?3",
            &[Param::Blob(data), Param::Text(session.into()), Param::Int(id)],
        )
        .await;
    }
    let report = verify(&db, &trust(&key)).await;
    assert_eq!(
        report.problems,
        [
            format!(
                "record {b} (session c): reordered: it holds the content link 2 committed as record {c}"
            ),
            format!(
                "record {c} (session b): reordered: it holds the content link 2 committed as record {b}"
            ),
        ]
    );
}

async fn a_dropped_tail_is_caught_with_or_without_its_links(new_db: fn() -> Db) {
    // Records gone, links kept: each record is missing.
    let db = new_db();
    let key = fixture(&db).await;
    let (d, _) = db.block_of("d").await;
    db.exec("DELETE FROM blocks WHERE first_id >= ?1", &[Param::Int(d)])
        .await;
    let report = verify(&db, &trust(&key)).await;
    assert_eq!(
        report.problems,
        (d..d + 5)
            .map(|id| format!(
                "record {id}: missing: committed by link 3, gone without a retention tombstone"
            ))
            .collect::<Vec<_>>()
    );

    // The newest records and their link gone: the chain is consistent, but
    // shorter than the checkpoint signed.
    let db = new_db();
    let key = fixture(&db).await;
    let (d, _) = db.block_of("d").await;
    db.exec("DELETE FROM blocks WHERE first_id >= ?1", &[Param::Int(d)])
        .await;
    assert_eq!(db.exec("DELETE FROM chain_links WHERE seq = 3", &[]).await, 1);
    let report = verify(&db, &trust(&key)).await;
    assert_eq!(
        report.problems,
        [format!(
            "truncated after checkpoint 1: it signed link 3 (records through {}), the chain ends at link 2 (record {})",
            d + 4,
            d - 1
        )]
    );
}

async fn a_replaced_checkpoint_is_caught(new_db: fn() -> Db) {
    let db = new_db();
    let key = fixture(&db).await;
    // A checkpoint whose head was edited: the signature fails.
    db.exec(
        "UPDATE checkpoints SET head = ?1",
        &[Param::Blob(vec![0; 32])],
    )
    .await;
    let report = verify(&db, &trust(&key)).await;
    assert_eq!(
        report.problems,
        ["checkpoint 1 (link 3): its signature does not verify: replaced or forged"]
    );

    // The whole chain rewritten after a URL change and re-signed with the
    // attacker's own key: against the trusted key it is a foreign key, and
    // against the kept checkpoint the chain does not extend it.
    let db = new_db();
    let key = fixture(&db).await;
    // Keep the checkpoint as an auditor would.
    let kept = {
        let store = db.open().await;
        let c = store.latest_checkpoint().await.unwrap().unwrap();
        store.close().await.unwrap();
        CheckpointFile::of(&c)
    };
    let (attacker, _) = SigningKey::generate().unwrap();
    change_url_of_a(&db).await;
    // Recompute the links as the attacker would, then sign.
    rewrite_chain(&db).await;
    {
        let store = db.open().await;
        let head = store.chain_head().await.unwrap().unwrap();
        store
            .add_checkpoint(checkpoint::sign(
                &attacker,
                &head,
                head.last_id,
                Timestamp::now(),
            ))
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let report = verify(&db, &Trust::default()).await;
    // Integrity alone is fooled except for the first checkpoint...
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("checkpoint 1: the chain's link")),
        "{:?}",
        report.problems
    );
    let report = verify(
        &db,
        &Trust {
            key: None,
            checkpoint: Some(kept),
        },
    )
    .await;
    assert!(
        report.problems.iter().any(|p| p
            .starts_with("the trusted checkpoint: the chain's link 1 is not the one signed")
            || p.starts_with("the trusted checkpoint: the chain's link 3 is not the one signed")),
        "{:?}",
        report.problems
    );
    let report = verify(&db, &trust(&key)).await;
    assert!(report.problems.iter().any(|p| p.contains("foreign key")));
    assert_eq!(report.authenticity, Authenticity::NotEstablished);
}

/// Recomputes every link from the records as they are now (what an
/// attacker with the database and the published format can do).
async fn rewrite_chain(db: &Db) {
    use warden_store::chain::{ChainHead, LinkBuilder, RecordView};
    let store = db.open().await;
    let links = store.chain_links(-1, 100).await.unwrap();
    let records = store
        .records(warden_store::RecordQuery {
            order: warden_store::Order::OldestFirst,
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    store.close().await.unwrap();
    let mut head = ChainHead::EMPTY;
    for link in links {
        let mut b = LinkBuilder::default();
        for r in records
            .iter()
            .filter(|r| r.id >= link.first_id && r.id <= link.last_id)
        {
            b.push(&RecordView::of(r));
        }
        let at = Timestamp::from_nanosecond(i128::from(link.committed_ns)).unwrap();
        let new = b.finish(&head, link.last_id, at);
        db.exec(
            "UPDATE chain_links SET records_hash = ?1, detail = ?2, head = ?3 WHERE seq = ?4",
            &[
                Param::Blob(new.records_hash.to_vec()),
                Param::Blob(new.detail.clone()),
                Param::Blob(new.head.to_vec()),
                Param::Int(new.seq),
            ],
        )
        .await;
        head = head.after(&new);
    }
}

/// Signs verdicts for sessions "a" (twice: the second supersedes the
/// first) and "d", as the server's completeness task does, and stores them.
async fn with_verdicts(db: &Db, key: &SigningKey) -> Vec<i64> {
    use warden_evidence::verdict;
    let store = db.open().await;
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
        let v = verdict::sign(key, &summary, &head, head.last_id, supersedes, 1);
        let stored = store.add_session_verdict(v).await.unwrap();
        previous = Some(stored.id);
        ids.push(stored.id);
    }
    store.close().await.unwrap();
    ids
}

async fn changed_forged_or_removed_session_verdicts_are_caught(new_db: fn() -> Db) {
    let db = new_db();
    let key = fixture(&db).await;
    let ids = with_verdicts(&db, &key).await;
    let report = verify(&db, &trust(&key)).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.verdicts, 3);
    assert!(report.verdict().contains("3 session verdicts"));

    // A verdict's statement changed (its verdict words).
    let original = {
        let store = db.open().await;
        let all = warden_evidence::verify::all_verdicts(&*store).await.unwrap();
        store.close().await.unwrap();
        all.into_iter()
            .find(|v| v.id == ids[2])
            .unwrap()
            .statement
    };
    db.exec(
        "UPDATE session_verdicts SET statement = replace(statement, 'verdict incomplete', 'verdict complete') WHERE id = ?1",
        &[Param::Int(ids[2])],
    )
    .await;
    let report = verify(&db, &trust(&key)).await;
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].contains(&format!("session verdict {}", ids[2]))
            && report.problems[0].contains("signature does not hold"),
        "{:?}",
        report.problems
    );

    // Re-signed, as it was, with another key: a foreign key.
    let (other, _) = SigningKey::generate().unwrap();
    let public = other.public_key();
    let forged = original.replace(
        &format!("\nkey {}\n", key.public_key().key_id()),
        &format!("\nkey {}\n", public.key_id()),
    );
    db.exec(
        "UPDATE session_verdicts SET statement = ?1, key_id = ?2, public_key = ?3, signature = ?4 WHERE id = ?5",
        &[
            Param::Text(forged.clone()),
            Param::Text(public.key_id()),
            Param::Blob(public.0.to_vec()),
            Param::Blob(other.sign(forged.as_bytes())),
            Param::Int(ids[2]),
        ],
    )
    .await;
    let report = verify(&db, &trust(&key)).await;
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("foreign key") && p.contains(&format!("verdict {}", ids[2]))),
        "{:?}",
        report.problems
    );

    // The superseded verdict of "a" removed: the one that superseded it
    // now names a verdict that is not there.
    db.exec(
        "DELETE FROM session_verdicts WHERE id = ?1",
        &[Param::Int(ids[0])],
    )
    .await;
    let report = verify(&db, &trust(&key)).await;
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&format!("verdict {}", ids[1]))
                && p.contains("a verdict was removed or replaced")),
        "{:?}",
        report.problems
    );
}
