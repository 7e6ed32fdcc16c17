//! The JSON bodies of the workspace admin API (`/api/v1/workspaces`),
//! shared by the server's handlers and [`crate::admin_client`], and the
//! rules for names.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use warden_store::{Loss, Workspace};

use crate::line::quote::is_print;

/// The agent name a workspace gets when none is given.
pub const DEFAULT_AGENT_NAME: &str = "main";

/// `POST /api/v1/workspaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    pub name: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_script: Option<String>,
}

/// A new agent token (create and rotate-token); shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceToken {
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub owner: String,
    pub agent_name: String,
    pub agent_token: String,
}

/// A workspace as listed (no token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceInfo {
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub owner: String,
    pub agent_id: Uuid,
    pub agent_name: String,
    pub startup_script: String,
    pub created_at: Timestamp,
    pub token_issued_at: Timestamp,
    pub last_contact_at: Option<Timestamp>,
    pub last_batch_at: Option<Timestamp>,
    pub last_batch_id: Option<Uuid>,
    /// Every loss recorded for the workspace (client, agent and server).
    pub losses: Vec<LossInfo>,
}

impl WorkspaceInfo {
    pub fn new(w: &Workspace, losses: &[Loss]) -> WorkspaceInfo {
        WorkspaceInfo {
            workspace_id: w.id,
            workspace_name: w.name.clone(),
            owner: w.owner.clone(),
            agent_id: w.agent.id,
            agent_name: w.agent.name.clone(),
            startup_script: w.startup_script.clone(),
            created_at: w.created_at,
            token_issued_at: w.agent.token_issued_at,
            last_contact_at: w.agent.last_contact_at,
            last_batch_at: w.agent.last_batch_at,
            last_batch_id: w.agent.last_batch_id,
            losses: losses.iter().map(LossInfo::from).collect(),
        }
    }
}

/// Records lost for one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossInfo {
    /// `client`, `agent` or `server`.
    pub source: String,
    pub reason: String,
    pub records: u64,
    pub frames: u64,
}

impl From<&Loss> for LossInfo {
    fn from(l: &Loss) -> Self {
        LossInfo {
            source: l.source.as_str().to_owned(),
            reason: l.reason.clone(),
            records: l.records,
            frames: l.frames,
        }
    }
}

/// `GET /api/v1/workspaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceList {
    pub workspaces: Vec<WorkspaceInfo>,
}

/// Every error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// Longest workspace or agent name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest owner name.
pub const MAX_OWNER_LEN: usize = 128;
/// Largest startup script.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;

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

    #[test]
    fn the_create_response_is_the_cli_json_line() {
        let token = WorkspaceToken {
            workspace_id: Uuid::nil(),
            workspace_name: "dev".into(),
            owner: "alice".into(),
            agent_name: "main".into(),
            agent_token: "t".into(),
        };
        assert_eq!(
            serde_json::to_string(&token).unwrap(),
            r#"{"workspace_id":"00000000-0000-0000-0000-000000000000","workspace_name":"dev","owner":"alice","agent_name":"main","agent_token":"t"}"#
        );
    }
}
