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
    /// More decimals than the currency has (`0.001` USD): rounding would
    /// store an amount nobody sent.
    #[error("amount {value:?} has more decimals than {currency} has ({exponent})")]
    TooPrecise {
        /// The offending text, shortened.
        value: String,
        /// The currency.
        currency: Currency,
        /// Its number of decimals.
        exponent: u32,
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
    ///
    /// Digits beyond the currency's minor unit must be zeros (`1.500` USD is
    /// 150 cents; `0.001` USD is refused, since rounding it would store an
    /// amount nobody sent), with one exception: float noise. Exports written
    /// from binary floats carry values such as `57.160000000000004`, which is
    /// within a few units in the last place of the f64 nearest 57.16; such a
    /// value is read as the amount it stands for.
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
        let too_precise = || AmountError::TooPrecise {
            value: shorten(text),
            currency,
            exponent: currency.exponent(),
        };
        if body.contains(['e', 'E']) {
            let value: f64 = body.parse().map_err(|_| unparsable())?;
            let amount = Self::from_major_f64(value, currency).map_err(|error| match error {
                AmountError::Unparsable { .. } => unparsable(),
                other => other,
            })?;
            return match is_float_noise(value, amount) {
                true => Ok(amount),
                false => Err(too_precise()),
            };
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
        let extra = frac.get(exponent..).unwrap_or_default();
        if extra.iter().all(|b| *b == b'0') {
            return Self::from_minor(minor, currency).map_err(|_| too_large());
        }
        // only float noise gets here: round to the amount it stands for, or refuse
        if extra[0] >= b'5' {
            minor = minor.checked_add(1).ok_or_else(too_large)?;
        }
        let amount = Self::from_minor(minor, currency).map_err(|_| too_large())?;
        // a plain decimal always parses as an f64
        let value: f64 = body.parse().map_err(|_| unparsable())?;
        match is_float_noise(value, amount) {
            true => Ok(amount),
            false => Err(too_precise()),
        }
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
        // `12.0000000000000001` is 12.0 as an f64: look at the digits themselves
        if let Some((_, fraction)) = text.split_once('.')
            && !fraction.contains(['e', 'E'])
            && fraction.bytes().any(|b| b != b'0')
        {
            return Err(AmountError::FractionalMinor { value: shorten(text) });
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

    /// Converts a float in major units, rounding to the nearest minor unit
    /// (the caller owns the float; text goes through [`Amount::parse_major`],
    /// which refuses extra decimals).
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

/// Whether `value` differs from `amount` only by float noise: by at most a
/// few units in the last place (what binary arithmetic and printing leave
/// behind) and by less than a thousandth of a minor unit (so no amount is
/// ever rounded by a visible digit, however large it is).
fn is_float_noise(value: f64, amount: Amount) -> bool {
    // exact: minor < 2^53 and the division is correctly rounded
    let exact = amount.minor as f64 / 10f64.powi(amount.currency.exponent() as i32);
    let ulp = f64::from_bits(exact.to_bits() + 1) - exact;
    let noise = (value - exact).abs();
    noise <= 4.0 * ulp && noise * 10f64.powi(amount.currency.exponent() as i32) < 1e-3
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
            ("57.159999999999997", eur(), 5716),
            ("0.30000000000000004", eur(), 30),
            ("1.500", eur(), 150),
            ("1.5000000", eur(), 150),
            ("0.000", eur(), 0),
            ("1e3", eur(), 100_000),
            ("5.716e1", eur(), 5716),
            ("1500", jpy, 1500),
            ("1500.00", jpy, 1500),
            ("1.2350", kwd, 1235),
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
    fn extra_decimals_are_refused() {
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        for (text, currency) in [
            ("0.001", eur()),
            ("0.005", eur()),
            ("0.004", eur()),
            ("1.0000001", eur()),
            ("57.1600001", eur()),
            ("1e-3", eur()),
            ("1.2345e0", eur()),
            ("1500.5", jpy),
            ("1.2345", kwd),
            ("-0.001", eur()),
            // noise on the f64 scale of a huge amount is a visible digit: refused
            ("90000000000.001", eur()),
        ] {
            assert!(
                matches!(Amount::parse_major(text, currency), Err(AmountError::TooPrecise { .. })),
                "{text} {currency}: {:?}",
                Amount::parse_major(text, currency)
            );
        }
        assert_eq!(
            Amount::parse_major("0.001", Currency::parse("USD").unwrap())
                .unwrap_err()
                .to_string(),
            "amount \"0.001\" has more decimals than USD has (2)"
        );
        assert!(matches!(
            Amount::parse_minor("12.0000000000000001", eur()),
            Err(AmountError::FractionalMinor { .. })
        ));
        assert_eq!(Amount::parse_minor("12.000", eur()).unwrap().minor(), 12);
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
