//! Helpers shared by the binary's process tests (`crates/warden/tests/*.rs`):
//!
//! - [`process`]: a `warden` child process whose stderr is read line by line
//!   (wait for a line with a deadline, signals, exit codes);
//! - [`server`]: `warden server` started, stopped and started again on the
//!   same port, and the `warden workspace` commands;
//! - [`agent`]: `warden agent` runs for a control plane;
//! - [`store`]: what the server stored, read from its SQLite file;
//! - [`agent_support`]: the agent crate's test support (the scripted fake
//!   control plane and the raw socket clients), shared rather than copied.
#![allow(dead_code)]

pub mod agent;
#[path = "../../../agent/tests/support/mod.rs"]
pub mod agent_support;
pub mod origin;
pub mod process;
pub mod server;
pub mod store;

use std::path::PathBuf;
use std::time::Duration;

/// How long a test waits for a condition before it fails. Generous: the
/// binaries are debug builds and the machine is shared.
pub const WAIT: Duration = Duration::from_secs(60);

/// A temporary directory laid out for one test.
pub struct Dirs {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub server: PathBuf,
    pub agent: PathBuf,
    pub socket: PathBuf,
}

pub fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    Dirs {
        server: root.join("server"),
        agent: root.join("agent"),
        socket: root.join("boundary.sock"),
        root,
        _tmp: tmp,
    }
}

/// Polls `condition` until it holds, failing after [`WAIT`] with `what`.
/// For conditions on state outside the test process (a database), which
/// offer nothing to wait on.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    loop {
        interval.tick().await;
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
    }
}
