//! Reading transaction files: CSV (any delimiter-free export with a header)
//! and JSON lines, streamed record by record so memory does not grow with the
//! file. A bad record — wrong column count, invalid UTF-8 or JSON, a value the
//! schema refuses — is counted and reported with its line number and reason,
//! and reading goes on; in strict mode the first bad record stops the read.
//!
//! [`detect_mode`] tells a transaction file from a tabular dataset,
//! [`replay_file`] replays a transaction file through the feature engine (the
//! offline path of the model commands), `model_rows` turns a file into a
//! model's rows (training, evaluation, scoring), and the writers put out the
//! feature matrix ([`FeatureMatrixWriter`], [`TabularMatrixWriter`]) and the
//! predictions of a batch-scoring run ([`Predictions`]).

mod bad_rows;
mod csv_input;
mod events;
mod lines;
mod matrix;
mod mode;
mod model_rows;
mod predictions;
mod replay;
mod summary;
mod tabular;

pub use bad_rows::{BadRows, RowIssue};
pub use csv_input::CsvRecords;
pub use events::{EventReader, InputFormat, MAX_JSON_LINE};
pub use matrix::{FeatureMatrixWriter, MatrixError, TabularMatrixWriter, write_feature_matrix, write_number};
pub use mode::{DetectedMode, detect_mode};
pub use model_rows::{TabularTable, TrainingRows, labelled_table, replay_inputs, tabular_table, training_rows};
pub use predictions::{PredictionError, Predictions, RowMeta};
pub use replay::{ReadOptions, ReplaySummary, primary_entity, replay_file};
pub use summary::{EventCounts, GroupBy, GroupSummary, label_group};
pub use tabular::{TabularProfile, TabularReader, profile_csv};

use std::path::PathBuf;

/// Reading could not go on.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be opened or read.
    #[error("reading {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file has no header line.
    #[error("{path}: the file is empty (a header line is required)")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The header does not fit the schema.
    #[error("{path}: {cause}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: fraudlens_core::SchemaError,
    },
    /// The header line could not be read (for `detect_mode`).
    #[error("reading the header of {path}: {cause}")]
    Header {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: csv::Error,
    },
    /// A bad record in strict mode.
    #[error("{path}:{line}: {reason}")]
    Strict {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Why the record was refused.
        reason: String,
    },
    /// The CSV reader failed in a way that is not about one row.
    #[error("{path}: {cause}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: csv::Error,
    },
}

impl IngestError {
    /// `true` when the problem is in the data rather than the environment (exit code 65 vs 1).
    pub fn is_data_error(&self) -> bool {
        match self {
            Self::Strict { .. } | Self::Empty { .. } | Self::Schema { .. } => true,
            Self::Csv { cause, .. } | Self::Header { cause, .. } => !cause.is_io_error(),
            Self::Io { .. } => false,
        }
    }
}
