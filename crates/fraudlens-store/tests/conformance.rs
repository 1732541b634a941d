//! One behavioural suite, run against both backends: every test below runs
//! once on a fresh SQLite file and once on a fresh PostgreSQL database.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use fraudlens_core::{Decision, Label, ReviewStatus, Timestamp};
use fraudlens_store::*;
use fraudlens_testkit::{Backend, TestDb};

fn ms(millis: i64) -> Timestamp {
    Timestamp::from_millis(millis)
}

async fn open(db: &TestDb) -> Arc<dyn Store> {
    connect(&db.url, &StoreOptions::default()).await.unwrap()
}

fn decision(id: &str, score: f64, time: i64, entity: &str) -> NewDecision {
    let decision = if score >= 0.9 {
        Decision::Decline
    } else if score >= 0.5 {
        Decision::Review
    } else {
        Decision::Approve
    };
    NewDecision {
        transaction_id: id.to_owned(),
        fingerprint: format!("fp-{id}"),
        event_time: ms(time),
        received_at: ms(time + 5),
        entity: Some(entity.to_owned()),
        amount_minor: 1234,
        currency: "EUR".to_owned(),
        body: format!(r#"{{"id":"{id}"}}"#),
        score,
        probability: Some(score),
        raw_score: Some(0.1 + score),
        anomaly_score: None,
        decision,
        reasons: "[]".to_owned(),
        features: vec![12.34, f64::NAN, -0.0, 1.0 / 3.0, 0.0, 42.0, -7.0, 1e300],
        model_version: "m1".to_owned(),
        latency_us: 42,
        review_status: (decision != Decision::Approve).then_some(ReviewStatus::PendingReview),
        shard: None,
    }
}

async fn put_is_idempotent_and_batches_dedupe(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let a = decision("a", 0.7, 1_000, "c1");
    let b = decision("b", 0.1 / 3.0, 2_000, "c2");
    let outcomes = store.put_decisions(&[a.clone(), b.clone(), a.clone()]).await.unwrap();
    assert_eq!(outcomes[0], PutOutcome::Inserted);
    assert_eq!(outcomes[1], PutOutcome::Inserted);
    let PutOutcome::Existing(stored) = &outcomes[2] else {
        panic!("{:?}", outcomes[2])
    };
    assert_eq!(stored.decision.transaction_id, a.transaction_id);
    assert_eq!(stored.decision.fingerprint, a.fingerprint);
    assert_eq!(store.count_transactions().await.unwrap(), 2);

    let mut changed = b.clone();
    changed.fingerprint = "other".to_owned();
    let outcomes = store
        .put_decisions(&[changed, decision("c", 0.2, 3_000, "c1")])
        .await
        .unwrap();
    let PutOutcome::Existing(stored) = &outcomes[0] else {
        panic!()
    };
    assert_eq!(
        stored.decision.fingerprint, b.fingerprint,
        "the stored row is returned unchanged"
    );
    assert_eq!(stored.decision.score.to_bits(), b.score.to_bits(), "floats bit for bit");
    assert_eq!(outcomes[1], PutOutcome::Inserted);
    assert_eq!(store.count_transactions().await.unwrap(), 3);

    let read = store.transaction("b").await.unwrap().unwrap();
    assert_eq!(
        read.decision.features[1].to_bits(),
        f64::NAN.to_bits(),
        "feature vectors keep NaN"
    );
    assert_eq!(read.decision.features[2].to_bits(), (-0.0f64).to_bits());
    // the compact stored form keeps every kind of value bit for bit
    let bits = |values: &[f64]| values.iter().map(|value| value.to_bits()).collect::<Vec<u64>>();
    assert_eq!(bits(&read.decision.features), bits(&b.features));
    let without_features = |d: &NewDecision| NewDecision {
        features: Vec::new(),
        ..d.clone()
    };
    assert_eq!(without_features(&read.decision), without_features(&b));
    assert_eq!(read.label, None);
    assert!(store.transaction("zzz").await.unwrap().is_none());
    let after = store.transactions_after(read.seq - 1, 10, None).await.unwrap();
    assert_eq!(
        after
            .iter()
            .map(|d| d.decision.transaction_id.as_str())
            .collect::<Vec<_>>(),
        ["b", "c"]
    );
}

async fn large_batches_commit_whole(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let batch: Vec<_> = (0..1_203).map(|i| decision(&format!("t{i}"), 0.3, i, "c")).collect();
    let outcomes = store.put_decisions(&batch).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == PutOutcome::Inserted));
    assert_eq!(store.count_transactions().await.unwrap(), 1_203);
    let last = store.last_seq().await.unwrap();
    assert_eq!(store.transactions_after(last - 3, 10, None).await.unwrap().len(), 3);
    let again = store.put_decisions(&batch).await.unwrap();
    assert!(again.iter().all(|o| matches!(o, PutOutcome::Existing(_))));
    assert_eq!(store.count_transactions().await.unwrap(), 1_203);
    // new ids behind stored ones, in a batch large enough for PostgreSQL's COPY:
    // the COPY refuses the batch, the conflict-tolerant insert writes it
    let mixed: Vec<_> = (1_000..3_500)
        .map(|i| decision(&format!("t{i}"), 0.3, i, "c"))
        .collect();
    let outcomes = store.put_decisions(&mixed).await.unwrap();
    assert!(outcomes[..203].iter().all(|o| matches!(o, PutOutcome::Existing(_))));
    assert!(outcomes[203..].iter().all(|o| *o == PutOutcome::Inserted));
    assert_eq!(store.count_transactions().await.unwrap(), 3_500);
    // and a large batch of new ids only (the COPY itself)
    let fresh: Vec<_> = (3_500..6_000)
        .map(|i| decision(&format!("t{i}"), 0.3, i, "c"))
        .collect();
    let outcomes = store.put_decisions(&fresh).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == PutOutcome::Inserted));
    assert_eq!(store.count_transactions().await.unwrap(), 6_000);
    let read = store.transaction("t4321").await.unwrap().unwrap();
    let bits = |values: &[f64]| values.iter().map(|value| value.to_bits()).collect::<Vec<u64>>();
    assert_eq!(bits(&read.decision.features), bits(&fresh[821].features));
    assert_eq!(read.decision.body, fresh[821].body);
    assert_eq!(read.decision.raw_score, fresh[821].raw_score);
}

/// The same large batch written by two processes at once (a redelivery racing
/// the original, a client retrying on another replica): every id stored once,
/// each answered as inserted by exactly one of the two and as stored by the
/// other — whether the second one's COPY fails on the conflict or waits for
/// the first one's commit.
async fn concurrent_copies_of_one_batch_store_each_id_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (first, second) = (open(&db).await, open(&db).await);
    let batch: Vec<_> = (0..2_500).map(|i| decision(&format!("dup{i}"), 0.3, i, "c")).collect();
    for round in 0..3 {
        let batch: Vec<_> = batch
            .iter()
            .map(|d| NewDecision {
                transaction_id: format!("{}-{round}", d.transaction_id),
                ..d.clone()
            })
            .collect();
        let (a, b) = tokio::join!(first.put_decisions(&batch), second.put_decisions(&batch));
        let (a, b) = (a.unwrap(), b.unwrap());
        for (idx, (a, b)) in a.iter().zip(&b).enumerate() {
            let inserted = [a, b].iter().filter(|o| ***o == PutOutcome::Inserted).count();
            let existing = [a, b].iter().filter(|o| matches!(o, PutOutcome::Existing(_))).count();
            assert_eq!((inserted, existing), (1, 1), "round {round}, row {idx}: {a:?} {b:?}");
        }
    }
    assert_eq!(first.count_transactions().await.unwrap(), 7_500);
}

async fn shards_replay_their_own_rows(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let batch: Vec<_> = (0..300)
        .map(|i| NewDecision {
            shard: (i % 3 != 0).then(|| format!("transactions/{}", i % 3)),
            ..decision(&format!("t{i}"), 0.3, i, "c")
        })
        .collect();
    store.put_decisions(&batch).await.unwrap();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .transactions_after(after, 7, Some("transactions/2"))
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        assert!(last.seq > after, "pages move forward");
        after = last.seq;
        seen.extend(page.into_iter().map(|row| {
            assert_eq!(row.decision.shard.as_deref(), Some("transactions/2"));
            row.decision.event_time.as_millis()
        }));
    }
    assert_eq!(
        seen,
        (0..300).filter(|i| i % 3 == 2).collect::<Vec<_>>(),
        "all of the shard, in order"
    );
    assert!(
        store
            .transactions_after(0, 10, Some("transactions/9"))
            .await
            .unwrap()
            .is_empty()
    );
    let all = store.transactions_after(0, 1_000, None).await.unwrap();
    assert_eq!(all.len(), 300, "no shard filter: every row, the API's included");
    assert_eq!(all[0].decision.shard, None);
}

async fn queue_filters_sorts_and_pages(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let mut batch = Vec::new();
    for i in 0..40 {
        // scores repeat so that paging must break ties by seq
        let score = 0.5 + f64::from(i % 5) / 10.0;
        batch.push(decision(
            &format!("q{i}"),
            score,
            10_000 + i64::from(i),
            if i % 2 == 0 { "even" } else { "odd" },
        ));
    }
    batch.push(decision("approved", 0.1, 5, "even"));
    store.put_decisions(&batch).await.unwrap();

    for order in [QueueOrder::ScoreDesc, QueueOrder::TimeDesc, QueueOrder::TimeAsc] {
        let mut seen = Vec::new();
        let mut query = AnomalyQuery {
            order,
            limit: 7,
            ..AnomalyQuery::default()
        };
        loop {
            let page = store.anomalies(&query).await.unwrap();
            assert!(page.items.len() <= 7);
            seen.extend(
                page.items
                    .iter()
                    .map(|d| (d.decision.score, d.decision.event_time, d.seq)),
            );
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
        assert_eq!(seen.len(), 40, "{order:?}: every queued row once, approvals not queued");
        let mut sorted = seen.clone();
        match order {
            QueueOrder::ScoreDesc => sorted.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.2.cmp(&a.2))),
            QueueOrder::TimeDesc => sorted.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2))),
            QueueOrder::TimeAsc => sorted.sort_by(|a, b| a.1.cmp(&b.1).then(a.2.cmp(&b.2))),
        }
        assert_eq!(seen, sorted, "{order:?}");
    }

    let filtered = store
        .anomalies(&AnomalyQuery {
            min_score: Some(0.8),
            from: Some(ms(10_010)),
            to: Some(ms(10_030)),
            entity: Some("even".to_owned()),
            status: Some(ReviewStatus::PendingReview),
            limit: 100,
            ..AnomalyQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = filtered
        .items
        .iter()
        .map(|d| d.decision.transaction_id.clone())
        .collect();
    // even i in 10..30 with i % 5 in {3, 4}: 14, 18, 24, 28
    assert_eq!(filtered.items.len(), 4, "{ids:?}");
    assert!(filtered.next_cursor.is_none());

    let bad = store
        .anomalies(&AnomalyQuery {
            order: QueueOrder::TimeAsc,
            cursor: Some("s3ff0000000000000.4".to_owned()),
            limit: 5,
            ..AnomalyQuery::default()
        })
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");
}

async fn review_writes_audit_and_label(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    store.put_decisions(&[decision("r1", 0.8, 1, "c")]).await.unwrap();
    let outcome = store
        .review(&ReviewRequest {
            transaction_id: "r1".to_owned(),
            status: ReviewStatus::Escalated,
            actor: "ana".to_owned(),
            note: Some("looks odd".to_owned()),
            at: ms(100),
        })
        .await
        .unwrap();
    assert_eq!(outcome.before, Some(ReviewStatus::PendingReview));
    assert_eq!(outcome.label, None);
    assert_eq!(
        outcome.transaction.decision.review_status,
        Some(ReviewStatus::Escalated)
    );

    let outcome = store
        .review(&ReviewRequest {
            transaction_id: "r1".to_owned(),
            status: ReviewStatus::ConfirmedFraud,
            actor: "bo".to_owned(),
            note: None,
            at: ms(200),
        })
        .await
        .unwrap();
    assert_eq!(outcome.before, Some(ReviewStatus::Escalated));
    assert_eq!(outcome.label, Some(Label::Fraud));
    assert_eq!(outcome.transaction.label, Some(Label::Fraud));
    assert_eq!(outcome.transaction.review_updated_at, Some(ms(200)));

    let audit = store.audit("r1").await.unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].actor, "ana");
    assert_eq!(audit[0].before.as_deref(), Some("pending_review"));
    assert_eq!(audit[0].after.as_deref(), Some("escalated"));
    assert_eq!(audit[0].note.as_deref(), Some("looks odd"));
    assert_eq!(audit[1].after.as_deref(), Some("confirmed_fraud"));
    let labels = store.labels("r1").await.unwrap();
    assert_eq!(labels.len(), 1);
    assert_eq!((labels[0].label, labels[0].source.as_str()), (Label::Fraud, "review"));

    let missing = store
        .review(&ReviewRequest {
            transaction_id: "nope".to_owned(),
            status: ReviewStatus::FalsePositive,
            actor: "ana".to_owned(),
            note: None,
            at: ms(300),
        })
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
    assert!(
        store.audit("nope").await.unwrap().is_empty(),
        "a failed review leaves no audit entry"
    );
}

async fn labels_update_known_transactions(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    store.put_decisions(&[decision("l1", 0.1, 1, "c")]).await.unwrap();
    let label = |id: &str, label| NewLabel {
        transaction_id: id.to_owned(),
        label,
        source: "chargeback".to_owned(),
        actor: "bank".to_owned(),
        at: ms(50),
    };
    let applied = store
        .put_labels(&[label("l1", Label::Fraud), label("unknown", Label::Legit)])
        .await
        .unwrap();
    assert_eq!(applied[0].as_ref().unwrap().label, Some(Label::Fraud));
    assert!(applied[1].is_none());
    assert_eq!(
        store.transaction("l1").await.unwrap().unwrap().label,
        Some(Label::Fraud)
    );
    assert_eq!(
        store.labels("unknown").await.unwrap().len(),
        1,
        "labels for unseen transactions are kept"
    );
}

async fn model_registry_promotes_one_at_a_time(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let model = |version: &str, at| NewModel {
        version: version.to_owned(),
        path: format!("/models/{version}"),
        summary: "{}".to_owned(),
        feature_names: vec!["amount".to_owned(), "x".to_owned()],
        registered_at: at,
        digest: format!("digest-of-{version}"),
    };
    store.register_model(&model("v1", ms(1))).await.unwrap();
    store.register_model(&model("v1", ms(1))).await.unwrap();
    store.register_model(&model("v2", ms(2))).await.unwrap();
    let mut clash = model("v2", ms(3));
    clash.path = "/elsewhere".to_owned();
    assert!(matches!(
        store.register_model(&clash).await,
        Err(StoreError::Conflict(_))
    ));

    assert_eq!(
        store.promote_model("v1", ms(10), "admin").await.unwrap().stage,
        ModelStage::Production
    );
    let v2 = store.promote_model("v2", ms(20), "admin").await.unwrap();
    assert_eq!((v2.stage, v2.promoted_at), (ModelStage::Production, Some(ms(20))));
    let models = store.models().await.unwrap();
    let stage = |v: &str| models.iter().find(|m| m.version == v).unwrap().stage;
    assert_eq!(
        (stage("v1"), stage("v2")),
        (ModelStage::Archived, ModelStage::Production)
    );
    assert_eq!(models[0].version, "v2", "newest first");
    assert!(matches!(
        store.promote_model("v9", ms(30), "admin").await,
        Err(StoreError::NotFound(_))
    ));
    let stage_after = store.models().await.unwrap();
    assert_eq!(stage_after, models, "a failed promotion changes nothing");
    let audit = store.audit("model:v2").await.unwrap();
    assert_eq!(audit[0].before.as_deref(), Some("v1"));
}

/// Promotions are announced to the listeners of `model_changes` once
/// committed, from any connection (another process's store), and a failed
/// promotion announces nothing; SQLite has no announcements (`None`).
/// Registers each version (path and digest named after it).
async fn register_versions(store: &dyn Store, versions: &[&str]) {
    for version in versions {
        let model = NewModel {
            version: (*version).to_owned(),
            path: format!("/models/{version}"),
            summary: "{}".to_owned(),
            feature_names: Vec::new(),
            registered_at: ms(1),
            digest: format!("digest-of-{version}"),
        };
        store.register_model(&model).await.unwrap();
    }
}

async fn promotions_are_announced_on_commit(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let other = open(&db).await;
    let Some(mut changes) = store.model_changes().await.unwrap() else {
        assert_eq!(backend, Backend::Sqlite, "only SQLite cannot announce");
        return;
    };
    assert_eq!(backend, Backend::Postgres);
    register_versions(other.as_ref(), &["v1", "v2"]).await;
    assert!(other.promote_model("v9", ms(5), "admin").await.is_err());
    other.promote_model("v1", ms(10), "admin").await.unwrap();
    other.promote_model("v2", ms(20), "admin").await.unwrap();
    assert_eq!(
        next_change(&mut changes).await,
        Some(ModelChange::Promoted("v1".to_owned()))
    );
    assert_eq!(
        next_change(&mut changes).await,
        Some(ModelChange::Promoted("v2".to_owned()))
    );
    // closing the pool ends the listening
    store.close().await;
    assert_eq!(next_change(&mut changes).await, None);
}

/// A write cancelled while PostgreSQL holds it (here: waiting for a table
/// lock, its `COPY` begun) leaves no connection out of step: the store goes on
/// writing and reading, and closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_write_leaves_every_connection_usable() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = open(&db).await;
    let mut locker = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    // large enough for PostgreSQL's COPY path
    let batch: Vec<_> = (0..2_500).map(|i| decision(&format!("w{i}"), 0.3, i, "c")).collect();
    let write = tokio::time::timeout(std::time::Duration::from_millis(300), store.put_decisions(&batch));
    assert!(write.await.is_err(), "the write waited for the lock");
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    for round in 0..8 {
        let batch: Vec<_> = (0..10)
            .map(|i| decision(&format!("r{round}-{i}"), 0.3, i, "c"))
            .collect();
        let outcomes = store.put_decisions(&batch).await.unwrap();
        assert!(outcomes.iter().all(|o| *o == PutOutcome::Inserted), "round {round}");
        assert!(store.transaction(&format!("r{round}-3")).await.unwrap().is_some());
    }
    assert_eq!(
        store.count_transactions().await.unwrap(),
        80,
        "the cancelled batch stored nothing"
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), store.close())
        .await
        .expect("every connection closes");
}

/// A listening connection killed by the server: the subscriber hears of it
/// (`Reconnected`, or the end of the subscription), and once listening again
/// hears the next promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listening_connection_is_reported() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = open(&db).await;
    register_versions(store.as_ref(), &["v1", "v2"]).await;
    let mut changes = store.model_changes().await.unwrap().unwrap();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, [true], "one listening connection");
    match next_change(&mut changes).await {
        Some(ModelChange::Reconnected) => {}
        None => changes = store.model_changes().await.unwrap().unwrap(),
        other => panic!("{other:?}"),
    }
    store.promote_model("v2", ms(20), "admin").await.unwrap();
    assert_eq!(
        next_change(&mut changes).await,
        Some(ModelChange::Promoted("v2".to_owned()))
    );
}

/// The next announcement, within a generous deadline.
async fn next_change(changes: &mut ModelChanges) -> Option<ModelChange> {
    tokio::time::timeout(std::time::Duration::from_secs(10), changes.next())
        .await
        .expect("an announcement (or the end) within 10 s")
}

/// The registry keeps what was registered, not only where: the content
/// digest comes back with the entry, and the same version and path with other
/// content is a conflict, not a silent no-op.
async fn model_registry_keeps_the_content_digest(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let model = NewModel {
        version: "v1".to_owned(),
        path: "/models/v1".to_owned(),
        summary: "{}".to_owned(),
        feature_names: Vec::new(),
        registered_at: ms(1),
        digest: "aa".repeat(32),
    };
    store.register_model(&model).await.unwrap();
    store.register_model(&model).await.unwrap();
    let edited = NewModel {
        digest: "bb".repeat(32),
        ..model.clone()
    };
    assert!(matches!(
        store.register_model(&edited).await,
        Err(StoreError::Conflict(message)) if message.contains("changed")
    ));
    let entry = store.promote_model("v1", ms(2), "admin").await.unwrap();
    assert_eq!(entry.digest.as_deref(), Some(model.digest.as_str()));
    let listed = store.models().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0], entry);
    assert!(entry.content_matches(&model.digest));
    assert!(!entry.content_matches(&edited.digest));

    // a row registered before the digest column: it cannot tell, and the next
    // registration of its path supplies the digest
    let forget = "UPDATE models SET digest = NULL";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(forget).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(forget).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
    let legacy = store.models().await.unwrap().remove(0);
    assert_eq!(legacy.digest, None);
    assert!(legacy.content_matches(&edited.digest));
    store.register_model(&edited).await.unwrap();
    let adopted = store.models().await.unwrap().remove(0);
    assert_eq!(adopted.digest.as_deref(), Some(edited.digest.as_str()));
    assert_eq!(
        adopted.stage,
        ModelStage::Production,
        "filling the digest changes nothing else"
    );
}

async fn keys_are_created_and_revoked(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let key = ApiKeyEntry {
        key_id: "k1".to_owned(),
        name: "checkout".to_owned(),
        role: Role::Service,
        secret_sha256: "ab".repeat(32),
        created_at: ms(5),
        revoked_at: None,
    };
    store.create_key(&key).await.unwrap();
    assert!(store.create_key(&key).await.is_err(), "key ids are unique");
    assert_eq!(store.key("k1").await.unwrap().unwrap(), key);
    assert!(store.revoke_key("k1", ms(9), "admin").await.unwrap());
    assert!(!store.revoke_key("k1", ms(10), "admin").await.unwrap());
    assert_eq!(store.key("k1").await.unwrap().unwrap().revoked_at, Some(ms(9)));
    assert!(matches!(
        store.revoke_key("k2", ms(9), "admin").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.keys().await.unwrap().len(), 1);
    let audit = store.audit("key:k1").await.unwrap();
    assert_eq!(
        audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
        ["key_create", "key_revoke"]
    );
}

async fn console_sessions_counts_and_entity_history(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let key = ApiKeyEntry {
        key_id: "k1".to_owned(),
        name: "ana".to_owned(),
        role: Role::Analyst,
        secret_sha256: "ab".repeat(32),
        created_at: ms(5),
        revoked_at: None,
    };
    store.create_key(&key).await.unwrap();
    let day = 24 * 3_600_000;
    let session = SessionEntry {
        token_sha256: "cd".repeat(32),
        key_id: "k1".to_owned(),
        created_at: ms(10 * day),
        expires_at: ms(10 * day + 3_600_000),
        ended_at: None,
    };
    store.create_session(&session).await.unwrap();
    assert!(store.create_session(&session).await.is_err(), "tokens are unique");
    assert_eq!(store.session(&session.token_sha256).await.unwrap().unwrap(), session);
    assert!(store.session("ef").await.unwrap().is_none());
    assert!(session.is_open(ms(10 * day)) && !session.is_open(ms(10 * day + 3_600_000)));
    assert!(
        store
            .end_session(&session.token_sha256, ms(10 * day + 5))
            .await
            .unwrap()
    );
    assert!(
        !store
            .end_session(&session.token_sha256, ms(10 * day + 6))
            .await
            .unwrap(),
        "ended once"
    );
    let ended = store.session(&session.token_sha256).await.unwrap().unwrap();
    assert_eq!(ended.ended_at, Some(ms(10 * day + 5)));
    assert!(!ended.is_open(ms(10 * day + 6)));
    let unknown_key = SessionEntry {
        token_sha256: "01".repeat(32),
        key_id: "nobody".to_owned(),
        ..session.clone()
    };
    assert!(
        store.create_session(&unknown_key).await.is_err(),
        "a session belongs to a stored key"
    );
    // a new session a week later forgets the ended one
    let later = SessionEntry {
        token_sha256: "23".repeat(32),
        created_at: ms(18 * day),
        expires_at: ms(18 * day + 3_600_000),
        ..session.clone()
    };
    store.create_session(&later).await.unwrap();
    assert!(store.session(&session.token_sha256).await.unwrap().is_none());
    let audit = store.audit("key:k1").await.unwrap();
    assert_eq!(
        audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
        ["key_create", "console_sign_in", "console_sign_out", "console_sign_in"]
    );

    // counts per status, and of the rows after a sequence number
    let rows = [
        decision("a1", 0.95, 1_000, "alice"),
        decision("a2", 0.6, 2_000, "alice"),
        decision("a3", 0.1, 3_000, "alice"),
        decision("b1", 0.7, 2_500, "bob"),
        decision("a4", 0.8, 9_000, "alice"),
    ];
    store.put_decisions(&rows).await.unwrap();
    store
        .review(&ReviewRequest {
            transaction_id: "a2".to_owned(),
            status: ReviewStatus::ConfirmedFraud,
            actor: "ana".to_owned(),
            note: None,
            at: ms(10),
        })
        .await
        .unwrap();
    let counts = store.queue_counts(0).await.unwrap();
    assert_eq!(
        (
            counts.pending_review,
            counts.confirmed_fraud,
            counts.false_positive,
            counts.escalated
        ),
        (3, 1, 0, 0)
    );
    assert_eq!(counts.total(), 4);
    assert_eq!(counts.get(ReviewStatus::ConfirmedFraud), 1);
    let stored = store.transactions_after(0, 10, None).await.unwrap();
    assert_eq!(counts.last_seq, stored.last().unwrap().seq);
    let newer = store.queue_counts(stored[2].seq).await.unwrap();
    assert_eq!((newer.pending_review, newer.total()), (2, 2), "b1 and a4 came after a3");
    let none = store.queue_counts(counts.last_seq).await.unwrap();
    assert_eq!((none.total(), none.last_seq), (0, counts.last_seq));

    // an entity's history: every decision (approvals too), in the window, newest first
    let history = store.entity_history("alice", ms(1_500), ms(9_000), 10).await.unwrap();
    let ids: Vec<_> = history.iter().map(|d| d.decision.transaction_id.as_str()).collect();
    assert_eq!(ids, ["a3", "a2"]);
    assert_eq!(history[1].label, Some(Label::Fraud));
    let capped = store.entity_history("alice", ms(0), ms(100_000), 2).await.unwrap();
    let ids: Vec<_> = capped.iter().map(|d| d.decision.transaction_id.as_str()).collect();
    assert_eq!(ids, ["a4", "a3"]);
    assert!(
        store
            .entity_history("carol", ms(0), ms(100_000), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // the past cases of a case: flagged decisions up to its time, newest first, with their outcome
    let flagged = store.flagged_before(ms(2_500), 10).await.unwrap();
    let ids: Vec<_> = flagged.iter().map(|d| d.decision.transaction_id.as_str()).collect();
    assert_eq!(ids, ["b1", "a2", "a1"], "a3 was approved, a4 is later");
    assert_eq!(flagged[1].decision.review_status, Some(ReviewStatus::ConfirmedFraud));
    assert_eq!(flagged[1].label, Some(Label::Fraud));
    let capped = store.flagged_before(ms(100_000), 2).await.unwrap();
    let ids: Vec<_> = capped.iter().map(|d| d.decision.transaction_id.as_str()).collect();
    assert_eq!(ids, ["a4", "b1"]);

    // a case's narratives, each kept, newest first
    let narrative = NewNarrative {
        transaction_id: "a2".to_owned(),
        created_at: ms(20),
        source: "template".to_owned(),
        model: None,
        recommendation: "escalate".to_owned(),
        assessment: "Flagged for amount [R1]; like [S1] — café ✓".to_owned(),
        citations: vec!["R1".to_owned(), "S1".to_owned()],
        note: Some("the LLM cited S9, which is not evidence".to_owned()),
        evidence: r#"[{"id":"R1","summary":"amount = 950"}]"#.to_owned(),
    };
    let first = store.put_narrative(&narrative).await.unwrap();
    let later = NewNarrative {
        created_at: ms(30),
        source: "llm".to_owned(),
        model: Some("gpt-test".to_owned()),
        note: None,
        ..narrative.clone()
    };
    let second = store.put_narrative(&later).await.unwrap();
    assert!(second > first);
    let kept = store.narratives("a2", 10).await.unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!((kept[0].id, &kept[0].narrative), (second, &later));
    assert_eq!(kept[1].narrative, narrative);
    assert_eq!(store.narratives("a2", 1).await.unwrap().len(), 1);
    assert!(store.narratives("a1", 10).await.unwrap().is_empty());
}

async fn overview_stats_and_related_entities(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let with_terminal = |id: &str, score: f64, time: i64, customer: &str, terminal: &str| NewDecision {
        body: format!(r#"{{"id":"{id}","entities":["{customer}","{terminal}"],"attributes":[]}}"#),
        latency_us: (score * 1000.0) as i64,
        ..decision(id, score, time, customer)
    };
    let hour = 3_600_000;
    store
        .put_decisions(&[
            with_terminal("t1", 0.1, 10, "alice", "term-1"),
            with_terminal("t2", 0.95, 20, "bob", "term-1"),
            with_terminal("t3", 0.6, hour + 5, "carol", "term-1"),
            with_terminal("t4", 0.3, hour + 6, "bob", "term-1"),
            with_terminal("t5", 0.999_999_9, hour + 7, "dave", "term-2"),
            with_terminal("t6", 0.0, 3 * hour, "erin", "term-1"),
        ])
        .await
        .unwrap();
    store
        .put_labels(&[NewLabel {
            transaction_id: "t2".to_owned(),
            label: Label::Fraud,
            source: "chargeback".to_owned(),
            actor: "bank".to_owned(),
            at: ms(50),
        }])
        .await
        .unwrap();

    let stats = store.decision_stats(ms(0), ms(2 * hour), hour).await.unwrap();
    assert_eq!(stats.buckets.len(), 2);
    let (first, second) = (stats.buckets[0], stats.buckets[1]);
    assert_eq!(
        (first.start, first.approve, first.review, first.decline),
        (ms(0), 1, 0, 1)
    );
    assert_eq!((first.fraud, first.legit), (1, 0));
    assert_eq!((first.latency_sum_us, first.latency_max_us), (100 + 950, 950));
    assert_eq!(
        (second.start, second.approve, second.review, second.decline),
        (ms(hour), 1, 1, 1)
    );
    assert_eq!(stats.score_bins.len(), SCORE_BINS);
    assert_eq!(stats.score_bins.iter().sum::<u64>(), 5, "t6 is outside the range");
    assert_eq!(stats.score_bins[2], 1, "0.1 falls in [0.10, 0.15)");
    assert_eq!(stats.score_bins[19], 2, "0.95 and 0.9999999 in the last bin");
    assert_eq!(stats.score_bins[12], 1, "0.6 in [0.60, 0.65)");
    let empty = store.decision_stats(ms(10 * hour), ms(11 * hour), hour).await.unwrap();
    assert!(empty.buckets.is_empty() && empty.score_bins.iter().all(|n| *n == 0));

    // who else used term-1 in the first two hours: bob twice, alice and carol once
    let related = store
        .related_entities(1, "term-1", ms(0), ms(2 * hour), 10)
        .await
        .unwrap();
    let names: Vec<_> = related
        .iter()
        .map(|r| (r.entity.as_str(), r.transactions, r.flagged, r.fraud))
        .collect();
    assert_eq!(names, [("bob", 2, 1, 1), ("alice", 1, 0, 0), ("carol", 1, 1, 0)]);
    assert_eq!(related[0].last_seen, ms(hour + 6));
    assert_eq!(
        store
            .related_entities(1, "term-1", ms(0), ms(2 * hour), 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .related_entities(1, "term-9", ms(0), ms(2 * hour), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .related_entities(5, "term-1", ms(0), ms(2 * hour), 10)
            .await
            .unwrap()
            .is_empty(),
        "no such position"
    );
    let by_customer = store
        .related_entities(0, "dave", ms(0), ms(2 * hour), 10)
        .await
        .unwrap();
    assert_eq!(by_customer.len(), 1);
}

async fn dead_letters_redact_card_numbers(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let letter = |n: i64| DeadLetter {
        at: ms(n),
        source: "api".to_owned(),
        location: format!("line {n}"),
        error: "amount: not a number".to_owned(),
        payload: r#"{"card":"4111 1111 1111 1111","amount":"x"}"#.to_owned(),
    };
    store.put_dead_letters(&[letter(1), letter(2)]).await.unwrap();
    let stored = store.dead_letters(10).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].letter.location, "line 2", "newest first");
    assert_eq!(stored[0].letter.payload, r#"{"card":"[card]","amount":"x"}"#);
}

/// Regression (hardening issue, defect 7): a retried detector batch stored
/// its dead letters again on every attempt (18,533 rows for 21 offsets).
async fn a_kafka_record_is_dead_lettered_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let letter = |source: &str, location: &str| DeadLetter {
        at: ms(1),
        source: source.to_owned(),
        location: location.to_owned(),
        error: "not JSON".to_owned(),
        payload: "x".to_owned(),
    };
    let batch = [
        letter("kafka:tx", "partition 0 offset 7"),
        letter("kafka:tx", "partition 1 offset 7"),
        letter("kafka:labels", "partition 0 offset 7"),
        letter("upload", "line 2"),
    ];
    store.put_dead_letters(&batch).await.unwrap();
    store.put_dead_letters(&batch).await.unwrap();
    // the same offset twice in one call, too
    store
        .put_dead_letters(&[
            letter("kafka:tx", "partition 2 offset 1"),
            letter("kafka:tx", "partition 2 offset 1"),
        ])
        .await
        .unwrap();
    let stored = store.dead_letters(100).await.unwrap();
    let count = |source: &str| stored.iter().filter(|stored| stored.letter.source == source).count();
    assert_eq!((count("kafka:tx"), count("kafka:labels"), count("upload")), (3, 1, 2));
}

async fn data_survives_reopening(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    store.put_decisions(&[decision("d1", 0.6, 1, "c")]).await.unwrap();
    store.close().await;
    let store = open(&db).await;
    assert_eq!(store.count_transactions().await.unwrap(), 1);
    assert!(store.ping().await.is_ok());
    assert_eq!(
        store.backend(),
        if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
}

async fn concurrent_read_then_write_transactions_succeed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    for version in ["v1", "v2"] {
        store
            .register_model(&NewModel {
                version: version.to_owned(),
                path: format!("/models/{version}"),
                summary: "{}".to_owned(),
                feature_names: Vec::new(),
                registered_at: ms(1),
                digest: "d".to_owned(),
            })
            .await
            .unwrap();
    }
    store.put_decisions(&[decision("c1", 0.8, 1, "c")]).await.unwrap();
    // promotions and reviews read, then write: many at once must all succeed
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let version = if i % 2 == 0 { "v1" } else { "v2" };
            store.promote_model(version, ms(i), "admin").await.map(|_| ())?;
            store
                .review(&ReviewRequest {
                    transaction_id: "c1".to_owned(),
                    status: if i % 2 == 0 {
                        ReviewStatus::Escalated
                    } else {
                        ReviewStatus::PendingReview
                    },
                    actor: format!("analyst {i}"),
                    note: None,
                    at: ms(i),
                })
                .await
                .map(|_| ())
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let models = store.models().await.unwrap();
    assert_eq!(models.iter().filter(|m| m.stage == ModelStage::Production).count(), 1);
    assert_eq!(
        store.audit("c1").await.unwrap().len(),
        16,
        "every review is in the audit log"
    );
}

async fn a_rebuild_finds_where_the_recent_rows_start(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    assert_eq!(store.latest_event_time().await.unwrap(), None);
    assert_eq!(store.first_seq_since(ms(0), None).await.unwrap(), None);
    // stored out of time order, as late events are: times 10, 50, 20, 40, 30 (shard a for even times)
    let batch: Vec<_> = [10, 50, 20, 40, 30]
        .iter()
        .map(|time| NewDecision {
            shard: (time % 20 == 0).then(|| "a".to_owned()),
            ..decision(&format!("r{time}"), 0.3, *time, "c")
        })
        .collect();
    store.put_decisions(&batch).await.unwrap();
    let rows = store.transactions_after(0, 10, None).await.unwrap();
    let seq_of = |time: i64| rows.iter().find(|r| r.decision.event_time == ms(time)).unwrap().seq;
    assert_eq!(store.latest_event_time().await.unwrap(), Some(ms(50)));
    assert_eq!(store.first_seq_since(ms(35), None).await.unwrap(), Some(seq_of(50)));
    assert_eq!(store.first_seq_since(ms(15), None).await.unwrap(), Some(seq_of(50)));
    assert_eq!(store.first_seq_since(ms(5), None).await.unwrap(), Some(seq_of(10)));
    assert_eq!(
        store.first_seq_since(ms(30), Some("a")).await.unwrap(),
        Some(seq_of(40))
    );
    assert_eq!(store.first_seq_since(ms(51), None).await.unwrap(), None);
}

/// Comparisons are kept whole, newest first, found by candidate, each with its audit entry.
async fn comparisons_are_recorded_and_audited(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let comparison = |candidate: &str, against: &str, at: i64| NewComparison {
        candidate: candidate.to_owned(),
        against: against.to_owned(),
        at: ms(at),
        actor: "retrain".to_owned(),
        report: format!(r#"{{"candidate":"{candidate}","note":"ünïcode ✓"}}"#),
    };
    let first = store.put_comparison(&comparison("b", "a", 10)).await.unwrap();
    let second = store.put_comparison(&comparison("c", "a", 20)).await.unwrap();
    assert!(second > first);
    let all = store.comparisons(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|entry| entry.id).collect::<Vec<_>>(),
        vec![second, first]
    );
    assert_eq!(all[1].comparison, comparison("b", "a", 10));
    let of_b = store.comparisons(Some("b"), 10).await.unwrap();
    assert_eq!(of_b.len(), 1);
    assert_eq!(of_b[0].comparison.candidate, "b");
    assert!(
        store.comparisons(Some("a"), 10).await.unwrap().is_empty(),
        "a was only compared with"
    );
    store.put_comparison(&comparison("b", "c", 30)).await.unwrap();
    let latest_of_b = store.comparisons(Some("b"), 1).await.unwrap();
    assert_eq!(latest_of_b.len(), 1);
    assert_eq!(latest_of_b[0].comparison.against, "c");
    assert!(store.comparisons(Some("z"), 10).await.unwrap().is_empty());
    let audit = store.audit("model:c").await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "compare");
    assert_eq!(audit[0].before.as_deref(), Some("a"));
}

/// One shadow at a time, never the production model, ended by its promotion;
/// its scores stored once each and read back by event time.
async fn shadow_models_and_their_scores(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    for version in ["v1", "v2", "v3"] {
        store
            .register_model(&NewModel {
                version: version.to_owned(),
                path: format!("/models/{version}"),
                summary: "{}".to_owned(),
                feature_names: Vec::new(),
                registered_at: ms(1),
                digest: "d".to_owned(),
            })
            .await
            .unwrap();
    }
    store.promote_model("v1", ms(2), "admin").await.unwrap();
    let shadows = |models: Vec<ModelEntry>| {
        models
            .into_iter()
            .filter(|m| m.shadow)
            .map(|m| m.version)
            .collect::<Vec<_>>()
    };
    assert!(matches!(
        store.set_shadow(Some("v1"), ms(3), "admin").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.set_shadow(Some("nope"), ms(3), "admin").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.set_shadow(Some("v2"), ms(3), "admin").await.unwrap(), None);
    assert_eq!(shadows(store.models().await.unwrap()), vec!["v2"]);
    assert_eq!(
        store.set_shadow(Some("v3"), ms(4), "admin").await.unwrap().as_deref(),
        Some("v2")
    );
    assert_eq!(shadows(store.models().await.unwrap()), vec!["v3"]);
    let audit = store.audit("model:v3").await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].action.as_str(), audit[0].before.as_deref()),
        ("shadow", Some("v2"))
    );
    // promoting the shadow model ends its shadowing
    let promoted = store.promote_model("v3", ms(5), "admin").await.unwrap();
    assert!(!promoted.shadow);
    assert!(shadows(store.models().await.unwrap()).is_empty());
    store.set_shadow(Some("v2"), ms(6), "admin").await.unwrap();
    assert_eq!(
        store.set_shadow(None, ms(7), "admin").await.unwrap().as_deref(),
        Some("v2")
    );
    assert!(shadows(store.models().await.unwrap()).is_empty());
    let ended = store.audit("model:v2").await.unwrap();
    assert_eq!(
        (
            ended.last().unwrap().before.as_deref(),
            ended.last().unwrap().after.as_deref()
        ),
        (Some("v2"), None)
    );
    // the promotion of v3 ended its shadowing, in its audit trail
    assert!(
        store
            .audit("model:v3")
            .await
            .unwrap()
            .iter()
            .any(|entry| entry.action == "shadow" && entry.after.is_none())
    );
    // the same version again is a new setting
    store.set_shadow(Some("v2"), ms(8), "admin").await.unwrap();
    let since = |models: Vec<ModelEntry>| models.into_iter().find(|m| m.shadow).unwrap().shadow_since;
    let first = since(store.models().await.unwrap());
    assert_eq!(
        store.set_shadow(Some("v2"), ms(9), "admin").await.unwrap().as_deref(),
        Some("v2")
    );
    let again = since(store.models().await.unwrap());
    assert_eq!((first, again), (Some(ms(8)), Some(ms(9))));
    store.set_shadow(None, ms(10), "admin").await.unwrap();

    let score = |id: &str, time: i64, value: f64| ShadowScore {
        model_version: "v2".to_owned(),
        transaction_id: id.to_owned(),
        event_time: ms(time),
        score: value,
        probability: (value < 0.5).then_some(value),
        decision: if value > 0.5 {
            Decision::Review
        } else {
            Decision::Approve
        },
        scored_at: ms(100),
        latency_us: 7,
    };
    // more rows than one insert statement takes, and a remainder of several powers of two
    let many: Vec<_> = (0..450).map(|i| score(&format!("t{i}"), 1_000 + i, 0.25)).collect();
    store.put_shadow_scores(&many).await.unwrap();
    store.put_shadow_scores(&[]).await.unwrap();
    // a score stored again is kept as it was
    store
        .put_shadow_scores(&[score("t0", 1_000, 0.9), score("é ✓", 10, 0.75)])
        .await
        .unwrap();
    let read = store.shadow_scores("v2", ms(0), ms(1_002)).await.unwrap();
    assert_eq!(
        read,
        vec![
            score("é ✓", 10, 0.75),
            score("t0", 1_000, 0.25),
            score("t1", 1_001, 0.25)
        ]
    );
    assert_eq!(store.shadow_scores("v2", ms(0), ms(5_000)).await.unwrap().len(), 451);
    assert!(store.shadow_scores("v3", ms(0), ms(5_000)).await.unwrap().is_empty());
}

/// Shadow scores never wait for the decisions' writer: while another
/// connection holds the decisions' write lock (SQLite: `BEGIN IMMEDIATE` on
/// the store's file; PostgreSQL: a lock on the transactions table), scores
/// are written and read at once.
async fn shadow_scores_do_not_wait_for_the_decisions_writer(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let score = |id: &str| ShadowScore {
        model_version: "v2".to_owned(),
        transaction_id: id.to_owned(),
        event_time: ms(1),
        score: 0.5,
        probability: None,
        decision: Decision::Approve,
        scored_at: ms(2),
        latency_us: 3,
    };
    let held = match db.backend {
        Backend::Sqlite => {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db.url)
                .await
                .unwrap();
            sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
            Box::new(conn) as Box<dyn std::any::Any + Send>
        }
        Backend::Postgres => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
                .await
                .unwrap();
            sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
            sqlx::query("LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE")
                .execute(&mut conn)
                .await
                .unwrap();
            Box::new(conn) as Box<dyn std::any::Any + Send>
        }
    };
    // the decisions wait for the lock; the scores do not (the busy timeout is 10 s)
    let written = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        store.put_shadow_scores(&[score("s1"), score("s2")]),
    )
    .await;
    assert!(matches!(written, Ok(Ok(()))), "{written:?}");
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        store.shadow_scores("v2", ms(0), ms(10)),
    )
    .await;
    assert_eq!(read.unwrap().unwrap().len(), 2);
    let blocked = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        store.put_decisions(&[decision("d1", 0.2, 1, "c")]),
    )
    .await;
    assert!(
        blocked.is_err(),
        "the decision was written past the held lock: {blocked:?}"
    );
    drop(held);
    store.put_decisions(&[decision("d1", 0.2, 1, "c")]).await.unwrap();
    assert!(store.transaction("d1").await.unwrap().is_some());
}

/// The labels of the latest flagged decisions: the precision of what was flagged.
async fn flagged_outcomes_count_the_labels_of_flagged_decisions(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    assert_eq!(store.flagged_outcomes(0).await.unwrap(), FlaggedOutcomes::default());
    let batch = vec![
        decision("f1", 0.95, 1, "c"),
        decision("f2", 0.6, 2, "c"),
        decision("f3", 0.7, 3, "c"),
        decision("f4", 0.8, 4, "c"),
        decision("a1", 0.1, 5, "c"),
    ];
    store.put_decisions(&batch).await.unwrap();
    let label = |id: &str, label: Label| NewLabel {
        transaction_id: id.to_owned(),
        label,
        source: "chargeback".to_owned(),
        actor: "test".to_owned(),
        at: ms(10),
    };
    store
        .put_labels(&[
            label("f1", Label::Fraud),
            label("f2", Label::Fraud),
            label("f3", Label::Legit),
            label("a1", Label::Fraud),
        ])
        .await
        .unwrap();
    let all = store.flagged_outcomes(0).await.unwrap();
    assert_eq!((all.flagged, all.fraud, all.legit), (4, 2, 1));
    assert_eq!(all.precision(), Some(2.0 / 3.0));
    // after the first two stored: f3 (legit) and f4 (unlabelled)
    let rows = store.transactions_after(0, 10, None).await.unwrap();
    let later = store.flagged_outcomes(rows[1].seq).await.unwrap();
    assert_eq!((later.flagged, later.fraud, later.legit), (2, 0, 1));
    assert_eq!(later.precision(), Some(0.0));
}

async fn search_finds_cases_entities_notes_and_narratives(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    store
        .put_decisions(&[
            decision("tx-100", 0.95, 1_000, "alice"),
            decision("tx-101", 0.6, 2_000, "alicia"),
            decision("ty-1", 0.7, 3_000, "bob"),
            decision("tx-1000-late", 0.1, 9_000, "alice"),
        ])
        .await
        .unwrap();
    store
        .review(&ReviewRequest {
            transaction_id: "ty-1".to_owned(),
            status: ReviewStatus::ConfirmedFraud,
            actor: "ana".to_owned(),
            note: Some("Called the bank: card stolen at the station".to_owned()),
            at: ms(10),
        })
        .await
        .unwrap();
    store
        .put_narrative(&NewNarrative {
            transaction_id: "tx-100".to_owned(),
            created_at: ms(20),
            source: "template".to_owned(),
            model: None,
            recommendation: "escalate".to_owned(),
            assessment: "Flagged for the amount [R1], like the skimmer case [S1].".to_owned(),
            citations: vec!["R1".to_owned(), "S1".to_owned()],
            note: None,
            evidence: "[]".to_owned(),
        })
        .await
        .unwrap();
    let kinds = |hits: &[SearchHit]| hits.iter().map(|h| (h.kind, h.subject.clone())).collect::<Vec<_>>();

    // ids by prefix: cases, and entities with their count
    let hits = store.search("tx-10", 10).await.unwrap();
    assert_eq!(
        kinds(&hits),
        [
            (SearchKind::Case, "tx-100".to_owned()),
            (SearchKind::Case, "tx-1000-late".to_owned()),
            (SearchKind::Case, "tx-101".to_owned())
        ]
    );
    let hits = store.search("ali", 10).await.unwrap();
    assert_eq!(
        kinds(&hits),
        [
            (SearchKind::Entity, "alice".to_owned()),
            (SearchKind::Entity, "alicia".to_owned())
        ]
    );
    assert_eq!(hits[0].text, "2 decisions");
    assert_eq!(hits[0].at, ms(9_000));
    assert_eq!(store.search("tx-10", 1).await.unwrap().len(), 1);

    // other audit entries' notes (a key's name, a promotion's) are not searched
    store
        .append_audit(&AuditEntry {
            at: ms(11),
            actor: "admin".to_owned(),
            action: "key_create".to_owned(),
            subject: "key:k9".to_owned(),
            before: None,
            after: None,
            note: Some("stolen station reader".to_owned()),
        })
        .await
        .unwrap();

    // words of review notes and narratives, any case, every word required
    let hits = store.search("STOLEN station", 10).await.unwrap();
    assert_eq!(kinds(&hits), [(SearchKind::Note, "ty-1".to_owned())]);
    assert!(hits[0].text.contains("card stolen"));
    assert!(store.search("stolen airport", 10).await.unwrap().is_empty());
    let hits = store.search("skimmer", 10).await.unwrap();
    assert_eq!(kinds(&hits), [(SearchKind::Narrative, "tx-100".to_owned())]);

    // the search syntax of either backend is never the user's: these are words
    for odd in [
        "\"",
        "stolen\" OR \"",
        "NEAR(stolen station)",
        "* stolen",
        "note:stolen",
        "a AND",
        "'; DROP TABLE x; --",
        "&|!",
    ] {
        store
            .search(odd, 10)
            .await
            .unwrap_or_else(|error| panic!("{odd:?}: {error}"));
    }
    assert!(store.search("   ", 10).await.unwrap().is_empty());
}

macro_rules! suite {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(fraudlens_testkit::Backend::Sqlite).await
            })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(fraudlens_testkit::Backend::Postgres).await
            })+
        }
    };
}

suite!(
    put_is_idempotent_and_batches_dedupe,
    large_batches_commit_whole,
    concurrent_copies_of_one_batch_store_each_id_once,
    shards_replay_their_own_rows,
    queue_filters_sorts_and_pages,
    review_writes_audit_and_label,
    labels_update_known_transactions,
    model_registry_promotes_one_at_a_time,
    model_registry_keeps_the_content_digest,
    promotions_are_announced_on_commit,
    keys_are_created_and_revoked,
    console_sessions_counts_and_entity_history,
    search_finds_cases_entities_notes_and_narratives,
    overview_stats_and_related_entities,
    dead_letters_redact_card_numbers,
    a_kafka_record_is_dead_lettered_once,
    data_survives_reopening,
    concurrent_read_then_write_transactions_succeed,
    a_rebuild_finds_where_the_recent_rows_start,
    comparisons_are_recorded_and_audited,
    shadow_models_and_their_scores,
    shadow_scores_do_not_wait_for_the_decisions_writer,
    flagged_outcomes_count_the_labels_of_flagged_decisions,
);

#[tokio::test]
async fn unknown_urls_are_refused() {
    let error = connect("mysql://x", &StoreOptions::default()).await.err().unwrap();
    assert!(error.to_string().contains("sqlite://"), "{error}");
    // the refusal names the URL, but never its password
    let error = connect("mysql://root:s3cret@db/x", &StoreOptions::default())
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("mysql://root:***@db/x"), "{error}");
    assert!(!error.to_string().contains("s3cret"), "{error}");
}

/// `shadow_scores` as migration 0007 created it in the store's own file.
const OLD_SHADOW_TABLE: &str = "CREATE TABLE shadow_scores (model_version TEXT NOT NULL, transaction_id TEXT NOT NULL, \
     event_time INTEGER NOT NULL, score REAL NOT NULL, probability REAL, decision TEXT NOT NULL, \
     scored_at INTEGER NOT NULL, latency_us INTEGER NOT NULL, PRIMARY KEY (model_version, transaction_id))";

/// A SQLite store that kept its shadow scores in its own file (before they
/// had a file of their own) has them moved on opening: readable as before,
/// and gone from the store's file.
#[tokio::test]
async fn shadow_scores_of_the_store_file_move_to_their_own() {
    let db = TestDb::new(Backend::Sqlite).await;
    open(&db).await.close().await;
    let raw = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    sqlx::query(OLD_SHADOW_TABLE).execute(&raw).await.unwrap();
    sqlx::query("INSERT INTO shadow_scores VALUES ('v9', 'old-1', 5, 0.75, 0.7, 'review', 6, 7)")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;

    let store = open(&db).await;
    let moved = store.shadow_scores("v9", ms(0), ms(10)).await.unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        (moved[0].transaction_id.as_str(), moved[0].decision),
        ("old-1", Decision::Review)
    );
    store.close().await;
    let raw = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'shadow_scores'")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(left, 0, "the store's file still has its shadow_scores table");
    raw.close().await;
    // and opening again finds nothing to move
    let store = open(&db).await;
    assert_eq!(store.shadow_scores("v9", ms(0), ms(10)).await.unwrap().len(), 1);
    store.close().await;

    // a crash between the copy and the drop: the table is there again, with a row already moved
    // (another score for it) and a new one; opening keeps the moved row as it was and adds the new
    let raw = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    sqlx::query(OLD_SHADOW_TABLE).execute(&raw).await.unwrap();
    sqlx::query(
        "INSERT INTO shadow_scores VALUES ('v9', 'old-1', 5, 0.1, NULL, 'approve', 6, 7), \
         ('v9', 'old-2', 8, 0.9, NULL, 'decline', 9, 7)",
    )
    .execute(&raw)
    .await
    .unwrap();
    raw.close().await;
    let store = open(&db).await;
    let moved = store.shadow_scores("v9", ms(0), ms(10)).await.unwrap();
    assert_eq!(moved.len(), 2);
    assert_eq!(
        (moved[0].transaction_id.as_str(), moved[0].decision),
        ("old-1", Decision::Review)
    );
    assert_eq!(
        (moved[1].transaction_id.as_str(), moved[1].decision),
        ("old-2", Decision::Decline)
    );
}

fn flagged(id: &str, time: i64, reasons: &[(&str, f64)]) -> NewDecision {
    let reasons: Vec<serde_json::Value> = reasons
        .iter()
        .map(|(feature, contribution)| serde_json::json!({"feature": feature, "value": 1.0, "contribution": contribution}))
        .collect();
    NewDecision {
        reasons: serde_json::Value::from(reasons).to_string(),
        ..decision(id, 0.7, time, "c")
    }
}

fn ids_of(decisions: &[StoredDecision]) -> Vec<&str> {
    let mut ids: Vec<&str> = decisions.iter().map(|d| d.decision.transaction_id.as_str()).collect();
    ids.sort_unstable();
    ids
}

/// The vector index once it answers (it is built in the background).
async fn nearest_when_ready(store: &dyn Store, at: Timestamp, reasons: &str, limit: u32) -> Vec<StoredDecision> {
    for _ in 0..300 {
        if let Some(found) = store.nearest_flagged(at, reasons, limit, 0).await.unwrap() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the vector index was not ready within 30 s");
}

/// PostgreSQL with pgvector (`scripts/pgvector` installs it): flagged
/// decisions stored before the index was made are filled in; later ones are
/// indexed as they are written, by any path; the nearest by reasons come
/// back, never a decision after the time asked or one not flagged; reasons
/// the index cannot read never fail a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vector_index_finds_cases_flagged_for_the_same_reasons() {
    let db = TestDb::new(Backend::Postgres).await;
    let exact = StoreOptions {
        similar_index: SimilarIndex::Off,
        ..StoreOptions::default()
    };
    let before = connect(&db.url, &exact).await.unwrap();
    before
        .put_decisions(&[
            flagged("old-amount", 1_000, &[("amount", 2.0), ("terminal_risk", 1.0)]),
            flagged("old-velocity", 1_100, &[("tx_count_1d", 3.0)]),
        ])
        .await
        .unwrap();
    let query = r#"[{"feature":"amount","contribution":1.0},{"feature":"terminal_risk","contribution":0.5}]"#;
    assert!(
        before
            .nearest_flagged(ms(10_000), query, 10, 0)
            .await
            .unwrap()
            .is_none(),
        "turned off: no index"
    );
    before.close().await;

    let required = StoreOptions {
        similar_index: SimilarIndex::Pgvector,
        maintain_similar_index: true,
        ..StoreOptions::default()
    };
    let store = connect(&db.url, &required)
        .await
        .expect("pgvector is needed by this test: run scripts/pgvector");
    let found = nearest_when_ready(store.as_ref(), ms(10_000), query, 10).await;
    assert_eq!(ids_of(&found), ["old-amount", "old-velocity"], "filled in from before");

    let mut approved = flagged("approved-amount", 2_000, &[("amount", 1.0)]);
    approved.decision = Decision::Approve;
    approved.review_status = None;
    let mut batch = vec![
        flagged("new-amount", 2_100, &[("amount", 4.0), ("terminal_risk", 2.0)]),
        flagged("half-amount", 2_200, &[("amount", 1.0), ("tx_count_1d", 1.0)]),
        flagged("late-amount", 20_000, &[("amount", 1.0), ("terminal_risk", 0.5)]),
        flagged("tiny", 2_300, &[("amount", 1e-50), ("b", 1e300)]),
        approved,
    ];
    let mut unreadable = flagged("unreadable", 2_400, &[]);
    unreadable.reasons = "not json".to_owned();
    batch.push(unreadable);
    let mut none = flagged("no-reasons", 2_500, &[]);
    none.reasons = "[]".to_owned();
    batch.push(none);
    let outcomes = store.put_decisions(&batch).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == PutOutcome::Inserted), "{outcomes:?}");
    // the COPY path (a large batch) fires the trigger too
    let many: Vec<_> = (0..2_000)
        .map(|i| {
            let spread = (i % 17) as f64;
            flagged(
                &format!("bulk-{i}"),
                3_000 + i,
                &[("merchant_risk", 1.0 + spread), ("hour_risk", 17.0 - spread)],
            )
        })
        .collect();
    store.put_decisions(&many).await.unwrap();

    let found = store.nearest_flagged(ms(10_000), query, 10, 0).await.unwrap().unwrap();
    let ids = ids_of(&found);
    for id in ["old-amount", "new-amount", "half-amount"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    for id in ["late-amount", "approved-amount", "unreadable", "no-reasons"] {
        assert!(!ids.contains(&id), "{id} in {ids:?}");
    }
    assert_eq!(found.len(), 10);
    // the vectors as stored: a contribution too small for a 4-byte float is
    // left out, one too large is clamped; unreadable reasons have none
    let raw = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url);
    let mut raw = raw.await.unwrap();
    let stored = |id: &'static str| {
        sqlx::query_scalar::<_, String>(
            "SELECT v.embedding::text FROM case_vectors v JOIN transactions t USING (seq) WHERE t.transaction_id = $1",
        )
        .bind(id)
    };
    let tiny = stored("tiny").fetch_one(&mut raw).await.unwrap();
    assert!(tiny.starts_with('{') && tiny.ends_with(":1e+30}/1048576"), "{tiny}");
    assert_eq!(tiny.matches(':').count(), 1, "{tiny}");
    assert!(stored("unreadable").fetch_optional(&mut raw).await.unwrap().is_none());
    assert!(
        stored("approved-amount")
            .fetch_optional(&mut raw)
            .await
            .unwrap()
            .is_none()
    );
    let nearest = store.nearest_flagged(ms(10_000), query, 2, 0).await.unwrap().unwrap();
    assert_eq!(
        ids_of(&nearest),
        ["new-amount", "old-amount"],
        "the same reasons, whatever their size"
    );
    assert!(nearest.iter().all(|d| d.decision.body.is_empty()), "no bodies read");
    let bulk = store
        .nearest_flagged(
            ms(100_000),
            r#"[{"feature":"merchant_risk","contribution":0.1}]"#,
            50,
            0,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        bulk.iter().all(|d| d.decision.transaction_id.starts_with("bulk-")),
        "{:?}",
        ids_of(&bulk)
    );
    assert_eq!(bulk.len(), 50);
    assert!(
        store.nearest_flagged(ms(10_000), "[]", 10, 0).await.unwrap().is_none(),
        "no reasons to compare by"
    );
    // as many flagged decisions before the time as the exact search sees: it answers
    assert!(
        store
            .nearest_flagged(ms(10_000), query, 10, 10)
            .await
            .unwrap()
            .is_some(),
        "more than 10 before"
    );
    assert!(
        store.nearest_flagged(ms(2_100), query, 10, 5).await.unwrap().is_none(),
        "old-amount, old-velocity, new-amount: at most 5"
    );

    // more reasons than HNSW takes (1,000): the 1,000 largest are kept, the write is not refused
    let wide: Vec<(String, f64)> = (0..1_200).map(|i| (format!("w{i}"), 1.0 + f64::from(i))).collect();
    let wide: Vec<(&str, f64)> = wide.iter().map(|(name, c)| (name.as_str(), *c)).collect();
    store.put_decisions(&[flagged("wide", 2_600, &wide)]).await.unwrap();
    let entries = stored("wide").fetch_one(&mut raw).await.unwrap();
    // `{dimension:value,…}/1048576`
    let values: Vec<f64> = entries
        .trim_start_matches('{')
        .split('}')
        .next()
        .unwrap()
        .split(',')
        .map(|entry| entry.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(values.len(), 1_000, "the largest 1,000 of 1,200");
    let smallest = values.iter().copied().fold(f64::INFINITY, f64::min);
    let largest = values.iter().copied().fold(0.0, f64::max);
    // 201 to 1,200, but for a collision or two of 1,200 names in 2^20
    // dimensions (one is likely: two contributions summed, one more kept)
    assert!((195.0..=201.0).contains(&smallest), "{smallest}: {entries}");
    assert!(largest >= 1_200.0, "{largest}: {entries}");

    // a writer of another role, without any right on the index's table, is not refused
    let admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url);
    let mut admin = admin.await.unwrap();
    let role = format!("writer_{}", db.url.rsplit('/').next().unwrap());
    for sql in [
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT SELECT, INSERT ON transactions TO {role}"),
        format!("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let as_writer = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(as_writer, db.url);
    let mut writer = <sqlx::PgConnection as sqlx::Connection>::connect(&as_writer)
        .await
        .unwrap();
    let columns = "transaction_id, fingerprint, event_time, received_at, entity, amount_minor, currency, body, \
        score, probability, raw_score, anomaly_score, decision, reasons, features, model_version, latency_us, review_status, shard";
    let copy = format!(
        "INSERT INTO transactions ({columns}) SELECT 'by-writer', 'fp-by-writer', {}",
        columns.replacen("transaction_id, fingerprint, ", "", 1)
    ) + " FROM transactions WHERE transaction_id = 'new-amount'";
    sqlx::raw_sql(sqlx::AssertSqlSafe(copy))
        .execute(&mut writer)
        .await
        .unwrap();
    <sqlx::PgConnection as sqlx::Connection>::close(writer).await.unwrap();
    let nearest = store.nearest_flagged(ms(10_000), query, 3, 0).await.unwrap().unwrap();
    assert!(ids_of(&nearest).contains(&"by-writer"), "{:?}", ids_of(&nearest));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "REVOKE ALL ON transactions FROM {role}; REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}; DROP ROLE {role}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();

    // every process opening the store sees the index; SQLite has none
    let other = connect(&db.url, &StoreOptions::default()).await.unwrap();
    assert_eq!(
        other
            .nearest_flagged(ms(10_000), query, 2, 0)
            .await
            .unwrap()
            .map(|f| f.len()),
        Some(2)
    );

    // the table dropped by hand, the triggers left: writes still go through
    sqlx::raw_sql("DROP TABLE case_vectors")
        .execute(&mut admin)
        .await
        .unwrap();
    store
        .put_decisions(&[flagged("after-drop", 2_700, &[("amount", 1.0)])])
        .await
        .expect("a flagged write with the table gone");
    assert!(store.transaction("after-drop").await.unwrap().is_some());
    let sqlite = TestDb::new(Backend::Sqlite).await;
    let embedded = open(&sqlite).await;
    embedded
        .put_decisions(&[flagged("a", 1, &[("amount", 1.0)])])
        .await
        .unwrap();
    assert!(embedded.nearest_flagged(ms(10), query, 10, 0).await.unwrap().is_none());
}

/// An outsider's pass on the vector index: two `serve`s opening one store
/// at once, times at the ends of the range, feature names with quotes,
/// SQL, emoji or nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vector_index_survives_races_odd_names_and_extreme_times() {
    let db = TestDb::new(Backend::Postgres).await;
    let exact = StoreOptions {
        similar_index: SimilarIndex::Off,
        ..StoreOptions::default()
    };
    let before = connect(&db.url, &exact).await.unwrap();
    let odd = [
        "naïve \"quoted\" 'name'",
        "x'); DROP TABLE transactions; --",
        "🚨 card-testing",
        "",
        "amount",
    ];
    let batch: Vec<_> = (0..300)
        .map(|i| {
            let name = odd[i % odd.len()];
            flagged(
                &format!("odd-{i}"),
                1_000 + i as i64,
                &[(name, 1.0 + (i % 7) as f64), ("base", 0.5)],
            )
        })
        .collect();
    before.put_decisions(&batch).await.unwrap();
    before.close().await;

    // two maintaining processes at once: both open, one index, every vector once
    let maintain = StoreOptions {
        similar_index: SimilarIndex::Pgvector,
        maintain_similar_index: true,
        ..StoreOptions::default()
    };
    let (a, b) = tokio::join!(connect(&db.url, &maintain), connect(&db.url, &maintain));
    let (a, b) = (a.unwrap(), b.unwrap());
    let query = r#"[{"feature":"🚨 card-testing","contribution":2.0}]"#;
    nearest_when_ready(a.as_ref(), ms(100_000), query, 5).await;
    nearest_when_ready(b.as_ref(), ms(100_000), query, 5).await;
    let mut raw = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let vectors: i64 = sqlx::query_scalar("SELECT count(*) FROM case_vectors")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(vectors, 300);
    let indexes: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'case_vectors'")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(indexes, 2, "the key and one HNSW index");

    // each odd name is a feature like any other
    for (n, name) in odd.iter().enumerate() {
        let query = serde_json::json!([{"feature": name, "contribution": 1.0}]).to_string();
        let found = a.nearest_flagged(ms(100_000), &query, 5, 0).await.unwrap().unwrap();
        assert_eq!(found.len(), 5, "{name:?}");
        for decision in &found {
            let i: usize = decision.decision.transaction_id["odd-".len()..].parse().unwrap();
            assert_eq!(i % odd.len(), n, "{name:?}: {}", decision.decision.transaction_id);
        }
    }
    assert_eq!(b.count_transactions().await.unwrap(), 300, "nothing dropped");

    // the ends of time: everything before the far future, nothing before the far past
    let future = a
        .nearest_flagged(Timestamp::from_millis(i64::MAX), query, 10, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(future.len(), 10);
    assert!(
        a.nearest_flagged(Timestamp::from_millis(i64::MIN), query, 10, 0)
            .await
            .unwrap()
            .is_none(),
        "no flagged decision before the far past"
    );
    // a decision dated in the far future is indexed and found only from then
    a.put_decisions(&[flagged("future", i64::MAX / 2, &[("🚨 card-testing", 9.0)])])
        .await
        .unwrap();
    let now = a.nearest_flagged(ms(100_000), query, 300, 0).await.unwrap().unwrap();
    assert!(now.iter().all(|d| d.decision.transaction_id != "future"));
    let later = a
        .nearest_flagged(Timestamp::from_millis(i64::MAX), query, 1, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids_of(&later), ["future"]);
}
