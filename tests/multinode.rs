//! Several gateways, one PostgreSQL: what one node quarantines, another
//! lists, releases and audits; a recipient link minted by one verifies on
//! the other; both serve one event sequence; a webhook gets each event once,
//! not once per node; each node reports itself and its rule set.
//!
//! The nodes share the data directory as they would share an NFS export
//! (quarantined bytes and the link-signing secret live there until the
//! object-storage backend lands); each keeps its own audit log path off.

use crate::events::{Mode, Receiver};
use crate::harness::{Server, Sink, bin, eventually, free_port};
use crate::quarantine::{ADMIN, AUDITOR, Db, OPERATOR, RULES, auth, config, message};
use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

fn node(shared: &std::path::Path, config: &str, name: &str) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, format!("{config}\n[server]\nnode = \"{name}\"\n")).expect("config");
    let mut cmd = Command::new(bin());
    cmd.arg("serve")
        .arg("--config")
        .arg(&path)
        .args(["--listen", "127.0.0.1:0", "--milter-listen", "none"])
        .arg("--data-dir")
        .arg(shared)
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
fn two_nodes_share_quarantine_links_events_and_webhooks_postgres() {
    let sink = Sink::start();
    let port = free_port();
    let hook = Receiver::start(port, Mode::Ok);
    let rules = tempfile::tempdir().expect("temp dir");
    std::fs::write(rules.path().join("test.yar"), RULES).expect("rules");
    let base = config(&sink, Db::Postgres, rules.path(), "")
        + &format!(
            "\n[events]\naudit_log = \"off\"\n\n[[webhooks]]\nname = \"siem\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nmax_backoff = \"1s\"\n"
        );
    let shared = tempfile::tempdir().expect("shared data dir");
    // A first: it creates the schema and the signing secret.
    let a = node(shared.path(), &base, "node-a");
    let b = node(shared.path(), &base, "node-b");

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

    // Listed and readable on B, with the bytes A stored.
    let list = api(&b, "GET", "/v1/quarantine?limit=50", AUDITOR);
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(list.text().contains(&id), "{}", list.text());
    let bytes = api(&b, "GET", &format!("/v1/quarantine/{id}/raw"), ADMIN);
    assert_eq!(bytes.status, 200);
    assert_eq!(bytes.body, raw);

    // A recipient link minted on A verifies on B (and on A).
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
    for s in [&a, &b] {
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

    // One event sequence, the same from both nodes, with both nodes' names.
    let seen = eventually(Duration::from_secs(20), || {
        let (ea, eb) = (events(&a), events(&b));
        (ea.len() >= 3 && ea == eb).then_some(ea)
    })
    .unwrap_or_else(|| panic!("nodes disagree: {:?} / {:?}", events(&a), events(&b)));
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

    // The webhook got every event exactly once, although both nodes run it.
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
    // Give a second node time to deliver a duplicate, if it were going to.
    std::thread::sleep(Duration::from_secs(3));
    let got = delivered(&hook);
    assert_eq!(got.len(), ids.len(), "each event once: {got:?}");
    assert_eq!(got.iter().cloned().collect::<HashSet<_>>(), ids);

    // Each node names itself and the rule set it runs.
    let ra = api(&a, "GET", "/v1/rules", AUDITOR).json();
    let rb = api(&b, "GET", "/v1/rules", AUDITOR).json();
    assert_eq!(ra["node"], "node-a");
    assert_eq!(rb["node"], "node-b");
    assert_eq!(ra["rules_version"], rb["rules_version"]);
    assert!(ra["rules_version"].as_str().is_some_and(|v| !v.is_empty()));
    std::mem::forget(rules);
}
