//! The `portcullis` binary as a user runs it: exit codes, JSON Lines,
//! input order, mbox, stdin, directories, rule checks.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("portcullis runs")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

#[test]
fn scans_the_generated_samples_directory_with_expected_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["samples", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.path().join("expected.json")).unwrap()).unwrap();

    // md5/sha1 on (off by default) to check where they go.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = elsewhere.path().join("legacy.toml");
    std::fs::write(&config, "[identify]\nlegacy_hashes = true\n").unwrap();
    let out = run(&[
        "scan",
        "--json",
        "-j",
        "2",
        "--config",
        config.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "non-accept verdicts exit 1");
    let lines = json_lines(&out);
    // expected.json is an input too (scanned as a file).
    assert_eq!(lines.len(), manifest.len() + 1);
    let inputs: Vec<&str> = lines.iter().map(|l| l["input"].as_str().unwrap()).collect();
    let mut sorted = inputs.clone();
    sorted.sort();
    assert_eq!(
        inputs, sorted,
        "output is in input (sorted directory) order"
    );
    for entry in &manifest {
        let file = entry["file"].as_str().unwrap();
        let line = lines
            .iter()
            .find(|l| Path::new(l["input"].as_str().unwrap()).file_name().unwrap() == file)
            .unwrap_or_else(|| panic!("no line for {file}"));
        assert_eq!(
            line["action"], entry["expect"],
            "{file}: {}",
            line["summary"]
        );
        for key in ["score", "findings", "objects", "rules_version"] {
            assert!(line.get(key).is_some(), "{file}: no {key}");
        }
        for object in line["objects"].as_array().unwrap() {
            for key in ["path", "true_type", "size", "outcome"] {
                assert!(object.get(key).is_some(), "{file}: object has no {key}");
            }
            // Hashes of everything read; md5/sha1 (IOC feeds) not for a raw
            // message itself.
            // Hashes of everything read: only entries listed by name and
            // never read (encrypted, or a RAR entry we cannot decompress)
            // have none.
            let status = object["outcome"]["status"].as_str().unwrap_or_default();
            let encrypted = status == "encrypted";
            let path = &object["path"];
            let hashed = object.get("sha256").is_some();
            if encrypted {
                assert!(!hashed, "{file}: sha256 on encrypted {path}");
            }
            if !hashed {
                assert!(
                    matches!(status, "encrypted" | "unsupported" | "malformed")
                        && object["size"] == 0,
                    "{file}: no sha256 on {path} ({status})"
                );
            }
            let is_message_root = object["id"] == 0 && entry["kind"] == "mail";
            for key in ["md5", "sha1"] {
                let expected = !is_message_root && hashed;
                assert_eq!(
                    object.get(key).is_some(),
                    expected,
                    "{file}: {key} on {path}"
                );
            }
        }
    }
}

#[test]
fn exit_codes_clean_found_error() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("note.txt");
    std::fs::write(&clean, "nothing to see").unwrap();
    assert_eq!(
        run(&["scan", clean.to_str().unwrap()]).status.code(),
        Some(0)
    );

    let bad = dir.path().join("e.eml");
    std::fs::write(
        &bad,
        portcullis::samples::message(
            "t",
            "t",
            &[portcullis::samples::attachment(
                "application/zip",
                "a.zip",
                &portcullis::samples::zip(&[("e.com", &portcullis::samples::eicar())]),
            )],
        ),
    )
    .unwrap();
    let out = run(&["scan", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("reject"), "{text}");
    assert!(
        text.contains("EICAR_Test_File"),
        "human output shows the tree and rule: {text}"
    );
    assert!(text.contains("a.zip"), "{text}");

    let missing = dir.path().join("missing.eml");
    let out = run(&[
        "scan",
        "--json",
        missing.to_str().unwrap(),
        clean.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let lines = json_lines(&out);
    assert!(lines[0]["error"].is_string());
    assert_eq!(lines[1]["action"], "accept");
}

#[test]
fn stdin_and_mbox() {
    let mut child = bin()
        .args(["scan", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&portcullis::samples::message("x", "hello", &[]))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lines = json_lines(&out);
    assert_eq!(lines[0]["input"], "-");
    assert_eq!(
        lines[0]["objects"][0]["path"], "message",
        "stdin mail is read as mail"
    );

    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("inbox");
    let mut data = Vec::new();
    let eicar = portcullis::samples::eicar();
    for (i, bad) in [false, true, false].iter().enumerate() {
        data.extend_from_slice(b"From sender@example.org Fri Nov 27 09:00:00 2026\n");
        let parts = if *bad {
            vec![portcullis::samples::attachment(
                "application/octet-stream",
                "e.com",
                &eicar,
            )]
        } else {
            vec![]
        };
        let body = format!("message {i}\n>From the archive");
        data.extend(portcullis::samples::to_lf(&portcullis::samples::message(
            &format!("m{i}"),
            &body,
            &parts,
        )));
        data.extend_from_slice(b"\n");
    }
    std::fs::write(&mbox, data).unwrap();
    let out = run(&["scan", "--json", mbox.to_str().unwrap()]);
    let lines = json_lines(&out);
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["accept", "reject", "accept"]);
    assert!(lines[2]["input"].as_str().unwrap().ends_with("inbox:3"));
}

#[test]
fn rules_check_reports_file_and_line() {
    let out = run(&["rules", "check"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("x.yar"),
        "rule a {\n  condition:\n    nonsense\n}\n",
    )
    .unwrap();
    let out = run(&["rules", "check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("x.yar:3"), "{err}");
    // and scan refuses to run on a broken set rather than scanning with none
    let out = run(&[
        "scan",
        "--rules",
        dir.path().to_str().unwrap(),
        "Cargo.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_is_validated_and_applied() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, "[policy]\non_encrypted = \"reject\"\n").unwrap();
    assert!(
        run(&["config", "check", cfg.to_str().unwrap()])
            .status
            .success()
    );
    let sample = portcullis::samples::all()
        .into_iter()
        .find(|s| s.name == "encrypted_zip.eml")
        .unwrap();
    let eml = dir.path().join("enc.eml");
    std::fs::write(&eml, &sample.data).unwrap();
    let out = run(&[
        "scan",
        "--json",
        "--config",
        cfg.to_str().unwrap(),
        eml.to_str().unwrap(),
    ]);
    assert_eq!(json_lines(&out)[0]["action"], "reject");

    std::fs::write(&cfg, "[limits]\nmax_deph = 3\n").unwrap();
    let out = run(&["config", "check", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_deph"));
}

/// `rules test`: a candidate rule set against a corpus with sidecar and
/// manifest expectations; exit 0 when all hold, 1 on a failed expectation
/// or a rule that does not compile (named by file:line).
#[test]
fn rules_test_checks_a_corpus_against_expected_verdicts() {
    use crate::quarantine::{RULES, message};
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("test.yar"), RULES).unwrap();
    let corpus = tempfile::tempdir().unwrap();
    let c = corpus.path();
    std::fs::write(
        c.join("hold.eml"),
        message("Held", "PORTCULLIS-TEST-HOLD", ""),
    )
    .unwrap();
    std::fs::write(
        c.join("hold.eml.expect.toml"),
        "action = \"quarantine\"\nrules = [\"Test_Hold_Marker\"]\nabsent = [\"Test_Danger_Marker\"]\n",
    )
    .unwrap();
    std::fs::write(c.join("clean.eml"), message("Clean", "nothing to see", "")).unwrap();
    std::fs::create_dir(c.join("files")).unwrap();
    std::fs::write(
        c.join("files/danger.txt"),
        b"a file with PORTCULLIS-TEST-DANGER inside",
    )
    .unwrap();
    std::fs::write(c.join("files/unchecked.bin"), b"no expectations here").unwrap();
    let manifest = |clean_action: &str| {
        format!(
            "[[sample]]\nfile = \"clean.eml\"\naction = \"{clean_action}\"\nabsent = [\"Test_Hold_Marker\"]\n\n\
             [[sample]]\nfile = \"files/danger.txt\"\nrules = [\"Test_Danger_Marker\"]\n"
        )
    };
    std::fs::write(c.join("manifest.toml"), manifest("accept")).unwrap();
    let test = |dir: &Path| {
        run(&[
            "rules",
            "test",
            dir.to_str().unwrap(),
            "--corpus",
            c.to_str().unwrap(),
        ])
    };

    let out = test(rules.path());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("3 passed, 0 failed, 1 without expectations"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("hold.eml") && l.contains("quarantine")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with('-') && l.contains("files/unchecked.bin")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with('1') && l.ends_with("Test_Danger_Marker")),
        "{text}"
    );

    // An expectation the candidate does not meet.
    std::fs::write(c.join("manifest.toml"), manifest("quarantine")).unwrap();
    let out = test(rules.path());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("FAIL")
            && l.contains("clean.eml")
            && l.contains("action accept, expected quarantine")),
        "{text}"
    );
    assert!(text.contains("2 passed, 1 failed"), "{text}");

    // A candidate that does not compile fails with its file and line.
    std::fs::write(
        rules.path().join("broken.yar"),
        "rule Broken {\n  condition:\n    nope\n}\n",
    )
    .unwrap();
    let out = test(rules.path());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("rules do not compile") && text.contains("broken.yar:3"),
        "{text}"
    );
}
