//! RAR archive lister (RAR 4.x and RAR 5.0 formats) with extraction of
//! entries stored without compression.
//!
//! Supported: finding the signature at offset 0 or after a self-extracting
//! stub within the first 1 MiB; listing every file entry (name, sizes,
//! method, encryption, directory, solid and split flags, CRC32) of RAR 4.x
//! (block format of RAR 1.50–4.x) and RAR 5.0 archives; RAR 4 "Unicode"
//! encoded names (`FHD_UNICODE`); >4 GiB sizes (`FHD_LARGE`, vints); reading
//! the bytes of stored ("store" method), unencrypted, unsplit entries with a
//! CRC32 check; deterministic builders for harmless stored test archives.
//!
//! Not supported (on purpose): decompression of any RAR method (the only
//! decoder is unrar, whose licence forbids re-creating it), decryption,
//! joining volumes, RAR 1.4 ("RE~^") archives, RAR 5 service-header payloads
//! (comments, NTFS streams `STM`, ACLs are skipped, not listed), BLAKE2
//! hashes (an entry with only a BLAKE2 hash is returned unchecked). Archives
//! with encrypted headers list nothing and set `headers_encrypted`.
//!
//! Hostile-input guards: every header must fit in the input (a cut-off
//! header ends the walk with `truncated`); sizes read from the file are
//! `u64` with checked arithmetic and are never used to allocate (packed
//! ranges are clamped to the input); vints longer than 10 bytes are
//! rejected; RAR 5 headers over 2 MiB are rejected; each header must move
//! the walk forward; the entry count is capped by `max_entries`, the
//! anomaly list by [`MAX_ANOMALIES`], the SFX search by 1 MiB and
//! [`MAX_SIGNATURE_CANDIDATES`], extra-area records by
//! [`MAX_EXTRA_RECORDS`]; `read_stored` never returns more than `max_bytes`.
//! Header CRC mismatches are recorded as anomalies and the walk continues
//! while the layout stays self-consistent, because a broken checksum on an
//! otherwise readable header is itself a signal worth showing the operator.

// Writers and checks beyond what the gateway calls serve the tests and the
// sample generators (crate::samples).
#![cfg_attr(not(test), allow(dead_code))]

/// Most anomaly strings kept per listing; one more line says some were dropped.
pub const MAX_ANOMALIES: usize = 64;
/// How far into the input the signature may start (self-extracting stubs).
pub const SFX_SEARCH_LIMIT: usize = 1 << 20;
/// How many signature-like byte strings the SFX search will try.
pub const MAX_SIGNATURE_CANDIDATES: usize = 16;
/// Most extra-area records looked at in one RAR 5 header.
pub const MAX_EXTRA_RECORDS: usize = 256;

const RAR4_SIG: &[u8] = b"Rar!\x1a\x07\x00";
const RAR5_SIG: &[u8] = b"Rar!\x1a\x07\x01\x00";
const SIG_PREFIX: &[u8] = b"Rar!\x1a\x07";
/// The RAR 5 description caps headers at 2 MB; more is hostile or garbage.
const RAR5_MAX_HEADER: u64 = 2 * 1024 * 1024;
/// Headers bigger than this are not CRC-checked while choosing an SFX candidate,
/// to keep the search cost bounded.
const CANDIDATE_CHECK_LIMIT: usize = 64 * 1024;

// RAR 4 block types and flags (technote names).
const R4_MARK: u8 = 0x72;
const R4_MAIN: u8 = 0x73;
const R4_FILE: u8 = 0x74;
const R4_NEWSUB: u8 = 0x7a;
const R4_ENDARC: u8 = 0x7b;
const R4_LONG_BLOCK: u16 = 0x8000;
const MHD_VOLUME: u16 = 0x0001;
const MHD_SOLID: u16 = 0x0008;
const MHD_PASSWORD: u16 = 0x0080;
const FHD_SPLIT_BEFORE: u16 = 0x0001;
const FHD_SPLIT_AFTER: u16 = 0x0002;
const FHD_PASSWORD: u16 = 0x0004;
const FHD_SOLID: u16 = 0x0010;
const FHD_DICT_MASK: u16 = 0x00e0;
const FHD_LARGE: u16 = 0x0100;
const FHD_UNICODE: u16 = 0x0200;
const R4_METHOD_STORE: u8 = 0x30;
const R4_FILE_FIXED: usize = 32;

// RAR 5 header types and flags.
const R5_MAIN: u64 = 1;
const R5_FILE: u64 = 2;
const R5_SERVICE: u64 = 3;
const R5_CRYPT: u64 = 4;
const R5_END: u64 = 5;
const HFL_EXTRA: u64 = 0x0001;
const HFL_DATA: u64 = 0x0002;
const HFL_SPLIT_BEFORE: u64 = 0x0008;
const HFL_SPLIT_AFTER: u64 = 0x0010;
const MAIN_VOLUME: u64 = 0x0001;
const MAIN_SOLID: u64 = 0x0004;
const FF_DIRECTORY: u64 = 0x0001;
const FF_UTIME: u64 = 0x0002;
const FF_CRC32: u64 = 0x0004;
const FF_UNKNOWN_SIZE: u64 = 0x0008;
const EXTRA_CRYPT: u64 = 0x01;

/// Which of the two archive formats the signature announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Rar4,
    Rar5,
}

/// How an entry's data is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Stored as is; `read_stored` can return it.
    Store,
    /// Any RAR compression; the number is the format's own: RAR 4 METHOD byte
    /// (0x31..=0x35), RAR 5 compression-info method bits (1..=5).
    Compressed(u8),
}

/// One file or directory entry as its header describes it. Nothing here is
/// trusted: sizes and CRCs are whatever the archive claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path as stored ('\\' normalised to '/'), lossy UTF-8.
    pub name: String,
    /// Unpacked size claimed by the header.
    pub size: u64,
    /// (offset, length) of the packed data in the input, clamped to the input.
    pub packed: (u64, u64),
    pub method: Method,
    pub encrypted: bool,
    pub is_dir: bool,
    /// Needs the previous entries' state to decompress.
    pub solid: bool,
    /// CRC32 of the unpacked data, when the header carries one.
    pub crc32: Option<u32>,
    /// Data continues from or into another volume.
    pub split: bool,
}

/// Result of walking an archive's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub version: Version,
    pub entries: Vec<Entry>,
    /// Headers after the archive header are encrypted: names are unknowable.
    pub headers_encrypted: bool,
    /// Archive flags say this is one volume of a multi-volume set.
    pub multivolume: bool,
    /// Human-readable notes on header CRC mismatches and layout oddities.
    pub anomalies: Vec<String>,
    /// More entries than `max_entries`; the walk stopped there.
    pub entries_cut: bool,
    /// The input ends inside a header or data area (or, for RAR 5, before
    /// the end-of-archive header).
    pub truncated: bool,
    /// Offset of the signature; non-zero means a self-extracting stub (or
    /// other bytes) precedes the archive.
    pub sfx_offset: usize,
    /// Archive flags say the archive is solid.
    pub solid_archive: bool,
}

#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("no RAR signature in the first 1 MiB")]
    NotRar,
    #[error("stored data CRC32 mismatch: header says {expected:#010x}, data gives {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("packed data range {offset}+{length} lies outside the input")]
    OutOfRange { offset: u64, length: u64 },
}

/// Format version of the archive in `data`, looking past an SFX stub of up
/// to 1 MiB.
pub fn signature(data: &[u8]) -> Option<Version> {
    locate(data).map(|(v, _)| v)
}

/// Like [`signature`] but also gives the signature's offset.
pub fn find_signature(data: &[u8]) -> Option<(Version, usize)> {
    locate(data)
}

fn sig_at(data: &[u8], pos: usize) -> Option<Version> {
    let rest = data.get(pos..)?;
    if rest.starts_with(RAR5_SIG) {
        Some(Version::Rar5)
    } else if rest.starts_with(RAR4_SIG) {
        Some(Version::Rar4)
    } else {
        None
    }
}

/// Picks the signature to trust. A stub can contain the signature bytes
/// (in code or strings), so when the archive does not start at offset 0 the
/// first candidate whose following header has a correct CRC wins; failing
/// that, the first candidate.
fn locate(data: &[u8]) -> Option<(Version, usize)> {
    if let Some(v) = sig_at(data, 0) {
        return Some((v, 0));
    }
    let window_end = data
        .len()
        .min(SFX_SEARCH_LIMIT.saturating_add(RAR5_SIG.len()));
    let window = data.get(..window_end)?;
    let mut first = None;
    let mut tried = 0usize;
    let mut from = 0usize;
    while tried < MAX_SIGNATURE_CANDIDATES {
        let Some(rest) = window.get(from..) else {
            break;
        };
        let Some(rel) = memchr::memmem::find(rest, SIG_PREFIX) else {
            break;
        };
        let pos = from.saturating_add(rel);
        from = pos.saturating_add(1);
        if pos > SFX_SEARCH_LIMIT {
            break;
        }
        let Some(v) = sig_at(data, pos) else {
            continue;
        };
        tried = tried.saturating_add(1);
        if first.is_none() {
            first = Some((v, pos));
        }
        if first_header_crc_ok(data, v, pos) {
            return Some((v, pos));
        }
    }
    first
}

fn first_header_crc_ok(data: &[u8], v: Version, sig: usize) -> bool {
    match v {
        Version::Rar4 => {
            let pos = sig.saturating_add(RAR4_SIG.len());
            let Some(size) = le_u16(data, pos.saturating_add(5)) else {
                return false;
            };
            let size = usize::from(size);
            if size < 7 {
                return false;
            }
            match (
                le_u16(data, pos),
                data.get(pos.saturating_add(2)..pos.saturating_add(size)),
            ) {
                (Some(crc), Some(body)) => crc16_of(body) == crc,
                _ => false,
            }
        }
        Version::Rar5 => {
            let pos = sig.saturating_add(RAR5_SIG.len());
            let Some(crc) = le_u32(data, pos) else {
                return false;
            };
            let size_at = pos.saturating_add(4);
            let Ok((size, len)) = read_vint(data, size_at) else {
                return false;
            };
            let Ok(size) = usize::try_from(size) else {
                return false;
            };
            if size == 0 || size > CANDIDATE_CHECK_LIMIT {
                return false;
            }
            let end = size_at.saturating_add(len).saturating_add(size);
            data.get(size_at..end)
                .is_some_and(|h| crc32fast::hash(h) == crc)
        }
    }
}

/// Walks the headers of the archive in `data` and lists at most
/// `max_entries` file/directory entries. Only a missing signature is an
/// error; damage after it is reported through `truncated` and `anomalies`.
pub fn list(data: &[u8], max_entries: usize) -> Result<Listing, Error> {
    let (version, sfx_offset) = locate(data).ok_or(Error::NotRar)?;
    let mut l = Listing {
        version,
        entries: Vec::new(),
        headers_encrypted: false,
        multivolume: false,
        anomalies: Vec::new(),
        entries_cut: false,
        truncated: false,
        sfx_offset,
        solid_archive: false,
    };
    match version {
        Version::Rar4 => walk_rar4(
            data,
            sfx_offset.saturating_add(RAR4_SIG.len()),
            max_entries,
            &mut l,
        ),
        Version::Rar5 => walk_rar5(
            data,
            sfx_offset.saturating_add(RAR5_SIG.len()),
            max_entries,
            &mut l,
        ),
    }
    Ok(l)
}

/// The bytes of a stored, unencrypted, unsplit file entry, at most
/// `max_bytes` of them. `None` for entries that cannot be read this way
/// (compressed, encrypted, split, directories). The flag is `true` when the
/// bytes are not the whole entry (cap reached or the input ends early); the
/// CRC32 is only checked on whole entries.
pub fn read_stored(
    data: &[u8],
    entry: &Entry,
    max_bytes: usize,
) -> Option<Result<(Vec<u8>, bool), Error>> {
    if entry.method != Method::Store || entry.encrypted || entry.split || entry.is_dir {
        return None;
    }
    Some(read_stored_inner(data, entry, max_bytes))
}

fn read_stored_inner(
    data: &[u8],
    entry: &Entry,
    max_bytes: usize,
) -> Result<(Vec<u8>, bool), Error> {
    let (offset, length) = entry.packed;
    let out_of_range = || Error::OutOfRange { offset, length };
    let start = usize::try_from(offset).map_err(|_| out_of_range())?;
    let len = usize::try_from(length).map_err(|_| out_of_range())?;
    let end = start.checked_add(len).ok_or_else(out_of_range)?;
    let packed = data.get(start..end).ok_or_else(out_of_range)?;
    // Stored data is exactly `size` bytes; anything after it in the packed
    // area is not part of the file.
    let own_len = usize::try_from(entry.size)
        .unwrap_or(usize::MAX)
        .min(packed.len());
    let take = own_len.min(max_bytes);
    let bytes = packed.get(..take).unwrap_or_default().to_vec();
    let cut = (take as u64) < entry.size;
    if !cut && let Some(expected) = entry.crc32 {
        let actual = crc32fast::hash(&bytes);
        if actual != expected {
            return Err(Error::CrcMismatch { expected, actual });
        }
    }
    Ok((bytes, cut))
}

// ---------------------------------------------------------------- helpers

fn le_u16(data: &[u8], pos: usize) -> Option<u16> {
    let b = data.get(pos..pos.checked_add(2)?)?;
    Some(u16::from_le_bytes([*b.first()?, *b.get(1)?]))
}

fn le_u32(data: &[u8], pos: usize) -> Option<u32> {
    let b = data.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

fn crc16_of(bytes: &[u8]) -> u16 {
    (crc32fast::hash(bytes) & 0xffff) as u16
}

#[derive(Debug, PartialEq, Eq)]
enum VintErr {
    /// Input ended inside the vint.
    Short,
    /// More than 10 bytes: not a valid 64-bit vint.
    TooLong,
}

/// RAR 5 variable-length integer: 7 bits per byte, low bits first, high bit
/// set on every byte but the last. Returns (value, bytes used).
fn read_vint(data: &[u8], pos: usize) -> Result<(u64, usize), VintErr> {
    let mut value = 0u64;
    for i in 0..10usize {
        let b = *data.get(pos.saturating_add(i)).ok_or(VintErr::Short)?;
        // Bits beyond 64 in a 10th byte are dropped rather than rejected.
        value |= u64::from(b & 0x7f).checked_shl((7 * i) as u32).unwrap_or(0);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(VintErr::TooLong)
}

fn note(l: &mut Listing, msg: String) {
    if l.anomalies.len() < MAX_ANOMALIES {
        l.anomalies.push(msg);
    } else if l.anomalies.len() == MAX_ANOMALIES {
        l.anomalies.push("further anomalies suppressed".to_string());
    }
}

/// Clamps a claimed data area to the input.
fn clamp_area(data_len: usize, start: u64, claimed: u64) -> (u64, u64) {
    let len = data_len as u64;
    let start = start.min(len);
    (start, claimed.min(len - start))
}

fn normalise_name(s: String) -> String {
    if s.contains('\\') {
        s.replace('\\', "/")
    } else {
        s
    }
}

/// Pushes an entry unless the cap is reached; returns false when the walk
/// must stop.
fn push_entry(l: &mut Listing, e: Entry, max_entries: usize) -> bool {
    if l.entries.len() >= max_entries {
        l.entries_cut = true;
        return false;
    }
    l.entries.push(e);
    true
}

// ------------------------------------------------------------------ RAR 4

/// Decodes the RAR 3.x/4.x "Unicode" file name: a high byte, then groups of
/// four 2-bit opcodes (most significant first) each followed by its
/// operands: 0 = one low byte, 1 = low byte under the high byte, 2 = a full
/// little-endian 16-bit unit, 3 = a run copied from the ASCII name (with a
/// byte correction and the high byte when the run length has bit 7 set).
/// Output is capped at `max_units`.
fn decode_rar4_unicode(ascii: &[u8], enc: &[u8], max_units: usize) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    let mut it = enc.iter().copied();
    let Some(high) = it.next() else {
        return out;
    };
    let high = u16::from(high) << 8;
    let mut flags = 0u8;
    let mut bits = 0u32;
    while out.len() < max_units {
        if bits == 0 {
            let Some(f) = it.next() else { break };
            flags = f;
            bits = 8;
        }
        bits -= 2;
        match (flags >> bits) & 3 {
            0 => {
                let Some(b) = it.next() else { break };
                out.push(u16::from(b));
            }
            1 => {
                let Some(b) = it.next() else { break };
                out.push(u16::from(b) | high);
            }
            2 => {
                let (Some(lo), Some(hi)) = (it.next(), it.next()) else {
                    break;
                };
                out.push(u16::from_le_bytes([lo, hi]));
            }
            _ => {
                let Some(n) = it.next() else { break };
                let correction = if n & 0x80 != 0 {
                    let Some(c) = it.next() else { break };
                    Some(c)
                } else {
                    None
                };
                let run = usize::from(n & 0x7f) + 2;
                for _ in 0..run {
                    if out.len() >= max_units {
                        break;
                    }
                    let Some(&a) = ascii.get(out.len()) else {
                        break;
                    };
                    out.push(match correction {
                        Some(c) => u16::from(a.wrapping_add(c)) | high,
                        None => u16::from(a),
                    });
                }
            }
        }
    }
    out
}

fn rar4_name(field: &[u8], unicode: bool) -> String {
    if !unicode {
        return String::from_utf8_lossy(field).into_owned();
    }
    // With FHD_UNICODE the field is "ascii\0encoded"; without a NUL, RAR
    // versions that set the flag stored the name as UTF-8.
    let Some(nul) = field.iter().position(|&b| b == 0) else {
        return String::from_utf8_lossy(field).into_owned();
    };
    let ascii = field.get(..nul).unwrap_or_default();
    let enc = field.get(nul.saturating_add(1)..).unwrap_or_default();
    let mut units = decode_rar4_unicode(ascii, enc, field.len());
    if let Some(z) = units.iter().position(|&u| u == 0) {
        units.truncate(z);
    }
    if units.is_empty() {
        String::from_utf8_lossy(ascii).into_owned()
    } else {
        String::from_utf16_lossy(&units)
    }
}

fn walk_rar4(data: &[u8], mut pos: usize, max_entries: usize, l: &mut Listing) {
    let mut first = true;
    let mut ended = false;
    // Each block is at least 7 bytes, so this bound is never the real limit.
    let max_blocks = data.len() / 7 + 1;
    for _ in 0..max_blocks {
        if pos >= data.len() {
            break;
        }
        let (Some(crc), Some(&typ), Some(flags), Some(head_size)) = (
            le_u16(data, pos),
            data.get(pos.saturating_add(2)),
            le_u16(data, pos.saturating_add(3)),
            le_u16(data, pos.saturating_add(5)),
        ) else {
            l.truncated = true;
            return;
        };
        let head_size = usize::from(head_size);
        if head_size < 7 {
            note(
                l,
                format!("RAR4 block at {pos}: header size {head_size} < 7, walk stopped"),
            );
            return;
        }
        let Some(block) = data.get(pos..pos.saturating_add(head_size)) else {
            l.truncated = true;
            return;
        };
        let body = block.get(2..).unwrap_or_default();
        let crc_full_ok = crc16_of(body) == crc;
        if first && typ != R4_MAIN {
            note(
                l,
                format!(
                    "RAR4 block at {pos}: first block type {typ:#04x} is not the archive header"
                ),
            );
        }
        first = false;

        // Bytes that follow the header and belong to this block.
        let mut add: u64 = if flags & R4_LONG_BLOCK != 0 {
            match le_u32(block, 7) {
                Some(v) => u64::from(v),
                None => {
                    note(
                        l,
                        format!(
                            "RAR4 block at {pos}: ADD_SIZE flag set but header too short, walk stopped"
                        ),
                    );
                    return;
                }
            }
        } else {
            0
        };

        match typ {
            R4_MAIN => {
                // RAR 2.x embedded an old comment in the archive header and
                // checksummed only the fixed 13-byte part.
                let ok = crc_full_ok || block.get(2..13).is_some_and(|b| crc16_of(b) == crc);
                if !ok {
                    note(
                        l,
                        format!("RAR4 archive header at {pos}: header CRC mismatch"),
                    );
                }
                l.multivolume = flags & MHD_VOLUME != 0;
                l.solid_archive = flags & MHD_SOLID != 0;
                if flags & MHD_PASSWORD != 0 {
                    l.headers_encrypted = true;
                    return;
                }
            }
            R4_FILE | R4_NEWSUB => {
                if head_size < R4_FILE_FIXED {
                    note(
                        l,
                        format!(
                            "RAR4 file header at {pos}: size {head_size} below the fixed part, walk stopped"
                        ),
                    );
                    return;
                }
                let f = parse_rar4_file(block, flags);
                add = f.packed_size;
                if typ == R4_FILE {
                    let crc_ok = crc_full_ok || f.crc_through_name.is_some_and(|c| c == crc);
                    if !crc_ok {
                        note(l, format!("RAR4 file header at {pos}: header CRC mismatch"));
                    }
                    if flags & R4_LONG_BLOCK == 0 {
                        note(
                            l,
                            format!("RAR4 file header at {pos}: LONG_BLOCK flag missing"),
                        );
                    }
                    if f.name_clamped {
                        note(
                            l,
                            format!("RAR4 file header at {pos}: name runs past the header"),
                        );
                    }
                    let start = (pos as u64).saturating_add(head_size as u64);
                    let entry = Entry {
                        name: normalise_name(rar4_name(f.name_field, flags & FHD_UNICODE != 0)),
                        size: f.unpacked_size,
                        packed: clamp_area(data.len(), start, f.packed_size),
                        method: if f.method == R4_METHOD_STORE {
                            Method::Store
                        } else {
                            Method::Compressed(f.method)
                        },
                        encrypted: flags & FHD_PASSWORD != 0,
                        is_dir: flags & FHD_DICT_MASK == FHD_DICT_MASK,
                        solid: flags & FHD_SOLID != 0,
                        crc32: Some(f.file_crc),
                        split: flags & (FHD_SPLIT_BEFORE | FHD_SPLIT_AFTER) != 0,
                    };
                    if !push_entry(l, entry, max_entries) {
                        return;
                    }
                } else if !crc_full_ok {
                    note(l, format!("RAR4 subblock at {pos}: header CRC mismatch"));
                }
            }
            R4_ENDARC => {
                if !crc_full_ok {
                    note(l, format!("RAR4 end block at {pos}: header CRC mismatch"));
                }
                ended = true;
                pos = pos.saturating_add(head_size);
                break;
            }
            R4_MARK | 0x75..=0x79 => {
                if !crc_full_ok {
                    note(
                        l,
                        format!("RAR4 block type {typ:#04x} at {pos}: header CRC mismatch"),
                    );
                }
            }
            _ => {
                if !crc_full_ok {
                    // Unknown type and a bad checksum: this is not a header.
                    note(
                        l,
                        format!(
                            "RAR4 unknown block type {typ:#04x} at {pos} with bad CRC, walk stopped"
                        ),
                    );
                    return;
                }
                note(
                    l,
                    format!("RAR4 unknown block type {typ:#04x} at {pos} skipped"),
                );
            }
        }

        let next = (pos as u64)
            .saturating_add(head_size as u64)
            .saturating_add(add);
        if next > data.len() as u64 {
            l.truncated = true;
            return;
        }
        // next > pos because head_size >= 7, and next <= data.len() fits usize.
        pos = usize::try_from(next).unwrap_or(data.len());
    }
    if !ended {
        note(l, "RAR4: no end-of-archive block".to_string());
    } else if pos < data.len() {
        note(
            l,
            format!("{} bytes after the end of the archive", data.len() - pos),
        );
    }
}

struct Rar4File<'a> {
    packed_size: u64,
    unpacked_size: u64,
    file_crc: u32,
    method: u8,
    name_field: &'a [u8],
    name_clamped: bool,
    /// Low 16 bits of CRC32 over the fields up to and including the name,
    /// the extent the technote gives for the file header CRC.
    crc_through_name: Option<u16>,
}

/// `block` is the whole header (at least `R4_FILE_FIXED` bytes).
fn parse_rar4_file(block: &[u8], flags: u16) -> Rar4File<'_> {
    let mut packed = u64::from(le_u32(block, 7).unwrap_or(0));
    let mut unpacked = u64::from(le_u32(block, 11).unwrap_or(0));
    let file_crc = le_u32(block, 16).unwrap_or(0);
    let method = block.get(25).copied().unwrap_or(0);
    let name_size = usize::from(le_u16(block, 26).unwrap_or(0));
    let mut name_at = R4_FILE_FIXED;
    if flags & FHD_LARGE != 0 {
        if let (Some(hp), Some(hu)) = (le_u32(block, 32), le_u32(block, 36)) {
            packed |= u64::from(hp) << 32;
            unpacked |= u64::from(hu) << 32;
        }
        name_at = 40;
    }
    let name_end = name_at.saturating_add(name_size);
    let name_clamped = name_end > block.len();
    let name_field = block
        .get(name_at.min(block.len())..name_end.min(block.len()))
        .unwrap_or_default();
    let crc_through_name = block.get(2..name_end).map(crc16_of);
    Rar4File {
        packed_size: packed,
        unpacked_size: unpacked,
        file_crc,
        method,
        name_field,
        name_clamped,
        crc_through_name,
    }
}

// ------------------------------------------------------------------ RAR 5

/// Reads fields out of one fully present header.
struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    fn vint(&mut self) -> Option<u64> {
        let (v, n) = read_vint(self.buf, self.pos).ok()?;
        self.pos = self.pos.saturating_add(n);
        Some(v)
    }
    fn u32(&mut self) -> Option<u32> {
        let v = le_u32(self.buf, self.pos)?;
        self.pos = self.pos.saturating_add(4);
        Some(v)
    }
    fn bytes(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.pos.checked_add(n)?;
        let b = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }
}

fn walk_rar5(data: &[u8], mut pos: usize, max_entries: usize, l: &mut Listing) {
    let mut first = true;
    // Each header is at least 6 bytes (CRC, size, type, flags).
    let max_headers = data.len() / 6 + 1;
    for _ in 0..max_headers {
        if pos >= data.len() {
            break;
        }
        let Some(crc) = le_u32(data, pos) else {
            l.truncated = true;
            return;
        };
        let size_at = pos.saturating_add(4);
        let (hsize, vlen) = match read_vint(data, size_at) {
            Ok(v) => v,
            Err(VintErr::Short) => {
                l.truncated = true;
                return;
            }
            Err(VintErr::TooLong) => {
                note(
                    l,
                    format!("RAR5 header at {pos}: size vint longer than 10 bytes, walk stopped"),
                );
                return;
            }
        };
        if !(2..=RAR5_MAX_HEADER).contains(&hsize) {
            note(
                l,
                format!("RAR5 header at {pos}: implausible header size {hsize}, walk stopped"),
            );
            return;
        }
        let hstart = size_at.saturating_add(vlen);
        // hsize <= 2 MiB, so it fits usize.
        let hend = hstart.saturating_add(usize::try_from(hsize).unwrap_or(usize::MAX));
        let (Some(header), Some(crc_span)) = (data.get(hstart..hend), data.get(size_at..hend))
        else {
            l.truncated = true;
            return;
        };
        if crc32fast::hash(crc_span) != crc {
            note(l, format!("RAR5 header at {pos}: header CRC mismatch"));
        }
        let mut c = Cur {
            buf: header,
            pos: 0,
        };
        let (Some(typ), Some(hflags)) = (c.vint(), c.vint()) else {
            note(
                l,
                format!("RAR5 header at {pos}: unreadable type/flags, walk stopped"),
            );
            return;
        };
        let extra_size = if hflags & HFL_EXTRA != 0 {
            c.vint()
        } else {
            Some(0)
        };
        let data_size = if hflags & HFL_DATA != 0 {
            c.vint()
        } else {
            Some(0)
        };
        let (Some(extra_size), Some(data_size)) = (extra_size, data_size) else {
            note(
                l,
                format!("RAR5 header at {pos}: unreadable extra/data size, walk stopped"),
            );
            return;
        };
        // The extra area sits at the end of the header, after the
        // type-specific fields.
        let fields_end = (header.len() as u64).checked_sub(extra_size);
        let Some(fields_end) = fields_end.filter(|&e| e >= c.pos as u64) else {
            note(
                l,
                format!("RAR5 header at {pos}: extra area larger than the header, walk stopped"),
            );
            return;
        };
        let fields_end = usize::try_from(fields_end).unwrap_or(header.len());
        let fields = header.get(..fields_end).unwrap_or_default();
        let extra = header.get(fields_end..).unwrap_or_default();

        if first && typ != R5_MAIN && typ != R5_CRYPT {
            note(
                l,
                format!("RAR5 header at {pos}: first header type {typ} is not the archive header"),
            );
        }
        first = false;

        let data_start = hend as u64;
        match typ {
            R5_MAIN => {
                let mut fc = Cur {
                    buf: fields,
                    pos: c.pos,
                };
                match fc.vint() {
                    Some(af) => {
                        l.multivolume = af & MAIN_VOLUME != 0;
                        l.solid_archive = af & MAIN_SOLID != 0;
                    }
                    None => note(
                        l,
                        format!("RAR5 archive header at {pos}: archive flags missing"),
                    ),
                }
            }
            R5_FILE => {
                let fc = Cur {
                    buf: fields,
                    pos: c.pos,
                };
                match parse_rar5_file(fc, extra, hflags, data_size) {
                    Some((mut entry, bad_extra)) => {
                        if bad_extra {
                            note(
                                l,
                                format!("RAR5 file header at {pos}: malformed extra area"),
                            );
                        }
                        entry.packed = clamp_area(data.len(), data_start, data_size);
                        if !push_entry(l, entry, max_entries) {
                            return;
                        }
                    }
                    None => note(
                        l,
                        format!(
                            "RAR5 file header at {pos}: fields run past the header, entry skipped"
                        ),
                    ),
                }
            }
            R5_SERVICE => {}
            R5_CRYPT => {
                l.headers_encrypted = true;
                return;
            }
            R5_END => {
                let end = data_start.saturating_add(data_size);
                if end < data.len() as u64 {
                    note(
                        l,
                        format!(
                            "{} bytes after the end of the archive",
                            data.len() as u64 - end
                        ),
                    );
                } else if end > data.len() as u64 {
                    l.truncated = true;
                }
                return;
            }
            other => note(
                l,
                format!("RAR5 header at {pos}: unknown type {other} skipped"),
            ),
        }

        let next = data_start.saturating_add(data_size);
        if next > data.len() as u64 {
            l.truncated = true;
            return;
        }
        // next >= hend > pos, and next <= data.len() fits usize.
        pos = usize::try_from(next).unwrap_or(data.len());
    }
    // Every RAR 5 archive (and volume) ends with an end-of-archive header.
    l.truncated = true;
    note(l, "RAR5: no end-of-archive header".to_string());
}

/// Returns the entry (packed range not yet set) and whether the extra area
/// was malformed; `None` when the fixed fields do not fit.
fn parse_rar5_file(
    mut c: Cur<'_>,
    extra: &[u8],
    hflags: u64,
    data_size: u64,
) -> Option<(Entry, bool)> {
    let file_flags = c.vint()?;
    let unpacked = c.vint()?;
    let _attributes = c.vint()?;
    if file_flags & FF_UTIME != 0 {
        c.u32()?;
    }
    let crc = if file_flags & FF_CRC32 != 0 {
        Some(c.u32()?)
    } else {
        None
    };
    let comp = c.vint()?;
    let _host_os = c.vint()?;
    let name_len = c.vint()?;
    let name = c.bytes(name_len)?;

    let (encrypted, bad_extra) = scan_rar5_extra(extra);
    let method = ((comp >> 7) & 7) as u8;
    Some((
        Entry {
            name: normalise_name(String::from_utf8_lossy(name).into_owned()),
            // An unknown size is only known to be at least what is stored.
            size: if file_flags & FF_UNKNOWN_SIZE != 0 {
                data_size
            } else {
                unpacked
            },
            packed: (0, 0),
            method: if method == 0 {
                Method::Store
            } else {
                Method::Compressed(method)
            },
            encrypted,
            is_dir: file_flags & FF_DIRECTORY != 0,
            solid: comp & 0x40 != 0,
            crc32: crc,
            split: hflags & (HFL_SPLIT_BEFORE | HFL_SPLIT_AFTER) != 0,
        },
        bad_extra,
    ))
}

/// Returns (has an encryption record, area malformed).
fn scan_rar5_extra(extra: &[u8]) -> (bool, bool) {
    let mut pos = 0usize;
    let mut encrypted = false;
    for _ in 0..MAX_EXTRA_RECORDS {
        if pos >= extra.len() {
            return (encrypted, false);
        }
        let Ok((size, n)) = read_vint(extra, pos) else {
            return (encrypted, true);
        };
        let start = pos.saturating_add(n);
        let Some(end) = usize::try_from(size)
            .ok()
            .and_then(|s| start.checked_add(s))
        else {
            return (encrypted, true);
        };
        let Some(record) = extra.get(start..end) else {
            return (encrypted, true);
        };
        match read_vint(record, 0) {
            Ok((EXTRA_CRYPT, _)) => encrypted = true,
            Ok(_) => {}
            Err(_) => return (encrypted, true),
        }
        pos = end;
    }
    (encrypted, pos < extra.len())
}

// --------------------------------------------------------------- builders

fn push_vint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// One file header's variable parts, so tests can make headers the public
/// builder never writes (compressed, encrypted, service, split).
#[derive(Debug, Clone)]
struct Rar5Spec<'a> {
    header_type: u64,
    name: &'a str,
    content: &'a [u8],
    is_dir: bool,
    comp_info: u64,
    extra: Vec<u8>,
    split_flags: u64,
    with_crc: bool,
}

impl<'a> Rar5Spec<'a> {
    fn stored(name: &'a str, content: &'a [u8]) -> Self {
        let is_dir = name.ends_with('/');
        Rar5Spec {
            header_type: R5_FILE,
            name: if is_dir {
                name.trim_end_matches('/')
            } else {
                name
            },
            content: if is_dir { &[] } else { content },
            is_dir,
            comp_info: 0,
            extra: Vec::new(),
            split_flags: 0,
            with_crc: !is_dir,
        }
    }
}

fn push_rar5_header(out: &mut Vec<u8>, body: &[u8]) {
    let mut sized = Vec::with_capacity(body.len().saturating_add(4));
    push_vint(&mut sized, body.len() as u64);
    sized.extend_from_slice(body);
    out.extend_from_slice(&crc32fast::hash(&sized).to_le_bytes());
    out.extend_from_slice(&sized);
}

fn build_rar5(specs: &[Rar5Spec<'_>]) -> Vec<u8> {
    let mut out = RAR5_SIG.to_vec();
    // Archive header: type 1, no header flags, no archive flags.
    push_rar5_header(&mut out, &[1, 0, 0]);
    for s in specs {
        let mut body = Vec::new();
        push_vint(&mut body, s.header_type);
        let mut hflags = s.split_flags;
        if !s.extra.is_empty() {
            hflags |= HFL_EXTRA;
        }
        if !s.is_dir {
            hflags |= HFL_DATA;
        }
        push_vint(&mut body, hflags);
        if !s.extra.is_empty() {
            push_vint(&mut body, s.extra.len() as u64);
        }
        if !s.is_dir {
            push_vint(&mut body, s.content.len() as u64);
        }
        let mut ff = 0;
        if s.is_dir {
            ff |= FF_DIRECTORY;
        }
        if s.with_crc {
            ff |= FF_CRC32;
        }
        push_vint(&mut body, ff);
        push_vint(&mut body, s.content.len() as u64);
        // Unix mode bits, since the host OS is Unix.
        push_vint(&mut body, if s.is_dir { 0o40755 } else { 0o100644 });
        if s.with_crc {
            body.extend_from_slice(&crc32fast::hash(s.content).to_le_bytes());
        }
        push_vint(&mut body, s.comp_info);
        push_vint(&mut body, 1);
        push_vint(&mut body, s.name.len() as u64);
        body.extend_from_slice(s.name.as_bytes());
        body.extend_from_slice(&s.extra);
        push_rar5_header(&mut out, &body);
        out.extend_from_slice(s.content);
    }
    // End of archive: type 5, no flags, not followed by another volume.
    push_rar5_header(&mut out, &[5, 0, 0]);
    out
}

/// A valid RAR 5 archive holding `files` stored (no compression), with
/// correct header and data CRC32s. A name ending in '/' makes a directory
/// entry (its content is ignored). Deterministic: same input, same bytes.
pub fn build_rar5_stored(files: &[(&str, &[u8])]) -> Vec<u8> {
    let specs: Vec<Rar5Spec<'_>> = files.iter().map(|&(n, c)| Rar5Spec::stored(n, c)).collect();
    build_rar5(&specs)
}

/// Encodes UTF-16 units in the RAR 3.x name encoding, against `ascii` (one
/// byte per unit). Uses ASCII-run copies, same-high-byte and full-unit
/// opcodes so every decoder path except the correction run is exercised.
fn encode_rar4_unicode(ascii: &[u8], units: &[u16]) -> Vec<u8> {
    let high = units.iter().map(|u| u >> 8).find(|&h| h != 0).unwrap_or(0) as u8;
    let mut ops: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut i = 0usize;
    while let Some(&u) = units.get(i) {
        let mut run = 0usize;
        while run < 129
            && let (Some(&a), Some(&w)) = (ascii.get(i + run), units.get(i + run))
            && w < 0x80
            && u16::from(a) == w
        {
            run += 1;
        }
        if run >= 2 {
            ops.push((3, vec![(run - 2) as u8]));
            i += run;
            continue;
        }
        let [lo, hi] = u.to_le_bytes();
        if hi == 0 {
            ops.push((0, vec![lo]));
        } else if hi == high {
            ops.push((1, vec![lo]));
        } else {
            ops.push((2, vec![lo, hi]));
        }
        i += 1;
    }
    let mut out = vec![high];
    for group in ops.chunks(4) {
        let mut flags = 0u8;
        for (k, (op, _)) in group.iter().enumerate() {
            flags |= op << (6 - 2 * k);
        }
        out.push(flags);
        for (_, operands) in group {
            out.extend_from_slice(operands);
        }
    }
    out
}

fn push_rar4_block(out: &mut Vec<u8>, after_crc: &[u8]) {
    out.extend_from_slice(&crc16_of(after_crc).to_le_bytes());
    out.extend_from_slice(after_crc);
}

/// A valid RAR 4.x archive (as RAR 3.x/4.x writes it, Win32 host, '\\'
/// separators) holding `files` stored, with correct header CRCs and file
/// CRC32s. Non-ASCII names use the `FHD_UNICODE` encoding. A name ending in
/// '/' makes a directory entry (its content is ignored). Names are cut to
/// 60000 bytes to fit the 16-bit header size. Deterministic.
pub fn build_rar4_stored(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = RAR4_SIG.to_vec();
    // Archive header: no flags, the two reserved fields zero.
    push_rar4_block(&mut out, &[R4_MAIN, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0]);
    for &(name, content) in files {
        let is_dir = name.ends_with('/');
        let name = if is_dir {
            name.trim_end_matches('/')
        } else {
            name
        };
        let content: &[u8] = if is_dir { &[] } else { content };
        let win_name = name.replace('/', "\\");
        let units: Vec<u16> = win_name.encode_utf16().collect();
        let mut flags = R4_LONG_BLOCK;
        let mut name_field: Vec<u8>;
        if win_name.is_ascii() {
            name_field = win_name.into_bytes();
        } else {
            flags |= FHD_UNICODE;
            let ascii: Vec<u8> = units
                .iter()
                .map(|&u| if u < 0x80 { u as u8 } else { b'_' })
                .collect();
            name_field = ascii.clone();
            name_field.push(0);
            name_field.extend_from_slice(&encode_rar4_unicode(&ascii, &units));
        }
        name_field.truncate(60_000);
        if is_dir {
            flags |= FHD_DICT_MASK;
        }
        let len = content.len() as u64;
        if len > u64::from(u32::MAX) {
            flags |= FHD_LARGE;
        }
        let fixed = if flags & FHD_LARGE != 0 {
            40
        } else {
            R4_FILE_FIXED
        };
        let head_size = (fixed + name_field.len()) as u16;
        let mut h = vec![R4_FILE];
        h.extend_from_slice(&flags.to_le_bytes());
        h.extend_from_slice(&head_size.to_le_bytes());
        h.extend_from_slice(&(len as u32).to_le_bytes()); // PACK_SIZE
        h.extend_from_slice(&(len as u32).to_le_bytes()); // UNP_SIZE
        h.push(2); // HOST_OS Win32
        h.extend_from_slice(&crc32fast::hash(content).to_le_bytes());
        h.extend_from_slice(&0x0021_0000u32.to_le_bytes()); // 1980-01-01 00:00 DOS time
        h.push(20); // UNP_VER 2.0 is enough for stored data
        h.push(R4_METHOD_STORE);
        h.extend_from_slice(&(name_field.len() as u16).to_le_bytes());
        h.extend_from_slice(&(if is_dir { 0x10u32 } else { 0x20 }).to_le_bytes());
        if flags & FHD_LARGE != 0 {
            h.extend_from_slice(&((len >> 32) as u32).to_le_bytes());
            h.extend_from_slice(&((len >> 32) as u32).to_le_bytes());
        }
        h.extend_from_slice(&name_field);
        push_rar4_block(&mut out, &h);
        out.extend_from_slice(content);
    }
    // End block with the "skip if unknown" flag, as RAR 3.x+ writes it.
    push_rar4_block(&mut out, &[R4_ENDARC, 0x00, 0x40, 7, 0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 1000;

    fn sample_files() -> Vec<(&'static str, Vec<u8>)> {
        let big: Vec<u8> = (0..3000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        vec![
            ("readme.txt", b"hello, stored world\n".to_vec()),
            ("docs/", Vec::new()),
            (
                "docs/sub/r\u{e9}sum\u{e9} \u{43f}\u{440}\u{438}\u{432}\u{435}\u{442}.txt",
                b"unicode name".to_vec(),
            ),
            (
                "docs/\u{65e5}\u{672c}\u{8a9e}\u{1f600}.bin",
                vec![0, 1, 2, 3],
            ),
            ("empty.dat", Vec::new()),
            ("big.bin", big),
        ]
    }

    fn as_refs<'a>(files: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
        files.iter().map(|(n, c)| (*n, c.as_slice())).collect()
    }

    fn check_round_trip(data: &[u8], version: Version) {
        let files = sample_files();
        assert_eq!(signature(data), Some(version));
        let l = list(data, 100).unwrap();
        assert_eq!(l.version, version);
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        assert!(!l.truncated && !l.entries_cut && !l.headers_encrypted && !l.multivolume);
        assert_eq!(l.sfx_offset, 0);
        assert_eq!(l.entries.len(), files.len());
        for (e, (name, content)) in l.entries.iter().zip(&files) {
            let dir = name.ends_with('/');
            assert_eq!(e.name, name.trim_end_matches('/'));
            assert_eq!(e.is_dir, dir);
            assert_eq!(e.method, Method::Store);
            assert!(!e.encrypted && !e.split && !e.solid);
            assert_eq!(e.size, content.len() as u64);
            assert_eq!(e.packed.1, content.len() as u64);
            if dir {
                assert!(read_stored(data, e, CAP).is_none());
            } else {
                assert_eq!(e.crc32, Some(crc32fast::hash(content)));
                let (bytes, cut) = read_stored(data, e, 1 << 20).unwrap().unwrap();
                assert_eq!(&bytes, content);
                assert!(!cut);
            }
        }
    }

    #[test]
    fn rar5_round_trip() {
        let files = sample_files();
        let data = build_rar5_stored(&as_refs(&files));
        assert_eq!(
            data,
            build_rar5_stored(&as_refs(&files)),
            "builder must be deterministic"
        );
        check_round_trip(&data, Version::Rar5);
    }

    #[test]
    fn rar4_round_trip() {
        let files = sample_files();
        let data = build_rar4_stored(&as_refs(&files));
        assert_eq!(data, build_rar4_stored(&as_refs(&files)));
        // Non-ASCII names must really go through FHD_UNICODE, and the
        // stored separator is the Windows one.
        assert!(data.windows(4).any(|w| w == b"docs"));
        assert!(data.windows(5).any(|w| w == b"docs\\"));
        check_round_trip(&data, Version::Rar4);
    }

    #[test]
    fn rar4_headers_match_real_world_bytes() {
        // Archive header and end block as RAR 3.x/4.x writes them.
        let data = build_rar4_stored(&[]);
        assert_eq!(
            data,
            [
                b"Rar!\x1a\x07\x00".as_slice(),
                &[0xcf, 0x90, 0x73, 0, 0, 0x0d, 0, 0, 0, 0, 0, 0, 0],
                &[0xc4, 0x3d, 0x7b, 0, 0x40, 0x07, 0]
            ]
            .concat()
        );
        let l = list(&data, 10).unwrap();
        assert!(l.entries.is_empty() && l.anomalies.is_empty() && !l.truncated);
    }

    #[test]
    fn rar5_empty_archive_layout() {
        let data = build_rar5_stored(&[]);
        // Signature, archive header, end header: 8 + (4+1+3) * 2 bytes.
        assert_eq!(data.len(), 24);
        let l = list(&data, 10).unwrap();
        assert!(l.entries.is_empty() && l.anomalies.is_empty() && !l.truncated);
    }

    #[test]
    fn unicode_decoder_correction_run_and_modes() {
        // high byte 0x04; op 3 with correction 0x20 over ascii 0x10..0x12
        // gives U+0430..U+0432; then op 0 'x', op 1 0x44 -> U+0444, op 2 U+20AC.
        let ascii = [0x10, 0x11, 0x12, b'x', b'?', b'?'];
        let enc = [0x04, 0b11_00_01_10, 0x81, 0x20, b'x', 0x44, 0xac, 0x20];
        let units = decode_rar4_unicode(&ascii, &enc, 100);
        assert_eq!(
            String::from_utf16_lossy(&units),
            "\u{430}\u{431}\u{432}x\u{444}\u{20ac}"
        );
        // Plain copy run (no correction) of 2 + 1 bytes from the ascii name.
        let units = decode_rar4_unicode(b"abc", &[0, 0b11_000000, 0x01], 100);
        assert_eq!(String::from_utf16_lossy(&units), "abc");
        // A run asking for more than the ascii name holds stops there.
        let units = decode_rar4_unicode(b"ab", &[0, 0b11_000000, 0x7f], 100);
        assert_eq!(units.len(), 2);
        // Output cap holds even with many long runs.
        let enc: Vec<u8> = [0u8]
            .into_iter()
            .chain((0..1000).flat_map(|_| [0xff, 0x7f, 0x7f, 0x7f, 0x7f]))
            .collect();
        assert!(decode_rar4_unicode(&[b'a'; 5000], &enc, 300).len() <= 300);
    }

    #[test]
    fn rar4_unicode_flag_without_nul_is_utf8() {
        assert_eq!(
            rar4_name("d\u{e9}j\u{e0}.txt".as_bytes(), true),
            "d\u{e9}j\u{e0}.txt"
        );
        assert_eq!(rar4_name(b"plain.txt", false), "plain.txt");
        // Garbage after the NUL that decodes to nothing falls back to ascii.
        assert_eq!(rar4_name(b"fall.back\0", true), "fall.back");
    }

    #[test]
    fn read_stored_cap_and_crc() {
        for data in [
            build_rar5_stored(&[("a.bin", &[7u8; 500])]),
            build_rar4_stored(&[("a.bin", &[7u8; 500])]),
        ] {
            let l = list(&data, 10).unwrap();
            let e = &l.entries[0];
            let (bytes, cut) = read_stored(&data, e, 100).unwrap().unwrap();
            assert_eq!(bytes, vec![7u8; 100]);
            assert!(cut);
            // Corrupt one data byte: full read fails the CRC, capped read
            // cannot check and still returns.
            let mut bad = data.clone();
            bad[e.packed.0 as usize + 250] ^= 1;
            let l2 = list(&bad, 10).unwrap();
            assert!(
                l2.anomalies.is_empty(),
                "data bytes are not covered by header CRCs"
            );
            match read_stored(&bad, &l2.entries[0], 1 << 20) {
                Some(Err(Error::CrcMismatch { expected, actual })) => {
                    assert_eq!(expected, crc32fast::hash(&[7u8; 500]));
                    assert_ne!(expected, actual);
                }
                other => panic!("expected CRC mismatch, got {other:?}"),
            }
            assert!(read_stored(&bad, &l2.entries[0], 10).unwrap().is_ok());
            // An entry whose range is not in this input.
            let mut far = e.clone();
            far.packed = (u64::MAX - 3, 10);
            assert!(matches!(
                read_stored(&data, &far, 10),
                Some(Err(Error::OutOfRange { .. }))
            ));
        }
    }

    fn rar4_entry_header_offset(data: &[u8]) -> usize {
        // Signature 7 + archive header 13.
        assert_eq!(data[20 + 2], R4_FILE);
        20
    }

    fn rar4_patch(data: &mut [u8], at: usize, f: impl FnOnce(&mut [u8])) {
        let size = usize::from(u16::from_le_bytes([data[at + 5], data[at + 6]]));
        f(&mut data[at..at + size]);
        let crc = crc16_of(&data[at + 2..at + size]);
        data[at..at + 2].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn rar4_patched_encrypted_compressed_split_solid() {
        let base = build_rar4_stored(&[("x.exe", b"MZ payload")]);
        let at = rar4_entry_header_offset(&base);

        let mut enc = base.clone();
        rar4_patch(&mut enc, at, |h| h[3] |= FHD_PASSWORD as u8);
        let l = list(&enc, 10).unwrap();
        assert!(l.anomalies.is_empty());
        assert!(l.entries[0].encrypted);
        assert_eq!(l.entries[0].name, "x.exe");
        assert!(read_stored(&enc, &l.entries[0], CAP).is_none());

        let mut comp = base.clone();
        rar4_patch(&mut comp, at, |h| h[25] = 0x33);
        let l = list(&comp, 10).unwrap();
        assert_eq!(l.entries[0].method, Method::Compressed(0x33));
        assert!(read_stored(&comp, &l.entries[0], CAP).is_none());

        let mut split = base.clone();
        rar4_patch(&mut split, at, |h| {
            h[3] |= (FHD_SPLIT_AFTER | FHD_SOLID) as u8
        });
        let l = list(&split, 10).unwrap();
        assert!(l.entries[0].split && l.entries[0].solid);
        assert!(read_stored(&split, &l.entries[0], CAP).is_none());

        // Bad header CRC: noted, entry still listed and readable.
        let mut badcrc = base.clone();
        badcrc[at] ^= 0xff;
        let l = list(&badcrc, 10).unwrap();
        assert_eq!(l.anomalies.len(), 1, "{:?}", l.anomalies);
        assert!(l.anomalies[0].contains("CRC"));
        assert_eq!(
            read_stored(&badcrc, &l.entries[0], CAP).unwrap().unwrap().0,
            b"MZ payload"
        );
    }

    #[test]
    fn rar4_archive_flags() {
        let mut data = build_rar4_stored(&[("a", b"1")]);
        rar4_patch(&mut data, 7, |h| h[3] = (MHD_VOLUME | MHD_SOLID) as u8);
        let l = list(&data, 10).unwrap();
        assert!(l.multivolume && l.solid_archive && l.anomalies.is_empty());

        let mut data = build_rar4_stored(&[("secret.doc", b"x")]);
        rar4_patch(&mut data, 7, |h| h[3] = MHD_PASSWORD as u8);
        let l = list(&data, 10).unwrap();
        assert!(l.headers_encrypted);
        assert!(l.entries.is_empty());
    }

    #[test]
    fn rar4_old_main_header_with_embedded_comment_crc_quirk() {
        // RAR 2.x: the archive header grows by an embedded comment but its
        // CRC covers only the fixed 13 bytes.
        let data = build_rar4_stored(&[("a.txt", b"abc")]);
        let mut old = data[..20].to_vec();
        old[10] |= 0x02; // MHD_COMMENT
        old[12] = 13 + 5;
        let crc = crc16_of(&old[9..20]);
        old[7..9].copy_from_slice(&crc.to_le_bytes());
        old.extend_from_slice(b"CMTxx");
        old.extend_from_slice(&data[20..]);
        let l = list(&old, 10).unwrap();
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        assert_eq!(l.entries[0].name, "a.txt");
        assert_eq!(
            read_stored(&old, &l.entries[0], CAP).unwrap().unwrap().0,
            b"abc"
        );
    }

    #[test]
    fn rar4_file_header_crc_through_name_with_salt_quirk() {
        // CRC computed over fields up to the name only, with 8 salt bytes
        // after the name inside HEAD_SIZE.
        let data = build_rar4_stored(&[("s.txt", b"salted")]);
        let at = rar4_entry_header_offset(&data);
        let size = usize::from(u16::from_le_bytes([data[at + 5], data[at + 6]]));
        let mut h = data[at..at + size].to_vec();
        h[4] |= 0x04; // FHD_SALT (0x0400)
        let new_size = (size + 8) as u16;
        h[5..7].copy_from_slice(&new_size.to_le_bytes());
        let crc = crc16_of(&h[2..]);
        h[0..2].copy_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&[0x55; 8]);
        let mut out = data[..at].to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&data[at + size..]);
        let l = list(&out, 10).unwrap();
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        assert_eq!(
            read_stored(&out, &l.entries[0], CAP).unwrap().unwrap().0,
            b"salted"
        );
    }

    #[test]
    fn rar4_large_sizes_and_lies() {
        // FHD_LARGE with high parts: claims > 4 GiB, data clamped to input.
        let data = build_rar4_stored(&[("huge.iso", b"tiny")]);
        let at = rar4_entry_header_offset(&data);
        let size = usize::from(u16::from_le_bytes([data[at + 5], data[at + 6]]));
        let mut h = data[at..at + size].to_vec();
        h[4] |= (FHD_LARGE >> 8) as u8;
        let new_size = (size + 8) as u16;
        h[5..7].copy_from_slice(&new_size.to_le_bytes());
        let mut h2 = h[..32].to_vec();
        h2.extend_from_slice(&0u32.to_le_bytes()); // HIGH_PACK_SIZE
        h2.extend_from_slice(&1u32.to_le_bytes()); // HIGH_UNP_SIZE
        h2.extend_from_slice(&h[32..]);
        let crc = crc16_of(&h2[2..]);
        h2[0..2].copy_from_slice(&crc.to_le_bytes());
        let mut out = data[..at].to_vec();
        out.extend_from_slice(&h2);
        out.extend_from_slice(&data[at + size..]);
        let l = list(&out, 10).unwrap();
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        let e = &l.entries[0];
        assert_eq!(e.size, (1u64 << 32) + 4);
        assert_eq!(e.packed.1, 4);
        // Stored data shorter than the claimed size: partial bytes, cut.
        let (bytes, cut) = read_stored(&out, e, CAP).unwrap().unwrap();
        assert_eq!(bytes, b"tiny");
        assert!(cut);

        // Now the packed size lies too: walk ends truncated, range clamped.
        let pack_at = at + 32;
        out[pack_at..pack_at + 4].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        rar4_patch(&mut out, at, |_| {});
        let l = list(&out, 10).unwrap();
        assert!(l.truncated);
        let e = &l.entries[0];
        assert_eq!(e.packed.0 + e.packed.1, out.len() as u64);
        let (bytes, cut) = read_stored(&out, e, 3).unwrap().unwrap();
        assert_eq!(bytes.len(), 3);
        assert!(cut);
    }

    #[test]
    fn rar4_tiny_header_size_stops_walk() {
        let mut data = build_rar4_stored(&[("a", b"1"), ("b", b"2")]);
        let at = rar4_entry_header_offset(&data);
        data[at + 5] = 3;
        data[at + 6] = 0;
        let l = list(&data, 10).unwrap();
        assert!(l.entries.is_empty());
        assert!(l.anomalies.iter().any(|a| a.contains("< 7")));
    }

    #[test]
    fn rar5_patched_encrypted_compressed_split_and_service() {
        // Encryption record: size, type 1, version 0, flags 0, kdf count, salt, iv.
        let mut crypt = vec![];
        let mut rec = vec![EXTRA_CRYPT as u8, 0, 0, 15];
        rec.extend_from_slice(&[0xaa; 32]);
        push_vint(&mut crypt, rec.len() as u64);
        crypt.extend_from_slice(&rec);
        // A file-time record (Unix format, mtime) in front, which must just
        // be skipped.
        let mut extra = vec![6u8, 3, 0x03, 0xde, 0xad, 0xbe, 0x5f];
        extra.extend_from_slice(&crypt);

        let mut enc = Rar5Spec::stored("secret.txt", b"ciphertext......");
        enc.extra = extra;
        let mut comp = Rar5Spec::stored("packed.exe", b"not really packed");
        comp.comp_info = (3 << 7) | 0x40 | (2 << 10);
        let mut split = Rar5Spec::stored("part.bin", b"first half");
        split.split_flags = HFL_SPLIT_AFTER;
        let mut svc = Rar5Spec::stored("CMT", b"archive comment");
        svc.header_type = R5_SERVICE;
        let plain = Rar5Spec::stored("plain.txt", b"ok");
        let data = build_rar5(&[enc, comp, svc, split, plain]);

        let l = list(&data, 10).unwrap();
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        let names: Vec<&str> = l.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["secret.txt", "packed.exe", "part.bin", "plain.txt"]);
        assert!(l.entries[0].encrypted);
        assert!(read_stored(&data, &l.entries[0], CAP).is_none());
        assert_eq!(l.entries[1].method, Method::Compressed(3));
        assert!(l.entries[1].solid);
        assert!(read_stored(&data, &l.entries[1], CAP).is_none());
        assert!(l.entries[2].split);
        assert!(read_stored(&data, &l.entries[2], CAP).is_none());
        assert_eq!(
            read_stored(&data, &l.entries[3], CAP).unwrap().unwrap().0,
            b"ok"
        );
    }

    #[test]
    fn rar5_encryption_header_means_headers_encrypted() {
        let mut data = RAR5_SIG.to_vec();
        let mut body = vec![4u8, 0, 0, 0, 15];
        body.extend_from_slice(&[0x11; 16]);
        push_rar5_header(&mut data, &body);
        data.extend_from_slice(&[0x5a; 200]); // encrypted headers
        let l = list(&data, 10).unwrap();
        assert!(l.headers_encrypted);
        assert!(l.entries.is_empty());
        assert!(!l.truncated);
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
    }

    #[test]
    fn rar5_archive_flags_and_unknown_size() {
        let mut data = RAR5_SIG.to_vec();
        push_rar5_header(&mut data, &[1, 0, (MAIN_VOLUME | MAIN_SOLID) as u8]);
        // File with "unpacked size unknown": size falls back to the data size.
        let body = [
            2u8,
            HFL_DATA as u8,
            3,
            FF_UNKNOWN_SIZE as u8,
            0,
            0,
            0,
            1,
            1,
            b'u',
        ];
        push_rar5_header(&mut data, &body);
        data.extend_from_slice(b"abc");
        push_rar5_header(&mut data, &[5, 0, 1]);
        let l = list(&data, 10).unwrap();
        assert!(l.multivolume && l.solid_archive);
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        assert_eq!(l.entries[0].name, "u");
        assert_eq!(l.entries[0].size, 3);
        assert_eq!(l.entries[0].crc32, None);
        assert_eq!(
            read_stored(&data, &l.entries[0], CAP).unwrap().unwrap(),
            (b"abc".to_vec(), false)
        );
    }

    #[test]
    fn rar5_backslash_names_normalised() {
        let data = build_rar5_stored(&[("win\\style\\path.txt", b"x")]);
        assert_eq!(
            list(&data, 10).unwrap().entries[0].name,
            "win/style/path.txt"
        );
    }

    #[test]
    fn sfx_stub_before_signature() {
        for (build, v) in [
            (
                build_rar5_stored as fn(&[(&str, &[u8])]) -> Vec<u8>,
                Version::Rar5,
            ),
            (build_rar4_stored, Version::Rar4),
        ] {
            let arc = build(&[("inner.txt", b"from sfx")]);
            let mut stub = b"MZ\x90\x00".to_vec();
            stub.resize(5000, 0xcc);
            // Decoys inside the stub: a wrong version byte and a RAR4
            // signature followed by garbage.
            stub[100..107].copy_from_slice(b"Rar!\x1a\x07\x02");
            stub[300..307].copy_from_slice(RAR4_SIG);
            let mut data = stub.clone();
            data.extend_from_slice(&arc);
            assert_eq!(find_signature(&data), Some((v, 5000)));
            assert_eq!(signature(&data), Some(v));
            let l = list(&data, 10).unwrap();
            assert_eq!(l.sfx_offset, 5000);
            assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
            assert_eq!(
                read_stored(&data, &l.entries[0], CAP).unwrap().unwrap().0,
                b"from sfx"
            );

            // Too far in: not found.
            let mut far = vec![0u8; SFX_SEARCH_LIMIT + 1];
            far.extend_from_slice(&arc);
            assert_eq!(signature(&far), None);
            assert!(matches!(list(&far, 10), Err(Error::NotRar)));
        }
    }

    #[test]
    fn not_rar_inputs() {
        for d in [
            &b""[..],
            b"Rar!",
            b"Rar!\x1a\x07\x02\x00",
            b"PK\x03\x04hello",
        ] {
            assert_eq!(signature(d), None);
            assert!(matches!(list(d, 10), Err(Error::NotRar)));
        }
    }

    #[test]
    fn max_entries_cut() {
        let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"z"[..])).collect();
        for data in [build_rar5_stored(&files), build_rar4_stored(&files)] {
            let l = list(&data, 3).unwrap();
            assert_eq!(l.entries.len(), 3);
            assert!(l.entries_cut);
            let l = list(&data, 0).unwrap();
            assert!(l.entries.is_empty() && l.entries_cut);
            let l = list(&data, 10).unwrap();
            assert!(l.entries.len() == 10 && !l.entries_cut);
        }
    }

    #[test]
    fn rar5_huge_counts_and_lying_sizes() {
        // 50k minimal service headers, each with a bad CRC: walk is linear,
        // no entries, anomalies capped.
        let mut data = RAR5_SIG.to_vec();
        push_rar5_header(&mut data, &[1, 0, 0]);
        for _ in 0..50_000 {
            data.extend_from_slice(&[0, 0, 0, 0, 2, 3, 0]);
        }
        let l = list(&data, 10).unwrap();
        assert!(l.entries.is_empty());
        assert_eq!(l.anomalies.len(), MAX_ANOMALIES + 1);
        assert!(l.truncated, "no end header");

        // Data size vint of 2^63: walk stops truncated, range clamped.
        let mut data = RAR5_SIG.to_vec();
        push_rar5_header(&mut data, &[1, 0, 0]);
        let mut body = vec![2u8, HFL_DATA as u8];
        push_vint(&mut body, 1 << 63);
        body.extend_from_slice(&[FF_CRC32 as u8]);
        push_vint(&mut body, u64::MAX);
        body.extend_from_slice(&[0, 1, 2, 3, 4, 0, 1, 1, b'h']);
        push_rar5_header(&mut data, &body);
        data.extend_from_slice(&[9; 50]);
        let l = list(&data, 10).unwrap();
        assert!(l.truncated);
        let e = &l.entries[0];
        assert_eq!(e.size, u64::MAX);
        assert_eq!(e.packed.0 + e.packed.1, data.len() as u64);
        let (bytes, cut) = read_stored(&data, e, 1 << 30).unwrap().unwrap();
        assert_eq!(bytes.len(), 50);
        assert!(cut);

        // Header size over 2 MiB and an 11-byte vint: stopped with a note.
        let mut data = RAR5_SIG.to_vec();
        data.extend_from_slice(&[0, 0, 0, 0, 0x81, 0x80, 0x80, 0x01]);
        let l = list(&data, 10).unwrap();
        assert!(l.anomalies.iter().any(|a| a.contains("implausible")));
        let mut data = RAR5_SIG.to_vec();
        data.extend_from_slice(&[0, 0, 0, 0]);
        data.extend_from_slice(&[0xff; 11]);
        data.push(1);
        let l = list(&data, 10).unwrap();
        assert!(l.anomalies.iter().any(|a| a.contains("10 bytes")));
        // Extra area bigger than the header.
        let mut data = RAR5_SIG.to_vec();
        push_rar5_header(&mut data, &[2, HFL_EXTRA as u8, 100, 0, 0, 0, 0, 0, 0]);
        let l = list(&data, 10).unwrap();
        assert!(l.anomalies.iter().any(|a| a.contains("extra area")));
    }

    #[test]
    fn vint_limits() {
        assert_eq!(read_vint(&[0x7f], 0), Ok((127, 1)));
        assert_eq!(read_vint(&[0x80, 0x01], 0), Ok((128, 2)));
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(read_vint(&max, 0), Ok((u64::MAX, 10)));
        assert_eq!(read_vint(&[0xff; 11], 0), Err(VintErr::TooLong));
        assert_eq!(read_vint(&[0x80], 0), Err(VintErr::Short));
        // Padded zero, as RAR writes when it preallocates vint space.
        assert_eq!(read_vint(&[0x85, 0x80, 0x00], 0), Ok((5, 3)));
    }

    #[test]
    fn trailing_bytes_after_end_noted() {
        for mut data in [
            build_rar5_stored(&[("a", b"1")]),
            build_rar4_stored(&[("a", b"1")]),
        ] {
            data.extend_from_slice(b"appended polyglot");
            let l = list(&data, 10).unwrap();
            assert_eq!(l.entries.len(), 1);
            assert!(
                l.anomalies.iter().any(|a| a.contains("17 bytes after")),
                "{:?}",
                l.anomalies
            );
        }
    }

    fn check_hostile(data: &[u8], max_entries: usize) {
        if let Ok(l) = list(data, max_entries) {
            assert!(l.entries.len() <= max_entries);
            assert!(l.anomalies.len() <= MAX_ANOMALIES + 1);
            for e in &l.entries {
                assert!(e.packed.0 + e.packed.1 <= data.len() as u64);
                assert!(e.name.len() <= data.len() * 3);
                if let Some(Ok((bytes, _))) = read_stored(data, e, 64) {
                    assert!(bytes.len() <= 64);
                }
            }
        }
    }

    fn samples() -> Vec<Vec<u8>> {
        let files = sample_files();
        let files = as_refs(&files);
        vec![build_rar5_stored(&files), build_rar4_stored(&files)]
    }

    #[test]
    fn truncated_at_every_offset() {
        for data in samples() {
            let step = if data.len() > 20 * 1024 { 7 } else { 1 };
            for cut in (0..data.len()).step_by(step) {
                let d = &data[..cut];
                check_hostile(d, 100);
                if let Ok(l) = list(d, 100) {
                    assert!(
                        l.truncated || !l.anomalies.is_empty(),
                        "cut {cut} looked clean"
                    );
                }
            }
        }
    }

    #[test]
    fn mutation_fuzz() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let samples = samples();
        for i in 0..3000 {
            let mut d = samples[i % samples.len()].clone();
            let n = 1 + (next() % 16) as usize;
            for _ in 0..n {
                let at = (next() % d.len() as u64) as usize;
                d[at] = next() as u8;
            }
            check_hostile(&d, 4);
        }
    }
}
