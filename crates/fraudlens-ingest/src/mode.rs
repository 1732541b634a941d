//! Which way a file is read when the user does not say (`--mode auto`):
//! transactions (event mode) when the header fits the schema, else a tabular
//! dataset. Only the built-in schema falls back to tabular mode: a schema the
//! user configured is a statement that the file holds transactions, so a
//! header that does not fit it is a data error (and card-number hashing is
//! never silently skipped).

use std::path::Path;

use fraudlens_core::{Schema, SchemaConfig, SchemaError};

use crate::{IngestError, InputFormat};

/// What [`detect_mode`] finds in a file.
#[derive(Debug)]
pub enum DetectedMode {
    /// Transactions: the header fits the schema, or the input is JSON lines or
    /// standard input (which cannot be read twice).
    Event,
    /// A tabular dataset: the header does not fit the built-in schema, for this reason.
    Tabular(SchemaError),
}

/// Reads the header of `data` (when needed) and decides how to read the file.
pub fn detect_mode(data: &Path, schema: &Schema) -> Result<DetectedMode, IngestError> {
    if data == Path::new("-") || InputFormat::from_path(data) == InputFormat::JsonLines {
        return Ok(DetectedMode::Event);
    }
    let header = read_header(data)?;
    match schema.bind_columns(&header) {
        Ok(_) => Ok(DetectedMode::Event),
        Err(error) if is_builtin(schema.config()) => Ok(DetectedMode::Tabular(error)),
        Err(cause) => Err(IngestError::Schema {
            path: data.to_owned(),
            cause,
        }),
    }
}

/// The built-in schema, possibly with another label column (`--label` names
/// the label in both modes).
fn is_builtin(config: &SchemaConfig) -> bool {
    *config
        == SchemaConfig {
            label: config.label.clone(),
            ..SchemaConfig::default()
        }
}

/// The file's header as the readers see it (byte-order mark stripped, an empty file refused).
fn read_header(path: &Path) -> Result<Vec<String>, IngestError> {
    let file = std::fs::File::open(path).map_err(|error| IngestError::Header {
        path: path.to_owned(),
        cause: error.into(),
    })?;
    let (mut reader, _) = crate::csv_input::reader(Box::new(file));
    crate::csv_input::header(&mut reader, path)
}
