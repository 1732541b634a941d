//! The checked transaction and its parts.

use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::{Amount, Timestamp};

/// A transaction identifier: 1–128 characters in Unicode NFC, with no
/// control, format (bidi overrides, zero-width…) or other invisible characters
/// (see [`TransactionId::parse`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TransactionId(String);

/// The value of an entity key (a customer id, a terminal id, a card token…):
/// 1–256 characters, checked like a [`TransactionId`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EntityKey(String);

/// Why an identifier was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Blank after trimming.
    #[error("is empty")]
    Empty,
    /// Longer than allowed.
    #[error("is longer than {max} characters")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Contains a control character (newline, NUL…).
    #[error("contains a control character")]
    ControlCharacter,
    /// Contains a character that is invisible or changes how the text around
    /// it displays: two ids that look the same would be different entities.
    #[error("contains the invisible or format character U+{code_point:04X}")]
    InvisibleCharacter {
        /// The character's code point.
        code_point: u32,
    },
}

/// Checks an identifier from input: trimmed, NFC-normalised (so `é` typed as
/// one code point or as `e` + combining accent is one customer), 1 to `max`
/// characters, no control character and no invisible one ([`is_invisible`]).
fn check_id(text: &str, max: usize) -> Result<String, IdError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(IdError::Empty);
    }
    // the common case: ASCII is already NFC and has no invisible characters,
    // so the stored-id rules are the whole check
    if text.is_ascii() {
        return check_stored_id(text, max);
    }
    let normalized: String = match unicode_normalization::is_nfc_quick(text.chars()) {
        unicode_normalization::IsNormalized::Yes => text.to_owned(),
        _ => text.nfc().collect(),
    };
    let mut n_chars = 0;
    for c in normalized.chars() {
        if c.is_control() {
            return Err(IdError::ControlCharacter);
        }
        if is_invisible(c) {
            return Err(IdError::InvisibleCharacter { code_point: c.into() });
        }
        n_chars += 1;
    }
    if n_chars > max {
        return Err(IdError::TooLong { max });
    }
    Ok(normalized)
}

/// Checks an identifier read back from storage with the rules it was written
/// under before the NFC and invisible-character checks existed, so a store or
/// snapshot holding such an id still loads (a refused row would stop the
/// entity state from being rebuilt at start). New ids come through
/// [`check_id`].
fn check_stored_id(text: &str, max: usize) -> Result<String, IdError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(IdError::Empty);
    }
    if text.chars().count() > max {
        return Err(IdError::TooLong { max });
    }
    if text.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter);
    }
    Ok(text.to_owned())
}

/// Characters refused in identifiers besides controls: every format
/// character (Unicode general category Cf: bidi embeddings, overrides and
/// isolates, zero-width space and joiners, the byte order mark, tag
/// characters…), line and paragraph separators, spaces other than U+0020
/// (they look like it), characters that render as nothing (variation
/// selectors, the combining grapheme joiner, Hangul fillers), private-use
/// characters and noncharacters. Unassigned code points are not refused:
/// telling them apart needs the whole character database, and an id made of
/// them is no look-alike of an id made of assigned ones.
fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        // format characters (Cf), Unicode 16
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
            // line and paragraph separators (Zl, Zp)
            | 0x2028..=0x2029
            // spaces other than U+0020 (Zs)
            | 0x00A0
            | 0x1680
            | 0x2000..=0x200A
            | 0x202F
            | 0x205F
            | 0x3000
            // render as nothing: combining grapheme joiner, Mongolian free
            // variation selectors, variation selectors, Hangul fillers, the
            // Khmer inherent vowels
            | 0x034F
            | 0x180B..=0x180D
            | 0x180F
            | 0xFE00..=0xFE0F
            | 0xE0100..=0xE01EF
            | 0x115F..=0x1160
            | 0x3164
            | 0xFFA0
            | 0x17B4..=0x17B5
            // private use (Co)
            | 0xE000..=0xF8FF
            | 0xF0000..=0xFFFFD
            | 0x100000..=0x10FFFD
            // noncharacters
            | 0xFDD0..=0xFDEF
    ) || (u32::from(c) & 0xFFFE) == 0xFFFE
}

macro_rules! id_type {
    ($name:ident, $max:expr) => {
        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_LEN: usize = $max;

            /// Checks and wraps `text`: surrounding whitespace is trimmed, the
            /// rest NFC-normalised; control, format and invisible characters
            /// are refused.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                check_id(text, Self::MAX_LEN).map(Self)
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Serde's way in, for stored values: the rules they were written under
        /// (trimmed, length, no control character), so data stored before the
        /// NFC and invisible-character checks still loads. Input goes through
        /// `parse`.
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<Self, IdError> {
                check_stored_id(&text, Self::MAX_LEN).map(Self)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(TransactionId, 128);
id_type!(EntityKey, 256);

/// The ground truth of a transaction, once known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// Genuine.
    Legit,
    /// Fraudulent (confirmed by an analyst, a chargeback or the dataset).
    Fraud,
}

/// Why a label value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised label {value:?} (expected 1/0, true/false, yes/no or fraud/legit)")]
pub struct LabelError {
    value: String,
}

impl Label {
    /// Reads the spellings datasets use: `1`/`0`, `1.0`/`0.0`, `true`/`false`,
    /// `yes`/`no`, `fraud`/`legit` (also `genuine`, `normal`), any case.
    pub fn parse(text: &str) -> Result<Self, LabelError> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        match lower.as_str() {
            "1" | "1.0" | "true" | "t" | "yes" | "y" | "fraud" | "fraudulent" => Ok(Self::Fraud),
            "0" | "0.0" | "false" | "f" | "no" | "n" | "legit" | "genuine" | "normal" => Ok(Self::Legit),
            _ => Err(LabelError {
                value: text.chars().take(40).collect(),
            }),
        }
    }

    /// The one spelling, stored and shown: `fraud` or `legit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fraud => "fraud",
            Self::Legit => "legit",
        }
    }

    /// `true` for fraud.
    pub fn is_fraud(self) -> bool {
        self == Self::Fraud
    }
}

/// One extra attribute of a transaction, as declared in the schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttributeValue {
    /// A number; NaN when missing.
    Numeric(#[serde(with = "stored_number")] f64),
    /// A category; `None` when missing.
    Categorical(Option<String>),
}

/// A numeric attribute in JSON, which has no NaN or infinity: NaN (missing)
/// is `null`, as serde_json writes it, and infinities are `"inf"` / `"-inf"`.
/// Stored transactions (decision bodies) are read back at every start to
/// rebuild the entity state, so what is written must read back: a bare `f64`
/// wrote NaN as `null` and then refused to read it (found by fuzzing).
mod stored_number {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        match *value {
            f64::INFINITY => serializer.serialize_str("inf"),
            f64::NEG_INFINITY => serializer.serialize_str("-inf"),
            value => serializer.serialize_f64(value),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        deserializer.deserialize_any(NumberVisitor)
    }

    struct NumberVisitor;

    impl Visitor<'_> for NumberVisitor {
        type Value = f64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number, null, \"inf\" or \"-inf\"")
        }

        fn visit_f64<E>(self, value: f64) -> Result<f64, E> {
            Ok(value)
        }

        fn visit_i64<E>(self, value: i64) -> Result<f64, E> {
            Ok(value as f64)
        }

        fn visit_u64<E>(self, value: u64) -> Result<f64, E> {
            Ok(value as f64)
        }

        fn visit_unit<E>(self) -> Result<f64, E> {
            Ok(f64::NAN)
        }

        fn visit_none<E>(self) -> Result<f64, E> {
            Ok(f64::NAN)
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<f64, E> {
            match value {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                _ => Err(E::invalid_value(de::Unexpected::Str(value), &self)),
            }
        }
    }
}

/// A checked transaction: what every later stage works on.
///
/// `entities` and `attributes` are positional: index `i` holds the `i`-th
/// entity / attribute of the [`Schema`](crate::Schema) that parsed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// Unique id. The feature engine counts every observation, so whoever may
    /// see a transaction twice deduplicates first (`FeatureEngine::has_seen`,
    /// and later the store).
    pub id: TransactionId,
    /// When the transaction happened (event time, not arrival time).
    pub timestamp: Timestamp,
    /// How much, in which currency.
    pub amount: Amount,
    /// Entity keys in schema order; `None` when an optional key is missing.
    pub entities: Vec<Option<EntityKey>>,
    /// Extra attributes in schema order.
    pub attributes: Vec<AttributeValue>,
    /// Ground truth when the input carries it.
    pub label: Option<Label>,
}

impl Transaction {
    /// The `idx`-th entity key, if present.
    pub fn entity(&self, idx: usize) -> Option<&EntityKey> {
        self.entities.get(idx).and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_trimmed_and_checked() {
        assert_eq!(TransactionId::parse("  t1 ").unwrap().as_str(), "t1");
        assert_eq!(TransactionId::parse(" ").unwrap_err(), IdError::Empty);
        assert_eq!(TransactionId::parse("a\nb").unwrap_err(), IdError::ControlCharacter);
        assert!(TransactionId::parse(&"x".repeat(129)).is_err());
        assert!(EntityKey::parse(&"x".repeat(256)).is_ok());
    }

    #[test]
    fn ids_are_nfc_normalised() {
        // "é" as e + combining acute and as one code point: one customer
        let decomposed = EntityKey::parse("cust-e\u{301}").unwrap();
        assert_eq!(decomposed, EntityKey::parse("cust-\u{e9}").unwrap());
        assert_eq!(decomposed.as_str(), "cust-\u{e9}");
        assert_eq!(TransactionId::parse(" Ωmega ").unwrap().as_str(), "\u{3a9}mega");
        // the length counts characters of the normalised form
        assert!(TransactionId::parse(&"e\u{301}".repeat(128)).is_ok());
        assert!(TransactionId::parse(&"\u{e9}".repeat(129)).is_err());
    }

    #[test]
    fn invisible_and_format_characters_are_refused() {
        let check = |text: &str, code_point: u32| {
            assert_eq!(
                EntityKey::parse(text).unwrap_err(),
                IdError::InvisibleCharacter { code_point },
                "{text:?}"
            );
        };
        check("c\u{202e}fdp", 0x202E); // right-to-left override
        check("c\u{2066}1", 0x2066); // left-to-right isolate
        check("c\u{200b}1", 0x200B); // zero-width space
        check("c\u{200d}1", 0x200D); // zero-width joiner
        check("c\u{feff}1", 0xFEFF); // byte order mark inside
        check("c\u{2060}1", 0x2060); // word joiner
        check("c\u{ad}1", 0xAD); // soft hyphen
        check("c\u{e0041}1", 0xE0041); // tag character
        check("c\u{a0}1", 0xA0); // no-break space
        check("c\u{3164}1", 0x3164); // Hangul filler
        check("c\u{fe0f}1", 0xFE0F); // variation selector
        check("c\u{e000}1", 0xE000); // private use
        check("c\u{fffe}1", 0xFFFE); // noncharacter
        assert_eq!(EntityKey::parse("c\u{85}1").unwrap_err(), IdError::ControlCharacter);
        assert_eq!(
            TransactionId::parse("t\u{202e}1").unwrap_err().to_string(),
            "contains the invisible or format character U+202E"
        );
        // visible non-ASCII text is fine
        for text in ["Zürich-7", "東京", "client 😀", "مرحبا"] {
            assert!(EntityKey::parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn stored_ids_load_with_the_rules_they_were_written_under() {
        let stored = serde_json::to_string("c\u{202e}1").unwrap();
        let key: EntityKey = serde_json::from_str(&stored).unwrap();
        assert_eq!(key.as_str(), "c\u{202e}1");
        assert!(serde_json::from_str::<EntityKey>("\"a\\nb\"").is_err());
    }

    proptest::proptest! {
        /// Whatever is accepted is NFC, free of refused characters, and a fixed point.
        #[test]
        fn accepted_ids_are_normal_and_stable(text in "\\PC{0,12}|[a-z\u{300}-\u{36f}\u{200b}-\u{202e}]{0,12}") {
            if let Ok(key) = EntityKey::parse(&text) {
                let value = key.as_str();
                proptest::prop_assert!(unicode_normalization::is_nfc(value));
                proptest::prop_assert!(!value.chars().any(|c| c.is_control() || is_invisible(c)));
                proptest::prop_assert_eq!(EntityKey::parse(value).unwrap(), key.clone());
            }
        }
    }

    #[test]
    fn label_spellings() {
        for text in ["1", "TRUE", "yes", "Fraud", "1.0"] {
            assert_eq!(Label::parse(text).unwrap(), Label::Fraud, "{text}");
        }
        for text in ["0", "false", "No", "legit", "0.0"] {
            assert_eq!(Label::parse(text).unwrap(), Label::Legit, "{text}");
        }
        assert!(Label::parse("maybe").is_err());
        assert!(Label::parse("").is_err());
    }
}
