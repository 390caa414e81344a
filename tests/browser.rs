//! The web UI in a real browser: Debian's headless Chromium driven over
//! WebDriver (chromedriver, W3C protocol, spoken here with plain HTTP and
//! JSON). Logs in, filters the queue, opens a message, releases it and sees
//! it arrive at a real SMTP server; and shows that a message full of script
//! runs none of it in the UI.

use crate::harness::{eventually, free_port, read_response};
use crate::quarantine::{Db, lab, message, sha};
use serde_json::{Value, json};
use std::io::{BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver (apt install chromium-driver)");
        let mut d = Driver {
            child,
            port,
            session: String::new(),
            _profile: tempfile::tempdir().expect("temp dir"),
        };
        eventually(Duration::from_secs(30), || {
            d.try_call("GET", "/status", None)
                .ok()
                .filter(|v| v["value"]["ready"] == true)
        })
        .expect("chromedriver ready");
        let profile = d._profile.path().display().to_string();
        let v = d.call(
            "POST",
            "/session",
            Some(json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--disable-background-networking",
                             "--no-first-run", "--disable-extensions",
                             format!("--user-data-dir={profile}")]
                }
            }}})),
        );
        d.session = v["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        d
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> std::io::Result<Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        // chromedriver only answers requests addressed to localhost.
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let r = read_response(&mut BufReader::new(s))?;
        serde_json::from_slice(&r.body).map_err(std::io::Error::other)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self
            .try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        if v["value"].get("error").is_some() {
            panic!("WebDriver {method} {path}: {}", v["value"]);
        }
        v
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.call("GET", &self.s("/url"), None)["value"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Waits until the current URL satisfies `ok`: a click that submits a
    /// form or follows a link may return before the new page is there.
    fn wait_url(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        eventually(Duration::from_secs(30), || {
            let u = self.url();
            ok(&u).then_some(u)
        })
        .unwrap_or_else(|| panic!("{what}: still at {}", self.url()))
    }

    fn source(&self) -> String {
        self.call("GET", &self.s("/source"), None)["value"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.s("/element"),
            Some(json!({ "using": "css selector", "value": css })),
        );
        v["value"][ELEMENT]
            .as_str()
            .expect("element id")
            .to_string()
    }

    fn count(&self, css: &str) -> usize {
        let v = self.call(
            "POST",
            &self.s("/elements"),
            Some(json!({ "using": "css selector", "value": css })),
        );
        v["value"].as_array().map_or(0, Vec::len)
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{e}/clear")),
            Some(json!({})),
        );
        self.call(
            "POST",
            &self.s(&format!("/element/{e}/value")),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{e}/click")),
            Some(json!({})),
        );
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.call("GET", &self.s(&format!("/element/{e}/text")), None)["value"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Runs in the page through WebDriver (not subject to the page's CSP):
    /// how the test looks for traces of script that should not have run.
    fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        )["value"]
            .clone()
    }

    fn alert_open(&self) -> bool {
        let v = self
            .try_call("GET", &self.s("/alert/text"), None)
            .expect("WebDriver alert");
        v["value"].get("error").is_none()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.try_call("DELETE", &self.s(""), None);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A message that tries to run script everywhere the UI shows it: the
/// subject, the sender, an HTML body, an attachment name.
fn hostile_message() -> Vec<u8> {
    let html = "<html><body><script>window.__pwned='body';alert('body')</script>\
                <img src=x onerror=\"window.__pwned='img'\">\
                <iframe src=\"javascript:parent.__pwned='iframe'\"></iframe>\
                PORTCULLIS-TEST-HOLD</body></html>";
    format!(
        "From: \"<script>window.__pwned='from'</script>\" <evil@example.net>\r\n\
         To: a@example.com\r\n\
         Subject: <script>window.__pwned='subject';alert(1)</script><b>bold</b>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n\
         --b1\r\nContent-Type: text/plain; name=\"<img src=x onerror=alert(2)>.txt\"\r\n\
         Content-Disposition: attachment; filename=\"<img src=x onerror=alert(2)>.txt\"\r\n\r\n\
         hello\r\n--b1--\r\n"
    )
    .into_bytes()
}

#[test]
fn chromium_logs_in_filters_releases_and_runs_no_script_from_mail() {
    let lab = lab(Db::Sqlite, "");
    let parcel = message("Parcel notice 4711", "PORTCULLIS-TEST-HOLD", "");
    let id = lab.hold(&parcel, &["a@example.com", "b@example.com"]);
    let hostile = lab.hold(&hostile_message(), &["a@example.com"]);
    let base = format!("http://{}", lab.server.addr);

    let d = Driver::start();
    d.goto(&format!("{base}/ui"));
    d.wait_url("sent to the login page", |u| u.ends_with("/ui/login"));
    d.type_into("#user", "olivia");
    d.type_into("#password", "correct horse battery staple");
    d.click("#login");
    d.wait_url("logged in", |u| u.ends_with("/ui"));
    assert_eq!(d.count("a.open"), 2);

    // Filter by subject text: one row left.
    d.type_into("#filter-q", "parcel");
    d.click("#apply");
    d.wait_url("filtered", |u| u.contains("q=parcel"));
    assert_eq!(d.count("a.open"), 1);
    assert!(d.source().contains("Parcel notice 4711"));

    // Open it: the tree and the deciding rule are there.
    d.click("a.open");
    d.wait_url("message opened", |u| u.contains(&format!("/ui/m/{id}")));
    assert_eq!(d.text("#subject"), "Parcel notice 4711");
    assert!(d.text("#tree").contains("message > [1] text/plain"));
    assert!(d.source().contains("Test_Hold_Marker"));

    // Release: the message arrives at the SMTP server, stamped, unchanged.
    d.click("#release");
    d.wait_url("released", |u| u.contains("done=released"));
    assert!(d.text("#notice").contains("Released to"), "{}", d.source());
    assert_eq!(d.text("#state"), "released");
    let got = lab.sink.wait_for(1);
    let mut rcpts = got[0].rcpt_to.clone();
    rcpts.sort();
    assert_eq!(rcpts, vec!["a@example.com", "b@example.com"]);
    let first_line = got[0].data.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert_eq!(sha(&got[0].data[first_line..]), sha(&parcel));

    // The hostile message: shown as text, nothing runs, nothing loads.
    d.goto(&format!("{base}/ui/m/{hostile}"));
    assert!(
        d.text("#subject").contains("<script>"),
        "the subject is shown as text"
    );
    assert!(d.text("#headers").contains("window.__pwned='from'"));
    assert_eq!(d.eval("return typeof window.__pwned"), "undefined");
    assert!(!d.alert_open(), "no alert opened");
    assert_eq!(
        d.count("#headers script, #body script, #subject script, img, iframe"),
        0
    );
    d.goto(&format!("{base}/ui"));
    assert_eq!(d.eval("return typeof window.__pwned"), "undefined");
    assert!(!d.alert_open());
    assert_eq!(
        d.count("td script, td img, td b"),
        0,
        "queue cells hold text only"
    );
}
