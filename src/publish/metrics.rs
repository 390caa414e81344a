//! Prometheus metrics, kept in memory and rendered in the text exposition
//! format on `/metrics`. Label values come from closed sets (doors, actions,
//! limits, outcomes) or from the loaded rule set (rule names), so the number
//! of series is bounded by configuration, never by input.

use crate::model::{Action, Door, LimitKind, Outcome};
use crate::pipeline::Report;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Inner {
    messages: BTreeMap<(Door, Action), u64>,
    refused: BTreeMap<(Door, &'static str), u64>,
    latency: BTreeMap<Door, Histogram>,
    objects: u64,
    unpacked_bytes: u64,
    received_bytes: u64,
    limits: BTreeMap<LimitKind, u64>,
    rule_hits: BTreeMap<String, u64>,
    /// Per finding name: messages it was found in, by the verdict's action,
    /// and when last (Unix ms).
    rule_stats: BTreeMap<String, RuleStat>,
    quarantined: u64,
    released: u64,
    release_failures: u64,
    stamps_passed: u64,
    reloads_ok: u64,
    reloads_failed: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// How often one rule (finding name) decided what, in this process.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RuleStat {
    /// Messages the rule was found in, by the verdict's action.
    pub by_action: BTreeMap<Action, u64>,
    pub last_hit_ms: i64,
}

/// Gauges read at scrape time rather than counted.
#[derive(Debug, Default)]
pub struct Gauges {
    pub pool_workers: usize,
    pub pool_capacity: usize,
    pub pool_queued: usize,
    pub pool_busy: usize,
    pub inflight_bytes: u64,
    pub rules_version: String,
    pub rule_count: usize,
    pub ready: bool,
    /// Messages held or awaiting approval; -1 when the index did not answer.
    pub quarantine_open: i64,
    /// Per-rule scan time, (namespace, rule) → (condition, patterns);
    /// empty unless built with `rules-profiling`.
    pub rule_times: BTreeMap<(String, String), (Duration, Duration)>,
    /// The running engine's result cache: entries, bytes, hits, misses.
    pub cache: (usize, usize, u64, u64),
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Counters stay usable after a panic elsewhere; a poisoned lock
        // only means one update may be missing.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One message answered with a verdict.
    pub fn message(&self, door: Door, action: Action, elapsed: Duration, report: Option<&Report>) {
        let mut m = self.lock();
        *m.messages.entry((door, action)).or_default() += 1;
        m.latency
            .entry(door)
            .or_default()
            .observe(elapsed.as_secs_f64());
        let Some(report) = report else { return };
        m.objects += report.objects.len() as u64;
        m.unpacked_bytes += report.unpacked_bytes;
        if let Some(root) = report.objects.first() {
            m.received_bytes += root.size;
        }
        for o in &report.objects {
            if let Outcome::Limit { limit } = o.outcome {
                *m.limits.entry(limit).or_default() += 1;
            }
        }
        for f in &report.findings {
            *m.rule_hits.entry(f.kind.name()).or_default() += 1;
        }
        let mut names: Vec<String> = report.findings.iter().map(|f| f.kind.name()).collect();
        names.sort();
        names.dedup();
        let now = crate::store::now_ms();
        for name in names {
            let stat = m.rule_stats.entry(name).or_default();
            *stat.by_action.entry(action).or_default() += 1;
            stat.last_hit_ms = now;
        }
    }

    /// Per-rule statistics since start (this process).
    pub fn rule_stats(&self) -> BTreeMap<String, RuleStat> {
        self.lock().rule_stats.clone()
    }

    /// A request a door answered without a verdict (overload, errors).
    pub fn refused(&self, door: Door, reason: &'static str) {
        *self.lock().refused.entry((door, reason)).or_default() += 1;
    }

    pub fn quarantined(&self) {
        self.lock().quarantined += 1;
    }

    /// A release (by operator, link or approval) to `n` recipients.
    pub fn released(&self, n: usize) {
        self.lock().released += n as u64;
    }

    pub fn release_failed(&self) {
        self.lock().release_failures += 1;
    }

    /// A re-injected message that passed on its release stamp.
    pub fn stamp_passed(&self) {
        self.lock().stamps_passed += 1;
    }

    pub fn reload(&self, ok: bool) {
        let mut m = self.lock();
        if ok {
            m.reloads_ok += 1;
        } else {
            m.reloads_failed += 1;
        }
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self, g: &Gauges) -> String {
        let m = self.lock();
        let mut out = String::with_capacity(4096);
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };

        head(
            &mut out,
            "portcullis_messages_total",
            "counter",
            "Messages answered with a verdict, by door and action.",
        );
        for door in Door::ALL {
            for action in Action::ALL {
                let n = m.messages.get(&(door, action)).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "portcullis_messages_total{{door=\"{door}\",action=\"{action}\"}} {n}"
                );
            }
        }

        head(
            &mut out,
            "portcullis_refused_total",
            "counter",
            "Requests answered without a verdict, by door and reason (overloaded answers are tempfail).",
        );
        for ((door, reason), n) in &m.refused {
            let _ = writeln!(
                out,
                "portcullis_refused_total{{door=\"{door}\",reason=\"{reason}\"}} {n}"
            );
        }

        head(
            &mut out,
            "portcullis_message_duration_seconds",
            "histogram",
            "Time from a complete request body to the verdict, by door.",
        );
        for door in Door::ALL {
            let h = m.latency.get(&door).cloned().unwrap_or_default();
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "portcullis_message_duration_seconds_bucket{{door=\"{door}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "portcullis_message_duration_seconds_bucket{{door=\"{door}\",le=\"+Inf\"}} {}\n\
                 portcullis_message_duration_seconds_sum{{door=\"{door}\"}} {}\n\
                 portcullis_message_duration_seconds_count{{door=\"{door}\"}} {}",
                h.count, h.sum, h.count
            );
        }

        let counters: [(&str, &str, u64); 9] = [
            (
                "portcullis_objects_total",
                "Objects inspected (the message and everything unpacked from it).",
                m.objects,
            ),
            (
                "portcullis_unpacked_bytes_total",
                "Bytes produced by unpacking.",
                m.unpacked_bytes,
            ),
            (
                "portcullis_received_bytes_total",
                "Bytes of the submissions themselves.",
                m.received_bytes,
            ),
            (
                "portcullis_quarantined_total",
                "Messages stored in the quarantine (durable before the door answered).",
                m.quarantined,
            ),
            (
                "portcullis_released_recipients_total",
                "Recipients a held message was released to.",
                m.released,
            ),
            (
                "portcullis_release_failures_total",
                "Releases the relay refused or that could not be sent (the message stayed held).",
                m.release_failures,
            ),
            (
                "portcullis_release_stamps_passed_total",
                "Re-injected released messages passed on their release stamp.",
                m.stamps_passed,
            ),
            (
                "portcullis_rule_reloads_total",
                "Successful rule and config reloads.",
                m.reloads_ok,
            ),
            (
                "portcullis_rule_reload_failures_total",
                "Reloads refused (the previous rules stayed active).",
                m.reloads_failed,
            ),
        ];
        for (name, help, value) in counters {
            head(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }

        head(
            &mut out,
            "portcullis_limit_hits_total",
            "counter",
            "Objects whose inspection a hard limit stopped, by limit.",
        );
        for (limit, n) in &m.limits {
            let _ = writeln!(
                out,
                "portcullis_limit_hits_total{{limit=\"{}\"}} {n}",
                limit.as_str()
            );
        }

        head(
            &mut out,
            "portcullis_rule_hits_total",
            "counter",
            "Findings by rule or check name (monitor-mode rules included).",
        );
        for (rule, n) in &m.rule_hits {
            let _ = writeln!(
                out,
                "portcullis_rule_hits_total{{rule=\"{}\"}} {n}",
                escape_label(rule)
            );
        }
        head(
            &mut out,
            "portcullis_rule_messages_total",
            "counter",
            "Messages a rule (finding) was found in, by the verdict's action.",
        );
        for (rule, stat) in &m.rule_stats {
            for (action, n) in &stat.by_action {
                let _ = writeln!(
                    out,
                    "portcullis_rule_messages_total{{rule=\"{}\",action=\"{action}\"}} {n}",
                    escape_label(rule)
                );
            }
        }
        head(
            &mut out,
            "portcullis_rule_last_hit_timestamp_seconds",
            "gauge",
            "When a rule (finding) was last found, Unix time.",
        );
        for (rule, stat) in &m.rule_stats {
            let _ = writeln!(
                out,
                "portcullis_rule_last_hit_timestamp_seconds{{rule=\"{}\"}} {:.3}",
                escape_label(rule),
                stat.last_hit_ms as f64 / 1000.0
            );
        }
        if !g.rule_times.is_empty() {
            head(
                &mut out,
                "portcullis_rule_scan_seconds",
                "gauge",
                "Time a YARA rule has taken with the live rule set, by phase (rules-profiling builds; rules under 100 ms in total are not reported by yara-x).",
            );
            for ((ns, rule), (cond, pat)) in &g.rule_times {
                for (phase, d) in [("condition", cond), ("patterns", pat)] {
                    let _ = writeln!(
                        out,
                        "portcullis_rule_scan_seconds{{rule=\"{}:{}\",phase=\"{phase}\"}} {:.6}",
                        escape_label(ns),
                        escape_label(rule),
                        d.as_secs_f64()
                    );
                }
            }
        }

        let gauges: [(&str, &str, u64); 5] = [
            (
                "portcullis_pool_workers",
                "Inspection threads.",
                g.pool_workers as u64,
            ),
            (
                "portcullis_pool_capacity",
                "Messages the pool admits at once (workers plus queue).",
                g.pool_capacity as u64,
            ),
            (
                "portcullis_pool_queue_depth",
                "Messages admitted and waiting for a worker.",
                g.pool_queued as u64,
            ),
            (
                "portcullis_pool_busy",
                "Messages being inspected now.",
                g.pool_busy as u64,
            ),
            (
                "portcullis_inflight_bytes",
                "Request body bytes held in memory now.",
                g.inflight_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            head(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
        let (entries, bytes, hits, misses) = g.cache;
        let cache: [(&str, &str, &str, u64); 4] = [
            (
                "portcullis_result_cache_entries",
                "gauge",
                "Attachments whose inspection result is cached.",
                entries as u64,
            ),
            (
                "portcullis_result_cache_bytes",
                "gauge",
                "Memory those results hold.",
                bytes as u64,
            ),
            (
                "portcullis_result_cache_hits_total",
                "counter",
                "Objects whose result came from the cache (since the last rule or config reload).",
                hits,
            ),
            (
                "portcullis_result_cache_misses_total",
                "counter",
                "Cacheable objects inspected afresh (since the last rule or config reload).",
                misses,
            ),
        ];
        for (name, kind, help, value) in cache {
            head(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        head(
            &mut out,
            "portcullis_rules_info",
            "gauge",
            "The active rule set: version label, rule count as value.",
        );
        let _ = writeln!(
            out,
            "portcullis_rules_info{{version=\"{}\"}} {}",
            escape_label(&g.rules_version),
            g.rule_count
        );
        head(
            &mut out,
            "portcullis_ready",
            "gauge",
            "1 when /readyz would answer 200.",
        );
        let _ = writeln!(out, "portcullis_ready {}", u8::from(g.ready));
        head(
            &mut out,
            "portcullis_quarantine_open",
            "gauge",
            "Quarantined messages held or awaiting release approval (-1: index unavailable).",
        );
        let _ = writeln!(out, "portcullis_quarantine_open {}", g.quarantine_open);
        out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(0.002);
        h.observe(0.3);
        assert_eq!(h.counts[0], 0);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[8], 2);
        assert_eq!(h.count, 2);
    }

    #[test]
    fn render_has_every_door_and_escapes_labels() {
        let m = Metrics::default();
        m.message(Door::Rspamd, Action::Reject, Duration::from_millis(3), None);
        m.refused(Door::Native, "overloaded");
        m.lock().rule_hits.insert("a\"b".into(), 2);
        let text = m.render(&Gauges::default());
        assert!(text.contains("portcullis_messages_total{door=\"rspamd\",action=\"reject\"} 1"));
        assert!(text.contains("portcullis_messages_total{door=\"mta_hooks\",action=\"accept\"} 0"));
        assert!(text.contains("portcullis_refused_total{door=\"native\",reason=\"overloaded\"} 1"));
        assert!(text.contains("rule=\"a\\\"b\"} 2"));
        assert!(text.contains(
            "portcullis_message_duration_seconds_bucket{door=\"rspamd\",le=\"0.005\"} 1"
        ));
    }
}
