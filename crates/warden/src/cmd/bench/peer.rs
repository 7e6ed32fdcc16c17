//! The peer to measure against: rsyslog carrying the same records the same
//! way (`warden bench --compare rsyslog`).
//!
//! rsyslog is what platform teams already run to move log records off a
//! machine, so "how much faster than rsyslog" is the figure that matters.
//! The setup mirrors Warden's pipeline hop for hop:
//!
//! ```text
//! N client threads ──datagrams──► rsyslogd (sender: imuxsock, in-memory queue)
//!                                   ══RELP (window 10000)══► rsyslogd (receiver) ─► one line per record in a file
//! ```
//!
//! Each record is a syslog message of the bench's record size carrying the
//! fields of a boundary record; the run ends when the receiver's file holds a
//! line for every record. The configuration is rsyslog's fastest reliable
//! forwarding setup (RELP with a large window, a large in-memory queue, no
//! fsync anywhere), so it is faster, and less durable, than a production
//! setup with a disk-assisted queue: the comparison flatters the peer.
//! rsyslog's CPU time is read from /proc like Warden's agent and server.

use std::ffi::OsString;
use std::fs;
use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde::Serialize;

use super::procs::{Process, Usage};
use super::report::ProcessFigures;

/// How long rsyslog may take to start.
const START_LIMIT: Duration = Duration::from_secs(30);
/// The run fails when the receiver's file stops growing for this long.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// What the rsyslog run measured.
#[derive(Clone, Debug, Serialize)]
pub struct PeerReport {
    /// The peer and its setup, e.g. `rsyslog 8.2302.0, RELP window 10000`.
    pub peer: String,
    pub records: u64,
    /// First record sent to the last line written by the receiver.
    pub seconds: f64,
    pub records_per_second: f64,
    /// The forwarding rsyslogd (Warden's agent's counterpart).
    pub sender: ProcessFigures,
    /// The receiving rsyslogd (Warden's server's counterpart).
    pub receiver: ProcessFigures,
    /// The client threads of this process.
    pub clients_process: ProcessFigures,
}

/// Runs rsyslog forwarding `records` messages of `record_size` bytes sent by
/// `clients` threads, in a fresh directory under `work`.
pub fn rsyslog(
    work: &Path,
    clients: usize,
    records: u64,
    record_size: usize,
) -> anyhow::Result<PeerReport> {
    let rsyslogd = find_rsyslogd()?;
    let version = rsyslog_version(&rsyslogd);
    let dir = work.join("rsyslog");
    let (sender_dir, receiver_dir) = (dir.join("sender"), dir.join("receiver"));
    fs::create_dir_all(&sender_dir)?;
    fs::create_dir_all(&receiver_dir)?;
    let socket = sender_dir.join("in.sock");
    let out = receiver_dir.join("out.log");
    let port = free_port()?;

    fs::write(
        receiver_dir.join("rsyslog.conf"),
        receiver_config(&receiver_dir, port, &out),
    )?;
    fs::write(
        sender_dir.join("rsyslog.conf"),
        sender_config(&sender_dir, port, &socket),
    )?;

    let receiver = start(&rsyslogd, "rsyslog receiver", &receiver_dir)?;
    wait_for("the rsyslog receiver listens", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    let sender = start(&rsyslogd, "rsyslog sender", &sender_dir)?;
    wait_for("the rsyslog sender's socket", || socket.exists())?;

    eprintln!(
        "warden bench: {clients} clients sending {records} records through rsyslog (pids {} and {})",
        sender.pid(),
        receiver.pid()
    );
    let before = (sender.usage()?, receiver.usage()?, Usage::of("self")?);
    let started = Instant::now();
    send(&socket, clients, records, record_size)?;
    let last_line = wait_for_lines(&out, records)?;
    let after = (sender.usage()?, receiver.usage()?, Usage::of("self")?);
    // rsyslogd exits 0 on SIGTERM; a failure to stop is not a result.
    let _ = sender.stop(Duration::from_secs(10));
    let _ = receiver.stop(Duration::from_secs(10));

    let seconds = last_line.duration_since(started).as_secs_f64();
    Ok(PeerReport {
        peer: format!("{version}, RELP window 10000, in-memory queue, no fsync"),
        records,
        seconds,
        records_per_second: records as f64 / seconds,
        sender: ProcessFigures::new(after.0.since(before.0), records),
        receiver: ProcessFigures::new(after.1.since(before.1), records),
        clients_process: ProcessFigures::new(after.2.since(before.2), records),
    })
}

fn find_rsyslogd() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join("rsyslogd"))
        .find(|candidate| candidate.is_file())
        .context("rsyslogd is not installed; on Debian: apt-get install rsyslog rsyslog-relp")
}

/// `rsyslog 8.2302.0`, or just `rsyslog` when it does not say.
fn rsyslog_version(rsyslogd: &Path) -> String {
    std::process::Command::new(rsyslogd)
        .arg("-v")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let first = text.lines().next()?.to_owned();
            first
                .split_whitespace()
                .nth(1)
                .map(|v| format!("rsyslog {v}"))
        })
        .unwrap_or_else(|| "rsyslog".to_owned())
}

fn free_port() -> anyhow::Result<u16> {
    // Released before rsyslog binds it; another process taking it in
    // between makes the receiver fail to start, which the run reports.
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The receiving rsyslogd: RELP in, one line per message (its text only)
/// into `out`, written in large buffers.
fn receiver_config(dir: &Path, port: u16, out: &Path) -> String {
    format!(
        r#"global(workDirectory="{dir}")
module(load="imrelp")
input(type="imrelp" port="{port}" address="127.0.0.1")
template(name="text_only" type="string" string="%msg%\n")
action(type="omfile" file="{out}" template="text_only" asyncWriting="on" ioBufferSize="1m" flushOnTXEnd="off")
"#,
        dir = dir.display(),
        out = out.display(),
    )
}

/// The forwarding rsyslogd: messages from a Unix datagram socket (no rate
/// limit) into a large in-memory queue, forwarded over RELP with a window of
/// 10,000 unacknowledged messages, retried forever.
fn sender_config(dir: &Path, port: u16, socket: &Path) -> String {
    format!(
        r#"global(workDirectory="{dir}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" RateLimit.Interval="0" CreatePath="on")
module(load="omrelp")
action(type="omrelp" target="127.0.0.1" port="{port}" windowSize="10000" queue.type="LinkedList" queue.size="2000000" queue.dequeueBatchSize="1024" action.resumeRetryCount="-1")
"#,
        dir = dir.display(),
        socket = socket.display(),
    )
}

/// rsyslogd in the foreground with the config in `dir`. Its messages about
/// itself are not shown: it complains about sessions closing when it stops,
/// and a real failure shows as a receiver that never listens or a run that
/// stalls.
fn start(rsyslogd: &Path, name: &'static str, dir: &Path) -> anyhow::Result<Process> {
    let args: Vec<OsString> = vec![
        "-n".into(),
        "-f".into(),
        dir.join("rsyslog.conf").into(),
        "-i".into(),
        dir.join("rsyslogd.pid").into(),
    ];
    Process::spawn(name, rsyslogd, &args, &[], |_| {})
}

fn wait_for(what: &str, ready: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_LIMIT;
    while !ready() {
        if Instant::now() >= deadline {
            return Err(anyhow!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Sends `records` messages from `clients` threads, each its own socket.
/// A datagram socket blocks while the receiver's queue is full, so nothing
/// is dropped: the peer gets the same backpressure Warden's clients do.
fn send(socket: &Path, clients: usize, records: u64, record_size: usize) -> anyhow::Result<()> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients as u64)
            .map(|client| {
                let share = records / clients as u64 + u64::from(client < records % clients as u64);
                scope.spawn(move || send_share(socket, client, share, record_size))
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(anyhow!("a client thread panicked")))
        })
    })
}

fn send_share(socket: &Path, client: u64, records: u64, record_size: usize) -> anyhow::Result<()> {
    let out = UnixDatagram::unbound().context("a datagram socket")?;
    out.connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let mut message = Vec::with_capacity(record_size + 64);
    for n in 0..records {
        message.clear();
        write_message(&mut message, client, n, record_size);
        loop {
            match out.send(&message) {
                Ok(_) => break,
                // The kernel's buffers are full for a moment: wait, never drop.
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.raw_os_error() == Some(105) => {
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(e) => return Err(e).context("sending to rsyslog"),
            }
        }
    }
    Ok(())
}

/// A syslog message (priority user.info) carrying a boundary record's
/// fields, its URL padded so the whole message is `size` bytes.
fn write_message(buf: &mut Vec<u8>, client: u64, n: u64, size: usize) {
    use std::io::Write;
    let decision = if n.is_multiple_of(7) { "deny" } else { "allow" };
    let _ = write!(
        buf,
        "<14>boundary: workspace.id=6f1c0a52-8a3e-4c1f-9d7b-2b1e5e0c9a11 decision={decision} http.method=\"GET\" session.id=\"bench-{client}\" sequence={n} http.url=\"https://bench.example/{client}/{n}/"
    );
    let tail = b"\"";
    while buf.len() + tail.len() < size {
        buf.push(b'x');
    }
    buf.extend_from_slice(tail);
}

/// Waits until `out` holds `records` lines; returns when the last one was
/// seen. Fails when the file stops growing.
fn wait_for_lines(out: &Path, records: u64) -> anyhow::Result<Instant> {
    let mut lines = 0u64;
    let mut file = None;
    let mut buf = vec![0u8; 1 << 20];
    let mut progress = Instant::now();
    loop {
        if file.is_none() {
            file = fs::File::open(out).ok();
        }
        let read = match file.as_mut() {
            Some(f) => f.read(&mut buf).context("reading the receiver's file")?,
            None => 0,
        };
        if read > 0 {
            lines += buf[..read].iter().filter(|&&b| b == b'\n').count() as u64;
            progress = Instant::now();
            if lines >= records {
                return Ok(progress);
            }
            continue;
        }
        if progress.elapsed() > STALL_LIMIT {
            return Err(anyhow!(
                "rsyslog delivered only {lines} of {records} records, then nothing for {STALL_LIMIT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_record_size_and_one_line() {
        let mut buf = Vec::new();
        write_message(&mut buf, 3, 123_456, 200);
        assert_eq!(buf.len(), 200);
        assert!(!buf.contains(&b'\n'));
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("<14>boundary: "), "{text}");
        assert!(text.contains("sequence=123456 "), "{text}");
    }

    #[test]
    fn configs_name_the_socket_port_and_file() {
        let sender = sender_config(Path::new("/w/s"), 4242, Path::new("/w/s/in.sock"));
        assert!(sender.contains(r#"Socket="/w/s/in.sock""#));
        assert!(sender.contains(r#"port="4242" windowSize="10000""#));
        let receiver = receiver_config(Path::new("/w/r"), 4242, Path::new("/w/r/out.log"));
        assert!(receiver.contains(r#"port="4242""#));
        assert!(receiver.contains(r#"file="/w/r/out.log""#));
    }
}
