//! Rows from the stored decisions (the label rule, the stored vectors, the
//! replay of the stored transactions) and comparisons on them, in process.

use fraudlens_core::{Label, Timestamp};
use fraudlens_features::EventTimePolicy;
use fraudlens_model::compare::{CompareSettings, Metric};
use fraudlens_pipeline::retrain::{self, Window};
use fraudlens_pipeline::{Reads, registry};
use fraudlens_store::{NewLabel, Store as _};

use crate::{Fixture, model, record};

const HOUR_S: i64 = 3_600;
const DAY_MS: i64 = 86_400_000;

fn label(id: &str, label: Label) -> NewLabel {
    NewLabel {
        transaction_id: id.to_owned(),
        label,
        source: "chargeback".to_owned(),
        actor: "test".to_owned(),
        at: fraudlens_pipeline::now(),
    }
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|value| value.to_bits()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_rows_follow_the_label_rule_and_a_replay_reproduces_the_stored_vectors() {
    let fixture = Fixture::new(false).await;
    let store = fixture.store.as_ref();
    // 72 transactions, one an hour over three days, four customers
    for idx in 0..72 {
        let tx = record(
            &format!("tx-{idx}"),
            &format!("cust-{}", idx % 4),
            10.0 + idx as f64,
            (idx - 75) * HOUR_S,
        );
        fixture.pipeline.score(&tx).await.unwrap();
    }
    // chargebacks and a review, after the traffic (the stored vectors saw none of them)
    let labels = [
        label("tx-5", Label::Fraud),
        label("tx-6", Label::Legit),
        label("tx-70", Label::Fraud),
    ];
    store.put_labels(&labels).await.unwrap();

    let model = model();
    let Reads::Transactions(inputs) = &model.reads else {
        panic!("the fixture reads transactions")
    };
    let names = model.artifact.manifest.feature_names[..model.artifact.n_inputs()].to_vec();
    let newest = store.latest_event_time().await.unwrap().unwrap();
    let policy = EventTimePolicy::default();
    let now = fraudlens_pipeline::now_ms();
    let matured = retrain::maturity_cutoff(store, DAY_MS, &policy, now).await.unwrap();
    assert_eq!(matured.as_millis(), newest.as_millis() - DAY_MS);
    // the newest stored event counts no later than the policy lets an event be (a row dated
    // years ahead, stored before the policy, cannot mature every other)
    let strict = EventTimePolicy {
        max_future_ms: Some(60_000),
        ..EventTimePolicy::default()
    };
    let earlier = newest.as_millis() - 2 * DAY_MS;
    assert_eq!(
        retrain::maturity_cutoff(store, DAY_MS, &strict, earlier)
            .await
            .unwrap()
            .as_millis(),
        earlier + 60_000 - DAY_MS
    );
    let window = Window {
        from: Timestamp::from_millis(newest.as_millis() - 4 * DAY_MS),
        to: Timestamp::from_millis(newest.as_millis() + 1),
    };

    // the model that decided is not registered: its vectors cannot be vouched for
    let unregistered = retrain::stored_rows(store, &model.artifact.manifest.inputs, &names, window, matured)
        .await
        .unwrap();
    assert_eq!(unregistered.table.len(), 0);
    assert_eq!(unregistered.counts.other_inputs.values().sum::<u64>(), 72);
    let replayed = retrain::rows_for(store, &model, window, matured).await.unwrap();
    assert!(replayed.counts.replayed);

    registry::register(store, &model).await.unwrap();
    let rows = retrain::stored_rows(store, &model.artifact.manifest.inputs, &names, window, matured)
        .await
        .unwrap();
    let counts = &rows.counts;
    assert_eq!(counts.in_window, 72);
    // the last day (tx-47, dated at the cutoff, on: 25 transactions) is too recent, labelled or not (tx-70)
    assert_eq!(
        (counts.immature, counts.fraud, counts.legit, counts.matured),
        (25, 1, 1, 45)
    );
    assert!(counts.other_inputs.is_empty() && !counts.replayed);
    assert_eq!(rows.table.len(), 47);
    assert_eq!(rows.table.frauds(), 1);
    assert!(
        rows.table.times.windows(2).all(|pair| pair[0] <= pair[1]),
        "rows in time order"
    );
    assert_eq!(rows.table.amounts[0], 10.0, "amounts in major units");

    // replaying the stored transactions through the model's own inputs gives the stored
    // vectors bit for bit (no label became known inside the window: the spec's delay is 7d)
    assert_eq!(bits(&replayed.table.values), bits(&rows.table.values));
    assert_eq!(replayed.table.labels, rows.table.labels);
    assert_eq!(replayed.table.entities, rows.table.entities);
    // one replay computes several models' rows of the same transactions, in the same order
    let (tables, again) = retrain::replayed_rows(store, &[inputs.as_ref(), inputs.as_ref()], window, matured)
        .await
        .unwrap();
    assert_eq!(tables.len(), 2);
    for table in &tables {
        assert_eq!(bits(&table.values), bits(&rows.table.values));
        assert_eq!(table.times, rows.table.times);
    }
    assert_eq!(
        (again.immature, again.fraud, again.legit, again.matured),
        (25, 1, 1, 45)
    );
    // every stored decision was made by a registered model with the same inputs: the stored vectors
    assert!(
        !retrain::rows_for(store, &model, window, matured)
            .await
            .unwrap()
            .counts
            .replayed
    );

    // a window that ends before it starts is refused
    assert!(matches!(
        Window::new(window.to, window.from),
        Err(retrain::RetrainError::EmptyWindow { .. })
    ));

    // a model compared with itself gains nothing and is not promoted
    let settings = CompareSettings {
        resamples: 100,
        ..CompareSettings::default()
    };
    let report = retrain::compare(store, &model, &model, window, matured, false, &settings)
        .await
        .unwrap();
    assert_eq!(report.counts.rows(), 47);
    assert!(report.comparison.metrics.iter().all(|metric| metric.difference == 0.0));
    assert!(!report.comparison.verdict(Metric::AveragePrecision, 0.0).promote);
    // a window inside the model's training is refused unless asked for
    let trained_to = model.artifact.seen_until().unwrap();
    let early = Window {
        from: Timestamp::from_millis(trained_to.as_millis() - DAY_MS),
        to: window.to,
    };
    assert!(matches!(
        retrain::compare(store, &model, &model, early, matured, false, &settings).await,
        Err(retrain::RetrainError::Overlap { .. })
    ));
}
