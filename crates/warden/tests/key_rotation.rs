//! Signing key rotation with the real binary: `warden server
//! --previous-signing-key OLD` introduces its new key with the old one, and
//! `warden verify --trusted-key OLD` accepts the new key's checkpoints and
//! admin events, and refuses a key nobody trusted introduced.

mod support;

use std::ffi::OsString;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use jiff::Timestamp;
use support::dirs;
use support::process::{BoundaryLines, warden};
use support::server::ServerProcess;
use uuid::Uuid;
use warden_evidence::checkpoint;
use warden_evidence::key::SigningKey;
use warden_proto::domain::{AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Peer};
use warden_store::{IngestRequest, NewAdminEvent, NewWorkspace, SqliteStore, Store, TokenHash};

fn batch(session: &str, n: i32) -> IngestBatch {
    IngestBatch {
        batch_id: Uuid::now_v7(),
        received_at: Timestamp::now(),
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
            records: (0..n)
                .map(|s| AuditRecord {
                    decision: Decision::from_allowed(s % 2 == 0),
                    event_time: EventTime::Known(Timestamp::now()),
                    method: "GET".into(),
                    url: format!("https://example.com/{session}/{s}"),
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

/// Ingests a group of records into the stopped server's store and signs a
/// checkpoint over them with `key` (what the running server does every
/// 10 s).
async fn records_signed_by(data: &Path, session: &str, key: &SigningKey) {
    let store = SqliteStore::open(&data.join("warden.db")).await.unwrap();
    let agent = match store.workspace("dev").await.unwrap() {
        Some(w) => w.agent.id,
        None => {
            store
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
                .unwrap()
                .agent
                .id
        }
    };
    store
        .ingest(Arc::new(IngestRequest {
            agent_id: agent,
            at: Timestamp::now(),
            batches: vec![batch(session, 5)],
        }))
        .await
        .unwrap();
    let head = store.chain_head().await.unwrap().unwrap();
    store
        .add_checkpoint(checkpoint::sign(key, &head, head.last_id, Timestamp::now()))
        .await
        .unwrap();
    store.close().await.unwrap();
}

async fn verify(data: &Path, trusted: &Path) -> (Option<i32>, String) {
    let out: Output = warden()
        .arg("verify")
        .arg("--data-dir")
        .arg(data)
        .arg("--trusted-key")
        .arg(trusted)
        .env_remove("WARDEN_URL")
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_introduced_by_the_old_one_is_accepted_and_others_are_not() {
    let dirs = dirs();
    let data = &dirs.server;
    std::fs::create_dir_all(data).unwrap();
    let (old, _) = SigningKey::load(&data.join("signing-key"), true).unwrap();
    records_signed_by(data, "a", &old).await;
    let trusted = dirs.root.join("trusted.pub");
    std::fs::write(&trusted, old.public_key().to_file()).unwrap();
    let (code, verdict) = verify(data, &trusted).await;
    assert_eq!(code, Some(0), "{verdict}");

    // The rotation: the old key moves aside, the server makes a new one and
    // introduces it.
    let previous = data.join("signing-key.old");
    std::fs::rename(data.join("signing-key"), &previous).unwrap();
    std::fs::remove_file(data.join("signing-key.pub")).unwrap();
    let args: Vec<OsString> = vec!["--previous-signing-key".into(), previous.clone().into()];
    let mut server = ServerProcess::start(data, &args, BoundaryLines::Keep).await;
    // (Logged before the server announced itself.)
    let log = server.process.log();
    assert!(log.contains("introduced the new signing key"), "{log}");
    // An admin action, signed with the new key.
    server.create_workspace("other", "bob", &[]).await;
    server.stop().await;
    // A restart with the same flags introduces nothing again.
    let mut server = ServerProcess::start(data, &args, BoundaryLines::Keep).await;
    server.stop().await;

    let (new, created) = SigningKey::load(&data.join("signing-key"), false).unwrap();
    assert!(!created);
    assert_ne!(new.public_key(), old.public_key());
    records_signed_by(data, "b", &new).await;
    let store = SqliteStore::open(&data.join("warden.db")).await.unwrap();
    let events = warden_evidence::admin_events::all(&store).await.unwrap();
    store.close().await.unwrap();
    let rotations: Vec<_> = events
        .iter()
        .filter(|e| e.event.action == "key.rotate")
        .collect();
    assert_eq!(rotations.len(), 1, "introduced once");
    assert_eq!(rotations[0].event.public_key, old.public_key().0);

    let (code, verdict) = verify(data, &trusted).await;
    assert_eq!(code, Some(0), "{verdict}");
    assert!(
        verdict.contains(&format!(
            "signed by the trusted key {}",
            new.public_key().key_id()
        )),
        "{verdict}"
    );

    // A key nobody trusted introduced: its checkpoint is foreign.
    let (rogue, _) = SigningKey::generate().unwrap();
    records_signed_by(data, "c", &rogue).await;
    let (code, verdict) = verify(data, &trusted).await;
    assert_eq!(code, Some(1), "{verdict}");
    assert!(verdict.contains("foreign key"), "{verdict}");
    assert!(verdict.contains(&rogue.public_key().key_id()), "{verdict}");

    // Nor does introducing it with itself (or any untrusted key) help.
    let store = SqliteStore::open(&data.join("warden.db")).await.unwrap();
    let public = rogue.public_key();
    let mut forged = NewAdminEvent {
        id: Uuid::now_v7(),
        at: Timestamp::now(),
        actor_id: None,
        actor_name: "warden server".into(),
        actor_role: "server".into(),
        action: "key.rotate".into(),
        target: public.key_id(),
        detail: serde_json::json!({ "new_public_key": public.to_file().trim() }).to_string(),
        key_id: public.key_id(),
        public_key: public.0.to_vec(),
        signature: Vec::new(),
    };
    forged.signature = rogue.sign(&forged.signed_form());
    store.append_admin_event(forged).await.unwrap();
    store.close().await.unwrap();
    let (code, verdict) = verify(data, &trusted).await;
    assert_eq!(code, Some(1), "{verdict}");
    assert!(
        verdict
            .lines()
            .any(|l| l.contains("key.rotate") && l.contains("foreign key")),
        "{verdict}"
    );
    assert!(
        verdict
            .lines()
            .any(|l| l.starts_with("  checkpoint") && l.contains("foreign key")),
        "{verdict}"
    );
}
