//! `fraudlens detect` against a real Kafka-compatible broker (tansu) and
//! PostgreSQL: two detectors in one group, poison records, decisions topic,
//! committed offsets on restart.

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fraudlens_testkit::{Backend, Broker, TestDb};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::model::trained;
use crate::{Run, fraudlens, ok, spawn_service, terminate};

/// A running `fraudlens detect`.
pub(crate) struct Detect {
    child: Child,
    pub(crate) metrics: String,
    log: std::path::PathBuf,
}

impl Detect {
    pub(crate) fn start(dir: &Path, broker: &str, group: &str, database: &str, name: &str) -> Self {
        Self::start_with(dir, broker, group, database, name, &[])
    }

    pub(crate) fn start_with(
        dir: &Path,
        broker: &str,
        group: &str,
        database: &str,
        name: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let args = ["detect", "--brokers", broker, "--topic", "tx", "--group", group];
        let args = [&args[..], &["--database", database, "--metrics-listen", "127.0.0.1:0"]].concat();
        let topics = [
            ("FRAUDLENS_DETECT__DECISIONS_TOPIC", "decisions"),
            ("FRAUDLENS_DETECT__DEAD_LETTER_TOPIC", "dead"),
            ("FRAUDLENS_DETECT__SESSION_TIMEOUT_MS", "6000"),
            ("FRAUDLENS_DETECT__LABELS_TOPIC", "labels"),
        ];
        let (child, metrics) = spawn_service(dir, &args, &[&topics[..], env].concat(), &log, "metrics on ");
        Self { child, metrics, log }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A counter from /metrics (0 when not exported yet).
    pub(crate) async fn counter(&self, name: &str) -> f64 {
        let text = reqwest::get(&self.metrics).await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// `kill -9`.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits up to `timeout` for the process to end by itself (fault injection):
    /// its exit code, `None` for a signal; panics if it is still running.
    pub(crate) async fn ended_within(mut self, timeout: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} still running after {timeout:?}", self.log.display());
    }

    pub(crate) fn terminate(mut self) -> i32 {
        terminate(&mut self.child)
    }
}

impl Drop for Detect {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poison records: not JSON, not an object, invalid UTF-8, missing or invalid
/// fields, and the attack pass's: a duplicate key (serde_json alone kept the
/// last amount), more decimals than the currency has, a bidi override in an id.
fn poison(n: usize) -> Vec<Vec<u8>> {
    let kinds: [&[u8]; 9] = [
        b"not json at all",
        b"[1, 2, 3]",
        b"{\"transaction_id\": \"p\"",
        b"\xff\xfe{\"a\":1}",
        b"{\"transaction_id\":\"poison\",\"timestamp\":\"yesterday\",\"customer_id\":\"c\",\"terminal_id\":\"t\",\"amount\":1}",
        b"{\"transaction_id\":\"poison2\",\"timestamp\":\"2026-01-02T00:00:00Z\",\"customer_id\":\"c\",\"amount\":\"x\"}",
        br#"{"transaction_id":"poison3","timestamp":"2026-01-02T00:00:00Z","customer_id":"c","terminal_id":"t","amount":"1.00","amount":"9999.00"}"#,
        br#"{"transaction_id":"poison4","timestamp":"2026-01-02T00:00:00Z","customer_id":"c","terminal_id":"t","amount":0.001}"#,
        br#"{"transaction_id":"poison5","timestamp":"2026-01-02T00:00:00Z","customer_id":"c\u202e1","terminal_id":"t","amount":1}"#,
    ];
    (0..n).map(|idx| kinds[idx % kinds.len()].to_vec()).collect()
}

pub(crate) async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_detectors_decide_every_transaction_once_and_dead_letter_poison() {
    let broker = broker_with_topics(4);
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    // register and promote once, so that the two detectors find it
    promote_model(dir.path(), &db.url);

    let target = format!("kafka://{}/tx", broker.address);
    let run = ok(
        dir.path(),
        &[
            "simulate",
            "--customers",
            "150",
            "--terminals",
            "300",
            "--days",
            "4",
            "--seed",
            "9",
            "--to",
            &target,
        ],
    );
    let produced = produced(&run);
    assert!(produced > 500, "{produced}");
    let n_poison = produced / 100;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .unwrap();
    for (idx, payload) in poison(n_poison).iter().enumerate() {
        let key = format!("poison-{idx}");
        producer.send(BaseRecord::to("tx").key(&key).payload(payload)).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let group = format!("detectors-{}", std::process::id());
    let first = Detect::start(dir.path(), &broker.address, &group, &db.url, "d1");
    let second = Detect::start(dir.path(), &broker.address, &group, &db.url, "d2");
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    wait_for(
        "every record stored or dead-lettered",
        Duration::from_secs(120),
        async || {
            let stored = store.count_transactions().await.unwrap() as usize;
            let dead = store.dead_letters(100_000).await.unwrap().len();
            stored == produced && dead == n_poison
        },
    )
    .await;
    // both members took part
    let consumed = (
        first.counter("records_consumed_total").await,
        second.counter("records_consumed_total").await,
    );
    assert!(
        consumed.0 > 0.0 && consumed.1 > 0.0,
        "partitions split across the group: {consumed:?}"
    );
    assert_eq!((consumed.0 + consumed.1) as usize, produced + n_poison);
    // the process and the build on the detector's /metrics too (issue 17, item 3)
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "fraudlens_uptime_seconds",
    ] {
        assert!(first.counter(name).await > 0.0, "{name}");
    }
    assert_eq!(first.counter("fraudlens_build_info").await, 1.0);

    // every poison record is in the dead-letter table with its position, and on the topic
    let letters = store.dead_letters(100_000).await.unwrap();
    for letter in &letters {
        assert!(letter.letter.location.starts_with("partition "), "{:?}", letter.letter);
        assert!(letter.letter.location.contains(" offset "), "{:?}", letter.letter);
        assert_eq!(letter.letter.source, "kafka:tx");
    }
    let reasons: Vec<&str> = letters.iter().map(|letter| letter.letter.error.as_str()).collect();
    for expected in [
        "duplicate key \"amount\"",
        "amount \"0.001\" has more decimals than EUR has (2)",
        "contains the invisible or format character U+202E",
    ] {
        assert!(
            reasons.iter().any(|reason| reason.contains(expected)),
            "{expected}: {reasons:?}"
        );
    }

    // one decision message per transaction (repeats, if any, with the same content)
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", format!("reader-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    reader.subscribe(&["decisions", "dead"]).unwrap();
    let mut decisions = std::collections::HashMap::new();
    let mut dead_messages = 0;
    let started = Instant::now();
    while (decisions.len() < produced || dead_messages < n_poison) && started.elapsed() < Duration::from_secs(60) {
        let Some(message) = reader.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.unwrap();
        if message.topic() == "dead" {
            dead_messages += 1;
            let headers = message.headers().map(rdkafka::message::Headers::count).unwrap_or(0);
            assert!(headers >= 2, "dead letters carry the error and the source");
            continue;
        }
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let payload = message.payload().unwrap().to_vec();
        let decision: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(decision["transaction_id"], key.as_str());
        if let Some(previous) = decisions.insert(key, payload.clone()) {
            assert_eq!(previous, payload, "a repeated decision message has the same content");
        }
    }
    assert_eq!(decisions.len(), produced, "one decision per transaction on the topic");
    assert_eq!(dead_messages, n_poison);

    // chargebacks from the labels topic are applied like the REST endpoint; a bad one is dead-lettered
    let charged: Vec<String> = decisions.keys().take(3).cloned().collect();
    for id in &charged {
        let payload = serde_json::json!({"transaction_id": id, "label": "fraud", "source": "chargeback"}).to_string();
        producer
            .send(BaseRecord::to("labels").key(id).payload(&payload))
            .unwrap();
    }
    producer
        .send(
            BaseRecord::to("labels")
                .key("bad")
                .payload("{\"transaction_id\": \"x\", \"label\": \"maybe\"}"),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    wait_for("the labels", Duration::from_secs(60), async || {
        let mut all = true;
        for id in &charged {
            let labels = store.labels(id).await.unwrap();
            all &= labels
                .iter()
                .any(|l| l.source == "chargeback" && l.label == fraudlens_core::Label::Fraud);
        }
        all && store.dead_letters(100_000).await.unwrap().len() == n_poison + 1
    })
    .await;
    assert_eq!(
        store.transaction(&charged[0]).await.unwrap().unwrap().label,
        Some(fraudlens_core::Label::Fraud)
    );

    // one member leaves; the other takes its partitions before it leaves too (a group whose
    // last members leave in the middle of a rebalance can stay stuck on this broker)
    let assignments = |log: String| log.matches("partitions assigned").count();
    let before = assignments(second.log());
    assert_eq!(first.terminate(), 0);
    wait_for(
        "the remaining member's new assignment",
        Duration::from_secs(60),
        async || assignments(second.log()) > before,
    )
    .await;
    assert_eq!(second.terminate(), 0);

    // a member started after the stream ended resumes from the committed offsets
    let late = Detect::start(dir.path(), &broker.address, &group, &db.url, "d3");
    let started = Instant::now();
    while !late.log().contains("partitions assigned") {
        if started.elapsed() > Duration::from_secs(60) {
            panic!("no assignment for the late member:\n{}", all_logs(dir.path()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // nothing left to consume (the control follows: it consumes what is sent later)
    assert_eq!(late.counter("records_consumed_total").await, 0.0, "{}", late.log());
    assert_eq!(store.count_transactions().await.unwrap() as usize, produced);

    // one entity state per partition: every customer's transactions went through one
    // partition's state, and each partition's state is held by one member at a time
    let rows = all_rows(store.as_ref()).await;
    let mut shard_of = std::collections::HashMap::new();
    for row in &rows {
        let shard = row.decision.shard.clone().expect("a detector records the shard");
        let entity = row.decision.entity.clone().unwrap();
        assert_eq!(
            shard_of.entry(entity.clone()).or_insert_with(|| shard.clone()),
            &shard,
            "{entity} in two partitions"
        );
    }
    let shards: std::collections::BTreeSet<&String> = shard_of.values().collect();
    assert_eq!(
        shards.into_iter().cloned().collect::<Vec<_>>(),
        ["tx/0", "tx/1", "tx/2", "tx/3"]
    );
    assert_eq!(
        late.counter("fraudlens_state_shards").await,
        0.0,
        "acquired on a partition's first record"
    );

    // new transactions of one customer per partition: the late member rebuilds each
    // partition's state from that partition's stored rows alone, then scores on it
    let last_time = rows.iter().map(|row| row.decision.event_time).max().unwrap();
    let mut customers: Vec<(String, String)> = Vec::new();
    for (entity, shard) in &shard_of {
        if !customers.iter().any(|(_, taken)| taken == shard) {
            customers.push((entity.clone(), shard.clone()));
        }
    }
    customers.sort();
    for (idx, (customer, _)) in customers.iter().enumerate() {
        let payload = serde_json::json!({
            "transaction_id": format!("late-{idx}"),
            "timestamp": fraudlens_core::Timestamp::from_millis(last_time.as_millis() + 60_000).to_string(),
            "customer_id": customer,
            "terminal_id": "term_000001",
            "amount": 42.5,
            "currency": "EUR",
            "mcc": "5411",
            "channel": "online",
            "country": "DE",
        })
        .to_string();
        producer
            .send(BaseRecord::to("tx").key(customer).payload(&payload))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    wait_for("the late transactions", Duration::from_secs(60), async || {
        store.count_transactions().await.unwrap() as usize == produced + customers.len()
    })
    .await;
    assert_eq!(late.counter("fraudlens_state_shards").await, 4.0, "{}", late.log());
    // the positive control of the 0 above: the same member, on the same counter,
    // does consume what is sent after it joined
    assert_eq!(
        late.counter("records_consumed_total").await,
        customers.len() as f64,
        "{}",
        late.log()
    );
    let rebuilt: usize = acquired(&late.log()).iter().sum();
    assert_eq!(
        rebuilt,
        produced,
        "each partition's state rebuilt from its rows: {}",
        late.log()
    );
    let model = fraudlens_pipeline::ServingModel::load(&trained().model(), None).unwrap();
    for (idx, (customer, shard)) in customers.iter().enumerate() {
        // the oracle: a fresh engine fed the partition's stored rows in store order
        let mut engine = fraudlens_features::FeatureEngine::new(model.spec().unwrap().clone());
        let mut scratch = Vec::new();
        for row in rows.iter().filter(|row| row.decision.shard.as_ref() == Some(shard)) {
            let tx: fraudlens_core::Transaction = serde_json::from_str(&row.decision.body).unwrap();
            engine.observe(&tx, &mut scratch);
            scratch.clear();
            if let Some(label) = row.label {
                engine.apply_label(&tx, label);
            }
        }
        let late_row = store.transaction(&format!("late-{idx}")).await.unwrap().unwrap();
        assert_eq!(late_row.decision.shard.as_ref(), Some(shard), "{customer}");
        let tx: fraudlens_core::Transaction = serde_json::from_str(&late_row.decision.body).unwrap();
        let mut expected = Vec::new();
        engine.observe(&tx, &mut expected);
        let stored = &late_row.decision.features[..expected.len()];
        assert!(
            expected.iter().zip(stored).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{customer} on {shard}: features {stored:?}, expected {expected:?}"
        );
    }
    assert_eq!(late.terminate(), 0);
    let run = fraudlens(dir.path(), &["models", "list", "--database", &db.url], &[]);
    assert!(run.stdout.contains("production"));
}

/// The log of every detector started in `dir`, each under its file name.
pub(crate) fn all_logs(dir: &Path) -> String {
    let mut logs = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            logs.push_str(&format!("== {}\n{text}\n", entry.path().display()));
        }
    }
    logs
}

/// A broker with the detector's topics (`tx`, `decisions`, `dead`, `labels`) of `partitions` partitions.
pub(crate) fn broker_with_topics(partitions: u32) -> Broker {
    let broker = Broker::start();
    for topic in ["tx", "decisions", "dead", "labels"] {
        broker.create_topic(topic, partitions);
    }
    broker
}

/// How many stored transactions each partition state acquired in `log` was rebuilt from.
fn acquired(log: &str) -> Vec<usize> {
    log.lines()
        .filter(|line| line.contains("entity state acquired"))
        .filter_map(|line| line.split("observed=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Every stored transaction, in store order.
pub(crate) async fn all_rows(store: &dyn fraudlens_store::Store) -> Vec<fraudlens_store::StoredDecision> {
    let mut rows = Vec::new();
    loop {
        let after = rows.last().map_or(0, |row: &fraudlens_store::StoredDecision| row.seq);
        let page = store.transactions_after(after, 10_000, None).await.unwrap();
        if page.is_empty() {
            return rows;
        }
        rows.extend(page);
    }
}

/// How many transactions `simulate --to kafka` reports it produced.
pub(crate) fn produced(run: &Run) -> usize {
    run.stderr
        .split("produced ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", run.stderr))
}

/// Registers and promotes the shared test model on `database`.
/// A PostgreSQL store with the trained model promoted in it (registered from
/// `dir`), and the test's own connection to it.
pub(crate) async fn postgres_with_model(dir: &Path) -> (TestDb, Arc<dyn fraudlens_store::Store>) {
    let db = TestDb::new(Backend::Postgres).await;
    promote_model(dir, &db.url);
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    (db, store)
}

pub(crate) fn promote_model(dir: &Path, database: &str) {
    let model = trained().model();
    let version = ok(
        dir,
        &["models", "register", model.to_str().unwrap(), "--database", database],
    )
    .stdout
    .trim()
    .to_owned();
    ok(dir, &["models", "promote", &version, "--database", database]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_detectors_lose_nothing_and_duplicate_nothing() {
    let broker = Broker::start();
    for topic in ["tx", "decisions", "dead"] {
        broker.create_topic(topic, 4);
    }
    let dir = tempfile::tempdir().unwrap();
    let (db, store) = postgres_with_model(dir.path()).await;

    // about 100,000 transactions, produced while the detectors run
    let target = format!("kafka://{}/tx", broker.address);
    let producer = {
        let dir = dir.path().to_owned();
        std::thread::spawn(move || {
            ok(
                &dir,
                &[
                    "simulate",
                    "--customers",
                    "2000",
                    "--terminals",
                    "4000",
                    "--days",
                    "25",
                    "--seed",
                    "11",
                    "--to",
                    &target,
                ],
            )
        })
    };
    let group = format!("crash-{}", std::process::id());
    let steady = Detect::start(dir.path(), &broker.address, &group, &db.url, "steady");
    // crash 1: the fault-injection switch aborts right after a store commit, before the offsets
    let crashing = Detect::start_with(
        dir.path(),
        &broker.address,
        &group,
        &db.url,
        "crash1",
        // batches of at most 1,000: five stay well inside its share of the load
        &[
            ("FRAUDLENS_TEST_CRASH_AFTER_BATCHES", "5"),
            ("FRAUDLENS_DETECT__MAX_BATCH", "1000"),
        ],
    );
    assert_ne!(
        crashing.ended_within(Duration::from_secs(240)).await,
        Some(0),
        "the injected crash happened"
    );
    // crashes 2 and 3: kill -9 at points set by the progress of the store
    let mut victim = Detect::start(dir.path(), &broker.address, &group, &db.url, "crash2");
    // redeliveries seen by members that are killed later: their counters die with them
    let mut redelivered_by_killed = 0.0;
    for (round, threshold) in [(2, 40_000usize), (3, 70_000)] {
        let started = Instant::now();
        while (store.count_transactions().await.unwrap() as usize) < threshold {
            if started.elapsed() > Duration::from_secs(240) {
                let metrics = reqwest::get(&steady.metrics).await.unwrap().text().await.unwrap();
                let metrics2 = reqwest::get(&victim.metrics).await.unwrap().text().await.unwrap();
                let logs = all_logs(dir.path());
                panic!(
                    "stalled before crash {round} at {}\n{logs}\nsteady metrics:\n{}\nvictim metrics:\n{}",
                    store.count_transactions().await.unwrap(),
                    metrics
                        .lines()
                        .filter(|l| l.starts_with("records") || l.starts_with("kafka"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    metrics2
                        .lines()
                        .filter(|l| l.starts_with("records") || l.starts_with("kafka"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        redelivered_by_killed += victim.counter("records_redelivered_total").await;
        victim.kill();
        victim = Detect::start(
            dir.path(),
            &broker.address,
            &group,
            &db.url,
            &format!("crash{}", round + 1),
        );
    }
    let run = producer.join().unwrap();
    let produced = produced(&run);
    assert!(produced > 90_000, "{produced}");
    wait_for("every transaction stored", Duration::from_secs(300), async || {
        store.count_transactions().await.unwrap() as usize >= produced
    })
    .await;
    let stored = store.count_transactions().await.unwrap() as usize;
    let redelivered = redelivered_by_killed
        + steady.counter("records_redelivered_total").await
        + victim.counter("records_redelivered_total").await;
    println!(
        "crash test: produced {produced}, stored {stored}, lost {}, duplicate rows {} (unique key), \
         dead-lettered {}, redelivered after the crashes {redelivered}",
        produced.saturating_sub(stored),
        stored.saturating_sub(produced),
        store.dead_letters(10).await.unwrap().len(),
    );
    assert_eq!(stored, produced, "lost or duplicated rows");
    assert!(
        redelivered > 0.0,
        "the crashes hit records whose offsets were not committed"
    );
    // partitions moved between members (crashes, restarts): their states were rebuilt from the store
    let logs = all_logs(dir.path());
    let acquired = acquired(&logs);
    println!("partition states acquired (transactions replayed to build each): {acquired:?}");
    assert!(
        acquired.iter().any(|&observed| observed > 0),
        "a partition moved to another member and its state was rebuilt: {logs}"
    );
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(steady.terminate(), 0);
    assert_eq!(victim.terminate(), 0);
}

/// GET a detector probe: the status and the JSON body.
pub(crate) async fn probe(detect: &Detect, path: &str) -> (u16, serde_json::Value) {
    let url = detect.metrics.replace("/metrics", path);
    let response = reqwest::get(&url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

/// Regression (hardening issue, defects 7, 8, 10, 11, 12): an oversized
/// record, a record dated years ahead, a reused transaction id with other
/// content, and a label for a transaction that does not exist are each
/// dead-lettered once, with their reason, without stalling the partition;
/// readiness says when the brokers are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_record_is_dead_lettered_once_and_readiness_tells_the_truth() {
    let broker = Broker::start();
    for topic in ["tx", "decisions", "dead", "labels"] {
        broker.create_topic(topic, 2);
    }
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    promote_model(dir.path(), &db.url);
    let target = format!("kafka://{}/tx", broker.address);
    let run = ok(
        dir.path(),
        &[
            "simulate",
            "--customers",
            "40",
            "--terminals",
            "80",
            "--days",
            "2",
            "--seed",
            "3",
            "--to",
            &target,
        ],
    );
    let produced = produced(&run);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("message.max.bytes", "10000000")
        .create()
        .unwrap();
    let record = |id: &str, when: &str, customer: &str, amount: &str| {
        serde_json::json!({"transaction_id": id, "timestamp": when, "customer_id": customer,
            "terminal_id": "term_000001", "amount": amount, "currency": "EUR"})
        .to_string()
    };
    // a 2 MB customer id: refused, and its dead letter must still be publishable
    let oversized = record("big", "2026-01-02T10:00:00Z", &"x".repeat(2_000_000), "1.00");
    // dated ten years ahead, from a customer nobody knows
    let future = record("future", "2036-01-01T00:00:00Z", "someone_else", "1.00");
    // the same id twice with other content, back to back (one batch)
    let first = record("dup-1", "2026-01-02T10:00:00Z", "cust_dup", "10.00");
    let second = record("dup-1", "2026-01-02T10:00:00Z", "cust_dup", "9999.00");
    for (key, payload) in [
        ("big", &oversized),
        ("fut", &future),
        ("cust_dup", &first),
        ("cust_dup", &second),
    ] {
        producer.send(BaseRecord::to("tx").key(key).payload(payload)).unwrap();
    }
    let label = r#"{"transaction_id": "no-such-transaction", "label": "fraud"}"#;
    producer.send(BaseRecord::to("labels").key("l").payload(label)).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    let group = format!("hardened-{}", std::process::id());
    let detect = Detect::start(dir.path(), &broker.address, &group, &db.url, "d");
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    wait_for(
        "every record stored or dead-lettered",
        Duration::from_secs(120),
        async || {
            store.count_transactions().await.unwrap() as usize == produced + 1
                && store.dead_letters(100).await.unwrap().len() == 4
        },
    )
    .await;
    // nothing retried, nothing dead-lettered twice
    tokio::time::sleep(Duration::from_secs(3)).await;
    let letters = store.dead_letters(100).await.unwrap();
    assert_eq!(letters.len(), 4, "{letters:#?}");
    assert_eq!(detect.counter("batch_retries_total").await, 0.0, "{}", detect.log());
    let reason_of = |needle: &str| {
        letters
            .iter()
            .find(|letter| letter.letter.payload.contains(needle))
            .map(|letter| letter.letter.error.clone())
            .unwrap_or_else(|| panic!("no dead letter with {needle}: {letters:#?}"))
    };
    // the oversized record is kept up to 1 MiB, with where the whole of it is
    let big = reason_of("[truncated: 2000");
    assert!(big.len() < 1100, "the error is cut: {} bytes", big.len());
    assert!(big.contains("customer_id"), "{}", &big[..big.len().min(300)]);
    assert!(reason_of("2036-01-01").contains("ahead of the current time"));
    assert!(reason_of("9999.00").contains("different content"));
    assert!(reason_of("no-such-transaction").contains("no stored transaction"));
    assert_eq!(
        store.transaction("dup-1").await.unwrap().unwrap().decision.amount_minor,
        1000
    );
    assert!(store.transaction("future").await.unwrap().is_none());
    // each is logged, with where it came from and why
    let log = detect.log();
    assert_eq!(log.matches("record dead-lettered").count(), 4, "{log}");
    assert!(log.contains("different content"), "{log}");

    // the dead-letter topic got each once; the oversized one cut, and saying so
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", format!("reader-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    reader.subscribe(&["dead"]).unwrap();
    let (mut dead, mut truncated) = (0, 0);
    let started = Instant::now();
    while dead < 4 && started.elapsed() < Duration::from_secs(30) {
        let Some(message) = reader.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.unwrap();
        dead += 1;
        use rdkafka::message::Headers;
        if let Some(headers) = message.headers()
            && headers.iter().any(|header| header.key == "truncated")
        {
            truncated += 1;
            assert!(message.payload().unwrap().len() <= 64 * 1024);
        }
    }
    assert_eq!((dead, truncated), (4, 1));

    // ready while it holds partitions and the broker is up; not ready once the broker is gone
    let (status, body) = probe(&detect, "/health/ready").await;
    assert_eq!(status, 200, "{body}");
    drop(broker);
    let mut last = serde_json::Value::Null;
    wait_for(
        "readiness to fail without brokers",
        Duration::from_secs(60),
        async || {
            let (status, body) = probe(&detect, "/health/ready").await;
            last = body;
            status == 503
        },
    )
    .await;
    assert!(last["reasons"].to_string().contains("broker"), "{last}");
    assert_eq!(probe(&detect, "/health/live").await.0, 200);
}

/// Regression (hardening issue, defect 9): records of a partition reach its
/// entity state in offset order whatever the number of batches in flight, so
/// consuming the same stream again stores the same feature vectors, bit for bit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_stream_gives_the_same_features_every_run() {
    let broker = broker_with_topics(4);
    let dir = tempfile::tempdir().unwrap();
    let target = format!("kafka://{}/tx", broker.address);
    let run = ok(
        dir.path(),
        &[
            "simulate",
            "--customers",
            "300",
            "--terminals",
            "600",
            "--days",
            "6",
            "--seed",
            "5",
            "--to",
            &target,
        ],
    );
    let produced = produced(&run);
    // three runs at once, each its own group and database, with small batches (many in flight)
    let mut runs = Vec::new();
    for idx in 0..3 {
        let db = TestDb::new(Backend::Sqlite).await;
        promote_model(dir.path(), &db.url);
        let group = format!("replay-{idx}-{}", std::process::id());
        let detect = Detect::start_with(
            dir.path(),
            &broker.address,
            &group,
            &db.url,
            &format!("r{idx}"),
            &[("FRAUDLENS_DETECT__MAX_BATCH", "37")],
        );
        runs.push((db, detect));
    }
    let mut features = Vec::new();
    for (db, _detect) in &runs {
        let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
            .await
            .unwrap();
        wait_for("the whole stream", Duration::from_secs(180), async || {
            store.count_transactions().await.unwrap() as usize == produced
        })
        .await;
        let by_id: std::collections::BTreeMap<String, Vec<u64>> = all_rows(store.as_ref())
            .await
            .into_iter()
            .map(|row| {
                let bits = row.decision.features.iter().map(|value| value.to_bits()).collect();
                (row.decision.transaction_id, bits)
            })
            .collect();
        assert_eq!(by_id.len(), produced);
        features.push(by_id);
    }
    for (idx, other) in features.iter().enumerate().skip(1) {
        let differing: Vec<&String> = features[0]
            .iter()
            .filter(|(id, bits)| other.get(*id) != Some(*bits))
            .map(|(id, _)| id)
            .collect();
        assert!(
            differing.is_empty(),
            "run {idx}: {} of {produced} feature vectors differ from run 0, e.g. {:?}",
            differing.len(),
            &differing[..differing.len().min(5)]
        );
    }
}

/// A TCP proxy that can freeze: while frozen, no byte moves either way and
/// connections stay open — a database that hangs rather than refuses.
struct FreezingProxy {
    address: String,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

impl FreezingProxy {
    async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (mut from, mut to) in [
                    (
                        Box::new(client_read) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                        Box::new(server_write) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                    ),
                    (Box::new(server_read), Box::new(client_write)),
                ] {
                    let flag = flag.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buffer = vec![0u8; 64 * 1024];
                        loop {
                            let Ok(n) = from.read(&mut buffer).await else { return };
                            if n == 0 {
                                return;
                            }
                            // held back while frozen: the other side waits, as on a hung server
                            while flag.load(Ordering::Acquire) {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            if to.write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Self { address, frozen }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, std::sync::atomic::Ordering::Release);
    }
}

/// Regression (hardening issue, defect 11): during a PostgreSQL outage the
/// detector's readiness probe hung instead of answering 503 quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_answers_503_quickly_while_the_database_hangs() {
    let broker = Broker::start();
    for topic in ["tx", "decisions", "dead", "labels"] {
        broker.create_topic(topic, 2);
    }
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    promote_model(dir.path(), &db.url);
    // postgres://USER@HOST:PORT/DB → the same database through the proxy
    let rest = db.url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap().to_owned();
    let proxy = FreezingProxy::start(host_port.clone()).await;
    let proxied = db.url.replacen(&host_port, &proxy.address, 1);
    let target = format!("kafka://{}/tx", broker.address);
    let run = ok(
        dir.path(),
        &[
            "simulate",
            "--customers",
            "20",
            "--terminals",
            "40",
            "--days",
            "1",
            "--seed",
            "4",
            "--to",
            &target,
        ],
    );
    let produced = produced(&run);
    let group = format!("outage-{}", std::process::id());
    let detect = Detect::start(dir.path(), &broker.address, &group, &proxied, "d");
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    wait_for("the stream", Duration::from_secs(90), async || {
        store.count_transactions().await.unwrap() as usize == produced
    })
    .await;
    wait_for("readiness", Duration::from_secs(30), async || {
        probe(&detect, "/health/ready").await.0 == 200
    })
    .await;

    proxy.freeze(true);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = detect.metrics.replace("/metrics", "/health/ready");
    let response = client.get(&url).send().await.expect("an answer, not a hang");
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["reasons"].to_string().contains("store: no answer within"),
        "{body}"
    );
    assert_eq!(
        probe(&detect, "/health/live").await.0,
        200,
        "liveness does not depend on the store"
    );

    proxy.freeze(false);
    wait_for("readiness after the outage", Duration::from_secs(30), async || {
        probe(&detect, "/health/ready").await.0 == 200
    })
    .await;
    assert_eq!(detect.terminate(), 0);
}
