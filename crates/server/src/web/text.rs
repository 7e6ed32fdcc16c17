//! Showing attacker-controlled text (URLs, rules, process and workspace
//! names): HTML escaping is maud's, on every value; this adds what escaping
//! does not cover, characters that are invisible or change how the text
//! around them looks (controls, ANSI escapes' ESC, bidi overrides and
//! isolates, zero-width characters). Each is shown as a marked `\u{..}`
//! instead, so a URL cannot pretend to be another.
//!
//! `web/app.js` (`shownInto`) does the same for records that arrive live;
//! the two must pick the same characters (the browser test checks both).

use maud::{Markup, html};

/// Whether `c` is shown as an escape.
pub fn is_hidden(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}'
        | '\u{feff}')
}

/// `text` as HTML: runs of ordinary characters as (escaped) text, each
/// hidden character as `<span class="esc">\u{hex}</span>`.
pub fn shown(text: &str) -> Markup {
    html! {
        @for part in parts(text) {
            @match part {
                Part::Text(t) => (t),
                Part::Hidden(c) => span.esc { "\\u{" (format!("{:x}", u32::from(c))) "}" },
            }
        }
    }
}

enum Part<'a> {
    Text(&'a str),
    Hidden(char),
}

fn parts(text: &str) -> Vec<Part<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if is_hidden(c) {
            if start < i {
                out.push(Part::Text(&text[start..i]));
            }
            out.push(Part::Hidden(c));
            start = i + c.len_utf8();
        }
    }
    if start < text.len() {
        out.push(Part::Text(&text[start..]));
    }
    out
}

/// A path segment or query value percent-encoded, for links built from
/// names (the API client's encoding).
pub use warden_api::client::encode_segment as path_segment;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped_and_hidden_characters_are_shown() {
        let html = shown("a<script>\"&'\u{1b}[31m\u{202e}b\u{2066}").into_string();
        assert_eq!(
            html,
            "a&lt;script&gt;&quot;&amp;'<span class=\"esc\">\\u{1b}</span>[31m\
             <span class=\"esc\">\\u{202e}</span>b<span class=\"esc\">\\u{2066}</span>"
        );
        assert_eq!(shown("plain é ✓").into_string(), "plain é ✓");
        for c in [
            '\n', '\t', '\u{85}', '\u{200f}', '\u{2028}', '\u{feff}', '\u{61c}',
        ] {
            assert!(is_hidden(c), "{c:?}");
        }
        for c in ['a', ' ', 'é', '\u{a0}', '\u{2070}'] {
            assert!(!is_hidden(c), "{c:?}");
        }
    }
}
