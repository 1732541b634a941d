//! MLflow tracking through the real binary against a real `mlflow server`
//! (`FRAUDLENS_TEST_MLFLOW`, started by `scripts/mlflow`): `train` logs a
//! run whose parameters, metrics, data fingerprint and artifacts are read
//! back through MLflow's REST API, registered as a model version; the
//! aliases follow promotions and the shadow model; a server that is down
//! fails the command loudly, with the model still written.

use std::path::Path;

use fraudlens_testkit::{Backend, TestDb};
use serde_json::Value;

use crate::model::{train_shared, version_of};
use crate::{fraudlens, ok};

fn tracking_uri() -> String {
    std::env::var("FRAUDLENS_TEST_MLFLOW")
        .expect("FRAUDLENS_TEST_MLFLOW: run through scripts/test, or `source scripts/mlflow` first")
}

/// `GET /api/2.0/mlflow/{endpoint}` on the test server.
async fn mlflow_get(endpoint: &str, query: &[(&str, &str)]) -> Value {
    let url = reqwest::Url::parse_with_params(&format!("{}/api/2.0/mlflow/{endpoint}", tracking_uri()), query).unwrap();
    let response = reqwest::get(url).await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{endpoint}: {status} {body}");
    body
}

fn find<'a>(items: &'a Value, key: &str) -> Option<&'a Value> {
    items.as_array()?.iter().find(|item| item["key"] == key)?.get("value")
}

/// Trains a small model into `dir/out` with `env`.
fn train(dir: &Path, out: &str, trees: &str, env: &[(&str, &str)]) -> crate::Run {
    train_shared(dir, out, &["--trees", trees], env)
}

/// The run id in `logged to MLflow …: run ID in …`.
fn run_id(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|line| line.starts_with("logged to MLflow"))
        .unwrap_or_else(|| panic!("no run logged:\n{stderr}"));
    line.split(": run ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_logs_a_run_and_the_aliases_follow_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let db = TestDb::new(Backend::Sqlite).await;
    let stamp = std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos().to_string();
    let (experiment, registered) = (format!("fraudlens-it-{stamp}"), format!("fraud-{stamp}"));
    let uri = tracking_uri();
    let env = [
        ("FRAUDLENS_MLFLOW__TRACKING_URI", uri.as_str()),
        ("FRAUDLENS_MLFLOW__EXPERIMENT", experiment.as_str()),
        ("FRAUDLENS_MLFLOW__REGISTERED_MODEL", registered.as_str()),
    ];
    let run = train(path, "first", "5", &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = run_id(&run.stderr);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(path.join("first/model.json")).unwrap()).unwrap();
    let version = manifest["model_id"].as_str().unwrap().to_owned();

    // read back through MLflow's API
    let logged = mlflow_get("runs/get", &[("run_id", &id)]).await;
    let info = &logged["run"]["info"];
    assert_eq!(info["status"], "FINISHED");
    assert_eq!(info["run_name"], format!("train {version}"));
    let data = &logged["run"]["data"];
    assert_eq!(find(&data["params"], "gbdt.n_trees"), Some(&Value::from("5")));
    let fingerprint = manifest["training"]["data_fingerprint"].as_str().unwrap();
    assert_eq!(
        find(&data["params"], "data_fingerprint"),
        Some(&Value::from(fingerprint))
    );
    assert_eq!(
        find(&data["tags"], "fraudlens.data_fingerprint"),
        Some(&Value::from(fingerprint))
    );
    let metric = |key: &str| find(&data["metrics"], key).and_then(Value::as_f64);
    assert_eq!(
        metric("valid.average_precision"),
        manifest["validation"]["average_precision"].as_f64()
    );
    assert_eq!(metric("valid.roc_auc"), manifest["validation"]["roc_auc"].as_f64());
    assert_eq!(metric("train_rows"), manifest["training"]["train_rows"].as_f64());
    let experiment_id = info["experiment_id"].as_str().unwrap();
    let found = mlflow_get("experiments/get", &[("experiment_id", experiment_id)]).await;
    assert_eq!(found["experiment"]["name"], experiment.as_str());
    // the model directory, file for file
    let listed = mlflow_get("artifacts/list", &[("run_id", &id), ("path", "model")]).await;
    let mut files: Vec<String> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["path"].as_str().unwrap().to_owned())
        .collect();
    files.sort();
    let mut expected: Vec<String> = std::fs::read_dir(path.join("first"))
        .unwrap()
        .map(|entry| format!("model/{}", entry.unwrap().file_name().to_str().unwrap()))
        .collect();
    expected.sort();
    assert_eq!(files, expected);
    // a registered model version, tagged with the fraudlens version
    let filter = format!("name='{registered}' and tags.fraudlens_version='{version}'");
    let versions = mlflow_get("model-versions/search", &[("filter", &filter)]).await;
    let first_number = versions["model_versions"][0]["version"].as_str().unwrap().to_owned();
    assert_eq!(versions["model_versions"][0]["run_id"], id.as_str());

    // the registry's production and shadow models become the aliases
    let second = train(path, "second", "8", &env);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let second_version = version_of(&path.join("second"));
    for dir in ["first", "second"] {
        ok(path, &["models", "register", dir, "--database", &db.url]);
    }
    let run = fraudlens(path, &["models", "promote", &version, "--database", &db.url], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = fraudlens(
        path,
        &["models", "shadow", &second_version, "--database", &db.url],
        &env,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let alias = |name: &'static str| {
        let registered = registered.clone();
        async move {
            mlflow_get("registered-models/alias", &[("name", &registered), ("alias", name)]).await["model_version"]
                .clone()
        }
    };
    assert_eq!(alias("champion").await["version"], first_number.as_str());
    let shadow = alias("shadow").await;
    assert_eq!(shadow["tags"][0]["value"], second_version.as_str(), "{shadow}");
    // promoting the shadow model: it is the champion, and there is no shadow
    let run = fraudlens(
        path,
        &["models", "promote", &second_version, "--database", &db.url],
        &env,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(alias("champion").await["version"], shadow["version"]);
    let url = reqwest::Url::parse_with_params(
        &format!("{uri}/api/2.0/mlflow/registered-models/alias"),
        &[("name", registered.as_str()), ("alias", "shadow")],
    )
    .unwrap();
    // no such alias: MLflow answers 400 (or 404 in other versions)
    let status = reqwest::get(url).await.unwrap().status();
    assert!(status.is_client_error(), "{status}");

    // a rollback through a server's API moves the champion too
    let server = crate::serve::Server::start_with(path, &db.url, None, &env);
    let admin = crate::serve::key(path, &db.url, "admin");
    let (status, body) = crate::serve::post(
        &reqwest::Client::new(),
        &server.url(&format!("/api/v1/models/{version}/promote")),
        &admin,
        &Value::Null,
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while alias("champion").await["version"] != first_number.as_str() {
        assert!(
            std::time::Instant::now() < deadline,
            "the champion did not follow: {}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(server.terminate(), 0);
}

#[test]
fn a_tracking_server_that_is_down_fails_the_command_loudly() {
    let dir = tempfile::tempdir().unwrap();
    // a port nothing listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uri = format!("http://127.0.0.1:{port}");
    let run = train(
        dir.path(),
        "model",
        "3",
        &[
            ("FRAUDLENS_MLFLOW__TRACKING_URI", &uri),
            ("FRAUDLENS_MLFLOW__TIMEOUT_SECONDS", "3"),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("the model was written to model"), "{}", run.stderr);
    assert!(
        run.stderr.contains("logging the run to MLflow failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&uri), "{}", run.stderr);
    assert!(dir.path().join("model/model.json").exists());
    // a setting that cannot work is refused before any training
    let run = train(
        dir.path(),
        "other",
        "3",
        &[("FRAUDLENS_MLFLOW__TRACKING_URI", "https://mlflow.example")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("plain HTTP"), "{}", run.stderr);
    assert!(!dir.path().join("other").exists());
}
