//! `fraudlens simulate`: write simulated transactions as CSV or JSON lines.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fraudlens_sim::{RecordFormat, Scenario, SimConfig, Simulator, write_records};

use crate::cli::{SimFormat, SimulateArgs};
use crate::commands::output::Output;
use crate::commands::render;
use crate::config::Config;
use crate::exit::{Classify, CliResult};

/// What a simulation produced.
pub struct SimStats {
    /// Rows written.
    pub rows: u64,
    /// Rows per scenario.
    pub by_scenario: BTreeMap<Scenario, u64>,
    /// Wall time of generation and writing.
    pub elapsed: Duration,
}

impl SimStats {
    /// A few lines for the terminal.
    pub fn report(&self, out: &Path) -> String {
        render::simulation(self.rows, &self.by_scenario, out, self.elapsed)
    }
}

impl From<SimFormat> for RecordFormat {
    fn from(format: SimFormat) -> Self {
        match format {
            SimFormat::Csv => Self::Csv,
            SimFormat::Jsonl => Self::Jsonl,
            SimFormat::Stripe => Self::Stripe,
        }
    }
}

/// Runs `fraudlens simulate`.
pub fn run(config: &Config, args: SimulateArgs) -> CliResult {
    let mut sim = config.simulate.clone();
    macro_rules! set {
        ($($field:ident),*) => {$( if let Some(value) = args.$field.clone() { sim.$field = value; } )*};
    }
    set!(
        customers,
        terminals,
        days,
        start_date,
        seed,
        stolen_card_rate,
        compromised_terminal_rate,
        account_takeover_rate,
        card_testing_rate
    );
    if let Some(to) = &args.to {
        let target = fraudlens_stream::KafkaTarget::parse(to).usage()?;
        let format = args.format.unwrap_or(SimFormat::Jsonl);
        if format == SimFormat::Csv {
            return Err(anyhow::anyhow!("--to kafka sends JSON: use --format jsonl or stripe")).usage();
        }
        return super::admin::block_on(simulate_to_kafka(sim, target, args.rate, format));
    }
    let format = args
        .format
        .unwrap_or_else(|| match args.out.extension().and_then(|ext| ext.to_str()) {
            Some("jsonl" | "ndjson" | "json") => SimFormat::Jsonl,
            _ => SimFormat::Csv,
        });
    let stats = simulate_to(sim, &args.out, format)?;
    eprintln!("{}", stats.report(&args.out));
    Ok(())
}

/// Simulates with `config` into `out`.
pub fn simulate_to(config: SimConfig, out: &Path, format: SimFormat) -> CliResult<SimStats> {
    let started = Instant::now();
    let currency = config.currency;
    let simulator = Simulator::new(config).usage()?;
    let mut writer = Output::create(out, &[])?;
    let by_scenario = write_records(simulator, currency, format.into(), &mut writer)
        .with_context(|| format!("writing {}", out.display()))?;
    writer.commit()?;
    let stats = SimStats {
        rows: by_scenario.values().sum(),
        by_scenario,
        elapsed: started.elapsed(),
    };
    tracing::debug!(rows = stats.rows, "simulation written");
    Ok(stats)
}

/// Streams the simulation to a Kafka topic: JSON records keyed by customer,
/// at `rate` per second (0: as fast as the broker acknowledges).
async fn simulate_to_kafka(
    config: SimConfig,
    target: fraudlens_stream::KafkaTarget,
    rate: u64,
    format: SimFormat,
) -> CliResult {
    let started = Instant::now();
    let currency = config.currency;
    let simulator = Simulator::new(config).usage()?;
    // Kafka records are JSON: native fields unless Stripe's are asked for
    let format = match format {
        SimFormat::Stripe => RecordFormat::Stripe,
        _ => RecordFormat::Jsonl,
    };
    let mut producer = fraudlens_stream::Producer::new(&target).context("creating the Kafka producer")?;
    let mut line = String::with_capacity(512);
    let mut sent = 0u64;
    for day in simulator {
        for record in &day {
            line.clear();
            record.write(format, currency, &mut line);
            let key = format!("cust_{:06}", record.customer);
            producer
                .send(&key, line.trim_end().as_bytes())
                .await
                .with_context(|| format!("producing to {}", target.topic))?;
            sent += 1;
            if rate > 0 {
                // pace against the clock, not per record, so the rate holds on average
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    let sent = producer
        .finish()
        .await
        .with_context(|| format!("producing to {}", target.topic))?;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {sent} transactions to {} on {} in {elapsed:.2}s ({:.0}/s, all acknowledged)",
        target.topic,
        target.brokers,
        sent as f64 / elapsed.max(1e-9)
    );
    Ok(())
}
