//! A real `portcullis serve` process on a loopback port, and a small HTTP/1
//! client that lets tests write exactly the bytes a given client sends
//! (HTTP/1.0, chunked bodies, odd header case) and read the raw reply.
//! No sleeps to wait for start-up: the server prints its address when it
//! listens.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    milter: Arc<Mutex<Option<SocketAddr>>>,
    pub dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

impl Server {
    /// Starts with `config` (TOML) and the data dir inside a fresh temp dir.
    pub fn start(config: &str) -> Server {
        Server::start_args(config, &[])
    }

    pub fn start_args(config: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, config).expect("writing config");
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.path().join("var"))
            .args(["--milter-listen", "127.0.0.1:0"])
            .args(extra)
            .current_dir(dir.path());
        Server::spawn(cmd, dir)
    }

    /// A new `serve` on the config and data directory `start` made in
    /// `dir` (an earlier server's `dir`, after it was killed).
    pub fn serve_on(dir: &Path) -> Server {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(dir.join("portcullis.toml"))
            .args(["--listen", "127.0.0.1:0", "--milter-listen", "none"])
            .arg("--data-dir")
            .arg(dir.join("var"));
        Server::spawn(cmd, tempfile::tempdir().expect("temp dir"))
    }

    /// Runs `cmd` (a `serve` command) and waits for its first listen line.
    pub fn spawn(mut cmd: Command, dir: tempfile::TempDir) -> Server {
        cmd.env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("starting portcullis serve");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = Arc::clone(&log);
        let milter = Arc::new(Mutex::new(None));
        let milter2 = Arc::clone(&milter);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("portcullis: milter listening on inet:") {
                    *milter2.lock().unwrap() = addr.trim().parse().ok();
                }
                if let Some(addr) = line.strip_prefix("portcullis: listening on http://")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>().ok());
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Some(addr)) => addr,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve did not start; its log:\n{}", log.lock().unwrap());
            }
        };
        Server {
            child: Some(child),
            addr,
            milter,
            dir,
            log,
        }
    }

    /// The milter door's TCP address (printed right after the HTTP ones).
    pub fn milter_addr(&self) -> SocketAddr {
        eventually(Duration::from_secs(30), || *self.milter.lock().unwrap())
            .unwrap_or_else(|| panic!("no milter listener; log:\n{}", self.log()))
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success());
    }

    /// SIGTERM, then waits for the exit; the data directory stays (for a
    /// restart on it).
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        self.signal("TERM");
        self.wait_exit(within)
    }

    /// Waits for the process to exit by itself (after SIGTERM).
    pub fn wait(mut self, within: Duration) -> std::process::ExitStatus {
        self.wait_exit(within)
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for serve") {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve did not exit within {within:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connecting to serve");
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s
    }

    /// Sends raw request bytes on a new connection and reads one reply.
    pub fn raw(&self, request: &[u8]) -> Response {
        let mut s = self.connect();
        s.write_all(request).expect("writing request");
        read_response(&mut BufReader::new(s)).expect("reading response")
    }

    /// An HTTP/1.1 request with Content-Length and Connection: close.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.raw(&request_bytes(method, path, headers, body))
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        self.request("POST", path, headers, body)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    /// Every quarantined message as the store's detail (envelope, door,
    /// report, sha256, recipients, audit), oldest first. Read straight
    /// from the server's SQLite index (WAL lets a reader in beside it).
    pub fn quarantine_records(&self) -> Vec<serde_json::Value> {
        let data_dir = self.dir.path().join("var");
        block_on(async move {
            let store = portcullis::store::Store::open(&data_dir, None, None)
                .await
                .expect("opening the server's quarantine");
            let page = store
                .db
                .list(&portcullis::store::ListQuery {
                    limit: 500,
                    ascending: true,
                    ..Default::default()
                })
                .await
                .expect("listing the quarantine");
            let mut out = Vec::new();
            for item in page.items {
                let d = store
                    .db
                    .detail(&item.id)
                    .await
                    .expect("detail")
                    .expect("row");
                out.push(serde_json::to_value(&d).expect("detail is JSON"));
            }
            out
        })
    }

    /// One quarantined message by id (see `quarantine_records`).
    pub fn quarantine_record(&self, id: &str) -> serde_json::Value {
        self.quarantine_records()
            .into_iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no quarantined message {id}"))
    }

    pub fn metrics(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    }

    /// The current value of an unlabelled series.
    pub fn metric(&self, series: &str) -> Option<u64> {
        metric_value(&self.metrics(), series)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A body in HTTP/1.1 chunked encoding, in pieces of `size`.
pub fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Reads one HTTP/1 response; leaves the stream at the next one.
pub fn read_response(r: &mut impl BufRead) -> std::io::Result<Response> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let _version = parts.next();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        std::io::Read::read_exact(r, &mut body)?;
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            std::io::Read::read_exact(r, &mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        std::io::Read::read_to_end(r, &mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A free loopback port (for peers that cannot be told to use port 0).
/// The value of an unlabelled series in a metrics page, `None` when it is
/// not there.
pub fn metric_value(page: &str, series: &str) -> Option<u64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `f` until it returns Some, up to `within`.
pub fn eventually<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Is `name` on PATH?
pub fn have(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// The sample with this name.
pub fn sample(name: &str) -> Vec<u8> {
    crate::util::samples()
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sample {name}"))
        .data
        .clone()
}

/// Runs a future to completion on a throwaway runtime (tests are sync).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}

/// A real SMTP server (aiosmtpd, Debian's python3-aiosmtpd) on loopback
/// that keeps every message it is given: where released mail and digests
/// land. `tests/peers/smtp/sink.py`.
pub struct Sink {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// One message the sink received.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
}

impl Sink {
    pub fn start() -> Sink {
        Sink::start_failing(0)
    }

    /// A sink that answers 451 to the first `n` transactions.
    pub fn start_failing(n: u32) -> Sink {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtp/sink.py");
        // Debian's python, which has python3-aiosmtpd (not a pyenv shim).
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path().join("mail"))
            .args(["--fail-first", &n.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the aiosmtpd sink (apt install python3-aiosmtpd)");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("sink output");
        assert!(
            first.contains("sink listening"),
            "sink did not start: {first:?}"
        );
        Sink { child, port, dir }
    }

    pub fn relay(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything received so far, in order.
    pub fn messages(&self) -> Vec<Delivered> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path().join("mail"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .into_iter()
            .map(|p| {
                let env: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(p.with_extension("json")).expect("envelope"),
                )
                .expect("envelope JSON");
                Delivered {
                    mail_from: env["mail_from"].as_str().unwrap_or("").to_string(),
                    rcpt_to: env["rcpt_tos"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|r| r.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default(),
                    data: std::fs::read(&p).expect("message"),
                }
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived.
    pub fn wait_for(&self, n: usize) -> Vec<Delivered> {
        eventually(Duration::from_secs(30), || {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
        .unwrap_or_else(|| {
            panic!(
                "the sink got {} message(s), expected {n}",
                self.messages().len()
            )
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
