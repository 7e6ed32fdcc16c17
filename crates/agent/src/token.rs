//! The agent's token: a secret that lets its holder deliver records (and
//! their peer identities) as this workspace. It never shows in `Debug`
//! output, never goes to the commands the agent starts, and the documented
//! way to give it is a private file ([`Token::from_file`]), checked the way
//! ssh checks a private key.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// An agent token. Its `Debug` never shows the secret, so the configuration
/// can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token given as text.
    pub fn new(token: impl Into<String>) -> Self {
        Token(token.into())
    }

    /// Reads a token file: the token is its content without surrounding
    /// whitespace. Refused when others may read or write the file (any
    /// group or other permission bit, as ssh refuses a private key) or when
    /// it belongs to another user (root excepted).
    pub fn from_file(path: &Path) -> Result<Token, TokenFileError> {
        let meta = std::fs::metadata(path).map_err(|source| TokenFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(TokenFileError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let uid = rustix::process::geteuid().as_raw();
        if meta.uid() != uid && meta.uid() != 0 {
            return Err(TokenFileError::NotOwned {
                path: path.to_owned(),
                owner: meta.uid(),
                uid,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenFileError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Token(token.to_owned()))
    }

    /// The secret itself, for the authorization header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// It cannot be read.
    #[error("reading the token file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Others may read or write it.
    #[error(
        "the token file {} is accessible by other users (mode {mode:04o}); it must be private: `chmod 600 {}`",
        path.display(), path.display()
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It belongs to another user.
    #[error("the token file {} belongs to uid {owner}, not to this agent's uid {uid}", path.display())]
    NotOwned {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The agent's effective uid.
        uid: u32,
    },
    /// It holds no token.
    #[error("the token file {} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_token_file_is_read_and_an_open_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "secret-token\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Token::from_file(&path).unwrap().expose(), "secret-token");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(Token::from_file(&path).unwrap().expose(), "secret-token");
        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = Token::from_file(&path).unwrap_err();
            assert!(
                matches!(err, TokenFileError::TooOpen { .. }),
                "{mode:o}: {err}"
            );
            assert!(err.to_string().contains("chmod 600"), "{err}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
        std::fs::write(&path, " \n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Token::from_file(&path),
            Err(TokenFileError::Empty { .. })
        ));
        assert!(matches!(
            Token::from_file(&dir.path().join("missing")),
            Err(TokenFileError::Read { .. })
        ));
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let text = format!("{:?}", Token::new("secret-token"));
        assert!(!text.contains("secret-token"), "{text}");
        assert!(text.contains("redacted"));
    }
}
