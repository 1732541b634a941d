//! MLflow tracking of the model lifecycle (`[mlflow] tracking_uri`):
//! `train` and `retrain` log a run with the model's parameters, its
//! validation metrics, the training data's fingerprint and the model
//! directory as artifacts, registered as a version of `mlflow.registered_model`;
//! `models compare` logs the comparison's metrics. After every command that
//! changes fraudlens's registry (register, promote, rollback, shadow,
//! retrain, compare) the aliases follow it: `champion` is the production
//! model, `shadow` the shadow model, `challenger` the latest compared
//! candidate that is not in production. A model never logged to MLflow has
//! no version there, and its alias is removed.
//!
//! A failure is loud: the command says what it did and that logging failed,
//! and exits 1 (see `fraudlens_mlflow`).

use std::path::Path;

use fraudlens_mlflow::{Client, LoggedRun, Run};
use fraudlens_model::artifact::Manifest;
use fraudlens_model::compare::Verdict;
use fraudlens_pipeline::retrain::CompareReport;
use fraudlens_store::Store;
use serde_json::Value;

use crate::config::Config;
use crate::exit::{Classify, CliResult, Failure};

/// The client of `[mlflow]`, if a tracking URI is set (a setting that
/// cannot work is a usage error, before any work).
pub fn client(config: &Config) -> CliResult<Option<Client>> {
    Client::from_settings(&config.mlflow)
        .map_err(anyhow::Error::from)
        .usage()
}

/// `value`'s leaves as `(dotted.key, leaf)`: objects are walked, arrays and
/// nulls left out.
fn leaves<'a>(prefix: &str, value: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(&key, value, out);
            }
        }
        Value::Array(_) | Value::Null => {}
        leaf => out.push((prefix.to_owned(), leaf)),
    }
}

/// The parameters of `value` (every leaf, as text) under `prefix`.
fn params_of(prefix: &str, value: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    leaves(prefix, value, &mut found);
    found
        .into_iter()
        .map(|(key, leaf)| {
            let text = match leaf {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key, text)
        })
        .collect()
}

/// The metrics of `value` (its numeric leaves) under `prefix`.
fn metrics_of(prefix: &str, value: &Value) -> Vec<(String, f64)> {
    let mut found = Vec::new();
    leaves(prefix, value, &mut found);
    found
        .into_iter()
        .filter_map(|(key, leaf)| leaf.as_f64().map(|number| (key, number)))
        .collect()
}

/// The run of a model just trained (by `command`) into `dir`.
pub fn training_run(command: &str, manifest: &Manifest, dir: &Path, started_ms: i64) -> Run {
    let training = &manifest.training;
    let mut params = params_of("gbdt", &serde_json::to_value(&manifest.params).unwrap_or_default());
    params.extend([
        ("kind".to_owned(), format!("{:?}", manifest.kind).to_lowercase()),
        ("data_fingerprint".to_owned(), training.data_fingerprint.clone()),
        ("data_source".to_owned(), training.data_source.clone()),
        ("inputs".to_owned(), manifest.feature_names.len().to_string()),
    ]);
    let mut metrics = metrics_of("valid", &serde_json::to_value(&manifest.validation).unwrap_or_default());
    metrics.extend([
        ("train_rows".to_owned(), training.train_rows as f64),
        ("train_frauds".to_owned(), training.train_frauds as f64),
        ("valid_rows".to_owned(), training.valid_rows as f64),
        ("valid_frauds".to_owned(), training.valid_frauds as f64),
        ("best_round".to_owned(), training.best_round as f64),
        ("train_seconds".to_owned(), training.train_seconds),
    ]);
    Run {
        name: format!("{command} {}", manifest.model_id),
        tags: vec![
            ("fraudlens.command".to_owned(), command.to_owned()),
            ("fraudlens.model_version".to_owned(), manifest.model_id.clone()),
            (
                "fraudlens.data_fingerprint".to_owned(),
                training.data_fingerprint.clone(),
            ),
        ],
        params,
        metrics,
        artifacts: Some(dir.to_owned()),
        model_version: Some(manifest.model_id.clone()),
        started_ms,
    }
}

/// The metrics of a comparison, `compare.<metric>.{candidate,against,difference,low,high}`,
/// and of the candidate's shadow traffic, `shadow.…`.
fn comparison_metrics(report: &CompareReport) -> Vec<(String, f64)> {
    let mut metrics = Vec::new();
    for metric in &report.comparison.metrics {
        let name = metric.metric.name();
        metrics.extend([
            (format!("compare.{name}.candidate"), metric.candidate),
            (format!("compare.{name}.against"), metric.against),
            (format!("compare.{name}.difference"), metric.difference),
        ]);
        metrics.extend(metric.low.map(|low| (format!("compare.{name}.low"), low)));
        metrics.extend(metric.high.map(|high| (format!("compare.{name}.high"), high)));
    }
    metrics.extend([
        ("compare.rows".to_owned(), report.comparison.rows as f64),
        ("compare.frauds".to_owned(), report.comparison.frauds as f64),
    ]);
    if let Some(traffic) = &report.shadow {
        metrics.extend(metrics_of("shadow", &serde_json::to_value(traffic).unwrap_or_default()));
    }
    metrics
}

fn comparison_tags(report: &CompareReport, verdict: &Verdict) -> Vec<(String, String)> {
    vec![
        ("fraudlens.candidate".to_owned(), report.candidate.clone()),
        ("fraudlens.against".to_owned(), report.against.clone()),
        (
            "fraudlens.window".to_owned(),
            format!("{} .. {}", report.window.from, report.window.to),
        ),
        ("fraudlens.verdict".to_owned(), verdict.promote.to_string()),
        ("fraudlens.overlap".to_owned(), report.overlap.to_string()),
    ]
}

/// The run of `models compare`.
pub fn comparison_run(report: &CompareReport, verdict: &Verdict, started_ms: i64) -> Run {
    let mut tags = comparison_tags(report, verdict);
    tags.push(("fraudlens.command".to_owned(), "compare".to_owned()));
    Run {
        name: format!("compare {} vs {}", report.candidate, report.against),
        tags,
        params: vec![
            ("candidate".to_owned(), report.candidate.clone()),
            ("against".to_owned(), report.against.clone()),
            ("window_from".to_owned(), report.window.from.to_string()),
            ("window_to".to_owned(), report.window.to.to_string()),
            ("resamples".to_owned(), report.comparison.resamples.to_string()),
        ],
        metrics: comparison_metrics(report),
        artifacts: None,
        model_version: None,
        started_ms,
    }
}

/// The run of `retrain`: the candidate's training run with its comparison.
pub fn retrain_run(
    manifest: &Manifest,
    dir: &Path,
    comparison: Option<(&CompareReport, &Verdict)>,
    promoted: bool,
    started_ms: i64,
) -> Run {
    let mut run = training_run("retrain", manifest, dir, started_ms);
    if let Some((report, verdict)) = comparison {
        run.metrics.extend(comparison_metrics(report));
        run.tags.extend(comparison_tags(report, verdict));
    }
    run.tags.push(("fraudlens.promoted".to_owned(), promoted.to_string()));
    run
}

/// Logs `run`; a failure says what was done before it (`done`) and exits 1.
pub async fn log(client: &Client, run: &Run, done: &str) -> CliResult<LoggedRun> {
    let logged = client.log_run(run).await.map_err(|error| {
        Failure::Runtime(anyhow::anyhow!(
            "{done}, but logging the run to MLflow failed (nothing was queued): {error}"
        ))
    })?;
    eprintln!(
        "logged to MLflow {}: run {} in experiment {}{}",
        client.uri(),
        logged.run_id,
        client.settings().experiment,
        logged
            .registered_version
            .as_ref()
            .map(|number| format!(
                ", registered model {} version {number}",
                client.settings().registered_model
            ))
            .unwrap_or_default()
    );
    Ok(logged)
}

/// Points the MLflow aliases at what fraudlens's registry says now.
pub async fn sync_aliases(client: &Client, store: &dyn Store, done: &str) -> CliResult {
    let failed = |error: String| {
        Failure::Runtime(anyhow::anyhow!(
            "{done}, but updating the MLflow aliases failed: {error}"
        ))
    };
    let roles = fraudlens_pipeline::registry::roles(store)
        .await
        .map_err(|error| failed(error.to_string()))?;
    client
        .follow_roles(
            roles.production.as_deref(),
            roles.challenger.as_deref(),
            roles.shadow.as_deref(),
        )
        .await
        .map_err(|error| failed(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_are_dotted_and_arrays_left_out() {
        let value = serde_json::json!({"a": 1, "b": {"c": "x", "d": [1, 2], "e": null, "f": 0.5}, "g": true});
        assert_eq!(
            params_of("p", &value),
            vec![
                ("p.a".to_owned(), "1".to_owned()),
                ("p.b.c".to_owned(), "x".to_owned()),
                ("p.b.f".to_owned(), "0.5".to_owned()),
                ("p.g".to_owned(), "true".to_owned()),
            ]
        );
        assert_eq!(
            metrics_of("", &value),
            vec![("a".to_owned(), 1.0), ("b.f".to_owned(), 0.5)]
        );
    }
}
