//! FAT12/16/32 disk images (`.img`, raw `.vhd` payloads): list every file and hand
//! its bytes to the scanner.
//!
//! Supported:
//! - A "superfloppy" volume whose boot sector is at offset 0, or a partitioned disk:
//!   MBR primary partitions of type 0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E, 0xEF, and a
//!   GPT behind a protective MBR (0xEE; 512- or 4096-byte logical sectors, every
//!   entry whose start holds a plausible FAT boot sector is taken, CRCs not checked).
//!   With more than one volume, paths get a `p<N>/` prefix (N = partition slot, 1-based).
//! - FAT type chosen by cluster count, as in Microsoft's FAT specification.
//! - VFAT long names (used only when the sequence is complete and the checksum
//!   matches the 8.3 entry), 8.3 names with the NT lower-case flags, OEM bytes
//!   decoded as code page 437. Deleted entries, volume labels, `.` and `..` skipped.
//! - FAT32: root directory as a cluster chain, high cluster word, active-FAT
//!   selection when mirroring is off.
//!
//! Builders (`build_fat12`, `build_fat32`, `build_mbr_fat16`) write small,
//! deterministic, harmless sample images for tests.
//!
//! Not supported: extended (EBR) partitions, dynamic/differencing VHDs (a fixed
//! VHD is a raw image plus a trailing footer and works), exFAT, NTFS, the FAT32 FSInfo sector,
//! undelete of 0xE5 entries, code pages other than 437, directory entries beyond
//! the 65 536 the spec allows per directory.
//!
//! BPB plausibility (all required): 0x55AA at 510; jump `EB ?? 90` or `E9 ?? ??`;
//! bytes/sector in {512, 1024, 2048, 4096}; sectors/cluster a power of two; reserved
//! sectors >= 1; FAT count 1..=4; media 0xF0 or 0xF8..=0xFF; non-zero total sectors
//! and FAT size; metadata smaller than the volume (>= 1 data cluster); FAT32 root
//! cluster >= 2. An MBR also needs every status byte to be 0x00 or 0x80.
//!
//! Hostile-input guards: every read is clamped to the image; cluster chains are
//! walked with a per-walk generation stamp per cluster (loops end the walk), never
//! more steps than the file needs, and under a global step budget proportional to
//! the image size (cross-linked files cannot go quadratic); directory clusters are
//! claimed once per volume (cycles and cross-linked directories are cut), depth is
//! capped at 32, each directory at 65 536 entries and all directories together at a
//! budget proportional to the image size; `max_entries` caps the listing, paths
//! are capped at 4096 bytes, anomalies at 256 strings; no buffer is sized from a
//! claimed size. Anything odd is reported in `Listing::anomalies`, not as an error.

// Writers and checks beyond what the gateway calls serve the tests and the
// sample generators (crate::samples).
#![cfg_attr(not(test), allow(dead_code))]

use std::collections::HashSet;

/// One regular file found in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// "DIR/SUB/Long File Name.exe": long names when valid, else 8.3.
    pub path: String,
    /// Size the directory entry claims.
    pub size: u64,
    /// (byte offset, byte length) into the whole image, contiguous runs merged,
    /// clamped to the image; lengths add up to at most `size`.
    pub extents: Vec<(u64, u64)>,
    /// The chain ended early, looped, or left the image before `size` bytes.
    pub truncated: bool,
}

/// Everything `list` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// 12, 16 or 32 for the first volume found.
    pub fat_bits: u8,
    pub entries: Vec<Entry>,
    /// Human-readable notes about inconsistencies (at most 257 strings).
    pub anomalies: Vec<String>,
    /// `max_entries` was reached and files were left out.
    pub entries_cut: bool,
    /// Byte offset of the first volume's boot sector (0 for a superfloppy).
    pub partition_offset: u64,
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("input is {0} bytes, shorter than one 512-byte sector")]
    TooShort(usize),
    #[error("no plausible FAT boot sector at offset 0 or in any MBR/GPT partition")]
    NotFat,
}

const MAX_DEPTH: usize = 32;
const MAX_DIR_ENTRIES: usize = 65_536;
const MAX_ANOMALIES: usize = 256;
const MAX_PATH_BYTES: usize = 4096;
const MAX_GPT_ENTRIES: u32 = 256;
const FAT_PART_TYPES: [u8; 7] = [0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E, 0xEF];
const LFN_OFFSETS: [usize; 13] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐\
└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

// ---------------------------------------------------------------------------
// Byte helpers

fn slice_at(buf: &[u8], off: u64, len: u64) -> &[u8] {
    let Ok(start) = usize::try_from(off) else {
        return &[];
    };
    let Some(rest) = buf.get(start..) else {
        return &[];
    };
    let n = usize::try_from(len).unwrap_or(usize::MAX).min(rest.len());
    rest.get(..n).unwrap_or(&[])
}

fn arr<const N: usize>(buf: &[u8], off: usize) -> Option<[u8; N]> {
    buf.get(off..off.checked_add(N)?)?.try_into().ok()
}

fn le16(buf: &[u8], off: usize) -> Option<u16> {
    arr::<2>(buf, off).map(u16::from_le_bytes)
}

fn le32(buf: &[u8], off: usize) -> Option<u32> {
    arr::<4>(buf, off).map(u32::from_le_bytes)
}

fn le64(buf: &[u8], off: usize) -> Option<u64> {
    arr::<8>(buf, off).map(u64::from_le_bytes)
}

fn len64(buf: &[u8]) -> u64 {
    u64::try_from(buf.len()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// Boot sector

#[derive(Debug, Clone, Copy)]
struct Volume {
    fat_bits: u8,
    cluster_size: u64,
    /// Absolute offset of the FAT copy we trust.
    fat_offset: u64,
    fat_bytes: u64,
    root_offset: u64,
    root_bytes: u64,
    root_cluster: u32,
    data_offset: u64,
    /// CountofClusters: valid cluster numbers are 2..=count+1.
    count: u64,
}

fn parse_bpb(img: &[u8], base: u64) -> Option<(Volume, Vec<String>)> {
    let bs: [u8; 512] = arr(img, usize::try_from(base).ok()?)?;
    if bs[510] != 0x55 || bs[511] != 0xAA {
        return None;
    }
    if !((bs[0] == 0xEB && bs[2] == 0x90) || bs[0] == 0xE9) {
        return None;
    }
    let bps = u16::from_le_bytes([bs[11], bs[12]]);
    if !matches!(bps, 512 | 1024 | 2048 | 4096) {
        return None;
    }
    let spc = bs[13];
    let rsvd = u16::from_le_bytes([bs[14], bs[15]]);
    let nfats = bs[16];
    let media = bs[21];
    if !spc.is_power_of_two() || rsvd == 0 || !(1..=4).contains(&nfats) {
        return None;
    }
    if media != 0xF0 && media < 0xF8 {
        return None;
    }
    let root_ent = u16::from_le_bytes([bs[17], bs[18]]);
    let tot16 = u16::from_le_bytes([bs[19], bs[20]]);
    let fatsz16 = u16::from_le_bytes([bs[22], bs[23]]);
    let tot32 = u32::from_le_bytes([bs[32], bs[33], bs[34], bs[35]]);
    let fatsz32 = u32::from_le_bytes([bs[36], bs[37], bs[38], bs[39]]);
    let tot = if tot16 != 0 {
        u64::from(tot16)
    } else {
        u64::from(tot32)
    };
    let fatsz = if fatsz16 != 0 {
        u64::from(fatsz16)
    } else {
        u64::from(fatsz32)
    };
    if tot == 0 || fatsz == 0 {
        return None;
    }
    let bps = u64::from(bps);
    let root_sectors = (u64::from(root_ent) * 32).div_ceil(bps);
    let fats_total = u64::from(nfats).saturating_mul(fatsz);
    let overhead = u64::from(rsvd)
        .saturating_add(fats_total)
        .saturating_add(root_sectors);
    let count = tot.checked_sub(overhead)? / u64::from(spc);
    if count == 0 {
        return None;
    }
    let fat_bits: u8 = if count < 4085 {
        12
    } else if count < 65525 {
        16
    } else {
        32
    };
    let mut notes = Vec::new();
    if nfats > 2 {
        notes.push(format!("{nfats} FAT copies (more than the usual 2)"));
    }
    let mut root_cluster = 0;
    let mut active = 0u64;
    if fat_bits == 32 {
        root_cluster = u32::from_le_bytes([bs[44], bs[45], bs[46], bs[47]]);
        if root_cluster < 2 {
            return None;
        }
        if root_ent != 0 || fatsz16 != 0 {
            notes.push("FAT32 volume with FAT12/16 root-entry or FAT-size fields".into());
        }
        let ext = u16::from_le_bytes([bs[40], bs[41]]);
        if ext & 0x80 != 0 {
            let idx = ext & 0x0F;
            if idx < u16::from(nfats) {
                active = u64::from(idx);
            } else {
                notes.push(format!("active FAT {idx} does not exist; using FAT 0"));
            }
        }
        let ver = u16::from_le_bytes([bs[42], bs[43]]);
        if ver != 0 {
            notes.push(format!("FAT32 version {ver:#06x} (Windows expects 0)"));
        }
    } else if root_ent == 0 {
        notes.push("FAT12/16 volume with no root directory entries".into());
    }
    let fat_bytes = fatsz.saturating_mul(bps);
    let sector = |n: u64| base.saturating_add(n.saturating_mul(bps));
    let fat_offset = sector(u64::from(rsvd)).saturating_add(active.saturating_mul(fat_bytes));
    let root_offset = sector(u64::from(rsvd).saturating_add(fats_total));
    let end = sector(tot);
    if end > len64(img) {
        notes.push(format!(
            "volume claims {} bytes but the image ends {} bytes after its start",
            tot.saturating_mul(bps),
            len64(img).saturating_sub(base)
        ));
    }
    let vol = Volume {
        fat_bits,
        cluster_size: u64::from(spc) * bps,
        fat_offset,
        fat_bytes,
        root_offset,
        root_bytes: root_sectors * bps,
        root_cluster,
        data_offset: sector(overhead),
        count,
    };
    Some((vol, notes))
}

// ---------------------------------------------------------------------------
// Partition tables

struct Found {
    number: usize,
    base: u64,
    vol: Volume,
    notes: Vec<String>,
}

fn probe(img: &[u8]) -> (Vec<Found>, Vec<String>) {
    let mut notes = Vec::new();
    if let Some((vol, n)) = parse_bpb(img, 0) {
        let f = Found {
            number: 0,
            base: 0,
            vol,
            notes: n,
        };
        return (vec![f], notes);
    }
    let Some(mbr) = arr::<512>(img, 0) else {
        return (Vec::new(), notes);
    };
    if mbr[510] != 0x55 || mbr[511] != 0xAA {
        return (Vec::new(), notes);
    }
    let parts: Vec<[u8; 16]> = (0..4)
        .filter_map(|i| arr::<16>(&mbr, 446 + 16 * i))
        .collect();
    if parts.iter().any(|p| p[0] != 0x00 && p[0] != 0x80) {
        return (Vec::new(), notes);
    }
    let mut found = Vec::new();
    let mut gpt_done = false;
    for (i, p) in parts.iter().enumerate() {
        let number = i + 1;
        let ty = p[4];
        let lba = u64::from(u32::from_le_bytes([p[8], p[9], p[10], p[11]]));
        if FAT_PART_TYPES.contains(&ty) {
            if lba == 0 {
                notes.push(format!(
                    "partition {number} (type {ty:#04x}) starts at LBA 0"
                ));
                continue;
            }
            // MBR LBAs are in logical sectors, which are 512 bytes on nearly every
            // image; 4096-byte-sector disks are tried second.
            let hit = [512u64, 4096].iter().find_map(|&ss| {
                let base = lba.saturating_mul(ss);
                parse_bpb(img, base).map(|r| (base, r))
            });
            match hit {
                Some((base, (vol, n))) => found.push(Found {
                    number,
                    base,
                    vol,
                    notes: n,
                }),
                None => notes.push(format!(
                    "partition {number} (type {ty:#04x}) has no plausible FAT boot sector"
                )),
            }
        } else if ty == 0xEE && !gpt_done {
            gpt_done = true;
            gpt(img, &mut found, &mut notes);
        } else if matches!(ty, 0x05 | 0x0F | 0x85) {
            notes.push(format!(
                "partition {number}: extended partitions are not followed"
            ));
        }
    }
    let mut seen = HashSet::new();
    found.retain(|f| seen.insert(f.base));
    (found, notes)
}

fn gpt(img: &[u8], found: &mut Vec<Found>, notes: &mut Vec<String>) {
    for ss in [512u64, 4096] {
        let hdr = slice_at(img, ss, 92);
        if hdr.get(..8) != Some(b"EFI PART".as_slice()) {
            continue;
        }
        let (Some(lba), Some(n), Some(esz)) = (le64(hdr, 72), le32(hdr, 80), le32(hdr, 84)) else {
            continue;
        };
        if !(128..=4096).contains(&esz) || esz % 8 != 0 {
            notes.push(format!("GPT entry size {esz} is implausible"));
            return;
        }
        if n > MAX_GPT_ENTRIES {
            notes.push(format!(
                "GPT claims {n} entries; only the first {MAX_GPT_ENTRIES} are read"
            ));
        }
        let table = lba.saturating_mul(ss);
        for i in 0..n.min(MAX_GPT_ENTRIES) {
            let off = table.saturating_add(u64::from(i) * u64::from(esz));
            let ent = slice_at(img, off, 48);
            if ent.len() < 48 {
                notes.push("GPT entry table runs past the end of the image".into());
                break;
            }
            if ent.iter().take(16).all(|&b| b == 0) {
                continue;
            }
            let Some(first) = le64(ent, 32) else {
                continue;
            };
            // Non-FAT partitions (NTFS, Linux, ...) simply fail the BPB check.
            let base = first.saturating_mul(ss);
            if let Some((vol, vn)) = parse_bpb(img, base) {
                found.push(Found {
                    number: usize::try_from(i).unwrap_or(usize::MAX).saturating_add(1),
                    base,
                    vol,
                    notes: vn,
                });
            }
        }
        return;
    }
    notes.push("protective MBR (0xEE) without a readable GPT header".into());
}

// ---------------------------------------------------------------------------
// Walking a volume

struct Budget {
    steps: u64,
    dir_entries: u64,
}

struct Out {
    entries: Vec<Entry>,
    anomalies: Vec<String>,
    suppressed: bool,
    cut: bool,
    max_entries: usize,
}

impl Out {
    fn note(&mut self, s: String) {
        if self.anomalies.len() < MAX_ANOMALIES {
            self.anomalies.push(s);
        } else if !self.suppressed {
            self.suppressed = true;
            self.anomalies.push("further anomalies suppressed".into());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Collected as many clusters as wanted.
    Complete,
    /// End-of-chain mark.
    End,
    /// Free, reserved, bad or out-of-range cluster value (or unreadable FAT entry).
    Broken(u64),
    Loop,
    /// A valid cluster number whose data lies past the end of the image.
    OutOfImage,
    Budget,
}

fn describe(stop: Stop) -> String {
    match stop {
        Stop::Complete => "data runs past the end of the image".into(),
        Stop::End => "cluster chain ends early".into(),
        Stop::Broken(v) => format!("cluster chain hits invalid value {v:#x}"),
        Stop::Loop => "cluster chain loops or is cross-linked".into(),
        Stop::OutOfImage => "cluster chain leaves the image".into(),
        Stop::Budget => "cluster-step budget exhausted".into(),
    }
}

struct Item {
    name: String,
    is_dir: bool,
    cluster: u32,
    size: u64,
}

struct Walker<'a, 'b> {
    img: &'a [u8],
    vol: Volume,
    stamps: Vec<u32>,
    generation: u32,
    dir_seen: Vec<bool>,
    budget: &'b mut Budget,
    out: &'b mut Out,
}

impl<'a> Walker<'a, '_> {
    fn cluster_offset(&self, c: u32) -> u64 {
        let idx = u64::from(c).saturating_sub(2);
        self.vol
            .data_offset
            .saturating_add(idx.saturating_mul(self.vol.cluster_size))
    }

    fn fat_value(&self, c: u32) -> Option<u64> {
        let n = u64::from(c);
        let (off, width) = match self.vol.fat_bits {
            12 => (n + n / 2, 2),
            16 => (n * 2, 2),
            _ => (n * 4, 4),
        };
        if off.saturating_add(width) > self.vol.fat_bytes {
            return None;
        }
        let abs = usize::try_from(self.vol.fat_offset.saturating_add(off)).ok()?;
        match self.vol.fat_bits {
            12 => {
                let v = le16(self.img, abs)?;
                Some(u64::from(if c & 1 == 1 { v >> 4 } else { v & 0x0FFF }))
            }
            16 => le16(self.img, abs).map(u64::from),
            _ => le32(self.img, abs).map(|v| u64::from(v & 0x0FFF_FFFF)),
        }
    }

    fn eoc_min(&self) -> u64 {
        match self.vol.fat_bits {
            12 => 0xFF8,
            16 => 0xFFF8,
            _ => 0x0FFF_FFF8,
        }
    }

    /// Follows a chain from `first`, returning at most `want` clusters.
    fn walk(&mut self, first: u32, want: u64, dir: bool) -> (Vec<u32>, Stop) {
        let mut out = Vec::new();
        if want == 0 {
            return (out, Stop::Complete);
        }
        if !dir {
            self.generation = self.generation.wrapping_add(1);
            if self.generation == 0 {
                self.stamps.iter_mut().for_each(|s| *s = 0);
                self.generation = 1;
            }
        }
        let mut c = first;
        // Each pass stamps a fresh slot or returns, so this ends within
        // stamps.len() + 1 iterations.
        loop {
            let c64 = u64::from(c);
            if c64 < 2 || c64 > self.vol.count.saturating_add(1) {
                return (out, Stop::Broken(c64));
            }
            let idx = usize::try_from(c).unwrap_or(usize::MAX);
            if dir {
                match self.dir_seen.get_mut(idx) {
                    None => return (out, Stop::OutOfImage),
                    Some(true) => return (out, Stop::Loop),
                    Some(s) => *s = true,
                }
            } else {
                match self.stamps.get_mut(idx) {
                    None => return (out, Stop::OutOfImage),
                    Some(s) if *s == self.generation => return (out, Stop::Loop),
                    Some(s) => *s = self.generation,
                }
            }
            if self.budget.steps == 0 {
                return (out, Stop::Budget);
            }
            self.budget.steps -= 1;
            out.push(c);
            if len64_vec(&out) >= want {
                return (out, Stop::Complete);
            }
            match self.fat_value(c) {
                None => return (out, Stop::Broken(u64::MAX)),
                Some(v) if v >= self.eoc_min() => return (out, Stop::End),
                Some(v) if v >= 2 && v <= self.vol.count.saturating_add(1) => {
                    c = u32::try_from(v).unwrap_or(0);
                }
                Some(v) => return (out, Stop::Broken(v)),
            }
        }
    }

    fn dir_max_clusters(&self) -> u64 {
        (MAX_DIR_ENTRIES as u64 * 32).div_ceil(self.vol.cluster_size.max(1))
    }

    fn spans(&self, clusters: &[u32]) -> Vec<&'a [u8]> {
        let img: &'a [u8] = self.img;
        clusters
            .iter()
            .map(|&c| slice_at(img, self.cluster_offset(c), self.vol.cluster_size))
            .collect()
    }

    fn parse_dir(&mut self, spans: &[&[u8]], path: &str) -> Vec<Item> {
        let mut items = Vec::new();
        let mut lfn: Option<Lfn> = None;
        let mut seen = 0usize;
        let where_ = if path.is_empty() { "/" } else { path };
        'outer: for span in spans {
            for raw in span.chunks_exact(32) {
                let Ok(e) = <&[u8; 32]>::try_from(raw) else {
                    break 'outer;
                };
                if seen >= MAX_DIR_ENTRIES {
                    self.out.note(format!(
                        "directory {where_}: more than {MAX_DIR_ENTRIES} entries, rest ignored"
                    ));
                    break 'outer;
                }
                seen += 1;
                if self.budget.dir_entries == 0 {
                    self.out.note(format!(
                        "directory {where_}: directory-entry budget exhausted"
                    ));
                    break 'outer;
                }
                self.budget.dir_entries -= 1;
                match e[0] {
                    0x00 => break 'outer,
                    0xE5 => {
                        lfn = None;
                        continue;
                    }
                    _ => {}
                }
                let attr = e[11];
                if attr & 0x3F == 0x0F {
                    lfn = Lfn::step(lfn.take(), e);
                    continue;
                }
                let long = lfn.take().and_then(|l| l.finish(short_checksum(e)));
                if attr & 0x08 != 0 {
                    continue;
                }
                let name11 = e.get(..11).unwrap_or(&[]);
                if name11 == b".          " || name11 == b"..         " {
                    continue;
                }
                let name = super::path_component(long.unwrap_or_else(|| short_name(e)));
                let lo = u16::from_le_bytes([e[26], e[27]]);
                let hi = if self.vol.fat_bits == 32 {
                    u16::from_le_bytes([e[20], e[21]])
                } else {
                    0
                };
                items.push(Item {
                    name,
                    is_dir: attr & 0x10 != 0,
                    cluster: (u32::from(hi) << 16) | u32::from(lo),
                    size: u64::from(u32::from_le_bytes([e[28], e[29], e[30], e[31]])),
                });
            }
        }
        items
    }

    fn file_extents(&mut self, first: u32, size: u64, path: &str) -> (Vec<(u64, u64)>, bool) {
        if size == 0 {
            return (Vec::new(), false);
        }
        let cs = self.vol.cluster_size;
        let (clusters, stop) = self.walk(first, size.div_ceil(cs), false);
        let img_len = len64(self.img);
        let mut ext: Vec<(u64, u64)> = Vec::new();
        let mut remaining = size;
        let mut truncated = stop != Stop::Complete;
        for c in clusters {
            let off = self.cluster_offset(c);
            let len = cs.min(remaining);
            let take = len.min(img_len.saturating_sub(off));
            if take > 0 {
                match ext.last_mut() {
                    Some(last) if last.0.saturating_add(last.1) == off => last.1 += take,
                    _ => ext.push((off, take)),
                }
            }
            remaining -= len;
            if take < len {
                truncated = true;
                break;
            }
        }
        if truncated {
            let got: u64 = ext.iter().map(|e| e.1).sum();
            self.out.note(format!(
                "file {path}: {} ({got} of {size} bytes)",
                describe(stop)
            ));
        }
        (ext, truncated)
    }

    fn process(&mut self, items: Vec<Item>, prefix: &str, depth: usize) {
        for it in items {
            if self.out.cut {
                return;
            }
            let path = self.join(prefix, &it.name);
            if it.is_dir {
                if depth >= MAX_DEPTH {
                    self.out.note(format!(
                        "directory {path}: deeper than {MAX_DEPTH} levels, not entered"
                    ));
                    continue;
                }
                if it.cluster < 2 {
                    self.out.note(format!(
                        "directory {path}: invalid first cluster {}",
                        it.cluster
                    ));
                    continue;
                }
                let (clusters, stop) = self.walk(it.cluster, self.dir_max_clusters(), true);
                match stop {
                    Stop::Complete | Stop::End => {}
                    Stop::Loop => self.out.note(format!(
                        "directory {path}: cycle or cross-linked directory cluster, cut"
                    )),
                    other => self
                        .out
                        .note(format!("directory {path}: {}", describe(other))),
                }
                let spans = self.spans(&clusters);
                let sub = self.parse_dir(&spans, &path);
                self.process(sub, &path, depth + 1);
            } else {
                if self.out.entries.len() >= self.out.max_entries {
                    self.out.cut = true;
                    return;
                }
                let (extents, truncated) = self.file_extents(it.cluster, it.size, &path);
                self.out.entries.push(Entry {
                    path,
                    size: it.size,
                    extents,
                    truncated,
                });
            }
        }
    }

    fn join(&mut self, prefix: &str, name: &str) -> String {
        let mut s = String::with_capacity(prefix.len() + name.len() + 1);
        if !prefix.is_empty() {
            s.push_str(prefix);
            s.push('/');
        }
        s.push_str(name);
        if s.len() > MAX_PATH_BYTES {
            let mut cut = MAX_PATH_BYTES;
            while cut > 0 && !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            self.out
                .note(format!("path cut to {MAX_PATH_BYTES} bytes: {s}"));
        }
        s
    }
}

fn len64_vec<T>(v: &[T]) -> u64 {
    u64::try_from(v.len()).unwrap_or(u64::MAX)
}

fn walk_volume(img: &[u8], f: &Found, prefix: &str, budget: &mut Budget, out: &mut Out) {
    let vol = f.vol;
    let backed = len64(img)
        .saturating_sub(vol.data_offset)
        .div_ceil(vol.cluster_size.max(1));
    // Sized by what the image can back, not by what the BPB claims.
    let slots = vol.count.min(backed).saturating_add(2);
    let slots = usize::try_from(slots).unwrap_or(usize::MAX);
    let mut w = Walker {
        img,
        vol,
        stamps: vec![0; slots],
        generation: 0,
        dir_seen: vec![false; slots],
        budget,
        out,
    };
    let items = if vol.fat_bits == 32 {
        let (clusters, stop) = w.walk(vol.root_cluster, w.dir_max_clusters(), true);
        if !matches!(stop, Stop::Complete | Stop::End) {
            w.out.note(format!("root directory: {}", describe(stop)));
        }
        let spans = w.spans(&clusters);
        w.parse_dir(&spans, prefix)
    } else {
        let s = slice_at(img, vol.root_offset, vol.root_bytes);
        if len64(s) < vol.root_bytes {
            w.out
                .note("root directory runs past the end of the image".into());
        }
        w.parse_dir(&[s], prefix)
    };
    w.process(items, prefix, 0);
}

// ---------------------------------------------------------------------------
// Names

struct Lfn {
    chk: u8,
    next: u8,
    units: Vec<u16>,
}

impl Lfn {
    fn step(prev: Option<Lfn>, e: &[u8; 32]) -> Option<Lfn> {
        let ord = e[0];
        let seq = ord & 0x1F;
        let chk = e[13];
        let mut st = if ord & 0x40 != 0 {
            if seq == 0 || seq > 20 {
                return None;
            }
            Lfn {
                chk,
                next: seq,
                units: vec![0xFFFF; usize::from(seq) * 13],
            }
        } else {
            let p = prev?;
            if p.chk != chk {
                return None;
            }
            p
        };
        if seq == 0 || seq != st.next {
            return None;
        }
        let base = usize::from(seq - 1) * 13;
        for (i, &o) in LFN_OFFSETS.iter().enumerate() {
            if let (Some(u), Some(slot)) = (le16(e, o), st.units.get_mut(base + i)) {
                *slot = u;
            }
        }
        st.next = seq - 1;
        Some(st)
    }

    fn finish(self, chk: u8) -> Option<String> {
        if self.next != 0 || self.chk != chk {
            return None;
        }
        let end = self
            .units
            .iter()
            .position(|&u| u == 0)
            .unwrap_or(self.units.len());
        let mut units = self.units;
        units.truncate(end);
        while units.last() == Some(&0xFFFF) {
            units.pop();
        }
        let s = String::from_utf16_lossy(&units);
        if s.is_empty() { None } else { Some(s) }
    }
}

fn short_checksum(e: &[u8; 32]) -> u8 {
    e.iter()
        .take(11)
        .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b))
}

fn oem_char(b: u8, lower: bool) -> char {
    if b < 0x80 {
        let c = char::from(b);
        if lower { c.to_ascii_lowercase() } else { c }
    } else {
        CP437_HIGH.chars().nth(usize::from(b - 0x80)).unwrap_or('_')
    }
}

fn short_name(e: &[u8; 32]) -> String {
    let lower_base = e[12] & 0x08 != 0;
    let lower_ext = e[12] & 0x10 != 0;
    let mut base: Vec<u8> = e.iter().take(8).copied().collect();
    // 0x05 stands in for a real leading 0xE5, which would mean "deleted".
    if let Some(b) = base.first_mut()
        && *b == 0x05
    {
        *b = 0xE5;
    }
    let mut ext: Vec<u8> = e.iter().skip(8).take(3).copied().collect();
    while base.last() == Some(&b' ') {
        base.pop();
    }
    while ext.last() == Some(&b' ') {
        ext.pop();
    }
    let mut s: String = base.iter().map(|&b| oem_char(b, lower_base)).collect();
    if !ext.is_empty() {
        s.push('.');
        s.extend(ext.iter().map(|&b| oem_char(b, lower_ext)));
    }
    s
}

// ---------------------------------------------------------------------------
// Public entry points

/// A plausible FAT boot sector at 0, or an MBR/GPT with a FAT partition that has one.
pub fn is_fat(img: &[u8]) -> bool {
    img.len() >= 512 && !probe(img).0.is_empty()
}

/// Lists every regular file of every FAT volume in `img`, at most `max_entries`.
pub fn list(img: &[u8], max_entries: usize) -> Result<Listing, Error> {
    if img.len() < 512 {
        return Err(Error::TooShort(img.len()));
    }
    let (vols, notes) = probe(img);
    let Some(first) = vols.first() else {
        return Err(Error::NotFat);
    };
    let (fat_bits, partition_offset) = (first.vol.fat_bits, first.base);
    let img_len = len64(img);
    let mut budget = Budget {
        // An honest image needs at most one step per cluster and one visit per
        // 32-byte slot; twice that plus slack leaves room for odd but benign layouts.
        steps: (img_len / 512).saturating_mul(2).saturating_add(1024),
        dir_entries: (img_len / 32).saturating_mul(2).saturating_add(1024),
    };
    let mut out = Out {
        entries: Vec::new(),
        anomalies: Vec::new(),
        suppressed: false,
        cut: false,
        max_entries,
    };
    for n in notes {
        out.note(n);
    }
    let multi = vols.len() > 1;
    for f in &vols {
        let prefix = if multi {
            format!("p{}", f.number)
        } else {
            String::new()
        };
        for n in &f.notes {
            if multi {
                out.note(format!("{prefix}: {n}"));
            } else {
                out.note(n.clone());
            }
        }
        walk_volume(img, f, &prefix, &mut budget, &mut out);
        if out.cut {
            break;
        }
    }
    Ok(Listing {
        fat_bits,
        entries: out.entries,
        anomalies: out.anomalies,
        entries_cut: out.cut,
        partition_offset,
    })
}

/// The bytes of `entry`, at most `max_bytes`; the flag says more were available.
pub fn read(img: &[u8], entry: &Entry, max_bytes: usize) -> (Vec<u8>, bool) {
    // The extents already add up to at most `entry.size`.
    super::copy_extents(img, &entry.extents, max_bytes)
}

// ---------------------------------------------------------------------------
// Builders (deterministic sample images)

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fat12,
    Fat16,
    Fat32,
}

enum BNode<'a> {
    Dir(BDir<'a>),
    File(String, &'a [u8]),
}

struct BDir<'a> {
    name: String,
    children: Vec<BNode<'a>>,
}

const BUILD_MAX_DEPTH: usize = 64;
const SFN_EXTRA: &[u8] = b"!#$%&'()-@^_`{}~";
/// 2024-01-01 12:00:00 in FAT date/time encoding.
const FAT_DATE: u16 = (44 << 9) | (1 << 5) | 1;
const FAT_TIME: u16 = 12 << 11;

fn insert<'a>(root: &mut BDir<'a>, path: &str, data: &'a [u8]) {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .collect();
    let Some((last, dirs)) = parts.split_last() else {
        return;
    };
    if dirs.len() > BUILD_MAX_DEPTH {
        return;
    }
    let mut cur = root;
    for d in dirs {
        let pos = cur
            .children
            .iter()
            .position(|c| matches!(c, BNode::Dir(x) if x.name == *d));
        let idx = match pos {
            Some(i) => i,
            None => {
                cur.children.push(BNode::Dir(BDir {
                    name: (*d).to_string(),
                    children: Vec::new(),
                }));
                cur.children.len() - 1
            }
        };
        match cur.children.get_mut(idx) {
            Some(BNode::Dir(x)) => cur = x,
            _ => return,
        }
    }
    cur.children.push(BNode::File((*last).to_string(), data));
}

fn sfn_ok(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || SFN_EXTRA.contains(&c)
}

fn pad11(base: &[u8], ext: &[u8]) -> [u8; 11] {
    let mut n = [b' '; 11];
    for (d, s) in n.iter_mut().zip(base.iter().take(8)) {
        *d = *s;
    }
    for (d, s) in n.iter_mut().skip(8).zip(ext.iter().take(3)) {
        *d = *s;
    }
    n
}

fn split_ext(name: &str) -> (&str, &str) {
    match name.rsplit_once('.') {
        Some((b, e)) => (b, e),
        None => (name, ""),
    }
}

fn exact_83(name: &str) -> Option<[u8; 11]> {
    let (base, ext) = split_ext(name);
    if base.is_empty() || base.len() > 8 || ext.len() > 3 || name.ends_with('.') {
        return None;
    }
    if !base.bytes().chain(ext.bytes()).all(sfn_ok) {
        return None;
    }
    Some(pad11(base.as_bytes(), ext.as_bytes()))
}

/// (8.3 name, long name units or empty) for each child, unique per directory.
fn dir_names(dir: &BDir) -> Vec<([u8; 11], Vec<u16>)> {
    let mut used: HashSet<[u8; 11]> = HashSet::new();
    let mut out = Vec::with_capacity(dir.children.len());
    for child in &dir.children {
        let name = match child {
            BNode::Dir(d) => d.name.as_str(),
            BNode::File(n, _) => n.as_str(),
        };
        if let Some(s) = exact_83(name)
            && used.insert(s)
        {
            out.push((s, Vec::new()));
            continue;
        }
        let (b, e) = split_ext(name.trim_start_matches('.'));
        let clean = |s: &str, n: usize| -> Vec<u8> {
            s.bytes()
                .map(|c| c.to_ascii_uppercase())
                .filter(|&c| sfn_ok(c))
                .take(n)
                .collect()
        };
        let mut base = clean(b, 6);
        if base.is_empty() {
            base = b"_".to_vec();
        }
        let ext = clean(e, 3);
        let mut short = pad11(&base, &ext);
        for n in 1..=999_999u32 {
            let tail = format!("~{n}");
            let keep = (8 - tail.len()).min(base.len());
            let mut b2: Vec<u8> = base.iter().take(keep).copied().collect();
            b2.extend_from_slice(tail.as_bytes());
            short = pad11(&b2, &ext);
            if used.insert(short) {
                break;
            }
        }
        let units: Vec<u16> = name.encode_utf16().take(255).collect();
        out.push((short, units));
    }
    out
}

fn lfn_entries(units: &[u16], chk: u8) -> Vec<[u8; 32]> {
    let n = units.len().div_ceil(13);
    let mut padded = units.to_vec();
    if padded.len() < n * 13 {
        padded.push(0);
    }
    padded.resize(n * 13, 0xFFFF);
    (1..=n)
        .rev()
        .map(|seq| {
            let mut e = [0u8; 32];
            let ord = u8::try_from(seq).unwrap_or(0);
            e[0] = if seq == n { ord | 0x40 } else { ord };
            e[11] = 0x0F;
            e[13] = chk;
            for (i, &o) in LFN_OFFSETS.iter().enumerate() {
                let u = padded.get((seq - 1) * 13 + i).copied().unwrap_or(0xFFFF);
                put(&mut e, o as u64, &u.to_le_bytes());
            }
            e
        })
        .collect()
}

fn short_entry(name: &[u8; 11], attr: u8, cluster: u32, size: u32, fat32: bool) -> [u8; 32] {
    let mut e = [0u8; 32];
    put(&mut e, 0, name);
    e[11] = attr;
    put(&mut e, 14, &FAT_TIME.to_le_bytes());
    put(&mut e, 16, &FAT_DATE.to_le_bytes());
    put(&mut e, 18, &FAT_DATE.to_le_bytes());
    if fat32 {
        put(&mut e, 20, &((cluster >> 16) as u16).to_le_bytes());
    }
    put(&mut e, 22, &FAT_TIME.to_le_bytes());
    put(&mut e, 24, &FAT_DATE.to_le_bytes());
    put(&mut e, 26, &(cluster as u16).to_le_bytes());
    put(&mut e, 28, &size.to_le_bytes());
    e
}

fn put(buf: &mut [u8], off: u64, bytes: &[u8]) {
    if let Ok(o) = usize::try_from(off)
        && let Some(end) = o.checked_add(bytes.len())
        && let Some(d) = buf.get_mut(o..end)
    {
        d.copy_from_slice(bytes);
    }
}

fn entry_slots(dir: &BDir, root: bool) -> u64 {
    let names: u64 = dir_names(dir)
        .iter()
        .map(|(_, l)| 1 + len64_vec(l).div_ceil(13))
        .sum();
    names + if root { 0 } else { 2 }
}

fn dir_clusters(dir: &BDir, cs: u64, root: bool) -> u64 {
    (entry_slots(dir, root) * 32).div_ceil(cs).max(1)
}

fn clusters_needed(dir: &BDir, cs: u64, root: bool, fixed_root: bool) -> u64 {
    let own = if root && fixed_root {
        0
    } else {
        dir_clusters(dir, cs, root)
    };
    own + dir
        .children
        .iter()
        .map(|c| match c {
            BNode::Dir(d) => clusters_needed(d, cs, false, fixed_root),
            BNode::File(_, data) => len64(data).div_ceil(cs),
        })
        .sum::<u64>()
}

struct Writer {
    buf: Vec<u8>,
    kind: Kind,
    fat_offset: u64,
    fat_bytes: u64,
    data_offset: u64,
    cs: u64,
    next: u64,
    max: u64,
}

impl Writer {
    fn free(&self) -> u64 {
        (self.max + 1).saturating_sub(self.next)
    }

    fn set_fat(&mut self, n: u64, v: u32) {
        for copy in 0..2u64 {
            let base = self.fat_offset + copy * self.fat_bytes;
            match self.kind {
                Kind::Fat12 => {
                    let off = base + n + n / 2;
                    let old = slice_at(&self.buf, off, 2);
                    let old = u16::from_le_bytes([
                        old.first().copied().unwrap_or(0),
                        old.get(1).copied().unwrap_or(0),
                    ]);
                    let v = (v & 0x0FFF) as u16;
                    let new = if n & 1 == 1 {
                        (old & 0x000F) | (v << 4)
                    } else {
                        (old & 0xF000) | v
                    };
                    put(&mut self.buf, off, &new.to_le_bytes());
                }
                Kind::Fat16 => put(&mut self.buf, base + n * 2, &(v as u16).to_le_bytes()),
                Kind::Fat32 => put(
                    &mut self.buf,
                    base + n * 4,
                    &(v & 0x0FFF_FFFF).to_le_bytes(),
                ),
            }
        }
    }

    fn eoc(&self) -> u32 {
        match self.kind {
            Kind::Fat12 => 0xFFF,
            Kind::Fat16 => 0xFFFF,
            Kind::Fat32 => 0x0FFF_FFFF,
        }
    }

    /// A contiguous chain of `n` clusters; 0 for `n == 0` or when full.
    fn alloc(&mut self, n: u64) -> u32 {
        if n == 0 || n > self.free() {
            return 0;
        }
        let first = self.next;
        let eoc = self.eoc();
        for c in first..first + n {
            let v = if c + 1 < first + n {
                u32::try_from(c + 1).unwrap_or(eoc)
            } else {
                eoc
            };
            self.set_fat(c, v);
        }
        self.next += n;
        u32::try_from(first).unwrap_or(0)
    }

    fn offset(&self, c: u32) -> u64 {
        self.data_offset + u64::from(c).saturating_sub(2) * self.cs
    }

    fn write_dir(
        &mut self,
        dir: &BDir,
        region: (u64, u64),
        self_cl: u32,
        parent_cl: u32,
        root: bool,
    ) {
        let (start, cap) = region;
        let fat32 = self.kind == Kind::Fat32;
        let mut pos = 0u64;
        if !root {
            let dot = short_entry(b".          ", 0x10, self_cl, 0, fat32);
            let dotdot = short_entry(b"..         ", 0x10, parent_cl, 0, fat32);
            put(&mut self.buf, start, &dot);
            put(&mut self.buf, start + 32, &dotdot);
            pos = 64;
        }
        let names = dir_names(dir);
        for (child, (short, long)) in dir.children.iter().zip(names.iter()) {
            let lfn = if long.is_empty() {
                Vec::new()
            } else {
                lfn_entries(long, short_checksum(&short_entry(short, 0, 0, 0, false)))
            };
            let need = (len64_vec(&lfn) + 1) * 32;
            if pos + need > cap {
                break;
            }
            let (attr, first, size) = match child {
                BNode::File(_, data) => {
                    let n = len64(data).div_ceil(self.cs).min(self.free());
                    let stored = len64(data).min(n * self.cs).min(u64::from(u32::MAX));
                    let first = self.alloc(n);
                    let bytes = data
                        .get(..usize::try_from(stored).unwrap_or(0))
                        .unwrap_or(&[]);
                    let off = self.offset(first);
                    if first != 0 {
                        put(&mut self.buf, off, bytes);
                    }
                    (0x20, first, u32::try_from(stored).unwrap_or(0))
                }
                BNode::Dir(sub) => {
                    let n = dir_clusters(sub, self.cs, false);
                    if n > self.free() {
                        continue;
                    }
                    let first = self.alloc(n);
                    let parent = if root { 0 } else { self_cl };
                    let sub_region = (self.offset(first), n * self.cs);
                    self.write_dir(sub, sub_region, first, parent, false);
                    (0x10, first, 0)
                }
            };
            for e in &lfn {
                put(&mut self.buf, start + pos, e);
                pos += 32;
            }
            put(
                &mut self.buf,
                start + pos,
                &short_entry(short, attr, first, size, fat32),
            );
            pos += 32;
        }
    }
}

fn build(files: &[(&str, &[u8])], kind: Kind, hidden: u32) -> Vec<u8> {
    let mut root = BDir {
        name: String::new(),
        children: Vec::new(),
    };
    for (p, d) in files {
        insert(&mut root, p, d);
    }
    let fixed_root = kind != Kind::Fat32;
    let (min_count, max_count): (u64, u64) = match kind {
        Kind::Fat12 => (500, 4068),
        Kind::Fat16 => (4101, 65_508),
        Kind::Fat32 => (65_541, 0x0FFF_FFE0),
    };
    let root_ent: u64 = if fixed_root {
        let min = if kind == Kind::Fat12 { 224 } else { 512 };
        entry_slots(&root, true)
            .max(min)
            .next_multiple_of(16)
            .min(65_520)
    } else {
        0
    };
    let mut spc = 1u64;
    let mut need = 0u64;
    for s in [1u64, 2, 4, 8, 16, 32, 64] {
        spc = s;
        need = clusters_needed(&root, 512 * s, true, fixed_root);
        if need <= max_count {
            break;
        }
    }
    let count = need.max(min_count).min(max_count);
    let fat_bytes = match kind {
        Kind::Fat12 => ((count + 2) * 3).div_ceil(2),
        Kind::Fat16 => (count + 2) * 2,
        Kind::Fat32 => (count + 2) * 4,
    };
    let fatsz = fat_bytes.div_ceil(512);
    let rsvd: u64 = if kind == Kind::Fat32 { 32 } else { 1 };
    let root_secs = (root_ent * 32).div_ceil(512);
    let total = rsvd + 2 * fatsz + root_secs + count * spc;
    let media: u8 = if kind == Kind::Fat12 { 0xF0 } else { 0xF8 };

    let mut bs = [0u8; 512];
    put(&mut bs, 3, b"MSWIN4.1");
    put(&mut bs, 11, &512u16.to_le_bytes());
    bs[13] = u8::try_from(spc).unwrap_or(1);
    put(&mut bs, 14, &(rsvd as u16).to_le_bytes());
    bs[16] = 2;
    put(&mut bs, 17, &(root_ent as u16).to_le_bytes());
    if total < 65_536 && kind != Kind::Fat32 {
        put(&mut bs, 19, &(total as u16).to_le_bytes());
    } else {
        put(
            &mut bs,
            32,
            &u32::try_from(total).unwrap_or(u32::MAX).to_le_bytes(),
        );
    }
    bs[21] = media;
    let (spt, heads): (u16, u16) = if kind == Kind::Fat12 {
        (18, 2)
    } else {
        (63, 255)
    };
    put(&mut bs, 24, &spt.to_le_bytes());
    put(&mut bs, 26, &heads.to_le_bytes());
    put(&mut bs, 28, &hidden.to_le_bytes());
    let vol_id = 0x5043_5543u32.to_le_bytes();
    if kind == Kind::Fat32 {
        put(&mut bs, 0, &[0xEB, 0x58, 0x90]);
        put(&mut bs, 36, &(fatsz as u32).to_le_bytes());
        put(&mut bs, 44, &2u32.to_le_bytes());
        put(&mut bs, 48, &1u16.to_le_bytes());
        put(&mut bs, 50, &6u16.to_le_bytes());
        bs[64] = 0x80;
        bs[66] = 0x29;
        put(&mut bs, 67, &vol_id);
        put(&mut bs, 71, b"NO NAME    FAT32   ");
        // cli; hlt; jmp back to hlt: a harmless stub if ever booted.
        put(&mut bs, 90, &[0xFA, 0xF4, 0xEB, 0xFD]);
    } else {
        put(&mut bs, 0, &[0xEB, 0x3C, 0x90]);
        put(&mut bs, 22, &(fatsz as u16).to_le_bytes());
        bs[36] = if kind == Kind::Fat12 { 0x00 } else { 0x80 };
        bs[38] = 0x29;
        put(&mut bs, 39, &vol_id);
        let fs = if kind == Kind::Fat12 {
            b"NO NAME    FAT12   "
        } else {
            b"NO NAME    FAT16   "
        };
        put(&mut bs, 43, fs);
        put(&mut bs, 62, &[0xFA, 0xF4, 0xEB, 0xFD]);
    }
    bs[510] = 0x55;
    bs[511] = 0xAA;

    let mut w = Writer {
        buf: vec![0u8; usize::try_from(total * 512).unwrap_or(0)],
        kind,
        fat_offset: rsvd * 512,
        fat_bytes: fatsz * 512,
        data_offset: (rsvd + 2 * fatsz + root_secs) * 512,
        cs: spc * 512,
        next: 2,
        max: count + 1,
    };
    put(&mut w.buf, 0, &bs);
    let (f0, f1): (u32, u32) = match kind {
        Kind::Fat12 => (0xF00 | u32::from(media), 0xFFF),
        Kind::Fat16 => (0xFF00 | u32::from(media), 0xFFFF),
        Kind::Fat32 => (0x0FFF_FF00 | u32::from(media), 0x0FFF_FFFF),
    };
    w.set_fat(0, f0);
    w.set_fat(1, f1);
    if kind == Kind::Fat32 {
        let mut fsinfo = [0u8; 512];
        put(&mut fsinfo, 0, &0x4161_5252u32.to_le_bytes());
        put(&mut fsinfo, 484, &0x6141_7272u32.to_le_bytes());
        put(&mut fsinfo, 488, &u32::MAX.to_le_bytes());
        put(&mut fsinfo, 492, &u32::MAX.to_le_bytes());
        put(&mut fsinfo, 508, &0xAA55_0000u32.to_le_bytes());
        put(&mut w.buf, 512, &fsinfo);
        put(&mut w.buf, 6 * 512, &bs);
        put(&mut w.buf, 7 * 512, &fsinfo);
        let n = dir_clusters(&root, w.cs, true);
        let first = w.alloc(n);
        let region = (w.offset(first), n * w.cs);
        w.write_dir(&root, region, first, 0, true);
    } else {
        let region = ((rsvd + 2 * fatsz) * 512, root_ent * 32);
        w.write_dir(&root, region, 0, 0, true);
    }
    w.buf
}

/// A FAT12 superfloppy (about 256 KiB, growing with the content; at most 4068
/// clusters of up to 32 KiB). Paths may contain '/'; names that are not upper-case
/// 8.3 get VFAT long-name entries (names cut to 255 UTF-16 units). Deterministic.
/// Content past the volume's capacity is cut, root entries past 65 520 slots and
/// paths deeper than 64 directories are left out.
pub fn build_fat12(files: &[(&str, &[u8])]) -> Vec<u8> {
    build(files, Kind::Fat12, 0)
}

/// A FAT32 superfloppy of at least 65 541 clusters (about 32 MiB).
pub fn build_fat32(files: &[(&str, &[u8])]) -> Vec<u8> {
    build(files, Kind::Fat32, 0)
}

/// An MBR disk with one FAT16 partition starting at LBA 2048 (about 3 MiB in all).
pub fn build_mbr_fat16(files: &[(&str, &[u8])]) -> Vec<u8> {
    const START: u32 = 2048;
    let vol = build(files, Kind::Fat16, START);
    let sectors = u32::try_from(vol.len() / 512).unwrap_or(u32::MAX);
    let mut img = vec![0u8; START as usize * 512];
    put(&mut img, 440, &0x5043_5543u32.to_le_bytes());
    let mut pe = [0u8; 16];
    put(&mut pe, 1, &[0xFE, 0xFF, 0xFF]);
    pe[4] = if sectors < 65_536 { 0x04 } else { 0x06 };
    put(&mut pe, 5, &[0xFE, 0xFF, 0xFF]);
    put(&mut pe, 8, &START.to_le_bytes());
    put(&mut pe, 12, &sectors.to_le_bytes());
    put(&mut img, 446, &pe);
    put(&mut img, 510, &[0x55, 0xAA]);
    img.extend_from_slice(&vol);
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(img: &[u8], pat: &[u8]) -> usize {
        img.windows(pat.len())
            .position(|w| w == pat)
            .expect("pattern present")
    }

    fn by_path<'l>(l: &'l Listing, p: &str) -> &'l Entry {
        l.entries
            .iter()
            .find(|e| e.path == p)
            .unwrap_or_else(|| panic!("{p} missing from {:?}", paths(l)))
    }

    fn paths(l: &Listing) -> Vec<&str> {
        l.entries.iter().map(|e| e.path.as_str()).collect()
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Geometry of a superfloppy made by our builders: (fat offset, fat bytes, data offset, cluster size).
    fn geometry(img: &[u8]) -> (usize, usize, usize, usize) {
        let bps = u16::from_le_bytes([img[11], img[12]]) as usize;
        let spc = img[13] as usize;
        let rsvd = u16::from_le_bytes([img[14], img[15]]) as usize;
        let root_ent = u16::from_le_bytes([img[17], img[18]]) as usize;
        let mut fatsz = u16::from_le_bytes([img[22], img[23]]) as usize;
        if fatsz == 0 {
            fatsz = u32::from_le_bytes([img[36], img[37], img[38], img[39]]) as usize;
        }
        let fat_off = rsvd * bps;
        let data = fat_off + 2 * fatsz * bps + (root_ent * 32).div_ceil(bps) * bps;
        (fat_off, fatsz * bps, data, spc * bps)
    }

    fn set_fat(img: &mut [u8], bits: u8, n: usize, v: u32) {
        let (fo, fb, _, _) = geometry(img);
        for copy in 0..2 {
            let base = fo + copy * fb;
            match bits {
                12 => {
                    let off = base + n + n / 2;
                    let old = u16::from_le_bytes([img[off], img[off + 1]]);
                    let new = if n & 1 == 1 {
                        (old & 0x000F) | ((v as u16) << 4)
                    } else {
                        (old & 0xF000) | (v as u16 & 0x0FFF)
                    };
                    img[off..off + 2].copy_from_slice(&new.to_le_bytes());
                }
                16 => {
                    img[base + 2 * n..base + 2 * n + 2].copy_from_slice(&(v as u16).to_le_bytes())
                }
                _ => img[base + 4 * n..base + 4 * n + 4].copy_from_slice(&v.to_le_bytes()),
            }
        }
    }

    fn cluster_off(img: &[u8], c: usize) -> usize {
        let (_, _, data, cs) = geometry(img);
        data + (c - 2) * cs
    }

    /// Offset of the short entry whose 11-byte name is `name11`, and its cluster.
    fn short_entry_at(img: &[u8], name11: &[u8; 11]) -> (usize, usize) {
        let pos = find(img, name11);
        let lo = u16::from_le_bytes([img[pos + 26], img[pos + 27]]) as usize;
        let hi = u16::from_le_bytes([img[pos + 20], img[pos + 21]]) as usize;
        (pos, (hi << 16) | lo)
    }

    /// Structural promises every listing keeps, whatever the input.
    fn check(img: &[u8], l: &Listing, max_entries: usize) {
        assert!(l.entries.len() <= max_entries);
        assert!(l.anomalies.len() <= MAX_ANOMALIES + 1);
        for e in &l.entries {
            let total: u64 = e.extents.iter().map(|x| x.1).sum();
            assert!(total <= e.size, "{e:?}");
            assert!(e.path.len() <= MAX_PATH_BYTES);
            for &(o, n) in &e.extents {
                assert!(n > 0);
                assert!(o + n <= img.len() as u64);
            }
            if !e.truncated {
                assert_eq!(total, e.size);
            }
            let (d, cut) = read(img, e, 1000);
            assert!(d.len() <= 1000);
            assert_eq!(d.len() as u64, total.min(1000));
            assert_eq!(cut, total > 1000);
        }
    }

    use crate::extract::XorShift;

    fn sample_files() -> Vec<(String, Vec<u8>)> {
        vec![
            ("README.TXT".into(), b"plain 8.3 name\r\n".to_vec()),
            ("docs/Long File Name.exe".into(), pattern(1500, 1)),
            (
                "docs/sub/deep/ünïcødé 文件 with a name longer than twenty-six chars.txt".into(),
                pattern(700, 2),
            ),
            ("empty.bin".into(), Vec::new()),
            ("big.bin".into(), pattern(40 * 512 + 17, 3)),
            ("a/b/c/d.txt".into(), b"deep".to_vec()),
            (
                "docs/readme.md".into(),
                b"# lower-case 8.3 gets an LFN".to_vec(),
            ),
        ]
    }

    fn as_refs(v: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
        v.iter().map(|(p, d)| (p.as_str(), d.as_slice())).collect()
    }

    #[test]
    fn cp437_table_has_128_chars() {
        assert_eq!(CP437_HIGH.chars().count(), 128);
        assert_eq!(oem_char(0x81, false), 'ü');
        assert_eq!(oem_char(0xE1, false), 'ß');
        assert_eq!(oem_char(0xFF, false), '\u{a0}');
    }

    #[test]
    fn fat12_round_trip() {
        let files = sample_files();
        let img = build_fat12(&as_refs(&files));
        assert!(
            img.len() >= 256 * 1024 && img.len() <= 1440 * 1024,
            "{}",
            img.len()
        );
        assert!(is_fat(&img));
        let l = list(&img, 100).unwrap();
        assert_eq!(l.fat_bits, 12);
        assert_eq!(l.partition_offset, 0);
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        assert!(!l.entries_cut);
        assert_eq!(l.entries.len(), files.len());
        for (p, d) in &files {
            let e = by_path(&l, p);
            assert_eq!(e.size, d.len() as u64);
            assert!(!e.truncated);
            let (got, cut) = read(&img, e, usize::MAX);
            assert!(!cut);
            assert_eq!(&got, d, "{p}");
        }
        assert!(by_path(&l, "empty.bin").extents.is_empty());
        let big = by_path(&l, "big.bin");
        assert_eq!(big.extents.len(), 1, "contiguous chain merges");
        assert_eq!(big.extents[0].1, 40 * 512 + 17);
        check(&img, &l, 100);
    }

    #[test]
    fn builder_grows_clusters_for_big_content() {
        let data = pattern(3 << 20, 11);
        let img = build_fat12(&[("BIG.BIN", &data)]);
        assert!(img[13] > 1, "sectors per cluster grew");
        let l = list(&img, 10).unwrap();
        assert_eq!(l.fat_bits, 12);
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        assert_eq!(read(&img, &l.entries[0], usize::MAX).0, data);
    }

    #[test]
    fn builders_are_deterministic() {
        let files = sample_files();
        assert_eq!(build_fat12(&as_refs(&files)), build_fat12(&as_refs(&files)));
        assert_eq!(
            build_mbr_fat16(&as_refs(&files)),
            build_mbr_fat16(&as_refs(&files))
        );
    }

    #[test]
    fn short_names_are_generated_unique() {
        let img = build_fat12(&[
            ("Long File Name.exe", b"1"),
            ("Long File Nami.exe", b"2"),
            ("readme.md", b"3"),
        ]);
        assert!(find(&img, b"LONGFI~1EXE") > 0);
        assert!(find(&img, b"LONGFI~2EXE") > 0);
        assert!(find(&img, b"README~1MD ") > 0);
        let l = list(&img, 10).unwrap();
        assert_eq!(
            paths(&l),
            vec!["Long File Name.exe", "Long File Nami.exe", "readme.md"]
        );
    }

    #[test]
    fn bad_lfn_checksum_falls_back_to_short_name() {
        let mut img = build_fat12(&[("Long File Name.exe", b"x")]);
        let (pos, _) = short_entry_at(&img, b"LONGFI~1EXE");
        // What a DOS-era tool renaming the 8.3 entry leaves behind: an orphan LFN
        // whose slots agree with each other but not with the short name.
        img[pos + 7] = b'9';
        let l = list(&img, 10).unwrap();
        assert_eq!(paths(&l), vec!["LONGFI~9.EXE"]);
        // Slots that disagree with each other are dropped as well.
        img[pos + 7] = b'1';
        img[pos - 32 + 13] ^= 0x55;
        let l = list(&img, 10).unwrap();
        assert_eq!(paths(&l), vec!["LONGFI~1.EXE"]);
    }

    #[test]
    fn lfn_with_missing_slot_falls_back() {
        let name = "a name spanning three lfn slots!!.txt";
        let img0 = build_fat12(&[(name, b"x")]);
        let l = list(&img0, 10).unwrap();
        assert_eq!(paths(&l), vec![name]);
        let mut img = img0.clone();
        let (pos, _) = short_entry_at(&img, b"ANAMES~1TXT");
        // Turn the middle LFN slot (sequence 2) into a sequence 3 duplicate.
        img[pos - 64] = 3;
        let l = list(&img, 10).unwrap();
        assert_eq!(paths(&l), vec!["ANAMES~1.TXT"]);
    }

    #[test]
    fn nt_case_flags_and_oem_bytes() {
        let mut img = build_fat12(&[("KEEP.TXT", b"k"), ("OTHER.TXT", b"o")]);
        let (pos, _) = short_entry_at(&img, b"KEEP    TXT");
        img[pos + 12] = 0x18;
        let (pos2, _) = short_entry_at(&img, b"OTHER   TXT");
        img[pos2] = 0x81;
        img[pos2 + 1] = 0x05; // 0x05 only means 0xE5 in the first byte
        let l = list(&img, 10).unwrap();
        assert_eq!(paths(&l), vec!["keep.txt", "ü_HER.TXT"]);
        img[pos2] = 0x05;
        let l = list(&img, 10).unwrap();
        assert_eq!(l.entries[1].path, "σ_HER.TXT");
    }

    #[test]
    fn deleted_label_and_dot_entries_skipped() {
        let mut img = build_fat12(&[
            ("Gone Long.txt", b"gone"),
            ("KEEP.TXT", b"keep"),
            ("DIR/IN.TXT", b"in"),
        ]);
        let (pos, _) = short_entry_at(&img, b"GONELO~1TXT");
        img[pos] = 0xE5;
        // A volume label in the next free root slot.
        let (kpos, _) = short_entry_at(&img, b"KEEP    TXT");
        let (dpos, _) = short_entry_at(&img, b"DIR        ");
        let free = kpos.max(dpos) + 32;
        assert_eq!(img[free], 0);
        img[free..free + 11].copy_from_slice(b"MY LABEL   ");
        img[free + 11] = 0x08;
        let l = list(&img, 10).unwrap();
        assert_eq!(paths(&l), vec!["KEEP.TXT", "DIR/IN.TXT"]);
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
    }

    #[test]
    fn end_marker_stops_directory() {
        let mut img = build_fat12(&[("ONE.TXT", b"1"), ("TWO.TXT", b"2")]);
        let (pos, _) = short_entry_at(&img, b"ONE     TXT");
        img[pos] = 0;
        let l = list(&img, 10).unwrap();
        assert!(l.entries.is_empty());
    }

    #[test]
    fn fragmented_chain_reads_back() {
        let data = pattern(5 * 512, 9);
        let mut img = build_fat12(&[("FRAG.BIN", &data), ("AFTER.BIN", b"after")]);
        let (_, c) = short_entry_at(&img, b"FRAG    BIN");
        let f = 400usize;
        let (src, dst) = (cluster_off(&img, c + 2), cluster_off(&img, f));
        let moved = img[src..src + 512].to_vec();
        img[dst..dst + 512].copy_from_slice(&moved);
        img[src..src + 512].fill(0xCC);
        set_fat(&mut img, 12, c + 1, f as u32);
        set_fat(&mut img, 12, f, (c + 3) as u32);
        set_fat(&mut img, 12, c + 2, 0);
        let l = list(&img, 10).unwrap();
        let e = by_path(&l, "FRAG.BIN");
        assert!(!e.truncated);
        assert_eq!(e.extents.len(), 3, "{:?}", e.extents);
        assert_eq!(e.extents[1], (dst as u64, 512));
        assert_eq!(read(&img, e, usize::MAX).0, data);
        assert_eq!(read(&img, by_path(&l, "AFTER.BIN"), 99).0, b"after");
    }

    #[test]
    fn fat_loop_is_truncated_and_reported() {
        let data = pattern(4 * 512, 4);
        let mut img = build_fat12(&[("LOOP.BIN", &data)]);
        let (_, c) = short_entry_at(&img, b"LOOP    BIN");
        set_fat(&mut img, 12, c + 2, c as u32);
        let l = list(&img, 10).unwrap();
        let e = by_path(&l, "LOOP.BIN");
        assert!(e.truncated);
        assert_eq!(e.extents, vec![(cluster_off(&img, c) as u64, 3 * 512)]);
        assert!(
            l.anomalies.iter().any(|a| a.contains("loops")),
            "{:?}",
            l.anomalies
        );
        assert_eq!(read(&img, e, usize::MAX).0, &data[..3 * 512]);
    }

    #[test]
    fn chain_into_free_or_out_of_range_cluster() {
        let data = pattern(3 * 512, 5);
        let mut img = build_fat12(&[("A.BIN", &data)]);
        let (_, c) = short_entry_at(&img, b"A       BIN");
        set_fat(&mut img, 12, c, 0);
        let l = list(&img, 10).unwrap();
        assert!(l.entries[0].truncated);
        assert_eq!(l.entries[0].extents[0].1, 512);
        set_fat(&mut img, 12, c, 0xFF0); // reserved, above any valid cluster
        let l = list(&img, 10).unwrap();
        assert!(l.entries[0].truncated);
        assert!(l.anomalies[0].contains("0xff0"), "{:?}", l.anomalies);
    }

    #[test]
    fn directory_cycles_are_cut() {
        let mut img = build_fat12(&[("A/B/X.TXT", b"x"), ("A/Y.TXT", b"y")]);
        let (_, a) = short_entry_at(&img, b"A          ");
        let (bpos, _) = short_entry_at(&img, b"B          ");
        // B claims A's cluster: following it would re-enter A forever.
        img[bpos + 26..bpos + 28].copy_from_slice(&(a as u16).to_le_bytes());
        let l = list(&img, 10).unwrap();
        assert_eq!(paths(&l), vec!["A/Y.TXT"]);
        assert!(
            l.anomalies.iter().any(|s| s.contains("cycle")),
            "{:?}",
            l.anomalies
        );

        // A directory whose own chain points back at itself.
        let mut img = build_fat12(&[("A/Y.TXT", b"y")]);
        let (_, a) = short_entry_at(&img, b"A          ");
        set_fat(&mut img, 12, a, a as u32);
        let l = list(&img, 10).unwrap();
        assert_eq!(paths(&l), vec!["A/Y.TXT"]);
        assert!(!l.anomalies.is_empty());
    }

    #[test]
    fn depth_is_capped_at_32() {
        let ok = format!("{}F.TXT", "D/".repeat(32));
        let too_deep = format!("{}G.TXT", "E/".repeat(33));
        let img = build_fat12(&[(ok.as_str(), b"f"), (too_deep.as_str(), b"g")]);
        let l = list(&img, 10).unwrap();
        assert_eq!(paths(&l), vec![ok.as_str()]);
        assert!(l.anomalies.iter().any(|s| s.contains("deeper")));
    }

    #[test]
    fn max_entries_cuts_listing() {
        let names: Vec<String> = (0..10).map(|i| format!("F{i}.TXT")).collect();
        let files: Vec<(&str, &[u8])> = names
            .iter()
            .map(|n| (n.as_str(), b"z".as_slice()))
            .collect();
        let img = build_fat12(&files);
        let l = list(&img, 3).unwrap();
        assert_eq!(l.entries.len(), 3);
        assert!(l.entries_cut);
        let l = list(&img, 10).unwrap();
        assert!(!l.entries_cut);
        let l = list(&img, 0).unwrap();
        assert!(l.entries.is_empty() && l.entries_cut);
    }

    #[test]
    fn read_respects_max_bytes() {
        let data = pattern(3000, 7);
        let img = build_fat12(&[("R.BIN", &data)]);
        let l = list(&img, 10).unwrap();
        let (d, cut) = read(&img, &l.entries[0], 1024);
        assert!(cut);
        assert_eq!(d, &data[..1024]);
        let (d, cut) = read(&img, &l.entries[0], 3000);
        assert!(!cut);
        assert_eq!(d, data);
        // A hand-made entry pointing outside the image reads nothing.
        let bogus = Entry {
            path: "x".into(),
            size: u64::MAX,
            extents: vec![(u64::MAX - 5, u64::MAX), (img.len() as u64 - 10, 1 << 40)],
            truncated: true,
        };
        let (d, cut) = read(&img, &bogus, 1 << 20);
        assert_eq!(d.len(), 10);
        assert!(!cut);
    }

    #[test]
    fn lying_file_size() {
        let mut img = build_fat12(&[("ONE.BIN", &pattern(512, 1))]);
        let (pos, _) = short_entry_at(&img, b"ONE     BIN");
        img[pos + 28..pos + 32].copy_from_slice(&u32::MAX.to_le_bytes());
        let l = list(&img, 10).unwrap();
        let e = &l.entries[0];
        assert_eq!(e.size, u32::MAX as u64);
        assert!(e.truncated);
        assert_eq!(e.extents.iter().map(|x| x.1).sum::<u64>(), 512);
        let (d, cut) = read(&img, e, 1 << 30);
        assert_eq!(d.len(), 512);
        assert!(!cut);
        check(&img, &l, 10);
    }

    #[test]
    fn cross_linked_files_hit_step_budget() {
        let names: Vec<String> = (0..100).map(|i| format!("S{i}.BIN")).collect();
        let big = pattern(400 * 512, 8);
        let mut files: Vec<(&str, &[u8])> = vec![("BIG.BIN", &big)];
        files.extend(names.iter().map(|n| (n.as_str(), b"s".as_slice())));
        let mut img = build_fat12(&files);
        let (_, bigc) = short_entry_at(&img, b"BIG     BIN");
        for n in &names {
            let mut n11 = *b"           ";
            let (b, e) = n.split_once('.').unwrap();
            n11[..b.len()].copy_from_slice(b.as_bytes());
            n11[8..8 + e.len()].copy_from_slice(e.as_bytes());
            let (pos, _) = short_entry_at(&img, &n11);
            img[pos + 26..pos + 28].copy_from_slice(&(bigc as u16).to_le_bytes());
            img[pos + 28..pos + 32].copy_from_slice(&(400u32 * 512).to_le_bytes());
        }
        let l = list(&img, 1000).unwrap();
        assert_eq!(l.entries.len(), 101);
        let budget = (img.len() as u64 / 512) * 2 + 1024;
        let total: u64 = l
            .entries
            .iter()
            .flat_map(|e| e.extents.iter())
            .map(|x| x.1)
            .sum();
        assert!(total <= budget * 512, "{total} > {}", budget * 512);
        assert!(l.entries.iter().any(|e| e.truncated));
        assert!(l.anomalies.iter().any(|s| s.contains("budget")));
        check(&img, &l, 1000);
    }

    #[test]
    fn huge_claimed_counts_on_small_image() {
        let base = build_fat12(&[("A.TXT", b"a"), ("D/B.TXT", b"b")]);
        let patches: Vec<(usize, Vec<u8>)> = vec![
            (19, vec![0, 0]),                   // TotSec16 = 0 -> TotSec32
            (32, vec![0xFF, 0xFF, 0xFF, 0xFF]), // TotSec32 huge
            (17, vec![0xFF, 0xFF]),             // RootEntCnt 65535
            (22, vec![0xFF, 0xFF]),             // FATSz16 huge
            (13, vec![128]),                    // 64 KiB clusters
            (44, vec![2, 0, 0, 0]),             // plausible FAT32 root
        ];
        // Every subset of the patches: none may panic, hang or break invariants.
        for mask in 0u32..(1 << patches.len()) {
            let mut img = base.clone();
            for (i, (off, bytes)) in patches.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    img[*off..*off + bytes.len()].copy_from_slice(bytes);
                }
            }
            if let Ok(l) = list(&img, 50) {
                check(&img, &l, 50);
            }
        }
        let mut img = base.clone();
        img[19..21].copy_from_slice(&[0, 0]);
        img[32..36].copy_from_slice(&[0xFF; 4]);
        let l = list(&img, 50).unwrap();
        assert_eq!(l.fat_bits, 32, "cluster count, not the label, decides");
        assert!(l.anomalies.iter().any(|s| s.contains("volume claims")));
    }

    #[test]
    fn mbr_fat16_round_trip() {
        let files = sample_files();
        let img = build_mbr_fat16(&as_refs(&files));
        assert!(img.len() <= 4 << 20, "{}", img.len());
        assert!(is_fat(&img));
        let l = list(&img, 100).unwrap();
        assert_eq!(l.fat_bits, 16);
        assert_eq!(l.partition_offset, 2048 * 512);
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        assert_eq!(l.entries.len(), files.len());
        for (p, d) in &files {
            assert_eq!(&read(&img, by_path(&l, p), usize::MAX).0, d);
        }
        check(&img, &l, 100);
    }

    fn mbr_entry(ty: u8, lba: u32, sectors: u32) -> [u8; 16] {
        let mut e = [0u8; 16];
        e[4] = ty;
        e[8..12].copy_from_slice(&lba.to_le_bytes());
        e[12..16].copy_from_slice(&sectors.to_le_bytes());
        e
    }

    #[test]
    fn mbr_two_partitions_get_prefixes() {
        let v1 = build_fat12(&[("ONE.TXT", b"first")]);
        let v2 = build_fat12(&[("dir/Two Long.txt", b"second")]);
        let mut img = vec![0u8; 512];
        let s1 = (v1.len() / 512) as u32;
        img[446..462].copy_from_slice(&mbr_entry(0x01, 1, s1));
        img[462..478].copy_from_slice(&mbr_entry(0x07, 1, s1)); // NTFS type: ignored
        img[478..494].copy_from_slice(&mbr_entry(0x0E, 1 + s1, (v2.len() / 512) as u32));
        img[510] = 0x55;
        img[511] = 0xAA;
        img.extend_from_slice(&v1);
        img.extend_from_slice(&v2);
        assert!(is_fat(&img));
        let l = list(&img, 10).unwrap();
        assert_eq!(paths(&l), vec!["p1/ONE.TXT", "p3/dir/Two Long.txt"]);
        assert_eq!(l.partition_offset, 512);
        assert_eq!(read(&img, &l.entries[1], 100).0, b"second");
        // A bad status byte means this is not an MBR at all.
        img[446] = 0x12;
        assert!(!is_fat(&img));
        assert_eq!(list(&img, 10), Err(Error::NotFat));
    }

    #[test]
    fn gpt_partition_is_found() {
        let vol = build_fat12(&[("GPT.TXT", b"from gpt")]);
        let first_lba = 34u64;
        let mut img = vec![0u8; first_lba as usize * 512];
        img[446..462].copy_from_slice(&mbr_entry(0xEE, 1, u32::MAX));
        img[510] = 0x55;
        img[511] = 0xAA;
        let h = 512;
        img[h..h + 8].copy_from_slice(b"EFI PART");
        img[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
        img[h + 80..h + 84].copy_from_slice(&128u32.to_le_bytes());
        img[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
        // Entry 1: some non-FAT partition over zeros; entry 2: basic data with FAT.
        let e1 = 1024;
        img[e1] = 0xAF;
        img[e1 + 32..e1 + 40].copy_from_slice(&1u64.to_le_bytes());
        let e2 = 1024 + 128;
        img[e2..e2 + 16].copy_from_slice(&[
            0xA2, 0xA0, 0xD0, 0xEB, 0xE5, 0xB9, 0x33, 0x44, 0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26,
            0x99, 0xC7,
        ]);
        img[e2 + 32..e2 + 40].copy_from_slice(&first_lba.to_le_bytes());
        img.extend_from_slice(&vol);
        assert!(is_fat(&img));
        let l = list(&img, 10).unwrap();
        assert_eq!(paths(&l), vec!["GPT.TXT"]);
        assert_eq!(l.partition_offset, first_lba * 512);
        assert_eq!(read(&img, &l.entries[0], 100).0, b"from gpt");
        // Without the header it is only an anomaly.
        img[h] = b'X';
        assert_eq!(list(&img, 10), Err(Error::NotFat));
    }

    #[test]
    fn fat32_round_trip_and_high_cluster() {
        let files = sample_files();
        let mut refs = as_refs(&files);
        refs.push(("HI.BIN", b"high word"));
        let mut img = build_fat32(&refs);
        assert!(is_fat(&img));
        let l = list(&img, 100).unwrap();
        assert_eq!(l.fat_bits, 32);
        assert!(l.anomalies.is_empty(), "{:?}", l.anomalies);
        for (p, d) in &refs {
            assert_eq!(&read(&img, by_path(&l, p), usize::MAX).0, d);
        }
        // Move HI.BIN to a cluster above 65535 so the high word matters.
        let (pos, c) = short_entry_at(&img, b"HI      BIN");
        let target = 65_540usize;
        let (src, dst) = (cluster_off(&img, c), cluster_off(&img, target));
        let moved = img[src..src + 512].to_vec();
        img[dst..dst + 512].copy_from_slice(&moved);
        img[src..src + 512].fill(0);
        set_fat(&mut img, 32, target, 0x0FFF_FFFF);
        set_fat(&mut img, 32, c, 0);
        img[pos + 20..pos + 22].copy_from_slice(&1u16.to_le_bytes());
        img[pos + 26..pos + 28].copy_from_slice(&4u16.to_le_bytes());
        let l = list(&img, 100).unwrap();
        let e = by_path(&l, "HI.BIN");
        assert_eq!(e.extents, vec![(dst as u64, 9)]);
        assert_eq!(read(&img, e, 100).0, b"high word");
        // Root chain looping onto itself is cut, not followed forever.
        set_fat(&mut img, 32, 2, 2);
        let l = list(&img, 100).unwrap();
        assert!(!l.entries.is_empty());
        assert!(l.anomalies.iter().any(|s| s.contains("root directory")));
    }

    #[test]
    fn is_fat_rejects_other_formats() {
        let mut mz = vec![0u8; 1024];
        mz[..2].copy_from_slice(b"MZ");
        mz[0x3C] = 0x80;
        mz[510] = 0x55;
        mz[511] = 0xAA;
        let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
        zip.resize(600, 0);
        zip.extend_from_slice(b"PK\x05\x06");
        zip.resize(700, 0);
        let mut zeros = vec![0u8; 512];
        zeros[510] = 0x55;
        zeros[511] = 0xAA;
        let mut ntfs = build_fat12(&[]);
        ntfs[0..11].copy_from_slice(b"\xEB\x52\x90NTFS    ");
        ntfs[14..16].copy_from_slice(&[0, 0]);
        let mut bad_media = build_fat12(&[]);
        bad_media[21] = 0x12;
        let mut bad_jump = build_fat12(&[]);
        bad_jump[2] = 0x00;
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let random: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        for (name, img) in [
            ("mz", &mz),
            ("zip", &zip),
            ("zeros", &zeros),
            ("ntfs", &ntfs),
            ("media", &bad_media),
            ("jump", &bad_jump),
            ("random", &random),
        ] {
            assert!(!is_fat(img), "{name}");
            assert!(list(img, 10).is_err(), "{name}");
        }
        assert!(!is_fat(&[]));
        assert_eq!(list(&[0u8; 100], 1), Err(Error::TooShort(100)));
        assert!(is_fat(&build_fat12(&[])));
        assert!(is_fat(&build_mbr_fat16(&[])));
    }

    fn truncations(img: &[u8]) {
        let step = if img.len() > 20 * 1024 { 7 } else { 1 };
        let mut ok = 0usize;
        for n in (0..=img.len()).step_by(step) {
            let part = &img[..n];
            let _ = is_fat(part);
            if let Ok(l) = list(part, 100) {
                check(part, &l, 100);
                ok += 1;
            }
        }
        assert!(ok > 0);
    }

    #[test]
    fn truncated_fat12_never_panics() {
        truncations(&build_fat12(&as_refs(&sample_files())));
    }

    #[test]
    fn truncated_small_fat12_every_byte() {
        // Every offset through boot sector, both FATs, root directory and first data.
        let img = build_fat12(&[("A.TXT", b"a")]);
        for n in 0..20 * 1024 {
            if let Ok(l) = list(&img[..n], 10) {
                check(&img[..n], &l, 10);
            }
        }
    }

    #[test]
    fn truncated_mbr_fat16_never_panics() {
        // A lighter sample than the others: 450 000 prefixes of a 3 MiB image.
        let long = pattern(1500, 6);
        truncations(&build_mbr_fat16(&[
            ("README.TXT", b"r"),
            ("dir/Long Name.txt", &long),
        ]));
    }

    #[test]
    fn mutations_never_panic() {
        let files = sample_files();
        let fat12 = build_fat12(&as_refs(&files));
        let mbr = build_mbr_fat16(&as_refs(&files));
        let fat32 = build_fat32(&as_refs(&files));
        // Mutations are aimed half the time at the metadata, where they matter.
        let (fo, _, d32, _) = geometry(&fat32);
        let mut samples: Vec<(Vec<u8>, Vec<std::ops::Range<usize>>)> = vec![
            (fat12, vec![0..1024, 1024..16 * 1024]),
            (mbr, vec![0..512, 1 << 20..(1 << 20) + 64 * 1024]),
            (fat32, vec![0..1024, fo..fo + 4096, d32..d32 + 32 * 1024]),
        ];
        let mut rng = XorShift(0x1234_5678_9ABC_DEF1);
        let (mut ok, mut with_entries) = (0, 0);
        // FAT_FUZZ_ITERS=300000 for a longer local soak.
        let iters: usize = std::env::var("FAT_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000);
        for iter in 0..iters {
            let (img, hot) = &mut samples[iter % 3];
            let n = 1 + rng.below(16);
            let mut saved = Vec::with_capacity(n);
            for _ in 0..n {
                let pos = if rng.below(2) == 0 {
                    let r = &hot[rng.below(hot.len())];
                    r.start + rng.below(r.len())
                } else {
                    rng.below(img.len())
                };
                saved.push((pos, img[pos]));
                img[pos] = rng.next() as u8;
            }
            let max = 1 + rng.below(20);
            if let Ok(l) = list(img, max) {
                check(img, &l, max);
                ok += 1;
                with_entries += usize::from(!l.entries.is_empty());
            }
            let _ = is_fat(img);
            for (pos, b) in saved.into_iter().rev() {
                img[pos] = b;
            }
        }
        // Most mutants must still parse, or the fuzzing exercised nothing.
        eprintln!("mutants listed: {ok}, with entries: {with_entries}");
        assert!(
            ok * 3 > iters * 2 && with_entries * 2 > iters,
            "{ok} {with_entries}"
        );
    }
}
