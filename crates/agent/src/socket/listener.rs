//! Binding the boundary log socket safely.
//!
//! - A leftover socket file that refuses connections (an agent that died)
//!   is removed; a live socket (another agent) is an error, never taken
//!   over; a path that is not a socket is never removed.
//! - The socket is created inside a fresh private (0700) directory next to
//!   its final path, given its mode (0600, or 0660 for a group) and group
//!   there, and only then renamed into place: no process ever sees it with
//!   the umask's looser mode.
//! - On shutdown the file is removed only if it is still the one this agent
//!   bound (same device and inode).

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another process is serving the socket {0} (is another agent running?)")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("socket group {0:?} is neither a gid nor a group in /etc/group")]
    UnknownGroup(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BindError {
    /// A live socket, a foreign file or a bad group is the operator's to fix.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            BindError::InUse(_) | BindError::NotASocket(_) | BindError::UnknownGroup(_)
        )
    }
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
    pub listener: tokio::net::UnixListener,
    pub file: SocketFile,
}

/// The socket's file and its identity (device and inode).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
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

/// Binds the socket at `path`: mode 0600, or 0660 with group `gid`.
/// Must run inside a tokio runtime.
pub fn bind(path: &Path, gid: Option<u32>) -> Result<BoundSocket, BindError> {
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
    let result = bind_in(&private, path, gid);
    if let Err(e) = std::fs::remove_dir_all(&private) {
        tracing::warn!(path = %private.display(), "cannot remove the temporary socket directory: {e}");
    }
    result
}

fn bind_in(private: &Path, path: &Path, gid: Option<u32>) -> Result<BoundSocket, BindError> {
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
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(BindError::InUse(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a stale socket file");
            std::fs::remove_file(path).map_err(io("removing the stale socket", path))
        }
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
        // Only the socket remains in the directory.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.sock")]);
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
        let live = bind(&path, None).unwrap();
        let err = bind(&path, None).unwrap_err();
        assert!(matches!(err, BindError::InUse(_)), "{err}");
        assert!(err.is_usage());
        // A dead socket: bound, then its listener closed without removing the file.
        drop(live);
        assert!(path.exists());
        let again = bind(&path, None).unwrap();
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        drop(again);
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
