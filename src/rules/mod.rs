//! Rule sets: YARA rules compiled by yara-x plus sha256/sha1/md5 block and
//! allow lists, loaded together and versioned by a hash of their sources.
//!
//! A rule set is all or nothing. Any compile error, any malformed metadata
//! value and any bad hash-list line refuses the whole set with the file and
//! line, so a reload can keep the old set running.
//!
//! Layout of a rules directory:
//! - `**/*.yar`, `**/*.yara`: YARA sources; each file is its own namespace
//!   (its path without the extension), so two files may reuse rule names.
//! - `hashes/block/*.txt`, `hashes/allow/*.txt`: one hex hash per line
//!   (md5, sha1 or sha256 by length), optional description after it, `#`
//!   comments. The list's name is the file stem.

mod bundled;
mod hashes;

use crate::model::Action;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use hashes::{HashHit, HashLists, ListKind};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rule set does not compile:\n{}", .0.join("\n"))]
    Compile(Vec<String>),
    #[error("{origin}: rule {rule}: metadata {key}: {message}")]
    Metadata {
        origin: String,
        rule: String,
        key: String,
        message: String,
    },
    #[error("{file}:{line}: {message}")]
    HashList {
        file: String,
        line: usize,
        message: String,
    },
    #[error("no YARA rules found in {0}")]
    Empty(String),
}

/// Policy-relevant metadata of one rule, validated at load time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleMeta {
    pub action: Option<Action>,
    pub score: i32,
    pub severity: Option<String>,
    pub monitor: bool,
    pub description: Option<String>,
    pub reference: Option<String>,
}

/// Score a rule gets from its severity when it names no score.
fn severity_score(severity: Option<&str>) -> i32 {
    match severity {
        Some("critical") => 100,
        Some("high") => 50,
        Some("medium") | None => 15,
        Some("low") => 5,
        Some("info") | Some(_) => 1,
    }
}

/// One source file of a rule set.
#[derive(Debug, Clone)]
pub struct Source {
    /// Path relative to the rules directory, with `/` separators.
    pub origin: String,
    pub text: String,
}

/// The sources of the bundled set, for tools that adapt it.
pub fn bundled_sources() -> Vec<Source> {
    bundled::FILES
        .iter()
        .map(|(origin, text)| Source {
            origin: (*origin).to_string(),
            text: (*text).to_string(),
        })
        .collect()
}

pub struct RuleSet {
    rules: yara_x::Rules,
    meta: HashMap<(String, String), RuleMeta>,
    pub hashes: HashLists,
    /// First 16 hex digits of the sha256 over every source and list.
    pub version: String,
    pub rule_count: usize,
    pub warnings: Vec<String>,
    /// Where the set came from: a directory or "bundled".
    pub origin: String,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("version", &self.version)
            .field("rule_count", &self.rule_count)
            .field("origin", &self.origin)
            .finish()
    }
}

/// A rule that matched one object.
#[derive(Debug, Clone)]
pub struct RuleMatch {
    pub namespace: String,
    pub rule: String,
    pub tags: Vec<String>,
    pub meta: RuleMeta,
}

impl RuleSet {
    /// Every rule with its metadata, sorted by namespace and name.
    pub fn list(&self) -> Vec<(&str, &str, &RuleMeta)> {
        let mut out: Vec<_> = self
            .meta
            .iter()
            .map(|((ns, name), m)| (ns.as_str(), name.as_str(), m))
            .collect();
        out.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out
    }

    /// The starter set compiled into the binary from `rules/`.
    pub fn bundled() -> Result<RuleSet, RulesError> {
        RuleSet::from_sources(bundled_sources(), "bundled")
    }

    pub fn load_dir(dir: &Path) -> Result<RuleSet, RulesError> {
        RuleSet::from_sources(read_dir(dir)?, &dir.display().to_string())
    }

    pub fn from_sources(files: Vec<Source>, origin: &str) -> Result<RuleSet, RulesError> {
        let mut version = Sha256::new();
        let mut compiler = yara_x::Compiler::new();
        let mut yara_files = 0;
        let mut hashes = HashLists::default();
        let mut errors = Vec::new();
        for file in &files {
            version.update(file.origin.as_bytes());
            version.update([0]);
            version.update(file.text.as_bytes());
            version.update([0]);
            if let Some(list) = file.origin.strip_prefix("hashes/") {
                hashes.add_file(list, &file.origin, &file.text)?;
                continue;
            }
            if !(file.origin.ends_with(".yar") || file.origin.ends_with(".yara")) {
                continue;
            }
            yara_files += 1;
            let namespace = file
                .origin
                .rsplit_once('.')
                .map_or(file.origin.as_str(), |(stem, _)| stem);
            compiler.new_namespace(namespace);
            let source = yara_x::SourceCode::from(file.text.as_str()).with_origin(&file.origin);
            if let Err(e) = compiler.add_source(source) {
                errors.push(e.to_string());
            }
        }
        if !errors.is_empty() {
            return Err(RulesError::Compile(errors));
        }
        if yara_files == 0 {
            return Err(RulesError::Empty(origin.to_string()));
        }
        let warnings = compiler.warnings().iter().map(|w| w.to_string()).collect();
        let rules = compiler.build();

        let mut meta = HashMap::new();
        let mut rule_count = 0;
        for rule in rules.iter() {
            rule_count += 1;
            let parsed = parse_meta(&rule)?;
            meta.insert(
                (rule.namespace().to_string(), rule.identifier().to_string()),
                parsed,
            );
        }
        let digest = version.finalize();
        Ok(RuleSet {
            rules,
            meta,
            hashes,
            version: hex::encode(&digest[..8]),
            rule_count,
            warnings,
            origin: origin.to_string(),
        })
    }

    /// A scanner borrows the rules and is not `Send`: make one per worker
    /// thread and keep it there.
    pub fn scanner(&self, timeout: Duration) -> yara_x::Scanner<'_> {
        let mut scanner = yara_x::Scanner::new(&self.rules);
        scanner.set_timeout(timeout);
        // Rules match on presence; thousands of hits of one string add
        // nothing but time and memory on hostile input.
        scanner.max_matches_per_pattern(64);
        scanner
    }

    pub fn scan(
        &self,
        scanner: &mut yara_x::Scanner<'_>,
        data: &[u8],
    ) -> Result<Vec<RuleMatch>, yara_x::errors::ScanError> {
        let results = scanner.scan(data)?;
        Ok(results
            .matching_rules()
            .map(|r| {
                let key = (r.namespace().to_string(), r.identifier().to_string());
                RuleMatch {
                    meta: self.meta.get(&key).cloned().unwrap_or_default(),
                    tags: r.tags().map(|t| t.identifier().to_string()).collect(),
                    namespace: key.0,
                    rule: key.1,
                }
            })
            .collect())
    }
}

fn parse_meta(rule: &yara_x::Rule<'_, '_>) -> Result<RuleMeta, RulesError> {
    let mut meta = RuleMeta::default();
    let mut score = None;
    let err = |key: &str, message: String| RulesError::Metadata {
        origin: rule.namespace().to_string(),
        rule: rule.identifier().to_string(),
        key: key.to_string(),
        message,
    };
    for (key, value) in rule.metadata() {
        let text = match value {
            yara_x::MetaValue::String(s) => Some(s.to_string()),
            _ => None,
        };
        match key {
            "action" => {
                let t = text.ok_or_else(|| err(key, "must be a string".into()))?;
                meta.action = Some(Action::parse(&t).ok_or_else(|| {
                    err(
                        key,
                        format!(
                            "{t:?} is not one of accept, tag, quarantine, tempfail, reject, discard"
                        ),
                    )
                })?);
            }
            "score" => match value {
                yara_x::MetaValue::Integer(n) => {
                    score = Some(i32::try_from(n).map_err(|_| err(key, "out of range".into()))?);
                }
                _ => return Err(err(key, "must be an integer".into())),
            },
            "severity" => {
                let t = text.ok_or_else(|| err(key, "must be a string".into()))?;
                let t = t.to_ascii_lowercase();
                if !matches!(t.as_str(), "info" | "low" | "medium" | "high" | "critical") {
                    return Err(err(
                        key,
                        format!("{t:?} is not one of info, low, medium, high, critical"),
                    ));
                }
                meta.severity = Some(t);
            }
            "mode" => {
                let t = text.ok_or_else(|| err(key, "must be a string".into()))?;
                meta.monitor = match t.to_ascii_lowercase().as_str() {
                    "monitor" => true,
                    "enforce" => false,
                    _ => return Err(err(key, format!("{t:?} is not monitor or enforce"))),
                };
            }
            "description" => meta.description = text,
            "reference" => meta.reference = text,
            _ => {}
        }
    }
    meta.score = score.unwrap_or_else(|| severity_score(meta.severity.as_deref()));
    Ok(meta)
}

/// A cheap fingerprint of a directory tree: every path, size and
/// modification time, hashed. Reading no contents, it can run every few
/// seconds; any edit, addition, removal or rename changes it.
pub fn fingerprint(paths: &[&Path]) -> String {
    use sha2::{Digest, Sha256};
    fn walk(dir: &Path, h: &mut Sha256, budget: &mut usize) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            h.update(b"unreadable");
            return;
        };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            if *budget == 0 {
                return;
            }
            *budget -= 1;
            stamp(&p, h);
            if p.is_dir() && !p.is_symlink() {
                walk(&p, h, budget);
            }
        }
    }
    fn stamp(p: &Path, h: &mut Sha256) {
        h.update(p.as_os_str().as_encoded_bytes());
        if let Ok(m) = std::fs::metadata(p) {
            h.update(m.len().to_le_bytes());
            if let Ok(t) = m.modified().and_then(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_err(std::io::Error::other)
            }) {
                h.update(t.as_nanos().to_le_bytes());
            }
        }
    }
    let mut h = Sha256::new();
    // Bounded: a rules directory of a million files is a mistake, not
    // something to stat every five seconds.
    let mut budget = 100_000usize;
    for p in paths {
        stamp(p, &mut h);
        if p.is_dir() {
            walk(p, &mut h, &mut budget);
        }
    }
    hex::encode(h.finalize())
}

/// The files of a rules directory that make a rule set (`*.yar`, `*.yara`,
/// `hashes/**/*.txt`), in a stable order.
pub fn read_dir(dir: &Path) -> Result<Vec<Source>, RulesError> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort_by(|a, b| a.origin.cmp(&b.origin));
    Ok(files)
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<Source>) -> Result<(), RulesError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RulesError::Io { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            collect(root, &path, out)?;
            continue;
        }
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if !matches!(ext, "yar" | "yara" | "txt") {
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if ext == "txt" && !rel.starts_with("hashes/") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        out.push(Source { origin: rel, text });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(origin: &str, text: &str) -> Source {
        Source {
            origin: origin.into(),
            text: text.into(),
        }
    }

    #[test]
    fn bundled_set_compiles() {
        let set = RuleSet::bundled().unwrap();
        assert!(set.rule_count >= 8, "{}", set.rule_count);
        assert!(set.warnings.is_empty(), "{:?}", set.warnings);
        assert_eq!(set.version.len(), 16);
    }

    #[test]
    fn compile_errors_name_file_and_line() {
        let err = RuleSet::from_sources(
            vec![src(
                "bad.yar",
                "rule ok { condition: true }\n\nrule broken { condition: nope }\n",
            )],
            "test",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bad.yar:3"), "{text}");
    }

    #[test]
    fn bad_metadata_is_refused() {
        let err = RuleSet::from_sources(
            vec![src(
                "m.yar",
                "rule r { meta: action = \"explode\" condition: true }",
            )],
            "test",
        )
        .unwrap_err();
        assert!(err.to_string().contains("explode"), "{err}");
    }

    #[test]
    fn versions_follow_content() {
        let a =
            RuleSet::from_sources(vec![src("a.yar", "rule a { condition: true }")], "t").unwrap();
        let b =
            RuleSet::from_sources(vec![src("a.yar", "rule a { condition: false }")], "t").unwrap();
        assert_ne!(a.version, b.version);
    }

    #[test]
    fn metadata_drives_scores() {
        let set = RuleSet::from_sources(
            vec![src(
                "m.yar",
                r#"rule r { meta: severity = "high" mode = "monitor" action = "reject" condition: true }"#,
            )],
            "t",
        )
        .unwrap();
        let mut scanner = set.scanner(Duration::from_secs(1));
        let hits = set.scan(&mut scanner, b"x").unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].meta.score, 50);
        assert!(hits[0].meta.monitor);
        assert_eq!(hits[0].meta.action, Some(Action::Reject));
        assert_eq!(hits[0].namespace, "m");
    }
}
