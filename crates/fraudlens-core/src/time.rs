//! Event time: milliseconds since the Unix epoch (UTC), parsed from the
//! formats real exports use. Calendar arithmetic is done here by hand (proleptic
//! Gregorian, no leap seconds) so that the hot paths never touch a time library.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

/// How a timestamp field is written in the input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// Numbers are unix seconds below 1e11 and unix milliseconds above; text is
    /// parsed as a date-time.
    #[default]
    Auto,
    /// RFC 3339 (`2026-01-01T10:00:00Z`, `…+02:00`, fractional seconds) or
    /// `YYYY-MM-DD HH:MM:SS`; without an offset the time is taken as UTC.
    #[serde(alias = "rfc3339")]
    Datetime,
    /// Seconds since the Unix epoch, integer or decimal.
    UnixS,
    /// Milliseconds since the Unix epoch.
    UnixMs,
}

/// Why a timestamp could not be read. Messages are lowercase and name the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not any of the accepted formats.
    #[error("unparsable timestamp {value:?} (expected RFC 3339, `YYYY-MM-DD HH:MM:SS`, unix seconds or milliseconds)")]
    Unparsable {
        /// The offending text, shortened.
        value: String,
    },
    /// A number too small to be a recent unix time, in `auto` mode.
    #[error(
        "ambiguous timestamp {value:?}: a number this small is not read as unix time in auto mode (set timestamp_format)"
    )]
    Ambiguous {
        /// The offending text, shortened.
        value: String,
    },
    /// Parsed, but outside the supported range (years 1 to 9999).
    #[error("timestamp {value:?} is out of range")]
    OutOfRange {
        /// The offending text, shortened.
        value: String,
    },
}

/// Calendar view of a timestamp at a fixed UTC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    /// Proleptic Gregorian year.
    pub year: i64,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    /// 0..=23.
    pub hour: u32,
    /// 0..=59.
    pub minute: u32,
    /// 0..=59.
    pub second: u32,
    /// 0..=999.
    pub millisecond: u32,
    /// Monday = 0 … Sunday = 6.
    pub weekday: u32,
}

const MS_PER_DAY: i64 = 86_400_000;
/// 0001-01-01T00:00:00Z.
const MIN_MS: i64 = -62_135_596_800_000;
/// 9999-12-31T23:59:59.999Z.
const MAX_MS: i64 = 253_402_300_799_999;

impl Timestamp {
    /// Wraps milliseconds since the epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Builds a timestamp from a UTC calendar date and time; `None` if a part
    /// is out of range.
    pub fn from_civil(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<Self> {
        if !(1..=9999).contains(&year)
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(Self(
            days * MS_PER_DAY + (i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)) * 1000,
        ))
    }

    /// Reads a timestamp written in `format`.
    pub fn parse(text: &str, format: TimestampFormat) -> Result<Self, TimestampError> {
        let text = text.trim();
        let parsed = match format {
            TimestampFormat::Datetime => parse_datetime(text),
            TimestampFormat::UnixS => parse_unix(text, 1000.0),
            TimestampFormat::UnixMs => parse_unix(text, 1.0),
            TimestampFormat::Auto => match text.parse::<f64>() {
                // numbers below 1e9 (before 2001 as unix seconds) are more likely
                // something else, e.g. a compact date such as 20260101
                Ok(value) if looks_numeric(text) && value.abs() < 1e9 => {
                    return Err(TimestampError::Ambiguous { value: shorten(text) });
                }
                Ok(value) if looks_numeric(text) && value.abs() >= 1e11 => parse_unix(text, 1.0),
                Ok(_) if looks_numeric(text) => parse_unix(text, 1000.0),
                _ => parse_datetime(text),
            },
        }?;
        if !(MIN_MS..=MAX_MS).contains(&parsed) {
            return Err(TimestampError::OutOfRange { value: shorten(text) });
        }
        Ok(Self(parsed))
    }

    /// Calendar fields at `utc_offset_minutes` from UTC.
    pub fn civil(self, utc_offset_minutes: i32) -> CivilTime {
        let local = self.0 + i64::from(utc_offset_minutes) * 60_000;
        let days = local.div_euclid(MS_PER_DAY);
        let ms_of_day = local.rem_euclid(MS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let secs = ms_of_day / 1000;
        CivilTime {
            year,
            month,
            day,
            hour: (secs / 3600) as u32,
            minute: (secs / 60 % 60) as u32,
            second: (secs % 60) as u32,
            millisecond: (ms_of_day % 1000) as u32,
            weekday: (days + 3).rem_euclid(7) as u32,
        }
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC; milliseconds only when they are not zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.civil(0);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        )?;
        if c.millisecond != 0 {
            write!(f, ".{:03}", c.millisecond)?;
        }
        f.write_str("Z")
    }
}

fn looks_numeric(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || b == b'-' || b == b'+')
        && body.as_bytes()[0].is_ascii_digit()
}

fn parse_unix(text: &str, ms_per_unit: f64) -> Result<i64, TimestampError> {
    if !looks_numeric(text) {
        return Err(unparsable(text));
    }
    // integers take an exact path: f64 would lose precision on large millisecond values
    if let Ok(integer) = text.parse::<i64>() {
        let ms = if ms_per_unit == 1.0 {
            Some(integer)
        } else {
            integer.checked_mul(1000)
        };
        return ms.ok_or_else(|| TimestampError::OutOfRange { value: shorten(text) });
    }
    let value: f64 = text.parse().map_err(|_| unparsable(text))?;
    let ms = (value * ms_per_unit).round();
    if !ms.is_finite() || ms.abs() > 9.0e15 {
        return Err(TimestampError::OutOfRange { value: shorten(text) });
    }
    Ok(ms as i64)
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]]][Z|±HH:MM|±HHMM|±HH]`
fn parse_datetime(text: &str) -> Result<i64, TimestampError> {
    let err = || unparsable(text);
    let mut cursor = Cursor {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let year = cursor.digits(4).ok_or_else(err)?;
    cursor.expect(b'-').ok_or_else(err)?;
    let month = cursor.digits(2).ok_or_else(err)?;
    cursor.expect(b'-').ok_or_else(err)?;
    let day = cursor.digits(2).ok_or_else(err)?;
    let (mut hour, mut minute, mut second, mut millis) = (0, 0, 0, 0);
    let mut offset_minutes = 0i64;
    if !cursor.done() {
        match cursor.next() {
            Some(b'T' | b't' | b' ') => {}
            _ => return Err(err()),
        }
        hour = cursor.digits(2).ok_or_else(err)?;
        cursor.expect(b':').ok_or_else(err)?;
        minute = cursor.digits(2).ok_or_else(err)?;
        if cursor.peek() == Some(b':') {
            cursor.next();
            second = cursor.digits(2).ok_or_else(err)?;
            if matches!(cursor.peek(), Some(b'.' | b',')) {
                cursor.next();
                let start = cursor.pos;
                // digits beyond milliseconds are read and dropped
                let mut scale = 100;
                while let Some(b) = cursor.peek().filter(u8::is_ascii_digit) {
                    millis += i64::from(b - b'0') * scale;
                    scale /= 10;
                    cursor.next();
                }
                if cursor.pos == start {
                    return Err(err());
                }
            }
        }
        match cursor.next() {
            None => {}
            Some(b'Z' | b'z') => {}
            Some(sign @ (b'+' | b'-')) => {
                let hours = cursor.digits(2).ok_or_else(err)?;
                if cursor.peek() == Some(b':') {
                    cursor.next();
                }
                let minutes = if cursor.done() {
                    0
                } else {
                    cursor.digits(2).ok_or_else(err)?
                };
                if hours > 23 || minutes > 59 {
                    return Err(err());
                }
                offset_minutes = hours * 60 + minutes;
                if sign == b'-' {
                    offset_minutes = -offset_minutes;
                }
            }
            Some(_) => return Err(err()),
        }
        if !cursor.done() {
            return Err(err());
        }
    }
    let (month, day) = (month as u32, day as u32);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(err());
    }
    if year == 0 {
        return Err(TimestampError::OutOfRange { value: shorten(text) });
    }
    let days = days_from_civil(year, month, day);
    Ok(days * MS_PER_DAY + (hour * 3600 + minute * 60 + second - offset_minutes * 60) * 1000 + millis)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }
    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }
    fn digits(&mut self, n: usize) -> Option<i64> {
        let mut value = 0i64;
        for _ in 0..n {
            let b = self.next().filter(u8::is_ascii_digit)?;
            value = value * 10 + i64::from(b - b'0');
        }
        Some(value)
    }
}

fn unparsable(text: &str) -> TimestampError {
    TimestampError::Unparsable { value: shorten(text) }
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(text: &str, format: TimestampFormat, expected: &str) {
        let ts = Timestamp::parse(text, format).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(ts.to_string(), expected, "{text}");
    }

    #[test]
    fn accepted_formats() {
        use TimestampFormat::*;
        check("2026-01-01T10:00:00Z", Auto, "2026-01-01T10:00:00Z");
        check("2026-01-01T10:00:00.25+02:00", Auto, "2026-01-01T08:00:00.250Z");
        check("2026-01-01 10:00:00", Auto, "2026-01-01T10:00:00Z");
        check("2026-01-01 10:00", Datetime, "2026-01-01T10:00:00Z");
        check("2026-03-01", Datetime, "2026-03-01T00:00:00Z");
        check("2026-01-01T00:30:00-0130", Datetime, "2026-01-01T02:00:00Z");
        check("1767261600", Auto, "2026-01-01T10:00:00Z");
        check("1767261600123", Auto, "2026-01-01T10:00:00.123Z");
        check("1767261600.5", UnixS, "2026-01-01T10:00:00.500Z");
        check("1767261600000", UnixMs, "2026-01-01T10:00:00Z");
        check("2026-03-01", Auto, "2026-03-01T00:00:00Z");
        check("2026-01-01T10:00:00.123456789123Z", Auto, "2026-01-01T10:00:00.123Z");
        check("20260101", UnixS, "1970-08-23T11:48:21Z");
        check(" 2024-02-29T23:59:59Z ", Auto, "2024-02-29T23:59:59Z");
    }

    #[test]
    fn rejected_formats() {
        for text in [
            "",
            "yesterday",
            "2026-13-01",
            "2025-02-29",
            "2026-01-01T24:00:00",
            "2026-01-01T10:00:00Zjunk",
            "2026/01/01",
            "2026-01-01T10:00:00.",
            "12:00",
            "1e400",
        ] {
            assert!(
                Timestamp::parse(text, TimestampFormat::Auto).is_err(),
                "{text:?} should be rejected"
            );
        }
        assert!(Timestamp::parse("2026-01-01", TimestampFormat::UnixS).is_err());
        assert!(Timestamp::parse("123456", TimestampFormat::Datetime).is_err());
    }

    #[test]
    fn error_messages_are_lowercase_and_name_the_value() {
        let error = Timestamp::parse("soon", TimestampFormat::Auto).unwrap_err().to_string();
        assert!(error.starts_with("unparsable timestamp \"soon\""), "{error}");
    }

    #[test]
    fn weekday_and_hour() {
        // 2026-01-03 is a Saturday
        let ts = Timestamp::parse("2026-01-03T23:30:00Z", TimestampFormat::Auto).unwrap();
        let c = ts.civil(0);
        assert_eq!((c.weekday, c.hour), (5, 23));
        let c = ts.civil(60);
        assert_eq!((c.weekday, c.hour, c.day), (6, 0, 4));
    }

    proptest! {
        /// Our hand-written calendar agrees with chrono over the whole supported range.
        #[test]
        fn agrees_with_chrono(ms in MIN_MS..=MAX_MS) {
            let ours = Timestamp::from_millis(ms).to_string();
            let theirs = chrono::DateTime::from_timestamp_millis(ms).unwrap();
            let parsed = chrono::DateTime::parse_from_rfc3339(&ours).unwrap();
            prop_assert_eq!(parsed.timestamp_millis(), theirs.timestamp_millis());
            prop_assert_eq!(Timestamp::parse(&ours, TimestampFormat::Auto).unwrap().as_millis(), ms);
            let c = Timestamp::from_millis(ms).civil(0);
            use chrono::{Datelike, Timelike};
            prop_assert_eq!(c.weekday, theirs.weekday().num_days_from_monday());
            prop_assert_eq!(c.hour, theirs.hour());
        }
    }
}
