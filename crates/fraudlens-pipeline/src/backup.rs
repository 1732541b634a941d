//! Backup and restore of everything a fraudlens deployment keeps: the store
//! (decisions, reviews, labels, audit, registry, keys, shadow scores), the
//! files of every registered model, and the entity-state snapshot.
//!
//! A backup is a directory (or the same files under an object store's
//! prefix, `s3://bucket/prefix`):
//!
//! | file | what |
//! |---|---|
//! | `store.sqlite`, `shadow.sqlite` or `store.pgdump` | the database ([`fraudlens_store::backup`]) |
//! | `entity-state.bin` | the entity-state snapshot, when there was one |
//! | `models/VERSION/…` | each registered model's files |
//! | `SHA256SUMS` | every file above with its SHA-256 (`sha256sum -c SHA256SUMS`) |
//! | `MANIFEST.json` | what it holds (counts, models, the snapshot's position), every file with its size and SHA-256; written last |
//!
//! - **Consistency while serving.** The snapshot file is copied *before*
//!   the database: its position (the last store row it has seen) is then at
//!   most the copy's newest row, and a server started on the restored store
//!   replays the rows after it. The database copy is one transaction's view.
//! - **Whole or absent.** A local backup is written to `DIR.partial-PID` and
//!   renamed to `DIR` when complete; on an object store `MANIFEST.json` goes
//!   up last, and restore reads nothing without it.
//! - **Restore** checks every file against the manifest before writing
//!   anything, restores the database into an empty store, then checks that
//!   the restored store holds exactly the counts the manifest lists. A model
//!   whose registered local directory is missing (or holds other files) is
//!   copied to the models directory and the registry pointed at it; models
//!   on object storage stay where they are. The snapshot replaces any file
//!   at the target path (one found there belonged to another store: it is
//!   moved aside, never deleted).
//! - **Encryption** (optional): with age recipients (X25519 public keys,
//!   `age1…`), every file but `SHA256SUMS` and `MANIFEST.json` is written as
//!   an age file (`NAME.age`, readable by the `age` tool too) and its
//!   plaintext never stays in the backup's directory; the checksums are of
//!   the encrypted files, so a backup is verified without its key. Restore
//!   takes the matching identities (`AGE-SECRET-KEY-1…`) and decrypts into a
//!   private temporary directory first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fraudlens_store::backup::{self as db, Counts, RegisteredModel};
use object_store::ObjectStoreExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::artifacts;

/// The manifest's file name.
pub const MANIFEST: &str = "MANIFEST.json";
/// The checksum file's name.
pub const SUMS: &str = "SHA256SUMS";
/// The snapshot's file name in a backup.
pub const STATE: &str = "entity-state.bin";
/// What [`Manifest::format`] says.
pub const FORMAT: &str = "fraudlens-backup/1";

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] fraudlens_store::StoreError),
    /// A model's files could not be read or fetched.
    #[error(transparent)]
    Artifact(#[from] artifacts::ArtifactError),
    /// A local file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The backup is not usable (missing, incomplete, corrupt), or the target is not empty.
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |error| BackupError::Io {
        path: path.to_owned(),
        error,
    }
}

/// One file of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its path in the backup (`/`-separated).
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// A registered model in a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// The version.
    pub version: String,
    /// `staging`, `production` or `archived`.
    pub stage: String,
    /// Where the registry had it.
    pub location: String,
    /// The registered content digest.
    pub digest: Option<String>,
    /// Its files' directory in the backup; `None` when its files could not
    /// be read at backup time (the registry entry is restored all the same).
    pub dir: Option<String>,
}

/// The entity-state snapshot in a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    /// Where it was taken from.
    pub source: String,
    /// The last store row it had seen.
    pub seq: i64,
}

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// When it was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The fraudlens version that took it.
    pub fraudlens_version: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The store, its password hidden.
    pub store: String,
    /// What the database copy holds.
    pub counts: Counts,
    /// Every registered model.
    pub models: Vec<ModelEntry>,
    /// The entity-state snapshot, if one was found.
    pub entity_state: Option<StateEntry>,
    /// `age` when the files are encrypted (each `NAME.age`); `None` for plain files.
    #[serde(default)]
    pub encryption: Option<String>,
    /// Every file but the manifest, with its checksum.
    pub files: Vec<FileEntry>,
}

/// What to back up besides the store.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// The entity-state snapshot to include.
    pub state_file: Option<PathBuf>,
    /// Whether a missing `state_file` fails the backup (a path given
    /// explicitly) or is recorded as no snapshot (the configured default).
    pub require_state_file: bool,
    /// Whether a registered model whose files cannot be read is backed up
    /// without them (else the backup fails).
    pub allow_missing_models: bool,
    /// age recipients (`age1…`) to encrypt every file to; empty: plain files.
    pub encrypt_to: Vec<String>,
}

/// Backs up the store `url` (and its models and snapshot) to `to`: a local
/// directory that does not exist yet (or is empty), or an object store's
/// prefix without a `MANIFEST.json`.
pub async fn backup(url: &str, to: &str, options: &BackupOptions) -> Result<Manifest, BackupError> {
    let remote = artifacts::is_remote(to);
    let final_dir = artifacts::local_path(to);
    if let Some(dir) = &final_dir
        && dir.exists()
        && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some()
    {
        return Err(BackupError::Invalid(format!(
            "{} exists and is not empty: back up into a new directory",
            dir.display()
        )));
    }
    if remote && remote_manifest(to).await?.is_some() {
        return Err(BackupError::Invalid(format!(
            "{to} holds a backup already ({MANIFEST}): choose another prefix"
        )));
    }
    // readable by this user only (a backup holds every decision and the key
    // hashes), and never a directory someone else made first
    let work = match &final_dir {
        Some(dir) => {
            let name = dir
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let parent = dir
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            tempfile::Builder::new()
                .prefix(&format!(".{name}.partial-"))
                .tempdir_in(parent)
                .map_err(io(parent))?
                .keep()
        }
        None => tempfile::Builder::new()
            .prefix("fraudlens-backup-")
            .tempdir()
            .map_err(io(&std::env::temp_dir()))?
            .keep(),
    };
    let written = write_backup(url, &work, options).await;
    let manifest = match written {
        Ok(manifest) => manifest,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(error);
        }
    };
    match final_dir {
        Some(dir) => {
            if dir.exists() {
                // an empty directory: replaced by the complete backup
                std::fs::remove_dir(&dir).map_err(io(&dir))?;
            }
            std::fs::rename(&work, &dir).map_err(io(&dir))?;
            sync_dir(dir.parent());
        }
        None => {
            let uploaded = upload(&work, to, &manifest).await;
            let _ = std::fs::remove_dir_all(&work);
            uploaded?;
        }
    }
    Ok(manifest)
}

/// The backup's files in `dir`, `MANIFEST.json` last.
async fn write_backup(url: &str, dir: &Path, options: &BackupOptions) -> Result<Manifest, BackupError> {
    // an encrypted backup's plaintext is written to a private temporary
    // directory (removed when done, whatever happens), never next to the
    // backup; its recipients are checked before anything is written
    let recipients = recipients(&options.encrypt_to)?;
    let staging = if recipients.is_empty() {
        None
    } else {
        Some(
            tempfile::Builder::new()
                .prefix("fraudlens-backup-plain-")
                .tempdir()
                .map_err(io(&std::env::temp_dir()))?,
        )
    };
    let plain = staging.as_ref().map_or(dir, |staging| staging.path());
    // the snapshot first: its position is then at most the database copy's newest row
    if let Some(path) = &options.state_file
        && options.require_state_file
        && !path.is_file()
    {
        return Err(BackupError::Invalid(format!(
            "no entity-state snapshot at {}",
            path.display()
        )));
    }
    let entity_state = match options.state_file.as_deref().filter(|path| path.is_file()) {
        Some(path) => {
            let target = plain.join(STATE);
            std::fs::copy(path, &target).map_err(io(path))?;
            let bytes = std::fs::read(&target).map_err(io(&target))?;
            let seq = crate::state::StateFile::position(&bytes);
            Some(StateEntry {
                source: path.display().to_string(),
                seq,
            })
        }
        None => None,
    };
    let dump = db::dump(url, plain).await?;
    if let Some(state) = &entity_state
        && state.seq > dump.counts.last_seq
    {
        return Err(BackupError::Invalid(format!(
            "the entity-state snapshot {} has seen row {} but the store's newest is {}: it belongs to another store",
            state.source, state.seq, dump.counts.last_seq
        )));
    }
    let mut models = Vec::with_capacity(dump.models.len());
    for (index, model) in dump.models.iter().enumerate() {
        let entry = copy_model(model, index, plain).await?;
        if entry.dir.is_none() && !options.allow_missing_models {
            return Err(BackupError::Invalid(format!(
                "the files of model {} ({}) cannot be read: restore them, or back up without them \
                 (--allow-missing-models)",
                model.version, model.path
            )));
        }
        models.push(entry);
    }
    let encryption = if recipients.is_empty() {
        None
    } else {
        encrypt_tree(plain, dir, &recipients)?;
        drop(staging);
        Some("age".to_owned())
    };
    let mut files = Vec::new();
    // every file on disk before the manifest says the backup is whole
    // (VACUUM INTO and file copies do not sync their output)
    collect_files(dir, dir, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let sums: String = files
        .iter()
        .map(|file| format!("{}  {}\n", file.sha256, file.path))
        .collect();
    write_synced(&dir.join(SUMS), sums.as_bytes())?;
    files.push(file_entry(dir, &dir.join(SUMS))?);
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        created_at: fraudlens_core::Timestamp::from_millis(crate::now_ms()).to_string(),
        fraudlens_version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: if url.starts_with("sqlite:") {
            "sqlite"
        } else {
            "postgres"
        }
        .to_owned(),
        store: fraudlens_store::redact_url(url),
        counts: dump.counts,
        models,
        entity_state,
        encryption,
        files,
    };
    let path = dir.join(MANIFEST);
    let text = serde_json::to_vec_pretty(&manifest).map_err(|error| BackupError::Invalid(error.to_string()))?;
    write_synced(&path, &text)?;
    Ok(manifest)
}

/// Copies a registered model's files into `models/NAME/` of the backup; a
/// model whose files cannot be read is recorded without them (and logged).
async fn copy_model(model: &RegisteredModel, index: usize, dir: &Path) -> Result<ModelEntry, BackupError> {
    let mut entry = ModelEntry {
        version: model.version.clone(),
        stage: model.stage.clone(),
        location: model.path.clone(),
        digest: model.digest.clone(),
        dir: None,
    };
    let source = match artifacts::local_dir(
        &model.path,
        &model.version,
        model.digest.as_deref().unwrap_or(""),
        false,
    )
    .await
    {
        Ok(source) if source.is_dir() => source,
        Ok(source) => {
            tracing::warn!(version = model.version, dir = %source.display(), "model files missing: backed up without them");
            return Ok(entry);
        }
        Err(error) => {
            tracing::warn!(version = model.version, %error, "model files unreadable: backed up without them");
            return Ok(entry);
        }
    };
    // a directory name that is safe whatever the version holds
    let name = format!("{index:04}-{}", safe_name(&model.version));
    let target = dir.join("models").join(&name);
    std::fs::create_dir_all(&target).map_err(io(&target))?;
    for file in std::fs::read_dir(&source).map_err(io(&source))? {
        let path = file.map_err(io(&source))?.path();
        if path.is_file()
            && let Some(file_name) = path.file_name()
        {
            std::fs::copy(&path, target.join(file_name)).map_err(io(&path))?;
        }
    }
    entry.dir = Some(format!("models/{name}"));
    Ok(entry)
}

/// The age recipients named by `keys` (`age1…`).
/// A value that is not a recipient is named by its position only, unless
/// it looks like one: a secret key given by mistake is never echoed.
fn recipients(keys: &[String]) -> Result<Vec<age::x25519::Recipient>, BackupError> {
    keys.iter()
        .enumerate()
        .map(|(index, key)| {
            let key = key.trim();
            key.parse::<age::x25519::Recipient>().map_err(|error| {
                let shown = if key.starts_with("age1") {
                    format!("{key:?}")
                } else {
                    format!("recipient {}", index + 1)
                };
                BackupError::Invalid(format!("{shown} is not an age recipient (age1…): {error}"))
            })
        })
        .collect()
}

/// The age identities in `text` (`AGE-SECRET-KEY-1…` lines; `#` comments and
/// blank lines skipped, as in the files `age-keygen` writes). Never echoed.
fn identities(text: &str) -> Result<Vec<age::x25519::Identity>, BackupError> {
    let keys: Vec<age::x25519::Identity> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .enumerate()
        .map(|(index, line)| {
            line.parse::<age::x25519::Identity>().map_err(|_| {
                BackupError::Invalid(format!(
                    "identity {} is not an age secret key (AGE-SECRET-KEY-1…)",
                    index + 1
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    if keys.is_empty() {
        return Err(BackupError::Invalid("no age identity given".to_owned()));
    }
    Ok(keys)
}

/// Every file under `root` (recursively), relative to it.
fn files_under(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), BackupError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            files_under(root, &path, files)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            files.push(relative.to_owned());
        }
    }
    Ok(())
}

/// Writes each file under `from` as its age encryption `NAME.age` at the
/// same place under `to` (the list is taken before anything is written; a
/// name that exists already is an error, never overwritten).
fn encrypt_tree(from: &Path, to: &Path, recipients: &[age::x25519::Recipient]) -> Result<(), BackupError> {
    let mut files = Vec::new();
    files_under(from, from, &mut files)?;
    for relative in files {
        let source = from.join(&relative);
        let mut name = to.join(&relative).into_os_string();
        name.push(".age");
        let target = PathBuf::from(name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|error| BackupError::Invalid(format!("encrypting: {error}")))?;
        let output = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(io(&target))?;
        let mut writer = encryptor
            .wrap_output(std::io::BufWriter::new(output))
            .map_err(io(&target))?;
        let mut input = std::fs::File::open(&source).map_err(io(&source))?;
        std::io::copy(&mut input, &mut writer).map_err(io(&target))?;
        let mut output = writer.finish().map_err(io(&target))?;
        std::io::Write::flush(&mut output).map_err(io(&target))?;
    }
    Ok(())
}

/// Decrypts the backup's `.age` files into a private temporary directory
/// (the same relative paths, without `.age`); returns it and the paths.
fn decrypt_tree(
    dir: &Path,
    manifest: &Manifest,
    keys: &[age::x25519::Identity],
) -> Result<(tempfile::TempDir, Vec<String>), BackupError> {
    let plain = tempfile::Builder::new()
        .prefix("fraudlens-restore-plain-")
        .tempdir()
        .map_err(io(&std::env::temp_dir()))?;
    let mut paths = Vec::new();
    for file in &manifest.files {
        if file.path == SUMS {
            continue;
        }
        // an encrypted backup has no plain file besides the checksums
        let Some(name) = file.path.strip_suffix(".age") else {
            return Err(BackupError::Invalid(format!(
                "the backup is encrypted but {} is not: a mixed backup is not restored",
                file.path
            )));
        };
        check_relative(name)?;
        let from = dir.join(&file.path);
        let target = plain.path().join(name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let input = std::fs::File::open(&from).map_err(io(&from))?;
        let refused = |error: age::DecryptError| match error {
            age::DecryptError::NoMatchingKeys => BackupError::Invalid(format!(
                "{} is not encrypted to any of the identities given (the backup's key?)",
                file.path
            )),
            age::DecryptError::Io(error) => io(&from)(error),
            other => BackupError::Invalid(format!("{} is not a whole age file: {other}", file.path)),
        };
        let decryptor = age::Decryptor::new_buffered(std::io::BufReader::new(input)).map_err(refused)?;
        let mut reader = decryptor
            .decrypt(keys.iter().map(|key| key as &dyn age::Identity))
            .map_err(refused)?;
        let mut output = std::fs::File::create(&target).map_err(io(&target))?;
        // a read that fails is the backup's (corrupt, truncated), a write the disk's
        let mut buffer = vec![0_u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut reader, &mut buffer)
                .map_err(|error| BackupError::Invalid(format!("{} does not decrypt whole: {error}", file.path)))?;
            if n == 0 {
                break;
            }
            std::io::Write::write_all(&mut output, &buffer[..n]).map_err(io(&target))?;
        }
        paths.push(name.to_owned());
    }
    Ok((plain, paths))
}

fn safe_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned()
}

/// Every file under `dir` (recursively) with its checksum, paths relative
/// to `root`; each file and directory synced to disk on the way.
fn collect_files(root: &Path, dir: &Path, files: &mut Vec<FileEntry>) -> Result<(), BackupError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            collect_files(root, &path, files)?;
        } else {
            std::fs::File::open(&path)
                .and_then(|file| file.sync_all())
                .map_err(io(&path))?;
            files.push(file_entry(root, &path)?);
        }
    }
    sync_dir(Some(dir));
    Ok(())
}

fn file_entry(root: &Path, path: &Path) -> Result<FileEntry, BackupError> {
    let (bytes, sha256) = checksum(path)?;
    let relative = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    Ok(FileEntry {
        path: parts.join("/"),
        bytes,
        sha256,
    })
}

/// Size and SHA-256 of a file, read in pieces.
fn checksum(path: &Path) -> Result<(u64, String), BackupError> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; 1 << 20];
    let mut bytes = 0_u64;
    loop {
        let n = file.read(&mut buffer).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Best effort: a rename is durable once its directory is synced.
fn sync_dir(dir: Option<&Path>) {
    if let Some(dir) = dir.filter(|dir| !dir.as_os_str().is_empty())
        && let Ok(file) = std::fs::File::open(dir)
    {
        let _ = file.sync_all();
    }
}

/// Uploads a finished backup under `to`: every file, then `MANIFEST.json`.
/// Each file goes up as a multipart upload read in pieces, so a store of
/// any size takes little memory (and passes S3's 5 GiB limit of one PUT).
async fn upload(dir: &Path, to: &str, manifest: &Manifest) -> Result<(), BackupError> {
    use std::io::Read as _;
    let (store, prefix) = artifacts::open(to)?;
    let names = manifest
        .files
        .iter()
        .map(|file| file.path.clone())
        .chain([MANIFEST.to_owned()]);
    for name in names {
        let path = dir.join(&name);
        let url = format!("{}/{name}", to.trim_end_matches('/'));
        let refused = |error: object_store::Error| artifacts::ArtifactError::Store {
            url: url.clone(),
            error: artifacts::chain(&error),
        };
        let mut file = std::fs::File::open(&path).map_err(io(&path))?;
        let upload = store
            .put_multipart(&object_path(&prefix, &name))
            .await
            .map_err(refused)?;
        let mut writer = object_store::WriteMultipart::new(upload);
        let mut buffer = vec![0_u8; 8 << 20];
        loop {
            let n = match file.read(&mut buffer) {
                Ok(n) => n,
                Err(error) => {
                    let _ = writer.abort().await;
                    return Err(io(&path)(error));
                }
            };
            if n == 0 {
                break;
            }
            // at most two parts in flight: memory stays a few pieces
            if let Err(error) = writer.wait_for_capacity(2).await {
                let _ = writer.abort().await;
                return Err(refused(error).into());
            }
            writer.write(&buffer[..n]);
        }
        writer.finish().await.map_err(refused)?;
    }
    Ok(())
}

/// `prefix/a/b` for the backup path `a/b`.
fn object_path(prefix: &object_store::path::Path, name: &str) -> object_store::path::Path {
    name.split('/').fold(prefix.clone(), |object, part| object.join(part))
}

/// The manifest under an object store's prefix, if there is one.
async fn remote_manifest(from: &str) -> Result<Option<Vec<u8>>, BackupError> {
    let (store, prefix) = artifacts::open(from)?;
    match store.get(&prefix.clone().join(MANIFEST)).await {
        Ok(result) => Ok(Some(
            result
                .bytes()
                .await
                .map_err(|error| artifacts::ArtifactError::Store {
                    url: format!("{}/{MANIFEST}", from.trim_end_matches('/')),
                    error: artifacts::chain(&error),
                })?
                .to_vec(),
        )),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(error) => Err(artifacts::ArtifactError::Store {
            url: format!("{}/{MANIFEST}", from.trim_end_matches('/')),
            error: artifacts::chain(&error),
        }
        .into()),
    }
}

/// Where and how to restore.
#[derive(Clone, Default)]
pub struct RestoreOptions {
    /// Where models whose registered directory is gone get their files.
    pub models_dir: PathBuf,
    /// Where the entity-state snapshot goes (the target's `serve.state_file`).
    pub state_file: Option<PathBuf>,
    /// The age identities of an encrypted backup (`AGE-SECRET-KEY-1…` lines).
    pub identities: Option<String>,
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("models_dir", &self.models_dir)
            .field("state_file", &self.state_file)
            .field("identities", &self.identities.as_ref().map(|_| "***"))
            .finish()
    }
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// What the restored store holds (equal to the manifest's counts).
    pub counts: Counts,
    /// Models whose files were copied to the models directory, with their new path.
    pub relocated: BTreeMap<String, String>,
    /// Where the snapshot was written, if the backup had one.
    pub entity_state: Option<PathBuf>,
    /// A file found at the snapshot's path, moved aside to this name.
    pub moved_aside: Option<PathBuf>,
}

/// Restores the backup at `from` (a directory or an object store's prefix)
/// into the empty store `url`.
pub async fn restore(from: &str, url: &str, options: &RestoreOptions) -> Result<RestoreReport, BackupError> {
    let (dir, temporary) = match artifacts::local_path(from) {
        Some(dir) => (dir, false),
        None => (download(from).await?, true),
    };
    let restored = restore_dir(&dir, url, options).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    restored
}

async fn restore_dir(dir: &Path, url: &str, options: &RestoreOptions) -> Result<RestoreReport, BackupError> {
    let manifest = read_manifest(dir)?;
    verify(dir, &manifest)?;
    let backend = if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    if manifest.backend != backend {
        return Err(BackupError::Invalid(format!(
            "the backup is of a {} store; restore it into one ({} given)",
            manifest.backend,
            fraudlens_store::redact_url(url)
        )));
    }
    // an encrypted backup is decrypted into a private directory first
    let (plain, paths) = match manifest.encryption.as_deref() {
        None => (
            None,
            manifest.files.iter().map(|file| file.path.clone()).collect::<Vec<_>>(),
        ),
        Some("age") => {
            let text = options.identities.as_deref().ok_or_else(|| {
                BackupError::Invalid(
                    "the backup is encrypted (age): give its identity in FRAUDLENS_BACKUP_AGE_IDENTITY \
                     or --identity-file"
                        .to_owned(),
                )
            })?;
            let (plain, paths) = decrypt_tree(dir, &manifest, &identities(text)?)?;
            (Some(plain), paths)
        }
        Some(other) => {
            return Err(BackupError::Invalid(format!(
                "the backup is encrypted with {other:?}, which this build does not read"
            )));
        }
    };
    let dir = plain.as_ref().map_or(dir, |plain| plain.path());
    if manifest.entity_state.is_some() && !paths.iter().any(|path| path == STATE) {
        return Err(BackupError::Invalid(format!(
            "the manifest lists an entity-state snapshot but no {STATE}"
        )));
    }
    // every model's target checked before anything is written
    let mut relocations = Vec::new();
    for model in &manifest.models {
        let Some(model_dir) = &model.dir else { continue };
        let Some(registered) = artifacts::local_path(&model.location) else {
            continue;
        };
        check_relative(model_dir)?;
        if !model_dir.starts_with("models/") {
            return Err(BackupError::Invalid(format!(
                "the manifest puts model {} at {model_dir:?}, outside models/",
                model.version
            )));
        }
        // only the files the manifest lists (and that were verified)
        let listed: Vec<String> = paths
            .iter()
            .filter(|path| {
                path.strip_prefix(model_dir.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            })
            .cloned()
            .collect();
        let backed_up = dir.join(model_dir);
        if same_files(&registered, &backed_up) {
            continue;
        }
        let name = safe_name(&model.version);
        let target = options
            .models_dir
            .join(if name.is_empty() { "model" } else { name.as_str() });
        if target.exists() && !same_files(&target, &backed_up) {
            return Err(BackupError::Invalid(format!(
                "{} exists with other files: choose another models directory",
                target.display()
            )));
        }
        relocations.push((model.version.clone(), target, listed));
    }
    db::load(url, dir).await?;
    let counts = db::counts(url).await?;
    if counts != manifest.counts {
        return Err(BackupError::Invalid(format!(
            "the restored store holds {counts:?}, the backup lists {:?}: drop the restored store before trying again",
            manifest.counts
        )));
    }
    let mut relocated = BTreeMap::new();
    for (version, target, listed) in relocations {
        std::fs::create_dir_all(&target).map_err(io(&target))?;
        for file in listed {
            let from = dir.join(&file);
            let Some(name) = from.file_name() else { continue };
            std::fs::copy(&from, target.join(name)).map_err(io(&from))?;
        }
        let absolute = std::fs::canonicalize(&target).map_err(io(&target))?;
        let path = absolute.to_string_lossy().into_owned();
        db::relocate_model(url, &version, &path).await?;
        relocated.insert(version, path);
    }
    let (mut entity_state, mut moved_aside) = (None, None);
    if let Some(target) = &options.state_file {
        if target.exists() {
            let aside = target.with_file_name(format!(
                "{}.before-restore-{}",
                target
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                crate::now_ms()
            ));
            std::fs::rename(target, &aside).map_err(io(target))?;
            moved_aside = Some(aside);
        }
        if manifest.entity_state.is_some() {
            if let Some(parent) = target.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::copy(dir.join(STATE), target).map_err(io(target))?;
            entity_state = Some(target.clone());
        }
    }
    Ok(RestoreReport {
        manifest,
        counts,
        relocated,
        entity_state,
        moved_aside,
    })
}

/// Whether two directories hold files of the same names and content (the
/// registered one may be missing).
fn same_files(registered: &Path, backed_up: &Path) -> bool {
    let listing = |dir: &Path| -> Option<BTreeMap<String, String>> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).ok()? {
            let path = entry.ok()?.path();
            if path.is_file() {
                let name = path.file_name()?.to_string_lossy().into_owned();
                files.insert(name, checksum(&path).ok()?.1);
            }
        }
        Some(files)
    };
    match (listing(registered), listing(backed_up)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            BackupError::Invalid(format!(
                "{} has no {MANIFEST}: not a backup, or one that did not finish",
                dir.display()
            ))
        } else {
            BackupError::Io {
                path: path.clone(),
                error,
            }
        }
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|error| BackupError::Invalid(format!("{}: {error}", path.display())))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Invalid(format!(
            "{}: format {:?}, this build reads {FORMAT:?}",
            path.display(),
            manifest.format
        )));
    }
    Ok(manifest)
}

/// Every file the manifest lists, with its size and checksum; no path out of the backup.
fn verify(dir: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    for file in &manifest.files {
        check_relative(&file.path)?;
        let path = dir.join(&file.path);
        let (bytes, sha256) = checksum(&path).map_err(|_| {
            BackupError::Invalid(format!(
                "the backup lists {} but it is missing or unreadable",
                file.path
            ))
        })?;
        if bytes != file.bytes || sha256 != file.sha256 {
            return Err(BackupError::Invalid(format!(
                "{} is corrupt: {bytes} bytes with SHA-256 {sha256}, the manifest says {} bytes with {}",
                file.path, file.bytes, file.sha256
            )));
        }
    }
    Ok(())
}

fn check_relative(path: &str) -> Result<(), BackupError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        Err(BackupError::Invalid(format!(
            "the manifest names {path:?}, which is not a file of the backup"
        )))
    } else {
        Ok(())
    }
}

/// The backup under an object store's prefix, into a temporary directory.
async fn download(from: &str) -> Result<PathBuf, BackupError> {
    let text = remote_manifest(from).await?.ok_or_else(|| {
        BackupError::Invalid(format!(
            "{from} has no {MANIFEST}: not a backup, or one that did not finish"
        ))
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|error| BackupError::Invalid(format!("{from}/{MANIFEST}: {error}")))?;
    let dir = tempfile::Builder::new()
        .prefix("fraudlens-restore-")
        .tempdir()
        .map_err(io(&std::env::temp_dir()))?
        .keep();
    let fetched = async {
        let (store, prefix) = artifacts::open(from)?;
        for file in &manifest.files {
            check_relative(&file.path)?;
            let refused = |error: object_store::Error| artifacts::ArtifactError::Store {
                url: format!("{}/{}", from.trim_end_matches('/'), file.path),
                error: artifacts::chain(&error),
            };
            let path = dir.join(&file.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            // streamed to the file: a store of any size takes little memory
            let mut stream = store
                .get(&object_path(&prefix, &file.path))
                .await
                .map_err(refused)?
                .into_stream();
            let mut out = std::fs::File::create(&path).map_err(io(&path))?;
            while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
                let chunk = chunk.map_err(refused)?;
                std::io::Write::write_all(&mut out, &chunk).map_err(io(&path))?;
            }
        }
        std::fs::write(dir.join(MANIFEST), &text).map_err(io(&dir.join(MANIFEST)))?;
        Ok::<_, BackupError>(())
    };
    match fetched.await {
        Ok(()) => Ok(dir),
        Err(error) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_stay_inside_the_backup() {
        for good in ["store.sqlite", "models/0001-gbdt-1/model.json"] {
            assert!(check_relative(good).is_ok(), "{good}");
        }
        for bad in ["", "/etc/passwd", "../x", "models/../../x", "a//b", "a\\b", "./x"] {
            assert!(check_relative(bad).is_err(), "{bad}");
        }
    }

    /// Many files in one directory: each encrypted once (the listing is
    /// taken before writing), and they decrypt to what they were.
    #[test]
    fn every_file_is_encrypted_once_and_decrypts_back() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(from.path().join("models/0000-m")).unwrap();
        for index in 0..300 {
            std::fs::write(from.path().join(format!("f{index}")), format!("file {index}")).unwrap();
        }
        std::fs::write(from.path().join("models/0000-m/model.json"), b"{}").unwrap();
        let identity = age::x25519::Identity::generate();
        encrypt_tree(from.path(), to.path(), &[identity.to_public()]).unwrap();
        let mut written = Vec::new();
        collect_files(to.path(), to.path(), &mut written).unwrap();
        assert_eq!(written.len(), 301);
        assert!(
            written
                .iter()
                .all(|file| file.path.ends_with(".age") && !file.path.ends_with(".age.age"))
        );
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            created_at: String::new(),
            fraudlens_version: String::new(),
            backend: "sqlite".to_owned(),
            store: String::new(),
            counts: Counts::default(),
            models: Vec::new(),
            entity_state: None,
            encryption: Some("age".to_owned()),
            files: written,
        };
        let (plain, paths) = decrypt_tree(to.path(), &manifest, &[identity]).unwrap();
        assert_eq!(paths.len(), 301);
        assert_eq!(std::fs::read_to_string(plain.path().join("f7")).unwrap(), "file 7");
        assert_eq!(
            std::fs::read(plain.path().join("models/0000-m/model.json")).unwrap(),
            b"{}"
        );
        // a plain file in an encrypted backup is refused
        let mut mixed = manifest.clone();
        mixed.files.insert(
            0,
            FileEntry {
                path: "store.sqlite".to_owned(),
                bytes: 0,
                sha256: String::new(),
            },
        );
        match decrypt_tree(to.path(), &mixed, &[age::x25519::Identity::generate()]) {
            Err(BackupError::Invalid(message)) => assert!(message.contains("a mixed backup"), "{message}"),
            other => panic!("{:?}", other.map(|(_, paths)| paths)),
        }
    }

    #[test]
    fn model_directory_names_are_safe() {
        assert_eq!(safe_name("gbdt-2026.1_a"), "gbdt-2026.1_a");
        assert_eq!(safe_name("../../etc"), "_.._etc");
        assert_eq!(safe_name("a/b c"), "a_b_c");
    }
}
