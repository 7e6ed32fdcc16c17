//! PostgreSQL `text` cannot hold NUL, and a record is evidence to keep as
//! sent: a URL with a NUL byte must neither fail the ingest (the agent would
//! re-send that batch forever) nor be altered. Every text value therefore
//! passes through [`encode`] on the way in and [`decode`] on the way out.
//!
//! The escape character is U+FFFF, a Unicode noncharacter that legitimate
//! text does not carry: NUL is stored as U+FFFF `0` and U+FFFF itself as
//! U+FFFF U+FFFF. Text with neither (nearly all of it) is stored unchanged,
//! so it reads normally in `psql` and substring searches work on it.

use std::borrow::Cow;

const ESCAPE: char = '\u{FFFF}';

/// The stored form of `s`.
pub(crate) fn encode(s: &str) -> Cow<'_, str> {
    if !s.contains(['\0', ESCAPE]) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\0' => {
                out.push(ESCAPE);
                out.push('0');
            }
            ESCAPE => {
                out.push(ESCAPE);
                out.push(ESCAPE);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The text whose stored form is `s`. An escape followed by anything else
/// (not written by [`encode`]) is kept as is.
pub(crate) fn decode(s: String) -> String {
    if !s.contains(ESCAPE) {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != ESCAPE {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('0') => {
                chars.next();
                out.push('\0');
            }
            Some(&ESCAPE) => {
                chars.next();
                out.push(ESCAPE);
            }
            _ => out.push(ESCAPE),
        }
    }
    out
}

/// [`decode`] for a nullable column.
pub(crate) fn decode_opt(s: Option<String>) -> Option<String> {
    s.map(decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_stored_unchanged() {
        assert!(matches!(
            encode("https://example.com/é"),
            Cow::Borrowed("https://example.com/é")
        ));
        assert_eq!(
            decode("https://example.com/".into()),
            "https://example.com/"
        );
    }

    #[test]
    fn nul_and_the_escape_round_trip() {
        for s in [
            "\0",
            "a\0b",
            "\u{FFFF}",
            "\u{FFFF}0",
            "\0\u{FFFF}\0",
            "\u{FFFF}\u{FFFF}\0",
            "end\u{FFFF}",
        ] {
            let stored = encode(s);
            assert!(!stored.contains('\0'), "{stored:?}");
            assert_eq!(decode(stored.into_owned()), s);
        }
        // Not written by encode: kept.
        assert_eq!(decode("x\u{FFFF}y".into()), "x\u{FFFF}y");
    }

    use proptest::prelude::*;

    /// Text dense in the characters that matter here.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![Just('\0'), Just(ESCAPE), Just('0'), any::<char>()],
            0..24,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn any_text_round_trips(s in text()) {
            let stored = encode(&s);
            proptest::prop_assert!(!stored.contains('\0'));
            proptest::prop_assert_eq!(decode(stored.into_owned()), s);
        }
    }
}
