//! Decisions: scoring observed transactions and storing them.
//!
//! Owns the scoring calls ([`Pipeline::score`] and its batch forms), the
//! decision record of a transaction (score, thresholds, reasons when the
//! [`crate::ExplainPolicy`] asks for them), the hand-off to the group-commit
//! writer, and publishing each result to requests racing it.

use std::sync::Arc;

use fraudlens_core::Transaction;
use fraudlens_core::{Decision, Reason, ReviewStatus};
use fraudlens_store::{NewDecision, PutOutcome};
use tokio::sync::{mpsc, oneshot};

use crate::admission::{Admission, Observed, Slot, compare};
use crate::shards::ShardKey;
use crate::{ExplainPolicy, Pipeline, Reads, ScoreError, ServingModel, events, lock, writer};

/// A scored (or found) decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// What is stored.
    pub record: NewDecision,
    /// `true` when the id was stored before with the same content: this is that decision.
    pub replayed: bool,
}

impl Scored {
    /// The reasons (parsed from the stored JSON).
    pub fn reasons(&self) -> Vec<Reason> {
        events::parse_reasons(&self.record.transaction_id, &self.record.reasons)
    }
}

/// JSON records parsed for a model: transactions, or feature rows (each with
/// its own error), so that a caller can check them before scoring.
pub enum Records {
    /// For a model of transactions.
    Transactions(Vec<Result<Transaction, ScoreError>>),
    /// For a model of feature rows.
    Rows(Vec<Result<crate::FeatureRow, ScoreError>>),
}

impl Records {
    /// Parses each record on its own for what `model` reads.
    pub fn parse(model: &ServingModel, records: &[serde_json::Value]) -> Self {
        match &model.reads {
            Reads::Transactions(inputs) => Self::Transactions(
                records
                    .iter()
                    .map(|record| {
                        inputs
                            .schema
                            .parse_json(record)
                            .map_err(|error| ScoreError::Invalid(error.to_string()))
                    })
                    .collect(),
            ),
            Reads::Rows(inputs) => Self::Rows(
                records
                    .iter()
                    .map(|record| {
                        inputs
                            .parse_json(record, crate::rows::random_row_id)
                            .map_err(ScoreError::Invalid)
                    })
                    .collect(),
            ),
        }
    }

    /// The first record that does not parse: its position and why.
    pub fn first_error(&self) -> Option<(usize, &ScoreError)> {
        let errors: Box<dyn Iterator<Item = Option<&ScoreError>>> = match self {
            Self::Transactions(parsed) => Box::new(parsed.iter().map(|parsed| parsed.as_ref().err())),
            Self::Rows(rows) => Box::new(rows.iter().map(|row| row.as_ref().err())),
        };
        errors
            .enumerate()
            .find_map(|(idx, error)| error.map(|error| (idx, error)))
    }
}

/// The model's verdict on one input row ([`Pipeline::judge`]).
pub(crate) struct Judged {
    /// The ranking score (finite).
    pub(crate) score: f64,
    pub(crate) probability: Option<f64>,
    pub(crate) raw: Option<f64>,
    pub(crate) anomaly: Option<f64>,
    pub(crate) decision: Decision,
    /// The reasons as stored (JSON).
    pub(crate) reasons: String,
}

/// Exports the counters that alert rules watch from the start, at 0 (a
/// counter that appears with its first increment hides that increment from
/// `increase()` and `rate()`): decisions by kind, commit errors of `backend`,
/// refused model swaps, shadows switched off.
pub(crate) fn export_counters(backend: &'static str) {
    for decision in Decision::ALL {
        metrics::counter!("fraud_predictions_total", "decision" => decision.as_str()).increment(0);
        if decision.is_flagged() {
            metrics::counter!("fraud_detected_total", "decision" => decision.as_str()).increment(0);
        }
    }
    metrics::counter!("store_commit_errors_total", "backend" => backend).increment(0);
    metrics::counter!("fraudlens_model_swap_refused_total").increment(0);
    metrics::counter!("fraudlens_shadow_switched_off_total").increment(0);
}

/// Counts new decisions by kind (`fraud_predictions_total`, `fraud_detected_total`)
/// and their scores (`fraudlens_score`, a histogram of the ranking score: the
/// calibrated probability of a trained model).
pub(crate) fn count_decisions(results: &[Result<Scored, ScoreError>]) {
    for scored in results.iter().flatten().filter(|scored| !scored.replayed) {
        let decision = scored.record.decision.as_str();
        metrics::counter!("fraud_predictions_total", "decision" => decision).increment(1);
        metrics::histogram!("fraudlens_score").record(scored.record.score);
        if scored.record.decision.is_flagged() {
            metrics::counter!("fraud_detected_total", "decision" => decision).increment(1);
        }
    }
}

/// The ids a batch holds in the in-flight table, with their slots.
pub(crate) fn claimed_by(admissions: &[Result<Admission, ScoreError>]) -> Vec<(String, Arc<Slot>)> {
    admissions
        .iter()
        .filter_map(|admission| match admission {
            Ok(Admission::Fresh(observed)) => Some((observed.tx.id.as_str().to_owned(), observed.slot.clone())),
            _ => None,
        })
        .collect()
}

/// Admitted transactions whose scoring and write are under way
/// ([`Pipeline::submit`]).
pub struct Submitted {
    n: usize,
    task: Result<tokio::task::JoinHandle<Vec<Result<Scored, ScoreError>>>, ScoreError>,
    /// The ids this submission holds in the in-flight table, with their slots.
    claimed: Vec<(String, Arc<Slot>)>,
    pipeline: Arc<Pipeline>,
}

impl Submitted {
    /// A submission holding no id in the in-flight table.
    pub(crate) fn new(
        n: usize,
        task: Result<tokio::task::JoinHandle<Vec<Result<Scored, ScoreError>>>, ScoreError>,
        pipeline: Arc<Pipeline>,
    ) -> Self {
        Self {
            n,
            task,
            claimed: Vec::new(),
            pipeline,
        }
    }

    /// The results, in the order submitted, once the decisions are stored.
    pub async fn results(self) -> Vec<Result<Scored, ScoreError>> {
        match self.task {
            Ok(task) => task.await.unwrap_or_else(|error| {
                tracing::error!(%error, "scoring task failed");
                let failed = Err(ScoreError::Unavailable("scoring task failed".to_owned()));
                // the task never published its ids' results: free them, and answer
                // the requests racing them, or a retry of those ids would wait forever
                let mut in_flight = lock(&self.pipeline.in_flight);
                for (id, slot) in &self.claimed {
                    if in_flight.get(id).is_some_and(|held| Arc::ptr_eq(held, slot)) {
                        in_flight.remove(id);
                    }
                    slot.publish(failed.clone());
                }
                vec![failed; self.n]
            }),
            Err(error) => vec![Err(error); self.n],
        }
    }
}

impl Pipeline {
    /// Parses, scores and durably stores one JSON record: a transaction, or
    /// a feature row when the serving model reads rows ([`ServingModel::reads`]).
    pub async fn score(self: &Arc<Self>, record: &serde_json::Value) -> Result<Scored, ScoreError> {
        self.score_many(std::slice::from_ref(record))
            .await
            .pop()
            .unwrap_or_else(|| Err(ScoreError::Unavailable("no result".to_owned())))
    }

    /// Scores many records: each is parsed on its own (one bad record fails
    /// alone), all are observed under one lock, scored together and written
    /// in one commit.
    pub async fn score_many(self: &Arc<Self>, records: &[serde_json::Value]) -> Vec<Result<Scored, ScoreError>> {
        let model = self.model.load_full();
        let parsed = Records::parse(&model, records);
        self.score_records(&model, parsed).await
    }

    /// Scores records parsed by [`Records::parse`] for `model`, in one commit.
    pub async fn score_records(
        self: &Arc<Self>,
        model: &Arc<ServingModel>,
        records: Records,
    ) -> Vec<Result<Scored, ScoreError>> {
        match records {
            Records::Transactions(parsed) => self.score_parsed(model, parsed).await,
            Records::Rows(rows) => self.score_rows(model, rows).await,
        }
    }

    /// Scores parsed transactions (or passes their parse errors through), in
    /// one commit, on the whole-store state.
    pub async fn score_parsed(
        self: &Arc<Self>,
        model: &Arc<ServingModel>,
        parsed: Vec<Result<Transaction, ScoreError>>,
    ) -> Vec<Result<Scored, ScoreError>> {
        self.score_sharded(model, parsed.into_iter().map(|parsed| (None, parsed)).collect())
            .await
    }

    /// Scores parsed transactions, each on the state of its shard (a shard
    /// not held: [`ScoreError::NotOwned`]), in one commit.
    ///
    /// Admission (observing the new transactions) happens here; the rest —
    /// scoring, the write, answering racing requests — runs in its own task,
    /// so a caller that goes away (a client disconnecting) cannot leave an
    /// observed transaction unwritten or its racing duplicates waiting.
    pub async fn score_sharded(
        self: &Arc<Self>,
        model: &Arc<ServingModel>,
        parsed: Vec<(ShardKey, Result<Transaction, ScoreError>)>,
    ) -> Vec<Result<Scored, ScoreError>> {
        self.submit(model, parsed).await.results().await
    }

    /// [`Self::score_sharded`] in two steps: the transactions are observed
    /// (in order) before this returns; their scoring and write go on in a
    /// task of their own, whose results [`Submitted::results`] awaits. A
    /// caller with several batches in flight (the detector) submits them one
    /// after another, so a partition's records reach its entity state strictly
    /// in offset order whatever finishes first.
    pub async fn submit(
        self: &Arc<Self>,
        model: &Arc<ServingModel>,
        parsed: Vec<(ShardKey, Result<Transaction, ScoreError>)>,
    ) -> Submitted {
        let n = parsed.len();
        if self.config.shared_state.is_some() {
            return self.submit_shared(model, parsed).await;
        }
        let mut claimed = Vec::new();
        let task = self.admit_all(model, parsed).map(|admissions| {
            claimed = claimed_by(&admissions);
            let (this, model) = (self.clone(), model.clone());
            tokio::spawn(async move { this.complete(&model, admissions).await })
        });
        Submitted {
            n,
            task,
            claimed,
            pipeline: self.clone(),
        }
    }

    /// [`Self::submit`] on the shared state, whose admission awaits Redis:
    /// the batch joins the queue of the process's one admission task
    /// (`shared.rs`), which admits the batches queued together and starts
    /// each one's scoring and write in a task of its own — so a caller that
    /// goes away (a client disconnecting) cannot leave its ids in the
    /// in-flight table. This returns once the batch is admitted, as the
    /// in-process path does.
    async fn submit_shared(
        self: &Arc<Self>,
        model: &Arc<ServingModel>,
        parsed: Vec<(ShardKey, Result<Transaction, ScoreError>)>,
    ) -> Submitted {
        let n = parsed.len();
        let (reply, admitted) = oneshot::channel();
        // serialised and hashed here, beside the other callers, not in the one admission task
        let job = crate::shared::Job {
            model: model.clone(),
            prepared: crate::admission::prepare(parsed),
            reply,
        };
        let queued = match self.admitter.get() {
            Some(admitter) => admitter.send(job).await.is_ok(),
            None => false,
        };
        let outcome = if queued {
            admitted
                .await
                .unwrap_or_else(|_| Err(ScoreError::Unavailable("the admission task stopped".to_owned())))
        } else {
            Err(ScoreError::Unavailable("no admission task".to_owned()))
        };
        match outcome {
            Ok((task, claimed)) => Submitted {
                n,
                task: Ok(task),
                claimed,
                pipeline: self.clone(),
            },
            Err(error) => Submitted {
                n,
                task: Err(error),
                claimed: Vec::new(),
                pipeline: self.clone(),
            },
        }
    }

    /// Scores and stores one parsed transaction.
    pub async fn score_transaction(
        self: &Arc<Self>,
        model: &Arc<ServingModel>,
        tx: Transaction,
    ) -> Result<Scored, ScoreError> {
        self.score_parsed(model, vec![Ok(tx)])
            .await
            .pop()
            .unwrap_or_else(|| Err(ScoreError::Unavailable("no result".to_owned())))
    }

    pub(crate) async fn complete(
        &self,
        model: &ServingModel,
        admissions: Vec<Result<Admission, ScoreError>>,
    ) -> Vec<Result<Scored, ScoreError>> {
        let n = admissions.len();
        let mut results: Vec<Option<Result<Scored, ScoreError>>> = vec![None; n];
        let mut waits = Vec::new();
        let mut fresh = Vec::new();
        for (idx, admission) in admissions.into_iter().enumerate() {
            match admission {
                Err(error) => results[idx] = Some(Err(error)),
                Ok(Admission::Fresh(observed)) => fresh.push((idx, observed)),
                Ok(other) => waits.push((idx, other)),
            }
        }
        let (indices, observed): (Vec<usize>, Vec<Observed>) = fresh.into_iter().unzip();
        for (idx, result) in indices.into_iter().zip(self.finish(model, observed).await) {
            results[idx] = Some(result);
        }
        // repeats are resolved concurrently: a batch of records redelivered
        // after a crash must not wait for each one in turn
        let resolved = futures_util::future::join_all(
            waits
                .into_iter()
                .map(|(idx, admission)| async move { (idx, self.resolve(admission).await) }),
        )
        .await;
        for (idx, result) in resolved {
            results[idx] = Some(result);
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(ScoreError::Unavailable("not processed".to_owned()))))
            .collect()
    }

    /// Scores observed transactions, writes them in one request to the
    /// writer, and publishes each result to requests racing it.
    pub(crate) async fn finish(
        &self,
        model: &ServingModel,
        mut observed: Vec<Observed>,
    ) -> Vec<Result<Scored, ScoreError>> {
        if observed.is_empty() {
            return Vec::new();
        }
        let records: Vec<NewDecision> = observed
            .iter_mut()
            .map(|item| {
                item.decided
                    .take()
                    .map_or_else(|| self.decide(model, item), |decided| *decided)
            })
            .collect();
        let (records, written) = self.write(records).await;
        if written.is_err() {
            // observed but not stored: a retry writes these same decisions instead of
            // observing the transactions a second time (which would count them twice)
            lock(&self.unwritten).keep(&records);
        }
        let mut results = Vec::with_capacity(observed.len());
        {
            let mut in_flight = lock(&self.in_flight);
            let mut records = records.into_iter();
            // every observed item gets a result, published to its racers, whatever happened
            for (idx, item) in observed.iter().enumerate() {
                let result = match (&written, records.next()) {
                    (Err(error), _) => Err(error.clone()),
                    (Ok(outcomes), record) => match (outcomes.get(idx), record) {
                        (Some(PutOutcome::Inserted), Some(record)) => Ok(Scored {
                            record,
                            replayed: false,
                        }),
                        (Some(PutOutcome::Existing(stored)), _) => compare(stored, &item.fingerprint),
                        _ => Err(ScoreError::Unavailable("missing write outcome".to_owned())),
                    },
                };
                in_flight.remove(item.tx.id.as_str());
                item.slot.publish_to_racers(&result);
                results.push(result);
            }
        }
        count_decisions(&results);
        results
    }

    /// The model's verdict on one input row: its scores, decision and
    /// reasons (when the [`ExplainPolicy`] asks for them).
    pub(crate) fn judge(&self, model: &ServingModel, row: &[f64], id: &str) -> Judged {
        self.judge_scored(model, row, id, model.artifact.score(row))
    }

    /// [`Self::judge`] of a row already scored.
    pub(crate) fn judge_scored(
        &self,
        model: &ServingModel,
        row: &[f64],
        id: &str,
        scored: Result<fraudlens_model::artifact::Score, fraudlens_model::ModelError>,
    ) -> Judged {
        let artifact = &model.artifact;
        let (score, probability, raw, anomaly, decision) = match scored {
            Ok(score) => (
                score.ranking(),
                score.probability,
                score.raw,
                score.anomaly,
                score.decision,
            ),
            // the row is built by the model's own input spec, so this is a bug: decide for review
            Err(error) => {
                tracing::error!(%error, "scoring failed");
                (f64::NAN, None, None, None, Decision::Review)
            }
        };
        let explain = match self.config.explain {
            ExplainPolicy::All => true,
            ExplainPolicy::Flagged => decision.is_flagged(),
            ExplainPolicy::None => false,
        };
        let reasons = if explain {
            artifact.reasons(row, self.config.top_reasons).unwrap_or_else(|error| {
                events::reasons_not_computed(id, &error);
                Vec::new()
            })
        } else {
            Vec::new()
        };
        Judged {
            score: if score.is_finite() { score } else { 1.0 },
            probability,
            raw,
            anomaly,
            decision,
            reasons: serde_json::to_string(&reasons).unwrap_or_else(|error| {
                events::reasons_not_serialised(id, &error);
                "[]".to_owned()
            }),
        }
    }

    /// The decision record for one observed transaction; its row and stored form move into the record.
    fn decide(&self, model: &ServingModel, item: &mut Observed) -> NewDecision {
        let judged = self.judge(model, &item.row, item.tx.id.as_str());
        let latency = item.started.elapsed();
        metrics::histogram!("prediction_duration_seconds").record(latency.as_secs_f64());
        NewDecision {
            transaction_id: item.tx.id.as_str().to_owned(),
            fingerprint: item.fingerprint.clone(),
            event_time: item.tx.timestamp,
            received_at: item.received_at,
            entity: item.tx.entity(0).map(|key| key.as_str().to_owned()),
            amount_minor: item.tx.amount.minor(),
            currency: item.tx.amount.currency().as_str().to_owned(),
            body: std::mem::take(&mut item.body),
            score: judged.score,
            probability: judged.probability,
            raw_score: judged.raw,
            anomaly_score: judged.anomaly,
            decision: judged.decision,
            reasons: judged.reasons,
            features: std::mem::take(&mut item.row),
            model_version: model.version().to_owned(),
            latency_us: i64::try_from(latency.as_micros()).unwrap_or(i64::MAX),
            review_status: judged.decision.is_flagged().then_some(ReviewStatus::PendingReview),
            shard: std::mem::take(&mut item.shard),
        }
    }

    /// Hands records to the writer; they come back with the outcome.
    pub(crate) async fn write(
        &self,
        records: Vec<NewDecision>,
    ) -> (Vec<NewDecision>, Result<Vec<PutOutcome>, ScoreError>) {
        let (reply, answer) = oneshot::channel();
        if let Err(error) = self
            .writer
            .try_send(writer::Message::Write(writer::Job { records, reply }))
        {
            let (message, returned) = match error {
                mpsc::error::TrySendError::Full(message) => ("too many decisions waiting to be stored", message),
                mpsc::error::TrySendError::Closed(message) => ("the writer has stopped", message),
            };
            let records = match returned {
                writer::Message::Write(job) => job.records,
                writer::Message::Flush(_) => Vec::new(),
            };
            return (records, Err(ScoreError::Overloaded(message.to_owned())));
        }
        match answer.await {
            Ok((records, result)) => {
                if let Ok(outcomes) = &result {
                    let stored = records
                        .iter()
                        .zip(outcomes)
                        .filter(|(_, outcome)| matches!(outcome, PutOutcome::Inserted))
                        .map(|(record, _)| record);
                    let model = self.model();
                    self.drift.observe(&model, stored.clone());
                    self.shadow.offer(&model, stored);
                }
                (records, result.map_err(ScoreError::Unavailable))
            }
            Err(_) => (
                Vec::new(),
                Err(ScoreError::Unavailable("the writer stopped".to_owned())),
            ),
        }
    }
}
