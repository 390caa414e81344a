//! Every generated sample gets the verdict its generator promises, with the
//! findings that explain it.

use crate::util::{engine, finding_names, samples};
use portcullis::model::{InputKind, Outcome};
use portcullis::{Action, Submission};

fn submission(s: &portcullis::samples::Sample) -> Submission {
    match s.kind {
        InputKind::Mail => Submission::mail(s.data.clone()),
        InputKind::File => Submission::file(Some(s.name.clone()), s.data.clone()),
    }
}

#[test]
fn every_sample_gets_its_expected_verdict() {
    let mut failures = Vec::new();
    for s in samples() {
        let report = engine().inspect(&submission(s)).expect("no internal error");
        let names = finding_names(&report);
        let missing: Vec<_> = s
            .must_find
            .iter()
            .filter(|n| !names.iter().any(|f| f == *n))
            .collect();
        if report.verdict.action != s.expect || !missing.is_empty() {
            failures.push(format!(
                "{}: expected {} with {:?}, got {} ({}) findings {:?}",
                s.name, s.expect, s.must_find, report.verdict.action, report.verdict.summary, names
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} samples wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn samples_cover_every_action_we_promise() {
    let actions: Vec<Action> = samples().iter().map(|s| s.expect).collect();
    for a in [
        Action::Accept,
        Action::Tag,
        Action::Quarantine,
        Action::Reject,
    ] {
        assert!(actions.contains(&a), "no sample expects {a}");
    }
}

fn sample(name: &str) -> &'static portcullis::samples::Sample {
    samples()
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sample {name}"))
}

#[test]
fn verdict_names_the_deciding_object_path() {
    let report = engine()
        .inspect(&submission(sample("eicar_deep.eml")))
        .unwrap();
    let path = report.verdict.deciding_path.clone().unwrap();
    assert!(
        path.starts_with("message > deep.zip > level4.zip >"),
        "{path}"
    );
    assert!(path.ends_with("> eicar.com"), "{path}");
    let deciding = &report.findings[report.verdict.deciding_finding.unwrap()];
    assert_eq!(deciding.kind.name(), "EICAR_Test_File");
}

#[test]
fn identical_objects_are_scanned_once() {
    let report = engine()
        .inspect(&submission(sample("duplicate_attachments.eml")))
        .unwrap();
    let pdfs: Vec<_> = report
        .objects
        .iter()
        .filter(|o| o.true_type == "application/pdf")
        .collect();
    assert_eq!(pdfs.len(), 2, "{:?}", report.objects);
    assert_eq!(pdfs[0].outcome, Outcome::Scanned);
    assert_eq!(pdfs[1].outcome, Outcome::Duplicate { of: pdfs[0].id });
}

#[test]
fn encrypted_entries_are_listed_by_name() {
    let report = engine()
        .inspect(&submission(sample("encrypted_zip.eml")))
        .unwrap();
    let entry = crate::util::object(&report, "invoice.exe");
    assert_eq!(entry.outcome, Outcome::Encrypted);
    assert_eq!(
        (entry.size, entry.sha256.as_deref(), entry.md5.as_deref()),
        (0, None, None)
    );
}

#[test]
fn text_parts_are_scanned_as_sent_not_as_decoded_text() {
    // A latin-1 part: mail-parser turns it into UTF-8 text, which would
    // change the bytes and their hash. We must hash what was sent.
    let body = b"caf\xe9 cr\xe8me";
    let msg = portcullis::samples::message(
        "latin1",
        "x",
        &[portcullis::samples::Part {
            content_type: "text/plain; charset=iso-8859-1",
            name: Some("menu.txt"),
            encoding: "base64",
            data: body,
        }],
    );
    let report = engine().inspect(&Submission::mail(msg)).unwrap();
    let part = crate::util::object(&report, "menu.txt");
    assert_eq!(part.size, body.len() as u64);
    let expected = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(body))
    };
    assert_eq!(part.sha256.as_deref(), Some(expected.as_str()));
}

#[test]
fn limits_are_typed_outcomes() {
    let report = engine()
        .inspect(&submission(sample("bomb_ratio.zip")))
        .unwrap();
    let zeros = crate::util::object(&report, "zeros.bin");
    assert_eq!(
        zeros.outcome,
        Outcome::Limit {
            limit: portcullis::model::LimitKind::Ratio
        }
    );
    // The bomb was stopped early: far less than its 48 MiB was produced.
    assert!(
        report.unpacked_bytes < 16 << 20,
        "{}",
        report.unpacked_bytes
    );
}

#[test]
fn crlf_and_lf_give_the_same_verdicts() {
    for s in samples().iter().filter(|s| s.name.ends_with("_lf.eml")) {
        let crlf = sample(&s.name.replace("_lf.eml", ".eml"));
        let a = engine().inspect(&submission(s)).unwrap();
        let b = engine().inspect(&submission(crlf)).unwrap();
        assert_eq!(a.verdict.action, b.verdict.action, "{}", s.name);
        assert_eq!(
            finding_names(&a).len(),
            finding_names(&b).len(),
            "{}",
            s.name
        );
    }
}
