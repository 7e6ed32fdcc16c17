//! The behaviour every [`Store`] backend must have.
//!
//! A backend's test file declares `mod conformance;`, implements
//! [`StoreFactory`] and calls `conformance::suite!(make_factory())`, which
//! expands to one `#[tokio::test]` per check below. `make_factory()` runs once
//! per test and must give each test a database of its own.

#![allow(dead_code)]

mod access;
mod chain;
mod exports;
mod queries;
mod reports;
mod retention;

pub use access::*;
pub use chain::*;
pub use exports::*;
pub use queries::*;
pub use reports::*;
pub use retention::*;

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use uuid::Uuid;
use warden_proto::domain::{
    AgentDrop, AuditRecord, ClientLogs, ClientStatus, Decision, EventTime, IngestBatch, Peer,
    RecordRejection,
};
use warden_store::{
    AgentCredentials, IngestRequest, LossSource, NewWorkspace, RecordQuery, Store, StoreError,
    TokenHash, Workspace,
};

/// Opens the backend under test.
pub trait StoreFactory: Send + Sync + 'static {
    /// Opens the test's database; a second call opens the same database again
    /// (what a restart sees), whether or not the first store was closed.
    fn open(&self) -> impl Future<Output = Arc<dyn Store>> + Send;
}

/// Expands to one test per conformance check.
macro_rules! suite {
    ($factory:expr) => {
        conformance::suite!(@tests $factory;
            registry_creates_lists_and_finds_workspaces,
            workspace_names_are_unique_among_live_workspaces,
            rotating_a_token_replaces_its_hash,
            deleting_revokes_the_agent_and_keeps_records,
            the_first_admin_token_hash_wins_unless_replaced,
            ingest_stores_every_field,
            a_resent_batch_changes_nothing,
            the_same_records_in_two_batches_are_stored_once,
            a_conflicting_record_is_stored_flagged,
            repeats_within_one_batch_are_duplicates_or_conflicts,
            records_without_session_rely_on_the_batch_id,
            rejected_records_are_counted_not_stored,
            status_and_drops_are_applied_once_per_batch,
            a_dropped_batch_is_stored_or_reported_never_both,
            drops_in_one_call_name_a_batch_once_and_merge_their_ranges,
            sessions_show_gaps_and_tail_loss,
            ingest_for_an_unknown_agent_fails,
            unprinted_records_survive_a_restart,
            record_ids_grow_in_commit_order,
            concurrent_copies_of_a_batch_are_stored_once,
            event_times_round_trip,
            record_queries_filter_and_page,
            contact_and_last_batch_are_recorded,
            a_closed_store_refuses_work,
            record_queries_filter_by_every_field,
            a_session_filter_pages_through_an_old_session_among_later_ones,
            text_is_kept_as_sent,
            a_follow_cursor_never_misses_a_record,
            purge_removes_what_was_received_before_the_cutoff,
            all_time_top_hosts_agree_with_the_range_counts_and_follow_purge,
            purge_works_in_bounded_passes,
            purge_keeps_session_summaries_and_losses,
            purge_never_hands_an_id_out_again,
            record_queries_filter_by_agent_method_and_conflict,
            session_records_come_in_sequence_order_in_pages,
            session_gaps_are_reported_as_ranges,
            session_ranges_grow_merge_and_split_across_deliveries,
            sessions_are_listed_most_recent_first,
            workspace_activity_counts_a_time_range,
            the_last_record_id_and_local_commits_follow_ingest,
            long_urls_are_stored_cut_with_their_length,
            policies_are_kept_by_digest_and_checked,
            an_agent_clock_is_evidence_not_trusted,
            minute_activity_counts_records_per_minute,
            records_are_counted_per_minute,
            the_first_web_session_key_wins,
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let factory = $factory;
                conformance::$name(&factory).await;
            }
        )*
    };
}
pub(crate) use suite;

/// The record chain's tests.
macro_rules! chain_suite {
    ($factory:expr) => {
        conformance::suite!(@tests $factory;
            every_committed_record_is_chained,
            leaves_from_blocks_are_the_records_leaves,
            retention_leaves_a_tombstone_and_the_rest_checks,
            checkpoints_are_stored_and_listed,
            session_verdicts_are_kept_and_sessions_awaiting_one_found,
        );
    };
}
pub(crate) use chain_suite;

// ---- helpers -------------------------------------------------------------

fn at(second: i64) -> Timestamp {
    Timestamp::new(1_765_227_526 + second, 0).unwrap()
}

fn hash(byte: u8) -> TokenHash {
    TokenHash([byte; 32])
}

/// The credentials of an agent that must have them.
async fn credentials_of(store: &dyn Store, agent: Uuid) -> AgentCredentials {
    store.agent_credentials(agent).await.unwrap().unwrap()
}

pub(crate) async fn create(store: &dyn Store, name: &str) -> Workspace {
    create_owned(store, name, "alice").await
}

async fn create_owned(store: &dyn Store, name: &str, owner: &str) -> Workspace {
    store
        .create_workspace(
            NewWorkspace {
                id: Uuid::now_v7(),
                name: name.into(),
                owner: owner.into(),
                startup_script: "echo hi".into(),
                agent_id: Uuid::new_v4(),
                agent_name: "main".into(),
                token_hash: hash(1),
            },
            at(0),
        )
        .await
        .unwrap()
}

pub(crate) fn record(seq: i32, url: &str) -> AuditRecord {
    AuditRecord {
        decision: if seq % 2 == 0 {
            Decision::Allow
        } else {
            Decision::Deny
        },
        event_time: EventTime::Known(Timestamp::new(1_765_227_526, 93_456_789).unwrap()),
        method: "GET".into(),
        url: url.into(),
        matched_rule: if seq % 2 == 0 {
            "domain=example.com".into()
        } else {
            String::new()
        },
        sequence_number: seq,
    }
}

pub(crate) fn records(seqs: std::ops::Range<i32>) -> Vec<AuditRecord> {
    seqs.map(|s| record(s, &format!("https://example.com/{s}")))
        .collect()
}

/// When [`batch`] says the agent received its records.
fn received() -> Timestamp {
    Timestamp::new(1_765_227_527, 5_000_000).unwrap()
}

pub(crate) fn batch(session: Option<&str>, records: Vec<AuditRecord>) -> IngestBatch {
    IngestBatch {
        batch_id: Uuid::now_v7(),
        received_at: received(),
        peer: Peer {
            uid: 1000,
            gid: 1001,
            pid: 4242,
            comm: "curl".into(),
            exe: "/usr/bin/curl".into(),
        },
        logs: Some(ClientLogs {
            session_id: session.map(str::to_owned),
            confined_process_name: "claude".into(),
            records,
            rejected: Vec::new(),
            ..Default::default()
        }),
        client_status: Vec::new(),
        agent_drops: Vec::new(),
    }
}

pub(crate) fn request(workspace: &Workspace, batches: Vec<IngestBatch>) -> Arc<IngestRequest> {
    Arc::new(IngestRequest {
        agent_id: workspace.agent.id,
        at: at(10),
        batches,
    })
}

async fn all_records(store: &dyn Store, workspace: &Workspace) -> Vec<warden_store::StoredRecord> {
    store
        .records(RecordQuery {
            workspace_id: Some(workspace.id),
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
}

const SESSION: &str = "0b6f8f0e-7a0c-4d7e-9a53-1f2d3c4b5a69";

// ---- registry ------------------------------------------------------------

pub async fn registry_creates_lists_and_finds_workspaces(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let ops = create(&*store, "ops").await;
    assert_eq!(dev.name, "dev");
    assert_eq!(dev.owner, "alice");
    assert_eq!(dev.startup_script, "echo hi");
    assert_eq!(dev.agent.name, "main");
    assert_eq!(dev.created_at, at(0));
    assert_ne!(dev.id, ops.id);
    assert_ne!(dev.agent.id, ops.agent.id);

    let listed = store.list_workspaces().await.unwrap();
    assert_eq!(listed, vec![dev.clone(), ops.clone()]);
    assert_eq!(store.workspace("dev").await.unwrap(), Some(dev.clone()));
    assert_eq!(store.workspace("nope").await.unwrap(), None);

    let creds = credentials_of(&*store, dev.agent.id).await;
    assert_eq!(creds.token_hash, hash(1));
    assert_eq!(creds.manifest, dev.manifest());
    assert_eq!(store.agent_credentials(Uuid::new_v4()).await.unwrap(), None);
}

pub async fn workspace_names_are_unique_among_live_workspaces(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let first = create(&*store, "dev").await;
    let again = store
        .create_workspace(
            NewWorkspace {
                id: Uuid::now_v7(),
                name: "dev".into(),
                owner: "bob".into(),
                startup_script: String::new(),
                agent_id: Uuid::new_v4(),
                agent_name: "main".into(),
                token_hash: hash(2),
            },
            at(1),
        )
        .await;
    assert!(matches!(again, Err(StoreError::NameTaken(name)) if name == "dev"));
    store.delete_workspace("dev", at(2)).await.unwrap();
    let second = create(&*store, "dev").await;
    assert_ne!(first.id, second.id);
    assert_eq!(store.list_workspaces().await.unwrap(), vec![second]);
}

pub async fn rotating_a_token_replaces_its_hash(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    // Read first, as every agent call does: what a store keeps of that read
    // must not outlive the rotation.
    let before = credentials_of(&*store, dev.agent.id).await;
    assert_ne!(before.token_hash, hash(9));
    let rotated = store
        .rotate_agent_token("dev", hash(9), at(5))
        .await
        .unwrap();
    assert_eq!(rotated.agent.id, dev.agent.id);
    assert_eq!(rotated.agent.token_issued_at, at(5));
    let creds = credentials_of(&*store, dev.agent.id).await;
    assert_eq!(creds.token_hash, hash(9));
    assert!(matches!(
        store.rotate_agent_token("nope", hash(9), at(5)).await,
        Err(StoreError::WorkspaceNotFound(_))
    ));
}

pub async fn deleting_revokes_the_agent_and_keeps_records(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    store
        .ingest(request(&dev, vec![batch(Some(SESSION), records(0..3))]))
        .await
        .unwrap();
    assert!(
        store
            .agent_credentials(dev.agent.id)
            .await
            .unwrap()
            .is_some()
    );
    let deleted = store.delete_workspace("dev", at(20)).await.unwrap();
    assert_eq!(deleted.id, dev.id);
    assert_eq!(store.agent_credentials(dev.agent.id).await.unwrap(), None);
    assert_eq!(store.workspace("dev").await.unwrap(), None);
    assert!(store.list_workspaces().await.unwrap().is_empty());
    let kept = all_records(&*store, &dev).await;
    assert_eq!(kept.len(), 3);
    assert!(kept.iter().all(|r| r.workspace_name == "dev"));
    assert!(matches!(
        store.delete_workspace("dev", at(21)).await,
        Err(StoreError::WorkspaceNotFound(_))
    ));
}

pub async fn the_first_admin_token_hash_wins_unless_replaced(factory: &impl StoreFactory) {
    let store = factory.open().await;
    assert_eq!(store.admin_token_hash().await.unwrap(), None);
    assert_eq!(store.init_admin_token_hash(hash(1)).await.unwrap(), hash(1));
    assert_eq!(store.init_admin_token_hash(hash(2)).await.unwrap(), hash(1));
    store.set_admin_token_hash(hash(3)).await.unwrap();
    assert_eq!(store.admin_token_hash().await.unwrap(), Some(hash(3)));
    drop(store);
    let reopened = factory.open().await;
    assert_eq!(reopened.admin_token_hash().await.unwrap(), Some(hash(3)));
}

// ---- ingest --------------------------------------------------------------

pub async fn ingest_stores_every_field(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let b = batch(Some(SESSION), records(0..2));
    let outcome = store.ingest(request(&dev, vec![b.clone()])).await.unwrap();
    assert_eq!(outcome.batches.len(), 1);
    let result = &outcome.batches[0];
    assert_eq!(result.batch_id, b.batch_id);
    assert!(!result.already_committed);
    assert_eq!(
        (
            result.stored(),
            result.duplicates,
            result.conflicts(),
            result.rejected
        ),
        (2, 0, 0, 0)
    );
    assert_eq!(
        result
            .new_records
            .iter()
            .map(|r| r.index)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(outcome.record_ids.len(), 2);

    let stored = all_records(&*store, &dev).await;
    assert_eq!(stored.len(), 2);
    for (r, sent) in stored.iter().zip(&b.logs.as_ref().unwrap().records) {
        assert_eq!(r.workspace_id, dev.id);
        assert_eq!(r.workspace_name, "dev");
        assert_eq!(r.workspace_owner, "alice");
        assert_eq!(r.agent_id, dev.agent.id);
        assert_eq!(r.agent_name, "main");
        assert_eq!(r.batch_id, b.batch_id);
        assert_eq!(r.session_id.as_deref(), Some(SESSION));
        assert_eq!(r.sequence_number, sent.sequence_number);
        assert_eq!(r.event_time, sent.event_time);
        // The control plane's own time; the agent's is kept beside it.
        assert_eq!(r.received_at, at(10));
        assert_eq!(r.agent_received_at, b.received_at);
        assert!(!r.agent_time_suspect);
        assert_eq!(r.committed_at, at(10));
        assert_eq!(r.url_original_bytes, None);
        assert_eq!(r.policy_digest, None);
        assert_eq!(r.decision, sent.decision);
        assert_eq!(r.method, sent.method);
        assert_eq!(r.url, sent.url);
        assert_eq!(r.matched_rule, sent.matched_rule);
        assert_eq!(r.process, "claude");
        assert_eq!(r.peer, b.peer);
        assert!(!r.conflict);
    }
    let mut ids: Vec<_> = stored.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    let mut returned = outcome.record_ids.clone();
    returned.sort_unstable();
    assert_eq!(ids, returned);
    // The new records' lines are due.
    let unprinted = store.unprinted_records(None, 100).await.unwrap();
    assert_eq!(unprinted, stored);
}

pub async fn a_resent_batch_changes_nothing(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let mut b = batch(Some(SESSION), records(0..5));
    b.client_status.push(ClientStatus {
        session_id: Some(SESSION.into()),
        dropped_channel_full: 2,
        dropped_batch_full: 0,
        final_sequence_number: None,
        ..Default::default()
    });
    store.ingest(request(&dev, vec![b.clone()])).await.unwrap();
    let again = store.ingest(request(&dev, vec![b.clone()])).await.unwrap();
    let result = &again.batches[0];
    assert!(result.already_committed);
    assert_eq!((result.stored(), result.duplicates), (0, 5));
    assert!(again.record_ids.is_empty());
    assert_eq!(all_records(&*store, &dev).await.len(), 5);
    let summary = store
        .session_summary(dev.id, SESSION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.reported_losses(), 2, "the status is counted once");
    assert_eq!(store.unprinted_records(None, 100).await.unwrap().len(), 5);
}

pub async fn the_same_records_in_two_batches_are_stored_once(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    store
        .ingest(request(&dev, vec![batch(Some(SESSION), records(0..4))]))
        .await
        .unwrap();
    // The client re-sent 2..4 after a write error, followed by new ones.
    let outcome = store
        .ingest(request(&dev, vec![batch(Some(SESSION), records(2..6))]))
        .await
        .unwrap();
    let result = &outcome.batches[0];
    assert!(!result.already_committed);
    assert_eq!(
        (result.stored(), result.duplicates, result.conflicts()),
        (2, 2, 0)
    );
    assert_eq!(
        result
            .new_records
            .iter()
            .map(|r| r.index)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(outcome.record_ids.len(), 2);
    let seqs: Vec<i32> = all_records(&*store, &dev)
        .await
        .iter()
        .map(|r| r.sequence_number)
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5]);
    // The same session key of another agent is another record.
    let ops = create(&*store, "ops").await;
    let other = store
        .ingest(request(&ops, vec![batch(Some(SESSION), records(0..4))]))
        .await
        .unwrap();
    assert_eq!(other.batches[0].stored(), 4);
}

pub async fn a_conflicting_record_is_stored_flagged(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    store
        .ingest(request(&dev, vec![batch(Some(SESSION), records(0..3))]))
        .await
        .unwrap();
    let forged = vec![record(1, "https://evil.example/forged")];
    let outcome = store
        .ingest(request(&dev, vec![batch(Some(SESSION), forged.clone())]))
        .await
        .unwrap();
    let result = &outcome.batches[0];
    assert_eq!(
        (result.stored(), result.duplicates, result.conflicts()),
        (0, 0, 1)
    );
    assert!(result.new_records[0].conflict);
    assert_eq!(outcome.record_ids.len(), 1);

    // Any field of the content makes a conflict: here only the process name.
    let mut other_process = batch(Some(SESSION), vec![record(2, "https://example.com/2")]);
    other_process.logs.as_mut().unwrap().confined_process_name = "bash".into();
    let outcome = store
        .ingest(request(&dev, vec![other_process]))
        .await
        .unwrap();
    assert_eq!(outcome.batches[0].conflicts(), 1);

    // The conflicting record re-sent is a duplicate of itself.
    let outcome = store
        .ingest(request(&dev, vec![batch(Some(SESSION), forged)]))
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.batches[0].duplicates,
            outcome.batches[0].conflicts()
        ),
        (1, 0)
    );

    let stored = all_records(&*store, &dev).await;
    assert_eq!(stored.len(), 5);
    let flagged: Vec<_> = stored.iter().filter(|r| r.conflict).collect();
    assert_eq!(flagged.len(), 2);
    assert_eq!(flagged[0].url, "https://evil.example/forged");
    assert_eq!(flagged[1].process, "bash");
    let summary = store
        .session_summary(dev.id, SESSION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            summary.records,
            summary.conflicts,
            summary.distinct_sequence_numbers
        ),
        (5, 2, 3)
    );
}

pub async fn repeats_within_one_batch_are_duplicates_or_conflicts(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let same = record(0, "https://example.com/0");
    let differs = record(0, "https://example.com/other");
    let outcome = store
        .ingest(request(
            &dev,
            vec![batch(
                Some(SESSION),
                vec![same.clone(), same, differs.clone(), differs],
            )],
        ))
        .await
        .unwrap();
    let result = &outcome.batches[0];
    assert_eq!(
        (result.stored(), result.duplicates, result.conflicts()),
        (1, 2, 1)
    );
    assert_eq!(
        result
            .new_records
            .iter()
            .map(|r| (r.index, r.conflict))
            .collect::<Vec<_>>(),
        vec![(0, false), (2, true)]
    );
    assert_eq!(all_records(&*store, &dev).await.len(), 2);
}

pub async fn records_without_session_rely_on_the_batch_id(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let b = batch(None, records(0..3));
    let first = store.ingest(request(&dev, vec![b.clone()])).await.unwrap();
    assert_eq!(first.batches[0].stored(), 3);
    let resent = store.ingest(request(&dev, vec![b])).await.unwrap();
    assert!(resent.batches[0].already_committed);
    // The same content in a new batch is new: nothing else identifies it.
    let again = store
        .ingest(request(&dev, vec![batch(None, records(0..3))]))
        .await
        .unwrap();
    assert_eq!(again.batches[0].stored(), 3);
    let stored = all_records(&*store, &dev).await;
    assert_eq!(stored.len(), 6);
    assert!(stored.iter().all(|r| r.session_id.is_none()));
}

pub async fn rejected_records_are_counted_not_stored(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let mut b = batch(Some(SESSION), records(0..2));
    b.logs
        .as_mut()
        .unwrap()
        .rejected
        .push(RecordRejection::NoRequest { sequence_number: 2 });
    let outcome = store.ingest(request(&dev, vec![b.clone()])).await.unwrap();
    assert_eq!(
        (outcome.batches[0].stored(), outcome.batches[0].rejected),
        (2, 1)
    );
    assert_eq!(all_records(&*store, &dev).await.len(), 2);
    // Once per batch.
    store.ingest(request(&dev, vec![b])).await.unwrap();
    let losses = store.workspace_losses(dev.id).await.unwrap();
    assert_eq!(losses.len(), 1);
    assert_eq!(
        (
            losses[0].source,
            losses[0].reason.as_str(),
            losses[0].records
        ),
        (LossSource::Server, "no_request", 1)
    );
    let summary = store
        .session_summary(dev.id, SESSION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        summary.missing(),
        0,
        "0..=1 stored, 2 was never before the last"
    );
    assert_eq!(summary.reported_losses(), 1);
}

pub async fn status_and_drops_are_applied_once_per_batch(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let mut b = batch(None, Vec::new());
    b.logs = None;
    b.client_status = vec![
        ClientStatus {
            session_id: Some(SESSION.into()),
            dropped_channel_full: 3,
            dropped_batch_full: 1,
            final_sequence_number: None,
            ..Default::default()
        },
        ClientStatus {
            session_id: None,
            dropped_channel_full: 5,
            dropped_batch_full: -7, // a client bug: never subtracted
            final_sequence_number: Some(3),
            ..Default::default()
        },
    ];
    b.agent_drops = vec![
        AgentDrop {
            reason: "spool_full".into(),
            records: 10,
            frames: 1,
            ..Default::default()
        },
        AgentDrop {
            reason: "unknown_tag".into(),
            records: 0,
            frames: 2,
            ..Default::default()
        },
    ];
    let outcome = store.ingest(request(&dev, vec![b.clone()])).await.unwrap();
    assert_eq!(outcome.batches[0].stored(), 0);
    store.ingest(request(&dev, vec![b])).await.unwrap();
    // A second batch adds up.
    let mut more = batch(None, Vec::new());
    more.logs = None;
    more.agent_drops = vec![AgentDrop {
        reason: "spool_full".into(),
        records: 4,
        frames: 1,
        ..Default::default()
    }];
    store.ingest(request(&dev, vec![more])).await.unwrap();

    let losses: Vec<_> = store
        .workspace_losses(dev.id)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.source, l.reason, l.records, l.frames))
        .collect();
    assert_eq!(
        losses,
        vec![
            (LossSource::Client, "batch_full".to_string(), 1, 0),
            (LossSource::Client, "channel_full".to_string(), 8, 0),
            (LossSource::Agent, "spool_full".to_string(), 14, 2),
            (LossSource::Agent, "unknown_tag".to_string(), 0, 2),
        ]
    );
    let summary = store
        .session_summary(dev.id, SESSION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.reported_losses(), 4);
    assert_eq!(summary.records, 0);
}

/// The agent's drop ledger (`drop_oldest`): a drop that names a spooled
/// batch counts only if that batch was never committed, takes its id so that
/// a copy still on its way is not stored, and says which sequence numbers of
/// which session were lost; stored + reported = sent for the session.
pub async fn a_dropped_batch_is_stored_or_reported_never_both(factory: &impl StoreFactory) {
    use warden_proto::domain::SequenceRange as Range;
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let drop_of = |dropped: &IngestBatch, first: i32, last: i32| {
        let mut report = batch(None, Vec::new());
        report.logs = None;
        report.agent_drops = vec![AgentDrop {
            reason: "spool_full".into(),
            records: u64::try_from(last - first + 1).unwrap(),
            frames: 1,
            session_id: Some(SESSION.into()),
            sequence_ranges: vec![Range { first, last }],
            dropped_batch_id: Some(dropped.batch_id),
        }];
        report
    };
    // Committed, then reported dropped (the forwarder held it when the
    // spool dropped it): the drop does not count.
    let stored = batch(Some(SESSION), records(0..5));
    store
        .ingest(request(&dev, vec![stored.clone()]))
        .await
        .unwrap();
    store
        .ingest(request(&dev, vec![drop_of(&stored, 0, 4)]))
        .await
        .unwrap();
    // Reported dropped first: counted once however often it is reported,
    // and the batch itself, arriving late, is acknowledged but not stored.
    let lost = batch(Some(SESSION), records(5..10));
    store
        .ingest(request(&dev, vec![drop_of(&lost, 5, 9)]))
        .await
        .unwrap();
    store
        .ingest(request(&dev, vec![drop_of(&lost, 5, 9)]))
        .await
        .unwrap();
    let late = store.ingest(request(&dev, vec![lost])).await.unwrap();
    assert!(late.batches[0].already_committed);
    assert_eq!(late.batches[0].stored(), 0);
    // Both in one call, the drop first: the same.
    let gone = batch(Some(SESSION), records(10..12));
    let both = store
        .ingest(request(&dev, vec![drop_of(&gone, 10, 11), gone]))
        .await
        .unwrap();
    assert!(both.batches[1].already_committed);
    // A drop of frames the agent could not spool names no batch; its ranges
    // merge with those they touch.
    let mut refused = batch(None, Vec::new());
    refused.logs = None;
    refused.agent_drops = vec![AgentDrop {
        reason: "spool_error".into(),
        records: 3,
        frames: 1,
        session_id: Some(SESSION.into()),
        sequence_ranges: vec![
            Range {
                first: 12,
                last: 12,
            },
            Range {
                first: 14,
                last: 15,
            },
        ],
        dropped_batch_id: None,
    }];
    store.ingest(request(&dev, vec![refused])).await.unwrap();
    let mut tail = batch(Some(SESSION), records(13..14));
    tail.logs
        .as_mut()
        .unwrap()
        .records
        .push(record(16, "https://example.com/16"));
    store.ingest(request(&dev, vec![tail])).await.unwrap();

    let s = store
        .session_summary(dev.id, SESSION)
        .await
        .unwrap()
        .unwrap();
    // Sent 0..=16: 7 stored (0..5, 13, 16), 10 reported (5..12, 12, 14, 15).
    assert_eq!(s.records, 7);
    assert_eq!(s.reported_losses(), 10);
    assert_eq!(s.missing(), 10);
    assert_eq!(s.unexplained(), 0);
    let r = |first, last| warden_store::SequenceRange { first, last };
    assert_eq!(s.agent_dropped, [r(5, 12), r(14, 15)]);
    let listed = store.sessions(dev.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].summary.agent_dropped, s.agent_dropped);
    assert_eq!(listed[0].summary.reported_losses(), 10);
}

/// One call carrying the same drop twice (a range starting at the same
/// number, reported again longer) and two drops of one batch: the batch is
/// counted once, the ranges keep the longer, and a batch of that id later
/// is acknowledged, not stored.
pub async fn drops_in_one_call_name_a_batch_once_and_merge_their_ranges(
    factory: &impl StoreFactory,
) {
    use warden_proto::domain::SequenceRange as Range;
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let lost = batch(Some(SESSION), records(0..4));
    let report = |last: i32| {
        let mut report = batch(None, Vec::new());
        report.logs = None;
        report.agent_drops = vec![
            AgentDrop {
                reason: "spool_full".into(),
                records: 4,
                frames: 1,
                session_id: Some(SESSION.into()),
                sequence_ranges: vec![Range { first: 0, last: 3 }],
                dropped_batch_id: Some(lost.batch_id),
            },
            AgentDrop {
                reason: "spool_error".into(),
                records: u64::try_from(last - 9).unwrap(),
                frames: 1,
                session_id: Some(SESSION.into()),
                sequence_ranges: vec![Range { first: 10, last }],
                dropped_batch_id: None,
            },
        ];
        report
    };
    store
        .ingest(request(&dev, vec![report(11), report(12)]))
        .await
        .unwrap();
    let late = store.ingest(request(&dev, vec![lost])).await.unwrap();
    assert!(late.batches[0].already_committed);
    assert_eq!(late.batches[0].stored(), 0);

    let s = store
        .session_summary(dev.id, SESSION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.records, 0);
    // 4 of the batch (once) + 2 + 3 of the frames.
    assert_eq!(s.reported_losses(), 9);
    let r = |first, last| warden_store::SequenceRange { first, last };
    assert_eq!(s.agent_dropped, [r(0, 3), r(10, 12)]);
}

pub async fn sessions_show_gaps_and_tail_loss(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let mut sent = records(0..10);
    sent.retain(|r| ![3, 4, 7].contains(&r.sequence_number));
    let mut b = batch(Some(SESSION), sent);
    b.client_status.push(ClientStatus {
        session_id: Some(SESSION.into()),
        dropped_channel_full: 2,
        dropped_batch_full: 0,
        final_sequence_number: Some(11),
        ..Default::default()
    });
    store.ingest(request(&dev, vec![b])).await.unwrap();
    let s = store
        .session_summary(dev.id, SESSION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.session_id, SESSION);
    assert_eq!(
        (s.first_sequence_number, s.last_sequence_number),
        (Some(0), Some(9))
    );
    assert_eq!(s.final_sequence_number, Some(11));
    assert_eq!(s.distinct_sequence_numbers, 7);
    // 3, 4, 7 missing inside; 10, 11 missing at the tail; 2 reported.
    assert_eq!(s.missing(), 5);
    assert_eq!(s.unexplained(), 3);
    assert_eq!(store.session_summary(dev.id, "other").await.unwrap(), None);
}

pub async fn ingest_for_an_unknown_agent_fails(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let result = store
        .ingest(Arc::new(IngestRequest {
            agent_id: Uuid::new_v4(),
            at: at(1),
            batches: vec![batch(None, records(0..1))],
        }))
        .await;
    assert!(matches!(result, Err(StoreError::UnknownAgent(_))));
}

pub async fn unprinted_records_survive_a_restart(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let outcome = store
        .ingest(request(&dev, vec![batch(Some(SESSION), records(0..250))]))
        .await
        .unwrap();
    // Crash after the commit, before any line went out.
    drop(store);
    let store = factory.open().await;
    let mut pending = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.unprinted_records(cursor, 100).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(last.id);
        pending.extend(page);
    }
    let mut expected = outcome.record_ids.clone();
    expected.sort_unstable();
    assert_eq!(pending.iter().map(|r| r.id).collect::<Vec<_>>(), expected);
    assert_eq!(pending[0].workspace_name, "dev");

    // Printing half, then restarting, leaves the other half.
    store.mark_printed(expected[..125].to_vec()).await.unwrap();
    store.close().await.unwrap();
    let store = factory.open().await;
    let left = store.unprinted_records(None, 1000).await.unwrap();
    assert_eq!(
        left.iter().map(|r| r.id).collect::<Vec<_>>(),
        expected[125..].to_vec()
    );
    store.mark_printed(expected[125..].to_vec()).await.unwrap();
    assert!(
        store
            .unprinted_records(None, 1000)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn record_ids_grow_in_commit_order(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = Arc::clone(&store);
        let req = request(&dev, vec![batch(Some(&format!("s{i}")), records(0..20))]);
        tasks.push(tokio::spawn(
            async move { store.ingest(req).await.unwrap() },
        ));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    // Each commit's ids form a block; blocks do not interleave.
    let mut blocks: Vec<(i64, i64)> = outcomes
        .iter()
        .map(|o| {
            let min = *o.record_ids.iter().min().unwrap();
            let max = *o.record_ids.iter().max().unwrap();
            assert_eq!(o.record_ids.len(), 20);
            (min, max)
        })
        .collect();
    blocks.sort_unstable();
    for pair in blocks.windows(2) {
        assert!(pair[0].1 < pair[1].0, "{blocks:?}");
    }
    let all: HashSet<i64> = outcomes.iter().flat_map(|o| o.record_ids.clone()).collect();
    assert_eq!(all.len(), 16 * 20);
}

pub async fn concurrent_copies_of_a_batch_are_stored_once(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let req = request(&dev, vec![batch(None, records(0..50))]);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        let req = Arc::clone(&req);
        tasks.push(tokio::spawn(
            async move { store.ingest(req).await.unwrap() },
        ));
    }
    let mut fresh = 0;
    for task in tasks {
        let outcome = task.await.unwrap();
        if !outcome.batches[0].already_committed {
            fresh += 1;
            assert_eq!(outcome.record_ids.len(), 50);
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(all_records(&*store, &dev).await.len(), 50);
}

pub async fn event_times_round_trip(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let times = [
        EventTime::Known(Timestamp::new(1_765_227_526, 500_000_000).unwrap()),
        EventTime::Known(Timestamp::new(-62_135_596_800, 0).unwrap()),
        EventTime::Missing,
        EventTime::OutOfRange {
            seconds: i64::MAX,
            nanos: -5,
        },
    ];
    let sent: Vec<_> = times
        .iter()
        .enumerate()
        .map(|(i, t)| AuditRecord {
            event_time: *t,
            ..record(i as i32, "https://example.com/")
        })
        .collect();
    store
        .ingest(request(&dev, vec![batch(Some(SESSION), sent)]))
        .await
        .unwrap();
    let stored: Vec<EventTime> = all_records(&*store, &dev)
        .await
        .iter()
        .map(|r| r.event_time)
        .collect();
    assert_eq!(stored, times);
}

pub async fn record_queries_filter_and_page(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let ops = create(&*store, "ops").await;
    store
        .ingest(request(
            &dev,
            vec![
                batch(Some("a"), records(0..3)),
                batch(Some("b"), records(0..2)),
            ],
        ))
        .await
        .unwrap();
    store
        .ingest(request(&ops, vec![batch(Some("a"), records(0..4))]))
        .await
        .unwrap();
    assert_eq!(
        store.records(RecordQuery::default()).await.unwrap().len(),
        9
    );
    assert_eq!(all_records(&*store, &ops).await.len(), 4);
    let dev_a = store
        .records(RecordQuery {
            workspace_id: Some(dev.id),
            session_id: Some("a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dev_a.len(), 3);
    let first = store
        .records(RecordQuery {
            limit: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    let rest = store
        .records(RecordQuery {
            after_id: Some(first.last().unwrap().id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.len() + rest.len(), 9);
    assert!(first.last().unwrap().id < rest[0].id);
}

pub async fn contact_and_last_batch_are_recorded(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    assert_eq!(dev.agent.last_contact_at, None);
    store.record_contact(dev.agent.id, at(3)).await.unwrap();
    let seen = store.workspace("dev").await.unwrap().unwrap();
    assert_eq!(seen.agent.last_contact_at, Some(at(3)));
    assert_eq!(seen.agent.last_batch_at, None);
    let b = batch(None, records(0..1));
    store.ingest(request(&dev, vec![b.clone()])).await.unwrap();
    let seen = store.workspace("dev").await.unwrap().unwrap();
    assert_eq!(seen.agent.last_contact_at, Some(at(10)));
    assert_eq!(seen.agent.last_batch_at, Some(at(10)));
    assert_eq!(seen.agent.last_batch_id, Some(b.batch_id));
    assert!(matches!(
        store.record_contact(Uuid::new_v4(), at(3)).await,
        Err(StoreError::UnknownAgent(_))
    ));
}

pub async fn a_closed_store_refuses_work(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    store.ping().await.unwrap();
    store.close().await.unwrap();
    assert!(matches!(store.ping().await, Err(StoreError::Closed)));
    assert!(matches!(
        store
            .ingest(request(&dev, vec![batch(None, records(0..1))]))
            .await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.rotate_agent_token("dev", hash(3), at(1)).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.purge_records_before(at(100), 10).await,
        Err(StoreError::Closed)
    ));
}

// ---- bounds, policies, clocks ----------------------------------------------

pub async fn long_urls_are_stored_cut_with_their_length(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    // 70,000 bytes, with a two-byte character across the 64 KiB bound.
    let mut long = "https://example.com/".to_string();
    while long.len() < warden_store::DEFAULT_MAX_URL_BYTES - 1 {
        long.push('a');
    }
    long.push('é');
    while long.len() < 70_000 {
        long.push('b');
    }
    let outcome = store
        .ingest(request(
            &dev,
            vec![batch(
                Some(SESSION),
                vec![record(0, &long), record(1, "https://x/")],
            )],
        ))
        .await
        .unwrap();
    let news = &outcome.batches[0].new_records;
    assert_eq!(news[0].url_original_bytes, Some(70_000));
    assert_eq!(news[1].url_original_bytes, None);
    let stored = all_records(&*store, &dev).await;
    let (cut, whole) = (&stored[0], &stored[1]);
    assert_eq!(cut.url_original_bytes, Some(70_000));
    assert!(cut.url.len() <= warden_store::DEFAULT_MAX_URL_BYTES);
    assert!(long.starts_with(&cut.url));
    assert!(
        !cut.url.ends_with('é') && cut.url.ends_with('a'),
        "cut at a char boundary"
    );
    assert_eq!(whole.url_original_bytes, None);
    // Sent again, the long record is a duplicate, not a conflict.
    let again = store
        .ingest(request(
            &dev,
            vec![batch(Some(SESSION), vec![record(0, &long)])],
        ))
        .await
        .unwrap();
    assert_eq!(
        (again.batches[0].duplicates, again.batches[0].conflicts()),
        (1, 0)
    );
}

fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub async fn policies_are_kept_by_digest_and_checked(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    let text = "allow domain=github.com\n";
    let digest = sha256_hex(text);
    let mut b = batch(Some(SESSION), records(0..2));
    b.logs.as_mut().unwrap().policy_digest = Some(digest.clone());
    b.client_status = vec![
        ClientStatus {
            session_id: Some(SESSION.into()),
            policy: Some(warden_proto::domain::Policy {
                digest: digest.clone(),
                text: text.into(),
            }),
            ..Default::default()
        },
        // A text that is not what its digest says: refused.
        ClientStatus {
            session_id: Some("other".into()),
            policy: Some(warden_proto::domain::Policy {
                digest: sha256_hex("allow *"),
                text: "allow everything, really".into(),
            }),
            ..Default::default()
        },
    ];
    let outcome = store.ingest(request(&dev, vec![b])).await.unwrap();
    assert_eq!(outcome.batches[0].policies_refused, 1);
    let policy = store.policy(&digest).await.unwrap().unwrap();
    assert_eq!(
        (policy.digest.as_str(), policy.text.as_str()),
        (digest.as_str(), text)
    );
    assert_eq!(store.policy(&sha256_hex("allow *")).await.unwrap(), None);
    assert_eq!(store.policy("nope").await.unwrap(), None);
    // The first text stored for a digest wins (a second one could only be
    // the same text: anything else has another digest).
    let mut again = batch(Some(SESSION), Vec::new());
    again.logs = None;
    again.client_status.push(ClientStatus {
        session_id: Some(SESSION.into()),
        policy: Some(warden_proto::domain::Policy {
            digest: digest.clone(),
            text: text.into(),
        }),
        ..Default::default()
    });
    store.ingest(request(&dev, vec![again])).await.unwrap();
    assert_eq!(
        store.policy(&digest).await.unwrap().unwrap().first_seen,
        policy.first_seen
    );
    // Records and the session carry the digest.
    let stored = all_records(&*store, &dev).await;
    assert!(
        stored
            .iter()
            .all(|r| r.policy_digest.as_deref() == Some(digest.as_str()))
    );
    let summary = store
        .session_summary(dev.id, SESSION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.policy_digest.as_deref(), Some(digest.as_str()));
}

pub async fn an_agent_clock_is_evidence_not_trusted(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    // The control plane takes the call at(10); one agent claims 2001, one
    // a year ahead, one a few seconds off (normal).
    let claims = [
        Timestamp::new(978_307_200, 0).unwrap(),
        at(10) + jiff::SignedDuration::from_hours(24 * 365),
        at(7),
    ];
    let batches = claims
        .iter()
        .enumerate()
        .map(|(i, &t)| IngestBatch {
            received_at: t,
            ..batch(Some(&format!("s{i}")), records(0..1))
        })
        .collect();
    store.ingest(request(&dev, batches)).await.unwrap();
    let stored = all_records(&*store, &dev).await;
    assert_eq!(
        stored
            .iter()
            .map(|r| r.agent_time_suspect)
            .collect::<Vec<_>>(),
        [true, true, false]
    );
    for (r, claim) in stored.iter().zip(claims) {
        assert_eq!(r.agent_received_at, claim);
        assert_eq!(r.received_at, at(10));
    }
    // Retention goes by the control plane's time: nothing is old yet.
    assert!(
        store
            .purge_records_before(at(5), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(all_records(&*store, &dev).await.len(), 3);
}

pub async fn minute_activity_counts_records_per_minute(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let dev = create(&*store, "dev").await;
    // 1_764_999_960 starts a minute; the records start 20 s into it.
    let base = Timestamp::new(1_764_999_980, 0).unwrap();
    let timed = |seq: i32, secs: i64| AuditRecord {
        event_time: EventTime::Known(base + jiff::SignedDuration::from_secs(secs)),
        ..record(seq, "https://example.com/")
    };
    // Odd numbers are denials: minute 0 has seqs 0, 1; minute 1 has 2, 3, 4;
    // minute 3 has 5.
    let sent = vec![
        timed(0, 0),
        timed(1, 30),
        timed(2, 45),
        timed(3, 60),
        timed(4, 90),
        timed(5, 170),
    ];
    store
        .ingest(request(&dev, vec![batch(Some(SESSION), sent)]))
        .await
        .unwrap();
    let minute = |m: i64| Timestamp::new(1_764_999_960 + 60 * m, 0).unwrap();
    let chart = store
        .minute_activity(Some(dev.id), minute(0), minute(4))
        .await
        .unwrap();
    let got: Vec<_> = chart
        .iter()
        .map(|m| (m.minute, m.allowed, m.denied))
        .collect();
    assert_eq!(
        got,
        [(minute(0), 1, 1), (minute(1), 2, 1), (minute(3), 0, 1)]
    );
    let later = store
        .minute_activity(Some(dev.id), minute(2), minute(4))
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
}
