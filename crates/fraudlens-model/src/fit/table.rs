//! [`Table`]: the rows a model is fitted or evaluated on — a row-major matrix
//! of model inputs with, per row, what the fit and the metrics need (label,
//! time, primary entity, amount) — and the time-ordered cuts made of it.

use std::ops::Range;

use fraudlens_core::Timestamp;
use sha2::{Digest, Sha256};

use crate::metrics::{EvalInput, Evaluation};
use crate::train::TrainSet;

const DAY_MS: i64 = 86_400_000;

/// Rows for training or evaluation: a row-major matrix with what evaluation needs per row.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Features per row.
    pub n_features: usize,
    /// Row-major values.
    pub values: Vec<f64>,
    /// Fraud labels.
    pub labels: Vec<bool>,
    /// Transaction times (ms); empty in tabular mode.
    pub times: Vec<i64>,
    /// Primary entity hash per row (what card precision@k ranks); empty in tabular mode.
    pub entities: Vec<u64>,
    /// Amounts in major units (1.0 per row in tabular mode).
    pub amounts: Vec<f64>,
}

impl Table {
    /// An empty table of rows of `n_features` values.
    pub fn new(n_features: usize) -> Self {
        Self {
            n_features,
            ..Self::default()
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Completes the row whose values were just appended to [`Self::values`]:
    /// its label, time and entity (event mode) and amount.
    pub fn push_meta(&mut self, label: bool, time: Option<i64>, entity: Option<u64>, amount: f64) {
        self.labels.push(label);
        self.times.extend(time);
        self.entities.extend(entity);
        self.amounts.push(amount);
    }

    /// Fraud rows.
    pub fn frauds(&self) -> usize {
        self.labels.iter().filter(|label| **label).count()
    }

    /// Rows `range` as a new table.
    pub fn slice(&self, range: Range<usize>) -> Table {
        let n = self.n_features;
        Table {
            n_features: n,
            values: self.values[range.start * n..range.end * n].to_vec(),
            labels: self.labels[range.clone()].to_vec(),
            times: if self.times.is_empty() {
                Vec::new()
            } else {
                self.times[range.clone()].to_vec()
            },
            entities: if self.entities.is_empty() {
                Vec::new()
            } else {
                self.entities[range.clone()].to_vec()
            },
            amounts: self.amounts[range].to_vec(),
        }
    }

    /// Orders the rows by time (stable); returns whether they were out of order.
    pub fn sort_by_time(&mut self) -> bool {
        if self.times.windows(2).all(|pair| pair[0] <= pair[1]) {
            return false;
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&row| self.times[row]);
        let n = self.n_features;
        let mut values = Vec::with_capacity(self.values.len());
        for &row in &order {
            values.extend_from_slice(&self.values[row * n..(row + 1) * n]);
        }
        self.values = values;
        self.times = order.iter().map(|&row| self.times[row]).collect();
        self.labels = order.iter().map(|&row| self.labels[row]).collect();
        self.entities = order.iter().map(|&row| self.entities[row]).collect();
        self.amounts = order.iter().map(|&row| self.amounts[row]).collect();
        true
    }

    /// Indices of the rows with a time in `[from, to)` (rows in time order).
    pub fn rows_between(&self, from: i64, to: i64) -> Range<usize> {
        let start = self.times.partition_point(|&time| time < from);
        let end = self.times.partition_point(|&time| time < to);
        start..end.max(start)
    }

    /// First and last transaction time, in event mode.
    pub fn period(&self) -> Option<(Timestamp, Timestamp)> {
        match (self.times.first(), self.times.last()) {
            (Some(&first), Some(&last)) => Some((Timestamp::from_millis(first), Timestamp::from_millis(last))),
            _ => None,
        }
    }

    /// Days from the first to the last transaction, in event mode: what a
    /// count per day of these rows divides by.
    pub fn span_days(&self) -> Option<f64> {
        match (self.times.first(), self.times.last()) {
            (Some(&first), Some(&last)) => Some((last - first) as f64 / DAY_MS as f64),
            _ => None,
        }
    }

    /// The metrics of `probabilities` (one per row) at `threshold`; the per-day
    /// metrics (precision@k, card precision@k) in event mode only.
    pub fn evaluate(&self, probabilities: &[f64], threshold: f64, k: usize) -> Evaluation {
        let days: Vec<i64> = self.times.iter().map(|time| time.div_euclid(DAY_MS)).collect();
        let has_times = !self.times.is_empty();
        Evaluation::compute(&EvalInput {
            probabilities,
            labels: &self.labels,
            days: has_times.then_some(&days[..]),
            entities: has_times.then_some(&self.entities[..]),
            threshold,
            k,
            reliability_bins: 10,
        })
    }

    /// The same rows with one more column.
    pub(crate) fn with_column(&self, column: &[f64]) -> Table {
        let n = self.n_features;
        let mut values = Vec::with_capacity(self.values.len() + column.len());
        for (row, extra) in self.values.chunks(n.max(1)).zip(column) {
            values.extend_from_slice(row);
            values.push(*extra);
        }
        Table {
            n_features: n + 1,
            values,
            labels: self.labels.clone(),
            times: self.times.clone(),
            entities: self.entities.clone(),
            amounts: self.amounts.clone(),
        }
    }

    /// The values column by column (what the isolation forest fits on).
    pub(crate) fn columns(&self) -> Vec<Vec<f64>> {
        let n = self.n_features.max(1);
        (0..self.n_features)
            .map(|feature| self.values.iter().skip(feature).step_by(n).copied().collect())
            .collect()
    }

    /// Rows `range` as the trainer reads them, without a copy.
    pub(crate) fn rows_set(&self, range: Range<usize>) -> TrainSet<'_> {
        TrainSet {
            values: &self.values[range.start * self.n_features..range.end * self.n_features],
            n_features: self.n_features,
            labels: &self.labels[range],
            weights: None,
        }
    }

    /// The rows as the trainer reads them.
    pub(crate) fn train_set(&self) -> TrainSet<'_> {
        TrainSet {
            values: &self.values,
            n_features: self.n_features,
            labels: &self.labels,
            weights: None,
        }
    }

    /// SHA-256 over the rows' values and labels, in order.
    pub(crate) fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update((self.n_features as u64).to_le_bytes());
        for (row, label) in self.values.chunks(self.n_features.max(1)).zip(&self.labels) {
            for value in row {
                hasher.update(value.to_bits().to_le_bytes());
            }
            hasher.update([u8::from(*label)]);
        }
        hex::encode(hasher.finalize())
    }
}

/// RFC 3339 (UTC) of a time in milliseconds since the epoch.
#[cfg(test)]
mod tests {
    use super::*;

    fn table(times: &[i64]) -> Table {
        let mut table = Table::new(1);
        for (row, &time) in times.iter().enumerate() {
            table.values.push(row as f64);
            table.push_meta(row % 2 == 0, Some(time), Some(row as u64), 1.0);
        }
        table
    }

    #[test]
    fn sorting_by_time_keeps_rows_whole() {
        let mut rows = table(&[30, 10, 20, 10]);
        assert!(rows.sort_by_time());
        assert_eq!(rows.times, [10, 10, 20, 30]);
        assert_eq!(rows.values, [1.0, 3.0, 2.0, 0.0]);
        assert_eq!(rows.entities, [1, 3, 2, 0]);
        assert_eq!(rows.labels, [false, false, true, true]);
        assert!(!rows.sort_by_time());
    }

    #[test]
    fn windows_cut_rows_in_time_order() {
        let rows = table(&[10, 20, 20, 30, 40]);
        assert_eq!(rows.rows_between(20, 40), 1..4);
        assert_eq!(rows.rows_between(41, 50), 5..5);
        assert_eq!(rows.rows_between(0, 5), 0..0);
        let part = rows.slice(1..4);
        assert_eq!((part.len(), part.times.as_slice()), (3, &[20, 20, 30][..]));
        assert_eq!(
            part.period(),
            Some((Timestamp::from_millis(20), Timestamp::from_millis(30)))
        );
    }
}
