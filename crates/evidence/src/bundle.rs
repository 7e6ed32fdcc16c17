//! Export bundles: records, the chain links that commit them, the
//! checkpoints that sign the links, the session verdicts and the admin event
//! log, in one file that verifies offline.
//!
//! JSON lines: a header (`format`, the filter, the signing keys), then
//! each link (`{"link": ...}`) followed by its records in id order: those
//! the filter selects in full (`{"record": ...}`), the others by their leaf
//! hash alone (`{"leaf": [id, hex]}`), so the link's hash can be recomputed
//! without disclosing them. Links with no selected record carry no records
//! and no tags (their heads still chain). Then every checkpoint
//! (`{"checkpoint": ...}`), the session verdicts of the selected workspace
//! (every workspace's without one; `{"verdict": ...}`), and the whole admin
//! event log (`{"admin_event": ...}`: it is one hash chain, and its
//! `key.rotate` events are what vouches for a key introduced by rotation).
//!
//! Format `warden-bundle-v1` (before verdicts and admin events were
//! carried) is still read; its verification says they were not included.

use std::io::{BufRead, Write};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use warden_proto::domain::{Decision, EventTime, Peer};
use warden_store::chain::check::Checker;
use warden_store::chain::{ChainHead, ChainLink, Checkpoint, Hash, LinkKind, RecordView};
use warden_store::verdict::SessionVerdict;
use warden_store::{AdminEvent, Order, RecordQuery, Store, StoredRecord};

use crate::EvidenceError;
use crate::checkpoint::CheckpointFile;
use crate::json::{AdminEventJson, VerdictJson};
use crate::key::PublicKey;

/// The header's `format`.
pub const FORMAT: &str = "warden-bundle-v2";
/// The format of bundles without session verdicts and admin events (still
/// read).
pub const FORMAT_V1: &str = "warden-bundle-v1";

/// Which records a bundle holds in full.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Filter {
    /// Effective time (event time, else receive time) at or after this.
    pub since: Option<Timestamp>,
    /// Effective time before this.
    pub until: Option<Timestamp>,
    /// Only this workspace.
    pub workspace_id: Option<Uuid>,
}

impl Filter {
    fn selects(&self, r: &StoredRecord) -> bool {
        let t = r.event_time.known().unwrap_or(r.received_at);
        self.since.is_none_or(|s| t >= s)
            && self.until.is_none_or(|u| t < u)
            && self.workspace_id.is_none_or(|w| w == r.workspace_id)
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    created: Timestamp,
    filter: Filter,
    /// Keys that signed the checkpoints, `ed25519:<hex>`.
    public_keys: Vec<String>,
}

/// A chain link as JSON (hashes and detail in hex): in bundles and in the
/// API's `/api/v1/chain/links`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkJson {
    seq: i64,
    kind: u8,
    first_id: i64,
    last_id: i64,
    records: i64,
    records_hash: String,
    detail: String,
    committed_ns: i64,
    head: String,
}

/// A record in full: every field the chain's encoding covers, plus names
/// (in bundles and in the API's `/api/v1/chain/records`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordJson {
    id: i64,
    workspace_id: Uuid,
    workspace_name: String,
    workspace_owner: String,
    agent_id: Uuid,
    agent_name: String,
    batch_id: Uuid,
    session_id: Option<String>,
    sequence_number: i32,
    /// `known`, `missing` or `out_of_range`.
    event_kind: String,
    event_seconds: i64,
    event_nanos: i32,
    received_at: Timestamp,
    agent_received_at: Timestamp,
    allowed: bool,
    conflict: bool,
    method: String,
    url: String,
    url_original_bytes: Option<u64>,
    matched_rule: String,
    process: String,
    peer_uid: u32,
    peer_gid: u32,
    peer_pid: i32,
    peer_comm: String,
    peer_exe: String,
    policy_digest: Option<String>,
}

impl RecordJson {
    /// The record's id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The JSON form of a stored record.
    pub fn of(r: StoredRecord) -> RecordJson {
        let (event_kind, event_seconds, event_nanos) = match r.event_time {
            EventTime::Known(t) => ("known", t.as_second(), t.subsec_nanosecond()),
            EventTime::Missing => ("missing", 0, 0),
            EventTime::OutOfRange { seconds, nanos } => ("out_of_range", seconds, nanos),
        };
        RecordJson {
            id: r.id,
            workspace_id: r.workspace_id,
            workspace_name: r.workspace_name,
            workspace_owner: r.workspace_owner,
            agent_id: r.agent_id,
            agent_name: r.agent_name,
            batch_id: r.batch_id,
            session_id: r.session_id,
            sequence_number: r.sequence_number,
            event_kind: event_kind.into(),
            event_seconds,
            event_nanos,
            received_at: r.received_at,
            agent_received_at: r.agent_received_at,
            allowed: r.decision.is_allowed(),
            conflict: r.conflict,
            method: r.method,
            url: r.url,
            url_original_bytes: r.url_original_bytes,
            matched_rule: r.matched_rule,
            process: r.process,
            peer_uid: r.peer.uid,
            peer_gid: r.peer.gid,
            peer_pid: r.peer.pid,
            peer_comm: r.peer.comm,
            peer_exe: r.peer.exe,
            policy_digest: r.policy_digest,
        }
    }

    /// The record again, as the chain's encoding sees it.
    pub fn into_record(self) -> Result<StoredRecord, EvidenceError> {
        let event_time = match self.event_kind.as_str() {
            "known" => EventTime::Known(
                Timestamp::new(self.event_seconds, self.event_nanos)
                    .map_err(|_| malformed("an event time out of range marked known"))?,
            ),
            "missing" => EventTime::Missing,
            "out_of_range" => EventTime::OutOfRange {
                seconds: self.event_seconds,
                nanos: self.event_nanos,
            },
            other => return Err(malformed(&format!("unknown event kind {other:?}"))),
        };
        Ok(StoredRecord {
            id: self.id,
            workspace_id: self.workspace_id,
            workspace_name: self.workspace_name,
            workspace_owner: self.workspace_owner,
            agent_id: self.agent_id,
            agent_name: self.agent_name,
            batch_id: self.batch_id,
            session_id: self.session_id,
            sequence_number: self.sequence_number,
            event_time,
            received_at: self.received_at,
            agent_received_at: self.agent_received_at,
            agent_time_suspect: false,
            committed_at: self.received_at,
            decision: Decision::from_allowed(self.allowed),
            method: self.method,
            url: self.url,
            url_original_bytes: self.url_original_bytes,
            matched_rule: self.matched_rule,
            process: self.process,
            peer: Peer {
                uid: self.peer_uid,
                gid: self.peer_gid,
                pid: self.peer_pid,
                comm: self.peer_comm,
                exe: self.peer_exe,
            },
            policy_digest: self.policy_digest,
            conflict: self.conflict,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Link(LinkJson),
    Record(Box<RecordJson>),
    Leaf(i64, String),
    Checkpoint(CheckpointFile),
    Verdict(Box<VerdictJson>),
    AdminEvent(Box<AdminEventJson>),
}

fn malformed(what: &str) -> EvidenceError {
    EvidenceError::Malformed(format!("bundle: {what}"))
}

impl LinkJson {
    /// The link's position.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// The JSON form of a link, with its detail.
    pub fn of(l: &ChainLink) -> LinkJson {
        link_json(l, true)
    }

    /// The link again.
    pub fn into_link(self) -> Result<ChainLink, EvidenceError> {
        Ok(ChainLink {
            seq: self.seq,
            kind: LinkKind::from_code(i64::from(self.kind))
                .ok_or_else(|| malformed("unknown link kind"))?,
            first_id: self.first_id,
            last_id: self.last_id,
            records: self.records,
            records_hash: hash_of(&self.records_hash)?,
            detail: hex::decode(&self.detail).map_err(|_| malformed("link detail"))?,
            committed_ns: self.committed_ns,
            head: hash_of(&self.head)?,
        })
    }
}

fn link_json(l: &ChainLink, with_detail: bool) -> LinkJson {
    LinkJson {
        seq: l.seq,
        kind: l.kind.code(),
        first_id: l.first_id,
        last_id: l.last_id,
        records: l.records,
        records_hash: hex::encode(l.records_hash),
        detail: if with_detail || l.kind == LinkKind::Purge {
            hex::encode(&l.detail)
        } else {
            String::new()
        },
        committed_ns: l.committed_ns,
        head: hex::encode(l.head),
    }
}

fn hash_of(s: &str) -> Result<Hash, EvidenceError> {
    hex::decode(s)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| malformed("a hash is 64 hex digits"))
}

fn write_line(out: &mut impl Write, line: &impl Serialize) -> Result<(), EvidenceError> {
    serde_json::to_writer(&mut *out, line)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|cause| EvidenceError::Io {
            context: "writing the bundle".into(),
            cause,
        })
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, Default)]
pub struct Exported {
    /// Records in full.
    pub records: u64,
    /// Records by leaf only.
    pub leaves: u64,
    /// Links.
    pub links: u64,
    /// Checkpoints.
    pub checkpoints: u64,
    /// Session verdicts.
    pub verdicts: u64,
    /// Admin events.
    pub admin_events: u64,
}

/// Writes a bundle of `store`'s records `filter` selects.
pub async fn export(
    store: &dyn Store,
    filter: &Filter,
    out: &mut impl Write,
) -> Result<Exported, EvidenceError> {
    // Checkpoints and verdicts before the links, as `verify_store` reads
    // them: each names a link, and one made while the links are read must
    // find its link in the bundle, not look like a truncated chain. The
    // admin events after the checkpoints, so that the `key.rotate` event
    // introducing any key that signed one is there.
    let checkpoints = crate::verify::all_checkpoints(store).await?;
    let verdicts = crate::verify::all_verdicts(store).await?;
    let events = crate::admin_events::all(store).await?;
    let mut links = Vec::new();
    loop {
        let after = links.last().map_or(-1, |l: &ChainLink| l.seq);
        let page = store.chain_links(after, 10_000).await?;
        if page.is_empty() {
            break;
        }
        links.extend(page);
    }
    let mut keys: Vec<String> = Vec::new();
    let signers = checkpoints
        .iter()
        .map(|c| &c.public_key)
        .chain(events.iter().map(|e| &e.event.public_key));
    for public_key in signers {
        if let Ok(k) = PublicKey::from_bytes(public_key) {
            let k = k.to_file().trim().to_owned();
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    write_line(
        out,
        &Header {
            format: FORMAT.into(),
            created: Timestamp::now(),
            filter: filter.clone(),
            public_keys: keys,
        },
    )?;
    let mut done = Exported::default();
    let mut buf = Vec::new();
    for link in &links {
        done.links += 1;
        if link.kind != LinkKind::Records || link.records == 0 {
            write_line(out, &Line::Link(link_json(link, true)))?;
            continue;
        }
        let records = store
            .records(RecordQuery {
                after_id: Some(link.first_id - 1),
                before_id: Some(link.last_id + 1),
                order: Order::OldestFirst,
                limit: u32::try_from(link.records).unwrap_or(u32::MAX),
                ..RecordQuery::default()
            })
            .await?;
        let any = records.iter().any(|r| filter.selects(r));
        write_line(out, &Line::Link(link_json(link, any)))?;
        if !any {
            continue;
        }
        for r in records {
            if filter.selects(&r) {
                done.records += 1;
                write_line(out, &Line::Record(Box::new(RecordJson::of(r))))?;
            } else {
                done.leaves += 1;
                let leaf = RecordView::of(&r).leaf(&mut buf);
                write_line(out, &Line::Leaf(r.id, hex::encode(leaf)))?;
            }
        }
    }
    for c in &checkpoints {
        done.checkpoints += 1;
        write_line(out, &Line::Checkpoint(CheckpointFile::of(c)))?;
    }
    for v in &verdicts {
        if filter.workspace_id.is_none_or(|w| w == v.workspace_id) {
            done.verdicts += 1;
            write_line(out, &Line::Verdict(Box::new(VerdictJson::of(v))))?;
        }
    }
    for e in &events {
        done.admin_events += 1;
        write_line(out, &Line::AdminEvent(Box::new(AdminEventJson::of(e))))?;
    }
    Ok(done)
}

/// What a bundle holds, read back.
#[derive(Debug)]
pub struct Bundle {
    /// The links, with the records fed.
    pub checker: Checker,
    /// Every checkpoint.
    pub checkpoints: Vec<Checkpoint>,
    /// The session verdicts and the admin event log; `None` for a bundle
    /// made before they were carried (`warden-bundle-v1`).
    pub evidence: Option<(Vec<SessionVerdict>, Vec<AdminEvent>)>,
}

/// Reads a bundle: a checker (links and records fed), its checkpoints, and
/// its session verdicts and admin events.
pub fn read(input: impl BufRead) -> Result<Bundle, EvidenceError> {
    let mut lines = input.lines();
    let io = |cause| EvidenceError::Io {
        context: "reading the bundle".into(),
        cause,
    };
    let header: Header = match lines.next() {
        Some(line) => serde_json::from_str(&line.map_err(io)?)
            .map_err(|e| malformed(&format!("bad header: {e}")))?,
        None => return Err(malformed("empty file")),
    };
    if header.format != FORMAT && header.format != FORMAT_V1 {
        return Err(malformed(&format!(
            "format {:?}, expected {FORMAT:?} (or {FORMAT_V1:?})",
            header.format
        )));
    }
    let mut links = Vec::new();
    let mut entries: Vec<Line> = Vec::new();
    let mut checkpoints = Vec::new();
    let mut verdicts = Vec::new();
    let mut events = Vec::new();
    for (n, line) in lines.enumerate() {
        let line = line.map_err(io)?;
        let parsed: Line =
            serde_json::from_str(&line).map_err(|e| malformed(&format!("line {}: {e}", n + 2)))?;
        match parsed {
            Line::Link(l) => links.push(l.into_link()?),
            Line::Checkpoint(c) => checkpoints.push(c.to_checkpoint()?),
            Line::Verdict(v) => verdicts.push(v.into_verdict()?),
            Line::AdminEvent(e) => events.push(e.into_event()?),
            entry => entries.push(entry),
        }
    }
    let mut checker = Checker::new(links, ChainHead::EMPTY, true);
    for entry in entries {
        match entry {
            Line::Record(r) => checker.record(r.into_record()?),
            Line::Leaf(id, hash) => checker.leaf(id, hash_of(&hash)?),
            _ => {}
        }
    }
    Ok(Bundle {
        checker,
        checkpoints,
        evidence: (header.format != FORMAT_V1).then_some((verdicts, events)),
    })
}
