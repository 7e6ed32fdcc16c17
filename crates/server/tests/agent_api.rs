//! The agent API end to end: a real `run()` on an ephemeral port, driven by
//! a tonic client. Authentication, version checks, limits, idempotent
//! ingest and the lines it prints.

mod support;

use std::sync::Arc;

use support::*;
use tonic::Code;
use warden_proto::wire::{self, agentapi};
use warden_server::{Config, LineFormat};
use warden_store::{RecordQuery, SqliteStore, Store};

/// Opens the store of a stopped server to look at what it committed.
async fn stored(dir: &std::path::Path) -> Vec<warden_store::StoredRecord> {
    let store = SqliteStore::open(&dir.join("warden.db")).await.unwrap();
    let records = store
        .records(RecordQuery {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    store.close().await.unwrap();
    records
}

fn expected_line(ws: &warden_api::workspaces::WorkspaceToken, seq: i32) -> String {
    format!(
        "[API] 2025-12-08 20:58:46.093 [warn] boundary: workspace.id={} decision=deny http.method=\"GET\" http.url=\"https://example.com/{seq}\" time=\"2025-12-08T20:58:46.093456789Z\" workspace.name=\"{}\" workspace.owner=\"alice\" agent.name=\"main\" session.id=\"{SESSION}\" sequence={seq} process=\"claude\"\n",
        ws.workspace_id, ws.workspace_name
    )
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let (server, dir) = Server::start().await;
    let ws = server.workspace("dev").await;

    let mut agent = server.agent(&ws.agent_token).await;
    agent.token = None;
    assert_eq!(
        agent.manifest().await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        agent
            .report(vec![batch(None, logs(0..1))])
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    // Malformed, and well formed but wrong.
    for token in [
        "nope".to_owned(),
        ws.agent_token.replace("wat1_", "wat2_"),
        {
            let mut t = ws.agent_token.clone();
            let last = t.pop().unwrap();
            t.push(if last == '0' { '1' } else { '0' });
            t
        },
    ] {
        agent.token = Some(token);
        let status = agent
            .report(vec![batch(None, logs(0..1))])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(
            !status.message().contains(&ws.agent_token[10..]),
            "{}",
            status.message()
        );
    }
    let exposition = server.get("/metrics").await.1;
    assert_eq!(
        metric(
            &exposition,
            "warden_agent_rpc_errors_total{method=\"ReportBoundaryLogs\",code=\"unauthenticated\"}"
        ),
        Some(4.0)
    );
    let lines = server.lines.clone();
    server.stop().await.unwrap();
    assert!(lines.lines().is_empty());
    assert!(stored(dir.path()).await.is_empty());
}

#[tokio::test]
async fn the_manifest_describes_the_authenticated_agent() {
    let (server, _dir) = Server::start().await;
    let ws = server
        .admin()
        .create_workspace(&warden_api::workspaces::CreateWorkspace {
            name: "dev".into(),
            owner: "alice".into(),
            agent_name: Some("box".into()),
            startup_script: Some("echo ready".into()),
        })
        .await
        .unwrap();
    let mut agent = server.agent(&ws.agent_token).await;
    let manifest = agent.manifest().await.unwrap();
    assert_eq!(manifest.workspace_id, ws.workspace_id.to_string());
    assert_eq!(manifest.workspace_name, "dev");
    assert_eq!(manifest.owner_name, "alice");
    assert_eq!(manifest.agent_name, "box");
    assert_eq!(manifest.startup_script, "echo ready");
    let listed = server.admin().list_workspaces().await.unwrap();
    assert!(listed[0].last_contact_at.is_some());
    assert_eq!(listed[0].agent_id.to_string(), manifest.agent_id);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_rotated_token_stops_working_at_once() {
    let (server, dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut old = server.agent(&ws.agent_token).await;
    old.report(vec![batch(None, logs(0..1))]).await.unwrap();

    let rotated = server.admin().rotate_token("dev").await.unwrap();
    assert_ne!(rotated.agent_token, ws.agent_token);
    assert_eq!(rotated.workspace_id, ws.workspace_id);
    assert_eq!(
        old.report(vec![batch(None, logs(1..2))])
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        old.manifest().await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let mut new = server.agent(&rotated.agent_token).await;
    new.report(vec![batch(None, logs(2..3))]).await.unwrap();
    server.stop().await.unwrap();
    assert_eq!(stored(dir.path()).await.len(), 2);
}

#[tokio::test]
async fn a_deleted_workspace_is_revoked_and_its_records_stay() {
    let (server, dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    agent
        .report(vec![batch(Some(SESSION), logs(0..3))])
        .await
        .unwrap();
    let deleted = server.admin().delete_workspace("dev").await.unwrap();
    assert_eq!(deleted.workspace_id, ws.workspace_id);
    assert_eq!(
        agent
            .report(vec![batch(None, logs(3..4))])
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        agent.manifest().await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert!(server.admin().list_workspaces().await.unwrap().is_empty());
    server.stop().await.unwrap();
    let records = stored(dir.path()).await;
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.workspace_id == ws.workspace_id));
}

#[tokio::test]
async fn only_2_7_is_accepted_and_refusals_name_both_versions() {
    let (server, _dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    for version in [
        Some("2.6"),
        Some("2.8"),
        Some("2.9"),
        Some("3.0"),
        Some("1.9"),
        Some("banana"),
        None,
    ] {
        agent.version = version.map(str::to_owned);
        let status = agent
            .report(vec![batch(None, logs(0..1))])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{version:?}");
        assert!(status.message().contains("2.7"), "{}", status.message());
        if let Some(v) = version {
            assert!(status.message().contains(v), "{}", status.message());
        }
        assert_eq!(
            agent.manifest().await.unwrap_err().code(),
            Code::FailedPrecondition
        );
    }
    // A newer minor, in the reference's words.
    agent.version = Some("2.8".into());
    let status = agent.manifest().await.unwrap_err();
    assert_eq!(
        status.message(),
        "server is at version 2.7, behind requested minor version 2.8"
    );
    agent.version = Some("2.7".into());
    agent.manifest().await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_batch_is_stored_and_printed_once() {
    let (server, dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    let b = batch(Some(SESSION), logs(0..3));
    let response = agent.report(vec![b.clone()]).await.unwrap();
    assert_eq!(
        response.results,
        vec![agentapi::BatchResult {
            batch_id: b.batch_id.clone(),
            stored: 3,
            duplicates: 0,
            conflicts: 0,
            rejected: 0,
            already_committed: false,
        }]
    );
    let lines = server.lines.wait_for(3).await;
    assert_eq!(
        lines,
        (0..3).map(|s| expected_line(&ws, s)).collect::<Vec<_>>()
    );

    // Sent again (the agent lost the ack): acknowledged, nothing stored or printed.
    let again = agent.report(vec![b.clone()]).await.unwrap();
    assert!(again.results[0].already_committed);
    assert_eq!(
        (again.results[0].stored, again.results[0].duplicates),
        (0, 3)
    );
    let metrics = server.get("/metrics").await.1;
    assert_eq!(
        metric(&metrics, "warden_records_ingested_total{decision=\"deny\"}"),
        Some(3.0)
    );
    assert_eq!(
        metric(&metrics, "warden_records_duplicate_total"),
        Some(3.0)
    );
    assert_eq!(metric(&metrics, "warden_batches_resent_total"), Some(1.0));

    let lines_server = server.lines.clone();
    server.stop().await.unwrap();
    assert_eq!(
        lines_server.lines().len(),
        3,
        "the re-sent batch printed nothing"
    );
    let records = stored(dir.path()).await;
    assert_eq!(records.len(), 3);
    let r = &records[0];
    assert_eq!(
        (
            r.peer.uid,
            r.peer.pid,
            r.peer.comm.as_str(),
            r.peer.exe.as_str()
        ),
        (1000, 77, "boundary", "/usr/bin/boundary")
    );
    assert_eq!(r.process, "claude");
    assert_eq!(r.workspace_id, ws.workspace_id);
}

#[tokio::test]
async fn the_same_records_in_two_batches_are_stored_and_printed_once() {
    let (server, dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    agent
        .report(vec![batch(Some(SESSION), logs(0..4))])
        .await
        .unwrap();
    // The client re-sent 2..4 after a write error, then 4..6 are new.
    let response = agent
        .report(vec![batch(Some(SESSION), logs(2..6))])
        .await
        .unwrap();
    let r = &response.results[0];
    assert_eq!(
        (r.stored, r.duplicates, r.conflicts, r.already_committed),
        (2, 2, 0, false)
    );
    let lines = server.lines.clone();
    server.stop().await.unwrap();
    assert_eq!(
        lines.lines(),
        (0..6).map(|s| expected_line(&ws, s)).collect::<Vec<_>>()
    );
    assert_eq!(stored(dir.path()).await.len(), 6);
}

#[tokio::test]
async fn a_conflicting_record_is_stored_flagged_and_counted() {
    let (server, dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    agent
        .report(vec![batch(Some(SESSION), logs(0..2))])
        .await
        .unwrap();
    let forged = log(1, false, "POST", "https://evil.example/forged", "");
    let response = agent
        .report(vec![batch(Some(SESSION), vec![forged])])
        .await
        .unwrap();
    let r = &response.results[0];
    assert_eq!((r.stored, r.duplicates, r.conflicts), (0, 0, 1));
    let lines = server.lines.wait_for(3).await;
    assert!(
        lines[2].contains("http.method=\"POST\" http.url=\"https://evil.example/forged\""),
        "{}",
        lines[2]
    );
    assert!(lines[2].contains("sequence=1 "), "{}", lines[2]);
    let metrics = server.get("/metrics").await.1;
    assert_eq!(metric(&metrics, "warden_records_conflict_total"), Some(1.0));
    server.stop().await.unwrap();
    let records = stored(dir.path()).await;
    assert_eq!(records.len(), 3);
    assert_eq!(records.iter().filter(|r| r.conflict).count(), 1);
    assert!(records[2].conflict && records[2].url == "https://evil.example/forged");
}

#[tokio::test]
async fn more_than_1000_records_are_refused_whole() {
    let (server, dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    // 1001 over two batches.
    let status = agent
        .report(vec![
            batch(Some(SESSION), logs(0..600)),
            batch(Some(SESSION), logs(600..1001)),
        ])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("1001") && status.message().contains("1000"),
        "{}",
        status.message()
    );
    // Exactly 1000 is fine.
    let ok = agent
        .report(vec![batch(Some(SESSION), logs(0..1000))])
        .await
        .unwrap();
    assert_eq!(ok.results[0].stored, 1000);
    let lines = server.lines.clone();
    server.stop().await.unwrap();
    assert_eq!(lines.lines().len(), 1000);
    assert_eq!(stored(dir.path()).await.len(), 1000);
}

#[tokio::test]
async fn a_message_over_the_size_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config: Config = config(dir.path(), LineFormat::Text);
    config.limits.max_message_bytes = 64 * 1024;
    let server = Server::start_with(config, dir.path(), Capture::new()).await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    let huge = log(
        0,
        true,
        "GET",
        &format!("https://example.com/{}", "a".repeat(100_000)),
        "",
    );
    let status = agent
        .report(vec![batch(None, vec![huge])])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let metrics = server.get("/metrics").await.1;
    assert_eq!(
        metric(
            &metrics,
            "warden_agent_rpc_errors_total{method=\"ReportBoundaryLogs\",code=\"out_of_range\"}"
        ),
        Some(1.0)
    );
    // The server is fine afterwards.
    agent.report(vec![batch(None, logs(0..1))]).await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_record_without_request_is_skipped_and_counted() {
    let (server, dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    let mut sent = logs(0..2);
    sent.push(wire::BoundaryLog {
        allowed: true,
        time: Some(event_time()),
        resource: None,
        sequence_number: 2,
    });
    let response = agent
        .report(vec![batch(Some(SESSION), sent)])
        .await
        .unwrap();
    assert_eq!(
        (response.results[0].stored, response.results[0].rejected),
        (2, 1)
    );
    let metrics = server.get("/metrics").await.1;
    assert_eq!(
        metric(
            &metrics,
            "warden_records_rejected_total{reason=\"no_request\"}"
        ),
        Some(1.0)
    );
    let listed = server.admin().list_workspaces().await.unwrap();
    let losses = &listed[0].losses;
    assert_eq!(losses.len(), 1);
    assert_eq!(
        (
            losses[0].source.as_str(),
            losses[0].reason.as_str(),
            losses[0].records
        ),
        ("server", "no_request", 1)
    );
    let lines = server.lines.clone();
    server.stop().await.unwrap();
    assert_eq!(lines.lines().len(), 2, "never printed as a request");
    assert_eq!(stored(dir.path()).await.len(), 2);
}

#[tokio::test]
async fn malformed_batches_are_invalid_arguments() {
    let (server, dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    let mut bad_id = batch(None, logs(0..1));
    bad_id.batch_id = "not-a-uuid\n[API] forged".into();
    let status = agent
        .report(vec![batch(None, logs(0..1)), bad_id])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("batch 1:"),
        "{}",
        status.message()
    );
    let mut no_time = batch(None, logs(0..1));
    no_time.received_at = None;
    assert_eq!(
        agent.report(vec![no_time]).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut huge_id = batch(None, logs(0..1));
    huge_id.batch_id = "x".repeat(10_000);
    let status = agent.report(vec![huge_id]).await.unwrap_err();
    assert!(status.message().len() < 200);
    server.stop().await.unwrap();
    assert!(
        stored(dir.path()).await.is_empty(),
        "a refused call stores nothing"
    );
}

#[tokio::test]
async fn client_status_and_agent_drops_are_counted_once() {
    let (server, _dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    let mut b = batch(Some(SESSION), logs(0..1));
    b.client_status.push(agentapi::ClientStatus {
        session_id: SESSION.into(),
        status: Some(wire::BoundaryStatus {
            dropped_channel_full: 4,
            dropped_batch_full: 1,
            final_sequence_number: Some(9),
            ..Default::default()
        }),
    });
    b.agent_drops.push(agentapi::AgentDrop {
        reason: "spool_full".into(),
        records: 7,
        frames: 1,
        ..Default::default()
    });
    agent.report(vec![b.clone()]).await.unwrap();
    agent.report(vec![b]).await.unwrap();
    let metrics = server.get("/metrics").await.1;
    assert_eq!(
        metric(
            &metrics,
            "warden_client_dropped_records_total{reason=\"channel_full\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "warden_client_dropped_records_total{reason=\"batch_full\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "warden_agent_dropped_records_total{reason=\"spool_full\"}"
        ),
        Some(7.0)
    );
    let listed = server.admin().list_workspaces().await.unwrap();
    let total: u64 = listed[0].losses.iter().map(|l| l.records).sum();
    assert_eq!(total, 12);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn lines_match_the_spec_for_every_quote_vector() {
    let (server, _dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    let vectors: Vec<(String, String)> = include_str!("data/quote-vectors.tsv")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (input, expected) = l.split_once('\t').unwrap();
            (
                serde_json::from_str::<String>(input).unwrap(),
                expected.to_owned(),
            )
        })
        .collect();
    assert!(vectors.len() >= 12);
    // Each vector as the URL and as the method of an allowed record with a
    // rule, once with no time and no session.
    let sent: Vec<_> = vectors
        .iter()
        .enumerate()
        .map(|(i, (input, _))| log(i as i32, true, input, input, "domain=example.com"))
        .collect();
    agent
        .report(vec![batch(Some(SESSION), sent)])
        .await
        .unwrap();
    let mut untimed = log(0, false, "GET", &vectors[4].0, "");
    untimed.time = None;
    let mut no_session = batch(None, vec![untimed]);
    no_session.logs.as_mut().unwrap().confined_process_name = String::new();
    let before = jiff::Timestamp::now();
    agent.report(vec![no_session]).await.unwrap();
    let after = jiff::Timestamp::now();

    let lines = server.lines.wait_for(vectors.len() + 1).await;
    for (i, (_, expected)) in vectors.iter().enumerate() {
        assert_eq!(
            lines[i],
            format!(
                "[API] 2025-12-08 20:58:46.093 [info] boundary: workspace.id={} decision=allow http.method={expected} http.url={expected} time=\"2025-12-08T20:58:46.093456789Z\" workspace.name=\"dev\" workspace.owner=\"alice\" agent.name=\"main\" session.id=\"{SESSION}\" sequence={i} http.matched_rule=\"domain=example.com\" process=\"claude\"\n",
                ws.workspace_id
            )
        );
    }
    // Without an event time the line shows when the control plane took the
    // call (its own clock, not the agent's receive time).
    let untimed = &lines[vectors.len()];
    let (stamp, time) = received_time(untimed, before, after);
    assert_eq!(
        *untimed,
        format!(
            "[API] {stamp} [warn] boundary: workspace.id={} decision=deny http.method=\"GET\" http.url={} time=\"{time}\" workspace.name=\"dev\" workspace.owner=\"alice\" agent.name=\"main\" time.received=true\n",
            ws.workspace_id, vectors[4].1
        )
    );
    // No line was broken by what it carried.
    assert_eq!(
        server.lines.lines().concat().matches('\n').count(),
        vectors.len() + 1
    );
    server.stop().await.unwrap();
}

/// The `time="..."` of a line, checked to lie within `before..=after`, and
/// the leading stamp it makes (`YYYY-MM-DD HH:MM:SS.mmm`, truncated).
fn received_time(line: &str, before: jiff::Timestamp, after: jiff::Timestamp) -> (String, String) {
    let time = line
        .split("time=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no time in {line}"))
        .to_owned();
    let t: jiff::Timestamp = time.parse().unwrap();
    assert!(
        before <= t && t <= after,
        "{t} not within {before}..{after}"
    );
    let frac = time[19..].trim_start_matches('.').trim_end_matches('Z');
    let stamp = format!(
        "{} {}.{:0<3}",
        &time[..10],
        &time[11..19],
        &frac[..frac.len().min(3)]
    );
    (stamp, time)
}

#[tokio::test]
async fn json_mode_prints_one_object_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), LineFormat::Json).await;
    let ws = server.workspace("dev").await;
    let mut agent = server.agent(&ws.agent_token).await;
    let before = jiff::Timestamp::now();
    agent
        .report(vec![batch(Some(SESSION), logs(0..2))])
        .await
        .unwrap();
    let after = jiff::Timestamp::now();
    let lines = server.lines.wait_for(2).await;
    let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    // The control plane's own receive time.
    let received: jiff::Timestamp = v["received_at"].as_str().unwrap().parse().unwrap();
    assert!(before <= received && received <= after, "{received}");
    assert_eq!(
        v,
        serde_json::json!({
            "ts": "2025-12-08T20:58:46.093456789Z",
            "level": "warn",
            "msg": "boundary",
            "workspace_id": ws.workspace_id.to_string(),
            "workspace_name": "dev",
            "workspace_owner": "alice",
            "agent_name": "main",
            "decision": "deny",
            "http_method": "GET",
            "http_url": "https://example.com/1",
            "event_time": "2025-12-08T20:58:46.093456789Z",
            "received_at": v["received_at"],
            "session_id": SESSION,
            "sequence": 1,
            "process": "claude"
        })
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn records_are_filed_under_the_authenticated_agent_only() {
    let (server, dir) = Server::start().await;
    let dev = server.workspace("dev").await;
    let ops = server.workspace("ops").await;
    let mut agent = server.agent(&ops.agent_token).await;
    // Nothing in a batch names a workspace; the token decides.
    agent
        .report(vec![batch(Some(SESSION), logs(0..2))])
        .await
        .unwrap();
    let lines = server.lines.wait_for(2).await;
    assert!(
        lines
            .iter()
            .all(|l| l.contains(&format!("workspace.id={} ", ops.workspace_id)))
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.contains(&dev.workspace_id.to_string()))
    );
    server.stop().await.unwrap();
    assert!(
        stored(dir.path())
            .await
            .iter()
            .all(|r| r.workspace_id == ops.workspace_id)
    );
}

#[tokio::test]
async fn acknowledged_batches_survive_a_shutdown_under_load() {
    let (server, dir) = Server::start().await;
    let ws = server.workspace("dev").await;
    let url = server.url();
    let token = ws.agent_token.clone();
    // Four agents send until the server goes away; every acknowledged
    // batch must be stored and printed exactly once.
    let mut senders = Vec::new();
    for n in 0..4 {
        let url = url.clone();
        let token = token.clone();
        senders.push(tokio::spawn(async move {
            let mut agent = Agent::connect(&url, &token).await;
            let mut acked = Vec::new();
            for i in 0..10_000 {
                let session = format!("session-{n}");
                let b = batch(Some(&session), logs(i * 10..i * 10 + 10));
                match agent.report(vec![b.clone()]).await {
                    Ok(_) => acked.push(b),
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    // Let every sender get some batches through, then stop.
    server.lines.wait_for(400).await;
    let lines = server.lines.clone();
    server.stop().await.unwrap();
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    let acked_records: usize = acked
        .iter()
        .map(|b| b.logs.as_ref().unwrap().logs.len())
        .sum();
    let records = stored(dir.path()).await;
    // Calls in flight at the stop may have committed without their ack
    // arriving; none may be lost or doubled.
    assert!(
        records.len() >= acked_records,
        "{} < {acked_records}",
        records.len()
    );
    assert_eq!(
        lines.lines().len(),
        records.len(),
        "one line per stored record"
    );
    let ids: std::collections::HashSet<_> =
        records.iter().map(|r| r.batch_id.to_string()).collect();
    assert!(acked.iter().all(|b| ids.contains(&b.batch_id)));
}

#[tokio::test]
async fn health_and_metrics_answer_over_http() {
    let (server, _dir) = Server::start().await;
    assert_eq!(server.get("/healthz").await, (200, "ok\n".to_owned()));
    let (status, body) = server.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE warden_ingest_duration_seconds histogram"),
        "{body}"
    );
    // Prometheus text by default; OpenMetrics for a scraper that asks.
    assert!(
        body.contains("# TYPE warden_records_duplicate_total counter\n"),
        "{body}"
    );
    assert!(!body.contains("# EOF"));
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/metrics")
        .header("host", server.addr.to_string())
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        body.contains("# TYPE warden_records_duplicate counter\n"),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn run_refuses_plain_http_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let result = warden_server::run(
        config(dir.path(), LineFormat::Text),
        listener,
        tokio_util::sync::CancellationToken::new(),
        Arc::new(warden_server::WriterSink::new(Vec::new())),
    )
    .await;
    let err = result.unwrap_err();
    assert!(err.is_config(), "{err}");
    assert!(err.to_string().contains("--insecure-listen"), "{err}");
}
