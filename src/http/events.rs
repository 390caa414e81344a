//! The events API: `GET /v1/events` (pull by cursor), `GET
//! /v1/events/stream` (Server-Sent Events with `Last-Event-ID` resume) and
//! `GET /v1/webhooks` (delivery state). Auditor role.
//!
//! Both readers always read from the events table, never from an
//! in-memory feed: the table is the one order every node agrees on, so a
//! consumer that stores the last `seq` it processed resumes exactly after
//! it, whichever node it reconnects to.

use super::Gateway;
use super::auth;
use super::quarantine::ApiError;
use crate::config::EventFilter;
use crate::config::Role;
use crate::model::Action;
use crate::publish::events::POLL;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;

pub const MAX_LIMIT: i64 = 1000;

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/v1/events", get(pull))
        .route("/v1/events/stream", get(stream))
        .route("/v1/webhooks", get(webhooks))
}

struct Params {
    after: Option<i64>,
    limit: i64,
    filter: EventFilter,
}

fn params(raw: Option<&str>) -> Result<Params, String> {
    let mut after = None;
    let mut limit = 100;
    let mut actions = Vec::new();
    let mut min_score = None;
    for (k, v) in crate::doors::native::query_pairs(raw) {
        let v = v.trim();
        match k.as_str() {
            "after" | "cursor" => {
                after = Some(
                    v.parse::<i64>()
                        .ok()
                        .filter(|a| *a >= 0)
                        .ok_or("after: expected a sequence number (0 or more)")?,
                )
            }
            "limit" => {
                limit = v
                    .parse::<i64>()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| format!("limit: expected 1 to {MAX_LIMIT}"))?
            }
            // `action=quarantine,reject`, repeatable.
            "action" => {
                for a in v.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                    actions.push(Action::parse(a).ok_or_else(|| format!("unknown action {a:?}"))?);
                }
            }
            "min_score" => {
                min_score = Some(
                    v.parse::<i64>()
                        .map_err(|_| "min_score: expected an integer")?,
                )
            }
            _ => {}
        }
    }
    Ok(Params {
        after,
        limit,
        filter: EventFilter { actions, min_score },
    })
}

/// The cursor a consumer gave, if any, refused with 410 when retention has
/// overtaken it: the consumer must know it missed events, and where the
/// feed now starts.
async fn given(gw: &Gateway, after: Option<i64>) -> Result<Option<i64>, ApiError> {
    let Some(after) = after else { return Ok(None) };
    let pruned = gw.store.db.events_pruned_through().await?;
    if after < pruned {
        return Err(ApiError(
            StatusCode::GONE,
            format!(
                "events up to {pruned} were deleted by retention (events.retention); resume with after={pruned}"
            ),
        ));
    }
    Ok(Some(after))
}

/// `GET /v1/events?after=SEQ&limit=N[&action=a,b][&min_score=N]`:
/// `{"events":[…], "next": SEQ, "head": SEQ}`. Store `next` and pass it as
/// `after` next time. Without `after`: from the oldest retained event.
async fn pull(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    auth::caller(&gw.live().auth, &headers, Role::Auditor)?;
    let p = params(query.as_deref()).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let after = match given(&gw, p.after).await? {
        Some(a) => a,
        None => gw.store.db.events_pruned_through().await?,
    };
    let page = gw.store.db.events_after(after, p.limit).await?;
    let head = gw.store.db.events_head().await?;
    // `next` covers filtered-out events too, so a filtered consumer does
    // not read them again.
    let next = page.last().map_or(after, |e| e.seq);
    let mut body =
        String::with_capacity(page.iter().map(|e| e.body.len() + 24).sum::<usize>() + 64);
    body.push_str("{\"events\":[");
    let mut first = true;
    for e in page.iter().filter(|e| p.filter.wants(e.action(), e.score)) {
        if !first {
            body.push(',');
        }
        first = false;
        body.push_str(&e.json());
    }
    body.push_str(&format!("],\"next\":{next},\"head\":{head}}}"));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /v1/events/stream`: every event after `Last-Event-ID` (or
/// `?after=`), then live ones as they are committed. Without either, only
/// new events. Each SSE `id` is the event's `seq`, so a client that
/// reconnects (browsers' EventSource do it themselves) misses nothing.
async fn stream(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    auth::caller(&gw.live().auth, &headers, Role::Auditor)?;
    let p = params(query.as_deref()).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|s| *s >= 0)
                .ok_or_else(|| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        "Last-Event-ID: expected an event seq".into(),
                    )
                })?,
        ),
    };
    let after = match given(&gw, last_event_id.or(p.after)).await? {
        Some(a) => a,
        None => gw.store.db.events_head().await?,
    };
    let Ok(permit) = Arc::clone(&gw.events.streams).try_acquire_owned() else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open event streams (events.max_streams)".into(),
        ));
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, std::convert::Infallible>>(64);
    // Subscribed before the first read, so nothing committed in between
    // goes unnoticed.
    let mut wake = gw.events.subscribe();
    let mut stop = gw.stop.clone();
    let gw2 = Arc::clone(&gw);
    tokio::spawn(async move {
        let _permit = permit;
        let mut cur = after;
        loop {
            if *stop.borrow() {
                return;
            }
            // Drain what is committed after `cur`, a page at a time (the
            // connection goes back to the pool between pages).
            loop {
                let page = match gw2.store.db.events_after(cur, 500).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream: events not readable");
                        break;
                    }
                };
                if page.is_empty() {
                    break;
                }
                for e in page {
                    cur = e.seq;
                    if !p.filter.wants(e.action(), e.score) {
                        continue;
                    }
                    let ev = Event::default()
                        .id(e.seq.to_string())
                        .event("verdict")
                        .data(e.json());
                    tokio::select! {
                        sent = tx.send(Ok(ev)) => if sent.is_err() { return },
                        _ = stop.changed() => return,
                    }
                }
            }
            tokio::select! {
                _ = wake.changed() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let sse = Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    let mut resp = sse.into_response();
    // nginx and friends would otherwise hold events back in a buffer.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// `GET /v1/webhooks`: each configured webhook's cursor, lag and last
/// error, as the database has them (all nodes).
async fn webhooks(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cfg = gw.live();
    auth::caller(&cfg.auth, &headers, Role::Auditor)?;
    let head = gw.store.db.events_head().await?;
    let cursors = gw.store.db.webhook_cursors().await?;
    let list: Vec<serde_json::Value> = cfg
        .webhooks
        .iter()
        .map(|w| {
            let c = cursors.iter().find(|c| c.name == w.name);
            serde_json::json!({
                "name": w.name,
                "url": w.url,
                "actions": w.filter.actions,
                "min_score": w.filter.min_score,
                "delivered_seq": c.map(|c| c.delivered_seq),
                "lag": c.map(|c| (head - c.delivered_seq).max(0)),
                "attempts": c.map_or(0, |c| c.attempts),
                "next_attempt_ms": c.map(|c| c.next_attempt_ms).filter(|t| *t > 0),
                "last_status": c.and_then(|c| c.last_status),
                "last_error": c.and_then(|c| c.last_error.clone()),
                "last_ok_ms": c.and_then(|c| c.last_ok_ms),
                "node": c.and_then(|c| c.lease_owner.clone()),
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "head": head, "webhooks": list })).into_response())
}
