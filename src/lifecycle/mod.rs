//! The rule lifecycle around a running gateway: what a candidate rule set
//! would change before it is deployed ([`preview`]), the sample of recent
//! mail a preview runs over ([`sample`]), and what a deployed set changes
//! for mail already held ([`retro`]).
//!
//! All of it inspects messages again, which is CPU-bound: it runs on
//! blocking threads of its own with its own scanners, never on the
//! inspection pool, so previewing or re-scanning never takes a worker
//! from live mail (it competes for CPU only, one message at a time).

pub mod preview;
pub mod retro;
pub mod sample;

use crate::model::{Action, FindingKind};
use crate::pipeline::Report;
use serde::Serialize;
use std::collections::BTreeSet;

/// State the gateway keeps for the lifecycle.
#[derive(Default)]
pub struct Lifecycle {
    pub samples: sample::Samples,
    /// One preview at a time: each is minutes of CPU at worst.
    pub preview: tokio::sync::Mutex<()>,
    pub retro: std::sync::Mutex<retro::Progress>,
}

/// The parts of a verdict a comparison looks at.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Outline {
    pub action: Action,
    pub score: i32,
    /// The deciding finding's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Every rule and list that matched: `namespace:rule` for YARA,
    /// `HASH_<LIST>` for hash lists. Monitor-mode hits included.
    pub matched: BTreeSet<String>,
}

impl Outline {
    pub fn of(report: &Report) -> Outline {
        let v = &report.verdict;
        Outline {
            action: v.action,
            score: v.score,
            rule: v
                .deciding_finding
                .and_then(|i| report.findings.get(i))
                .map(|f| f.kind.name()),
            matched: report
                .findings
                .iter()
                .filter_map(|f| match &f.kind {
                    FindingKind::Yara {
                        namespace, rule, ..
                    } => Some(format!("{namespace}:{rule}")),
                    k @ FindingKind::HashList { .. } => Some(k.name()),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// Whether a verdict lets the message through (possibly tagged).
pub fn delivers(action: Action) -> bool {
    matches!(action, Action::Accept | Action::Tag)
}
