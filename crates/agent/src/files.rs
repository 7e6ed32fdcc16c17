//! The agent's files are private: every file it creates is mode 0600 and
//! every directory 0700, whatever the umask and whatever already exists
//! (a data dir made 0755 by systemd's `StateDirectory=`, files left by an
//! older release). A data dir that other users can write, or that belongs
//! to another user, is refused: someone else could have put files there.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the files the agent creates.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the directories the agent creates.
pub const DIR_MODE: u32 = 0o700;

/// Why a data dir cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Others may write it (or one of the directories inside it).
    #[error(
        "{} is writable by other users (mode {mode:o}); refusing to keep the spool there: make it private with `chmod 700 {}`",
        path.display(), path.display()
    )]
    WritableByOthers {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It belongs to another user.
    #[error("{} belongs to uid {owner}, not to this agent's uid {uid}", path.display())]
    NotOwned {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The agent's effective uid.
        uid: u32,
    },
    /// A file-system operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

impl DataDirError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DataDirError {
        let path = path.to_owned();
        move |source| DataDirError::Io { op, path, source }
    }

    /// Whether the operator must fix the directory (not a passing failure).
    pub fn is_usage(&self) -> bool {
        !matches!(self, DataDirError::Io { .. })
    }
}

/// Creates the data dir (0700) or checks the one that exists: refused when
/// another user owns it or others can write it; otherwise made 0700, and
/// every file and directory the agent keeps in it made 0600 and 0700. Says
/// what it had to tighten (in a log line), and returns those paths.
pub fn prepare_data_dir(dir: &Path) -> Result<Vec<PathBuf>, DataDirError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(DataDirError::io("creating", dir))?;
    let uid = rustix::process::geteuid().as_raw();
    let mut tightened = Vec::new();
    tighten(dir, uid, 0, &mut tightened)?;
    if !tightened.is_empty() {
        tracing::warn!(
            dir = %dir.display(),
            paths = tightened.len(),
            "made the agent's data private (files 0600, directories 0700): {}",
            tightened
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(tightened)
}

/// Checks and tightens `path` (a directory), and what is in it down to the
/// depth the agent uses (the spool's and the rejected batches' directories).
fn tighten(
    path: &Path,
    uid: u32,
    depth: usize,
    tightened: &mut Vec<PathBuf>,
) -> Result<(), DataDirError> {
    let meta = fs::symlink_metadata(path).map_err(DataDirError::io("inspecting", path))?;
    if meta.is_dir() {
        if meta.uid() != uid {
            return Err(DataDirError::NotOwned {
                path: path.to_owned(),
                owner: meta.uid(),
                uid,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(DataDirError::WritableByOthers {
                path: path.to_owned(),
                mode,
            });
        }
        set_mode(path, mode, DIR_MODE, tightened)?;
        if depth < 2 {
            for entry in fs::read_dir(path).map_err(DataDirError::io("listing", path))? {
                let entry = entry.map_err(DataDirError::io("listing", path))?;
                tighten(&entry.path(), uid, depth + 1, tightened)?;
            }
        }
    } else if meta.is_file() && meta.uid() == uid {
        set_mode(path, meta.mode() & 0o7777, FILE_MODE, tightened)?;
    }
    // Sockets, links and files of other users are left alone.
    Ok(())
}

fn set_mode(
    path: &Path,
    mode: u32,
    want: u32,
    tightened: &mut Vec<PathBuf>,
) -> Result<(), DataDirError> {
    if mode == want {
        return Ok(());
    }
    fs::set_permissions(path, Permissions::from_mode(want))
        .map_err(DataDirError::io("changing the mode of", path))?;
    tightened.push(path.to_owned());
    Ok(())
}

/// Opens `path` for writing from scratch, creating it 0600 (and making an
/// existing one 0600).
pub fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Writes `data` to `path` in `dir` (created 0700) as a private file,
/// fsyncing the file and the directory.
pub fn write_private(dir: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let mut file = create_private(path)?;
    file.write_all(data)?;
    file.sync_all()?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn an_existing_open_data_dir_and_its_files_are_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        let spool = dir.join("spool");
        fs::create_dir(&spool).unwrap();
        fs::set_permissions(&spool, Permissions::from_mode(0o755)).unwrap();
        let segment = spool.join("00000000000000000001.seg");
        fs::write(&segment, b"x").unwrap();
        fs::set_permissions(&segment, Permissions::from_mode(0o644)).unwrap();
        let manifest = dir.join("manifest.binpb");
        fs::write(&manifest, b"m").unwrap();
        fs::set_permissions(&manifest, Permissions::from_mode(0o644)).unwrap();

        let tightened = prepare_data_dir(&dir).unwrap();
        assert_eq!(tightened.len(), 4, "{tightened:?}");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&spool), 0o700);
        assert_eq!(mode(&segment), 0o600);
        assert_eq!(mode(&manifest), 0o600);
        assert!(
            prepare_data_dir(&dir).unwrap().is_empty(),
            "nothing left to do"
        );
    }

    #[test]
    fn a_data_dir_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for (path, mode) in [(tmp.path().join("a"), 0o777), (tmp.path().join("b"), 0o775)] {
            fs::create_dir(&path).unwrap();
            fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
            let err = prepare_data_dir(&path).unwrap_err();
            assert!(err.is_usage(), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("writable by other users") && text.contains("chmod 700"),
                "{text}"
            );
        }
        // Also a directory inside it.
        let c = tmp.path().join("c");
        fs::create_dir_all(c.join("spool")).unwrap();
        fs::set_permissions(c.join("spool"), Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            prepare_data_dir(&c),
            Err(DataDirError::WritableByOthers { .. })
        ));
    }

    #[test]
    fn a_new_data_dir_and_written_files_are_private_whatever_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("new");
        prepare_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let rejected = dir.join("rejected");
        write_private(&rejected, &rejected.join("b.binpb"), b"batch").unwrap();
        assert_eq!(mode(&rejected), 0o700);
        assert_eq!(mode(&rejected.join("b.binpb")), 0o600);
        let manifest = dir.join("manifest.binpb");
        fs::write(&manifest, b"old").unwrap();
        fs::set_permissions(&manifest, Permissions::from_mode(0o644)).unwrap();
        // The manifest cache is replaced with the workspace's one helper.
        warden_fsutil::write_atomically(&manifest, b"new").unwrap();
        assert_eq!(fs::read(&manifest).unwrap(), b"new");
        assert_eq!(mode(&manifest), 0o600);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            2,
            "no temporary file left"
        );
    }
}
