//! Signing key rotation: `warden server --signing-key NEW
//! --previous-signing-key OLD` introduces the new key with the old one.
//!
//! At start, unless the new key was introduced already (a restart with the
//! same flags changes nothing), the server
//! 1. signs a last checkpoint with the old key over the chain as it stands,
//!    so everything before the rotation is covered by the old key;
//! 2. appends a `key.rotate` admin event naming the new key
//!    (`new_public_key` in its detail), signed by the old key and chained
//!    like every admin event.
//!
//! From then on it signs with the new key. `warden verify --trusted-key
//! OLD` accepts the new key because a key it trusts introduced it, and
//! keeps refusing a key nobody trusted introduced (docs/evidence.md).

use jiff::Timestamp;
use serde_json::json;
use warden_evidence::admin_events::{KEY_ROTATE, all, introduced_key};
use warden_evidence::key::SigningKey;
use warden_store::Store;

use crate::ServerError;
use crate::admin_events::sign_as;
use crate::checkpoints::sign_if_moved;

/// Introduces `new` with `old` unless that was done; returns whether it
/// did it now.
pub async fn introduce(
    store: &dyn Store,
    old: &SigningKey,
    new: &SigningKey,
) -> Result<bool, ServerError> {
    let (old_public, new_public) = (old.public_key(), new.public_key());
    if old_public == new_public {
        return Err(ServerError::Config(
            "--previous-signing-key is the same key as --signing-key".into(),
        ));
    }
    let events = all(store)
        .await
        .map_err(|e| ServerError::Config(format!("reading the admin event log: {e}")))?;
    if events.iter().any(|e| introduced_key(e) == Some(new_public)) {
        return Ok(false);
    }
    // The old key must be the one in use: it cannot vouch for the new one
    // otherwise.
    if let Ok(Some(latest)) = store.latest_checkpoint().await
        && latest.public_key != old_public.0
        && latest.public_key != new_public.0
    {
        return Err(ServerError::Config(format!(
            "--previous-signing-key (key {}) did not sign the latest checkpoint (key {}): it cannot introduce the new key",
            old_public.key_id(),
            latest.key_id
        )));
    }
    match sign_if_moved(store, old).await {
        Ok(Some(c)) => {
            tracing::info!(checkpoint = c.id, key_id = %old_public.key_id(), "sealed the chain with the previous signing key")
        }
        Ok(None) => {}
        // (The PostgreSQL store keeps no record chain yet.)
        Err(e) => {
            tracing::warn!(error = %e, "could not seal the chain with the previous signing key")
        }
    }
    let event = sign_as(
        old,
        (None, "warden server", "server"),
        KEY_ROTATE,
        &new_public.key_id(),
        json!({
            "previous_key_id": old_public.key_id(),
            "previous_public_key": old_public.to_file().trim(),
            "new_key_id": new_public.key_id(),
            "new_public_key": new_public.to_file().trim(),
        }),
        Timestamp::now(),
    );
    let event = store.append_admin_event(event).await?;
    tracing::info!(
        seq = event.seq,
        previous = %old_public.fingerprint(),
        new = %new_public.fingerprint(),
        "introduced the new signing key with the previous one"
    );
    Ok(true)
}
