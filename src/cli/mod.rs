//! Command line: argument parsing and the commands. The edge of the program,
//! so errors here are `anyhow` with context; the library's typed errors end
//! up printed once.

mod scan;

use crate::config::Config;
use crate::rules::RuleSet;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Email attachment and file inspection gateway",
    long_about = "Portcullis unpacks every object in a message (nested mail, archives, \
                  compressed files), identifies each by its bytes, runs YARA rules and hash \
                  lists over all of them, and decides: accept, tag, quarantine, reject."
)]
struct Cli {
    /// Log as JSON lines on stderr.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect messages and files and print a verdict for each.
    Scan(scan::ScanArgs),
    /// Work with rule sets.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Check a configuration file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Write the harmless test samples (EICAR, bombs, disguises) to a folder.
    Samples {
        /// Output folder.
        #[arg(default_value = "samples/generated")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Compile a rules directory and report errors and warnings.
    Check {
        /// Rules directory; the bundled set when omitted.
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a TOML config (unknown keys are errors).
    Check { file: PathBuf },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Scan(args) => scan::run(args),
        Command::Rules {
            command: RulesCommand::Check { dir },
        } => {
            let set = match &dir {
                Some(d) => RuleSet::load_dir(d),
                None => RuleSet::bundled(),
            };
            match set {
                Ok(set) => {
                    for w in &set.warnings {
                        eprintln!("{w}");
                    }
                    println!(
                        "ok: {} rules, {} hashes, {} warnings, version {} ({})",
                        set.rule_count,
                        set.hashes.len(),
                        set.warnings.len(),
                        set.version,
                        set.origin
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(&file) {
            Ok(_) => {
                println!("ok: {}", file.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Samples { dir } => {
            let n = crate::samples::write_all(&dir)
                .with_context(|| format!("writing samples to {}", dir.display()))?;
            println!("wrote {n} samples and expected.json to {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads the config (or defaults) and the rule set a command runs with.
/// `--rules` beats the config's `rules.dir`, which beats the bundled set.
pub fn load_engine(
    config: Option<&std::path::Path>,
    rules: Option<&std::path::Path>,
) -> anyhow::Result<crate::Engine> {
    let mut config = match config {
        Some(path) => Config::load(path)?,
        None => Config::defaults(),
    };
    if let Some(dir) = rules {
        config.rules_dir = Some(dir.to_owned());
    }
    let set = match &config.rules_dir {
        Some(dir) => RuleSet::load_dir(dir)?,
        None => RuleSet::bundled()?,
    };
    Ok(crate::Engine::new(config, set))
}
