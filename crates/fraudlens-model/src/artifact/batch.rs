//! Batch scoring: rows are gathered into blocks of [`BLOCK_ROWS`], each block
//! is scored at once ([`Artifact::score_batch`]) and the reasons of its
//! flagged rows are computed in parallel; the caller gets the block back, in
//! order, each row with its score and reasons (and writes them where it likes).

use fraudlens_core::Reason;
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
        // reasons for every flagged row; a row whose reasons fail fails the block
        let n_reasons = self.n_reasons;
        let reasons: Vec<Vec<Reason>> = scores
            .par_iter()
            .zip(self.values.par_chunks(n_features.max(1)))
            .map(|(score, row)| {
                if n_reasons > 0 && score.decision.is_flagged() {
                    artifact.reasons(row, n_reasons)
                } else {
                    Ok(Vec::new())
                }
            })
            .collect::<Result<_, _>>()?;
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use fraudlens_core::Decision;
    use fraudlens_core::rng::Rng;

    use super::*;

    /// Rows across a block boundary come back once each, in order, scored as
    /// one `score_batch` of them all, with reasons for the flagged ones only.
    #[test]
    fn blocks_return_every_row_in_order_with_reasons_for_flagged_rows() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/artifact-v1");
        let artifact = Artifact::load(&dir).unwrap();
        let n_inputs = artifact.n_inputs();
        let mut rng = Rng::new(5, 0);
        let values: Vec<f64> = (0..(BLOCK_ROWS + 7) * n_inputs)
            .map(|_| match rng.below(8) {
                0 => f64::NAN,
                _ => rng.range(0.0, 2000.0),
            })
            .collect();
        let expected = artifact.score_batch(&values).unwrap();

        let mut scorer = BatchScorer::new(&artifact, 2);
        let mut scored = Vec::new();
        for (row_idx, row) in values.chunks(n_inputs).enumerate() {
            if let Some(block) = scorer.push(row, row_idx).unwrap() {
                assert_eq!(block.len(), BLOCK_ROWS);
                scored.extend(block);
            }
        }
        scored.extend(scorer.flush().unwrap());

        assert_eq!(scored.len(), expected.len());
        for (row_idx, (row, expected)) in scored.iter().zip(&expected).enumerate() {
            assert_eq!(row.meta, row_idx);
            assert_eq!(&row.score, expected);
            let reasons = match expected.decision {
                Decision::Approve => Vec::new(),
                _ => artifact.reasons(&values[row_idx * n_inputs..][..n_inputs], 2).unwrap(),
            };
            assert_eq!(row.reasons, reasons);
        }
        assert!(
            scored.iter().any(|row| !row.reasons.is_empty()),
            "some rows should be flagged"
        );
    }
}
