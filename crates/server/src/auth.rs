//! Tokens: agent tokens (issued per workspace, shown once), named API
//! tokens (admin or auditor, `warden token create`) and the bootstrap admin
//! token. Only SHA-256 hashes are stored, and hashes are compared in
//! constant time.
//!
//! An agent token is `wat1_<agent id, 32 hex>_<secret, 64 hex>`: 256 random
//! bits, plus the agent id so the store can look the agent up by its key and
//! compare hashes with [`subtle`] instead of looking the secret up by value.
//! A named API token is `wtk1_<token id, 32 hex>_<secret, 64 hex>`, for the
//! same reason.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use warden_store::TokenHash;

const AGENT_TOKEN_PREFIX: &str = "wat1";
const API_TOKEN_PREFIX: &str = "wtk1";

/// SHA-256 of a token.
pub fn hash_token(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

/// Whether `token` hashes to `expected`, in constant time.
pub fn token_matches(token: &str, expected: &TokenHash) -> bool {
    hash_token(token).0.ct_eq(&expected.0).into()
}

/// 256 random bits, hex-encoded.
fn secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A new token for `agent`.
pub fn new_agent_token(agent: Uuid) -> String {
    format!("{AGENT_TOKEN_PREFIX}_{}_{}", agent.simple(), secret())
}

/// The agent a token claims to be for; `None` when it is not an agent token.
pub fn agent_of_token(token: &str) -> Option<Uuid> {
    id_of_token(AGENT_TOKEN_PREFIX, token)
}

/// A new named API token with this id.
pub fn new_api_token(id: Uuid) -> String {
    format!("{API_TOKEN_PREFIX}_{}_{}", id.simple(), secret())
}

/// The named API token a token claims to be; `None` when it is not one.
pub fn api_token_id(token: &str) -> Option<Uuid> {
    id_of_token(API_TOKEN_PREFIX, token)
}

/// The id in `<prefix>_<id, 32 hex>_<secret, 64 hex>`.
fn id_of_token(prefix: &str, token: &str) -> Option<Uuid> {
    let mut parts = token.split('_');
    let (Some(p), Some(id), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if p != prefix
        || id.len() != 32
        || secret.len() != 64
        || !secret.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    Uuid::try_parse(id).ok()
}

/// A new admin token: 256 random bits, hex-encoded.
pub fn new_admin_token() -> String {
    secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_tokens_name_their_agent_and_are_random() {
        let agent = Uuid::new_v4();
        let a = new_agent_token(agent);
        let b = new_agent_token(agent);
        assert_ne!(a, b);
        assert_eq!(agent_of_token(&a), Some(agent));
        assert!(a.starts_with("wat1_"));
        assert_eq!(a.len(), 4 + 1 + 32 + 1 + 64);
    }

    #[test]
    fn malformed_tokens_name_no_agent() {
        let agent = Uuid::new_v4().simple().to_string();
        let secret = "ab".repeat(32);
        for token in [
            String::new(),
            "wat1".into(),
            format!("wat2_{agent}_{secret}"),
            format!("wat1_{agent}_{}", &secret[1..]),
            format!("wat1_{agent}_{secret}_x"),
            format!("wat1_{}_{secret}", "z".repeat(32)),
            format!("wat1_{agent}_{}", "g".repeat(64)),
        ] {
            assert_eq!(agent_of_token(&token), None, "{token}");
        }
    }

    #[test]
    fn api_tokens_name_their_id_and_are_not_agent_tokens() {
        let id = Uuid::new_v4();
        let token = new_api_token(id);
        assert!(token.starts_with("wtk1_"));
        assert_eq!(api_token_id(&token), Some(id));
        assert_eq!(agent_of_token(&token), None);
        assert_eq!(api_token_id(&new_agent_token(id)), None);
        assert_ne!(token, new_api_token(id));
    }

    #[test]
    fn hashes_match_only_their_token() {
        let token = new_admin_token();
        assert_eq!(token.len(), 64);
        let hash = hash_token(&token);
        assert!(token_matches(&token, &hash));
        assert!(!token_matches(&new_admin_token(), &hash));
    }
}
