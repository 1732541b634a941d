//! `fraudlens simulate`: write simulated transactions as CSV or JSON lines.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fraudlens_sim::{Scenario, SimConfig, Simulator, csv_header};

use crate::cli::{SimFormat, SimulateArgs};
use crate::commands::output::Output;
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
        let fraud: u64 = self
            .by_scenario
            .iter()
            .filter(|(s, _)| **s != Scenario::None)
            .map(|(_, n)| n)
            .sum();
        let mut text = format!(
            "simulated {} transactions ({} fraud, {:.2}%) into {} in {:.2}s ({:.0} rows/s)",
            self.rows,
            fraud,
            100.0 * fraud as f64 / self.rows.max(1) as f64,
            out.display(),
            self.elapsed.as_secs_f64(),
            self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9),
        );
        for (scenario, count) in &self.by_scenario {
            text.push_str(&format!("\n  {:<22}{count:>10}", scenario.as_str()));
        }
        text
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
    let mut buffer = String::with_capacity(1 << 20);
    if format == SimFormat::Csv {
        buffer.push_str(&csv_header());
    }
    let mut stats = SimStats {
        rows: 0,
        by_scenario: BTreeMap::new(),
        elapsed: Duration::ZERO,
    };
    for day in simulator {
        for record in &day {
            match format {
                SimFormat::Csv => record.write_csv(currency, &mut buffer),
                SimFormat::Jsonl => record.write_json(currency, &mut buffer),
            }
            *stats.by_scenario.entry(record.scenario).or_insert(0) += 1;
            if buffer.len() > (1 << 20) - 512 {
                writer
                    .write_all(buffer.as_bytes())
                    .with_context(|| format!("writing {}", out.display()))?;
                buffer.clear();
            }
        }
        stats.rows += day.len() as u64;
    }
    writer
        .write_all(buffer.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    writer.commit()?;
    stats.elapsed = started.elapsed();
    tracing::debug!(rows = stats.rows, "simulation written");
    Ok(stats)
}
