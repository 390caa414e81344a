//! BinHex 4.0 (`.hqx`, `application/mac-binhex40`, RFC 1741 appendix) decoder,
//! locator and test encoder.
//!
//! Supported: the 6-bit alphabet with any whitespace (space, tab, CR, LF, FF)
//! between characters, the 0x90 run-length scheme (including `0x90 0x00`
//! followed by a run, which repeats 0x90 itself), the header (name, version,
//! type, creator, flags, fork lengths), data and resource forks, and the three
//! CRC-16/XMODEM checksums. A block is located by the
//! `(This file must be converted with BinHex` line, or, failing that, by a line
//! starting with `:` whose header decodes with a correct CRC; as a last resort
//! `decode` accepts text whose first non-blank byte is `:` (a MIME part already
//! labelled mac-binhex40 whose header CRC was damaged).
//!
//! Not supported: BinHex 2.0/3.0 and "compact" (`.hcx`) variants, segmented
//! multi-part postings, Mac Roman name translation (the name is read as lossy
//! UTF-8), and more than the first block of a text (call again on the rest).
//!
//! Hostile-input guards: header fork lengths are never used to allocate; all
//! output (data + resource) stops at the caller's `max_out`, so an RLE bomb
//! (about 85x expansion) costs at most `max_out` bytes; every loop consumes
//! input or emits capped output, so time is O(input + max_out); the locator's
//! header probe reads at most [`PROBE_WINDOW`] bytes per candidate line and
//! stops at the next `:`, so scanning is linear. Wrong CRCs and a missing
//! closing `:` are reported (`crc_ok`, `complete`), not fatal.

// Writers and checks beyond what the gateway calls serve the tests and the
// sample generators (crate::samples).
#![cfg_attr(not(test), allow(dead_code))]

/// The 64 characters of the BinHex 4.0 alphabet, in value order.
const ALPHABET: &[u8; 64] = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";

/// Start of the line that announces a block; the version digits after it vary.
const MARKER: &[u8] = b"(This file must be converted with BinHex";

const RLE_MARK: u8 = 0x90;

/// Names are 1..=63 bytes in every Mac file system BinHex was made for.
const MAX_NAME: usize = 63;

/// How far the marker line's tail (" 4.0)") may run before we give up on it.
const MARKER_TAIL: usize = 64;

/// Bytes of input one candidate `:` line may consume while probing for a header.
pub const PROBE_WINDOW: usize = 4096;

/// Characters per encoded line, counting the leading `:` on the first line.
const LINE_LEN: usize = 64;

const INVALID: u8 = 0xFF;

const DECODE_TABLE: [u8; 256] = build_table();

const fn build_table() -> [u8; 256] {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
}

fn sextet(c: u8) -> Option<u8> {
    match DECODE_TABLE[usize::from(c)] {
        INVALID => None,
        v => Some(v),
    }
}

/// One decoded BinHex file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// File name from the header (lossy UTF-8; Mac Roman is not translated).
    pub name: String,
    /// Data fork (the part other systems see as "the file").
    pub data: Vec<u8>,
    /// Resource fork (Mac code and resources; can carry payloads too).
    pub resource: Vec<u8>,
    /// `max_out` was reached: `data`/`resource` hold only a prefix.
    pub cut: bool,
    /// All three CRCs (header, data, resource) were present and matched.
    pub crc_ok: bool,
    /// The closing `:` was reached and every declared byte and CRC was present.
    pub complete: bool,
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("no BinHex 4.0 block found")]
    NotFound,
    #[error("BinHex header ends early")]
    TruncatedHeader,
    #[error("invalid BinHex character 0x{byte:02x} at offset {offset} inside the header")]
    InvalidChar { offset: usize, byte: u8 },
}

/// CRC-16/XMODEM (poly 0x1021, init 0, no reflection). BinHex describes its CRC
/// as shifting bits in and feeding two zero bytes before comparing; that is
/// the same value as this conventional form.
fn crc_update(crc: u16, byte: u8) -> u16 {
    let mut c = crc ^ (u16::from(byte) << 8);
    for _ in 0..8 {
        c = if c & 0x8000 != 0 {
            (c << 1) ^ 0x1021
        } else {
            c << 1
        };
    }
    c
}

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0, |c, &b| crc_update(c, b))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Closing `:` seen.
    Colon,
    /// End of input (or of the probe window) without `:`.
    Eof,
    BadChar {
        offset: usize,
        byte: u8,
    },
}

/// Decodes the character stream into bytes, undoing 6-bit packing and RLE,
/// one byte at a time so callers can stop at any cap.
struct Stream<'a> {
    text: &'a [u8],
    pos: usize,
    end: usize,
    bits: u32,
    nbits: u32,
    stop: Stop,
    prev: Option<u8>,
    repeat: u8,
}

impl<'a> Stream<'a> {
    fn new(text: &'a [u8], start: usize, end: usize) -> Self {
        Stream {
            text,
            pos: start,
            end: end.min(text.len()),
            bits: 0,
            nbits: 0,
            stop: Stop::Running,
            prev: None,
            repeat: 0,
        }
    }

    /// Next byte of the 8-bit stream before RLE expansion.
    fn raw(&mut self) -> Option<u8> {
        loop {
            if self.nbits >= 8 {
                self.nbits -= 8;
                let b = (self.bits >> self.nbits) as u8;
                self.bits &= (1 << self.nbits) - 1;
                return Some(b);
            }
            if self.stop != Stop::Running {
                return None;
            }
            if self.pos >= self.end {
                self.stop = Stop::Eof;
                return None;
            }
            let Some(&c) = self.text.get(self.pos) else {
                self.stop = Stop::Eof;
                return None;
            };
            let offset = self.pos;
            self.pos += 1;
            if c.is_ascii_whitespace() {
                continue;
            }
            if c == b':' {
                self.stop = Stop::Colon;
                continue;
            }
            match sextet(c) {
                Some(v) => {
                    // At most 7 bits are left over before adding 6, so this fits.
                    self.bits = (self.bits << 6) | u32::from(v);
                    self.nbits += 6;
                }
                None => self.stop = Stop::BadChar { offset, byte: c },
            }
        }
    }

    /// Next byte after RLE expansion.
    fn next(&mut self) -> Option<u8> {
        loop {
            if self.repeat > 0 {
                self.repeat -= 1;
                return self.prev;
            }
            let b = self.raw()?;
            if b != RLE_MARK {
                self.prev = Some(b);
                return Some(b);
            }
            // A marker cut off by the end of the stream is simply dropped.
            let n = self.raw()?;
            if n == 0 {
                self.prev = Some(RLE_MARK);
                return Some(RLE_MARK);
            }
            // The count includes the byte already emitted; with nothing emitted
            // yet there is nothing to repeat, so the marker is ignored.
            if self.prev.is_some() {
                self.repeat = n - 1;
            }
        }
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        for slot in out.iter_mut() {
            *slot = self.next()?;
        }
        Some(out)
    }

    /// Consumes the rest of the block so we learn whether `:` closes it.
    fn drain(&mut self) {
        while self.raw().is_some() {}
    }
}

struct Header {
    name: Vec<u8>,
    data_len: u32,
    rsrc_len: u32,
    crc_ok: bool,
}

fn read_header(s: &mut Stream<'_>) -> Option<Header> {
    let name_len = s.next()?;
    let mut crc = crc_update(0, name_len);
    let mut name = Vec::with_capacity(usize::from(name_len));
    for _ in 0..name_len {
        let b = s.next()?;
        crc = crc_update(crc, b);
        name.push(b);
    }
    // version(1) type(4) creator(4) flags(2) data length(4) resource length(4)
    let rest: [u8; 19] = s.take()?;
    crc = rest.iter().fold(crc, |c, &b| crc_update(c, b));
    let stored: [u8; 2] = s.take()?;
    let [
        _,
        _,
        _,
        _,
        _,
        _,
        _,
        _,
        _,
        _,
        _,
        d0,
        d1,
        d2,
        d3,
        r0,
        r1,
        r2,
        r3,
    ] = rest;
    Some(Header {
        name,
        data_len: u32::from_be_bytes([d0, d1, d2, d3]),
        rsrc_len: u32::from_be_bytes([r0, r1, r2, r3]),
        crc_ok: u16::from_be_bytes(stored) == crc,
    })
}

struct Fork {
    /// All declared bytes and the CRC were read.
    full: bool,
    crc_ok: bool,
    cut: bool,
}

fn read_fork(s: &mut Stream<'_>, len: u32, budget: &mut usize, out: &mut Vec<u8>) -> Fork {
    let mut crc = 0u16;
    for _ in 0..len {
        if *budget == 0 {
            return Fork {
                full: false,
                crc_ok: false,
                cut: true,
            };
        }
        let Some(b) = s.next() else {
            return Fork {
                full: false,
                crc_ok: false,
                cut: false,
            };
        };
        out.push(b);
        crc = crc_update(crc, b);
        *budget -= 1;
    }
    match s.take::<2>() {
        Some(stored) => Fork {
            full: true,
            crc_ok: u16::from_be_bytes(stored) == crc,
            cut: false,
        },
        None => Fork {
            full: false,
            crc_ok: false,
            cut: false,
        },
    }
}

/// Offset of the opening `:` belonging to a marker that ends at `after`:
/// the rest of the marker line (up to `)`), then only whitespace, then `:`.
fn colon_after_marker(text: &[u8], after: usize) -> Option<usize> {
    let mut i = after;
    let limit = after.saturating_add(MARKER_TAIL);
    while let Some(&c) = text.get(i) {
        if c == b')' || c == b'\n' {
            i += 1;
            break;
        }
        if i >= limit {
            return None;
        }
        i += 1;
    }
    while let Some(&c) = text.get(i) {
        if c == b':' {
            return Some(i);
        }
        if !c.is_ascii_whitespace() {
            return None;
        }
        i += 1;
    }
    None
}

/// Whether a `:` at `colon` opens a block with a sane header and correct CRC.
fn probe_header(text: &[u8], colon: usize) -> bool {
    let start = colon.saturating_add(1);
    let mut s = Stream::new(text, start, start.saturating_add(PROBE_WINDOW));
    match read_header(&mut s) {
        Some(h) => h.crc_ok && (1..=MAX_NAME).contains(&h.name.len()),
        None => false,
    }
}

/// (reported offset, offset of the opening `:`)
fn locate(text: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    // Every text body is searched: jump between '(' rather than compare
    // the marker at every offset.
    while let Some(rel) = memchr::memchr(MARKER[0], text.get(from..)?) {
        let at = from + rel;
        if !text
            .get(at..at + MARKER.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(MARKER))
        {
            from = at + 1;
            continue;
        }
        if let Some(colon) = colon_after_marker(text, at + MARKER.len()) {
            return Some((at, colon));
        }
        from = at + MARKER.len();
    }
    let mut line_start = 0;
    while line_start < text.len() {
        let mut i = line_start;
        while matches!(text.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        if text.get(i) == Some(&b':') && probe_header(text, i) {
            return Some((i, i));
        }
        line_start = match text.get(i..).and_then(|t| memchr::memchr(b'\n', t)) {
            Some(p) => i + p + 1,
            None => break,
        };
    }
    None
}

/// Byte offset of the first BinHex block (the "(This file must be converted with BinHex" line, or failing that a line starting with ':' that decodes as a BinHex header).
pub fn find(text: &[u8]) -> Option<usize> {
    locate(text).map(|(at, _)| at)
}

/// Decodes the first block at or after `find`. The run-length encoding (0x90) can expand ~85x, so `max_out` caps data+resource together.
pub fn decode(text: &[u8], max_out: usize) -> Result<Decoded, Error> {
    let colon = match locate(text) {
        Some((_, colon)) => colon,
        None => text
            .iter()
            .position(|c| !c.is_ascii_whitespace())
            .filter(|&i| text.get(i) == Some(&b':'))
            .ok_or(Error::NotFound)?,
    };
    let mut s = Stream::new(text, colon.saturating_add(1), text.len());
    let header = match read_header(&mut s) {
        Some(h) => h,
        None => {
            return Err(match s.stop {
                Stop::BadChar { offset, byte } => Error::InvalidChar { offset, byte },
                _ => Error::TruncatedHeader,
            });
        }
    };
    let mut budget = max_out;
    let mut data = Vec::new();
    let mut resource = Vec::new();
    let d = read_fork(&mut s, header.data_len, &mut budget, &mut data);
    let r = if d.full {
        read_fork(&mut s, header.rsrc_len, &mut budget, &mut resource)
    } else {
        Fork {
            full: false,
            crc_ok: false,
            cut: false,
        }
    };
    let cut = d.cut || r.cut;
    if !cut {
        s.drain();
    }
    Ok(Decoded {
        name: String::from_utf8_lossy(&header.name).into_owned(),
        data,
        resource,
        cut,
        crc_ok: header.crc_ok && d.crc_ok && r.crc_ok,
        complete: !cut && d.full && r.full && s.stop == Stop::Colon,
    })
}

/// The 8-bit stream BinHex encodes: header, data fork, resource fork, each
/// followed by its CRC. Forks over 4 GiB are cut to fit the u32 length fields.
fn raw_stream(name: &str, data: &[u8], resource: &[u8]) -> Vec<u8> {
    let name = if name.is_empty() { "untitled" } else { name };
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let name_bytes = name.as_bytes().get(..end).unwrap_or(b"untitled");
    let data = data.get(..data.len().min(u32::MAX as usize)).unwrap_or(&[]);
    let resource = resource
        .get(..resource.len().min(u32::MAX as usize))
        .unwrap_or(&[]);

    let mut raw = Vec::with_capacity(name_bytes.len() + data.len() + resource.len() + 32);
    raw.push(name_bytes.len() as u8);
    raw.extend_from_slice(name_bytes);
    raw.push(0); // version
    raw.extend_from_slice(b"????"); // type: unknown
    raw.extend_from_slice(b"????"); // creator: unknown
    raw.extend_from_slice(&[0, 0]); // Finder flags
    raw.extend_from_slice(&(data.len() as u32).to_be_bytes());
    raw.extend_from_slice(&(resource.len() as u32).to_be_bytes());
    let hcrc = crc16(&raw);
    raw.extend_from_slice(&hcrc.to_be_bytes());
    raw.extend_from_slice(data);
    raw.extend_from_slice(&crc16(data).to_be_bytes());
    raw.extend_from_slice(resource);
    raw.extend_from_slice(&crc16(resource).to_be_bytes());
    raw
}

fn rle_compress(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 8 + 4);
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let mut run = 1usize;
        while run < 255 && raw.get(i + run) == Some(&b) {
            run += 1;
        }
        let literal = |out: &mut Vec<u8>| {
            out.push(b);
            if b == RLE_MARK {
                out.push(0);
            }
        };
        literal(&mut out);
        if run >= 3 {
            out.push(RLE_MARK);
            out.push(run as u8);
        } else {
            for _ in 1..run {
                literal(&mut out);
            }
        }
        i += run;
    }
    out
}

/// Packs an 8-bit stream into the text form: marker line, `:`, 64-column
/// lines, closing `:` (never alone on a line).
fn wrap(stream: &[u8]) -> Vec<u8> {
    let mut chars = Vec::with_capacity(stream.len() / 3 * 4 + 4);
    for chunk in stream.chunks(3) {
        let (a, b, c) = match *chunk {
            [a, b, c] => (a, b, c),
            [a, b] => (a, b, 0),
            [a] => (a, 0, 0),
            _ => continue,
        };
        let group = (u32::from(a) << 16) | (u32::from(b) << 8) | u32::from(c);
        let count = chunk.len() + 1;
        for k in 0..count {
            let v = (group >> (18 - 6 * k)) & 0x3F;
            chars.push(ALPHABET.get(v as usize).copied().unwrap_or(b'!'));
        }
    }
    let mut out = Vec::with_capacity(chars.len() + chars.len() / LINE_LEN * 2 + 64);
    out.extend_from_slice(b"(This file must be converted with BinHex 4.0)\r\n\r\n:");
    let mut col = 1;
    for &c in &chars {
        if col == LINE_LEN {
            out.extend_from_slice(b"\r\n");
            col = 0;
        }
        out.push(c);
        col += 1;
    }
    out.extend_from_slice(b":\r\n");
    out
}

/// Deterministic BinHex 4.0 text for `name`, `data` and `resource`, with RLE
/// for runs, 64-character lines, correct CRCs, type/creator `????`. An empty
/// name becomes `untitled`; names are cut to 63 bytes.
pub fn encode(name: &str, data: &[u8], resource: &[u8]) -> Vec<u8> {
    wrap(&rle_compress(&raw_stream(name, data, resource)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::extract::XorShift;

    fn sample() -> Vec<u8> {
        let mut data = b"MZ\x90\x00\x03 payload ".to_vec();
        data.extend(std::iter::repeat_n(0u8, 300));
        data.extend((0..=255u8).cycle().take(700));
        data.extend([0x90, 0x90, 0x90, 0x41, 0x90, 0x00, 0x90]);
        encode("evil.exe", &data, b"rsrc\x90\x90\x90\x90\x90 fork")
    }

    #[test]
    fn crc_matches_xmodem_check_value_and_spec_shift_in_form() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        // The form described for BinHex: shift each message bit in from the
        // right, xor 0x1021 when a 1 falls out, then feed two zero bytes.
        fn shift_in(msg: &[u8]) -> u16 {
            let mut crc: u16 = 0;
            for &byte in msg.iter().chain([0u8, 0].iter()) {
                for bit in (0..8).rev() {
                    let out = crc & 0x8000 != 0;
                    crc = (crc << 1) | u16::from((byte >> bit) & 1);
                    if out {
                        crc ^= 0x1021;
                    }
                }
            }
            crc
        }
        for msg in [&b""[..], b"a", b"123456789", b"\x90\x00\xff\x12\x34"] {
            assert_eq!(shift_in(msg), crc16(msg), "{msg:?}");
        }
    }

    #[test]
    fn round_trip_small() {
        let text = encode("hello.txt", b"Hello, world!\n", b"");
        let d = decode(&text, 1 << 20).unwrap();
        assert_eq!(d.name, "hello.txt");
        assert_eq!(d.data, b"Hello, world!\n");
        assert!(d.resource.is_empty());
        assert!(d.crc_ok && d.complete && !d.cut);
        assert_eq!(find(&text), Some(0));
    }

    #[test]
    fn round_trip_long_run_and_0x90_bytes() {
        let mut data = vec![0x41u8; 10_000];
        data.extend([0x90, 1, 0x90, 0x90, 2, 0x90, 0x90, 0x90, 0x90, 0x90]);
        data.extend(vec![0x90u8; 600]);
        data.extend([0x90, 0x00, 0x90, 0x03]);
        let resource: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 251) as u8).collect();
        let text = encode("run.bin", &data, &resource);
        // RLE must actually be used: 10 000 equal bytes would be ~13 KB plain.
        assert!(text.len() < 4_500, "encoded {} bytes", text.len());
        let d = decode(&text, 1 << 20).unwrap();
        assert_eq!(d.data, data);
        assert_eq!(d.resource, resource);
        assert!(d.crc_ok && d.complete && !d.cut);
    }

    #[test]
    fn rle_literal_0x90_then_run_repeats_0x90() {
        // 20 90 00 90 03 => 0x20 then three 0x90 (the 0x90 is the previous byte).
        let raw = [0x20u8, 0x90, 0x00, 0x90, 0x03, 0x41, 0x90, 0x01, 0x42];
        let text = wrap(&raw);
        let colon = text.iter().position(|&c| c == b':').unwrap();
        let mut s = Stream::new(&text, colon + 1, text.len());
        let mut out = Vec::new();
        while let Some(b) = s.next() {
            out.push(b);
        }
        assert_eq!(out, [0x20, 0x90, 0x90, 0x90, 0x41, 0x42]);
        assert_eq!(s.stop, Stop::Colon);
    }

    #[test]
    fn encoded_layout_lines_and_marker() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 256) as u8).collect();
        let text = encode("layout", &data, b"");
        let s = std::str::from_utf8(&text).unwrap();
        let mut lines = s.split("\r\n");
        assert_eq!(
            lines.next(),
            Some("(This file must be converted with BinHex 4.0)")
        );
        assert_eq!(lines.next(), Some(""));
        let body: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
        assert!(body.first().unwrap().starts_with(':'));
        let last = body.len() - 1;
        for (i, l) in body.iter().enumerate() {
            if i < last {
                assert_eq!(l.len(), 64, "line {i}");
            } else {
                assert!(l.ends_with(':') && l.len() <= 65 && l.len() > 1);
            }
        }
    }

    #[test]
    fn empty_name_and_long_name() {
        let d = decode(&encode("", b"x", b""), 100).unwrap();
        assert_eq!(d.name, "untitled");
        let long = "é".repeat(40); // 80 bytes: cut at a char boundary <= 63
        let d = decode(&encode(&long, b"x", b""), 100).unwrap();
        assert_eq!(d.name, "é".repeat(31));
        assert!(d.crc_ok);
    }

    #[test]
    fn crc_mismatch_still_returns_bytes() {
        let mut raw = raw_stream("a.bin", b"abcdef", b"R");
        // Flip the data fork's stored CRC (right after the 6 data bytes).
        let hdr = 1 + 5 + 19 + 2;
        raw[hdr + 6] ^= 0x55;
        let d = decode(&wrap(&rle_compress(&raw)), 100).unwrap();
        assert_eq!(d.data, b"abcdef");
        assert_eq!(d.resource, b"R");
        assert!(!d.crc_ok && d.complete);

        let mut raw = raw_stream("a.bin", b"abcdef", b"R");
        raw[hdr - 1] ^= 1; // header CRC
        let d = decode(&wrap(&raw), 100).unwrap();
        assert_eq!(d.data, b"abcdef");
        assert!(!d.crc_ok && d.complete);
    }

    #[test]
    fn text_before_and_after_block() {
        let mut mail =
            b"From: someone\r\nSubject: see attached: it is a Mac file\r\n\r\n:-) hi\r\n".to_vec();
        let at = mail.len();
        mail.extend(encode("doc", b"DATA", b"RES"));
        mail.extend(b"\r\n-- \r\nsignature: with colons : here\r\n");
        assert_eq!(find(&mail), Some(at));
        let d = decode(&mail, 100).unwrap();
        assert_eq!(
            (d.data.as_slice(), d.resource.as_slice()),
            (&b"DATA"[..], &b"RES"[..])
        );
        assert!(d.crc_ok && d.complete);
    }

    #[test]
    fn line_endings_and_stray_whitespace() {
        let text = sample();
        let want = decode(&text, 1 << 20).unwrap();
        assert!(want.crc_ok && want.complete);
        let lf: Vec<u8> = text.iter().copied().filter(|&c| c != b'\r').collect();
        let cr: Vec<u8> = lf
            .iter()
            .map(|&c| if c == b'\n' { b'\r' } else { c })
            .collect();
        let mut spaced = Vec::new();
        for (i, &c) in lf.iter().enumerate() {
            spaced.push(c);
            if i > 60 && i % 17 == 0 {
                spaced.extend(b" \t");
            }
        }
        for variant in [lf, cr, spaced] {
            assert_eq!(decode(&variant, 1 << 20).unwrap(), want);
        }
    }

    #[test]
    fn marker_on_same_line_and_case_insensitive() {
        let text = encode("x", b"same line", b"");
        let s = String::from_utf8(text).unwrap();
        let joined = s.replacen("4.0)\r\n\r\n:", "4.0):", 1).to_lowercase();
        // Lower-casing breaks the encoded body, so only the marker is tested
        // that way; the body comes from the original.
        let body = s.split_once(':').unwrap().1;
        let marker = joined.split_once(':').unwrap().0;
        let text = format!("{marker}:{body}");
        let d = decode(text.as_bytes(), 100).unwrap();
        assert_eq!(d.data, b"same line");
        assert_eq!(find(text.as_bytes()), Some(0));
    }

    #[test]
    fn fallback_find_without_marker_line() {
        let text = encode("nomark", b"no marker here", b"");
        let s = String::from_utf8(text).unwrap();
        let body = &s[s.find(':').unwrap()..];
        let mail = format!("Hi,\n:-) smiley line\n:abc\n  {body}");
        let at = mail.find("  :").unwrap() + 2;
        assert_eq!(find(mail.as_bytes()), Some(at));
        assert_eq!(
            decode(mail.as_bytes(), 100).unwrap().data,
            b"no marker here"
        );
    }

    #[test]
    fn not_found_and_broken_headers() {
        assert_eq!(find(b"plain text\n:-) nothing"), None);
        assert_eq!(decode(b"plain text", 10), Err(Error::NotFound));
        assert_eq!(decode(b"", 10), Err(Error::NotFound));
        let marker = b"(This file must be converted with BinHex 4.0)\n";
        let mut t = marker.to_vec();
        t.extend(b":!!!!:");
        assert_eq!(decode(&t, 10), Err(Error::TruncatedHeader));
        let mut t = marker.to_vec();
        t.extend(b":$f*Tg");
        assert!(matches!(
            decode(&t, 10),
            Err(Error::InvalidChar { byte: b'g', .. })
        ));
        // Marker without a following ':' line is not a block.
        assert_eq!(
            find(b"(This file must be converted with BinHex 4.0)\nhello"),
            None
        );
    }

    #[test]
    fn damaged_header_crc_found_by_leading_colon() {
        let mut raw = raw_stream("z", b"payload", b"");
        raw[3] ^= 0xFF; // inside type: header CRC now wrong
        let text = wrap(&raw);
        let s = String::from_utf8(text).unwrap();
        let body = &s[s.find(':').unwrap()..];
        assert_eq!(find(body.as_bytes()), None);
        let d = decode(body.as_bytes(), 100).unwrap();
        assert_eq!(d.data, b"payload");
        assert!(!d.crc_ok);
    }

    #[test]
    fn missing_end_colon() {
        let text = encode("e", b"end is missing", b"rr");
        let s = String::from_utf8(text).unwrap();
        let cut = s.trim_end().trim_end_matches(':');
        let d = decode(cut.as_bytes(), 100).unwrap();
        assert_eq!(d.data, b"end is missing");
        assert_eq!(d.resource, b"rr");
        assert!(d.crc_ok && !d.complete && !d.cut);
    }

    #[test]
    fn invalid_char_after_header_ends_block() {
        let data: Vec<u8> = (0..200u32).map(|i| (i * 13) as u8).collect();
        let text = encode("e", &data, b"");
        let mut s = String::from_utf8(text).unwrap();
        let pos = s.find(':').unwrap() + 40;
        s.insert(pos, '~');
        let d = decode(s.as_bytes(), 1000).unwrap();
        assert!(!d.complete && !d.crc_ok);
        assert!(d.data.len() < 200);
    }

    #[test]
    fn rle_bomb_is_capped_by_max_out() {
        let mut raw = raw_stream("bomb", b"", b"");
        // Declare a 4 GiB data fork, then 20 000 runs of 255 bytes (~5 MB).
        let hdr_len = 1 + 4 + 19;
        raw.truncate(hdr_len);
        raw[hdr_len - 8..hdr_len - 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let c = crc16(&raw);
        raw.extend(c.to_be_bytes());
        raw.push(b'A');
        for _ in 0..20_000 {
            raw.extend([RLE_MARK, 255]);
        }
        let text = wrap(&raw);
        assert!(text.len() < 60_000);
        let d = decode(&text, 10_000).unwrap();
        assert_eq!(d.data.len(), 10_000);
        assert!(d.data.iter().all(|&b| b == b'A'));
        assert!(d.cut && !d.complete && !d.crc_ok);
        assert!(d.data.capacity() <= 2 * 10_000 + 64);

        let d = decode(&text, 0).unwrap();
        assert!(d.data.is_empty() && d.cut);
    }

    #[test]
    fn lying_lengths_do_not_allocate() {
        let mut raw = raw_stream("liar", b"", b"");
        let hdr_len = 1 + 4 + 19;
        raw.truncate(hdr_len);
        raw[hdr_len - 8..hdr_len].copy_from_slice(&[0xFF; 8]);
        let c = crc16(&raw);
        raw.extend(c.to_be_bytes());
        raw.extend(b"short");
        let d = decode(&wrap(&raw), usize::MAX).unwrap();
        assert_eq!(d.data, b"short");
        assert!(d.data.capacity() < 1024);
        assert!(!d.complete && !d.cut && !d.crc_ok);
    }

    #[test]
    fn marker_without_colon_many_times_is_linear() {
        let mut t = Vec::new();
        for _ in 0..20_000 {
            t.extend(MARKER);
        }
        t.extend(b" 4.0)\n");
        assert_eq!(find(&t), None);
        let mut t = Vec::new();
        for _ in 0..50_000 {
            t.extend(b":\n");
        }
        assert_eq!(find(&t), None);
    }

    #[test]
    fn hostile_truncation_at_every_offset() {
        let text = sample();
        assert!(text.len() < 20_000);
        let full = decode(&text, 1 << 20).unwrap();
        for n in 0..=text.len() {
            if let Ok(d) = decode(&text[..n], 1 << 20) {
                // Whatever is returned is a prefix of the real content.
                assert!(full.data.starts_with(&d.data), "at {n}");
                assert!(full.resource.starts_with(&d.resource), "at {n}");
                if n + 2 < text.len() {
                    assert!(!d.complete, "complete at {n}");
                }
            }
            let _ = find(&text[..n]);
        }
    }

    #[test]
    fn hostile_random_mutations() {
        let base = sample();
        let plain = encode("p", &[0x90; 3000], &[1, 2, 3]);
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let cap = 2_000;
        for iter in 0..3000 {
            let mut t = if iter % 2 == 0 {
                base.clone()
            } else {
                plain.clone()
            };
            let flips = 1 + rng.below(16);
            for _ in 0..flips {
                let i = rng.below(t.len());
                t[i] = match rng.below(3) {
                    0 => rng.next() as u8,
                    1 => ALPHABET[rng.below(64)],
                    _ => b':',
                };
            }
            if let Ok(d) = decode(&t, cap) {
                assert!(d.data.len() + d.resource.len() <= cap, "iter {iter}");
            }
            let _ = find(&t);
        }
    }
}
