//! The record chain: a hash chain over every stored record, in commit order,
//! extended once per group commit, that `warden verify` recomputes.
//!
//! # What is hashed
//!
//! Each record's *leaf* is SHA-256 of its canonical encoding ([`RecordView`],
//! version 1): the record as the API shows it (ids, content, the control
//! plane's and the agent's times, the peer), never the storage layout, so
//! the chain survives a change of block format or backend. Names (workspace,
//! owner, agent) are left out: they belong to the registry and may be
//! renamed; the workspace and agent ids are in.
//!
//! ```text
//! record := 0x01 id:i64 workspace:uuid agent:uuid batch:uuid session:opt(str)
//!           seq:i32 event:(0x00 secs:i64 nanos:i32 | 0x01 | 0x02 secs:i64 nanos:i32)
//!           received_ns:i64 agent_secs:i64 agent_nanos:i32 allowed:u8 conflict:u8
//!           method:str url:str url_original_bytes:opt(u64) rule:str process:str
//!           uid:u32 gid:u32 pid:i32 comm:str exe:str policy_digest:opt(str)
//! str    := len:u32 bytes (UTF-8)      opt(x) := 0x00 | 0x01 x
//! ```
//!
//! Integers are big-endian, uuids their 16 bytes.
//!
//! # Links
//!
//! A group commit adds one [`ChainLink`] in the same transaction as its
//! records: the records with ids `first_id..=last_id` (the ids after the
//! previous link's), their count, `records_hash` = SHA-256 of their leaves
//! concatenated in id order, the commit time, and
//!
//! ```text
//! head := SHA-256("warden-chain-v1" 0x00 prev_head seq:i64 kind:u8 first_id:i64
//!                 last_id:i64 records:i64 records_hash committed_ns:i64)
//! ```
//!
//! with 32 zero bytes before link 0 (the genesis link, which seals the
//! records stored before the chain existed). `detail` holds the first 4
//! bytes of each leaf (in id order), so that a mismatch can be pinned to a
//! record: the tags are not trusted (they are derived, and `records_hash`
//! is what the head commits to), only used to say which record changed.
//! When a link's ids are not contiguous (a genesis over a database with
//! purged records, a backend whose ids have holes), the tags are followed by
//! the ranges of ids present, 16 bytes each (first, last).
//!
//! A [`LinkKind::Purge`] link is a retention tombstone: `detail` lists the
//! purged id ranges (16 bytes each), `records` counts them and
//! `records_hash` is SHA-256 of `detail`.

pub mod check;
pub mod leaves;

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use warden_proto::domain::{Decision, EventTime};

use crate::model::{RecordId, StoredRecord};

/// The version byte that starts every canonical record encoding.
pub const RECORD_ENCODING_VERSION: u8 = 1;
/// Bytes of each leaf kept in a link's `detail` to localise a mismatch.
pub const TAG_BYTES: usize = 4;
/// The head before the genesis link.
pub const ZERO_HEAD: [u8; 32] = [0; 32];

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// What a link covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// Records committed together (or, for link 0, the records stored before
    /// the chain existed).
    Records,
    /// Records removed by retention (a tombstone).
    Purge,
}

impl LinkKind {
    /// As stored and hashed.
    pub fn code(self) -> u8 {
        match self {
            LinkKind::Records => 0,
            LinkKind::Purge => 1,
        }
    }

    /// From the stored code.
    pub fn from_code(code: i64) -> Option<LinkKind> {
        match code {
            0 => Some(LinkKind::Records),
            1 => Some(LinkKind::Purge),
            _ => None,
        }
    }
}

/// One link of the chain, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainLink {
    /// Position in the chain, from 0 (the genesis link).
    pub seq: i64,
    /// What it covers.
    pub kind: LinkKind,
    /// The first record id it covers.
    pub first_id: RecordId,
    /// The last record id it covers (`first_id - 1` when it covers none).
    pub last_id: RecordId,
    /// How many records it covers.
    pub records: i64,
    /// SHA-256 of the leaves (or, for a purge, of `detail`).
    pub records_hash: Hash,
    /// Tags and id ranges, or purged ranges (see the module doc).
    pub detail: Vec<u8>,
    /// When the link was committed, Unix nanoseconds.
    pub committed_ns: i64,
    /// The chain's head after this link.
    pub head: Hash,
}

impl ChainLink {
    /// The head this link must have after `prev_head`.
    pub fn compute_head(&self, prev_head: &Hash) -> Hash {
        let mut h = Sha256::new();
        h.update(b"warden-chain-v1\0");
        h.update(prev_head);
        h.update(self.seq.to_be_bytes());
        h.update([self.kind.code()]);
        h.update(self.first_id.to_be_bytes());
        h.update(self.last_id.to_be_bytes());
        h.update(self.records.to_be_bytes());
        h.update(self.records_hash);
        h.update(self.committed_ns.to_be_bytes());
        h.finalize().into()
    }

    /// The record tags of a records link (one per record, in id order).
    pub fn tags(&self) -> &[u8] {
        let n = usize::try_from(self.records).unwrap_or(0) * TAG_BYTES;
        &self.detail[..n.min(self.detail.len())]
    }

    /// The ids a records link covers, as ranges: the whole span when
    /// contiguous, else the ranges listed after the tags. For a purge link,
    /// the purged ranges.
    pub fn id_ranges(&self) -> Vec<(RecordId, RecordId)> {
        let listed = match self.kind {
            LinkKind::Records => &self.detail[self.tags().len()..],
            LinkKind::Purge => &self.detail[..],
        };
        if self.kind == LinkKind::Records && listed.is_empty() {
            return if self.records > 0 {
                vec![(self.first_id, self.last_id)]
            } else {
                Vec::new()
            };
        }
        decode_ranges(listed)
    }
}

/// `(first, last)` pairs, 16 bytes each, big-endian.
pub fn encode_ranges(ranges: &[(RecordId, RecordId)], out: &mut Vec<u8>) {
    for (first, last) in ranges {
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&last.to_be_bytes());
    }
}

fn decode_ranges(bytes: &[u8]) -> Vec<(RecordId, RecordId)> {
    bytes
        .chunks_exact(16)
        .map(|c| {
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&c[..8]);
            b.copy_from_slice(&c[8..]);
            (i64::from_be_bytes(a), i64::from_be_bytes(b))
        })
        .collect()
}

/// A record as the chain sees it: what [`encode`](RecordView::encode) writes,
/// borrowed from wherever the record is (a block being committed, a stored
/// record, an export).
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    /// Record id.
    pub id: RecordId,
    /// Workspace id.
    pub workspace_id: Uuid,
    /// Agent id.
    pub agent_id: Uuid,
    /// Batch id.
    pub batch_id: Uuid,
    /// Session id.
    pub session_id: Option<&'a str>,
    /// Sequence number.
    pub sequence_number: i32,
    /// Event time.
    pub event_time: EventTime,
    /// The control plane's receive time, Unix nanoseconds.
    pub received_ns: i64,
    /// The agent's receive time.
    pub agent_received_at: Timestamp,
    /// Decision.
    pub decision: Decision,
    /// Conflict flag.
    pub conflict: bool,
    /// Method.
    pub method: &'a str,
    /// URL as stored.
    pub url: &'a str,
    /// URL length as sent, when cut.
    pub url_original_bytes: Option<u64>,
    /// Matched rule.
    pub matched_rule: &'a str,
    /// Confined process name.
    pub process: &'a str,
    /// Socket peer uid.
    pub uid: u32,
    /// Socket peer gid.
    pub gid: u32,
    /// Socket peer pid.
    pub pid: i32,
    /// Socket peer comm.
    pub comm: &'a str,
    /// Socket peer exe.
    pub exe: &'a str,
    /// Policy digest.
    pub policy_digest: Option<&'a str>,
}

impl<'a> RecordView<'a> {
    /// The view of a stored record.
    pub fn of(r: &'a StoredRecord) -> RecordView<'a> {
        RecordView {
            id: r.id,
            workspace_id: r.workspace_id,
            agent_id: r.agent_id,
            batch_id: r.batch_id,
            session_id: r.session_id.as_deref(),
            sequence_number: r.sequence_number,
            event_time: r.event_time,
            received_ns: crate::convert::nanos(r.received_at),
            agent_received_at: r.agent_received_at,
            decision: r.decision,
            conflict: r.conflict,
            method: &r.method,
            url: &r.url,
            url_original_bytes: r.url_original_bytes,
            matched_rule: &r.matched_rule,
            process: &r.process,
            uid: r.peer.uid,
            gid: r.peer.gid,
            pid: r.peer.pid,
            comm: &r.peer.comm,
            exe: &r.peer.exe,
            policy_digest: r.policy_digest.as_deref(),
        }
    }

    /// The same view with another id (to test whether a record's content
    /// sits under another id: a reordering).
    pub fn with_id(mut self, id: RecordId) -> RecordView<'a> {
        self.id = id;
        self
    }

    /// Appends the canonical encoding (see the module doc) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(RECORD_ENCODING_VERSION);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(self.workspace_id.as_bytes());
        out.extend_from_slice(self.agent_id.as_bytes());
        out.extend_from_slice(self.batch_id.as_bytes());
        put_opt_str(out, self.session_id);
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        match self.event_time {
            EventTime::Known(t) => {
                out.push(0);
                out.extend_from_slice(&t.as_second().to_be_bytes());
                out.extend_from_slice(&t.subsec_nanosecond().to_be_bytes());
            }
            EventTime::Missing => out.push(1),
            EventTime::OutOfRange { seconds, nanos } => {
                out.push(2);
                out.extend_from_slice(&seconds.to_be_bytes());
                out.extend_from_slice(&nanos.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.received_ns.to_be_bytes());
        out.extend_from_slice(&self.agent_received_at.as_second().to_be_bytes());
        out.extend_from_slice(&self.agent_received_at.subsec_nanosecond().to_be_bytes());
        out.push(u8::from(self.decision.is_allowed()));
        out.push(u8::from(self.conflict));
        put_str(out, self.method);
        put_str(out, self.url);
        match self.url_original_bytes {
            None => out.push(0),
            Some(n) => {
                out.push(1);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        put_str(out, self.matched_rule);
        put_str(out, self.process);
        out.extend_from_slice(&self.uid.to_be_bytes());
        out.extend_from_slice(&self.gid.to_be_bytes());
        out.extend_from_slice(&self.pid.to_be_bytes());
        put_str(out, self.comm);
        put_str(out, self.exe);
        put_opt_str(out, self.policy_digest);
    }

    /// SHA-256 of the canonical encoding; `buf` is scratch space.
    pub fn leaf(&self, buf: &mut Vec<u8>) -> Hash {
        buf.clear();
        self.encode(buf);
        Sha256::digest(buf).into()
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // A stored string is far below 4 GiB (URLs are bounded); saturate anyway.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// The leaves of one link being built, in id order.
#[derive(Default)]
pub struct LinkBuilder {
    hasher: Sha256,
    tags: Vec<u8>,
    ranges: Vec<(RecordId, RecordId)>,
    records: i64,
    buf: Vec<u8>,
}

impl std::fmt::Debug for LinkBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkBuilder")
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl LinkBuilder {
    /// Adds the next record (ids must grow).
    pub fn push(&mut self, record: &RecordView<'_>) {
        let leaf = record.leaf(&mut self.buf);
        self.push_leaf(record.id, &leaf);
    }

    /// Adds the next record's leaf (ids must grow).
    pub fn push_leaf(&mut self, id: RecordId, leaf: &Hash) {
        self.hasher.update(leaf);
        self.tags.extend_from_slice(&leaf[..TAG_BYTES]);
        self.records += 1;
        match self.ranges.last_mut() {
            Some((_, last)) if *last + 1 == id => *last = id,
            _ => self.ranges.push((id, id)),
        }
    }

    /// How many records were added.
    pub fn len(&self) -> i64 {
        self.records
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The link after `prev` covering ids up to `last_id` (at least the
    /// last record added), committed at `at`.
    pub fn finish(self, prev: &ChainHead, last_id: RecordId, at: Timestamp) -> ChainLink {
        let first_id = prev.last_id + 1;
        let mut detail = self.tags;
        let contiguous = self.ranges.len() == 1 && self.ranges[0] == (first_id, last_id);
        if !contiguous && !self.ranges.is_empty() {
            encode_ranges(&self.ranges, &mut detail);
        }
        let mut link = ChainLink {
            seq: prev.next_seq,
            kind: LinkKind::Records,
            first_id,
            last_id,
            records: self.records,
            records_hash: self.hasher.finalize().into(),
            detail,
            committed_ns: crate::convert::nanos(at),
            head: ZERO_HEAD,
        };
        link.head = link.compute_head(&prev.head);
        link
    }
}

/// A retention tombstone after `prev`: the purged id ranges.
pub fn purge_link(prev: &ChainHead, ranges: &[(RecordId, RecordId)], at: Timestamp) -> ChainLink {
    let mut detail = Vec::with_capacity(ranges.len() * 16);
    encode_ranges(ranges, &mut detail);
    let records = ranges.iter().map(|(f, l)| l - f + 1).sum();
    let mut link = ChainLink {
        seq: prev.next_seq,
        kind: LinkKind::Purge,
        first_id: ranges.iter().map(|r| r.0).min().unwrap_or(0),
        last_id: ranges.iter().map(|r| r.1).max().unwrap_or(-1),
        records,
        records_hash: Sha256::digest(&detail).into(),
        detail,
        committed_ns: crate::convert::nanos(at),
        head: ZERO_HEAD,
    };
    link.head = link.compute_head(&prev.head);
    link
}

/// Where the chain stands: what the next link extends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// The next link's position.
    pub next_seq: i64,
    /// The last record id covered by a records link (0 before any).
    pub last_id: RecordId,
    /// The head hash.
    pub head: Hash,
}

impl ChainHead {
    /// Before the genesis link.
    pub const EMPTY: ChainHead = ChainHead {
        next_seq: 0,
        last_id: 0,
        head: ZERO_HEAD,
    };

    /// After `link` (whose predecessor left `self`).
    pub fn after(&self, link: &ChainLink) -> ChainHead {
        ChainHead {
            next_seq: link.seq + 1,
            last_id: match link.kind {
                LinkKind::Records => link.last_id.max(self.last_id),
                LinkKind::Purge => self.last_id,
            },
            head: link.head,
        }
    }
}

/// A signed statement of where the chain stood, as stored (signing and
/// checking signatures is the caller's business: the store keeps bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its position among stored checkpoints (0 before it is stored).
    pub id: i64,
    /// The link it covers (the chain up to and including it).
    pub link_seq: i64,
    /// The last record id covered by that link or an earlier one.
    pub last_id: RecordId,
    /// The head after that link.
    pub head: Hash,
    /// When it was signed, Unix nanoseconds.
    pub signed_ns: i64,
    /// The signing key's id.
    pub key_id: String,
    /// The signing key's public half (Ed25519, 32 bytes).
    pub public_key: Vec<u8>,
    /// The signature over the checkpoint's signed form.
    pub signature: Vec<u8>,
}

/// A [`RecordView`] built from the parts a block keeps (for the backends).
#[allow(clippy::too_many_arguments)]
pub(crate) fn block_view<'a>(
    id: RecordId,
    (workspace_id, agent_id): (Uuid, Uuid),
    session_id: Option<&'a str>,
    record: &'a crate::block::BlockRecord<'_>,
    batch: &'a crate::block::BatchInfo<'_>,
) -> RecordView<'a> {
    RecordView {
        id,
        workspace_id,
        agent_id,
        batch_id: batch.batch_id,
        session_id,
        sequence_number: record.sequence_number,
        event_time: record.event_time,
        received_ns: batch.received_ns,
        agent_received_at: batch.agent_received_at,
        decision: record.decision,
        conflict: record.conflict,
        method: &record.method,
        url: &record.url,
        url_original_bytes: record.url_original_bytes,
        matched_rule: &record.matched_rule,
        process: &batch.process,
        uid: batch.peer.uid,
        gid: batch.peer.gid,
        pid: batch.peer.pid,
        comm: &batch.peer.comm,
        exe: &batch.peer.exe,
        policy_digest: batch.policy_digest.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_proto::domain::Peer;

    fn record(id: i64, url: &str) -> StoredRecord {
        StoredRecord {
            id,
            workspace_id: Uuid::from_u128(1),
            workspace_name: "w".into(),
            workspace_owner: "o".into(),
            agent_id: Uuid::from_u128(2),
            agent_name: "main".into(),
            batch_id: Uuid::from_u128(3),
            session_id: Some("s".into()),
            sequence_number: 7,
            event_time: EventTime::Known(Timestamp::new(1_700_000_000, 5).unwrap()),
            received_at: Timestamp::new(1_700_000_001, 0).unwrap(),
            agent_received_at: Timestamp::new(1_700_000_000, 9).unwrap(),
            agent_time_suspect: false,
            committed_at: Timestamp::new(1_700_000_001, 0).unwrap(),
            decision: Decision::Deny,
            method: "GET".into(),
            url: url.into(),
            url_original_bytes: None,
            matched_rule: String::new(),
            process: "curl".into(),
            peer: Peer {
                uid: 1,
                gid: 2,
                pid: 3,
                comm: "curl".into(),
                exe: "/usr/bin/curl".into(),
            },
            policy_digest: None,
            conflict: false,
        }
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        // Built by hand from the module doc: a change here changes every
        // stored leaf, and needs a new encoding version.
        let mut want = vec![1u8];
        want.extend(1i64.to_be_bytes());
        want.extend(Uuid::from_u128(1).as_bytes());
        want.extend(Uuid::from_u128(2).as_bytes());
        want.extend(Uuid::from_u128(3).as_bytes());
        want.extend([1, 0, 0, 0, 1, b's']);
        want.extend(7i32.to_be_bytes());
        want.push(0);
        want.extend(1_700_000_000i64.to_be_bytes());
        want.extend(5i32.to_be_bytes());
        want.extend(1_700_000_001_000_000_000i64.to_be_bytes());
        want.extend(1_700_000_000i64.to_be_bytes());
        want.extend(9i32.to_be_bytes());
        want.extend([0, 0]);
        want.extend([0, 0, 0, 3, b'G', b'E', b'T']);
        want.extend([0, 0, 0, 10]);
        want.extend(b"https://a/");
        want.push(0);
        want.extend([0, 0, 0, 0]);
        want.extend([0, 0, 0, 4]);
        want.extend(b"curl");
        want.extend(1u32.to_be_bytes());
        want.extend(2u32.to_be_bytes());
        want.extend(3i32.to_be_bytes());
        want.extend([0, 0, 0, 4]);
        want.extend(b"curl");
        want.extend([0, 0, 0, 13]);
        want.extend(b"/usr/bin/curl");
        want.push(0);
        let record = record(1, "https://a/");
        let mut got = Vec::new();
        RecordView::of(&record).encode(&mut got);
        assert_eq!(got, want);
        let leaf = RecordView::of(&record).leaf(&mut Vec::new());
        assert_eq!(leaf, <[u8; 32]>::from(Sha256::digest(&want)));
        assert_eq!(
            hex(&leaf),
            "74489688169cd7d5671b67d05f723eb86021b1000dede06deed0dd7abc996d0a"
        );
    }

    #[test]
    fn names_do_not_count_but_content_and_ids_do() {
        let mut buf = Vec::new();
        let a = record(1, "https://a/");
        let mut renamed = a.clone();
        renamed.workspace_name = "other".into();
        renamed.agent_time_suspect = true;
        let leaf = |r: &StoredRecord, buf: &mut Vec<u8>| RecordView::of(r).leaf(buf);
        assert_eq!(leaf(&a, &mut buf), leaf(&renamed, &mut buf));
        assert_ne!(leaf(&a, &mut buf), leaf(&record(1, "https://b/"), &mut buf));
        assert_ne!(leaf(&a, &mut buf), leaf(&record(2, "https://a/"), &mut buf));
        // Field boundaries are unambiguous.
        let mut b = a.clone();
        b.method = "GE".into();
        b.url = "Thttps://a/".into();
        assert_ne!(leaf(&a, &mut buf), leaf(&b, &mut buf));
    }

    #[test]
    fn links_chain_and_record_their_ranges() {
        let mut builder = LinkBuilder::default();
        for id in [1, 2, 3] {
            builder.push(&RecordView::of(&record(id, "https://a/")));
        }
        let at = Timestamp::new(1_700_000_002, 0).unwrap();
        let link = builder.finish(&ChainHead::EMPTY, 3, at);
        assert_eq!((link.first_id, link.last_id, link.records), (1, 3, 3));
        assert_eq!(link.detail.len(), 3 * TAG_BYTES);
        assert_eq!(link.id_ranges(), [(1, 3)]);
        assert_eq!(link.compute_head(&ZERO_HEAD), link.head);
        let head = ChainHead::EMPTY.after(&link);

        let mut builder = LinkBuilder::default();
        for id in [5, 7] {
            builder.push(&RecordView::of(&record(id, "https://a/")));
        }
        let gappy = builder.finish(&head, 8, at);
        assert_eq!(gappy.seq, 1);
        assert_eq!(gappy.id_ranges(), [(5, 5), (7, 7)]);
        assert_eq!(gappy.compute_head(&link.head), gappy.head);
        assert_ne!(gappy.compute_head(&ZERO_HEAD), gappy.head);

        let purge = purge_link(&head.after(&gappy), &[(1, 2), (5, 5)], at);
        assert_eq!((purge.seq, purge.records), (2, 3));
        assert_eq!(purge.id_ranges(), [(1, 2), (5, 5)]);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
