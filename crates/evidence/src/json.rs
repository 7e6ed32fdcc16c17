//! JSON forms of the signed evidence besides the chain (session verdicts,
//! admin events) with every field their checks need: in export bundles and
//! in the API's `/api/v1/chain/verdicts`. Keys are `ed25519:<hex>`, hashes
//! and signatures hex.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use warden_store::verdict::SessionVerdict;
use warden_store::{AdminEvent, NewAdminEvent};

use crate::EvidenceError;
use crate::key::PublicKey;

fn malformed(what: &str) -> EvidenceError {
    EvidenceError::Malformed(format!("{what} is malformed"))
}

fn key_text(bytes: &[u8]) -> String {
    PublicKey::from_bytes(bytes).map_or_else(
        // Kept as found: verification then reports the bad key.
        |_| format!("ed25519:{}", hex::encode(bytes)),
        |k| k.to_file().trim().to_owned(),
    )
}

fn key_bytes(text: &str, what: &str) -> Result<Vec<u8>, EvidenceError> {
    text.strip_prefix("ed25519:")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| malformed(what))
}

/// A stored session verdict with every column its check compares with the
/// signed statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictJson {
    /// Its position among stored verdicts.
    pub id: i64,
    /// The workspace of the session.
    pub workspace_id: Uuid,
    /// The client's session id.
    pub session_id: String,
    /// The last record id the chain covered when it was made.
    pub last_id: i64,
    /// When it was made, Unix nanoseconds.
    pub made_ns: i64,
    /// The signed statement.
    pub statement: String,
    /// The signing key's id.
    pub key_id: String,
    /// The signing key, `ed25519:<hex>`.
    pub public_key: String,
    /// The signature over `statement`, hex.
    pub signature: String,
}

impl VerdictJson {
    /// The JSON form of a stored verdict.
    pub fn of(v: &SessionVerdict) -> VerdictJson {
        VerdictJson {
            id: v.id,
            workspace_id: v.workspace_id,
            session_id: v.session_id.clone(),
            last_id: v.last_id,
            made_ns: v.made_ns,
            statement: v.statement.clone(),
            key_id: v.key_id.clone(),
            public_key: key_text(&v.public_key),
            signature: hex::encode(&v.signature),
        }
    }

    /// The verdict again.
    pub fn into_verdict(self) -> Result<SessionVerdict, EvidenceError> {
        let what = format!("session verdict {}", self.id);
        Ok(SessionVerdict {
            id: self.id,
            workspace_id: self.workspace_id,
            session_id: self.session_id,
            last_id: self.last_id,
            made_ns: self.made_ns,
            statement: self.statement,
            key_id: self.key_id,
            public_key: key_bytes(&self.public_key, &what)?,
            signature: hex::decode(&self.signature).map_err(|_| malformed(&what))?,
        })
    }
}

/// A stored admin event with its place in the admin event chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEventJson {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The event's id.
    pub id: Uuid,
    /// When, Unix nanoseconds (as signed).
    pub at_ns: i64,
    /// The acting token's id (`None`: the bootstrap admin token).
    pub actor_id: Option<Uuid>,
    /// The acting token's name.
    pub actor_name: String,
    /// The acting token's role.
    pub actor_role: String,
    /// What was done.
    pub action: String,
    /// To what.
    pub target: String,
    /// Details, JSON text.
    pub detail: String,
    /// The signing key's id.
    pub key_id: String,
    /// The signing key, `ed25519:<hex>`.
    pub public_key: String,
    /// The signature over the event's signed form, hex.
    pub signature: String,
    /// The chain hash before it, hex.
    pub prev: String,
    /// Its chain hash, hex.
    pub hash: String,
}

impl AdminEventJson {
    /// The JSON form of a stored event.
    pub fn of(e: &AdminEvent) -> AdminEventJson {
        AdminEventJson {
            seq: e.seq,
            id: e.event.id,
            at_ns: i64::try_from(e.event.at.as_nanosecond()).unwrap_or(i64::MAX),
            actor_id: e.event.actor_id,
            actor_name: e.event.actor_name.clone(),
            actor_role: e.event.actor_role.clone(),
            action: e.event.action.clone(),
            target: e.event.target.clone(),
            detail: e.event.detail.clone(),
            key_id: e.event.key_id.clone(),
            public_key: key_text(&e.event.public_key),
            signature: hex::encode(&e.event.signature),
            prev: hex::encode(e.prev),
            hash: hex::encode(e.hash),
        }
    }

    /// The event again.
    pub fn into_event(self) -> Result<AdminEvent, EvidenceError> {
        let what = format!("admin event {}", self.seq);
        let hash = |s: &str| -> Result<[u8; 32], EvidenceError> {
            hex::decode(s)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| malformed(&what))
        };
        Ok(AdminEvent {
            seq: self.seq,
            prev: hash(&self.prev)?,
            hash: hash(&self.hash)?,
            event: NewAdminEvent {
                id: self.id,
                at: jiff::Timestamp::from_nanosecond(i128::from(self.at_ns))
                    .map_err(|_| malformed(&what))?,
                actor_id: self.actor_id,
                actor_name: self.actor_name,
                actor_role: self.actor_role,
                action: self.action,
                target: self.target,
                detail: self.detail,
                key_id: self.key_id,
                public_key: key_bytes(&self.public_key, &what)?,
                signature: hex::decode(&self.signature).map_err(|_| malformed(&what))?,
            },
        })
    }
}
