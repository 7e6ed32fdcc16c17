//! Named API tokens and the admin event chain, on every backend.

use std::sync::Arc;

use uuid::Uuid;
use warden_store::access::{ADMIN_CHAIN_START, admin_chain_hash};
use warden_store::{NewAdminEvent, NewApiToken, StoreError, TokenRole};

use super::{StoreFactory, at, hash};

/// The access tests, for every backend.
macro_rules! access_suite {
    ($factory:expr) => {
        conformance::suite!(@tests $factory;
            api_tokens_are_created_listed_found_and_revoked,
            api_token_names_are_unique_among_live_tokens,
            admin_events_form_a_chain_in_append_order,
            concurrent_admin_events_get_one_chain,
        );
    };
}
pub(crate) use access_suite;

fn new_token(name: &str, role: TokenRole, byte: u8) -> NewApiToken {
    NewApiToken {
        id: Uuid::new_v4(),
        name: name.into(),
        role,
        token_hash: hash(byte),
    }
}

fn event(action: &str, target: &str) -> NewAdminEvent {
    NewAdminEvent {
        id: Uuid::now_v7(),
        at: at(5),
        actor_id: Some(Uuid::new_v4()),
        actor_name: "ops\n\"x\"".into(),
        actor_role: "admin".into(),
        action: action.into(),
        target: target.into(),
        detail: r#"{"k":"v"}"#.into(),
        key_id: "abc".into(),
        public_key: vec![7; 32],
        signature: vec![9; 64],
    }
}

pub async fn api_tokens_are_created_listed_found_and_revoked(f: &impl StoreFactory) {
    let store = f.open().await;
    let auditor = new_token("carol", TokenRole::Auditor, 3);
    let created = store
        .create_api_token(auditor.clone(), at(1))
        .await
        .unwrap();
    assert_eq!(created.name, "carol");
    assert_eq!(created.role, TokenRole::Auditor);
    assert_eq!(created.created_at, at(1));
    assert_eq!(created.last_used_at, None);
    store
        .create_api_token(new_token("alice", TokenRole::Admin, 4), at(2))
        .await
        .unwrap();

    let listed = store.api_tokens().await.unwrap();
    let names: Vec<_> = listed.iter().map(|t| (t.name.as_str(), t.role)).collect();
    assert_eq!(
        names,
        [("alice", TokenRole::Admin), ("carol", TokenRole::Auditor)]
    );

    let (found, found_hash) = store
        .api_token_credentials(auditor.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, created);
    assert_eq!(found_hash, hash(3));
    assert!(
        store
            .api_token_credentials(Uuid::new_v4())
            .await
            .unwrap()
            .is_none()
    );

    store.note_api_token_use(auditor.id, at(9)).await.unwrap();
    let (used, _) = store
        .api_token_credentials(auditor.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.last_used_at, Some(at(9)));

    let revoked = store.revoke_api_token("carol", at(10)).await.unwrap();
    assert_eq!(revoked.id, auditor.id);
    assert!(
        store
            .api_token_credentials(auditor.id)
            .await
            .unwrap()
            .is_none(),
        "a revoked token stops working at once"
    );
    assert_eq!(store.api_tokens().await.unwrap().len(), 1);
    assert!(matches!(
        store.revoke_api_token("carol", at(11)).await,
        Err(StoreError::TokenNotFound(n)) if n == "carol"
    ));

    // A restart keeps them.
    store.close().await.unwrap();
    let again = f.open().await;
    assert_eq!(again.api_tokens().await.unwrap()[0].name, "alice");
}

pub async fn api_token_names_are_unique_among_live_tokens(f: &impl StoreFactory) {
    let store = f.open().await;
    store
        .create_api_token(new_token("ci", TokenRole::Auditor, 1), at(1))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_api_token(new_token("ci", TokenRole::Admin, 2), at(2))
            .await,
        Err(StoreError::TokenNameTaken(n)) if n == "ci"
    ));
    store.revoke_api_token("ci", at(3)).await.unwrap();
    let reused = store
        .create_api_token(new_token("ci", TokenRole::Admin, 2), at(4))
        .await
        .unwrap();
    assert_eq!(reused.role, TokenRole::Admin);
}

pub async fn admin_events_form_a_chain_in_append_order(f: &impl StoreFactory) {
    let store = f.open().await;
    assert!(store.admin_events(0, 10).await.unwrap().is_empty());
    let first = store
        .append_admin_event(event("workspace.create", "dev"))
        .await
        .unwrap();
    let second = store
        .append_admin_event(event("token.create", "ci"))
        .await
        .unwrap();
    assert_eq!((first.seq, second.seq), (1, 2));
    assert_eq!(first.prev, ADMIN_CHAIN_START);
    assert_eq!(
        first.hash,
        admin_chain_hash(&ADMIN_CHAIN_START, 1, &first.event)
    );
    assert_eq!(second.prev, first.hash);
    assert_eq!(second.hash, admin_chain_hash(&first.hash, 2, &second.event));

    store.close().await.unwrap();
    let store = f.open().await;
    let stored = store.admin_events(0, 10).await.unwrap();
    assert_eq!(
        stored,
        [first.clone(), second.clone()],
        "every field round-trips"
    );
    assert_eq!(store.admin_events(1, 10).await.unwrap(), [second]);
    assert_eq!(store.admin_events(0, 1).await.unwrap(), [first]);
}

pub async fn concurrent_admin_events_get_one_chain(f: &impl StoreFactory) {
    // Concurrent calls on one store (several pooled connections on
    // PostgreSQL); replicas share the same lock.
    let a = f.open().await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = Arc::clone(&a);
        tasks.push(tokio::spawn(async move {
            store
                .append_admin_event(event("workspace.delete", &format!("w{i}")))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let events = a.admin_events(0, 100).await.unwrap();
    assert_eq!(events.len(), 16);
    let mut prev = ADMIN_CHAIN_START;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        assert_eq!(e.prev, prev);
        assert_eq!(e.hash, admin_chain_hash(&prev, e.seq, &e.event));
        prev = e.hash;
    }
}
