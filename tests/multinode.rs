//! Several gateways sharing only a PostgreSQL server, an S3-compatible
//! bucket and the link-signing secret (as a Kubernetes Secret would hand
//! it to each pod): what one node quarantines, another lists, releases and
//! audits; a recipient link minted by one verifies on the others; all serve
//! one event sequence; a webhook gets each event once, not once per node;
//! each node reports itself and its rule set. Each node has its own,
//! otherwise empty, data directory.

use crate::events::{Mode, Receiver};
use crate::harness::{Server, Sink, bin, eventually, free_port};
use crate::quarantine::{
    ADMIN, AUDITOR, Db, OPERATOR, RULES, TestBucket, auth, config, message, sha,
};
use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

fn node(config: &str, name: &str) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, format!("{config}\n[server]\nnode = \"{name}\"\n")).expect("config");
    let mut cmd = Command::new(bin());
    cmd.arg("serve")
        .arg("--config")
        .arg(&path)
        .args(["--listen", "127.0.0.1:0", "--milter-listen", "none"])
        .arg("--data-dir")
        .arg(dir.path().join("var"))
        .current_dir(dir.path());
    Server::spawn(cmd, dir)
}

fn api(s: &Server, method: &str, path: &str, token: &str) -> crate::harness::Response {
    s.request(method, path, &[("Authorization", &auth(token))], b"")
}

fn events(s: &Server) -> Vec<(i64, String)> {
    let r = api(s, "GET", "/v1/events?limit=1000", AUDITOR);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().expect("seq"),
                e["id"].as_str().expect("id").to_string(),
            )
        })
        .collect()
}

#[test]
fn three_nodes_share_quarantine_links_events_and_webhooks_postgres_s3() {
    let sink = Sink::start();
    let port = free_port();
    let hook = Receiver::start(port, Mode::Ok);
    let rules = tempfile::tempdir().expect("temp dir");
    std::fs::write(rules.path().join("test.yar"), RULES).expect("rules");
    let secret = tempfile::NamedTempFile::new().expect("secret file");
    std::fs::write(secret.path(), sha("the nodes' shared link secret")).expect("secret");
    let base = config(&sink, Db::Shared, rules.path(), "").replace(
        "[release]\n",
        &format!("[release]\nsecret_file = \"{}\"\n", secret.path().display()),
    ) + &format!(
        "\n[events]\naudit_log = \"off\"\n\n[[webhooks]]\nname = \"siem\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nmax_backoff = \"1s\"\n"
    );
    let bucket = TestBucket::of(&base).expect("a bucket");
    // A first: it creates the schema.
    let a = node(&base, "node-a");
    let b = node(&base, "node-b");
    let c = node(&base, "node-c");

    // Held through A.
    let raw = message("Multi-node", "PORTCULLIS-TEST-HOLD", "");
    let r = a.post(
        "/v1/check?from=sender%40example.net&rcpt=a%40example.com&ip=192.0.2.9",
        &[],
        &raw,
    );
    let v = r.json();
    assert_eq!(v["action"], "quarantine", "{v}");
    let id = v["quarantine_id"].as_str().expect("id").to_string();
    // Two clean messages through B, so both nodes wrote events.
    for i in 0..2 {
        let clean = message(&format!("clean {i}"), "nothing here", "");
        let r = b.post(
            "/v1/check?from=s%40example.net&rcpt=a%40example.com",
            &[],
            &clean,
        );
        assert_eq!(r.json()["action"], "accept");
    }

    // A stored the bytes in the bucket, not in its own folder.
    assert_eq!(bucket.blobs(), vec![(sha(&raw), raw.clone())]);
    assert!(
        !a.dir
            .path()
            .join("var/quarantine/blobs")
            .join(&sha(&raw)[..2])
            .join(sha(&raw))
            .exists()
    );

    // Listed and readable on B, with the bytes A stored.
    let list = api(&b, "GET", "/v1/quarantine?limit=50", AUDITOR);
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(list.text().contains(&id), "{}", list.text());
    let bytes = api(&b, "GET", &format!("/v1/quarantine/{id}/raw"), ADMIN);
    assert_eq!(bytes.status, 200);
    assert_eq!(bytes.body, raw);

    // A recipient link minted on A verifies on B and C (and on A).
    let links = api(&a, "GET", &format!("/v1/quarantine/{id}/links"), OPERATOR);
    assert_eq!(links.status, 200, "{}", links.text());
    let url = links.json()["links"][0]["url"]
        .as_str()
        .expect("url")
        .to_string();
    let path = url
        .strip_prefix("http://gateway.test:8080")
        .expect("public_url")
        .to_string();
    for s in [&a, &b, &c] {
        let page = s.get(&path);
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(page.text().contains("Release to my mailbox"));
    }

    // Released through B: sent once, audited, seen as released on A.
    let r = api(
        &b,
        "POST",
        &format!("/v1/quarantine/{id}/release"),
        OPERATOR,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(sink.wait_for(1).len(), 1);
    let detail = api(&a, "GET", &format!("/v1/quarantine/{id}"), AUDITOR).json();
    assert_eq!(detail["state"], "released", "{detail}");
    let audit = detail["audit"].as_array().expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e["event"] == "released" && e["actor"] == "token:ops"),
        "{audit:?}"
    );
    // Releasing again, on either node, sends nothing more.
    let again = api(
        &a,
        "POST",
        &format!("/v1/quarantine/{id}/release"),
        OPERATOR,
    );
    assert_ne!(again.status, 200, "{}", again.text());

    // One event sequence, the same from every node, with the names of the
    // nodes that wrote events.
    let seen = eventually(Duration::from_secs(20), || {
        let (ea, eb, ec) = (events(&a), events(&b), events(&c));
        (ea.len() >= 3 && ea == eb && eb == ec).then_some(ea)
    })
    .unwrap_or_else(|| {
        panic!(
            "nodes disagree: {:?} / {:?} / {:?}",
            events(&a),
            events(&b),
            events(&c)
        )
    });
    let seqs: Vec<i64> = seen.iter().map(|(s, _)| *s).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seqs, sorted, "one increasing sequence");
    let nodes: HashSet<String> = api(&a, "GET", "/v1/events?limit=1000", AUDITOR).json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["node"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        nodes,
        HashSet::from(["node-a".to_string(), "node-b".to_string()])
    );

    // The webhook got every event exactly once, although all nodes run it.
    let ids: HashSet<String> = seen.iter().map(|(_, id)| id.clone()).collect();
    let delivered = |hook: &Receiver| -> Vec<String> {
        hook.got
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.header("webhook-id").to_string())
            .collect()
    };
    eventually(Duration::from_secs(30), || {
        (delivered(&hook).iter().collect::<HashSet<_>>().len() == ids.len()).then_some(())
    })
    .unwrap_or_else(|| panic!("webhook got {:?}, events {ids:?}", delivered(&hook)));
    // Give the other nodes time to deliver a duplicate, if they were going to.
    std::thread::sleep(Duration::from_secs(3));
    let got = delivered(&hook);
    assert_eq!(got.len(), ids.len(), "each event once: {got:?}");
    assert_eq!(got.iter().cloned().collect::<HashSet<_>>(), ids);

    // Each node names itself and the rule set it runs.
    let ra = api(&a, "GET", "/v1/rules", AUDITOR).json();
    let rb = api(&b, "GET", "/v1/rules", AUDITOR).json();
    let rc = api(&c, "GET", "/v1/rules", AUDITOR).json();
    assert_eq!(ra["node"], "node-a");
    assert_eq!(rb["node"], "node-b");
    assert_eq!(rc["node"], "node-c");
    assert_eq!(ra["rules_version"], rb["rules_version"]);
    assert_eq!(rb["rules_version"], rc["rules_version"]);
    assert!(ra["rules_version"].as_str().is_some_and(|v| !v.is_empty()));
    std::mem::forget(rules);
}

/// Rotating the link secret: a node on the new secret that keeps the old
/// one in `previous_secret_files` honours links (and stamps) minted before
/// the rotation and signs new ones with the new secret only; a node
/// without the old secret refuses the old links.
#[test]
fn links_signed_before_a_secret_rotation_keep_working_postgres_s3() {
    let sink = Sink::start();
    let rules = tempfile::tempdir().expect("temp dir");
    std::fs::write(rules.path().join("test.yar"), RULES).expect("rules");
    let secrets = tempfile::tempdir().expect("secrets");
    let (old, new) = (
        secrets.path().join("old.key"),
        secrets.path().join("new.key"),
    );
    std::fs::write(&old, sha("old secret")).expect("secret");
    std::fs::write(&new, sha("new secret")).expect("secret");
    let base = config(&sink, Db::Shared, rules.path(), "");
    let with = |release: String| base.replace("[release]\n", &format!("[release]\n{release}"));
    let before = node(
        &with(format!("secret_file = \"{}\"\n", old.display())),
        "before",
    );
    let raw = message("Rotation", "PORTCULLIS-TEST-HOLD", "");
    let r = before.post(
        "/v1/check?from=sender%40example.net&rcpt=a%40example.com&ip=192.0.2.9",
        &[],
        &raw,
    );
    let id = r.json()["quarantine_id"]
        .as_str()
        .expect("held")
        .to_string();
    let link = |s: &Server| {
        let r = api(s, "GET", &format!("/v1/quarantine/{id}/links"), OPERATOR);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["links"][0]["url"]
            .as_str()
            .expect("url")
            .strip_prefix("http://gateway.test:8080")
            .expect("public_url")
            .to_string()
    };
    let old_link = link(&before);

    let rotated = node(
        &with(format!(
            "secret_file = \"{}\"\nprevious_secret_files = [\"{}\"]\n",
            new.display(),
            old.display()
        )),
        "rotated",
    );
    let forgot = node(
        &with(format!("secret_file = \"{}\"\n", new.display())),
        "forgot",
    );
    let page = rotated.get(&old_link);
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("Release to my mailbox"));
    assert_eq!(forgot.get(&old_link).status, 403, "the old secret is gone");
    // New links come from the new secret: the node still on the old
    // secret alone cannot verify them.
    let new_link = link(&rotated);
    assert_ne!(new_link, old_link);
    assert_eq!(forgot.get(&new_link).status, 200);
    assert_eq!(before.get(&new_link).status, 403);
    // A missing previous secret stops the start, loudly.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        with(format!(
            "secret_file = \"{}\"\nprevious_secret_files = [\"/nonexistent/old.key\"]\n",
            new.display()
        )),
    )
    .expect("config");
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--listen", "127.0.0.1:0", "--milter-listen", "none"])
        .arg("--data-dir")
        .arg(dir.path().join("var"))
        .output()
        .expect("serve");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/old.key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::mem::forget(rules);
}
