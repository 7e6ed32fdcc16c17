//! `--jail` (Linux): COMMAND runs in its own network namespace whose only
//! way out is the proxy, and its own mount namespace in which `--ca-dir` is
//! hidden.
//!
//! How: one thread of the proxy `unshare`s a new network and mount
//! namespace (namespaces are per thread until a process is started), brings
//! the namespace's loopback up, binds the proxy's listening socket there,
//! covers the CA directory with an empty read-only tmpfs, and later starts
//! COMMAND, which inherits the thread's namespaces. The listening socket
//! stays in the jail's namespace while the rest of the proxy (its
//! connections to origins) stays outside: COMMAND reaches the proxy on its
//! own `127.0.0.1` and nothing else, so a tool that ignores the proxy
//! variables gets no connection instead of an unaudited one.
//!
//! Before starting COMMAND the thread gives up every capability for its
//! children (no capabilities across `execve`, even for root, and no new
//! privileges through set-uid files): a root COMMAND could otherwise
//! `setns` its way back into the host's network.
//!
//! This needs `CAP_SYS_ADMIN` (root, in practice); without it the jail
//! cannot be built and `warden boundary` refuses to run COMMAND rather than
//! run it unconfined.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::thread::{CapabilitiesSecureBits, CapabilitySet, CapabilitySets, UnshareFlags};

/// Why the jail cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// The kernel or the privileges do not allow it.
    #[error(
        "--jail needs a new network and mount namespace, which this process may not create ({step} failed); run as root (CAP_SYS_ADMIN) or without --jail"
    )]
    Unsupported {
        /// The step that failed.
        step: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Another step failed.
    #[error("building the jail: {step}")]
    Setup {
        /// The step that failed.
        step: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The jail thread is gone.
    #[error("the jail thread ended early")]
    ThreadGone,
}

type SpawnRequest = (
    tokio::process::Command,
    tokio::runtime::Handle,
    mpsc::Sender<std::io::Result<tokio::process::Child>>,
);

/// A built jail: start COMMAND in it with [`Jail::spawn`].
#[derive(Debug)]
pub struct Jail {
    requests: mpsc::Sender<SpawnRequest>,
}

impl Jail {
    /// Builds the namespaces, binds `listen` inside them and hides
    /// `hidden` (directories) from what runs there.
    pub fn create(
        listen: SocketAddr,
        hidden: &[PathBuf],
    ) -> Result<(std::net::TcpListener, Jail), JailError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (requests_tx, requests_rx) = mpsc::channel::<SpawnRequest>();
        let hidden = hidden.to_vec();
        thread::Builder::new()
            .name("warden-jail".into())
            .spawn(move || {
                let built = build(listen, &hidden);
                let ok = built.is_ok();
                let _ = ready_tx.send(built);
                if !ok {
                    return;
                }
                // One COMMAND per run; the thread ends after starting it.
                if let Ok((mut command, runtime, reply)) = requests_rx.recv() {
                    let _ = reply.send(drop_privileges().and_then(|()| {
                        let _entered = runtime.enter();
                        command.spawn()
                    }));
                }
            })
            .map_err(|source| JailError::Setup {
                step: "starting the jail thread".into(),
                source,
            })?;
        let listener = ready_rx.recv().map_err(|_| JailError::ThreadGone)??;
        Ok((
            listener,
            Jail {
                requests: requests_tx,
            },
        ))
    }

    /// Starts `command` inside the jail, with no capabilities.
    pub fn spawn(
        self,
        command: tokio::process::Command,
    ) -> Result<tokio::process::Child, JailError> {
        let (reply_tx, reply_rx) = mpsc::channel();
        let runtime = tokio::runtime::Handle::current();
        self.requests
            .send((command, runtime, reply_tx))
            .map_err(|_| JailError::ThreadGone)?;
        reply_rx
            .recv()
            .map_err(|_| JailError::ThreadGone)?
            .map_err(|source| JailError::Setup {
                step: "starting COMMAND".into(),
                source,
            })
    }
}

/// Runs on the jail thread: namespaces, loopback, listener, hidden dirs.
fn build(listen: SocketAddr, hidden: &[PathBuf]) -> Result<std::net::TcpListener, JailError> {
    enter_namespaces().map_err(|source| JailError::Unsupported {
        step: "unshare",
        source: source.into(),
    })?;
    let setup = |step: &str| {
        let step = step.to_owned();
        move |source: std::io::Error| JailError::Setup { step, source }
    };
    // Mounts made here must not propagate back to the host's namespace.
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| setup("making mounts private")(e.into()))?;
    for dir in hidden {
        hide(dir).map_err(|e| setup(&format!("hiding {}", dir.display()))(e))?;
    }
    loopback_up().map_err(setup("bringing up the loopback interface"))?;
    std::net::TcpListener::bind(listen)
        .and_then(|listener| {
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .map_err(setup(&format!("binding {listen} inside the jail")))
}

#[allow(unsafe_code)]
fn enter_namespaces() -> rustix::io::Result<()> {
    // SAFETY: rustix marks `unshare` unsafe because `CLONE_FILES` would give
    // this thread a file descriptor table of its own, so that descriptors
    // opened by other threads would not be valid here. Only `CLONE_NEWNET`
    // and `CLONE_NEWNS` (which implies `CLONE_FS`: cwd, root and umask) are
    // requested; the descriptor table stays shared.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET | UnshareFlags::NEWNS) }
}

/// Covers `dir` with an empty read-only tmpfs nobody may enter.
fn hide(dir: &Path) -> std::io::Result<()> {
    let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    rustix::mount::mount("tmpfs", dir, "tmpfs", flags, c"mode=000,size=4k")?;
    Ok(())
}

/// Sets `lo` up with one rtnetlink RTM_NEWLINK request (the namespace's
/// loopback starts down).
fn loopback_up() -> std::io::Result<()> {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, netlink};
    let inet = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None)?;
    let index = rustix::net::netdevice::name_to_index(&inet, "lo")?;
    let socket = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    let mut message = Vec::with_capacity(32);
    message.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    message.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // seq
    message.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    message.extend_from_slice(&[0, 0]); // ifi_family AF_UNSPEC, padding
    message.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    message.extend_from_slice(&(index as i32).to_ne_bytes());
    message.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    message.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    rustix::net::sendto(
        &socket,
        &message,
        SendFlags::empty(),
        &netlink::SocketAddrNetlink::new(0, 0),
    )?;
    let mut reply = [0u8; 1024];
    let (n, _) = rustix::net::recv(&socket, &mut reply, RecvFlags::empty())?;
    let field = |at: usize, len: usize| reply.get(at..at + len).filter(|_| at + len <= n);
    let kind = field(4, 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let code = field(16, 4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, code) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(code)) => Err(std::io::Error::from_raw_os_error(-code)),
        _ => Err(std::io::Error::other("unexpected rtnetlink reply")),
    }
}

/// Makes sure what this thread starts has no capabilities and cannot gain
/// any: root loses its automatic capabilities on `execve` (securebits
/// NOROOT, locked), the thread's own sets are emptied, and no-new-privs
/// stops set-uid and file capabilities.
fn drop_privileges() -> std::io::Result<()> {
    rustix::thread::set_capabilities_secure_bits(
        CapabilitiesSecureBits::NO_ROOT
            | CapabilitiesSecureBits::NO_ROOT_LOCKED
            | CapabilitiesSecureBits::NO_SETUID_FIXUP
            | CapabilitiesSecureBits::NO_SETUID_FIXUP_LOCKED,
    )?;
    rustix::thread::clear_ambient_capability_set()?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )?;
    rustix::thread::set_no_new_privs(true)?;
    Ok(())
}
