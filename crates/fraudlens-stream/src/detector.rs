//! The detector: one member of a Kafka consumer group.
//!
//! ```text
//! poll a batch ─► parse (bad records: dead-letter table + topic, with partition/offset)
//!   ─► Pipeline::score_parsed (durable, idempotent on the transaction id)
//!   ─► decisions topic (keyed by transaction id; replays publish the stored decision again)
//!   ─► wait for the broker's acks ─► store the offsets (committed by the next auto-commit)
//! ```
//!
//! At-least-once from Kafka, effects exactly once: an offset is stored only
//! after its record's decision is committed to the store and published, so a
//! crash anywhere redelivers records whose decisions may already be stored —
//! the pipeline then returns the stored decision unchanged (no second row),
//! and the decision message is published again with the same content.
//! Up to three batches are in flight (one's store commit and acks overlap the
//! next one's scoring); offsets are stored in batch order, each batch's only
//! once it and all before it are done. When partitions are revoked
//! (rebalance) the offsets stored so far are committed synchronously before
//! they are released; at shutdown the batches in flight are finished first. A
//! rebalance happens inside a poll, so batches in flight may hold records of a
//! revoked partition: they are still decided, stored and published, but their
//! offsets belong to the new owner, which redelivers them and gets the stored
//! decisions back as replays.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fraudlens_pipeline::{DecisionView, Pipeline, ScoreError, now_ms};
use fraudlens_store::DeadLetter;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Statistics};
use tokio::sync::watch;

use crate::StreamError;

/// How a detector connects and batches.
#[derive(Clone, Debug)]
pub struct DetectorConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Topic of transactions (JSON records, keyed by the primary entity).
    pub topic: String,
    /// Consumer group: detectors of one group share the topic's partitions.
    pub group: String,
    /// Where decisions are published (keyed by transaction id).
    pub decisions_topic: String,
    /// Where records that cannot be parsed go (with the error and their partition/offset in headers).
    pub dead_letter_topic: String,
    /// Most records per batch (one commit to the store).
    pub max_batch: usize,
    /// The group's session timeout: a crashed member's partitions move after it.
    pub session_timeout_ms: u32,
    /// A topic of labels (chargebacks, analyst verdicts from other systems):
    /// `{"transaction_id": …, "label": "fraud"|"legit"|1|0, "source": …}`,
    /// applied like `POST /api/v1/labels`.
    pub labels_topic: Option<String>,
    /// Fault injection for the crash test: abort the process right after the
    /// store commit of this many batches (before publishing and storing
    /// offsets), the window where a crash must cause redelivery, not loss.
    pub crash_after_batches: Option<u64>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            topic: "transactions".to_owned(),
            group: "fraud-detectors".to_owned(),
            decisions_topic: "fraud-decisions".to_owned(),
            dead_letter_topic: "fraud-dead-letters".to_owned(),
            max_batch: 1_000,
            session_timeout_ms: 10_000,
            labels_topic: None,
            crash_after_batches: None,
        }
    }
}

/// Consumer callbacks: commit before partitions are revoked; lag from the
/// statistics; note assignments (the entity state then catches up).
#[derive(Default)]
struct Context {
    assigned: std::sync::atomic::AtomicBool,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, stats) in &stats.partitions {
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    metrics::gauge!("kafka_consumer_lag", "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(stats.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                // the batch before this poll is finished and its offsets stored
                if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(%error, "commit before revoke (nothing stored yet?)");
                }
                tracing::info!(partitions = partitions.count(), "partitions revoked");
            }
            Rebalance::Assign(partitions) => {
                self.assigned.store(true, std::sync::atomic::Ordering::Release);
                tracing::info!(partitions = partitions.count(), "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

/// A running group member.
pub struct Detector {
    pipeline: Arc<Pipeline>,
    consumer: StreamConsumer<Context>,
    producer: FutureProducer,
    config: DetectorConfig,
    batches: std::sync::atomic::AtomicU64,
}

/// Batches processed at once.
const WINDOW: usize = 3;

/// A batch being processed.
struct InFlight {
    batch: Arc<Vec<OwnedMessage>>,
    task: tokio::task::JoinHandle<Result<(), StreamError>>,
}

/// What happened to one record of a batch.
enum Outcome {
    /// Published: the decision.
    Decided,
    /// Dead-lettered.
    Dead,
}

impl Detector {
    /// Connects, joins the group and subscribes.
    pub fn new(pipeline: Arc<Pipeline>, config: DetectorConfig) -> Result<Self, StreamError> {
        let consumer: StreamConsumer<Context> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .set("statistics.interval.ms", "5000")
            // when caught up, ask again soon rather than after librdkafka's default 500 ms
            .set("fetch.wait.max.ms", "10")
            .create_with_context(Context::default())?;
        let mut topics = vec![config.topic.as_str()];
        topics.extend(config.labels_topic.as_deref());
        consumer.subscribe(&topics)?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "30000")
            .create()?;
        Ok(Self {
            pipeline,
            consumer,
            producer,
            config,
            batches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Consumes until `stop` turns true; then finishes the batches in
    /// flight, commits and leaves the group.
    ///
    /// Up to three batches are processed at once (each in its own task),
    /// so one batch's store commit and broker acknowledgements overlap with the
    /// next one's scoring; offsets are stored strictly in batch order, each
    /// batch's only after it and every batch before it are done.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> Result<(), StreamError> {
        let mut window: VecDeque<InFlight> = VecDeque::new();
        loop {
            enum Next<M> {
                Stop,
                Finished(Result<Result<(), StreamError>, tokio::task::JoinError>),
                Message(M),
            }
            let next = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => Next::Stop,
                done = async {
                    match window.front_mut() {
                        Some(front) => (&mut front.task).await,
                        None => std::future::pending().await,
                    }
                } => Next::Finished(done),
                message = self.consumer.recv() => Next::Message(message),
            };
            // partitions were assigned: other members stored their entities' recent
            // transactions; observe them before scoring what now comes from there
            let assigned = self
                .consumer
                .context()
                .assigned
                .swap(false, std::sync::atomic::Ordering::AcqRel);
            if assigned && let Err(error) = self.pipeline.catch_up().await {
                tracing::warn!(%error, "entity state not caught up with the store");
            }
            let first = match next {
                Next::Stop => break,
                Next::Finished(done) => {
                    if !self.complete_oldest(done, &mut window, &stop).await {
                        return self.close();
                    }
                    continue;
                }
                Next::Message(message) => message,
            };
            let first = match first {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            // fill the batch with what is already there, for at most 10 ms: batches grow
            // with the backlog, and a record waits little when there is none
            let mut batch = vec![first.detach()];
            let deadline = tokio::time::Instant::now() + Duration::from_millis(10);
            while batch.len() < self.config.max_batch {
                match tokio::time::timeout_at(
                    deadline.min(tokio::time::Instant::now() + Duration::from_millis(2)),
                    self.consumer.recv(),
                )
                .await
                {
                    Ok(Ok(message)) => batch.push(message.detach()),
                    _ => break,
                }
            }
            let batch = Arc::new(batch);
            let (this, records) = (self.clone(), batch.clone());
            window.push_back(InFlight {
                batch,
                task: tokio::spawn(async move { this.process(&records).await }),
            });
            while window.len() >= WINDOW {
                let done = (&mut window.front_mut().map(|f| &mut f.task).expect("non-empty")).await;
                if !self.complete_oldest(done, &mut window, &stop).await {
                    return self.close();
                }
            }
        }
        // stopping: finish what is in flight, in order
        while let Some(front) = window.front_mut() {
            let done = (&mut front.task).await;
            if !self.complete_oldest(done, &mut window, &stop).await {
                break;
            }
        }
        self.close()
    }

    /// The oldest batch has finished (`done`): on success its offsets are
    /// stored; on failure it is redone until it succeeds. `false` when a stop
    /// came first: nothing more may be stored (another member redoes the rest).
    async fn complete_oldest(
        &self,
        done: Result<Result<(), StreamError>, tokio::task::JoinError>,
        window: &mut VecDeque<InFlight>,
        stop: &watch::Receiver<bool>,
    ) -> bool {
        let Some(oldest) = window.pop_front() else { return true };
        let mut result = done.unwrap_or_else(|error| Err(StreamError::Unavailable(error.to_string())));
        while let Err(error) = result {
            tracing::warn!(%error, records = oldest.batch.len(), "batch not done; retrying");
            if *stop.borrow() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            // what was stored comes back as replays
            result = self.process(&oldest.batch).await;
        }
        self.store_offsets(&oldest.batch);
        true
    }

    /// Stores the offsets of a finished batch (committed by the next auto-commit).
    fn store_offsets(&self, batch: &[OwnedMessage]) {
        let now = now_ms();
        for message in batch {
            match self
                .consumer
                .store_offset(message.topic(), message.partition(), message.offset())
            {
                Ok(()) => {}
                // the partition was revoked while the batch was in flight (a rebalance
                // runs inside poll): its new owner redelivers these records, which come
                // back as replays of the decisions stored here — nothing lost, nothing doubled
                Err(rdkafka::error::KafkaError::StoreOffset(rdkafka::types::RDKafkaErrorCode::State)) => {
                    metrics::counter!("offsets_left_to_new_owner_total").increment(1);
                }
                Err(error) => tracing::warn!(%error, "storing an offset failed; the record will be redelivered"),
            }
            if let Some(produced) = message.timestamp().to_millis() {
                metrics::histogram!("record_latency_seconds").record((now - produced).max(0) as f64 / 1000.0);
            }
        }
    }

    fn close(&self) -> Result<(), StreamError> {
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, "final commit");
        }
        self.consumer.unsubscribe();
        Ok(())
    }

    /// Scores, stores and publishes one batch (its offsets are stored by the caller, in order).
    async fn process(&self, batch: &[OwnedMessage]) -> Result<(), StreamError> {
        let started = Instant::now();
        metrics::counter!("records_consumed_total").increment(batch.len() as u64);
        let model = self.pipeline.model();
        let mut outcomes: Vec<Option<Outcome>> = (0..batch.len()).map(|_| None).collect();
        let mut letters: Vec<(usize, DeadLetter)> = Vec::new();
        let mut parsed = Vec::new();
        let mut positions = Vec::new();
        let mut labels = Vec::new();
        for (idx, message) in batch.iter().enumerate() {
            let payload = message.payload().unwrap_or_default();
            if self.config.labels_topic.as_deref() == Some(message.topic()) {
                match parse_label(payload) {
                    Ok(label) => {
                        labels.push(label);
                        outcomes[idx] = Some(Outcome::Decided);
                    }
                    Err(error) => letters.push((idx, dead_letter(message, error))),
                }
                continue;
            }
            let record = serde_json::from_slice::<serde_json::Value>(payload)
                .map_err(|error| format!("not JSON: {error}"))
                .and_then(|value| match value.is_object() {
                    true => Ok(value),
                    false => Err("not a JSON object".to_owned()),
                })
                .and_then(|value| {
                    model
                        .inputs
                        .schema
                        .parse_json(&value)
                        .map_err(|error| error.to_string())
                });
            match record {
                Ok(tx) => {
                    positions.push(idx);
                    parsed.push(Ok(tx));
                }
                Err(error) => letters.push((idx, dead_letter(message, error))),
            }
        }
        if !labels.is_empty() {
            let applied = self.pipeline.apply_labels(&labels).await?;
            metrics::counter!("labels_consumed_total").increment(labels.len() as u64);
            tracing::debug!(labels = labels.len(), applied, "labels applied");
        }
        let results = self.pipeline.score_parsed(&model, parsed).await;
        let batches = self.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if self.config.crash_after_batches == Some(batches) {
            tracing::error!(
                batches,
                "fault injection: aborting after the store commit, before the offsets"
            );
            std::process::abort();
        }
        let mut deliveries = Vec::new();
        for (idx, result) in positions.into_iter().zip(results) {
            match result {
                Ok(scored) => {
                    let payload = serde_json::to_vec(&DecisionView::from(&scored.record))?;
                    let key = scored.record.transaction_id.clone();
                    let delivery = self.producer.send_result(
                        FutureRecord::to(&self.config.decisions_topic)
                            .key(key.as_bytes())
                            .payload(&payload),
                    );
                    deliveries.push(delivery.map_err(|(error, _)| StreamError::Kafka(error))?);
                    if scored.replayed {
                        // decided before (a redelivery after a crash or rebalance): published again
                        metrics::counter!("records_redelivered_total").increment(1);
                    } else if scored.record.decision.as_str() != "approve" {
                        metrics::counter!("anomalies_detected_total").increment(1);
                    }
                    outcomes[idx] = Some(Outcome::Decided);
                }
                // the id was stored with other content: not this record's decision to publish
                Err(error @ (ScoreError::Conflict(_) | ScoreError::Invalid(_))) => {
                    letters.push((idx, dead_letter(&batch[idx], error.to_string())));
                }
                Err(error) => return Err(StreamError::Unavailable(error.to_string())),
            }
        }
        if !letters.is_empty() {
            let rows: Vec<DeadLetter> = letters.iter().map(|(_, letter)| letter.clone()).collect();
            self.pipeline.store().put_dead_letters(&rows).await?;
            metrics::counter!("dead_letters_total").increment(rows.len() as u64);
            for (idx, letter) in &letters {
                let message = &batch[*idx];
                let headers = rdkafka::message::OwnedHeaders::new()
                    .insert(rdkafka::message::Header {
                        key: "error",
                        value: Some(letter.error.as_bytes()),
                    })
                    .insert(rdkafka::message::Header {
                        key: "source",
                        value: Some(letter.location.as_bytes()),
                    });
                let mut record = FutureRecord::to(&self.config.dead_letter_topic)
                    .payload(message.payload().unwrap_or_default())
                    .headers(headers);
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                let delivery = self.producer.send_result(record);
                deliveries.push(delivery.map_err(|(error, _)| StreamError::Kafka(error))?);
                outcomes[*idx] = Some(Outcome::Dead);
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(StreamError::Kafka(error)),
                Err(_) => return Err(StreamError::Unavailable("delivery cancelled".to_owned())),
            }
        }
        metrics::histogram!("batch_duration_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// A label record: `{"transaction_id", "label", "source"?}`.
fn parse_label(payload: &[u8]) -> Result<fraudlens_store::NewLabel, String> {
    #[derive(serde::Deserialize)]
    struct Input {
        transaction_id: String,
        label: serde_json::Value,
        source: Option<String>,
    }
    let input: Input = serde_json::from_slice(payload).map_err(|error| format!("label: {error}"))?;
    let text = match &input.label {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let label = fraudlens_core::Label::parse(&text).map_err(|error| format!("label: {error}"))?;
    let id = fraudlens_core::TransactionId::parse(&input.transaction_id).map_err(|error| format!("label: {error}"))?;
    Ok(fraudlens_store::NewLabel {
        transaction_id: id.as_str().to_owned(),
        label,
        source: input
            .source
            .unwrap_or_else(|| "kafka".to_owned())
            .chars()
            .take(64)
            .collect(),
        actor: "detect".to_owned(),
        at: now_ms(),
    })
}

fn dead_letter(message: &OwnedMessage, error: String) -> DeadLetter {
    DeadLetter {
        at: now_ms(),
        source: format!("kafka:{}", message.topic()),
        location: format!("partition {} offset {}", message.partition(), message.offset()),
        error,
        payload: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
    }
}
