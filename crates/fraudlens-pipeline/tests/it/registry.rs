//! The registry use cases: register, promote with the content check, roll back.

use fraudlens_pipeline::registry::{self, RegistryError};
use fraudlens_store::{ModelStage, NewModel, Store as _};

use crate::{Fixture, model};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_promote_and_roll_back() {
    let fixture = Fixture::new(false).await;
    let store = fixture.store.as_ref();
    let model = model();
    let version = model.version().to_owned();
    assert!(matches!(
        registry::production(store, None).await,
        Err(RegistryError::NoProduction)
    ));
    registry::register(store, &model).await.unwrap();
    // the summary's training period is the text model.json holds
    let summary: serde_json::Value = serde_json::from_str(&store.models().await.unwrap()[0].summary).unwrap();
    assert_eq!(
        summary["train_period"],
        serde_json::json!(["2026-01-01T00:35:55Z", "2026-02-02T10:38:31Z"])
    );
    assert!(matches!(
        registry::promote(store, "nope", None, "test").await,
        Err(RegistryError::NotRegistered(version)) if version == "nope"
    ));
    registry::promote(store, &version, None, "test").await.unwrap();
    assert_eq!(registry::production(store, None).await.unwrap().version(), version);
    assert!(matches!(
        registry::rollback_target(store).await,
        Err(RegistryError::NoPrevious)
    ));

    // the same files registered as another version, promoted: the first is the rollback target
    let mut other = registry::new_entry(&model).unwrap();
    other.version = "other".to_owned();
    store.register_model(&other).await.unwrap();
    store
        .promote_model("other", fraudlens_pipeline::now(), "test")
        .await
        .unwrap();
    let rollback = registry::rollback_target(store).await.unwrap();
    assert_eq!(rollback.from.as_deref(), Some("other"));
    assert_eq!(rollback.to, version);
    // but "other" itself does not load as what was registered: its files say another version
    assert!(matches!(
        registry::promote(store, "other", None, "test").await,
        Err(RegistryError::OtherVersion { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_changed_since_registration_are_refused_and_nothing_changes() {
    let fixture = Fixture::new(false).await;
    let store = fixture.store.as_ref();
    let model = model();
    let entry = registry::new_entry(&model).unwrap();
    // registered with another content digest than the files now have
    store
        .register_model(&NewModel {
            digest: "0".repeat(64),
            ..entry
        })
        .await
        .unwrap();
    let refused = fixture.pipeline.promote(model.version(), None, "test").await;
    assert!(
        matches!(refused, Err(RegistryError::ContentChanged { .. })),
        "{refused:?}"
    );
    let models = store.models().await.unwrap();
    assert_eq!(models[0].stage, ModelStage::Staging, "not promoted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_promotion_swaps_the_serving_model() {
    let fixture = Fixture::new(false).await;
    let store = fixture.store.as_ref();
    let model = model();
    registry::register(store, &model).await.unwrap();
    let serving = fixture.pipeline.promote(model.version(), None, "test").await.unwrap();
    assert_eq!(serving.version(), model.version());
    let models = store.models().await.unwrap();
    assert_eq!(models[0].stage, ModelStage::Production);
}
