//! Roles and admin events, in domain terms: the named API tokens an admin
//! creates (admin or auditor; agent tokens belong to workspaces), and the
//! chained record of every state-changing admin action.
//!
//! Admin events form a hash chain of their own, apart from the record
//! chain: `hash = SHA-256("warden-admin-chain-v1\0" ‖ prev ‖ seq ‖
//! SHA-256(signed form) ‖ signature)` (seq big-endian, 32 zero bytes before
//! seq 1). The control plane signs each event's [signed form](NewAdminEvent::signed_form)
//! with its checkpoint key before the store chains it, so an event is
//! authentic on its own and the chain proves none was removed, changed or
//! moved between two others. `docs/evidence.md` says why the events are not
//! links of the record chain.

use std::fmt;

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What a named API token may do (agent tokens are per workspace).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenRole {
    /// Everything.
    Admin,
    /// Read-only.
    Auditor,
}

impl TokenRole {
    /// `admin` or `auditor`, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Auditor => "auditor",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<TokenRole> {
        match s {
            "admin" => Some(TokenRole::Admin),
            "auditor" => Some(TokenRole::Auditor),
            _ => None,
        }
    }
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named API token to store (its hash only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApiToken {
    /// Chosen by the caller: the token names it.
    pub id: Uuid,
    /// Unique among live tokens.
    pub name: String,
    /// What it may do.
    pub role: TokenRole,
    /// SHA-256 of the token.
    pub token_hash: crate::TokenHash,
}

/// A live named API token, as listed (never its hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    /// Its id (part of the token).
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub role: TokenRole,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last authenticated a call (noted at most once a minute).
    pub last_used_at: Option<Timestamp>,
}

/// An admin action to record, signed by the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAdminEvent {
    /// The event's id.
    pub id: Uuid,
    /// When the action was done.
    pub at: Timestamp,
    /// The token that did it: `None` for the bootstrap admin token.
    pub actor_id: Option<Uuid>,
    /// The token's name (`admin` for the bootstrap token).
    pub actor_name: String,
    /// The token's role.
    pub actor_role: String,
    /// What was done (`workspace.create`, `token.revoke`, ...).
    pub action: String,
    /// What it was done to (a workspace or token name).
    pub target: String,
    /// More about it, a JSON object (never a secret).
    pub detail: String,
    /// The signing key's id.
    pub key_id: String,
    /// The signing key's public half (32 bytes).
    pub public_key: Vec<u8>,
    /// Ed25519 signature over [`NewAdminEvent::signed_form`].
    pub signature: Vec<u8>,
}

/// A stored admin event: a [`NewAdminEvent`] with its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminEvent {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The event.
    pub event: NewAdminEvent,
    /// The hash of the event before (zeros before seq 1).
    pub prev: [u8; 32],
    /// This event's chain hash.
    pub hash: [u8; 32],
}

/// The hash before the first admin event.
pub const ADMIN_CHAIN_START: [u8; 32] = [0; 32];

impl NewAdminEvent {
    /// The bytes the control plane signs: text an auditor can rebuild, each
    /// free-text field JSON-quoted so no value can forge another line.
    pub fn signed_form(&self) -> Vec<u8> {
        let quote = |s: &str| serde_json_string(s);
        format!(
            "warden admin-event v1\nid {}\ntime {}\nactor {} {} {}\naction {}\ntarget {}\ndetail {}\nkey {}\n",
            self.id,
            crate::convert::nanos(self.at),
            self.actor_id
                .map_or_else(|| "bootstrap".to_owned(), |id| id.to_string()),
            quote(&self.actor_role),
            quote(&self.actor_name),
            quote(&self.action),
            quote(&self.target),
            quote(&self.detail),
            quote(&self.key_id),
        )
        .into_bytes()
    }
}

/// The chain hash of the event at `seq` after `prev`.
pub fn admin_chain_hash(prev: &[u8; 32], seq: i64, event: &NewAdminEvent) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"warden-admin-chain-v1\0");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(Sha256::digest(event.signed_form()));
    h.update(&event.signature);
    h.finalize().into()
}

/// `s` as a JSON string literal (quotes, escapes), without a JSON
/// dependency in the store.
fn serde_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> NewAdminEvent {
        NewAdminEvent {
            id: Uuid::nil(),
            at: Timestamp::from_second(1_700_000_000).unwrap(),
            actor_id: None,
            actor_name: "admin".into(),
            actor_role: "admin".into(),
            action: "workspace.create".into(),
            target: "dev\nkey forged".into(),
            detail: "{}".into(),
            key_id: "k".into(),
            public_key: vec![0; 32],
            signature: vec![1; 64],
        }
    }

    #[test]
    fn the_signed_form_is_the_documented_one_and_text_cannot_forge_a_line() {
        let text = String::from_utf8(event().signed_form()).unwrap();
        assert_eq!(
            text,
            "warden admin-event v1\nid 00000000-0000-0000-0000-000000000000\ntime 1700000000000000000\nactor bootstrap \"admin\" \"admin\"\naction \"workspace.create\"\ntarget \"dev\\nkey forged\"\ndetail \"{}\"\nkey \"k\"\n"
        );
    }

    #[test]
    fn the_chain_hash_covers_position_predecessor_content_and_signature() {
        let e = event();
        let base = admin_chain_hash(&ADMIN_CHAIN_START, 1, &e);
        assert_ne!(base, admin_chain_hash(&ADMIN_CHAIN_START, 2, &e));
        assert_ne!(base, admin_chain_hash(&[1; 32], 1, &e));
        let mut other = e.clone();
        other.target = "prod".into();
        assert_ne!(base, admin_chain_hash(&ADMIN_CHAIN_START, 1, &other));
        let mut other = e;
        other.signature = vec![2; 64];
        assert_ne!(base, admin_chain_hash(&ADMIN_CHAIN_START, 1, &other));
    }
}
