//! Load through the HTTP doors: a real `portcullis serve` process and many
//! concurrent keep-alive clients on loopback.
//!
//! `cargo bench --bench load` runs, each on a fresh server:
//!
//! 1. `/checkv2` with 64 clients, then `/v1/check` with 64 clients, over
//!    the generated corpus: messages/s, latency percentiles, refusals;
//! 2. overload: 10x more clients than the pool admits (workers + queue),
//!    each sending without pause (10 ms after a refusal): how many get
//!    tempfail, latency of the admitted ones, and the server's peak RSS
//!    against an idle baseline.
//!
//! Client and server share the machine's cores, so these are numbers for
//! the whole box, not the server alone. Under `cargo test` (no `--bench`
//! argument) it runs a few requests only, to keep it working.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(config: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, config).expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--milter-listen",
                "none",
                "--config",
            ])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path().join("var"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("serve exited before listening")
                .expect("reading serve's stderr");
            if let Some(a) = line.strip_prefix("portcullis: listening on http://") {
                break a.trim().to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Peak and current resident memory, in MiB.
    fn rss(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kib("VmHWM:") / 1024.0, kib("VmRSS:") / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    by_status: BTreeMap<u16, usize>,
    actions: BTreeMap<String, usize>,
}

async fn read_response(r: &mut AsyncBufReader<TcpStream>) -> std::io::Result<(u16, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).await?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    Ok((status, body))
}

fn request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nRcpt: <user@example.com>\r\nFrom: <sender@example.org>\r\nIP: 192.0.2.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// `clients` connections, each sending requests back to back until
/// `total` have been sent in all.
async fn run(
    addr: &str,
    path: &str,
    corpus: Arc<Vec<Vec<u8>>>,
    clients: usize,
    total: usize,
) -> (Tally, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (addr, path, corpus, next) = (
            addr.to_string(),
            path.to_string(),
            Arc::clone(&corpus),
            Arc::clone(&next),
        );
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut conn: Option<AsyncBufReader<TcpStream>> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let msg = &corpus[i % corpus.len()];
                let req = request(&path, msg);
                let t = Instant::now();
                if conn.is_none() {
                    conn = Some(AsyncBufReader::new(
                        TcpStream::connect(&addr).await.expect("connect"),
                    ));
                }
                let c = conn.as_mut().expect("connected");
                let result = async {
                    c.get_mut().write_all(&req).await?;
                    read_response(c).await
                }
                .await;
                match result {
                    Ok((status, body)) => {
                        tally.latencies.push(t.elapsed());
                        *tally.by_status.entry(status).or_default() += 1;
                        let v: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        let action = v["action"].as_str().unwrap_or("?").to_string();
                        *tally.actions.entry(action).or_default() += 1;
                        // A refusal before the body was read closes the
                        // connection: start a new one.
                        if status == 503 {
                            conn = None;
                            // An MTA retries a deferred message after
                            // minutes; 10 ms keeps the pressure on without
                            // the client spinning on the shared cores.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    Err(_) => {
                        *tally.by_status.entry(0).or_default() += 1;
                        conn = None;
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.expect("client task");
        all.latencies.extend(t.latencies);
        for (k, v) in t.by_status {
            *all.by_status.entry(k).or_default() += v;
        }
        for (k, v) in t.actions {
            *all.actions.entry(k).or_default() += v;
        }
    }
    (all, start.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, tally: &mut Tally, elapsed: Duration, corpus_bytes: f64, per_msg: usize) {
    tally.latencies.sort();
    let ok = tally.by_status.get(&200).copied().unwrap_or(0);
    println!(
        "| {name} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {ok} | {:?} | {:?} |",
        ok as f64 / elapsed.as_secs_f64(),
        ok as f64 * corpus_bytes / per_msg as f64 / elapsed.as_secs_f64() / 1e6,
        percentile(&tally.latencies, 0.5),
        percentile(&tally.latencies, 0.9),
        percentile(&tally.latencies, 0.99),
        tally.by_status,
        tally.actions,
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (messages, total, clients) = if full { (1000, 6000, 64) } else { (20, 40, 4) };
    let corpus = Arc::new(portcullis::samples::corpus(messages, 42));
    let corpus_bytes: f64 = corpus.iter().map(|m| m.len() as f64).sum();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\ncorpus: {messages} messages, {:.1} MB; {cpus} CPUs; client and server on one machine\n",
        corpus_bytes / 1e6
    );
    println!("| run | msg/s | MB/s | p50 ms | p90 ms | p99 ms | answered | statuses | actions |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    for path in ["/checkv2", "/v1/check?report=0"] {
        // The corpus is cycled: with the result cache on, every message
        // after the first thousand would be a cache hit.
        let server = Server::start("[cache]\nentries = 0\n");
        // Warm up: page in the rules and the allocator.
        rt.block_on(run(
            &server.addr,
            path,
            Arc::clone(&corpus),
            2,
            clients.min(20),
        ));
        let (mut tally, elapsed) =
            rt.block_on(run(&server.addr, path, Arc::clone(&corpus), clients, total));
        report(
            &format!("{path}, {clients} clients"),
            &mut tally,
            elapsed,
            corpus_bytes,
            messages,
        );
        assert!(
            tally.by_status.get(&200).copied().unwrap_or(0) > 0,
            "no message answered: {:?}",
            tally.by_status
        );
    }

    // Overload: a pool that admits 2 + 8 = 10, and 10x as many clients.
    let server = Server::start("[server]\nworkers = 2\nqueue = 8\n\n[cache]\nentries = 0\n");
    let (_, idle) = server.rss();
    let clients = if full { 100 } else { 20 };
    let total = if full { 6000 } else { 60 };
    let (mut tally, elapsed) = rt.block_on(run(
        &server.addr,
        "/checkv2",
        Arc::clone(&corpus),
        clients,
        total,
    ));
    let (peak, _) = server.rss();
    report(
        &format!("/checkv2 overload, {clients} clients into a pool of 10"),
        &mut tally,
        elapsed,
        corpus_bytes,
        messages,
    );
    let shed = tally.by_status.get(&503).copied().unwrap_or(0);
    println!(
        "\noverload: {shed} of {total} answered tempfail (soft reject); server RSS idle {idle:.0} MiB, peak {peak:.0} MiB"
    );
    assert_eq!(
        tally.by_status.get(&0).copied().unwrap_or(0),
        0,
        "every request got an answer"
    );
}
