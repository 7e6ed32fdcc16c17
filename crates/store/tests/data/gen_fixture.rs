//! Kept for reference (not compiled here): the generator of v3.db and
//! v3.expected, run as a test of the release that kept a row per record
//! (commit 5ae091d, `crates/store/tests/gen_fixture.rs` there).
//!
//! Writes the upgrade fixture with this release's store API: a small SQLite
//! database (migrations 0001-0003, a row per record) and what this release
//! answers about it, for the next release's upgrade test.
//!
//! `WARDEN_FIXTURE_DIR=DIR cargo test -p warden-store --test gen_fixture`

use std::fmt::Write;
use std::sync::Arc;

use jiff::Timestamp;
use uuid::Uuid;
use warden_proto::domain::{
    AgentDrop, AuditRecord, ClientLogs, ClientStatus, Decision, EventTime, IngestBatch, Peer,
    RecordRejection,
};
use warden_store::{IngestRequest, NewWorkspace, RecordQuery, SqliteStore, Store, TokenHash};

fn ts(secs: i64, nanos: i32) -> Timestamp {
    Timestamp::new(secs, nanos).unwrap()
}

fn batch(id: u128, session: Option<&str>, received: Timestamp, records: Vec<AuditRecord>) -> IngestBatch {
    IngestBatch {
        batch_id: Uuid::from_u128(id),
        received_at: received,
        peer: Peer {
            uid: 1000,
            gid: 1000 + (id as u32 % 3),
            pid: 4000 + id as i32,
            comm: "curl".into(),
            exe: "/usr/bin/curl".into(),
        },
        logs: Some(ClientLogs {
            session_id: session.map(str::to_owned),
            confined_process_name: format!("proc-{}", id % 2),
            records,
            rejected: Vec::new(),
            ..Default::default()
        }),
        client_status: Vec::new(),
        agent_drops: Vec::new(),
    }
}

fn rec(seq: i32, t: EventTime) -> AuditRecord {
    let hosts = ["github.com", "evil.example", "pypi.org", "tracker.example"];
    let host = hosts[seq as usize % hosts.len()];
    AuditRecord {
        decision: Decision::from_allowed(seq % 3 != 0),
        event_time: t,
        method: if seq % 5 == 0 { "POST" } else { "GET" }.into(),
        url: format!("https://{host}/repo/{}/file-{seq}?q={}", seq * 7, seq % 11),
        matched_rule: if seq % 3 != 0 {
            format!("domain={host}")
        } else {
            String::new()
        },
        sequence_number: seq,
    }
}

#[tokio::test]
async fn write_the_fixture() {
    let Some(dir) = std::env::var_os("WARDEN_FIXTURE_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let path = dir.join("v3.db");
    let _ = std::fs::remove_file(&path);
    let store = SqliteStore::open(&path).await.unwrap();
    let mut ws = Vec::new();
    for (i, name) in ["dev", "ops"].iter().enumerate() {
        ws.push(
            store
                .create_workspace(
                    NewWorkspace {
                        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + i as u128),
                        name: (*name).into(),
                        owner: "alice".into(),
                        startup_script: String::new(),
                        agent_id: Uuid::from_u128(0xa000 + i as u128),
                        agent_name: "main".into(),
                        token_hash: TokenHash([7; 32]),
                    },
                    ts(1_765_000_000, 0),
                )
                .await
                .unwrap(),
        );
    }
    let request = |w: usize, at: Timestamp, batches| {
        Arc::new(IngestRequest {
            agent_id: ws[w].agent.id,
            at,
            batches,
        })
    };
    let base = 1_765_227_526;
    // Long ago: purged below, its session keeps the counts.
    let old: Vec<_> = (0..10).map(|s| rec(s, EventTime::Known(ts(1_700_000_000 + s as i64, 0)))).collect();
    store
        .ingest(request(0, ts(1_700_000_100, 0), vec![batch(1, Some("old"), ts(1_700_000_050, 0), old)]))
        .await
        .unwrap();
    // A session in two calls, with a missing and an impossible event time.
    let mut first: Vec<_> = (0..150)
        .map(|s| rec(s, EventTime::Known(ts(base + s as i64, 1_000 * s))))
        .collect();
    first[7].event_time = EventTime::Missing;
    first[8].event_time = EventTime::OutOfRange { seconds: i64::MAX, nanos: -5 };
    let mut b2 = batch(2, Some("s1"), ts(base + 200, 5), first);
    b2.logs.as_mut().unwrap().rejected.push(RecordRejection::NoRequest { sequence_number: 150 });
    b2.client_status.push(ClientStatus {
        session_id: Some("s1".into()),
        dropped_channel_full: 3,
        dropped_batch_full: 1,
        final_sequence_number: None,
        ..Default::default()
    });
    b2.agent_drops.push(AgentDrop { reason: "spool_full".into(), records: 4, frames: 1 });
    store.ingest(request(0, ts(base + 201, 0), vec![b2])).await.unwrap();
    let second: Vec<_> = (151..300)
        .map(|s| rec(s, EventTime::Known(ts(base + s as i64, 0))))
        .collect();
    let mut b3 = batch(3, Some("s1"), ts(base + 400, 0), second);
    b3.client_status.push(ClientStatus {
        session_id: Some("s1".into()),
        dropped_channel_full: 0,
        dropped_batch_full: 0,
        final_sequence_number: Some(305),
        ..Default::default()
    });
    // A conflict (seq 5 with another URL) and a duplicate (seq 6), no session,
    // and another workspace in the same call order.
    let mut conflict = rec(5, EventTime::Known(ts(base + 5, 5_000)));
    conflict.url = "https://evil.example/forged".into();
    let dup = rec(6, EventTime::Known(ts(base + 6, 6_000)));
    let b4 = batch(4, Some("s1"), ts(base + 401, 0), vec![conflict, dup]);
    let b5 = batch(5, None, ts(base + 402, 0), (0..3).map(|s| rec(s, EventTime::Missing)).collect());
    store.ingest(request(0, ts(base + 403, 0), vec![b3, b4, b5])).await.unwrap();
    let b6 = batch(6, Some("s2"), ts(base + 500, 0), (0..50).map(|s| rec(s, EventTime::Known(ts(base + 500 + s as i64, 0)))).collect());
    store.ingest(request(1, ts(base + 501, 0), vec![b6])).await.unwrap();

    // Every line printed but the last 20.
    let mut due = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.unprinted_records(cursor, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(last.id);
        due.extend(page.iter().map(|r| r.id));
    }
    due.sort_unstable();
    let keep = due.split_off(due.len() - 20);
    store.mark_printed(due).await.unwrap();
    // Retention of the oldest batch.
    while !store.purge_records_before(ts(1_700_000_500, 0), 1000).await.unwrap().is_empty() {}

    // What this release answers.
    let mut out = String::new();
    let records = store.records(RecordQuery { limit: 100_000, ..Default::default() }).await.unwrap();
    for r in &records {
        writeln!(
            out,
            "record\t{}\t{}\t{}\t{:?}\t{}\t{}\t{}\t{:?}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.id,
            r.workspace_name,
            r.batch_id,
            r.session_id,
            r.sequence_number,
            r.decision.as_str(),
            r.conflict,
            r.event_time,
            r.received_at.as_nanosecond(),
            r.committed_at.as_nanosecond(),
            r.method,
            r.url,
            r.matched_rule,
            r.process,
            r.peer.uid,
            r.peer.gid,
            r.peer.pid,
            r.peer.exe,
        )
        .unwrap();
    }
    for w in &ws {
        for s in store.sessions(w.id).await.unwrap() {
            let m = &s.summary;
            writeln!(
                out,
                "session\t{}\t{}\t{}\t{}\t{}\t{:?}\t{:?}\t{:?}\t{}\t{}\t{}\t{:?}\t{:?}",
                w.name, m.session_id, m.records, m.conflicts, m.distinct_sequence_numbers,
                m.first_sequence_number, m.last_sequence_number, m.final_sequence_number,
                m.purged, m.reported_losses(), m.missing(), s.first_record_id, s.last_record_id
            )
            .unwrap();
        }
        for l in store.workspace_losses(w.id).await.unwrap() {
            writeln!(out, "loss\t{}\t{}\t{}\t{}\t{}", w.name, l.source.as_str(), l.reason, l.records, l.frames).unwrap();
        }
    }
    let unprinted = store.unprinted_records(None, 1000).await.unwrap();
    let ids: Vec<String> = unprinted.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(unprinted.len(), keep.len());
    writeln!(out, "unprinted\t{}", ids.join(",")).unwrap();
    store.close().await.unwrap();
    std::fs::write(dir.join("v3.expected"), out).unwrap();
}
