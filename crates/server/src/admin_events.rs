//! Recording admin actions: every state-changing admin call (workspace
//! create, delete and token rotation, token create and revoke) appends a
//! signed event to the admin event chain (see [`warden_store::access`]):
//! who did it (the token's id and name, never the secret), when, what, to
//! what.
//!
//! The event is appended once the action is committed. If appending fails
//! the call answers `500` saying the action was done but not recorded (and
//! logs it), so an unrecorded action never looks like a normal one.

use axum::http::StatusCode;
use jiff::Timestamp;
use uuid::Uuid;
use warden_api::access::{Actor, AdminEventInfo};
use warden_evidence::key::SigningKey;
use warden_store::{AdminEvent, NewAdminEvent, Store};

use crate::access::Principal;
use crate::http::HttpError;

/// Signs and appends the event of an action `principal` did.
pub async fn record(
    store: &dyn Store,
    key: &SigningKey,
    principal: &Principal,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<AdminEvent, HttpError> {
    let event = sign(key, principal, action, target, detail, Timestamp::now());
    match store.append_admin_event(event).await {
        Ok(event) => {
            tracing::info!(seq = event.seq, action, target, actor = %principal.name, "recorded an admin event");
            Ok(event)
        }
        Err(e) => {
            tracing::error!(error = %e.chain(), action, target, actor = %principal.name, "an admin action was done but recording its admin event failed");
            Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "{action} of {target:?} was done, but recording it in the admin event log failed; see the control plane's log"
                ),
            ))
        }
    }
}

/// The signed event, not chained yet.
pub fn sign(
    key: &SigningKey,
    principal: &Principal,
    action: &str,
    target: &str,
    detail: serde_json::Value,
    at: Timestamp,
) -> NewAdminEvent {
    sign_as(
        key,
        (principal.id, &principal.name, principal.role.as_str()),
        action,
        target,
        detail,
        at,
    )
}

/// [`sign`] for an actor that is not a token (the server itself).
pub fn sign_as(
    key: &SigningKey,
    (actor_id, actor_name, actor_role): (Option<Uuid>, &str, &str),
    action: &str,
    target: &str,
    detail: serde_json::Value,
    at: Timestamp,
) -> NewAdminEvent {
    let public = key.public_key();
    let mut event = NewAdminEvent {
        id: Uuid::now_v7(),
        at,
        actor_id,
        actor_name: actor_name.to_owned(),
        actor_role: actor_role.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        detail: detail.to_string(),
        key_id: public.key_id(),
        public_key: public.0.to_vec(),
        signature: Vec::new(),
    };
    event.signature = key.sign(&event.signed_form());
    event
}

/// An event as the API shows it.
pub fn info(e: &AdminEvent) -> AdminEventInfo {
    AdminEventInfo {
        seq: e.seq,
        id: e.event.id,
        time: e.event.at,
        actor: Actor {
            id: e.event.actor_id,
            name: e.event.actor_name.clone(),
            role: e.event.actor_role.clone(),
        },
        action: e.event.action.clone(),
        target: e.event.target.clone(),
        detail: e.event.detail.clone(),
        key_id: e.event.key_id.clone(),
        public_key: format!("ed25519:{}", hex::encode(&e.event.public_key)),
        signature: hex::encode(&e.event.signature),
        prev: hex::encode(e.prev),
        hash: hex::encode(e.hash),
    }
}

/// An event as the API showed it, back in the store's terms (for
/// `warden verify --url`); `None` when a field is malformed (which the
/// caller reports as a problem with that event).
pub fn from_info(e: &AdminEventInfo) -> Option<AdminEvent> {
    let hash32 = |s: &str| -> Option<[u8; 32]> { hex::decode(s).ok()?.try_into().ok() };
    Some(AdminEvent {
        seq: e.seq,
        event: NewAdminEvent {
            id: e.id,
            at: e.time,
            actor_id: e.actor.id,
            actor_name: e.actor.name.clone(),
            actor_role: e.actor.role.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            detail: e.detail.clone(),
            key_id: e.key_id.clone(),
            public_key: hex::decode(e.public_key.strip_prefix("ed25519:")?).ok()?,
            signature: hex::decode(&e.signature).ok()?,
        },
        prev: hash32(&e.prev)?,
        hash: hash32(&e.hash)?,
    })
}
