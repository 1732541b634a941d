//! `fraudlens inspect`: how fraudlens reads a file, before anything is computed.

use fraudlens_core::tabular::{TabularEncoding, find_label_column};
use fraudlens_ingest::{EventCounts, EventReader, InputFormat, profile_csv};

use crate::cli::{InspectArgs, Mode};
use crate::commands::dataset::resolve_mode;
use crate::commands::render;
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
            let Some(counts) = EventCounts::read(&mut reader)? else {
                return Err(Failure::Data(anyhow::anyhow!(
                    "{}: no valid rows\n{}",
                    data.display(),
                    reader.bad_rows()
                )));
            };
            print!("{}", render::event_counts(&counts, reader.bad_rows()));
        }
    }
    Ok(())
}
