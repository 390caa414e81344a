//! Durable state: the quarantine. Raw messages in a content-addressed blob
//! store ([`blobs`]: a local folder, or an S3-compatible bucket), everything operators search, and every state change
//! with who made it, in a SQL index ([`db`]): SQLite by default, PostgreSQL
//! when several gateways share one queue. The same SQL runs on both.
//!
//! The order of writes is what keeps mail safe: the blob is durable
//! (fsynced, or acknowledged by the object store) before its row is committed, and the row is committed before
//! any door answers "quarantined". A crash in between leaves at worst an
//! unreferenced blob, never a row without its message.

pub mod blobs;
pub mod db;
pub mod events;

use crate::model::{Door, Envelope};
use crate::pipeline::Report;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use blobs::Blobs;
pub use db::{Db, ListQuery, Sort};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stored message {0} does not match its sha256: damaged in storage")]
    Corrupt(String),
    #[error("stored message {0} is not in the blob store (removed, or never written)")]
    Missing(String),
    #[error("object store: {0}")]
    Object(Box<object_store::Error>),
    #[error("not a blob key: {0:?}")]
    BadKey(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("unsupported database URL {0:?}: use sqlite:PATH or postgres://…")]
    Url(String),
    #[error("background task failed: {0}")]
    Task(String),
}

/// Where a message is in its life. `Held` and `ReleaseRequested` are the
/// review queue; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Held,
    /// A recipient asked for a message too dangerous to release on their
    /// own say; an operator approves or denies.
    ReleaseRequested,
    Released,
    Deleted,
    Expired,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Held,
        State::ReleaseRequested,
        State::Released,
        State::Deleted,
        State::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Held => "held",
            State::ReleaseRequested => "release_requested",
            State::Released => "released",
            State::Deleted => "deleted",
            State::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        let s = s.trim().replace('-', "_");
        State::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(&s))
    }

    /// Still in the review queue: can be released or deleted.
    pub fn is_open(self) -> bool {
        matches!(self, State::Held | State::ReleaseRequested)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Each recipient of a held message is released on their own (a
/// recipient's link releases to that recipient only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    Held,
    ReleaseRequested,
    /// Claimed by a release in progress: nobody else may send it.
    Releasing,
    Released,
}

impl RecipientState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientState::Held => "held",
            RecipientState::ReleaseRequested => "release_requested",
            RecipientState::Releasing => "releasing",
            RecipientState::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<RecipientState> {
        [
            RecipientState::Held,
            RecipientState::ReleaseRequested,
            RecipientState::Releasing,
            RecipientState::Released,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// How a change was made, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A door quarantined it.
    Door,
    Api,
    Ui,
    /// A recipient's release link.
    Link,
    Cli,
    /// Retention, start-up recovery.
    System,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Door => "door",
            Via::Api => "api",
            Via::Ui => "ui",
            Via::Link => "link",
            Via::Cli => "cli",
            Via::System => "system",
        }
    }
}

/// Who made a change: a user or token name, a recipient address, or
/// `system`; and from which network address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub name: String,
    pub via: Via,
    pub address: Option<String>,
}

impl Actor {
    pub fn system() -> Actor {
        Actor {
            name: "system".into(),
            via: Via::System,
            address: None,
        }
    }
}

/// What happened, as the audit trail names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Quarantined,
    Released,
    ReleaseFailed,
    ReleaseRequested,
    Approved,
    Denied,
    Deleted,
    Expired,
    /// A release interrupted by a crash, put back in the queue.
    Recovered,
    /// Raw bytes downloaded (no state change; security teams want to know).
    Downloaded,
    /// A retro-scan found that the current rules would deliver it.
    RetroCandidate,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Quarantined => "quarantined",
            Event::Released => "released",
            Event::ReleaseFailed => "release_failed",
            Event::ReleaseRequested => "release_requested",
            Event::Approved => "approved",
            Event::Denied => "denied",
            Event::Deleted => "deleted",
            Event::Expired => "expired",
            Event::Recovered => "recovered",
            Event::Downloaded => "downloaded",
            Event::RetroCandidate => "retro_candidate",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Recipient {
    pub address: String,
    pub state: RecipientState,
}

/// A row of the review queue.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub id: String,
    pub received_ms: i64,
    pub expires_ms: i64,
    pub state: State,
    pub door: String,
    pub action: String,
    pub score: i64,
    pub sender: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub sha256: String,
    pub size: i64,
    /// The finding that decided the verdict.
    pub rule: Option<String>,
    pub summary: String,
    pub rules_version: String,
    /// Set when a later rule set would let this message through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_candidate: Option<Candidate>,
    pub recipients: Vec<Recipient>,
}

/// What a retro-scan found: the rule set that would deliver the message,
/// and with which action.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Candidate {
    pub rules_version: String,
    pub action: String,
}

impl Candidate {
    /// For people: "rules V would deliver it" (or "tag and deliver").
    pub fn describe(&self) -> String {
        let what = if self.action == "tag" {
            "tag and deliver"
        } else {
            "deliver"
        };
        format!("rules {} would {what} it", self.rules_version)
    }
}

/// One line of a message's audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub message_id: String,
    pub at_ms: i64,
    pub event: String,
    pub actor: String,
    pub via: String,
    pub address: Option<String>,
    pub recipient: Option<String>,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub detail: Option<String>,
}

/// A finding as the index keeps it: enough to filter by rule and to judge
/// whether a recipient may release the message alone.
#[derive(Debug, Clone, Serialize)]
pub struct StoredFinding {
    pub rule: String,
    pub path: String,
    pub severity: Option<String>,
    pub action: Option<String>,
    pub monitor: bool,
}

/// Everything about one quarantined message.
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    #[serde(flatten)]
    pub summary: Summary,
    pub client_ip: Option<String>,
    pub helo: Option<String>,
    pub queue_id: Option<String>,
    pub envelope: serde_json::Value,
    pub findings: Vec<StoredFinding>,
    /// The full verdict report, with the unpack tree.
    pub report: serde_json::Value,
    pub audit: Vec<AuditEntry>,
}

/// The quarantine: blobs plus index.
pub struct Store {
    pub blobs: Blobs,
    pub db: Db,
    /// Blob removal and blob reuse must not interleave: a message being
    /// quarantined may find its blob already present (same bytes held
    /// before) just as the last row pointing at it is purged. Writers of
    /// new rows hold this shared; the purge holds it exclusively.
    gc: tokio::sync::RwLock<()>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the blob directory and the database, and
    /// brings the schema up to date.
    pub async fn open(
        data_dir: &Path,
        database: Option<&str>,
        s3: Option<&crate::config::S3Config>,
    ) -> Result<Store, StoreError> {
        // The database, the secret and the audit log live here whatever
        // holds the blobs.
        tokio::fs::create_dir_all(data_dir)
            .await
            .map_err(|source| StoreError::Io {
                what: "creating",
                path: data_dir.to_owned(),
                source,
            })?;
        let blobs = Blobs::open(data_dir, s3).await?;
        let url = match database {
            Some(url) => url.to_string(),
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("portcullis.db").display()
            ),
        };
        let db = Db::connect(&url).await?;
        Ok(Store {
            blobs,
            db,
            gc: tokio::sync::RwLock::new(()),
        })
    }

    /// Stores a quarantined message: blob first (durable), then its row.
    /// Returns the id once both are committed.
    pub async fn quarantine(
        self: &Arc<Self>,
        raw: Arc<[u8]>,
        envelope: &Envelope,
        door: Door,
        report: &Report,
        retention: Duration,
    ) -> Result<String, StoreError> {
        let _shared = self.gc.read().await;
        let sha256 = blobs::digest(Arc::clone(&raw)).await?;
        let received = now_ms();
        let id = new_id(received, &sha256);
        let subject = crate::doors::header_value(&raw, "subject").map(|s| clip(&s, 998));
        let message_id = crate::doors::header_value(&raw, "message-id").map(|s| clip(&s, 998));
        self.db
            .insert(
                db::NewMessage {
                    id: &id,
                    received_ms: received,
                    expires_ms: received.saturating_add(retention.as_millis() as i64),
                    door: door.as_str(),
                    envelope,
                    subject: subject.as_deref(),
                    message_id: message_id.as_deref(),
                    sha256: &sha256,
                    size: raw.len() as i64,
                    report,
                },
                self.blobs.put(&sha256, Arc::clone(&raw)),
            )
            .await?;
        Ok(id)
    }

    /// The raw message, checked against its sha256.
    pub async fn raw(self: &Arc<Self>, sha256: &str) -> Result<Vec<u8>, StoreError> {
        self.blobs.get(sha256).await
    }

    /// The start of the raw message, for display (see [`Blobs::head`]).
    pub async fn raw_head(
        self: &Arc<Self>,
        sha256: &str,
        max: usize,
    ) -> Result<Vec<u8>, StoreError> {
        self.blobs.head(sha256, max).await
    }

    /// Removes the blob behind `sha256` if no row that still needs it is
    /// left (deleted, expired and purged rows do not).
    pub async fn collect(self: &Arc<Self>, sha256: &str) -> Result<bool, StoreError> {
        let _exclusive = self.gc.write().await;
        self.db
            .collect_blob(sha256, self.blobs.remove(sha256))
            .await
    }

    /// Deletes a held message: final, audited, blob removed when unused.
    pub async fn delete(self: &Arc<Self>, id: &str, actor: &Actor) -> Result<Change, StoreError> {
        let change = self
            .db
            .close(id, State::Deleted, Event::Deleted, actor)
            .await?;
        if let Change::Done { sha256, .. } = &change {
            self.collect(sha256).await?;
        }
        Ok(change)
    }

    /// Retention: expires every open message past its time, and purges the
    /// blobs of released messages past theirs. Returns how many expired.
    pub async fn sweep(self: &Arc<Self>, now: i64) -> Result<usize, StoreError> {
        let mut expired = 0;
        for (id, _) in self.db.due(now, true).await? {
            if let Change::Done { sha256, .. } = self
                .db
                .close(&id, State::Expired, Event::Expired, &Actor::system())
                .await?
            {
                expired += 1;
                self.collect(&sha256).await?;
            }
        }
        for (id, sha256) in self.db.due(now, false).await? {
            self.db.mark_purged(&id, now).await?;
            self.collect(&sha256).await?;
        }
        Ok(expired)
    }
}

/// What a state change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Done {
        from: State,
        sha256: String,
    },
    NotFound,
    /// Not possible from the message's current state.
    Conflict(State),
}

fn new_id(received_ms: i64, sha256: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut rnd = [0u8; 6];
    // Unique across processes sharing one database (several nodes, or a
    // restart within the same millisecond), not just within this one.
    let _ = getrandom::fill(&mut rnd);
    format!(
        "{received_ms:013}-{}-{}{:02x}",
        &sha256[..12],
        hex::encode(rnd),
        COUNTER.fetch_add(1, Ordering::Relaxed) & 0xff
    )
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Calendar date and time of Unix milliseconds, UTC: (year, month, day,
/// hour, minute, second, millisecond).
fn civil(ms: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000),
    )
}

/// `2026-11-27 12:30:45 UTC` from Unix milliseconds (for people).
pub fn format_utc(ms: i64) -> String {
    let (y, m, d, hh, mm, ss, _) = civil(ms);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} UTC")
}

/// `2026-11-27T12:30:45.678Z` from Unix milliseconds (RFC 3339, for
/// machines: events).
pub fn format_rfc3339(ms: i64) -> String {
    let (y, m, d, hh, mm, ss, milli) = civil(ms);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_795_782_645_000), "2026-11-27 12:30:45 UTC");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            format_rfc3339(1_795_782_645_678),
            "2026-11-27T12:30:45.678Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn states_parse_with_either_separator() {
        assert_eq!(
            State::parse("release-requested"),
            Some(State::ReleaseRequested)
        );
        assert_eq!(State::parse("HELD"), Some(State::Held));
        assert_eq!(State::parse("gone"), None);
    }
}
