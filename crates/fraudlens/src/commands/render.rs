//! The reports of the commands, all written here: what a command computed
//! in, the text for the terminal out. Each one is pinned by a
//! snapshot test (`tests/it/snapshots.rs`), so a change of a user-visible text
//! shows up in review.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use fraudlens_core::SchemaConfig;
use fraudlens_core::tabular::{ColumnKind, InferredColumn, TabularEncoding};
use fraudlens_features::FeatureEngine;
use fraudlens_ingest::{BadRows, EventCounts, TabularProfile};
use fraudlens_model::artifact::ScoreStats;
use fraudlens_sim::Scenario;

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
