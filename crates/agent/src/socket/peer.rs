//! Who is on the other end of a socket connection: uid, gid and pid from
//! SO_PEERCRED, `comm` and the executable from /proc, and the optional
//! allowlist of executables.
//!
//! What this does and does not prevent: the kernel vouches for uid, gid and
//! pid at connect time, and /proc is read right after accepting, so a record
//! can be traced to the process that wrote it. A process of the same user
//! can still write records (mode 0600 does not stop it); the allowlist
//! refuses executables not on it, but a process allowed by the list could
//! be made to write by another one (ptrace, a shared library), and a pid can
//! in principle be reused between connect and the /proc read.

use std::path::{Path, PathBuf};

use tokio::net::UnixStream;
use warden_proto::domain::Peer;

/// Reads the peer's identity. Fields /proc cannot tell are left empty.
pub fn identify(stream: &UnixStream) -> std::io::Result<Peer> {
    let cred = stream.peer_cred()?;
    let pid = cred.pid().unwrap_or(0);
    let (comm, exe) = if pid > 0 {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let comm = std::fs::read_to_string(proc.join("comm"))
            .map(|s| s.trim_end_matches('\n').to_owned())
            .unwrap_or_default();
        let exe = std::fs::read_link(proc.join("exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        (comm, exe)
    } else {
        (String::new(), String::new())
    };
    Ok(Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid,
        comm,
        exe,
    })
}

/// Executables allowed to connect; an empty list allows everyone.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    exes: Vec<String>,
}

impl Allowlist {
    /// Canonicalizes the configured paths (the kernel reports the resolved
    /// path of the executable); a path that does not exist is an error.
    pub fn new(paths: &[PathBuf]) -> Result<Self, (PathBuf, std::io::Error)> {
        let exes = paths
            .iter()
            .map(|p| {
                std::fs::canonicalize(p)
                    .map(|c| c.to_string_lossy().into_owned())
                    .map_err(|e| (p.clone(), e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Allowlist { exes })
    }

    /// Whether every peer is allowed.
    pub fn is_empty(&self) -> bool {
        self.exes.is_empty()
    }

    /// Whether `peer` may connect. A peer whose executable could not be read
    /// (or was deleted and replaced) is refused when a list is set.
    pub fn allows(&self, peer: &Peer) -> bool {
        self.exes.is_empty() || (!peer.exe.is_empty() && self.exes.contains(&peer.exe))
    }

    /// The canonical allowed paths.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.exes.iter().map(Path::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn identifies_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = identify(&a).unwrap();
        assert_eq!(peer.pid, std::process::id() as i32);
        assert_eq!(peer.uid, rustix::process::getuid().as_raw());
        assert_eq!(peer.gid, rustix::process::getgid().as_raw());
        let me = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(peer.exe, me.to_string_lossy());
        assert!(!peer.comm.is_empty());
    }

    #[test]
    fn the_allowlist_matches_canonical_paths() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, b"").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let list = Allowlist::new(&[link]).unwrap();
        let real = std::fs::canonicalize(real).unwrap();
        let peer = |exe: &str| Peer {
            exe: exe.into(),
            ..Peer::default()
        };
        assert!(list.allows(&peer(&real.to_string_lossy())));
        assert!(!list.allows(&peer("/usr/bin/other")));
        assert!(!list.allows(&peer("")));
        assert!(Allowlist::default().allows(&peer("")));
        assert!(Allowlist::new(&[dir.path().join("missing")]).is_err());
    }
}
