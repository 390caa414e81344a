//! `portcullis rules test DIR --corpus PATH`: a candidate rule set against
//! a corpus of messages and files with expected verdicts, for the CI of a
//! rules repository. Prints a table of passes, failures and rule hits;
//! exits 1 on any failure (a rule that does not compile is one).
//!
//! Expectations, per sample, in a sidecar `NAME.expect.toml` next to it, or
//! in `manifest.toml` at the corpus root (`[[sample]] file = "a.eml"`):
//!
//! ```toml
//! action = "quarantine"        # the verdict's action
//! rules = ["Office_VBA_AutoExec"]   # findings that must be among the hits
//! absent = ["EICAR_Test_File"]      # findings that must not be
//! ```
//!
//! Every key is optional. A sample with no expectation is run and counted
//! as unchecked (its hits still show in the table).

use crate::model::{Action, Submission};
use crate::rules::RuleSet;
use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct RulesTestArgs {
    /// The candidate rules directory.
    dir: PathBuf,
    /// Corpus directory: samples with sidecar `.expect.toml` files or a
    /// `manifest.toml`.
    #[arg(long)]
    corpus: PathBuf,
    /// TOML configuration (limits, policy) to decide with.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    action: Option<String>,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    absent: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    sample: Vec<ManifestEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    file: PathBuf,
    #[serde(flatten)]
    expect: Expect,
}

const SIDECAR: &str = ".expect.toml";
const MANIFEST: &str = "manifest.toml";

/// Every sample under `dir` (recursive, sorted), sidecars and the manifest
/// excluded.
fn samples(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let is_link = std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink());
        if p.is_dir() {
            if !is_link {
                samples(&p, out)?;
            }
            continue;
        }
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(SIDECAR) || (name == MANIFEST && p.parent() == Some(dir)) {
            continue;
        }
        if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

fn load_expectations(
    corpus: &Path,
    files: &[PathBuf],
) -> anyhow::Result<BTreeMap<PathBuf, Expect>> {
    let mut map = BTreeMap::new();
    let manifest = corpus.join(MANIFEST);
    if manifest.is_file() {
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let m: Manifest =
            toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
        for e in m.sample {
            let path = corpus.join(&e.file);
            anyhow::ensure!(
                files.contains(&path),
                "{}: sample {} does not exist",
                manifest.display(),
                e.file.display()
            );
            map.insert(path, e.expect);
        }
    }
    for f in files {
        let mut side = f.clone().into_os_string();
        side.push(SIDECAR);
        let side = PathBuf::from(side);
        if side.is_file() {
            let text = std::fs::read_to_string(&side)
                .with_context(|| format!("reading {}", side.display()))?;
            let e: Expect =
                toml::from_str(&text).with_context(|| format!("parsing {}", side.display()))?;
            anyhow::ensure!(
                !map.contains_key(f),
                "{}: expected both in manifest.toml and in a sidecar",
                f.display()
            );
            map.insert(f.clone(), e);
        }
    }
    Ok(map)
}

/// What is wrong with a result, against its expectation.
fn judge(expect: &Expect, action: Action, hits: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(want) = &expect.action {
        match Action::parse(want) {
            Some(a) if a == action => {}
            Some(a) => problems.push(format!("action {action}, expected {a}")),
            None => problems.push(format!("expected action {want:?} is not an action")),
        }
    }
    for r in &expect.rules {
        if !hits.iter().any(|h| h == r) {
            problems.push(format!("{r} did not hit"));
        }
    }
    for r in &expect.absent {
        if hits.iter().any(|h| h == r) {
            problems.push(format!("{r} hit"));
        }
    }
    problems
}

pub fn run(args: RulesTestArgs) -> anyhow::Result<ExitCode> {
    let set = match RuleSet::load_dir(&args.dir) {
        Ok(s) => s,
        Err(e) => {
            // The compiler's message names file:line.
            println!("FAIL  rules do not compile:\n{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut config = match &args.config {
        Some(p) => crate::Config::load(p)?,
        None => crate::Config::defaults(),
    };
    config.rules_dir = Some(args.dir.clone());
    let version = set.version.clone();
    let engine = crate::Engine::new(config, set);
    let mut inspector = engine.inspector();
    let mut files = Vec::new();
    samples(&args.corpus, &mut files)
        .with_context(|| format!("reading the corpus {}", args.corpus.display()))?;
    anyhow::ensure!(
        !files.is_empty(),
        "the corpus {} has no samples",
        args.corpus.display()
    );
    let expectations = load_expectations(&args.corpus, &files)?;

    let (mut passed, mut failed, mut unchecked) = (0usize, 0usize, 0usize);
    let mut rule_hits: BTreeMap<String, usize> = BTreeMap::new();
    println!(
        "rules {} (version {version}), corpus {}\n",
        args.dir.display(),
        args.corpus.display()
    );
    println!(
        "{:<6} {:<40} {:<11} hits / problems",
        "result", "sample", "action"
    );
    for f in &files {
        let label = f
            .strip_prefix(&args.corpus)
            .unwrap_or(f)
            .display()
            .to_string();
        let raw = match std::fs::read(f) {
            Ok(r) => r,
            Err(e) => {
                failed += 1;
                println!("{:<6} {:<40} {:<11} cannot read: {e}", "FAIL", label, "-");
                continue;
            }
        };
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        let lower = label.to_ascii_lowercase();
        let sub = if lower.ends_with(".eml") || lower.ends_with(".msg.txt") {
            Submission::mail(raw)
        } else {
            Submission::file(name, raw)
        };
        let report = match inspector.inspect(&sub) {
            Ok(r) => r,
            Err(e) => {
                failed += 1;
                println!(
                    "{:<6} {:<40} {:<11} inspection failed: {e}",
                    "FAIL", label, "-"
                );
                continue;
            }
        };
        let mut hits: Vec<String> = report.findings.iter().map(|x| x.kind.name()).collect();
        hits.sort();
        hits.dedup();
        for h in &hits {
            *rule_hits.entry(h.clone()).or_default() += 1;
        }
        let action = report.verdict.action;
        let (result, detail) = match expectations.get(f) {
            None => {
                unchecked += 1;
                ("-", hits.join(", "))
            }
            Some(e) => {
                let problems = judge(e, action, &hits);
                if problems.is_empty() {
                    passed += 1;
                    ("ok", hits.join(", "))
                } else {
                    failed += 1;
                    (
                        "FAIL",
                        format!("{} (hits: {})", problems.join("; "), hits.join(", ")),
                    )
                }
            }
        };
        println!("{result:<6} {label:<40} {:<11} {detail}", action.as_str());
    }
    println!("\nrule hits (samples):");
    for (rule, n) in &rule_hits {
        println!("  {n:>5}  {rule}");
    }
    println!("\n{passed} passed, {failed} failed, {unchecked} without expectations");
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judging_names_every_problem() {
        let e = Expect {
            action: Some("quarantine".into()),
            rules: vec!["A".into(), "B".into()],
            absent: vec!["C".into()],
        };
        assert!(judge(&e, Action::Quarantine, &["A".into(), "B".into()]).is_empty());
        let p = judge(&e, Action::Accept, &["A".into(), "C".into()]);
        assert_eq!(
            p,
            vec![
                "action accept, expected quarantine",
                "B did not hit",
                "C hit"
            ]
        );
        assert!(judge(&Expect::default(), Action::Reject, &[]).is_empty());
    }
}
