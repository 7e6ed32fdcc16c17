//! The JSON bodies of the token API (`/api/v1/tokens`) and of the admin
//! event log (`/api/v1/admin-events`), shared by the server's handlers and
//! [`crate::client::ApiClient`].

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /api/v1/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Unique among live tokens (the rules of workspace names).
    pub name: String,
    /// `admin` or `auditor`.
    pub role: String,
}

/// A new token; the only time it is shown (only its hash is stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The token's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// `admin` or `auditor`.
    pub role: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// The token.
    pub token: String,
}

/// A live token as listed (never the secret or its hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// The token's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// `admin` or `auditor`.
    pub role: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last authenticated a call (noted at most once a minute).
    pub last_used_at: Option<Timestamp>,
}

/// `GET /api/v1/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    /// Live tokens, by name.
    pub tokens: Vec<TokenInfo>,
}

/// Who did an admin action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The token's id; absent for the bootstrap admin token.
    pub id: Option<Uuid>,
    /// The token's name (`admin` for the bootstrap admin token).
    pub name: String,
    /// The token's role.
    pub role: String,
}

/// One admin event, with what verification needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEventInfo {
    /// Position in the admin event chain, from 1.
    pub seq: i64,
    /// The event's id.
    pub id: Uuid,
    /// When the action was done.
    pub time: Timestamp,
    /// Who did it.
    pub actor: Actor,
    /// What was done: `workspace.create`, `workspace.delete`,
    /// `workspace.rotate-token`, `token.create`, `token.revoke`.
    pub action: String,
    /// What it was done to (a workspace or token name).
    pub target: String,
    /// More about it: a JSON object, as signed (text).
    pub detail: String,
    /// The signing key's id.
    pub key_id: String,
    /// The signing key, `ed25519:<hex>`.
    pub public_key: String,
    /// The Ed25519 signature over the event's signed form, hex.
    pub signature: String,
    /// The previous event's chain hash, hex.
    pub prev: String,
    /// This event's chain hash, hex.
    pub hash: String,
}

/// `GET /api/v1/admin-events`: oldest first, `?after=SEQ&limit=N`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEventList {
    /// The events.
    pub events: Vec<AdminEventInfo>,
}
