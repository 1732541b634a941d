//! Against a real MLflow tracking server (`FRAUDLENS_TEST_MLFLOW`, started by
//! `scripts/mlflow`): a run logged whole and read back through MLflow's own
//! API — parameters, metrics, tags, artifacts, the registered model version
//! and its aliases.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use fraudlens_mlflow::{Client, MlflowSettings, Run, alias};
use serde_json::Value;

fn client(experiment: &str, model: &str) -> Client {
    let uri = std::env::var("FRAUDLENS_TEST_MLFLOW")
        .expect("FRAUDLENS_TEST_MLFLOW: run through scripts/test, or `source scripts/mlflow` first");
    Client::from_settings(&MlflowSettings {
        tracking_uri: Some(uri),
        experiment: experiment.to_owned(),
        registered_model: model.to_owned(),
        timeout_seconds: 30,
    })
    .unwrap()
    .unwrap()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos())
}

/// `key` → `value` of a run's `data.params` / `data.tags`.
fn entry<'a>(run: &'a Value, field: &str, key: &str) -> Option<&'a str> {
    run["run"]["data"][field]
        .as_array()?
        .iter()
        .find(|item| item["key"] == key)?
        .get("value")?
        .as_str()
}

#[tokio::test]
async fn a_run_is_logged_whole_and_read_back() {
    let (experiment, model) = (unique("exp"), unique("model"));
    let client = client(&experiment, &model);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.json"), br#"{"model_id": "gbdt-1"}"#).unwrap();
    std::fs::write(dir.path().join("SHA256SUMS"), b"abc  model.json\n").unwrap();
    let version = unique("gbdt");
    let mut params: Vec<(String, String)> = (0..150).map(|i| (format!("p{i}"), i.to_string())).collect();
    params.push(("long".to_owned(), "é".repeat(400)));
    let run = Run {
        name: format!("train {version}"),
        tags: vec![
            ("fraudlens.command".to_owned(), "train".to_owned()),
            ("fraudlens.data_fingerprint".to_owned(), "f".repeat(64)),
        ],
        params,
        metrics: vec![
            ("valid_average_precision".to_owned(), 0.75),
            ("valid_roc_auc".to_owned(), 0.95),
            ("not_finite".to_owned(), f64::NAN),
        ],
        artifacts: Some(dir.path().to_owned()),
        model_version: Some(version.clone()),
        started_ms: 1_700_000_000_000,
    };
    let logged = client.log_run(&run).await.unwrap();
    let read = client.run(&logged.run_id).await.unwrap();
    assert_eq!(read["run"]["info"]["status"], "FINISHED");
    assert_eq!(read["run"]["info"]["run_name"], format!("train {version}"));
    // more parameters than one call takes: all of them arrive
    assert_eq!(read["run"]["data"]["params"].as_array().unwrap().len(), 151);
    assert_eq!(entry(&read, "params", "p149"), Some("149"));
    // a value longer than every server takes is cut at a character boundary
    let long = entry(&read, "params", "long").unwrap();
    assert!(long.ends_with("...") && long.len() <= 500, "{long}");
    assert_eq!(
        entry(&read, "tags", "fraudlens.data_fingerprint"),
        Some("f".repeat(64).as_str())
    );
    let metrics = read["run"]["data"]["metrics"].as_array().unwrap();
    assert_eq!(
        metrics.len(),
        2,
        "the value that is not finite is left out: {metrics:?}"
    );
    assert!(
        metrics
            .iter()
            .any(|m| m["key"] == "valid_average_precision" && m["value"] == 0.75)
    );
    // the model directory is the run's artifacts
    let listed = client.artifacts(&logged.run_id, "model").await.unwrap();
    let mut files: Vec<&str> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["path"].as_str().unwrap())
        .collect();
    files.sort_unstable();
    assert_eq!(files, ["model/SHA256SUMS", "model/model.json"]);
    // a registered model version, found by its fraudlens version
    let number = logged.registered_version.clone().unwrap();
    assert_eq!(client.find_version(&version).await.unwrap(), Some(number.clone()));
    // logged again: the same registered version
    let again = client.log_run(&run).await.unwrap();
    assert_ne!(again.run_id, logged.run_id);
    assert_eq!(again.registered_version, Some(number.clone()));

    // the aliases follow what they are told; one for a model never logged is removed
    client
        .sync_aliases(&[(alias::CHAMPION, Some(&version)), (alias::SHADOW, Some("never-logged"))])
        .await
        .unwrap();
    let champion = client.alias(alias::CHAMPION).await.unwrap().unwrap();
    assert_eq!(champion["version"], number.as_str());
    assert_eq!(champion["run_id"], logged.run_id.as_str());
    assert!(client.alias(alias::SHADOW).await.unwrap().is_none());
    client.sync_aliases(&[(alias::CHAMPION, None)]).await.unwrap();
    assert!(client.alias(alias::CHAMPION).await.unwrap().is_none());
}

#[tokio::test]
async fn server_errors_name_the_call_and_the_code() {
    let client = client(&unique("exp"), &unique("model"));
    let error = client.run("no-such-run").await.unwrap_err();
    assert_eq!(error.code(), Some("RESOURCE_DOES_NOT_EXIST"), "{error}");
    assert!(error.to_string().contains("runs/get"), "{error}");
}
