//! The `rules/` directory, embedded at build time (see build.rs) so the
//! binary runs on its bundled rules from anywhere.

include!(concat!(env!("OUT_DIR"), "/bundled_rules.rs"));
