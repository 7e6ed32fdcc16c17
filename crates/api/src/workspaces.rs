//! The JSON bodies of the workspace admin API (`/api/v1/workspaces`),
//! shared by the server's handlers and [`crate::client::ApiClient`], and
//! the limits on names the server enforces.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The agent name a workspace gets when none is given.
pub const DEFAULT_AGENT_NAME: &str = "main";

/// `POST /api/v1/workspaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    /// Unique workspace name (`[A-Za-z0-9][A-Za-z0-9._-]*`, at most
    /// [`MAX_NAME_LEN`]).
    pub name: String,
    /// The owner: printable text, at most [`MAX_OWNER_LEN`] bytes.
    pub owner: String,
    /// The agent's name (default [`DEFAULT_AGENT_NAME`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    /// Shell script the agent runs once its socket is up (at most
    /// [`MAX_SCRIPT_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_script: Option<String>,
}

/// A new agent token (create and rotate-token); shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceToken {
    /// The workspace's id.
    pub workspace_id: Uuid,
    /// The workspace's name.
    pub workspace_name: String,
    /// The workspace's owner.
    pub owner: String,
    /// The agent's name.
    pub agent_name: String,
    /// The agent's token; only its hash is stored.
    pub agent_token: String,
}

/// A workspace as listed (no token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceInfo {
    /// The workspace's id.
    pub workspace_id: Uuid,
    /// The workspace's name.
    pub workspace_name: String,
    /// The workspace's owner.
    pub owner: String,
    /// The agent's id.
    pub agent_id: Uuid,
    /// The agent's name.
    pub agent_name: String,
    /// The script the agent runs once its socket is up.
    pub startup_script: String,
    /// When the workspace was registered.
    pub created_at: Timestamp,
    /// When the current agent token was issued.
    pub token_issued_at: Timestamp,
    /// The agent's last call.
    pub last_contact_at: Option<Timestamp>,
    /// When the agent last delivered a batch.
    pub last_batch_at: Option<Timestamp>,
    /// The id of that batch.
    pub last_batch_id: Option<Uuid>,
    /// Every loss recorded for the workspace (client, agent and server).
    pub losses: Vec<LossInfo>,
}

/// Records lost for one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossInfo {
    /// `client`, `agent` or `server`.
    pub source: String,
    /// Why (`channel_full`, `malformed_frame`, ...).
    pub reason: String,
    /// Records lost.
    pub records: u64,
    /// Frames lost (for reasons counted per frame).
    pub frames: u64,
}

/// `GET /api/v1/workspaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceList {
    /// Live workspaces, by name.
    pub workspaces: Vec<WorkspaceInfo>,
}

/// Every error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for people.
    pub error: String,
}

/// Longest workspace or agent name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest owner name.
pub const MAX_OWNER_LEN: usize = 128;
/// Largest startup script.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

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
