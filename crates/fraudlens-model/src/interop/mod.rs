//! Import and export of tree ensembles trained elsewhere, so a fraud model
//! trained with LightGBM or XGBoost can be served by [`Forest`], and a
//! [`Forest`] can be checked or served by LightGBM.
//!
//! - [`lightgbm`]: LightGBM's text model format (`Booster.save_model("m.txt")`),
//!   import and export, binary objective only.
//! - [`xgboost`]: XGBoost's JSON model format (`Booster.save_model("m.json")`),
//!   import, `binary:logistic` and `binary:logitraw` only.
//!
//! An import gives the same raw scores (log-odds), probabilities and TreeSHAP
//! contributions as the library itself: `scripts/parity` trains models with
//! the pinned Python packages and compares, and small models with their
//! expected outputs are kept in `tests/fixtures/interop/` so every
//! `cargo test` checks the importers against real library outputs.
//!
//! Categorical features are read as category codes (the integers the
//! library was trained on: pandas `cat.codes`, or the values given with
//! LightGBM's `categorical_feature`).

pub mod lightgbm;
pub mod xgboost;

use std::fmt;

pub use lightgbm::{export_lightgbm_text, import_lightgbm_text};
pub use xgboost::import_xgboost_json;

use crate::{Forest, ModelError};

/// A model read from another library's format.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The trees, ready to score rows laid out like the library's training columns.
    pub forest: Forest,
    /// Column names in feature-vector order, from the model file (or
    /// generated as the library would: `Column_0`, `f0`…).
    pub feature_names: Vec<String>,
    /// What the model was read from, e.g. `lightgbm text (v4)` or `xgboost json (3.2.0)`.
    pub source: String,
}

/// The foreign formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// LightGBM's text model.
    LightGbm,
    /// XGBoost's JSON model.
    XgBoost,
}

impl Format {
    /// A field of a model in this format is missing, unparsable or inconsistent.
    pub(crate) fn malformed(self, location: impl Into<String>, reason: impl Into<String>) -> InteropError {
        InteropError::Malformed {
            format: self,
            location: location.into(),
            reason: reason.into(),
        }
    }

    /// A valid model of this format that the importer does not handle.
    pub(crate) fn unsupported(self, reason: impl Into<String>) -> InteropError {
        InteropError::Unsupported {
            format: self,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::LightGbm => "lightgbm",
            Format::XgBoost => "xgboost",
        })
    }
}

/// Why a model could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum InteropError {
    /// A field is missing, unparsable or inconsistent (a truncated or edited file).
    #[error("{format} model is malformed: {location}: {reason}")]
    Malformed {
        /// The format being read.
        format: Format,
        /// Where: the tree and field, or the header field.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A valid model of a kind this importer does not handle (another
    /// objective, multiclass, linear trees…).
    #[error("{format} model is not supported: {reason}")]
    Unsupported {
        /// The format being read.
        format: Format,
        /// What is not supported, and what is.
        reason: String,
    },
    /// The document is not JSON, or its JSON does not have the expected shape.
    #[error("{format} model is not valid json: {source}")]
    Json {
        /// The format being read.
        format: Format,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// The converted trees do not form a valid forest.
    #[error("{format} model has invalid trees: {source}")]
    InvalidTrees {
        /// The format being read.
        format: Format,
        /// What [`Forest::new`] refused.
        source: ModelError,
    },
}
