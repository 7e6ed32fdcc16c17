//! Reading a client's records without decoding them into owned messages.
//!
//! The agent forwards a client's `ReportBoundaryLogsRequest` to the control
//! plane as the bytes the client sent (embedded in `Batch.logs`), so it
//! does not need the decoded message, only to know that the control plane
//! will be able to decode it and a few facts about it: how many records it
//! holds, how many of them carry no request, its session id, and each
//! record's sequence number. [`scan_logs`] finds those in one pass over the
//! bytes, without allocating.
//!
//! The contract: [`scan_logs`] accepts a payload exactly when prost decodes
//! it at the place the control plane decodes it (as the `logs` of a
//! `Batch` in an agent API `ReportBoundaryLogsRequest`), and what it reports
//! is what that decoded message says. The rules replicated are prost's:
//! varints of at most ten bytes (the tenth below 2), keys within `u32` with a
//! known wire type and a non-zero field number, the expected wire type for
//! every known field, lengths within the bytes left, UTF-8 in every known
//! string field, unknown fields skipped (groups matched, nesting limited as
//! prost limits recursion), repeated `logs` appended, other fields merged
//! (last value wins, message fields merge). `tests/scan.rs` checks the
//! contract against prost on arbitrary messages and arbitrary bytes.

/// What [`scan_logs`] learned about a `ReportBoundaryLogsRequest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogsScan<'a> {
    /// Records (`logs` entries).
    pub records: u32,
    /// Of those, records that carry no request (no `http_request`, or one
    /// whose method, URL and matched rule are all empty): the control plane
    /// refuses and counts them.
    pub without_request: u32,
    /// The session id, empty when none was sent.
    pub session_id: &'a str,
}

/// The payload is not a message the control plane can decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a valid ReportBoundaryLogsRequest: {0}")]
pub struct ScanError(&'static str);

/// prost's recursion budget for one decode.
const RECURSION_LIMIT: u32 = 100;
/// The budget left for the fields of the client's request where the control
/// plane decodes it: its request (100) > `batches` (99) > `logs` (98).
const LOGS_DEPTH: u32 = RECURSION_LIMIT - 2;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Validates a `coder.agent.v2.ReportBoundaryLogsRequest` and reads what
/// the agent needs from it, appending each record's sequence number to
/// `sequence_numbers` (in record order).
pub fn scan_logs<'a>(
    payload: &'a [u8],
    sequence_numbers: &mut Vec<i32>,
) -> Result<LogsScan<'a>, ScanError> {
    let mut r = Reader { buf: payload };
    let mut scan = LogsScan {
        records: 0,
        without_request: 0,
        session_id: "",
    };
    let depth = LOGS_DEPTH;
    while !r.buf.is_empty() {
        let (tag, wire) = r.key()?;
        match tag {
            1 => {
                let log = r.message(wire, depth)?;
                let (sequence_number, has_request) = scan_log(log, depth - 1)?;
                scan.records = scan
                    .records
                    .checked_add(1)
                    .ok_or(ScanError("too many records"))?;
                if !has_request {
                    scan.without_request += 1;
                }
                sequence_numbers.push(sequence_number);
            }
            2 => scan.session_id = r.string(wire)?,
            3 | 100 => {
                r.string(wire)?;
            }
            _ => r.skip(wire, tag, depth)?,
        }
    }
    Ok(scan)
}

/// A `BoundaryLog`: its sequence number and whether it carries a request.
fn scan_log(bytes: &[u8], depth: u32) -> Result<(i32, bool), ScanError> {
    let mut r = Reader { buf: bytes };
    let mut sequence_number = 0;
    let mut resource = false;
    let mut fields = [false; 3];
    while !r.buf.is_empty() {
        let (tag, wire) = r.key()?;
        match tag {
            1 => {
                r.varint_field(wire)?;
            }
            2 => scan_timestamp(r.message(wire, depth)?, depth - 1)?,
            3 => {
                // Later occurrences merge into the first: a field keeps its
                // last value.
                let request = r.message(wire, depth)?;
                resource = true;
                scan_http_request(request, depth - 1, &mut fields)?;
            }
            // int32: the varint's low 32 bits.
            4 => sequence_number = r.varint_field(wire)? as i32,
            _ => r.skip(wire, tag, depth)?,
        }
    }
    Ok((sequence_number, resource && fields.contains(&true)))
}

/// A `BoundaryLog.HttpRequest`; `non_empty` says, per field (method, URL,
/// matched rule), whether its last value is non-empty.
fn scan_http_request(bytes: &[u8], depth: u32, non_empty: &mut [bool; 3]) -> Result<(), ScanError> {
    let mut r = Reader { buf: bytes };
    while !r.buf.is_empty() {
        let (tag, wire) = r.key()?;
        match tag {
            1..=3 => non_empty[tag as usize - 1] = !r.string(wire)?.is_empty(),
            _ => r.skip(wire, tag, depth)?,
        }
    }
    Ok(())
}

/// A `google.protobuf.Timestamp` (any values: the control plane judges them).
fn scan_timestamp(bytes: &[u8], depth: u32) -> Result<(), ScanError> {
    let mut r = Reader { buf: bytes };
    while !r.buf.is_empty() {
        let (tag, wire) = r.key()?;
        match tag {
            1 | 2 => {
                r.varint_field(wire)?;
            }
            _ => r.skip(wire, tag, depth)?,
        }
    }
    Ok(())
}

/// The bytes of a tag-2 envelope's `logs` when the envelope is nothing but
/// that one field (what every client sends): `Some(logs)`, a sub-slice of
/// `envelope`. `None` for anything else (status, an empty envelope, repeated
/// or unknown fields, bad bytes), which the caller decodes the slow way.
pub fn envelope_logs(envelope: &[u8]) -> Option<&[u8]> {
    let mut r = Reader { buf: envelope };
    let (tag, wire) = r.key().ok()?;
    if tag != 1 || wire != LEN {
        return None;
    }
    let len = r.varint().ok()?;
    (len == r.buf.len() as u64).then_some(r.buf)
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// prost's `decode_varint`.
    fn varint(&mut self) -> Result<u64, ScanError> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                if i == 9 && byte >= 0x02 {
                    break;
                }
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(ScanError("invalid varint"))
    }

    /// prost's `decode_key`.
    fn key(&mut self) -> Result<(u32, u8), ScanError> {
        let key = self.varint()?;
        let key = u32::try_from(key).map_err(|_| ScanError("invalid key value"))?;
        let wire = (key & 7) as u8;
        if wire > FIXED32 {
            return Err(ScanError("invalid wire type value"));
        }
        let tag = key >> 3;
        if tag == 0 {
            return Err(ScanError("invalid tag value: 0"));
        }
        Ok((tag, wire))
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], ScanError> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.buf.len())
            .ok_or(ScanError("buffer underflow"))?;
        let (taken, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(taken)
    }

    fn length_delimited(&mut self, wire: u8) -> Result<&'a [u8], ScanError> {
        if wire != LEN {
            return Err(ScanError("invalid wire type"));
        }
        let len = self.varint()?;
        self.take(len)
    }

    /// A message field's bytes; `depth` is prost's recursion budget where the
    /// field is read.
    fn message(&mut self, wire: u8, depth: u32) -> Result<&'a [u8], ScanError> {
        let bytes = self.length_delimited(wire)?;
        if depth == 0 {
            return Err(ScanError("recursion limit reached"));
        }
        Ok(bytes)
    }

    fn string(&mut self, wire: u8) -> Result<&'a str, ScanError> {
        let bytes = self.length_delimited(wire)?;
        std::str::from_utf8(bytes).map_err(|_| ScanError("invalid string value: not UTF-8"))
    }

    fn varint_field(&mut self, wire: u8) -> Result<u64, ScanError> {
        if wire != VARINT {
            return Err(ScanError("invalid wire type"));
        }
        self.varint()
    }

    /// prost's `skip_field`.
    fn skip(&mut self, wire: u8, tag: u32, depth: u32) -> Result<(), ScanError> {
        if depth == 0 {
            return Err(ScanError("recursion limit reached"));
        }
        match wire {
            VARINT => {
                self.varint()?;
            }
            FIXED64 => {
                self.take(8)?;
            }
            FIXED32 => {
                self.take(4)?;
            }
            LEN => {
                let len = self.varint()?;
                self.take(len)?;
            }
            START_GROUP => loop {
                let (inner_tag, inner_wire) = self.key()?;
                if inner_wire == END_GROUP {
                    if inner_tag != tag {
                        return Err(ScanError("unexpected end group tag"));
                    }
                    break;
                }
                self.skip(inner_wire, inner_tag, depth - 1)?;
            },
            _ => return Err(ScanError("unexpected end group tag")),
        }
        Ok(())
    }
}
