//! Tokens: agent tokens (issued per workspace, shown once) and the admin
//! token. Only SHA-256 hashes are stored, and hashes are compared in
//! constant time.
//!
//! An agent token is `wat1_<agent id, 32 hex>_<secret, 64 hex>`: 256 random
//! bits, plus the agent id so the store can look the agent up by its key and
//! compare hashes with [`subtle`] instead of looking the secret up by value.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use warden_store::TokenHash;

const AGENT_TOKEN_PREFIX: &str = "wat1";

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
    let mut parts = token.split('_');
    let (Some(AGENT_TOKEN_PREFIX), Some(agent), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if agent.len() != 32 || secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::try_parse(agent).ok()
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
    fn hashes_match_only_their_token() {
        let token = new_admin_token();
        assert_eq!(token.len(), 64);
        let hash = hash_token(&token);
        assert!(token_matches(&token, &hash));
        assert!(!token_matches(&new_admin_token(), &hash));
    }
}
