//! The boundaries ARCHITECTURE.md names, checked against the workspace as it
//! is: the crate dependency table matches `cargo metadata`; only the server
//! knows HTTP, only the store knows SQL, only the stream crate knows Kafka;
//! core and features read no clock and do no IO; the document points nowhere
//! outside the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn architecture_md() -> String {
    std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap()
}

/// `cargo metadata` of the workspace's own packages.
fn metadata() -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--locked",
        ])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Package name → the names of its normal (not dev, not build) dependencies.
fn normal_dependencies(metadata: &serde_json::Value) -> BTreeMap<String, BTreeSet<String>> {
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            let deps = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dep| dep["kind"].is_null())
                .map(|dep| dep["name"].as_str().unwrap().to_owned())
                .collect();
            (package["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

/// Short crate name (`fraudlens-core` → `core`; the binary crate keeps its name).
fn short(name: &str) -> &str {
    name.strip_prefix("fraudlens-").unwrap_or(name)
}

#[test]
fn the_dependency_table_matches_cargo_metadata() {
    let deps = normal_dependencies(&metadata());
    let ours: BTreeSet<&str> = deps.keys().map(String::as_str).collect();
    let actual: BTreeMap<String, BTreeSet<String>> = deps
        .iter()
        .map(|(name, deps)| {
            let internal = deps
                .iter()
                .filter(|dep| ours.contains(dep.as_str()))
                .map(|dep| short(dep).to_owned())
                .collect();
            (short(name).to_owned(), internal)
        })
        .collect();
    // the table between the `crate-dependencies` markers: `crate ← dep, dep`
    let doc = architecture_md();
    let table = doc
        .split("<!-- crate-dependencies -->")
        .nth(1)
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no <!-- crate-dependencies --> block"));
    let documented: BTreeMap<String, BTreeSet<String>> = table
        .lines()
        .map(|line| line.trim())
        .filter(|line| line.contains('←'))
        .map(|line| {
            let (name, deps) = line.split_once('←').unwrap();
            let deps = deps
                .split('(')
                .next()
                .unwrap()
                .split(',')
                .map(str::trim)
                .filter(|dep| !dep.is_empty())
                .map(str::to_owned)
                .collect();
            (name.trim().to_owned(), deps)
        })
        .collect();
    assert_eq!(
        documented, actual,
        "ARCHITECTURE.md's dependency table (left) differs from cargo metadata (right)"
    );
}

/// The workspace crates that depend on any of `libraries` (normal dependencies).
fn users_of(libraries: &[&str]) -> BTreeSet<String> {
    normal_dependencies(&metadata())
        .into_iter()
        .filter(|(_, deps)| deps.iter().any(|dep| libraries.contains(&dep.as_str())))
        .map(|(name, _)| short(&name).to_owned())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

#[test]
fn only_the_server_knows_http() {
    assert_eq!(
        users_of(&["axum", "hyper", "hyper-util", "tower", "tower-http"]),
        set(&["server"])
    );
}

#[test]
fn only_the_store_knows_sql_the_stream_crate_kafka_and_the_state_crate_redis() {
    // the testkit creates and drops the tests' databases; it is never a normal dependency
    assert_eq!(users_of(&["sqlx"]), set(&["store", "testkit"]));
    assert_eq!(users_of(&["rdkafka"]), set(&["stream"]));
    assert_eq!(users_of(&["redis"]), set(&["state"]));
}

#[test]
fn core_and_features_read_no_clock_and_do_no_io() {
    const FORBIDDEN: [&str; 9] = [
        "std::fs",
        "std::net",
        "std::env",
        "std::process",
        "std::thread::sleep",
        "SystemTime",
        "Instant::now",
        "tokio",
        "File::",
    ];
    for krate in ["fraudlens-core", "fraudlens-features"] {
        let src = workspace_root().join("crates").join(krate).join("src");
        for entry in walk(&src) {
            let text = std::fs::read_to_string(&entry).unwrap();
            for forbidden in FORBIDDEN {
                assert!(
                    !text.contains(forbidden),
                    "{} uses {forbidden}: core and features must stay pure",
                    entry.display()
                );
            }
        }
    }
}

#[test]
fn architecture_md_points_nowhere_outside_the_repository() {
    let doc = architecture_md();
    assert!(!doc.contains("../"), "ARCHITECTURE.md links outside the repository");
    // every path it names in backticks under crates/ exists
    for path in doc.split('`').skip(1).step_by(2) {
        if path.starts_with("crates/") && !path.contains(' ') {
            assert!(
                workspace_root().join(path.trim_end_matches('/')).exists(),
                "ARCHITECTURE.md names {path}, which does not exist"
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}
