//! The HTTP side of `serve`: the listener loop, the router, the shared
//! [`Gateway`] the handlers reach, and the plumbing every door shares
//! (bounded body reading, auth, error answers). Protocol mapping lives in
//! [`crate::doors`]; this module never decides anything about mail.
//!
//! The accept loop is ours rather than `axum::serve` so that we can bound
//! connections, time out slow request heads (slowloris) and drain in-flight
//! requests on shutdown.

pub mod auth;
pub mod body;
pub mod events;
pub mod quarantine;
pub mod rules;
pub mod ui;

use crate::config::{Config, ServerConfig};
use crate::doors;
use crate::pool::Pool;
use crate::publish::Metrics;
use crate::publish::metrics::Gauges;
use crate::release::Releaser;
use crate::store::Store;
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Everything a request handler may reach. Stages never see it: they get
/// a `Submission` and an `Engine` through the pool.
pub struct Gateway {
    pub server: ServerConfig,
    pub pool: Pool,
    pub metrics: Metrics,
    pub store: Arc<Store>,
    /// Release, links and stamps (holds the signing keys).
    pub releaser: Releaser,
    /// Reloadable with the rules on SIGHUP.
    pub live: ArcSwap<Config>,
    /// Request-body memory, in KiB permits (see [`body`]).
    pub inflight: Arc<Semaphore>,
    pub inflight_kib: u32,
    /// Where a reload reads from: the config file and `--rules` override.
    pub reload_from: ReloadSource,
    /// One reload at a time (SIGHUP and the API may race), so config and
    /// engine always come from the same reload.
    pub reload_lock: std::sync::Mutex<()>,
    /// The last readiness probe, reused for a second: /readyz is open to
    /// anyone and each probe is an fsync.
    pub readiness: std::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
    /// Fingerprint of the config file and rules directory as the last
    /// (re)load read them; the rules watch reloads when it changes.
    pub rules_print: std::sync::Mutex<String>,
    /// Verdict events: the writer's inbox and the readers' wake-up.
    pub events: Arc<crate::publish::Events>,
    /// Preview sample, preview lock, retro-scan progress.
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// Turns true at shutdown: long-lived responses (event streams) end.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct ReloadSource {
    pub config: Option<PathBuf>,
    pub rules: Option<PathBuf>,
    /// Command-line overrides of server settings, re-applied so a reload
    /// does not report them as changed.
    pub listen: Option<Vec<SocketAddr>>,
    pub data_dir: Option<PathBuf>,
    pub milter_listen: Option<Vec<crate::config::MilterListen>>,
}

impl Gateway {
    /// The current reloadable configuration.
    pub fn live(&self) -> Arc<Config> {
        self.live.load_full()
    }

    pub async fn gauges(&self) -> Gauges {
        use std::sync::atomic::Ordering::Relaxed;
        let engine = self.pool.engine();
        let free_kib = self.inflight.available_permits() as u64;
        Gauges {
            pool_workers: self.pool.size,
            pool_capacity: self.pool.capacity,
            pool_queued: self.pool.stats.queued.load(Relaxed),
            pool_busy: self.pool.stats.busy.load(Relaxed),
            inflight_bytes: (u64::from(self.inflight_kib).saturating_sub(free_kib)) << 10,
            rules_version: engine.rules.version.clone(),
            rule_count: engine.rules.rule_count,
            ready: self.ready().await.is_ok(),
            quarantine_open: self.store.db.open_count().await.unwrap_or(-1),
            rule_times: self.pool.rule_times(&engine.rules.version),
            cache: (
                engine.cache.len(),
                engine.cache.bytes(),
                engine.cache.hits.load(Relaxed),
                engine.cache.misses.load(Relaxed),
            ),
        }
    }

    /// Rules loaded, blob store writable and database answering (probed at
    /// most once a second: /readyz is open to anyone and each probe is an
    /// fsync).
    pub async fn ready(&self) -> Result<(), String> {
        {
            let last = self.readiness.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, result)) = last.as_ref()
                && at.elapsed() < std::time::Duration::from_secs(1)
            {
                return result.clone();
            }
        }
        let result = self.probe().await;
        *self.readiness.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), result.clone()));
        result
    }

    async fn probe(&self) -> Result<(), String> {
        let engine = self.pool.engine();
        if engine.rules.version.is_empty() {
            return Err("no rule set loaded".into());
        }
        self.store
            .blobs
            .check_writable()
            .await
            .map_err(|e| format!("quarantine blob store not writable: {e}"))?;
        self.store
            .db
            .ping()
            .await
            .map_err(|e| format!("quarantine database not answering: {e}"))
    }
}

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/check", post(doors::native::check))
        .route("/v1/scan", post(doors::native::scan))
        .route("/mta-hooks", post(doors::mta_hooks::hook))
        .route("/v1/reload", post(reload))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .merge(rules::routes())
        .merge(quarantine::routes())
        .merge(events::routes())
        .merge(ui::routes())
        // rspamd matches its paths without regard to case and ignores the
        // method (its proxy sends GET with a body), so it takes whatever
        // the routes above do not.
        .fallback(any(doors::rspamd::dispatch))
        .with_state(gateway)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    match gw.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let cfg = gw.live();
    if let Err(e) = auth::hook_or_role(&cfg.auth, peer, &headers, crate::config::Role::Auditor) {
        return e.into_response();
    }
    let gauges = gw.gauges().await;
    let mut page = gw.metrics.render(&gauges);
    gw.events.render(&mut page, &cfg.webhooks);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        page,
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../docs/openapi.json"),
    )
        .into_response()
}

/// `POST /v1/reload`: the same as SIGHUP, for an admin token.
async fn reload(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let cfg = gw.live();
    if let Err(e) = auth::role(&cfg.auth, &headers, crate::config::Role::Admin) {
        return e.into_response();
    }
    let result = tokio::task::spawn_blocking({
        let gw = Arc::clone(&gw);
        move || crate::cli::serve::reload(&gw)
    })
    .await;
    match result {
        Ok(Ok(version)) => {
            axum::Json(serde_json::json!({ "reloaded": true, "rules_version": version }))
                .into_response()
        }
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(serde_json::json!({ "reloaded": false, "error": format!("{e:#}") })),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and waits (up to the drain timeout) for open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    server: &ServerConfig,
    connections: Arc<Semaphore>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout)
        // rspamd's proxy and Haraka send one `Rcpt:` header per recipient;
        // hyper's default of 100 headers would turn a message to 100
        // recipients into a 431 and a retry loop. Postfix allows 1000.
        .max_headers(4096)
        .keep_alive(true)
        .max_buf_size(1 << 20);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&connections).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let header_timeout = server.header_timeout;
        tokio::spawn(async move {
            // Exim's rspamd variant speaks rspamd's older text protocol on
            // the same port; everything else is HTTP.
            if crate::doors::rspamc::sniff(&stream, header_timeout).await
                == crate::doors::rspamc::Sniffed::Rspamc
            {
                crate::doors::rspamc::serve(stream, peer, router, header_timeout).await;
                // Held until the reply is written: the graceful shutdown
                // waits for every watcher, so RSPAMC requests in flight
                // are drained like HTTP ones.
                drop(watcher);
                drop(permit);
                return;
            }
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    router.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let conn = watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(server.drain_timeout) => {
            tracing::warn!("drain timeout: closing connections with requests still open");
        }
    }
}
