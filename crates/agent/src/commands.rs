//! The workspace's commands: the manifest's startup script (`sh -c`) and the
//! optional COMMAND, each with the environment of the boundary wire spec,
//! and how they are stopped.
//!
//! The commands inherit the agent's environment minus its token (the
//! sandboxed processes must not be able to speak to the control plane as
//! the agent), plus the socket path and the workspace's identity.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::process::{Child, Command};
use tokio::time::Instant;
use warden_proto::domain::Manifest;

/// Environment variables a command must not inherit: the agent's token, and
/// where its token file is (not secret, but none of the command's business).
const SECRET_VARS: &[&str] = &["CODER_AGENT_TOKEN", "WARDEN_AGENT_TOKEN_FILE"];

/// The variables every command the agent starts gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandEnv {
    vars: Vec<(&'static str, String)>,
}

impl CommandEnv {
    /// The variables for a workspace whose socket is at `socket`.
    pub fn new(manifest: &Manifest, socket: &Path) -> Self {
        let socket = socket.to_string_lossy().into_owned();
        CommandEnv {
            vars: vec![
                ("CODER_BOUNDARY_LOG_SOCKET", socket.clone()),
                ("CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH", socket),
                ("CODER_WORKSPACE_ID", manifest.workspace_id.to_string()),
                ("CODER_WORKSPACE_NAME", manifest.workspace_name.clone()),
                ("CODER_WORKSPACE_OWNER_NAME", manifest.owner_name.clone()),
                ("CODER_WORKSPACE_AGENT_NAME", manifest.agent_name.clone()),
            ],
        }
    }

    /// The variables, by name.
    pub fn vars(&self) -> &[(&'static str, String)] {
        &self.vars
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        for var in SECRET_VARS {
            command.env_remove(var);
        }
        command
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        command
    }
}

/// Starts the manifest's startup script with `sh -c`.
pub fn start_script(script: &str, env: &CommandEnv) -> std::io::Result<Child> {
    let mut command = env.command("sh");
    command.arg("-c").arg(script);
    // The script must not be able to read records meant for the socket
    // from the agent's stdin.
    command.stdin(Stdio::null());
    command.spawn()
}

/// Starts COMMAND (`argv[0]` looked up in PATH).
pub fn start_command(argv: &[String], env: &CommandEnv) -> std::io::Result<Child> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"))?;
    let mut command = env.command(program);
    command.args(args);
    command.spawn()
}

/// The exit code a shell would report: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// The exit code for a COMMAND that could not be started (as shells do).
pub fn spawn_failure_code(error: &std::io::Error) -> i32 {
    match error.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    }
}

/// Asks `child` to stop (SIGTERM), waits until `deadline`, then kills it.
/// Returns its exit status (or `None` if it could not be waited for).
pub async fn stop(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if let Some(pid) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            tracing::warn!(
                pid = child.id(),
                "killing a command that did not stop in time"
            );
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            workspace_id: uuid::Uuid::new_v4(),
            workspace_name: "ws".into(),
            owner_name: "alice".into(),
            agent_id: uuid::Uuid::new_v4(),
            agent_name: "main".into(),
            startup_script: String::new(),
        }
    }

    #[tokio::test]
    async fn exit_codes_follow_the_shell() {
        let env = CommandEnv::new(&manifest(), Path::new("/s"));
        let argv = |s: &str| vec!["sh".to_owned(), "-c".to_owned(), s.to_owned()];
        let status = start_command(&argv("exit 7"), &env)
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(exit_code(status), 7);
        let status = start_command(&argv("kill -9 $$"), &env)
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(exit_code(status), 128 + 9);
        let err = start_command(&["/no/such/program".to_owned()], &env).unwrap_err();
        assert_eq!(spawn_failure_code(&err), 127);
    }

    #[tokio::test]
    async fn stop_sends_sigterm_first() {
        let env = CommandEnv::new(&manifest(), Path::new("/s"));
        let mut child = start_command(&["sleep".to_owned(), "30".to_owned()], &env).unwrap();
        let status = stop(
            &mut child,
            Instant::now() + std::time::Duration::from_secs(20),
        )
        .await
        .unwrap();
        assert_eq!(exit_code(status), 128 + 15);
    }
}
