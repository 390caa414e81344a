//! Configuration: a raw, serde-shaped TOML file is validated once at start-up
//! into [`Config`]. Stages only ever see the validated form, so they never
//! re-check ranges or parse strings. Unknown keys are errors: a typo in a
//! limit must not silently leave the default in force.

use crate::model::Action;
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
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
    /// Passwords tried on an encrypted attachment, learnt from the
    /// message's subject and text; 0 turns the attempts off.
    pub max_password_candidates: usize,
    /// Time spent trying them, for the whole submission (key derivation is
    /// slow on purpose, and attackers choose its cost).
    pub password_time: Duration,
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
            max_password_candidates: 16,
            password_time: Duration::from_secs(1),
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
    /// A message larger than `server.max_body_bytes`: it was never read, so
    /// it cannot be quarantined or discarded; accept, tag, tempfail or
    /// reject (552 5.3.4).
    pub on_oversize: Action,
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
            on_oversize: Action::Reject,
            subject_tag: "[SUSPICIOUS]".into(),
            reject_text: "Message rejected by content policy ({reason})".into(),
        }
    }
}

/// The `serve` process: where it listens and how much it takes on.
/// Not reloadable: a SIGHUP that changes these is logged and ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Every address serves every HTTP door. The default adds 11334 to
    /// rspamd's 11333 because rspamc, given no `-h`, connects to localhost
    /// port 11334 (rspamd's controller, which also scans).
    pub listen: Vec<SocketAddr>,
    /// The quarantine (blobs, SQLite index) and the signing secret.
    pub data_dir: PathBuf,
    /// Inspection threads; the CPU count when the config says 0.
    pub workers: usize,
    /// Messages admitted and waiting for a worker. Past this the doors
    /// answer tempfail at once instead of queueing without bound.
    pub queue: usize,
    /// Largest request body a door reads. Bigger bodies get the door's
    /// "too large" answer before they are read.
    pub max_body_bytes: u64,
    /// Request bodies held in memory at once, all doors together. A request
    /// that would go past it is answered tempfail before its body is read.
    pub max_inflight_bytes: u64,
    pub max_connections: usize,
    /// A client must send its request head within this...
    pub header_timeout: Duration,
    /// ...and its whole body within this (slow senders hold memory).
    pub body_timeout: Duration,
    /// How long SIGTERM waits for messages in flight before exiting.
    pub drain_timeout: Duration,
    /// This process's name in events, webhook leases and logs; the host
    /// name when unset. Nodes sharing one database need distinct names.
    pub node: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![
                SocketAddr::from(([127, 0, 0, 1], 11333)),
                SocketAddr::from(([127, 0, 0, 1], 11334)),
            ],
            data_dir: PathBuf::from("var"),
            workers: 0,
            queue: 64,
            max_body_bytes: 64 << 20,
            max_inflight_bytes: 1 << 30,
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(30),
            node: default_node(),
        }
    }
}

/// The host name, or "portcullis" where it cannot be read.
pub fn default_node() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "portcullis".into())
}

impl ServerConfig {
    /// `workers`, with 0 resolved to the number of CPUs.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }
}

/// Who may call what. Hook doors (the MTA's) are open to `hook_networks`
/// or to a caller presenting the hook token; management endpoints need a
/// bearer token with a role.
#[derive(Clone, PartialEq, Default)]
pub struct AuthConfig {
    pub hook_networks: Vec<Cidr>,
    /// sha256 of the hook token; the token itself never sits in the config.
    pub hook_token_sha256: Option<[u8; 32]>,
    pub tokens: Vec<ApiToken>,
    /// Web UI logins (API tokens log in too).
    pub users: Vec<UiUser>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("hook_networks", &self.hook_networks)
            .field("hook_token", &self.hook_token_sha256.map(|_| "<sha256>"))
            .field("tokens", &self.tokens.len())
            .field("users", &self.users)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

/// Roles, weakest first: each can do what the ones before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read only.
    Auditor,
    /// Read, download, scan files.
    Analyst,
    /// Release and delete.
    Operator,
    /// Everything, including reloads.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Analyst => "analyst",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Auditor, Role::Analyst, Role::Operator, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// An IP network in CIDR notation; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{s:?}: prefix must be 0 to {max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// How each door signals a quarantine to the MTA. The message is already in
/// our spool when this is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuarantineSignal {
    /// Tell the MTA to accept and drop it: we hold the only copy.
    #[default]
    Discard,
    /// Tell the MTA to put it in its own hold queue as well (milter
    /// SMFIR_QUARANTINE through the rspamd proxy).
    Hold,
}

/// Where the milter door listens: `127.0.0.1:11332` or `unix:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilterListen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for MilterListen {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(ConfigError::Invalid(format!(
                    "milter listen {s:?}: a unix socket needs an absolute path"
                )));
            }
            return Ok(MilterListen::Unix(PathBuf::from(path)));
        }
        parse_listen(s.strip_prefix("inet:").unwrap_or(s)).map(MilterListen::Tcp)
    }
}

impl fmt::Display for MilterListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MilterListen::Tcp(a) => write!(f, "inet:{a}"),
            MilterListen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What a quarantine verdict does at a milter MTA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MilterQuarantine {
    /// Held in our quarantine only; the MTA is told to discard its copy.
    #[default]
    Own,
    /// Also put in the MTA's hold queue (SMFIR_QUARANTINE).
    Hold,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MilterConfig {
    /// Empty turns the milter door off.
    pub listen: Vec<MilterListen>,
    pub quarantine: MilterQuarantine,
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            listen: vec![MilterListen::Tcp(SocketAddr::from(([127, 0, 0, 1], 11332)))],
            quarantine: MilterQuarantine::Own,
        }
    }
}

/// A user of the web UI. The password is kept as an argon2 PHC string
/// (`portcullis user hash` makes one), never in clear.
#[derive(Clone, PartialEq)]
pub struct UiUser {
    pub name: String,
    pub role: Role,
    pub password_hash: String,
}

impl fmt::Debug for UiUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UiUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish()
    }
}

/// The quarantine store and its retention.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineConfig {
    /// sqlx URL of the index: `sqlite:PATH` or `postgres://…`. `None` is
    /// SQLite in `server.data_dir/portcullis.db`.
    pub database: Option<String>,
    /// How long a held message is kept before it expires (and its bytes
    /// are removed). Released messages keep their bytes as long.
    pub retention: Duration,
    /// How often expired messages are swept.
    pub sweep_interval: Duration,
    /// Who may download a held message's raw bytes (live malware).
    pub raw_download_role: Role,
    /// Raw messages in an S3-compatible bucket instead of
    /// `server.data_dir/quarantine/blobs`.
    pub s3: Option<S3Config>,
}

/// An S3-compatible bucket for quarantined bytes (`[quarantine.s3]`).
/// Nodes sharing a PostgreSQL index share the bucket too. Credentials not
/// given here come from the AWS environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, web identity, instance roles).
#[derive(Debug, Clone, PartialEq)]
pub struct S3Config {
    pub bucket: String,
    /// `https://host[:port]` of a non-AWS service (MinIO, Ceph RGW,
    /// Garage…); unset: AWS, from the region.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Prepended to every key, ending in `/` (or empty): several
    /// gateways' queues, or other data, can share a bucket.
    pub prefix: String,
    /// Plain `http://` endpoints; only on a network you trust.
    pub allow_http: bool,
    /// `https://bucket.host/key` instead of `https://host/bucket/key`.
    pub virtual_hosted_style: bool,
    pub access_key_id: Option<String>,
    /// A file holding the secret access key (never the key in config).
    pub secret_access_key_file: Option<PathBuf>,
    /// Bound on one operation, retries included: past it a door answers
    /// tempfail and the MTA retries later.
    pub timeout: Duration,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            database: None,
            retention: Duration::from_secs(30 * 86400),
            sweep_interval: Duration::from_secs(60),
            raw_download_role: Role::Admin,
            s3: None,
        }
    }
}

/// Releasing held mail: where it is re-injected and how recipients'
/// links behave.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseConfig {
    /// SMTP relay for released mail, `HOST:PORT`: an MTA listener that
    /// delivers without sending the mail through the gateway again (or
    /// does, and the release stamp lets it pass).
    pub relay: String,
    /// EHLO name; the host name when unset.
    pub helo: Option<String>,
    pub timeout: Duration,
    /// Base URL of this gateway as recipients reach it, for links.
    pub public_url: String,
    /// How long a recipient's release link works.
    pub link_ttl: Duration,
    /// How long a release stamp lets the re-injected message pass.
    pub stamp_ttl: Duration,
    /// SMTP clients a stamped message must come from to pass: where the
    /// release relay hands mail back to the MTA (the MTA itself). A stamp
    /// arriving from anywhere else is ignored and the message inspected.
    pub stamp_networks: Vec<Cidr>,
    /// A finding with one of these severities makes a recipient's link ask
    /// an operator instead of releasing.
    pub request_only_severities: Vec<String>,
    /// Likewise for findings that ask for one of these actions on their own.
    pub request_only_actions: Vec<Action>,
    /// Who is mailed when a recipient asks for a release (empty: nobody;
    /// the requests still wait in the queue under `release_requested`).
    pub notify: Vec<String>,
    /// 32+ random bytes that sign links, stamps and sessions. Default:
    /// `server.data_dir/secret.key`, created on first start. Nodes that
    /// share a queue must share it.
    pub secret_file: Option<PathBuf>,
    /// Secrets rotated out, newest first: links, stamps and sessions they
    /// signed still verify (nothing new is signed with them). Drop one
    /// after `link_ttl` has passed since the rotation.
    pub previous_secret_files: Vec<PathBuf>,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        ReleaseConfig {
            relay: "127.0.0.1:10025".into(),
            helo: None,
            timeout: Duration::from_secs(60),
            public_url: "http://127.0.0.1:11333".into(),
            link_ttl: Duration::from_secs(14 * 86400),
            stamp_ttl: Duration::from_secs(3600),
            stamp_networks: default_hook_networks(),
            request_only_severities: vec!["high".into(), "critical".into()],
            request_only_actions: vec![Action::Reject, Action::Discard],
            notify: Vec::new(),
            secret_file: None,
            previous_secret_files: Vec::new(),
        }
    }
}

/// Recipients' digests of their held mail.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestConfig {
    /// How often `serve` sends digests; `None` leaves it to
    /// `portcullis digest` (cron).
    pub interval: Option<Duration>,
    pub from: String,
    pub subject: String,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            interval: None,
            from: "postmaster@localhost".into(),
            subject: "Messages held for you".into(),
        }
    }
}

/// Changing rules safely: the sample previews run over, and what happens
/// to held mail after a reload (`[rules]` keys).
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleConfig {
    /// Recent messages (not quarantined) kept in memory for
    /// `POST /v1/rules/preview`; 0 keeps none. They are copies of real
    /// mail: mind your privacy rules before turning this on.
    pub preview_sample: usize,
    /// ...and at most this many bytes of them.
    pub preview_sample_bytes: u64,
    /// After a reload, inspect held messages again with the new set and
    /// mark those it would deliver as release candidates.
    pub retro_scan: bool,
    /// ...and release those candidates at once (audited as the system).
    pub retro_release: bool,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            preview_sample: 0,
            preview_sample_bytes: 64 << 20,
            retro_scan: true,
            retro_release: false,
        }
    }
}

/// Results of inspecting an attachment, kept for the next message that
/// carries the same bytes (a campaign sends one attachment to thousands of
/// recipients). Per engine: a rule or config reload starts it empty, so an
/// entry always holds what the running rules and limits would decide.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Attachments remembered; 0 turns the cache off.
    pub entries: usize,
    /// Memory for them (object lists and findings, not file bytes).
    pub max_bytes: usize,
    /// Smaller objects are cheaper to inspect again than to look up.
    pub min_object_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            entries: 10_000,
            max_bytes: 64 << 20,
            min_object_bytes: 4096,
        }
    }
}

/// Publishing verdicts: the events table, the stream and the JSON Lines
/// audit log. Webhooks are separate ([`WebhookConfig`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EventsConfig {
    /// Events older than this are deleted from the database; consumers
    /// further behind get 410 and the oldest cursor still served.
    pub retention: Duration,
    /// Verdicts waiting for the event writer. Past this (the database is
    /// down or far too slow) events are dropped and counted: mail never
    /// waits for publishing.
    pub queue: usize,
    /// Server-Sent Events streams open at once.
    pub max_streams: usize,
    /// Append-only JSON Lines copy of every event; relative paths are under
    /// `server.data_dir`. `None`: no file.
    pub audit_log: Option<PathBuf>,
    /// Rotate the audit log when it grows past this many bytes...
    pub audit_log_max_bytes: u64,
    /// ...and keep this many rotated files besides the live one.
    pub audit_log_keep: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            retention: Duration::from_secs(30 * 86400),
            queue: 10_000,
            max_streams: 16,
            audit_log: Some(PathBuf::from("audit/events.jsonl")),
            audit_log_max_bytes: 100 << 20,
            audit_log_keep: 10,
        }
    }
}

/// One webhook: every event that passes its filter is POSTed to `url`, in
/// order, at least once, signed (Standard Webhooks).
#[derive(Clone, PartialEq)]
pub struct WebhookConfig {
    /// Names the delivery cursor in the database: renaming a webhook starts
    /// it afresh at the newest event.
    pub name: String,
    pub url: String,
    /// HMAC keys; the first signs, all are sent during a rotation.
    pub secrets: Vec<Vec<u8>>,
    /// Which events it gets.
    pub filter: EventFilter,
    pub timeout: Duration,
    /// Longest wait between two attempts of one event.
    pub max_backoff: Duration,
    /// Also send GitHub's `X-Hub-Signature-256` (body only, replayable:
    /// only for receivers that know nothing else).
    pub github_signature: bool,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secrets", &format_args!("[{} hidden]", self.secrets.len()))
            .field("filter", &self.filter)
            .field("timeout", &self.timeout)
            .field("max_backoff", &self.max_backoff)
            .field("github_signature", &self.github_signature)
            .finish()
    }
}

/// Which events a consumer wants: a webhook's `actions` and `min_score`,
/// and the same query parameters of the pull API and the stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Only events with one of these actions (empty: all).
    pub actions: Vec<Action>,
    /// Only events scoring at least this.
    pub min_score: Option<i64>,
}

impl EventFilter {
    pub fn wants(&self, action: Option<Action>, score: Option<i64>) -> bool {
        (self.actions.is_empty() || action.is_some_and(|a| self.actions.contains(&a)))
            && self.min_score.is_none_or(|m| score.is_some_and(|s| s >= m))
    }
}

/// `30d`, `12h`, `90s`, `500ms`, `15m`: the durations newer sections use.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, ConfigError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        ConfigError::Invalid(format!(
            "{field} = {text:?}: expected a number and a unit (ms, s, m, h, d), e.g. \"30d\""
        ))
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => n,
        "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        "d" => n.saturating_mul(86_400_000),
        _ => return Err(bad()),
    };
    Ok(Duration::from_millis(ms))
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub milter: MilterConfig,
    pub cache: CacheConfig,
    pub limits: Limits,
    pub policy: PolicyConfig,
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub quarantine_signal: QuarantineSignal,
    pub quarantine: QuarantineConfig,
    pub release: ReleaseConfig,
    pub digest: DigestConfig,
    pub events: EventsConfig,
    pub webhooks: Vec<WebhookConfig>,
    /// Rules directory; `None` means the rule set compiled into the binary.
    pub rules_dir: Option<PathBuf>,
    /// How often `serve` looks for changes in the rules directory and the
    /// config file, and reloads when it finds one; `None` leaves reloads
    /// to SIGHUP and the API.
    pub rules_watch: Option<Duration>,
    pub lifecycle: LifecycleConfig,
    /// YARA timeout per object (yara-x counts in whole seconds).
    pub scan_timeout: Duration,
    /// md5 and sha1 of every object, in reports and events. Off by default:
    /// they add about half again to an average message's inspection
    /// (BENCHMARKS.md, pipeline bench; md5 has no hardware form), and with
    /// them off each is still computed whenever a hash list holds hashes of
    /// its kind, so IOC feeds in md5 or sha1 match either way.
    pub legacy_hashes: bool,
}

/// The hook networks when the config names none: this host only.
pub fn default_hook_networks() -> Vec<Cidr> {
    vec![
        Cidr {
            addr: IpAddr::from([127, 0, 0, 0]),
            prefix: 8,
        },
        Cidr {
            addr: IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
            prefix: 128,
        },
    ]
}

impl Config {
    pub fn defaults() -> Self {
        Config {
            scan_timeout: Duration::from_secs(5),
            legacy_hashes: false,
            rules_watch: Some(Duration::from_secs(5)),
            auth: AuthConfig {
                hook_networks: default_hook_networks(),
                ..Default::default()
            },
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

#[derive(Default, Deserialize)]
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
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    doors: RawDoors,
    #[serde(default)]
    milter: RawMilter,
    #[serde(default)]
    quarantine: RawQuarantine,
    #[serde(default)]
    release: RawRelease,
    #[serde(default)]
    digest: RawDigest,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
    #[serde(default)]
    cache: RawCache,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    entries: Option<usize>,
    max_bytes: Option<usize>,
    min_object_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    retention: Option<String>,
    queue: Option<usize>,
    max_streams: Option<usize>,
    audit_log: Option<PathBuf>,
    audit_log_max_bytes: Option<u64>,
    audit_log_keep: Option<usize>,
}

// No Debug: it holds secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: String,
    url: String,
    secret: Option<String>,
    secrets: Option<Vec<String>>,
    secret_file: Option<PathBuf>,
    #[serde(default)]
    actions: Vec<String>,
    min_score: Option<i32>,
    timeout: Option<String>,
    max_backoff: Option<String>,
    #[serde(default)]
    github_signature: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuarantine {
    database: Option<String>,
    retention: Option<String>,
    sweep_interval: Option<String>,
    raw_download_role: Option<String>,
    s3: Option<RawS3>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawS3 {
    bucket: String,
    endpoint: Option<String>,
    region: Option<String>,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    allow_http: bool,
    #[serde(default)]
    virtual_hosted_style: bool,
    access_key_id: Option<String>,
    secret_access_key_file: Option<PathBuf>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    relay: Option<String>,
    helo: Option<String>,
    timeout: Option<String>,
    public_url: Option<String>,
    link_ttl: Option<String>,
    stamp_ttl: Option<String>,
    stamp_networks: Option<Vec<String>>,
    request_only_severities: Option<Vec<String>>,
    request_only_actions: Option<Vec<String>>,
    notify: Option<Vec<String>>,
    secret_file: Option<PathBuf>,
    #[serde(default)]
    previous_secret_files: Vec<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDigest {
    interval: Option<String>,
    from: Option<String>,
    subject: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMilter {
    listen: Option<Vec<String>>,
    quarantine: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Vec<String>>,
    data_dir: Option<PathBuf>,
    workers: Option<usize>,
    queue: Option<usize>,
    max_body_bytes: Option<u64>,
    max_inflight_bytes: Option<u64>,
    max_connections: Option<usize>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
    node: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    hook_networks: Option<Vec<String>>,
    hook_token_sha256: Option<String>,
    #[serde(default)]
    tokens: Vec<RawToken>,
    #[serde(default)]
    users: Vec<RawUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    role: String,
    password_argon2: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    role: String,
    sha256: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoors {
    quarantine_signal: Option<String>,
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
    max_password_candidates: Option<usize>,
    password_time_ms: Option<u64>,
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
    on_oversize: Option<String>,
    subject_tag: Option<String>,
    reject_text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    dir: Option<PathBuf>,
    scan_timeout_ms: Option<u64>,
    watch_interval: Option<String>,
    preview_sample: Option<usize>,
    preview_sample_bytes: Option<u64>,
    retro_scan: Option<bool>,
    retro_release: Option<bool>,
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
            max_password_candidates: l
                .max_password_candidates
                .unwrap_or(d.limits.max_password_candidates),
            password_time: l
                .password_time_ms
                .map(Duration::from_millis)
                .unwrap_or(d.limits.password_time),
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

        if limits.max_password_candidates > 1000 {
            return Err(ConfigError::Invalid(
                "limits.max_password_candidates must be at most 1000".into(),
            ));
        }
        if limits.password_time > limits.time_budget {
            return Err(ConfigError::Invalid(
                "limits.password_time_ms must be at most limits.time_budget_ms".into(),
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
            on_oversize: action("on_oversize", p.on_oversize, d.policy.on_oversize)?,
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
        if matches!(policy.on_oversize, Action::Quarantine | Action::Discard) {
            return Err(ConfigError::Invalid(
                "policy.on_oversize must be accept, tag, tempfail or reject: an oversize message is never read, so it cannot be quarantined or discarded".into(),
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
        let server = validate_server(self.server, d.server)?;
        let auth = validate_auth(self.auth, d.auth)?;
        let quarantine_signal = match self.doors.quarantine_signal.as_deref() {
            None => d.quarantine_signal,
            Some("discard") => QuarantineSignal::Discard,
            Some("hold") => QuarantineSignal::Hold,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "doors.quarantine_signal = {other:?}: expected \"discard\" or \"hold\""
                )));
            }
        };
        let milter = MilterConfig {
            listen: match self.milter.listen {
                None => d.milter.listen,
                Some(list) => list
                    .iter()
                    .map(|l| l.parse())
                    .collect::<Result<Vec<_>, _>>()?,
            },
            quarantine: match self.milter.quarantine.as_deref() {
                None => d.milter.quarantine,
                Some("own") => MilterQuarantine::Own,
                Some("hold") => MilterQuarantine::Hold,
                Some(other) => {
                    return Err(ConfigError::Invalid(format!(
                        "milter.quarantine = {other:?}: expected \"own\" or \"hold\""
                    )));
                }
            },
        };
        let quarantine = validate_quarantine(self.quarantine, d.quarantine)?;
        let release = validate_release(self.release, d.release)?;
        let digest = validate_digest(self.digest, d.digest)?;
        let events = validate_events(self.events, d.events)?;
        let webhooks = validate_webhooks(self.webhooks)?;
        let cache = CacheConfig {
            entries: self.cache.entries.unwrap_or(d.cache.entries),
            max_bytes: self.cache.max_bytes.unwrap_or(d.cache.max_bytes),
            min_object_bytes: self
                .cache
                .min_object_bytes
                .unwrap_or(d.cache.min_object_bytes),
        };
        Ok(Config {
            cache,
            milter,
            limits,
            policy,
            server,
            auth,
            quarantine_signal,
            quarantine,
            release,
            digest,
            events,
            webhooks,
            lifecycle: LifecycleConfig {
                preview_sample: self
                    .rules
                    .preview_sample
                    .unwrap_or(d.lifecycle.preview_sample),
                preview_sample_bytes: self
                    .rules
                    .preview_sample_bytes
                    .unwrap_or(d.lifecycle.preview_sample_bytes),
                retro_scan: self.rules.retro_scan.unwrap_or(d.lifecycle.retro_scan),
                retro_release: self
                    .rules
                    .retro_release
                    .unwrap_or(d.lifecycle.retro_release),
            },
            rules_dir: self.rules.dir,
            scan_timeout,
            legacy_hashes: self.identify.legacy_hashes.unwrap_or(d.legacy_hashes),
            rules_watch: match self.rules.watch_interval.as_deref().map(str::trim) {
                None => d.rules_watch,
                Some("off") | Some("") => None,
                Some(t) => {
                    let i = parse_duration("rules.watch_interval", t)?;
                    if i < Duration::from_millis(100) {
                        return Err(ConfigError::Invalid(
                            "rules.watch_interval must be at least 100ms (or \"off\")".into(),
                        ));
                    }
                    Some(i)
                }
            },
        })
    }
}

fn validate_server(s: RawServer, d: ServerConfig) -> Result<ServerConfig, ConfigError> {
    let ms = |v: Option<u64>, default: Duration| v.map(Duration::from_millis).unwrap_or(default);
    let listen = match s.listen {
        None => d.listen,
        Some(list) => list
            .iter()
            .map(|text| parse_listen(text))
            .collect::<Result<Vec<_>, _>>()?,
    };
    if listen.is_empty() {
        return Err(ConfigError::Invalid(
            "server.listen needs at least one address".into(),
        ));
    }
    let server = ServerConfig {
        listen,
        data_dir: s.data_dir.unwrap_or(d.data_dir),
        workers: s.workers.unwrap_or(d.workers),
        queue: s.queue.unwrap_or(d.queue),
        max_body_bytes: s.max_body_bytes.unwrap_or(d.max_body_bytes),
        max_inflight_bytes: s.max_inflight_bytes.unwrap_or(d.max_inflight_bytes),
        max_connections: s.max_connections.unwrap_or(d.max_connections),
        header_timeout: ms(s.header_timeout_ms, d.header_timeout),
        body_timeout: ms(s.body_timeout_ms, d.body_timeout),
        drain_timeout: ms(s.drain_timeout_ms, d.drain_timeout),
        node: match s.node.as_deref().map(str::trim) {
            None | Some("") => d.node,
            Some(n) => n.to_string(),
        },
    };
    if !server
        .node
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || server.node.len() > 64
    {
        return Err(ConfigError::Invalid(format!(
            "server.node = {:?}: up to 64 letters, digits, '-', '_' or '.'",
            server.node
        )));
    }
    if server.workers > 1024 {
        return Err(ConfigError::Invalid(
            "server.workers must be at most 1024 (0 = one per CPU)".into(),
        ));
    }
    // A zstd body holds its compressed bytes and room for the decoded
    // ones at once, so the budget must fit two largest bodies.
    if server.max_body_bytes == 0
        || server.max_body_bytes.saturating_mul(2) > server.max_inflight_bytes
    {
        return Err(ConfigError::Invalid(
            "server.max_body_bytes must be at least 1 and at most half of server.max_inflight_bytes".into(),
        ));
    }
    // Semaphore permits are counted in u32 KiB units.
    if server.max_inflight_bytes > (u64::from(u32::MAX) << 10) {
        return Err(ConfigError::Invalid(
            "server.max_inflight_bytes must be below 4 TiB".into(),
        ));
    }
    if server.max_connections == 0 {
        return Err(ConfigError::Invalid(
            "server.max_connections must be at least 1".into(),
        ));
    }
    if server.header_timeout < Duration::from_millis(100)
        || server.body_timeout < Duration::from_millis(100)
    {
        return Err(ConfigError::Invalid(
            "server.header_timeout_ms and server.body_timeout_ms must be at least 100".into(),
        ));
    }
    Ok(server)
}

pub fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        ConfigError::Invalid(format!(
            "listen address {text:?}: expected ADDRESS:PORT, e.g. 127.0.0.1:11333 or [::1]:11333"
        ))
    })
}

fn sha256_hex(field: &str, text: &str) -> Result<[u8; 32], ConfigError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).map_err(|_| {
        ConfigError::Invalid(format!(
            "{field}: expected the 64 hex digits of a sha256 (portcullis token new prints one)"
        ))
    })?;
    Ok(out)
}

fn validate_auth(a: RawAuth, d: AuthConfig) -> Result<AuthConfig, ConfigError> {
    let hook_networks = match a.hook_networks {
        None => d.hook_networks,
        Some(list) => list
            .iter()
            .map(|n| {
                n.parse::<Cidr>()
                    .map_err(|e| ConfigError::Invalid(format!("auth.hook_networks: {e}")))
            })
            .collect::<Result<_, _>>()?,
    };
    let hook_token_sha256 = a
        .hook_token_sha256
        .map(|h| sha256_hex("auth.hook_token_sha256", &h))
        .transpose()?;
    let mut tokens = Vec::new();
    for t in a.tokens {
        let role = Role::parse(&t.role).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "auth.tokens {:?}: role {:?} is not one of admin, operator, analyst, auditor",
                t.name, t.role
            ))
        })?;
        let sha256 = sha256_hex(&format!("auth.tokens {:?}: sha256", t.name), &t.sha256)?;
        if tokens.iter().any(|x: &ApiToken| x.sha256 == sha256) {
            return Err(ConfigError::Invalid(format!(
                "auth.tokens {:?}: the same token is listed twice",
                t.name
            )));
        }
        tokens.push(ApiToken {
            name: t.name,
            role,
            sha256,
        });
    }
    let mut users = Vec::new();
    for u in a.users {
        let role = Role::parse(&u.role).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "auth.users {:?}: role {:?} is not one of admin, operator, analyst, auditor",
                u.name, u.role
            ))
        })?;
        if argon2::PasswordHash::new(u.password_argon2.trim()).is_err() {
            return Err(ConfigError::Invalid(format!(
                "auth.users {:?}: password_argon2 is not an argon2 PHC string (portcullis user hash makes one)",
                u.name
            )));
        }
        if u.name.trim().is_empty() || users.iter().any(|x: &UiUser| x.name == u.name) {
            return Err(ConfigError::Invalid(format!(
                "auth.users {:?}: names must be unique and not empty",
                u.name
            )));
        }
        users.push(UiUser {
            name: u.name,
            role,
            password_hash: u.password_argon2.trim().to_string(),
        });
    }
    Ok(AuthConfig {
        hook_networks,
        hook_token_sha256,
        tokens,
        users,
    })
}

fn role(field: &str, value: &str) -> Result<Role, ConfigError> {
    Role::parse(value).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "{field} = {value:?}: expected admin, operator, analyst or auditor"
        ))
    })
}

fn validate_quarantine(
    q: RawQuarantine,
    d: QuarantineConfig,
) -> Result<QuarantineConfig, ConfigError> {
    let database = q.database.filter(|s| !s.trim().is_empty());
    if let Some(url) = &database
        && !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
    {
        return Err(ConfigError::Invalid(
            "quarantine.database: expected sqlite:PATH or postgres://USER@HOST/DB".into(),
        ));
    }
    let out = QuarantineConfig {
        database,
        retention: q
            .retention
            .map(|t| parse_duration("quarantine.retention", &t))
            .transpose()?
            .unwrap_or(d.retention),
        sweep_interval: q
            .sweep_interval
            .map(|t| parse_duration("quarantine.sweep_interval", &t))
            .transpose()?
            .unwrap_or(d.sweep_interval),
        raw_download_role: q
            .raw_download_role
            .map(|r| role("quarantine.raw_download_role", &r))
            .transpose()?
            .unwrap_or(d.raw_download_role),
        s3: q.s3.map(validate_s3).transpose()?,
    };
    if out.retention < Duration::from_secs(1) || out.sweep_interval < Duration::from_millis(100) {
        return Err(ConfigError::Invalid(
            "quarantine.retention must be at least 1s and sweep_interval at least 100ms".into(),
        ));
    }
    Ok(out)
}

fn validate_s3(s: RawS3) -> Result<S3Config, ConfigError> {
    let bad = |m: String| Err(ConfigError::Invalid(format!("quarantine.s3.{m}")));
    // S3's own bucket naming rules (3-63 of a-z 0-9 . -), which every
    // compatible service follows.
    let b = s.bucket.as_bytes();
    if !(3..=63).contains(&b.len())
        || !b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        || !b[0].is_ascii_alphanumeric()
        || !b[b.len() - 1].is_ascii_alphanumeric()
    {
        return bad(format!(
            "bucket = {:?}: 3-63 characters of a-z, 0-9, '.' and '-'",
            s.bucket
        ));
    }
    let mut prefix = s.prefix.trim_matches('/').to_string();
    if prefix
        .split('/')
        .any(|seg| seg == "." || seg == ".." || (seg.is_empty() && !prefix.is_empty()))
        || prefix.chars().any(|c| c.is_control() || c == '\\')
    {
        return bad(format!(
            "prefix = {:?}: path segments without '.', '..', empty parts or control characters",
            s.prefix
        ));
    }
    if !prefix.is_empty() {
        prefix.push('/');
    }
    if let Some(e) = &s.endpoint {
        let plain = e.starts_with("http://");
        if !(plain || e.starts_with("https://")) {
            return bad(format!("endpoint = {e:?}: expected https://HOST[:PORT]"));
        }
        if plain && !s.allow_http {
            return bad(format!(
                "endpoint = {e:?} is plain http: set allow_http = true if that is meant"
            ));
        }
    }
    if s.access_key_id.is_some() != s.secret_access_key_file.is_some() {
        return bad("access_key_id and secret_access_key_file go together".into());
    }
    let timeout = s
        .timeout
        .map(|t| parse_duration("quarantine.s3.timeout", &t))
        .transpose()?
        .unwrap_or(Duration::from_secs(30));
    if timeout < Duration::from_secs(1) {
        return bad("timeout must be at least 1s".into());
    }
    Ok(S3Config {
        bucket: s.bucket,
        endpoint: s.endpoint,
        region: s.region,
        prefix,
        allow_http: s.allow_http,
        virtual_hosted_style: s.virtual_hosted_style,
        access_key_id: s.access_key_id,
        secret_access_key_file: s.secret_access_key_file,
        timeout,
    })
}

fn validate_release(r: RawRelease, d: ReleaseConfig) -> Result<ReleaseConfig, ConfigError> {
    let dur = |field: &str, v: Option<String>, default: Duration| {
        v.map(|t| parse_duration(field, &t))
            .transpose()
            .map(|o| o.unwrap_or(default))
    };
    let relay = r.relay.unwrap_or(d.relay);
    if relay
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(ConfigError::Invalid(format!(
            "release.relay = {relay:?}: expected HOST:PORT, e.g. 127.0.0.1:10025"
        )));
    }
    let public_url = r
        .public_url
        .unwrap_or(d.public_url)
        .trim_end_matches('/')
        .to_string();
    if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
        return Err(ConfigError::Invalid(
            "release.public_url must start with http:// or https://".into(),
        ));
    }
    let request_only_actions = match r.request_only_actions {
        None => d.request_only_actions,
        Some(list) => list
            .iter()
            .map(|a| {
                Action::parse(a).ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "release.request_only_actions: {a:?} is not an action"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(ReleaseConfig {
        relay,
        helo: r.helo.filter(|h| !h.trim().is_empty()),
        timeout: dur("release.timeout", r.timeout, d.timeout)?,
        public_url,
        link_ttl: dur("release.link_ttl", r.link_ttl, d.link_ttl)?,
        stamp_ttl: dur("release.stamp_ttl", r.stamp_ttl, d.stamp_ttl)?,
        stamp_networks: match r.stamp_networks {
            None => d.stamp_networks,
            Some(list) => list
                .iter()
                .map(|n| {
                    n.parse::<Cidr>()
                        .map_err(|e| ConfigError::Invalid(format!("release.stamp_networks: {e}")))
                })
                .collect::<Result<_, _>>()?,
        },
        request_only_severities: r
            .request_only_severities
            .map(|v| v.into_iter().map(|s| s.to_lowercase()).collect())
            .unwrap_or(d.request_only_severities),
        request_only_actions,
        notify: r.notify.unwrap_or(d.notify),
        secret_file: r.secret_file,
        previous_secret_files: r.previous_secret_files,
    })
}

fn validate_digest(g: RawDigest, d: DigestConfig) -> Result<DigestConfig, ConfigError> {
    let interval = match g.interval.as_deref().map(str::trim) {
        None | Some("") | Some("off") => None,
        Some(t) => {
            let i = parse_duration("digest.interval", t)?;
            if i < Duration::from_secs(1) {
                return Err(ConfigError::Invalid(
                    "digest.interval must be at least 1s (or \"off\")".into(),
                ));
            }
            Some(i)
        }
    };
    Ok(DigestConfig {
        interval,
        from: g.from.unwrap_or(d.from),
        subject: g.subject.unwrap_or(d.subject),
    })
}

fn validate_events(e: RawEvents, d: EventsConfig) -> Result<EventsConfig, ConfigError> {
    let events = EventsConfig {
        retention: match e.retention {
            None => d.retention,
            Some(t) => parse_duration("events.retention", &t)?,
        },
        queue: e.queue.unwrap_or(d.queue),
        max_streams: e.max_streams.unwrap_or(d.max_streams),
        audit_log: match e.audit_log {
            None => d.audit_log,
            Some(p) if p.as_os_str().is_empty() || p.as_os_str() == "off" => None,
            Some(p) => Some(p),
        },
        audit_log_max_bytes: e.audit_log_max_bytes.unwrap_or(d.audit_log_max_bytes),
        audit_log_keep: e.audit_log_keep.unwrap_or(d.audit_log_keep),
    };
    if events.retention < Duration::from_secs(60) {
        return Err(ConfigError::Invalid(
            "events.retention must be at least 1m".into(),
        ));
    }
    if events.queue == 0 || events.queue > 1_000_000 {
        return Err(ConfigError::Invalid(
            "events.queue must be between 1 and 1000000".into(),
        ));
    }
    if events.audit_log_max_bytes < 4096 {
        return Err(ConfigError::Invalid(
            "events.audit_log_max_bytes must be at least 4096".into(),
        ));
    }
    Ok(events)
}

/// A Standard Webhooks secret (`whsec_` + base64) is its decoded bytes;
/// any other string is used as it is.
pub fn webhook_key(secret: &str) -> Result<Vec<u8>, ConfigError> {
    use base64::Engine as _;
    let secret = secret.trim();
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| ConfigError::Invalid("webhook secret \"whsec_…\" is not base64".into()))?,
        None => secret.as_bytes().to_vec(),
    };
    if key.len() < 16 {
        return Err(ConfigError::Invalid(
            "webhook secrets must be at least 16 bytes".into(),
        ));
    }
    Ok(key)
}

fn validate_webhooks(raw: Vec<RawWebhook>) -> Result<Vec<WebhookConfig>, ConfigError> {
    let mut out: Vec<WebhookConfig> = Vec::new();
    for w in raw {
        let field = |k: &str| format!("webhooks[{}].{k}", w.name);
        if w.name.is_empty()
            || w.name.len() > 64
            || !w
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::Invalid(format!(
                "webhooks.name = {:?}: 1 to 64 letters, digits, '-', '_' or '.'",
                w.name
            )));
        }
        if out.iter().any(|o| o.name == w.name) {
            return Err(ConfigError::Invalid(format!(
                "two webhooks are named {:?}",
                w.name
            )));
        }
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "{} = {:?}: expected an http:// or https:// URL",
                field("url"),
                w.url
            )));
        }
        let mut texts: Vec<String> = w.secret.into_iter().collect();
        texts.extend(w.secrets.unwrap_or_default());
        if let Some(path) = &w.secret_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            texts.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
        }
        if texts.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{}: a webhook needs a secret (or secrets, or secret_file) to sign with",
                field("secret")
            )));
        }
        let secrets = texts
            .iter()
            .map(|t| webhook_key(t))
            .collect::<Result<Vec<_>, _>>()?;
        let actions = w
            .actions
            .iter()
            .map(|a| {
                Action::parse(a).ok_or_else(|| {
                    ConfigError::Invalid(format!("{} = {a:?}: not an action", field("actions")))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let timeout = match &w.timeout {
            None => Duration::from_secs(15),
            Some(t) => parse_duration(&field("timeout"), t)?,
        };
        let max_backoff = match &w.max_backoff {
            None => Duration::from_secs(300),
            Some(t) => parse_duration(&field("max_backoff"), t)?,
        };
        if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(120) {
            return Err(ConfigError::Invalid(format!(
                "{} must be between 100ms and 120s",
                field("timeout")
            )));
        }
        if max_backoff < Duration::from_secs(1) {
            return Err(ConfigError::Invalid(format!(
                "{} must be at least 1s",
                field("max_backoff")
            )));
        }
        out.push(WebhookConfig {
            name: w.name,
            url: w.url,
            secrets,
            filter: EventFilter {
                actions,
                min_score: w.min_score.map(i64::from),
            },
            timeout,
            max_backoff,
            github_signature: w.github_signature,
        });
    }
    Ok(out)
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
    fn s3_settings_are_checked_and_the_prefix_normalised() {
        let c = Config::from_toml(
            "[quarantine.s3]\nbucket = \"mail-quarantine.eu-1\"\nendpoint = \"https://s3.example.net:9000\"\n\
             prefix = \"/gateways/prod\"\naccess_key_id = \"AKIA1\"\nsecret_access_key_file = \"/run/s3\"\ntimeout = \"10s\"\n",
        )
        .unwrap();
        let s3 = c.quarantine.s3.unwrap();
        assert_eq!(s3.prefix, "gateways/prod/");
        assert_eq!(s3.timeout, Duration::from_secs(10));
        assert!(!s3.allow_http && !s3.virtual_hosted_style);
        let d = Config::from_toml("[quarantine.s3]\nbucket = \"abc\"\n").unwrap();
        let s3 = d.quarantine.s3.unwrap();
        assert_eq!(
            (s3.prefix.as_str(), s3.timeout),
            ("", Duration::from_secs(30))
        );
        assert!(Config::defaults().quarantine.s3.is_none());
        for bad in [
            "bucket = \"UPPER\"",
            "bucket = \"ab\"",
            "bucket = \"-abc\"",
            "bucket = \"a/b/c\"",
            "bucket = \"abc\"\nprefix = \"a/../b\"",
            "bucket = \"abc\"\nprefix = \"a//b\"",
            "bucket = \"abc\"\nendpoint = \"http://minio:9000\"",
            "bucket = \"abc\"\nendpoint = \"minio:9000\"",
            "bucket = \"abc\"\naccess_key_id = \"AKIA1\"",
            "bucket = \"abc\"\ntimeout = \"10ms\"",
            "bucket = \"abc\"\nsecret_access_key = \"inline\"",
        ] {
            assert!(
                Config::from_toml(&format!("[quarantine.s3]\n{bad}\n")).is_err(),
                "{bad}"
            );
        }
        assert!(
            Config::from_toml(
                "[quarantine.s3]\nbucket = \"abc\"\nendpoint = \"http://minio:9000\"\nallow_http = true\n"
            )
            .is_ok()
        );
    }

    #[test]
    fn webhooks_are_checked_and_secrets_decoded() {
        let ok = Config::from_toml(
            "[[webhooks]]\nname = \"siem\"\nurl = \"https://siem.example/x\"\n\
             secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\", \"a-plain-secret-of-24-bytes\"]\n\
             actions = [\"quarantine\"]\nmin_score = 5\n",
        )
        .unwrap();
        let w = &ok.webhooks[0];
        assert_eq!(w.secrets[0].len(), 24, "whsec_ is base64");
        assert_eq!(w.secrets[1], b"a-plain-secret-of-24-bytes");
        assert!(w.filter.wants(Some(Action::Quarantine), Some(5)));
        assert!(!w.filter.wants(Some(Action::Quarantine), Some(4)));
        assert!(!w.filter.wants(Some(Action::Accept), Some(50)));
        assert!(
            !format!("{w:?}").contains("plain"),
            "secrets stay out of logs"
        );
        for (bad, why) in [
            ("url = \"ftp://x\"\nsecret = \"0123456789abcdef\"", "http"),
            ("url = \"http://x\"", "secret"),
            ("url = \"http://x\"\nsecret = \"short\"", "16 bytes"),
            ("url = \"http://x\"\nsecret = \"whsec_!!\"", "base64"),
            (
                "url = \"http://x\"\nsecret = \"0123456789abcdef\"\nactions = [\"maybe\"]",
                "action",
            ),
        ] {
            let err = Config::from_toml(&format!("[[webhooks]]\nname = \"w\"\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let twice =
            "[[webhooks]]\nname = \"w\"\nurl = \"http://x\"\nsecret = \"0123456789abcdef\"\n";
        assert!(Config::from_toml(&format!("{twice}{twice}")).is_err());
        let off = Config::from_toml("[events]\naudit_log = \"\"\n").unwrap();
        assert_eq!(off.events.audit_log, None);
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
        assert!(!c.legacy_hashes);
        let c = Config::from_toml("[identify]\nlegacy_hashes = true").unwrap();
        assert!(c.legacy_hashes);
        assert!(Config::from_toml("[server]\nlisten = [\"localhost\"]").is_err());
        assert!(Config::from_toml("[server]\nlisten = []").is_err());
        assert!(Config::from_toml("[server]\nmax_body_bytes = 0").is_err());
        // zstd needs room for the compressed and the decoded body at once.
        assert!(
            Config::from_toml("[server]\nmax_body_bytes = 1000\nmax_inflight_bytes = 1999")
                .is_err()
        );
        assert!(Config::from_toml("[auth]\nhook_networks = [\"10.0.0.0/33\"]").is_err());
        assert!(Config::from_toml("[auth]\nhook_token_sha256 = \"abc\"").is_err());
        assert!(Config::from_toml("[doors]\nquarantine_signal = \"bounce\"").is_err());
        let err =
            Config::from_toml("[[auth.tokens]]\nname = \"x\"\nrole = \"root\"\nsha256 = \"00\"")
                .unwrap_err();
        assert!(err.to_string().contains("root"), "{err}");
    }

    #[test]
    fn networks_match_v4_v6_and_mapped_addresses() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("192.0.2.1".parse().unwrap()));
        let six: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(six.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!six.contains("2001:db9::5".parse().unwrap()));
        let host: Cidr = "::1".parse().unwrap();
        assert!(host.contains("::1".parse().unwrap()));
        let loopback = default_hook_networks();
        assert!(
            loopback
                .iter()
                .any(|n| n.contains("127.0.0.1".parse().unwrap()))
        );
        assert!(
            !loopback
                .iter()
                .any(|n| n.contains("192.0.2.1".parse().unwrap()))
        );
    }
}
