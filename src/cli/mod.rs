//! Command line: argument parsing and the commands. The edge of the program,
//! so errors here are `anyhow` with context; the library's typed errors end
//! up printed once.

mod rules_preview;
mod rules_test;
mod scan;
pub mod serve;

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
    /// Run the gateway: HTTP doors (native, rspamd, MTA Hooks), metrics.
    Serve(serve::ServeArgs),
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
    /// API and hook tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Web UI users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Mail each recipient a digest of their held messages with release links.
    Digest {
        /// TOML config (database, relay, public URL); built-in defaults when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// State directory; replaces `server.data_dir`.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
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
    /// Run a candidate rules directory over a corpus with expected verdicts;
    /// exit 1 on any failure (for the CI of a rules repository).
    Test(rules_test::RulesTestArgs),
    /// Ask a running gateway what a candidate rules directory would change:
    /// held messages and recent mail, message by message.
    Preview(rules_preview::PreviewArgs),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a random token; prints it once, and the sha256 the config keeps.
    New,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Read a password on stdin and print its argon2 hash for `[[auth.users]]`.
    Hash,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a TOML config (unknown keys are errors).
    Check { file: PathBuf },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The service logs a line per message; the CLI only problems.
    let level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    init_tracing(cli.log_json, level);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(json: bool, level: &str) {
    // yara-x logs its compile steps, and with rules-profiling its slowest
    // rules after every scan, at info: noise in a mail log unless asked for.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},yara_x=warn")));
    // Colour only for a person at a terminal, not in log files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Token {
            command: TokenCommand::New,
        } => {
            let token = new_token().context("reading /dev/urandom")?;
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
            println!("token:  {token}");
            println!("sha256: {sha}");
            println!();
            println!("Give the token to the client; put only the sha256 in the config:");
            println!("  [auth]\n  hook_token_sha256 = \"{sha}\"");
            println!("or");
            println!(
                "  [[auth.tokens]]\n  name = \"ops\"\n  role = \"admin\"\n  sha256 = \"{sha}\""
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Scan(args) => scan::run(args),
        Command::Rules {
            command: RulesCommand::Test(args),
        } => rules_test::run(args),
        Command::Rules {
            command: RulesCommand::Preview(args),
        } => rules_preview::run(args),
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
        Command::User {
            command: UserCommand::Hash,
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.chars().count() < 12 {
                anyhow::bail!("use a password of at least 12 characters");
            }
            let hash = crate::http::auth::hash_password(password)?;
            println!("{hash}");
            eprintln!(
                "Put it in the config:\n  [[auth.users]]\n  name = \"alice\"\n  role = \"operator\"\n  password_argon2 = \"{hash}\""
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Digest { config, data_dir } => {
            let mut cfg = match &config {
                Some(path) => Config::load(path)?,
                None => Config::defaults(),
            };
            if let Some(dir) = data_dir {
                cfg.server.data_dir = dir;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let run = runtime.block_on(async {
                let (store, keys) = serve::open_store(&cfg).await?;
                let releaser = crate::release::Releaser { store, keys };
                crate::release::digest::send_all(&releaser, &cfg)
                    .await
                    .context("reading the quarantine")
            })?;
            println!(
                "digests sent to {} recipient(s), {} message(s); {} failed",
                run.recipients,
                run.messages,
                run.failed.len()
            );
            for f in &run.failed {
                eprintln!("not sent: {f}");
            }
            Ok(if run.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Samples { dir } => {
            let n = crate::samples::write_all(&dir)
                .with_context(|| format!("writing samples to {}", dir.display()))?;
            println!("wrote {n} samples and expected.json to {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// 32 random bytes from the OS, as URL-safe base64.
fn new_token() -> std::io::Result<String> {
    use base64::Engine as _;
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
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
