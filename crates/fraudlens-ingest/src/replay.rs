//! Offline replay of a transaction file: every transaction goes through the
//! feature engine in order (so a window's features see all the history before
//! it), with historical labels released `label_delay` late, and a visitor gets
//! each one with its features. The model commands (train, evaluate, score) and
//! the feature matrix read files this one way.
//!
//! A transaction the engine must not observe is a bad row, reported by line
//! like an unreadable one: a repeated id (the engine would count it twice)
//! and an event time the policy refuses (the API answers 422 for the same
//! events); both through [`FeatureEngine::admit`], the rule the online paths
//! keep too.

use std::path::Path;
use std::sync::Arc;

use fraudlens_core::{Schema, Transaction};
use fraudlens_features::{EventTimePolicy, FeatureEngine, FeatureSpec, Refusal, Replay};

use crate::{BadRows, EventReader, IngestError, InputFormat};

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
    /// Lines for the terminal about skipped and late rows (empty when there are none).
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

/// Replays `data` (in file order, or sorted by time first when
/// `options.sort`) through a fresh engine, and calls `visit(tx, passthrough
/// fields, features)` for each transaction admitted. `now_ms` is the wall
/// clock when the file is read: no event in it can be later
/// (`event_time.max_future`). In strict mode the first skipped row is an
/// [`IngestError::Strict`]; a visitor's error stops the replay.
pub fn replay_file<E: From<IngestError>>(
    schema: &Schema,
    spec: Arc<FeatureSpec>,
    data: &Path,
    options: ReadOptions,
    now_ms: i64,
    mut visit: impl FnMut(&Transaction, &[Option<String>], &[f64]) -> Result<(), E>,
) -> Result<ReplaySummary, E> {
    let mut reader = EventReader::open(
        data,
        InputFormat::from_path(data),
        schema,
        options.strict,
        options.max_examples,
    )?;
    let mut engine = FeatureEngine::new(spec);
    engine.set_time_policy(options.time_policy);
    let mut state = ReplayState {
        data,
        options,
        now_ms,
        replay: Replay::new(engine),
        features: Vec::new(),
        duplicates: BadRows::new(options.max_examples),
        refused_times: BadRows::new(options.max_examples),
        rows: 0,
        late_rows: 0,
        latest: i64::MIN,
    };
    if options.sort {
        let mut all = Vec::new();
        while let Some(tx) = reader.next_transaction()? {
            let passthrough = reader.passthrough();
            all.push((tx, passthrough, reader.line()));
        }
        all.sort_by_key(|(tx, _, _)| tx.timestamp);
        for (tx, passthrough, line) in &all {
            state.process(tx, passthrough, *line, &mut visit)?;
        }
    } else {
        while let Some(tx) = reader.next_transaction()? {
            let passthrough = reader.passthrough();
            let line = reader.line();
            state.process(&tx, &passthrough, line, &mut visit)?;
        }
    }
    Ok(ReplaySummary {
        rows: state.rows,
        bad_rows: reader.bad_rows().clone(),
        refused_times: state.refused_times,
        duplicates: state.duplicates,
        late_rows: state.late_rows,
        notes: reader.notes().to_vec(),
        engine: state.replay.finish(None),
    })
}

/// Hash of the first entity key (the one card precision@k ranks), 0 when missing.
pub fn primary_entity(tx: &Transaction) -> u64 {
    tx.entities
        .first()
        .and_then(Option::as_ref)
        .map_or(0, |key| xxhash_rust::xxh3::xxh3_64(key.as_str().as_bytes()))
}

/// The replay in progress.
struct ReplayState<'a> {
    data: &'a Path,
    options: ReadOptions,
    now_ms: i64,
    replay: Replay,
    features: Vec<f64>,
    duplicates: BadRows,
    refused_times: BadRows,
    rows: u64,
    late_rows: u64,
    /// Latest event time replayed, to count late rows.
    latest: i64,
}

impl ReplayState<'_> {
    fn process<E: From<IngestError>>(
        &mut self,
        tx: &Transaction,
        passthrough: &[Option<String>],
        line: u64,
        visit: &mut impl FnMut(&Transaction, &[Option<String>], &[f64]) -> Result<(), E>,
    ) -> Result<(), E> {
        let refused = match self.replay.engine().admit(tx, Some(self.now_ms)) {
            Ok(()) => None,
            Err(Refusal::Seen) => {
                let reason = format!(
                    "duplicate transaction id {:?} at {}: skipped",
                    tx.id.as_str(),
                    tx.timestamp
                );
                Some((&mut self.duplicates, reason))
            }
            Err(Refusal::EventTime(error)) => Some((&mut self.refused_times, error.to_string())),
        };
        // a skipped row: an error in strict mode, else counted in its report with an example
        if let Some((report, reason)) = refused {
            if self.options.strict {
                let path = self.data.to_owned();
                return Err(E::from(IngestError::Strict { path, line, reason }));
            }
            report.push(line, reason);
            return Ok(());
        }
        let time = tx.timestamp.as_millis();
        if time < self.latest {
            self.late_rows += 1;
        }
        self.latest = self.latest.max(time);
        self.replay.push(tx, &mut self.features);
        visit(tx, passthrough, &self.features)?;
        self.rows += 1;
        Ok(())
    }
}
