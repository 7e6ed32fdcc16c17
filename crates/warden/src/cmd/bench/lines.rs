//! The server's stderr, read as it is written: its URL once it listens,
//! and each boundary line of the bench's workspace, counted and timed. A
//! line is printed after its record is committed, so the time from the
//! record's event time (set by the client when it made the record) to the
//! line's arrival here is the end-to-end latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::fmt::temporal::DateTimeParser;
use memchr::memmem;

use super::procs::lines;

/// What the server prints once it serves (`docs/cli.md`).
const LISTENING: &[u8] = b"warden server listening on ";
/// Where a boundary line's event time starts. A quoted value cannot hold an
/// unescaped quote, so this cannot match inside the URL.
static TIME_FIELD: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b" time=\""));
static TIMESTAMPS: DateTimeParser = DateTimeParser::new();

/// Shared between the reader thread and the bench.
///
/// The reader handles every boundary line the server prints (hundreds of
/// thousands per second in a saturated run) on the bench's own CPU budget,
/// so a line costs two prebuilt substring searches and one timestamp parse;
/// the clock read and the lock are per read of the pipe.
#[derive(Debug)]
pub struct ServerLines {
    url: OnceLock<String>,
    /// `workspace.id=<id> `: only this workspace's lines count.
    workspace: OnceLock<memmem::Finder<'static>>,
    printed: AtomicU64,
    /// Lines whose event time could not be read.
    untimed: AtomicU64,
    /// One instant on both clocks, so a line's arrival needs one clock read.
    base: (Instant, Timestamp),
    /// Only the reader thread locks it until the run is over.
    timed: Mutex<Timed>,
}

#[derive(Debug, Default)]
struct Timed {
    /// Event time to arrival, nanoseconds, one per line.
    latencies: Vec<u64>,
    last_line: Option<Instant>,
}

impl ServerLines {
    pub fn new() -> Arc<ServerLines> {
        Arc::new(ServerLines {
            url: OnceLock::new(),
            workspace: OnceLock::new(),
            printed: AtomicU64::new(0),
            untimed: AtomicU64::new(0),
            base: (Instant::now(), Timestamp::now()),
            timed: Mutex::default(),
        })
    }

    /// The server's URL, once it said it listens.
    pub fn url(&self) -> Option<&str> {
        self.url.get().map(String::as_str)
    }

    /// Counts only lines of this workspace from now on.
    pub fn follow(&self, workspace_id: &str) {
        let _ = self.workspace.set(
            memmem::Finder::new(format!("workspace.id={workspace_id} ").as_bytes()).into_owned(),
        );
    }

    pub fn printed(&self) -> u64 {
        self.printed.load(Ordering::Acquire)
    }

    pub fn untimed(&self) -> u64 {
        self.untimed.load(Ordering::Relaxed)
    }

    /// When the last counted line arrived.
    pub fn last_line(&self) -> Option<Instant> {
        self.timed().last_line
    }

    /// The latencies measured so far (nanoseconds), taken out.
    pub fn take_latencies(&self) -> Vec<u64> {
        std::mem::take(&mut self.timed().latencies)
    }

    fn timed(&self) -> std::sync::MutexGuard<'_, Timed> {
        self.timed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles lines of the server's stderr that one read brought
    /// ([`super::procs::read_lines`]): they arrived together, so one clock
    /// read and one lock serve them all.
    pub fn on_lines(&self, chunk: &[u8]) {
        let arrived = Timestamp::now();
        let mut latencies = Vec::new();
        let mut counted = 0;
        let mut untimed = 0;
        for line in lines(chunk) {
            if line.starts_with(b"[API] ") {
                if !self.is_followed(line) {
                    continue;
                }
                counted += 1;
                match event_time(line) {
                    Some(time) => {
                        let nanos = arrived.duration_since(time).as_nanos().max(0);
                        latencies.push(u64::try_from(nanos).unwrap_or(u64::MAX));
                    }
                    None => untimed += 1,
                }
            } else if let Some(at) = memmem::find(line, LISTENING) {
                let rest = String::from_utf8_lossy(&line[at + LISTENING.len()..]);
                if let Some(url) = rest.split_whitespace().next() {
                    let _ = self.url.set(url.to_owned());
                }
            } else if memmem::find(line, b" WARN ").is_some()
                || memmem::find(line, b" ERROR ").is_some()
            {
                eprint!("server: {}", String::from_utf8_lossy(line));
            }
        }
        if counted == 0 {
            return;
        }
        let since_base = arrived.duration_since(self.base.1);
        let arrived_at = self.base.0 + Duration::try_from(since_base).unwrap_or_default();
        let mut timed = self.timed();
        timed.latencies.append(&mut latencies);
        timed.last_line = Some(arrived_at);
        drop(timed);
        self.untimed.fetch_add(untimed, Ordering::Relaxed);
        self.printed.fetch_add(counted, Ordering::Release);
    }

    /// Whether a boundary line is of the followed workspace.
    fn is_followed(&self, line: &[u8]) -> bool {
        self.workspace
            .get()
            .is_some_and(|workspace| workspace.find(line).is_some())
    }
}

/// The `time="..."` value of a text boundary line.
fn event_time(line: &[u8]) -> Option<Timestamp> {
    let start = TIME_FIELD.find(line)? + TIME_FIELD.needle().len();
    let len = memchr::memchr(b'"', &line[start..])?;
    TIMESTAMPS.parse_timestamp(&line[start..start + len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "[API] 2025-12-08 20:58:46.093 [warn] boundary: workspace.id=6f1c0a52-8a3e-4c1f-9d7b-2b1e5e0c9a11 decision=deny http.method=\"GET\" http.url=\"https://evil.example/x time=\\\"2030-01-01T00:00:00Z\\\"\" time=\"2025-12-08T20:58:46.093456789Z\" workspace.name=\"dev\"\n";

    #[test]
    fn the_event_time_is_read_past_a_url_that_imitates_it() {
        assert_eq!(
            event_time(LINE.as_bytes()),
            Some("2025-12-08T20:58:46.093456789Z".parse().unwrap())
        );
        assert_eq!(event_time(b"[API] no time here\n"), None);
    }

    #[test]
    fn only_the_followed_workspace_counts_and_the_url_is_picked_up() {
        let lines = ServerLines::new();
        lines.on_lines(b"2026-01-01T00:00:00Z  INFO warden::cmd::server: warden server listening on http://127.0.0.1:4000\n");
        assert_eq!(lines.url(), Some("http://127.0.0.1:4000"));
        lines.on_lines(LINE.as_bytes());
        assert_eq!(lines.printed(), 0, "no workspace followed yet");
        lines.follow("6f1c0a52-8a3e-4c1f-9d7b-2b1e5e0c9a11");
        lines.on_lines(LINE.as_bytes());
        lines.on_lines(LINE.as_bytes());
        lines.on_lines(LINE.replace("6f1c0a52", "00000000").as_bytes());
        assert_eq!(lines.printed(), 2);
        assert_eq!(lines.take_latencies().len(), 2);
        assert!(lines.last_line().is_some());
    }

    #[test]
    fn lines_read_together_share_one_arrival() {
        let lines = ServerLines::new();
        lines.follow("6f1c0a52-8a3e-4c1f-9d7b-2b1e5e0c9a11");
        let later = LINE.replace("20:58:46.093456789Z", "20:58:46.094456789Z");
        let other = LINE.replace("6f1c0a52", "00000000");
        let chunk = [LINE, other.as_str(), later.as_str()].concat();
        lines.on_lines(chunk.as_bytes());
        assert_eq!(lines.printed(), 2);
        assert_eq!(lines.untimed(), 0);
        let latencies = lines.take_latencies();
        assert_eq!(latencies.len(), 2);
        // One arrival instant: the latencies differ by the event times' 1 ms.
        assert_eq!(latencies[0] - latencies[1], 1_000_000);
    }
}
