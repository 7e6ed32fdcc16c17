//! Reads what the server stored, straight from its SQLite file, opened
//! read-only (the server may still be running: WAL lets a reader in).

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Row};

/// One stored record with its batch's attribution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub session_id: Option<String>,
    pub sequence: i32,
    pub allowed: bool,
    pub method: String,
    pub url: String,
    pub matched_rule: String,
    pub conflict: bool,
    /// `confined_process_name` as the client sent it.
    pub process: String,
    pub peer_pid: i64,
    pub peer_comm: String,
    pub peer_exe: String,
    /// The workspace the delivering agent belongs to.
    pub workspace_id: String,
}

pub async fn open(database: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(database)
        .read_only(true)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("opening {} read-only: {e}", database.display()))
}

/// Every stored record, in commit order.
pub async fn records(database: &Path) -> Vec<StoredRecord> {
    let mut conn = open(database).await;
    let rows = sqlx::query(
        "SELECT r.session_id, r.sequence_number, r.allowed, r.method, r.url, r.matched_rule, \
         r.conflict, b.process, b.peer_pid, b.peer_comm, b.peer_exe, w.uuid AS workspace \
         FROM records r JOIN batches b ON b.id = r.batch_id \
         JOIN agents a ON a.id = r.agent_id JOIN workspaces w ON w.id = a.workspace_id \
         ORDER BY r.id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("reading the records");
    rows.iter()
        .map(|row| StoredRecord {
            session_id: row.get("session_id"),
            sequence: row.get("sequence_number"),
            allowed: row.get::<i64, _>("allowed") != 0,
            method: row.get("method"),
            url: row.get("url"),
            matched_rule: row.get("matched_rule"),
            conflict: row.get::<i64, _>("conflict") != 0,
            process: row.get("process"),
            peer_pid: row.get("peer_pid"),
            peer_comm: row.get("peer_comm"),
            peer_exe: row.get("peer_exe"),
            workspace_id: uuid::Uuid::from_slice(row.get::<&[u8], _>("workspace"))
                .expect("a 16-byte workspace uuid")
                .to_string(),
        })
        .collect()
}

/// How many records are stored.
pub async fn count(database: &Path) -> u64 {
    let mut conn = open(database).await;
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM records")
        .fetch_one(&mut conn)
        .await
        .expect("counting the records")
        .get(0);
    n as u64
}

/// `(session id, sequence number, rows, conflict rows)` for every stored
/// key, sorted.
pub async fn session_keys(database: &Path) -> Vec<(String, i32, u32, u32)> {
    let mut conn = open(database).await;
    let rows = sqlx::query(
        "SELECT session_id, sequence_number, COUNT(*) AS n, SUM(conflict) AS conflicts \
         FROM records WHERE session_id IS NOT NULL \
         GROUP BY session_id, sequence_number ORDER BY session_id, sequence_number",
    )
    .fetch_all(&mut conn)
    .await
    .expect("reading the session keys");
    rows.iter()
        .map(|row| {
            (
                row.get("session_id"),
                row.get("sequence_number"),
                row.get::<i64, _>("n") as u32,
                row.get::<i64, _>("conflicts") as u32,
            )
        })
        .collect()
}

/// The final sequence number each session's closing status reported.
pub async fn final_sequence_numbers(database: &Path) -> Vec<(String, Option<i64>)> {
    let mut conn = open(database).await;
    let rows =
        sqlx::query("SELECT session_id, final_sequence_number FROM sessions ORDER BY session_id")
            .fetch_all(&mut conn)
            .await
            .expect("reading the sessions");
    rows.iter()
        .map(|row| (row.get("session_id"), row.get("final_sequence_number")))
        .collect()
}
