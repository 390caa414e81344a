//! OneNote revision-store files (`.one`, `.onetoc2`; MS-ONESTORE): detection
//! and location of embedded files, plus a minimal test builder.
//!
//! Supported: [`is_onenote`] checks only the 16-byte `guidFileType` at offset
//! 0 (the `.one` or `.onetoc2` GUID), which also covers the FSSHTTPB
//! "packaging" variant that shares the `.one` GUID. [`embedded_files`] finds
//! every FileDataStoreObject (MS-ONESTORE 2.6.13: `guidHeader`, `cbLength`
//! u64 LE, 4 unused bytes, 8 reserved bytes, FileData, padding so the
//! structure ends on an 8-byte boundary, `guidFooter`) by scanning for the
//! header GUID, so objects that a damaged or forged file-node index no longer
//! references are found too. `unused`/`reserved` are ignored as the spec says.
//!
//! Not supported: walking the file node lists / transaction log, the
//! FSSHTTPB packaging's data elements, pictures stored in a `onefiles` folder,
//! and embedded file *names* (MS-ONE `EmbeddedFileName` lives in property sets
//! that need the object-space parser to reach reliably, so it is left out).
//!
//! Hostile-input guards: `cbLength` is a u64 compared against the input with
//! checked arithmetic and never used to allocate; returned ranges are clamped
//! to the input; the scan restarts right after each header GUID (a lying
//! `cbLength` cannot hide later objects, and objects inside another object's
//! data are reported too); `max_files` bounds the result; the footer search
//! looks at 8 fixed positions. Time is O(input), memory O(max_files).

// Writers and checks beyond what the gateway calls serve the tests and the
// sample generators (crate::samples).
#![cfg_attr(not(test), allow(dead_code))]

/// Writes a GUID's canonical `{d1-d2-d3-d4}` form in its on-disk byte order
/// (MS-DTYP: the first three fields little-endian, the last 8 bytes as is).
const fn guid(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

/// `guidFileType` of a `.one` section file: {7B5C52E4-D88C-4DA7-AEB1-5378D02996D3}.
pub const GUID_ONE: [u8; 16] = guid(
    0x7B5C_52E4,
    0xD88C,
    0x4DA7,
    [0xAE, 0xB1, 0x53, 0x78, 0xD0, 0x29, 0x96, 0xD3],
);

/// `guidFileType` of a `.onetoc2` table of contents: {43FF2FA1-EFD9-4C76-9EE2-10EA5722765F}.
pub const GUID_ONETOC2: [u8; 16] = guid(
    0x43FF_2FA1,
    0xEFD9,
    0x4C76,
    [0x9E, 0xE2, 0x10, 0xEA, 0x57, 0x22, 0x76, 0x5F],
);

/// `guidFileFormat` of a revision store file: {109ADD3F-911B-49F5-A5D0-1791EDC8AED8}.
const GUID_FILE_FORMAT: [u8; 16] = guid(
    0x109A_DD3F,
    0x911B,
    0x49F5,
    [0xA5, 0xD0, 0x17, 0x91, 0xED, 0xC8, 0xAE, 0xD8],
);

/// FileDataStoreObject `guidHeader`: {BDE316E7-2665-4511-A4C4-8D4D0B7A9EAC}.
pub const GUID_FDSO_HEADER: [u8; 16] = guid(
    0xBDE3_16E7,
    0x2665,
    0x4511,
    [0xA4, 0xC4, 0x8D, 0x4D, 0x0B, 0x7A, 0x9E, 0xAC],
);

/// FileDataStoreObject `guidFooter`: {71FBA722-0F79-4A0B-BB13-899256426B24}.
pub const GUID_FDSO_FOOTER: [u8; 16] = guid(
    0x71FB_A722,
    0x0F79,
    0x4A0B,
    [0xBB, 0x13, 0x89, 0x92, 0x56, 0x42, 0x6B, 0x24],
);

/// guidHeader(16) + cbLength(8) + unused(4) + reserved(8).
const FDSO_PREFIX: u64 = 36;

/// Size of the revision store file header (MS-ONESTORE 2.3.1).
const HEADER_SIZE: usize = 1024;

/// One FileDataStoreObject found in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded {
    /// Offset of the first FileData byte in the input.
    pub offset: u64,
    /// FileData bytes present in the input: `cbLength`, or fewer when
    /// `truncated`. `offset + len` never exceeds the input length.
    pub len: u64,
    /// `cbLength` (or the object's own 36-byte prefix) ran past the input.
    pub truncated: bool,
    /// `guidFooter` follows the data (at any of the 8 padding positions, so
    /// both readings of the 8-byte alignment rule are accepted).
    pub footer_ok: bool,
}

impl Embedded {
    /// The FileData bytes this entry describes (empty if `data` is not the
    /// input it came from and the range does not fit).
    pub fn bytes<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        let start = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let len = usize::try_from(self.len).unwrap_or(usize::MAX);
        data.get(start..start.saturating_add(len)).unwrap_or(&[])
    }
}

/// True when the input starts with the `.one` or `.onetoc2` `guidFileType`.
/// Only those 16 bytes are checked: enough to route the file to
/// [`embedded_files`], and lenient towards damaged headers.
pub fn is_onenote(data: &[u8]) -> bool {
    matches!(data.get(..16), Some(g) if g == GUID_ONE || g == GUID_ONETOC2)
}

fn find_guid(data: &[u8], from: usize, guid: &[u8; 16]) -> Option<usize> {
    data.get(from..)?
        .windows(guid.len())
        .position(|w| w == guid)
        .map(|p| from + p)
}

fn read_u64_le(data: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = data.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

fn footer_at(data: &[u8], at: u64) -> bool {
    usize::try_from(at)
        .ok()
        .and_then(|a| data.get(a..a.checked_add(16)?))
        .is_some_and(|g| g == GUID_FDSO_FOOTER)
}

/// Every FileDataStoreObject in the file, found by scanning for the header GUID (the revision store's file node lists are not needed for this, and a scan also finds objects a damaged index no longer references).
///
/// The flag is true when more objects exist than `max_files` allowed to return.
pub fn embedded_files(data: &[u8], max_files: usize) -> (Vec<Embedded>, bool) {
    let total = data.len() as u64;
    let mut out = Vec::new();
    let mut from = 0usize;
    while let Some(at) = find_guid(data, from, &GUID_FDSO_HEADER) {
        if out.len() >= max_files {
            return (out, true);
        }
        // Resume right after this GUID so a lying cbLength cannot hide
        // later objects.
        from = at + 16;
        let start = at as u64;
        let data_off = start.saturating_add(FDSO_PREFIX);
        let entry = match read_u64_le(data, at + 16) {
            Some(cb) if data_off <= total => {
                let avail = total - data_off;
                if cb > avail {
                    Embedded {
                        offset: data_off,
                        len: avail,
                        truncated: true,
                        footer_ok: false,
                    }
                } else {
                    let end = data_off + cb;
                    Embedded {
                        offset: data_off,
                        len: cb,
                        truncated: false,
                        footer_ok: (0..8).any(|pad| footer_at(data, end + pad)),
                    }
                }
            }
            _ => Embedded {
                offset: data_off.min(total),
                len: 0,
                truncated: true,
                footer_ok: false,
            },
        };
        out.push(entry);
    }
    (out, false)
}

/// A minimal `.one` file: the 1024-byte MS-ONESTORE 2.3.1 header (file type,
/// a fixed `guidFile`, zero legacy version, file format GUID, the four
/// file-format-version fields 0x2A; everything else zero), then one
/// FileDataStoreObject per input, each starting and ending 8-byte aligned.
/// Deterministic; it has no file node lists, so OneNote itself will not open
/// it, but it exercises every scanner that looks for embedded files.
pub fn build(files: &[&[u8]]) -> Vec<u8> {
    let payload: usize = files.iter().map(|f| f.len() + 60).sum();
    let mut out = Vec::with_capacity(HEADER_SIZE + payload);
    out.extend_from_slice(&GUID_ONE);
    // guidFile: fixed so builds are reproducible.
    out.extend_from_slice(&guid(
        0x5043_5543,
        0x4C4C,
        0x4953,
        [0x50, 0x4F, 0x52, 0x54, 0x43, 0x55, 0x4C, 0x4C],
    ));
    out.extend_from_slice(&[0u8; 16]); // guidLegacyFileVersion
    out.extend_from_slice(&GUID_FILE_FORMAT);
    for _ in 0..4 {
        // ffvLastCodeThatWroteToThisFile .. ffvOldestCodeThatMayReadThisFile
        out.extend_from_slice(&0x2Au32.to_le_bytes());
    }
    out.resize(HEADER_SIZE, 0);
    for file in files {
        out.extend_from_slice(&GUID_FDSO_HEADER);
        out.extend_from_slice(&(file.len() as u64).to_le_bytes());
        out.extend_from_slice(&[0u8; 4]); // unused
        out.extend_from_slice(&[0u8; 8]); // reserved
        out.extend_from_slice(file);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        out.extend_from_slice(&GUID_FDSO_FOOTER);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::extract::XorShift;

    fn fdso(payload: &[u8], cb: u64) -> Vec<u8> {
        let mut v = GUID_FDSO_HEADER.to_vec();
        v.extend(cb.to_le_bytes());
        v.extend([0u8; 12]);
        v.extend(payload);
        v
    }

    #[test]
    fn guid_byte_layout_matches_known_signatures() {
        // The byte strings malware-hunting rules use for these structures.
        assert_eq!(
            GUID_ONE,
            [
                0xE4, 0x52, 0x5C, 0x7B, 0x8C, 0xD8, 0xA7, 0x4D, 0xAE, 0xB1, 0x53, 0x78, 0xD0, 0x29,
                0x96, 0xD3
            ]
        );
        assert_eq!(
            GUID_FDSO_HEADER,
            [
                0xE7, 0x16, 0xE3, 0xBD, 0x65, 0x26, 0x11, 0x45, 0xA4, 0xC4, 0x8D, 0x4D, 0x0B, 0x7A,
                0x9E, 0xAC
            ]
        );
        assert_eq!(&GUID_FDSO_FOOTER[..4], &[0x22, 0xA7, 0xFB, 0x71]);
        assert_eq!(&GUID_ONETOC2[..6], &[0xA1, 0x2F, 0xFF, 0x43, 0xD9, 0xEF]);
    }

    #[test]
    fn round_trip() {
        let files: [&[u8]; 4] = [
            b"<html><hta:application></html>",
            b"",
            &[0x4D, 0x5A, 0x90, 0x00, 0x03, 0x00, 0x00, 0x00],
            b"@echo off\r\nstart calc\r\n",
        ];
        let one = build(&files);
        assert!(is_onenote(&one));
        assert_eq!(&one[48..64], &GUID_FILE_FORMAT);
        assert_eq!(one.len() % 8, 0);
        let (found, more) = embedded_files(&one, 100);
        assert!(!more);
        assert_eq!(found.len(), files.len());
        for (e, f) in found.iter().zip(files) {
            assert_eq!(e.bytes(&one), f);
            assert!(e.footer_ok && !e.truncated);
            // The structure ends on an 8-byte boundary: footer is aligned.
            assert_eq!((e.offset + e.len).div_ceil(8) * 8 % 8, 0);
            assert_eq!(
                &one[(e.offset + e.len).div_ceil(8) as usize * 8..][..16],
                &GUID_FDSO_FOOTER
            );
        }
        assert_eq!(build(&files), one, "deterministic");
    }

    #[test]
    fn detection() {
        assert!(!is_onenote(b""));
        assert!(!is_onenote(&GUID_ONE[..15]));
        assert!(is_onenote(&GUID_ONE));
        assert!(is_onenote(&GUID_ONETOC2));
        assert!(!is_onenote(&GUID_FDSO_HEADER));
        let mut zip = b"PK\x03\x04".to_vec();
        zip.resize(2048, 0);
        assert!(!is_onenote(&zip));
        assert_eq!(embedded_files(&zip, 10), (vec![], false));
    }

    #[test]
    fn cb_length_past_end_is_truncated_and_clamped() {
        let mut one = build(&[]);
        one.extend(fdso(b"only these bytes", 1 << 40));
        let (found, more) = embedded_files(&one, 10);
        assert!(!more);
        assert_eq!(found.len(), 1);
        let e = found[0];
        assert!(e.truncated && !e.footer_ok);
        assert_eq!(e.bytes(&one), b"only these bytes");
        assert_eq!(e.offset + e.len, one.len() as u64);

        let mut one = build(&[]);
        one.extend(fdso(b"x", u64::MAX));
        let (found, _) = embedded_files(&one, 10);
        assert!(found[0].truncated);
        assert_eq!(found[0].bytes(&one), b"x");
    }

    #[test]
    fn lying_cb_length_does_not_hide_later_objects() {
        // First object claims 1 MiB but the file is small; the real object
        // after it (and one nested inside the first's claimed data) is found.
        let inner = build(&[b"hidden payload"]);
        let mut one = build(&[]);
        one.extend(fdso(&inner[1024..], 1 << 20));
        let (found, _) = embedded_files(&one, 10);
        assert_eq!(found.len(), 2);
        assert!(found[0].truncated);
        assert_eq!(found[1].bytes(&one), b"hidden payload");
        assert!(found[1].footer_ok && !found[1].truncated);
    }

    #[test]
    fn overlapping_and_adjacent_objects() {
        // Adjacent: no gap between one footer and the next header.
        let one = build(&[b"first", b"second!!", b"third"]);
        let (found, _) = embedded_files(&one, 10);
        let names: Vec<&[u8]> = found.iter().map(|e| e.bytes(&one)).collect();
        assert_eq!(names, [&b"first"[..], b"second!!", b"third"]);
        // Overlapping: an outer object whose data contains a whole inner one.
        let inner = &build(&[b"inner"])[1024..];
        let outer = build(&[inner]);
        let (found, _) = embedded_files(&outer, 10);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].bytes(&outer), inner);
        assert_eq!(found[1].bytes(&outer), b"inner");
        assert!(found.iter().all(|e| e.footer_ok && !e.truncated));
    }

    #[test]
    fn footer_found_with_either_alignment_reading() {
        // Object starting at an offset that is not 8-aligned; footer placed by
        // padding relative to the object start rather than the file.
        let mut one = build(&[]);
        one.extend([0u8; 3]);
        let mut obj = fdso(b"12345", 5);
        while obj.len() % 8 != 4 {
            obj.push(0); // 36 + 5 + pad + 16 ends 8-aligned relative to object
        }
        obj.extend(GUID_FDSO_FOOTER);
        one.extend(&obj);
        let (found, _) = embedded_files(&one, 10);
        assert_eq!(found.len(), 1);
        assert!(found[0].footer_ok);
        // And a wrong footer is reported as such.
        let last = one.len() - 1;
        one[last] ^= 1;
        assert!(!embedded_files(&one, 10).0[0].footer_ok);
    }

    #[test]
    fn guid_split_at_end_of_input() {
        let base = build(&[b"a"]);
        for cut in 1..16 {
            let mut one = base.clone();
            one.extend(&GUID_FDSO_HEADER[..cut]);
            let (found, _) = embedded_files(&one, 10);
            assert_eq!(
                found.len(),
                1,
                "partial GUID of {cut} bytes is not an object"
            );
        }
        // Whole GUID but the 36-byte prefix cut (cbLength partly or wholly
        // there): reported, empty, truncated; then one data byte present.
        let obj = fdso(b"zz", 2);
        for keep in 16..=obj.len() {
            let mut one = base.clone();
            one.extend(&obj[..keep]);
            let (found, _) = embedded_files(&one, 10);
            assert_eq!(found.len(), 2);
            let e = found[1];
            assert_eq!(e.truncated, keep < obj.len(), "keep {keep}");
            assert!(!e.footer_ok);
            assert!(e.offset + e.len <= one.len() as u64);
            assert_eq!(e.bytes(&one), &b"zz"[..keep.saturating_sub(36)]);
        }
    }

    #[test]
    fn max_files_is_respected() {
        let files: Vec<&[u8]> = vec![b"x"; 5];
        let one = build(&files);
        assert_eq!(embedded_files(&one, 3).0.len(), 3);
        assert!(embedded_files(&one, 3).1);
        assert_eq!(embedded_files(&one, 5), (embedded_files(&one, 6).0, false));
        assert_eq!(embedded_files(&one, 0), (vec![], true));
    }

    #[test]
    fn many_guids_are_linear_and_capped() {
        let mut data = Vec::new();
        for _ in 0..50_000 {
            data.extend(GUID_FDSO_HEADER);
        }
        let (found, more) = embedded_files(&data, 1000);
        assert_eq!(found.len(), 1000);
        assert!(more);
        assert!(found.iter().all(|e| e.offset + e.len <= data.len() as u64));
    }

    #[test]
    fn hostile_truncation_at_every_offset() {
        let one = build(&[b"<script>alert(1)</script>", &[0x90; 500], b"MZ"]);
        assert!(one.len() < 20_000);
        for n in 0..=one.len() {
            let t = &one[..n];
            let (found, _) = embedded_files(t, 100);
            assert!(found.len() <= 3);
            for e in &found {
                assert!(e.offset + e.len <= n as u64);
                if e.footer_ok {
                    assert!(!e.truncated);
                }
            }
            let _ = is_onenote(t);
        }
    }

    #[test]
    fn hostile_random_mutations() {
        let base = build(&[b"first file", &[0xAB; 300], b"", b"last"]);
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let cap = 8;
        for iter in 0..3000 {
            let mut t = base.clone();
            for _ in 0..1 + rng.below(16) {
                let i = rng.below(t.len());
                t[i] = if rng.below(4) == 0 {
                    0xFF
                } else {
                    rng.next() as u8
                };
            }
            if iter % 7 == 0 {
                // Splice in an extra header GUID somewhere.
                let i = rng.below(t.len() - 16);
                t[i..i + 16].copy_from_slice(&GUID_FDSO_HEADER);
            }
            let (found, _) = embedded_files(&t, cap);
            assert!(found.len() <= cap, "iter {iter}");
            for e in &found {
                assert!(e.offset + e.len <= t.len() as u64, "iter {iter}");
                assert_eq!(e.bytes(&t).len() as u64, e.len);
            }
        }
    }
}
