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

mod common;

use common::{Server, percentile, read_response, request};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    by_status: BTreeMap<u16, usize>,
    actions: BTreeMap<String, usize>,
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
