//! Reading a transaction file for the model commands: every transaction is
//! replayed through the feature engine in order (so a window's features see
//! all the history before it), and a visitor gets each one with its features.

use std::path::Path;
use std::sync::Arc;

use fraudlens_core::{Label, Schema, Timestamp, TimestampFormat, Transaction};
use fraudlens_features::{FeatureEngine, FeatureSpec, Replay};
use fraudlens_ingest::{BadRows, EventReader, InputFormat};

use crate::exit::{CliResult, Failure};

/// What a replay read.
pub struct ReplaySummary {
    /// Transactions replayed.
    pub rows: u64,
    /// Rows skipped as unreadable.
    pub bad_rows: BadRows,
    /// Repeated transaction ids, skipped.
    pub duplicates: BadRows,
    /// Rows earlier than a row before them.
    pub late_rows: u64,
}

impl ReplaySummary {
    /// Lines for the terminal about skipped rows.
    pub fn report(&self, data: &Path) -> String {
        let mut text = String::new();
        for (what, rows) in [("bad rows", &self.bad_rows), ("duplicate rows", &self.duplicates)] {
            if rows.count() > 0 {
                text.push_str(&format!("{}: {} {what} skipped\n", data.display(), rows.count()));
                for issue in rows.examples() {
                    text.push_str(&format!("  line {}: {}\n", issue.line, issue.reason));
                }
            }
        }
        if self.late_rows > 0 {
            text.push_str(&format!(
                "{}: {} rows are earlier than a row before them (processed at the latest time seen; sort the file for exact features)\n",
                data.display(),
                self.late_rows
            ));
        }
        text
    }
}

/// Replays `data` through a fresh engine; `visit(tx, features)` sees every transaction.
pub fn replay_file(
    schema: &Schema,
    spec: Arc<FeatureSpec>,
    data: &Path,
    strict: bool,
    max_examples: usize,
    mut visit: impl FnMut(&Transaction, &[f64]) -> CliResult,
) -> CliResult<ReplaySummary> {
    let format = InputFormat::from_path(data);
    let mut reader = EventReader::open(data, format, schema, strict, max_examples)?;
    let mut replay = Replay::new(FeatureEngine::new(spec));
    let mut features = Vec::new();
    let mut duplicates = BadRows::new(max_examples);
    let (mut rows, mut late_rows, mut latest) = (0u64, 0u64, i64::MIN);
    while let Some(tx) = reader.next_transaction()? {
        if replay.engine().has_seen(&tx) {
            let reason = format!("duplicate transaction id {:?}: skipped", tx.id.as_str());
            if strict {
                return Err(Failure::Data(anyhow::anyhow!(
                    "{}:{}: {reason}",
                    data.display(),
                    reader.line()
                )));
            }
            duplicates.push(reader.line(), reason);
            continue;
        }
        let time = tx.timestamp.as_millis();
        if time < latest {
            late_rows += 1;
        }
        latest = latest.max(time);
        replay.push(&tx, &mut features);
        visit(&tx, &features)?;
        rows += 1;
    }
    Ok(ReplaySummary {
        rows,
        bad_rows: reader.bad_rows().clone(),
        duplicates,
        late_rows,
    })
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

    /// Whether `millis` is inside.
    pub fn contains(&self, millis: i64) -> bool {
        (self.from..self.to).contains(&millis)
    }
}

/// The label as a boolean (fraud = true).
pub fn is_fraud(label: Option<Label>) -> Option<bool> {
    label.map(|label| label == Label::Fraud)
}

/// Hash of the first entity key (the one card precision@k ranks), 0 when missing.
pub fn primary_entity(tx: &Transaction) -> u64 {
    tx.entities
        .first()
        .and_then(Option::as_ref)
        .map_or(0, |key| xxhash_rust::xxh3::xxh3_64(key.as_str().as_bytes()))
}

/// `YYYY-MM-DD HH:MM:SS` of a time in milliseconds.
pub fn format_time(millis: i64) -> String {
    Timestamp::from_millis(millis).to_string()
}
