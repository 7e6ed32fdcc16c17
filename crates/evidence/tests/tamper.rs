//! Tampering with a store behind its back, the way someone with write
//! access to the SQLite file or the PostgreSQL tables would, and checking
//! that verification catches each change and names the record. Each case
//! runs on both backends (`sqlite::*`, `pg::*`): the same fixture, the
//! same edits (the same SQL, placeholders aside) and the same problem lines.

mod support;

use jiff::Timestamp;
use support::{Db, Param, checkpoint_head, fixture, on_both_stores, trust, verify, with_verdicts};
use warden_evidence::checkpoint::CheckpointFile;
use warden_evidence::key::SigningKey;
use warden_evidence::verify::{Authenticity, Trust};

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
    db.exec(
        "DELETE FROM blocks WHERE first_id = ?1",
        &[Param::Int(first)],
    )
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
            &[
                Param::Blob(data),
                Param::Text(session.into()),
                Param::Int(id),
            ],
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
    assert_eq!(
        db.exec("DELETE FROM chain_links WHERE seq = 3", &[]).await,
        1
    );
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
        checkpoint_head(&*store, &attacker).await;
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
        let all = warden_evidence::verify::all_verdicts(&*store)
            .await
            .unwrap();
        store.close().await.unwrap();
        all.into_iter().find(|v| v.id == ids[2]).unwrap().statement
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
