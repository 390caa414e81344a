//! The rules API: `GET /v1/rules` (the running set and what it decided,
//! retro-scan progress) and `POST /v1/rules/preview` (what a candidate set
//! would change, before anyone deploys it).

use super::Gateway;
use super::auth;
use super::quarantine::ApiError;
use crate::Engine;
use crate::config::Role;
use crate::lifecycle::preview::{self, Item, PreviewError, Raw};
use crate::store::{ListQuery, State as QState};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new().route("/v1/rules", get(rules)).route(
        "/v1/rules/preview",
        post(preview_handler).layer(DefaultBodyLimit::max(preview::MAX_BYTES + (1 << 20))),
    )
}

/// `GET /v1/rules`: the running rule set with each rule's metadata and
/// what it has decided since start (auditor).
async fn rules(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let cfg = gw.live();
    if let Err(e) = auth::role(&cfg.auth, &headers, Role::Auditor) {
        return e.into_response();
    }
    let engine = gw.pool.engine();
    let mut stats = gw.metrics.rule_stats();
    let times = gw.pool.rule_times(&engine.rules.version);
    let rules: Vec<serde_json::Value> = engine
        .rules
        .list()
        .into_iter()
        .map(|(namespace, name, meta)| {
            let stat = stats.remove(name).unwrap_or_default();
            serde_json::json!({
                "namespace": namespace,
                "name": name,
                "action": meta.action,
                "score": meta.score,
                "severity": meta.severity,
                "mode": if meta.monitor { "monitor" } else { "enforce" },
                "description": meta.description,
                "messages": stat.by_action,
                "last_hit_ms": (stat.last_hit_ms > 0).then_some(stat.last_hit_ms),
                "scan_time": crate::pool::PROFILING.then(|| {
                    let (c, p) = times
                        .get(&(namespace.to_string(), name.to_string()))
                        .copied()
                        .unwrap_or_default();
                    serde_json::json!({
                        "condition_ms": c.as_secs_f64() * 1000.0,
                        "patterns_ms": p.as_secs_f64() * 1000.0,
                    })
                }),
            })
        })
        .collect();
    // Built-in checks (type mismatch, limits, hash lists...) are findings
    // too, without a rule behind them.
    let checks: Vec<serde_json::Value> = stats
        .into_iter()
        .map(|(name, stat)| {
            serde_json::json!({
                "name": name,
                "messages": stat.by_action,
                "last_hit_ms": (stat.last_hit_ms > 0).then_some(stat.last_hit_ms),
            })
        })
        .collect();
    let retro = gw
        .lifecycle
        .retro
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    axum::Json(serde_json::json!({
        "node": gw.server.node,
        "profiling": crate::pool::PROFILING,
        "retro_scan": retro,
        "rules_version": engine.rules.version,
        "origin": engine.rules.origin,
        "rule_count": engine.rules.rule_count,
        "rules": rules,
        "checks": checks,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewRequest {
    /// The candidate set: path in a rules directory → file text.
    files: BTreeMap<String, String>,
    /// Most messages to look at (newest first), held ones before samples.
    limit: Option<usize>,
    /// Look at the quarantine (default true) and the sample (default true).
    quarantine: Option<bool>,
    sample: Option<bool>,
}

/// `POST /v1/rules/preview` (admin): `{"files": {"x.yar": "rule …"}}`.
/// Compiles the candidate (422 with file:line when it does not), then runs
/// it and the live set over held messages and the sample of recent mail
/// and lists every message whose verdict or matching rules would change.
async fn preview_handler(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let cfg = gw.live();
    auth::caller(&cfg.auth, &headers, Role::Admin)?;
    let req: PreviewRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("request body: {e}")))?;
    let limit = req
        .limit
        .unwrap_or(preview::DEFAULT_MESSAGES)
        .clamp(1, preview::MAX_MESSAGES);
    let Ok(_one) = gw.lifecycle.preview.try_lock() else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "another preview is running; try again when it is done".into(),
        ));
    };
    let files = req.files;
    let candidate = tokio::task::spawn_blocking(move || preview::compile(files))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| match e {
            PreviewError::BadRequest(m) => ApiError(StatusCode::BAD_REQUEST, m),
            PreviewError::Rules(r) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, r.to_string()),
        })?;

    let mut items = Vec::new();
    if req.quarantine.unwrap_or(true) {
        let mut offset = 0;
        while items.len() < limit {
            let page = gw
                .store
                .db
                .list(&ListQuery {
                    states: vec![QState::Held, QState::ReleaseRequested],
                    limit: crate::store::db::MAX_PAGE,
                    offset,
                    ..Default::default()
                })
                .await?;
            let n = page.items.len();
            for m in page.items.into_iter().take(limit - items.len()) {
                items.push(Item {
                    source: "quarantine",
                    id: m.id,
                    received_ms: m.received_ms,
                    sender: m.sender,
                    subject: m.subject,
                    raw: Raw::Blob(m.sha256),
                });
            }
            if n < crate::store::db::MAX_PAGE as usize {
                break;
            }
            offset += n as u64;
        }
    }
    if req.sample.unwrap_or(true) {
        // Newest first, like the quarantine.
        for (id, s) in gw.lifecycle.samples.snapshot().into_iter().rev() {
            if items.len() >= limit {
                break;
            }
            items.push(Item {
                source: "sample",
                id,
                received_ms: s.received_ms,
                sender: s.envelope.mail_from.clone(),
                subject: crate::doors::header_value(&s.raw, "subject"),
                raw: Raw::Bytes(Arc::clone(&s.raw)),
            });
        }
    }
    let live = gw.pool.engine();
    // Its own (empty) result cache: the live one holds the live rules'
    // results.
    let candidate = Engine {
        cache: Arc::new(crate::pipeline::cache::ResultCache::new(
            live.config.cache.clone(),
        )),
        config: Arc::clone(&live.config),
        rules: Arc::new(candidate),
    };
    let store = Arc::clone(&gw.store);
    let report =
        tokio::task::spawn_blocking(move || preview::run(&live, &candidate, items, &store.blobs))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    tracing::info!(
        candidate = %report.candidate_version,
        live = %report.live_version,
        quarantine = report.scanned.quarantine,
        sample = report.scanned.sample,
        changed = report.changed,
        "rule preview"
    );
    Ok(axum::Json(report).into_response())
}
