//! Tests that drive the real `fraudlens` binary.

// a failed unwrap in a test helper is a failed test with a backtrace
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod architecture;
mod backup;
mod cases;
mod config;
mod detect;
mod eth;
mod event_time;
mod features;
mod hardening;
mod lifecycle;
mod mlflow;
mod model;
mod month;
mod objects;
mod rows;
mod security;
mod serve;
mod shared_detect;
mod shared_state;
mod simulate;
mod snapshots;
mod tabular;
mod tls;

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a run of the binary did.
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error: reports and logs.
    pub stderr: String,
}

/// Runs `fraudlens args…` in `dir` with only the given `FRAUDLENS_*` variables set.
pub fn fraudlens(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fraudlens"));
    command.current_dir(dir).args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("FRAUDLENS_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("running fraudlens");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Starts a long-running `fraudlens args…` (serve, detect) in `dir` with only
/// the given `FRAUDLENS_*` variables, stderr to `log`. Returns the process and
/// the word after `marker` in its first line of output (the address it bound).
pub fn spawn_service(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    log: &Path,
    marker: &str,
) -> (std::process::Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fraudlens"));
    command
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    for (key, _) in std::env::vars() {
        if key.starts_with("FRAUDLENS_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let Some(rest) = line.split(marker).nth(1) else {
        let _ = child.kill();
        panic!(
            "fraudlens {args:?} did not start: {line:?}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    };
    let word = rest.split_whitespace().next().unwrap_or_default().to_owned();
    (child, word)
}

/// Sends SIGTERM and returns the exit code.
pub fn terminate(child: &mut std::process::Child) -> i32 {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap().code().unwrap_or(-1)
}

/// Asserts success and returns the run.
pub fn ok(dir: &Path, args: &[&str]) -> Run {
    let run = fraudlens(dir, args, &[]);
    assert_eq!(run.code, 0, "fraudlens {args:?} failed:\n{}", run.stderr);
    run
}

/// A fixture of this crate.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Fixtures of the ingest crate (bad rows, messy tabular data).
pub fn ingest_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fraudlens-ingest/tests/fixtures")
        .join(name)
}

/// Header and rows of a CSV file.
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}
