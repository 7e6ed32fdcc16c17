//! Binding the boundary log socket safely.
//!
//! - Binding holds an exclusive `flock` on `<socket>.lock` (0600, next to
//!   the socket, never deleted: deleting a lock file lets two lockers hold
//!   two files) from before it looks at the path until the agent stops, so
//!   two agents started at the same instant on one path cannot both decide
//!   the path is free: the second one waits for nothing and fails at once.
//! - A leftover socket file that refuses connections (an agent that died)
//!   is removed; a live socket (another agent) is an error, never taken
//!   over, naming the process serving it (pid, uid and user); a socket of
//!   another user that this one may not even connect to is named with its
//!   owner; a path that is not a socket is never removed.
//! - The socket is created inside a fresh private (0700) directory next to
//!   its final path, given its mode (0600, or 0660 for a group) and group
//!   there, and only then renamed into place: no process ever sees it with
//!   the umask's looser mode.
//! - On shutdown the file is removed only if it is still the one this agent
//!   bound (same device and inode).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A user, as errors name one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The uid.
    pub uid: u32,
    /// The name /etc/passwd gives it, if any.
    pub name: Option<String>,
}

impl User {
    /// The user with this uid, named from /etc/passwd.
    pub fn of(uid: u32) -> User {
        User {
            uid,
            name: user_name(uid),
        }
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "uid {} ({})", self.uid, warden_proto::quote::quote(name)),
            None => write!(f, "uid {}", self.uid),
        }
    }
}

/// The socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A live socket is at the path, or another agent is binding it.
    #[error("another process is serving the socket {} ({}; is another agent running?)", path.display(), by.as_deref().unwrap_or("an agent starting on the same path"))]
    InUse {
        /// The socket path.
        path: PathBuf,
        /// Who serves it (`pid N, uid M (name)`), when known.
        by: Option<String>,
    },
    /// A socket of another user that this agent may not connect to.
    #[error("the socket {} belongs to {owner} and may be in use by that user's agent; choose another path (--boundary-log-proxy-socket-path)", path.display())]
    Foreign {
        /// The socket path.
        path: PathBuf,
        /// Its owner.
        owner: User,
    },
    /// Something that is not a socket is at the path.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// The socket group is unknown.
    #[error("socket group {0:?} is neither a gid nor a group in /etc/group")]
    UnknownGroup(String),
    /// A file-system operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

impl BindError {
    /// A live socket, a foreign file or a bad group is the operator's to fix.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            BindError::InUse { .. }
                | BindError::Foreign { .. }
                | BindError::NotASocket(_)
                | BindError::UnknownGroup(_)
        )
    }
}

/// The name /etc/passwd gives `uid`.
pub fn user_name(uid: u32) -> Option<String> {
    let table = std::fs::read_to_string("/etc/passwd").ok()?;
    table.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.parse::<u32>().ok()?;
        (id == uid).then(|| name.to_owned())
    })
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BindError {
    let path = path.to_owned();
    move |source| BindError::Io {
        action,
        path,
        source,
    }
}

/// A bound socket.
#[derive(Debug)]
pub struct BoundSocket {
    /// Accepts connections.
    pub listener: tokio::net::UnixListener,
    /// The file, to remove on shutdown.
    pub file: SocketFile,
}

/// The socket's file and its identity (device and inode), and the lock
/// held on the path while the agent serves it.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Released (closed) when this is dropped, after the removal.
    _lock: File,
}

impl SocketFile {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file if it is still the one this agent bound.
    pub fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), "cannot remove the socket file: {e}");
                }
            }
            Ok(_) => tracing::warn!(
                path = %self.path.display(),
                "the socket file was replaced by another process; leaving it"
            ),
            Err(_) => {}
        }
    }
}

/// Resolves a group given as a number or as a name from /etc/group.
pub fn resolve_group(group: &str) -> Result<u32, BindError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let unknown = || BindError::UnknownGroup(group.to_owned());
    let table = std::fs::read_to_string("/etc/group").map_err(|_| unknown())?;
    table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(unknown)
}

/// The lock file of the socket at `path`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    path.with_file_name(name)
}

/// Takes the path's lock, or tells who holds the path.
fn lock(path: &Path) -> Result<File, BindError> {
    let lock_path = lock_path(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|source| match source.kind() {
            // Another user's lock: their agent uses (or used) the path.
            std::io::ErrorKind::PermissionDenied => match std::fs::metadata(&lock_path) {
                Ok(meta) => BindError::Foreign {
                    path: path.to_owned(),
                    owner: User::of(meta.uid()),
                },
                Err(_) => io("opening the lock", &lock_path)(source),
            },
            _ => io("opening the lock", &lock_path)(source),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(BindError::InUse {
            path: path.to_owned(),
            by: serving(path),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io("locking", &lock_path)(e)),
    }
}

/// Who serves the socket at `path`: `pid N, uid M (name)`, if it answers.
fn serving(path: &Path) -> Option<String> {
    let stream = std::os::unix::net::UnixStream::connect(path).ok()?;
    let cred = rustix::net::sockopt::socket_peercred(&stream).ok()?;
    let user = User::of(cred.uid.as_raw());
    Some(format!("pid {}, {user}", cred.pid.as_raw_nonzero()))
}

/// Binds the socket at `path`: mode 0600, or 0660 with group `gid`.
/// Must run inside a tokio runtime.
pub fn bind(path: &Path, gid: Option<u32>) -> Result<BoundSocket, BindError> {
    let lock = lock(path)?;
    clear_leftover(path)?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Short, so that a socket path near the 108-byte limit still fits.
    let private = parent.join(format!(
        ".wsk{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io("creating a private directory", &private))?;
    let result = bind_in(&private, path, gid, lock);
    if let Err(e) = std::fs::remove_dir_all(&private) {
        tracing::warn!(path = %private.display(), "cannot remove the temporary socket directory: {e}");
    }
    result
}

fn bind_in(
    private: &Path,
    path: &Path,
    gid: Option<u32>,
    lock: File,
) -> Result<BoundSocket, BindError> {
    let staged = private.join("s");
    let listener =
        std::os::unix::net::UnixListener::bind(&staged).map_err(io("binding", &staged))?;
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
        .map_err(io("setting the mode of", &staged))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(&staged, None, Some(gid))
            .map_err(io("changing the group of", &staged))?;
    }
    std::fs::rename(&staged, path).map_err(io("moving the socket to", path))?;
    let meta = std::fs::symlink_metadata(path).map_err(io("inspecting", path))?;
    listener
        .set_nonblocking(true)
        .map_err(io("configuring", path))?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(io("registering", path))?;
    Ok(BoundSocket {
        listener,
        file: SocketFile {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            _lock: lock,
        },
    })
}

/// Removes a dead socket left at `path`; refuses a live one or a non-socket.
fn clear_leftover(path: &Path) -> Result<(), BindError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("inspecting", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket(path.to_owned()));
    }
    let probe = std::os::unix::net::UnixStream::connect(path);
    match existing(path, &meta, probe)? {
        Existing::Dead => {
            tracing::info!(path = %path.display(), "removing a stale socket file");
            std::fs::remove_file(path).map_err(io("removing the stale socket", path))
        }
    }
}

/// What the socket at a path is.
enum Existing {
    /// Nobody serves it.
    Dead,
}

/// Judges a socket file from its metadata and a connection attempt.
fn existing(
    path: &Path,
    meta: &std::fs::Metadata,
    probe: std::io::Result<std::os::unix::net::UnixStream>,
) -> Result<Existing, BindError> {
    match probe {
        Ok(stream) => {
            let by = rustix::net::sockopt::socket_peercred(&stream)
                .ok()
                .map(|cred| {
                    format!(
                        "pid {}, {}",
                        cred.pid.as_raw_nonzero(),
                        User::of(cred.uid.as_raw())
                    )
                });
            Err(BindError::InUse {
                path: path.to_owned(),
                by,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(Existing::Dead),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(BindError::Foreign {
            path: path.to_owned(),
            owner: User::of(meta.uid()),
        }),
        Err(e) => Err(io("probing the existing socket", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_with_mode_0600_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let bound = bind(&path, None).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // Only the socket and its lock remain in the directory.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["a.sock", "a.sock.lock"]);
        bound.file.remove();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_group_widens_the_mode_to_0660() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.sock");
        let gid = rustix::process::getgid().as_raw();
        let _bound = bind(&path, Some(gid)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), gid);
    }

    #[tokio::test]
    async fn a_live_socket_is_refused_and_a_dead_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sock");
        // The lock is held while the first one serves: refused at once,
        // naming the process.
        let live = bind(&path, None).unwrap();
        let err = bind(&path, None).unwrap_err();
        assert!(matches!(err, BindError::InUse { .. }), "{err}");
        assert!(err.is_usage());
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("uid "), "{text}");
        // A dead socket: bound, then its listener closed without removing the file.
        drop(live);
        assert!(path.exists());
        let again = bind(&path, None).unwrap();
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        drop(again);
    }

    #[tokio::test]
    async fn a_live_socket_without_a_lock_is_refused_naming_its_server() {
        // A socket served by something that takes no lock (an older agent).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sock");
        let _server = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = bind(&path, None).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, BindError::InUse { by: Some(_), .. }),
            "{text}"
        );
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
    }

    #[test]
    fn a_socket_this_user_may_not_connect_to_is_named_with_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("theirs.sock");
        let _server = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let denied = Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        let Err(err) = existing(&path, &meta, denied) else {
            panic!("a socket that refuses this user is not free");
        };
        assert!(err.is_usage());
        let owner = User::of(meta.uid());
        assert!(matches!(&err, BindError::Foreign { owner: o, .. } if *o == owner));
        let text = err.to_string();
        assert!(
            text.contains(&format!("belongs to uid {}", meta.uid())),
            "{text}"
        );
        if let Some(name) = &owner.name {
            assert!(text.contains(name.as_str()), "{text}");
        }
        assert_eq!(User::of(0).name.as_deref(), Some("root"));
    }

    #[test]
    fn agents_started_at_the_same_instant_on_one_path_bind_it_once() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..10 {
            let path = dir.path().join(format!("race-{round}.sock"));
            let start = std::sync::Arc::new(std::sync::Barrier::new(4));
            let tried = std::sync::Arc::new(std::sync::Barrier::new(4));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (path, start, tried) = (path.clone(), start.clone(), tried.clone());
                    std::thread::spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap();
                        let _guard = runtime.enter();
                        start.wait();
                        let bound = bind(&path, None);
                        // The winner holds it until every thread has tried.
                        tried.wait();
                        bound.map(|_| ()).map_err(|e| e.to_string())
                    })
                })
                .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let won = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(won, 1, "round {round}: {results:?}");
            for lost in results.iter().filter_map(|r| r.as_ref().err()) {
                assert!(lost.contains("another process is serving"), "{lost}");
            }
            let lock = std::fs::metadata(lock_path(&path)).unwrap();
            assert_eq!(lock.permissions().mode() & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn a_regular_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.sock");
        std::fs::write(&path, b"data").unwrap();
        let err = bind(&path, None).unwrap_err();
        assert!(matches!(err, BindError::NotASocket(_)), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    #[test]
    fn groups_resolve_by_number_or_name() {
        assert_eq!(resolve_group("1234").unwrap(), 1234);
        assert_eq!(resolve_group("root").unwrap(), 0);
        assert!(
            resolve_group("no-such-group-for-warden")
                .unwrap_err()
                .is_usage()
        );
    }
}
