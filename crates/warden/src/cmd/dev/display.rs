//! What `warden dev` shows: the server's boundary lines as they are printed
//! (denials highlighted on a terminal), counted so the demo can wait for
//! its own lines, and the instructions for using the running pipeline.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use warden_server::LineSink;

const YELLOW: &[u8] = b"\x1b[33m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// The server's line sink in dev mode: stderr, like `warden server`, with
/// denied requests in yellow when stderr is a terminal. The lines are the
/// server's own (their values quoted, so input cannot forge or colour
/// them); only whole lines are wrapped in colour codes.
#[derive(Debug)]
pub struct Lines {
    color: bool,
    printed: AtomicU64,
    changed: Notify,
}

impl Lines {
    pub fn new(color: bool) -> Lines {
        Lines {
            color,
            printed: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    /// Boundary lines printed so far.
    pub fn printed(&self) -> u64 {
        self.printed.load(Ordering::Acquire)
    }

    /// Waits until `n` lines were printed, at most `limit`; whether they were.
    pub async fn wait_printed(&self, n: u64, limit: Duration) -> bool {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if self.printed() >= n {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    fn count(&self, lines: &[u8]) {
        let n = lines.iter().filter(|&&b| b == b'\n').count() as u64;
        self.printed.fetch_add(n, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    fn write(&self, out: &mut impl Write, lines: &[u8]) -> io::Result<()> {
        if !self.color {
            return out.write_all(lines);
        }
        for line in lines.split_inclusive(|&b| b == b'\n') {
            // `[API] <date> <time> [warn] boundary: ...`: the level comes
            // before any value taken from a record.
            let denied = line.windows(8).take(48).any(|w| w == b" [warn] ");
            if denied {
                let text = line.strip_suffix(b"\n").unwrap_or(line);
                out.write_all(YELLOW)?;
                out.write_all(text)?;
                out.write_all(RESET.as_bytes())?;
                out.write_all(&line[text.len()..])?;
            } else {
                out.write_all(line)?;
            }
        }
        Ok(())
    }
}

impl LineSink for Lines {
    fn write_lines(&self, lines: &[u8]) -> io::Result<()> {
        let mut stderr = io::stderr().lock();
        self.write(&mut stderr, lines)?;
        stderr.flush()?;
        self.count(lines);
        Ok(())
    }
}

/// A word for a POSIX shell: as is when it is plainly safe, otherwise in
/// single quotes.
pub fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// How to run this binary again from the current directory: `./target/
/// release/warden` after `cargo run`, or the absolute path.
pub fn program() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "warden".to_owned();
    };
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(|p| Path::new(".").join(p)));
    shell_word(&relative.unwrap_or(exe).to_string_lossy())
}

/// The instructions printed once the pipeline runs.
pub fn instructions(program: &str, data_dir: &Path, socket: &Path, color: bool) -> String {
    let (bold, reset) = if color { (BOLD, RESET) } else { ("", "") };
    let data_dir = shell_word(&data_dir.to_string_lossy());
    let socket = shell_word(&socket.to_string_lossy());
    let record = r#"{"allowed": false, "method": "GET", "url": "https://example.com/"}"#;
    format!(
        "\n{bold}The pipeline keeps running; Ctrl-C stops it.{reset}\n\
         \n\
         Query the stored records:\n\
         \x20   {program} logs --data-dir {data_dir}\n\
         \x20   {program} logs --data-dir {data_dir} --decision deny --json\n\
         \n\
         Point your own sandbox at the agent's socket (the variable every\n\
         command the agent starts gets), or send a record by hand:\n\
         \x20   export CODER_BOUNDARY_LOG_SOCKET={socket}\n\
         \x20   echo '{record}' | {program} emit\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_lines_are_coloured_whole_and_counted() {
        let lines = Lines::new(true);
        let input = b"[API] 2025-12-08 20:58:46.093 [warn] boundary: decision=deny http.url=\"x [warn] \"\n\
                      [API] 2025-12-08 20:58:46.093 [info] boundary: decision=allow http.url=\" [warn] \"\n";
        let mut out = Vec::new();
        lines.write(&mut out, input).unwrap();
        let text = String::from_utf8(out).unwrap();
        let shown: Vec<&str> = text.lines().collect();
        assert!(shown[0].starts_with("\x1b[33m[API]"), "{text:?}");
        assert!(shown[0].ends_with("\x1b[0m"), "{text:?}");
        // A URL cannot make an allowed line look denied.
        assert!(shown[1].starts_with("[API]"), "{text:?}");

        let plain = Lines::new(false);
        let mut out = Vec::new();
        plain.write(&mut out, input).unwrap();
        assert_eq!(out, input);
    }

    #[tokio::test]
    async fn waiting_for_lines_ends_when_they_are_printed_or_at_the_limit() {
        let lines = std::sync::Arc::new(Lines::new(false));
        assert!(!lines.wait_printed(1, Duration::from_millis(10)).await);
        let writer = std::sync::Arc::clone(&lines);
        let wait =
            tokio::spawn(async move { lines.wait_printed(2, Duration::from_secs(30)).await });
        writer.count(b"one\n");
        writer.count(b"two\n");
        assert!(wait.await.unwrap());
        assert_eq!(writer.printed(), 2);
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("./warden-dev"), "./warden-dev");
        assert_eq!(shell_word("/tmp/my dir"), "'/tmp/my dir'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn the_instructions_name_the_data_dir_and_the_socket() {
        let text = instructions(
            "./target/release/warden",
            Path::new("./warden-dev"),
            Path::new("/tmp/w/boundary.sock"),
            false,
        );
        assert!(text.contains("./target/release/warden logs --data-dir ./warden-dev\n"));
        assert!(text.contains("export CODER_BOUNDARY_LOG_SOCKET=/tmp/w/boundary.sock\n"));
        assert!(text.contains("| ./target/release/warden emit\n"));
    }
}
