//! Impact preview: a candidate rule set against the live one, over the
//! messages held in quarantine and the sample of recent mail, reporting
//! every message whose verdict (or set of matching rules) would change.
//! Both sets run here, side by side with the same config, so a difference
//! is the rules' doing and not a change of code or config since the
//! message arrived.

use super::{Outline, delivers};
use crate::Engine;
use crate::model::Submission;
use crate::rules::{RuleSet, RulesError, Source};
use crate::store::blobs::Blobs;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most files and bytes a candidate set may have.
pub const MAX_FILES: usize = 2000;
pub const MAX_BYTES: usize = 32 << 20;
/// Most messages one preview looks at, and the default.
pub const MAX_MESSAGES: usize = 20_000;
pub const DEFAULT_MESSAGES: usize = 1000;
/// A preview stops (and says so) after this long.
pub const TIME_BUDGET: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("{0}")]
    BadRequest(String),
    #[error("candidate rule set: {0}")]
    Rules(#[from] RulesError),
}

/// The candidate's files as a rules directory would hold them, checked:
/// relative paths, no `..`, within the limits.
pub fn sources(files: BTreeMap<String, String>) -> Result<Vec<Source>, PreviewError> {
    if files.len() > MAX_FILES {
        return Err(PreviewError::BadRequest(format!(
            "at most {MAX_FILES} files"
        )));
    }
    let total: usize = files.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_BYTES {
        return Err(PreviewError::BadRequest(format!(
            "at most {MAX_BYTES} bytes of rules"
        )));
    }
    let mut out = Vec::with_capacity(files.len());
    for (origin, text) in files {
        let ok = !origin.is_empty()
            && origin.len() <= 255
            && !origin.starts_with('/')
            && origin.split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            });
        if !ok {
            return Err(PreviewError::BadRequest(format!(
                "file name {origin:?}: a relative path of letters, digits, '.', '_', '-' and '/'"
            )));
        }
        out.push(Source { origin, text });
    }
    Ok(out)
}

/// Compiles the candidate (blocking: seconds for a large set).
pub fn compile(files: BTreeMap<String, String>) -> Result<RuleSet, PreviewError> {
    Ok(RuleSet::from_sources(sources(files)?, "preview")?)
}

/// Where a message to compare comes from.
pub enum Raw {
    /// A held message, read from the blob store (its sha256 is checked).
    Blob(String),
    Bytes(Arc<[u8]>),
}

pub struct Item {
    pub source: &'static str,
    pub id: String,
    pub received_ms: i64,
    pub sender: Option<String>,
    pub subject: Option<String>,
    pub raw: Raw,
}

#[derive(Debug, Serialize)]
pub struct Change {
    pub source: &'static str,
    pub id: String,
    pub received_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub action_changed: bool,
    /// Held now, delivered by the candidate: would be released (or not
    /// held in the first place).
    pub would_deliver: bool,
    pub live: Outline,
    pub candidate: Outline,
    /// Rules that match with the candidate only / with the live set only.
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Scanned {
    pub quarantine: usize,
    pub sample: usize,
}

#[derive(Debug, Serialize)]
pub struct Preview {
    pub live_version: String,
    pub candidate_version: String,
    pub candidate_rule_count: usize,
    pub warnings: Vec<String>,
    pub scanned: Scanned,
    /// Messages whose action changes.
    pub action_changed: usize,
    /// Messages whose action or matching rules change (the `messages`).
    pub changed: usize,
    /// Messages that could not be read or inspected.
    pub errors: Vec<String>,
    /// The time budget ran out before every message was looked at.
    pub truncated: bool,
    /// How many messages each candidate rule matched.
    pub rule_hits: BTreeMap<String, u64>,
    pub messages: Vec<Change>,
}

/// Runs both sets over `items` (blocking). `blobs` reads held messages.
pub fn run(live: &Engine, candidate: &Engine, items: Vec<Item>, blobs: &Blobs) -> Preview {
    let started = Instant::now();
    let mut out = Preview {
        live_version: live.rules.version.clone(),
        candidate_version: candidate.rules.version.clone(),
        candidate_rule_count: candidate.rules.rule_count,
        warnings: candidate.rules.warnings.clone(),
        scanned: Scanned::default(),
        action_changed: 0,
        changed: 0,
        errors: Vec::new(),
        truncated: false,
        rule_hits: BTreeMap::new(),
        messages: Vec::new(),
    };
    let mut old = live.inspector();
    let mut new = candidate.inspector();
    for item in items {
        if started.elapsed() > TIME_BUDGET {
            out.truncated = true;
            break;
        }
        let raw: Arc<[u8]> = match &item.raw {
            Raw::Bytes(b) => Arc::clone(b),
            Raw::Blob(sha) => match blobs.get_blocking(sha) {
                Ok(b) => b.into(),
                Err(e) => {
                    out.errors.push(format!("{} {}: {e}", item.source, item.id));
                    continue;
                }
            },
        };
        let sub = Submission::mail(raw);
        let (a, b) = match (old.inspect(&sub), new.inspect(&sub)) {
            (Ok(a), Ok(b)) => (Outline::of(&a), Outline::of(&b)),
            (Err(e), _) | (_, Err(e)) => {
                out.errors.push(format!("{} {}: {e}", item.source, item.id));
                continue;
            }
        };
        match item.source {
            "quarantine" => out.scanned.quarantine += 1,
            _ => out.scanned.sample += 1,
        }
        for r in &b.matched {
            *out.rule_hits.entry(r.clone()).or_default() += 1;
        }
        let action_changed = a.action != b.action;
        if !action_changed && a.matched == b.matched {
            continue;
        }
        out.changed += 1;
        out.action_changed += usize::from(action_changed);
        out.messages.push(Change {
            source: item.source,
            id: item.id,
            received_ms: item.received_ms,
            sender: item.sender,
            subject: item.subject,
            action_changed,
            would_deliver: !delivers(a.action) && delivers(b.action),
            added: b.matched.difference(&a.matched).cloned().collect(),
            removed: a.matched.difference(&b.matched).cloned().collect(),
            live: a,
            candidate: b,
        });
    }
    out
}
