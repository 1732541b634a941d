//! `fraudlens score`: the daily batch-inference job. Replays the file through
//! the model's own schema and feature spec (rows before `--from` only build
//! state), scores the rows of the window in parallel batches, and writes one
//! prediction per row — probability, decision, reasons — plus run statistics.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use fraudlens_core::Decision;
use fraudlens_ingest::TabularReader;
use fraudlens_model::artifact::{Artifact, BatchScorer, ScoredRow};
use fraudlens_model::inputs::InputSpec;
use fraudlens_model::metrics::{average_precision, roc_auc};

use crate::cli::ScoreArgs;
use crate::commands::dataset::{ReadOptions, Window, is_fraud, replay_file};
use crate::commands::output::{Output, write_atomically};
use crate::commands::progress;
use crate::commands::render::{self, DecisionCounts, HistogramBin, ScoreStats};
use crate::config::Config;
use crate::exit::{Classify, CliResult, Failure};

/// Loads a model directory; a corrupt or mismatched artifact is a data error.
pub fn load_model(dir: &Path) -> CliResult<Artifact> {
    Artifact::load(dir)
        .with_context(|| format!("loading the model {}", dir.display()))
        .data()
}

/// A row waiting in a batch.
struct Pending {
    id: String,
    time: String,
    label: Option<bool>,
}

/// Scores batches and writes predictions.
struct Scorer<'a> {
    artifact: &'a Artifact,
    n_reasons: usize,
    writer: csv::Writer<Output>,
    blocks: BatchScorer<'a, Pending>,
    probabilities: Vec<f64>,
    labels: Vec<(f64, bool)>,
    decisions: DecisionCounts,
}

impl<'a> Scorer<'a> {
    fn new(artifact: &'a Artifact, n_reasons: usize, output: Output, id_column: &str) -> CliResult<Self> {
        let mut writer = csv::Writer::from_writer(output);
        let mut header = vec![id_column.to_owned(), "timestamp".into(), "fraud_probability".into()];
        header.extend(["decision".into(), "raw_score".into()]);
        if artifact.anomaly.is_some() {
            header.push("anomaly_score".into());
        }
        for idx in 1..=n_reasons {
            header.extend([
                format!("reason_{idx}"),
                format!("reason_{idx}_value"),
                format!("reason_{idx}_contribution"),
            ]);
        }
        header.push("label".into());
        writer.write_record(&header).context("writing the header")?;
        Ok(Self {
            artifact,
            n_reasons,
            writer,
            blocks: BatchScorer::new(artifact, n_reasons),
            probabilities: Vec::new(),
            labels: Vec::new(),
            decisions: DecisionCounts::default(),
        })
    }

    fn push(&mut self, row: &[f64], meta: Pending) -> CliResult {
        if let Some(block) = self.blocks.push(row, meta).context("scoring")? {
            self.write(block)?;
        }
        Ok(())
    }

    /// Writes the predictions of a scored block and counts them.
    fn write(&mut self, block: Vec<ScoredRow<Pending>>) -> CliResult {
        let artifact = self.artifact;
        // shortest representations that read back to the same f64
        let number = |value: Option<f64>| value.map(|value| value.to_string()).unwrap_or_default();
        for ScoredRow { meta, score, reasons } in block {
            let w = &mut self.writer;
            w.write_field(&meta.id)?;
            w.write_field(&meta.time)?;
            w.write_field(number(score.probability))?;
            w.write_field(score.decision.as_str())?;
            w.write_field(number(score.raw))?;
            if artifact.anomaly.is_some() {
                w.write_field(number(score.anomaly))?;
            }
            for idx in 0..self.n_reasons {
                match reasons.get(idx) {
                    Some(reason) => {
                        w.write_field(&reason.feature)?;
                        let value = match (&reason.category, reason.value) {
                            (Some(category), _) => category.clone(),
                            (None, Some(value)) => value.to_string(),
                            (None, None) => String::new(),
                        };
                        w.write_field(value)?;
                        w.write_field(format!("{:.6}", reason.contribution))?;
                    }
                    None => {
                        for _ in 0..3 {
                            w.write_field("")?;
                        }
                    }
                }
            }
            w.write_field(match meta.label {
                Some(true) => "1",
                Some(false) => "0",
                None => "",
            })?;
            w.write_record(None::<&[u8]>)?;
            self.probabilities.push(score.ranking());
            if let Some(label) = meta.label {
                self.labels.push((score.ranking(), label));
            }
            match score.decision {
                Decision::Approve => self.decisions.approve += 1,
                Decision::Review => self.decisions.review += 1,
                Decision::Decline => self.decisions.decline += 1,
            }
        }
        Ok(())
    }

    fn finish(mut self, input: &Path, rows_read: u64, bad_rows: u64, started: Instant) -> CliResult<ScoreStats> {
        let block = self.blocks.flush().context("scoring")?;
        self.write(block)?;
        self.writer.flush().context("writing predictions")?;
        let output = self
            .writer
            .into_inner()
            .map_err(|error| anyhow::anyhow!("writing predictions: {error}"))?;
        output.commit()?;
        let n = self.probabilities.len() as u64;
        let mut histogram: Vec<HistogramBin> = (0..10)
            .map(|idx| HistogramBin {
                lower: f64::from(idx) / 10.0,
                upper: f64::from(idx + 1) / 10.0,
                count: 0,
            })
            .collect();
        for probability in &self.probabilities {
            histogram[((probability * 10.0) as usize).min(9)].count += 1;
        }
        let (scores, labels): (Vec<f64>, Vec<bool>) = self.labels.iter().copied().unzip();
        let frauds = labels.iter().filter(|label| **label).count();
        let seconds = started.elapsed().as_secs_f64();
        let thresholds = &self.artifact.manifest.thresholds;
        Ok(ScoreStats {
            model_id: self.artifact.manifest.model_id.clone(),
            input: input.display().to_string(),
            rows_read,
            rows_scored: n,
            bad_rows,
            decisions: self.decisions,
            labelled_rows: labels.len() as u64,
            fraud_rate: (!labels.is_empty()).then(|| frauds as f64 / labels.len() as f64),
            roc_auc: roc_auc(&scores, &labels),
            average_precision: average_precision(&scores, &labels),
            mean_probability: self.probabilities.iter().sum::<f64>() / n.max(1) as f64,
            score_histogram: histogram,
            thresholds: (thresholds.review(), thresholds.decline()),
            seconds,
            rows_per_second: n as f64 / seconds.max(1e-9),
        })
    }
}

/// Runs `fraudlens score`.
pub fn run(config: &Config, args: ScoreArgs) -> CliResult {
    let started = Instant::now();
    let artifact = load_model(&args.model)?;
    let window = Window::parse(args.from.as_deref(), args.to.as_deref(), ("from", "to"))?;
    let strict = args.strict || config.ingest.strict;
    let max_examples = config.ingest.max_error_examples;
    let output = Output::create(&args.output, &[&args.input])?;
    let stats = match &artifact.manifest.inputs {
        InputSpec::Events { .. } => {
            let inputs = artifact
                .manifest
                .inputs
                .prepare_events(config.security.card_hash_key.as_ref())
                .context("preparing the model's inputs")
                .data()?;
            let mut scorer = Scorer::new(&artifact, args.reasons, output, "transaction_id")?;
            let mut row = Vec::new();
            let bar = progress::spinner("scoring");
            let summary = replay_file(
                &inputs.schema,
                inputs.spec.clone(),
                &args.input,
                ReadOptions {
                    strict,
                    max_examples,
                    sort: false,
                    time_policy: config.event_time.policy(),
                },
                |tx, _, features| {
                    bar.inc(1);
                    if !window.contains(tx.timestamp.as_millis()) {
                        return Ok(());
                    }
                    row.clear();
                    row.extend_from_slice(features);
                    inputs.push_attributes(tx, &mut row);
                    scorer.push(
                        &row,
                        Pending {
                            id: tx.id.as_str().to_owned(),
                            time: tx.timestamp.to_string(),
                            label: is_fraud(tx.label),
                        },
                    )
                },
            )?;
            bar.finish_and_clear();
            eprint!("{}", summary.report());
            scorer.finish(&args.input, summary.rows, summary.bad_rows.count(), started)?
        }
        InputSpec::Tabular { encoding } => {
            if window != Window::ALL {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "--from/--to need a model trained on transactions"
                )));
            }
            let mut reader = TabularReader::open(&args.input, encoding, strict, max_examples)?;
            let mut scorer = Scorer::new(&artifact, args.reasons, output, "row")?;
            let mut row = Vec::new();
            let mut n = 0u64;
            while let Some(label) = reader.next_row(&mut row)? {
                n += 1;
                scorer.push(
                    &row,
                    Pending {
                        id: n.to_string(),
                        time: String::new(),
                        label: label.map(|label| label == fraudlens_core::Label::Fraud),
                    },
                )?;
            }
            if reader.bad_rows().count() > 0 {
                eprint!("{}", render::score_bad_rows(&args.input, reader.bad_rows()));
            }
            scorer.finish(&args.input, n, reader.bad_rows().count(), started)?
        }
    };
    eprint!("{}", render::score_summary(&stats));
    if let Some(path) = &args.stats {
        let json = serde_json::to_vec_pretty(&stats).context("serialising the stats")?;
        write_atomically(path, &json)?;
    }
    Ok(())
}
