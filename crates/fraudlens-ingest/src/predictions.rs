//! The predictions of a batch-scoring run as CSV: one row per scored row —
//! id, time, probability, decision, raw score (and anomaly score), the
//! reasons of a flagged row, the label — written as the
//! [`BatchScorer`] hands its blocks back, with the run's [`RunStats`].

use fraudlens_model::ModelError;
use fraudlens_model::artifact::{Artifact, BatchScorer, RunStats, ScoredRow};

/// What is kept with a row while its block waits to be scored.
pub struct RowMeta {
    /// Transaction id (event mode) or row number (tabular mode).
    pub id: String,
    /// Event time (empty in tabular mode).
    pub time: String,
    /// Fraud = true, when known.
    pub label: Option<bool>,
}

/// Scoring or writing the predictions failed.
#[derive(Debug, thiserror::Error)]
pub enum PredictionError {
    /// The model could not score a block.
    #[error("scoring: {0}")]
    Scoring(#[from] ModelError),
    /// The output could not be written.
    #[error("writing predictions: {0}")]
    Write(#[from] csv::Error),
}

/// Scores rows in blocks, writes their predictions to `W` and counts them.
pub struct Predictions<'a, W: std::io::Write> {
    blocks: BatchScorer<'a, RowMeta>,
    writer: csv::Writer<W>,
    n_reasons: usize,
    anomaly: bool,
    stats: RunStats,
}

impl<'a, W: std::io::Write> Predictions<'a, W> {
    /// Writes the header: `id_column`, `timestamp`, `fraud_probability`,
    /// `decision`, `raw_score`, `anomaly_score` (when the model has one),
    /// three columns per reason, `label`.
    pub fn new(artifact: &'a Artifact, n_reasons: usize, inner: W, id_column: &str) -> csv::Result<Self> {
        let mut writer = csv::Writer::from_writer(inner);
        let anomaly = artifact.anomaly.is_some();
        let mut header = vec![id_column.to_owned(), "timestamp".into(), "fraud_probability".into()];
        header.extend(["decision".into(), "raw_score".into()]);
        if anomaly {
            header.push("anomaly_score".into());
        }
        for idx in 1..=n_reasons {
            header.extend([
                format!("reason_{idx}"),
                format!("reason_{idx}_value"),
                format!("reason_{idx}_contribution"),
            ]);
        }
        header.push("label".into());
        writer.write_record(&header)?;
        Ok(Self {
            blocks: BatchScorer::new(artifact, n_reasons),
            writer,
            n_reasons,
            anomaly,
            stats: RunStats::default(),
        })
    }

    /// Adds a row of model inputs; a full block is scored and written.
    pub fn push(&mut self, row: &[f64], meta: RowMeta) -> Result<(), PredictionError> {
        if let Some(block) = self.blocks.push(row, meta)? {
            self.write(block)?;
        }
        Ok(())
    }

    /// Scores and writes the last block; returns the output, flushed, and the run's statistics.
    pub fn finish(mut self) -> Result<(W, RunStats), PredictionError> {
        let block = self.blocks.flush()?;
        self.write(block)?;
        let output = self
            .writer
            .into_inner()
            .map_err(|error| csv::Error::from(error.into_error()))?;
        Ok((output, self.stats))
    }

    fn write(&mut self, block: Vec<ScoredRow<RowMeta>>) -> csv::Result<()> {
        // shortest representations that read back to the same f64
        let number = |value: Option<f64>| value.map(|value| value.to_string()).unwrap_or_default();
        let w = &mut self.writer;
        for ScoredRow { meta, score, reasons } in block {
            w.write_field(&meta.id)?;
            w.write_field(&meta.time)?;
            w.write_field(number(score.probability))?;
            w.write_field(score.decision.as_str())?;
            w.write_field(number(score.raw))?;
            if self.anomaly {
                w.write_field(number(score.anomaly))?;
            }
            for idx in 0..self.n_reasons {
                match reasons.get(idx) {
                    Some(reason) => {
                        w.write_field(&reason.feature)?;
                        let value = match (&reason.category, reason.value) {
                            (Some(category), _) => category.clone(),
                            (None, Some(value)) => value.to_string(),
                            (None, None) => String::new(),
                        };
                        w.write_field(value)?;
                        w.write_field(format!("{:.6}", reason.contribution))?;
                    }
                    None => {
                        for _ in 0..3 {
                            w.write_field("")?;
                        }
                    }
                }
            }
            w.write_field(match meta.label {
                Some(true) => "1",
                Some(false) => "0",
                None => "",
            })?;
            w.write_record(None::<&[u8]>)?;
            self.stats.add(&score, meta.label);
        }
        Ok(())
    }
}
