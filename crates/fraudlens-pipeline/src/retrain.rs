//! The model lifecycle on what was served: the stored decisions of a time
//! window become model rows — the feature vectors stored at decision time,
//! which are point-in-time correct by construction (the label-delayed
//! features hold only the labels known then), and the labels that arrived
//! since (analyst reviews, chargebacks) — to train a candidate (`fraudlens
//! retrain`) and to compare two models on the same recent, label-matured
//! transactions that neither trained on ([`compare()`]).
//!
//! **Labels.** A stored label wins (the latest one). A transaction without a
//! label counts as legitimate once it is older than the label maturity
//! (fraud reports arrive within it); a younger one is left out — labelled or
//! not, since keeping only the young rows that happen to be labelled would
//! over-represent fraud. The maturity is counted back from the newest stored
//! event (no later than the event-time policy lets an event be), not from
//! the wall clock, so a store replayed from history behaves as a live one.
//!
//! **Inputs.** A stored vector is used as it is only when the model that
//! decided it reads the same inputs as the model being trained or compared
//! (the same schema, feature spec and attribute encoders, read from its
//! registered artifact's manifest) — [`stored_rows`]. Otherwise the stored
//! transactions are replayed, in store order, through a fresh engine of the
//! model's feature spec ([`replayed_rows`], [`replayed_candidate_rows`]): as
//! offline training does, a fraud label becomes known to the label-delayed
//! features the spec's `label_delay` after its transaction. Two models are
//! compared on features made the same way: the stored vectors both read, or
//! one replay that computes both models' rows of each transaction.
//!
//! **One read.** Each function reads the store once, up to the newest row
//! stored when it starts, so labels or transactions that arrive meanwhile
//! cannot make two models' rows differ.

use std::collections::BTreeMap;
use std::sync::Arc;

use fraudlens_core::{Currency, Label, Schema, Timestamp, Transaction, WindowDuration};
use fraudlens_features::{EventTimePolicy, FeatureEngine, FeatureSpec, Replay};
use fraudlens_model::artifact::{Artifact, Manifest};
use fraudlens_model::compare::{self, CompareSettings, Comparison, Metric, Scored, Verdict};
use fraudlens_model::fit::{CheckedFitParams, EventRows, EventTable, Table};
use fraudlens_model::inputs::{EventInputs, InputSpec};
use fraudlens_store::{Store, StoreError, StoredDecision};
use serde::{Deserialize, Serialize};

use crate::{Reads, ServingModel};

mod traffic;
pub use traffic::{ShadowTraffic, TrafficMetrics, shadow_traffic};

/// Stored decisions read per query.
const PAGE: u32 = 5_000;

/// `[retrain]`: how `fraudlens retrain` and `fraudlens models compare` read
/// the store and judge a candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrainSettings {
    /// Unlabelled transactions older than this, counted back from the
    /// newest stored event, are legitimate; younger ones are left out.
    pub label_maturity: WindowDuration,
    /// `retrain` keeps the latest matured span of this length out of
    /// training and compares the candidate with production on it.
    pub holdout: WindowDuration,
    /// What a candidate must win on (`average_precision`, `roc_auc`,
    /// `card_precision_at_k`, `recall_at_review`, `expected_cost`); the
    /// others but recall are guards it must not lose significantly on.
    pub primary_metric: Metric,
    /// Cost of reviewing one flagged transaction, in major currency units
    /// (a missed fraud costs its amount).
    pub review_cost: f64,
    /// The k of card precision@k per day.
    pub k: usize,
    /// Bootstrap resamples of the comparison (days drawn with replacement).
    pub resamples: usize,
    /// Confidence of the intervals.
    pub confidence: f64,
}

impl Default for RetrainSettings {
    fn default() -> Self {
        Self {
            label_maturity: WindowDuration::days(7),
            holdout: WindowDuration::days(7),
            primary_metric: Metric::AveragePrecision,
            review_cost: 5.0,
            k: 100,
            resamples: 1000,
            confidence: 0.95,
        }
    }
}

impl RetrainSettings {
    /// The comparison's settings, after checking the ranges.
    pub fn compare_settings(&self) -> Result<CompareSettings, String> {
        if !(self.review_cost.is_finite() && self.review_cost >= 0.0) {
            return Err(format!(
                "retrain.review_cost must be 0 or more, not {}",
                self.review_cost
            ));
        }
        if self.k == 0 {
            return Err("retrain.k must be at least 1".to_owned());
        }
        if !(compare::MIN_RESAMPLES..=100_000).contains(&self.resamples) {
            return Err(format!(
                "retrain.resamples must be between {} and 100000, not {}",
                compare::MIN_RESAMPLES,
                self.resamples
            ));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(format!(
                "retrain.confidence must be between 0 and 1, not {}",
                self.confidence
            ));
        }
        if self.label_maturity.as_millis() < 0 || self.holdout.as_millis() <= 0 {
            return Err("retrain.holdout must be positive and retrain.label_maturity not negative".to_owned());
        }
        Ok(CompareSettings {
            k: self.k,
            review_cost: self.review_cost,
            resamples: self.resamples,
            confidence: self.confidence,
            seed: 0,
        })
    }
}

/// Why rows could not be read or models not compared.
#[derive(Debug, thiserror::Error)]
pub enum RetrainError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store holds no transaction.
    #[error("the store holds no transactions")]
    Empty,
    /// The rows lack a class: nothing to train on or to compare.
    #[error(
        "the window {from} .. {to} holds {fraud} fraud and {legit} legitimate labelled or matured transactions; \
         both are needed"
    )]
    OneClass {
        /// Window start.
        from: Timestamp,
        /// Window end.
        to: Timestamp,
        /// Fraud rows.
        fraud: u64,
        /// Legitimate rows.
        legit: u64,
    },
    /// The two models read different inputs and one of them reads feature rows (nothing to replay).
    #[error(
        "{candidate} and {against} read different inputs, and feature rows cannot be replayed into \
         other features: compare models that read the same rows"
    )]
    DifferentInputs {
        /// The candidate.
        candidate: String,
        /// The other model.
        against: String,
    },
    /// The window overlaps what a model trained on.
    #[error(
        "model {version} trained on transactions up to {trained_to}, inside the window {from} .. {to}: \
         compare on later transactions (--from after {trained_to})"
    )]
    Overlap {
        /// The model.
        version: String,
        /// Its last training (or validation) transaction.
        trained_to: Timestamp,
        /// Window start.
        from: Timestamp,
        /// Window end.
        to: Timestamp,
    },
    /// The window is empty or reversed.
    #[error("the window {from} .. {to} is empty")]
    EmptyWindow {
        /// Start.
        from: Timestamp,
        /// End.
        to: Timestamp,
    },
    /// A stored transaction does not parse.
    #[error("stored transaction {seq} is unreadable: {error}")]
    Unreadable {
        /// Its sequence number.
        seq: i64,
        /// Why.
        error: String,
    },
    /// A model failed to score the rows, or gave scores that rank nothing.
    #[error("scoring with {version}: {error}")]
    Scoring {
        /// The model.
        version: String,
        /// Why.
        error: String,
    },
}

/// How the stored decisions of a window became rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    /// Stored transactions in the window.
    pub in_window: u64,
    /// Labelled fraud.
    pub fraud: u64,
    /// Labelled legitimate.
    pub legit: u64,
    /// Unlabelled and older than the label maturity: legitimate.
    pub matured: u64,
    /// Unlabelled or labelled, younger than the maturity: left out.
    pub immature: u64,
    /// Decided by a model with other inputs (or one no longer registered), by version: left out.
    pub other_inputs: BTreeMap<String, u64>,
    /// The features come from replaying the stored transactions, not from the stored vectors.
    pub replayed: bool,
}

impl RowCounts {
    /// Rows kept.
    pub fn rows(&self) -> u64 {
        self.fraud + self.legit + self.matured
    }

    /// Legitimate rows kept (labelled or matured).
    pub fn legitimate(&self) -> u64 {
        self.legit + self.matured
    }

    /// The label rule, counted: fraud or not for a row kept, `None` for one
    /// left out as too recent.
    fn judge(&mut self, stored: &StoredDecision, matured_before: Timestamp) -> Option<bool> {
        self.in_window += 1;
        if stored.decision.event_time >= matured_before {
            self.immature += 1;
            return None;
        }
        Some(match stored.label {
            Some(Label::Fraud) => {
                self.fraud += 1;
                true
            }
            Some(Label::Legit) => {
                self.legit += 1;
                false
            }
            None => {
                self.matured += 1;
                false
            }
        })
    }
}

/// A half-open window of event time `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// First instant in.
    #[serde(with = "rfc3339")]
    pub from: Timestamp,
    /// First instant out.
    #[serde(with = "rfc3339")]
    pub to: Timestamp,
}

impl Window {
    /// `[from, to)`, refused when empty.
    pub fn new(from: Timestamp, to: Timestamp) -> Result<Self, RetrainError> {
        if from >= to {
            return Err(RetrainError::EmptyWindow { from, to });
        }
        Ok(Self { from, to })
    }

    fn contains(&self, time: Timestamp) -> bool {
        self.from <= time && time < self.to
    }
}

/// Times in reports as RFC 3339 text, as everywhere people read them.
mod rfc3339 {
    use fraudlens_core::{Timestamp, TimestampFormat};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(time: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(time)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text, TimestampFormat::Datetime).map_err(serde::de::Error::custom)
    }
}

/// Rows read from the store.
#[derive(Debug)]
pub struct StoredRows {
    /// The rows in time order (event mode: times, primary entities, amounts).
    pub table: Table,
    /// How the stored decisions became rows.
    pub counts: RowCounts,
}

/// The newest stored event time — no later than `policy` lets an event be
/// at `now_ms`, so one transaction dated years ahead cannot mature every
/// other — less `maturity_ms`: unlabelled transactions before it count as
/// legitimate.
pub async fn maturity_cutoff(
    store: &dyn Store,
    maturity_ms: i64,
    policy: &EventTimePolicy,
    now_ms: i64,
) -> Result<Timestamp, RetrainError> {
    let newest = store.latest_event_time().await?.ok_or(RetrainError::Empty)?.as_millis();
    let latest_allowed = policy
        .max_future_ms
        .map_or(i64::MAX, |ahead| now_ms.saturating_add(ahead));
    Ok(Timestamp::from_millis(
        newest.min(latest_allowed).saturating_sub(maturity_ms),
    ))
}

/// Every stored decision up to the newest stored when called (in store
/// order), from the first one dated at or after `from` on, page by page.
async fn read_stored(
    store: &dyn Store,
    from: Option<Timestamp>,
    mut visit: impl FnMut(&StoredDecision) -> Result<(), RetrainError>,
) -> Result<(), RetrainError> {
    let upto = store.last_seq().await?;
    let mut after = match from {
        // every row dated at or after `from` has a seq at or after the first one so dated
        Some(from) => match store.first_seq_since(from, None).await? {
            Some(first) => first - 1,
            None => return Ok(()),
        },
        None => 0,
    };
    while after < upto {
        let page = store.transactions_after(after, PAGE, None).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for stored in page.iter().take_while(|stored| stored.seq <= upto) {
            visit(stored)?;
        }
    }
    Ok(())
}

/// The stored decisions of `window` as rows of the inputs `inputs` (named
/// `names`), labelled as the module doc says with `matured_before` as the
/// maturity cutoff; rows decided by a model with other inputs are counted
/// and left out.
pub async fn stored_rows(
    store: &dyn Store,
    inputs: &InputSpec,
    names: &[String],
    window: Window,
    matured_before: Timestamp,
) -> Result<StoredRows, RetrainError> {
    let readable = versions_reading(store, inputs, names).await?;
    let mut table = Table::new(names.len());
    let mut counts = RowCounts::default();
    read_stored(store, Some(window.from), |stored| {
        let decision = &stored.decision;
        if !window.contains(decision.event_time) {
            return Ok(());
        }
        if !readable.contains(&decision.model_version) {
            counts.in_window += 1;
            *counts.other_inputs.entry(decision.model_version.clone()).or_default() += 1;
            return Ok(());
        }
        if let Some(fraud) = counts.judge(stored, matured_before) {
            // a vector stored shorter than the inputs (never written so) reads as missing values
            let start = table.values.len();
            table.values.extend(decision.features.iter().take(names.len()));
            table.values.resize(start + names.len(), f64::NAN);
            let entity = decision.entity.as_deref().unwrap_or(&decision.transaction_id);
            table.push_meta(
                fraud,
                Some(decision.event_time.as_millis()),
                Some(entity_hash(entity)),
                amount(stored),
            );
        }
        Ok(())
    })
    .await?;
    // the store's order is the order of the writes; the rows' is event time (stable: ties keep it)
    table.sort_by_time();
    Ok(StoredRows { table, counts })
}

/// A stored decision's amount in major units; NaN when unknown (feature
/// rows store none), which leaves the expected cost out of a comparison.
fn amount(stored: &StoredDecision) -> f64 {
    let decision = &stored.decision;
    match Currency::parse(&decision.currency) {
        Ok(currency) => decision.amount_minor as f64 / 10f64.powi(currency.exponent() as i32),
        Err(_) => f64::NAN,
    }
}

/// Stored transactions replayed through a fresh engine for each of
/// `inputs`: the transactions of `window` as rows of each model (its own
/// feature spec and attribute encoders), one table per model, from one read
/// of the store — the tables hold the same transactions in the same order.
/// Every transaction stored before the window is replayed too (the features
/// of the window's rows depend on them).
pub async fn replayed_rows(
    store: &dyn Store,
    inputs: &[&EventInputs],
    window: Window,
    matured_before: Timestamp,
) -> Result<(Vec<Table>, RowCounts), RetrainError> {
    let specs: Vec<Arc<FeatureSpec>> = inputs.iter().map(|inputs| inputs.spec.clone()).collect();
    let mut tables: Vec<Table> = inputs
        .iter()
        .map(|inputs| Table::new(inputs.spec.feature_names().len() + inputs.attributes.len()))
        .collect();
    let counts = replay(store, &specs, window, matured_before, |tx, features, fraud| {
        for ((table, inputs), features) in tables.iter_mut().zip(inputs).zip(features) {
            table.values.extend_from_slice(features);
            inputs.push_attributes(tx, &mut table.values);
            table.push_meta(
                fraud,
                Some(tx.timestamp.as_millis()),
                Some(entity_hash(primary_key(tx))),
                tx.amount.major(),
            );
        }
    })
    .await?;
    for table in &mut tables {
        table.sort_by_time();
    }
    Ok((tables, counts))
}

/// Stored transactions replayed through a fresh engine of `spec` (with the
/// transactions' `schema`): the transactions of `window` as training rows of
/// a new model, whose attribute encoders [`EventRows::finish`] fits.
pub async fn replayed_candidate_rows(
    store: &dyn Store,
    schema: &Schema,
    spec: &Arc<FeatureSpec>,
    params: &CheckedFitParams,
    window: Window,
    matured_before: Timestamp,
) -> Result<(EventTable, RowCounts), RetrainError> {
    let mut rows = EventRows::new(spec.feature_names().len(), schema);
    let counts = replay(
        store,
        std::slice::from_ref(spec),
        window,
        matured_before,
        |tx, features, fraud| {
            rows.push(tx, &features[0], fraud, entity_hash(primary_key(tx)));
        },
    )
    .await?;
    Ok((rows.finish(schema, spec, params), counts))
}

/// Replays every stored transaction dated before `window.to`, in store
/// order, through one engine per spec, and hands each transaction of the
/// window that the label rule keeps to `keep` with its features per spec.
async fn replay(
    store: &dyn Store,
    specs: &[Arc<FeatureSpec>],
    window: Window,
    matured_before: Timestamp,
    mut keep: impl FnMut(&Transaction, &[Vec<f64>], bool),
) -> Result<RowCounts, RetrainError> {
    let mut counts = RowCounts {
        replayed: true,
        ..RowCounts::default()
    };
    let mut replays: Vec<Replay> = specs
        .iter()
        .map(|spec| Replay::new(FeatureEngine::new(spec.clone())))
        .collect();
    let mut features = vec![Vec::new(); specs.len()];
    read_stored(store, None, |stored| {
        let decision = &stored.decision;
        // feature rows of a tabular model are not transactions
        if decision.event_time >= window.to || decision.body.starts_with(crate::rows::ROW_BODY_PREFIX) {
            return Ok(());
        }
        let mut tx: Transaction = serde_json::from_str(&decision.body).map_err(|error| RetrainError::Unreadable {
            seq: stored.seq,
            error: error.to_string(),
        })?;
        let fraud = match decision.event_time >= window.from {
            true => counts.judge(stored, matured_before),
            false => None,
        };
        // the replay releases a fraud label `label_delay` after its transaction
        tx.label = (stored.label == Some(Label::Fraud)).then_some(Label::Fraud);
        for (replay, out) in replays.iter_mut().zip(&mut features) {
            replay.push(&tx, out);
        }
        if let Some(fraud) = fraud {
            keep(&tx, &features, fraud);
        }
        Ok(())
    })
    .await?;
    Ok(counts)
}

/// The key card precision@k ranks: the transaction's primary entity, else its id.
fn primary_key(tx: &Transaction) -> &str {
    tx.entities
        .first()
        .and_then(Option::as_ref)
        .map_or(tx.id.as_str(), |key| key.as_str())
}

fn entity_hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// The registered versions whose artifacts read `inputs` named `names`
/// (their manifests, read from the registered paths).
async fn versions_reading(
    store: &dyn Store,
    inputs: &InputSpec,
    names: &[String],
) -> Result<std::collections::BTreeSet<String>, RetrainError> {
    let mut readable = std::collections::BTreeSet::new();
    for entry in store.models().await? {
        if entry.feature_names != names {
            continue;
        }
        // a model on object storage is read from its download (one it cannot fetch reads nothing)
        let dir = crate::artifacts::local_dir(
            &entry.path,
            &entry.version,
            entry.digest.as_deref().unwrap_or(""),
            false,
        )
        .await
        .ok();
        if dir
            .and_then(|dir| Manifest::peek(&dir))
            .is_some_and(|manifest| manifest.inputs == *inputs)
        {
            readable.insert(entry.version);
        }
    }
    Ok(readable)
}

/// The rows of `window` as `model` reads them: the stored vectors when every
/// decision in the window was made by a model reading the same inputs, else
/// (a model that reads transactions) the stored transactions replayed
/// through its inputs.
pub async fn rows_for(
    store: &dyn Store,
    model: &ServingModel,
    window: Window,
    matured_before: Timestamp,
) -> Result<StoredRows, RetrainError> {
    let artifact = &model.artifact;
    let names = &artifact.manifest.feature_names[..artifact.n_inputs()];
    let rows = stored_rows(store, &artifact.manifest.inputs, names, window, matured_before).await?;
    match &model.reads {
        Reads::Transactions(inputs) if !rows.counts.other_inputs.is_empty() => {
            let (mut tables, counts) = replayed_rows(store, &[inputs.as_ref()], window, matured_before).await?;
            Ok(StoredRows {
                table: tables.remove(0),
                counts,
            })
        }
        // feature rows cannot be replayed: rows decided by models with other inputs stay out
        _ => Ok(rows),
    }
}

/// A comparison of two models on stored rows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompareReport {
    /// The candidate's version.
    pub candidate: String,
    /// The other model's version.
    pub against: String,
    /// The window of event time compared on.
    pub window: Window,
    /// Unlabelled transactions before this count as legitimate.
    #[serde(with = "rfc3339")]
    pub matured_before: Timestamp,
    /// How the stored decisions became rows.
    pub counts: RowCounts,
    /// The window reaches into what a model trained on (`--allow-overlap`):
    /// that model's numbers are optimistic, and the verdict never promotes.
    pub overlap: bool,
    /// The metrics.
    pub comparison: Comparison,
    /// The candidate as a shadow model on the window's live traffic, when
    /// it scored some of it ([`shadow_traffic`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowTraffic>,
}

impl CompareReport {
    /// The promotion rule ([`Comparison::verdict`]), refused on an overlapping window.
    pub fn verdict(&self, primary: Metric, margin: f64) -> Verdict {
        let mut verdict = self.comparison.verdict(primary, margin);
        if self.overlap {
            verdict.promote = false;
            verdict.reasons.insert(
                0,
                "the window reaches into what a model trained on: its numbers are optimistic".to_owned(),
            );
        }
        verdict
    }
}

/// Compares `candidate` with `against` on the stored decisions of `window`
/// (which must lie after what both trained on, unless `allow_overlap`).
pub async fn compare(
    store: &dyn Store,
    candidate: &ServingModel,
    against: &ServingModel,
    window: Window,
    matured_before: Timestamp,
    allow_overlap: bool,
    settings: &CompareSettings,
) -> Result<CompareReport, RetrainError> {
    let mut overlap = false;
    for model in [candidate, against] {
        if let Some(trained_to) = model
            .artifact
            .seen_until()
            .filter(|trained_to| *trained_to >= window.from)
        {
            if !allow_overlap {
                return Err(RetrainError::Overlap {
                    version: model.version().to_owned(),
                    trained_to,
                    from: window.from,
                    to: window.to,
                });
            }
            overlap = true;
        }
    }
    let (a, b) = (&candidate.artifact, &against.artifact);
    let same_inputs = candidate.reads_same_rows(against);
    // both models read the same rows, or one replay computes each model's own rows
    let (rows, against_rows, counts) = if same_inputs {
        let rows = rows_for(store, candidate, window, matured_before).await?;
        (rows.table, None, rows.counts)
    } else if let (Reads::Transactions(a_inputs), Reads::Transactions(b_inputs)) = (&candidate.reads, &against.reads) {
        let (mut tables, counts) =
            replayed_rows(store, &[a_inputs.as_ref(), b_inputs.as_ref()], window, matured_before).await?;
        let against_rows = tables.pop();
        (tables.remove(0), against_rows, counts)
    } else {
        return Err(RetrainError::DifferentInputs {
            candidate: candidate.version().to_owned(),
            against: against.version().to_owned(),
        });
    };
    let (a, b) = (
        (candidate.version().to_owned(), a.clone()),
        (against.version().to_owned(), b.clone()),
    );
    let settings = settings.clone();
    // scoring and resampling are CPU work: off the async threads
    let comparison = tokio::task::spawn_blocking(move || -> Result<Option<Comparison>, RetrainError> {
        let candidate_scores = ranking(&a.0, &a.1, &rows)?;
        let against_scores = ranking(&b.0, &b.1, against_rows.as_ref().unwrap_or(&rows))?;
        Ok(compare::compare(
            &rows,
            Scored {
                probabilities: &candidate_scores,
                review_threshold: a.1.manifest.thresholds.review(),
            },
            Scored {
                probabilities: &against_scores,
                review_threshold: b.1.manifest.thresholds.review(),
            },
            &settings,
        ))
    })
    .await
    .map_err(|error| RetrainError::Scoring {
        version: candidate.version().to_owned(),
        error: error.to_string(),
    })??;
    let comparison = comparison.ok_or(RetrainError::OneClass {
        from: window.from,
        to: window.to,
        fraud: counts.fraud,
        legit: counts.legitimate(),
    })?;
    Ok(CompareReport {
        candidate: candidate.version().to_owned(),
        against: against.version().to_owned(),
        window,
        matured_before,
        counts,
        overlap,
        comparison,
        shadow: shadow_traffic(store, candidate.version(), against.version(), window, matured_before).await?,
    })
}

/// A model's ranking scores of `table`'s rows, refused unless all finite.
fn ranking(version: &str, artifact: &Artifact, table: &Table) -> Result<Vec<f64>, RetrainError> {
    let failed = |error: String| RetrainError::Scoring {
        version: version.to_owned(),
        error,
    };
    let scores = artifact
        .ranking_batch(&table.values)
        .map_err(|error| failed(error.to_string()))?;
    match scores.iter().filter(|score| !score.is_finite()).count() {
        0 => Ok(scores),
        n => Err(failed(format!("{n} of {} scores are not finite numbers", scores.len()))),
    }
}
