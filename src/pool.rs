//! The bounded inspection pool: a fixed set of OS threads, each with its own
//! [`Inspector`](crate::Inspector) (a yara-x scanner is not `Send`), fed by
//! a bounded queue. Doors never wait for room: [`Pool::submit`] either
//! admits a message or says [`PoolError::Overloaded`] at once, and the door
//! answers its protocol's tempfail. Memory held by waiting messages is
//! therefore bounded by `queue` and the body limits.
//!
//! Rule reloads swap the [`Engine`] behind an `ArcSwap`; each worker picks
//! the new one up before its next message, so a message is always inspected
//! by exactly one complete rule set.

use crate::Engine;
use crate::model::Submission;
use crate::pipeline::{PipelineError, Report, RuleTime};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    #[error("inspection pool is full")]
    Overloaded,
    /// Waited in the queue past its time budget: inspecting it now would
    /// only answer after the MTA gave up.
    #[error("message waited {0:?} in the queue")]
    Expired(Duration),
    #[error("inspection pool is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

struct Job {
    submission: Submission,
    admitted: Instant,
    reply: oneshot::Sender<Result<Report, PoolError>>,
    /// Whatever must live as long as the message is held (the door's share
    /// of the in-flight memory budget): dropped by the worker with the
    /// message, not when the client goes away.
    _hold: Option<Box<dyn Send>>,
}

/// Takes a job out of the books when it is done, whatever way it ends
/// (answered, skipped, or a panic that kills the worker thread).
struct InSystem<'a>(&'a PoolStats);

impl Drop for InSystem<'_> {
    fn drop(&mut self) {
        self.0.in_system.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Admitted and not yet answered: the number capacity is checked against.
    pub in_system: AtomicUsize,
    /// Admitted and not yet picked up by a worker.
    pub queued: AtomicUsize,
    /// Being inspected right now.
    pub busy: AtomicUsize,
    /// Each worker's latest per-rule times, with the rules version its
    /// scanner belongs to (`rules-profiling` builds only).
    pub rule_times: Mutex<Vec<(String, Vec<RuleTime>)>>,
}

/// Whether this build measures per-rule scan time.
pub const PROFILING: bool = cfg!(feature = "rules-profiling");

pub struct Pool {
    tx: Mutex<Option<SyncSender<Job>>>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    engine: Arc<ArcSwap<Engine>>,
    pub stats: Arc<PoolStats>,
    pub size: usize,
    pub capacity: usize,
}

impl Pool {
    /// `workers` threads and room for `queue` waiting messages.
    pub fn start(engine: Arc<ArcSwap<Engine>>, workers: usize, queue: usize) -> Pool {
        let workers = workers.max(1);
        // A zero-capacity sync channel is a rendezvous: `try_send` would
        // then fail whenever no worker happens to be blocked in `recv`.
        // Admission is counted separately, so the channel only needs room.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(workers + queue);
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(PoolStats {
            rule_times: Mutex::new(vec![(String::new(), Vec::new()); workers]),
            ..Default::default()
        });
        let handles = (0..workers)
            .map(|i| {
                let rx = Arc::clone(&rx);
                let engine = Arc::clone(&engine);
                let stats = Arc::clone(&stats);
                std::thread::Builder::new()
                    .name(format!("inspect-{i}"))
                    // Deeply nested input is walked iteratively, but
                    // mail-parser and the decompressors still recurse a
                    // little; match the CLI workers.
                    .stack_size(16 << 20)
                    .spawn(move || worker(i, &rx, &engine, &stats))
                    .expect("spawning an inspection thread at start-up")
            })
            .collect();
        Pool {
            tx: Mutex::new(Some(tx)),
            workers: Mutex::new(handles),
            engine,
            stats,
            size: workers,
            capacity: workers + queue,
        }
    }

    /// Per-rule scan time summed over the workers whose scanners run
    /// `version` (times are per scanner, and a reload makes new ones).
    pub fn rule_times(
        &self,
        version: &str,
    ) -> std::collections::BTreeMap<(String, String), (Duration, Duration)> {
        let mut out = std::collections::BTreeMap::new();
        let all = self
            .stats
            .rule_times
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (v, times) in all.iter() {
            if v != version {
                continue;
            }
            for t in times {
                let e: &mut (Duration, Duration) = out
                    .entry((t.namespace.clone(), t.rule.clone()))
                    .or_default();
                e.0 += t.condition;
                e.1 += t.patterns;
            }
        }
        out
    }

    /// The engine new messages are inspected with.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.load_full()
    }

    /// Replaces the engine; messages already being inspected finish with the
    /// old one.
    pub fn swap_engine(&self, engine: Engine) {
        self.engine.store(Arc::new(engine));
    }

    /// True when a message arriving now would be refused. Doors ask before
    /// reading a body so that shedding load costs no body reading; the
    /// admission itself is still decided by [`submit`](Self::submit).
    pub fn is_full(&self) -> bool {
        self.stats.in_system.load(Ordering::Acquire) >= self.capacity
    }

    /// Admits a message or refuses at once; never blocks. `hold` is kept
    /// until a worker is done with the message.
    pub async fn inspect(
        &self,
        submission: Submission,
        hold: Option<Box<dyn Send>>,
    ) -> Result<Report, PoolError> {
        let rx = self.submit(submission, hold)?;
        rx.await.unwrap_or(Err(PoolError::ShuttingDown))
    }

    pub fn submit(
        &self,
        submission: Submission,
        hold: Option<Box<dyn Send>>,
    ) -> Result<oneshot::Receiver<Result<Report, PoolError>>, PoolError> {
        let admitted =
            self.stats
                .in_system
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.capacity).then_some(n + 1)
                });
        if admitted.is_err() {
            return Err(PoolError::Overloaded);
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            submission,
            admitted: Instant::now(),
            reply,
            _hold: hold,
        };
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = guard.as_ref() else {
            self.stats.in_system.fetch_sub(1, Ordering::AcqRel);
            return Err(PoolError::ShuttingDown);
        };
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.in_system.fetch_sub(1, Ordering::AcqRel);
                Err(match e {
                    TrySendError::Full(_) => PoolError::Overloaded,
                    TrySendError::Disconnected(_) => PoolError::ShuttingDown,
                })
            }
        }
    }

    /// Stops admitting, lets the workers finish what was admitted, and
    /// waits for them.
    pub fn shutdown(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let handles = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

fn worker(index: usize, rx: &Mutex<Receiver<Job>>, engine: &ArcSwap<Engine>, stats: &PoolStats) {
    let mut carried: Option<Job> = None;
    loop {
        // One engine (and its scanner) per generation of the rule set.
        let current = engine.load_full();
        let mut inspector = current.inspector();
        let mut published = Instant::now();
        loop {
            let job = match carried.take() {
                Some(job) => job,
                None => {
                    let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match next {
                        Ok(job) => job,
                        Err(_) => return,
                    }
                }
            };
            if !Arc::ptr_eq(&engine.load(), &current) {
                carried = Some(job);
                break;
            }
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            let done = InSystem(stats);
            let waited = job.admitted.elapsed();
            let Job {
                submission,
                admitted,
                reply,
                _hold,
            } = job;
            let result = if reply.is_closed() {
                // The client went away while it waited: nobody to answer.
                None
            } else if waited > current.config.limits.time_budget {
                Some(Err(PoolError::Expired(waited)))
            } else {
                stats.busy.fetch_add(1, Ordering::Relaxed);
                // The budget started at admission: queueing counts.
                let result = inspector
                    .inspect_since(&submission, admitted)
                    .map_err(PoolError::Pipeline);
                stats.busy.fetch_sub(1, Ordering::Relaxed);
                Some(result)
            };
            // Out of the books (and the memory share released) before the
            // answer goes out: a client that sends its next message the
            // moment it has this answer must find the room free.
            drop((submission, _hold));
            drop(done);
            if let Some(result) = result {
                let _ = reply.send(result);
            }
            if PROFILING && published.elapsed() > Duration::from_secs(2) {
                published = Instant::now();
                let times = inspector.rule_times();
                if let Some(slot) = stats
                    .rule_times
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(index)
                {
                    *slot = (current.rules.version.clone(), times);
                }
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
