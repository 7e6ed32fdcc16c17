//! The rules for the names a workspace is registered with: they appear in
//! URLs, environment variables and log lines. The limits are part of the
//! API ([`warden_api::workspaces`]); the server enforces them here.

use warden_api::workspaces::{MAX_NAME_LEN, MAX_OWNER_LEN, MAX_SCRIPT_BYTES};

use crate::line::quote::is_print;

/// Workspace and agent names: they appear in URLs, environment variables and
/// log lines, so they are kept to `[A-Za-z0-9][A-Za-z0-9._-]*`.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_first || !ok_rest {
        return Err(format!(
            "{what} must be 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// Owner names: printable text without surrounding spaces.
pub fn check_owner(owner: &str) -> Result<(), String> {
    if owner.is_empty()
        || owner.len() > MAX_OWNER_LEN
        || owner.trim() != owner
        || !owner.chars().all(is_print)
    {
        return Err(format!(
            "owner must be 1 to {MAX_OWNER_LEN} bytes of printable text without leading or trailing spaces"
        ));
    }
    Ok(())
}

/// Startup scripts: any shell text up to a size, without NUL (which cannot
/// be passed to `sh -c`).
pub fn check_script(script: &str) -> Result<(), String> {
    if script.len() > MAX_SCRIPT_BYTES || script.contains('\0') {
        return Err(format!(
            "startup script must be at most {MAX_SCRIPT_BYTES} bytes without NUL characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["dev", "a", "my-ws_1.2", &"x".repeat(64)] {
            assert!(check_name("name", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-dev",
            ".x",
            "a b",
            "a/b",
            "é",
            "dev\n",
            &"x".repeat(65),
        ] {
            assert!(check_name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn owners_and_scripts_are_checked() {
        assert!(check_owner("Alice Müller").is_ok());
        assert!(check_owner(" alice").is_err());
        assert!(check_owner("al\u{1b}ice").is_err());
        assert!(check_owner("").is_err());
        assert!(check_script("echo hi\nexit 0").is_ok());
        assert!(check_script("a\0b").is_err());
        assert!(check_script(&"x".repeat(MAX_SCRIPT_BYTES + 1)).is_err());
    }
}
