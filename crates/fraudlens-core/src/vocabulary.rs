//! The words every crate shares: what was decided for a transaction
//! ([`Decision`]), where it stands in review ([`ReviewStatus`]) and why the
//! model scored it so ([`Reason`]). One type each, one spelling each: the
//! model decides in these terms, the store keeps their spelling as text, the
//! API and the decisions topic show them.

use serde::{Deserialize, Serialize};

use crate::Label;

/// An enum whose values are stored and shown as fixed words, each spelt
/// once (the literal after `=`, which serde uses too):
/// `as_str`, `Display`, `FromStr` (naming the expected words on a miss),
/// serde, `ALL`, and a `utoipa` schema when the calling crate's `openapi`
/// feature is on.
// `$text:tt`, not `:literal`: a `literal` fragment reaches derive macros
// wrapped in an invisible group, and utoipa's schema would fall back to the
// variant names
#[macro_export]
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:tt),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value.
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            /// The one spelling (stored, shown, parsed).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(format!(
                        concat!("unknown ", stringify!($name), " {:?} (expected one of: {})"),
                        text,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum! {
    /// What is done with a transaction: the thresholds decide it from the
    /// score, the store keeps it, the API and the decisions topic show it.
    Decision {
        /// Below the review threshold: let through.
        Approve = "approve",
        /// At or above the review threshold, below the decline threshold:
        /// let through or held (as the deployment decides), and queued for an analyst.
        Review = "review",
        /// At or above the decline threshold: refused (and queued for an analyst).
        Decline = "decline",
    }
}

impl Decision {
    /// Review and decline are flagged: they go to the review queue.
    pub fn is_flagged(self) -> bool {
        self != Self::Approve
    }

    /// `HIGH` (decline), `MEDIUM` (review) or `LOW` (approve): the confidence
    /// the Python fraud services report with a decision.
    pub fn confidence(self) -> &'static str {
        match self {
            Self::Decline => "HIGH",
            Self::Review => "MEDIUM",
            Self::Approve => "LOW",
        }
    }
}

text_enum! {
    /// Where a transaction stands in manual review.
    ReviewStatus {
        /// Waiting for an analyst (every `review` and `decline` decision starts here).
        PendingReview = "pending_review",
        /// The analyst confirmed fraud (becomes a fraud label).
        ConfirmedFraud = "confirmed_fraud",
        /// Not fraud (becomes a legit label).
        FalsePositive = "false_positive",
        /// Handed to someone more senior.
        Escalated = "escalated",
    }
}

impl ReviewStatus {
    /// The label a status implies, if any.
    pub fn label(self) -> Option<Label> {
        match self {
            Self::ConfirmedFraud => Some(Label::Fraud),
            Self::FalsePositive => Some(Label::Legit),
            Self::PendingReview | Self::Escalated => None,
        }
    }
}

/// A reason for a score: one feature's value and its contribution to the
/// raw score (TreeSHAP), as computed, stored and shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reason {
    /// Feature name.
    pub feature: String,
    /// The feature's value in this row (`null` when missing).
    pub value: Option<f64>,
    /// For a categorical feature: the category the value codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Contribution to the raw score (log-odds); positive pushes towards fraud.
    pub contribution: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_word_reads_back_as_itself_and_a_miss_names_the_words() {
        for decision in Decision::ALL {
            assert_eq!(decision.as_str().parse::<Decision>(), Ok(*decision));
            assert_eq!(serde_json::to_string(decision).unwrap(), format!("\"{decision}\""));
        }
        for status in ReviewStatus::ALL {
            assert_eq!(status.as_str().parse::<ReviewStatus>(), Ok(*status));
        }
        let miss = "Approve".parse::<Decision>().unwrap_err();
        assert!(miss.contains("approve, review, decline"), "{miss}");
    }

    /// serde (stored, sent) spells each value as `as_str` does.
    #[test]
    fn serde_spells_each_value_once() {
        for decision in Decision::ALL {
            let json = serde_json::to_string(decision).unwrap();
            assert_eq!(json, format!("\"{decision}\""));
            assert_eq!(serde_json::from_str::<Decision>(&json).unwrap(), *decision);
        }
        for status in ReviewStatus::ALL {
            assert_eq!(serde_json::to_string(status).unwrap(), format!("\"{status}\""));
        }
    }

    #[test]
    fn flagged_decisions_and_their_confidence() {
        assert!(!Decision::Approve.is_flagged());
        assert!(Decision::Review.is_flagged() && Decision::Decline.is_flagged());
        assert_eq!(Decision::Decline.confidence(), "HIGH");
        assert_eq!(ReviewStatus::ConfirmedFraud.label(), Some(Label::Fraud));
        assert_eq!(ReviewStatus::Escalated.label(), None);
    }
}
