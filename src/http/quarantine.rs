//! The operators' quarantine API under `/v1/quarantine`: list and search
//! the queue, read a message's report and audit trail, download it, and
//! release, delete, approve or deny, one at a time or in bulk. Bearer
//! tokens only (no cookies), so no request here can be forged cross-site.

use super::Gateway;
use super::auth;
use crate::config::Role;
use crate::release::{ReleaseError, Released};
use crate::store::{Actor, Change, Event, ListQuery, RecipientState, Sort, State, Via};
use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/v1/quarantine", get(list))
        .route("/v1/quarantine/release", post(bulk_release))
        .route("/v1/quarantine/delete", post(bulk_delete))
        .route("/v1/quarantine/{id}", get(detail).delete(delete_one))
        .route("/v1/quarantine/{id}/raw", get(raw))
        .route("/v1/quarantine/{id}/links", get(links))
        .route("/v1/quarantine/{id}/release", post(release_one))
        .route("/v1/quarantine/{id}/delete", post(delete_one))
        .route("/v1/quarantine/{id}/approve", post(approve))
        .route("/v1/quarantine/{id}/deny", post(deny))
}

/// An API error as JSON: `{"error": "..."}` with a fitting status.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<auth::Denied> for ApiError {
    fn from(d: auth::Denied) -> Self {
        let text = match d {
            auth::Denied::Unauthenticated => "authentication required",
            auth::Denied::Forbidden => "this token's role may not do that",
        };
        ApiError(d.status(), text.into())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "quarantine store error");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "quarantine store unavailable".into(),
        )
    }
}

impl From<ReleaseError> for ApiError {
    fn from(e: ReleaseError) -> Self {
        match e {
            ReleaseError::NotFound => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            ReleaseError::Conflict(_) | ReleaseError::NothingToRelease => {
                ApiError(StatusCode::CONFLICT, e.to_string())
            }
            ReleaseError::Relay(_) => ApiError(StatusCode::BAD_GATEWAY, e.to_string()),
            ReleaseError::Store(s) => s.into(),
        }
    }
}

fn actor(name: String, via: Via, peer: SocketAddr) -> Actor {
    Actor {
        name,
        via,
        address: Some(peer.ip().to_string()),
    }
}

/// Parses the list filters from a query string. Shared with the UI.
pub fn list_query(raw: Option<&str>) -> Result<ListQuery, String> {
    let mut q = ListQuery {
        limit: 50,
        ..Default::default()
    };
    for (k, v) in crate::doors::native::query_pairs(raw) {
        let v = v.trim().to_string();
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "rcpt" | "recipient" => q.recipient = Some(v),
            "sender" | "from" => q.sender = Some(v),
            "rule" => q.rule = Some(v),
            "action" => q.action = Some(v),
            "q" | "text" | "subject" => q.text = Some(v),
            "candidate" => q.candidates = matches!(v.as_str(), "1" | "true" | "yes"),
            "state" => {
                for s in v.split(',') {
                    q.states.push(
                        State::parse(s).ok_or_else(|| format!("state {s:?} is not a state"))?,
                    );
                }
            }
            "since" => q.since_ms = Some(time_ms(&v).ok_or("since: expected Unix ms or a date")?),
            "until" => q.until_ms = Some(time_ms(&v).ok_or("until: expected Unix ms or a date")?),
            "sort" => {
                q.sort = Sort::parse(&v).ok_or_else(|| {
                    format!(
                        "sort {v:?} is not one of received, score, size, sender, subject, expires"
                    )
                })?
            }
            "order" => {
                q.ascending = match v.as_str() {
                    "asc" => true,
                    "desc" => false,
                    _ => return Err("order: asc or desc".into()),
                }
            }
            "limit" => q.limit = v.parse().map_err(|_| "limit: a number")?,
            "offset" => q.offset = v.parse().map_err(|_| "offset: a number")?,
            _ => {}
        }
    }
    Ok(q)
}

/// Unix milliseconds, or `YYYY-MM-DD` / `YYYY-MM-DDTHH:MM[:SS][Z]` in UTC.
pub fn time_ms(v: &str) -> Option<i64> {
    if let Ok(n) = v.parse::<i64>() {
        return Some(n);
    }
    if v.len() > 32 {
        return None;
    }
    let v = v.trim_end_matches('Z');
    let (date, time) = v.split_once(['T', ' ']).unwrap_or((v, "00:00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':').map(|p| p.parse::<i64>());
    let hh = t.next().and_then(Result::ok).unwrap_or(0);
    let mm = t.next().and_then(Result::ok).unwrap_or(0);
    let ss = t.next().and_then(Result::ok).unwrap_or(0);
    if !(1..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || hh > 23
        || mm > 59
        || ss > 60
    {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000)
}

async fn list(
    AxState(gw): AxState<Arc<Gateway>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    auth::caller(&gw.live().auth, &headers, Role::Auditor)?;
    let q = list_query(query.as_deref()).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let page = gw.store.db.list(&q).await?;
    Ok(axum::Json(page).into_response())
}

async fn detail(
    AxState(gw): AxState<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let cfg = gw.live();
    auth::caller(&cfg.auth, &headers, Role::Auditor)?;
    let d = gw
        .store
        .db
        .detail(&id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no such message".into()))?;
    let dangerous = crate::release::dangerous(&cfg.release, &d.findings);
    let mut v = serde_json::to_value(&d)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding: {e}")))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("request_only".into(), json!(dangerous));
    }
    Ok(axum::Json(v).into_response())
}

async fn raw(
    AxState(gw): AxState<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let cfg = gw.live();
    let (who, _) = auth::caller(&cfg.auth, &headers, cfg.quarantine.raw_download_role)?;
    raw_response(&gw, &id, &who, Via::Api, peer).await
}

/// The stored bytes as a download. Shared with the UI.
pub async fn raw_response(
    gw: &Arc<Gateway>,
    id: &str,
    who: &str,
    via: Via,
    peer: SocketAddr,
) -> Result<Response, ApiError> {
    let s = gw
        .store
        .db
        .summary(id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no such message".into()))?;
    if matches!(s.state, State::Deleted | State::Expired) {
        return Err(ApiError(
            StatusCode::GONE,
            format!("the message was {}", s.state),
        ));
    }
    let bytes = match gw.store.raw(&s.sha256).await {
        Ok(b) => b,
        Err(crate::store::StoreError::Missing(_)) => {
            return Err(ApiError(
                StatusCode::GONE,
                "the message bytes are no longer kept".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(quarantine_id = id, by = who, from = %peer.ip(), "raw message downloaded");
    gw.store
        .db
        .note(
            id,
            Event::Downloaded,
            &actor(who.to_string(), via, peer),
            None,
        )
        .await?;
    let safe_id: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    Ok((
        [
            // Never rendered by a browser: it is (possibly live) malware.
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{safe_id}.eml\""),
            ),
            (
                header::HeaderName::from_static("x-content-type-options"),
                "nosniff".into(),
            ),
            (
                header::HeaderName::from_static("x-portcullis-sha256"),
                s.sha256.clone(),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn links(
    AxState(gw): AxState<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let cfg = gw.live();
    auth::caller(&cfg.auth, &headers, Role::Operator)?;
    let s = gw
        .store
        .db
        .summary(&id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no such message".into()))?;
    let links: Vec<_> = s
        .recipients
        .iter()
        .filter(|r| r.state == RecipientState::Held)
        .map(|r| json!({ "recipient": r.address, "url": gw.releaser.link(&cfg.release, &id, &r.address) }))
        .collect();
    Ok(axum::Json(json!({ "id": id, "links": links })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    /// Only these recipients (default: every one still held).
    #[serde(default)]
    recipients: Option<Vec<String>>,
}

/// Operator release of one message. Shared with the UI.
pub async fn release(
    gw: &Arc<Gateway>,
    id: &str,
    only: Option<&[String]>,
    actor: &Actor,
    approve: bool,
) -> Result<Released, ReleaseError> {
    const APPROVE: &[RecipientState] = &[RecipientState::ReleaseRequested];
    const RELEASE: &[RecipientState] = &[RecipientState::Held, RecipientState::ReleaseRequested];
    let (from, event) = if approve {
        (APPROVE, Event::Approved)
    } else {
        (RELEASE, Event::Released)
    };
    // Its own task: a client that hangs up (or a drain timeout) must not
    // cancel a release between the SMTP transaction and its record.
    let task = {
        let gw = Arc::clone(gw);
        let id = id.to_string();
        let only = only.map(<[String]>::to_vec);
        let actor = actor.clone();
        tokio::spawn(async move {
            let cfg = gw.live();
            gw.releaser
                .release(&cfg.release, &id, only.as_deref(), from, event, &actor)
                .await
        })
    };
    let result = match task.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "release task failed");
            Err(ReleaseError::Relay("the release task failed".into()))
        }
    };
    match &result {
        Ok(r) => {
            gw.metrics.released(r.recipients.len());
            for _ in &r.failed {
                gw.metrics.release_failed();
            }
        }
        Err(ReleaseError::Relay(_)) => gw.metrics.release_failed(),
        Err(_) => {}
    }
    result
}

fn body_json<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("body: {e}")))
}

async fn release_one(
    AxState(gw): AxState<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (who, _) = auth::caller(&gw.live().auth, &headers, Role::Operator)?;
    let b: ReleaseBody = body_json(&body)?;
    let r = release(
        &gw,
        &id,
        b.recipients.as_deref(),
        &actor(who, Via::Api, peer),
        false,
    )
    .await?;
    Ok(axum::Json(r).into_response())
}

async fn approve(
    AxState(gw): AxState<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (who, _) = auth::caller(&gw.live().auth, &headers, Role::Operator)?;
    let r = release(&gw, &id, None, &actor(who, Via::Api, peer), true).await?;
    Ok(axum::Json(r).into_response())
}

/// The answer to a delete or deny. Shared with the UI.
pub fn change_result(id: &str, change: Change, to: State) -> Result<serde_json::Value, ApiError> {
    match change {
        Change::Done { from, .. } => Ok(json!({ "id": id, "from": from, "state": to })),
        Change::NotFound => Err(ApiError(StatusCode::NOT_FOUND, "no such message".into())),
        Change::Conflict(s) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("the message is {s}"),
        )),
    }
}

async fn deny(
    AxState(gw): AxState<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (who, _) = auth::caller(&gw.live().auth, &headers, Role::Operator)?;
    let change = gw.store.db.deny(&id, &actor(who, Via::Api, peer)).await?;
    Ok(axum::Json(change_result(&id, change, State::Held)?).into_response())
}

async fn delete_one(
    AxState(gw): AxState<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (who, _) = auth::caller(&gw.live().auth, &headers, Role::Operator)?;
    let change = gw.store.delete(&id, &actor(who, Via::Api, peer)).await?;
    Ok(axum::Json(change_result(&id, change, State::Deleted)?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    ids: Vec<String>,
}

const MAX_BULK: usize = 1000;

fn bulk_ids(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let b: BulkBody = body_json(body)?;
    if b.ids.is_empty() || b.ids.len() > MAX_BULK {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("ids: between 1 and {MAX_BULK} message ids"),
        ));
    }
    Ok(b.ids)
}

async fn bulk_release(
    AxState(gw): AxState<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (who, _) = auth::caller(&gw.live().auth, &headers, Role::Operator)?;
    let ids = bulk_ids(&body)?;
    let who = actor(who, Via::Api, peer);
    let mut results = Vec::with_capacity(ids.len());
    for id in ids {
        results.push(match release(&gw, &id, None, &who, false).await {
            Ok(r) => json!({ "id": id, "ok": true, "recipients": r.recipients, "failed": r.failed, "state": r.state }),
            Err(e) => json!({ "id": id, "ok": false, "error": e.to_string() }),
        });
    }
    Ok(axum::Json(json!({ "results": results })).into_response())
}

async fn bulk_delete(
    AxState(gw): AxState<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (who, _) = auth::caller(&gw.live().auth, &headers, Role::Operator)?;
    let ids = bulk_ids(&body)?;
    let who = actor(who, Via::Api, peer);
    let mut results = Vec::with_capacity(ids.len());
    for id in ids {
        results.push(match gw.store.delete(&id, &who).await {
            Ok(Change::Done { .. }) => json!({ "id": id, "ok": true, "state": State::Deleted }),
            Ok(Change::NotFound) => json!({ "id": id, "ok": false, "error": "no such message" }),
            Ok(Change::Conflict(s)) => {
                json!({ "id": id, "ok": false, "error": format!("the message is {s}") })
            }
            Err(e) => {
                tracing::error!(error = %e, "quarantine store error");
                json!({ "id": id, "ok": false, "error": "quarantine store unavailable" })
            }
        });
    }
    Ok(axum::Json(json!({ "results": results })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_filters_parse() {
        assert_eq!(time_ms("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(time_ms("2026-11-27"), Some(1_795_737_600_000));
        assert_eq!(time_ms("2026-11-27T12:30:45Z"), Some(1_795_782_645_000));
        assert_eq!(time_ms("2026-13-01"), None);
        let q = list_query(Some(
            "rcpt=a%40b&state=held,release-requested&sort=score&order=asc&limit=5",
        ))
        .unwrap();
        assert_eq!(q.recipient.as_deref(), Some("a@b"));
        assert_eq!(q.states, vec![State::Held, State::ReleaseRequested]);
        assert_eq!((q.sort, q.ascending, q.limit), (Sort::Score, true, 5));
        assert!(list_query(Some("state=bogus")).is_err());
        assert!(list_query(Some("sort=nope")).is_err());
    }
}
