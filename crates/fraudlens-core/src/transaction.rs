//! The checked transaction and its parts.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Amount, Timestamp};

/// A transaction identifier: 1–128 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TransactionId(String);

/// The value of an entity key (a customer id, a terminal id, a card token…):
/// 1–256 characters, no control characters.
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
}

fn check_id(text: &str, max: usize) -> Result<String, IdError> {
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

macro_rules! id_type {
    ($name:ident, $max:expr) => {
        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_LEN: usize = $max;

            /// Checks and wraps `text` (surrounding whitespace is trimmed).
            pub fn parse(text: &str) -> Result<Self, IdError> {
                check_id(text, Self::MAX_LEN).map(Self)
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<Self, IdError> {
                Self::parse(&text)
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

    /// `true` for fraud.
    pub fn is_fraud(self) -> bool {
        self == Self::Fraud
    }
}

/// One extra attribute of a transaction, as declared in the schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttributeValue {
    /// A number; NaN when missing.
    Numeric(f64),
    /// A category; `None` when missing.
    Categorical(Option<String>),
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
