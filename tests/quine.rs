//! A true zip quine: `r.zip`, one deflated entry whose content is, byte for
//! byte, the whole zip file itself (the construction Russ Cox described in
//! "Zip Files All The Way Down", 2010; this code is written from that
//! description, not copied).
//!
//! The file is `P D S`:
//! - `P`: the local file header and the name `r.zip`;
//! - `D`: the entry's DEFLATE stream;
//! - `S`: the central directory and the end-of-central-directory record.
//!
//! `D` has to inflate to `P D S`. Inflating is running a tiny LZ77 program
//! with two instructions, `lit(n)` (the next `n` bytes of the program are
//! output as they are: a stored block) and `rep(d)` (copy the last `d`
//! output bytes once more: a fixed-Huffman block with a back-reference of
//! length `d` and distance `d`). A program that prints `P`, itself, and
//! then `S` is a Lempel-Ziv quine; it only works if every opcode is the
//! same number of bytes wherever it appears, so here each one is exactly
//! `W` bytes (see [`opcode`]).
//!
//! The CRC-32 of the entry (in `P` and in `S`, so also inside `D`, four
//! places in all) is then the CRC-32 of the whole file, which contains it.
//! CRC-32 of a fixed-length message is affine over GF(2) in the message
//! bits, so `crc(file(c))` is `crc(file(0)) ^ M·c` for a 32x32 bit matrix
//! `M`, and the fixpoint `c = crc(file(c))` is a 32-unknown linear system.

use std::io::Read;

/// The entry's name: the file contains itself under the name it is
/// usually given.
const NAME: &[u8] = b"r.zip";

/// Bytes per opcode. With five (a bare stored-block header, as in Cox's
/// article) `rep(p + 5)` and `rep(s + 5)` for this file's 35-byte `P` and
/// 73-byte `S` cannot be coded in exactly 40 bits, and DEFLATE has no
/// no-op code to pad with; ten bytes leave room to pad with empty blocks
/// (see [`opcode`]).
const W: usize = 10;

/// The fixed part of an opcode must end within these bits (inclusive) so
/// that a stored-block header (3 bits) plus its padding to a byte boundary
/// ends exactly at bit 48: 6 bytes, then LEN and NLEN make `W` = 10.
const FIXED_BITS: std::ops::RangeInclusive<usize> = 38..=45;

const LOCAL_HEADER: usize = 30;
const CENTRAL_HEADER: usize = 46;
const END_RECORD: usize = 22;

/// DOS date of the entry: 2010-03-01 (the month Cox's article appeared).
const DOS_DATE: u16 = ((2010 - 1980) << 9) | (3 << 5) | 1;

/// DEFLATE bits, least significant first, as RFC 1951 section 3.1.1 packs
/// them.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    len: usize,
}

impl Bits {
    /// `n` bits of `value`, least significant first (header fields, extra
    /// bits).
    fn put(&mut self, value: u32, n: u32) {
        for i in 0..n {
            if self.len.is_multiple_of(8) {
                self.out.push(0);
            }
            let bit = ((value >> i) & 1) as u8;
            *self.out.last_mut().unwrap() |= bit << (self.len % 8);
            self.len += 1;
        }
    }

    /// A Huffman code of `n` bits, most significant first.
    fn code(&mut self, code: u32, n: u32) {
        for i in (0..n).rev() {
            self.put(code >> i, 1);
        }
    }

    fn align(&mut self) {
        while !self.len.is_multiple_of(8) {
            self.put(0, 1);
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        assert!(self.len.is_multiple_of(8));
        self.out.extend_from_slice(bytes);
        self.len += 8 * bytes.len();
    }
}

/// A literal/length symbol in the fixed Huffman code (RFC 1951 3.2.6);
/// only the end-of-block and length symbols are ever needed here.
fn fixed_symbol(bits: &mut Bits, symbol: u32) {
    match symbol {
        256..=279 => bits.code(symbol - 256, 7),
        280..=287 => bits.code(0xC0 + symbol - 280, 8),
        _ => unreachable!("no literals are Huffman-coded in the quine"),
    }
}

/// Code index, base and extra-bit count for `value` in a DEFLATE
/// length or distance table.
fn bucket(value: usize, base: &[usize], extra: &[u32]) -> (u32, usize, u32) {
    let i = base.iter().rposition(|&b| b <= value).unwrap();
    assert!(value < base[i] + (1 << extra[i]), "{value} out of range");
    (i as u32, base[i], extra[i])
}

/// A back-reference: copy `len` bytes from `dist` back.
fn back_reference(bits: &mut Bits, len: usize, dist: usize) {
    const LEN_BASE: [usize; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const LEN_EXTRA: [u32; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DIST_BASE: [usize; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
        2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    const DIST_EXTRA: [u32; 30] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
        13, 13,
    ];
    let (code, base, extra) = bucket(len, &LEN_BASE, &LEN_EXTRA);
    fixed_symbol(bits, 257 + code);
    bits.put((len - base) as u32, extra);
    let (code, base, extra) = bucket(dist, &DIST_BASE, &DIST_EXTRA);
    bits.code(code, 5); // fixed distance codes are plain 5-bit numbers
    bits.put((dist - base) as u32, extra);
}

/// One opcode of the LZ77 program, always exactly `W` bytes and starting
/// and ending on a byte boundary, so the same bytes mean the same thing
/// wherever they sit (as code or as data inside a `lit`):
///
/// - `copy`: a fixed-Huffman block (BTYPE 01) holding one back-reference
///   of length and distance `d`, i.e. `rep(d)`;
/// - then empty fixed-Huffman blocks (header and end-of-block, 10 bits
///   each, output nothing) until the bit count is in [`FIXED_BITS`]: the
///   padding DEFLATE otherwise lacks;
/// - then a stored block (BTYPE 00) announcing `literal` bytes: for
///   `lit(n)` those are the `n` bytes that follow the opcode; for `rep`
///   it is empty.
///
/// `last` sets BFINAL on the closing stored block (the program's last
/// opcode only).
fn opcode(copy: Option<usize>, literal: u16, last: bool) -> Vec<u8> {
    let mut bits = Bits::default();
    let fixed_header = |bits: &mut Bits| {
        bits.put(0, 1); // BFINAL
        bits.put(1, 2); // BTYPE 01: fixed Huffman codes
    };
    if let Some(d) = copy {
        fixed_header(&mut bits);
        back_reference(&mut bits, d, d);
        fixed_symbol(&mut bits, 256);
    }
    while bits.len < *FIXED_BITS.start() {
        fixed_header(&mut bits);
        fixed_symbol(&mut bits, 256);
    }
    assert!(FIXED_BITS.contains(&bits.len), "rep({copy:?}) does not fit");
    bits.put(u32::from(last), 1); // BFINAL
    bits.put(0, 2); // BTYPE 00: stored
    bits.align();
    bits.bytes(&literal.to_le_bytes());
    bits.bytes(&(!literal).to_le_bytes());
    assert_eq!(bits.out.len(), W);
    bits.out
}

fn lit(n: usize) -> Vec<u8> {
    opcode(None, u16::try_from(n).unwrap(), false)
}

fn rep(d: usize) -> Vec<u8> {
    opcode(Some(d), 0, false)
}

/// The self-reproducing program: inflates to `p D s` where `D` is what it
/// returns. Below, `C` is the code emitted so far and `O` the output so
/// far; the invariant chased is that `O` is a prefix of `P C S`
/// (`O` "lags" `P C` by some opcodes) or `P C` is a prefix of `O` (it
/// "leads"), and the last opcode leaves `O == P C S`.
fn program(p: &[u8], s: &[u8]) -> Vec<u8> {
    let l_p = lit(p.len() + W); // prints P and itself
    let r_p = rep(p.len() + W);
    let l_1 = lit(W);
    let l_4 = lit(4 * W);
    let r_4 = rep(4 * W);
    let l_0 = lit(0);
    let l_s = lit(s.len() + W); // prints its rep and S
    let r_s = opcode(Some(s.len() + W), 0, true); // the final block
    [
        // Head. Out: P l_p. Lag: P l_p.
        &l_p[..],
        p,
        &l_p,
        // Out: P l_p again (the copy of the last 45 bytes). Lag: r_p.
        &r_p,
        // Out: r_p. Lag: l_1 r_p.
        &l_1,
        &r_p,
        // Out: l_1. Lag: r_p l_1 l_1.
        &l_1,
        &l_1,
        // Out: r_p l_1 l_1 l_4. Lag: the same four opcodes.
        &l_4,
        &r_p,
        &l_1,
        &l_1,
        &l_4,
        // Out: those four again. Lag: r_4. (Each opcode is W bytes, so the
        // lag is now exactly one opcode and the middle can be uniform.)
        &r_4,
        // Middle. Out: r_4 l_4 r_4 l_4. Lag: r_4 l_4.
        &l_4,
        &r_4,
        &l_4,
        &r_4,
        &l_4,
        // Out: r_4 l_4 r_4 l_4 again. Lead: l_4 (so the next op is l_4).
        &r_4,
        // Out: r_4 l_0 l_0 l_s. O == P C exactly.
        &l_4,
        &r_4,
        &l_0,
        &l_0,
        &l_s,
        // Out: r_4 l_0 l_0 l_s again. Lead: l_0 l_0 l_s.
        &r_4,
        // Print nothing, catching the code up. Lead: l_s.
        &l_0,
        &l_0,
        // Tail. Out: r_s S. O == P C exactly.
        &l_s,
        &r_s,
        s,
        // Out: r_s S again: O == P C S.
        &r_s,
    ]
    .concat()
}

fn local_header(crc: u32, deflated: usize, total: usize, time: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(LOCAL_HEADER + NAME.len());
    h.extend_from_slice(b"PK\x03\x04");
    h.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0 (deflate)
    h.extend_from_slice(&0u16.to_le_bytes()); // flags: no data descriptor
    h.extend_from_slice(&8u16.to_le_bytes()); // method: deflate
    h.extend_from_slice(&time.to_le_bytes());
    h.extend_from_slice(&DOS_DATE.to_le_bytes());
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&(deflated as u32).to_le_bytes());
    h.extend_from_slice(&(total as u32).to_le_bytes());
    h.extend_from_slice(&(NAME.len() as u16).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // extra field length
    h.extend_from_slice(NAME);
    h
}

fn central_directory(crc: u32, deflated: usize, total: usize, time: u16) -> Vec<u8> {
    let mut c = Vec::with_capacity(CENTRAL_HEADER + NAME.len() + END_RECORD);
    c.extend_from_slice(b"PK\x01\x02");
    c.extend_from_slice(&20u16.to_le_bytes()); // made by: MS-DOS, 2.0
    c.extend_from_slice(&20u16.to_le_bytes()); // version needed
    c.extend_from_slice(&0u16.to_le_bytes()); // flags
    c.extend_from_slice(&8u16.to_le_bytes()); // method: deflate
    c.extend_from_slice(&time.to_le_bytes());
    c.extend_from_slice(&DOS_DATE.to_le_bytes());
    c.extend_from_slice(&crc.to_le_bytes());
    c.extend_from_slice(&(deflated as u32).to_le_bytes());
    c.extend_from_slice(&(total as u32).to_le_bytes());
    c.extend_from_slice(&(NAME.len() as u16).to_le_bytes());
    c.extend_from_slice(&0u16.to_le_bytes()); // extra field length
    c.extend_from_slice(&0u16.to_le_bytes()); // comment length
    c.extend_from_slice(&0u16.to_le_bytes()); // disk number start
    c.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
    c.extend_from_slice(&0u32.to_le_bytes()); // external attributes
    c.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    c.extend_from_slice(NAME);
    let directory_len = c.len();
    c.extend_from_slice(b"PK\x05\x06");
    c.extend_from_slice(&0u16.to_le_bytes()); // this disk
    c.extend_from_slice(&0u16.to_le_bytes()); // disk with the directory
    c.extend_from_slice(&1u16.to_le_bytes()); // entries on this disk
    c.extend_from_slice(&1u16.to_le_bytes()); // entries in all
    c.extend_from_slice(&(directory_len as u32).to_le_bytes());
    let directory_offset = LOCAL_HEADER + NAME.len() + deflated;
    c.extend_from_slice(&(directory_offset as u32).to_le_bytes());
    c.extend_from_slice(&0u16.to_le_bytes()); // comment length
    c
}

/// The whole file with `crc` written into the headers (a quine whatever
/// `crc` is; a valid zip only at the fixpoint).
fn assemble(crc: u32, time: u16) -> Vec<u8> {
    let p_len = LOCAL_HEADER + NAME.len();
    let s_len = CENTRAL_HEADER + NAME.len() + END_RECORD;
    // Opcode lengths do not depend on what P and S say, only on their
    // lengths, so one dry run gives the size of the DEFLATE stream.
    let deflated = program(&vec![0; p_len], &vec![0; s_len]).len();
    let total = p_len + deflated + s_len;
    let p = local_header(crc, deflated, total, time);
    let s = central_directory(crc, deflated, total, time);
    let file = [&p[..], &program(&p, &s), &s].concat();
    assert_eq!(file.len(), total);
    file
}

/// Solves `(I ^ M) c = b` over GF(2), where `columns[i]` is column `i` of
/// `M`; `None` if the system has no solution.
fn solve_gf2(columns: &[u32; 32], b: u32) -> Option<u32> {
    // Row j: bit i is the coefficient of c_i; bit 32 is the right side.
    let mut rows: Vec<u64> = (0..32)
        .map(|j| {
            let coefficients = (0..32).fold(0u64, |acc, i| {
                let m = (columns[i] >> j) & 1;
                let identity = u32::from(i == j);
                acc | (u64::from(m ^ identity) << i)
            });
            coefficients | (u64::from((b >> j) & 1) << 32)
        })
        .collect();
    let mut pivots = Vec::new();
    for i in 0..32 {
        let rank = pivots.len();
        let Some(r) = (rank..32).find(|&r| rows[r] >> i & 1 == 1) else {
            continue; // a free variable: left at 0
        };
        rows.swap(rank, r);
        for other in 0..32 {
            if other != rank && rows[other] >> i & 1 == 1 {
                rows[other] ^= rows[rank];
            }
        }
        pivots.push(i);
    }
    // Rows past the rank have no coefficients left: 0 = rhs.
    if rows[pivots.len()..].iter().any(|r| r >> 32 & 1 == 1) {
        return None;
    }
    Some(
        pivots
            .iter()
            .enumerate()
            .fold(0, |c, (row, &i)| c | (((rows[row] >> 32 & 1) as u32) << i)),
    )
}

/// The zip quine: a zip whose only entry, `r.zip`, inflates to the zip
/// itself, with the CRC-32 of that entry (i.e. of the whole file) correct.
pub fn zip_quine() -> Vec<u8> {
    // The CRC fixpoint need not exist for a given file (I ^ M can be
    // singular with b outside its range); the modification time is free,
    // so try DOS times 00:00:00, 00:00:02, ... until one has a solution.
    for time in 0..(30 * 60) {
        let time = (((time / 30) << 5) | (time % 30)) as u16; // minutes, seconds/2
        let base = crc32fast::hash(&assemble(0, time));
        let mut columns = [0u32; 32];
        for (i, column) in columns.iter_mut().enumerate() {
            *column = crc32fast::hash(&assemble(1 << i, time)) ^ base;
        }
        if let Some(crc) = solve_gf2(&columns, base) {
            let file = assemble(crc, time);
            assert_eq!(crc32fast::hash(&file), crc, "CRC-32 is not affine?");
            return file;
        }
    }
    unreachable!("no DOS time in the first hour gives a CRC fixpoint")
}

/// Where the entry's deflated bytes are, from its local header.
fn entry_data(zip: &[u8]) -> &[u8] {
    assert_eq!(&zip[..4], b"PK\x03\x04");
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([zip[o], zip[o + 1]]));
    let size = u32::from_le_bytes(zip[18..22].try_into().unwrap()) as usize;
    let start = LOCAL_HEADER + u16_at(26) + u16_at(28);
    &zip[start..start + size]
}

#[test]
fn zip_quine_inflates_to_itself() {
    let zip = zip_quine();
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(entry_data(&zip))
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out.len(), zip.len());
    assert!(out == zip, "inflated entry differs from the file");
}

#[test]
fn zip_quine_is_read_by_the_zip_crate() {
    let zip = zip_quine();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.clone())).unwrap();
    assert_eq!(archive.len(), 1);
    let mut entry = archive.by_index(0).unwrap();
    assert_eq!(entry.name().unwrap(), "r.zip");
    assert_eq!(entry.compression(), zip::CompressionMethod::Deflated);
    assert_eq!(entry.size(), zip.len() as u64);
    let mut out = Vec::new();
    // Reading to the end makes the crate check the CRC-32 too.
    entry.read_to_end(&mut out).unwrap();
    assert!(out == zip, "entry differs from the file");
}

#[test]
fn zip_quine_passes_unzip_t() {
    let unzip = std::path::Path::new("/usr/bin/unzip");
    assert!(
        unzip.exists(),
        "Info-ZIP unzip is missing: run ./scripts/test as root (Debian package unzip)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.zip");
    std::fs::write(&path, zip_quine()).unwrap();
    let out = std::process::Command::new(unzip)
        .arg("-t")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "unzip -t: {:?}", out.status);
    assert!(
        stdout.contains("r.zip") && stdout.contains("OK"),
        "{stdout}"
    );
}

#[test]
fn zip_quine_crc_is_its_own_crc() {
    let zip = zip_quine();
    let u32_at = |o: usize| u32::from_le_bytes(zip[o..o + 4].try_into().unwrap());
    let end = zip.len() - END_RECORD;
    assert_eq!(&zip[end..end + 4], b"PK\x05\x06");
    let directory = u32_at(end + 16) as usize;
    assert_eq!(&zip[directory..directory + 4], b"PK\x01\x02");
    let crc = u32_at(directory + 16);
    assert_eq!(crc32fast::hash(&zip), crc);
    assert_eq!(u32_at(14), crc, "local header and directory disagree");
    // Deterministic: the same bytes every time.
    assert!(zip_quine() == zip);
}

#[test]
fn the_pipeline_opens_the_quine_once_and_says_it_contains_itself() {
    use portcullis::{Engine, Outcome, RuleSet, Submission, config::Config};
    let engine = Engine::new(Config::defaults(), RuleSet::bundled().unwrap());
    let report = engine
        .inspect(&Submission::file(Some("r.zip".into()), zip_quine()))
        .unwrap();
    // The zip, and its one entry: the same bytes, not opened again.
    assert_eq!(report.objects.len(), 2, "{:?}", report.objects);
    assert_eq!(report.objects[1].outcome, Outcome::Duplicate { of: 0 });
    let own: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind.name() == "AMBIGUOUS_ARCHIVE")
        .collect();
    assert_eq!(own.len(), 1, "{:?}", report.findings);
    assert_eq!(own[0].object, 0);
    assert!(own[0].description.contains("contains itself"), "{own:?}");
}
