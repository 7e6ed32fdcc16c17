//! The forms time takes in text, written once for the server and the CLI:
//! durations (flags such as `--shutdown-grace`, `--retention`), points in
//! time given as a timestamp or a duration before now (`since`/`until` of
//! the query API, `warden logs --since`), and the `YYYY-MM-DD HH:MM:SS.mmm`
//! stamp of the boundary line and of `warden logs` tables.

use std::cell::Cell;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp};

/// Reads a duration: units `ns`, `us`, `ms`, `s`, `m`, `h`, `d` (24 hours)
/// and `w` (7 days), combined and with a fraction on the last one, as in
/// `250ms`, `10s`, `1m30s`, `1h 30m`, `1.5h`, `7d`; or ISO 8601 (`PT10S`,
/// `P7D`). Months and years are refused (their length varies), and so are
/// negative durations.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed = parse_signed(text.trim())
        .ok_or_else(|| format!("{text:?} is not a duration like 250ms, 10s, 1m30s, 2h or 7d"))?;
    Duration::try_from(signed).map_err(|_| format!("{text:?} is negative"))
}

/// A duration in any form [`parse_duration`] takes, signed; `None` when
/// `text` is not one.
fn parse_signed(text: &str) -> Option<SignedDuration> {
    let span: Span = text.parse().ok()?;
    span.to_duration(SpanRelativeTo::days_are_24_hours()).ok()
}

/// A point in time given as an RFC 3339 timestamp
/// (`2025-12-08T20:58:46Z`, any offset) or as a duration before `now` in
/// any form [`parse_duration`] takes (`15m`, `2h`, `7d`, `1h30m`).
pub fn parse_time(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Some(duration) = parse_signed(text).filter(|d| !d.is_negative()) {
        return now
            .checked_sub(duration)
            .map_err(|_| format!("{text:?} reaches back too far"));
    }
    Timestamp::from_str(text).map_err(|_| {
        format!(
            "{text:?} is neither a duration (like 15m, 2h, 7d) nor an RFC 3339 timestamp (like 2025-12-08T20:58:46Z)"
        )
    })
}

/// Appends `YYYY-MM-DD HH:MM:SS.mmm` in UTC, milliseconds truncated (not
/// rounded): the boundary line's leading stamp (`docs/stderr-format.md`).
/// Inlinable: the server's line formatter calls it for every record.
#[inline]
pub fn push_stamp(out: &mut String, t: Timestamp) {
    push_utc_date_time(out, t, ' ');
    out.push('.');
    push_padded(out, utc_subsec_nanos(t) / 1_000_000, 3);
}

/// The nanoseconds past the second that `t`'s UTC clock shows (before 1970
/// too, where the timestamp's own fraction counts back from the next
/// second).
#[inline]
pub fn utc_subsec_nanos(t: Timestamp) -> u32 {
    t.subsec_nanosecond()
        .rem_euclid(1_000_000_000)
        .unsigned_abs()
}

/// `t` as a civil date and time in UTC.
#[inline]
pub fn utc(t: Timestamp) -> DateTime {
    jiff::tz::Offset::UTC.to_datetime(t)
}

/// Width of `YYYY-MM-DD HH:MM:SS`.
const DATE_TIME_LEN: usize = 19;

thread_local! {
    /// The whole second last written by [`push_utc_date_time`] on this
    /// thread, and its text (with a space between date and time).
    static LAST_SECOND: Cell<(i64, [u8; DATE_TIME_LEN])> =
        const { Cell::new((i64::MIN, [b'0'; DATE_TIME_LEN])) };
}

/// Appends `YYYY-MM-DD<separator>HH:MM:SS` of `t` in UTC (`separator` is
/// ASCII: a space or `T`). The lines of a batch mostly share their second,
/// so the text of the last second written is kept per thread and copied:
/// converting and printing the date for every line was about a twentieth
/// of the control plane's CPU per record at saturation.
#[inline]
pub fn push_utc_date_time(out: &mut String, t: Timestamp, separator: char) {
    // The UTC clock's second: rounded down, not towards zero, before 1970.
    let second = t.as_second() - i64::from(t.subsec_nanosecond() < 0);
    let (cached, mut text) = LAST_SECOND.get();
    if cached != second {
        let dt = utc(t);
        match date_time_digits(&dt) {
            Some(digits) => {
                text = digits;
                LAST_SECOND.set((second, text));
            }
            None => return push_date_time(out, &dt, separator),
        }
    }
    // Digits and separators only: ASCII, so always UTF-8.
    let (date, time) = text.split_at(10);
    out.push_str(std::str::from_utf8(date).unwrap_or_default());
    out.push(separator);
    out.push_str(std::str::from_utf8(&time[1..]).unwrap_or_default());
}

/// `YYYY-MM-DD HH:MM:SS` as bytes, for years 0 to 9999 (the others are
/// wider or signed and go through [`push_date_time`]).
fn date_time_digits(dt: &DateTime) -> Option<[u8; DATE_TIME_LEN]> {
    let year = u16::try_from(dt.year()).ok().filter(|y| *y <= 9999)?;
    let mut text = *b"0000-00-00 00:00:00";
    let two = |text: &mut [u8; DATE_TIME_LEN], at: usize, value: u8| {
        text[at] = b'0' + value / 10;
        text[at + 1] = b'0' + value % 10;
    };
    // `two` takes values below 100: the century and the rest of the year.
    two(&mut text, 0, (year / 100) as u8);
    two(&mut text, 2, (year % 100) as u8);
    two(&mut text, 5, dt.month().unsigned_abs());
    two(&mut text, 8, dt.day().unsigned_abs());
    two(&mut text, 11, dt.hour().unsigned_abs());
    two(&mut text, 14, dt.minute().unsigned_abs());
    two(&mut text, 17, dt.second().unsigned_abs());
    Some(text)
}

/// Appends `YYYY-MM-DD<separator>HH:MM:SS`; years before 1 as `write!`'s
/// `{:04}` prints them (`-001`).
#[inline]
pub fn push_date_time(out: &mut String, dt: &DateTime, separator: char) {
    match u32::try_from(dt.year()) {
        Ok(year) => push_padded(out, year, 4),
        // Writing to a String cannot fail.
        Err(_) => drop(write!(out, "{:04}", dt.year())),
    }
    out.push('-');
    push_padded(out, dt.month() as u32, 2);
    out.push('-');
    push_padded(out, dt.day() as u32, 2);
    out.push(separator);
    push_padded(out, dt.hour() as u32, 2);
    out.push(':');
    push_padded(out, dt.minute() as u32, 2);
    out.push(':');
    push_padded(out, dt.second() as u32, 2);
}

/// Appends `value` in decimal with leading zeros to at least `width`
/// digits (at most 10, the widest `u32`). Written by hand because `write!` with `{:02}` goes through
/// `core::fmt`'s padding machinery, which took a tenth of the control
/// plane's CPU per record at saturation (the stamps are in every line).
#[inline]
pub fn push_padded(out: &mut String, value: u32, width: usize) {
    debug_assert!(width <= 10, "a u32 has at most 10 digits");
    let mut digits = [b'0'; 10];
    let mut rest = value;
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let start = start.min(digits.len().saturating_sub(width));
    // Pushed one by one: ASCII digits need no UTF-8 check or encoding.
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}

/// [`push_stamp`] into a new string.
pub fn stamp(t: Timestamp) -> String {
    let mut out = String::with_capacity(23);
    push_stamp(&mut out, t);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-12-08T20:00:00Z".parse().unwrap()
    }

    #[test]
    fn durations_take_every_unit_up_to_weeks() {
        let s = Duration::from_secs;
        for (text, want) in [
            ("10s", s(10)),
            ("1m30s", s(90)),
            ("1m 30s", s(90)),
            ("250ms", Duration::from_millis(250)),
            ("2h", s(7200)),
            ("1.5h", s(5400)),
            ("7d", s(7 * 86_400)),
            ("2w", s(14 * 86_400)),
            ("1d12h", s(36 * 3600)),
            ("PT10S", s(10)),
            ("P7D", s(7 * 86_400)),
            ("0s", s(0)),
            (" 5m ", s(300)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text:?}");
        }
        for bad in [
            "", "15", "m", "15x", "-5m", "5m ago", "1 month", "2y", "soon",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
        }
    }

    #[test]
    fn times_are_durations_before_now_or_timestamps() {
        let at = |s: &str| parse_time(s, now()).unwrap().to_string();
        assert_eq!(at("15m"), "2025-12-08T19:45:00Z");
        assert_eq!(at("2h"), "2025-12-08T18:00:00Z");
        assert_eq!(at("7d"), "2025-12-01T20:00:00Z");
        assert_eq!(at("1w"), "2025-12-01T20:00:00Z");
        assert_eq!(at("1h30m"), "2025-12-08T18:30:00Z");
        assert_eq!(at("1.5h"), "2025-12-08T18:30:00Z");
        assert_eq!(at("0s"), "2025-12-08T20:00:00Z");
        assert_eq!(at("2025-12-08T21:58:46.5+01:00"), "2025-12-08T20:58:46.5Z");
        for bad in ["", "15", "m", "15x", "yesterday", "2025-12-08", "-5m"] {
            let e = parse_time(bad, now()).unwrap_err();
            assert!(e.contains("neither a duration"), "{bad:?}: {e}");
        }
        assert!(parse_time("1000000w", now()).is_err());
    }

    #[test]
    fn stamps_truncate_to_milliseconds_in_utc() {
        let t: Timestamp = "2025-12-08T21:58:46.093999999+01:00".parse().unwrap();
        assert_eq!(stamp(t), "2025-12-08 20:58:46.093");
        assert_eq!(stamp(Timestamp::UNIX_EPOCH), "1970-01-01 00:00:00.000");
    }

    /// `YYYY-MM-DD<separator>HH:MM:SS` through `core::fmt`'s padding: what
    /// the hand-written digits must agree with.
    fn padded_date_time(t: Timestamp, separator: char) -> String {
        let dt = utc(t);
        format!(
            "{:04}-{:02}-{:02}{separator}{:02}:{:02}:{:02}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
        )
    }

    /// The second remembered per thread never leaks into another one: the
    /// same instants in changing order (back and forth across second,
    /// minute, year and 1970 boundaries, fractions before 1970 included)
    /// print as the civil time of each, with either separator.
    #[test]
    fn date_times_are_right_whichever_second_came_before() {
        let instants: Vec<Timestamp> = [
            (0, 0),
            (0, 999_999_999),
            (-1, 0),
            (0, -1),
            (0, -999_999_999),
            (-1, -500_000_000),
            (59, 999_999_999),
            (60, 0),
            (1_767_225_599, 999_999_999),
            (1_767_225_600, 0),
            (1_767_225_600, 1),
            (Timestamp::MIN.as_second(), 0),
            (Timestamp::MAX.as_second(), 999_999_999),
        ]
        .into_iter()
        .map(|(s, ns)| Timestamp::new(s, ns).unwrap())
        .collect();
        for (i, &t) in instants.iter().enumerate() {
            for &before in &instants[..=i] {
                for separator in [' ', 'T'] {
                    let mut out = String::new();
                    push_utc_date_time(&mut out, before, separator);
                    out.clear();
                    push_utc_date_time(&mut out, t, separator);
                    assert_eq!(out, padded_date_time(t, separator), "{t} after {before}");
                }
            }
        }
        let t = Timestamp::new(-1, -250_000_000).unwrap();
        assert_eq!(utc_subsec_nanos(t), 750_000_000);
        assert_eq!(stamp(t), "1969-12-31 23:59:58.750");
    }

    /// The hand-written digits agree with `core::fmt`'s padding over the
    /// whole range of instants, negative years included.
    #[test]
    fn stamps_match_the_padded_format_everywhere() {
        let reference = |t: Timestamp| {
            let millis = utc(t).subsec_nanosecond() / 1_000_000;
            format!("{}.{millis:03}", padded_date_time(t, ' '))
        };
        let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
        let step = (max - min) / 100_003;
        let mut second = min;
        while second < max {
            let t = Timestamp::new(second, (second.rem_euclid(1_000_000_000)) as i32).unwrap();
            assert_eq!(stamp(t), reference(t), "{t}");
            second += step;
        }
        for value in [0, 7, 10, 99, 100, 12_345, u32::MAX] {
            for width in [0, 1, 2, 4, 9, 10] {
                let mut out = String::new();
                push_padded(&mut out, value, width);
                assert_eq!(out, format!("{value:0width$}"));
            }
        }
    }
}
