//! Recomputing the chain: the links' heads from each other, each link's
//! records from their content, and, where they do not match, which record
//! is wrong and how (modified, missing, reordered, not covered).
//!
//! Records are fed in id order ([`Checker::record`], or
//! [`Checker::leaf`] for a record an export left out but whose leaf it
//! kept), a link's worth at a time in memory. Signatures are not checked
//! here (see the `warden-evidence` crate): this is the integrity half.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::leaves::LeafBlock;
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
    content: Content,
}

/// What the checker knows of a record besides its leaf.
enum Content {
    /// The record itself.
    Record(Box<StoredRecord>),
    /// Its leaf only (a record an export left out).
    Leaf,
    /// Its leaf and session, hashed by the store from its block: the
    /// content can be read back when a reordering is to be told from a
    /// modification.
    Stored(Option<Arc<str>>),
}

impl Entry {
    fn session(&self) -> Option<String> {
        match &self.content {
            Content::Record(r) => r.session_id.clone(),
            Content::Leaf => None,
            Content::Stored(s) => s.as_deref().map(str::to_owned),
        }
    }

    fn record(&self) -> Option<&StoredRecord> {
        match &self.content {
            Content::Record(r) => Some(r),
            Content::Leaf | Content::Stored(_) => None,
        }
    }
}

/// A problem found, or a link whose problems wait for records to be read
/// back (kept in place so that problems stay in chain order).
enum Slot {
    Found(Problem),
    Pending(Pending),
}

/// A mismatching link of records hashed from their blocks: which of its
/// records moved (a reordering) can only be told from their content.
struct Pending {
    /// Index of the link in `Checker::links`.
    link: usize,
    entries: Vec<Entry>,
    /// The records whose content is wanted.
    wanted: Vec<RecordId>,
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
    problems: Vec<Slot>,
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
            problems: problems.into_iter().map(Slot::Found).collect(),
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
            content: Content::Record(Box::new(record)),
        });
    }

    /// Feeds the next record by its leaf alone (ids must grow).
    pub fn leaf(&mut self, id: RecordId, leaf: Hash) {
        self.counts.leaves += 1;
        self.push(Entry {
            id,
            leaf,
            content: Content::Leaf,
        });
    }

    /// Feeds the next records as the store hashed them from a block (ids
    /// must grow). Their content counts as checked: the leaves are of the
    /// stored records. Where a link of them does not match, the records
    /// whose content tells a reordering from a modification are
    /// [`wanted`](Checker::wanted) back.
    pub fn stored_leaves(&mut self, block: LeafBlock) {
        let session: Option<Arc<str>> = block.session.map(Arc::from);
        self.counts.records += block.leaves.len() as u64;
        for (i, leaf) in block.leaves.into_iter().enumerate() {
            self.push(Entry {
                id: block.first_id + i as i64,
                leaf,
                content: Content::Stored(session.clone()),
            });
        }
    }

    /// The records fed by [`stored_leaves`](Checker::stored_leaves) whose
    /// content is wanted to finish checking a mismatching link (at most
    /// [`MAX_REORDER_CANDIDATES`] per link), in id order. Give them with
    /// [`supply`](Checker::supply) before [`finish`](Checker::finish);
    /// ones not given are reported as modified.
    pub fn wanted(&self) -> Vec<RecordId> {
        let mut ids: Vec<RecordId> = self
            .problems
            .iter()
            .filter_map(|s| match s {
                Slot::Pending(p) => Some(p.wanted.iter().copied()),
                Slot::Found(_) => None,
            })
            .flatten()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Finishes the pending links with the [`wanted`](Checker::wanted)
    /// records, as read back from the store.
    pub fn supply(&mut self, records: Vec<StoredRecord>) {
        let mut by_id: std::collections::HashMap<RecordId, StoredRecord> =
            records.into_iter().map(|r| (r.id, r)).collect();
        let slots = std::mem::take(&mut self.problems);
        for slot in slots {
            match slot {
                Slot::Found(_) => self.problems.push(slot),
                Slot::Pending(mut p) => {
                    for e in &mut p.entries {
                        if let Some(r) = by_id.remove(&e.id) {
                            e.leaf = RecordView::of(&r).leaf(&mut self.buf);
                            e.content = Content::Record(Box::new(r));
                        }
                    }
                    self.resolve(p);
                }
            }
        }
    }

    /// Checks a pending link with what it has now (no more deferring).
    fn resolve(&mut self, p: Pending) {
        let link = &self.links[p.link];
        match check_link(link, p.entries, &self.purged, false) {
            Outcome::Problems(found) => self.problems.extend(found.into_iter().map(Slot::Found)),
            // Not deferred again: `check_link` was told not to.
            Outcome::Pending(entries, wanted) => self.problems.push(Slot::Pending(Pending {
                link: p.link,
                entries,
                wanted,
            })),
        }
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
            _ => self.problems.push(Slot::Found(Problem::NotCommitted {
                id: entry.id,
                session: entry.session(),
            })),
        }
    }

    /// Checks the records of the current link and moves to the next.
    fn close_link(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        if let Some(link) = self.links.get(self.current)
            && !(entries.is_empty() && self.partial)
        {
            match check_link(link, entries, &self.purged, true) {
                Outcome::Problems(found) => {
                    self.problems.extend(found.into_iter().map(Slot::Found));
                }
                Outcome::Pending(entries, wanted) => self.problems.push(Slot::Pending(Pending {
                    link: self.current,
                    entries,
                    wanted,
                })),
            }
        }
        self.current += 1;
        self.skip_to_records_link();
    }

    /// Ends the check: the problems found, and the counts.
    pub fn finish(mut self) -> (Vec<Problem>, Counts) {
        while self.current < self.links.len() {
            self.close_link();
        }
        // Links whose wanted records were not supplied: without them.
        if self.problems.iter().any(|s| matches!(s, Slot::Pending(_))) {
            self.supply(Vec::new());
        }
        let problems = self
            .problems
            .into_iter()
            .filter_map(|s| match s {
                Slot::Found(p) => Some(p),
                Slot::Pending(_) => None,
            })
            .collect();
        (problems, self.counts)
    }
}

fn purged(ranges: &[(RecordId, RecordId)], id: RecordId) -> bool {
    // Tombstones never overlap: the range starting last at or before `id`
    // is the only one that can hold it.
    let i = ranges.partition_point(|&(first, _)| first <= id);
    i > 0 && id <= ranges[i - 1].1
}

/// What checking a link found.
enum Outcome {
    Problems(Vec<Problem>),
    /// The entries back, and the records whose content is wanted first.
    Pending(Vec<Entry>, Vec<RecordId>),
}

/// The problems of one records link, given the records found in its range.
/// With `defer`, a link whose reordering check needs the content of records
/// hashed by the store comes back [`Outcome::Pending`].
fn check_link(
    link: &ChainLink,
    entries: Vec<Entry>,
    purged_ranges: &[(RecordId, RecordId)],
    defer: bool,
) -> Outcome {
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
            return Outcome::Problems(Vec::new());
        }
    }
    // Something differs: find what, record by record, with the tags.
    let tags = link.tags();
    let tag_of = |pos: usize| tags.get(pos * TAG_BYTES..(pos + 1) * TAG_BYTES);
    // Where each entry belongs (`None`: not one of the link's ids), and
    // whether it matches its tag.
    let placed: Vec<(Option<usize>, bool)> = entries
        .iter()
        .map(|e| match expected.binary_search(&e.id) {
            Err(_) => (None, true),
            Ok(pos) => (Some(pos), tag_of(pos) == Some(&e.leaf[..TAG_BYTES])),
        })
        .collect();
    let suspect_count = placed
        .iter()
        .filter(|(pos, ok)| pos.is_some() && !ok)
        .count();
    // Telling a reordering from a modification compares the suspects with
    // each other: it takes two, and their content.
    let pairwise = suspect_count <= MAX_REORDER_CANDIDATES;
    if defer && pairwise && suspect_count > 1 {
        let wanted: Vec<RecordId> = entries
            .iter()
            .zip(&placed)
            .filter(|(e, (pos, ok))| {
                pos.is_some() && !ok && matches!(e.content, Content::Stored(_))
            })
            .map(|(e, _)| e.id)
            .collect();
        if !wanted.is_empty() {
            return Outcome::Pending(entries, wanted);
        }
    }
    let mut problems = Vec::new();
    let mut suspects: Vec<(usize, Entry)> = Vec::new();
    let mut found = vec![false; expected.len()];
    let mut any_purged = false;
    for (e, (pos, ok)) in entries.into_iter().zip(placed) {
        match pos {
            None => problems.push(Problem::NotCommitted {
                id: e.id,
                session: e.session(),
            }),
            Some(pos) => {
                found[pos] = true;
                if !ok {
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
    for (i, (_, e)) in suspects.iter().enumerate() {
        let moved_from = e.record().filter(|_| pairwise).and_then(|r| {
            suspects.iter().enumerate().find_map(|(j, (pos, other))| {
                let leaf = RecordView::of(r).with_id(other.id).leaf(&mut buf);
                (i != j && tag_of(*pos) == Some(&leaf[..TAG_BYTES])).then_some(other.id)
            })
        });
        let session = e.session();
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
    Outcome::Problems(problems)
}

/// Record ids per read while checking a store: a few MB of leaves.
const PAGE_IDS: i64 = 1 << 18;

/// Checks a whole store's chain and records (offline). The store hashes
/// the records from its blocks ([`Store::chain_leaves`](crate::Store::chain_leaves)),
/// a range of ids per read, as many reads at once as there are cores (plus
/// one, so that no core waits while the checker takes a page): memory stays
/// bounded by that many pages. Where a link does not match, the records
/// that tell a reordering from a modification are read back through the
/// query API.
pub async fn check_store(store: &dyn crate::Store) -> Result<Checker, crate::StoreError> {
    use futures::stream::{self, StreamExt, TryStreamExt};

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
    let before_id = checker.end().last_id + 1;
    let pages = (0..=before_id.saturating_sub(1).max(0) / PAGE_IDS).map(|k| {
        // The first page also takes whatever lies below id 0.
        let after = if k == 0 { i64::MIN } else { k * PAGE_IDS - 1 };
        (after, ((k + 1) * PAGE_IDS).min(before_id))
    });
    let at_once = std::thread::available_parallelism().map_or(2, |n| n.get().min(8)) + 1;
    let mut leaves = stream::iter(pages)
        .map(|(after, before)| store.chain_leaves(after, before))
        .buffered(at_once);
    while let Some(blocks) = leaves.try_next().await? {
        for block in blocks {
            checker.stored_leaves(block);
        }
    }
    let mut records = Vec::new();
    for id in checker.wanted() {
        records.extend(
            store
                .records(crate::model::RecordQuery {
                    after_id: Some(id - 1),
                    before_id: Some(id + 1),
                    order: crate::model::Order::OldestFirst,
                    limit: 1,
                    ..crate::model::RecordQuery::default()
                })
                .await?,
        );
    }
    checker.supply(records);
    Ok(checker)
}
