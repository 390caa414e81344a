//! The milter codec on arbitrary bytes: splitting a stream into packets and
//! parsing each must never panic, and every reply must encode to a packet
//! that splits back whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::doors::milter::codec::{self, Reply};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Ok(Some((command, body, used))) = codec::split_packet(buf) {
        let _ = codec::parse(command, body);
        buf = &buf[used..];
    }
    let text = String::from_utf8_lossy(data).into_owned();
    for reply in [
        Reply::ReplyCode(text.clone()),
        Reply::AddHeader {
            name: text.clone(),
            value: text.clone(),
        },
        Reply::Quarantine(text),
    ] {
        let packet = codec::encode(&reply);
        let split = codec::split_packet(&packet);
        assert!(matches!(split, Ok(Some((_, _, n))) if n == packet.len()));
    }
});
