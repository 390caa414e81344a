//! `portcullis serve` over real sockets: the native doors, the rspamd
//! protocol as clients really send it, MTA Hooks, limits, overload, auth,
//! metrics, reload and shutdown. Real clients (rspamc, Postfix) are in
//! `clients.rs`.

use crate::harness::{Server, chunked, read_response, sample};
use crate::openapi::{assert_response, assert_valid};
use sha2::Digest;
use std::io::{BufReader, Read, Write};
use std::time::Duration;

fn names(reasons: &serde_json::Value) -> Vec<String> {
    reasons
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn native_check_gives_verdicts_matching_the_openapi_document() {
    let s = Server::start("");
    let clean = s.post(
        "/v1/check?from=%3Calice%40example.org%3E&rcpt=bob%40example.com&rcpt=carol%40example.com&ip=192.0.2.7&queue_id=Q1",
        &[("Content-Type", "message/rfc822")],
        &sample("clean_plain.eml"),
    );
    assert_eq!(clean.status, 200, "{}", clean.text());
    let v = clean.json();
    assert_response("/v1/check", "post", 200, &v);
    assert_eq!(v["action"], "accept");
    assert!(v["smtp_reply"].is_null());
    let mods = v["modifications"].as_array().unwrap();
    assert!(mods.iter().any(|m| m["op"] == "add_header"
        && m["name"] == "X-Portcullis-Action"
        && m["value"] == "accept"));
    assert!(
        mods.iter()
            .any(|m| m["op"] == "remove_header" && m["name"] == "X-Portcullis-Action")
    );
    assert_eq!(v["report"]["objects"][0]["path"], "message");

    let bad = s.post(
        "/v1/check?report=0",
        &[
            ("X-Mail-From", "<x@example.net>"),
            ("X-Rcpt-To", "a@example.com, b@example.com"),
        ],
        &sample("eicar_zip.eml"),
    );
    let v = bad.json();
    assert_response("/v1/check", "post", 200, &v);
    assert_eq!(v["action"], "reject");
    assert_eq!(v["smtp_reply"]["code"], 554);
    assert_eq!(v["smtp_reply"]["enhanced"], "5.7.1");
    assert!(
        v["smtp_reply"]["text"]
            .as_str()
            .unwrap()
            .contains("EICAR_Test_File")
    );
    assert!(names(&v["reasons"]).contains(&"EICAR_Test_File".to_string()));
    assert!(v["deciding_path"].as_str().unwrap().ends_with("eicar.com"));
    assert!(v.get("report").is_none(), "report=0 leaves the report out");

    // The verdict is the same one the CLI gives for these bytes.
    let cli = crate::util::engine()
        .inspect(&portcullis::Submission::mail(sample("eicar_zip.eml")))
        .unwrap();
    assert_eq!(v["score"], cli.verdict.score);
}

#[test]
fn quarantine_is_on_disk_before_the_answer() {
    let s = Server::start("");
    let raw = sample("html_smuggling.eml");
    let r = s.post(
        "/v1/check?rcpt=victim%40example.com&auth_user=mallory",
        &[],
        &raw,
    );
    let v = r.json();
    assert_response("/v1/check", "post", 200, &v);
    assert_eq!(v["action"], "quarantine");
    let id = v["quarantine_id"].as_str().expect("a quarantine id");
    let record = s.quarantine_record(id);
    assert_eq!(record["envelope"]["rcpt_to"][0], "victim@example.com");
    assert_eq!(record["envelope"]["auth_user"], "mallory");
    assert_eq!(record["door"], "native");
    assert_eq!(record["report"]["action"], "quarantine");
    let sha = hex::encode(sha2::Sha256::digest(&raw));
    assert_eq!(record["sha256"], sha);
    let blob = s
        .dir
        .path()
        .join("var/quarantine/blobs")
        .join(&sha[..2])
        .join(&sha);
    assert_eq!(std::fs::read(blob).expect("blob written"), raw);
    assert!(s.metrics().contains("portcullis_quarantined_total 1"));
}

#[test]
fn file_scan_returns_the_full_report_and_never_quarantines() {
    let s = Server::start("");
    let gz = sample("eicar.com.gz");
    let r = s.post("/v1/scan?name=eicar.com.gz", &[], &gz);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_response("/v1/scan", "post", 200, &v);
    assert_valid("Report", &v);
    assert_eq!(v["schema"], "portcullis.report.v1");
    assert_eq!(v["action"], "reject");
    assert_eq!(v["objects"][1]["name"], "eicar.com");

    let iso = s.post(
        "/v1/scan",
        &[("X-File-Name", "disk.iso")],
        &sample("iso.eml"),
    );
    assert_eq!(iso.status, 200);
    assert!(
        s.quarantine_records().is_empty(),
        "file scans are never held"
    );
}

#[test]
fn rspamd_protocol_as_clients_really_send_it() {
    let s = Server::start("");
    let eicar = sample("eicar_zip.eml");

    // rspamc 3.4: HTTP/1.0, Connection: close, odd header case, IP without port.
    let mut req = format!(
        "POST /checkv2 HTTP/1.0\r\nContent-Length: {}\r\nConnection: close\r\nContent-Type: text/plain\r\n\
         Ip: 192.0.2.7\r\nUser-Agent: rspamc\r\nFlags: body_block\r\nfrom: sender@example.org\r\n\
         RCPT: a@example.com\r\nrcpt: <b@example.com>\r\n\r\n",
        eicar.len()
    )
    .into_bytes();
    req.extend_from_slice(&eicar);
    let r = s.raw(&req);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_response("/checkv2", "post", 200, &v);
    assert_eq!(v["action"], "reject");
    assert_eq!(v["required_score"], 50.0);
    assert!(v["symbols"]["EICAR_Test_File"]["score"].as_f64().unwrap() >= 100.0);
    assert_eq!(
        v["symbols"]["EICAR_Test_File"]["options"][0],
        "message > files.zip > eicar.com"
    );
    assert!(
        v["messages"]["smtp_message"]
            .as_str()
            .unwrap()
            .contains("EICAR_Test_File")
    );
    assert_eq!(v["message-id"], "zip@example.org");
    assert_eq!(v["milter"]["add_headers"]["X-Portcullis-Action"], "reject");
    assert_eq!(v["milter"]["remove_headers"]["X-Portcullis-Action"], 0);

    // rspamd's proxy to a loopback upstream: GET with a body, IP with a port.
    let clean = sample("clean_plain.eml");
    let mut req = format!(
        "GET /CheckV2 HTTP/1.1\r\nConnection: close\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\
         Queue-ID: QID123\r\nIP: 192.0.2.7:12345\r\nFlags: milter,body_block\r\nFrom: <a@example.org>\r\n\r\n",
        clean.len()
    )
    .into_bytes();
    req.extend_from_slice(&clean);
    let v = s.raw(&req).json();
    assert_eq!(v["action"], "no action");
    assert_eq!(v["milter"]["add_headers"]["X-Portcullis-Action"], "accept");
    assert!(v["milter"].get("reject").is_none());

    // Haraka: HTTP/1.1 keep-alive with chunked bodies, two on one connection.
    let mut conn = s.connect();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    for (body, action) in [(&eicar, "reject"), (&clean, "no action")] {
        let mut req = b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nRcpt: a@example.com\r\nIP: 192.0.2.9\r\n\r\n".to_vec();
        req.extend_from_slice(&chunked(body, 1000));
        conn.write_all(&req).unwrap();
        let r = read_response(&mut reader).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["action"], action);
    }

    // zstd both ways, as rspamc -z sends it; and a reply asked for by flag.
    let z = zstd::bulk::compress(&eicar, 1).unwrap();
    let r = s.post(
        "/checkv2",
        &[
            ("Compression", "zstd"),
            ("Content-Type", "application/x-compressed"),
        ],
        &z,
    );
    assert_eq!(r.header("compression"), Some("zstd"));
    let v: serde_json::Value =
        serde_json::from_slice(&zstd::stream::decode_all(&r.body[..]).unwrap()).unwrap();
    assert_eq!(v["action"], "reject");
    let r = s.post("/checkv2", &[("Flags", "zstd")], &clean);
    assert_eq!(r.header("compression"), Some("zstd"));
    let r = s.post("/checkv2", &[], &clean);
    assert_eq!(r.header("compression"), None, "never compressed unasked");

    // Legacy /check and /symbols: everything inside "default".
    let v = s.post("/symbols", &[], &eicar).json();
    assert_eq!(v["default"]["action"], "reject");
    assert_eq!(v["default"]["is_spam"], true);
    assert!(v["default"]["EICAR_Test_File"]["score"].as_f64().is_some());
    assert!(v["rmilter"]["add_headers"].is_object());
    assert_response("/check", "post", 200, &v);

    let ping = s.get("/ping");
    assert_eq!(ping.body, b"pong\r\n");
    assert_eq!(s.get("/nothing-here").status, 404);

    // Tagging becomes rewrite subject with the new subject spelled out: a
    // PNG that calls itself a PDF scores TYPE_MISMATCH, enough to tag.
    let png = [&b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..], &[0u8; 64]].concat();
    let tag = portcullis::samples::message(
        "Quarterly numbers",
        "see attached",
        &[portcullis::samples::attachment(
            "application/pdf",
            "report.pdf",
            &png,
        )],
    );
    let v = s.post("/checkv2", &[], &tag).json();
    assert_eq!(v["action"], "rewrite subject", "{v}");
    assert_eq!(v["subject"], "[SUSPICIOUS] Quarterly numbers");
    assert_eq!(v["portcullis"]["action"], "tag");
    assert!(v["symbols"]["TYPE_MISMATCH"].is_object(), "{v}");
}

#[test]
fn a_thousand_recipients_in_rcpt_headers() {
    // rspamd's proxy and Haraka send one Rcpt header per recipient;
    // Postfix allows 1000 recipients per message.
    let s = Server::start("");
    let rcpts: Vec<String> = (0..1000).map(|i| format!("user{i}@example.com")).collect();
    let headers: Vec<(&str, &str)> = rcpts.iter().map(|r| ("Rcpt", r.as_str())).collect();
    let r = s.post("/checkv2", &headers, &sample("eicar_zip.eml"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["action"], "reject");
    let r = s.post("/checkv2", &headers, &sample("html_smuggling.eml"));
    let id = r.json()["portcullis"]["quarantine_id"]
        .as_str()
        .unwrap()
        .to_string();
    let record = s.quarantine_record(&id);
    assert_eq!(
        record["envelope"]["rcpt_to"].as_array().unwrap().len(),
        1000
    );
    assert_eq!(record["recipients"].as_array().unwrap().len(), 1000);
}

#[test]
fn quarantine_and_errors_map_to_what_the_rspamd_proxy_acts_on() {
    let s = Server::start("[doors]\nquarantine_signal = \"hold\"\n");
    let v = s
        .post("/checkv2", &[], &sample("html_smuggling.eml"))
        .json();
    assert_response("/checkv2", "post", 200, &v);
    assert_eq!(v["action"], "reject");
    assert_eq!(v["milter"]["reject"], "quarantine");
    assert_eq!(v["portcullis"]["action"], "quarantine");
    assert!(v["portcullis"]["quarantine_id"].is_string());

    let s = Server::start("");
    let v = s
        .post("/checkv2", &[], &sample("html_smuggling.eml"))
        .json();
    assert_eq!(v["milter"]["reject"], "discard");

    // A body we cannot read is a soft reject, with a JSON body, whatever
    // the status: the proxy ignores the status.
    let r = s.post("/checkv2", &[("Compression", "zstd")], b"not zstd at all");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["action"], "soft reject");
    let r = s.post("/checkv2", &[("Compression", "gzip")], b"x");
    assert_eq!(r.json()["action"], "soft reject");
    // rspamd's HTTP proxy passes a loopback upstream the message in shared
    // memory with an empty body: never scan that empty body as the message.
    let r = s.post(
        "/checkv2",
        &[
            ("Shm", "/rhm.1f2e"),
            ("Shm-Offset", "0"),
            ("Shm-Length", "512"),
        ],
        b"",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["action"], "soft reject");
    assert!(r.json()["error"].as_str().unwrap().contains("milter mode"));
}

#[test]
fn mta_hooks_as_stalwart_sends_them() {
    let s = Server::start("");
    let hook = |stage: &str, raw: &[u8]| {
        let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
        let (head, body) = text.split_once("\n\n").unwrap();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                let last = headers.last_mut().unwrap();
                last.1 = format!("{}\r\n{}", last.1.trim_end_matches("\r\n"), line) + "\r\n";
            } else if let Some((n, v)) = line.split_once(':') {
                headers.push((n.to_string(), format!("{v}\r\n")));
            }
        }
        serde_json::json!({
            "context": {
                "stage": stage,
                "client": {"ip": "192.0.2.10", "port": 52344, "ptr": null, "helo": "mx.example.org", "activeConnections": 1},
                "server": {"name": "Stalwart v0.16.19", "port": 25, "ip": "198.51.100.5"},
                "queue": {"id": "18c4a2f0b1d3e5"},
                "protocol": {"version": 1}
            },
            "envelope": {"from": {"address": "alice@example.org"}, "to": [{"address": "bob@example.com"}]},
            "message": {"headers": headers, "contents": body.replace('\n', "\r\n"), "size": raw.len()}
        })
    };
    let send = |req: serde_json::Value| {
        let r = s.post(
            "/mta-hooks",
            &[("Content-Type", "application/json")],
            req.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_response("/mta-hooks", "post", 200, &v);
        v
    };

    let v = send(hook("rcpt", &sample("eicar_zip.eml")));
    assert_eq!(
        v,
        serde_json::json!({"action": "accept"}),
        "only data is inspected"
    );

    let v = send(hook("data", &sample("eicar_zip.eml")));
    assert_eq!(v["action"], "reject");
    assert_eq!(v["response"]["status"], 554);
    let msg = v["response"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("5.7.1 ") && msg.contains("EICAR_Test_File"),
        "{msg}"
    );

    let v = send(hook("data", &sample("clean_plain.eml")));
    assert_eq!(v["action"], "accept");
    let mods = v["modifications"].as_array().unwrap();
    assert!(mods.iter().any(|m| m["type"] == "addHeader"
        && m["name"] == "X-Portcullis-Action"
        && m["value"] == "accept"));

    // A forged verdict header in the message is deleted by index.
    let forged = [
        b"X-Portcullis-Action: accept\r\n".as_slice(),
        &sample("clean_plain.eml"),
    ]
    .concat();
    let v = send(hook("data", &forged));
    assert!(v["modifications"].as_array().unwrap().iter().any(|m| m
        == &serde_json::json!({"type": "deleteHeader", "index": 1, "name": "X-Portcullis-Action"})));

    let v = send(hook("DATA", &sample("html_smuggling.eml")));
    assert_eq!(v["action"], "quarantine");

    // Our failures are a 451 reject in a 200, never an HTTP error.
    let r = s.post("/mta-hooks", &[], b"{not json");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["action"], "reject");
    assert_eq!(v["response"]["status"], 451);
}

#[test]
fn oversize_messages_are_answered_by_policy_without_being_read() {
    let s = Server::start("[server]\nmax_body_bytes = 10000\nmax_inflight_bytes = 100000\n");
    let big = vec![b'a'; 20_000];
    let v = s.post("/v1/check", &[], &big).json();
    assert_response("/v1/check", "post", 200, &v);
    assert_eq!(v["action"], "reject");
    assert_eq!(v["smtp_reply"]["code"], 552);
    assert_eq!(v["smtp_reply"]["enhanced"], "5.3.4");
    assert_eq!(names(&v["reasons"]), vec!["LIMIT_MESSAGE_BYTES"]);

    // Declared too large: not stored, but drained, so a client that writes
    // its whole body before reading (as the rspamd proxy does) still gets
    // the answer rather than a reset connection.
    let mut conn = s.connect();
    conn.write_all(b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        .unwrap();
    conn.write_all(&vec![b'a'; 5_000_000]).unwrap();
    let r = read_response(&mut BufReader::new(conn)).unwrap();
    assert_eq!(r.json()["action"], "reject");
    assert!(s.metrics().contains("portcullis_inflight_bytes 0\n"));

    // Chunked past the limit is cut off mid-body.
    let mut req = b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(&chunked(&big, 4096));
    assert_eq!(s.raw(&req).json()["action"], "reject");

    let s =
        Server::start("[server]\nmax_body_bytes = 10000\n[policy]\non_oversize = \"tempfail\"\n");
    let v = s.post("/v1/check", &[], &big).json();
    assert_eq!(v["action"], "tempfail");
    assert_eq!(v["smtp_reply"]["code"], 451);

    let v = s.post("/v1/scan", &[], &big);
    assert_eq!(v.status, 413);
    assert_response("/v1/scan", "post", 413, &v.json());
}

/// A message that keeps a worker busy for a while: unpacking 48 MiB of
/// zeros up to the ratio limit.
fn slow_message() -> Vec<u8> {
    portcullis::samples::message(
        "slow",
        "unpacks 48 MiB of zeros up to the ratio limit",
        &[portcullis::samples::attachment(
            "application/zip",
            "zeros.zip",
            &sample("bomb_ratio.zip"),
        )],
    )
}

/// Runs `probe` while the server's only worker inspects `slow` (seen in
/// /metrics). If the slow message finished before the probe could run,
/// tries again: the outcome must not depend on timing.
fn while_the_worker_is_busy<T>(
    s: &Server,
    slow: &[u8],
    probe: impl Fn() -> Option<T> + Sync,
) -> Option<T> {
    for _ in 0..30 {
        let (slow_status, seen) = std::thread::scope(|scope| {
            let slow_req = scope.spawn(|| s.post("/checkv2", &[], slow).status);
            let busy = crate::harness::eventually(Duration::from_secs(30), || {
                if slow_req.is_finished() {
                    return Some(false);
                }
                s.metrics()
                    .contains("portcullis_pool_busy 1\n")
                    .then_some(true)
            });
            let seen = (busy == Some(true)).then(&probe).flatten();
            (slow_req.join().unwrap(), seen)
        });
        assert_eq!(slow_status, 200, "the admitted message is answered");
        if seen.is_some() {
            return seen;
        }
    }
    None
}

#[test]
fn a_full_pool_answers_tempfail_at_once_and_recovers() {
    // One worker, no queue: a second message while one is inspected is
    // refused, not queued. The ratio bomb keeps the worker busy a while.
    let s = Server::start("[server]\nworkers = 1\nqueue = 0\n");
    let slow = slow_message();
    // While the worker is busy with the slow message (seen in the metrics),
    // a second message is refused at once. If the slow one finished before
    // the second arrived, try again: the outcome must not hang on timing.
    let clean = sample("clean_plain.eml");
    let refusal = while_the_worker_is_busy(&s, &slow, || {
        let r = s.post("/checkv2", &[], &clean);
        (r.status == 503).then_some(r)
    });
    let refused = refusal.expect("a message arriving while the only worker is busy is refused");
    let v = refused.json();
    assert_eq!(v["action"], "soft reject");
    assert_response("/checkv2", "post", 503, &v);
    let refused = [v];
    let m = s.metrics();
    assert!(
        m.contains(&format!(
            "portcullis_refused_total{{door=\"rspamd\",reason=\"overloaded\"}} {}",
            refused.len()
        )),
        "{m}"
    );
    // Nothing stuck: the pool is empty again and takes the next message.
    assert!(m.contains("portcullis_pool_queue_depth 0"));
    let v = s.post("/v1/check", &[], &sample("clean_plain.eml"));
    assert_eq!(v.status, 200);

    // The in-flight memory budget refuses at once too.
    let s = Server::start("[server]\nmax_body_bytes = 40000\nmax_inflight_bytes = 80000\n");
    let mut first = s.connect();
    first
        .write_all(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 39000\r\n\r\npartial")
        .unwrap();
    // The first request now holds its share while its body trickles in.
    crate::harness::eventually(Duration::from_secs(60), || {
        (!s.metrics().contains("portcullis_inflight_bytes 0\n")).then_some(())
    })
    .expect("the first body is being read");
    // 39 KiB held of 78: a 40 000-byte body does not fit.
    let second = s.post("/v1/check", &[], &vec![b'x'; 40_000]);
    assert_eq!(second.status, 503, "{}", second.text());
    assert_response("/v1/check", "post", 503, &second.json());
    assert_eq!(second.json()["action"], "tempfail");
    assert_eq!(second.header("retry-after"), Some("5"));
    drop(first);
}

#[test]
fn slow_clients_are_cut_off() {
    let s = Server::start("[server]\nheader_timeout_ms = 300\nbody_timeout_ms = 300\n");
    // A request head that never ends.
    let mut conn = s.connect();
    conn.write_all(b"POST /checkv2 HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let n = std::io::Read::read_to_end(&mut conn, &mut buf);
    assert!(
        n.is_ok() || buf.is_empty(),
        "connection closed by the server"
    );
    // A body that never ends: answered tempfail after the body timeout.
    let mut conn = s.connect();
    conn.write_all(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        .unwrap();
    let r = read_response(&mut BufReader::new(conn)).unwrap();
    assert_eq!(r.status, 408);
    assert_eq!(r.json()["action"], "tempfail");
    assert_response("/v1/check", "post", 408, &r.json());
    // And the server is still fine.
    assert_eq!(s.get("/healthz").status, 200);
}

const TOKENS: &str = r#"
[auth]
hook_networks = ["192.0.2.0/24"]
# sha256("hook-secret")
hook_token_sha256 = "HOOK"
[[auth.tokens]]
name = "reader"
role = "auditor"
sha256 = "AUDITOR"
[[auth.tokens]]
name = "root"
role = "admin"
sha256 = "ADMIN"
"#;

fn sha(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[test]
fn hook_doors_need_the_network_or_a_token_and_management_needs_a_role() {
    let config = TOKENS
        .replace("HOOK", &sha("hook-secret"))
        .replace("AUDITOR", &sha("audit-secret"))
        .replace("ADMIN", &sha("admin-secret"));
    let s = Server::start(&config);
    let clean = sample("clean_plain.eml");

    // Loopback is not in hook_networks here.
    let r = s.post("/checkv2", &[], &clean);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["action"], "soft reject");
    let r = s.post("/v1/check", &[], &clean);
    assert_eq!(r.status, 401);
    assert_response("/v1/check", "post", 401, &r.json());
    let r = s.post("/mta-hooks", &[], b"{}");
    assert_eq!(r.json()["response"]["status"], 451);

    // rspamc -P, Stalwart Basic, Bearer.
    assert_eq!(
        s.post("/checkv2", &[("Password", "hook-secret")], &clean)
            .json()["action"],
        "no action"
    );
    assert_eq!(
        s.post(
            "/v1/check",
            &[("Authorization", "Basic c3RhbHdhcnQ6aG9vay1zZWNyZXQ=")],
            &clean
        )
        .json()["action"],
        "accept"
    );
    assert_eq!(
        s.post("/checkv2", &[("Password", "wrong")], &clean).status,
        401
    );

    // Management.
    assert_eq!(s.get("/metrics").status, 401);
    let m = s.request(
        "GET",
        "/metrics",
        &[("Authorization", "Bearer audit-secret")],
        b"",
    );
    assert_eq!(m.status, 200);
    assert!(
        m.text()
            .contains("portcullis_refused_total{door=\"rspamd\",reason=\"unauthenticated\"} 2")
    );
    let r = s.request(
        "POST",
        "/v1/reload",
        &[("Authorization", "Bearer audit-secret")],
        b"",
    );
    assert_eq!(r.status, 403);
    let r = s.request(
        "POST",
        "/v1/reload",
        &[("Authorization", "Bearer admin-secret")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_response("/v1/reload", "post", 200, &r.json());
    // Health checks are for load balancers: open.
    assert_eq!(s.get("/healthz").status, 200);
    assert_eq!(s.get("/readyz").status, 200);
}

#[test]
fn metrics_count_messages_findings_and_latency() {
    let s = Server::start("");
    s.post("/checkv2", &[], &sample("eicar_zip.eml"));
    s.post("/v1/check", &[], &sample("clean_plain.eml"));
    s.post("/v1/scan", &[], &sample("bomb_depth.zip"));
    let m = s.metrics();
    for line in [
        "portcullis_messages_total{door=\"rspamd\",action=\"reject\"} 1",
        "portcullis_messages_total{door=\"native\",action=\"accept\"} 1",
        "portcullis_rule_hits_total{rule=\"EICAR_Test_File\"} 1",
        "portcullis_message_duration_seconds_count{door=\"rspamd\"} 1",
        "portcullis_message_duration_seconds_bucket{door=\"native\",le=\"+Inf\"} 1",
        "portcullis_messages_total{door=\"scan\",action=\"quarantine\"} 1",
        "portcullis_pool_queue_depth 0",
        "portcullis_ready 1",
    ] {
        assert!(m.contains(line), "missing {line:?} in\n{m}");
    }
    assert!(
        m.contains("portcullis_limit_hits_total{limit=\"depth\"}"),
        "{m}"
    );
    let objects = crate::harness::metric_value(&m, "portcullis_objects_total").unwrap();
    assert!(objects >= 5, "{objects}");
    // Every series has HELP and TYPE.
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            m.contains(&format!("# TYPE {base} ")) || m.contains(&format!("# TYPE {name} ")),
            "{name} has no TYPE"
        );
    }
}

#[test]
fn sighup_reloads_rules_and_keeps_the_old_set_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let rule = |name: &str, text: &str| {
        format!(
            "rule {name} {{ meta: action = \"reject\" score = 100 description = \"test\" strings: $a = \"{text}\" condition: $a }}\n"
        )
    };
    std::fs::write(rules.join("one.yar"), rule("First_Marker", "MARKER-ONE")).unwrap();
    // SIGHUP only: the directory watch (tested on its own) stays off here.
    let s = Server::start_args(
        "[rules]\nwatch_interval = \"off\"\n",
        &["--rules", rules.to_str().unwrap()],
    );
    let msg =
        |marker: &str| portcullis::samples::message("hi", &format!("text {marker} text"), &[]);
    assert_eq!(
        s.post("/checkv2", &[], &msg("MARKER-TWO")).json()["action"],
        "no action"
    );
    let before = s.post("/v1/check", &[], &msg("MARKER-ONE")).json();
    assert_eq!(before["action"], "reject");

    std::fs::write(rules.join("two.yar"), rule("Second_Marker", "MARKER-TWO")).unwrap();
    s.signal("HUP");
    let after = crate::harness::eventually(Duration::from_secs(60), || {
        let v = s.post("/v1/check", &[], &msg("MARKER-TWO")).json();
        (v["action"] == "reject").then_some(v)
    })
    .expect("the new rule is active after SIGHUP");
    assert_ne!(after["rules_version"], before["rules_version"]);

    // A broken file: the reload is refused, the running set stays.
    std::fs::write(
        rules.join("broken.yar"),
        "rule Broken { condition: nonsense }",
    )
    .unwrap();
    s.signal("HUP");
    crate::harness::eventually(Duration::from_secs(60), || {
        s.metrics()
            .contains("portcullis_rule_reload_failures_total 1")
            .then_some(())
    })
    .expect("the failed reload is counted");
    let still = s.post("/v1/check", &[], &msg("MARKER-TWO")).json();
    assert_eq!(still["action"], "reject");
    assert_eq!(still["rules_version"], after["rules_version"]);
    assert!(s.log().contains("broken.yar"), "the error names the file");
}

#[test]
fn sigterm_drains_requests_in_flight_then_exits() {
    let s = Server::start("");
    let addr = s.addr;
    let body = sample("eicar_zip.eml");
    let (head, tail) = body.split_at(body.len() / 2);
    // A message half sent when the stop signal comes...
    let mut conn = s.connect();
    conn.write_all(
        format!(
            "POST /checkv2 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    conn.write_all(head).unwrap();
    crate::harness::eventually(Duration::from_secs(60), || {
        (!s.metrics().contains("portcullis_inflight_bytes 0\n")).then_some(())
    })
    .expect("the request is being read");
    // ...and one half sent over RSPAMC (Exim), which hyper does not see.
    let mut text = s.connect();
    text.write_all(
        format!("CHECK RSPAMC/1.3\r\nContent-length: {}\r\n\r\n", body.len()).as_bytes(),
    )
    .unwrap();
    text.write_all(head).unwrap();
    crate::harness::eventually(Duration::from_secs(60), || {
        s.metric("portcullis_inflight_bytes")
            .filter(|&n| n >= 2 * head.len() as u64)
    })
    .expect("both requests are being read");
    s.signal("TERM");
    // ...stops the listener at once...
    crate::harness::eventually(Duration::from_secs(60), || {
        std::net::TcpStream::connect(addr).is_err().then_some(())
    })
    .expect("no longer listening after SIGTERM");
    // ...and still gets its verdict when the rest arrives.
    conn.write_all(tail).unwrap();
    let r = read_response(&mut BufReader::new(conn)).unwrap();
    assert_eq!(
        r.status, 200,
        "the message in flight still gets its verdict"
    );
    assert_eq!(r.json()["action"], "reject");
    // The HTTP side is done; without a wait for RSPAMC connections the
    // process would be gone within this pause.
    std::thread::sleep(Duration::from_secs(1));
    text.write_all(tail).unwrap();
    let mut reply = String::new();
    text.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("RSPAMD/1.3 0 EX_OK\r\n"), "{reply}");
    assert!(reply.contains("\r\nAction: reject\r\n"), "{reply}");
    let status = s.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
}

#[test]
fn starts_with_no_config_at_all_and_config_check_explains_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(crate::harness::bin());
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--milter-listen",
        "127.0.0.1:0",
    ])
    .current_dir(dir.path());
    let s = Server::spawn(cmd, tempfile::tempdir().unwrap());
    assert_eq!(s.get("/readyz").status, 200);
    assert!(
        dir.path().join("var/quarantine").is_dir(),
        "./var is the default data dir"
    );
    drop(s);

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nlisten = [\"127.0.0.1\"]\nworkerz = 2\n").unwrap();
    let out = std::process::Command::new(crate::harness::bin())
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("workerz"), "{err}");
    let ok = std::process::Command::new(crate::harness::bin())
        .args([
            "config",
            "check",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/portcullis.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn json_logs_carry_the_message_span() {
    let s = Server::start_args("", &["--log-json"]);
    s.post(
        "/checkv2",
        &[("Queue-Id", "4BxYz1"), ("Rcpt", "bob@example.com")],
        &sample("eicar_zip.eml"),
    );
    let line = crate::harness::eventually(Duration::from_secs(30), || {
        s.log()
            .lines()
            .find(|l| l.contains("\"queue_id\":\"4BxYz1\""))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no verdict line: {}", s.log()));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["span"]["door"], "rspamd");
    assert_eq!(v["span"]["message_id"], "<zip@example.org>");
    assert_eq!(v["fields"]["action"], "reject");
}

#[test]
fn mta_hooks_stages_before_data_are_not_shed_when_the_pool_is_full() {
    // Only the data stage uses the pool; refusing a connect or rcpt hook
    // because scanning is busy would turn overload into refused sessions.
    let s = Server::start("[server]\nworkers = 1\nqueue = 0\n");
    let rcpt = serde_json::json!({
        "context": {"stage": "rcpt", "client": {"ip": "192.0.2.10", "helo": "mx"}, "protocol": {"version": 1}},
        "envelope": {"from": {"address": "a@example.org"}, "to": [{"address": "b@example.com"}]}
    })
    .to_string();
    let data = serde_json::json!({
        "context": {"stage": "data", "protocol": {"version": 1}},
        "message": {"headers": [["Subject", " hi\r\n"]], "contents": "hello\r\n"}
    })
    .to_string();
    let seen = while_the_worker_is_busy(&s, &slow_message(), || {
        let stage = s.post("/mta-hooks", &[], rcpt.as_bytes()).json();
        let data = s.post("/mta-hooks", &[], data.as_bytes()).json();
        // Both while the worker is busy: data is refused, rcpt is not.
        (data["response"]["status"] == 451).then_some((stage, data))
    })
    .expect("a data-stage hook arriving while the worker is busy is refused");
    assert_eq!(seen.0, serde_json::json!({"action": "accept"}));
    assert_eq!(seen.1["action"], "reject");
}

#[test]
fn rules_endpoint_lists_the_running_set_with_what_each_rule_decided() {
    let token = "auditor-token-for-rules-endpoint";
    let s = Server::start(&format!(
        "[[auth.tokens]]\nname = \"audit\"\nrole = \"auditor\"\nsha256 = \"{}\"\n",
        sha(token)
    ));
    assert_eq!(s.get("/v1/rules").status, 401);
    let r = s.post("/v1/check", &[], &sample("eicar_zip.eml"));
    assert_eq!(r.json()["action"], "reject");
    let r = s.request(
        "GET",
        "/v1/rules",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_response("/v1/rules", "get", 200, &v);
    assert_eq!(v["origin"], "bundled");
    let rules = v["rules"].as_array().unwrap();
    assert_eq!(rules.len() as u64, v["rule_count"].as_u64().unwrap());
    let eicar = rules
        .iter()
        .find(|r| r["name"] == "EICAR_Test_File")
        .expect("EICAR rule listed");
    assert_eq!(eicar["messages"]["reject"], 1);
    assert_eq!(eicar["severity"], "critical");
    assert_eq!(eicar["mode"], "enforce");
    assert!(eicar["last_hit_ms"].as_i64().unwrap() > 1_700_000_000_000);
    let quiet = rules
        .iter()
        .find(|r| r["name"] == "HTML_Smuggling_Blob")
        .unwrap();
    assert_eq!(quiet["messages"], serde_json::json!({}));
    assert!(quiet["last_hit_ms"].is_null());
    let checks = v["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "HASH_EICAR" && c["messages"]["reject"] == 1),
        "{checks:?}"
    );
    assert!(
        s.metrics().contains(
            "portcullis_rule_messages_total{rule=\"EICAR_Test_File\",action=\"reject\"} 1"
        )
    );
}

#[test]
fn editing_the_rules_directory_reloads_and_a_broken_edit_keeps_the_old_set() {
    let token = "auditor-token-for-rules-watch";
    let rules = tempfile::tempdir().unwrap();
    let rule = |name: &str| {
        format!(
            "rule {name}\n{{\n    meta:\n        severity = \"low\"\n    strings:\n        $a = \"{name}-marker\"\n    condition:\n        $a\n}}\n"
        )
    };
    std::fs::write(rules.path().join("a.yar"), rule("Watch_One")).unwrap();
    let s = Server::start(&format!(
        "[rules]\ndir = \"{}\"\nwatch_interval = \"200ms\"\n\n[[auth.tokens]]\nname = \"audit\"\nrole = \"auditor\"\nsha256 = \"{}\"\n",
        rules.path().display(),
        sha(token)
    ));
    let names = || -> (String, Vec<String>) {
        let v = s
            .request(
                "GET",
                "/v1/rules",
                &[("Authorization", &format!("Bearer {token}"))],
                b"",
            )
            .json();
        let names = v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        (v["rules_version"].as_str().unwrap().to_string(), names)
    };
    let (v1, n1) = names();
    assert_eq!(n1, vec!["Watch_One"]);

    std::fs::write(rules.path().join("b.yar"), rule("Watch_Two")).unwrap();
    let (v2, n2) = crate::harness::eventually(Duration::from_secs(20), || {
        let (v, n) = names();
        (n.len() == 2).then_some((v, n))
    })
    .expect("the new file was picked up");
    assert_ne!(v1, v2);
    assert_eq!(n2, vec!["Watch_One", "Watch_Two"]);

    // A broken edit: logged with file and line, the running set stays.
    std::fs::write(
        rules.path().join("b.yar"),
        "rule Broken {\n  condition:\n    nope\n}\n",
    )
    .unwrap();
    crate::harness::eventually(Duration::from_secs(20), || {
        s.log().contains("reload failed").then_some(())
    })
    .expect("the failed reload is logged");
    assert!(s.log().contains("b.yar:3"), "{}", s.log());
    assert_eq!(names(), (v2.clone(), n2.clone()));
    let r = s.post("/v1/check", &[], b"Subject: x\r\n\r\nWatch_Two-marker\r\n");
    assert!(
        r.text().contains("Watch_Two"),
        "the old set still scans: {}",
        r.text()
    );
}
