//! [`RunStats`]: what a batch-scoring run adds up as its rows are scored —
//! decisions, the score histogram, ROC AUC and average precision over the
//! labelled rows — and [`ScoreStats`], the run's statistics (`score --stats`).

use fraudlens_core::Decision;
use serde::Serialize;

use super::{Artifact, Score};
use crate::metrics::{average_precision, roc_auc};

/// Accumulates the statistics of a scoring run, row by row.
#[derive(Debug, Default)]
pub struct RunStats {
    /// Ranking score of every row, in order.
    rankings: Vec<f64>,
    /// Ranking score and label of the labelled rows.
    labelled: Vec<(f64, bool)>,
    decisions: DecisionCounts,
}

/// Where a run's rows came from and how long it took, for [`RunStats::finish`].
pub struct RunInfo {
    /// The input file.
    pub input: String,
    /// Rows read (all of them build feature state).
    pub rows_read: u64,
    /// Unreadable rows skipped.
    pub bad_rows: u64,
    /// Wall time of the run.
    pub seconds: f64,
}

impl RunStats {
    /// Counts a scored row (`label`: fraud = true, when known).
    pub fn add(&mut self, score: &Score, label: Option<bool>) {
        self.rankings.push(score.ranking());
        if let Some(label) = label {
            self.labelled.push((score.ranking(), label));
        }
        match score.decision {
            Decision::Approve => self.decisions.approve += 1,
            Decision::Review => self.decisions.review += 1,
            Decision::Decline => self.decisions.decline += 1,
        }
    }

    /// The statistics of the run of `artifact`.
    pub fn finish(self, artifact: &Artifact, info: RunInfo) -> ScoreStats {
        let n = self.rankings.len() as u64;
        let mut histogram: Vec<HistogramBin> = (0..10)
            .map(|idx| HistogramBin {
                lower: f64::from(idx) / 10.0,
                upper: f64::from(idx + 1) / 10.0,
                count: 0,
            })
            .collect();
        for probability in &self.rankings {
            histogram[((probability * 10.0) as usize).min(9)].count += 1;
        }
        let (scores, labels): (Vec<f64>, Vec<bool>) = self.labelled.iter().copied().unzip();
        let frauds = labels.iter().filter(|label| **label).count();
        let thresholds = &artifact.manifest.thresholds;
        ScoreStats {
            model_id: artifact.manifest.model_id.clone(),
            input: info.input,
            rows_read: info.rows_read,
            rows_scored: n,
            bad_rows: info.bad_rows,
            decisions: self.decisions,
            labelled_rows: labels.len() as u64,
            fraud_rate: (!labels.is_empty()).then(|| frauds as f64 / labels.len() as f64),
            roc_auc: roc_auc(&scores, &labels),
            average_precision: average_precision(&scores, &labels),
            mean_probability: self.rankings.iter().sum::<f64>() / n.max(1) as f64,
            score_histogram: histogram,
            thresholds: (thresholds.review(), thresholds.decline()),
            seconds: info.seconds,
            rows_per_second: n as f64 / info.seconds.max(1e-9),
        }
    }
}

/// Statistics of a scoring run (`--stats`).
#[derive(Debug, Serialize)]
pub struct ScoreStats {
    /// Model that scored.
    pub model_id: String,
    /// The input file.
    pub input: String,
    /// Rows read (all of them build feature state).
    pub rows_read: u64,
    /// Rows scored (inside the window).
    pub rows_scored: u64,
    /// Unreadable rows skipped.
    pub bad_rows: u64,
    /// Rows per decision.
    pub decisions: DecisionCounts,
    /// Scored rows with a label.
    pub labelled_rows: u64,
    /// Fraud share among labelled rows.
    pub fraud_rate: Option<f64>,
    /// ROC AUC on labelled rows.
    pub roc_auc: Option<f64>,
    /// Average precision on labelled rows.
    pub average_precision: Option<f64>,
    /// Mean fraud probability.
    pub mean_probability: f64,
    /// Counts of probabilities in ten equal bins of [0, 1].
    pub score_histogram: Vec<HistogramBin>,
    /// Review and decline thresholds.
    pub thresholds: (f64, Option<f64>),
    /// Wall time of the run.
    pub seconds: f64,
    /// Scored rows per second of wall time (replay included).
    pub rows_per_second: f64,
}

/// Rows per decision.
#[derive(Debug, Default, Serialize)]
pub struct DecisionCounts {
    /// Approved.
    pub approve: u64,
    /// Sent to review.
    pub review: u64,
    /// Declined.
    pub decline: u64,
}

/// One bin of the score histogram.
#[derive(Debug, Serialize)]
pub struct HistogramBin {
    /// Lower edge (inclusive).
    pub lower: f64,
    /// Upper edge (exclusive, inclusive for the last).
    pub upper: f64,
    /// Rows.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn score(probability: f64, decision: Decision) -> Score {
        Score {
            raw: None,
            probability: Some(probability),
            decision,
            anomaly: None,
        }
    }

    /// Decisions counted, probabilities binned (1.0 in the last bin), the
    /// ranking metrics over the labelled rows only.
    #[test]
    fn a_run_counts_decisions_bins_scores_and_ranks_the_labelled_rows() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/artifact-v1");
        let artifact = Artifact::load(&dir).unwrap();
        let mut stats = RunStats::default();
        stats.add(&score(0.05, Decision::Approve), Some(false));
        stats.add(&score(0.95, Decision::Decline), Some(true));
        stats.add(&score(1.0, Decision::Decline), None);
        stats.add(&score(0.55, Decision::Review), Some(false));
        let info = RunInfo {
            input: "in.csv".to_owned(),
            rows_read: 5,
            bad_rows: 1,
            seconds: 2.0,
        };
        let stats = stats.finish(&artifact, info);
        assert_eq!((stats.rows_read, stats.rows_scored, stats.bad_rows), (5, 4, 1));
        let decisions = &stats.decisions;
        assert_eq!((decisions.approve, decisions.review, decisions.decline), (1, 1, 2));
        let counts: Vec<u64> = stats.score_histogram.iter().map(|bin| bin.count).collect();
        assert_eq!(counts, [1, 0, 0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(stats.labelled_rows, 3);
        assert_eq!(stats.roc_auc, Some(1.0));
        assert!((stats.mean_probability - 2.55 / 4.0).abs() < 1e-12);
        assert_eq!(stats.rows_per_second, 2.0);
        assert_eq!(stats.model_id, artifact.manifest.model_id);
    }
}
