//! The on-disk encoding: file names, the segment header, entry frames and
//! dead-range records. Pure functions over byte slices; no I/O here.
//!
//! All integers are little-endian. The layouts are described in the crate
//! documentation (`lib.rs`); the constants below are the single source of truth.

/// Suffix of segment file names.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";
/// Digits of the zero-padded first id in a segment file name (`u64::MAX` has 20).
const SEGMENT_NAME_DIGITS: usize = 20;
/// The dead-range log (acknowledged, dropped and corrupt ids).
pub(crate) const DEAD_LOG: &str = "acks.log";
/// Where a compacted dead-range log is written before it is renamed over [`DEAD_LOG`].
pub(crate) const DEAD_LOG_TMP: &str = "acks.log.tmp";
/// The lock file that keeps two spools off one directory.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// The drop ledger: entries dropped under `DropOldest` until their drop is
/// settled (reported by the caller).
pub(crate) const LEDGER: &str = "dropped.log";
/// Where a compacted ledger is written before it is renamed over [`LEDGER`].
pub(crate) const LEDGER_TMP: &str = "dropped.log.tmp";

const SEGMENT_MAGIC: [u8; 8] = *b"WDNSPOOL";
const FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header: magic, version, first id, CRC of the previous 20 bytes.
pub(crate) const SEGMENT_HEADER_LEN: usize = 24;

const ENTRY_MAGIC: [u8; 4] = *b"WSE1";
/// Bytes of an entry frame before its data.
pub(crate) const ENTRY_HEADER_LEN: usize = 28;

const DEAD_MAGIC: [u8; 4] = *b"WSD1";
/// Bytes of one dead-range record.
pub(crate) const DEAD_RECORD_LEN: usize = 24;

/// The name of the segment whose first entry id is `first_id`. Names sort like ids.
pub(crate) fn segment_name(first_id: u64) -> String {
    format!(
        "{first_id:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    )
}

/// The first id encoded in a segment file name, `None` for any other file.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn encode_segment_header(first_id: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&first_id.to_le_bytes());
    let crc = crc32fast::hash(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Whether `file` starts with a valid header for a segment named after `first_id`.
pub(crate) fn segment_header_ok(file: &[u8], first_id: u64) -> bool {
    file.len() >= SEGMENT_HEADER_LEN
        && file[..SEGMENT_HEADER_LEN] == encode_segment_header(first_id)
}

/// Bytes an entry with `data_len` bytes of data takes on disk.
pub(crate) fn frame_len(data_len: usize) -> u64 {
    (ENTRY_HEADER_LEN + data_len) as u64
}

/// Appends the frame of one entry to `out`.
///
/// The caller guarantees `data.len() <= u32::MAX` (checked when the entry is
/// admitted).
pub(crate) fn encode_entry(out: &mut Vec<u8>, id: u64, records: u32, data: &[u8]) {
    let len = u32::try_from(data.len()).expect("entry length checked at admission");
    let start = out.len();
    out.extend_from_slice(&ENTRY_MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&records.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    let header_crc = crc32fast::hash(&out[start + 8..start + ENTRY_HEADER_LEN]);
    out[start + 4..start + 8].copy_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(data);
}

/// An entry header whose own CRC is valid: its id, record count and length
/// can be trusted even when the data is damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub id: u64,
    pub records: u32,
    pub data_len: u32,
    data_crc: u32,
}

impl FrameHeader {
    pub(crate) fn frame_len(&self) -> u64 {
        frame_len(self.data_len as usize)
    }
}

/// What the bytes at one offset hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A whole entry whose header and data check out.
    Valid(FrameHeader),
    /// A trustworthy header whose data is damaged: skip `frame_len` bytes.
    DamagedData(FrameHeader),
    /// A trustworthy header whose data runs past the end of the bytes.
    Incomplete(FrameHeader),
    /// No valid entry header here.
    NoHeader,
}

pub(crate) fn read_header(buf: &[u8]) -> Option<FrameHeader> {
    let header = buf.get(..ENTRY_HEADER_LEN)?;
    if header[0..4] != ENTRY_MAGIC {
        return None;
    }
    if crc32fast::hash(&header[8..ENTRY_HEADER_LEN]) != u32_at(header, 4) {
        return None;
    }
    Some(FrameHeader {
        id: u64_at(header, 8),
        records: u32_at(header, 16),
        data_len: u32_at(header, 20),
        data_crc: u32_at(header, 24),
    })
}

/// Decodes the frame starting at `buf[0]`.
pub(crate) fn decode_frame(buf: &[u8]) -> Frame {
    let Some(header) = read_header(buf) else {
        return Frame::NoHeader;
    };
    let end = ENTRY_HEADER_LEN + header.data_len as usize;
    match buf.get(ENTRY_HEADER_LEN..end) {
        None => Frame::Incomplete(header),
        Some(data) if crc32fast::hash(data) == header.data_crc => Frame::Valid(header),
        Some(_) => Frame::DamagedData(header),
    }
}

/// The first offset at or after `from` holding a trustworthy entry header
/// that `accept` takes. Used to resynchronise after damaged bytes; the header
/// CRC makes each candidate cheap to reject.
pub(crate) fn find_header(
    buf: &[u8],
    from: usize,
    accept: impl Fn(&FrameHeader) -> bool,
) -> Option<(usize, FrameHeader)> {
    let mut pos = from;
    while pos + ENTRY_HEADER_LEN <= buf.len() {
        let offset = buf[pos..buf.len() - ENTRY_HEADER_LEN + 1]
            .iter()
            .position(|&b| b == ENTRY_MAGIC[0])?;
        pos += offset;
        if let Some(header) = read_header(&buf[pos..])
            && accept(&header)
        {
            return Some((pos, header));
        }
        pos += 1;
    }
    None
}

/// Appends a record saying ids `start..end` are dead.
pub(crate) fn encode_dead(out: &mut Vec<u8>, start: u64, end: u64) {
    let at = out.len();
    out.extend_from_slice(&DEAD_MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&end.to_le_bytes());
    let crc = crc32fast::hash(&out[at + 8..at + DEAD_RECORD_LEN]);
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The range in one dead-range record, `None` if the record is damaged.
pub(crate) fn decode_dead(record: &[u8]) -> Option<(u64, u64)> {
    if record.len() != DEAD_RECORD_LEN || record[0..4] != DEAD_MAGIC {
        return None;
    }
    if crc32fast::hash(&record[8..DEAD_RECORD_LEN]) != u32_at(record, 4) {
        return None;
    }
    let (start, end) = (u64_at(record, 8), u64_at(record, 16));
    (start < end).then_some((start, end))
}

const DROP_MAGIC: [u8; 4] = *b"WSX1";
const SETTLE_MAGIC: [u8; 4] = *b"WSY1";
/// Bytes of a drop record before its summary.
pub(crate) const DROP_RECORD_HEADER_LEN: usize = 24;
/// Bytes of a settle record.
pub(crate) const SETTLE_RECORD_LEN: usize = 24;

/// Appends a ledger record saying entry `id` (of `records` records) was
/// dropped, with its summary.
///
/// The caller guarantees `summary.len() <= u32::MAX`.
pub(crate) fn encode_drop(out: &mut Vec<u8>, id: u64, records: u32, summary: &[u8]) {
    let len = u32::try_from(summary.len()).expect("summary length checked by the caller");
    let at = out.len();
    out.extend_from_slice(&DROP_MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&records.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(summary);
    let crc = crc32fast::hash(&out[at + 8..]);
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a ledger record saying the drops of ids `start..end` are settled.
pub(crate) fn encode_settle(out: &mut Vec<u8>, start: u64, end: u64) {
    let at = out.len();
    out.extend_from_slice(&SETTLE_MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&end.to_le_bytes());
    let crc = crc32fast::hash(&out[at + 8..at + SETTLE_RECORD_LEN]);
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// One valid record of the drop ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LedgerRecord<'a> {
    Drop {
        id: u64,
        records: u32,
        summary: &'a [u8],
    },
    Settle {
        start: u64,
        end: u64,
    },
}

/// The record at the start of `buf` and its length, `None` when no valid
/// record starts there (damage, or a torn write at the end).
pub(crate) fn decode_ledger_record(buf: &[u8]) -> Option<(LedgerRecord<'_>, usize)> {
    let magic = buf.get(..4)?;
    if magic == DROP_MAGIC {
        let header = buf.get(..DROP_RECORD_HEADER_LEN)?;
        let len = DROP_RECORD_HEADER_LEN + u32_at(header, 20) as usize;
        let record = buf.get(..len)?;
        if crc32fast::hash(&record[8..]) != u32_at(record, 4) {
            return None;
        }
        let drop = LedgerRecord::Drop {
            id: u64_at(record, 8),
            records: u32_at(record, 16),
            summary: &record[DROP_RECORD_HEADER_LEN..],
        };
        Some((drop, len))
    } else if magic == SETTLE_MAGIC {
        let record = buf.get(..SETTLE_RECORD_LEN)?;
        if crc32fast::hash(&record[8..]) != u32_at(record, 4) {
            return None;
        }
        let (start, end) = (u64_at(record, 8), u64_at(record, 16));
        (start < end).then_some((LedgerRecord::Settle { start, end }, SETTLE_RECORD_LEN))
    } else {
        None
    }
}

/// Every valid record of a ledger file, in order, and how many bytes could
/// not be read as records (damage, skipped by searching for the next valid
/// record; or a torn write at the end).
pub(crate) fn decode_ledger(buf: &[u8]) -> (Vec<LedgerRecord<'_>>, u64) {
    let mut records = Vec::new();
    let mut skipped = 0u64;
    let mut pos = 0;
    while pos < buf.len() {
        match decode_ledger_record(&buf[pos..]) {
            Some((record, len)) => {
                records.push(record);
                pos += len;
            }
            None => {
                // Search for the next place a valid record starts.
                let next = (pos + 1..buf.len())
                    .find(|&at| {
                        (buf[at] == DROP_MAGIC[0] || buf[at] == SETTLE_MAGIC[0])
                            && decode_ledger_record(&buf[at..]).is_some()
                    })
                    .unwrap_or(buf.len());
                skipped += (next - pos) as u64;
                pos = next;
            }
        }
    }
    (records, skipped)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_like_ids_and_parse_back() {
        let ids = [1u64, 9, 10, 123_456_789, u64::MAX];
        let names: Vec<String> = ids.iter().map(|&id| segment_name(id)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for (&id, name) in ids.iter().zip(&names) {
            assert_eq!(parse_segment_name(name), Some(id));
        }
        for other in [
            "acks.log",
            "LOCK",
            "1.seg",
            "0000000000000000000x.seg",
            "00000000000000000001.seg.tmp",
        ] {
            assert_eq!(parse_segment_name(other), None, "{other}");
        }
    }

    #[test]
    fn entry_round_trips_and_every_flipped_byte_is_caught() {
        let mut buf = Vec::new();
        encode_entry(&mut buf, 42, 7, b"hello spool");
        let Frame::Valid(header) = decode_frame(&buf) else {
            panic!("fresh frame must decode");
        };
        assert_eq!(
            (header.id, header.records, header.frame_len()),
            (42, 7, buf.len() as u64)
        );
        assert_eq!(&buf[ENTRY_HEADER_LEN..], b"hello spool");
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x20;
            let decoded = decode_frame(&bad);
            if i < ENTRY_HEADER_LEN {
                assert_eq!(decoded, Frame::NoHeader, "byte {i}");
            } else {
                assert_eq!(decoded, Frame::DamagedData(header), "byte {i}");
            }
        }
        assert_eq!(
            decode_frame(&buf[..buf.len() - 1]),
            Frame::Incomplete(header)
        );
        assert_eq!(decode_frame(&buf[..10]), Frame::NoHeader);
    }

    #[test]
    fn find_header_skips_garbage_and_respects_accept() {
        let mut buf = b"WWSE1garbageWSE".to_vec();
        let at = buf.len();
        encode_entry(&mut buf, 5, 1, b"x");
        let second = buf.len();
        encode_entry(&mut buf, 6, 1, b"y");
        assert_eq!(
            find_header(&buf, 0, |_| true).map(|(o, h)| (o, h.id)),
            Some((at, 5))
        );
        assert_eq!(
            find_header(&buf, 0, |h| h.id > 5).map(|(o, h)| (o, h.id)),
            Some((second, 6))
        );
        assert_eq!(find_header(&buf, second + 1, |_| true), None);
    }

    #[test]
    fn dead_records_round_trip_and_reject_damage() {
        let mut buf = Vec::new();
        encode_dead(&mut buf, 3, 9);
        assert_eq!(decode_dead(&buf), Some((3, 9)));
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 1;
            assert_eq!(decode_dead(&bad), None, "byte {i}");
        }
        let mut empty = Vec::new();
        encode_dead(&mut empty, 4, 4);
        assert_eq!(decode_dead(&empty), None);
    }

    #[test]
    fn ledger_records_round_trip_and_damage_is_skipped() {
        let mut buf = Vec::new();
        encode_drop(&mut buf, 7, 3, b"summary of seven");
        let second = buf.len();
        encode_settle(&mut buf, 7, 8);
        let third = buf.len();
        encode_drop(&mut buf, 9, 0, b"");
        let (records, skipped) = decode_ledger(&buf);
        assert_eq!(skipped, 0);
        assert_eq!(
            records,
            [
                LedgerRecord::Drop {
                    id: 7,
                    records: 3,
                    summary: b"summary of seven"
                },
                LedgerRecord::Settle { start: 7, end: 8 },
                LedgerRecord::Drop {
                    id: 9,
                    records: 0,
                    summary: b""
                },
            ]
        );
        // Any flipped byte costs the record it hits, never the others.
        let (all, _) = decode_ledger(&buf);
        for at in 0..buf.len() {
            let mut bad = buf.clone();
            bad[at] ^= 0x10;
            let hit = [second, third, buf.len()]
                .iter()
                .position(|&end| at < end)
                .expect("inside the buffer");
            let expected: Vec<_> = (0..3)
                .filter(|&i| i != hit)
                .map(|i| all[i].clone())
                .collect();
            let (records, skipped) = decode_ledger(&bad);
            assert_eq!(records, expected, "byte {at}");
            assert!(skipped > 0, "byte {at}");
        }
        // A torn last record is skipped.
        let (records, skipped) = decode_ledger(&buf[..buf.len() - 1]);
        assert_eq!(records.len(), 2);
        assert_eq!(skipped, (buf.len() - 1 - third) as u64);
    }

    #[test]
    fn segment_header_is_checked_against_the_name() {
        let header = encode_segment_header(17);
        assert!(segment_header_ok(&header, 17));
        assert!(!segment_header_ok(&header, 18));
        assert!(!segment_header_ok(&header[..20], 17));
    }
}
