//! The quarantine end to end: a real `serve`, the operators' API, release
//! over SMTP to a real SMTP server (aiosmtpd), recipients' links, digests,
//! retention and a SIGKILL in the middle of quarantining. Each scenario
//! runs on both storage backends: SQLite with the local folder, and a real
//! PostgreSQL server with an S3-compatible bucket (`scripts/test` starts
//! both and sets PORTCULLIS_TEST_POSTGRES and PORTCULLIS_TEST_S3*).

use crate::harness::{Delivered, Server, Sink, bin, block_on, eventually};
use sha2::Digest;
use std::time::Duration;

pub const ADMIN: &str = "admin-token-for-tests-0001";
pub const OPERATOR: &str = "operator-token-for-tests-0002";
pub const ANALYST: &str = "analyst-token-for-tests-0003";
pub const AUDITOR: &str = "auditor-token-for-tests-0004";

pub fn sha(s: impl AsRef<[u8]>) -> String {
    hex::encode(sha2::Sha256::digest(s.as_ref()))
}

/// Test rules: a medium-severity rule that quarantines (recipients may
/// release) and a high-severity one (recipients may only ask).
pub const RULES: &str = r#"
rule Test_Hold_Marker
{
    meta:
        description = "test marker: hold for review"
        severity = "medium"
        score = 10
        action = "quarantine"
    strings:
        $a = "PORTCULLIS-TEST-HOLD"
    condition:
        $a
}

rule Test_Danger_Marker
{
    meta:
        description = "test marker: dangerous"
        severity = "high"
        score = 5
        action = "quarantine"
    strings:
        $a = "PORTCULLIS-TEST-DANGER"
    condition:
        $a
}
"#;

/// A fresh database for one test: SQLite (None) or a new database in the
/// test PostgreSQL server.
pub fn fresh_postgres() -> String {
    let base = std::env::var("PORTCULLIS_TEST_POSTGRES")
        .expect("PORTCULLIS_TEST_POSTGRES is not set: run ./scripts/test, which starts PostgreSQL");
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        &hex::encode(sha(format!("{:?}", std::time::Instant::now())).as_bytes())[..12]
    );
    block_on(async {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&base)
            .await
            .expect("connecting to the test PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .expect("CREATE DATABASE");
    });
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("PORTCULLIS_TEST_POSTGRES {base:?} has no database part"),
    }
}

/// A test's own corner of the test bucket: a fresh key prefix in the S3
/// server `scripts/test` starts (moto's, checking SigV4 signatures).
pub struct TestBucket {
    pub config: portcullis::config::S3Config,
}

impl TestBucket {
    pub fn fresh() -> TestBucket {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run ./scripts/test, which starts the S3 server")
            })
        };
        // One file for all tests of this process: the secret is the same.
        let secret_file =
            std::env::temp_dir().join(format!("portcullis-test-s3-{}.secret", std::process::id()));
        if !secret_file.exists() {
            let tmp = secret_file.with_extension(format!("{:?}", std::thread::current().id()));
            std::fs::write(&tmp, var("PORTCULLIS_TEST_S3_SECRET")).expect("secret file");
            std::fs::rename(&tmp, &secret_file).expect("secret file");
        }
        let prefix = format!(
            "t-{}-{}/",
            std::process::id(),
            &sha(format!("{:?}", std::time::Instant::now()))[..12]
        );
        TestBucket {
            config: portcullis::config::S3Config {
                bucket: var("PORTCULLIS_TEST_S3_BUCKET"),
                endpoint: Some(var("PORTCULLIS_TEST_S3")),
                region: Some("us-east-1".into()),
                prefix,
                allow_http: true,
                virtual_hosted_style: false,
                access_key_id: Some(var("PORTCULLIS_TEST_S3_KEY")),
                secret_access_key_file: Some(secret_file),
                timeout: Duration::from_secs(30),
            },
        }
    }

    /// The `[quarantine.s3]` table for this bucket.
    pub fn toml(&self) -> String {
        let c = &self.config;
        format!(
            "[quarantine.s3]\nbucket = \"{}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nprefix = \"{}\"\nallow_http = true\naccess_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\n",
            c.bucket,
            c.endpoint.as_deref().unwrap_or_default(),
            c.prefix,
            c.access_key_id.as_deref().unwrap_or_default(),
            c.secret_access_key_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        )
    }

    /// The bucket a config made by [`config`] points at, if any.
    pub fn of(config: &str) -> Option<TestBucket> {
        let at = config.find("[quarantine.s3]")?;
        let prefix = config[at..]
            .lines()
            .find_map(|l| l.strip_prefix("prefix = \""))?
            .trim_end_matches('"')
            .to_string();
        let mut b = TestBucket::fresh();
        b.config.prefix = prefix;
        Some(b)
    }

    /// Every quarantined blob under this prefix: sha256 (from the key) and
    /// bytes, read straight from the S3 server.
    pub fn blobs(&self) -> Vec<(String, Vec<u8>)> {
        use tokio_stream::StreamExt;
        block_on(async {
            let s3 = portcullis::store::blobs::s3::S3Blobs::open(&self.config).expect("S3 client");
            let store = s3.object_store();
            let prefix =
                object_store::path::Path::from(format!("{}quarantine/blobs", self.config.prefix));
            let mut listed = store.list(Some(&prefix));
            let mut out = Vec::new();
            while let Some(meta) = listed.next().await {
                let meta = meta.expect("listing the bucket");
                let sha = meta.location.filename().expect("a key").to_string();
                let bytes = store
                    .get_opts(&meta.location, Default::default())
                    .await
                    .expect("GET")
                    .bytes()
                    .await
                    .expect("body");
                out.push((sha, bytes.to_vec()));
            }
            out.sort();
            out
        })
    }
}

/// The two storage backends every quarantine scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Db {
    /// SQLite and the local folder: the embedded default.
    Sqlite,
    /// PostgreSQL and an S3-compatible bucket: what several nodes share.
    Shared,
}

pub struct Lab {
    pub server: Server,
    pub sink: Sink,
    /// Where quarantined bytes go on the shared backend.
    pub bucket: Option<TestBucket>,
}

/// The config the quarantine tests share, plus `extra` TOML.
pub fn config(sink: &Sink, db: Db, rules_dir: &std::path::Path, extra: &str) -> String {
    let (database, s3) = match db {
        Db::Sqlite => (String::new(), String::new()),
        Db::Shared => (fresh_postgres(), TestBucket::fresh().toml()),
    };
    let password =
        portcullis::http::auth::hash_password("correct horse battery staple").expect("hashing");
    format!(
        r#"
[rules]
dir = "{rules}"

[quarantine]
database = "{database}"

{s3}
[release]
relay = "{relay}"
helo = "gateway.test"
public_url = "http://gateway.test:8080"

[[auth.tokens]]
name = "root"
role = "admin"
sha256 = "{admin}"

[[auth.tokens]]
name = "ops"
role = "operator"
sha256 = "{operator}"

[[auth.tokens]]
name = "soc"
role = "analyst"
sha256 = "{analyst}"

[[auth.tokens]]
name = "audit"
role = "auditor"
sha256 = "{auditor}"

[[auth.users]]
name = "olivia"
role = "operator"
password_argon2 = "{password}"

[[auth.users]]
name = "arthur"
role = "auditor"
password_argon2 = "{password}"
{extra}
"#,
        rules = rules_dir.display(),
        relay = sink.relay(),
        admin = sha(ADMIN),
        operator = sha(OPERATOR),
        analyst = sha(ANALYST),
        auditor = sha(AUDITOR),
    )
}

pub fn lab(db: Db, extra: &str) -> Lab {
    let sink = Sink::start();
    lab_with(sink, db, extra)
}

pub fn lab_with(sink: Sink, db: Db, extra: &str) -> Lab {
    lab_edited(sink, db, |c| c + extra)
}

/// The shared config passed through `edit` (to set keys in tables it
/// already has, which appending cannot).
pub fn lab_edited(sink: Sink, db: Db, edit: impl FnOnce(String) -> String) -> Lab {
    let rules = tempfile::tempdir().expect("temp dir");
    std::fs::write(rules.path().join("test.yar"), RULES).expect("rules");
    let cfg = edit(config(&sink, db, rules.path(), ""));
    let server = Server::start(&cfg);
    // The rules dir must outlive the server (reloads read it).
    std::mem::forget(rules);
    Lab {
        server,
        sink,
        bucket: TestBucket::of(&cfg),
    }
}

/// A message with CRLF line endings, as MTAs hand them over.
pub fn message(subject: &str, marker: &str, extra_body: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@example.net>\r\nTo: a@example.com, b@example.com\r\n\
         Subject: {subject}\r\nMessage-ID: <{}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n{marker}\r\n.a line starting with a dot\r\n{extra_body}\r\n",
        &sha(subject)[..16]
    )
    .into_bytes()
}

pub fn auth(token: &str) -> String {
    format!("Bearer {token}")
}

impl Lab {
    /// Quarantines `raw` through /v1/check; returns the quarantine id.
    pub fn hold(&self, raw: &[u8], rcpts: &[&str]) -> String {
        let mut q = String::from("/v1/check?from=sender%40example.net&ip=192.0.2.9");
        for r in rcpts {
            q.push_str(&format!("&rcpt={}", r.replace('@', "%40")));
        }
        let r = self.server.post(&q, &[], raw);
        let v = r.json();
        assert_eq!(v["action"], "quarantine", "{v}");
        v["quarantine_id"].as_str().expect("an id").to_string()
    }

    pub fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: &[u8],
    ) -> crate::harness::Response {
        self.server.request(
            method,
            path,
            &[
                ("Authorization", &auth(token)),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    }

    pub fn detail(&self, id: &str) -> serde_json::Value {
        let r = self.api("GET", &format!("/v1/quarantine/{id}"), AUDITOR, b"");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    pub fn list(&self, query: &str) -> serde_json::Value {
        let r = self.api("GET", &format!("/v1/quarantine?{query}"), AUDITOR, b"");
        assert_eq!(r.status, 200, "{}", r.text());
        crate::openapi::assert_response("/v1/quarantine", "get", 200, &r.json());
        r.json()
    }

    /// A recipient's link path (`/release/TOKEN`) from the links API.
    pub fn link(&self, id: &str, rcpt: &str) -> String {
        let r = self.api("GET", &format!("/v1/quarantine/{id}/links"), OPERATOR, b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let url = v["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["recipient"] == rcpt)
            .unwrap_or_else(|| panic!("no link for {rcpt}: {v}"))["url"]
            .as_str()
            .unwrap()
            .to_string();
        url.strip_prefix("http://gateway.test:8080")
            .expect("public_url prefix")
            .to_string()
    }

    /// The gateway's signing keys, read from its data directory.
    pub fn keys(&self) -> portcullis::release::Keys {
        let secret =
            std::fs::read(self.server.dir.path().join("var/secret.key")).expect("secret.key");
        portcullis::release::Keys::from_secret(&secret)
    }
}

/// Logs in to the web UI with a password; the session cookie, or None
/// when the login is refused.
pub fn ui_login(server: &Server, user: &str, password: &str) -> Option<String> {
    let page = server.get("/ui/login");
    let pre = page
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let body = format!(
        "csrf={}&user={user}&password={}",
        csrf(&page.text()),
        password.replace(' ', "+")
    );
    let r = server.post(
        "/ui/login",
        &[
            ("Cookie", &pre),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes(),
    );
    (r.status == 303).then(|| {
        r.header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    })
}

/// The CSRF token in a page's form.
pub fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

fn ids(v: &serde_json::Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn audit_events(d: &serde_json::Value) -> Vec<String> {
    d["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["event"].as_str().unwrap().to_string())
        .collect()
}

/// The released bytes are the stamp line and then the stored message.
fn assert_is_release_of(d: &Delivered, stored: &[u8], id: &str) {
    let text = String::from_utf8_lossy(&d.data);
    let first = text.split("\r\n").next().unwrap();
    assert!(
        first.starts_with(&format!("X-Portcullis-Release: v1; id={id}; t=")),
        "{first}"
    );
    assert_eq!(
        &d.data[first.len() + 2..],
        stored,
        "released bytes differ from the stored ones"
    );
}

fn operator_release_scenario(db: Db) {
    let lab = lab(db, "");
    let raw = message("Quarterly invoice", "PORTCULLIS-TEST-HOLD", "");
    let id = lab.hold(&raw, &["a@example.com", "B@example.com"]);
    let other = lab.hold(
        &message("Lunch menu", "PORTCULLIS-TEST-HOLD", "x"),
        &["c@example.com"],
    );

    // Filters: each one narrows, and a miss is empty.
    assert_eq!(lab.list("")["total"], 2);
    assert_eq!(ids(&lab.list("rcpt=a%40example")), vec![id.clone()]);
    assert_eq!(ids(&lab.list("q=INVOICE")), vec![id.clone()]);
    assert_eq!(lab.list("rule=Test_Hold_Marker")["total"], 2);
    assert_eq!(lab.list("rule=Test_Danger_Marker")["total"], 0);
    assert_eq!(
        lab.list("sender=sender%40example.net&state=held")["total"],
        2
    );
    assert_eq!(lab.list("action=quarantine")["total"], 2);
    assert_eq!(lab.list("state=released")["total"], 0);
    assert_eq!(lab.list("since=2000-01-01&until=2000-01-02")["total"], 0);
    let page = lab.list("limit=1&sort=subject&order=asc");
    assert_eq!(
        ids(&page),
        vec![other.clone()],
        "Lunch sorts before Quarterly"
    );
    assert_eq!(
        ids(&lab.list("limit=1&offset=1&sort=subject&order=asc")),
        vec![id.clone()]
    );
    assert_eq!(
        lab.api("GET", "/v1/quarantine?state=bogus", AUDITOR, b"")
            .status,
        400
    );

    // Detail: the tree, the deciding rule, the envelope.
    let d = lab.detail(&id);
    crate::openapi::assert_response("/v1/quarantine/{id}", "get", 200, &d);
    assert_eq!(d["state"], "held");
    assert_eq!(d["sha256"], sha(&raw));
    assert_eq!(d["rule"], "Test_Hold_Marker");
    assert_eq!(d["request_only"], false);
    assert_eq!(d["report"]["objects"][0]["path"], "message");
    assert_eq!(d["envelope"]["client_ip"], "192.0.2.9");
    assert_eq!(audit_events(&d), vec!["quarantined"]);

    // Where the bytes are: in the bucket on the shared backend (and not in
    // the local folder), in the local folder otherwise.
    let local = lab.server.dir.path().join("var/quarantine/blobs");
    let on_disk = |sha256: &str| local.join(&sha256[..2]).join(sha256).exists();
    match &lab.bucket {
        Some(bucket) => {
            let stored = bucket.blobs();
            assert_eq!(stored.len(), 2, "one object per held message");
            assert!(stored.contains(&(sha(&raw), raw.clone())));
            assert!(!on_disk(&sha(&raw)), "nothing in the local folder");
        }
        None => assert!(on_disk(&sha(&raw))),
    }

    // Roles: nobody without a token, auditors cannot release, analysts
    // cannot download raw bytes (admin only by default).
    assert_eq!(lab.server.get("/v1/quarantine").status, 401);
    assert_eq!(
        lab.api(
            "POST",
            &format!("/v1/quarantine/{id}/release"),
            AUDITOR,
            b""
        )
        .status,
        403
    );
    assert_eq!(
        lab.api("POST", &format!("/v1/quarantine/{id}/delete"), ANALYST, b"")
            .status,
        403
    );
    assert_eq!(
        lab.api("GET", &format!("/v1/quarantine/{id}/raw"), ANALYST, b"")
            .status,
        403
    );
    let dl = lab.api("GET", &format!("/v1/quarantine/{id}/raw"), ADMIN, b"");
    assert_eq!(dl.status, 200);
    assert_eq!(dl.body, raw);
    assert_eq!(dl.header("content-type"), Some("application/octet-stream"));
    assert_eq!(dl.header("x-portcullis-sha256"), Some(sha(&raw).as_str()));
    assert!(lab.sink.messages().is_empty());

    // Release: the original envelope and bytes, stamped.
    let r = lab.api(
        "POST",
        &format!("/v1/quarantine/{id}/release"),
        OPERATOR,
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    crate::openapi::assert_response("/v1/quarantine/{id}/release", "post", 200, &r.json());
    assert_eq!(r.json()["state"], "released");
    let got = lab.sink.wait_for(1);
    assert_eq!(got[0].mail_from, "sender@example.net");
    let mut rcpts = got[0].rcpt_to.clone();
    rcpts.sort();
    assert_eq!(rcpts, vec!["B@example.com", "a@example.com"]);
    assert_is_release_of(&got[0], &raw, &id);
    let d = lab.detail(&id);
    assert_eq!(d["state"], "released");
    let released: Vec<_> = d["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["event"] == "released")
        .collect();
    assert_eq!(released.len(), 2, "one audit line per recipient");
    assert_eq!(released[0]["actor"], "token:ops");
    assert_eq!(released[0]["via"], "api");
    assert_eq!(released[0]["address"], "127.0.0.1");
    assert_eq!(
        lab.api(
            "POST",
            &format!("/v1/quarantine/{id}/release"),
            OPERATOR,
            b""
        )
        .status,
        409
    );

    // The stamped message comes back through the gateway and passes; the
    // same stamp for a recipient it was not released to does not.
    let back = lab.server.post(
        "/v1/check?rcpt=a%40example.com&rcpt=b%40example.com&ip=127.0.0.1",
        &[],
        &got[0].data,
    );
    assert_eq!(
        back.json()["action"],
        "accept",
        "{}\n{}",
        back.text(),
        lab.server.log()
    );
    assert!(back.json()["summary"].as_str().unwrap().contains(&id));
    let mods = back.json()["modifications"].clone();
    assert!(
        mods.as_array()
            .unwrap()
            .iter()
            .any(|m| m["op"] == "remove_header" && m["name"] == "X-Portcullis-Action"),
        "forged X-Portcullis-* headers in a released message are still replaced: {mods}"
    );
    let forwarded = lab.server.post(
        "/v1/check?rcpt=mallory%40example.org&ip=127.0.0.1",
        &[],
        &got[0].data,
    );
    assert_eq!(forwarded.json()["action"], "quarantine");
    // From the internet (not release.stamp_networks) even a perfect stamp
    // is ignored.
    let outside = lab.server.post(
        "/v1/check?rcpt=a%40example.com&rcpt=b%40example.com&ip=203.0.113.5",
        &[],
        &got[0].data,
    );
    assert_eq!(outside.json()["action"], "quarantine");
    // A correctly signed stamp for a recipient the quarantine never
    // released (say, a leaked key) does not pass either.
    let mut forged =
        portcullis::release::prepare(&lab.keys().stamp, &id, &["c@example.com".to_string()], &raw);
    forged.extend_from_slice(b"\r\n");
    let f = lab
        .server
        .post("/v1/check?rcpt=c%40example.com&ip=127.0.0.1", &[], &forged);
    assert_eq!(f.json()["action"], "quarantine", "not released to c");
    let mut tampered = got[0].data.clone();
    let n = tampered.len();
    tampered[n - 5] ^= 1;
    let t = lab.server.post(
        "/v1/check?rcpt=a%40example.com&rcpt=b%40example.com&ip=127.0.0.1",
        &[],
        &tampered,
    );
    assert_eq!(
        t.json()["action"],
        "quarantine",
        "a changed body loses the pass"
    );

    // Delete: final, bytes gone, audited.
    let other_sha = lab.detail(&other)["sha256"].as_str().unwrap().to_string();
    let del = lab.api("DELETE", &format!("/v1/quarantine/{other}"), OPERATOR, b"");
    assert_eq!(del.status, 200, "{}", del.text());
    match &lab.bucket {
        Some(bucket) => {
            let left: Vec<String> = bucket.blobs().into_iter().map(|(s, _)| s).collect();
            assert!(
                !left.contains(&other_sha),
                "the deleted message's object is gone"
            );
            assert!(left.contains(&sha(&raw)), "the released one is kept");
        }
        None => assert!(!on_disk(&other_sha)),
    }
    assert_eq!(lab.detail(&other)["state"], "deleted");
    assert_eq!(
        lab.api("GET", &format!("/v1/quarantine/{other}/raw"), ADMIN, b"")
            .status,
        410
    );
    assert_eq!(
        lab.api(
            "POST",
            &format!("/v1/quarantine/{other}/release"),
            OPERATOR,
            b""
        )
        .status,
        409
    );
    assert_eq!(
        lab.api("GET", "/v1/quarantine/nope", AUDITOR, b"").status,
        404
    );

    // Bulk forms.
    let x = lab.hold(
        &message("Bulk one", "PORTCULLIS-TEST-HOLD", "1"),
        &["d@example.com"],
    );
    let y = lab.hold(
        &message("Bulk two", "PORTCULLIS-TEST-HOLD", "2"),
        &["e@example.com"],
    );
    let z = lab.hold(
        &message("Bulk three", "PORTCULLIS-TEST-HOLD", "3"),
        &["f@example.com"],
    );
    let body = format!(r#"{{"ids":["{x}","{y}","missing"]}}"#);
    let r = lab.api("POST", "/v1/quarantine/release", OPERATOR, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.iter().filter(|r| r["ok"] == true).count(), 2);
    assert_eq!(results[2]["ok"], false);
    let got = lab.sink.wait_for(3);
    assert_eq!(got.len(), 3);
    let r = lab.api(
        "POST",
        "/v1/quarantine/delete",
        OPERATOR,
        format!(r#"{{"ids":["{z}","{x}"]}}"#).as_bytes(),
    );
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results[0]["ok"], true);
    assert_eq!(
        results[1]["ok"], false,
        "a released message cannot be deleted"
    );
    let m = lab.server.metrics();
    assert!(m.contains("portcullis_released_recipients_total 4"), "{m}");
    assert!(
        m.contains("portcullis_release_stamps_passed_total 1"),
        "{m}"
    );
    assert!(
        m.contains("portcullis_quarantine_open 4"),
        "the forwarded, outside, forged and tampered copies are held: {m}"
    );
}

#[test]
fn operators_search_release_and_delete_sqlite() {
    operator_release_scenario(Db::Sqlite);
}

#[test]
fn operators_search_release_and_delete_postgres_s3() {
    operator_release_scenario(Db::Shared);
}

/// The bucket is trusted no more than a disk: bytes changed in it are
/// never served as the message, a missing object is "gone", and when the
/// S3 service refuses or cannot be reached the door answers tempfail
/// (the MTA keeps the message and retries) and /readyz says not ready.
#[test]
fn the_s3_backend_checks_what_it_reads_and_fails_closed() {
    use portcullis::store::{Store, StoreError};
    let bucket = TestBucket::fresh();
    let dir = tempfile::tempdir().unwrap();
    let raw = message("Checked in S3", "PORTCULLIS-TEST-HOLD", "");
    let mut sub = portcullis::Submission::mail(raw.clone());
    sub.envelope.rcpt_to = vec!["a@example.com".into()];
    let report = crate::util::engine().inspect(&sub).unwrap();
    block_on(async {
        let store = std::sync::Arc::new(
            Store::open(dir.path(), None, Some(&bucket.config))
                .await
                .expect("store"),
        );
        store.blobs.check_writable().await.expect("bucket writable");
        assert_eq!(
            store.blobs.describe(),
            format!("s3://portcullis-test/{}", bucket.config.prefix)
        );
        let id = store
            .quarantine(
                raw.clone().into(),
                &sub.envelope,
                portcullis::model::Door::Native,
                &report,
                Duration::from_secs(3600),
            )
            .await
            .expect("quarantined");
        let summary = store.db.summary(&id).await.unwrap().unwrap();
        assert_eq!(store.raw(&summary.sha256).await.unwrap(), raw);
        assert_eq!(store.raw_head(&summary.sha256, 4).await.unwrap(), b"From");

        // Someone with write access to the bucket swaps the bytes.
        let s3 = portcullis::store::blobs::s3::S3Blobs::open(&bucket.config).unwrap();
        let key = s3.key(&summary.sha256).unwrap();
        object_store::ObjectStoreExt::put(
            s3.object_store(),
            &key,
            b"From: evil\r\n\r\nswapped"[..].to_vec().into(),
        )
        .await
        .unwrap();
        assert!(matches!(
            store.raw(&summary.sha256).await,
            Err(StoreError::Corrupt(_))
        ));
        object_store::ObjectStoreExt::delete(s3.object_store(), &key)
            .await
            .unwrap();
        assert!(matches!(
            store.raw(&summary.sha256).await,
            Err(StoreError::Missing(_))
        ));
        assert!(matches!(
            store.raw("../../etc/passwd").await,
            Err(StoreError::BadKey(_))
        ));

        // A wrong secret: the server checks signatures, so nothing is
        // stored and the error says why.
        let wrong = dir.path().join("wrong.secret");
        std::fs::write(&wrong, "not-the-secret-access-key").unwrap();
        let mut bad = bucket.config.clone();
        bad.secret_access_key_file = Some(wrong);
        let refused = Store::open(dir.path(), None, Some(&bad)).await.unwrap();
        let e = refused
            .blobs
            .put(&sha(&raw), raw.clone().into())
            .await
            .expect_err("a bad signature is refused");
        assert!(matches!(e, StoreError::Object(_)), "{e}");
        assert!(refused.blobs.check_writable().await.is_err());
    });

    // Through a door: with the bucket unreachable, a message to be held
    // is answered tempfail (never accepted, never "quarantined").
    let closed = crate::harness::free_port();
    let mut down = bucket.config.clone();
    down.endpoint = Some(format!("http://127.0.0.1:{closed}"));
    let down = TestBucket { config: down };
    let rules = tempfile::tempdir().expect("temp dir");
    std::fs::write(rules.path().join("test.yar"), RULES).expect("rules");
    let server = Server::start(&format!(
        "[rules]\ndir = \"{}\"\n\n{}",
        rules.path().display(),
        down.toml()
    ));
    let r = server.post("/v1/check?rcpt=a%40example.com", &[], &raw);
    assert_eq!(r.json()["action"], "tempfail", "{}", r.text());
    assert!(r.json()["quarantine_id"].is_null());
    assert_eq!(server.get("/readyz").status, 503, "{}", server.log());
    assert!(
        server.log().contains("quarantine write failed"),
        "{}",
        server.log()
    );
}

/// Two nodes, one PostgreSQL and one bucket: node A deletes a held
/// message while node B quarantines the same bytes again. Whatever the
/// interleaving, B's message must keep its blob (the blob lock in the
/// database makes A's "nothing uses it, remove it" one step).
#[test]
fn the_same_bytes_held_on_one_node_while_deleted_on_another_keep_their_blob_postgres_s3() {
    use portcullis::store::{Actor, Store};
    let url = fresh_postgres();
    let bucket = TestBucket::fresh();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let a = std::sync::Arc::new(
            Store::open(dir_a.path(), Some(&url), Some(&bucket.config))
                .await
                .unwrap(),
        );
        let b = std::sync::Arc::new(
            Store::open(dir_b.path(), Some(&url), Some(&bucket.config))
                .await
                .unwrap(),
        );
        for round in 0..40 {
            let raw = message(&format!("Twice {round}"), "PORTCULLIS-TEST-HOLD", "");
            let mut sub = portcullis::Submission::mail(raw.clone());
            sub.envelope.rcpt_to = vec!["a@example.com".into()];
            let report = crate::util::engine().inspect(&sub).unwrap();
            let hold = |s: std::sync::Arc<Store>| {
                let (raw, env, report) = (raw.clone(), sub.envelope.clone(), report.clone());
                async move {
                    s.quarantine(
                        raw.into(),
                        &env,
                        portcullis::model::Door::Native,
                        &report,
                        Duration::from_secs(3600),
                    )
                    .await
                    .unwrap()
                }
            };
            let first = hold(std::sync::Arc::clone(&a)).await;
            let a2 = std::sync::Arc::clone(&a);
            let deleting = tokio::spawn(async move {
                a2.delete(&first, &Actor::system()).await.unwrap();
            });
            let second = hold(std::sync::Arc::clone(&b)).await;
            deleting.await.unwrap();
            let sha256 = sha(&raw);
            assert_eq!(
                b.raw(&sha256).await.map_err(|e| e.to_string()),
                Ok(raw.clone()),
                "round {round}: {second} lost its bytes"
            );
        }
    });
}

fn links_scenario(db: Db) {
    let lab = lab(db, "");
    let raw = message("Your parcel", "PORTCULLIS-TEST-HOLD", "");
    let id = lab.hold(&raw, &["a@example.com", "b@example.com"]);
    let link_a = lab.link(&id, "a@example.com");

    // GET (what link scanners do) shows a page and changes nothing.
    for _ in 0..3 {
        let page = lab.server.get(&link_a);
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(page.text().contains("Release to my mailbox"));
        assert!(
            page.header("content-security-policy")
                .unwrap()
                .contains("default-src 'none'")
        );
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    }
    assert!(lab.sink.messages().is_empty());
    assert_eq!(lab.detail(&id)["state"], "held");
    let token_csrf = csrf(&lab.server.get(&link_a).text());

    // Tampered, expired, foreign and CSRF-less requests are refused.
    let mut bad = link_a.clone().into_bytes();
    let last = bad.len() - 3;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    assert_eq!(lab.server.get(&bad).status, 403);
    let form = |c: &str| format!("csrf={c}");
    assert_eq!(
        lab.server
            .post(&bad, &[], form(&token_csrf).as_bytes())
            .status,
        403
    );
    let keys = lab.keys();
    let expired = portcullis::release::link::mint(&keys.link, &id, "a@example.com", 1_000_000);
    assert_eq!(lab.server.get(&format!("/release/{expired}")).status, 410);
    assert_eq!(
        lab.server
            .post(&format!("/release/{expired}"), &[], b"csrf=x")
            .status,
        410
    );
    let far = portcullis::release::unix_now() + 3600;
    let stranger = portcullis::release::link::mint(&keys.link, &id, "mallory@example.org", far);
    assert_eq!(lab.server.get(&format!("/release/{stranger}")).status, 403);
    let stranger_post = lab.server.post(&format!("/release/{stranger}"), &[], b"");
    assert_eq!(stranger_post.status, 403);
    let other_key = portcullis::release::Keys::from_secret(&[9u8; 32]);
    let forged = portcullis::release::link::mint(&other_key.link, &id, "a@example.com", far);
    assert_eq!(lab.server.get(&format!("/release/{forged}")).status, 403);
    assert_eq!(
        lab.server.post(&link_a, &[], b"").status,
        403,
        "no CSRF field"
    );
    assert!(lab.sink.messages().is_empty());

    // POST releases to that recipient only, once.
    let ok = lab.server.post(
        &link_a,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form(&token_csrf).as_bytes(),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    let got = lab.sink.wait_for(1);
    assert_eq!(got[0].rcpt_to, vec!["a@example.com"]);
    assert_is_release_of(&got[0], &raw, &id);
    let replay = lab.server.post(&link_a, &[], form(&token_csrf).as_bytes());
    assert_eq!(replay.status, 409, "{}", replay.text());
    assert!(lab.server.get(&link_a).text().contains("already"));
    let d = lab.detail(&id);
    assert_eq!(d["state"], "held", "b is still waiting");
    let rs = d["recipients"].as_array().unwrap();
    assert_eq!(
        rs.iter().find(|r| r["address"] == "a@example.com").unwrap()["state"],
        "released"
    );
    assert_eq!(
        rs.iter().find(|r| r["address"] == "b@example.com").unwrap()["state"],
        "held"
    );
    let line = d["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["event"] == "released")
        .unwrap()
        .clone();
    assert_eq!(
        (
            line["actor"].as_str(),
            line["via"].as_str(),
            line["recipient"].as_str()
        ),
        (Some("a@example.com"), Some("link"), Some("a@example.com"))
    );

    // b's own link finishes the message.
    let link_b = lab.link(&id, "b@example.com");
    let c = csrf(&lab.server.get(&link_b).text());
    assert_eq!(
        lab.server.post(&link_b, &[], form(&c).as_bytes()).status,
        200
    );
    let got = lab.sink.wait_for(2);
    assert_eq!(got[1].rcpt_to, vec!["b@example.com"]);
    assert_eq!(lab.detail(&id)["state"], "released");
    assert_eq!(
        sink_count_for(&got, "a@example.com"),
        1,
        "a got it exactly once"
    );
}

fn sink_count_for(got: &[Delivered], rcpt: &str) -> usize {
    got.iter()
        .filter(|d| d.rcpt_to.iter().any(|r| r == rcpt))
        .count()
}

#[test]
fn recipient_links_release_once_to_that_recipient_only_sqlite() {
    links_scenario(Db::Sqlite);
}

#[test]
fn recipient_links_release_once_to_that_recipient_only_postgres_s3() {
    links_scenario(Db::Shared);
}

#[test]
fn dangerous_findings_make_links_ask_an_operator() {
    let lab = lab_edited(Sink::start(), Db::Sqlite, |c| {
        c.replace("[release]\n", "[release]\nnotify = [\"soc@example.org\"]\n")
    });
    let raw = message("Invoice macro", "PORTCULLIS-TEST-DANGER", "");
    let id = lab.hold(&raw, &["a@example.com", "b@example.com"]);
    assert_eq!(lab.detail(&id)["request_only"], true);
    let link = lab.link(&id, "a@example.com");
    let page = lab.server.get(&link).text();
    assert!(page.contains("Ask for release"), "{page}");
    let r = lab
        .server
        .post(&link, &[], format!("csrf={}", csrf(&page)).as_bytes());
    assert_eq!(r.status, 200);
    assert!(r.text().contains("administrator"));
    // The only mail is the operators' notification, naming the message.
    let note = lab.sink.wait_for(1);
    assert_eq!(note.len(), 1, "a request releases nothing");
    assert_eq!(note[0].rcpt_to, vec!["soc@example.org"]);
    let text = String::from_utf8_lossy(&note[0].data).replace("=\r\n", "");
    assert!(text.contains(&format!("/ui/m/{id}")), "{text}");
    assert!(text.contains("a@example.com"));
    assert_eq!(lab.detail(&id)["state"], "release_requested");
    assert_eq!(ids(&lab.list("state=release_requested")), vec![id.clone()]);

    // Deny: back to held. A new link asks again; approve releases to the
    // asker only.
    assert_eq!(
        lab.api("POST", &format!("/v1/quarantine/{id}/deny"), OPERATOR, b"")
            .status,
        200
    );
    assert_eq!(lab.detail(&id)["state"], "held");
    assert_eq!(
        lab.api(
            "POST",
            &format!("/v1/quarantine/{id}/approve"),
            OPERATOR,
            b""
        )
        .status,
        409,
        "nothing requested"
    );
    let again = lab.link(&id, "a@example.com");
    let c = csrf(&lab.server.get(&again).text());
    assert_eq!(
        lab.server
            .post(&again, &[], format!("csrf={c}").as_bytes())
            .status,
        200
    );
    let r = lab.api(
        "POST",
        &format!("/v1/quarantine/{id}/approve"),
        OPERATOR,
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Two notifications (one per request), then the release itself.
    let got = lab.sink.wait_for(3);
    let released: Vec<_> = got
        .iter()
        .filter(|d| d.rcpt_to != ["soc@example.org"])
        .collect();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].rcpt_to, vec!["a@example.com"]);
    assert_is_release_of(released[0], &raw, &id);
    let d = lab.detail(&id);
    assert_eq!(d["state"], "held", "b never asked");
    let ev = audit_events(&d);
    for e in ["quarantined", "release_requested", "denied", "approved"] {
        assert!(ev.contains(&e.to_string()), "{ev:?}");
    }
}

#[test]
fn a_relay_failure_keeps_the_message_held_and_the_link_usable() {
    let lab = lab_with(Sink::start_failing(2), Db::Sqlite, "");
    let raw = message("Retry me", "PORTCULLIS-TEST-HOLD", "");
    let id = lab.hold(&raw, &["a@example.com"]);
    let r = lab.api(
        "POST",
        &format!("/v1/quarantine/{id}/release"),
        OPERATOR,
        b"",
    );
    assert_eq!(r.status, 502, "{}", r.text());
    let d = lab.detail(&id);
    assert_eq!(d["state"], "held");
    assert_eq!(d["recipients"][0]["state"], "held");
    assert!(audit_events(&d).contains(&"release_failed".to_string()));
    assert!(
        d["audit"].as_array().unwrap().iter().any(|a| a["detail"]
            .as_str()
            .is_some_and(|t| t.contains("sink told to fail"))),
        "the relay's answer is in the audit trail"
    );
    let link = lab.link(&id, "a@example.com");
    let c = csrf(&lab.server.get(&link).text());
    assert_eq!(
        lab.server
            .post(&link, &[], format!("csrf={c}").as_bytes())
            .status,
        502
    );
    assert_eq!(
        lab.server
            .post(&link, &[], format!("csrf={c}").as_bytes())
            .status,
        200,
        "the same link works once the relay is back"
    );
    assert_is_release_of(&lab.sink.wait_for(1)[0], &raw, &id);
    assert!(
        lab.server
            .metrics()
            .contains("portcullis_release_failures_total 2")
    );
}

#[test]
fn retention_expires_held_messages_and_removes_their_bytes() {
    let lab = lab_edited(Sink::start(), Db::Sqlite, |c| {
        c.replace(
            "[quarantine]\n",
            "[quarantine]\nretention = \"1s\"\nsweep_interval = \"200ms\"\n",
        )
    });
    let raw = message("Old news", "PORTCULLIS-TEST-HOLD", "");
    let id = lab.hold(&raw, &["a@example.com"]);
    let blob = lab
        .server
        .dir
        .path()
        .join("var/quarantine/blobs")
        .join(&sha(&raw)[..2])
        .join(sha(&raw));
    assert!(blob.exists());
    let d = eventually(Duration::from_secs(20), || {
        let d = lab.detail(&id);
        (d["state"] == "expired").then_some(d)
    })
    .expect("expired within the sweep interval");
    let last = d["audit"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["event"].as_str(), last["actor"].as_str()),
        (Some("expired"), Some("system"))
    );
    assert!(!blob.exists(), "expired bytes are removed");
    assert_eq!(
        lab.api(
            "POST",
            &format!("/v1/quarantine/{id}/release"),
            OPERATOR,
            b""
        )
        .status,
        409
    );
}

#[test]
fn digests_list_each_recipients_messages_with_working_links() {
    let lab = lab(Db::Sqlite, "");
    let one = lab.hold(
        &message("First held", "PORTCULLIS-TEST-HOLD", "1"),
        &["a@example.com", "b@example.com"],
    );
    let two = lab.hold(
        &message("Second held", "PORTCULLIS-TEST-HOLD", "2"),
        &["a@example.com"],
    );
    let out = std::process::Command::new(bin())
        .args(["digest", "--config"])
        .arg(lab.server.dir.path().join("portcullis.toml"))
        .arg("--data-dir")
        .arg(lab.server.dir.path().join("var"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 recipient(s), 3 message(s)"));
    let got = lab.sink.wait_for(2);
    let for_a = got
        .iter()
        .find(|d| d.rcpt_to == ["a@example.com"])
        .expect("a digest for a");
    let text = String::from_utf8_lossy(&for_a.data).replace("=\r\n", "");
    assert!(
        text.contains("First held") && text.contains("Second held"),
        "{text}"
    );
    assert!(got.iter().any(|d| d.rcpt_to == ["b@example.com"]));
    // The link in the digest releases that message to a.
    let start = text
        .find("http://gateway.test:8080/release/")
        .expect("a link");
    let link: String = text[start + "http://gateway.test:8080".len()..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let page = lab.server.get(&link).text();
    let r = lab
        .server
        .post(&link, &[], format!("csrf={}", csrf(&page)).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let got = lab.sink.wait_for(3);
    assert_eq!(got[2].rcpt_to, vec!["a@example.com"]);
    let released_id = got[2]
        .data
        .split(|&b| b == b';')
        .nth(1)
        .map(|s| {
            String::from_utf8_lossy(s)
                .trim()
                .trim_start_matches("id=")
                .to_string()
        })
        .unwrap();
    assert!(released_id == one || released_id == two);
}

/// The "done when" of the issue: SIGKILL while messages are being
/// quarantined; every message whose door answered "quarantined" is there
/// after a restart, with the right sha256.
fn sigkill_scenario(db: Db) {
    let lab = lab(db, "");
    let addr = lab.server.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let stop = std::sync::Arc::clone(&stop);
        workers.push(std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let raw = message(
                    &format!("kill test {w}-{i}"),
                    "PORTCULLIS-TEST-HOLD",
                    &"x".repeat(i * 97 % 5000),
                );
                let req = crate::harness::request_bytes(
                    "POST",
                    "/v1/check?rcpt=a%40example.com",
                    &[],
                    &raw,
                );
                let Ok(mut s) = std::net::TcpStream::connect(addr) else {
                    break;
                };
                use std::io::Write;
                if s.write_all(&req).is_err() {
                    break;
                }
                let Ok(r) = crate::harness::read_response(&mut std::io::BufReader::new(s)) else {
                    break;
                };
                if r.status == 200 {
                    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                    if v["action"] == "quarantine" {
                        acked.push((v["quarantine_id"].as_str().unwrap().to_string(), sha(&raw)));
                    }
                }
            }
            acked
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    lab.server.signal("KILL");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<(String, String)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acked.len() >= 4,
        "the test quarantined too little to mean anything: {}",
        acked.len()
    );

    // Restart on the same data directory and database.
    let again = Server::serve_on(lab.server.dir.path());
    for (id, want) in &acked {
        let r = again.request(
            "GET",
            &format!("/v1/quarantine/{id}/raw"),
            &[("Authorization", &auth(ADMIN))],
            b"",
        );
        assert_eq!(
            r.status,
            200,
            "acknowledged {id} is missing after SIGKILL: {}",
            r.text()
        );
        assert_eq!(&sha(&r.body), want, "{id}");
    }
}

#[test]
fn sigkill_while_quarantining_loses_no_acknowledged_message_sqlite() {
    sigkill_scenario(Db::Sqlite);
}

#[test]
fn sigkill_while_quarantining_loses_no_acknowledged_message_postgres_s3() {
    sigkill_scenario(Db::Shared);
}

#[test]
fn the_ui_needs_a_login_checks_csrf_and_hides_actions_by_role() {
    let lab = lab(Db::Sqlite, "");
    let id = lab.hold(
        &message("UI check", "PORTCULLIS-TEST-HOLD", ""),
        &["a@example.com"],
    );
    let r = lab.server.get("/ui");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/ui/login"));

    let login = |user: &str, password: &str| ui_login(&lab.server, user, password);
    assert!(login("olivia", "wrong password here").is_none());
    assert!(login("nobody", "correct horse battery staple").is_none());
    let no_csrf = lab.server.post(
        "/ui/login",
        &[],
        b"user=olivia&password=correct+horse+battery+staple",
    );
    assert_eq!(no_csrf.status, 403, "login forms carry CSRF tokens too");

    let auditor = login("arthur", "correct horse battery staple").expect("auditor logs in");
    let page = lab
        .server
        .request("GET", &format!("/ui/m/{id}"), &[("Cookie", &auditor)], b"");
    assert_eq!(page.status, 200);
    assert!(
        !page.text().contains("id=\"release\""),
        "auditors see no release button"
    );
    assert!(!page.text().contains("id=\"raw\""));
    let c = csrf(&page.text());
    let r = lab.server.request(
        "POST",
        &format!("/ui/m/{id}/release"),
        &[("Cookie", &auditor)],
        format!("csrf={c}").as_bytes(),
    );
    assert_eq!(r.status, 403);

    let op = login("olivia", "correct horse battery staple").expect("operator logs in");
    let page = lab
        .server
        .request("GET", &format!("/ui/m/{id}"), &[("Cookie", &op)], b"");
    assert!(page.text().contains("id=\"release\""));
    // A form posted from elsewhere has no valid token: refused, nothing sent.
    let r = lab.server.request(
        "POST",
        &format!("/ui/m/{id}/release"),
        &[("Cookie", &op)],
        b"csrf=00",
    );
    assert_eq!(r.status, 403);
    let r = lab.server.request(
        "POST",
        &format!("/ui/m/{id}/release"),
        &[("Cookie", &op)],
        format!("csrf={c}").as_bytes(),
    );
    assert_eq!(r.status, 403, "another session's token does not work");
    assert!(lab.sink.messages().is_empty());
    let c = csrf(&page.text());
    let r = lab.server.request(
        "POST",
        &format!("/ui/m/{id}/release"),
        &[("Cookie", &op)],
        format!("csrf={c}").as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    lab.sink.wait_for(1);
    let d = lab.detail(&id);
    let line = d["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["event"] == "released")
        .unwrap()
        .clone();
    assert_eq!(
        (line["actor"].as_str(), line["via"].as_str()),
        (Some("user:olivia"), Some("ui"))
    );

    // Ticking one recipient releases to that one only.
    let two = lab.hold(
        &message("UI pick", "PORTCULLIS-TEST-HOLD", ""),
        &["a@example.com", "b@example.com"],
    );
    let page = lab
        .server
        .request("GET", &format!("/ui/m/{two}"), &[("Cookie", &op)], b"");
    assert!(
        page.text()
            .contains("name=\"rcpt\" value=\"b@example.com\"")
    );
    let c = csrf(&page.text());
    let r = lab.server.request(
        "POST",
        &format!("/ui/m/{two}/release"),
        &[("Cookie", &op)],
        format!("csrf={c}&rcpt=b%40example.com").as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let got = lab.sink.wait_for(2);
    assert_eq!(got[1].rcpt_to, vec!["b@example.com"]);
    assert_eq!(lab.detail(&two)["state"], "held", "a still waits");

    // An API token logs in as well, with its own role.
    let admin = login("", ADMIN).expect("token login");
    let page = lab
        .server
        .request("GET", &format!("/ui/m/{id}"), &[("Cookie", &admin)], b"");
    assert!(page.text().contains("id=\"raw\""));
    let raw = lab.server.request(
        "GET",
        &format!("/ui/m/{id}/raw"),
        &[("Cookie", &admin)],
        b"",
    );
    assert_eq!(
        raw.header("content-disposition")
            .map(|v| v.starts_with("attachment")),
        Some(true)
    );
}

/// Operators racing: many concurrent releases and deletes of one message.
/// Exactly one release wins, the message is sent once, and a delete never
/// slips in beside it.
fn race_scenario(db: Db) {
    let lab = lab(db, "");
    let raw = message("Contended", "PORTCULLIS-TEST-HOLD", "");
    let id = lab.hold(&raw, &["a@example.com", "b@example.com"]);
    let addr = lab.server.addr;
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let id = id.clone();
            std::thread::spawn(move || {
                let (method, path) = if i % 4 == 3 {
                    ("DELETE", format!("/v1/quarantine/{id}"))
                } else {
                    ("POST", format!("/v1/quarantine/{id}/release"))
                };
                let req = crate::harness::request_bytes(
                    method,
                    &path,
                    &[("Authorization", &auth(OPERATOR))],
                    b"",
                );
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                std::io::Write::write_all(&mut s, &req).unwrap();
                (
                    method,
                    crate::harness::read_response(&mut std::io::BufReader::new(s))
                        .unwrap()
                        .status,
                )
            })
        })
        .collect();
    let results: Vec<(&str, u16)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let released = results
        .iter()
        .filter(|(m, s)| *m == "POST" && *s == 200)
        .count();
    let deleted = results
        .iter()
        .filter(|(m, s)| *m == "DELETE" && *s == 200)
        .count();
    assert_eq!(
        released + deleted,
        1,
        "exactly one change wins: {results:?}"
    );
    assert!(
        results.iter().all(|(_, s)| *s == 200 || *s == 409),
        "{results:?}"
    );
    // Every answer came after its SMTP transaction ended.
    let sent = lab.sink.messages().len();
    assert_eq!(
        sent, released,
        "sent once, or not at all when the delete won"
    );
    let d = lab.detail(&id);
    assert_eq!(
        d["state"],
        if released == 1 { "released" } else { "deleted" }
    );
}

#[test]
fn concurrent_releases_and_deletes_send_at_most_once_sqlite() {
    race_scenario(Db::Sqlite);
}

#[test]
fn concurrent_releases_and_deletes_send_at_most_once_postgres_s3() {
    race_scenario(Db::Shared);
}

#[test]
fn a_recipient_the_relay_refuses_does_not_hold_back_the_others() {
    let lab = lab(Db::Sqlite, "");
    let raw = message("Mixed recipients", "PORTCULLIS-TEST-HOLD", "");
    let id = lab.hold(&raw, &["a@example.com", "refused@example.com"]);
    let r = lab.api(
        "POST",
        &format!("/v1/quarantine/{id}/release"),
        OPERATOR,
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    crate::openapi::assert_response("/v1/quarantine/{id}/release", "post", 200, &v);
    assert_eq!(v["recipients"], serde_json::json!(["a@example.com"]));
    assert_eq!(v["failed"][0]["recipient"], "refused@example.com");
    assert!(
        v["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("no such user")
    );
    let got = lab.sink.wait_for(1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, vec!["a@example.com"]);
    assert_is_release_of(&got[0], &raw, &id);
    let d = lab.detail(&id);
    assert_eq!(d["state"], "held", "the refused recipient is still waiting");
    let rs = d["recipients"].as_array().unwrap();
    assert_eq!(
        rs.iter()
            .find(|r| r["address"] == "refused@example.com")
            .unwrap()["state"],
        "held"
    );

    // Downloads are audited, with who and from where.
    lab.api("GET", &format!("/v1/quarantine/{id}/raw"), ADMIN, b"");
    let d = lab.detail(&id);
    let dl = d["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["event"] == "downloaded")
        .cloned()
        .expect("download audited");
    assert_eq!(
        (dl["actor"].as_str(), dl["address"].as_str()),
        (Some("token:root"), Some("127.0.0.1"))
    );
}

/// A release that stopped between its claim and its record (a crash, a
/// lost database connection) is put back once its claim is stale, never
/// while it may still be running; a release that lost its claim that way
/// cannot record over the recovery.
fn stale_claim_scenario(db: Db) {
    use portcullis::store::{Actor, Event, RecipientState, Store};
    let dir = tempfile::tempdir().unwrap();
    let (url, bucket) = match db {
        Db::Sqlite => (None, None),
        Db::Shared => (Some(fresh_postgres()), Some(TestBucket::fresh().config)),
    };
    let raw = message("Claimed", "PORTCULLIS-TEST-HOLD", "");
    let mut sub = portcullis::Submission::mail(raw.clone());
    sub.envelope.rcpt_to = vec!["a@example.com".into()];
    let report = crate::util::engine().inspect(&sub).unwrap();
    block_on(async {
        let store = std::sync::Arc::new(
            Store::open(dir.path(), url.as_deref(), bucket.as_ref())
                .await
                .unwrap(),
        );
        let id = store
            .quarantine(
                raw.clone().into(),
                &sub.envelope,
                portcullis::model::Door::Native,
                &report,
                Duration::from_secs(3600),
            )
            .await
            .unwrap();
        let claimed = store
            .db
            .claim(&id, None, &[RecipientState::Held], "claim-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed, vec!["a@example.com"]);
        // A second releaser finds nothing to take.
        assert!(
            store
                .db
                .claim(&id, None, &[RecipientState::Held], "claim-2")
                .await
                .unwrap()
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.db.recover(60_000).await.unwrap(),
            0,
            "a fresh claim is left alone"
        );
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(store.db.recover(10).await.unwrap(), 1);
        let r = store.db.recipients(&id).await.unwrap();
        assert_eq!(r[0].state, RecipientState::Held);
        // The interrupted release comes back late: its record is refused.
        let state = store
            .db
            .finish(
                &id,
                &claimed,
                "claim-1",
                true,
                Event::Released,
                &Actor::system(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(state, portcullis::store::State::Held);
        assert_eq!(
            store.db.recipients(&id).await.unwrap()[0].state,
            RecipientState::Held
        );
        let d = store.db.detail(&id).await.unwrap().unwrap();
        let events: Vec<_> = d.audit.iter().map(|a| a.event.as_str()).collect();
        assert_eq!(events, vec!["quarantined", "recovered"]);
    });
}

#[test]
fn stale_release_claims_are_recovered_and_live_ones_are_not_sqlite() {
    stale_claim_scenario(Db::Sqlite);
}

#[test]
fn stale_release_claims_are_recovered_and_live_ones_are_not_postgres_s3() {
    stale_claim_scenario(Db::Shared);
}

#[test]
fn serve_sends_digests_on_its_schedule() {
    let lab = lab(
        Db::Sqlite,
        "\n[digest]\ninterval = \"1s\"\nfrom = \"quarantine@gateway.test\"\n",
    );
    lab.hold(
        &message("Scheduled digest", "PORTCULLIS-TEST-HOLD", ""),
        &["a@example.com"],
    );
    let got = lab.sink.wait_for(1);
    let digest = got
        .iter()
        .find(|d| d.mail_from == "quarantine@gateway.test")
        .expect("a digest from digest.from");
    assert_eq!(digest.rcpt_to, vec!["a@example.com"]);
    assert!(String::from_utf8_lossy(&digest.data).contains("Scheduled digest"));
}
