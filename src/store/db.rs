//! The quarantine index through sqlx's `Any` driver, so one set of queries
//! serves SQLite (embedded default) and PostgreSQL (shared). The SQL stays
//! in the dialect both speak: `$N` parameters, `BIGINT`/`TEXT` columns,
//! times as Unix milliseconds, no `RETURNING` on rows we do not own.
//!
//! Concurrency rule: every state change is a conditional `UPDATE … WHERE
//! state IN (…)` and checks how many rows it touched, so two operators (or
//! an operator and a recipient's link, or two nodes) can never both release
//! or release-and-delete the same message.

use super::{
    Actor, AuditEntry, Change, Detail, Event, Recipient, RecipientState, State, StoreError,
    StoredFinding, Summary, now_ms,
};
use crate::model::Envelope;
use crate::pipeline::Report;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::time::Duration;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// `pg_advisory_xact_lock(BLOB_LOCK_SPACE, key)`: "port" as 32 bits.
const BLOB_LOCK_SPACE: i32 = 0x706f_7274;

pub struct Db {
    pub(super) pool: AnyPool,
    pub backend: Backend,
}

pub(super) struct NewMessage<'a> {
    pub id: &'a str,
    pub received_ms: i64,
    pub expires_ms: i64,
    pub door: &'a str,
    pub envelope: &'a Envelope,
    pub subject: Option<&'a str>,
    pub message_id: Option<&'a str>,
    pub sha256: &'a str,
    pub size: i64,
    pub report: &'a Report,
}

/// How the queue is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Received,
    Score,
    Size,
    Sender,
    Subject,
    Expires,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Sort> {
        Some(match s {
            "received" => Sort::Received,
            "score" => Sort::Score,
            "size" => Sort::Size,
            "sender" => Sort::Sender,
            "subject" => Sort::Subject,
            "expires" => Sort::Expires,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            Sort::Received => "m.received_ms",
            Sort::Score => "m.score",
            Sort::Size => "m.size",
            Sort::Sender => "m.sender",
            Sort::Subject => "m.subject",
            Sort::Expires => "m.expires_ms",
        }
    }
}

/// Filters for the review queue. Text filters match a part of the value,
/// ignoring case; all given filters must hold.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub recipient: Option<String>,
    pub sender: Option<String>,
    /// A finding's rule name (exact, ignoring case).
    pub rule: Option<String>,
    pub action: Option<String>,
    pub states: Vec<State>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Text in the subject.
    pub text: Option<String>,
    /// Only release candidates found by a retro-scan.
    pub candidates: bool,
    pub sort: Sort,
    pub ascending: bool,
    pub limit: u32,
    pub offset: u64,
}

pub const MAX_PAGE: u32 = 500;
/// Paging deeper than this is a search that should use filters.
pub const MAX_OFFSET: u64 = 1_000_000_000;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Page {
    pub total: i64,
    pub offset: u64,
    pub limit: u32,
    pub items: Vec<Summary>,
}

enum Arg {
    S(String),
    I(i64),
}

/// `%text%` for LIKE, with LIKE's own wildcards in `text` taken literally.
fn contains(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Db {
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Url(url.to_string()));
        };
        // A configured SQLite path is created on first start, like the default.
        let url = if backend == Backend::Sqlite && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        } else {
            url.to_string()
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers (the UI) run beside the writer;
                        // FULL makes every commit durable before the door
                        // answers; writers queue rather than fail.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = FULL",
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA busy_timeout = 10000",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        match backend {
            Backend::Sqlite => SQLITE.run(&pool).await?,
            Backend::Postgres => POSTGRES.run(&pool).await?,
        }
        Ok(Db { pool, backend })
    }

    /// Takes the lock on one blob for the rest of `tx` (PostgreSQL; with
    /// SQLite there is one node and the store's in-process lock does it).
    /// Writers of rows pointing at a blob hold it shared while they write
    /// the blob and the row; removing a blob holds it exclusively from the
    /// "nothing uses it" check to the removal. Without it, node B could
    /// find a blob unused and remove it just as node A, quarantining the
    /// same bytes again, wrote it and was about to commit its row.
    async fn lock_blob(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        sha256: &str,
        exclusive: bool,
    ) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        // The two-key form is a lock space of its own, apart from the
        // events' one-key lock. A collision of 32-bit keys only makes two
        // unrelated blobs wait for each other.
        let key = u32::from_str_radix(sha256.get(..8).unwrap_or("0"), 16).unwrap_or(0) as i32;
        let sql = if exclusive {
            "SELECT pg_advisory_xact_lock($1, $2)"
        } else {
            "SELECT pg_advisory_xact_lock_shared($1, $2)"
        };
        sqlx::query(sql)
            .bind(BLOB_LOCK_SPACE)
            .bind(key)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Inserts a held message's rows; `write_blob` runs first (on
    /// PostgreSQL inside the transaction, under the blob's lock), and the
    /// rows are committed only when it succeeded.
    pub(super) async fn insert(
        &self,
        m: NewMessage<'_>,
        write_blob: impl std::future::Future<Output = Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        let v = &m.report.verdict;
        let rule = v
            .deciding_finding
            .and_then(|i| m.report.findings.get(i))
            .map(|f| f.kind.name());
        let envelope = serde_json::to_string(m.envelope)?;
        let report = serde_json::to_string(m.report)?;
        let mut tx = if self.backend == Backend::Postgres {
            let mut tx = self.pool.begin().await?;
            self.lock_blob(&mut tx, m.sha256, false).await?;
            write_blob.await?;
            tx
        } else {
            // One node: the store's in-process lock keeps collection out,
            // and the blob's fsync need not hold one of SQLite's few
            // pooled connections.
            write_blob.await?;
            self.pool.begin().await?
        };
        sqlx::query(
            "INSERT INTO messages (id, received_ms, expires_ms, updated_ms, state, door, action, \
             score, sender, subject, message_id, client_ip, helo, queue_id, sha256, size, rule, \
             summary, rules_version, envelope, report) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
             $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
        )
        .bind(m.id)
        .bind(m.received_ms)
        .bind(m.expires_ms)
        .bind(m.received_ms)
        .bind(State::Held.as_str())
        .bind(m.door)
        .bind(v.action.as_str())
        .bind(i64::from(v.score))
        .bind(m.envelope.mail_from.clone())
        .bind(m.subject.map(str::to_string))
        .bind(m.message_id.map(str::to_string))
        .bind(m.envelope.client_ip.clone())
        .bind(m.envelope.helo.clone())
        .bind(m.envelope.queue_id.clone())
        .bind(m.sha256)
        .bind(m.size)
        .bind(rule)
        .bind(v.summary.as_str())
        .bind(m.report.rules_version.as_str())
        .bind(envelope)
        .bind(report)
        .execute(&mut *tx)
        .await?;
        let mut seen = std::collections::HashSet::new();
        for rcpt in &m.envelope.rcpt_to {
            // RCPT TO twice for one address is one recipient.
            if !seen.insert(rcpt.to_lowercase()) {
                continue;
            }
            sqlx::query(
                "INSERT INTO recipients (message_id, address, state, updated_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(m.id)
            .bind(rcpt.as_str())
            .bind(RecipientState::Held.as_str())
            .bind(m.received_ms)
            .execute(&mut *tx)
            .await?;
        }
        for (position, f) in m.report.findings.iter().enumerate() {
            sqlx::query(
                "INSERT INTO findings (message_id, position, rule, path, severity, action, monitor) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(m.id)
            .bind(position as i64)
            .bind(f.kind.name())
            .bind(f.path.as_str())
            .bind(f.severity.clone())
            .bind(f.action.map(|a| a.as_str().to_string()))
            .bind(i64::from(f.monitor))
            .execute(&mut *tx)
            .await?;
        }
        audit(
            &mut tx,
            m.id,
            m.received_ms,
            Event::Quarantined,
            &Actor {
                name: m.door.to_string(),
                via: super::Via::Door,
                address: m.envelope.client_ip.clone(),
            },
            None,
            None,
            Some(State::Held),
            Some(v.summary.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut args: Vec<Arg> = Vec::new();
        let mut push = |clause: &str, arg: Arg, args: &mut Vec<Arg>| {
            args.push(arg);
            clauses.push(clause.replace("{}", &format!("${}", args.len())));
        };
        if let Some(r) = q.recipient.as_deref().filter(|s| !s.is_empty()) {
            push(
                "EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id \
                 AND LOWER(r.address) LIKE {} ESCAPE '\\')",
                Arg::S(contains(r)),
                &mut args,
            );
        }
        if let Some(s) = q.sender.as_deref().filter(|s| !s.is_empty()) {
            push(
                "LOWER(m.sender) LIKE {} ESCAPE '\\'",
                Arg::S(contains(s)),
                &mut args,
            );
        }
        if let Some(rule) = q.rule.as_deref().filter(|s| !s.is_empty()) {
            push(
                "EXISTS (SELECT 1 FROM findings f WHERE f.message_id = m.id \
                 AND LOWER(f.rule) = {})",
                Arg::S(rule.to_lowercase()),
                &mut args,
            );
        }
        if let Some(a) = q.action.as_deref().filter(|s| !s.is_empty()) {
            push("m.action = {}", Arg::S(a.to_lowercase()), &mut args);
        }
        if let Some(t) = q.text.as_deref().filter(|s| !s.is_empty()) {
            push(
                "LOWER(m.subject) LIKE {} ESCAPE '\\'",
                Arg::S(contains(t)),
                &mut args,
            );
        }
        if let Some(since) = q.since_ms {
            push("m.received_ms >= {}", Arg::I(since), &mut args);
        }
        if let Some(until) = q.until_ms {
            push("m.received_ms < {}", Arg::I(until), &mut args);
        }
        if q.candidates {
            clauses.push("m.retro_action IS NOT NULL".into());
        }
        if !q.states.is_empty() {
            let mut ors = Vec::new();
            for st in &q.states {
                args.push(Arg::S(st.as_str().to_string()));
                ors.push(format!("m.state = ${}", args.len()));
            }
            clauses.push(format!("({})", ors.join(" OR ")));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let count_sql = format!("SELECT COUNT(*) AS n FROM messages m{filter}");
        let total: i64 = bind_all(sqlx::query(sqlx::AssertSqlSafe(count_sql)), &args)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let limit = q.limit.clamp(1, MAX_PAGE);
        let offset = q.offset.min(MAX_OFFSET);
        let dir = if q.ascending { "ASC" } else { "DESC" };
        // The id breaks ties so paging is stable.
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM messages m{filter} ORDER BY {} {dir}, m.id {dir} \
             LIMIT {limit} OFFSET {}",
            q.sort.column(),
            offset
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &args)
            .fetch_all(&self.pool)
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push(summary(row)?);
        }
        self.fill_recipients(&mut items).await?;
        Ok(Page {
            total,
            offset,
            limit,
            items,
        })
    }

    /// The recipients of a page of messages, in one query.
    async fn fill_recipients(&self, items: &mut [Summary]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let marks: Vec<String> = (1..=items.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT message_id, address, state FROM recipients WHERE message_id IN ({}) \
             ORDER BY message_id, address",
            marks.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for item in items.iter() {
            q = q.bind(item.id.as_str());
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut by_id: std::collections::HashMap<String, Vec<Recipient>> =
            std::collections::HashMap::new();
        for r in &rows {
            by_id
                .entry(r.try_get("message_id")?)
                .or_default()
                .push(recipient(r)?);
        }
        for item in items.iter_mut() {
            item.recipients = by_id.remove(&item.id).unwrap_or_default();
        }
        Ok(())
    }

    pub async fn recipients(&self, id: &str) -> Result<Vec<Recipient>, StoreError> {
        fetch_recipients(&self.pool, id).await
    }

    pub async fn summary(&self, id: &str) -> Result<Option<Summary>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM messages m WHERE m.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut s = summary(&row)?;
        s.recipients = self.recipients(id).await?;
        Ok(Some(s))
    }

    pub async fn detail(&self, id: &str) -> Result<Option<Detail>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS}, m.client_ip, m.helo, m.queue_id, m.envelope, m.report \
             FROM messages m WHERE m.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut s = summary(&row)?;
        s.recipients = self.recipients(id).await?;
        let envelope: String = row.try_get("envelope")?;
        let report: String = row.try_get("report")?;
        Ok(Some(Detail {
            summary: s,
            client_ip: row.try_get("client_ip")?,
            helo: row.try_get("helo")?,
            queue_id: row.try_get("queue_id")?,
            envelope: serde_json::from_str(&envelope)?,
            findings: self.findings(id).await?,
            report: serde_json::from_str(&report)?,
            audit: self.audit(id).await?,
        }))
    }

    pub async fn findings(&self, id: &str) -> Result<Vec<StoredFinding>, StoreError> {
        let rows = sqlx::query(
            "SELECT rule, path, severity, action, monitor FROM findings WHERE message_id = $1 \
             ORDER BY position",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredFinding {
                    rule: r.try_get("rule")?,
                    path: r.try_get("path")?,
                    severity: r.try_get("severity")?,
                    action: r.try_get("action")?,
                    monitor: r.try_get::<i64, _>("monitor")? != 0,
                })
            })
            .collect()
    }

    pub async fn audit(&self, id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, message_id, at_ms, event, actor, via, address, recipient, from_state, \
             to_state, detail FROM audit WHERE message_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    seq: r.try_get("seq")?,
                    message_id: r.try_get("message_id")?,
                    at_ms: r.try_get("at_ms")?,
                    event: r.try_get("event")?,
                    actor: r.try_get("actor")?,
                    via: r.try_get("via")?,
                    address: r.try_get("address")?,
                    recipient: r.try_get("recipient")?,
                    from_state: r.try_get("from_state")?,
                    to_state: r.try_get("to_state")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Moves an open message to a final state (deleted, expired).
    pub(super) async fn close(
        &self,
        id: &str,
        to: State,
        event: Event,
        actor: &Actor,
    ) -> Result<Change, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let Some((from, sha256)) = state_of(&mut tx, id).await? else {
            return Ok(Change::NotFound);
        };
        // Recipients mid-release belong to that release; it finishes first.
        let busy: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM recipients WHERE message_id = $1 AND state = $2",
        )
        .bind(id)
        .bind(RecipientState::Releasing.as_str())
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if !from.is_open() || busy > 0 {
            return Ok(Change::Conflict(from));
        }
        let done = sqlx::query(
            "UPDATE messages SET state = $1, updated_ms = $2, purged_ms = $2 \
             WHERE id = $3 AND state IN ($4, $5)",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(id)
        .bind(State::Held.as_str())
        .bind(State::ReleaseRequested.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done != 1 {
            return Ok(Change::Conflict(from));
        }
        audit(
            &mut tx,
            id,
            now,
            event,
            actor,
            None,
            Some(from),
            Some(to),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(Change::Done { from, sha256 })
    }

    /// Claims recipients for a release: each named recipient (or every
    /// open one when `only` is None) in `from` states moves to
    /// `releasing`, owned by `claim_id`. Returns the claimed addresses;
    /// empty when there was nothing to take.
    pub async fn claim(
        &self,
        id: &str,
        only: Option<&[String]>,
        from: &[RecipientState],
        claim_id: &str,
    ) -> Result<Result<Vec<String>, Change>, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let Some((state, _)) = state_of(&mut tx, id).await? else {
            return Ok(Err(Change::NotFound));
        };
        if !state.is_open() {
            return Ok(Err(Change::Conflict(state)));
        }
        let mut claimed = Vec::new();
        for r in recipients_tx(&mut tx, id).await? {
            if !from.contains(&r.state) {
                continue;
            }
            if let Some(only) = only
                && !only.iter().any(|o| o.eq_ignore_ascii_case(&r.address))
            {
                continue;
            }
            let n = sqlx::query(
                "UPDATE recipients SET state = $1, prev_state = state, claim_id = $2, \
                 claimed_ms = $3, updated_ms = $3 \
                 WHERE message_id = $4 AND address = $5 AND state = $6",
            )
            .bind(RecipientState::Releasing.as_str())
            .bind(claim_id)
            .bind(now)
            .bind(id)
            .bind(r.address.as_str())
            .bind(r.state.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                claimed.push(r.address);
            }
        }
        tx.commit().await?;
        Ok(Ok(claimed))
    }

    /// Ends a release: the recipients `claim_id` holds become released
    /// (`sent`) or go back to where they were; the message state follows.
    /// Returns the new message state and how many recipients it changed
    /// (fewer than asked means the claim was lost, which is logged).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish(
        &self,
        id: &str,
        recipients: &[String],
        claim_id: &str,
        sent: bool,
        event: Event,
        actor: &Actor,
        detail: Option<&str>,
    ) -> Result<State, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let from = state_of(&mut tx, id)
            .await?
            .map(|(s, _)| s)
            .unwrap_or(State::Held);
        let mut changed = Vec::new();
        for r in recipients {
            let q = if sent {
                sqlx::query(
                    "UPDATE recipients SET state = $1, prev_state = NULL, claim_id = NULL, \
                     claimed_ms = NULL, updated_ms = $2 \
                     WHERE message_id = $3 AND address = $4 AND state = $5 AND claim_id = $6",
                )
                .bind(RecipientState::Released.as_str())
            } else {
                sqlx::query(
                    "UPDATE recipients SET state = COALESCE(prev_state, $1), prev_state = NULL, \
                     claim_id = NULL, claimed_ms = NULL, updated_ms = $2 \
                     WHERE message_id = $3 AND address = $4 AND state = $5 AND claim_id = $6",
                )
                .bind(RecipientState::Held.as_str())
            };
            let n = q
                .bind(now)
                .bind(id)
                .bind(r.as_str())
                .bind(RecipientState::Releasing.as_str())
                .bind(claim_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 1 {
                changed.push(r.as_str());
            } else {
                tracing::error!(
                    quarantine_id = id,
                    recipient = %r,
                    "a release lost its claim on a recipient (recovered as stale?): check for a duplicate delivery"
                );
            }
        }
        let to = store_derived_state(&mut tx, id, from, now).await?;
        for r in changed {
            audit(
                &mut tx,
                id,
                now,
                event,
                actor,
                Some(r),
                Some(from),
                Some(to),
                detail,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(to)
    }

    /// Held messages the rule set `version` has not looked at (decided by
    /// another set and not retro-scanned with this one), oldest first.
    pub async fn retro_todo(
        &self,
        version: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, sha256 FROM messages WHERE state IN ('held', 'release_requested') \
             AND rules_version <> $1 AND (retro_version IS NULL OR retro_version <> $1) \
             ORDER BY received_ms, id LIMIT $2",
        )
        .bind(version)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("sha256")?)))
            .collect()
    }

    /// Records a retro-scan's result: `candidate` is the action the set
    /// `version` would take when it would deliver the message, `None` when
    /// it would still hold it. Audits a message becoming a candidate;
    /// returns whether it did.
    pub async fn retro_mark(
        &self,
        id: &str,
        version: &str,
        candidate: Option<&str>,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let before: Option<Option<String>> =
            sqlx::query("SELECT retro_action FROM messages WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("retro_action"))
                .transpose()?;
        let Some(before) = before else {
            return Ok(false);
        };
        sqlx::query(
            "UPDATE messages SET retro_version = $2, retro_action = $3, updated_ms = $4 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(version)
        .bind(candidate)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let became = candidate.is_some() && before.is_none();
        if became {
            audit(
                &mut tx,
                id,
                now_ms(),
                Event::RetroCandidate,
                &Actor::system(),
                None,
                None,
                None,
                Some(detail),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(became)
    }

    /// Records an event that changes no state (a raw download).
    pub async fn note(
        &self,
        id: &str,
        event: Event,
        actor: &Actor,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        audit(
            &mut tx,
            id,
            now_ms(),
            event,
            actor,
            None,
            None,
            None,
            detail,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A recipient asks for a release an operator must approve.
    pub async fn request_release(
        &self,
        id: &str,
        recipient: &str,
        actor: &Actor,
    ) -> Result<Change, StoreError> {
        self.move_recipients(
            id,
            Some(recipient),
            RecipientState::Held,
            RecipientState::ReleaseRequested,
            Event::ReleaseRequested,
            actor,
        )
        .await
    }

    /// An operator turns release requests down: back to held.
    pub async fn deny(&self, id: &str, actor: &Actor) -> Result<Change, StoreError> {
        self.move_recipients(
            id,
            None,
            RecipientState::ReleaseRequested,
            RecipientState::Held,
            Event::Denied,
            actor,
        )
        .await
    }

    async fn move_recipients(
        &self,
        id: &str,
        only: Option<&str>,
        from_r: RecipientState,
        to_r: RecipientState,
        event: Event,
        actor: &Actor,
    ) -> Result<Change, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let Some((from, sha256)) = state_of(&mut tx, id).await? else {
            return Ok(Change::NotFound);
        };
        if !from.is_open() {
            return Ok(Change::Conflict(from));
        }
        let mut moved = Vec::new();
        for r in recipients_tx(&mut tx, id).await? {
            if r.state != from_r || only.is_some_and(|o| !o.eq_ignore_ascii_case(&r.address)) {
                continue;
            }
            sqlx::query(
                "UPDATE recipients SET state = $1, updated_ms = $2 \
                 WHERE message_id = $3 AND address = $4 AND state = $5",
            )
            .bind(to_r.as_str())
            .bind(now)
            .bind(id)
            .bind(r.address.as_str())
            .bind(from_r.as_str())
            .execute(&mut *tx)
            .await?;
            moved.push(r.address);
        }
        if moved.is_empty() {
            return Ok(Change::Conflict(from));
        }
        let to = store_derived_state(&mut tx, id, from, now).await?;
        for r in &moved {
            audit(
                &mut tx,
                id,
                now,
                event,
                actor,
                Some(r),
                Some(from),
                Some(to),
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Change::Done { from, sha256 })
    }

    /// Records a spent release link. False if it was spent before.
    pub async fn spend_link(&self, nonce: &str, id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO spent_links (nonce, message_id, spent_ms) VALUES ($1, $2, $3)",
        )
        .bind(nonce)
        .bind(id)
        .bind(now_ms())
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives a link back when the release it was spent on could not be
    /// sent, so the recipient can try again.
    pub async fn unspend_link(&self, nonce: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM spent_links WHERE nonce = $1")
            .bind(nonce)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn link_spent(&self, nonce: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM spent_links WHERE nonce = $1")
            .bind(nonce)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n > 0)
    }

    /// Open messages (when `open`) or released ones still holding their
    /// blob, past their expiry.
    pub(super) async fn due(
        &self,
        now: i64,
        open: bool,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = if open {
            sqlx::query(
                "SELECT id, sha256 FROM messages WHERE state IN ($1, $2) AND expires_ms <= $3 \
                 ORDER BY expires_ms LIMIT 1000",
            )
            .bind(State::Held.as_str())
            .bind(State::ReleaseRequested.as_str())
            .bind(now)
        } else {
            sqlx::query(
                "SELECT id, sha256 FROM messages WHERE state = $1 AND purged_ms IS NULL \
                 AND expires_ms <= $2 ORDER BY expires_ms LIMIT 1000",
            )
            .bind(State::Released.as_str())
            .bind(now)
        }
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("sha256")?)))
            .collect()
    }

    pub(super) async fn mark_purged(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE messages SET purged_ms = $1 WHERE id = $2 AND purged_ms IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Runs `remove_blob` if no row needs the blob any more (deleted,
    /// expired and purged rows do not), under the blob's exclusive lock.
    /// Returns whether it ran.
    pub(super) async fn collect_blob(
        &self,
        sha256: &str,
        remove_blob: impl std::future::Future<Output = Result<(), StoreError>>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        self.lock_blob(&mut tx, sha256, true).await?;
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM messages WHERE sha256 = $1 AND purged_ms IS NULL",
        )
        .bind(sha256)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if n > 0 {
            return Ok(false);
        }
        remove_blob.await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Releases that stopped without finishing (a crash, a lost database
    /// connection after the send) go back to the queue once their claim is
    /// older than `stale_ms`: longer than any live release can take, so a
    /// release still running (here or on another node) is never touched.
    /// The relay may then get the message twice; never zero times while
    /// we say "released".
    pub async fn recover(&self, stale_ms: i64) -> Result<usize, StoreError> {
        let cutoff = now_ms().saturating_sub(stale_ms);
        let rows = sqlx::query(
            "SELECT message_id, address, claim_id FROM recipients \
             WHERE state = $1 AND (claimed_ms IS NULL OR claimed_ms < $2)",
        )
        .bind(RecipientState::Releasing.as_str())
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?;
        let mut n = 0;
        for row in &rows {
            let id: String = row.try_get("message_id")?;
            let address: String = row.try_get("address")?;
            let claim: Option<String> = row.try_get("claim_id")?;
            self.finish(
                &id,
                &[address],
                claim.as_deref().unwrap_or(""),
                false,
                Event::Recovered,
                &Actor::system(),
                Some("release interrupted before it was recorded"),
            )
            .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Open messages by recipient, for digests: (address, summaries).
    pub async fn held_by_recipient(&self) -> Result<Vec<(String, Vec<Summary>)>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT r.address AS rcpt, {SUMMARY_COLUMNS} FROM recipients r \
             JOIN messages m ON m.id = r.message_id \
             WHERE r.state = $1 AND m.state IN ($2, $3) ORDER BY r.address, m.received_ms"
        )))
        .bind(RecipientState::Held.as_str())
        .bind(State::Held.as_str())
        .bind(State::ReleaseRequested.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(String, Vec<Summary>)> = Vec::new();
        for row in &rows {
            let rcpt: String = row.try_get("rcpt")?;
            let s = summary(row)?;
            match out.last_mut() {
                Some((r, list)) if *r == rcpt => list.push(s),
                _ => out.push((rcpt, vec![s])),
            }
        }
        Ok(out)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Open messages, for the metrics gauge.
    pub async fn open_count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM messages WHERE state IN ($1, $2)")
                .bind(State::Held.as_str())
                .bind(State::ReleaseRequested.as_str())
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }
}

const SUMMARY_COLUMNS: &str = "m.id, m.received_ms, m.expires_ms, m.state, m.door, m.action, \
     m.score, m.sender, m.subject, m.message_id, m.sha256, m.size, m.rule, m.summary, \
     m.rules_version, m.retro_version, m.retro_action";

fn summary(row: &AnyRow) -> Result<Summary, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(Summary {
        id: row.try_get("id")?,
        received_ms: row.try_get("received_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        state: State::parse(&state).unwrap_or(State::Held),
        door: row.try_get("door")?,
        action: row.try_get("action")?,
        score: row.try_get("score")?,
        sender: row.try_get("sender")?,
        subject: row.try_get("subject")?,
        message_id: row.try_get("message_id")?,
        sha256: row.try_get("sha256")?,
        size: row.try_get("size")?,
        rule: row.try_get("rule")?,
        summary: row.try_get("summary")?,
        rules_version: row.try_get("rules_version")?,
        release_candidate: match (
            row.try_get::<Option<String>, _>("retro_version")?,
            row.try_get::<Option<String>, _>("retro_action")?,
        ) {
            (Some(rules_version), Some(action)) => Some(super::Candidate {
                rules_version,
                action,
            }),
            _ => None,
        },
        recipients: Vec::new(),
    })
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for a in args {
        q = match a {
            Arg::S(s) => q.bind(s.as_str()),
            Arg::I(i) => q.bind(*i),
        };
    }
    q
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// The message's state and blob, taking the row's write lock first on
/// PostgreSQL (a no-op update), so concurrent changes queue behind us.
async fn state_of(tx: &mut Tx<'_>, id: &str) -> Result<Option<(State, String)>, StoreError> {
    sqlx::query("UPDATE messages SET updated_ms = updated_ms WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query("SELECT state, sha256 FROM messages WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get("state")?;
    Ok(Some((
        State::parse(&state).unwrap_or(State::Held),
        row.try_get("sha256")?,
    )))
}

async fn recipients_tx(tx: &mut Tx<'_>, id: &str) -> Result<Vec<Recipient>, StoreError> {
    fetch_recipients(&mut **tx, id).await
}

async fn fetch_recipients<'e, E>(ex: E, id: &str) -> Result<Vec<Recipient>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows =
        sqlx::query("SELECT address, state FROM recipients WHERE message_id = $1 ORDER BY address")
            .bind(id)
            .fetch_all(ex)
            .await?;
    rows.iter().map(recipient).collect()
}

fn recipient(row: &AnyRow) -> Result<Recipient, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(Recipient {
        address: row.try_get("address")?,
        state: RecipientState::parse(&state).unwrap_or(RecipientState::Held),
    })
}

/// Sets the message state to what its recipients now imply; returns it.
async fn store_derived_state(
    tx: &mut Tx<'_>,
    id: &str,
    current: State,
    now: i64,
) -> Result<State, StoreError> {
    let to = derive_state(tx, id, current).await?;
    sqlx::query("UPDATE messages SET state = $1, updated_ms = $2 WHERE id = $3")
        .bind(to.as_str())
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(to)
}

/// The message state its recipients imply: released when none is left to
/// release, release-requested while any asks, held otherwise.
async fn derive_state(tx: &mut Tx<'_>, id: &str, current: State) -> Result<State, StoreError> {
    if !current.is_open() {
        return Ok(current);
    }
    let rs = recipients_tx(tx, id).await?;
    Ok(if rs.is_empty() {
        current
    } else if rs.iter().all(|r| r.state == RecipientState::Released) {
        State::Released
    } else if rs
        .iter()
        .any(|r| r.state == RecipientState::ReleaseRequested)
    {
        State::ReleaseRequested
    } else {
        State::Held
    })
}

#[allow(clippy::too_many_arguments)]
async fn audit(
    tx: &mut Tx<'_>,
    id: &str,
    at_ms: i64,
    event: Event,
    actor: &Actor,
    recipient: Option<&str>,
    from: Option<State>,
    to: Option<State>,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (message_id, at_ms, event, actor, via, address, recipient, \
         from_state, to_state, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id)
    .bind(at_ms)
    .bind(event.as_str())
    .bind(actor.name.as_str())
    .bind(actor.via.as_str())
    .bind(actor.address.clone())
    .bind(recipient.map(str::to_string))
    .bind(from.map(|s| s.as_str().to_string()))
    .bind(to.map(|s| s.as_str().to_string()))
    .bind(detail.map(str::to_string))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
