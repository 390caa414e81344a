//! The events table and the webhook delivery cursors: the durable outbox
//! every publisher reads from.
//!
//! Ordering: a consumer keeps the highest `seq` it has seen and asks for
//! what comes after it, so a `seq` must never become visible after a
//! larger one. SQLite gives that for free (one writer at a time holds the
//! database lock from first write to commit). PostgreSQL hands out
//! identity values at INSERT, so two transactions could commit out of
//! order; every event transaction therefore takes one cluster-wide
//! advisory lock first, which PostgreSQL releases only after the commit
//! is visible. Each process writes events from a single task in batches,
//! so the lock is taken once per batch, not per message.

use super::StoreError;
use super::db::{Backend, Db};
use sqlx::Row;

/// An event ready to be written; `seq` comes from the database.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub at_ms: i64,
    pub kind: &'static str,
    pub action: Option<&'static str>,
    pub score: Option<i64>,
    pub node: String,
    /// The event JSON, without `seq`.
    pub body: String,
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    /// `evt_…`, also inside the body: receivers' idempotency key.
    pub id: String,
    pub action: Option<String>,
    pub score: Option<i64>,
    /// The event JSON, without `seq` (see [`StoredEvent::json`]).
    pub body: String,
}

impl StoredEvent {
    /// The event as consumers receive it: the stored body with `seq` first.
    pub fn json(&self) -> String {
        match self.body.strip_prefix('{') {
            Some("}") => format!("{{\"seq\":{}}}", self.seq),
            Some(rest) => format!("{{\"seq\":{},{rest}", self.seq),
            // Never written by us; passed on rather than mangled.
            None => self.body.clone(),
        }
    }

    pub fn action(&self) -> Option<crate::model::Action> {
        self.action.as_deref().and_then(crate::model::Action::parse)
    }
}

/// Where a webhook's delivery stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookCursor {
    pub name: String,
    pub delivered_seq: i64,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_ok_ms: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
}

/// Any fixed number: it only has to be the same on every node.
const EVENTS_LOCK: i64 = 0x706f_7274_6375_6c6c; // "portcull"

impl Db {
    /// Writes a batch in one transaction and returns the highest `seq`.
    pub async fn insert_events(&self, batch: &[NewEvent]) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(EVENTS_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        for e in batch {
            sqlx::query(
                "INSERT INTO events (id, at_ms, type, action, score, node, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(e.id.as_str())
            .bind(e.at_ms)
            .bind(e.kind)
            .bind(e.action)
            .bind(e.score)
            .bind(e.node.as_str())
            .bind(e.body.as_str())
            .execute(&mut *tx)
            .await?;
        }
        let head: Option<i64> = sqlx::query("SELECT MAX(seq) FROM events")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(head.unwrap_or(0))
    }

    /// Up to `limit` events after `after`, oldest first.
    pub async fn events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, id, action, score, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredEvent {
                    seq: r.try_get(0)?,
                    id: r.try_get(1)?,
                    action: r.try_get(2)?,
                    score: r.try_get(3)?,
                    body: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// The newest `seq` (0 when there has never been an event).
    pub async fn events_head(&self) -> Result<i64, StoreError> {
        let head: Option<i64> = sqlx::query("SELECT MAX(seq) FROM events")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(head.unwrap_or(0))
    }

    /// The highest `seq` retention has deleted: a cursor below it has
    /// missed events.
    pub async fn events_pruned_through(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM event_meta WHERE name = 'pruned_through'")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get(0)?,
            None => 0,
        })
    }

    /// Deletes events older than `before_ms`; returns how many.
    pub async fn prune_events(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let upto: Option<i64> = sqlx::query("SELECT MAX(seq) FROM events WHERE at_ms < $1")
            .bind(before_ms)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let Some(upto) = upto else {
            return Ok(0);
        };
        // By seq, not by time: clocks of several nodes disagree, and a
        // consumer must see a clean cut, never a hole in the middle.
        let deleted = sqlx::query("DELETE FROM events WHERE seq <= $1")
            .bind(upto)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "INSERT INTO event_meta (name, value) VALUES ('pruned_through', $1) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value \
             WHERE event_meta.value < excluded.value",
        )
        .bind(upto)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Creates webhook `name`'s cursor at the newest event, unless it has
    /// one: configuring a webhook is not a request to replay the whole
    /// retained history into it. `serve` calls this before it opens its
    /// doors, so a webhook configured at start misses nothing.
    pub async fn webhook_init(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_cursors (name, delivered_seq, attempts, next_attempt_ms) \
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) FROM events), 0, 0) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes (or renews) the delivery lease of webhook `name` for `node`
    /// and returns its cursor, creating it at the newest event on first
    /// use. `None` while another node holds an unexpired lease.
    pub async fn webhook_lease(
        &self,
        name: &str,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<WebhookCursor>, StoreError> {
        self.webhook_init(name).await?;
        let taken = sqlx::query(
            "UPDATE webhook_cursors SET lease_owner = $2, lease_until_ms = $3 \
             WHERE name = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until_ms < $4)",
        )
        .bind(name)
        .bind(node)
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if taken == 0 {
            return Ok(None);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CURSOR_COLUMNS} FROM webhook_cursors WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(cursor).transpose()
    }

    /// Records that the receiver accepted everything up to `seq`. Fenced
    /// by the lease and the previous cursor: a node that lost its lease
    /// cannot move the cursor. Returns false when the fence failed.
    pub async fn webhook_delivered(
        &self,
        name: &str,
        node: &str,
        prev: i64,
        seq: i64,
        now_ms: i64,
        status: Option<i64>,
    ) -> Result<bool, StoreError> {
        // Skipping filtered-out events moves the cursor without touching
        // what the last delivery reported.
        let q = match status {
            Some(status) => sqlx::query(
                "UPDATE webhook_cursors SET delivered_seq = $4, attempts = 0, \
                 next_attempt_ms = 0, last_ok_ms = $5, last_status = $6, last_error = NULL \
                 WHERE name = $1 AND lease_owner = $2 AND delivered_seq = $3",
            )
            .bind(name)
            .bind(node)
            .bind(prev)
            .bind(seq)
            .bind(now_ms)
            .bind(status),
            None => sqlx::query(
                "UPDATE webhook_cursors SET delivered_seq = $4 \
                 WHERE name = $1 AND lease_owner = $2 AND delivered_seq = $3",
            )
            .bind(name)
            .bind(node)
            .bind(prev)
            .bind(seq),
        };
        let n = q.execute(&self.pool).await?.rows_affected();
        Ok(n == 1)
    }

    /// Records a failed attempt and when to try again.
    pub async fn webhook_failed(
        &self,
        name: &str,
        node: &str,
        next_attempt_ms: i64,
        status: Option<i64>,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_cursors SET attempts = attempts + 1, next_attempt_ms = $3, \
             last_status = $4, last_error = $5 WHERE name = $1 AND lease_owner = $2",
        )
        .bind(name)
        .bind(node)
        .bind(next_attempt_ms)
        .bind(status)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn webhook_cursors(&self) -> Result<Vec<WebhookCursor>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CURSOR_COLUMNS} FROM webhook_cursors ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cursor).collect()
    }
}

const CURSOR_COLUMNS: &str = "name, delivered_seq, attempts, next_attempt_ms, last_status, \
     last_error, last_ok_ms, lease_owner, lease_until_ms";

fn cursor(r: &sqlx::any::AnyRow) -> Result<WebhookCursor, StoreError> {
    Ok(WebhookCursor {
        name: r.try_get(0)?,
        delivered_seq: r.try_get(1)?,
        attempts: r.try_get(2)?,
        next_attempt_ms: r.try_get(3)?,
        last_status: r.try_get(4)?,
        last_error: r.try_get(5)?,
        last_ok_ms: r.try_get(6)?,
        lease_owner: r.try_get(7)?,
        lease_until_ms: r.try_get(8)?,
    })
}
