//! A model ready to serve: the artifact plus its parsed event-mode inputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fraudlens_core::Secret;
use fraudlens_features::FeatureSpec;
use fraudlens_model::artifact::{Artifact, ModelKind};
use fraudlens_model::inputs::EventInputs;

use crate::PipelineError;

/// A loaded, checked model and how transactions become its input rows.
#[derive(Debug)]
pub struct ServingModel {
    /// The artifact.
    pub artifact: Artifact,
    /// Schema, feature spec and attribute encoders.
    pub inputs: EventInputs,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Content digest of the files loaded ([`Artifact::load_with_digest`]),
    /// compared with the one the registry took at registration.
    pub digest: String,
}

impl ServingModel {
    /// Loads and checks the artifact at `dir`. Only event-mode models can be
    /// served (they read transactions); a tabular model is refused.
    pub fn load(dir: &Path, card_hash_key: Option<&Secret>) -> Result<Self, PipelineError> {
        let (artifact, digest) =
            Artifact::load_with_digest(dir).map_err(|error| PipelineError::Model(error.to_string()))?;
        Self::new(artifact, dir.to_owned(), digest, card_hash_key)
    }

    /// Wraps an artifact already in memory, loaded from `path` with content `digest`.
    pub fn new(
        artifact: Artifact,
        path: PathBuf,
        digest: String,
        card_hash_key: Option<&Secret>,
    ) -> Result<Self, PipelineError> {
        let inputs = artifact
            .manifest
            .inputs
            .prepare_events(card_hash_key)
            .map_err(|error| PipelineError::Model(format!("{}: {error}", path.display())))?;
        Ok(Self {
            artifact,
            inputs,
            path,
            digest,
        })
    }

    /// The model's version (its id).
    pub fn version(&self) -> &str {
        &self.artifact.manifest.model_id
    }

    /// The feature spec the entity state is built for.
    pub fn spec(&self) -> &Arc<FeatureSpec> {
        &self.inputs.spec
    }

    /// `gbdt` or `isolation_forest`.
    pub fn kind(&self) -> &'static str {
        match self.artifact.manifest.kind {
            ModelKind::Gbdt => "gbdt",
            ModelKind::IsolationForest => "isolation_forest",
        }
    }

    /// Whether `other` can replace this model without rebuilding the entity
    /// state: same schema and the same feature spec.
    pub fn check_replacement(&self, other: &ServingModel) -> Result<(), PipelineError> {
        if other.spec().fingerprint() != self.spec().fingerprint() {
            return Err(PipelineError::Model(format!(
                "model {} computes other features than the serving model {} (a different feature spec): \
                 restart the server with it to rebuild the entity state",
                other.version(),
                self.version()
            )));
        }
        if other.inputs.schema.config() != self.inputs.schema.config() {
            return Err(PipelineError::Model(format!(
                "model {} reads another schema than the serving model {}",
                other.version(),
                self.version()
            )));
        }
        Ok(())
    }
}

/// Publishes the serving model as an info metric
/// (`fraudlens_model_info{version, kind} 1`); the series of the model it
/// replaces drops to 0. Exactly one series reads 1 after any sequence of
/// calls: the reset names the previous series with every one of its labels
/// (a reset without `kind` would land on another series and leave the old one
/// at 1). Called at start by the processes and by every swap
/// ([`crate::Pipeline::swap_model`]), which the promotion lock serialises, so
/// the series at 1 is the model serving.
pub fn publish_model_info(model: &ServingModel) {
    static CURRENT: std::sync::Mutex<Option<(String, &'static str)>> = std::sync::Mutex::new(None);
    let mut current = CURRENT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((version, kind)) = current.take() {
        metrics::gauge!("fraudlens_model_info", "version" => version, "kind" => kind).set(0.0);
    }
    metrics::gauge!("fraudlens_model_info", "version" => model.version().to_owned(), "kind" => model.kind()).set(1.0);
    *current = Some((model.version().to_owned(), model.kind()));
}
