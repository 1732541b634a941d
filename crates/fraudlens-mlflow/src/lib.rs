//! Runs logged to an MLflow tracking server over its REST API (`/api/2.0/mlflow/…`):
//! what `fraudlens train`, `retrain` and `models compare` did — parameters,
//! metrics, tags (the training data's fingerprint among them) — the model
//! directory as the run's artifacts, and a version of a registered model
//! whose aliases (`champion`, `challenger`, `shadow`) follow fraudlens's own
//! registry, which stays the source of truth for serving.
//!
//! - **Loud, never silent.** Every call either succeeds or returns an
//!   [`MlflowError`] naming the server and what failed; the commands exit
//!   non-zero on it (what they did before, such as writing a model, stays
//!   done, and they say so). Nothing is queued. A run that fails half way is
//!   marked `FAILED` on the server when it still answers.
//! - **Artifacts through the server** (`mlflow server` serves artifacts by
//!   default): files are uploaded with `PUT /api/2.0/mlflow-artifacts/artifacts/…`,
//!   so fraudlens needs no credentials of the artifact store. A server whose
//!   runs keep artifacts elsewhere (started with `--no-serve-artifacts`) is
//!   refused with that reason.
//! - **Credentials** come from the environment MLflow's own clients read
//!   (`MLFLOW_TRACKING_TOKEN`, or `MLFLOW_TRACKING_USERNAME` and
//!   `MLFLOW_TRACKING_PASSWORD`) and are never logged or printed.
//! - **Plain HTTP only** in this build (no TLS stack is linked): an
//!   `https://` tracking URI is refused up front; put the server behind a
//!   local proxy or on a private network.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fraudlens_core::Secret;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The aliases that follow fraudlens's registry.
pub mod alias {
    /// The production model.
    pub const CHAMPION: &str = "champion";
    /// The latest candidate trained by `retrain` or compared by `models compare`.
    pub const CHALLENGER: &str = "challenger";
    /// The shadow model.
    pub const SHADOW: &str = "shadow";
}

/// The tag of a model version naming the fraudlens model version (model id).
pub const VERSION_TAG: &str = "fraudlens_version";

/// MLflow's limits per `log-batch` call.
const MAX_PARAMS: usize = 100;
const MAX_METRICS: usize = 1000;
const MAX_TAGS: usize = 100;
/// Longest parameter value every MLflow server takes.
const MAX_PARAM_CHARS: usize = 500;

/// `[mlflow]`: where runs are logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlflowSettings {
    /// The tracking server (`http://host:port`); unset: nothing is logged.
    pub tracking_uri: Option<String>,
    /// The experiment runs are logged to (created when missing).
    pub experiment: String,
    /// The registered model whose versions are fraudlens's models.
    pub registered_model: String,
    /// Longest wait for one call, in seconds.
    pub timeout_seconds: u64,
}

impl Default for MlflowSettings {
    fn default() -> Self {
        Self {
            tracking_uri: None,
            experiment: "fraudlens".to_owned(),
            registered_model: "fraudlens".to_owned(),
            timeout_seconds: 30,
        }
    }
}

/// Why a call to the tracking server failed.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The settings cannot work.
    #[error("mlflow: {0}")]
    Config(String),
    /// The server did not answer (down, wrong address, timeout).
    #[error("mlflow at {uri} did not answer ({endpoint}): {error}")]
    Unreachable {
        /// The tracking URI.
        uri: String,
        /// The call.
        endpoint: String,
        /// Why.
        error: String,
    },
    /// The server answered with an error.
    #[error("mlflow at {uri} refused {endpoint}: HTTP {status} {code}: {message}")]
    Api {
        /// The tracking URI.
        uri: String,
        /// The call.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// MLflow's `error_code` (e.g. `RESOURCE_DOES_NOT_EXIST`).
        code: String,
        /// MLflow's message.
        message: String,
    },
    /// A file to upload cannot be read.
    #[error("mlflow: reading {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

impl MlflowError {
    /// MLflow's error code, for an error the server answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// How the client authenticates.
#[derive(Clone)]
enum Auth {
    Bearer(Secret),
    Basic(String, Secret),
}

/// A client of one tracking server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    uri: String,
    auth: Option<Auth>,
    settings: MlflowSettings,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("uri", &self.uri).finish_non_exhaustive()
    }
}

/// A run to log.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// The run's name (`train gbdt-…`).
    pub name: String,
    /// Tags (`fraudlens.command`, the data fingerprint, …).
    pub tags: Vec<(String, String)>,
    /// Parameters.
    pub params: Vec<(String, String)>,
    /// Metrics (a value that is not finite is left out).
    pub metrics: Vec<(String, f64)>,
    /// A model directory: its files become the run's artifacts under `model/`.
    pub artifacts: Option<PathBuf>,
    /// With [`Self::artifacts`]: the fraudlens model version they hold,
    /// registered as a version of the registered model (tagged [`VERSION_TAG`]).
    pub model_version: Option<String>,
    /// When it started (milliseconds since the epoch).
    pub started_ms: i64,
}

/// A logged run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRun {
    /// The run's id.
    pub run_id: String,
    /// Its experiment's id.
    pub experiment_id: String,
    /// Where its artifacts are.
    pub artifact_uri: String,
    /// The registered model version created for it (MLflow's version number).
    pub registered_version: Option<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

/// `'value'` quoted for an MLflow filter string.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Client {
    /// A client for `settings.tracking_uri` (`None` when unset), with the
    /// credentials of the environment (`MLFLOW_TRACKING_TOKEN`, or
    /// `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`).
    pub fn from_settings(settings: &MlflowSettings) -> Result<Option<Self>, MlflowError> {
        let Some(uri) = settings.tracking_uri.as_deref().filter(|uri| !uri.trim().is_empty()) else {
            return Ok(None);
        };
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let auth = match (
            env("MLFLOW_TRACKING_TOKEN"),
            env("MLFLOW_TRACKING_USERNAME"),
            env("MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Some(token), _, _) => Some(Auth::Bearer(Secret::new(token))),
            (None, Some(user), Some(password)) => Some(Auth::Basic(user, Secret::new(password))),
            _ => None,
        };
        Self::new(uri, settings, auth).map(Some)
    }

    fn new(uri: &str, settings: &MlflowSettings, auth: Option<Auth>) -> Result<Self, MlflowError> {
        let uri = uri.trim().trim_end_matches('/').to_owned();
        if uri.starts_with("https://") {
            return Err(MlflowError::Config(format!(
                "{uri}: this build speaks plain HTTP only (no TLS stack is linked); reach the server over \
                 http:// (a private network, or a local proxy)"
            )));
        }
        let authority = uri
            .strip_prefix("http://")
            .ok_or_else(|| MlflowError::Config(format!("mlflow.tracking_uri {uri:?} is not an http:// URL")))?;
        if authority.is_empty() || authority.contains('@') {
            return Err(MlflowError::Config(
                "mlflow.tracking_uri needs a host, and no credentials in it (use MLFLOW_TRACKING_TOKEN or \
                 MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD)"
                    .to_owned(),
            ));
        }
        if settings.experiment.trim().is_empty() || settings.registered_model.trim().is_empty() {
            return Err(MlflowError::Config(
                "mlflow.experiment and mlflow.registered_model must not be empty".to_owned(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_seconds.max(1)))
            .connect_timeout(Duration::from_secs(settings.timeout_seconds.clamp(1, 10)))
            .build()
            .map_err(|error| MlflowError::Config(error.to_string()))?;
        Ok(Self {
            http,
            uri,
            auth,
            settings: settings.clone(),
        })
    }

    /// The tracking URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The settings.
    pub fn settings(&self) -> &MlflowSettings {
        &self.settings
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.uri));
        match &self.auth {
            Some(Auth::Bearer(token)) => request.bearer_auth(token.expose()),
            Some(Auth::Basic(user, password)) => request.basic_auth(user, Some(password.expose())),
            None => request,
        }
    }

    async fn send(&self, endpoint: &str, request: reqwest::RequestBuilder) -> Result<Value, MlflowError> {
        let unreachable = |error: reqwest::Error| MlflowError::Unreachable {
            uri: self.uri.clone(),
            endpoint: endpoint.to_owned(),
            error: error.without_url().to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        let body: Value = if text.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| json!({ "message": text }))
        };
        if status.is_success() {
            return Ok(body);
        }
        let field = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut message = field("message");
        message.truncate(500);
        Err(MlflowError::Api {
            uri: self.uri.clone(),
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            code: field("error_code"),
            message,
        })
    }

    /// `POST /api/2.0/mlflow/{endpoint}` with a JSON body.
    async fn post(&self, endpoint: &str, body: &Value) -> Result<Value, MlflowError> {
        let request = self
            .request(Method::POST, &format!("/api/2.0/mlflow/{endpoint}"))
            .json(body);
        self.send(endpoint, request).await
    }

    /// `GET /api/2.0/mlflow/{endpoint}` with a query.
    async fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
        let request = self
            .request(Method::GET, &format!("/api/2.0/mlflow/{endpoint}"))
            .query(query);
        self.send(endpoint, request).await
    }

    /// The id of the experiment named `name`, created if missing.
    pub async fn experiment_id(&self, name: &str) -> Result<String, MlflowError> {
        match self.get("experiments/get-by-name", &[("experiment_name", name)]).await {
            Ok(found) => return Ok(string_at(&found, &["experiment", "experiment_id"])),
            Err(error) if error.code() == Some("RESOURCE_DOES_NOT_EXIST") => {}
            Err(error) => return Err(error),
        }
        match self.post("experiments/create", &json!({ "name": name })).await {
            Ok(created) => Ok(string_at(&created, &["experiment_id"])),
            // created meanwhile by another process
            Err(error) if error.code() == Some("RESOURCE_ALREADY_EXISTS") => {
                let found = self
                    .get("experiments/get-by-name", &[("experiment_name", name)])
                    .await?;
                Ok(string_at(&found, &["experiment", "experiment_id"]))
            }
            Err(error) => Err(error),
        }
    }

    /// Logs `run` whole: created, its parameters, metrics and tags, its
    /// artifacts, its registered model version, then `FINISHED`. On an
    /// error after the run was created, the run is marked `FAILED` (if the
    /// server still answers) and the error returned.
    pub async fn log_run(&self, run: &Run) -> Result<LoggedRun, MlflowError> {
        let experiment_id = self.experiment_id(&self.settings.experiment).await?;
        let created = self
            .post(
                "runs/create",
                &json!({
                    "experiment_id": experiment_id,
                    "run_name": run.name,
                    "start_time": run.started_ms,
                    "tags": [{"key": "mlflow.source.name", "value": "fraudlens"},
                             {"key": "mlflow.source.type", "value": "LOCAL"}],
                }),
            )
            .await?;
        let run_id = string_at(&created, &["run", "info", "run_id"]);
        let artifact_uri = string_at(&created, &["run", "info", "artifact_uri"]);
        let logged = self.fill_run(run, &run_id, &artifact_uri).await;
        let status = if logged.is_ok() { "FINISHED" } else { "FAILED" };
        let ended = self
            .post(
                "runs/update",
                &json!({ "run_id": run_id, "status": status, "end_time": now_ms() }),
            )
            .await;
        let registered_version = logged?;
        ended?;
        Ok(LoggedRun {
            run_id,
            experiment_id,
            artifact_uri,
            registered_version,
        })
    }

    async fn fill_run(&self, run: &Run, run_id: &str, artifact_uri: &str) -> Result<Option<String>, MlflowError> {
        let at = now_ms();
        let params: Vec<Value> = run
            .params
            .iter()
            .map(|(key, value)| {
                let mut value = value.clone();
                if value.len() > MAX_PARAM_CHARS {
                    let mut cut = MAX_PARAM_CHARS - 3;
                    while !value.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    value.truncate(cut);
                    value.push_str("...");
                }
                json!({ "key": key, "value": value })
            })
            .collect();
        let metrics: Vec<Value> = run
            .metrics
            .iter()
            .filter(|(_, value)| value.is_finite())
            .map(|(key, value)| json!({ "key": key, "value": value, "timestamp": at, "step": 0 }))
            .collect();
        let tags: Vec<Value> = run
            .tags
            .iter()
            .map(|(key, value)| json!({ "key": key, "value": value }))
            .collect();
        // MLflow takes at most 100 params, 1000 metrics and 100 tags per call
        let batches = params
            .chunks(MAX_PARAMS)
            .len()
            .max(metrics.chunks(MAX_METRICS).len())
            .max(tags.chunks(MAX_TAGS).len());
        for batch in 0..batches {
            let slice = |items: &[Value], size: usize| -> Vec<Value> {
                items.chunks(size).nth(batch).map(<[Value]>::to_vec).unwrap_or_default()
            };
            self.post(
                "runs/log-batch",
                &json!({
                    "run_id": run_id,
                    "params": slice(&params, MAX_PARAMS),
                    "metrics": slice(&metrics, MAX_METRICS),
                    "tags": slice(&tags, MAX_TAGS),
                }),
            )
            .await?;
        }
        let Some(dir) = &run.artifacts else {
            return Ok(None);
        };
        self.upload_dir(artifact_uri, dir, "model").await?;
        match &run.model_version {
            Some(version) => self
                .register_version(version, &format!("{artifact_uri}/model"), run_id)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// Uploads the files of `dir` (not its subdirectories' — a model
    /// directory has none) under `prefix` of the run's artifacts.
    async fn upload_dir(&self, artifact_uri: &str, dir: &Path, prefix: &str) -> Result<(), MlflowError> {
        let base = artifact_path(artifact_uri).ok_or_else(|| {
            MlflowError::Config(format!(
                "the server keeps this run's artifacts at {artifact_uri}, which it does not serve: \
                 start it with --serve-artifacts (the default) so fraudlens can upload through it"
            ))
        })?;
        let io = |path: &Path, error| MlflowError::Io {
            path: path.to_owned(),
            error,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|error| io(dir, error))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        for path in files {
            let bytes = std::fs::read(&path).map_err(|error| io(&path, error))?;
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("file");
            let endpoint = format!("mlflow-artifacts/artifacts/{base}/{prefix}/{name}");
            let request = self
                .request(Method::PUT, &format!("/api/2.0/{endpoint}"))
                .header("content-type", "application/octet-stream")
                .body(bytes);
            self.send(&endpoint, request).await?;
        }
        Ok(())
    }

    /// The registered model's version holding fraudlens model `version`, if any.
    pub async fn find_version(&self, version: &str) -> Result<Option<String>, MlflowError> {
        let filter = format!(
            "name={} and tags.{VERSION_TAG}={}",
            quoted(&self.settings.registered_model),
            quoted(version)
        );
        let found = self.get("model-versions/search", &[("filter", &filter)]).await?;
        let versions = found
            .get("model_versions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(versions
            .iter()
            .filter_map(|entry| entry.get("version").and_then(Value::as_str))
            .filter_map(|number| number.parse::<u64>().ok())
            .max()
            .map(|number| number.to_string()))
    }

    /// A version of the registered model (created when missing) for
    /// fraudlens model `version`, from `source`; an existing one is kept.
    async fn register_version(&self, version: &str, source: &str, run_id: &str) -> Result<String, MlflowError> {
        let name = &self.settings.registered_model;
        match self.post("registered-models/create", &json!({ "name": name })).await {
            Ok(_) => {}
            Err(error) if error.code() == Some("RESOURCE_ALREADY_EXISTS") => {}
            Err(error) => return Err(error),
        }
        if let Some(existing) = self.find_version(version).await? {
            return Ok(existing);
        }
        let created = self
            .post(
                "model-versions/create",
                &json!({
                    "name": name,
                    "source": source,
                    "run_id": run_id,
                    "tags": [{"key": VERSION_TAG, "value": version}],
                    "description": format!("fraudlens model {version}"),
                }),
            )
            .await?;
        Ok(string_at(&created, &["model_version", "version"]))
    }

    /// Points each alias at the registered model's version of the fraudlens
    /// model named beside it, or removes it (`None`, or a model never logged
    /// to MLflow): the aliases say what fraudlens's registry says.
    pub async fn sync_aliases(&self, wanted: &[(&str, Option<&str>)]) -> Result<(), MlflowError> {
        let name = &self.settings.registered_model;
        for (alias, version) in wanted {
            let number = match version {
                Some(version) => self.find_version(version).await?,
                None => None,
            };
            match number {
                Some(number) => {
                    self.post(
                        "registered-models/alias",
                        &json!({ "name": name, "alias": alias, "version": number }),
                    )
                    .await?;
                }
                None => {
                    let request = self
                        .request(Method::DELETE, "/api/2.0/mlflow/registered-models/alias")
                        .json(&json!({ "name": name, "alias": alias }));
                    match self.send("registered-models/alias", request).await {
                        Ok(_) => {}
                        // no such alias, or no such registered model yet: nothing to remove
                        Err(error)
                            if matches!(
                                error.code(),
                                Some("RESOURCE_DOES_NOT_EXIST" | "INVALID_PARAMETER_VALUE")
                            ) => {}
                        Err(error) => return Err(error),
                    }
                }
            }
        }
        Ok(())
    }

    /// Points `champion`, `challenger` and `shadow` at the registered
    /// versions of the fraudlens models holding those roles ([`Self::sync_aliases`]).
    pub async fn follow_roles(
        &self,
        production: Option<&str>,
        challenger: Option<&str>,
        shadow: Option<&str>,
    ) -> Result<(), MlflowError> {
        self.sync_aliases(&[
            (alias::CHAMPION, production),
            (alias::CHALLENGER, challenger),
            (alias::SHADOW, shadow),
        ])
        .await
    }

    /// A run as the server returns it (`runs/get`).
    pub async fn run(&self, run_id: &str) -> Result<Value, MlflowError> {
        self.get("runs/get", &[("run_id", run_id)]).await
    }

    /// The artifacts of a run under `path` (`artifacts/list`).
    pub async fn artifacts(&self, run_id: &str, path: &str) -> Result<Value, MlflowError> {
        self.get("artifacts/list", &[("run_id", run_id), ("path", path)]).await
    }

    /// The version an alias points at (`None`: no such alias).
    pub async fn alias(&self, alias: &str) -> Result<Option<Value>, MlflowError> {
        match self
            .get(
                "registered-models/alias",
                &[("name", &self.settings.registered_model), ("alias", alias)],
            )
            .await
        {
            Ok(found) => Ok(found.get("model_version").cloned()),
            Err(error)
                if matches!(
                    error.code(),
                    Some("RESOURCE_DOES_NOT_EXIST" | "INVALID_PARAMETER_VALUE")
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }
}

/// The path of a run's artifacts on the server's artifact proxy
/// (`mlflow-artifacts:/1/abc/artifacts` → `1/abc/artifacts`); `None` for
/// artifacts the server does not serve.
fn artifact_path(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    // `mlflow-artifacts://host:port/path` names the server itself
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map_or("", |(_, path)| path),
        None => rest.trim_start_matches('/'),
    };
    (!path.is_empty()).then(|| path.trim_end_matches('/').to_owned())
}

fn string_at(value: &Value, path: &[&str]) -> String {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_paths_of_the_servers_proxy() {
        assert_eq!(
            artifact_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            artifact_path("mlflow-artifacts://127.0.0.1:5000/1/abc/artifacts/").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(artifact_path("s3://bucket/1/abc/artifacts"), None);
        assert_eq!(artifact_path("mlflow-artifacts:"), None);
    }

    #[test]
    fn filter_values_are_quoted() {
        assert_eq!(quoted("gbdt-1"), "'gbdt-1'");
        assert_eq!(quoted("it's"), "'it\\'s'");
    }

    #[test]
    fn settings_are_checked_before_any_call() {
        let settings = MlflowSettings::default();
        let refuse = |uri: &str| Client::new(uri, &settings, None).unwrap_err().to_string();
        assert!(refuse("https://mlflow.example").contains("plain HTTP"));
        assert!(refuse("ftp://x").contains("not an http:// URL"));
        assert!(refuse("http://user:secret@host").contains("no credentials"));
        assert!(!refuse("http://user:secret@host").contains("secret"));
        let client = Client::new("http://127.0.0.1:5000/", &settings, None).unwrap();
        assert_eq!(client.uri(), "http://127.0.0.1:5000");
        assert!(
            Client::from_settings(&MlflowSettings::default()).unwrap().is_none(),
            "unset: nothing is logged"
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        // accepts connections and never answers
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                held.push(stream);
            }
        });
        let settings = MlflowSettings {
            timeout_seconds: 1,
            ..MlflowSettings::default()
        };
        let client = Client::new(&format!("http://127.0.0.1:{port}"), &settings, None).unwrap();
        let error = client.log_run(&Run::default()).await.unwrap_err();
        assert!(matches!(error, MlflowError::Unreachable { .. }), "{error}");
        assert!(error.to_string().contains("experiments/get-by-name"), "{error}");
    }

    #[tokio::test]
    async fn a_server_that_is_down_is_an_error_naming_it() {
        // a port nothing listens on
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = MlflowSettings {
            timeout_seconds: 2,
            ..MlflowSettings::default()
        };
        let client = Client::new(&format!("http://127.0.0.1:{port}"), &settings, None).unwrap();
        let error = client.log_run(&Run::default()).await.unwrap_err();
        assert!(matches!(error, MlflowError::Unreachable { .. }), "{error}");
        assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
    }
}
