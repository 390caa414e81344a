//! Crash safety: `serve` is SIGKILLed at seeded random points while 200
//! clients at once quarantine messages through three doors (native
//! `/v1/check`, rspamd `/checkv2`, and rspamd's text protocol), then
//! restarted on the same data, three times over. Afterwards:
//!
//! - every message a client was told is quarantined is retrievable, with
//!   the sha256 of the bytes that client sent;
//! - the index is consistent: every held message it lists has its bytes;
//! - no client got anything but "quarantined" (with an id), tempfail, or a
//!   broken connection (which an MTA treats as tempfail).
//!
//! On both storage backends: SQLite + folder, PostgreSQL + S3.

use crate::harness::Server;
use crate::quarantine::{ADMIN, AUDITOR, Db, auth, lab, message, sha};
use std::io::{BufReader, Read, Write};
use std::sync::Arc;
use std::time::Duration;

const CLIENTS: usize = 200;
const ROUNDS: u64 = 3;

#[derive(Debug)]
enum Answer {
    Held { id: String, sha256: String },
    TempFail,
    Broken,
}

/// One message through one of the doors; what the client was told.
fn send(addr: std::net::SocketAddr, door: usize, raw: &[u8]) -> Answer {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return Answer::Broken;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let request = match door {
        0 => crate::harness::request_bytes("POST", "/v1/check?rcpt=a%40example.com", &[], raw),
        1 => crate::harness::request_bytes(
            "POST",
            "/checkv2",
            &[("Rcpt", "<a@example.com>"), ("From", "<s@example.net>")],
            raw,
        ),
        _ => {
            let mut r = format!(
                "CHECK RSPAMC/1.3\r\nContent-length: {}\r\nRcpt: <a@example.com>\r\n\r\n",
                raw.len()
            )
            .into_bytes();
            r.extend_from_slice(raw);
            r
        }
    };
    if s.write_all(&request).is_err() {
        return Answer::Broken;
    }
    if door == 2 {
        let mut text = String::new();
        if s.read_to_string(&mut text).is_err() || text.is_empty() {
            return Answer::Broken;
        }
        if text.contains("\r\nAction: quarantine\r\n") {
            let id = text
                .lines()
                .find_map(|l| l.strip_prefix("Quarantine-Id: "))
                .unwrap_or_else(|| panic!("held without an id: {text}"));
            return Answer::Held {
                id: id.trim().to_string(),
                sha256: sha(raw),
            };
        }
        assert!(
            text.contains("Action: soft reject") || text.starts_with("RSPAMD/1.3 1 EX_ERROR"),
            "neither held nor tempfail: {text}"
        );
        return Answer::TempFail;
    }
    let Ok(r) = crate::harness::read_response(&mut BufReader::new(s)) else {
        return Answer::Broken;
    };
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let (held, id) = if door == 0 {
        (v["action"] == "quarantine", v["quarantine_id"].clone())
    } else {
        (
            v["portcullis"]["action"] == "quarantine",
            v["portcullis"]["quarantine_id"].clone(),
        )
    };
    if r.status == 200 && held {
        let id = id
            .as_str()
            .unwrap_or_else(|| panic!("held without an id: {v}"))
            .to_string();
        return Answer::Held {
            id,
            sha256: sha(raw),
        };
    }
    let tempfail = v["action"] == "tempfail" || v["action"] == "soft reject";
    assert!(tempfail, "neither held nor tempfail ({}): {v}", r.status);
    Answer::TempFail
}

fn crash_scenario(db: Db) {
    let lab = lab(db, "[server]\nqueue = 256\n");
    let dir = lab.server.dir.path().to_path_buf();
    let mut server: Option<Server> = None;
    let mut acked: Vec<(String, String)> = Vec::new();
    let (mut tempfails, mut broken) = (0, 0);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (db as u64);
    for round in 0..ROUNDS {
        let current = server.as_ref().unwrap_or(&lab.server);
        let addr = current.addr;
        let gate = Arc::new(std::sync::Barrier::new(CLIENTS + 1));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let gate = Arc::clone(&gate);
                std::thread::spawn(move || {
                    let raw = message(
                        &format!("crash {round}-{c}"),
                        "PORTCULLIS-TEST-HOLD",
                        &"y".repeat(c * 131 % 20_000),
                    );
                    gate.wait();
                    send(addr, c % 3, &raw)
                })
            })
            .collect();
        gate.wait();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Somewhere in the first second of the burst.
        std::thread::sleep(Duration::from_millis(50 + seed % 900));
        current.signal("KILL");
        for c in clients {
            match c.join().expect("client") {
                Answer::Held { id, sha256 } => acked.push((id, sha256)),
                Answer::TempFail => tempfails += 1,
                Answer::Broken => broken += 1,
            }
        }
        server = Some(Server::serve_on(&dir));
    }
    let again = server.expect("restarted");
    eprintln!(
        "{db:?}: {} acknowledged, {tempfails} tempfail, {broken} broken over {ROUNDS} kills",
        acked.len()
    );
    assert!(
        !acked.is_empty() && broken > 0,
        "the kills must land in the middle of the traffic: {} acknowledged, {broken} broken",
        acked.len()
    );
    for (id, want) in &acked {
        let r = again.request(
            "GET",
            &format!("/v1/quarantine/{id}/raw"),
            &[("Authorization", &auth(ADMIN))],
            b"",
        );
        assert_eq!(r.status, 200, "acknowledged {id} lost: {}", r.text());
        assert_eq!(&sha(&r.body), want, "{id}: other bytes");
    }
    // Every held message the index lists has its bytes.
    let mut offset = 0;
    loop {
        let page = again.request(
            "GET",
            &format!("/v1/quarantine?limit=200&offset={offset}"),
            &[("Authorization", &auth(AUDITOR))],
            b"",
        );
        let items = page.json()["items"].as_array().cloned().unwrap_or_default();
        for item in &items {
            let id = item["id"].as_str().expect("id");
            let r = again.request(
                "GET",
                &format!("/v1/quarantine/{id}/raw"),
                &[("Authorization", &auth(ADMIN))],
                b"",
            );
            assert_eq!(r.status, 200, "{id} is in the index without its bytes");
            assert_eq!(Some(sha(&r.body).as_str()), item["sha256"].as_str(), "{id}");
        }
        if items.len() < 200 {
            break;
        }
        offset += 200;
    }
}

#[test]
fn sigkill_during_a_burst_on_three_doors_loses_nothing_acknowledged_sqlite() {
    crash_scenario(Db::Sqlite);
}

#[test]
fn sigkill_during_a_burst_on_three_doors_loses_nothing_acknowledged_postgres_s3() {
    crash_scenario(Db::Shared);
}
