//! Configuration: a raw, serde-shaped TOML file is validated once at start-up
//! into [`Config`]. Stages only ever see the validated form, so they never
//! re-check ranges or parse strings. Unknown keys are errors: a typo in a
//! limit must not silently leave the default in force.

use crate::model::Action;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Hard limits applied while unpacking one submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Nesting depth; the root is depth 0.
    pub max_depth: u32,
    /// Objects in the unpack tree, root included.
    pub max_objects: usize,
    /// Bytes of one unpacked object.
    pub max_object_bytes: u64,
    /// Bytes unpacked for the whole submission (the root not counted).
    pub max_total_bytes: u64,
    /// Output/input ratio allowed for one decompression, once the output is
    /// past `ratio_floor_bytes` (small, very compressible files are normal).
    pub max_ratio: u64,
    pub ratio_floor_bytes: u64,
    /// Wall-clock budget for the whole submission.
    pub time_budget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 16,
            max_objects: 1000,
            max_object_bytes: 64 << 20,
            max_total_bytes: 256 << 20,
            max_ratio: 250,
            ratio_floor_bytes: 1 << 20,
            time_budget: Duration::from_secs(10),
        }
    }
}

/// Score thresholds and the actions for finding kinds that carry no rule
/// metadata of their own.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub tag_score: i32,
    pub quarantine_score: i32,
    pub reject_score: i32,
    /// A limit was hit: part of the message was not inspected.
    pub on_limit: Action,
    pub on_encrypted: Action,
    /// A container that could not be opened.
    pub on_unopenable: Action,
    /// Subject prefix for tagged mail; empty for headers only.
    pub subject_tag: String,
    /// SMTP text for rejections. `{reason}` is replaced by the deciding
    /// finding's name.
    pub reject_text: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            tag_score: 5,
            quarantine_score: 15,
            reject_score: 50,
            on_limit: Action::Quarantine,
            on_encrypted: Action::Quarantine,
            on_unopenable: Action::Quarantine,
            subject_tag: "[SUSPICIOUS]".into(),
            reject_text: "Message rejected by content policy ({reason})".into(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub limits: Limits,
    pub policy: PolicyConfig,
    /// Rules directory; `None` means the rule set compiled into the binary.
    pub rules_dir: Option<PathBuf>,
    /// YARA timeout per object (yara-x counts in whole seconds).
    pub scan_timeout: Duration,
    /// md5 and sha1 of every object, for IOC feeds. They cost about as much
    /// as YARA itself; when off they are still computed where a hash list
    /// holds hashes of that kind.
    pub legacy_hashes: bool,
}

impl Config {
    pub fn defaults() -> Self {
        Config {
            scan_timeout: Duration::from_secs(5),
            legacy_hashes: true,
            ..Default::default()
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<string>"),
            message: e.to_string(),
        })?;
        raw.validate()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    identify: RawIdentify,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentify {
    legacy_hashes: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_depth: Option<u32>,
    max_objects: Option<usize>,
    max_object_bytes: Option<u64>,
    max_total_bytes: Option<u64>,
    max_ratio: Option<u64>,
    ratio_floor_bytes: Option<u64>,
    time_budget_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    tag_score: Option<i32>,
    quarantine_score: Option<i32>,
    reject_score: Option<i32>,
    on_limit: Option<String>,
    on_encrypted: Option<String>,
    on_unopenable: Option<String>,
    subject_tag: Option<String>,
    reject_text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    dir: Option<PathBuf>,
    scan_timeout_ms: Option<u64>,
}

fn action(field: &str, value: Option<String>, default: Action) -> Result<Action, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => Action::parse(&v).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "policy.{field} = {v:?}: expected one of accept, tag, quarantine, tempfail, reject, discard"
            ))
        }),
    }
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let d = Config::defaults();
        let l = self.limits;
        let limits = Limits {
            max_depth: l.max_depth.unwrap_or(d.limits.max_depth),
            max_objects: l.max_objects.unwrap_or(d.limits.max_objects),
            max_object_bytes: l.max_object_bytes.unwrap_or(d.limits.max_object_bytes),
            max_total_bytes: l.max_total_bytes.unwrap_or(d.limits.max_total_bytes),
            max_ratio: l.max_ratio.unwrap_or(d.limits.max_ratio),
            ratio_floor_bytes: l.ratio_floor_bytes.unwrap_or(d.limits.ratio_floor_bytes),
            time_budget: l
                .time_budget_ms
                .map(Duration::from_millis)
                .unwrap_or(d.limits.time_budget),
        };
        if limits.max_depth == 0 || limits.max_depth > 64 {
            return Err(ConfigError::Invalid(
                "limits.max_depth must be between 1 and 64".into(),
            ));
        }
        if limits.max_objects == 0 || limits.max_objects > 1_000_000 {
            return Err(ConfigError::Invalid(
                "limits.max_objects must be between 1 and 1000000".into(),
            ));
        }
        if limits.max_object_bytes == 0 || limits.max_object_bytes > limits.max_total_bytes {
            return Err(ConfigError::Invalid(
                "limits.max_object_bytes must be at least 1 and at most limits.max_total_bytes"
                    .into(),
            ));
        }
        if limits.max_total_bytes > 16 << 30 {
            return Err(ConfigError::Invalid(
                "limits.max_total_bytes must be at most 16 GiB".into(),
            ));
        }
        if limits.max_ratio < 2 {
            return Err(ConfigError::Invalid(
                "limits.max_ratio must be at least 2".into(),
            ));
        }
        if limits.time_budget < Duration::from_millis(100) {
            return Err(ConfigError::Invalid(
                "limits.time_budget_ms must be at least 100".into(),
            ));
        }

        let p = self.policy;
        let policy = PolicyConfig {
            tag_score: p.tag_score.unwrap_or(d.policy.tag_score),
            quarantine_score: p.quarantine_score.unwrap_or(d.policy.quarantine_score),
            reject_score: p.reject_score.unwrap_or(d.policy.reject_score),
            on_limit: action("on_limit", p.on_limit, d.policy.on_limit)?,
            on_encrypted: action("on_encrypted", p.on_encrypted, d.policy.on_encrypted)?,
            on_unopenable: action("on_unopenable", p.on_unopenable, d.policy.on_unopenable)?,
            subject_tag: p.subject_tag.unwrap_or(d.policy.subject_tag),
            reject_text: p.reject_text.unwrap_or(d.policy.reject_text),
        };
        if !(0 < policy.tag_score
            && policy.tag_score <= policy.quarantine_score
            && policy.quarantine_score <= policy.reject_score)
        {
            return Err(ConfigError::Invalid(
                "policy scores must satisfy 0 < tag_score <= quarantine_score <= reject_score"
                    .into(),
            ));
        }
        if policy.reject_text.contains(['\r', '\n']) || policy.subject_tag.contains(['\r', '\n']) {
            return Err(ConfigError::Invalid(
                "policy.reject_text and policy.subject_tag must be one line".into(),
            ));
        }

        let scan_timeout = self
            .rules
            .scan_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(d.scan_timeout);
        if scan_timeout < Duration::from_secs(1) {
            return Err(ConfigError::Invalid(
                "rules.scan_timeout_ms must be at least 1000 (yara-x counts whole seconds)".into(),
            ));
        }
        Ok(Config {
            limits,
            policy,
            rules_dir: self.rules.dir,
            scan_timeout,
            legacy_hashes: self.identify.legacy_hashes.unwrap_or(d.legacy_hashes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::defaults());
    }

    #[test]
    fn the_documented_example_is_the_defaults() {
        let text = include_str!("../deploy/portcullis.toml");
        assert_eq!(Config::from_toml(text).unwrap(), Config::defaults());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::from_toml("[limits]\nmax_dept = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_dept"), "{err}");
        let err = Config::from_toml("[nonsense]\n").unwrap_err();
        assert!(err.to_string().contains("nonsense"), "{err}");
    }

    #[test]
    fn values_are_validated() {
        assert!(Config::from_toml("[limits]\nmax_depth = 0").is_err());
        assert!(Config::from_toml("[policy]\non_limit = \"maybe\"").is_err());
        assert!(Config::from_toml("[policy]\ntag_score = 20\nquarantine_score = 10").is_err());
        let c = Config::from_toml("[policy]\non_encrypted = \"reject\"\n[limits]\nmax_depth = 3")
            .unwrap();
        assert_eq!(c.policy.on_encrypted, Action::Reject);
        assert_eq!(c.limits.max_depth, 3);
        assert!(c.legacy_hashes);
        let c = Config::from_toml("[identify]\nlegacy_hashes = false").unwrap();
        assert!(!c.legacy_hashes);
    }
}
