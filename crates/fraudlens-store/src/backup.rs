//! A consistent copy of a store's database while other processes use it, and
//! its restore into an empty database. The rest of a backup (models, the
//! entity-state snapshot, the manifest) is `fraudlens_pipeline::backup`'s.
//!
//! - **SQLite**: `VACUUM INTO` writes a transactionally consistent copy of
//!   the store's file (`store.sqlite`) and of its shadow-score file
//!   (`shadow.sqlite`, when there is one) from a read transaction: writers
//!   go on meanwhile (WAL mode). Restore copies them to the new store's
//!   path and its shadow path; the path must not exist yet.
//! - **PostgreSQL**: `pg_dump --format=custom` (one repeatable-read
//!   snapshot) into `store.pgdump`, without the similar-case index's vectors;
//!   restore is `pg_restore --single-transaction --exit-on-error` into a
//!   database without tables, of everything but that index (made again by
//!   the restored store's `serve`). Both are the
//!   PostgreSQL client's programs (Debian `postgresql-client`), whose major
//!   version must be at least the server's. The password never appears on
//!   their command line: it goes in `PGPASSWORD`.
//!
//! Neither touches the schema: a copy is restored at the version it was
//! taken, and the next process to open the store migrates it.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::sqlite::SqliteConnectOptions;

use crate::sql::shadow_file;
use crate::{Result, StoreError, redact_url};

/// The file of a SQLite store's copy.
pub const SQLITE_STORE: &str = "store.sqlite";
/// The file of a SQLite store's shadow scores' copy.
pub const SQLITE_SHADOW: &str = "shadow.sqlite";
/// The file of a PostgreSQL store's dump.
pub const POSTGRES_DUMP: &str = "store.pgdump";

/// A registered model as the registry has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredModel {
    /// The version.
    pub version: String,
    /// Where its directory is (a local path or an object store's URL).
    pub path: String,
    /// The content digest registered with it.
    pub digest: Option<String>,
    /// `staging`, `production` or `archived`.
    pub stage: String,
}

/// How much a store holds: what a backup's manifest and a restore report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Stored transactions (with their decisions).
    pub transactions: u64,
    /// Labels.
    pub labels: u64,
    /// Audit entries.
    pub audit_entries: u64,
    /// Registered models.
    pub models: u64,
    /// API keys (revoked ones too).
    pub api_keys: u64,
    /// Shadow scores.
    pub shadow_scores: u64,
    /// The newest transaction's sequence number (0 when none).
    pub last_seq: i64,
}

/// Which backend a store URL names.
fn is_sqlite(url: &str) -> Result<bool> {
    if url.starts_with("sqlite:") {
        Ok(true)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(false)
    } else {
        Err(StoreError::Url(redact_url(url)))
    }
}

/// The file a SQLite URL names.
fn sqlite_file(url: &str) -> Result<PathBuf> {
    Ok(SqliteConnectOptions::from_str(url)?.get_filename().to_path_buf())
}

/// A store's copy: its files, and what it holds (read from the copy itself,
/// or on PostgreSQL from the snapshot `pg_dump` took).
#[derive(Clone, Debug)]
pub struct Dump {
    /// The files written, relative to the directory.
    pub files: Vec<PathBuf>,
    /// What the copy holds.
    pub counts: Counts,
    /// The registered models of the copy.
    pub models: Vec<RegisteredModel>,
}

/// Writes a consistent copy of the store `url` into `dir` (which exists).
/// The store must exist; it is not migrated.
pub async fn dump(url: &str, dir: &Path) -> Result<Dump> {
    if is_sqlite(url)? {
        let store = sqlite_file(url)?;
        if !store.is_file() {
            return Err(StoreError::Invalid(format!("no SQLite store at {}", store.display())));
        }
        let copy = dir.join(SQLITE_STORE);
        vacuum_into(&store, &copy).await?;
        let mut files = vec![PathBuf::from(SQLITE_STORE)];
        let shadow = shadow_file(&store);
        let mut shadow_scores = 0;
        if shadow != store && shadow.is_file() {
            let shadow_copy = dir.join(SQLITE_SHADOW);
            vacuum_into(&shadow, &shadow_copy).await?;
            files.push(PathBuf::from(SQLITE_SHADOW));
            let mut conn = sqlx::SqliteConnection::connect_with(&read_only_file(&shadow_copy)).await?;
            shadow_scores = count(
                sqlx::query_scalar("SELECT count(*) FROM shadow_scores")
                    .fetch_one(&mut conn)
                    .await?,
            );
        }
        let mut conn = sqlx::SqliteConnection::connect_with(&read_only_file(&copy)).await?;
        let mut values = [0_i64; COUNTS.len()];
        for (value, statement) in values.iter_mut().zip(COUNTS) {
            *value = sqlx::query_scalar(statement).fetch_one(&mut conn).await?;
        }
        let models = sqlx::query_as(MODELS).fetch_all(&mut conn).await?;
        conn.close().await?;
        Ok(Dump {
            files,
            counts: Counts::from_values(values, shadow_scores),
            models: models.into_iter().map(RegisteredModel::from_row).collect(),
        })
    } else {
        // one snapshot for the dump, the counts and the models: exported by a
        // read-only transaction held open while pg_dump reads it
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut conn)
            .await?;
        let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut conn)
            .await?;
        let mut values = [0_i64; COUNTS.len()];
        for (value, statement) in values.iter_mut().zip(COUNTS) {
            *value = sqlx::query_scalar(statement).fetch_one(&mut conn).await?;
        }
        let shadow_scores: i64 = sqlx::query_scalar("SELECT count(*) FROM shadow_scores")
            .fetch_one(&mut conn)
            .await?;
        let models = sqlx::query_as(MODELS).fetch_all(&mut conn).await?;
        let (plain_url, password) = without_password(url)?;
        let out = dir.join(POSTGRES_DUMP);
        let dumped = run(
            "pg_dump",
            &[
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                // the similar-case index's vectors: derived, made again after a restore
                "--exclude-table-data=case_vectors",
                &format!("--snapshot={snapshot}"),
                "--file",
                &out.to_string_lossy(),
                "--dbname",
                &plain_url,
            ],
            password.as_deref(),
        )
        .await;
        sqlx::query("COMMIT").execute(&mut conn).await?;
        conn.close().await?;
        dumped?;
        Ok(Dump {
            files: vec![PathBuf::from(POSTGRES_DUMP)],
            counts: Counts::from_values(values, count(shadow_scores)),
            models: models.into_iter().map(RegisteredModel::from_row).collect(),
        })
    }
}

/// What [`Counts`] counts, in its order.
const COUNTS: [&str; 6] = [
    "SELECT count(*) FROM transactions",
    "SELECT count(*) FROM labels",
    "SELECT count(*) FROM audit_log",
    "SELECT count(*) FROM models",
    "SELECT count(*) FROM api_keys",
    "SELECT coalesce(max(seq), 0) FROM transactions",
];

const MODELS: &str = "SELECT version, path, digest, stage FROM models ORDER BY registered_at, version";

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Counts {
    fn from_values(values: [i64; COUNTS.len()], shadow_scores: u64) -> Self {
        Self {
            transactions: count(values[0]),
            labels: count(values[1]),
            audit_entries: count(values[2]),
            models: count(values[3]),
            api_keys: count(values[4]),
            shadow_scores,
            last_seq: values[5],
        }
    }
}

impl RegisteredModel {
    fn from_row((version, path, digest, stage): (String, String, Option<String>, String)) -> Self {
        Self {
            version,
            path,
            digest,
            stage,
        }
    }
}

fn read_only_file(file: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(false)
        .read_only(true)
        .busy_timeout(Duration::from_secs(10))
}

/// `VACUUM INTO` from a connection of its own (waits up to 30 s for a lock).
async fn vacuum_into(file: &Path, target: &Path) -> Result<()> {
    let options = SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30));
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    sqlx::query("VACUUM INTO $1")
        .bind(target.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Restores the copy in `dir` (written by [`dump`] for the same backend)
/// into the empty store `url`: a SQLite path that does not exist yet, or a
/// PostgreSQL database without tables. The schema stays the copy's.
pub async fn load(url: &str, dir: &Path) -> Result<()> {
    if is_sqlite(url)? {
        let copy = dir.join(SQLITE_STORE);
        if !copy.is_file() {
            return Err(StoreError::Invalid(format!(
                "the backup holds no SQLite store ({SQLITE_STORE}); restore it into the backend it came from"
            )));
        }
        let store = sqlite_file(url)?;
        let shadow = shadow_file(&store);
        // a leftover WAL or journal would be replayed into the restored file
        let side = |path: &Path, suffix: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        let mut paths = Vec::new();
        for file in [&store, &shadow] {
            paths.extend([
                file.clone(),
                side(file, "-wal"),
                side(file, "-shm"),
                side(file, "-journal"),
            ]);
        }
        for path in &paths {
            if path.exists() {
                return Err(StoreError::Invalid(format!(
                    "{} exists: restore into a new store (move it away first)",
                    path.display()
                )));
            }
        }
        if let Some(parent) = store.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| io_error(parent, &error))?;
        }
        // next to the target, renamed into place: a crash leaves no half store
        copy_then_rename(&copy, &store)?;
        let shadow_copy = dir.join(SQLITE_SHADOW);
        if shadow_copy.is_file() && shadow != store {
            copy_then_rename(&shadow_copy, &shadow)?;
        }
        Ok(())
    } else {
        let dump = dir.join(POSTGRES_DUMP);
        if !dump.is_file() {
            return Err(StoreError::Invalid(format!(
                "the backup holds no PostgreSQL dump ({POSTGRES_DUMP}); restore it into the backend it came from"
            )));
        }
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
        )
        .fetch_one(&mut conn)
        .await?;
        conn.close().await?;
        if tables > 0 {
            return Err(StoreError::Invalid(format!(
                "{} has {tables} tables: restore into an empty database (createdb a new one)",
                redact_url(url)
            )));
        }
        let (url, password) = without_password(url)?;
        // everything but the similar-case index: derived data, which the
        // restored store's first process makes again (so that a dump of a
        // server with pgvector restores on one without)
        let dump = dump.to_string_lossy();
        let contents = run("pg_restore", &["--list", &dump], None).await?;
        let list = std::env::temp_dir().join(format!(
            "fraudlens-restore-{}-{}.list",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        // a new file (never one there already, nor a link's target)
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&list)
            .map_err(|error| io_error(&list, &error))?;
        if let Err(error) = std::io::Write::write_all(&mut file, without_derived(&contents).as_bytes()) {
            drop(file);
            let _ = std::fs::remove_file(&list);
            return Err(io_error(&list, &error));
        }
        drop(file);
        let restored = run(
            "pg_restore",
            &[
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                "--use-list",
                &list.to_string_lossy(),
                "--dbname",
                &url,
                &dump,
            ],
            password.as_deref(),
        )
        .await;
        let _ = std::fs::remove_file(&list);
        restored.map(drop)
    }
}

/// A dump's table of contents (`pg_restore --list`) without the entries of
/// the similar-case index: the `vector` extension, the `case_vectors` table
/// with its data, keys and index, and the functions and triggers that keep
/// it. An entry is `ID; TABLEOID OID TYPE SCHEMA NAME OWNER` (a type or a
/// name may be several words): matched by whole names, never the owner's.
fn without_derived(contents: &str) -> String {
    const NAMES: [&str; 6] = [
        "case_vectors",
        "case_vectors_pkey",
        "case_vectors_seq_fkey",
        "case_vectors_embedding",
        "fraudlens_case_vectors",
        "fraudlens_case_vectors_update",
    ];
    const FUNCTIONS: [&str; 3] = [
        "fraudlens_reason_vector(",
        "fraudlens_reason_vector_or_null(",
        "fraudlens_index_case(",
    ];
    let derived = |line: &str| {
        let words: Vec<&str> = line.split_whitespace().skip(3).collect();
        if words == ["EXTENSION", "-", "vector"] || words == ["COMMENT", "-", "EXTENSION", "vector"] {
            return true;
        }
        let named = &words[..words.len().saturating_sub(1)];
        named
            .iter()
            .any(|word| NAMES.contains(word) || FUNCTIONS.iter().any(|f| word.starts_with(f)))
    };
    let mut kept = String::with_capacity(contents.len());
    for line in contents.lines() {
        if line.trim_start().starts_with(';') || !derived(line) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

fn io_error(path: &Path, error: &std::io::Error) -> StoreError {
    StoreError::Invalid(format!("{}: {error}", path.display()))
}

fn copy_then_rename(from: &Path, to: &Path) -> Result<()> {
    let partial = to.with_extension("restoring");
    std::fs::copy(from, &partial).map_err(|error| io_error(&partial, &error))?;
    std::fs::File::open(&partial)
        .and_then(|file| file.sync_all())
        .map_err(|error| io_error(&partial, &error))?;
    std::fs::rename(&partial, to).map_err(|error| io_error(to, &error))
}

/// Points the registered `version` at another directory (its files copied
/// there from a backup, with the same content digest).
pub async fn relocate_model(url: &str, version: &str, path: &str) -> Result<()> {
    let update = "UPDATE models SET path = $1 WHERE version = $2";
    let changed = if is_sqlite(url)? {
        let options = SqliteConnectOptions::from_str(url)?.busy_timeout(Duration::from_secs(10));
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
        sqlx::query(update)
            .bind(path)
            .bind(version)
            .execute(&mut conn)
            .await?
            .rows_affected()
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query(update)
            .bind(path)
            .bind(version)
            .execute(&mut conn)
            .await?
            .rows_affected()
    };
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("model {version}")))
    }
}

/// What the store `url` holds now (after a restore: to compare with the
/// backup's [`Dump::counts`]). Read without migrating it.
pub async fn counts(url: &str) -> Result<Counts> {
    let mut values = [0_i64; COUNTS.len()];
    let shadow_scores: i64;
    if is_sqlite(url)? {
        let store = sqlite_file(url)?;
        let mut conn = sqlx::SqliteConnection::connect_with(&read_only_file(&store)).await?;
        for (value, statement) in values.iter_mut().zip(COUNTS) {
            *value = sqlx::query_scalar(statement).fetch_one(&mut conn).await?;
        }
        conn.close().await?;
        let shadow = shadow_file(&store);
        shadow_scores = if shadow != store && shadow.is_file() {
            let mut conn = sqlx::SqliteConnection::connect_with(&read_only_file(&shadow)).await?;
            sqlx::query_scalar("SELECT count(*) FROM shadow_scores")
                .fetch_one(&mut conn)
                .await?
        } else {
            0
        };
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        for (value, statement) in values.iter_mut().zip(COUNTS) {
            *value = sqlx::query_scalar(statement).fetch_one(&mut conn).await?;
        }
        shadow_scores = sqlx::query_scalar("SELECT count(*) FROM shadow_scores")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
    }
    Ok(Counts::from_values(values, count(shadow_scores)))
}

/// A PostgreSQL URL without its password (user part or `password=`
/// parameter), and the password.
fn without_password(url: &str) -> Result<(String, Option<String>)> {
    let mut parsed = url::Url::parse(url).map_err(|_| StoreError::Url(redact_url(url)))?;
    let mut password = parsed.password().map(|password| {
        percent_encoding::percent_decode_str(password)
            .decode_utf8_lossy()
            .into_owned()
    });
    let _ = parsed.set_password(None);
    let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    if pairs.iter().any(|(key, _)| key.eq_ignore_ascii_case("password")) {
        let mut query = parsed.query_pairs_mut();
        query.clear();
        for (key, value) in pairs {
            if key.eq_ignore_ascii_case("password") {
                password = Some(value);
            } else {
                query.append_pair(&key, &value);
            }
        }
    }
    let mut text = parsed.to_string();
    if text.ends_with('?') {
        text.pop();
    }
    Ok((text, password))
}

/// Runs a PostgreSQL client program (on a blocking thread): its standard
/// output, or its standard error in the error.
async fn run(program: &str, args: &[&str], password: Option<&str>) -> Result<String> {
    let mut command = std::process::Command::new(program);
    command.args(args).stdin(std::process::Stdio::null());
    // fraudlens's own settings and secrets (the card-hash key, a backup's
    // key, the store URL with its password) are none of the client's business
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FRAUDLENS_") {
            command.env_remove(name);
        }
    }
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|error| StoreError::Invalid(format!("running {program}: {error}")))?
        .map_err(|error| {
            StoreError::Invalid(if error.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{program} not found: install the PostgreSQL client (Debian: postgresql-client), \
                     of the server's major version or newer"
                )
            } else {
                format!("running {program}: {error}")
            })
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(StoreError::Invalid(format!(
            "{program} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_leaves_out_the_similar_case_index() {
        // as `pg_restore --list` printed it for a store with the index
        let contents = "; Archive created at 2026-12-07 23:04:12 UTC\n\
            2; 3079 31976 EXTENSION - vector \n\
            3718; 0 0 COMMENT - EXTENSION vector \n\
            361; 1255 32318 FUNCTION public fraudlens_index_case() postgres\n\
            359; 1255 32304 FUNCTION public fraudlens_reason_vector(text) postgres\n\
            360; 1255 32305 FUNCTION public fraudlens_reason_vector_or_null(bigint, text) postgres\n\
            232; 1259 31966 TABLE public case_narratives postgres\n\
            233; 1259 32306 TABLE public case_vectors postgres\n\
            3719; 0 0 COMMENT public TABLE case_vectors postgres\n\
            3710; 0 31966 TABLE DATA public case_narratives postgres\n\
            3711; 0 32306 TABLE DATA public case_vectors postgres\n\
            3546; 2606 32312 CONSTRAINT public case_vectors case_vectors_pkey postgres\n\
            3544; 1259 31975 INDEX public case_narratives_search postgres\n\
            3551; 1259 32320 INDEX public case_vectors_embedding postgres\n\
            3550; 2620 32319 TRIGGER public transactions fraudlens_case_vectors postgres\n\
            3549; 2606 32313 FK CONSTRAINT public case_vectors case_vectors_seq_fkey postgres\n\
            3552; 2620 32321 TRIGGER public transactions fraudlens_case_vectors_update postgres\n\
            3600; 1259 32400 TABLE public vectors_of_mine postgres\n\
            3601; 1259 32401 TABLE public case_vectors_of_mine case_vectors\n";
        let kept = without_derived(contents);
        assert_eq!(
            kept,
            "; Archive created at 2026-12-07 23:04:12 UTC\n\
             232; 1259 31966 TABLE public case_narratives postgres\n\
             3710; 0 31966 TABLE DATA public case_narratives postgres\n\
             3544; 1259 31975 INDEX public case_narratives_search postgres\n\
             3600; 1259 32400 TABLE public vectors_of_mine postgres\n\
             3601; 1259 32401 TABLE public case_vectors_of_mine case_vectors\n"
        );
    }

    #[test]
    fn passwords_leave_the_url() {
        let check = |url: &str, expected: &str, password: Option<&str>| {
            let (text, found) = without_password(url).unwrap();
            assert_eq!((text.as_str(), found.as_deref()), (expected, password), "{url}");
        };
        check(
            "postgres://fraud:s%40cret@db:5432/fraud",
            "postgres://fraud@db:5432/fraud",
            Some("s@cret"),
        );
        check("postgres://fraud@db/fraud", "postgres://fraud@db/fraud", None);
        check(
            "postgres://db/fraud?user=u&password=p%26q&sslmode=require",
            "postgres://db/fraud?user=u&sslmode=require",
            Some("p&q"),
        );
        check("postgres://db/fraud?password=x", "postgres://db/fraud", Some("x"));
    }
}
