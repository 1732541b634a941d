//! `fraudlens drift`: how far a file's or the store's inputs and scores
//! moved from what a model was trained on (`fraudlens_model::drift`): PSI,
//! KS and missing rates per input, the largest PSI first.

use std::path::Path;

use anyhow::Context as _;
use fraudlens_core::Timestamp;
use fraudlens_ingest::{TabularReader, replay_inputs};
use fraudlens_model::artifact::Artifact;
use fraudlens_model::drift::{Drift, DriftReport, DriftSettings, DriftStatus};
use fraudlens_model::fit::Table;
use fraudlens_model::inputs::InputSpec;
use fraudlens_pipeline::registry;
use fraudlens_pipeline::retrain::{self, Window};
use serde::Serialize;

use crate::cli::DriftArgs;
use crate::commands::admin::{block_on, close_store, load_model, open_store, registry_failure, store_url};
use crate::commands::dataset::{Window as Bounds, event_inputs, read_options};
use crate::commands::progress;
use crate::config::Config;
use crate::exit::{Classify, CliResult, Failure};

/// Fewer rows than this make noisy indices (the live metrics wait for as many).
const MIN_ROWS: usize = fraudlens_pipeline::drift::MIN_ROWS;

/// The default window on the store: the last week of stored events.
const DEFAULT_DAYS: i64 = 7;
const DAY_MS: i64 = 86_400_000;

/// What `drift --json` prints.
#[derive(Serialize)]
struct DriftOutput {
    model: String,
    source: String,
    window: Option<Window>,
    report: DriftReport,
}

/// `fraudlens drift`
pub fn run(config: &Config, args: DriftArgs) -> CliResult {
    let settings = config.drift.check().map_err(anyhow::Error::msg).usage()?.clone();
    let bounds = Bounds::parse(args.from.as_deref(), args.to.as_deref(), ("from", "to"))?;
    match &args.data {
        Some(data) => {
            let dir = args.model.as_deref().ok_or_else(|| {
                Failure::Usage(anyhow::anyhow!(
                    "--data needs --model DIR (without --data, the store's production model is checked)"
                ))
            })?;
            let artifact = crate::commands::score::load_model(dir)?;
            has_reference(&artifact)?;
            let table = file_rows(config, &artifact, data, bounds)?;
            report(
                &artifact,
                data.display().to_string(),
                None,
                &table,
                &settings,
                args.json,
            )
        }
        None => block_on(async {
            let store = open_store(config, &store_url(config, &args.store)).await?;
            let rows = store_rows(config, store.as_ref(), args.model.as_deref(), &args, bounds).await;
            close_store(store.as_ref()).await;
            let (artifact, window, table) = rows?;
            report(
                &artifact,
                "the store".to_owned(),
                Some(window),
                &table,
                &settings,
                args.json,
            )
        }),
    }
}

/// Scores the rows, compares them with the model's reference and prints the report.
fn report(
    model: &Artifact,
    source: String,
    window: Option<Window>,
    table: &Table,
    settings: &DriftSettings,
    json: bool,
) -> CliResult {
    let reference = has_reference(model)?;
    if table.is_empty() {
        return Err(Failure::Data(anyhow::anyhow!("no transactions to compare in {source}")));
    }
    let scores = model.ranking_batch(&table.values).context("scoring the rows").data()?;
    let output = DriftOutput {
        model: model.manifest.model_id.clone(),
        source,
        window,
        report: reference.report(&table.values, Some(&scores), settings),
    };
    if json {
        println!("{}", serde_json::to_string(&output).context("rendering JSON")?);
    } else {
        print!("{}", render(&output));
    }
    Ok(())
}

/// The model's reference distributions, or a usage error for a model without them.
fn has_reference(model: &Artifact) -> CliResult<&fraudlens_model::drift::Reference> {
    model.manifest.reference.as_ref().ok_or_else(|| {
        Failure::Usage(anyhow::anyhow!(
            "model {} keeps no reference distributions (imported, or trained before drift monitoring): retrain it",
            model.manifest.model_id
        ))
    })
}

/// The model's input rows of a file (transactions of the window, or tabular rows).
fn file_rows(config: &Config, artifact: &Artifact, data: &Path, bounds: Bounds) -> CliResult<Table> {
    let mut table = Table::new(artifact.n_inputs());
    match &artifact.manifest.inputs {
        InputSpec::Events { .. } => {
            let inputs = event_inputs(config, artifact)?;
            let bar = progress::spinner("replaying transactions");
            let options = read_options(config, config.ingest.strict, false);
            let summary = replay_inputs(&inputs, data, options, fraudlens_pipeline::now_ms(), |tx, row| {
                bar.inc(1);
                if bounds.contains(tx.timestamp.as_millis()) {
                    table.values.extend_from_slice(row);
                    table.push_meta(false, None, None, 1.0);
                }
                Ok::<_, Failure>(())
            })?;
            bar.finish_and_clear();
            eprint!("{}", summary.report());
        }
        InputSpec::Tabular { encoding } => {
            if bounds != Bounds::ALL {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "--from/--to need a model trained on transactions"
                )));
            }
            let (strict, max_examples) = (config.ingest.strict, config.ingest.max_error_examples);
            let mut reader = TabularReader::open(data, encoding, strict, max_examples)?;
            let mut row = Vec::new();
            while reader.next_row(&mut row)?.is_some() {
                table.values.extend_from_slice(&row);
                table.push_meta(false, None, None, 1.0);
            }
            if reader.bad_rows().count() > 0 {
                eprint!("{}", crate::commands::render::score_bad_rows(data, reader.bad_rows()));
            }
        }
    }
    Ok(table)
}

/// The stored decisions of the window as the model's rows.
async fn store_rows(
    config: &Config,
    store: &dyn fraudlens_store::Store,
    dir: Option<&Path>,
    args: &DriftArgs,
    bounds: Bounds,
) -> CliResult<(Artifact, Window, Table)> {
    let model = match dir {
        Some(dir) => load_model(config, dir)?,
        None => registry::production(store, config.security.card_hash_key.as_ref())
            .await
            .map_err(|error| registry_failure(error, "reading the production model"))?,
    };
    has_reference(&model.artifact)?;
    let newest = store
        .latest_event_time()
        .await
        .context("reading the store")?
        .ok_or_else(|| Failure::Data(anyhow::anyhow!("the store holds no transactions")))?;
    let to = match args.to {
        Some(_) => bounds.to,
        None => newest.as_millis() + 1,
    };
    let from = match args.from {
        Some(_) => bounds.from,
        None => to - DEFAULT_DAYS * DAY_MS,
    };
    let window = Window::new(Timestamp::from_millis(from), Timestamp::from_millis(to))
        .map_err(|error| Failure::Usage(error.into()))?;
    // every transaction of the window, labelled or not: the label rule's cutoff is its end
    let rows = retrain::rows_for(store, &model, window, window.to)
        .await
        .map_err(|error| Failure::Runtime(anyhow::Error::from(error).context("reading the store")))?;
    for (version, n) in &rows.counts.other_inputs {
        eprintln!("{n} transactions decided by {version}, which reads other inputs: left out");
    }
    Ok((model.artifact, window, rows.table))
}

fn render(output: &DriftOutput) -> String {
    let report = &output.report;
    let window = output
        .window
        .map(|window| format!(" ({} .. {})", window.from, window.to))
        .unwrap_or_default();
    let mut out = format!(
        "drift of {} on {} rows of {}{window}, against its training (watch at PSI {}, act at {})\n",
        output.model, report.rows, output.source, report.settings.watch, report.settings.act
    );
    if report.rows < MIN_ROWS {
        out.push_str(&format!(
            "  fewer than {MIN_ROWS} rows: the indices are noisy, read them with care\n"
        ));
    }
    let width = report
        .features
        .iter()
        .map(|drift| drift.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(20);
    out.push_str(&format!(
        "  {:<width$} {:>8} {:>7}   {:<22} status\n",
        "input", "psi", "ks", "missing (then → now)"
    ));
    let line = |drift: &Drift| {
        format!(
            "  {:<width$} {:>8.4} {:>7}   {:<22} {}\n",
            drift.name,
            drift.psi,
            drift.ks.map_or_else(|| "-".to_owned(), |ks| format!("{ks:.4}")),
            format!(
                "{:.1} % → {:.1} %",
                drift.missing_reference * 100.0,
                drift.missing_live * 100.0
            ),
            match drift.status {
                DriftStatus::Stable => "stable",
                DriftStatus::Watch => "watch",
                DriftStatus::Act => "act",
            }
        )
    };
    if let Some(score) = &report.score {
        out.push_str(&line(score));
    }
    for drift in &report.features {
        out.push_str(&line(drift));
    }
    let moved = |status: DriftStatus| report.features.iter().filter(|drift| drift.status == status).count();
    out.push_str(&format!(
        "{} inputs to act on, {} to watch, {} stable\n",
        moved(DriftStatus::Act),
        moved(DriftStatus::Watch),
        moved(DriftStatus::Stable)
    ));
    out
}
