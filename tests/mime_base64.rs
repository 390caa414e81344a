//! The patched MIME base64 decoder in vendor/mail-parser against the one
//! mail-parser 0.11.9 was released with, on the same bytes: same end
//! offset, same decoded bytes, same position after. See
//! vendor/mail-parser/PORTCULLIS.md.

use base64::Engine;
use mail_parser::portcullis::{decode_base64_mime_original, decode_base64_mime_patched};
use proptest::prelude::*;

/// Both decoders on `body`, from offset 0 and after a header block (as
/// in a message, where offsets and the restore point are not 0).
fn same(body: &[u8], boundary: &[u8]) {
    let mut message = b"Content-Type: application/octet-stream\r\n\r\n".to_vec();
    let start = message.len();
    message.extend_from_slice(body);
    for (data, start) in [(body, 0), (&message[..], start)] {
        let patched = decode_base64_mime_patched(data, start, boundary);
        let original = decode_base64_mime_original(data, start, boundary);
        assert_eq!(
            patched,
            original,
            "input {:?} from {start}, boundary {:?}",
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(boundary)
        );
    }
}

/// A body as a sender would write it: `payload` in lines of `width`,
/// then the closing delimiter.
fn body(payload: &[u8], width: usize, crlf: bool, boundary: &str) -> Vec<u8> {
    let text = base64::engine::general_purpose::STANDARD.encode(payload);
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut out = Vec::new();
    for line in text.as_bytes().chunks(width.max(1)) {
        out.extend_from_slice(line);
        out.extend_from_slice(eol.as_bytes());
    }
    out.extend_from_slice(format!("--{boundary}--{eol}").as_bytes());
    out
}

#[test]
fn well_formed_bodies_of_every_line_width_decode_alike_and_correctly() {
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
    for len in [0, 1, 2, 3, 4, 5, 15, 16, 17, 47, 48, 49, 57, 1000, 3000] {
        for width in [1, 3, 4, 5, 16, 17, 60, 64, 72, 76, 77, 1000] {
            for crlf in [true, false] {
                let data = body(&payload[..len], width, crlf, "b");
                same(&data, b"b");
                same(&data, b"");
                let (_, decoded, _) = decode_base64_mime_patched(&data, 0, b"b");
                assert_eq!(decoded, &payload[..len], "len {len} width {width}");
            }
        }
    }
}

/// Pieces that make the decoder's character loop take each of its paths.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[A-Za-z0-9+/]{0,40}".prop_map(String::into_bytes),
        1 => Just(b"\r\n".to_vec()),
        1 => Just(b"\n".to_vec()),
        1 => Just(b"=".to_vec()),
        1 => Just(b"==".to_vec()),
        1 => Just(b" ".to_vec()),
        1 => Just(b"\t".to_vec()),
        1 => Just(b"-".to_vec()),
        1 => Just(b"\r\n--b\r\n".to_vec()),
        1 => Just(b"\r\n--b--\r\n".to_vec()),
        1 => Just(b"--b".to_vec()),
        1 => Just(b"--x".to_vec()),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn any_mix_of_base64_whitespace_padding_boundaries_and_junk_decodes_alike(
        pieces in proptest::collection::vec(piece(), 0..40),
        boundary in prop_oneof![Just(b"b".to_vec()), Just(Vec::new()), Just(b"bb".to_vec())],
    ) {
        let data: Vec<u8> = pieces.concat();
        same(&data, &boundary);
    }
}
