//! The record query API's vocabulary (`/api/v1/records`, its stream, a
//! workspace's sessions, summaries), shared by the server's handlers and
//! the client ([`crate::client`]): query parameters and their checks,
//! response bodies. Cursors are opaque strings here: only the server reads
//! them.
//!
//! Record objects are the `json` boundary line of `docs/stderr-format.md`
//! plus `id`, `peer` and `conflict`; the server renders them from its line
//! format, clients read them as [`Record`].

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use warden_proto::domain::Decision;

use crate::time::parse_time;
use crate::workspaces::LossInfo;

/// A stored record's id: its place in commit order.
pub type RecordId = i64;

/// Records per page when the caller does not say.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most records (or sessions) one page holds.
pub const MAX_LIMIT: u32 = 1000;
/// Denied hosts a summary lists when the caller does not say.
pub const DEFAULT_TOP_HOSTS: u32 = 10;
/// The most denied hosts a summary lists.
pub const MAX_TOP_HOSTS: u32 = 100;
/// The most gap ranges a session report lists.
pub const MAX_GAPS: u32 = 1000;

/// The query string of `GET /api/v1/records` and `/api/v1/records/stream`.
/// Values stay text here so that [`RecordParams::check`] can say exactly
/// which one is wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordParams {
    /// A live workspace, by name.
    pub workspace: Option<String>,
    /// A workspace by id (deleted ones too: their records stay).
    pub workspace_id: Option<String>,
    /// Workspaces of this owner.
    pub owner: Option<String>,
    /// The agent's name.
    pub agent: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// The client session id.
    pub session: Option<String>,
    /// RFC 3339 timestamp, or a duration before now (`15m`, `2h`, `7d`).
    pub since: Option<String>,
    /// Before this time (same forms as `since`).
    pub until: Option<String>,
    /// Case-sensitive substring of the URL.
    pub url_contains: Option<String>,
    /// The HTTP method, exactly.
    pub method: Option<String>,
    /// `true` or `false`.
    pub conflict: Option<String>,
    /// List only: records per page.
    pub limit: Option<String>,
    /// List only: the `next` of the previous page.
    pub cursor: Option<String>,
    /// Stream only: resume after this cursor (the `Last-Event-ID` header
    /// wins when both are given).
    pub after: Option<String>,
}

/// [`RecordParams`] checked; the workspace still by name, for the server
/// to resolve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordFilter {
    /// A live workspace, by name.
    pub workspace: Option<String>,
    /// A workspace by id.
    pub workspace_id: Option<Uuid>,
    /// Workspaces of this owner.
    pub owner: Option<String>,
    /// The agent's name.
    pub agent: Option<String>,
    /// Allowed or denied requests only.
    pub decision: Option<Decision>,
    /// The client session id.
    pub session: Option<String>,
    /// From this time on (event time, or receive time without one).
    pub since: Option<Timestamp>,
    /// Before this time.
    pub until: Option<Timestamp>,
    /// Case-sensitive substring of the URL.
    pub url_contains: Option<String>,
    /// The HTTP method, exactly.
    pub method: Option<String>,
    /// Conflicting records only (`true`) or none of them (`false`).
    pub conflict: Option<bool>,
}

impl RecordParams {
    /// The filter these parameters describe; durations count back from
    /// `now`. Errors name the parameter and say what it takes.
    pub fn check(&self, now: Timestamp) -> Result<RecordFilter, String> {
        let text = |name: &str, value: &Option<String>| -> Result<Option<String>, String> {
            match value {
                Some(v) if v.is_empty() => Err(format!("{name} must not be empty")),
                v => Ok(v.clone()),
            }
        };
        let time = |name: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| parse_time(v, now).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        let filter = RecordFilter {
            workspace: text("workspace", &self.workspace)?,
            workspace_id: self
                .workspace_id
                .as_deref()
                .map(|v| {
                    Uuid::try_parse(v).map_err(|_| format!("workspace_id {v:?} is not a uuid"))
                })
                .transpose()?,
            owner: text("owner", &self.owner)?,
            agent: text("agent", &self.agent)?,
            decision: self.decision.as_deref().map(parse_decision).transpose()?,
            session: text("session", &self.session)?,
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            url_contains: text("url_contains", &self.url_contains)?,
            method: text("method", &self.method)?,
            conflict: self
                .conflict
                .as_deref()
                .map(|v| match v {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(format!("conflict must be true or false, not {v:?}")),
                })
                .transpose()?,
        };
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since >= until
        {
            return Err(format!("since ({since}) must be before until ({until})"));
        }
        Ok(filter)
    }

    /// The page size: [`DEFAULT_LIMIT`] unless given, at most [`MAX_LIMIT`].
    pub fn page_limit(&self) -> Result<u32, String> {
        parse_limit(self.limit.as_deref(), DEFAULT_LIMIT)
    }
}

/// The query string of `GET /api/v1/workspaces/{name}/sessions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionListParams {
    /// Sessions per page.
    pub limit: Option<String>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

/// The query string of `GET /api/v1/workspaces/{name}/sessions/{session}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionReportParams {
    /// Records per page.
    pub limit: Option<String>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// The most gap ranges to list (at most [`MAX_GAPS`]).
    pub max_gaps: Option<String>,
}

/// The query string of `GET /api/v1/summaries`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryParams {
    /// Only this live workspace.
    pub workspace: Option<String>,
    /// Count records from this time (RFC 3339, or a duration before now).
    pub since: Option<String>,
    /// Count records before this time.
    pub until: Option<String>,
    /// How many of the most denied hosts to list (at most
    /// [`MAX_TOP_HOSTS`]).
    pub top: Option<String>,
}

/// A count between `0` and `max`, `default` when not given.
pub fn parse_count(name: &str, text: Option<&str>, default: u32, max: u32) -> Result<u32, String> {
    let Some(text) = text else {
        return Ok(default);
    };
    match text.parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!(
            "{name} must be a whole number from 0 to {max}, not {text:?}"
        )),
    }
}

/// `allow` or `deny`.
pub fn parse_decision(text: &str) -> Result<Decision, String> {
    match text {
        "allow" => Ok(Decision::Allow),
        "deny" => Ok(Decision::Deny),
        _ => Err(format!("decision must be allow or deny, not {text:?}")),
    }
}

/// A page size between 1 and [`MAX_LIMIT`], `default` when not given.
pub fn parse_limit(text: Option<&str>, default: u32) -> Result<u32, String> {
    let Some(text) = text else {
        return Ok(default);
    };
    match text.parse::<u32>() {
        Ok(n @ 1..=MAX_LIMIT) => Ok(n),
        _ => Err(format!(
            "limit must be a whole number from 1 to {MAX_LIMIT}, not {text:?}"
        )),
    }
}

// ---- bodies ---------------------------------------------------------------

/// `GET /api/v1/records`: records newest first. `R` is the record object
/// (the server writes its own form; clients read [`Record`] or keep the
/// raw JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordPage<R> {
    /// The records, newest first.
    pub records: Vec<R>,
    /// Present when more (older) records may match: pass it as `cursor`.
    pub next: Option<String>,
    /// Where to follow from (`after` on the stream) to get every matching
    /// record newer than this page, none twice.
    pub head: String,
}

/// The socket peer that wrote a record to the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// User id (SO_PEERCRED).
    pub uid: u32,
    /// Group id (SO_PEERCRED).
    pub gid: u32,
    /// Process id (SO_PEERCRED).
    pub pid: i32,
    /// The process's name (`/proc/PID/comm`).
    pub comm: String,
    /// The process's executable (`/proc/PID/exe`).
    pub exe: String,
}

/// A record object as a client reads it: the keys of the `json` boundary
/// line (`docs/stderr-format.md`) plus `id`, `peer` and `conflict`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Record {
    /// The record's id (its place in commit order).
    pub id: RecordId,
    /// The event time, or the receive time when the record had none.
    pub ts: Timestamp,
    /// `warn` for a denied request, `info` for an allowed one.
    pub level: String,
    /// The workspace of the agent that delivered it.
    pub workspace_id: Uuid,
    /// That workspace's name (when known).
    pub workspace_name: Option<String>,
    /// That workspace's owner (when known).
    pub workspace_owner: Option<String>,
    /// The delivering agent's name (when known).
    pub agent_name: Option<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// The request's method, as sent.
    pub http_method: String,
    /// The request's URL, as sent.
    pub http_url: String,
    /// When boundary decided, if it said.
    pub event_time: Option<Timestamp>,
    /// When the control plane received the record (its own clock).
    pub received_at: Timestamp,
    /// The client session id, when the batch carried one.
    pub session_id: Option<String>,
    /// The sequence number in its session, with a session id.
    pub sequence: Option<i32>,
    /// The allow rule that matched, for an allowed record.
    pub matched_rule: Option<String>,
    /// The `confined_process_name` the client sent.
    pub process: Option<String>,
    /// The URL was stored cut to the control plane's bound; `http_url_bytes`
    /// is its length as sent.
    #[serde(default)]
    pub http_url_truncated: bool,
    /// The URL's length in bytes as sent, when it was stored cut.
    #[serde(default)]
    pub http_url_bytes: Option<u64>,
    /// When the agent says it read the record (its clock; `received_at` is
    /// the control plane's).
    pub agent_received_at: Option<Timestamp>,
    /// The agent's time is implausible next to the control plane's (far
    /// ahead, or months behind): evidence, not trusted.
    #[serde(default)]
    pub agent_time_suspect: bool,
    /// The digest of the policy the record was decided under.
    pub policy_digest: Option<String>,
    /// The socket peer that wrote it.
    pub peer: PeerInfo,
    /// Its session and sequence number were used before by a record
    /// with other content.
    pub conflict: bool,
}

/// What is known about one session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The client session id.
    pub session_id: String,
    /// Records stored (conflicts included, purged ones too).
    pub records: u64,
    /// Of `records`, how many conflict with an earlier one.
    pub conflicts: u64,
    /// Lowest sequence number stored.
    pub first_sequence: Option<i32>,
    /// Highest sequence number stored.
    pub last_sequence: Option<i32>,
    /// The last number the client said it assigned, when it closed the
    /// session (-1: none).
    pub final_sequence: Option<i64>,
    /// Sequence numbers up to the last known one that no stored record
    /// carries.
    pub missing: u64,
    /// Records reported lost (client drops, agent drops, refused records).
    pub reported_lost: u64,
    /// `missing` that no report explains.
    pub unexplained: u64,
    /// The reports, by source and reason.
    pub losses: Vec<LossInfo>,
    /// The sequence numbers the workspace agent reported losing (its full
    /// spool dropped them, the control plane refused them, or its spool
    /// could not write them), lowest first.
    #[serde(default)]
    pub agent_dropped: Vec<GapRange>,
    /// Of `records`, how many retention deleted.
    pub purged: u64,
    /// The digest of the policy the session's latest records were decided
    /// under (`GET /api/v1/policies/{digest}` has its text).
    #[serde(default)]
    pub policy_digest: Option<String>,
}

/// `GET /api/v1/policies/{digest}`: a policy text a client reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// Lower-case hex SHA-256 of `text`.
    pub digest: String,
    /// The normalised rule set, one rule per line (`docs/boundary-rules.md`).
    pub text: String,
    /// When the control plane first stored it.
    pub first_seen: Timestamp,
}

/// A session as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionListing {
    /// What is known about the session.
    #[serde(flatten)]
    pub session: SessionInfo,
    /// Earliest and latest time of its stored records.
    pub first_record_at: Option<Timestamp>,
    /// Latest time of its stored records.
    pub last_record_at: Option<Timestamp>,
}

/// `GET /api/v1/workspaces/{workspace}/sessions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    /// The workspace listed.
    pub workspace_id: Uuid,
    /// `None` for a workspace named by id that is deleted.
    pub workspace_name: Option<String>,
    /// Most recently stored-to first.
    pub sessions: Vec<SessionListing>,
    /// Present when more sessions may follow: pass it as `cursor`.
    pub next: Option<String>,
}

/// Consecutive missing sequence numbers, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapRange {
    /// First missing number.
    pub first: i64,
    /// Last missing number.
    pub last: i64,
}

/// `GET /api/v1/workspaces/{workspace}/sessions/{session}`: a session's
/// summary, its gaps, and a page of its records in sequence order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionReport<R> {
    /// The session's workspace.
    pub workspace_id: Uuid,
    /// Its name (`None` when the workspace is deleted).
    pub workspace_name: Option<String>,
    /// The session's summary.
    pub session: SessionInfo,
    /// Lowest first; numbers retention purged inside the stored span show
    /// up here too.
    pub gaps: Vec<GapRange>,
    /// More gaps exist than listed.
    pub gaps_truncated: bool,
    /// A page of its records, in sequence order.
    pub records: Vec<R>,
    /// Present when more records may follow: pass it as `cursor`.
    pub next: Option<String>,
    /// Its signed completeness verdicts, oldest first: the last one is
    /// current, earlier ones were superseded (none until the session ended
    /// or went idle).
    #[serde(default)]
    pub verdicts: Vec<VerdictInfo>,
}

/// A signed session completeness verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictInfo {
    /// Its position among stored verdicts.
    pub id: i64,
    /// `complete`, `complete-except-reported-drops` or `incomplete`.
    pub verdict: String,
    /// Whether the client reported the session's end (an idle session
    /// without one is judged incomplete).
    pub end_reported: bool,
    /// When it was signed (RFC 3339).
    pub signed_at: String,
    /// The verdict it superseded.
    pub supersedes: Option<i64>,
    /// The signing key's id.
    pub key_id: String,
    /// The signed statement, as signed.
    pub statement: String,
    /// The Ed25519 signature over `statement`, hex.
    pub signature: String,
}

/// Denied records of one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// The host of the denied URLs.
    pub host: String,
    /// Denied records for it.
    pub records: u64,
}

/// One workspace over a time range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSummary {
    /// The workspace.
    pub workspace_id: Uuid,
    /// Its name.
    pub workspace_name: String,
    /// Its owner.
    pub owner: String,
    /// Its agent's name.
    pub agent_name: String,
    /// Records in the range, by decision.
    pub allowed: u64,
    /// Denied records in the range.
    pub denied: u64,
    /// Conflicting records in the range.
    pub conflicts: u64,
    /// Earliest record time in the range.
    pub first_record_at: Option<Timestamp>,
    /// Latest record time in the range.
    pub last_record_at: Option<Timestamp>,
    /// Most denied first.
    pub top_denied_hosts: Vec<HostInfo>,
    /// Every loss reported for the workspace, by source and reason (all
    /// time: loss counters carry no time).
    pub losses: Vec<LossInfo>,
    /// Sessions known (all time), their missing sequence numbers, the losses
    /// reported for them, and the missing numbers no report explains.
    pub sessions: u64,
    /// Missing sequence numbers of those sessions.
    pub missing: u64,
    /// Records reported lost for those sessions.
    pub reported_lost: u64,
    /// Missing numbers no report explains.
    pub unexplained_loss: u64,
    /// The agent's last call.
    pub last_contact_at: Option<Timestamp>,
    /// The agent's last delivered batch.
    pub last_batch_at: Option<Timestamp>,
}

/// `GET /api/v1/summaries`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryList {
    /// Start of the range (`None`: from the first record).
    pub since: Option<Timestamp>,
    /// End of the range (`None`: up to now).
    pub until: Option<Timestamp>,
    /// One summary per live workspace (or the one asked for).
    pub workspaces: Vec<WorkspaceSummary>,
}

/// The data of a stream's `position` event: how far the stream has looked
/// (resuming there skips only records that did not match).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Resume here (`after`) to miss nothing that matches.
    pub cursor: String,
}

/// The stream event that carries a record object.
pub const EVENT_RECORD: &str = "record";
/// The stream event that carries a [`Position`].
pub const EVENT_POSITION: &str = "position";

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-12-08T20:00:00Z".parse().unwrap()
    }

    #[test]
    fn parameters_are_checked_by_name() {
        let check = |p: RecordParams| p.check(now());
        let ok = check(RecordParams {
            decision: Some("deny".into()),
            conflict: Some("true".into()),
            since: Some("1h".into()),
            workspace_id: Some(Uuid::nil().to_string()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ok.decision, Some(Decision::Deny));
        assert_eq!(ok.conflict, Some(true));
        assert_eq!(ok.workspace_id, Some(Uuid::nil()));
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
                    conflict: Some("yes".into()),
                    ..Default::default()
                },
                "conflict must be true or false",
            ),
            (
                RecordParams {
                    since: Some("soon".into()),
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
                    workspace_id: Some("dev".into()),
                    ..Default::default()
                },
                "is not a uuid",
            ),
            (
                RecordParams {
                    owner: Some(String::new()),
                    ..Default::default()
                },
                "owner must not be empty",
            ),
        ] {
            let e = check(params).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
        assert_eq!(parse_limit(None, 7), Ok(7));
        assert_eq!(parse_limit(Some("1000"), 7), Ok(1000));
        for bad in ["0", "1001", "-1", "ten"] {
            assert!(parse_limit(Some(bad), 7).is_err(), "{bad}");
        }
    }
}
