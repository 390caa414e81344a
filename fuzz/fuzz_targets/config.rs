//! The config loader on arbitrary text: any TOML, valid or not, gives a
//! config or a clear error, never a panic (durations, addresses, CIDRs,
//! roles, secrets and the S3 settings are all parsed from it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = portcullis::config::Config::from_toml(text);
    }
});
