//! The hardening report's first finding, end to end and scaled down: an
//! agent with a 4 MiB spool under `drop_oldest`, the control plane down,
//! one session writing far more than fits (tag-2 frames of 200 records, a
//! status report with client drops in the middle, a closing status), the
//! control plane back. Every record the session sent must be either stored
//! or reported lost, for that session, and the session report must say
//! which sequence numbers the agent lost: stored + reported = sent, nothing
//! unexplained.

mod support;

use std::collections::BTreeSet;

use support::agent::AgentSetup;
use support::agent_support::{AckClient, frame};
use support::process::BoundaryLines;
use support::server::ServerProcess;
use support::{dirs, store};
use warden_proto::codec::{Frame, Tag};
use warden_proto::wire::{
    BoundaryLog, BoundaryStatus, ReportBoundaryLogsRequest, Timestamp, boundary_log, frame_ack,
};

/// Sequence numbers the session assigns, in frames of [`PER_FRAME`]: about
/// 3.5 times what the spool holds.
const RECORDS: i32 = 100_000;
const PER_FRAME: i32 = 200;
/// Numbers the client drops itself (never sent, reported in a status).
const CLIENT_DROPPED: std::ops::Range<i32> = 50_000..50_017;

fn log(seq: i32) -> BoundaryLog {
    BoundaryLog {
        allowed: seq % 5 != 0,
        time: Some(Timestamp {
            seconds: 1_765_227_526,
            nanos: seq,
        }),
        resource: Some(boundary_log::Resource::HttpRequest(
            boundary_log::HttpRequest {
                method: "GET".into(),
                url: format!("https://drop.example/{seq}/{}", "p".repeat(100)),
                matched_rule: String::new(),
            },
        )),
        sequence_number: seq,
    }
}

fn status(channel_full: i64, final_sequence_number: Option<i64>) -> Vec<u8> {
    frame(
        Tag::Envelope,
        &Frame::Status(BoundaryStatus {
            dropped_channel_full: channel_full,
            final_sequence_number,
            ..Default::default()
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_under_drop_oldest_loses_nothing_without_saying_which() {
    let dirs = dirs();
    let mut server = ServerProcess::start(&dirs.server, &[], BoundaryLines::Count).await;
    let ws = server.create_workspace("drops", "dana", &[]).await;
    let mut setup = AgentSetup::new(&server.url, &ws.token, &dirs.agent, &dirs.socket);
    setup.extra_args = [
        "--spool-max-bytes",
        "4194304",
        "--spool-full-policy",
        "drop_oldest",
    ]
    .map(Into::into)
    .to_vec();
    setup.shutdown_grace = "60s";
    let mut agent = setup.start(&[]).await;
    server.stop().await;

    // One session, acknowledged so the test knows when each frame is in
    // the spool (the agent never waits under drop_oldest).
    let session = uuid::Uuid::new_v4().to_string();
    let mut client = AckClient::connect(&dirs.socket).await;
    let frames = RECORDS / PER_FRAME;
    for f in 0..frames {
        let request = ReportBoundaryLogsRequest {
            logs: (f * PER_FRAME..(f + 1) * PER_FRAME)
                .filter(|seq| !CLIENT_DROPPED.contains(seq))
                .map(log)
                .collect(),
            session_id: session.clone(),
            confined_process_name: "curl".into(),
            ..Default::default()
        };
        client
            .send(&frame(Tag::Envelope, &Frame::Logs(request)))
            .await;
        if f == frames / 2 {
            client
                .send(&status(CLIENT_DROPPED.len() as i64, None))
                .await;
        }
    }
    client.send(&status(0, Some(i64::from(RECORDS) - 1))).await;
    for _ in 0..frames + 2 {
        let ack = client.ack().await;
        assert_eq!(ack.outcome, frame_ack::Outcome::Durable as i32, "{ack:?}");
    }
    drop(client);

    // The control plane comes back; the agent delivers what it kept and
    // reports what it dropped, then stops once everything is acknowledged.
    server.start_again().await;
    agent.terminate();
    assert_eq!(agent.exit().await, Some(0), "{}", agent.log());
    assert!(
        agent
            .log()
            .contains("every spooled batch was acknowledged by the control plane"),
        "{}",
        agent.log()
    );
    assert!(
        agent.log().contains("dropping the oldest batches"),
        "the spool never filled: {}",
        agent.log()
    );

    let stored: BTreeSet<i32> = store::session_keys(&server.database())
        .await
        .into_iter()
        .filter(|(s, ..)| *s == session)
        .map(|(_, seq, rows, conflicts)| {
            assert_eq!((rows, conflicts), (1, 0), "sequence {seq}");
            seq
        })
        .collect();
    eprintln!("{}", server.session(&session, false).await);
    let report = server.session_report(&session).await;
    let info = &report["session"];
    let count = |key: &str| {
        info[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {info}"))
    };
    let reported = count("reported_lost");
    eprintln!(
        "drop_oldest: sent {RECORDS}, stored {}, reported lost {reported}, missing {}",
        stored.len(),
        count("missing")
    );
    let client_dropped = CLIENT_DROPPED.len() as u64;
    let sent = RECORDS as u64 - client_dropped;
    assert!((stored.len() as u64) < sent, "nothing was dropped");
    assert_eq!(
        stored.len() as u64 + reported,
        sent + client_dropped,
        "stored + reported = assigned (sent, and what the client dropped itself): {info}"
    );
    assert_eq!(
        count("missing"),
        RECORDS as u64 - stored.len() as u64,
        "{info}"
    );
    assert_eq!(count("unexplained"), 0, "{info}");

    // The agent's losses are this session's, and say which records they
    // were: exactly those not stored.
    let losses = info["losses"].as_array().unwrap();
    let spool_full: u64 = losses
        .iter()
        .filter(|l| l["source"] == "agent" && l["reason"] == "spool_full")
        .map(|l| l["records"].as_u64().unwrap())
        .sum();
    let client_drops: u64 = losses
        .iter()
        .filter(|l| l["source"] == "client")
        .map(|l| l["records"].as_u64().unwrap())
        .sum();
    assert_eq!(client_drops, client_dropped, "{info}");
    assert_eq!(
        spool_full + stored.len() as u64,
        sent,
        "stored + dropped = sent: {info}"
    );
    let mut dropped = BTreeSet::new();
    for range in info["agent_dropped"].as_array().unwrap() {
        let (first, last) = (
            range["first"].as_i64().unwrap(),
            range["last"].as_i64().unwrap(),
        );
        dropped.extend(first as i32..=last as i32);
    }
    assert_eq!(dropped.len() as u64, spool_full, "{info}");
    assert!(
        dropped.is_disjoint(&stored),
        "a record both stored and dropped"
    );
    let mut all: BTreeSet<i32> = stored.union(&dropped).copied().collect();
    all.extend(CLIENT_DROPPED);
    assert_eq!(
        all,
        (0..RECORDS).collect(),
        "every number stored, dropped by the agent or by the client"
    );
    // The oldest went.
    assert!(dropped.contains(&0) && stored.contains(&(RECORDS - 1)));
    server.stop().await;
}
