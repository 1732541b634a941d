//! Reading a transaction file for the model commands: every transaction is
//! replayed through the feature engine in order (so a window's features see
//! all the history before it), and a visitor gets each one with its features.

use std::path::Path;
use std::sync::Arc;

use fraudlens_core::{Label, Schema, Timestamp, TimestampFormat, Transaction};
use fraudlens_features::{EventTimePolicy, FeatureEngine, FeatureSpec, Replay};
use fraudlens_ingest::{BadRows, EventReader, InputFormat};

use crate::exit::{CliResult, Failure};

/// What a replay read.
pub struct ReplaySummary {
    /// Transactions replayed.
    pub rows: u64,
    /// Rows skipped as unreadable.
    pub bad_rows: BadRows,
    /// Rows whose event time the policy refuses (`[event_time]`), skipped.
    pub refused_times: BadRows,
    /// Repeated transaction ids, skipped.
    pub duplicates: BadRows,
    /// Rows earlier than a row before them.
    pub late_rows: u64,
    /// Notes of the reader (header fixes and the like).
    pub notes: Vec<String>,
    /// The engine after the last transaction (labels as known in replay).
    pub engine: FeatureEngine,
}

impl ReplaySummary {
    /// Lines for the terminal about skipped and late rows.
    pub fn report(&self) -> String {
        let mut text = String::new();
        for note in &self.notes {
            text.push_str(&format!("note: {note}\n"));
        }
        if self.bad_rows.count() > 0 {
            text.push_str(&format!("{}\n", self.bad_rows));
        }
        if self.refused_times.count() > 0 {
            text.push_str(&format!("event time out of range: {}\n", self.refused_times));
        }
        if self.duplicates.count() > 0 {
            text.push_str(&format!("duplicates: {}\n", self.duplicates));
        }
        if self.late_rows > 0 {
            text.push_str(&format!(
                "warning: {} rows were earlier than a row before them; each was processed at its entities' latest \
                 time, as the online engine would. Sort the input (features --sort) for pure event-time features.\n",
                self.late_rows
            ));
        }
        text
    }
}

/// The one replay loop of the commands: reads `data` (in file order, or
/// sorted by time first when `sort`), skips repeated transaction ids (the
/// engine would count them twice), replays every transaction through a fresh
/// engine with historical labels released `label_delay` late, and calls
/// `visit(tx, passthrough fields, features)` for each.
pub fn replay_file(
    schema: &Schema,
    spec: Arc<FeatureSpec>,
    data: &Path,
    input: ReadOptions,
    mut visit: impl FnMut(&Transaction, &[Option<String>], &[f64]) -> CliResult,
) -> CliResult<ReplaySummary> {
    let format = InputFormat::from_path(data);
    let mut reader = EventReader::open(data, format, schema, input.strict, input.max_examples)?;
    let mut engine = FeatureEngine::new(spec);
    engine.set_time_policy(input.time_policy);
    let mut replay = Replay::new(engine);
    let mut features = Vec::new();
    let mut duplicates = BadRows::new(input.max_examples);
    let mut refused = BadRows::new(input.max_examples);
    // the wall clock when the file is read: no event in it can be later (event_time.max_future)
    let now = fraudlens_pipeline::now_ms();
    let (mut rows, mut late_rows, mut latest) = (0u64, 0u64, i64::MIN);
    // a skipped row: an error in strict mode, else counted in `report` with an example
    let skip = |report: &mut BadRows, line: u64, reason: String| -> CliResult {
        if input.strict {
            return Err(Failure::Data(anyhow::anyhow!("{}:{line}: {reason}", data.display())));
        }
        report.push(line, reason);
        Ok(())
    };
    let mut process = |tx: &Transaction, passthrough: &[Option<String>], line: u64| -> CliResult {
        if replay.engine().has_seen(tx) {
            let reason = format!(
                "duplicate transaction id {:?} at {}: skipped",
                tx.id.as_str(),
                tx.timestamp
            );
            return skip(&mut duplicates, line, reason);
        }
        // the same event-time rules as the API and the detector: a refused event is a bad row
        if let Err(error) = replay.engine().check_time(tx.timestamp, Some(now)) {
            return skip(&mut refused, line, error.to_string());
        }
        let time = tx.timestamp.as_millis();
        if time < latest {
            late_rows += 1;
        }
        latest = latest.max(time);
        replay.push(tx, &mut features);
        visit(tx, passthrough, &features)?;
        rows += 1;
        Ok(())
    };
    if input.sort {
        let mut all = Vec::new();
        while let Some(tx) = reader.next_transaction()? {
            let passthrough = reader.passthrough();
            all.push((tx, passthrough, reader.line()));
        }
        all.sort_by_key(|(tx, _, _)| tx.timestamp);
        for (tx, passthrough, line) in &all {
            process(tx, passthrough, *line)?;
        }
    } else {
        while let Some(tx) = reader.next_transaction()? {
            let passthrough = reader.passthrough();
            let line = reader.line();
            process(&tx, &passthrough, line)?;
        }
    }
    Ok(ReplaySummary {
        rows,
        bad_rows: reader.bad_rows().clone(),
        refused_times: refused,
        duplicates,
        late_rows,
        notes: reader.notes().to_vec(),
        engine: replay.finish(None),
    })
}

/// How a replay reads its input.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// Stop at the first bad row.
    pub strict: bool,
    /// Bad-row examples to keep.
    pub max_examples: usize,
    /// Sort by time in memory first.
    pub sort: bool,
    /// Which event times are accepted: the others are bad rows, reported by
    /// line like unreadable ones (the API answers 422 for the same events).
    pub time_policy: EventTimePolicy,
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

/// RFC 3339 (UTC) of a time in milliseconds since the epoch.
pub fn format_time(millis: i64) -> String {
    Timestamp::from_millis(millis).to_string()
}
