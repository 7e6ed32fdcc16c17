//! The control plane's signing key: Ed25519 (ring), kept as a PKCS#8
//! document in a 0600 file (`<data-dir>/signing-key` by default, generated
//! on first start), its public half beside it (`signing-key.pub`) for
//! auditors to copy. A key is named by its id (the first 16 hex digits of
//! the SHA-256 of the public key) and shown as its fingerprint
//! (`SHA256:` and all 64).

use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};

use crate::EvidenceError;

/// An Ed25519 public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// From its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, EvidenceError> {
        bytes
            .try_into()
            .map(PublicKey)
            .map_err(|_| EvidenceError::Malformed("an ed25519 public key is 32 bytes".into()))
    }

    /// The key id: 16 hex digits of its SHA-256.
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..8])
    }

    /// `SHA256:` and the hex SHA-256 of the key.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", hex::encode(Sha256::digest(self.0)))
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, self.0)
            .verify(message, signature)
            .is_ok()
    }

    /// The public key file's content: `ed25519:` and the key in hex.
    pub fn to_file(self) -> String {
        format!("ed25519:{}\n", hex::encode(self.0))
    }

    /// Reads a public key file (as [`to_file`](Self::to_file) writes, or
    /// the bare hex).
    pub fn parse(text: &str) -> Result<PublicKey, EvidenceError> {
        let text = text.trim();
        let hex_key = text.strip_prefix("ed25519:").unwrap_or(text);
        let bytes = hex::decode(hex_key).map_err(|_| {
            EvidenceError::Malformed("a public key file holds ed25519:<64 hex digits>".into())
        })?;
        PublicKey::from_bytes(&bytes)
    }

    /// Reads a public key file.
    pub fn read(path: &Path) -> Result<PublicKey, EvidenceError> {
        let text = std::fs::read_to_string(path).map_err(|cause| EvidenceError::Io {
            context: format!("reading {}", path.display()),
            cause,
        })?;
        PublicKey::parse(&text)
    }
}

/// The private signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private half.
        f.debug_struct("SigningKey")
            .field("key_id", &self.public_key().key_id())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key and its PKCS#8 document.
    pub fn generate() -> Result<(SigningKey, Vec<u8>), EvidenceError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| EvidenceError::Malformed("the system random source failed".into()))?;
        let key = SigningKey::from_pkcs8(doc.as_ref())?;
        Ok((key, doc.as_ref().to_vec()))
    }

    /// From a PKCS#8 document (what the key file holds).
    pub fn from_pkcs8(doc: &[u8]) -> Result<SigningKey, EvidenceError> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(doc)
            .map(|pair| SigningKey { pair })
            .map_err(|_| EvidenceError::Malformed("not an ed25519 PKCS#8 key".into()))
    }

    /// Reads the key file at `path`; with `create`, generates one there
    /// (mode 0600, with `<path>.pub` beside it) when there is none. Returns
    /// the key and whether it was generated.
    pub fn load(path: &Path, create: bool) -> Result<(SigningKey, bool), EvidenceError> {
        match std::fs::read(path) {
            Ok(doc) => {
                check_private(path)?;
                Ok((
                    SigningKey::from_pkcs8(&doc).map_err(|_| {
                        EvidenceError::Malformed(format!(
                            "{} is not an ed25519 PKCS#8 key",
                            path.display()
                        ))
                    })?,
                    false,
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let (key, doc) = SigningKey::generate()?;
                let io = |cause| EvidenceError::Io {
                    context: format!("writing {}", path.display()),
                    cause,
                };
                warden_fsutil::write_atomically(path, &doc).map_err(io)?;
                let mut public = path.as_os_str().to_owned();
                public.push(".pub");
                warden_fsutil::write_atomically(
                    Path::new(&public),
                    key.public_key().to_file().as_bytes(),
                )
                .map_err(io)?;
                Ok((key, true))
            }
            Err(cause) => Err(EvidenceError::Io {
                context: format!("reading {}", path.display()),
                cause,
            }),
        }
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(out)
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// A private key readable by others is refused: anyone who can read it can
/// sign checkpoints.
fn check_private(path: &Path) -> Result<(), EvidenceError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|cause| EvidenceError::Io {
        context: format!("reading {}", path.display()),
        cause,
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(EvidenceError::Malformed(format!(
            "{} is readable by others (mode {:o}): make it 0600",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_kept_private_and_reloads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing-key");
        let (key, created) = SigningKey::load(&path, true).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, created) = SigningKey::load(&path, true).unwrap();
        assert!(!created);
        assert_eq!(again.public_key(), key.public_key());
        let public = PublicKey::read(&dir.path().join("signing-key.pub")).unwrap();
        assert_eq!(public, key.public_key());
        let sig = key.sign(b"m");
        assert!(public.verifies(b"m", &sig));
        assert!(!public.verifies(b"n", &sig));
        assert_eq!(public.key_id().len(), 16);
        assert!(
            public
                .fingerprint()
                .starts_with(&format!("SHA256:{}", public.key_id()))
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKey::load(&path, true).unwrap_err();
        assert!(err.to_string().contains("readable by others"), "{err}");
    }
}
