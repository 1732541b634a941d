//! How the commands read their input: the choice of event or tabular mode,
//! the options of the offline replay of a transaction file
//! (`fraudlens_ingest::replay_file`), and time windows given on the command
//! line.

use anyhow::Context as _;
use fraudlens_core::{Label, Schema, Timestamp, TimestampFormat};
use fraudlens_ingest::DetectedMode;
pub use fraudlens_ingest::ReadOptions;

use crate::cli::{InputArgs, Mode};
use crate::config::Config;
use crate::exit::{Classify, CliResult, Failure};

/// How the model commands read a file: `strict` (the flag or the
/// configuration), the configuration's bad-row examples and event-time policy.
pub fn read_options(config: &Config, strict: bool, sort: bool) -> ReadOptions {
    ReadOptions {
        strict,
        max_examples: config.ingest.max_error_examples,
        sort,
        time_policy: config.event_time.policy(),
    }
}

/// Event or tabular: the `--mode` given, or for `--mode auto` what the file's
/// header says (`fraudlens_ingest::detect_mode`).
pub fn resolve_mode(input: &InputArgs, schema: &Schema) -> CliResult<Mode> {
    if input.mode != Mode::Auto {
        return Ok(input.mode);
    }
    match fraudlens_ingest::detect_mode(&input.data, schema)? {
        DetectedMode::Event => Ok(Mode::Event),
        DetectedMode::Tabular(reason) => {
            tracing::info!(%reason, "header does not fit the event schema: reading as a tabular dataset");
            Ok(Mode::Tabular)
        }
    }
}

/// A half-open time window `[from, to)` in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Inclusive start.
    pub from: i64,
    /// Exclusive end.
    pub to: i64,
}

impl Window {
    /// All of time.
    pub const ALL: Window = Window {
        from: i64::MIN,
        to: i64::MAX,
    };

    /// From optional command-line bounds (`YYYY-MM-DD`, a date-time, or RFC 3339).
    pub fn parse(from: Option<&str>, to: Option<&str>, names: (&str, &str)) -> CliResult<Self> {
        let bound = |text: Option<&str>, name: &str, default: i64| -> CliResult<i64> {
            let Some(text) = text else { return Ok(default) };
            let text = text.trim();
            let full = if text.len() == 10 {
                format!("{text} 00:00:00")
            } else {
                text.to_owned()
            };
            Timestamp::parse(&full, TimestampFormat::Datetime)
                .map(Timestamp::as_millis)
                .map_err(|error| Failure::Usage(anyhow::anyhow!("--{name} {text:?}: {error}")))
        };
        let window = Window {
            from: bound(from, names.0, i64::MIN)?,
            to: bound(to, names.1, i64::MAX)?,
        };
        if window.from >= window.to {
            return Err(Failure::Usage(anyhow::anyhow!(
                "--{} must be earlier than --{}",
                names.0,
                names.1
            )));
        }
        Ok(window)
    }

    /// The window as a range of milliseconds.
    pub fn range(self) -> std::ops::Range<i64> {
        self.from..self.to
    }

    /// Whether `millis` is inside.
    pub fn contains(&self, millis: i64) -> bool {
        (self.from..self.to).contains(&millis)
    }
}

/// How a model trained on transactions reads them (exit 65 when its parts disagree).
pub fn event_inputs(
    config: &Config,
    artifact: &fraudlens_model::artifact::Artifact,
) -> CliResult<fraudlens_model::inputs::EventInputs> {
    artifact
        .manifest
        .inputs
        .prepare_events(config.security.card_hash_key.as_ref())
        .context("preparing the model's inputs")
        .data()
}

/// The label as a boolean (fraud = true).
pub fn is_fraud(label: Option<Label>) -> Option<bool> {
    label.map(|label| label == Label::Fraud)
}
