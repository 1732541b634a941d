//! Model directories on object storage: a registry entry's path is a local
//! directory (a plain path, or a `file://` URL) or the URL of a directory
//! on an object store (`s3://bucket/prefix/VERSION`, `gs://…`, `az://…`,
//! through the `object_store` crate).
//!
//! - **Upload** ([`upload`], `fraudlens models register DIR --upload-to URL`):
//!   every file of a checked model directory goes to `URL/VERSION/FILE`,
//!   `SHA256SUMS` last, so a directory whose checksum file is there is whole.
//! - **Download** ([`local_dir`], on every load of a registry entry:
//!   `serve`, `detect`, promotions, the registry watcher): `SHA256SUMS` first,
//!   then each file it lists, into a fresh directory of the cache
//!   ([`ArtifactSettings::cache_dir`]) renamed into place once complete, named
//!   by the version and the registered content digest. The caller then loads
//!   it as any directory: the checksums are verified and the content digest
//!   must be the registered one, so a corrupt, truncated or replaced object
//!   is refused and the model serving keeps serving. A cached directory
//!   that no longer loads is downloaded again.
//! - **Credentials** come from the environment each store's own clients
//!   read (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//!   `AWS_ENDPOINT`, `AWS_ALLOW_HTTP` for an S3-compatible server;
//!   `GOOGLE_SERVICE_ACCOUNT`; `AZURE_STORAGE_ACCOUNT_NAME`, …) and are never
//!   logged. Calls time out after 30 s and are retried 3 times at most, so
//!   a store that is down delays a promotion by a bounded time and is then
//!   reported.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use serde::{Deserialize, Serialize};

/// The file naming every other file of a model directory with its checksum.
const SUMS: &str = "SHA256SUMS";

/// `[artifacts]`: where model directories go and are cached.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactSettings {
    /// Where `models register` uploads a model directory (`s3://bucket/prefix`,
    /// `gs://…`, `az://…`); unset: the registry keeps the local path.
    pub upload_to: Option<String>,
    /// Where downloaded models are kept (default: `fraudlens-models` in the
    /// system's temporary directory).
    pub cache_dir: Option<PathBuf>,
}

static CACHE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Sets the cache directory of this process (once, at start; later calls
/// are ignored).
pub fn configure(settings: &ArtifactSettings) {
    if let Some(dir) = &settings.cache_dir {
        let _ = CACHE_DIR.set(dir.clone());
    }
}

fn cache_dir() -> PathBuf {
    CACHE_DIR
        .get()
        .cloned()
        .unwrap_or_else(|| std::env::temp_dir().join("fraudlens-models"))
}

/// Why a model directory cannot be uploaded or downloaded.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The location is not one this build reads.
    #[error("{0}")]
    Location(String),
    /// The object store failed (missing object, refused, unreachable).
    #[error("object store {url}: {error}")]
    Store {
        /// What was read or written.
        url: String,
        /// Why.
        error: String,
    },
    /// A local file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// Whether `location` names an object store (not a local directory).
pub fn is_remote(location: &str) -> bool {
    ["s3://", "s3a://", "gs://", "az://", "azure://", "abfs://", "abfss://"]
        .iter()
        .any(|scheme| location.starts_with(scheme))
}

/// A local directory named by `location` (a plain path or a `file://` URL);
/// `None` for an object store's URL.
pub fn local_path(location: &str) -> Option<PathBuf> {
    if is_remote(location) {
        return None;
    }
    match location.strip_prefix("file://") {
        Some(path) => Some(PathBuf::from(path)),
        None => Some(PathBuf::from(location)),
    }
}

/// An object store's error with its causes (the outermost alone often says little).
pub(crate) fn chain(error: &object_store::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The store of `url` and the object path it names, with bounded timeouts and retries.
pub(crate) fn open(url: &str) -> Result<(Box<dyn ObjectStore>, ObjectPath), ArtifactError> {
    let parsed = url::Url::parse(url).map_err(|error| ArtifactError::Location(format!("{url}: {error}")))?;
    let refuse = |error: object_store::Error| ArtifactError::Store {
        url: url.to_owned(),
        error: chain(&error),
    };
    let retry = RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(60),
        ..RetryConfig::default()
    };
    // these options replace those the builders read from the environment: plain HTTP stays as asked
    let allow_http = |var: &str| std::env::var(var).is_ok_and(|value| matches!(value.trim(), "true" | "1"));
    let options = |var: &str| {
        ClientOptions::new()
            .with_timeout(Duration::from_secs(30))
            .with_connect_timeout(Duration::from_secs(10))
            .with_allow_http(allow_http(var))
    };
    let store: Box<dyn ObjectStore> = match parsed.scheme() {
        "s3" | "s3a" => Box::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .with_retry(retry)
                .with_client_options(options("AWS_ALLOW_HTTP"))
                .build()
                .map_err(refuse)?,
        ),
        "gs" => Box::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .with_retry(retry)
                .with_client_options(options("GOOGLE_ALLOW_HTTP"))
                .build()
                .map_err(refuse)?,
        ),
        "az" | "azure" | "abfs" | "abfss" => Box::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .with_retry(retry)
                .with_client_options(options("AZURE_ALLOW_HTTP"))
                .build()
                .map_err(refuse)?,
        ),
        other => {
            return Err(ArtifactError::Location(format!(
                "{url}: model locations are local directories or s3://, gs://, az:// URLs, not {other}://"
            )));
        }
    };
    let path = ObjectPath::from_url_path(parsed.path()).map_err(|error| ArtifactError::Store {
        url: url.to_owned(),
        error: error.to_string(),
    })?;
    Ok((store, path))
}

/// Uploads the files of model directory `dir` (checked by the caller) to
/// `base/version/`, `SHA256SUMS` last; returns the directory's URL.
pub async fn upload(dir: &Path, base: &str, version: &str) -> Result<String, ArtifactError> {
    let url = format!("{}/{version}", base.trim_end_matches('/'));
    let (store, prefix) = open(&url)?;
    let io = |path: &Path, error| ArtifactError::Io {
        path: path.to_owned(),
        error,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|error| io(dir, error))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    // the checksum file last: a directory whose SHA256SUMS is there is whole
    files.sort_by_key(|path| (path.file_name().is_some_and(|name| name == SUMS), path.clone()));
    for path in files {
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        let bytes = std::fs::read(&path).map_err(|error| io(&path, error))?;
        store
            .put(&prefix.clone().join(name), PutPayload::from(bytes))
            .await
            .map_err(|error| ArtifactError::Store {
                url: format!("{url}/{name}"),
                error: chain(&error),
            })?;
    }
    Ok(url)
}

/// The local directory of a registry entry's `location`: the path itself,
/// or the cached download of `version` with content `digest` (downloaded
/// when missing or when `refresh`).
pub async fn local_dir(location: &str, version: &str, digest: &str, refresh: bool) -> Result<PathBuf, ArtifactError> {
    if let Some(path) = local_path(location) {
        return Ok(path);
    }
    let safe = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect()
    };
    let cache = cache_dir();
    let dir = cache.join(format!("{}-{}", safe(version), safe(&digest[..digest.len().min(16)])));
    if dir.join(SUMS).is_file() && !refresh {
        return Ok(dir);
    }
    let io = |path: &Path, error| ArtifactError::Io {
        path: path.to_owned(),
        error,
    };
    std::fs::create_dir_all(&cache).map_err(|error| io(&cache, error))?;
    let (store, prefix) = open(location)?;
    let get = |name: String| {
        let store = &store;
        let object = prefix.clone().join(name.as_str());
        async move {
            let read = async { store.get(&object).await?.bytes().await };
            read.await.map_err(|error| ArtifactError::Store {
                url: format!("{}/{name}", location.trim_end_matches('/')),
                error: chain(&error),
            })
        }
    };
    let sums = get(SUMS.to_owned()).await?;
    let listed: Vec<String> = String::from_utf8_lossy(&sums)
        .lines()
        .filter_map(|line| line.split_once("  ").map(|(_, file)| file.trim().to_owned()))
        .collect();
    // a fresh directory, renamed into place once whole
    let partial = cache.join(format!(".partial-{}-{}", safe(version), std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|error| io(&partial, error))?;
    for name in &listed {
        // SHA256SUMS names files of the directory, never paths out of it
        if name.is_empty() || name.contains('/') || name.contains('\\') || name == ".." || name == "." {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(ArtifactError::Store {
                url: location.to_owned(),
                error: format!("{SUMS} names {name:?}, which is not a file of the directory"),
            });
        }
        let bytes = match get(name.clone()).await {
            Ok(bytes) => bytes,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(error);
            }
        };
        let path = partial.join(name);
        std::fs::write(&path, &bytes).map_err(|error| io(&path, error))?;
    }
    let path = partial.join(SUMS);
    std::fs::write(&path, &sums).map_err(|error| io(&path, error))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir).map_err(|error| io(&dir, error))?;
    tracing::info!(version, location, dir = %dir.display(), "model downloaded");
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_local_or_object_store_urls() {
        assert_eq!(local_path("/models/v1"), Some(PathBuf::from("/models/v1")));
        assert_eq!(local_path("file:///models/v1"), Some(PathBuf::from("/models/v1")));
        assert_eq!(local_path("s3://bucket/models/v1"), None);
        assert!(is_remote("gs://bucket/m") && is_remote("az://container/m"));
        assert!(matches!(open("ftp://host/m"), Err(ArtifactError::Location(_))));
    }
}
