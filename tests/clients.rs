//! Real clients against `portcullis serve`: rspamc, Haraka with its rspamd
//! plugin, and Postfix through rspamd's own proxy (milter mode). Nothing is
//! mocked. The programs are installed by `scripts/test`; a missing one
//! fails the test with the command that installs it, never skips it.

use crate::harness::{Server, eventually, free_port, have, sample};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub fn require(program: &str) {
    assert!(
        have(program),
        "{program} is not installed: run ./scripts/test (it installs the test peers)"
    );
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn rspamc(server: &Server, args: &[&str], message: &[u8]) -> Output {
    require("rspamc");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("msg.eml");
    std::fs::write(&path, message).unwrap();
    let out = Command::new("rspamc")
        .arg("-h")
        .arg(server.addr.to_string())
        .args(args)
        .arg(&path)
        .output()
        .expect("running rspamc");
    assert!(out.status.success(), "rspamc failed: {}", text(&out));
    out
}

/// rspamc reading the message from stdin, as a person would pipe it.
fn rspamc_stdin(args: &[&str], message: &[u8]) -> Output {
    require("rspamc");
    Command::new("rspamc")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("piped").write_all(message)?;
            c.wait_with_output()
        })
        .expect("running rspamc")
}

#[test]
fn rspamc_prints_our_verdicts_plain_and_zstd() {
    let s = Server::start("");
    let out = text(&rspamc(&s, &[], &sample("clean_plain.eml")));
    assert!(out.contains("Action: no action"), "{out}");
    assert!(out.contains("Spam: false"), "{out}");

    for flags in [&[][..], &["-z"][..]] {
        let out = text(&rspamc(&s, flags, &sample("eicar_zip.eml")));
        assert!(out.contains("Action: reject"), "{flags:?}: {out}");
        assert!(
            out.contains("Symbol: EICAR_Test_File (100.00)[message > files.zip > eicar.com]"),
            "{out}"
        );
        assert!(
            out.contains(
                "Message - smtp_message: Message rejected by content policy (EICAR_Test_File)"
            ),
            "{out}"
        );
        assert!(!out.contains("error"), "{out}");
    }
    // Quarantine: rspamd has no such action, so rspamc sees reject and the
    // held-for-review text; the message is in our spool.
    let out = text(&rspamc(&s, &[], &sample("html_smuggling.eml")));
    assert!(out.contains("Action: reject"), "{out}");
    assert!(out.contains("Message held for review"), "{out}");
    // The legacy protocol command.
    let out = text(&rspamc(&s, &["symbols"], &sample("eicar_zip.eml")));
    assert!(out.contains("Action: reject"), "{out}");
    assert!(out.contains("EICAR_Test_File"), "{out}");
    // --json re-emits what we sent.
    let out = rspamc(&s, &["--json"], &sample("eicar.eml"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["action"], "reject");
    assert_eq!(v["portcullis"]["action"], "reject");
    let m = s.metrics();
    assert!(
        m.contains("portcullis_messages_total{door=\"rspamd\",action=\"reject\"} 4"),
        "{m}"
    );
}

#[test]
fn rspamc_with_a_password_when_loopback_is_not_trusted() {
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"s3cret"))
    };
    let s = Server::start(&format!(
        "[auth]\nhook_networks = []\nhook_token_sha256 = \"{hash}\"\n"
    ));
    let out = text(&rspamc(&s, &["-P", "s3cret"], &sample("eicar_zip.eml")));
    assert!(out.contains("Action: reject"), "{out}");
    let addr = s.addr.to_string();
    let out = rspamc_stdin(&["-h", &addr, "-P", "wrong"], &sample("clean_plain.eml"));
    assert!(text(&out).contains("401"), "{}", text(&out));
}

/// With no flags at all rspamc connects to localhost:11334 (it tries the
/// controller port for local hosts); the default listen covers it.
#[test]
fn rspamc_with_no_flags_reaches_a_gateway_started_with_no_config() {
    require("rspamc");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(crate::harness::bin());
    // Default HTTP listeners; the milter one moved off 11332 so that tests
    // running at the same time cannot collide on it.
    cmd.args(["serve", "--milter-listen", "127.0.0.1:0"])
        .current_dir(dir.path());
    let _s = Server::spawn(cmd, tempfile::tempdir().unwrap());
    let out = rspamc_stdin(&[], &sample("eicar_zip.eml"));
    let t = text(&out);
    assert!(out.status.success() && t.contains("Action: reject"), "{t}");
}

// ---------------------------------------------------------------- Haraka

/// Where `scripts/test` installs Haraka 3.3.4 and haraka-plugin-rspamd
/// 1.6.1 (npm, pinned).
fn haraka_bin() -> PathBuf {
    let path = std::env::var_os("PORTCULLIS_HARAKA").map_or_else(
        || PathBuf::from("/var/cache/portcullis/haraka/node_modules/.bin/haraka"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "Haraka is not installed at {}: run ./scripts/test (it installs it with npm)",
        path.display()
    );
    path
}

pub struct Peer {
    child: Child,
    name: &'static str,
    log: PathBuf,
    /// Signal the whole process group (the peer forks workers).
    group: bool,
    stop_signal: &'static str,
}

impl Peer {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&mut self, needle: &str) {
        let found = eventually(Duration::from_secs(60), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}):\n{}", self.name, self.log());
            }
            self.log().contains(needle).then_some(())
        });
        assert!(found.is_some(), "{} not ready:\n{}", self.name, self.log());
    }
}

impl Peer {
    /// Stops the peer and every process it forked.
    fn stop(&mut self) {
        let target = if self.group {
            format!("-{}", self.child.id())
        } else {
            self.child.id().to_string()
        };
        let _ = Command::new("kill")
            .args([&format!("-{}", self.stop_signal), "--", &target])
            .status();
        if eventually(Duration::from_secs(15), || {
            self.child.try_wait().ok().flatten()
        })
        .is_none()
        {
            let _ = Command::new("kill").args(["-KILL", "--", &target]).status();
            let _ = self.child.wait();
        }
        if self.group {
            // Workers may outlive the leader by a moment.
            eventually(Duration::from_secs(10), || {
                let alive = Command::new("kill")
                    .args(["-0", "--", &target])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                (!alive).then_some(())
            });
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

fn spawn_logged(name: &'static str, mut cmd: Command, log: &Path) -> Peer {
    let file = std::fs::File::create(log).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    Peer {
        child,
        name,
        log: log.to_owned(),
        group: false,
        // SIGINT lets Haraka shut down cleanly.
        stop_signal: "INT",
    }
}

/// swaks to 127.0.0.1:port; returns its exit code and transcript.
pub fn swaks(port: u16, to: &[&str], message: &[u8], dir: &Path) -> (i32, String) {
    require("swaks");
    let file = dir.join(format!("swaks-{}.eml", free_port()));
    std::fs::write(&file, message).unwrap();
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(["--helo", "client.test", "--from", "alice@example.org"])
        .args(["--timeout", "60"]);
    for rcpt in to {
        cmd.args(["--to", rcpt]);
    }
    let out = cmd
        .arg("--data")
        .arg(format!("@{}", file.display()))
        .output()
        .expect("running swaks");
    (out.status.code().unwrap_or(-1), text(&out))
}

/// The last server reply line swaks printed (`<- ` or `<** `).
pub fn last_reply(transcript: &str) -> String {
    transcript
        .lines()
        .filter(|l| l.starts_with("<- ") || l.starts_with("<** "))
        .rfind(|l| !l.contains("221"))
        .unwrap_or("")
        .to_string()
}

#[test]
fn haraka_with_its_rspamd_plugin() {
    let haraka = haraka_bin();
    let s = Server::start("");
    let lab = tempfile::tempdir().unwrap();
    let cfg = lab.path().join("haraka");
    let delivered = lab.path().join("delivered");
    let ok = Command::new(&haraka).arg("-i").arg(&cfg).output().unwrap();
    assert!(ok.status.success(), "haraka -i: {}", text(&ok));
    std::fs::create_dir_all(cfg.join("plugins")).unwrap();
    let port = free_port();
    let files = [
        (
            "config/smtp.ini",
            format!(
                "[main]\nlisten=127.0.0.1:{port}\nnodes=0\ndaemonize=false\ngraceful_shutdown=false\n"
            ),
        ),
        (
            "config/plugins",
            "rcpt_to.in_host_list\nrspamd\nqueue_to_file\n".into(),
        ),
        ("config/host_list", "example.test\n".into()),
        ("config/me", "haraka.test\n".into()),
        // Mail from 127.0.0.1 is skipped unless local/private IPs are
        // checked; defer on error so an outage tempfails instead of passing
        // mail unscanned.
        (
            "config/rspamd.ini",
            format!(
                "[main]\nhost = 127.0.0.1\nport = {}\npath = /checkv2\ntimeout = 30\n\n\
                 [check]\nlocal_ip = true\nprivate_ip = true\n\n[defer]\nerror = true\ntimeout = true\n",
                s.addr.port()
            ),
        ),
        (
            "config/queue_to_file.ini",
            format!("[main]\ndir = {}\n", delivered.display()),
        ),
        (
            "plugins/queue_to_file.js",
            include_str!("peers/haraka/queue_to_file.js").into(),
        ),
    ];
    for (name, content) in files {
        std::fs::write(cfg.join(name), content).unwrap();
    }
    let mut cmd = Command::new(&haraka);
    cmd.arg("-c").arg(&cfg);
    let mut peer = spawn_logged("haraka", cmd, &lab.path().join("haraka.log"));
    peer.wait_for(&format!("Listening on 127.0.0.1:{port}"));

    let (code, t) = swaks(
        port,
        &["bob@example.test"],
        &sample("clean_plain.eml"),
        lab.path(),
    );
    assert_eq!(code, 0, "{t}\n{}", peer.log());
    let id = last_reply(&t)
        .split("Saved as ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no queue id in {t}"));
    let stored = std::fs::read_to_string(delivered.join(format!("{id}.eml")))
        .unwrap_or_else(|e| panic!("{id}.eml: {e}\n{t}"));
    assert!(stored.contains("X-Portcullis-Action: accept"), "{stored}");

    let (code, t) = swaks(
        port,
        &["bob@example.test"],
        &sample("eicar_zip.eml"),
        lab.path(),
    );
    assert_ne!(code, 0, "{t}");
    let reply = last_reply(&t);
    assert!(
        reply.contains("550")
            && reply.contains("Message rejected by content policy (EICAR_Test_File)"),
        "{reply}"
    );

    // With the gateway down, Haraka defers: no mail passes unscanned.
    drop(s);
    let (code, t) = swaks(
        port,
        &["bob@example.test"],
        &sample("clean_plain.eml"),
        lab.path(),
    );
    assert_ne!(code, 0, "{t}");
    assert!(last_reply(&t).contains(" 45"), "{t}");
    assert_eq!(std::fs::read_dir(&delivered).unwrap().count(), 1);
}

// ---------------------------------------------------------------- Postfix

fn render(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(template.to_string(), |t, (k, v)| {
        t.replace(&format!("{{{{{k}}}}}"), v)
    })
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
}

pub fn maildir_messages(lab: &Path) -> Vec<String> {
    let new = lab.join("mail/Maildir/new");
    std::fs::read_dir(new)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Postfix (smtpd_milters) → rspamd's proxy worker in milter mode →
/// Portcullis `/checkv2`, each a real process on loopback high ports, the
/// way deploy/postfix describes. Needs root: Postfix's master and rspamd
/// drop privileges themselves.
/// A private Postfix on 127.0.0.1 with `smtpd_milters` pointing at
/// `milter_port` and `milter_default_action = tempfail`, delivering
/// example.test into `lab/mail/Maildir`. Returns it and its SMTP port.
pub fn start_postfix(lab: &Path, milter_port: u16, extra_vars: &[(&str, String)]) -> (Peer, u16) {
    require("swaks");
    let postfix_daemons = Command::new("postconf")
        .args(["-h", "daemon_directory"])
        .output()
        .expect("postconf (Debian package postfix): run ./scripts/test");
    let master =
        PathBuf::from(String::from_utf8_lossy(&postfix_daemons.stdout).trim()).join("master");
    let p1 = free_port();
    let mut vars = vec![
        ("LAB", lab.display().to_string()),
        ("P1", p1.to_string()),
        ("P2", milter_port.to_string()),
    ];
    vars.extend(extra_vars.iter().cloned());
    for d in ["etc", "mail", "spool"] {
        std::fs::create_dir_all(lab.join(d)).unwrap();
    }
    // Postfix (as user postfix) and the virtual agent (as nobody) must
    // traverse the lab; the Maildir belongs to the delivery uid.
    run_ok(Command::new("chmod").arg("755").arg(lab));
    run_ok(
        Command::new("chown")
            .arg("65534:65534")
            .arg(lab.join("mail")),
    );
    std::fs::write(
        lab.join("etc/main.cf"),
        render(include_str!("peers/postfix/main.cf.in"), &vars),
    )
    .unwrap();
    let mut master_cf = render(include_str!("peers/postfix/master.cf.in"), &vars);
    // With REINJECT, the re-injection listener exactly as deploy/postfix
    // ships it, on that port instead of 10025.
    if let Some((_, port)) = vars.iter().find(|(k, _)| *k == "REINJECT") {
        master_cf.push_str(
            &include_str!("../deploy/postfix/master.cf")
                .replace("127.0.0.1:10025", &format!("127.0.0.1:{port}")),
        );
    }
    std::fs::write(lab.join("etc/master.cf"), master_cf).unwrap();
    // Postfix will not read a config file changed in the last seconds.
    run_ok(
        Command::new("touch")
            .args(["-d", "-10 seconds"])
            .arg(lab.join("etc/main.cf"))
            .arg(lab.join("etc/master.cf")),
    );
    let check = Command::new("postfix")
        .arg("-c")
        .arg(lab.join("etc"))
        .arg("check")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "postfix check: {}\n{}",
        text(&check),
        std::fs::read_to_string(lab.join("maillog")).unwrap_or_default()
    );
    let mut cmd = Command::new(&master);
    cmd.arg("-c")
        .arg(lab.join("etc"))
        .arg("-s")
        .env("MAIL_LOGTAG", format!("postfix-lab-{p1}"))
        .env("POSTLOG_SERVICE", lab.join("spool/public/postlog"))
        .env("POSTLOG_HOSTNAME", "mx.lab.invalid");
    let mut postfix = spawn_logged("postfix", cmd, &lab.join("master.out"));
    postfix.group = true;
    postfix.stop_signal = "TERM";
    postfix.log = lab.join("maillog");
    assert!(
        eventually(Duration::from_secs(30), || listening(p1).then_some(())).is_some(),
        "postfix not listening:\n{}",
        postfix.log()
    );
    (postfix, p1)
}

#[test]
fn postfix_through_the_rspamd_proxy() {
    require("rspamd");
    let s = Server::start("");
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = lab_dir.path();
    let p2 = free_port();
    let vars = [
        ("LAB", lab.display().to_string()),
        ("P2", p2.to_string()),
        ("P3", s.addr.port().to_string()),
    ];
    std::fs::create_dir_all(lab.join("rspamd")).unwrap();
    std::fs::write(
        lab.join("rspamd/rspamd.conf"),
        render(include_str!("peers/postfix/rspamd.conf.in"), &vars),
    )
    .unwrap();
    // A one-line TLD list saves rspamd ~13 s of start-up.
    std::fs::write(lab.join("rspamd/tld.dat"), "com\n").unwrap();
    let mut cmd = Command::new("setsid");
    cmd.args(["rspamd", "-f", "-u", "nobody", "-g", "nogroup", "-c"])
        .arg(lab.join("rspamd/rspamd.conf"));
    let mut rspamd = spawn_logged("rspamd", cmd, &lab.join("rspamd/stdout.log"));
    rspamd.group = true;
    rspamd.stop_signal = "TERM";
    rspamd.log = lab.join("rspamd/rspamd.log");
    rspamd.wait_for("starting rspamd_proxy process");
    assert!(
        eventually(Duration::from_secs(30), || listening(p2).then_some(())).is_some(),
        "rspamd proxy not listening:\n{}",
        rspamd.log()
    );
    let (postfix, p1) = start_postfix(lab, p2, &[]);

    let record = postfix_verdicts(&postfix, p1, lab, &s);
    assert_eq!(record["door"], "rspamd");

    // Portcullis down: the proxy fails, Postfix tempfails. Nothing is lost.
    drop(s);
    assert_postfix_tempfails(p1, lab);

    // The proxy down too: milter_default_action = tempfail.
    rspamd.stop();
    assert_postfix_tempfails(p1, lab);
}

/// What every Postfix route must do, whatever sits between Postfix and
/// Portcullis: clean mail delivered with our headers, EICAR rejected with
/// our text, a quarantined message accepted from the sender but discarded
/// by Postfix and held by us, and never delivered. Returns the quarantine
/// record.
pub fn postfix_verdicts(postfix: &Peer, p1: u16, lab: &Path, s: &Server) -> serde_json::Value {
    let (code, t) = swaks(p1, &["user@example.test"], &sample("clean_plain.eml"), lab);
    assert_eq!(code, 0, "{t}\n{}", postfix.log());
    let delivered = eventually(Duration::from_secs(30), || {
        let m = maildir_messages(lab);
        (!m.is_empty()).then_some(m)
    })
    .unwrap_or_else(|| panic!("nothing delivered:\n{}", postfix.log()));
    assert!(
        delivered[0].contains("X-Portcullis-Action: accept"),
        "{}",
        delivered[0]
    );

    let (code, t) = swaks(p1, &["user@example.test"], &sample("eicar_zip.eml"), lab);
    assert_ne!(code, 0, "{t}");
    let reply = last_reply(&t);
    assert!(
        reply.contains("554 5.7.1 Message rejected by content policy (EICAR_Test_File)"),
        "{reply}"
    );

    let (code, t) = swaks(
        p1,
        &["user@example.test"],
        &sample("html_smuggling.eml"),
        lab,
    );
    assert_eq!(code, 0, "{t}");
    let records = s.quarantine_records();
    assert_eq!(records.len(), 1, "held in our quarantine");
    assert!(
        eventually(Duration::from_secs(30), || postfix
            .log()
            .contains("milter triggers DISCARD action")
            .then_some(()))
        .is_some(),
        "{}",
        postfix.log()
    );
    // A later clean message arrives; the quarantined one never does.
    let (code, t) = swaks(
        p1,
        &["user@example.test"],
        &sample("clean_pdf_and_png.eml"),
        lab,
    );
    assert_eq!(code, 0, "{t}");
    let all = eventually(Duration::from_secs(30), || {
        let m = maildir_messages(lab);
        (m.len() == 2).then_some(m)
    })
    .unwrap_or_else(|| panic!("second delivery missing:\n{}", postfix.log()));
    assert!(
        !all.iter().any(|m| m.contains("invoice.html")),
        "quarantined mail was delivered"
    );
    records.into_iter().next().expect("one record")
}

/// With the filter chain down, Postfix defers (451): nothing is delivered
/// unscanned, nothing is lost.
pub fn assert_postfix_tempfails(p1: u16, lab: &Path) {
    let before = maildir_messages(lab).len();
    let (code, t) = swaks(p1, &["user@example.test"], &sample("clean_plain.eml"), lab);
    assert_ne!(code, 0, "{t}");
    assert!(last_reply(&t).contains(" 451 "), "{t}");
    assert_eq!(maildir_messages(lab).len(), before);
}
