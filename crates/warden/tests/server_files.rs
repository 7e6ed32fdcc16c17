//! The control plane's files are its user's alone (issue 17, medium 6):
//! `warden server` started on a data dir that already exists with the mode
//! systemd's `StateDirectory=` gives it (0755), with a umask that would let
//! everyone read what it creates, ends with the dir 0700 and every file in it
//! 0600 (the database, SQLite's `-wal` and `-shm` while it runs, the admin
//! token, the server URL). A data dir others can write is refused before
//! anything is created in it.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use support::process::{BoundaryLines, WardenProcess};

/// What the server prints once it serves (`docs/cli.md`).
const LISTENING: &str = "warden server listening on ";

/// `warden server` on `data_dir`, started from a shell whose umask is 000:
/// without its own care, every file it creates would be 0666.
fn server(data_dir: &Path) -> tokio::process::Command {
    let warden = support::process::warden();
    let program = warden.as_std().get_program().to_owned();
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .args(["-c", r#"umask 000 && exec "$0" "$@""#])
        .arg(program)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir);
    // The clean environment `warden()` sets up.
    command.env_clear();
    for (name, value) in warden.as_std().get_envs() {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    for name in ["PATH", "HOME", "TMPDIR"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

#[tokio::test]
async fn a_data_dir_made_0755_ends_up_private_with_every_file_in_it() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("state");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut process = WardenProcess::spawn("warden server", server(&data), BoundaryLines::Keep);
    let said = process
        .wait_line("was readable by other users (mode 0755); made it 0700")
        .await;
    assert!(said.contains(&data.display().to_string()), "{said}");
    process.wait_line(LISTENING).await;

    // While it runs: the database with its WAL and shared memory, the
    // generated admin token, the URL for the other commands.
    assert_eq!(mode(&data), 0o700, "the data dir");
    let names = [
        "warden.db",
        "warden.db-wal",
        "warden.db-shm",
        "admin-token",
        "server-url",
    ];
    for name in names {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    // Nothing else in the dir escapes the rule.
    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        let m = mode(&entry.path());
        assert_eq!(m & 0o077, 0, "{:?} is mode {m:04o}", entry.file_name());
    }
    process.stop().await;
}

#[tokio::test]
async fn a_data_dir_others_can_write_is_refused_and_left_untouched() {
    let root = tempfile::tempdir().unwrap();
    for writable in [0o777, 0o775] {
        let data = root.path().join(format!("state-{writable:o}"));
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(writable)).unwrap();

        let mut process = WardenProcess::spawn("warden server", server(&data), BoundaryLines::Keep);
        let said = process.wait_line("can be written by other users").await;
        assert!(said.contains(&format!("{writable:04o}")), "{said}");
        assert_eq!(process.exit().await, Some(2), "a configuration error");
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            0,
            "the server wrote into a dir it refused"
        );
        assert_eq!(mode(&data), writable, "the operator decides what to do");
    }
}
