//! Reads what the server stored, through the store's own API on its SQLite
//! file (the server may still be running: WAL lets a second connection in).

use std::collections::BTreeMap;
use std::path::Path;

use warden_store::{Order, RecordQuery, SqliteStore, Store};

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

pub async fn open(database: &Path) -> SqliteStore {
    SqliteStore::open(database)
        .await
        .unwrap_or_else(|e| panic!("opening {}: {}", database.display(), e.chain()))
}

/// Every stored record as the store returns it, in commit order.
async fn all(database: &Path) -> Vec<warden_store::StoredRecord> {
    let store = open(database).await;
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .records(RecordQuery {
                after_id: after,
                order: Order::OldestFirst,
                limit: 50_000,
                ..RecordQuery::default()
            })
            .await
            .expect("reading the records");
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        out.extend(page);
    }
    store.close().await.expect("closing the store");
    out
}

/// Every stored record, in commit order.
pub async fn records(database: &Path) -> Vec<StoredRecord> {
    all(database)
        .await
        .into_iter()
        .map(|r| StoredRecord {
            session_id: r.session_id,
            sequence: r.sequence_number,
            allowed: r.decision.is_allowed(),
            method: r.method,
            url: r.url,
            matched_rule: r.matched_rule,
            conflict: r.conflict,
            process: r.process,
            peer_pid: i64::from(r.peer.pid),
            peer_comm: r.peer.comm,
            peer_exe: r.peer.exe,
            workspace_id: r.workspace_id.to_string(),
        })
        .collect()
}

/// How many records are stored.
pub async fn count(database: &Path) -> u64 {
    all(database).await.len() as u64
}

/// `(session id, sequence number, rows, conflict rows)` for every stored
/// key, sorted.
pub async fn session_keys(database: &Path) -> Vec<(String, i32, u32, u32)> {
    let mut keys: BTreeMap<(String, i32), (u32, u32)> = BTreeMap::new();
    for r in all(database).await {
        if let Some(session) = r.session_id {
            let k = keys.entry((session, r.sequence_number)).or_default();
            k.0 += 1;
            k.1 += u32::from(r.conflict);
        }
    }
    keys.into_iter()
        .map(|((session, seq), (rows, conflicts))| (session, seq, rows, conflicts))
        .collect()
}

/// The final sequence number each session's closing status reported, over
/// every live workspace's sessions.
pub async fn final_sequence_numbers(database: &Path) -> Vec<(String, Option<i64>)> {
    let store = open(database).await;
    let mut out = Vec::new();
    for w in store.list_workspaces().await.expect("listing workspaces") {
        for s in store.sessions(w.id).await.expect("listing sessions") {
            out.push((s.summary.session_id, s.summary.final_sequence_number));
        }
    }
    store.close().await.expect("closing the store");
    out.sort();
    out
}
