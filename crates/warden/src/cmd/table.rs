//! Tables for people: columns sized to their content, the last one (URLs)
//! given what is left of the terminal's width (its cells cut with `…`), and
//! text from the sandboxed side shown so that it cannot move the cursor,
//! recolour the terminal or fake a row.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::process::{Command, Stdio};

use warden_server::line::quote::{is_print, quote};

/// Space between columns.
const GAP: &str = "  ";
/// The narrowest a shrinking column gets.
const MIN_SHRUNK: usize = 12;

/// A column: its header, the widest it may get, and whether it takes the
/// rest of the terminal's width (the last column only).
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub header: &'static str,
    pub max: usize,
    pub shrinks: bool,
}

impl Column {
    pub const fn new(header: &'static str, max: usize) -> Column {
        Column {
            header,
            max,
            shrinks: false,
        }
    }

    /// The last column, which gets the rest of the width (URLs): cut to fit
    /// a terminal, never cut without one.
    pub const fn shrinking(header: &'static str) -> Column {
        Column {
            header,
            max: usize::MAX,
            shrinks: true,
        }
    }
}

/// Column widths, fixed once: rows rendered later (a followed stream) line
/// up with the first ones.
#[derive(Clone, Debug)]
pub struct Layout {
    columns: Vec<Column>,
    widths: Vec<usize>,
}

impl Layout {
    /// Widths for `rows` (and the headers), within `width` terminal columns
    /// when given. `min` widths hold for columns without rows yet (a
    /// followed stream's later rows).
    pub fn fit(
        columns: &[Column],
        rows: &[Vec<String>],
        min: &[usize],
        width: Option<usize>,
    ) -> Layout {
        let mut widths: Vec<usize> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let content = rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0);
                content
                    .max(min.get(i).copied().unwrap_or(0))
                    .min(c.max)
                    .max(c.header.chars().count())
            })
            .collect();
        if let Some(i) = columns.iter().position(|c| c.shrinks) {
            widths[i] = match width {
                Some(width) => {
                    let others: usize = widths
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, w)| w)
                        .sum();
                    let gaps = GAP.len() * widths.len().saturating_sub(1);
                    width.saturating_sub(others + gaps).max(MIN_SHRUNK)
                }
                None => usize::MAX,
            };
        }
        Layout {
            columns: columns.to_vec(),
            widths,
        }
    }

    pub fn header(&self) -> String {
        let cells: Vec<String> = self.columns.iter().map(|c| c.header.to_owned()).collect();
        self.row(&cells)
    }

    /// One line (no newline); cells wider than their column are cut.
    pub fn row(&self, cells: &[String]) -> String {
        let last = self.widths.len().saturating_sub(1);
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(&self.widths).enumerate() {
            if i > 0 {
                line.push_str(GAP);
            }
            let cell = cut(cell, *width);
            line.push_str(&cell);
            if i < last {
                let pad = width.saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        line.trim_end().to_owned()
    }
}

/// `text` cut to `width` characters, ending in `…` when cut.
pub fn cut(text: &str, width: usize) -> Cow<'_, str> {
    if text.chars().count() <= width {
        return Cow::Borrowed(text);
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    Cow::Owned(out)
}

/// Text from the sandboxed side, safe to print: as is when every character
/// is printable, otherwise quoted the way the boundary line quotes it
/// (Go's `%q`), which makes the oddity visible.
pub fn clean(text: &str) -> Cow<'_, str> {
    if text.chars().all(is_print) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(quote(text))
    }
}

/// JSON text safe to print: every character that is not printable
/// (controls such as U+009B, bidirectional overrides such as U+202E, other
/// format characters) written as a `\uXXXX` escape, so a terminal shows
/// it instead of obeying it. The JSON value is the same: in valid JSON such
/// characters can only occur inside strings (outside them there is only
/// ASCII punctuation and whitespace, which is left alone), where the escape
/// stands for the same character. Done whether or not the output is a
/// terminal: JSON readers see no difference, and the output may reach a
/// terminal later (`| tee`, `| less -R`).
pub fn escape_json(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| !is_print(c) && !matches!(c, ' ' | '\t' | '\n' | '\r');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// How wide the terminal is: `COLUMNS` when set, else what `stty` says about
/// the terminal when standard output is one; `None` (no limit) when output
/// goes to a file or a pipe.
pub fn terminal_width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return Some(columns);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    stty_columns().or(Some(100))
}

/// `stty size` on the controlling terminal: "ROWS COLUMNS".
fn stty_columns() -> Option<usize> {
    let tty = std::fs::File::open("/dev/tty").ok()?;
    let output = Command::new("stty")
        .arg("size")
        .stdin(Stdio::from(tty))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    text.split_whitespace()
        .nth(1)?
        .parse::<usize>()
        .ok()
        .filter(|c| *c > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column; 3] = [
        Column::new("NAME", 8),
        Column::new("N", 5),
        Column::shrinking("URL"),
    ];

    fn rows() -> Vec<Vec<String>> {
        vec![
            vec![
                "dev".into(),
                "12".into(),
                "https://example.com/a/long/path".into(),
            ],
            vec!["a-very-long-name".into(), "3".into(), "https://x".into()],
        ]
    }

    #[test]
    fn json_keeps_its_value_and_loses_its_terminal_controls() {
        let value = serde_json::json!({
            "url": "https://x/\u{202e}gnp.exe\u{9b}31m\u{1b}[2J\u{7f}",
            "emoji": "\u{1F600} ü",
            "tag": "\u{E0041}",
        });
        let text = serde_json::to_string(&value).unwrap();
        // serde_json leaves these raw.
        assert!(text.contains('\u{202e}') && text.contains('\u{9b}'));
        let escaped = escape_json(&text);
        assert!(escaped.chars().all(is_print), "{escaped:?}");
        assert!(escaped.contains(r"\u202e") && escaped.contains(r"\u009b"));
        // A character outside the BMP becomes a surrogate pair.
        assert!(escaped.contains(r"\udb40\udc41"), "{escaped}");
        // Printable text is left as it is.
        assert!(escaped.contains("\u{1F600} ü"));
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, value);
        // Nothing to escape: borrowed.
        assert!(matches!(escape_json(r#"{"a":"b c"}"#), Cow::Borrowed(_)));
    }

    #[test]
    fn columns_fit_their_content_and_line_up() {
        let layout = Layout::fit(&COLUMNS, &rows(), &[], None);
        assert_eq!(layout.header(), "NAME      N   URL");
        assert_eq!(
            layout.row(&rows()[0]),
            "dev       12  https://example.com/a/long/path"
        );
        assert_eq!(layout.row(&rows()[1]), "a-very-…  3   https://x");
    }

    #[test]
    fn the_shrinking_column_gives_way_to_the_terminal_width() {
        let layout = Layout::fit(&COLUMNS, &rows(), &[], Some(30));
        let line = layout.row(&rows()[0]);
        assert_eq!(line, "dev       12  https://example…");
        assert_eq!(line.chars().count(), 30);
        // Never narrower than the minimum.
        let narrow = Layout::fit(&COLUMNS, &rows(), &[], Some(5));
        assert_eq!(
            narrow.row(&rows()[0]).chars().count(),
            8 + 2 + 2 + 2 + MIN_SHRUNK
        );
    }

    #[test]
    fn hostile_text_is_quoted() {
        assert_eq!(clean("https://example.com/é😀"), "https://example.com/é😀");
        assert_eq!(
            clean("https://x/\u{1b}[31mred\r\n[API] forged"),
            r#""https://x/\x1b[31mred\r\n[API] forged""#
        );
        assert_eq!(clean("a\u{202e}b"), r#""a\u202eb""#);
    }
}
