//! The milter door with real MTAs' milter clients: miltertest (the
//! libmilter test driver, Debian package miltertest) scripts in
//! tests/peers/milter/, and a private Postfix with `smtpd_milters` pointing
//! straight at Portcullis, mail injected with swaks.

use crate::clients::{assert_postfix_tempfails, postfix_verdicts, require, start_postfix};
use crate::harness::{Server, sample};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/milter");

/// Runs a miltertest script against `server`'s milter door; `vars` are
/// passed with -D. Panics with miltertest's output unless it succeeds.
fn miltertest(server: &Server, script: &str, vars: &[(&str, &Path)], extra: &[(&str, &str)]) {
    require("miltertest");
    let mut cmd = Command::new("miltertest");
    cmd.arg("-D")
        .arg(format!("port={}", server.milter_addr().port()))
        .arg("-D")
        .arg(format!("lib={PEERS}/send.lua"));
    for (k, v) in vars {
        cmd.arg("-D").arg(format!("{k}={}", v.display()));
    }
    for (k, v) in extra {
        cmd.arg("-D").arg(format!("{k}={v}"));
    }
    let out = cmd
        .arg("-s")
        .arg(if script.starts_with('/') {
            script.to_string()
        } else {
            format!("{PEERS}/{script}")
        })
        .output()
        .expect("running miltertest");
    assert!(
        out.status.success(),
        "miltertest {script} failed:\n{}{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

#[test]
fn miltertest_clean_reject_and_abort() {
    let s = Server::start("");
    let dir = tempfile::tempdir().unwrap();
    // The sender's own verdict header must go.
    let forged = [
        b"X-Portcullis-Action: accept\r\n".as_slice(),
        &sample("clean_plain.eml"),
    ]
    .concat();
    let clean = write(dir.path(), "clean.eml", &forged);
    let eicar = write(dir.path(), "eicar.eml", &sample("eicar_zip.eml"));
    miltertest(&s, "clean.lua", &[("msg", &clean)], &[]);
    miltertest(&s, "reject.lua", &[("msg", &eicar)], &[]);
    miltertest(&s, "abort.lua", &[("msg", &clean), ("bad", &eicar)], &[]);

    // Garbage and a half conversation leave the listener healthy.
    let addr = s.milter_addr();
    let mut junk = std::net::TcpStream::connect(addr).unwrap();
    junk.write_all(b"\x00\x00\x00\x05Zjunk\xff\xff\xff\xff")
        .unwrap();
    let mut huge = std::net::TcpStream::connect(addr).unwrap();
    huge.write_all(b"\x7f\xff\xff\xffB").unwrap();
    let mut half = std::net::TcpStream::connect(addr).unwrap();
    half.write_all(b"\x00\x00\x00\x0dO\x00\x00\x00\x06")
        .unwrap();
    drop(half);
    // The broken ones are closed by the server, not left hanging.
    let mut buf = [0u8; 16];
    junk.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(std::io::Read::read(&mut junk, &mut buf).unwrap_or(0), 0);
    miltertest(&s, "clean.lua", &[("msg", &clean)], &[]);

    let m = s.metrics();
    assert!(
        m.contains("portcullis_messages_total{door=\"milter\",action=\"accept\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("portcullis_messages_total{door=\"milter\",action=\"reject\"} 1"),
        "{m}"
    );
    assert!(s.log().contains("queue_id=\"QCLEAN1\""), "{}", s.log());
}

#[test]
fn miltertest_quarantine_own_and_hold() {
    let dir = tempfile::tempdir().unwrap();
    let msg = write(dir.path(), "q.eml", &sample("html_smuggling.eml"));
    let own = Server::start("");
    miltertest(&own, "quarantine.lua", &[("msg", &msg)], &[("mode", "own")]);
    assert_eq!(
        own.quarantine_records().len(),
        1,
        "held in our quarantine before the discard"
    );
    let record = &own.quarantine_records()[0];
    assert_eq!(record["door"], "milter");
    assert_eq!(record["envelope"]["queue_id"], "QHOLD1");
    assert_eq!(record["envelope"]["auth_user"], "alice");
    assert_eq!(record["envelope"]["client_ip"], "192.0.2.7");
    assert_eq!(record["envelope"]["helo"], "client.example");
    assert_eq!(record["envelope"]["mail_from"], "alice@example.org");
    let hold = Server::start("[milter]\nquarantine = \"hold\"\n");
    miltertest(
        &hold,
        "quarantine.lua",
        &[("msg", &msg)],
        &[("mode", "hold")],
    );
    assert_eq!(hold.quarantine_records().len(), 1);
}

#[test]
fn miltertest_oversize_and_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("milter.sock");
    let s = Server::start_args(
        "[server]\nmax_body_bytes = 500\n",
        &["--milter-listen", &format!("unix:{}", sock.display())],
    );
    let eicar = write(dir.path(), "eicar.eml", &sample("eicar_zip.eml"));
    // Over the limit: policy.on_oversize (reject, 552 5.3.4), never read.
    let script = write(
        dir.path(),
        "oversize.lua",
        br#"dofile(lib)
local conn = connect_and_negotiate()
send_message(conn, msg, "QBIG")
if mt.eom(conn) ~= nil then error("eom") end
if not mt.eom_check(conn, MT_SMTPREPLY, "552", "5.3.4", "Message too big for content inspection") then error("expected 552 5.3.4") end
mt.disconnect(conn)
"#,
    );
    miltertest(&s, script.to_str().unwrap(), &[("msg", &eicar)], &[]);
    // The same door on a Unix socket.
    let script = write(
        dir.path(),
        "unix.lua",
        br#"local conn = mt.connect("unix:" .. sock, 10, 0.2)
if conn == nil then error("cannot connect to " .. sock) end
if mt.negotiate(conn, nil, nil, nil) ~= nil then error("negotiate") end
if mt.conninfo(conn, "localhost", "127.0.0.1") ~= nil then error("conninfo") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("connect reply") end
mt.disconnect(conn)
"#,
    );
    miltertest(&s, script.to_str().unwrap(), &[("sock", &sock)], &[]);
}

/// Postfix with `smtpd_milters` straight at Portcullis: no proxy between.
#[test]
fn postfix_with_portcullis_as_its_milter() {
    let s = Server::start("");
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = lab_dir.path();
    let (postfix, p1) = start_postfix(lab, s.milter_addr().port(), &[]);

    let record = postfix_verdicts(&postfix, p1, lab, &s);
    assert_eq!(record["door"], "milter");
    assert_eq!(record["envelope"]["rcpt_to"][0], "user@example.test");
    assert!(record["envelope"]["queue_id"].is_string(), "{record}");

    // Portcullis stopped: milter_default_action = tempfail. No mail lost.
    drop(s);
    assert_postfix_tempfails(p1, lab);
}

/// Points the release relay at `port` with a reload ([release] is live).
fn set_relay(s: &Server, port: u16) {
    let config = s.dir.path().join("portcullis.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("relay = ") {
                format!("relay = \"127.0.0.1:{port}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, text).unwrap();
    let before = s.log().matches("reloaded config and rules").count();
    s.signal("HUP");
    crate::harness::eventually(Duration::from_secs(30), || {
        (s.log().matches("reloaded config and rules").count() > before).then_some(())
    })
    .expect("reloaded");
}

/// The release loop with a real MTA: Postfix hands messages to our milter
/// and we hold them. One is released through the re-injection listener
/// exactly as deploy/postfix/master.cf ships it (no milter there); the
/// other straight back into the filtering smtpd, where our milter sees the
/// release stamp and lets it through. Each is held once and delivered once.
#[test]
fn postfix_delivers_released_messages_without_holding_them_again() {
    use crate::harness::{eventually, free_port};
    use crate::quarantine::{Db, OPERATOR, auth, lab, message};
    let lab_q = lab(Db::Sqlite, "");
    let s = &lab_q.server;
    let lab_dir = tempfile::tempdir().unwrap();
    let pf = lab_dir.path();
    let reinject = free_port();
    let (postfix, p1) = start_postfix(
        pf,
        s.milter_addr().port(),
        &[("REINJECT", reinject.to_string())],
    );
    for subject in ["Held at the MTA one", "Held at the MTA two"] {
        let raw = message(subject, "PORTCULLIS-TEST-HOLD", "");
        let (code, t) = crate::clients::swaks(p1, &["user@example.test"], &raw, pf);
        assert_eq!(code, 0, "{t}");
    }
    let records = s.quarantine_records();
    assert_eq!(records.len(), 2);
    assert!(crate::clients::maildir_messages(pf).is_empty());
    let release = |id: &str| {
        let r = s.request(
            "POST",
            &format!("/v1/quarantine/{id}/release"),
            &[("Authorization", &auth(OPERATOR))],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
    };
    let delivered = |n: usize| {
        eventually(Duration::from_secs(60), || {
            let m = crate::clients::maildir_messages(pf);
            (m.len() >= n).then_some(m)
        })
        .unwrap_or_else(|| panic!("not delivered; Postfix log:\n{}", postfix.log()))
    };

    set_relay(s, reinject);
    let first = records[0]["id"].as_str().unwrap().to_string();
    release(&first);
    let got = delivered(1);
    assert!(got[0].contains(&format!("X-Portcullis-Release: v1; id={first};")));
    assert!(
        s.metrics()
            .contains("portcullis_release_stamps_passed_total 0"),
        "the milter was skipped"
    );

    set_relay(s, p1);
    let second = records[1]["id"].as_str().unwrap().to_string();
    release(&second);
    let got = delivered(2);
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .any(|m| m.contains(&format!("X-Portcullis-Release: v1; id={second};")))
    );
    assert!(got.iter().all(|m| m.contains("PORTCULLIS-TEST-HOLD")));
    assert_eq!(
        s.quarantine_records().len(),
        2,
        "neither was held a second time"
    );
    assert!(
        s.metrics()
            .contains("portcullis_release_stamps_passed_total 1")
    );
}
