//! The bomb corpus, generated here (nothing of it is in git), sent to one
//! real `portcullis serve` with its default limits through the native
//! door. Every bomb gets a verdict (never an error, never a hang: each
//! answer within the time budget plus transfer slack) and the server's
//! peak resident memory (VmHWM) stays under a ceiling derived from its
//! limits. What each bomb trips is asserted too, so a change that stops a
//! limit from firing fails here, not in production.

use crate::harness::Server;
use flate2::Compression;
use flate2::write::DeflateEncoder;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One entry of a hand-built zip: what the headers say and what follows.
struct Entry {
    name: String,
    /// Where its local header is; `None`: write one here.
    points_at: Option<usize>,
    method: u16,
    data: Vec<u8>,
    crc: u32,
    /// The uncompressed size the headers declare.
    declared: u64,
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).expect("deflate");
    e.finish().expect("deflate")
}

/// `n` zero bytes deflated, without holding them: 1 GiB in ~1 MiB.
fn deflated_zeros(n: u64) -> (Vec<u8>, u32) {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::fast());
    let mut crc = crc32fast::Hasher::new();
    let block = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        e.write_all(&block[..k]).expect("deflate");
        crc.update(&block[..k]);
        left -= k as u64;
    }
    (e.finish().expect("deflate"), crc.finalize())
}

fn le16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn le32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn le64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// A zip as the entries say, zip64 where sizes or counts need it; entries
/// may point at another entry's local header (overlapping files).
fn zip(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    for e in entries {
        if let Some(at) = e.points_at {
            offsets.push(at);
            continue;
        }
        offsets.push(out.len());
        let big = e.declared >= u32::MAX as u64;
        le32(&mut out, 0x0403_4b50);
        le16(&mut out, if big { 45 } else { 20 });
        le16(&mut out, 0);
        le16(&mut out, e.method);
        le16(&mut out, 0);
        le16(&mut out, 0x21);
        le32(&mut out, e.crc);
        le32(&mut out, if big { u32::MAX } else { e.data.len() as u32 });
        le32(&mut out, if big { u32::MAX } else { e.declared as u32 });
        le16(&mut out, e.name.len() as u16);
        le16(&mut out, if big { 20 } else { 0 });
        out.extend_from_slice(e.name.as_bytes());
        if big {
            le16(&mut out, 1);
            le16(&mut out, 16);
            le64(&mut out, e.declared);
            le64(&mut out, e.data.len() as u64);
        }
        out.extend_from_slice(&e.data);
    }
    let cd_start = out.len();
    for (e, &offset) in entries.iter().zip(&offsets) {
        let big = e.declared >= u32::MAX as u64;
        le32(&mut out, 0x0201_4b50);
        le16(&mut out, 45);
        le16(&mut out, if big { 45 } else { 20 });
        le16(&mut out, 0);
        le16(&mut out, e.method);
        le16(&mut out, 0);
        le16(&mut out, 0x21);
        le32(&mut out, e.crc);
        le32(&mut out, if big { u32::MAX } else { e.data.len() as u32 });
        le32(&mut out, if big { u32::MAX } else { e.declared as u32 });
        le16(&mut out, e.name.len() as u16);
        le16(&mut out, if big { 20 } else { 0 });
        le16(&mut out, 0);
        le16(&mut out, 0);
        le16(&mut out, 0);
        le32(&mut out, 0);
        le32(&mut out, offset as u32);
        out.extend_from_slice(e.name.as_bytes());
        if big {
            le16(&mut out, 1);
            le16(&mut out, 16);
            le64(&mut out, e.declared);
            le64(&mut out, e.data.len() as u64);
        }
    }
    let cd_end = out.len();
    let n = entries.len() as u64;
    if n >= 0xFFFF {
        let z64 = out.len();
        le32(&mut out, 0x0606_4b50);
        le64(&mut out, 44);
        le16(&mut out, 45);
        le16(&mut out, 45);
        le32(&mut out, 0);
        le32(&mut out, 0);
        le64(&mut out, n);
        le64(&mut out, n);
        le64(&mut out, (cd_end - cd_start) as u64);
        le64(&mut out, cd_start as u64);
        le32(&mut out, 0x0706_4b50);
        le32(&mut out, 0);
        le64(&mut out, z64 as u64);
        le32(&mut out, 1);
    }
    le32(&mut out, 0x0605_4b50);
    le16(&mut out, 0);
    le16(&mut out, 0);
    le16(&mut out, n.min(0xFFFF) as u16);
    le16(&mut out, n.min(0xFFFF) as u16);
    le32(&mut out, (cd_end - cd_start) as u32);
    le32(&mut out, cd_start as u32);
    le16(&mut out, 0);
    out
}

fn stored(name: &str, data: &[u8]) -> Entry {
    Entry {
        name: name.into(),
        points_at: None,
        method: 0,
        crc: crc32fast::hash(data),
        declared: data.len() as u64,
        data: data.to_vec(),
    }
}

/// A mail with `attachment` (base64 in 76-column lines, or one line).
fn mail(name: &str, attachment: &[u8], one_line: bool) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(attachment);
    let mut m = format!(
        "From: bomber@example.net\r\nTo: victim@example.org\r\nSubject: {name}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
         --b\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    if one_line {
        m.extend_from_slice(b64.as_bytes());
        m.extend_from_slice(b"\r\n");
    } else {
        for line in b64.as_bytes().chunks(76) {
            m.extend_from_slice(line);
            m.extend_from_slice(b"\r\n");
        }
    }
    m.extend_from_slice(b"--b--\r\n");
    m
}

/// The bombs: name, message, and a finding at least one of which the
/// report must carry (the limit or check that caught it).
fn bombs() -> Vec<(&'static str, Vec<u8>, &'static [&'static str])> {
    let mut out: Vec<(&'static str, Vec<u8>, &'static [&'static str])> = Vec::new();

    // 1 GiB of zeros in ~1 MiB: the ratio and size limits stop inflating.
    let (gig, crc) = deflated_zeros(1 << 30);
    let real = zip(&[Entry {
        name: "zeros.bin".into(),
        points_at: None,
        method: 8,
        data: gig.clone(),
        crc,
        declared: 1 << 30,
    }]);
    out.push((
        "1gib-real.zip",
        mail("1gib-real.zip", &real, false),
        &["LIMIT_RATIO", "LIMIT_OBJECT_BYTES", "LIMIT_TOTAL_BYTES"],
    ));

    // Declares 10 GiB (zip64) for 1 MiB of real data: sizes are never
    // trusted for allocation (the RSS check below), the 1 MiB that is
    // there is read and scanned like any file, and the lie is flagged.
    let (small, crc) = deflated_zeros(1 << 20);
    let declared = zip(&[Entry {
        name: "ten-gigabytes.bin".into(),
        points_at: None,
        method: 8,
        data: small,
        crc,
        declared: 10 << 30,
    }]);
    out.push((
        "10gib-declared.zip",
        mail("10gib-declared.zip", &declared, false),
        &["AMBIGUOUS_ARCHIVE"],
    ));

    // 20 000 central directory entries, every one the same 1 GiB-declared
    // local file (Fifield's overlapping files): 20 TiB on paper.
    let mut overlap = vec![Entry {
        name: "f0".into(),
        points_at: None,
        method: 8,
        data: gig,
        crc,
        declared: 1 << 30,
    }];
    for i in 1..20_000 {
        overlap.push(Entry {
            name: format!("f{i}"),
            points_at: Some(0),
            method: 8,
            data: Vec::new(),
            crc,
            declared: 1 << 30,
        });
    }
    out.push((
        "overlapping.zip",
        mail("overlapping.zip", &zip(&overlap), false),
        &[
            "AMBIGUOUS_ARCHIVE",
            "LIMIT_OBJECTS",
            "LIMIT_TOTAL_BYTES",
            "LIMIT_RATIO",
        ],
    ));

    // A true quine: a zip whose one entry is the zip itself.
    out.push((
        "quine.zip",
        mail("r.zip", &crate::quine::zip_quine(), false),
        &["AMBIGUOUS_ARCHIVE"],
    ));

    // 100 000 entries.
    let many: Vec<Entry> = (0..100_000)
        .map(|i| stored(&format!("e{i}.txt"), format!("{i}").as_bytes()))
        .collect();
    out.push((
        "100k-entries.zip",
        mail("100k-entries.zip", &zip(&many), false),
        &["LIMIT_OBJECTS"],
    ));

    // A zip in a zip … 64 deep.
    let mut nested = zip(&[stored("bottom.txt", b"the bottom")]);
    for i in 0..64 {
        let inner = deflate(&nested);
        nested = zip(&[Entry {
            name: format!("level{i}.zip"),
            points_at: None,
            method: 8,
            crc: crc32fast::hash(&nested),
            declared: nested.len() as u64,
            data: inner,
        }]);
    }
    out.push((
        "64-deep.zip",
        mail("64-deep.zip", &nested, false),
        &["LIMIT_DEPTH"],
    ));

    // 10 000 nested multiparts, EICAR at the bottom: parts are a flat
    // list to us, so depth of multipart nesting hides nothing.
    let mut deep = String::from("From: a@example.net\r\nSubject: deep multipart\r\n");
    for i in 0..10_000 {
        deep.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    deep.push_str("Content-Type: application/octet-stream; name=\"e.com\"\r\n\r\n");
    let mut deep = deep.into_bytes();
    deep.extend_from_slice(&portcullis::samples::eicar());
    deep.extend_from_slice(b"\r\n");
    out.push(("10k-deep-mime", deep, &["EICAR_Test_File"]));

    // 10 000 nested message/rfc822.
    let mut rfc822 = String::new();
    for _ in 0..10_000 {
        rfc822
            .push_str("From: a@example.net\r\nSubject: x\r\nContent-Type: message/rfc822\r\n\r\n");
    }
    rfc822.push_str("From: a@example.net\r\n\r\nbottom\r\n");
    out.push(("10k-nested-rfc822", rfc822.into_bytes(), &["LIMIT_DEPTH"]));

    // A million header lines (~20 MB of header).
    let mut headers = Vec::with_capacity(24 << 20);
    headers.extend_from_slice(b"From: a@example.net\r\nSubject: headers\r\n");
    for i in 0..1_000_000u32 {
        headers.extend_from_slice(format!("X-H{}: {i}\r\n", i % 100).as_bytes());
    }
    headers.extend_from_slice(b"\r\nbody\r\n");
    out.push(("1m-headers", headers, &[]));

    // One base64 line of 100 MB (75 MB decoded, over max_object_bytes).
    let blob: Vec<u8> = (0..75_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    out.push((
        "100mb-base64-line",
        mail("blob.bin", &blob, true),
        &["LIMIT_OBJECT_BYTES", "LIMIT_TOTAL_BYTES"],
    ));

    // A gzip of 1 GiB of zeros inside a tar-less .gz.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
    let block = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        gz.write_all(&block).expect("gzip");
    }
    let gz = gz.finish().expect("gzip");
    out.push((
        "1gib.gz",
        mail("zeros.gz", &gz, false),
        &["LIMIT_RATIO", "LIMIT_OBJECT_BYTES", "LIMIT_TOTAL_BYTES"],
    ));
    out
}

/// Peak resident memory of a process, from /proc (kB → bytes).
pub fn peak_rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[test]
fn every_bomb_gets_a_verdict_in_time_and_memory_stays_bounded() {
    // Defaults but a body limit that lets the 100 MB line in, and two
    // workers so two bombs can be open at once.
    let server = Server::start("[server]\nmax_body_bytes = 134217728\nworkers = 2\n");
    let config = portcullis::config::Config::defaults();
    let limits = &config.limits;
    // Two messages inspected at once, each holding at most its total
    // budget, plus the largest body in flight and its decoded copy, plus
    // the engine (rules, scanners, runtime): the ceiling a site sizes for.
    let ceiling = 2 * limits.max_total_bytes + 2 * (128 << 20) + (256 << 20);
    for (name, message, expect) in bombs() {
        let started = Instant::now();
        let r = server.post(
            "/v1/check?from=bomber%40example.net&rcpt=victim%40example.org",
            &[],
            &message,
        );
        let took = started.elapsed();
        drop(message);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let v = r.json();
        let action = v["action"].as_str().unwrap_or_default().to_string();
        assert!(
            ["accept", "tag", "quarantine", "reject"].contains(&action.as_str()),
            "{name}: a verdict, not {action}: {v}"
        );
        // The budget bounds inspection; the rest is moving up to 128 MB
        // over loopback and parsing it in an unoptimised test build.
        assert!(
            took < limits.time_budget + Duration::from_secs(20),
            "{name}: answered after {took:?}"
        );
        let reasons = v["reasons"].as_array().cloned().unwrap_or_default();
        let findings: Vec<String> = reasons
            .iter()
            .filter_map(|f| f["name"].as_str().map(str::to_string))
            .collect();
        // However many broken entries, a container carries a few findings
        // of a kind, not one per entry.
        let mut per_object = std::collections::HashMap::new();
        for f in &reasons {
            *per_object
                .entry((f["name"].to_string(), f["path"].to_string()))
                .or_insert(0) += 1;
        }
        assert!(
            per_object
                .values()
                .all(|&n| n <= portcullis::pipeline::SAME_KIND_PER_OBJECT),
            "{name}: {} findings",
            reasons.len()
        );
        assert!(
            expect.is_empty() || expect.iter().any(|e| findings.iter().any(|f| f == e)),
            "{name}: expected one of {expect:?}, got {findings:?} ({action})"
        );
        let rss = peak_rss(server.pid());
        assert!(
            rss < ceiling,
            "{name}: peak RSS {} MiB over the ceiling of {} MiB",
            rss >> 20,
            ceiling >> 20
        );
        let mut names = findings.clone();
        names.dedup();
        eprintln!(
            "{name}: {action} in {took:?}, {} findings {names:?}, peak RSS so far {} MiB",
            findings.len(),
            rss >> 20
        );
    }
    assert_eq!(server.get("/healthz").status, 200);
}

/// Slowloris on every door: clients that open a request (HTTP headers,
/// an RSPAMC head, an HTTP body, a milter packet) and then trickle a byte
/// at a time. Each is cut off by its timeout, not kept, and a normal
/// client is served meanwhile.
#[test]
fn slow_clients_on_every_door_are_cut_off_while_others_are_served() {
    use std::io::{Read, Write};
    let server = Server::start(
        "[server]\nheader_timeout_ms = 1000\nbody_timeout_ms = 2000\nmax_connections = 256\n",
    );
    let http = server.addr;
    let milter = server.milter_addr();
    // What each slow client starts with; then one byte every 250 ms.
    let openings: Vec<(&str, std::net::SocketAddr, Vec<u8>)> = vec![
        (
            "HTTP headers",
            http,
            b"POST /v1/check HTTP/1.1\r\nHost: x\r\n".to_vec(),
        ),
        (
            "HTTP body",
            http,
            b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nFrom: a\r\n"
                .to_vec(),
        ),
        (
            "RSPAMC head",
            http,
            b"CHECK RSPAMC/1.3\r\nContent-length: 10\r\n".to_vec(),
        ),
        // A milter packet header announcing 1000 bytes, then a trickle.
        ("milter packet", milter, {
            let mut p = 1000u32.to_be_bytes().to_vec();
            p.push(b'O');
            p
        }),
    ];
    let mut slow = Vec::new();
    for (what, addr, opening) in &openings {
        for _ in 0..20 {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.write_all(opening).expect("opening");
            s.set_nonblocking(true).expect("nonblocking");
            slow.push((*what, s));
        }
    }
    let started = Instant::now();
    let mut closed_after: Vec<Option<Duration>> = vec![None; slow.len()];
    let mut served = false;
    while started.elapsed() < Duration::from_secs(15)
        && (closed_after.iter().any(Option::is_none) || !served)
    {
        for (i, (_, s)) in slow.iter_mut().enumerate() {
            if closed_after[i].is_some() {
                continue;
            }
            let mut buf = [0u8; 4096];
            let gone = match s.read(&mut buf) {
                Ok(0) => true,
                // An answer (408, a tempfail, an error line) then the close.
                Ok(_) => false,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => s.write_all(b"a").is_err(),
                Err(_) => true,
            };
            if gone {
                closed_after[i] = Some(started.elapsed());
            }
        }
        if !served {
            let r = server.post(
                "/v1/check?rcpt=a%40example.org",
                &[],
                b"Subject: hi\r\n\r\nhello\r\n",
            );
            served = r.status == 200 && r.json()["action"] == "accept";
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(served, "a normal client was not served during the attack");
    for ((what, _), after) in slow.iter().zip(&closed_after) {
        let after = after.unwrap_or_else(|| panic!("a slow {what} client was never cut off"));
        // Header timeout 1 s, body timeout 2 s, plus scheduling slack.
        assert!(
            after < Duration::from_secs(8),
            "{what}: cut off after {after:?}"
        );
    }
    assert_eq!(server.get("/healthz").status, 200);
}

/// Ten times what the pool admits, sending without pause for a few
/// seconds: the doors shed with tempfail at once, admitted messages are
/// answered within the time budget, memory stays under the ceiling for
/// `workers + queue` messages, and afterwards every message is taken again
/// without a restart.
#[test]
fn at_ten_times_capacity_the_doors_shed_and_the_service_recovers() {
    let (workers, queue) = (2usize, 2usize);
    // The result cache off: every message here carries the same zip, and
    // with the cache only the first would cost a worker its unpacking.
    let server = Server::start(&format!(
        "[server]\nworkers = {workers}\nqueue = {queue}\n[cache]\nentries = 0\n"
    ));
    let addr = server.addr;
    // A message that keeps a worker busy a while: 4 MiB of text in a zip.
    let text: Vec<u8> = (0..4u32 << 20)
        .map(|i| b"abcdefgh \n"[(i % 10) as usize])
        .collect();
    let zipped = portcullis::samples::zip(&[("notes.txt", &text)]);
    let message = Arc::new(mail("notes.zip", &zipped, false));
    let clients = 10 * (workers + queue);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (message, stop) = (Arc::clone(&message), Arc::clone(&stop));
            std::thread::spawn(move || {
                let (mut admitted, mut shed, mut slowest) = (0usize, 0usize, Duration::ZERO);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut s = std::net::TcpStream::connect(addr).expect("connect");
                    let t = Instant::now();
                    s.write_all(&crate::harness::request_bytes(
                        "POST",
                        "/v1/check?rcpt=a%40example.org",
                        &[],
                        &message,
                    ))
                    .expect("send");
                    let r = crate::harness::read_response(&mut std::io::BufReader::new(s))
                        .expect("an answer, never a dropped connection");
                    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
                    match v["action"].as_str() {
                        Some("tempfail") => shed += 1,
                        Some("accept" | "tag") => {
                            admitted += 1;
                            slowest = slowest.max(t.elapsed());
                        }
                        other => panic!("unexpected answer {other:?}: {v}"),
                    }
                }
                (admitted, shed, slowest)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(6));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut admitted, mut shed, mut slowest) = (0, 0, Duration::ZERO);
    for t in threads {
        let (a, s, w) = t.join().expect("client");
        admitted += a;
        shed += s;
        slowest = slowest.max(w);
    }
    eprintln!("{clients} clients: {admitted} admitted, {shed} shed, slowest admitted {slowest:?}");
    assert!(
        shed > admitted,
        "at 10x most are shed: {admitted} admitted, {shed} shed"
    );
    assert!(
        admitted >= workers,
        "the pool kept working: {admitted} admitted"
    );
    let limits = portcullis::config::Limits::default();
    assert!(
        slowest < limits.time_budget + Duration::from_secs(5),
        "admitted messages waited {slowest:?}"
    );
    let ceiling = (workers + queue) as u64 * limits.max_total_bytes + (256 << 20);
    let rss = peak_rss(server.pid());
    assert!(rss < ceiling, "peak RSS {} MiB", rss >> 20);
    // Recovered by itself: one client at a time is always admitted.
    for _ in 0..5 {
        let r = server.post("/v1/check?rcpt=a%40example.org", &[], &message);
        assert_eq!(r.json()["action"], "accept", "{}", r.text());
    }
    let m = server.metrics();
    assert!(m.contains("portcullis_pool_queue_depth 0"), "{m}");
}
