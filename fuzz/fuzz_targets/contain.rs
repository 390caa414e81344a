//! Shared by the `extract` and `pipeline` targets.

/// libFuzzer's hook aborts on every panic, caught or not. Panics inside
/// the cab crate and mail-parser are caught on purpose (`extract::cab`,
/// `extract::mail`: third-party parsers fed attacker bytes; mail-parser
/// has `debug_assert!`s that fire in this build); any other panic is
/// ours, and a bug.
pub fn third_party_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            if info
                .location()
                .is_some_and(|l| l.file().contains("/cab-0.") || l.file().contains("mail-parser"))
            {
                return;
            }
            eprintln!("{info}");
            std::process::abort();
        }));
    });
}
