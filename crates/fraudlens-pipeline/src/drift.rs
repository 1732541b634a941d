//! Live drift: the inputs and scores of the last [`WINDOW`] stored
//! decisions, counted in the bins of the serving model's reference
//! distributions (`fraudlens_model::drift`), so that a report costs one pass
//! over the bins, not over the decisions.
//!
//! Each stored decision adds one small bin index per input to a ring and
//! the oldest leaves it (a few dozen comparisons per decision, under a lock
//! taken once per written batch). Every [`PUBLISH_EVERY`] decisions, once the
//! window holds [`MIN_ROWS`], the population stability indices are published
//! as `fraudlens_feature_psi{feature}` and `fraudlens_score_psi`. A new
//! serving model starts an empty window; a model without a reference
//! (imported, or trained before drift monitoring) has none.

use std::collections::VecDeque;
use std::sync::Mutex;

use fraudlens_model::drift::{DriftReport, DriftSettings, Reference};
use fraudlens_store::NewDecision;

use crate::{ServingModel, lock};

/// Decisions in the window.
pub const WINDOW: usize = 10_000;

/// Fewest decisions before PSI is published (fewer make it noise).
pub const MIN_ROWS: usize = 500;

/// Decisions between two publications of the gauges.
pub const PUBLISH_EVERY: usize = 1_000;

/// The live window of one serving model.
struct Window {
    reference: Reference,
    /// Per decision: the bin of each input, then the score's.
    bins: VecDeque<Box<[u8]>>,
    /// Per input (then the score): decisions per bin, the missing bin last.
    counts: Vec<Vec<u64>>,
    since_published: usize,
}

/// The live drift of a pipeline's serving model.
pub(crate) struct LiveDrift {
    /// The serving model's version, and its window when it has a reference.
    window: Mutex<(String, Option<Window>)>,
    settings: DriftSettings,
}

impl LiveDrift {
    pub(crate) fn new(settings: DriftSettings) -> Self {
        Self {
            window: Mutex::new((String::new(), None)),
            settings,
        }
    }

    /// Counts the stored decisions of `model` among `records`.
    pub(crate) fn observe<'a>(&self, model: &ServingModel, records: impl Iterator<Item = &'a NewDecision>) {
        let mut guard = lock(&self.window);
        let (version, window) = Self::follow(&mut guard, model);
        let Some(window) = window else { return };
        let mut added = 0;
        for record in records.filter(|record| record.model_version == *version) {
            window.push(record);
            added += 1;
        }
        window.since_published += added;
        if window.since_published >= PUBLISH_EVERY && window.bins.len() >= MIN_ROWS {
            window.since_published = 0;
            publish(&window.report(&self.settings));
        }
    }

    /// The report of the window of `model`, the serving model (`None` when
    /// it keeps no reference), with its version.
    pub(crate) fn report(&self, model: &ServingModel) -> Option<(String, DriftReport)> {
        let mut guard = lock(&self.window);
        let (version, window) = Self::follow(&mut guard, model);
        window
            .as_ref()
            .map(|window| (version.clone(), window.report(&self.settings)))
    }

    /// The window of `model`: a new, empty one when the serving model changed.
    fn follow<'g>(
        guard: &'g mut (String, Option<Window>),
        model: &ServingModel,
    ) -> (&'g String, &'g mut Option<Window>) {
        let (version, window) = guard;
        if version != model.version() {
            version.clear();
            version.push_str(model.version());
            *window = Window::new(model);
            // the previous model's score says nothing now
            metrics::gauge!("fraudlens_score_psi").set(0.0);
        }
        (version, window)
    }
}

impl Window {
    fn new(model: &ServingModel) -> Option<Self> {
        let reference = model.artifact.manifest.reference.clone()?;
        let counts = reference
            .features
            .iter()
            .chain(&reference.score)
            .map(|distribution| vec![0; distribution.shares.len() + 1])
            .collect();
        Some(Self {
            reference,
            bins: VecDeque::with_capacity(WINDOW),
            counts,
            since_published: 0,
        })
    }

    fn push(&mut self, record: &NewDecision) {
        let reference = &self.reference;
        if self.bins.len() == WINDOW
            && let Some(oldest) = self.bins.pop_front()
        {
            for (counts, bin) in self.counts.iter_mut().zip(oldest.iter()) {
                counts[usize::from(*bin)] -= 1;
            }
        }
        let values = reference
            .features
            .iter()
            .enumerate()
            .map(|(idx, distribution)| distribution.bin_of(record.features.get(idx).copied().unwrap_or(f64::NAN)))
            .chain(
                reference
                    .score
                    .iter()
                    .map(|distribution| distribution.bin_of(record.score)),
            );
        let bins: Box<[u8]> = values
            .zip(self.counts.iter_mut())
            .map(|(bin, counts)| {
                counts[bin] += 1;
                // at most MAX_BINS + 1 bins
                bin as u8
            })
            .collect();
        self.bins.push_back(bins);
    }

    fn report(&self, settings: &DriftSettings) -> DriftReport {
        let reference = &self.reference;
        let n_features = reference.features.len();
        let score = reference.score.as_ref().map(|_| self.counts[n_features].as_slice());
        reference.report_of_counts(self.bins.len(), &self.counts[..n_features], score, settings)
    }
}

/// Sets the gauges.
fn publish(report: &DriftReport) {
    for drift in &report.features {
        metrics::gauge!("fraudlens_feature_psi", "feature" => drift.name.clone()).set(drift.psi);
    }
    if let Some(score) = &report.score {
        metrics::gauge!("fraudlens_score_psi").set(score.psi);
    }
}
