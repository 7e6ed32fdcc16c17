//! The record query API on a real server: every filter, keyset pages while
//! records arrive, the live stream resuming after disconnects (on SQLite,
//! and on two PostgreSQL-backed replicas writing at once), session reports,
//! summaries, bad parameters and auth errors.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;
use tokio::sync::watch;
use warden_api::client::{EventStream, ParseRecord, RawRecord};
use warden_api::records::{
    EVENT_POSITION, EVENT_RECORD, Position, Record, RecordParams, SessionListParams,
    SessionReportParams, SummaryParams,
};
use warden_api::workspaces::{CreateWorkspace, WorkspaceToken};
use warden_api::{ApiClient, ClientError};
use warden_proto::wire::agentapi;
use warden_proto::wire::{self, boundary_log};
use warden_server::{AdminTokenSource, Config};
use warden_store::DatabaseUrl;
use warden_testpg::TestPg;

/// `support::event_time()` seconds: records get times from here on.
const T0: i64 = 1_765_227_526;

fn at(seq: i32, allowed: bool, method: &str, url: &str, offset: i64) -> wire::BoundaryLog {
    wire::BoundaryLog {
        allowed,
        time: Some(wire::Timestamp {
            seconds: T0 + offset,
            nanos: 0,
        }),
        resource: Some(boundary_log::Resource::HttpRequest(
            boundary_log::HttpRequest {
                method: method.into(),
                url: url.into(),
                matched_rule: if allowed {
                    "domain=*".into()
                } else {
                    String::new()
                },
            },
        )),
        sequence_number: seq,
    }
}

fn time(offset: i64) -> String {
    jiff::Timestamp::new(T0 + offset, 0).unwrap().to_string()
}

async fn create(admin: &ApiClient, name: &str, owner: &str, agent: &str) -> WorkspaceToken {
    admin
        .create_workspace(&CreateWorkspace {
            name: name.into(),
            owner: owner.into(),
            agent_name: Some(agent.into()),
            startup_script: None,
        })
        .await
        .unwrap()
}

async fn report(agent: &mut Agent, batches: Vec<agentapi::Batch>) {
    agent.report(batches).await.unwrap();
}

fn parse(raw: &[RawRecord]) -> Vec<Record> {
    raw.iter().map(|r| r.parse().unwrap()).collect()
}

/// Every record matching `params`, page by page, newest first.
async fn all_pages(admin: &ApiClient, params: &RecordParams) -> Vec<Record> {
    let mut out = Vec::new();
    let mut params = params.clone();
    loop {
        let page = admin.records(&params).await.unwrap();
        out.extend(parse(&page.records));
        match page.next {
            Some(next) => params.cursor = Some(next),
            None => return out,
        }
    }
}

fn urls(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.http_url.as_str()).collect()
}

fn api_status<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, message }) => (status.as_u16(), message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// dev (alice, agent main) and ops (bob, agent runner) with records of
/// every kind; returns the two workspaces.
async fn fixture(server: &Server) -> (WorkspaceToken, WorkspaceToken) {
    let admin = server.admin();
    let dev = create(&admin, "dev", "alice", "main").await;
    let ops = create(&admin, "ops", "bob", "runner").await;
    let mut agent = server.agent(&dev.agent_token).await;
    report(
        &mut agent,
        vec![batch(
            Some("s1"),
            vec![
                at(0, true, "GET", "https://github.com/a", 0),
                at(1, false, "POST", "https://evil.example/x", 10),
                at(2, false, "GET", "https://evil.example/y", 20),
                at(3, true, "PUT", "https://api.example/z", 30),
            ],
        )],
    )
    .await;
    report(
        &mut agent,
        vec![batch(
            Some("s2"),
            vec![at(0, false, "GET", "https://evil.example/s2", 40)],
        )],
    )
    .await;
    // Sequence number 0 of s2 again, other content: stored, flagged.
    report(
        &mut agent,
        vec![batch(
            Some("s2"),
            vec![at(0, false, "GET", "https://forged.example/s2", 40)],
        )],
    )
    .await;
    let mut runner = server.agent(&ops.agent_token).await;
    report(
        &mut runner,
        vec![batch(
            Some("s3"),
            vec![
                at(0, false, "DELETE", "https://evil.example/ops", 5),
                at(1, true, "GET", "https://github.com/ops", 15),
            ],
        )],
    )
    .await;
    (dev, ops)
}

#[tokio::test]
async fn every_filter_narrows_the_records() {
    let (server, _dir) = Server::start().await;
    let (dev, ops) = fixture(&server).await;
    let admin = server.admin();
    let find = |params: RecordParams| {
        let admin = admin.clone();
        async move { all_pages(&admin, &params).await }
    };

    let all = find(RecordParams::default()).await;
    assert_eq!(all.len(), 8);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");

    let by_workspace = find(RecordParams {
        workspace: Some("ops".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        urls(&by_workspace),
        ["https://github.com/ops", "https://evil.example/ops"]
    );
    assert!(
        by_workspace
            .iter()
            .all(|r| r.workspace_id == ops.workspace_id)
    );
    let by_id = find(RecordParams {
        workspace_id: Some(dev.workspace_id.to_string()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_id.len(), 6);
    let by_owner = find(RecordParams {
        owner: Some("bob".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_owner, by_workspace);
    let by_agent = find(RecordParams {
        agent: Some("runner".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_agent, by_workspace);

    let denied = find(RecordParams {
        workspace: Some("dev".into()),
        decision: Some("deny".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        urls(&denied),
        [
            "https://forged.example/s2",
            "https://evil.example/s2",
            "https://evil.example/y",
            "https://evil.example/x"
        ]
    );
    assert!(
        denied
            .iter()
            .all(|r| r.decision == "deny" && r.level == "warn")
    );
    let allowed = find(RecordParams {
        decision: Some("allow".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(allowed.len(), 3);

    let session = find(RecordParams {
        session: Some("s1".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(session.len(), 4);
    assert!(
        session
            .iter()
            .all(|r| r.session_id.as_deref() == Some("s1"))
    );

    // Event times from T0+10 (inclusive) to T0+30 (exclusive).
    let window = find(RecordParams {
        since: Some(time(10)),
        until: Some(time(30)),
        ..Default::default()
    })
    .await;
    assert_eq!(
        urls(&window),
        [
            "https://github.com/ops",
            "https://evil.example/y",
            "https://evil.example/x"
        ]
    );
    // A duration counts back from now: these records are from 2025.
    assert!(
        find(RecordParams {
            since: Some("1h".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        find(RecordParams {
            until: Some("1h".into()),
            ..Default::default()
        })
        .await
        .len(),
        8
    );

    let evil = find(RecordParams {
        url_contains: Some("evil.example/".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(evil.len(), 4);
    assert!(
        find(RecordParams {
            url_contains: Some("EVIL".into()),
            ..Default::default()
        })
        .await
        .is_empty(),
        "case-sensitive"
    );

    let posts = find(RecordParams {
        method: Some("POST".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(urls(&posts), ["https://evil.example/x"]);
    let conflicts = find(RecordParams {
        conflict: Some("true".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(urls(&conflicts), ["https://forged.example/s2"]);
    assert!(conflicts[0].conflict);
    assert_eq!(
        find(RecordParams {
            conflict: Some("false".into()),
            ..Default::default()
        })
        .await
        .len(),
        7
    );

    // All at once.
    let combined = find(RecordParams {
        workspace: Some("dev".into()),
        owner: Some("alice".into()),
        agent: Some("main".into()),
        decision: Some("deny".into()),
        session: Some("s1".into()),
        since: Some(time(0)),
        until: Some(time(60)),
        url_contains: Some("evil".into()),
        method: Some("GET".into()),
        conflict: Some("false".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(urls(&combined), ["https://evil.example/y"]);

    // What a record carries besides the line's keys.
    let r = &combined[0];
    assert_eq!(r.peer.exe, "/usr/bin/boundary");
    assert_eq!(r.peer.uid, 1000);
    assert_eq!(r.process.as_deref(), Some("claude"));
    assert_eq!(r.workspace_name.as_deref(), Some("dev"));
    assert_eq!(r.agent_name.as_deref(), Some("main"));
    assert_eq!(r.sequence, Some(2));
    assert_eq!(
        r.event_time,
        Some(jiff::Timestamp::new(T0 + 20, 0).unwrap())
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn pages_neither_skip_nor_repeat_while_records_arrive() {
    let (server, _dir) = Server::start().await;
    let admin = server.admin();
    let dev = create(&admin, "dev", "alice", "main").await;
    let mut agent = server.agent(&dev.agent_token).await;
    report(&mut agent, vec![batch(Some("old"), logs(0..25))]).await;
    let before = all_pages(&admin, &RecordParams::default()).await;
    assert_eq!(before.len(), 25);

    let mut params = RecordParams {
        workspace: Some("dev".into()),
        limit: Some("10".into()),
        ..Default::default()
    };
    let mut paged = Vec::new();
    let mut head = None;
    let mut round = 0;
    loop {
        let page = admin.records(&params).await.unwrap();
        head.get_or_insert(page.head.clone());
        paged.extend(parse(&page.records));
        // New records land between pages.
        report(
            &mut agent,
            vec![batch(Some(&format!("new{round}")), logs(0..7))],
        )
        .await;
        round += 1;
        match page.next {
            Some(next) => params.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(round, 3, "pages of 10, 10 and 5");
    assert_eq!(paged, before, "exactly the records stored before");

    // Following from the first page's head gets exactly the newer records.
    let mut stream = admin
        .stream_records(
            &RecordParams {
                workspace: Some("dev".into()),
                after: head.clone(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let mut followed = Vec::new();
    while followed.len() < 21 {
        followed.extend(next_records(&mut stream).await);
    }
    assert_eq!(followed.len(), 21);
    let newer: BTreeSet<i64> = all_pages(&admin, &RecordParams::default())
        .await
        .iter()
        .map(|r| r.id)
        .filter(|id| !before.iter().any(|b| b.id == *id))
        .collect();
    assert_eq!(
        followed.iter().map(|r| r.id).collect::<BTreeSet<_>>(),
        newer
    );
    server.stop().await.unwrap();
}

/// The records of the next events (none for a position event); fails the
/// test when the stream ends or stalls.
async fn next_records(stream: &mut EventStream) -> Vec<Record> {
    let event = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("no event in time")
        .unwrap()
        .expect("the stream ended");
    match event.event.as_str() {
        EVENT_RECORD => {
            let record: Record = serde_json::from_str(&event.data).unwrap();
            assert_eq!(event.id.as_deref(), Some(cursor_of(record.id).as_str()));
            vec![record]
        }
        EVENT_POSITION => {
            let position: Position = serde_json::from_str(&event.data).unwrap();
            assert_eq!(event.id, Some(position.cursor));
            Vec::new()
        }
        other => panic!("unexpected event {other:?}"),
    }
}

/// The cursor the server gives record `id` (checked against what it sends).
fn cursor_of(id: i64) -> String {
    warden_server::http::cursor::RecordCursor(id).to_string()
}

/// Follows `params` through `readers` in turn, dropping the connection
/// after every few records and resuming on the next reader with the last
/// event id, until the record with id `last` (sent once known) arrived.
/// Signals `started` once the first stream is open.
async fn follow_with_disconnects(
    readers: Vec<ApiClient>,
    params: RecordParams,
    started: tokio::sync::oneshot::Sender<()>,
    mut last: watch::Receiver<Option<i64>>,
) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut last_id: Option<String> = None;
    let mut started = Some(started);
    let mut connection = 0usize;
    loop {
        let reader = &readers[connection % readers.len()];
        let mut stream = reader
            .stream_records(&params, last_id.as_deref())
            .await
            .unwrap();
        connection += 1;
        // Read a few events, then hang up (3, 4, 5, ... records).
        let mut budget = 2 + connection % 5;
        loop {
            if let Some(last) = *last.borrow_and_update()
                && seen.last().is_some_and(|id| *id >= last)
            {
                return seen;
            }
            let event = tokio::select! {
                event = stream.next() => event.unwrap().expect("the stream ended"),
                // The last id became known while the stream was idle.
                _ = last.changed() => continue,
                _ = tokio::time::sleep(Duration::from_secs(60)) => panic!("no event for 60 s; got {} records", seen.len()),
            };
            last_id = event.id.clone().or(last_id);
            if let Some(tx) = started.take() {
                assert_eq!(
                    event.event, EVENT_POSITION,
                    "a stream starts with its position"
                );
                let _ = tx.send(());
            }
            if event.event == EVENT_RECORD {
                let record: Record = serde_json::from_str(&event.data).unwrap();
                seen.push(record.id);
                budget -= 1;
                if budget == 0 {
                    break;
                }
            }
        }
    }
}

/// Writers on `servers` (round robin) commit records of dev and ops while a
/// follower filtering dev's denials reconnects over and over; it must get
/// every such record exactly once, in order.
async fn follow_while_writing(servers: &[&Server]) {
    let admin = servers[0].admin();
    let dev = create(&admin, "dev", "alice", "main").await;
    let ops = create(&admin, "ops", "bob", "main").await;
    let params = RecordParams {
        workspace: Some("dev".into()),
        decision: Some("deny".into()),
        ..Default::default()
    };
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let (last_tx, last) = watch::channel(None);
    let readers = servers.iter().map(|s| s.admin()).collect();
    let follower = tokio::spawn(follow_with_disconnects(
        readers,
        params.clone(),
        started_tx,
        last,
    ));
    started.await.unwrap();

    let mut writers = Vec::new();
    for w in 0..4 {
        let url = servers[w % servers.len()].url();
        let token = if w == 3 {
            ops.agent_token.clone()
        } else {
            dev.agent_token.clone()
        };
        writers.push(tokio::spawn(async move {
            let mut agent = Agent::connect(&url, &token).await;
            for call in 0..15 {
                let session = format!("w{w}c{call}");
                // Mixed decisions: the follower only wants the denials,
                // which come in runs of consecutive ids (0-2 and 4-6), so
                // a resume that skipped the id after its cursor shows.
                let records = (0..8)
                    .map(|s| {
                        log(
                            s,
                            s % 4 == 3,
                            "GET",
                            &format!("https://example.com/{session}/{s}"),
                            "",
                        )
                    })
                    .collect();
                agent
                    .report(vec![batch(Some(&session), records)])
                    .await
                    .unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let expected: Vec<i64> = all_pages(&admin, &params)
        .await
        .iter()
        .rev()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        expected.len(),
        3 * 15 * 6,
        "three dev writers, six denials per call"
    );
    last_tx.send(expected.last().copied()).unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(120), follower)
        .await
        .expect("the follower did not finish")
        .unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "records in commit order, none twice"
    );
    assert_eq!(seen, expected, "every matching record, none missed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_resumes_after_disconnects_without_gap_or_duplicate() {
    let (server, _dir) = Server::start().await;
    follow_while_writing(&[&server]).await;
    server.stop().await.unwrap();
}

/// Two control planes on one PostgreSQL database, both committing; the
/// follower resumes on the other replica each time: cursors are global.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_of_two_postgres_replicas_miss_nothing_and_repeat_nothing() {
    let pg = TestPg::start().expect("a PostgreSQL test database");
    let config = || {
        Config::new(
            DatabaseUrl::Postgres(pg.url().to_owned()),
            AdminTokenSource::Given(ADMIN_TOKEN.into()),
        )
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start_with(config(), dir_a.path(), Capture::new()).await;
    let b = Server::start_with(config(), dir_b.path(), Capture::new()).await;
    follow_while_writing(&[&a, &b]).await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn the_session_report_shows_gaps_drops_and_records_in_sequence_order() {
    let (server, _dir) = Server::start().await;
    let admin = server.admin();
    let dev = create(&admin, "dev", "alice", "main").await;
    let mut agent = server.agent(&dev.agent_token).await;
    // 0..10 without 3, 4 and 7, sent out of order; the client dropped 2
    // and closed the session at 12.
    let mut b = batch(
        Some(SESSION),
        logs(5..10)
            .into_iter()
            .filter(|l| l.sequence_number != 7)
            .collect(),
    );
    b.client_status.push(agentapi::ClientStatus {
        session_id: SESSION.into(),
        status: Some(wire::BoundaryStatus {
            dropped_channel_full: 2,
            dropped_batch_full: 0,
            final_sequence_number: Some(12),
            ..Default::default()
        }),
    });
    report(&mut agent, vec![b]).await;
    report(&mut agent, vec![batch(Some(SESSION), logs(0..3))]).await;
    // 5 again with other content: a conflict.
    report(
        &mut agent,
        vec![batch(
            Some(SESSION),
            vec![log(5, false, "GET", "https://forged.example/5", "")],
        )],
    )
    .await;
    report(&mut agent, vec![batch(Some("other"), logs(0..2))]).await;

    let mut pages = Vec::new();
    let mut params = SessionReportParams {
        limit: Some("3".into()),
        ..Default::default()
    };
    let first = loop {
        let page = admin.session_report("dev", SESSION, &params).await.unwrap();
        pages.extend(parse(&page.records));
        match &page.next {
            Some(next) => params.cursor = Some(next.clone()),
            None => break page,
        }
    };
    let s = &first.session;
    assert_eq!(first.workspace_name.as_deref(), Some("dev"));
    assert_eq!(first.workspace_id, dev.workspace_id);
    assert_eq!(s.session_id, SESSION);
    assert_eq!((s.records, s.conflicts), (8, 1));
    assert_eq!(
        (s.first_sequence, s.last_sequence, s.final_sequence),
        (Some(0), Some(9), Some(12))
    );
    assert_eq!((s.missing, s.reported_lost, s.unexplained), (6, 2, 4));
    assert_eq!(s.losses.len(), 1);
    assert_eq!(
        (
            s.losses[0].source.as_str(),
            s.losses[0].reason.as_str(),
            s.losses[0].records
        ),
        ("client", "channel_full", 2)
    );
    let gaps: Vec<(i64, i64)> = first.gaps.iter().map(|g| (g.first, g.last)).collect();
    assert_eq!(gaps, [(3, 4), (7, 7), (10, 12)]);
    assert!(!first.gaps_truncated);
    assert_eq!(
        pages
            .iter()
            .map(|r| (r.sequence.unwrap(), r.conflict))
            .collect::<Vec<_>>(),
        [
            (0, false),
            (1, false),
            (2, false),
            (5, false),
            (5, true),
            (6, false),
            (8, false),
            (9, false)
        ]
    );

    let cut = admin
        .session_report(
            "dev",
            SESSION,
            &SessionReportParams {
                max_gaps: Some("2".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cut.gaps.len(), 2);
    assert!(cut.gaps_truncated);
    // By id too.
    let by_id = admin
        .session_report(&dev.workspace_id.to_string(), SESSION, &Default::default())
        .await
        .unwrap();
    assert_eq!(by_id.session, first.session);

    // The workspace's sessions, most recent first, in pages of one.
    let mut listed = Vec::new();
    let mut params = SessionListParams {
        limit: Some("1".into()),
        ..Default::default()
    };
    loop {
        let page = admin.sessions("dev", &params).await.unwrap();
        listed.extend(page.sessions);
        match page.next {
            Some(next) => params.cursor = Some(next),
            None => break,
        }
    }
    let ids: Vec<&str> = listed
        .iter()
        .map(|s| s.session.session_id.as_str())
        .collect();
    assert_eq!(ids, ["other", SESSION]);
    assert_eq!(listed[1].session, first.session);
    let t = jiff::Timestamp::new(T0, 93_456_789).unwrap();
    assert_eq!(
        (listed[1].first_record_at, listed[1].last_record_at),
        (Some(t), Some(t))
    );

    assert_eq!(
        api_status(
            admin
                .session_report("dev", "nope", &Default::default())
                .await
        )
        .0,
        404
    );
    assert_eq!(
        api_status(admin.sessions("nope", &Default::default()).await).0,
        404
    );
    let bad_cursor = SessionReportParams {
        cursor: Some("r1".into()),
        ..Default::default()
    };
    let (status, message) = api_status(admin.session_report("dev", SESSION, &bad_cursor).await);
    assert_eq!(status, 400);
    assert!(message.contains("invalid cursor"), "{message}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn summaries_count_a_time_range_per_workspace() {
    let (server, _dir) = Server::start().await;
    let (dev, _) = fixture(&server).await;
    let admin = server.admin();
    let mut agent_status = batch(None, Vec::new());
    agent_status.logs = None;
    agent_status.agent_drops.push(agentapi::AgentDrop {
        reason: "spool_full".into(),
        records: 4,
        frames: 1,
        ..Default::default()
    });
    report(
        &mut server.agent(&dev.agent_token).await,
        vec![agent_status],
    )
    .await;

    let all = admin.summaries(&SummaryParams::default()).await.unwrap();
    assert_eq!(
        all.workspaces
            .iter()
            .map(|w| w.workspace_name.as_str())
            .collect::<Vec<_>>(),
        ["dev", "ops"]
    );
    let dev = &all.workspaces[0];
    assert_eq!((dev.allowed, dev.denied, dev.conflicts), (2, 4, 1));
    assert_eq!(dev.top_denied_hosts[0].host, "evil.example");
    assert_eq!(dev.top_denied_hosts[0].records, 3);
    assert_eq!(dev.losses.len(), 1);
    assert_eq!(
        (dev.losses[0].reason.as_str(), dev.losses[0].records),
        ("spool_full", 4)
    );
    assert_eq!(dev.sessions, 2);
    assert_eq!((dev.missing, dev.unexplained_loss), (0, 0));
    assert!(dev.last_contact_at.is_some());
    assert!(dev.last_batch_at.is_some());
    assert_eq!(
        dev.first_record_at,
        Some(jiff::Timestamp::new(T0, 0).unwrap())
    );

    let window = admin
        .summaries(&SummaryParams {
            workspace: Some("dev".into()),
            since: Some(time(10)),
            until: Some(time(30)),
            top: Some("1".into()),
        })
        .await
        .unwrap();
    assert_eq!(window.workspaces.len(), 1);
    let dev = &window.workspaces[0];
    assert_eq!((dev.allowed, dev.denied), (0, 2));
    assert_eq!(dev.top_denied_hosts.len(), 1);
    assert_eq!(
        window.since,
        Some(jiff::Timestamp::new(T0 + 10, 0).unwrap())
    );

    for (params, needle) in [
        (
            SummaryParams {
                top: Some("1000".into()),
                ..Default::default()
            },
            "top must be",
        ),
        (
            SummaryParams {
                since: Some("later".into()),
                ..Default::default()
            },
            "since: ",
        ),
    ] {
        let (status, message) = api_status(admin.summaries(&params).await);
        assert_eq!(status, 400);
        assert!(message.contains(needle), "{message}");
    }
    let missing = SummaryParams {
        workspace: Some("nope".into()),
        ..Default::default()
    };
    assert_eq!(api_status(admin.summaries(&missing).await).0, 404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_parameters_are_refused_with_the_reason() {
    let (server, _dir) = Server::start().await;
    let admin = server.admin();
    create(&admin, "dev", "alice", "main").await;
    for (params, needle) in [
        (
            RecordParams {
                decision: Some("maybe".into()),
                ..Default::default()
            },
            "decision must be allow or deny",
        ),
        (
            RecordParams {
                limit: Some("0".into()),
                ..Default::default()
            },
            "limit must be",
        ),
        (
            RecordParams {
                limit: Some("5000".into()),
                ..Default::default()
            },
            "limit must be",
        ),
        (
            RecordParams {
                cursor: Some("12".into()),
                ..Default::default()
            },
            "invalid cursor",
        ),
        (
            RecordParams {
                since: Some("tomorrow".into()),
                ..Default::default()
            },
            "since: ",
        ),
        (
            RecordParams {
                since: Some("1h".into()),
                until: Some("2h".into()),
                ..Default::default()
            },
            "must be before until",
        ),
        (
            RecordParams {
                conflict: Some("1".into()),
                ..Default::default()
            },
            "conflict must be true or false",
        ),
        (
            RecordParams {
                workspace: Some("dev".into()),
                workspace_id: Some(uuid::Uuid::nil().to_string()),
                ..Default::default()
            },
            "not both",
        ),
        (
            RecordParams {
                after: Some("r1".into()),
                ..Default::default()
            },
            "after is a stream parameter",
        ),
    ] {
        let (status, message) = api_status(admin.records(&params).await);
        assert_eq!(status, 400, "{params:?}");
        assert!(message.contains(needle), "{params:?}: {message}");
    }
    let (status, message) = api_status(
        admin
            .records(&RecordParams {
                workspace: Some("nope".into()),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(
        (status, message.as_str()),
        (404, "no workspace named \"nope\"")
    );

    // Unknown parameters are refused, not ignored.
    let (status, body) = get(&server, "/api/v1/records?decsion=deny", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 400);
    assert!(body.contains("decsion"), "{body}");

    // The stream checks its parameters before it starts.
    let (status, message) = api_status(
        admin
            .stream_records(
                &RecordParams {
                    limit: Some("3".into()),
                    ..Default::default()
                },
                None,
            )
            .await,
    );
    assert_eq!(status, 400);
    assert!(message.contains("the stream takes after"), "{message}");
    let (status, message) = api_status(
        admin
            .stream_records(&RecordParams::default(), Some("bogus"))
            .await,
    );
    assert_eq!(status, 400);
    assert!(message.contains("invalid cursor"), "{message}");
    server.stop().await.unwrap();
}

/// A GET with an optional bearer token; the status and the body.
async fn get(server: &Server, path: &str, token: Option<&str>) -> (u16, String) {
    let (status, _, body) = get_with_headers(server, path, token).await;
    (status, body)
}

async fn get_with_headers(
    server: &Server,
    path: &str,
    token: Option<&str>,
) -> (u16, http::HeaderMap, String) {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::get(path).header("host", server.addr.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = sender
        .send_request(request.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn every_query_route_needs_the_admin_token() {
    let (server, _dir) = Server::start().await;
    create(&server.admin(), "dev", "alice", "main").await;
    for path in [
        "/api/v1/records",
        "/api/v1/records?workspace=dev",
        "/api/v1/records/stream",
        "/api/v1/workspaces/dev/sessions",
        "/api/v1/workspaces/dev/sessions/s",
        "/api/v1/summaries",
    ] {
        for token in [None, Some("wrong-token-wrong-token"), Some("")] {
            let (status, headers, body) = get_with_headers(&server, path, token).await;
            assert_eq!(status, 401, "{path} with {token:?}");
            assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer");
            assert_eq!(headers.get("content-type").unwrap(), "application/json");
            let error: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                error,
                serde_json::json!({"error": "missing or invalid token"})
            );
        }
    }
    // Through the client: a refusal it reports as such.
    let wrong = ApiClient::new(&server.url(), "wrong-token-wrong-token", None).unwrap();
    let (status, message) = api_status(wrong.records(&RecordParams::default()).await);
    assert_eq!(
        (status, message.as_str()),
        (401, "missing or invalid token")
    );
    let (status, _) = api_status(wrong.stream_records(&RecordParams::default(), None).await);
    assert_eq!(status, 401);
    // The API's description is public.
    assert_eq!(get(&server, "/api/v1/openapi.json", None).await.0, 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn open_streams_end_when_the_server_stops() {
    let (server, _dir) = Server::start().await;
    let admin = server.admin();
    let mut stream = admin
        .stream_records(&RecordParams::default(), None)
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.event, EVENT_POSITION);
    assert_eq!(
        first.id.as_deref(),
        Some("r0"),
        "an empty store starts at 0"
    );
    // The shutdown grace period (30 s) is longer than `stop` waits: the
    // stream must end on its own.
    let stopping = tokio::spawn(server.stop());
    let end = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("the stream did not end");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    stopping.await.unwrap().unwrap();
}
