//! Go's `strconv.Quote` (what `%q` prints), byte for byte: how Warden writes
//! text that came from outside (a URL in a boundary line, a peer's process
//! name in an agent warning) so that it cannot break a line, forge one or
//! carry terminal escapes. Shared by the control plane and the agent.
//!
//! Written by hand because no crate reproduces it: Rust's `escape_debug` and
//! the JSON escapers use other escape forms (`\u{1b}`, `\u001b`) and other
//! ideas of "printable" (Rust escapes grapheme extenders and keeps some
//! characters Go escapes), and `docs/stderr-format.md` fixes Go's output exactly. The rule
//! set is small; what matters is Go's `unicode.IsPrint`, which
//! [`is_print`] implements from a table generated out of the same Unicode
//! version Go uses (see `scripts/gen-printable.py`).

mod printable;

use printable::PRINTABLE;

/// Appends `s` to `out` quoted as Go's `strconv.Quote` would.
///
/// Rules (Go's `appendQuotedWith` with `ASCIIonly` and `graphicOnly` false):
/// `"` and `\` get a backslash; `\a \b \f \n \r \t \v` are written so; other
/// runes that are not printable become `\xHH` below U+0080 (so below the
/// space and DEL), `\uHHHH` up to U+FFFF and `\UHHHHHHHH` above, with
/// lowercase hex digits; printable runes are kept as they are. (Go also
/// writes `\xHH` for each byte of invalid UTF-8; a Rust `str` has none.)
pub fn quote_into(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Most of a URL is printable ASCII that needs no escape: copy such runs
    // whole and look at characters one by one only from the first other
    // byte on.
    let plain = ascii_prefix(s.as_bytes(), quoted_as_is);
    out.push_str(&s[..plain]);
    for c in s[plain..].chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            _ if is_print(c) => out.push(c),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            _ => {
                let cp = u32::from(c);
                let (prefix, digits) = match cp {
                    0..0x80 => ("\\x", 2),
                    0x80..0x10000 => ("\\u", 4),
                    _ => ("\\U", 8),
                };
                out.push_str(prefix);
                push_hex(out, cp, digits);
            }
        }
    }
    out.push('"');
}

/// Printable ASCII other than `"` and `\\`: what quoting copies unchanged.
fn quoted_as_is(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// How many leading bytes of `s` satisfy `plain` (a test of single
/// bytes, so meant for ASCII): what a writer can copy unchanged before it
/// must look at characters. Looks at 16 bytes at a time without an early
/// exit inside a chunk, which the compiler turns into vector compares: a
/// byte-at-a-time scan of the URL was the largest single cost of
/// formatting a boundary line.
#[inline]
pub fn ascii_prefix(s: &[u8], plain: impl Fn(u8) -> bool) -> usize {
    const CHUNK: usize = 16;
    let mut scanned = 0;
    for chunk in s.chunks_exact(CHUNK) {
        if !chunk.iter().fold(true, |all, &b| all & plain(b)) {
            break;
        }
        scanned += CHUNK;
    }
    scanned
        + s[scanned..]
            .iter()
            .position(|&b| !plain(b))
            .unwrap_or(s.len() - scanned)
}

/// `s` quoted as Go's `strconv.Quote` would.
pub fn quote(s: &str) -> String {
    let mut out = String::new();
    quote_into(&mut out, s);
    out
}

fn push_hex(out: &mut String, value: u32, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..digits).rev() {
        out.push(char::from(HEX[((value >> (shift * 4)) & 0xf) as usize]));
    }
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols
/// (general categories L, M, N, P, S) and the ASCII space.
pub fn is_print(c: char) -> bool {
    let cp = u32::from(c);
    if cp < 0x80 {
        return (0x20..0x7f).contains(&cp);
    }
    PRINTABLE
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                std::cmp::Ordering::Less
            } else if lo > cp {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunked scan stops where a byte-at-a-time scan would, wherever
    /// the first byte to escape falls relative to the 16-byte chunks.
    #[test]
    fn the_plain_prefix_ends_at_the_first_byte_to_escape() {
        for len in 0..50 {
            let plain = "a".repeat(len);
            assert_eq!(ascii_prefix(plain.as_bytes(), quoted_as_is), len);
            for at in 0..len {
                for special in [b'"', b'\\', b'\n', 0x7f, 0x1f, 0xc3] {
                    let mut bytes = plain.clone().into_bytes();
                    bytes[at] = special;
                    assert_eq!(
                        ascii_prefix(&bytes, quoted_as_is),
                        at,
                        "{len} {at} {special}"
                    );
                }
            }
        }
    }

    #[test]
    fn ascii_escapes_follow_go() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("\u{7}\u{8}\u{c}\n\r\t\u{b}"), r#""\a\b\f\n\r\t\v""#);
        assert_eq!(quote("\0\u{1b}\u{7f}"), r#""\x00\x1b\x7f""#);
        assert_eq!(quote(" ~"), r#"" ~""#);
    }

    #[test]
    fn non_ascii_is_kept_when_printable_and_escaped_otherwise() {
        // Letters, marks, symbols and emoji stay.
        assert_eq!(quote("café 日本 😀 e\u{301}"), "\"café 日本 😀 e\u{301}\"");
        // C1 controls, spaces other than U+0020, format characters,
        // private use, unassigned and noncharacters are escaped.
        assert_eq!(quote("\u{85}\u{a0}\u{ad}"), r#""\u0085\u00a0\u00ad""#);
        assert_eq!(
            quote("\u{200b}\u{200e}\u{202e}\u{2028}\u{2066}\u{feff}"),
            r#""\u200b\u200e\u202e\u2028\u2066\ufeff""#
        );
        assert_eq!(quote("\u{3000}\u{e000}\u{fffe}"), r#""\u3000\ue000\ufffe""#);
        assert_eq!(
            quote("\u{e0001}\u{f0000}\u{10ffff}\u{1f000}"),
            "\"\\U000e0001\\U000f0000\\U0010ffff\u{1f000}\""
        );
        assert_eq!(quote("\u{378}"), r#""\u0378""#);
        // U+FFFD itself is a printable symbol.
        assert_eq!(quote("\u{fffd}"), "\"\u{fffd}\"");
    }

    #[test]
    fn the_table_is_sorted_and_disjoint() {
        for pair in PRINTABLE.windows(2) {
            assert!(
                pair[0].0 <= pair[0].1 && pair[0].1 + 1 < pair[1].0,
                "{pair:?}"
            );
        }
        assert!(PRINTABLE[0].0 >= 0x80);
    }
}
