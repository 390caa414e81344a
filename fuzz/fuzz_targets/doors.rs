//! The doors' own parsing on arbitrary bytes, chosen by the first byte:
//! rspamd's text protocol (first-line sniffing and the request head), the
//! rspamd HTTP headers we interpret (recipient lists, query strings, the
//! envelope built from them), MTA Hooks requests (JSON, and the message
//! rebuilt from them), and the header lookup every door uses for labels.
//! None may panic. (HTTP framing is hyper's; the milter codec has its own
//! target.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::doors;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = doors::rspamc::classify(rest);
            if let Ok(text) = std::str::from_utf8(rest)
                && let Ok(head) = doors::rspamc::parse_head(text)
            {
                assert!(!head.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length")));
            }
        }
        1 => {
            let text = String::from_utf8_lossy(rest);
            let rcpts = doors::rspamd::split_addresses(&text);
            let _ = doors::native::query_pairs(Some(&text));
            let env = doors::envelope(
                Some(text.to_string()),
                rcpts,
                Some(text.to_string()),
                Some(text.to_string()),
                Some(text.to_string()),
            );
            assert!(env.rcpt_to.iter().all(|r| !r.is_empty()));
        }
        2 => {
            if let Ok(r) = serde_json::from_slice::<doors::mta_hooks::HookRequest>(rest)
                && let Some(m) = &r.message
            {
                let raw = m.raw();
                let _ = doors::header_value(&raw, "subject");
            }
        }
        _ => {
            let _ = doors::header_value(rest, "subject");
            let _ = doors::header_value(rest, "message-id");
        }
    }
});
