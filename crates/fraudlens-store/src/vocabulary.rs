//! The store's stored vocabulary: the enums kept as text (review status,
//! outcome, model stage, role, with their one spelling each) and the spelling
//! of a label, and how a stored spelling is read back.

use std::fmt;
use std::str::FromStr;

use fraudlens_core::Label;
use serde::{Deserialize, Serialize};

use crate::StoreError;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value.
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
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

text_enum! {
    /// What was decided for a transaction.
    Outcome {
        /// Let through.
        Approve = "approve",
        /// Let through or held (as the deployment decides), and queued for an analyst.
        Review = "review",
        /// Refused.
        Decline = "decline",
    }
}

text_enum! {
    /// A model's place in the registry.
    ModelStage {
        /// Registered, not serving.
        Staging = "staging",
        /// Serving (at most one).
        Production = "production",
        /// Served before.
        Archived = "archived",
    }
}

text_enum! {
    /// What an API key may do.
    Role {
        /// Score transactions.
        Service = "service",
        /// Read transactions and work the review queue.
        Analyst = "analyst",
        /// Everything, including models and keys.
        Admin = "admin",
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

/// The stored spelling of a label.
pub fn label_str(label: Label) -> &'static str {
    match label {
        Label::Fraud => "fraud",
        Label::Legit => "legit",
    }
}

pub(crate) fn parse<T: FromStr<Err = String>>(text: &str) -> Result<T, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

pub(crate) fn parse_label(text: &str) -> Result<Label, StoreError> {
    match text {
        "fraud" => Ok(Label::Fraud),
        "legit" => Ok(Label::Legit),
        other => Err(StoreError::Corrupt(format!("unknown label {other:?}"))),
    }
}
