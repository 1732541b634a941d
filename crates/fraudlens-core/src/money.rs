//! Amounts in integer minor units of a currency, so sums are exact and no
//! rounding depends on the order in which transactions arrive.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An ISO 4217 style currency code: three ASCII uppercase letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

/// A non-negative amount of money in minor units (cents for EUR, yen for JPY).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Amount {
    minor: i64,
    currency: Currency,
}

/// Why an amount or currency could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a decimal number.
    #[error("unparsable amount {value:?}")]
    Unparsable {
        /// The offending text, shortened.
        value: String,
    },
    /// Below zero: refunds and reversals are not transactions to score.
    #[error("amount {value:?} is negative")]
    Negative {
        /// The offending text, shortened.
        value: String,
    },
    /// Larger than fraudlens can represent exactly.
    #[error("amount {value:?} is too large")]
    TooLarge {
        /// The offending text, shortened.
        value: String,
    },
    /// Minor units must be whole numbers.
    #[error("amount {value:?} in minor units is not a whole number")]
    FractionalMinor {
        /// The offending text, shortened.
        value: String,
    },
    /// Not three ASCII letters.
    #[error("invalid currency {value:?} (expected a three-letter code such as EUR)")]
    Currency {
        /// The offending text, shortened.
        value: String,
    },
}

/// Largest amount in micro-units (see [`Amount::micros`]): about 9.2e12 major
/// units, so the micro-unit form always fits in an i64.
const MAX_MICROS: i64 = i64::MAX;

impl Currency {
    /// Parses a code case-insensitively (`eur` → `EUR`).
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        let text = text.trim();
        let bytes = text.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(AmountError::Currency { value: shorten(text) });
        }
        Ok(Self([
            bytes[0].to_ascii_uppercase(),
            bytes[1].to_ascii_uppercase(),
            bytes[2].to_ascii_uppercase(),
        ]))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // invariant: built only from ASCII letters
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point (ISO 4217 minor unit): 0 for JPY, 3 for KWD, else 2.
    pub fn exponent(self) -> u32 {
        match &self.0 {
            b"BIF" | b"CLP" | b"DJF" | b"GNF" | b"ISK" | b"JPY" | b"KMF" | b"KRW" | b"PYG" | b"RWF" | b"UGX"
            | b"UYI" | b"VND" | b"VUV" | b"XAF" | b"XOF" | b"XPF" => 0,
            b"BHD" | b"IQD" | b"JOD" | b"KWD" | b"LYD" | b"OMR" | b"TND" => 3,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Amount {
    /// An amount of `minor` minor units.
    pub fn from_minor(minor: i64, currency: Currency) -> Result<Self, AmountError> {
        if minor < 0 {
            return Err(AmountError::Negative {
                value: minor.to_string(),
            });
        }
        if minor > MAX_MICROS / 10i64.pow(6 - currency.exponent().min(6)) {
            return Err(AmountError::TooLarge {
                value: minor.to_string(),
            });
        }
        Ok(Self { minor, currency })
    }

    /// Parses a decimal amount in major units (`"12.34"` EUR is 1234 cents).
    /// Digits beyond the currency's minor unit are rounded half away from zero,
    /// because exports often carry float noise such as `57.160000000000004`.
    pub fn parse_major(text: &str, currency: Currency) -> Result<Self, AmountError> {
        let text = text.trim();
        let unparsable = || AmountError::Unparsable { value: shorten(text) };
        if let Some(magnitude) = text.strip_prefix('-').filter(|rest| !rest.is_empty()) {
            // "-0.00" is zero; anything else below zero is refused
            return match Self::parse_major(magnitude, currency) {
                Ok(amount) if amount.minor == 0 => Ok(amount),
                Ok(_) => Err(AmountError::Negative { value: shorten(text) }),
                Err(error) => Err(error),
            };
        }
        let body = text.strip_prefix('+').unwrap_or(text);
        if body.contains(['e', 'E']) {
            let value: f64 = body.parse().map_err(|_| unparsable())?;
            return Self::from_major_f64(value, currency).map_err(|error| match error {
                AmountError::Unparsable { .. } => unparsable(),
                other => other,
            });
        }
        let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
        if (int_part.is_empty() && frac_part.is_empty())
            || !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(unparsable());
        }
        let exponent = currency.exponent() as usize;
        let too_large = || AmountError::TooLarge { value: shorten(text) };
        let mut minor: i64 = 0;
        for b in int_part.bytes() {
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(b - b'0')))
                .ok_or_else(too_large)?;
        }
        let frac = frac_part.as_bytes();
        for idx in 0..exponent {
            let digit = frac.get(idx).map_or(0, |b| i64::from(b - b'0'));
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(digit))
                .ok_or_else(too_large)?;
        }
        if frac.get(exponent).is_some_and(|b| *b >= b'5') {
            minor = minor.checked_add(1).ok_or_else(too_large)?;
        }
        Self::from_minor(minor, currency).map_err(|_| too_large())
    }

    /// Parses a whole number of minor units (`"1234"` EUR is 12.34 EUR), as payment APIs such as Stripe send.
    pub fn parse_minor(text: &str, currency: Currency) -> Result<Self, AmountError> {
        let text = text.trim();
        if let Ok(minor) = text.parse::<i64>() {
            return Self::from_minor(minor, currency).map_err(|error| match error {
                AmountError::Negative { .. } => AmountError::Negative { value: shorten(text) },
                _ => AmountError::TooLarge { value: shorten(text) },
            });
        }
        match text.parse::<f64>() {
            Ok(value) if value < 0.0 => Err(AmountError::Negative { value: shorten(text) }),
            Ok(value) if value.is_finite() && value.fract() == 0.0 && value < 9.0e15 => {
                Self::from_minor(value as i64, currency)
            }
            Ok(value) if value.is_finite() && value.fract() != 0.0 => {
                Err(AmountError::FractionalMinor { value: shorten(text) })
            }
            Ok(value) if value.is_finite() => Err(AmountError::TooLarge { value: shorten(text) }),
            _ => Err(AmountError::Unparsable { value: shorten(text) }),
        }
    }

    /// Converts a float in major units, rounding to the nearest minor unit.
    pub fn from_major_f64(value: f64, currency: Currency) -> Result<Self, AmountError> {
        if value.is_nan() {
            return Err(AmountError::Unparsable {
                value: value.to_string(),
            });
        }
        if value < 0.0 {
            return Err(AmountError::Negative {
                value: value.to_string(),
            });
        }
        let minor = (value * 10f64.powi(currency.exponent() as i32)).round();
        if !minor.is_finite() || minor >= 9.0e15 {
            return Err(AmountError::TooLarge {
                value: value.to_string(),
            });
        }
        Self::from_minor(minor as i64, currency)
    }

    /// Minor units.
    pub fn minor(self) -> i64 {
        self.minor
    }

    /// The currency.
    pub fn currency(self) -> Currency {
        self.currency
    }

    /// The amount in major units as a float (for features and display).
    pub fn major(self) -> f64 {
        self.minor as f64 / 10f64.powi(self.currency.exponent() as i32)
    }

    /// The amount in millionths of a major unit: one integer scale for every
    /// currency, so the feature engine can keep exact integer sums.
    pub fn micros(self) -> i64 {
        // cannot overflow: from_minor bounds `minor` so that this fits
        self.minor * 10i64.pow(6 - self.currency.exponent().min(6))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = self.currency.exponent();
        if exponent == 0 {
            return write!(f, "{}", self.minor);
        }
        let scale = 10i64.pow(exponent);
        write!(
            f,
            "{}.{:0width$}",
            self.minor / scale,
            self.minor % scale,
            width = exponent as usize
        )
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::parse("eur").unwrap()
    }

    #[test]
    fn major_amounts() {
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        for (text, currency, minor) in [
            ("12.34", eur(), 1234),
            ("12", eur(), 1200),
            ("12.3", eur(), 1230),
            (".5", eur(), 50),
            ("57.160000000000004", eur(), 5716),
            ("0.005", eur(), 1),
            ("0.004", eur(), 0),
            ("1e3", eur(), 100_000),
            ("1500", jpy, 1500),
            ("1.2345", kwd, 1235),
            ("+3.10", eur(), 310),
        ] {
            let amount = Amount::parse_major(text, currency).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(amount.minor(), minor, "{text}");
        }
    }

    #[test]
    fn bad_amounts() {
        for text in [
            "",
            ".",
            "abc",
            "1,5",
            "-3",
            "1.2.3",
            "NaN",
            "inf",
            "99999999999999999999",
        ] {
            assert!(Amount::parse_major(text, eur()).is_err(), "{text:?}");
        }
        assert_eq!(
            Amount::parse_major("-3", eur()).unwrap_err().to_string(),
            "amount \"-3\" is negative"
        );
        assert!(matches!(
            Amount::parse_minor("12.5", eur()),
            Err(AmountError::FractionalMinor { .. })
        ));
        assert_eq!(Amount::parse_minor("1234", eur()).unwrap().to_string(), "12.34");
    }

    #[test]
    fn micros_share_one_scale() {
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(Amount::parse_major("12.34", eur()).unwrap().micros(), 12_340_000);
        assert_eq!(Amount::parse_major("1500", jpy).unwrap().micros(), 1_500_000_000);
        assert!(Amount::from_minor(i64::MAX / 10, eur()).is_err());
        assert!(Amount::from_minor(i64::MAX / 10_000, eur()).unwrap().micros() > 0);
    }

    #[test]
    fn currency_codes() {
        assert_eq!(Currency::parse(" usd ").unwrap().as_str(), "USD");
        assert!(Currency::parse("EURO").is_err());
        assert!(Currency::parse("E1R").is_err());
    }
}
