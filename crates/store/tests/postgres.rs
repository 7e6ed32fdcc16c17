//! The conformance suite against PostgreSQL, plus what only a shared
//! database has: several replicas (store instances) on one database at once.
//!
//! Each test gets its own database from [`TestPg`]: a private PostgreSQL 15
//! cluster, or one on the server `WARDEN_TEST_PG_URL` names. Without the
//! PostgreSQL binaries the tests fail and say how to install them.

mod conformance;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conformance::StoreFactory;
use jiff::Timestamp;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};
use uuid::Uuid;
use warden_proto::domain::{AuditRecord, ClientLogs, Decision, EventTime, IngestBatch, Peer};
use warden_store::chain::check::check_store;
use warden_store::{
    DatabaseUrl, IngestRequest, NewWorkspace, PgStore, RecordId, RecordQuery, Store, StoreError,
    TokenHash, Workspace,
};
use warden_testpg::TestPg;

/// A database of its own for one test.
struct Postgres {
    pg: TestPg,
}

impl Postgres {
    fn new() -> Postgres {
        Postgres {
            pg: TestPg::start().expect("a PostgreSQL test database"),
        }
    }

    /// One more replica on the test's database.
    async fn replica(&self) -> Arc<PgStore> {
        Arc::new(PgStore::open(self.pg.url()).await.unwrap())
    }

    /// Waits until no other session is connected to the test's database:
    /// what a restarted process finds once the kernel has closed the old
    /// one's sockets and PostgreSQL has ended its sessions.
    async fn wait_for_old_sessions_to_end(&self) {
        self.wait_until_none(
            "sessions of a dropped store",
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND $1::int IS NULL",
            None,
        )
        .await;
    }

    /// Waits until nobody holds the lock of replica `number` (it died).
    async fn wait_for_replica_lock_release(&self, number: i32) {
        self.wait_until_none(
            "holders of the crashed replica's lock",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid = 22340 AND objid = $1 AND objsubid = 2",
            Some(number),
        )
        .await;
    }

    /// Polls `count_sql` (one optional integer parameter) until it counts
    /// zero, failing after a deadline.
    async fn wait_until_none(&self, what: &str, count_sql: &'static str, param: Option<i32>) {
        let mut conn = PgConnection::connect(self.pg.url()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left: i64 = sqlx::query(count_sql)
                .bind(param)
                .fetch_one(&mut conn)
                .await
                .unwrap()
                .get(0);
            if left == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{left} {what} still there");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        conn.close().await.unwrap();
    }
}

impl StoreFactory for Postgres {
    async fn open(&self) -> Arc<dyn Store> {
        self.wait_for_old_sessions_to_end().await;
        self.replica().await
    }
}

conformance::suite!(Postgres::new());
conformance::chain_suite!(Postgres::new());
conformance::exports_suite!(Postgres::new());
conformance::access_suite!(Postgres::new());

// ---- helpers -------------------------------------------------------------

async fn workspace(store: &dyn Store, name: &str) -> Workspace {
    store
        .create_workspace(
            NewWorkspace {
                id: Uuid::now_v7(),
                name: name.into(),
                owner: "alice".into(),
                startup_script: String::new(),
                agent_id: Uuid::new_v4(),
                agent_name: "main".into(),
                token_hash: TokenHash([1; 32]),
            },
            Timestamp::now(),
        )
        .await
        .unwrap()
}

fn records(session: &str, seqs: std::ops::Range<i32>) -> IngestBatch {
    IngestBatch {
        batch_id: Uuid::now_v7(),
        received_at: Timestamp::now(),
        peer: Peer {
            uid: 1000,
            gid: 1000,
            pid: 7,
            comm: "curl".into(),
            exe: "/usr/bin/curl".into(),
        },
        logs: Some(ClientLogs {
            session_id: Some(session.into()),
            confined_process_name: "claude".into(),
            records: seqs
                .map(|s| AuditRecord {
                    decision: Decision::Deny,
                    event_time: EventTime::Known(Timestamp::new(1_765_227_526, 0).unwrap()),
                    method: "GET".into(),
                    url: format!("https://example.com/{s}"),
                    matched_rule: String::new(),
                    sequence_number: s,
                })
                .collect(),
            rejected: Vec::new(),
            ..Default::default()
        }),
        client_status: Vec::new(),
        agent_drops: Vec::new(),
    }
}

fn request(ws: &Workspace, batches: Vec<IngestBatch>) -> Arc<IngestRequest> {
    Arc::new(IngestRequest {
        agent_id: ws.agent.id,
        at: Timestamp::now(),
        batches,
    })
}

/// Every line a replica has to print, as its printer would page them.
async fn due(store: &dyn Store) -> Vec<RecordId> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.unprinted_records(cursor, 100).await.unwrap();
        let Some(last) = page.last() else {
            return ids;
        };
        cursor = Some(last.id);
        ids.extend(page.iter().map(|r| r.id));
    }
}

fn sorted(ids: impl IntoIterator<Item = RecordId>) -> Vec<RecordId> {
    let mut ids: Vec<_> = ids.into_iter().collect();
    ids.sort_unstable();
    ids
}

// ---- replicas ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batches_through_two_replicas_at_once_are_stored_once() {
    let pg = Postgres::new();
    let (a, b) = (pg.replica().await, pg.replica().await);
    let dev = workspace(&*a, "dev").await;
    for round in 0..20 {
        // An agent that timed out on one replica re-sends to the other while
        // the first call is still committing.
        let req = request(
            &dev,
            vec![
                records(&format!("s{round}"), 0..50),
                records(&format!("t{round}"), 0..50),
            ],
        );
        let (x, y) = tokio::join!(a.ingest(Arc::clone(&req)), b.ingest(Arc::clone(&req)));
        let (x, y) = (x.unwrap(), y.unwrap());
        for i in 0..2 {
            let fresh = [&x, &y]
                .iter()
                .filter(|o| !o.batches[i].already_committed)
                .count();
            assert_eq!(fresh, 1, "round {round} batch {i}: {x:?} {y:?}");
        }
        assert_eq!(x.record_ids.len() + y.record_ids.len(), 100);
    }
    let stored = a
        .records(RecordQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 20 * 100);
    assert!(stored.iter().all(|r| !r.conflict));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_records_in_other_batches_through_two_replicas_are_duplicates() {
    let pg = Postgres::new();
    let (a, b) = (pg.replica().await, pg.replica().await);
    let dev = workspace(&*a, "dev").await;
    for round in 0..20 {
        // The client re-sent its records, so they came in two batches (two
        // batch ids) that reach two replicas at the same moment.
        let session = format!("s{round}");
        let (x, y) = tokio::join!(
            a.ingest(request(&dev, vec![records(&session, 0..40)])),
            b.ingest(request(&dev, vec![records(&session, 0..40)])),
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let (x, y) = (&x.batches[0], &y.batches[0]);
        assert_eq!(x.stored() + y.stored(), 40, "{x:?} {y:?}");
        assert_eq!(x.duplicates + y.duplicates, 40, "{x:?} {y:?}");
        assert_eq!(x.conflicts() + y.conflicts(), 0, "{x:?} {y:?}");
        let summary = a.session_summary(dev.id, &session).await.unwrap().unwrap();
        assert_eq!((summary.records, summary.conflicts), (40, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_prints_only_the_lines_it_committed() {
    let pg = Postgres::new();
    let (a, b) = (pg.replica().await, pg.replica().await);
    let dev = workspace(&*a, "dev").await;
    let by_a = a
        .ingest(request(&dev, vec![records("a", 0..30)]))
        .await
        .unwrap();
    let by_b = b
        .ingest(request(&dev, vec![records("b", 0..20)]))
        .await
        .unwrap();
    // Both are alive: neither adopts the other's lines.
    assert_eq!(due(&*a).await, sorted(by_a.record_ids.clone()));
    assert_eq!(due(&*b).await, sorted(by_b.record_ids.clone()));
    a.mark_printed(by_a.record_ids).await.unwrap();
    assert!(due(&*a).await.is_empty());
    assert_eq!(due(&*b).await, sorted(by_b.record_ids));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replicas_lines_are_adopted_by_exactly_one_replica() {
    let pg = Postgres::new();
    let crashed = pg.replica().await;
    let dev = workspace(&*crashed, "dev").await;
    let mut left: Vec<RecordId> = Vec::new();
    for i in 0..5 {
        let outcome = crashed
            .ingest(request(&dev, vec![records(&format!("s{i}"), 0..100)]))
            .await
            .unwrap();
        left.extend(outcome.record_ids);
    }
    // Printed some, then died before printing the rest.
    crashed.mark_printed(left.split_off(250)).await.unwrap();
    let live = pg.replica().await;
    let own = live
        .ingest(request(&dev, vec![records("live", 0..10)]))
        .await
        .unwrap();
    let number = crashed.replica();
    drop(crashed);
    pg.wait_for_replica_lock_release(number).await;

    // Two replicas start at the same moment and both look for orphans.
    let (b, c) = (pg.replica().await, pg.replica().await);
    let (for_b, for_c) = tokio::join!(due(&*b), due(&*c));
    let adopted: Vec<_> = for_b.iter().chain(&for_c).copied().collect();
    assert_eq!(
        sorted(adopted.clone()),
        sorted(left),
        "adopted once, all of them"
    );
    assert_eq!(
        adopted.iter().collect::<HashSet<_>>().len(),
        adopted.len(),
        "no line went to both"
    );
    // The live replica's lines stayed its own.
    assert_eq!(due(&*live).await, sorted(own.record_ids));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_replicas_unprinted_lines_are_adopted() {
    let pg = Postgres::new();
    let first = pg.replica().await;
    let dev = workspace(&*first, "dev").await;
    let outcome = first
        .ingest(request(&dev, vec![records("s", 0..10)]))
        .await
        .unwrap();
    first.close().await.unwrap();
    let next = pg.replica().await;
    assert_eq!(due(&*next).await, sorted(outcome.record_ids));
}

/// The follow guarantee with two replicas committing at once: a reader going
/// `id > cursor` sees every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_misses_nothing_while_two_replicas_commit() {
    const WRITERS: usize = 8;
    const CALLS: usize = 25;
    let pg = Postgres::new();
    let replicas = [pg.replica().await, pg.replica().await];
    let dev = workspace(&*replicas[0], "dev").await;
    let finished = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = Arc::clone(&replicas[w % 2]);
        let dev = dev.clone();
        let finished = Arc::clone(&finished);
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for c in 0..CALLS {
                let req = request(&dev, vec![records(&format!("w{w}c{c}"), 0..10)]);
                ids.extend(store.ingest(req).await.unwrap().record_ids);
            }
            finished.fetch_add(1, Ordering::SeqCst);
            ids
        }));
    }
    let reader = pg.replica().await;
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let all_done = finished.load(Ordering::SeqCst) == WRITERS;
        let page = reader
            .records(RecordQuery {
                after_id: cursor,
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        match page.last() {
            Some(last) => cursor = Some(last.id),
            None if all_done => break,
            None => tokio::task::yield_now().await,
        }
        seen.extend(page.iter().map(|r| r.id));
    }
    let mut committed = BTreeSet::new();
    for writer in writers {
        committed.extend(writer.await.unwrap());
    }
    assert_eq!(committed.len(), WRITERS * CALLS * 10);
    let seen: BTreeSet<_> = seen.into_iter().collect();
    assert_eq!(
        committed.difference(&seen).count(),
        0,
        "the follower missed records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_beside_ingest_on_two_replicas_loses_nothing_young() {
    let pg = Postgres::new();
    let (a, b) = (pg.replica().await, pg.replica().await);
    let dev = workspace(&*a, "dev").await;
    // Old records to purge.
    let mut old = Vec::new();
    for i in 0..10 {
        let mut batch = records(&format!("old{i}"), 0..100);
        batch.received_at = Timestamp::new(1_700_000_000, 0).unwrap();
        old.push(batch);
    }
    // Taken by the control plane long ago (retention goes by its clock).
    a.ingest(Arc::new(IngestRequest {
        agent_id: dev.agent.id,
        at: Timestamp::new(1_700_000_000, 0).unwrap(),
        batches: old,
    }))
    .await
    .unwrap();
    let cutoff = Timestamp::new(1_700_000_001, 0).unwrap();
    let purger = |store: Arc<PgStore>| async move {
        let mut purged = 0;
        loop {
            let pass = store.purge_records_before(cutoff, 64).await.unwrap();
            if pass.is_empty() {
                return purged;
            }
            purged += pass.records;
        }
    };
    let writer = |store: Arc<PgStore>, name: &'static str| {
        let dev = dev.clone();
        async move {
            let mut n = 0;
            for i in 0..20 {
                let req = request(&dev, vec![records(&format!("{name}{i}"), 0..25)]);
                n += store.ingest(req).await.unwrap().record_ids.len();
            }
            n
        }
    };
    let (p1, p2, w1, w2) = tokio::join!(
        purger(Arc::clone(&a)),
        purger(Arc::clone(&b)),
        writer(Arc::clone(&a), "a"),
        writer(Arc::clone(&b), "b"),
    );
    assert_eq!(
        p1 + p2,
        1000,
        "between them the purgers deleted every old record"
    );
    assert_eq!(w1 + w2, 1000);
    let left = a
        .records(RecordQuery {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 1000);
    assert!(
        left.iter()
            .all(|r| !r.session_id.as_deref().unwrap().starts_with("old"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_creating_one_workspace_name_at_once_get_one_workspace() {
    let pg = Postgres::new();
    let (a, b) = (pg.replica().await, pg.replica().await);
    for round in 0..10 {
        let name = format!("ws{round}");
        let create = |store: Arc<PgStore>| {
            let name = name.clone();
            async move {
                store
                    .create_workspace(
                        NewWorkspace {
                            id: Uuid::now_v7(),
                            name,
                            owner: "alice".into(),
                            startup_script: String::new(),
                            agent_id: Uuid::new_v4(),
                            agent_name: "main".into(),
                            token_hash: TokenHash([2; 32]),
                        },
                        Timestamp::now(),
                    )
                    .await
            }
        };
        let (x, y) = tokio::join!(create(Arc::clone(&a)), create(Arc::clone(&b)));
        let taken = [&x, &y]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::NameTaken(_))))
            .count();
        assert_eq!((x.is_ok() as usize + y.is_ok() as usize, taken), (1, 1));
    }
    assert_eq!(a.list_workspaces().await.unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once_and_agree_on_the_admin_token() {
    let pg = Postgres::new();
    let open = || PgStore::open(pg.pg.url());
    let (a, b, c) = tokio::join!(open(), open(), open());
    let stores = [a.unwrap(), b.unwrap(), c.unwrap()];
    let numbers: HashSet<i32> = stores.iter().map(PgStore::replica).collect();
    assert_eq!(numbers.len(), 3, "every replica has a number of its own");
    let (x, y, z) = tokio::join!(
        stores[0].init_admin_token_hash(TokenHash([1; 32])),
        stores[1].init_admin_token_hash(TokenHash([2; 32])),
        stores[2].init_admin_token_hash(TokenHash([3; 32])),
    );
    let (x, y, z) = (x.unwrap(), y.unwrap(), z.unwrap());
    assert!(x == y && y == z, "one hash wins everywhere");
}

#[tokio::test]
async fn open_picks_postgres_from_the_url_and_refuses_bad_ones() {
    let pg = Postgres::new();
    let url: DatabaseUrl = pg.pg.url().parse().unwrap();
    let store = warden_store::open(&url).await.unwrap();
    store.ping().await.unwrap();
    store.close().await.unwrap();
    assert!(matches!(store.ping().await, Err(StoreError::Closed)));

    let bad = PgStore::open("postgres://user:hunter2@127.0.0.1:notaport/db")
        .await
        .unwrap_err();
    assert!(matches!(bad, StoreError::InvalidUrl(_)), "{bad}");
    assert!(!bad.to_string().contains("hunter2"), "{bad}");
}

// ---- upgrades --------------------------------------------------------------

/// The schema of the release that stored a row per record (migrations
/// 0001-0005, kept as test data so that later changes to the embedded ones
/// cannot hide a broken upgrade).
const V5_SCHEMA: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("data/pg_v5/0001_initial.sql")),
    (
        2,
        "query api",
        include_str!("data/pg_v5/0002_query_api.sql"),
    ),
    (
        5,
        "bounds and policies",
        include_str!("data/pg_v5/0005_bounds_and_policies.sql"),
    ),
];

/// Writes, with the old schema, what the old release stored for one agent:
/// two batches of one session (ids 1-3, the third a conflict), one batch
/// without a session (id 4), the lines of ids 3-4 not printed by replica 1
/// (which is gone), a final sequence number.
async fn old_release_database(url: &str) -> (Uuid, Uuid, Uuid) {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let mut conn = PgConnection::connect(url).await.unwrap();
    let migrator = Migrator::with_migrations(
        V5_SCHEMA
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect(),
    );
    migrator.run_direct(None, &mut conn, false).await.unwrap();
    let (ws, agent, batch) = (Uuid::now_v7(), Uuid::new_v4(), Uuid::new_v4());
    let statements = [
        format!(
            "INSERT INTO workspaces (uuid, created_at, name, owner, startup_script) \
             VALUES ('{ws}', 1, 'old', 'alice', '')"
        ),
        format!(
            "INSERT INTO agents (uuid, workspace_id, token_issued_at, name, token_hash) \
             VALUES ('{agent}', 1, 1, 'main', '\\x01')"
        ),
        format!(
            "INSERT INTO batches (agent_id, uuid, received_secs, received_nanos, committed_at, \
             session_id, process, peer_uid, peer_gid, peer_pid, peer_comm, peer_exe, \
             first_record, last_record) VALUES \
             (1, '{batch}', 1765227526, 5, 1765227527000000000, 's1', 'claude', 1000, 1000, 7, \
              'curl', '/usr/bin/curl', 1, 3), \
             (1, '{}', 1765227526, 5, 1765227527000000000, NULL, 'sh', 0, 0, 8, 'wget', \
              '/usr/bin/wget', 4, 4)",
            Uuid::new_v4()
        ),
        "INSERT INTO records (batch_id, agent_id, event_secs, event_nanos, occurred_ns, \
         sequence_number, allowed, conflict, session_id, method, url, matched_rule, \
         url_original_bytes) VALUES \
         (1, 1, 1765227000, 9, 1765227000000000009, 1, false, false, 's1', 'GET', \
          'https://denied.example/a', '', NULL), \
         (1, 1, NULL, NULL, 1765227527000000000, 2, true, false, 's1', 'POST', \
          'https://ok.example/b', 'domain=ok.example', 9000), \
         (1, 1, 1765227001, 0, 1765227001000000000, 2, false, true, 's1', 'GET', \
          'https://other.example/c', '', NULL), \
         (2, 1, 1765227002, 0, 1765227002000000000, 0, false, false, NULL, 'GET', \
          'https://denied.example/d', '', NULL)"
            .to_owned(),
        "INSERT INTO sessions (agent_id, session_id, final_sequence_number) VALUES (1, 's1', 2)"
            .to_owned(),
        "SELECT nextval('replica_numbers')".to_owned(),
        "INSERT INTO line_outbox (first_id, last_id, replica) VALUES (3, 4, 1)".to_owned(),
    ];
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    (ws, agent, batch)
}

#[tokio::test]
async fn a_row_per_record_database_opens_with_every_record_and_line() {
    let pg = Postgres::new();
    let (ws, agent, old_batch) = old_release_database(pg.pg.url()).await;
    let store = pg.replica().await;

    let all = store
        .records(RecordQuery {
            limit: 100,
            order: warden_store::Order::OldestFirst,
            ..RecordQuery::default()
        })
        .await
        .unwrap();
    let got: Vec<_> = all
        .iter()
        .map(|r| {
            (
                r.id,
                r.session_id.as_deref(),
                r.sequence_number,
                r.url.as_str(),
                r.conflict,
                r.decision,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                1,
                Some("s1"),
                1,
                "https://denied.example/a",
                false,
                Decision::Deny
            ),
            (
                2,
                Some("s1"),
                2,
                "https://ok.example/b",
                false,
                Decision::Allow
            ),
            (
                3,
                Some("s1"),
                2,
                "https://other.example/c",
                true,
                Decision::Deny
            ),
            (
                4,
                None,
                0,
                "https://denied.example/d",
                false,
                Decision::Deny
            ),
        ]
    );
    assert!(
        all.iter()
            .all(|r| r.workspace_id == ws && r.agent_id == agent)
    );
    assert_eq!(all[0].batch_id, old_batch);
    assert_eq!(all[1].url_original_bytes, Some(9000));
    assert_eq!(all[1].matched_rule, "domain=ok.example");
    assert_eq!(all[1].event_time, EventTime::Missing);
    assert_eq!(all[3].process, "sh");
    assert_eq!(
        all[0].received_at,
        Timestamp::from_nanosecond(1_765_227_527_000_000_000).unwrap()
    );

    // The dead replica's unprinted lines are adopted, the printed ones not.
    assert_eq!(due(&*store).await, [3, 4]);

    let summary = store.session_summary(ws, "s1").await.unwrap().unwrap();
    assert_eq!(
        (
            summary.records,
            summary.conflicts,
            summary.distinct_sequence_numbers,
            summary.final_sequence_number
        ),
        (3, 1, 2, Some(2))
    );
    let activity = store
        .workspace_activity(warden_store::ActivityQuery {
            workspace_id: ws,
            since: None,
            until: None,
            top_hosts: 5,
        })
        .await
        .unwrap();
    assert_eq!((activity.allowed, activity.denied), (1, 3));

    // Idempotency carries over: the old batch id and the old session keys.
    let workspace = store.workspace("old").await.unwrap().unwrap();
    let mut again = records("s1", 1..2);
    again.batch_id = old_batch;
    let outcome = store
        .ingest(request(&workspace, vec![again]))
        .await
        .unwrap();
    assert!(outcome.batches[0].already_committed);
    let mut resent = records("s1", 1..3);
    if let Some(logs) = resent.logs.as_mut() {
        logs.records[0].event_time = EventTime::Known(Timestamp::new(1_765_227_000, 9).unwrap());
        logs.records[0].url = "https://denied.example/a".into();
    }
    let outcome = store
        .ingest(request(&workspace, vec![resent]))
        .await
        .unwrap();
    // Sequence 1 is the same record; sequence 2 differs from both stored
    // copies: a new conflict, with an id after the old ones.
    assert_eq!(outcome.batches[0].duplicates, 1);
    assert_eq!(outcome.record_ids, [5]);

    // The converted records were sealed by the genesis link; record 5
    // chains after them, and the whole store checks clean.
    let links = store.chain_links(-1, 10).await.unwrap();
    assert_eq!(
        links
            .iter()
            .map(|l| (l.seq, l.first_id, l.last_id, l.records))
            .collect::<Vec<_>>(),
        [(0, 1, 4, 4), (1, 5, 5, 1)]
    );
    let (problems, counts) = check_store(&*store).await.unwrap().finish();
    assert_eq!(problems, []);
    assert_eq!(counts.records, 5);
    store.close().await.unwrap();
}

/// Two replicas committing at once extend one chain, one link per group
/// commit in commit order, and every record checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_extend_one_chain_in_commit_order() {
    let pg = Postgres::new();
    let replicas = [pg.replica().await, pg.replica().await];
    let dev = workspace(&*replicas[0], "dev").await;
    let mut writers = Vec::new();
    for w in 0..6 {
        let store = Arc::clone(&replicas[w % 2]);
        let dev = dev.clone();
        writers.push(tokio::spawn(async move {
            for c in 0..20 {
                let req = request(&dev, vec![records(&format!("w{w}c{c}"), 0..5)]);
                store.ingest(req).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let links = replicas[1].chain_links(-1, 1000).await.unwrap();
    assert_eq!(links[0].seq, 0, "the genesis link");
    for pair in links.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].first_id, pair[0].last_id + 1, "{pair:?}");
    }
    assert_eq!(links.iter().map(|l| l.records).sum::<i64>(), 6 * 20 * 5);
    let (problems, counts) = check_store(&*replicas[0]).await.unwrap().finish();
    assert_eq!(problems, []);
    assert_eq!(counts.records, 600);
}

/// Tampering with PostgreSQL's tables directly is caught and the records
/// named: a block's content replaced by another's, and a deleted chain
/// makes the store refuse to open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_blocks_or_the_chain_is_caught() {
    let pg = Postgres::new();
    let store = pg.replica().await;
    let dev = workspace(&*store, "dev").await;
    let a = store
        .ingest(request(&dev, vec![records("a", 0..3)]))
        .await
        .unwrap();
    let b = store
        .ingest(request(&dev, vec![records("b", 0..3)]))
        .await
        .unwrap();
    let (problems, _) = check_store(&*store).await.unwrap().finish();
    assert_eq!(problems, []);

    let mut conn = PgConnection::connect(pg.pg.url()).await.unwrap();
    sqlx::query(
        "UPDATE blocks SET data = (SELECT data FROM blocks WHERE first_id = $2) \
         WHERE first_id = $1",
    )
    .bind(a.record_ids[0])
    .bind(b.record_ids[0])
    .execute(&mut conn)
    .await
    .unwrap();
    let (problems, _) = check_store(&*store).await.unwrap().finish();
    let named: BTreeSet<i64> = problems.iter().filter_map(|p| p.record_id()).collect();
    assert_eq!(
        named,
        a.record_ids.iter().copied().collect(),
        "{problems:?}"
    );
    store.close().await.unwrap();

    sqlx::query("DELETE FROM chain_links")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let err = PgStore::open(pg.pg.url()).await.unwrap_err();
    assert!(err.to_string().contains("record chain is missing"), "{err}");
}
