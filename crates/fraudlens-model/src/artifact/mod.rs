//! The model artifact: a directory that holds everything needed to score
//! exactly as at training time, and to know what the model is.
//!
//! ```text
//! model.json     manifest: format version, inputs (schema + feature spec + encoders),
//!                feature names and kinds, parameters, calibration, thresholds,
//!                training summary with a fingerprint of the data, validation metrics
//! trees.json     the trees (tree exchange format); absent for an unsupervised model
//! anomaly.json   isolation forest (with --anomaly, or the whole of an unsupervised model)
//! model.onnx     an imported ONNX model (`fraudlens import --onnx`)
//! model.lgb.txt  the trees as a LightGBM text model, for inspection in Python (optional)
//! SHA256SUMS     checksums of every file above (`sha256sum -c SHA256SUMS` works)
//! ```
//!
//! Loading verifies every checksum, the format version, and that the parts
//! agree with each other (the feature spec and schema produce the feature
//! names the trees were trained on); anything else is refused with an error
//! naming the file and the problem, so a server keeps its current model.
//! A new artifact comes from one of the constructors in `build.rs`
//! ([`Artifact::gbdt`], [`Artifact::isolation_forest`], [`Artifact::imported`],
//! [`Artifact::onnx`]).
//! `batch.rs` ([`BatchScorer`]) scores many rows in parallel blocks.

mod batch;
mod build;
mod run_stats;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::calibration::Calibration;
use crate::iforest::IsolationForest;
use crate::inputs::InputSpec;
use crate::metrics::Evaluation;
use crate::onnx::OnnxModel;
use fraudlens_core::{Decision, Reason, Timestamp};

use crate::threshold::{ThresholdChoice, Thresholds};
use crate::train::{FeatureKind, GbdtParams, Round};
use crate::{Forest, ModelError};

pub use batch::{BLOCK_ROWS, BatchScorer, ScoredRow};
pub use build::{GbdtParts, IsolationForestParts};
pub use run_stats::{DecisionCounts, HistogramBin, RunInfo, RunStats, ScoreStats};

/// Format version written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Format versions this build reads.
pub const SUPPORTED_VERSIONS: [u32; 1] = [1];

const MANIFEST: &str = "model.json";
const TREES: &str = "trees.json";
const ANOMALY: &str = "anomaly.json";
const LIGHTGBM: &str = "model.lgb.txt";
const ONNX: &str = "model.onnx";
const CHECKSUMS: &str = "SHA256SUMS";

/// Why an artifact cannot be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file the model needs is not there.
    #[error("{}: missing {file} (not a fraudlens model directory, or an incomplete copy)", dir.display())]
    Missing {
        /// The artifact directory.
        dir: PathBuf,
        /// The missing file.
        file: String,
    },
    /// A file's content does not match its checksum.
    #[error("{}: checksum mismatch: the file is corrupt or was modified", path.display())]
    Checksum {
        /// The file.
        path: PathBuf,
    },
    /// A file cannot be parsed.
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The artifact was written by a newer (or unknown) format.
    #[error("{}: model format version {found} is not supported (this build reads {SUPPORTED_VERSIONS:?})", path.display())]
    UnsupportedVersion {
        /// The manifest.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// The parts of the artifact do not agree.
    #[error("{}: inconsistent model: {reason}", dir.display())]
    Mismatch {
        /// The artifact directory.
        dir: PathBuf,
        /// What disagrees.
        reason: String,
    },
}

/// Facts about the training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSummary {
    /// SHA-256 over the training and validation rows (values and labels, in order).
    pub data_fingerprint: String,
    /// The data file trained on (as given).
    pub data_source: String,
    /// Training rows.
    pub train_rows: usize,
    /// Fraud rows among them.
    pub train_frauds: usize,
    /// Validation rows (later in time than every training row).
    pub valid_rows: usize,
    /// Fraud rows among them.
    pub valid_frauds: usize,
    /// First and last training transaction time (event mode; RFC 3339 in model.json).
    #[serde(default, with = "period_text")]
    pub train_period: Option<(Timestamp, Timestamp)>,
    /// First and last validation transaction time (event mode; RFC 3339 in model.json).
    #[serde(default, with = "period_text")]
    pub valid_period: Option<(Timestamp, Timestamp)>,
    /// Boosting rounds kept.
    pub best_round: usize,
    /// Loss of every round.
    pub rounds: Vec<Round>,
    /// Brier score of the validation rows before calibration.
    pub brier_uncalibrated: Option<f64>,
    /// Seconds spent training the trees.
    pub train_seconds: f64,
    /// The trees were refit on every row of the window (`train.refit`);
    /// `None`: the trees are the validated ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit: Option<Refit>,
}

impl TrainingSummary {
    /// One line for the reports: trees, rounds, time, rows.
    pub fn describe(&self) -> String {
        format!(
            "trained {} trees (best of {} rounds) in {:.1}s on {} rows ({} fraud); validated on {} later rows ({} fraud)",
            self.best_round,
            self.rounds.len(),
            self.train_seconds,
            self.train_rows,
            self.train_frauds,
            self.valid_rows,
            self.valid_frauds
        )
    }
}

impl Refit {
    /// One line for the reports.
    pub fn describe(&self) -> String {
        format!(
            "refit: {} trees on all {} rows ({} fraud) in {:.1}s; calibration, thresholds and the validation metrics \
             come from the validated trees' predictions of later rows",
            self.rounds, self.rows, self.frauds, self.seconds
        )
    }
}

/// The trees of a model refit on the whole window with the rounds the
/// validated trees kept, scaled to the larger row count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Refit {
    /// Rows refit on: the training and the validation rows.
    pub rows: usize,
    /// Fraud rows among them.
    pub frauds: usize,
    /// Boosting rounds grown.
    pub rounds: usize,
    /// Seconds spent.
    pub seconds: f64,
}

/// A period (first and last time) as model.json and the evaluation reports
/// write it: RFC 3339 text (`["2026-01-01T00:35:55Z", "…"]`), not the
/// milliseconds a [`Timestamp`] serialises to.
pub(crate) mod period_text {
    use fraudlens_core::{Timestamp, TimestampFormat};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        period: &Option<(Timestamp, Timestamp)>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        period
            .map(|(first, last)| (first.to_string(), last.to_string()))
            .serialize(serializer)
    }

    /// A period that is always there.
    pub(crate) fn serialize_pair<S: Serializer>(
        period: &(Timestamp, Timestamp),
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serialize(&Some(*period), serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<(Timestamp, Timestamp)>, D::Error> {
        let parse = |text: &str| Timestamp::parse(text, TimestampFormat::Datetime).map_err(serde::de::Error::custom);
        Option::<(String, String)>::deserialize(deserializer)?
            .map(|(first, last)| Ok((parse(&first)?, parse(&last)?)))
            .transpose()
    }
}

/// What kind of model an artifact holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Gradient-boosted trees trained on labels (optionally with an isolation forest beside them).
    #[default]
    Gbdt,
    /// An isolation forest alone, for data without labels: decisions come
    /// from thresholds on the anomaly score, and there is no fraud probability.
    IsolationForest,
    /// An imported ONNX model (scikit-learn, PyTorch): its own probabilities,
    /// reasons by occlusion.
    Onnx,
}

/// What the manifest records of an ONNX model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxManifest {
    /// The output read as the fraud probability.
    pub output: String,
    /// Per feature, the value occlusion sets it to for the reasons (the
    /// reference rows' median; `None`: no reasons from it).
    pub medians: Vec<Option<f64>>,
}

/// The manifest (`model.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Artifact format version.
    pub format_version: u32,
    /// fraudlens version that wrote it.
    pub fraudlens_version: String,
    /// When it was written (RFC 3339, UTC).
    pub created_at: String,
    /// Identifier: derived from the trees' checksum.
    pub model_id: String,
    /// Supervised trees or an unsupervised isolation forest.
    #[serde(default)]
    pub kind: ModelKind,
    /// How input rows are built.
    pub inputs: InputSpec,
    /// Model input names, in order.
    pub feature_names: Vec<String>,
    /// Model input kinds, in order.
    pub feature_kinds: Vec<FeatureKind>,
    /// Training parameters.
    pub params: GbdtParams,
    /// Maps raw scores to probabilities.
    pub calibration: Calibration,
    /// Review and decline thresholds on the calibrated probability (on the
    /// anomaly score for [`ModelKind::IsolationForest`]).
    pub thresholds: Thresholds,
    /// How the thresholds were chosen.
    pub threshold_choice: Option<ThresholdChoice>,
    /// The training run.
    pub training: TrainingSummary,
    /// Metrics on the validation rows (calibrated probabilities).
    pub validation: Option<Evaluation>,
    /// Total split gain per feature, largest first.
    pub gain_importance: Vec<(String, f64)>,
    /// The isolation forest's score of the other inputs is the last model
    /// input ([`ANOMALY_FEATURE`]).
    #[serde(default)]
    pub anomaly_input: bool,
    /// The parameter search that chose `params` (`train --tune`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<crate::fit::Tuning>,
    /// An ONNX model's output and reference values ([`ModelKind::Onnx`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<OnnxManifest>,
    /// The inputs' and the score's distributions when trained, for drift
    /// monitoring (none for imported models and those trained before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<crate::drift::Reference>,
}

impl Manifest {
    /// The manifest of the directory `dir`, read without checking the
    /// artifact (checksums, other files): for looking at what a directory
    /// holds, never for scoring. `None` when there is none or it does not parse.
    pub fn peek(dir: &Path) -> Option<Self> {
        serde_json::from_slice(&fs::read(dir.join(MANIFEST)).ok()?).ok()
    }
}

/// A loaded (or freshly trained) model.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The manifest.
    pub manifest: Manifest,
    /// The trees (`None` for an unsupervised model).
    pub forest: Option<Forest>,
    /// The anomaly detector, when trained.
    pub anomaly: Option<IsolationForest>,
    /// The ONNX model of a [`ModelKind::Onnx`] artifact.
    pub onnx: Option<OnnxModel>,
}

/// A scored row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Raw score (log-odds) of the trees (`None` for an unsupervised model).
    pub raw: Option<f64>,
    /// Calibrated fraud probability (`None` for an unsupervised model).
    pub probability: Option<f64>,
    /// The decision at the artifact's thresholds.
    pub decision: Decision,
    /// The isolation forest's score, when the model has one.
    pub anomaly: Option<f64>,
}

impl Score {
    /// What ranks transactions: the probability, else the anomaly score.
    pub fn ranking(&self) -> f64 {
        self.probability.or(self.anomaly).unwrap_or(f64::NAN)
    }
}

/// Name of the model input that holds the isolation forest's score.
pub const ANOMALY_FEATURE: &str = "ml_anomaly_score";

impl Artifact {
    /// Length of the rows callers pass: the inputs [`InputSpec`] builds. When
    /// the isolation forest's score is a model input, the artifact appends it.
    pub fn n_inputs(&self) -> usize {
        self.manifest.feature_names.len() - usize::from(self.manifest.anomaly_input)
    }

    /// The isolation forest's score of a row (an error when the model has none).
    fn anomaly_of(&self, row: &[f64]) -> Result<f64, ModelError> {
        let anomaly = self
            .anomaly
            .as_ref()
            .ok_or_else(|| ModelError::invalid("the anomaly score is an input but there is no isolation forest"))?;
        anomaly
            .score(row)
            .map_err(|error| ModelError::invalid(error.to_string()))
    }

    /// The isolation forest's scores of row-major `rows`, when the model has one.
    fn anomaly_batch(&self, rows: &[f64], n_rows: usize) -> Result<Option<Vec<f64>>, ModelError> {
        let Some(anomaly) = &self.anomaly else { return Ok(None) };
        let mut scores = vec![0.0; n_rows];
        anomaly
            .score_batch(rows, &mut scores)
            .map_err(|error| ModelError::invalid(error.to_string()))?;
        Ok(Some(scores))
    }

    /// The trees' input row: `row`, plus its anomaly score (`anomaly`,
    /// computed once by the caller) when that is an input.
    fn model_row<'r>(
        &self,
        row: &'r [f64],
        anomaly: Option<f64>,
        buffer: &'r mut Vec<f64>,
    ) -> Result<&'r [f64], ModelError> {
        if !self.manifest.anomaly_input {
            return Ok(row);
        }
        let score = match anomaly {
            Some(score) => score,
            None => self.anomaly_of(row)?,
        };
        buffer.clear();
        buffer.extend_from_slice(row);
        buffer.push(score);
        Ok(buffer)
    }

    /// The isolation forest's score of a row, when the model has one (an
    /// error for a row it cannot score, never a missing score).
    pub fn anomaly_score(&self, row: &[f64]) -> Result<Option<f64>, ModelError> {
        match self.anomaly {
            Some(_) => self.anomaly_of(row).map(Some),
            None => Ok(None),
        }
    }

    fn trees(&self) -> Result<&Forest, ModelError> {
        self.forest
            .as_ref()
            .ok_or_else(|| ModelError::invalid("an unsupervised model has no trees"))
    }

    /// Raw score of one row of [`Self::n_inputs`] values.
    pub fn predict_raw(&self, row: &[f64]) -> Result<f64, ModelError> {
        let mut buffer = Vec::new();
        self.trees()?.predict_raw(self.model_row(row, None, &mut buffer)?)
    }

    /// Raw scores of row-major `rows` of [`Self::n_inputs`] values into `out`.
    pub fn predict_raw_batch(&self, rows: &[f64], out: &mut [f64]) -> Result<(), ModelError> {
        let anomaly = match self.manifest.anomaly_input {
            true => self.anomaly_batch(rows, out.len())?,
            false => None,
        };
        self.raw_batch(rows, anomaly.as_deref(), out)
    }

    /// Raw scores given the rows' anomaly scores (needed when they are an input).
    fn raw_batch(&self, rows: &[f64], anomaly: Option<&[f64]>, out: &mut [f64]) -> Result<(), ModelError> {
        if !self.manifest.anomaly_input {
            return self.trees()?.predict_raw_batch(rows, out);
        }
        let n_inputs = self.n_inputs();
        let anomaly = anomaly
            .ok_or_else(|| ModelError::invalid("the anomaly score is an input but there is no isolation forest"))?;
        if rows.len() != out.len() * n_inputs || anomaly.len() != out.len() {
            return Err(ModelError::invalid(format!(
                "batch of {} values does not hold {} rows of {n_inputs} inputs",
                rows.len(),
                out.len()
            )));
        }
        let mut full = Vec::with_capacity(out.len() * (n_inputs + 1));
        for (row, score) in rows.chunks_exact(n_inputs.max(1)).zip(anomaly) {
            full.extend_from_slice(row);
            full.push(*score);
        }
        self.trees()?.predict_raw_batch(&full, out)
    }

    /// Scores one row of [`Self::n_inputs`] values.
    pub fn score(&self, row: &[f64]) -> Result<Score, ModelError> {
        let anomaly = self.anomaly_score(row)?;
        let raw = match self.manifest.kind {
            ModelKind::Gbdt => {
                let mut buffer = Vec::new();
                Some(self.trees()?.predict_raw(self.model_row(row, anomaly, &mut buffer)?)?)
            }
            ModelKind::IsolationForest => None,
            ModelKind::Onnx => Some(logit(self.onnx_model()?.predict(row, 1)?[0])),
        };
        Ok(self.finish_score(raw, anomaly))
    }

    fn onnx_model(&self) -> Result<&OnnxModel, ModelError> {
        self.onnx
            .as_ref()
            .ok_or_else(|| ModelError::invalid("an ONNX model without model.onnx"))
    }

    /// Scores row-major `rows` of [`Self::n_inputs`] values (trees in parallel
    /// for large batches); each row's anomaly score is computed once.
    pub fn score_batch(&self, rows: &[f64]) -> Result<Vec<Score>, ModelError> {
        let n_rows = rows.len() / self.n_inputs().max(1);
        let anomaly = self.anomaly_batch(rows, n_rows)?;
        let raw = match self.manifest.kind {
            ModelKind::Gbdt => {
                let mut raw = vec![0.0; n_rows];
                self.raw_batch(rows, anomaly.as_deref(), &mut raw)?;
                raw.into_iter().map(Some).collect()
            }
            ModelKind::IsolationForest => vec![None; n_rows],
            ModelKind::Onnx => self
                .onnx_model()?
                .predict(rows, n_rows)?
                .into_iter()
                .map(|p| Some(logit(p)))
                .collect(),
        };
        let anomaly = anomaly.map_or_else(|| vec![None; n_rows], |scores| scores.into_iter().map(Some).collect());
        Ok(raw
            .into_iter()
            .zip(anomaly)
            .map(|(raw, anomaly)| self.finish_score(raw, anomaly))
            .collect())
    }

    /// Time of the last transaction the model was trained or validated on.
    pub fn seen_until(&self) -> Option<Timestamp> {
        let training = &self.manifest.training;
        training.valid_period.or(training.train_period).map(|(_, last)| last)
    }

    /// What ranks row-major `rows`: calibrated probabilities, or anomaly
    /// scores for an unsupervised model ([`Score::ranking`]).
    pub fn ranking_batch(&self, rows: &[f64]) -> Result<Vec<f64>, ModelError> {
        Ok(self.score_batch(rows)?.iter().map(Score::ranking).collect())
    }

    fn finish_score(&self, raw: Option<f64>, anomaly: Option<f64>) -> Score {
        let probability = raw.map(|raw| self.manifest.calibration.apply(raw));
        let decided_on = match self.manifest.kind {
            ModelKind::Gbdt | ModelKind::Onnx => probability,
            ModelKind::IsolationForest => anomaly,
        };
        Score {
            raw,
            probability,
            decision: self.decide(decided_on.unwrap_or(f64::NAN)),
            anomaly,
        }
    }

    /// The decision for a calibrated probability (an anomaly score for an unsupervised model).
    pub fn decide(&self, score: f64) -> Decision {
        self.manifest.thresholds.decide(score)
    }

    /// The `k` strongest reasons for a row's raw score (categories by name);
    /// none for an unsupervised model.
    pub fn reasons(&self, row: &[f64], k: usize) -> Result<Vec<Reason>, ModelError> {
        if let (Some(model), Some(onnx)) = (&self.onnx, &self.manifest.onnx) {
            return occlusion_reasons(model, onnx, &self.manifest.feature_names, row, k);
        }
        let Some(forest) = &self.forest else {
            return Ok(Vec::new());
        };
        let mut buffer = Vec::new();
        let full = self.model_row(row, None, &mut buffer)?;
        let mut reasons = forest.top_reasons(full, &self.manifest.feature_names, k)?;
        let encoders = self.manifest.inputs.encoders(self.n_inputs());
        for reason in &mut reasons {
            let feature = self
                .manifest
                .feature_names
                .iter()
                .position(|name| *name == reason.feature);
            if let (Some(Some(encoder)), Some(code)) = (feature.and_then(|idx| encoders.get(idx)), reason.value) {
                let categories = encoder.categories();
                reason.category = Some(
                    categories
                        .get(code as usize)
                        .cloned()
                        .unwrap_or_else(|| "(other)".to_owned()),
                );
            }
        }
        Ok(reasons)
    }

    /// Checks that the parts agree: input spec, feature names and kinds, trees, anomaly detector.
    pub fn check(&self) -> Result<(), String> {
        let manifest = &self.manifest;
        let n_features = manifest.feature_names.len();
        if manifest.feature_kinds.len() != n_features {
            return Err(format!(
                "{} feature kinds for {n_features} features",
                manifest.feature_kinds.len()
            ));
        }
        match (manifest.kind, &self.forest, &self.anomaly) {
            (ModelKind::Gbdt, Some(forest), _) if forest.n_features() != n_features => {
                return Err(format!(
                    "the trees read {} features, the manifest names {n_features}",
                    forest.n_features()
                ));
            }
            (ModelKind::Gbdt, None, _) => return Err("a gbdt model without trees.json".to_owned()),
            (ModelKind::IsolationForest, Some(_), _) => {
                return Err("an isolation-forest model with trees".to_owned());
            }
            (ModelKind::IsolationForest, None, None) => {
                return Err("an isolation-forest model without anomaly.json".to_owned());
            }
            (ModelKind::IsolationForest, None, Some(_)) if manifest.anomaly_input => {
                return Err("an isolation-forest model cannot take its own score as an input".to_owned());
            }
            (ModelKind::Onnx, Some(_), _) | (ModelKind::Onnx, _, Some(_)) => {
                return Err("an ONNX model with trees".to_owned());
            }
            _ => {}
        }
        if let Some(reference) = &manifest.reference {
            let names = reference.features.iter().map(|distribution| &distribution.name);
            if !names.eq(manifest.feature_names[..self.n_inputs()].iter()) {
                return Err("the drift reference names other inputs than the model".to_owned());
            }
        }
        match (manifest.kind, &self.onnx, &manifest.onnx) {
            (ModelKind::Onnx, Some(model), Some(onnx)) => {
                if model.n_features() != n_features || onnx.medians.len() != n_features {
                    return Err(format!(
                        "the ONNX model reads {} features with {} medians, the manifest names {n_features}",
                        model.n_features(),
                        onnx.medians.len()
                    ));
                }
            }
            (ModelKind::Onnx, _, _) => return Err("an ONNX model without model.onnx".to_owned()),
            (_, None, None) => {}
            _ => return Err("an ONNX part in a model that is not ONNX".to_owned()),
        }
        let mut from_inputs = manifest.inputs.feature_names().map_err(|error| error.to_string())?;
        let mut kinds = manifest.inputs.feature_kinds().map_err(|error| error.to_string())?;
        if manifest.anomaly_input {
            from_inputs.push(ANOMALY_FEATURE.to_owned());
            kinds.push(FeatureKind::Numeric);
        }
        if from_inputs != manifest.feature_names {
            return Err("the schema and feature spec produce other features than the model was trained on".to_owned());
        }
        if kinds != manifest.feature_kinds {
            return Err("feature kinds differ from the input encoders".to_owned());
        }
        match &self.anomaly {
            Some(anomaly) if anomaly.n_features() != self.n_inputs() => {
                Err(format!("the anomaly detector reads {} features", anomaly.n_features()))
            }
            None if manifest.anomaly_input => {
                Err("the anomaly score is an input but anomaly.json is absent".to_owned())
            }
            _ => Ok(()),
        }
    }

    /// Writes the artifact to `dir` (created; an existing model directory is
    /// replaced only once the new one is complete). `lightgbm_text` is
    /// written alongside when given.
    pub fn save(&self, dir: &Path, lightgbm_text: Option<&str>) -> Result<(), ArtifactError> {
        if let Err(reason) = self.check() {
            return Err(ArtifactError::Mismatch {
                dir: dir.to_owned(),
                reason,
            });
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ArtifactError::Io { path, source }
        };
        // replace a directory only when it holds nothing but an artifact's files
        if dir.exists() {
            let known = [MANIFEST, TREES, ANOMALY, LIGHTGBM, ONNX, CHECKSUMS];
            for entry in fs::read_dir(dir).map_err(io(dir))? {
                let entry = entry.map_err(io(dir))?;
                let name = entry.file_name();
                let is_file = entry.file_type().map_err(io(&entry.path()))?.is_file();
                if !is_file || !known.iter().any(|known| name == *known) {
                    return Err(ArtifactError::Format {
                        path: dir.to_owned(),
                        reason: format!(
                            "exists and holds {:?}, which is not part of a model: refusing to replace it",
                            name
                        ),
                    });
                }
            }
        }
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(io(parent))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        fs::create_dir_all(&staging).map_err(io(&staging))?;
        let mut files: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
        files.insert(MANIFEST, to_json(&self.manifest, dir)?);
        if let Some(forest) = &self.forest {
            files.insert(TREES, to_json(forest.data(), dir)?);
        }
        if let Some(anomaly) = &self.anomaly {
            files.insert(ANOMALY, to_json(anomaly, dir)?);
        }
        if let Some(model) = &self.onnx {
            files.insert(ONNX, model.bytes().to_vec());
        }
        // never write what could not be read back (JSON has no NaN or infinity)
        let reread = |file: &str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ArtifactError::Format {
                    path: dir.join(file),
                    reason: "the model does not read back as written (a value is not finite?)".to_owned(),
                })
            }
        };
        reread(
            MANIFEST,
            serde_json::from_slice::<Manifest>(&files[MANIFEST]).ok().as_ref() == Some(&self.manifest),
        )?;
        if let Some(bytes) = files.get(TREES) {
            reread(
                TREES,
                serde_json::from_slice::<Forest>(bytes).as_ref().ok() == self.forest.as_ref(),
            )?;
        }
        if let Some(bytes) = files.get(ANOMALY) {
            reread(
                ANOMALY,
                serde_json::from_slice::<IsolationForest>(bytes).as_ref().ok() == self.anomaly.as_ref(),
            )?;
        }
        if let Some(text) = lightgbm_text {
            files.insert(LIGHTGBM, text.as_bytes().to_vec());
        }
        let mut sums = String::new();
        for (file, bytes) in &files {
            let path = staging.join(file);
            fs::write(&path, bytes).map_err(io(&path))?;
            sums.push_str(&format!("{}  {file}\n", sha256_hex(bytes)));
        }
        let sums_path = staging.join(CHECKSUMS);
        fs::write(&sums_path, sums).map_err(io(&sums_path))?;
        if dir.exists() {
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            fs::rename(dir, &old).map_err(io(dir))?;
            fs::rename(&staging, dir).map_err(io(dir))?;
            fs::remove_dir_all(&old).map_err(io(&old))?;
        } else {
            fs::rename(&staging, dir).map_err(io(dir))?;
        }
        Ok(())
    }

    /// Loads and verifies an artifact.
    pub fn load(dir: &Path) -> Result<Self, ArtifactError> {
        Self::load_with_digest(dir).map(|(artifact, _)| artifact)
    }

    /// [`Self::load`], and the artifact's content digest: the SHA-256 of the
    /// `SHA256SUMS` read by this load. Every file loaded was checked against
    /// it, so equal digests mean equal content; it is taken from the bytes
    /// verified, not from a second read that could see other files.
    pub fn load_with_digest(dir: &Path) -> Result<(Self, String), ArtifactError> {
        let read = |file: &str| {
            let path = dir.join(file);
            match fs::read(&path) {
                Ok(bytes) => Ok(bytes),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(ArtifactError::Missing {
                    dir: dir.to_owned(),
                    file: file.to_owned(),
                }),
                Err(source) => Err(ArtifactError::Io { path, source }),
            }
        };
        let sums_path = dir.join(CHECKSUMS);
        let sums_bytes = read(CHECKSUMS)?;
        let digest = sha256_hex(&sums_bytes);
        let sums = String::from_utf8(sums_bytes).map_err(|_| ArtifactError::Format {
            path: sums_path.clone(),
            reason: "not UTF-8".to_owned(),
        })?;
        let mut expected: BTreeMap<String, String> = BTreeMap::new();
        for (idx, line) in sums.lines().enumerate() {
            let Some((hash, file)) = line.split_once("  ") else {
                return Err(ArtifactError::Format {
                    path: sums_path.clone(),
                    reason: format!("line {}: expected \"<sha256>  <file>\"", idx + 1),
                });
            };
            expected.insert(file.to_owned(), hash.to_owned());
        }
        let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for required in [MANIFEST] {
            if !expected.contains_key(required) {
                return Err(ArtifactError::Format {
                    path: sums_path.clone(),
                    reason: format!("no checksum for {required}"),
                });
            }
        }
        for (file, hash) in &expected {
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(ArtifactError::Format {
                    path: sums_path.clone(),
                    reason: format!("unexpected file name {file:?}"),
                });
            }
            let bytes = read(file)?;
            if sha256_hex(&bytes) != *hash {
                return Err(ArtifactError::Checksum { path: dir.join(file) });
            }
            contents.insert(file.clone(), bytes);
        }
        let manifest_path = dir.join(MANIFEST);
        let version: VersionOnly = parse(&manifest_path, &contents[MANIFEST])?;
        if !SUPPORTED_VERSIONS.contains(&version.format_version) {
            return Err(ArtifactError::UnsupportedVersion {
                path: manifest_path,
                found: version.format_version,
            });
        }
        let manifest: Manifest = parse(&manifest_path, &contents[MANIFEST])?;
        let forest: Option<Forest> = match (contents.get(TREES), manifest.kind) {
            (Some(bytes), _) => Some(parse(&dir.join(TREES), bytes)?),
            (None, ModelKind::Gbdt) => {
                return Err(ArtifactError::Format {
                    path: sums_path,
                    reason: format!("no checksum for {TREES}"),
                });
            }
            (None, ModelKind::IsolationForest | ModelKind::Onnx) => None,
        };
        let anomaly = match contents.get(ANOMALY) {
            Some(bytes) => Some(parse(&dir.join(ANOMALY), bytes)?),
            None => None,
        };
        let onnx = match (contents.get(ONNX), &manifest.onnx) {
            (Some(bytes), Some(onnx)) => Some(
                OnnxModel::load(bytes, manifest.feature_names.len(), Some(&onnx.output)).map_err(|error| {
                    ArtifactError::Format {
                        path: dir.join(ONNX),
                        reason: error.to_string(),
                    }
                })?,
            ),
            (None, Some(_)) => {
                return Err(ArtifactError::Format {
                    path: sums_path,
                    reason: format!("no checksum for {ONNX}"),
                });
            }
            (_, None) => None,
        };
        let artifact = Artifact {
            manifest,
            forest,
            anomaly,
            onnx,
        };
        artifact.check().map_err(|reason| ArtifactError::Mismatch {
            dir: dir.to_owned(),
            reason,
        })?;
        Ok((artifact, digest))
    }
}

#[derive(Deserialize)]
struct VersionOnly {
    format_version: u32,
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, ArtifactError> {
    serde_json::from_slice(bytes).map_err(|error| ArtifactError::Format {
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn to_json<T: Serialize>(value: &T, dir: &Path) -> Result<Vec<u8>, ArtifactError> {
    serde_json::to_vec_pretty(value).map_err(|error| ArtifactError::Format {
        path: dir.to_owned(),
        reason: format!("serialising the model: {error}"),
    })
}

/// The log-odds of a probability (±infinity at 0 and 1, which the identity
/// calibration maps back exactly).
fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

/// The `k` features whose occlusion by their median changes the log-odds
/// most ([`OnnxModel::occlusion`]).
fn occlusion_reasons(
    model: &OnnxModel,
    onnx: &OnnxManifest,
    names: &[String],
    row: &[f64],
    k: usize,
) -> Result<Vec<Reason>, ModelError> {
    if onnx.medians.iter().all(Option::is_none) {
        return Ok(Vec::new());
    }
    // a feature without a median is occluded by itself: no contribution
    let medians: Vec<f64> = onnx
        .medians
        .iter()
        .zip(row)
        .map(|(median, value)| median.unwrap_or(*value))
        .collect();
    let (_, contributions) = model.occlusion(row, &medians)?;
    let mut reasons: Vec<Reason> = names
        .iter()
        .zip(row)
        .zip(contributions)
        .filter(|(_, contribution)| contribution.is_finite() && *contribution != 0.0)
        .map(|((name, value), contribution)| Reason {
            feature: name.clone(),
            value: value.is_finite().then_some(*value),
            category: None,
            contribution,
        })
        .collect();
    reasons.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
    reasons.truncate(k);
    Ok(reasons)
}

#[cfg(test)]
mod tests {
    use fraudlens_core::rng::Rng;
    use serde_json::json;

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    /// Model inputs that reach many leaves: plausible magnitudes, some missing values.
    fn rows(n_features: usize) -> Vec<Vec<f64>> {
        let mut rng = Rng::new(11, 0);
        (0..50)
            .map(|_| {
                (0..n_features)
                    .map(|_| match rng.below(8) {
                        0 => f64::NAN,
                        1 => rng.below(5) as f64,
                        _ => rng.range(0.0, 2000.0),
                    })
                    .collect()
            })
            .collect()
    }

    /// The sample artifact of every format version still loads and scores as
    /// when it was written. Regenerate the expectations (after a deliberate
    /// change) with `FRAUDLENS_WRITE_FIXTURES=1`.
    #[test]
    fn sample_artifact_v1_still_scores_the_same() {
        let artifact = Artifact::load(&fixture("artifact-v1")).unwrap();
        let scores: Vec<serde_json::Value> = rows(artifact.n_inputs())
            .iter()
            .map(|row| {
                let score = artifact.score(row).unwrap();
                json!([score.raw.unwrap(), score.probability.unwrap(), score.decision])
            })
            .collect();
        let expected_path = fixture("artifact-v1.expected.json");
        if std::env::var_os("FRAUDLENS_WRITE_FIXTURES").is_some() {
            fs::write(&expected_path, serde_json::to_vec_pretty(&scores).unwrap()).unwrap();
        }
        let expected: Vec<serde_json::Value> = serde_json::from_slice(&fs::read(expected_path).unwrap()).unwrap();
        assert_eq!(scores, expected);
        assert!(
            scores.iter().any(|score| score[2] != "approve"),
            "the rows should reach a flagged leaf"
        );
    }

    /// model.json keeps its periods as RFC 3339 text: the fixture's are read
    /// as timestamps and written back as the same text; absent or `null` is
    /// no period, and text that is not a time is refused.
    #[test]
    fn training_periods_are_rfc3339_text() {
        let dir = fixture("artifact-v1");
        let artifact = Artifact::load(&dir).unwrap();
        let at = |text| Timestamp::parse(text, fraudlens_core::TimestampFormat::Datetime).unwrap();
        assert_eq!(
            artifact.manifest.training.train_period,
            Some((at("2026-01-01T00:35:55Z"), at("2026-02-02T10:38:31Z")))
        );
        let written = serde_json::to_value(&artifact.manifest).unwrap();
        let original: serde_json::Value = serde_json::from_slice(&fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
        for field in ["train_period", "valid_period"] {
            assert_eq!(written["training"][field], original["training"][field], "{field}");
        }
        assert_eq!(written["training"]["valid_period"][1], "2026-02-09T23:39:43Z");

        let mut training = original["training"].clone();
        training["train_period"] = serde_json::Value::Null;
        training.as_object_mut().unwrap().remove("valid_period");
        let summary: TrainingSummary = serde_json::from_value(training.clone()).unwrap();
        assert_eq!((summary.train_period, summary.valid_period), (None, None));
        assert_eq!(
            serde_json::to_value(&summary).unwrap()["valid_period"],
            serde_json::Value::Null
        );
        training["train_period"] = json!(["2026-01-01T00:35:55Z", "yesterday"]);
        assert!(serde_json::from_value::<TrainingSummary>(training).is_err());
    }

    #[test]
    fn save_then_load_round_trips() {
        let artifact = Artifact::load(&fixture("artifact-v1")).unwrap();
        let dir = std::env::temp_dir().join(format!("fraudlens-artifact-{}", std::process::id()));
        artifact.save(&dir, None).unwrap();
        // saving over an existing model directory replaces it
        artifact.save(&dir, Some("tree\n")).unwrap();
        let loaded = Artifact::load(&dir).unwrap();
        assert_eq!(loaded.manifest, artifact.manifest);
        assert_eq!(loaded.forest, artifact.forest);
        assert_eq!(fs::read_to_string(dir.join(LIGHTGBM)).unwrap(), "tree\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_that_is_not_a_model_is_not_replaced() {
        let artifact = Artifact::load(&fixture("artifact-v1")).unwrap();
        let dir = std::env::temp_dir().join(format!("fraudlens-not-a-model-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("precious.txt"), "keep me").unwrap();
        assert!(matches!(artifact.save(&dir, None), Err(ArtifactError::Format { .. })));
        // a model.json beside other files does not make it a model directory
        fs::write(dir.join(MANIFEST), "{}").unwrap();
        assert!(matches!(artifact.save(&dir, None), Err(ArtifactError::Format { .. })));
        assert_eq!(fs::read_to_string(dir.join("precious.txt")).unwrap(), "keep me");
        fs::remove_dir_all(&dir).unwrap();
    }
}
