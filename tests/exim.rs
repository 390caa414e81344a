//! Exim 4.96 (Debian's exim4-daemon-heavy binary) in front of `portcullis
//! serve`, configured with deploy/exim/portcullis-data.acl as it ships.
//! Exim's `spamd_address … variant=rspamd` speaks rspamd's text protocol
//! (RSPAMC/1.3) to the rspamd door's port; each SMTP session is a real
//! `exim -bs` on our stdin/stdout, with a private spool.
//!
//! Debian's exim4 package conflicts with postfix (both are the system MTA),
//! so `scripts/test` unpacks the daemon binary from the .deb into a cache
//! folder and installs its libraries; no Exim service is involved.

use crate::harness::{Server, Sink, free_port};
use crate::quarantine::{ADMIN, AUDITOR, Db, OPERATOR, auth, config};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const RULES: &str = r#"
rule Test_Hold { meta: score = 20 action = "quarantine" strings: $a = "EXIM-TEST-HOLD" condition: $a }
rule Test_Reject { meta: score = 60 action = "reject" strings: $a = "EXIM-TEST-REJECT" condition: $a }
rule Test_Tag { meta: score = 7 strings: $a = "EXIM-TEST-TAG" condition: $a }
"#;

fn exim_bin() -> PathBuf {
    let path = std::env::var_os("PORTCULLIS_EXIM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/portcullis/exim/usr/sbin/exim4".into());
    assert!(
        path.is_file(),
        "{} is missing: run ./scripts/test (it unpacks Debian's exim4-daemon-heavy)",
        path.display()
    );
    path
}

/// An Exim configuration around the shipped ACL, spooling under `dir`.
fn exim_config(dir: &Path, portcullis_port: u16) -> PathBuf {
    let acl = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/exim/portcullis-data.acl"
    );
    for d in ["spool", "log"] {
        std::fs::create_dir_all(dir.join(d)).expect("exim dirs");
    }
    let conf = format!(
        "primary_hostname = exim.test\n\
         spool_directory = {spool}\n\
         log_file_path = {log}/%slog\n\
         exim_user = root\n\
         exim_group = root\n\
         never_users =\n\
         keep_environment =\n\
         host_lookup =\n\
         queue_only\n\
         spamd_address = 127.0.0.1 {portcullis_port} variant=rspamd\n\
         acl_smtp_rcpt = acl_check_rcpt\n\
         acl_smtp_data = acl_check_data\n\
         begin acl\n\
         acl_check_rcpt:\n  accept\n\
         acl_check_data:\n\
         .include {acl}\n  accept\n",
        spool = dir.join("spool").display(),
        log = dir.join("log").display(),
    );
    let path = dir.join("exim.conf");
    std::fs::write(&path, conf).expect("exim.conf");
    path
}

/// One SMTP transaction through `exim -bs` from 192.0.2.7; Exim's reply
/// to the message (the line after DATA's 354).
fn send(conf: &Path, subject: &str, body: &str) -> String {
    let session = format!(
        "EHLO client.test\r\nMAIL FROM:<sender@example.net>\r\nRCPT TO:<rcpt@example.org>\r\nDATA\r\n\
         Subject: {subject}\r\nMessage-ID: <{subject}@example.net>\r\n\r\n{body}\r\n.\r\nQUIT\r\n"
    );
    let mut child = Command::new(exim_bin())
        .arg("-C")
        .arg(conf)
        .args(["-bs", "-oMa", "192.0.2.7"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running exim");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(session.as_bytes())
            .expect("writing the session");
    }
    let out = child.wait_with_output().expect("exim");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("354"))
        .unwrap_or_else(|| {
            panic!(
                "no DATA in the session: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    lines.get(at + 1).map(|l| l.to_string()).unwrap_or_default()
}

fn queued(conf: &Path) -> usize {
    let out = Command::new(exim_bin())
        .arg("-C")
        .arg(conf)
        .arg("-bpc")
        .output()
        .expect("exim -bpc");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("exim -bpc: {}", String::from_utf8_lossy(&out.stderr)))
}

fn queued_headers(conf: &Path, reply: &str) -> String {
    let id = reply.rsplit("id=").next().expect("an id").trim();
    let out = Command::new(exim_bin())
        .arg("-C")
        .arg(conf)
        .args(["-Mvh", id])
        .output()
        .expect("exim -Mvh");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn exim_with_the_shipped_acl_acts_on_every_verdict_and_fails_closed() {
    let sink = Sink::start();
    let rules = tempfile::tempdir().expect("temp dir");
    std::fs::write(rules.path().join("test.yar"), RULES).expect("rules");
    let server = Server::start(&config(&sink, Db::Sqlite, rules.path(), ""));
    let dir = tempfile::tempdir().expect("exim dir");
    let conf = exim_config(dir.path(), server.addr.port());

    let clean = send(&conf, "clean", "Nothing to see.");
    assert!(clean.starts_with("250 OK id="), "{clean}");
    let h = queued_headers(&conf, &clean);
    assert!(h.contains("X-Portcullis: no action, score 0.0"), "{h}");
    assert!(!h.contains("X-Spam-Flag"), "{h}");

    let tagged = send(&conf, "tagged", "EXIM-TEST-TAG");
    assert!(tagged.starts_with("250 OK id="), "{tagged}");
    let h = queued_headers(&conf, &tagged);
    assert!(h.contains("X-Spam-Flag: YES"), "{h}");
    // The rule matches the message and its text body: 2 x 7.
    assert!(
        h.contains("X-Portcullis: rewrite subject, score 14.0"),
        "{h}"
    );

    let rejected = send(&conf, "rejected", "EXIM-TEST-REJECT");
    assert_eq!(rejected, "554 5.7.1 Message rejected by content policy");
    assert_eq!(queued(&conf), 2, "clean and tagged only");

    // Held: the sender hears 250, Exim delivers nothing, Portcullis keeps
    // it with Exim's envelope, and a release sends the message itself
    // (not Exim's mbox wrapping) to the relay.
    let held = send(&conf, "held", "EXIM-TEST-HOLD");
    assert!(held.starts_with("250 OK id="), "{held}");
    assert_eq!(queued(&conf), 2, "discarded by the ACL");
    let list = server.request(
        "GET",
        "/v1/quarantine",
        &[("Authorization", &auth(AUDITOR))],
        b"",
    );
    let items = list.json()["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 1, "{}", list.text());
    let id = items[0]["id"].as_str().expect("id").to_string();
    let detail = server
        .request(
            "GET",
            &format!("/v1/quarantine/{id}"),
            &[("Authorization", &auth(AUDITOR))],
            b"",
        )
        .json();
    assert_eq!(detail["envelope"]["mail_from"], "sender@example.net");
    assert_eq!(detail["envelope"]["rcpt_to"][0], "rcpt@example.org");
    assert_eq!(detail["envelope"]["client_ip"], "192.0.2.7");
    assert_eq!(
        detail["envelope"]["queue_id"].as_str(),
        held.rsplit("id=").next().map(str::trim),
        "Exim's queue id"
    );
    let raw = server.request(
        "GET",
        &format!("/v1/quarantine/{id}/raw"),
        &[("Authorization", &auth(ADMIN))],
        b"",
    );
    assert!(
        !raw.body.starts_with(b"From "),
        "the mbox line is not part of the message"
    );
    assert!(String::from_utf8_lossy(&raw.body).contains("Subject: held"));
    let r = server.request(
        "POST",
        &format!("/v1/quarantine/{id}/release"),
        &[("Authorization", &auth(OPERATOR))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = sink.wait_for(1);
    assert_eq!(got[0].rcpt_to, vec!["rcpt@example.org"]);
    let text = String::from_utf8_lossy(&got[0].data);
    assert!(text.contains("EXIM-TEST-HOLD") && !text.contains("From MAILER-DAEMON"));

    // HTTP clients still share the port.
    assert_eq!(server.get("/healthz").status, 200);

    // Portcullis unreachable: 451, nothing queued, nothing passes.
    let down = tempfile::tempdir().expect("exim dir");
    let down_conf = exim_config(down.path(), free_port());
    let r = send(&down_conf, "unscanned", "Nothing to see.");
    assert_eq!(r, "451 4.7.1 Content scan unavailable, try again later");
    assert_eq!(queued(&down_conf), 0);
    std::mem::forget(rules);
}

/// The text protocol at the byte level, for what Exim never sends: symbol
/// listings, an oversize body, a lying or cut-off request, a head without
/// end. Each gets an answer (or the connection closes), never a hang.
#[test]
fn the_rspamc_text_protocol_answers_every_request_shape() {
    use std::io::{Read, Write};
    let server = Server::start("[server]\nmax_body_bytes = 2000\nheader_timeout_ms = 2000\n");
    let ask = |request: &[u8]| -> String {
        let mut s = std::net::TcpStream::connect(server.addr).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        // The server may answer and close before taking all of a bad
        // request; that is an answer too.
        let _ = s.write_all(request);
        // Done sending (a cut-off request ends here rather than at the
        // body timeout).
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let eicar = crate::harness::sample("eicar.eml");
    let mut req = format!(
        "SYMBOLS RSPAMC/1.3\r\nContent-length: {}\r\nFrom: <a@example.net>\r\nRcpt: <b@example.org>\r\n\r\n",
        eicar.len()
    )
    .into_bytes();
    req.extend_from_slice(&eicar);
    let r = ask(&req);
    assert!(
        r.starts_with("RSPAMD/1.3 0 EX_OK\r\nMetric: default; True; "),
        "{r}"
    );
    assert!(r.contains("\r\nAction: reject\r\n"), "{r}");
    assert!(r.contains("Symbol: EICAR"), "{r}");

    // Over server.max_body_bytes: policy.on_oversize decides (reject by
    // default), unread.
    let mut big = b"CHECK RSPAMC/1.3\r\nContent-length: 5000\r\n\r\n".to_vec();
    big.extend_from_slice(&[b'a'; 5000]);
    let r = ask(&big);
    assert!(r.contains("\r\nAction: reject\r\n"), "{r}");
    assert!(r.contains("Summary: reject: LIMIT_MESSAGE_BYTES"), "{r}");

    for bad in [
        &b"CHECK RSPAMC/1.3\r\nFrom: <a@example.net>\r\n\r\nno length"[..],
        b"PING RSPAMC/1.3\r\nContent-length: 0\r\n\r\n",
        b"CHECK RSPAMC/1.3\r\nContent-length: 100\r\n\r\ncut short",
    ] {
        let r = ask(bad);
        assert!(
            r.is_empty()
                || r.starts_with("RSPAMD/1.3 1 EX_ERROR")
                || r.contains("Action: soft reject"),
            "{}: {r}",
            String::from_utf8_lossy(bad)
        );
        assert!(
            !r.contains("EX_OK\r\nMetric: default; False"),
            "never a pass: {r}"
        );
    }
    let mut endless = b"CHECK RSPAMC/1.3\r\n".to_vec();
    endless.extend(
        std::iter::repeat_n(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".as_slice(), 3000).flatten(),
    );
    let r = ask(&endless);
    assert!(r.starts_with("RSPAMD/1.3 1 EX_ERROR"), "{r}");
    assert!(r.contains("larger than"), "{r}");
    // HTTP on the same port is untouched.
    assert_eq!(server.get("/healthz").status, 200);
}
