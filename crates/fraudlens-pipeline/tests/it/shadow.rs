//! Shadow models (issue 16, item 3): a registered model scores every stored
//! decision beside production without changing any, its scores are stored
//! beside the decisions, every pipeline on the store follows the registry's
//! shadow, and one that reads other inputs is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fraudlens_core::{Decision, Timestamp};
use fraudlens_pipeline::registry::{self, RegistryError};
use fraudlens_pipeline::{ModelWatch, Pipeline, PipelineConfig, ServingModel, WatchConfig};
use fraudlens_store::Store;
use fraudlens_testkit::{Backend, TestDb};
use serde_json::json;

use crate::watch::edited_copy;
use crate::{model, record};

/// A pipeline serving the fixture (registered and promoted) on a fresh store
/// of `backend`, and a shadow candidate `flag-all` registered beside it: the
/// same trees with a review threshold of zero (it flags every transaction).
async fn fixture(backend: Backend, dir: &std::path::Path) -> (TestDb, Arc<dyn Store>, Arc<Pipeline>) {
    let db = TestDb::new(backend).await;
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    let production = model();
    registry::register_and_promote(store.as_ref(), &production, "test")
        .await
        .unwrap();
    let flag_all = edited_copy(dir, "flag-all", |manifest| {
        manifest["thresholds"]["review"] = json!(0.0);
    });
    registry::register(store.as_ref(), &ServingModel::load(&flag_all, None).unwrap())
        .await
        .unwrap();
    let pipeline = Pipeline::start(store.clone(), production, PipelineConfig::default())
        .await
        .unwrap();
    (db, store, pipeline)
}

async fn shadow_scores_and_decisions_stay_the_production_models(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (_db, store, pipeline) = fixture(backend, dir.path()).await;
    let production = pipeline.model().version().to_owned();
    let before = pipeline.shadow(Some("flag-all"), None, "test").await.unwrap();
    assert_eq!(before, None);
    assert_eq!(pipeline.shadow_model().unwrap().version(), "flag-all");
    let mut decisions = Vec::new();
    for idx in 0..40 {
        let scored = pipeline
            .score(&record(
                &format!("sh-{idx}"),
                &format!("c{}", idx % 5),
                5.0 + idx as f64,
                idx * 60,
            ))
            .await
            .unwrap();
        decisions.push(scored.record);
    }
    pipeline.flush_shadow().await;
    let scores = store
        .shadow_scores("flag-all", Timestamp::from_millis(0), Timestamp::from_millis(i64::MAX))
        .await
        .unwrap();
    assert_eq!(scores.len(), decisions.len(), "every stored decision was shadowed");
    let mut approved = 0;
    for decision in &decisions {
        let stored = store.transaction(&decision.transaction_id).await.unwrap().unwrap();
        // the decision is production's, stored as it was answered
        assert_eq!(stored.decision.model_version, production);
        assert_eq!(stored.decision.decision, decision.decision);
        approved += usize::from(decision.decision == Decision::Approve);
        let shadow = scores
            .iter()
            .find(|score| score.transaction_id == decision.transaction_id)
            .unwrap();
        // the same trees on the same stored vector: the same score, and the shadow's own thresholds
        assert_eq!(shadow.score.to_bits(), decision.score.to_bits());
        assert_eq!(shadow.event_time, decision.event_time);
        assert!(shadow.decision.is_flagged(), "{shadow:?}");
    }
    assert!(
        approved > 0,
        "production approved some: the shadow's flags changed none of them"
    );
    // ended: later decisions are not shadowed
    pipeline.shadow(None, None, "test").await.unwrap();
    pipeline.score(&record("sh-after", "c1", 3.0, 3_000)).await.unwrap();
    pipeline.flush_shadow().await;
    assert_eq!(
        store
            .shadow_scores("flag-all", Timestamp::from_millis(0), Timestamp::from_millis(i64::MAX))
            .await
            .unwrap()
            .len(),
        decisions.len()
    );
    pipeline.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_scores_beside_production_on_sqlite() {
    shadow_scores_and_decisions_stay_the_production_models(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_scores_beside_production_on_postgres() {
    shadow_scores_and_decisions_stay_the_production_models(Backend::Postgres).await;
}

/// Waits (at most 10 s) until `pipeline`'s shadow is `version`.
async fn shadowed_within(pipeline: &Pipeline, version: Option<&str>) {
    let started = Instant::now();
    while pipeline
        .shadow_model()
        .as_ref()
        .map(|model| model.version().to_owned())
        .as_deref()
        != version
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "shadow {version:?} not followed within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pipeline_follows_the_registrys_shadow_and_refuses_one_of_other_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, store, pipeline) = fixture(Backend::Sqlite, dir.path()).await;
    let watch = ModelWatch::start(
        pipeline.clone(),
        WatchConfig {
            poll_interval: Duration::from_millis(50),
            card_hash_key: None,
        },
    );
    // set through the registry (the CLI's way), not through this pipeline
    registry::shadow(store.as_ref(), Some("flag-all"), None, "cli")
        .await
        .unwrap();
    shadowed_within(&pipeline, Some("flag-all")).await;
    registry::shadow(store.as_ref(), None, None, "cli").await.unwrap();
    shadowed_within(&pipeline, None).await;

    // the production model cannot shadow itself; a version not registered is not found
    let production = pipeline.model().version().to_owned();
    assert!(matches!(
        registry::shadow(store.as_ref(), Some(&production), None, "cli").await,
        Err(RegistryError::Replacement(_))
    ));
    assert!(matches!(
        registry::shadow(store.as_ref(), Some("nope"), None, "cli").await,
        Err(RegistryError::NotRegistered(_))
    ));
    // a model of another schema (amounts in another default currency) reads other rows: refused, nothing set
    let other_schema = edited_copy(dir.path(), "other-schema", |manifest| {
        manifest["inputs"]["schema"]["default_currency"] = json!("USD");
    });
    let other_schema = ServingModel::load(&other_schema, None).unwrap();
    registry::register(store.as_ref(), &other_schema).await.unwrap();
    let refused = registry::shadow(store.as_ref(), Some("other-schema"), None, "cli").await;
    assert!(
        matches!(&refused, Err(RegistryError::Replacement(error)) if error.to_string().contains("other inputs")),
        "{refused:?}"
    );
    assert!(pipeline.shadow(Some("other-schema"), None, "api").await.is_err());
    assert!(store.models().await.unwrap().iter().all(|m| !m.shadow));
    assert!(pipeline.shadow_model().is_none());
    watch.stop().await;
    pipeline.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoting_the_shadow_model_ends_its_shadowing_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, store, pipeline) = fixture(Backend::Sqlite, dir.path()).await;
    pipeline.shadow(Some("flag-all"), None, "test").await.unwrap();
    // no registry watcher runs: the promotion itself ends it
    pipeline.promote("flag-all", None, "test").await.unwrap();
    assert_eq!(pipeline.model().version(), "flag-all");
    assert!(pipeline.shadow_model().is_none());
    assert!(store.models().await.unwrap().iter().all(|m| !m.shadow));
    pipeline.score(&record("after-promotion", "c1", 3.0, 60)).await.unwrap();
    pipeline.flush_shadow().await;
    let scores = store
        .shadow_scores("flag-all", Timestamp::from_millis(0), Timestamp::from_millis(i64::MAX))
        .await
        .unwrap();
    assert!(scores.is_empty(), "the serving model scored beside itself: {scores:?}");
    pipeline.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_of_traffic_gets_its_scores_written_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, store, pipeline) = fixture(Backend::Sqlite, dir.path()).await;
    pipeline.shadow(Some("flag-all"), None, "test").await.unwrap();
    let stored = || async {
        store
            .shadow_scores("flag-all", Timestamp::from_millis(0), Timestamp::from_millis(i64::MAX))
            .await
            .unwrap()
            .len()
    };
    // a decision every 300 ms, never a second of silence: the first scores are written meanwhile
    let started = Instant::now();
    let mut idx = 0;
    while stored().await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no score written after {idx} decisions in 20 s"
        );
        pipeline
            .score(&record(&format!("trickle-{idx}"), "c2", 4.0, 600 + idx))
            .await
            .unwrap();
        idx += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(idx >= 1);
    pipeline.shutdown().await.unwrap();
}

/// The rolling precision of flagged decisions (issue 16, item 4), here with
/// a production model that flags everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_precision_of_flagged_decisions_follows_the_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, store, pipeline) = fixture(Backend::Sqlite, dir.path()).await;
    pipeline.promote("flag-all", None, "test").await.unwrap();
    for idx in 0..6 {
        pipeline
            .score(&record(&format!("flagged-{idx}"), "c3", 7.0, 1_200 + idx))
            .await
            .unwrap();
    }
    let outcomes = pipeline.flagged_outcomes().await.unwrap();
    assert_eq!((outcomes.flagged, outcomes.precision()), (6, None));
    let label = |id: &str, label| fraudlens_store::NewLabel {
        transaction_id: id.to_owned(),
        label,
        source: "review".to_owned(),
        actor: "analyst".to_owned(),
        at: fraudlens_pipeline::now(),
    };
    use fraudlens_core::Label::{Fraud, Legit};
    store
        .put_labels(&[
            label("flagged-0", Fraud),
            label("flagged-1", Fraud),
            label("flagged-2", Fraud),
            label("flagged-3", Legit),
        ])
        .await
        .unwrap();
    let outcomes = pipeline.flagged_outcomes().await.unwrap();
    assert_eq!((outcomes.flagged, outcomes.fraud, outcomes.legit), (6, 3, 1));
    assert_eq!(outcomes.precision(), Some(0.75));
    pipeline.shutdown().await.unwrap();
}
