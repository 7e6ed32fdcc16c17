//! `kill -9` of the server in the middle of ingest (the hardening review saw
//! 12,000 lines printed again at the restart, 8,000 of them printed before):
//! every stored record has its boundary line; no record's line is printed
//! twice as a new line; the lines printed again at the restart say
//! `replayed=true` and come before any new line (docs/stderr-format.md,
//! "When a line is printed").

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::agent::AgentSetup;
use support::process::{BoundaryLines, WardenProcess};
use support::server::ServerProcess;
use support::{dirs, eventually, store};
use warden_client::{AckPolicy, Auditor, Config, Overflow, Record};

const CLIENTS: usize = 4;
const RECORDS: i32 = 15_000;

/// `(session, sequence)` of a text boundary line and whether it is a replay.
fn parse(line: &str) -> Option<((String, i32), bool)> {
    if !line.starts_with("[API] ") {
        return None;
    }
    let session = line.split("session.id=\"").nth(1)?.split('"').next()?;
    let seq = line.split(" sequence=").nth(1)?.split(' ').next()?.trim();
    Some((
        (session.to_owned(), seq.parse().ok()?),
        line.trim_end().ends_with(" replayed=true"),
    ))
}

/// Every line the process printed, once its stderr has closed.
async fn all_lines(process: &mut WardenProcess) -> Vec<String> {
    while process.next_line().await.is_some() {}
    process.lines().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_prints_what_it_had_not_noted_again_marked_and_nothing_twice_as_new() {
    let dirs = dirs();
    let mut server = ServerProcess::start(&dirs.server, &[], BoundaryLines::Keep).await;
    let ws = server.create_workspace("crash", "erin", &[]).await;
    let setup = AgentSetup::new(&server.url, &ws.token, &dirs.agent, &dirs.socket);
    let mut agent = setup.start(&[]).await;
    let auditors: Vec<Auditor> = (0..CLIENTS)
        .map(|client| {
            let mut config = Config::new(&dirs.socket);
            config.overflow = Overflow::Block { timeout: None };
            config.acknowledgements = AckPolicy::Auto;
            config.close_timeout = Duration::from_secs(90);
            config.confined_process_name = format!("client-{client}");
            Auditor::start(config).unwrap()
        })
        .collect();
    let producers: Vec<_> = auditors
        .iter()
        .enumerate()
        .map(|(client, auditor)| {
            let auditor = auditor.clone();
            tokio::spawn(async move {
                for seq in 0..RECORDS {
                    let url = format!("https://c{client}.example/r/{seq}");
                    let record = Record::allow("GET", url, "domain=example".to_owned());
                    assert_eq!(auditor.record(record).await, Ok(seq));
                }
            })
        })
        .collect();

    // Killed once a good part of the records is in, with more on the way.
    let total = CLIENTS as u64 * RECORDS as u64;
    while server
        .process
        .lines()
        .iter()
        .filter(|l| l.starts_with("[API]"))
        .count()
        < (total / 3) as usize
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().await;
    let first_life = all_lines(&mut server.process).await;
    server.start_again().await;

    for producer in producers {
        producer.await.unwrap();
    }
    for auditor in auditors {
        auditor.close().await.unwrap();
    }
    agent.terminate();
    assert_eq!(agent.exit().await, Some(0), "{}", agent.log());
    let stored = store::count(&server.database()).await;
    assert_eq!(stored, total, "every record stored once");
    let mut seen_new: BTreeSet<(String, i32)> = BTreeSet::new();
    eventually("the server printed a line per stored record", || {
        let printed = server
            .process
            .lines()
            .iter()
            .filter(|l| l.starts_with("[API]"))
            .count();
        let first = first_life.iter().filter(|l| l.starts_with("[API]")).count();
        async move { (printed + first) as u64 >= stored }
    })
    .await;
    server.stop().await;
    let second_life = all_lines(&mut server.process).await;

    let mut lines: BTreeMap<(String, i32), (u32, u32)> = BTreeMap::new();
    for line in &first_life {
        if let Some((key, replayed)) = parse(line) {
            assert!(!replayed, "a first start replays nothing: {line}");
            assert!(seen_new.insert(key.clone()), "printed twice as new: {line}");
            lines.entry(key).or_default().0 += 1;
        }
    }
    let mut replays = 0u64;
    let mut new_lines_began = false;
    for line in &second_life {
        if let Some((key, replayed)) = parse(line) {
            if replayed {
                assert!(!new_lines_began, "a replay after new lines: {line}");
                replays += 1;
                lines.entry(key).or_default().1 += 1;
            } else {
                new_lines_began = true;
                assert!(seen_new.insert(key.clone()), "printed twice as new: {line}");
                lines.entry(key).or_default().0 += 1;
            }
        }
    }
    // Every stored record has a line; one that has two has one replay.
    assert_eq!(lines.len() as u64, total, "a stored record has no line");
    for (key, (new, replayed)) in &lines {
        assert!(
            *new <= 1 && *replayed <= 1 && new + replayed >= 1,
            "{key:?}"
        );
    }
    let repeated = lines.values().filter(|(n, r)| n + r == 2).count();
    eprintln!(
        "server crash: {total} records, {} lines before the kill, {replays} replayed at the restart ({repeated} of them printed before)",
        first_life.iter().filter(|l| l.starts_with("[API]")).count()
    );
}
