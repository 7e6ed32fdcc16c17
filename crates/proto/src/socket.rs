//! A Unix stream for the boundary socket that asks the reactor for
//! readability only, so that the other end reading does not wake this one.
//!
//! Why not `tokio::net::UnixStream`: tokio registers every stream for both
//! readability and writability, edge-triggered. Linux wakes a Unix socket's
//! pollers for "writable" every time the peer *reads* (`unix_write_space`
//! runs whenever a sent buffer is freed), so each frame the agent reads
//! wakes the client's runtime, and each acknowledgement the client reads
//! wakes the agent's, with nothing to do. At 10,000 records/s that was a
//! tenth of the agent's `epoll_wait` returns and a third of the bench
//! clients' (`strace -e epoll_wait`, `docs/benchmarks.md`).
//!
//! Here the stream is registered for readability only. A write goes
//! straight to the socket; only when the socket's buffer is full does the
//! writing half register a duplicate of the descriptor for writability and
//! wait on it, and it drops that registration again once writes go through
//! without blocking for a while (a full buffer is rare on the agent's side;
//! a client writing faster than the agent reads keeps it).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Most bytes one read takes.
const MAX_READ: usize = 64 * 1024;

thread_local! {
    /// Where reads land before they are copied into the caller's buffer.
    /// Reading straight into a caller's uninitialised memory needs `unsafe`
    /// (kept here to the one registration call below); zeroing it first
    /// would cost a memset of its whole spare capacity per read. One zeroed
    /// buffer per thread costs a copy of only the bytes read, and nothing
    /// per connection.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_READ].into_boxed_slice());
}

/// A connected stream registered for readability only.
#[derive(Debug)]
pub struct QuietStream {
    fd: Arc<AsyncFd<UnixStream>>,
}

impl QuietStream {
    /// Takes over a connected, non-blocking standard stream. Must be called
    /// inside a tokio runtime.
    pub fn new(stream: UnixStream) -> io::Result<QuietStream> {
        stream.set_nonblocking(true)?;
        let fd = register(stream, Interest::READABLE)?;
        Ok(QuietStream { fd: Arc::new(fd) })
    }

    /// Takes over a tokio stream (out of its registration, into this one).
    pub fn from_tokio(stream: tokio::net::UnixStream) -> io::Result<QuietStream> {
        QuietStream::new(stream.into_std()?)
    }

    /// The reading and the writing half, usable from different tasks.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (
            ReadHalf {
                fd: Arc::clone(&self.fd),
            },
            WriteHalf {
                fd: self.fd,
                writable: None,
                through: 0,
            },
        )
    }
}

/// The reading half of a [`QuietStream`].
#[derive(Debug)]
pub struct ReadHalf {
    fd: Arc<AsyncFd<UnixStream>>,
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let want = buf.remaining().min(MAX_READ);
        loop {
            let mut ready = ready!(self.fd.poll_read_ready(cx))?;
            let read = SCRATCH.with_borrow_mut(|scratch| {
                let into = &mut scratch[..want];
                let read = ready.try_io(|fd| {
                    let mut socket = fd.get_ref();
                    socket.read(into)
                });
                if let Ok(Ok(n)) = read {
                    buf.put_slice(&into[..n]);
                }
                read
            });
            match read {
                Ok(Ok(n)) => {
                    if n > 0 && n < want {
                        // A short read emptied the socket: wait for the next
                        // event instead of a read that would only say so (as
                        // tokio's own streams do).
                        ready.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Not readable after all: readiness was cleared, wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

/// The writing half of a [`QuietStream`]. Dropping it ends the writing
/// direction (the peer reads the end of the stream), as dropping tokio's
/// `OwnedWriteHalf` does; the reading half may go on reading.
#[derive(Debug)]
pub struct WriteHalf {
    fd: Arc<AsyncFd<UnixStream>>,
    /// A duplicate descriptor registered for writability since a write
    /// blocked; `None` while writes go through.
    writable: Option<AsyncFd<UnixStream>>,
    /// Writes through since the last that blocked.
    through: u32,
}

/// Writes that go through without blocking before the writability
/// registration is dropped again. A peer that keeps the buffer full (a
/// client writing faster than the agent reads) keeps it, rather than
/// registering and dropping a descriptor for every write.
const QUIET_AFTER: u32 = 64;

impl WriteHalf {
    /// Writes with `op` (which writes at most `len` bytes) once the socket
    /// takes bytes, waiting for writability on a duplicate registration
    /// after a write blocked.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        mut op: impl FnMut(&UnixStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            if let Some(writable) = &self.writable {
                let mut ready = ready!(writable.poll_write_ready(cx))?;
                let socket = self.fd.get_ref();
                match ready.try_io(|_| op(socket)) {
                    Ok(result) => {
                        if matches!(result, Ok(n) if n < len) {
                            // A short write filled the buffer: wait for
                            // room rather than try again at once.
                            ready.clear_ready();
                        }
                        self.through += 1;
                        if self.through >= QUIET_AFTER {
                            self.writable = None;
                        }
                        return Poll::Ready(result);
                    }
                    // Still full: readiness was cleared, wait again.
                    Err(_would_block) => {
                        self.through = 0;
                        continue;
                    }
                }
            }
            match op(self.fd.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Edge-triggered, but registering reports the current
                    // state, so a buffer drained since the write is not
                    // missed.
                    let dup = self.fd.get_ref().try_clone()?;
                    self.writable = Some(register(dup, Interest::WRITABLE)?);
                    self.through = 0;
                }
                result => return Poll::Ready(result),
            }
        }
    }
}

impl Drop for WriteHalf {
    fn drop(&mut self) {
        // Fails only if the connection is gone already.
        let _ = self.fd.get_ref().shutdown(Shutdown::Write);
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, buf.len(), |mut s| s.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.get_mut()
            .poll_write_with(cx, len, |mut s| s.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing is buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.fd.get_ref().shutdown(Shutdown::Write))
    }
}

/// Registers `stream` with the current runtime's reactor for `interest`.
#[allow(unsafe_code)]
fn register(stream: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
    // SAFETY: tokio asks that the descriptor stay open, and be the same, for
    // as long as the `AsyncFd` lives. It belongs to `stream`, which the
    // `AsyncFd` owns from here on and closes only when it is dropped (after
    // deregistering); nothing here takes the stream out or swaps it
    // (`AsyncFd::get_mut`/`into_inner` are never called).
    unsafe { AsyncFd::register_with_interest(stream, interest) }.map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsRawFd;
    use std::pin::pin;

    use futures::poll;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const EPOLLIN: u32 = 0x1;
    const EPOLLOUT: u32 = 0x4;

    /// The event masks of every epoll registration of the socket behind
    /// `fd` in this process (by inode, so duplicate descriptors count), from
    /// `/proc/self/fdinfo` of each epoll descriptor (one registration per
    /// registered descriptor: mio keeps a duplicate of its epoll
    /// descriptor, which lists the same ones).
    fn registrations(fd: i32) -> Vec<u32> {
        let inode = std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino();
        let mut masks = std::collections::BTreeMap::new();
        for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
            let path = entry.unwrap().path();
            let is_epoll = std::fs::read_link(&path)
                .is_ok_and(|target| target.to_string_lossy() == "anon_inode:[eventpoll]");
            if !is_epoll {
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{name}")) else {
                continue;
            };
            for line in info.lines().filter(|l| l.starts_with("tfd:")) {
                let field = |key: &str| {
                    let mut words = line.split_whitespace();
                    words.find(|w| *w == key)?;
                    words.next().map(str::to_owned)
                };
                let ino = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("ino:"))
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok());
                if ino == Some(inode) {
                    let fd: i32 = field("tfd:").unwrap().parse().unwrap();
                    let events = u32::from_str_radix(&field("events:").unwrap(), 16).unwrap();
                    masks.insert(fd, events);
                }
            }
        }
        masks.into_values().collect()
    }

    fn pair() -> (QuietStream, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        (QuietStream::new(ours).unwrap(), theirs)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn only_writes_that_block_listen_for_writability() {
        let (ours, theirs) = pair();
        let fd = ours.fd.as_raw_fd();
        let masks = registrations(fd);
        assert_eq!(masks.len(), 1, "{masks:x?}");
        assert_eq!(masks[0] & (EPOLLIN | EPOLLOUT), EPOLLIN, "{masks:x?}");

        let (_read, mut write) = ours.into_split();
        // Far more than a socket buffer holds: the write blocks until the
        // peer reads.
        let sent: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut writing = pin!(write.write_all(&sent));
        assert!(poll!(&mut writing).is_pending());
        let masks = registrations(fd);
        assert_eq!(masks.len(), 2, "{masks:x?}");
        assert!(masks.iter().any(|m| m & EPOLLOUT != 0), "{masks:x?}");

        let length = sent.len();
        let reader = std::thread::spawn(move || {
            let mut theirs = theirs;
            let mut got = vec![0; length];
            theirs.read_exact(&mut got).unwrap();
            (theirs, got)
        });
        writing.await.unwrap();
        let (mut theirs, got) = reader.join().unwrap();
        assert!(got == sent, "the bytes arrived changed");

        // Writes that blocked lately keep the registration (no churn while
        // the peer is slow); enough writes going through end it.
        assert_eq!(registrations(fd).len(), 2);
        for _ in 0..QUIET_AFTER {
            write.write_all(b"x").await.unwrap();
        }
        let masks = registrations(fd);
        assert_eq!(masks.len(), 1, "{masks:x?}");
        assert_eq!(masks[0] & EPOLLOUT, 0, "{masks:x?}");
        let mut small = vec![0; QUIET_AFTER as usize];
        theirs.read_exact(&mut small).unwrap();
        assert!(small.iter().all(|&b| b == b'x'));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_write_blocked_on_a_peer_that_goes_away_fails_instead_of_hanging() {
        let (ours, theirs) = pair();
        let (_read, mut write) = ours.into_split();
        let sent = vec![1u8; 4 << 20];
        let mut writing = pin!(write.write_all(&sent));
        assert!(poll!(&mut writing).is_pending());
        drop(theirs);
        let error = writing.await.unwrap_err();
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{error:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reads_bring_every_byte_in_order_then_the_end() {
        let (ours, mut theirs) = pair();
        let (mut read, _write) = ours.into_split();
        // More than one read's worth, in uneven pieces.
        let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let expected = sent.clone();
        let writer = std::thread::spawn(move || {
            for piece in sent.chunks(7_777) {
                theirs.write_all(piece).unwrap();
            }
        });
        let mut got = Vec::new();
        read.read_to_end(&mut got).await.unwrap();
        writer.join().unwrap();
        assert!(
            got == expected,
            "{} bytes read, {} sent",
            got.len(),
            expected.len()
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropping_the_writing_half_ends_only_that_direction() {
        let (ours, mut theirs) = pair();
        let (mut read, write) = ours.into_split();
        drop(write);
        let mut rest = Vec::new();
        theirs.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());

        theirs.write_all(b"still read").unwrap();
        drop(theirs);
        let mut got = Vec::new();
        read.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"still read");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_shut_down_writing_half_sends_its_bytes_then_the_end() {
        let (ours, mut theirs) = pair();
        let (_read, mut write) = ours.into_split();
        write.write_all(b"last words").await.unwrap();
        write.shutdown().await.unwrap();
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"last words");
    }
}
