//! `portcullis serve`: start-up, signals and reload. The service itself is
//! in [`crate::http`] and [`crate::doors`].

use crate::Engine;
use crate::config::{Config, parse_listen};
use crate::http::{Gateway, ReloadSource};
use crate::pool::Pool;
use crate::publish::Metrics;
use crate::release::{Keys, Releaser};
use crate::rules::RuleSet;
use crate::store::Store;
use anyhow::Context;
use arc_swap::ArcSwap;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::Semaphore;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config; built-in defaults when omitted.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// HTTP listen address (repeatable); replaces `server.listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Vec<String>,
    /// State directory (quarantine, signing secret); replaces `server.data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Milter listen address, `ADDR:PORT` or `unix:/path` (repeatable);
    /// replaces `milter.listen`. `--milter-listen none` turns it off.
    #[arg(long, value_name = "ADDR")]
    milter_listen: Vec<String>,
    /// Rules directory; replaces `rules.dir` (default: the bundled rules).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
}

/// Reads the config and rules named by `source`, with the command-line
/// overrides applied.
/// `print` gets the fingerprint of the config file and rules directory,
/// each taken before it is read, so an edit that lands during the load is
/// seen as a change by the watch afterwards.
fn load(source: &ReloadSource, print: &mut String) -> anyhow::Result<(Config, RuleSet)> {
    let config_print = fingerprint(source.config.as_deref());
    let mut config = match &source.config {
        Some(path) => Config::load(path)?,
        None => Config::defaults(),
    };
    if let Some(listen) = &source.listen {
        config.server.listen = listen.clone();
    }
    if let Some(dir) = &source.data_dir {
        config.server.data_dir = dir.clone();
    }
    if let Some(milter) = &source.milter_listen {
        config.milter.listen = milter.clone();
    }
    if let Some(dir) = &source.rules {
        config.rules_dir = Some(dir.clone());
    }
    *print = format!("{config_print}{}", fingerprint(config.rules_dir.as_deref()));
    let rules = match &config.rules_dir {
        Some(dir) => RuleSet::load_dir(dir)?,
        None => RuleSet::bundled()?,
    };
    Ok((config, rules))
}

/// Re-reads config and rules and swaps them in. Compiles first: on any
/// error the running set stays and the error is returned. Blocking.
pub fn reload(gw: &Gateway) -> anyhow::Result<String> {
    let _one_at_a_time = gw.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
    let mut print = String::new();
    let result = load(&gw.reload_from, &mut print);
    // Even a failed reload records what it read: the watch retries only
    // when the files change again.
    *gw.rules_print.lock().unwrap_or_else(|e| e.into_inner()) = print;
    gw.metrics.reload(result.is_ok());
    let (config, rules) = result?;
    if config.server != gw.server || config.milter.listen != gw.live().milter.listen {
        tracing::warn!(
            "[server] and milter.listen changed: they take effect on restart, not on reload"
        );
    }
    let version = rules.version.clone();
    let count = rules.rule_count;
    gw.live.store(Arc::new(config.clone()));
    gw.pool.swap_engine(Engine::new(config, rules));
    tracing::info!(rules_version = %version, rules = count, "reloaded config and rules");
    Ok(version)
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let listen = if args.listen.is_empty() {
        None
    } else {
        Some(
            args.listen
                .iter()
                .map(|l| parse_listen(l))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    let milter_listen = if args.milter_listen.is_empty() {
        None
    } else if args.milter_listen.iter().any(|l| l == "none") {
        Some(Vec::new())
    } else {
        Some(
            args.milter_listen
                .iter()
                .map(|l| l.parse())
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    let source = ReloadSource {
        config: args.config,
        rules: args.rules,
        listen,
        data_dir: args.data_dir,
        milter_listen,
    };
    let mut print = String::new();
    let (config, rules) = load(&source, &mut print)?;
    let server = config.server.clone();
    // Network I/O and the database only: inspection runs on the pool's own
    // threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (store, keys) = runtime.block_on(open_store(&config))?;
    let workers = server.worker_count();
    tracing::info!(
        rules_version = %rules.version,
        rules = rules.rule_count,
        origin = %rules.origin,
        workers,
        queue = server.queue,
        database = store.db.backend.as_str(),
        "starting"
    );
    let engine = Arc::new(ArcSwap::from_pointee(Engine::new(config.clone(), rules)));
    let pool = Pool::start(engine, workers, server.queue);
    let inflight_kib = u32::try_from(server.max_inflight_bytes >> 10).unwrap_or(u32::MAX);
    let (events, event_rx) = crate::publish::Events::new(
        server.node.clone(),
        config.events.queue,
        config.events.max_streams,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let gateway = Arc::new(Gateway {
        server: server.clone(),
        pool,
        metrics: Metrics::default(),
        releaser: Releaser {
            store: Arc::clone(&store),
            keys,
        },
        store,
        live: ArcSwap::from_pointee(config),
        inflight: Arc::new(Semaphore::new(inflight_kib as usize)),
        inflight_kib,
        reload_from: source,
        reload_lock: std::sync::Mutex::new(()),
        readiness: std::sync::Mutex::new(None),
        rules_print: std::sync::Mutex::new(print),
        events: Arc::new(events),
        lifecycle: Default::default(),
        stop: stop_rx,
    });

    let result = runtime.block_on(serve(Arc::clone(&gateway), stop_tx, event_rx));
    // Workers finish what was admitted, then stop.
    gateway.pool.shutdown();
    result.map(|()| ExitCode::SUCCESS)
}

/// Opens the quarantine (blobs, database, migrations) and loads the
/// signing keys. Interrupted releases are recovered by `serve`'s
/// housekeeping once stale, never here: `portcullis digest` opens the
/// store too, beside a running `serve`.
pub async fn open_store(config: &Config) -> anyhow::Result<(Arc<Store>, Keys)> {
    let data_dir = &config.server.data_dir;
    let store = Store::open(
        data_dir,
        config.quarantine.database.as_deref(),
        config.quarantine.s3.as_ref(),
    )
    .await
    .with_context(|| format!("opening the quarantine in {}", data_dir.display()))?;
    tracing::info!(blobs = %store.blobs.describe(), "quarantine store open");
    let secret = config
        .release
        .secret_file
        .clone()
        .unwrap_or_else(|| data_dir.join("secret.key"));
    let mut keys = Keys::load_or_create(&secret)?;
    for old in &config.release.previous_secret_files {
        keys.add_previous(old)?;
    }
    Ok((Arc::new(store), keys))
}

async fn serve(
    gw: Arc<Gateway>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    event_rx: tokio::sync::mpsc::Receiver<crate::store::events::NewEvent>,
) -> anyhow::Result<()> {
    for w in &gw.live().webhooks {
        gw.store
            .db
            .webhook_init(&w.name)
            .await
            .with_context(|| format!("creating the delivery cursor of webhook {}", w.name))?;
    }
    let mut listeners = Vec::new();
    for addr in &gw.server.listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (set server.listen or --listen)"))?;
        let bound = l.local_addr().unwrap_or(*addr);
        tracing::info!(address = %bound, "listening");
        // Tests and scripts wait for this exact line to learn the port.
        eprintln!("portcullis: listening on http://{bound}");
        listeners.push(l);
    }
    let mut milters = Vec::new();
    for listen in &gw.live().milter.listen {
        let l = crate::doors::milter::bind(listen).await.with_context(|| {
            format!("cannot listen for milter on {listen} (set milter.listen or --milter-listen)")
        })?;
        let bound = crate::doors::milter::local_addr(&l, listen);
        tracing::info!(address = %bound, "milter listening");
        eprintln!("portcullis: milter listening on {bound}");
        milters.push(l);
    }
    let stop_rx = gw.stop.clone();
    // Publishing outlives the doors at shutdown: it stops on `flush`,
    // after the last message in flight has its verdict.
    let (flush_tx, flush_rx) = tokio::sync::watch::channel(false);
    let mut publishing = tokio::task::JoinSet::new();
    publishing.spawn(crate::publish::events::writer(
        Arc::clone(&gw.events),
        Arc::clone(&gw.store),
        event_rx,
        flush_rx.clone(),
    ));
    if let Some(path) = gw.live().events.audit_log.clone() {
        let path = if path.is_absolute() {
            path
        } else {
            gw.server.data_dir.join(path)
        };
        publishing.spawn(crate::publish::audit_log::run(
            Arc::clone(&gw),
            path,
            flush_rx.clone(),
        ));
    }
    let connections = Arc::new(Semaphore::new(gw.server.max_connections));
    let router = crate::http::router(Arc::clone(&gw));
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        let router = router.clone();
        let server = gw.server.clone();
        let connections = Arc::clone(&connections);
        let stop = stop_rx.clone();
        tasks.spawn(async move { crate::http::serve(l, router, &server, connections, stop).await });
    }

    for l in milters {
        let gw = Arc::clone(&gw);
        let stop = stop_rx.clone();
        tasks.spawn(async move { crate::doors::milter::serve(gw, l, stop).await });
    }

    tasks.spawn(housekeeping(Arc::clone(&gw), stop_rx.clone()));
    tasks.spawn(watch_rules(Arc::clone(&gw), stop_rx.clone()));
    tasks.spawn(crate::lifecycle::retro::run(
        Arc::clone(&gw),
        stop_rx.clone(),
    ));
    tasks.spawn(crate::publish::webhooks::supervise(
        Arc::clone(&gw),
        stop_rx.clone(),
    ));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => {
                reload_logged(&gw).await;
            }
        }
    }
    tracing::info!("shutting down: no new connections, draining messages in flight");
    eprintln!("portcullis: shutting down, draining");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let _ = flush_tx.send(true);
    while publishing.join_next().await.is_some() {}
    tracing::info!("drained");
    eprintln!("portcullis: stopped");
    Ok(())
}

/// `reload` off the runtime, its failure logged (SIGHUP and the watch have
/// nobody to answer).
async fn reload_logged(gw: &Arc<Gateway>) {
    let g = Arc::clone(gw);
    match tokio::task::spawn_blocking(move || reload(&g)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(
            error = %format!("{e:#}"),
            "reload failed; the previous config and rules stay active"
        ),
        Err(e) => tracing::error!(error = %e, "reload task failed"),
    }
}

/// A file's or directory's fingerprint; empty for none.
fn fingerprint(path: Option<&std::path::Path>) -> String {
    path.map(|p| crate::rules::fingerprint(&[p]))
        .unwrap_or_default()
}

/// The fingerprint `load` would record now, as `load` computes it.
fn current_print(gw: &Gateway) -> String {
    format!(
        "{}{}",
        fingerprint(gw.reload_from.config.as_deref()),
        fingerprint(gw.live().rules_dir.as_deref())
    )
}

/// Reloads when the rules directory or the config file changes (polling a
/// fingerprint of names, sizes and times: no inotify limits, works on
/// network filesystems). A change that does not compile is logged once and
/// the running set stays until the files change again.
async fn watch_rules(gw: Arc<Gateway>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let every = gw
            .live()
            .rules_watch
            // Off: look again in a while in case a reload turns it on.
            .unwrap_or(std::time::Duration::from_secs(5));
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if gw.live().rules_watch.is_none() {
            continue;
        }
        let g = Arc::clone(&gw);
        let Ok(now) = tokio::task::spawn_blocking(move || current_print(&g)).await else {
            continue;
        };
        let last = gw
            .rules_print
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if now == last {
            continue;
        }
        tracing::info!("rules or config changed on disk: reloading");
        reload_logged(&gw).await;
    }
}

/// Retention sweeps and scheduled digests, until shutdown.
async fn housekeeping(gw: Arc<Gateway>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut next_sweep = tokio::time::Instant::now();
    let mut next_digest = gw
        .live()
        .digest
        .interval
        .map(|i| tokio::time::Instant::now() + i);
    loop {
        let wake = match next_digest {
            Some(d) => next_sweep.min(d),
            None => next_sweep,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = stop.changed() => return,
        }
        let cfg = gw.live();
        let now = tokio::time::Instant::now();
        if now >= next_sweep {
            // A release that has not finished in twice the relay timeout
            // (plus a minute) is not running any more, on any node.
            let stale = (cfg.release.timeout * 2 + std::time::Duration::from_secs(60)).as_millis();
            match gw.store.db.recover(stale as i64).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    recipients = n,
                    "interrupted releases are back in the queue (the relay may get them twice)"
                ),
                Err(e) => tracing::error!(error = %e, "recovering interrupted releases failed"),
            }
            match gw.store.sweep(crate::store::now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "retention: held messages expired"),
                Err(e) => tracing::error!(error = %e, "retention sweep failed"),
            }
            let before = crate::store::now_ms() - cfg.events.retention.as_millis() as i64;
            match gw.store.db.prune_events(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "retention: old events deleted"),
                Err(e) => tracing::error!(error = %e, "event retention failed"),
            }
            next_sweep = now + cfg.quarantine.sweep_interval;
        }
        if next_digest.is_some_and(|d| now >= d) {
            match crate::release::digest::send_all(&gw.releaser, &cfg).await {
                Ok(run) => tracing::info!(
                    recipients = run.recipients,
                    messages = run.messages,
                    failed = run.failed.len(),
                    "digests sent"
                ),
                Err(e) => tracing::error!(error = %e, "digest run failed"),
            }
        }
        // A reload may turn digests on, off or change their interval.
        next_digest = match (cfg.digest.interval, next_digest) {
            (None, _) => None,
            (Some(i), Some(d)) if d > now => Some(d.min(now + i)),
            (Some(i), _) => Some(now + i),
        };
    }
}
