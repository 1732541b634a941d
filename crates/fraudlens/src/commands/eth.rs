//! `fraudlens eth score` and `fraudlens eth features`: Ethereum addresses
//! from chain data — their history from a node or provider, their features
//! in the public address dataset's columns, and a model's decision.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use fraudlens_chain::features::{COLUMNS, ID_COLUMNS};
use fraudlens_chain::{Address, AddressReport, Chain, ChainError, EthSettings, SourceKind};
use fraudlens_core::Secret;
use fraudlens_pipeline::ServingModel;
use fraudlens_pipeline::eth::address_row;
use futures_util::StreamExt as _;
use serde_json::json;

use super::admin::block_on;
use super::output::Output;
use crate::cli::{ChainArgs, EthCommand, EthFeaturesArgs, EthScoreArgs};
use crate::config::Config;
use crate::exit::{Classify as _, CliResult, Failure};

/// Runs `fraudlens eth …`.
pub fn run(config: &Config, command: EthCommand) -> CliResult {
    match command {
        EthCommand::Score(args) => score(config, args),
        EthCommand::Features(args) => features(config, args),
    }
}

/// `[eth]` with the command's flags applied.
fn settings(config: &Config, args: &ChainArgs) -> EthSettings {
    let mut settings = config.eth.clone();
    if let Some(url) = &args.rpc {
        settings.rpc_url = Some(Secret::new(url.clone()));
    }
    if let Some(source) = &args.source {
        settings.source = match source.as_str() {
            "alchemy" => SourceKind::Alchemy,
            "otterscan" => SourceKind::Otterscan,
            "scan" => SourceKind::Scan,
            _ => SourceKind::Auto,
        };
    }
    settings
}

/// A chain error as a failure: bad settings are usage errors, the rest the environment's.
fn chain_failure(error: ChainError) -> Failure {
    match error {
        ChainError::Config(_) | ChainError::Address(_) => Failure::Usage(error.into()),
        error => Failure::Runtime(error.into()),
    }
}

fn score(config: &Config, args: EthScoreArgs) -> CliResult {
    let address = Address::parse(&args.address)
        .with_context(|| {
            format!(
                "{:?} is not an Ethereum address",
                args.address.chars().take(60).collect::<String>()
            )
        })
        .usage()?;
    let model = ServingModel::load(&args.model, None)
        .with_context(|| format!("loading the model {}", args.model.display()))
        .data()?;
    let Some(inputs) = model.rows() else {
        return Err(anyhow::anyhow!(
            "{} reads transactions; `eth score` needs a model trained in tabular mode on address features \
             (`fraudlens eth features` writes such a training file)",
            args.model.display()
        ))
        .usage();
    };
    let chain = Chain::new(&settings(config, &args.chain)).map_err(chain_failure)?;
    let report = block_on(async { chain.report(address, args.chain.block).await.map_err(chain_failure) })?;
    let row = address_row(inputs, &report).map_err(anyhow::Error::msg).data()?;
    let artifact = &model.artifact;
    let scored = artifact.score(&row.values).context("scoring the address").data()?;
    let reasons = artifact
        .reasons(&row.values, args.reasons)
        .context("explaining the score")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let features: serde_json::Map<String, serde_json::Value> = report
            .features
            .iter()
            .map(|(name, value)| (name.to_owned(), value.json()))
            .collect();
        let body = json!({
            "address": report.address.checksummed(),
            "block": report.block,
            "block_time": report.block_time,
            "source": report.source,
            "is_contract": report.is_contract,
            "decision": scored.decision,
            "fraud_probability": scored.probability,
            "score": scored.ranking(),
            "model_version": model.version(),
            "reasons": reasons,
            "features": features,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&body).context("writing JSON")?).context("writing")?;
        return Ok(());
    }
    let kind = if report.is_contract { "contract" } else { "account" };
    writeln!(
        out,
        "{} ({kind}) as of block {} — {} transactions, {} token transfers, from {} via {}",
        report.address.checksummed(),
        report.block,
        report.transactions,
        report.token_transfers,
        report.source.name(),
        chain.provider()
    )
    .context("writing")?;
    let probability = scored.probability.map_or_else(|| "-".to_owned(), |p| format!("{p:.4}"));
    writeln!(
        out,
        "decision: {}   fraud probability: {probability}   model: {}",
        scored.decision.as_str(),
        model.version()
    )
    .context("writing")?;
    if !reasons.is_empty() {
        writeln!(out, "reasons (contribution to the log-odds):").context("writing")?;
        for reason in &reasons {
            let value = reason
                .category
                .clone()
                .or_else(|| reason.value.map(|value| format!("{value}")))
                .unwrap_or_else(|| "missing".to_owned());
            writeln!(
                out,
                "  {:+.3}  {} = {value}",
                reason.contribution,
                reason.feature.trim()
            )
            .context("writing")?;
        }
    }
    Ok(())
}

/// One line of the address list.
struct Listed {
    line: u64,
    address: Address,
    label: String,
}

/// Reads the address list: a CSV with an `Address` column (and `FLAG`), or
/// one address per line (optionally `,LABEL`). Bad lines are reported and left out.
fn read_list(path: &Path) -> CliResult<(Vec<Listed>, Vec<String>)> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))
        .data()?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(std::io::BufReader::new(file));
    let mut records = reader.records();
    let mut listed = Vec::new();
    let mut bad = Vec::new();
    let read_error = |error: csv::Error| anyhow::anyhow!("reading {}: {error}", path.display());
    let first = match records.next() {
        Some(record) => record.map_err(read_error).data()?,
        None => return Err(anyhow::anyhow!("{} is empty", path.display())).data(),
    };
    let cell = |record: &csv::StringRecord, column: usize| {
        record
            .get(column)
            .unwrap_or_default()
            .trim_start_matches('\u{feff}')
            .to_owned()
    };
    // a header names the columns; a list starts with an address
    let (address_column, label_column) = if let Ok(address) = Address::parse(&cell(&first, 0)) {
        listed.push(Listed {
            line: 1,
            address,
            label: cell(&first, 1),
        });
        (0, Some(1))
    } else {
        let header: Vec<String> = (0..first.len()).map(|column| cell(&first, column)).collect();
        let find = |names: &[&str]| {
            header
                .iter()
                .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
        };
        let Some(address) = find(&["Address"]) else {
            return Err(anyhow::anyhow!(
                "{}: no Address column in the header ({}), and the first line is not an address",
                path.display(),
                header.join(", ")
            ))
            .data();
        };
        (address, find(&["FLAG", "label", "is_fraud"]))
    };
    // records are counted as lines (a quoted cell spanning lines would shift the count)
    for (line, record) in (2u64..).zip(records) {
        let record = record.map_err(read_error).data()?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        match Address::parse(&cell(&record, address_column)) {
            Ok(address) => listed.push(Listed {
                line,
                address,
                label: label_column.map(|column| cell(&record, column)).unwrap_or_default(),
            }),
            Err(error) => bad.push(format!("line {line}: {error}")),
        }
    }
    Ok((listed, bad))
}

fn features(config: &Config, args: EthFeaturesArgs) -> CliResult {
    let (listed, mut skipped) = read_list(&args.addresses)?;
    if listed.is_empty() {
        return Err(anyhow::anyhow!(
            "{}: no valid address ({})",
            args.addresses.display(),
            skipped.join("; ")
        ))
        .data();
    }
    let mut settings = settings(config, &args.chain);
    settings.max_concurrent_reports = settings.max_concurrent_reports.max(usize::from(args.concurrency));
    let chain = Chain::new(&settings).map_err(chain_failure)?;
    let block = args.chain.block;
    // renamed into place at the end: a stopped run leaves no half file, and never writes over the list
    let output = Output::create(&args.out, &[args.addresses.as_path()])?;
    let mut writer = csv::Writer::from_writer(output);
    writer.write_record(ID_COLUMNS.iter().chain(COLUMNS.iter()))?;
    let bar = super::progress::bar(listed.len() as u64, "addresses");
    let results = block_on(async {
        // the newest block once, so that every address is seen as of the same block
        let at = match block {
            Some(block) => block,
            None => chain.head().await.map_err(chain_failure)?,
        };
        let reports: Vec<Result<AddressReport, ChainError>> = futures_util::stream::iter(&listed)
            .map(|item| {
                let chain = &chain;
                let bar = &bar;
                async move {
                    let report = chain.report(item.address, Some(at)).await;
                    bar.inc(1);
                    report
                }
            })
            .buffered(usize::from(args.concurrency))
            .collect()
            .await;
        Ok(reports)
    });
    bar.finish_and_clear();
    let reports = results?;
    let mut written = 0usize;
    for (index, (item, report)) in listed.iter().zip(reports).enumerate() {
        match report {
            Ok(report) => {
                let mut record = vec![index.to_string(), item.address.to_string(), item.label.clone()];
                record.extend(report.features.values().iter().map(|value| value.cell()));
                writer.write_record(&record)?;
                written += 1;
            }
            // the provider failing is no fault of the address: stop rather than write a file missing rows
            Err(error) if error.is_provider() => {
                return Err(Failure::Runtime(
                    anyhow::Error::new(error).context(format!("fetching line {}'s address", item.line)),
                ));
            }
            Err(error) => skipped.push(format!("line {} ({}): {error}", item.line, item.address)),
        }
    }
    if written == 0 {
        // nothing to keep: the temporary file goes with the writer
        return Err(anyhow::anyhow!(
            "no address could be read from the chain ({})",
            skipped.join("; ")
        ))
        .data();
    }
    let output = writer
        .into_inner()
        .map_err(|error| anyhow::anyhow!("writing the features: {}", error.error()))?;
    output.commit().context("writing the features")?;
    eprintln!(
        "wrote {written} addresses to {} ({} JSON-RPC calls to {})",
        args.out.display(),
        chain.calls(),
        chain.provider()
    );
    if !skipped.is_empty() {
        eprintln!("left out {}:", skipped.len());
        for line in skipped.iter().take(config.ingest.max_error_examples) {
            eprintln!("  {line}");
        }
    }
    Ok(())
}
