//! The generated audit trail the read benches measure against (`query`,
//! `web`): ten workspaces, realistic URLs (popular and rare hosts, paths with
//! names and ids, query strings), written through the store's ingest.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use uuid::Uuid;
use warden_proto::domain::{AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Peer};
use warden_store::{IngestRequest, NewWorkspace, SqliteStore, Store, TokenHash, Workspace};

/// Workspaces generated.
pub const WORKSPACES: usize = 10;
/// Records per generated batch.
pub const BATCH: i64 = 1000;

/// How many records to generate: `WARDEN_BENCH_RECORDS` when it holds at
/// least one batch, else `default`.
pub fn record_count(default: i64) -> i64 {
    std::env::var("WARDEN_BENCH_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= BATCH)
        .unwrap_or(default)
}

/// Hosts of the generated URLs: some popular, many rare.
pub fn host(n: u64) -> String {
    const POPULAR: [&str; 8] = [
        "github.com",
        "api.github.com",
        "pypi.org",
        "files.pythonhosted.org",
        "registry.npmjs.org",
        "crates.io",
        "static.crates.io",
        "objects.githubusercontent.com",
    ];
    if !n.is_multiple_of(4) {
        POPULAR[(n / 4 % 8) as usize].to_owned()
    } else {
        format!("svc-{}.example{}.com", n % 977, n % 13)
    }
}

/// A realistic URL for record `n`: a host, a path with names and ids, and
/// sometimes a query string.
pub fn url(n: u64) -> String {
    // A cheap mix, so that neighbouring records differ.
    let x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    let path = match x % 5 {
        0 => format!(
            "/repos/org-{}/project-{}/pulls/{}",
            x % 300,
            x % 1700,
            x % 90_000
        ),
        1 => format!("/simple/package-{}/", x % 20_000),
        2 => format!(
            "/packages/{:02x}/{:02x}/{:016x}/pkg-{}.whl",
            x % 256,
            (x >> 8) % 256,
            x,
            x % 5000
        ),
        3 => format!(
            "/api/v1/crates/crate-{}/{}.{}.{}/download",
            x % 9000,
            x % 4,
            x % 30,
            x % 12
        ),
        _ => format!("/v2/objects/{:032x}", u128::from(x) * 0x1_0000_0001),
    };
    let query = if x.is_multiple_of(3) {
        format!("?ref={:08x}&page={}", x >> 20, x % 40)
    } else {
        String::new()
    };
    format!("https://{}{path}{query}", host(x >> 3))
}

/// A fresh SQLite database at `path` with ten workspaces and `records`
/// records, record `n` happening at `start_ns + n * step_ns` (one in ten
/// denied), written through the store's ingest in calls of 10,000 records:
/// the blocks a real server writes. Returns the workspaces.
pub async fn generate(path: &Path, records: i64, start_ns: i64, step_ns: i64) -> Vec<Workspace> {
    let at = |n: i64| Timestamp::from_nanosecond(i128::from(start_ns + n * step_ns)).unwrap();
    let store = SqliteStore::open(path).await.unwrap();
    let mut workspaces = Vec::new();
    for i in 0..WORKSPACES {
        workspaces.push(
            store
                .create_workspace(
                    NewWorkspace {
                        id: Uuid::now_v7(),
                        name: format!("ws-{i}"),
                        owner: format!("owner-{}", i % 3),
                        startup_script: String::new(),
                        agent_id: Uuid::new_v4(),
                        agent_name: "main".into(),
                        token_hash: TokenHash([i as u8; 32]),
                    },
                    Timestamp::now(),
                )
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    let per_call = 10 * BATCH;
    let mut n: i64 = 0;
    let mut call = 0usize;
    while n < records {
        let w = &workspaces[call % WORKSPACES];
        let session = format!("session-{}", call / WORKSPACES / 10);
        let mut batches = Vec::new();
        let mut in_call = 0;
        while in_call < per_call && n < records {
            let size = BATCH.min(records - n);
            let first_seq = (call / WORKSPACES % 10) as i64 * per_call + in_call;
            batches.push(IngestBatch {
                batch_id: Uuid::now_v7(),
                received_at: at(n),
                peer: Peer {
                    uid: 1000,
                    gid: 1000,
                    pid: 4242,
                    comm: "claude".into(),
                    exe: "/usr/bin/claude".into(),
                },
                logs: Some(ClientLogs {
                    session_id: Some(session.clone()),
                    confined_process_name: "claude".into(),
                    records: (0..size)
                        .map(|i| {
                            let k = (n + i) as u64;
                            AuditRecord {
                                decision: if k.is_multiple_of(10) {
                                    Decision::Deny
                                } else {
                                    Decision::Allow
                                },
                                event_time: EventTime::Known(at(n + i)),
                                method: if k.is_multiple_of(7) { "POST" } else { "GET" }.into(),
                                url: url(k),
                                matched_rule: if k.is_multiple_of(10) {
                                    String::new()
                                } else {
                                    format!("domain={}", host(k >> 3))
                                },
                                sequence_number: (first_seq + i) as i32,
                            }
                        })
                        .collect(),
                    ..Default::default()
                }),
                client_status: Vec::new(),
                agent_drops: Vec::new(),
            });
            n += size;
            in_call += size;
        }
        let outcome = store
            .ingest(Arc::new(IngestRequest {
                agent_id: w.agent.id,
                at: at(n),
                batches,
            }))
            .await
            .unwrap();
        // As a server's printer would: the server started below then has no
        // lines to print again.
        store.mark_printed(outcome.record_ids).await.unwrap();
        call += 1;
    }
    store.close().await.unwrap();
    let bytes = std::fs::metadata(path).unwrap().len();
    println!(
        "generated {records} records in {} workspaces in {:.1} s ({:.0} records/s through ingest); \
         database {:.1} MB, {:.1} bytes per record (no search index: a URL search reads blocks)",
        WORKSPACES,
        started.elapsed().as_secs_f64(),
        records as f64 / started.elapsed().as_secs_f64(),
        bytes as f64 / 1e6,
        bytes as f64 / records as f64,
    );
    workspaces
}
