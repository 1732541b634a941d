//! `fraudlens score`: the daily batch-inference job. Replays the file through
//! the model's own schema and feature spec (rows before `--from` only build
//! state), scores the rows of the window in parallel batches
//! ([`fraudlens_ingest::Predictions`]), and writes one prediction per row —
//! probability, decision, reasons — plus run statistics.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use fraudlens_ingest::{Predictions, RowMeta, TabularReader, replay_inputs};
use fraudlens_model::artifact::{Artifact, ModelKind, RunInfo};
use fraudlens_model::inputs::InputSpec;

use crate::cli::ScoreArgs;
use crate::commands::dataset::{Window, event_inputs, is_fraud, read_options};
use crate::commands::output::{Output, write_atomically};
use crate::commands::progress;
use crate::commands::render;
use crate::config::Config;
use crate::exit::{Classify, CliResult, Failure};

/// Loads a model directory; a corrupt or mismatched artifact is a data error.
pub fn load_model(dir: &Path) -> CliResult<Artifact> {
    Artifact::load(dir)
        .with_context(|| format!("loading the model {}", dir.display()))
        .data()
}

/// Runs `fraudlens score`.
pub fn run(config: &Config, args: ScoreArgs) -> CliResult {
    let started = Instant::now();
    let artifact = load_model(&args.model)?;
    let window = Window::parse(args.from.as_deref(), args.to.as_deref(), ("from", "to"))?;
    let strict = args.strict || config.ingest.strict;
    let max_examples = config.ingest.max_error_examples;
    let output = Output::create(&args.output, &[&args.input])?;
    let (predictions, rows_read, bad_rows) = match &artifact.manifest.inputs {
        InputSpec::Events { .. } => {
            let inputs = event_inputs(config, &artifact)?;
            let mut predictions =
                Predictions::new(&artifact, args.reasons, output, "transaction_id").context("writing the header")?;
            let bar = progress::spinner("scoring");
            let options = read_options(config, strict, false);
            let summary = replay_inputs(
                &inputs,
                &args.input,
                options,
                fraudlens_pipeline::now_ms(),
                |tx, row| {
                    bar.inc(1);
                    if !window.contains(tx.timestamp.as_millis()) {
                        return Ok::<_, Failure>(());
                    }
                    let meta = RowMeta {
                        id: tx.id.as_str().to_owned(),
                        time: tx.timestamp.to_string(),
                        label: is_fraud(tx.label),
                    };
                    Ok(predictions.push(row, meta)?)
                },
            )?;
            bar.finish_and_clear();
            eprint!("{}", summary.report());
            (predictions, summary.rows, summary.bad_rows.count())
        }
        InputSpec::Tabular { encoding } => {
            if window != Window::ALL {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "--from/--to need a model trained on transactions"
                )));
            }
            let mut reader = TabularReader::open(&args.input, encoding, strict, max_examples)?;
            let mut predictions =
                Predictions::new(&artifact, args.reasons, output, "row").context("writing the header")?;
            let mut row = Vec::new();
            let mut n = 0u64;
            // an ONNX model needs every feature (runtimes disagree on what it makes of NaN)
            let needs_all = artifact.manifest.kind == ModelKind::Onnx;
            while let Some(label) = reader.next_row(&mut row)? {
                if needs_all && let Some(at) = row.iter().position(|value| value.is_nan()) {
                    let name = artifact.manifest.feature_names.get(at).map_or("?", String::as_str);
                    reader.refuse_last(format!(
                        "column {name:?}: missing, and an ONNX model needs every feature"
                    ))?;
                    continue;
                }
                n += 1;
                let meta = RowMeta {
                    id: n.to_string(),
                    time: String::new(),
                    label: is_fraud(label),
                };
                predictions.push(&row, meta)?;
            }
            if reader.bad_rows().count() > 0 {
                eprint!("{}", render::score_bad_rows(&args.input, reader.bad_rows()));
            }
            (predictions, n, reader.bad_rows().count())
        }
    };
    let (output, stats) = predictions.finish()?;
    output.commit()?;
    let info = RunInfo {
        input: args.input.display().to_string(),
        rows_read,
        bad_rows,
        seconds: started.elapsed().as_secs_f64(),
    };
    let stats = stats.finish(&artifact, info);
    eprint!("{}", render::score_summary(&stats));
    if let Some(path) = &args.stats {
        let json = serde_json::to_vec_pretty(&stats).context("serialising the stats")?;
        write_atomically(path, &json, &[&args.input])?;
    }
    Ok(())
}
