//! The `fraudlens` binary: parse flags, load configuration, start logging, run
//! the command. Each command lives in `commands/`.

mod cli;
mod commands;
mod config;
mod exit;
mod telemetry;

use std::process::ExitCode;

/// glibc's allocator spends a quarter of the server's CPU under load
/// (many small, short-lived allocations across threads); mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::exit::{Classify, CliResult};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {:#}", failure.error());
            failure.exit_code()
        }
    }
}

fn run(cli: Cli) -> CliResult {
    let mut config = Config::load(config::config_path(cli.config).as_deref(), cli.command.schema_file()).usage()?;
    if let Some(level) = cli.log_level {
        config.log.level = level;
    }
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    telemetry::init(&config.log, std::io::stderr).usage()?;
    fraudlens_pipeline::artifacts::configure(&config.artifacts);
    match cli.command {
        Command::Simulate(args) => commands::simulate::run(&config, args),
        Command::Features(args) => commands::features::run(config, args),
        Command::Inspect(args) => commands::inspect::run(config, args),
        Command::Train(args) => commands::train::run(config, args),
        Command::Evaluate(args) => commands::evaluate::run(&config, args),
        Command::Score(args) => commands::score::run(&config, args),
        Command::Import(args) => commands::import::run(args),
        Command::Demo(args) => commands::demo::run(config, args),
        Command::Serve(args) => commands::serve::run(&config, args),
        Command::Detect(args) => commands::detect::run(&config, args),
        Command::Keys(command) => commands::admin::keys(&config, command),
        Command::Retrain(args) => commands::lifecycle::retrain(&config, args),
        Command::Drift(args) => commands::drift::run(&config, args),
        Command::Models(command) => commands::admin::models(&config, command),
        Command::Backup(args) => commands::backup::backup(&config, args),
        Command::Restore(args) => commands::backup::restore(&config, args),
        Command::Eth(command) => commands::eth::run(&config, command),
        Command::Analyze(args) => commands::analyze::run(&config, args),
        Command::Config => commands::print_config(&config),
    }
}
