//! Portcullis beside ClamAV's clamd, on one generated corpus, each with
//! its own best client and the same concurrency, from one run.
//!
//! `cargo bench --bench versus` (clamd from Debian's clamav-daemon; no
//! signature download here, so clamd gets the EICAR signature and the
//! bundled YARA rules it can load). Options after `--`:
//! `--messages N` (1000), `--clients N` (8).
//!
//! - Portcullis: `portcullis serve`, `/v1/check` over keep-alive HTTP/1.
//! - clamd: `INSTREAM` over TCP, one connection per message, as clamdscan
//!   `--stream` and mail filters (clamav-milter, amavis) use it.
//!
//! Every message is sent once to each (no repeats for either cache to
//! hit, beyond attachments the corpus itself repeats). Reported: messages/s,
//! p50/p99 latency, the daemon's peak RSS, detections, and whether
//! Portcullis caught every message clamd flagged. Under `cargo test` (no
//! `--bench`) it runs 24 messages to keep the machinery working, and
//! still fails if clamd catches something Portcullis does not.

mod common;

use common::{Server, percentile, read_response, request};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;

struct Clamd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Clamd {
    fn start(threads: usize) -> Clamd {
        let bin = ["/usr/sbin/clamd", "/usr/bin/clamd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("clamd is not installed: run ./scripts/test as root (Debian's clamav-daemon)");
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).expect("db dir");
        // EICAR as a body signature (anywhere in any object), the way
        // ClamAV's own test signature matches.
        let eicar = hex::encode(portcullis::samples::eicar());
        std::fs::write(
            db.join("eicar.ndb"),
            format!("Eicar-Test-Signature:0:*:{eicar}\n"),
        )
        .expect("eicar.ndb");
        let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
        for e in std::fs::read_dir(rules).expect("rules").flatten() {
            if e.path().extension().is_some_and(|x| x == "yar") {
                std::fs::copy(e.path(), db.join(e.file_name())).expect("copy rule");
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nTCPSocket {port}\nTCPAddr 127.0.0.1\nDatabaseDirectory {}\n\
                 LogFile {}\nMaxThreads {threads}\nMaxQueue 200\nStreamMaxLength 100M\n",
                db.display(),
                dir.path().join("clamd.log").display()
            ),
        )
        .expect("clamd.conf");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting clamd");
        let clamd = Clamd {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while clamd.ping().is_err() {
            assert!(Instant::now() < deadline, "clamd did not answer PING");
            std::thread::sleep(Duration::from_millis(100));
        }
        clamd
    }

    fn ping(&self) -> std::io::Result<()> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.write_all(b"zPING\0")?;
        let mut r = String::new();
        s.read_to_string(&mut r)?;
        if r.starts_with("PONG") {
            Ok(())
        } else {
            Err(std::io::ErrorKind::Other.into())
        }
    }

    fn signatures(&self) -> usize {
        let log = std::fs::read_to_string(self._dir.path().join("clamd.log")).unwrap_or_default();
        log.lines()
            .find_map(|l| {
                l.strip_prefix("Loaded ")?
                    .strip_suffix(" signatures.")?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scan: latency and whether it flagged the message.
type Outcome = (usize, Duration, bool);

async fn clamd_scan(port: u16, msg: &[u8]) -> std::io::Result<bool> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    s.write_all(b"zINSTREAM\0").await?;
    for chunk in msg.chunks(1 << 16) {
        s.write_all(&(chunk.len() as u32).to_be_bytes()).await?;
        s.write_all(chunk).await?;
    }
    s.write_all(&[0, 0, 0, 0]).await?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await?;
    let reply = String::from_utf8_lossy(&reply);
    if reply.contains("FOUND") {
        Ok(true)
    } else if reply.trim_end_matches('\0').ends_with("OK") {
        Ok(false)
    } else {
        Err(std::io::Error::other(format!("clamd: {reply}")))
    }
}

async fn run_clamd(
    port: u16,
    corpus: Arc<Vec<Vec<u8>>>,
    clients: usize,
) -> (Vec<Outcome>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (corpus, next) = (Arc::clone(&corpus), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(msg) = corpus.get(i) else { break };
                let t = Instant::now();
                let flagged = clamd_scan(port, msg).await.expect("clamd scan");
                out.push((i, t.elapsed(), flagged));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    (all, start.elapsed())
}

async fn run_portcullis(
    addr: &str,
    corpus: Arc<Vec<Vec<u8>>>,
    clients: usize,
) -> (Vec<Outcome>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (corpus, next, addr) = (Arc::clone(&corpus), Arc::clone(&next), addr.to_string());
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut conn = AsyncBufReader::new(stream);
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(msg) = corpus.get(i) else { break };
                let t = Instant::now();
                conn.get_mut()
                    .write_all(&request("/v1/check", msg))
                    .await
                    .expect("send");
                let (status, body) = read_response(&mut conn).await.expect("response");
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                let flagged = !matches!(v["action"].as_str(), Some("accept") | Some("tag"));
                out.push((i, t.elapsed(), flagged));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    (all, start.elapsed())
}

fn arg(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

struct Row {
    rate: f64,
    p50: f64,
    p99: f64,
    rss: f64,
    /// The daemon's own CPU time per message (clients not counted).
    cpu_ms: f64,
    flagged: Vec<bool>,
}

fn row(mut outcomes: Vec<Outcome>, elapsed: Duration, rss: f64, cpu: f64, n: usize) -> Row {
    let mut flagged = vec![false; n];
    for (i, _, f) in &outcomes {
        flagged[*i] = *f;
    }
    outcomes.sort_by_key(|o| o.1);
    let lat: Vec<Duration> = outcomes.iter().map(|o| o.1).collect();
    Row {
        rate: n as f64 / elapsed.as_secs_f64(),
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        rss,
        cpu_ms: cpu * 1000.0 / n as f64,
        flagged,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let messages = arg("--messages").unwrap_or(if full { 1000 } else { 24 });
    let clients = arg("--clients").unwrap_or(8);
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let corpus = Arc::new(portcullis::samples::corpus(messages, 1009));
    let bytes: usize = corpus.iter().map(Vec::len).sum();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let clamd = Clamd::start(clients.max(cpus));
    let c_cpu = common::cpu_seconds(clamd.child.id());
    let (c, c_time) = rt.block_on(run_clamd(clamd.port, Arc::clone(&corpus), clients));
    let c_cpu = common::cpu_seconds(clamd.child.id()) - c_cpu;
    let c_rss = common::rss(clamd.child.id()).0;
    let signatures = clamd.signatures();
    drop(clamd);

    // Defaults, but a queue as deep as the clients so none is refused.
    let server = Server::start(&format!("[server]\nqueue = {}\n", clients * 2));
    let p_cpu = common::cpu_seconds(server.child.id());
    let (p, p_time) = rt.block_on(run_portcullis(&server.addr, Arc::clone(&corpus), clients));
    let p_cpu = common::cpu_seconds(server.child.id()) - p_cpu;
    let p_rss = server.rss().0;
    drop(server);

    let c = row(c, c_time, c_rss, c_cpu, messages);
    let p = row(p, p_time, p_rss, p_cpu, messages);
    let missed: Vec<usize> = (0..messages)
        .filter(|&i| c.flagged[i] && !p.flagged[i])
        .collect();
    let count = |r: &Row| r.flagged.iter().filter(|f| **f).count();
    println!(
        "\ncorpus: {messages} messages, {:.1} MB (samples::corpus seed 1009); {clients} clients each; {cpus} CPUs; clamd with {signatures} signatures\n",
        bytes as f64 / 1e6
    );
    println!("| | messages/s | p50 ms | p99 ms | daemon CPU ms/message | peak RSS MiB | flagged |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, r) in [("Portcullis", &p), ("clamd", &c)] {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.3} | {:.0} | {} |",
            r.rate,
            r.p50,
            r.p99,
            r.cpu_ms,
            r.rss,
            count(r)
        );
    }
    println!(
        "| Portcullis ÷ clamd | {:.1}x | {:.2}x | {:.2}x | {:.2}x | {:.2}x | missed of clamd's: {} |",
        p.rate / c.rate,
        p.p50 / c.p50,
        p.p99 / c.p99,
        p.cpu_ms / c.cpu_ms,
        p.rss / c.rss,
        missed.len()
    );
    assert!(
        missed.is_empty(),
        "Portcullis let through what clamd caught: messages {missed:?}"
    );
    assert!(
        count(&c) > 0 || messages < 50,
        "clamd flagged nothing: its database did not load"
    );
}
