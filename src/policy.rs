//! Decide: a pure function from findings to a [`Verdict`]. No I/O, no
//! clock, no rule engine: everything it needs is in its arguments, so every
//! policy choice is testable from a table.
//!
//! How a verdict is reached:
//! 1. Monitor-mode findings are reported but ignored from here on.
//! 2. The score is the sum of the remaining findings' scores; the tag,
//!    quarantine and reject thresholds turn it into an action.
//! 3. A finding can ask for an action on its own (rule metadata `action`,
//!    hash block lists, and the configured actions for limits, encrypted
//!    and unopenable objects). The strongest request wins over the score.
//! 4. The deciding finding is the one behind the final action; the verdict
//!    names it and its object.

use crate::config::PolicyConfig;
use crate::model::{Action, Finding, FindingKind, LimitKind, Modification, Reply, Verdict};

/// Scores for the findings the gateway raises itself (YARA rules carry
/// their own in metadata). Kept here so every policy number is in one file.
pub fn builtin_score(kind: &FindingKind) -> i32 {
    match kind {
        FindingKind::Yara { .. } => 0,
        FindingKind::HashList { .. } => 100,
        FindingKind::DisguisedExecutable { .. } => 30,
        FindingKind::DoubleExtension => 20,
        FindingKind::DeceptiveName { .. } => 20,
        FindingKind::AmbiguousArchive { .. } => 20,
        FindingKind::DangerousExtension { .. } => 10,
        FindingKind::Limit { .. } => 10,
        FindingKind::TypeMismatch { .. } => 5,
        FindingKind::Encrypted => 5,
        // Alone, not enough to tag: payslips travel this way too. With the
        // content now scanned, its findings speak for it.
        FindingKind::Decrypted { .. } => 3,
        FindingKind::Unopenable { .. } => 5,
        // Real mail is often sloppy; alone this must never change the action.
        FindingKind::MalformedMime { .. } => 1,
    }
}

/// The action a finding asks for by itself, if any.
pub fn requested_action(policy: &PolicyConfig, finding: &Finding) -> Option<Action> {
    if finding.monitor {
        return None;
    }
    match &finding.kind {
        FindingKind::Limit {
            limit: LimitKind::MessageBytes,
        } => Some(policy.on_oversize),
        FindingKind::Limit { .. } => Some(policy.on_limit),
        FindingKind::Encrypted => Some(policy.on_encrypted),
        FindingKind::Unopenable { .. } => Some(policy.on_unopenable),
        _ => finding.action,
    }
}

fn score_action(policy: &PolicyConfig, score: i32) -> Action {
    if score >= policy.reject_score {
        Action::Reject
    } else if score >= policy.quarantine_score {
        Action::Quarantine
    } else if score >= policy.tag_score {
        Action::Tag
    } else {
        Action::Accept
    }
}

/// Headers we set. Stripped from every message first so a sender cannot
/// forge a clean verdict.
pub const HEADER_ACTION: &str = "X-Portcullis-Action";
pub const HEADER_SCORE: &str = "X-Portcullis-Score";
pub const HEADER_FINDINGS: &str = "X-Portcullis-Findings";

pub fn decide(policy: &PolicyConfig, findings: &[Finding]) -> Verdict {
    let enforced = || findings.iter().enumerate().filter(|(_, f)| !f.monitor);
    let score = enforced().fold(0i32, |acc, (_, f)| acc.saturating_add(f.score));
    let by_score = score_action(policy, score);
    let requested = enforced()
        .filter_map(|(i, f)| requested_action(policy, f).map(|a| (a, f.score, i)))
        .max_by_key(|&(a, s, i)| (a, s, std::cmp::Reverse(i)));

    let (action, deciding) = match requested {
        Some((a, _, i)) if a >= by_score && a != Action::Accept => (a, Some(i)),
        _ if by_score != Action::Accept => {
            let top = enforced()
                .max_by_key(|&(i, f)| (f.score, std::cmp::Reverse(i)))
                .map(|(i, _)| i);
            (by_score, top)
        }
        _ => (Action::Accept, None),
    };

    let deciding_finding = deciding.and_then(|i| findings.get(i));
    let reason = deciding_finding.map(|f| f.kind.name());
    let summary = match deciding_finding {
        Some(f) => format!("{action}: {} in {} (score {score})", f.kind.name(), f.path),
        None if findings.is_empty() => "accept: nothing found".to_string(),
        None => format!(
            "accept: score {score} below the tag threshold {} ({} finding{})",
            policy.tag_score,
            findings.len(),
            if findings.len() == 1 { "" } else { "s" }
        ),
    };

    let mut modifications = vec![
        Modification::RemoveHeader {
            name: HEADER_ACTION.into(),
        },
        Modification::RemoveHeader {
            name: HEADER_SCORE.into(),
        },
        Modification::RemoveHeader {
            name: HEADER_FINDINGS.into(),
        },
        Modification::AddHeader {
            name: HEADER_ACTION.into(),
            value: action.to_string(),
        },
        Modification::AddHeader {
            name: HEADER_SCORE.into(),
            value: score.to_string(),
        },
    ];
    if !findings.is_empty() {
        let mut names: Vec<String> = findings.iter().map(|f| f.kind.name()).collect();
        names.sort();
        names.dedup();
        let mut value = names.join(", ");
        // Header lines stay well under the 998-byte SMTP line limit.
        if value.len() > 900 {
            let cut = (0..=900)
                .rev()
                .find(|&i| value.is_char_boundary(i))
                .unwrap_or(0);
            value.truncate(cut);
            value.push_str(", ...");
        }
        modifications.push(Modification::AddHeader {
            name: HEADER_FINDINGS.into(),
            value,
        });
    }
    if action == Action::Tag && !policy.subject_tag.is_empty() {
        modifications.push(Modification::PrefixSubject {
            prefix: policy.subject_tag.clone(),
        });
    }

    let smtp_reply = match action {
        Action::Reject => Some(Reply {
            code: 554,
            enhanced: "5.7.1".into(),
            text: policy
                .reject_text
                .replace("{reason}", reason.as_deref().unwrap_or("policy")),
        }),
        Action::TempFail => Some(Reply {
            code: 451,
            enhanced: "4.7.1".into(),
            text: "Message could not be inspected, try again later".into(),
        }),
        _ => None,
    };

    Verdict {
        action,
        score,
        deciding_finding: deciding,
        deciding_path: deciding_finding.map(|f| f.path.clone()),
        summary,
        modifications,
        smtp_reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(kind: FindingKind, score: i32, action: Option<Action>, monitor: bool) -> Finding {
        Finding {
            kind,
            object: 1,
            path: "message > a.zip".into(),
            score,
            action,
            monitor,
            severity: None,
            description: String::new(),
            reference: None,
        }
    }

    fn yara(rule: &str, score: i32, action: Option<Action>, monitor: bool) -> Finding {
        finding(
            FindingKind::Yara {
                namespace: "t".into(),
                rule: rule.into(),
                tags: vec![],
            },
            score,
            action,
            monitor,
        )
    }

    #[test]
    fn table() {
        let p = PolicyConfig::default();
        let mime = || {
            finding(
                FindingKind::MalformedMime { detail: "x".into() },
                1,
                None,
                false,
            )
        };
        let limit = || {
            finding(
                FindingKind::Limit {
                    limit: LimitKind::Depth,
                },
                10,
                None,
                false,
            )
        };
        let cases: Vec<(&str, Vec<Finding>, Action, i32)> = vec![
            ("nothing", vec![], Action::Accept, 0),
            ("sloppy mime alone", vec![mime()], Action::Accept, 1),
            (
                "tag by score",
                vec![yara("a", 5, None, false)],
                Action::Tag,
                5,
            ),
            (
                "quarantine by score",
                vec![yara("a", 10, None, false), yara("b", 5, None, false)],
                Action::Quarantine,
                15,
            ),
            (
                "reject by score",
                vec![yara("a", 60, None, false)],
                Action::Reject,
                60,
            ),
            (
                "rule action beats low score",
                vec![yara("a", 1, Some(Action::Reject), false)],
                Action::Reject,
                1,
            ),
            (
                "monitor never enforces",
                vec![yara("a", 100, Some(Action::Reject), true)],
                Action::Accept,
                0,
            ),
            ("limit uses on_limit", vec![limit()], Action::Quarantine, 10),
            (
                "score beats weaker request",
                vec![yara("a", 60, Some(Action::Tag), false)],
                Action::Reject,
                60,
            ),
            (
                "accept meta does not lower",
                vec![yara("a", 20, Some(Action::Accept), false)],
                Action::Quarantine,
                20,
            ),
        ];
        for (name, findings, action, score) in cases {
            let v = decide(&p, &findings);
            assert_eq!((v.action, v.score), (action, score), "{name}: {v:?}");
            if action != Action::Accept {
                assert!(v.deciding_finding.is_some(), "{name}");
                assert_eq!(v.deciding_path.as_deref(), Some("message > a.zip"));
            }
        }
    }

    #[test]
    fn configured_actions_apply() {
        let p = PolicyConfig {
            on_encrypted: Action::Reject,
            ..PolicyConfig::default()
        };
        let v = decide(&p, &[finding(FindingKind::Encrypted, 5, None, false)]);
        assert_eq!(v.action, Action::Reject);
        let reply = v.smtp_reply.unwrap();
        assert_eq!((reply.code, reply.enhanced.as_str()), (554, "5.7.1"));
        assert!(reply.text.contains("ENCRYPTED"), "{}", reply.text);
    }

    #[test]
    fn deciding_finding_is_the_one_that_set_the_action() {
        let p = PolicyConfig::default();
        let findings = vec![
            yara("weak", 5, None, false),
            yara("eicar", 100, Some(Action::Reject), false),
        ];
        let v = decide(&p, &findings);
        assert_eq!(v.deciding_finding, Some(1));
        assert!(v.summary.contains("eicar"), "{}", v.summary);
    }

    #[test]
    fn tag_prefixes_subject_and_strips_forged_headers() {
        let v = decide(&PolicyConfig::default(), &[yara("a", 5, None, false)]);
        assert!(v.modifications.contains(&Modification::PrefixSubject {
            prefix: "[SUSPICIOUS]".into()
        }));
        assert!(v.modifications.contains(&Modification::RemoveHeader {
            name: HEADER_ACTION.into()
        }));
    }
}
