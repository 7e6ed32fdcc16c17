//! Carrying a decided tunnel's bytes both ways.
//!
//! Between two TCP sockets (an HTTP/1.1 CONNECT: the client's stream is
//! taken back from the HTTP server), each direction reads into a buffer and
//! writes what it read: two system calls per message, since a short read
//! tells tokio the socket is drained and no third call finds it empty. When
//! a read fills the buffer, a bulk transfer is under way, and on Linux that
//! direction then moves its bytes with splice(2) through a pipe of its own
//! (socket to pipe to socket, never copied through this process) for as
//! long as transfers stay large; a small one sends it back to the buffer.
//!
//! When each path is used:
//! - splice: Linux, both ends TCP sockets, bulk transfers;
//! - the buffer: small messages; any transfer on other systems; a
//!   direction whose pipe cannot be made or whose splice the kernel refuses
//!   (it falls back without losing a byte);
//! - [`copy`] (tokio's `copy_bidirectional`): a client end that is not a
//!   TCP socket of ours (a CONNECT over HTTP/2, a connection hyper-util's
//!   automatic server wrapped).
//!
//! End of stream on one side shuts down the other side's write half and
//! that direction ends; the other goes on (half-close passes through). An
//! error on either side ends both.
//!
//! TCP tunnels run on [`Relays`]: threads of their own, each a
//! single-threaded event loop (as squid's). A relayed message is little
//! work (a read and a write); on the proxy's multi-threaded runtime its
//! wake-ups also woke idle workers to steal it, which cost more CPU than
//! the message itself.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The buffer of each direction; a read that fills it switches that
/// direction to splice(2) where it can.
pub(crate) const BUFFER: usize = 16 * 1024;

/// Threads that run tunnels, each a single-threaded tokio runtime; they
/// stop (dropping their tunnels) when this is dropped.
pub(crate) struct Relays {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Dropping these ends the threads.
    _stops: Vec<oneshot::Sender<()>>,
}

impl Relays {
    /// `count` relay threads (at least one); `None` when no thread or
    /// runtime can be made (tunnels then run on the caller's runtime).
    pub(crate) fn start(count: usize) -> Option<Relays> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for index in 0..count.max(1) {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::warn!(%error, "no tunnel relay runtime: tunnels share the proxy's");
                    return None;
                }
            };
            let (stop, stopped) = oneshot::channel::<()>();
            handles.push(runtime.handle().clone());
            let spawned = std::thread::Builder::new()
                .name(format!("warden-relay-{index}"))
                .spawn(move || {
                    let _ = runtime.block_on(stopped);
                    // Dropped here, on its own thread (never inside another
                    // runtime): its tunnels are closed.
                    drop(runtime);
                });
            if let Err(error) = spawned {
                tracing::warn!(%error, "no tunnel relay thread: tunnels share the proxy's runtime");
                return None;
            }
            stops.push(stop);
        }
        Some(Relays {
            handles,
            next: AtomicUsize::new(0),
            _stops: stops,
        })
    }

    /// The number of relay threads to start: one per two cores (the
    /// proxy's runtime keeps the others), at most four.
    pub(crate) fn default_count() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / 2).clamp(1, 4)
    }

    /// Runs `task` on the next relay thread.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[index].spawn(task);
    }
}

/// Bytes carried each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Carried {
    /// Client to origin.
    pub(crate) up: u64,
    /// Origin to client.
    pub(crate) down: u64,
    /// Of those, bytes moved by splice(2).
    pub(crate) spliced: u64,
}

/// Relays between two TCP sockets until both directions have ended (on
/// the current runtime: the sockets must be registered with it).
pub(crate) async fn tcp(client: &TcpStream, origin: &TcpStream) -> io::Result<Carried> {
    let (up, down) = tokio::try_join!(one_way(client, origin), one_way(origin, client))?;
    Ok(Carried {
        up: up.total,
        down: down.total,
        spliced: up.spliced + down.spliced,
    })
}

/// Relays between any two byte streams (tokio's copy, both ways).
pub(crate) async fn copy<A, B>(client: &mut A, origin: &mut B) -> io::Result<Carried>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let (up, down) =
        tokio::io::copy_bidirectional_with_sizes(client, origin, BUFFER, BUFFER).await?;
    Ok(Carried {
        up,
        down,
        spliced: 0,
    })
}

/// What one direction carried.
#[derive(Default)]
struct Way {
    total: u64,
    spliced: u64,
}

/// Carries `from`'s bytes to `to` until `from` ends, then shuts down
/// `to`'s write half.
async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<Way> {
    let mut way = Way::default();
    let mut buf = vec![0u8; BUFFER].into_boxed_slice();
    #[cfg(target_os = "linux")]
    let mut splicer = splice::Lazy::default();
    let mut bulk = false;
    loop {
        #[cfg(target_os = "linux")]
        if bulk && let Some(pipe) = splicer.get() {
            match pipe.transfer(from, to).await {
                Ok(0) => break,
                Ok(n) => {
                    way.total += n as u64;
                    way.spliced += n as u64;
                    bulk = n >= BUFFER;
                    continue;
                }
                Err(splice::Error::Refused { delivered }) => {
                    way.total += delivered as u64;
                    splicer.give_up();
                    continue;
                }
                Err(splice::Error::Io(error)) => return Err(error),
            }
        }
        let n = read(from, &mut buf).await?;
        if n == 0 {
            break;
        }
        write_all(to, &buf[..n]).await?;
        way.total += n as u64;
        bulk = n == BUFFER;
    }
    match rustix::net::shutdown(to, rustix::net::Shutdown::Write) {
        // The peer may be gone already: nothing left to tell it.
        Ok(()) | Err(rustix::io::Errno::NOTCONN) => Ok(way),
        Err(error) => Err(error.into()),
    }
}

/// Reads what `from` has (waiting for something); 0 at end of stream.
///
/// A short read clears the socket's readiness (as tokio's own `read` does
/// under epoll): the buffer took all there was, so the next read waits for
/// the next edge instead of asking the kernel in vain.
pub(crate) async fn read(from: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        from.readable().await?;
        let mut got = None;
        let attempt = from.try_io(Interest::READABLE, || {
            let n = rustix::io::read(from, &mut *buf)?;
            got = Some(n);
            if n > 0 && n < buf.len() {
                // Drained: clear readiness (the count is in `got`).
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match (attempt, got) {
            (Ok(n), _) => return Ok(n),
            (Err(_), Some(n)) => return Ok(n),
            (Err(error), None) if error.kind() == io::ErrorKind::WouldBlock => continue,
            (Err(error), None) => return Err(error),
        }
    }
}

/// Writes all of `bytes` to `to`.
pub(crate) async fn write_all(to: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = to
            .async_io(Interest::WRITABLE, || {
                Ok(rustix::net::send(
                    to,
                    bytes,
                    rustix::net::SendFlags::NOSIGNAL,
                )?)
            })
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

#[cfg(target_os = "linux")]
mod splice {
    //! One direction's pipe and its splice(2) calls.

    use std::io;
    use std::os::fd::OwnedFd;

    use rustix::io::Errno;
    use rustix::pipe::{PipeFlags, SpliceFlags};
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Most bytes asked of the socket per transfer (the pipe's default
    /// capacity).
    const CHUNK: usize = 64 * 1024;

    /// Why a transfer failed.
    pub(super) enum Error {
        /// The kernel does not splice these (or a sandbox forbids it); no
        /// byte was lost (`delivered` of them went the plain way): use the
        /// buffer.
        Refused {
            /// Bytes this transfer delivered.
            delivered: usize,
        },
        /// The connection failed.
        Io(io::Error),
    }

    /// A pipe made on first use; once it cannot be made or used, never
    /// again.
    #[derive(Default)]
    pub(super) enum Lazy {
        #[default]
        Unmade,
        Made(Pipe),
        Unusable,
    }

    impl Lazy {
        /// The pipe, made now if need be; `None` when splicing is off.
        pub(super) fn get(&mut self) -> Option<&mut Pipe> {
            if let Lazy::Unmade = self {
                *self = match rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK) {
                    Ok((read, write)) => Lazy::Made(Pipe { read, write }),
                    Err(error) => {
                        tracing::debug!(%error, "no pipe for splice: copying instead");
                        Lazy::Unusable
                    }
                };
            }
            match self {
                Lazy::Made(pipe) => Some(pipe),
                _ => None,
            }
        }

        /// Stops splicing (the pipe is empty whenever this is called).
        pub(super) fn give_up(&mut self) {
            *self = Lazy::Unusable;
        }
    }

    /// A pipe, empty between transfers.
    pub(super) struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    impl Pipe {
        /// Moves what `from` has (waiting for something) into the pipe and
        /// on to `to`; returns how many bytes, 0 at end of stream.
        pub(super) async fn transfer(
            &mut self,
            from: &TcpStream,
            to: &TcpStream,
        ) -> Result<usize, Error> {
            let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
            // The pipe is empty, so "would block" can only mean that the
            // socket is, and readiness is cleared for the right reason.
            let n = from
                .async_io(Interest::READABLE, || {
                    Ok(rustix::pipe::splice(
                        from,
                        None,
                        &self.write,
                        None,
                        CHUNK,
                        flags,
                    )?)
                })
                .await
                .map_err(|error| match Errno::from_io_error(&error) {
                    Some(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::PERM) => {
                        Error::Refused { delivered: 0 }
                    }
                    _ => Error::Io(error),
                })?;
            let mut left = n;
            while left > 0 {
                // The pipe holds `left` bytes: "would block" means the
                // socket's send buffer is full.
                let moved = to
                    .async_io(Interest::WRITABLE, || {
                        Ok(rustix::pipe::splice(
                            &self.read, None, to, None, left, flags,
                        )?)
                    })
                    .await;
                match moved {
                    Ok(0) => return Err(Error::Io(io::ErrorKind::WriteZero.into())),
                    Ok(moved) => left -= moved,
                    Err(error) => {
                        return match Errno::from_io_error(&error) {
                            Some(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::PERM) => {
                                // Deliver what the pipe holds the plain way.
                                self.drain(to, left).await.map_err(Error::Io)?;
                                Err(Error::Refused { delivered: n })
                            }
                            _ => Err(Error::Io(error)),
                        };
                    }
                }
            }
            Ok(n)
        }

        /// Reads the pipe's `left` bytes out and writes them to `to`.
        async fn drain(&mut self, to: &TcpStream, mut left: usize) -> io::Result<()> {
            let mut buf = vec![0u8; super::BUFFER];
            while left > 0 {
                let want = left.min(buf.len());
                let n = rustix::io::read(&self.read, &mut buf[..want])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                super::write_all(to, &buf[..n]).await?;
                left -= n;
            }
            Ok(())
        }
    }
}
