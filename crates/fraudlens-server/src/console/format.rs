//! How values are written on the console's pages and in its links.

use fraudlens_core::{Amount, Currency, Timestamp, TimestampFormat};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// A path segment: everything but unreserved characters escaped, so an id
/// holding `/`, `?`, `#` or `..` stays one segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A value as one path segment.
pub(super) fn segment(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// The case page of a transaction.
pub(super) fn case_url(id: &str) -> String {
    format!("/ui/cases/{}", segment(id))
}

/// A query string (without `?`) from pairs, empty values left out.
pub(super) fn query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if !value.is_empty() {
            out.append_pair(name, value);
        }
    }
    out.finish()
}

/// A query string of `pairs` with one more pair (replacing one of that name).
pub(super) fn query_with<'a>(pairs: &[(&'a str, &'a str)], name: &'a str, value: &'a str) -> String {
    query(
        pairs
            .iter()
            .copied()
            .filter(|(key, _)| *key != name)
            .chain([(name, value)]),
    )
}

/// `2026-12-07 16:40:29` (UTC, to the second).
pub(super) fn time(at: Timestamp) -> String {
    let text = at.to_string();
    let text = text.split('.').next().unwrap_or(&text).trim_end_matches('Z');
    text.replacen('T', " ", 1)
}

/// A time typed into a filter: RFC 3339, a date, or a `datetime-local`
/// value (read as UTC).
pub(super) fn parse_time(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Timestamp::parse(text, TimestampFormat::Auto)
        .or_else(|_| Timestamp::parse(&format!("{text}:00Z"), TimestampFormat::Auto))
        .or_else(|_| Timestamp::parse(&format!("{text}Z"), TimestampFormat::Auto))
        .ok()
}

/// `1,234.50 EUR`, in the currency's own minor units.
pub(super) fn amount(minor: i64, currency: &str) -> String {
    let Ok(parsed) = Currency::parse(currency) else {
        return format!("{minor} (minor units) {currency}");
    };
    let Ok(amount) = Amount::from_minor(minor, parsed) else {
        return format!("{minor} (minor units) {currency}");
    };
    let decimals = parsed.exponent() as usize;
    let text = format!("{:.*}", decimals, amount.major());
    let (whole, fraction) = text
        .split_once('.')
        .map_or((text.as_str(), None), |(w, f)| (w, Some(f)));
    let (sign, digits) = whole.strip_prefix('-').map_or(("", whole), |rest| ("-", rest));
    let mut grouped = String::new();
    for (idx, digit) in digits.chars().enumerate() {
        if idx > 0 && (digits.len() - idx) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    match fraction {
        Some(fraction) => format!("{sign}{grouped}.{fraction} {currency}"),
        None => format!("{sign}{grouped} {currency}"),
    }
}

/// A number as people read it: at most 4 significant decimals, `–` when missing.
pub(super) fn number(value: Option<f64>) -> String {
    match value {
        None => "–".to_owned(),
        Some(value) if !value.is_finite() => "–".to_owned(),
        Some(value) if value == value.trunc() && value.abs() < 1e15 => format!("{value:.0}"),
        Some(value) if value.abs() >= 100.0 => format!("{value:.2}"),
        Some(value) => {
            let text = format!("{value:.4}");
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
    }
}

/// A probability or score as a percentage: `87.3 %`.
pub(super) fn percent(value: Option<f64>) -> String {
    value
        .filter(|v| v.is_finite())
        .map_or_else(|| "–".to_owned(), |v| format!("{:.1} %", v * 100.0))
}

/// A status word for people: `pending_review` → `pending review`.
pub(super) fn words(text: &str) -> String {
    text.replace('_', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(case_url("t-1.a_b~"), "/ui/cases/t-1.a_b~");
        assert_eq!(case_url("../x?y#z /é"), "/ui/cases/..%2Fx%3Fy%23z%20%2F%C3%A9");
    }

    #[test]
    fn amounts_use_the_currency_s_minor_units() {
        assert_eq!(amount(123_456_789, "EUR"), "1,234,567.89 EUR");
        assert_eq!(amount(5, "EUR"), "0.05 EUR");
        assert_eq!(amount(1500, "JPY"), "1,500 JPY");
        assert_eq!(amount(7, "??"), "7 (minor units) ??");
    }

    #[test]
    fn filter_times_read_datetime_local_as_utc() {
        let at = parse_time("2026-12-07T16:40").unwrap();
        assert_eq!(time(at), "2026-12-07 16:40:00");
        assert_eq!(parse_time("2026-12-07T16:40:00Z"), Some(at));
        assert_eq!(parse_time(" "), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn query_strings_are_encoded_and_skip_empty_values() {
        assert_eq!(
            query([("entity", "a&b=c"), ("status", ""), ("sort", "time_desc")]),
            "entity=a%26b%3Dc&sort=time_desc"
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(Some(3.0)), "3");
        assert_eq!(number(Some(0.123_456)), "0.1235");
        assert_eq!(number(Some(1234.5678)), "1234.57");
        assert_eq!(number(None), "–");
        assert_eq!(number(Some(f64::NAN)), "–");
        assert_eq!(percent(Some(0.8734)), "87.3 %");
    }
}
