//! The reports of the commands, all written here: what a command computed
//! in, the text for the terminal (or the `score --stats` JSON) out. Each one is pinned by a
//! snapshot test (`tests/it/snapshots.rs`), so a change of a user-visible text
//! shows up in review.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use fraudlens_core::tabular::{ColumnKind, InferredColumn, TabularEncoding};
use fraudlens_core::{SchemaConfig, Timestamp};
use fraudlens_features::FeatureEngine;
use fraudlens_ingest::{BadRows, TabularProfile};
use fraudlens_sim::Scenario;
use serde::Serialize;

/// `features`, event mode: the matrix written and the engine state it left.
pub fn features_written(rows: u64, n_features: usize, out: &Path, elapsed: Duration, engine: &FeatureEngine) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "wrote {rows} rows x {n_features} features to {} in {:.2}s ({:.0} rows/s)",
        out.display(),
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    let _ = writeln!(
        text,
        "engine state: {} entities, {:.1} MiB ({:.0} bytes per entity)",
        engine.n_entities(),
        engine.state_bytes() as f64 / (1024.0 * 1024.0),
        engine.state_bytes() as f64 / engine.n_entities().max(1) as f64
    );
    text
}

/// `features`, tabular mode: the matrix written.
pub fn tabular_features_written(rows: u64, n_features: usize, out: &Path, elapsed: Duration) -> String {
    format!(
        "wrote {rows} rows x {n_features} features to {} in {:.2}s\n",
        out.display(),
        elapsed.as_secs_f64()
    )
}

/// `inspect`, event mode, before the rows are read: which field plays which role.
pub fn event_roles(data: &Path, config: &SchemaConfig, notes: &[String]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{}: transactions (event mode)", data.display());
    let _ = writeln!(text, "  transaction id  <- {}", config.transaction_id);
    let _ = writeln!(
        text,
        "  timestamp       <- {} ({:?})",
        config.timestamp, config.timestamp_format
    );
    let _ = writeln!(
        text,
        "  amount          <- {} ({:?} units)",
        config.amount, config.amount_unit
    );
    let _ = writeln!(
        text,
        "  currency        <- {} (default {})",
        config.currency.as_deref().unwrap_or("-"),
        config.default_currency
    );
    let _ = writeln!(text, "  label           <- {}", config.label.as_deref().unwrap_or("-"));
    for (name, entity) in &config.entities {
        let hashed = if entity.card_number {
            ", card number: hashed"
        } else {
            ""
        };
        let _ = writeln!(text, "  entity {name:<9}<- {}{hashed}", entity.field);
    }
    for (name, attribute) in &config.attributes {
        let _ = writeln!(
            text,
            "  {:<16}<- {} ({})",
            name,
            attribute.field.as_deref().unwrap_or(name),
            attribute.kind
        );
    }
    for note in notes {
        let _ = writeln!(text, "note: {note}");
    }
    text
}

/// What `inspect` counted in the valid rows of a transaction file.
pub struct EventCounts {
    /// Valid rows.
    pub rows: u64,
    /// Earliest event time.
    pub first: Timestamp,
    /// Latest event time.
    pub last: Timestamp,
    /// Rows with a label.
    pub labeled: u64,
    /// Rows labeled fraud.
    pub fraud: u64,
}

/// `inspect`, event mode, after the rows are read.
pub fn event_counts(counts: &EventCounts, bad_rows: &BadRows) -> String {
    let EventCounts {
        rows,
        first,
        last,
        labeled,
        fraud,
    } = counts;
    format!(
        "{rows} valid rows from {first} to {last}; {labeled} labeled, {fraud} fraud ({:.2}%)\n{bad_rows}\n",
        100.0 * *fraud as f64 / (*labeled).max(1) as f64
    )
}

/// `inspect`, tabular mode: the file, the inferred column types and the encoding.
pub fn tabular_inspection(
    data: &Path,
    profile: &TabularProfile,
    inferred: &[InferredColumn],
    encoding: &TabularEncoding,
) -> String {
    let mut text = format!(
        "{}: tabular dataset, {} rows, {} columns\n",
        data.display(),
        profile.n_rows,
        profile.header.len()
    );
    for note in &profile.header_notes {
        let _ = writeln!(text, "note: {note}");
    }
    text.push_str(&inference_table(inferred));
    let _ = writeln!(
        text,
        "{} feature columns; label: {}",
        encoding.features.len(),
        encoding.label.as_deref().unwrap_or("none found (use --label)")
    );
    if profile.bad_rows.count() > 0 {
        let _ = writeln!(text, "{}", profile.bad_rows);
    }
    text
}

/// A table of inferred column types with the statistics behind them.
pub fn inference_table(columns: &[InferredColumn]) -> String {
    let width = columns.iter().map(|c| c.name.chars().count()).max().unwrap_or(6).max(6);
    let mut out = format!(
        "{:width$}  {:<12} {:>8} {:>9}  notes\n",
        "column", "type", "missing", "distinct"
    );
    for column in columns {
        let (kind, note) = match &column.kind {
            ColumnKind::Numeric => {
                let mut note = column
                    .numeric_range
                    .map(|(min, max)| format!("range {min} .. {max}"))
                    .unwrap_or_default();
                if column.n_infinite > 0 {
                    let _ = write!(note, "; {} infinite", column.n_infinite);
                }
                ("numeric", note)
            }
            ColumnKind::Categorical(encoder) => {
                let mut note = format!("{} codes", encoder.categories().len());
                if column.n_numeric > 0 && column.n_text > 0 {
                    let _ = write!(
                        note,
                        "; mixed: {} numbers, {} text e.g. {:?}",
                        column.n_numeric,
                        column.n_text,
                        column.first_text.as_deref().unwrap_or("")
                    );
                }
                if column.distinct_capped {
                    let _ = write!(note, "; high cardinality: rarer values share the other code");
                }
                ("categorical", note)
            }
            ColumnKind::Label => ("label", String::new()),
            ColumnKind::Excluded(reason) => ("excluded", reason.reason().to_owned()),
        };
        let distinct = if column.distinct_capped {
            format!(">{}", column.n_distinct)
        } else {
            column.n_distinct.to_string()
        };
        let _ = writeln!(
            out,
            "{:width$}  {kind:<12} {:>8} {distinct:>9}  {note}",
            column.name, column.n_missing
        );
    }
    out
}

/// Statistics of a scoring run (`--stats`).
#[derive(Debug, Serialize)]
pub struct ScoreStats {
    /// Model that scored.
    pub model_id: String,
    /// The input file.
    pub input: String,
    /// Rows read (all of them build feature state).
    pub rows_read: u64,
    /// Rows scored (inside the window).
    pub rows_scored: u64,
    /// Unreadable rows skipped.
    pub bad_rows: u64,
    /// Rows per decision.
    pub decisions: DecisionCounts,
    /// Scored rows with a label.
    pub labelled_rows: u64,
    /// Fraud share among labelled rows.
    pub fraud_rate: Option<f64>,
    /// ROC AUC on labelled rows.
    pub roc_auc: Option<f64>,
    /// Average precision on labelled rows.
    pub average_precision: Option<f64>,
    /// Mean fraud probability.
    pub mean_probability: f64,
    /// Counts of probabilities in ten equal bins of [0, 1].
    pub score_histogram: Vec<HistogramBin>,
    /// Review and decline thresholds.
    pub thresholds: (f64, Option<f64>),
    /// Wall time of the run.
    pub seconds: f64,
    /// Scored rows per second of wall time (replay included).
    pub rows_per_second: f64,
}

/// Rows per decision.
#[derive(Debug, Default, Serialize)]
pub struct DecisionCounts {
    /// Approved.
    pub approve: u64,
    /// Sent to review.
    pub review: u64,
    /// Declined.
    pub decline: u64,
}

/// One bin of the score histogram.
#[derive(Debug, Serialize)]
pub struct HistogramBin {
    /// Lower edge (inclusive).
    pub lower: f64,
    /// Upper edge (exclusive, inclusive for the last).
    pub upper: f64,
    /// Rows.
    pub count: u64,
}

/// `score`: the closing line of a run.
pub fn score_summary(stats: &ScoreStats) -> String {
    format!(
        "scored {} rows in {:.1}s ({:.0} rows/s): {} approve, {} review, {} decline\n",
        stats.rows_scored,
        stats.seconds,
        stats.rows_per_second,
        stats.decisions.approve,
        stats.decisions.review,
        stats.decisions.decline
    )
}

/// `score`, tabular model: the unreadable rows (the event path prints the replay's report).
pub fn score_bad_rows(input: &Path, bad_rows: &BadRows) -> String {
    let mut text = format!("{}: {} bad rows skipped\n", input.display(), bad_rows.count());
    for issue in bad_rows.examples() {
        let _ = writeln!(text, "  line {}: {}", issue.line, issue.reason);
    }
    text
}

/// `simulate`: rows written, fraud share, rows per scenario (no final newline).
pub fn simulation(rows: u64, by_scenario: &BTreeMap<Scenario, u64>, out: &Path, elapsed: Duration) -> String {
    let fraud: u64 = by_scenario
        .iter()
        .filter(|(scenario, _)| **scenario != Scenario::None)
        .map(|(_, n)| n)
        .sum();
    let mut text = format!(
        "simulated {} transactions ({} fraud, {:.2}%) into {} in {:.2}s ({:.0} rows/s)",
        rows,
        fraud,
        100.0 * fraud as f64 / rows.max(1) as f64,
        out.display(),
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64().max(1e-9),
    );
    for (scenario, count) in by_scenario {
        let _ = write!(text, "\n  {:<22}{count:>10}", scenario.as_str());
    }
    text
}

/// Per-group means of features, for "are the classes separable?" at a glance.
pub struct GroupSummary {
    names: Vec<String>,
    /// Indices into the feature vector of the features to show.
    shown: Vec<usize>,
    groups: BTreeMap<String, GroupStats>,
}

/// Accumulated values of one group.
struct GroupStats {
    rows: u64,
    /// Per shown feature: sum and number of non-missing values.
    sums: Vec<(f64, u64)>,
}

impl GroupSummary {
    /// Summarises the features named in `shown` (all when empty) of vectors laid out as `names`.
    pub fn new(names: &[String], shown: &[String]) -> anyhow::Result<Self> {
        let shown: Vec<usize> = if shown.is_empty() {
            (0..names.len()).collect()
        } else {
            shown
                .iter()
                .map(|name| {
                    names.iter().position(|n| n == name).ok_or_else(|| {
                        anyhow::anyhow!(
                            "unknown feature {name:?} in --summary-features; features are: {}",
                            names.join(", ")
                        )
                    })
                })
                .collect::<anyhow::Result<_>>()?
        };
        Ok(Self {
            names: names.to_vec(),
            shown,
            groups: BTreeMap::new(),
        })
    }

    /// Adds one row to `group`.
    pub fn add(&mut self, group: &str, values: &[f64]) {
        let entry = self.groups.entry(group.to_owned()).or_insert_with(|| GroupStats {
            rows: 0,
            sums: vec![(0.0, 0); self.shown.len()],
        });
        entry.rows += 1;
        for (slot, idx) in entry.sums.iter_mut().zip(&self.shown) {
            let value = values[*idx];
            if value.is_finite() {
                slot.0 += value;
                slot.1 += 1;
            }
        }
    }

    /// A table: one row per feature, one column per group; `-` where a group has no value.
    pub fn render(&self, by: &str) -> String {
        let groups: Vec<(&String, &GroupStats)> = self.groups.iter().collect();
        let name_width = self
            .shown
            .iter()
            .map(|idx| self.names[*idx].len())
            .max()
            .unwrap_or(7)
            .max(7);
        let width = groups.iter().map(|(name, _)| name.len()).max().unwrap_or(8).max(10);
        let mut out = format!("mean of each feature by {by}\n{:name_width$}", "feature");
        for (name, _) in &groups {
            out.push_str(&format!("  {name:>width$}"));
        }
        out.push_str(&format!("\n{:name_width$}", "rows"));
        for (_, stats) in &groups {
            out.push_str(&format!("  {:>width$}", stats.rows));
        }
        for (position, idx) in self.shown.iter().enumerate() {
            out.push_str(&format!("\n{:name_width$}", self.names[*idx]));
            for (_, stats) in &groups {
                let (sum, n) = stats.sums[position];
                let cell = if n == 0 {
                    "-".to_owned()
                } else {
                    format_mean(sum / n as f64)
                };
                out.push_str(&format!("  {cell:>width$}"));
            }
        }
        out.push('\n');
        out
    }
}

fn format_mean(value: f64) -> String {
    if value.abs() >= 1000.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}
