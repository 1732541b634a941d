//! The detector: one member of a Kafka consumer group.
//!
//! ```text
//! poll a batch ─► parse (bad records: dead-letter table + topic, with partition/offset)
//!   ─► the entity state of each record's partition (rebuilt from the store on its first record)
//!   ─► Pipeline::score_sharded (durable, idempotent on the transaction id)
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
//! (rebalance), the callback waits for the batches in flight to finish and
//! store their offsets, commits them synchronously, and releases the revoked
//! partitions' entity state; at shutdown the batches in flight are finished
//! first. A batch fetched before a rebalance and finished after it (a drain
//! that timed out, or a batch still filling when the rebalance came) stores no
//! offsets: its records come back from the committed offsets to their owner
//! — this member or another — which gets the stored decisions as replays.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fraudlens_pipeline::{DecisionView, Pipeline, Reads, ScoreError, now, now_ms};
use fraudlens_store::DeadLetter;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Statistics, TopicPartitionList};
use tokio::sync::{oneshot, watch};

use crate::{Health, StreamError};

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
    /// Most records per batch (one commit to the store). A batch takes what
    /// arrived within 10 ms, so only a backlog fills it: 5,000 catches up ~35 %
    /// faster than 1,000 on PostgreSQL (bench/README.md).
    pub max_batch: usize,
    /// The group's session timeout: a crashed member's partitions move after it.
    pub session_timeout_ms: u32,
    /// A topic of labels (chargebacks, analyst verdicts from other systems):
    /// `{"transaction_id": …, "label": "fraud"|"legit"|1|0, "source": …}`,
    /// applied like `POST /api/v1/labels`.
    pub labels_topic: Option<String>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            topic: "transactions".to_owned(),
            group: "fraud-detectors".to_owned(),
            decisions_topic: "fraud-decisions".to_owned(),
            dead_letter_topic: "fraud-dead-letters".to_owned(),
            max_batch: 5_000,
            session_timeout_ms: 10_000,
            labels_topic: None,
        }
    }
}

/// Batches in flight, for the rebalance callback to wait on.
#[derive(Default)]
struct Pending {
    count: std::sync::Mutex<usize>,
    idle: std::sync::Condvar,
}

/// Held by a batch from its spawn to its end (offsets stored or given up).
struct PendingGuard(Arc<Pending>);

impl Pending {
    fn start(self: &Arc<Self>) -> PendingGuard {
        *self.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        PendingGuard(self.clone())
    }

    /// Waits until no batch is in flight, or `timeout`; whether it got there.
    fn wait_idle(&self, timeout: Duration) -> bool {
        let count = self.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (count, _) = self
            .idle
            .wait_timeout_while(count, timeout, |count| *count > 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *count == 0
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut count = self.0.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *count = count.saturating_sub(1);
        self.0.idle.notify_all();
    }
}

/// Consumer callbacks: drain and commit before partitions are revoked, and
/// release their entity state; keep only the state of assigned partitions;
/// lag from the statistics.
struct Context {
    pipeline: Arc<Pipeline>,
    topic: String,
    /// Bumped by every rebalance: a batch fetched before it stores no offsets.
    generation: AtomicU64,
    pending: Arc<Pending>,
    drain_timeout: Duration,
    health: Arc<Health>,
}

impl Context {
    /// The entity-state shards of the transactions topic's partitions in `partitions`.
    fn shards(&self, partitions: &TopicPartitionList) -> Vec<String> {
        partitions
            .elements()
            .iter()
            .filter(|element| element.topic() == self.topic)
            .map(|element| shard_name(element.topic(), element.partition()))
            .collect()
    }

    /// Waits for the batches in flight to finish and store their offsets
    /// (the callback runs inside a poll, on a runtime thread: it hands that
    /// thread's work to another while it waits).
    fn drain(&self) -> bool {
        match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.pending.wait_idle(self.drain_timeout))
            }
            // a single-threaded runtime cannot run the batches while this waits
            Ok(_) => false,
            Err(_) => self.pending.wait_idle(self.drain_timeout),
        }
    }
}

/// The entity-state shard of a partition.
fn shard_name(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

impl ClientContext for Context {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            self.health.set_brokers_down(true);
        }
        tracing::warn!(%error, reason, "kafka client error");
    }

    fn stats(&self, statistics: Statistics) {
        // every broker down is reported by the error callback; a broker the client
        // talks to (not its internal pseudo-brokers) seen up again clears it
        if statistics
            .brokers
            .values()
            .any(|broker| broker.nodeid >= 0 && broker.state == "UP")
        {
            self.health.set_brokers_down(false);
        }
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
                // the batches in flight finish and store their offsets, which are
                // committed before the partitions go
                let drained = self.drain();
                if !drained {
                    tracing::warn!("batches still in flight at a rebalance: their records go to the new owners");
                }
                if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(%error, "commit before revoke (nothing stored yet?)");
                }
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.pipeline.release_shards(&self.shards(partitions));
                // a partition's lag is its new owner's to report: this member's last value would linger
                for element in partitions.elements() {
                    metrics::gauge!("kafka_consumer_lag", "topic" => element.topic().to_owned(), "partition" => element.partition().to_string())
                        .set(0.0);
                }
                tracing::info!(partitions = partitions.count(), drained, "partitions revoked");
            }
            Rebalance::Assign(partitions) => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                tracing::info!(partitions = partitions.count(), "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // the whole assignment (incremental protocols assign or revoke a part)
        let assignment = match consumer.assignment() {
            Ok(assignment) => assignment,
            Err(error) => {
                tracing::warn!(%error, "reading the assignment");
                return;
            }
        };
        let shards = self.shards(&assignment);
        self.health.set_assigned(shards.len());
        if let Rebalance::Assign(_) = rebalance {
            // the state of partitions not in it is dropped; the others' is acquired on their first record
            self.pipeline.retain_shards(&shards);
        }
    }
}

/// A running group member.
pub struct Detector {
    pipeline: Arc<Pipeline>,
    consumer: StreamConsumer<Context>,
    producer: FutureProducer,
    config: DetectorConfig,
    health: Arc<Health>,
    #[cfg(feature = "fault-injection")]
    crash: CrashHook,
}

/// Fault injection for the crash test (`FRAUDLENS_TEST_CRASH_AFTER_BATCHES`,
/// only with the `fault-injection` feature): aborts the process right after
/// the store commit of that many batches (before publishing and storing
/// offsets), the window where a crash must cause redelivery, not loss.
#[cfg(feature = "fault-injection")]
struct CrashHook {
    after_batches: Option<u64>,
    batches: AtomicU64,
}

#[cfg(feature = "fault-injection")]
impl CrashHook {
    fn from_env() -> Self {
        Self {
            after_batches: std::env::var("FRAUDLENS_TEST_CRASH_AFTER_BATCHES")
                .ok()
                .and_then(|n| n.parse().ok()),
            batches: AtomicU64::new(0),
        }
    }

    /// A batch's decisions are committed: abort if it is the chosen one.
    fn committed(&self) {
        let batches = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        if self.after_batches == Some(batches) {
            tracing::error!(
                batches,
                "fault injection: aborting after the store commit, before the offsets"
            );
            std::process::abort();
        }
    }
}

/// Batches processed at once.
const WINDOW: usize = 3;

/// Failed attempts of a batch before it is reported: readiness fails and
/// `detector_stalled_batches` moves (retries go on, with backoff).
const QUIET_RETRIES: u32 = 5;

/// Longest wait between two attempts of a batch.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Most bytes of a dead letter's payload published to the dead-letter topic
/// (the broker refuses large messages; a dead letter must always be
/// publishable). Longer payloads are cut, with a `truncated` header giving
/// the original size; the table keeps up to [`MAX_STORED_PAYLOAD`].
const MAX_PUBLISHED_PAYLOAD: usize = 64 * 1024;

/// Most bytes of a dead letter's payload kept in the table; beyond, the
/// record is referenced by its topic, partition and offset.
const MAX_STORED_PAYLOAD: usize = 1024 * 1024;

/// Most bytes of a dead letter's error message (before the truncation mark).
const MAX_ERROR: usize = 1024;

/// Most bytes of a dead letter's key published to the dead-letter topic.
const MAX_PUBLISHED_KEY: usize = 1024;

/// Whether a batch task ended with its offsets stored; a task that panicked
/// (a bug: its records come back from the committed offsets) is logged.
fn batch_ended(joined: Result<bool, tokio::task::JoinError>) -> bool {
    joined.unwrap_or_else(|error| {
        tracing::error!(%error, "a batch task failed");
        false
    })
}

/// How a batch ended, for the next one: its generation and whether its
/// offsets were stored (or may be: a stop leaves the rest to another member).
type Done = (u64, bool);

impl Detector {
    /// Connects, joins the group and subscribes.
    pub fn new(pipeline: Arc<Pipeline>, config: DetectorConfig) -> Result<Self, StreamError> {
        let health = Arc::new(Health::default());
        let context = Context {
            pipeline: pipeline.clone(),
            topic: config.topic.clone(),
            generation: AtomicU64::new(0),
            pending: Arc::default(),
            drain_timeout: Duration::from_millis(u64::from(config.session_timeout_ms)),
            health: health.clone(),
        };
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
            .create_with_context(context)?;
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
            health,
            #[cfg(feature = "fault-injection")]
            crash: CrashHook::from_env(),
        })
    }

    /// The scoring pipeline the detector feeds.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// What the readiness probe reports.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    fn generation(&self) -> u64 {
        self.consumer.context().generation.load(Ordering::Acquire)
    }

    /// Consumes until `stop` turns true; then finishes the batches in
    /// flight, commits and leaves the group.
    ///
    /// Up to three batches are processed at once (each in its own task),
    /// so one batch's store commit and broker acknowledgements overlap with the
    /// next one's scoring; each batch stores its offsets only after every
    /// batch before it has (strictly in batch order).
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) -> Result<(), StreamError> {
        let mut window: VecDeque<tokio::task::JoinHandle<bool>> = VecDeque::new();
        let mut previous: Option<oneshot::Receiver<Done>> = None;
        let mut admitted_before: Option<oneshot::Receiver<()>> = None;
        let mut stopping = stop.clone();
        loop {
            enum Next<M> {
                Stop,
                Finished,
                Message(M),
            }
            let next = tokio::select! {
                biased;
                _ = stopping.wait_for(|stop| *stop) => Next::Stop,
                done = async {
                    match window.front_mut() {
                        Some(front) => batch_ended(front.await),
                        None => std::future::pending().await,
                    }
                } => {
                    let _: bool = done;
                    Next::Finished
                }
                message = self.consumer.recv() => Next::Message(message),
            };
            let first = match next {
                Next::Stop => break,
                Next::Finished => {
                    window.pop_front();
                    continue;
                }
                Next::Message(Ok(message)) => message,
                Next::Message(Err(error)) => {
                    tracing::warn!(%error, "consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            // records fetched under this assignment; a rebalance while the batch
            // fills (or is processed) means its offsets are no longer this member's to store
            let generation = self.generation();
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
            let guard = self.consumer.context().pending.start();
            let (done, next_previous) = oneshot::channel();
            let before = previous.replace(next_previous);
            // batches reach the entity state in fetch order: each admits its records
            // only after the batch before it has admitted its own
            let (admitted, next_admitted) = oneshot::channel();
            let admit_after = admitted_before.replace(next_admitted);
            let (this, stop) = (self.clone(), stop.clone());
            window.push_back(tokio::spawn(async move {
                let _in_flight = guard;
                let order = AdmitOrder {
                    after: admit_after,
                    done: Some(admitted),
                };
                this.run_batch(batch, generation, order, before, done, stop).await
            }));
            while window.len() >= WINDOW {
                if let Some(front) = window.pop_front() {
                    batch_ended(front.await);
                }
            }
        }
        // stopping: finish what is in flight (each batch stores its offsets in order)
        for task in window {
            batch_ended(task.await);
        }
        self.close()
    }

    /// Processes a batch until it is done (retrying failures: what was stored
    /// comes back as replays), then — after the batch before it — stores its
    /// offsets. A stop during retries gives up: nothing more of this
    /// assignment is stored (another member redoes the rest); a rebalance
    /// gives up too (the records go to their new owner, or come back to this
    /// one, from the committed offsets).
    ///
    /// Retries back off (0.5 s doubling to 30 s); after [`QUIET_RETRIES`]
    /// failed attempts the batch is reported — an error log, readiness
    /// failing and `detector_stalled_batches` at 1 — until it completes.
    async fn run_batch(
        self: Arc<Self>,
        batch: Vec<OwnedMessage>,
        generation: u64,
        mut order: AdmitOrder,
        before: Option<oneshot::Receiver<Done>>,
        done: oneshot::Sender<Done>,
        stop: watch::Receiver<bool>,
    ) -> bool {
        let mut processed = self.process(&batch, generation, &mut order).await;
        let mut attempts = 1u32;
        let mut stalled = false;
        while let Err(error) = &processed {
            metrics::counter!("batch_retries_total").increment(1);
            if attempts == QUIET_RETRIES {
                tracing::error!(%error, records = batch.len(), attempts, "batch cannot complete; not ready until it does");
                self.health.stall();
                stalled = true;
            } else {
                tracing::warn!(%error, records = batch.len(), attempts, "batch not done; retrying");
            }
            if *stop.borrow() || self.generation() != generation {
                break;
            }
            let backoff = Duration::from_millis(500)
                .saturating_mul(1 << (attempts - 1).min(10))
                .min(MAX_BACKOFF);
            tokio::time::sleep(backoff).await;
            processed = self.process(&batch, generation, &mut order).await;
            attempts += 1;
        }
        // whatever ended the retries (success, a stop, a rebalance)
        if stalled {
            self.health.unstall();
            if processed.is_ok() {
                tracing::info!(attempts, "stalled batch completed");
            }
        }
        let mut ok = processed.is_ok();
        if let Some(before) = before {
            match before.await {
                // an earlier batch of this assignment gave up: nothing after it may be stored
                Ok((earlier, false)) if earlier == generation => ok = false,
                Ok(_) => {}
                Err(_) => ok = false,
            }
        }
        if ok {
            self.store_offsets(&batch, generation);
        }
        let _ = done.send((generation, ok));
        ok
    }

    /// Stores the offsets of a finished batch (committed by the next
    /// auto-commit, or before a revoke), unless a rebalance came since it was
    /// fetched: its partitions' offsets are then the new assignment's.
    fn store_offsets(&self, batch: &[OwnedMessage], generation: u64) {
        let now = now_ms();
        let current = self.generation() == generation;
        for message in batch {
            if !current {
                metrics::counter!("offsets_left_to_new_owner_total").increment(1);
                continue;
            }
            match self
                .consumer
                .store_offset(message.topic(), message.partition(), message.offset())
            {
                Ok(()) => {}
                // the partition was revoked after a drain that timed out: its new owner
                // redelivers these records, which come back as replays of the stored decisions
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
    async fn process(
        &self,
        batch: &[OwnedMessage],
        generation: u64,
        order: &mut AdmitOrder,
    ) -> Result<(), StreamError> {
        let started = Instant::now();
        metrics::counter!("records_consumed_total").increment(batch.len() as u64);
        let model = self.pipeline.model();
        let mut letters: Vec<(usize, DeadLetter)> = Vec::new();
        let mut parsed = Vec::new();
        let mut rows = Vec::new();
        let mut positions = Vec::new();
        let mut labels = Vec::new();
        let mut label_positions = Vec::new();
        for (idx, message) in batch.iter().enumerate() {
            let payload = message.payload().unwrap_or_default();
            if self.config.labels_topic.as_deref() == Some(message.topic()) {
                match parse_label(payload) {
                    Ok(label) => {
                        labels.push(label);
                        label_positions.push(idx);
                    }
                    Err(error) => letters.push((idx, dead_letter(message, error))),
                }
                continue;
            }
            let value = fraudlens_core::json::parse(payload)
                .map_err(|error| error.to_string())
                .and_then(|value| match value.is_object() {
                    true => Ok(value),
                    false => Err("not a JSON object".to_owned()),
                });
            let outcome = value.and_then(|value| match &model.reads {
                Reads::Transactions(inputs) => inputs
                    .schema
                    .parse_json(&value)
                    .map(|tx| parsed.push((Some(shard_name(message.topic(), message.partition())), Ok(tx))))
                    .map_err(|error| error.to_string()),
                // a row without an id is named by its place in the log: a redelivery is the same row
                Reads::Rows(inputs) => inputs
                    .parse_json(&value, || {
                        log_id(message.topic(), message.partition(), message.offset())
                    })
                    .map(|row| rows.push(Ok(row))),
            });
            match outcome {
                Ok(()) => positions.push(idx),
                Err(error) => letters.push((idx, dead_letter(message, error))),
            }
        }
        if !labels.is_empty() {
            let outcome = self.pipeline.apply_labels(&labels).await?;
            metrics::counter!("labels_consumed_total").increment(labels.len() as u64);
            tracing::debug!(labels = labels.len(), applied = outcome.applied, "labels applied");
            // recorded, but they can never match a decision: dead-lettered so that someone sees them
            for position in outcome.unmatched {
                let (idx, label) = (label_positions[position], &labels[position]);
                let error = format!("label: no stored transaction {:?}", label.transaction_id);
                letters.push((idx, dead_letter(&batch[idx], error)));
            }
        }
        // the entity state of partitions this batch is the first to reach: rebuilt
        // from the store (or kept from a rebalance that handed them back)
        let mut shards: Vec<&str> = parsed.iter().filter_map(|(shard, _)| shard.as_deref()).collect();
        shards.sort_unstable();
        shards.dedup();
        for shard in shards {
            if !self.pipeline.holds(shard) && self.generation() == generation {
                let observed = self
                    .pipeline
                    .acquire_shard(shard)
                    .await
                    .map_err(|error| StreamError::Unavailable(error.to_string()))?;
                tracing::debug!(shard, observed, "partition state rebuilt from the store");
            }
        }
        // after the batch before this one has admitted its records (a failed earlier
        // batch that gave up drops its sender: this one goes on, but stores no offsets)
        if let Some(after) = order.after.take() {
            let _ = after.await;
        }
        // a rebalance while this batch waited: its partitions' states may have been
        // released and rebuilt by a newer batch that starts from the committed offsets —
        // this batch's records come back from there, so they must not reach the state now
        if self.generation() != generation {
            return Err(StreamError::Unavailable(
                "a rebalance came before the batch was admitted".to_owned(),
            ));
        }
        let submitted = if model.rows().is_some() {
            self.pipeline.submit_rows(&model, rows)
        } else {
            self.pipeline.submit(&model, parsed).await
        };
        if let Some(admitted) = order.done.take() {
            let _ = admitted.send(());
        }
        let results = submitted.results().await;
        #[cfg(feature = "fault-injection")]
        self.crash.committed();
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
                    } else if scored.record.decision.is_flagged() {
                        metrics::counter!("anomalies_detected_total").increment(1);
                    }
                }
                // the id was stored with other content: not this record's decision to publish
                Err(error @ (ScoreError::Conflict(_) | ScoreError::Invalid(_) | ScoreError::EventTime(_))) => {
                    letters.push((idx, dead_letter(&batch[idx], error.to_string())));
                }
                // the partition moved in a rebalance while the batch was in flight: its
                // new owner (possibly this member again) gets the record from the committed offset
                Err(ScoreError::NotOwned(_)) if self.generation() != generation => {
                    metrics::counter!("records_left_to_new_owner_total").increment(1);
                }
                Err(error) => return Err(StreamError::Unavailable(error.to_string())),
            }
        }
        if !letters.is_empty() {
            let rows: Vec<DeadLetter> = letters.iter().map(|(_, letter)| letter.clone()).collect();
            self.pipeline.store().put_dead_letters(&rows).await?;
            metrics::counter!("dead_letters_total").increment(rows.len() as u64);
            for letter in &rows {
                log_dead_letter(letter);
            }
            for (idx, letter) in &letters {
                let message = &batch[*idx];
                let payload = message.payload().unwrap_or_default();
                let original_size = payload.len().to_string();
                let mut headers = rdkafka::message::OwnedHeaders::new()
                    .insert(rdkafka::message::Header {
                        key: "error",
                        value: Some(letter.error.as_bytes()),
                    })
                    .insert(rdkafka::message::Header {
                        key: "source",
                        value: Some(letter.location.as_bytes()),
                    });
                // a dead letter must always be publishable: a payload (or key) the broker
                // would refuse as too large is cut, and the header says so
                if payload.len() > MAX_PUBLISHED_PAYLOAD {
                    headers = headers.insert(rdkafka::message::Header {
                        key: "truncated",
                        value: Some(original_size.as_bytes()),
                    });
                    metrics::counter!("dead_letters_truncated_total").increment(1);
                }
                let mut record = FutureRecord::to(&self.config.dead_letter_topic)
                    .payload(&payload[..payload.len().min(MAX_PUBLISHED_PAYLOAD)])
                    .headers(headers);
                if let Some(key) = message.key() {
                    record = record.key(&key[..key.len().min(MAX_PUBLISHED_KEY)]);
                }
                let delivery = self.producer.send_result(record);
                deliveries.push(delivery.map_err(|(error, _)| StreamError::Kafka(error))?);
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

/// The id of a row sent without one: `topic-partition-offset`, a long topic
/// name (Kafka allows 249 characters) shortened with a hash of it, so the id
/// stays within the 128 characters of an id.
fn log_id(topic: &str, partition: i32, offset: i64) -> String {
    const KEPT: usize = 48;
    if topic.chars().count() <= 2 * KEPT {
        return format!("{topic}-{partition}-{offset}");
    }
    // FNV-1a: the same id for the same topic in every build
    let hash = topic.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let kept: String = topic.chars().take(KEPT).collect();
    format!("{kept}~{hash:016x}-{partition}-{offset}")
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
        at: now(),
    })
}

/// Dead letters logged per second at most (the rest are counted in the next line).
const DEAD_LETTER_LOG_LINES_PER_SECOND: u32 = 10;

/// One WARN line per dead letter (where from and why; never the payload),
/// within [`DEAD_LETTER_LOG_LINES_PER_SECOND`]: a stream of poison cannot
/// flood the log.
fn log_dead_letter(letter: &DeadLetter) {
    static BUDGET: std::sync::LazyLock<fraudlens_server::auth::LogBudget> =
        std::sync::LazyLock::new(|| fraudlens_server::auth::LogBudget::new(DEAD_LETTER_LOG_LINES_PER_SECOND));
    if let Some(suppressed) = BUDGET.admit(Instant::now()) {
        tracing::warn!(
            source = %letter.source,
            location = %letter.location,
            error = %letter.error,
            suppressed,
            "record dead-lettered"
        );
    }
}

/// The dead letter of a record: where it came from, why (at most
/// [`MAX_ERROR`] bytes), and its payload (at most [`MAX_STORED_PAYLOAD`]
/// bytes; a longer one is cut and says where the whole record is).
fn dead_letter(message: &OwnedMessage, error: String) -> DeadLetter {
    let payload = message.payload().unwrap_or_default();
    let location = format!("partition {} offset {}", message.partition(), message.offset());
    let mut stored = String::from_utf8_lossy(&payload[..payload.len().min(MAX_STORED_PAYLOAD)]).into_owned();
    if payload.len() > MAX_STORED_PAYLOAD {
        stored.push_str(&format!(
            "… [truncated: {} bytes; the whole record is at topic {} {location}]",
            payload.len(),
            message.topic()
        ));
    }
    DeadLetter {
        at: now(),
        source: format!("kafka:{}", message.topic()),
        location,
        error: truncate(error, MAX_ERROR),
        payload: stored,
    }
}

/// `text` cut to at most `max` bytes at a character boundary, marked when cut.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("… [truncated]");
    }
    text
}

/// Where a batch stands in the order of admissions: it admits its records
/// after `after` fires (the batch before it admitted its own) and then fires `done`.
struct AdmitOrder {
    after: Option<oneshot::Receiver<()>>,
    done: Option<oneshot::Sender<()>>,
}

#[cfg(test)]
mod tests {
    use super::log_id;

    #[test]
    fn ids_of_rows_without_one_fit_an_id_and_stay_apart() {
        assert_eq!(log_id("tx", 3, 42), "tx-3-42");
        let long = "t".repeat(249);
        let id = log_id(&long, i32::MAX, i64::MAX);
        assert!(id.chars().count() <= 128, "{id}");
        assert!(fraudlens_core::TransactionId::parse(&id).is_ok(), "{id}");
        let other = format!("{}u", "t".repeat(248));
        assert_ne!(log_id(&other, 0, 0), log_id(&long, 0, 0));
        assert_eq!(log_id(&long, 0, 0), log_id(&long, 0, 0));
    }
}
