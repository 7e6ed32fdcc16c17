//! Validated domain types, and the only place wire messages become them.
//!
//! Validation is deliberately lenient, because a record is evidence: only a
//! record that carries no request at all is rejected (as a typed, counted
//! error). A missing time becomes [`EventTime::Missing`], an impossible one
//! [`EventTime::OutOfRange`]; empty methods and URLs are kept as sent.
//! Nothing here panics and nothing produces a half-filled record.

mod drop_reason;

use jiff::Timestamp;
use uuid::Uuid;

pub use drop_reason::DropReason;

use crate::wire::{self, agentapi, boundary_log};

/// The sandbox's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The request was let through.
    Allow,
    /// The request was refused.
    Deny,
}

impl Decision {
    /// The decision a record's `allowed` flag stands for.
    pub fn from_allowed(allowed: bool) -> Decision {
        if allowed {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }

    /// Whether the request was allowed.
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }

    /// `allow` or `deny`, as printed and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// When boundary decided, as far as the record tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventTime {
    /// The time the record gave.
    Known(Timestamp),
    /// The record had no time.
    Missing,
    /// The record's time was impossible (nanos outside 0..1e9, or outside
    /// years 1..9999); it is treated as missing and flagged.
    OutOfRange {
        /// The seconds sent.
        seconds: i64,
        /// The nanoseconds sent.
        nanos: i32,
    },
}

impl EventTime {
    /// Reads a wire timestamp.
    pub fn from_wire(time: Option<&wire::Timestamp>) -> EventTime {
        match time {
            None => EventTime::Missing,
            Some(t) => match timestamp_from_wire(t) {
                Some(ts) => EventTime::Known(ts),
                None => EventTime::OutOfRange {
                    seconds: t.seconds,
                    nanos: t.nanos,
                },
            },
        }
    }

    /// The time, when it is known.
    pub fn known(self) -> Option<Timestamp> {
        match self {
            EventTime::Known(t) => Some(t),
            _ => None,
        }
    }
}

/// 0001-01-01T00:00:00Z in Unix seconds.
const MIN_SECONDS: i64 = -62_135_596_800;
/// 9999-12-31T23:59:59Z in Unix seconds.
const MAX_SECONDS: i64 = 253_402_300_799;

/// A wire timestamp within years 1..=9999 with valid nanoseconds.
///
/// jiff stops 26 hours short of the end of year 9999 (it keeps room for
/// offsets), so the last day of 9999 also counts as out of range.
pub fn timestamp_from_wire(t: &wire::Timestamp) -> Option<Timestamp> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&t.seconds) || !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    Timestamp::new(t.seconds, t.nanos).ok()
}

/// The wire form of a timestamp.
pub fn timestamp_to_wire(t: Timestamp) -> wire::Timestamp {
    wire::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

/// One allow/deny decision, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Allowed or denied.
    pub decision: Decision,
    /// When it was decided, as far as the record tells.
    pub event_time: EventTime,
    /// The HTTP method, as sent.
    pub method: String,
    /// The URL, as sent.
    pub url: String,
    /// Empty when none was sent.
    pub matched_rule: String,
    /// Its number in its session (0 when the client sent none).
    pub sequence_number: i32,
}

/// Why a record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordRejection {
    #[error("record {sequence_number} carries no request")]
    /// No `http_request`, or one whose method, URL and rule are all empty.
    NoRequest {
        /// The record's sequence number.
        sequence_number: i32,
    },
}

impl RecordRejection {
    /// The drop reason it is counted under.
    pub fn drop_reason(&self) -> DropReason {
        match self {
            RecordRejection::NoRequest { .. } => DropReason::NoRequest,
        }
    }

    /// A stable snake_case reason for metrics and drop counts.
    pub fn reason(&self) -> &'static str {
        self.drop_reason().as_str()
    }
}

impl TryFrom<wire::BoundaryLog> for AuditRecord {
    type Error = RecordRejection;

    fn try_from(log: wire::BoundaryLog) -> Result<Self, Self::Error> {
        let no_request = RecordRejection::NoRequest {
            sequence_number: log.sequence_number,
        };
        let Some(boundary_log::Resource::HttpRequest(request)) = log.resource else {
            return Err(no_request);
        };
        if request.method.is_empty() && request.url.is_empty() && request.matched_rule.is_empty() {
            return Err(no_request);
        }
        Ok(AuditRecord {
            decision: Decision::from_allowed(log.allowed),
            event_time: EventTime::from_wire(log.time.as_ref()),
            method: request.method,
            url: request.url,
            matched_rule: request.matched_rule,
            sequence_number: log.sequence_number,
        })
    }
}

impl From<&AuditRecord> for wire::BoundaryLog {
    fn from(record: &AuditRecord) -> Self {
        wire::BoundaryLog {
            allowed: record.decision.is_allowed(),
            time: record.event_time.known().map(timestamp_to_wire),
            resource: Some(boundary_log::Resource::HttpRequest(
                boundary_log::HttpRequest {
                    method: record.method.clone(),
                    url: record.url.clone(),
                    matched_rule: record.matched_rule.clone(),
                },
            )),
            sequence_number: record.sequence_number,
        }
    }
}

/// The records of one client frame, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientLogs {
    /// `None` when the client sent no session id (older clients).
    pub session_id: Option<String>,
    /// The sandboxed process, as the client named it.
    pub confined_process_name: String,
    /// The valid records, in frame order.
    pub records: Vec<AuditRecord>,
    /// Records refused, in frame order; they are counted, never stored.
    pub rejected: Vec<RecordRejection>,
    /// The digest of the policy the records were decided under (lower-case
    /// hex SHA-256, as `warden boundary` sends it); `None` when not sent.
    pub policy_digest: Option<String>,
}

impl From<wire::ReportBoundaryLogsRequest> for ClientLogs {
    fn from(request: wire::ReportBoundaryLogsRequest) -> Self {
        let mut records = Vec::with_capacity(request.logs.len());
        let mut rejected = Vec::new();
        for log in request.logs {
            match AuditRecord::try_from(log) {
                Ok(record) => records.push(record),
                Err(rejection) => rejected.push(rejection),
            }
        }
        ClientLogs {
            session_id: non_empty(request.session_id),
            confined_process_name: request.confined_process_name,
            records,
            rejected,
            policy_digest: non_empty(request.policy_digest),
        }
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// The process that wrote to the agent's socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Its uid (SO_PEERCRED).
    pub uid: u32,
    /// Its gid (SO_PEERCRED).
    pub gid: u32,
    /// Its pid (SO_PEERCRED; 0 when unknown).
    pub pid: i32,
    /// Empty when /proc could not tell.
    pub comm: String,
    /// Empty when /proc could not tell.
    pub exe: String,
}

impl From<agentapi::SocketPeer> for Peer {
    fn from(p: agentapi::SocketPeer) -> Self {
        Peer {
            uid: p.uid,
            gid: p.gid,
            pid: p.pid,
            comm: p.comm,
            exe: p.exe,
        }
    }
}

impl From<Peer> for agentapi::SocketPeer {
    fn from(p: Peer) -> Self {
        agentapi::SocketPeer {
            uid: p.uid,
            gid: p.gid,
            pid: p.pid,
            comm: p.comm,
            exe: p.exe,
        }
    }
}

/// Client-reported drops attributed to a session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStatus {
    /// `None` when the connection had sent no logs frame with a session id.
    pub session_id: Option<String>,
    /// Records the client dropped because its channel was full (a delta).
    pub dropped_channel_full: i64,
    /// Records the client dropped because its batch was full (a delta).
    pub dropped_batch_full: i64,
    /// The last sequence number of a session the client closed (-1: none).
    pub final_sequence_number: Option<i64>,
    /// The policy the session decides under: its digest and its normalised
    /// text, sent once per session by `warden boundary`; `None` when not sent.
    pub policy: Option<Policy>,
}

/// A policy as a client reported it: the normalised rule set and its digest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Lower-case hex SHA-256 of `text`, as the client computed it.
    pub digest: String,
    /// The normalised rule set.
    pub text: String,
}

impl From<agentapi::ClientStatus> for ClientStatus {
    fn from(s: agentapi::ClientStatus) -> Self {
        let status = s.status.unwrap_or_default();
        ClientStatus {
            session_id: non_empty(s.session_id),
            dropped_channel_full: status.dropped_channel_full,
            dropped_batch_full: status.dropped_batch_full,
            final_sequence_number: status.final_sequence_number,
            policy: (!status.policy_digest.is_empty()).then_some(Policy {
                digest: status.policy_digest,
                text: status.policy,
            }),
        }
    }
}

/// What the agent itself lost or refused, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentDrop {
    /// The reason as the agent sent it; [`AgentDrop::known_reason`] parses it.
    pub reason: String,
    /// Records lost (0 when the agent cannot tell).
    pub records: u64,
    /// Frames or connections concerned.
    pub frames: u64,
    /// The session of the lost records, when the agent knows it.
    pub session_id: Option<String>,
    /// Their sequence numbers: sorted, disjoint, merged ranges (empty when
    /// unknown). Ranges the agent sent backwards are left out.
    pub sequence_ranges: Vec<SequenceRange>,
    /// For a whole spooled batch the agent dropped: that batch's id. Such a
    /// drop counts only if the batch was never committed, and then the id
    /// counts as committed.
    pub dropped_batch_id: Option<Uuid>,
}

impl AgentDrop {
    /// The reason, when this build knows it.
    pub fn known_reason(&self) -> Option<DropReason> {
        DropReason::parse(&self.reason)
    }
}

/// Consecutive sequence numbers, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceRange {
    /// The first number.
    pub first: i32,
    /// The last number (included).
    pub last: i32,
}

impl SequenceRange {
    /// How many numbers the range holds.
    pub fn count(self) -> u64 {
        (i64::from(self.last) - i64::from(self.first) + 1).unsigned_abs()
    }

    /// The ranges a list of sequence numbers makes: sorted, duplicates
    /// removed, consecutive numbers merged. Sorts `numbers` in place.
    pub fn from_numbers(numbers: &mut [i32]) -> Vec<SequenceRange> {
        if !numbers.is_sorted() {
            numbers.sort_unstable();
        }
        let mut ranges: Vec<SequenceRange> = Vec::new();
        for &n in numbers.iter() {
            match ranges.last_mut() {
                Some(last) if n <= last.last => {}
                Some(last) if i64::from(n) == i64::from(last.last) + 1 => last.last = n,
                _ => ranges.push(SequenceRange { first: n, last: n }),
            }
        }
        ranges
    }

    /// Sorts ranges and merges those that overlap or touch; ranges whose
    /// `first` is above their `last` are left out.
    pub fn normalize(mut ranges: Vec<SequenceRange>) -> Vec<SequenceRange> {
        ranges.retain(|r| r.first <= r.last);
        ranges.sort_unstable();
        let mut out: Vec<SequenceRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match out.last_mut() {
                Some(last) if i64::from(r.first) <= i64::from(last.last) + 1 => {
                    last.last = last.last.max(r.last);
                }
                _ => out.push(r),
            }
        }
        out
    }
}

impl From<agentapi::SequenceRange> for SequenceRange {
    fn from(r: agentapi::SequenceRange) -> Self {
        SequenceRange {
            first: r.first,
            last: r.last,
        }
    }
}

impl From<SequenceRange> for agentapi::SequenceRange {
    fn from(r: SequenceRange) -> Self {
        agentapi::SequenceRange {
            first: r.first,
            last: r.last,
        }
    }
}

impl From<agentapi::AgentDrop> for AgentDrop {
    fn from(d: agentapi::AgentDrop) -> Self {
        AgentDrop {
            reason: d.reason,
            records: d.records,
            frames: d.frames,
            session_id: non_empty(d.session_id),
            sequence_ranges: SequenceRange::normalize(
                d.sequence_ranges.into_iter().map(Into::into).collect(),
            ),
            // A malformed id only loses the deduplication, never the count.
            dropped_batch_id: Uuid::parse_str(&d.dropped_batch_id).ok(),
        }
    }
}

/// One spooled batch as the control plane ingests it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestBatch {
    /// The agent's id for the batch (the idempotency key of re-sends).
    pub batch_id: Uuid,
    /// When the agent read the frame.
    pub received_at: Timestamp,
    /// Who wrote it to the agent's socket.
    pub peer: Peer,
    /// `None` for a batch that only reports status or drops.
    pub logs: Option<ClientLogs>,
    /// Client status reports.
    pub client_status: Vec<ClientStatus>,
    /// The agent's own losses.
    pub agent_drops: Vec<AgentDrop>,
}

/// A batch the control plane cannot take at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch id {0:?} is not a UUID")]
    /// The batch id is not a UUID.
    BadBatchId(String),
    #[error("batch {0} has no valid receive time")]
    /// The receive time is missing or impossible.
    BadReceivedAt(Uuid),
}

impl TryFrom<agentapi::Batch> for IngestBatch {
    type Error = BatchError;

    fn try_from(batch: agentapi::Batch) -> Result<Self, Self::Error> {
        let batch_id =
            Uuid::parse_str(&batch.batch_id).map_err(|_| BatchError::BadBatchId(batch.batch_id))?;
        let received_at = batch
            .received_at
            .as_ref()
            .and_then(timestamp_from_wire)
            .ok_or(BatchError::BadReceivedAt(batch_id))?;
        Ok(IngestBatch {
            batch_id,
            received_at,
            peer: batch.peer.map(Peer::from).unwrap_or_default(),
            logs: batch.logs.map(ClientLogs::from),
            client_status: batch.client_status.into_iter().map(Into::into).collect(),
            agent_drops: batch.agent_drops.into_iter().map(Into::into).collect(),
        })
    }
}

impl IngestBatch {
    /// Records in the batch, valid or not; what the per-RPC limit counts.
    pub fn record_count(&self) -> usize {
        self.logs
            .as_ref()
            .map_or(0, |l| l.records.len() + l.rejected.len())
    }
}

/// What an agent needs to know about its workspace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The workspace's id.
    pub workspace_id: Uuid,
    /// Its name.
    pub workspace_name: String,
    /// Its owner's name.
    pub owner_name: String,
    /// The agent's id.
    pub agent_id: Uuid,
    /// The agent's name.
    pub agent_name: String,
    /// Empty for none.
    pub startup_script: String,
}

/// A manifest the control plane sent that is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("manifest {field} {value:?} is not a UUID")]
pub struct BadManifest {
    /// The field.
    pub field: &'static str,
    /// What it held.
    pub value: String,
}

impl TryFrom<agentapi::Manifest> for Manifest {
    type Error = BadManifest;

    fn try_from(m: agentapi::Manifest) -> Result<Self, Self::Error> {
        let uuid = |field: &'static str, value: String| {
            Uuid::parse_str(&value).map_err(|_| BadManifest { field, value })
        };
        Ok(Manifest {
            workspace_id: uuid("workspace_id", m.workspace_id)?,
            agent_id: uuid("agent_id", m.agent_id)?,
            workspace_name: m.workspace_name,
            owner_name: m.owner_name,
            agent_name: m.agent_name,
            startup_script: m.startup_script,
        })
    }
}

impl From<&Manifest> for agentapi::Manifest {
    fn from(m: &Manifest) -> Self {
        agentapi::Manifest {
            workspace_id: m.workspace_id.to_string(),
            workspace_name: m.workspace_name.clone(),
            owner_name: m.owner_name.clone(),
            agent_name: m.agent_name.clone(),
            startup_script: m.startup_script.clone(),
            agent_id: m.agent_id.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(
        resource: Option<boundary_log::Resource>,
        time: Option<wire::Timestamp>,
    ) -> wire::BoundaryLog {
        wire::BoundaryLog {
            allowed: true,
            time,
            resource,
            sequence_number: 3,
        }
    }

    fn http(method: &str, url: &str) -> Option<boundary_log::Resource> {
        Some(boundary_log::Resource::HttpRequest(
            boundary_log::HttpRequest {
                method: method.into(),
                url: url.into(),
                matched_rule: String::new(),
            },
        ))
    }

    #[test]
    fn a_record_without_request_is_rejected() {
        assert_eq!(
            AuditRecord::try_from(log(None, None)),
            Err(RecordRejection::NoRequest { sequence_number: 3 })
        );
        assert_eq!(
            AuditRecord::try_from(log(http("", ""), None))
                .unwrap_err()
                .reason(),
            "no_request"
        );
    }

    #[test]
    fn empty_method_or_url_is_kept_as_sent() {
        let record = AuditRecord::try_from(log(http("", "https://a.io"), None)).unwrap();
        assert_eq!(record.method, "");
        assert_eq!(record.url, "https://a.io");
        let record = AuditRecord::try_from(log(http("GET", ""), None)).unwrap();
        assert_eq!(record.url, "");
    }

    #[test]
    fn times_are_known_missing_or_out_of_range() {
        let t = |seconds, nanos| Some(wire::Timestamp { seconds, nanos });
        let time_of = |time| {
            AuditRecord::try_from(log(http("GET", "u"), time))
                .unwrap()
                .event_time
        };
        assert_eq!(time_of(None), EventTime::Missing);
        assert_eq!(
            time_of(t(1_765_227_526, 93_456_789))
                .known()
                .unwrap()
                .to_string(),
            "2025-12-08T20:58:46.093456789Z"
        );
        // Both ends of years 1..=9999 are fine.
        assert!(time_of(t(MIN_SECONDS, 0)).known().is_some());
        let last = Timestamp::MAX;
        assert_eq!(
            time_of(t(last.as_second(), 999_999_999)).known(),
            Some(last)
        );
        for (seconds, nanos) in [
            (0, -1),
            (0, 1_000_000_000),
            (MIN_SECONDS - 1, 0),
            (MAX_SECONDS + 1, 0),
            (i64::MIN, 0),
            (i64::MAX, i32::MAX),
        ] {
            assert_eq!(
                time_of(t(seconds, nanos)),
                EventTime::OutOfRange { seconds, nanos },
                "{seconds} {nanos}"
            );
        }
    }

    #[test]
    fn client_logs_split_valid_and_rejected_records() {
        let request = wire::ReportBoundaryLogsRequest {
            logs: vec![log(http("GET", "u"), None), log(None, None)],
            session_id: String::new(),
            confined_process_name: "curl".into(),
            ..Default::default()
        };
        let logs = ClientLogs::from(request);
        assert_eq!(logs.session_id, None);
        assert_eq!(logs.records.len(), 1);
        assert_eq!(logs.rejected.len(), 1);
        assert_eq!(logs.confined_process_name, "curl");
    }

    #[test]
    fn batches_need_a_uuid_and_a_receive_time() {
        let id = Uuid::now_v7();
        let good = agentapi::Batch {
            batch_id: id.to_string(),
            received_at: Some(wire::Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        };
        let batch = IngestBatch::try_from(good.clone()).unwrap();
        assert_eq!(batch.batch_id, id);
        assert_eq!(batch.record_count(), 0);
        let bad_id = agentapi::Batch {
            batch_id: "nope".into(),
            ..good.clone()
        };
        assert_eq!(
            IngestBatch::try_from(bad_id),
            Err(BatchError::BadBatchId("nope".into()))
        );
        let no_time = agentapi::Batch {
            received_at: None,
            ..good
        };
        assert_eq!(
            IngestBatch::try_from(no_time),
            Err(BatchError::BadReceivedAt(id))
        );
    }

    #[test]
    fn sequence_numbers_become_merged_ranges() {
        let range = |first, last| SequenceRange { first, last };
        let mut numbers = [5, 3, 4, 9, 3, 10, i32::MAX, i32::MIN];
        assert_eq!(
            SequenceRange::from_numbers(&mut numbers),
            [
                range(i32::MIN, i32::MIN),
                range(3, 5),
                range(9, 10),
                range(i32::MAX, i32::MAX)
            ]
        );
        assert_eq!(SequenceRange::from_numbers(&mut []), []);
        assert_eq!(
            SequenceRange::normalize(vec![range(8, 9), range(1, 3), range(4, 5), range(7, 6)]),
            [range(1, 5), range(8, 9)]
        );
        assert_eq!(range(i32::MIN, i32::MAX).count(), 1 << 32);
    }

    #[test]
    fn agent_drops_keep_their_attribution() {
        let id = Uuid::now_v7();
        let drop = AgentDrop::from(agentapi::AgentDrop {
            reason: "spool_full".into(),
            records: 7,
            frames: 1,
            session_id: "s1".into(),
            sequence_ranges: vec![
                agentapi::SequenceRange { first: 4, last: 6 },
                agentapi::SequenceRange { first: 0, last: 3 },
            ],
            dropped_batch_id: id.to_string(),
        });
        assert_eq!(drop.known_reason(), Some(DropReason::SpoolFull));
        assert_eq!(drop.session_id.as_deref(), Some("s1"));
        assert_eq!(drop.sequence_ranges, [SequenceRange { first: 0, last: 6 }]);
        assert_eq!(drop.dropped_batch_id, Some(id));
        // What an agent of 2.7 sends: no attribution.
        let old = AgentDrop::from(agentapi::AgentDrop {
            reason: "something_new".into(),
            records: 1,
            ..Default::default()
        });
        assert_eq!(old.known_reason(), None);
        assert_eq!(old.session_id, None);
        assert!(old.sequence_ranges.is_empty() && old.dropped_batch_id.is_none());
    }

    #[test]
    fn record_round_trips_through_the_wire() {
        let record = AuditRecord {
            decision: Decision::Deny,
            event_time: EventTime::Known(Timestamp::new(1_765_227_526, 5).unwrap()),
            method: "POST".into(),
            url: "https://evil.example/".into(),
            matched_rule: String::new(),
            sequence_number: 9,
        };
        let wire = wire::BoundaryLog::from(&record);
        assert_eq!(AuditRecord::try_from(wire).unwrap(), record);
    }
}
