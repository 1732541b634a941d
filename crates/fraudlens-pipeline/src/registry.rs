//! The model registry use cases shared by the CLI (`fraudlens models …`,
//! `serve --model`) and the API (`POST /api/v1/models/{version}/promote`):
//! registering a loaded model, loading a registered version with its checks
//! (the artifact is still that version, and its files are the ones
//! registered: the content digest), promoting it, finding the rollback
//! target, and promoting into a running pipeline (hot swap).
//!
//! Callers map [`RegistryError`] to their own answer (an exit code, an HTTP
//! status); the variants keep user faults (not registered, files changed)
//! apart from the store failing.

use std::sync::Arc;

use fraudlens_core::Secret;
use fraudlens_store::{ModelEntry, ModelStage, NewModel, Store, StoreError};

use crate::{Pipeline, PipelineError, ServingModel, artifacts, now};

/// Why a registry use case failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such version in the registry.
    #[error("model version {0:?} is not registered")]
    NotRegistered(String),
    /// No version is in production.
    #[error("no production model in the registry: pass --model DIR (or `fraudlens models promote`)")]
    NoProduction,
    /// A rollback with no earlier production model.
    #[error("no model was in production before")]
    NoPrevious,
    /// The registered artifact does not load (corrupt, missing, unusable).
    #[error("model {version} refused: {error}")]
    Unloadable {
        /// The registered version.
        version: String,
        /// Why it does not load.
        error: PipelineError,
    },
    /// The artifact at the registered path is now another version.
    #[error("the artifact at {path} is version {found}, not {version}")]
    OtherVersion {
        /// The registered version.
        version: String,
        /// The registered path.
        path: String,
        /// The version found there.
        found: String,
    },
    /// The files changed since registration (their content digest differs).
    #[error(
        "model {version} refused: the files at {path} changed since it was registered; \
         register the new content as a new version"
    )]
    ContentChanged {
        /// The registered version.
        version: String,
        /// The registered path.
        path: String,
    },
    /// The model does not fit the running entity state (hot swap refused).
    #[error(transparent)]
    Replacement(PipelineError),
    /// Loading the artifact did not finish (its task failed).
    #[error("loading the model failed")]
    Loading,
    /// The model directory's path cannot be resolved.
    #[error("resolving {path}: {error}")]
    Path {
        /// The directory.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A registry entry for a loaded model (registered now, as staging).
pub fn new_entry(model: &ServingModel) -> Result<NewModel, RegistryError> {
    let manifest = &model.artifact.manifest;
    let path = match &model.origin {
        Some(url) => url.clone(),
        None => std::fs::canonicalize(&model.path)
            .map_err(|error| RegistryError::Path {
                path: model.path.display().to_string(),
                error,
            })?
            .display()
            .to_string(),
    };
    let summary = serde_json::json!({
        "kind": model.kind(),
        "created_at": manifest.created_at,
        // as model.json writes it: RFC 3339 text
        "train_period": manifest
            .training
            .train_period
            .map(|(first, last)| (first.to_string(), last.to_string())),
        "train_rows": manifest.training.train_rows,
        "roc_auc": manifest.validation.as_ref().map(|v| v.roc_auc),
        "average_precision": manifest.validation.as_ref().map(|v| v.average_precision),
    });
    Ok(NewModel {
        version: model.version().to_owned(),
        path,
        summary: summary.to_string(),
        feature_names: manifest.feature_names[..model.artifact.n_inputs()].to_vec(),
        registered_at: now(),
        digest: model.digest.clone(),
    })
}

/// Registers a loaded model (as staging).
pub async fn register(store: &dyn Store, model: &ServingModel) -> Result<(), RegistryError> {
    store.register_model(&new_entry(model)?).await?;
    Ok(())
}

/// Registers a loaded model and makes it the production model unless it is
/// already (`serve --model`, `detect --model`).
pub async fn register_and_promote(store: &dyn Store, model: &ServingModel, actor: &str) -> Result<(), RegistryError> {
    register(store, model).await?;
    let models = store.models().await?;
    let is_production = models
        .iter()
        .any(|m| m.version == model.version() && m.stage == ModelStage::Production);
    if !is_production {
        store.promote_model(model.version(), now(), actor).await?;
    }
    Ok(())
}

/// The registry entry of `version`.
pub async fn entry(store: &dyn Store, version: &str) -> Result<ModelEntry, RegistryError> {
    store
        .models()
        .await?
        .into_iter()
        .find(|m| m.version == version)
        .ok_or_else(|| RegistryError::NotRegistered(version.to_owned()))
}

/// Loads a registry entry's artifact (on a blocking thread), refusing one
/// that is now another version or whose files changed since registration:
/// a promotion or a start must serve what was registered.
pub async fn load(entry: &ModelEntry, card_hash_key: Option<&Secret>) -> Result<ServingModel, RegistryError> {
    let remote = artifacts::is_remote(&entry.path);
    let model = match load_dir(entry, card_hash_key, false).await {
        // a cached download that no longer loads (or is stale) is fetched again, once
        Err(RegistryError::Unloadable { .. }) if remote => load_dir(entry, card_hash_key, true).await?,
        Ok(model) if remote && !entry.content_matches(&model.digest) => load_dir(entry, card_hash_key, true).await?,
        loaded => loaded?,
    };
    if model.version() != entry.version {
        return Err(RegistryError::OtherVersion {
            version: entry.version.clone(),
            path: entry.path.clone(),
            found: model.version().to_owned(),
        });
    }
    // checksums only say the files agree with their SHA256SUMS, which anyone
    // who can edit the files can regenerate; the registry's digest says they
    // are the files that were registered
    if !entry.content_matches(&model.digest) {
        tracing::warn!(
            version = entry.version,
            path = entry.path,
            "model refused: files changed since registration"
        );
        return Err(RegistryError::ContentChanged {
            version: entry.version.clone(),
            path: entry.path.clone(),
        });
    }
    Ok(model)
}

/// Loads the artifact of `entry` from its directory (downloaded first when
/// it is on object storage; again when `refresh`).
async fn load_dir(
    entry: &ModelEntry,
    card_hash_key: Option<&Secret>,
    refresh: bool,
) -> Result<ServingModel, RegistryError> {
    let unloadable = |error: PipelineError| RegistryError::Unloadable {
        version: entry.version.clone(),
        error,
    };
    let digest = entry.digest.as_deref().unwrap_or("");
    let dir = artifacts::local_dir(&entry.path, &entry.version, digest, refresh)
        .await
        .map_err(|error| unloadable(PipelineError::Model(error.to_string())))?;
    let key = card_hash_key.cloned();
    let mut model = tokio::task::spawn_blocking(move || ServingModel::load(&dir, key.as_ref()))
        .await
        .map_err(|_| RegistryError::Loading)?
        .map_err(unloadable)?;
    if artifacts::is_remote(&entry.path) {
        // where it came from, not the cache
        model.origin = Some(entry.path.clone());
    }
    Ok(model)
}

/// Loads (and checks) the production model.
pub async fn production(store: &dyn Store, card_hash_key: Option<&Secret>) -> Result<ServingModel, RegistryError> {
    let models = store.models().await?;
    let production = models
        .iter()
        .find(|m| m.stage == ModelStage::Production)
        .ok_or(RegistryError::NoProduction)?;
    load(production, card_hash_key).await
}

/// Makes a registered version the production model, after checking that its
/// artifact still loads and is what was registered. Running servers and
/// detectors on the store swap to it through their [`crate::ModelWatch`].
pub async fn promote(
    store: &dyn Store,
    version: &str,
    card_hash_key: Option<&Secret>,
    actor: &str,
) -> Result<ServingModel, RegistryError> {
    let model = load(&entry(store, version).await?, card_hash_key).await?;
    store.promote_model(version, now(), actor).await?;
    Ok(model)
}

/// Makes a registered version the shadow model (`None`: ends shadowing),
/// after checking that its artifact loads, is what was registered, and reads
/// exactly the production model's rows. Running servers and detectors on the
/// store follow it through their [`crate::ModelWatch`]. Returns the shadow
/// model before.
pub async fn shadow(
    store: &dyn Store,
    version: Option<&str>,
    card_hash_key: Option<&Secret>,
    actor: &str,
) -> Result<Option<String>, RegistryError> {
    if let Some(version) = version {
        let model = load(&entry(store, version).await?, card_hash_key).await?;
        let production = production(store, card_hash_key).await?;
        check_shadow(&production, &model)?;
    }
    Ok(store.set_shadow(version, now(), actor).await?)
}

/// Whether `model` can shadow `production`.
fn check_shadow(production: &ServingModel, model: &ServingModel) -> Result<(), RegistryError> {
    if model.version() == production.version() {
        return Err(RegistryError::Replacement(PipelineError::Model(format!(
            "model {} is the production model: a shadow scores beside it",
            model.version()
        ))));
    }
    if !production.reads_same_rows(model) {
        return Err(RegistryError::Replacement(PipelineError::Model(format!(
            "model {} reads other inputs than the production model {}: a shadow scores the production \
             model's feature vectors (retrain it with the production model's features)",
            model.version(),
            production.version()
        ))));
    }
    Ok(())
}

/// Who holds which role in the registry now: the production model, the
/// latest compared candidate that is not in production (the challenger),
/// and the shadow model (what MLflow's aliases follow).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    /// The production model.
    pub production: Option<String>,
    /// The candidate of the latest comparison, unless it is in production.
    pub challenger: Option<String>,
    /// The shadow model.
    pub shadow: Option<String>,
}

/// The registry's [`Roles`] now.
pub async fn roles(store: &dyn Store) -> Result<Roles, RegistryError> {
    let models = store.models().await?;
    let production = models
        .iter()
        .find(|m| m.stage == ModelStage::Production)
        .map(|m| m.version.clone());
    let shadow = models.iter().find(|m| m.shadow).map(|m| m.version.clone());
    let challenger = store
        .comparisons(None, 1)
        .await?
        .into_iter()
        .next()
        .map(|entry| entry.comparison.candidate)
        .filter(|candidate| Some(candidate) != production.as_ref());
    Ok(Roles {
        production,
        challenger,
        shadow,
    })
}

/// Where a rollback goes: from the production model (if any) to the model
/// most recently in production before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollback {
    /// The production model now.
    pub from: Option<String>,
    /// The archived model promoted last.
    pub to: String,
}

/// The rollback target ([`promote`] it to roll back).
pub async fn rollback_target(store: &dyn Store) -> Result<Rollback, RegistryError> {
    let models = store.models().await?;
    let from = models
        .iter()
        .find(|m| m.stage == ModelStage::Production)
        .map(|m| m.version.clone());
    let to = models
        .iter()
        .filter(|m| m.stage == ModelStage::Archived && m.promoted_at.is_some())
        .max_by_key(|m| m.promoted_at)
        .ok_or(RegistryError::NoPrevious)?
        .version
        .clone();
    Ok(Rollback { from, to })
}

impl Pipeline {
    /// Makes a registered version the production model and swaps it in: the
    /// artifact is loaded and checked first ([`load`]), and must fit the
    /// running entity state; on any refusal the current model keeps serving
    /// and the registry is unchanged. The store's promotion and the swap
    /// happen under the pipeline's promotion lock, which the registry watcher
    /// ([`crate::ModelWatch`]) takes too: concurrent promotions end with the
    /// store's production model serving.
    pub async fn promote(
        &self,
        version: &str,
        card_hash_key: Option<&Secret>,
        actor: &str,
    ) -> Result<Arc<ServingModel>, RegistryError> {
        let _promoting = self.promoting.lock().await;
        let store = self.store();
        let model = load(&entry(store.as_ref(), version).await?, card_hash_key).await?;
        self.model()
            .check_replacement(&model)
            .map_err(RegistryError::Replacement)?;
        store.promote_model(version, now(), actor).await?;
        self.swap_model(model).map_err(RegistryError::Replacement)?;
        let model = self.model();
        crate::watch::swapped(crate::watch::SwapSource::Api, model.version());
        Ok(model)
    }

    /// Makes a registered version the shadow model of the store and of this
    /// pipeline (`None`: ends shadowing), under the promotion lock; refused
    /// as [`shadow`] refuses, with nothing changed. Returns the shadow model
    /// before.
    pub async fn shadow(
        &self,
        version: Option<&str>,
        card_hash_key: Option<&Secret>,
        actor: &str,
    ) -> Result<Option<String>, RegistryError> {
        let _promoting = self.promoting.lock().await;
        let store = self.store();
        let model = match version {
            Some(version) => {
                let model = load(&entry(store.as_ref(), version).await?, card_hash_key).await?;
                check_shadow(&self.model(), &model)?;
                Some(model)
            }
            None => None,
        };
        let before = store.set_shadow(version, now(), actor).await?;
        self.set_shadow(model).map_err(RegistryError::Replacement)?;
        Ok(before)
    }
}
