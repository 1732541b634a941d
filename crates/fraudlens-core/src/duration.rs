//! Durations written the way people write them in a config file: `30d`, `12h`,
//! `15m`, `45s`, `250ms`. Used for feature windows and label delays.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A positive duration with millisecond resolution, written as `<n><unit>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowDuration {
    millis: i64,
}

/// Why a duration could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {value:?}: expected a positive whole number and a unit (ms, s, m, h, d, w), e.g. \"7d\", of at most 100 years"
)]
pub struct DurationError {
    value: String,
}

const UNITS: [(&str, i64); 6] = [
    ("w", 604_800_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

impl WindowDuration {
    /// A duration of `days` days.
    pub const fn days(days: i64) -> Self {
        Self {
            millis: days * 86_400_000,
        }
    }

    /// Longest accepted duration: 100 years, far beyond any useful window, and
    /// small enough that sums of durations never overflow.
    pub const MAX: Self = Self {
        millis: 36_500 * 86_400_000,
    };

    /// A duration in milliseconds; `None` unless positive and at most [`Self::MAX`].
    pub const fn from_millis(millis: i64) -> Option<Self> {
        if millis > 0 && millis <= Self::MAX.millis {
            Some(Self { millis })
        } else {
            None
        }
    }

    /// Length in milliseconds (always > 0).
    pub const fn as_millis(self) -> i64 {
        self.millis
    }
}

impl FromStr for WindowDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || DurationError {
            value: text.chars().take(40).collect(),
        };
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
        let (number, unit) = text.split_at(split);
        let number: i64 = number.parse().map_err(|_| error())?;
        let (_, unit_ms) = UNITS.iter().find(|(name, _)| *name == unit).ok_or_else(error)?;
        number
            .checked_mul(*unit_ms)
            .and_then(Self::from_millis)
            .ok_or_else(error)
    }
}

impl fmt::Display for WindowDuration {
    /// The largest unit (up to days) that divides the duration exactly: `86400000` ms is `1d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // weeks are accepted on input but shown as days: `7d` reads better in feature names
        let (name, unit_ms) = UNITS[1..]
            .iter()
            .find(|(_, unit_ms)| self.millis % unit_ms == 0)
            .copied()
            .unwrap_or(("ms", 1));
        write!(f, "{}{name}", self.millis / unit_ms)
    }
}

impl Serialize for WindowDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WindowDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for (text, millis, shown) in [
            ("1d", 86_400_000, "1d"),
            ("24h", 86_400_000, "1d"),
            ("90m", 5_400_000, "90m"),
            ("2w", 1_209_600_000, "14d"),
            ("250ms", 250, "250ms"),
        ] {
            let duration: WindowDuration = text.parse().unwrap();
            assert_eq!(duration.as_millis(), millis);
            assert_eq!(duration.to_string(), shown);
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for text in [
            "",
            "d",
            "0d",
            "-1d",
            "1.5d",
            "7 days",
            "7y",
            "99999999999999999w",
            "36501d",
        ] {
            assert!(text.parse::<WindowDuration>().is_err(), "{text:?}");
        }
    }
}
