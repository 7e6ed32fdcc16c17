//! The file-system seam: every byte the spool reads or writes goes through
//! [`Storage`]. Production uses [`OsStorage`]; the tests plug in a simulated
//! disk that can fail any operation and lose what was never fsynced.
//!
//! Files are named relative to the spool directory. The spool's data is
//! private: the directory is 0700 and every file 0600, whatever the umask
//! and whatever an older release or another tool left (see
//! [`OsStorage::lock`]).

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Mode of the spool directory.
const DIR_MODE: u32 = 0o700;
/// Mode of every file in it.
const FILE_MODE: u32 = 0o600;

/// A held lock on the spool directory, released on drop.
pub(crate) type DirLock = Box<dyn Send + Sync>;

pub(crate) trait Storage: Send + Sync + 'static {
    /// The spool directory (for error messages).
    fn dir(&self) -> &Path;
    /// Creates the directory if needed and locks it for this spool; fails
    /// with [`io::ErrorKind::WouldBlock`] when another spool holds it.
    fn lock(&self) -> io::Result<DirLock>;
    /// Names of the files in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// The whole content of a file.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Opens a file for appending, creating it empty if it does not exist.
    fn open_append(&self, name: &str) -> io::Result<Box<dyn AppendFile>>;
    /// Opens a file for positioned reads.
    fn open_read(&self, name: &str) -> io::Result<Arc<dyn ReadAt>>;
    fn remove(&self, name: &str) -> io::Result<()>;
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self) -> io::Result<()>;
}

/// A file written only at its end.
pub(crate) trait AppendFile: Send {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes the written bytes durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes; later writes go to the new end.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// A file read at offsets; stays readable after the file is removed.
pub(crate) trait ReadAt: Send + Sync {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

/// The real file system.
pub(crate) struct OsStorage {
    dir: PathBuf,
}

impl OsStorage {
    pub(crate) fn new(dir: PathBuf) -> Self {
        OsStorage { dir }
    }
}

impl Storage for OsStorage {
    fn dir(&self) -> &Path {
        &self.dir
    }

    /// Also makes the directory 0700 and the files in it 0600 (an existing
    /// directory may have come with the umask's 0755, files of an older
    /// release with 0644).
    fn lock(&self) -> io::Result<DirLock> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&self.dir)?;
        tighten(&self.dir, DIR_MODE)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(self.dir.join(crate::format::LOCK_FILE))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(io::ErrorKind::WouldBlock.into()),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                tighten(&entry.path(), FILE_MODE)?;
            }
        }
        Ok(Box::new(file))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Ok(name) = entry.file_name().into_string()
            {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.dir.join(name))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(self.dir.join(name))?;
        Ok(Box::new(OsAppendFile(file)))
    }

    fn open_read(&self, name: &str) -> io::Result<Arc<dyn ReadAt>> {
        Ok(Arc::new(OsReadFile(File::open(self.dir.join(name))?)))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.dir.join(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

/// Sets `path`'s permission bits to `mode` unless they are that already.
fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    let current = fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if current != mode {
        fs::set_permissions(path, Permissions::from_mode(mode))?;
    }
    Ok(())
}

struct OsAppendFile(File);

impl AppendFile for OsAppendFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        // The file is opened with O_APPEND, so the next write lands at the new end.
        self.0.set_len(len)
    }
}

struct OsReadFile(File);

impl ReadAt for OsReadFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.0, buf, offset)
    }
}
