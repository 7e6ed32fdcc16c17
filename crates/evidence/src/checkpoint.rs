//! Signed checkpoints: "the chain up to link L (records up to id I) has
//! head H", signed with the control plane's key at a time T. The signed
//! form is text, one field a line, so an auditor can rebuild it by hand:
//!
//! ```text
//! warden checkpoint v1
//! link <L>
//! last-record <I>
//! head <H, 64 hex digits>
//! time <T, Unix nanoseconds>
//! key <key id>
//! ```
//!
//! (each line ends with `\n`). [`CheckpointFile`] is the JSON an auditor
//! keeps (`warden checkpoint export`) and `/api/v1/checkpoints` serves.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use warden_store::chain::{ChainLink, Checkpoint, Hash};

use crate::EvidenceError;
use crate::key::{PublicKey, SigningKey};

/// The `format` of a [`CheckpointFile`].
pub const FORMAT: &str = "warden-checkpoint-v1";

/// The bytes a checkpoint's signature covers.
pub fn signed_form(link: i64, last_id: i64, head: &Hash, signed_ns: i64, key_id: &str) -> Vec<u8> {
    format!(
        "warden checkpoint v1\nlink {link}\nlast-record {last_id}\nhead {}\ntime {signed_ns}\nkey {key_id}\n",
        hex::encode(head)
    )
    .into_bytes()
}

/// A checkpoint of the chain up to `link`, whose last records link ended
/// at `last_id`, signed now.
pub fn sign(key: &SigningKey, link: &ChainLink, last_id: i64, at: Timestamp) -> Checkpoint {
    let public = key.public_key();
    let key_id = public.key_id();
    let signed_ns = i64::try_from(at.as_nanosecond()).unwrap_or(i64::MAX);
    let signature = key.sign(&signed_form(
        link.seq, last_id, &link.head, signed_ns, &key_id,
    ));
    Checkpoint {
        id: 0,
        link_seq: link.seq,
        last_id,
        head: link.head,
        signed_ns,
        key_id,
        public_key: public.0.to_vec(),
        signature,
    }
}

/// Whether the checkpoint's signature is its key's and its key id is that
/// key's.
pub fn signature_holds(c: &Checkpoint) -> bool {
    let Ok(key) = PublicKey::from_bytes(&c.public_key) else {
        return false;
    };
    key.key_id() == c.key_id
        && key.verifies(
            &signed_form(c.link_seq, c.last_id, &c.head, c.signed_ns, &c.key_id),
            &c.signature,
        )
}

/// A checkpoint as JSON (what an auditor keeps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFile {
    /// [`FORMAT`].
    pub format: String,
    /// The stored checkpoint's id.
    pub id: i64,
    /// The link it covers.
    pub link: i64,
    /// The last record id covered.
    pub last_record_id: i64,
    /// The head, hex.
    pub head: String,
    /// When it was signed (RFC 3339, for people).
    pub time: String,
    /// When it was signed, Unix nanoseconds (what is signed).
    pub time_ns: i64,
    /// The signing key's id.
    pub key_id: String,
    /// The signing key's fingerprint.
    pub fingerprint: String,
    /// The signing key, hex.
    pub public_key: String,
    /// The signature, hex.
    pub signature: String,
}

impl CheckpointFile {
    /// The JSON form of a stored checkpoint.
    pub fn of(c: &Checkpoint) -> CheckpointFile {
        let fingerprint = PublicKey::from_bytes(&c.public_key)
            .map(|k| k.fingerprint())
            .unwrap_or_default();
        CheckpointFile {
            format: FORMAT.into(),
            id: c.id,
            link: c.link_seq,
            last_record_id: c.last_id,
            head: hex::encode(c.head),
            time: Timestamp::from_nanosecond(i128::from(c.signed_ns))
                .map(|t| t.to_string())
                .unwrap_or_default(),
            time_ns: c.signed_ns,
            key_id: c.key_id.clone(),
            fingerprint,
            public_key: hex::encode(&c.public_key),
            signature: hex::encode(&c.signature),
        }
    }

    /// Back to the stored form (the signature is not checked here).
    pub fn to_checkpoint(&self) -> Result<Checkpoint, EvidenceError> {
        if self.format != FORMAT {
            return Err(EvidenceError::Malformed(format!(
                "not a checkpoint file (format {:?}, expected {FORMAT:?})",
                self.format
            )));
        }
        let bad = |what: &str| EvidenceError::Malformed(format!("checkpoint: bad {what}"));
        let head = hex::decode(&self.head)
            .ok()
            .and_then(|h| <Hash>::try_from(h).ok())
            .ok_or_else(|| bad("head"))?;
        Ok(Checkpoint {
            id: self.id,
            link_seq: self.link,
            last_id: self.last_record_id,
            head,
            signed_ns: self.time_ns,
            key_id: self.key_id.clone(),
            public_key: hex::decode(&self.public_key).map_err(|_| bad("public key"))?,
            signature: hex::decode(&self.signature).map_err(|_| bad("signature"))?,
        })
    }

    /// Reads a checkpoint file.
    pub fn read(path: &std::path::Path) -> Result<CheckpointFile, EvidenceError> {
        let text = std::fs::read_to_string(path).map_err(|cause| EvidenceError::Io {
            context: format!("reading {}", path.display()),
            cause,
        })?;
        serde_json::from_str(&text).map_err(|e| {
            EvidenceError::Malformed(format!("{} is not a checkpoint file: {e}", path.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_store::chain::{ChainHead, LinkBuilder};

    #[test]
    fn a_signed_checkpoint_verifies_and_any_change_breaks_it() {
        let (key, _) = SigningKey::generate().unwrap();
        let link = LinkBuilder::default().finish(&ChainHead::EMPTY, 0, Timestamp::UNIX_EPOCH);
        let c = sign(&key, &link, 0, Timestamp::now());
        assert!(signature_holds(&c));
        let file = CheckpointFile::of(&c);
        let back = file.to_checkpoint().unwrap();
        assert_eq!(back, c);
        let json = serde_json::to_string(&file).unwrap();
        assert!(json.contains(&key.public_key().fingerprint()));

        let mut moved = c.clone();
        moved.link_seq += 1;
        assert!(!signature_holds(&moved));
        let mut other_head = c.clone();
        other_head.head[0] ^= 1;
        assert!(!signature_holds(&other_head));
        let (other, _) = SigningKey::generate().unwrap();
        let mut rekeyed = c.clone();
        rekeyed.public_key = other.public_key().0.to_vec();
        assert!(!signature_holds(&rekeyed));
    }
}
