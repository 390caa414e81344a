//! The rule lifecycle on a running gateway: impact preview (API and CLI)
//! over held messages and the sample of recent mail, and the retro-scan
//! that follows a reload (release candidates, optional automatic release
//! to a real SMTP sink), on SQLite and PostgreSQL.

use crate::harness::{Sink, bin, eventually};
use crate::quarantine::{ADMIN, AUDITOR, Db, Lab, OPERATOR, RULES, lab_edited, message};
use serde_json::Value;
use std::time::Duration;

/// The test rules with Test_Hold_Marker gone and a new rule added.
fn candidate_rules() -> String {
    let without_hold = RULES
        .split("rule Test_Danger_Marker")
        .nth(1)
        .expect("the danger rule");
    format!(
        "rule Test_Danger_Marker{without_hold}\n\
         rule Test_New_Marker\n{{\n    meta:\n        score = 10\n        action = \"quarantine\"\n\
         \x20   strings:\n        $a = \"PORTCULLIS-TEST-NEWBAD\"\n    condition:\n        $a\n}}\n"
    )
}

fn rules_dir(lab: &Lab) -> std::path::PathBuf {
    let cfg = std::fs::read_to_string(lab.server.dir.path().join("portcullis.toml")).unwrap();
    let v: toml::Value = toml::from_str(&cfg).unwrap();
    v["rules"]["dir"].as_str().unwrap().into()
}

/// Holds one message for Test_Hold_Marker and one for Test_Danger_Marker.
fn hold_two(lab: &Lab) -> (String, String) {
    let hold =
        |subject: &str, marker: &str| lab.hold(&message(subject, marker, ""), &["a@example.com"]);
    (
        hold("held one", "PORTCULLIS-TEST-HOLD"),
        hold("danger", "PORTCULLIS-TEST-DANGER"),
    )
}

fn send(lab: &Lab, subject: &str, marker: &str) -> Value {
    let r = lab.server.post(
        "/v1/check?from=sender%40example.net&rcpt=a%40example.com&ip=192.0.2.9",
        &[],
        &message(subject, marker, ""),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn preview(lab: &Lab, token: &str, files: Value) -> (u16, Value) {
    let r = lab.api(
        "POST",
        "/v1/rules/preview",
        token,
        serde_json::json!({ "files": files }).to_string().as_bytes(),
    );
    let v = r.json();
    if r.status == 200 {
        crate::openapi::assert_response("/v1/rules/preview", "post", 200, &v);
    }
    (r.status, v)
}

#[test]
fn preview_reports_which_verdicts_a_candidate_set_would_change() {
    let lab = lab_edited(Sink::start(), Db::Sqlite, |c| {
        c.replace("[rules]\n", "[rules]\npreview_sample = 100\n")
    });
    let (held, danger) = hold_two(&lab);
    for (s, m) in [
        ("clean 1", ""),
        ("new threat", "PORTCULLIS-TEST-NEWBAD"),
        ("clean 2", ""),
    ] {
        assert_eq!(send(&lab, s, m)["action"], "accept");
    }
    let live_version = lab.api("GET", "/v1/rules", AUDITOR, b"").json()["rules_version"].clone();

    let (status, v) = preview(
        &lab,
        ADMIN,
        serde_json::json!({ "test.yar": candidate_rules() }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["live_version"], live_version);
    assert_ne!(v["candidate_version"], live_version);
    assert_eq!(v["scanned"]["quarantine"], 2);
    assert_eq!(v["scanned"]["sample"], 3);
    assert_eq!(v["action_changed"], 2, "{v}");
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{v}");
    let released = msgs
        .iter()
        .find(|m| m["id"] == held.as_str())
        .expect("the held message");
    assert_eq!(released["source"], "quarantine");
    assert_eq!(released["live"]["action"], "quarantine");
    assert_eq!(released["candidate"]["action"], "accept");
    assert_eq!(released["would_deliver"], true);
    assert_eq!(
        released["removed"],
        serde_json::json!(["test:Test_Hold_Marker"])
    );
    assert_eq!(released["subject"], "held one");
    let caught = msgs
        .iter()
        .find(|m| m["source"] == "sample")
        .expect("a sample");
    assert_eq!(caught["subject"], "new threat");
    assert_eq!(caught["live"]["action"], "accept");
    assert_eq!(caught["candidate"]["action"], "quarantine");
    assert_eq!(caught["added"], serde_json::json!(["test:Test_New_Marker"]));
    assert!(
        msgs.iter().all(|m| m["id"] != danger.as_str()),
        "unchanged ones are not listed"
    );
    assert_eq!(v["rule_hits"]["test:Test_New_Marker"], 1);
    assert_eq!(v["rule_hits"]["test:Test_Danger_Marker"], 1);

    // Nothing was deployed: the live set and the held message are as they were.
    assert_eq!(
        lab.api("GET", "/v1/rules", AUDITOR, b"").json()["rules_version"],
        live_version
    );
    assert_eq!(lab.detail(&held)["state"], "held");

    // A candidate that does not compile names the file and line.
    let (status, v) = preview(
        &lab,
        ADMIN,
        serde_json::json!({ "broken.yar": "rule ok { condition: true }\n\nrule bad { condition: nosuchthing }\n" }),
    );
    assert_eq!(status, 422, "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(err.contains("broken.yar:3"), "{err}");
    // Paths stay inside the candidate; only admins preview.
    let (status, v) = preview(
        &lab,
        ADMIN,
        serde_json::json!({ "../x.yar": "rule a { condition: true }" }),
    );
    assert_eq!(status, 400, "{v}");
    let (status, _) = preview(&lab, OPERATOR, serde_json::json!({ "test.yar": RULES }));
    assert_eq!(status, 403);

    // The CLI sends a directory and prints the same changes.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("test.yar"), candidate_rules()).unwrap();
    let url = format!("http://{}", lab.server.addr);
    let cli = |extra: &[&str], d: &std::path::Path| {
        std::process::Command::new(bin())
            .args(["rules", "preview"])
            .arg(d)
            .args(["--url", &url])
            .args(extra)
            .env("PORTCULLIS_TOKEN", ADMIN)
            .output()
            .unwrap()
    };
    let out = cli(&[], dir.path());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&held), "{text}");
    assert!(text.contains("+test:Test_New_Marker"), "{text}");
    assert!(text.contains("-test:Test_Hold_Marker"), "{text}");
    assert!(text.contains("2 change action"), "{text}");
    assert_eq!(
        cli(&["--fail-on-change"], dir.path()).status.code(),
        Some(1)
    );
    // The live set as candidate changes nothing: the gate passes.
    let same = tempfile::tempdir().unwrap();
    std::fs::write(same.path().join("test.yar"), RULES).unwrap();
    let out = cli(&["--fail-on-change"], same.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::write(same.path().join("test.yar"), "rule x { condition: nope }").unwrap();
    let out = cli(&[], same.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("test.yar:1"));
}

fn retro_scenario(db: Db, auto_release: bool) {
    let lab = lab_edited(Sink::start(), db, |c| {
        c.replace(
            "[rules]\n",
            &format!("[rules]\nwatch_interval = \"off\"\nretro_release = {auto_release}\n"),
        )
    });
    let (held, danger) = hold_two(&lab);
    assert_eq!(lab.list("candidate=1")["total"], 0);

    // Deploy the set without Test_Hold_Marker.
    std::fs::write(rules_dir(&lab).join("test.yar"), candidate_rules()).unwrap();
    let r = lab.api("POST", "/v1/reload", ADMIN, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let version = r.json()["rules_version"].as_str().unwrap().to_string();

    let rules = eventually(Duration::from_secs(30), || {
        let v = lab.api("GET", "/v1/rules", AUDITOR, b"").json();
        (v["retro_scan"]["rules_version"] == version.as_str()
            && v["retro_scan"]["scanned"] == 2
            && v["retro_scan"]["pending"] == 0)
            .then_some(v)
    })
    .unwrap_or_else(|| panic!("retro-scan did not finish; log:\n{}", lab.server.log()));
    crate::openapi::assert_response("/v1/rules", "get", 200, &rules);
    assert_eq!(rules["retro_scan"]["candidates"], 1);

    let d = lab.detail(&held);
    assert_eq!(
        d["release_candidate"]["rules_version"],
        version.as_str(),
        "{d}"
    );
    assert_eq!(d["release_candidate"]["action"], "accept");
    let audit = d["audit"].as_array().unwrap();
    let mark = audit
        .iter()
        .find(|a| a["event"] == "retro_candidate")
        .expect("the candidate is audited");
    assert_eq!(mark["actor"], "system");
    assert!(mark["detail"].as_str().unwrap().contains(&version));
    // The dangerous one is still held for a reason the new set keeps.
    assert!(lab.detail(&danger)["release_candidate"].is_null());

    if auto_release {
        let got = lab.sink.wait_for(1);
        assert!(
            got[0]
                .data
                .ends_with(&message("held one", "PORTCULLIS-TEST-HOLD", "")[..])
        );
        let d = eventually(Duration::from_secs(10), || {
            let d = lab.detail(&held);
            (d["state"] == "released").then_some(d)
        })
        .expect("released");
        let rel = d["audit"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["event"] == "released")
            .cloned()
            .unwrap();
        assert_eq!(rel["actor"], format!("retro-scan:{version}"));
        assert_eq!(lab.detail(&danger)["state"], "held");
    } else {
        let list = lab.list("candidate=1");
        assert_eq!(list["total"], 1);
        assert_eq!(list["items"][0]["id"], held.as_str());
        assert_eq!(lab.detail(&held)["state"], "held", "listed, not released");
        // The UI marks it and filters on it.
        let op = crate::quarantine::ui_login(&lab.server, "olivia", "correct horse battery staple")
            .expect("operator logs in");
        let ui = |path: &str| {
            let r = lab.server.request("GET", path, &[("Cookie", &op)], b"");
            assert_eq!(r.status, 200);
            r.text()
        };
        let only = ui("/ui?candidate=1");
        assert!(only.contains(&held) && !only.contains(&danger), "{only}");
        assert!(only.contains("release candidate"));
        assert!(ui("/ui").contains(&danger));
        assert!(
            ui(&format!("/ui/m/{held}")).contains(&format!("rules {version} would deliver it"))
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(lab.sink.messages().is_empty());
        // The operator releases the candidate as usual.
        let r = lab.api(
            "POST",
            &format!("/v1/quarantine/{held}/release"),
            OPERATOR,
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(lab.sink.wait_for(1).len(), 1);
    }
}

#[test]
fn after_a_reload_held_messages_the_new_rules_would_deliver_are_release_candidates_sqlite() {
    retro_scenario(Db::Sqlite, false);
}

#[test]
fn after_a_reload_held_messages_the_new_rules_would_deliver_are_release_candidates_postgres_s3() {
    retro_scenario(Db::Shared, false);
}

#[test]
fn retro_release_delivers_candidates_and_audits_it() {
    retro_scenario(Db::Sqlite, true);
}
