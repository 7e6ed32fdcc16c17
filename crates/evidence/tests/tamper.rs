//! Tampering with a SQLite store behind its back, the way someone with
//! write access to the file would, and checking that verification catches
//! each change and names the record.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use uuid::Uuid;
use warden_evidence::checkpoint::{self, CheckpointFile};
use warden_evidence::key::SigningKey;
use warden_evidence::verify::{Authenticity, Report, Trust, verify_store};
use warden_proto::domain::{AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Peer};
use warden_store::{IngestRequest, NewWorkspace, SqliteStore, Store, TokenHash};

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

/// A store with three group commits (sessions "a" with 10 records, then
/// "b" and "c" with one record each in one group, then "d" with 5), a
/// checkpoint over all of it, and the key that signed it.
async fn fixture(dir: &Path) -> (PathBuf, SigningKey) {
    let path = dir.join("warden.db");
    let store = SqliteStore::open(&path).await.unwrap();
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
    (path, key)
}

async fn verify(path: &Path, trust: &Trust) -> Report {
    let store = SqliteStore::open(path).await.unwrap();
    let report = verify_store(&store, trust).await.unwrap();
    store.close().await.unwrap();
    report
}

fn trust(key: &SigningKey) -> Trust {
    Trust {
        key: Some(key.public_key()),
        checkpoint: None,
    }
}

fn sql(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

/// The block that holds session `s`'s records: (first id, data).
fn block_of(path: &Path, session: &str) -> (i64, Vec<u8>) {
    sql(path)
        .query_row(
            "SELECT first_id, data FROM blocks WHERE session_id = ?1",
            [session],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_store_verifies_and_is_authentic_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = fixture(dir.path()).await;
    let report = verify(&path, &trust(&key)).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.counts.records, 17);
    assert!(matches!(
        report.authenticity,
        Authenticity::Established { through: 17, .. }
    ));
    assert!(report.verdict().starts_with("OK: 17 records"));

    // Without a trusted key: integrity only, and the verdict says so.
    let report = verify(&path, &Trust::default()).await;
    assert!(report.ok());
    assert_eq!(report.authenticity, Authenticity::NotEstablished);
    assert!(
        report.verdict().contains("authenticity NOT established"),
        "{}",
        report.verdict()
    );

    // Another key is not trusted.
    let (other, _) = SigningKey::generate().unwrap();
    let report = verify(&path, &trust(&other)).await;
    assert!(!report.ok());
    assert!(
        report.problems[0].contains("foreign key"),
        "{:?}",
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_url_is_caught_and_the_record_named() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = fixture(dir.path()).await;
    let (first, data) = block_of(&path, "a");
    let tampered = change_url(
        &data,
        "https://example.com/0003",
        "https://evil.test.c/0003",
    );
    sql(&path)
        .execute(
            "UPDATE blocks SET data = ?1 WHERE first_id = ?2",
            rusqlite::params![tampered, first],
        )
        .unwrap();
    let report = verify(&path, &trust(&key)).await;
    assert_eq!(
        report.problems,
        [format!(
            "record {} (session a): modified: its content is not what link 1 committed",
            first + 3
        )]
    );
    assert!(report.verdict().starts_with("FAILED: 1 problem"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_record_is_caught_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = fixture(dir.path()).await;
    let (first, _) = block_of(&path, "b");
    sql(&path)
        .execute("DELETE FROM blocks WHERE first_id = ?1", [first])
        .unwrap();
    let report = verify(&path, &trust(&key)).await;
    assert_eq!(
        report.problems,
        [format!(
            "record {first}: missing: committed by link 2, gone without a retention tombstone"
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_records_are_caught_as_reordered() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = fixture(dir.path()).await;
    let (b, b_data) = block_of(&path, "b");
    let (c, c_data) = block_of(&path, "c");
    // Swap the two one-record blocks' contents (and sessions), keeping ids.
    let conn = sql(&path);
    for (id, data, session) in [(b, &c_data, "c"), (c, &b_data, "b")] {
        conn.execute(
            "UPDATE blocks SET data = ?1, session_id = ?2 WHERE first_id = ?3",
            rusqlite::params![data, session, id],
        )
        .unwrap();
    }
    drop(conn);
    let report = verify(&path, &trust(&key)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_tail_is_caught_with_or_without_its_links() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = fixture(dir.path()).await;
    let (d, _) = block_of(&path, "d");
    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).unwrap();

    // Records gone, links kept: each record is missing.
    sql(&path)
        .execute("DELETE FROM blocks WHERE first_id >= ?1", [d])
        .unwrap();
    let report = verify(&path, &trust(&key)).await;
    assert_eq!(report.problems.len(), 5);
    assert!(report.problems[0].starts_with(&format!("record {d}: missing")));

    // Records and their link gone: the chain is consistent, but shorter
    // than the checkpoint signed.
    let conn = sql(&copy);
    conn.execute("DELETE FROM blocks WHERE first_id >= ?1", [d])
        .unwrap();
    conn.execute("DELETE FROM chain_links WHERE seq = 3", [])
        .unwrap();
    drop(conn);
    let report = verify(&copy, &trust(&key)).await;
    assert_eq!(
        report.problems,
        [format!(
            "truncated after checkpoint 1: it signed link 3 (records through {}), the chain ends at link 2 (record {})",
            d + 4,
            d - 1
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_checkpoint_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = fixture(dir.path()).await;
    // Keep the checkpoint as an auditor would.
    let kept = {
        let store = SqliteStore::open(&path).await.unwrap();
        let c = store.latest_checkpoint().await.unwrap().unwrap();
        store.close().await.unwrap();
        CheckpointFile::of(&c)
    };
    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).unwrap();

    // A checkpoint whose head was edited: the signature fails.
    sql(&path)
        .execute("UPDATE checkpoints SET head = zeroblob(32)", [])
        .unwrap();
    let report = verify(&path, &trust(&key)).await;
    assert_eq!(
        report.problems,
        ["checkpoint 1 (link 3): its signature does not verify: replaced or forged"]
    );

    // The whole chain rewritten after a URL change and re-signed with the
    // attacker's own key: against the trusted key it is a foreign key, and
    // against the kept checkpoint the chain does not extend it.
    let (attacker, _) = SigningKey::generate().unwrap();
    let conn = sql(&copy);
    let (first, data) = block_of(&copy, "a");
    let tampered = change_url(
        &data,
        "https://example.com/0003",
        "https://evil.test.c/0003",
    );
    conn.execute(
        "UPDATE blocks SET data = ?1 WHERE first_id = ?2",
        rusqlite::params![tampered, first],
    )
    .unwrap();
    drop(conn);
    // Recompute the links as the attacker would, then sign.
    rewrite_chain(&copy).await;
    {
        let store = SqliteStore::open(&copy).await.unwrap();
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
    let report = verify(&copy, &Trust::default()).await;
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
        &copy,
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
    let report = verify(&copy, &trust(&key)).await;
    assert!(report.problems.iter().any(|p| p.contains("foreign key")));
    assert_eq!(report.authenticity, Authenticity::NotEstablished);
}

/// Recomputes every link from the records as they are now (what an
/// attacker with the file and the published format can do).
async fn rewrite_chain(path: &Path) {
    use warden_store::chain::{ChainHead, LinkBuilder, RecordView};
    let store = SqliteStore::open(path).await.unwrap();
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
    let conn = sql(path);
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
        conn.execute(
            "UPDATE chain_links SET records_hash = ?1, detail = ?2, head = ?3 WHERE seq = ?4",
            rusqlite::params![
                new.records_hash.as_slice(),
                new.detail,
                new.head.as_slice(),
                new.seq
            ],
        )
        .unwrap();
        head = head.after(&new);
    }
}

/// Signs verdicts for sessions "a" (twice: the second supersedes the
/// first) and "d", as the server's completeness task does, and stores them.
async fn with_verdicts(path: &Path, key: &SigningKey) -> Vec<i64> {
    use warden_evidence::verdict;
    let store = SqliteStore::open(path).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_forged_or_removed_session_verdicts_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = fixture(dir.path()).await;
    let ids = with_verdicts(&path, &key).await;
    let report = verify(&path, &trust(&key)).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.verdicts, 3);
    assert!(report.verdict().contains("3 session verdicts"));

    // A verdict's statement changed (its verdict words).
    let conn = sql(&path);
    let original: String = conn
        .query_row(
            "SELECT statement FROM session_verdicts WHERE id = ?1",
            [ids[2]],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute(
        "UPDATE session_verdicts SET statement = replace(statement, 'verdict incomplete', 'verdict complete') WHERE id = ?1",
        [ids[2]],
    )
    .unwrap();
    let report = verify(&path, &trust(&key)).await;
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
    conn.execute(
        "UPDATE session_verdicts SET statement = ?1, key_id = ?2, public_key = ?3, signature = ?4 WHERE id = ?5",
        rusqlite::params![
            forged,
            public.key_id(),
            public.0.to_vec(),
            other.sign(forged.as_bytes()),
            ids[2]
        ],
    )
    .unwrap();
    let report = verify(&path, &trust(&key)).await;
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
    conn.execute("DELETE FROM session_verdicts WHERE id = ?1", [ids[0]])
        .unwrap();
    let report = verify(&path, &trust(&key)).await;
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
