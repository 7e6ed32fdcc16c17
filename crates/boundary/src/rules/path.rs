//! `path=` patterns: `/`-separated segments compared exactly (neither side
//! is percent-decoded), `*` for exactly one segment, a trailing `*` also for
//! any number of further segments, and `/` alone for every path.

/// One segment of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Any,
    Exact(String),
}

/// A compiled path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    /// Empty: the pattern `/`, which matches every path.
    segments: Vec<Segment>,
}

impl PathPattern {
    pub(crate) fn parse(pattern: &str) -> Result<PathPattern, String> {
        if pattern.is_empty() {
            return Err("empty pattern (write / for every path)".into());
        }
        // Like the reference, a pattern without its leading `/` means the same.
        let rest = pattern.strip_prefix('/').unwrap_or(pattern);
        if rest.is_empty() {
            return Ok(PathPattern {
                segments: Vec::new(),
            });
        }
        let segments = rest
            .split('/')
            .map(parse_segment)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PathPattern { segments })
    }

    /// Whether `path` (a URL path as sent, starting with `/`) matches.
    pub fn matches(&self, path: &str) -> bool {
        if self.segments.is_empty() {
            return true;
        }
        let path = path.strip_prefix('/').unwrap_or(path);
        let actual: Vec<&str> = path.split('/').collect();
        let trailing_any = self.segments.last() == Some(&Segment::Any);
        let count_ok = if trailing_any {
            actual.len() >= self.segments.len()
        } else {
            actual.len() == self.segments.len()
        };
        count_ok
            && self
                .segments
                .iter()
                .zip(&actual)
                .all(|(pattern, segment)| match pattern {
                    Segment::Any => true,
                    Segment::Exact(exact) => exact == segment,
                })
    }
}

fn parse_segment(segment: &str) -> Result<Segment, String> {
    if segment == "*" {
        return Ok(Segment::Any);
    }
    if segment.contains('*') {
        return Err(format!("segment {segment:?}: a * must be a whole segment"));
    }
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'%' {
            let escape = bytes.get(i + 1..i + 3);
            if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                return Err(format!(
                    "segment {segment:?}: % must start an escape like %2F"
                ));
            }
            i += 3;
            continue;
        }
        if !is_pchar(c) {
            let shown = segment[i..].chars().next().unwrap_or('?');
            return Err(format!(
                "segment {segment:?}: {shown:?} is not allowed in a URL path"
            ));
        }
        i += 1;
    }
    Ok(Segment::Exact(segment.to_owned()))
}

/// RFC 3986 `pchar` without `%` (escapes are checked apart) and without the
/// comma, which separates patterns.
fn is_pchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~!$&'()*+;=:@".contains(&c)
}
