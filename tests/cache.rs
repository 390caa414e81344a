//! The result cache: a second message with the same attachment gets the
//! same answer without the attachment being unpacked and scanned again,
//! and nothing the cache must not keep is kept.

use crate::util::{finding_names, samples};
use portcullis::samples::{attachment, eicar, message, zip, zipcrypto_zip};
use portcullis::{Action, Config, Engine, Report, RuleSet, Submission};
use std::sync::atomic::Ordering::Relaxed;

fn fresh_engine() -> Engine {
    Engine::new(Config::defaults(), RuleSet::bundled().expect("rules"))
}

fn mail(body: &str, name: &str, file: &[u8]) -> Submission {
    Submission::mail(message(
        "Files",
        body,
        &[attachment("application/octet-stream", name, file)],
    ))
}

/// Everything a report says, but for timing.
fn essence(r: &Report) -> String {
    let mut v = serde_json::to_value(r).expect("report serializes");
    v.as_object_mut().expect("object").remove("duration_ms");
    v.to_string()
}

/// A zip worth caching (over `cache.min_object_bytes`) with EICAR inside.
fn big_zip() -> Vec<u8> {
    let filler: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    zip(&[("data.bin", &filler), ("tools/eicar.com", &eicar())])
}

#[test]
fn every_sample_gets_the_same_report_from_the_cache() {
    let engine = fresh_engine();
    let mut inspector = engine.inspector();
    let first: Vec<String> = samples()
        .iter()
        .map(|s| essence(&inspector.inspect(&sample(s)).expect("inspect")))
        .collect();
    let hits_before = engine.cache.hits.load(Relaxed);
    let second: Vec<String> = samples()
        .iter()
        .map(|s| essence(&inspector.inspect(&sample(s)).expect("inspect")))
        .collect();
    let hits = engine.cache.hits.load(Relaxed) - hits_before;
    for ((a, b), s) in first.iter().zip(&second).zip(samples()) {
        assert_eq!(a, b, "{}: the cached report differs", s.name);
    }
    // The samples' attachments come round again: those over
    // `cache.min_object_bytes` (most samples are smaller) must have hit.
    assert!(hits >= 10, "only {hits} cache hits on the second pass");
}

fn sample(s: &portcullis::samples::Sample) -> Submission {
    match s.kind {
        portcullis::model::InputKind::Mail => Submission::mail(s.data.clone()),
        portcullis::model::InputKind::File => {
            Submission::file(Some(s.name.clone()), s.data.clone())
        }
    }
}

#[test]
fn the_same_attachment_under_another_name_is_judged_by_its_new_name() {
    let engine = fresh_engine();
    let z = big_zip();
    let first = engine
        .inspect(&mail("one", "files.zip", &z))
        .expect("inspect");
    assert_eq!(engine.cache.hits.load(Relaxed), 0);
    let second = engine
        .inspect(&mail("two", "invoice.pdf.exe", &z))
        .expect("inspect");
    assert_eq!(
        engine.cache.hits.load(Relaxed),
        1,
        "the zip came from the cache"
    );
    for r in [&first, &second] {
        assert_eq!(r.verdict.action, Action::Reject);
    }
    // The cached subtree is rebased under the new name...
    let eicar_path = |r: &Report| {
        r.findings
            .iter()
            .find(|f| f.kind.name() == "EICAR_Test_File")
            .map(|f| f.path.clone())
            .expect("EICAR found")
    };
    assert_eq!(eicar_path(&first), "message > files.zip > tools/eicar.com");
    assert_eq!(
        eicar_path(&second),
        "message > invoice.pdf.exe > tools/eicar.com"
    );
    let inner = |r: &Report| -> Vec<(String, String, Option<String>)> {
        r.objects
            .iter()
            .filter(|o| o.depth == 2)
            .map(|o| {
                (
                    o.name.clone().unwrap_or_default(),
                    o.true_type.clone(),
                    o.sha256.clone(),
                )
            })
            .collect()
    };
    assert_eq!(inner(&first), inner(&second));
    assert_eq!(first.objects.len(), second.objects.len());
    assert_eq!(first.unpacked_bytes, second.unpacked_bytes);
    // ...and its name is judged afresh: the double extension is this
    // message's, not the cached one's.
    assert!(!finding_names(&first).contains(&"DOUBLE_EXTENSION".to_string()));
    assert!(finding_names(&second).contains(&"DOUBLE_EXTENSION".to_string()));
}

#[test]
fn results_that_depend_on_the_message_or_a_limit_are_not_cached() {
    let engine = fresh_engine();
    // Opened with the password in the first message's body: the next
    // message, without it, must not see the content.
    let filler: Vec<u8> = (0..20_000u32).map(|i| (i * 13 % 253) as u8).collect();
    let locked = zipcrypto_zip(
        &[("filler.bin", &filler), ("eicar.com", &eicar())],
        "Pw-4471",
    );
    let with = engine
        .inspect(&mail("Password: Pw-4471", "locked.zip", &locked))
        .expect("inspect");
    assert!(finding_names(&with).contains(&"DECRYPTED".to_string()));
    assert_eq!(with.verdict.action, Action::Reject);
    let without = engine
        .inspect(&mail("no password here", "locked.zip", &locked))
        .expect("inspect");
    assert!(finding_names(&without).contains(&"ENCRYPTED".to_string()));
    assert!(!finding_names(&without).contains(&"DECRYPTED".to_string()));
    assert_eq!(engine.cache.hits.load(Relaxed), 0);

    // A limit stopped the first look: a message with more room left could
    // see more, so the next one looks again.
    let mut config = Config::defaults();
    config.limits.max_objects = 3;
    let tight = Engine::new(config, RuleSet::bundled().expect("rules"));
    let many: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("f{i}.txt"), vec![b'x'; 5000]))
        .collect();
    let entries: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let z = zip(&entries);
    for _ in 0..2 {
        let r = tight.inspect(&mail("x", "many.zip", &z)).expect("inspect");
        assert!(finding_names(&r).contains(&"LIMIT_OBJECTS".to_string()));
    }
    assert_eq!(tight.cache.hits.load(Relaxed), 0);
    assert_eq!(tight.cache.len(), 0, "nothing under a limit is kept");
}

#[test]
fn a_reload_starts_with_an_empty_cache_and_off_means_off() {
    let engine = fresh_engine();
    let z = big_zip();
    engine
        .inspect(&mail("one", "files.zip", &z))
        .expect("inspect");
    assert!(!engine.cache.is_empty());
    // A reload builds a new engine: the new rules decide afresh.
    let reloaded = fresh_engine();
    assert!(reloaded.cache.is_empty());

    let mut config = Config::defaults();
    config.cache.entries = 0;
    let off = Engine::new(config, RuleSet::bundled().expect("rules"));
    for _ in 0..2 {
        off.inspect(&mail("one", "files.zip", &z)).expect("inspect");
    }
    assert_eq!(off.cache.hits.load(Relaxed), 0);
    assert!(off.cache.is_empty());
}
