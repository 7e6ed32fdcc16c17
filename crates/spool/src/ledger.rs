//! The drop ledger in memory: entries [`FullPolicy::DropOldest`] dropped
//! whose drop the caller has not settled yet, with the summary the
//! configured [`SpoolConfig::drop_summary`] made of each before its data
//! went. The writer keeps `dropped.log` in step (see the crate docs); this
//! is the bookkeeping, no I/O.
//!
//! [`FullPolicy::DropOldest`]: crate::FullPolicy::DropOldest
//! [`SpoolConfig::drop_summary`]: crate::SpoolConfig::drop_summary

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::format::{DROP_RECORD_HEADER_LEN, LedgerRecord, encode_drop};
use crate::{DroppedEntry, EntryId};

struct Pending {
    records: u32,
    summary: Bytes,
}

#[derive(Default)]
pub(crate) struct Ledger {
    pending: BTreeMap<u64, Pending>,
    /// Bytes the pending drops take in a compacted ledger file.
    pending_bytes: u64,
}

impl Ledger {
    /// The ledger a file's records describe: drops not settled after them.
    /// Also returns every id the file names as dropped (settled or not):
    /// those entries are dead wherever they still are.
    pub(crate) fn from_records(records: &[LedgerRecord<'_>]) -> (Ledger, Vec<(u64, u64)>) {
        let mut ledger = Ledger::default();
        let mut dropped = Vec::new();
        let mut settled = Vec::new();
        for record in records {
            match *record {
                LedgerRecord::Drop {
                    id,
                    records,
                    summary,
                } => {
                    dropped.push((id, id + 1));
                    ledger.add(id, records, Bytes::copy_from_slice(summary));
                }
                LedgerRecord::Settle { start, end } => settled.push((start, end)),
            }
        }
        for (start, end) in settled {
            ledger.settle_range(start, end);
        }
        (ledger, dropped)
    }

    /// Records a drop (already written to the file).
    pub(crate) fn add(&mut self, id: u64, records: u32, summary: Bytes) {
        let bytes = record_len(&summary);
        if let Some(old) = self.pending.insert(id, Pending { records, summary }) {
            self.pending_bytes -= record_len(&old.summary);
        }
        self.pending_bytes += bytes;
    }

    /// Forgets the pending drops among `ids`; returns those it forgot.
    pub(crate) fn settle(&mut self, ids: &[u64]) -> Vec<u64> {
        ids.iter().copied().filter(|id| self.remove(*id)).collect()
    }

    /// Forgets a pending drop that never happened (its records were cut
    /// short by a crash, see [`crate::recovery`]); returns whether it was
    /// pending.
    pub(crate) fn undo(&mut self, id: u64) -> bool {
        self.remove(id)
    }

    fn settle_range(&mut self, start: u64, end: u64) {
        let ids: Vec<u64> = self.pending.range(start..end).map(|(id, _)| *id).collect();
        for id in ids {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: u64) -> bool {
        match self.pending.remove(&id) {
            Some(old) => {
                self.pending_bytes -= record_len(&old.summary);
                true
            }
            None => false,
        }
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.pending.contains_key(&id)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Pending drops.
    pub(crate) fn len(&self) -> u64 {
        self.pending.len() as u64
    }

    /// Bytes of the file once compacted.
    pub(crate) fn compacted_len(&self) -> u64 {
        self.pending_bytes
    }

    /// Pending drops with id > `after`, oldest first, at most `max` (and at
    /// least one when there is one).
    pub(crate) fn read(&self, after: Option<u64>, max: usize) -> Vec<DroppedEntry> {
        let from = after.map_or(0, |a| a.saturating_add(1));
        self.pending
            .range(from..)
            .take(max.max(1))
            .map(|(&id, p)| DroppedEntry {
                id: EntryId(id),
                records: p.records,
                summary: p.summary.clone(),
            })
            .collect()
    }

    /// The content of a compacted ledger file: one drop record per pending
    /// drop.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.pending_bytes).unwrap_or(0));
        for (&id, p) in &self.pending {
            encode_drop(&mut out, id, p.records, &p.summary);
        }
        out
    }
}

fn record_len(summary: &[u8]) -> u64 {
    (DROP_RECORD_HEADER_LEN + summary.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::decode_ledger;

    #[test]
    fn settled_drops_are_forgotten_and_every_drop_stays_dead() {
        let mut file = Vec::new();
        encode_drop(&mut file, 3, 10, b"three");
        encode_drop(&mut file, 4, 20, b"four");
        encode_drop(&mut file, 9, 1, b"nine");
        crate::format::encode_settle(&mut file, 3, 5);
        let (records, _) = decode_ledger(&file);
        let (mut ledger, dropped) = Ledger::from_records(&records);
        assert_eq!(dropped, [(3, 4), (4, 5), (9, 10)]);
        assert_eq!(ledger.len(), 1);
        let pending = ledger.read(None, 10);
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].id, pending[0].records, &pending[0].summary[..]),
            (EntryId(9), 1, &b"nine"[..])
        );
        assert!(ledger.read(Some(9), 10).is_empty());
        // Compacted, the file holds the pending drop only.
        let compacted = ledger.encode();
        assert_eq!(compacted.len() as u64, ledger.compacted_len());
        let (records, skipped) = decode_ledger(&compacted);
        assert_eq!(skipped, 0);
        assert_eq!(
            records,
            [LedgerRecord::Drop {
                id: 9,
                records: 1,
                summary: b"nine"
            }]
        );
        assert_eq!(ledger.settle(&[9, 10]), [9]);
        assert!(ledger.is_empty());
        assert_eq!(ledger.compacted_len(), 0);
    }
}
