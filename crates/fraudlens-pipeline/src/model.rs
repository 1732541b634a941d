//! A model ready to serve: the artifact plus how requests become its input
//! rows — transactions through the schema and the entity state (event mode),
//! or feature rows as they are (a tabular or imported model).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fraudlens_core::Secret;
use fraudlens_features::FeatureSpec;
use fraudlens_model::artifact::{Artifact, ModelKind};
use fraudlens_model::inputs::{EventInputs, InputSpec};

use crate::PipelineError;
use crate::rows::RowInputs;

/// What a serving model reads.
#[derive(Debug)]
pub enum Reads {
    /// Transactions: schema, feature spec and attribute encoders (event mode).
    Transactions(Box<EventInputs>),
    /// Feature rows (a model trained in tabular mode, or imported).
    Rows(RowInputs),
}

/// A loaded, checked model and how requests become its input rows.
#[derive(Debug)]
pub struct ServingModel {
    /// The artifact.
    pub artifact: Artifact,
    /// What it reads.
    pub reads: Reads,
    /// Where it was loaded from (for a model on object storage: its download).
    pub path: PathBuf,
    /// The object store's URL it was downloaded from (`None`: a local directory).
    pub origin: Option<String>,
    /// Content digest of the files loaded ([`Artifact::load_with_digest`]),
    /// compared with the one the registry took at registration.
    pub digest: String,
}

impl ServingModel {
    /// Loads and checks the artifact at `dir`.
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
        let reads = match &artifact.manifest.inputs {
            InputSpec::Events { .. } => Reads::Transactions(Box::new(
                artifact
                    .manifest
                    .inputs
                    .prepare_events(card_hash_key)
                    .map_err(|error| PipelineError::Model(format!("{}: {error}", path.display())))?,
            )),
            InputSpec::Tabular { encoding } => Reads::Rows(RowInputs::new(encoding.clone())),
        };
        Ok(Self {
            artifact,
            reads,
            path,
            origin: None,
            digest,
        })
    }

    /// The transaction inputs of an event-mode model.
    pub fn events(&self) -> Result<&EventInputs, crate::ScoreError> {
        match &self.reads {
            Reads::Transactions(inputs) => Ok(inputs),
            Reads::Rows(_) => Err(crate::ScoreError::Invalid(
                "the serving model reads feature rows, not transactions".to_owned(),
            )),
        }
    }

    /// The row inputs of a tabular or imported model.
    pub fn rows(&self) -> Option<&RowInputs> {
        match &self.reads {
            Reads::Rows(inputs) => Some(inputs),
            Reads::Transactions(_) => None,
        }
    }

    /// The model's version (its id).
    pub fn version(&self) -> &str {
        &self.artifact.manifest.model_id
    }

    /// The feature spec the entity state is built for (none: the model reads
    /// feature rows and keeps no entity state).
    pub fn spec(&self) -> Option<&Arc<FeatureSpec>> {
        match &self.reads {
            Reads::Transactions(inputs) => Some(&inputs.spec),
            Reads::Rows(_) => None,
        }
    }

    /// `gbdt`, `isolation_forest` or `onnx`.
    pub fn kind(&self) -> &'static str {
        match self.artifact.manifest.kind {
            ModelKind::Gbdt => "gbdt",
            ModelKind::IsolationForest => "isolation_forest",
            ModelKind::Onnx => "onnx",
        }
    }

    /// Whether `other` reads exactly the rows this model reads (the same
    /// inputs, in the same order): a row built for one is a row for the
    /// other (a shadow model, a comparison on stored feature vectors).
    pub fn reads_same_rows(&self, other: &ServingModel) -> bool {
        let (a, b) = (&self.artifact, &other.artifact);
        a.manifest.inputs == b.manifest.inputs
            && a.manifest.feature_names[..a.n_inputs()] == b.manifest.feature_names[..b.n_inputs()]
    }

    /// Whether `other` can replace this model while serving: for transactions,
    /// the same schema and feature spec (the entity state is built for them);
    /// for feature rows, every field clients send now must still be known
    /// (a column the new model sets aside is ignored, one it never saw would
    /// refuse their requests). A change between the two is a restart.
    pub fn check_replacement(&self, other: &ServingModel) -> Result<(), PipelineError> {
        match (&self.reads, &other.reads) {
            (Reads::Transactions(current), Reads::Transactions(new)) => {
                if new.spec.fingerprint() != current.spec.fingerprint() {
                    return Err(PipelineError::Model(format!(
                        "model {} computes other features than the serving model {} (a different feature spec): \
                         restart the server with it to rebuild the entity state",
                        other.version(),
                        self.version()
                    )));
                }
                if new.schema.config() != current.schema.config() {
                    return Err(PipelineError::Model(format!(
                        "model {} reads another schema than the serving model {}",
                        other.version(),
                        self.version()
                    )));
                }
                Ok(())
            }
            (Reads::Rows(current), Reads::Rows(new)) => {
                let refuse = |error: String| {
                    PipelineError::Model(format!(
                        "model {} cannot read the rows of the serving model {}: {error}",
                        other.version(),
                        self.version()
                    ))
                };
                new.knows_all_of(current).map_err(refuse)?;
                // an ONNX model needs every feature: one clients never sent would refuse every row
                if other.artifact.manifest.kind == ModelKind::Onnx
                    && let Some(name) = new
                        .feature_names()
                        .find(|name| !current.feature_names().any(|sent| sent == *name))
                {
                    return Err(refuse(format!(
                        "it needs feature {name:?}, which the serving model does not read (its clients may not send it)"
                    )));
                }
                Ok(())
            }
            (current, _) => Err(PipelineError::Model(format!(
                "model {} reads {} and the serving model {} reads {}: restart the server with it",
                other.version(),
                other.reads.what(),
                self.version(),
                current.what()
            ))),
        }
    }
}

impl Reads {
    /// `transactions` or `feature rows`.
    pub fn what(&self) -> &'static str {
        match self {
            Self::Transactions(_) => "transactions",
            Self::Rows(_) => "feature rows",
        }
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
