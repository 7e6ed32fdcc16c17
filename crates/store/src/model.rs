//! The store's vocabulary: what callers hand to a [`Store`](crate::Store) and
//! get back, with no trace of SQL.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use uuid::Uuid;
use warden_proto::domain::{Decision, EventTime, IngestBatch, Manifest, Peer};

/// A stored record's id. Ids grow in commit order, so "every record with an
/// id above the last one seen" is a valid cursor for following new records.
pub type RecordId = i64;

/// SHA-256 of a secret token; the store never sees the token itself.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Even a hash is not worth leaking into logs.
        f.write_str("TokenHash(..)")
    }
}

/// A workspace to register, with its one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewWorkspace {
    /// Chosen by the caller (a UUIDv7 sorts by creation).
    pub id: Uuid,
    /// The workspace's name, unique among live workspaces.
    pub name: String,
    /// Who the workspace belongs to.
    pub owner: String,
    /// Empty for none.
    pub startup_script: String,
    /// Chosen by the caller, because the agent's token names it.
    pub agent_id: Uuid,
    /// The agent's name.
    pub agent_name: String,
    /// The hash of the agent's token.
    pub token_hash: TokenHash,
}

/// A live (not deleted) workspace and its agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    /// The workspace's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Who it belongs to.
    pub owner: String,
    /// Empty for none.
    pub startup_script: String,
    /// When it was registered.
    pub created_at: Timestamp,
    /// Its agent.
    pub agent: Agent,
}

impl Workspace {
    /// What the agent of this workspace is told about it.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            workspace_id: self.id,
            workspace_name: self.name.clone(),
            owner_name: self.owner.clone(),
            agent_id: self.agent.id,
            agent_name: self.agent.name.clone(),
            startup_script: self.startup_script.clone(),
        }
    }
}

/// A workspace's agent and when it was last heard from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// The agent's id (its token names it).
    pub id: Uuid,
    /// The agent's name.
    pub name: String,
    /// When the current token was issued (creation or last rotation).
    pub token_issued_at: Timestamp,
    /// The last authenticated call of the agent.
    pub last_contact_at: Option<Timestamp>,
    /// When the agent last delivered batches, and the last batch's id.
    pub last_batch_at: Option<Timestamp>,
    /// The id of the last batch it delivered.
    pub last_batch_id: Option<Uuid>,
}

/// What authenticating an agent needs: who it is and its token's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentCredentials {
    /// Who the agent is.
    pub manifest: Manifest,
    /// The hash of its current token.
    pub token_hash: TokenHash,
}

/// Batches one agent delivered in one call, to commit together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestRequest {
    /// The authenticated agent; every record is stored under it and its
    /// workspace, whatever the batches say.
    pub agent_id: Uuid,
    /// When the control plane received the call (last contact).
    pub at: Timestamp,
    /// The batches, in the order the agent sent them.
    pub batches: Vec<IngestBatch>,
}

impl IngestRequest {
    /// Valid records in all batches.
    pub fn record_count(&self) -> usize {
        self.batches
            .iter()
            .map(|b| b.logs.as_ref().map_or(0, |l| l.records.len()))
            .sum()
    }
}

/// What committing an [`IngestRequest`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// One per batch, in request order.
    pub batches: Vec<BatchOutcome>,
    /// Ids of every record this commit stored (their lines are due).
    pub record_ids: Vec<RecordId>,
}

/// What happened to one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The batch's id, as the agent sent it.
    pub batch_id: Uuid,
    /// The batch id was already stored: nothing was changed.
    pub already_committed: bool,
    /// Records newly stored, as indexes into the batch's `logs.records`, in
    /// batch order; conflicts are stored too and flagged.
    pub new_records: Vec<NewRecord>,
    /// Records that were stored before (same batch or same session key).
    pub duplicates: u32,
    /// Records refused by validation (counted as losses, not stored).
    pub rejected: u32,
    /// Policy texts refused because their SHA-256 is not the digest they
    /// came with.
    pub policies_refused: u32,
}

impl BatchOutcome {
    /// Newly stored records without the conflict flag.
    pub fn stored(&self) -> u32 {
        count(self.new_records.iter().filter(|r| !r.conflict))
    }

    /// Newly stored records with the conflict flag.
    pub fn conflicts(&self) -> u32 {
        count(self.new_records.iter().filter(|r| r.conflict))
    }
}

fn count<T>(iter: impl Iterator<Item = T>) -> u32 {
    u32::try_from(iter.count()).unwrap_or(u32::MAX)
}

/// A record newly stored by an ingest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewRecord {
    /// Index into the batch's `logs.records`.
    pub index: usize,
    /// Its session key matched a stored record with other content.
    pub conflict: bool,
    /// The URL's length as sent when it was stored truncated (see
    /// [`bound_url`]).
    pub url_original_bytes: Option<u64>,
}

/// A stored record with everything known about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's id (commit order).
    pub id: RecordId,
    /// The workspace of the agent that delivered it.
    pub workspace_id: Uuid,
    /// That workspace's name.
    pub workspace_name: String,
    /// That workspace's owner.
    pub workspace_owner: String,
    /// The agent that delivered it.
    pub agent_id: Uuid,
    /// That agent's name.
    pub agent_name: String,
    /// The batch that carried it.
    pub batch_id: Uuid,
    /// The client's session id, when it sent one.
    pub session_id: Option<String>,
    /// Its number in the session.
    pub sequence_number: i32,
    /// When boundary decided, as the record says.
    pub event_time: EventTime,
    /// When the control plane took the call that delivered the record (its
    /// own clock): what retention and "received" times go by.
    pub received_at: Timestamp,
    /// When the agent says it read the record from its socket (the agent's
    /// clock, as sent; see [`agent_time_suspect`](Self::agent_time_suspect)).
    pub agent_received_at: Timestamp,
    /// The agent's time is implausible: later than the control plane's
    /// receive time by more than [`AGENT_CLOCK_AHEAD`], or earlier by more
    /// than [`AGENT_CLOCK_BEHIND`]. It is kept as evidence, never trusted.
    pub agent_time_suspect: bool,
    /// When the control plane committed it.
    pub committed_at: Timestamp,
    /// Allowed or denied.
    pub decision: Decision,
    /// The HTTP method, as sent.
    pub method: String,
    /// As stored: at most the store's URL bound (see [`StoreOptions`]).
    pub url: String,
    /// The URL's length in bytes as sent, when it was longer than the bound
    /// and `url` holds its first bytes (cut at a character boundary).
    pub url_original_bytes: Option<u64>,
    /// The rule that allowed it (empty for none).
    pub matched_rule: String,
    /// The `confined_process_name` the client sent.
    pub process: String,
    /// The socket peer that wrote the record to the agent.
    pub peer: Peer,
    /// The digest of the policy the record was decided under, when the
    /// client said.
    pub policy_digest: Option<String>,
    /// Its session key was used before by a record with other content.
    pub conflict: bool,
}

/// An agent time this far ahead of the control plane's clock is flagged.
pub const AGENT_CLOCK_AHEAD: jiff::SignedDuration = jiff::SignedDuration::from_secs(5 * 60);
/// An agent time this far behind the control plane's clock is flagged: an
/// agent spools while the control plane is away, but not for months.
pub const AGENT_CLOCK_BEHIND: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 90);

/// Whether an agent's receive time is implausible next to the control
/// plane's own.
pub fn agent_time_suspect(agent: Timestamp, server: Timestamp) -> bool {
    let ahead = agent.duration_since(server);
    ahead > AGENT_CLOCK_AHEAD || -ahead > AGENT_CLOCK_BEHIND
}

/// The default bound on a stored URL: 64 KiB.
pub const DEFAULT_MAX_URL_BYTES: usize = 64 * 1024;

/// How a store treats what it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Longer URLs are stored cut to this many bytes (at a character
    /// boundary) with their original length; never refused.
    pub max_url_bytes: usize,
    /// SQLite: how often the writer enters new blocks in the per-session
    /// index (`sqlite/session_index.rs`); reads find newer blocks without
    /// it, so this only bounds how many they look at that way. Longer
    /// means fewer index pages written, and more entered in one commit.
    pub session_index_every: Duration,
}

/// Default of [`StoreOptions::session_index_every`]: at 10,000 records/s
/// with eight sessions, about 800 blocks a time, entered over a few
/// commits (at most 128 blocks each), so a session's index page is written
/// a few times a second rather than with every commit.
pub const DEFAULT_SESSION_INDEX_EVERY: Duration = Duration::from_secs(1);

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_url_bytes: DEFAULT_MAX_URL_BYTES,
            session_index_every: DEFAULT_SESSION_INDEX_EVERY,
        }
    }
}

/// `url` cut to at most `max` bytes at a character boundary, and its
/// original length when it was cut.
pub fn bound_url(url: &str, max: usize) -> (&str, Option<u64>) {
    if url.len() <= max {
        return (url, None);
    }
    let mut end = max;
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    (&url[..end], Some(url.len() as u64))
}

/// A policy text as a client reported it, by its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyText {
    /// Lower-case hex SHA-256 of `text`.
    pub digest: String,
    /// The normalised policy text.
    pub text: String,
    /// When the control plane first stored it.
    pub first_seen: Timestamp,
}

/// Records in one minute of effective time, counted by decision (the
/// activity charts: one workspace's, or every workspace's on the web page's
/// overview).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinuteActivity {
    /// The minute's start (UTC, a whole minute since the epoch).
    pub minute: Timestamp,
    /// Records allowed in the minute.
    pub allowed: u64,
    /// Records denied in the minute.
    pub denied: u64,
}

/// Which stored records to return. Every filter is optional; set ones must
/// all match.
///
/// Times are a record's *effective time*: its event time, or the time the
/// agent received it when the record carried no usable event time. They are
/// compared at nanosecond precision within years 1677..=2262 (what a signed
/// 64-bit count of nanoseconds holds); times outside that range compare as
/// its nearest edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordQuery {
    /// Only this workspace's records (any of its agents).
    pub workspace_id: Option<Uuid>,
    /// The owner of the record's workspace.
    pub owner: Option<String>,
    /// Only this session's records.
    pub session_id: Option<String>,
    /// Only allowed or only denied records.
    pub decision: Option<Decision>,
    /// Effective time at or after this.
    pub since: Option<Timestamp>,
    /// Effective time before this.
    pub until: Option<Timestamp>,
    /// URL contains this text (case-sensitive).
    pub url_contains: Option<String>,
    /// The name of the agent that delivered the record.
    pub agent_name: Option<String>,
    /// The HTTP method, exactly (case-sensitive: it is kept as sent).
    pub method: Option<String>,
    /// Only records flagged as conflicting (`true`) or only the others.
    pub conflict: Option<bool>,
    /// Only records with a greater id (a cursor for oldest-first pages and
    /// for following new records: ids grow in commit order).
    pub after_id: Option<RecordId>,
    /// Only records with a smaller id (a cursor for newest-first pages).
    pub before_id: Option<RecordId>,
    /// Oldest or newest first.
    pub order: Order,
    /// At most this many records.
    pub limit: u32,
}

impl Default for RecordQuery {
    fn default() -> Self {
        RecordQuery {
            workspace_id: None,
            owner: None,
            session_id: None,
            decision: None,
            since: None,
            until: None,
            url_contains: None,
            agent_name: None,
            method: None,
            conflict: None,
            after_id: None,
            before_id: None,
            order: Order::OldestFirst,
            limit: 1000,
        }
    }
}

/// In which order [`RecordQuery`] results come: by record id, which is
/// commit order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    /// By ascending id.
    OldestFirst,
    /// By descending id.
    NewestFirst,
}

/// What one retention pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeOutcome {
    /// Records deleted.
    pub records: u64,
    /// Of those, records whose boundary line had not been printed yet: the
    /// line is dropped with the record (retention wins; see
    /// [`Store::purge_records_before`](crate::Store::purge_records_before)).
    pub unprinted_lines: u64,
    /// Batch rows (agent idempotency keys) deleted once their last record
    /// went.
    pub batches: u64,
}

impl PurgeOutcome {
    /// Nothing was left to purge before the cutoff, or another store
    /// instance (replica) is purging right now: stop calling for now.
    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.batches == 0
    }
}

/// Who saw a loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LossSource {
    /// The sandbox client (a BoundaryStatus frame).
    Client,
    /// The workspace agent (its own drops).
    Agent,
    /// The control plane (records refused by validation).
    Server,
}

impl LossSource {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            LossSource::Client => "client",
            LossSource::Agent => "agent",
            LossSource::Server => "server",
        }
    }

    /// The source with this name.
    pub fn parse(s: &str) -> Option<LossSource> {
        match s {
            "client" => Some(LossSource::Client),
            "agent" => Some(LossSource::Agent),
            "server" => Some(LossSource::Server),
            _ => None,
        }
    }
}

/// A client dropped records because its queue was full (a BoundaryStatus
/// field, like the next).
pub const CLIENT_CHANNEL_FULL: &str = "channel_full";
/// A client dropped records because a batch was full.
pub const CLIENT_BATCH_FULL: &str = "batch_full";

/// Records (and frames) lost for one reason, summed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    /// Who saw the loss.
    pub source: LossSource,
    /// Why, as that party said.
    pub reason: String,
    /// Records lost.
    pub records: u64,
    /// Frames lost (undecodable or refused whole).
    pub frames: u64,
}

/// What is known about one client session, enough to tell loss from gaps.
///
/// Record counts and sequence numbers cover every record ever stored for the
/// session, including those retention purged since (see `purged`), so a
/// purge does not show up as a gap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSummary {
    /// The workspace.
    pub workspace_id: Uuid,
    /// The client's session id.
    pub session_id: String,
    /// Stored records, conflicts included.
    pub records: u64,
    /// Stored records flagged as conflicting (purged ones too).
    pub conflicts: u64,
    /// Distinct sequence numbers stored (conflicts excluded).
    pub distinct_sequence_numbers: u64,
    /// The lowest sequence number stored (purged ones too).
    pub first_sequence_number: Option<i32>,
    /// The highest sequence number stored (purged ones too).
    pub last_sequence_number: Option<i32>,
    /// The last sequence number the client said it assigned, if it closed the
    /// session with a final status (-1: it assigned none).
    pub final_sequence_number: Option<i64>,
    /// Losses attributed to this session, by source and reason.
    pub losses: Vec<Loss>,
    /// Sequence numbers the workspace agent reported losing in this session
    /// (its full spool dropped them, the control plane refused them, or its
    /// spool could not write them): sorted, merged ranges. Their count is in
    /// `losses` (source agent).
    pub agent_dropped: Vec<SequenceRange>,
    /// Of `records`, how many retention has deleted.
    pub purged: u64,
    /// The digest of the policy the session's latest records were decided
    /// under, when the client said.
    pub policy_digest: Option<String>,
}

impl SessionSummary {
    /// Sequence numbers from 0 up to the last one known (stored or final)
    /// that no stored record carries.
    pub fn missing(&self) -> u64 {
        let last = i64::from(self.last_sequence_number.unwrap_or(-1))
            .max(self.final_sequence_number.unwrap_or(-1));
        let first = i64::from(self.first_sequence_number.unwrap_or(0)).min(0);
        let expected = u64::try_from(last - first + 1).unwrap_or(0);
        expected.saturating_sub(self.distinct_sequence_numbers)
    }

    /// Records someone reported as lost in this session.
    pub fn reported_losses(&self) -> u64 {
        self.losses.iter().map(|l| l.records).sum()
    }

    /// Missing records nobody accounted for.
    pub fn unexplained(&self) -> u64 {
        self.missing().saturating_sub(self.reported_losses())
    }
}

/// A place in a session's sequence order: records sort by sequence number,
/// then by id (a conflicting record shares its number with the record it
/// conflicts with). A cursor for [`SessionRecordQuery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequencePosition {
    /// The sequence number.
    pub sequence_number: i32,
    /// The record id (among records with one number).
    pub id: RecordId,
}

impl SequencePosition {
    /// Where `record` sits in its session's order.
    pub fn of(record: &StoredRecord) -> SequencePosition {
        SequencePosition {
            sequence_number: record.sequence_number,
            id: record.id,
        }
    }
}

/// The records of one session of a workspace, in sequence order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecordQuery {
    /// The workspace.
    pub workspace_id: Uuid,
    /// The session.
    pub session_id: String,
    /// Only records after this position (the last one of the previous page).
    pub after: Option<SequencePosition>,
    /// At most this many records.
    pub limit: u32,
}

/// Consecutive sequence numbers, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceRange {
    /// The first number.
    pub first: i64,
    /// The last number.
    pub last: i64,
}

impl SequenceRange {
    /// How many numbers the range holds.
    pub fn count(&self) -> u64 {
        u64::try_from(self.last - self.first + 1).unwrap_or(0)
    }

    /// Sorts ranges and merges those that overlap or touch.
    pub fn merge(mut ranges: Vec<SequenceRange>) -> Vec<SequenceRange> {
        ranges.retain(|r| r.first <= r.last);
        ranges.sort_unstable();
        let mut out: Vec<SequenceRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match out.last_mut() {
                Some(last) if r.first <= last.last.saturating_add(1) => {
                    last.last = last.last.max(r.last);
                }
                _ => out.push(r),
            }
        }
        out
    }
}

impl SessionSummary {
    /// Every gap of the session as ranges: numbers from 0 up to the first one
    /// stored, the `interior` gaps between stored numbers (what
    /// [`Store::session_gaps`](crate::Store::session_gaps) returns), and
    /// numbers after the last stored one up to the final one the client
    /// reported. Their counts add up to [`missing`](Self::missing) unless
    /// retention purged records of the session: purged numbers inside the
    /// stored span show up as interior gaps.
    pub fn gaps(&self, interior: &[SequenceRange]) -> Vec<SequenceRange> {
        let mut gaps = Vec::with_capacity(interior.len() + 2);
        let last_final = self.final_sequence_number.unwrap_or(-1);
        match (self.first_sequence_number, self.last_sequence_number) {
            (Some(first), Some(last)) => {
                if first > 0 {
                    gaps.push(SequenceRange {
                        first: 0,
                        last: i64::from(first) - 1,
                    });
                }
                gaps.extend_from_slice(interior);
                if last_final > i64::from(last) {
                    gaps.push(SequenceRange {
                        first: i64::from(last) + 1,
                        last: last_final,
                    });
                }
            }
            _ if last_final >= 0 => gaps.push(SequenceRange {
                first: 0,
                last: last_final,
            }),
            _ => {}
        }
        gaps
    }
}

/// A session of a workspace as listed: its summary and when it was active.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionActivity {
    /// What is known about the session.
    pub summary: SessionSummary,
    /// Ids of the session's first and last stored records (`None` when none
    /// is stored: only losses or a final status are known, or retention
    /// purged them all).
    pub first_record_id: Option<RecordId>,
    /// See `first_record_id`.
    pub last_record_id: Option<RecordId>,
    /// Earliest and latest effective time of its stored records.
    pub first_time: Option<Timestamp>,
    /// See `first_time`.
    pub last_time: Option<Timestamp>,
}

/// What [`Store::workspace_activity`](crate::Store::workspace_activity)
/// counts: a workspace's records whose effective time is in a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityQuery {
    /// The workspace.
    pub workspace_id: Uuid,
    /// Effective time at or after this.
    pub since: Option<Timestamp>,
    /// Effective time before this.
    pub until: Option<Timestamp>,
    /// How many of the most denied hosts to return.
    pub top_hosts: u32,
}

/// A workspace's records in a time range, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceActivity {
    /// Allowed records.
    pub allowed: u64,
    /// Denied records.
    pub denied: u64,
    /// Of allowed and denied, records flagged as conflicting.
    pub conflicts: u64,
    /// Earliest and latest effective time of those records.
    pub first_time: Option<Timestamp>,
    /// See `first_time`.
    pub last_time: Option<Timestamp>,
    /// The hosts of denied URLs, most denied first (ties by host).
    pub top_denied_hosts: Vec<HostCount>,
}

/// The length of a [`MinuteActivity`] minute, in nanoseconds.
pub const MINUTE_NANOS: i64 = 60_000_000_000;

/// Denied records of one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCount {
    /// Lower-case host, without user info or port; the text before the
    /// first `/` for a URL without a scheme.
    pub host: String,
    /// Denied records of the host.
    pub records: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(
        first: Option<i32>,
        last: Option<i32>,
        distinct: u64,
        last_final: Option<i64>,
    ) -> SessionSummary {
        SessionSummary {
            workspace_id: Uuid::nil(),
            session_id: "s".into(),
            records: distinct,
            conflicts: 0,
            distinct_sequence_numbers: distinct,
            first_sequence_number: first,
            last_sequence_number: last,
            final_sequence_number: last_final,
            losses: vec![Loss {
                source: LossSource::Client,
                reason: CLIENT_CHANNEL_FULL.into(),
                records: 2,
                frames: 0,
            }],
            agent_dropped: Vec::new(),
            purged: 0,
            policy_digest: None,
        }
    }

    #[test]
    fn ranges_merge_when_they_touch_or_overlap() {
        let r = |first, last| SequenceRange { first, last };
        assert_eq!(
            SequenceRange::merge(vec![r(10, 12), r(0, 3), r(4, 5), r(11, 20), r(30, 29)]),
            [r(0, 5), r(10, 20)]
        );
    }

    #[test]
    fn gaps_count_from_zero_to_the_last_known_number() {
        // 0..=9 with 7 stored: 3 missing, 2 reported, 1 unexplained.
        let s = summary(Some(0), Some(9), 7, None);
        assert_eq!(s.missing(), 3);
        assert_eq!(s.unexplained(), 1);
        // The final number reveals tail loss.
        assert_eq!(summary(Some(0), Some(9), 10, Some(14)).missing(), 5);
        // A session whose first records were lost.
        assert_eq!(summary(Some(3), Some(4), 2, None).missing(), 3);
        // Nothing stored and nothing assigned.
        assert_eq!(summary(None, None, 0, Some(-1)).missing(), 0);
        assert_eq!(summary(None, None, 0, Some(-1)).unexplained(), 0);
    }
}
