//! `portcullis scan`: inspect files, messages, mboxes and directories in
//! parallel, print in input order.
//!
//! Inputs are discovered lazily by one thread and handed to `-j` workers
//! through a bounded channel, so a directory of a million files or a huge
//! mbox never sits in memory at once. Each worker keeps one `Inspector`
//! (and so one yara-x scanner) for its whole life.

use crate::model::{Action, Outcome, Submission};
use crate::pipeline::Report;
use anyhow::Context;
use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files (.eml, mbox, anything else), directories (recursive), or - for stdin.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Rules directory instead of the bundled rules.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// TOML configuration (limits, policy).
    #[arg(long)]
    config: Option<PathBuf>,
    /// One JSON report per input, as JSON Lines.
    #[arg(long)]
    json: bool,
    /// Parallel workers (default: one per core).
    #[arg(short = 'j', long)]
    jobs: Option<usize>,
    /// Never show a progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// One thing to inspect, as found on disk.
struct Input {
    label: String,
    submission: Result<Submission, String>,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    input: &'a str,
    #[serde(flatten)]
    report: &'a Report,
}

#[derive(Serialize)]
struct JsonError<'a> {
    input: &'a str,
    error: &'a str,
}

pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let engine = super::load_engine(args.config.as_deref(), args.rules.as_deref())?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let many = args.paths.len() > 1 || args.paths.iter().any(|p| p.is_dir());
    let progress = (!args.no_progress && many && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} scanned in {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });

    let (job_tx, job_rx) = mpsc::sync_channel::<(usize, Input)>(jobs * 4);
    let job_rx = std::sync::Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(usize, String, Result<Report, String>)>();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut worst = Action::Accept;
    let mut errors = 0usize;

    std::thread::scope(|scope| -> anyhow::Result<()> {
        let paths = &args.paths;
        scope.spawn(move || {
            let mut index = 0;
            let mut send = |input: Input| {
                let sent = job_tx.send((index, input)).is_ok();
                index += 1;
                sent
            };
            for path in paths {
                if !discover(path, &mut send) {
                    break;
                }
            }
        });
        for _ in 0..jobs {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            let engine = &engine;
            std::thread::Builder::new()
                // Deeply nested input is walked iteratively, but parser
                // internals recurse a little; give them room.
                .stack_size(16 << 20)
                .spawn_scoped(scope, move || {
                    let mut inspector = engine.inspector();
                    loop {
                        let job = match job_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => break,
                        };
                        let Ok((index, input)) = job else { break };
                        let result = input
                            .submission
                            .and_then(|s| inspector.inspect(&s).map_err(|e| e.to_string()));
                        if done_tx.send((index, input.label, result)).is_err() {
                            break;
                        }
                    }
                })
                .context("starting a worker thread")?;
        }
        drop(done_tx);

        // Results arrive in any order; print them in input order.
        let mut pending = BTreeMap::new();
        let mut next = 0;
        for (index, label, result) in done_rx {
            pending.insert(index, (label, result));
            while let Some((label, result)) = pending.remove(&next) {
                next += 1;
                if let Some(bar) = &progress {
                    bar.inc(1);
                }
                match &result {
                    Ok(report) => worst = worst.max(report.verdict.action),
                    Err(_) => errors += 1,
                }
                let written = if args.json {
                    print_json(&mut out, &label, &result)
                } else {
                    print_human(&mut out, &label, &result)
                };
                written.context("writing to stdout")?;
            }
        }
        Ok(())
    })?;
    out.flush().context("writing to stdout")?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(if errors > 0 {
        ExitCode::from(2)
    } else if worst == Action::Accept {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_json(
    out: &mut impl Write,
    label: &str,
    result: &Result<Report, String>,
) -> std::io::Result<()> {
    let line = match result {
        Ok(report) => serde_json::to_string(&JsonLine {
            input: label,
            report,
        }),
        Err(error) => serde_json::to_string(&JsonError {
            input: label,
            error,
        }),
    }
    .map_err(std::io::Error::other)?;
    writeln!(out, "{line}")
}

fn print_human(
    out: &mut impl Write,
    label: &str,
    result: &Result<Report, String>,
) -> std::io::Result<()> {
    let report = match result {
        Ok(r) => r,
        Err(e) => return writeln!(out, "{:<10} {label}: {e}", "error"),
    };
    let v = &report.verdict;
    writeln!(
        out,
        "{:<10} {:>4}  {}  {}",
        v.action.as_str(),
        v.score,
        visible(label),
        visible(&v.summary)
    )?;
    if v.action == Action::Accept && report.findings.is_empty() {
        return Ok(());
    }
    // Small trees are shown whole; large ones only down to what matters
    // (objects with findings or not fully inspected, and their ancestors).
    let mut shown = vec![report.objects.len() <= 30; report.objects.len()];
    for object in &report.objects {
        let flagged = object.outcome != Outcome::Scanned
            && !matches!(object.outcome, Outcome::Duplicate { .. })
            || report.findings.iter().any(|f| f.object == object.id);
        let mut at = Some(object.id).filter(|_| flagged);
        while let Some(id) = at {
            shown[id] = true;
            at = report.objects[id].parent;
        }
    }
    for object in report.objects.iter().filter(|o| shown[o.id]) {
        let indent = "  ".repeat(object.depth as usize + 1);
        let label = object.path.rsplit(" > ").next().unwrap_or(&object.path);
        let outcome = match &object.outcome {
            Outcome::Scanned => String::new(),
            Outcome::Duplicate { of } => format!(" [same as #{of}]"),
            Outcome::Allowed => " [allow-listed]".into(),
            Outcome::Limit { limit } => format!(" [limit: {}]", limit.as_str()),
            Outcome::Encrypted => " [encrypted]".into(),
            Outcome::Malformed { error } => format!(" [malformed: {error}]"),
            Outcome::Unsupported { format } => format!(" [not unpacked: {format}]"),
        };
        writeln!(
            out,
            "{indent}#{} {} ({}, {} bytes){outcome}",
            object.id,
            visible(label),
            object.true_type,
            object.size
        )?;
        for f in report.findings.iter().filter(|f| f.object == object.id) {
            let mode = if f.monitor { " monitor" } else { "" };
            writeln!(
                out,
                "{indent}  ! {} (score {}{mode}): {}",
                f.kind.name(),
                f.score,
                f.description
            )?;
        }
    }
    let hidden = shown.iter().filter(|s| !**s).count();
    if hidden > 0 {
        writeln!(
            out,
            "  ... and {hidden} more objects with nothing found (see --json)"
        )?;
    }
    Ok(())
}

/// Names can carry bidi overrides that make a terminal print `exe.pdf` for
/// `fdp.exe`: show every invisible or direction-changing character as a code.
fn visible(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
            | '\u{061c}' => format!("<U+{:04X}>", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// Walks one command-line path, handing each input to `send`. Returns false
/// once the receiver is gone (a worker failed), to stop early.
fn discover(path: &Path, send: &mut dyn FnMut(Input) -> bool) -> bool {
    let label = path.display().to_string();
    if label == "-" {
        let mut raw = Vec::new();
        let submission = std::io::stdin()
            .read_to_end(&mut raw)
            .map(|_| sniffed(None, raw))
            .map_err(|e| format!("reading stdin: {e}"));
        return send(Input { label, submission });
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return send(Input {
                label,
                submission: Err(e.to_string()),
            });
        }
    };
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                return send(Input {
                    label,
                    submission: Err(e.to_string()),
                });
            }
        };
        entries.sort();
        for entry in entries {
            // Symlinks are not followed into directories: no loops.
            let is_link =
                std::fs::symlink_metadata(&entry).is_ok_and(|m| m.file_type().is_symlink());
            if is_link && entry.is_dir() {
                continue;
            }
            if !discover(&entry, send) {
                return false;
            }
        }
        return true;
    }
    if !meta.is_file() {
        // A FIFO or device would block or never end.
        return send(Input {
            label,
            submission: Err("not a regular file".into()),
        });
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let lower = name.clone().unwrap_or_default().to_ascii_lowercase();
    if lower.ends_with(".mbox") || is_mbox(path) {
        return split_mbox(path, &label, send);
    }
    let submission = std::fs::read(path).map_err(|e| e.to_string()).map(|raw| {
        if lower.ends_with(".eml") {
            Submission::mail(raw)
        } else {
            Submission::file(name, raw)
        }
    });
    send(Input { label, submission })
}

/// stdin has no name: it is mail if it looks like mail.
fn sniffed(name: Option<String>, raw: Vec<u8>) -> Submission {
    if crate::pipeline::identify::detect(&raw[..raw.len().min(8192)])
        == crate::pipeline::identify::FileType::Mail
    {
        Submission::mail(raw)
    } else {
        Submission::file(name, raw)
    }
}

fn is_mbox(path: &Path) -> bool {
    let mut head = [0u8; 5];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|_| &head == b"From ")
}

/// Splits an mbox on `From ` separator lines, streaming: one message in
/// memory at a time.
fn split_mbox(path: &Path, label: &str, send: &mut dyn FnMut(Input) -> bool) -> bool {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            return send(Input {
                label: label.to_string(),
                submission: Err(e.to_string()),
            });
        }
    };
    let mut reader = BufReader::new(file);
    let mut splitter = crate::extract::mbox::Splitter::new();
    let mut count = 0usize;
    let mut line = Vec::new();
    let mut emit = |raw: Vec<u8>, count: &mut usize| {
        *count += 1;
        send(Input {
            label: format!("{label}:{count}"),
            submission: Ok(Submission::mail(raw)),
        })
    };
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => {
                return match splitter.finish() {
                    Some(raw) => emit(raw, &mut count),
                    None => true,
                };
            }
            Ok(_) => {
                if let Some(raw) = splitter.line(&line)
                    && !emit(raw, &mut count)
                {
                    return false;
                }
            }
            Err(e) => {
                return send(Input {
                    label: format!("{label}:{}", count + 1),
                    submission: Err(e.to_string()),
                });
            }
        }
    }
}
