//! Webhooks: every event a webhook's filter accepts is POSTed to it, in
//! `seq` order, at least once, signed the Standard Webhooks way.
//!
//! The events table is the outbox and each webhook has one cursor row
//! (`webhook_cursors`): everything up to `delivered_seq` has been accepted
//! with a 2xx. One request is in flight per webhook, so an event is never
//! delivered before the one ahead of it; a failing receiver holds its own
//! queue and nothing else. Retries back off exponentially (with jitter,
//! honouring `Retry-After`) up to `max_backoff`, for ever: a receiver down
//! for an hour gets the whole hour when it comes back. Several nodes share
//! a cursor through a lease, so each event goes out once per webhook, not
//! once per node; when a node dies mid-request its successor may send that
//! event again, which is why receivers deduplicate on `webhook-id`.

use super::events::{Events, POLL};
use crate::config::WebhookConfig;
use crate::http::Gateway;
use crate::store::events::StoredEvent;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Events read from the table per round.
const PAGE: i64 = 100;

/// `webhook-signature` for one attempt: `v1,<base64 HMAC-SHA256>` per key,
/// space separated, over `{id}.{timestamp}.{body}`.
pub fn sign(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| {
            let mut m =
                <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(id.as_bytes());
            m.update(b".");
            m.update(timestamp.to_string().as_bytes());
            m.update(b".");
            m.update(body);
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// GitHub's `X-Hub-Signature-256`: the body alone, hex.
pub fn github_signature(key: &[u8], body: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// The wait before attempt `attempts + 1`: 1 s doubling up to `cap`, with
/// the upper half jittered so receivers coming back are not hit in step.
pub fn backoff(attempts: i64, cap: Duration) -> Duration {
    let exp = attempts.clamp(1, 30) as u32 - 1;
    let full = Duration::from_secs(1)
        .saturating_mul(2u32.saturating_pow(exp))
        .min(cap);
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let frac = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX);
    full.mul_f64(0.5 + frac / 2.0)
}

fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    crate::publish::tls_provider();
    reqwest::Client::builder()
        // A 3xx is a failure (Standard Webhooks): following it would send
        // signed events wherever a receiver points.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .no_proxy()
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Runs one delivery task per configured webhook until `stop`, starting
/// and stopping tasks as reloads add and remove webhooks.
pub async fn supervise(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let mut running: HashMap<String, (WebhookConfig, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        let cfg = gw.live();
        running.retain(|name, (conf, task)| {
            let keep = cfg.webhooks.iter().any(|w| w == conf) && !task.is_finished();
            if !keep {
                tracing::info!(webhook = %name, "webhook changed or removed: restarting its delivery");
                task.abort();
            }
            keep
        });
        for w in &cfg.webhooks {
            if running.contains_key(&w.name) {
                continue;
            }
            let task = tokio::spawn(deliver(Arc::clone(&gw), w.clone(), stop.clone()));
            running.insert(w.name.clone(), (w.clone(), task));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => break,
        }
    }
    for (_, (_, task)) in running {
        task.abort();
    }
}

enum Attempt {
    Delivered(u16),
    Failed {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
}

async fn post(client: &reqwest::Client, w: &WebhookConfig, event: &StoredEvent) -> Attempt {
    let body = event.json();
    let timestamp = crate::release::unix_now() as i64;
    let mut req = client
        .post(&w.url)
        .header("content-type", "application/json")
        .header("webhook-id", event.id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            sign(&w.secrets, &event.id, timestamp, body.as_bytes()),
        )
        .header("portcullis-event-seq", event.seq.to_string());
    if w.github_signature
        && let Some(key) = w.secrets.first()
    {
        req = req.header(
            "x-hub-signature-256",
            github_signature(key, body.as_bytes()),
        );
    }
    let req = req.body(body);
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Attempt::Delivered(resp.status().as_u16()),
        Ok(resp) => {
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            Attempt::Failed {
                status: Some(status.as_u16()),
                error: format!("HTTP {status}"),
                retry_after,
            }
        }
        Err(e) => Attempt::Failed {
            status: None,
            error: error_text(&e),
            retry_after: None,
        },
    }
}

fn error_text(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = format!("{what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text.chars().take(500).collect()
}

/// Delivers to one webhook until `stop` (or until the task is aborted
/// because the webhook's config changed).
async fn deliver(gw: Arc<Gateway>, w: WebhookConfig, mut stop: watch::Receiver<bool>) {
    let client = match client(w.timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(webhook = %w.name, error = %e, "webhook client could not be built");
            return;
        }
    };
    let events: &Events = &gw.events;
    let mut wake = events.subscribe();
    let db = &gw.store.db;
    let node = events.node.clone();
    // Long enough to outlive one request; renewed every round.
    let lease_ms = (w.timeout.as_millis() as i64 * 2).max(30_000);
    tracing::info!(webhook = %w.name, url = %w.url, "webhook delivery started");
    loop {
        if *stop.borrow() {
            return;
        }
        let now = crate::store::now_ms();
        let cursor = match db.webhook_lease(&w.name, &node, now, lease_ms).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                // Another node delivers; be ready to take over.
                if sleep_or_stop(&mut stop, Duration::from_millis(lease_ms as u64 / 3)).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(webhook = %w.name, error = %e, "webhook cursor not readable");
                if sleep_or_stop(&mut stop, Duration::from_secs(5)).await {
                    return;
                }
                continue;
            }
        };
        if cursor.next_attempt_ms > now {
            let wait = Duration::from_millis((cursor.next_attempt_ms - now) as u64);
            if sleep_or_stop(
                &mut stop,
                wait.min(Duration::from_millis(lease_ms as u64 / 3)),
            )
            .await
            {
                return;
            }
            continue;
        }
        let page = match db.events_after(cursor.delivered_seq, PAGE).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(webhook = %w.name, error = %e, "events not readable");
                if sleep_or_stop(&mut stop, Duration::from_secs(5)).await {
                    return;
                }
                continue;
            }
        };
        let head = *wake.borrow_and_update();
        events.set_webhook(&w.name, |s| {
            s.lag = (head.max(page.last().map_or(0, |e| e.seq)) - cursor.delivered_seq).max(0);
            s.attempts = cursor.attempts;
        });
        if page.is_empty() {
            tokio::select! {
                _ = wake.changed() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        let mut at = cursor.delivered_seq;
        let mut skipped_to = at;
        for event in &page {
            if !w.filter.wants(event.action(), event.score) {
                skipped_to = event.seq;
                continue;
            }
            if skipped_to > at {
                match db
                    .webhook_delivered(&w.name, &node, at, skipped_to, now, None)
                    .await
                {
                    Ok(true) => at = skipped_to,
                    _ => break,
                }
            }
            let attempt = tokio::select! {
                a = post(&client, &w, event) => a,
                _ = stop.changed() => return,
            };
            let now = crate::store::now_ms();
            match attempt {
                Attempt::Delivered(status) => {
                    match db
                        .webhook_delivered(&w.name, &node, at, event.seq, now, Some(status.into()))
                        .await
                    {
                        Ok(true) => {
                            at = event.seq;
                            skipped_to = at;
                            events.set_webhook(&w.name, |s| {
                                s.delivered += 1;
                                s.attempts = 0;
                                s.lag = (s.lag - 1).max(0);
                            });
                        }
                        Ok(false) => {
                            tracing::warn!(webhook = %w.name, "lost the webhook lease to another node");
                            break;
                        }
                        Err(e) => {
                            // Delivered but not recorded: it goes out again
                            // (at least once), which receivers absorb.
                            tracing::warn!(webhook = %w.name, error = %e, "webhook cursor not saved");
                            break;
                        }
                    }
                }
                Attempt::Failed {
                    status,
                    error,
                    retry_after,
                } => {
                    let attempts = cursor.attempts + 1;
                    let wait = retry_after
                        .unwrap_or_else(|| backoff(attempts, w.max_backoff))
                        .min(w.max_backoff);
                    let next = now + wait.as_millis() as i64;
                    tracing::warn!(
                        webhook = %w.name,
                        seq = event.seq,
                        attempts,
                        retry_in_ms = wait.as_millis() as u64,
                        error = %error,
                        "webhook delivery failed; will retry"
                    );
                    events.set_webhook(&w.name, |s| {
                        s.failed += 1;
                        s.attempts = attempts;
                    });
                    if let Err(e) = db
                        .webhook_failed(&w.name, &node, next, status.map(i64::from), &error)
                        .await
                    {
                        tracing::warn!(webhook = %w.name, error = %e, "webhook failure not saved");
                    }
                    break;
                }
            }
        }
        if skipped_to > at
            && let Err(e) = db
                .webhook_delivered(&w.name, &node, at, skipped_to, now, None)
                .await
        {
            tracing::warn!(webhook = %w.name, error = %e, "webhook cursor not saved");
        }
    }
}

/// Sleeps; true when `stop` fired instead.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_test_vector() {
        let key = crate::config::webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &[key],
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rotation_signs_with_every_key() {
        let sig = sign(
            &[b"k1k1k1k1k1k1k1k1".to_vec(), b"k2k2k2k2k2k2k2k2".to_vec()],
            "i",
            1,
            b"{}",
        );
        let parts: Vec<&str> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let cap = Duration::from_secs(300);
        for attempts in 1..40 {
            let full = Duration::from_secs(1 << (attempts.min(30) - 1).min(20)).min(cap);
            let b = backoff(attempts, cap);
            assert!(
                b >= full / 2 && b <= full,
                "attempt {attempts}: {b:?} vs {full:?}"
            );
        }
    }
}
