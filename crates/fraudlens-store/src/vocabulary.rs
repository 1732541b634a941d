//! The store's own words kept as text (model stage, role), the spelling of a
//! label, and how a stored spelling is read back. The shared words (the
//! decision, the review status) are `fraudlens_core`'s, stored by their
//! `as_str` spelling.

use std::str::FromStr;

use fraudlens_core::Label;

use crate::StoreError;

fraudlens_core::text_enum! {
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

fraudlens_core::text_enum! {
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

pub(crate) fn parse<T: FromStr<Err = String>>(text: &str) -> Result<T, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

/// A stored label: exactly its `Label::as_str` spelling.
pub(crate) fn parse_label(text: &str) -> Result<Label, StoreError> {
    [Label::Fraud, Label::Legit]
        .into_iter()
        .find(|label| label.as_str() == text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown label {text:?}")))
}
