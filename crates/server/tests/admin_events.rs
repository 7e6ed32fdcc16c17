//! Every state-changing admin call is recorded as a signed, chained admin
//! event naming who did it (never a secret); auditors read the log; the
//! events are not boundary records.

mod support;

use support::*;
use warden_api::ApiClient;
use warden_api::access::CreateToken;
use warden_evidence::key::PublicKey;
use warden_store::{SqliteStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_are_recorded_with_their_actor_and_verify() {
    let (server, dir) = Server::start().await;
    let admin = server.admin();
    let ops = admin
        .create_token(&CreateToken {
            name: "ops".into(),
            role: "admin".into(),
        })
        .await
        .unwrap();
    let ops_client = ApiClient::new(&server.url(), ops.token.clone(), None).unwrap();
    let dev = server.workspace("dev").await;
    ops_client.rotate_token("dev").await.unwrap();
    let auditor = ops_client
        .create_token(&CreateToken {
            name: "carol".into(),
            role: "auditor".into(),
        })
        .await
        .unwrap();
    admin.delete_workspace("dev").await.unwrap();
    admin.revoke_token("carol").await.unwrap();
    // A refused or failed call changes nothing and records nothing.
    assert!(admin.delete_workspace("dev").await.is_err());

    let reader = ApiClient::new(&server.url(), ops.token.clone(), None).unwrap();
    let events = reader.admin_events(0, 100).await.unwrap();
    let seen: Vec<(i64, &str, &str, &str, Option<uuid::Uuid>)> = events
        .iter()
        .map(|e| {
            (
                e.seq,
                e.action.as_str(),
                e.target.as_str(),
                e.actor.name.as_str(),
                e.actor.id,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, "token.create", "ops", "admin", None),
            (2, "workspace.create", "dev", "admin", None),
            (3, "workspace.rotate-token", "dev", "ops", Some(ops.id)),
            (4, "token.create", "carol", "ops", Some(ops.id)),
            (5, "workspace.delete", "dev", "admin", None),
            (6, "token.revoke", "carol", "admin", None),
        ]
    );
    let detail: serde_json::Value = serde_json::from_str(&events[1].detail).unwrap();
    assert_eq!(detail["owner"], "alice");
    assert_eq!(detail["workspace_id"], dev.workspace_id.to_string());
    // No secret anywhere in the log.
    let text = serde_json::to_string(&events).unwrap();
    for secret in [ADMIN_TOKEN, &ops.token, &auditor.token, &dev.agent_token] {
        assert!(!text.contains(secret));
    }
    // Paging.
    let page = reader.admin_events(4, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].seq, 5);

    // Signed with the server's one key, and chained: the stored log
    // verifies against it.
    let key = PublicKey::parse(&events[0].public_key).unwrap();
    assert!(events.iter().all(|e| e.public_key == events[0].public_key));
    assert_eq!(events[0].key_id, key.key_id());
    // Not boundary records.
    let records = admin.records(&Default::default()).await.unwrap();
    assert!(records.records.is_empty());
    server.stop().await.unwrap();

    let store = SqliteStore::open(&dir.path().join("warden.db"))
        .await
        .unwrap();
    let stored = warden_evidence::admin_events::all(&store).await.unwrap();
    assert_eq!(stored.len(), 6);
    let found = warden_evidence::admin_events::check(&stored, Some(&[key]));
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    store.close().await.unwrap();
}
