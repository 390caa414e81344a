//! Listing and reading of ISO 9660 (ECMA-119) and UDF (ECMA-167 / OSTA UDF) disk images.
//!
//! Attackers mail `.iso`/`.img` files because Windows mounts them on a double click. This module
//! lists every regular file of every tree it finds and hands back byte extents so the scanner sees
//! each object. Nothing is written to disk; `read` copies extents into memory under a caller cap.
//!
//! Supported:
//! - ISO 9660 primary tree, walked through directory records from the root (the path table is
//!   ignored because it can disagree with the records), multi-extent files (flag bit 7), `;1`
//!   version suffixes, extended attribute record offsets, hidden flag, Rock Ridge `NM` names found
//!   directly in the System Use field (after the `SP` skip); `CE` continuation areas are not read.
//! - Joliet supplementary tree (`%/@`, `%/C`, `%/E`, UCS-2 big-endian names).
//! - UDF 1.02–2.60: anchor at block 256, last block or last-256 for block sizes 2048, 512, 1024 and
//!   4096; main VDS (reserve VDS as fallback) with pointer chains; type 1 partition maps, sparable
//!   maps read as plain physical ones (sparing table ignored, reported), metadata partitions (UDF
//!   2.50+, main file then mirror); File Entry and Extended File Entry; short, long, extended and
//!   embedded allocation descriptors with allocation extent continuations; File Identifier
//!   Descriptors with OSTA CS0 names (8 and 16 bit, 254/255 treated alike).
//! - Bridge images: all trees are walked, files are deduplicated by their extents (so hard links,
//!   or two names for the same bytes, are one entry under the first name seen), the path comes
//!   from UDF, then Joliet, then ISO 9660 (what a Windows user sees first), and these become
//!   anomalies: bytes listed by only some trees, a path that two trees map to different bytes,
//!   and a name present in one long-name tree (UDF, Joliet) but not the other.
//! - Names are sanitised ('/', '\\', control characters, "." and ".." replaced) and whole paths
//!   are cut at [`MAX_PATH_BYTES`]. Hidden flags (ISO existence bit, UDF FID hidden bit) are kept.
//! - A deterministic builder ([`build_iso9660`], [`build_udf`], [`build_bridge`],
//!   [`build_image`]) for harmless samples; 7-Zip, isoinfo and udfinfo read its output.
//!
//! Not supported (reported as anomalies where detectable): UDF virtual (VAT) partitions, named
//!   streams of Extended File Entries, sparse (unrecorded) extents (skipped, so the entry reads as
//!   truncated), interleaved ISO files (read as contiguous), raw 2352-byte CD sectors, High Sierra,
//!   El Torito boot images as separate objects, and volumes spread over several discs.
//!
//! Hostile-input guards: every read goes through checked, clamped slicing; directories are walked
//! with an explicit stack and a visited set of directory extents/ICBs (cycles), depth is capped at
//! [`MAX_DEPTH`], each tree may visit at most [`MAX_RECORDS`] directory records and read at most
//! [`DIR_BYTES_BUDGET`] directory bytes, UDF continuation chains, descriptor sequences and partition
//! maps have fixed hop limits, UDF extent pieces and the extents kept are capped in total,
//! `max_entries` caps files, pending directories share their parent's path (memory follows the
//! image size, not depth × width), and no allocation is sized from a number read from the image.
//! Descriptor tag identifiers and checksums must hold; CRC mismatches are only counted and
//! reported. Anomaly lines are capped at [`MAX_ANOMALIES`].

// Writers and checks beyond what the gateway calls serve the tests and the
// sample generators (crate::samples).
#![cfg_attr(not(test), allow(dead_code))]

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

/// Deepest directory nesting that is walked (root is depth 0).
pub const MAX_DEPTH: usize = 32;
/// Directory records (ISO) or File Identifier Descriptors (UDF) visited per tree.
pub const MAX_RECORDS: usize = 100_000;
/// Directory bytes scanned per tree.
pub const DIR_BYTES_BUDGET: u64 = 256 << 20;
/// Anomaly lines kept; a final line counts the rest.
pub const MAX_ANOMALIES: usize = 200;
/// Extents kept over the whole listing; bounds memory when many files share huge descriptor lists.
const MAX_EXTENTS_TOTAL: usize = 1 << 20;
/// Raw pieces gathered for one file or directory before clamping.
const MAX_PIECES_PER_FILE: usize = 65_536;
/// Raw pieces produced per UDF tree; a metadata partition can split each descriptor into many.
const MAX_PIECES_PER_TREE: usize = 4 << 20;
/// Allocation extent descriptor blocks followed per tree.
const MAX_AED_BLOCKS: usize = 100_000;
/// Allocation extent descriptor blocks followed for one file.
const MAX_AED_HOPS: usize = 256;
/// Volume descriptors examined in the recognition area and in one UDF descriptor sequence.
const MAX_VDS: usize = 64;
const MAX_VDS_HOPS: usize = 16;
const MAX_PARTITION_MAPS: usize = 64;
const ISO_SECTOR: u64 = 2048;

const TAG_AVDP: u16 = 2;
const TAG_VDP: u16 = 3;
const TAG_PD: u16 = 5;
const TAG_LVD: u16 = 6;
const TAG_TD: u16 = 8;
const TAG_FSD: u16 = 256;
const TAG_FID: u16 = 257;
const TAG_AED: u16 = 258;
const TAG_FE: u16 = 261;
const TAG_EFE: u16 = 266;

/// Which directory tree of the image a file was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tree {
    Iso9660,
    Joliet,
    Udf,
}

/// One file of the image, possibly listed by several trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// "DIR/SUB/file.exe", from the tree with the best names (UDF, then Joliet, then ISO 9660).
    pub path: String,
    /// Size the directory claims.
    pub size: u64,
    /// (byte offset, byte length) into the image, clamped to the image, adjacent pieces merged.
    pub extents: Vec<(u64, u64)>,
    /// The extents cover less than `size` (image cut short, lying size, or skipped sparse extent).
    pub truncated: bool,
    /// Trees that list this file, in walk order (Udf, Joliet, Iso9660).
    pub trees: Vec<Tree>,
    /// Some tree marks the file hidden (a favourite trick: hidden DLL next to a visible LNK).
    pub hidden: bool,
}

/// Result of [`list`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// Trees that were walked successfully.
    pub trees: Vec<Tree>,
    /// Structural oddities and tree disagreements, one per line, capped.
    pub anomalies: Vec<String>,
    /// `max_entries` (or a walk budget) stopped the listing early.
    pub entries_cut: bool,
}

#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("not an ISO 9660 or UDF image")]
    NotAnImage,
    #[error("malformed image: {0}")]
    Malformed(String),
}

// ---------------------------------------------------------------------------------------------
// Byte helpers: never panic, return None when the image is too short.

fn arr<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}
fn byte(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}
fn le16(b: &[u8], off: usize) -> Option<u16> {
    arr(b, off).map(u16::from_le_bytes)
}
fn le32(b: &[u8], off: usize) -> Option<u32> {
    arr(b, off).map(u32::from_le_bytes)
}
fn le64(b: &[u8], off: usize) -> Option<u64> {
    arr(b, off).map(u64::from_le_bytes)
}
fn sub(img: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let s = usize::try_from(off).ok()?;
    let l = usize::try_from(len).ok()?;
    img.get(s..s.checked_add(l)?)
}
fn sub_clamped(img: &[u8], off: u64, len: u64) -> &[u8] {
    let Ok(s) = usize::try_from(off) else {
        return &[];
    };
    let Some(rest) = img.get(s..) else {
        return &[];
    };
    let l = usize::try_from(len).unwrap_or(usize::MAX).min(rest.len());
    rest.get(..l).unwrap_or(&[])
}

const CRC_TABLE: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u16) << 8;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000 != 0 {
                (c << 1) ^ 0x1021
            } else {
                c << 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-ITU-T (polynomial 0x1021, initial 0) as ECMA-167 7.2.6 specifies for descriptor tags.
fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        let idx = usize::from((crc >> 8) as u8 ^ b);
        (crc << 8) ^ CRC_TABLE.get(idx).copied().unwrap_or(0)
    })
}

fn tag_checksum(d: &[u8]) -> u8 {
    d.iter()
        .take(16)
        .enumerate()
        .filter(|(i, _)| *i != 4)
        .fold(0u8, |a, (_, b)| a.wrapping_add(*b))
}

// ---------------------------------------------------------------------------------------------
// Walk state shared by all trees.

struct Ctx<'a> {
    img: &'a [u8],
    anomalies: Vec<String>,
    suppressed: usize,
    records: usize,
    records_noted: bool,
    dir_bytes: u64,
    aed_blocks: usize,
    extents_total: usize,
    extents_noted: bool,
    crc_bad: usize,
    max_entries: usize,
    cut: bool,
}

impl<'a> Ctx<'a> {
    fn new(img: &'a [u8], max_entries: usize) -> Self {
        Ctx {
            img,
            anomalies: Vec::new(),
            suppressed: 0,
            records: 0,
            records_noted: false,
            dir_bytes: 0,
            aed_blocks: 0,
            extents_total: 0,
            extents_noted: false,
            crc_bad: 0,
            max_entries,
            cut: false,
        }
    }

    fn note(&mut self, msg: impl Into<String>) {
        if self.anomalies.len() < MAX_ANOMALIES {
            self.anomalies.push(msg.into());
        } else {
            self.suppressed += 1;
        }
    }

    /// Budgets are per tree so a hostile UDF tree cannot starve the ISO 9660 one.
    fn start_tree(&mut self) {
        self.records = 0;
        self.records_noted = false;
        self.dir_bytes = 0;
        self.aed_blocks = 0;
    }

    fn tick(&mut self) -> bool {
        if self.records >= MAX_RECORDS {
            if !self.records_noted {
                self.records_noted = true;
                self.cut = true;
                self.note(format!(
                    "more than {MAX_RECORDS} directory records, walk stopped"
                ));
            }
            return false;
        }
        self.records += 1;
        true
    }

    fn take_dir_bytes(&mut self, n: u64) -> bool {
        self.dir_bytes = self.dir_bytes.saturating_add(n);
        if self.dir_bytes > DIR_BYTES_BUDGET {
            self.cut = true;
            self.note(format!(
                "more than {DIR_BYTES_BUDGET} directory bytes, walk stopped"
            ));
            return false;
        }
        true
    }

    /// Trims raw pieces to `size` in file order, clamps them to the image and merges neighbours.
    fn finish_extents(&mut self, pieces: &[(u64, u64)], size: u64) -> (Vec<(u64, u64)>, bool) {
        let img_len = self.img.len() as u64;
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut logical = 0u64;
        let mut covered = 0u64;
        for &(off, len) in pieces {
            if logical >= size {
                break;
            }
            let want = len.min(size - logical);
            logical += want;
            if off >= img_len || want == 0 {
                continue;
            }
            let avail = want.min(img_len - off);
            if let Some(last) = out.last_mut()
                && last.0.checked_add(last.1) == Some(off)
            {
                last.1 += avail;
                covered += avail;
                continue;
            }
            if self.extents_total >= MAX_EXTENTS_TOTAL {
                if !self.extents_noted {
                    self.extents_noted = true;
                    self.note(format!(
                        "more than {MAX_EXTENTS_TOTAL} extents in total, later files truncated"
                    ));
                }
                break;
            }
            self.extents_total += 1;
            covered += avail;
            out.push((off, avail));
        }
        (out, covered < size)
    }

    /// Validates a descriptor tag: identifier and checksum must hold, a CRC mismatch is only noted.
    fn check_tag(&mut self, d: &[u8], want: &[u16]) -> Option<u16> {
        let id = le16(d, 0)?;
        if !want.contains(&id) || d.len() < 16 || tag_checksum(d) != byte(d, 4) {
            return None;
        }
        let crc = le16(d, 8)?;
        let crc_len = usize::from(le16(d, 10)?);
        match d.get(16..16 + crc_len) {
            Some(body) if crc16(body) == crc => {}
            Some(_) => self.crc_bad += 1,
            None => self.note(format!(
                "descriptor tag {id}: CRC length {crc_len} runs past the descriptor"
            )),
        }
        Some(id)
    }
}

/// One file as one tree sees it, before merging.
struct Raw {
    path: String,
    size: u64,
    extents: Vec<(u64, u64)>,
    truncated: bool,
    hidden: bool,
}

/// Longest path kept; deeper or longer names are cut so hostile nesting cannot blow up memory.
pub const MAX_PATH_BYTES: usize = 1024;

fn join(parent: &str, name: &str) -> String {
    let mut s = parent.to_string();
    if !s.is_empty() {
        if s.len() >= MAX_PATH_BYTES {
            return s;
        }
        s.push('/');
    }
    for c in name.chars() {
        if s.len() + c.len_utf8() > MAX_PATH_BYTES {
            break;
        }
        s.push(c);
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Volume recognition area.

#[derive(Default)]
struct Vrs {
    pvd: Option<u64>,
    joliet: Option<u64>,
    nsr: bool,
}

fn scan_vrs(img: &[u8]) -> Vrs {
    let mut v = Vrs::default();
    let mut bea = false;
    for i in 0..MAX_VDS as u64 {
        let off = (16 + i) * ISO_SECTOR;
        let Some(d) = sub(img, off, 7) else { break };
        let ty = byte(d, 0);
        match d.get(1..6).unwrap_or(&[]) {
            b"CD001" => {
                if ty == 1 && v.pvd.is_none() {
                    v.pvd = Some(off);
                } else if ty == 2 && v.joliet.is_none() {
                    let esc = sub_clamped(img, off + 88, 32);
                    let joliet = esc
                        .windows(3)
                        .any(|w| w == b"%/@" || w == b"%/C" || w == b"%/E");
                    if joliet {
                        v.joliet = Some(off);
                    }
                }
            }
            b"BEA01" => bea = true,
            b"NSR02" | b"NSR03" => v.nsr |= bea,
            b"BOOT2" | b"CDW02" => {}
            _ => break,
        }
    }
    v
}

/// True when the volume recognition area holds an ISO 9660 primary volume descriptor.
///
/// Descriptors are read at 0x8000 + n·0x800 (identifiers at 0x8001, 0x8801, 0x9001, …) for at
/// most 64 descriptors while the identifiers are known ones (CD001, BEA01, NSR02/03, TEA01 ends,
/// BOOT2, CDW02), so a boot record or supplementary descriptor first does not hide the primary.
pub fn is_iso9660(img: &[u8]) -> bool {
    scan_vrs(img).pvd.is_some()
}

/// True when the volume recognition area has BEA01 followed by NSR02 or NSR03 (2048-byte steps
/// from 0x8000). [`list`] also accepts a UDF image without it when an anchor descriptor is found.
pub fn is_udf(img: &[u8]) -> bool {
    scan_vrs(img).nsr
}

// ---------------------------------------------------------------------------------------------
// ISO 9660 / Joliet.

struct DirRec<'a> {
    xa: u64,
    loc: u64,
    size: u64,
    flags: u8,
    unit: u8,
    name: &'a [u8],
    su: &'a [u8],
}

impl<'a> DirRec<'a> {
    fn parse(r: &'a [u8]) -> Option<Self> {
        let len = usize::from(*r.first()?);
        if len < 34 {
            return None;
        }
        let r = r.get(..len)?;
        let nl = usize::from(byte(r, 32));
        let name = r.get(33..33 + nl)?;
        let su_start = 33 + nl + usize::from(nl.is_multiple_of(2));
        Some(DirRec {
            xa: u64::from(byte(r, 1)),
            loc: u64::from(le32(r, 2)?),
            size: u64::from(le32(r, 10)?),
            flags: byte(r, 25),
            unit: byte(r, 26),
            name,
            su: r.get(su_start..).unwrap_or(&[]),
        })
    }
}

fn susp_skip(su: &[u8]) -> Option<usize> {
    if su.get(0..2)? == b"SP" && byte(su, 2) >= 7 && su.get(4..6)? == [0xBE, 0xEF] {
        Some(usize::from(byte(su, 6)))
    } else {
        None
    }
}

fn rr_name(su: &[u8], skip: usize) -> Option<String> {
    let mut i = skip;
    let mut name = Vec::new();
    let mut found = false;
    while let Some(sig) = su.get(i..i + 2) {
        let l = usize::from(byte(su, i + 2));
        if l < 4 {
            break;
        }
        let Some(e) = su.get(i..i + l) else { break };
        if sig == b"ST" {
            break;
        }
        if sig == b"NM" {
            let flags = byte(e, 4);
            if flags & 0x06 == 0 {
                name.extend_from_slice(e.get(5..).unwrap_or(&[]));
                found = true;
            }
            if flags & 1 == 0 && found {
                break;
            }
        }
        i += l;
    }
    (found && !name.is_empty()).then(|| String::from_utf8_lossy(&name).into_owned())
}

fn iso_name(raw: &[u8], joliet: bool) -> String {
    let mut s: String = if joliet {
        let units = raw
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([byte(c, 0), byte(c, 1)]));
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    } else {
        raw.iter().map(|&b| char::from(b)).collect()
    };
    if let Some((base, ver)) = s.rsplit_once(';')
        && ver.chars().all(|c| c.is_ascii_digit())
    {
        s = base.to_string();
    }
    if !joliet && s.ends_with('.') {
        s.pop();
    }
    s
}

struct Pending {
    path: String,
    size: u64,
    pieces: Vec<(u64, u64)>,
    hidden: bool,
}

fn iso_emit(ctx: &mut Ctx, files: &mut Vec<Raw>, p: Pending) {
    if files.len() >= ctx.max_entries {
        ctx.cut = true;
        return;
    }
    let (extents, truncated) = ctx.finish_extents(&p.pieces, p.size);
    files.push(Raw {
        path: p.path,
        size: p.size,
        extents,
        truncated,
        hidden: p.hidden,
    });
}

fn iso_tree(ctx: &mut Ctx, vd_off: u64, joliet: bool) -> Result<Vec<Raw>, String> {
    let img = ctx.img;
    let tree = if joliet { Tree::Joliet } else { Tree::Iso9660 };
    let vd = sub(img, vd_off, ISO_SECTOR).ok_or("volume descriptor cut short")?;
    let bs = match le16(vd, 128) {
        Some(b @ (512 | 1024 | 2048)) => u64::from(b),
        other => {
            ctx.note(format!(
                "{tree:?}: logical block size {other:?} unusable, using 2048"
            ));
            ISO_SECTOR
        }
    };
    let root = vd
        .get(156..190)
        .and_then(DirRec::parse)
        .ok_or("bad root directory record")?;
    let root_off = root
        .loc
        .checked_add(root.xa)
        .and_then(|b| b.checked_mul(bs))
        .ok_or("root directory location overflows")?;
    if root_off >= img.len() as u64 {
        return Err(format!("{tree:?}: root directory outside the image"));
    }
    // Rock Ridge announces itself with SP in the root's own "." record.
    let skip = sub_clamped(img, root_off, root.size.min(bs))
        .first()
        .is_some_and(|&l| l >= 34)
        .then(|| DirRec::parse(sub_clamped(img, root_off, 255)))
        .flatten()
        .and_then(|r| susp_skip(r.su));

    let mut files = Vec::new();
    let mut visited = HashSet::new();
    // Pending directories keep their parent's path shared and their own name only, so a huge
    // directory of deep subdirectories costs memory in proportion to the image, not to depth.
    let mut stack: Vec<(u64, u64, Rc<str>, String, usize)> =
        vec![(root_off, root.size, Rc::from(""), String::new(), 0usize)];
    'dirs: while let Some((off, len, parent, name, depth)) = stack.pop() {
        let path: Rc<str> = Rc::from(join(&parent, &name));
        if !visited.insert(off) {
            ctx.note(format!(
                "{tree:?}: directory cycle at '{path}' (extent {off} already walked)"
            ));
            continue;
        }
        let dir = sub_clamped(img, off, len);
        if (dir.len() as u64) < len {
            ctx.note(format!(
                "{tree:?}: directory '{path}' runs past the end of the image"
            ));
        }
        if !ctx.take_dir_bytes(dir.len() as u64) {
            break;
        }
        let next_sector = |p: usize| (p / bs as usize + 1) * bs as usize;
        let mut pos = 0usize;
        let mut pending: Option<Pending> = None;
        let mut subdirs = Vec::new();
        while pos < dir.len() {
            let l = usize::from(byte(dir, pos));
            if l == 0 {
                pos = next_sector(pos);
                continue;
            }
            let Some(r) = dir.get(pos..pos + l).and_then(DirRec::parse) else {
                ctx.note(format!(
                    "{tree:?}: bad directory record in '{path}' at byte {pos}"
                ));
                pos = next_sector(pos);
                continue;
            };
            pos += l;
            if !ctx.tick() {
                break 'dirs;
            }
            if r.name == [0] || r.name == [1] {
                continue;
            }
            let name = skip
                .and_then(|s| rr_name(r.su, s))
                .unwrap_or_else(|| iso_name(r.name, joliet));
            let name = super::path_component(name);
            let child = join(&path, &name);
            let Some(data_off) = r.loc.checked_add(r.xa).and_then(|b| b.checked_mul(bs)) else {
                ctx.note(format!("{tree:?}: location of '{child}' overflows"));
                continue;
            };
            if r.flags & 2 != 0 {
                if let Some(p) = pending.take() {
                    ctx.note(format!(
                        "{tree:?}: multi-extent chain of '{}' not terminated",
                        p.path
                    ));
                    iso_emit(ctx, &mut files, p);
                }
                if depth + 1 > MAX_DEPTH {
                    ctx.note(format!(
                        "{tree:?}: '{child}' deeper than {MAX_DEPTH}, skipped"
                    ));
                } else {
                    subdirs.push((data_off, r.size, Rc::clone(&path), name, depth + 1));
                }
                continue;
            }
            if r.unit != 0 {
                ctx.note(format!(
                    "{tree:?}: '{child}' is interleaved, read as contiguous"
                ));
            }
            let mut cur = match pending.take() {
                Some(p) if p.path == child && p.pieces.len() < MAX_PIECES_PER_FILE => p,
                Some(p) => {
                    ctx.note(format!(
                        "{tree:?}: multi-extent chain of '{}' not terminated",
                        p.path
                    ));
                    iso_emit(ctx, &mut files, p);
                    Pending {
                        path: child,
                        size: 0,
                        pieces: Vec::new(),
                        hidden: false,
                    }
                }
                None => Pending {
                    path: child,
                    size: 0,
                    pieces: Vec::new(),
                    hidden: false,
                },
            };
            cur.size = cur.size.saturating_add(r.size);
            cur.pieces.push((data_off, r.size));
            cur.hidden |= r.flags & 1 != 0;
            if r.flags & 0x80 != 0 {
                pending = Some(cur);
            } else {
                iso_emit(ctx, &mut files, cur);
            }
        }
        if let Some(p) = pending.take() {
            ctx.note(format!(
                "{tree:?}: multi-extent chain of '{}' not terminated",
                p.path
            ));
            iso_emit(ctx, &mut files, p);
        }
        if files.len() >= ctx.max_entries && ctx.cut {
            break;
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(files)
}

// ---------------------------------------------------------------------------------------------
// UDF.

enum PartMap {
    Physical {
        start: u64,
    },
    /// Metadata file pieces as (logical start, absolute offset, length), sorted by logical start.
    Meta {
        map: Vec<(u64, u64, u64)>,
    },
    Unsupported,
}

struct Udf<'a> {
    img: &'a [u8],
    bs: u64,
    parts: Vec<PartMap>,
    pieces_left: Cell<usize>,
}

struct Fe {
    file_type: u8,
    size: u64,
    pieces: Vec<(u64, u64)>,
    streams: bool,
    sparse: bool,
}

fn udf_anchor(img: &[u8]) -> Option<(u64, u64)> {
    for bs in [2048u64, 512, 1024, 4096] {
        let n = img.len() as u64 / bs;
        for loc in [Some(256), n.checked_sub(1), n.checked_sub(257)]
            .into_iter()
            .flatten()
        {
            let Some(d) = sub(img, loc * bs, 512) else {
                continue;
            };
            if le16(d, 0) == Some(TAG_AVDP)
                && tag_checksum(d) == byte(d, 4)
                && le32(d, 12).map(u64::from) == Some(loc)
            {
                return Some((bs, loc * bs));
            }
        }
    }
    None
}

fn cs0(b: &[u8]) -> String {
    match b.split_first() {
        Some((8 | 254, rest)) => rest.iter().map(|&c| char::from(c)).collect(),
        Some((16 | 255, rest)) => {
            let units = rest
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([byte(c, 0), byte(c, 1)]));
            char::decode_utf16(units)
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }
        Some((_, rest)) => String::from_utf8_lossy(rest).into_owned(),
        None => String::new(),
    }
}

impl<'a> Udf<'a> {
    /// Maps a partition-relative range to absolute image pieces (unclamped).
    fn resolve(&self, part: u16, block: u32, len: u64, out: &mut Vec<(u64, u64)>) -> bool {
        let mut push = |piece: (u64, u64)| {
            let left = self.pieces_left.get();
            if left == 0 {
                return false;
            }
            self.pieces_left.set(left - 1);
            out.push(piece);
            true
        };
        match self.parts.get(usize::from(part)) {
            Some(PartMap::Physical { start }) => {
                match start
                    .checked_add(u64::from(block))
                    .and_then(|b| b.checked_mul(self.bs))
                {
                    Some(abs) => push((abs, len)),
                    None => false,
                }
            }
            Some(PartMap::Meta { map }) => {
                let mut pos = u64::from(block) * self.bs;
                let mut rem = len;
                let mut i = map.partition_point(|&(l, _, n)| l.saturating_add(n) <= pos);
                let mut pushed = 0usize;
                while rem > 0 && pushed < MAX_PIECES_PER_FILE {
                    let Some(&(lstart, abs, n)) = map.get(i) else {
                        return false;
                    };
                    if pos < lstart {
                        return false;
                    }
                    let into = pos - lstart;
                    let take = rem.min(n.saturating_sub(into));
                    if !push((abs.saturating_add(into), take)) {
                        return false;
                    }
                    pushed += 1;
                    pos += take;
                    rem -= take;
                    i += 1;
                }
                rem == 0
            }
            _ => false,
        }
    }

    fn block_at(&self, part: u16, block: u32) -> Option<(u64, &'a [u8])> {
        let mut v = Vec::new();
        if !self.resolve(part, block, self.bs, &mut v) {
            return None;
        }
        let &(abs, _) = v.first()?;
        let d = sub_clamped(self.img, abs, self.bs);
        (d.len() >= 16).then_some((abs, d))
    }

    fn read_fe(&self, ctx: &mut Ctx, part: u16, block: u32) -> Result<Fe, String> {
        let (abs, d) = self
            .block_at(part, block)
            .ok_or_else(|| format!("ICB {part}:{block} is outside the partitions or the image"))?;
        let id = ctx
            .check_tag(d, &[TAG_FE, TAG_EFE])
            .ok_or_else(|| format!("no file entry at {part}:{block}"))?;
        let file_type = byte(d, 27);
        let ad_type = le16(d, 34).unwrap_or(0) & 7;
        let size = le64(d, 56).unwrap_or(0);
        let (base, lea, lad, streams) = if id == TAG_FE {
            (176usize, le32(d, 168), le32(d, 172), false)
        } else {
            let streams = le32(d, 152).unwrap_or(0) & 0x3FFF_FFFF != 0;
            (216usize, le32(d, 208), le32(d, 212), streams)
        };
        let lea = usize::try_from(lea.unwrap_or(0)).unwrap_or(usize::MAX);
        let start = base
            .checked_add(lea)
            .filter(|&s| s <= d.len())
            .ok_or_else(|| format!("extended attributes overrun file entry {part}:{block}"))?;
        let avail = d.len() - start;
        let lad = usize::try_from(lad.unwrap_or(0)).unwrap_or(usize::MAX);
        if lad > avail {
            ctx.note(format!(
                "allocation descriptors overrun file entry {part}:{block}"
            ));
        }
        let area = d.get(start..start + lad.min(avail)).unwrap_or(&[]);
        let mut fe = Fe {
            file_type,
            size,
            pieces: Vec::new(),
            streams,
            sparse: false,
        };
        match ad_type {
            3 => fe.pieces.push((abs + start as u64, area.len() as u64)),
            0..=2 => self.walk_ads(ctx, area, ad_type, part, &mut fe),
            t => return Err(format!("unknown allocation descriptor type {t}")),
        }
        Ok(fe)
    }

    fn walk_ads(&self, ctx: &mut Ctx, first: &'a [u8], ad_type: u16, part: u16, fe: &mut Fe) {
        let step = match ad_type {
            0 => 8,
            1 => 16,
            _ => 20,
        };
        let mut area = first;
        let mut logical = 0u64;
        let mut hops = 0usize;
        let mut seen = HashSet::new();
        loop {
            let mut next = None;
            for ad in area.chunks_exact(step) {
                let raw = le32(ad, 0).unwrap_or(0);
                let (ad_part, block) = match ad_type {
                    0 => (part, le32(ad, 4).unwrap_or(0)),
                    1 => (le16(ad, 8).unwrap_or(0), le32(ad, 4).unwrap_or(0)),
                    _ => (le16(ad, 16).unwrap_or(0), le32(ad, 12).unwrap_or(0)),
                };
                let len = u64::from(raw & 0x3FFF_FFFF);
                if len == 0 {
                    break;
                }
                match raw >> 30 {
                    0 => {
                        if !self.resolve(ad_part, block, len, &mut fe.pieces) {
                            ctx.note(format!(
                                "extent at {ad_part}:{block} unusable (bad partition or piece budget spent)"
                            ));
                        }
                    }
                    3 => {
                        next = Some((ad_part, block));
                        break;
                    }
                    _ => fe.sparse = true,
                }
                logical = logical.saturating_add(len);
                if logical >= fe.size || fe.pieces.len() >= MAX_PIECES_PER_FILE {
                    return;
                }
            }
            let Some((np, nb)) = next else { return };
            hops += 1;
            ctx.aed_blocks += 1;
            if hops > MAX_AED_HOPS || ctx.aed_blocks > MAX_AED_BLOCKS || !seen.insert((np, nb)) {
                ctx.note("allocation extent chain too long or cyclic, cut");
                return;
            }
            let Some((_, d)) = self.block_at(np, nb) else {
                ctx.note(format!("allocation extent {np}:{nb} unreadable"));
                return;
            };
            if ctx.check_tag(d, &[TAG_AED]).is_none() {
                ctx.note(format!("no allocation extent descriptor at {np}:{nb}"));
                return;
            }
            let lad = usize::try_from(le32(d, 20).unwrap_or(0)).unwrap_or(usize::MAX);
            area = d.get(24..).unwrap_or(&[]);
            area = area.get(..lad.min(area.len())).unwrap_or(&[]);
        }
    }
}

#[derive(Default)]
struct Vds {
    /// (partition number, start block)
    pds: Vec<(u16, u64)>,
    lvd: Option<u64>,
}

fn read_vds(ctx: &mut Ctx, bs: u64, loc: u32, len: u32) -> Vds {
    let mut v = Vds::default();
    let (mut loc, mut len) = (u64::from(loc), u64::from(len));
    let mut seen = HashSet::new();
    let mut count = 0usize;
    'seq: for _ in 0..MAX_VDS_HOPS {
        if !seen.insert(loc) {
            ctx.note("volume descriptor sequence pointer cycle");
            break;
        }
        let mut next = None;
        for i in 0..len / bs {
            count += 1;
            if count > MAX_VDS {
                ctx.note("volume descriptor sequence too long, cut");
                break 'seq;
            }
            let Some(off) = loc.checked_add(i).and_then(|b| b.checked_mul(bs)) else {
                break 'seq;
            };
            let d = sub_clamped(ctx.img, off, bs);
            let Some(id) = ctx.check_tag(d, &[1, TAG_VDP, 4, TAG_PD, TAG_LVD, 7, TAG_TD]) else {
                break 'seq;
            };
            match id {
                TAG_VDP => {
                    next = Some((le32(d, 24).unwrap_or(0), le32(d, 20).unwrap_or(0)));
                    break;
                }
                TAG_PD => {
                    let num = le16(d, 22).unwrap_or(0);
                    if !v.pds.iter().any(|&(n, _)| n == num) && v.pds.len() < MAX_PARTITION_MAPS {
                        v.pds.push((num, u64::from(le32(d, 188).unwrap_or(0))));
                    }
                }
                TAG_LVD => {
                    v.lvd.get_or_insert(off);
                }
                TAG_TD => break 'seq,
                _ => {}
            }
        }
        match next {
            Some((l, n)) => (loc, len) = (u64::from(l), u64::from(n)),
            None => break,
        }
    }
    v
}

fn udf_tree(ctx: &mut Ctx) -> Result<Vec<Raw>, String> {
    let img = ctx.img;
    let (bs, anchor) = udf_anchor(img).ok_or("no anchor volume descriptor pointer")?;
    let a = sub_clamped(img, anchor, 512);
    let (mlen, mloc) = (le32(a, 16).unwrap_or(0), le32(a, 20).unwrap_or(0));
    let (rlen, rloc) = (le32(a, 24).unwrap_or(0), le32(a, 28).unwrap_or(0));
    let mut vds = read_vds(ctx, bs, mloc, mlen);
    if vds.lvd.is_none() || vds.pds.is_empty() {
        ctx.note("UDF main volume descriptor sequence unusable, trying reserve");
        vds = read_vds(ctx, bs, rloc, rlen);
    }
    let lvd_off = vds.lvd.ok_or("no logical volume descriptor")?;
    let lvd = sub(img, lvd_off, 440).ok_or("logical volume descriptor cut short")?;
    if le32(lvd, 212).map(u64::from) != Some(bs) {
        ctx.note(format!(
            "UDF logical block size {:?} differs from sector size {bs}",
            le32(lvd, 212)
        ));
    }
    let mtl = u64::from(le32(lvd, 264).unwrap_or(0)).min(64 * 64);
    let nmaps = usize::try_from(le32(lvd, 268).unwrap_or(0)).unwrap_or(usize::MAX);
    let maps = sub_clamped(img, lvd_off + 440, mtl);
    let phys = |ctx: &mut Ctx, num: u16| match vds.pds.iter().find(|&&(n, _)| n == num) {
        Some(&(_, start)) => PartMap::Physical { start },
        None => {
            ctx.note(format!("no partition descriptor for partition {num}"));
            PartMap::Unsupported
        }
    };
    let mut udf = Udf {
        img,
        bs,
        parts: Vec::new(),
        pieces_left: Cell::new(MAX_PIECES_PER_TREE),
    };
    let mut p = 0usize;
    for _ in 0..nmaps.min(MAX_PARTITION_MAPS) {
        let ml = usize::from(byte(maps, p + 1));
        let Some(m) = maps.get(p..p + ml).filter(|_| ml >= 2) else {
            ctx.note("partition map table cut short");
            break;
        };
        p += ml;
        let pm = match byte(m, 0) {
            1 => phys(ctx, le16(m, 4).unwrap_or(0)),
            2 => {
                let ident = m.get(5..28).unwrap_or(&[]);
                let num = le16(m, 38).unwrap_or(0);
                if ident.starts_with(b"*UDF Metadata Partition") {
                    match phys(ctx, num) {
                        PartMap::Physical { start } => {
                            let lower = Udf {
                                img,
                                bs,
                                parts: vec![PartMap::Physical { start }],
                                pieces_left: Cell::new(MAX_PIECES_PER_FILE),
                            };
                            meta_map(ctx, &lower, le32(m, 40), le32(m, 44))
                        }
                        other => other,
                    }
                } else if ident.starts_with(b"*UDF Sparable Partition") {
                    ctx.note("sparable partition: sparing table ignored");
                    phys(ctx, num)
                } else {
                    ctx.note(format!(
                        "unsupported partition map '{}'",
                        String::from_utf8_lossy(ident).trim_end_matches('\0')
                    ));
                    PartMap::Unsupported
                }
            }
            t => {
                ctx.note(format!("unknown partition map type {t}"));
                PartMap::Unsupported
            }
        };
        udf.parts.push(pm);
    }

    let fsd_block = le32(lvd, 252).unwrap_or(0);
    let fsd_part = le16(lvd, 256).unwrap_or(0);
    let (_, fsd) = udf
        .block_at(fsd_part, fsd_block)
        .ok_or("file set descriptor outside the image")?;
    if ctx.check_tag(fsd, &[TAG_FSD]).is_none() {
        return Err("no file set descriptor".into());
    }
    let root_block = le32(fsd, 404).unwrap_or(0);
    let root_part = le16(fsd, 408).unwrap_or(0);

    let mut files = Vec::new();
    let mut visited = HashSet::new();
    let mut stack: Vec<(u16, u32, Rc<str>, String, usize)> =
        vec![(root_part, root_block, Rc::from(""), String::new(), 0usize)];
    let mut first = true;
    'dirs: while let Some((part, block, parent, name, depth)) = stack.pop() {
        let path: Rc<str> = Rc::from(join(&parent, &name));
        if !visited.insert((part, block)) {
            ctx.note(format!("UDF: directory cycle at '{path}'"));
            continue;
        }
        let fe = match udf.read_fe(ctx, part, block) {
            Ok(fe) if fe.file_type == 4 || !first => fe,
            Ok(_) => return Err("root is not a directory".into()),
            Err(e) if first => return Err(format!("root: {e}")),
            Err(e) => {
                ctx.note(format!("UDF: directory '{path}': {e}"));
                continue;
            }
        };
        first = false;
        if fe.streams {
            ctx.note(format!(
                "UDF: directory '{path}' has named streams (not listed)"
            ));
        }
        let cap = fe.size.min(img.len() as u64);
        let mut data: Vec<u8> = Vec::new();
        for &(o, l) in &fe.pieces {
            let have = data.len() as u64;
            if have >= cap {
                break;
            }
            data.extend_from_slice(sub_clamped(img, o, l.min(cap - have)));
        }
        if (data.len() as u64) < fe.size {
            ctx.note(format!("UDF: directory '{path}' is cut short"));
        }
        if !ctx.take_dir_bytes(data.len() as u64) {
            break;
        }
        let mut pos = 0usize;
        let mut subdirs = Vec::new();
        while pos + 38 <= data.len() {
            let liu = usize::from(le16(&data, pos + 36).unwrap_or(0));
            let lfi = usize::from(byte(&data, pos + 19));
            let total = (38 + liu + lfi + 3) & !3;
            let d = data.get(pos..).unwrap_or(&[]);
            let d = d.get(..total.min(d.len())).unwrap_or(&[]);
            if ctx.check_tag(d, &[TAG_FID]).is_none() {
                ctx.note(format!(
                    "UDF: bad file identifier descriptor in '{path}' at byte {pos}"
                ));
                break;
            }
            pos += total;
            if !ctx.tick() {
                break 'dirs;
            }
            let ch = byte(d, 18);
            if ch & 0x0C != 0 {
                continue; // deleted or parent entry
            }
            let name = d.get(38 + liu..38 + liu + lfi).unwrap_or(&[]);
            let name = super::path_component(cs0(name));
            let child = join(&path, &name);
            let icb_block = le32(d, 24).unwrap_or(0);
            let icb_part = le16(d, 28).unwrap_or(0);
            let cfe = match udf.read_fe(ctx, icb_part, icb_block) {
                Ok(f) => f,
                Err(e) => {
                    ctx.note(format!("UDF: '{child}': {e}"));
                    continue;
                }
            };
            if (ch & 2 != 0) != (cfe.file_type == 4) {
                ctx.note(format!(
                    "UDF: '{child}' directory flag disagrees with its file entry"
                ));
            }
            if cfe.streams {
                ctx.note(format!("UDF: '{child}' has named streams (not listed)"));
            }
            if cfe.file_type == 4 {
                if depth + 1 > MAX_DEPTH {
                    ctx.note(format!("UDF: '{child}' deeper than {MAX_DEPTH}, skipped"));
                } else {
                    subdirs.push((icb_part, icb_block, Rc::clone(&path), name, depth + 1));
                }
                continue;
            }
            if cfe.sparse {
                ctx.note(format!(
                    "UDF: '{child}' has unrecorded (sparse) extents, skipped"
                ));
            }
            if files.len() >= ctx.max_entries {
                ctx.cut = true;
                break 'dirs;
            }
            let (extents, truncated) = ctx.finish_extents(&cfe.pieces, cfe.size);
            files.push(Raw {
                path: child,
                size: cfe.size,
                extents,
                truncated,
                hidden: ch & 1 != 0,
            });
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(files)
}

fn meta_map(ctx: &mut Ctx, lower: &Udf, main: Option<u32>, mirror: Option<u32>) -> PartMap {
    for loc in [main, mirror].into_iter().flatten() {
        match lower.read_fe(ctx, 0, loc) {
            Ok(fe) => {
                let mut map = Vec::new();
                let mut logical = 0u64;
                for &(abs, len) in &fe.pieces {
                    map.push((logical, abs, len));
                    logical = logical.saturating_add(len);
                }
                return PartMap::Meta { map };
            }
            Err(e) => ctx.note(format!("metadata file at block {loc}: {e}")),
        }
    }
    PartMap::Unsupported
}

// ---------------------------------------------------------------------------------------------
// Listing.

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Data(Vec<(u64, u64)>),
    Empty(String),
}

fn key_of(r: &Raw) -> Key {
    if r.extents.is_empty() {
        Key::Empty(r.path.to_lowercase())
    } else {
        Key::Data(r.extents.clone())
    }
}

/// Lists every file of every tree in the image. At most `max_entries` entries are returned.
pub fn list(img: &[u8], max_entries: usize) -> Result<Listing, Error> {
    let vrs = scan_vrs(img);
    let anchor = udf_anchor(img);
    if vrs.pvd.is_none() && vrs.joliet.is_none() && !vrs.nsr && anchor.is_none() {
        return Err(Error::NotAnImage);
    }
    let mut ctx = Ctx::new(img, max_entries);
    let mut walked: Vec<(Tree, Vec<Raw>)> = Vec::new();
    let mut failures = Vec::new();
    if vrs.nsr || anchor.is_some() {
        ctx.start_tree();
        match udf_tree(&mut ctx) {
            Ok(f) => walked.push((Tree::Udf, f)),
            Err(e) => failures.push(format!("UDF: {e}")),
        }
    }
    for (tree, off) in [(Tree::Joliet, vrs.joliet), (Tree::Iso9660, vrs.pvd)] {
        if let Some(off) = off {
            ctx.start_tree();
            match iso_tree(&mut ctx, off, tree == Tree::Joliet) {
                Ok(f) => walked.push((tree, f)),
                Err(e) => failures.push(format!("{tree:?}: {e}")),
            }
        }
    }
    if walked.is_empty() {
        // The anomalies usually say why (e.g. an unsupported partition type), so keep a few.
        let why = failures
            .iter()
            .chain(ctx.anomalies.iter().take(5))
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::Malformed(why));
    }
    for f in failures {
        ctx.note(f);
    }
    Ok(merge(ctx, walked))
}

fn merge(mut ctx: Ctx, walked: Vec<(Tree, Vec<Raw>)>) -> Listing {
    let trees: Vec<Tree> = walked.iter().map(|(t, _)| *t).collect();
    let has_joliet = trees.contains(&Tree::Joliet);
    let mut entries: Vec<Entry> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut by_path: Vec<(Tree, BTreeMap<String, Key>)> = Vec::new();
    let mut cut = ctx.cut;
    for (tree, raws) in walked {
        let mut paths = BTreeMap::new();
        for r in raws {
            let k = key_of(&r);
            paths.insert(r.path.to_lowercase(), k.clone());
            if let Some(e) = index.get(&k).and_then(|&i| entries.get_mut(i)) {
                if !e.trees.contains(&tree) {
                    e.trees.push(tree);
                }
                e.hidden |= r.hidden;
            } else if tree == Tree::Iso9660 && has_joliet && r.size == 0 {
                // Mangled 8.3 names of empty files cannot be matched to Joliet ones; nothing to scan.
            } else if entries.len() >= ctx.max_entries {
                cut = true;
            } else {
                index.insert(k, entries.len());
                entries.push(Entry {
                    path: r.path,
                    size: r.size,
                    extents: r.extents,
                    truncated: r.truncated,
                    trees: vec![tree],
                    hidden: r.hidden,
                });
            }
        }
        by_path.push((tree, paths));
    }
    if trees.len() > 1 && !cut {
        for e in &entries {
            if e.size > 0 && e.trees.len() < trees.len() {
                let missing: Vec<Tree> = trees
                    .iter()
                    .filter(|t| !e.trees.contains(t))
                    .copied()
                    .collect();
                ctx.note(format!(
                    "{}: listed by {:?} but not by {:?}",
                    e.path, e.trees, missing
                ));
            }
        }
        for (i, (ta, pa)) in by_path.iter().enumerate() {
            for (tb, pb) in by_path.iter().skip(i + 1) {
                for (path, ka) in pa {
                    match pb.get(path) {
                        Some(kb) if ka != kb => {
                            ctx.note(format!("{path}: {ta:?} and {tb:?} point at different data"))
                        }
                        // Plain ISO 9660 names are mangled, so only long-name trees are compared.
                        None if *tb != Tree::Iso9660 => {
                            ctx.note(format!("{path}: named by {ta:?} but not by {tb:?}"))
                        }
                        _ => {}
                    }
                }
                if *tb != Tree::Iso9660 {
                    for path in pb.keys().filter(|p| !pa.contains_key(*p)) {
                        ctx.note(format!("{path}: named by {tb:?} but not by {ta:?}"));
                    }
                }
            }
        }
    }
    if ctx.crc_bad > 0 {
        let n = ctx.crc_bad;
        ctx.note(format!("{n} UDF descriptor CRC mismatches"));
    }
    let mut anomalies = ctx.anomalies;
    if ctx.suppressed > 0 {
        anomalies.push(format!("{} more anomalies not shown", ctx.suppressed));
    }
    Listing {
        entries,
        trees,
        anomalies,
        entries_cut: cut,
    }
}

/// Copies an entry's bytes, at most `max_bytes`; the flag says whether bytes were left out.
pub fn read(img: &[u8], entry: &Entry, max_bytes: usize) -> (Vec<u8>, bool) {
    super::copy_extents(img, &entry.extents, max_bytes)
}

// ---------------------------------------------------------------------------------------------
// Test-image builder. Deterministic: the same input always gives the same bytes.

/// What [`build_image`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildOptions {
    /// ISO 9660 primary tree (level 2 style names: upper case, at most 30 characters).
    pub iso9660: bool,
    /// Joliet tree (implies `iso9660`).
    pub joliet: bool,
    /// Rock Ridge `SP`/`ER` in the root and `NM` names in the primary tree.
    pub rock_ridge: bool,
    /// UDF 1.50 tree (NSR02), sharing file data with the ISO 9660 trees when both are written.
    pub udf: bool,
    /// Longest ISO 9660 extent in bytes; larger files get multi-extent records.
    pub iso_max_extent: u32,
    /// UDF files up to this size live inside their File Entry (only without ISO 9660 trees).
    pub udf_embed_max: usize,
    /// UDF 2.50 instead of 1.50: NSR03, Extended File Entries, and all metadata (FSD, ICBs,
    /// directories) inside a metadata partition whose File Entry maps it onto the physical one.
    pub udf_v250: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            iso9660: true,
            joliet: true,
            rock_ridge: false,
            udf: false,
            iso_max_extent: 0xFFFF_F800,
            udf_embed_max: 0,
            udf_v250: false,
        }
    }
}

/// ISO 9660 image, with a Joliet tree when `joliet`. Paths may contain '/' (directories are made).
pub fn build_iso9660(files: &[(&str, &[u8])], joliet: bool) -> Vec<u8> {
    build_image(
        files,
        &BuildOptions {
            joliet,
            ..BuildOptions::default()
        },
    )
}

/// UDF-only image (no ISO 9660 descriptors), 2048-byte sectors; files of at most 64 bytes are
/// embedded in their File Entry, as Windows' own UDF writer does for small files.
pub fn build_udf(files: &[(&str, &[u8])]) -> Vec<u8> {
    build_image(
        files,
        &BuildOptions {
            iso9660: false,
            joliet: false,
            udf: true,
            udf_embed_max: 64,
            ..BuildOptions::default()
        },
    )
}

/// Bridge image like mkisofs/oscdimg make: ISO 9660 + Joliet + UDF over the same file data.
pub fn build_bridge(files: &[(&str, &[u8])]) -> Vec<u8> {
    build_image(
        files,
        &BuildOptions {
            udf: true,
            ..BuildOptions::default()
        },
    )
}

fn put(buf: &mut [u8], off: usize, src: &[u8]) {
    if let Some(d) = off
        .checked_add(src.len())
        .and_then(|end| buf.get_mut(off..end))
    {
        d.copy_from_slice(src);
    }
}
fn put16(buf: &mut [u8], off: usize, v: u16) {
    put(buf, off, &v.to_le_bytes());
}
fn put32(buf: &mut [u8], off: usize, v: u32) {
    put(buf, off, &v.to_le_bytes());
}
fn put64(buf: &mut [u8], off: usize, v: u64) {
    put(buf, off, &v.to_le_bytes());
}
fn both16(buf: &mut [u8], off: usize, v: u16) {
    put16(buf, off, v);
    put(buf, off + 2, &v.to_be_bytes());
}
fn both32(buf: &mut [u8], off: usize, v: u32) {
    put32(buf, off, v);
    put(buf, off + 4, &v.to_be_bytes());
}

enum Node {
    Dir(usize),
    File(usize),
}

struct BDir {
    parent: usize,
    children: Vec<(String, Node)>,
}

fn build_tree(files: &[(&str, &[u8])]) -> Vec<BDir> {
    let mut dirs = vec![BDir {
        parent: 0,
        children: Vec::new(),
    }];
    for (fi, (path, _)) in files.iter().enumerate() {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let Some((last, parents)) = comps.split_last() else {
            continue;
        };
        let mut cur = 0;
        for c in parents {
            let found = dirs.get(cur).and_then(|d| {
                d.children.iter().find_map(|(n, node)| match node {
                    Node::Dir(i) if n == c => Some(*i),
                    _ => None,
                })
            });
            cur = match found {
                Some(i) => i,
                None => {
                    let i = dirs.len();
                    dirs.push(BDir {
                        parent: cur,
                        children: Vec::new(),
                    });
                    if let Some(d) = dirs.get_mut(cur) {
                        d.children.push((c.to_string(), Node::Dir(i)));
                    }
                    i
                }
            };
        }
        if let Some(d) = dirs.get_mut(cur) {
            d.children.push((last.to_string(), Node::File(fi)));
        }
    }
    for d in &mut dirs {
        d.children.sort_by(|a, b| a.0.cmp(&b.0));
    }
    dirs
}

fn iso_map(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            let u = c.to_ascii_uppercase();
            if u.is_ascii_alphanumeric() || u == '_' {
                u
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

fn iso_ident(name: &str, is_dir: bool, used: &mut HashSet<String>) -> Vec<u8> {
    let (base, ext) = match name.rsplit_once('.') {
        Some((b, e)) if !is_dir && !b.is_empty() => (b, iso_map(e, 8)),
        _ => (name, String::new()),
    };
    let max_base = if is_dir { 31 } else { 29 - ext.len() };
    let mut base = iso_map(base, max_base);
    if base.is_empty() {
        base.push('_');
    }
    let mut n = 0usize;
    let cand = loop {
        let b = if n == 0 {
            base.clone()
        } else {
            let suffix = format!("~{n}");
            let keep = max_base.saturating_sub(suffix.len());
            format!("{}{suffix}", base.chars().take(keep).collect::<String>())
        };
        let full = if is_dir { b } else { format!("{b}.{ext}") };
        if used.insert(full.clone()) || n > used.len() {
            break full;
        }
        n += 1;
    };
    if is_dir {
        cand.into_bytes()
    } else {
        format!("{cand};1").into_bytes()
    }
}

fn joliet_ident(name: &str, is_dir: bool) -> Vec<u8> {
    let mut units: Vec<u16> = name
        .chars()
        .map(|c| u16::try_from(u32::from(c)).unwrap_or(u16::from(b'_')))
        .take(103)
        .collect();
    if !is_dir {
        units.extend([u16::from(b';'), u16::from(b'1')]);
    }
    units.iter().flat_map(|u| u.to_be_bytes()).collect()
}

fn rr_nm(name: &str) -> Vec<u8> {
    let mut n = String::new();
    for c in name.chars() {
        if n.len() + c.len_utf8() > 180 {
            break;
        }
        n.push(c);
    }
    let mut v = vec![b'N', b'M', (5 + n.len()) as u8, 1, 0];
    v.extend_from_slice(n.as_bytes());
    v
}

fn rr_root() -> Vec<u8> {
    let mut v = vec![b'S', b'P', 7, 1, 0xBE, 0xEF, 0];
    let (id, des, src) = (&b"RRIP_1991A"[..], &b"ROCK RIDGE"[..], &b"RRIP"[..]);
    v.extend_from_slice(&[
        b'E',
        b'R',
        (8 + id.len() + des.len() + src.len()) as u8,
        1,
        id.len() as u8,
        des.len() as u8,
        src.len() as u8,
        1,
    ]);
    v.extend_from_slice(id);
    v.extend_from_slice(des);
    v.extend_from_slice(src);
    v
}

fn dir_record(ident: &[u8], loc: u32, size: u32, flags: u8, su: &[u8]) -> Vec<u8> {
    let nl = ident.len().min(220);
    let pad = usize::from(nl.is_multiple_of(2));
    let su = if 33 + nl + pad + su.len() > 255 {
        &[][..]
    } else {
        su
    };
    let len = 33 + nl + pad + su.len();
    let mut r = vec![0u8; len];
    put(&mut r, 0, &[len as u8, 0]);
    both32(&mut r, 2, loc);
    both32(&mut r, 10, size);
    put(&mut r, 18, &[124, 1, 1, 0, 0, 0, 0]);
    put(&mut r, 25, &[flags, 0, 0]);
    both16(&mut r, 28, 1);
    put(&mut r, 32, &[nl as u8]);
    put(&mut r, 33, ident.get(..nl).unwrap_or(&[]));
    put(&mut r, 33 + nl + pad, su);
    r
}

fn pack_sectors(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let used = out.len() % 2048;
        if used + r.len() > 2048 {
            out.resize(out.len() + 2048 - used, 0);
        }
        out.extend_from_slice(r);
    }
    let total = out.len().div_ceil(2048).max(1) * 2048;
    out.resize(total, 0);
    out
}

struct IsoPlan<'a> {
    dirs: &'a [BDir],
    files: &'a [(&'a str, &'a [u8])],
    joliet: bool,
    rr: bool,
    max_ext: u32,
    /// Identifier per dir, per child (same order as `BDir::children`).
    idents: Vec<Vec<Vec<u8>>>,
    dir_ident: Vec<Vec<u8>>,
    dir_loc: Vec<u32>,
    dir_size: Vec<u32>,
}

impl<'a> IsoPlan<'a> {
    fn new(
        dirs: &'a [BDir],
        files: &'a [(&'a str, &'a [u8])],
        joliet: bool,
        rr: bool,
        max_ext: u32,
    ) -> Self {
        let mut idents = Vec::new();
        let mut dir_ident = vec![vec![0u8]; dirs.len()];
        for d in dirs {
            let mut used = HashSet::new();
            let mut v = Vec::new();
            for (name, node) in &d.children {
                let is_dir = matches!(node, Node::Dir(_));
                let id = if joliet {
                    joliet_ident(name, is_dir)
                } else {
                    iso_ident(name, is_dir, &mut used)
                };
                if let Node::Dir(i) = node
                    && let Some(slot) = dir_ident.get_mut(*i)
                {
                    *slot = id.clone();
                }
                v.push(id);
            }
            idents.push(v);
        }
        let max_ext = (max_ext / 2048).max(1) * 2048;
        IsoPlan {
            dirs,
            files,
            joliet,
            rr,
            max_ext,
            idents,
            dir_ident,
            dir_loc: vec![0; dirs.len()],
            dir_size: vec![0; dirs.len()],
        }
    }

    fn dir_bytes(&self, d: usize, file_loc: &[u32]) -> Vec<u8> {
        let at = |v: &[u32], i: usize| v.get(i).copied().unwrap_or(0);
        let Some(dir) = self.dirs.get(d) else {
            return Vec::new();
        };
        let dot_su = if self.rr && d == 0 {
            rr_root()
        } else {
            Vec::new()
        };
        let mut recs = vec![
            dir_record(
                &[0],
                at(&self.dir_loc, d),
                at(&self.dir_size, d),
                2,
                &dot_su,
            ),
            dir_record(
                &[1],
                at(&self.dir_loc, dir.parent),
                at(&self.dir_size, dir.parent),
                2,
                &[],
            ),
        ];
        let empty = Vec::new();
        let ids = self.idents.get(d).unwrap_or(&empty);
        let mut order: Vec<usize> = (0..dir.children.len()).collect();
        order.sort_by(|&a, &b| ids.get(a).cmp(&ids.get(b)));
        for i in order {
            let (Some((name, node)), Some(id)) = (dir.children.get(i), ids.get(i)) else {
                continue;
            };
            let su = if self.rr { rr_nm(name) } else { Vec::new() };
            match node {
                Node::Dir(c) => recs.push(dir_record(
                    id,
                    at(&self.dir_loc, *c),
                    at(&self.dir_size, *c),
                    2,
                    &su,
                )),
                Node::File(f) => {
                    let len = self.files.get(*f).map_or(0, |x| x.1.len()) as u64;
                    let mut loc = at(file_loc, *f);
                    let mut left = len;
                    loop {
                        let chunk = left.min(u64::from(self.max_ext));
                        left -= chunk;
                        let flags = if left > 0 { 0x80 } else { 0 };
                        recs.push(dir_record(id, loc, chunk as u32, flags, &su));
                        loc += (chunk / 2048) as u32;
                        if left == 0 {
                            break;
                        }
                    }
                }
            }
        }
        pack_sectors(&recs)
    }

    /// Breadth-first directory order with siblings sorted by identifier, as path tables need.
    fn order(&self) -> Vec<usize> {
        let mut out = vec![0usize];
        let mut i = 0;
        while let Some(&d) = out.get(i) {
            let mut kids: Vec<usize> = self
                .dirs
                .get(d)
                .map(|x| {
                    x.children
                        .iter()
                        .filter_map(|(_, n)| match n {
                            Node::Dir(c) => Some(*c),
                            Node::File(_) => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            kids.sort_by(|a, b| self.dir_ident.get(*a).cmp(&self.dir_ident.get(*b)));
            out.extend(kids);
            i += 1;
        }
        out
    }

    fn path_table(&self, be: bool) -> Vec<u8> {
        let order = self.order();
        let mut num = vec![1u16; self.dirs.len()];
        for (n, &d) in order.iter().enumerate() {
            if let Some(s) = num.get_mut(d) {
                *s = (n + 1) as u16;
            }
        }
        let mut out = Vec::new();
        for &d in &order {
            let name = if d == 0 {
                vec![0u8]
            } else {
                self.dir_ident.get(d).cloned().unwrap_or_default()
            };
            let loc = self.dir_loc.get(d).copied().unwrap_or(0);
            let parent = self.dirs.get(d).map_or(0, |x| x.parent);
            let pnum = num.get(parent).copied().unwrap_or(1);
            out.push(name.len() as u8);
            out.push(0);
            if be {
                out.extend_from_slice(&loc.to_be_bytes());
                out.extend_from_slice(&pnum.to_be_bytes());
            } else {
                out.extend_from_slice(&loc.to_le_bytes());
                out.extend_from_slice(&pnum.to_le_bytes());
            }
            out.extend_from_slice(&name);
            if name.len() % 2 == 1 {
                out.push(0);
            }
        }
        out
    }
}

fn iso_vd(ty: u8, total: u32, plan: &IsoPlan, pt: (u32, u32, u32)) -> Vec<u8> {
    let mut d = vec![0u8; 2048];
    put(&mut d, 0, &[ty]);
    put(&mut d, 1, b"CD001\x01");
    let text = |s: &str, len: usize| -> Vec<u8> {
        if plan.joliet {
            let mut v: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
            while v.len() < len {
                v.extend_from_slice(&[0, 0x20]);
            }
            v.truncate(len);
            v
        } else {
            let mut v = s.as_bytes().to_vec();
            v.resize(len, b' ');
            v
        }
    };
    put(&mut d, 8, &text("", 32));
    put(&mut d, 40, &text("PORTCULLIS", 32));
    both32(&mut d, 80, total);
    if plan.joliet {
        put(&mut d, 88, b"%/E");
    }
    both16(&mut d, 120, 1);
    both16(&mut d, 124, 1);
    both16(&mut d, 128, 2048);
    both32(&mut d, 132, pt.2);
    put32(&mut d, 140, pt.0);
    put(&mut d, 148, &pt.1.to_be_bytes());
    let root = dir_record(
        &[0],
        plan.dir_loc.first().copied().unwrap_or(0),
        plan.dir_size.first().copied().unwrap_or(0),
        2,
        &[],
    );
    put(&mut d, 156, &root);
    for off in [190usize, 318, 446, 574] {
        put(&mut d, off, &text("", 128));
    }
    for off in [702usize, 739, 776] {
        put(&mut d, off, &text("", 37));
    }
    put(&mut d, 813, b"2024010100000000\x00");
    put(&mut d, 830, b"2024010100000000\x00");
    put(&mut d, 847, b"0000000000000000\x00");
    put(&mut d, 864, b"0000000000000000\x00");
    put(&mut d, 881, &[1]);
    d
}

const UDF_PART_START: u32 = 257;

fn udf_finish_tag_v(d: &mut [u8], id: u16, loc: u32, ver: u16) {
    let crc = crc16(d.get(16..).unwrap_or(&[]));
    let crc_len = d.len().saturating_sub(16) as u16;
    put16(d, 0, id);
    put16(d, 2, ver);
    put16(d, 6, 1);
    put16(d, 8, crc);
    put16(d, 10, crc_len);
    put32(d, 12, loc);
    let sum = tag_checksum(d);
    put(d, 4, &[sum]);
}

fn regid(ident: &str, suffix: &[u8]) -> [u8; 32] {
    let mut r = [0u8; 32];
    put(
        &mut r,
        1,
        ident.as_bytes().get(..23).unwrap_or(ident.as_bytes()),
    );
    put(&mut r, 24, suffix.get(..8).unwrap_or(suffix));
    r
}
const UDF_SUFFIX: [u8; 3] = [0x50, 0x01, 0];

fn charspec() -> [u8; 64] {
    let mut c = [0u8; 64];
    put(&mut c, 1, b"OSTA Compressed Unicode");
    c
}

fn dstring(s: &str, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let b: Vec<u8> = s.bytes().take(len.saturating_sub(2)).collect();
    put(&mut v, 0, &[8]);
    put(&mut v, 1, &b);
    put(&mut v, len - 1, &[(b.len() + 1) as u8]);
    v
}

const UDF_TIME: [u8; 12] = [0x00, 0x10, 0xE8, 0x07, 1, 1, 0, 0, 0, 0, 0, 0];

fn cs0_encode(name: &str) -> Vec<u8> {
    if name.chars().all(|c| u32::from(c) < 256) {
        let mut v = vec![8u8];
        v.extend(name.chars().take(254).map(|c| u32::from(c) as u8));
        v
    } else {
        let mut units: Vec<u16> = name.encode_utf16().take(127).collect();
        if units.last().is_some_and(|u| (0xD800..0xDC00).contains(u)) {
            units.pop();
        }
        let mut v = vec![16u8];
        v.extend(units.iter().flat_map(|u| u.to_be_bytes()));
        v
    }
}

fn udf_fid(ch: u8, name: &[u8], icb: u32, part: u16, unique: u32) -> Vec<u8> {
    let total = (38 + name.len() + 3) & !3;
    let mut v = vec![0u8; total];
    put16(&mut v, 16, 1);
    put(&mut v, 18, &[ch, name.len() as u8]);
    put32(&mut v, 20, 2048);
    put32(&mut v, 24, icb);
    put16(&mut v, 28, part);
    put32(&mut v, 32, unique);
    put(&mut v, 38, name);
    v
}

/// File Entry (or Extended File Entry when `efe`), untagged: the caller knows the tag version.
#[allow(clippy::too_many_arguments)]
fn udf_fe(
    efe: bool,
    file_type: u8,
    size: u64,
    ad_type: u16,
    ads: &[u8],
    links: u16,
    unique: u64,
    recorded: u64,
) -> Vec<u8> {
    let base = if efe { 216 } else { 176 };
    let mut d = vec![0u8; base + ads.len()];
    put16(&mut d, 20, 4);
    put16(&mut d, 24, 1);
    put(&mut d, 27, &[file_type]);
    put16(&mut d, 34, ad_type);
    put32(&mut d, 36, u32::MAX);
    put32(&mut d, 40, u32::MAX);
    put32(&mut d, 44, 0x14A5);
    put16(&mut d, 48, links);
    put64(&mut d, 56, size);
    if efe {
        put64(&mut d, 64, size);
        put64(&mut d, 72, recorded);
        for off in [80usize, 92, 104, 116] {
            put(&mut d, off, &UDF_TIME);
        }
        put32(&mut d, 128, 1);
        put(&mut d, 168, &regid("*Portcullis", &[]));
        put64(&mut d, 200, unique);
        put32(&mut d, 212, ads.len() as u32);
    } else {
        put64(&mut d, 64, recorded);
        for off in [72usize, 84, 96] {
            put(&mut d, off, &UDF_TIME);
        }
        put32(&mut d, 108, 1);
        put(&mut d, 128, &regid("*Portcullis", &[]));
        put64(&mut d, 160, unique);
        put32(&mut d, 172, ads.len() as u32);
    }
    put(&mut d, base, ads);
    d
}

/// Writes an image as `opts` asks; see [`build_iso9660`], [`build_udf`] and [`build_bridge`].
pub fn build_image(files: &[(&str, &[u8])], opts: &BuildOptions) -> Vec<u8> {
    let udf = opts.udf;
    let joliet = opts.joliet;
    let iso = opts.iso9660 || joliet || !udf;
    let rr = opts.rock_ridge && iso;
    let v250 = udf && opts.udf_v250;
    let ver: u16 = if v250 { 3 } else { 2 };
    let tag = |d: &mut [u8], id: u16, loc: u32| udf_finish_tag_v(d, id, loc, ver);
    let udf_suffix: [u8; 3] = if v250 { [0x50, 0x02, 0] } else { UDF_SUFFIX };
    let embed_max = if iso {
        0
    } else {
        opts.udf_embed_max.min(2048 - if v250 { 216 } else { 176 })
    };
    let dirs = build_tree(files);
    let flen = |f: usize| files.get(f).map_or(0, |x| x.1.len());
    let embedded = |f: usize| flen(f) > 0 && flen(f) <= embed_max;
    let nvd = if iso { 2 + u32::from(joliet) } else { 0 } + if udf { 3 } else { 0 };
    let mut next: u32 = if udf { UDF_PART_START } else { 16 + nvd };
    let mut take = |n: u32| {
        let s = next;
        next += n;
        s
    };
    let sectors = |bytes: usize| bytes.div_ceil(2048) as u32;

    // ISO 9660 / Joliet plans: sizes do not depend on locations, so lay out first, fill in later.
    let mut plans: Vec<IsoPlan> = Vec::new();
    if iso {
        plans.push(IsoPlan::new(&dirs, files, false, rr, opts.iso_max_extent));
        if joliet {
            plans.push(IsoPlan::new(&dirs, files, true, false, opts.iso_max_extent));
        }
    }
    let mut pts = Vec::new();
    for plan in &mut plans {
        for d in 0..dirs.len() {
            let size = plan.dir_bytes(d, &[]).len() as u32;
            if let Some(s) = plan.dir_size.get_mut(d) {
                *s = size;
            }
        }
        let pt_size = plan.path_table(false).len() as u32;
        let l = take(sectors(pt_size as usize).max(1));
        let m = take(sectors(pt_size as usize).max(1));
        pts.push((l, m, pt_size));
        for d in 0..dirs.len() {
            let n = plan.dir_size.get(d).copied().unwrap_or(0) / 2048;
            let loc = take(n);
            if let Some(s) = plan.dir_loc.get_mut(d) {
                *s = loc;
            }
        }
    }

    // UDF: FSD, terminator, one FE per directory and file, directory data.
    let names: Vec<Vec<Vec<u8>>> = dirs
        .iter()
        .map(|d| d.children.iter().map(|(n, _)| cs0_encode(n)).collect())
        .collect();
    let fid_bytes = |d: usize| -> usize {
        40 + names
            .get(d)
            .map_or(0, |v| v.iter().map(|n| (38 + n.len() + 3) & !3).sum())
    };
    let mut dir_fe = vec![0u32; dirs.len()];
    let mut dir_data = vec![0u32; dirs.len()];
    let mut file_fe = vec![0u32; files.len()];
    let mut fsd = 0;
    let mut meta_fe = 0;
    let mut meta_start = UDF_PART_START;
    let mut meta_end = UDF_PART_START;
    if udf {
        if v250 {
            meta_fe = take(2);
            meta_start = take(0);
        }
        fsd = take(2);
        for d in 0..dirs.len() {
            let fe = take(1);
            let data = take(sectors(fid_bytes(d)));
            if let (Some(a), Some(b)) = (dir_fe.get_mut(d), dir_data.get_mut(d)) {
                (*a, *b) = (fe, data);
            }
        }
        for f in file_fe.iter_mut() {
            *f = take(1);
        }
        meta_end = take(0);
    }
    let mut file_loc = vec![0u32; files.len()];
    for (f, loc) in file_loc.iter_mut().enumerate() {
        if flen(f) > 0 && !embedded(f) {
            *loc = take(sectors(flen(f)));
        }
    }
    let total = if udf { take(1) + 1 } else { next };
    let mut img = vec![0u8; total as usize * 2048];
    let at = |s: u32| s as usize * 2048;

    // Volume recognition sequence.
    let mut vd_sector = 16u32;
    for (i, plan) in plans.iter().enumerate() {
        let pt = pts.get(i).copied().unwrap_or((0, 0, 0));
        let vd = iso_vd(if plan.joliet { 2 } else { 1 }, total, plan, pt);
        put(&mut img, at(vd_sector), &vd);
        vd_sector += 1;
    }
    if iso {
        put(&mut img, at(vd_sector), b"\xFFCD001\x01");
        vd_sector += 1;
    }
    if udf {
        let nsr = if v250 { b"NSR03" } else { b"NSR02" };
        for id in [b"BEA01", nsr, b"TEA01"] {
            put(&mut img, at(vd_sector) + 1, id);
            put(&mut img, at(vd_sector) + 6, &[1]);
            vd_sector += 1;
        }
    }

    // ISO 9660 path tables and directories.
    for (i, plan) in plans.iter().enumerate() {
        let (l, m, _) = pts.get(i).copied().unwrap_or((0, 0, 0));
        put(&mut img, at(l), &plan.path_table(false));
        put(&mut img, at(m), &plan.path_table(true));
        for d in 0..dirs.len() {
            let loc = plan.dir_loc.get(d).copied().unwrap_or(0);
            put(&mut img, at(loc), &plan.dir_bytes(d, &file_loc));
        }
    }

    if udf {
        let blk = |s: u32| s - UDF_PART_START;
        // Metadata (FSD, ICBs, directories) lives in partition reference `mp`.
        let mblk = |s: u32| s - meta_start;
        let mp: u16 = u16::from(v250);
        let part_len = total - 1 - UDF_PART_START;
        let unique = |i: usize| 16 + i as u64;
        // Volume descriptor sequences, main at 32 and reserve at 48.
        for base in [32u32, 48] {
            let mut pvd = vec![0u8; 512];
            put32(&mut pvd, 16, 1);
            put(&mut pvd, 24, &dstring("PORTCULLIS", 32));
            for (off, v) in [(56usize, 1u16), (58, 1), (60, 2), (62, 2)] {
                put16(&mut pvd, off, v);
            }
            put32(&mut pvd, 64, 1);
            put32(&mut pvd, 68, 1);
            put(&mut pvd, 72, &dstring("0000000000000000PORTCULLIS", 128));
            put(&mut pvd, 200, &charspec());
            put(&mut pvd, 264, &charspec());
            put(&mut pvd, 344, &regid("*Portcullis", &[]));
            put(&mut pvd, 376, &UDF_TIME);
            put(&mut pvd, 388, &regid("*Portcullis", &[]));
            tag(&mut pvd, 1, base);

            let mut iuvd = vec![0u8; 512];
            put32(&mut iuvd, 16, 2);
            put(&mut iuvd, 20, &regid("*UDF LV Info", &udf_suffix));
            put(&mut iuvd, 52, &charspec());
            put(&mut iuvd, 116, &dstring("PORTCULLIS", 128));
            put(&mut iuvd, 352, &regid("*Portcullis", &[]));
            tag(&mut iuvd, 4, base + 1);

            let mut pd = vec![0u8; 512];
            put32(&mut pd, 16, 3);
            put16(&mut pd, 20, 1);
            put(
                &mut pd,
                24,
                &regid(if v250 { "+NSR03" } else { "+NSR02" }, &[]),
            );
            put32(&mut pd, 184, 1);
            put32(&mut pd, 188, UDF_PART_START);
            put32(&mut pd, 192, part_len);
            put(&mut pd, 196, &regid("*Portcullis", &[]));
            tag(&mut pd, TAG_PD, base + 2);

            let mut lvd = vec![0u8; if v250 { 510 } else { 446 }];
            put32(&mut lvd, 16, 4);
            put(&mut lvd, 20, &charspec());
            put(&mut lvd, 84, &dstring("PORTCULLIS", 128));
            put32(&mut lvd, 212, 2048);
            put(&mut lvd, 216, &regid("*OSTA UDF Compliant", &udf_suffix));
            put32(&mut lvd, 248, 2048);
            put32(&mut lvd, 252, mblk(fsd));
            put16(&mut lvd, 256, mp);
            put32(&mut lvd, 264, if v250 { 70 } else { 6 });
            put32(&mut lvd, 268, 1 + u32::from(v250));
            put(&mut lvd, 272, &regid("*Portcullis", &[]));
            put32(&mut lvd, 432, 4096);
            put32(&mut lvd, 436, 64);
            put(&mut lvd, 440, &[1, 6, 1, 0, 0, 0]);
            if v250 {
                let m = 446;
                put(&mut lvd, m, &[2, 64]);
                put(
                    &mut lvd,
                    m + 4,
                    &regid("*UDF Metadata Partition", &udf_suffix),
                );
                put16(&mut lvd, m + 36, 1);
                put32(&mut lvd, m + 40, blk(meta_fe));
                put32(&mut lvd, m + 44, blk(meta_fe) + 1);
                put32(&mut lvd, m + 48, u32::MAX);
                put32(&mut lvd, m + 52, 32);
                put16(&mut lvd, m + 56, 1);
            }
            tag(&mut lvd, TAG_LVD, base + 3);

            let mut usd = vec![0u8; 24];
            put32(&mut usd, 16, 5);
            tag(&mut usd, 7, base + 4);

            let mut td = vec![0u8; 512];
            tag(&mut td, TAG_TD, base + 5);
            for (i, d) in [pvd, iuvd, pd, lvd, usd, td].iter().enumerate() {
                put(&mut img, at(base + i as u32), d);
            }
        }
        // Logical volume integrity descriptor (closed) and its terminator.
        let mut lvid = vec![0u8; 134];
        put(&mut lvid, 16, &UDF_TIME);
        put32(&mut lvid, 28, 1);
        put64(&mut lvid, 40, 16 + (dirs.len() + files.len()) as u64);
        put32(&mut lvid, 72, 1);
        put32(&mut lvid, 76, 46);
        put32(&mut lvid, 84, part_len);
        put(&mut lvid, 88, &regid("*Portcullis", &[]));
        put32(&mut lvid, 120, files.len() as u32);
        put32(&mut lvid, 124, dirs.len() as u32);
        let rev = if v250 { 0x0250 } else { 0x0150 };
        for off in [128usize, 130, 132] {
            put16(&mut lvid, off, rev);
        }
        tag(&mut lvid, 9, 64);
        put(&mut img, at(64), &lvid);
        let mut td = vec![0u8; 512];
        tag(&mut td, TAG_TD, 65);
        put(&mut img, at(65), &td);
        // Anchors at 256 and at the last sector.
        for s in [256u32, total - 1] {
            let mut a = vec![0u8; 512];
            put32(&mut a, 16, 16 * 2048);
            put32(&mut a, 20, 32);
            put32(&mut a, 24, 16 * 2048);
            put32(&mut a, 28, 48);
            tag(&mut a, TAG_AVDP, s);
            put(&mut img, at(s), &a);
        }
        // File set descriptor and its terminator.
        let mut f = vec![0u8; 512];
        put(&mut f, 16, &UDF_TIME);
        for (off, v) in [(28usize, 3u16), (30, 3)] {
            put16(&mut f, off, v);
        }
        put32(&mut f, 32, 1);
        put32(&mut f, 36, 1);
        put(&mut f, 48, &charspec());
        put(&mut f, 112, &dstring("PORTCULLIS", 128));
        put(&mut f, 240, &charspec());
        put(&mut f, 304, &dstring("PORTCULLIS", 32));
        put32(&mut f, 400, 2048);
        put32(&mut f, 404, mblk(dir_fe.first().copied().unwrap_or(0)));
        put16(&mut f, 408, mp);
        put(&mut f, 416, &regid("*OSTA UDF Compliant", &udf_suffix));
        tag(&mut f, TAG_FSD, mblk(fsd));
        put(&mut img, at(fsd), &f);
        let mut td = vec![0u8; 512];
        tag(&mut td, TAG_TD, mblk(fsd) + 1);
        put(&mut img, at(fsd + 1), &td);

        // Directories: FE plus FID stream.
        for (d, dir) in dirs.iter().enumerate() {
            let fe_s = dir_fe.get(d).copied().unwrap_or(0);
            let data_s = dir_data.get(d).copied().unwrap_or(0);
            let parent_fe = dir_fe.get(dir.parent).copied().unwrap_or(0);
            let mut stream: Vec<u8> = Vec::new();
            let mut fids = vec![(0x0Au8, Vec::new(), mblk(parent_fe), 0u32)];
            let mut subdirs = 0u16;
            for ((_, node), name) in dir.children.iter().zip(names.get(d).into_iter().flatten()) {
                let (ch, fe, uid) = match node {
                    Node::Dir(c) => {
                        subdirs += 1;
                        (2u8, dir_fe.get(*c).copied().unwrap_or(0), unique(*c))
                    }
                    Node::File(f) => (
                        0u8,
                        file_fe.get(*f).copied().unwrap_or(0),
                        unique(dirs.len() + *f),
                    ),
                };
                fids.push((ch, name.clone(), mblk(fe), uid as u32));
            }
            for (ch, name, icb, uid) in fids {
                let mut fid = udf_fid(ch, &name, icb, mp, uid);
                let tag_loc = mblk(data_s) + (stream.len() / 2048) as u32;
                tag(&mut fid, TAG_FID, tag_loc);
                stream.extend_from_slice(&fid);
            }
            let mut ad = [0u8; 8];
            put32(&mut ad, 0, stream.len() as u32);
            put32(&mut ad, 4, mblk(data_s));
            let uid = if d == 0 { 0 } else { unique(d) };
            let mut fe = udf_fe(
                v250,
                4,
                stream.len() as u64,
                0,
                &ad,
                1 + subdirs,
                uid,
                u64::from(sectors(stream.len())),
            );
            tag(&mut fe, if v250 { TAG_EFE } else { TAG_FE }, mblk(fe_s));
            put(&mut img, at(fe_s), &fe);
            put(&mut img, at(data_s), &stream);
        }
        // Files: FE with short ADs (at most 2^30 - 2048 bytes each) or embedded data.
        for (f, &fe_s) in file_fe.iter().enumerate() {
            let data = files.get(f).map_or(&[][..], |x| x.1);
            let (ad_type, ads) = if embedded(f) {
                (3u16, data.to_vec())
            } else {
                let mut ads = Vec::new();
                let mut left = data.len() as u64;
                let mut s = file_loc.get(f).copied().unwrap_or(0);
                while left > 0 {
                    let chunk = left.min((1 << 30) - 2048);
                    // File data is outside the metadata partition: 2.50 needs long ADs to say so.
                    let mut ad = [0u8; 16];
                    put32(&mut ad, 0, chunk as u32);
                    put32(&mut ad, 4, blk(s));
                    ads.extend_from_slice(ad.get(..if v250 { 16 } else { 8 }).unwrap_or(&[]));
                    s += (chunk / 2048) as u32;
                    left -= chunk;
                }
                (u16::from(v250), ads)
            };
            let recorded = if ad_type == 3 {
                0
            } else {
                u64::from(sectors(data.len()))
            };
            let mut fe = udf_fe(
                v250,
                5,
                data.len() as u64,
                ad_type,
                &ads,
                1,
                unique(dirs.len() + f),
                recorded,
            );
            tag(&mut fe, if v250 { TAG_EFE } else { TAG_FE }, mblk(fe_s));
            put(&mut img, at(fe_s), &fe);
        }
        // Metadata file and its mirror (same extent) in the physical partition.
        if v250 {
            for (i, ft) in [250u8, 251].into_iter().enumerate() {
                let s = meta_fe + i as u32;
                let mut ad = [0u8; 8];
                put32(&mut ad, 0, (meta_end - meta_start) * 2048);
                put32(&mut ad, 4, blk(meta_start));
                let len = u64::from(meta_end - meta_start) * 2048;
                let mut fe = udf_fe(true, ft, len, 0, &ad, 1, 0, len / 2048);
                tag(&mut fe, TAG_EFE, blk(s));
                put(&mut img, at(s), &fe);
            }
        }
    }

    for (f, &loc) in file_loc.iter().enumerate() {
        if loc != 0 {
            put(&mut img, at(loc), files.get(f).map_or(&[][..], |x| x.1));
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1000;

    fn payload(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    fn get<'a>(l: &'a Listing, path: &str) -> &'a Entry {
        l.entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} missing from {:#?}", l.entries))
    }

    /// Every listed file reads back exactly, and nothing else is listed.
    fn assert_round_trip(img: &[u8], expect: &[(&str, Vec<u8>)], tree: Tree) -> Listing {
        let l = list(img, MAX).unwrap();
        assert!(l.trees.contains(&tree), "{:?}", l.trees);
        assert_eq!(l.entries.len(), expect.len(), "{:#?}", l.entries);
        for (path, data) in expect {
            let e = get(&l, path);
            assert!(e.trees.contains(&tree));
            assert_eq!(e.size, data.len() as u64, "{path}");
            assert!(!e.truncated, "{path}");
            let (got, cut) = read(img, e, usize::MAX);
            assert!(!cut);
            assert_eq!(&got, data, "{path}");
        }
        l
    }

    fn sample_files() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("readme.txt", b"hello portcullis\n".to_vec()),
            ("dir/sub/payload.exe", payload(5000, 7)),
            ("empty.dat", Vec::new()),
            (
                "A very long file name that does not fit in eight dot three at all.docx",
                payload(2048, 3),
            ),
            ("dir/two.bin", payload(40, 9)),
        ]
    }

    fn refs<'a>(v: &'a [(&'a str, Vec<u8>)]) -> Vec<(&'a str, &'a [u8])> {
        v.iter().map(|(p, d)| (*p, d.as_slice())).collect()
    }

    #[test]
    fn iso_plain_round_trip_uses_mangled_names() {
        let files = sample_files();
        let img = build_iso9660(&refs(&files), false);
        assert!(is_iso9660(&img));
        assert!(!is_udf(&img));
        let expect = vec![
            ("README.TXT", files[0].1.clone()),
            ("DIR/SUB/PAYLOAD.EXE", files[1].1.clone()),
            ("EMPTY.DAT", Vec::new()),
            ("A_VERY_LONG_FILE_NAME_THA.DOCX", files[3].1.clone()),
            ("DIR/TWO.BIN", files[4].1.clone()),
        ];
        let l = assert_round_trip(&img, &expect, Tree::Iso9660);
        assert_eq!(l.trees, vec![Tree::Iso9660]);
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        assert!(get(&l, "EMPTY.DAT").extents.is_empty());
    }

    #[test]
    fn iso_joliet_round_trip_keeps_long_and_unicode_names() {
        let mut files = sample_files();
        files.push(("Ünïcødé/résumé ☃.pdf", payload(3000, 1)));
        let img = build_iso9660(&refs(&files), true);
        let l = assert_round_trip(&img, &files, Tree::Joliet);
        assert_eq!(l.trees, vec![Tree::Joliet, Tree::Iso9660]);
        // Both trees share the extents, so each non-empty file is one entry listed twice.
        assert_eq!(
            get(&l, "dir/sub/payload.exe").trees,
            vec![Tree::Joliet, Tree::Iso9660]
        );
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
    }

    #[test]
    fn rock_ridge_nm_names_win_over_8_3() {
        let files = sample_files();
        let img = build_image(
            &refs(&files),
            &BuildOptions {
                joliet: false,
                rock_ridge: true,
                ..BuildOptions::default()
            },
        );
        assert_round_trip(&img, &files, Tree::Iso9660);
    }

    #[test]
    fn multi_extent_records_are_one_file() {
        let files = vec![
            ("big.bin", payload(10_000, 5)),
            ("after.txt", b"x".to_vec()),
        ];
        let img = build_image(
            &refs(&files),
            &BuildOptions {
                joliet: false,
                iso_max_extent: 4096,
                ..BuildOptions::default()
            },
        );
        // Three records carry the name: two flagged multi-extent, one final.
        let hits = img.windows(9).filter(|w| w == b"BIG.BIN;1").count();
        assert_eq!(hits, 3);
        let expect = vec![
            ("BIG.BIN", files[0].1.clone()),
            ("AFTER.TXT", b"x".to_vec()),
        ];
        let l = assert_round_trip(&img, &expect, Tree::Iso9660);
        assert_eq!(get(&l, "BIG.BIN").extents.len(), 1, "adjacent pieces merge");
    }

    #[test]
    fn udf_round_trip_with_embedded_and_16_bit_names() {
        let mut files = sample_files();
        files.push(("Ünïcødé/résumé ☃.pdf", payload(3000, 1)));
        files.push(("deep/a/b/c/d/tiny.txt", b"tiny".to_vec()));
        let img = build_udf(&refs(&files));
        assert!(is_udf(&img));
        assert!(!is_iso9660(&img));
        let l = assert_round_trip(&img, &files, Tree::Udf);
        assert_eq!(l.trees, vec![Tree::Udf]);
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        // Embedded data lives inside the File Entry, not on a sector boundary.
        assert_ne!(get(&l, "dir/two.bin").extents[0].0 % 2048, 0);
        assert_eq!(get(&l, "dir/sub/payload.exe").extents[0].0 % 2048, 0);
    }

    #[test]
    fn udf_250_metadata_partition_and_extended_file_entries() {
        let mut files = sample_files();
        files.push(("deep/a/b/tiny.txt", b"tiny".to_vec()));
        let opts = BuildOptions {
            iso9660: false,
            joliet: false,
            udf: true,
            udf_v250: true,
            udf_embed_max: 64,
            ..BuildOptions::default()
        };
        let img = build_image(&refs(&files), &opts);
        assert!(find(&img[..0x9000 + 7], b"NSR03").is_some());
        let l = assert_round_trip(&img, &files, Tree::Udf);
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        // Break the main metadata file: the mirror takes over, with a note.
        let mut broken = img.clone();
        let meta = (0..img.len() / 2048)
            .map(|s| s * 2048)
            .find(|&o| img[o] == 0x0A && img[o + 1] == 0x01 && img[o + 27] == 250)
            .unwrap();
        broken[meta + 4] ^= 1;
        let l = assert_round_trip(&broken, &files, Tree::Udf);
        assert!(
            l.anomalies.iter().any(|a| a.contains("metadata file")),
            "{:?}",
            l.anomalies
        );
        // Without either, listing fails cleanly.
        broken[meta + 2048 + 4] ^= 1;
        assert!(matches!(list(&broken, MAX), Err(Error::Malformed(_))));
    }

    #[test]
    fn bridge_image_lists_every_file_once_in_all_trees() {
        let files = sample_files();
        let img = build_bridge(&refs(&files));
        assert!(is_iso9660(&img) && is_udf(&img));
        let l = assert_round_trip(&img, &files, Tree::Udf);
        assert_eq!(l.trees, vec![Tree::Udf, Tree::Joliet, Tree::Iso9660]);
        for e in l.entries.iter().filter(|e| e.size > 0) {
            assert_eq!(
                e.trees,
                vec![Tree::Udf, Tree::Joliet, Tree::Iso9660],
                "{}",
                e.path
            );
        }
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
    }

    /// Points a plain ISO 9660 record at other bytes: Windows (UDF/Joliet) and an ISO-only scanner
    /// would now see different content under the same name.
    #[test]
    fn bridge_with_disagreeing_trees_reports_anomalies() {
        let files = vec![
            ("alpha.txt", payload(3000, 1)),
            ("bravo.txt", payload(3000, 2)),
        ];
        let mut img = build_bridge(&refs(&files));
        let a = find(&img, b"ALPHA.TXT;1").unwrap() - 33;
        let b = find(&img, b"BRAVO.TXT;1").unwrap() - 33;
        let loc: [u8; 8] = img[b + 2..b + 10].try_into().unwrap();
        img[a + 2..a + 10].copy_from_slice(&loc);
        let l = list(&img, MAX).unwrap();
        assert_eq!(l.entries.len(), 2);
        assert_eq!(get(&l, "alpha.txt").trees, vec![Tree::Udf, Tree::Joliet]);
        let text = l.anomalies.join("\n");
        assert!(
            text.contains("alpha.txt: listed by [Udf, Joliet] but not by [Iso9660]"),
            "{text}"
        );
        assert!(
            text.contains("alpha.txt: Joliet and Iso9660 point at different data"),
            "{text}"
        );
    }

    #[test]
    fn udf_only_file_in_bridge_is_reported() {
        let files = vec![
            ("alpha.txt", payload(3000, 1)),
            ("bravo.txt", payload(3000, 2)),
        ];
        let mut img = build_bridge(&refs(&files));
        // BRAVO is the last record of its sector in both ISO trees: a zero length byte hides it.
        let iso = find(&img, b"BRAVO.TXT;1").unwrap() - 33;
        let jol = find(&img, &joliet_ident("bravo.txt", false)).unwrap() - 33;
        img[iso] = 0;
        img[jol] = 0;
        let l = list(&img, MAX).unwrap();
        assert_eq!(get(&l, "bravo.txt").trees, vec![Tree::Udf]);
        let text = l.anomalies.join("\n");
        assert!(
            text.contains("bravo.txt: listed by [Udf] but not by [Joliet, Iso9660]"),
            "{text}"
        );
        assert!(
            text.contains("bravo.txt: named by Udf but not by Joliet"),
            "{text}"
        );
    }

    #[test]
    fn renamed_file_across_trees_is_reported() {
        let files = vec![("invoice.pdf", payload(3000, 1))];
        let mut img = build_bridge(&refs(&files));
        let j = find(&img, &joliet_ident("invoice.pdf", false)).unwrap();
        let evil = joliet_ident("invoice.exe", false);
        img[j..j + evil.len()].copy_from_slice(&evil);
        let l = list(&img, MAX).unwrap();
        assert_eq!(l.entries.len(), 1, "same bytes, one entry");
        let text = l.anomalies.join("\n");
        assert!(
            text.contains("invoice.pdf: named by Udf but not by Joliet"),
            "{text}"
        );
        assert!(
            text.contains("invoice.exe: named by Joliet but not by Udf"),
            "{text}"
        );
    }

    fn dir_rec_named(img: &[u8], name: &[u8]) -> usize {
        let mut pat = vec![name.len() as u8];
        pat.extend_from_slice(name);
        find(img, &pat).unwrap() - 32
    }

    #[test]
    fn iso_directory_cycle_terminates() {
        let files = vec![("loopdir/inner/x.txt", b"x".to_vec())];
        let mut img = build_iso9660(&refs(&files), false);
        let outer = dir_rec_named(&img, b"LOOPDIR");
        let inner = dir_rec_named(&img, b"INNER");
        let loc: [u8; 8] = img[outer + 2..outer + 10].try_into().unwrap();
        img[inner + 2..inner + 10].copy_from_slice(&loc);
        let l = list(&img, MAX).unwrap();
        assert!(
            l.anomalies.iter().any(|a| a.contains("cycle")),
            "{:?}",
            l.anomalies
        );
        assert!(l.entries.is_empty());
        // Pointing at the root is a cycle too.
        let root: [u8; 8] = img[0x8000 + 156 + 2..0x8000 + 156 + 10].try_into().unwrap();
        img[inner + 2..inner + 10].copy_from_slice(&root);
        let l = list(&img, MAX).unwrap();
        assert!(
            l.anomalies.iter().any(|a| a.contains("cycle")),
            "{:?}",
            l.anomalies
        );
    }

    fn fix_tag(img: &mut [u8], off: usize, len: usize) {
        let id = u16::from_le_bytes([img[off], img[off + 1]]);
        let loc = u32::from_le_bytes(img[off + 12..off + 16].try_into().unwrap());
        let ver = u16::from_le_bytes([img[off + 2], img[off + 3]]);
        udf_finish_tag_v(&mut img[off..off + len], id, loc, ver);
    }

    fn fid_named(img: &[u8], name: &str) -> usize {
        find(img, &cs0_encode(name)).unwrap() - 38
    }

    #[test]
    fn udf_directory_cycle_terminates() {
        let files = vec![("loopdir/inner/x.txt", b"x".to_vec())];
        let mut img = build_udf(&refs(&files));
        let outer = fid_named(&img, "loopdir");
        let inner = fid_named(&img, "inner");
        let icb: [u8; 4] = img[outer + 24..outer + 28].try_into().unwrap();
        img[inner + 24..inner + 28].copy_from_slice(&icb);
        fix_tag(&mut img, inner, 44);
        let l = list(&img, MAX).unwrap();
        assert!(
            l.anomalies.iter().any(|a| a.contains("cycle")),
            "{:?}",
            l.anomalies
        );
        assert!(l.entries.is_empty());
    }

    #[test]
    fn udf_crc_mismatch_is_tolerated_and_noted() {
        let files = vec![("a.bin", payload(4000, 1))];
        let mut img = build_udf(&refs(&files));
        // The file's File Entry is the last tag 261 with file type 5; flip a byte in its access time.
        let fe_off = (0..img.len() / 2048)
            .map(|s| s * 2048)
            .rfind(|&o| img[o] == 0x05 && img[o + 1] == 0x01 && img[o + 27] == 5)
            .unwrap();
        img[fe_off + 75] ^= 0xFF;
        let l = list(&img, MAX).unwrap();
        assert_eq!(l.entries.len(), 1);
        assert!(
            l.anomalies.iter().any(|a| a.contains("CRC")),
            "{:?}",
            l.anomalies
        );
        // A broken tag checksum, in contrast, rejects the descriptor.
        img[fe_off + 4] ^= 0xFF;
        let l = list(&img, MAX).unwrap();
        assert!(l.entries.is_empty());
        assert!(
            l.anomalies.iter().any(|a| a.contains("no file entry")),
            "{:?}",
            l.anomalies
        );
    }

    #[test]
    fn lying_iso_size_is_clamped_and_truncated() {
        let files = vec![("a.bin", payload(3000, 1))];
        let mut img = build_iso9660(&refs(&files), false);
        let r = dir_rec_named(&img, b"A.BIN;1");
        img[r + 10..r + 14].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let l = list(&img, MAX).unwrap();
        let e = get(&l, "A.BIN");
        assert_eq!(e.size, 0xFFFF_FFF0);
        assert!(e.truncated);
        let (o, n) = e.extents[0];
        assert_eq!(o + n, img.len() as u64);
        let (data, cut) = read(&img, e, 100);
        assert_eq!(data.len(), 100);
        assert!(cut);
        assert_eq!(&data[..], &files[0].1[..100]);
    }

    #[test]
    fn lying_udf_size_and_huge_counts() {
        let files = vec![("a.bin", payload(3000, 1))];
        let base = build_udf(&refs(&files));
        let fe_off = (0..base.len() / 2048)
            .map(|s| s * 2048)
            .find(|&o| base[o] == 0x05 && base[o + 1] == 0x01 && base[o + 27] == 5)
            .unwrap();
        let mut img = base.clone();
        img[fe_off + 56..fe_off + 64].copy_from_slice(&u64::MAX.to_le_bytes());
        fix_tag(&mut img, fe_off, 184);
        let l = list(&img, MAX).unwrap();
        let e = get(&l, "a.bin");
        assert!(e.truncated);
        assert_eq!(e.extents.iter().map(|x| x.1).sum::<u64>(), 3000);

        // L_AD far beyond the block, and an allocation extent continuation pointing at itself.
        let mut img = base.clone();
        img[fe_off + 172..fe_off + 176].copy_from_slice(&u32::MAX.to_le_bytes());
        fix_tag(&mut img, fe_off, 184);
        assert!(list(&img, MAX).is_ok());
        let mut img = base.clone();
        let me = u32::from_le_bytes(img[fe_off + 12..fe_off + 16].try_into().unwrap());
        img[fe_off + 176..fe_off + 180].copy_from_slice(&(0xC000_0800u32).to_le_bytes());
        img[fe_off + 180..fe_off + 184].copy_from_slice(&me.to_le_bytes());
        fix_tag(&mut img, fe_off, 184);
        let l = list(&img, MAX).unwrap();
        assert!(get(&l, "a.bin").truncated);

        // Partition map count and table length at their maxima.
        let mut img = base.clone();
        for lvd in [32 * 2048 + 3 * 2048, 48 * 2048 + 3 * 2048] {
            img[lvd + 264..lvd + 272].copy_from_slice(&[0xFF; 8]);
            fix_tag(&mut img, lvd, 446);
        }
        let _ = list(&img, MAX);
    }

    #[test]
    fn udf_allocation_extent_chain_and_its_cycle() {
        let files = vec![("a.bin", payload(3000, 1))];
        let base = build_udf(&refs(&files));
        let fe_off = (0..base.len() / 2048)
            .map(|s| s * 2048)
            .find(|&o| base[o] == 0x05 && base[o + 1] == 0x01 && base[o + 27] == 5)
            .unwrap();
        // Sector 258 (partition block 1) holds the FSD's terminator, which nothing needs.
        assert_eq!(
            u16::from_le_bytes([base[258 * 2048], base[258 * 2048 + 1]]),
            TAG_TD
        );
        let write_aed = |img: &mut Vec<u8>, ad: &[u8]| {
            let mut d = vec![0u8; 24 + ad.len()];
            d[20..24].copy_from_slice(&(ad.len() as u32).to_le_bytes());
            d[24..].copy_from_slice(ad);
            udf_finish_tag_v(&mut d, TAG_AED, 1, 2);
            img[258 * 2048..258 * 2048 + d.len()].copy_from_slice(&d);
        };
        let mut img = base.clone();
        let real_ad = img[fe_off + 176..fe_off + 184].to_vec();
        let mut cont = (0xC000_0000u32 | 2048).to_le_bytes().to_vec();
        cont.extend_from_slice(&1u32.to_le_bytes());
        img[fe_off + 176..fe_off + 184].copy_from_slice(&cont);
        fix_tag(&mut img, fe_off, 184);
        write_aed(&mut img, &real_ad);
        assert_round_trip(&img, &files, Tree::Udf);
        // The continuation block pointing at itself: cut, noted, no hang.
        write_aed(&mut img, &cont);
        let l = list(&img, MAX).unwrap();
        assert!(get(&l, "a.bin").truncated);
        assert!(
            l.anomalies.iter().any(|a| a.contains("cyclic")),
            "{:?}",
            l.anomalies
        );
    }

    #[test]
    fn long_paths_are_capped() {
        let seg = "d".repeat(100);
        let deep = format!("{}x.txt", format!("{seg}/").repeat(20));
        let files = vec![(deep.as_str(), &b"deep"[..])];
        for img in [build_iso9660(&files, true), build_udf(&files)] {
            let l = list(&img, MAX).unwrap();
            assert_eq!(l.entries.len(), 1);
            assert!(l.entries[0].path.len() <= MAX_PATH_BYTES);
            assert!(l.entries[0].path.starts_with(&format!("{seg}/{seg}/")));
        }
    }

    /// A root directory spanning the whole image, packed with records that all claim to be
    /// directories covering the whole image again: budgets stop the walk quickly.
    #[test]
    fn huge_self_referencing_directory_is_bounded() {
        let files = vec![("a", &b"a"[..])];
        let mut img = build_iso9660(&files, false);
        let sectors = 2048u32;
        img.resize(sectors as usize * 2048, 0);
        let start = 40usize;
        let root = 0x8000 + 156;
        img[root + 2..root + 10].copy_from_slice(&[40, 0, 0, 0, 0, 0, 0, 40]);
        let size = (sectors - 40) * 2048;
        img[root + 10..root + 14].copy_from_slice(&size.to_le_bytes());
        let mut i = 0u32;
        for sec in start..sectors as usize {
            for k in 0..56 {
                let name = [b'D', (i % 26) as u8 + b'A'];
                i += 1;
                let loc = 40 + (i % 5) * 7;
                let rec = dir_record(&name, loc, size, if k % 2 == 0 { 2 } else { 0 }, &[]);
                let at = sec * 2048 + k * rec.len();
                img[at..at + rec.len()].copy_from_slice(&rec);
            }
        }
        let t = std::time::Instant::now();
        let l = list(&img, 10_000).unwrap();
        assert!(l.entries_cut);
        assert!(l.entries.len() <= 10_000);
        assert!(l.anomalies.len() <= MAX_ANOMALIES + 1);
        assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
    }

    /// A UDF root directory of 100 000+ identifiers all naming the same file: the record budget
    /// stops the walk, and the shared extents collapse into one entry.
    #[test]
    fn huge_udf_directory_is_bounded() {
        let files = vec![("a.bin", payload(3000, 1))];
        let mut img = build_udf(&refs(&files));
        let fid = fid_named(&img, "a.bin");
        let file_icb = u32::from_le_bytes(img[fid + 24..fid + 28].try_into().unwrap());
        let region = img.len();
        let bytes = 110_000 * 40;
        img.resize(region + bytes, 0);
        for i in 0..110_000 {
            let mut f = udf_fid(0, &[8, b'x'], file_icb, 0, 0);
            udf_finish_tag_v(&mut f, TAG_FID, 0, 2);
            img[region + i * 40..region + i * 40 + 40].copy_from_slice(&f);
        }
        let root_fe = (0..region / 2048)
            .map(|s| s * 2048)
            .find(|&o| img[o] == 0x05 && img[o + 1] == 0x01 && img[o + 27] == 4)
            .unwrap();
        img[root_fe + 56..root_fe + 64].copy_from_slice(&(bytes as u64).to_le_bytes());
        img[root_fe + 176..root_fe + 180].copy_from_slice(&(bytes as u32).to_le_bytes());
        let blk = (region / 2048 - UDF_PART_START as usize) as u32;
        img[root_fe + 180..root_fe + 184].copy_from_slice(&blk.to_le_bytes());
        fix_tag(&mut img, root_fe, 184);
        let t = std::time::Instant::now();
        let l = list(&img, usize::MAX).unwrap();
        assert!(l.entries_cut);
        assert_eq!(l.entries.len(), 1);
        assert!(
            l.anomalies.iter().any(|a| a.contains("more than")),
            "{:?}",
            l.anomalies
        );
        assert!(t.elapsed().as_secs() < 30, "{:?}", t.elapsed());
        let l = list(&img, 100).unwrap();
        assert!(l.entries_cut);
    }

    #[test]
    fn max_entries_cuts_listing() {
        let names: Vec<String> = (0..50).map(|i| format!("d{}/f{i}.txt", i % 3)).collect();
        let datas: Vec<Vec<u8>> = (0..50).map(|i| payload(10, i as u8)).collect();
        let files: Vec<(&str, &[u8])> = names
            .iter()
            .zip(&datas)
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        for img in [
            build_bridge(&files),
            build_udf(&files),
            build_iso9660(&files, true),
        ] {
            let l = list(&img, 10).unwrap();
            assert_eq!(l.entries.len(), 10);
            assert!(l.entries_cut);
            let l = list(&img, 50).unwrap();
            assert_eq!(l.entries.len(), 50);
            assert!(!l.entries_cut);
        }
    }

    #[test]
    fn depth_is_capped() {
        let deep: String = (0..40).map(|i| format!("d{i}/")).collect::<String>() + "x.txt";
        let shallow = "top.txt";
        let files = vec![(deep.as_str(), &b"deep"[..]), (shallow, &b"top"[..])];
        for img in [build_iso9660(&files, true), build_udf(&files)] {
            let l = list(&img, MAX).unwrap();
            assert_eq!(l.entries.len(), 1, "{:?}", l.entries);
            assert!(l.anomalies.iter().any(|a| a.contains("deeper than")));
        }
    }

    #[test]
    fn hidden_flag_and_hostile_names() {
        let files = vec![("evil.dll", payload(10, 1)), ("x.lnk", payload(10, 2))];
        let mut img = build_iso9660(&refs(&files), false);
        let r = dir_rec_named(&img, b"EVIL.DLL;1");
        img[r + 25] |= 1;
        let l = list(&img, MAX).unwrap();
        assert!(get(&l, "EVIL.DLL").hidden);
        assert!(!get(&l, "X.LNK").hidden);
        assert_eq!(
            super::super::path_component("../a/b\u{0}".into()),
            ".._a_b_"
        );
        assert_eq!(super::super::path_component("..".into()), "_");
    }

    #[test]
    fn detection_and_errors() {
        assert!(matches!(list(&[], 10), Err(Error::NotAnImage)));
        assert!(matches!(
            list(&vec![0u8; 100_000], 10),
            Err(Error::NotAnImage)
        ));
        assert!(!is_iso9660(b"CD001") && !is_udf(&[0u8; 40_000]));
        // A boot record first does not hide the primary descriptor at 0x8801.
        let files = vec![("a", &b"a"[..])];
        let img = build_iso9660(&files, false);
        let mut shifted = img[..0x8000].to_vec();
        shifted.extend_from_slice(b"\x00CD001\x01");
        shifted.resize(0x8800, 0);
        shifted.extend_from_slice(&img[0x8000..]);
        assert!(is_iso9660(&shifted));
        // Recognised but unusable: a malformed error, not a panic.
        let mut bad = img.clone();
        bad[0x8000 + 156] = 0;
        assert!(matches!(list(&bad, 10), Err(Error::Malformed(_))));
        // UDF without a VRS is still found by its anchor.
        let mut udf = build_udf(&files);
        for s in 16..19 {
            udf[s * 2048..s * 2048 + 7].fill(0);
        }
        assert!(!is_udf(&udf));
        assert_eq!(list(&udf, 10).unwrap().entries.len(), 1);
    }

    #[test]
    fn cs0_decoding() {
        assert_eq!(cs0(&[8, b'a', 0xE9]), "aé");
        assert_eq!(cs0(&[16, 0x26, 0x03, 0, b'x']), "☃x");
        assert_eq!(cs0(&[16, 0xD8]), "");
        assert_eq!(cs0(&[]), "");
        assert_eq!(cs0(&cs0_encode("résumé ☃")), "résumé ☃");
    }

    fn invariants(img: &[u8], max_entries: usize) {
        if let Ok(l) = list(img, max_entries) {
            assert!(l.entries.len() <= max_entries);
            assert!(l.anomalies.len() <= MAX_ANOMALIES + 1);
            for e in &l.entries {
                let total: u64 = e.extents.iter().map(|x| x.1).sum();
                assert!(total <= e.size);
                assert_eq!(e.truncated, total < e.size);
                for &(o, n) in &e.extents {
                    assert!(o.checked_add(n).unwrap() <= img.len() as u64);
                }
                let (data, cut) = read(img, e, 4096);
                assert!(data.len() <= 4096);
                assert_eq!(cut, total > 4096);
            }
        }
    }

    fn samples() -> Vec<Vec<u8>> {
        let mut files = sample_files();
        files.push(("Ünïcødé/résumé ☃.pdf", payload(300, 1)));
        let f = refs(&files);
        vec![
            build_image(
                &f,
                &BuildOptions {
                    rock_ridge: true,
                    iso_max_extent: 2048,
                    ..BuildOptions::default()
                },
            ),
            build_udf(&f),
            build_bridge(&f),
            build_image(
                &f,
                &BuildOptions {
                    iso9660: false,
                    joliet: false,
                    udf: true,
                    udf_v250: true,
                    udf_embed_max: 64,
                    ..BuildOptions::default()
                },
            ),
        ]
    }

    #[test]
    fn truncated_at_every_offset_never_panics() {
        for img in samples() {
            let step = if img.len() > 20 * 1024 { 7 } else { 1 };
            for n in (0..=img.len()).step_by(step) {
                invariants(&img[..n], 100);
            }
        }
    }

    #[test]
    fn random_mutations_never_panic() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let samples = samples();
        // ISO_FUZZ_ITERS lets a developer run a longer soak locally; CI keeps the default.
        let iters = std::env::var("ISO_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000usize);
        for i in 0..iters {
            let base = &samples[i % samples.len()];
            let mut img = base.clone();
            // Hot spots: descriptors (sectors 16..66) and everything from the anchor on.
            let hot_lo = 16 * 2048;
            let hot_hi = if img.len() > 256 * 2048 {
                66 * 2048
            } else {
                img.len()
            };
            let n = 1 + next() % 16;
            for _ in 0..n {
                let r = next();
                let pos = if img.len() > 256 * 2048 && r % 2 == 0 {
                    256 * 2048 + (next() as usize) % (img.len() - 256 * 2048).min(64 * 2048)
                } else {
                    hot_lo + (next() as usize) % (hot_hi - hot_lo)
                };
                img[pos] = next() as u8;
            }
            invariants(&img, 5);
        }
    }
}
