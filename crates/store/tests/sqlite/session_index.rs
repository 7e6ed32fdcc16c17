//! The per-session index kept off the commit path
//! (`src/sqlite/session_index.rs`): blocks are entered about once a second,
//! and reads must find every block of a session whichever side of that mark
//! it is on, after retention cut it, and in a database from before the
//! index was a table.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rusqlite::Connection;
use warden_proto::domain::IngestBatch;
use warden_store::{SqliteStore, Store, StoreOptions, StoredRecord, Workspace};

use super::Sqlite;
use super::conformance::{
    self, StoreFactory, batch, create, record, records, request, session_in_pages,
};

/// A store that enters blocks in the session index every `every`.
struct Indexed {
    db: Sqlite,
    every: Duration,
}

impl Indexed {
    /// Only when the store opens (the writer's start enters what is left).
    fn at_open() -> Indexed {
        Indexed {
            db: Sqlite::new(),
            every: Duration::MAX,
        }
    }

    /// With every commit.
    fn at_once() -> Indexed {
        Indexed {
            db: Sqlite::new(),
            every: Duration::ZERO,
        }
    }

    fn sql(&self) -> Connection {
        Connection::open(self.db.path()).unwrap()
    }

    /// The one number `sql` selects.
    fn number(&self, sql: &str) -> i64 {
        self.sql().query_row(sql, [], |row| row.get(0)).unwrap()
    }

    /// (session, first sequence number) of the indexed blocks, and the mark.
    fn index(&self) -> (Vec<(String, i32)>, i64) {
        let conn = self.sql();
        let mut stmt = conn
            .prepare("SELECT session_id, first_seq FROM session_blocks ORDER BY 1, 2")
            .unwrap();
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mark =
            self.number("SELECT value FROM store_state WHERE key = 'session_blocks_through'");
        (rows, mark)
    }

    fn newest_block(&self) -> i64 {
        self.number("SELECT max(first_id) FROM blocks")
    }
}

impl StoreFactory for Indexed {
    async fn open(&self) -> Arc<dyn Store> {
        let options = StoreOptions {
            session_index_every: self.every,
            ..StoreOptions::default()
        };
        Arc::new(
            SqliteStore::open_with(&self.db.path(), options)
                .await
                .unwrap(),
        )
    }
}

/// The whole suite again with every block entered at its commit: the
/// default enters them a second later, after most of the suite's tests
/// are over, so there they are mostly read from the newest blocks.
mod suite_with_every_block_indexed {
    use super::{Indexed, conformance};

    conformance::suite!(Indexed::at_once());
}

/// (sequence number, conflict) of each record.
fn numbers(records: &[StoredRecord]) -> Vec<(i32, bool)> {
    records
        .iter()
        .map(|r| (r.sequence_number, r.conflict))
        .collect()
}

async fn ingest(store: &dyn Store, workspace: &Workspace, batch: IngestBatch) -> (u32, usize) {
    let outcome = store.ingest(request(workspace, vec![batch])).await.unwrap();
    (outcome.batches[0].duplicates, outcome.record_ids.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_blocks_are_found_on_both_sides_of_the_mark() {
    let factory = Indexed::at_open();
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    ingest(&*store, &dev, batch(Some("s"), records(5..10))).await;
    store.close().await.unwrap();
    // Entered when the store opens again; the mark is the newest block.
    let store = factory.open().await;
    assert_eq!(
        factory.index(),
        (vec![("s".into(), 5)], factory.newest_block())
    );

    // Lower numbers after the mark, so the two sides interleave in order.
    ingest(&*store, &dev, batch(Some("s"), records(0..5))).await;
    assert_eq!(
        factory.index().0.len(),
        1,
        "not entered before the store opens again"
    );
    // A conflict and a duplicate against each side.
    let evil = |seq| record(seq, "https://evil.example/");
    let same = |seq| records(seq..seq + 1).remove(0);
    for sent in [evil(7), evil(2)] {
        assert_eq!(
            ingest(&*store, &dev, batch(Some("s"), vec![sent])).await,
            (0, 1)
        );
    }
    for sent in [same(8), same(3)] {
        assert_eq!(
            ingest(&*store, &dev, batch(Some("s"), vec![sent])).await,
            (1, 0)
        );
    }

    let want = [
        (0, false),
        (1, false),
        (2, false),
        (2, true),
        (3, false),
        (4, false),
        (5, false),
        (6, false),
        (7, false),
        (7, true),
        (8, false),
        (9, false),
    ];
    assert_eq!(numbers(&session_in_pages(&*store, &dev, "s").await), want);
    store.close().await.unwrap();
    // And the same once everything is entered.
    let store = factory.open().await;
    assert_eq!(
        factory.index().0.len(),
        4,
        "the blocks of 5..10, 0..5, 7 and 2"
    );
    assert_eq!(numbers(&session_in_pages(&*store, &dev, "s").await), want);
}

/// A backlog (here one call with more blocks than a commit enters) is
/// entered 128 blocks per commit, so no commit waits long
/// for it, and read from `blocks` meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_entered_a_bounded_number_of_blocks_a_commit() {
    let factory = Indexed::at_once();
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let sessions: Vec<String> = (0..600).map(|i| format!("s{i:03}")).collect();
    let batches = sessions
        .iter()
        .map(|s| batch(Some(s), records(0..1)))
        .collect();
    store.ingest(request(&dev, batches)).await.unwrap();
    let mut entered = vec![factory.index().0.len()];
    for s in ["t0", "t1", "t2", "t3"] {
        ingest(&*store, &dev, batch(Some(s), records(0..1))).await;
        entered.push(factory.index().0.len());
    }
    assert_eq!(entered, [128, 256, 384, 512, 604]);
    assert_eq!(factory.index().1, factory.newest_block());
    for s in [&sessions[0], &sessions[300], &sessions[599]] {
        assert_eq!(session_in_pages(&*store, &dev, s).await.len(), 1, "{s}");
    }

    // At the writer's start, the whole backlog is entered before it goes on.
    let factory = Indexed::at_open();
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let batches = sessions
        .iter()
        .map(|s| batch(Some(s), records(0..1)))
        .collect();
    store.ingest(request(&dev, batches)).await.unwrap();
    assert!(factory.index().0.is_empty());
    store.close().await.unwrap();
    let _store = factory.open().await;
    assert_eq!(
        factory.index(),
        (one_block_each(&sessions), factory.newest_block())
    );
}

/// (session, 0) for each of `sessions`: their one-record blocks entered.
fn one_block_each(sessions: &[String]) -> Vec<(String, i32)> {
    sessions.iter().map(|s| (s.clone(), 0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_retention_leaves_of_an_indexed_block_is_entered_again() {
    let factory = Indexed::at_once();
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let mut printed = Vec::new();
    for (session, seqs) in [("s", 0..10), ("t", 0..2)] {
        let outcome = store
            .ingest(request(&dev, vec![batch(Some(session), records(seqs))]))
            .await
            .unwrap();
        printed.extend(outcome.record_ids);
    }
    store.mark_printed(printed).await.unwrap();
    let entered = |s: &str, seq| (s.to_owned(), seq);
    assert_eq!(factory.index().0, [entered("s", 0), entered("t", 0)]);

    // One pass of four records cuts the oldest block; the rest keeps an id
    // below the mark (the newer block of `t`).
    let cutoff = Timestamp::now() + SignedDuration::from_hours(1);
    assert_eq!(
        store.purge_records_before(cutoff, 4).await.unwrap().records,
        4
    );
    let (index, mark) = factory.index();
    assert_eq!(index, [entered("s", 4), entered("t", 0)]);
    let rest_of_s = factory.number("SELECT first_id FROM blocks WHERE session_id = 's'");
    assert!(rest_of_s < mark, "{rest_of_s} is below the mark {mark}");

    let rest: Vec<i32> = (4..10).collect();
    let found = session_in_pages(&*store, &dev, "s").await;
    assert_eq!(
        found.iter().map(|r| r.sequence_number).collect::<Vec<_>>(),
        rest
    );
    // The session's bounds are counted again from what is left.
    let bounds: (i64, i64) = factory
        .sql()
        .query_row(
            "SELECT first_id, last_id FROM sessions WHERE session_id = 's'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(bounds, (found[0].id, found[5].id));
    // Conflicts are still told from duplicates there.
    let evil = record(6, "https://evil.example/");
    assert_eq!(
        ingest(&*store, &dev, batch(Some("s"), vec![evil])).await,
        (0, 1)
    );
    assert_eq!(
        ingest(&*store, &dev, batch(Some("s"), records(5..6))).await,
        (1, 0)
    );
}

/// A database written before the index was a table (migrations up to 14:
/// the `blocks_session` index, no `session_blocks`) gets every block
/// entered by the migration, and its sessions read and check as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_the_session_table_keeps_its_sessions() {
    let factory = Indexed::at_open();
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    for (session, seqs) in [("a", 0..4), ("b", 0..3), ("a", 4..9), ("b", 3..6)] {
        ingest(&*store, &dev, batch(Some(session), records(seqs))).await;
    }
    ingest(&*store, &dev, batch(None, records(0..2))).await;
    store.close().await.unwrap();
    // Back to the schema of migration 14, as the release before wrote it.
    factory
        .sql()
        .execute_batch(
            "DROP VIEW session_block_ids;
             DROP TRIGGER session_blocks_enter_old_ids;
             DROP TRIGGER session_blocks_follow_deletes;
             DROP TABLE session_blocks;
             DELETE FROM store_state WHERE key = 'session_blocks_through';
             CREATE INDEX blocks_session ON blocks (agent_id, session_id, first_seq)
                 WHERE session_id IS NOT NULL;
             DELETE FROM _sqlx_migrations WHERE version = 15;",
        )
        .unwrap();

    let store = factory.open().await;
    let entered = ["a", "a", "b", "b"].map(String::from);
    let (index, mark) = factory.index();
    assert_eq!(
        index.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(),
        entered
    );
    assert_eq!(mark, factory.newest_block());
    let old_index =
        factory.number("SELECT count(*) FROM sqlite_schema WHERE name = 'blocks_session'");
    assert_eq!(old_index, 0);
    let a = session_in_pages(&*store, &dev, "a").await;
    assert_eq!(
        a.iter().map(|r| r.sequence_number).collect::<Vec<_>>(),
        (0..9).collect::<Vec<_>>()
    );
    assert_eq!(session_in_pages(&*store, &dev, "b").await.len(), 6);
    let evil = record(2, "https://evil.example/");
    assert_eq!(
        ingest(&*store, &dev, batch(Some("b"), vec![evil])).await,
        (0, 1)
    );
}
