//! The record query API's vocabulary (`/api/v1/records`, its stream, a
//! workspace's sessions, summaries), shared by the server's handlers
//! ([`crate::http`]) and the client ([`crate::query_client`]): query
//! parameters and their checks, cursors, time arguments, response bodies.
//!
//! Record objects are the `json` boundary line of `spec/stderr-format.md`
//! plus `id`, `peer` and `conflict`; the server renders them from
//! [`crate::line::format::JsonLine`], clients read them as [`Record`].

use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use warden_proto::domain::Decision;
use warden_store::{RecordId, SequencePosition};

use crate::admin_api::LossInfo;

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
    pub owner: Option<String>,
    /// The agent's name.
    pub agent: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    pub session: Option<String>,
    /// RFC 3339 timestamp, or a duration before now (`15m`, `2h`, `7d`).
    pub since: Option<String>,
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
    pub workspace: Option<String>,
    pub workspace_id: Option<Uuid>,
    pub owner: Option<String>,
    pub agent: Option<String>,
    pub decision: Option<Decision>,
    pub session: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub url_contains: Option<String>,
    pub method: Option<String>,
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

    /// `name=value` pairs of the parameters that are set, in a fixed order.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("workspace", &self.workspace),
            ("workspace_id", &self.workspace_id),
            ("owner", &self.owner),
            ("agent", &self.agent),
            ("decision", &self.decision),
            ("session", &self.session),
            ("since", &self.since),
            ("until", &self.until),
            ("url_contains", &self.url_contains),
            ("method", &self.method),
            ("conflict", &self.conflict),
            ("limit", &self.limit),
            ("cursor", &self.cursor),
            ("after", &self.after),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
        .collect()
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

/// A point in time given as an RFC 3339 timestamp
/// (`2025-12-08T20:58:46Z`, any offset) or as a duration before `now`:
/// whole numbers with units `s`, `m`, `h`, `d` (24 hours) or `w`, as in
/// `15m`, `2h`, `7d` or `1h30m`.
pub fn parse_time(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Some(duration) = parse_duration(text) {
        return now
            .checked_sub(duration)
            .map_err(|_| format!("{text:?} reaches back too far"));
    }
    Timestamp::from_str(text).map_err(|_| {
        format!(
            "{text:?} is neither a duration (like 15m, 2h, 7d) nor an RFC 3339 timestamp (like 2025-12-08T20:58:46Z)"
        )
    })
}

/// `15m`, `2h`, `7d`, `1h30m`; `None` when `text` is not such a duration.
fn parse_duration(text: &str) -> Option<SignedDuration> {
    if text.is_empty() {
        return None;
    }
    let mut total = SignedDuration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        let mut units = rest[digits..].chars();
        let seconds_per_unit: i64 = match units.next()? {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total = total.checked_add(SignedDuration::from_secs(n.checked_mul(seconds_per_unit)?))?;
        rest = units.as_str();
    }
    Some(total)
}

// ---- cursors --------------------------------------------------------------

/// Why a cursor was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor {0:?}: pass a cursor exactly as the server returned it")]
pub struct CursorError(pub String);

/// A position in commit order: the `next` of a record page (newest first:
/// older records follow), the `head` to follow from, and the `id:` of every
/// stream event (newer records follow). Opaque to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordCursor(pub RecordId);

impl fmt::Display for RecordCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{:x}", self.0)
    }
}

impl FromStr for RecordCursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix('r')
            .filter(|hex| !hex.is_empty() && hex.len() <= 16)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .and_then(|n| RecordId::try_from(n).ok())
            .map(RecordCursor)
            .ok_or_else(|| CursorError(s.to_owned()))
    }
}

/// A position in a session's sequence order: the `next` of a session
/// report. Opaque to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionCursor(pub SequencePosition);

impl fmt::Display for SessionCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}_{:x}", self.0.sequence_number, self.0.id)
    }
}

impl FromStr for SessionCursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CursorError(s.to_owned());
        let (seq, id) = s
            .strip_prefix('q')
            .and_then(|r| r.split_once('_'))
            .ok_or_else(bad)?;
        let sequence_number = seq.parse::<i32>().map_err(|_| bad())?;
        let id = u64::from_str_radix(id, 16)
            .ok()
            .and_then(|n| RecordId::try_from(n).ok())
            .ok_or_else(bad)?;
        Ok(SessionCursor(SequencePosition {
            sequence_number,
            id,
        }))
    }
}

/// A position in a workspace's session list (most recently stored-to
/// first): the `next` of a session list. Opaque to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionListCursor {
    /// The last record id of the last session listed (`None`: a session
    /// without stored records).
    pub last_record_id: Option<RecordId>,
    pub session_id: String,
}

impl fmt::Display for SessionListCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last_record_id {
            Some(id) => write!(f, "l{id:x}_")?,
            None => f.write_str("l-_")?,
        }
        f.write_str(&hex::encode(self.session_id.as_bytes()))
    }
}

impl FromStr for SessionListCursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CursorError(s.to_owned());
        let (id, session) = s
            .strip_prefix('l')
            .and_then(|r| r.split_once('_'))
            .ok_or_else(bad)?;
        let last_record_id = match id {
            "-" => None,
            hex => Some(
                u64::from_str_radix(hex, 16)
                    .ok()
                    .and_then(|n| RecordId::try_from(n).ok())
                    .ok_or_else(bad)?,
            ),
        };
        let session_id = hex::decode(session)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(bad)?;
        Ok(SessionListCursor {
            last_record_id,
            session_id,
        })
    }
}

// ---- bodies ---------------------------------------------------------------

/// `GET /api/v1/records`: records newest first. `R` is the record object
/// (the server writes its own form; clients read [`Record`] or keep the
/// raw JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordPage<R> {
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
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    pub comm: String,
    pub exe: String,
}

/// A record object as a client reads it: the keys of the `json` boundary
/// line (`spec/stderr-format.md`) plus `id`, `peer` and `conflict`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Record {
    pub id: RecordId,
    /// The event time, or the receive time when the record had none.
    pub ts: Timestamp,
    pub level: String,
    pub workspace_id: Uuid,
    pub workspace_name: Option<String>,
    pub workspace_owner: Option<String>,
    pub agent_name: Option<String>,
    pub decision: String,
    pub http_method: String,
    pub http_url: String,
    pub event_time: Option<Timestamp>,
    pub received_at: Timestamp,
    pub session_id: Option<String>,
    pub sequence: Option<i32>,
    pub matched_rule: Option<String>,
    pub process: Option<String>,
    pub peer: PeerInfo,
    pub conflict: bool,
}

/// What is known about one session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session_id: String,
    /// Records stored (conflicts included, purged ones too).
    pub records: u64,
    pub conflicts: u64,
    pub first_sequence: Option<i32>,
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
}

impl From<&warden_store::SessionSummary> for SessionInfo {
    fn from(s: &warden_store::SessionSummary) -> Self {
        SessionInfo {
            session_id: s.session_id.clone(),
            records: s.records,
            conflicts: s.conflicts,
            first_sequence: s.first_sequence_number,
            last_sequence: s.last_sequence_number,
            final_sequence: s.final_sequence_number,
            missing: s.missing(),
            reported_lost: s.reported_losses(),
            unexplained: s.unexplained(),
            losses: s.losses.iter().map(LossInfo::from).collect(),
            agent_dropped: s
                .agent_dropped
                .iter()
                .map(|r| GapRange {
                    first: r.first,
                    last: r.last,
                })
                .collect(),
            purged: s.purged,
        }
    }
}

/// A session as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionListing {
    #[serde(flatten)]
    pub session: SessionInfo,
    /// Earliest and latest time of its stored records.
    pub first_record_at: Option<Timestamp>,
    pub last_record_at: Option<Timestamp>,
}

/// `GET /api/v1/workspaces/{workspace}/sessions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    pub workspace_id: Uuid,
    /// `None` for a workspace named by id that is deleted.
    pub workspace_name: Option<String>,
    /// Most recently stored-to first.
    pub sessions: Vec<SessionListing>,
    pub next: Option<String>,
}

/// Consecutive missing sequence numbers, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapRange {
    pub first: i64,
    pub last: i64,
}

/// `GET /api/v1/workspaces/{workspace}/sessions/{session}`: a session's
/// summary, its gaps, and a page of its records in sequence order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionReport<R> {
    pub workspace_id: Uuid,
    pub workspace_name: Option<String>,
    pub session: SessionInfo,
    /// Lowest first; numbers retention purged inside the stored span show
    /// up here too.
    pub gaps: Vec<GapRange>,
    /// More gaps exist than listed.
    pub gaps_truncated: bool,
    pub records: Vec<R>,
    /// Present when more records may follow: pass it as `cursor`.
    pub next: Option<String>,
}

/// Denied records of one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub host: String,
    pub records: u64,
}

/// One workspace over a time range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSummary {
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub owner: String,
    pub agent_name: String,
    /// Records in the range, by decision.
    pub allowed: u64,
    pub denied: u64,
    pub conflicts: u64,
    pub first_record_at: Option<Timestamp>,
    pub last_record_at: Option<Timestamp>,
    /// Most denied first.
    pub top_denied_hosts: Vec<HostInfo>,
    /// Every loss reported for the workspace, by source and reason (all
    /// time: loss counters carry no time).
    pub losses: Vec<LossInfo>,
    /// Sessions known (all time), their missing sequence numbers, the losses
    /// reported for them, and the missing numbers no report explains.
    pub sessions: u64,
    pub missing: u64,
    pub reported_lost: u64,
    pub unexplained_loss: u64,
    pub last_contact_at: Option<Timestamp>,
    pub last_batch_at: Option<Timestamp>,
}

/// `GET /api/v1/summaries`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryList {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub workspaces: Vec<WorkspaceSummary>,
}

/// The data of a stream's `position` event: how far the stream has looked
/// (resuming there skips only records that did not match).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub cursor: String,
}

/// Stream event names.
pub const EVENT_RECORD: &str = "record";
pub const EVENT_POSITION: &str = "position";

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-12-08T20:00:00Z".parse().unwrap()
    }

    #[test]
    fn times_are_durations_before_now_or_timestamps() {
        let at = |s: &str| parse_time(s, now()).unwrap().to_string();
        assert_eq!(at("15m"), "2025-12-08T19:45:00Z");
        assert_eq!(at("2h"), "2025-12-08T18:00:00Z");
        assert_eq!(at("7d"), "2025-12-01T20:00:00Z");
        assert_eq!(at("1w"), "2025-12-01T20:00:00Z");
        assert_eq!(at("1h30m"), "2025-12-08T18:30:00Z");
        assert_eq!(at("0s"), "2025-12-08T20:00:00Z");
        assert_eq!(at("2025-12-08T21:58:46.5+01:00"), "2025-12-08T20:58:46.5Z");
        for bad in [
            "",
            "15",
            "m",
            "15x",
            "1.5h",
            "yesterday",
            "2025-12-08",
            "-5m",
        ] {
            let e = parse_time(bad, now()).unwrap_err();
            assert!(e.contains("neither a duration"), "{bad:?}: {e}");
        }
        assert!(parse_time("99999999999w", now()).is_err());
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

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        for id in [0, 1, 255, i64::MAX] {
            let c = RecordCursor(id);
            assert_eq!(c.to_string().parse::<RecordCursor>(), Ok(c));
        }
        for bad in [
            "",
            "r",
            "12",
            "rzz",
            "r-1",
            "r8000000000000000",
            "r00000000000000001",
        ] {
            assert!(bad.parse::<RecordCursor>().is_err(), "{bad:?}");
        }
        for (seq, id) in [(0, 1), (-5, 300), (i32::MAX, i64::MAX)] {
            let c = SessionCursor(SequencePosition {
                sequence_number: seq,
                id,
            });
            assert_eq!(c.to_string().parse::<SessionCursor>(), Ok(c));
        }
        for bad in ["q", "q1", "q1_", "qx_1", "r1_1"] {
            assert!(bad.parse::<SessionCursor>().is_err(), "{bad:?}");
        }
        for c in [
            SessionListCursor {
                last_record_id: Some(42),
                session_id: "a_b-é".into(),
            },
            SessionListCursor {
                last_record_id: None,
                session_id: String::new(),
            },
        ] {
            assert_eq!(c.to_string().parse::<SessionListCursor>(), Ok(c.clone()));
        }
        for bad in ["l", "l1", "lx_00", "l1_zz", "l1_ff"] {
            assert!(bad.parse::<SessionListCursor>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_set_parameters_become_pairs() {
        let p = RecordParams {
            workspace: Some("dev".into()),
            limit: Some("5".into()),
            ..Default::default()
        };
        assert_eq!(p.pairs(), [("workspace", "dev"), ("limit", "5")]);
    }
}
