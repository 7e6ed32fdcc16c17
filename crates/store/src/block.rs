//! Blocks: how the SQLite store keeps records, many to a row.
//!
//! A row per record costs SQLite several microseconds of one core for the
//! row and each of its index entries, whatever the code around it does. So
//! the records of one group commit are stored together, one *block* per
//! (group commit, agent, session), as one compressed value in the `blocks`
//! table, beside a small index row (see `migrations/sqlite/0005_blocks.sql`)
//! that says what a reader or the ingest path needs without opening it.
//!
//! # Invariants
//!
//! - A block holds the records of one agent and one session id (or of no
//!   session), at least one record.
//! - A block covers a contiguous range of record ids: record *i* of the
//!   block has the id `first_id + i`. Ids grow in commit order across blocks
//!   (the single writer hands them out), so the id stays the cursor the query
//!   API, the record stream and the line watermark use.
//! - The block's value is immutable; retention deletes a whole block, or
//!   replaces it by a block of its later records (a suffix of its id range:
//!   the remaining records keep their ids).
//! - The index row's counts and ranges (records, denials, conflicts, sequence
//!   numbers, effective and receive times) are exactly those of the block's
//!   records.
//!
//! # Format (version 1)
//!
//! ```text
//! block   := version:u8 codec:u8 meta_len:varint meta:[compressed] urls:[compressed]
//! meta    := records:varint batches:varint batch* columns
//! batch   := uuid:16 received_ns:zigzag agent_secs:zigzag agent_nanos:varint
//!            uid:varint gid:varint pid:zigzag comm:str exe:str process:str
//!            policy:optstr records:varint
//! columns := seq_delta:zigzag*          (from the previous record's, the first from 0)
//!            flags:u8*                  (see the FLAG_ constants)
//!            event_secs_delta:zigzag*   (only records with an event time)
//!            event_nanos:zigzag*        (only records with an event time)
//!            methods:dict rules:dict
//!            url_original_bytes:varint* (only records whose URL was truncated)
//! dict    := entries:varint str* index:varint* (one index per record)
//! urls    := (len:varint bytes)*        (one per record)
//! str     := len:varint bytes (UTF-8);  optstr := 0 | 1 str
//! ```
//!
//! The batches of a block are in record order: the first `records` records
//! belong to the first batch, and so on. Both sections are compressed with
//! zstd (`codec` 1) separately, so that a URL search decompresses only the
//! URLs. zstd rather than lz4: on the benchmark's URLs it stores about half
//! the bytes for a small CPU cost (see `docs/benchmarks.md`).

use std::borrow::Cow;
use std::cell::RefCell;

use jiff::Timestamp;
use uuid::Uuid;
use warden_proto::domain::{Decision, EventTime, Peer};

use crate::StoreError;

/// The format version this code writes and reads.
const VERSION: u8 = 1;
/// zstd, each section a frame of its own.
const CODEC_ZSTD: u8 = 1;
/// zstd's fastest level with a full match finder: most of the ratio of the
/// default level at a fraction of its CPU.
const ZSTD_LEVEL: i32 = 1;

const FLAG_ALLOWED: u8 = 1;
const FLAG_CONFLICT: u8 = 2;
/// Two bits: 0 an event time, 1 none, 2 an impossible one (kept raw).
const TIME_SHIFT: u8 = 2;
const TIME_MASK: u8 = 3 << TIME_SHIFT;
const TIME_KNOWN: u8 = 0;
const TIME_MISSING: u8 = 1;
const TIME_OUT_OF_RANGE: u8 = 2;
const FLAG_URL_TRUNCATED: u8 = 16;

/// What all records of one delivered batch share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BatchInfo<'a> {
    pub batch_id: Uuid,
    /// When the control plane took the call that delivered it (its own
    /// clock), Unix nanoseconds.
    pub received_ns: i64,
    /// When the agent says it read the batch from its socket.
    pub agent_received_at: Timestamp,
    pub peer: PeerRef<'a>,
    pub process: Cow<'a, str>,
    pub policy_digest: Option<Cow<'a, str>>,
    /// How many of the block's records (consecutive) are this batch's.
    pub records: u32,
}

/// A socket peer, borrowed or owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PeerRef<'a> {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    pub comm: Cow<'a, str>,
    pub exe: Cow<'a, str>,
}

impl<'a> PeerRef<'a> {
    pub(crate) fn of(peer: &'a Peer) -> PeerRef<'a> {
        PeerRef {
            uid: peer.uid,
            gid: peer.gid,
            pid: peer.pid,
            comm: Cow::Borrowed(&peer.comm),
            exe: Cow::Borrowed(&peer.exe),
        }
    }

    pub(crate) fn to_peer(&self) -> Peer {
        Peer {
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            comm: self.comm.clone().into_owned(),
            exe: self.exe.clone().into_owned(),
        }
    }
}

/// One record of a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlockRecord<'a> {
    pub sequence_number: i32,
    pub decision: Decision,
    pub conflict: bool,
    pub event_time: EventTime,
    pub method: Cow<'a, str>,
    /// As stored: cut to the store's bound when it was longer.
    pub url: Cow<'a, str>,
    /// The URL's length in bytes as sent, when it was truncated.
    pub url_original_bytes: Option<u64>,
    pub matched_rule: Cow<'a, str>,
}

/// A decoded (or to be encoded) block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Block<'a> {
    pub batches: Vec<BatchInfo<'a>>,
    pub records: Vec<BlockRecord<'a>>,
}

impl<'a> Block<'a> {
    /// Index of the batch record `i` belongs to, for every record.
    pub(crate) fn batch_of_each(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.records.len());
        for (b, batch) in self.batches.iter().enumerate() {
            out.extend(std::iter::repeat_n(b, batch.records as usize));
        }
        out
    }

    /// The block of records `from..` (a suffix), batches cut to match.
    pub(crate) fn suffix(&self, from: usize) -> Block<'a> {
        let mut batches = Vec::new();
        let mut start = 0usize;
        for batch in &self.batches {
            let end = start + batch.records as usize;
            if end > from {
                let mut b = batch.clone();
                b.records = u32::try_from(end - start.max(from)).unwrap_or(u32::MAX);
                batches.push(b);
            }
            start = end;
        }
        Block {
            batches,
            records: self.records[from.min(self.records.len())..].to_vec(),
        }
    }
}

// ---- encoding --------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A small dictionary column: methods and rules repeat a lot.
fn put_dict<'s>(out: &mut Vec<u8>, values: impl Iterator<Item = &'s str> + Clone) {
    let mut entries: Vec<&str> = Vec::new();
    let mut index = Vec::new();
    for v in values {
        // Linear: a block has a handful of distinct methods and rules.
        let i = match entries.iter().position(|e| *e == v) {
            Some(i) => i,
            None => {
                entries.push(v);
                entries.len() - 1
            }
        };
        index.push(i as u64);
    }
    put_varint(out, entries.len() as u64);
    for e in &entries {
        put_str(out, e);
    }
    for i in index {
        put_varint(out, i);
    }
}

fn time_parts(t: EventTime) -> Option<(i64, i32)> {
    match t {
        EventTime::Known(ts) => Some((ts.as_second(), ts.subsec_nanosecond())),
        EventTime::Missing => None,
        EventTime::OutOfRange { seconds, nanos } => Some((seconds, nanos)),
    }
}

/// Encodes and compresses `block`.
pub(crate) fn encode(block: &Block<'_>) -> Vec<u8> {
    let n = block.records.len();
    let mut meta = Vec::with_capacity(64 + n * 12);
    put_varint(&mut meta, n as u64);
    put_varint(&mut meta, block.batches.len() as u64);
    for b in &block.batches {
        meta.extend_from_slice(b.batch_id.as_bytes());
        put_varint(&mut meta, zigzag(b.received_ns));
        put_varint(&mut meta, zigzag(b.agent_received_at.as_second()));
        put_varint(
            &mut meta,
            u64::try_from(b.agent_received_at.subsec_nanosecond()).unwrap_or(0),
        );
        put_varint(&mut meta, u64::from(b.peer.uid));
        put_varint(&mut meta, u64::from(b.peer.gid));
        put_varint(&mut meta, zigzag(i64::from(b.peer.pid)));
        put_str(&mut meta, &b.peer.comm);
        put_str(&mut meta, &b.peer.exe);
        put_str(&mut meta, &b.process);
        match &b.policy_digest {
            None => meta.push(0),
            Some(d) => {
                meta.push(1);
                put_str(&mut meta, d);
            }
        }
        put_varint(&mut meta, u64::from(b.records));
    }
    let mut prev_seq = 0i64;
    for r in &block.records {
        put_varint(&mut meta, zigzag(i64::from(r.sequence_number) - prev_seq));
        prev_seq = i64::from(r.sequence_number);
    }
    for r in &block.records {
        let mut flags = 0u8;
        if r.decision.is_allowed() {
            flags |= FLAG_ALLOWED;
        }
        if r.conflict {
            flags |= FLAG_CONFLICT;
        }
        let kind = match r.event_time {
            EventTime::Known(_) => TIME_KNOWN,
            EventTime::Missing => TIME_MISSING,
            EventTime::OutOfRange { .. } => TIME_OUT_OF_RANGE,
        };
        flags |= kind << TIME_SHIFT;
        if r.url_original_bytes.is_some() {
            flags |= FLAG_URL_TRUNCATED;
        }
        meta.push(flags);
    }
    let mut prev_secs = 0i64;
    for (secs, _) in block
        .records
        .iter()
        .filter_map(|r| time_parts(r.event_time))
    {
        put_varint(&mut meta, zigzag(secs.wrapping_sub(prev_secs)));
        prev_secs = secs;
    }
    for (_, nanos) in block
        .records
        .iter()
        .filter_map(|r| time_parts(r.event_time))
    {
        put_varint(&mut meta, zigzag(i64::from(nanos)));
    }
    put_dict(&mut meta, block.records.iter().map(|r| &*r.method));
    put_dict(&mut meta, block.records.iter().map(|r| &*r.matched_rule));
    for len in block.records.iter().filter_map(|r| r.url_original_bytes) {
        put_varint(&mut meta, len);
    }

    let mut urls = Vec::with_capacity(block.records.iter().map(|r| r.url.len() + 2).sum());
    for r in &block.records {
        put_str(&mut urls, &r.url);
    }

    let meta = compress(&meta);
    let urls = compress(&urls);
    let mut out = Vec::with_capacity(2 + 5 + meta.len() + urls.len());
    out.push(VERSION);
    out.push(CODEC_ZSTD);
    put_varint(&mut out, meta.len() as u64);
    out.extend_from_slice(&meta);
    out.extend_from_slice(&urls);
    out
}

fn compress(raw: &[u8]) -> Vec<u8> {
    thread_local! {
        // One compression context per thread, kept between blocks: making
        // one allocates and clears its tables, which cost as much as
        // compressing a small block (a low-rate commit holds a few dozen
        // records).
        static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { RefCell::new(None) };
    }
    COMPRESSOR
        .with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
            }
            cell.as_mut()?.compress(raw).ok()
        })
        // Compressing into memory cannot fail but for allocation.
        .unwrap_or_else(|| zstd::bulk::compress(raw, ZSTD_LEVEL).unwrap_or_default())
}

// ---- decoding --------------------------------------------------------------

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("block: {what}"))
}

/// Reads a decompressed section.
struct Reader<'b> {
    buf: &'b [u8],
    pos: usize,
}

impl<'b> Reader<'b> {
    fn varint(&mut self) -> Result<u64, StoreError> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = *self.buf.get(self.pos).ok_or_else(|| corrupt("truncated"))?;
            self.pos += 1;
            if shift >= 64 {
                return Err(corrupt("varint too long"));
            }
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    fn signed(&mut self) -> Result<i64, StoreError> {
        self.varint().map(unzigzag)
    }

    fn small<T: TryFrom<u64>>(&mut self) -> Result<T, StoreError> {
        T::try_from(self.varint()?).map_err(|_| corrupt("value out of range"))
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| corrupt("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'b [u8], StoreError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| corrupt("truncated"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn str(&mut self) -> Result<&'b str, StoreError> {
        let n = self.small::<usize>()?;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| corrupt("text is not UTF-8"))
    }

    fn string(&mut self) -> Result<Cow<'static, str>, StoreError> {
        self.str().map(|s| Cow::Owned(s.to_owned()))
    }

    fn dict(&mut self, n: usize) -> Result<Vec<Cow<'static, str>>, StoreError> {
        let entries = self.small::<usize>()?;
        let mut dict = Vec::with_capacity(entries.min(n));
        for _ in 0..entries {
            dict.push(self.string()?);
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let i = self.small::<usize>()?;
            out.push(
                dict.get(i)
                    .ok_or_else(|| corrupt("bad dictionary index"))?
                    .clone(),
            );
        }
        Ok(out)
    }
}

/// The two compressed sections of an encoded block.
fn sections(data: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let mut r = Reader { buf: data, pos: 0 };
    if r.byte()? != VERSION {
        return Err(corrupt("unknown version"));
    }
    if r.byte()? != CODEC_ZSTD {
        return Err(corrupt("unknown codec"));
    }
    let meta_len = r.small::<usize>()?;
    let meta = r.bytes(meta_len)?;
    Ok((meta, &data[r.pos..]))
}

/// Most a section's declared size may be for it to be decompressed in one
/// call into a buffer of that size; a larger (or undeclared) size is
/// decompressed as a stream, which allocates only as the data proves to be
/// there, so a corrupt header cannot make a read allocate gigabytes.
const MAX_DECLARED_SECTION: u64 = 64 * 1024 * 1024;

fn decompress(frame: &[u8]) -> Result<Vec<u8>, StoreError> {
    thread_local! {
        // One decompression context per thread, kept between blocks, as
        // for compression: a read (a query page, a verify pass, the bench's
        // stage read-back) decodes many small blocks, and a streaming
        // decoder made per block allocated its context and window buffers
        // each time.
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { RefCell::new(None) };
    }
    let declared = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .filter(|size| *size <= MAX_DECLARED_SECTION);
    let bulk = declared.and_then(|size| {
        DECOMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = zstd::bulk::Decompressor::new().ok();
            }
            Some(cell.as_mut()?.decompress(frame, size as usize))
        })
    });
    match bulk {
        Some(Ok(raw)) if Some(raw.len() as u64) == declared => Ok(raw),
        // Anything else (a section of several frames, a size the frame
        // does not hold) is left to the streaming decoder, which reads
        // whatever it can and says what it cannot.
        _ => zstd::stream::decode_all(frame).map_err(|_| corrupt("cannot decompress")),
    }
}

/// A block's URLs, decompressed, and each one's (start, end) byte range in
/// that buffer.
pub(crate) type Urls = (Vec<u8>, Vec<(usize, usize)>);

/// The block's URLs: what a URL search reads without decoding the rest.
pub(crate) fn urls(data: &[u8]) -> Result<Urls, StoreError> {
    let (_, urls) = sections(data)?;
    let raw = decompress(urls)?;
    let mut ranges = Vec::new();
    let mut r = Reader { buf: &raw, pos: 0 };
    while r.pos < raw.len() {
        let n = r.small::<usize>()?;
        let start = r.pos;
        r.bytes(n)?;
        ranges.push((start, start + n));
    }
    Ok((raw, ranges))
}

/// Decodes a whole block.
pub(crate) fn decode(data: &[u8]) -> Result<Block<'static>, StoreError> {
    let (meta, url_frame) = sections(data)?;
    let meta = decompress(meta)?;
    let mut r = Reader { buf: &meta, pos: 0 };
    let n = r.small::<usize>()?;
    let batch_count = r.small::<usize>()?;
    // Every record takes bytes, so a count beyond the data is corrupt (and
    // must not size an allocation).
    if n > meta.len() || batch_count > meta.len() {
        return Err(corrupt("counts beyond the data"));
    }
    let mut batches = Vec::with_capacity(batch_count);
    let mut total = 0usize;
    for _ in 0..batch_count {
        let batch_id = Uuid::from_slice(r.bytes(16)?).map_err(|_| corrupt("batch id"))?;
        let received_ns = r.signed()?;
        let secs = r.signed()?;
        let nanos = r.small::<i32>()?;
        let agent_received_at =
            Timestamp::new(secs, nanos).map_err(|_| corrupt("agent receive time"))?;
        let peer = PeerRef {
            uid: r.small()?,
            gid: r.small()?,
            pid: i32::try_from(r.signed()?).map_err(|_| corrupt("pid"))?,
            comm: r.string()?,
            exe: r.string()?,
        };
        let process = r.string()?;
        let policy_digest = match r.byte()? {
            0 => None,
            _ => Some(r.string()?),
        };
        let records: u32 = r.small()?;
        total += records as usize;
        batches.push(BatchInfo {
            batch_id,
            received_ns,
            agent_received_at,
            peer,
            process,
            policy_digest,
            records,
        });
    }
    if total != n {
        return Err(corrupt("batch record counts do not add up"));
    }
    let mut seqs = Vec::with_capacity(n);
    let mut prev = 0i64;
    for _ in 0..n {
        prev = prev.wrapping_add(r.signed()?);
        seqs.push(i32::try_from(prev).map_err(|_| corrupt("sequence number"))?);
    }
    let flags = r.bytes(n)?.to_vec();
    let timed = flags
        .iter()
        .filter(|f| (*f & TIME_MASK) >> TIME_SHIFT != TIME_MISSING)
        .count();
    let mut secs = Vec::with_capacity(timed);
    let mut prev = 0i64;
    for _ in 0..timed {
        prev = prev.wrapping_add(r.signed()?);
        secs.push(prev);
    }
    let mut nanos = Vec::with_capacity(timed);
    for _ in 0..timed {
        nanos.push(i32::try_from(r.signed()?).map_err(|_| corrupt("nanoseconds"))?);
    }
    let methods = r.dict(n)?;
    let rules = r.dict(n)?;
    let url_raw = decompress(url_frame)?;
    let mut u = Reader {
        buf: &url_raw,
        pos: 0,
    };
    let mut records = Vec::with_capacity(n);
    let mut t = 0;
    for (i, ((seq, method), rule)) in seqs.into_iter().zip(methods).zip(rules).enumerate() {
        let f = flags[i];
        let event_time = match (f & TIME_MASK) >> TIME_SHIFT {
            TIME_MISSING => EventTime::Missing,
            kind => {
                let (s, ns) = (secs[t], nanos[t]);
                t += 1;
                match (kind, Timestamp::new(s, ns)) {
                    (TIME_KNOWN, Ok(ts)) => EventTime::Known(ts),
                    (TIME_KNOWN, Err(_)) => return Err(corrupt("event time")),
                    _ => EventTime::OutOfRange {
                        seconds: s,
                        nanos: ns,
                    },
                }
            }
        };
        let url_original_bytes = if f & FLAG_URL_TRUNCATED != 0 {
            Some(r.varint()?)
        } else {
            None
        };
        records.push(BlockRecord {
            sequence_number: seq,
            decision: Decision::from_allowed(f & FLAG_ALLOWED != 0),
            conflict: f & FLAG_CONFLICT != 0,
            event_time,
            method,
            url: u.string()?,
            url_original_bytes,
            matched_rule: rule,
        });
    }
    Ok(Block { batches, records })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Block<'static> {
        let batch = |id: u128, records| BatchInfo {
            batch_id: Uuid::from_u128(id),
            received_ns: 1_765_227_526_000_000_123,
            agent_received_at: Timestamp::new(1_765_227_526, 5).unwrap(),
            peer: PeerRef {
                uid: 1000,
                gid: 1001,
                pid: -1,
                comm: "curl".into(),
                exe: "/usr/bin/curl".into(),
            },
            process: "claude".into(),
            policy_digest: (id == 2).then(|| "ab".repeat(32).into()),
            records,
        };
        let record = |seq: i32, event_time, url: &str| BlockRecord {
            sequence_number: seq,
            decision: Decision::from_allowed(seq % 2 == 0),
            conflict: seq == 7,
            event_time,
            method: if seq % 3 == 0 { "POST" } else { "GET" }.into(),
            url: url.to_owned().into(),
            url_original_bytes: (seq == 2).then_some(70_000),
            matched_rule: if seq % 2 == 0 { "domain=a" } else { "" }.into(),
        };
        Block {
            batches: vec![batch(1, 3), batch(2, 2)],
            records: vec![
                record(
                    5,
                    EventTime::Known(Timestamp::new(1, 2).unwrap()),
                    "https://a/é",
                ),
                record(2, EventTime::Missing, ""),
                record(
                    i32::MAX,
                    EventTime::OutOfRange {
                        seconds: i64::MIN,
                        nanos: -5,
                    },
                    "x\0y",
                ),
                record(i32::MIN, EventTime::Known(Timestamp::MAX), "https://b/"),
                record(7, EventTime::Known(Timestamp::MIN), "https://a/é"),
            ],
        }
    }

    #[test]
    fn blocks_round_trip() {
        let block = sample();
        let data = encode(&block);
        assert_eq!(decode(&data).unwrap(), block);
        let (raw, ranges) = urls(&data).unwrap();
        let got: Vec<&[u8]> = ranges.iter().map(|&(s, e)| &raw[s..e]).collect();
        let want: Vec<&[u8]> = block.records.iter().map(|r| r.url.as_bytes()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_suffix_keeps_later_records_and_their_batches() {
        let block = sample();
        let tail = block.suffix(2);
        assert_eq!(tail.records, block.records[2..]);
        assert_eq!(
            tail.batches.iter().map(|b| b.records).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(tail.batch_of_each(), [0, 1, 1]);
        assert_eq!(decode(&encode(&tail)).unwrap(), tail);
        let tail = block.suffix(3);
        assert_eq!(tail.batches.len(), 1);
        assert_eq!(tail.batches[0].batch_id, Uuid::from_u128(2));
    }

    /// The kept decompression context gives what a fresh streaming decoder
    /// gives, block after block of any size; sections it cannot take in
    /// one call (several frames, a size the frame does not hold) still
    /// decode or fail as before.
    #[test]
    fn sections_decompress_alike_with_the_kept_context() {
        for len in [0usize, 1, 100, 70_000, 1 << 20, 100, 0] {
            let raw: Vec<u8> = (0..len)
                .map(|i| (i % 251) as u8 ^ (i / 997) as u8)
                .collect();
            let frame = compress(&raw);
            assert_eq!(decompress(&frame).unwrap(), raw, "{len} bytes");
        }
        let mut two = compress(b"first ");
        two.extend_from_slice(&compress(b"second"));
        assert_eq!(decompress(&two).unwrap(), b"first second");
        let mut lying = compress(&[7u8; 5000]);
        lying.truncate(lying.len() - 4);
        assert!(decompress(&lying).is_err());
        assert!(decompress(b"not zstd at all").is_err());
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        let data = encode(&sample());
        for cut in [0, 1, 2, 5, data.len() / 2, data.len() - 1] {
            assert!(decode(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = data.clone();
        flipped[0] = 9;
        assert!(decode(&flipped).is_err());
    }
}
