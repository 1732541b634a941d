//! The one way to build an [`Artifact`]: a constructor per kind of model (a
//! trained GBDT, an isolation forest alone, a model imported from LightGBM or
//! XGBoost). Each fills in what every manifest shares — the format and
//! fraudlens versions, the creation time, a model id derived from the model's
//! own bytes, the feature names and kinds its inputs produce, the gain
//! importance of its trees — and checks that the parts agree, so no caller
//! writes a manifest by hand.

use fraudlens_core::Timestamp;
use fraudlens_core::tabular::{ColumnKind, TabularEncoding, TabularFeature};

use super::{
    ANOMALY_FEATURE, Artifact, FORMAT_VERSION, Manifest, ModelKind, OnnxManifest, TrainingSummary, sha256_hex,
};
use crate::calibration::Calibration;
use crate::iforest::IsolationForest;
use crate::inputs::InputSpec;
use crate::interop::Imported;
use crate::metrics::Evaluation;
use crate::onnx::OnnxModel;
use crate::threshold::{ThresholdChoice, Thresholds};
use crate::train::{FeatureKind, GbdtParams};
use crate::tree::Node;
use crate::{Forest, ModelError};

/// What a trained GBDT artifact is made of.
#[derive(Clone, Debug)]
pub struct GbdtParts {
    /// How input rows are built (without the anomaly score).
    pub inputs: InputSpec,
    /// The parameters the trees were trained with.
    pub params: GbdtParams,
    /// The trees.
    pub forest: Forest,
    /// The isolation forest whose score is the trees' last input, if any.
    pub anomaly: Option<IsolationForest>,
    /// Maps raw scores to probabilities.
    pub calibration: Calibration,
    /// The thresholds and how they were chosen.
    pub threshold_choice: ThresholdChoice,
    /// The training run.
    pub training: TrainingSummary,
    /// Metrics on the validation rows.
    pub validation: Evaluation,
}

/// What an unsupervised (isolation forest alone) artifact is made of.
#[derive(Clone, Debug)]
pub struct IsolationForestParts {
    /// How input rows are built.
    pub inputs: InputSpec,
    /// The `[train.gbdt]` parameters in effect, recorded as every manifest
    /// records them (the forest's own parameters are in `anomaly.json`).
    pub params: GbdtParams,
    /// The forest.
    pub anomaly: IsolationForest,
    /// Review and decline thresholds on the anomaly score.
    pub thresholds: Thresholds,
    /// The fitting run.
    pub training: TrainingSummary,
}

impl Artifact {
    /// A trained GBDT (optionally with an isolation forest's score as an
    /// input); its id derives from the trees.
    pub fn gbdt(parts: GbdtParts, created_at: Timestamp) -> Result<Self, ModelError> {
        let trees_json = serde_json::to_vec(parts.forest.data())
            .map_err(|error| ModelError::invalid(format!("serialising the trees: {error}")))?;
        let (mut feature_names, mut feature_kinds) = names_and_kinds(&parts.inputs)?;
        if parts.anomaly.is_some() {
            feature_names.push(ANOMALY_FEATURE.to_owned());
            feature_kinds.push(FeatureKind::Numeric);
        }
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            fraudlens_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: created_at.to_string(),
            model_id: model_id("gbdt", &trees_json),
            kind: ModelKind::Gbdt,
            inputs: parts.inputs,
            feature_names,
            feature_kinds,
            params: parts.params,
            calibration: parts.calibration,
            thresholds: parts.threshold_choice.thresholds,
            threshold_choice: Some(parts.threshold_choice),
            training: parts.training,
            validation: Some(parts.validation),
            gain_importance: Vec::new(),
            tuning: None,
            anomaly_input: parts.anomaly.is_some(),
            onnx: None,
            reference: None,
        };
        checked(Artifact {
            manifest,
            forest: Some(parts.forest),
            anomaly: parts.anomaly,
            onnx: None,
        })
        .map(with_gain_importance)
    }

    /// An isolation forest alone, deciding on its anomaly score; its id
    /// derives from the forest.
    pub fn isolation_forest(parts: IsolationForestParts, created_at: Timestamp) -> Result<Self, ModelError> {
        let anomaly_json = serde_json::to_vec(&parts.anomaly)
            .map_err(|error| ModelError::invalid(format!("serialising the isolation forest: {error}")))?;
        let (feature_names, feature_kinds) = names_and_kinds(&parts.inputs)?;
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            fraudlens_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: created_at.to_string(),
            model_id: model_id("iforest", &anomaly_json),
            kind: ModelKind::IsolationForest,
            inputs: parts.inputs,
            feature_names,
            feature_kinds,
            params: parts.params,
            calibration: Calibration::Identity,
            thresholds: parts.thresholds,
            threshold_choice: None,
            training: parts.training,
            validation: None,
            gain_importance: Vec::new(),
            tuning: None,
            anomaly_input: false,
            onnx: None,
            reference: None,
        };
        checked(Artifact {
            manifest,
            forest: None,
            anomaly: Some(parts.anomaly),
            onnx: None,
        })
    }

    /// A model trained by another library, read from `file` (its bytes) named
    /// `data_source`. It reads a tabular row whose numeric columns carry the
    /// model's feature names; its probabilities are the library's own (no
    /// calibration). Its id and data fingerprint derive from the file.
    pub fn imported(
        imported: Imported,
        file: &[u8],
        data_source: String,
        thresholds: Thresholds,
        created_at: Timestamp,
    ) -> Result<Self, ModelError> {
        let n_trees = imported.forest.n_trees();
        let mut manifest = imported_manifest(
            ModelKind::Gbdt,
            model_id("imported", file),
            imported.feature_names,
            file,
            data_source,
            thresholds,
            created_at,
        );
        manifest.params.n_trees = n_trees;
        manifest.training.best_round = n_trees;
        checked(Artifact {
            manifest,
            forest: Some(imported.forest),
            anomaly: None,
            onnx: None,
        })
        .map(with_gain_importance)
    }

    /// An ONNX model (`bytes`, read as [`OnnxModel::load`] does) over the
    /// numeric features `feature_names`, in that order; `medians` (one per
    /// feature, `None` when unknown) are what occlusion sets a feature to for
    /// the reasons. Its probabilities are the model's own (no calibration).
    #[allow(clippy::too_many_arguments)]
    pub fn onnx(
        bytes: &[u8],
        feature_names: Vec<String>,
        output: Option<&str>,
        medians: Vec<Option<f64>>,
        data_source: String,
        thresholds: Thresholds,
        created_at: Timestamp,
    ) -> Result<Self, ModelError> {
        let model = OnnxModel::load(bytes, feature_names.len(), output)?;
        if medians.len() != feature_names.len() {
            return Err(ModelError::invalid(format!(
                "{} medians for {} features",
                medians.len(),
                feature_names.len()
            )));
        }
        // the same file read with other feature names or references is another model
        let mut identity = bytes.to_vec();
        identity.extend(serde_json::to_vec(&(&feature_names, &medians, model.output())).unwrap_or_default());
        let mut manifest = imported_manifest(
            ModelKind::Onnx,
            model_id("onnx", &identity),
            feature_names,
            bytes,
            data_source,
            thresholds,
            created_at,
        );
        manifest.params.n_trees = 0;
        manifest.onnx = Some(OnnxManifest {
            output: model.output().to_owned(),
            medians,
        });
        checked(Artifact {
            manifest,
            forest: None,
            anomaly: None,
            onnx: Some(model),
        })
    }
}

/// The manifest of a model trained elsewhere: numeric tabular inputs named
/// `feature_names`, the library's own probabilities, no training summary
/// beyond the file's fingerprint.
fn imported_manifest(
    kind: ModelKind,
    model_id: String,
    feature_names: Vec<String>,
    file: &[u8],
    data_source: String,
    thresholds: Thresholds,
    created_at: Timestamp,
) -> Manifest {
    let features = feature_names
        .iter()
        .map(|name| TabularFeature {
            name: name.clone(),
            kind: ColumnKind::Numeric,
        })
        .collect();
    Manifest {
        format_version: FORMAT_VERSION,
        fraudlens_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: created_at.to_string(),
        model_id,
        kind,
        inputs: InputSpec::Tabular {
            encoding: TabularEncoding {
                format_version: TabularEncoding::FORMAT_VERSION,
                label: None,
                features,
                excluded: Vec::new(),
            },
        },
        gain_importance: Vec::new(),
        tuning: None,
        feature_kinds: vec![FeatureKind::Numeric; feature_names.len()],
        feature_names,
        params: GbdtParams::default(),
        calibration: Calibration::Identity,
        thresholds,
        threshold_choice: None,
        training: TrainingSummary {
            data_fingerprint: sha256_hex(file),
            data_source,
            train_rows: 0,
            train_frauds: 0,
            valid_rows: 0,
            valid_frauds: 0,
            train_period: None,
            valid_period: None,
            best_round: 0,
            rounds: Vec::new(),
            brier_uncalibrated: None,
            train_seconds: 0.0,
            refit: None,
        },
        validation: None,
        anomaly_input: false,
        onnx: None,
        reference: None,
    }
}

/// `PREFIX-` and the first 12 hex digits of the SHA-256 of `bytes`.
fn model_id(prefix: &str, bytes: &[u8]) -> String {
    format!("{prefix}-{}", &sha256_hex(bytes)[..12])
}

fn names_and_kinds(inputs: &InputSpec) -> Result<(Vec<String>, Vec<FeatureKind>), ModelError> {
    Ok((inputs.feature_names()?, inputs.feature_kinds()?))
}

/// The artifact with the gain importance of its trees, computed once
/// [`checked`] has made sure they read the features the manifest names.
fn with_gain_importance(mut artifact: Artifact) -> Artifact {
    if let Some(forest) = &artifact.forest {
        artifact.manifest.gain_importance = gain_importance(forest, &artifact.manifest.feature_names);
    }
    artifact
}

/// Total split gain per feature, largest first (ties in feature order).
fn gain_importance(forest: &Forest, feature_names: &[String]) -> Vec<(String, f64)> {
    let mut gains = vec![0.0; forest.n_features()];
    for tree in forest.trees() {
        for node in &tree.nodes {
            if let Node::Split(split) = node {
                gains[split.feature as usize] += split.gain;
            }
        }
    }
    let mut importance: Vec<(String, f64)> = feature_names.iter().cloned().zip(gains).collect();
    importance.sort_by(|a, b| b.1.total_cmp(&a.1));
    importance
}

fn checked(artifact: Artifact) -> Result<Artifact, ModelError> {
    artifact.check().map_err(ModelError::InvalidModel)?;
    Ok(artifact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interop::import_lightgbm_text;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/interop")
            .join(name)
    }

    /// Attack pass, defect 6: artifacts were stamped `…724ZZ`. The stamp is
    /// the creation time in strict RFC 3339.
    #[test]
    fn an_imported_model_is_stamped_and_named_after_its_file() {
        let file = std::fs::read(fixture("lightgbm.txt")).unwrap();
        let imported = import_lightgbm_text(std::str::from_utf8(&file).unwrap()).unwrap();
        let n_trees = imported.forest.n_trees();
        let created_at = Timestamp::from_millis(1_767_323_045_724);
        let thresholds = Thresholds::new(0.5, Some(0.9)).unwrap();
        let artifact = Artifact::imported(imported, &file, "lightgbm.txt".to_owned(), thresholds, created_at).unwrap();
        let manifest = &artifact.manifest;
        assert_eq!(manifest.created_at, "2026-01-02T03:04:05.724Z");
        assert_eq!(manifest.model_id, format!("imported-{}", &sha256_hex(&file)[..12]));
        assert_eq!(manifest.training.data_fingerprint, sha256_hex(&file));
        assert_eq!(manifest.training.best_round, n_trees);
        assert_eq!(manifest.feature_names.len(), manifest.gain_importance.len());
        assert!(
            manifest.gain_importance.windows(2).all(|pair| pair[0].1 >= pair[1].1),
            "largest gain first"
        );
    }
}
