//! `fraudlens inspect`: how fraudlens reads a file, before anything is computed.

use std::fmt::Write as _;

use fraudlens_core::Label;
use fraudlens_core::tabular::{ColumnKind, InferredColumn, TabularEncoding, find_label_column};
use fraudlens_ingest::{EventReader, InputFormat, profile_csv};

use crate::cli::{InspectArgs, Mode};
use crate::commands::features::resolve_mode;
use crate::commands::{apply_input_flags, build_schema};
use crate::config::Config;
use crate::exit::{CliResult, Failure};

/// Runs `fraudlens inspect`.
pub fn run(mut config: Config, args: InspectArgs) -> CliResult {
    let schema = build_schema(&mut config, &args.schema)?;
    apply_input_flags(&mut config, &args.input);
    let (strict, max_examples) = (config.ingest.strict, config.ingest.max_error_examples);
    let data = &args.input.data;
    match resolve_mode(&args.input, &schema)? {
        Mode::Tabular => {
            let profile = profile_csv(data, strict, max_examples)?;
            let label_idx = find_label_column(&profile.header, args.schema.label.as_deref());
            let (encoding, inferred) = TabularEncoding::fit(&profile.columns, label_idx, &args.input.exclude);
            println!(
                "{}: tabular dataset, {} rows, {} columns",
                data.display(),
                profile.n_rows,
                profile.header.len()
            );
            for note in &profile.header_notes {
                println!("note: {note}");
            }
            print!("{}", render_inference(&inferred));
            println!(
                "{} feature columns; label: {}",
                encoding.features.len(),
                encoding.label.as_deref().unwrap_or("none found (use --label)")
            );
            if profile.bad_rows.count() > 0 {
                println!("{}", profile.bad_rows);
            }
        }
        _ => {
            let mut reader = EventReader::open(data, InputFormat::from_path(data), &schema, strict, max_examples)?;
            let cfg = schema.config();
            println!("{}: transactions (event mode)", data.display());
            println!("  transaction id  <- {}", cfg.transaction_id);
            println!("  timestamp       <- {} ({:?})", cfg.timestamp, cfg.timestamp_format);
            println!("  amount          <- {} ({:?} units)", cfg.amount, cfg.amount_unit);
            println!(
                "  currency        <- {} (default {})",
                cfg.currency.as_deref().unwrap_or("-"),
                cfg.default_currency
            );
            println!("  label           <- {}", cfg.label.as_deref().unwrap_or("-"));
            for (name, entity) in &cfg.entities {
                let hashed = if entity.card_number {
                    ", card number: hashed"
                } else {
                    ""
                };
                println!("  entity {name:<9}<- {}{hashed}", entity.field);
            }
            for (name, attribute) in &cfg.attributes {
                println!(
                    "  {:<16}<- {} ({})",
                    name,
                    attribute.field.as_deref().unwrap_or(name),
                    attribute.kind
                );
            }
            for note in reader.notes() {
                println!("note: {note}");
            }
            let (mut first, mut last, mut fraud, mut labeled) = (None, None, 0u64, 0u64);
            while let Some(tx) = reader.next_transaction()? {
                first = Some(first.map_or(tx.timestamp, |f: fraudlens_core::Timestamp| f.min(tx.timestamp)));
                last = Some(last.map_or(tx.timestamp, |l: fraudlens_core::Timestamp| l.max(tx.timestamp)));
                labeled += u64::from(tx.label.is_some());
                fraud += u64::from(tx.label == Some(Label::Fraud));
            }
            let (Some(first), Some(last)) = (first, last) else {
                return Err(Failure::Data(anyhow::anyhow!(
                    "{}: no valid rows\n{}",
                    data.display(),
                    reader.bad_rows()
                )));
            };
            println!(
                "{} valid rows from {first} to {last}; {labeled} labeled, {fraud} fraud ({:.2}%)",
                reader.n_good(),
                100.0 * fraud as f64 / labeled.max(1) as f64
            );
            println!("{}", reader.bad_rows());
        }
    }
    Ok(())
}

/// A table of inferred column types with the statistics behind them.
pub fn render_inference(columns: &[InferredColumn]) -> String {
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
