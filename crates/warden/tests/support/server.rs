//! `warden server` as a child process (started, stopped and started again on
//! the same port), and the `warden workspace` commands against it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::process::{BoundaryLines, WardenProcess, warden};

/// What the server prints once it serves (`docs/cli.md`).
const LISTENING: &str = "warden server listening on ";

/// A running `warden server` with its data dir (SQLite database, admin
/// token, server-url).
pub struct ServerProcess {
    pub process: WardenProcess,
    /// `http://127.0.0.1:PORT` (or `https://`), the real port.
    pub url: String,
    pub data_dir: PathBuf,
    extra_args: Vec<OsString>,
    boundary: BoundaryLines,
    /// Boundary lines printed by earlier runs of this server.
    earlier_lines: u64,
}

impl ServerProcess {
    /// Starts a server on a free loopback port with `extra_args` (e.g. TLS).
    pub async fn start(
        data_dir: &Path,
        extra_args: &[OsString],
        boundary: BoundaryLines,
    ) -> ServerProcess {
        let (process, url) = spawn(data_dir, "127.0.0.1:0", extra_args, boundary).await;
        ServerProcess {
            process,
            url,
            data_dir: data_dir.to_owned(),
            extra_args: extra_args.to_vec(),
            boundary,
            earlier_lines: 0,
        }
    }

    /// SIGTERM; asserts a clean exit.
    pub async fn stop(&mut self) {
        self.process.stop().await;
    }

    /// SIGKILL: a crash, with commits and lines in flight.
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// Starts the server again on the same address, with the same data dir
    /// (after [`ServerProcess::stop`] or a kill).
    pub async fn start_again(&mut self) {
        let listen = self
            .url
            .split_once("://")
            .map(|(_, rest)| rest.to_owned())
            .expect("a URL with a scheme");
        self.earlier_lines += self.process.boundary_lines();
        let (process, url) = spawn(&self.data_dir, &listen, &self.extra_args, self.boundary).await;
        assert_eq!(url, self.url, "the server came back on another address");
        self.process = process;
    }

    /// Boundary lines printed over every run of this server.
    pub fn boundary_lines(&self) -> u64 {
        self.earlier_lines + self.process.boundary_lines()
    }

    /// The embedded database.
    pub fn database(&self) -> PathBuf {
        self.data_dir.join("warden.db")
    }

    /// Runs `warden workspace ARGS --data-dir DIR` and returns its output.
    pub async fn workspace(&self, args: &[&str]) -> std::process::Output {
        let mut command = warden();
        command
            .arg("workspace")
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir);
        command.output().await.expect("running warden workspace")
    }

    /// `warden logs --json ARGS --data-dir DIR`: the stored records the
    /// query API returns, one JSON object each (newest first).
    pub async fn logs(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut command = warden();
        command
            .arg("logs")
            .arg("--json")
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir);
        let output = command.output().await.expect("running warden logs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "warden logs: {stderr}");
        String::from_utf8(output.stdout)
            .expect("utf-8 output")
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
            .collect()
    }

    /// `warden logs session ID` (`--json`: the report as JSON; otherwise its
    /// text), with one record.
    pub async fn session(&self, id: &str, json: bool) -> String {
        let mut command = warden();
        command
            .args(["logs", "session", id, "--limit", "1"])
            .arg("--data-dir")
            .arg(&self.data_dir);
        if json {
            command.arg("--json");
        }
        let output = command.output().await.expect("running warden logs session");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(0),
            "warden logs session: {stderr}"
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    /// The report of session `id`, as `warden logs session ID --json` prints it.
    pub async fn session_report(&self, id: &str) -> serde_json::Value {
        let text = self.session(id, true).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// `warden workspace create --json` for `name` owned by `owner`.
    pub async fn create_workspace(&self, name: &str, owner: &str, extra: &[&str]) -> Workspace {
        let mut args = vec!["create", "--name", name, "--owner", owner, "--json"];
        args.extend_from_slice(extra);
        let output = self.workspace(&args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "workspace create: {stderr}");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("workspace create printed no JSON ({e}): {stderr}"));
        let text = |key: &str| {
            json[key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key} in {json}"))
                .to_owned()
        };
        Workspace {
            id: text("workspace_id"),
            name: text("workspace_name"),
            owner: text("owner"),
            agent_name: text("agent_name"),
            token: text("agent_token"),
        }
    }
}

/// A registered workspace and its agent's token.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub agent_name: String,
    pub token: String,
}

async fn spawn(
    data_dir: &Path,
    listen: &str,
    extra_args: &[OsString],
    boundary: BoundaryLines,
) -> (WardenProcess, String) {
    let mut command = warden();
    command
        .arg("server")
        .arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(data_dir)
        // Shutdown waits for open calls; agents hold a stream open.
        .args(["--shutdown-grace", "2s"])
        .args(extra_args);
    let mut process = WardenProcess::spawn("warden server", command, boundary);
    let line = process.wait_line(LISTENING).await;
    let url = line
        .split_once(LISTENING)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .expect("a URL after the listening message")
        .to_owned();
    (process, url)
}
