//! Shared by the benchmark examples: the feature matrix written by
//! `bench/peers/prepare_matrix.py`, flag parsing, peak-memory readings.

#![allow(dead_code)] // each example uses a part

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use fraudlens_model::train::FeatureKind;
use serde::Deserialize;

/// One part (train, valid or test) of the matrix.
pub struct Part {
    /// Row-major values, `n_features` per row, NaN = missing.
    pub values: Vec<f64>,
    /// Fraud labels.
    pub labels: Vec<bool>,
}

/// `meta.json`.
#[derive(Deserialize)]
pub struct Meta {
    /// Column names.
    pub features: Vec<String>,
    /// The categorical columns.
    pub categorical: Vec<CategoricalColumn>,
}

/// A categorical column of `meta.json`.
#[derive(Deserialize)]
pub struct CategoricalColumn {
    /// Column index.
    pub index: usize,
    /// Number of codes (`0..n_codes`).
    pub n_codes: usize,
}

/// The matrix directory.
pub struct Matrix {
    dir: PathBuf,
    /// Its `meta.json`.
    pub meta: Meta,
}

impl Matrix {
    /// Opens `dir` (reads `meta.json`).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(dir.join("meta.json"))
            .with_context(|| format!("reading {}/meta.json", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
            meta: serde_json::from_str(&text).context("parsing meta.json")?,
        })
    }

    /// Columns per row.
    pub fn n_features(&self) -> usize {
        self.meta.features.len()
    }

    /// Feature kinds; categorical columns only when `categorical`.
    pub fn kinds(&self, categorical: bool) -> Vec<FeatureKind> {
        let mut kinds = vec![FeatureKind::Numeric; self.n_features()];
        if categorical {
            for column in &self.meta.categorical {
                kinds[column.index] = FeatureKind::Categorical {
                    n_codes: column.n_codes,
                };
            }
        }
        kinds
    }

    /// Reads one part (`train`, `valid`, `test`).
    pub fn part(&self, name: &str) -> anyhow::Result<Part> {
        let x_path = self.dir.join(format!("{name}.x.f64"));
        let bytes = std::fs::read(&x_path).with_context(|| format!("reading {}", x_path.display()))?;
        let values: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|chunk| f64::from_le_bytes(chunk.try_into().expect("chunks of 8")))
            .collect();
        let y_path = self.dir.join(format!("{name}.y.u8"));
        let labels: Vec<bool> = std::fs::read(&y_path)
            .with_context(|| format!("reading {}", y_path.display()))?
            .into_iter()
            .map(|label| label != 0)
            .collect();
        if values.len() != labels.len() * self.n_features() {
            bail!(
                "{name}: {} values for {} rows of {} features",
                values.len(),
                labels.len(),
                self.n_features()
            );
        }
        Ok(Part { values, labels })
    }
}

/// Writes values as little-endian f64.
pub fn write_f64(path: &Path, values: &[f64]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// `--name value` flags (and bare `--name` switches, as "true").
pub struct Flags(HashMap<String, String>);

impl Flags {
    /// Parses the process arguments.
    pub fn parse() -> anyhow::Result<Self> {
        let mut flags = HashMap::new();
        let mut args = std::env::args().skip(1).peekable();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                bail!("unexpected argument {arg:?} (flags are --name value)");
            };
            let value = match args.peek() {
                Some(next) if !next.starts_with("--") => args.next().unwrap_or_default(),
                _ => "true".to_owned(),
            };
            flags.insert(name.to_owned(), value);
        }
        Ok(Self(flags))
    }

    /// A flag's value, or `default`.
    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|error| anyhow::anyhow!("--{name} {text:?}: {error}")),
        }
    }

    /// A flag's value, if given.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.0.get(name).map(PathBuf::from)
    }

    /// Whether a switch is given.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// `VmRSS` or `VmHWM` of this process in MiB (Linux; 0 elsewhere).
pub fn status_mib(field: &str) -> f64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0.0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// CPU seconds (user + system, all threads) this process has used so far
/// (Linux, from `/proc/self/stat`; 0 elsewhere).
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // fields after the command name (which is in parentheses and may hold spaces)
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&idx| fields.get(idx)?.parse::<f64>().ok())
        .sum();
    ticks / clock_ticks_per_second()
}

/// `getconf CLK_TCK`: 100 on every Linux this runs on (no libc call: the
/// workspace forbids unsafe code).
fn clock_ticks_per_second() -> f64 {
    100.0
}

/// Resets the peak RSS (`VmHWM`) to the current RSS, so a later reading
/// is the peak of what runs in between (Linux ≥ 4.0; ignored elsewhere).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The `q`-quantile (0..=1) of sorted values (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
