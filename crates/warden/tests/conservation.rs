//! Conservation under faults: nothing accepted is lost or stored twice, and
//! every loss is one the design admits.
//!
//! 8 clients (`warden_client` auditors in this process; 6 in acknowledged
//! mode, 2 in plain mode) each send 50,000 numbered records at a steady
//! rate through a real `warden agent` and `warden server` (child processes).
//! Meanwhile, at moments drawn from a seed: the agent is killed with SIGKILL
//! mid-write four times (and restarted each time, once during the outage,
//! from its cached manifest), the server crashes (SIGKILL) and restarts
//! once, and the server is down (stopped) for at least 10 s while the
//! clients keep sending and the agent keeps spooling.
//!
//! Then, per session:
//! - no record is stored twice (and none conflicts);
//! - sent = stored + gaps, stored ⊆ sent;
//! - acknowledged mode: every record was confirmed, and every confirmed
//!   record is stored exactly once (no gaps at all: what a kill took
//!   unconfirmed was sent again);
//! - plain mode: the gaps lie only where the agent was killed: for each
//!   kill, the records written to the connection that kill ended
//!   (`Auditor::sent` before and after it) may have lost a tail that the
//!   agent had not yet made durable, and nothing else is missing;
//! - the closing status reached the server;
//! - every stored record got its boundary line (a line may be printed again
//!   after the crash: the store notes printed lines after writing them).
//!
//! The seed comes from `WARDEN_SEED` or is random; it is printed with the
//! totals, and the same seed gives the same fault schedule.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::agent::AgentSetup;
use support::process::{BoundaryLines, WardenProcess};
use support::server::ServerProcess;
use support::{dirs, eventually, store};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, sleep_until};

/// The agent's shutdown grace: how long a SIGTERMed agent may take to
/// deliver what its spool holds.
const SHUTDOWN_GRACE_SECS: u64 = 240;
const SHUTDOWN_GRACE: &str = "240s";
use warden_client::{AckMode, AckPolicy, Auditor, Config, Overflow, Record, SequenceSet, Summary};

const CLIENTS: usize = 8;
/// Clients `0..PLAIN` run in plain mode, the rest acknowledged.
const PLAIN: usize = 2;
const RECORDS: i32 = 50_000;
/// Producers write every this long.
const TICK: Duration = Duration::from_millis(10);
/// Records each producer holds back until the faults are over.
const TAIL: i32 = 500;
/// The least an outage lasts.
const MIN_OUTAGE: Duration = Duration::from_secs(10);

/// A fault, at a time after the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillAgent,
    CrashServer,
    StopServer,
    StartServer,
}

/// The seeded plan: faults in time order, and how long producers write.
#[derive(Debug)]
struct Schedule {
    faults: Vec<(Duration, Fault)>,
    produce_for: Duration,
}

impl Schedule {
    fn new(rng: &mut StdRng) -> Schedule {
        let ms =
            |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_millis(rng.random_range(lo..hi));
        let mut faults = Vec::new();
        let mut t = ms(rng, 1_500, 4_000);
        faults.push((t, Fault::KillAgent));
        t += ms(rng, 2_000, 4_000);
        faults.push((t, Fault::CrashServer));
        t += ms(rng, 1_500, 3_500);
        faults.push((t, Fault::KillAgent));
        t += ms(rng, 1_500, 3_000);
        let outage_start = t;
        faults.push((t, Fault::StopServer));
        let outage = MIN_OUTAGE + ms(rng, 0, 2_000);
        // The agent dies during the outage too, and must come back from
        // its cached manifest.
        faults.push((t + ms(rng, 2_000, 7_000), Fault::KillAgent));
        t = outage_start + outage;
        faults.push((t, Fault::StartServer));
        t += ms(rng, 1_500, 3_000);
        faults.push((t, Fault::KillAgent));
        faults.sort();
        Schedule {
            faults,
            produce_for: t + Duration::from_secs(5),
        }
    }
}

fn record(client: usize, seq: i32) -> Record {
    let url = format!("https://c{client}.example/r/{seq}");
    if seq % 4 == 0 {
        Record::deny("POST", url)
    } else {
        Record::allow("GET", url, format!("domain=c{client}.example"))
    }
}

/// Writes `RECORDS` records at a steady rate, the last of them due after
/// `duration`; the final `TAIL` wait until the faults are over, so that
/// every fault happens while the clients write even when the faults run
/// late on a slow machine.
async fn produce(
    client: usize,
    auditor: Auditor,
    duration: Duration,
    mut faults_done: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq = 0;
    while seq < RECORDS {
        interval.tick().await;
        let elapsed = started.elapsed().as_secs_f64() / duration.as_secs_f64();
        let due = ((elapsed * f64::from(RECORDS)) as i32).clamp(1, RECORDS);
        if due > RECORDS - TAIL && seq == RECORDS - TAIL {
            faults_done.wait_for(|done| *done).await.unwrap();
        }
        let limit = if *faults_done.borrow() {
            due
        } else {
            due.min(RECORDS - TAIL)
        };
        while seq < limit {
            // Block mode without a limit: a record waits for room, it is
            // never dropped, so every number is sent or the test fails.
            assert_eq!(auditor.record(record(client, seq)).await, Ok(seq));
            seq += 1;
        }
    }
}

/// What `Auditor::sent` said for each plain client right after each kill.
type SentAtKills = Vec<Vec<u64>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_conserved_across_agent_kills_server_restarts_and_an_outage() {
    let seed = match std::env::var("WARDEN_SEED") {
        Ok(text) => text.parse().expect("WARDEN_SEED is a u64"),
        Err(_) => rand::random(),
    };
    eprintln!("conservation: seed {seed} (rerun with WARDEN_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let schedule = Schedule::new(&mut rng);
    eprintln!("conservation: schedule {schedule:?}");

    let dirs = dirs();
    let mut server = ServerProcess::start(&dirs.server, &[], BoundaryLines::Count).await;
    let ws = server.create_workspace("conserve", "dana", &[]).await;
    let mut setup = AgentSetup::new(&server.url, &ws.token, &dirs.agent, &dirs.socket);
    setup.shutdown_grace = SHUTDOWN_GRACE;
    let mut agent = setup.start(&[]).await;

    let auditors: Vec<Auditor> = (0..CLIENTS)
        .map(|client| {
            let mut config = Config::new(&dirs.socket);
            config.batch_max_records = 32;
            config.batch_interval = Duration::from_millis(20);
            config.overflow = Overflow::Block { timeout: None };
            config.acknowledgements = if client < PLAIN {
                AckPolicy::Off
            } else {
                AckPolicy::Auto
            };
            config.reconnect_min = Duration::from_millis(10);
            config.reconnect_max = Duration::from_millis(200);
            // Covers the outage and the catching up after it.
            config.close_timeout = Duration::from_secs(90);
            config.confined_process_name = format!("client-{client}");
            Auditor::start(config).unwrap()
        })
        .collect();

    let started = Instant::now();
    let (faults_done, done) = watch::channel(false);
    let producers: Vec<_> = auditors
        .iter()
        .enumerate()
        .map(|(client, auditor)| {
            let done = done.clone();
            tokio::spawn(produce(client, auditor.clone(), schedule.produce_for, done))
        })
        .collect();

    let mut sent_at_kills: SentAtKills = Vec::new();
    for &(at, fault) in &schedule.faults {
        sleep_until(started + at).await;
        match fault {
            Fault::KillAgent => {
                agent.kill().await;
                // The dead agent's connections are closed: nothing more can
                // be written to them.
                sent_at_kills.push(auditors[..PLAIN].iter().map(Auditor::sent).collect());
                agent = setup.start(&[]).await;
            }
            Fault::CrashServer => {
                server.kill().await;
                server.start_again().await;
            }
            Fault::StopServer => server.stop().await,
            Fault::StartServer => server.start_again().await,
        }
        eprintln!("conservation: {fault:?} at {:?}", started.elapsed());
    }

    faults_done.send_replace(true);
    for producer in producers {
        producer.await.unwrap();
    }
    let mut summaries = Vec::new();
    for auditor in auditors {
        summaries.push(auditor.close().await.unwrap());
    }
    eprintln!("conservation: clients closed at {:?}", started.elapsed());
    stop_agent(&mut agent).await;

    let stored_total = store::count(&server.database()).await;
    eventually("the server printed a line per stored record", || {
        let printed = server.boundary_lines();
        async move { printed >= stored_total }
    })
    .await;
    server.stop().await;
    let printed = server.boundary_lines();
    eprintln!("conservation: {stored_total} records stored, {printed} boundary lines printed");
    assert!(printed >= stored_total, "a stored record has no line");

    check(&server, &summaries, &sent_at_kills).await;
    eprintln!("conservation: seed {seed}: done in {:?}", started.elapsed());
}

/// SIGTERM: the agent drains its spool to the server, then exits 0. An
/// outage can leave a few hundred thousand records to deliver, which a
/// debug build on a loaded machine takes minutes to: the wait is the
/// agent's shutdown grace ([`SHUTDOWN_GRACE`]) and a margin, so the test
/// fails on records left behind, not on a slow machine.
async fn stop_agent(agent: &mut WardenProcess) {
    agent.terminate();
    assert_eq!(
        agent
            .exit_within(Duration::from_secs(SHUTDOWN_GRACE_SECS + 30))
            .await,
        Some(0),
        "{}",
        agent.log()
    );
    assert!(
        agent
            .log()
            .contains("every spooled batch was acknowledged by the control plane"),
        "the agent stopped with records in its spool:\n{}",
        agent.log()
    );
}

async fn check(server: &ServerProcess, summaries: &[Summary], sent_at_kills: &SentAtKills) {
    let database = server.database();
    let mut stored: BTreeMap<String, SequenceSet> = BTreeMap::new();
    for (session, seq, rows, conflicts) in store::session_keys(&database).await {
        assert_eq!(
            rows, 1,
            "session {session} sequence {seq} stored {rows} times"
        );
        assert_eq!(conflicts, 0, "session {session} sequence {seq} conflicts");
        stored.entry(session).or_default().insert(seq);
    }
    let finals: BTreeMap<String, Option<i64>> = store::final_sequence_numbers(&database)
        .await
        .into_iter()
        .collect();

    let mut total_sent = 0;
    let mut total_stored = 0;
    let mut total_gaps = 0;
    for (client, summary) in summaries.iter().enumerate() {
        let session = summary.session_id.to_string();
        let kept = stored.remove(&session).unwrap_or_default();
        let gaps: SequenceSet = {
            let mut gaps = SequenceSet::new();
            for seq in summary.sent.iter().filter(|s| !kept.contains(*s)) {
                gaps.insert(seq);
            }
            gaps
        };
        let stray: Vec<i32> = kept
            .iter()
            .filter(|s| !summary.sent.contains(*s))
            .take(5)
            .collect();
        assert!(
            stray.is_empty(),
            "client {client}: stored but never sent: {stray:?}"
        );
        assert_eq!(summary.assigned, RECORDS as u64, "client {client}");
        assert_eq!(summary.dropped.total(), 0, "client {client}: {summary}");
        assert_eq!(
            summary.sent.len(),
            kept.len() + gaps.len(),
            "client {client}: sent = stored + gaps"
        );
        assert_eq!(
            finals.get(&session),
            Some(&Some(i64::from(RECORDS) - 1)),
            "client {client}: the closing status reached the server"
        );
        if client < PLAIN {
            assert_eq!(summary.acknowledgements, AckMode::Off);
            assert_eq!(
                summary.sent.len(),
                RECORDS as u64,
                "client {client}: {summary}"
            );
            let windows: Vec<u64> = sent_at_kills.iter().map(|at| at[client]).collect();
            eprintln!(
                "conservation: client {client}: written when each kill was over: {windows:?}"
            );
            check_plain_gaps(client, &gaps, &windows);
        } else {
            assert_eq!(
                summary.acknowledgements,
                AckMode::Confirmed,
                "client {client}"
            );
            assert!(summary.is_complete(), "client {client}: {summary}");
            assert_eq!(summary.confirmed.len(), RECORDS as u64, "client {client}");
            assert_eq!(
                kept, summary.confirmed,
                "client {client}: confirmed = stored"
            );
            assert!(
                gaps.is_empty(),
                "client {client}: gaps {:?}",
                gaps.ranges().collect::<Vec<_>>()
            );
        }
        eprintln!(
            "conservation: client {client} ({}): sent {}, stored {}, gaps {} {:?}",
            if client < PLAIN {
                "plain"
            } else {
                "acknowledged"
            },
            summary.sent.len(),
            kept.len(),
            gaps.len(),
            gaps.ranges().collect::<Vec<_>>()
        );
        total_sent += summary.sent.len();
        total_stored += kept.len();
        total_gaps += gaps.len();
    }
    assert!(
        stored.is_empty(),
        "sessions nobody sent: {:?}",
        stored.keys().collect::<Vec<_>>()
    );
    eprintln!(
        "conservation: totals: sent {total_sent}, stored {total_stored}, gaps {total_gaps} (all at agent kills)"
    );
}

/// A plain client's gaps must each be the tail of what it wrote to a
/// connection a kill ended: with `windows[k]` the records written when kill
/// `k` was over, connection `k` carried `windows[k-1]..windows[k]`, the
/// agent made a prefix of that durable, and the rest may be gone. Nothing
/// written after the last kill may be missing.
fn check_plain_gaps(client: usize, gaps: &SequenceSet, windows: &[u64]) {
    let mut from = 0u64;
    for (kill, &to) in windows.iter().enumerate() {
        let lost: Vec<i32> = gaps
            .iter()
            .filter(|&s| (s as u64) >= from && (s as u64) < to)
            .collect();
        if let (Some(&first), Some(&last)) = (lost.first(), lost.last()) {
            assert_eq!(
                last as u64,
                to - 1,
                "client {client}: kill {kill} lost records {first}..={last} that were not the tail of its connection ({from}..{to})"
            );
            assert_eq!(
                lost.len() as i64,
                i64::from(last - first) + 1,
                "client {client}: kill {kill}: the lost records are not one tail: {lost:?}"
            );
        }
        from = to;
    }
    let late: Vec<i32> = gaps.iter().filter(|&s| s as u64 >= from).take(5).collect();
    assert!(
        late.is_empty(),
        "client {client}: records written after the last kill are missing: {late:?}"
    );
}
