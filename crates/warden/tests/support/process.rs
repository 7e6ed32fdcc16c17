//! A `warden` child process with its stderr read line by line, so a test can
//! wait for what the process says (readiness lines, errors) with a deadline
//! instead of sleeping, and show everything it said when an assertion fails.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::WAIT;

/// Lines a failure message shows.
const SHOWN_LINES: usize = 400;
/// How long the rest of stderr is read once the process exited.
const STDERR_AFTER_EXIT: Duration = Duration::from_secs(5);

/// Whether a variable of the surrounding shell would change what a
/// `warden` child does (every flag reads one); every child starts without
/// them.
fn is_setting(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with("WARDEN_") || name.starts_with("CODER_") || name == "RUST_LOG"
}

/// `warden` (the binary under test) with a clean environment.
pub fn warden() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
    for (name, _) in std::env::vars_os().filter(|(name, _)| is_setting(name)) {
        command.env_remove(name);
    }
    command.env("WARDEN_LOG", "info");
    command
}

/// What to do with the server's boundary lines (they start with `[API] `).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoundaryLines {
    /// Deliver them like any other line.
    Keep,
    /// Only count them (a long test would otherwise hold them all).
    Count,
}

/// A running `warden` subcommand.
pub struct WardenProcess {
    pub name: String,
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    boundary_lines: Arc<AtomicU64>,
    /// Every line read so far.
    seen: Vec<String>,
}

impl WardenProcess {
    /// Starts `command` with its stderr captured (and its stdin piped, so a
    /// COMMAND run by an agent can be told when to finish).
    pub fn spawn(name: &str, mut command: Command, boundary: BoundaryLines) -> WardenProcess {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::unbounded_channel();
        let boundary_lines = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&boundary_lines);
        let mut reader = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                if line.starts_with("[API] ") {
                    counter.fetch_add(1, Ordering::Relaxed);
                    if boundary == BoundaryLines::Count {
                        continue;
                    }
                }
                let _ = tx.send(line);
            }
        });
        WardenProcess {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            boundary_lines,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is still running")
    }

    /// Boundary lines printed so far (kept or not).
    pub fn boundary_lines(&self) -> u64 {
        self.boundary_lines.load(Ordering::Relaxed)
    }

    fn remember(&mut self, line: &str) {
        self.seen.push(line.to_owned());
    }

    /// The next stderr line, `None` once stderr closed.
    pub async fn next_line(&mut self) -> Option<String> {
        let line = tokio::time::timeout(WAIT, self.lines.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("{} said nothing for {WAIT:?}:\n{}", self.name, self.log())
            })?;
        self.remember(&line);
        Some(line)
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub async fn wait_line(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.remember(&line);
                    if line.contains(needle) {
                        return line;
                    }
                }
                Ok(None) => panic!(
                    "{} ended its stderr before {needle:?}:\n{}",
                    self.name,
                    self.log()
                ),
                Err(_) => panic!("no {needle:?} from {}:\n{}", self.name, self.log()),
            }
        }
    }

    /// The last lines read, for failure messages.
    pub fn log(&self) -> String {
        let from = self.seen.len().saturating_sub(SHOWN_LINES);
        self.seen[from..].join("\n")
    }

    /// Every line read so far, after reading those that already arrived.
    pub fn lines(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.remember(&line);
        }
        &self.seen
    }

    /// Writes a line to the process's stdin.
    pub async fn say(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        let written = async {
            stdin.write_all(text.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        }
        .await;
        if let Err(e) = written {
            panic!("writing to {}'s stdin: {e}\n{}", self.name, self.log());
        }
    }

    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.pid() as i32).expect("a positive pid");
        kill_process(pid, signal).unwrap_or_else(|e| panic!("signalling {}: {e}", self.name));
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        self.signal(Signal::TERM);
    }

    /// SIGKILL, then waits until the process is gone (so its sockets are
    /// closed when this returns).
    pub async fn kill(&mut self) {
        self.signal(Signal::KILL);
        assert_eq!(
            self.exit().await,
            None,
            "{} was killed by a signal",
            self.name
        );
    }

    /// Waits for the process to exit; its exit code (`None`: a signal). The
    /// rest of its stderr is read first, so `log()` shows all of it.
    pub async fn exit(&mut self) -> Option<i32> {
        self.exit_within(WAIT).await
    }

    /// [`exit`](Self::exit) for a process given `wait` to finish its work
    /// (an agent draining a large spool on a loaded machine).
    pub async fn exit_within(&mut self, wait: Duration) -> Option<i32> {
        let status = tokio::time::timeout(wait, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit:\n{}", self.name, self.log()))
            .unwrap();
        // A child of the process (an agent's COMMAND) may keep stderr open
        // longer; what it says after this is not waited for.
        let rest = tokio::time::Instant::now() + STDERR_AFTER_EXIT;
        while let Ok(Some(line)) = tokio::time::timeout_at(rest, self.lines.recv()).await {
            self.remember(&line);
        }
        status.code()
    }

    /// SIGTERM and a clean exit (code 0).
    pub async fn stop(&mut self) {
        self.terminate();
        let code = self.exit().await;
        assert_eq!(code, Some(0), "{} exit code:\n{}", self.name, self.log());
    }
}
