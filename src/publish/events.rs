//! Verdict events: built by the doors, written to the events table by one
//! writer task, read back by every consumer (pull API, stream, webhooks,
//! JSON Lines log) by cursor.
//!
//! The mail path never waits for any of it: a door hands its event to a
//! bounded channel with `try_send`. When the channel is full (database
//! down or far behind) the event is dropped and counted, and the message
//! is answered as usual. Events are committed within one batch window
//! (a few ms) after the verdict: a crash can lose that window, never a
//! quarantined message (the quarantine itself is durable before the door
//! answers).

use crate::config::WebhookConfig;
use crate::model::{Action, Door, Envelope, Finding, Object};
use crate::pipeline::Report;
use crate::store::Store;
use crate::store::events::NewEvent;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub const EVENT_SCHEMA: &str = "portcullis.event.v1";

/// Most events one transaction writes.
const BATCH: usize = 256;

/// How often readers (stream, webhooks, audit log) look for events without
/// a wake-up: other nodes' events wake nobody here.
pub const POLL: Duration = Duration::from_secs(1);

/// The event for one verdict (docs/schemas/event.v1.json). `seq` is not
/// here: the database assigns it and readers put it first.
#[derive(Serialize)]
struct VerdictEvent<'a> {
    schema: &'static str,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    time_ms: i64,
    node: &'a str,
    door: Door,
    message: MessageInfo<'a>,
    envelope: &'a Envelope,
    action: Action,
    score: i32,
    summary: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    deciding: Option<Deciding<'a>>,
    findings: &'a [Finding],
    objects: &'a [Object],
    rules_version: &'a str,
    timing: Timing,
}

#[derive(Serialize)]
struct MessageInfo<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    size: u64,
    /// sha256 of the message as received (absent when it was never read).
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quarantine_id: Option<&'a str>,
}

#[derive(Serialize)]
struct Deciding<'a> {
    finding: usize,
    rule: String,
    path: &'a str,
}

#[derive(Serialize)]
struct Timing {
    /// Inside the pipeline (unpacking, hashing, scanning).
    inspect_ms: f64,
    /// From admission at the door to the verdict, queueing and the
    /// quarantine write included.
    total_ms: f64,
}

/// What a door knows about a verdict besides the report.
pub struct VerdictFacts<'a> {
    pub door: Door,
    pub envelope: &'a Envelope,
    pub message_id: Option<&'a str>,
    pub size: u64,
    pub report: &'a Report,
    pub quarantine_id: Option<&'a str>,
    pub total: Duration,
}

/// Per-webhook delivery figures for /metrics (this process's view).
#[derive(Debug, Default, Clone)]
pub struct WebhookStat {
    pub delivered: u64,
    pub failed: u64,
    pub lag: i64,
    pub attempts: i64,
}

/// The publishing hub a gateway holds: the writer's inbox and the wake-up
/// for readers.
pub struct Events {
    tx: mpsc::Sender<NewEvent>,
    head: watch::Sender<i64>,
    pub node: String,
    /// Open SSE streams.
    pub streams: Arc<tokio::sync::Semaphore>,
    written: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    pub webhooks: Mutex<BTreeMap<String, WebhookStat>>,
}

impl Events {
    /// The hub and the receiver [`writer`] drains.
    pub fn new(
        node: String,
        queue: usize,
        max_streams: usize,
    ) -> (Events, mpsc::Receiver<NewEvent>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let (head, _) = watch::channel(0);
        (
            Events {
                tx,
                head,
                node,
                streams: Arc::new(tokio::sync::Semaphore::new(max_streams)),
                written: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                write_errors: AtomicU64::new(0),
                webhooks: Mutex::new(BTreeMap::new()),
            },
            rx,
        )
    }

    /// Wakes whenever this process commits events (the value is the
    /// newest seq). Other nodes' events are found by polling.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    /// Publishes a verdict. Never waits.
    pub fn verdict(&self, facts: VerdictFacts<'_>) {
        let r = facts.report;
        let v = &r.verdict;
        let id = new_id();
        let at_ms = crate::store::now_ms();
        let deciding = v.deciding_finding.and_then(|i| {
            r.findings.get(i).map(|f| Deciding {
                finding: i,
                rule: f.kind.name(),
                path: &f.path,
            })
        });
        let event = VerdictEvent {
            schema: EVENT_SCHEMA,
            id: &id,
            kind: "verdict",
            time: crate::store::format_rfc3339(at_ms),
            time_ms: at_ms,
            node: &self.node,
            door: facts.door,
            message: MessageInfo {
                message_id: facts.message_id.filter(|m| !m.is_empty()),
                size: facts.size,
                sha256: r.objects.first().and_then(|o| o.sha256.as_deref()),
                quarantine_id: facts.quarantine_id,
            },
            envelope: facts.envelope,
            action: v.action,
            score: v.score,
            summary: &v.summary,
            deciding,
            findings: &r.findings,
            objects: &r.objects,
            rules_version: &r.rules_version,
            timing: Timing {
                inspect_ms: round3(r.duration_ms),
                total_ms: round3(facts.total.as_secs_f64() * 1000.0),
            },
        };
        let body = match serde_json::to_string(&event) {
            Ok(b) => b,
            Err(e) => {
                self.dropped.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "event not encoded");
                return;
            }
        };
        self.send(NewEvent {
            id,
            at_ms,
            kind: "verdict",
            action: Some(v.action.as_str()),
            score: Some(i64::from(v.score)),
            node: self.node.clone(),
            body,
        });
    }

    fn send(&self, event: NewEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Logged at most once per 1000 so a database outage does
                // not also flood the log.
                if self.dropped.fetch_add(1, Relaxed).is_multiple_of(1000) {
                    tracing::error!(
                        "event queue full (database down or too slow): events are being dropped; mail is not affected"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn set_webhook(&self, name: &str, update: impl FnOnce(&mut WebhookStat)) {
        let mut w = self.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        update(w.entry(name.to_string()).or_default());
    }

    /// Appends this hub's series to a /metrics page.
    pub fn render(&self, out: &mut String, configured: &[WebhookConfig]) {
        let head = *self.head.borrow();
        let _ = writeln!(
            out,
            "# HELP portcullis_events_written_total Events this process committed to the events table.\n\
             # TYPE portcullis_events_written_total counter\n\
             portcullis_events_written_total {}\n\
             # HELP portcullis_events_dropped_total Events dropped because the writer queue was full (mail was not affected).\n\
             # TYPE portcullis_events_dropped_total counter\n\
             portcullis_events_dropped_total {}\n\
             # HELP portcullis_event_write_errors_total Failed event batch writes (retried).\n\
             # TYPE portcullis_event_write_errors_total counter\n\
             portcullis_event_write_errors_total {}\n\
             # HELP portcullis_events_head Newest event sequence number this process has written.\n\
             # TYPE portcullis_events_head gauge\n\
             portcullis_events_head {head}",
            self.written.load(Relaxed),
            self.dropped.load(Relaxed),
            self.write_errors.load(Relaxed),
        );
        let w = self.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        type Series = (
            &'static str,
            &'static str,
            &'static str,
            fn(&WebhookStat) -> i64,
        );
        let series: [Series; 4] = [
            (
                "portcullis_webhook_deliveries_total",
                "counter",
                "Events a webhook receiver accepted (2xx), by webhook.",
                |s| s.delivered as i64,
            ),
            (
                "portcullis_webhook_failures_total",
                "counter",
                "Failed webhook attempts (retried), by webhook.",
                |s| s.failed as i64,
            ),
            (
                "portcullis_webhook_lag_events",
                "gauge",
                "Events not yet delivered to a webhook.",
                |s| s.lag,
            ),
            (
                "portcullis_webhook_attempts",
                "gauge",
                "Consecutive failed attempts of the event a webhook is stuck on.",
                |s| s.attempts,
            ),
        ];
        for (metric, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
            for c in configured {
                let s = w.get(&c.name).cloned().unwrap_or_default();
                let _ = writeln!(out, "{metric}{{webhook=\"{}\"}} {}", c.name, value(&s));
            }
        }
    }
}

fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// 128 random bits in hex: unique across nodes and database resets, and
/// the receivers' idempotency key (`webhook-id`).
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Unreachable on Linux; the id must still be unique.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = t.to_le_bytes();
    }
    format!("evt_{}", hex::encode(b))
}

/// Writes queued events in batches until `flush` turns true, then writes
/// what is left and returns. A failed write is retried (with the same
/// batch, so order holds) while the queue absorbs new events.
pub async fn writer(
    events: Arc<Events>,
    store: Arc<Store>,
    mut rx: mpsc::Receiver<NewEvent>,
    mut flush: watch::Receiver<bool>,
) {
    let db = &store.db;
    if let Ok(head) = db.events_head().await {
        events.head.send_replace(head);
    }
    let mut batch: Vec<NewEvent> = Vec::with_capacity(BATCH);
    let mut closing = false;
    let mut failures_closing = 0u32;
    loop {
        if batch.is_empty() {
            if closing {
                // Whatever the doors queued before they stopped.
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                if batch.is_empty() {
                    return;
                }
            } else {
                tokio::select! {
                    n = rx.recv_many(&mut batch, BATCH) => if n == 0 { return },
                    _ = flush.changed() => { closing = true; continue }
                }
                // Let a burst gather into one transaction.
                if batch.len() < BATCH {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                }
            }
        }
        match db.insert_events(&batch).await {
            Ok(head) => {
                events.written.fetch_add(batch.len() as u64, Relaxed);
                events.head.send_replace(head);
                batch.clear();
            }
            Err(e) => {
                events.write_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, events = batch.len(), "writing events failed; retrying");
                if closing {
                    failures_closing += 1;
                }
                let wait = if closing { 200 } else { 1000 };
                tokio::time::sleep(Duration::from_millis(wait)).await;
                // Shutdown is not held up for ever by a dead database.
                if failures_closing > 25 {
                    tracing::error!(
                        events = batch.len(),
                        "giving up on unwritten events at shutdown"
                    );
                    return;
                }
            }
        }
    }
}
