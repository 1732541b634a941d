//! A file read as a model's rows: the transactions replayed through the
//! feature engine ([`replay_file`]) and turned into model input rows —
//! for scoring ([`replay_inputs`]), for evaluation ([`labelled_table`]),
//! for training ([`training_rows`]) — or a tabular file read as a training
//! table ([`tabular_table`]).

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use fraudlens_core::tabular::TabularEncoding;
use fraudlens_core::{Label, Schema, Transaction};
use fraudlens_features::FeatureSpec;
use fraudlens_model::fit::{EventRows, Table};
use fraudlens_model::inputs::EventInputs;

use crate::{BadRows, IngestError, ReadOptions, ReplaySummary, TabularReader, primary_entity, replay_file};

/// Replays `data` through the inputs of a model trained on transactions and
/// calls `visit(tx, model input row)` for each transaction.
pub fn replay_inputs<E: From<IngestError>>(
    inputs: &EventInputs,
    data: &Path,
    options: ReadOptions,
    now_ms: i64,
    mut visit: impl FnMut(&Transaction, &[f64]) -> Result<(), E>,
) -> Result<ReplaySummary, E> {
    let mut row = Vec::new();
    replay_file(
        &inputs.schema,
        inputs.spec.clone(),
        data,
        options,
        now_ms,
        |tx, _, features| {
            row.clear();
            row.extend_from_slice(features);
            inputs.push_attributes(tx, &mut row);
            visit(tx, &row)
        },
    )
}

/// Every labelled transaction of `data` as a row of model inputs with its
/// time, primary entity and amount, sorted by time (windows are cut by
/// binary search on time). `tick` is called for every transaction.
pub fn labelled_table(
    inputs: &EventInputs,
    n_inputs: usize,
    data: &Path,
    options: ReadOptions,
    now_ms: i64,
    mut tick: impl FnMut(),
) -> Result<(Table, ReplaySummary), IngestError> {
    let mut table = Table::new(n_inputs);
    let summary = replay_inputs(inputs, data, options, now_ms, |tx, row| {
        tick();
        if let Some(label) = tx.label {
            table.values.extend_from_slice(row);
            let (time, entity) = (tx.timestamp.as_millis(), primary_entity(tx));
            table.push_meta(label == Label::Fraud, Some(time), Some(entity), tx.amount.major());
        }
        Ok::<_, IngestError>(())
    })?;
    table.sort_by_time();
    Ok((table, summary))
}

/// The training rows of a transaction file.
pub struct TrainingRows {
    /// The rows of the window, before their attribute encoders are fitted.
    pub rows: EventRows,
    /// What the replay read.
    pub summary: ReplaySummary,
    /// Rows of the window left out for want of a label.
    pub unlabeled: u64,
}

/// Replays `data` and keeps the rows whose time is in `window`: the
/// labelled ones, and the others as legit when `keep_unlabeled`
/// (unsupervised training). `tick` is called for every transaction.
#[allow(clippy::too_many_arguments)] // the replay's inputs, then what to keep
pub fn training_rows(
    schema: &Schema,
    spec: &Arc<FeatureSpec>,
    data: &Path,
    options: ReadOptions,
    now_ms: i64,
    window: Range<i64>,
    keep_unlabeled: bool,
    mut tick: impl FnMut(),
) -> Result<TrainingRows, IngestError> {
    let mut rows = EventRows::new(spec.feature_names().len(), schema);
    let mut unlabeled = 0u64;
    let summary = replay_file(schema, spec.clone(), data, options, now_ms, |tx, _, features| {
        tick();
        if !window.contains(&tx.timestamp.as_millis()) {
            return Ok::<_, IngestError>(());
        }
        let label = match tx.label {
            Some(label) => label == Label::Fraud,
            None if keep_unlabeled => false,
            None => {
                unlabeled += 1;
                return Ok(());
            }
        };
        rows.push(tx, features, label, primary_entity(tx));
        Ok(())
    })?;
    Ok(TrainingRows {
        rows,
        summary,
        unlabeled,
    })
}

/// A tabular file read as a training table.
pub struct TabularTable {
    /// The encoded rows, in file order (file order is time order).
    pub table: Table,
    /// Rows skipped as unreadable.
    pub bad_rows: BadRows,
    /// Rows left out for want of a label.
    pub unlabeled: u64,
}

/// Reads the rows of a tabular file with `encoding`: the labelled ones, and
/// the others as legit when `keep_unlabeled`.
pub fn tabular_table(
    data: &Path,
    encoding: &TabularEncoding,
    strict: bool,
    max_examples: usize,
    keep_unlabeled: bool,
) -> Result<TabularTable, IngestError> {
    let mut reader = TabularReader::open(data, encoding, strict, max_examples)?;
    let mut table = Table::new(encoding.features.len());
    let mut row = Vec::new();
    let mut unlabeled = 0u64;
    while let Some(label) = reader.next_row(&mut row)? {
        match label {
            Some(label) => {
                table.values.extend_from_slice(&row);
                table.push_meta(label == Label::Fraud, None, None, 1.0);
            }
            None if keep_unlabeled => {
                table.values.extend_from_slice(&row);
                table.push_meta(false, None, None, 1.0);
            }
            None => unlabeled += 1,
        }
    }
    Ok(TabularTable {
        table,
        bad_rows: reader.bad_rows().clone(),
        unlabeled,
    })
}
