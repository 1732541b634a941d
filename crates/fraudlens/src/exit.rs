//! Exit codes: 0 success, 1 failure of the environment (IO, internals),
//! 2 usage error (flags, configuration), 65 data error (input that does not fit:
//! a header without a required column, a bad row in `--strict` mode, no valid rows).

use std::process::ExitCode;

/// A failed command, classified for its exit code.
#[derive(Debug)]
pub enum Failure {
    /// Wrong flags or configuration.
    Usage(anyhow::Error),
    /// The input data does not fit.
    Data(anyhow::Error),
    /// Anything else (IO, internal).
    Runtime(anyhow::Error),
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, Failure>;

impl Failure {
    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Usage(_) => 2,
            Self::Data(_) => 65,
            Self::Runtime(_) => 1,
        })
    }

    /// The error for printing.
    pub fn error(&self) -> &anyhow::Error {
        match self {
            Self::Usage(error) | Self::Data(error) | Self::Runtime(error) => error,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::Runtime(error)
    }
}

impl From<csv::Error> for Failure {
    /// Writing CSV output failed: the disk, not the data.
    fn from(error: csv::Error) -> Self {
        Self::Runtime(anyhow::anyhow!("writing csv output: {error}"))
    }
}

impl From<fraudlens_ingest::IngestError> for Failure {
    fn from(error: fraudlens_ingest::IngestError) -> Self {
        if error.is_data_error() {
            Self::Data(error.into())
        } else {
            Self::Runtime(error.into())
        }
    }
}

impl From<fraudlens_ingest::MatrixError> for Failure {
    fn from(error: fraudlens_ingest::MatrixError) -> Self {
        match error {
            fraudlens_ingest::MatrixError::Read(error) => error.into(),
            fraudlens_ingest::MatrixError::Write(error) => error.into(),
        }
    }
}

impl From<fraudlens_ingest::PredictionError> for Failure {
    fn from(error: fraudlens_ingest::PredictionError) -> Self {
        Self::Runtime(error.into())
    }
}

impl From<fraudlens_model::fit::FitError> for Failure {
    fn from(error: fraudlens_model::fit::FitError) -> Self {
        if error.is_data_error() {
            Self::Data(error.into())
        } else {
            Self::Runtime(error.into())
        }
    }
}

/// Tags an error with its class.
pub trait Classify<T> {
    /// A usage error (exit 2).
    fn usage(self) -> CliResult<T>;
    /// A data error (exit 65): the input (a file, a model) is unusable.
    fn data(self) -> CliResult<T>;
}

impl<T, E: Into<anyhow::Error>> Classify<T> for Result<T, E> {
    fn usage(self) -> CliResult<T> {
        self.map_err(|error| Failure::Usage(error.into()))
    }

    fn data(self) -> CliResult<T> {
        self.map_err(|error| Failure::Data(error.into()))
    }
}
