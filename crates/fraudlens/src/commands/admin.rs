//! `fraudlens keys …` and `fraudlens models …`: administration of the store
//! from the command line (the same store a server uses).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use fraudlens_pipeline::ServingModel;
pub(crate) use fraudlens_pipeline::now;
use fraudlens_pipeline::registry::{self, RegistryError};
pub(crate) use fraudlens_store::redact_url;
use fraudlens_store::{Role, Store, StoreOptions};

use crate::cli::{KeysCommand, ModelsCommand, StoreArg};
use crate::config::Config;
use crate::exit::{Classify, CliResult, Failure};

/// Runs an async command on a fresh runtime.
pub fn block_on<T, F: Future<Output = CliResult<T>>>(future: F) -> CliResult<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// The store URL every command uses: `--database`, else `store.url` (in which
/// [`Config::load`] has already put `FRAUDLENS_DATABASE_URL`, so `fraudlens
/// config` shows the URL the other commands open).
pub fn store_url(config: &Config, arg: &StoreArg) -> String {
    arg.database.clone().unwrap_or_else(|| config.store.url.clone())
}

/// Closes the store's connections, waiting at most 10 s: a connection stuck
/// in the database (behind a lock) must not keep the process from exiting.
pub async fn close_store(store: &dyn Store) {
    if tokio::time::timeout(std::time::Duration::from_secs(10), store.close())
        .await
        .is_err()
    {
        tracing::warn!("the store's connections did not close within 10 s");
    }
}

/// Opens the store (creating a SQLite file's directory).
pub async fn open_store(config: &Config, url: &str) -> CliResult<Arc<dyn Store>> {
    open_store_as(config, url, false).await
}

/// [`open_store`] for a long-running process (`serve`, `detect`): it also
/// makes and keeps the similar-case index of a PostgreSQL store.
pub async fn open_service_store(config: &Config, url: &str) -> CliResult<Arc<dyn Store>> {
    open_store_as(config, url, true).await
}

async fn open_store_as(config: &Config, url: &str, maintain_similar_index: bool) -> CliResult<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let path = Path::new(path.split('?').next().unwrap_or(path));
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    let options = StoreOptions {
        max_connections: config.store.max_connections,
        sqlite_sync: config.store.sqlite_sync,
        similar_index: config.store.similar_index,
        maintain_similar_index,
    };
    let store = fraudlens_store::connect(url, &options).await;
    match store {
        Err(error @ fraudlens_store::StoreError::Url(_)) => Err(error).usage(),
        other => Ok(other.with_context(|| format!("opening the store {}", redact_url(url)))?),
    }
}

/// `fraudlens keys`
pub fn keys(config: &Config, command: KeysCommand) -> CliResult {
    block_on(async move {
        match command {
            KeysCommand::Create { role, name, store } => {
                let role: Role = role.parse().map_err(anyhow::Error::msg).usage()?;
                let store = open_store(config, &store_url(config, &store)).await?;
                let (key, entry) = fraudlens_server::new_key(&name, role, now())
                    .map_err(|error| anyhow::anyhow!("no randomness for the key: {error}"))?;
                store.create_key(&entry).await.context("storing the key")?;
                eprintln!(
                    "created {role} key {:?} (id {}); it is shown only once:",
                    name, entry.key_id
                );
                println!("{key}");
                Ok(())
            }
            KeysCommand::List { store } => {
                let store = open_store(config, &store_url(config, &store)).await?;
                println!("{:<14} {:<8} {:<24} {:<26} revoked", "id", "role", "name", "created");
                for key in store.keys().await.context("listing keys")? {
                    println!(
                        "{:<14} {:<8} {:<24} {:<26} {}",
                        key.key_id,
                        key.role,
                        key.name,
                        key.created_at.to_string(),
                        key.revoked_at.map(|at| at.to_string()).unwrap_or_default()
                    );
                }
                Ok(())
            }
            KeysCommand::Revoke { key_id, store } => {
                let store = open_store(config, &store_url(config, &store)).await?;
                match store.revoke_key(&key_id, now(), "cli").await {
                    Ok(true) => eprintln!("revoked key {key_id}"),
                    Ok(false) => eprintln!("key {key_id} was already revoked"),
                    Err(fraudlens_store::StoreError::NotFound(what)) => {
                        return Err(anyhow::anyhow!("{what} not found")).usage();
                    }
                    Err(error) => return Err(anyhow::Error::from(error).into()),
                }
                Ok(())
            }
        }
    })
}

/// Loads and verifies a model directory (exit 65 when it is unusable).
pub fn load_model(config: &Config, dir: &Path) -> CliResult<ServingModel> {
    ServingModel::load(dir, config.security.card_hash_key.as_ref()).data()
}

/// `fraudlens models`
pub fn models(config: &Config, command: ModelsCommand) -> CliResult {
    let tracking = super::tracking::client(config)?;
    block_on(async move {
        match command {
            ModelsCommand::Register { dir, upload_to, store } => {
                let upload_to = upload_to.or_else(|| config.artifacts.upload_to.clone());
                if let Some(base) = upload_to
                    .as_ref()
                    .filter(|base| !fraudlens_pipeline::artifacts::is_remote(base))
                {
                    return Err(Failure::Usage(anyhow::anyhow!(
                        "--upload-to (artifacts.upload_to) takes an object store's URL (s3://, gs://, az://), not {base:?}"
                    )));
                }
                let mut model = load_model(config, &dir)?;
                if let Some(base) = upload_to {
                    let url = fraudlens_pipeline::artifacts::upload(&dir, &base, model.version())
                        .await
                        .context("uploading the model")?;
                    eprintln!("uploaded {} to {url}", dir.display());
                    model.origin = Some(url);
                }
                let store = open_store(config, &store_url(config, &store)).await?;
                registry::register(store.as_ref(), &model)
                    .await
                    .map_err(|error| registry_failure(error, "registering"))?;
                eprintln!(
                    "registered {} ({}) as staging",
                    model.version(),
                    model.origin.clone().unwrap_or_else(|| dir.display().to_string())
                );
                println!("{}", model.version());
                aliases(
                    tracking.as_ref(),
                    store.as_ref(),
                    &format!("{} was registered", model.version()),
                )
                .await
            }
            ModelsCommand::List { store } => {
                let store = open_store(config, &store_url(config, &store)).await?;
                println!(
                    "{:<24} {:<14} {:<26} {:<40} latest comparison",
                    "version", "stage", "registered", "path"
                );
                for model in store.models().await.context("listing models")? {
                    let latest = store
                        .comparisons(Some(&model.version), 1)
                        .await
                        .context("listing comparisons")?
                        .first()
                        .map(|entry| super::lifecycle::comparison_brief(entry, config.retrain.primary_metric))
                        .unwrap_or_else(|| "-".to_owned());
                    println!(
                        "{:<24} {:<14} {:<26} {:<40} {}",
                        model.version,
                        if model.shadow {
                            format!("{}+shadow", model.stage)
                        } else {
                            model.stage.to_string()
                        },
                        model.registered_at.to_string(),
                        model.path,
                        latest
                    );
                }
                Ok(())
            }
            ModelsCommand::Compare(args) => super::lifecycle::compare(config, args).await,
            ModelsCommand::Promote { model_version, store } => {
                let store = open_store(config, &store_url(config, &store)).await?;
                promote(config, store.as_ref(), &model_version).await?;
                aliases(
                    tracking.as_ref(),
                    store.as_ref(),
                    &format!("{model_version} was promoted"),
                )
                .await
            }
            ModelsCommand::Rollback { store } => {
                let store = open_store(config, &store_url(config, &store)).await?;
                let rollback = registry::rollback_target(store.as_ref())
                    .await
                    .map_err(|error| registry_failure(error, "listing models"))?;
                eprintln!(
                    "rolling back from {} to {}",
                    rollback.from.as_deref().unwrap_or("(none)"),
                    rollback.to
                );
                promote(config, store.as_ref(), &rollback.to).await?;
                aliases(
                    tracking.as_ref(),
                    store.as_ref(),
                    &format!("{} was promoted", rollback.to),
                )
                .await
            }
            ModelsCommand::Shadow {
                model_version, store, ..
            } => {
                let store = open_store(config, &store_url(config, &store)).await?;
                let before = registry::shadow(
                    store.as_ref(),
                    model_version.as_deref(),
                    config.security.card_hash_key.as_ref(),
                    "cli",
                )
                .await
                .map_err(|error| match error {
                    // a model that cannot shadow production is the data's fault
                    RegistryError::Replacement(_) => Failure::Data(error.into()),
                    error => registry_failure(error, "setting the shadow model"),
                })?;
                let before = before.map_or_else(String::new, |before| format!(" (instead of {before})"));
                match model_version {
                    Some(version) => eprintln!(
                        "{version} is the shadow model{before}: running servers and detectors on this store \
                         score every decision with it too within a second"
                    ),
                    None => eprintln!("no shadow model{before}"),
                }
                aliases(tracking.as_ref(), store.as_ref(), "the shadow model was changed").await
            }
        }
    })
}

/// With `[mlflow]` set, points the MLflow aliases at the registry's models.
async fn aliases(tracking: Option<&fraudlens_mlflow::Client>, store: &dyn Store, done: &str) -> CliResult {
    match tracking {
        Some(client) => super::tracking::sync_aliases(client, store, done).await,
        None => Ok(()),
    }
}

/// Promotes a version after verifying its artifact still loads and is what was registered.
async fn promote(config: &Config, store: &dyn Store, version: &str) -> CliResult {
    registry::promote(store, version, config.security.card_hash_key.as_ref(), "cli")
        .await
        .map_err(|error| registry_failure(error, "promoting"))?;
    eprintln!(
        "{version} is the production model (running servers and detectors on this store pick it up within a second)"
    );
    Ok(())
}

/// The exit class of a registry failure: usage for a version or stage that
/// is not in the registry, data for an artifact that is unusable or changed
/// since registration, runtime (with `context`) for the store.
pub fn registry_failure(error: RegistryError, context: &'static str) -> Failure {
    match error {
        RegistryError::NotRegistered(_) | RegistryError::NoProduction | RegistryError::NoPrevious => {
            Failure::Usage(error.into())
        }
        RegistryError::Unloadable { .. }
        | RegistryError::OtherVersion { .. }
        | RegistryError::ContentChanged { .. } => Failure::Data(error.into()),
        RegistryError::Replacement(_) | RegistryError::Loading | RegistryError::Path { .. } => {
            Failure::Runtime(error.into())
        }
        RegistryError::Store(error) => Failure::Runtime(anyhow::Error::from(error).context(context)),
    }
}
