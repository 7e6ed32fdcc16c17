//! Recomputing the chain: the links' heads from each other, each link's
//! records from their content, and, where they do not match, which record
//! is wrong and how (modified, missing, reordered, not covered).
//!
//! Records are fed in id order ([`Checker::record`], or
//! [`Checker::leaf`] for a record an export left out but whose leaf it
//! kept), a link's worth at a time in memory. Signatures are not checked
//! here (see the `warden-evidence` crate): this is the integrity half.

use std::fmt;

use sha2::{Digest, Sha256};

use super::{ChainHead, ChainLink, Hash, LinkKind, RecordView, TAG_BYTES};
use crate::model::{RecordId, StoredRecord};

/// Mismatched records of one link compared pairwise to find reorderings;
/// beyond this many, each is reported as modified.
const MAX_REORDER_CANDIDATES: usize = 64;

/// Something that does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A record's content is not what was committed.
    Modified {
        /// The record.
        id: RecordId,
        /// Its session, as stored now.
        session: Option<String>,
        /// The link that committed it.
        link: i64,
    },
    /// A committed record is gone (and no retention tombstone says so).
    Missing {
        /// The record.
        id: RecordId,
        /// The link that committed it.
        link: i64,
    },
    /// A record holds the content committed under another id.
    Reordered {
        /// The record.
        id: RecordId,
        /// Its session, as stored now.
        session: Option<String>,
        /// The id its content was committed under.
        committed_as: RecordId,
        /// The link.
        link: i64,
    },
    /// A record no link committed (inserted behind the store's back).
    NotCommitted {
        /// The record.
        id: RecordId,
        /// Its session.
        session: Option<String>,
    },
    /// A link's records do not hash to it although each matches its tag
    /// (the tags were rewritten too).
    LinkRecordsAltered {
        /// The link.
        link: i64,
        /// Its first record id.
        first_id: RecordId,
        /// Its last record id.
        last_id: RecordId,
    },
    /// A link's head is not the hash of its fields and the previous head.
    LinkAltered {
        /// The link.
        link: i64,
    },
    /// Links are missing between two stored ones.
    LinksMissing {
        /// The first missing position.
        from: i64,
        /// The last missing position.
        to: i64,
    },
    /// A link does not start where the previous one ended.
    LinkRangeBroken {
        /// The link.
        link: i64,
        /// Where it starts.
        first_id: RecordId,
        /// Where it should.
        expected: RecordId,
    },
}

impl Problem {
    /// The record the problem is about, when it is about one.
    pub fn record_id(&self) -> Option<RecordId> {
        match self {
            Problem::Modified { id, .. }
            | Problem::Missing { id, .. }
            | Problem::Reordered { id, .. }
            | Problem::NotCommitted { id, .. } => Some(*id),
            _ => None,
        }
    }
}

fn session(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Modified {
                id,
                session: s,
                link,
            } => write!(
                f,
                "record {id} (session {}): modified: its content is not what link {link} committed",
                session(s)
            ),
            Problem::Missing { id, link } => write!(
                f,
                "record {id}: missing: committed by link {link}, gone without a retention tombstone"
            ),
            Problem::Reordered {
                id,
                session: s,
                committed_as,
                link,
            } => write!(
                f,
                "record {id} (session {}): reordered: it holds the content link {link} committed as record {committed_as}",
                session(s)
            ),
            Problem::NotCommitted { id, session: s } => write!(
                f,
                "record {id} (session {}): not committed by any link (inserted outside the store)",
                session(s)
            ),
            Problem::LinkRecordsAltered {
                link,
                first_id,
                last_id,
            } => write!(
                f,
                "records {first_id}..={last_id}: altered: they do not hash to link {link} (its record tags were rewritten to match)"
            ),
            Problem::LinkAltered { link } => write!(
                f,
                "chain link {link}: altered: its head is not the hash of its fields and the previous head"
            ),
            Problem::LinksMissing { from, to } => {
                write!(f, "chain links {from}..={to}: missing")
            }
            Problem::LinkRangeBroken {
                link,
                first_id,
                expected,
            } => write!(
                f,
                "chain link {link}: starts at record {first_id}, not {expected} where the previous one ended"
            ),
        }
    }
}

/// A record as fed to the checker.
struct Entry {
    id: RecordId,
    leaf: Hash,
    /// `None` for a record an export left out (its leaf only).
    record: Option<StoredRecord>,
}

/// What the checker went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Links checked.
    pub links: u64,
    /// Records whose content was hashed.
    pub records: u64,
    /// Records only known by their leaf (left out of an export).
    pub leaves: u64,
    /// Records removed by retention, per the tombstones.
    pub purged: u64,
}

/// Checks a chain and its records.
pub struct Checker {
    links: Vec<ChainLink>,
    /// Index of the records link the buffered entries belong to.
    current: usize,
    entries: Vec<Entry>,
    /// Purged id ranges (from the tombstones), sorted.
    purged: Vec<(RecordId, RecordId)>,
    /// Whether links without any fed record are fine (an export that left
    /// them out) rather than all their records missing.
    partial: bool,
    problems: Vec<Problem>,
    counts: Counts,
    buf: Vec<u8>,
    /// The head after the last link.
    end: ChainHead,
}

impl fmt::Debug for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checker")
            .field("links", &self.links.len())
            .field("problems", &self.problems.len())
            .finish_non_exhaustive()
    }
}

impl Checker {
    /// Checks the links' heads (from `base`, the head before the first
    /// link: [`ChainHead::EMPTY`] for a whole chain) and prepares to check
    /// records. With `partial`, a link no record is fed for is skipped.
    pub fn new(links: Vec<ChainLink>, base: ChainHead, partial: bool) -> Checker {
        let mut problems = Vec::new();
        let mut prev = base;
        let mut purged = Vec::new();
        let mut counts = Counts::default();
        for link in &links {
            counts.links += 1;
            if link.seq != prev.next_seq {
                if link.seq > prev.next_seq {
                    problems.push(Problem::LinksMissing {
                        from: prev.next_seq,
                        to: link.seq - 1,
                    });
                }
                // The heads cannot be followed across a hole: take the
                // stored one as the next base.
            } else if link.compute_head(&prev.head) != link.head {
                problems.push(Problem::LinkAltered { link: link.seq });
            }
            match link.kind {
                LinkKind::Records => {
                    if link.first_id != prev.last_id + 1 && link.seq == prev.next_seq {
                        problems.push(Problem::LinkRangeBroken {
                            link: link.seq,
                            first_id: link.first_id,
                            expected: prev.last_id + 1,
                        });
                    }
                }
                LinkKind::Purge => purged.extend(link.id_ranges()),
            }
            prev = ChainHead {
                next_seq: link.seq + 1,
                last_id: match link.kind {
                    LinkKind::Records => link.last_id,
                    LinkKind::Purge => prev.last_id,
                },
                head: link.head,
            };
        }
        purged.sort_unstable();
        counts.purged = purged.iter().map(|(f, l)| (l - f + 1) as u64).sum();
        let mut checker = Checker {
            links,
            current: 0,
            entries: Vec::new(),
            purged,
            partial,
            problems,
            counts,
            buf: Vec::with_capacity(512),
            end: prev,
        };
        checker.skip_to_records_link();
        checker
    }

    /// Where the chain ends (what a checkpoint of its last link says).
    pub fn end(&self) -> ChainHead {
        self.end
    }

    /// The stored head of link `seq`, when the checker holds it.
    pub fn head_of(&self, seq: i64) -> Option<Hash> {
        let i = self.links.binary_search_by_key(&seq, |l| l.seq).ok()?;
        Some(self.links[i].head)
    }

    /// The position of the first link held.
    pub fn first_seq(&self) -> Option<i64> {
        self.links.first().map(|l| l.seq)
    }

    fn skip_to_records_link(&mut self) {
        while self
            .links
            .get(self.current)
            .is_some_and(|l| l.kind != LinkKind::Records)
        {
            self.current += 1;
        }
    }

    /// Feeds the next record (ids must grow).
    pub fn record(&mut self, record: StoredRecord) {
        let leaf = RecordView::of(&record).leaf(&mut self.buf);
        self.counts.records += 1;
        self.push(Entry {
            id: record.id,
            leaf,
            record: Some(record),
        });
    }

    /// Feeds the next record by its leaf alone (ids must grow).
    pub fn leaf(&mut self, id: RecordId, leaf: Hash) {
        self.counts.leaves += 1;
        self.push(Entry {
            id,
            leaf,
            record: None,
        });
    }

    fn push(&mut self, entry: Entry) {
        while let Some(link) = self.links.get(self.current) {
            if entry.id <= link.last_id {
                break;
            }
            self.close_link();
        }
        match self.links.get(self.current) {
            Some(link) if entry.id >= link.first_id => self.entries.push(entry),
            // Before the current link's range (a hole between links, or
            // before a partial chain's first link) or after the last link.
            _ => self.problems.push(Problem::NotCommitted {
                id: entry.id,
                session: entry.record.and_then(|r| r.session_id),
            }),
        }
    }

    /// Checks the records of the current link and moves to the next.
    fn close_link(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        if let Some(link) = self.links.get(self.current)
            && !(entries.is_empty() && self.partial)
        {
            let problems = check_link(link, entries, &self.purged);
            self.problems.extend(problems);
        }
        self.current += 1;
        self.skip_to_records_link();
    }

    /// Ends the check: the problems found, and the counts.
    pub fn finish(mut self) -> (Vec<Problem>, Counts) {
        while self.current < self.links.len() {
            self.close_link();
        }
        (self.problems, self.counts)
    }
}

fn purged(ranges: &[(RecordId, RecordId)], id: RecordId) -> bool {
    // Tombstones never overlap: the range starting last at or before `id`
    // is the only one that can hold it.
    let i = ranges.partition_point(|&(first, _)| first <= id);
    i > 0 && id <= ranges[i - 1].1
}

/// The problems of one records link, given the records found in its range.
fn check_link(
    link: &ChainLink,
    entries: Vec<Entry>,
    purged_ranges: &[(RecordId, RecordId)],
) -> Vec<Problem> {
    let expected: Vec<RecordId> = link
        .id_ranges()
        .into_iter()
        .flat_map(|(f, l)| f..=l)
        .collect();
    let same_ids =
        expected.len() == entries.len() && expected.iter().zip(&entries).all(|(a, e)| *a == e.id);
    if same_ids {
        let mut h = Sha256::new();
        for e in &entries {
            h.update(e.leaf);
        }
        if <[u8; 32]>::from(h.finalize()) == link.records_hash {
            return Vec::new();
        }
    }
    // Something differs: find what, record by record, with the tags.
    let tags = link.tags();
    let tag_of = |pos: usize| tags.get(pos * TAG_BYTES..(pos + 1) * TAG_BYTES);
    let mut problems = Vec::new();
    let mut suspects: Vec<(usize, Entry)> = Vec::new();
    let mut found = vec![false; expected.len()];
    let mut any_purged = false;
    for e in entries {
        match expected.binary_search(&e.id) {
            Err(_) => problems.push(Problem::NotCommitted {
                id: e.id,
                session: e.record.and_then(|r| r.session_id),
            }),
            Ok(pos) => {
                found[pos] = true;
                if tag_of(pos) != Some(&e.leaf[..TAG_BYTES]) {
                    suspects.push((pos, e));
                }
            }
        }
    }
    for (pos, &id) in expected.iter().enumerate() {
        if !found[pos] {
            if purged(purged_ranges, id) {
                any_purged = true;
            } else {
                problems.push(Problem::Missing { id, link: link.seq });
            }
        }
    }
    // A suspect whose content, under another suspect's id, matches that
    // id's tag was moved there.
    let mut buf = Vec::new();
    let pairwise = suspects.len() <= MAX_REORDER_CANDIDATES;
    for (i, (_, e)) in suspects.iter().enumerate() {
        let moved_from = e.record.as_ref().filter(|_| pairwise).and_then(|r| {
            suspects.iter().enumerate().find_map(|(j, (pos, other))| {
                let leaf = RecordView::of(r).with_id(other.id).leaf(&mut buf);
                (i != j && tag_of(*pos) == Some(&leaf[..TAG_BYTES])).then_some(other.id)
            })
        });
        let session = e.record.as_ref().and_then(|r| r.session_id.clone());
        problems.push(match moved_from {
            Some(committed_as) => Problem::Reordered {
                id: e.id,
                session,
                committed_as,
                link: link.seq,
            },
            None => Problem::Modified {
                id: e.id,
                session,
                link: link.seq,
            },
        });
    }
    if problems.is_empty() && !any_purged {
        problems.push(Problem::LinkRecordsAltered {
            link: link.seq,
            first_id: link.first_id,
            last_id: link.last_id,
        });
    }
    problems.sort_by_key(|p| p.record_id().unwrap_or(i64::MIN));
    problems
}

/// Records read per query while checking a store.
const PAGE: u32 = 20_000;

/// Checks a whole store's chain and records (offline: the store is read
/// through its API, so a backend and its storage layout do not matter).
pub async fn check_store(store: &dyn crate::Store) -> Result<Checker, crate::StoreError> {
    let mut links = Vec::new();
    let mut after = -1;
    loop {
        let page = store.chain_links(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        links.extend(page);
    }
    let mut checker = Checker::new(links, ChainHead::EMPTY, false);
    // Records committed after the links were read belong to later links.
    let before_id = Some(checker.end().last_id + 1);
    let mut after_id = None;
    loop {
        let page = store
            .records(crate::model::RecordQuery {
                after_id,
                before_id,
                order: crate::model::Order::OldestFirst,
                limit: PAGE,
                ..crate::model::RecordQuery::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after_id = Some(last.id);
        for record in page {
            checker.record(record);
        }
    }
    Ok(checker)
}
