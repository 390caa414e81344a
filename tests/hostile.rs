//! Hostile input: any bytes give a verdict, never a panic or a runaway.
//! Random bytes, and every small sample mutated (flipped, truncated,
//! spliced), go through the whole pipeline as mail and as a file.

use crate::util::samples;
use portcullis::config::{Config, Limits};
use portcullis::{Engine, RuleSet, Submission};
use proptest::prelude::*;
use std::sync::OnceLock;
use std::time::Duration;

/// Tight limits so the properties also exercise the limit paths.
fn tight() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let config = Config {
            limits: Limits {
                max_depth: 6,
                max_objects: 64,
                max_object_bytes: 1 << 20,
                max_total_bytes: 4 << 20,
                max_ratio: 50,
                ratio_floor_bytes: 64 << 10,
                time_budget: Duration::from_secs(2),
                max_password_candidates: 8,
                password_time: Duration::from_millis(500),
            },
            ..Config::defaults()
        };
        Engine::new(config, RuleSet::bundled().unwrap())
    })
}

fn check(data: Vec<u8>) -> Result<(), TestCaseError> {
    let engine = tight();
    let limits = &engine.config.limits;
    for submission in [
        Submission::mail(data.clone()),
        Submission::file(Some("x.bin".into()), data),
    ] {
        let report = engine
            .inspect(&submission)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            report.objects.len() <= limits.max_objects,
            "{} objects",
            report.objects.len()
        );
        prop_assert!(
            report.unpacked_bytes <= limits.max_total_bytes,
            "{} bytes",
            report.unpacked_bytes
        );
        prop_assert!(
            report
                .objects
                .iter()
                .all(|o| o.depth <= limits.max_depth + 1)
        );
        // The budget plus one yara-x timeout tick (whole seconds).
        prop_assert!(report.duration_ms < 4000.0, "{} ms", report.duration_ms);
    }
    Ok(())
}

fn small_samples() -> Vec<Vec<u8>> {
    samples()
        .iter()
        .filter(|s| s.data.len() < 256 << 10)
        .map(|s| s.data.clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check(data)?;
    }

    #[test]
    fn mutated_samples(
        pick in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..16),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let all = small_samples();
        let mut data = all[pick.index(all.len())].clone();
        for (at, byte) in flips {
            if !data.is_empty() {
                let i = at.index(data.len());
                data[i] ^= byte;
            }
        }
        if truncate && !data.is_empty() {
            data.truncate(cut.index(data.len()));
        }
        check(data)?;
    }

    #[test]
    fn spliced_containers(a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>(), at in any::<prop::sample::Index>()) {
        let all = small_samples();
        let x = &all[a.index(all.len())];
        let y = &all[b.index(all.len())];
        let split = at.index(x.len().max(1)).min(x.len());
        let mut data = x[..split].to_vec();
        data.extend_from_slice(y);
        check(data)?;
    }
}

#[test]
fn deep_mime_nesting_is_bounded() {
    // 2000 nested multiparts and 2000 nested inline messages.
    let mut multipart = String::from("From: a@b\r\nSubject: deep\r\n");
    for i in 0..2000 {
        multipart.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    multipart.push_str("Content-Type: text/plain\r\n\r\nbottom\r\n");
    check(multipart.into_bytes()).unwrap();

    let mut nested = String::new();
    for _ in 0..2000 {
        nested.push_str("From: a@b\r\nSubject: x\r\nContent-Type: message/rfc822\r\n\r\n");
    }
    nested.push_str("From: a@b\r\n\r\nbottom\r\n");
    let report = tight()
        .inspect(&Submission::mail(nested.into_bytes()))
        .unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind.name() == "LIMIT_DEPTH"),
        "{:?}",
        report.verdict
    );
}

#[test]
fn zip_quine_like_self_nesting_stops() {
    // The same zip inside itself by hash: dedupe and depth both cut it.
    let inner = portcullis::samples::zip(&[("a.zip", b"PK\x03\x04")]);
    let outer =
        portcullis::samples::zip(&[("a.zip", &inner), ("b.zip", &inner), ("c.zip", &inner)]);
    let report = tight()
        .inspect(&Submission::file(Some("q.zip".into()), outer))
        .unwrap();
    let dups = report
        .objects
        .iter()
        .filter(|o| matches!(o.outcome, portcullis::Outcome::Duplicate { .. }))
        .count();
    assert_eq!(dups, 2, "{:?}", report.objects);
}

#[test]
fn a_zip_of_many_broken_entries_carries_a_few_findings_not_one_each() {
    // 50 stored entries whose bytes no longer match their CRC.
    let names: Vec<String> = (0..50).map(|i| format!("f{i:02}.txt")).collect();
    let entries: Vec<(&str, zip::CompressionMethod, &[u8])> = names
        .iter()
        .map(|n| {
            (
                n.as_str(),
                zip::CompressionMethod::Stored,
                &b"ORIGINAL-CONTENT"[..],
            )
        })
        .collect();
    let mut zip = portcullis::samples::zip_methods(&entries);
    let mut at = 0;
    while let Some(i) = zip[at..].windows(8).position(|w| w == b"ORIGINAL") {
        zip[at + i] = b'X';
        at += i + 8;
    }
    let report = tight()
        .inspect(&Submission::file(Some("broken.zip".into()), zip))
        .unwrap();
    let unopenable: Vec<&portcullis::model::Finding> = report
        .findings
        .iter()
        .filter(|f| f.kind.name() == "UNOPENABLE")
        .collect();
    assert_eq!(
        unopenable.len(),
        portcullis::pipeline::SAME_KIND_PER_OBJECT,
        "{:?}",
        report.findings
    );
    assert!(
        unopenable[2].description.contains("(and 47 more like it)"),
        "{}",
        unopenable[2].description
    );
}
