//! `fraudlens inspect`: how fraudlens reads a file, before anything is computed.

use fraudlens_core::tabular::{TabularEncoding, find_label_column};
use fraudlens_core::{Label, Timestamp};
use fraudlens_ingest::{EventReader, InputFormat, profile_csv};

use crate::cli::{InspectArgs, Mode};
use crate::commands::dataset::resolve_mode;
use crate::commands::render::{self, EventCounts};
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
            print!("{}", render::tabular_inspection(data, &profile, &inferred, &encoding));
        }
        _ => {
            let mut reader = EventReader::open(data, InputFormat::from_path(data), &schema, strict, max_examples)?;
            print!("{}", render::event_roles(data, schema.config(), reader.notes()));
            let (mut first, mut last, mut fraud, mut labeled) = (None, None, 0u64, 0u64);
            while let Some(tx) = reader.next_transaction()? {
                first = Some(first.map_or(tx.timestamp, |f: Timestamp| f.min(tx.timestamp)));
                last = Some(last.map_or(tx.timestamp, |l: Timestamp| l.max(tx.timestamp)));
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
            let counts = EventCounts {
                rows: reader.n_good(),
                first,
                last,
                labeled,
                fraud,
            };
            print!("{}", render::event_counts(&counts, reader.bad_rows()));
        }
    }
    Ok(())
}
