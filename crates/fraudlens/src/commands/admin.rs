//! `fraudlens keys …` and `fraudlens models …`: administration of the store
//! from the command line (the same store a server uses).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use fraudlens_pipeline::ServingModel;
pub(crate) use fraudlens_pipeline::now_ms;
pub(crate) use fraudlens_store::redact_url;
use fraudlens_store::{ModelEntry, ModelStage, NewModel, Role, Store, StoreOptions};

use crate::cli::{KeysCommand, ModelsCommand, StoreArg};
use crate::config::Config;
use crate::exit::{Classify, CliResult};

/// Runs an async command on a fresh runtime.
pub fn block_on<F: Future<Output = CliResult>>(future: F) -> CliResult {
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

/// Opens the store (creating a SQLite file's directory).
pub async fn open_store(config: &Config, url: &str) -> CliResult<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let path = Path::new(path.split('?').next().unwrap_or(path));
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    let options = StoreOptions {
        max_connections: config.store.max_connections,
        sqlite_sync: config.store.sqlite_sync,
    };
    let store = fraudlens_store::connect(url, &options).await;
    match store {
        Err(error @ fraudlens_store::StoreError::Url(_)) => Err(error).usage(),
        other => Ok(other.with_context(|| format!("opening the store {}", redact_url(url)))?),
    }
}

fn format_ms(ms: i64) -> String {
    fraudlens_core::Timestamp::from_millis(ms).to_string()
}

/// `fraudlens keys`
pub fn keys(config: &Config, command: KeysCommand) -> CliResult {
    block_on(async move {
        match command {
            KeysCommand::Create { role, name, store } => {
                let role: Role = role.parse().map_err(anyhow::Error::msg).usage()?;
                let store = open_store(config, &store_url(config, &store)).await?;
                let (key, entry) = fraudlens_server::new_key(&name, role, now_ms())
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
                        format_ms(key.created_at),
                        key.revoked_at.map(format_ms).unwrap_or_default()
                    );
                }
                Ok(())
            }
            KeysCommand::Revoke { key_id, store } => {
                let store = open_store(config, &store_url(config, &store)).await?;
                match store.revoke_key(&key_id, now_ms(), "cli").await {
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

/// A registry entry for a loaded model.
pub fn model_entry(model: &ServingModel) -> anyhow::Result<NewModel> {
    let manifest = &model.artifact.manifest;
    let path = std::fs::canonicalize(&model.path).with_context(|| format!("resolving {}", model.path.display()))?;
    let summary = serde_json::json!({
        "kind": model.kind(),
        "created_at": manifest.created_at,
        "train_period": manifest.training.train_period,
        "train_rows": manifest.training.train_rows,
        "roc_auc": manifest.validation.as_ref().map(|v| v.roc_auc),
        "average_precision": manifest.validation.as_ref().map(|v| v.average_precision),
    });
    Ok(NewModel {
        version: model.version().to_owned(),
        path: path.display().to_string(),
        summary: summary.to_string(),
        feature_names: manifest.feature_names[..model.artifact.n_inputs()].to_vec(),
        registered_at: now_ms(),
        digest: model.digest.clone(),
    })
}

/// Loads and verifies a model directory (exit 65 when it is unusable).
pub fn load_model(config: &Config, dir: &Path) -> CliResult<ServingModel> {
    ServingModel::load(dir, config.security.card_hash_key.as_ref()).data()
}

/// `fraudlens models`
pub fn models(config: &Config, command: ModelsCommand) -> CliResult {
    block_on(async move {
        match command {
            ModelsCommand::Register { dir, store } => {
                let model = load_model(config, &dir)?;
                let store = open_store(config, &store_url(config, &store)).await?;
                store
                    .register_model(&model_entry(&model)?)
                    .await
                    .context("registering")?;
                eprintln!("registered {} ({}) as staging", model.version(), dir.display());
                println!("{}", model.version());
                Ok(())
            }
            ModelsCommand::List { store } => {
                let store = open_store(config, &store_url(config, &store)).await?;
                println!("{:<24} {:<11} {:<26} path", "version", "stage", "registered");
                for model in store.models().await.context("listing models")? {
                    println!(
                        "{:<24} {:<11} {:<26} {}",
                        model.version,
                        model.stage,
                        format_ms(model.registered_at),
                        model.path
                    );
                }
                Ok(())
            }
            ModelsCommand::Promote { model_version, store } => {
                let store = open_store(config, &store_url(config, &store)).await?;
                promote_checked(config, store.as_ref(), &model_version).await
            }
            ModelsCommand::Rollback { store } => {
                let store = open_store(config, &store_url(config, &store)).await?;
                let models = store.models().await.context("listing models")?;
                let current = models.iter().find(|m| m.stage == ModelStage::Production);
                let previous = models
                    .iter()
                    .filter(|m| m.stage == ModelStage::Archived && m.promoted_at.is_some())
                    .max_by_key(|m| m.promoted_at)
                    .ok_or_else(|| anyhow::anyhow!("no model was in production before"))
                    .usage()?;
                eprintln!(
                    "rolling back from {} to {}",
                    current.map_or("(none)", |m| m.version.as_str()),
                    previous.version
                );
                promote_checked(config, store.as_ref(), &previous.version).await
            }
        }
    })
}

/// Promotes a version after verifying its artifact still loads.
async fn promote_checked(config: &Config, store: &dyn Store, version: &str) -> CliResult {
    let models = store.models().await.context("listing models")?;
    let entry = models
        .iter()
        .find(|m| m.version == version)
        .ok_or_else(|| anyhow::anyhow!("model version {version:?} is not registered"))
        .usage()?;
    load_registered(config, entry)?;
    store
        .promote_model(version, now_ms(), "cli")
        .await
        .context("promoting")?;
    eprintln!("{version} is the production model (running servers: restart, or promote through the API to swap live)");
    Ok(())
}

/// Loads a registry entry's artifact, refusing one that is now another
/// version or whose files changed since registration (exit 65): a promotion
/// or a start must serve what was registered.
pub fn load_registered(config: &Config, entry: &ModelEntry) -> CliResult<ServingModel> {
    let model = load_model(config, Path::new(&entry.path))?;
    if model.version() != entry.version {
        return Err(anyhow::anyhow!(
            "the artifact at {} is now version {}, not {}",
            entry.path,
            model.version(),
            entry.version
        ))
        .data();
    }
    if !entry.content_matches(&model.digest) {
        return Err(anyhow::anyhow!(
            "model {}: the files at {} changed since it was registered; register the new content as a new version",
            entry.version,
            entry.path
        ))
        .data();
    }
    Ok(model)
}
