//! Throwaway PostgreSQL for tests.
//!
//! [`TestPg::start`] gives a test its own empty database. When
//! `WARDEN_TEST_PG_URL` names a running server (CI starts one so that the
//! tests share a cluster), the database is created there; otherwise a private
//! cluster is initialised in a temporary directory from the installed
//! PostgreSQL 15 binaries and stopped when the guard is dropped.
//!
//! Missing binaries are an error with install instructions, never a skip: a
//! PostgreSQL test that cannot run must fail.

#![warn(missing_docs, unreachable_pub)]

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable naming a running server to create test databases on,
/// as `postgres://USER@HOST:PORT` (no database).
pub const SHARED_SERVER_ENV: &str = "WARDEN_TEST_PG_URL";
/// Environment variable overriding where the PostgreSQL binaries are.
pub const BIN_DIR_ENV: &str = "WARDEN_PG_BIN_DIR";
const DEFAULT_BIN_DIRS: [&str; 2] = ["/usr/lib/postgresql/15/bin", "/usr/local/bin"];

/// Why a test database could not be had.
#[derive(Debug)]
pub struct TestPgError(String);

impl fmt::Display for TestPgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestPgError {}

fn err(msg: impl Into<String>) -> TestPgError {
    TestPgError(msg.into())
}

/// A fresh database; dropping it stops the private cluster, if one was
/// started, or drops the databases it created on the shared server.
pub struct TestPg {
    url: String,
    server_url: String,
    /// Databases created on the server, dropped with the guard when the
    /// server is shared.
    databases: Mutex<Vec<String>>,
    /// The private cluster, stopped when the guard is dropped.
    cluster: Option<Cluster>,
}

/// How a private cluster trades safety for speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// No fsync, asynchronous commit: fast, for tests (a crash of the test
    /// machine loses nothing that matters).
    Fast,
    /// What a production server runs with (fsync, synchronous commit, full
    /// page writes), with room for bulk loads (512 MB shared buffers, 4 GB
    /// of WAL between checkpoints): for benches.
    Durable,
}

impl Durability {
    fn server_options(self) -> &'static str {
        match self {
            Durability::Fast => "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            Durability::Durable => "-c shared_buffers=512MB -c max_wal_size=4GB",
        }
    }
}

impl TestPg {
    /// A new empty database on the shared server or on a private, fast
    /// ([`Durability::Fast`]) cluster.
    pub fn start() -> Result<TestPg, TestPgError> {
        TestPg::start_with(Durability::Fast)
    }

    /// A new empty database on the shared server (whatever its settings) or
    /// on a private cluster with the given durability.
    pub fn start_with(durability: Durability) -> Result<TestPg, TestPgError> {
        let (server_url, cluster) = match std::env::var(SHARED_SERVER_ENV) {
            Ok(url) if !url.is_empty() => (url.trim_end_matches('/').to_owned(), None),
            _ => {
                let cluster = Cluster::start(durability)?;
                (cluster.server_url(), Some(cluster))
            }
        };
        let mut pg = TestPg {
            url: String::new(),
            server_url,
            databases: Mutex::new(Vec::new()),
            cluster,
        };
        pg.url = pg.create_database()?;
        Ok(pg)
    }

    /// `postgres://...` URL of this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Another fresh database on the same server (for tests that need two).
    pub fn create_database(&self) -> Result<String, TestPgError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // The process id and a counter make names unique among running
        // tests; the clock, among runs against a long-lived shared server.
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "warden_test_{}_{}_{clock}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let psql = bin_dir()?.join("psql");
        let out = run(Command::new(&psql)
            .arg(format!("{}/postgres", self.server_url))
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("CREATE DATABASE {name}")))?;
        check(&out, "create test database")?;
        if let Ok(mut databases) = self.databases.lock() {
            databases.push(name.clone());
        }
        Ok(format!("{}/{name}", self.server_url))
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        // A private cluster goes as a whole.
        if self.cluster.is_some() {
            return;
        }
        let (Ok(psql), Ok(databases)) =
            (bin_dir().map(|d| d.join("psql")), self.databases.get_mut())
        else {
            return;
        };
        for name in databases.drain(..) {
            // Best effort: a leftover database on a test server is harmless.
            let _ = Command::new(&psql)
                .arg(format!("{}/postgres", self.server_url))
                .args(["-q", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .output();
        }
    }
}

impl fmt::Debug for TestPg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPg").field("url", &self.url).finish()
    }
}

/// A private cluster in a temporary directory.
struct Cluster {
    data_dir: PathBuf,
    port: u16,
    // Holds the directory; removed after the cluster is stopped.
    _root: tempfile::TempDir,
}

impl Cluster {
    fn start(durability: Durability) -> Result<Cluster, TestPgError> {
        let bin = bin_dir()?;
        let root = tempfile::Builder::new()
            .prefix("warden-pg-")
            .tempdir()
            .map_err(|e| err(format!("creating a directory for the test cluster: {e}")))?;
        let data_dir = root.path().join("data");
        let socket_dir = root.path().join("sock");
        for dir in [&data_dir, &socket_dir] {
            std::fs::create_dir(dir)
                .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
        }
        // initdb refuses to run as root: run the server as the postgres user.
        let as_user = is_root().then_some("postgres");
        if let Some(user) = as_user {
            for dir in [root.path(), &data_dir, &socket_dir] {
                chown_to(dir, user)?;
            }
        }
        let out = run(as_user_cmd(as_user, &bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data_dir))?;
        check(&out, "initdb")?;

        // A free port can be taken by someone else before the server binds it;
        // try a few.
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 {}",
                socket_dir.display(),
                durability.server_options()
            );
            let out = run(as_user_cmd(as_user, &bin.join("pg_ctl"))
                .args(["-w", "-t", "60", "-D"])
                .arg(&data_dir)
                .args(["-l"])
                .arg(data_dir.join("server.log"))
                .args(["-o", &options, "start"]))?;
            if out.status.success() {
                return Ok(Cluster {
                    data_dir,
                    port,
                    _root: root,
                });
            }
            last = Some(out);
        }
        let log = std::fs::read_to_string(data_dir.join("server.log")).unwrap_or_default();
        Err(err(format!(
            "pg_ctl start failed: {}\nserver log:\n{log}",
            last.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default()
        )))
    }

    fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(bin) = bin_dir() {
            let as_user = is_root().then_some("postgres");
            let _ = as_user_cmd(as_user, &bin.join("pg_ctl"))
                .args(["-D"])
                .arg(&self.data_dir)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

fn bin_dir() -> Result<PathBuf, TestPgError> {
    let candidates: Vec<PathBuf> = match std::env::var_os(BIN_DIR_ENV) {
        Some(dir) => vec![dir.into()],
        None => DEFAULT_BIN_DIRS.iter().map(PathBuf::from).collect(),
    };
    candidates
        .iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .cloned()
        .ok_or_else(|| {
            err(format!(
                "PostgreSQL 15 binaries (initdb, pg_ctl, psql) not found in {candidates:?}: \
                 install them with `apt-get install postgresql-15`, or set {BIN_DIR_ENV}, \
                 or point {SHARED_SERVER_ENV} at a running server"
            ))
        })
}

fn as_user_cmd(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn is_root() -> bool {
    // The owner of /proc/self is the effective uid; no libc call needed.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn chown_to(path: &Path, user: &str) -> Result<(), TestPgError> {
    let out = run(Command::new("chown").arg(user).arg(path))?;
    check(&out, "chown")
}

fn free_port() -> Result<u16, TestPgError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| err(format!("finding a free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| err(format!("finding a free port: {e}")))
}

fn run(cmd: &mut Command) -> Result<Output, TestPgError> {
    cmd.output()
        .map_err(|e| err(format!("running {:?}: {e}", cmd.get_program())))
}

fn check(out: &Output, what: &str) -> Result<(), TestPgError> {
    if out.status.success() {
        Ok(())
    } else {
        Err(err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_databases_on_one_server_are_distinct_and_usable() {
        let pg = TestPg::start().expect("a test database");
        let other = pg.create_database().unwrap();
        assert_ne!(pg.url(), other);
        let psql = bin_dir().unwrap().join("psql");
        for url in [pg.url(), other.as_str()] {
            let out = Command::new(&psql)
                .args([url, "-tAc", "SELECT current_database()"])
                .output()
                .unwrap();
            check(&out, "query").unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                url.rsplit('/').next().unwrap()
            );
        }
    }
}
