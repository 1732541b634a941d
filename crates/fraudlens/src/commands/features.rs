//! `fraudlens features`: the feature matrix of a dataset.
//!
//! Event mode replays the transactions in order through the same
//! [`FeatureEngine`](fraudlens_features::FeatureEngine) that serves online, with historical labels becoming known
//! `label_delay` after their transaction. Tabular mode infers column types,
//! encodes categoricals and writes the encoded matrix.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use fraudlens_core::Schema;
use fraudlens_core::tabular::{TabularEncoding, find_label_column};
use fraudlens_features::{EventTimePolicy, FeatureSpec};
use fraudlens_ingest::{
    FeatureMatrixWriter, GroupBy, GroupSummary, TabularMatrixWriter, TabularReader, label_group, profile_csv,
    write_feature_matrix,
};
use fraudlens_pipeline::now_ms;

use crate::cli::{FeaturesArgs, Mode};
use crate::commands::dataset::{ReadOptions, resolve_mode};
use crate::commands::output::{Output, write_atomically};
use crate::commands::render;
use crate::commands::{apply_input_flags, build_schema};
use crate::config::Config;
use crate::exit::{Classify, CliResult, Failure};

/// Runs `fraudlens features`.
pub fn run(mut config: Config, args: FeaturesArgs) -> CliResult {
    let schema = build_schema(&mut config, &args.schema)?;
    apply_input_flags(&mut config, &args.input);
    let (strict, max_examples) = (config.ingest.strict, config.ingest.max_error_examples);
    match resolve_mode(&args.input, &schema)? {
        Mode::Tabular => {
            let label = args.schema.label.as_deref();
            featurize_tabular(&args, label, strict, max_examples)
        }
        _ => {
            let spec = Arc::new(
                FeatureSpec::new(config.features.clone(), &schema)
                    .context("invalid feature spec")
                    .usage()?,
            );
            let job = EventJob {
                data: args.input.data.clone(),
                out: args.out.clone(),
                strict,
                max_examples,
                sort: args.sort,
                time_policy: config.event_time.policy(),
                snapshot_out: args.snapshot_out.clone(),
                summary_by: args.summary_by.clone(),
                summary_features: args.summary_features.clone(),
            };
            let report = featurize_events(&schema, spec, &job)?;
            eprint!("{}", report.text);
            if let Some(summary) = report.summary {
                print_summary(&summary, &args.out);
            }
            Ok(())
        }
    }
}

/// Parameters of an event-mode run.
pub struct EventJob {
    /// Input file.
    pub data: PathBuf,
    /// Output CSV.
    pub out: PathBuf,
    /// Stop at the first bad row.
    pub strict: bool,
    /// Bad-row examples to keep.
    pub max_examples: usize,
    /// Sort by time in memory first.
    pub sort: bool,
    /// Which event times are accepted (the others are bad rows).
    pub time_policy: EventTimePolicy,
    /// Where to write the engine state afterwards.
    pub snapshot_out: Option<PathBuf>,
    /// Group column of the summary.
    pub summary_by: Option<String>,
    /// Features in the summary (all when empty).
    pub summary_features: Vec<String>,
}

/// What an event-mode run did.
pub struct EventReport {
    /// Lines for the terminal.
    pub text: String,
    /// The per-group summary, when asked for.
    pub summary: Option<String>,
}

/// Replays the transactions of `job.data` through the engine and writes the feature matrix.
pub fn featurize_events(schema: &Schema, spec: Arc<FeatureSpec>, job: &EventJob) -> CliResult<EventReport> {
    let started = Instant::now();
    let feature_names = spec.feature_names().to_vec();
    let mut summary = match &job.summary_by {
        Some(by) => {
            let group_by = GroupBy::resolve(by, schema).map_err(usage)?;
            let summary = GroupSummary::new(&feature_names, &job.summary_features).map_err(usage)?;
            Some((group_by, summary))
        }
        None => None,
    };
    let mut writer = FeatureMatrixWriter::new(Output::create(&job.out, &[&job.data])?, schema, &feature_names)
        .context("writing the header")?;
    let input = ReadOptions {
        strict: job.strict,
        max_examples: job.max_examples,
        sort: job.sort,
        time_policy: job.time_policy,
    };
    let groups = summary.as_mut().map(|(group_by, summary)| (*group_by, summary));
    let replayed = write_feature_matrix(schema, spec, &job.data, input, now_ms(), &mut writer, groups)?;
    let rows = replayed.rows;
    if rows == 0 {
        return Err(Failure::Data(anyhow::anyhow!(
            "{}: no valid rows\n{}",
            job.data.display(),
            replayed.report()
        )));
    }
    let output = writer
        .into_inner()
        .map_err(|error| anyhow::anyhow!("writing {}: {error}", job.out.display()))?;
    output.commit()?;
    let engine = &replayed.engine;
    let mut text = render::features_written(rows, feature_names.len(), &job.out, started.elapsed(), engine);
    text.push_str(&replayed.report());
    if let Some(path) = &job.snapshot_out {
        write_atomically(path, &engine.snapshot(), &[&job.data])?;
        let _ = writeln!(text, "engine state written to {}", path.display());
    }
    let summary = summary.map(|(_, summary)| summary.render(job.summary_by.as_deref().unwrap_or("")));
    Ok(EventReport { text, summary })
}

fn usage(message: String) -> Failure {
    Failure::Usage(anyhow::anyhow!(message))
}

fn print_summary(summary: &str, out: &Path) {
    // keep stdout for data when the matrix itself goes there
    if out == Path::new("-") {
        eprint!("{summary}");
    } else {
        print!("{summary}");
    }
}

fn featurize_tabular(args: &FeaturesArgs, label: Option<&str>, strict: bool, max_examples: usize) -> CliResult {
    let started = Instant::now();
    let data = &args.input.data;
    if data == Path::new("-") {
        return Err(Failure::Usage(anyhow::anyhow!(
            "tabular mode reads the file twice: give a file, not standard input"
        )));
    }
    let profile = profile_csv(data, strict, max_examples)?;
    let label_idx = find_label_column(&profile.header, label);
    if let (Some(name), None) = (label, label_idx) {
        return Err(Failure::Data(anyhow::anyhow!(
            "label column {name:?} not found in {}",
            data.display()
        )));
    }
    let (encoding, inferred) = TabularEncoding::fit(&profile.columns, label_idx, &args.input.exclude);
    for note in &profile.header_notes {
        eprintln!("note: {note}");
    }
    eprint!("{}", render::inference_table(&inferred));
    if encoding.features.is_empty() {
        return Err(Failure::Data(anyhow::anyhow!(
            "{}: no usable feature columns",
            data.display()
        )));
    }
    let mut reader = TabularReader::open(data, &encoding, strict, max_examples)?;
    let mut writer =
        TabularMatrixWriter::new(Output::create(&args.out, &[data])?, &encoding).context("writing the header")?;
    let label_name = encoding.label.as_deref().unwrap_or("label");
    let names: Vec<String> = encoding.feature_names().map(str::to_owned).collect();
    let mut summary = match &args.summary_by {
        Some(by) if by != label_name && by != "label" => {
            return Err(Failure::Usage(anyhow::anyhow!(
                "--summary-by {by:?}: tabular mode groups by the label ({label_name})"
            )));
        }
        Some(_) => Some(GroupSummary::new(&names, &args.summary_features).map_err(usage)?),
        None => None,
    };
    let mut row = Vec::new();
    let mut rows = 0u64;
    while let Some(label) = reader.next_row(&mut row)? {
        writer.write_row(&row, label).context("writing the feature matrix")?;
        if let Some(summary) = summary.as_mut() {
            summary.add(label_group(label), &row);
        }
        rows += 1;
    }
    let output = writer
        .into_inner()
        .map_err(|error| anyhow::anyhow!("writing {}: {error}", args.out.display()))?;
    output.commit()?;
    if let Some(path) = &args.encoding_out {
        let json = serde_json::to_vec_pretty(&encoding).context("rendering the encoding")?;
        write_atomically(path, &json, &[data])?;
        eprintln!("encoding written to {}", path.display());
    }
    eprint!(
        "{}",
        render::tabular_features_written(rows, encoding.features.len(), &args.out, started.elapsed())
    );
    if reader.bad_rows().count() > 0 {
        eprintln!("{}", reader.bad_rows());
    }
    if let Some(summary) = summary {
        print_summary(
            &summary.render(args.summary_by.as_deref().unwrap_or("label")),
            &args.out,
        );
    }
    let _ = std::io::stdout().flush();
    Ok(())
}
