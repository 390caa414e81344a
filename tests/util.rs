use portcullis::{Config, Engine, RuleSet};
use std::sync::OnceLock;

/// The bundled rules and default config, compiled once per test binary.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(
            Config::defaults(),
            RuleSet::bundled().expect("bundled rules compile"),
        )
    })
}

/// Every generated sample, built once (the bombs take a moment).
pub fn samples() -> &'static [portcullis::samples::Sample] {
    static SAMPLES: OnceLock<Vec<portcullis::samples::Sample>> = OnceLock::new();
    SAMPLES.get_or_init(portcullis::samples::all)
}

pub fn finding_names(report: &portcullis::Report) -> Vec<String> {
    report.findings.iter().map(|f| f.kind.name()).collect()
}

/// The object with this name, or a panic listing what the report has.
pub fn object<'r>(report: &'r portcullis::Report, name: &str) -> &'r portcullis::Object {
    report
        .objects
        .iter()
        .find(|o| o.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no object named {name}: {:?}", report.objects))
}
