//! The typed vocabulary every stage and door shares: what came in
//! (`Submission`), what was found inside (`Object`, `Outcome`), why it matters
//! (`Finding`) and what to do about it (`Verdict`, `Action`).
//!
//! Nothing here is a string that code matches on: verdicts, outcomes and
//! finding kinds are enums, serialised to stable lower-case names for JSON.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The SMTP envelope as the MTA saw it. Every field is optional because the
/// CLI and file doors have no envelope at all.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Envelope {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail_from: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rcpt_to: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    /// The SMTP AUTH identity of the sender, when the MTA passes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_user: Option<String>,
}

/// How the root bytes are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// An RFC 5322 message: parsed as MIME even if it does not look like one.
    Mail,
    /// Any file: identified by its bytes and unpacked if it is a container.
    File,
}

/// One thing to inspect: raw bytes plus whatever the door knows about them.
#[derive(Debug, Clone)]
pub struct Submission {
    pub kind: InputKind,
    pub envelope: Envelope,
    /// File name of a file submission (used for extension checks).
    pub name: Option<String>,
    /// Shared so a door can keep the bytes (for quarantine) while a worker
    /// inspects them, without a copy.
    pub raw: Arc<[u8]>,
}

impl Submission {
    pub fn mail(raw: impl Into<Arc<[u8]>>) -> Self {
        Submission {
            kind: InputKind::Mail,
            envelope: Envelope::default(),
            name: None,
            raw: raw.into(),
        }
    }

    pub fn file(name: Option<String>, raw: impl Into<Arc<[u8]>>) -> Self {
        Submission {
            kind: InputKind::File,
            envelope: Envelope::default(),
            name,
            raw: raw.into(),
        }
    }
}

/// What the gateway tells the MTA to do. Ordered by severity so the strongest
/// reason wins with `max`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Accept,
    /// Deliver, with headers (and optionally a subject prefix) saying why.
    Tag,
    /// Hold the message for review instead of delivering it.
    Quarantine,
    /// Ask the MTA to retry later: the gateway could not decide.
    #[serde(rename = "tempfail")]
    TempFail,
    Reject,
    /// Accept and silently drop. Strongest, because it loses mail on purpose.
    Discard,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Accept,
        Action::Tag,
        Action::Quarantine,
        Action::TempFail,
        Action::Reject,
        Action::Discard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Tag => "tag",
            Action::Quarantine => "quarantine",
            Action::TempFail => "tempfail",
            Action::Reject => "reject",
            Action::Discard => "discard",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which hard limit stopped the unpacking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Depth,
    Objects,
    ObjectBytes,
    TotalBytes,
    Ratio,
    Time,
    ScanTimeout,
    /// The submission itself was larger than a door accepts; never read.
    MessageBytes,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Depth => "depth",
            LimitKind::Objects => "objects",
            LimitKind::ObjectBytes => "object_bytes",
            LimitKind::TotalBytes => "total_bytes",
            LimitKind::Ratio => "ratio",
            LimitKind::Time => "time",
            LimitKind::ScanTimeout => "scan_timeout",
            LimitKind::MessageBytes => "message_bytes",
        }
    }
}

/// What happened to one object: was its content fully looked at?
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Outcome {
    /// Hashed, scanned, and unpacked if it was a container.
    Scanned,
    /// Same sha256 as an earlier object of this message: its findings stand
    /// for this one too, it was not unpacked or scanned again.
    Duplicate { of: usize },
    /// Known good by an allow hash list: not scanned or unpacked.
    Allowed,
    /// A limit stopped us; content (or part of it) was not looked at.
    Limit { limit: LimitKind },
    /// Password protected: listed by name, content unreadable.
    Encrypted,
    /// A container we could not open (corrupt, truncated, lying headers).
    Malformed { error: String },
    /// A container format we recognise but do not unpack.
    Unsupported { format: String },
}

/// One node of the unpack tree. Objects are kept in a flat list in discovery
/// order; `parent` indexes into that list, so the tree can be as deep as the
/// limits allow without recursion anywhere (serialisation included).
#[derive(Debug, Clone, Serialize)]
pub struct Object {
    pub id: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<usize>,
    pub depth: u32,
    /// Human-readable path from the root, e.g. `message > invoice.zip > a.exe`.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_type: Option<String>,
    /// Type by content (magic bytes and our own sniffers).
    pub true_type: String,
    pub size: u64,
    /// Absent only for encrypted entries, whose content was never read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Absent for the raw message itself (see `identify::hashes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    pub outcome: Outcome,
}

/// Why a finding was raised.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FindingKind {
    Yara {
        namespace: String,
        rule: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tags: Vec<String>,
    },
    HashList {
        list: String,
        algorithm: String,
        hash: String,
    },
    /// Content type by magic disagrees with the declared type or extension.
    TypeMismatch {
        declared: String,
        detected: String,
    },
    /// An executable or script that presents itself as a document or image.
    DisguisedExecutable {
        detected: String,
    },
    DoubleExtension,
    /// Bidi overrides or zero-width characters in a file name.
    DeceptiveName {
        characters: Vec<String>,
    },
    DangerousExtension {
        extension: String,
    },
    Encrypted,
    /// Encrypted content opened with a password found in the message
    /// itself: the classic way to carry a payload past gateways.
    Decrypted {
        format: String,
        password: String,
    },
    /// A container that different readers would see differently.
    AmbiguousArchive {
        reason: String,
    },
    Limit {
        limit: LimitKind,
    },
    /// A container that could not be opened.
    Unopenable {
        format: String,
    },
    /// Sloppy MIME that still parsed.
    MalformedMime {
        detail: String,
    },
}

impl FindingKind {
    /// A short stable name, used as the rspamd symbol and in headers.
    pub fn name(&self) -> String {
        match self {
            // Rule names are what security teams search for; the namespace
            // (the file) is in the finding for when two files reuse a name.
            FindingKind::Yara { rule, .. } => rule.clone(),
            FindingKind::HashList { list, .. } => format!("HASH_{}", list.to_uppercase()),
            FindingKind::TypeMismatch { .. } => "TYPE_MISMATCH".into(),
            FindingKind::DisguisedExecutable { .. } => "DISGUISED_EXECUTABLE".into(),
            FindingKind::DoubleExtension => "DOUBLE_EXTENSION".into(),
            FindingKind::DeceptiveName { .. } => "DECEPTIVE_NAME".into(),
            FindingKind::DangerousExtension { .. } => "DANGEROUS_EXTENSION".into(),
            FindingKind::Encrypted => "ENCRYPTED".into(),
            FindingKind::Decrypted { .. } => "DECRYPTED".into(),
            FindingKind::AmbiguousArchive { .. } => "AMBIGUOUS_ARCHIVE".into(),
            FindingKind::Limit { limit } => format!("LIMIT_{}", limit.as_str().to_uppercase()),
            FindingKind::Unopenable { .. } => "UNOPENABLE".into(),
            FindingKind::MalformedMime { .. } => "MALFORMED_MIME".into(),
        }
    }
}

/// Something that makes a message suspicious, tied to the object it is about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    #[serde(flatten)]
    pub kind: FindingKind,
    /// Index of the object in the report's object list.
    pub object: usize,
    /// Copy of that object's path so a finding reads on its own.
    pub path: String,
    pub score: i32,
    /// An action the finding asks for on its own, whatever the total score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Monitor-mode findings are reported and counted but never enforced.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub monitor: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A header change a door applies on the way through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Modification {
    AddHeader {
        name: String,
        value: String,
    },
    RemoveHeader {
        name: String,
    },
    /// Prefix the Subject (tagging); doors without subject rewriting add a
    /// header instead.
    PrefixSubject {
        prefix: String,
    },
}

/// An SMTP reply for reject and tempfail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub code: u16,
    pub enhanced: String,
    pub text: String,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text)
    }
}

/// The decision for one submission and the reasons behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Verdict {
    pub action: Action,
    /// Sum of the scores of the enforced (non-monitor) findings.
    pub score: i32,
    /// Index of the finding that decided the action, if any did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deciding_finding: Option<usize>,
    /// Path of the object whose finding decided the action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deciding_path: Option<String>,
    /// One line a person can read: what decided and why.
    pub summary: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modifications: Vec<Modification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_reply: Option<Reply>,
}

/// The way a submission came in. Metrics, logs and (later) events are
/// labelled with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Door {
    /// `POST /v1/check`
    Native,
    /// `POST /v1/scan`
    Scan,
    /// rspamd protocol: `/checkv2`, `/check`, `/symbols`
    Rspamd,
    /// `POST /mta-hooks`
    MtaHooks,
    /// Sendmail milter protocol (Postfix, Sendmail)
    Milter,
}

impl Door {
    pub const ALL: [Door; 5] = [
        Door::Native,
        Door::Scan,
        Door::Rspamd,
        Door::MtaHooks,
        Door::Milter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Door::Native => "native",
            Door::Scan => "scan",
            Door::Rspamd => "rspamd",
            Door::MtaHooks => "mta_hooks",
            Door::Milter => "milter",
        }
    }
}

impl fmt::Display for Door {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
