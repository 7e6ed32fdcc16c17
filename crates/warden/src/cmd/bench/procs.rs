//! The agent and the server as child processes of the bench (so their CPU
//! time and memory are theirs alone), their stderr read by a thread each,
//! and their resource use read from /proc.

use std::ffi::OsString;
use std::io::{ErrorKind, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow};
use rustix::process::{Pid, Signal, kill_process};

/// A running child and the thread reading its stderr.
pub struct Process {
    pub name: &'static str,
    child: Child,
    reader: Option<JoinHandle<()>>,
}

impl Process {
    /// Starts `program args` with `envs`; its stderr goes to `on_lines` on a
    /// thread of its own, as the whole lines each read brought (see
    /// [`read_lines`]).
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[OsString],
        envs: &[(&str, String)],
        on_lines: impl FnMut(&[u8]) + Send + 'static,
    ) -> anyhow::Result<Process> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting the {name}"))?;
        let stderr = child.stderr.take().context("the child's stderr")?;
        let reader = std::thread::Builder::new()
            .name(format!("{name}-stderr"))
            .spawn(move || read_lines(stderr, on_lines))
            .context("starting a reader thread")?;
        Ok(Process {
            name,
            child,
            reader: Some(reader),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time and peak memory so far.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        Usage::of(&self.child.id().to_string())
            .with_context(|| format!("reading the {}'s /proc entries", self.name))
    }

    /// Whether the process has exited (its code, `None` for a signal).
    pub fn exited(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().ok().flatten().map(|s| s.code())
    }

    /// SIGTERM, then waits up to `limit` for a clean exit; kills it after.
    pub fn stop(mut self, limit: Duration) -> anyhow::Result<()> {
        let pid = Pid::from_raw(self.child.id() as i32).context("a positive pid")?;
        // It may be gone already; waiting below tells.
        let _ = kill_process(pid, Signal::TERM);
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break Some(status);
            }
            if std::time::Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let result = match status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(anyhow!("the {} exited with {status}", self.name)),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(anyhow!(
                    "the {} did not stop within {limit:?}; killed",
                    self.name
                ))
            }
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        result
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A bench that failed halfway leaves nothing running.
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Most bytes one read takes; a longer line is handed over in pieces.
const READ_BYTES: usize = 1 << 20;

/// Reads `input` to its end, handing `on_lines` the complete lines of each
/// read (and, at the end, a last line without its newline) in place.
///
/// Why not `BufRead::read_until` per line: the server's reader sees every
/// boundary line of a saturated run on the clients process's CPU budget,
/// and a copy, a clock read and a lock per line were about a quarter of
/// that thread's CPU. Lines that came in one read also arrived at one
/// instant, which is what the latency wants.
pub fn read_lines(mut input: impl Read, mut on_lines: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; READ_BYTES];
    // Bytes in `buf` of a line not yet complete.
    let mut partial = 0;
    loop {
        if partial == buf.len() {
            on_lines(&buf);
            partial = 0;
        }
        let read = match input.read(&mut buf[partial..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let filled = partial + read;
        match memchr::memrchr(b'\n', &buf[partial..filled]) {
            Some(at) => {
                let end = partial + at + 1;
                on_lines(&buf[..end]);
                buf.copy_within(end..filled, 0);
                partial = filled - end;
            }
            None => partial = filled,
        }
    }
    if partial > 0 {
        on_lines(&buf[..partial]);
    }
}

/// The lines of what [`read_lines`] handed over, each with its newline
/// (the last one may have none).
pub fn lines(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', chunk);
    std::iter::from_fn(move || {
        let end = match ends.next() {
            Some(at) => at + 1,
            None if start < chunk.len() => chunk.len(),
            None => return None,
        };
        let line = &chunk[start..end];
        start = end;
        Some(line)
    })
}

/// A process's resource use.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// User plus system CPU time.
    pub cpu: Duration,
    /// Peak resident set size (VmHWM), bytes.
    pub peak_rss: u64,
}

impl Usage {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (`pid` may be
    /// `self`).
    pub fn of(pid: &str) -> anyhow::Result<Usage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Ok(Usage {
            cpu: cpu_time(&stat, rustix::param::clock_ticks_per_second())?,
            peak_rss: peak_rss(&status)?,
        })
    }

    /// CPU time spent since `earlier` (the peak stays the peak).
    pub fn since(self, earlier: Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            peak_rss: self.peak_rss,
        }
    }
}

/// utime + stime from `/proc/<pid>/stat`: fields 14 and 15, counted after
/// the command name, which is in parentheses and may hold spaces.
fn cpu_time(stat: &str, ticks_per_second: u64) -> anyhow::Result<Duration> {
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no command name in /proc/<pid>/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (the state).
    let tick = |field: usize| -> anyhow::Result<u64> {
        fields
            .get(field - 3)
            .context("/proc/<pid>/stat is short")?
            .parse()
            .context("a tick count in /proc/<pid>/stat")
    };
    let ticks = tick(14)? + tick(15)?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / ticks_per_second.max(1) as f64,
    ))
}

/// VmHWM from `/proc/<pid>/status`, in bytes.
fn peak_rss(status: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM in /proc/<pid>/status")?;
    let kib: u64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .context("VmHWM is not a number of kB")?;
    Ok(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives its bytes `step` at a time, as a pipe may.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(out.len()).min(self.bytes.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn reads_hand_over_whole_lines_whatever_the_pipe_cuts() {
        let text = b"first line\nsecond\n\nthird, longer than a read\nno newline at the end";
        for step in [1, 3, 7, 64] {
            let mut chunks = Vec::new();
            read_lines(Trickle { bytes: text, step }, |chunk| {
                chunks.push(chunk.to_vec())
            });
            assert_eq!(chunks.concat(), text, "step {step}");
            let (last, whole) = chunks.split_last().unwrap();
            for chunk in whole {
                assert_eq!(chunk.last(), Some(&b'\n'), "step {step}: {chunk:?}");
            }
            assert_eq!(last.as_slice(), b"no newline at the end", "step {step}");
            let lines: Vec<&[u8]> = chunks.iter().flat_map(|c| lines(c)).collect();
            assert_eq!(
                lines,
                [
                    &b"first line\n"[..],
                    b"second\n",
                    b"\n",
                    b"third, longer than a read\n",
                    b"no newline at the end"
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_line_longer_than_a_read_buffer_comes_in_pieces_and_whole() {
        let mut text = vec![b'x'; READ_BYTES + 10];
        text.extend_from_slice(b"\nnext\n");
        let mut chunks = Vec::new();
        read_lines(&text[..], |chunk| chunks.push(chunk.to_vec()));
        assert!(chunks.len() >= 2, "{} chunks", chunks.len());
        assert_eq!(chunks.concat(), text);
    }

    #[test]
    fn an_empty_stream_hands_over_nothing() {
        let mut calls = 0;
        read_lines(&b""[..], |_| calls += 1);
        assert_eq!(calls, 0);
        assert_eq!(lines(b"").count(), 0);
    }

    #[test]
    fn proc_fields_are_read_after_the_command_name() {
        let stat = "4242 (tokio-rt (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 130 0 0 20 0 3 0";
        assert_eq!(cpu_time(stat, 100).unwrap(), Duration::from_millis(3800));
        let status = "Name:\twarden\nVmPeak:\t  900 kB\nVmHWM:\t    35480 kB\nVmRSS:\t 30000 kB\n";
        assert_eq!(peak_rss(status).unwrap(), 35480 * 1024);
        assert!(cpu_time("garbage", 100).is_err());
        assert!(peak_rss("Name: x\n").is_err());
    }

    #[test]
    fn this_process_can_be_measured() {
        let usage = Usage::of("self").unwrap();
        assert!(usage.peak_rss > 0);
    }
}
