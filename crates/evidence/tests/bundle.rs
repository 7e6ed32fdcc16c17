//! Export bundles carry the session verdicts and the admin event log, and
//! verifying a bundle checks them exactly as verifying the store does: the
//! same problem lines for the same tampering, and a key introduced by
//! rotation accepted on the original key's word. Bundles made before they
//! were carried still verify, and say what was not included.

mod support;

use std::sync::Arc;

use jiff::Timestamp;
use support::{
    Db, Param, batch, checkpoint_head, fixture, on_both_stores, trust, verify, with_verdict,
    with_verdicts, workspace,
};
use uuid::Uuid;
use warden_evidence::bundle::{self, Filter};
use warden_evidence::key::SigningKey;
use warden_evidence::verify::{Authenticity, Report, Trust, verify_bundle};
use warden_store::{IngestRequest, NewAdminEvent, Store};

on_both_stores!(
    a_bundle_carries_verdicts_and_admin_events_and_checks_them_as_the_store,
    verdicts_and_admin_events_edited_in_the_bundle_are_caught_and_named,
    a_workspace_bundle_carries_that_workspaces_verdicts_only,
    a_bundle_made_after_a_key_rotation_verifies_with_the_original_key,
    a_bundle_in_the_first_format_verifies_and_says_what_it_lacks,
);

/// Appends an admin event signed by `key`.
async fn admin_event(
    store: &dyn Store,
    key: &SigningKey,
    action: &str,
    target: &str,
    detail: String,
) {
    let public = key.public_key();
    let mut event = NewAdminEvent {
        id: Uuid::now_v7(),
        at: Timestamp::now(),
        actor_id: None,
        actor_name: "admin".into(),
        actor_role: "admin".into(),
        action: action.into(),
        target: target.into(),
        detail,
        key_id: public.key_id(),
        public_key: public.0.to_vec(),
        signature: Vec::new(),
    };
    event.signature = key.sign(&event.signed_form());
    store.append_admin_event(event).await.unwrap();
}

async fn export(db: &Db, filter: &Filter) -> (Vec<u8>, bundle::Exported) {
    let store = db.open().await;
    let mut out = Vec::new();
    let done = bundle::export(&*store, filter, &mut out).await.unwrap();
    store.close().await.unwrap();
    (out, done)
}

fn verify_bytes(bundle: &[u8], trust: &Trust) -> Report {
    verify_bundle(bundle::read(bundle).unwrap(), trust)
}

/// The fixture with three verdicts and two admin events.
async fn evidence(db: &Db) -> (SigningKey, Vec<i64>) {
    let key = fixture(db).await;
    let ids = with_verdicts(db, &key).await;
    let store = db.open().await;
    for target in ["ci", "prod"] {
        admin_event(&*store, &key, "workspace.create", target, "{}".into()).await;
    }
    store.close().await.unwrap();
    (key, ids)
}

async fn a_bundle_carries_verdicts_and_admin_events_and_checks_them_as_the_store(
    new_db: fn() -> Db,
) {
    let db = new_db();
    let (key, ids) = evidence(&db).await;
    let (bytes, done) = export(&db, &Filter::default()).await;
    assert_eq!((done.records, done.verdicts, done.admin_events), (17, 3, 2));
    let report = verify_bytes(&bytes, &trust(&key));
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.verdicts, 3);
    assert_eq!(report.admin_events, Some(2));
    assert!(
        report
            .verdict()
            .contains("3 session verdicts, 2 admin events)"),
        "{}",
        report.verdict()
    );

    // The same edits to the store: a verdict's words changed, the verdict
    // it superseded removed, the first admin event removed. Verifying the
    // store and verifying a bundle exported from it name the same problems.
    db.exec(
        "UPDATE session_verdicts SET statement = replace(statement, 'verdict incomplete', 'verdict complete') WHERE id = ?1",
        &[Param::Int(ids[2])],
    )
    .await;
    db.exec(
        "DELETE FROM session_verdicts WHERE id = ?1",
        &[Param::Int(ids[0])],
    )
    .await;
    db.exec("DELETE FROM admin_events WHERE seq = 1", &[]).await;
    let store_report = verify(&db, &trust(&key)).await;
    assert_eq!(
        store_report.problems.len(),
        3,
        "{:?}",
        store_report.problems
    );
    let (bytes, _) = export(&db, &Filter::default()).await;
    let bundle_report = verify_bytes(&bytes, &trust(&key));
    assert_eq!(bundle_report.problems, store_report.problems);
    assert!(
        bundle_report
            .problems
            .iter()
            .any(|p| p.contains(&format!("session verdict {}", ids[2]))
                && p.contains("signature does not hold")),
        "{:?}",
        bundle_report.problems
    );
    assert!(
        bundle_report
            .problems
            .iter()
            .any(|p| p.starts_with("admin event 1: missing")),
        "{:?}",
        bundle_report.problems
    );
}

/// Lines of `bundle` with the first `from` replaced by `to` (which must
/// occur), or without the lines `drop` selects.
fn edited(bundle: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(bundle.to_vec()).unwrap();
    assert!(text.contains(from), "{from:?} is not in the bundle");
    text.replacen(from, to, 1).into_bytes()
}

fn without_lines(bundle: &[u8], drop: impl Fn(&str) -> bool) -> Vec<u8> {
    let text = String::from_utf8(bundle.to_vec()).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !drop(l))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(kept, text, "no line was dropped");
    kept.into_bytes()
}

async fn verdicts_and_admin_events_edited_in_the_bundle_are_caught_and_named(new_db: fn() -> Db) {
    let db = new_db();
    let (key, ids) = evidence(&db).await;
    let (bytes, _) = export(&db, &Filter::default()).await;
    assert!(verify_bytes(&bytes, &trust(&key)).ok());
    let problems = |bundle: &[u8]| verify_bytes(bundle, &trust(&key)).problems;

    // A verdict's words changed in the file (the first: session "a"'s).
    let found = problems(&edited(&bytes, "verdict incomplete", "verdict complete"));
    assert!(
        found.iter().any(
            |p| p.starts_with(&format!("session verdict {} (session \"a\"", ids[0]))
                && p.contains("signature does not hold")
        ),
        "{found:?}"
    );

    // The verdict the second one of "a" supersedes removed from the file.
    let first = format!("{{\"verdict\":{{\"id\":{},", ids[0]);
    let found = problems(&without_lines(&bytes, |l| l.starts_with(&first)));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(&format!("session verdict {}", ids[1]))
            && found[0].contains("a verdict was removed or replaced"),
        "{found:?}"
    );

    // An admin event's target changed in the file: its signature and its
    // chain hash no longer hold; the event is named.
    let found = problems(&edited(&bytes, "\"target\":\"ci\"", "\"target\":\"qa\""));
    assert!(!found.is_empty());
    assert!(
        found.iter().all(|p| p.starts_with("admin event 1 ")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("signature does not verify")),
        "{found:?}"
    );

    // The first admin event removed from the file.
    let found = problems(&without_lines(&bytes, |l| {
        l.starts_with("{\"admin_event\":{\"seq\":1,")
    }));
    assert_eq!(
        found,
        ["admin event 1: missing: deleted from the admin event chain"]
    );
}

async fn a_workspace_bundle_carries_that_workspaces_verdicts_only(new_db: fn() -> Db) {
    let db = new_db();
    let (key, _) = evidence(&db).await;
    // A second workspace with a session and its verdict, ids interleaved
    // with dev's: a bundle of one workspace must verify without the other's.
    let store = db.open().await;
    let ci = workspace(&*store, "ci").await;
    store
        .ingest(Arc::new(IngestRequest {
            agent_id: ci.agent.id,
            at: Timestamp::now(),
            batches: vec![batch("x", 0..3)],
        }))
        .await
        .unwrap();
    store.close().await.unwrap();
    with_verdict(&db, &key, "ci", "x").await;
    let dev_verdict = with_verdict(&db, &key, "dev", "d").await;

    let store = db.open().await;
    let dev = store.workspace("dev").await.unwrap().unwrap().id;
    store.close().await.unwrap();
    let only = |workspace_id| Filter {
        workspace_id: Some(workspace_id),
        ..Filter::default()
    };
    let (bytes, done) = export(&db, &only(dev)).await;
    assert_eq!((done.records, done.verdicts, done.admin_events), (17, 4, 2));
    let report = verify_bytes(&bytes, &trust(&key));
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.verdicts, 4);
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        !text.contains(&ci.id.to_string()),
        "ci's verdict or records"
    );
    // dev's last verdict (superseding one made before ci's) is there.
    assert!(text.contains(&format!("{{\"verdict\":{{\"id\":{dev_verdict},")));

    let (bytes, done) = export(&db, &only(ci.id)).await;
    assert_eq!((done.records, done.verdicts), (3, 1));
    assert!(verify_bytes(&bytes, &trust(&key)).ok());
    let (_, done) = export(&db, &only(Uuid::now_v7())).await;
    assert_eq!((done.records, done.verdicts), (0, 0));
}

async fn a_bundle_made_after_a_key_rotation_verifies_with_the_original_key(new_db: fn() -> Db) {
    let db = new_db();
    let (old, _) = evidence(&db).await;
    // The rotation as the server does it: the old key introduces the new
    // one in a key.rotate admin event; then records signed by the new key.
    let (new, _) = SigningKey::generate().unwrap();
    let store = db.open().await;
    let detail = serde_json::json!({
        "new_key_id": new.public_key().key_id(),
        "new_public_key": new.public_key().to_file().trim(),
    })
    .to_string();
    admin_event(
        &*store,
        &old,
        "key.rotate",
        &new.public_key().key_id(),
        detail,
    )
    .await;
    let agent = store.workspace("dev").await.unwrap().unwrap().agent.id;
    store
        .ingest(Arc::new(IngestRequest {
            agent_id: agent,
            at: Timestamp::now(),
            batches: vec![batch("e", 0..4)],
        }))
        .await
        .unwrap();
    checkpoint_head(&*store, &new).await;
    store.close().await.unwrap();

    let (bytes, _) = export(&db, &Filter::default()).await;
    let report = verify_bytes(&bytes, &trust(&old));
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(
        report.authenticity,
        Authenticity::Established {
            key_id: new.public_key().key_id(),
            through: 21
        }
    );
    // Another key trusted: everything is foreign.
    let (rogue, _) = SigningKey::generate().unwrap();
    assert!(!verify_bytes(&bytes, &trust(&rogue)).ok());

    // Without the admin event log (as a first-format bundle), nothing
    // vouches for the new key: what it signed is foreign to the old one.
    let report = verify_bytes(&first_format(&bytes), &trust(&old));
    assert!(
        report.problems.iter().any(|p| p.contains("foreign key")),
        "{:?}",
        report.problems
    );
}

/// `bundle` as the first format wrote it: header `warden-bundle-v1`, no
/// verdict or admin event lines.
fn first_format(bundle: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(bundle.to_vec()).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(
        header.contains("\"format\":\"warden-bundle-v2\""),
        "{header}"
    );
    let mut out = header.replacen("warden-bundle-v2", "warden-bundle-v1", 1) + "\n";
    for l in lines.filter(|l| !l.starts_with("{\"verdict\"") && !l.starts_with("{\"admin_event\""))
    {
        out.push_str(l);
        out.push('\n');
    }
    out.into_bytes()
}

async fn a_bundle_in_the_first_format_verifies_and_says_what_it_lacks(new_db: fn() -> Db) {
    let db = new_db();
    let (key, _) = evidence(&db).await;
    let (bytes, _) = export(&db, &Filter::default()).await;
    let v1 = first_format(&bytes);
    assert!(v1.len() < bytes.len());

    let report = verify_bytes(&v1, &trust(&key));
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.counts.records, report.verdicts), (17, 0));
    assert_eq!(report.admin_events, None);
    let verdict = report.verdict();
    assert!(verdict.starts_with("OK: 17 records"), "{verdict}");
    assert!(
        verdict.contains("; session verdicts and admin events not included"),
        "{verdict}"
    );
    // No counts of what was not checked.
    assert!(
        verdict.contains("(0 purged by retention, 1 checkpoints);"),
        "{verdict}"
    );

    // Its records are still checked: one changed in the file is caught.
    let changed = edited(&v1, "https://example.com/0003", "https://example.com/0004");
    let report = verify_bytes(&changed, &trust(&key));
    assert!(!report.ok());
    assert!(
        report.verdict().starts_with("FAILED"),
        "{}",
        report.verdict()
    );

    // The same bundle in the current format reports what it checked.
    let verdict = verify_bytes(&bytes, &trust(&key)).verdict();
    assert!(!verdict.contains("not included"), "{verdict}");
}
