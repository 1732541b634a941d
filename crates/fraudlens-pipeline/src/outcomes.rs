//! The rolling precision of flagged decisions, as labels arrive: among the
//! review and decline decisions of the last [`WINDOW`] stored, the share of
//! those labelled (an analyst's review, a chargeback) that were fraud —
//! the live measure of whether the model still flags fraud, which drift
//! statistics alone cannot say. Published every [`EVERY`] by each process
//! (`fraudlens_review_precision`, and `fraudlens_flagged_decisions{label}`
//! with `fraud`, `legit` and `unlabelled`), from one query over a range of
//! the store's primary key.

use std::sync::{Arc, Weak};
use std::time::Duration;

use fraudlens_store::{FlaggedOutcomes, StoreError};

use crate::Pipeline;

/// Stored decisions (the latest) whose flagged ones are counted.
pub const WINDOW: i64 = 100_000;

/// How often the gauges are published.
pub const EVERY: Duration = Duration::from_secs(30);

impl Pipeline {
    /// The labels of the flagged decisions among the last [`WINDOW`] stored,
    /// published as gauges.
    pub async fn flagged_outcomes(&self) -> Result<FlaggedOutcomes, StoreError> {
        let last = self.store().last_seq().await?;
        let outcomes = self.store().flagged_outcomes(last.saturating_sub(WINDOW)).await?;
        metrics::gauge!("fraudlens_review_precision").set(outcomes.precision().unwrap_or(f64::NAN));
        let unlabelled = outcomes.flagged - outcomes.fraud - outcomes.legit;
        for (label, count) in [
            ("fraud", outcomes.fraud),
            ("legit", outcomes.legit),
            ("unlabelled", unlabelled),
        ] {
            metrics::gauge!("fraudlens_flagged_decisions", "label" => label).set(count as f64);
        }
        Ok(outcomes)
    }
}

/// Publishes the outcomes every [`EVERY`] while the pipeline lives.
pub(crate) fn start(pipeline: &Arc<Pipeline>) {
    let watched: Weak<Pipeline> = Arc::downgrade(pipeline);
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            let Some(pipeline) = watched.upgrade() else { break };
            if pipeline.is_closed() {
                break;
            }
            match pipeline.flagged_outcomes().await {
                Ok(_) => failing = false,
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "counting the labels of flagged decisions failed");
                    }
                    failing = true;
                }
            }
            drop(pipeline);
            tokio::time::sleep(EVERY).await;
        }
    });
}
