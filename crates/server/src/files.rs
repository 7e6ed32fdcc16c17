//! The control plane's files are its user's alone: the data dir is 0700 and
//! every file the server creates in it (`warden.db` and SQLite's `-wal`,
//! `-shm` and `-journal` beside it, `admin-token`, `server-url`) is 0600,
//! whatever existed before. A URL's query string can hold a secret, and the
//! WAL holds recent records in clear.
//!
//! [`prepare_data_dir`] creates the data dir private, or checks an existing
//! one: a dir another user owns, or one that others can write (where
//! anyone could have planted an `admin-token` or a database), is refused; a
//! dir others can only read (0755, as systemd's `StateDirectory=` and a
//! plain `mkdir` make it) is made 0700, saying so, and so are the files in
//! it. [`prepare_database`] does the same for an SQLite database elsewhere
//! and creates the database file 0600 before SQLite opens it: SQLite gives
//! the `-wal`, `-shm` and `-journal` files it creates the database file's
//! mode, so they are private too. (The files written atomically, the admin
//! token and the server URL, are created 0600 by
//! [`warden_fsutil::write_atomically`].)

use std::fs::{OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use warden_store::DatabaseUrl;

use crate::ServerError;

/// The mode of every directory the server makes or keeps.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file the server makes or keeps.
pub const FILE_MODE: u32 = 0o600;

/// The files a data dir holds that the server keeps private when it finds
/// them (the database's companions are handled with the database).
const DATA_DIR_FILES: &[&str] = &[
    warden_api::client::ADMIN_TOKEN_FILE,
    warden_api::client::SERVER_URL_FILE,
];

/// What SQLite puts beside a database file.
const SQLITE_COMPANIONS: &[&str] = &["-wal", "-shm", "-journal"];

/// Creates `dir` (and missing parents) mode 0700, or checks and tightens an
/// existing one as the module doc says. Every change is logged as a
/// warning.
pub fn prepare_data_dir(dir: &Path) -> Result<(), ServerError> {
    private_dir(dir, "the data dir")?;
    for name in DATA_DIR_FILES {
        private_file_if_present(&dir.join(name))?;
    }
    Ok(())
}

/// For an SQLite database: its directory created private when missing and
/// refused when others can write it; the database file created 0600 when
/// missing, and it and its companion files made 0600 when wider. Nothing
/// for PostgreSQL.
pub fn prepare_database(database: &DatabaseUrl) -> Result<(), ServerError> {
    let DatabaseUrl::Sqlite(path) = database else {
        return Ok(());
    };
    if path.as_os_str() == ":memory:" {
        return Ok(());
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        private_dir(&dir, "the database's directory")?;
    } else {
        refuse_if_others_can_write(&dir, "the database's directory")?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        // An empty file is an empty database to SQLite.
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => private_file_if_present(path)?,
        Err(cause) => {
            return Err(ServerError::Io {
                context: format!("creating the database file {}", path.display()),
                cause,
            });
        }
    }
    for suffix in SQLITE_COMPANIONS {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        private_file_if_present(Path::new(&companion))?;
    }
    Ok(())
}

fn io_error(context: String) -> impl FnOnce(io::Error) -> ServerError {
    move |cause| ServerError::Io { context, cause }
}

/// Creates `dir` 0700, or checks an existing one: refused when another
/// user owns it or others can write it, made 0700 when others can read it.
fn private_dir(dir: &Path, what: &str) -> Result<(), ServerError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(io_error(format!("creating {what} {}", dir.display())))?;
            // The umask can only have narrowed the mode; make it exact.
            return std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
                .map_err(io_error(format!("making {what} {} private", dir.display())));
        }
        Err(cause) => {
            return Err(ServerError::Io {
                context: format!("reading {what} {}", dir.display()),
                cause,
            });
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(ServerError::Config(format!(
                "{what} {} is not a directory",
                dir.display()
            )));
        }
        Ok(meta) => {
            let ours = rustix::process::geteuid().as_raw();
            if meta.uid() != ours {
                return Err(ServerError::Config(format!(
                    "{what} {} belongs to uid {}, not to this server's user (uid {ours}): its files could be changed by that user; use a directory of the server's own user",
                    dir.display(),
                    meta.uid()
                )));
            }
            refuse_if_others_can_write(dir, what)?;
            let mode = meta.mode() & 0o7777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
                    .map_err(io_error(format!("making {what} {} private", dir.display())))?;
                tracing::warn!(
                    path = %dir.display(),
                    "{what} was readable by other users (mode {mode:04o}); made it {DIR_MODE:04o}"
                );
            }
        }
    }
    Ok(())
}

/// Refuses a directory that users other than its owner can write: they
/// could have put files there the server would trust (an admin token, a
/// database) or could replace the server's files.
fn refuse_if_others_can_write(dir: &Path, what: &str) -> Result<(), ServerError> {
    let meta =
        std::fs::metadata(dir).map_err(io_error(format!("reading {what} {}", dir.display())))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(ServerError::Config(format!(
            "{what} {} can be written by other users (mode {mode:04o}), who could plant or replace the server's files; check what is in it, then make it private (chmod 700)",
            dir.display()
        )));
    }
    Ok(())
}

/// Makes `path` 0600 when it is a file with a wider mode (saying so);
/// nothing when it does not exist. Symbolic links are not followed.
fn private_file_if_present(path: &Path) -> Result<(), ServerError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(cause) => {
            return Err(ServerError::Io {
                context: format!("reading {}", path.display()),
                cause,
            });
        }
    };
    let mode = meta.mode() & 0o7777;
    if meta.is_file() && mode != FILE_MODE && mode & !FILE_MODE != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE))
            .map_err(io_error(format!("making {} private", path.display())))?;
        tracing::warn!(
            path = %path.display(),
            "the file was readable or writable by other users (mode {mode:04o}); made it {FILE_MODE:04o}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_new_data_dir_and_its_parents_are_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/data");
        prepare_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&root.path().join("a")), DIR_MODE);
    }

    #[test]
    fn a_readable_data_dir_and_its_files_are_made_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o755);
        for name in ["admin-token", "server-url"] {
            std::fs::write(dir.join(name), "x").unwrap();
            chmod(&dir.join(name), 0o644);
        }
        prepare_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&dir.join("admin-token")), FILE_MODE);
        assert_eq!(mode(&dir.join("server-url")), FILE_MODE);
        // Already private: nothing changes, nothing fails.
        prepare_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
    }

    #[test]
    fn a_data_dir_others_can_write_is_refused() {
        let root = tempfile::tempdir().unwrap();
        for writable in [0o777, 0o775, 0o1777, 0o757] {
            let dir = root.path().join(format!("data-{writable:o}"));
            std::fs::create_dir(&dir).unwrap();
            chmod(&dir, writable);
            let e = prepare_data_dir(&dir).unwrap_err();
            assert!(e.is_config(), "{e:?}");
            let message = e.to_string();
            assert!(
                message.contains("can be written by other users")
                    && message.contains(&format!("{writable:04o}")),
                "{message}"
            );
            // Left as it was: the operator decides.
            assert_eq!(mode(&dir), writable);
        }
    }

    #[test]
    fn a_file_is_not_a_data_dir() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(prepare_data_dir(&file).unwrap_err().is_config());
    }

    #[test]
    fn the_database_and_its_companions_are_private() {
        let root = tempfile::tempdir().unwrap();
        let db = root.path().join("db/warden.db");
        prepare_database(&DatabaseUrl::Sqlite(db.clone())).unwrap();
        assert_eq!(mode(&db), FILE_MODE);
        assert_eq!(mode(db.parent().unwrap()), DIR_MODE);
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
        // Existing files with wide modes are narrowed.
        chmod(&db, 0o644);
        let wal = root.path().join("db/warden.db-wal");
        std::fs::write(&wal, "").unwrap();
        chmod(&wal, 0o666);
        prepare_database(&DatabaseUrl::Sqlite(db.clone())).unwrap();
        assert_eq!(mode(&db), FILE_MODE);
        assert_eq!(mode(&wal), FILE_MODE);
        // A directory others can write is refused.
        chmod(db.parent().unwrap(), 0o777);
        assert!(
            prepare_database(&DatabaseUrl::Sqlite(db.clone()))
                .unwrap_err()
                .is_config()
        );
    }
}
