//! Any bytes, as mail and as a file, through the whole pipeline with tight
//! limits: must return a report, never panic (a panic is caught and turned
//! into an error by the pipeline, so we assert there was none).

#![no_main]

mod contain;

use libfuzzer_sys::fuzz_target;
use portcullis::config::{Config, Limits};
use portcullis::{Engine, RuleSet, Submission};
use std::sync::OnceLock;
use std::time::Duration;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let config = Config {
            limits: Limits {
                max_depth: 8,
                max_objects: 128,
                max_object_bytes: 4 << 20,
                max_total_bytes: 16 << 20,
                max_ratio: 100,
                ratio_floor_bytes: 256 << 10,
                time_budget: Duration::from_secs(2),
                max_password_candidates: 4,
                password_time: Duration::from_millis(200),
            },
            ..Config::defaults()
        };
        Engine::new(config, RuleSet::bundled().expect("bundled rules"))
    })
}

fuzz_target!(|data: &[u8]| {
    contain::third_party_panics();
    let engine = engine();
    for s in [Submission::mail(data.to_vec()), Submission::file(None, data.to_vec())] {
        let report = engine.inspect(&s).expect("the pipeline must not panic");
        assert!(report.unpacked_bytes <= engine.config.limits.max_total_bytes);
    }
});
