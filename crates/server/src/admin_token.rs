//! Settling the admin token at start: the store keeps only its hash, the
//! operator's copy lives in the environment or in `<data-dir>/admin-token`.

use std::path::Path;

use warden_store::{Store, TokenHash};

use crate::ServerError;
use crate::auth::{hash_token, new_admin_token};
use crate::config::{AdminTokenSource, MIN_ADMIN_TOKEN_LEN};

/// The file name of the CLI's copy of the admin token in a data dir.
pub use warden_api::client::ADMIN_TOKEN_FILE;

/// Makes the store's admin token hash match `source`; returns the hash in
/// force.
pub async fn settle(
    store: &dyn Store,
    source: &AdminTokenSource,
) -> Result<TokenHash, ServerError> {
    match source {
        AdminTokenSource::Given(token) => {
            check_strength(token, "WARDEN_ADMIN_TOKEN")?;
            let hash = hash_token(token);
            store.set_admin_token_hash(hash).await?;
            Ok(hash)
        }
        AdminTokenSource::DataDir(dir) => {
            let path = dir.join(ADMIN_TOKEN_FILE);
            match read_token_file(&path)? {
                Some(token) => {
                    check_strength(&token, &path.display().to_string())?;
                    let hash = hash_token(&token);
                    store.set_admin_token_hash(hash).await?;
                    Ok(hash)
                }
                None => {
                    let token = new_admin_token();
                    let hash = hash_token(&token);
                    let in_force = store.init_admin_token_hash(hash).await?;
                    if in_force == hash {
                        write_token_file(&path, &token)?;
                        tracing::info!(path = %path.display(), "generated the admin token");
                    } else {
                        // Another replica sharing the database created it.
                        tracing::info!(
                            "the store already has an admin token (created by another replica); use that replica's {ADMIN_TOKEN_FILE} file or set WARDEN_ADMIN_TOKEN"
                        );
                    }
                    Ok(in_force)
                }
            }
        }
    }
}

fn check_strength(token: &str, origin: &str) -> Result<(), ServerError> {
    if token.trim().len() < MIN_ADMIN_TOKEN_LEN {
        return Err(ServerError::Config(format!(
            "the admin token from {origin} is shorter than {MIN_ADMIN_TOKEN_LEN} characters"
        )));
    }
    Ok(())
}

fn read_token_file(path: &Path) -> Result<Option<String>, ServerError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(cause) => Err(ServerError::Io {
            context: format!("reading {}", path.display()),
            cause,
        }),
    }
}

/// Writes the token readable by the owner only, atomically and durably,
/// so a reader never sees half a token.
fn write_token_file(path: &Path, token: &str) -> Result<(), ServerError> {
    warden_fsutil::write_atomically(path, format!("{token}\n").as_bytes()).map_err(|cause| {
        ServerError::Io {
            context: format!("writing {}", path.display()),
            cause,
        }
    })
}
