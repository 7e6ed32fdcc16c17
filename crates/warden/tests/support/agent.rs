//! `warden agent` as a child process: how to start one for a control plane,
//! and its readiness line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::process::{BoundaryLines, WardenProcess, warden};

/// What the agent prints once its socket accepts connections (`docs/cli.md`).
pub const READY: &str = "warden agent boundary log socket at";

/// Everything an agent run needs; reused to restart the same agent.
#[derive(Clone, Debug)]
pub struct AgentSetup {
    pub url: String,
    pub token: String,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    /// More flags (e.g. `--ca-cert`).
    pub extra_args: Vec<OsString>,
    /// `--shutdown-grace`.
    pub shutdown_grace: &'static str,
}

impl AgentSetup {
    pub fn new(url: &str, token: &str, data_dir: &Path, socket: &Path) -> AgentSetup {
        AgentSetup {
            url: url.to_owned(),
            token: token.to_owned(),
            data_dir: data_dir.to_owned(),
            socket: socket.to_owned(),
            extra_args: Vec::new(),
            shutdown_grace: "20s",
        }
    }

    /// Starts the agent (with `command` as its COMMAND when not empty);
    /// does not wait for it to be ready.
    pub fn spawn(&self, command: &[&str]) -> WardenProcess {
        let mut cmd = warden();
        cmd.arg("agent")
            .arg("--url")
            .arg(&self.url)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--boundary-log-proxy-socket-path")
            .arg(&self.socket)
            .args(["--shutdown-grace", self.shutdown_grace])
            .args(["--max-retry-delay", "250ms"])
            .args(&self.extra_args)
            // The token through the environment, as in production (a flag
            // would show in the process list).
            .env("CODER_AGENT_TOKEN", &self.token);
        if !command.is_empty() {
            cmd.arg("--").args(command);
        }
        WardenProcess::spawn("warden agent", cmd, BoundaryLines::Keep)
    }

    /// Starts the agent and waits until its socket accepts connections.
    pub async fn start(&self, command: &[&str]) -> WardenProcess {
        let mut agent = self.spawn(command);
        agent.wait_line(READY).await;
        agent
    }
}
