//! Batch scoring: rows are gathered into blocks of [`BLOCK_ROWS`], each block
//! is scored at once ([`Artifact::score_batch`]) and the reasons of its
//! flagged rows are computed in parallel; the caller gets the block back, in
//! order, each row with its score and reasons (and writes them where it likes).

use fraudlens_core::{Decision, Reason};
use rayon::prelude::*;

use super::{Artifact, Score};
use crate::ModelError;

/// Rows scored together (in parallel) before they are handed back.
pub const BLOCK_ROWS: usize = 16 * 1024;

/// Scores rows in blocks; `M` is what the caller keeps with each row (its
/// id, time, label…), handed back with the row's score.
pub struct BatchScorer<'a, M> {
    artifact: &'a Artifact,
    /// Reasons per flagged row (review or decline); none for approved rows.
    n_reasons: usize,
    /// The rows of the current block, one after the other.
    values: Vec<f64>,
    /// What the caller keeps with each row of the current block.
    pending: Vec<M>,
}

impl<'a, M> BatchScorer<'a, M> {
    /// A scorer giving `n_reasons` reasons for every flagged row.
    pub fn new(artifact: &'a Artifact, n_reasons: usize) -> Self {
        Self {
            artifact,
            n_reasons,
            values: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Adds a row (the model's inputs, [`Artifact::n_inputs`] values); when
    /// the block is full, returns it scored.
    pub fn push(&mut self, row: &[f64], meta: M) -> Result<Option<Vec<ScoredRow<M>>>, ModelError> {
        self.values.extend_from_slice(row);
        self.pending.push(meta);
        if self.pending.len() < BLOCK_ROWS {
            return Ok(None);
        }
        self.flush().map(Some)
    }

    /// Scores the rows gathered so far (at the end: the last block, maybe empty).
    pub fn flush(&mut self) -> Result<Vec<ScoredRow<M>>, ModelError> {
        let artifact = self.artifact;
        let n_features = artifact.n_inputs();
        let scores = artifact.score_batch(&self.values)?;
        // reasons for every flagged row
        let n_reasons = self.n_reasons;
        let reasons: Vec<Vec<Reason>> = scores
            .par_iter()
            .zip(self.values.par_chunks(n_features.max(1)))
            .map(|(score, row)| {
                if n_reasons > 0 && score.decision != Decision::Approve {
                    artifact.reasons(row, n_reasons).unwrap_or_default()
                } else {
                    Vec::new()
                }
            })
            .collect();
        self.values.clear();
        Ok(self
            .pending
            .drain(..)
            .zip(scores)
            .zip(reasons)
            .map(|((meta, score), reasons)| ScoredRow { meta, score, reasons })
            .collect())
    }
}

/// A row scored by a [`BatchScorer`].
pub struct ScoredRow<M> {
    /// What the caller kept with the row.
    pub meta: M,
    /// Its score and decision.
    pub score: Score,
    /// The strongest reasons of a flagged row (empty for an approved one).
    pub reasons: Vec<Reason>,
}
