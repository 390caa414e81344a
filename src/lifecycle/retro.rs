//! Retro-scan: when the live rule set changes, every held message that an
//! older set decided is inspected again with the new one. Those it would
//! deliver become release candidates (listed with `?candidate=1`, marked in
//! the UI, audited as `retro_candidate`); with `rules.retro_release` they
//! are released at once, audited as the system's release.
//!
//! Progress is in the database (`messages.retro_version`): a restart, or a
//! second node, goes on where the scan stopped, and a message is looked at
//! once per rule set. Messages are inspected one at a time on a blocking
//! thread with their own scanner, never on the inspection pool.

use super::{Outline, delivers};
use crate::http::Gateway;
use crate::model::Submission;
use crate::store::{Actor, Candidate, Event, RecipientState};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where the scan stands, for `GET /v1/rules`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Progress {
    /// The set the scan works for.
    pub rules_version: String,
    pub scanned: u64,
    pub candidates: u64,
    pub released: u64,
    pub errors: u64,
    /// Messages still to look at when last counted (0: done).
    pub pending: u64,
}

const PAGE: i64 = 50;

/// Runs until `stop`: waits for the rule set to change, then works through
/// the held messages older sets decided.
pub async fn run(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    loop {
        let engine = gw.pool.engine();
        let cfg = gw.live();
        let version = engine.rules.version.clone();
        let todo = if cfg.lifecycle.retro_scan {
            match gw.store.db.retro_todo(&version, PAGE).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "retro-scan: held messages not readable");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        {
            let mut p = gw.lifecycle.retro.lock().unwrap_or_else(|e| e.into_inner());
            if p.rules_version != version {
                *p = Progress {
                    rules_version: version.clone(),
                    ..Default::default()
                };
            }
            p.pending = todo.len() as u64;
        }
        if todo.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        // One scanner for the page, on a blocking thread: building one
        // costs about as much as inspecting a small message.
        let store = Arc::clone(&gw.store);
        let e = Arc::clone(&engine);
        let stopping = stop.clone();
        let Ok(results) = tokio::task::spawn_blocking(move || {
            let mut inspector = e.inspector();
            let mut out = Vec::with_capacity(todo.len());
            for (id, sha) in todo {
                if *stopping.borrow() {
                    break;
                }
                let outline = store
                    .blobs
                    .get_blocking(&sha)
                    .map_err(|e| e.to_string())
                    .and_then(|raw| {
                        inspector
                            .inspect(&Submission::mail(raw))
                            .map(|r| Outline::of(&r))
                            .map_err(|e| e.to_string())
                    });
                out.push((id, outline));
            }
            out
        })
        .await
        else {
            continue;
        };
        for (id, outline) in results {
            if *stop.borrow() {
                return;
            }
            // A reload in the middle: the rest is done again with the newer set.
            if gw.pool.engine().rules.version != version {
                break;
            }
            let outline = match outline {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(quarantine_id = %id, error = %e, "retro-scan: message not inspected");
                    gw.lifecycle
                        .retro
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .errors += 1;
                    // Marked as looked at, so one bad blob does not stall
                    // the scan; it stays held.
                    let _ = gw.store.db.retro_mark(&id, &version, None, "").await;
                    continue;
                }
            };
            let candidate = delivers(outline.action).then(|| Candidate {
                rules_version: version.clone(),
                action: outline.action.as_str().into(),
            });
            let detail = candidate
                .as_ref()
                .map(|c| format!("{} (score {})", c.describe(), outline.score))
                .unwrap_or_default();
            let became = match gw
                .store
                .db
                .retro_mark(
                    &id,
                    &version,
                    candidate.as_ref().map(|c| c.action.as_str()),
                    &detail,
                )
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(quarantine_id = %id, error = %e, "retro-scan result not saved");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            let mut released = false;
            if candidate.is_some() && cfg.lifecycle.retro_release {
                match gw
                    .releaser
                    .release(
                        &cfg.release,
                        &id,
                        None,
                        &[RecipientState::Held, RecipientState::ReleaseRequested],
                        Event::Released,
                        &Actor {
                            name: format!("retro-scan:{version}"),
                            ..Actor::system()
                        },
                    )
                    .await
                {
                    Ok(r) => {
                        gw.metrics.released(r.recipients.len());
                        released = true;
                    }
                    Err(e) => {
                        tracing::warn!(quarantine_id = %id, error = %e, "retro-scan release failed; the message stays a candidate")
                    }
                }
            }
            if became {
                tracing::info!(quarantine_id = %id, rules_version = %version, action = %outline.action, released, "retro-scan: release candidate");
            }
            let mut p = gw.lifecycle.retro.lock().unwrap_or_else(|e| e.into_inner());
            p.scanned += 1;
            p.candidates += u64::from(candidate.is_some());
            p.released += u64::from(released);
            p.pending = p.pending.saturating_sub(1);
        }
    }
}
