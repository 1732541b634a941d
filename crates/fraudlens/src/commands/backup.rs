//! `fraudlens backup` and `fraudlens restore`
//! ([`fraudlens_pipeline::backup`]). The age keys of an encrypted backup come
//! from the environment (`FRAUDLENS_BACKUP_AGE_RECIPIENTS` for backup,
//! `FRAUDLENS_BACKUP_AGE_IDENTITY` for restore) or from flags that name no
//! secret (`--encrypt-to` takes public keys, `--identity-file` a path), so a
//! secret key never appears on a command line.

use anyhow::{Context as _, anyhow};
use fraudlens_pipeline::backup::{self, BackupError, BackupOptions, RestoreOptions};

use super::admin::{block_on, redact_url, store_url};
use crate::cli::{BackupArgs, RestoreArgs};
use crate::config::Config;
use crate::exit::{CliResult, Failure};

/// The age recipients of `fraudlens backup` (public keys, comma- or space-separated).
const RECIPIENTS_ENV: &str = "FRAUDLENS_BACKUP_AGE_RECIPIENTS";
/// The age identities of `fraudlens restore` (secret keys, one a line).
const IDENTITY_ENV: &str = "FRAUDLENS_BACKUP_AGE_IDENTITY";

/// Writes a backup and prints its summary (or manifest).
pub fn backup(config: &Config, args: BackupArgs) -> CliResult {
    let url = store_url(config, &args.store);
    let options = BackupOptions {
        require_state_file: args.state_file.is_some(),
        state_file: Some(args.state_file.unwrap_or_else(|| config.serve.state_file.clone())),
        allow_missing_models: args.allow_missing_models,
        encrypt_to: if args.encrypt_to.is_empty() {
            std::env::var(RECIPIENTS_ENV)
                .unwrap_or_default()
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|key| !key.is_empty())
                .map(str::to_owned)
                .collect()
        } else {
            args.encrypt_to
        },
    };
    block_on(async move {
        let manifest = backup::backup(&url, &args.to, &options).await.map_err(failure)?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&manifest).map_err(|error| Failure::Runtime(error.into()))?
            );
        } else {
            let counts = &manifest.counts;
            let bytes: u64 = manifest.files.iter().map(|file| file.bytes).sum();
            println!(
                "backed up {} to {}: {} transactions, {} labels, {} audit entries, {} API keys, {} shadow scores, \
                 {} models ({} with files), entity state {}; {} files, {bytes} bytes{}",
                redact_url(&url),
                args.to,
                counts.transactions,
                counts.labels,
                counts.audit_entries,
                counts.api_keys,
                counts.shadow_scores,
                manifest.models.len(),
                manifest.models.iter().filter(|model| model.dir.is_some()).count(),
                manifest
                    .entity_state
                    .as_ref()
                    .map_or("none found".to_owned(), |state| format!("up to row {}", state.seq)),
                manifest.files.len() + 1,
                if manifest.encryption.is_some() {
                    ", encrypted (age)"
                } else {
                    ""
                },
            );
        }
        Ok(())
    })
}

/// Restores a backup into an empty store and prints what it did.
pub fn restore(config: &Config, args: RestoreArgs) -> CliResult {
    let url = store_url(config, &args.store);
    let identities = match &args.identity_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the identity file {}", path.display()))
                .map_err(Failure::Usage)?,
        ),
        None => std::env::var(IDENTITY_ENV).ok(),
    };
    let options = RestoreOptions {
        models_dir: args.models_dir,
        state_file: Some(args.state_file.unwrap_or_else(|| config.serve.state_file.clone())),
        identities,
    };
    block_on(async move {
        let report = backup::restore(&args.from, &url, &options).await.map_err(failure)?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|error| Failure::Runtime(error.into()))?
            );
        } else {
            let counts = &report.counts;
            println!(
                "restored {} (taken {}) into {}: {} transactions, {} labels, {} audit entries, {} API keys, \
                 {} shadow scores, {} models ({} relocated), entity state {}{}",
                args.from,
                report.manifest.created_at,
                redact_url(&url),
                counts.transactions,
                counts.labels,
                counts.audit_entries,
                counts.api_keys,
                counts.shadow_scores,
                counts.models,
                report.relocated.len(),
                report
                    .entity_state
                    .as_ref()
                    .map_or("none (rebuilt from the store at start)".to_owned(), |path| path
                        .display()
                        .to_string()),
                report.moved_aside.as_ref().map_or(String::new(), |path| format!(
                    "; the file there before moved to {}",
                    path.display()
                )),
            );
        }
        Ok(())
    })
}

/// A backup's or restore's error with its exit class: a backup or target
/// or target that cannot be used (not empty, another backend) is a data
/// error (65), the rest a runtime one (1).
fn failure(error: BackupError) -> Failure {
    match error {
        BackupError::Invalid(_)
        | BackupError::Store(fraudlens_store::StoreError::Invalid(_) | fraudlens_store::StoreError::Url(_)) => {
            Failure::Data(anyhow!(error))
        }
        other => Failure::Runtime(anyhow!(other)),
    }
}
